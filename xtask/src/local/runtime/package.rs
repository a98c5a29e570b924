//! Deployment packages: the `bootstrap` of a function's zip, read or unpacked after its
//! SHA-256 is checked against the code hash Lambda reports.

use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a deployment package could not be turned into a bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("the package's CodeSha256 is {actual}, expected {expected}: refusing to run it")]
    DigestMismatch { expected: String, actual: String },
    #[error("the package is not a readable zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the package has no `bootstrap` entry")]
    NoBootstrap,
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The `bootstrap` of a deployment package, read into memory.
pub fn read_bootstrap(zip_bytes: &[u8]) -> Result<Vec<u8>, ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))?;
    let mut entry = match archive.by_name("bootstrap") {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Err(ExtractError::NoBootstrap),
        Err(error) => return Err(error.into()),
    };
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|e| ExtractError::Zip(e.into()))?;
    Ok(bytes)
}

/// Extracts the `bootstrap` of a deployment package to `<dir>/<sha256 hex>/bootstrap`
/// (mode 0755) and returns its path, after checking that the zip's SHA-256 is
/// `expected_code_sha256` (base64, as Lambda reports `CodeSha256`). Idempotent: an existing
/// extraction is reused; a new one is written to a temporary file and renamed into place.
pub fn extract_bootstrap(zip_bytes: &[u8], expected_code_sha256: &str, dir: &Path) -> Result<PathBuf, ExtractError> {
    let digest = Sha256::digest(zip_bytes);
    let actual = base64::engine::general_purpose::STANDARD.encode(digest);
    if actual != expected_code_sha256.trim() {
        return Err(ExtractError::DigestMismatch { expected: expected_code_sha256.to_owned(), actual });
    }
    let target_dir = dir.join(hex::encode(digest));
    let target = target_dir.join("bootstrap");
    if target.is_file() {
        return Ok(target);
    }
    let bytes = read_bootstrap(zip_bytes)?;
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Write { path, source }
    };
    std::fs::create_dir_all(&target_dir).map_err(write_error(&target_dir))?;
    let temporary = target_dir.join(format!(".bootstrap.{}.tmp", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
        let mut file = options.open(&temporary).map_err(write_error(&temporary))?;
        file.write_all(&bytes).map_err(write_error(&temporary))?;
        file.sync_all().map_err(write_error(&temporary))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))
            .map_err(write_error(&temporary))?;
    }
    std::fs::rename(&temporary, &target).map_err(write_error(&target))?;
    Ok(target)
}
