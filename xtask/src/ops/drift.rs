//! Drift: reads the live configuration of every resource an environment's state records, and
//! what sits next to it (a role's other policies, a resource policy's other statements), and
//! compares it with the record (see [`crate::drift`]); and the state bucket's protections
//! with what the tool configures. Read-only: no lock, no write.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ui::Ui;
use crate::drift::{self, Report, ResourceDrift};
use crate::engine::provider::ProviderError;
use crate::engine::resource::{Inputs, Kind, ResourceId};
use crate::providers::AwsProvider;
use crate::session::Session;
use crate::state::s3::{state_bucket_expectations, Transport};
use crate::state::ResourceState;

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
    let all = Arc::new(state.resources.clone());
    let mut reads = JoinSet::new();
    for (id, recorded) in state.resources.clone() {
        let (provider, permits, all) = (Arc::clone(&provider), Arc::clone(&permits), Arc::clone(&all));
        reads.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            let live = read(&provider, &recorded).await;
            // What its neighbours must hold (a role's policies, a resource policy's
            // statements) is compared as if it were recorded on the resource.
            let mut expected = recorded.clone();
            expected.inputs.extend(drift::exclusive_expectations(&recorded, &all));
            (id, expected, live)
        });
    }
    let mut results: Vec<ResourceDrift> = Vec::new();
    while let Some(joined) = reads.join_next().await {
        let (id, expected, live) = joined.context("a read task failed")?;
        let live = live.with_context(|| format!("reading {id} ({})", expected.physical_id))?;
        results.push(drift::compare(&id, &expected, live.as_ref()));
    }
    let state_bucket = state_bucket(&session, &provider).await?;
    Ok((drift::report(results, Some(state_bucket)), session.state_location()))
}

/// A resource's properties and what sits next to it; `None` when it is gone.
async fn read(provider: &AwsProvider, recorded: &ResourceState) -> Result<Option<Inputs>, ProviderError> {
    let Some(mut live) = provider.read_live(recorded).await? else { return Ok(None) };
    live.extend(provider.read_exclusive(recorded).await?);
    Ok(Some(live))
}

/// The state bucket compared with what the tool configures it as.
async fn state_bucket(session: &Session, provider: &AwsProvider) -> Result<ResourceDrift> {
    let bucket = &session.state_bucket;
    let transport = Transport::for_endpoint(crate::aws::endpoint(&session.env).as_deref());
    let expected = ResourceState {
        kind: Kind::Bucket,
        name: bucket.clone(),
        physical_id: bucket.clone(),
        inputs: state_bucket_expectations(bucket, &session.env.region, transport),
        outputs: Default::default(),
        depends_on: Default::default(),
    };
    let live =
        provider.read_state_bucket(bucket).await.with_context(|| format!("reading the state bucket {bucket}"))?;
    Ok(drift::compare(&ResourceId::new(drift::STATE_BUCKET_ID), &expected, live.as_ref()))
}
