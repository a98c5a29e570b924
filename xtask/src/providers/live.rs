//! Reading what the cloud holds for a recorded resource, shaped like the inputs it was
//! created with, for `cargo xtask drift`. Each reader returns the input keys it can read
//! back (a subset: e.g. a function's runtime is fixed by the provider and not compared), or
//! `None` when the resource no longer exists.
//!
//! Calls per resource: bucket 6 (HeadBucket, GetBucketCors, GetBucketLifecycleConfiguration,
//! GetBucketTagging, GetPublicAccessBlock, GetBucketEncryption; GetBucketPolicy too when a
//! policy is recorded), role 2 (GetRole, GetRolePolicy), log group 2 (DescribeLogGroups,
//! ListTagsForResource), function 1 (GetFunction), everything else 1. What sits next to a
//! resource ([`AwsProvider::read_exclusive`]) costs a role 2 more (ListRolePolicies,
//! ListAttachedRolePolicies) and a function or alias 1 (GetPolicy).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::is;
use super::{AwsProvider, Spec};
use crate::drift::Neighbours;
use crate::engine::provider::ProviderError;
use crate::engine::resource::{Inputs, Kind};
use crate::state::ResourceState;

const NOT_FOUND: &[&str] =
    &["NotFoundException", "ResourceNotFoundException", "NoSuchEntity", "NoSuchBucket", "NotFound"];

impl AwsProvider {
    /// The live configuration of `recorded`, as inputs; `None` when it is gone.
    pub async fn read_live(&self, recorded: &ResourceState) -> Result<Option<Inputs>, ProviderError> {
        let spec = Spec::new(recorded.kind, &recorded.name, &recorded.inputs);
        let id = recorded.physical_id.as_str();
        match recorded.kind {
            Kind::Bucket => bucket(self, &spec, id).await,
            Kind::Role => role(self, &spec, id).await,
            Kind::LogGroup => log_group(self, &spec, id).await,
            Kind::Function => function(self, &spec, id).await,
            Kind::Alias => alias(self, &spec, id).await,
            Kind::Permission => permission(self, &spec, id).await,
            Kind::HttpApi => api(self, &spec, id).await,
            Kind::Integration => integration(self, &spec, id).await,
            Kind::Route => route(self, &spec, id).await,
            Kind::Stage => stage(self, &spec, id).await,
            Kind::EventInvokeConfig => invoke_config(self, &spec).await,
            Kind::Concurrency => concurrency(self, &spec).await,
            Kind::BucketNotification => notification(self, &spec, id).await,
        }
    }
}

impl AwsProvider {
    /// What sits next to `recorded` and changes who may do what, as the properties
    /// [`crate::drift::exclusive_expectations`] expects: a role's inline policies by name and
    /// attached policies by ARN (ListRolePolicies, ListAttachedRolePolicies); the statement
    /// ids of a function's or alias's resource policy (GetPolicy). Empty for other kinds, and
    /// when the resource is gone.
    pub async fn read_exclusive(&self, recorded: &ResourceState) -> Result<Inputs, ProviderError> {
        let spec = Spec::new(recorded.kind, &recorded.name, &recorded.inputs);
        let id = recorded.physical_id.as_str();
        let mut live = Inputs::new();
        match crate::drift::neighbours(recorded.kind) {
            Neighbours::None => {}
            Neighbours::RolePolicies => {
                let Some((inline, attached)) = role_policies(self, &spec, id).await? else { return Ok(live) };
                live.insert(crate::drift::INLINE_POLICIES.to_owned(), json!(inline));
                live.insert(crate::drift::ATTACHED_POLICIES.to_owned(), json!(attached));
            }
            Neighbours::FunctionPolicy => {
                let statements = statement_ids(self, &spec, id, None).await?;
                live.insert(crate::drift::POLICY_STATEMENTS.to_owned(), json!(statements));
            }
            Neighbours::AliasPolicy => {
                let function = spec.str("function_name")?;
                let statements = statement_ids(self, &spec, function, Some(id)).await?;
                live.insert(crate::drift::POLICY_STATEMENTS.to_owned(), json!(statements));
            }
        }
        Ok(live)
    }
}

