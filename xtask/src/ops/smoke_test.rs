//! The smoke test: the real client flow against a deployed environment.
//!
//! For each bundled photo: GET /upload-url, PUT the photo with the signed content type, POST
//! /analyze. The astronaut photo must give exactly one face, dominant emotion HAPPY; a photo
//! without a face, zero faces; and a bad fileKey is a 400. The result is recorded in the
//! environment's state, with the artifact hashes it tested, and on the current deployment of
//! its history, for promotion to check.
//!
//! What a step records and shows never holds a presigned URL's query, a signature or a
//! token: every step's detail, and [`analyze_photo`]'s error, pass through [`redact`] (a
//! failing PUT's error would otherwise carry the whole signed URL, and S3's refusal echoes
//! the signed request).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use super::outputs::{api_url, Outputs};
use crate::history::{self, History, SmokeTest, StepResult, SMOKE_TESTS_RECORD};
use crate::redact::redact;
use crate::session::Session;
use crate::state::lock::{now_rfc3339, Lock, LockOptions};
use crate::state::writer::StateWriter;
use crate::workspace;

/// How many results the record keeps.
const KEEP: usize = 20;

/// Smoke-tests environment `env` and records the result.
pub async fn smoke_test(env: &str) -> Result<SmokeTest> {
    let session = Session::open(env).await?;
    test_and_record(&session).await
}

/// Runs the flow against the environment's API and records the result, on the current
/// deployment too when it tested that deployment's code. A failed flow is a result, not an
/// error.
pub async fn test_and_record(session: &Session) -> Result<SmokeTest> {
    let env = &session.env.name;
    let state =
        session.read_state().await?.with_context(|| format!("environment `{env}` has never been deployed"))?.value;
    let url = api_url(session, &state)?;
    // The code that serves: the current deployment's (after a rollback, not `$LATEST`).
    let artifacts = match History::from_state(env, &state)?.current() {
        Some(deployment) => deployment.hashes(),
        None => Outputs::from_state(env, &state)
            .functions
            .iter()
            .filter_map(|(function, output)| Some((function.clone(), output.code_sha256.clone()?)))
            .collect(),
    };
    let steps = flow(&url).await;
    let result =
        SmokeTest { time: now_rfc3339(), passed: steps.iter().all(|s| s.passed), api_url: url, artifacts, steps };
    record(session, &result).await?;
    Ok(result)
}

/// Fails, naming the step and what it found, when the smoke test did not pass.
pub fn require_passed(result: &SmokeTest) -> Result<()> {
    match result.first_failure() {
        Some(failed) => bail!("smoke test failed at `{}`: {}", failed.name, failed.detail),
        None => Ok(()),
    }
}

/// The result as a table, one line per step.
pub fn render(env: &str, result: &SmokeTest) -> String {
    let mut out = format!("Smoke test of `{env}` at {}\n", result.api_url);
    for step in &result.steps {
        let mark = if step.passed { "ok  " } else { "FAIL" };
        out.push_str(&format!("  {mark} {:<28} {:>6} ms  {}\n", step.name, step.latency_ms, step.detail));
    }
    out
}

/// Appends the result to the environment's record, under the lock.
async fn record(session: &Session, result: &SmokeTest) -> Result<()> {
    let lock =
        Lock::acquire(session.store.clone(), &LockOptions::new("smoke-test").timeout(Duration::from_secs(60))).await?;
    let written = async {
        let mut writer = StateWriter::open(session.store.clone()).await?;
        let mut results: Vec<Value> = match writer.state().records.get(SMOKE_TESTS_RECORD) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        results.push(serde_json::to_value(result)?);
        let excess = results.len().saturating_sub(KEEP);
        results.drain(..excess);
        let mut history = History::from_state(&session.env.name, writer.state())?;
        let attached = history.attach_smoke_test(result);
        writer
            .update(|state| {
                state.records.insert(SMOKE_TESTS_RECORD.to_owned(), Value::Array(results));
                if attached {
                    state.records.insert(history::RECORD.to_owned(), history.to_value());
                }
            })
            .await?;
        anyhow::Ok(())
    }
    .await;
    lock.release().await?;
    written
}

/// Uploads `photo` through the deployed API and returns the analysis: GET /upload-url, PUT,
/// POST /analyze, as any client does. Its error is cleaned of signing secrets.
pub async fn analyze_photo(url: &str, photo: &std::path::Path) -> Result<Value> {
    let analysis = async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let bytes = std::fs::read(photo).with_context(|| format!("reading {}", photo.display()))?;
        let ((upload_url, file_key), _) = get_upload_url(&client, url, bytes.len()).await?;
        put_photo(&client, &upload_url, bytes).await?;
        let response = client.post(format!("{url}/analyze")).json(&json!({ "fileKey": file_key })).send().await?;
        json_response(response, "POST /analyze", 200).await
    };
    analysis.await.map_err(|error| anyhow!(redact(&format!("{error:#}"))))
}

