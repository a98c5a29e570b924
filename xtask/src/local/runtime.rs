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
use std::convert::Infallible;
use std::io::{self, Cursor, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

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
    permits: Arc<Semaphore>,
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
        let begun = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut outcome = InvocationOutcome {
            request_id: request_id.clone(),
            instance_id: None,
            cold: false,
            duration: Duration::ZERO,
            result: Err(InvokeError::Unavailable("not run".into())),
        };
        if self.shared.stopped.load(Ordering::SeqCst) {
            outcome.result = Err(InvokeError::Unavailable("the local runtime is shut down".into()));
            return outcome;
        }
        let pool = self.shared.pool_for(spec);
        let permit =
            match tokio::time::timeout(self.shared.config.queue_timeout, pool.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => {
                    outcome.result = Err(InvokeError::Unavailable(format!("{} is being stopped", spec.name)));
                    outcome.duration = begun.elapsed();
                    return outcome;
                }
                Err(_) => {
                    outcome.result = Err(InvokeError::Unavailable(format!(
                        "all {} instances of {} stayed busy for {:?}",
                        self.shared.config.max_instances_per_function, spec.name, self.shared.config.queue_timeout
                    )));
                    outcome.duration = begun.elapsed();
                    return outcome;
                }
            };
        let payload = Bytes::from(payload);
        // A warm instance that dies before it takes the event is retried once on another.
        for attempt in 0..2 {
            let (instance, cold) = match pool.take_idle() {
                Some(instance) => (instance, false),
                None => match self.shared.spawn_instance(spec) {
                    Ok(instance) => (instance, true),
                    Err(error) => {
                        outcome.result = Err(error);
                        break;
                    }
                },
            };
            outcome.instance_id = Some(instance.id.clone());
            outcome.cold = cold;
            let run = self.shared.run_on(&instance, spec, &request_id, payload.clone(), cold).await;
            self.shared.release(&pool, instance);
            match run {
                RunResult::Done(result) => {
                    outcome.result = result;
                    break;
                }
                RunResult::NotDelivered(result) => {
                    outcome.result = result;
                    if cold || attempt == 1 {
                        break;
                    }
                }
            }
        }
        drop(permit);
        outcome.duration = begun.elapsed();
        outcome
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

impl Shared {
    /// The pool for `spec`'s current code and configuration; a changed function retires the
    /// old pool and stops its idle instances (busy ones stop when released).
    fn pool_for(&self, spec: &FunctionSpec) -> Arc<Pool> {
        let fingerprint = fingerprint(spec);
        let mut pools = self.pools.lock().unwrap();
        if let Some(pool) = pools.get(&spec.name) {
            if pool.fingerprint == fingerprint {
                return pool.clone();
            }
            pool.retired.store(true, Ordering::SeqCst);
            for instance in pool.idle.lock().unwrap().drain(..) {
                instance.log.line(&format!(
                    "=== {} instance {} replaced: the function changed",
                    now_text(),
                    instance.id
                ));
                instance.kill();
            }
        }
        let pool = Arc::new(Pool {
            fingerprint,
            permits: Arc::new(Semaphore::new(self.config.max_instances_per_function.max(1))),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        });
        pools.insert(spec.name.clone(), pool.clone());
        pool
    }

    fn release(&self, pool: &Pool, instance: Arc<Instance>) {
        let healthy = {
            let mut state = instance.state.lock().unwrap();
            state.busy = false;
            state.current = None;
            state.init_error.is_none()
        };
        if instance.exited() {
            return;
        }
        if !healthy || pool.retired.load(Ordering::SeqCst) {
            instance.kill();
            return;
        }
        pool.idle.lock().unwrap().push(instance);
    }

    /// Starts a new instance of `spec`, registered before its process starts so that its
    /// first `/next` always finds it.
    fn spawn_instance(self: &Arc<Self>, spec: &FunctionSpec) -> Result<Arc<Instance>, InvokeError> {
        let unavailable = |what: String| InvokeError::Unavailable(format!("{}: {what}", spec.name));
        match std::fs::metadata(&spec.bootstrap) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(unavailable(format!("bootstrap {} is not a file", spec.bootstrap.display()))),
            Err(error) => return Err(unavailable(format!("bootstrap {}: {error}", spec.bootstrap.display()))),
        }
        let log = LogSink::open(&spec.log_file)
            .map_err(|error| unavailable(format!("cannot open log file {}: {error}", spec.log_file.display())))?;

        let seq = self.next_instance.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{seq}", sanitize(&spec.name));
        let (events_tx, events_rx) = mpsc::channel(1);
        let (kill_tx, kill_rx) = oneshot::channel();
        let instance = Arc::new(Instance {
            id: id.clone(),
            function: spec.name.clone(),
            code_sha256: spec.code_sha256.clone(),
            memory_mb: spec.memory_mb,
            started: Instant::now(),
            started_at: SystemTime::now(),
            pid: Mutex::new(None),
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            state: Mutex::new(InstanceState { busy: true, ..Default::default() }),
            exit_tx: watch::channel(None).0,
            kill: Mutex::new(Some(kill_tx)),
            log: Arc::new(log),
            tail: Arc::new(Mutex::new(VecDeque::new())),
        });
        self.instances.lock().unwrap().insert(id.clone(), instance.clone());
        // Registered first, checked second: shutdown either sees this instance or we see it.
        if self.stopped.load(Ordering::SeqCst) {
            self.instances.lock().unwrap().remove(&id);
            return Err(unavailable("the local runtime is shut down".to_owned()));
        }

        let runtime_api = format!("http://{}/{id}", self.address);
        let mut command = tokio::process::Command::new(&spec.bootstrap);
        command
            .env_clear()
            .envs(self.environment(spec, &runtime_api, &id))
            .current_dir(spec.bootstrap.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);

        instance.log.line(&format!(
            "=== {} instance {id} starting: {} (code {}, {} MB)",
            now_text(),
            spec.bootstrap.display(),
            spec.code_sha256,
            spec.memory_mb
        ));
        let mut child = match spawn_retrying_busy(&mut command) {
            Ok(child) => child,
            Err(error) => {
                instance.log.line(&format!("=== {} instance {id} failed to start: {error}", now_text()));
                self.instances.lock().unwrap().remove(&id);
                return Err(unavailable(format!("cannot start {}: {error}", spec.bootstrap.display())));
            }
        };
        *instance.pid.lock().unwrap() = child.id();
        {
            let mut history = self.history.lock().unwrap();
            if history.len() >= MAX_HISTORY {
                history.remove(0);
            }
            history.push(instance.clone());
        }

        let prefix = format!("[{id}] ");
        let copiers = [
            child.stdout.take().map(|out| tokio::spawn(copy_output(out, instance.clone(), prefix.clone()))),
            child.stderr.take().map(|err| tokio::spawn(copy_output(err, instance.clone(), prefix.clone()))),
        ];
        let shared = Arc::downgrade(self);
        let supervised = instance.clone();
        tokio::spawn(async move {
            let mut killed = false;
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    killed = true;
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            for copier in copiers.into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_millis(500), copier).await;
            }
            let exit = match status {
                Ok(status) => ExitInfo { code: status.code(), signal: exit_signal(&status), killed },
                Err(_) => ExitInfo { code: None, signal: None, killed },
            };
            let invocations = supervised.state.lock().unwrap().invocations;
            supervised.log.line(&format!(
                "=== {} instance {} stopped: {}{} after {:.1} s, {invocations} invocation(s)",
                now_text(),
                supervised.id,
                exit_text(exit.code, exit.signal),
                if exit.killed { " (killed)" } else { "" },
                supervised.started.elapsed().as_secs_f64(),
            ));
            supervised.exit_tx.send_replace(Some(exit));
            // Dropping the in-flight senders wakes the invoker, which reads the exit above.
            supervised.state.lock().unwrap().current = None;
            if let Some(shared) = shared.upgrade() {
                shared.instances.lock().unwrap().remove(&supervised.id);
            }
        });
        Ok(instance)
    }

    /// The process environment of an instance of `spec`.
    fn environment(&self, spec: &FunctionSpec, runtime_api: &str, id: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for name in &self.config.inherit_env {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.clone(), value);
            }
        }
        env.entry("PATH".to_owned()).or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
        env.insert("LANG".to_owned(), "en_US.UTF-8".to_owned());
        env.insert("TZ".to_owned(), ":UTC".to_owned());
        env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(self.config.extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let today = time::OffsetDateTime::now_utc().date();
        let task_root = spec.bootstrap.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let reserved = [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.name)),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!(
                    "{:04}/{:02}/{:02}/[$LATEST]{}",
                    today.year(),
                    today.month() as u8,
                    today.day(),
                    stream_suffix(id)
                ),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", self.config.region.clone()),
            ("AWS_DEFAULT_REGION", self.config.region.clone()),
            ("LAMBDA_TASK_ROOT", task_root),
        ];
        env.extend(reserved.into_iter().map(|(k, v)| (k.to_owned(), v)));
        env
    }

    /// Runs one invocation on `instance` (which the caller holds exclusively).
    async fn run_on(
        &self,
        instance: &Arc<Instance>,
        spec: &FunctionSpec,
        request_id: &str,
        payload: Bytes,
        cold: bool,
    ) -> RunResult {
        let (delivered_tx, delivered_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut state = instance.state.lock().unwrap();
            state.busy = true;
            state.invocations += 1;
            state.current = Some(InFlight {
                request_id: request_id.to_owned(),
                delivered: Some(delivered_tx),
                reply: Some(reply_tx),
            });
        }
        if instance.exited() {
            return RunResult::NotDelivered(Err(self.exit_error(instance)));
        }
        let event = Event {
            request_id: request_id.to_owned(),
            payload,
            timeout: spec.timeout,
            arn: spec.arn.clone(),
            trace_id: new_trace_id(),
        };
        if instance.events_tx.try_send(event).is_err() {
            instance.kill();
            instance.wait_exit(Duration::from_secs(5)).await;
            return RunResult::NotDelivered(Err(InvokeError::Unavailable(format!(
                "instance {} could not take the event",
                instance.id
            ))));
        }

        // Phase 1: the instance takes the event (immediately when warm; after init when cold).
        let mut exit = instance.exit_tx.subscribe();
        let init_timeout = self.config.init_timeout;
        tokio::select! {
            delivered = delivered_rx => {
                if delivered.is_err() {
                    return self.undelivered(instance).await;
                }
            }
            () = exited(&mut exit) => return self.undelivered(instance).await,
            _ = tokio::time::sleep(init_timeout) => {
                instance.log.line(&format!(
                    "{} {request_id} INIT: no request for the event within {:.2} seconds, killing instance {}",
                    now_text(), init_timeout.as_secs_f64(), instance.id
                ));
                instance.kill();
                instance.wait_exit(Duration::from_secs(5)).await;
                return RunResult::Done(Err(InvokeError::Timeout { after: init_timeout, during_init: true }));
            }
        }
        let delivered_at = Instant::now();
        instance.log.line(&format!("START RequestId: {request_id} Version: $LATEST"));

        // Phase 2: the response, an error, a crash or the timeout.
        let result = tokio::select! {
            reply = reply_rx => match reply {
                Ok(Reply::Response(body)) => Ok(body.to_vec()),
                Ok(Reply::Error { error_type, error_message }) => Err(InvokeError::FunctionError { error_type, error_message }),
                Ok(Reply::InitError { error_type, error_message }) => {
                    // The runtime exits after reporting; give it a moment, then make sure.
                    if !instance.wait_exit(Duration::from_secs(2)).await {
                        instance.kill();
                        instance.wait_exit(Duration::from_secs(5)).await;
                    }
                    let exit = instance.exit_info();
                    Err(InvokeError::InitError {
                        error_type,
                        error_message,
                        exit_code: exit.and_then(|e| e.code),
                        log_tail: instance.tail_text(),
                    })
                }
                Err(_) => {
                    instance.wait_exit(Duration::from_secs(5)).await;
                    Err(self.exit_error(instance))
                }
            },
            _ = tokio::time::sleep(spec.timeout) => {
                instance.log.line(&format!(
                    "{} {request_id} Task timed out after {:.2} seconds",
                    now_text(),
                    spec.timeout.as_secs_f64()
                ));
                instance.kill();
                instance.wait_exit(Duration::from_secs(5)).await;
                Err(InvokeError::Timeout { after: spec.timeout, during_init: false })
            }
        };
        let duration = delivered_at.elapsed();
        instance.log.line(&format!("END RequestId: {request_id}"));
        let init = if cold {
            let state = instance.state.lock().unwrap();
            state.first_next.map(|t| format!("\tInit Duration: {:.2} ms", (t - instance.started).as_secs_f64() * 1e3))
        } else {
            None
        };
        instance.log.line(&format!(
            "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB{}{}",
            duration.as_secs_f64() * 1e3,
            (duration.as_secs_f64() * 1e3).ceil().max(1.0) as u64,
            instance.memory_mb,
            init.unwrap_or_default(),
            match &result {
                Ok(_) => String::new(),
                Err(error) => format!("\tStatus: {}", error.error_type()),
            }
        ));
        RunResult::Done(result)
    }

    /// The instance is gone (or going) before it took the event.
    async fn undelivered(&self, instance: &Arc<Instance>) -> RunResult {
        instance.wait_exit(Duration::from_secs(5)).await;
        RunResult::NotDelivered(Err(self.exit_error(instance)))
    }

    /// The error for an instance that exited: an init failure when it never asked for an
    /// event (or reported `/init/error`), a crash otherwise.
    fn exit_error(&self, instance: &Instance) -> InvokeError {
        let exit = instance.exit_info().unwrap_or(ExitInfo { code: None, signal: None, killed: false });
        let state = instance.state.lock().unwrap();
        let log_tail = instance.tail_text();
        if let Some((error_type, error_message)) = state.init_error.clone() {
            return InvokeError::InitError { error_type, error_message, exit_code: exit.code, log_tail };
        }
        if state.first_next.is_none() {
            return InvokeError::InitError {
                error_type: "Runtime.ExitError".to_owned(),
                error_message: format!("Runtime exited with error: {}", exit_text(exit.code, exit.signal)),
                exit_code: exit.code,
                log_tail,
            };
        }
        InvokeError::Crashed { exit_code: exit.code, signal: exit.signal, log_tail }
    }
}

