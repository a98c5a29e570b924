//! `cargo xtask demo`: the whole product on the local cloud, in one command.
//!
//! Sets up the virtualenv, starts the local cloud, builds, deploys `local`, runs the smoke
//! test, prints the endpoint and the analysis of the astronaut photo, and leaves the stack
//! running.

use anyhow::{Context as _, Result};

use super::deploy::{self, DeployArgs};
use super::env_arg::EnvArg;
use super::local::{self, CloudArgs, LocalArgs, LocalCommand};
use super::smoke_test::{self, SmokeTestArgs};
use crate::session::Session;
use crate::venv::Venv;
use crate::workspace;

const ENV: &str = "local";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {}

fn heading(text: &str) {
    println!("\n==> {text}");
}

pub fn run(_args: &DemoArgs) -> Result<()> {
    let root = workspace::root();
    heading("Setting up the Python virtualenv (.venv)");
    Venv::ensure(&root)?;

    heading("Starting the local cloud");
    local::run(&LocalArgs { command: LocalCommand::Up(CloudArgs::default()) })?;

    heading("Building the Lambdas, then deploying `local`");
    let env = EnvArg { name: ENV.to_owned() };
    deploy::run(&DeployArgs {
        env: env.clone(),
        manifest: None,
        yes: true,
        parallelism: 10,
        lock_timeout: Some(std::time::Duration::from_secs(60)),
        no_build: false,
        refresh: false,
    })?;

    heading("Smoke test");
    smoke_test::run(&SmokeTestArgs { env, json: false })?;

    let photo = root.join("tests/fixtures/photos/astronaut.jpg");
    let (url, analysis) = super::runtime()?.block_on(async {
        let session = Session::open(ENV).await?;
        let state = session.read_state().await?.context("`local` has no state after deploying it")?.value;
        let url = super::outputs::api_url(&session, &state)?;
        let analysis = smoke_test::analyze_photo(&url, &photo).await?;
        anyhow::Ok((url, analysis))
    })?;
    heading(&format!("The API is at {url}"));
    println!("Analysis of tests/fixtures/photos/astronaut.jpg:");
    println!("{}", serde_json::to_string_pretty(&analysis)?);
    println!("\nThe local cloud keeps running. Try the API with the curl procedure in the README,");
    println!("and stop everything with: cargo xtask local down");
    Ok(())
}
