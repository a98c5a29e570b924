//! Lambda functions (Kind::Function), their aliases (Kind::Alias) and their resource-policy
//! statements (Kind::Permission).
//!
//! Every function publishes versions: creating one publishes version 1, and an update that
//! changes its code or configuration publishes the next. The function's `version` output is
//! its latest published version, which the `live` alias points at; API integrations invoke
//! the alias, so moving the alias (deploy, rollback) is what changes the code that serves.
//!
//! Code is deployed from the content-addressed artifact store (see [`super::s3`]), never
//! inlined: the zip whose SHA-256 is `code_sha256` is uploaded once under its hex SHA-256
//! (from the local build, unless the store has it already), and CreateFunction and
//! UpdateFunctionCode point at it.
//!
//! Lambda's behaviours handled here:
//! - a role created moments ago "cannot be assumed by Lambda": CreateFunction (and an
//!   UpdateFunctionConfiguration that changes the role) is retried densely for up to 40 s;
//! - updates are asynchronous: before each update the function must have left `Pending`
//!   and have no update `InProgress` (polled every second, for up to 2 minutes), and a
//!   `ResourceConflictException` that still slips through is retried;
//! - creating does not wait for `Active`: what follows a create (permissions, integrations)
//!   needs only the ARN.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Value};

use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, LastUpdateStatus, Runtime, State};

use super::error::{is, CallError};
use super::inputs::{hash_map, TagChanges};
use super::retry::{poll, retry, Backoff, Poll};
use super::{s3, AwsProvider, Change, Spec};
use crate::engine::provider::{Created, ProviderError};
use crate::engine::resource::Outputs;

/// The runtime for Rust binaries named `bootstrap`.
pub const RUNTIME: Runtime = Runtime::Providedal2023;
pub const HANDLER: &str = "bootstrap";

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const CONFLICT: &[&str] = &["ResourceConflictException"];
/// What "already exists" comes as: AWS says ResourceConflictException; moto, for aliases,
/// ConflictException.
const EXISTS: &[&str] = &["ResourceConflictException", "ConflictException"];
/// The configuration keys UpdateFunctionConfiguration changes.
const CONFIGURATION_KEYS: &[&str] = &["memory_mb", "timeout_seconds", "role_arn", "environment"];
/// The keys UpdateFunctionCode changes.
const CODE_KEYS: &[&str] = &["code_sha256", "architecture"];
/// The keys whose change publishes a new version (`publish` itself: a function first
/// deployed without versions gets its first one).
const VERSIONED_KEYS: &[&str] =
    &["code_sha256", "architecture", "memory_mb", "timeout_seconds", "role_arn", "environment", "publish"];

// ---------------------------------------------------------------------------------------
// Functions

pub(super) async fn create_function(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let name = spec.str("name")?;
    let role = spec.str("role_arn")?;
    let memory = spec.i32("memory_mb")?;
    let timeout = spec.i32("timeout_seconds")?;
    let architecture = architecture(spec)?;
    let environment = environment(spec)?;
    let tags = spec.tags()?;
    let key = upload_code(p, spec).await?;
    let code = FunctionCode::builder().s3_bucket(&p.artifact_bucket).s3_key(&key).build();
    let create = || {
        p.clients
            .lambda
            .create_function()
            .function_name(name)
            .runtime(RUNTIME)
            .handler(HANDLER)
            .role(role)
            .code(code.clone())
            .memory_size(memory)
            .timeout(timeout)
            .architectures(architecture.clone())
            .environment(environment.clone())
            .set_tags((!tags.is_empty()).then(|| hash_map(&tags)))
            .publish(true)
            .send()
    };
    let created = retry(Backoff::IAM_PROPAGATION, create, role_not_assumable)
        .await
        .map_err(|error| spec.api("CreateFunction", error))?;
    let outputs =
        outputs(spec, "CreateFunction", name, created.function_arn(), created.code_sha256(), created.version())?;
    Ok(Created { physical_id: name.to_owned(), outputs })
}

