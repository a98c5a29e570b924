//! The AWS provider: creates, updates, deletes and finds every [`Kind`] of resource with the
//! AWS SDK, one module per service.
//!
//! | kind | module | physical id | outputs |
//! |---|---|---|---|
//! | Bucket | [`s3`] | bucket name | `arn`, `name` |
//! | Role | [`iam`] | role name | `arn`, `name` |
//! | LogGroup | [`logs`] | log group name | `arn` (without the `:*` suffix), `name` |
//! | Function | [`lambda`] | function name | `arn`, `name`, `code_sha256`, `version` (latest published) |
//! | Alias | [`lambda`] | alias name | `arn`, `name`, `function_version` |
//! | Permission | [`lambda`] | statement id | `statement_id` |
//! | HttpApi | [`apigateway`] | API id | `id`, `endpoint` |
//! | Integration | [`apigateway`] | integration id | `id` |
//! | Route | [`apigateway`] | route id | `id` |
//! | Stage | [`apigateway`] | stage name | `name`, `invoke_url` |
//! | EventInvokeConfig | [`lambda`] | `<function>:<qualifier>` | none |
//! | BucketNotification | [`s3`] | bucket name | none |
//!
//! The cloud's behaviours live here, not in the engine: IAM propagation and Lambda's
//! asynchronous updates are waited out with the helpers in [`retry`]; throttling is retried
//! by the SDK's standard retry strategy, given more attempts by [`AwsProvider::new`]; a
//! resource already gone counts as deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;

use crate::aws::Clients;
use crate::engine::provider::{Created, Provider, ProviderError};
use crate::engine::resource::{Inputs, Kind, Outputs};
use crate::manifest::Manifest;
use crate::state::ResourceState;

pub mod apigateway;
mod error;
pub mod iam;
mod inputs;
pub mod lambda;
mod live;
pub mod logs;
pub mod retry;
pub mod s3;

pub(crate) use inputs::Spec;

/// How many times the SDK tries a call that failed with a retryable error (throttling,
/// transient server and network errors) before it gives up. The SDK's default is 3, too few
/// for a deploy that sends bursts of control-plane calls (API Gateway allows a few per second).
pub const MAX_ATTEMPTS: u32 = 8;

/// Talks to AWS. Lambda code goes through a content-addressed artifact store: the object
/// `<artifact_bucket>/<artifact_prefix>/<sha256 hex>.zip`.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    pub clients: Clients,
    pub artifact_bucket: String,
    pub artifact_prefix: String,
    /// Local zips by their base64 SHA-256 (Lambda's `CodeSha256`), uploaded to the artifact
    /// store when it does not hold them yet. Code already in the store needs no local zip,
    /// which is how promoted artifacts deploy without a build.
    pub local_artifacts: BTreeMap<String, PathBuf>,
}

impl AwsProvider {
    /// A provider over `clients`, with every client's retry strategy given [`MAX_ATTEMPTS`]
    /// attempts (the rest of each client's configuration is kept).
    pub fn new(clients: Clients, artifact_bucket: impl Into<String>, artifact_prefix: impl Into<String>) -> Self {
        Self {
            clients: with_retries(clients),
            artifact_bucket: artifact_bucket.into(),
            artifact_prefix: artifact_prefix.into(),
            local_artifacts: BTreeMap::new(),
        }
    }

    /// The provider with the zips of a build manifest at hand.
    pub fn with_manifest(mut self, root: &Path, manifest: &Manifest) -> Self {
        self.local_artifacts = manifest
            .artifacts()
            .map(|(_, _, artifact)| (artifact.sha256_base64.clone(), root.join(&artifact.zip_path)))
            .collect();
        self
    }

    /// The region the clients talk to.
    pub(crate) fn region(&self, spec: &Spec<'_>) -> Result<&str, ProviderError> {
        let region = self.clients.config.region().map(|region| region.as_ref());
        region.ok_or_else(|| spec.failed("Configuration", "no AWS region is configured"))
    }

