//! `cargo xtask`: builds, deploys and tests image-analyzer.
//!
//! Layers, from the top; each imports only those below it:
//! - [`cmd`]: one module per command; parses flags, runs an operation, prints its result;
//! - [`ops`]: the operations (build, deploy, destroy, smoke test, promote, rollback, ...);
//! - [`session`], [`stack`], [`functions`], [`config`]: an environment opened, and what it
//!   should contain;
//! - [`engine`] (plan and apply), [`state`] (the record in S3), [`providers`] (one per AWS
//!   service), [`history`] and [`drift`] (pure records and comparisons);
//! - [`local`]: the local cloud, and [`bench`]: the benchmark's pieces.

pub mod arch;
pub mod artifact;
pub mod aws;
pub mod bench;
pub mod browser;
pub mod calls;
pub mod cmd;
pub mod config;
pub mod drift;
pub mod engine;
pub mod fingerprint;
pub mod functions;
pub mod history;
pub mod local;
pub mod manifest;
pub mod ops;
pub mod process;
pub mod progress;
pub mod providers;
pub mod redact;
pub mod session;
pub mod stack;
pub mod state;
pub mod venv;
pub mod workspace;
