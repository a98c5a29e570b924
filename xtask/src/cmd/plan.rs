//! `cargo xtask plan --env E`: what a deploy would change, without changing anything (see
//! [`crate::ops::plan`]).

use std::process::ExitCode;

use anyhow::Result;

use super::flags::EnvArg;
use crate::ops;

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
    let (plan, pending) = super::runtime()?.block_on(ops::plan::plan(&args.env.name, args.manifest.as_deref()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        if pending > 0 {
            println!(
                "Note: {pending} operation(s) of an interrupted run are pending; the next deploy resolves them first.\n"
            );
        }
        print!("{plan}");
    }
    let changes = plan.has_changes() || pending > 0;
    Ok(if args.detailed_exitcode && changes { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
