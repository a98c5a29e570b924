//! The benchmark report: what was measured, on what machine, each figure next to its
//! target. Written as `target/bench/report.json` and rendered as Markdown (pure).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::deploy::{CriticalPath, Operation};
use super::latency::FunctionLatency;
use crate::bench::load::LoadReport;
use crate::calls::Counts;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// RFC 3339.
    pub date: String,
    pub machine: Machine,
    pub deploy: DeployReport,
    pub sizes: BTreeMap<String, Size>,
    pub latency: Vec<FunctionLatency>,
    pub build: BuildTimes,
    pub drift: DriftReport,
    /// What the face-analysis example printed (model load, per-image times).
    pub face_analysis: Option<serde_json::Value>,
    /// Why face analysis was not measured, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_analysis_skipped: Option<String>,
    /// The local API under load (`None` with `--skip-load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub rustc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The environment file deployed.
    pub environment: String,
    /// The delay the proxy added to every request.
    pub delay_ms: u64,
    /// `--parallelism` of the parallel runs.
    pub parallelism: usize,
    pub operations: Vec<OperationReport>,
}

/// One operation, run three ways: straight to the emulator, through the latency proxy, and
/// through the proxy with `--parallelism 1`.
#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    pub operation: Operation,
    pub label: String,
    pub direct_ms: f64,
    pub calls: Counts,
    pub total_calls: u64,
    pub delayed_ms: f64,
    pub delayed_total_calls: u64,
    pub serial_ms: f64,
    /// How many resource steps made calls.
    pub steps: u64,
    /// State writes journalling those steps (pending before, result after each mutation;
    /// steps journalling at once share a write).
    pub journal_writes: u64,
    pub critical_path: CriticalPath,
    /// wall time under the delay ÷ (critical-path calls × delay).
    pub ratio_to_critical_path: f64,
    /// wall time under the delay ÷ the same with `--parallelism 1`.
    pub ratio_to_serial: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Size {
    pub zipped_bytes: u64,
    pub unzipped_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildTimes {
    /// `cargo xtask build --force` after `cargo clean` of the Lambda target: every crate
    /// compiled, then zipped. `None` when skipped.
    pub full_release_s: Option<f64>,
    /// `cargo xtask build` with nothing changed (the fingerprint says so).
    pub no_change_s: f64,
    /// `cargo xtask build --force` with nothing changed: cargo-lambda runs, cargo finds
    /// everything fresh, the zips are written again.
    pub no_change_forced_s: f64,
}

/// `xtask drift` of the freshly deployed stack (no drift).
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub wall_ms: f64,
    pub total_calls: u64,
    pub calls: Counts,
}

/// A figure next to its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// Why it is missed and what would close it; or how it is met.
    pub note: String,
}

impl OperationReport {
    pub fn of(&self, operation: Operation) -> bool {
        self.operation == operation
    }
}

