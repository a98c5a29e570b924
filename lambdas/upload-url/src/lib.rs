//! `GET /upload-url`: hands out a presigned S3 PUT URL for one image, and the `fileKey`
//! that `POST /analyze` takes afterwards.

use std::time::{Duration, SystemTime};

use api_common::{check_route, json_response, request_id, required_var, ApiError, ConfigError, SdkConfig};
use aws_sdk_s3::presigning::PresigningConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

pub const ROUTE_METHOD: Method = Method::GET;
pub const ROUTE_PATH: &str = "/upload-url";

/// Environment variable naming the upload bucket.
pub const BUCKET_ENV: &str = "UPLOAD_BUCKET";
/// Environment variable with the presigned URL's lifetime in seconds.
pub const EXPIRY_ENV: &str = "UPLOAD_URL_EXPIRY_SECONDS";
pub const DEFAULT_EXPIRY_SECONDS: u64 = 300;
pub const MAX_EXPIRY_SECONDS: u64 = 3600;

/// The image types a client may upload, with the extension their keys get.
pub const ALLOWED_TYPES: [(&str, &str); 2] = [("image/jpeg", "jpg"), ("image/png", "png")];
const DEFAULT_CONTENT_TYPE: &str = "image/jpeg";

/// The function's configuration, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub expiry: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The configuration from variables looked up by name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bucket = required_var(BUCKET_ENV, var(BUCKET_ENV))?;
        let expiry = match var(EXPIRY_ENV) {
            None => DEFAULT_EXPIRY_SECONDS,
            Some(text) => parse_expiry(&text)?,
        };
        Ok(Self { bucket, expiry: Duration::from_secs(expiry) })
    }
}

fn parse_expiry(text: &str) -> Result<u64, ConfigError> {
    match text.trim().parse::<u64>() {
        Ok(seconds) if (1..=MAX_EXPIRY_SECONDS).contains(&seconds) => Ok(seconds),
        _ => Err(ConfigError(format!(
            "{EXPIRY_ENV}={text:?} must be a whole number of seconds from 1 to {MAX_EXPIRY_SECONDS}"
        ))),
    }
}

/// What the handler needs, built once per cold start and injected.
#[derive(Debug, Clone)]
pub struct Deps {
    pub s3: aws_sdk_s3::Client,
    pub config: Config,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UploadUrl {
    pub upload_url: String,
    pub file_key: String,
    pub expires_in: u64,
    pub content_type: String,
}

/// The Lambda handler: every outcome is an HTTP response, errors included.
pub async fn handle(deps: &Deps, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let request_id = request_id(&request);
    Ok(match upload_url(deps, &request, SystemTime::now()).await {
        Ok(body) => {
            tracing::info!(request_id, file_key = %body.file_key, content_type = %body.content_type, "issued upload URL");
            json_response(StatusCode::OK, &body)
        }
        Err(error) => error.into_response(&request_id),
    })
}

async fn upload_url(deps: &Deps, request: &Request, now: SystemTime) -> Result<UploadUrl, ApiError> {
    check_route(request, &ROUTE_METHOD, ROUTE_PATH)?;
    let requested = request
        .query_string_parameters_ref()
        .and_then(|query| query.first("contentType"))
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    let (content_type, extension) = ALLOWED_TYPES
        .into_iter()
        .find(|(allowed, _)| allowed.eq_ignore_ascii_case(requested.trim()))
        .ok_or_else(|| {
            let allowed: Vec<&str> = ALLOWED_TYPES.iter().map(|(content_type, _)| *content_type).collect();
            ApiError::invalid_request(format!(
                "contentType {requested:?} is not supported; allowed types: {}",
                allowed.join(", ")
            ))
        })?;

    let file_key = format!("uploads/{}.{extension}", uuid::Uuid::new_v4());
    let presigning =
        PresigningConfig::builder().start_time(now).expires_in(deps.config.expiry).build().map_err(|error| {
            tracing::error!(%error, "invalid presigning configuration");
            ApiError::upstream()
        })?;
    let presigned = deps
        .s3
        .put_object()
        .bucket(&deps.config.bucket)
        .key(&file_key)
        .content_type(content_type)
        .presigned(presigning)
        .await
        .map_err(|error| {
            tracing::error!(error = %aws_sdk_s3::error::DisplayErrorContext(&error), "presigning PutObject failed");
            ApiError::upstream()
        })?;

    Ok(UploadUrl {
        upload_url: presigned.uri().to_owned(),
        file_key,
        expires_in: deps.config.expiry.as_secs(),
        content_type: content_type.to_owned(),
    })
}

/// Builds the S3 client the way the function does at cold start. Presigned URLs must not
/// carry a checksum of an empty body, so checksums are only computed when S3 requires them.
pub fn s3_client(sdk_config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk_config)
        .force_path_style(force_path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests;
