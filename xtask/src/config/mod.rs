//! `environments/<env>.yaml` -> a typed, validated [`Environment`].
//!
//! Parsing is strict: every mapping rejects unknown keys, every value is range-checked, and
//! every error names the file, the line and column of the offending key or value, and the
//! field path, as `file:line:column: field: message` (see [`ConfigError`]).
//!
//! How the locations are obtained: serde_yaml attaches the position of the YAML node being
//! deserialized to an error raised *while a visitor runs*, so every check lives inside a
//! `Visitor` (newtypes with hand-written `Deserialize` impls, in `schema`, running the rules
//! of `rules`) rather than after the value has been built; `serde_path_to_error` supplies the
//! field path, and `diagnostics` words the error. The two checks that need to know
//! the file (its stem must equal `environment:`) or the directory (`promote_from:` must name an
//! existing environment) run afterwards and locate their value with `locate_top_level_value`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Serialize;

use crate::arch::Arch;
use crate::functions::{Function, FUNCTIONS};
use crate::workspace;

mod diagnostics;
mod rules;
mod schema;
#[cfg(test)]
mod tests;

use diagnostics::{is_blank_document, list_environments, locate_top_level_value, suggest, syntax_error};
pub use diagnostics::{ConfigError, Location};
use schema::{NoDuplicateKeys, RawEnvironment};

/// The retention periods (days) CloudWatch Logs accepts for a log group.
pub const LOG_RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// The placeholder a state bucket name may contain; replaced by the AWS account id at runtime.
pub const ACCOUNT_ID_PLACEHOLDER: &str = "{account_id}";

/// `upload_url_expiry_seconds` when the file does not set it.
pub const DEFAULT_UPLOAD_URL_EXPIRY_SECONDS: u32 = 300;
/// `max_upload_bytes` when the file does not set it: Rekognition's limit for an image in S3.
pub const DEFAULT_MAX_UPLOAD_BYTES: u32 = 15 * 1024 * 1024;

/// One environment, resolved: every optional value filled in, every function present.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    /// The environment name (= the file stem = `environment:`).
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    pub project: String,
    pub region: String,
    /// A custom AWS endpoint (an emulator); `None` for real AWS.
    pub endpoint: Option<String>,
    pub state: StateLocation,
    /// One entry per function in [`FUNCTIONS`], keyed by function name.
    pub functions: BTreeMap<String, FunctionSettings>,
    pub log_retention_days: u32,
    pub upload_url_expiry_seconds: u32,
    /// The largest upload `GET /upload-url` issues a URL for, in bytes.
    pub max_upload_bytes: u32,
    /// Whether `GET /upload-url` requires `contentLength` (which it then signs into the URL).
    pub require_content_length: bool,
    /// Origins (`scheme://host[:port]`), or exactly `["*"]`.
    pub cors_allowed_origins: Vec<String>,
    pub uploads_expire_after_days: u32,
    pub throttling: Throttling,
    /// Extra tags for every taggable resource.
    pub tags: BTreeMap<String, String>,
    /// Refuse to destroy data-holding resources.
    pub protect: bool,
    /// The environment whose tested artifacts `promote` takes by default.
    pub promote_from: Option<String>,
    pub local: Option<LocalSettings>,
}

/// Where the deployer keeps this environment's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateLocation {
    /// A bucket name, possibly containing [`ACCOUNT_ID_PLACEHOLDER`].
    pub bucket: String,
    /// Key prefix; the state object is `<prefix>/<env>/state.json`.
    pub prefix: String,
}

/// Per-function Lambda settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FunctionSettings {
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub architecture: Arch,
    /// Lambda's reserved concurrency: at most this many instances at once (`None`: the
    /// account's unreserved pool).
    pub reserved_concurrency: Option<u32>,
}

/// API Gateway stage throttling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throttling {
    /// Steady-state requests per second.
    pub rate_limit: f64,
    pub burst_limit: u32,
}

/// Settings for the local data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LocalSettings {
    /// The port the local HTTP API listens on.
    pub api_port: u16,
    /// At most this many instances of a function without a reserved concurrency run at once.
    pub max_instances: u32,
    /// The AWS emulator the local cloud runs.
    pub emulator: EmulatorKind,
}

