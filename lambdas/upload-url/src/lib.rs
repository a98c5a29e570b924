//! `GET /upload-url`: hands out a presigned S3 PUT URL for one image, and the `fileKey`
//! that `POST /analyze` takes afterwards.
//!
//! `?contentType=image/jpeg|image/png` chooses the type (JPEG by default), signed into the URL.
//! `?contentLength=N` signs the upload's exact length into the URL too, so that S3 refuses a
//! PUT of any other length: one URL stores at most what was asked for. N must be a whole
//! number of bytes from 1 to the environment's limit (`MAX_UPLOAD_BYTES`, 15 MiB by default,
//! what Rekognition analyses). Where `REQUIRE_CONTENT_LENGTH` is `true`, a request without it
//! is refused, since an unsigned length lets one URL store up to 5 GB.

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
pub use api_common::MAX_UPLOAD_BYTES_ENV;
/// The largest upload worth making, and the default limit: what Rekognition analyses.
pub const MAX_UPLOAD_BYTES: u64 = api_common::MAX_IMAGE_BYTES as u64;
/// Environment variable (`true`/`false`) saying whether `contentLength` is required.
pub const REQUIRE_CONTENT_LENGTH_ENV: &str = "REQUIRE_CONTENT_LENGTH";

/// The image types a client may upload, with the extension their keys get.
pub const ALLOWED_TYPES: [(&str, &str); 2] = [("image/jpeg", "jpg"), ("image/png", "png")];
const DEFAULT_CONTENT_TYPE: &str = "image/jpeg";

/// The function's configuration, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub expiry: Duration,
    /// The largest `contentLength` a URL is issued for.
    pub max_upload_bytes: u64,
    /// Whether a request must give `contentLength`.
    pub require_content_length: bool,
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
        let max_upload_bytes = api_common::max_upload_bytes(var(MAX_UPLOAD_BYTES_ENV))?;
        let require_content_length = match var(REQUIRE_CONTENT_LENGTH_ENV).as_deref().map(str::trim) {
            None => false,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                return Err(ConfigError(format!("{REQUIRE_CONTENT_LENGTH_ENV}={text:?} must be `true` or `false`")))
            }
        };
        Ok(Self { bucket, expiry: Duration::from_secs(expiry), max_upload_bytes, require_content_length })
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
    /// The length signed into the URL, when the request gave one: the PUT must send exactly
    /// this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
}

/// The Lambda handler: every outcome is an HTTP response, errors included.
pub async fn handle(deps: &Deps, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let request_id = request_id(&request);
    Ok(match upload_url(deps, &request, SystemTime::now()).await {
        Ok(body) => {
            tracing::info!(
                request_id,
                file_key = %body.file_key,
                content_type = %body.content_type,
                content_length = body.content_length,
                "issued upload URL"
            );
            json_response(StatusCode::OK, &body)
        }
        Err(error) => error.into_response(&request_id),
    })
}

async fn upload_url(deps: &Deps, request: &Request, now: SystemTime) -> Result<UploadUrl, ApiError> {
    check_route(request, &ROUTE_METHOD, ROUTE_PATH)?;
    let query = request.query_string_parameters_ref();
    let requested = query.and_then(|query| query.first("contentType")).unwrap_or(DEFAULT_CONTENT_TYPE);
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
    let content_length =
        content_length(query.and_then(|query| query.first("contentLength")), content_type, &deps.config)?;

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
        .set_content_length(content_length.map(|length| length as i64))
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
        content_length,
    })
}

/// The upload's length from `contentLength`, checked against the limit; `None` when the
/// request gave none and the environment does not require it.
fn content_length(given: Option<&str>, content_type: &str, config: &Config) -> Result<Option<u64>, ApiError> {
    let limit = config.max_upload_bytes;
    let Some(text) = given else {
        if config.require_content_length {
            return Err(ApiError::invalid_request(format!(
                "contentLength is required: call GET /upload-url?contentType={content_type}&contentLength=<the \
                 file's size in bytes>, at most {limit} bytes; the URL is signed for exactly that length"
            )));
        }
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(length) if (1..=limit).contains(&length) => Ok(Some(length)),
        Ok(length) if length > limit => Err(ApiError::invalid_request(format!(
            "contentLength {length} is over the upload limit of {limit} bytes ({})",
            in_mib(limit)
        ))),
        _ => Err(ApiError::invalid_request(format!(
            "contentLength {text:?} must be a whole number of bytes from 1 to {limit} (the upload limit)"
        ))),
    }
}

/// `15 MiB`, `1.5 MiB`: a limit as people read it.
fn in_mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
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