    /// The ARN partition of the clients' region (`aws`, `aws-cn`, `aws-us-gov`).
    pub(crate) fn partition(&self, spec: &Spec<'_>) -> Result<&'static str, ProviderError> {
        Ok(crate::aws::partition(self.region(spec)?))
    }

    /// The artifact store key of a zip with SHA-256 `hex`.
    pub fn artifact_key(&self, hex: &str) -> String {
        match self.artifact_prefix.trim_matches('/') {
            "" => format!("{hex}.zip"),
            prefix => format!("{prefix}/{hex}.zip"),
        }
    }
}

fn with_retries(mut clients: Clients) -> Clients {
    let retry = |config: Option<&RetryConfig>| {
        config
            .cloned()
            .unwrap_or_else(RetryConfig::standard)
            .with_max_attempts(MAX_ATTEMPTS)
            .with_max_backoff(Duration::from_secs(20))
    };
    clients.s3 = aws_sdk_s3::Client::from_conf(
        clients.s3.config().to_builder().retry_config(retry(clients.s3.config().retry_config())).build(),
    );
    clients.iam = aws_sdk_iam::Client::from_conf(
        clients.iam.config().to_builder().retry_config(retry(clients.iam.config().retry_config())).build(),
    );
    clients.lambda = aws_sdk_lambda::Client::from_conf(
        clients.lambda.config().to_builder().retry_config(retry(clients.lambda.config().retry_config())).build(),
    );
    clients.apigateway = aws_sdk_apigatewayv2::Client::from_conf(
        clients
            .apigateway
            .config()
            .to_builder()
            .retry_config(retry(clients.apigateway.config().retry_config()))
            .build(),
    );
    clients.logs = aws_sdk_cloudwatchlogs::Client::from_conf(
        clients.logs.config().to_builder().retry_config(retry(clients.logs.config().retry_config())).build(),
    );
    clients
}

/// The input keys of `kind` whose change forces a replacement (delete, then create), because
/// no AWS API changes them in place. Every other key is updated in place.
///
/// - Bucket `name`: S3 has no rename. CORS, lifecycle and tags have their own Put calls.
/// - Role `name`: IAM has no rename (UpdateRole changes only the description and session
///   duration). The trust policy (UpdateAssumeRolePolicy), the inline policy and its name
///   (PutRolePolicy, then DeleteRolePolicy of the old name) and tags are updated in place.
/// - LogGroup `name`: no rename. Retention (Put/DeleteRetentionPolicy) and tags are updated.
/// - Function `name`: no rename. The runtime and handler are fixed by the provider; the code
///   and the architecture change with UpdateFunctionCode; role, memory, timeout and
///   environment with UpdateFunctionConfiguration; tags with Tag/UntagResource.
/// - Alias `function_name`, `name`: an alias belongs to one function, and has no rename. The
///   version it points at changes with UpdateAlias.
/// - HttpApi: nothing. Its physical id is the generated API id; the name and the CORS
///   configuration change with UpdateApi (DeleteCorsConfiguration to remove it), tags with
///   Tag/UntagResource. (The protocol type, fixed to HTTP, is the one immutable property.)
/// - Integration `api_id`: an integration belongs to one API. The target URI, payload format
///   and timeout change with UpdateIntegration.
/// - Route `api_id`: as above; the route key and target change with UpdateRoute.
/// - Stage `api_id`, `name`: the stage name is its identifier within its API. Auto-deploy and
///   throttling change with UpdateStage, tags with Tag/UntagResource.
/// - Permission: every key. Lambda has no call that changes a policy statement; it is
///   removed and added again.
/// - EventInvokeConfig `function_name`, `qualifier`: it belongs to one alias; the retries and
///   event age change with PutFunctionEventInvokeConfig.
/// - Concurrency `function_name`: a reservation is its function's; its size changes with
///   PutFunctionConcurrency.
/// - BucketNotification `bucket`: the configuration is the bucket's; its content changes with
///   PutBucketNotificationConfiguration.
pub fn replace_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Bucket | Kind::Role | Kind::LogGroup | Kind::Function => &["name"],
        Kind::Alias => &["function_name", "name"],
        Kind::HttpApi => &[],
        Kind::Integration | Kind::Route => &["api_id"],
        Kind::Stage => &["api_id", "name"],
        Kind::Permission => {
            &["function_name", "statement_id", "principal", "action", "source_arn", "source_account", "qualifier"]
        }
        Kind::EventInvokeConfig => &["function_name", "qualifier"],
        Kind::Concurrency => &["function_name"],
        Kind::BucketNotification => &["bucket"],
    }
}

