//! The deployer's end-to-end harness: synthetic builds, `xtask` runs against an emulator,
//! and the emulator's view of what the stack holds, shared by the suites that deploy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xtask::arch::Arch;
use xtask::calls::Counts;
use xtask::engine::resource::Kind;
use xtask::manifest::{Artifact, Manifest, FORMAT_VERSION};
use xtask::state::s3::S3Store;
use xtask::state::store::LockInfo;
use xtask::state::{StateFile, StateStore as _};

use crate::{Endpoint, Moto};

pub const ENV: &str = "local";
pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";
/// From environments/local.yaml.
pub const STATE_BUCKET: &str = "image-analyzer-state-local";
pub const STATE_PREFIX: &str = "image-analyzer";
pub const PREFIX: &str = "image-analyzer-local-";
pub const API_NAME: &str = "image-analyzer-local-api";
pub const UPLOAD_BUCKET: &str = "image-analyzer-local-uploads-123456789012";
/// Every function of `xtask::functions::FUNCTIONS`, by name.
pub const FUNCTIONS: [&str; 3] = ["upload-url", "analyze", "web"];
/// bucket, API, stage; per function a role, log group, function, alias and integration
/// (5 x 3); per route a route and a permission (2 x 4); analyze's S3 permission and invoke
/// configuration; the bucket's notification.
pub const STACK_SIZE: usize = 29;

// ---------------------------------------------------------------------------------------
// Synthetic builds

/// A build written by [`synthetic_build`]: its manifest file and contents.
pub struct Build {
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

impl Build {
    pub fn artifact(&self, function: &str) -> &Artifact {
        &self.manifest.functions[function][&Arch::X86_64]
    }
}

/// Writes `<dir>/<function>.zip` for both functions and `<dir>/manifest.json` describing them
/// (absolute zip paths). `analyze_version` changes the analyze zip's bytes, hence its hash;
/// the upload-url zip is always the same bytes at the same path.
pub fn synthetic_build(dir: &Path, analyze_version: u32) -> Build {
    let names: Vec<&str> = xtask::functions::FUNCTIONS.iter().map(|function| function.name).collect();
    assert_eq!(names, FUNCTIONS, "the synthetic build has every function");
    let mut functions = BTreeMap::new();
    for function in FUNCTIONS {
        let version = if function == "analyze" { analyze_version } else { 0 };
        let bootstrap = format!("#!synthetic {function} v{version}\n").into_bytes();
        let zip = xtask::artifact::zip_bootstrap(&bootstrap).expect("zipping a synthetic bootstrap");
        let path = dir.join(format!("{function}.zip"));
        std::fs::write(&path, &zip).unwrap();
        let (sha256_hex, sha256_base64) = xtask::artifact::sha256(&zip);
        let artifact = Artifact {
            zip_path: path.to_str().expect("a UTF-8 temp path").to_owned(),
            zipped_bytes: zip.len() as u64,
            unzipped_bytes: bootstrap.len() as u64,
            sha256_hex,
            sha256_base64,
        };
        functions.insert(function.to_owned(), BTreeMap::from([(Arch::X86_64, artifact)]));
    }
    let manifest =
        Manifest { format_version: FORMAT_VERSION, fingerprint: format!("synthetic-{analyze_version}"), functions };
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    Build { manifest_path, manifest }
}

// ---------------------------------------------------------------------------------------
// Running xtask

/// One finished xtask run.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The AWS calls it made, from `XTASK_CALL_LOG`.
    pub calls: Counts,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    #[track_caller]
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed with {}:\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn total_calls(&self) -> u64 {
        xtask::calls::total(&self.calls)
    }

    pub fn count(&self, service: &str, operation: &str) -> u64 {
        self.calls.get(service).and_then(|ops| ops.get(operation)).copied().unwrap_or(0)
    }

    /// Every mutating call, as `Service:Operation` with its count.
    pub fn mutations(&self) -> BTreeMap<String, u64> {
        self.calls
            .iter()
            .flat_map(|(service, ops)| ops.iter().map(move |(op, n)| (service, op, *n)))
            .filter(|(_, op, _)| is_mutating(op))
            .map(|(service, op, n)| (format!("{service}:{op}"), n))
            .collect()
    }

    /// Mutating calls outside S3 (whose writes are the state document, the lock and the
    /// artifact store).
    pub fn stack_mutations(&self) -> BTreeMap<String, u64> {
        self.mutations().into_iter().filter(|(call, _)| !call.starts_with("S3:")).collect()
    }
}

