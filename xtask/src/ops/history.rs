//! History: an environment's deployments as its state records them (see [`crate::history`]).

use anyhow::Result;

use crate::history::History;
use crate::session::Session;

/// Environment `env`'s history, and where its state lives.
pub async fn history(env: &str) -> Result<(History, String)> {
    let session = Session::open(env).await?;
    let state = session.read_state().await?.map(|versioned| versioned.value).unwrap_or_default();
    Ok((History::from_state(env, &state)?, session.state_location()))
}
