//! `cargo xtask drift --env E [--json]` (also `refresh`): reads the live configuration of
//! every resource state records and reports what changed or disappeared behind the tool's
//! back (see [`crate::ops::drift`]). Read-only: no lock, no write. Exits 0 when everything
//! matches, 2 on drift, 1 on an error.

use std::process::ExitCode;

use anyhow::Result;

use super::console::Console;
use super::flags::EnvArg;
use crate::ops;

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
    let console = Console::new();
    let (report, location) =
        super::runtime()?.block_on(ops::drift::drift(&console, &args.env.name, args.parallelism))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("Drift of `{}` ({location}):", args.env.name);
        println!("{report}");
    }
    Ok(if report.has_drift() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