/// Every target of the benchmark, judged.
pub fn judge(
    deploy: &DeployReport,
    sizes: &BTreeMap<String, Size>,
    latency: &[FunctionLatency],
    build: &BuildTimes,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let operation = |wanted: Operation| deploy.operations.iter().find(|op| op.of(wanted));
    if let Some(noop) = operation(Operation::NoOp) {
        targets.push(Target {
            what: "no-op redeploy".into(),
            target: "≤ 2 API calls".into(),
            measured: format!("{} calls ({})", noop.total_calls, list_calls(&noop.calls)),
            met: noop.total_calls <= 2,
            note: "the state is read once and compared with the build's hashes; no lock, no write".into(),
        });
    }
    if let Some(empty) = operation(Operation::FromEmpty) {
        let outside = empty.critical_path.outside_steps;
        let own = empty.total_calls.saturating_sub(outside + empty.journal_writes);
        targets.push(Target {
            what: "from-empty deploy".into(),
            target: "≤ 30 API calls, retries included".into(),
            measured: format!("{} calls", empty.total_calls),
            met: empty.total_calls <= 30,
            note: format!(
                "{own} are the {} resources' own calls (S3 takes one request per bucket setting: public-access \
                 block, encryption, CORS, lifecycle, tags), {} are state writes journalling the steps (group \
                 commit: steps that journal at once share a write), and {outside} are made outside the steps \
                 (the account id, the state bucket, the lock, reading state, recording the deployment). {}",
                empty.steps,
                empty.journal_writes,
                if own > 30 {
                    "The resources' own calls alone are over 30, so the target cannot be met without dropping one \
                     of the bucket's safeguards or the per-resource checks"
                } else {
                    "Fewer journal writes (one per wave of the graph) would close the rest"
                }
            ),
        });
        targets.push(Target {
            what: format!("from-empty wall time under {} ms per call", deploy.delay_ms),
            target: "≤ 1.3 × the critical path".into(),
            measured: format!(
                "{:.2} × ({:.0} ms ÷ {} calls × {} ms)",
                empty.ratio_to_critical_path, empty.delayed_ms, empty.critical_path.calls, deploy.delay_ms
            ),
            met: empty.ratio_to_critical_path <= 1.3,
            note: if empty.ratio_to_critical_path <= 1.3 {
                format!(
                    "steps start as soon as their dependencies finish and steps that journal at once share a state \
                     write, so the deploy takes {:.2} × the time of --parallelism 1",
                    empty.ratio_to_serial
                )
            } else {
                format!(
                    "steps run in parallel ({:.2} × the time of --parallelism 1), but a journal write that arrives \
                     while another is in flight waits for it, and each call also costs the emulator's own time \
                     on top of the injected delay",
                    empty.ratio_to_serial
                )
            },
        });
    }
    for (function, size) in sizes {
        targets.push(Target {
            what: format!("zip size, {function}"),
            target: "≤ 3 MB (3,000,000 bytes)".into(),
            measured: format!(
                "{} bytes zipped, {} unzipped",
                thousands(size.zipped_bytes),
                thousands(size.unzipped_bytes)
            ),
            met: size.zipped_bytes <= 3_000_000,
            note: if size.zipped_bytes <= 3_000_000 {
                "release profile: opt-level z, LTO, one codegen unit, stripped, panic=abort; rustls over ring; \
                 logging without the filter engine of env-filter (about 145 KB a zip)"
                    .into()
            } else {
                "already at opt-level z with LTO, one codegen unit, stripped, panic=abort, and logging without \
                 env-filter's regular expressions; what remains is mostly the AWS SDK and its TLS stack"
                    .into()
            },
        });
    }
    for function in latency {
        targets.push(Target {
            what: format!("cold start to first response, {}", function.function),
            target: "≤ 50 ms".into(),
            measured: format!(
                "p50 {:.1} ms over {} cold starts",
                function.cold_start.p50_ms, function.cold_start.samples
            ),
            met: function.cold_start.p50_ms <= 50.0,
            note: format!(
                "process start to first response under the local Runtime API, the request itself ({}) included: \
                 the same request warm takes {:.1} ms (p50), so starting the process adds {:.1} ms, of which \
                 init (process start to the first /next) is {:.1} ms",
                function.request,
                function.warm.p50_ms,
                function.cold_start.p50_ms - function.warm.p50_ms,
                function.init.p50_ms
            ),
        });
    }
    if let Some(upload) = latency.iter().find(|function| function.function == "upload-url") {
        targets.push(Target {
            what: "warm handler overhead, AWS calls excluded".into(),
            target: "≤ 1 ms p50".into(),
            measured: format!(
                "upload-url p50 {:.2} ms, p99 {:.2} ms over {} warm invocations",
                upload.warm.p50_ms, upload.warm.p99_ms, upload.warm.samples
            ),
            met: upload.warm.p50_ms <= 1.0,
            note: "upload-url makes no AWS call (presigning is local), so its whole warm invocation through the \
                   Runtime API (event in, response out, over loopback HTTP) bounds the handler's overhead"
                .into(),
        });
    }
    targets.push(Target {
        what: "rebuild with no source change".into(),
        target: "< 2 s".into(),
        measured: format!(
            "{:.2} s (forced through cargo-lambda: {:.2} s)",
            build.no_change_s, build.no_change_forced_s
        ),
        met: build.no_change_s < 2.0,
        note: "`cargo xtask build` hashes its inputs (sources, lock file, toolchain) and skips cargo-lambda when \
               nothing changed"
            .into(),
    });
    targets
}

