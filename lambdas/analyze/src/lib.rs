//! The analysis function. One function answers the three ways an image gets analysed, so
//! that the analysis exists once, its role grants exactly what analysis needs, and warm
//! instances serve them all:
//!
//! - `POST /analyze` with `{"fileKey": "uploads/<uuid>.<jpg|png>"}`: the result kept for the
//!   upload, or a new analysis (HeadObject, then DetectFaces), kept and returned;
//! - `GET /analysis/{id}`: the kept result (`200`, or `422` for a failure that is the
//!   image's fault), `202 {"status":"pending"}` while the upload has none, `404` without an
//!   upload;
//! - S3 `ObjectCreated` notifications on `uploads/`, invoked asynchronously ([`events`]).
//!
//! HTTP events arrive as API Gateway payload 2.0; anything else reaches the handler through
//! `lambda_http`'s pass-through (`RequestContext::PassThrough`) and must be an S3
//! notification. Results are kept at `results/<uuid>.json` ([`results`]).

use std::time::{Duration, SystemTime};

use api_common::{
    before_deadline, call_timeouts, json_response, request_id, required_var, ApiError, ConfigError, SdkConfig,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

mod analysis;
pub mod events;
mod request;
pub mod results;

pub use analysis::{AgeRange, Analysis, EmotionScore, Face, ImageFault, Position, Smile};
pub use request::{parse_file_key, parse_result_id, MAX_BODY_BYTES, MAX_FILE_KEY_LEN, UPLOAD_PREFIX};
use results::{Lookup, Outcome, StoredResult};

/// `POST /analyze`.
pub const ANALYZE_PATH: &str = "/analyze";
/// `GET /analysis/{id}`: this prefix, then the id.
pub const RESULT_PATH_PREFIX: &str = "/analysis/";

/// Environment variable naming the upload bucket.
pub const BUCKET_ENV: &str = "UPLOAD_BUCKET";
/// The largest S3 object DetectFaces accepts.
pub use api_common::MAX_IMAGE_BYTES;
/// The stored content types DetectFaces can read.
pub const IMAGE_TYPES: [&str; 2] = ["image/jpeg", "image/png"];
/// Seconds a throttled client is asked to wait.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// The function's configuration, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The configuration from variables looked up by name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self { bucket: required_var(BUCKET_ENV, var(BUCKET_ENV))? })
    }
}

/// What the handler needs, built once per cold start and injected.
#[derive(Debug, Clone)]
pub struct Deps {
    pub s3: aws_sdk_s3::Client,
    pub rekognition: aws_sdk_rekognition::Client,
    pub config: Config,
    /// The time a result is stamped with.
    pub clock: fn() -> SystemTime,
}

impl Deps {
    /// Clients whose calls fit the function's 10 s timeout: each S3 call at most 1.5 s an
    /// attempt and 3 s in all, DetectFaces 4 s and 6 s. A call cut short answers
    /// `502 UpstreamError`; should the invocation still run out of time, [`handle`] answers
    /// `504 Timeout` before Lambda cuts it off.
    pub fn new(sdk_config: &SdkConfig, force_path_style: bool, config: Config) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk_config)
            .force_path_style(force_path_style)
            .timeout_config(call_timeouts(Duration::from_millis(1500), Duration::from_secs(3)))
            .build();
        let rekognition = aws_sdk_rekognition::config::Builder::from(sdk_config)
            .timeout_config(call_timeouts(Duration::from_secs(4), Duration::from_secs(6)))
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            rekognition: aws_sdk_rekognition::Client::from_conf(rekognition),
            config,
            clock: SystemTime::now,
        }
    }
}

/// The Lambda handler. An HTTP request always gets an HTTP response, errors included. An
/// S3 notification gets a summary of its records; when a record must be retried (an
/// upstream failure), the invocation fails, so that Lambda's asynchronous retries run it
/// again.
pub async fn handle(deps: &Deps, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let request_id = request_id(&request);
    if matches!(request.request_context_ref(), Some(RequestContext::PassThrough)) {
        let notification = events::parse(request.body().as_ref())?;
        let summary = before_deadline(&request, async { Ok(events::handle(deps, &notification).await) }).await?;
        tracing::info!(request_id, ?summary, "notification handled");
        if summary.to_retry > 0 {
            return Err(format!(
                "{} of {} records failed upstream; retry",
                summary.to_retry,
                notification.records.len()
            )
            .into());
        }
        return Ok(json_response(StatusCode::OK, &summary));
    }
    Ok(match before_deadline(&request, route(deps, &request)).await {
        Ok(response) => response,
        Err(error) => error.into_response(&request_id),
    })
}

/// The HTTP routes. API Gateway only sends the routes it has, but the function can also be
/// invoked directly, so anything else gets the JSON 404 or 405 an HTTP API would give.
async fn route(deps: &Deps, request: &Request) -> Result<Response<Body>, ApiError> {
    let raw_path = request.raw_http_path();
    let path = if raw_path.is_empty() { request.uri().path() } else { raw_path };
    let (method, work) = if path.trim_end_matches('/') == ANALYZE_PATH {
        (Method::POST, Route::Analyze)
    } else if let Some(id) = path.strip_prefix(RESULT_PATH_PREFIX) {
        (Method::GET, Route::Result(id))
    } else {
        return Err(ApiError::not_found(format!("no route for {} {path}", request.method())));
    };
    if request.method() != method {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{path} accepts {method} only, not {}", request.method()),
        ));
    }
    match work {
        Route::Analyze => post_analyze(deps, request).await,
        Route::Result(id) => get_result(deps, id).await,
    }
}

enum Route<'a> {
    Analyze,
    Result(&'a str),
}

/// `POST /analyze`: the kept result, or a new analysis, kept. A failure that is the image's
/// fault is answered as the error it always was (415, 413 or 400).
async fn post_analyze(deps: &Deps, request: &Request) -> Result<Response<Body>, ApiError> {
    let file_key = parse_file_key(request.body())?;
    let (result, kept) = results::analyze_once(deps, &file_key).await.map_err(results::NoResult::into_api_error)?;
    tracing::info!(file_key, ?kept, "analysis answered");
    answer(result)
}

/// `GET /analysis/{id}`.
async fn get_result(deps: &Deps, id: &str) -> Result<Response<Body>, ApiError> {
    let file_key = parse_result_id(id)?;
    match results::load(deps, &file_key).await? {
        Lookup::Found(result) => return answer_kept(result),
        Lookup::Absent | Lookup::Unusable => {}
    }
    if analysis::upload_exists(deps, &file_key).await? {
        Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "pending"})))
    } else {
        Err(ApiError::not_found(format!("no upload with id {id:?}; upload it first with the URL from GET /upload-url")))
    }
}

/// A result as `POST /analyze` answers it: the document, or its failure as the API's error.
fn answer(result: StoredResult) -> Result<Response<Body>, ApiError> {
    match &result.outcome {
        Outcome::Done(_) => Ok(json_response(StatusCode::OK, &result)),
        Outcome::Failed { error, message } => Err(error.api_error(message.clone())),
    }
}

/// A kept result as `GET /analysis/{id}` answers it: `200`, or `422` with the failure.
fn answer_kept(result: StoredResult) -> Result<Response<Body>, ApiError> {
    let status = match result.outcome {
        Outcome::Done(_) => StatusCode::OK,
        Outcome::Failed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(json_response(status, &result))
}

#[cfg(test)]
mod tests;
