//! Deploy: build (unless told not to), plan, and when anything changes, apply and record
//! under the lock (see [`super::apply`]).
//!
//! A no-op deploy reads the state, compares, and stops: it takes no lock and writes nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::apply::{self, ApplyOptions, Desired, Outcome, Record};
use super::ui::{ensure_can_confirm, Ui};
use crate::engine::plan::plan;
use crate::history::Origin;
use crate::providers::AwsRules;
use crate::session::{self, Session};

/// What to deploy, and how.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub env: String,
    /// A build manifest to deploy instead of the workspace's own build.
    pub manifest: Option<PathBuf>,
    /// Build the workspace first (ignored with `manifest`).
    pub build: bool,
    pub yes: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
    /// Re-read every recorded resource first.
    pub refresh: bool,
}

/// Deploys `options.env`. `Outcome::NoChanges` when it already matched.
pub async fn deploy(ui: &dyn Ui, options: &DeployOptions) -> Result<Outcome> {
    // The environment's file is checked before anything is built.
    crate::config::Environment::load(&crate::config::environments_dir(), &options.env)?;
    if options.build && options.manifest.is_none() {
        super::build::build(ui, false)?;
    }
    let manifest = session::manifest(options.manifest.as_deref())?;
    // An environment on a local emulator that is not running yet: start the local cloud.
    super::local::ensure_for_environment(ui, &options.env)?;
    let mut session = Session::open(&options.env).await?;
    let state = session.read_state().await?;
    let current = state.as_ref().map(|versioned| versioned.value.clone()).unwrap_or_default();
    let account_id = session.account_id(&current).await?;
    let desired = session.desired(&account_id, &manifest)?;
    let first_look = plan(&desired, &current, AwsRules, session.env.protect)?;
    if state.is_some() && !first_look.has_changes() && current.pending.is_empty() && !options.refresh {
        ui.out(&first_look.to_string());
        return Ok(Outcome::NoChanges);
    }
    // Refuse before writing anything (state bucket, lock, state document) when there is no
    // way to ask.
    if first_look.has_changes() {
        if let Err(error) = ensure_can_confirm(ui, options.yes, "deploy") {
            ui.out(&first_look.to_string());
            return Err(error);
        }
    }
    let apply_options = ApplyOptions {
        operation: "deploy",
        yes: options.yes,
        parallelism: options.parallelism,
        lock_timeout: options.lock_timeout,
        refresh: options.refresh,
    };
    let record = Record {
        origin: Origin::Deploy,
        git: apply::git(),
        functions: None,
        config_digest: apply::config_digest(&session.env)?,
        warning: None,
    };
    let provider = session.provider(Some(&manifest));
    apply::apply_and_record(ui, &session, &account_id, Desired::Stack(desired), provider, &apply_options, record).await
}
