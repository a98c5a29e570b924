//! The deploy engine end to end: the `xtask` binary against a fresh moto server per test.
//!
//! Each test deploys the `local` environment from a synthetic build (moto never runs the
//! code, so each zip holds a few bytes named `bootstrap`), then looks at what the emulator
//! holds through the AWS SDK, at the state document in S3, and at the AWS calls xtask made
//! (`XTASK_CALL_LOG`). Every test fails when the behaviour it is named after breaks; none is
//! skipped.
//!
//! Run by hand with `cargo build -p xtask && cargo test -p e2e --test engine -- --nocapture`
//! to see the measured call counts and wall times.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use e2e::deployer::*;
use serde_json::{json, Value};
use xtask::engine::resource::ResourceId;
use xtask::state::store::LockInfo;
use xtask::state::{Operation, Pending, StateStore as _};

// ---------------------------------------------------------------------------------------
// 1. Deploy from empty

#[tokio::test]
async fn deploy_from_empty_creates_exactly_the_recorded_stack_private_and_least_privilege() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let aws = Aws::new(&moto).await;

    let run = deploy(&moto, &build);
    run.assert_success("deploy from empty");
    println!(
        "from-empty deploy: {:.2?}, {} AWS calls ({} mutating outside S3): {}",
        run.elapsed,
        run.total_calls(),
        run.stack_mutations().values().sum::<u64>(),
        serde_json::to_string(&run.calls).unwrap()
    );
    assert!(
        run.stdout.contains(&format!("{STACK_SIZE} added")),
        "the summary counts {STACK_SIZE} creates:\n{}",
        run.stdout
    );
    assert_converged(&aws).await;
    assert!(aws.lock().await.is_none(), "the lock is released");
    let state = aws.state().await.unwrap();
    assert_eq!(state.account_id.as_deref(), Some(ACCOUNT));

    // The upload bucket: private, encrypted, expiring uploads/, CORS for browser uploads.
    let block = aws.s3.get_public_access_block().bucket(UPLOAD_BUCKET).send().await.expect("GetPublicAccessBlock");
    let block = block.public_access_block_configuration().expect("a public access block");
    assert_eq!(
        [
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ],
        [Some(true); 4],
        "all four public access blocks: {block:?}"
    );
    let encryption = aws.s3.get_bucket_encryption().bucket(UPLOAD_BUCKET).send().await.expect("GetBucketEncryption");
    let rules = encryption.server_side_encryption_configuration().expect("an encryption configuration").rules();
    assert!(
        rules.iter().any(|rule| rule
            .apply_server_side_encryption_by_default()
            .is_some_and(|default| { default.sse_algorithm() == &aws_sdk_s3::types::ServerSideEncryption::Aes256 })),
        "default encryption SSE-S3: {rules:?}"
    );
    let lifecycle = aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(UPLOAD_BUCKET)
        .send()
        .await
        .expect("GetBucketLifecycleConfiguration");
    let expiring: Vec<_> = lifecycle
        .rules()
        .iter()
        .filter(|rule| rule.expiration().and_then(|expiration| expiration.days()).is_some())
        .collect();
    assert_eq!(expiring.len(), 2, "two expiring rules: {:?}", lifecycle.rules());
    for (rule, expected) in expiring.iter().zip(["results/", "uploads/"]) {
        assert_eq!(rule.status(), &aws_sdk_s3::types::ExpirationStatus::Enabled);
        assert_eq!(rule.expiration().unwrap().days(), Some(1), "uploads_expire_after_days of local.yaml");
        let prefix = rule.filter().and_then(|filter| filter.prefix());
        assert_eq!(prefix, Some(expected), "the expiry applies to uploads/ and results/ only: {rule:?}");
    }
    let cors = aws.s3.get_bucket_cors().bucket(UPLOAD_BUCKET).send().await.expect("GetBucketCors");
    assert_eq!(cors.cors_rules().len(), 1, "{cors:?}");
    let cors_rule = &cors.cors_rules()[0];
    let api_endpoint = state.resources[&ResourceId::from("api")].outputs["endpoint"].as_str().unwrap().to_owned();
    assert!(api_endpoint.starts_with("http"), "the API's endpoint: {api_endpoint}");
    assert_eq!(
        cors_rule.allowed_origins(),
        [api_endpoint.as_str(), "http://127.0.0.1:3000", "http://localhost:3000"],
        "the API's own origins (local.yaml lists none), where the page is served"
    );
    assert!(cors_rule.allowed_methods().iter().any(|method| method == "PUT"), "browsers may PUT: {cors_rule:?}");

    // The roles: Lambda may assume them; each grants exactly its function's needs.
    let bucket_objects = format!("arn:aws:s3:::{UPLOAD_BUCKET}/uploads/*");
    let results = format!("arn:aws:s3:::{UPLOAD_BUCKET}/results/*");
    for (function, expected) in [
        ("upload-url", vec![("s3:PutObject".to_owned(), bucket_objects.clone())]),
        (
            "analyze",
            vec![
                ("rekognition:DetectFaces".to_owned(), "*".to_owned()),
                ("s3:GetObject".to_owned(), results.clone()),
                ("s3:GetObject".to_owned(), bucket_objects.clone()),
                ("s3:PutObject".to_owned(), results.clone()),
            ],
        ),
        ("web", vec![]),
    ] {
        let role_name = format!("{PREFIX}{function}");
        let role = aws.iam.get_role().role_name(&role_name).send().await.expect("GetRole");
        let role = role.role().expect("a role");
        let trust = policy_document(role.assume_role_policy_document().expect("a trust policy"));
        assert_eq!(trust["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com", "{trust}");
        assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole", "{trust}");
        assert!(aws
            .iam
            .list_attached_role_policies()
            .role_name(&role_name)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .is_empty());
        let names = aws.iam.list_role_policies().role_name(&role_name).send().await.expect("ListRolePolicies");
        assert_eq!(names.policy_names().len(), 1, "one inline policy on {role_name}: {:?}", names.policy_names());
        let inline = aws
            .iam
            .get_role_policy()
            .role_name(&role_name)
            .policy_name(&names.policy_names()[0])
            .send()
            .await
            .expect("GetRolePolicy");
        let document = policy_document(inline.policy_document());
        let own_log_group = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{role_name}:*");
        let mut granted = Vec::new();
        for statement in document["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none(), "{statement}");
            let resources = strings(&statement["Resource"]);
            for action in strings(&statement["Action"]) {
                if action.starts_with("logs:") {
                    assert!(!action.contains('*'), "no logs wildcard action: {statement}");
                    assert_eq!(
                        resources,
                        std::slice::from_ref(&own_log_group),
                        "{function} writes only its own log group: {statement}"
                    );
                } else {
                    for resource in &resources {
                        granted.push((action.clone(), resource.clone()));
                    }
                }
            }
        }
        granted.sort();
        assert_eq!(granted, expected, "{function}'s policy grants exactly this: {document}");
    }

    // The log groups: retention as configured.
    let groups = aws.logs.describe_log_groups().send().await.unwrap();
    for group in groups.log_groups() {
        assert_eq!(group.retention_in_days(), Some(1), "log_retention_days of local.yaml: {group:?}");
    }

    // The functions: the build's code, their own role, sized as configured.
    let api_id = state.resources[&ResourceId::from("api")].physical_id.clone();
    for (function, memory, timeout) in [("upload-url", 128, 5), ("analyze", 256, 10), ("web", 128, 3)] {
        let name = format!("{PREFIX}{function}");
        let config = aws
            .lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .expect("GetFunctionConfiguration");
        assert_eq!(config.memory_size(), Some(memory), "{function} memory");
        assert_eq!(config.timeout(), Some(timeout), "{function} timeout");
        assert_eq!(
            config.role(),
            Some(format!("arn:aws:iam::{ACCOUNT}:role/{name}").as_str()),
            "{function} has its own role"
        );
        assert_eq!(config.handler(), Some("bootstrap"));
        assert_eq!(config.runtime().map(|runtime| runtime.as_str()), Some("provided.al2023"));
        assert_eq!(
            config.code_sha256(),
            Some(build.artifact(function).sha256_base64.as_str()),
            "{function} runs the build"
        );
        let variables = config.environment().and_then(|environment| environment.variables());
        let bucket = variables.and_then(|variables| variables.get("UPLOAD_BUCKET")).map(String::as_str);
        assert_eq!(bucket, (function != "web").then_some(UPLOAD_BUCKET), "{function} reads the bucket's name");

        // Its invoke permissions, on the `live` alias, one per route, each naming this API and
        // the route.
        let statements = aws.permission_statements(&name, Some("live")).await;
        let routes: &[&str] = match function {
            "analyze" => &["POST/analyze", "GET/analysis/*"],
            "upload-url" => &["GET/upload-url"],
            _ => &["GET/"],
        };
        let from_s3 = usize::from(function == "analyze");
        assert_eq!(statements.len(), routes.len() + from_s3, "{statements:?}");
        for route in routes {
            let source_arn = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*/{route}");
            let statement = statements
                .iter()
                .find(|statement| statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn.as_str())
                .unwrap_or_else(|| panic!("a statement for {source_arn}: {statements:?}"));
            assert_eq!(statement["Principal"]["Service"], "apigateway.amazonaws.com", "{statement}");
            assert_eq!(statement["Action"], "lambda:InvokeFunction", "{statement}");
        }
    }

    // Uploads invoke analyze's alias asynchronously: S3 may invoke it for this account's
    // upload bucket only; the bucket notifies it of images created under uploads/ only;
    // failed invocations are retried twice.
    let analyze = format!("{PREFIX}analyze");
    let statements = aws.permission_statements(&analyze, Some("live")).await;
    let s3 = statements
        .iter()
        .find(|statement| statement["Principal"]["Service"] == "s3.amazonaws.com")
        .unwrap_or_else(|| panic!("S3 may invoke analyze: {statements:?}"));
    assert_eq!(s3["Condition"]["ArnLike"]["AWS:SourceArn"], format!("arn:aws:s3:::{UPLOAD_BUCKET}"), "{s3}");
    assert_eq!(s3["Condition"]["StringEquals"]["AWS:SourceAccount"], ACCOUNT, "{s3}");
    let notification =
        aws.s3.get_bucket_notification_configuration().bucket(UPLOAD_BUCKET).send().await.expect("notification");
    let mut notified: Vec<(String, Vec<String>, String, String)> = notification
        .lambda_function_configurations()
        .iter()
        .map(|configuration| {
            let rules = configuration
                .filter()
                .and_then(|filter| filter.key())
                .map(|key| key.filter_rules())
                .unwrap_or_default();
            let rule = |name: &str| {
                rules
                    .iter()
                    .find(|rule| rule.name().is_some_and(|found| found.as_str().eq_ignore_ascii_case(name)))
                    .and_then(|rule| rule.value())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                configuration.lambda_function_arn().to_owned(),
                configuration.events().iter().map(|event| event.as_str().to_owned()).collect(),
                rule("prefix"),
                rule("suffix"),
            )
        })
        .collect();
    notified.sort();
    let alias_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{analyze}:live");
    let created = vec!["s3:ObjectCreated:*".to_owned()];
    assert_eq!(
        notified,
        [
            (alias_arn.clone(), created.clone(), "uploads/".to_owned(), ".jpg".to_owned()),
            (alias_arn, created, "uploads/".to_owned(), ".png".to_owned()),
        ],
        "the bucket notifies analyze's alias of images under uploads/, and of nothing else"
    );
    let config = aws
        .lambda
        .get_function_event_invoke_config()
        .function_name(&analyze)
        .qualifier("live")
        .send()
        .await
        .expect("GetFunctionEventInvokeConfig");
    assert_eq!((config.maximum_retry_attempts(), config.maximum_event_age_in_seconds()), (Some(2), Some(3600)));

    // The API: Lambda proxy integrations with payload 2.0, the routes, $default auto-deploying.
    let integrations = aws.apigateway.get_integrations().api_id(&api_id).send().await.unwrap();
    let mut integration_of = BTreeMap::new();
    for integration in integrations.items() {
        assert_eq!(integration.integration_type(), Some(&aws_sdk_apigatewayv2::types::IntegrationType::AwsProxy));
        assert_eq!(integration.payload_format_version(), Some("2.0"));
        let uri = integration.integration_uri().expect("an integration URI");
        let function = FUNCTIONS
            .into_iter()
            .find(|f| uri.ends_with(&format!(":function:{PREFIX}{f}:live")))
            .unwrap_or_else(|| panic!("the integration targets a function's live alias: {uri}"));
        integration_of.insert(function, integration.integration_id().unwrap().to_owned());
    }
    assert_eq!(integration_of.len(), 3, "one integration per function");
    let routes = aws.apigateway.get_routes().api_id(&api_id).send().await.unwrap();
    let routes: BTreeMap<String, Option<String>> = routes
        .items()
        .iter()
        .map(|route| (route.route_key().unwrap().to_owned(), route.target().map(str::to_owned)))
        .collect();
    assert_eq!(
        routes,
        BTreeMap::from([
            ("GET /".to_owned(), Some(format!("integrations/{}", integration_of["web"]))),
            ("GET /analysis/{id}".to_owned(), Some(format!("integrations/{}", integration_of["analyze"]))),
            ("GET /upload-url".to_owned(), Some(format!("integrations/{}", integration_of["upload-url"]))),
            ("POST /analyze".to_owned(), Some(format!("integrations/{}", integration_of["analyze"]))),
        ]),
        "each route targets its function's integration"
    );
    let stages = aws.apigateway.get_stages().api_id(&api_id).send().await.unwrap();
    assert_eq!(stages.items().len(), 1);
    assert_eq!(stages.items()[0].stage_name(), Some("$default"));
    assert_eq!(stages.items()[0].auto_deploy(), Some(true), "the stage deploys itself");
}