/// Runs the client flow; every step is reported, and the flow stops at the first failure
/// whose result a later step needs.
async fn flow(url: &str) -> Vec<StepResult> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a default client builds");
    let mut steps = Vec::new();
    let photos = workspace::root().join("tests/fixtures/photos");

    step(&mut steps, "GET / (the page)", page(&client, url)).await;
    for (photo, expect_faces) in [("astronaut.jpg", 1), ("chelsea.jpg", 0)] {
        let bytes = match std::fs::read(photos.join(photo)) {
            Ok(bytes) => bytes,
            Err(error) => {
                steps.push(StepResult {
                    name: format!("read {photo}"),
                    passed: false,
                    latency_ms: 0,
                    detail: error.to_string(),
                });
                return steps;
            }
        };
        let upload =
            step(&mut steps, &format!("GET /upload-url ({photo})"), get_upload_url(&client, url, bytes.len())).await;
        let Some((upload_url, file_key)) = upload else { return steps };
        let put = step(&mut steps, &format!("PUT {photo}"), put_photo(&client, &upload_url, bytes)).await;
        if put.is_none() {
            return steps;
        }
        // The upload alone is analysed (its bucket notification); then POST /analyze answers
        // the kept result.
        let id = file_key.strip_prefix("uploads/").unwrap_or(&file_key);
        let kept = step(
            &mut steps,
            &format!("GET /analysis/{{id}} ({photo})"),
            analysis_of_upload(&client, url, id, expect_faces),
        )
        .await;
        if kept.is_none() {
            return steps;
        }
        let analysis =
            step(&mut steps, &format!("POST /analyze ({photo})"), analyze(&client, url, &file_key, expect_faces)).await;
        if analysis.is_none() {
            return steps;
        }
    }
    step(&mut steps, "POST /analyze (bad fileKey)", bad_file_key(&client, url)).await;
    steps
}

/// Times `work`, records its result (its detail cleaned of signing secrets), and passes its
/// value on.
async fn step<T>(
    steps: &mut Vec<StepResult>,
    name: &str,
    work: impl std::future::Future<Output = Result<(T, String)>>,
) -> Option<T> {
    let start = Instant::now();
    let result = work.await;
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((value, detail)) => {
            steps.push(StepResult { name: name.to_owned(), passed: true, latency_ms, detail: redact(&detail) });
            Some(value)
        }
        Err(error) => {
            let detail = redact(&format!("{error:#}"));
            steps.push(StepResult { name: name.to_owned(), passed: false, latency_ms, detail });
            None
        }
    }
}

async fn json_response(response: reqwest::Response, what: &str, expected: u16) -> Result<Value> {
    let status = response.status().as_u16();
    let text = response.text().await.with_context(|| format!("reading the response to {what}"))?;
    if status != expected {
        bail!("{what} returned {status}, expected {expected}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what} returned a body that is not JSON: {text}"))
}

fn string_field<'a>(body: &'a Value, field: &str, what: &str) -> Result<&'a str> {
    body[field].as_str().ok_or_else(|| anyhow!("{what}: `{field}` is missing or not a string in {body}"))
}

/// The page stays plain, fast and small: under 50 KB in all.
const PAGE_LIMIT_BYTES: usize = 50 * 1024;

/// `GET /`: the page people use, whole, as HTML, with its security policy.
async fn page(client: &reqwest::Client, url: &str) -> Result<((), String)> {
    let response = client.get(format!("{url}/")).send().await.context("GET /")?;
    let status = response.status().as_u16();
    let header =
        |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let (content_type, policy) = (header("content-type"), header("content-security-policy"));
    let text = response.text().await.context("reading the page")?;
    if status != 200 || !content_type.starts_with("text/html") {
        bail!("GET / returned {status} {content_type:?}, expected 200 text/html");
    }
    if !text.starts_with("<!doctype html>") || !text.contains("id=\"file\"") {
        bail!("GET / returned HTML that is not the page (no photo chooser)");
    }
    if text.len() >= PAGE_LIMIT_BYTES {
        bail!("the page is {} bytes; it must stay under {PAGE_LIMIT_BYTES}", text.len());
    }
    if !policy.starts_with("default-src 'none'") {
        bail!("the page has no content security policy: {policy:?}");
    }
    Ok(((), format!("{} bytes of HTML", text.len())))
}