impl Pool {
    /// An idle instance whose process is still alive.
    fn take_idle(&self) -> Option<Arc<Instance>> {
        let mut idle = self.idle.lock().unwrap();
        while let Some(instance) = idle.pop() {
            if !instance.exited() {
                instance.state.lock().unwrap().busy = true;
                return Some(instance);
            }
        }
        None
    }
}

impl Instance {
    fn exited(&self) -> bool {
        self.exit_tx.borrow().is_some()
    }

    fn exit_info(&self) -> Option<ExitInfo> {
        self.exit_tx.borrow().clone()
    }

    /// Sends SIGKILL (once); the supervisor reaps the process.
    fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap().take() {
            let _ = kill.send(());
        }
    }

    /// Waits until the process has exited and been reaped; false if it is still running
    /// after `limit`.
    async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exit = self.exit_tx.subscribe();
        tokio::time::timeout(limit, exited(&mut exit)).await.is_ok()
    }

    fn tail_text(&self) -> String {
        let tail = self.tail.lock().unwrap();
        tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// Resolves once the instance's exit has been recorded.
async fn exited(exit: &mut watch::Receiver<Option<ExitInfo>>) {
    let _ = exit.wait_for(Option::is_some).await.map(|_| ());
}

/// Appends lines to a function's log file.
struct LogSink {
    file: Mutex<std::fs::File>,
}

impl LogSink {
    fn open(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(file) })
    }

    /// Writes `line` and a newline in one write, so lines of concurrent instances never mix.
    fn line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let _ = self.file.lock().unwrap().write_all(&bytes);
    }
}