// ---------------------------------------------------------------------------------------
// 2. No-op deploy

#[tokio::test]
async fn a_second_deploy_plans_no_changes_and_makes_no_mutating_call() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("first deploy");
    let aws = Aws::new(&moto).await;
    let serial = aws.state().await.unwrap().serial;

    let again = deploy(&moto, &build);
    again.assert_success("second deploy");
    println!(
        "no-op deploy: {:.2?}, {} AWS calls: {}",
        again.elapsed,
        again.total_calls(),
        serde_json::to_string(&again.calls).unwrap()
    );
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(again.mutations(), BTreeMap::new(), "a no-op deploy changes nothing, not even state or the lock");
    assert!(again.total_calls() <= 2, "a no-op deploy reads state and stops: {:?}", again.calls);
    assert_eq!(again.count("S3", "GetObject"), 1, "it reads the state document: {:?}", again.calls);
    assert_eq!(aws.state().await.unwrap().serial, serial, "state was not rewritten");

    let plan = xtask(
        &moto,
        &["plan", "--env", ENV, "--detailed-exitcode", "--manifest", build.manifest_path.to_str().unwrap()],
    );
    assert_eq!(plan.code(), Some(0), "plan --detailed-exitcode says no changes:\n{}\n{}", plan.stdout, plan.stderr);
    assert_eq!(plan.mutations(), BTreeMap::new(), "plan changes nothing");
}

