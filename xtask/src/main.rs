//! `cargo xtask`: parses the command line and runs the command (see [`xtask::cmd`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use xtask::cmd;

/// Builds, deploys and tests image-analyzer.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole product on the local cloud: set up, build, deploy `local`, smoke-test.
    Demo(cmd::demo::DemoArgs),
    /// Release-build every Lambda and package deterministic zips plus target/lambda/manifest.json.
    Build(cmd::build::BuildArgs),
    /// Show what a deploy would change, without changing anything.
    Plan(cmd::plan::PlanArgs),
    /// Build, plan, confirm and apply an environment.
    Deploy(cmd::deploy::DeployArgs),
    /// Delete every resource of an environment, in reverse dependency order.
    Destroy(cmd::destroy::DestroyArgs),
    /// Compare every recorded resource with the cloud; exit 2 on drift.
    #[command(visible_alias = "refresh")]
    Drift(cmd::drift::DriftArgs),
    /// Print a deployed environment's API URL, bucket, functions and code hashes.
    Outputs(cmd::outputs::OutputsArgs),
    /// Run the client flow against a deployed environment and record the result.
    SmokeTest(cmd::smoke_test::SmokeTestArgs),
    /// Deploy exactly the code another environment serves and has smoke-tested, then smoke-test it.
    Promote(cmd::promote::PromoteArgs),
    /// Move an environment's functions back to the versions of an earlier deployment.
    Rollback(cmd::rollback::RollbackArgs),
    /// List an environment's deployments: code hashes, versions, who, smoke-test results.
    History(cmd::history::HistoryArgs),
    /// Run the cloud on this machine: the AWS emulator and the deployed HTTP APIs (up, down, status).
    Local(cmd::local::LocalArgs),
    /// Remove a stuck state lock, named by its id.
    Unlock(cmd::unlock::UnlockArgs),
    /// Run every test, installing what the tests need, and check reproducible builds.
    Test(cmd::test::TestArgs),
    /// Measure deploys, API calls, sizes, cold starts, latency, build and face analysis on a
    /// private local cloud; write target/bench/report.json and report.md.
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // The SDK's credential chain warns about every provider it tries; the error that
        // follows says what matters. XTASK_LOG=debug shows everything.
        .with_env_filter(
            EnvFilter::try_from_env("XTASK_LOG").unwrap_or_else(|_| EnvFilter::new("info,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();

    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => cmd::demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Build(args) => cmd::build::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Deploy(args) => cmd::deploy::run(args).map(|()| ExitCode::SUCCESS),
        Command::Destroy(args) => cmd::destroy::run(args).map(|()| ExitCode::SUCCESS),
        Command::Drift(args) => cmd::drift::run(args),
        Command::Outputs(args) => cmd::outputs::run(args).map(|()| ExitCode::SUCCESS),
        Command::SmokeTest(args) => cmd::smoke_test::run(args).map(|()| ExitCode::SUCCESS),
        Command::Promote(args) => cmd::promote::run(args).map(|()| ExitCode::SUCCESS),
        Command::Rollback(args) => cmd::rollback::run(args).map(|()| ExitCode::SUCCESS),
        Command::History(args) => cmd::history::run(args).map(|()| ExitCode::SUCCESS),
        Command::Local(args) => cmd::local::run(args).map(|()| ExitCode::SUCCESS),
        Command::Unlock(args) => cmd::unlock::run(args).map(|()| ExitCode::SUCCESS),
        Command::Test(args) => cmd::test::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => cmd::bench::run(args).map(|()| ExitCode::SUCCESS),
    };
    if let Err(error) = xtask::calls::write_log() {
        eprintln!("warning: could not write the API call log: {error}");
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
