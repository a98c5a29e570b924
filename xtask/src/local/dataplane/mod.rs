//! The local data plane (`cargo xtask local serve`, started in the background by `local
//! up`): serves every HTTP API deployed into the emulator on 127.0.0.1, the way API Gateway
//! serves it, and runs the Lambda functions behind it as deployed.
//!
//! - Configuration comes from the emulator's control planes (see [`super::discovery`]),
//!   read in the background every second, and at once on `POST /_local/refresh` (which the
//!   tool sends when a deploy, promotion or rollback finishes), into a snapshot that
//!   requests are served from: no request waits on the emulator, and one that arrives while
//!   the emulator is slow or down is served from the last snapshot. Each function the
//!   snapshot invokes is made ready (its code fetched and unpacked) before the snapshot is
//!   served; a new `CodeSha256` means new function instances.
//! - Ports: the `local` environment's API (`<project>-local-api`, tagged so) gets
//!   `api_port`; every other API the next free port above it, kept while the data plane
//!   runs. `apis.json` in the state directory maps API ids to their environment, name and
//!   URL.
//! - A request is matched to a route (exact `METHOD /path`, then `ANY /path`, then
//!   `$default`; unmatched: `404 {"message":"Not Found"}`), becomes a payload 2.0 event
//!   ([`super::event`]), runs on the function ([`super::runtime`], one runtime per region so
//!   each function gets its own `AWS_REGION`), and the answer becomes the HTTP response. A
//!   function timeout (or API Gateway's integration timeout, after which the invocation
//!   still runs to its end) is `503 {"message":"Service Unavailable"}`, a crash `502
//!   {"message":"Internal Server Error"}`, a function error `500`, a function whose
//!   instances are all busy and whose queue is full `429 {"message":"Too Many Requests"}`,
//!   as API Gateway answers them.
//! - Stage throttling: each route's rate and burst (its own, or the stage's default) as a
//!   token bucket; over it, `429 {"message":"Too Many Requests"}`.
//! - CORS: preflight requests are answered from the API's CORS configuration and CORS
//!   headers are added to responses, as HTTP APIs do.
//! - Function processes reach the emulator through the standard variables: `AWS_ENDPOINT_URL`,
//!   test credentials, `S3_FORCE_PATH_STYLE=true`, and `AWS_ENDPOINT_URL_REKOGNITION` when the
//!   state directory's `face.url` names the local face-analysis service.
//! - Bounded: at most [`MAX_CONNECTIONS`] open connections with a read buffer of
//!   [`CONNECTION_BUFFER_BYTES`] each, headers within [`HEADER_READ_TIMEOUT`], bodies up to
//!   10 MB (`413` beyond) and at most [`MAX_BUFFERED_BODY_BYTES`] of them in memory at once,
//!   and each function's queue (see [`super::runtime`]).
//! - `GET /_local/health`, `GET /_local/apis` and `POST /_local/refresh` on `api_port` are
//!   the data plane's own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::discovery::{Api, ControlPlane, Function, Snapshot};
use super::layout::{ServedApi, StateDir, LOCAL_ENVIRONMENT};
use super::runtime::{FunctionSpec, Runtime};

mod cors;
mod functions;
mod notify;
mod s3front;
mod serving;
mod throttle;

pub use functions::{deployed_spec, function_environment, Endpoints};
pub use notify::{encode_key, s3_event, Creation};
pub use s3front::{creation, CreatedBy};
pub use serving::message;

/// API Gateway's limit on a request payload.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// At most this many client connections are open at once, over every port; more wait in the
/// kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4096;
/// A client has this long to send a request's headers, or its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Each connection's read buffer (hyper's default is about 400 KB): with
/// [`MAX_CONNECTIONS`], 256 MiB at most. Headers larger than this are refused.
pub const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;
/// Request bodies held in memory at once, over every request: a request whose body does not
/// fit waits until it does, so the data plane's memory stays bounded whatever clients send.
pub const MAX_BUFFERED_BODY_BYTES: usize = 256 * 1024 * 1024;
/// The variable that points a function's Rekognition client at the face-analysis service.
pub const REKOGNITION_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_REKOGNITION";
/// The variable that points a function's S3 client at the data plane's S3 endpoint.
pub const S3_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_S3";

/// How `local serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The emulator, e.g. `http://127.0.0.1:4566`.
    pub endpoint: String,
    /// The `local` environment API's port; other APIs get the ports above it.
    pub api_port: u16,
    pub state_dir: StateDir,
    /// The checkout's record of the code it may run ([`crate::local::trust`]).
    pub trusted_code: std::path::PathBuf,
    /// The project whose `local` API gets `api_port`.
    pub project: String,
    /// The regions to discover APIs and functions in.
    pub regions: Vec<String>,
    /// How often the control plane is re-read.
    pub poll_interval: Duration,
    /// At most this many instances of one function run at once.
    pub max_instances: usize,
}

