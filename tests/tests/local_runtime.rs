//! The local Lambda runtime (`xtask::local::runtime`) with real function processes: the
//! project's own `upload-url` and `analyze` binaries (which speak the Runtime API through the
//! real `lambda_runtime` client), and small Python bootstraps for timeouts, crashes and
//! concurrency.
//!
//! The test builds the two functions itself (`cargo build -p upload-url -p analyze`), once
//! per run; no emulator is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lambda_http::http;
use serde_json::{json, Value};
use xtask::local::event::{from_response, to_event, Bytes, EventContext};
use xtask::local::runtime::{FunctionSpec, InvokeError, Runtime, RuntimeConfig};

/// The debug binaries of the two functions, built once for all tests of this file.
struct FunctionBinaries {
    upload_url: PathBuf,
    analyze: PathBuf,
}

fn function_binaries() -> &'static FunctionBinaries {
    static BINARIES: OnceLock<FunctionBinaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(&cargo)
            .args(["build", "-p", "upload-url", "-p", "analyze", "--bins", "--message-format=json-render-diagnostics"])
            .current_dir(e2e::workspace_root())
            .output()
            .unwrap_or_else(|error| panic!("running `{cargo} build -p upload-url -p analyze`: {error}"));
        assert!(
            output.status.success(),
            "`cargo build -p upload-url -p analyze` failed ({}); the local runtime tests run the real \
             function binaries:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut executables = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(message) = serde_json::from_str::<Value>(line) else { continue };
            if message["reason"] == "compiler-artifact" {
                if let Some(executable) = message["executable"].as_str() {
                    executables.insert(
                        message["target"]["name"].as_str().unwrap_or_default().to_owned(),
                        executable.to_owned(),
                    );
                }
            }
        }
        let path = |name: &str| {
            PathBuf::from(
                executables.get(name).unwrap_or_else(|| panic!("cargo built no `{name}` binary: {executables:?}")),
            )
        };
        FunctionBinaries { upload_url: path("upload-url"), analyze: path("analyze") }
    })
}

