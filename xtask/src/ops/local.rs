//! The local cloud as the operations use it: starting it, and starting it on demand for an
//! environment whose endpoint is on this machine.

use anyhow::Result;

use super::ui::Ui;
use crate::local::cloud::{self, Status};
use crate::local::layout::LocalConfig;

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
