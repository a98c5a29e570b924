//! S3 buckets (Kind::Bucket), and the artifact store Lambda code is deployed from.
//!
//! A bucket is created private (all four public access blocks), encrypted (SSE-S3), reachable
//! only over TLS (a bucket policy denying `aws:SecureTransport = false`), with CORS for
//! browser uploads, a lifecycle that expires the `expire_prefixes` (uploads and their
//! results) after `uploads_expire_after_days` and aborts stale multipart uploads, and tags. Deleting it empties it first, every object version and delete marker included.

use serde_json::{json, Value};

use aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput;
use aws_sdk_s3::operation::put_bucket_notification_configuration::PutBucketNotificationConfigurationError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint, CorsConfiguration,
    CorsRule, CreateBucketConfiguration, Delete, Event, ExpirationStatus, FilterRule, FilterRuleName,
    LambdaFunctionConfiguration, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NotificationConfiguration,
    NotificationConfigurationFilter, ObjectIdentifier, PublicAccessBlockConfiguration, S3KeyFilter,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging,
};

use super::error::{is, CallError};
use super::{AwsProvider, Change, Spec};
use crate::engine::provider::{Created, ProviderError};
use crate::engine::resource::Outputs;

/// Incomplete multipart uploads are aborted after this many days.
pub const ABORT_MULTIPART_AFTER_DAYS: i32 = 1;
/// How long browsers may cache a CORS preflight answer.
pub const CORS_MAX_AGE_SECONDS: i32 = 3000;
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

const NO_SUCH_BUCKET: &[&str] = &["NoSuchBucket"];

pub(super) async fn create(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let name = spec.str("name")?;
    create_bucket(p, spec, name).await?;
    put_public_access_block(p, spec, name).await?;
    put_encryption(p, spec, name).await?;
    if spec.inputs.get("policy").is_some_and(|policy| !policy.is_null()) {
        put_policy(p, spec, name).await?;
    }
    put_cors(p, spec, name).await?;
    put_lifecycle(p, spec, name).await?;
    put_tags(p, spec, name).await?;
    Ok(Created { physical_id: name.to_owned(), outputs: outputs(p, spec, name)? })
}

pub(super) async fn update(p: &AwsProvider, spec: &Spec<'_>, change: &Change<'_>) -> Result<Outputs, ProviderError> {
    let name = change.id();
    if change.any(&["public_access_block"]) {
        put_public_access_block(p, spec, name).await?;
    }
    if change.any(&["encryption"]) {
        put_encryption(p, spec, name).await?;
    }
    if change.any(&["policy"]) {
        put_policy(p, spec, name).await?;
    }
    if change.any(&["cors_allowed_origins"]) {
        put_cors(p, spec, name).await?;
    }
    if change.any(&["uploads_expire_after_days", "expire_prefixes"]) {
        put_lifecycle(p, spec, name).await?;
    }
    if change.any(&["tags"]) {
        put_tags(p, spec, name).await?;
    }
    outputs(p, spec, name)
}

pub(super) async fn delete(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    if !empty(p, spec, name).await? {
        return Ok(());
    }
    match p.clients.s3.delete_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NO_SUCH_BUCKET) => Ok(()),
        Err(error) => Err(spec.api("DeleteBucket", error)),
    }
}

pub(super) async fn find(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let name = spec.str("name")?;
    match p.clients.s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(Some(Created { physical_id: name.to_owned(), outputs: outputs(p, spec, name)? })),
        Err(error) if is(&error, &["NotFound", "NoSuchBucket"]) => Ok(None),
        Err(error) => Err(spec.api("HeadBucket", error)),
    }
}

