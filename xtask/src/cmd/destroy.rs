//! `cargo xtask destroy --env E`: deletes everything the environment's state records, in
//! reverse dependency order, honouring `protect`. The state bucket and document remain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::deploy::{confirm, ensure_can_confirm, finish, parse_duration, run_plan};
use super::env_arg::EnvArg;
use crate::engine::apply::recover;
use crate::engine::plan::plan_destroy;
use crate::providers::replace_keys;
use crate::session::Session;
use crate::state::lock::{Lock, LockOptions};
use crate::state::writer::StateWriter;

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Destroy without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resource operations may run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for another run's lock instead of failing at once.
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
}

pub fn run(args: &DestroyArgs) -> Result<()> {
    super::runtime()?.block_on(async {
        let session = Session::open(&args.env.name).await?;
        let Some(state) = session.read_state().await? else {
            println!(
                "Nothing to destroy: environment `{}` has no state at {}.",
                args.env.name,
                session.state_location()
            );
            return Ok(());
        };
        // Refuse before taking the lock when protect forbids it.
        plan_destroy(&state.value, session.env.protect)?;
        if state.value.resources.is_empty() && state.value.pending.is_empty() {
            println!("Nothing to destroy: environment `{}` has no resources.", args.env.name);
            return Ok(());
        }
        // Refuse before taking the lock when there is no way to ask.
        ensure_can_confirm(args.yes, "destroy")?;
        let options = LockOptions::new("destroy").timeout(args.lock_timeout.unwrap_or(Duration::ZERO));
        let lock = Lock::acquire(session.store.clone(), &options).await?;
        let result = async {
            let mut writer = StateWriter::open(session.store.clone()).await?;
            let provider = Arc::new(session.provider(None));
            recover(provider.as_ref(), &mut writer, replace_keys).await?;
            let plan = plan_destroy(writer.state(), session.env.protect)?;
            print!("{plan}");
            if !plan.has_changes() {
                return Ok(());
            }
            confirm(args.yes, "destroy")?;
            let writer = Arc::new(tokio::sync::Mutex::new(writer));
            let report = run_plan(&plan, &[], provider, writer, args.parallelism, &lock).await?;
            finish(&report)
        }
        .await;
        let released = lock.release().await;
        result?;
        released?;
        Ok(())
    })
}
