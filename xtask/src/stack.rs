//! The architecture, declared once as data and expanded into resources by iteration.
//!
//! [`FUNCTIONS`](crate::functions::FUNCTIONS) lists each Lambda with its route, the
//! capabilities it needs and the settings it reads. From that table and an environment this
//! module derives every resource: the upload bucket, and per function an IAM role whose
//! policy grants exactly those capabilities, a log group, the function, its `live` alias,
//! its API integration, route and invoke permission; plus the HTTP API and its `$default`
//! stage.
//!
//! The API invokes each function through its alias, and may invoke nothing else: the
//! permission is scoped to the alias. A deploy publishes a version and moves the alias to
//! it; a rollback moves the alias back to an earlier version (see [`crate::ops::rollback`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::Environment;
use crate::engine::resource::{Kind, Reference, Resource};
use crate::functions::{Capability, Function, Route, Setting, FUNCTIONS};
use crate::manifest::Manifest;

/// The prefix clients upload under.
pub const UPLOAD_PREFIX: &str = "uploads/";
/// The prefix analysis results are kept under. With [`UPLOAD_PREFIX`], the only parts of the
/// bucket the functions may touch.
pub const RESULTS_PREFIX: &str = "results/";
/// The alias the API invokes.
pub const LIVE_ALIAS: &str = "live";

/// Everything the stack derives from besides the environment file.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub env: &'a Environment,
    pub account_id: &'a str,
    pub manifest: &'a Manifest,
    /// Whether requests reach the cloud over TLS (see [`crate::aws::uses_tls`]).
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("the build manifest has no {arch} build of `{function}`; run `cargo xtask build`{hint}")]
    MissingArtifact { function: String, arch: String, hint: &'static str },
}

impl Context<'_> {
    /// `<project>-<env>-<name>`, the physical name of everything in the stack.
    pub fn physical_name(&self, name: &str) -> String {
        format!("{}-{}-{name}", self.env.project, self.env.name)
    }

    /// The upload bucket's name: globally unique thanks to the account id.
    pub fn bucket_name(&self) -> String {
        self.physical_name(&format!("uploads-{}", self.account_id))
    }

    pub fn partition(&self) -> &'static str {
        crate::aws::partition(&self.env.region)
    }

    /// Tags for a taggable resource: the environment's own, then the ones that identify it.
    fn tags(&self, logical_name: &str) -> Value {
        let mut tags: BTreeMap<String, String> = self.env.tags.clone();
        tags.insert("project".to_owned(), self.env.project.clone());
        tags.insert("environment".to_owned(), self.env.name.clone());
        tags.insert("logical-name".to_owned(), logical_name.to_owned());
        json!(tags)
    }
}

/// The desired resources of an environment, in a stable order.
pub fn resources(cx: &Context<'_>) -> Result<Vec<Resource>, StackError> {
    let mut resources = vec![bucket(cx), api(cx), stage(cx)];
    for function in FUNCTIONS {
        resources.push(role(cx, function));
        resources.push(log_group(cx, function));
        resources.push(lambda(cx, function)?);
        resources.push(alias(function));
        resources.push(integration(cx, function));
        for route in function.routes {
            resources.push(api_route(function, route));
            resources.push(permission(cx, function, route));
        }
    }
    Ok(resources)
}

fn bucket(cx: &Context<'_>) -> Resource {
    let bucket = Resource::new("bucket.uploads", Kind::Bucket, cx.bucket_name())
        .input("name", cx.bucket_name())
        .input("cors_allowed_origins", json!(cx.env.cors_allowed_origins))
        .input("uploads_expire_after_days", cx.env.uploads_expire_after_days)
        // Results go with the uploads they describe.
        .input("expire_prefixes", json!([RESULTS_PREFIX, UPLOAD_PREFIX]))
        .input("tags", cx.tags("bucket.uploads"));
    // TLS only, except behind a plain-HTTP emulator endpoint, where no request could comply.
    if cx.tls {
        bucket.input("policy", crate::aws::tls_only_policy(cx.partition(), &cx.bucket_name()))
    } else {
        bucket
    }
}

fn role(cx: &Context<'_>, function: &Function) -> Resource {
    let id = format!("role.{}", function.name);
    let name = cx.physical_name(function.name);
    Resource::new(&id, Kind::Role, &name)
        .input("name", name.as_str())
        .input("assume_role_policy", assume_role_policy())
        .input("policy_name", "least-privilege")
        .input("policy", policy(cx, function))
        .input("tags", cx.tags(&id))
}