fn list_calls(counts: &Counts) -> String {
    let calls: Vec<String> = counts
        .iter()
        .flat_map(|(service, ops)| ops.iter().map(move |(op, n)| format!("{service} {op} ×{n}")))
        .collect();
    if calls.is_empty() {
        "none".into()
    } else {
        calls.join(", ")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(out, "# Benchmark report\n");
    let _ = writeln!(
        out,
        "`cargo xtask bench`, {}, on {} ({} cores, {:.0} GiB), {}.\n",
        report.date, m.cpu, m.cores, m.memory_gib, m.rustc
    );

    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| what | target | measured | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for target in &report.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            target.what,
            target.target,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(out);
    for target in &report.targets {
        let _ =
            writeln!(out, "- **{}** ({}): {}.", target.what, if target.met { "met" } else { "missed" }, target.note);
    }

    let d = &report.deploy;
    let _ = writeln!(out, "\n## Deploy operations\n");
    let _ = writeln!(
        out,
        "Environment `{}` on the emulator. *direct*: straight to moto; *delayed*: through a proxy adding {} ms \
         to every request, `--parallelism {}`; *serial*: the same with `--parallelism 1`. The critical path is \
         the calls outside resource steps plus the heaviest chain of steps through the dependency graph, each \
         weighing the calls made for it.\n",
        d.environment, d.delay_ms, d.parallelism
    );
    let _ =
        writeln!(out, "| operation | calls | direct | delayed | critical path | ÷ critical path | serial | ÷ serial |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for op in &d.operations {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ms | {:.0} ms | {} calls = {} ms | {:.2} | {:.0} ms | {:.2} |",
            op.label,
            op.total_calls,
            op.direct_ms,
            op.delayed_ms,
            op.critical_path.calls,
            op.critical_path.calls * d.delay_ms,
            op.ratio_to_critical_path,
            op.serial_ms,
            op.ratio_to_serial
        );
    }
    let _ = writeln!(out, "\nCalls by service and operation (direct runs):\n");
    for op in &d.operations {
        let _ = writeln!(out, "- {}: {}", op.label, list_calls(&op.calls));
    }
    if let Some(empty) = d.operations.iter().find(|op| op.of(Operation::FromEmpty)) {
        let path: Vec<String> =
            empty.critical_path.path.iter().map(|(step, calls)| format!("{step} ({calls})")).collect();
        let _ = writeln!(
            out,
            "\nCritical path from empty: {} calls outside steps, then {}.",
            empty.critical_path.outside_steps,
            path.join(" → ")
        );
    }

    let _ = writeln!(out, "\n## Lambda sizes\n");
    let _ = writeln!(out, "| function | zipped | unzipped |");
    let _ = writeln!(out, "|---|---|---|");
    for (function, size) in &report.sizes {
        let _ = writeln!(
            out,
            "| {function} | {} ({} B) | {} |",
            mib(size.zipped_bytes),
            thousands(size.zipped_bytes),
            mib(size.unzipped_bytes)
        );
    }

    let _ = writeln!(out, "\n## Cold start and warm latency (local Runtime API)\n");
    let _ =
        writeln!(out, "| function | request | init p50 | first response p50 (max) | warm p50 | warm p99 | warm n |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for f in &report.latency {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} ms | {:.1} ms ({:.1} ms) | {:.2} ms | {:.2} ms | {} |",
            f.function,
            f.request,
            f.init.p50_ms,
            f.cold_start.p50_ms,
            f.cold_start.max_ms,
            f.warm.p50_ms,
            f.warm.p99_ms,
            f.warm.samples
        );
    }

    let b = &report.build;
    let _ = writeln!(out, "\n## Build\n");
    let full = b.full_release_s.map_or_else(|| "not measured (--skip-full-build)".to_owned(), |s| format!("{s:.1} s"));
    let _ = writeln!(out, "- full release build of the Lambdas, from clean: {full}");
    let _ = writeln!(
        out,
        "- rebuild with no change: {:.2} s; forced through cargo-lambda: {:.2} s",
        b.no_change_s, b.no_change_forced_s
    );

    let _ = writeln!(out, "\n## Drift check\n");
    let _ = writeln!(
        out,
        "`cargo xtask drift --env {}` of the deployed stack: {} calls in {:.0} ms ({}).",
        report.deploy.environment,
        report.drift.total_calls,
        report.drift.wall_ms,
        list_calls(&report.drift.calls)
    );

    let _ = writeln!(out, "\n## Local face analysis\n");
    match (&report.face_analysis, &report.face_analysis_skipped) {
        (Some(face), _) => {
            let _ = writeln!(
                out,
                "Model load: {:.0} ms (median of {}).\n",
                face["model_load_ms"].as_f64().unwrap_or(f64::NAN),
                face["runs"]
            );
            let _ = writeln!(out, "| image | faces | decode | analysis | per image |");
            let _ = writeln!(out, "|---|---|---|---|---|");
            for image in face["images"].as_array().into_iter().flatten() {
                let ms = |key: &str| image[key].as_f64().unwrap_or(f64::NAN);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
                    image["image"].as_str().unwrap_or("?"),
                    image["faces"],
                    ms("decode_ms"),
                    ms("analysis_ms"),
                    ms("total_ms")
                );
            }
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "Not measured: {why}");
        }
        (None, None) => {
            let _ = writeln!(out, "Not measured.");
        }
    }
    if let Some(load) = &report.load {
        out.push_str(&load_markdown(load));
    }
    out
}

