//! `cargo xtask build`: release-build every Lambda with cargo-lambda, package deterministic zips,
//! and write `target/lambda/manifest.json` (see [`crate::ops::build`]).

use anyhow::Result;

use super::console::Console;
use crate::ops;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildArgs {
    /// Rebuild even when the fingerprint says nothing changed.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &BuildArgs) -> Result<()> {
    ops::build::build(&Console::new(), args.force)?;
    Ok(())
}
