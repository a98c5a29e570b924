//! The S3 [`StateStore`]: one environment's state document and lock in the state bucket.
//!
//! ```text
//! s3://<bucket>/<prefix>/<env>/state.json   the document (pretty JSON)
//! s3://<bucket>/<prefix>/<env>/state.lock   the lock (pretty JSON LockInfo)
//! ```
//!
//! Every write is conditional, using S3's conditional writes:
//! - the document is written with `If-Match: <etag it was read with>`, or with
//!   `If-None-Match: *` when it is new; `412 PreconditionFailed`, `409
//!   ConditionalRequestConflict` (a concurrent conditional write) and `404 NoSuchKey` (the
//!   document was deleted meanwhile) are all [`StoreError::Conflict`]: nothing was
//!   overwritten;
//! - the lock is created with `If-None-Match: *`, renewed with `If-Match`, and deleted with
//!   `If-Match` (DeleteObject's conditional delete), so nobody deletes a lock that is not
//!   theirs.
//!
//! moto 5.2.5, the emulator the tests use, honours all three (verified by
//! `tests/tests/state_store.rs`): PutObject `If-None-Match: *` on an existing key and
//! PutObject / DeleteObject `If-Match` with another ETag answer 412 and change nothing, and
//! `If-Match` on a missing key answers 404 `NoSuchKey`.
//!
//! [`ensure_bucket`] creates the state bucket on first use, versioned, encrypted, private
//! and TLS-only. The TLS-only policy is left out when the endpoint is plain HTTP (an
//! emulator), since it would deny the tool's own requests; moto 5.2.5 moreover evaluates the
//! policy's `Deny` as unconditional (it knows no `aws:SecureTransport`) and answers 403 to
//! every object request on such a bucket.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{LockInfo, StateStore, StoreError, Versioned};
use super::StateFile;

/// One environment's state in S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub client: Client,
    pub bucket: String,
    /// Prefix of every environment's state in the bucket, e.g. `image-analyzer`; may be empty.
    pub key_prefix: String,
    /// The environment's name, e.g. `dev`.
    pub env: String,
}

/// How a failed S3 call failed, as far as the state store cares.
enum Failure {
    /// 412: a condition (`If-Match`, `If-None-Match`) did not hold.
    PreconditionFailed,
    /// 409: another conditional write to the key was in progress.
    ConditionalConflict,
    /// 404 / `NoSuchKey`: the object does not exist.
    NotFound,
    /// Anything else.
    Other,
}

fn classify<E: ProvideErrorMetadata>(error: &SdkError<E>) -> Failure {
    let status = error.raw_response().map(|response| response.status().as_u16());
    match (status, error.code()) {
        (Some(412), _) | (_, Some("PreconditionFailed")) => Failure::PreconditionFailed,
        (Some(409), _) | (_, Some("ConditionalRequestConflict")) => Failure::ConditionalConflict,
        (Some(404), _) | (_, Some("NoSuchKey" | "NotFound")) => Failure::NotFound,
        _ => Failure::Other,
    }
}

/// What S3 said: for an answer, its HTTP status, error code, message and request id; for a
/// failure to get one (connection, timeout, credentials), the whole error chain.
fn describe<E>(error: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (error.raw_response(), error.as_service_error()) {
        (Some(response), Some(service)) => {
            let mut text =
                format!("HTTP {} {}", response.status().as_u16(), service.code().unwrap_or("(no error code)"));
            if let Some(message) = service.message() {
                text.push_str(": ");
                text.push_str(message);
            }
            if let Some(id) = error.request_id() {
                text.push_str(&format!(" (request id {id})"));
            }
            text
        }
        _ => crate::aws::error::explain(error),
    }
}

fn to_pretty_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("state and lock documents serialize to JSON");
    bytes.push(b'\n');
    bytes
}