pub(super) async fn update_function(
    p: &AwsProvider,
    spec: &Spec<'_>,
    change: &Change<'_>,
) -> Result<Outputs, ProviderError> {
    let name = change.id();
    if change.any(CODE_KEYS) {
        update_code(p, spec, name).await?;
    }
    if change.any(CONFIGURATION_KEYS) {
        update_configuration(p, spec, change, name).await?;
    }
    let published = if change.any(VERSIONED_KEYS) { Some(publish_version(p, spec, name).await?) } else { None };
    let mut found = find_named(p, spec, name)
        .await?
        .ok_or_else(|| spec.failed("GetFunction", format!("function {name} does not exist")))?;
    if change.any(&["tags"]) {
        let arn = found.outputs["arn"].as_str().unwrap_or(name);
        update_tags(p, spec, arn, &change.old().tags()?, &spec.tags()?).await?;
    }
    let version = match published {
        Some(version) => Some(version),
        None => change.current.outputs.get("version").and_then(Value::as_str).map(str::to_owned),
    };
    if let Some(version) = version {
        found.outputs.insert("version".to_owned(), json!(version));
    }
    Ok(found.outputs)
}

/// Publishes what `$LATEST` is now as a version, once the update has finished, and returns
/// its number. Lambda returns the latest version instead when nothing changed since; the
/// expected `CodeSha256` guards against publishing code another writer just uploaded.
async fn publish_version(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<String, ProviderError> {
    wait_ready(p, spec, name).await?;
    let code_sha256 = spec.str("code_sha256")?;
    let publish = || p.clients.lambda.publish_version().function_name(name).code_sha256(code_sha256).send();
    let published = retry(Backoff::LAMBDA_CONFLICT, publish, |error| is(error, CONFLICT))
        .await
        .map_err(|error| spec.api("PublishVersion", error))?;
    published.version().map(str::to_owned).ok_or_else(|| spec.failed("PublishVersion", "no Version in the answer"))
}

/// The highest published version of a function; `None` when it has none.
async fn latest_version(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<String>, ProviderError> {
    let mut latest: Option<u64> = None;
    let mut marker: Option<String> = None;
    loop {
        let page = p
            .clients
            .lambda
            .list_versions_by_function()
            .function_name(name)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|error| spec.api("ListVersionsByFunction", error))?;
        for version in page.versions().iter().filter_map(|v| v.version()?.parse::<u64>().ok()) {
            latest = latest.max(Some(version));
        }
        match page.next_marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => return Ok(latest.map(|version| version.to_string())),
        }
    }
}

pub(super) async fn delete_function(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let delete = || p.clients.lambda.delete_function().function_name(name).send();
    match retry(Backoff::LAMBDA_CONFLICT, delete, |error| is(error, CONFLICT)).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("DeleteFunction", error)),
    }
}

/// The function, with its latest published version as `version`.
pub(super) async fn find_function(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let name = spec.str("name")?;
    let Some(mut found) = find_named(p, spec, name).await? else { return Ok(None) };
    match latest_version(p, spec, name).await? {
        Some(version) => found.outputs.insert("version".to_owned(), json!(version)),
        None => found.outputs.remove("version"),
    };
    Ok(Some(found))
}

async fn find_named(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<Option<Created>, ProviderError> {
    let found = match p.clients.lambda.get_function_configuration().function_name(name).send().await {
        Ok(found) => found,
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("GetFunctionConfiguration", error)),
    };
    // Unqualified, this is `$LATEST`: the published version is the caller's to add.
    let outputs = outputs(spec, "GetFunctionConfiguration", name, found.function_arn(), found.code_sha256(), None)?;
    Ok(Some(Created { physical_id: name.to_owned(), outputs }))
}

fn outputs(
    spec: &Spec<'_>,
    operation: &'static str,
    name: &str,
    arn: Option<&str>,
    code_sha256: Option<&str>,
    version: Option<&str>,
) -> Result<Outputs, ProviderError> {
    let arn = arn.ok_or_else(|| spec.failed(operation, "no FunctionArn in the answer"))?;
    let mut outputs = Outputs::from([("arn".to_owned(), json!(arn)), ("name".to_owned(), json!(name))]);
    if let Some(sha) = code_sha256 {
        outputs.insert("code_sha256".to_owned(), json!(sha));
    }
    if let Some(version) = version {
        outputs.insert("version".to_owned(), json!(version));
    }
    Ok(outputs)
}

