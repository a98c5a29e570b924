//! `target/lambda/manifest.json`: what `cargo xtask build` produced, for the deployer to read.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::arch::Arch;
use crate::workspace;

/// Bump when the manifest's shape or the zip format changes.
pub const FORMAT_VERSION: u32 = 1;
/// Relative to the workspace root.
pub const MANIFEST_PATH: &str = "target/lambda/manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// SHA-256 (hex) over the build inputs; see [`crate::fingerprint`].
    pub fingerprint: String,
    /// function name → architecture → zip.
    pub functions: BTreeMap<String, BTreeMap<Arch, Artifact>>,
}

/// One deployment zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Relative to the workspace root, `/`-separated.
    pub zip_path: String,
    pub zipped_bytes: u64,
    /// Size of the `bootstrap` binary inside.
    pub unzipped_bytes: u64,
    /// SHA-256 of the zip file, hex.
    pub sha256_hex: String,
    /// SHA-256 of the zip file, base64 of the raw digest: Lambda's `CodeSha256`.
    pub sha256_base64: String,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid build manifest")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Manifest {
    pub fn path(root: &Path) -> PathBuf {
        root.join(MANIFEST_PATH)
    }

    /// Reads the manifest; `Ok(None)` when there is none yet.
    pub fn load(root: &Path) -> Result<Option<Self>, ManifestError> {
        Self::read(&Self::path(root))
    }

    /// Reads a manifest from `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, ManifestError> {
        let path = path.to_path_buf();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ManifestError::Read { path, source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|source| ManifestError::Parse { path, source })
    }

    /// Writes the manifest as pretty JSON (deterministic: every map is a BTreeMap).
    pub fn save(&self, root: &Path) -> Result<(), ManifestError> {
        let path = Self::path(root);
        let mut text = serde_json::to_string_pretty(self).expect("manifest serializes");
        text.push('\n');
        workspace::write_atomic(&path, text.as_bytes()).map_err(|source| ManifestError::Write { path, source })
    }

    /// Every (function, arch, artifact), in order.
    pub fn artifacts(&self) -> impl Iterator<Item = (&str, Arch, &Artifact)> {
        self.functions.iter().flat_map(|(name, by_arch)| by_arch.iter().map(move |(arch, a)| (name.as_str(), *arch, a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_through_json_with_lambda_arch_names() {
        let artifact = Artifact {
            zip_path: "target/lambda/x86_64/analyze.zip".into(),
            zipped_bytes: 10,
            unzipped_bytes: 20,
            sha256_hex: "ab".into(),
            sha256_base64: "qw==".into(),
        };
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            fingerprint: "f".into(),
            functions: BTreeMap::from([("analyze".to_string(), BTreeMap::from([(Arch::X86_64, artifact)]))]),
        };
        let json = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(json.contains("\"x86_64\": {"), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
    }
}
