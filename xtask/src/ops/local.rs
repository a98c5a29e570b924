//! The local cloud as the operations use it: starting it, and starting it on demand for an
//! environment whose endpoint is on this machine.

use anyhow::Result;

use super::ui::Ui;
use crate::config::Environment;
use crate::local::cloud::{self, Status};
use crate::local::layout::{LocalConfig, Overrides};
use crate::local::trust;

/// Starts what of the local cloud does not run yet, waits until it is healthy, and says what
/// runs, which APIs it serves, and where the logs are.
pub fn up(ui: &dyn Ui, config: &LocalConfig) -> Result<()> {
    for process in cloud::up(config)? {
        ui.say(&process.to_string());
    }
    let status = cloud::status(config)?;
    if status.apis.is_empty() {
        ui.say(&format!(
            "\nNo API is deployed yet: `cargo xtask deploy --env local` deploys one, served at {}.",
            config.api_url()
        ));
    } else {
        // Only the APIs part of the status.
        ui.out(&format!("\n{}", Status { processes: Vec::new(), apis: status.apis }));
    }
    ui.say(&format!("Logs: {}", config.state_dir.dir().display()));
    Ok(())
}

/// When environment `name`'s endpoint is on this machine and nothing listens there, starts
/// the local cloud, and says so.
pub fn ensure_for_environment(ui: &dyn Ui, name: &str) -> Result<()> {
    for note in cloud::ensure_for_environment(name)? {
        ui.note(&note);
    }
    Ok(())
}

/// When `env`'s endpoint is on this machine, adds `code` (`(function, code_sha256)` pairs) to
/// the checkout's record of the code its local clouds may run (see [`crate::local::trust`]),
/// before the code is deployed: their data planes run nothing else.
pub fn trust_deployed_code<'a>(env: &Environment, code: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
    if !crate::aws::endpoint(env).is_some_and(|endpoint| crate::aws::is_local_endpoint(&endpoint)) {
        return Ok(());
    }
    trust::record(&trust::file(&crate::workspace::root()), code, trust::Reason::Deployed)
}

/// Adds the code of a build to the checkout's record of the code its local clouds may run.
/// Code that cannot be recorded is only warned about: the build itself stands, and a deploy
/// records its code again.
pub fn trust_built_code(manifest: &crate::manifest::Manifest) {
    let code = manifest.artifacts().map(|(function, _, artifact)| (function, artifact.sha256_base64.as_str()));
    if let Err(error) = trust::record(&trust::file(&crate::workspace::root()), code, trust::Reason::Built) {
        tracing::warn!("the build's code is not recorded as the local cloud's to run: {error:#}");
    }
}

/// When `env`'s endpoint is on this machine, asks the local data plane serving it to re-read
/// the deployed configuration, so that what a command just changed is served when it
/// returns rather than at the next poll. A data plane that cannot be asked is only noted:
/// it catches up by itself within its poll interval.
pub async fn refresh_served(ui: &dyn Ui, env: &Environment) {
    let Some(endpoint) = crate::aws::endpoint(env).filter(|endpoint| crate::aws::is_local_endpoint(endpoint)) else {
        return;
    };
    let overrides = Overrides { endpoint: Some(endpoint.clone()), ..Overrides::default() };
    let refreshed = tokio::task::spawn_blocking(move || {
        let config = LocalConfig::load(&crate::workspace::root(), &overrides)?;
        cloud::refresh_dataplane(&config, &endpoint)
    })
    .await;
    match refreshed {
        Ok(Ok(true)) => tracing::debug!("the local data plane serves the new configuration"),
        Ok(Ok(false)) => tracing::debug!("no local data plane serves this emulator"),
        Ok(Err(error)) => ui.note(&format!("warning: the local data plane did not refresh: {error:#}")),
        Err(error) => ui.note(&format!("warning: the local data plane did not refresh: {error}")),
    }
}