/// Makes sure the artifact store holds the zip whose SHA-256 is `code_sha256` and returns
/// its key there. Keys are content-addressed, so a stored object is those exact bytes;
/// otherwise the zip comes from the local build, checked against the hash, and uploaded.
async fn upload_code(p: &AwsProvider, spec: &Spec<'_>) -> Result<String, ProviderError> {
    use base64::Engine as _;
    let expected = spec.str("code_sha256")?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(expected)
        .map_err(|error| spec.invalid("code_sha256", format!("`{expected}` is not base64: {error}")))?;
    let key = p.artifact_key(&hex::encode(digest));
    if s3::artifact_exists(p, spec, &key).await? {
        return Ok(key);
    }
    let path = p.local_artifacts.get(expected).ok_or_else(|| {
        spec.invalid(
            "code_sha256",
            format!(
                "artifact {expected} is neither in the artifact store (s3://{}/{key}) nor in the local build",
                p.artifact_bucket
            ),
        )
    })?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|error| spec.invalid("code_sha256", format!("cannot read {}: {error}", path.display())))?;
    let (_, base64) = crate::artifact::sha256(&bytes);
    if base64 != expected {
        return Err(spec.invalid(
            "code_sha256",
            format!(
                "{} has SHA-256 {base64} (base64), not {expected}; the build and the plan disagree",
                path.display()
            ),
        ));
    }
    s3::put_artifact(p, spec, &key, bytes, &base64).await?;
    Ok(key)
}

async fn update_code(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let key = upload_code(p, spec).await?;
    let architecture = architecture(spec)?;
    wait_ready(p, spec, name).await?;
    let update = || {
        p.clients
            .lambda
            .update_function_code()
            .function_name(name)
            .s3_bucket(&p.artifact_bucket)
            .s3_key(&key)
            .architectures(architecture.clone())
            .send()
    };
    retry(Backoff::LAMBDA_CONFLICT, update, |error| is(error, CONFLICT))
        .await
        .map_err(|error| spec.api("UpdateFunctionCode", error))?;
    Ok(())
}

/// Sends only the changed settings.
async fn update_configuration(
    p: &AwsProvider,
    spec: &Spec<'_>,
    change: &Change<'_>,
    name: &str,
) -> Result<(), ProviderError> {
    let role = change.any(&["role_arn"]).then(|| spec.str("role_arn")).transpose()?;
    let memory = change.any(&["memory_mb"]).then(|| spec.i32("memory_mb")).transpose()?;
    let timeout = change.any(&["timeout_seconds"]).then(|| spec.i32("timeout_seconds")).transpose()?;
    let environment = change.any(&["environment"]).then(|| environment(spec)).transpose()?;
    wait_ready(p, spec, name).await?;
    let update = || {
        p.clients
            .lambda
            .update_function_configuration()
            .function_name(name)
            .set_role(role.map(str::to_owned))
            .set_memory_size(memory)
            .set_timeout(timeout)
            .set_environment(environment.clone())
            .send()
    };
    retry(Backoff::IAM_PROPAGATION, update, |error| role_not_assumable(error) || is(error, CONFLICT))
        .await
        .map_err(|error| spec.api("UpdateFunctionConfiguration", error))?;
    Ok(())
}

async fn update_tags(
    p: &AwsProvider,
    spec: &Spec<'_>,
    arn: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    let changes = TagChanges::between(old, new);
    if !changes.remove.is_empty() {
        p.clients
            .lambda
            .untag_resource()
            .resource(arn)
            .set_tag_keys(Some(changes.remove))
            .send()
            .await
            .map_err(|error| spec.api("UntagResource", error))?;
    }
    if !changes.set.is_empty() {
        p.clients
            .lambda
            .tag_resource()
            .resource(arn)
            .set_tags(Some(changes.set))
            .send()
            .await
            .map_err(|error| spec.api("TagResource", error))?;
    }
    Ok(())
}

/// Whether a function in this state takes an update: it has left `Pending` (creation) and
/// no update is `InProgress`. A `Failed` last update does not block the next one, which may
/// be its fix.
pub fn ready(state: Option<&State>, last_update: Option<&LastUpdateStatus>) -> bool {
    state != Some(&State::Pending) && last_update != Some(&LastUpdateStatus::InProgress)
}