// ---------------------------------------------------------------------------------------
// 3. A configuration change

#[tokio::test]
async fn a_memory_change_is_exactly_one_configuration_update() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("first deploy");
    let aws = Aws::new(&moto).await;

    // The local environment with 512 MB for analyze (256 by default).
    let environments = temp_dir();
    let local = std::fs::read_to_string(e2e::workspace_root().join("environments/local.yaml")).unwrap();
    assert!(!local.contains("\nfunctions:"), "local.yaml sets no function settings; this test adds them");
    std::fs::write(
        environments.path().join("local.yaml"),
        format!("{local}\nfunctions:\n  analyze:\n    memory_mb: 512\n"),
    )
    .unwrap();
    let env = [(xtask::config::ENVIRONMENTS_DIR_ENV, environments.path())];

    let plan = plan_json(&moto, &build, &env);
    let steps = changing_steps(&plan);
    let ids: Vec<&str> = steps.iter().map(|step| step["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["function.analyze", "alias.analyze"],
        "the function and its alias change, nothing else: {steps:#?}"
    );
    let step = steps[0];
    assert_eq!(step["id"], "function.analyze");
    assert_eq!(step["action"], "update");
    let changes = step["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only memory_mb changes: {changes:#?}");
    assert_eq!(changes[0]["property"], "memory_mb");
    assert_eq!(changes[0]["old"], 256);
    assert_eq!(changes[0]["new"]["value"], 512);
    assert_eq!(changes[0]["forces_replacement"], false);

    let run = xtask_env(&moto, &deploy_args(&build), &env);
    run.assert_success("deploy with 512 MB");
    assert!(run.stdout.contains("0 added, 2 changed, 0 replaced, 0 destroyed"), "{}", run.stdout);
    assert_eq!(
        run.stack_mutations(),
        BTreeMap::from([
            ("Lambda:UpdateFunctionConfiguration".to_owned(), 1),
            ("Lambda:PublishVersion".to_owned(), 1),
            ("Lambda:UpdateAlias".to_owned(), 1)
        ]),
        "a new configuration, published as a version the alias moves to, and no other change: {:?}",
        run.calls
    );
    let s3_writes: BTreeSet<String> = run.mutations().into_keys().filter(|call| call.starts_with("S3:")).collect();
    assert!(
        s3_writes.is_subset(&BTreeSet::from(["S3:PutObject".to_owned(), "S3:DeleteObject".to_owned()])),
        "S3 is written only for state and lock: {s3_writes:?}"
    );
    let config =
        aws.lambda.get_function_configuration().function_name(format!("{PREFIX}analyze")).send().await.unwrap();
    assert_eq!(config.memory_size(), Some(512));
    assert_eq!(config.timeout(), Some(10), "the timeout is untouched");
    let state = aws.state().await.unwrap();
    assert_eq!(
        state.resources[&ResourceId::from("function.analyze")].inputs["memory_mb"],
        512,
        "state records the new size"
    );

    let again = xtask_env(
        &moto,
        &["plan", "--env", ENV, "--detailed-exitcode", "--manifest", build.manifest_path.to_str().unwrap()],
        &env,
    );
    assert_eq!(again.code(), Some(0), "converged:\n{}", again.stdout);
    assert_converged(&aws).await;
}