fn outputs(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Outputs, ProviderError> {
    Ok(Outputs::from([
        ("arn".to_owned(), json!(format!("arn:{}:s3:::{name}", p.partition(spec)?))),
        ("name".to_owned(), json!(name)),
    ]))
}

async fn create_bucket(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let region = p.region(spec)?;
    let mut request = p.clients.s3.create_bucket().bucket(name);
    // us-east-1 is the one region that takes no location constraint.
    if region != "us-east-1" {
        let constraint = BucketLocationConstraint::from(region);
        request = request
            .create_bucket_configuration(CreateBucketConfiguration::builder().location_constraint(constraint).build());
    }
    request.send().await.map_err(|error| spec.api("CreateBucket", error))?;
    Ok(())
}

/// The `public_access_block` input (S3's four flags), all on when a state recorded before the
/// property existed has none.
async fn put_public_access_block(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let all = crate::aws::block_all_public_access();
    let block = spec.inputs.get("public_access_block").unwrap_or(&all);
    let flag = |key: &str| {
        block[key]
            .as_bool()
            .ok_or_else(|| spec.invalid("public_access_block", format!("`{key}` must be true or false")))
    };
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(flag("block_public_acls")?)
        .ignore_public_acls(flag("ignore_public_acls")?)
        .block_public_policy(flag("block_public_policy")?)
        .restrict_public_buckets(flag("restrict_public_buckets")?)
        .build();
    p.clients
        .s3
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(block)
        .send()
        .await
        .map_err(|error| spec.api("PutPublicAccessBlock", error))?;
    Ok(())
}

/// Default encryption: SSE-S3, the one the `encryption` input may name.
async fn put_encryption(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    const OPERATION: &str = "PutBucketEncryption";
    if let Some(algorithm) = spec.opt_str("encryption")? {
        if algorithm != crate::aws::BUCKET_ENCRYPTION {
            return Err(spec.invalid("encryption", format!("only AES256 (SSE-S3) is supported, not {algorithm}")));
        }
    }
    let default = spec.built(
        OPERATION,
        ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build(),
    )?;
    let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
    let configuration = spec.built(OPERATION, ServerSideEncryptionConfiguration::builder().rules(rule).build())?;
    p.clients
        .s3
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(configuration)
        .send()
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    Ok(())
}

/// The bucket policy from the `policy` input (a JSON document); `null` means none.
async fn put_policy(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    match spec.inputs.get("policy") {
        None | Some(serde_json::Value::Null) => {
            p.clients
                .s3
                .delete_bucket_policy()
                .bucket(name)
                .send()
                .await
                .map_err(|error| spec.api("DeleteBucketPolicy", error))?;
        }
        Some(policy) => {
            p.clients
                .s3
                .put_bucket_policy()
                .bucket(name)
                .policy(policy.to_string())
                .send()
                .await
                .map_err(|error| spec.api("PutBucketPolicy", error))?;
        }
    }
    Ok(())
}

/// Browsers PUT to presigned URLs and GET results from the allowed origins; with no origins
/// there is no CORS configuration at all.
async fn put_cors(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    const OPERATION: &str = "PutBucketCors";
    let origins = spec.strings("cors_allowed_origins")?;
    if origins.is_empty() {
        return match p.clients.s3.delete_bucket_cors().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(error) => Err(spec.api("DeleteBucketCors", error)),
        };
    }
    let rule = CorsRule::builder()
        .set_allowed_origins(Some(origins))
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_headers("content-type")
        .max_age_seconds(CORS_MAX_AGE_SECONDS)
        .build();
    let configuration =
        spec.built(OPERATION, CorsConfiguration::builder().cors_rules(spec.built(OPERATION, rule)?).build())?;
    p.clients
        .s3
        .put_bucket_cors()
        .bucket(name)
        .cors_configuration(configuration)
        .send()
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    Ok(())
}

async fn put_lifecycle(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    const OPERATION: &str = "PutBucketLifecycleConfiguration";
    let days = spec.i32("uploads_expire_after_days")?;
    if days < 1 {
        return Err(spec.invalid("uploads_expire_after_days", format!("must be at least 1, got {days}")));
    }
    let mut rules = Vec::new();
    for prefix in spec.strings("expire_prefixes")? {
        if prefix.is_empty() {
            return Err(spec.invalid("expire_prefixes", "a prefix must not be empty (that would expire everything)"));
        }
        let expire = LifecycleRule::builder()
            .id(expire_rule_id(&prefix))
            .filter(LifecycleRuleFilter::builder().prefix(&prefix).build())
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build();
        rules.push(spec.built(OPERATION, expire)?);
    }
    let abort = LifecycleRule::builder()
        .id("abort-incomplete-multipart-uploads")
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .status(ExpirationStatus::Enabled)
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder().days_after_initiation(ABORT_MULTIPART_AFTER_DAYS).build(),
        )
        .build();
    let configuration = spec.built(
        OPERATION,
        BucketLifecycleConfiguration::builder().set_rules(Some(rules)).rules(spec.built(OPERATION, abort)?).build(),
    )?;
    p.clients
        .s3
        .put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(configuration)
        .send()
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    Ok(())
}

/// The id of the rule that expires `prefix`: `expire-uploads` for `uploads/`.
pub fn expire_rule_id(prefix: &str) -> String {
    format!("expire-{}", prefix.trim_end_matches('/'))
}

/// PutBucketTagging replaces the whole set; an empty set is DeleteBucketTagging.
async fn put_tags(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    const OPERATION: &str = "PutBucketTagging";
    let tags = spec.tags()?;
    if tags.is_empty() {
        return match p.clients.s3.delete_bucket_tagging().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(error) => Err(spec.api("DeleteBucketTagging", error)),
        };
    }
    let tag_set = tags
        .iter()
        .map(|(key, value)| spec.built(OPERATION, Tag::builder().key(key).value(value).build()))
        .collect::<Result<Vec<_>, _>>()?;
    let tagging = spec.built(OPERATION, Tagging::builder().set_tag_set(Some(tag_set)).build())?;
    p.clients
        .s3
        .put_bucket_tagging()
        .bucket(name)
        .tagging(tagging)
        .send()
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    Ok(())
}

