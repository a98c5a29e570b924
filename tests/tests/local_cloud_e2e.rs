//! The whole product on one machine, the way a user runs it, on either emulator: `local up`,
//! deploy the real release Lambdas, the smoke test, the README's seed curl procedure,
//! analysis triggered by the upload alone, destroy, `local down`, and no process of ours left
//! behind.
//!
//! Needs the release build (`cargo xtask test` builds it before running the tests) and npm
//! for the face models.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::local_cloud::{ok, LocalCloud};
use e2e::workspace_root;
use serde_json::Value;

/// The shell block between the README's seed-procedure markers.
fn seed_procedure() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme.find("<!-- seed-procedure:begin -->").expect("the README has the seed procedure");
    let end = readme.find("<!-- seed-procedure:end -->").expect("the seed procedure ends");
    let block = &readme[start..end];
    let body = block.split("```sh\n").nth(1).expect("a sh block").split("```").next().unwrap();
    body.to_owned()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[test]
fn the_local_cloud_runs_the_real_product_end_to_end() {
    product_end_to_end("moto");
}

#[test]
fn the_local_cloud_on_ministack_runs_the_real_product_end_to_end() {
    product_end_to_end("ministack");
}

/// The whole product on a local cloud started on `emulator`.
fn product_end_to_end(emulator: &str) {
    // 1. local up: the emulator, the face service and the data plane; brought down even if
    // the test fails midway.
    let (cloud, up) = LocalCloud::up(emulator);
    let (api, state_dir) = (cloud.api.clone(), cloud.state_dir());
    let run = |args: &[&str]| cloud.run(args);
    assert!(up.contains("face") && up.contains("started"), "{up}");
    assert!(up.lines().any(|line| line.starts_with(emulator) && line.contains("healthy")), "{emulator} runs:\n{up}");
    let pids = cloud.pids();
    assert_eq!(pids.len(), 3, "emulator, face and data plane pid files: {pids:?}\n{up}");
    // (pids[0] is the emulator's: pids_in reads moto.pid first.)

    // 2. deploy the real release Lambdas.
    ok(run(&["deploy", "--env", "local", "--yes", "--no-build"]), "deploy");

    // 3. the smoke test, recorded in state.
    let smoke = ok(run(&["smoke-test", "--env", "local", "--json"]), "smoke-test");
    let smoke: Value = serde_json::from_str(&smoke).unwrap();
    assert_eq!(smoke["passed"], true, "{smoke:#}");
    assert_eq!(smoke["api_url"], api.as_str());

    // 4. the README's seed procedure, verbatim, against this API.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("tests/fixtures")).unwrap();
    std::os::unix::fs::symlink(
        workspace_root().join("tests/fixtures/photos"),
        work.path().join("tests/fixtures/photos"),
    )
    .unwrap();
    let script = seed_procedure().replace("API=http://127.0.0.1:3000", &format!("API={api}"));
    let output =
        Command::new("bash").args(["-euo", "pipefail", "-c", &script]).current_dir(work.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the seed procedure failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let analysis: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(analysis["facesDetected"], 1, "{analysis:#}");
    assert_eq!(analysis["faces"][0]["dominantEmotion"], "HAPPY", "{analysis:#}");
    assert!(analysis["faces"][0]["position"]["Width"].as_f64().is_some(), "{analysis:#}");

    // 5. every upload is analysed with no further call: the upload's own notification.
    uploads_are_analysed_without_a_second_call(&api, state_dir);

    // 6. the emulator hangs (SIGSTOP): analyze's S3 call gives up inside the function's
    // timeout and the client gets the project's JSON error, not API Gateway's bare 503.
    let emulator_pid = pids[0].to_string();
    let signal = |name: &str| Command::new("kill").args([name, &emulator_pid]).status().unwrap();
    assert!(signal("-STOP").success());
    let began = std::time::Instant::now();
    let answer = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-d", r#"{"fileKey":"uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg"}"#])
        .arg(format!("{api}/analyze"))
        .output()
        .unwrap();
    let took = began.elapsed();
    assert!(signal("-CONT").success());
    let answer = String::from_utf8_lossy(&answer.stdout).into_owned();
    let (body, status) = answer.rsplit_once('\n').unwrap();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert!(["502", "504"].contains(&status), "the function's own error: {status} {body}");
    assert!(body["error"].is_string() && body["message"].is_string(), "the project's JSON error: {body}");
    assert!(took < std::time::Duration::from_secs(10), "answered within analyze's 10 s timeout: {took:?}");

    // 7. destroy, 8. down: nothing of ours is left running.
    ok(run(&["destroy", "--env", "local", "--yes"]), "destroy");
    ok(run(&["local", "down"]), "local down");
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running after `local down`");
    }
    assert!(cloud.pids().is_empty(), "pid files are removed");
}

/// `curl` with `args`; the body and the status.
fn curl(args: &[&str]) -> (String, u16) {
    let output = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl answered nothing: {text}"));
    (body.to_owned(), status.parse().unwrap_or_else(|_| panic!("no status in {text}")))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

/// Uploads `file` as the seed's clients do (GET /upload-url, then PUT to the URL) and
/// returns its id, `<uuid>.<ext>`, and the URL.
fn upload(api: &str, file: &Path, content_type: &str) -> (String, String) {
    let (body, status) = curl(&[&format!("{api}/upload-url?contentType={content_type}")]);
    assert_eq!(status, 200, "{body}");
    let answer = json(&body);
    let url = answer["uploadUrl"].as_str().unwrap();
    let (body, status) = curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {content_type}"),
        "--upload-file",
        file.to_str().unwrap(),
        url,
    ]);
    assert_eq!(status, 200, "the PUT: {body}");
    let id = answer["fileKey"].as_str().unwrap().strip_prefix("uploads/").unwrap().to_owned();
    (id, url.to_owned())
}

