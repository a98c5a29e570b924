//! Harness for the end-to-end tests: an AWS emulator from the project's pinned virtualenv
//! (moto, or MiniStack with `E2E_EMULATOR=ministack`), started on a free loopback port for
//! one test and stopped when the test ends; the deployer's harness ([`deployer`]); and a
//! fault-injecting proxy ([`fault`]).
//!
//! The emulator is never optional: when it is not installed the tests fail and say how to
//! install it (`cargo xtask test` does so itself).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod deployer;
pub mod fault;
pub mod local_cloud;

/// The workspace root, from this crate's location.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}

/// A bundled test photo, by file name (see `tests/fixtures/photos/LICENSES.md`).
pub fn photo(name: &str) -> Vec<u8> {
    let path = workspace_root().join("tests/fixtures/photos").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// Which AWS emulator the end-to-end tests run against: moto (the default), or MiniStack
/// when `E2E_EMULATOR=ministack` (`cargo xtask test` runs the deployer's suites on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    Moto,
    MiniStack,
}

/// The variable that picks the emulator.
pub const EMULATOR_ENV: &str = "E2E_EMULATOR";

impl EmulatorKind {
    /// The emulator `E2E_EMULATOR` names; moto when it is unset.
    pub fn from_env() -> Self {
        match std::env::var(EMULATOR_ENV).as_deref() {
            Ok("ministack") => Self::MiniStack,
            Ok("moto") | Err(_) => Self::Moto,
            Ok(other) => panic!("{EMULATOR_ENV}={other}: expected moto or ministack"),
        }
    }

    /// Its name for `local up --emulator`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Moto => "moto",
            Self::MiniStack => "ministack",
        }
    }

    /// The deployer's name for it.
    pub fn xtask_kind(self) -> xtask::config::EmulatorKind {
        match self {
            Self::Moto => xtask::config::EmulatorKind::Moto,
            Self::MiniStack => xtask::config::EmulatorKind::MiniStack,
        }
    }

    /// Its server in the project's virtualenv.
    fn program(self) -> &'static str {
        self.xtask_kind().program()
    }
}

/// A running AWS emulator from the project's virtualenv, on a free loopback port, private
/// to one test. Dropping it stops the process.
pub struct Emulator {
    kind: EmulatorKind,
    child: Child,
    endpoint: String,
    log: PathBuf,
    /// MiniStack's scratch directory (its TMPDIR), removed with it.
    scratch: Option<PathBuf>,
}

/// The tests' name for the emulator they run against, whichever it is.
pub type Moto = Emulator;

impl Emulator {
    /// Starts the emulator [`EmulatorKind::from_env`] picks.
    pub fn start() -> Result<Self> {
        Self::start_kind(EmulatorKind::from_env())
    }

    /// Starts `kind` from `<root>/.venv` on a free port and waits until it is ready.
    pub fn start_kind(kind: EmulatorKind) -> Result<Self> {
        let root = workspace_root();
        let server = root.join(".venv/bin").join(kind.program());
        if !server.exists() {
            bail!(
                "the AWS emulator is not installed at {}; run `cargo xtask test`, which creates the \
                 project's virtualenv with the pinned moto and MiniStack",
                server.display()
            );
        }
        let port = free_port()?;
        let log_dir = root.join("target/e2e");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join(format!("{}-{port}.log", kind.program()));
        let log_file = std::fs::File::create(&log)?;
        let dir = log_dir.join(format!("ministack-{port}"));
        let scratch = (kind == EmulatorKind::MiniStack).then(|| dir.clone());
        if let Some(dir) = &scratch {
            std::fs::create_dir_all(dir)?;
        }
        let mut command =
            xtask::local::emulator::launch(kind.xtask_kind(), &server, SocketAddr::from(([127, 0, 0, 1], port)), &dir);
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let mut emulator = Self { kind, child, endpoint: format!("http://127.0.0.1:{port}"), log, scratch };
        emulator.wait_ready(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(emulator)
    }

    /// Which emulator this is.
    pub fn kind(&self) -> EmulatorKind {
        self.kind
    }

    fn wait_ready(&mut self, address: SocketAddr) -> Result<()> {
        let program = self.kind.program();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{program} exited with {status} before it was ready; see {}", self.log.display());
            }
            if self.answers(address) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{program} was not ready on {address} within 60 s; see {}", self.log.display())
    }

