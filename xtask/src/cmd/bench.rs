//! `cargo xtask bench`: measures the deployer and the product on a private local cloud and
//! writes `target/bench/report.json` and `target/bench/report.md`.
//!
//! 1. Build: a full release build from clean (unless `--skip-full-build`), and rebuilds with
//!    no change.
//! 2. Sizes of the zips.
//! 3. The five deploy operations of the `dev` stack against a moto of the benchmark's own:
//!    straight, then through a proxy adding `--delay` to every request, then the same with
//!    `--parallelism 1`; wall time and every AWS call by service and operation.
//! 4. Cold start and warm latency of both deployed bootstraps under the local Runtime API.
//! 5. `drift` of the deployed stack: wall time and calls.
//! 6. Local face analysis: model load, per-image time for one and for three faces.
//!
//! Nothing of a running local cloud (`cargo xtask local up`) is touched.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::console::Console;
use super::flags::parse_duration;
use crate::arch::Arch;
use crate::bench::deploy::{self, Operation, OperationRun, Workload};
use crate::bench::latency;
use crate::bench::load;
use crate::bench::proxy::LatencyProxy;
use crate::bench::report::{self, BuildTimes, DeployReport, DriftReport, Machine, OperationReport, Report, Size};
use crate::local::cloud;
use crate::local::layout::{self, LocalConfig, Overrides};
use crate::manifest::Manifest;
use crate::ops;
use crate::process;
use crate::venv::Venv;
use crate::workspace;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The latency the proxy adds to every AWS request, e.g. `50ms`.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// `--parallelism` of the parallel deploys.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Warm invocations per function.
    #[arg(long, default_value_t = 200)]
    pub invocations: usize,
    /// Cold starts per function.
    #[arg(long, default_value_t = 10)]
    pub cold_starts: usize,
    /// Skip the full release build from clean (minutes on a small machine).
    #[arg(long)]
    pub skip_full_build: bool,
    /// Seconds each load scenario runs.
    #[arg(long, default_value_t = 30)]
    pub load_seconds: u64,
    /// Skip the load section.
    #[arg(long, conflicts_with = "load_only")]
    pub skip_load: bool,
    /// Run only the load section (against a release build that exists), and write
    /// target/bench/load.json and load.md.
    #[arg(long)]
    pub load_only: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.invocations == 0 || args.cold_starts == 0 || args.parallelism == 0 {
        bail!("--invocations, --cold-starts and --parallelism must be at least 1");
    }
    let root = workspace::root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Venv::ensure(&root)?;
    if args.load_only {
        return load_only(&root, &out, args.load_seconds);
    }

    println!("==> Build times");
    let build = build_times(&root, args.skip_full_build)?;
    let manifest = Manifest::load(&root)?.context("the build wrote no manifest")?;
    let sizes: BTreeMap<String, Size> = manifest
        .artifacts()
        .filter(|(_, arch, _)| *arch == Arch::X86_64)
        .map(|(function, _, artifact)| {
            (function.to_owned(), Size { zipped_bytes: artifact.zipped_bytes, unzipped_bytes: artifact.unzipped_bytes })
        })
        .collect();

    let cloud = PrivateCloud::start(&root, &out.join("cloud"))?;
    let workload = Workload::prepare(&root, &out.join("work"), cloud.config.state_dir.dir())?;
    let dependencies = workload.dependencies()?;
    let runtime = super::runtime()?;

    println!("==> Deploy operations, straight to the emulator");
    let direct = runtime.block_on(sequence(&workload, &cloud.config.endpoint, args.parallelism))?;
    cloud.reset()?;
    println!("==> Deploy operations, {} ms per request", args.delay.as_millis());
    let (delayed, serial) = runtime.block_on(async {
        let proxy = LatencyProxy::start(&cloud.config.endpoint, args.delay).await?;
        let delayed = sequence(&workload, &proxy.endpoint(), args.parallelism).await?;
        cloud.reset()?;
        println!("==> Deploy operations, {} ms per request, --parallelism 1", args.delay.as_millis());
        let serial = sequence(&workload, &proxy.endpoint(), 1).await?;
        cloud.reset()?;
        anyhow::Ok((delayed, serial))
    })?;
    let delay_ms = u64::try_from(args.delay.as_millis()).unwrap_or(u64::MAX);
    let mut operations = Vec::new();
    for ((direct, delayed), serial) in direct.iter().zip(&delayed).zip(&serial) {
        let critical_path =
            deploy::critical_path(&dependencies, &delayed.trace, direct.operation == Operation::Destroy)?;
        let delayed_ms = millis(delayed.wall);
        let steps = direct
            .trace
            .iter()
            .filter_map(|call| call.step.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        operations.push(OperationReport {
            operation: direct.operation,
            label: direct.operation.label().to_owned(),
            direct_ms: millis(direct.wall),
            calls: direct.calls.clone(),
            total_calls: direct.total_calls(),
            delayed_ms,
            delayed_total_calls: delayed.total_calls(),
            serial_ms: millis(serial.wall),
            steps: steps as u64,
            journal_writes: direct.trace.iter().filter(|call| call.journal).count() as u64,
            ratio_to_critical_path: delayed_ms / (critical_path.calls.max(1) * delay_ms.max(1)) as f64,
            ratio_to_serial: delayed_ms / millis(serial.wall),
            critical_path,
        });
    }
    let deploy = DeployReport {
        environment: deploy::ENVIRONMENT.to_owned(),
        delay_ms,
        parallelism: args.parallelism,
        operations,
    };

    println!("==> Cold start and warm latency");
    let face_url = cloud.start_face()?;
    let env = crate::config::Environment::load(&crate::config::environments_dir(), deploy::ENVIRONMENT)?;
    runtime.block_on(sequence_step(&workload, &cloud.config.endpoint, args.parallelism, Operation::FromEmpty))?;
    println!("==> Drift check of the deployed stack");
    let drift = deploy::drift(&workload, &cloud.config.endpoint)?;
    let photo = root.join("tests/fixtures/photos/astronaut.jpg");
    let plan = latency::Plan {
        endpoint: &cloud.config.endpoint,
        region: &env.region,
        name_prefix: format!("{}-{}-", env.project, env.name),
        face_url: face_url.clone(),
        cold_starts: args.cold_starts,
        invocations: args.invocations,
        photo: &photo,
        work_dir: &out.join("work"),
    };
    let latency = runtime.block_on(latency::measure(&plan))?;
    cloud.reset()?;
    let load = if args.skip_load {
        None
    } else {
        println!("==> The local API under load");
        Some(load_section(&root, &out, &cloud, args.load_seconds)?)
    };
    drop(cloud);

    println!("==> Local face analysis");
    let (face_analysis, face_analysis_skipped) = match face_url {
        Some(_) => (Some(face_benchmark(&root, &out.join("cloud/models"))?), None),
        None => (None, Some("the local face service did not start (see `cargo xtask local up`)".to_owned())),
    };

    let mut targets = report::judge(&deploy, &sizes, &latency, &build);
    targets.extend(load.iter().flat_map(report::judge_load));
    let drift =
        DriftReport { wall_ms: millis(drift.wall), total_calls: crate::calls::total(&drift.calls), calls: drift.calls };
    let report = Report {
        date: crate::state::lock::now_rfc3339(),
        machine: machine()?,
        deploy,
        sizes,
        latency,
        build,
        drift,
        face_analysis,
        face_analysis_skipped,
        load,
        targets,
    };
    let json = serde_json::to_string_pretty(&report)?;
    workspace::write_atomic(&out.join("report.json"), json.as_bytes())?;
    let markdown = report::markdown(&report);
    workspace::write_atomic(&out.join("report.md"), markdown.as_bytes())?;
    println!("\n{markdown}");
    println!(
        "Wrote {} and {}",
        workspace::relative(&root, &out.join("report.json")),
        workspace::relative(&root, &out.join("report.md"))
    );
    Ok(())
}

