//! The runtime against small Python bootstraps that speak the Runtime API (python3 is a
//! prerequisite of the project), plus the pure parts.

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use hyper::Method;

use super::api::{diagnostic, route, Route};
use super::pool::fingerprint;
use super::*;

/// The real interpreter (not a pyenv shim, which needs `HOME`, absent in a function's env).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is a prerequisite of this project (README) and must be on PATH");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

/// A bootstrap driven by its events: `{"sleep": s}`, `{"exit": code}`, `{"error": msg}`,
/// `{"env": true}`; it answers with its pid, the event and the Runtime API headers. With
/// `MODE=init-error` it reports `/init/error` and exits; with `MODE=init-exit` it just exits.
const SCRIPT: &str = r#"
import json, os, sys, time, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
base = (api if "://" in api else "http://" + api) + "/2018-06-01/runtime"
def post(path, body, headers={}):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request) as response:
        return response.status
mode = os.environ.get("MODE", "")
print("init", os.getpid(), flush=True)
if mode == "init-error":
    post("/init/error", {"errorType": "Config.Missing", "errorMessage": "BUCKET is not set"},
         {"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"})
    sys.exit(1)
if mode == "init-exit":
    print("giving up", file=sys.stderr, flush=True)
    sys.exit(3)
while True:
    with urllib.request.urlopen(base + "/invocation/next") as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        event = json.loads(response.read() or b"null")
    request_id = headers["lambda-runtime-aws-request-id"]
    command = event if isinstance(event, dict) else {}
    print("handling", request_id, flush=True)
    if command.get("sleep"):
        time.sleep(command["sleep"])
    if "exit" in command:
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(command["exit"])
    if "error" in command:
        post("/invocation/" + request_id + "/error", {"errorType": "Boom", "errorMessage": command["error"]},
             {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
        continue
    answer = {"pid": os.getpid(), "event": event, "headers": headers}
    if command.get("env"):
        answer["env"] = dict(os.environ)
    post("/invocation/" + request_id + "/response", answer)
"#;

fn script_bootstrap(dir: &Path) -> PathBuf {
    let path = dir.join("bootstrap");
    std::fs::write(&path, format!("#!{}\n{SCRIPT}", python())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn spec(dir: &Path, name: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        code_sha256: "c2NyaXB0LXYx".to_owned(),
        bootstrap: script_bootstrap(dir),
        environment: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
        memory_mb: 256,
        timeout: Duration::from_secs(10),
        log_file: dir.join("logs").join(format!("{name}.log")),
        max_instances: None,
    }
}

async fn call(runtime: &Runtime, spec: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
    let payload = runtime.invoke(spec, serde_json::to_vec(&event).unwrap()).await?;
    Ok(serde_json::from_slice(&payload).expect("the script answers JSON"))
}

fn alive(pid: u64) -> bool {
    // A reaped process has no /proc entry; a zombie would still, but the supervisor reaps.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn routes_live_under_an_instance_prefix() {
    let next = route(&Method::GET, "/fn-1/2018-06-01/runtime/invocation/next");
    assert!(matches!(next, Some((ref id, Route::Next)) if id == "fn-1"));
    let response = route(&Method::POST, "/fn-1/2018-06-01/runtime/invocation/abc-123/response");
    assert!(matches!(response, Some((_, Route::Response(ref id))) if id == "abc-123"));
    let error = route(&Method::POST, "/fn-1/2018-06-01/runtime/invocation/abc-123/error");
    assert!(matches!(error, Some((_, Route::Error(ref id))) if id == "abc-123"));
    assert!(matches!(route(&Method::POST, "/fn-1/2018-06-01/runtime/init/error"), Some((_, Route::InitError))));
    // No prefix, wrong version, wrong method.
    assert!(route(&Method::GET, "/2018-06-01/runtime/invocation/next").is_none());
    assert!(route(&Method::GET, "/fn-1/2020-01-01/runtime/invocation/next").is_none());
    assert!(route(&Method::POST, "/fn-1/2018-06-01/runtime/invocation/next").is_none());
}

#[test]
fn error_reports_prefer_the_body_and_fall_back_to_the_header() {
    assert_eq!(
        diagnostic(br#"{"errorType":"Boom","errorMessage":"bad"}"#, Some("Unhandled".into())),
        ("Boom".to_owned(), "bad".to_owned())
    );
    assert_eq!(
        diagnostic(b"plain text", Some("Runtime.InitError".into())),
        ("Runtime.InitError".into(), "plain text".into())
    );
    assert_eq!(diagnostic(b"", None), ("Unhandled".into(), String::new()));
}

#[test]
fn a_new_code_hash_or_environment_is_a_new_generation_but_a_new_timeout_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = spec(dir.path(), "f");
    let mut other = base.clone();
    other.timeout = Duration::from_secs(1);
    other.log_file = dir.path().join("elsewhere.log");
    assert_eq!(fingerprint(&base), fingerprint(&other));
    other.code_sha256 = "djI=".into();
    assert_ne!(fingerprint(&base), fingerprint(&other));
    let mut env = base.clone();
    env.environment.insert("X".into(), "1".into());
    assert_ne!(fingerprint(&base), fingerprint(&env));
}

#[test]
fn extract_bootstrap_checks_the_digest_and_writes_an_executable_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let zip = crate::artifact::zip_bootstrap(b"#!/bin/sh\necho hi\n").unwrap();
    let (hex_digest, base64_digest) = crate::artifact::sha256(&zip);

    let path = extract_bootstrap(&zip, &base64_digest, dir.path()).unwrap();
    assert_eq!(path, dir.path().join(&hex_digest).join("bootstrap"));
    assert_eq!(std::fs::read(&path).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

    // Idempotent: the same package is not extracted again.
    assert_eq!(extract_bootstrap(&zip, &base64_digest, dir.path()).unwrap(), path);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    assert_eq!(std::fs::read_dir(dir.path().join(&hex_digest)).unwrap().count(), 1, "no temporary file is left");

    // A package that is not what Lambda says it is, is refused before anything is written.
    let error = extract_bootstrap(&zip, "AAAA", dir.path()).unwrap_err();
    assert!(matches!(error, ExtractError::DigestMismatch { ref actual, .. } if *actual == base64_digest), "{error}");

    // A zip without a bootstrap.
    let mut other = zip::ZipWriter::new(Cursor::new(Vec::new()));
    other.start_file("handler.py", zip::write::SimpleFileOptions::default()).unwrap();
    other.write_all(b"x").unwrap();
    let other = other.finish().unwrap().into_inner();
    let (_, other_digest) = crate::artifact::sha256(&other);
    assert!(matches!(extract_bootstrap(&other, &other_digest, dir.path()), Err(ExtractError::NoBootstrap)));
}

#[tokio::test]
async fn local_runtime_delivers_events_with_runtime_api_headers_and_a_clean_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        region: "eu-west-3".into(),
        extra_env: BTreeMap::from([("AWS_ENDPOINT_URL".to_owned(), "http://127.0.0.1:1".to_owned())]),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::start_with(config).await.unwrap();
    let spec = spec(dir.path(), "echo");

    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let outcome = runtime.invoke_traced(&spec, serde_json::to_vec(&json!({"env": true, "n": 1})).unwrap()).await;
    let answer: Value = serde_json::from_slice(outcome.result.as_ref().unwrap()).unwrap();
    assert!(outcome.cold);
    assert_eq!(answer["event"], json!({"env": true, "n": 1}));

    let headers = &answer["headers"];
    assert_eq!(headers["lambda-runtime-aws-request-id"], outcome.request_id.as_str());
    assert_eq!(headers["lambda-runtime-invoked-function-arn"], spec.arn.as_str());
    assert!(headers["lambda-runtime-trace-id"].as_str().unwrap().starts_with("Root=1-"));
    let deadline: u64 = headers["lambda-runtime-deadline-ms"].as_str().unwrap().parse().unwrap();
    assert!(
        deadline >= before + 9_000 && deadline <= before + 11_000 + outcome.duration.as_millis() as u64,
        "{deadline}"
    );

    let env = answer["env"].as_object().unwrap();
    let port = runtime.address().port();
    let instance = outcome.instance_id.as_deref().unwrap();
    assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], format!("http://127.0.0.1:{port}/{instance}"));
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "echo");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/echo");
    assert_eq!(env["AWS_REGION"], "eu-west-3");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-3");
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:1");
    assert_eq!(env["GREETING"], "hello");
    assert!(env.contains_key("PATH"));
    assert!(!env.contains_key("HOME"), "HOME is not inherited");
    assert!(!env.contains_key("CARGO_MANIFEST_DIR"), "the parent's environment is not inherited");
    runtime.shutdown().await;
}