/// Polls GetFunctionConfiguration until the function is [`ready`] for an update.
async fn wait_ready(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let last_seen = Mutex::new(String::new());
    let check = || async {
        let found = p
            .clients
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|error| spec.api("GetFunctionConfiguration", error))?;
        let (state, last_update) = (found.state(), found.last_update_status());
        *last_seen.lock().unwrap() = format!("State {state:?}, LastUpdateStatus {last_update:?}");
        Ok::<_, ProviderError>(ready(state, last_update).then_some(()))
    };
    match poll(Poll::LAMBDA_UPDATE, check).await? {
        Some(()) => Ok(()),
        None => Err(spec.failed(
            "GetFunctionConfiguration",
            format!(
                "function {name} is still busy after {} s ({})",
                Poll::LAMBDA_UPDATE.timeout.as_secs(),
                last_seen.lock().unwrap()
            ),
        )),
    }
}

/// "The role defined for the function cannot be assumed by Lambda": the role is too new.
fn role_not_assumable<E: ProvideErrorMetadata>(error: &CallError<E>) -> bool {
    is(error, &["InvalidParameterValueException"])
        && error.message().is_some_and(|message| message.contains("cannot be assumed"))
}

fn architecture(spec: &Spec<'_>) -> Result<Architecture, ProviderError> {
    match spec.str("architecture")? {
        "x86_64" => Ok(Architecture::X8664),
        "arm64" => Ok(Architecture::Arm64),
        other => Err(spec.invalid("architecture", format!("expected x86_64 or arm64, got {other:?}"))),
    }
}

fn environment(spec: &Spec<'_>) -> Result<Environment, ProviderError> {
    Ok(Environment::builder().set_variables(Some(hash_map(&spec.string_map("environment")?))).build())
}

// ---------------------------------------------------------------------------------------
// Aliases

/// Creates the alias; one left by an interrupted run is moved to the desired version.
pub(super) async fn create_alias(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let (function, name, version) = (spec.str("function_name")?, spec.str("name")?, spec.str("function_version")?);
    let create = || p.clients.lambda.create_alias().function_name(function).name(name).function_version(version).send();
    match retry(Backoff::LAMBDA_CONFLICT, create, |error| is(error, CONFLICT) && !already_exists(error)).await {
        Ok(created) => alias_outputs(spec, "CreateAlias", created.alias_arn(), name, version),
        Err(error) if already_exists(&error) => move_alias(p, spec, function, name, version).await,
        Err(error) => Err(spec.api("CreateAlias", error)),
    }
}

pub(super) async fn update_alias(
    p: &AwsProvider,
    spec: &Spec<'_>,
    change: &Change<'_>,
) -> Result<Outputs, ProviderError> {
    let (function, version) = (spec.str("function_name")?, spec.str("function_version")?);
    Ok(move_alias(p, spec, function, change.id(), version).await?.outputs)
}

async fn move_alias(
    p: &AwsProvider,
    spec: &Spec<'_>,
    function: &str,
    name: &str,
    version: &str,
) -> Result<Created, ProviderError> {
    let update = || p.clients.lambda.update_alias().function_name(function).name(name).function_version(version).send();
    let updated = retry(Backoff::LAMBDA_CONFLICT, update, |error| is(error, CONFLICT))
        .await
        .map_err(|error| spec.api("UpdateAlias", error))?;
    alias_outputs(spec, "UpdateAlias", updated.alias_arn(), name, version)
}

pub(super) async fn delete_alias(p: &AwsProvider, spec: &Spec<'_>, name: &str) -> Result<(), ProviderError> {
    let function = spec.str("function_name")?;
    let delete = || p.clients.lambda.delete_alias().function_name(function).name(name).send();
    match retry(Backoff::LAMBDA_CONFLICT, delete, |error| is(error, CONFLICT)).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("DeleteAlias", error)),
    }
}

pub(super) async fn find_alias(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let (function, name) = (spec.str("function_name")?, spec.str("name")?);
    match p.clients.lambda.get_alias().function_name(function).name(name).send().await {
        Ok(found) => {
            let version = found.function_version().unwrap_or_default();
            alias_outputs(spec, "GetAlias", found.alias_arn(), name, version).map(Some)
        }
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetAlias", error)),
    }
}

