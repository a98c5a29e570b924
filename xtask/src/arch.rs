//! Lambda CPU architectures and the Rust targets that build them.

use std::collections::BTreeSet;
use std::fmt;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::process::{self, ProcessError};

/// A Lambda architecture. Serialized with Lambda's own names (`x86_64`, `arm64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// The name Lambda uses in `Architectures` (and the manifest/zip directory name).
    pub const fn lambda_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple (glibc, as Lambda's `provided.al2023` runtime expects).
    pub const fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// ELF `e_machine` of binaries for this architecture.
    pub const fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62, // EM_X86_64
            Arch::Arm64 => 183, // EM_AARCH64
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lambda_name())
    }
}

/// The Rust targets installed for the active toolchain, per `rustup target list --installed`.
pub fn installed_targets() -> Result<BTreeSet<String>, ProcessError> {
    let out = process::capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Splits [`Arch::ALL`] into (buildable, missing) given the installed targets.
pub fn partition(installed: &BTreeSet<String>) -> (Vec<Arch>, Vec<Arch>) {
    Arch::ALL.into_iter().partition(|arch| installed.contains(arch.rust_target()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_serializes_with_lambda_names() {
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), "\"x86_64\"");
        assert_eq!(serde_json::to_string(&Arch::Arm64).unwrap(), "\"arm64\"");
    }

    #[test]
    fn only_installed_targets_are_buildable() {
        let installed = BTreeSet::from(["x86_64-unknown-linux-gnu".to_string()]);
        let (build, missing) = partition(&installed);
        assert_eq!(build, [Arch::X86_64]);
        assert_eq!(missing, [Arch::Arm64]);
    }
}
