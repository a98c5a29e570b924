//! Where a local cloud lives: the emulator's endpoint and the API's port
//! ([`LocalConfig`]), and the files of its state directory ([`StateDir`]):
//!
//! | file                         | what                                                      |
//! |------------------------------|-----------------------------------------------------------|
//! | `moto.pid`, `moto.log`       | the emulator `up` started (none when one already listened) |
//! | `dataplane.pid`, `.log`      | the data plane (`xtask local serve`)                      |
//! | `apis.json`                  | `{api_id: {environment, name, url, ...}}`, kept current   |
//! | `face.pid`, `face.log`       | the local face-analysis service (`local-rekognition`)    |
//! | `face.url`                   | that service's URL, while it runs                         |
//! | `models/`                    | its model files, fetched with npm, with their licences    |
//! | `logs/<function>.log`        | each function's stdout and stderr                         |
//! | `functions/<name>/<sha>/`    | each function's unpacked code, by code hash               |

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::procs::PidFile;
use crate::config::{EmulatorKind, Environment};

/// The environment whose API gets `local.api_port`.
pub const LOCAL_ENVIRONMENT: &str = "local";
/// Where the emulator listens when `environments/local.yaml` does not say.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";
/// The local API's port when `environments/local.yaml` does not say.
pub const DEFAULT_API_PORT: u16 = 3000;
/// The data plane's own endpoints, on the local API's port. Routes under this prefix are not
/// served to the API.
pub const CONTROL_PREFIX: &str = "/_local/";
pub const HEALTH_PATH: &str = "/_local/health";
/// `POST` here re-reads the deployed configuration at once and answers when it is served.
pub const REFRESH_PATH: &str = "/_local/refresh";
/// The file, in the state directory, holding the local face-analysis service's URL. When it
/// exists, functions get `AWS_ENDPOINT_URL_REKOGNITION` pointing there; otherwise their
/// Rekognition calls go to the emulator like every other call.
pub const FACE_URL_FILE: &str = "face.url";
/// Overrides the default state directory (`target/local`), below the `--state-dir` flag.
pub const STATE_DIR_ENV: &str = "XTASK_LOCAL_STATE_DIR";
/// Overrides `local.api_port` of environments/local.yaml, below the `--api-port` flag.
pub const API_PORT_ENV: &str = "XTASK_LOCAL_API_PORT";
/// The files of one local cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `<root>/target/local`.
    pub fn default_for(root: &Path) -> Self {
        Self::new(root.join("target/local"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn moto_pid(&self) -> PidFile {
        PidFile::new(self.dir.join("moto.pid"))
    }
    pub fn moto_log(&self) -> PathBuf {
        self.dir.join("moto.log")
    }
    pub fn dataplane_pid(&self) -> PidFile {
        PidFile::new(self.dir.join("dataplane.pid"))
    }
    pub fn dataplane_log(&self) -> PathBuf {
        self.dir.join("dataplane.log")
    }
    pub fn apis_json(&self) -> PathBuf {
        self.dir.join("apis.json")
    }
    pub fn face_url_file(&self) -> PathBuf {
        self.dir.join(FACE_URL_FILE)
    }
    /// The face-analysis service's URL, when `face.url` names one.
    pub fn face_url(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.face_url_file()).ok()?;
        let url = text.trim();
        (!url.is_empty()).then(|| url.to_owned())
    }
    pub fn face_pid(&self) -> PidFile {
        PidFile::new(self.dir.join("face.pid"))
    }
    pub fn face_log(&self) -> PathBuf {
        self.dir.join("face.log")
    }
    /// Where the models are cached, with their licences.
    pub fn models_dir(&self) -> PathBuf {
        self.dir.join("models")
    }
    pub fn function_log(&self, function: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{function}.log"))
    }

    /// The APIs the data plane serves, from `apis.json` (empty when there is none).
    pub fn served_apis(&self) -> Result<BTreeMap<String, ServedApi>> {
        read_apis(&self.apis_json())
    }
}

/// One entry of `apis.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedApi {
    /// The environment the API belongs to (its `environment` tag), if known.
    pub environment: Option<String>,
    pub name: String,
    /// Where the data plane serves it, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub port: u16,
}

/// Reads an `apis.json`; empty when it does not exist.
pub fn read_apis(path: &Path) -> Result<BTreeMap<String, ServedApi>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// What a local cloud is made of: where the emulator listens, the local API's port, whose
/// API that is, and where its files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    pub root: PathBuf,
    pub state_dir: StateDir,
    /// The emulator's endpoint, e.g. `http://127.0.0.1:4566`.
    pub endpoint: String,
    /// The port of the `local` environment's API; other APIs get the next free ports.
    pub api_port: u16,
    /// The project whose `local` environment API gets `api_port`.
    pub project: String,
    /// Instances of a function without a reserved concurrency that run at once.
    pub max_instances: usize,
    /// The emulator `up` starts.
    pub emulator: EmulatorKind,
}

/// Flags that override `environments/local.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub endpoint: Option<String>,
    pub api_port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub emulator: Option<EmulatorKind>,
}