/// Whether a logged call (`Service:Operation`) creates a resource of the stack: a Create*,
/// AddPermission for a permission, or the Put that makes an invoke configuration or a bucket
/// notification.
pub fn is_create_call(call: &str) -> bool {
    [":Create", ":AddPermission", ":PutFunctionEventInvokeConfig", ":PutBucketNotificationConfiguration"]
        .iter()
        .any(|create| call.contains(create))
}

/// Whether an AWS operation changes anything. Everything else is a read (Get, Head, List,
/// Describe).
pub fn is_mutating(operation: &str) -> bool {
    const WRITES: [&str; 16] = [
        "Put", "Create", "Update", "Delete", "Tag", "Untag", "Add", "Remove", "Attach", "Detach", "Copy", "Upload",
        "Complete", "Abort", "Publish", "Invoke",
    ];
    WRITES.iter().any(|prefix| operation.starts_with(prefix))
}

/// `xtask <args>` against `target`, with a call log in a fresh temp file. The variables that
/// would change what a test runs are cleared; `env` sets more.
pub fn command(target: &impl Endpoint, args: &[&str], env: &[(&str, &Path)]) -> (Command, tempfile::TempPath) {
    let log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut command = crate::xtask(target);
    command
        .args(args)
        .env_remove(xtask::config::ENVIRONMENTS_DIR_ENV)
        .env_remove("IMAGE_ANALYZER_ENV")
        .env(xtask::calls::CALL_LOG_ENV, &log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    (command, log)
}

pub fn read_calls(log: &Path) -> Counts {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if text.trim().is_empty() {
        return Counts::new();
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the call log {} is not JSON: {error}\n{text}", log.display()))
}

pub fn finish(child: Child, log: &Path, started: Instant) -> Run {
    let output = child.wait_with_output().unwrap();
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        calls: read_calls(log),
        elapsed: started.elapsed(),
    }
}

pub fn xtask_env(target: &impl Endpoint, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let (mut command, log) = command(target, args, env);
    let started = Instant::now();
    let child = command.spawn().unwrap();
    finish(child, &log, started)
}

pub fn xtask(target: &impl Endpoint, args: &[&str]) -> Run {
    xtask_env(target, args, &[])
}

pub fn deploy_args(build: &Build) -> Vec<&str> {
    vec!["deploy", "--env", ENV, "--yes", "--no-build", "--manifest", build.manifest_path.to_str().unwrap()]
}

pub fn deploy(target: &impl Endpoint, build: &Build) -> Run {
    xtask(target, &deploy_args(build))
}

pub fn plan_json(target: &impl Endpoint, build: &Build, env: &[(&str, &Path)]) -> Value {
    let run =
        xtask_env(target, &["plan", "--env", ENV, "--json", "--manifest", build.manifest_path.to_str().unwrap()], env);
    run.assert_success("plan --json");
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("plan --json printed no JSON ({error}):\n{}", run.stdout))
}

/// The steps of a JSON plan that change something.
pub fn changing_steps(plan: &Value) -> Vec<&Value> {
    plan["steps"].as_array().expect("a plan has steps").iter().filter(|step| step["action"] != "no_op").collect()
}

// ---------------------------------------------------------------------------------------
// The emulator's view

pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub apigateway: aws_sdk_apigatewayv2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub store: S3Store,
    state_bucket: String,
}

impl Aws {
    /// The view of the emulator behind `target`, for the `local` environment.
    pub async fn new(target: &impl Endpoint) -> Self {
        Self::for_environment(target, REGION, STATE_BUCKET, ENV).await
    }

    /// The view of the emulator behind `target` in `region`, for environment `env` whose
    /// state lives in `state_bucket`.
    pub async fn for_environment(target: &impl Endpoint, region: &str, state_bucket: &str, env: &str) -> Self {
        let config = crate::sdk_config_in(target.endpoint(), region).await;
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        Self {
            store: S3Store::new(s3.clone(), state_bucket, STATE_PREFIX, env),
            s3,
            iam: aws_sdk_iam::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            apigateway: aws_sdk_apigatewayv2::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            state_bucket: state_bucket.to_owned(),
        }
    }

    /// The state document, if the state bucket and document exist.
    pub async fn state(&self) -> Option<StateFile> {
        self.versioned_state().await.map(|versioned| versioned.value)
    }

