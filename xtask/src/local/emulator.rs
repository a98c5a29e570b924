//! The AWS emulator, moto server, as the local cloud runs it: started from the project's
//! virtualenv, recorded in `moto.pid`, healthy when `GET /moto-api/` answers 200.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use super::http::{http_get, listens};
use super::layout::{loopback_address, LocalConfig};
use super::procs::{self, record, wait_until, Liveness, ProcessStatus, Recorded};
use crate::venv::Venv;

/// How long `up` waits for moto to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether moto answers at `address` (`GET /moto-api/` is 200).
pub fn moto_healthy(address: SocketAddr) -> bool {
    matches!(http_get(address, "/moto-api/", Duration::from_secs(2)), Ok((200, _)))
}

/// Whether an emulator (any HTTP server) answers at `address`.
pub fn emulator_answers(address: SocketAddr) -> bool {
    http_get(address, "/", Duration::from_secs(2)).is_ok()
}

/// Starts moto unless it (or another emulator) already answers at the endpoint.
pub fn ensure_moto(config: &LocalConfig) -> Result<(ProcessStatus, Option<Recorded>)> {
    let state = &config.state_dir;
    let address = loopback_address(&config.endpoint)?;
    let pid_file = state.moto_pid();
    let status = |pid, healthy, note: &str| ProcessStatus {
        name: "moto",
        pid,
        address: config.endpoint.clone(),
        healthy,
        note: note.to_owned(),
        log: state.moto_log(),
    };
    match pid_file.liveness()? {
        Liveness::Running(recorded) => {
            if recorded.address() != config.endpoint {
                bail!(
                    "moto started by xtask already runs at {} (pid {}), not at {}; run `cargo xtask local down` first",
                    recorded.address(),
                    recorded.pid,
                    config.endpoint
                );
            }
            if !wait_until(Duration::from_secs(10), || moto_healthy(address), || true) {
                bail!(
                    "moto (pid {}) runs at {} but is not healthy; see {}:\n{}",
                    recorded.pid,
                    config.endpoint,
                    state.moto_log().display(),
                    procs::log_tail(&state.moto_log(), 20)
                );
            }
            return Ok((status(Some(recorded.pid), true, "already running"), None));
        }
        Liveness::Stale(_) => pid_file.remove()?,
        Liveness::NoFile => {}
    }
    if listens(address) {
        if !emulator_answers(address) {
            bail!("something listens at {} but does not answer HTTP; it is not an emulator", config.endpoint);
        }
        return Ok((status(None, true, "not started by xtask: left running by `down`"), None));
    }
    let venv = Venv::ensure(&config.root)?;
    let server = venv.bin("moto_server");
    let mut command = Command::new(&server);
    command.args(["-H", &address.ip().to_string(), "-p", &address.port().to_string()]);
    let log = state.moto_log();
    let _ = std::fs::remove_file(&log);
    let pid = procs::spawn_detached(&mut command, &log)?;
    let recorded = record(&pid_file, pid, &config.endpoint)?;
    let healthy = wait_until(START_TIMEOUT, || moto_healthy(address), || procs::is_running(pid));
    if !healthy {
        let _ = procs::stop(&recorded, Duration::from_secs(2));
        pid_file.remove()?;
        bail!(
            "moto_server (pid {pid}) {} at {}; see {}:\n{}",
            if procs::is_running(pid) { "did not become healthy" } else { "exited before it was healthy" },
            config.endpoint,
            log.display(),
            procs::log_tail(&log, 20)
        );
    }
    Ok((status(Some(pid), true, "started"), Some(recorded)))
}
