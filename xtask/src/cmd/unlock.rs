//! `cargo xtask unlock --env E --force <lock-id>`: clears a stuck lock.

use anyhow::Result;

use super::flags::EnvArg;
use crate::session::Session;
use crate::state::lock::force_unlock;

#[derive(Debug, Clone, clap::Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// The id of the lock to remove, as the error that named the holder printed it. Only
    /// that lock is removed, whoever holds it.
    #[arg(long = "force", value_name = "LOCK_ID")]
    pub lock_id: String,
}

pub fn run(args: &UnlockArgs) -> Result<()> {
    super::runtime()?.block_on(async {
        let session = Session::open(&args.env.name).await?;
        let removed = force_unlock(session.store.as_ref(), &args.lock_id).await?;
        println!(
            "Removed lock {} held by {} on {} (pid {}) for `{}` since {}.",
            removed.id, removed.who, removed.host, removed.pid, removed.operation, removed.started_at
        );
        Ok(())
    })
}
