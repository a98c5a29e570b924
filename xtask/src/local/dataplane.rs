//! The local data plane (`cargo xtask local serve`, started in the background by `local
//! up`): serves every HTTP API deployed into the emulator on 127.0.0.1, the way API Gateway
//! serves it, and runs the Lambda functions behind it as deployed.
//!
//! - Configuration comes from the emulator's control planes (see [`super::discovery`]),
//!   polled every second and, when a request finds nothing, re-read at once: a new deploy is
//!   served without a restart, and a new `CodeSha256` means new function instances.
//! - Ports: the `local` environment's API (`<project>-local-api`, tagged so) gets
//!   `api_port`; every other API the next free port above it, kept while the data plane
//!   runs. `apis.json` in the state directory maps API ids to their environment, name and
//!   URL.
//! - A request is matched to a route (exact `METHOD /path`, then `ANY /path`, then
//!   `$default`; unmatched: `404 {"message":"Not Found"}`), becomes a payload 2.0 event
//!   ([`super::event`]), runs on the function ([`super::runtime`], one runtime per region so
//!   each function gets its own `AWS_REGION`), and the answer becomes the HTTP response. A
//!   function timeout (or API Gateway's integration timeout) is `503 {"message":"Service
//!   Unavailable"}`, a crash `502 {"message":"Internal Server Error"}`, a function error
//!   `500`, as API Gateway answers them.
//! - CORS: preflight requests are answered from the API's CORS configuration and CORS
//!   headers are added to responses, as HTTP APIs do.
//! - Function processes reach the emulator through the standard variables: `AWS_ENDPOINT_URL`,
//!   test credentials, `S3_FORCE_PATH_STYLE=true`, and `AWS_ENDPOINT_URL_REKOGNITION` when the
//!   state directory's `face.url` names the local face-analysis service.
//! - `GET /_local/health` and `GET /_local/apis` on `api_port` are the data plane's own.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::discovery::{self, Api, ControlPlane, Cors, Function, Snapshot, TEST_CREDENTIALS};
use super::event::{self, EventContext};
use super::layout::{ServedApi, StateDir, CONTROL_PREFIX, HEALTH_PATH, LOCAL_ENVIRONMENT};
use super::runtime::{extract_bootstrap, FunctionSpec, InvokeError, Runtime, RuntimeConfig};

/// API Gateway's limit on a request payload.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// The variable that points a function's Rekognition client at the face-analysis service.
pub const REKOGNITION_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_REKOGNITION";

/// How `local serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The emulator, e.g. `http://127.0.0.1:4566`.
    pub endpoint: String,
    /// The `local` environment API's port; other APIs get the ports above it.
    pub api_port: u16,
    pub state_dir: StateDir,
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
    let control = ControlPlane::connect(&options.endpoint, &options.regions).await;
    tracing::info!(
        "data plane pid {} serving on http://127.0.0.1:{} from the emulator at {} (regions {})",
        std::process::id(),
        options.api_port,
        options.endpoint,
        control.regions().collect::<Vec<_>>().join(", ")
    );
    let plane = Arc::new(DataPlane::new(options, control));
    plane.ports.lock().unwrap().by_port.insert(plane.options.api_port, None);
    plane.refresh().await;
    let api_port = plane.options.api_port;
    plane.spawn_listener(listener, api_port);

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
    control: ControlPlane,
    snapshot: RwLock<Arc<Snapshot>>,
    /// When the read of the current snapshot began.
    snapshot_started: Mutex<Instant>,
    refresh_lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
    ports: Mutex<Ports>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    written_apis: Mutex<Option<BTreeMap<String, ServedApi>>>,
    /// One runtime per region: `AWS_REGION` is the runtime's.
    runtimes: tokio::sync::Mutex<HashMap<String, Arc<Runtime>>>,
    /// By (region, function name); preparing (fetching code) is serialized.
    /// By region, function name and qualifier.
    prepared: tokio::sync::Mutex<HashMap<FunctionKey, Prepared>>,
    stopping: AtomicBool,
}

