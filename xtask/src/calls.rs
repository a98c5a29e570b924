//! Counting the AWS API calls a command makes, in the SDK itself: an interceptor on every
//! client records each attempt (retries included) by service and operation.
//!
//! With `XTASK_CALL_LOG=<file>`, xtask writes the counts there as JSON when it exits, for
//! tests and benchmarks; `XTASK_LOG=debug` logs every call.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The environment variable naming the file the counts are written to at exit.
pub const CALL_LOG_ENV: &str = "XTASK_CALL_LOG";

/// Service -> operation -> attempts.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

static COUNTS: LazyLock<Mutex<Counts>> = LazyLock::new(Mutex::default);

/// The interceptor every client of [`crate::aws::Clients`] carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallCounter;

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            tracing::debug!(service = metadata.service(), operation = metadata.name(), "AWS call");
            let mut counts = COUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *counts.entry(metadata.service().to_owned()).or_default().entry(metadata.name().to_owned()).or_default() += 1;
        }
        Ok(())
    }
}

/// The calls counted so far in this process.
pub fn snapshot() -> Counts {
    COUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// The total number of calls in `counts`.
pub fn total(counts: &Counts) -> u64 {
    counts.values().flat_map(BTreeMap::values).sum()
}

/// Writes the counts to the file named by [`CALL_LOG_ENV`], if it is set.
pub fn write_log() -> std::io::Result<()> {
    let Some(path) = std::env::var_os(CALL_LOG_ENV) else { return Ok(()) };
    let json = serde_json::to_string_pretty(&snapshot()).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}
