//! The load benchmark: the local API under many clients, driven by `oha` (installed by the
//! benchmark into `target/tools`), while the function processes per function and the data
//! plane's memory are watched from `/proc`.
//!
//! Scenarios: `GET /upload-url` at 1,000 connections; `POST /analyze` of one analysed upload
//! (its kept result) at 200; a cancellation storm (300 clients that give up after 50 to 300
//! ms); for scale, DetectFaces on the face service directly at 200; and analysis on upload,
//! 50 uploads one after another ([`super::events`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::local::cloud;
use crate::local::layout::LocalConfig;
use crate::local::procs::Liveness;
use crate::process;

/// The load generator and the version the benchmark installs.
pub const OHA_VERSION: &str = "1.16.0";

/// What one `oha` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRun {
    pub name: String,
    pub connections: usize,
    pub seconds: f64,
    /// 2xx answers per second.
    pub successful_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Status code -> answers.
    pub statuses: BTreeMap<String, u64>,
    /// Client-side errors (timeouts, refused connections, ...) -> count.
    pub errors: BTreeMap<String, u64>,
    /// Function -> the most processes seen at once.
    pub peak_processes: BTreeMap<String, usize>,
}

/// The cancellation storm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storm {
    pub clients: usize,
    /// Status code -> answers that arrived before the client gave up.
    pub statuses: BTreeMap<String, u64>,
    /// Clients that gave up (their timeout passed).
    pub gave_up: u64,
    pub peak_processes: BTreeMap<String, usize>,
    /// From the last client's end until every function is at most at its cap.
    pub drain_ms: f64,
    /// Whether `GET /upload-url` answered 200 right after.
    pub answers_after: bool,
}

/// The load section of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub oha: String,
    /// Instances each function may run.
    pub cap: usize,
    pub upload_url: LoadRun,
    pub analyze: LoadRun,
    pub storm: Storm,
    /// DetectFaces on the face service directly; `None` when it does not run here.
    pub face_direct: Option<LoadRun>,
    /// Analyze's successful throughput over the face service's own.
    pub analyze_to_face: Option<f64>,
    /// The data plane's peak resident memory (VmHWM), MiB.
    pub dataplane_peak_rss_mib: f64,
    /// Analysis on upload: from the PUT's answer to the readable result; `None` without the
    /// face service.
    pub upload_to_result: Option<super::events::UploadToResult>,
}

/// Where and what to load.
pub struct Plan {
    pub oha: PathBuf,
    pub api_url: String,
    pub api_address: std::net::SocketAddr,
    pub face_url: Option<String>,
    pub bucket: String,
    pub file_key: String,
    pub seconds: u64,
    pub dataplane_pid: u32,
    /// `<state dir>/functions`, where the data plane unpacks each function's code.
    pub functions_dir: PathBuf,
    pub functions: Vec<String>,
    pub cap: usize,
    /// The face service's log (one line per DetectFaces call).
    pub face_log: PathBuf,
    pub photo: Vec<u8>,
}

/// `target/tools/bin/oha`, installed with `cargo install --locked` when missing.
pub fn ensure_oha(root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let oha = tools.join("bin/oha");
    let installed = process::capture(Command::new(&oha).arg("--version")).ok();
    if installed.as_deref().is_some_and(|version| version.contains(OHA_VERSION)) {
        return Ok(oha);
    }
    println!("installing oha {OHA_VERSION} into {} (a few minutes, once)", tools.display());
    process::run(
        Command::new("cargo")
            .args(["install", "--locked", "--quiet", "--version", OHA_VERSION, "--root"])
            .arg(&tools)
            .arg("oha"),
    )?;
    Ok(oha)
}