/// `GET /analysis/{id}` until it is no longer pending.
fn analysis(api: &str, id: &str) -> (Value, u16, Duration) {
    let began = Instant::now();
    loop {
        let (body, status) = curl(&[&format!("{api}/analysis/{id}")]);
        if status != 202 || began.elapsed() > Duration::from_secs(30) {
            return (json(&body), status, began.elapsed());
        }
        assert_eq!(json(&body), serde_json::json!({"status": "pending"}));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many DetectFaces calls the face service has answered.
fn rekognition_calls(state_dir: &Path) -> usize {
    let log = std::fs::read_to_string(state_dir.join("face.log")).unwrap_or_default();
    log.lines().filter(|line| line.contains("DetectFaces")).count()
}

/// [`rekognition_calls`] once it has not changed for 1.5 s.
fn settled_rekognition_calls(state_dir: &Path) -> usize {
    let (mut last, mut since) = (rekognition_calls(state_dir), Instant::now());
    while since.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(100));
        let now = rekognition_calls(state_dir);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// The data plane's log lines that say an event for `id` was delivered.
fn deliveries(state_dir: &Path, id: &str) -> usize {
    let log = std::fs::read_to_string(state_dir.join("dataplane.log")).unwrap_or_default();
    log.lines().filter(|line| line.contains(id) && line.contains("delivered")).count()
}

fn uploads_are_analysed_without_a_second_call(api: &str, state_dir: &Path) {
    let photos = workspace_root().join("tests/fixtures/photos");
    // Earlier uploads (the smoke test's, the seed procedure's) were analysed on their events
    // too; let those finish first.
    let calls_before = settled_rekognition_calls(state_dir);

    // The astronaut: one face, HAPPY, readable within seconds of the PUT.
    let (id, url) = upload(api, &photos.join("astronaut.jpg"), "image/jpeg");
    let (result, status, took) = analysis(api, &id);
    assert_eq!(status, 200, "{result:#}");
    assert_eq!(
        (result["status"].as_str(), result["fileKey"].as_str()),
        (Some("done"), Some(format!("uploads/{id}").as_str()))
    );
    assert_eq!(result["facesDetected"], 1, "{result:#}");
    assert_eq!(result["faces"][0]["dominantEmotion"], "HAPPY", "{result:#}");
    assert!(took < Duration::from_secs(20), "readable within seconds: {took:?}");
    assert_eq!(rekognition_calls(state_dir), calls_before + 1, "one DetectFaces call for the upload");

    // The same object created again (its URL used twice): a second event, and still one
    // result, not analysed again.
    let calls = rekognition_calls(state_dir);
    let began = Instant::now();
    let photo = photos.join("astronaut.jpg");
    let (body, status) =
        curl(&["-X", "PUT", "-H", "Content-Type: image/jpeg", "--upload-file", photo.to_str().unwrap(), &url]);
    assert_eq!(status, 200, "{body}");
    while deliveries(state_dir, &id) < 2 && began.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(deliveries(state_dir, &id), 2, "the second creation was delivered");
    let (again, status, _) = analysis(api, &id);
    assert_eq!((status, &again), (200, &result), "one result, unchanged");
    assert_eq!(rekognition_calls(state_dir), calls, "a duplicate event calls Rekognition never");

    // POST /analyze after the event: the kept result, without a Rekognition call.
    let (body, status) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"fileKey":"uploads/{id}"}}"#),
        &format!("{api}/analyze"),
    ]);
    assert_eq!((status, json(&body)), (200, result.clone()), "POST /analyze answers the kept result");
    assert_eq!(rekognition_calls(state_dir), calls);

    // The cat: no face.
    let (id, _) = upload(api, &photos.join("chelsea.jpg"), "image/jpeg");
    let (result, status, _) = analysis(api, &id);
    assert_eq!((status, result["facesDetected"].as_u64()), (200, Some(0)), "{result:#}");

    // Text uploaded as a JPEG: a failure of the image, kept, and answered as 422.
    let text = state_dir.join("not-a-photo.jpg");
    std::fs::write(&text, "this is not a photo\n").unwrap();
    let (id, _) = upload(api, &text, "image/jpeg");
    let (result, status, _) = analysis(api, &id);
    assert_eq!(status, 422, "{result:#}");
    assert_eq!((result["status"].as_str(), result["error"].as_str()), (Some("failed"), Some("InvalidImageFormat")));

    // The astronaut cut short, as an interrupted upload leaves it: refused as Rekognition
    // refuses it, never analysed as the part that arrived.
    let photo = std::fs::read(photos.join("astronaut.jpg")).unwrap();
    let truncated = state_dir.join("truncated.jpg");
    std::fs::write(&truncated, &photo[..photo.len() / 2]).unwrap();
    let (id, _) = upload(api, &truncated, "image/jpeg");
    let (result, status, _) = analysis(api, &id);
    assert_eq!((status, result["error"].as_str()), (422, Some("InvalidImageFormat")), "{result:#}");
    let request = format!(r#"{{"fileKey":"uploads/{id}"}}"#);
    let (body, status) =
        curl(&["-X", "POST", "-H", "Content-Type: application/json", "-d", &request, &format!("{api}/analyze")]);
    assert_eq!((status, json(&body)["error"].as_str()), (415, Some("InvalidImageFormat")), "{body}");
    assert!(json(&body)["message"].as_str().unwrap().contains("(Rekognition: "), "Rekognition's words: {body}");

    // An id with no upload.
    let (body, status) = curl(&[&format!("{api}/analysis/00000000-0000-4000-8000-000000000000.jpg")]);
    assert_eq!((status, json(&body)["error"].as_str()), (404, Some("NotFound")), "{body}");
}
