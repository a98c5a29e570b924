//! `cargo xtask`: builds, packages and (later) deploys the image-analyzer Lambdas.

pub mod arch;
pub mod artifact;
pub mod aws;
pub mod bench;
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
pub mod process;
pub mod progress;
pub mod providers;
pub mod rollout;
pub mod session;
pub mod stack;
pub mod state;
pub mod venv;
pub mod workspace;
