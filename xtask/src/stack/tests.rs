use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::arch::Arch;
use crate::config::{environments_dir, Environment};
use crate::engine::resource::ResourceId;
use crate::manifest::{Artifact, Manifest};

const ACCOUNT: &str = "123456789012";

fn manifest() -> Manifest {
    let artifact = |name: &str, hash: &str| Artifact {
        zip_path: format!("target/lambda/x86_64/{name}.zip"),
        zipped_bytes: 1_000_000,
        unzipped_bytes: 3_000_000,
        sha256_hex: hash.repeat(64),
        sha256_base64: format!("{}=", hash.repeat(43)),
    };
    let functions = FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_owned(), BTreeMap::from([(Arch::X86_64, artifact(f.name, &i.to_string()))])))
        .collect();
    Manifest { format_version: 1, fingerprint: "f".repeat(64), functions }
}

fn dev() -> Environment {
    Environment::load(&environments_dir(), "dev").unwrap()
}

fn stack_of(env: &Environment) -> Vec<Resource> {
    let manifest = manifest();
    let local_api_url = env.local.as_ref().map(|local| format!("http://127.0.0.1:{}", local.api_port));
    let cx =
        Context { env, account_id: ACCOUNT, manifest: &manifest, tls: true, local_api_url: local_api_url.as_deref() };
    resources(&cx).unwrap()
}

fn resource<'a>(resources: &'a [Resource], id: &str) -> &'a Resource {
    resources.iter().find(|r| r.id.as_str() == id).unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn every_function_gets_a_role_log_group_function_alias_integration_route_and_permission() {
    let resources = stack_of(&dev());
    let mut ids: Vec<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "alias.analyze",
            "alias.upload-url",
            "alias.web",
            "api",
            "bucket.uploads",
            "function.analyze",
            "function.upload-url",
            "function.web",
            "integration.analyze",
            "integration.upload-url",
            "integration.web",
            "invoke-config.analyze",
            "logs.analyze",
            "logs.upload-url",
            "logs.web",
            "notification.uploads",
            "permission.analysis",
            "permission.analyze",
            "permission.analyze-uploads",
            "permission.page",
            "permission.upload-url",
            "role.analyze",
            "role.upload-url",
            "role.web",
            "route.analysis",
            "route.analyze",
            "route.page",
            "route.upload-url",
            "stage",
        ]
    );
}

#[test]
fn physical_names_follow_project_env_name_and_the_bucket_carries_the_account() {
    let resources = stack_of(&dev());
    assert_eq!(resource(&resources, "function.analyze").name, "image-analyzer-dev-analyze");
    assert_eq!(resource(&resources, "role.upload-url").name, "image-analyzer-dev-upload-url");
    assert_eq!(resource(&resources, "logs.analyze").name, "/aws/lambda/image-analyzer-dev-analyze");
    assert_eq!(resource(&resources, "bucket.uploads").name, "image-analyzer-dev-uploads-123456789012");
}

#[test]
fn upload_url_may_only_put_uploads_and_write_its_own_logs() {
    let resources = stack_of(&dev());
    assert_eq!(
        resource(&resources, "role.upload-url").inputs["policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "PutUploads", "Effect": "Allow", "Action": ["s3:PutObject"],
                 "Resource": "arn:aws:s3:::image-analyzer-dev-uploads-123456789012/uploads/*"},
                {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/image-analyzer-dev-upload-url:*"}
            ]
        })
    );
}