    /// Whether the emulator is ready: moto once it listens, MiniStack once its readiness
    /// endpoint answers 200.
    fn answers(&self, address: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else { return false };
        match self.kind {
            EmulatorKind::Moto => true,
            EmulatorKind::MiniStack => {
                use std::io::{Read as _, Write as _};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let request = "GET /_ministack/ready HTTP/1.0\r\nHost: localhost\r\n\r\n";
                let mut status = [0_u8; 12];
                stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_exact(&mut status).is_ok()
                    && status.ends_with(b" 200")
            }
        }
    }

    /// The emulator's endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Freezes (`true`) or thaws the emulator's process with SIGSTOP / SIGCONT: a frozen
    /// emulator accepts connections and never answers, like one that hangs.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill {signal} {} failed", self.child.id());
    }

    /// SDK configuration for the emulator: its endpoint, a fixed region and test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(&self.endpoint).await
    }
}

/// An AWS endpoint the deployer can be pointed at: an emulator, or a proxy in front of one.
pub trait Endpoint {
    /// Its URL, e.g. `http://127.0.0.1:41234`.
    fn endpoint(&self) -> &str;
}

impl Endpoint for Emulator {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Endpoint for fault::FaultProxy {
    fn endpoint(&self) -> &str {
        fault::FaultProxy::endpoint(self)
    }
}

/// SDK configuration for an emulator at `endpoint`: us-east-1 and test credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_in(endpoint, "us-east-1").await
}

/// SDK configuration for an emulator at `endpoint`, in `region`, with test credentials.
pub async fn sdk_config_in(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "emulator"))
        .http_client(api_common::https_client())
        .load()
        .await
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // A frozen process cannot die until it runs again.
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// A loopback port free now, for a server a test starts later (perhaps minutes later, after a
/// build). A port the kernel picked (`bind` to port 0) could meanwhile be given to any
/// outgoing connection or other listener of the tests running in parallel; so ports come from
/// below the kernel's ephemeral range (32768-60999 by default), which it never hands out, each
/// test taking its own. They are [`PORT_STRIDE`] apart, and each one's next few are free too:
/// the local cloud binds the ports after its emulator's and its API's (its S3 endpoint, other
/// environments' APIs).
fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const LAST: u32 = 32_000;
    let slots = (LAST - FIRST) / PORT_STRIDE;
    // Test binaries start apart, so that one's ports are not the last one's lingering ones.
    let start = std::process::id() % slots;
    for _ in 0..slots {
        let slot = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % slots;
        let port = FIRST + slot * PORT_STRIDE;
        let free = (port..port + PORT_STRIDE).all(|port| TcpListener::bind(("127.0.0.1", port as u16)).is_ok());
        if free {
            return Ok(port as u16);
        }
    }
    bail!("no free loopback port between {FIRST} and {LAST}")
}

/// How far apart [`free_port`]'s ports are.
const PORT_STRIDE: u32 = 8;

/// The deployer binary the tests run as a program. `cargo xtask test` passes the one it
/// runs as `XTASK_BIN`; otherwise the workspace's debug build.
pub fn xtask_bin() -> PathBuf {
    match std::env::var_os("XTASK_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("target/debug/xtask"),
    }
}

