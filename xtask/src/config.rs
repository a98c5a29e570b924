//! `environments/<env>.yaml` -> a typed, validated [`Environment`].
//!
//! Parsing is strict: every mapping rejects unknown keys, every value is range-checked, and
//! every error names the file, the line and column of the offending key or value, and the
//! field path, as `file:line:column: field: message` (see [`ConfigError`]).
//!
//! How the locations are obtained: serde_yaml attaches the position of the YAML node being
//! deserialized to an error raised *while a visitor runs*, so every check below lives inside a
//! `Visitor` (newtypes with hand-written `Deserialize` impls) rather than after the value has
//! been built; `serde_path_to_error` supplies the field path. The two checks that need to know
//! the file (its stem must equal `environment:`) or the directory (`promote_from:` must name an
//! existing environment) run afterwards and locate their value with [`locate_top_level_value`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::functions::FUNCTIONS;
use crate::workspace;

/// The retention periods (days) CloudWatch Logs accepts for a log group.
pub const LOG_RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// The placeholder a state bucket name may contain; replaced by the AWS account id at runtime.
pub const ACCOUNT_ID_PLACEHOLDER: &str = "{account_id}";

/// `upload_url_expiry_seconds` when the file does not set it.
pub const DEFAULT_UPLOAD_URL_EXPIRY_SECONDS: u32 = 300;

/// Lambda's own defaults, used only for a function that [`default_settings`] does not know.
const LAMBDA_DEFAULTS: FunctionSettings =
    FunctionSettings { memory_mb: 128, timeout_seconds: 3, architecture: Arch::X86_64 };

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
}

/// The settings a function gets when the file leaves them out. The one place these live.
pub fn default_settings(function: &str) -> FunctionSettings {
    explicit_default_settings(function).unwrap_or(LAMBDA_DEFAULTS)
}

fn explicit_default_settings(function: &str) -> Option<FunctionSettings> {
    let function = crate::functions::function(function)?;
    Some(FunctionSettings {
        memory_mb: function.default_memory_mb,
        timeout_seconds: function.default_timeout_seconds,
        architecture: Arch::X86_64,
    })
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

        let overrides = raw.functions.unwrap_or_default().0;
        let functions = FUNCTIONS
            .iter()
            .map(|f| {
                let defaults = default_settings(f.name);
                let o = overrides.get(f.name);
                let settings = FunctionSettings {
                    memory_mb: o.and_then(|o| o.memory_mb).map_or(defaults.memory_mb, |m| m.0),
                    timeout_seconds: o.and_then(|o| o.timeout_seconds).map_or(defaults.timeout_seconds, |t| t.0),
                    architecture: o.and_then(|o| o.architecture).unwrap_or(defaults.architecture),
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
            cors_allowed_origins: raw.cors_allowed_origins.0,
            uploads_expire_after_days: raw.uploads_expire_after_days.0,
            throttling: Throttling {
                rate_limit: raw.throttling.rate_limit.0,
                burst_limit: raw.throttling.burst_limit.0,
            },
            tags: raw.tags.unwrap_or_default().0,
            protect: raw.protect,
            promote_from,
            local: raw.local.map(|l| LocalSettings { api_port: l.api_port.0 }),
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

// ---------------------------------------------------------------------------------------------
// Errors

/// A position in an environment file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl Location {
    fn new(file: &Path, location: Option<serde_yaml::Location>) -> Self {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (line, column) = location.map_or((1, 1), |l| (narrow(l.line()), narrow(l.column())));
        Location { file: file.to_path_buf(), line, column }
    }
}

/// Why an environment could not be loaded. Displays as `file:line:column: field: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid YAML (or not exactly one document).
    #[error("{at}: invalid YAML: {message}")]
    Syntax { at: Location, message: String },
    /// A key that the mapping does not have.
    #[error("{at}: {field}: unknown field `{key}`{}", unknown_field_hint(expected, suggestion.as_deref()))]
    UnknownField { at: Location, field: String, key: String, expected: Box<[String]>, suggestion: Option<String> },
    /// A key under `functions:` that is not one of [`FUNCTIONS`].
    #[error("{at}: {field}: unknown function `{name}`; the functions are {}{}", backticked(&function_names()), did_you_mean(suggestion.as_deref()))]
    UnknownFunction { at: Location, field: String, name: String, suggestion: Option<String> },
    /// A value of the wrong YAML type (a string where a number belongs, ...).
    #[error("{at}: {}{message}", field_prefix(field))]
    WrongType { at: Location, field: String, message: String },
    /// A required field is absent. `at` is the mapping that lacks it.
    #[error("{at}: {field}: missing required field")]
    MissingField { at: Location, field: String },
    /// A value of the right type that breaks a rule (a range, a naming rule, ...).
    #[error("{at}: {}{message}", field_prefix(field))]
    InvalidValue { at: Location, field: String, message: String },
    /// No `<name>.yaml` in the environments directory.
    #[error("unknown environment `{name}`; {}", list_environments(dir, available, suggestion.as_deref()))]
    UnknownEnvironment { dir: PathBuf, name: String, available: Vec<String>, suggestion: Option<String> },
}

impl ConfigError {
    /// Where in the file the error is, when it is in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownField { at, .. }
            | ConfigError::UnknownFunction { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::MissingField { at, .. }
            | ConfigError::InvalidValue { at, .. } => Some(at),
            ConfigError::Read { .. } | ConfigError::UnknownEnvironment { .. } => None,
        }
    }

    /// The field path, like `functions.analyze.memory_mb` (empty for the document itself).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { field, .. }
            | ConfigError::UnknownFunction { field, .. }
            | ConfigError::WrongType { field, .. }
            | ConfigError::MissingField { field, .. }
            | ConfigError::InvalidValue { field, .. } => Some(field),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::UnknownEnvironment { .. } => None,
        }
    }

    /// The nearest valid name, for misspelt keys, functions and environments.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { suggestion, .. }
            | ConfigError::UnknownFunction { suggestion, .. }
            | ConfigError::UnknownEnvironment { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }

    fn from_serde(file: &Path, err: &serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        let segments: Vec<String> = err.path().iter().map(ToString::to_string).collect();
        let field = join_path(&segments);
        let at = Location::new(file, err.inner().location());
        let message = bare_message(err.inner(), &segments);

        if let Some(rest) = message.strip_prefix("unknown field `") {
            // serde_path_to_error's path ends with the unknown key itself.
            let key = segments.last().cloned().unwrap_or_default();
            let expected_list = rest.strip_prefix(key.as_str()).and_then(|r| r.strip_prefix("`, ")).unwrap_or(rest);
            let expected = backticked_names(expected_list);
            let suggestion = suggest(&key, expected.iter().map(String::as_str));
            return ConfigError::UnknownField { at, field, key, expected: expected.into_boxed_slice(), suggestion };
        }
        if let Some(name) = message.strip_prefix(UNKNOWN_FUNCTION).and_then(|r| r.strip_suffix('`')) {
            return ConfigError::UnknownFunction {
                at,
                field,
                name: name.to_string(),
                suggestion: suggest(name, FUNCTIONS.iter().map(|f| f.name)),
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let missing = rest.strip_suffix('`').unwrap_or(rest);
            return ConfigError::MissingField { at, field: join_path(&[field, missing.to_string()]) };
        }
        if let Some(rest) = message.strip_prefix("duplicate field `") {
            let duplicate = rest.strip_suffix('`').unwrap_or(rest);
            return ConfigError::InvalidValue {
                at,
                field: join_path(&[field, duplicate.to_string()]),
                message: format!("`{duplicate}` is set more than once"),
            };
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            // An enum value such as `architecture: arm`.
            let (value, expected_list) = rest.split_once("`, ").unwrap_or((rest, ""));
            let expected = backticked_names(expected_list);
            let message = format!(
                "unknown value `{value}`; expected {}{}",
                backticked(&expected),
                did_you_mean(suggest(value, expected.iter().map(String::as_str)).as_deref())
            );
            return ConfigError::InvalidValue { at, field, message };
        }
        if message.starts_with("invalid type: ") {
            return ConfigError::WrongType { at, field, message };
        }
        ConfigError::InvalidValue { at, field, message }
    }
}

