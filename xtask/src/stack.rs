//! The architecture, declared once as data and expanded into resources by iteration.
//!
//! [`FUNCTIONS`](crate::functions::FUNCTIONS) lists each Lambda with its routes, the events
//! that trigger it, the capabilities it needs and the settings it reads. From that table and
//! an environment this module derives every resource: the upload bucket; per function an IAM
//! role whose policy grants exactly those capabilities, a log group, the function, its `live`
//! alias and its API integration; per route an API route and an invoke permission; per
//! triggered function S3's invoke permission and the asynchronous invoke configuration; per
//! function whose environment reserves a concurrency, that reservation; the
//! bucket's notification of every trigger; plus the HTTP API and its `$default` stage.
//!
//! The API and S3 invoke each function through its alias, and may invoke nothing else: the
//! permissions are scoped to the alias. A deploy publishes a version and moves the alias to
//! it; a rollback moves the alias back to an earlier version (see [`crate::ops::rollback`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::Environment;
use crate::engine::resource::{Kind, Reference, Resource};
use crate::functions::{Capability, Function, Route, Setting, Trigger, FUNCTIONS};
use crate::manifest::Manifest;

/// The prefix clients upload under.
pub const UPLOAD_PREFIX: &str = "uploads/";
/// The prefix analysis results are kept under. With [`UPLOAD_PREFIX`], the only parts of the
/// bucket the functions may touch.
pub const RESULTS_PREFIX: &str = "results/";
/// The alias the API invokes.
pub const LIVE_ALIAS: &str = "live";
/// The extensions of uploads, each a suffix the bucket notification filters on.
pub const UPLOAD_EXTENSIONS: [&str; 2] = ["jpg", "png"];
/// Lambda retries a failed asynchronous invocation this many times (its maximum).
pub const ASYNC_RETRY_ATTEMPTS: u32 = 2;
/// An event not yet handled after this long is dropped: an analysis nobody has read within
/// the hour is not worth running later (Lambda's default is six hours).
pub const MAX_EVENT_AGE_SECONDS: u32 = 3600;

/// Everything the stack derives from besides the environment file.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub env: &'a Environment,
    pub account_id: &'a str,
    pub manifest: &'a Manifest,
    /// Whether requests reach the cloud over TLS (see [`crate::aws::uses_tls`]).
    pub tls: bool,
    /// Where the local cloud's data plane serves the API (`http://127.0.0.1:<port>`), when
    /// the environment runs on this machine.
    pub local_api_url: Option<&'a str>,
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
        for trigger in function.triggers {
            match trigger {
                Trigger::UploadCreated => resources.push(upload_permission(cx, function)),
            }
        }
        if !function.triggers.is_empty() {
            resources.push(invoke_config(cx, function));
        }
        if let Some(reserved) = cx.env.functions[function.name].reserved_concurrency {
            resources.push(concurrency(cx, function, reserved));
        }
    }
    resources.extend(notification(cx));
    Ok(resources)
}