// ---------------------------------------------------------------------------------------
// 4. A code change

#[tokio::test]
async fn a_code_change_updates_only_that_functions_code() {
    let moto = moto();
    let dir = temp_dir();
    let first = synthetic_build(dir.path(), 1);
    deploy(&moto, &first).assert_success("first deploy");
    let aws = Aws::new(&moto).await;

    // The same directory: upload-url's zip is rewritten with the same bytes at the same path.
    let second = synthetic_build(dir.path(), 2);
    assert_ne!(first.artifact("analyze").sha256_base64, second.artifact("analyze").sha256_base64);
    assert_eq!(first.artifact("upload-url"), second.artifact("upload-url"));

    let plan = plan_json(&moto, &second, &[]);
    let steps = changing_steps(&plan);
    let ids: Vec<&str> = steps.iter().map(|step| step["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["function.analyze", "alias.analyze"],
        "the function and its alias change, nothing else: {steps:#?}"
    );
    assert_eq!(steps[0]["action"], "update");
    assert_eq!(steps[1]["action"], "update");
    assert_eq!(steps[1]["changes"][0]["property"], "function_version");
    assert_eq!(steps[1]["changes"][0]["new"]["state"], "known_after_apply");
    let properties: Vec<&str> =
        steps[0]["changes"].as_array().unwrap().iter().map(|c| c["property"].as_str().unwrap()).collect();
    assert_eq!(properties, ["code_sha256"], "only the code changes");

    let run = deploy(&moto, &second);
    run.assert_success("deploy of new analyze code");
    assert_eq!(
        run.stack_mutations(),
        BTreeMap::from([
            ("Lambda:UpdateFunctionCode".to_owned(), 1),
            ("Lambda:PublishVersion".to_owned(), 1),
            ("Lambda:UpdateAlias".to_owned(), 1)
        ]),
        "new code, published as a version the alias moves to, and no other change to the stack: {:?}",
        run.calls
    );
    let code = |function: &str| {
        let lambda = aws.lambda.clone();
        let name = format!("{PREFIX}{function}");
        async move {
            lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .unwrap()
                .code_sha256()
                .map(str::to_owned)
        }
    };
    assert_eq!(
        code("analyze").await.as_deref(),
        Some(second.artifact("analyze").sha256_base64.as_str()),
        "analyze runs the new build"
    );
    assert_eq!(
        code("upload-url").await.as_deref(),
        Some(first.artifact("upload-url").sha256_base64.as_str()),
        "upload-url is untouched"
    );
    let state = aws.state().await.unwrap();
    assert_eq!(
        state.resources[&ResourceId::from("function.analyze")].outputs["code_sha256"],
        second.artifact("analyze").sha256_base64.as_str(),
        "state records the deployed hash"
    );
    let again = deploy(&moto, &second);
    again.assert_success("redeploy");
    assert_eq!(again.mutations(), BTreeMap::new(), "converged: {}", again.stdout);
}

// ---------------------------------------------------------------------------------------
// 5. Concurrent deploys

#[tokio::test]
async fn of_two_concurrent_deploys_exactly_one_wins_and_the_other_names_the_lock_holder() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    // One operation at a time: the winner holds the lock for seconds, far longer than the
    // loser needs to reach it.
    let mut args = deploy_args(&build);
    args.extend(["--parallelism", "1"]);
    let (mut a, log_a) = command(&moto, &args, &[]);
    let (mut b, log_b) = command(&moto, &args, &[]);
    let started = Instant::now();
    let (a, b) = (a.spawn().unwrap(), b.spawn().unwrap());
    let pids = [a.id(), b.id()];
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let waiting: Vec<_> = [(a, &log_a), (b, &log_b)]
            .into_iter()
            .map(|(child, log)| scope.spawn(move || finish(child, log, started)))
            .collect();
        waiting.into_iter().map(|thread| thread.join().unwrap()).collect()
    });

    let winners: Vec<usize> = (0..2).filter(|&i| runs[i].status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one deploy succeeds:\n--- A {}\n{}\n{}\n--- B {}\n{}\n{}",
        runs[0].status,
        runs[0].stdout,
        runs[0].stderr,
        runs[1].status,
        runs[1].stdout,
        runs[1].stderr
    );
    let (winner, loser) = (winners[0], 1 - winners[0]);
    let message = &runs[loser].stderr;
    println!(
        "concurrent deploys: the winner took {:.2?}; the loser stopped after {:.2?} with: {}",
        runs[winner].elapsed,
        runs[loser].elapsed,
        message.lines().find(|line| line.contains("locked by")).unwrap_or(message)
    );
    assert!(message.contains("locked by"), "the loser says the state is locked:\n{message}");
    assert!(
        message.contains(&format!("(pid {})", pids[winner])),
        "the loser names the winner's pid {}:\n{message}",
        pids[winner]
    );
    assert!(message.contains(&xtask::state::lock::hostname()), "the loser names the winner's host:\n{message}");
    assert!(message.contains("deploy"), "the loser names the winner's operation:\n{message}");
    assert_eq!(runs[loser].stack_mutations(), BTreeMap::new(), "the loser changed nothing of the stack");

    let aws = Aws::new(&moto).await;
    assert_converged(&aws).await;
    assert!(aws.lock().await.is_none(), "the winner released the lock");
}

