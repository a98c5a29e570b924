//! Reading what the cloud holds for a recorded resource, shaped like the inputs it was
//! created with, for `cargo xtask drift`. Each reader returns the input keys it can read
//! back (a subset: e.g. a function's runtime is fixed by the provider and not compared), or
//! `None` when the resource no longer exists.
//!
//! Calls per resource: bucket 4 (HeadBucket, GetBucketCors, GetBucketLifecycleConfiguration,
//! GetBucketTagging; GetBucketPolicy too when a policy is recorded), role 2 (GetRole,
//! GetRolePolicy), log group 2 (DescribeLogGroups, ListTagsForResource), function 1
//! (GetFunction), everything else 1.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::is;
use super::{AwsProvider, Spec};
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
            Kind::BucketNotification => notification(self, &spec, id).await,
        }
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
    let policy = match p
        .clients
        .lambda
        .get_policy()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_owned))
        .send()
        .await
    {
        Ok(policy) => policy_document(policy.policy().unwrap_or("{}")),
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("GetPolicy", error)),
    };
    let statements = match &policy["Statement"] {
        Value::Array(statements) => statements.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    let Some(statement) = statements.into_iter().find(|statement| statement["Sid"] == sid) else { return Ok(None) };
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
