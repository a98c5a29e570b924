//! `cargo xtask local up|down|status`: the local cloud (the AWS emulator plus the data plane
//! that serves the deployed HTTP APIs and runs their Lambdas). See [`crate::local::cloud`].
//!
//! `local serve` (hidden) is the data plane itself, which `up` runs in the background.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::console::Console;
use crate::config::EmulatorKind;
use crate::config::{environments_dir, Environment};
use crate::local::cloud;
use crate::local::dataplane::{self, ServeOptions};
use crate::local::discovery::DEFAULT_REGION;
use crate::local::layout::{LocalConfig, Overrides, StateDir};
use crate::ops;
use crate::workspace;

#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    pub command: LocalCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LocalCommand {
    /// Start the AWS emulator (moto) and the data plane in the background, and wait until
    /// both are healthy. Does nothing for what already runs.
    Up(CloudArgs),
    /// Stop exactly the processes `up` started (found through their pid files).
    Down(CloudArgs),
    /// Show what runs, where, whether it is healthy, and the APIs served.
    Status(StatusArgs),
    /// Run the data plane in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve(ServeArgs),
}

/// Where the local cloud runs; each flag overrides environments/local.yaml.
#[derive(Debug, Clone, Default, Args)]
pub struct CloudArgs {
    /// The emulator's endpoint (default: `endpoint` in environments/local.yaml).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The port of the `local` environment's API; other environments' APIs get the next free
    /// ports above it (default: `local.api_port` in environments/local.yaml).
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,
    /// Where pid files, logs, apis.json and unpacked functions go (default: target/local).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The AWS emulator to run (default: `local.emulator` in environments/local.yaml, else
    /// moto).
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(EmulatorKind::NAMES))]
    pub emulator: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// A region to serve APIs and functions from; repeatable (default: every region in
    /// environments/, and us-east-1).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// How often the deployed configuration is re-read, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub poll_interval_ms: u64,
    /// At most this many instances of a function without a reserved concurrency run at once
    /// (`up` passes `local.max_instances` of environments/local.yaml, default 4).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_instances: usize,
}

impl CloudArgs {
    fn config(&self) -> Result<LocalConfig> {
        let state_dir =
            self.state_dir.as_ref().map(|dir| std::env::current_dir().map(|cwd| cwd.join(dir))).transpose()?;
        LocalConfig::load(
            &workspace::root(),
            &Overrides {
                endpoint: self.endpoint.clone(),
                api_port: self.api_port,
                state_dir,
                emulator: self.emulator.as_deref().and_then(EmulatorKind::from_name),
            },
        )
    }
}

pub fn run(args: &LocalArgs) -> Result<()> {
    match &args.command {
        LocalCommand::Up(cloud) => up(cloud),
        LocalCommand::Down(cloud) => down(cloud),
        LocalCommand::Status(status) => show_status(status),
        LocalCommand::Serve(serve) => run_serve(serve),
    }
}

fn up(args: &CloudArgs) -> Result<()> {
    ops::local::up(&Console::new(), &args.config()?)
}

fn down(args: &CloudArgs) -> Result<()> {
    let config = args.config()?;
    for report in cloud::down(&config.state_dir)? {
        println!("{report}");
    }
    Ok(())
}

fn show_status(args: &StatusArgs) -> Result<()> {
    let config = args.cloud.config()?;
    let status = cloud::status(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{status}");
    }
    Ok(())
}

fn run_serve(args: &ServeArgs) -> Result<()> {
    let config = args.cloud.config()?;
    let regions = if args.regions.is_empty() { environment_regions() } else { args.regions.clone() };
    let options = ServeOptions {
        endpoint: config.endpoint.clone(),
        api_port: config.api_port,
        state_dir: StateDir::new(config.state_dir.dir()),
        trusted_code: crate::local::trust::file(&config.root),
        project: config.project.clone(),
        regions,
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(100)),
        max_instances: args.max_instances.max(1),
    };
    super::runtime()?.block_on(dataplane::serve(options))
}

/// Every region an environment file names, plus us-east-1, sorted.
fn environment_regions() -> Vec<String> {
    let dir = environments_dir();
    let mut regions: Vec<String> = Environment::available(&dir)
        .iter()
        .filter_map(|name| match Environment::load(&dir, name) {
            Ok(env) => Some(env.region),
            Err(error) => {
                tracing::warn!("ignoring environments/{name}.yaml: {error}");
                None
            }
        })
        .chain([DEFAULT_REGION.to_owned()])
        .collect();
    regions.sort();
    regions.dedup();
    regions
}