/// A fresh scratch directory under `target/e2e/local-runtime/`.
fn scratch(test: &str) -> PathBuf {
    let dir = e2e::workspace_root().join("target/e2e/local-runtime").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn function(name: &str, bootstrap: PathBuf, dir: &Path) -> FunctionSpec {
    FunctionSpec {
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        code_sha256: "bG9jYWwtdGVzdA==".to_owned(),
        bootstrap,
        environment: BTreeMap::new(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        log_file: dir.join("logs").join(format!("{name}.log")),
        max_instances: None,
    }
}

fn api_event(method: &str, uri: &str) -> Vec<u8> {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com")
        .header("user-agent", "local-runtime-test")
        .body(Bytes::new())
        .unwrap();
    let route_key = format!("{method} {}", uri.split('?').next().unwrap());
    let ctx = EventContext::new(
        "a1b2c3d4e5",
        route_key,
        "123456789012",
        "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "127.0.0.1",
        "local-req-1",
    );
    serde_json::to_vec(&to_event(request, &ctx)).unwrap()
}

fn upload_url_function(dir: &Path) -> FunctionSpec {
    let mut spec = function("upload-url", function_binaries().upload_url.clone(), dir);
    spec.environment = BTreeMap::from([
        ("UPLOAD_BUCKET".to_owned(), "b".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "x".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "y".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ]);
    spec
}

#[tokio::test]
async fn upload_url_binary_answers_an_api_gateway_event_through_the_local_runtime() {
    let dir = scratch("upload-url");
    let runtime = Runtime::start().await.unwrap();
    let spec = upload_url_function(&dir);

    let payload = runtime.invoke(&spec, api_event("GET", "/upload-url")).await.unwrap_or_else(|error| {
        panic!("{error}\nlog:\n{}", std::fs::read_to_string(&spec.log_file).unwrap_or_default())
    });
    let response = from_response(&payload);
    assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(response.body()));
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    let file_key = body["fileKey"].as_str().unwrap();
    assert!(file_key.starts_with("uploads/") && file_key.ends_with(".jpg"), "{body}");
    let upload_url = body["uploadUrl"].as_str().unwrap();
    assert!(upload_url.contains(file_key) && upload_url.contains("X-Amz-Signature="), "{upload_url}");

    // A query parameter travels through rawQueryString to the function; the instance is warm.
    let outcome = runtime.invoke_traced(&spec, api_event("GET", "/upload-url?contentType=image%2Fpng")).await;
    assert!(!outcome.cold);
    let response = from_response(&outcome.result.unwrap());
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["contentType"], "image/png");
    assert!(body["fileKey"].as_str().unwrap().ends_with(".png"));

    // The function's own 4xx comes back as a structured response.
    let payload = runtime.invoke(&spec, api_event("GET", "/upload-url?contentType=image%2Fgif")).await.unwrap();
    let response = from_response(&payload);
    assert_eq!(response.status(), 400);
    assert_eq!(serde_json::from_slice::<Value>(response.body()).unwrap()["error"], "InvalidRequest");

    let cold = &runtime.cold_starts()[0];
    let (to_next, to_response) = (cold.to_first_next.unwrap(), cold.to_first_response.unwrap());
    println!("upload-url (debug) cold start: first /next after {to_next:?}, first response after {to_response:?}");
    assert!(to_next <= to_response);
    runtime.shutdown().await;

    let log = std::fs::read_to_string(&spec.log_file).unwrap();
    assert!(log.contains("issued upload URL"), "the function's own output is in its log file:\n{log}");
}

#[tokio::test]
async fn upload_url_cold_starts_are_measured_per_instance() {
    let dir = scratch("cold-starts");
    let runtime = Runtime::start().await.unwrap();
    let mut spec = upload_url_function(&dir);
    let mut samples = Vec::new();
    for round in 0..5 {
        // A new code hash means a new instance: five cold starts.
        spec.code_sha256 = format!("cold-start-{round}");
        let outcome = runtime.invoke_traced(&spec, api_event("GET", "/upload-url")).await;
        assert!(outcome.cold);
        assert_eq!(from_response(&outcome.result.unwrap()).status(), 200);
    }
    for cold in runtime.cold_starts() {
        samples.push((cold.to_first_next.unwrap(), cold.to_first_response.unwrap()));
    }
    assert_eq!(samples.len(), 5);
    println!("upload-url (debug) cold starts (to first /next, to first response): {samples:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn analyze_binary_without_its_bucket_fails_its_cold_start_with_an_init_error() {
    let dir = scratch("analyze-init");
    let runtime = Runtime::start().await.unwrap();
    let mut spec = function("analyze", function_binaries().analyze.clone(), &dir);
    spec.environment = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_owned(), "x".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "y".to_owned()),
    ]);

    let error = runtime.invoke(&spec, api_event("POST", "/analyze")).await.unwrap_err();
    match &error {
        InvokeError::InitError { error_type, exit_code, log_tail, .. } => {
            assert_eq!(error_type, "Runtime.ExitError");
            assert_eq!(*exit_code, Some(1));
            assert!(log_tail.contains("UPLOAD_BUCKET"), "the tail names the missing variable:\n{log_tail}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(runtime.instances(Some("analyze")).is_empty(), "the failed instance is gone");
    assert_eq!(runtime.cold_starts()[0].to_first_next, None);
    runtime.shutdown().await;
}

// --- Python bootstraps -------------------------------------------------------------------

/// A bootstrap driven by its events: `{"sleep": s}` sleeps, `{"exit": code}` exits at once;
/// otherwise it answers `{"pid": ..., "event": ...}`.
const SCRIPT: &str = r#"
import json, os, time, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
base = (api if "://" in api else "http://" + api) + "/2018-06-01/runtime"
while True:
    with urllib.request.urlopen(base + "/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read() or b"null")
    command = event if isinstance(event, dict) else {}
    if command.get("sleep"):
        time.sleep(command["sleep"])
    if "exit" in command:
        print("crashing on purpose", flush=True)
        os._exit(command["exit"])
    body = json.dumps({"pid": os.getpid(), "event": event}).encode()
    urllib.request.urlopen(urllib.request.Request(base + "/invocation/" + request_id + "/response", data=body, method="POST")).close()
"#;

fn script_function(name: &str, dir: &Path) -> FunctionSpec {
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is a prerequisite of this project and must be on PATH");
    let python = String::from_utf8(python.stdout).unwrap();
    let bootstrap = dir.join(format!("{name}-bootstrap"));
    std::fs::write(&bootstrap, format!("#!{}\n{SCRIPT}", python.trim())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    function(name, bootstrap, dir)
}

async fn call(runtime: &Runtime, spec: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
    let payload = runtime.invoke(spec, serde_json::to_vec(&event).unwrap()).await?;
    Ok(serde_json::from_slice(&payload).unwrap())
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_function_that_overruns_its_timeout_is_killed() {
    let dir = scratch("timeout");
    let runtime = Arc::new(Runtime::start().await.unwrap());
    let mut spec = script_function("sleeper", &dir);
    spec.timeout = Duration::from_secs(1);

    let started = Instant::now();
    let call = {
        let (runtime, spec) = (runtime.clone(), spec.clone());
        tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 30})).await })
    };
    let pid = loop {
        if let Some(pid) = runtime.instances(Some("sleeper")).first().and_then(|i| i.pid) {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no instance started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let error = call.await.unwrap().unwrap_err();
    assert_eq!(error, InvokeError::Timeout { after: Duration::from_secs(1), during_init: false });
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout is enforced: {:?}", started.elapsed());
    assert!(!process_exists(pid), "the instance was killed");
    assert!(runtime.instances(Some("sleeper")).is_empty());

    // The next invocation gets a fresh instance.
    let answer = call_sync(&runtime, &spec, json!({})).await;
    assert_ne!(answer["pid"], pid);
    let log = std::fs::read_to_string(&spec.log_file).unwrap();
    assert!(log.contains("Task timed out after 1.00 seconds"), "{log}");
    assert!(log.contains("(killed)"), "{log}");
}

async fn call_sync(runtime: &Runtime, spec: &FunctionSpec, event: Value) -> Value {
    call(runtime, spec, event).await.unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test]
async fn a_crashed_instance_fails_its_invocation_and_is_replaced() {
    let dir = scratch("crash");
    let runtime = Runtime::start().await.unwrap();
    let spec = script_function("crasher", &dir);

    let first_pid = call_sync(&runtime, &spec, json!({})).await["pid"].as_u64().unwrap();
    let error = call(&runtime, &spec, json!({"exit": 7})).await.unwrap_err();
    match &error {
        InvokeError::Crashed { exit_code, log_tail, .. } => {
            assert_eq!(*exit_code, Some(7));
            assert!(log_tail.contains("crashing on purpose"), "{log_tail}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    let outcome = runtime.invoke_traced(&spec, b"{}".to_vec()).await;
    assert!(outcome.cold, "a fresh instance replaces the crashed one");
    let answer: Value = serde_json::from_slice(&outcome.result.unwrap()).unwrap();
    assert_ne!(answer["pid"].as_u64().unwrap(), first_pid);
    assert_eq!(runtime.instances(Some("crasher")).len(), 1);
    runtime.shutdown().await;
}

#[tokio::test]
async fn concurrent_invocations_start_one_instance_each_up_to_the_bound() {
    let dir = scratch("concurrency-3");
    let runtime = Arc::new(Runtime::start().await.unwrap());
    assert_eq!(runtime.config().max_instances_per_function, 4);
    let spec = script_function("parallel", &dir);

    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (runtime, spec) = (runtime.clone(), spec.clone());
            tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 1})).await })
        })
        .collect();
    let mut pids = BTreeSet::new();
    for call in calls {
        pids.insert(call.await.unwrap().unwrap()["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), 3, "three concurrent invocations, three instances");
    assert_eq!(runtime.instances(Some("parallel")).len(), 3);
    assert_eq!(runtime.cold_starts().len(), 3);
}

#[tokio::test]
async fn concurrent_invocations_beyond_the_bound_wait_for_a_free_instance() {
    let dir = scratch("concurrency-bound");
    let config = RuntimeConfig { max_instances_per_function: 2, ..RuntimeConfig::default() };
    let runtime = Arc::new(Runtime::start_with(config).await.unwrap());
    let spec = script_function("bounded", &dir);

    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (runtime, spec) = (runtime.clone(), spec.clone());
            tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 0.5})).await })
        })
        .collect();
    let mut most = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        most = most.max(runtime.instances(Some("bounded")).len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut pids = BTreeSet::new();
    for call in calls {
        pids.insert(call.await.unwrap().unwrap()["pid"].as_u64().unwrap());
    }
    assert!(most <= 2, "at most two processes at once, saw {most}");
    assert_eq!(pids.len(), 2, "six invocations shared two instances: {pids:?}");
    assert_eq!(runtime.cold_starts().len(), 2);
    // Three rounds of 0.5 s on two instances.
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
}