impl LocalConfig {
    /// `environments/local.yaml` (its `endpoint`, `local.api_port` and `project`) with
    /// [`STATE_DIR_ENV`] and [`API_PORT_ENV`], then `overrides`, on top. Without a local.yaml,
    /// the defaults.
    pub fn load(root: &Path, overrides: &Overrides) -> Result<Self> {
        let dir = crate::config::environments_dir();
        let env = if dir.join(format!("{LOCAL_ENVIRONMENT}.yaml")).exists() {
            Some(Environment::load(&dir, LOCAL_ENVIRONMENT)?)
        } else {
            None
        };
        let endpoint = overrides
            .endpoint
            .clone()
            .or_else(|| env.as_ref().and_then(|env| env.endpoint.clone()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        loopback_address(&endpoint)?;
        let env_port = match std::env::var(API_PORT_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                Some(text.trim().parse::<u16>().with_context(|| format!("{API_PORT_ENV}={text} is not a port"))?)
            }
            _ => None,
        };
        Ok(Self {
            root: root.to_path_buf(),
            state_dir: overrides
                .state_dir
                .clone()
                .or_else(|| std::env::var_os(STATE_DIR_ENV).filter(|dir| !dir.is_empty()).map(PathBuf::from))
                .map(|dir| StateDir::new(root.join(dir)))
                .unwrap_or_else(|| StateDir::default_for(root)),
            endpoint,
            api_port: overrides
                .api_port
                .or(env_port)
                .or_else(|| env.as_ref().and_then(|env| env.local.as_ref()).map(|local| local.api_port))
                .unwrap_or(DEFAULT_API_PORT),
            max_instances: env
                .as_ref()
                .and_then(|env| env.local.as_ref())
                .map_or(crate::config::DEFAULT_LOCAL_MAX_INSTANCES, |local| local.max_instances)
                as usize,
            emulator: overrides
                .emulator
                .or_else(|| env.as_ref().and_then(|env| env.local.as_ref()).map(|local| local.emulator))
                .unwrap_or_default(),
            project: env.map(|env| env.project).unwrap_or_else(|| "image-analyzer".to_owned()),
        })
    }

    /// The local API's URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// The socket address of a loopback `http://host:port` endpoint.
pub fn loopback_address(endpoint: &str) -> Result<SocketAddr> {
    let rest = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("the local emulator endpoint {endpoint} must be an http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if !crate::aws::is_local_endpoint(endpoint) {
        bail!("the local emulator endpoint {endpoint} is not on this machine (127.0.0.1, ::1 or localhost)");
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {endpoint}"))?
        .find(|address| address.ip().is_loopback())
        .with_context(|| format!("{endpoint} resolves to no loopback address"))?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_loopback_http() {
        assert_eq!(loopback_address("http://127.0.0.1:4566").unwrap(), "127.0.0.1:4566".parse().unwrap());
        assert_eq!(loopback_address("http://127.0.0.1:4566/").unwrap().port(), 4566);
        assert_eq!(loopback_address("http://localhost:5000").unwrap().port(), 5000);
        assert_eq!(loopback_address("http://[::1]:4566").unwrap(), "[::1]:4566".parse().unwrap());
        assert!(loopback_address("https://127.0.0.1:4566").is_err());
        assert!(loopback_address("http://example.com:4566").is_err());
    }

    #[test]
    fn the_local_environment_file_gives_the_defaults_and_flags_override_them() {
        let root = crate::workspace::root();
        let config = LocalConfig::load(&root, &Overrides::default()).unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:4566");
        assert_eq!(config.api_port, 3000);
        assert_eq!(config.project, "image-analyzer");
        assert_eq!(config.state_dir, StateDir::new(root.join("target/local")));
        assert_eq!(config.emulator, EmulatorKind::Moto);
        let overrides = Overrides {
            endpoint: Some("http://127.0.0.1:5000/".into()),
            api_port: Some(4000),
            state_dir: Some("/tmp/x".into()),
            emulator: Some(EmulatorKind::MiniStack),
        };
        let config = LocalConfig::load(&root, &overrides).unwrap();
        assert_eq!((config.endpoint.as_str(), config.api_port), ("http://127.0.0.1:5000", 4000));
        assert_eq!(config.emulator, EmulatorKind::MiniStack);
        assert_eq!(config.state_dir.apis_json(), Path::new("/tmp/x/apis.json"));
    }

    #[test]
    fn apis_json_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.served_apis().unwrap().is_empty());
        let apis = BTreeMap::from([(
            "abc".to_owned(),
            ServedApi {
                environment: Some("local".into()),
                name: "image-analyzer-local-api".into(),
                url: "http://127.0.0.1:3000".into(),
                project: Some("image-analyzer".into()),
                region: "us-east-1".into(),
                port: 3000,
            },
        )]);
        std::fs::write(state.apis_json(), serde_json::to_vec(&apis).unwrap()).unwrap();
        assert_eq!(state.served_apis().unwrap(), apis);
    }

    #[test]
    fn face_url_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.face_url(), None);
        std::fs::write(state.face_url_file(), "http://127.0.0.1:4600\n").unwrap();
        assert_eq!(state.face_url().as_deref(), Some("http://127.0.0.1:4600"));
    }
}