/// The load section's targets.
pub fn judge_load(load: &LoadReport) -> Vec<Target> {
    let mut targets = Vec::new();
    let upload = &load.upload_url;
    targets.push(Target {
        what: "upload-url under load".into(),
        target: "≥ 3,000 successful requests/s, p99 ≤ 1 s at 1,000 connections".into(),
        measured: format!("{:.0}/s, p99 {:.0} ms", upload.successful_per_s, upload.p99_ms),
        met: upload.successful_per_s >= 3000.0 && upload.p99_ms <= 1000.0,
        note: "every request crosses the data plane, the Runtime API and a function process; the load generator \
               runs on the same cores"
            .into(),
    });
    match &load.upload_to_result {
        Some(events) => {
            targets.push(Target {
                what: "analysis on upload: Rekognition calls".into(),
                target: "exactly 1 per upload".into(),
                measured: format!("{} for {} uploads", events.rekognition_calls, events.uploads),
                met: events.rekognition_calls == events.uploads,
                note: "the bucket's notification analyses each upload once; the result is kept".into(),
            });
            targets.push(Target {
                what: "analysis on upload: from the PUT's answer to the readable result".into(),
                target: "p99 ≤ 5 s".into(),
                measured: format!("p50 {:.0} ms, p99 {:.0} ms", events.p50_ms, events.p99_ms),
                met: events.p99_ms <= 5000.0,
                note: "S3 event, asynchronous invocation, HeadObject, DetectFaces on the face service, PutObject"
                    .into(),
            });
        }
        None => targets.push(Target {
            what: "analysis on upload".into(),
            target: "exactly 1 Rekognition call per upload; p99 ≤ 5 s".into(),
            measured: "not measured".into(),
            met: false,
            note: "the face service did not start here".into(),
        }),
    }
    let server_errors: u64 = [&load.upload_url, &load.analyze]
        .iter()
        .flat_map(|run| run.statuses.iter())
        .chain(load.storm.statuses.iter())
        .filter(|(code, _)| code.as_str() == "500" || code.as_str() == "502")
        .map(|(_, n)| n)
        .sum();
    targets.push(Target {
        what: "no 500 or 502 under load".into(),
        target: "0".into(),
        measured: server_errors.to_string(),
        met: server_errors == 0,
        note: "every answer under load is the function's, or API Gateway's own 429 or 503".into(),
    });
    let peak = [&load.upload_url.peak_processes, &load.analyze.peak_processes, &load.storm.peak_processes]
        .iter()
        .flat_map(|peaks| peaks.values())
        .copied()
        .max()
        .unwrap_or(0);
    targets.push(Target {
        what: "function processes under load".into(),
        target: format!("never above the cap of {}", load.cap),
        measured: format!("at most {peak}"),
        met: peak <= load.cap,
        note: "an instance is granted under the cap and the grant outlives the process".into(),
    });
    targets.push(Target {
        what: "drain after the cancellation storm".into(),
        target: "back to the cap within 2 s, and the API answers".into(),
        measured: format!(
            "{:.0} ms{}",
            load.storm.drain_ms,
            if load.storm.answers_after { "" } else { ", then no answer" }
        ),
        met: load.storm.drain_ms <= 2000.0 && load.storm.answers_after,
        note: "invocations whose clients gave up finish on their own instances".into(),
    });
    targets.push(Target {
        what: "data plane memory under load".into(),
        target: "peak RSS ≤ 200 MB".into(),
        measured: format!("{:.0} MiB", load.dataplane_peak_rss_mib),
        met: load.dataplane_peak_rss_mib * 1.048_576 <= 200.0,
        note: "connections, queues and buffered bodies are bounded".into(),
    });
    targets
}

