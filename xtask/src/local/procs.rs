//! Background processes that outlive the command that started them, tracked by pid files.
//!
//! `local up` starts moto and the data plane detached (each in its own process group, so a
//! Ctrl-C in the terminal that ran `up` does not reach them) and records each in a pid file:
//! the pid on the first line, as every pid file has it, then a JSON line with what identifies
//! the process beyond its pid: its start time (in clock ticks since boot, from
//! `/proc/<pid>/stat`) and its command line as the kernel reports it. `local down` signals a
//! pid only when both still match, so a pid the kernel has since given to another process is
//! never killed.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::workspace::write_atomic;

/// What a pid file records about a process, besides its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
    pub start_ticks: u64,
    /// `/proc/<pid>/cmdline`, split at its NUL bytes.
    pub cmdline: Vec<String>,
    /// Where the process serves, e.g. `http://127.0.0.1:4566` (informational).
    #[serde(default)]
    pub address: String,
}

/// A process recorded in a pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub pid: u32,
    pub identity: Option<Identity>,
}

/// A pid file such as `target/local/moto.pid`.
#[derive(Debug, Clone)]
pub struct PidFile {
    path: PathBuf,
}

/// What a pid file says about its process now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// No pid file.
    NoFile,
    /// The recorded process runs and is the one that was recorded.
    Running(Recorded),
    /// The pid file is stale: the process exited, or its pid now belongs to another process.
    Stale(Recorded),
}

impl PidFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `pid`, reading its identity from `/proc`.
    pub fn write(&self, pid: u32, address: &str) -> Result<Recorded> {
        // `spawn` returns once the exec has begun (the close-on-exec pipe closed), which is
        // before the kernel has set up the new program's arguments: until then the command
        // line reads empty. Wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let cmdline = loop {
            match cmdline(pid) {
                Ok(cmdline) => break cmdline,
                Err(_) if is_running(pid) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => {
                    return Err(error).with_context(|| format!("process {pid} exited right after it started"))
                }
            }
        };
        let identity = Identity {
            start_ticks: start_ticks(pid).with_context(|| format!("process {pid} exited right after it started"))?,
            cmdline,
            address: address.to_owned(),
        };
        let text = format!("{pid}\n{}\n", serde_json::to_string(&identity)?);
        write_atomic(&self.path, text.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(Recorded { pid, identity: Some(identity) })
    }

    /// The recorded process, if the file exists. A file without the identity line (written
    /// by hand, say) is read, but such a process is never considered ours.
    pub fn read(&self) -> Result<Option<Recorded>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", self.path.display())),
        };
        let mut lines = text.lines();
        let pid = lines
            .next()
            .and_then(|line| line.trim().parse::<u32>().ok())
            .filter(|pid| *pid > 1)
            .with_context(|| format!("{} does not start with a process id", self.path.display()))?;
        let identity = lines.next().and_then(|line| serde_json::from_str(line).ok());
        Ok(Some(Recorded { pid, identity }))
    }

    pub fn liveness(&self) -> Result<Liveness> {
        Ok(match self.read()? {
            None => Liveness::NoFile,
            Some(recorded) if recorded.is_alive() => Liveness::Running(recorded),
            Some(recorded) => Liveness::Stale(recorded),
        })
    }

    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("removing {}", self.path.display())),
        }
    }
}

impl Recorded {
    /// Whether the recorded process still runs: its pid exists, is not a zombie, and has the
    /// recorded start time and command line.
    pub fn is_alive(&self) -> bool {
        let Some(identity) = &self.identity else { return false };
        is_running(self.pid)
            && start_ticks(self.pid).ok() == Some(identity.start_ticks)
            && cmdline(self.pid).ok().as_ref() == Some(&identity.cmdline)
    }

    pub fn address(&self) -> &str {
        self.identity.as_ref().map_or("", |identity| identity.address.as_str())
    }
}

/// How `stop` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for the grace period and was killed.
    Killed,
    /// It was not running (or its pid belongs to another process now): nothing was signalled.
    NotRunning,
}

