//! Apply and record: the sequence `deploy`, `destroy`, `promote` and `rollback` share.
//!
//! Under the environment's lock: resolve what an interrupted run left pending, plan against
//! the state as it is now, show the plan, confirm, apply, and append the deployment to the
//! history in the same state document. A run that changes nothing records nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use tokio::sync::{watch, Mutex};

use super::ui::{confirm, Ui};
use crate::arch::Arch;
use crate::engine::apply::{apply, recover, refresh, Options, Recovered, Refreshed, Report};
use crate::engine::plan::{plan, Action, Plan};
use crate::engine::resource::{Kind, Resource};
use crate::functions::FUNCTIONS;
use crate::history::{self, Deployment, Git, History, Origin, Release};
use crate::providers::{replace_keys, AwsProvider, AwsRules};
use crate::session::Session;
use crate::state::lock::{now_rfc3339, Lock, LockOptions};
use crate::state::s3::{ensure_bucket, S3Store, Transport};
use crate::state::writer::StateWriter;
use crate::state::StateFile;

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// What the run is called in the lock and in messages: `deploy`, `destroy`, `promote`,
    /// `rollback`.
    pub operation: &'static str,
    pub yes: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
    /// Re-read every recorded resource first (`deploy --refresh`).
    pub refresh: bool,
}

/// What the environment should become.
#[derive(Debug, Clone)]
pub enum Desired {
    /// The stack from configuration and code (deploy, promote).
    Stack(Vec<Resource>),
    /// Everything as the state records it, except that each function's `live` alias points
    /// at the given version (rollback). Read under the lock, so that nothing another run
    /// changed meanwhile is undone.
    AliasesAt(BTreeMap<String, String>),
    /// Nothing: every recorded resource is deleted, in reverse dependency order (destroy).
    Nothing,
}

impl Desired {
    /// The resources to plan for, and the plan. Nothing desired plans every recorded
    /// resource's delete, as `plan_destroy` does.
    fn plan(self, state: &StateFile, protect: bool) -> Result<(Vec<Resource>, Plan)> {
        let desired = self.resolve(state);
        let plan = plan(&desired, state, AwsRules, protect)?;
        Ok((desired, plan))
    }