async fn copy_output(output: impl AsyncRead + Unpin, instance: Arc<Instance>, prefix: String) {
    let mut reader = BufReader::new(output);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buffer.pop();
                }
                let line = String::from_utf8_lossy(&buffer).into_owned();
                instance.log.line(&format!("{prefix}{line}"));
                let mut tail = instance.tail.lock().unwrap();
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The Runtime API server.

type ApiResponse = Response<Full<Bytes>>;

async fn serve(listener: TcpListener, shared: Weak<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The routes, under each instance's prefix `/<instance-id>`.
enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
}

fn route(method: &Method, path: &str) -> Option<(String, Route)> {
    let rest = path.strip_prefix('/')?;
    let (instance, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix(API_VERSION)?.strip_prefix("/runtime/")?;
    let route = match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        (&Method::GET, ["invocation", "next"]) => Route::Next,
        (&Method::POST, ["invocation", id, "response"]) => Route::Response((*id).to_owned()),
        (&Method::POST, ["invocation", id, "error"]) => Route::Error((*id).to_owned()),
        (&Method::POST, ["init", "error"]) => Route::InitError,
        _ => return None,
    };
    Some((instance.to_owned(), route))
}

async fn handle(shared: Weak<Shared>, request: Request<Incoming>) -> Result<ApiResponse, Infallible> {
    let Some((instance_id, route)) = route(request.method(), request.uri().path()) else {
        return Ok(api_error(StatusCode::NOT_FOUND, "InvalidRequest", "unknown Runtime API path"));
    };
    let instance = shared.upgrade().and_then(|shared| shared.instances.lock().unwrap().get(&instance_id).cloned());
    let Some(instance) = instance else {
        return Ok(api_error(StatusCode::FORBIDDEN, "InvalidInstance", "no such instance (it was stopped)"));
    };
    Ok(match route {
        Route::Next => next(&instance).await,
        Route::Response(id) => {
            let body = match read_body(request, MAX_RESPONSE_BYTES).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    complete(
                        &instance,
                        &id,
                        Reply::Error {
                            error_type: "Function.ResponseSizeTooLarge".into(),
                            error_message: format!(
                                "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                            ),
                        },
                    );
                    return Ok(api_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                    ));
                }
                Err(BodyError::Read) => {
                    return Ok(api_error(StatusCode::BAD_REQUEST, "InvalidRequest", "unreadable body"))
                }
            };
            if complete(&instance, &id, Reply::Response(body)) {
                accepted()
            } else {
                api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
            }
        }
        Route::Error(id) => {
            let header_type = error_type_header(&request);
            let body = read_body(request, MAX_RESPONSE_BYTES).await.unwrap_or_default();
            let (error_type, error_message) = diagnostic(&body, header_type);
            if complete(&instance, &id, Reply::Error { error_type, error_message }) {
                accepted()
            } else {
                api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
            }
        }
        Route::InitError => {
            let header_type = error_type_header(&request);
            let body = read_body(request, MAX_RESPONSE_BYTES).await.unwrap_or_default();
            let (error_type, error_message) = diagnostic(&body, header_type);
            instance.log.line(&format!("INIT_REPORT instance {} Status: error\tErrorType: {error_type}", instance.id));
            let reply = {
                let mut state = instance.state.lock().unwrap();
                state.init_error = Some((error_type.clone(), error_message.clone()));
                state.current.as_mut().and_then(|c| c.reply.take())
            };
            if let Some(reply) = reply {
                let _ = reply.send(Reply::InitError { error_type, error_message });
            }
            accepted()
        }
    })
}

