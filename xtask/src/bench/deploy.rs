//! The five deploy operations, each run as a user runs it (`xtask deploy` / `destroy` as a
//! process), timed, and counted in the SDK ([`crate::calls`]): every AWS attempt by service
//! and operation, and the engine step each was made for.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::calls::{Call, Counts};
use crate::engine::graph::Dag;
use crate::engine::resource::ResourceId;
use crate::manifest::Manifest;

/// The environment the benchmark deploys: the project's own `dev` file, pointed at the
/// emulator by `AWS_ENDPOINT_URL`, as a user points it.
pub const ENVIRONMENT: &str = "dev";
/// The account moto answers for.
pub const EMULATOR_ACCOUNT: &str = "123456789012";

/// The operations measured, in the order they run: each starts from where the previous left
/// the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Nothing deployed, not even the state bucket.
    FromEmpty,
    /// The same build and configuration again.
    NoOp,
    /// One function's code changes.
    CodeChange,
    /// One function's memory changes; no code does.
    ConfigChange,
    /// Everything goes.
    Destroy,
}

impl Operation {
    pub const ALL: [Operation; 5] =
        [Operation::FromEmpty, Operation::NoOp, Operation::CodeChange, Operation::ConfigChange, Operation::Destroy];

    pub const fn label(self) -> &'static str {
        match self {
            Operation::FromEmpty => "deploy from empty",
            Operation::NoOp => "no-op redeploy",
            Operation::CodeChange => "one function's code",
            Operation::ConfigChange => "configuration only",
            Operation::Destroy => "destroy",
        }
    }
}

/// Everything the operations need, prepared once: the build to deploy, a second build
/// whose analyze code differs, and environment files whose analyze memory differs.
pub struct Workload {
    pub xtask: PathBuf,
    pub root: PathBuf,
    /// The local-cloud state directory the commands would use (nothing is started there:
    /// the endpoint always answers).
    pub state_dir: PathBuf,
    pub manifest: PathBuf,
    pub changed_manifest: PathBuf,
    pub environments: PathBuf,
    pub changed_environments: PathBuf,
    /// Where each run's call log and trace go.
    pub logs: PathBuf,
}

impl Workload {
    /// Writes the changed build and configuration under `dir`.
    pub fn prepare(root: &Path, dir: &Path, state_dir: &Path) -> Result<Self> {
        let xtask = std::env::current_exe().context("locating the xtask binary")?;
        let manifest_path = Manifest::path(root);
        let manifest = Manifest::read(&manifest_path)?
            .with_context(|| format!("no release build at {}", manifest_path.display()))?;

        // One function's code change: analyze's bootstrap with one byte more, zipped the way
        // the build zips it (the bytes after the ELF image are never loaded).
        let mut changed = manifest.clone();
        let arch = crate::arch::Arch::X86_64;
        let artifact = changed
            .functions
            .get_mut("analyze")
            .and_then(|by_arch| by_arch.get_mut(&arch))
            .context("the build has no x86_64 analyze")?;
        let zip_path = root.join(&artifact.zip_path);
        let zip = std::fs::read(&zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
        let mut bootstrap = crate::local::runtime::read_bootstrap(&zip)
            .with_context(|| format!("reading the bootstrap in {}", zip_path.display()))?;
        bootstrap.push(0);
        let rezipped = crate::artifact::zip_bootstrap(&bootstrap)?;
        let (hex, base64) = crate::artifact::sha256(&rezipped);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let changed_zip = dir.join("analyze-changed.zip");
        std::fs::write(&changed_zip, &rezipped)?;
        artifact.zip_path = changed_zip.to_string_lossy().into_owned();
        artifact.zipped_bytes = rezipped.len() as u64;
        artifact.unzipped_bytes = bootstrap.len() as u64;
        artifact.sha256_hex = hex;
        artifact.sha256_base64 = base64;
        // Only this run's call logs.
        let logs = dir.join("calls");
        if logs.exists() {
            std::fs::remove_dir_all(&logs).with_context(|| format!("clearing {}", logs.display()))?;
        }
        std::fs::create_dir_all(&logs)?;
        let changed_manifest = dir.join("manifest-changed.json");
        std::fs::write(&changed_manifest, serde_json::to_vec_pretty(&changed)?)?;

        // A configuration-only change: analyze gets 512 MB.
        let environments = crate::config::environments_dir();
        let changed_environments = dir.join("environments");
        std::fs::create_dir_all(&changed_environments)?;
        for entry in std::fs::read_dir(&environments).with_context(|| format!("reading {}", environments.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                std::fs::copy(&path, changed_environments.join(path.file_name().unwrap_or_default()))?;
            }
        }
        let file = changed_environments.join(format!("{ENVIRONMENT}.yaml"));
        let mut text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        if text.lines().any(|line| line.starts_with("functions:")) {
            bail!("{} already has a `functions:` section; the benchmark adds its own", file.display());
        }
        text.push_str("\n# Added by `cargo xtask bench`: a configuration-only change.\nfunctions:\n  analyze:\n    memory_mb: 512\n");
        std::fs::write(&file, text)?;

        Ok(Self {
            xtask,
            root: root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            manifest: manifest_path,
            changed_manifest,
            environments,
            changed_environments,
            logs,
        })
    }

    /// The resources' dependencies in the benchmarked stack (`from` the regular build and
    /// configuration), for weighing paths.
    pub fn dependencies(&self) -> Result<BTreeMap<ResourceId, BTreeSet<ResourceId>>> {
        let env = crate::config::Environment::load(&self.environments, ENVIRONMENT)?;
        let manifest = Manifest::read(&self.manifest)?.context("the build manifest disappeared")?;
        let context = crate::stack::Context {
            env: &env,
            account_id: EMULATOR_ACCOUNT,
            manifest: &manifest,
            tls: false,
            local_api_url: None,
        };
        Ok(crate::stack::resources(&context)?
            .into_iter()
            .map(|resource| {
                let dependencies = resource.dependencies();
                (resource.id, dependencies)
            })
            .collect())
    }
}

/// One operation, as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct OperationRun {
    pub operation: Operation,
    pub wall: Duration,
    pub calls: Counts,
    #[serde(skip)]
    pub trace: Vec<Call>,
}