#[tokio::test]
async fn local_runtime_reuses_a_warm_instance_and_records_its_cold_start() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let spec = spec(dir.path(), "warm");

    let first = runtime.invoke_traced(&spec, b"{}".to_vec()).await;
    let second = runtime.invoke_traced(&spec, b"{}".to_vec()).await;
    let pid =
        |o: &InvocationOutcome| serde_json::from_slice::<Value>(o.result.as_ref().unwrap()).unwrap()["pid"].clone();
    assert!(first.cold && !second.cold);
    assert_eq!(first.instance_id, second.instance_id);
    assert_eq!(pid(&first), pid(&second));

    let cold_starts = runtime.cold_starts();
    assert_eq!(cold_starts.len(), 1);
    let cold = &cold_starts[0];
    assert_eq!(cold.function, "warm");
    let (to_next, to_response) = (cold.to_first_next.unwrap(), cold.to_first_response.unwrap());
    assert!(to_next <= to_response, "{to_next:?} {to_response:?}");
    let instances = runtime.instances(Some("warm"));
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].invocations, 2);
    assert!(!instances[0].busy);
    runtime.shutdown().await;
}

#[tokio::test]
async fn local_runtime_reports_function_errors_and_keeps_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let spec = spec(dir.path(), "failing");

    let error = call(&runtime, &spec, json!({"error": "no such file"})).await.unwrap_err();
    assert_eq!(error, InvokeError::FunctionError { error_type: "Boom".into(), error_message: "no such file".into() });
    let answer = call(&runtime, &spec, json!({})).await.unwrap();
    assert_eq!(runtime.cold_starts().len(), 1, "the instance survives a function error");
    assert_eq!(answer["event"], json!({}));
    runtime.shutdown().await;
}

