//! The build fingerprint: one SHA-256 over everything that decides what the Lambda zips contain.
//!
//! Inputs, hashed in sorted order of their `/`-separated workspace-relative paths:
//! `Cargo.lock`, every `Cargo.toml` in the workspace, `.cargo/config.toml`, every file under
//! `lambdas/` (except any `target` directory) and `xtask/python-requirements.txt`; then the
//! toolchain's `rustc -V`. Missing optional inputs (e.g. no `.cargo/config.toml`) are skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use walkdir::WalkDir;

use crate::venv::REQUIREMENTS;
use crate::workspace;

/// Single files that are inputs when present.
const FILES: &[&str] = &["Cargo.lock", ".cargo/config.toml", REQUIREMENTS];
/// Directories all of whose files are inputs.
const TREES: &[&str] = &["lambdas"];
/// Never descended into, anywhere.
const SKIP_DIRS: &[&str] = &["target", ".git", ".venv", "node_modules"];

#[derive(Debug, Error)]
pub enum FingerprintError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not walk {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

/// The input files of the workspace at `root`: relative path → absolute path, sorted.
pub fn inputs(root: &Path) -> Result<BTreeMap<String, PathBuf>, FingerprintError> {
    let mut files = BTreeMap::new();
    let mut add = |path: PathBuf| {
        files.insert(workspace::relative(root, &path), path);
    };

    for rel in FILES {
        let path = root.join(rel);
        if path.is_file() {
            add(path);
        }
    }
    for tree in TREES {
        let dir = root.join(tree);
        if dir.is_dir() {
            for path in walk_files(&dir)? {
                add(path);
            }
        }
    }
    for path in walk_files(root)? {
        if path.file_name().is_some_and(|n| n == "Cargo.toml") {
            add(path);
        }
    }
    Ok(files)
}

/// Regular files under `dir`, skipping [`SKIP_DIRS`] and hidden directories.
fn walk_files(dir: &Path) -> Result<Vec<PathBuf>, FingerprintError> {
    let walker = WalkDir::new(dir).sort_by_file_name().into_iter().filter_entry(|e| {
        e.depth() == 0
            || !e.file_type().is_dir()
            || e.file_name().to_str().is_some_and(|n| !n.starts_with('.') && !SKIP_DIRS.contains(&n))
    });
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|source| FingerprintError::Walk { path: dir.to_path_buf(), source })?;
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

/// SHA-256 (hex) over the inputs of the workspace at `root` and the `rustc -V` line.
pub fn compute(root: &Path, rustc_version: &str) -> Result<String, FingerprintError> {
    let mut hasher = Sha256::new();
    // Length-prefix every field so no two different input sets can hash the same stream.
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (rel, path) in inputs(root)? {
        let contents = fs::read(&path).map_err(|source| FingerprintError::Read { path: path.clone(), source })?;
        field(rel.as_bytes());
        field(&contents);
    }
    field(b"rustc -V");
    field(rustc_version.trim().as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch workspace under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-fingerprint-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let scratch = Scratch(dir);
            for (rel, text) in [
                ("Cargo.toml", "[workspace]\n"),
                ("Cargo.lock", "version = 4\n"),
                (".cargo/config.toml", "[alias]\n"),
                ("xtask/python-requirements.txt", "cargo-lambda==1.9.2\n"),
                ("xtask/Cargo.toml", "[package]\nname = \"xtask\"\n"),
                ("xtask/src/main.rs", "fn main() {}\n"),
                ("lambdas/analyze/Cargo.toml", "[package]\nname = \"analyze\"\n"),
                ("lambdas/analyze/src/main.rs", "fn main() {}\n"),
                ("README.md", "hello\n"),
            ] {
                scratch.write(rel, text);
            }
            scratch
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn fingerprint(&self) -> String {
            compute(&self.0, "rustc 1.95.0 (59807616e 2026-04-14)").unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn fingerprint_is_stable_when_nothing_changes() {
        let ws = Scratch::new();
        assert_eq!(ws.fingerprint(), ws.fingerprint());
    }

    #[test]
    fn fingerprint_changes_when_a_lambda_source_file_changes() {
        let ws = Scratch::new();
        let before = ws.fingerprint();
        ws.write("lambdas/analyze/src/main.rs", "fn main() { println!(); }\n");
        assert_ne!(ws.fingerprint(), before);
    }

    #[test]
    fn fingerprint_changes_when_a_lambda_file_is_added() {
        let ws = Scratch::new();
        let before = ws.fingerprint();
        ws.write("lambdas/analyze/src/extra.rs", "");
        assert_ne!(ws.fingerprint(), before);
    }

    #[test]
    fn fingerprint_changes_with_cargo_lock_manifests_config_requirements_and_rustc() {
        let ws = Scratch::new();
        let mut seen = vec![ws.fingerprint()];
        for rel in ["Cargo.lock", "xtask/Cargo.toml", ".cargo/config.toml", "xtask/python-requirements.txt"] {
            ws.write(rel, "changed\n");
            seen.push(ws.fingerprint());
        }
        seen.push(compute(&ws.0, "rustc 1.96.0").unwrap());
        let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "{seen:#?}");
    }

    #[test]
    fn fingerprint_ignores_files_outside_the_inputs() {
        let ws = Scratch::new();
        let before = ws.fingerprint();
        ws.write("README.md", "changed\n");
        ws.write("xtask/src/main.rs", "fn main() { changed(); }\n");
        ws.write("target/lambda/analyze/bootstrap", "binary");
        ws.write("lambdas/analyze/target/release/analyze", "binary");
        ws.write(".venv/bin/python", "#!");
        ws.write("target/nested/Cargo.toml", "[package]\n");
        assert_eq!(ws.fingerprint(), before);
    }

    #[test]
    fn inputs_are_sorted_relative_paths() {
        let ws = Scratch::new();
        let rels: Vec<String> = inputs(&ws.0).unwrap().into_keys().collect();
        assert_eq!(
            rels,
            [
                ".cargo/config.toml",
                "Cargo.lock",
                "Cargo.toml",
                "lambdas/analyze/Cargo.toml",
                "lambdas/analyze/src/main.rs",
                "xtask/Cargo.toml",
                "xtask/python-requirements.txt",
            ]
        );
    }
}