/// Lambda may assume the role, and nothing else may.
pub fn assume_role_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The function's inline policy: its capabilities, on exactly their resources, plus writing
/// to its own log group. Statements are sorted so the document is canonical.
pub fn policy(cx: &Context<'_>, function: &Function) -> Value {
    let objects = format!("arn:{}:s3:::{}/{UPLOAD_PREFIX}*", cx.partition(), cx.bucket_name());
    let results = format!("arn:{}:s3:::{}/{RESULTS_PREFIX}*", cx.partition(), cx.bucket_name());
    let log_group = format!(
        "arn:{}:logs:{}:{}:log-group:{}:*",
        cx.partition(),
        cx.env.region,
        cx.account_id,
        log_group_name(cx, function)
    );
    let mut statements: Vec<Value> = vec![json!({
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": log_group,
    })];
    for capability in function.capabilities {
        statements.push(match capability {
            Capability::PutUploads => json!({
                "Sid": "PutUploads",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": objects,
            }),
            Capability::GetUploads => json!({
                "Sid": "GetUploads",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": objects,
            }),
            // DetectFaces has no resource-level permissions: `*` is the one wildcard.
            Capability::StoreResults => json!({
                "Sid": "StoreResults",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": results,
            }),
            Capability::DetectFaces => json!({
                "Sid": "DetectFaces",
                "Effect": "Allow",
                "Action": ["rekognition:DetectFaces"],
                "Resource": "*",
            }),
        });
    }
    statements.sort_by(|a, b| a["Sid"].as_str().cmp(&b["Sid"].as_str()));
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn log_group_name(cx: &Context<'_>, function: &Function) -> String {
    format!("/aws/lambda/{}", cx.physical_name(function.name))
}

fn log_group(cx: &Context<'_>, function: &Function) -> Resource {
    let id = format!("logs.{}", function.name);
    let name = log_group_name(cx, function);
    Resource::new(&id, Kind::LogGroup, &name)
        .input("name", name.as_str())
        .input("retention_days", cx.env.log_retention_days)
        .input("tags", cx.tags(&id))
}

fn lambda(cx: &Context<'_>, function: &Function) -> Result<Resource, StackError> {
    let id = format!("function.{}", function.name);
    let name = cx.physical_name(function.name);
    let settings = &cx.env.functions[function.name];
    let artifact =
        cx.manifest.functions.get(function.name).and_then(|by_arch| by_arch.get(&settings.architecture)).ok_or_else(
            || StackError::MissingArtifact {
                function: function.name.to_owned(),
                arch: settings.architecture.to_string(),
                hint: match settings.architecture {
                    crate::arch::Arch::X86_64 => "",
                    crate::arch::Arch::Arm64 => " with the aarch64-unknown-linux-gnu target installed",
                },
            },
        )?;
    let environment: BTreeMap<&str, String> = function
        .settings
        .iter()
        .map(|setting| match setting {
            Setting::UploadBucket => ("UPLOAD_BUCKET", cx.bucket_name()),
            Setting::UploadUrlExpiry => ("UPLOAD_URL_EXPIRY_SECONDS", cx.env.upload_url_expiry_seconds.to_string()),
        })
        .collect();
    Ok(Resource::new(&id, Kind::Function, &name)
        .input("name", name.as_str())
        .input("role_arn", Reference::to(&format!("role.{}", function.name), "arn"))
        .input("code_sha256", artifact.sha256_base64.as_str())
        .input("memory_mb", settings.memory_mb)
        .input("timeout_seconds", settings.timeout_seconds)
        .input("architecture", settings.architecture.lambda_name())
        .input("environment", json!(environment))
        .input("tags", cx.tags(&id))
        .input("publish", true)
        // Created first, so Lambda never creates it itself without retention.
        .after(format!("logs.{}", function.name)))
}

/// The `live` alias, on the function's latest published version.
fn alias(function: &Function) -> Resource {
    let target = format!("function.{}", function.name);
    Resource::new(format!("alias.{}", function.name), Kind::Alias, LIVE_ALIAS)
        .input("function_name", Reference::to(&target, "name"))
        .input("name", LIVE_ALIAS)
        .input("function_version", Reference::to(&target, "version"))
}

fn api(cx: &Context<'_>) -> Resource {
    let name = cx.physical_name("api");
    Resource::new("api", Kind::HttpApi, &name)
        .input("name", name.as_str())
        .input("cors_allowed_origins", json!(cx.env.cors_allowed_origins))
        .input("tags", cx.tags("api"))
}

fn stage(cx: &Context<'_>) -> Resource {
    Resource::new("stage", Kind::Stage, "$default")
        .input("api_id", Reference::to("api", "id"))
        .input("name", "$default")
        .input("auto_deploy", true)
        .input("throttling_rate_limit", cx.env.throttling.rate_limit)
        .input("throttling_burst_limit", cx.env.throttling.burst_limit)
        .input("tags", cx.tags("stage"))
}

fn integration(cx: &Context<'_>, function: &Function) -> Resource {
    Resource::new(format!("integration.{}", function.name), Kind::Integration, cx.physical_name(function.name))
        .input("api_id", Reference::to("api", "id"))
        .input("function_arn", Reference::to(&format!("alias.{}", function.name), "arn"))
        .input("payload_format_version", "2.0")
}

fn api_route(function: &Function, route: &Route) -> Resource {
    let route_key = route.key();
    Resource::new(format!("route.{}", route.name), Kind::Route, route_key.as_str())
        .input("api_id", Reference::to("api", "id"))
        .input("route_key", route_key.as_str())
        .input("target", format!("integrations/{}", Reference::to(&format!("integration.{}", function.name), "id")))
}

/// API Gateway may invoke the function's alias for this route, and for nothing else.
fn permission(cx: &Context<'_>, function: &Function, route: &Route) -> Resource {
    let statement_id = format!("apigateway-{}-{}", route.method, route.name);
    let source_arn = format!(
        "arn:{}:execute-api:{}:{}:{}/*/{}{}",
        cx.partition(),
        cx.env.region,
        cx.account_id,
        Reference::to("api", "id"),
        route.method,
        route.arn_path()
    );
    Resource::new(format!("permission.{}", route.name), Kind::Permission, statement_id.as_str())
        .input("function_name", Reference::to(&format!("function.{}", function.name), "name"))
        .input("qualifier", Reference::to(&format!("alias.{}", function.name), "name"))
        .input("statement_id", statement_id.as_str())
        .input("principal", "apigateway.amazonaws.com")
        .input("action", "lambda:InvokeFunction")
        .input("source_arn", source_arn)
}

#[cfg(test)]
mod tests;
