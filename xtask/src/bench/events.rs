//! Analysis on upload, timed the way a client sees it: from the PUT's response until
//! `GET /analysis/{id}` answers the result, over uploads made one after another (so that each
//! is measured alone), and how many DetectFaces calls the face service answered for them
//! (its log has one line per call).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::latency::Summary;

/// How long one upload's result may take before the run fails.
const RESULT_WAIT: Duration = Duration::from_secs(30);
/// How often `GET /analysis/{id}` is asked while pending.
const POLL: Duration = Duration::from_millis(10);

/// What the run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadToResult {
    pub uploads: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// DetectFaces calls the face service answered during the run.
    pub rekognition_calls: usize,
    pub rekognition_calls_per_upload: f64,
}

/// Uploads `photo` `uploads` times through the API at `api_url` and times each result.
pub fn measure(api_url: &str, face_log: &Path, photo: &[u8], uploads: usize) -> Result<UploadToResult> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let calls_before = settled_calls(face_log);
    let mut durations = Vec::with_capacity(uploads);
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        for _ in 0..uploads {
            durations.push(one_upload(&client, api_url, photo).await?);
        }
        anyhow::Ok(())
    })?;
    let calls = settled_calls(face_log).saturating_sub(calls_before);
    let summary = Summary::of(&durations);
    Ok(UploadToResult {
        uploads,
        p50_ms: summary.p50_ms,
        p99_ms: summary.p99_ms,
        max_ms: summary.max_ms,
        rekognition_calls: calls,
        rekognition_calls_per_upload: calls as f64 / uploads.max(1) as f64,
    })
}

async fn one_upload(client: &reqwest::Client, api_url: &str, photo: &[u8]) -> Result<Duration> {
    let body: Value = client.get(format!("{api_url}/upload-url")).send().await?.error_for_status()?.json().await?;
    let (Some(url), Some(key)) = (body["uploadUrl"].as_str(), body["fileKey"].as_str()) else {
        bail!("GET /upload-url answered {body}");
    };
    let id = key.strip_prefix("uploads/").unwrap_or(key);
    client.put(url).header("Content-Type", "image/jpeg").body(photo.to_vec()).send().await?.error_for_status()?;
    let put_answered = Instant::now();
    loop {
        let response = client.get(format!("{api_url}/analysis/{id}")).send().await.context("GET /analysis/{id}")?;
        match response.status().as_u16() {
            202 => {}
            200 => return Ok(put_answered.elapsed()),
            status => bail!("GET /analysis/{id} answered {status}: {}", response.text().await.unwrap_or_default()),
        }
        if put_answered.elapsed() > RESULT_WAIT {
            bail!("no result for {key} {} s after its upload", RESULT_WAIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// DetectFaces calls in the face service's log, once the count has not changed for 1 s.
fn settled_calls(face_log: &Path) -> usize {
    let count = || {
        std::fs::read_to_string(face_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("DetectFaces"))
            .count()
    };
    let (mut last, mut since) = (count(), Instant::now());
    while since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}
