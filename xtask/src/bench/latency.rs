//! Cold start and warm latency of the deployed bootstraps, run under the local Lambda
//! Runtime API ([`crate::local::runtime`]) exactly as the data plane runs them: the code
//! fetched from the emulator by its `CodeSha256`, the deployed environment, and the SDK
//! calls going to the emulator (and DetectFaces to the local face service).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::local::dataplane::{deployed_spec, Endpoints};
use crate::local::discovery::{self, ControlPlane, Function};
use crate::local::event::{self, EventContext};
use crate::local::runtime::{extract_bootstrap, FunctionSpec, Runtime, RuntimeConfig};

/// What one function measured.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionLatency {
    pub function: String,
    /// What each invocation asked for.
    pub request: String,
    /// Process start to the first `/next` (the init phase), one per cold start.
    pub init: Summary,
    /// Process start to the first response, one per cold start.
    pub cold_start: Summary,
    /// Warm invocations, end to end through the Runtime API.
    pub warm: Summary,
}

/// Order statistics of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Nearest-rank percentiles.
    pub fn of(durations: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if ms.is_empty() {
                return f64::NAN;
            }
            let index = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms[index.clamp(1, ms.len()) - 1]
        };
        Summary {
            samples: ms.len(),
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The request the benchmark makes of each function (analyze's with a photo just uploaded);
/// `None` for a function it does not know.
fn request_of(function: &str) -> Option<(&'static str, &'static str)> {
    match function {
        "upload-url" => Some(("GET", "/upload-url")),
        "analyze" => Some(("POST", "/analyze")),
        "web" => Some(("GET", "/")),
        _ => None,
    }
}

/// How to measure.
pub struct Plan<'a> {
    /// The emulator.
    pub endpoint: &'a str,
    pub region: &'a str,
    /// `<project>-<env>-`, the deployed functions' name prefix.
    pub name_prefix: String,
    /// The local face service, for analyze's DetectFaces.
    pub face_url: Option<String>,
    pub cold_starts: usize,
    pub invocations: usize,
    /// The photo analyze is asked about.
    pub photo: &'a Path,
    /// Where bootstraps are unpacked and function logs go.
    pub work_dir: &'a Path,
}

/// Measures both functions.
pub async fn measure(plan: &Plan<'_>) -> Result<Vec<FunctionLatency>> {
    let control = ControlPlane::connect(plan.endpoint, &[plan.region.to_owned()]).await;
    let snapshot = control.snapshot().await?;
    let runtime = Runtime::start_with(RuntimeConfig { region: plan.region.to_owned(), ..RuntimeConfig::default() })
        .await
        .context("starting the Lambda Runtime API")?;
    let mut results = Vec::new();
    for function in crate::functions::FUNCTIONS {
        let name = format!("{}{}", plan.name_prefix, function.name);
        let deployed = snapshot
            .functions
            .iter()
            .find(|candidate| candidate.name == name && candidate.qualifier.as_deref() == Some("live"))
            .with_context(|| format!("{name}:live is not deployed in {} at {}", plan.region, plan.endpoint))?;
        let spec = spec(&control, deployed, plan).await?;
        let Some((method, path)) = request_of(function.name) else {
            bail!("the benchmark does not know how to call `{}`", function.name)
        };
        let (request, event) = if function.name == "analyze" {
            let key = upload(plan, &spec).await?;
            let body = Bytes::from(serde_json::json!({ "fileKey": key }).to_string());
            let photo = plan.photo.file_name().unwrap_or_default().to_string_lossy().into_owned();
            // The first invocation analyses the upload and keeps the result; every later one
            // answers the kept result, as the API does.
            (format!("{method} {path} ({photo}, then its kept result)"), request_event(method, path, body))
        } else {
            (format!("{method} {path}"), request_event(method, path, Bytes::new()))
        };
        let payload = serde_json::to_vec(&event)?;
        let check = |answer: &[u8]| -> Result<()> {
            let response = event::from_response(answer);
            if !response.status().is_success() {
                bail!("{name} answered {}: {}", response.status(), String::from_utf8_lossy(response.body()));
            }
            Ok(())
        };

        // Cold starts: a fresh instance each time.
        for _ in 0..plan.cold_starts {
            runtime.stop_function(&spec.name).await;
            let answer = runtime.invoke(&spec, payload.clone()).await.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            check(&answer)?;
        }
        let cold: Vec<_> = runtime.cold_starts().into_iter().filter(|cold| cold.function == spec.name).collect();
        let init: Vec<Duration> = cold.iter().filter_map(|cold| cold.to_first_next).collect();
        let first: Vec<Duration> = cold.iter().filter_map(|cold| cold.to_first_response).collect();

        // Warm: one instance, invoked back to back.
        let mut warm = Vec::with_capacity(plan.invocations);
        for _ in 0..plan.invocations {
            let outcome = runtime.invoke_traced(&spec, payload.clone()).await;
            let answer = outcome.result.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            check(&answer)?;
            if !outcome.cold {
                warm.push(outcome.duration);
            }
        }
        tracing::info!(function = function.name, "measured cold starts and warm invocations");
        results.push(FunctionLatency {
            function: function.name.to_owned(),
            request,
            init: Summary::of(&init),
            cold_start: Summary::of(&first),
            warm: Summary::of(&warm),
        });
    }
    runtime.shutdown().await;
    Ok(results)
}

async fn spec(control: &ControlPlane, function: &Function, plan: &Plan<'_>) -> Result<FunctionSpec> {
    let code = control.fetch_code(function).await?;
    let dir = plan.work_dir.join("functions").join(&function.name);
    let bootstrap = extract_bootstrap(&code.bytes, &code.code_sha256, &dir)
        .with_context(|| format!("unpacking the code of {} from {}", function.name, code.source))?;
    let log_file = plan.work_dir.join(format!("{}.log", function.name));
    let endpoints = Endpoints { emulator: plan.endpoint, s3: None, rekognition: plan.face_url.as_deref() };
    Ok(deployed_spec(function, code.code_sha256, bootstrap, &endpoints, log_file))
}

/// Puts the photo into the function's upload bucket, as a client's presigned PUT would.
async fn upload(plan: &Plan<'_>, spec: &FunctionSpec) -> Result<String> {
    let bucket = spec
        .environment
        .get("UPLOAD_BUCKET")
        .with_context(|| format!("{} has no UPLOAD_BUCKET variable", spec.name))?;
    let config = discovery::emulator_config(plan.endpoint, plan.region).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let bytes = std::fs::read(plan.photo).with_context(|| format!("reading {}", plan.photo.display()))?;
    let content_type = if plan.photo.extension().is_some_and(|ext| ext == "png") { "image/png" } else { "image/jpeg" };
    let extension = if content_type == "image/png" { "png" } else { "jpg" };
    let key = format!("uploads/{}.{extension}", uuid::Uuid::new_v4());
    s3.put_object().bucket(bucket).key(&key).content_type(content_type).body(bytes.into()).send().await.map_err(
        |e| {
            anyhow::anyhow!(
                "uploading {} to s3://{bucket}/{key}: {}",
                plan.photo.display(),
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        },
    )?;
    Ok(key)
}

fn request_event(method: &str, path: &str, body: Bytes) -> serde_json::Value {
    let mut request = http::Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body).expect("a valid request");
    let context = EventContext {
        time: SystemTime::now(),
        ..EventContext::new(
            "benchapi",
            format!("{method} {path}"),
            super::deploy::EMULATOR_ACCOUNT,
            "127.0.0.1",
            "127.0.0.1",
            uuid::Uuid::new_v4().to_string(),
        )
    };
    event::to_event(request, &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sample: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let summary = Summary::of(&sample);
        assert_eq!(summary.samples, 200);
        assert_eq!(summary.p50_ms, 100.0);
        assert_eq!(summary.p99_ms, 198.0);
        assert_eq!((summary.min_ms, summary.max_ms), (1.0, 200.0));
        let one = Summary::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }

    #[test]
    fn the_benchmark_calls_every_function_on_one_of_its_routes() {
        for function in crate::functions::FUNCTIONS {
            let (method, path) =
                request_of(function.name).unwrap_or_else(|| panic!("{} is not benchmarked", function.name));
            let routed = function.routes.iter().any(|route| route.method.to_string() == method && route.path == path);
            assert!(routed, "{method} {path} is not a route of {}", function.name);
        }
    }
}