impl AwsProvider {
    /// The state bucket's protections, as [`crate::state::s3::state_bucket_expectations`]
    /// names them: public access block, encryption, versioning (where the answer can be read)
    /// and policy. `None` when the bucket is gone.
    pub async fn read_state_bucket(&self, bucket: &str) -> Result<Option<Inputs>, ProviderError> {
        let inputs = Inputs::new();
        let spec = Spec::new(Kind::Bucket, bucket, &inputs);
        let s3 = &self.clients.s3;
        match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(error) if is(&error, NOT_FOUND) => return Ok(None),
            Err(error) => return Err(spec.api("HeadBucket", error)),
        }
        // moto answers GetBucketVersioning with a document the SDK cannot read (a 200 it
        // reports as an error); there versioning is not compared.
        let versioning = match s3.get_bucket_versioning().bucket(bucket).send().await {
            Ok(found) => Some(found.status().map_or(Value::Null, |status| json!(status.as_str()))),
            Err(error) if error.raw_response().is_some_and(|response| response.status().is_success()) => None,
            Err(error) => return Err(spec.api("GetBucketVersioning", error)),
        };
        let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(policy) => policy.policy().map_or(Value::Null, policy_document),
            Err(error) if is(&error, &["NoSuchBucketPolicy"]) => Value::Null,
            Err(error) => return Err(spec.api("GetBucketPolicy", error)),
        };
        let mut live = Inputs::from([
            ("public_access_block".to_owned(), public_access_block(self, &spec, bucket).await?),
            ("encryption".to_owned(), encryption(self, &spec, bucket).await?),
            ("policy".to_owned(), policy),
        ]);
        if let Some(versioning) = versioning {
            live.insert("versioning".to_owned(), versioning);
        }
        Ok(Some(live))
    }
}

/// A role's inline policy names and attached policy ARNs; `None` when the role is gone.
async fn role_policies(
    p: &AwsProvider,
    spec: &Spec<'_>,
    role: &str,
) -> Result<Option<(Vec<String>, Vec<String>)>, ProviderError> {
    let mut inline = Vec::new();
    let mut marker = None;
    loop {
        let page = match p.clients.iam.list_role_policies().role_name(role).set_marker(marker.take()).send().await {
            Ok(page) => page,
            Err(error) if is(&error, NOT_FOUND) => return Ok(None),
            Err(error) => return Err(spec.api("ListRolePolicies", error)),
        };
        inline.extend(page.policy_names().iter().cloned());
        match page.marker() {
            Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    let mut attached = Vec::new();
    loop {
        let page =
            match p.clients.iam.list_attached_role_policies().role_name(role).set_marker(marker.take()).send().await {
                Ok(page) => page,
                Err(error) if is(&error, NOT_FOUND) => return Ok(None),
                Err(error) => return Err(spec.api("ListAttachedRolePolicies", error)),
            };
        attached.extend(page.attached_policies().iter().filter_map(|policy| policy.policy_arn().map(str::to_owned)));
        match page.marker() {
            Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    inline.sort();
    attached.sort();
    Ok(Some((inline, attached)))
}

/// The statement ids of a function's resource policy (of `qualifier`, else its own); none
/// when it has no policy or is gone.
async fn statement_ids(
    p: &AwsProvider,
    spec: &Spec<'_>,
    function: &str,
    qualifier: Option<&str>,
) -> Result<Vec<String>, ProviderError> {
    let Some(policy) = resource_policy(p, spec, function, qualifier).await? else { return Ok(Vec::new()) };
    let mut sids: Vec<String> = statements(&policy)
        .iter()
        .filter(|statement| grants_on(statement, function, qualifier))
        .map(|statement| statement["Sid"].as_str().map_or_else(|| statement.to_string(), str::to_owned))
        .collect();
    sids.sort();
    Ok(sids)
}

/// Whether a statement grants on `function` as `qualifier` names it (its own ARN when `None`).
/// AWS answers each qualifier's policy alone; moto answers every statement of the function
/// for any qualifier, each with the ARN it grants on, so statements are told apart by it. A
/// statement without a readable `Resource` counts as the policy's.
pub(crate) fn grants_on(statement: &Value, function: &str, qualifier: Option<&str>) -> bool {
    let suffix = match qualifier {
        Some(qualifier) => format!(":function:{function}:{qualifier}"),
        None => format!(":function:{function}"),
    };
    let resources: Vec<&str> = match &statement["Resource"] {
        Value::String(resource) => vec![resource.as_str()],
        Value::Array(resources) => resources.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    resources.is_empty() || resources.iter().any(|resource| resource.ends_with(&suffix))
}

/// A function's resource policy (of `qualifier`, else its own); `None` when it has none or the
/// function is gone.
async fn resource_policy(
    p: &AwsProvider,
    spec: &Spec<'_>,
    function: &str,
    qualifier: Option<&str>,
) -> Result<Option<Value>, ProviderError> {
    let found =
        p.clients.lambda.get_policy().function_name(function).set_qualifier(qualifier.map(str::to_owned)).send().await;
    match found {
        Ok(found) => Ok(Some(policy_document(found.policy().unwrap_or("{}")))),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetPolicy", error)),
    }
}

/// A policy document's statements (a single one may stand alone).
fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(statements) => statements.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    }
}

fn tags<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    json!(pairs.into_iter().collect::<BTreeMap<_, _>>())
}

/// A policy document as IAM returns it: JSON, or (GetRole, GetRolePolicy on AWS) JSON
/// percent-encoded.
fn policy_document(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
        serde_json::from_str(&decoded).unwrap_or_else(|_| Value::String(text.to_owned()))
    })
}