    pub async fn versioned_state(&self) -> Option<xtask::state::Versioned<StateFile>> {
        if !self.bucket_names().await.contains(&self.state_bucket) {
            return None;
        }
        self.store.load().await.expect("the state document is readable")
    }

    pub async fn lock(&self) -> Option<LockInfo> {
        self.store.read_lock().await.expect("the lock is readable").map(|versioned| versioned.value)
    }

    pub async fn bucket_names(&self) -> Vec<String> {
        let buckets = self.s3.list_buckets().send().await.expect("ListBuckets");
        buckets.buckets().iter().filter_map(|bucket| bucket.name().map(str::to_owned)).collect()
    }

    /// Everything the emulator holds that could belong to the stack (everything but the
    /// state bucket: each test has its own emulator), each as `kind:id`.
    pub async fn inventory(&self) -> Inventory {
        let mut items = Vec::new();
        let mut api_names = Vec::new();
        for bucket in self.bucket_names().await {
            if bucket != self.state_bucket {
                items.push(format!("bucket:{bucket}"));
                // moto answers a bucket without a configuration with a document the SDK
                // cannot parse (status 200): that means none.
                let notifies = match self.s3.get_bucket_notification_configuration().bucket(&bucket).send().await {
                    Ok(notification) => !notification.lambda_function_configurations().is_empty(),
                    Err(error) if error.raw_response().is_some_and(|raw| raw.status().as_u16() == 200) => false,
                    Err(error) => panic!(
                        "GetBucketNotificationConfiguration {bucket}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&error)
                    ),
                };
                if notifies {
                    items.push(format!("bucket_notification:{bucket}"));
                }
            }
        }
        let roles = self.iam.list_roles().send().await.expect("ListRoles");
        for role in roles.roles() {
            items.push(format!("role:{}", role.role_name()));
        }
        let groups = self.logs.describe_log_groups().send().await.expect("DescribeLogGroups");
        for group in groups.log_groups() {
            items.push(format!("log_group:{}", group.log_group_name().unwrap_or_default()));
        }
        let functions = self.lambda.list_functions().send().await.expect("ListFunctions");
        for function in functions.functions() {
            let name = function.function_name().unwrap_or_default();
            items.push(format!("function:{name}"));
            let aliases = self.lambda.list_aliases().function_name(name).send().await.expect("ListAliases");
            let mut qualifiers = vec![None];
            for alias in aliases.aliases() {
                let alias = alias.name().unwrap_or_default();
                items.push(format!("alias:{name}/{alias}"));
                qualifiers.push(Some(alias.to_owned()));
                let config =
                    self.lambda.get_function_event_invoke_config().function_name(name).qualifier(alias).send().await;
                match config {
                    Ok(_) => items.push(format!("event_invoke_config:{name}:{alias}")),
                    Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
                    Err(error) => panic!(
                        "GetFunctionEventInvokeConfig {name}:{alias}: {}",
                        aws_sdk_lambda::error::DisplayErrorContext(&error)
                    ),
                }
            }
            // A statement id is unique within a function's policy; the policy of the
            // function and of its aliases are read, each statement listed once.
            let mut sids = BTreeSet::new();
            for qualifier in qualifiers {
                for statement in self.permission_statements(name, qualifier.as_deref()).await {
                    sids.insert(statement["Sid"].as_str().unwrap_or_default().to_owned());
                }
            }
            for sid in sids {
                items.push(format!("permission:{name}/{sid}"));
            }
        }
        let apis = self.apigateway.get_apis().send().await.expect("GetApis");
        for api in apis.items() {
            let id = api.api_id().unwrap_or_default();
            api_names.push(api.name().unwrap_or_default().to_owned());
            items.push(format!("http_api:{id}"));
            let integrations = self.apigateway.get_integrations().api_id(id).send().await.expect("GetIntegrations");
            for integration in integrations.items() {
                items.push(format!("integration:{}", integration.integration_id().unwrap_or_default()));
            }
            let routes = self.apigateway.get_routes().api_id(id).send().await.expect("GetRoutes");
            for route in routes.items() {
                items.push(format!("route:{}", route.route_id().unwrap_or_default()));
            }
            let stages = self.apigateway.get_stages().api_id(id).send().await.expect("GetStages");
            for stage in stages.items() {
                items.push(format!("stage:{id}/{}", stage.stage_name().unwrap_or_default()));
            }
        }
        Inventory { items, api_names }
    }