impl S3Store {
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        key_prefix: impl Into<String>,
        env: impl Into<String>,
    ) -> Self {
        Self { client, bucket: bucket.into(), key_prefix: key_prefix.into(), env: env.into() }
    }

    fn key(&self, file: &str) -> String {
        let prefix = self.key_prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("{}/{file}", self.env)
        } else {
            format!("{prefix}/{}/{file}", self.env)
        }
    }

    /// `<prefix>/<env>/state.json`.
    pub fn document_key(&self) -> String {
        self.key("state.json")
    }

    /// `<prefix>/<env>/state.lock`.
    pub fn lock_key(&self) -> String {
        self.key("state.lock")
    }

    fn lock_location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key())
    }

    /// Reads and parses an object; `None` when it does not exist.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let location = format!("s3://{}/{key}", self.bucket);
        let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            Err(error) => {
                return match classify(&error) {
                    Failure::NotFound => Ok(None),
                    _ => Err(StoreError::Backend { location, operation: "GetObject", message: describe(&error) }),
                }
            }
        };
        let etag = output.e_tag().map(str::to_owned).ok_or_else(|| StoreError::Backend {
            location: location.clone(),
            operation: "GetObject",
            message: "the response carries no ETag, so the object cannot be written back conditionally".to_owned(),
        })?;
        let bytes = output.body.collect().await.map_err(|error| StoreError::Backend {
            location: location.clone(),
            operation: "GetObject",
            message: format!("reading the body: {error}"),
        })?;
        let value = serde_json::from_slice(&bytes.into_bytes())
            .map_err(|error| StoreError::Corrupt { location, message: error.to_string() })?;
        Ok(Some(Versioned { value, etag }))
    }

    /// PutObject with the given condition. `Ok(Err(failure))` when S3 refused the write for
    /// one of the reasons [`classify`] knows; `Err` for every other failure.
    async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        condition: Condition<'_>,
    ) -> Result<Result<String, Failure>, StoreError> {
        let location = format!("s3://{}/{key}", self.bucket);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(to_pretty_json(value)));
        request = match condition {
            Condition::IfNoneExists => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(output) => match output.e_tag() {
                Some(etag) => Ok(Ok(etag.to_owned())),
                None => Err(StoreError::Backend {
                    location,
                    operation: "PutObject",
                    message: "the response carries no ETag".to_owned(),
                }),
            },
            Err(error) => match classify(&error) {
                Failure::Other => {
                    Err(StoreError::Backend { location, operation: "PutObject", message: describe(&error) })
                }
                failure => Ok(Err(failure)),
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Condition<'a> {
    /// `If-None-Match: *`.
    IfNoneExists,
    /// `If-Match: <etag>`.
    IfMatch(&'a str),
}

impl StateStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.document_key())
    }

    async fn load(&self) -> Result<Option<Versioned<StateFile>>, StoreError> {
        self.get_json(&self.document_key()).await
    }

    async fn save(&self, state: &StateFile, expected: Option<&str>) -> Result<String, StoreError> {
        let condition = match expected {
            Some(etag) => Condition::IfMatch(etag),
            None => Condition::IfNoneExists,
        };
        match self.put_json(&self.document_key(), state, condition).await? {
            Ok(etag) => Ok(etag),
            // 412: changed since read (or created meanwhile); 409: a concurrent conditional
            // write; 404 under If-Match: deleted since read. In every case nothing was written.
            Err(_) => Err(StoreError::Conflict {
                location: self.location(),
                expected: expected.unwrap_or("none (a new document)").to_owned(),
            }),
        }
    }

    async fn acquire_lock(&self, info: &LockInfo) -> Result<String, StoreError> {
        // A lock released between our refused create and our read of it is worth another try;
        // a few rounds of that mean something is churning the lock, and we report it.
        for _ in 0..3 {
            match self.put_json(&self.lock_key(), info, Condition::IfNoneExists).await? {
                Ok(etag) => return Ok(etag),
                Err(Failure::PreconditionFailed | Failure::ConditionalConflict) => {
                    if let Some(current) = self.read_lock().await? {
                        return Err(StoreError::Locked { location: self.lock_location(), holder: current.value });
                    }
                }
                Err(Failure::NotFound | Failure::Other) => {
                    return Err(StoreError::Backend {
                        location: self.lock_location(),
                        operation: "PutObject",
                        message: "S3 answered 404 to a conditional create".to_owned(),
                    })
                }
            }
        }
        Err(StoreError::Backend {
            location: self.lock_location(),
            operation: "PutObject",
            message: "the lock was taken and released three times while acquiring it; try again".to_owned(),
        })
    }

    async fn renew_lock(&self, info: &LockInfo, etag: &str) -> Result<String, StoreError> {
        match self.put_json(&self.lock_key(), info, Condition::IfMatch(etag)).await? {
            Ok(etag) => Ok(etag),
            Err(Failure::ConditionalConflict) => Err(StoreError::Backend {
                location: self.lock_location(),
                operation: "PutObject",
                message: "409 ConditionalRequestConflict: another conditional write to the lock was in progress"
                    .to_owned(),
            }),
            // 412: someone else's lock now; 404: deleted (force-unlocked or broken).
            Err(_) => Err(StoreError::LockLost { location: self.lock_location(), id: info.id.clone() }),
        }
    }

    async fn read_lock(&self) -> Result<Option<Versioned<LockInfo>>, StoreError> {
        self.get_json(&self.lock_key()).await
    }

    async fn delete_lock(&self, etag: &str) -> Result<(), StoreError> {
        // DeleteObject with If-Match is a true conditional delete (S3 since 2024; moto 5.2.5
        // honours it, see the module docs), so there is no read-compare-delete race.
        let key = self.lock_key();
        match self.client.delete_object().bucket(&self.bucket).key(&key).if_match(etag).send().await {
            Ok(_) => Ok(()),
            Err(error) => match classify(&error) {
                Failure::PreconditionFailed | Failure::NotFound => {
                    let id = match self.read_lock().await {
                        Ok(Some(current)) => current.value.id,
                        _ => String::new(),
                    };
                    Err(StoreError::LockLost { location: self.lock_location(), id })
                }
                Failure::ConditionalConflict | Failure::Other => Err(StoreError::Backend {
                    location: self.lock_location(),
                    operation: "DeleteObject",
                    message: describe(&error),
                }),
            },
        }
    }
}

