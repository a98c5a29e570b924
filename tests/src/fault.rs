//! A fault-injecting HTTP proxy on loopback, between the deployer and an AWS emulator.
//!
//! Every request is forwarded to the emulator unless the proxy's [`Rule`] picks a fault for
//! it, and every fault it injects is recorded. The faults are the ways a real endpoint fails:
//! an error answer (5xx, throttling) without the request reaching the emulator, a connection
//! reset before it does, an answer lost after the emulator applied the request, and an
//! answer slower than the caller's timeout. Rules draw from a seeded generator, so a trial
//! is repeatable from its seed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and return the answer.
    Pass,
    /// Answer `503 ServiceUnavailable` without forwarding.
    Unavailable,
    /// Answer as the service does when it throttles (`429`/`400`/`503` with the service's
    /// throttling code), without forwarding.
    Throttle,
    /// Close the connection without forwarding: the request never reaches the emulator.
    ResetBefore,
    /// Forward it, then close the connection without answering: the emulator applied the
    /// request and the caller never hears back.
    LoseAnswer,
    /// Forward it and answer after this delay.
    Slow(Duration),
}

/// One request as a rule sees it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The AWS operation when the request names it (`Action=` of the query protocol,
    /// `X-Amz-Target` of the JSON protocol), else `<METHOD> <path>`.
    pub operation: String,
    protocol: Protocol,
}

impl Call {
    /// Whether the request may change anything: any call but reads (`GET`, `HEAD`, and the
    /// query and JSON protocols' `Get*`, `List*`, `Describe*`).
    pub fn is_mutation(&self) -> bool {
        match self.protocol {
            Protocol::Query | Protocol::Json => {
                let action = self.operation.rsplit('.').next().unwrap_or_default();
                !["Get", "List", "Describe"].iter().any(|read| action.starts_with(read))
            }
            Protocol::Rest => !matches!(self.method.as_str(), "GET" | "HEAD"),
        }
    }

    /// Whether the request goes to the state bucket (named `*-state-*`).
    pub fn is_state(&self) -> bool {
        matches!(self.protocol, Protocol::Rest) && self.path.trim_start_matches('/').contains("-state-")
    }
}

/// How the service encodes requests and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// IAM, STS: form bodies with `Action=`, XML errors.
    Query,
    /// CloudWatch Logs: `X-Amz-Target`, JSON errors with `__type`.
    Json,
    /// S3, Lambda, API Gateway: the operation is the method and path.
    Rest,
}

/// Picks the fault for each request, drawing from the proxy's seeded generator.
pub type Rule = Box<dyn FnMut(&Call, &mut fastrand::Rng) -> Fault + Send>;

/// Forwards every request unchanged.
pub fn pass() -> Rule {
    Box::new(|_, _| Fault::Pass)
}

/// One injected fault: what it hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub operation: String,
    pub fault: Fault,
}

struct Shared {
    rule: Mutex<(Rule, fastrand::Rng)>,
    injected: Mutex<Vec<Injected>>,
    upstream: SocketAddr,
}

/// A running proxy. Dropping it stops it.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:N`),
    /// applying `rule` with a generator seeded with `seed`.
    pub async fn start(upstream: &str, seed: u64, rule: Rule) -> Result<Self> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("the upstream {upstream} is not http://<ip>:<port>"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            rule: Mutex::new((rule, fastrand::Rng::with_seed(seed))),
            injected: Mutex::new(Vec::new()),
            upstream,
        });
        let (stop, mut stopped) = watch::channel(false);
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| handle(Arc::clone(&shared), request));
                    // A fault ends the connection with an error; that is the point.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { endpoint, shared, stop })
    }

    /// The proxy's endpoint URL, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Replaces the rule (the generator goes on from where it is).
    pub fn set_rule(&self, rule: Rule) {
        self.shared.rule.lock().unwrap().0 = rule;
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.shared.injected.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let call = describe(&parts, &body);
    let fault = {
        let mut rule = shared.rule.lock().unwrap();
        let (rule, rng) = &mut *rule;
        rule(&call, rng)
    };
    if fault != Fault::Pass {
        shared.injected.lock().unwrap().push(Injected { operation: call.operation.clone(), fault });
    }
    match fault {
        Fault::Unavailable => return Ok(error_answer(&call, false)),
        Fault::Throttle => return Ok(error_answer(&call, true)),
        Fault::ResetBefore => return Err(Dropped),
        Fault::Pass | Fault::LoseAnswer | Fault::Slow(_) => {}
    }
    let answer = forward(shared.upstream, Request::from_parts(parts, Full::new(body))).await;
    match fault {
        Fault::LoseAnswer => Err(Dropped),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            answer
        }
        _ => answer,
    }
}

async fn forward(upstream: SocketAddr, request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Dropped> {
    let stream = TcpStream::connect(upstream).await.map_err(|_| Dropped)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| Dropped)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|_| Dropped)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn describe(parts: &hyper::http::request::Parts, body: &[u8]) -> Call {
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    if let Some(target) = parts.headers.get("x-amz-target").and_then(|value| value.to_str().ok()) {
        return Call { method, path, operation: target.to_owned(), protocol: Protocol::Json };
    }
    let form = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if form {
        let action = form_urlencoded::parse(body).find(|(key, _)| key == "Action").map(|(_, value)| value.into_owned());
        if let Some(action) = action {
            return Call { method, path, operation: action, protocol: Protocol::Query };
        }
    }
    let operation = format!("{method} {path}");
    Call { method, path, operation, protocol: Protocol::Rest }
}

/// The error answer the service would give, in its protocol.
fn error_answer(call: &Call, throttled: bool) -> Response<Full<Bytes>> {
    let (status, code) = match (call.protocol, throttled) {
        (_, false) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        (Protocol::Query, true) => (StatusCode::BAD_REQUEST, "Throttling"),
        (Protocol::Json, true) => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        (Protocol::Rest, true) if is_s3(call) => (StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
        (Protocol::Rest, true) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
    };
    let message = "injected by the fault proxy";
    let (content_type, body) = match call.protocol {
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                 <RequestId>fault-proxy</RequestId></ErrorResponse>"
            ),
        ),
        Protocol::Json => ("application/x-amz-json-1.1", format!(r#"{{"__type":"{code}","message":"{message}"}}"#)),
        Protocol::Rest if is_s3(call) => {
            ("application/xml", format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>"))
        }
        Protocol::Rest => ("application/json", format!(r#"{{"message":"{message}"}}"#)),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// S3's paths are buckets and keys; Lambda's and API Gateway's start with a version.
fn is_s3(call: &Call) -> bool {
    let first = call.path.trim_start_matches('/').split('/').next().unwrap_or_default();
    !(first.starts_with("20") || first == "v2" || first == "_ministack")
}
