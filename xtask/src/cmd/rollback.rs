//! `cargo xtask rollback --env E [--to <deployment>]`: moves every function's `live` alias
//! back to the versions of an earlier deployment, and records it (see
//! [`crate::ops::rollback`]).

use std::time::Duration;

use anyhow::Result;

use super::console::Console;
use super::flags::{parse_duration, EnvArg};
use crate::ops::{self, rollback::RollbackOptions};

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
    let options = RollbackOptions {
        env: args.env.name.clone(),
        to: args.to,
        yes: args.yes,
        lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
    };
    super::runtime()?.block_on(ops::rollback::rollback(&Console::new(), &options))?;
    Ok(())
}