/// The load section, as markdown.
pub fn load_markdown(load: &LoadReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## The local API under load\n\n`oha` {} on the same machine; at most {} instances per function; the \
         stage's throttling raised out of the way, so that the data plane and the functions are measured.\n",
        load.oha, load.cap
    );
    let _ = writeln!(
        out,
        "| scenario | connections | successful/s | p50 | p99 | p99.9 | statuses | client errors | peak processes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let runs = [Some(&load.upload_url), Some(&load.analyze), load.face_direct.as_ref()];
    for run in runs.into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} |",
            run.name,
            run.connections,
            run.successful_per_s,
            run.p50_ms,
            run.p99_ms,
            run.p999_ms,
            counts(&run.statuses),
            counts(&run.errors),
            peaks(&run.peak_processes),
        );
    }
    let storm = &load.storm;
    let _ = writeln!(
        out,
        "\nCancellation storm: {} clients giving up after 50 to 300 ms; {} gave up, answers {}; peak processes {}; \
         back to the cap {:.0} ms after the last client; the API answered afterwards: {}. Data plane peak RSS: \
         {:.0} MiB.",
        storm.clients,
        storm.gave_up,
        counts(&storm.statuses),
        peaks(&storm.peak_processes),
        storm.drain_ms,
        if storm.answers_after { "yes" } else { "no" },
        load.dataplane_peak_rss_mib
    );
    if let Some(events) = &load.upload_to_result {
        let _ = writeln!(
            out,
            "\nAnalysis on upload ({} uploads, one after another): from the PUT's answer to `GET /analysis/{{id}}` \
             answering the result, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} DetectFaces calls ({:.2} per upload).",
            events.uploads,
            events.p50_ms,
            events.p99_ms,
            events.max_ms,
            events.rekognition_calls,
            events.rekognition_calls_per_upload
        );
    }
    out
}

fn counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts.iter().map(|(key, n)| format!("{key}: {n}")).collect::<Vec<_>>().join(", ")
}

