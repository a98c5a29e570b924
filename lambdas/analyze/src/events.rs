//! S3 `ObjectCreated` notifications: every upload is analysed without a second call.
//!
//! The bucket's notification invokes this function asynchronously for keys under `uploads/`
//! ending in `.jpg` or `.png`. Each record's key is URL-decoded as S3 sends it (form
//! encoding: `+` is a space) and must then be exactly `uploads/<uuid>.<jpg|png>` in this
//! function's bucket; anything else is logged and ignored. Each upload is analysed at most
//! once ([`crate::results::analyze_once`]), so a duplicate event changes nothing. A failure
//! that is the image's fault is kept as a failed result; an upstream failure makes the
//! invocation fail, so Lambda retries it (records already analysed are then skipped).

use serde::{Deserialize, Serialize};

use crate::request::check_upload_key;
use crate::results::{analyze_once, Kept, NoResult, Outcome};
use crate::Deps;

/// What an S3 notification carries that this function reads.
#[derive(Debug, Deserialize)]
pub struct Notification {
    #[serde(rename = "Records")]
    pub records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default)]
    pub event_source: String,
    #[serde(default)]
    pub event_name: String,
    pub s3: Entity,
}

#[derive(Debug, Deserialize)]
pub struct Entity {
    pub bucket: Bucket,
    pub object: Object,
}

#[derive(Debug, Deserialize)]
pub struct Bucket {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Object {
    /// URL-encoded, as S3 sends it.
    pub key: String,
}

/// Parses an S3 notification; anything else is an error that says what was expected.
pub fn parse(body: &[u8]) -> Result<Notification, String> {
    serde_json::from_slice(body).map_err(|error| {
        format!(
            "the event is neither an API Gateway HTTP API request (payload 2.0) nor an S3 notification \
             ({{\"Records\": [...]}}): {error}"
        )
    })
}

/// An S3 object key as notifications encode it: form-encoded (`+` for a space, `%XX`).
pub fn decode_key(encoded: &str) -> Option<String> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|key| key.into_owned())
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Analysed now; the result is kept.
    Analyzed,
    /// A result was kept already (a duplicate event, or `POST /analyze` came first).
    AlreadyAnalyzed,
    /// The object is gone, or the record is not an upload of this function's bucket.
    Ignored(String),
    /// Analysis failed upstream, or its result could not be kept: the invocation fails so
    /// that it is retried.
    Retry(String),
}

/// The invocation's answer: how many records came to what.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub analyzed: usize,
    pub already_analyzed: usize,
    pub ignored: usize,
    pub to_retry: usize,
}

/// Handles every record of a notification, in order.
pub async fn handle(deps: &Deps, notification: &Notification) -> Summary {
    let mut summary = Summary::default();
    for record in &notification.records {
        let outcome = handle_record(deps, record).await;
        match &outcome {
            RecordOutcome::Analyzed => summary.analyzed += 1,
            RecordOutcome::AlreadyAnalyzed => summary.already_analyzed += 1,
            RecordOutcome::Ignored(why) => {
                tracing::warn!(key = record.s3.object.key, why, "record ignored");
                summary.ignored += 1;
            }
            RecordOutcome::Retry(why) => {
                tracing::error!(key = record.s3.object.key, why, "record to be retried");
                summary.to_retry += 1;
            }
        }
    }
    summary
}

pub async fn handle_record(deps: &Deps, record: &Record) -> RecordOutcome {
    if record.event_source != "aws:s3" || !record.event_name.starts_with("ObjectCreated:") {
        return RecordOutcome::Ignored(format!(
            "not an object creation: {} {}",
            record.event_source, record.event_name
        ));
    }
    if record.s3.bucket.name != deps.config.bucket {
        return RecordOutcome::Ignored(format!("bucket {} is not {}", record.s3.bucket.name, deps.config.bucket));
    }
    let Some(key) = decode_key(&record.s3.object.key) else {
        return RecordOutcome::Ignored("the key is not valid URL-encoded UTF-8".to_owned());
    };
    if let Err(error) = check_upload_key(&key) {
        return RecordOutcome::Ignored(error.message);
    }
    match analyze_once(deps, &key).await {
        Ok((result, kept)) => {
            let status = match &result.outcome {
                Outcome::Done(analysis) => format!("done, {} faces", analysis.faces_detected),
                Outcome::Failed { error, .. } => format!("failed, {}", error.code()),
            };
            match kept {
                Kept::Already => RecordOutcome::AlreadyAnalyzed,
                Kept::Now => {
                    tracing::info!(key, status, "analyzed upload");
                    RecordOutcome::Analyzed
                }
                Kept::NotKept(error) => RecordOutcome::Retry(format!("the result ({status}) was not kept: {error}")),
            }
        }
        Err(NoResult::Missing(error)) => RecordOutcome::Ignored(error.message),
        Err(NoResult::Transient(error)) => RecordOutcome::Retry(error.to_string()),
    }
}