#[tokio::test]
async fn local_runtime_turns_init_failures_into_init_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();

    let mut reported = spec(dir.path(), "init-error");
    reported.environment.insert("MODE".into(), "init-error".into());
    match call(&runtime, &reported, json!({})).await.unwrap_err() {
        InvokeError::InitError { error_type, error_message, exit_code, .. } => {
            assert_eq!(error_type, "Config.Missing");
            assert_eq!(error_message, "BUCKET is not set");
            assert_eq!(exit_code, Some(1));
        }
        other => panic!("expected an init error, got {other:?}"),
    }

    let mut exits = spec(dir.path(), "init-exit");
    exits.environment.insert("MODE".into(), "init-exit".into());
    match call(&runtime, &exits, json!({})).await.unwrap_err() {
        InvokeError::InitError { error_type, exit_code, log_tail, .. } => {
            assert_eq!(error_type, "Runtime.ExitError");
            assert_eq!(exit_code, Some(3));
            assert!(log_tail.contains("giving up"), "{log_tail}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(runtime.instances(None).is_empty());
    runtime.shutdown().await;
}

#[tokio::test]
async fn local_runtime_replaces_instances_when_the_code_changes() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let v1 = spec(dir.path(), "versioned");
    let old_pid = call(&runtime, &v1, json!({})).await.unwrap()["pid"].as_u64().unwrap();

    let mut v2 = v1.clone();
    v2.code_sha256 = "c2NyaXB0LXYy".into();
    let new_pid = call(&runtime, &v2, json!({})).await.unwrap()["pid"].as_u64().unwrap();
    assert_ne!(old_pid, new_pid);
    for _ in 0..50 {
        if !alive(old_pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(old_pid), "the old instance is stopped");
    let instances = runtime.instances(Some("versioned"));
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].code_sha256, "c2NyaXB0LXYy");
    runtime.shutdown().await;
    assert!(!alive(new_pid), "shutdown stops every instance");
}

