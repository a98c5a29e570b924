//! The browser the page's end-to-end test drives: Debian's Chromium and its ChromeDriver
//! (packages `chromium` and `chromium-driver`), installed with apt when missing and this
//! process may (root, or sudo without a password).

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::process::{self, ProcessError};

/// Where Debian's packages put the programs.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The Debian packages that hold them.
pub const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// The variables that tell the browser test where the programs are.
pub const CHROMIUM_ENV: &str = "E2E_CHROMIUM";
pub const CHROMEDRIVER_ENV: &str = "E2E_CHROMEDRIVER";

#[derive(Debug, Error)]
pub enum BrowserError {
    #[error(
        "Chromium and ChromeDriver are not installed ({CHROMIUM}, {CHROMEDRIVER}), and this user cannot \
         install them; run `sudo apt-get install chromium chromium-driver`"
    )]
    CannotInstall,
    #[error("installing Chromium and ChromeDriver with apt-get failed")]
    Install(#[source] ProcessError),
    #[error("apt-get installed {packages} but {missing} is still missing")]
    StillMissing { packages: String, missing: String },
}

/// Installed Chromium and ChromeDriver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    /// The installed browser, installing Debian's packages first when either program is
    /// missing.
    pub fn ensure() -> Result<Self, BrowserError> {
        let browser = Self { chromium: CHROMIUM.into(), chromedriver: CHROMEDRIVER.into() };
        if browser.missing().is_empty() {
            return Ok(browser);
        }
        let packages = PACKAGES.join(" ");
        // sudo passes no environment through: `env` sets apt's inside it.
        let (program, prefix): (&str, &[&str]) = if is_root() {
            ("apt-get", &[])
        } else if sudo_without_password() {
            ("sudo", &["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"])
        } else {
            return Err(BrowserError::CannotInstall);
        };
        tracing::info!("installing {packages} with apt-get (the browser test's Chromium) — takes a minute or two");
        let apt = |args: &[&str]| {
            let mut command = Command::new(program);
            command.args(prefix).args(args).env("DEBIAN_FRONTEND", "noninteractive");
            process::run(&mut command).map_err(BrowserError::Install)
        };
        apt(&["update", "-qq"])?;
        apt(&[&["install", "-y", "-qq", "--no-install-recommends"][..], &PACKAGES[..]].concat())?;
        let missing = browser.missing();
        if !missing.is_empty() {
            return Err(BrowserError::StillMissing { packages, missing: missing.join(", ") });
        }
        Ok(browser)
    }

    fn missing(&self) -> Vec<String> {
        [&self.chromium, &self.chromedriver]
            .into_iter()
            .filter(|path| !is_executable(path))
            .map(|path| path.display().to_string())
            .collect()
    }

    /// The variables the browser test reads.
    pub fn env(&self) -> [(&'static str, &Path); 2] {
        [(CHROMIUM_ENV, &self.chromium), (CHROMEDRIVER_ENV, &self.chromedriver)]
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    process::capture(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

fn sudo_without_password() -> bool {
    Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|output| output.status.success())
}