fn alias_outputs(
    spec: &Spec<'_>,
    operation: &'static str,
    arn: Option<&str>,
    name: &str,
    version: &str,
) -> Result<Created, ProviderError> {
    let arn = arn.ok_or_else(|| spec.failed(operation, "no AliasArn in the answer"))?;
    let outputs = Outputs::from([
        ("arn".to_owned(), json!(arn)),
        ("name".to_owned(), json!(name)),
        ("function_version".to_owned(), json!(version)),
    ]);
    Ok(Created { physical_id: name.to_owned(), outputs })
}

// ---------------------------------------------------------------------------------------
// Permissions

/// The parts of a statement that identify it.
struct Statement<'a> {
    function: &'a str,
    id: &'a str,
    qualifier: Option<&'a str>,
}

/// What a statement allows.
struct Grant<'a> {
    principal: &'a str,
    action: &'a str,
    source_arn: Option<&'a str>,
    /// The account that owns the source (S3 bucket ARNs carry none).
    source_account: Option<&'a str>,
}

fn statement<'a>(spec: &Spec<'a>) -> Result<Statement<'a>, ProviderError> {
    Ok(Statement {
        function: spec.str("function_name")?,
        id: spec.str("statement_id")?,
        qualifier: spec.opt_str("qualifier")?,
    })
}

/// Adds the statement. One with the same id (left by an interrupted run) is removed first,
/// so the statement ends up exactly as the inputs say: AWS would refuse the duplicate id
/// (and some emulators would keep both).
pub(super) async fn create_permission(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let statement = statement(spec)?;
    let grant = Grant {
        principal: spec.str("principal")?,
        action: spec.str("action")?,
        source_arn: spec.opt_str("source_arn")?,
        source_account: spec.opt_str("source_account")?,
    };
    if find_permission(p, spec).await?.is_some() {
        remove_permission(p, spec, &statement).await?;
    }
    match add_permission(p, &statement, &grant).await {
        Ok(()) => {}
        Err(error) if already_exists(&error) => {
            remove_permission(p, spec, &statement).await?;
            add_permission(p, &statement, &grant).await.map_err(|error| spec.api("AddPermission", error))?;
        }
        Err(error) => return Err(spec.api("AddPermission", error)),
    }
    Ok(Created { physical_id: statement.id.to_owned(), outputs: permission_outputs(statement.id) })
}

/// Never called by a correct plan: every input of a permission forces a replacement.
pub(super) fn update_permission(spec: &Spec<'_>, change: &Change<'_>) -> Result<Outputs, ProviderError> {
    match change.changed.first() {
        None => Ok(change.current.outputs.clone()),
        Some(key) => Err(spec.invalid(key, "a Lambda permission cannot be updated in place; it must be replaced")),
    }
}

pub(super) async fn delete_permission(p: &AwsProvider, spec: &Spec<'_>, id: &str) -> Result<(), ProviderError> {
    let statement = Statement { id, ..statement(spec)? };
    remove_permission(p, spec, &statement).await
}

pub(super) async fn find_permission(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let statement = statement(spec)?;
    let policy = match p
        .clients
        .lambda
        .get_policy()
        .function_name(statement.function)
        .set_qualifier(statement.qualifier.map(str::to_owned))
        .send()
        .await
    {
        Ok(found) => found.policy().unwrap_or_default().to_owned(),
        Err(error) if is(&error, NOT_FOUND) => return Ok(None),
        Err(error) => return Err(spec.api("GetPolicy", error)),
    };
    let found = policy_has_statement(&policy, statement.id)
        .map_err(|error| spec.failed("GetPolicy", format!("the function's policy is not JSON: {error}")))?;
    Ok(found.then(|| Created { physical_id: statement.id.to_owned(), outputs: permission_outputs(statement.id) }))
}

/// Whether the policy document has a statement with Sid `id`.
pub fn policy_has_statement(policy: &str, id: &str) -> Result<bool, serde_json::Error> {
    let document: Value = serde_json::from_str(policy)?;
    let statements = match &document["Statement"] {
        Value::Array(statements) => statements.as_slice(),
        single @ Value::Object(_) => std::slice::from_ref(single),
        _ => &[],
    };
    Ok(statements.iter().any(|statement| statement["Sid"] == id))
}