impl OperationRun {
    pub fn total_calls(&self) -> u64 {
        crate::calls::total(&self.calls)
    }
}

/// Runs one operation against `endpoint`, with at most `parallelism` resource operations
/// at once.
pub fn run(workload: &Workload, operation: Operation, endpoint: &str, parallelism: usize) -> Result<OperationRun> {
    let (command, manifest, environments) = match operation {
        Operation::FromEmpty | Operation::NoOp => ("deploy", &workload.manifest, &workload.environments),
        Operation::CodeChange => ("deploy", &workload.changed_manifest, &workload.environments),
        Operation::ConfigChange => ("deploy", &workload.changed_manifest, &workload.changed_environments),
        Operation::Destroy => ("destroy", &workload.changed_manifest, &workload.changed_environments),
    };
    let parallelism = parallelism.to_string();
    let mut args: Vec<&OsStr> = [command, "--env", ENVIRONMENT, "--yes"].map(OsStr::new).to_vec();
    if command == "deploy" {
        args.extend(["--parallelism", &parallelism, "--manifest"].map(OsStr::new));
        args.push(manifest.as_os_str());
    }
    let (wall, calls, trace) = measure(workload, &args, environments, endpoint)?;
    tracing::info!(
        operation = operation.label(),
        wall_ms = wall.as_millis() as u64,
        calls = crate::calls::total(&calls),
        "measured"
    );
    Ok(OperationRun { operation, wall, calls, trace })
}

/// `xtask drift` of the deployed environment, which must find no drift.
#[derive(Debug, Clone, Serialize)]
pub struct DriftRun {
    pub wall: Duration,
    pub calls: Counts,
}

pub fn drift(workload: &Workload, endpoint: &str) -> Result<DriftRun> {
    let args = ["drift", "--env", ENVIRONMENT].map(OsStr::new);
    let (wall, calls, _) = measure(workload, &args, &workload.environments, endpoint)?;
    Ok(DriftRun { wall, calls })
}

/// Runs xtask with `args` against `endpoint`; its wall time, call counts and call trace.
/// A failure (any non-zero exit) is an error showing its output.
fn measure(
    workload: &Workload,
    args: &[&OsStr],
    environments: &Path,
    endpoint: &str,
) -> Result<(Duration, Counts, Vec<Call>)> {
    let run_id = uuid::Uuid::new_v4();
    let (counts_file, trace_file) =
        (workload.logs.join(format!("calls-{run_id}.json")), workload.logs.join(format!("trace-{run_id}.json")));
    let mut xtask = Command::new(&workload.xtask);
    xtask
        .args(args)
        .current_dir(&workload.root)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env(crate::config::ENVIRONMENTS_DIR_ENV, environments)
        .env(crate::local::layout::STATE_DIR_ENV, &workload.state_dir)
        .env(crate::calls::CALL_LOG_ENV, &counts_file)
        .env(crate::calls::CALL_TRACE_ENV, &trace_file)
        .env("XTASK_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for variable in
        ["AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "IMAGE_ANALYZER_ENV"]
    {
        xtask.env_remove(variable);
    }
    let shown = crate::process::display(&xtask);
    let started = Instant::now();
    let output = xtask.output().with_context(|| format!("running {shown}"))?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "`{shown}` failed with {}:\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let read = |path: &Path| -> Result<String> {
        std::fs::read_to_string(path).with_context(|| format!("`{shown}` wrote no call log at {}", path.display()))
    };
    let calls: Counts = serde_json::from_str(&read(&counts_file)?)?;
    let trace: Vec<Call> = serde_json::from_str(&read(&trace_file)?)?;
    Ok((wall, calls, trace))
}

/// The longest chain of calls that must happen one after another: the calls made outside
/// any engine step (reading state, the lock, recording history), plus the heaviest path
/// through the dependency graph, each step weighing the calls made for it (its journal
/// writes included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriticalPath {
    pub calls: u64,
    /// Calls outside the steps.
    pub outside_steps: u64,
    /// The heaviest path's steps, in order, with their calls.
    pub path: Vec<(String, u64)>,
}