/// Makes the private local cloud `config` names ready to be loaded: starts its face service
/// and data plane, deploys `local` from the release build with the stage's throttling raised
/// out of the way (the benchmark measures the data plane and the functions; the tests prove
/// the throttling), and uploads the astronaut through the API as a client does.
pub fn prepare(root: &Path, work: &Path, config: &LocalConfig, oha: PathBuf, seconds: u64) -> Result<Plan> {
    for status in cloud::up(config)? {
        println!("{status}");
    }
    let environments = work.join("load-environments");
    std::fs::create_dir_all(&environments).with_context(|| format!("creating {}", environments.display()))?;
    let local = std::fs::read_to_string(crate::config::environments_dir().join("local.yaml"))
        .context("reading environments/local.yaml")?;
    let mut unthrottled: serde_yaml::Value = serde_yaml::from_str(&local).context("parsing environments/local.yaml")?;
    unthrottled["throttling"]["rate_limit"] = serde_yaml::Value::from(1_000_000.0);
    unthrottled["throttling"]["burst_limit"] = serde_yaml::Value::from(1_000_000);
    std::fs::write(environments.join("local.yaml"), serde_yaml::to_string(&unthrottled)?)
        .context("writing the load environment")?;
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    process::run(
        Command::new(&xtask)
            .args(["deploy", "--env", "local", "--yes", "--no-build", "--lock-timeout", "60s"])
            .env(crate::config::ENVIRONMENTS_DIR_ENV, &environments)
            .env(crate::local::layout::STATE_DIR_ENV, config.state_dir.dir())
            .env(crate::local::layout::API_PORT_ENV, config.api_port.to_string())
            .env("AWS_ENDPOINT_URL", &config.endpoint)
            .current_dir(root),
    )?;
    let api_url = config.api_url();
    let photo = std::fs::read(root.join("tests/fixtures/photos/astronaut.jpg")).context("reading the astronaut")?;
    let (bucket, file_key) = upload(&api_url, photo.clone())?;
    let dataplane_pid = match config.state_dir.dataplane_pid().liveness()? {
        Liveness::Running(recorded) => recorded.pid,
        Liveness::NoFile | Liveness::Stale(_) => bail!("the benchmark's data plane does not run"),
    };
    Ok(Plan {
        oha,
        api_address: crate::local::layout::loopback_address(&api_url)?,
        api_url,
        face_url: config.state_dir.face_url(),
        bucket,
        file_key,
        seconds,
        dataplane_pid,
        functions_dir: config.state_dir.dir().join("functions"),
        functions: crate::functions::FUNCTIONS
            .iter()
            .map(|function| format!("{}-local-{}", config.project, function.name))
            .collect(),
        cap: config.max_instances,
        face_log: config.state_dir.face_log(),
        photo,
    })
}

/// GET /upload-url and PUT the photo, as any client does; the bucket (from the presigned
/// URL's path-style address) and the file key.
fn upload(api_url: &str, photo: Vec<u8>) -> Result<(String, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let body: Value = client.get(format!("{api_url}/upload-url")).send().await?.error_for_status()?.json().await?;
        let (Some(url), Some(key)) = (body["uploadUrl"].as_str(), body["fileKey"].as_str()) else {
            bail!("GET /upload-url answered {body}");
        };
        client.put(url).header("Content-Type", "image/jpeg").body(photo).send().await?.error_for_status()?;
        let path = reqwest::Url::parse(url)?.path().trim_start_matches('/').to_owned();
        let bucket = path.split('/').next().unwrap_or_default().to_owned();
        Ok((bucket, key.to_owned()))
    })
}

/// Runs every scenario of `plan`.
pub fn measure(plan: &Plan) -> Result<LoadReport> {
    let seconds = plan.seconds.to_string();
    let upload = format!("{}/upload-url", plan.api_url);
    let analyze = format!("{}/analyze", plan.api_url);
    let body = serde_json::json!({ "fileKey": plan.file_key }).to_string();

    println!("  GET /upload-url, 1000 connections, {seconds} s");
    let upload_url = run(plan, "GET /upload-url", 1000, |c| {
        c.arg(&upload);
    })?;
    // Every request names the one upload, whose result is kept after the first: this measures
    // the API's path to a kept result. `upload_to_result` measures analysis itself.
    println!("  POST /analyze, 200 connections, {seconds} s");
    let analyze_run = run(plan, "POST /analyze (kept result)", 200, |c| {
        c.args(["-m", "POST", "-T", "application/json", "-d", &body, &analyze]);
    })?;
    println!("  cancellation storm: 300 clients giving up after 50-300 ms");
    let storm = storm(plan, &analyze, &body, "/upload-url")?;
    let face_direct = match &plan.face_url {
        Some(face_url) => {
            println!("  DetectFaces on the face service directly, 200 connections, {seconds} s");
            let request = serde_json::json!({
                "Image": {"S3Object": {"Bucket": plan.bucket, "Name": plan.file_key}},
                "Attributes": ["ALL"],
            })
            .to_string();
            Some(run(plan, "DetectFaces (face service)", 200, |c| {
                c.args(["-m", "POST", "-T", "application/x-amz-json-1.1"]).args([
                    "-H",
                    "X-Amz-Target: RekognitionService.DetectFaces",
                    "-d",
                    &request,
                    face_url,
                ]);
            })?)
        }
        None => None,
    };
    let upload_to_result = match &plan.face_url {
        Some(_) => {
            println!("  analysis on upload: {UPLOADS_TIMED} uploads, one after another");
            Some(super::events::measure(&plan.api_url, &plan.face_log, &plan.photo, UPLOADS_TIMED)?)
        }
        None => None,
    };
    let analyze_to_face = face_direct
        .as_ref()
        .filter(|face| face.successful_per_s > 0.0)
        .map(|face| analyze_run.successful_per_s / face.successful_per_s);
    Ok(LoadReport {
        oha: OHA_VERSION.to_owned(),
        cap: plan.cap,
        upload_url,
        analyze: analyze_run,
        storm,
        face_direct,
        analyze_to_face,
        dataplane_peak_rss_mib: peak_rss_mib(plan.dataplane_pid)?,
        upload_to_result,
    })
}

/// How many uploads analysis on upload is timed over.
pub const UPLOADS_TIMED: usize = 50;

