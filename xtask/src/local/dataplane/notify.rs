//! S3 event notifications, delivered as S3 delivers them to Lambda: when an object is created
//! through the local S3 endpoint ([`super::s3front`]), the bucket's notification
//! configuration is read from the emulator; every Lambda configuration whose events and key
//! filters match gets an S3 event, invoked asynchronously on the function (or alias) it
//! names, with the retries and maximum event age of that function's asynchronous invocation
//! configuration (Lambda's defaults without one). A failed invocation (a function error, a
//! crash, a timeout, throttling) is retried after 1 s and then 2 s (Lambda waits about a
//! minute and then two); an event older than its maximum age is dropped. Every step is
//! logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::s3front::CreatedBy;
use super::*;
use crate::local::discovery::{function_of_uri, AsyncRetry};
use crate::providers::s3::LambdaNotification;

/// An object created through the local S3 endpoint.
#[derive(Debug, Clone)]
pub struct Creation {
    pub bucket: String,
    /// Decoded.
    pub key: String,
    pub by: CreatedBy,
    pub size: u64,
    pub etag: Option<String>,
    pub source_ip: String,
    pub time: SystemTime,
}

/// How long after a failed attempt the next one runs: 1 s, then 2 s.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// What S3 keeps unencoded in an event's key: letters, digits, `-_.~` and `/`; a space is
/// `+` (form encoding).
const KEY_ENCODE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/').remove(b' ');

/// An object key as S3 writes it in an event: URL-encoded, a space as `+`.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ENCODE).to_string().replace(' ', "+")
}

/// The S3 event of one record, in the shape S3 sends to Lambda.
pub fn s3_event(creation: &Creation, region: &str, configuration_id: &str, sequencer: u64) -> Value {
    let time = crate::state::lock::rfc3339(creation.time.into());
    let event_time = time.trim_end_matches('Z').to_owned() + ".000Z";
    let mut object = json!({
        "key": encode_key(&creation.key),
        "size": creation.size,
        "sequencer": format!("{sequencer:016X}"),
    });
    if let Some(etag) = &creation.etag {
        object["eTag"] = json!(etag.trim_matches('"'));
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": creation.by.event_name(),
        "userIdentity": {"principalId": "AWS:local"},
        "requestParameters": {"sourceIPAddress": creation.source_ip},
        "responseElements": {"x-amz-request-id": format!("{sequencer:016X}"), "x-amz-id-2": "local"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": creation.bucket,
                "ownerIdentity": {"principalId": "local"},
                "arn": format!("arn:{}:s3:::{}", crate::aws::partition(region), creation.bucket),
            },
            "object": object,
        }
    }]})
}

impl DataPlane {
    /// Delivers the creation's notifications in the background.
    pub(super) fn announce(self: &Arc<Self>, creation: Creation) {
        let plane = Arc::clone(self);
        tokio::spawn(async move { plane.deliver(creation).await });
    }

    async fn deliver(self: Arc<Self>, creation: Creation) {
        let what = format!("{} s3://{}/{}", creation.by.event_name(), creation.bucket, creation.key);
        let (region, targets) = match self.control.bucket_notifications(&creation.bucket).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!("{what}: cannot read the bucket's notifications, so none is sent: {error:#}");
                return;
            }
        };
        let matching: Vec<LambdaNotification> =
            targets.into_iter().filter(|target| target.matches(creation.by.event_name(), &creation.key)).collect();
        for target in matching {
            let sequencer = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64);
            let payload = s3_event(&creation, &region, &target.id, sequencer);
            let plane = Arc::clone(&self);
            let what = what.clone();
            let started = creation.time;
            tokio::spawn(async move { plane.invoke_async(&what, &target, payload, started).await });
        }
    }

    /// One asynchronous invocation with Lambda's retries.
    async fn invoke_async(
        self: Arc<Self>,
        what: &str,
        target: &LambdaNotification,
        payload: Value,
        created: SystemTime,
    ) {
        let Some((region, name, qualifier)) = function_of_uri(&target.function_arn) else {
            tracing::warn!("{what}: notification {} names no function: {}", target.id, target.function_arn);
            return;
        };
        let retry = match self.control.async_retry(&region, &name, qualifier.as_deref()).await {
            Ok(retry) => retry,
            Err(error) => {
                tracing::warn!("{what}: {error:#}; retrying as Lambda does by default");
                AsyncRetry::default()
            }
        };
        let payload = serde_json::to_vec(&payload).expect("an event serializes");
        let label = match &qualifier {
            Some(qualifier) => format!("{name}:{qualifier}"),
            None => name.clone(),
        };
        let attempts = retry.maximum_retry_attempts + 1;
        for attempt in 1..=attempts {
            let age = created.elapsed().unwrap_or_default();
            if age > Duration::from_secs(u64::from(retry.maximum_event_age_seconds)) {
                tracing::warn!("{what} -> {label}: dropped, older than {} s", retry.maximum_event_age_seconds);
                return;
            }
            match self.invoke_event(&region, &name, qualifier.as_deref(), payload.clone()).await {
                Ok(()) => {
                    tracing::info!("{what} -> {label}: delivered (attempt {attempt} of {attempts})");
                    return;
                }
                Err(error) => {
                    tracing::warn!("{what} -> {label}: attempt {attempt} of {attempts} failed: {error}");
                }
            }
            if let Some(delay) = RETRY_DELAYS.get(attempt as usize - 1) {
                tokio::time::sleep(*delay).await;
            }
        }
        tracing::error!("{what} -> {label}: dropped after {attempts} attempts");
    }

    /// Runs one invocation of the deployed function; its errors in words.
    async fn invoke_event(
        &self,
        region: &str,
        name: &str,
        qualifier: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let snapshot = self.snapshot();
        let qualifier = qualifier.filter(|qualifier| *qualifier != "$LATEST");
        let Some(function) = snapshot
            .functions
            .iter()
            .find(|f| f.region == region && f.name == name && f.qualifier.as_deref() == qualifier)
        else {
            return Err("the function is not deployed (or not yet seen)".to_owned());
        };
        self.check_trusted(function)?;
        if self.prepared_spec(function).is_none() {
            self.prepare(vec![function]).await;
        }
        let spec = self.prepared_spec(function).ok_or("its code could not be made ready; see the log above")?;
        let runtime = self.runtime(region).await.map_err(|error| format!("{error:#}"))?;
        runtime.invoke(&spec, payload).await.map(|_| ()).map_err(|error| error.to_string())
    }
}
