//! The S3 endpoint of the local functions (`AWS_ENDPOINT_URL_S3`), so that the URLs they
//! presign point here. Every request is forwarded to the emulator unchanged (method, path,
//! query, headers and body, streamed both ways); an object created through it (PutObject,
//! CopyObject, CompleteMultipartUpload, answered with success) is then announced to the
//! bucket's notifications ([`super::notify`]), as S3 announces it. Objects written to the
//! emulator directly are not announced: the emulator does not tell.
//!
//! Path-style requests only (`/<bucket>/<key>`), which is how the local functions address S3.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::notify::Creation;
use super::*;

type S3Body = BoxBody<Bytes, hyper::Error>;

/// The name of an object-creating request's event, without `s3:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedBy {
    Put,
    Copy,
    CompleteMultipartUpload,
}

impl CreatedBy {
    pub fn event_name(self) -> &'static str {
        match self {
            CreatedBy::Put => "ObjectCreated:Put",
            CreatedBy::Copy => "ObjectCreated:Copy",
            CreatedBy::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
        }
    }
}

/// The bucket, the decoded key and the kind of creation of a request that creates an object
/// when it succeeds; `None` for every other request.
pub fn creation(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<(String, String, CreatedBy)> {
    let (bucket, key) = path.strip_prefix('/')?.split_once('/')?;
    let key = percent_encoding::percent_decode_str(key).decode_utf8().ok()?.into_owned();
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let names: Vec<String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).map(|(name, _)| name.into_owned()).collect();
    // A presigned URL's own parameters, and the SDK's `x-id`; anything else is a subresource
    // (`?tagging`, `?acl`, `?uploadId`, `?partNumber`, ...).
    let plain = names.iter().all(|name| name.to_ascii_lowercase().starts_with("x-amz-") || name == "x-id");
    let by = if *method == Method::PUT && plain {
        if headers.contains_key("x-amz-copy-source") {
            CreatedBy::Copy
        } else {
            CreatedBy::Put
        }
    } else if *method == Method::POST && names.iter().any(|name| name == "uploadId") {
        CreatedBy::CompleteMultipartUpload
    } else {
        return None;
    };
    Some((bucket.to_owned(), key, by))
}

impl DataPlane {
    pub(super) fn spawn_s3_listener(self: &Arc<Self>, listener: TcpListener) {
        self.spawn_accept_loop(listener, "the S3 endpoint".to_owned(), |plane, peer, request| async move {
            plane.forward_s3(peer, request).await
        });
    }

    /// Forwards one request to the emulator and answers what it answers.
    async fn forward_s3(self: &Arc<Self>, peer: SocketAddr, request: Request<Incoming>) -> Response<S3Body> {
        let begun = std::time::Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if let Err(refusal) = loopback::check_headers(request.headers()) {
            tracing::warn!("S3 {method} {path} -> 403: {refusal}");
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", &refusal);
        }
        let created = creation(&method, &path, request.uri().query(), request.headers());
        let size = request.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let response = match self.send_to_emulator(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(
                    "S3 {method} {path}: the emulator at {} did not answer: {error:#}",
                    self.options.endpoint
                );
                return s3_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the emulator did not answer");
            }
        };
        let status = response.status();
        tracing::info!("S3 {method} {path} -> {} in {} ms", status.as_u16(), begun.elapsed().as_millis());
        let Some((bucket, key, by)) = created.filter(|_| status.is_success()) else {
            return response.map(BodyExt::boxed);
        };
        let etag = response.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // CompleteMultipartUpload can fail with 200 and an error document: read it first.
        let (response, created) = if by == CreatedBy::CompleteMultipartUpload {
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    tracing::warn!("S3 {method} {path}: reading the emulator's answer: {error}");
                    return s3_error(StatusCode::BAD_GATEWAY, "InternalError", "the emulator's answer was cut off");
                }
            };
            let completed = String::from_utf8_lossy(&body).contains("CompleteMultipartUploadResult");
            (Response::from_parts(parts, full_body(body)), completed)
        } else {
            (response.map(BodyExt::boxed), true)
        };
        if created {
            self.announce(Creation {
                bucket,
                key,
                by,
                size: size.unwrap_or(0),
                etag,
                source_ip: peer.ip().to_string(),
                time: SystemTime::now(),
            });
        }
        response
    }

    /// One request over a fresh connection to the emulator, the `Host` header kept.
    async fn send_to_emulator(&self, request: Request<Incoming>) -> anyhow::Result<Response<Incoming>> {
        let address = crate::local::layout::loopback_address(&self.options.endpoint)?;
        let stream = TcpStream::connect(address).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("S3 connection to the emulator: {error}");
            }
        });
        let (mut parts, body) = request.into_parts();
        // Origin form: the path and query, as the client sent them.
        parts.uri = parts.uri.path_and_query().map_or_else(|| "/".parse(), |pq| pq.as_str().parse())?;
        Ok(sender.send_request(Request::from_parts(parts, body)).await?)
    }
}

fn full_body(bytes: Bytes) -> S3Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An S3 error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<S3Body> {
    let message = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(full_body(Bytes::from(body)))
        .expect("a valid response")
}