/// Runs the data plane until SIGTERM or SIGINT, then stops every function process.
pub async fn serve(options: ServeOptions) -> Result<()> {
    std::fs::create_dir_all(options.state_dir.dir())
        .with_context(|| format!("creating {}", options.state_dir.dir().display()))?;
    let listener = TcpListener::bind(("127.0.0.1", options.api_port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", options.api_port))?;
    let s3_listener = bind_s3_endpoint(&options.endpoint).await?;
    let s3_url = format!("http://{}", s3_listener.local_addr().context("the S3 endpoint's address")?);
    let control = ControlPlane::connect(&options.endpoint, &options.regions).await;
    tracing::info!(
        "data plane pid {} serving on http://127.0.0.1:{} from the emulator at {} (regions {}); the functions' S3 \
         endpoint is {s3_url}",
        std::process::id(),
        options.api_port,
        options.endpoint,
        control.regions().collect::<Vec<_>>().join(", ")
    );
    let plane = Arc::new(DataPlane::new(options, control, s3_url));
    plane.ports.lock().unwrap().by_port.insert(plane.options.api_port, None);
    plane.refresh().await;
    let api_port = plane.options.api_port;
    plane.spawn_listener(listener, api_port);
    plane.spawn_s3_listener(s3_listener);

    let poller = {
        let plane = Arc::clone(&plane);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(plane.options.poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                plane.refresh().await;
            }
        })
    };

    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down: stopping the listeners and every function instance");
    poller.abort();
    plane.shutdown().await;
    Ok(())
}

/// The functions' S3 endpoint listens on the port after the emulator's (4567 for the
/// default 4566) when it is free, else on any free port.
async fn bind_s3_endpoint(emulator: &str) -> Result<TcpListener> {
    let emulator = crate::local::layout::loopback_address(emulator)?;
    if let Some(port) = emulator.port().checked_add(1) {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return Ok(listener);
        }
    }
    TcpListener::bind(("127.0.0.1", 0)).await.context("listening for the functions' S3 endpoint")
}

async fn wait_for_shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// Which API each port serves. Ports are never reassigned to another API while the data
/// plane runs; `api_port` follows the `local` environment's API.
#[derive(Debug, Default)]
struct Ports {
    by_port: BTreeMap<u16, Option<String>>,
    by_api: BTreeMap<String, u16>,
}

/// A function by region, name and qualifier.
type FunctionKey = (String, String, Option<String>);

/// A function made ready to run: its spec, and what it was made from.
#[derive(Debug, Clone)]
struct Prepared {
    function: Function,
    face_url: Option<String>,
    spec: FunctionSpec,
}

struct DataPlane {
    options: ServeOptions,
    /// The functions' S3 endpoint ([`s3front`]).
    s3_url: String,
    control: ControlPlane,
    snapshot: RwLock<Arc<Snapshot>>,
    refresh_lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
    ports: Mutex<Ports>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    written_apis: Mutex<Option<BTreeMap<String, ServedApi>>>,
    /// One runtime per region: `AWS_REGION` is the runtime's.
    runtimes: tokio::sync::Mutex<HashMap<String, Arc<Runtime>>>,
    /// Every function the snapshot's integrations invoke, ready to run, by region, name and
    /// qualifier. Written by the background refresh, read by requests.
    prepared: Mutex<HashMap<FunctionKey, Prepared>>,
    /// The code hashes it may run, as last read from the checkout's record
    /// ([`crate::local::trust`]).
    trusted: Mutex<std::collections::HashSet<String>>,
    /// The refusals the background refresh has logged, so that each is logged once.
    refusals: Mutex<std::collections::HashSet<String>>,
    stopping: AtomicBool,
    /// Stage throttling's token buckets.
    throttle: throttle::Buckets,
    /// One permit per open client connection ([`MAX_CONNECTIONS`]).
    connections: Arc<tokio::sync::Semaphore>,
    /// One permit per byte of request body held ([`MAX_BUFFERED_BODY_BYTES`]).
    body_bytes: Arc<tokio::sync::Semaphore>,
}

type HttpResponse = Response<Full<Bytes>>;

impl DataPlane {
    fn new(options: ServeOptions, control: ControlPlane, s3_url: String) -> Self {
        Self {
            options,
            s3_url,
            control,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
            ports: Mutex::new(Ports::default()),
            listeners: Mutex::new(Vec::new()),
            written_apis: Mutex::new(None),
            runtimes: tokio::sync::Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            trusted: Mutex::new(std::collections::HashSet::new()),
            refusals: Mutex::new(std::collections::HashSet::new()),
            stopping: AtomicBool::new(false),
            throttle: throttle::Buckets::default(),
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            body_bytes: Arc::new(tokio::sync::Semaphore::new(MAX_BUFFERED_BODY_BYTES)),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap())
    }

    // -----------------------------------------------------------------------------------
    // Discovery

    /// Re-reads the control plane.
    async fn refresh(self: &Arc<Self>) {
        let _guard = self.refresh_lock.lock().await;
        self.refresh_locked().await;
    }