/// `GET /next`: waits for this instance's next event.
async fn next(instance: &Arc<Instance>) -> ApiResponse {
    instance.state.lock().unwrap().first_next.get_or_insert_with(Instant::now);
    let event = {
        let mut events = instance.events_rx.lock().await;
        events.recv().await
    };
    let Some(event) = event else {
        return api_error(StatusCode::GONE, "InstanceStopped", "the instance is stopping");
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + event.timeout;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &event.request_id)
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", &event.arn)
        .header("lambda-runtime-trace-id", &event.trace_id)
        .body(Full::new(event.payload))
        .expect("valid response parts");
    let delivered = {
        let mut state = instance.state.lock().unwrap();
        state.current.as_mut().filter(|c| c.request_id == event.request_id).and_then(|c| c.delivered.take())
    };
    if let Some(delivered) = delivered {
        let _ = delivered.send(());
    }
    response
}

/// Hands the function's answer to the waiting invoker; false for an unknown request id.
fn complete(instance: &Instance, request_id: &str, reply: Reply) -> bool {
    let sender = {
        let mut state = instance.state.lock().unwrap();
        let sender = state.current.as_mut().filter(|c| c.request_id == request_id).and_then(|c| c.reply.take());
        if sender.is_some() {
            state.first_response.get_or_insert_with(Instant::now);
        }
        sender
    };
    match sender {
        Some(sender) => {
            let _ = sender.send(reply);
            true
        }
        None => false,
    }
}

