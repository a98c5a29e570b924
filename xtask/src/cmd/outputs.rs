//! `cargo xtask outputs --env E`: what a deployed environment offers, from its state.

use anyhow::Result;

use super::flags::EnvArg;
use crate::ops;

#[derive(Debug, Clone, clap::Args)]
pub struct OutputsArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Print the outputs as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &OutputsArgs) -> Result<()> {
    let outputs = super::runtime()?.block_on(ops::outputs::outputs(&args.env.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outputs)?);
    } else {
        print!("{outputs}");
    }
    Ok(())
}