/// `GET /upload-url` for a JPEG of `length` bytes, as the page asks: the URL is signed for
/// that length, which every environment accepts and prod requires.
async fn get_upload_url(client: &reqwest::Client, url: &str, length: usize) -> Result<((String, String), String)> {
    let response = client
        .get(format!("{url}/upload-url?contentType=image%2Fjpeg&contentLength={length}"))
        .send()
        .await
        .context("GET /upload-url")?;
    let body = json_response(response, "GET /upload-url", 200).await?;
    let upload_url = string_field(&body, "uploadUrl", "GET /upload-url")?.to_owned();
    let file_key = string_field(&body, "fileKey", "GET /upload-url")?.to_owned();
    if string_field(&body, "contentType", "GET /upload-url")? != "image/jpeg" || !file_key.starts_with("uploads/") {
        bail!("GET /upload-url returned an unexpected body: {body}");
    }
    if body["expiresIn"].as_u64().is_none() {
        bail!("GET /upload-url: `expiresIn` is missing or not a number in {body}");
    }
    if body["contentLength"].as_u64() != Some(length as u64) {
        bail!("GET /upload-url did not sign the length {length}: {body}");
    }
    Ok(((upload_url, file_key.clone()), format!("fileKey {file_key}, signed for {length} bytes")))
}

async fn put_photo(client: &reqwest::Client, upload_url: &str, bytes: Vec<u8>) -> Result<((), String)> {
    let size = bytes.len();
    let response = client
        .put(upload_url)
        .header("Content-Type", "image/jpeg")
        .body(bytes)
        .send()
        .await
        .context("PUT to the presigned URL")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("PUT to the presigned URL returned {status}: {text}");
    }
    Ok(((), format!("{size} bytes")))
}

async fn analyze(client: &reqwest::Client, url: &str, file_key: &str, expect_faces: u64) -> Result<((), String)> {
    let response = client
        .post(format!("{url}/analyze"))
        .json(&json!({ "fileKey": file_key }))
        .send()
        .await
        .context("POST /analyze")?;
    let body = json_response(response, "POST /analyze", 200).await?;
    Ok(((), check_analysis(&body, expect_faces, "POST /analyze")?))
}

/// How long an upload's analysis may take to become readable.
const ANALYSIS_WAIT: Duration = Duration::from_secs(30);