/// Whether the state bucket may be reached over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// AWS: a bucket policy denies every request not made over TLS.
    TlsOnly,
    /// A plain-HTTP endpoint (an emulator): no TLS-only policy, which would deny this tool's
    /// own requests.
    PlainHttp,
}

impl Transport {
    /// `PlainHttp` for an `http://` endpoint override, `TlsOnly` otherwise (the SDK's own
    /// endpoints are HTTPS).
    pub fn for_endpoint(endpoint: Option<&str>) -> Self {
        match endpoint {
            Some(endpoint) if endpoint.trim().get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")) => {
                Transport::PlainHttp
            }
            _ => Transport::TlsOnly,
        }
    }
}

/// What [`ensure_bucket`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketStatus {
    /// The bucket existed, configured; nothing was changed.
    Existed,
    /// The bucket existed without its configuration, which was then set.
    Configured,
    /// The bucket was created (or a concurrent run created it a moment ago) and configured.
    Created,
}

fn bucket_error(bucket: &str, operation: &'static str, message: String) -> StoreError {
    StoreError::Backend { location: format!("s3://{bucket}"), operation, message }
}

/// The state bucket's policy: deny every request not made over TLS.
pub fn tls_only_policy(bucket: &str, region: &str) -> serde_json::Value {
    crate::aws::tls_only_policy(crate::aws::partition(region), bucket)
}