/// Stops the recorded process: SIGTERM, up to `grace` to exit, then SIGKILL. Then kills
/// what is left of the processes it had started (its descendants when it was signalled, such
/// as the data plane's function processes, each identified by pid and start time so that a
/// recycled pid is never hit). Signals nothing when the pid is no longer the recorded process.
pub fn stop(recorded: &Recorded, grace: Duration) -> Result<Stopped> {
    let pid = recorded.pid;
    if !recorded.is_alive() {
        return Ok(Stopped::NotRunning);
    }
    let family = descendants(pid);
    signal(pid, libc::SIGTERM)?;
    let outcome = if wait_gone(pid, grace) {
        Stopped::Terminated
    } else {
        if recorded.is_alive() {
            signal(pid, libc::SIGKILL)?;
        }
        if !wait_gone(pid, Duration::from_secs(5)) {
            bail!("process {pid} did not exit after SIGKILL");
        }
        Stopped::Killed
    };
    let survivors: Vec<(u32, u64)> = family
        .into_iter()
        .filter(|(child, ticks)| is_running(*child) && start_ticks(*child).ok() == Some(*ticks))
        .collect();
    if !survivors.is_empty() {
        tracing::debug!("killing what process {pid} left behind: {survivors:?}");
        for (child, _) in &survivors {
            signal(*child, libc::SIGKILL)?;
        }
        for (child, _) in &survivors {
            if !wait_gone(*child, Duration::from_secs(5)) {
                bail!("process {child} (started by {pid}) did not exit after SIGKILL");
            }
        }
    }
    Ok(outcome)
}

/// Kills a process this process has just started (and so knows to be its own) and reaps
/// it if it is its child.
pub fn kill_child(pid: u32) {
    let _ = signal(pid, libc::SIGKILL);
    if let Ok(pid_t) = libc::pid_t::try_from(pid) {
        // SAFETY: waitpid(2) on our own child, with a valid status pointer.
        let mut status = 0;
        unsafe { libc::waitpid(pid_t, &mut status, 0) };
    }
}

/// Every live descendant of `pid`, with its start time.
pub fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let processes: Vec<(u32, u32, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let fields = stat_fields(child).ok()?;
            let parent = fields.get(4 - 3)?.parse().ok()?;
            let ticks = fields.get(22 - 3)?.parse().ok()?;
            Some((child, parent, ticks))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, child_parent, ticks) in &processes {
            if *child_parent == parent && !found.iter().any(|(known, _)| known == child) {
                found.push((*child, *ticks));
                frontier.push(*child);
            }
        }
    }
    found
}

fn signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid_t = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid_t, signal) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error).with_context(|| format!("signalling process {pid}"))
}

/// Waits until `pid` has exited (or is a zombie, which holds no resources but its pid).
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces and
/// parentheses, so the split is at the last `)`): index 0 is field 3, the state.
fn stat_fields(pid: u32) -> io::Result<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/<pid>/stat"))?;
    Ok(rest.split_whitespace().map(str::to_owned).collect())
}

fn stat_field(pid: u32, field: usize) -> io::Result<String> {
    stat_fields(pid)?
        .into_iter()
        .nth(field - 3)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short /proc/<pid>/stat"))
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    matches!(stat_field(pid, 3).as_deref(), Ok(state) if state != "Z" && state != "X")
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
pub fn start_ticks(pid: u32) -> io::Result<u64> {
    stat_field(pid, 22)?.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad starttime"))
}

/// Field 5 of `/proc/<pid>/stat`: the process group.
pub fn process_group(pid: u32) -> io::Result<u32> {
    stat_field(pid, 5)?.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad pgrp"))
}

/// `/proc/<pid>/cmdline`, split at NUL bytes.
pub fn cmdline(pid: u32) -> io::Result<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline"))?;
    if bytes.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no command line (kernel thread or zombie)"));
    }
    Ok(bytes
        .strip_suffix(&[0])
        .unwrap_or(&bytes)
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect())
}