/// The outputs an in-place update of `kind` changes: updating a function's code or
/// configuration publishes a new version.
pub fn outputs_changed_by_update(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Function => &["version"],
        Kind::Bucket
        | Kind::Role
        | Kind::LogGroup
        | Kind::Alias
        | Kind::HttpApi
        | Kind::Integration
        | Kind::Route
        | Kind::Stage
        | Kind::Permission
        | Kind::EventInvokeConfig
        | Kind::Concurrency
        | Kind::BucketNotification => &[],
    }
}

/// What the planner must know of AWS: [`replace_keys`] and [`outputs_changed_by_update`].
#[derive(Debug, Clone, Copy)]
pub struct AwsRules;

impl crate::engine::plan::Rules for AwsRules {
    fn replace_keys(&self, kind: Kind) -> &'static [&'static str] {
        replace_keys(kind)
    }

    fn outputs_changed_by_update(&self, kind: Kind) -> &'static [&'static str] {
        outputs_changed_by_update(kind)
    }
}

impl Provider for AwsProvider {
    async fn create(&self, kind: Kind, name: &str, inputs: &Inputs) -> Result<Created, ProviderError> {
        let spec = Spec::new(kind, name, inputs);
        match kind {
            Kind::Bucket => s3::create(self, &spec).await,
            Kind::Role => iam::create(self, &spec).await,
            Kind::LogGroup => logs::create(self, &spec).await,
            Kind::Function => lambda::create_function(self, &spec).await,
            Kind::Alias => lambda::create_alias(self, &spec).await,
            Kind::Permission => lambda::create_permission(self, &spec).await,
            Kind::HttpApi => apigateway::create_api(self, &spec).await,
            Kind::Integration => apigateway::create_integration(self, &spec).await,
            Kind::Route => apigateway::create_route(self, &spec).await,
            Kind::Stage => apigateway::create_stage(self, &spec).await,
            Kind::EventInvokeConfig => lambda::put_invoke_config(self, &spec).await,
            Kind::Concurrency => lambda::put_concurrency(self, &spec).await,
            Kind::BucketNotification => s3::put_notification(self, &spec).await,
        }
    }