    async fn refresh_locked(self: &Arc<Self>) {
        let started = Instant::now();
        match self.control.snapshot().await {
            Ok(snapshot) => {
                self.prepare_all(&snapshot).await;
                self.assign_ports(&snapshot).await;
                *self.snapshot.write().unwrap() = Arc::new(snapshot);
                tracing::debug!("configuration read in {} ms", started.elapsed().as_millis());
                if let Some(error) = self.last_error.lock().unwrap().take() {
                    tracing::info!("the emulator answers again (after: {error})");
                }
                self.write_apis();
            }
            Err(error) => {
                let text = format!("{error:#}");
                let mut last = self.last_error.lock().unwrap();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!("cannot read the deployed configuration from {}: {text}", self.options.endpoint);
                    *last = Some(text);
                }
            }
        }
    }

    /// Gives `api_port` to the `local` environment's API and a port of its own to every new
    /// API, listening on it.
    async fn assign_ports(self: &Arc<Self>, snapshot: &Snapshot) {
        let api_port = self.options.api_port;
        let local = snapshot.apis.iter().find(|api| api.is_environment(&self.options.project, LOCAL_ENVIRONMENT));
        {
            let mut ports = self.ports.lock().unwrap();
            let current = ports.by_port.get(&api_port).cloned().flatten();
            let wanted = local.map(|api| api.id.clone());
            if current != wanted {
                if let Some(old) = &current {
                    ports.by_api.remove(old);
                }
                if let Some(id) = &wanted {
                    ports.by_api.insert(id.clone(), api_port);
                    tracing::info!(
                        "serving API {id} ({}) on http://127.0.0.1:{api_port}",
                        local.map_or("", |api| api.name.as_str())
                    );
                }
                ports.by_port.insert(api_port, wanted);
            }
        }
        let mut others: Vec<&Api> = snapshot
            .apis
            .iter()
            .filter(|api| Some(&api.id) != local.map(|local| &local.id))
            .filter(|api| !self.ports.lock().unwrap().by_api.contains_key(&api.id))
            .collect();
        others.sort_by_key(|api| (api.environment(), api.name.clone(), api.id.clone()));
        for api in others {
            let mut candidate = api_port.saturating_add(1);
            loop {
                if candidate == u16::MAX {
                    tracing::warn!("no free port for API {} ({})", api.id, api.name);
                    break;
                }
                if self.ports.lock().unwrap().by_port.contains_key(&candidate) {
                    candidate += 1;
                    continue;
                }
                match TcpListener::bind(("127.0.0.1", candidate)).await {
                    Ok(listener) => {
                        {
                            let mut ports = self.ports.lock().unwrap();
                            ports.by_port.insert(candidate, Some(api.id.clone()));
                            ports.by_api.insert(api.id.clone(), candidate);
                        }
                        tracing::info!(
                            "serving API {} ({}, environment {}) on http://127.0.0.1:{candidate}",
                            api.id,
                            api.name,
                            api.environment().as_deref().unwrap_or("?")
                        );
                        self.spawn_listener(listener, candidate);
                        break;
                    }
                    Err(_) => candidate += 1,
                }
            }
        }
    }

    /// The APIs served now, as `apis.json` lists them.
    fn served_apis(&self) -> BTreeMap<String, ServedApi> {
        let snapshot = self.snapshot();
        let ports = self.ports.lock().unwrap();
        snapshot
            .apis
            .iter()
            .filter_map(|api| {
                let port = *ports.by_api.get(&api.id)?;
                Some((
                    api.id.clone(),
                    ServedApi {
                        environment: api.environment(),
                        name: api.name.clone(),
                        url: format!("http://127.0.0.1:{port}"),
                        project: api.tag("project").map(str::to_owned),
                        region: api.region.clone(),
                        port,
                    },
                ))
            })
            .collect()
    }

    fn write_apis(&self) {
        let apis = self.served_apis();
        let mut written = self.written_apis.lock().unwrap();
        if written.as_ref() == Some(&apis) {
            return;
        }
        let path = self.options.state_dir.apis_json();
        let mut text = serde_json::to_vec_pretty(&apis).unwrap_or_default();
        text.push(b'\n');
        match crate::workspace::write_atomic(&path, &text) {
            Ok(()) => *written = Some(apis),
            Err(error) => tracing::warn!("cannot write {}: {error}", path.display()),
        }
    }

    fn api_on(&self, port: u16) -> Option<String> {
        self.ports.lock().unwrap().by_port.get(&port).cloned().flatten()
    }

    /// Stops listening and stops every function instance, waiting for the processes.
    async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for listener in self.listeners.lock().unwrap().drain(..) {
            listener.abort();
        }
        let runtimes: Vec<Arc<Runtime>> = self.runtimes.lock().await.drain().map(|(_, runtime)| runtime).collect();
        for runtime in runtimes {
            match Arc::try_unwrap(runtime) {
                Ok(runtime) => runtime.shutdown().await,
                // An invocation still holds it: dropping the last reference kills the
                // instances (and `local down` kills what is left).
                Err(shared) => drop(shared),
            }
        }
    }
}

#[cfg(test)]
mod tests;