async fn bucket(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let s3 = &p.clients.s3;
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("HeadBucket", error)),
    }
    let mut live = Inputs::from([("name".to_owned(), json!(name))]);
    let origins: Vec<String> = match s3.get_bucket_cors().bucket(name).send().await {
        Ok(cors) => cors.cors_rules().iter().flat_map(|rule| rule.allowed_origins().iter().cloned()).collect(),
        Err(error) if is(&error, &["NoSuchCORSConfiguration"]) => Vec::new(),
        Err(error) => return Err(spec.api("GetBucketCors", error)),
    };
    live.insert("cors_allowed_origins".to_owned(), json!(origins));
    let rules = match s3.get_bucket_lifecycle_configuration().bucket(name).send().await {
        Ok(lifecycle) => lifecycle.rules().to_vec(),
        Err(error) if is(&error, &["NoSuchLifecycleConfiguration"]) => Vec::new(),
        Err(error) => return Err(spec.api("GetBucketLifecycleConfiguration", error)),
    };
    // The expiry rules this tool writes: one per prefix, named after it, all with one age.
    let expiring: Vec<(&str, Option<i32>)> = rules
        .iter()
        .filter_map(|rule| {
            let prefix = rule.filter().and_then(|filter| filter.prefix())?;
            let days = rule.expiration().and_then(|expiration| expiration.days());
            (rule.id() == Some(super::s3::expire_rule_id(prefix).as_str()) && days.is_some()).then_some((prefix, days))
        })
        .collect();
    let days = expiring
        .iter()
        .find(|(prefix, _)| *prefix == crate::stack::UPLOAD_PREFIX)
        .and_then(|(_, days)| *days)
        .map_or(Value::Null, |days| json!(days));
    let mut prefixes: Vec<&str> = expiring.iter().map(|(prefix, _)| *prefix).collect();
    prefixes.sort_unstable();
    live.insert("expire_prefixes".to_owned(), json!(prefixes));
    live.insert("uploads_expire_after_days".to_owned(), days);
    let tag_set = match s3.get_bucket_tagging().bucket(name).send().await {
        Ok(tagging) => tags(tagging.tag_set().iter().map(|tag| (&tag.key, &tag.value))),
        Err(error) if is(&error, &["NoSuchTagSet", "NoSuchTagSetError"]) => json!({}),
        Err(error) => return Err(spec.api("GetBucketTagging", error)),
    };
    live.insert("tags".to_owned(), tag_set);
    // Read where state records them (a state from before they were recorded has neither).
    if spec.inputs.contains_key("public_access_block") {
        live.insert("public_access_block".to_owned(), public_access_block(p, spec, name).await?);
    }
    if spec.inputs.contains_key("encryption") {
        live.insert("encryption".to_owned(), encryption(p, spec, name).await?);
    }
    if spec.inputs.contains_key("policy") {
        let policy = match s3.get_bucket_policy().bucket(name).send().await {
            Ok(policy) => policy.policy().map_or(Value::Null, policy_document),
            Err(error) if is(&error, &["NoSuchBucketPolicy"]) => Value::Null,
            Err(error) => return Err(spec.api("GetBucketPolicy", error)),
        };
        live.insert("policy".to_owned(), policy);
    }
    Ok(Some(live))
}

