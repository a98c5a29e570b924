//! Plan: what a deploy of the current build would change, without changing anything.

use std::path::Path;

use anyhow::Result;

use crate::engine::plan::{plan as make_plan, Plan};
use crate::providers::AwsRules;
use crate::session::{self, Session};

/// Environment `env`'s plan against the build in `manifest` (default: the workspace's), and
/// how many operations of an interrupted run are pending.
pub async fn plan(env: &str, manifest: Option<&Path>) -> Result<(Plan, usize)> {
    let manifest = session::manifest(manifest)?;
    let mut session = Session::open(env).await?;
    let state = session.read_state().await?.map(|versioned| versioned.value).unwrap_or_default();
    let account_id = session.account_id(&state).await?;
    let desired = session.desired(&account_id, &manifest)?;
    Ok((make_plan(&desired, &state, AwsRules, session.env.protect)?, state.pending.len()))
}
