//! Starting, finding and stopping the local cloud's processes: `local up` starts the
//! emulator ([`super::emulator`]), the face service ([`super::face`]) and the data plane in the
//! background; `status` and `down` find them again through their pid files.
//!
//! Everything lives in one state directory (`target/local` unless `--state-dir` says
//! otherwise; see [`super::layout`]), so several local clouds can run side by side in tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::emulator::{self, emulator_answers};
use super::http::{http_get, http_post, listens};
use super::layout::{loopback_address, LocalConfig, Overrides, ServedApi, StateDir, HEALTH_PATH, REFRESH_PATH};
use super::procs::{self, record, wait_until, Liveness, ProcessStatus, Stopped};
use crate::config::{environments_dir, Environment};

/// How long `up` waits for the data plane to become healthy.
const DATAPLANE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The data plane's health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub pid: u32,
    pub endpoint: String,
    pub api_port: u16,
}

/// The data plane at `address`'s health, when it answers 200 with its health document.
pub fn dataplane_health(address: SocketAddr) -> Option<Health> {
    match http_get(address, HEALTH_PATH, Duration::from_secs(2)) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Asks the data plane that serves the emulator at `endpoint` (the one `config` names) to
/// re-read the deployed configuration now, and waits until it serves it. `Ok(false)` when no
/// data plane for that emulator runs.
pub fn refresh_dataplane(config: &LocalConfig, endpoint: &str) -> Result<bool> {
    let address: SocketAddr = ([127, 0, 0, 1], config.api_port).into();
    let Some(health) = dataplane_health(address) else { return Ok(false) };
    if health.endpoint.trim_end_matches('/') != endpoint.trim_end_matches('/') {
        return Ok(false);
    }
    match http_post(address, REFRESH_PATH, Duration::from_secs(60)) {
        Ok((200, _)) => Ok(true),
        Ok((status, body)) => bail!("the data plane at {address} answered {status} to {REFRESH_PATH}: {body}"),
        Err(error) => bail!("asking the data plane at {address} to refresh: {error}"),
    }
}

/// `local up`: starts whatever of the local cloud does not run yet, and waits until each is
/// healthy. Idempotent. On failure, stops what this call started and shows the log's tail.
pub fn up(config: &LocalConfig) -> Result<Vec<ProcessStatus>> {
    std::fs::create_dir_all(config.state_dir.dir())
        .with_context(|| format!("creating {}", config.state_dir.dir().display()))?;
    let (moto, started_moto) = emulator::ensure(config)?;
    // Face analysis first, so that the data plane's first functions already get its URL.
    let face = super::face::ensure(config);
    match ensure_dataplane(config) {
        Ok(dataplane) => Ok(vec![moto, face, dataplane]),
        Err(error) => {
            if let Some(recorded) = started_moto {
                let _ = procs::stop(&recorded, STOP_GRACE);
                let _ = config.state_dir.moto_pid().remove();
            }
            Err(error)
        }
    }
}

/// Starts moto alone (no data plane, no face service) unless it already runs; for
/// benchmarks, which keep the emulator free of the data plane's polling.
pub fn start_emulator(config: &LocalConfig) -> Result<ProcessStatus> {
    std::fs::create_dir_all(config.state_dir.dir())
        .with_context(|| format!("creating {}", config.state_dir.dir().display()))?;
    Ok(emulator::ensure(config)?.0)
}

/// Starts the data plane (`xtask local serve`) unless it already runs.
fn ensure_dataplane(config: &LocalConfig) -> Result<ProcessStatus> {
    let state = &config.state_dir;
    let address = SocketAddr::from(([127, 0, 0, 1], config.api_port));
    let pid_file = state.dataplane_pid();
    let status = |pid, note: &str| ProcessStatus {
        name: "data plane",
        pid: Some(pid),
        address: config.api_url(),
        healthy: true,
        note: note.to_owned(),
        log: state.dataplane_log(),
    };
    match pid_file.liveness()? {
        Liveness::Running(recorded) => {
            let health = dataplane_health(loopback_address(recorded.address())?);
            let Some(health) = health.filter(|health| health.pid == recorded.pid) else {
                bail!(
                    "the data plane (pid {}) runs but is not healthy at {}; see {}:\n{}",
                    recorded.pid,
                    recorded.address(),
                    state.dataplane_log().display(),
                    procs::log_tail(&state.dataplane_log(), 20)
                );
            };
            if recorded.address() != config.api_url() || health.endpoint != config.endpoint {
                bail!(
                    "the data plane (pid {}) already runs at {} against {}, not at {} against {}; \
                     run `cargo xtask local down` first",
                    recorded.pid,
                    recorded.address(),
                    health.endpoint,
                    config.api_url(),
                    config.endpoint
                );
            }
            return Ok(status(recorded.pid, "already running"));
        }
        Liveness::Stale(_) => pid_file.remove()?,
        Liveness::NoFile => {}
    }
    if listens(address) {
        bail!(
            "port {} is taken by another program; choose another with --api-port (or `local.api_port` in \
             environments/local.yaml)",
            config.api_port
        );
    }
    let exe = std::env::current_exe().context("finding the xtask executable")?;
    let mut command = Command::new(exe);
    command
        .args(["local", "serve", "--endpoint", &config.endpoint, "--api-port", &config.api_port.to_string()])
        .args(["--max-instances", &config.max_instances.to_string()])
        .arg("--state-dir")
        .arg(state.dir())
        .current_dir(&config.root);
    // The data plane's own AWS calls use fixed test credentials; nothing of the caller's
    // AWS configuration may leak into it (or, through it, into the functions).
    for variable in
        ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    {
        command.env_remove(variable);
    }
    let log = state.dataplane_log();
    let _ = std::fs::remove_file(&log);
    let pid = procs::spawn_detached(&mut command, &log)?;
    let recorded = record(&pid_file, pid, &config.api_url())?;
    let healthy = wait_until(
        DATAPLANE_START_TIMEOUT,
        || dataplane_health(address).is_some_and(|health| health.pid == pid),
        || procs::is_running(pid),
    );
    if !healthy {
        let _ = procs::stop(&recorded, Duration::from_secs(2));
        pid_file.remove()?;
        bail!(
            "the data plane (pid {pid}) {} at {}; see {}:\n{}",
            if procs::is_running(pid) { "did not become healthy" } else { "exited before it was healthy" },
            config.api_url(),
            log.display(),
            procs::log_tail(&log, 20)
        );
    }
    Ok(status(pid, "started"))
}

/// What `down` did to one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    pub name: &'static str,
    pub pid: Option<u32>,
    pub outcome: String,
}

