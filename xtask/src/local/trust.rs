//! The code the local cloud may run: a record, kept in the checkout
//! (`target/local/trusted-code`) and never in the emulator, of every code hash this checkout's
//! xtask built, deployed, promoted or rolled back to. Every local cloud of the checkout reads
//! it, whatever its state directory.
//!
//! The emulator has no authentication: any local process can create or update a function
//! there. The data plane runs a function only when the `CodeSha256` the emulator reports is in
//! this record (and the bytes it fetches are checked against that hash), so code put there
//! behind the tool's back is refused, with a log line that says why, and never run.
//!
//! Each line is `<sha256 base64> <function> <how> <time>`. Lines are only appended, each
//! batch in one write.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// How a code hash came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Built,
    /// Deployed, promoted or rolled back to: what the tool put into the cloud.
    Deployed,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Built => "built",
            Reason::Deployed => "deployed",
        }
    }
}

/// The checkout's record, under its workspace root.
pub fn file(root: &Path) -> PathBuf {
    root.join("target/local/trusted-code")
}

/// Adds `(function, code_sha256)` pairs to the record at `path`; pairs already there are not
/// written again.
pub fn record<'a>(path: &Path, code: impl IntoIterator<Item = (&'a str, &'a str)>, reason: Reason) -> Result<()> {
    let mut known: HashSet<(String, String)> = entries(path)?.into_iter().collect();
    let time = crate::state::lock::now_rfc3339();
    let mut lines = String::new();
    for (function, sha256) in code {
        if is_hash(sha256) && known.insert((function.to_owned(), sha256.to_owned())) {
            lines.push_str(&format!("{sha256} {function} {} {time}\n", reason.as_str()));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    out.write_all(lines.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The trusted code hashes of the record at `path` (none when there is no record).
pub fn hashes(path: &Path) -> Result<HashSet<String>> {
    Ok(entries(path)?.into_iter().map(|(_, sha256)| sha256).collect())
}

/// `(function, sha256)` of every line.
fn entries(path: &Path) -> Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (sha256, function) = (fields.next()?, fields.next()?);
            is_hash(sha256).then(|| (function.to_owned(), sha256.to_owned()))
        })
        .collect())
}

/// Base64 of a SHA-256: 44 characters, as Lambda reports `CodeSha256`.
fn is_hash(text: &str) -> bool {
    text.len() == 44 && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
    const B: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    #[test]
    fn recorded_code_is_trusted_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path());
        assert!(hashes(&path).unwrap().is_empty(), "no record trusts nothing");
        record(&path, [("analyze", A)], Reason::Built).unwrap();
        record(&path, [("analyze", A), ("web", B), ("web", B)], Reason::Deployed).unwrap();
        let trusted = hashes(&path).unwrap();
        assert_eq!(trusted, HashSet::from([A.to_owned(), B.to_owned()]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "a pair already recorded is not written again:\n{text}");
        assert!(text.lines().next().unwrap().starts_with(&format!("{A} analyze built ")), "{text}");
    }

    #[test]
    fn lines_that_are_not_records_trust_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted-code");
        std::fs::write(&path, "garbage\n* analyze deployed\n\nabc web deployed\n").unwrap();
        assert!(hashes(&path).unwrap().is_empty());
        record(&path, [("analyze", "not a hash")], Reason::Deployed).unwrap();
        assert!(hashes(&path).unwrap().is_empty());
    }
}