/// The bucket's public access block as its four flags; all off when it has none.
pub(crate) async fn public_access_block(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Value, ProviderError> {
    let block = match p.clients.s3.get_public_access_block().bucket(name).send().await {
        Ok(found) => found.public_access_block_configuration().cloned(),
        Err(error) if is(&error, &["NoSuchPublicAccessBlockConfiguration"]) => None,
        Err(error) => return Err(spec.api("GetPublicAccessBlock", error)),
    };
    let flag = |value: Option<bool>| value.unwrap_or(false);
    Ok(json!({
        "block_public_acls": flag(block.as_ref().and_then(|b| b.block_public_acls())),
        "block_public_policy": flag(block.as_ref().and_then(|b| b.block_public_policy())),
        "ignore_public_acls": flag(block.as_ref().and_then(|b| b.ignore_public_acls())),
        "restrict_public_buckets": flag(block.as_ref().and_then(|b| b.restrict_public_buckets())),
    }))
}

/// The bucket's default encryption algorithm (`AES256`, `aws:kms`, ...); `null` when it has
/// none.
pub(crate) async fn encryption(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Value, ProviderError> {
    match p.clients.s3.get_bucket_encryption().bucket(name).send().await {
        Ok(found) => Ok(found
            .server_side_encryption_configuration()
            .and_then(|configuration| configuration.rules().first())
            .and_then(|rule| rule.apply_server_side_encryption_by_default())
            .map_or(Value::Null, |default| json!(default.sse_algorithm().as_str()))),
        Err(error) if is(&error, &["ServerSideEncryptionConfigurationNotFoundError"]) => Ok(Value::Null),
        Err(error) => Err(spec.api("GetBucketEncryption", error)),
    }
}

async fn role(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let found = match p.clients.iam.get_role().role_name(name).send().await {
        Ok(found) => found,
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("GetRole", error)),
    };
    let Some(role) = found.role() else { return Ok(None) };
    let mut live = Inputs::from([
        ("name".to_owned(), json!(role.role_name())),
        ("assume_role_policy".to_owned(), role.assume_role_policy_document().map_or(Value::Null, policy_document)),
        ("tags".to_owned(), tags(role.tags().iter().map(|tag| (&tag.key, &tag.value)))),
    ]);
    if let Some(policy_name) = spec.opt_str("policy_name")? {
        let policy = match p.clients.iam.get_role_policy().role_name(name).policy_name(policy_name).send().await {
            Ok(policy) => policy_document(policy.policy_document()),
            Err(error) if is(&error, NOT_FOUND) => Value::Null,
            Err(error) => return Err(spec.api("GetRolePolicy", error)),
        };
        live.insert("policy_name".to_owned(), json!(policy_name));
        live.insert("policy".to_owned(), policy);
    }
    Ok(Some(live))
}

async fn log_group(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let groups = p
        .clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|error| spec.api("DescribeLogGroups", error))?;
    let Some(group) = groups.log_groups().iter().find(|group| group.log_group_name() == Some(name)) else {
        return Ok(None);
    };
    let mut live = Inputs::from([
        ("name".to_owned(), json!(name)),
        ("retention_days".to_owned(), group.retention_in_days().map_or(Value::Null, |days| json!(days))),
    ]);
    if let Some(arn) = group.arn() {
        let arn = arn.strip_suffix(":*").unwrap_or(arn);
        let found = p.clients.logs.list_tags_for_resource().resource_arn(arn).send().await;
        let tag_map = match found {
            Ok(found) => tags(found.tags().into_iter().flatten()),
            Err(error) if is(&error, NOT_FOUND) => return Ok(None),
            Err(error) => return Err(spec.api("ListTagsForResource", error)),
        };
        live.insert("tags".to_owned(), tag_map);
    }
    Ok(Some(live))
}

