//! The HTTP side: Rekognition's JSON 1.1 protocol for `DetectFaces`.
//!
//! `POST` (any path) with `X-Amz-Target: RekognitionService.DetectFaces` and a JSON body; the
//! answer is `application/x-amz-json-1.1`. Errors are HTTP 400 (500 for internal ones) with
//! `{"__type": "<Code>", "Message": "..."}` and `x-amzn-ErrorType: <Code>`. Signatures are
//! not checked. `GET /` answers `{"status":"ok"}` for readiness checks. A request whose `Host`
//! is not a loopback name or address is refused (`AccessDeniedException`; see [`loopback`]).
//!
//! Memory and time are bounded: request bodies over [`ServerConfig::max_body_bytes`] are
//! refused as they stream in, and those not read within [`ServerConfig::body_read_timeout`]
//! are refused too; images over 50 megapixels are refused from their header; S3 objects over 15 MB are refused before they are read, at most
//! [`ServerConfig::max_inferences`] images are decoded and analysed at once (the rest wait),
//! and at most [`ServerConfig::max_connections`] connections are served at once.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::analyzer::Analyzer;
use crate::api::{AttributeSet, DetectFacesRequest, DetectFacesResponse, ErrorCode, RekognitionError};
use crate::input::{self, MAX_IMAGE_BYTES, MAX_S3_OBJECT_BYTES};

/// The only operation served.
pub const DETECT_FACES_TARGET: &str = "RekognitionService.DetectFaces";
const JSON_1_1: &str = "application/x-amz-json-1.1";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Images decoded and analysed at once.
    pub max_inferences: usize,
    /// Largest request body (the JSON with a base64 image of up to 5 MB fits in 8 MiB).
    pub max_body_bytes: usize,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long a request body may take to arrive, so that a slow sender holds no
    /// connection for long.
    pub body_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_inferences: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            max_body_bytes: 8 * 1024 * 1024,
            max_connections: 64,
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything a request needs: the loaded models, an S3 client for `Image.S3Object`, and
/// the limits.
pub struct Service {
    analyzer: Arc<Analyzer>,
    s3: aws_sdk_s3::Client,
    inferences: Arc<Semaphore>,
    config: ServerConfig,
}

impl Service {
    pub fn new(analyzer: Arc<Analyzer>, s3: aws_sdk_s3::Client, config: ServerConfig) -> Self {
        let inferences = Arc::new(Semaphore::new(config.max_inferences.max(1)));
        Self { analyzer, s3, inferences, config }
    }

