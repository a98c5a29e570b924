//! Build: release-build every Lambda with cargo-lambda, package deterministic zips, and write
//! `target/lambda/manifest.json`. Does nothing when the inputs have not changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::ui::Ui;
use crate::arch::{self, Arch};
use crate::artifact;
use crate::fingerprint;
use crate::functions::FUNCTIONS;
use crate::manifest::{Manifest, FORMAT_VERSION};
use crate::process;
use crate::venv::Venv;
use crate::workspace;

/// Builds every function for every installed Lambda target, unless the existing build is of
/// the same inputs (`force` rebuilds anyway). Returns the manifest of the build.
pub fn build(ui: &dyn Ui, force: bool) -> Result<Manifest> {
    let started = Instant::now();
    let root = workspace::root();

    let rustc_version = process::capture(Command::new("rustc").arg("-V").current_dir(&root))
        .context("could not ask rustc for its version")?;
    let fingerprint = fingerprint::compute(&root, &rustc_version)?;
    let installed = arch::installed_targets().context("could not list the installed Rust targets")?;
    let (arches, missing) = arch::partition(&installed);
    if arches.is_empty() {
        bail!("no Lambda target is installed; run `rustup target add {}`", Arch::X86_64.rust_target());
    }

    if !force {
        if let Some(manifest) = up_to_date(&root, &fingerprint, &arches) {
            ui.say(&format!("build: up to date (fingerprint {})", short(&fingerprint)));
            ui.out(&summary(&manifest));
            super::local::trust_built_code(&manifest);
            tracing::debug!("checked in {:.2?}", started.elapsed());
            return Ok(manifest);
        }
    }

    let building = arches.iter().map(|a| a.lambda_name()).collect::<Vec<_>>().join(" and ");
    for arch in &missing {
        let target = arch.rust_target();
        ui.say(&format!(
            "{arch}: target {target} is not installed (rustup target add {target}); building {building} only"
        ));
    }

    let venv = Venv::ensure(&root)?;
    let rustflags = rustflags(&root)?;
    let lambda_dir = root.join("target").join("lambda");

    let mut functions: BTreeMap<String, BTreeMap<Arch, _>> = BTreeMap::new();
    for &arch in &arches {
        let arch_started = Instant::now();
        cargo_lambda_build(&venv, &root, arch, &rustflags)?;
        // cargo-lambda writes target/lambda/<bin>/bootstrap for every arch; zip it before the
        // next arch's build overwrites it.
        for function in FUNCTIONS {
            let bootstrap = bootstrap_path(&root, function.name);
            let zip = lambda_dir.join(arch.lambda_name()).join(format!("{}.zip", function.name));
            let artifact = artifact::package(&root, arch, &bootstrap, &zip)?;
            functions.entry(function.name.to_string()).or_default().insert(arch, artifact);
        }
        ui.say(&format!("build: {arch} built in {:.0?}", arch_started.elapsed()));
    }

    let manifest = Manifest { format_version: FORMAT_VERSION, fingerprint, functions };
    manifest.save(&root)?;
    super::local::trust_built_code(&manifest);
    ui.say(&format!(
        "build: wrote {} (fingerprint {}) in {:.0?}",
        workspace::relative(&root, &Manifest::path(&root)),
        short(&manifest.fingerprint),
        started.elapsed()
    ));
    ui.out(&summary(&manifest));
    Ok(manifest)
}

/// The existing manifest, if it was built from these exact inputs for these arches and every zip
/// it lists is still on disk with the recorded digest.
fn up_to_date(root: &Path, fingerprint: &str, arches: &[Arch]) -> Option<Manifest> {
    let manifest = match Manifest::load(root) {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("ignoring the existing manifest: {e:#}");
            return None;
        }
    };
    let wanted_functions: BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    let wanted_arches: BTreeSet<Arch> = arches.iter().copied().collect();
    let fresh = manifest.format_version == FORMAT_VERSION
        && manifest.fingerprint == fingerprint
        && manifest.functions.keys().map(String::as_str).collect::<BTreeSet<_>>() == wanted_functions
        && manifest.functions.values().all(|by_arch| by_arch.keys().copied().collect::<BTreeSet<_>>() == wanted_arches)
        && manifest.artifacts().all(|(_, _, a)| artifact::matches_digest(&root.join(&a.zip_path), &a.sha256_hex));
    fresh.then_some(manifest)
}

/// Remaps the machine-specific source paths so binaries are the same on every machine.
///
/// These are the *only* target rustflags: cargo-lambda 1.9.2 passes
/// `--config build.rustflags=["-C", "target-cpu=haswell"]` (`neoverse-n1` on arm64), and Cargo
/// ignores `build.rustflags` whenever `RUSTFLAGS` is set, so the binaries are built for the
/// baseline CPU of each architecture. (cargo-lambda adds no `profile.release.*` overrides here
/// because the workspace's release profile sets strip, lto, codegen-units and panic itself.)
fn rustflags(root: &Path) -> Result<String> {
    let cargo_home = workspace::cargo_home().context("could not locate CARGO_HOME")?;
    let flags =
        format!("--remap-path-prefix={}=/cargo --remap-path-prefix={}=/build", cargo_home.display(), root.display());
    // RUSTFLAGS is split on whitespace.
    if [&cargo_home, root].iter().any(|p| p.to_string_lossy().contains(char::is_whitespace)) {
        bail!("cannot remap paths containing whitespace in RUSTFLAGS: {flags}");
    }
    Ok(flags)
}

/// One release build of every function for `arch`. Never any other profile.
fn cargo_lambda_build(venv: &Venv, root: &Path, arch: Arch, rustflags: &str) -> Result<()> {
    let mut cmd = Command::new(venv.bin("cargo-lambda"));
    cmd.args(["lambda", "build", "--release", "--locked", "--target", arch.rust_target()]);
    for function in FUNCTIONS {
        cmd.args(["--package", function.name]);
    }
    cmd.current_dir(root)
        .env("PATH", venv.path_env().context("venv path is not usable in PATH")?)
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", root.join("target"))
        // Either would silently change what gets built.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_LAMBDA_COMPILER");
    process::run(&mut cmd).with_context(|| format!("release build for {arch} failed"))
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The table of what was built: sizes and hashes.
fn summary(manifest: &Manifest) -> String {
    let mut out = String::new();
    let header = ["function", "arch", "zipped", "unzipped", "sha256"].map(String::from);
    let rows: Vec<[String; 5]> = manifest
        .artifacts()
        .map(|(name, arch, a)| {
            [
                name.to_string(),
                arch.to_string(),
                mib(a.zipped_bytes),
                mib(a.unzipped_bytes),
                short(&a.sha256_hex).to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| match i {
                2 | 3 => format!("{cell:>w$}"),
                _ => format!("{cell:<w$}"),
            })
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Where cargo-lambda leaves the bootstrap of `function`.
fn bootstrap_path(root: &Path, function: &str) -> PathBuf {
    root.join("target").join("lambda").join(function).join("bootstrap")
}
