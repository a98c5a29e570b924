//! `cargo xtask deploy --env E`: builds, plans, asks, and applies.
//!
//! A no-op deploy reads the state, compares, and stops: it takes no lock and writes nothing.
//! Otherwise it takes the lock, resolves what an interrupted run left pending, plans again
//! under the lock, shows the plan, asks for confirmation, applies, and records the
//! deployment in the environment's history (see [`crate::rollout`]).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::sync::{watch, Mutex};

use super::build::{self, BuildArgs};
use super::env_arg::EnvArg;
use crate::engine::apply::{apply, Options, Report};
use crate::engine::plan::{plan, Plan};
use crate::engine::resource::Resource;
use crate::history::Origin;
use crate::progress::Progress;
use crate::providers::AwsRules;
use crate::rollout::{self, ApplyOptions, Desired, Record};
use crate::session::{self, Session};
use crate::state::lock::Lock;
use crate::state::writer::StateWriter;

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// The build to deploy: a manifest written by `cargo xtask build` (default:
    /// target/lambda/manifest.json).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<std::path::PathBuf>,
    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resource operations may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for another run's lock instead of failing at once, e.g. `90s`, `5m`.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// First look every recorded resource up in the cloud: re-read its outputs, and forget
    /// (so as to recreate) what was deleted behind the tool's back. Takes the lock.
    #[arg(long)]
    pub refresh: bool,
    /// Deploy the existing build without building first (implied by --manifest).
    #[arg(long)]
    pub no_build: bool,
}

/// Parses `90`, `90s`, `5m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("`{text}` is not a duration like 90s or 5m")),
    }
}

pub fn run(args: &DeployArgs) -> Result<()> {
    if !args.no_build && args.manifest.is_none() {
        build::run(&BuildArgs::default())?;
    }
    let manifest = session::manifest(args.manifest.as_deref())?;
    // An environment on a local emulator that is not running yet: start the local cloud.
    crate::local::cloud::ensure_for_environment(&args.env.name)?;
    super::runtime()?.block_on(async {
        let mut session = Session::open(&args.env.name).await?;
        let state = session.read_state().await?;
        let current = state.as_ref().map(|versioned| versioned.value.clone()).unwrap_or_default();
        let account_id = session.account_id(&current).await?;
        let desired = session.desired(&account_id, &manifest)?;
        let first_look = plan(&desired, &current, AwsRules, session.env.protect)?;
        if state.is_some() && !first_look.has_changes() && current.pending.is_empty() && !args.refresh {
            print!("{first_look}");
            return Ok(());
        }
        // Refuse before writing anything (state bucket, lock, state document) when there is
        // no way to ask.
        if first_look.has_changes() {
            if let Err(error) = ensure_can_confirm(args.yes, "deploy") {
                print!("{first_look}");
                return Err(error);
            }
        }
        let options = ApplyOptions {
            operation: "deploy",
            yes: args.yes,
            parallelism: args.parallelism,
            lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
            refresh: args.refresh,
        };
        let record = Record {
            origin: Origin::Deploy,
            git: rollout::git(),
            functions: None,
            config_digest: rollout::config_digest(&session.env)?,
            warning: None,
        };
        let provider = session.provider(Some(&manifest));
        rollout::apply_and_record(
            &session,
            &account_id,
            Desired::Stack(desired),
            provider,
            &options,
            record,
            state.is_none(),
        )
        .await?;
        Ok(())
    })
}

/// Applies a plan with progress on stderr, stopping cleanly on Ctrl-C or a lost lock.
pub async fn run_plan(
    plan: &Plan,
    desired: &[Resource],
    provider: Arc<crate::providers::AwsProvider>,
    writer: Arc<Mutex<StateWriter<crate::state::s3::S3Store>>>,
    parallelism: usize,
    lock: &Lock<crate::state::s3::S3Store>,
) -> Result<Report> {
    let (cancel, cancelled) = watch::channel(false);
    let options = Options::new(parallelism).cancelled_by(cancelled);
    let work = apply(plan, desired, provider, writer, Arc::new(Progress::new()), options);
    tokio::pin!(work);
    let report = tokio::select! {
        report = &mut work => report?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Interrupted: finishing the operations in flight and saving state...");
            cancel.send_replace(true);
            work.await?
        }
        () = lock.lost() => {
            eprintln!("The state lock was lost: finishing the operations in flight and stopping.");
            cancel.send_replace(true);
            work.await?
        }
    };
    Ok(report)
}

/// Prints the summary and fails when anything did not complete.
pub fn finish(report: &Report) -> Result<()> {
    println!("\nApply: {}.", report.summary());
    if report.succeeded() {
        return Ok(());
    }
    let failures: Vec<String> = report.failures().map(|(id, error)| format!("  {id}: {error}")).collect();
    match &report.stopped {
        Some(why) if failures.is_empty() => bail!("the run stopped: {why}"),
        _ => bail!("the run did not complete:\n{}", failures.join("\n")),
    }
}

/// Fails when a confirmation is needed (no `--yes`) but cannot be asked for (standard input
/// is not a terminal); commands call it before they write anything.
pub fn ensure_can_confirm(yes: bool, what: &str) -> Result<()> {
    if !yes && !std::io::stdin().is_terminal() {
        bail!("refusing to {what} without confirmation: standard input is not a terminal; pass --yes to {what} anyway");
    }
    Ok(())
}

/// Asks before changing anything, unless `--yes`. Without a terminal, refuses.
pub fn confirm(yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    ensure_can_confirm(yes, what)?;
    let stdin = std::io::stdin();
    print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).context("reading the answer")?;
    if answer.trim() != "yes" {
        bail!("{what} cancelled: the answer was not 'yes'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