impl std::fmt::Display for DownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "{:<10} pid {pid}: {}", self.name, self.outcome),
            None => write!(f, "{:<10} {}", self.name, self.outcome),
        }
    }
}

/// `local down`: stops exactly the processes the pid files name (the data plane first, then
/// moto), when they are still the processes that were recorded, and removes the pid files.
pub fn down(state: &StateDir) -> Result<Vec<DownReport>> {
    let mut reports = Vec::new();
    let outcome = |stopped: Stopped| match stopped {
        Stopped::Terminated => "stopped".to_owned(),
        Stopped::Killed => "killed (it ignored SIGTERM)".to_owned(),
        Stopped::NotRunning => "was not running (stale pid file removed)".to_owned(),
    };
    reports.push(match super::face::stop(state)? {
        Some((pid, stopped)) => DownReport { name: "face", pid: Some(pid), outcome: outcome(stopped) },
        None => DownReport { name: "face", pid: None, outcome: "not running".to_owned() },
    });
    // Which emulator runs, to name it (the pid file is the same for both).
    let emulator = state
        .moto_pid()
        .read()?
        .and_then(|recorded| loopback_address(recorded.address()).ok())
        .and_then(emulator::running_at)
        .map_or("emulator", crate::config::EmulatorKind::name);
    for (name, pid_file) in [("data plane", state.dataplane_pid()), (emulator, state.moto_pid())] {
        let report = match pid_file.read()? {
            None => DownReport { name, pid: None, outcome: "not running".to_owned() },
            Some(recorded) => {
                let outcome = match procs::stop(&recorded, STOP_GRACE)? {
                    Stopped::Terminated => "stopped".to_owned(),
                    Stopped::Killed => format!("killed (it ignored SIGTERM for {} s)", STOP_GRACE.as_secs()),
                    Stopped::NotRunning => "was not running (stale pid file removed)".to_owned(),
                };
                pid_file.remove()?;
                DownReport { name, pid: Some(recorded.pid), outcome }
            }
        };
        if name == "data plane" {
            let _ = std::fs::remove_file(state.apis_json());
        }
        reports.push(report);
    }
    Ok(reports)
}

/// `local status`: each process with its pid, address and health; and the APIs served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub processes: Vec<ProcessStatus>,
    pub apis: BTreeMap<String, ServedApi>,
}

impl Status {
    pub fn running(&self) -> bool {
        self.processes.iter().all(|process| process.pid.is_some() && process.healthy)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for process in &self.processes {
            writeln!(f, "{process}")?;
        }
        if self.apis.is_empty() {
            return writeln!(f, "no APIs served");
        }
        writeln!(f, "\nAPIs served:")?;
        for (id, api) in &self.apis {
            let environment = api.environment.as_deref().unwrap_or("?");
            writeln!(f, "  {:<12} {:<28} {:<12} {}", environment, api.name, id, api.url)?;
        }
        Ok(())
    }
}

