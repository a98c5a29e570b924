//! A whole local cloud for one test, the way a user runs it: `cargo xtask local up` on free
//! ports with its own state directory, then `deploy --env local` of the real release
//! Lambdas. Dropping it runs `local down`, so a failing test leaves no process behind.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::{free_loopback_port, workspace_root, xtask_bin};

pub struct LocalCloud {
    state: tempfile::TempDir,
    /// The emulator's endpoint.
    pub endpoint: String,
    pub api_port: u16,
    /// The deployed API's address, `http://127.0.0.1:<api_port>`.
    pub api: String,
}

impl LocalCloud {
    /// `local up` on `emulator` (`moto` or `ministack`), with the face models of the
    /// project's cache when it has them (they are large to fetch). Deploys nothing.
    pub fn up(emulator: &str) -> (Self, String) {
        let manifest = workspace_root().join("target/lambda/manifest.json");
        assert!(manifest.exists(), "no release build at {}; run the tests with `cargo xtask test`", manifest.display());
        let state = tempfile::tempdir().unwrap();
        let cached = workspace_root().join("target/local/models");
        if cached.exists() {
            std::os::unix::fs::symlink(&cached, state.path().join("models")).unwrap();
        }
        let endpoint = format!("http://127.0.0.1:{}", free_loopback_port());
        let api_port = free_loopback_port();
        let cloud = Self { state, endpoint, api_port, api: format!("http://127.0.0.1:{api_port}") };
        let up = ok(cloud.run(&["local", "up", "--endpoint", &cloud.endpoint, "--emulator", emulator]), "local up");
        (cloud, up)
    }

    /// [`LocalCloud::up`], then the stack deployed from the release build.
    pub fn deployed(emulator: &str) -> Self {
        let (cloud, _) = Self::up(emulator);
        ok(cloud.run(&["deploy", "--env", "local", "--yes", "--no-build"]), "deploy");
        cloud
    }

    /// The local cloud's state directory: pid files and logs.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Runs `xtask` against this local cloud.
    pub fn run(&self, args: &[&str]) -> Output {
        let bin = xtask_bin();
        assert!(bin.exists(), "{} does not exist; run the tests with `cargo xtask test`", bin.display());
        Command::new(bin)
            .args(args)
            .current_dir(workspace_root())
            .env("XTASK_LOCAL_STATE_DIR", self.state_dir())
            .env("XTASK_LOCAL_API_PORT", self.api_port.to_string())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .stdin(Stdio::null())
            .output()
            .expect("xtask runs")
    }

    /// The pids of the emulator, the face service and the data plane, from their pid files.
    pub fn pids(&self) -> Vec<u32> {
        ["moto.pid", "dataplane.pid", "face.pid"]
            .iter()
            .filter_map(|file| std::fs::read_to_string(self.state_dir().join(file)).ok())
            .filter_map(|text| text.lines().next().and_then(|line| line.trim().parse().ok()))
            .collect()
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let _ = self.run(&["local", "down"]);
    }
}

/// The command's stdout, after asserting that it succeeded.
pub fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}
