//! Serving: one listener per API port; a request matched to its route, invoked on its
//! function, and answered as API Gateway answers, CORS included.

use crate::local::discovery::{self, Api, Snapshot};
use crate::local::event::{self, EventContext};
use crate::local::layout::{CONTROL_PREFIX, HEALTH_PATH, REFRESH_PATH};
use crate::local::runtime::InvokeError;

use super::cors::{add_cors_headers, preflight};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;

use super::*;

impl DataPlane {
    pub(super) fn spawn_listener(self: &Arc<Self>, listener: TcpListener, port: u16) {
        self.spawn_accept_loop(listener, format!("port {port}"), move |plane, peer, request| async move {
            plane.handle(port, peer, request).await
        });
    }

    /// Accepts connections on `listener` and serves each request with `serve`, over HTTP/1.1:
    /// headers within [`HEADER_READ_TIMEOUT`], a [`CONNECTION_BUFFER_BYTES`] read buffer, and at
    /// most [`MAX_CONNECTIONS`] open over every listener (more wait in the kernel's queue).
    pub(super) fn spawn_accept_loop<F, Fut, B>(self: &Arc<Self>, listener: TcpListener, what: String, serve: F)
    where
        F: Fn(Arc<Self>, SocketAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let plane = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                let Ok(open) = Arc::clone(&plane.connections).acquire_owned().await else { return };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("accepting on {what}: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (plane, serve, what) = (Arc::clone(&plane), serve.clone(), what.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (plane, serve) = (Arc::clone(&plane), serve.clone());
                        async move { Ok::<_, Infallible>(serve(plane, peer, request).await) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .max_buf_size(CONNECTION_BUFFER_BYTES)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(error) = served {
                        tracing::debug!("connection from {peer} on {what}: {error}");
                    }
                    drop(open);
                });
            }
        });
        self.listeners.lock().unwrap().push(task);
    }

    pub(super) async fn handle(
        self: &Arc<Self>,
        port: u16,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> HttpResponse {
        let begun = Instant::now();
        let arrived = SystemTime::now();
        let method = request.method().clone();
        let target = request.uri().path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        if let Err(refusal) = loopback::check_headers(request.headers()) {
            tracing::warn!("port {port} {method} {target} -> 403: {refusal}");
            return full(message(StatusCode::FORBIDDEN, "Forbidden"));
        }
        if port == self.options.api_port && request.uri().path().starts_with(CONTROL_PREFIX) {
            return self.control_endpoint(&method, request.uri().path()).await;
        }
        let (parts, body) = request.into_parts();
        // A body announced over the limit is refused unread; any other is read only once the
        // memory it may take is available.
        let announced = body.size_hint().exact().map_or(MAX_REQUEST_BYTES as u64, |exact| exact);
        if announced > MAX_REQUEST_BYTES as u64 {
            tracing::info!("port {port} {method} {target} -> 413 (body of {announced} bytes announced)");
            return full(message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"));
        }
        let Ok(_held) = Arc::clone(&self.body_bytes).acquire_many_owned(announced as u32).await else {
            return full(message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"));
        };
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

    pub(super) async fn control_endpoint(self: &Arc<Self>, method: &Method, path: &str) -> HttpResponse {
        let body = match (method, path) {
            // A deploy, promotion or rollback through the tool asks for this when it finishes,
            // so that what it changed is served at once rather than at the next poll.
            (&Method::POST, REFRESH_PATH) => {
                self.refresh().await;
                json!({ "status": "ok", "apis": self.served_apis().len(), "last_error": *self.last_error.lock().unwrap() })
            }
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
    pub(super) async fn serve_api(
        self: &Arc<Self>,
        port: u16,
        peer: SocketAddr,
        request: Request<Bytes>,
        begun: Instant,
        arrived: SystemTime,
        request_id: &str,
    ) -> (Response<Bytes>, String) {
        // Everything the request needs comes from the snapshot, which the background refresh
        // keeps current (and `POST /_local/refresh` renews at once): the emulator is never
        // asked on the request path, so a slow or stopped emulator does not slow requests.
        let snapshot = self.snapshot();
        let api_id = self.api_on(port);
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
        let (mut response, what) =
            self.invoke_route(api, &snapshot, port, peer, request, begun, arrived, request_id).await;
        if let (Some(cors), Some(origin)) = (&api.cors, &origin) {
            add_cors_headers(&mut response, cors, origin);
        }
        (response, what)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn invoke_route(
        self: &Arc<Self>,
        api: &Api,
        snapshot: &Snapshot,
        port: u16,
        peer: SocketAddr,
        request: Request<Bytes>,
        begun: Instant,
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
        let limit = api.throttling.get(&matched.stage).and_then(|throttling| throttling.limit_for(&route_key));
        if let Some(limit) = limit {
            if !self.throttle.admit((&api.id, &matched.stage, &route_key), limit, Instant::now()) {
                return (message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"), what("(throttled by the stage)"));
            }
        }
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
        let target = match &function.qualifier {
            Some(qualifier) => format!("{}:{qualifier} (version {})", function.name, function.version),
            None => function.name.clone(),
        };
        let what = |detail: &str| format!("{} {route_key} -> {target}{detail}", api.id);
        if let Err(refusal) = self.check_trusted(function) {
            tracing::error!("{refusal}");
            return (message(StatusCode::BAD_GATEWAY, "Internal Server Error"), what(" (code not trusted)"));
        }
        let Some(spec) = self.prepared_spec(function) else {
            tracing::error!("the code of {} could not be made ready; see the log above", function.name);
            return (internal_server_error(), what(" (code unavailable)"));
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
        // API Gateway's integration timeout runs from the request's arrival; the invocation
        // itself is not cut short by it (see `Runtime::invoke_until`).
        let deadline = begun + integration.timeout;
        match runtime.invoke_until(&spec, payload, Some(deadline)).await.result {
            Ok(answer) => (event::from_response(&answer), what("")),
            Err(error) => {
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
}

/// API Gateway's answer when the function does not answer.
pub(super) fn error_response(error: &InvokeError) -> (Response<Bytes>, &'static str) {
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
        InvokeError::Throttled(_) => (message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"), " (throttled)"),
        InvokeError::DeadlinePassed { .. } => {
            (message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"), " (integration timeout)")
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

pub(super) fn internal_server_error() -> Response<Bytes> {
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

pub(super) fn full(response: Response<Bytes>) -> HttpResponse {
    response.map(Full::new)
}

/// An id like API Gateway's (`JKJaXmPLvHcESHA=`).
pub(super) fn request_id() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(&bytes[..11])
}
