//! What both image-analyzer Lambdas share: JSON responses, the `{error, message}` error
//! body, route checks for direct invocations, and the SDK configuration loaded once per
//! cold start.

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::time::Duration;

/// The largest image analysed, and so the largest upload worth making: Rekognition's limit
/// for an image in S3.
pub const MAX_IMAGE_BYTES: i64 = 15 * 1024 * 1024;

/// Environment variable with the largest upload in bytes: the environment's
/// `max_upload_bytes`, which `GET /upload-url` signs no larger length than and the page
/// checks a photo against before uploading it.
pub const MAX_UPLOAD_BYTES_ENV: &str = "MAX_UPLOAD_BYTES";

/// The upload limit from `MAX_UPLOAD_BYTES`: a whole number of bytes up to
/// [`MAX_IMAGE_BYTES`], which is also the limit when the variable is not set.
pub fn max_upload_bytes(value: Option<String>) -> Result<u64, ConfigError> {
    let most = MAX_IMAGE_BYTES as u64;
    let Some(text) = value else { return Ok(most) };
    text.trim().parse::<u64>().ok().filter(|bytes| (1..=most).contains(bytes)).ok_or_else(|| {
        ConfigError(format!("{MAX_UPLOAD_BYTES_ENV}={text:?} must be a whole number of bytes from 1 to {most}"))
    })
}

/// An API error: an HTTP status plus the `{"error", "message"}` body clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable error code, e.g. `InvalidRequest`.
    pub code: &'static str,
    /// What exactly went wrong, for a human. Never carries upstream internals.
    pub message: String,
    /// Seconds the client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn upstream() -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "UpstreamError", "an upstream service failed; try again later")
    }

    /// The function's work could not finish before its own timeout (a stalled upstream call).
    pub fn timed_out() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", "an upstream service did not answer in time; try again")
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON response for this error. Logs it with the request id first, so that every
    /// error a client sees can be found in the function's log.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        if self.status.is_server_error() {
            tracing::error!(request_id, status = self.status.as_u16(), error = self.code, message = %self.message, "request failed");
        } else {
            tracing::warn!(request_id, status = self.status.as_u16(), error = self.code, message = %self.message, "request rejected");
        }
        let body = ErrorBody { error: self.code, message: &self.message };
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    // Serializing plain data structs cannot fail; fall back to an empty object all the same.
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(text))
        .expect("a response from a valid status and a static header is valid")
}

/// The Lambda request id of an invocation, or `-` when the request carries no context
/// (as in unit tests that build requests by hand).
pub fn request_id(request: &Request) -> String {
    request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_else(|| "-".to_owned())
}

/// Checks that a request is for the one route a function serves. API Gateway only routes
/// matching requests here, but the functions can also be invoked directly, so anything
/// else gets the JSON 404 or 405 an HTTP API would give.
pub fn check_route(request: &Request, method: &Method, path: &str) -> Result<(), ApiError> {
    let request_path = request.raw_http_path();
    let request_path = if request_path.is_empty() { request.uri().path() } else { request_path };
    if request_path.trim_end_matches('/') != path.trim_end_matches('/') {
        return Err(ApiError::not_found(format!("no route for {} {request_path}", request.method())));
    }
    if request.method() != method {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{path} accepts {method} only, not {}", request.method()),
        ));
    }
    Ok(())
}

/// Checks a required environment variable read at cold start, with an error that names it.
pub fn required_var(name: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError(format!("environment variable {name} must be set to a non-empty value"))),
    }
}

/// Environment variable that the deployer sets to `true` on functions whose S3 endpoint is
/// an emulator, which needs path-style addressing.
pub const FORCE_PATH_STYLE_ENV: &str = "S3_FORCE_PATH_STYLE";

/// Whether S3 clients must use path-style addressing, from `S3_FORCE_PATH_STYLE`.
pub fn force_path_style(value: Option<String>) -> bool {
    value.is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// A function's configuration is unusable; the cold start fails with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid function configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

pub use aws_config::SdkConfig;

/// The HTTPS client for AWS SDK clients: rustls with ring, which keeps the functions small.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Bounds on one AWS call: each attempt, and the call with its retries. A function's clients
/// choose them so that every call ends well inside the function's own timeout.
pub fn call_timeouts(attempt: Duration, call: Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(attempt.min(CONNECT_TIMEOUT))
        .operation_attempt_timeout(attempt)
        .operation_timeout(call)
        .build()
}

/// Connecting to an AWS endpoint takes milliseconds; a connection that takes longer is lost.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Loads the shared SDK configuration once per cold start: the default credential chain,
/// region and `AWS_ENDPOINT_URL*` overrides, over [`https_client`], with calls bounded to
/// 2 s an attempt and 3 s in all unless a client sets its own [`call_timeouts`].
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(call_timeouts(Duration::from_secs(2), Duration::from_secs(3)))
        .load()
        .await
}

