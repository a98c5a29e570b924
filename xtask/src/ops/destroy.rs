//! Destroy: delete everything an environment's state records, in reverse dependency order,
//! honouring `protect`, through apply-and-record (see [`super::apply`]), so that the destroy
//! is a deployment in the history. The state bucket and document remain.

use std::time::Duration;

use anyhow::Result;

use super::apply::{self, ApplyOptions, Desired, Outcome, Record};
use super::ui::{ensure_can_confirm, Ui};
use crate::engine::plan::plan_destroy;
use crate::history::Origin;
use crate::session::Session;

/// How to destroy.
#[derive(Debug, Clone)]
pub struct DestroyOptions {
    pub env: String,
    pub yes: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
}

/// Destroys `options.env`. `Outcome::NoChanges` when there was nothing to destroy.
pub async fn destroy(ui: &dyn Ui, options: &DestroyOptions) -> Result<Outcome> {
    let mut session = Session::open(&options.env).await?;
    let Some(state) = session.read_state().await? else {
        ui.say(&format!(
            "Nothing to destroy: environment `{}` has no state at {}.",
            options.env,
            session.state_location()
        ));
        return Ok(Outcome::NoChanges);
    };
    // Refuse before taking the lock when protect forbids it.
    plan_destroy(&state.value, session.env.protect)?;
    if state.value.resources.is_empty() && state.value.pending.is_empty() {
        ui.say(&format!("Nothing to destroy: environment `{}` has no resources.", options.env));
        return Ok(Outcome::NoChanges);
    }
    // Refuse before taking the lock when there is no way to ask.
    ensure_can_confirm(ui, options.yes, "destroy")?;
    let account_id = session.account_id(&state.value).await?;
    let apply_options = ApplyOptions {
        operation: "destroy",
        yes: options.yes,
        parallelism: options.parallelism,
        lock_timeout: options.lock_timeout,
        refresh: false,
    };
    let record = Record {
        // What was removed is filled in from the plan made under the lock.
        origin: Origin::Destroy { removed: Vec::new() },
        git: None,
        functions: Some(Default::default()),
        config_digest: apply::config_digest(&session.env)?,
        warning: None,
    };
    let provider = session.provider(None);
    apply::apply_and_record(ui, &session, &account_id, Desired::Nothing, provider, &apply_options, record).await
}