fn syntax_error(file: &Path, text: &str, err: &serde_yaml::Error) -> ConfigError {
    if let Some(l) = err.location() {
        let message = err.to_string().replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1);
        return ConfigError::Syntax { at: Location::new(file, Some(l)), message };
    }
    if let Some(line) = second_document_line(text) {
        return ConfigError::Syntax {
            at: Location { file: file.to_path_buf(), line, column: 1 },
            message: "a second YAML document starts here; an environment file holds one".into(),
        };
    }
    ConfigError::Syntax { at: Location::new(file, None), message: err.to_string() }
}

/// The 1-based line of a `---` that follows content, i.e. starts a second document.
fn second_document_line(text: &str) -> Option<u32> {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && seen_content {
            return Some(u32::try_from(i + 1).unwrap_or(u32::MAX));
        }
        let trimmed = line.trim();
        if !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with("---")) {
            seen_content = true;
        }
    }
    None
}

fn is_blank_document(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// The message of a serde_yaml error without the path prefix and the position suffix that its
/// `Display` adds (we print both ourselves, in our own format).
fn bare_message(err: &serde_yaml::Error, segments: &[String]) -> String {
    let mut message = err.to_string();
    if let Some(l) = err.location() {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // serde_yaml prefixes the path of the node it was deserializing, which is the path we have
    // or one of its ancestors (for a bad key, the mapping holding it). Same syntax as ours.
    for len in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", join_path(&segments[..len]));
        if let Some(stripped) = message.strip_prefix(&prefix) {
            return stripped.to_string();
        }
    }
    message
}

/// Joins path segments the way serde_yaml and serde_path_to_error print them: `a.b[0].c`.
fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// The names between backticks in serde's "expected `a`, `b` or `c`" lists.
fn backticked_names(list: &str) -> Vec<String> {
    list.split('`').skip(1).step_by(2).map(String::from).collect()
}

fn backticked(names: &[impl AsRef<str>]) -> String {
    names.iter().map(|n| format!("`{}`", n.as_ref())).collect::<Vec<_>>().join(", ")
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn unknown_field_hint(expected: &[String], suggestion: Option<&str>) -> String {
    match (suggestion, expected) {
        (Some(s), _) => format!(" (did you mean `{s}`?)"),
        (None, []) => "; this mapping takes no fields".to_string(),
        (None, [only]) => format!("; the only field here is `{only}`"),
        (None, _) => format!("; expected one of {}", backticked(expected)),
    }
}

fn function_names() -> Vec<&'static str> {
    FUNCTIONS.iter().map(|f| f.name).collect()
}

fn list_environments(dir: &Path, available: &[String], suggestion: Option<&str>) -> String {
    let dir = dir.display().to_string();
    let dir = dir.trim_end_matches('/');
    if available.is_empty() {
        format!("{dir}/ has no *.yaml files")
    } else {
        format!("{dir}/ has: {}{}", available.join(", "), did_you_mean(suggestion))
    }
}

/// The candidate nearest to `input`, if it is near enough to be a plausible typo: similar by
/// Jaro-Winkler (>= 0.85), one edit or transposition away, or a part of the name (`timeout`
/// for `timeout_seconds`, `port` for `api_port`). Ties go to the higher similarity.
fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let input = input.to_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let similarity = strsim::jaro_winkler(&input, &lower);
            let near = similarity >= 0.85
                || strsim::osa_distance(&input, &lower) <= 1
                || (input.len() >= 3 && (lower.contains(&input) || input.contains(&lower)));
            near.then_some((similarity, c))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// The position of the value of top-level `key` in `text` (or of the document, if absent), for
/// errors found after deserialization. Works by deserializing again with a visitor that fails
/// on that value, so serde_yaml reports where it is.
fn locate_top_level_value(file: &Path, text: &str, key: &str) -> Location {
    struct Finder<'k>(&'k str);
    struct Here;

    impl<'de> Visitor<'de> for Here {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("nothing (locating a value)")
        }
    }
    impl<'de> DeserializeSeed<'de> for Here {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<String>()? {
                if k == self.0 {
                    map.next_value_seed(Here)?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }

    let location =
        serde_yaml::Deserializer::from_str(text).deserialize_map(Finder(key)).err().and_then(|e| e.location());
    Location::new(file, location)
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every check runs inside a visitor, so errors carry the value's position.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of environment settings")]
struct RawEnvironment {
    project: ProjectName,
    environment: EnvName,
    region: Region,
    #[serde(default)]
    endpoint: Option<Endpoint>,
    state: RawState,
    #[serde(default)]
    functions: Option<FunctionOverrides>,
    log_retention_days: RetentionDays,
    #[serde(default)]
    upload_url_expiry_seconds: Option<UploadUrlExpirySeconds>,
    cors_allowed_origins: CorsOrigins,
    uploads_expire_after_days: UploadsExpireAfterDays,
    throttling: RawThrottling,
    #[serde(default)]
    tags: Option<Tags>,
    protect: bool,
    #[serde(default)]
    promote_from: Option<EnvName>,
    #[serde(default)]
    local: Option<RawLocal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `bucket` and `prefix`")]
struct RawState {
    bucket: BucketName,
    prefix: StatePrefix,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of function settings (`memory_mb`, `timeout_seconds`, `architecture`)"
)]
struct RawFunction {
    #[serde(default)]
    memory_mb: Option<MemoryMb>,
    #[serde(default)]
    timeout_seconds: Option<TimeoutSeconds>,
    #[serde(default)]
    architecture: Option<Arch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `rate_limit` and `burst_limit`")]
struct RawThrottling {
    rate_limit: RateLimit,
    burst_limit: BurstLimit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `api_port`")]
struct RawLocal {
    api_port: ApiPort,
}

// --- integers ---------------------------------------------------------------------------------

/// Accepts a YAML integer in `min..=max` (quoted numbers are strings, and rejected).
struct IntInRange {
    min: u32,
    max: u32,
}

impl<'de> Visitor<'de> for IntInRange {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.max == u32::MAX {
            write!(f, "an integer of at least {}", self.min)
        } else {
            write!(f, "an integer from {} to {}", self.min, self.max)
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        match u32::try_from(v) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ if self.max == u32::MAX && v >= u64::from(self.min) => {
                Err(E::custom(format!("{v} is too large; at most {} is supported", u32::MAX)))
            }
            _ if self.max == u32::MAX => Err(E::custom(format!("must be at least {}, got {v}", self.min))),
            _ => Err(E::custom(format!("must be between {} and {}, got {v}", self.min, self.max))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) if self.max == u32::MAX => Err(E::custom(format!("must be at least {}, got {v}", self.min))),
            Err(_) => Err(E::custom(format!("must be between {} and {}, got {v}", self.min, self.max))),
        }
    }
}

macro_rules! int_in_range {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        struct $name(u32);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IntInRange { min: $min, max: $max }).map($name)
            }
        }
    };
}

