//! The one place xtask starts other programs.
//!
//! Every shell-out goes through [`run`] (inherits stdio) or [`capture`] (returns stdout), so
//! every command is logged the same way and every failure names the command and its status.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, ExitStatus, Stdio};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: ExitStatus },
    #[error("`{command}` printed output that is not UTF-8")]
    NotUtf8 { command: String },
}

impl ProcessError {
    /// True when the program itself could not be found (as opposed to running and failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProcessError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Runs `cmd` to completion with inherited stdin/stdout/stderr.
pub fn run(cmd: &mut Command) -> Result<(), ProcessError> {
    let command = display(cmd);
    tracing::info!("running {command}");
    log_env(cmd);
    let status = cmd.status().map_err(|source| ProcessError::Spawn { command: command.clone(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProcessError::Failed { command, status })
    }
}

/// Runs `cmd` to completion and returns its stdout; stderr is passed through.
pub fn capture(cmd: &mut Command) -> Result<String, ProcessError> {
    let command = display(cmd);
    tracing::debug!("running {command}");
    log_env(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ProcessError::Spawn { command: command.clone(), source })?;
    if !output.status.success() {
        return Err(ProcessError::Failed { command, status: output.status });
    }
    String::from_utf8(output.stdout).map_err(|_| ProcessError::NotUtf8 { command })
}

/// `program arg1 'arg 2'`: the command line as a person would type it.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(quote).collect::<Vec<_>>().join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn log_env(cmd: &Command) {
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => tracing::debug!("  env {}={}", key.to_string_lossy(), value.to_string_lossy()),
            None => tracing::debug!("  env -u {}", key.to_string_lossy()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_arguments_that_need_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--package", "upload-url", "a b", "it's"]);
        assert_eq!(display(&cmd), r"cargo build --package upload-url 'a b' 'it'\''s'");
    }

    #[test]
    fn failing_command_error_names_command_and_status() {
        let err = run(Command::new("sh").args(["-c", "exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'exit 3'"), "{msg}");
        assert!(msg.contains('3'), "{msg}");
    }

    #[test]
    fn missing_program_is_reported_as_not_found() {
        let err = run(&mut Command::new("xtask-no-such-program-4242")).unwrap_err();
        assert!(err.is_not_found());
    }
}