enum BodyError {
    TooLarge,
    Read,
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

fn error_type_header(request: &Request<Incoming>) -> Option<String> {
    request.headers().get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `errorType` and `errorMessage` of an error report (the body's, else the header's type and
/// the body as the message).
fn diagnostic(body: &[u8], header_type: Option<String>) -> (String, String) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Diagnostic {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Diagnostic>(body).ok();
    let error_type =
        parsed.as_ref().and_then(|d| d.error_type.clone()).or(header_type).unwrap_or_else(|| "Unhandled".to_owned());
    let error_message =
        parsed.and_then(|d| d.error_message).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    (error_type, error_message)
}

fn accepted() -> ApiResponse {
    json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> ApiResponse {
    json_response(status, serde_json::json!({"errorType": error_type, "errorMessage": message}))
}

fn json_response(status: StatusCode, body: serde_json::Value) -> ApiResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response parts")
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// What identifies a generation of instances: code and configuration (not the timeout,
/// which only sets each invocation's deadline, nor the log file).
fn fingerprint(spec: &FunctionSpec) -> String {
    let mut hasher = Sha256::new();
    for part in [
        spec.name.as_str(),
        spec.code_sha256.as_str(),
        &spec.bootstrap.display().to_string(),
        &spec.memory_mb.to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (key, value) in &spec.environment {
        hasher.update(key.as_bytes());
        hasher.update([1]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// A path-segment-safe form of a function name.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn stream_suffix(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..16])
}

fn new_trace_id() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let root = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{:08x}-{};Parent={};Sampled=0", seconds as u32, &root[..24], &parent[..16])
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn exit_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// Spawns `command`, trying again for a moment while the executable is busy (`ETXTBSY`):
/// a bootstrap just written by this process cannot be executed while another of its
/// threads has forked a child that has not yet exec'd, since that child still holds the
/// file open for writing.
fn spawn_retrying_busy(command: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..8 {
        match command.spawn() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            result => return result,
        }
    }
    command.spawn()
}

// ---------------------------------------------------------------------------------------
// Deployment packages.

/// Why a deployment package could not be turned into a bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("the package's CodeSha256 is {actual}, expected {expected}: refusing to run it")]
    DigestMismatch { expected: String, actual: String },
    #[error("the package is not a readable zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the package has no `bootstrap` entry")]
    NoBootstrap,
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The `bootstrap` of a deployment package, read into memory.
pub fn read_bootstrap(zip_bytes: &[u8]) -> Result<Vec<u8>, ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))?;
    let mut entry = match archive.by_name("bootstrap") {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Err(ExtractError::NoBootstrap),
        Err(error) => return Err(error.into()),
    };
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|e| ExtractError::Zip(e.into()))?;
    Ok(bytes)
}

/// Extracts the `bootstrap` of a deployment package to `<dir>/<sha256 hex>/bootstrap`
/// (mode 0755) and returns its path, after checking that the zip's SHA-256 is
/// `expected_code_sha256` (base64, as Lambda reports `CodeSha256`). Idempotent: an existing
/// extraction is reused; a new one is written to a temporary file and renamed into place.
pub fn extract_bootstrap(zip_bytes: &[u8], expected_code_sha256: &str, dir: &Path) -> Result<PathBuf, ExtractError> {
    let digest = Sha256::digest(zip_bytes);
    let actual = base64::engine::general_purpose::STANDARD.encode(digest);
    if actual != expected_code_sha256.trim() {
        return Err(ExtractError::DigestMismatch { expected: expected_code_sha256.to_owned(), actual });
    }
    let target_dir = dir.join(hex::encode(digest));
    let target = target_dir.join("bootstrap");
    if target.is_file() {
        return Ok(target);
    }
    let bytes = read_bootstrap(zip_bytes)?;
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Write { path, source }
    };
    std::fs::create_dir_all(&target_dir).map_err(write_error(&target_dir))?;
    let temporary = target_dir.join(format!(".bootstrap.{}.tmp", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
        let mut file = options.open(&temporary).map_err(write_error(&temporary))?;
        file.write_all(&bytes).map_err(write_error(&temporary))?;
        file.sync_all().map_err(write_error(&temporary))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))
            .map_err(write_error(&temporary))?;
    }
    std::fs::rename(&temporary, &target).map_err(write_error(&target))?;
    Ok(target)
}

#[cfg(test)]
mod tests;