/// What [`configure_state_bucket`] makes of the state bucket, as the properties drift compares
/// (see [`crate::providers::AwsProvider::read_state_bucket`]): all four public access blocks,
/// SSE-S3, versioning, and the TLS-only policy where requests use TLS.
pub fn state_bucket_expectations(bucket: &str, region: &str, transport: Transport) -> crate::engine::resource::Inputs {
    let policy = match transport {
        Transport::TlsOnly => tls_only_policy(bucket, region),
        Transport::PlainHttp => serde_json::Value::Null,
    };
    crate::engine::resource::Inputs::from([
        ("public_access_block".to_owned(), crate::aws::block_all_public_access()),
        ("encryption".to_owned(), serde_json::json!(crate::aws::BUCKET_ENCRYPTION)),
        ("versioning".to_owned(), serde_json::json!("Enabled")),
        ("policy".to_owned(), policy),
    ])
}

/// Makes sure the state bucket exists, configured. When it does, that costs a HeadBucket and
/// a GetBucketVersioning and changes nothing. When it does not, creates it in `region` and
/// configures it with [`configure_state_bucket`]; a bucket found unversioned (a run died
/// between creating and configuring it) is configured too.
pub async fn ensure_bucket(
    client: &Client,
    bucket: &str,
    region: &str,
    transport: Transport,
) -> Result<BucketStatus, StoreError> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => {
            if bucket_tags(client, bucket).await?.iter().any(is_configured_tag) {
                return Ok(BucketStatus::Existed);
            }
            tracing::warn!(bucket, "the state bucket was created by a run that stopped before configuring it");
            configure_state_bucket(client, bucket, region, transport).await?;
            return Ok(BucketStatus::Configured);
        }
        Err(error) => {
            let status = error.raw_response().map(|response| response.status().as_u16());
            match status {
                Some(404) => {}
                Some(301) => {
                    return Err(bucket_error(
                        bucket,
                        "HeadBucket",
                        format!("the bucket exists in another region than {region}: {}", describe(&error)),
                    ))
                }
                Some(403) => {
                    return Err(bucket_error(
                        bucket,
                        "HeadBucket",
                        format!(
                            "access denied: the bucket belongs to another account, or these credentials may not \
                             read it: {}",
                            describe(&error)
                        ),
                    ))
                }
                _ => return Err(bucket_error(bucket, "HeadBucket", describe(&error))),
            }
        }
    }

    let mut create = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    if let Err(error) = create.send().await {
        match error.code() {
            // A concurrent first run created it a moment ago; configuring twice is harmless
            // and covers that run dying before it configured the bucket.
            Some("BucketAlreadyOwnedByYou") => {}
            Some("BucketAlreadyExists") => {
                return Err(bucket_error(
                    bucket,
                    "CreateBucket",
                    format!("the name is taken by another account; choose another state bucket: {}", describe(&error)),
                ))
            }
            _ => return Err(bucket_error(bucket, "CreateBucket", describe(&error))),
        }
    }
    tracing::info!(bucket, region, "created the state bucket");
    configure_state_bucket(client, bucket, region, transport).await?;
    Ok(BucketStatus::Created)
}

