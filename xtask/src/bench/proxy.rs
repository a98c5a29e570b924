//! A loopback HTTP proxy that adds a fixed delay to every request before forwarding it to
//! the emulator: simulated cloud latency, so that a benchmark shows how much of a deploy's
//! wall time the engine's parallelism hides behind the dependency graph's critical path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Headers that belong to one connection, not to the request or response they travel with.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"];

/// A running proxy; stops when dropped.
pub struct LatencyProxy {
    address: SocketAddr,
    requests: Arc<AtomicU64>,
    server: JoinHandle<()>,
}

impl LatencyProxy {
    /// Listens on a free loopback port and forwards to `upstream` (e.g.
    /// `http://127.0.0.1:4566`), each request `delay` late.
    pub async fn start(upstream: &str, delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the latency proxy")?;
        let address = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .context("building the proxy's HTTP client")?;
        let upstream: Arc<str> = Arc::from(upstream.trim_end_matches('/'));
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (client, upstream, counter) = (client.clone(), Arc::clone(&upstream), Arc::clone(&counter));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (client, upstream, counter) = (client.clone(), Arc::clone(&upstream), Arc::clone(&counter));
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, Infallible>(forward(&client, &upstream, delay, request).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { address, requests, server })
    }

    /// The proxy's endpoint, to use in place of the emulator's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// How many requests it has forwarded.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    delay: Duration,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return failure(format!("reading the request body: {error}")),
    };
    tokio::time::sleep(delay).await;
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut outgoing = client.request(parts.method, format!("{upstream}{target}")).body(body);
    // The Host header stays the client's: it is part of what SigV4 signed.
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => return failure(format!("forwarding to {upstream}: {error}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return failure(format!("reading the answer of {upstream}: {error}")),
    };
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != http::header::CONTENT_LENGTH {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

fn failure(message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_arrives_late_and_unchanged() {
        let upstream = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = upstream.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                        let host = request.headers()["host"].to_str().unwrap().to_owned();
                        let path = request.uri().to_string();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let text = format!("{host} {path} {}", String::from_utf8_lossy(&body));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let delay = Duration::from_millis(40);
        let proxy = LatencyProxy::start(&format!("http://{upstream_address}"), delay).await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for round in 0..2 {
            let started = std::time::Instant::now();
            let answer = client
                .put(format!("{}/bucket/key?x=1", proxy.endpoint()))
                .body(format!("round {round}"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            let text = answer.text().await.unwrap();
            assert_eq!(text, format!("{} /bucket/key?x=1 round {round}", proxy.address));
            assert!(started.elapsed() >= delay, "answered after {:?}", started.elapsed());
        }
        assert_eq!(proxy.requests(), 2);
    }
}