int_in_range!(
    /// Lambda memory, MB.
    MemoryMb, 128, 10240
);
int_in_range!(
    /// Lambda timeout, seconds.
    TimeoutSeconds, 1, 900
);
int_in_range!(UploadUrlExpirySeconds, 1, 3600);
int_in_range!(UploadsExpireAfterDays, 1, u32::MAX);
int_in_range!(BurstLimit, 1, u32::MAX);

struct ApiPort(u16);

impl<'de> Deserialize<'de> for ApiPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let port = d.deserialize_any(IntInRange { min: 1024, max: u32::from(u16::MAX) })?;
        // In range by construction.
        Ok(ApiPort(u16::try_from(port).unwrap_or(u16::MAX)))
    }
}

struct RetentionDays(u32);

impl<'de> Deserialize<'de> for RetentionDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of days CloudWatch Logs accepts")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                match u32::try_from(v) {
                    Ok(days) if LOG_RETENTION_DAYS.contains(&days) => Ok(days),
                    _ => Err(E::custom(retention_message(v))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(retention_message(0))),
                }
            }
        }
        d.deserialize_any(V).map(RetentionDays)
    }
}

fn retention_message(days: u64) -> String {
    let below = LOG_RETENTION_DAYS.iter().rev().find(|&&d| u64::from(d) < days);
    let above = LOG_RETENTION_DAYS.iter().find(|&&d| u64::from(d) > days);
    let nearest = match (below, above) {
        (Some(b), Some(a)) => format!("{b} or {a}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => String::new(),
    };
    let allowed = LOG_RETENTION_DAYS.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("CloudWatch Logs does not accept {days} days (nearest: {nearest}); it accepts {allowed}")
}

struct RateLimit(f64);

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of requests per second greater than 0")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(v)
                } else {
                    Err(E::custom(format!("must be a finite number greater than 0, got {v}")))
                }
            }
            #[allow(clippy::cast_precision_loss)] // any realistic rate is exact
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V).map(RateLimit)
    }
}