fn permission_outputs(id: &str) -> Outputs {
    Outputs::from([("statement_id".to_owned(), json!(id))])
}

async fn add_permission(
    p: &AwsProvider,
    statement: &Statement<'_>,
    grant: &Grant<'_>,
) -> Result<(), CallError<aws_sdk_lambda::operation::add_permission::AddPermissionError>> {
    let add = || {
        p.clients
            .lambda
            .add_permission()
            .function_name(statement.function)
            .statement_id(statement.id)
            .principal(grant.principal)
            .action(grant.action)
            .set_source_arn(grant.source_arn.map(str::to_owned))
            .set_source_account(grant.source_account.map(str::to_owned))
            .set_qualifier(statement.qualifier.map(str::to_owned))
            .send()
    };
    // A conflict other than a duplicate id is a concurrent change to the function.
    retry(Backoff::LAMBDA_CONFLICT, add, |error| is(error, CONFLICT) && !already_exists(error)).await?;
    Ok(())
}

async fn remove_permission(p: &AwsProvider, spec: &Spec<'_>, statement: &Statement<'_>) -> Result<(), ProviderError> {
    let remove = || {
        p.clients
            .lambda
            .remove_permission()
            .function_name(statement.function)
            .statement_id(statement.id)
            .set_qualifier(statement.qualifier.map(str::to_owned))
            .send()
    };
    match retry(Backoff::LAMBDA_CONFLICT, remove, |error| is(error, CONFLICT)).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("RemovePermission", error)),
    }
}

/// "The statement id (...) provided already exists."
fn already_exists<E: ProvideErrorMetadata>(error: &CallError<E>) -> bool {
    is(error, EXISTS) && error.message().is_some_and(|message| message.contains("already exists"))
}

// ---------------------------------------------------------------------------------------
// Asynchronous invocation configurations

/// `<function>:<qualifier>`, the configuration's physical id.
fn invoke_config_id(function: &str, qualifier: &str) -> String {
    format!("{function}:{qualifier}")
}

/// PutFunctionEventInvokeConfig: creates or replaces the configuration, so a create after an
/// interrupted one, and every update, are the same call.
pub(super) async fn put_invoke_config(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    const OPERATION: &str = "PutFunctionEventInvokeConfig";
    let (function, qualifier) = (spec.str("function_name")?, spec.str("qualifier")?);
    let retries = spec.i32("maximum_retry_attempts")?;
    if !(0..=2).contains(&retries) {
        return Err(spec.invalid("maximum_retry_attempts", format!("must be 0, 1 or 2, got {retries}")));
    }
    let age = spec.i32("maximum_event_age_seconds")?;
    if !(60..=21_600).contains(&age) {
        return Err(spec.invalid("maximum_event_age_seconds", format!("must be 60 to 21600, got {age}")));
    }
    let put = || {
        p.clients
            .lambda
            .put_function_event_invoke_config()
            .function_name(function)
            .qualifier(qualifier)
            .maximum_retry_attempts(retries)
            .maximum_event_age_in_seconds(age)
            .send()
    };
    retry(Backoff::LAMBDA_CONFLICT, put, |error| is(error, CONFLICT))
        .await
        .map_err(|error| spec.api(OPERATION, error))?;
    Ok(Created { physical_id: invoke_config_id(function, qualifier), outputs: Outputs::new() })
}

pub(super) async fn update_invoke_config(
    p: &AwsProvider,
    spec: &Spec<'_>,
    change: &Change<'_>,
) -> Result<Outputs, ProviderError> {
    put_invoke_config(p, spec).await?;
    Ok(change.current.outputs.clone())
}

pub(super) async fn delete_invoke_config(p: &AwsProvider, spec: &Spec<'_>) -> Result<(), ProviderError> {
    let (function, qualifier) = (spec.str("function_name")?, spec.str("qualifier")?);
    let delete =
        || p.clients.lambda.delete_function_event_invoke_config().function_name(function).qualifier(qualifier).send();
    match retry(Backoff::LAMBDA_CONFLICT, delete, |error| is(error, CONFLICT)).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("DeleteFunctionEventInvokeConfig", error)),
    }
}

