//! `cargo xtask drift --env E [--json]` (also `refresh`): reads the live configuration of
//! every resource state records and reports what changed or disappeared behind the tool's
//! back. Read-only: no lock, no write. Exits 0 when everything matches, 2 on drift, 1 on
//! an error.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::env_arg::EnvArg;
use crate::drift::{self, ResourceDrift};
use crate::session::Session;

#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many resources are read at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
}

pub fn run(args: &DriftArgs) -> Result<ExitCode> {
    super::runtime()?.block_on(async {
        let session = Session::open(&args.env.name).await?;
        let state = session
            .read_state()
            .await?
            .with_context(|| format!("environment `{}` has never been deployed: there is nothing to compare", args.env.name))?
            .value;
        if !state.pending.is_empty() {
            let ids: Vec<&str> = state.pending.keys().map(|id| id.as_str()).collect();
            eprintln!(
                "warning: an interrupted run left operations pending on {}; `cargo xtask deploy --env {}` resolves them",
                ids.join(", "),
                args.env.name
            );
        }
        let provider = Arc::new(session.provider(None));
        let permits = Arc::new(Semaphore::new(args.parallelism.max(1)));
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
        let report = drift::report(results);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("Drift of `{}` ({}):", args.env.name, session.state_location());
            println!("{report}");
        }
        Ok(if report.has_drift() { ExitCode::from(2) } else { ExitCode::SUCCESS })
    })
}