/// The AWS emulators the local cloud can run, both from the project's virtualenv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmulatorKind {
    /// moto server.
    #[default]
    Moto,
    /// MiniStack, independent of moto.
    #[serde(rename = "ministack")]
    MiniStack,
}

impl EmulatorKind {
    /// Every emulator, by the name files and flags use.
    pub const NAMES: [&'static str; 2] = ["moto", "ministack"];

    /// The name files and flags use: `moto`, `ministack`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Moto => "moto",
            Self::MiniStack => "ministack",
        }
    }

    /// Its server in the project's virtualenv.
    pub fn program(self) -> &'static str {
        match self {
            Self::Moto => "moto_server",
            Self::MiniStack => "ministack",
        }
    }

    /// The emulator called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "moto" => Some(Self::Moto),
            "ministack" => Some(Self::MiniStack),
            _ => None,
        }
    }
}

/// `local.max_instances` when the file does not set it.
pub const DEFAULT_LOCAL_MAX_INSTANCES: u32 = 4;

/// The settings a function gets when the file leaves them out: its row of [`FUNCTIONS`], on
/// x86_64.
pub fn default_settings(function: &Function) -> FunctionSettings {
    FunctionSettings {
        memory_mb: function.default_memory_mb,
        timeout_seconds: function.default_timeout_seconds,
        architecture: Arch::X86_64,
        reserved_concurrency: None,
    }
}

/// The variable that points every command at another environments directory instead of
/// `<workspace root>/environments`, e.g. for tests that deploy a modified copy of an
/// environment. Not a flag, on purpose: the environment files in the repository are the
/// ones meant to be deployed.
pub const ENVIRONMENTS_DIR_ENV: &str = "XTASK_ENVIRONMENTS_DIR";

/// `$XTASK_ENVIRONMENTS_DIR` when set and not empty, else `<workspace root>/environments`.
pub fn environments_dir() -> PathBuf {
    match std::env::var_os(ENVIRONMENTS_DIR_ENV).filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace::root().join("environments"),
    }
}

impl StateLocation {
    /// The bucket name with [`ACCOUNT_ID_PLACEHOLDER`] replaced by `account_id`.
    pub fn bucket_for_account(&self, account_id: &str) -> String {
        self.bucket.replace(ACCOUNT_ID_PLACEHOLDER, account_id)
    }

    /// The key of `environment`'s state object: `<prefix>/<environment>/state.json`.
    pub fn state_key(&self, environment: &str) -> String {
        format!("{}/{environment}/state.json", self.prefix)
    }
}

impl Environment {
    /// Reads and validates `<environments_dir>/<name>.yaml`.
    pub fn load(environments_dir: &Path, name: &str) -> Result<Environment, ConfigError> {
        let available = Self::available(environments_dir);
        if !available.iter().any(|a| a == name) {
            return Err(ConfigError::UnknownEnvironment {
                dir: environments_dir.to_path_buf(),
                name: name.to_string(),
                suggestion: suggest(name, available.iter().map(String::as_str)),
                available,
            });
        }
        let file = environments_dir.join(format!("{name}.yaml"));
        let text = fs::read_to_string(&file).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let env = Self::parse(&file, &text)?;
        if let Some(from) = &env.promote_from {
            if !available.contains(from) {
                let suggestion = suggest(from, available.iter().map(String::as_str));
                let message = format!(
                    "no environment `{from}`; {}",
                    list_environments(environments_dir, &available, suggestion.as_deref())
                );
                return Err(ConfigError::InvalidValue {
                    at: locate_top_level_value(&file, &text, "promote_from"),
                    field: "promote_from".into(),
                    message,
                });
            }
        }
        Ok(env)
    }

