//! The project-local Python virtualenv at `<root>/.venv`, holding pinned tools
//! (cargo-lambda, zig, moto, MiniStack). Created and (re)installed on first use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::process::{self, ProcessError};

/// The pinned requirements, relative to the workspace root.
pub const REQUIREMENTS: &str = "xtask/python-requirements.txt";
/// Holds the SHA-256 of the requirements file the venv was last installed from.
const MARKER: &str = ".requirements.sha256";

#[derive(Debug, Error)]
pub enum VenvError {
    #[error(
        "python3 was not found on PATH; install Python 3 with its venv module \
         (Debian/Ubuntu: `apt-get install python3 python3-venv`)"
    )]
    PythonMissing,
    #[error(
        "could not create the virtualenv at {path}: `python3 -m venv` failed; install the venv \
         module (Debian/Ubuntu: `apt-get install python3-venv`)"
    )]
    Create {
        path: PathBuf,
        #[source]
        source: ProcessError,
    },
    #[error("could not install {requirements} into {path}")]
    Install {
        path: PathBuf,
        requirements: PathBuf,
        #[source]
        source: ProcessError,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A ready-to-use virtualenv: created, with the pinned requirements installed.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The venv of the workspace at `root`, without creating or checking anything.
    pub fn at(root: &Path) -> Self {
        Venv { dir: root.join(".venv") }
    }

    /// Creates `<root>/.venv` if missing and installs the pinned requirements whenever the
    /// requirements file differs from what was last installed.
    pub fn ensure(root: &Path) -> Result<Self, VenvError> {
        let venv = Self::at(root);
        let requirements = root.join(REQUIREMENTS);
        let wanted = requirements_digest(&requirements)?;

        if !venv.bin("python").exists() {
            venv.create()?;
        }

        let marker = venv.dir.join(MARKER);
        let installed = fs::read_to_string(&marker).unwrap_or_default();
        if installed.trim() != wanted {
            tracing::info!(
                "installing the pinned Python tools (moto, MiniStack, cargo-lambda, zig) into {} — takes about a minute",
                venv.dir.display()
            );
            process::run(
                Command::new(venv.bin("python"))
                    .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                    .arg(&requirements),
            )
            .map_err(|source| VenvError::Install {
                path: venv.dir.clone(),
                requirements: requirements.clone(),
                source,
            })?;
            fs::write(&marker, format!("{wanted}\n")).map_err(|source| VenvError::Io {
                what: "could not write",
                path: marker.clone(),
                source,
            })?;
        } else {
            tracing::debug!("venv {} is up to date", venv.dir.display());
        }
        Ok(venv)
    }

    fn create(&self) -> Result<(), VenvError> {
        tracing::info!("creating the Python virtualenv {}", self.dir.display());
        let result = process::run(Command::new("python3").args(["-m", "venv"]).arg(&self.dir));
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Err(VenvError::PythonMissing),
            Err(source) => {
                // Debian without python3-venv leaves a venv without pip behind; remove it so
                // the next run starts clean instead of failing inside pip.
                let _ = fs::remove_dir_all(&self.dir);
                Err(VenvError::Create { path: self.dir.clone(), source })
            }
        }
    }

    /// The venv directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The venv's `bin` directory (put it first on PATH so tools find each other).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// An executable installed in the venv, e.g. `bin("cargo-lambda")`, `bin("moto_server")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// `PATH` with the venv's bin directory prepended.
    pub fn path_env(&self) -> Result<std::ffi::OsString, std::env::JoinPathsError> {
        let current = std::env::var_os("PATH").unwrap_or_default();
        std::env::join_paths(std::iter::once(self.bin_dir()).chain(std::env::split_paths(&current)))
    }
}

fn requirements_digest(path: &Path) -> Result<String, VenvError> {
    let bytes =
        fs::read(path).map_err(|source| VenvError::Io { what: "could not read", path: path.to_path_buf(), source })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_paths_are_inside_the_project_venv() {
        let venv = Venv::at(Path::new("/ws"));
        assert_eq!(venv.bin("cargo-lambda"), Path::new("/ws/.venv/bin/cargo-lambda"));
        assert_eq!(venv.bin("moto_server"), Path::new("/ws/.venv/bin/moto_server"));
    }

    #[test]
    fn requirements_file_pins_exactly_the_four_tools() {
        let text = fs::read_to_string(crate::workspace::root().join(REQUIREMENTS)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["moto[server]==5.2.5", "ministack==1.5.33", "cargo-lambda==1.9.2", "ziglang==0.17.1"]);
    }
}