fn bucket(cx: &Context<'_>) -> Resource {
    let bucket = Resource::new("bucket.uploads", Kind::Bucket, cx.bucket_name())
        .input("name", cx.bucket_name())
        // Private, encrypted at rest: recorded, so that drift sees either turned off.
        .input("public_access_block", crate::aws::block_all_public_access())
        .input("encryption", crate::aws::BUCKET_ENCRYPTION)
        .input("cors_allowed_origins", json!(upload_origins(cx)))
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

/// The origins a browser may upload from: the environment's own, plus the API's, where the
/// page (`GET /`) is served. `*` already allows everything and stays alone.
pub fn upload_origins(cx: &Context<'_>) -> Vec<String> {
    let mut origins = cx.env.cors_allowed_origins.clone();
    if origins.iter().any(|origin| origin == "*") {
        return origins;
    }
    for origin in api_origins(cx) {
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    origins
}

/// The origins the API answers on: its endpoint, and on the local cloud the data plane that
/// serves it on this machine, by address and by name.
fn api_origins(cx: &Context<'_>) -> Vec<String> {
    let mut origins = vec![Reference::to("api", "endpoint")];
    if let Some(url) = cx.local_api_url {
        let url = url.trim_end_matches('/');
        origins.push(url.to_owned());
        if let Some(port) = url.strip_prefix("http://127.0.0.1:") {
            origins.push(format!("http://localhost:{port}"));
        }
    }
    origins
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
            Setting::MaxUploadBytes => ("MAX_UPLOAD_BYTES", cx.env.max_upload_bytes.to_string()),
            Setting::RequireContentLength => ("REQUIRE_CONTENT_LENGTH", cx.env.require_content_length.to_string()),
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

/// The function's reserved concurrency, when the environment sets one: it bounds what the
/// function can cost, and what it may take of the account's concurrency.
fn concurrency(cx: &Context<'_>, function: &Function, reserved: u32) -> Resource {
    let target = format!("function.{}", function.name);
    Resource::new(format!("concurrency.{}", function.name), Kind::Concurrency, cx.physical_name(function.name))
        .input("function_name", Reference::to(&target, "name"))
        .input("reserved", reserved)
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

/// S3 may invoke the function's alias for objects of this account's upload bucket.
fn upload_permission(cx: &Context<'_>, function: &Function) -> Resource {
    let statement_id = format!("s3-uploads-{}", function.name);
    Resource::new(format!("permission.{}-uploads", function.name), Kind::Permission, statement_id.as_str())
        .input("function_name", Reference::to(&format!("function.{}", function.name), "name"))
        .input("qualifier", Reference::to(&format!("alias.{}", function.name), "name"))
        .input("statement_id", statement_id.as_str())
        .input("principal", "s3.amazonaws.com")
        .input("action", "lambda:InvokeFunction")
        .input("source_arn", Reference::to("bucket.uploads", "arn"))
        // A bucket ARN names no account: without this, any account's bucket of that name could.
        .input("source_account", cx.account_id)
}

/// Asynchronous invocations of the function's alias: retried, and dropped when too old.
fn invoke_config(cx: &Context<'_>, function: &Function) -> Resource {
    let name = format!("{}:{LIVE_ALIAS}", cx.physical_name(function.name));
    Resource::new(format!("invoke-config.{}", function.name), Kind::EventInvokeConfig, name)
        .input("function_name", Reference::to(&format!("function.{}", function.name), "name"))
        .input("qualifier", Reference::to(&format!("alias.{}", function.name), "name"))
        .input("maximum_retry_attempts", ASYNC_RETRY_ATTEMPTS)
        .input("maximum_event_age_seconds", MAX_EVENT_AGE_SECONDS)
}

/// The upload bucket's notification: every function's triggers, one configuration per
/// trigger and extension, each created after the permission that lets S3 invoke it (S3
/// checks it). `None` when no function has a trigger.
fn notification(cx: &Context<'_>) -> Option<Resource> {
    let mut configurations = Vec::new();
    let mut permissions = Vec::new();
    for function in FUNCTIONS {
        for trigger in function.triggers {
            match trigger {
                Trigger::UploadCreated => {
                    for extension in UPLOAD_EXTENSIONS {
                        configurations.push(json!({
                            "id": format!("{}-{extension}", function.name),
                            "function_arn": Reference::to(&format!("alias.{}", function.name), "arn"),
                            "events": ["s3:ObjectCreated:*"],
                            "prefix": UPLOAD_PREFIX,
                            "suffix": format!(".{extension}"),
                        }));
                    }
                    permissions.push(format!("permission.{}-uploads", function.name));
                }
            }
        }
    }
    if configurations.is_empty() {
        return None;
    }
    let resource = Resource::new("notification.uploads", Kind::BucketNotification, cx.bucket_name())
        .input("bucket", Reference::to("bucket.uploads", "name"))
        .input("lambda_functions", json!(configurations));
    Some(permissions.into_iter().fold(resource, Resource::after))
}

#[cfg(test)]
mod tests;