fn peaks(peaks: &BTreeMap<String, usize>) -> String {
    peaks.iter().map(|(function, n)| format!("{function} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::events::UploadToResult;
    use crate::bench::latency::Summary;
    use crate::bench::load::{LoadRun, Storm};

    fn summary(p50_ms: f64, p99_ms: f64) -> Summary {
        Summary { samples: 200, p50_ms, p99_ms, min_ms: p50_ms, max_ms: p99_ms }
    }

    fn operation(operation: Operation, calls: u64, delayed_ms: f64, path_calls: u64) -> OperationReport {
        let counts: Counts = BTreeMap::from([("S3".to_owned(), BTreeMap::from([("GetObject".to_owned(), calls)]))]);
        OperationReport {
            operation,
            label: operation.label().to_owned(),
            direct_ms: delayed_ms / 10.0,
            calls: counts,
            total_calls: calls,
            delayed_ms,
            delayed_total_calls: calls,
            serial_ms: delayed_ms * 2.0,
            steps: 3,
            journal_writes: 4,
            critical_path: CriticalPath {
                calls: path_calls,
                outside_steps: 2,
                path: vec![("role.analyze".to_owned(), path_calls - 2)],
            },
            ratio_to_critical_path: delayed_ms / (path_calls * 50) as f64,
            ratio_to_serial: 0.5,
        }
    }

    fn report() -> Report {
        let deploy = DeployReport {
            environment: "dev".into(),
            delay_ms: 50,
            parallelism: 10,
            operations: vec![
                operation(Operation::FromEmpty, 40, 1500.0, 25),
                operation(Operation::NoOp, 2, 110.0, 2),
                operation(Operation::Destroy, 20, 600.0, 10),
            ],
        };
        let sizes = BTreeMap::from([
            ("analyze".to_owned(), Size { zipped_bytes: 2_520_361, unzipped_bytes: 5_526_000 }),
            ("upload-url".to_owned(), Size { zipped_bytes: 3_081_652, unzipped_bytes: 6_113_000 }),
        ]);
        let latency = vec![FunctionLatency {
            function: "upload-url".into(),
            request: "GET /upload-url".into(),
            init: summary(5.0, 6.0),
            cold_start: summary(6.0, 7.0),
            warm: summary(0.6, 0.8),
        }];
        let build = BuildTimes { full_release_s: None, no_change_s: 0.15, no_change_forced_s: 4.3 };
        let targets = judge(&deploy, &sizes, &latency, &build);
        Report {
            date: "2026-12-02T08:00:00Z".into(),
            machine: Machine { cpu: "Test CPU".into(), cores: 2, memory_gib: 24.0, rustc: "rustc 1.95.0".into() },
            deploy,
            sizes,
            latency,
            build,
            drift: DriftReport {
                wall_ms: 80.0,
                total_calls: 3,
                calls: BTreeMap::from([
                    ("Lambda".to_owned(), BTreeMap::from([("GetFunction".to_owned(), 2)])),
                    ("S3".to_owned(), BTreeMap::from([("GetObject".to_owned(), 1)])),
                ]),
            },
            face_analysis: None,
            face_analysis_skipped: Some("no npm".into()),
            load: None,
            targets,
        }
    }

    #[test]
    fn every_target_is_judged_against_its_figure() {
        let met: Vec<(String, bool)> = report().targets.into_iter().map(|t| (t.what, t.met)).collect();
        assert_eq!(
            met,
            [
                ("no-op redeploy".to_owned(), true),
                ("from-empty deploy".to_owned(), false),
                ("from-empty wall time under 50 ms per call".to_owned(), true),
                ("zip size, analyze".to_owned(), true),
                ("zip size, upload-url".to_owned(), false),
                ("cold start to first response, upload-url".to_owned(), true),
                ("warm handler overhead, AWS calls excluded".to_owned(), true),
                ("rebuild with no source change".to_owned(), true),
            ]
        );
    }

    #[test]
    fn the_markdown_report_shows_every_section() {
        insta::assert_snapshot!(markdown(&report()));
    }

    fn load_run(name: &str, successful_per_s: f64, p99_ms: f64, statuses: &[(&str, u64)], peak: usize) -> LoadRun {
        LoadRun {
            name: name.into(),
            connections: 1,
            seconds: 30.0,
            successful_per_s,
            p50_ms: 1.0,
            p99_ms,
            p999_ms: p99_ms,
            statuses: statuses.iter().map(|(code, n)| ((*code).to_owned(), *n)).collect(),
            errors: BTreeMap::new(),
            peak_processes: BTreeMap::from([("f".to_owned(), peak)]),
        }
    }

    #[test]
    fn load_targets_miss_on_server_errors_processes_over_the_cap_and_slow_drains() {
        let mut load = LoadReport {
            oha: "1".into(),
            cap: 4,
            upload_url: load_run("GET /upload-url", 3500.0, 800.0, &[("200", 10), ("429", 3)], 4),
            analyze: load_run("POST /analyze", 9.0, 900.0, &[("200", 10)], 4),
            storm: Storm {
                clients: 300,
                statuses: BTreeMap::new(),
                gave_up: 300,
                peak_processes: BTreeMap::from([("f".to_owned(), 4)]),
                drain_ms: 5.0,
                answers_after: true,
            },
            face_direct: Some(load_run("DetectFaces", 10.0, 900.0, &[("200", 10)], 0)),
            analyze_to_face: Some(0.9),
            dataplane_peak_rss_mib: 70.0,
            upload_to_result: Some(UploadToResult {
                uploads: 50,
                p50_ms: 400.0,
                p99_ms: 900.0,
                max_ms: 950.0,
                rekognition_calls: 50,
                rekognition_calls_per_upload: 1.0,
            }),
        };
        assert!(judge_load(&load).iter().all(|target| target.met), "{:#?}", judge_load(&load));

        load.analyze.statuses.insert("502".into(), 1);
        load.storm.peak_processes.insert("f".into(), 5);
        load.storm.drain_ms = 2500.0;
        if let Some(events) = load.upload_to_result.as_mut() {
            events.rekognition_calls = 51;
        }
        let missed: Vec<String> =
            judge_load(&load).into_iter().filter(|target| !target.met).map(|target| target.what).collect();
        assert_eq!(
            missed,
            [
                "analysis on upload: Rekognition calls",
                "no 500 or 502 under load",
                "function processes under load",
                "drain after the cancellation storm"
            ]
        );
    }
}
