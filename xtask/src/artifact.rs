//! Deterministic Lambda deployment zips and their digests.
//!
//! The same `bootstrap` bytes always give the same zip bytes: one entry named `bootstrap`,
//! mode 0755, timestamp 1980-01-01 00:00:00, Deflate at a fixed level, no extra fields.

use std::fs;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::arch::Arch;
use crate::manifest::Artifact;
use crate::workspace;

/// The single entry Lambda's `provided.*` runtimes execute.
pub const ENTRY_NAME: &str = "bootstrap";
/// rwxr-xr-x
pub const ENTRY_MODE: u32 = 0o755;
/// flate2 (miniz_oxide) level 9; levels above 9 would switch to the much slower zopfli.
pub const DEFLATE_LEVEL: i64 = 9;

#[derive(Debug, Error)]
pub enum ArtifactError {
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
    #[error("could not zip {path}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path} is not an ELF binary for {arch} (e_machine {found:?})")]
    WrongArch { path: PathBuf, arch: Arch, found: Option<u16> },
}

/// The fixed zip timestamp: 1980-01-01 00:00:00, the earliest a zip (DOS) time can be.
pub fn fixed_timestamp() -> DateTime {
    DateTime::default()
}

fn entry_options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        .last_modified_time(fixed_timestamp())
        .unix_permissions(ENTRY_MODE)
        .large_file(false)
}

/// Zips `bootstrap` bytes into a deterministic Lambda deployment package.
pub fn zip_bootstrap(bootstrap: &[u8]) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(ENTRY_NAME, entry_options())?;
    zip.write_all(bootstrap)?;
    Ok(zip.finish()?.into_inner())
}

/// Hex SHA-256 digest and base64 of the raw digest (Lambda's `CodeSha256`).
pub fn sha256(bytes: &[u8]) -> (String, String) {
    let digest = Sha256::digest(bytes);
    (hex::encode(digest), base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The ELF `e_machine` field, or `None` when `bytes` is not a little-endian ELF file.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return None;
    }
    Some(u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// Zips the `bootstrap` at `bootstrap_path` into `zip_path` (atomically) and describes it.
/// `root` is the workspace root the manifest's paths are relative to.
pub fn package(root: &Path, arch: Arch, bootstrap_path: &Path, zip_path: &Path) -> Result<Artifact, ArtifactError> {
    let bootstrap = fs::read(bootstrap_path)
        .map_err(|source| ArtifactError::Read { path: bootstrap_path.to_path_buf(), source })?;
    let machine = elf_machine(&bootstrap);
    if machine != Some(arch.elf_machine()) {
        return Err(ArtifactError::WrongArch { path: bootstrap_path.to_path_buf(), arch, found: machine });
    }
    let zipped = zip_bootstrap(&bootstrap)
        .map_err(|source| ArtifactError::Zip { path: bootstrap_path.to_path_buf(), source })?;
    workspace::write_atomic(zip_path, &zipped)
        .map_err(|source| ArtifactError::Write { path: zip_path.to_path_buf(), source })?;
    let (sha256_hex, sha256_base64) = sha256(&zipped);
    Ok(Artifact {
        zip_path: workspace::relative(root, zip_path),
        zipped_bytes: zipped.len() as u64,
        unzipped_bytes: bootstrap.len() as u64,
        sha256_hex,
        sha256_base64,
    })
}

/// Whether the file at `path` exists and has SHA-256 `sha256_hex`.
pub fn matches_digest(path: &Path, sha256_hex: &str) -> bool {
    match fs::read(path) {
        Ok(bytes) => sha256(&bytes).0 == sha256_hex,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use zip::ZipArchive;

    fn sample_binary() -> Vec<u8> {
        // Compressible and not: a little of everything.
        let mut bytes = b"\x7fELF".to_vec();
        bytes.extend((0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        bytes.extend(std::iter::repeat_n(0u8, 10_000));
        bytes
    }

    #[test]
    fn zipping_the_same_bytes_twice_gives_identical_zips() {
        let bin = sample_binary();
        let first = zip_bootstrap(&bin).unwrap();
        let second = zip_bootstrap(&bin).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn zip_has_one_bootstrap_entry_with_mode_0755_fixed_time_and_no_extra_fields() {
        let bin = sample_binary();
        let zipped = zip_bootstrap(&bin).unwrap();
        let mut archive = ZipArchive::new(Cursor::new(zipped)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert!(entry.is_file());
        assert_eq!(entry.unix_mode().unwrap() & 0o7777, 0o755);
        assert_eq!(entry.compression(), CompressionMethod::Deflated);
        let time = entry.last_modified().unwrap();
        assert_eq!(
            (time.year(), time.month(), time.day(), time.hour(), time.minute(), time.second()),
            (1980, 1, 1, 0, 0, 0)
        );
        assert!(entry.extra_data().is_none_or(<[u8]>::is_empty));
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        assert_eq!(contents, bin);
    }

    #[test]
    fn sha256_base64_is_base64_of_the_raw_digest() {
        let (hex_digest, b64) = sha256(b"abc");
        assert_eq!(hex_digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let raw = base64::engine::general_purpose::STANDARD.decode(&b64).unwrap();
        assert_eq!(hex::encode(raw), hex_digest);
        assert_eq!(b64, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[test]
    fn elf_machine_reads_x86_64_and_rejects_non_elf() {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[5] = 1;
        header[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert_eq!(elf_machine(&header), Some(Arch::X86_64.elf_machine()));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }
}
