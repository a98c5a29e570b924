//! `cargo xtask deploy --env E`: builds, plans, asks, and applies (see
//! [`crate::ops::deploy`]).

use std::time::Duration;

use anyhow::Result;

use super::console::Console;
use super::flags::{parse_duration, EnvArg};
use crate::ops::{self, deploy::DeployOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// The build to deploy: a manifest written by `cargo xtask build` (default:
    /// target/lambda/manifest.json).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<std::path::PathBuf>,
    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resource operations may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for another run's lock instead of failing at once, e.g. `90s`, `5m`.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// First look every recorded resource up in the cloud: re-read its outputs, and forget
    /// (so as to recreate) what was deleted behind the tool's back. Takes the lock.
    #[arg(long)]
    pub refresh: bool,
    /// Deploy the existing build without building first (implied by --manifest).
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: &DeployArgs) -> Result<()> {
    let options = DeployOptions {
        env: args.env.name.clone(),
        manifest: args.manifest.clone(),
        build: !args.no_build,
        yes: args.yes,
        parallelism: args.parallelism,
        lock_timeout: args.lock_timeout.unwrap_or(Duration::ZERO),
        refresh: args.refresh,
    };
    super::runtime()?.block_on(ops::deploy::deploy(&Console::new(), &options))?;
    Ok(())
}