    async fn update(
        &self,
        current: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> Result<Outputs, ProviderError> {
        let spec = Spec::new(current.kind, &current.name, inputs);
        let change = Change { current, changed };
        match current.kind {
            Kind::Bucket => s3::update(self, &spec, &change).await,
            Kind::Role => iam::update(self, &spec, &change).await,
            Kind::LogGroup => logs::update(self, &spec, &change).await,
            Kind::Function => lambda::update_function(self, &spec, &change).await,
            Kind::Alias => lambda::update_alias(self, &spec, &change).await,
            Kind::Permission => lambda::update_permission(&spec, &change),
            Kind::HttpApi => apigateway::update_api(self, &spec, &change).await,
            Kind::Integration => apigateway::update_integration(self, &spec, &change).await,
            Kind::Route => apigateway::update_route(self, &spec, &change).await,
            Kind::Stage => apigateway::update_stage(self, &spec, &change).await,
            Kind::EventInvokeConfig => lambda::update_invoke_config(self, &spec, &change).await,
            Kind::Concurrency => lambda::put_concurrency(self, &spec).await.map(|created| created.outputs),
            Kind::BucketNotification => s3::update_notification(self, &spec, &change).await,
        }
    }

    async fn delete(&self, current: &ResourceState) -> Result<(), ProviderError> {
        // Deleting needs the inputs the resource was created with (e.g. its API id).
        let spec = Spec::new(current.kind, &current.name, &current.inputs);
        let id = current.physical_id.as_str();
        match current.kind {
            Kind::Bucket => s3::delete(self, &spec, id).await,
            Kind::Role => iam::delete(self, &spec, id).await,
            Kind::LogGroup => logs::delete(self, &spec, id).await,
            Kind::Function => lambda::delete_function(self, &spec, id).await,
            Kind::Alias => lambda::delete_alias(self, &spec, id).await,
            Kind::Permission => lambda::delete_permission(self, &spec, id).await,
            Kind::HttpApi => apigateway::delete_api(self, &spec, id).await,
            Kind::Integration => apigateway::delete_integration(self, &spec, id).await,
            Kind::Route => apigateway::delete_route(self, &spec, id).await,
            Kind::Stage => apigateway::delete_stage(self, &spec, id).await,
            Kind::EventInvokeConfig => lambda::delete_invoke_config(self, &spec).await,
            Kind::Concurrency => lambda::delete_concurrency(self, &spec).await,
            Kind::BucketNotification => s3::delete_notification(self, &spec, id).await,
        }
    }

    async fn find(&self, kind: Kind, name: &str, inputs: &Inputs) -> Result<Option<Created>, ProviderError> {
        let spec = Spec::new(kind, name, inputs);
        match kind {
            Kind::Bucket => s3::find(self, &spec).await,
            Kind::Role => iam::find(self, &spec).await,
            Kind::LogGroup => logs::find(self, &spec).await,
            Kind::Function => lambda::find_function(self, &spec).await,
            Kind::Alias => lambda::find_alias(self, &spec).await,
            Kind::Permission => lambda::find_permission(self, &spec).await,
            Kind::HttpApi => apigateway::find_api(self, &spec).await,
            Kind::Integration => apigateway::find_integration(self, &spec).await,
            Kind::Route => apigateway::find_route(self, &spec).await,
            Kind::Stage => apigateway::find_stage(self, &spec).await,
            Kind::EventInvokeConfig => lambda::find_invoke_config(self, &spec).await,
            Kind::Concurrency => lambda::find_concurrency(self, &spec).await,
            Kind::BucketNotification => s3::find_notification(self, &spec).await,
        }
    }

    async fn get(&self, current: &ResourceState) -> Result<Option<Created>, ProviderError> {
        let spec = Spec::new(current.kind, &current.name, &current.inputs);
        let id = current.physical_id.as_str();
        match current.kind {
            // The cloud makes these ids: look them up by id, not by name and tags.
            Kind::HttpApi => apigateway::get_api(self, &spec, id).await,
            Kind::Integration => apigateway::get_integration(self, &spec, id).await,
            Kind::Route => apigateway::get_route(self, &spec, id).await,
            // The physical id is the name (or statement id) the stack chose.
            Kind::Bucket
            | Kind::Role
            | Kind::LogGroup
            | Kind::Function
            | Kind::Alias
            | Kind::Permission
            | Kind::Stage
            | Kind::EventInvokeConfig
            | Kind::Concurrency
            | Kind::BucketNotification => self.find(current.kind, &current.name, &current.inputs).await,
        }
    }

    async fn read(&self, current: &ResourceState) -> Result<Option<Inputs>, ProviderError> {
        self.read_live(current).await
    }
}

/// What an update starts from: the recorded resource and the input keys that differ.
pub(crate) struct Change<'a> {
    pub current: &'a ResourceState,
    pub changed: &'a [String],
}

impl Change<'_> {
    /// Whether any of `keys` changed.
    pub fn any(&self, keys: &[&str]) -> bool {
        self.changed.iter().any(|changed| keys.contains(&changed.as_str()))
    }

    /// The inputs the resource was last created or updated with.
    pub fn old(&self) -> Spec<'_> {
        Spec::new(self.current.kind, &self.current.name, &self.current.inputs)
    }

    pub fn id(&self) -> &str {
        &self.current.physical_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_replaced_on_any_change() {
        for key in ["function_name", "statement_id", "principal", "action", "source_arn", "source_account", "qualifier"]
        {
            assert!(replace_keys(Kind::Permission).contains(&key), "{key}");
        }
    }

    #[test]
    fn every_named_kind_is_replaced_when_its_name_changes() {
        for kind in [Kind::Bucket, Kind::Role, Kind::LogGroup, Kind::Function, Kind::Stage] {
            assert!(replace_keys(kind).contains(&"name"), "{kind}");
        }
        assert!(!replace_keys(Kind::HttpApi).contains(&"name"), "UpdateApi renames an API");
        assert!(!replace_keys(Kind::Function).contains(&"architecture"), "UpdateFunctionCode changes it");
    }
}
