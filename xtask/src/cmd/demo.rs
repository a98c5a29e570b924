//! `cargo xtask demo`: the whole product on the local cloud, in one command.
//!
//! Sets up the virtualenv, starts the local cloud, builds, deploys `local`, runs the smoke
//! test, prints the endpoint and the analysis of the astronaut photo, and leaves the stack
//! running.

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::console::Console;
use crate::local::layout::{LocalConfig, Overrides};
use crate::ops::{self, deploy::DeployOptions};
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
    let console = Console::new();
    heading("Setting up the Python virtualenv (.venv)");
    Venv::ensure(&root)?;

    heading("Starting the local cloud");
    ops::local::up(&console, &LocalConfig::load(&root, &Overrides::default())?)?;

    let runtime = super::runtime()?;
    heading("Building the Lambdas, then deploying `local`");
    let deploy = DeployOptions {
        env: ENV.to_owned(),
        manifest: None,
        build: true,
        yes: true,
        parallelism: 10,
        lock_timeout: Duration::from_secs(60),
        refresh: false,
    };
    runtime.block_on(ops::deploy::deploy(&console, &deploy))?;

    heading("Smoke test");
    let result = runtime.block_on(ops::smoke_test::smoke_test(ENV))?;
    print!("{}", ops::smoke_test::render(ENV, &result));
    ops::smoke_test::require_passed(&result)?;
    println!("Smoke test passed.");

    let photo = root.join("tests/fixtures/photos/astronaut.jpg");
    let (url, analysis) = runtime.block_on(async {
        let session = Session::open(ENV).await?;
        let state = session.read_state().await?.context("`local` has no state after deploying it")?.value;
        let url = ops::outputs::api_url(&session, &state)?;
        let analysis = ops::smoke_test::analyze_photo(&url, &photo).await?;
        anyhow::Ok((url, analysis))
    })?;
    heading(&format!("The API is at {url}"));
    println!("Analysis of tests/fixtures/photos/astronaut.jpg:");
    println!("{}", serde_json::to_string_pretty(&analysis)?);
    println!("\nThe local cloud keeps running. Try the API with the curl procedure in the README,");
    println!("and stop everything with: cargo xtask local down");
    heading(&format!("Open the page: {url}/"));
    println!("Choose or drop a photo there, and see a box around every face with its emotions.");
    Ok(())
}