/// Whether every process the runtime started for `function` is gone or idle, and how many live.
fn live_processes(runtime: &Runtime, function: &str) -> (usize, usize) {
    let instances = runtime.instances(Some(function));
    let alive = instances.iter().filter(|i| i.pid.is_some_and(process_exists)).count();
    let busy = instances.iter().filter(|i| i.busy).count();
    (alive, busy)
}

#[tokio::test]
async fn invocations_whose_callers_give_up_at_random_never_exceed_the_cap_and_drain() {
    let dir = scratch("cancellation");
    let config = RuntimeConfig { max_instances_per_function: 3, ..RuntimeConfig::default() };
    let runtime = Arc::new(Runtime::start_with(config).await.unwrap());
    let spec = script_function("abandoned", &dir);

    // 60 callers, each giving up after 20-300 ms (a fixed pseudo-random sequence), on
    // invocations that take 150 ms: many are dropped while queued, while running, or before
    // their instance has started.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let calls: Vec<_> = (0..60)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let patience = Duration::from_millis(20 + (seed >> 33) % 280);
            let (runtime, spec) = (runtime.clone(), spec.clone());
            tokio::spawn(async move {
                tokio::time::timeout(patience, call(&runtime, &spec, json!({"sleep": 0.15}))).await.is_ok()
            })
        })
        .collect();
    let mut most = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        most = most.max(live_processes(&runtime, "abandoned").0);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answered = count_answered(calls).await;
    assert!(answered < 60, "some callers gave up ({answered} of 60 were answered)");

    // What was running when its caller left finishes on its own and frees its instance.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (alive, busy) = live_processes(&runtime, "abandoned");
        most = most.max(alive);
        if busy == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{busy} instance(s) still busy long after every caller left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most <= 3, "at most the cap of 3 processes at any moment, saw {most}");
    let pids: Vec<u32> = runtime.instances(Some("abandoned")).iter().filter_map(|i| i.pid).collect();
    assert!(!pids.is_empty() && pids.len() <= 3, "{pids:?}");
    // The instances left are healthy and serve the next caller.
    let answer = call_sync(&runtime, &spec, json!({})).await;
    assert!(pids.contains(&(answer["pid"].as_u64().unwrap() as u32)), "a warm instance answered: {answer}");
    runtime.shutdown().await;
    assert!(pids.iter().all(|pid| !process_exists(*pid)), "shutdown leaves no process");
}