/// How much of an invocation's time is kept back to send the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// Runs `work` until shortly before the invocation's deadline ([`ANSWER_MARGIN`]), and then
/// gives up with [`ApiError::timed_out`], so that the client gets the project's JSON error
/// rather than API Gateway's bare 503 when the function would otherwise be cut off. Without
/// an invocation context (tests), `work` runs unbounded.
pub async fn before_deadline<T>(
    request: &Request,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let Some(context) = request.lambda_context_ref() else { return work.await };
    let left = context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
    tokio::time::timeout(left.saturating_sub(ANSWER_MARGIN), work).await.unwrap_or_else(|_| Err(ApiError::timed_out()))
}

/// How a function logs, from Lambda's advanced logging controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub level: tracing::level_filters::LevelFilter,
    /// JSON lines (`AWS_LAMBDA_LOG_FORMAT=JSON`) rather than text.
    pub json: bool,
}

impl LogSettings {
    /// The level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, as a level name (`debug`,
    /// `INFO`, ...; anything else means INFO); JSON when the format is `JSON`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let level = var("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| var("RUST_LOG"))
            .and_then(|level| level.trim().parse().ok())
            .unwrap_or(tracing::level_filters::LevelFilter::INFO);
        let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|format| format.eq_ignore_ascii_case("json"));
        Self { level, json }
    }
}

/// Installs the function's log subscriber: what `lambda_http`'s `init_default_subscriber`
/// does, minus per-module filter directives, whose filter engine (regular expressions) adds
/// about 145 KB to each zip (measured: upload-url 3,081,652 B with it, 2,936,763 B without).
pub fn init_logging() {
    let settings = LogSettings::from_vars(|name| std::env::var(name).ok());
    let builder = tracing_subscriber::fmt().with_target(false).without_time().with_max_level(settings.level);
    if settings.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_settings_follow_lambdas_logging_controls() {
        use tracing::level_filters::LevelFilter;
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
        };
        assert_eq!(LogSettings::from_vars(vars(&[])), LogSettings { level: LevelFilter::INFO, json: false });
        let lambda = LogSettings::from_vars(vars(&[
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "error"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]));
        assert_eq!(lambda, LogSettings { level: LevelFilter::DEBUG, json: true });
        assert_eq!(LogSettings::from_vars(vars(&[("RUST_LOG", "warn")])).level, LevelFilter::WARN);
        assert_eq!(LogSettings::from_vars(vars(&[("RUST_LOG", "aws_smithy=debug")])).level, LevelFilter::INFO);
    }

    #[tokio::test]
    async fn work_still_running_near_the_deadline_answers_a_json_timeout_in_time() {
        let deadline = std::time::SystemTime::now() + Duration::from_millis(800);
        let mut context = lambda_http::Context::default();
        context.deadline = deadline.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let request = request("POST", "/analyze").with_lambda_context(context);
        let stalled = std::future::pending::<Result<(), ApiError>>();

        let error = before_deadline(&request, stalled).await.unwrap_err();
        assert_eq!((error.status, error.code), (StatusCode::GATEWAY_TIMEOUT, "Timeout"));
        assert!(std::time::SystemTime::now() < deadline, "answered before the deadline");

        let quick = before_deadline(&request, async { Ok::<_, ApiError>(7) }).await;
        assert_eq!(quick.unwrap(), 7);
    }

    fn request(method: &str, path: &str) -> Request {
        lambda_http::http::Request::builder()
            .method(method)
            .uri(format!("https://example.com{path}"))
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn error_response_is_json_with_code_and_message() {
        let response = ApiError::invalid_request("fileKey is missing").into_response("req-1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let Body::Text(text) = response.body() else { panic!("expected a text body") };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json, serde_json::json!({"error": "InvalidRequest", "message": "fileKey is missing"}));
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Throttled", "slow down")
            .with_retry_after(2)
            .into_response("req-1");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn route_check_distinguishes_unknown_path_from_wrong_method() {
        assert_eq!(check_route(&request("GET", "/upload-url"), &Method::GET, "/upload-url"), Ok(()));
        assert_eq!(check_route(&request("GET", "/other"), &Method::GET, "/upload-url").unwrap_err().status, 404);
        assert_eq!(check_route(&request("POST", "/upload-url"), &Method::GET, "/upload-url").unwrap_err().status, 405);
    }
}