// ---------------------------------------------------------------------------------------
// 6. kill -9 midway

/// Waits until a state document records at least `resources` resources and an operation
/// in flight (or `resources + 3` resources without catching one), then kills the deploy
/// with SIGKILL. Returns whether an operation was pending when it was caught.
async fn kill_midway(aws: &Aws, child: &mut Child, resources: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the deploy finished ({status}) before it could be killed midway");
        }
        assert!(Instant::now() < deadline, "the deploy recorded no progress in 30 s");
        let state = match aws.store.load().await {
            Ok(state) => state.map(|versioned| versioned.value),
            Err(_) => None, // the state bucket may not exist yet
        };
        if let Some(state) = state {
            let done = state.resources.len();
            if (done >= resources && !state.pending.is_empty()) || done >= resources + 3 {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                return !state.pending.is_empty();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_deploy_killed_midway_leaves_a_lock_the_next_breaks_and_converges_without_orphans_or_duplicates() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let aws = Aws::new(&moto).await;
    let mut args = deploy_args(&build);
    args.extend(["--parallelism", "1"]);
    let (mut command, _log) = command(&moto, &args, &[]);
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let killed_pid = child.id();
    let caught_pending = kill_midway(&aws, &mut child, 4).await;

    let state = aws.state().await.expect("the killed run wrote state");
    println!(
        "killed deploy: {} resources recorded, pending when caught: {caught_pending}, pending after the kill: {:?}",
        state.resources.len(),
        state.pending.keys().collect::<Vec<_>>()
    );
    assert!(state.resources.len() < STACK_SIZE, "the deploy was killed midway");

    // kill -9 cannot release the lock; the next deploy on this machine sees that its holder
    // no longer runs, says so, and breaks it.
    let lock = aws.lock().await.expect("the killed run's lock remains");
    assert_eq!(lock.pid, killed_pid);
    let resumed = deploy(&moto, &build);
    resumed.assert_success("deploy after the kill");
    assert!(
        resumed.stderr.contains(&format!("(pid {killed_pid})")) && resumed.stderr.contains("no longer runs"),
        "it names the dead holder whose lock it breaks:\n{}",
        resumed.stderr
    );
    if !state.pending.is_empty() {
        assert!(resumed.stdout.contains("Recovered"), "the pending operation is resolved first:\n{}", resumed.stdout);
    }
    for line in resumed.stdout.lines().filter(|line| line.starts_with("Recovered")) {
        println!("resumed deploy: {line}");
    }
    // One create call per resource created (see `is_create_call`): the recorded ones are not
    // created again, nor the pending ones that had been created before the kill.
    let creates: u64 =
        resumed.mutations().into_iter().filter(|(call, _)| is_create_call(call)).map(|(_, count)| count).sum();
    let missing = (STACK_SIZE - state.resources.len()) as u64;
    assert!(
        (missing - state.pending.len() as u64..=missing).contains(&creates),
        "only the missing resources are created ({missing} missing, {} pending; recorded {:?}): {:?}",
        state.pending.len(),
        state.resources.keys().collect::<Vec<_>>(),
        resumed.calls
    );
    assert_converged(&aws).await;
    assert_eq!(
        xtask(
            &moto,
            &["plan", "--env", ENV, "--detailed-exitcode", "--manifest", build.manifest_path.to_str().unwrap()]
        )
        .code(),
        Some(0),
        "nothing left to do"
    );
}

#[tokio::test]
async fn a_lock_held_from_another_machine_blocks_a_deploy_until_force_unlocked_by_its_id() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let aws = Aws::new(&moto).await;
    deploy(&moto, &build).assert_success("deploy");
    let lock = LockInfo {
        id: "held-elsewhere".to_owned(),
        who: "bob".to_owned(),
        host: "another-machine".to_owned(),
        pid: 4242,
        operation: "deploy".to_owned(),
        started_at: xtask::state::lock::now_rfc3339(),
        expires_at: "2099-01-01T00:00:00Z".to_owned(),
        process: Some("another-boot/pid:[1]/4242/1".to_owned()),
    };
    aws.store.acquire_lock(&lock).await.expect("the lock is written");

    // A deploy with something to change (a deploy with nothing to change takes no lock).
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 2);
    let blocked = deploy(&moto, &build);
    assert!(!blocked.status.success(), "a deploy over a live lock fails:\n{}", blocked.stdout);
    assert!(blocked.stderr.contains("locked by"), "{}", blocked.stderr);
    assert!(blocked.stderr.contains("another-machine (pid 4242)"), "it names the holder:\n{}", blocked.stderr);
    assert!(blocked.stderr.contains(&lock.id), "it names the lock id to force-unlock:\n{}", blocked.stderr);
    assert_eq!(blocked.stack_mutations(), BTreeMap::new(), "the refused deploy changed nothing");

    // Unlocking another id removes nothing; the holder's id removes the lock.
    let wrong = xtask(&moto, &["unlock", "--env", ENV, "--force", "not-the-lock-id"]);
    assert!(!wrong.status.success(), "unlocking another id fails:\n{}", wrong.stdout);
    assert!(aws.lock().await.is_some(), "and leaves the lock");
    xtask(&moto, &["unlock", "--env", ENV, "--force", &lock.id]).assert_success("unlock --force");
    assert!(aws.lock().await.is_none(), "unlock removed the lock");
    deploy(&moto, &build).assert_success("deploy after the unlock");
}