async fn function(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let found = match p.clients.lambda.get_function().function_name(name).send().await {
        Ok(found) => found,
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("GetFunction", error)),
    };
    let Some(config) = found.configuration() else { return Ok(None) };
    let environment: BTreeMap<&String, &String> =
        config.environment().and_then(|environment| environment.variables()).into_iter().flatten().collect();
    let architecture = config.architectures().first().map_or("x86_64", |arch| arch.as_str());
    Ok(Some(Inputs::from([
        ("name".to_owned(), json!(name)),
        ("role_arn".to_owned(), json!(config.role())),
        ("code_sha256".to_owned(), json!(config.code_sha256())),
        ("memory_mb".to_owned(), json!(config.memory_size())),
        ("timeout_seconds".to_owned(), json!(config.timeout())),
        ("architecture".to_owned(), json!(architecture)),
        ("environment".to_owned(), json!(environment)),
        ("tags".to_owned(), tags(found.tags().into_iter().flatten())),
    ])))
}

async fn alias(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let function = spec.str("function_name")?;
    match p.clients.lambda.get_alias().function_name(function).name(name).send().await {
        Ok(found) => Ok(Some(Inputs::from([
            ("function_name".to_owned(), json!(function)),
            ("name".to_owned(), json!(found.name())),
            ("function_version".to_owned(), json!(found.function_version())),
        ]))),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetAlias", error)),
    }
}