/// Deletes every object version and delete marker, page by page. `false` when the bucket
/// does not exist.
async fn empty(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<bool, ProviderError> {
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = match p
            .clients
            .s3
            .list_object_versions()
            .bucket(name)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
        {
            Ok(page) => page,
            Err(error) if is(&error, NO_SUCH_BUCKET) => return Ok(false),
            Err(error) => return Err(spec.api("ListObjectVersions", error)),
        };
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
        let identifiers = versions
            .chain(markers)
            .filter_map(|(key, version)| Some((key?, version)))
            .map(|(key, version)| {
                spec.built(
                    "DeleteObjects",
                    ObjectIdentifier::builder().key(key).set_version_id(version.map(str::to_owned)).build(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for batch in identifiers.chunks(DELETE_BATCH) {
            delete_objects(p, spec, name, batch.to_vec()).await?;
        }
        if page.is_truncated() != Some(true) {
            return Ok(true);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

async fn delete_objects(
    p: &AwsProvider,
    spec: &Spec<'_>,
    name: &str,
    objects: Vec<ObjectIdentifier>,
) -> Result<(), ProviderError> {
    const OPERATION: &str = "DeleteObjects";
    let delete = spec.built(OPERATION, Delete::builder().set_objects(Some(objects)).quiet(true).build())?;
    let output = p
        .clients
        .s3
        .delete_objects()
        .bucket(name)
        .delete(delete)
        .send()
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    match output.errors().first() {
        None => Ok(()),
        Some(failed) => Err(spec.failed(
            OPERATION,
            format!(
                "{} of the objects were not deleted; {}: {}: {}",
                output.errors().len(),
                failed.key().unwrap_or("?"),
                failed.code().unwrap_or("?"),
                failed.message().unwrap_or(""),
            ),
        )),
    }
}

/// Whether the artifact store holds an object under `key`.
pub(super) async fn artifact_exists(p: &AwsProvider, spec: &Spec<'_>, key: &str) -> Result<bool, ProviderError> {
    match p.clients.s3.head_object().bucket(&p.artifact_bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(error) if is(&error, &["NotFound", "NoSuchKey"]) => Ok(false),
        Err(error) => Err(spec.api("HeadObject", error)),
    }
}

/// Uploads a Lambda zip to the artifact store under `key`; S3 verifies the upload against
/// `sha256_base64`.
pub(super) async fn put_artifact(
    p: &AwsProvider,
    spec: &Spec<'_>,
    key: &str,
    bytes: Vec<u8>,
    sha256_base64: &str,
) -> Result<(), ProviderError> {
    let bucket = &p.artifact_bucket;
    p.clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/zip")
        .checksum_sha256(sha256_base64)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|error| spec.api("PutObject", error))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Notifications (Kind::BucketNotification)

/// One `LambdaFunctionConfiguration` as the stack states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LambdaNotification {
    pub id: String,
    pub function_arn: String,
    pub events: Vec<String>,
    pub prefix: String,
    pub suffix: String,
}

fn notifications(spec: &Spec<'_>) -> Result<Vec<LambdaNotification>, ProviderError> {
    let value = spec.inputs.get("lambda_functions").cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|error| spec.invalid("lambda_functions", error.to_string()))
}

/// PutBucketNotificationConfiguration replaces the bucket's whole configuration: creating,
/// updating and (with nothing) deleting are the same call. S3 checks that each function
/// allows it to invoke (the stack creates the permission first).
pub(super) async fn put_notification(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    const OPERATION: &str = "PutBucketNotificationConfiguration";
    let bucket = spec.str("bucket")?;
    let mut configurations = Vec::new();
    for notification in notifications(spec)? {
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder().name(FilterRuleName::Prefix).value(&notification.prefix).build(),
                    )
                    .filter_rules(
                        FilterRule::builder().name(FilterRuleName::Suffix).value(&notification.suffix).build(),
                    )
                    .build(),
            )
            .build();
        let configuration = LambdaFunctionConfiguration::builder()
            .id(&notification.id)
            .lambda_function_arn(&notification.function_arn)
            .set_events(Some(notification.events.iter().map(|event| Event::from(event.as_str())).collect()))
            .filter(filter)
            .build();
        configurations.push(spec.built(OPERATION, configuration)?);
    }
    put_notification_configuration(p, bucket, configurations)
        .await
        .map_err(|error| spec.api("PutBucketNotificationConfiguration", error))?;
    Ok(Created { physical_id: bucket.to_owned(), outputs: Outputs::new() })
}

async fn put_notification_configuration(
    p: &AwsProvider,
    bucket: &str,
    configurations: Vec<LambdaFunctionConfiguration>,
) -> Result<(), CallError<PutBucketNotificationConfigurationError>> {
    let configuration =
        NotificationConfiguration::builder().set_lambda_function_configurations(Some(configurations)).build();
    p.clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(configuration)
        .send()
        .await?;
    Ok(())
}

pub(super) async fn update_notification(
    p: &AwsProvider,
    spec: &Spec<'_>,
    change: &Change<'_>,
) -> Result<Outputs, ProviderError> {
    put_notification(p, spec).await?;
    Ok(change.current.outputs.clone())
}

/// An empty configuration: the bucket notifies nothing. A bucket already gone has none.
pub(super) async fn delete_notification(p: &AwsProvider, spec: &Spec<'_>, bucket: &str) -> Result<(), ProviderError> {
    match put_notification_configuration(p, bucket, Vec::new()).await {
        Ok(()) => Ok(()),
        Err(error) if is(&error, NO_SUCH_BUCKET) => Ok(()),
        Err(error) => Err(spec.api("PutBucketNotificationConfiguration", error)),
    }
}

/// The bucket's Lambda notifications as they are, in the stack's shape, sorted by id; `None`
/// when the bucket is gone.
pub(super) async fn get_notifications(
    p: &AwsProvider,
    spec: &Spec<'_>,
    bucket: &str,
) -> Result<Option<Vec<LambdaNotification>>, ProviderError> {
    let found = match p.clients.s3.get_bucket_notification_configuration().bucket(bucket).send().await {
        Ok(found) => found,
        Err(error) if is(&error, NO_SUCH_BUCKET) => return Ok(None),
        Err(error) if unparsed_empty_configuration(&error) => return Ok(Some(Vec::new())),
        Err(error) => return Err(spec.api("GetBucketNotificationConfiguration", error)),
    };
    let mut notifications = lambda_notifications(&found);
    notifications.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(notifications))
}

/// The Lambda configurations of a bucket's notification configuration, in the stack's shape.
pub fn lambda_notifications(found: &GetBucketNotificationConfigurationOutput) -> Vec<LambdaNotification> {
    found
        .lambda_function_configurations()
        .iter()
        .map(|configuration| {
            let rule = |name: FilterRuleName| {
                configuration
                    .filter()
                    .and_then(|filter| filter.key())
                    .and_then(|key| {
                        key.filter_rules().iter().find(|rule| {
                            rule.name().is_some_and(|found| found.as_str().eq_ignore_ascii_case(name.as_str()))
                        })
                    })
                    .and_then(|rule| rule.value())
                    .unwrap_or_default()
                    .to_owned()
            };
            LambdaNotification {
                id: configuration.id().unwrap_or_default().to_owned(),
                function_arn: configuration.lambda_function_arn().to_owned(),
                events: configuration.events().iter().map(|event| event.as_str().to_owned()).collect(),
                prefix: rule(FilterRuleName::Prefix),
                suffix: rule(FilterRuleName::Suffix),
            }
        })
        .collect()
}

impl LambdaNotification {
    /// Whether S3 notifies this configuration of an event named `event_name` (e.g.
    /// `ObjectCreated:Put`) for `key` (decoded): one of its events names it, or its type with
    /// `*`, and the key matches the prefix and suffix filters.
    pub fn matches(&self, event_name: &str, key: &str) -> bool {
        let named = self.events.iter().any(|event| {
            let Some(event) = event.strip_prefix("s3:") else { return false };
            match event.strip_suffix('*') {
                Some(kind) => event_name.starts_with(kind),
                None => event == event_name,
            }
        });
        named && key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }
}

/// moto answers a bucket without a notification configuration with a 200 whose body is not
/// a `NotificationConfiguration`, which the SDK cannot parse; AWS answers an empty one. A 200
/// that names no function configuration means none.
pub(crate) fn unparsed_empty_configuration<E>(error: &CallError<E>) -> bool {
    let Some(raw) = error.raw_response() else { return false };
    let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
    raw.status().as_u16() == 200 && !body.contains("FunctionConfiguration")
}

/// Found when the bucket notifies any function: the configuration is the bucket's, one per
/// bucket, so an interrupted create is adopted and then made exact by an update.
pub(super) async fn find_notification(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let bucket = spec.str("bucket")?;
    Ok(get_notifications(p, spec, bucket)
        .await?
        .filter(|notifications| !notifications.is_empty())
        .map(|_| Created { physical_id: bucket.to_owned(), outputs: Outputs::new() }))
}