    /// The statements of a function's resource policy (none without a policy).
    pub async fn permission_statements(&self, function: &str, qualifier: Option<&str>) -> Vec<Value> {
        match self.lambda.get_policy().function_name(function).set_qualifier(qualifier.map(str::to_owned)).send().await
        {
            Ok(policy) => {
                let document: Value =
                    serde_json::from_str(policy.policy().unwrap_or("{}")).expect("the function policy is JSON");
                match &document["Statement"] {
                    Value::Array(statements) => statements.clone(),
                    single @ Value::Object(_) => vec![single.clone()],
                    _ => Vec::new(),
                }
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Vec::new(),
            Err(error) => panic!("GetPolicy {function}: {}", aws_sdk_lambda::error::DisplayErrorContext(&error)),
        }
    }
}

/// What the emulator holds, as `kind:id` strings (see [`Aws::inventory`]).
#[derive(Debug)]
pub struct Inventory {
    pub items: Vec<String>,
    pub api_names: Vec<String>,
}

impl Inventory {
    pub fn set(&self) -> BTreeSet<String> {
        self.items.iter().cloned().collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&String> {
        self.items.iter().filter(|item| item.starts_with(&format!("{kind}:"))).collect()
    }
}

/// The resources a state document records, as `kind:id` strings in the form of
/// [`Aws::inventory`].
pub fn recorded(state: &StateFile) -> BTreeSet<String> {
    state
        .resources
        .values()
        .map(|resource| {
            let kind = serde_json::to_value(resource.kind).unwrap();
            let kind = kind.as_str().unwrap();
            match resource.kind {
                Kind::Stage => {
                    format!("{kind}:{}/{}", resource.inputs["api_id"].as_str().unwrap(), resource.physical_id)
                }
                Kind::Alias => {
                    format!("{kind}:{}/{}", resource.inputs["function_name"].as_str().unwrap(), resource.physical_id)
                }
                Kind::Permission => {
                    format!("{kind}:{}/{}", resource.inputs["function_name"].as_str().unwrap(), resource.physical_id)
                }
                _ => format!("{kind}:{}", resource.physical_id),
            }
        })
        .collect()
}

/// The emulator holds exactly what state records, once each, and state records the whole
/// stack with nothing pending.
pub async fn assert_converged(aws: &Aws) {
    let state = aws.state().await.expect("a state document");
    assert!(state.pending.is_empty(), "nothing is left pending: {:?}", state.pending);
    assert_eq!(state.resources.len(), STACK_SIZE, "state records the whole stack: {:?}", state.resources.keys());
    let inventory = aws.inventory().await;
    let (in_cloud, in_state) = (inventory.set(), recorded(&state));
    let orphans: Vec<&String> = in_cloud.difference(&in_state).collect();
    let missing: Vec<&String> = in_state.difference(&in_cloud).collect();
    assert!(orphans.is_empty(), "resources of the stack that state does not record (orphans): {orphans:?}");
    assert!(missing.is_empty(), "resources state records that do not exist: {missing:?}");
    assert_eq!(inventory.items.len(), in_cloud.len(), "no resource is listed twice: {:?}", inventory.items);
    assert_eq!(inventory.api_names, [API_NAME], "exactly one API, named {API_NAME}");
    for (kind, expected) in [
        ("bucket", 1),
        ("role", 3),
        ("log_group", 3),
        ("function", 3),
        ("alias", 3),
        ("http_api", 1),
        ("integration", 3),
        ("route", 4),
        ("stage", 1),
        ("permission", 5),
        ("event_invoke_config", 1),
        ("bucket_notification", 1),
    ] {
        assert_eq!(inventory.of_kind(kind).len(), expected, "{expected} {kind} in the emulator: {:?}", inventory.items);
    }
}

/// Nothing of the stack exists in the emulator.
pub async fn assert_no_stack(aws: &Aws) {
    let inventory = aws.inventory().await;
    assert!(inventory.items.is_empty(), "nothing of the stack exists: {:?}", inventory.items);
}

pub fn moto() -> Moto {
    Moto::start().expect("the emulator starts")
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// An IAM policy document, which IAM returns URL-encoded (moto may not).
pub fn policy_document(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let decoded = percent_decode(text);
        serde_json::from_str(&decoded).unwrap_or_else(|error| panic!("not a policy document ({error}): {decoded}"))
    })
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A statement's `Action` or `Resource`, as a list.
pub fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().map(|item| item.as_str().expect("a string").to_owned()).collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}