/// The load section on `cloud`, whose emulator holds nothing yet.
fn load_section(root: &Path, out: &Path, cloud: &PrivateCloud, seconds: u64) -> Result<load::LoadReport> {
    let oha = load::ensure_oha(root)?;
    let plan = load::prepare(root, &out.join("work"), &cloud.config, oha, seconds)?;
    load::measure(&plan)
}

/// `bench --load-only`: the load section alone, on a private cloud of its own.
fn load_only(root: &Path, out: &Path, seconds: u64) -> Result<()> {
    Manifest::load(root)?.context("there is no release build: run `cargo xtask build` first")?;
    let cloud = PrivateCloud::start(root, &out.join("cloud"))?;
    println!("==> The local API under load");
    let load = load_section(root, out, &cloud, seconds)?;
    drop(cloud);
    let targets = report::judge_load(&load);
    let mut markdown = report::load_markdown(&load);
    markdown.push_str("\n| what | target | measured | met |\n|---|---|---|---|\n");
    for target in &targets {
        markdown.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            target.what,
            target.target,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        ));
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({ "load": load, "targets": targets }))?;
    workspace::write_atomic(&out.join("load.json"), json.as_bytes())?;
    workspace::write_atomic(&out.join("load.md"), markdown.as_bytes())?;
    println!("\n{markdown}");
    println!(
        "Wrote {} and {}",
        workspace::relative(root, &out.join("load.json")),
        workspace::relative(root, &out.join("load.md"))
    );
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The five operations, each in a blocking task so that the proxy keeps serving.
async fn sequence(workload: &Workload, endpoint: &str, parallelism: usize) -> Result<Vec<OperationRun>> {
    let mut runs = Vec::new();
    for operation in Operation::ALL {
        runs.push(sequence_step(workload, endpoint, parallelism, operation).await?);
    }
    Ok(runs)
}