#[test]
fn analyze_may_only_get_uploads_keep_results_detect_faces_and_write_its_own_logs() {
    let resources = stack_of(&dev());
    assert_eq!(
        resource(&resources, "role.analyze").inputs["policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "DetectFaces", "Effect": "Allow", "Action": ["rekognition:DetectFaces"], "Resource": "*"},
                {"Sid": "GetUploads", "Effect": "Allow", "Action": ["s3:GetObject"],
                 "Resource": "arn:aws:s3:::image-analyzer-dev-uploads-123456789012/uploads/*"},
                {"Sid": "StoreResults", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": "arn:aws:s3:::image-analyzer-dev-uploads-123456789012/results/*"},
                {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/image-analyzer-dev-analyze:*"}
            ]
        })
    );
    assert_eq!(resource(&resources, "role.analyze").inputs["assume_role_policy"], assume_role_policy());
}

#[test]
fn the_page_may_only_write_its_own_logs() {
    let resources = stack_of(&dev());
    assert_eq!(
        resource(&resources, "role.web").inputs["policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/image-analyzer-dev-web:*"}
            ]
        })
    );
    // It reads no secret and names no resource: only the upload limit, to refuse a photo
    // before uploading it.
    assert_eq!(resource(&resources, "function.web").inputs["environment"], json!({"MAX_UPLOAD_BYTES": "15728640"}));
}

#[test]
fn the_page_is_served_at_the_apis_root() {
    let resources = stack_of(&dev());
    let route = resource(&resources, "route.page");
    assert_eq!(route.inputs["route_key"], "GET /");
    assert_eq!(route.inputs["target"], "integrations/${integration.web.id}");
    assert_eq!(
        resource(&resources, "permission.page").inputs["source_arn"],
        "arn:aws:execute-api:eu-west-1:123456789012:${api.id}/*/GET/"
    );
}

#[test]
fn browsers_may_upload_from_the_environments_origins_and_the_apis_own() {
    let resources = stack_of(&dev());
    assert_eq!(
        resource(&resources, "bucket.uploads").inputs["cors_allowed_origins"],
        json!(["http://localhost:3000", "${api.endpoint}"])
    );
    // The API's CORS is the environment's: its own page calls it from its own origin.
    assert_eq!(resource(&resources, "api").inputs["cors_allowed_origins"], json!(["http://localhost:3000"]));

    let local = Environment::load(&environments_dir(), "local").unwrap();
    assert_eq!(
        resource(&stack_of(&local), "bucket.uploads").inputs["cors_allowed_origins"],
        json!(["${api.endpoint}", "http://127.0.0.1:3000", "http://localhost:3000"])
    );
    let mut anywhere = local.clone();
    anywhere.cors_allowed_origins = vec!["*".to_owned()];
    assert_eq!(resource(&stack_of(&anywhere), "bucket.uploads").inputs["cors_allowed_origins"], json!(["*"]));
}

#[test]
fn invoke_permission_is_scoped_to_this_api_and_route() {
    let resources = stack_of(&dev());
    let permission = resource(&resources, "permission.analyze");
    assert_eq!(permission.inputs["principal"], "apigateway.amazonaws.com");
    assert_eq!(permission.inputs["source_arn"], "arn:aws:execute-api:eu-west-1:123456789012:${api.id}/*/POST/analyze");
    let results = resource(&resources, "permission.analysis");
    assert_eq!(results.inputs["statement_id"], "apigateway-GET-analysis");
    assert_eq!(results.inputs["qualifier"], "${alias.analyze.name}");
    assert_eq!(results.inputs["source_arn"], "arn:aws:execute-api:eu-west-1:123456789012:${api.id}/*/GET/analysis/*");
}

#[test]
fn both_routes_of_analyze_target_its_one_integration() {
    let resources = stack_of(&dev());
    assert_eq!(resource(&resources, "route.analysis").inputs["route_key"], "GET /analysis/{id}");
    for route in ["route.analyze", "route.analysis"] {
        assert_eq!(resource(&resources, route).inputs["target"], "integrations/${integration.analyze.id}");
    }
}

#[test]
fn uploads_invoke_analyze_through_its_alias_only_from_this_accounts_bucket() {
    let resources = stack_of(&dev());
    let permission = resource(&resources, "permission.analyze-uploads");
    assert_eq!(permission.inputs["principal"], "s3.amazonaws.com");
    assert_eq!(permission.inputs["qualifier"], "${alias.analyze.name}");
    assert_eq!(permission.inputs["source_arn"], "${bucket.uploads.arn}");
    assert_eq!(permission.inputs["source_account"], ACCOUNT);

    let notification = resource(&resources, "notification.uploads");
    assert_eq!(notification.name, "image-analyzer-dev-uploads-123456789012");
    assert_eq!(
        notification.inputs["lambda_functions"],
        json!([
            {"id": "analyze-jpg", "function_arn": "${alias.analyze.arn}", "events": ["s3:ObjectCreated:*"],
             "prefix": "uploads/", "suffix": ".jpg"},
            {"id": "analyze-png", "function_arn": "${alias.analyze.arn}", "events": ["s3:ObjectCreated:*"],
             "prefix": "uploads/", "suffix": ".png"},
        ])
    );
    assert!(
        notification.dependencies().contains(&ResourceId::new("permission.analyze-uploads")),
        "S3 checks the permission when the notification is put, so it comes first"
    );
}

#[test]
fn analyze_is_retried_twice_and_drops_events_older_than_an_hour() {
    let resources = stack_of(&dev());
    let config = resource(&resources, "invoke-config.analyze");
    assert_eq!(config.name, "image-analyzer-dev-analyze:live");
    assert_eq!(config.inputs["qualifier"], "${alias.analyze.name}");
    assert_eq!(
        (config.inputs["maximum_retry_attempts"].as_u64(), config.inputs["maximum_event_age_seconds"].as_u64()),
        (Some(2), Some(3600))
    );
}

#[test]
fn results_expire_with_the_uploads_they_describe() {
    let resources = stack_of(&dev());
    assert_eq!(resource(&resources, "bucket.uploads").inputs["expire_prefixes"], json!(["results/", "uploads/"]));
}

#[test]
fn functions_read_their_settings_from_the_environment() {
    let resources = stack_of(&dev());
    let upload = resource(&resources, "function.upload-url");
    assert_eq!(
        upload.inputs["environment"],
        json!({
            "UPLOAD_BUCKET": "image-analyzer-dev-uploads-123456789012",
            "UPLOAD_URL_EXPIRY_SECONDS": "300",
            "MAX_UPLOAD_BYTES": "15728640",
            "REQUIRE_CONTENT_LENGTH": "false",
        })
    );
    let prod = Environment::load(&environments_dir(), "prod").unwrap();
    let prod_upload = resource(&stack_of(&prod), "function.upload-url").inputs["environment"].clone();
    assert_eq!(prod_upload["REQUIRE_CONTENT_LENGTH"], "true", "prod signs every upload's length");
    let analyze = resource(&resources, "function.analyze");
    assert_eq!(analyze.inputs["environment"], json!({"UPLOAD_BUCKET": "image-analyzer-dev-uploads-123456789012"}));
    assert_eq!(analyze.inputs["timeout_seconds"], 10);
}

#[test]
fn every_taggable_resource_is_tagged_with_environment_and_logical_name() {
    for resource in stack_of(&dev()) {
        let Some(tags) = resource.inputs.get("tags") else { continue };
        assert_eq!(tags["environment"], "dev", "{}", resource.id);
        assert_eq!(tags["logical-name"], resource.id.as_str(), "{}", resource.id);
    }
}

#[test]
fn an_arm64_function_without_an_arm64_build_is_an_error() {
    let mut env = dev();
    env.functions.get_mut("analyze").unwrap().architecture = Arch::Arm64;
    let manifest = manifest();
    let error =
        resources(&Context { env: &env, account_id: ACCOUNT, manifest: &manifest, tls: true, local_api_url: None })
            .unwrap_err();
    assert!(error.to_string().contains("no arm64 build of `analyze`"), "{error}");
}

#[test]
fn partition_follows_the_region() {
    assert_eq!(crate::aws::partition("eu-west-1"), "aws");
    assert_eq!(crate::aws::partition("cn-north-1"), "aws-cn");
    assert_eq!(crate::aws::partition("us-gov-west-1"), "aws-us-gov");
}

#[test]
fn a_reserved_concurrency_is_a_resource_of_its_own_on_the_function() {
    assert!(stack_of(&dev()).iter().all(|resource| resource.kind != Kind::Concurrency), "dev reserves none");
    let prod = Environment::load(&environments_dir(), "prod").unwrap();
    let resources = stack_of(&prod);
    assert_eq!(resources.len(), stack_of(&dev()).len() + FUNCTIONS.len());
    let analyze = resource(&resources, "concurrency.analyze");
    assert_eq!(analyze.kind, Kind::Concurrency);
    assert_eq!(analyze.inputs["function_name"], json!(Reference::to("function.analyze", "name")));
    assert_eq!(analyze.inputs["reserved"], 200);
}

#[test]
fn the_upload_bucket_is_private_and_encrypted_as_recorded_properties() {
    let resources = stack_of(&dev());
    let bucket = resource(&resources, "bucket.uploads");
    assert_eq!(
        bucket.inputs["public_access_block"],
        json!({"block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true})
    );
    assert_eq!(bucket.inputs["encryption"], "AES256");
}

#[test]
fn the_upload_bucket_allows_tls_only() {
    let resources = stack_of(&dev());
    let policy = &resource(&resources, "bucket.uploads").inputs["policy"];
    assert_eq!(policy["Statement"][0]["Condition"], json!({"Bool": {"aws:SecureTransport": "false"}}));
    assert_eq!(policy["Statement"][0]["Effect"], "Deny");
}

#[test]
fn dev_from_empty_plan() {
    let plan = crate::engine::plan::plan(
        &stack_of(&dev()),
        &crate::state::StateFile::new(),
        crate::providers::AwsRules,
        false,
    )
    .unwrap();
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn the_api_invokes_each_function_through_its_live_alias_only() {
    let resources = stack_of(&dev());
    for function in ["analyze", "upload-url"] {
        let alias = resource(&resources, &format!("alias.{function}"));
        assert_eq!(alias.inputs["name"], "live");
        assert_eq!(alias.inputs["function_version"], format!("${{function.{function}.version}}"));
        let integration = resource(&resources, &format!("integration.{function}"));
        assert_eq!(integration.inputs["function_arn"], format!("${{alias.{function}.arn}}"));
        let permission = resource(&resources, &format!("permission.{function}"));
        assert_eq!(permission.inputs["qualifier"], format!("${{alias.{function}.name}}"));
        assert_eq!(resource(&resources, &format!("function.{function}")).inputs["publish"], true);
    }
}

#[test]
fn a_code_change_moves_the_alias_once_the_new_version_is_published() {
    use crate::engine::plan::{plan, Action, PlannedValue};
    use crate::state::{ResourceState, StateFile};
    let resources = stack_of(&dev());
    // Everything as deployed, version 3 live...
    let mut state = StateFile::new();
    let outputs: crate::engine::resource::Outputs = [
        ("arn", "arn:x"),
        ("name", "n"),
        ("id", "i"),
        ("endpoint", "https://e"),
        ("version", "3"),
        ("function_version", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect();
    let lookup = |reference: &crate::engine::resource::Reference| outputs.get(&reference.output).cloned();
    for resource in &resources {
        let inputs = resource
            .inputs
            .iter()
            .map(|(key, value)| match crate::engine::resource::resolve(value, &lookup) {
                crate::engine::resource::Resolved::Known(value) => (key.clone(), value),
                crate::engine::resource::Resolved::Unknown => unreachable!(),
            })
            .collect();
        let recorded = ResourceState {
            kind: resource.kind,
            name: resource.name.clone(),
            physical_id: resource.name.clone(),
            inputs,
            outputs: outputs.clone(),
            depends_on: resource.dependencies(),
        };
        state.resources.insert(resource.id.clone(), recorded);
    }
    // ...then new code for analyze.
    let mut changed = resources.clone();
    let function = changed.iter_mut().find(|r| r.id.as_str() == "function.analyze").unwrap();
    function.inputs.insert("code_sha256".to_owned(), json!("bmV3IGNvZGU="));
    let plan = plan(&changed, &state, crate::providers::AwsRules, false).unwrap();
    assert_eq!(plan.step("function.analyze").unwrap().action, Action::Update, "{plan}");
    let alias = plan.step("alias.analyze").unwrap();
    assert_eq!(alias.action, Action::Update);
    assert_eq!(alias.changes[0].property, "function_version");
    assert_eq!(alias.changes[0].new, Some(PlannedValue::KnownAfterApply));
    assert_eq!(plan.step("alias.upload-url").unwrap().action, Action::NoOp, "the other function's alias stays");
}