/// The configuration as it is: `(maximum_retry_attempts, maximum_event_age_seconds)`, or
/// `None` when the function or alias has none.
pub(super) async fn get_invoke_config(
    p: &AwsProvider,
    spec: &Spec<'_>,
) -> Result<Option<(Option<i32>, Option<i32>)>, ProviderError> {
    let (function, qualifier) = (spec.str("function_name")?, spec.str("qualifier")?);
    match p.clients.lambda.get_function_event_invoke_config().function_name(function).qualifier(qualifier).send().await
    {
        Ok(found) => Ok(Some((found.maximum_retry_attempts(), found.maximum_event_age_in_seconds()))),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetFunctionEventInvokeConfig", error)),
    }
}

pub(super) async fn find_invoke_config(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let (function, qualifier) = (spec.str("function_name")?, spec.str("qualifier")?);
    Ok(get_invoke_config(p, spec)
        .await?
        .map(|_| Created { physical_id: invoke_config_id(function, qualifier), outputs: Outputs::new() }))
}

// ---------------------------------------------------------------------------------------
// Reserved concurrency

/// PutFunctionConcurrency: sets (or replaces) the function's reservation, so a create after
/// an interrupted one, and every update, are the same call. Its physical id is the function.
pub(super) async fn put_concurrency(p: &AwsProvider, spec: &Spec<'_>) -> Result<Created, ProviderError> {
    let function = spec.str("function_name")?;
    let reserved = spec.i32("reserved")?;
    if reserved < 0 {
        return Err(spec.invalid("reserved", format!("must be 0 or more, got {reserved}")));
    }
    let put = || {
        p.clients
            .lambda
            .put_function_concurrency()
            .function_name(function)
            .reserved_concurrent_executions(reserved)
            .send()
    };
    retry(Backoff::LAMBDA_CONFLICT, put, |error| is(error, CONFLICT))
        .await
        .map_err(|error| spec.api("PutFunctionConcurrency", error))?;
    Ok(Created { physical_id: function.to_owned(), outputs: Outputs::new() })
}

pub(super) async fn delete_concurrency(p: &AwsProvider, spec: &Spec<'_>) -> Result<(), ProviderError> {
    let function = spec.str("function_name")?;
    let delete = || p.clients.lambda.delete_function_concurrency().function_name(function).send();
    match retry(Backoff::LAMBDA_CONFLICT, delete, |error| is(error, CONFLICT)).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NOT_FOUND) => Ok(()),
        Err(error) => Err(spec.api("DeleteFunctionConcurrency", error)),
    }
}

/// The function's reservation; `None` when it has none (or the function is gone).
pub(super) async fn get_concurrency(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<i32>, ProviderError> {
    let function = spec.str("function_name")?;
    match p.clients.lambda.get_function_concurrency().function_name(function).send().await {
        Ok(found) => Ok(found.reserved_concurrent_executions()),
        Err(error) if is(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(spec.api("GetFunctionConcurrency", error)),
    }
}

pub(super) async fn find_concurrency(p: &AwsProvider, spec: &Spec<'_>) -> Result<Option<Created>, ProviderError> {
    let function = spec.str("function_name")?;
    Ok(get_concurrency(p, spec).await?.map(|_| Created { physical_id: function.to_owned(), outputs: Outputs::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_ready_unless_pending_or_updating() {
        assert!(ready(Some(&State::Active), Some(&LastUpdateStatus::Successful)));
        assert!(ready(Some(&State::Active), None));
        assert!(ready(Some(&State::Active), Some(&LastUpdateStatus::Failed)));
        assert!(!ready(Some(&State::Pending), None));
        assert!(!ready(Some(&State::Active), Some(&LastUpdateStatus::InProgress)));
    }

    #[test]
    fn statements_are_found_by_sid() {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a"},{"Sid":"b"}]}"#;
        assert!(policy_has_statement(policy, "b").unwrap());
        assert!(!policy_has_statement(policy, "c").unwrap());
        assert!(policy_has_statement(r#"{"Statement":{"Sid":"a"}}"#, "a").unwrap());
        assert!(policy_has_statement("not json", "a").is_err());
    }
}
