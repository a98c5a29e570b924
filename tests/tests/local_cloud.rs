//! `cargo xtask local up|status|down` and the local data plane, run as the program, against
//! a moto server of the test's own.
//!
//! The functions deployed here are not the release builds (minutes to build) but a small
//! Python `bootstrap` that speaks the Lambda Runtime API and echoes the payload 2.0 event it
//! gets (see [`e2e::echo_bootstrap`]), zipped and deployed through a manifest of their own:
//! the data plane runs whatever code the artifact store holds, so this tests routing,
//! discovery, the event, code fetching and the process lifecycle; the real functions are
//! tested through the runtime in `local_runtime.rs`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use e2e::{echo_bootstrap, free_loopback_port, xtask, xtask_bin, Moto};
use serde_json::{json, Value};
use xtask::arch::Arch;
use xtask::manifest::{Artifact, Manifest};

/// A scratch directory under `target/e2e/local-cloud/`.
fn scratch(test: &str) -> PathBuf {
    let dir = e2e::workspace_root().join("target/e2e/local-cloud").join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A build manifest whose every function is the echo bootstrap tagged `tag`.
fn echo_manifest(dir: &Path, tag: &str) -> PathBuf {
    let zip = xtask::artifact::zip_bootstrap(&echo_bootstrap(tag)).unwrap();
    let zip_path = dir.join(format!("echo-{tag}.zip"));
    std::fs::write(&zip_path, &zip).unwrap();
    let (hex, base64) = xtask::artifact::sha256(&zip);
    let artifact = Artifact {
        zip_path: zip_path.to_str().unwrap().to_owned(),
        zipped_bytes: zip.len() as u64,
        unzipped_bytes: echo_bootstrap(tag).len() as u64,
        sha256_hex: hex,
        sha256_base64: base64,
    };
    let manifest = Manifest {
        format_version: xtask::manifest::FORMAT_VERSION,
        fingerprint: format!("echo-{tag}"),
        functions: xtask::functions::FUNCTIONS
            .iter()
            .map(|function| (function.name.to_owned(), [(Arch::X86_64, artifact.clone())].into()))
            .collect(),
    };
    let path = dir.join(format!("manifest-{tag}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    path
}

fn check(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn deploy(moto: &Moto, env: &str, manifest: &Path) {
    let output = xtask(moto).args(["deploy", "--env", env, "--yes", "--manifest"]).arg(manifest).output().unwrap();
    check(output, &format!("deploy --env {env}"));
}

/// A local cloud of the test's own: its state directory and API port. Dropping it runs
/// `local down`, so no process outlives a failing test.
struct LocalCloud {
    state_dir: PathBuf,
    endpoint: String,
    api_port: u16,
}

impl LocalCloud {
    fn new(test: &str, endpoint: &str) -> Self {
        Self { state_dir: scratch(test).join("state"), endpoint: endpoint.to_owned(), api_port: free_loopback_port() }
    }

    fn command(&self, subcommand: &str) -> std::process::Command {
        let mut command = std::process::Command::new(xtask_bin());
        command
            .current_dir(e2e::workspace_root())
            .args(["local", subcommand, "--endpoint", &self.endpoint, "--api-port", &self.api_port.to_string()])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(std::process::Stdio::null());
        command
    }

    fn run(&self, subcommand: &str) -> String {
        check(self.command(subcommand).output().unwrap(), &format!("local {subcommand}"))
    }

    fn status(&self) -> Value {
        let mut command = self.command("status");
        command.arg("--json");
        serde_json::from_str(&check(command.output().unwrap(), "local status --json")).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// The pid recorded in a pid file (its first line).
    fn pid(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.state_dir.join(format!("{name}.pid"))).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn apis(&self) -> Value {
        std::fs::read(self.state_dir.join("apis.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir.join(name)).unwrap_or_default()
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let _ = self.command("down").output();
    }
}

/// Whether a process runs (a zombie does not count: it has exited).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !matches!(stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()), Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Repeats `attempt` until it returns `Some`, for up to `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Answer {
    status: u16,
    json: Value,
    headers: reqwest::header::HeaderMap,
}

async fn request(client: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Answer {
    let mut builder = client.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        builder = builder.header("content-type", "application/json").body(body.to_string());
    }
    let response = builder.send().await.unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Answer { status, json, headers }
}

async fn get(client: &reqwest::Client, url: &str) -> Answer {
    request(client, "GET", url, None).await
}

const NOT_FOUND: &str = r#"{"message":"Not Found"}"#;

/// Asks the data plane to re-read the deployed configuration now, as a deploy does.
async fn refresh(client: &reqwest::Client, cloud: &LocalCloud) {
    let response = client.post(cloud.url("/_local/refresh")).send().await.expect("POST /_local/refresh");
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_plane_serves_every_deployed_environment_as_deployed() {
    let moto = Moto::start().unwrap();
    let dir = scratch("serves");
    let cloud = LocalCloud::new("serves", moto.endpoint());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    // The emulator already runs (the test's): `up` starts only the data plane.
    let up = cloud.run("up");
    assert!(up.contains("not started by xtask"), "{up}");
    assert!(cloud.pid("moto").is_none(), "up must not record an emulator it did not start");
    let dataplane = cloud.pid("dataplane").expect("a data plane pid file");
    assert!(running(dataplane));
    // Before any deploy: nothing is routed, and the answer is API Gateway's.
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!((answer.status, answer.json.to_string()), (404, NOT_FOUND.to_owned()));

    deploy(&moto, "local", &echo_manifest(&dir, "v1"));

    // Picked up without a restart; the GET route reaches upload-url with its payload 2.0 event.
    let answer = eventually(Duration::from_secs(20), "the deployed local API", || async {
        let answer = get(&client, &cloud.url("/upload-url?contentType=image/png&a=1")).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    let echo = &answer.json;
    assert_eq!(echo["tag"], "v1");
    assert_eq!(echo["function"], "image-analyzer-local-upload-url");
    assert_eq!(echo["routeKey"], "GET /upload-url");
    assert_eq!(echo["rawPath"], "/upload-url");
    assert_eq!(echo["rawQueryString"], "contentType=image/png&a=1");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["stage"], "$default");
    assert_eq!(answer.headers["x-echo-tag"], "v1");
    assert!(answer.headers.contains_key("apigw-requestid"));
    // The function runs as deployed, pointed at the emulator.
    let env = &echo["env"];
    assert_eq!(env["AWS_ENDPOINT_URL"], moto.endpoint());
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "test");
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "test");
    assert_eq!(env["S3_FORCE_PATH_STYLE"], "true");
    assert_eq!(env["UPLOAD_BUCKET"], "image-analyzer-local-uploads-123456789012");
    assert_eq!(env["UPLOAD_URL_EXPIRY_SECONDS"], "300");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    // `up` started the local face-analysis service: Rekognition calls go there.
    let face_url = std::fs::read_to_string(cloud.state_dir.join("face.url")).expect("up wrote face.url");
    assert_eq!(env["AWS_ENDPOINT_URL_REKOGNITION"], face_url.trim());
    let local_api_id = echo["apiId"].as_str().unwrap().to_owned();
    let mut function_pids = vec![echo["pid"].as_u64().unwrap()];

    // The POST route reaches analyze, with the body.
    let answer = request(&client, "POST", &cloud.url("/analyze"), Some(json!({"fileKey": "uploads/x.jpg"}))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["function"], "image-analyzer-local-analyze");
    assert_eq!(answer.json["routeKey"], "POST /analyze");
    assert_eq!(answer.json["method"], "POST");
    assert_eq!(answer.json["isBase64Encoded"], false);
    assert_eq!(
        serde_json::from_str::<Value>(answer.json["body"].as_str().unwrap()).unwrap(),
        json!({"fileKey": "uploads/x.jpg"})
    );
    assert_eq!(answer.json["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    function_pids.push(answer.json["pid"].as_u64().unwrap());

    // Routes that are not deployed are API Gateway's 404.
    for (method, path) in [("GET", "/analyze"), ("POST", "/upload-url"), ("POST", "/"), ("GET", "/upload-url/x")] {
        let answer = request(&client, method, &cloud.url(path), None).await;
        assert_eq!((answer.status, answer.json.to_string()), (404, NOT_FOUND.to_owned()), "{method} {path}");
    }

    // A crash is a 502, logged, and the next request gets a fresh instance.
    let answer = get(&client, &cloud.url("/upload-url?exit=3")).await;
    assert_eq!((answer.status, answer.json.clone()), (502, json!({"message": "Internal Server Error"})));
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    function_pids.push(answer.json["pid"].as_u64().unwrap());
    let function_log = cloud.log("logs/image-analyzer-local-upload-url.log");
    assert!(function_log.contains("crashing on purpose"), "function log:\n{function_log}");
    assert!(cloud.log("dataplane.log").contains("(crashed)"), "{}", cloud.log("dataplane.log"));

    // Overrunning the function timeout (upload-url: 5 s) is a 503.
    let begun = Instant::now();
    let answer = get(&client, &cloud.url("/upload-url?sleep=30")).await;
    assert_eq!((answer.status, answer.json.clone()), (503, json!({"message": "Service Unavailable"})));
    assert!(begun.elapsed() < Duration::from_secs(15), "took {:?}", begun.elapsed());
    assert!(cloud.log("dataplane.log").contains("(function timeout)"));

    // A second environment deployed into the same emulator gets a port of its own.
    deploy(&moto, "dev", &echo_manifest(&dir, "v1"));
    // (The API can be listed before its routes exist, when a poll lands mid-deploy: wait for
    // a route to answer.)
    let (dev_id, dev_url) = eventually(Duration::from_secs(20), "the dev API, routed", || async {
        let apis = cloud.apis();
        let (id, url) = apis
            .as_object()?
            .iter()
            .find(|(_, api)| api["environment"] == "dev")
            .map(|(id, api)| (id.clone(), api["url"].as_str().unwrap().to_owned()))?;
        (get(&client, &format!("{url}/upload-url")).await.status == 200).then_some((id, url))
    })
    .await;
    let apis = cloud.apis();
    assert_eq!(apis[&local_api_id]["environment"], "local");
    assert_eq!(apis[&local_api_id]["name"], "image-analyzer-local-api");
    assert_eq!(apis[&local_api_id]["url"], cloud.url(""));
    assert_eq!(apis[&dev_id]["name"], "image-analyzer-dev-api");
    assert_ne!(dev_url, cloud.url(""));
    let dev_port: u16 = dev_url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(dev_port > cloud.api_port, "{dev_url}");
    let answer = get(&client, &format!("{dev_url}/upload-url")).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["function"], "image-analyzer-dev-upload-url");
    assert_eq!(answer.json["apiId"], dev_id.as_str());
    assert_eq!(answer.json["env"]["AWS_REGION"], "eu-west-1");
    function_pids.push(answer.json["pid"].as_u64().unwrap());
    let answer = get(&client, &format!("{dev_url}/nothing")).await;
    assert_eq!((answer.status, answer.json.to_string()), (404, NOT_FOUND.to_owned()));

    // New code is picked up without a restart: a new code hash, new instances.
    deploy(&moto, "local", &echo_manifest(&dir, "v2"));
    let answer = eventually(Duration::from_secs(20), "the v2 code", || async {
        let answer = get(&client, &cloud.url("/upload-url")).await;
        (answer.status == 200 && answer.json["tag"] == "v2").then_some(answer)
    })
    .await;
    function_pids.push(answer.json["pid"].as_u64().unwrap());
    assert!(!function_pids[..function_pids.len() - 1].contains(&function_pids[function_pids.len() - 1]));

    // The face-analysis service, when it runs, is where Rekognition calls go.
    std::fs::write(cloud.state_dir.join("face.url"), "http://127.0.0.1:4999\n").unwrap();
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!(answer.json["env"]["AWS_ENDPOINT_URL_REKOGNITION"], "http://127.0.0.1:4999");
    function_pids.push(answer.json["pid"].as_u64().unwrap());

    // Status shows the data plane and both APIs; the emulator is the test's.
    let status = cloud.status();
    let processes = status["processes"].as_array().unwrap();
    assert_eq!(processes[1]["name"], "face");
    assert_eq!(processes[2]["name"], "data plane");
    assert_eq!(processes[2]["pid"], dataplane);
    assert_eq!(processes[2]["healthy"], true);
    assert_eq!(processes[0]["pid"], Value::Null);
    assert_eq!(processes[0]["healthy"], true);
    assert!(status["apis"][&local_api_id].is_object() && status["apis"][&dev_id].is_object(), "{status}");

    // Down stops the data plane and every function process, and leaves the test's moto alone.
    let down = cloud.run("down");
    assert!(down.contains("stopped"), "{down}");
    assert!(!running(dataplane), "the data plane {dataplane} survived `down`");
    for pid in function_pids {
        assert!(!running(pid as u32), "function process {pid} survived `down`");
    }
    assert!(cloud.pid("dataplane").is_none());
    assert!(!cloud.state_dir.join("apis.json").exists());
    let buckets = reqwest::get(moto.endpoint()).await.expect("the test's moto still runs");
    assert_eq!(buckets.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn up_status_and_down_manage_exactly_their_own_processes() {
    let endpoint = format!("http://127.0.0.1:{}", free_loopback_port());
    let cloud = LocalCloud::new("lifecycle", &endpoint);

    // Nothing runs yet.
    let status = cloud.status();
    assert_eq!(status["processes"][0]["pid"], Value::Null);
    assert_eq!(status["processes"][0]["healthy"], false);
    assert_eq!(status["processes"][1]["pid"], Value::Null);

    let up = cloud.run("up");
    assert!(up.contains("started"), "{up}");
    let moto = cloud.pid("moto").expect("a moto pid file");
    let dataplane = cloud.pid("dataplane").expect("a data plane pid file");
    assert!(running(moto) && running(dataplane));
    let moto_cmdline = std::fs::read(format!("/proc/{moto}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&moto_cmdline).contains("moto_server"));
    assert!(cloud.log("moto.log").len() + cloud.log("dataplane.log").len() > 0);

    // The emulator answers where it was asked to.
    let buckets = reqwest::get(&endpoint).await.unwrap();
    assert_eq!(buckets.status(), 200);
    let health: Value = reqwest::get(cloud.url("/_local/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["pid"], dataplane);
    assert_eq!(health["endpoint"], endpoint.as_str());

    // `up` again changes nothing.
    let again = cloud.run("up");
    assert_eq!(again.matches("already running").count(), 3, "{again}");
    let face = cloud.pid("face").expect("a face service pid file");
    assert_eq!((cloud.pid("moto"), cloud.pid("dataplane")), (Some(moto), Some(dataplane)));

    let status = cloud.status();
    for (index, pid) in [(0, moto), (1, face), (2, dataplane)] {
        assert_eq!(status["processes"][index]["pid"], pid, "{status}");
        assert_eq!(status["processes"][index]["healthy"], true, "{status}");
    }
    let text = check(cloud.command("status").output().unwrap(), "local status");
    assert!(text.contains(&moto.to_string()) && text.contains(&endpoint) && text.contains(&cloud.url("")), "{text}");

    let down = cloud.run("down");
    assert_eq!(down.matches("stopped").count(), 3, "{down}");
    for pid in [moto, face, dataplane] {
        assert!(!running(pid), "process {pid} survived `down`");
    }
    assert_eq!((cloud.pid("moto"), cloud.pid("face"), cloud.pid("dataplane")), (None, None, None));
    let status = cloud.status();
    assert_eq!(status["processes"][0]["healthy"], false);
    assert_eq!(status["processes"][1]["pid"], Value::Null);
    assert_eq!(status["processes"][2]["pid"], Value::Null);
    let down = cloud.run("down");
    assert_eq!(down.matches("not running").count(), 3, "{down}");

    // A pid file whose pid now belongs to another process (here: this test) is stale: `down`
    // removes it and signals nothing.
    std::fs::write(cloud.state_dir.join("moto.pid"), format!("{}\n", std::process::id())).unwrap();
    let down = cloud.run("down");
    assert!(down.contains("stale pid file removed"), "{down}");
    assert!(cloud.pid("moto").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_to_a_local_endpoint_where_nothing_listens_starts_the_local_cloud() {
    let dir = scratch("deploy-starts");
    let endpoint = format!("http://127.0.0.1:{}", free_loopback_port());
    let state_dir = dir.join("state");
    let api_port = free_loopback_port();
    // Stops what the deploy starts, whatever happens.
    let cloud = LocalCloud { state_dir: state_dir.clone(), endpoint: endpoint.clone(), api_port };

    let output = std::process::Command::new(xtask_bin())
        .current_dir(e2e::workspace_root())
        .args(["deploy", "--env", "local", "--yes", "--manifest"])
        .arg(echo_manifest(&dir, "v1"))
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("XTASK_LOCAL_STATE_DIR", &state_dir)
        .env("XTASK_LOCAL_API_PORT", api_port.to_string())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = check(output, "deploy --env local");
    assert!(stdout.contains("Apply:"), "{stdout}");
    assert!(cloud.pid("moto").is_some_and(running), "deploy did not start moto");
    assert!(cloud.pid("dataplane").is_some_and(running), "deploy did not start the data plane");

    let client = reqwest::Client::new();
    let answer = eventually(Duration::from_secs(20), "the deployed API", || async {
        let answer = get(&client, &cloud.url("/upload-url")).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert_eq!(answer.json["function"], "image-analyzer-local-upload-url");
    assert_eq!(answer.json["env"]["AWS_ENDPOINT_URL"], endpoint.as_str());
    let function_pid = answer.json["pid"].as_u64().unwrap() as u32;

    let (moto, dataplane) = (cloud.pid("moto").unwrap(), cloud.pid("dataplane").unwrap());
    cloud.run("down");
    for pid in [moto, dataplane, function_pid] {
        assert!(!running(pid), "process {pid} survived `down`");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_is_served_when_it_returns_and_a_frozen_emulator_does_not_stop_the_api() {
    let moto = Moto::start().unwrap();
    let dir = scratch("snapshot");
    let cloud = LocalCloud::new("snapshot", moto.endpoint());
    cloud.run("up");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    // The deploy asks the data plane to re-read the configuration before it returns, so the
    // first request after it is served, with no waiting.
    for tag in ["v1", "v2"] {
        let output = xtask(&moto)
            .args(["deploy", "--env", "local", "--yes", "--manifest"])
            .arg(echo_manifest(&dir, tag))
            .env("XTASK_LOCAL_STATE_DIR", &cloud.state_dir)
            .env("XTASK_LOCAL_API_PORT", cloud.api_port.to_string())
            .output()
            .unwrap();
        check(output, &format!("deploy {tag}"));
        let answer = get(&client, &cloud.url("/upload-url")).await;
        assert_eq!((answer.status, &answer.json["tag"]), (200, &json!(tag)), "{}", answer.json);
    }

    // A reserved concurrency set on a function is its cap; a reserved concurrency of 0
    // throttles it.
    let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config().await);
    let function = "image-analyzer-local-upload-url";
    let reserve = |n: i32| lambda.put_function_concurrency().function_name(function).reserved_concurrent_executions(n);
    reserve(1).send().await.unwrap();
    refresh(&client, &cloud).await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (client, url) = (client.clone(), cloud.url("/upload-url?sleep=0.3"));
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.json);
        pids.insert(answer.json["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), 1, "one instance served the three requests in turn: {pids:?}");
    reserve(0).send().await.unwrap();
    refresh(&client, &cloud).await;
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!((answer.status, answer.json.clone()), (429, json!({"message": "Too Many Requests"})));
    lambda.delete_function_concurrency().function_name(function).send().await.unwrap();
    refresh(&client, &cloud).await;

    // Code put into the emulator behind the tool's back is never run: its hash is in no
    // record of what this checkout built or deployed.
    let deployed = lambda.get_alias().function_name(function).name("live").send().await.unwrap();
    let rogue = xtask::artifact::zip_bootstrap(&echo_bootstrap("rogue")).unwrap();
    let updated = lambda
        .update_function_code()
        .function_name(function)
        .zip_file(aws_sdk_lambda::primitives::Blob::new(rogue))
        .send()
        .await
        .unwrap();
    let version = lambda.publish_version().function_name(function).send().await.unwrap();
    let live = |version: &str| {
        lambda.update_alias().function_name(function).name("live").function_version(version.to_owned()).send()
    };
    live(version.version().unwrap()).await.unwrap();
    refresh(&client, &cloud).await;
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!((answer.status, answer.json.clone()), (502, json!({"message": "Internal Server Error"})));
    let log = cloud.log("dataplane.log");
    let refusal = format!("refusing to run {function} (live): its code {}", updated.code_sha256().unwrap());
    assert!(log.contains(&refusal), "{log}");
    live(deployed.function_version().unwrap()).await.unwrap();
    refresh(&client, &cloud).await;

    // The emulator hangs: requests are answered from the snapshot, routed or not, in time.
    moto.freeze(true);
    for _ in 0..10 {
        let begun = Instant::now();
        let answer = get(&client, &cloud.url("/upload-url")).await;
        assert_eq!((answer.status, &answer.json["tag"]), (200, &json!("v2")), "{}", answer.json);
        let answer = request(&client, "POST", &cloud.url("/analyze"), Some(json!({"fileKey": "k"}))).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let answer = get(&client, &cloud.url("/not-deployed")).await;
        assert_eq!((answer.status, answer.json.to_string()), (404, NOT_FOUND.to_owned()));
        assert!(begun.elapsed() < Duration::from_secs(2), "served in {:?} with the emulator frozen", begun.elapsed());
    }
    moto.freeze(false);

    // The emulator grants no web page CORS: a preflight from another origin gets no
    // Access-Control-Allow-Origin, for the emulator's own API or for a bucket.
    let bucket = "image-analyzer-local-uploads-123456789012";
    for url in [format!("{}/", moto.endpoint()), format!("{}/{bucket}/uploads/x.jpg", moto.endpoint())] {
        let preflight = client
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", "http://evil.example")
            .header("Access-Control-Request-Method", "PUT")
            .send()
            .await
            .unwrap();
        let granted = preflight.headers().get("access-control-allow-origin").cloned();
        assert_eq!(granted, None, "{url} granted {granted:?} to another origin");
    }

    // A request for another host, as a DNS-rebinding page would send it, is refused, and the
    // log says why.
    let rebound = client.get(cloud.url("/upload-url")).header("Host", "evil.example:3000").send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    assert_eq!(rebound.text().await.unwrap(), r#"{"message":"Forbidden"}"#);
    let log = cloud.log("dataplane.log");
    assert!(log.contains(r#"refused a request for Host "evil.example:3000""#), "{log}");

    // API Gateway's payload limit: a body announced over 10 MB is refused, unread, with its
    // answer.
    use std::io::{Read as _, Write as _};
    let mut large = std::net::TcpStream::connect(("127.0.0.1", cloud.api_port)).unwrap();
    let announced = 10 * 1024 * 1024 + 1;
    write!(large, "POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {announced}\r\n\r\n").unwrap();
    large.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = large.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with(r#"{"message":"Request Entity Too Large"}"#), "{answer}");

    // A client that never finishes its headers is cut off (the header timeout is 10 s).
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", cloud.api_port)).unwrap();
    stalled.write_all(b"GET /upload-url HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let begun = Instant::now();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(begun.elapsed() < Duration::from_secs(20), "the stalled connection stayed open {:?}", begun.elapsed());
    // And the API still answers.
    let answer = get(&client, &cloud.url("/upload-url")).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_stage_burst_are_throttled_with_api_gateways_answer() {
    let moto = Moto::start().unwrap();
    let dir = scratch("throttle");
    let cloud = LocalCloud::new("throttle", moto.endpoint());
    cloud.run("up");

    // The local environment with a stage limit of 1 request per second and a burst of 3.
    let environments = dir.join("environments");
    std::fs::create_dir_all(&environments).unwrap();
    let local = std::fs::read_to_string(e2e::workspace_root().join("environments/local.yaml")).unwrap();
    let throttled = local.replace("rate_limit: 50.0", "rate_limit: 1.0").replace("burst_limit: 100", "burst_limit: 3");
    assert_ne!(local, throttled, "local.yaml's throttling is what this test replaces");
    std::fs::write(environments.join("local.yaml"), throttled).unwrap();
    let output = xtask(&moto)
        .args(["deploy", "--env", "local", "--yes", "--manifest"])
        .arg(echo_manifest(&dir, "v1"))
        .env(xtask::config::ENVIRONMENTS_DIR_ENV, &environments)
        .env("XTASK_LOCAL_STATE_DIR", &cloud.state_dir)
        .env("XTASK_LOCAL_API_PORT", cloud.api_port.to_string())
        .output()
        .unwrap();
    check(output, "deploy --env local");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let begun = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = get(&client, &cloud.url("/upload-url")).await;
        if answer.status == 429 {
            assert_eq!(answer.json, json!({"message": "Too Many Requests"}));
        }
        statuses.push(answer.status);
    }
    let allowed = 3 + begun.elapsed().as_secs() as usize + 1;
    let passed = statuses.iter().filter(|status| **status == 200).count();
    assert!(passed >= 3, "the burst of 3 passes: {statuses:?}");
    assert!(passed <= allowed, "at most the burst and 1/s after it: {statuses:?} in {:?}", begun.elapsed());
    assert!(statuses.iter().all(|status| *status == 200 || *status == 429), "{statuses:?}");
    assert!(cloud.log("dataplane.log").contains("(throttled by the stage)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_created_through_the_local_s3_endpoint_invoke_the_notified_function_with_its_retries() {
    let moto = Moto::start().unwrap();
    let dir = scratch("notifies");
    let cloud = LocalCloud::new("notifies", moto.endpoint());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    cloud.run("up");
    // The stack notifies analyze of uploads/*.jpg and *.png, retried twice.
    deploy(&moto, "local", &echo_manifest(&dir, "v1"));
    let echo = eventually(Duration::from_secs(20), "the deployed local API", || async {
        let answer = get(&client, &cloud.url("/upload-url")).await;
        (answer.status == 200).then_some(answer.json)
    })
    .await;
    // The functions' S3 endpoint is the data plane's, not the emulator.
    let s3 = echo["env"]["AWS_ENDPOINT_URL_S3"].as_str().expect("functions get an S3 endpoint").to_owned();
    assert_ne!(s3, moto.endpoint());
    let bucket = echo["env"]["UPLOAD_BUCKET"].as_str().unwrap().to_owned();
    let put = |key: &str| {
        let url = format!("{s3}/{bucket}/{key}");
        let client = client.clone();
        async move {
            let response = client.put(&url).header("content-type", "image/jpeg").body("bytes").send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "PUT {url}");
        }
    };
    let events = |key: &'static str| {
        let log = cloud.log("logs/image-analyzer-local-analyze.log");
        log.lines().filter(|line| line.contains("s3 event ObjectCreated:Put") && line.ends_with(key)).count()
    };

    // Objects the notification does not cover invoke nothing; an upload invokes analyze once.
    put("results/a.json").await;
    put("uploads/a.txt").await;
    put("uploads/a+b.jpg").await;
    eventually(Duration::from_secs(20), "the upload's event", || async {
        (events("uploads/a%2Bb.jpg") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = cloud.log("logs/image-analyzer-local-analyze.log");
    assert_eq!(log.matches("s3 event").count(), 1, "only the upload was notified, with its key encoded:\n{log}");
    // Through the data plane, the object is in the emulator as sent.
    let s3_client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config().await).force_path_style(true).build(),
    );
    let stored = s3_client.get_object().bucket(&bucket).key("uploads/a.txt").send().await.expect("GetObject");
    assert_eq!(&stored.body.collect().await.unwrap().into_bytes()[..], b"bytes");

    // A failing invocation is tried 1 + 2 times (the invoke configuration's retries), then dropped.
    put("uploads/fail.jpg").await;
    eventually(Duration::from_secs(30), "the retries", || async {
        cloud.log("dataplane.log").contains("dropped after 3 attempts").then_some(())
    })
    .await;
    assert_eq!(events("uploads/fail.jpg"), 3, "{}", cloud.log("logs/image-analyzer-local-analyze.log"));
}
