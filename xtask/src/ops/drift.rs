//! Drift: reads the live configuration of every resource an environment's state records and
//! compares it with the record (see [`crate::drift`]). Read-only: no lock, no write.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ui::Ui;
use crate::drift::{self, Report, ResourceDrift};
use crate::session::Session;

/// Environment `env`'s drift, reading at most `parallelism` resources at once; and where its
/// state lives.
pub async fn drift(ui: &dyn Ui, env: &str, parallelism: usize) -> Result<(Report, String)> {
    let session = Session::open(env).await?;
    let state = session
        .read_state()
        .await?
        .with_context(|| format!("environment `{env}` has never been deployed: there is nothing to compare"))?
        .value;
    if !state.pending.is_empty() {
        let ids: Vec<&str> = state.pending.keys().map(|id| id.as_str()).collect();
        ui.note(&format!(
            "warning: an interrupted run left operations pending on {}; `cargo xtask deploy --env {env}` resolves them",
            ids.join(", "),
        ));
    }
    let provider = Arc::new(session.provider(None));
    let permits = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut reads = JoinSet::new();
    for (id, recorded) in state.resources.clone() {
        let (provider, permits) = (Arc::clone(&provider), Arc::clone(&permits));
        reads.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            let live = provider.read_live(&recorded).await;
            (id, recorded, live)
        });
    }
    let mut results: Vec<ResourceDrift> = Vec::new();
    while let Some(joined) = reads.join_next().await {
        let (id, recorded, live) = joined.context("a read task failed")?;
        let live = live.with_context(|| format!("reading {id} ({})", recorded.physical_id))?;
        results.push(drift::compare(&id, &recorded, live.as_ref()));
    }
    Ok((drift::report(results), session.state_location()))
}
