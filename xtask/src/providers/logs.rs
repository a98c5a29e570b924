//! CloudWatch Logs log groups (Kind::LogGroup) with a retention and tags.
//!
//! A log group may exist before its create: Lambda creates `/aws/lambda/<function>` on the
//! first invocation, and a crash may leave one behind. `ResourceAlreadyExistsException` on
//! create therefore adopts the group and brings its retention and tags to the inputs.

use std::collections::BTreeMap;

use serde_json::json;

use super::error::is;
use super::inputs::{hash_map, TagChanges};
use super::{AwsProvider, Change, Spec};
use crate::engine::provider::{Created, ProviderError};
use crate::engine::resource::Outputs;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

pub(super) async fn create(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let name = spec.str("name")?;
    let tags = spec.tags()?;
    let created = p
        .clients
        .logs
        .create_log_group()
        .log_group_name(name)
        .set_tags((!tags.is_empty()).then(|| hash_map(&tags)))
        .send()
        .await;
    let adopted = match created {
        Ok(_) => false,
        Err(error) if is(&error, &["ResourceAlreadyExistsException"]) => true,
        Err(error) => return Err(spec.api("CreateLogGroup", error)),
    };
    put_retention(p, spec, name).await?;
    let found = find_group(p, spec, name)
        .await?
        .ok_or_else(|| spec.failed("DescribeLogGroups", "the log group just created is not listed"))?;
    if adopted {
        tag(p, spec, arn(&found), &tags).await?;
    }
    Ok(found)
}

pub(super) async fn update(p: &AwsProvider, spec: &Spec<'_>, change: &Change<'_>) -> Result<Outputs, ProviderError> {
    let name = change.id();
    if change.any(&["retention_days"]) {
        put_retention(p, spec, name).await?;
    }
    let found = find_group(p, spec, name)
        .await?
        .ok_or_else(|| spec.failed("DescribeLogGroups", format!("log group {name} does not exist")))?;
    if change.any(&["tags"]) {
        let changes = TagChanges::between(&change.old().tags()?, &spec.tags()?);
        let arn = arn(&found);
        if !changes.remove.is_empty() {
            p.clients
                .logs
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|error| spec.api("UntagResource", error))?;
        }
        tag(p, spec, arn, &changes.set.into_iter().collect()).await?;
    }
    Ok(found.outputs)
}

pub(super) async fn delete(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    match p.clients.logs.delete_log_group().log_group_name(name).send().await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("DeleteLogGroup", error)),
    }
}

pub(super) async fn find(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    find_group(p, spec, spec.str("name")?).await
}

/// The log group named exactly `name` (DescribeLogGroups matches prefixes).
async fn find_group(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Created>, ProviderError> {
    let mut pages = p.clients.logs.describe_log_groups().log_group_name_prefix(name).into_paginator().items().send();
    while let Some(group) = pages.try_next().await.map_err(|error| spec.api("DescribeLogGroups", error))? {
        if group.log_group_name() != Some(name) {
            continue;
        }
        // `arn` ends in `:*` (the log streams); `log_group_arn` is the group itself.
        let arn = group
            .log_group_arn()
            .map(str::to_owned)
            .or_else(|| group.arn().map(|arn| arn.trim_end_matches(":*").to_owned()))
            .ok_or_else(|| spec.failed("DescribeLogGroups", format!("no ARN for log group {name}")))?;
        let outputs = Outputs::from([("arn".to_owned(), json!(arn)), ("name".to_owned(), json!(name))]);
        return Ok(Some(Created { physical_id: name.to_owned(), outputs }));
    }
    Ok(None)
}

fn arn(found: &Created) -> &str {
    found.outputs["arn"].as_str().unwrap_or_default()
}

/// PutRetentionPolicy; with no `retention_days`, DeleteRetentionPolicy (keep forever).
async fn put_retention(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    match spec.opt_i32("retention_days")? {
        Some(days) => {
            p.clients
                .logs
                .put_retention_policy()
                .log_group_name(name)
                .retention_in_days(days)
                .send()
                .await
                .map_err(|error| spec.api("PutRetentionPolicy", error))?;
        }
        None => {
            p.clients
                .logs
                .delete_retention_policy()
                .log_group_name(name)
                .send()
                .await
                .map_err(|error| spec.api("DeleteRetentionPolicy", error))?;
        }
    }
    Ok(())
}

async fn tag(
    p: &AwsProvider,
    spec: &Spec<'_>,
    arn: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if tags.is_empty() {
        return Ok(());
    }
    p.clients
        .logs
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(hash_map(tags)))
        .send()
        .await
        .map_err(|error| spec.api("TagResource", error))?;
    Ok(())
}