// --- strings ----------------------------------------------------------------------------------

/// Accepts a YAML scalar as a string and runs `check` on it.
struct CheckedStr {
    expecting: &'static str,
    check: fn(&str) -> Result<(), String>,
}

impl<'de> Visitor<'de> for CheckedStr {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
}

macro_rules! checked_string {
    ($name:ident, $expecting:literal, $check:path) => {
        #[derive(Debug, Clone)]
        struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(CheckedStr { expecting: $expecting, check: $check }).map($name)
            }
        }
    };
}

checked_string!(ProjectName, "a project name", check_project);
checked_string!(EnvName, "an environment name", check_env_name);
checked_string!(Region, "an AWS region name", check_region);
checked_string!(Endpoint, "an http(s) URL", check_endpoint);
checked_string!(BucketName, "an S3 bucket name", check_bucket);
checked_string!(StatePrefix, "an S3 key prefix", check_prefix);
checked_string!(TagValue, "a tag value", check_tag_value);

fn check_project(v: &str) -> Result<(), String> {
    check_name(v, 32)
}

fn check_env_name(v: &str) -> Result<(), String> {
    check_name(v, 32)
}

/// `[a-z0-9-]`, 1..=`max` characters, starting and ending with a letter or digit (these names
/// become parts of bucket and function names, which forbid a leading or trailing `-`).
fn check_name(v: &str, max: usize) -> Result<(), String> {
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!("`{v}` contains `{c}`; use only lowercase letters, digits and `-`"));
    }
    if v.len() > max {
        return Err(format!("`{v}` is {} characters long; the limit is {max}", v.len()));
    }
    if v.starts_with('-') || v.ends_with('-') {
        return Err(format!("`{v}` must start and end with a letter or a digit"));
    }
    Ok(())
}

/// `xx-name-N`, as in `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`.
fn check_region(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not an AWS region name like `eu-west-1`"))
    }
}

/// `http(s)://host[:port]`, optionally with a trailing `/`.
fn check_endpoint(v: &str) -> Result<(), String> {
    let origin = v.strip_suffix('/').unwrap_or(v);
    parse_origin(origin)
        .map(|_| ())
        .map_err(|why| format!("`{v}` is not an endpoint URL like `http://127.0.0.1:4566`: {why}"))
}

/// Splits `scheme://host[:port]` and checks each part. Returns (scheme, port).
fn parse_origin(v: &str) -> Result<(&str, Option<u16>), String> {
    let (scheme, rest) = v.split_once("://").ok_or_else(|| "it has no `http://` or `https://`".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme must be `http` or `https`, not `{scheme}`"));
    }
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!("it must not have a path, query or fragment (`{}`)", &rest[i..]));
    }
    if rest.contains('@') {
        return Err("it must not contain credentials".into());
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        // IPv6 literal.
        let (addr, after) = after.split_once(']').ok_or_else(|| "an IPv6 address needs a closing `]`".to_string())?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("`[{addr}]` is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            p => (addr, Some(p.strip_prefix(':').ok_or_else(|| format!("unexpected `{p}`"))?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if !rest.starts_with('[') {
        check_host(host)?;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{p}` is not a port number (1 to 65535)")),
        },
    };
    Ok((scheme, port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("the host `{host}` must be lowercase"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{host}` is not a valid host name"));
        }
    }
    Ok(())
}

