//! `POST /analyze`: validates `{"fileKey": "uploads/<uuid>.<jpg|png>"}`, checks the uploaded
//! object with HeadObject, and returns the faces Rekognition's DetectFaces finds in it.

use std::time::Duration;

use api_common::{
    before_deadline, call_timeouts, check_route, json_response, request_id, required_var, ConfigError, SdkConfig,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

mod request;

pub use request::{parse_file_key, MAX_BODY_BYTES, MAX_FILE_KEY_LEN};

pub const ROUTE_METHOD: Method = Method::POST;
pub const ROUTE_PATH: &str = "/analyze";

/// Environment variable naming the upload bucket.
pub const BUCKET_ENV: &str = "UPLOAD_BUCKET";
/// The largest S3 object DetectFaces accepts.
pub const MAX_IMAGE_BYTES: i64 = 15 * 1024 * 1024;
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
}

impl Deps {
    /// Clients whose calls fit the function's 10 s timeout: HeadObject at most 1.5 s an
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
        }
    }
}

/// The Lambda handler: every outcome is an HTTP response, errors included.
pub async fn handle(deps: &Deps, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let request_id = request_id(&request);
    Ok(match before_deadline(&request, analyze(deps, &request)).await {
        Ok(analysis) => {
            tracing::info!(request_id, faces = analysis.faces_detected, "analyzed image");
            json_response(StatusCode::OK, &analysis)
        }
        Err(error) => error.into_response(&request_id),
    })
}

mod analysis;

use analysis::analyze;
pub use analysis::{AgeRange, Analysis, EmotionScore, Face, Position, Smile};

#[cfg(test)]
mod tests;
