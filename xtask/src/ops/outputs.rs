//! What a deployed environment offers, from its state: its API's URL (where the local data
//! plane serves it, against the local cloud), its bucket, its functions and their code.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use crate::engine::resource::ResourceId;
use crate::functions::FUNCTIONS;
use crate::local::layout::{LocalConfig, Overrides};
use crate::session::Session;
use crate::state::StateFile;

/// An environment's outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outputs {
    pub environment: String,
    pub api_url: Option<String>,
    pub bucket: Option<String>,
    /// Function name -> its deployed name and code hash.
    pub functions: BTreeMap<String, FunctionOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionOutput {
    pub name: String,
    pub code_sha256: Option<String>,
}

fn output(state: &StateFile, id: &str, key: &str) -> Option<String> {
    match state.resources.get(&ResourceId::new(id))?.outputs.get(key)? {
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

impl Outputs {
    pub fn from_state(environment: &str, state: &StateFile) -> Self {
        let functions = FUNCTIONS
            .iter()
            .filter_map(|function| {
                let id = format!("function.{}", function.name);
                let name = output(state, &id, "name")?;
                Some((
                    function.name.to_owned(),
                    FunctionOutput { name, code_sha256: output(state, &id, "code_sha256") },
                ))
            })
            .collect();
        Self {
            environment: environment.to_owned(),
            api_url: output(state, "stage", "invoke_url").or_else(|| output(state, "api", "endpoint")),
            bucket: output(state, "bucket.uploads", "name"),
            functions,
        }
    }
}

impl std::fmt::Display for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let none = || "-".to_owned();
        writeln!(f, "api_url = {}", self.api_url.clone().unwrap_or_else(none))?;
        writeln!(f, "bucket  = {}", self.bucket.clone().unwrap_or_else(none))?;
        for (function, output) in &self.functions {
            writeln!(
                f,
                "function.{function} = {} (code {})",
                output.name,
                output.code_sha256.clone().unwrap_or_else(none)
            )?;
        }
        Ok(())
    }
}

/// The URL clients call for an environment's API. Against an emulator, that is where the
/// local data plane serves the deployed API; against AWS, the stage's invoke URL.
pub fn api_url(session: &Session, state: &StateFile) -> Result<String> {
    let api_id = output(state, "api", "id").context("the environment's state records no API; deploy it first")?;
    let local = crate::aws::endpoint(&session.env).is_some_and(|endpoint| crate::aws::is_local_endpoint(&endpoint));
    if !local {
        return Outputs::from_state(&session.env.name, state)
            .api_url
            .context("the environment's state records no API URL");
    }
    let served = LocalConfig::load(&crate::workspace::root(), &Overrides::default())?.state_dir;
    // The data plane polls the emulator; give it a moment to pick up a fresh deploy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(api) = served.served_apis()?.get(&api_id) {
            return Ok(api.url.trim_end_matches('/').to_owned());
        }
        let running = matches!(served.dataplane_pid().liveness()?, crate::local::procs::Liveness::Running(_));
        if !running || std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the local data plane does not serve API {api_id} (see {}); start it with `cargo xtask local up`",
                served.apis_json().display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The outputs of environment `env`, with the URL clients call.
pub async fn outputs(env: &str) -> Result<Outputs> {
    let session = Session::open(env).await?;
    let state = session
        .read_state()
        .await?
        .with_context(|| format!("environment `{env}` has never been deployed ({})", session.state_location()))?
        .value;
    let mut outputs = Outputs::from_state(env, &state);
    if let Ok(url) = api_url(&session, &state) {
        outputs.api_url = Some(url);
    }
    Ok(outputs)
}