/// S3 general-purpose bucket naming rules, with `{account_id}` standing for a 12-digit id.
fn check_bucket(v: &str) -> Result<(), String> {
    let name = v.replace(ACCOUNT_ID_PLACEHOLDER, "123456789012");
    if name.contains(['{', '}']) {
        return Err(format!("`{v}`: the only placeholder a bucket name may contain is `{ACCOUNT_ID_PLACEHOLDER}`"));
    }
    let why = if !(3..=63).contains(&name.len()) {
        Some(if v.contains(ACCOUNT_ID_PLACEHOLDER) {
            format!(
                "it must be 3 to 63 characters long with the 12-digit account id in place of \
                 `{ACCOUNT_ID_PLACEHOLDER}`, and is {}",
                name.len()
            )
        } else {
            format!("it must be 3 to 63 characters long, and is {}", name.len())
        })
    } else if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        Some(format!("it contains `{c}`; use only lowercase letters, digits, `.` and `-`"))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("it must start and end with a letter or a digit".into())
    } else if name.contains("..") {
        Some("it must not contain two adjacent periods".into())
    } else if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        Some("it must not look like an IP address".into())
    } else if let Some(p) = ["xn--", "sthree-", "amzn-s3-demo-"].iter().find(|p| name.starts_with(*p)) {
        Some(format!("the prefix `{p}` is reserved"))
    } else {
        ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .find(|s| name.ends_with(*s))
            .map(|s| format!("the suffix `{s}` is reserved"))
    };
    match why {
        Some(why) => Err(format!("`{v}` is not a valid S3 bucket name: {why}")),
        None => Ok(()),
    }
}

/// A key prefix of S3-safe characters, `/`-separated, without empty, `.` or `..` segments.
fn check_prefix(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.len() > 512 {
        return Err("must be at most 512 characters long".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()/".contains(*c))) {
        return Err(format!("`{v}` contains `{c}`; use letters, digits, `/` and `!-_.*'()`"));
    }
    if v.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("`{v}` must not start or end with `/`, nor contain `//`, `.` or `..` segments"));
    }
    Ok(())
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

fn check_tag_key(v: &str) -> Result<(), String> {
    let len = v.chars().count();
    if !(1..=128).contains(&len) {
        return Err(format!("tag key `{v}` must be 1 to 128 characters long, and is {len}"));
    }
    if v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(format!("tag key `{v}`: the `aws:` prefix is reserved for AWS"));
    }
    if let Some(c) = v.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!("tag key `{v}` contains `{c}`; use letters, digits, spaces and `+-=._:/@`"));
    }
    Ok(())
}

fn check_tag_value(v: &str) -> Result<(), String> {
    let len = v.chars().count();
    if len > 256 {
        return Err(format!("a tag value must be at most 256 characters long, and is {len}"));
    }
    if let Some(c) = v.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!("tag value `{v}` contains `{c}`; use letters, digits, spaces and `+-=._:/@`"));
    }
    Ok(())
}

// --- collections ------------------------------------------------------------------------------

/// `functions:`: keys from [`FUNCTIONS`], each at most once.
#[derive(Default)]
struct FunctionOverrides(BTreeMap<&'static str, RawFunction>);

const UNKNOWN_FUNCTION: &str = "unknown function `";

impl<'de> Deserialize<'de> for FunctionOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FunctionOverrides;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from function name to settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key_seed(CheckedKey(function_key))? {
                    let settings = map.next_value::<RawFunction>()?;
                    out.insert(name, settings);
                }
                Ok(FunctionOverrides(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn function_key(name: &str) -> Result<&'static str, String> {
    FUNCTIONS.iter().find(|f| f.name == name).map(|f| f.name).ok_or_else(|| format!("{UNKNOWN_FUNCTION}{name}`"))
}

/// `tags:`: AWS tag rules, each key at most once, at most 50 tags.
#[derive(Default)]
struct Tags(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of tag keys to tag values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key_seed(CheckedKey(tag_key))? {
                    let value = map.next_value::<TagValue>()?;
                    out.insert(key, value.0);
                }
                if out.len() > 50 {
                    return Err(de::Error::custom(format!(
                        "AWS allows at most 50 tags on a resource; this sets {}",
                        out.len()
                    )));
                }
                Ok(Tags(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn tag_key(key: &str) -> Result<String, String> {
    check_tag_key(key).map(|()| key.to_string())
}

/// A mapping key that must pass a check. The check runs inside the visitor, so its error
/// points at the key. (Repeated keys are caught earlier, by [`NoDuplicateKeys`].)
struct CheckedKey<K>(fn(&str) -> Result<K, String>);

impl<'de, K> DeserializeSeed<'de> for CheckedKey<K> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K> Visitor<'de> for CheckedKey<K> {
    type Value = K;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<K, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// Any YAML document in which no mapping repeats a key; the error points at the repeat.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        NoDuplicateKeys::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        NoDuplicateKeys::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = BTreeSet::new();
        while map.next_key_seed(NewKey(&mut seen))?.is_some() {
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self, A::Error> {
        // A tagged value (`!tag x`): check what is inside.
        let (IgnoredAny, variant) = data.variant()?;
        de::VariantAccess::newtype_variant(variant)
    }
}

/// A scalar mapping key not seen before in its mapping (compared as text; keys that are
/// themselves collections are not compared).
struct NewKey<'a>(&'a mut BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for NewKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl NewKey<'_> {
    fn insert<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(format!("`{key}` is set more than once")));
        }
        self.0.insert(key);
        Ok(())
    }
}

impl<'de> Visitor<'de> for NewKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.insert("null".to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        NoDuplicateKeys.visit_seq(seq).map(|_| ())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        NoDuplicateKeys.visit_map(map).map(|_| ())
    }
}

