//! A Lambda Runtime API of our own, and a pool of function processes that run against it.
//!
//! [`Runtime::start`] serves the [Runtime API] on `127.0.0.1` (an ephemeral port); every
//! function process ("instance") gets its own path prefix, so one server tells them apart:
//! `AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:<port>/<instance-id>`. The Rust runtime client
//! (`lambda_runtime_api_client`) keeps a base path, but only when the value has a scheme:
//! `127.0.0.1:<port>/<id>` is not a valid `http::Uri` and the client would panic at start.
//!
//! [`Runtime::invoke`] runs one invocation of a [`FunctionSpec`] the way Lambda does:
//! - instances are pooled per function and code (`code_sha256`, bootstrap, environment,
//!   memory): a changed function gets new instances and the old ones are stopped (busy ones
//!   when their invocation ends);
//! - an idle instance is reused; concurrent invocations start more instances, up to
//!   [`RuntimeConfig::max_instances_per_function`]; further invocations wait for a free one;
//! - the function timeout runs from the moment the instance receives the event; when it
//!   passes, the instance is killed (SIGKILL) and the invocation is a [`InvokeError::Timeout`];
//! - a process that exits before its first `/next` is an [`InvokeError::InitError`], one
//!   that exits during an invocation is [`InvokeError::Crashed`]; either way the next
//!   invocation starts a fresh instance;
//! - the process environment is cleared and rebuilt: the function's variables,
//!   [`RuntimeConfig::extra_env`], Lambda's reserved variables, and `PATH` (see
//!   [`RuntimeConfig::inherit_env`]);
//! - stdout and stderr of every instance are appended, line by line and prefixed with the
//!   instance id, to the function's `log_file`, between lines that mark the instance's start
//!   and stop, with Lambda's `START`/`END`/`REPORT` lines around each invocation.
//!
//! [Runtime API]: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

mod api;
mod package;
mod pool;

use api::serve;
pub use package::{extract_bootstrap, read_bootstrap, ExtractError};
use pool::LogSink;

/// The Runtime API version prefix every runtime client uses.
pub const API_VERSION: &str = "2018-06-01";

/// Lambda's limit on a synchronous response payload (6 MB, as Lambda counts it).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// How many instances [`Runtime::cold_starts`] remembers.
const MAX_HISTORY: usize = 1000;

/// How many output lines of an instance are kept for error reports.
const TAIL_LINES: usize = 40;

/// How the runtime runs functions. [`RuntimeConfig::default`] is what `cargo xtask local`
/// uses unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `AWS_REGION` and `AWS_DEFAULT_REGION` of every function. Default `us-east-1`.
    pub region: String,
    /// At most this many instances of one function run at once; more concurrent invocations
    /// wait. Default 4.
    pub max_instances_per_function: usize,
    /// How long an invocation waits for a free instance before it is
    /// [`InvokeError::Unavailable`]. Default 30 s (API Gateway's integration limit).
    pub queue_timeout: Duration,
    /// At most this many invocations of one function wait for a free instance; one more is
    /// [`InvokeError::Throttled`] at once. Default 1024.
    pub max_queued_per_function: usize,
    /// How long a new instance may take to ask for its first event (Lambda's init phase
    /// limit). Default 10 s.
    pub init_timeout: Duration,
    /// Variables added to every function's environment after its own (so they win), e.g.
    /// `AWS_ENDPOINT_URL`, test credentials, `S3_FORCE_PATH_STYLE`. Lambda's reserved
    /// variables still win over these.
    pub extra_env: BTreeMap<String, String>,
    /// Variables of this process passed on to functions. Default `PATH` only: in particular
    /// not `HOME`, so a developer's `~/.aws` profile cannot leak into a function.
    pub inherit_env: Vec<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            max_instances_per_function: 4,
            queue_timeout: Duration::from_secs(30),
            max_queued_per_function: 1024,
            init_timeout: Duration::from_secs(10),
            extra_env: BTreeMap::new(),
            inherit_env: vec!["PATH".to_owned()],
        }
    }
}

/// A deployed function, as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// The function's ARN (`Lambda-Runtime-Invoked-Function-Arn`).
    pub arn: String,
    /// Lambda's `CodeSha256` (base64 of the zip's SHA-256). A new value means new instances.
    pub code_sha256: String,
    /// The extracted, executable bootstrap (see [`extract_bootstrap`]).
    pub bootstrap: PathBuf,
    /// The function's configured environment variables.
    pub environment: BTreeMap<String, String>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// The function timeout, counted from the moment an instance receives the event.
    pub timeout: Duration,
    /// Where the output of the function's instances is appended, e.g.
    /// `target/local/logs/<function>.log`.
    pub log_file: PathBuf,
    /// At most this many instances of the function run at once (its reserved concurrency);
    /// `None` for [`RuntimeConfig::max_instances_per_function`].
    pub max_instances: Option<usize>,
}

