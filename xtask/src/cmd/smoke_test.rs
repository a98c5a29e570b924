//! `cargo xtask smoke-test --env E`: the real client flow against a deployed environment,
//! recorded in its state (see [`crate::ops::smoke_test`]).

use anyhow::Result;

use super::flags::EnvArg;
use crate::ops;

#[derive(Debug, Clone, clap::Args)]
pub struct SmokeTestArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &SmokeTestArgs) -> Result<()> {
    let result = super::runtime()?.block_on(ops::smoke_test::smoke_test(&args.env.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", ops::smoke_test::render(&args.env.name, &result));
    }
    ops::smoke_test::require_passed(&result)?;
    if !args.json {
        println!("Smoke test passed.");
    }
    Ok(())
}
