//! `cargo xtask test`: the one test command. It checks formatting and lints, installs what
//! the tests need (the virtualenv's tools, and Chromium for the page's browser test), runs every test in the workspace (the deployer's end-to-end suites on both
//! emulators, moto and MiniStack), and checks that release builds are reproducible.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::console::Console;
use crate::arch::Arch;
use crate::browser::Browser;
use crate::manifest::Manifest;
use crate::ops;
use crate::process;
use crate::venv::Venv;
use crate::workspace;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TestArgs {
    /// Skip the reproducible-build check (two release builds), for quick local runs.
    #[arg(long)]
    pub skip_reproducibility: bool,
    /// Extra arguments for `cargo test`, e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// The suites that run against MiniStack as well as moto: the deployer end to end (deploy,
/// no-op, plan, drift and refresh, destroy, crash recovery and faults, promotion). The
/// others test moto-specific behaviour (the providers' and the state store's handling of
/// what moto enforces, which MiniStack does not) or the local cloud, which runs on moto.
const SECOND_EMULATOR_SUITES: [&str; 3] = ["engine", "faults", "promotion"];

pub fn run(args: &TestArgs) -> Result<()> {
    let root = workspace::root();
    // The style checks first, so that a style error fails at once.
    process::run(Command::new("cargo").args(["fmt", "--all", "--check"]).current_dir(&root))
        .context("the code is not formatted as rustfmt.toml says: run `cargo fmt --all`")?;
    process::run(
        Command::new("cargo")
            .args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])
            .current_dir(&root),
    )
    .context("clippy found warnings")?;
    println!("test: cargo fmt and cargo clippy found nothing");
    Venv::ensure(&root)?;
    let browser = Browser::ensure()?;
    // The end-to-end tests deploy the real Lambda artifacts.
    ops::build::build(&Console::new(), false)?;
    let built = hashes(&root)?;

    // The end-to-end tests run the deployer as a program (e.g. to kill it mid-deploy); this
    // is the binary `cargo xtask` just built.
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    process::run(
        Command::new("cargo")
            .args(["test", "--workspace", "--locked", "--no-fail-fast"])
            .args(&args.cargo_args)
            .env("XTASK_BIN", &xtask)
            .envs(browser.env())
            .current_dir(&root),
    )?;
    // The deployer's end-to-end suites once more, against the second emulator.
    let mut second = Command::new("cargo");
    second.args(["test", "--locked", "--no-fail-fast", "--package", "e2e"]);
    for suite in SECOND_EMULATOR_SUITES {
        second.args(["--test", suite]);
    }
    process::run(
        second.args(&args.cargo_args).env("XTASK_BIN", &xtask).env("E2E_EMULATOR", "ministack").current_dir(&root),
    )?;
    println!("test: the deployer's suites passed on moto and on MiniStack");

    if args.skip_reproducibility {
        println!("test: reproducible-build check skipped");
    } else {
        check_reproducible(&root, &built)?;
    }
    println!("test: all checks passed");
    Ok(())
}

/// Throws away the Lambdas' compiled code, builds them again from scratch, and requires
/// zips byte-identical to the `first` build's.
fn check_reproducible(root: &std::path::Path, first: &BTreeMap<String, String>) -> Result<()> {
    let mut clean = Command::new("cargo");
    clean.args(["clean", "--release", "--target", Arch::X86_64.rust_target()]).current_dir(root);
    for function in crate::functions::FUNCTIONS {
        clean.args(["--package", function.name]);
    }
    clean.args(["--package", "api-common"]);
    process::run(&mut clean)?;
    ops::build::build(&Console::new(), true)?;
    let second = hashes(root)?;
    if *first != second {
        bail!("release builds are not reproducible: first build {first:#?}, second build {second:#?}");
    }
    println!("test: rebuilt from scratch, {} zips are byte-identical", second.len());
    Ok(())
}

fn hashes(root: &std::path::Path) -> Result<BTreeMap<String, String>> {
    let manifest = Manifest::load(root)?.context("the build wrote no manifest")?;
    Ok(manifest
        .functions
        .into_iter()
        .flat_map(|(function, by_arch)| {
            by_arch.into_iter().map(move |(arch, artifact)| (format!("{function}/{arch}"), artifact.sha256_hex))
        })
        .collect())
}