#[tokio::test]
async fn creates_interrupted_before_they_were_recorded_are_adopted_not_duplicated() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("first deploy");
    let aws = Aws::new(&moto).await;

    // What a crash right after the cloud calls leaves: the resources exist, and state journals
    // their creates as pending instead of recording them. The API is the dangerous one: API
    // names are not unique, so creating it again would make a twin. Every kind but the stage
    // is covered (updating a stage is UpdateStage, which moto does not implement).
    let versioned = aws.versioned_state().await.unwrap();
    let mut state = versioned.value;
    let mut originals = BTreeMap::new();
    let interrupted = [
        "api",
        "bucket.uploads",
        "role.upload-url",
        "logs.analyze",
        "function.analyze",
        "integration.analyze",
        "route.analyze",
        "permission.analyze",
        "permission.analyze-uploads",
        "invoke-config.analyze",
        "notification.uploads",
    ];
    for id in interrupted {
        let id = ResourceId::from(id);
        let resource = state.resources.remove(&id).unwrap();
        originals.insert(id.clone(), resource.physical_id.clone());
        let pending = Pending {
            operation: Operation::Create,
            kind: resource.kind,
            name: resource.name.clone(),
            inputs: resource.inputs.clone(),
            depends_on: resource.depends_on.clone(),
            started_at: xtask::state::lock::now_rfc3339(),
        };
        state.pending.insert(id, pending);
    }
    state.serial += 1;
    aws.store.save(&state, Some(&versioned.etag)).await.unwrap();

    let plan = xtask(
        &moto,
        &["plan", "--env", ENV, "--detailed-exitcode", "--manifest", build.manifest_path.to_str().unwrap()],
    );
    assert_eq!(plan.code(), Some(2), "plan reports the pending operations as changes:\n{}", plan.stdout);

    let run = deploy(&moto, &build);
    run.assert_success("deploy with pending creates");
    for (id, physical_id) in &originals {
        assert!(
            run.stdout.contains(&format!("Recovered {id}: an interrupted run created {physical_id}; adopted it.")),
            "{id} is adopted:\n{}",
            run.stdout
        );
    }
    let creates: BTreeMap<String, u64> = run.mutations().into_iter().filter(|(call, _)| is_create_call(call)).collect();
    assert_eq!(creates, BTreeMap::new(), "nothing is created again: {:?}", run.calls);
    let after = aws.state().await.unwrap();
    for (id, physical_id) in &originals {
        assert_eq!(&after.resources[id].physical_id, physical_id, "{id} is the original");
    }
    assert_converged(&aws).await;
    let again = deploy(&moto, &build);
    assert_eq!(again.mutations(), BTreeMap::new(), "converged:\n{}", again.stdout);
}

// ---------------------------------------------------------------------------------------
// 7. Destroy

#[tokio::test]
async fn destroy_leaves_nothing_of_the_stack_but_the_state_bucket() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("deploy");
    let aws = Aws::new(&moto).await;
    // An upload: the bucket must be emptied before it can go. (moto enforces a TLS-only bucket
    // policy on PutObject, and the emulator speaks plain HTTP: drop any such policy first.)
    let _ = aws.s3.delete_bucket_policy().bucket(UPLOAD_BUCKET).send().await;
    aws.s3
        .put_object()
        .bucket(UPLOAD_BUCKET)
        .key("uploads/00000000-0000-4000-8000-000000000000.jpg")
        .content_type("image/jpeg")
        .body(ByteStream::from_static(b"not really a JPEG"))
        .send()
        .await
        .expect("an upload");

    let run = xtask(&moto, &["destroy", "--env", ENV, "--yes"]);
    run.assert_success("destroy");
    assert!(run.stdout.contains(&format!("{STACK_SIZE} destroyed")), "{}", run.stdout);
    assert_no_stack(&aws).await;
    assert_eq!(aws.bucket_names().await, [STATE_BUCKET], "only the state bucket remains");
    let state = aws.state().await.expect("the state document remains");
    assert!(state.resources.is_empty(), "state records no resources: {:?}", state.resources.keys());
    assert!(state.pending.is_empty(), "nothing pending: {:?}", state.pending);
    assert!(aws.lock().await.is_none(), "the lock is released");

    // The destroy is a deployment in the history, and nothing can be promoted from it.
    let history = xtask(&moto, &["history", "--env", ENV, "--json"]);
    history.assert_success("history");
    let deployments: Value = serde_json::from_str(&history.stdout).expect("history --json prints JSON");
    let last = deployments.as_array().and_then(|all| all.last()).expect("a deployment");
    assert_eq!(last["kind"], "destroy", "{last}");
    assert_eq!(last["removed"].as_array().map(Vec::len), Some(STACK_SIZE), "{last}");
    let promote = xtask(&moto, &["promote", "--from", ENV, "--to", "dev", "--yes", "--force"]);
    assert_eq!(promote.code(), Some(1), "promoting a destroyed environment fails:\n{}", promote.stderr);
    assert!(promote.stderr.contains("was destroyed by deployment"), "{}", promote.stderr);
    assert_eq!(promote.mutations(), BTreeMap::new(), "a refused promotion changes nothing");

    let again = xtask(&moto, &["destroy", "--env", ENV, "--yes"]);
    again.assert_success("a second destroy");
    assert_eq!(again.mutations(), BTreeMap::new(), "a second destroy has nothing to do:\n{}", again.stdout);
}

