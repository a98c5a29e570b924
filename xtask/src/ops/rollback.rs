//! Rollback: moves every function's `live` alias back to the versions of an earlier
//! deployment (by default the latest earlier one that
//! runs other versions and did not fail its smoke test). Nothing is built or uploaded; the
//! published versions are immutable, so the old code and configuration come back exactly.
//! The rollback is recorded as a new deployment.

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::apply::{self, ApplyOptions, Desired, Outcome, Record};
use super::ui::{ensure_can_confirm, Ui};
use crate::history::{Deployment, History, Origin};
use crate::session::Session;

/// Which environment to roll back, to what, and how.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub env: String,
    /// The deployment to restore (default: see [`History::rollback_target`]).
    pub to: Option<u64>,
    pub yes: bool,
    pub lock_timeout: Duration,
}

/// Rolls `options.env` back. `Outcome::NoChanges` when it already served those versions.
pub async fn rollback(ui: &dyn Ui, options: &RollbackOptions) -> Result<Outcome> {
    super::local::ensure_for_environment(ui, &options.env)?;
    let mut session = Session::open(&options.env).await?;
    let state = session
        .read_state()
        .await?
        .with_context(|| format!("environment `{}` has never been deployed", options.env))?
        .value;
    let history = History::from_state(&options.env, &state)?;
    let target = history.rollback_target(options.to)?.clone();
    ensure_can_confirm(ui, options.yes, "roll back")?;
    let account_id = session.account_id(&state).await?;
    let apply_options = ApplyOptions {
        operation: "rollback",
        yes: options.yes,
        parallelism: 10,
        lock_timeout: options.lock_timeout,
        refresh: false,
    };
    roll_back(ui, &session, &account_id, &history, &target, false, &apply_options).await
}

/// Moves the aliases to `target`'s versions and records it; `automatic` for the rollback
/// after a failed promotion.
pub(super) async fn roll_back(
    ui: &dyn Ui,
    session: &Session,
    account_id: &str,
    history: &History,
    target: &Deployment,
    automatic: bool,
    options: &ApplyOptions,
) -> Result<Outcome> {
    let current = history.require_serving()?;
    ui.say(&format!(
        "Rolling `{}` back from deployment #{} to #{} ({}):",
        session.env.name, current.id, target.id, target.time
    ));
    for (function, release) in &target.functions {
        let from = current.functions.get(function).map_or("-".to_owned(), |live| format!("version {}", live.version));
        ui.say(&format!("  {function:<12} {from} -> version {} (code {})", release.version, release.code_sha256));
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
        apply::apply_and_record(ui, session, account_id, desired, session.provider(None), options, record).await?;
    if outcome == Outcome::NoChanges {
        ui.say(&format!("`{}` already serves the versions of deployment #{}.", session.env.name, target.id));
    }
    Ok(outcome)
}