    /// Handles one HTTP request; never fails (errors are Rekognition error responses).
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let start = Instant::now();
        let result = self.route(request).await;
        let response = match result {
            Ok(Routed::Health) => {
                json_response(StatusCode::OK, "application/json", r#"{"status":"ok"}"#.into(), &request_id)
            }
            Ok(Routed::DetectFaces(answer)) => {
                tracing::info!(%request_id, faces = answer.face_details.len(), elapsed_ms = start.elapsed().as_millis() as u64, "DetectFaces");
                let body = serde_json::to_string(&answer).expect("the response serializes");
                json_response(StatusCode::OK, JSON_1_1, body, &request_id)
            }
            Err(error) => {
                tracing::info!(%request_id, code = error.code.as_str(), message = %error.message, "DetectFaces failed");
                let mut response = json_response(
                    StatusCode::from_u16(error.code.status()).expect("a valid status"),
                    JSON_1_1,
                    error.body(),
                    &request_id,
                );
                response.headers_mut().insert("x-amzn-ErrorType", error.code.as_str().parse().expect("a valid header"));
                response
            }
        };
        response
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Routed, RekognitionError> {
        loopback::check_headers(request.headers())
            .map_err(|refusal| RekognitionError::new(ErrorCode::AccessDenied, refusal))?;
        if request.method() == Method::GET {
            return Ok(Routed::Health);
        }
        if request.method() != Method::POST {
            return Err(RekognitionError::new(ErrorCode::UnknownOperation, "Only POST requests are supported"));
        }
        let target = request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let region = signing_region(request.headers());
        if target != DETECT_FACES_TARGET {
            return Err(RekognitionError::new(
                ErrorCode::UnknownOperation,
                format!("Operation '{target}' is not supported by this local service; only {DETECT_FACES_TARGET} is"),
            ));
        }
        let read = Limited::new(request.into_body(), self.config.max_body_bytes).collect();
        let body = tokio::time::timeout(self.config.body_read_timeout, read)
            .await
            .map_err(|_| {
                RekognitionError::new(
                    ErrorCode::RequestTimeout,
                    format!("the request body did not arrive within {} s", self.config.body_read_timeout.as_secs_f64()),
                )
            })?
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    RekognitionError::new(
                        ErrorCode::ImageTooLarge,
                        format!("Image size is too large: the request is over {} bytes", self.config.max_body_bytes),
                    )
                } else {
                    RekognitionError::new(ErrorCode::Serialization, format!("reading the request body: {error}"))
                }
            })?;
        let request: DetectFacesRequest = serde_json::from_slice(&body.to_bytes()).map_err(|error| {
            RekognitionError::new(ErrorCode::Serialization, format!("invalid request body: {error}"))
        })?;
        Ok(Routed::DetectFaces(self.detect_faces(request, region.as_deref()).await?))
    }

    /// `DetectFaces` on a parsed request, made in `region` (the region it was signed for), in
    /// which Rekognition reads an `Image.S3Object`, as AWS does; the client's own region
    /// without one.
    pub async fn detect_faces(
        &self,
        request: DetectFacesRequest,
        region: Option<&str>,
    ) -> Result<DetectFacesResponse, RekognitionError> {
        let attributes = AttributeSet::parse(request.attributes.as_deref())?;
        let image = request.image.unwrap_or_default();
        let bytes = match (image.bytes, image.s3_object) {
            (Some(encoded), None) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| {
                    RekognitionError::new(ErrorCode::InvalidParameter, "Image.Bytes is not valid base64")
                })?;
                if bytes.len() > MAX_IMAGE_BYTES {
                    return Err(RekognitionError::new(
                        ErrorCode::ImageTooLarge,
                        format!(
                            "Image size is too large: {} bytes; the limit for Image.Bytes is {MAX_IMAGE_BYTES}",
                            bytes.len()
                        ),
                    ));
                }
                bytes
            }
            (None, Some(object)) => {
                let (Some(bucket), Some(name)) = (object.bucket, object.name) else {
                    return Err(RekognitionError::new(
                        ErrorCode::InvalidParameter,
                        "Request has invalid parameters: Image.S3Object needs Bucket and Name",
                    ));
                };
                self.read_object(&bucket, &name, object.version.as_deref(), region).await?
            }
            _ => {
                return Err(RekognitionError::new(
                    ErrorCode::InvalidParameter,
                    "Request has invalid parameters: give exactly one of Image.Bytes and Image.S3Object",
                ))
            }
        };
        let permit = self.inferences.clone().acquire_owned().await.expect("the semaphore is never closed");
        let analyzer = self.analyzer.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let image = input::decode(&bytes)?;
            drop(bytes);
            analyzer.detect_faces(&image, attributes).map_err(|error| {
                tracing::error!(error = %format!("{error:#}"), "analysis failed");
                RekognitionError::new(ErrorCode::InternalServerError, "Internal server error")
            })
        })
        .await
        .map_err(|_| RekognitionError::new(ErrorCode::InternalServerError, "Internal server error"))?
    }

    async fn read_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        region: Option<&str>,
    ) -> Result<Vec<u8>, RekognitionError> {
        let invalid = |detail: String| {
            RekognitionError::new(
                ErrorCode::InvalidS3Object,
                format!(
                    "Unable to get object metadata from S3. Check object key, region and/or access permissions. \
                     (s3://{bucket}/{key}: {detail})"
                ),
            )
        };
        let get = self.s3.get_object().bucket(bucket).key(key).set_version_id(version.map(str::to_string));
        let sent = match region {
            Some(region) => {
                let in_region =
                    aws_sdk_s3::config::Builder::default().region(aws_sdk_s3::config::Region::new(region.to_owned()));
                get.customize().config_override(in_region).send().await
            }
            None => get.send().await,
        };
        let output = sent.map_err(|error| invalid(aws_sdk_s3::error::DisplayErrorContext(&error).to_string()))?;
        let too_large = || {
            RekognitionError::new(
                ErrorCode::ImageTooLarge,
                format!("Image size is too large: s3://{bucket}/{key} is over {MAX_S3_OBJECT_BYTES} bytes"),
            )
        };
        if output.content_length().is_some_and(|length| length as u64 > MAX_S3_OBJECT_BYTES) {
            return Err(too_large());
        }
        let mut body = output.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.try_next().await.map_err(|error| invalid(error.to_string()))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_S3_OBJECT_BYTES {
                return Err(too_large());
            }
        }
        Ok(bytes)
    }
}

enum Routed {
    Health,
    DetectFaces(DetectFacesResponse),
}

/// The region a SigV4-signed request was signed for: the third field of the `Credential`
/// scope in its `Authorization` header (`Credential=AKID/20260101/eu-west-1/rekognition/...`).
fn signing_region(headers: &hyper::HeaderMap) -> Option<String> {
    let authorization = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let scope = authorization.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    (!region.is_empty()).then(|| region.to_owned())
}

fn json_response(status: StatusCode, content_type: &str, body: String, request_id: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-RequestId", request_id)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// An S3 client for `Image.S3Object` from the standard environment (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_S3`, `AWS_REGION`, credentials), path-style, as an emulator needs.
///
/// This is a local service: it never asks the EC2 instance metadata service. Without
/// `AWS_REGION`/`AWS_DEFAULT_REGION` the region is us-east-1; without `AWS_ACCESS_KEY_ID`
/// the credentials are fixed test ones (an emulator accepts any).
pub async fn s3_client_from_env() -> aws_sdk_s3::Client {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(api_common::https_client());
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
    loader = loader.region(aws_config::Region::new(region));
    if env("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "local",
            "local",
            None,
            None,
            "local-rekognition",
        ));
    }
    s3_client(&loader.load().await)
}

/// A path-style S3 client from an SDK configuration.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(service.config.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handler = hyper::service::service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(request).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), handler)
                .await;
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Binds `address` and serves in the background; returns the bound address (useful with
/// port 0) and a handle that stops the server when dropped or when `stop` is called.
pub async fn spawn(address: SocketAddr, service: Arc<Service>) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = serve(listener, service, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Ok(RunningServer { address, stop: Some(stop), task })
}

/// A server started by [`spawn`].
pub struct RunningServer {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_region_comes_from_the_credential_scope() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(signing_region(&headers), None);
        let authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/rekognition/aws4_request, \
                             SignedHeaders=host;x-amz-date, Signature=abc";
        headers.insert(hyper::header::AUTHORIZATION, authorization.parse().unwrap());
        assert_eq!(signing_region(&headers).as_deref(), Some("eu-west-1"));
    }
}
