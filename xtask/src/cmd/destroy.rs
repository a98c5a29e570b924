//! `cargo xtask destroy --env E`: deletes every resource of an environment, in reverse
//! dependency order, honouring `protect`, and records the destroy in its history (see
//! [`crate::ops::destroy`]). The state bucket and document remain.

use std::time::Duration;

use anyhow::Result;

use super::console::Console;
use super::flags::{parse_duration, EnvArg};
use crate::ops::{self, destroy::DestroyOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Destroy without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resource operations may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for another run's lock instead of failing at once.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
}

pub fn run(args: &DestroyArgs) -> Result<()> {
    let options = DestroyOptions {
        env: args.env.name.clone(),
        yes: args.yes,
        parallelism: args.parallelism,
        lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
    };
    super::runtime()?.block_on(ops::destroy::destroy(&Console::new(), &options))?;
    Ok(())
}