type HttpResponse = Response<Full<Bytes>>;

impl DataPlane {
    fn new(options: ServeOptions, control: ControlPlane) -> Self {
        Self {
            options,
            control,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            snapshot_started: Mutex::new(Instant::now()),
            refresh_lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
            ports: Mutex::new(Ports::default()),
            listeners: Mutex::new(Vec::new()),
            written_apis: Mutex::new(None),
            runtimes: tokio::sync::Mutex::new(HashMap::new()),
            prepared: tokio::sync::Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
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

    /// Makes sure the snapshot was read after `moment` (a request's arrival), so whatever
    /// was deployed before the request is seen. Concurrent callers share one re-read.
    async fn refresh_since(self: &Arc<Self>, moment: Instant) {
        if *self.snapshot_started.lock().unwrap() >= moment {
            return;
        }
        let _guard = self.refresh_lock.lock().await;
        if *self.snapshot_started.lock().unwrap() >= moment {
            return;
        }
        self.refresh_locked().await;
    }

    async fn refresh_locked(self: &Arc<Self>) {
        let started = Instant::now();
        match self.control.snapshot().await {
            Ok(snapshot) => {
                self.assign_ports(&snapshot).await;
                *self.snapshot.write().unwrap() = Arc::new(snapshot);
                *self.snapshot_started.lock().unwrap() = started;
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

    // -----------------------------------------------------------------------------------
    // Serving

    fn spawn_listener(self: &Arc<Self>, listener: TcpListener, port: u16) {
        let plane = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("accepting on port {port}: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let plane = Arc::clone(&plane);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let plane = Arc::clone(&plane);
                        async move { Ok::<_, Infallible>(plane.handle(port, peer, request).await) }
                    });
                    if let Err(error) =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                    {
                        tracing::debug!("connection from {peer} on port {port}: {error}");
                    }
                });
            }
        });
        self.listeners.lock().unwrap().push(task);
    }

    async fn handle(self: &Arc<Self>, port: u16, peer: SocketAddr, request: Request<Incoming>) -> HttpResponse {
        let begun = Instant::now();
        let arrived = SystemTime::now();
        let method = request.method().clone();
        let target = request.uri().path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        if port == self.options.api_port && request.uri().path().starts_with(CONTROL_PREFIX) {
            return self.control_endpoint(&method, request.uri().path());
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                tracing::info!("port {port} {method} {target} -> 413 (body over {MAX_REQUEST_BYTES} bytes)");
                return full(message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"));
            }
            Err(error) => {
                tracing::info!("port {port} {method} {target} -> 400 (reading the body: {error})");
                return full(message(StatusCode::BAD_REQUEST, "Bad Request"));
            }
        };
        let request = Request::from_parts(parts, body);
        let request_id = request_id();
        let (mut response, what) = self.serve_api(port, peer, request, begun, arrived, &request_id).await;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("apigw-requestid", value);
        }
        tracing::info!(
            "port {port} {method} {target} -> {what} -> {} in {} ms",
            response.status().as_u16(),
            begun.elapsed().as_millis()
        );
        full(response)
    }

    fn control_endpoint(&self, method: &Method, path: &str) -> HttpResponse {
        let body = match (method, path) {
            (&Method::GET, HEALTH_PATH) => json!({
                "status": "ok",
                "pid": std::process::id(),
                "endpoint": self.options.endpoint,
                "api_port": self.options.api_port,
                "apis": self.served_apis().len(),
                "last_error": *self.last_error.lock().unwrap(),
            }),
            (&Method::GET, "/_local/apis") => json!(self.served_apis()),
            _ => return full(message(StatusCode::NOT_FOUND, "Not Found")),
        };
        let mut response = Response::new(Bytes::from(body.to_string()));
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        full(response)
    }

    /// The API's answer to `request`, and what happened (for the log line).
    async fn serve_api(
        self: &Arc<Self>,
        port: u16,
        peer: SocketAddr,
        request: Request<Bytes>,
        begun: Instant,
        arrived: SystemTime,
        request_id: &str,
    ) -> (Response<Bytes>, String) {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        // What the request needs: its API, a route, the route's integration and function. A
        // miss makes sure the configuration was read after the request arrived, so a deploy
        // that finished before the request is served.
        let mut refreshed = false;
        let (snapshot, api_id) = loop {
            let snapshot = self.snapshot();
            let api_id = self.api_on(port);
            let complete = api_id.as_deref().and_then(|id| snapshot.api(id)).is_some_and(|api| {
                api.route(&method, &path).is_some_and(|matched| {
                    matched
                        .route
                        .integration_id
                        .as_ref()
                        .and_then(|id| api.integrations.get(id))
                        .is_some_and(|integration| snapshot.function_for(integration).is_some())
                })
            });
            if complete || refreshed {
                break (snapshot, api_id);
            }
            self.refresh_since(begun).await;
            refreshed = true;
        };
        let Some(api) = api_id.as_deref().and_then(|id| snapshot.api(id)) else {
            return (message(StatusCode::NOT_FOUND, "Not Found"), "no API on this port".to_owned());
        };
        let origin = request.headers().get(http::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let (Some(cors), Some(origin)) = (&api.cors, &origin) {
            if request.method() == Method::OPTIONS
                && request.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                return (preflight(cors, origin), format!("{} CORS preflight", api.id));
            }
        }
        let (mut response, what) = self.invoke_route(api, &snapshot, port, peer, request, arrived, request_id).await;
        if let (Some(cors), Some(origin)) = (&api.cors, &origin) {
            add_cors_headers(&mut response, cors, origin);
        }
        (response, what)
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke_route(
        self: &Arc<Self>,
        api: &Api,
        snapshot: &Snapshot,
        port: u16,
        peer: SocketAddr,
        request: Request<Bytes>,
        arrived: SystemTime,
        request_id: &str,
    ) -> (Response<Bytes>, String) {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let Some(matched) = api.route(&method, &path) else {
            return (message(StatusCode::NOT_FOUND, "Not Found"), format!("{} no route", api.id));
        };
        let route_key = matched.route.key.clone();
        let what = |detail: &str| format!("{} {route_key} {detail}", api.id);
        let Some(integration) = matched.route.integration_id.as_ref().and_then(|id| api.integrations.get(id)) else {
            tracing::warn!("route {route_key} of API {} has no integration (target)", api.id);
            return (internal_server_error(), what("(no integration)"));
        };
        if integration.kind != "AWS_PROXY" || discovery::function_of_uri(&integration.uri).is_none() {
            tracing::warn!(
                "route {route_key} of API {}: integration {} ({} {}) is not a Lambda proxy integration, which is all \
                 the local data plane runs",
                api.id,
                integration.id,
                integration.kind,
                integration.uri
            );
            return (internal_server_error(), what("(unsupported integration)"));
        }
        if integration.payload_format_version != "2.0" {
            tracing::warn!(
                "integration {} of API {} uses payload format {}; the local data plane speaks 2.0 only",
                integration.id,
                api.id,
                integration.payload_format_version
            );
            return (internal_server_error(), what("(payload format 1.0)"));
        }
        let Some(function) = snapshot.function_for(integration) else {
            tracing::warn!("the function of integration {} ({}) does not exist", integration.id, integration.uri);
            return (internal_server_error(), what("(no such function)"));
        };
        let function = match self.control.resolve(function).await {
            Ok(function) => function,
            Err(error) => {
                tracing::error!("cannot resolve {}: {error:#}", function.name);
                return (
                    internal_server_error(),
                    format!("{} {route_key} -> {} (alias unavailable)", api.id, function.name),
                );
            }
        };
        let function = &function;
        let target = match &function.qualifier {
            Some(qualifier) => format!("{}:{qualifier} (version {})", function.name, function.version),
            None => function.name.clone(),
        };
        let what = |detail: &str| format!("{} {route_key} -> {target}{detail}", api.id);
        let spec = match self.prepare(function).await {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!("cannot run {}: {error:#}", function.name);
                return (internal_server_error(), what(" (code unavailable)"));
            }
        };
        let host = request.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let context = EventContext {
            api_id: api.id.clone(),
            stage: matched.stage.clone(),
            route_key: route_key.clone(),
            account_id: discovery::account_of_arn(&function.arn).unwrap_or("123456789012").to_owned(),
            domain_name: host.unwrap_or_else(|| format!("127.0.0.1:{port}")),
            source_ip: peer.ip().to_string(),
            request_id: request_id.to_owned(),
            time: arrived,
            path_parameters: matched.path_parameters.clone(),
            stage_variables: BTreeMap::new(),
        };
        let payload = match serde_json::to_vec(&event::to_event(request, &context)) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!("cannot serialize the event: {error}");
                return (internal_server_error(), what(" (event)"));
            }
        };
        let runtime = match self.runtime(&function.region).await {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!("cannot start the Lambda runtime for {}: {error:#}", function.region);
                return (internal_server_error(), what(" (runtime)"));
            }
        };
        match tokio::time::timeout(integration.timeout, runtime.invoke(&spec, payload)).await {
            Ok(Ok(answer)) => (event::from_response(&answer), what("")),
            Err(_) => {
                tracing::warn!(
                    "{}: no response within the integration timeout of {} ms: 503",
                    function.name,
                    integration.timeout.as_millis()
                );
                (message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"), what(" (integration timeout)"))
            }
            Ok(Err(error)) => {
                let (status, detail) = error_response(&error);
                tracing::warn!(
                    "{} failed ({}): {error}; see {}",
                    function.name,
                    error.error_type(),
                    spec.log_file.display()
                );
                (status, what(detail))
            }
        }
    }

    /// The function's spec for the runtime: its code fetched (once per code hash) and
    /// unpacked, its deployed configuration, and the local variables.
    async fn prepare(&self, function: &Function) -> Result<FunctionSpec> {
        let face_url = self.options.state_dir.face_url();
        let key = (function.region.clone(), function.name.clone(), function.qualifier.clone());
        let mut prepared = self.prepared.lock().await;
        if let Some(known) = prepared.get(&key) {
            if known.function == *function && known.face_url == face_url {
                return Ok(known.spec.clone());
            }
        }
        let (bootstrap, code_sha256) = match prepared.get(&key) {
            Some(known) if known.spec.code_sha256 == function.code_sha256 => {
                (known.spec.bootstrap.clone(), known.spec.code_sha256.clone())
            }
            _ => {
                let code = self.control.fetch_code(function).await?;
                let dir = self.options.state_dir.dir().join("functions").join(&function.name);
                let bootstrap = extract_bootstrap(&code.bytes, &code.code_sha256, &dir)
                    .with_context(|| format!("unpacking the code of {} from {}", function.name, code.source))?;
                tracing::info!(
                    "{}: code {} from {} ({} bytes) unpacked to {}",
                    function.name,
                    code.code_sha256,
                    code.source,
                    code.bytes.len(),
                    bootstrap.display()
                );
                (bootstrap, code.code_sha256)
            }
        };
        let log_file = self.options.state_dir.function_log(&function.name);
        let spec =
            deployed_spec(function, code_sha256, bootstrap, &self.options.endpoint, face_url.as_deref(), log_file);
        prepared.insert(key, Prepared { function: function.clone(), face_url, spec: spec.clone() });
        Ok(spec)
    }

    async fn runtime(&self, region: &str) -> Result<Arc<Runtime>> {
        let mut runtimes = self.runtimes.lock().await;
        if let Some(runtime) = runtimes.get(region) {
            return Ok(Arc::clone(runtime));
        }
        anyhow::ensure!(!self.stopping.load(Ordering::SeqCst), "the data plane is stopping");
        let config = RuntimeConfig {
            region: region.to_owned(),
            max_instances_per_function: self.options.max_instances,
            ..RuntimeConfig::default()
        };
        let runtime = Arc::new(Runtime::start_with(config).await.context("starting the Lambda Runtime API")?);
        tracing::info!("Lambda Runtime API for {region} on {}", runtime.address());
        runtimes.insert(region.to_owned(), Arc::clone(&runtime));
        Ok(runtime)
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

/// How the local runtime runs a deployed function: as configured, from `bootstrap` (unpacked
/// from code `code_sha256`), with [`function_environment`].
pub fn deployed_spec(
    function: &Function,
    code_sha256: String,
    bootstrap: std::path::PathBuf,
    endpoint: &str,
    face_url: Option<&str>,
    log_file: std::path::PathBuf,
) -> FunctionSpec {
    FunctionSpec {
        name: function.name.clone(),
        arn: function.arn.clone(),
        code_sha256,
        bootstrap,
        environment: function_environment(function, endpoint, face_url),
        memory_mb: function.memory_mb,
        timeout: function.timeout,
        log_file,
    }
}

/// The environment of a function process: the deployed variables, then what points its SDK
/// at the emulator. `AWS_REGION` comes from the region's runtime.
pub fn function_environment(function: &Function, endpoint: &str, face_url: Option<&str>) -> BTreeMap<String, String> {
    let mut environment = function.environment.clone();
    environment.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned());
    environment.insert("AWS_ACCESS_KEY_ID".to_owned(), TEST_CREDENTIALS.0.to_owned());
    environment.insert("AWS_SECRET_ACCESS_KEY".to_owned(), TEST_CREDENTIALS.1.to_owned());
    environment.insert(api_common::FORCE_PATH_STYLE_ENV.to_owned(), "true".to_owned());
    match face_url {
        Some(url) => environment.insert(REKOGNITION_ENDPOINT_VAR.to_owned(), url.to_owned()),
        None => environment.remove(REKOGNITION_ENDPOINT_VAR),
    };
    environment
}