/// Starts `command` detached from this process: in its own process group, stdin from
/// /dev/null, stdout and stderr appended to `log`. Returns its pid.
pub fn spawn_detached(command: &mut Command, log: &Path) -> Result<u32> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let shown = crate::process::display(command);
    tracing::debug!("starting in the background: {shown} (log {})", log.display());
    let child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting `{shown}`"))?;
    // The child is not waited for: when this command exits it is re-parented to init, which
    // reaps it. Until then a child that exits early stays a zombie, which `is_running`
    // treats as exited.
    Ok(child.id())
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("({} does not exist)", path.display());
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(16 * 1024);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(could not read {})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return format!("({} is empty)", path.display());
    }
    tail.iter().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
}

/// One process of the local cloud, as `up` and `status` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    pub name: &'static str,
    /// None when it does not run (or was not started by xtask).
    pub pid: Option<u32>,
    pub address: String,
    pub healthy: bool,
    /// What `up` did: started, already running, external.
    pub note: String,
    pub log: PathBuf,
}

impl std::fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let health = match (self.healthy, self.pid) {
            (true, _) => "healthy",
            (false, Some(_)) => "NOT healthy",
            (false, None) => "-",
        };
        write!(f, "{:<10} pid {:<8} {:<26} {:<12} {}", self.name, pid, self.address, health, self.note)
    }
}

/// Records a process just started; when that fails, stops it, so that no process runs
/// that `down` could not find.
pub fn record(pid_file: &PidFile, pid: u32, address: &str) -> Result<Recorded> {
    pid_file.write(pid, address).inspect_err(|_| kill_child(pid))
}

/// Polls `healthy` until it holds (true), `alive` fails, or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut healthy: impl FnMut() -> bool, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if healthy() {
            return true;
        }
        if !alive() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_identifies_its_process_and_stop_ends_it_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        // A shell with a child: both must go.
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 300 & wait"]);
        let pid = spawn_detached(&mut command, &log).unwrap();
        let file = PidFile::new(dir.path().join("sleep.pid"));
        std::thread::sleep(Duration::from_millis(100));
        let recorded = file.write(pid, "nowhere").unwrap();
        assert_eq!(file.read().unwrap(), Some(recorded.clone()));
        assert!(matches!(file.liveness().unwrap(), Liveness::Running(_)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while descendants(pid).is_empty() {
            assert!(Instant::now() < deadline, "the child never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let members: Vec<u32> = descendants(pid).into_iter().map(|(child, _)| child).chain([pid]).collect();
        assert_eq!(stop(&recorded, Duration::from_secs(5)).unwrap(), Stopped::Terminated);
        for member in members {
            assert!(!is_running(member), "process {member} survived");
        }
        assert!(matches!(file.liveness().unwrap(), Liveness::Stale(_)));
        // Stopping again signals nothing.
        assert_eq!(stop(&recorded, Duration::from_secs(1)).unwrap(), Stopped::NotRunning);
    }

    #[test]
    fn a_recycled_pid_is_not_ours() {
        // This test process, recorded with another start time, is not the recorded process.
        let pid = std::process::id();
        let recorded = Recorded {
            pid,
            identity: Some(Identity {
                start_ticks: start_ticks(pid).unwrap() + 1,
                cmdline: cmdline(pid).unwrap(),
                address: String::new(),
            }),
        };
        assert!(!recorded.is_alive());
        assert_eq!(stop(&recorded, Duration::from_secs(1)).unwrap(), Stopped::NotRunning);
        let other_command = Recorded {
            pid,
            identity: Some(Identity {
                start_ticks: start_ticks(pid).unwrap(),
                cmdline: vec!["moto_server".into()],
                address: String::new(),
            }),
        };
        assert!(!other_command.is_alive());
        let without_identity = Recorded { pid, identity: None };
        assert!(!without_identity.is_alive());
    }

    #[test]
    fn pid_files_without_a_pid_are_errors_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::new(dir.path().join("x.pid"));
        assert_eq!(file.read().unwrap(), None);
        assert_eq!(file.liveness().unwrap(), Liveness::NoFile);
        fs::write(file.path(), "garbage\n").unwrap();
        assert!(file.read().is_err());
        fs::write(file.path(), "4242\n").unwrap();
        assert_eq!(file.read().unwrap(), Some(Recorded { pid: 4242, identity: None }));
    }

    #[test]
    fn log_tail_shows_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(log_tail(&path, 2), "    two\n    three");
    }
}