/// A `cargo xtask ...` command pointed at `target`: `AWS_ENDPOINT_URL` and test credentials
/// are the only difference from a run against AWS.
pub fn xtask(target: &impl Endpoint) -> Command {
    let bin = xtask_bin();
    assert!(bin.exists(), "the xtask binary {} does not exist; run the tests with `cargo xtask test`", bin.display());
    let mut command = Command::new(bin);
    command
        .current_dir(workspace_root())
        .env("AWS_ENDPOINT_URL", target.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .stdin(Stdio::null());
    command
}

/// A free TCP port on 127.0.0.1, which no other test of this run takes (see [`free_port`]).
pub fn free_loopback_port() -> u16 {
    free_port().expect("a free loopback port")
}

/// The real Python interpreter (`sys.executable`, not a shim that needs `HOME`, which a
/// function's environment lacks), for `#!` lines of test bootstraps.
pub fn python() -> String {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is a prerequisite of this project (README) and must be on PATH");
    String::from_utf8(output.stdout).expect("a UTF-8 path").trim().to_owned()
}

/// A Lambda `bootstrap` in Python (stdlib only) that speaks the Runtime API and answers
/// every API Gateway payload 2.0 event with a `200` JSON echo: `tag`, its `pid`, the
/// `function` name, `routeKey`, `rawPath`, `rawQueryString`, `method`, `stage`, `apiId`,
/// `pathParameters`, `body`, `isBase64Encoded`, and `env` (the AWS and function variables).
/// Query parameters steer it: `sleep=<seconds>` first sleeps, `exit=<code>` crashes the
/// process (after printing `crashing on purpose` to stderr). An S3 notification is logged
/// (`s3 event <eventName> <keys>`) and answered, or failed when a key contains `fail`.
/// Different tags are different code (a different `CodeSha256`).
pub fn echo_bootstrap(tag: &str) -> Vec<u8> {
    const SCRIPT: &str = r#"
import json, os, sys, time, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
base = (api if "://" in api else "http://" + api) + "/2018-06-01/runtime"
KEYS = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_REKOGNITION", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "S3_FORCE_PATH_STYLE", "UPLOAD_BUCKET", "UPLOAD_URL_EXPIRY_SECONDS",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
print("echo bootstrap", TAG, "starting, pid", os.getpid(), flush=True)
while True:
    with urllib.request.urlopen(base + "/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    if "Records" in event:
        # An S3 notification: logged (for counting), and failed when a key asks for it.
        keys = [record["s3"]["object"]["key"] for record in event["Records"]]
        print("s3 event", event["Records"][0]["eventName"], " ".join(keys), flush=True)
        if any("fail" in key for key in keys):
            request = urllib.request.Request(base + "/invocation/" + request_id + "/error",
                                             data=json.dumps({"errorType": "Failed", "errorMessage": "asked to fail"}).encode(),
                                             method="POST")
        else:
            request = urllib.request.Request(base + "/invocation/" + request_id + "/response",
                                             data=json.dumps({"handled": keys}).encode(), method="POST")
        urllib.request.urlopen(request).read()
        continue
    query = event.get("queryStringParameters") or {}
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    if "exit" in query:
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(int(query["exit"]))
    context = event.get("requestContext") or {}
    answer = {
        "tag": TAG, "pid": os.getpid(), "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "routeKey": event.get("routeKey"), "rawPath": event.get("rawPath"),
        "rawQueryString": event.get("rawQueryString"), "method": (context.get("http") or {}).get("method"),
        "stage": context.get("stage"), "apiId": context.get("apiId"),
        "pathParameters": event.get("pathParameters"), "body": event.get("body"),
        "isBase64Encoded": event.get("isBase64Encoded"),
        "env": {key: os.environ.get(key) for key in KEYS},
    }
    reply = {"statusCode": 200, "headers": {"content-type": "application/json", "x-echo-tag": TAG},
             "body": json.dumps(answer)}
    request = urllib.request.Request(base + "/invocation/" + request_id + "/response",
                                     data=json.dumps(reply).encode(), method="POST")
    urllib.request.urlopen(request).read()
"#;
    format!("#!{}\nTAG = {tag:?}\n{SCRIPT}", python()).into_bytes()
}