/// Versioning (every state revision kept), default encryption (SSE-S3, AES256), all four
/// public access blocks, and (under [`Transport::TlsOnly`]) a TLS-only bucket policy.
/// Idempotent: re-running it on a bucket whose first configuration was interrupted
/// completes it.
pub async fn configure_state_bucket(
    client: &Client,
    bucket: &str,
    region: &str,
    transport: Transport,
) -> Result<(), StoreError> {
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|error| bucket_error(bucket, "PutBucketEncryption", error.to_string()))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
        .build()
        .map_err(|error| bucket_error(bucket, "PutBucketEncryption", error.to_string()))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|error| bucket_error(bucket, "PutBucketEncryption", describe(&error)))?;

    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|error| bucket_error(bucket, "PutPublicAccessBlock", describe(&error)))?;

    match transport {
        Transport::TlsOnly => {
            client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(tls_only_policy(bucket, region).to_string())
                .send()
                .await
                .map_err(|error| bucket_error(bucket, "PutBucketPolicy", describe(&error)))?;
        }
        Transport::PlainHttp => {
            tracing::info!(bucket, "plain-HTTP endpoint: the state bucket gets no TLS-only policy");
        }
    }
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|error| bucket_error(bucket, "PutBucketVersioning", describe(&error)))?;

    // Last, the tag that says all of the above is done (see ensure_bucket), beside any tags
    // the bucket has.
    let mut tags = bucket_tags(client, bucket).await?;
    tags.retain(|tag| tag.key() != CONFIGURED_TAG.0);
    let marker = Tag::builder().key(CONFIGURED_TAG.0).value(CONFIGURED_TAG.1).build();
    tags.push(marker.map_err(|error| bucket_error(bucket, "PutBucketTagging", error.to_string()))?);
    let tagging = Tagging::builder()
        .set_tag_set(Some(tags))
        .build()
        .map_err(|error| bucket_error(bucket, "PutBucketTagging", error.to_string()))?;
    client
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .map_err(|error| bucket_error(bucket, "PutBucketTagging", describe(&error)))?;
    Ok(())
}

/// The tag a fully configured state bucket carries. (Not versioning: moto answers
/// GetBucketVersioning with a document the SDK cannot read, and AWS's own defaults make
/// encryption and the public access block no sign of anything.)
const CONFIGURED_TAG: (&str, &str) = ("image-analyzer:state-bucket", "configured");

fn is_configured_tag(tag: &Tag) -> bool {
    tag.key() == CONFIGURED_TAG.0 && tag.value() == CONFIGURED_TAG.1
}

/// The bucket's tags (none when it has no tag set).
async fn bucket_tags(client: &Client, bucket: &str) -> Result<Vec<Tag>, StoreError> {
    match client.get_bucket_tagging().bucket(bucket).send().await {
        Ok(tagging) => Ok(tagging.tag_set().to_vec()),
        Err(error) if error.code() == Some("NoSuchTagSet") => Ok(Vec::new()),
        Err(error) => Err(bucket_error(bucket, "GetBucketTagging", describe(&error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3Store {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build();
        S3Store::new(Client::from_conf(config), "state-bucket", prefix, "dev")
    }

    #[test]
    fn keys_sit_under_prefix_and_environment() {
        let state = store("image-analyzer");
        assert_eq!(state.document_key(), "image-analyzer/dev/state.json");
        assert_eq!(state.lock_key(), "image-analyzer/dev/state.lock");
        assert_eq!(state.location(), "s3://state-bucket/image-analyzer/dev/state.json");
        assert_eq!(store("/nested/prefix/").document_key(), "nested/prefix/dev/state.json");
        assert_eq!(store("").lock_key(), "dev/state.lock");
    }

    #[test]
    fn only_plain_http_endpoints_drop_the_tls_policy() {
        assert_eq!(Transport::for_endpoint(None), Transport::TlsOnly);
        assert_eq!(Transport::for_endpoint(Some("https://s3.example.com")), Transport::TlsOnly);
        assert_eq!(Transport::for_endpoint(Some("http://127.0.0.1:5000")), Transport::PlainHttp);
        assert_eq!(Transport::for_endpoint(Some(" HTTP://localhost")), Transport::PlainHttp);
        assert_eq!(Transport::for_endpoint(Some("http")), Transport::TlsOnly);
    }

    #[test]
    fn policy_denies_plain_http_in_the_regions_partition() {
        let policy = tls_only_policy("b", "cn-north-1");
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(statement["Resource"][1], "arn:aws-cn:s3:::b/*");
        assert_eq!(tls_only_policy("b", "eu-west-1")["Statement"][0]["Resource"][0], "arn:aws:s3:::b");
    }
}