/// Where the data plane of the local cloud on `endpoint` serves its API: the address it was
/// started on when it runs (`local up --api-port` included), else where `local up` would
/// start it.
pub fn api_url_for(endpoint: &str) -> Result<String> {
    let overrides = Overrides { endpoint: Some(endpoint.to_owned()), ..Overrides::default() };
    let config = LocalConfig::load(&crate::workspace::root(), &overrides)?;
    Ok(match config.state_dir.dataplane_pid().liveness()? {
        Liveness::Running(recorded) => recorded.address().to_owned(),
        Liveness::Stale(_) | Liveness::NoFile => config.api_url(),
    })
}

pub fn status(config: &LocalConfig) -> Result<Status> {
    let state = &config.state_dir;
    let mut processes = Vec::new();

    let moto = match state.moto_pid().liveness()? {
        Liveness::Running(recorded) => {
            let running = loopback_address(recorded.address()).ok().and_then(emulator::running_at);
            ProcessStatus {
                name: running.map_or(config.emulator.name(), crate::config::EmulatorKind::name),
                pid: Some(recorded.pid),
                address: recorded.address().to_owned(),
                healthy: running.is_some(),
                note: "started by xtask".to_owned(),
                log: state.moto_log(),
            }
        }
        other => {
            let address = loopback_address(&config.endpoint)?;
            let external = listens(address) && emulator_answers(address);
            let note = match (other, external) {
                (Liveness::Stale(recorded), _) => format!("not running (stale pid file: pid {} exited)", recorded.pid),
                (_, true) => "not started by xtask, but an emulator answers here".to_owned(),
                _ => "not running".to_owned(),
            };
            ProcessStatus {
                name: config.emulator.name(),
                pid: None,
                address: config.endpoint.clone(),
                healthy: external,
                note,
                log: state.moto_log(),
            }
        }
    };
    processes.push(moto);
    processes.push(super::face::status_of(state)?);

    let (dataplane, running) = match state.dataplane_pid().liveness()? {
        Liveness::Running(recorded) => {
            let health = loopback_address(recorded.address()).ok().and_then(dataplane_health);
            let healthy = health.as_ref().is_some_and(|health| health.pid == recorded.pid);
            let note =
                health.map_or_else(|| "not answering".to_owned(), |health| format!("emulator {}", health.endpoint));
            (
                ProcessStatus {
                    name: "data plane",
                    pid: Some(recorded.pid),
                    address: recorded.address().to_owned(),
                    healthy,
                    note,
                    log: state.dataplane_log(),
                },
                true,
            )
        }
        other => {
            let note = match other {
                Liveness::Stale(recorded) => format!("not running (stale pid file: pid {} exited)", recorded.pid),
                _ => "not running".to_owned(),
            };
            (
                ProcessStatus {
                    name: "data plane",
                    pid: None,
                    address: config.api_url(),
                    healthy: false,
                    note,
                    log: state.dataplane_log(),
                },
                false,
            )
        }
    };
    processes.push(dataplane);
    let apis = if running { state.served_apis()? } else { BTreeMap::new() };
    Ok(Status { processes, apis })
}

/// Makes sure an emulator answers at `config.endpoint`, starting the local cloud (moto and
/// the data plane) when nothing listens there. Returns what it did, in lines to tell the
/// user (nothing when the emulator already ran).
pub fn ensure_emulator_at(config: &LocalConfig) -> Result<Vec<String>> {
    let address = loopback_address(&config.endpoint)?;
    if listens(address) {
        return Ok(Vec::new());
    }
    let mut notes =
        vec![format!("Nothing listens at {}: starting the local cloud (`cargo xtask local up`).", config.endpoint)];
    std::fs::create_dir_all(config.state_dir.dir())
        .with_context(|| format!("creating {}", config.state_dir.dir().display()))?;
    let (moto, _) = emulator::ensure(config)?;
    notes.push(moto.to_string());
    // Deploying needs only the emulator; a data plane that cannot start is reported, and
    // `local up` says why again.
    match ensure_dataplane(config) {
        Ok(dataplane) => notes.push(dataplane.to_string()),
        Err(error) => notes.push(format!("warning: the local data plane did not start: {error:#}")),
    }
    Ok(notes)
}

/// For the commands that change an environment: when environment `name`'s effective endpoint
/// (see [`crate::aws::endpoint`]) is on this machine and nothing listens there, starts the
/// local cloud with that endpoint. Returns what it did, as [`ensure_emulator_at`] does.
pub fn ensure_for_environment(name: &str) -> Result<Vec<String>> {
    let env = Environment::load(&environments_dir(), name)?;
    let Some(endpoint) = crate::aws::endpoint(&env) else { return Ok(Vec::new()) };
    if !crate::aws::is_local_endpoint(&endpoint) || loopback_address(&endpoint).is_ok_and(listens) {
        return Ok(Vec::new());
    }
    let root = crate::workspace::root();
    let overrides = Overrides { endpoint: Some(endpoint), ..Overrides::default() };
    ensure_emulator_at(&LocalConfig::load(&root, &overrides)?)
}
