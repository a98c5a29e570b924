//! Results kept at `results/<uuid>.json` in the upload bucket: the body `POST /analyze`
//! answers, plus `fileKey`, `status` (`done` or `failed`) and `analyzedAt`; a failure keeps
//! the `error` and `message` the API gives for it.
//!
//! An upload is analysed at most once: [`analyze_once`] returns a kept result without
//! calling Rekognition, and keeps a new one with a conditional write (`If-None-Match: *`), so
//! two analyses of one object racing each other keep one result, whole, and both callers
//! answer with it.

use std::time::{SystemTime, UNIX_EPOCH};

use api_common::ApiError;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use serde::{Deserialize, Serialize};

use crate::analysis::{self, Analysis, Failure, ImageFault};
use crate::request::UPLOAD_PREFIX;
use crate::Deps;

/// Where results are kept. The bucket's notification never covers it.
pub const RESULTS_PREFIX: &str = "results/";
/// A kept result larger than this is not one this function wrote.
const MAX_RESULT_BYTES: i64 = 1024 * 1024;

/// A kept result, as stored and as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResult {
    pub file_key: String,
    /// When the analysis ran, RFC 3339 in UTC.
    pub analyzed_at: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// `status` and what goes with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Done(Analysis),
    Failed { error: ImageFault, message: String },
}

/// `results/<uuid>.json` for `uploads/<uuid>.<ext>` (a key already checked to have that
/// shape).
pub fn result_key(file_key: &str) -> String {
    let name = file_key.strip_prefix(UPLOAD_PREFIX).unwrap_or(file_key);
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    format!("{RESULTS_PREFIX}{stem}.json")
}

/// What is kept for an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Absent,
    Found(StoredResult),
    /// Something is stored that is not a result of this upload (unreadable, or written for
    /// another key): it is analysed again and the result replaces it.
    Unusable,
}

/// Reads the result kept for `file_key`. Only a failure to ask is an error.
pub async fn load(deps: &Deps, file_key: &str) -> Result<Lookup, ApiError> {
    let key = result_key(file_key);
    let output = match deps.s3.get_object().bucket(&deps.config.bucket).key(&key).send().await {
        Ok(output) => output,
        Err(SdkError::ServiceError(error)) if is_missing(error.err(), error.raw().status().as_u16()) => {
            return Ok(Lookup::Absent);
        }
        Err(error) => return Err(analysis::s3_failure(&error, "GetObject of the result", &key)),
    };
    if output.content_length().unwrap_or(0) > MAX_RESULT_BYTES {
        tracing::error!(key, length = output.content_length(), "the kept result is too large to be one");
        return Ok(Lookup::Unusable);
    }
    let bytes = match output.body.collect().await {
        Ok(bytes) => bytes.into_bytes(),
        Err(error) => {
            tracing::error!(%error, key, "reading the kept result failed");
            return Err(ApiError::upstream());
        }
    };
    match serde_json::from_slice::<StoredResult>(&bytes) {
        Ok(result) if result.file_key == file_key => Ok(Lookup::Found(result)),
        Ok(result) => {
            tracing::error!(key, kept_for = result.file_key, file_key, "the kept result is another upload's");
            Ok(Lookup::Unusable)
        }
        Err(error) => {
            tracing::error!(%error, key, "the kept result is not a valid result");
            Ok(Lookup::Unusable)
        }
    }
}

/// A missing result. Without `s3:ListBucket`, S3 answers GetObject on a missing key with 403.
fn is_missing(error: &GetObjectError, status: u16) -> bool {
    matches!(error, GetObjectError::NoSuchKey(_)) || status == 404 || status == 403
}

/// How [`analyze_once`] came by its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Kept {
    /// It was kept already: no analysis ran.
    Already,
    /// It was analysed now and kept.
    Now,
    /// It was analysed now, but keeping it failed: the next caller analyses again.
    NotKept(ApiError),
}

/// Why there is no result for an upload; nothing is kept for either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoResult {
    /// No object at the key.
    Missing(ApiError),
    /// An upstream service failed: a retry may succeed.
    Transient(ApiError),
}

impl NoResult {
    pub fn into_api_error(self) -> ApiError {
        match self {
            NoResult::Missing(error) | NoResult::Transient(error) => error,
        }
    }
}

/// The result for `file_key`: the kept one, or a new analysis, kept. Failures that are the
/// image's fault are results too.
pub async fn analyze_once(deps: &Deps, file_key: &str) -> Result<(StoredResult, Kept), NoResult> {
    let replace = match load(deps, file_key).await.map_err(NoResult::Transient)? {
        Lookup::Found(result) => return Ok((result, Kept::Already)),
        Lookup::Absent => false,
        Lookup::Unusable => true,
    };
    let outcome = match analysis::analyze(deps, file_key).await {
        Ok(analysis) => Outcome::Done(analysis),
        Err(Failure::Image(error, message)) => Outcome::Failed { error, message },
        Err(Failure::Missing(error)) => return Err(NoResult::Missing(error)),
        Err(Failure::Transient(error)) => return Err(NoResult::Transient(error)),
    };
    let result = StoredResult { file_key: file_key.to_owned(), analyzed_at: timestamp((deps.clock)()), outcome };
    Ok(keep(deps, result, replace).await)
}

/// Writes `result` unless another is kept already, in which case that one wins (both are
/// analyses of the same bytes). `replace` overwrites what is there (an unusable document).
async fn keep(deps: &Deps, result: StoredResult, replace: bool) -> (StoredResult, Kept) {
    let key = result_key(&result.file_key);
    let body = serde_json::to_vec(&result).expect("a result serializes");
    let put = deps
        .s3
        .put_object()
        .bucket(&deps.config.bucket)
        .key(&key)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .set_if_none_match((!replace).then(|| "*".to_owned()))
        .send()
        .await;
    match put {
        Ok(_) => (result, Kept::Now),
        // 412: another analysis of this object kept its result first; 409: one is being kept.
        Err(SdkError::ServiceError(error)) if matches!(error.raw().status().as_u16(), 409 | 412) => {
            match load(deps, &result.file_key).await {
                Ok(Lookup::Found(kept)) => (kept, Kept::Already),
                Ok(Lookup::Absent | Lookup::Unusable) | Err(_) => {
                    tracing::warn!(key, "another result was being kept; answering this one, not kept");
                    (result, Kept::NotKept(ApiError::upstream()))
                }
            }
        }
        Err(error) => {
            let failure = analysis::s3_failure(&error, "PutObject of the result", &key);
            (result, Kept::NotKept(failure))
        }
    }
}

/// RFC 3339 in UTC to the second, e.g. `2026-12-04T06:07:08Z`.
pub fn timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    DateTime::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX))
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