/// `cors_allowed_origins:`: distinct origins, or exactly `["*"]`.
struct CorsOrigins(Vec<String>);

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CorsOrigins;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of origins like `https://app.example.com`, or `[\"*\"]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<String> = Vec::new();
                while let Some(origin) = seq.next_element_seed(OriginSeed { previous: &out })? {
                    out.push(origin);
                }
                Ok(CorsOrigins(out))
            }
        }
        d.deserialize_seq(V)
    }
}

struct OriginSeed<'a> {
    previous: &'a [String],
}

impl<'de> DeserializeSeed<'de> for OriginSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for OriginSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an origin like `https://app.example.com`, or `*`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v == "*" || self.previous.iter().any(|p| p == "*") {
            if !self.previous.is_empty() {
                return Err(E::custom("`*` allows every origin, so it must be the only entry"));
            }
            return Ok(v.to_string());
        }
        if self.previous.iter().any(|p| p == v) {
            return Err(E::custom(format!("`{v}` is listed more than once")));
        }
        check_origin(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path, no default port.
fn check_origin(v: &str) -> Result<(), String> {
    if let Some(without) = v.strip_suffix('/') {
        if parse_origin(without).is_ok() {
            return Err(format!("`{v}`: an origin has no path; write `{without}` (browsers send no trailing `/`)"));
        }
    }
    let (scheme, port) =
        parse_origin(v).map_err(|why| format!("`{v}` is not an origin like `https://app.example.com`: {why}"))?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    if port == Some(default_port) {
        return Err(format!("`{v}`: browsers leave the default port out of the Origin header; drop `:{default_port}`"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments")
    }

    /// A valid file; tests replace one line to break it.
    const VALID: &str = "\
project: image-analyzer
environment: dev
region: eu-west-1
state:
  bucket: image-analyzer-state-{account_id}
  prefix: image-analyzer
functions:
  analyze:
    memory_mb: 512
    timeout_seconds: 10
log_retention_days: 14
cors_allowed_origins: [\"http://localhost:3000\"]
uploads_expire_after_days: 1
throttling:
  rate_limit: 50.0
  burst_limit: 100
tags: {team: imaging}
protect: false
";

    fn parse(text: &str) -> Result<Environment, ConfigError> {
        Environment::parse(Path::new("environments/dev.yaml"), text)
    }

    fn with(from: &str, to: &str) -> String {
        assert!(VALID.contains(from), "fixture has no `{from}`");
        VALID.replacen(from, to, 1)
    }

    fn error(text: &str) -> ConfigError {
        parse(text).expect_err("the file should be rejected")
    }

    fn at(err: &ConfigError) -> (u32, u32) {
        let l = err.location().expect("a located error");
        assert_eq!(l.file, Path::new("environments/dev.yaml"));
        (l.line, l.column)
    }

    #[test]
    fn every_file_in_environments_loads() {
        let names = Environment::available(&dir());
        assert_eq!(names, ["dev", "local", "prod", "staging"]);
        for name in &names {
            let env = Environment::load(&dir(), name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&env.name, name);
            assert_eq!(env.project, "image-analyzer");
            let functions: Vec<&str> = env.functions.keys().map(String::as_str).collect();
            let mut expected = function_names();
            expected.sort_unstable();
            assert_eq!(functions, expected);
        }
    }

    #[test]
    fn the_environments_differ_where_they_should() {
        let prod = Environment::load(&dir(), "prod").unwrap();
        assert!(prod.protect);
        assert_eq!(prod.region, "eu-central-1");
        assert_eq!(prod.promote_from.as_deref(), Some("staging"));
        assert_eq!(prod.functions["analyze"].memory_mb, 512);
        assert_eq!(prod.log_retention_days, 90);
        assert_eq!(prod.state_key(), "image-analyzer/prod/state.json");
        assert_eq!(prod.state.bucket_for_account("123456789012"), "image-analyzer-state-123456789012-eu-central-1");
        let local = Environment::load(&dir(), "local").unwrap();
        assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(local.local, Some(LocalSettings { api_port: 3000 }));
        assert_eq!(local.cors_allowed_origins, ["*"]);
        let staging = Environment::load(&dir(), "staging").unwrap();
        assert_eq!(staging.promote_from.as_deref(), Some("dev"));
        assert!(!staging.protect);
    }

    #[test]
    fn omitted_functions_and_fields_get_their_defaults() {
        let text = with(
            "functions:\n  analyze:\n    memory_mb: 512\n    timeout_seconds: 10\n",
            "functions:\n  analyze:\n    memory_mb: 1024\n",
        );
        let env = parse(&text).unwrap();
        assert_eq!(
            env.functions["analyze"],
            FunctionSettings { memory_mb: 1024, timeout_seconds: 10, architecture: Arch::X86_64 }
        );
        assert_eq!(env.functions["upload-url"], default_settings("upload-url"));
        assert_eq!(env.functions["upload-url"].timeout_seconds, 5);
        assert_eq!(env.upload_url_expiry_seconds, 300);

        let without = with("functions:\n  analyze:\n    memory_mb: 512\n    timeout_seconds: 10\n", "");
        let env = parse(&without).unwrap();
        assert_eq!(env.functions["analyze"].timeout_seconds, 10);
        assert_eq!(env.functions["analyze"].memory_mb, 256);
        assert_eq!(env.functions.len(), FUNCTIONS.len());
        assert!(env.tags.is_empty() || env.tags.contains_key("team"));
    }

    #[test]
    fn every_function_has_explicit_defaults() {
        for f in FUNCTIONS {
            assert!(explicit_default_settings(f.name).is_some(), "{}", f.name);
        }
    }

    #[test]
    fn architecture_accepts_lambda_names() {
        let text = with("    timeout_seconds: 10\n", "    timeout_seconds: 10\n    architecture: arm64\n");
        assert_eq!(parse(&text).unwrap().functions["analyze"].architecture, Arch::Arm64);
    }

    #[test]
    fn mistyped_key_suggests_the_nearest_field() {
        let err = error(&with("    memory_mb: 512", "    memroy_mb: 512"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:9:5: functions.analyze.memroy_mb: unknown field `memroy_mb` (did you mean `memory_mb`?)"
        );
        assert_eq!(at(&err), (9, 5));
        assert_eq!(err.field(), Some("functions.analyze.memroy_mb"));
        assert_eq!(err.suggestion(), Some("memory_mb"));
    }

    #[test]
    fn unknown_top_level_key_without_near_match_lists_the_fields() {
        let err = error(&with("protect: false\n", "protect: false\nzzz: 1\n"));
        assert_eq!(at(&err), (19, 1));
        assert_eq!(err.suggestion(), None);
        assert!(
            err.to_string().starts_with(
                "environments/dev.yaml:19:1: zzz: unknown field `zzz`; expected one of `project`, `environment`,"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_function_suggests_the_nearest_function() {
        let err = error(&with("  analyze:", "  analyse:"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:8:3: functions.analyse: unknown function `analyse`; the functions are `upload-url`, `analyze` (did you mean `analyze`?)"
        );
        assert_eq!(at(&err), (8, 3));
        assert_eq!(err.suggestion(), Some("analyze"));
    }

    #[test]
    fn wrong_type_names_the_expected_type() {
        let err = error(&with("timeout_seconds: 10", "timeout_seconds: ten"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:10:22: functions.analyze.timeout_seconds: invalid type: string \"ten\", expected an integer from 1 to 900"
        );
        assert!(matches!(err, ConfigError::WrongType { .. }));
    }

    #[test]
    fn missing_required_field_points_at_its_mapping() {
        let err = error(&with("  prefix: image-analyzer\n", ""));
        assert_eq!(err.to_string(), "environments/dev.yaml:5:3: state.prefix: missing required field");
        assert!(matches!(err, ConfigError::MissingField { .. }));
    }

    #[test]
    fn out_of_range_memory_is_rejected_at_the_value() {
        let err = error(&with("memory_mb: 512", "memory_mb: 64"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:9:16: functions.analyze.memory_mb: must be between 128 and 10240, got 64"
        );
        assert!(matches!(err, ConfigError::InvalidValue { .. }));
    }

    #[test]
    fn retention_not_accepted_by_cloudwatch_names_the_nearest() {
        let err = error(&with("log_retention_days: 14", "log_retention_days: 10"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:11:21: log_retention_days: CloudWatch Logs does not accept 10 days (nearest: 7 or 14); it accepts 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"
        );
    }

    #[test]
    fn environment_must_match_the_file_stem() {
        let err = error(&with("environment: dev", "environment: prod"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:2:14: environment: `prod` does not match the file name `dev.yaml`; an environment's name is its file's name"
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let err = error(&with("region: eu-west-1", "region: [eu-west-1"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:4:6: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 3 column 9"
        );
        assert!(matches!(err, ConfigError::Syntax { .. }));
    }

    #[test]
    fn syntax_error_late_in_the_file_is_not_reported_as_a_missing_field() {
        let err = error(&with("protect: false\n", "protect: false\n  : bad: [\n"));
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn empty_file_says_so() {
        let err = error("# nothing yet\n");
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:1:1: the file holds no settings; expected a mapping that starts with `project:`"
        );
    }

    #[test]
    fn repeated_key_is_rejected_at_the_repeat() {
        let err = error(&with("  prefix: image-analyzer\n", "  prefix: image-analyzer\n  prefix: other\n"));
        assert_eq!(err.to_string(), "environments/dev.yaml:7:3: state.prefix: `prefix` is set more than once");
        let err = error(&with("{team: imaging}", "{team: imaging, team: vision}"));
        assert_eq!(err.to_string(), "environments/dev.yaml:17:23: tags.team: `team` is set more than once");
    }

    #[test]
    fn second_yaml_document_is_rejected() {
        let err = error(&format!("{VALID}---\n{VALID}"));
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:19:1: invalid YAML: a second YAML document starts here; an environment file holds one"
        );
    }

    #[test]
    fn unknown_environment_lists_the_available_ones() {
        let err = Environment::load(&dir(), "prdo").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unknown environment `prdo`; {}/ has: dev, local, prod, staging (did you mean `prod`?)",
                dir().display()
            )
        );
        assert_eq!(err.suggestion(), Some("prod"));
    }

    #[test]
    fn unknown_architecture_suggests_the_nearest() {
        let text = with("    timeout_seconds: 10\n", "    timeout_seconds: 10\n    architecture: arm\n");
        let err = error(&text);
        assert_eq!(
            err.to_string(),
            "environments/dev.yaml:11:19: functions.analyze.architecture: unknown value `arm`; expected `x86_64`, `arm64` (did you mean `arm64`?)"
        );
    }

    #[test]
    fn invalid_values_are_rejected_with_their_field() {
        let cases = [
            ("project: image-analyzer", "project: Image", "project", "contains `I`"),
            ("region: eu-west-1", "region: europe", "region", "not an AWS region"),
            (
                "bucket: image-analyzer-state-{account_id}",
                "bucket: image_analyzer",
                "state.bucket",
                "not a valid S3 bucket name",
            ),
            (
                "bucket: image-analyzer-state-{account_id}",
                "bucket: state-{account}",
                "state.bucket",
                "only placeholder",
            ),
            ("prefix: image-analyzer", "prefix: /state/", "state.prefix", "must not start"),
            (
                "[\"http://localhost:3000\"]",
                "[\"http://localhost:3000/\"]",
                "cors_allowed_origins[0]",
                "no trailing `/`",
            ),
            (
                "[\"http://localhost:3000\"]",
                "[\"https://app.example.com:443\"]",
                "cors_allowed_origins[0]",
                "drop `:443`",
            ),
            (
                "[\"http://localhost:3000\"]",
                "[\"http://localhost:3000\", \"*\"]",
                "cors_allowed_origins[1]",
                "only entry",
            ),
            (
                "[\"http://localhost:3000\"]",
                "[\"http://localhost:3000\", \"http://localhost:3000\"]",
                "cors_allowed_origins[1]",
                "more than once",
            ),
            ("rate_limit: 50.0", "rate_limit: 0", "throttling.rate_limit", "greater than 0"),
            ("burst_limit: 100", "burst_limit: 0", "throttling.burst_limit", "at least 1"),
            ("uploads_expire_after_days: 1", "uploads_expire_after_days: 0", "uploads_expire_after_days", "at least 1"),
            ("{team: imaging}", "{aws:team: imaging}", "tags.aws:team", "reserved"),
            ("{team: imaging}", "{team: imaging, team: x}", "tags.team", "more than once"),
            ("{team: imaging}", "{team: \"a|b\"}", "tags.team", "contains `|`"),
            ("protect: false", "protect: false\nlocal: {api_port: 80}", "local.api_port", "between 1024 and 65535"),
            ("protect: false", "protect: false\nendpoint: ftp://x", "endpoint", "scheme"),
            ("protect: false", "protect: false\npromote_from: dev", "promote_from", "itself"),
            (
                "protect: false",
                "protect: false\nupload_url_expiry_seconds: 7200",
                "upload_url_expiry_seconds",
                "between 1 and 3600",
            ),
        ];
        for (from, to, field, needle) in cases {
            let err = error(&with(from, to));
            assert_eq!(err.field(), Some(field), "{to}: {err}");
            assert!(err.to_string().contains(needle), "{to}: {err}");
            assert!(err.location().is_some());
        }
    }

    #[test]
    fn promote_from_must_name_an_existing_environment() {
        let tmp = std::env::temp_dir().join(format!("xtask-config-{}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("dev.yaml"), with("protect: false", "protect: false\npromote_from: stagin")).unwrap();
        fs::write(tmp.join("staging.yaml"), "").unwrap();
        let err = Environment::load(&tmp, "dev").unwrap_err();
        let _ = fs::remove_dir_all(&tmp);
        assert_eq!(err.field(), Some("promote_from"));
        assert_eq!(err.location().map(|l| (l.line, l.column)), Some((19, 15)));
        assert!(err.to_string().ends_with("has: dev, staging (did you mean `staging`?)"), "{err}");
    }

    #[test]
    fn suggestions_need_a_near_match() {
        assert_eq!(suggest("timeout", ["timeout_seconds", "memory_mb"]), Some("timeout_seconds".into()));
        assert_eq!(suggest("prdo", ["dev", "local", "prod", "staging"]), Some("prod".into()));
        assert_eq!(suggest("qa", ["dev", "local", "prod", "staging"]), None);
        assert_eq!(suggest("xyz", ["upload-url", "analyze"]), None);
    }
}