/// See [`CriticalPath`]. `dependencies` is the stack's graph; a destroy walks it backwards
/// (`reversed`).
pub fn critical_path(
    dependencies: &BTreeMap<ResourceId, BTreeSet<ResourceId>>,
    trace: &[Call],
    reversed: bool,
) -> Result<CriticalPath> {
    let mut weights: BTreeMap<ResourceId, u64> = BTreeMap::new();
    let mut outside_steps = 0;
    for call in trace {
        match &call.step {
            Some(step) => *weights.entry(ResourceId::new(step.as_str())).or_default() += 1,
            None => outside_steps += 1,
        }
    }
    let mut edges: BTreeMap<ResourceId, BTreeSet<ResourceId>> =
        dependencies.keys().chain(weights.keys()).map(|id| (id.clone(), BTreeSet::new())).collect();
    for (id, on) in dependencies {
        for dependency in on {
            let (before, after) = if reversed { (id, dependency) } else { (dependency, id) };
            edges.entry(after.clone()).or_default().insert(before.clone());
        }
    }
    let dag = Dag::new(edges).map_err(|cycle| anyhow::anyhow!("{cycle}"))?;
    // The heaviest path ending at each node, in topological order.
    let mut best: BTreeMap<ResourceId, (u64, Option<ResourceId>)> = BTreeMap::new();
    for id in dag.topological_order() {
        let before = dag
            .dependencies(&id)
            .into_iter()
            .map(|dependency| (best[&dependency].0, dependency))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        let own = weights.get(&id).copied().unwrap_or(0);
        let value = match before {
            Some((weight, dependency)) => (weight + own, Some(dependency)),
            None => (own, None),
        };
        best.insert(id, value);
    }
    let mut end = best.iter().max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.0.cmp(a.0))).map(|(id, _)| id.clone());
    let mut path = Vec::new();
    while let Some(id) = end {
        let weight = weights.get(&id).copied().unwrap_or(0);
        if weight > 0 {
            path.push((id.to_string(), weight));
        }
        end = best[&id].1.clone();
    }
    path.reverse();
    let on_path: u64 = path.iter().map(|(_, calls)| calls).sum();
    Ok(CriticalPath { calls: outside_steps + on_path, outside_steps, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(step: Option<&str>) -> Call {
        Call {
            service: "S3".into(),
            operation: "PutObject".into(),
            step: step.map(str::to_owned),
            journal: false,
            at_us: 0,
        }
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<ResourceId, BTreeSet<ResourceId>> {
        edges.iter().map(|(id, on)| (ResourceId::new(*id), on.iter().map(|d| ResourceId::new(*d)).collect())).collect()
    }

    #[test]
    fn the_critical_path_is_the_heaviest_chain_plus_the_calls_outside_steps() {
        // role -> function -> alias; logs -> function; api -> route. role is heavy, api heavier
        // than role alone but lighter than role + function + alias.
        let dependencies = graph(&[
            ("role", &[]),
            ("logs", &[]),
            ("function", &["role", "logs"]),
            ("alias", &["function"]),
            ("api", &[]),
            ("route", &["api"]),
        ]);
        let mut trace = vec![call(None), call(None), call(None)];
        for (step, calls) in [("role", 4), ("logs", 1), ("function", 3), ("alias", 2), ("api", 5), ("route", 3)] {
            trace.extend(std::iter::repeat_with(|| call(Some(step))).take(calls));
        }
        let path = critical_path(&dependencies, &trace, false).unwrap();
        assert_eq!(path.outside_steps, 3);
        assert_eq!(path.path, [("role".to_owned(), 4), ("function".to_owned(), 3), ("alias".to_owned(), 2)]);
        assert_eq!(path.calls, 3 + 9);

        // Destroying walks the graph backwards: alias before function before role.
        let backwards = critical_path(&dependencies, &trace, true).unwrap();
        assert_eq!(backwards.path, [("alias".to_owned(), 2), ("function".to_owned(), 3), ("role".to_owned(), 4)]);
    }

    #[test]
    fn steps_that_made_no_calls_weigh_nothing() {
        let dependencies = graph(&[("a", &[]), ("b", &["a"])]);
        let path = critical_path(&dependencies, &[call(Some("b")), call(None)], false).unwrap();
        assert_eq!(path.path, [("b".to_owned(), 1)]);
        assert_eq!(path.calls, 2);
    }
}