/// One `oha` run of `plan.seconds` with `connections`, its target set by `configure`,
/// watched.
fn run(plan: &Plan, name: &str, connections: usize, configure: impl FnOnce(&mut Command)) -> Result<LoadRun> {
    let mut command = oha(&plan.oha, connections);
    // For `seconds`; requests under way when the time is up are waited for and counted.
    command.args(["-z", &format!("{}s", plan.seconds), "-w"]);
    configure(&mut command);
    let watch = Watch::start(plan);
    let output = process::capture(&mut command);
    let peak_processes = watch.stop();
    let report: Value = serde_json::from_str(&output?).context("oha printed no JSON")?;
    let counts = |field: &str| -> BTreeMap<String, u64> {
        report[field]
            .as_object()
            .map(|map| map.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default()
    };
    let statuses = counts("statusCodeDistribution");
    let seconds = report["summary"]["total"].as_f64().unwrap_or(0.0);
    let successful: u64 = statuses.iter().filter(|(code, _)| code.starts_with('2')).map(|(_, n)| n).sum();
    let percentile = |key: &str| report["latencyPercentiles"][key].as_f64().unwrap_or(f64::NAN) * 1000.0;
    Ok(LoadRun {
        name: name.to_owned(),
        connections,
        seconds,
        successful_per_s: if seconds > 0.0 { successful as f64 / seconds } else { 0.0 },
        p50_ms: percentile("p50"),
        p99_ms: percentile("p99"),
        p999_ms: percentile("p99.9"),
        statuses,
        errors: counts("errorDistribution"),
        peak_processes,
    })
}

fn oha(path: &Path, connections: usize) -> Command {
    let mut command = Command::new(path);
    command.args(["--no-tui", "--output-format", "json", "-c", &connections.to_string()]);
    command
}

/// 300 clients in six groups of 50, giving up after 50, 100, ... 300 ms.
fn storm(plan: &Plan, analyze: &str, body: &str, upload_path: &str) -> Result<Storm> {
    let watch = Watch::start(plan);
    let mut children = Vec::new();
    for patience in (1..=6).map(|n| n * 50) {
        let mut command = oha(&plan.oha, 50);
        command.args(["-n", "50", "-t", &format!("{patience}ms"), "-m", "POST", "-T", "application/json"]);
        command.args(["-d", body, analyze]);
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        children.push(command.spawn().context("starting oha")?);
    }
    let (mut statuses, mut gave_up) = (BTreeMap::new(), 0);
    for child in children {
        let output = child.wait_with_output()?;
        let report: Value = serde_json::from_slice(&output.stdout).context("oha printed no JSON")?;
        for (code, n) in report["statusCodeDistribution"].as_object().into_iter().flatten() {
            *statuses.entry(code.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
        for (error, n) in report["errorDistribution"].as_object().into_iter().flatten() {
            if error.contains("timeout") {
                gave_up += n.as_u64().unwrap_or(0);
            }
        }
    }
    let ended = Instant::now();
    let drain_ms = loop {
        let counts = processes(&plan.functions_dir, &plan.functions);
        if counts.values().all(|n| *n <= plan.cap) {
            break ended.elapsed().as_secs_f64() * 1000.0;
        }
        if ended.elapsed() > Duration::from_secs(30) {
            bail!("the function processes did not drain back to the cap of {} within 30 s: {counts:?}", plan.cap);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let peak_processes = watch.stop();
    let answers_after =
        matches!(crate::local::http::http_get(plan.api_address, upload_path, Duration::from_secs(10)), Ok((200, _)));
    Ok(Storm { clients: 300, statuses, gave_up, peak_processes, drain_ms, answers_after })
}

/// Samples the function processes every 10 ms until stopped; the peak per function.
struct Watch {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<BTreeMap<String, usize>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Watch {
    fn start(plan: &Plan) -> Self {
        let (stop, peaks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(BTreeMap::new())));
        let (dir, functions) = (plan.functions_dir.clone(), plan.functions.clone());
        let thread = {
            let (stop, peaks) = (Arc::clone(&stop), Arc::clone(&peaks));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let counts = processes(&dir, &functions);
                    let mut peaks = peaks.lock().unwrap();
                    for (function, n) in counts {
                        let peak = peaks.entry(function).or_insert(0);
                        *peak = (*peak).max(n);
                    }
                    drop(peaks);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self { stop, peaks, thread }
    }

    fn stop(self) -> BTreeMap<String, usize> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        let peaks = self.peaks.lock().unwrap().clone();
        peaks
    }
}

/// How many processes run each function's code (an executable under
/// `<functions_dir>/<function>/`), by function.
fn processes(functions_dir: &Path, functions: &[String]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = functions.iter().map(|f| (f.clone(), 0)).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else { return counts };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
        let Ok(relative) = exe.strip_prefix(functions_dir) else { continue };
        if let Some(function) = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()) {
            if let Some(count) = counts.get_mut(&function) {
                *count += 1;
            }
        }
    }
    counts
}

/// A process's peak resident memory (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}