async fn permission(p: &AwsProvider, spec: &Spec<'_>, sid: &str) -> Result<Option<Inputs>, ProviderError> {
    let function = spec.str("function_name")?;
    let qualifier = spec.opt_str("qualifier")?;
    let Some(policy) = resource_policy(p, spec, function, qualifier).await? else { return Ok(None) };
    let Some(statement) = statements(&policy).into_iter().find(|statement| statement["Sid"] == sid) else {
        return Ok(None);
    };
    let principal = match &statement["Principal"] {
        Value::Object(principal) => principal.get("Service").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let mut live = Inputs::from([
        ("function_name".to_owned(), json!(function)),
        ("statement_id".to_owned(), json!(sid)),
        ("principal".to_owned(), principal),
        ("action".to_owned(), statement["Action"].clone()),
        ("source_arn".to_owned(), statement["Condition"]["ArnLike"]["AWS:SourceArn"].clone()),
    ]);
    if let Some(qualifier) = qualifier {
        live.insert("qualifier".to_owned(), json!(qualifier));
    }
    if let Some(account) = statement["Condition"]["StringEquals"]["AWS:SourceAccount"].as_str() {
        live.insert("source_account".to_owned(), json!(account));
    }
    Ok(Some(live))
}

async fn invoke_config(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Inputs>, ProviderError> {
    let Some((retries, age)) = super::lambda::get_invoke_config(p, spec).await? else { return Ok(None) };
    Ok(Some(Inputs::from([
        ("function_name".to_owned(), json!(spec.str("function_name")?)),
        ("qualifier".to_owned(), json!(spec.str("qualifier")?)),
        ("maximum_retry_attempts".to_owned(), json!(retries)),
        ("maximum_event_age_seconds".to_owned(), json!(age)),
    ])))
}

async fn concurrency(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Inputs>, ProviderError> {
    let Some(reserved) = super::lambda::get_concurrency(p, spec).await? else { return Ok(None) };
    Ok(Some(Inputs::from([
        ("function_name".to_owned(), json!(spec.str("function_name")?)),
        ("reserved".to_owned(), json!(reserved)),
    ])))
}

async fn notification(p: &AwsProvider, spec: &Spec<'_>, bucket: &str) -> Result<Option<Inputs>, ProviderError> {
    // A bucket that notifies nothing has no notification to compare, as `find` says.
    let Some(notifications) = super::s3::get_notifications(p, spec, bucket).await?.filter(|found| !found.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(Inputs::from([
        ("bucket".to_owned(), json!(bucket)),
        ("lambda_functions".to_owned(), json!(notifications)),
    ])))
}

async fn api(p: &AwsProvider, spec: &Spec<'_>, id: &str) -> Result<Option<Inputs>, ProviderError> {
    match p.clients.apigateway.get_api().api_id(id).send().await {
        Ok(found) => {
            let origins = found.cors_configuration().map(|cors| cors.allow_origins().to_vec()).unwrap_or_default();
            Ok(Some(Inputs::from([
                ("name".to_owned(), json!(found.name())),
                ("cors_allowed_origins".to_owned(), json!(origins)),
                ("tags".to_owned(), tags(found.tags().into_iter().flatten())),
            ])))
        }
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetApi", error)),
    }
}

async fn integration(p: &AwsProvider, spec: &Spec<'_>, id: &str) -> Result<Option<Inputs>, ProviderError> {
    let api_id = spec.str("api_id")?;
    match p.clients.apigateway.get_integration().api_id(api_id).integration_id(id).send().await {
        Ok(found) => Ok(Some(Inputs::from([
            ("api_id".to_owned(), json!(api_id)),
            ("function_arn".to_owned(), json!(found.integration_uri())),
            ("payload_format_version".to_owned(), json!(found.payload_format_version())),
        ]))),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetIntegration", error)),
    }
}

async fn route(p: &AwsProvider, spec: &Spec<'_>, id: &str) -> Result<Option<Inputs>, ProviderError> {
    let api_id = spec.str("api_id")?;
    match p.clients.apigateway.get_route().api_id(api_id).route_id(id).send().await {
        Ok(found) => Ok(Some(Inputs::from([
            ("api_id".to_owned(), json!(api_id)),
            ("route_key".to_owned(), json!(found.route_key())),
            ("target".to_owned(), json!(found.target())),
        ]))),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetRoute", error)),
    }
}

async fn stage(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Inputs>, ProviderError> {
    let api_id = spec.str("api_id")?;
    match p.clients.apigateway.get_stage().api_id(api_id).stage_name(name).send().await {
        Ok(found) => {
            let settings = found.default_route_settings();
            Ok(Some(Inputs::from([
                ("api_id".to_owned(), json!(api_id)),
                ("name".to_owned(), json!(found.stage_name())),
                ("auto_deploy".to_owned(), json!(found.auto_deploy())),
                ("throttling_rate_limit".to_owned(), json!(settings.and_then(|s| s.throttling_rate_limit()))),
                ("throttling_burst_limit".to_owned(), json!(settings.and_then(|s| s.throttling_burst_limit()))),
                ("tags".to_owned(), tags(found.tags().into_iter().flatten())),
            ])))
        }
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetStage", error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_told_apart_by_the_arn_they_grant_on() {
        let on = |resource: Value| json!({"Sid": "s", "Resource": resource});
        let function = "arn:aws:lambda:us-east-1:123456789012:function:app-f";
        assert!(grants_on(&on(json!(function)), "app-f", None));
        assert!(!grants_on(&on(json!(format!("{function}:live"))), "app-f", None));
        assert!(grants_on(&on(json!(format!("{function}:live"))), "app-f", Some("live")));
        assert!(!grants_on(&on(json!(function)), "app-f", Some("live")));
        assert!(!grants_on(&on(json!("arn:aws:lambda:us-east-1:123456789012:function:app-ff")), "app-f", None));
        assert!(grants_on(&on(json!([format!("{function}:live")])), "app-f", Some("live")));
        assert!(grants_on(&json!({"Sid": "s"}), "app-f", None), "no Resource: the policy's own");
    }
}