    fn resolve(self, state: &StateFile) -> Vec<Resource> {
        match self {
            Desired::Nothing => Vec::new(),
            Desired::Stack(resources) => resources,
            Desired::AliasesAt(versions) => state
                .resources
                .iter()
                .map(|(id, recorded)| {
                    let mut inputs = recorded.inputs.clone();
                    let function = id.as_str().strip_prefix("alias.");
                    if let (Kind::Alias, Some(version)) = (recorded.kind, function.and_then(|f| versions.get(f))) {
                        inputs.insert("function_version".to_owned(), Value::String(version.clone()));
                    }
                    Resource {
                        id: id.clone(),
                        kind: recorded.kind,
                        name: recorded.name.clone(),
                        inputs,
                        depends_on: recorded.depends_on.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The environment already matched; nothing was written.
    NoChanges,
    Applied(Box<Deployment>),
}

/// What the history records about a run besides what the state shows after it.
#[derive(Debug, Clone)]
pub struct Record {
    /// A destroy's list of what it removed is filled in from the plan made under the lock.
    pub origin: Origin,
    pub git: Option<Git>,
    /// The releases, when they are not to be read from the state (a rollback's are the
    /// restored deployment's).
    pub functions: Option<BTreeMap<String, Release>>,
    pub config_digest: String,
    pub warning: Option<String>,
}

/// Applies `desired` under the lock and records the deployment.
pub async fn apply_and_record(
    ui: &dyn Ui,
    session: &Session,
    account_id: &str,
    desired: Desired,
    provider: AwsProvider,
    options: &ApplyOptions,
    record: Record,
) -> Result<Outcome> {
    // Created on first use, and configured on any run that finds it was not (a run that
    // died while creating it): two reads when all is well.
    let transport = Transport::for_endpoint(crate::aws::endpoint(&session.env).as_deref());
    ensure_bucket(&session.clients.s3, &session.state_bucket, &session.env.region, transport).await?;
    let lock_options = LockOptions::new(options.operation).timeout(options.lock_timeout);
    let lock = Lock::acquire(session.store.clone(), &lock_options).await?;
    let result = locked(ui, session, account_id, desired, provider, options, record, &lock).await;
    let released = lock.release().await;
    let outcome = result?;
    released?;
    if let Outcome::Applied(_) = &outcome {
        super::local::refresh_served(ui, &session.env).await;
    }
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a different thing
async fn locked(
    ui: &dyn Ui,
    session: &Session,
    account_id: &str,
    desired: Desired,
    provider: AwsProvider,
    options: &ApplyOptions,
    record: Record,
    lock: &Lock<S3Store>,
) -> Result<Outcome> {
    let mut writer = StateWriter::open(session.store.clone()).await?;
    if writer.state().account_id.as_deref() != Some(account_id) {
        writer.set_account_id(account_id).await?;
    }
    let provider = Arc::new(provider);
    for recovered in recover(provider.as_ref(), &mut writer, replace_keys).await? {
        ui.say(&describe_recovery(&recovered));
    }
    if options.refresh {
        let refreshed = refresh(provider.as_ref(), &mut writer).await?;
        let (mut gone, mut changed) = (Vec::new(), Vec::new());
        for result in &refreshed {
            match result {
                Refreshed::Gone { id } => gone.push(id.to_string()),
                Refreshed::Drifted { id, properties } => changed.push(format!("{id} ({})", properties.join(", "))),
                Refreshed::Exists { .. } => {}
            }
        }
        let list = |ids: &[String]| if ids.is_empty() { String::new() } else { format!(": {}", ids.join(", ")) };
        ui.say(&format!(
            "Refreshed {} resources; {} no longer exist{}; {} were changed outside this tool{}.",
            refreshed.len(),
            gone.len(),
            list(&gone),
            changed.len(),
            list(&changed)
        ));
    }
    let (desired, plan) = desired.plan(writer.state(), session.env.protect)?;
    ui.out(&plan.to_string());
    if !plan.has_changes() {
        return Ok(Outcome::NoChanges);
    }
    confirm(ui, options.yes, options.operation)?;
    // The code this run makes live, trusted by the local cloud before it is deployed there: a
    // function's code, and a rollback's versions' code.
    let code: Vec<(&str, &str)> = desired
        .iter()
        .filter(|resource| resource.kind == Kind::Function)
        .filter_map(|resource| {
            let function = resource.id.as_str().strip_prefix("function.").unwrap_or(resource.name.as_str());
            Some((function, resource.inputs.get("code_sha256")?.as_str()?))
        })
        .chain(
            record
                .functions
                .iter()
                .flatten()
                .map(|(function, release)| (function.as_str(), release.code_sha256.as_str())),
        )
        .collect();
    super::local::trust_deployed_code(&session.env, code)?;
    let writer = Arc::new(Mutex::new(writer));
    let report = run_plan(ui, &plan, &desired, provider, writer.clone(), options.parallelism, lock).await?;
    finish(ui, &report)?;

    let mut writer = writer.lock().await;
    let mut history = History::from_state(&session.env.name, writer.state())?;
    let functions = match record.functions {
        Some(functions) => functions,
        None => live_releases(writer.state())?,
    };
    let origin = match record.origin {
        Origin::Destroy { .. } => Origin::Destroy {
            removed: plan
                .steps
                .iter()
                .filter(|step| step.action == Action::Delete)
                .map(|step| step.id.to_string())
                .collect(),
        },
        origin => origin,
    };
    let deployment = Deployment {
        id: 0,
        origin,
        time: now_rfc3339(),
        by: who(),
        git: record.git,
        functions,
        config_digest: record.config_digest,
        warning: record.warning,
        smoke_test: None,
    };
    let deployment = history.push(deployment).clone();
    writer.set_record(history::RECORD, history.to_value()).await?;
    ui.say(&format!("Recorded deployment #{} of `{}` ({}).", deployment.id, session.env.name, deployment.origin));
    Ok(Outcome::Applied(Box::new(deployment)))
}

/// Applies a plan with progress through `ui`, stopping cleanly on Ctrl-C or a lost lock.
async fn run_plan(
    ui: &dyn Ui,
    plan: &Plan,
    desired: &[Resource],
    provider: Arc<AwsProvider>,
    writer: Arc<Mutex<StateWriter<S3Store>>>,
    parallelism: usize,
    lock: &Lock<S3Store>,
) -> Result<Report> {
    let (cancel, cancelled) = watch::channel(false);
    let options = Options::new(parallelism).cancelled_by(cancelled);
    let work = apply(plan, desired, provider, writer, ui.progress(), options);
    tokio::pin!(work);
    let report = tokio::select! {
        report = &mut work => report?,
        _ = tokio::signal::ctrl_c() => {
            ui.note("Interrupted: finishing the operations in flight and saving state...");
            cancel.send_replace(true);
            work.await?
        }
        () = lock.lost() => {
            ui.note("The state lock was lost: finishing the operations in flight and stopping.");
            cancel.send_replace(true);
            work.await?
        }
    };
    Ok(report)
}

/// Says how the apply went and fails when anything did not complete.
fn finish(ui: &dyn Ui, report: &Report) -> Result<()> {
    ui.say(&format!("\nApply: {}.", report.summary()));
    if report.succeeded() {
        return Ok(());
    }
    let failures: Vec<String> = report.failures().map(|(id, error)| format!("  {id}: {error}")).collect();
    match &report.stopped {
        Some(why) if failures.is_empty() => bail!("the run stopped: {why}"),
        _ => bail!("the run did not complete:\n{}", failures.join("\n")),
    }
}

/// What each function serves, as the state records it: the code of `function.<name>` and
/// the version `alias.<name>` points at.
pub fn live_releases(state: &StateFile) -> Result<BTreeMap<String, Release>> {
    let mut releases = BTreeMap::new();
    for function in FUNCTIONS {
        let input = |id: String, key: &str| -> Result<Value> {
            state
                .resources
                .get(&crate::engine::resource::ResourceId::new(id.clone()))
                .and_then(|resource| resource.inputs.get(key))
                .cloned()
                .with_context(|| format!("the state has no `{key}` for {id}"))
        };
        let code_sha256 = input(format!("function.{}", function.name), "code_sha256")?;
        let architecture = input(format!("function.{}", function.name), "architecture")?;
        let version = input(format!("alias.{}", function.name), "function_version")?;
        let release = Release {
            code_sha256: code_sha256.as_str().context("code_sha256 is not a string")?.to_owned(),
            version: version.as_str().context("function_version is not a string")?.to_owned(),
            architecture: serde_json::from_value::<Arch>(architecture).context("architecture")?,
        };
        releases.insert(function.name.to_owned(), release);
    }
    Ok(releases)
}

/// The digest of an environment's configuration (its file as loaded, wherever it lives).
pub fn config_digest(env: &crate::config::Environment) -> Result<String> {
    let mut value = serde_json::to_value(env)?;
    if let Value::Object(map) = &mut value {
        map.remove("file");
    }
    Ok(history::config_digest(&value))
}

/// The commit checked out in the workspace, and whether the tree has uncommitted changes;
/// `None` outside a git checkout.
pub fn git() -> Option<Git> {
    let root = crate::workspace::root();
    let run = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").args(args).current_dir(&root).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "HEAD"])?;
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Some(Git { commit, dirty })
}

/// `user@host` of whoever runs the tool.
pub fn who() -> String {
    let user = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
        .or_else(|| {
            let output = std::process::Command::new("id").arg("-un").output().ok()?;
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{host}")
}

fn describe_recovery(recovered: &Recovered) -> String {
    match recovered {
        Recovered::Adopted { id, physical_id } => {
            format!("Recovered {id}: an interrupted run created {physical_id}; adopted it.")
        }
        Recovered::NeverCreated { id } => format!("Recovered {id}: an interrupted create never happened."),
        Recovered::UpdateRetried { id } => format!("Recovered {id}: an interrupted update will be applied again."),
        Recovered::Deleted { id } => format!("Recovered {id}: an interrupted delete had completed."),
        Recovered::StillExists { id } => format!("Recovered {id}: an interrupted delete did not happen."),
    }
}
