//! IAM roles (Kind::Role) with one inline policy.
//!
//! Policies are sent as the JSON text of the input objects. IAM is eventually consistent:
//! a role just created may not be visible to PutRolePolicy yet, so that call is retried on
//! `NoSuchEntity` while the role propagates.

use std::collections::BTreeMap;

use serde_json::json;

use aws_sdk_iam::types::Tag;

use super::error::is;
use super::inputs::TagChanges;
use super::retry::{retry, Backoff};
use super::{AwsProvider, Change, Spec};
use crate::engine::provider::{Created, ProviderError};
use crate::engine::resource::Outputs;

const NO_SUCH_ENTITY: &[&str] = &["NoSuchEntity"];

pub(super) async fn create(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let name = spec.str("name")?;
    let trust = spec.json_text("assume_role_policy")?;
    let tags = iam_tags(spec, &spec.tags()?)?;
    let role = p
        .clients
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|error| spec.api("CreateRole", error))?;
    let arn = role
        .role()
        .map(|role| role.arn().to_owned())
        .ok_or_else(|| spec.failed("CreateRole", "no role in the answer"))?;
    put_policy(p, spec, name).await?;
    Ok(Created { physical_id: name.to_owned(), outputs: outputs(&arn, name) })
}

pub(super) async fn update(p: &AwsProvider, spec: &Spec<'_>, change: &Change<'_>) -> Result<Outputs, ProviderError> {
    let name = change.id();
    if change.any(&["assume_role_policy"]) {
        p.clients
            .iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(spec.json_text("assume_role_policy")?)
            .send()
            .await
            .map_err(|error| spec.api("UpdateAssumeRolePolicy", error))?;
    }
    if change.any(&["policy", "policy_name"]) {
        put_policy(p, spec, name).await?;
    }
    if change.any(&["policy_name"]) {
        // A role adopted after an interrupted create is recorded without its policy name:
        // there is no old policy to remove, and requiring one would fail every later deploy.
        let new = spec.str("policy_name")?;
        if let Some(old) = change.old().opt_str("policy_name")?.filter(|old| *old != new) {
            delete_policy(p, spec, name, old).await?;
        }
    }
    if change.any(&["tags"]) {
        update_tags(p, spec, name, &change.old().tags()?, &spec.tags()?).await?;
    }
    match find_role(p, spec, name).await? {
        Some(created) => Ok(created.outputs),
        None => Err(spec.failed("GetRole", format!("role {name} does not exist"))),
    }
}

pub(super) async fn delete(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let names =
        match p.clients.iam.list_role_policies().role_name(name).into_paginator().items().send().try_collect().await {
            Ok(names) => names,
            Err(error) if is(&error, NO_SUCH_ENTITY) => return Ok(()),
            Err(error) => return Err(spec.api("ListRolePolicies", error)),
        };
    for policy in names {
        delete_policy(p, spec, name, &policy).await?;
    }
    match p.clients.iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NO_SUCH_ENTITY) => Ok(()),
        Err(error) => Err(spec.api("DeleteRole", error)),
    }
}

pub(super) async fn find(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    find_role(p, spec, spec.str("name")?).await
}

async fn find_role(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Created>, ProviderError> {
    match p.clients.iam.get_role().role_name(name).send().await {
        Ok(output) => {
            Ok(output.role().map(|role| Created { physical_id: name.to_owned(), outputs: outputs(role.arn(), name) }))
        }
        Err(error) if is(&error, NO_SUCH_ENTITY) => Ok(None),
        Err(error) => Err(spec.api("GetRole", error)),
    }
}

fn outputs(arn: &str, name: &str) -> Outputs {
    Outputs::from([("arn".to_owned(), json!(arn)), ("name".to_owned(), json!(name))])
}

/// Puts the inline policy, waiting out the role's propagation if it was just created.
async fn put_policy(p: &AwsProvider, spec: &Spec<'_>, role: &str) -> Result<(), ProviderError> {
    let policy_name = spec.str("policy_name")?;
    let document = spec.json_text("policy")?;
    let put = || {
        p.clients
            .iam
            .put_role_policy()
            .role_name(role)
            .policy_name(policy_name)
            .policy_document(document.clone())
            .send()
    };
    retry(Backoff::IAM_PROPAGATION, put, |error| is(error, NO_SUCH_ENTITY))
        .await
        .map_err(|error| spec.api("PutRolePolicy", error))?;
    Ok(())
}

async fn delete_policy(p: &AwsProvider, spec: &Spec<'_>, role: &str, policy: &str) -> Result<(), ProviderError> {
    match p.clients.iam.delete_role_policy().role_name(role).policy_name(policy).send().await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NO_SUCH_ENTITY) => Ok(()),
        Err(error) => Err(spec.api("DeleteRolePolicy", error)),
    }
}

async fn update_tags(
    p: &AwsProvider,
    spec: &Spec<'_>,
    role: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    let changes = TagChanges::between(old, new);
    if !changes.remove.is_empty() {
        p.clients
            .iam
            .untag_role()
            .role_name(role)
            .set_tag_keys(Some(changes.remove))
            .send()
            .await
            .map_err(|error| spec.api("UntagRole", error))?;
    }
    if !changes.set.is_empty() {
        let tags = iam_tags(spec, &changes.set.into_iter().collect())?;
        p.clients
            .iam
            .tag_role()
            .role_name(role)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|error| spec.api("TagRole", error))?;
    }
    Ok(())
}

fn iam_tags(spec: &Spec<'_>, tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, ProviderError> {
    tags.iter().map(|(key, value)| spec.built("TagRole", Tag::builder().key(key).value(value).build())).collect()
}