#[tokio::test]
async fn local_runtime_logs_instances_and_invocations_to_the_functions_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let spec = spec(dir.path(), "logged");
    let outcome = runtime.invoke_traced(&spec, b"{}".to_vec()).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    runtime.shutdown().await;

    let log = std::fs::read_to_string(&spec.log_file).unwrap();
    let id = outcome.instance_id.unwrap();
    let request = outcome.request_id;
    for expected in [
        format!("instance {id} starting"),
        format!("[{id}] init "),
        format!("START RequestId: {request} Version: $LATEST"),
        format!("[{id}] handling {request}"),
        format!("END RequestId: {request}"),
        format!("REPORT RequestId: {request}\tDuration: "),
        "Init Duration: ".to_owned(),
        format!("instance {id} stopped"),
    ] {
        assert!(log.contains(&expected), "{expected:?} is missing from\n{log}");
    }
}

#[tokio::test]
async fn local_runtime_gives_up_waiting_for_a_busy_function_after_the_queue_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        max_instances_per_function: 1,
        queue_timeout: Duration::from_millis(300),
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::start_with(config).await.unwrap());
    let spec = spec(dir.path(), "busy");
    let slow = {
        let (runtime, spec) = (runtime.clone(), spec.clone());
        tokio::spawn(async move { call(&runtime, &spec, json!({"sleep": 2})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let error = call(&runtime, &spec, json!({})).await.unwrap_err();
    assert!(matches!(error, InvokeError::Unavailable(_)), "{error:?}");
    assert!(slow.await.unwrap().is_ok());
}

#[tokio::test]
async fn local_runtime_says_when_a_bootstrap_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let mut missing = spec(dir.path(), "missing");
    missing.bootstrap = dir.path().join("nope/bootstrap");
    let error = runtime.invoke(&missing, b"{}".to_vec()).await.unwrap_err();
    assert!(matches!(error, InvokeError::Unavailable(ref m) if m.contains("nope/bootstrap")), "{error:?}");

    // Not executable.
    let mut plain = spec(dir.path(), "plain");
    let path = dir.path().join("plain-bootstrap");
    std::fs::write(&path, "not a program").unwrap();
    plain.bootstrap = path;
    let error = runtime.invoke(&plain, b"{}".to_vec()).await.unwrap_err();
    assert!(matches!(error, InvokeError::Unavailable(ref m) if m.contains("cannot start")), "{error:?}");
}

#[tokio::test]
async fn local_runtime_rejects_answers_for_unknown_requests() {
    let runtime = Runtime::start().await.unwrap();
    // No such instance.
    let status = raw_post(runtime.address(), "/nobody/2018-06-01/runtime/invocation/x/response", b"{}").await;
    assert_eq!(status, 403);
    let status = raw_post(runtime.address(), "/elsewhere", b"{}").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn local_runtime_answers_only_requests_for_a_loopback_host() {
    let runtime = Runtime::start().await.unwrap();
    let path = "/nobody/2018-06-01/runtime/invocation/x/response";
    let (status, body) = raw_post_to(runtime.address(), "evil.example", path, b"{}").await;
    assert_eq!(status, 403);
    assert!(body.contains(r#""errorType":"AccessDenied""#) && body.contains(r#"Host \"evil.example\""#), "{body}");
    let (status, body) = raw_post_to(runtime.address(), "localhost", path, b"{}").await;
    assert_eq!(status, 403, "past the Host check, to the unknown instance");
    assert!(!body.contains("AccessDenied"), "{body}");
}

/// A minimal HTTP/1.1 POST over a raw socket; returns the status code.
async fn raw_post(address: SocketAddr, path: &str, body: &[u8]) -> u16 {
    raw_post_to(address, &address.to_string(), path, body).await.0
}

/// A minimal HTTP/1.1 POST for `host` over a raw socket; returns the status code and body.
async fn raw_post_to(address: SocketAddr, host: &str, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

#[tokio::test]
async fn local_runtime_refuses_invocations_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start().await.unwrap();
    let spec = spec(dir.path(), "late");
    let pid = call(&runtime, &spec, json!({})).await.unwrap()["pid"].as_u64().unwrap();
    runtime.shutdown().await;
    assert!(!alive(pid));
    let error = runtime.invoke(&spec, b"{}".to_vec()).await.unwrap_err();
    assert!(matches!(error, InvokeError::Unavailable(_)), "{error:?}");
    assert!(runtime.instances(None).is_empty());
}