/// How many of `calls` (each saying whether it was answered) were answered.
async fn count_answered(calls: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut answered = 0;
    for call in calls {
        answered += usize::from(call.await.unwrap());
    }
    answered
}

#[tokio::test]
async fn a_full_queue_is_throttled_at_once() {
    let dir = scratch("throttled");
    let config =
        RuntimeConfig { max_instances_per_function: 1, max_queued_per_function: 2, ..RuntimeConfig::default() };
    let runtime = Arc::new(Runtime::start_with(config).await.unwrap());
    let spec = script_function("queued", &dir);
    // Warm the instance first, so the three invocations below start at once.
    call_sync(&runtime, &spec, json!({})).await;

    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (runtime, spec) = (runtime.clone(), spec.clone());
            tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 0.5})).await })
        })
        .collect();
    // One runs, two wait: the queue is full.
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.instances(Some("queued")).iter().all(|i| !i.busy) {
        assert!(Instant::now() < deadline, "the first invocation never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let error = call(&runtime, &spec, json!({})).await.unwrap_err();
    assert!(matches!(error, InvokeError::Throttled(_)), "{error:?}");
    assert_eq!(error.error_type(), "TooManyRequestsException");
    assert!(started.elapsed() < Duration::from_millis(400), "throttled without waiting: {:?}", started.elapsed());
    for call in calls {
        call.await.unwrap().expect("the queued invocations run in turn");
    }
}

#[tokio::test]
async fn a_caller_deadline_answers_in_time_and_the_invocation_still_finishes() {
    let dir = scratch("deadline");
    let runtime = Arc::new(Runtime::start().await.unwrap());
    let spec = script_function("slow", &dir);
    let first = call_sync(&runtime, &spec, json!({})).await["pid"].as_u64().unwrap();

    let started = Instant::now();
    let deadline = started + Duration::from_millis(200);
    let outcome =
        runtime.invoke_until(&spec, serde_json::to_vec(&json!({"sleep": 0.6})).unwrap(), Some(deadline)).await;
    assert!(matches!(outcome.result, Err(InvokeError::DeadlinePassed { .. })), "{:?}", outcome.result);
    assert!(started.elapsed() < Duration::from_millis(450), "answered at the deadline: {:?}", started.elapsed());

    // The invocation was not cut short: the instance finishes it and is warm again, not killed.
    let wait = Instant::now() + Duration::from_secs(5);
    while runtime.instances(Some("slow")).iter().any(|i| i.busy) {
        assert!(Instant::now() < wait, "the instance never finished the abandoned invocation");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = runtime.invoke_traced(&spec, b"{}".to_vec()).await;
    assert!(!outcome.cold, "the same instance serves again");
    let answer: Value = serde_json::from_slice(&outcome.result.unwrap()).unwrap();
    assert_eq!(answer["pid"].as_u64().unwrap(), first);
    let log = std::fs::read_to_string(&spec.log_file).unwrap();
    assert!(!log.contains("(killed)"), "nothing was killed: {log}");
}

#[tokio::test]
async fn a_reserved_concurrency_caps_its_function_below_the_default_and_zero_throttles_it() {
    let dir = scratch("reserved");
    let runtime = Arc::new(Runtime::start().await.unwrap());
    assert_eq!(runtime.config().max_instances_per_function, 4);
    let mut spec = script_function("reserved", &dir);
    spec.max_instances = Some(2);

    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (runtime, spec) = (runtime.clone(), spec.clone());
            tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 0.3})).await })
        })
        .collect();
    let mut most = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        most = most.max(live_processes(&runtime, "reserved").0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut pids = BTreeSet::new();
    for call in calls {
        pids.insert(call.await.unwrap().unwrap()["pid"].as_u64().unwrap());
    }
    assert!(most <= 2, "at most the reserved 2 processes at once, saw {most}");
    assert_eq!(pids.len(), 2, "{pids:?}");

    spec.max_instances = Some(0);
    let error = call(&runtime, &spec, json!({})).await.unwrap_err();
    assert!(matches!(error, InvokeError::Throttled(_)), "{error:?}");
}