/// Why an invocation produced no response payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// No response within the function timeout (or, `during_init`, no first `/next` within
    /// [`RuntimeConfig::init_timeout`]); the instance was killed.
    Timeout { after: Duration, during_init: bool },
    /// The process exited while handling the invocation.
    Crashed { exit_code: Option<i32>, signal: Option<i32>, log_tail: String },
    /// The function reported an error through `/invocation/{id}/error`.
    FunctionError { error_type: String, error_message: String },
    /// The instance failed to initialize: it reported `/init/error`, or exited before it asked
    /// for its first event (`error_type` `Runtime.ExitError`).
    InitError { error_type: String, error_message: String, exit_code: Option<i32>, log_tail: String },
    /// The invocation could not be run: no free instance in time, the bootstrap cannot be
    /// started, the function is being stopped.
    Unavailable(String),
    /// Every instance the function may run is busy and its queue is full (Lambda's
    /// `TooManyRequestsException`).
    Throttled(String),
    /// The caller's deadline passed first. An invocation that had started goes on in the
    /// background to its own end, and its instance is then returned or killed.
    DeadlinePassed { after: Duration },
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Timeout { after, during_init } => {
                let phase = if *during_init { "INIT: " } else { "" };
                write!(f, "{phase}Task timed out after {:.2} seconds", after.as_secs_f64())
            }
            InvokeError::Crashed { exit_code, signal, log_tail } => write!(
                f,
                "Runtime exited during the invocation ({}){}",
                exit_text(*exit_code, *signal),
                tail_text(log_tail)
            ),
            InvokeError::FunctionError { error_type, error_message } => write!(f, "{error_type}: {error_message}"),
            InvokeError::InitError { error_type, error_message, log_tail, .. } => {
                write!(f, "{error_type}: {error_message}{}", tail_text(log_tail))
            }
            InvokeError::Unavailable(reason) => write!(f, "function unavailable: {reason}"),
            InvokeError::Throttled(reason) => write!(f, "Rate Exceeded: {reason}"),
            InvokeError::DeadlinePassed { after } => {
                write!(f, "no response within the caller's {:.2} seconds", after.as_secs_f64())
            }
        }
    }
}

impl std::error::Error for InvokeError {}

fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "exit status unknown".to_owned(),
    }
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- last output ---\n{tail}")
    }
}

impl InvokeError {
    /// The `errorType` Lambda's Invoke API would report for this error.
    pub fn error_type(&self) -> &str {
        match self {
            InvokeError::Timeout { .. } => "Sandbox.Timedout",
            InvokeError::Crashed { .. } => "Runtime.ExitError",
            InvokeError::FunctionError { error_type, .. } | InvokeError::InitError { error_type, .. } => error_type,
            InvokeError::Unavailable(_) => "ServiceException",
            InvokeError::Throttled(_) => "TooManyRequestsException",
            InvokeError::DeadlinePassed { .. } => "Client.Timeout",
        }
    }
}

/// One invocation, with what happened around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationOutcome {
    /// The request id the function saw (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// The instance that ran it, if one was found or started.
    pub instance_id: Option<String>,
    /// Whether the instance was started for this invocation.
    pub cold: bool,
    /// From the call to [`Runtime::invoke_traced`] to its result, waiting included.
    pub duration: Duration,
    /// The response payload, or why there is none.
    pub result: Result<Vec<u8>, InvokeError>,
}

/// The cold start of one instance: from process start to its first `/next` and to its first
/// response (`/response` or `/error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdStart {
    pub function: String,
    pub instance_id: String,
    pub code_sha256: String,
    pub started_at: SystemTime,
    pub to_first_next: Option<Duration>,
    pub to_first_response: Option<Duration>,
}

/// A live instance, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub function: String,
    pub code_sha256: String,
    pub pid: Option<u32>,
    pub busy: bool,
    pub invocations: u64,
    pub started_at: SystemTime,
}

/// The Runtime API server and the function instances. Dropping it kills every instance.
pub struct Runtime {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    config: RuntimeConfig,
    address: SocketAddr,
    /// Live instances by id: the server's routing table.
    instances: Mutex<HashMap<String, Arc<Instance>>>,
    /// The current pool of each function, by name.
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Every instance ever started, in order, for [`Runtime::cold_starts`].
    history: Mutex<Vec<Arc<Instance>>>,
    next_instance: AtomicU64,
    /// Set by [`Runtime::shutdown`].
    stopped: AtomicBool,
}

struct Pool {
    fingerprint: String,
    /// Instances it may run at once: the function's reserved concurrency, else the
    /// runtime's [`RuntimeConfig::max_instances_per_function`].
    cap: usize,
    permits: Arc<Semaphore>,
    /// Invocations waiting for a permit.
    queued: AtomicUsize,
    idle: Mutex<Vec<Arc<Instance>>>,
    retired: AtomicBool,
}

