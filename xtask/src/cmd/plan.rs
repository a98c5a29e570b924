//! `cargo xtask plan --env E`: what a deploy would change, without changing anything.

use std::process::ExitCode;

use anyhow::Result;

use super::env_arg::EnvArg;
use crate::engine::plan::plan;
use crate::providers::AwsRules;
use crate::session::{self, Session};

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// The build to deploy: a manifest written by `cargo xtask build` (default:
    /// target/lambda/manifest.json).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<std::path::PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on an error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

pub fn run(args: &PlanArgs) -> Result<ExitCode> {
    super::runtime()?.block_on(async {
        let manifest = session::manifest(args.manifest.as_deref())?;
        let mut session = Session::open(&args.env.name).await?;
        let state = session.read_state().await?.map(|versioned| versioned.value).unwrap_or_default();
        let account_id = session.account_id(&state).await?;
        let desired = session.desired(&account_id, &manifest)?;
        let plan = plan(&desired, &state, AwsRules, session.env.protect)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            if !state.pending.is_empty() {
                println!(
                    "Note: {} operation(s) of an interrupted run are pending; the next deploy resolves them first.\n",
                    state.pending.len()
                );
            }
            print!("{plan}");
        }
        let changes = plan.has_changes() || !state.pending.is_empty();
        Ok(if args.detailed_exitcode && changes { ExitCode::from(2) } else { ExitCode::SUCCESS })
    })
}
