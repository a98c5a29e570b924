//! Harness for the end-to-end tests: a moto server from the project's pinned virtualenv,
//! started on a free loopback port for one test and stopped when the test ends.
//!
//! The emulator is never optional: when it is not installed the tests fail and say how to
//! install it (`cargo xtask test` does so itself).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The workspace root, from this crate's location.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}

/// A bundled test photo, by file name (see `tests/fixtures/photos/LICENSES.md`).
pub fn photo(name: &str) -> Vec<u8> {
    let path = workspace_root().join("tests/fixtures/photos").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// A running moto server. Dropping it stops the process.
pub struct Moto {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Moto {
    /// Starts `moto_server` from `<root>/.venv` on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        let root = workspace_root();
        let server = root.join(".venv/bin/moto_server");
        if !server.exists() {
            bail!(
                "the AWS emulator is not installed at {}; run `cargo xtask test`, which creates the \
                 project's virtualenv with the pinned moto",
                server.display()
            );
        }
        let port = free_port()?;
        let log_dir = root.join("target/e2e");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join(format!("moto-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let mut moto = Self { child, endpoint: format!("http://127.0.0.1:{port}"), log };
        moto.wait_ready(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(moto)
    }

    fn wait_ready(&mut self, address: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited with {status} before it was ready; see {}", self.log.display());
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("moto_server did not listen on {address} within 60 s; see {}", self.log.display())
    }

    /// The emulator's endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for the emulator: its endpoint, a fixed region and test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "moto"))
            .http_client(api_common::https_client())
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