async fn sequence_step(
    workload: &Workload,
    endpoint: &str,
    parallelism: usize,
    operation: Operation,
) -> Result<OperationRun> {
    tokio::task::block_in_place(|| deploy::run(workload, operation, endpoint, parallelism))
}

/// Times `cargo xtask build` three ways; see [`BuildTimes`].
fn build_times(root: &Path, skip_full: bool) -> Result<BuildTimes> {
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let time = |args: &[&str]| -> Result<f64> {
        let started = Instant::now();
        process::run(Command::new(&xtask).args(args).current_dir(root))?;
        Ok(started.elapsed().as_secs_f64())
    };
    let full_release_s = if skip_full {
        ops::build::build(&Console::new(), false)?;
        None
    } else {
        process::run(
            Command::new("cargo")
                .args(["clean", "--release", "--target", Arch::X86_64.rust_target()])
                .current_dir(root),
        )?;
        Some(time(&["build", "--force"])?)
    };
    let no_change_s = time(&["build"])?;
    let no_change_forced_s = time(&["build", "--force"])?;
    Ok(BuildTimes { full_release_s, no_change_s, no_change_forced_s })
}

/// Runs the face-analysis example (`local/rekognition/examples/bench.rs`) in the profile the
/// local cloud runs the service in.
fn face_benchmark(root: &Path, models: &Path) -> Result<serde_json::Value> {
    let output = process::capture(
        Command::new("cargo")
            .args([
                "run",
                "--quiet",
                "--locked",
                "--package",
                "local-rekognition",
                "--example",
                "bench",
                "--",
                "--json",
                "--models",
            ])
            .arg(models)
            .current_dir(root),
    )?;
    serde_json::from_str(&output).with_context(|| format!("the face-analysis example printed no JSON:\n{output}"))
}

fn machine() -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_gib: kib / (1024.0 * 1024.0),
        rustc: process::capture(Command::new("rustc").arg("-V"))?.trim().to_owned(),
    })
}

/// The benchmark's own moto (and, for the latency part, face service), on free ports under
/// `target/bench/cloud`; stopped when dropped.
struct PrivateCloud {
    config: LocalConfig,
}

impl PrivateCloud {
    fn start(root: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Reuse the face models the local cloud fetched, if it did.
        let cached = root.join("target/local/models");
        let models = dir.join("models");
        if cached.is_dir() && !models.exists() {
            std::os::unix::fs::symlink(&cached, &models).with_context(|| format!("linking {}", models.display()))?;
        }
        let overrides = Overrides {
            endpoint: Some(format!("http://127.0.0.1:{}", free_port()?)),
            api_port: Some(free_port()?),
            state_dir: Some(PathBuf::from(dir)),
            emulator: None,
        };
        let config = LocalConfig::load(root, &overrides)?;
        let cloud = Self { config };
        let status = cloud::start_emulator(&cloud.config)?;
        println!("{status}");
        Ok(cloud)
    }

    /// Forgets everything the emulator holds.
    fn reset(&self) -> Result<()> {
        let address = layout::loopback_address(&self.config.endpoint)?;
        let (status, body) = crate::local::http::http_post(address, "/moto-api/reset", Duration::from_secs(30))
            .with_context(|| format!("resetting the emulator at {}", self.config.endpoint))?;
        if status != 200 {
            bail!("resetting the emulator at {} answered {status}: {body}", self.config.endpoint);
        }
        Ok(())
    }

    /// Starts the face service; its URL, or `None` when it cannot run here.
    fn start_face(&self) -> Result<Option<String>> {
        let status = crate::local::face::ensure(&self.config);
        println!("{status}");
        Ok(self.config.state_dir.face_url())
    }
}

impl Drop for PrivateCloud {
    fn drop(&mut self) {
        if let Err(error) = cloud::down(&self.config.state_dir) {
            eprintln!("warning: stopping the benchmark's local cloud: {error:#}");
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?.local_addr()?.port())
}