/// `GET /analysis/{id}` until the upload's analysis is done (`202` meanwhile).
async fn analysis_of_upload(client: &reqwest::Client, url: &str, id: &str, expect_faces: u64) -> Result<((), String)> {
    let what = "GET /analysis/{id}";
    let began = Instant::now();
    loop {
        let response = client.get(format!("{url}/analysis/{id}")).send().await.context("GET /analysis/{id}")?;
        if response.status().as_u16() != 202 {
            let body = json_response(response, what, 200).await?;
            if body["status"] != "done" || body["fileKey"] != format!("uploads/{id}").as_str() {
                bail!("{what}: expected the done result of uploads/{id}, got {body}");
            }
            let detail = check_analysis(&body, expect_faces, what)?;
            return Ok(((), format!("{detail}, readable {} ms after the PUT", began.elapsed().as_millis())));
        }
        if began.elapsed() > ANALYSIS_WAIT {
            bail!(
                "{what}: still pending {} s after the upload; is the bucket's notification deployed?",
                ANALYSIS_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks an analysis: `expect_faces` faces, each well formed, the astronaut's HAPPY.
fn check_analysis(body: &Value, expect_faces: u64, what: &str) -> Result<String> {
    let faces = body["faces"].as_array().ok_or_else(|| anyhow!("{what}: `faces` is not an array in {body}"))?;
    let detected =
        body["facesDetected"].as_u64().ok_or_else(|| anyhow!("{what}: `facesDetected` is missing in {body}"))?;
    if detected != faces.len() as u64 || detected != expect_faces {
        bail!("{what} found {detected} face(s), expected {expect_faces}: {body}");
    }
    for face in faces {
        check_face(face).with_context(|| format!("{what} returned a malformed face in {body}"))?;
    }
    if expect_faces == 1 {
        let dominant = faces[0]["dominantEmotion"].as_str().unwrap_or("");
        if dominant != "HAPPY" {
            bail!("{what}: the astronaut's dominant emotion is {dominant:?}, expected HAPPY: {body}");
        }
        return Ok(format!("1 face, dominant emotion HAPPY ({})", faces[0]["emotions"][0]["confidence"]));
    }
    Ok(format!("{detected} faces"))
}

/// The response schema of one face.
fn check_face(face: &Value) -> Result<()> {
    face["faceNumber"].as_u64().context("faceNumber")?;
    for key in ["Width", "Height", "Left", "Top"] {
        face["position"][key].as_f64().with_context(|| format!("position.{key}"))?;
    }
    let emotions = face["emotions"].as_array().context("emotions")?;
    let confidences: Vec<f64> = emotions.iter().map(|e| e["confidence"].as_f64().unwrap_or(-1.0)).collect();
    if emotions.iter().any(|e| e["emotion"].as_str().is_none())
        || confidences.iter().any(|c| !(0.0..=100.0).contains(c))
    {
        bail!("emotions must be {{emotion, confidence 0-100}}");
    }
    if confidences.windows(2).any(|pair| pair[0] < pair[1]) {
        bail!("emotions must be sorted by confidence, highest first");
    }
    Ok(())
}

async fn bad_file_key(client: &reqwest::Client, url: &str) -> Result<((), String)> {
    let response = client
        .post(format!("{url}/analyze"))
        .json(&json!({ "fileKey": "../etc/passwd" }))
        .send()
        .await
        .context("POST /analyze")?;
    let body = json_response(response, "POST /analyze with a bad fileKey", 400).await?;
    if body["error"] != "InvalidRequest" || body["message"].as_str().is_none() {
        bail!("a bad fileKey must give {{\"error\": \"InvalidRequest\", \"message\": ...}}, got {body}");
    }
    Ok(((), "400 InvalidRequest".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN";
    const SIGNATURE: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn presigned(address: &str) -> String {
        format!(
            "http://{address}/bucket/uploads/a.jpg?x-id=PutObject&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=ASIAEXAMPLE%2F20261204%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261204T120000Z\
             &X-Amz-Expires=300&X-Amz-Security-Token={TOKEN}&X-Amz-SignedHeaders=content-type%3Bhost\
             &X-Amz-Signature={SIGNATURE}"
        )
    }

    /// A server that refuses one PUT as S3 refuses a bad signature, echoing the signed request.
    fn refusing_s3() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0; 64 * 1024];
            let read = stream.read(&mut request).unwrap();
            let request_line = String::from_utf8_lossy(&request[..read]).lines().next().unwrap_or_default().to_owned();
            let body = format!(
                "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we \
                 calculated does not match the signature you provided.</Message><SignatureProvided>{SIGNATURE}\
                 </SignatureProvided><CanonicalRequest>{request_line}</CanonicalRequest><Request>{request_line}\
                 </Request></Error>"
            );
            let response =
                format!("HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            stream.write_all(response.as_bytes()).unwrap();
        });
        address
    }

    fn assert_no_secrets(text: &str) {
        for secret in ["X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", TOKEN, SIGNATURE] {
            assert!(!text.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()), "{secret} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn a_failed_put_records_and_shows_no_signature_or_token() {
        let client = reqwest::Client::new();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let mut steps = Vec::new();
        for (name, url) in [("PUT (refused)", presigned(&refusing_s3())), ("PUT (unreachable)", presigned(&closed))] {
            step(&mut steps, name, put_photo(&client, &url, b"\xFF\xD8\xFF".to_vec())).await;
        }
        assert!(steps.iter().all(|step| !step.passed), "{steps:?}");
        assert!(steps[0].detail.contains("403") && steps[0].detail.contains("SignatureDoesNotMatch"), "{steps:?}");
        let result = SmokeTest {
            time: "2026-12-04T12:00:00Z".to_owned(),
            passed: false,
            api_url: "http://127.0.0.1:3000".to_owned(),
            artifacts: Default::default(),
            steps,
        };
        assert_no_secrets(&serde_json::to_string(&result).unwrap());
        assert_no_secrets(&render("local", &result));
    }

    #[tokio::test]
    async fn an_unexpected_upload_url_answer_is_reported_without_its_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let url = presigned(&address);
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.read(&mut [0; 4096]).unwrap();
            let body = format!(r#"{{"uploadUrl":"{url}","fileKey":"uploads/a.gif","contentType":"image/gif"}}"#);
            let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            stream.write_all(response.as_bytes()).unwrap();
        });
        let mut steps = Vec::new();
        let client = reqwest::Client::new();
        step(&mut steps, "GET /upload-url", get_upload_url(&client, &format!("http://{address}"), 100)).await;
        assert!(!steps[0].passed && steps[0].detail.contains("unexpected body"), "{steps:?}");
        assert_no_secrets(&steps[0].detail);
    }
}
