//! The local face-analysis service (the `local-rekognition` crate): a Rekognition-compatible
//! DetectFaces that the local cloud runs beside the emulator. `up` builds and starts it,
//! records its URL in `face.url` (the data plane then points the functions'
//! `AWS_ENDPOINT_URL_REKOGNITION` there), and `down` stops it.
//!
//! Its models are fetched with npm on first start. Without npm, or if it cannot start for
//! another reason, the rest of the local cloud still runs, and `up` says why face analysis
//! is not available.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::layout::{LocalConfig, StateDir};
use super::procs::{self, Liveness, ProcessStatus};
use crate::process;

/// The crate and binary of the service.
pub const PACKAGE: &str = "local-rekognition";
/// First start fetches the models with npm, so allow for a slow registry.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// The line the service prints when it is ready, followed by its URL.
const READY: &str = "local-rekognition listening on ";

fn status(state: &StateDir, pid: Option<u32>, address: String, healthy: bool, note: String) -> ProcessStatus {
    ProcessStatus { name: "face", pid, address, healthy, note, log: state.face_log() }
}

/// Starts the service unless it runs; never fails `up`: a service that cannot start is
/// reported in the returned status, and the functions' face analysis then fails clearly.
pub fn ensure(config: &LocalConfig) -> ProcessStatus {
    match start(config) {
        Ok(status) => status,
        Err(error) => {
            let _ = std::fs::remove_file(config.state_dir.face_url_file());
            status(
                &config.state_dir,
                None,
                "-".to_owned(),
                false,
                format!("local face analysis is not available: {error:#}"),
            )
        }
    }
}

fn start(config: &LocalConfig) -> Result<ProcessStatus> {
    let state = &config.state_dir;
    let pid_file = state.face_pid();
    match pid_file.liveness()? {
        Liveness::Running(recorded) => {
            return Ok(status(
                state,
                Some(recorded.pid),
                recorded.address().to_owned(),
                true,
                "already running".to_owned(),
            ));
        }
        Liveness::Stale(_) => pid_file.remove()?,
        Liveness::NoFile => {}
    }
    let _ = std::fs::remove_file(state.face_url_file());
    // The service fetches and verifies its models itself, and says so when npm is missing.
    let binary = build(&config.root)?;
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0", "--models"])
        .arg(state.models_dir())
        .env("AWS_ENDPOINT_URL", &config.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .current_dir(&config.root);
    let log = state.face_log();
    let _ = std::fs::remove_file(&log);
    let pid = procs::spawn_detached(&mut command, &log)?;
    let deadline = Instant::now() + START_TIMEOUT;
    let url = loop {
        if let Some(url) = ready_url(&log) {
            break url;
        }
        if !procs::is_running(pid) || Instant::now() >= deadline {
            procs::kill_child(pid);
            bail!(
                "{PACKAGE} (pid {pid}) {}; see {}:\n{}",
                if procs::is_running(pid) { "did not become ready" } else { "exited before it was ready" },
                log.display(),
                procs::log_tail(&log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    pid_file.write(pid, &url).inspect_err(|_| procs::kill_child(pid))?;
    std::fs::write(state.face_url_file(), format!("{url}\n"))
        .with_context(|| format!("writing {}", state.face_url_file().display()))?;
    Ok(status(state, Some(pid), url, true, "started".to_owned()))
}

/// Builds the service (a no-op when it is up to date) and returns the binary.
fn build(root: &Path) -> Result<PathBuf> {
    process::run(Command::new("cargo").args(["build", "--quiet", "--package", PACKAGE]).current_dir(root))
        .with_context(|| format!("building {PACKAGE}"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("debug").join(PACKAGE))
}

fn ready_url(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|line| line.split_once(READY).map(|(_, url)| url.trim().to_owned()))
}

/// `down`: stops the service if it runs, and forgets its URL.
pub fn stop(state: &StateDir) -> Result<Option<(u32, procs::Stopped)>> {
    let _ = std::fs::remove_file(state.face_url_file());
    let pid_file = state.face_pid();
    let Some(recorded) = pid_file.read()? else { return Ok(None) };
    let stopped = procs::stop(&recorded, Duration::from_secs(5))?;
    pid_file.remove()?;
    Ok(Some((recorded.pid, stopped)))
}

/// `status`: whether the service runs.
pub fn status_of(state: &StateDir) -> Result<ProcessStatus> {
    Ok(match state.face_pid().liveness()? {
        Liveness::Running(recorded) => {
            status(state, Some(recorded.pid), recorded.address().to_owned(), true, "local DetectFaces".to_owned())
        }
        Liveness::Stale(recorded) => status(
            state,
            None,
            "-".to_owned(),
            false,
            format!("not running (stale pid file: pid {} exited)", recorded.pid),
        ),
        Liveness::NoFile => status(state, None, "-".to_owned(), false, "not running".to_owned()),
    })
}
