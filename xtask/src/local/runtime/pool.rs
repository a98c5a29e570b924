//! The instance pool: starting, reusing and stopping function processes, running one
//! invocation on an instance, and copying their output to the function's log.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::*;

impl Shared {
    /// The pool for `spec`'s current code and configuration; a changed function retires the
    /// old pool and stops its idle instances (busy ones stop when released).
    pub(super) fn pool_for(&self, spec: &FunctionSpec) -> Arc<Pool> {
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
        let cap = spec.max_instances.unwrap_or(self.config.max_instances_per_function).max(1);
        let pool = Arc::new(Pool {
            fingerprint,
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            queued: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        });
        pools.insert(spec.name.clone(), pool.clone());
        pool
    }

    /// Runs a granted invocation to its end on an idle instance or a new one, and releases
    /// the instance; `permit` is the grant, held until then.
    pub(super) async fn run_granted(
        self: Arc<Self>,
        pool: Arc<Pool>,
        permit: OwnedSemaphorePermit,
        spec: FunctionSpec,
        request_id: String,
        payload: Bytes,
    ) -> Granted {
        let mut granted =
            Granted { instance_id: None, cold: false, result: Err(InvokeError::Unavailable("not run".into())) };
        // A warm instance that dies before it takes the event is retried once on another.
        for attempt in 0..2 {
            let (instance, cold) = match pool.take_idle() {
                Some(instance) => (instance, false),
                None => match self.spawn_instance(&spec) {
                    Ok(instance) => (instance, true),
                    Err(error) => {
                        granted.result = Err(error);
                        break;
                    }
                },
            };
            granted.instance_id = Some(instance.id.clone());
            granted.cold = cold;
            let run = self.run_on(&instance, &spec, &request_id, payload.clone(), cold).await;
            self.release(&pool, instance).await;
            match run {
                RunResult::Done(result) => {
                    granted.result = result;
                    break;
                }
                RunResult::NotDelivered(result) => {
                    granted.result = result;
                    if cold || attempt == 1 {
                        break;
                    }
                }
            }
        }
        drop(permit);
        granted
    }

    /// Returns `instance` to the pool, or kills it (unhealthy, or of a retired pool) and waits
    /// until its process is gone, so that the grant outlives the process.
    pub(super) async fn release(&self, pool: &Pool, instance: Arc<Instance>) {
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
            instance.wait_exit(Duration::from_secs(5)).await;
            return;
        }
        pool.idle.lock().unwrap().push(instance);
    }

    /// Starts a new instance of `spec`, registered before its process starts so that its
    /// first `/next` always finds it.
    pub(super) fn spawn_instance(self: &Arc<Self>, spec: &FunctionSpec) -> Result<Arc<Instance>, InvokeError> {
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
    pub(super) fn environment(&self, spec: &FunctionSpec, runtime_api: &str, id: &str) -> BTreeMap<String, String> {
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
    pub(super) async fn run_on(
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
    pub(super) async fn undelivered(&self, instance: &Arc<Instance>) -> RunResult {
        instance.wait_exit(Duration::from_secs(5)).await;
        RunResult::NotDelivered(Err(self.exit_error(instance)))
    }

    /// The error for an instance that exited: an init failure when it never asked for an
    /// event (or reported `/init/error`), a crash otherwise.
    pub(super) fn exit_error(&self, instance: &Instance) -> InvokeError {
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
    pub(super) fn take_idle(&self) -> Option<Arc<Instance>> {
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
    pub(super) fn exited(&self) -> bool {
        self.exit_tx.borrow().is_some()
    }

    pub(super) fn exit_info(&self) -> Option<ExitInfo> {
        self.exit_tx.borrow().clone()
    }

    /// Sends SIGKILL (once); the supervisor reaps the process.
    pub(super) fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap().take() {
            let _ = kill.send(());
        }
    }

    /// Waits until the process has exited and been reaped; false if it is still running
    /// after `limit`.
    pub(super) async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exit = self.exit_tx.subscribe();
        tokio::time::timeout(limit, exited(&mut exit)).await.is_ok()
    }

    pub(super) fn tail_text(&self) -> String {
        let tail = self.tail.lock().unwrap();
        tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// Resolves once the instance's exit has been recorded.
pub(super) async fn exited(exit: &mut watch::Receiver<Option<ExitInfo>>) {
    let _ = exit.wait_for(Option::is_some).await.map(|_| ());
}

/// Appends lines to a function's log file.
pub(super) struct LogSink {
    file: Mutex<std::fs::File>,
}

impl LogSink {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(file) })
    }

    /// Writes `line` and a newline in one write, so lines of concurrent instances never mix.
    pub(super) fn line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let _ = self.file.lock().unwrap().write_all(&bytes);
    }
}

pub(super) async fn copy_output(output: impl AsyncRead + Unpin, instance: Arc<Instance>, prefix: String) {
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

/// What identifies a generation of instances: code and configuration (not the timeout,
/// which only sets each invocation's deadline, nor the log file).
pub(super) fn fingerprint(spec: &FunctionSpec) -> String {
    let mut hasher = Sha256::new();
    for part in [
        spec.name.as_str(),
        spec.code_sha256.as_str(),
        &spec.bootstrap.display().to_string(),
        &spec.memory_mb.to_string(),
        &format!("{:?}", spec.max_instances),
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
pub(super) fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

pub(super) fn stream_suffix(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..16])
}

pub(super) fn new_trace_id() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let root = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{:08x}-{};Parent={};Sampled=0", seconds as u32, &root[..24], &parent[..16])
}

pub(super) fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(unix)]
pub(super) fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
pub(super) fn exit_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// Spawns `command`, trying again for a moment while the executable is busy (`ETXTBSY`):
/// a bootstrap just written by this process cannot be executed while another of its
/// threads has forked a child that has not yet exec'd, since that child still holds the
/// file open for writing.
pub(super) fn spawn_retrying_busy(command: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
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