/// API Gateway's answer when the function does not answer.
fn error_response(error: &InvokeError) -> (Response<Bytes>, &'static str) {
    match error {
        InvokeError::Timeout { .. } => {
            (message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"), " (function timeout)")
        }
        InvokeError::Crashed { .. } => (message(StatusCode::BAD_GATEWAY, "Internal Server Error"), " (crashed)"),
        InvokeError::InitError { .. } => (message(StatusCode::BAD_GATEWAY, "Internal Server Error"), " (init error)"),
        InvokeError::FunctionError { .. } => (internal_server_error(), " (function error)"),
        InvokeError::Unavailable(_) => {
            (message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"), " (unavailable)")
        }
    }
}

/// API Gateway's own JSON error: `{"message":"..."}`.
pub fn message(status: StatusCode, text: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(json!({ "message": text }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn internal_server_error() -> Response<Bytes> {
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

fn full(response: Response<Bytes>) -> HttpResponse {
    response.map(Full::new)
}

/// An id like API Gateway's (`JKJaXmPLvHcESHA=`).
fn request_id() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(&bytes[..11])
}

fn origin_allowed(cors: &Cors, origin: &str) -> Option<String> {
    if cors.allow_origins.iter().any(|allowed| allowed == "*") {
        return Some(if cors.allow_credentials { origin.to_owned() } else { "*".to_owned() });
    }
    cors.allow_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)).then(|| origin.to_owned())
}

/// API Gateway's answer to a CORS preflight: 204, with the CORS headers when the origin is
/// allowed.
fn preflight(cors: &Cors, origin: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let Some(allowed) = origin_allowed(cors, origin) else { return response };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("access-control-allow-origin", allowed);
    if !cors.allow_methods.is_empty() {
        set("access-control-allow-methods", cors.allow_methods.join(","));
    }
    if !cors.allow_headers.is_empty() {
        set("access-control-allow-headers", cors.allow_headers.join(","));
    }
    if let Some(max_age) = cors.max_age {
        set("access-control-max-age", max_age.to_string());
    }
    if cors.allow_credentials {
        set("access-control-allow-credentials", "true".to_owned());
    }
    response
}

/// The CORS headers API Gateway puts on an actual response (replacing the function's own).
fn add_cors_headers(response: &mut Response<Bytes>, cors: &Cors, origin: &str) {
    let headers = response.headers_mut();
    for name in ["access-control-allow-origin", "access-control-expose-headers", "access-control-allow-credentials"] {
        headers.remove(name);
    }
    let Some(allowed) = origin_allowed(cors, origin) else { return };
    if let Ok(value) = HeaderValue::from_str(&allowed) {
        headers.insert("access-control-allow-origin", value);
    }
    if !cors.expose_headers.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&cors.expose_headers.join(",")) {
            headers.insert("access-control-expose-headers", value);
        }
    }
    if cors.allow_credentials {
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function() -> Function {
        Function {
            name: "image-analyzer-local-analyze".into(),
            arn: "arn:aws:lambda:us-east-1:123456789012:function:image-analyzer-local-analyze".into(),
            region: "us-east-1".into(),
            qualifier: Some("live".into()),
            version: "3".into(),
            code_sha256: "abc=".into(),
            memory_mb: 256,
            timeout: Duration::from_secs(10),
            environment: BTreeMap::from([
                ("UPLOAD_BUCKET".into(), "b".into()),
                (REKOGNITION_ENDPOINT_VAR.into(), "http://stale".into()),
            ]),
        }
    }

    #[test]
    fn functions_reach_the_emulator_through_the_standard_variables() {
        let environment = function_environment(&function(), "http://127.0.0.1:4566", None);
        assert_eq!(environment["UPLOAD_BUCKET"], "b");
        assert_eq!(environment["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
        assert_eq!(environment["AWS_ACCESS_KEY_ID"], "test");
        assert_eq!(environment["AWS_SECRET_ACCESS_KEY"], "test");
        assert_eq!(environment["S3_FORCE_PATH_STYLE"], "true");
        assert!(!environment.contains_key(REKOGNITION_ENDPOINT_VAR));
        let environment = function_environment(&function(), "http://127.0.0.1:4566", Some("http://127.0.0.1:4600"));
        assert_eq!(environment[REKOGNITION_ENDPOINT_VAR], "http://127.0.0.1:4600");
    }

    #[test]
    fn invoke_errors_become_api_gateway_answers() {
        let cases = [
            (InvokeError::Timeout { after: Duration::from_secs(1), during_init: false }, 503, "Service Unavailable"),
            (
                InvokeError::Crashed { exit_code: Some(1), signal: None, log_tail: String::new() },
                502,
                "Internal Server Error",
            ),
            (
                InvokeError::InitError {
                    error_type: "Runtime.ExitError".into(),
                    error_message: "x".into(),
                    exit_code: Some(1),
                    log_tail: String::new(),
                },
                502,
                "Internal Server Error",
            ),
            (
                InvokeError::FunctionError { error_type: "E".into(), error_message: "m".into() },
                500,
                "Internal Server Error",
            ),
        ];
        for (error, status, text) in cases {
            let (response, _) = error_response(&error);
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(response.body().as_ref(), json!({ "message": text }).to_string().as_bytes());
        }
    }

    #[test]
    fn cors_follows_the_api_configuration() {
        let cors = Cors {
            allow_origins: vec!["http://localhost:3000".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            max_age: Some(300),
            ..Cors::default()
        };
        let answer = preflight(&cors, "http://localhost:3000");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(answer.headers()["access-control-allow-origin"], "http://localhost:3000");
        assert_eq!(answer.headers()["access-control-allow-methods"], "GET,POST");
        assert_eq!(answer.headers()["access-control-max-age"], "300");
        assert!(preflight(&cors, "http://evil.example").headers().get("access-control-allow-origin").is_none());
        let mut response = message(StatusCode::OK, "x");
        response.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
        add_cors_headers(&mut response, &cors, "http://evil.example");
        assert!(response.headers().get("access-control-allow-origin").is_none());
        let any = Cors { allow_origins: vec!["*".into()], ..Cors::default() };
        let mut response = message(StatusCode::OK, "x");
        add_cors_headers(&mut response, &any, "http://a.example");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
    }

    #[test]
    fn request_ids_look_like_api_gateways() {
        let id = request_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
    }
}
