//! Counting the AWS API calls a command makes, in the SDK itself: an interceptor on every
//! client records each attempt (retries included) by service and operation.
//!
//! With `XTASK_CALL_LOG=<file>`, xtask writes the counts there as JSON when it exits, for
//! tests and benchmarks; `XTASK_LOG=debug` logs every call. With `XTASK_CALL_TRACE=<file>`
//! it also writes every call in order, each with the engine step that made it (see
//! [`in_step`]), so that a benchmark can weigh the dependency graph's paths in calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The environment variable naming the file the counts are written to at exit.
pub const CALL_LOG_ENV: &str = "XTASK_CALL_LOG";

/// The environment variable naming the file the ordered call trace is written to at exit.
pub const CALL_TRACE_ENV: &str = "XTASK_CALL_TRACE";

/// Service -> operation -> attempts.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// One attempt, as [`CALL_TRACE_ENV`] records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    /// The engine step (resource id) the call was made for; `None` outside the steps
    /// (state reads, the lock, history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Whether it wrote the state journal (see [`journaling`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub journal: bool,
    /// Microseconds since the process made its first call.
    pub at_us: u64,
}

static COUNTS: LazyLock<Mutex<Counts>> = LazyLock::new(Mutex::default);
static TRACE: LazyLock<Mutex<Vec<Call>>> = LazyLock::new(Mutex::default);
/// The trace is kept only when it is to be written: it grows with every call.
static TRACING: LazyLock<bool> = LazyLock::new(|| std::env::var_os(CALL_TRACE_ENV).is_some());
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

tokio::task_local! {
    static STEP: String;
    static JOURNAL: ();
}

/// Runs `work` with every AWS call it makes marked as a write of the state journal.
pub async fn journaling<F: Future>(work: F) -> F::Output {
    JOURNAL.scope((), work).await
}

/// Runs `work` with every AWS call it makes attributed to engine step `step`.
pub async fn in_step<F: Future>(step: &str, work: F) -> F::Output {
    STEP.scope(step.to_owned(), work).await
}

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
            *counts.entry(metadata.service().to_owned()).or_default().entry(metadata.name().to_owned()).or_default() +=
                1;
            drop(counts);
            if !*TRACING {
                return Ok(());
            }
            let call = Call {
                service: metadata.service().to_owned(),
                operation: metadata.name().to_owned(),
                step: STEP.try_with(Clone::clone).ok(),
                journal: JOURNAL.try_with(|_| ()).is_ok(),
                at_us: u64::try_from(EPOCH.elapsed().as_micros()).unwrap_or(u64::MAX),
            };
            TRACE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(call);
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

/// Every call made so far in this process, in order; empty unless [`CALL_TRACE_ENV`] is set.
pub fn trace() -> Vec<Call> {
    TRACE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Writes the counts to the file named by [`CALL_LOG_ENV`] and the trace to the one named by
/// [`CALL_TRACE_ENV`], for each that is set.
pub fn write_log() -> std::io::Result<()> {
    if let Some(path) = std::env::var_os(CALL_LOG_ENV) {
        let json = serde_json::to_string_pretty(&snapshot()).map_err(std::io::Error::other)?;
        std::fs::write(path, json)?;
    }
    if let Some(path) = std::env::var_os(CALL_TRACE_ENV) {
        let json = serde_json::to_string_pretty(&trace()).map_err(std::io::Error::other)?;
        std::fs::write(path, json)?;
    }
    Ok(())
}
