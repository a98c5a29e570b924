//! `cargo xtask rollback --env E [--to <deployment>]`: moves every function's `live` alias
//! back to the versions of an earlier deployment (by default the latest earlier one that
//! runs other versions and did not fail its smoke test). Nothing is built or uploaded; the
//! published versions are immutable, so the old code and configuration come back exactly.
//! The rollback is recorded as a new deployment.

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::deploy::{ensure_can_confirm, parse_duration};
use super::env_arg::EnvArg;
use crate::history::{Deployment, History, Origin};
use crate::rollout::{self, ApplyOptions, Desired, Outcome, Record};
use crate::session::Session;

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// The deployment to restore, by id (see `cargo xtask history`).
    #[arg(long, value_name = "DEPLOYMENT")]
    pub to: Option<u64>,
    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Wait this long for another run's lock instead of failing at once, e.g. `90s`, `5m`.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
}

pub fn run(args: &RollbackArgs) -> Result<()> {
    crate::local::cloud::ensure_for_environment(&args.env.name)?;
    super::runtime()?.block_on(async {
        let mut session = Session::open(&args.env.name).await?;
        let state = session
            .read_state()
            .await?
            .with_context(|| format!("environment `{}` has never been deployed", args.env.name))?
            .value;
        let history = History::from_state(&args.env.name, &state)?;
        let target = history.rollback_target(args.to)?.clone();
        ensure_can_confirm(args.yes, "roll back")?;
        let account_id = session.account_id(&state).await?;
        let options = ApplyOptions {
            operation: "rollback",
            yes: args.yes,
            parallelism: 10,
            lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
            refresh: false,
        };
        roll_back(&session, &account_id, &history, &target, false, &options).await?;
        Ok(())
    })
}

/// Moves the aliases to `target`'s versions and records it; `automatic` for the rollback
/// after a failed promotion.
pub async fn roll_back(
    session: &Session,
    account_id: &str,
    history: &History,
    target: &Deployment,
    automatic: bool,
    options: &ApplyOptions,
) -> Result<Outcome> {
    let current = history.require_current()?;
    println!(
        "Rolling `{}` back from deployment #{} to #{} ({}):",
        session.env.name, current.id, target.id, target.time
    );
    for (function, release) in &target.functions {
        let from = current.functions.get(function).map_or("-".to_owned(), |live| format!("version {}", live.version));
        println!("  {function:<12} {from} -> version {} (code {})", release.version, release.code_sha256);
    }
    let record = Record {
        origin: Origin::Rollback { to: target.id, automatic },
        git: target.git.clone(),
        functions: Some(target.functions.clone()),
        config_digest: target.config_digest.clone(),
        warning: None,
    };
    let desired = Desired::AliasesAt(target.versions());
    let outcome =
        rollout::apply_and_record(session, account_id, desired, session.provider(None), options, record, false).await?;
    if outcome == Outcome::NoChanges {
        println!("`{}` already serves the versions of deployment #{}.", session.env.name, target.id);
    }
    Ok(outcome)
}