// ---------------------------------------------------------------------------------------
// 8. No confirmation

#[tokio::test]
async fn deploy_without_a_terminal_or_yes_refuses_and_creates_nothing() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    // stdin is /dev/null (see e2e::xtask).
    let run =
        xtask(&moto, &["deploy", "--env", ENV, "--no-build", "--manifest", build.manifest_path.to_str().unwrap()]);
    assert!(!run.status.success(), "deploy without --yes and without a terminal must refuse:\n{}", run.stdout);
    assert!(run.stderr.contains("refusing to deploy without confirmation"), "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "it says how to proceed:\n{}", run.stderr);
    assert!(run.stdout.contains(&format!("{STACK_SIZE} to add")), "it shows what it would have done:\n{}", run.stdout);
    assert_eq!(run.mutations(), BTreeMap::new(), "nothing is written: {:?}", run.calls);
    let aws = Aws::new(&moto).await;
    assert_no_stack(&aws).await;
    assert_eq!(aws.bucket_names().await, Vec::<String>::new(), "not even the state bucket");
}

#[tokio::test]
async fn drift_sees_an_extra_role_policy_an_extra_permission_and_protections_turned_off() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("deploy");
    let aws = Aws::new(&moto).await;

    // Behind the tool's back: a second inline policy and an attached one on analyze's role;
    // anyone allowed to invoke analyze's live alias; the upload bucket's public access block
    // turned off and its encryption changed; the state bucket's public access block removed.
    let role = format!("{PREFIX}analyze");
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    aws.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("backdoor")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
    let managed =
        aws.iam.create_policy().policy_name("everything").policy_document(wide.to_string()).send().await.unwrap();
    let managed_arn = managed.policy().unwrap().arn().unwrap().to_owned();
    aws.iam.attach_role_policy().role_name(&role).policy_arn(&managed_arn).send().await.unwrap();
    aws.lambda
        .add_permission()
        .function_name(format!("{PREFIX}analyze"))
        .qualifier("live")
        .statement_id("anyone")
        .principal("*")
        .action("lambda:InvokeFunction")
        .send()
        .await
        .unwrap();
    let open = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_acls(false)
        .ignore_public_acls(false)
        .block_public_policy(false)
        .restrict_public_buckets(false)
        .build();
    aws.s3
        .put_public_access_block()
        .bucket(UPLOAD_BUCKET)
        .public_access_block_configuration(open)
        .send()
        .await
        .unwrap();
    // (Deleting it would not do: S3 encrypts with SSE-S3 all the same, and says so.)
    let kms = aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
        .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .build()
        .unwrap();
    let rule =
        aws_sdk_s3::types::ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(kms).build();
    let encryption = aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap();
    aws.s3
        .put_bucket_encryption()
        .bucket(UPLOAD_BUCKET)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .unwrap();
    aws.s3.delete_public_access_block().bucket(STATE_BUCKET).send().await.unwrap();

    let drifted = xtask(&moto, &["drift", "--env", ENV]);
    assert_eq!(drifted.code(), Some(2), "drift exits 2:\n{}\n{}", drifted.stdout, drifted.stderr);
    let out = &drifted.stdout;
    assert!(out.contains(&format!("Drift: {} in sync, 3 changed, 0 deleted.", STACK_SIZE - 3)), "{out}");
    assert!(
        out.contains(r#"inline_policies: ["least-privilege"] (state) != ["backdoor","least-privilege"] (live)"#),
        "{out}"
    );
    assert!(out.contains(&format!(r#"attached_policies: [] (state) != ["{managed_arn}"] (live)"#)), "{out}");
    assert!(out.contains("~ alias.analyze (live) changed outside this tool:"), "{out}");
    assert!(
        out.contains(r#"policy_statements: ["#) && out.contains(r#""anyone""#),
        "the extra statement is named: {out}"
    );
    assert!(out.contains("~ bucket.uploads"), "{out}");
    let closed = r#"{"block_public_acls":true,"block_public_policy":true,"ignore_public_acls":true,"restrict_public_buckets":true}"#;
    let opened = closed.replace("true", "false");
    assert!(out.contains(&format!("public_access_block: {closed} (state) != {opened} (live)")), "{out}");
    assert!(out.contains(r#"encryption: "AES256" (state) != "aws:kms" (live)"#), "{out}");
    assert!(out.contains(&format!("~ state-bucket ({STATE_BUCKET}) changed outside this tool:")), "{out}");
    assert_eq!(drifted.mutations(), BTreeMap::new(), "drift only reads: {:?}", drifted.calls);

    // A refreshing deploy restores the bucket's protections, which state records; the extra
    // policies and statement were never the tool's, and drift keeps naming them.
    let mut args = deploy_args(&build);
    args.push("--refresh");
    xtask(&moto, &args).assert_success("deploy --refresh");
    let block = aws.s3.get_public_access_block().bucket(UPLOAD_BUCKET).send().await.unwrap();
    assert_eq!(block.public_access_block_configuration().unwrap().block_public_policy(), Some(true));
    let encryption = aws.s3.get_bucket_encryption().bucket(UPLOAD_BUCKET).send().await.unwrap();
    let rule = &encryption.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str(), "AES256");
    let after = xtask(&moto, &["drift", "--env", ENV]);
    assert_eq!(after.code(), Some(2));
    assert!(!after.stdout.contains("bucket.uploads"), "{}", after.stdout);
    assert!(after.stdout.contains("~ role.analyze") && after.stdout.contains("~ alias.analyze"), "{}", after.stdout);
}

#[tokio::test]
async fn drift_finds_changes_and_deletions_made_behind_the_tools_back_but_not_reordered_policies() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("deploy");
    let aws = Aws::new(&moto).await;

    let clean = xtask(&moto, &["drift", "--env", ENV]);
    clean.assert_success("drift right after a deploy");
    assert!(clean.stdout.contains(&format!("Drift: {STACK_SIZE} in sync, 0 changed, 0 deleted.")), "{}", clean.stdout);
    assert_eq!(clean.mutations(), BTreeMap::new(), "drift only reads: {:?}", clean.calls);

    // Behind the tool's back: the same policy with its statements and actions reordered (no
    // drift), a widened policy, a memory change, a deleted route, the bucket's notification
    // emptied.
    let role = format!("{PREFIX}upload-url");
    let document = aws.iam.get_role_policy().role_name(&role).policy_name("least-privilege").send().await.unwrap();
    let text = document.policy_document();
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    let mut policy: Value = serde_json::from_str(text).or_else(|_| serde_json::from_str(&decoded)).unwrap();
    let statements = policy["Statement"].as_array_mut().unwrap();
    statements.reverse();
    for statement in statements.iter_mut() {
        if let Value::Array(actions) = &mut statement["Action"] {
            actions.reverse();
        }
    }
    aws.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("least-privilege")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
    let analyze = format!("{PREFIX}analyze");
    aws.iam
        .put_role_policy()
        .role_name(&analyze)
        .policy_name("least-privilege")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
    aws.lambda.update_function_configuration().function_name(&analyze).memory_size(1024).send().await.unwrap();
    let state = aws.state().await.unwrap();
    let route = &state.resources[&xtask::engine::resource::ResourceId::new("route.upload-url")];
    aws.apigateway
        .delete_route()
        .api_id(route.inputs["api_id"].as_str().unwrap())
        .route_id(&route.physical_id)
        .send()
        .await
        .unwrap();

    aws.s3
        .put_bucket_notification_configuration()
        .bucket(UPLOAD_BUCKET)
        .notification_configuration(aws_sdk_s3::types::NotificationConfiguration::builder().build())
        .send()
        .await
        .unwrap();

    let drifted = xtask(&moto, &["drift", "--env", ENV]);
    assert_eq!(drifted.code(), Some(2), "drift exits 2:\n{}\n{}", drifted.stdout, drifted.stderr);
    let out = &drifted.stdout;
    assert!(out.contains(&format!("Drift: {} in sync, 2 changed, 2 deleted.", STACK_SIZE - 4)), "{out}");
    assert!(out.contains("- notification.uploads"), "a bucket that notifies nothing has no notification: {out}");
    assert!(out.contains("memory_mb: 256 (state) != 1024 (live)"), "{out}");
    assert!(out.contains("~ role.analyze") && out.contains("+ {\"Action\":[\"s3:*\"]"), "{out}");
    assert!(!out.contains("role.upload-url"), "a reordered policy is not drift: {out}");
    assert!(out.contains("- route.upload-url"), "{out}");
    println!("drift: {} AWS calls: {}", drifted.total_calls(), serde_json::to_string(&drifted.calls).unwrap());

    let json_run = xtask(&moto, &["drift", "--env", ENV, "--json"]);
    assert_eq!(json_run.code(), Some(2));
    let report: Value = serde_json::from_str(&json_run.stdout).unwrap();
    let statuses: BTreeMap<String, String> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "in_sync")
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("function.analyze".to_owned(), "changed".to_owned()),
            ("notification.uploads".to_owned(), "deleted".to_owned()),
            ("role.analyze".to_owned(), "changed".to_owned()),
            ("route.upload-url".to_owned(), "deleted".to_owned()),
        ])
    );

    // A refreshing deploy records what the cloud holds now, so its plan puts the
    // configuration back: the memory, the policy, the route, the notification.
    let mut args = deploy_args(&build);
    args.push("--refresh");
    let repaired = xtask(&moto, &args);
    repaired.assert_success("deploy --refresh");
    assert!(
        repaired.stdout.contains("2 no longer exist: notification.uploads, route.upload-url; 2 were changed outside this tool: function.analyze (memory_mb), role.analyze (policy)"),
        "{}",
        repaired.stdout
    );
    assert!(
        repaired.stdout.contains("2 added, 3 changed"),
        "the route and the notification; the function, its alias and the role: {}",
        repaired.stdout
    );
    let clean = xtask(&moto, &["drift", "--env", ENV]);
    clean.assert_success("drift after the refreshing deploy");
    assert!(clean.stdout.contains(&format!("Drift: {STACK_SIZE} in sync, 0 changed, 0 deleted.")), "{}", clean.stdout);
    assert_converged(&aws).await;
}

#[tokio::test]
async fn a_state_bucket_left_unconfigured_by_a_run_that_died_is_configured_by_the_next() {
    let moto = moto();
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let aws = Aws::new(&moto).await;
    // A first run created the state bucket and died before configuring it.
    aws.s3.create_bucket().bucket(STATE_BUCKET).send().await.expect("CreateBucket");

    deploy(&moto, &build).assert_success("deploy");
    // (moto answers GetBucketVersioning with a root element the SDK refuses; the tag set last
    // says the whole configuration, versioning included, was applied.)
    let tags = aws.s3.get_bucket_tagging().bucket(STATE_BUCKET).send().await.expect("GetBucketTagging");
    assert!(
        tags.tag_set().iter().any(|tag| tag.key() == "image-analyzer:state-bucket" && tag.value() == "configured"),
        "{tags:?}"
    );
    let block = aws.s3.get_public_access_block().bucket(STATE_BUCKET).send().await.expect("GetPublicAccessBlock");
    let block = block.public_access_block_configuration().expect("a public access block");
    assert_eq!(block.block_public_acls(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));
    aws.s3.get_bucket_encryption().bucket(STATE_BUCKET).send().await.expect("the state bucket is encrypted");
    assert_converged(&aws).await;
}
