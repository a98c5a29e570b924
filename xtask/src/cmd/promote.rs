//! `cargo xtask promote [--from A] --to B`: deploys to B exactly the code A serves, after A's
//! smoke test passed for it, then smoke-tests B (see [`crate::ops::promote`]).

use std::time::Duration;

use anyhow::Result;

use super::console::Console;
use super::flags::parse_duration;
use crate::ops::{self, promote::PromoteOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    /// The environment whose tested code is promoted (default: `promote_from` in the
    /// target's environment file).
    #[arg(long, value_name = "ENV")]
    pub from: Option<String>,
    /// The environment to deploy it to.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Promote even though the source's last smoke test did not pass for its current code.
    /// The warning is recorded in the target's history.
    #[arg(long)]
    pub force: bool,
    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resource operations may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for another run's lock instead of failing at once, e.g. `90s`, `5m`.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
}

pub fn run(args: &PromoteArgs) -> Result<()> {
    let options = PromoteOptions {
        from: args.from.clone(),
        to: args.to.clone(),
        force: args.force,
        yes: args.yes,
        parallelism: args.parallelism,
        lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
    };
    super::runtime()?.block_on(ops::promote::promote(&Console::new(), &options))?;
    Ok(())
}