    /// Parses and validates the text of an environment file. `file` names it in errors, and
    /// its stem must equal `environment:`. Pure: reads nothing.
    pub fn parse(file: &Path, text: &str) -> Result<Environment, ConfigError> {
        // serde_yaml deserializes the events parsed so far *before* it reports a syntax error
        // later in the file, which would surface as a misleading "missing field". Parse first.
        if let Err(err) = serde_yaml::from_str::<IgnoredAny>(text) {
            return Err(syntax_error(file, text, &err));
        }
        if is_blank_document(text) {
            return Err(ConfigError::InvalidValue {
                at: Location::new(file, None),
                field: String::new(),
                message: "the file holds no settings; expected a mapping that starts with \
                          `project:`"
                    .into(),
            });
        }
        // YAML forbids duplicate keys, but serde maps keep the last one silently.
        serde_path_to_error::deserialize::<_, NoDuplicateKeys>(serde_yaml::Deserializer::from_str(text))
            .map_err(|err| ConfigError::from_serde(file, &err))?;
        let raw: RawEnvironment = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
            .map_err(|err| ConfigError::from_serde(file, &err))?;

        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
        let name = raw.environment.0;
        if stem.as_deref() != Some(name.as_str()) {
            let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(ConfigError::InvalidValue {
                at: locate_top_level_value(file, text, "environment"),
                field: "environment".into(),
                message: format!(
                    "`{name}` does not match the file name `{file_name}`; \
                     an environment's name is its file's name"
                ),
            });
        }
        let promote_from = raw.promote_from.map(|p| p.0);
        if promote_from.as_deref() == Some(name.as_str()) {
            return Err(ConfigError::InvalidValue {
                at: locate_top_level_value(file, text, "promote_from"),
                field: "promote_from".into(),
                message: format!("`{name}` cannot promote from itself"),
            });
        }

        if raw.local.is_none() && raw.cors_allowed_origins.0.iter().any(|origin| origin == "*") {
            return Err(ConfigError::InvalidValue {
                at: locate_top_level_value(file, text, "cors_allowed_origins"),
                field: "cors_allowed_origins".into(),
                message: "`*` would let any web site upload to this environment's bucket; list the origins of \
                          your front ends (the API's own origin, where its page is served, is allowed already). \
                          `*` is only for an environment with a `local:` section"
                    .into(),
            });
        }
        let overrides = raw.functions.unwrap_or_default().0;
        let functions = FUNCTIONS
            .iter()
            .map(|f| {
                let defaults = default_settings(f);
                let o = overrides.get(f.name);
                let settings = FunctionSettings {
                    memory_mb: o.and_then(|o| o.memory_mb).map_or(defaults.memory_mb, |m| m.0),
                    timeout_seconds: o.and_then(|o| o.timeout_seconds).map_or(defaults.timeout_seconds, |t| t.0),
                    architecture: o.and_then(|o| o.architecture).unwrap_or(defaults.architecture),
                    reserved_concurrency: o.and_then(|o| o.reserved_concurrency).map(|r| r.0),
                };
                (f.name.to_string(), settings)
            })
            .collect();

        Ok(Environment {
            name,
            file: file.to_path_buf(),
            project: raw.project.0,
            region: raw.region.0,
            endpoint: raw.endpoint.map(|e| e.0),
            state: StateLocation { bucket: raw.state.bucket.0, prefix: raw.state.prefix.0 },
            functions,
            log_retention_days: raw.log_retention_days.0,
            upload_url_expiry_seconds: raw.upload_url_expiry_seconds.map_or(DEFAULT_UPLOAD_URL_EXPIRY_SECONDS, |e| e.0),
            max_upload_bytes: raw.max_upload_bytes.map_or(DEFAULT_MAX_UPLOAD_BYTES, |m| m.0),
            require_content_length: raw.require_content_length.unwrap_or(false),
            cors_allowed_origins: raw.cors_allowed_origins.0,
            uploads_expire_after_days: raw.uploads_expire_after_days.0,
            throttling: Throttling {
                rate_limit: raw.throttling.rate_limit.0,
                burst_limit: raw.throttling.burst_limit.0,
            },
            tags: raw.tags.unwrap_or_default().0,
            protect: raw.protect,
            promote_from,
            local: raw.local.map(|l| LocalSettings {
                api_port: l.api_port.0,
                max_instances: l.max_instances.map_or(DEFAULT_LOCAL_MAX_INSTANCES, |m| m.0),
                emulator: l.emulator.unwrap_or_default(),
            }),
        })
    }

    /// The sorted stems of the `*.yaml` files in `environments_dir` (empty if it is unreadable).
    pub fn available(environments_dir: &Path) -> Vec<String> {
        let Ok(entries) = fs::read_dir(environments_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
            .collect();
        names.sort();
        names
    }

    /// The key of this environment's state object.
    pub fn state_key(&self) -> String {
        self.state.state_key(&self.name)
    }
}
