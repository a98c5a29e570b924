//! The AWS emulator as the local cloud runs it: moto server or MiniStack (`local.emulator` in
//! environments/local.yaml, or `local up --emulator`), started from the project's
//! virtualenv, recorded in `moto.pid`, healthy when its health endpoint answers 200 (moto's
//! `GET /moto-api/`, MiniStack's `GET /_ministack/ready`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use super::http::{http_get, listens};
use super::layout::{loopback_address, LocalConfig};
use super::procs::{self, record, wait_until, Liveness, ProcessStatus, Recorded};
use crate::config::EmulatorKind;
use crate::venv::Venv;

/// How long `up` waits for the emulator to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `kind` answers healthy at `address`.
pub fn healthy(kind: EmulatorKind, address: SocketAddr) -> bool {
    let path = match kind {
        EmulatorKind::Moto => "/moto-api/",
        EmulatorKind::MiniStack => "/_ministack/ready",
    };
    matches!(http_get(address, path, Duration::from_secs(2)), Ok((200, _)))
}

/// Which emulator answers healthy at `address`, if any.
pub fn running_at(address: SocketAddr) -> Option<EmulatorKind> {
    [EmulatorKind::Moto, EmulatorKind::MiniStack].into_iter().find(|kind| healthy(*kind, address))
}

/// Whether an emulator (any HTTP server) answers at `address`.
pub fn emulator_answers(address: SocketAddr) -> bool {
    http_get(address, "/", Duration::from_secs(2)).is_ok()
}

/// The command that starts the configured emulator on `address`; MiniStack keeps its scratch
/// files in the state directory.
fn command(config: &LocalConfig, address: SocketAddr) -> Result<Command> {
    let venv = Venv::ensure(&config.root)?;
    let scratch = config.state_dir.dir().join("ministack");
    if config.emulator == EmulatorKind::MiniStack {
        std::fs::create_dir_all(&scratch)?;
    }
    Ok(launch(config.emulator, &venv.bin(config.emulator.program()), address, &scratch))
}

/// How either emulator is started, by the local cloud and by the tests alike: `program` from
/// the virtualenv, listening on `address`; MiniStack keeps its files in `scratch`.
pub fn launch(kind: EmulatorKind, program: &Path, address: SocketAddr, scratch: &Path) -> Command {
    let (ip, port) = (address.ip().to_string(), address.port().to_string());
    let mut command = Command::new(program);
    match kind {
        EmulatorKind::Moto => {
            command
                .args(["-H", &ip, "-p", &port])
                // moto otherwise grants CORS to every origin on every request; without it, S3
                // answers from the bucket's CORS configuration, as AWS does.
                .env("MOTO_DISABLE_GLOBAL_CORS", "true");
        }
        EmulatorKind::MiniStack => {
            command
                .env("BIND_HOST", &ip)
                .env("GATEWAY_PORT", &port)
                .env("MINISTACK_REGION", super::discovery::DEFAULT_REGION)
                // moto's account, so that the local environment's names do not depend on the
                // emulator.
                .env("MINISTACK_ACCOUNT_ID", "123456789012")
                // Functions only in Docker (see below), never as local processes.
                .env("LAMBDA_STRICT", "1")
                .env("IOT_MTLS_ENABLED", "0")
                .env("SFTP_ENABLED", "0")
                .env("TMPDIR", scratch);
        }
    }
    // Both emulators invoke a function themselves when a bucket notifies it, in Docker when
    // Docker answers: a Docker socket that does not exist keeps them from running deployed
    // code. The data plane runs it, once.
    command.env("DOCKER_HOST", NO_DOCKER);
    command
}

/// The `DOCKER_HOST` the emulators get: a socket that does not exist.
pub const NO_DOCKER: &str = "unix:///nonexistent/image-analyzer-runs-no-docker.sock";

/// Starts the configured emulator unless it (or another emulator) already answers at the
/// endpoint. Refuses when the other emulator, started by xtask, runs there.
pub fn ensure(config: &LocalConfig) -> Result<(ProcessStatus, Option<Recorded>)> {
    let state = &config.state_dir;
    let address = loopback_address(&config.endpoint)?;
    let pid_file = state.moto_pid();
    let name = config.emulator.name();
    let status = |pid, healthy, note: &str| ProcessStatus {
        name,
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
                    "an emulator started by xtask already runs at {} (pid {}), not at {}; run `cargo xtask local down` \
                     first",
                    recorded.address(),
                    recorded.pid,
                    config.endpoint
                );
            }
            let mut running = None;
            let answered = || {
                running = running_at(address);
                running.is_some()
            };
            wait_until(Duration::from_secs(10), answered, || true);
            match running {
                Some(kind) if kind == config.emulator => {}
                Some(other) => bail!(
                    "{} (pid {}) runs at {}, not {name}; run `cargo xtask local down` first to switch",
                    other.name(),
                    recorded.pid,
                    config.endpoint
                ),
                None => bail!(
                    "{name} (pid {}) runs at {} but is not healthy; see {}:\n{}",
                    recorded.pid,
                    config.endpoint,
                    state.moto_log().display(),
                    procs::log_tail(&state.moto_log(), 20)
                ),
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
    let mut command = command(config, address)?;
    let log = state.moto_log();
    let _ = std::fs::remove_file(&log);
    let pid = procs::spawn_detached(&mut command, &log)?;
    let recorded = record(&pid_file, pid, &config.endpoint)?;
    let became_healthy = wait_until(START_TIMEOUT, || healthy(config.emulator, address), || procs::is_running(pid));
    if !became_healthy {
        let _ = procs::stop(&recorded, Duration::from_secs(2));
        pid_file.remove()?;
        bail!(
            "{name} (pid {pid}) {} at {}; see {}:\n{}",
            if procs::is_running(pid) { "did not become healthy" } else { "exited before it was healthy" },
            config.endpoint,
            log.display(),
            procs::log_tail(&log, 20)
        );
    }
    Ok((status(Some(pid), true, "started"), Some(recorded)))
}
