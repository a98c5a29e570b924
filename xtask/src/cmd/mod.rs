//! One module per `cargo xtask` command. Each exposes its clap `Args` and a `run` that
//! parses them, calls an operation (see [`crate::ops`]) and prints its result; commands never
//! import each other. `flags` and `console` are what they share: common flags, and the
//! terminal as the operations' interface.

pub mod bench;
pub mod build;
pub mod console;
pub mod demo;
pub mod deploy;
pub mod destroy;
pub mod drift;
pub mod flags;
pub mod history;
pub mod local;
pub mod outputs;
pub mod plan;
pub mod promote;
pub mod rollback;
pub mod smoke_test;
pub mod test;
pub mod unlock;

/// The async runtime for commands that talk to AWS.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