struct Instance {
    id: String,
    function: String,
    code_sha256: String,
    memory_mb: u32,
    started: Instant,
    started_at: SystemTime,
    pid: Mutex<Option<u32>>,
    events_tx: mpsc::Sender<Event>,
    events_rx: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    state: Mutex<InstanceState>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    log: Arc<LogSink>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Default)]
struct InstanceState {
    first_next: Option<Instant>,
    first_response: Option<Instant>,
    current: Option<InFlight>,
    init_error: Option<(String, String)>,
    invocations: u64,
    busy: bool,
}

struct InFlight {
    request_id: String,
    delivered: Option<oneshot::Sender<()>>,
    reply: Option<oneshot::Sender<Reply>>,
}

struct Event {
    request_id: String,
    payload: Bytes,
    timeout: Duration,
    arn: String,
    trace_id: String,
}

enum Reply {
    Response(Bytes),
    Error { error_type: String, error_message: String },
    InitError { error_type: String, error_message: String },
}

#[derive(Debug, Clone)]
struct ExitInfo {
    code: Option<i32>,
    signal: Option<i32>,
    killed: bool,
}

/// A place in a function's queue, left when dropped.
struct Queued<'a>(&'a Pool);

impl<'a> Queued<'a> {
    /// Joins `pool`'s queue unless `limit` invocations already wait.
    fn join(pool: &'a Pool, limit: usize) -> Option<Self> {
        pool.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(Self(pool))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a granted invocation did: where it ran, and its result.
struct Granted {
    instance_id: Option<String>,
    cold: bool,
    result: Result<Vec<u8>, InvokeError>,
}

/// What happened to an invocation on one instance.
enum RunResult {
    Done(Result<Vec<u8>, InvokeError>),
    /// The instance died (or could not take the event) before it received the event: safe to
    /// run the invocation elsewhere.
    NotDelivered(Result<Vec<u8>, InvokeError>),
}

impl Runtime {
    /// Starts the Runtime API on `127.0.0.1` with [`RuntimeConfig::default`]. Must be called
    /// inside a Tokio runtime.
    pub async fn start() -> io::Result<Runtime> {
        Self::start_with(RuntimeConfig::default()).await
    }

    /// Starts the Runtime API on `127.0.0.1` (an ephemeral port) with `config`.
    pub async fn start_with(config: RuntimeConfig) -> io::Result<Runtime> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            address,
            instances: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            history: Mutex::new(Vec::new()),
            next_instance: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
        });
        let server = tokio::spawn(serve(listener, Arc::downgrade(&shared)));
        Ok(Runtime { shared, server })
    }

    /// Where the Runtime API listens.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// The configuration the runtime was started with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Invokes `spec` with `payload` and returns the function's response payload.
    pub async fn invoke(&self, spec: &FunctionSpec, payload: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        self.invoke_traced(spec, payload).await.result
    }

    /// Invokes `spec` with `payload` and says which instance ran it, whether it was a cold
    /// start and how long it took.
    pub async fn invoke_traced(&self, spec: &FunctionSpec, payload: Vec<u8>) -> InvocationOutcome {
        self.invoke_until(spec, payload, None).await
    }

    /// Like [`Runtime::invoke_traced`], for a caller that waits until `deadline` at most (API
    /// Gateway's integration timeout), after which the outcome is
    /// [`InvokeError::DeadlinePassed`].
    ///
    /// Cancellation-safe: once a free instance is granted, the invocation runs in a task of
    /// its own, so neither the deadline nor a caller that goes away (its future dropped, its
    /// client disconnected) cuts it short. It ends as Lambda's would, with a response, an
    /// error, a crash or the function timeout, and its instance then goes back to the pool
    /// or is killed. An instance is granted only under the function's cap, and the grant is
    /// held until the instance is released, so the cap holds at every moment. A caller that
    /// goes away while queued leaves the queue.
    pub async fn invoke_until(
        &self,
        spec: &FunctionSpec,
        payload: Vec<u8>,
        deadline: Option<Instant>,
    ) -> InvocationOutcome {
        let begun = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut outcome = InvocationOutcome {
            request_id: request_id.clone(),
            instance_id: None,
            cold: false,
            duration: Duration::ZERO,
            result: Err(InvokeError::Unavailable("not run".into())),
        };
        let finish = |mut outcome: InvocationOutcome, result| {
            outcome.result = result;
            outcome.duration = begun.elapsed();
            outcome
        };
        if self.shared.stopped.load(Ordering::SeqCst) {
            return finish(outcome, Err(InvokeError::Unavailable("the local runtime is shut down".into())));
        }
        let config = &self.shared.config;
        if spec.max_instances == Some(0) {
            let reason = format!("{} has a reserved concurrency of 0", spec.name);
            return finish(outcome, Err(InvokeError::Throttled(reason)));
        }
        let pool = self.shared.pool_for(spec);
        let Some(queued) = Queued::join(&pool, config.max_queued_per_function) else {
            let reason = format!(
                "all {} instances of {} are busy and {} invocations wait",
                pool.cap, spec.name, config.max_queued_per_function
            );
            return finish(outcome, Err(InvokeError::Throttled(reason)));
        };
        let queue_deadline = deadline.map_or(begun + config.queue_timeout, |d| d.min(begun + config.queue_timeout));
        let granted = tokio::time::timeout_at(queue_deadline.into(), pool.permits.clone().acquire_owned()).await;
        drop(queued);
        let permit = match granted {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return finish(outcome, Err(InvokeError::Unavailable(format!("{} is being stopped", spec.name))))
            }
            Err(_) if deadline.is_some_and(|d| d <= queue_deadline) => {
                return finish(outcome, Err(InvokeError::DeadlinePassed { after: begun.elapsed() }))
            }
            Err(_) => {
                let reason =
                    format!("all {} instances of {} stayed busy for {:?}", pool.cap, spec.name, config.queue_timeout);
                return finish(outcome, Err(InvokeError::Unavailable(reason)));
            }
        };
        let run = tokio::spawn(Arc::clone(&self.shared).run_granted(
            pool,
            permit,
            spec.clone(),
            request_id,
            Bytes::from(payload),
        ));
        let joined = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), run).await,
            None => Ok(run.await),
        };
        match joined {
            Ok(Ok(granted)) => {
                outcome.instance_id = granted.instance_id;
                outcome.cold = granted.cold;
                finish(outcome, granted.result)
            }
            Ok(Err(error)) => finish(outcome, Err(InvokeError::Unavailable(format!("the invocation failed: {error}")))),
            Err(_) => finish(outcome, Err(InvokeError::DeadlinePassed { after: begun.elapsed() })),
        }
    }

    /// The cold start of every instance started so far, oldest first.
    pub fn cold_starts(&self) -> Vec<ColdStart> {
        let history = self.shared.history.lock().unwrap();
        history
            .iter()
            .map(|instance| {
                let state = instance.state.lock().unwrap();
                ColdStart {
                    function: instance.function.clone(),
                    instance_id: instance.id.clone(),
                    code_sha256: instance.code_sha256.clone(),
                    started_at: instance.started_at,
                    to_first_next: state.first_next.map(|t| t - instance.started),
                    to_first_response: state.first_response.map(|t| t - instance.started),
                }
            })
            .collect()
    }

    /// The live instances of `function` (all functions when `None`), by id.
    pub fn instances(&self, function: Option<&str>) -> Vec<InstanceInfo> {
        let instances = self.shared.instances.lock().unwrap();
        let mut list: Vec<InstanceInfo> = instances
            .values()
            .filter(|i| function.is_none_or(|f| i.function == f) && !i.exited())
            .map(|i| {
                let state = i.state.lock().unwrap();
                InstanceInfo {
                    id: i.id.clone(),
                    function: i.function.clone(),
                    code_sha256: i.code_sha256.clone(),
                    pid: *i.pid.lock().unwrap(),
                    busy: state.busy,
                    invocations: state.invocations,
                    started_at: i.started_at,
                }
            })
            .collect();
        list.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
        list
    }

    /// Stops every instance of `function` (in-flight invocations fail) and forgets its pool.
    pub async fn stop_function(&self, function: &str) {
        if let Some(pool) = self.shared.pools.lock().unwrap().remove(function) {
            pool.retired.store(true, Ordering::SeqCst);
            pool.permits.close();
        }
        let victims: Vec<_> =
            self.shared.instances.lock().unwrap().values().filter(|i| i.function == function).cloned().collect();
        stop_all(victims).await;
    }

    /// Stops every instance and the server, and waits until the processes are gone. Later
    /// invocations are [`InvokeError::Unavailable`].
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let pools: Vec<_> = self.shared.pools.lock().unwrap().drain().map(|(_, p)| p).collect();
        for pool in pools {
            pool.retired.store(true, Ordering::SeqCst);
            pool.permits.close();
        }
        let victims: Vec<_> = self.shared.instances.lock().unwrap().values().cloned().collect();
        stop_all(victims).await;
        self.server.abort();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.server.abort();
        for instance in self.shared.instances.lock().unwrap().values() {
            instance.kill();
        }
    }
}

async fn stop_all(instances: Vec<Arc<Instance>>) {
    for instance in &instances {
        instance.kill();
    }
    for instance in &instances {
        instance.wait_exit(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests;
