//! The deployer off the happy path: the `xtask` binary against an emulator behind a
//! fault-injecting loopback proxy ([`e2e::fault`]).
//!
//! Each trial deploys (or destroys) the `local` environment from a synthetic build while the
//! proxy loses answers, answers errors, resets connections, answers too slowly, or kills the
//! deployer with SIGKILL at a chosen request, and then reruns the same command with no
//! faults. Every trial must end with the emulator holding exactly what state records (no
//! orphan, no duplicate, nothing pending) and a plan with nothing to do.
//!
//! Run by hand with `cargo build -p xtask && cargo test -p e2e --test faults -- --nocapture`
//! to see each trial.

use std::os::unix::process::ExitStatusExt as _;
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::deployer::*;
use e2e::fault::{pass, Call, Fault, FaultProxy, Injected, Rule};
use e2e::Endpoint;

/// Attempt timeout for runs through a proxy that answers slowly: a slow answer takes longer.
const ATTEMPT_TIMEOUT_MS: &str = "1500";
const SLOW: Duration = Duration::from_millis(2500);

/// Runs `xtask <args>` against `target`, handing its pid to `pid` while it runs.
fn run_with_pid(target: &impl Endpoint, args: &[&str], pid: &AtomicU32) -> Run {
    let (mut command, log) = command(target, args, &[]);
    command.env(xtask::aws::ATTEMPT_TIMEOUT_ENV, ATTEMPT_TIMEOUT_MS);
    let started = Instant::now();
    let child: Child = command.spawn().expect("xtask starts");
    pid.store(child.id(), Ordering::SeqCst);
    let run = finish(child, &log, started);
    pid.store(0, Ordering::SeqCst);
    run
}

fn kill(pid: u32) {
    if pid != 0 {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

/// A rule that counts the mutating calls to the stack (state writes excepted) and, at the
/// `at`-th, kills the deployer and loses the answer: the call is applied, nobody hears back.
fn kill_at(at: usize, pid: Arc<AtomicU32>, seen: Arc<AtomicUsize>) -> Rule {
    Box::new(move |call: &Call, _| {
        if !call.is_mutation() || call.is_state() {
            return Fault::Pass;
        }
        if seen.fetch_add(1, Ordering::SeqCst) == at {
            kill(pid.load(Ordering::SeqCst));
            return Fault::LoseAnswer;
        }
        Fault::Pass
    })
}

/// After a trial: a plain rerun of `args`, with no faults, succeeds.
fn rerun(target: &impl Endpoint, args: &[&str], what: &str) {
    let run = xtask(target, args);
    run.assert_success(what);
}

/// The plan against `target` has nothing to do.
fn assert_no_op_plan(target: &impl Endpoint, build: &Build) {
    let plan = plan_json(target, build, &[]);
    let changing = changing_steps(&plan);
    assert!(changing.is_empty(), "a no-op plan after the trial: {changing:?}");
}

// ---------------------------------------------------------------------------------------
// Lost answers to creates whose id the server makes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_create_api_integration_or_route_leaves_exactly_one_of_each() {
    let moto = moto();
    let aws = Aws::new(&moto).await;
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    // The first CreateApi, CreateIntegration and CreateRoute: applied, their answers lost.
    let mut lost = std::collections::BTreeSet::new();
    let rule: Rule = Box::new(move |call: &Call, _| {
        let path = call.path.as_str();
        let kind = match path.rsplit('/').next() {
            Some("apis") => "api",
            Some("integrations") => "integration",
            Some("routes") => "route",
            _ => return Fault::Pass,
        };
        if call.method == "POST" && path.starts_with("/v2/apis") && lost.insert(kind) {
            Fault::LoseAnswer
        } else {
            Fault::Pass
        }
    });
    let proxy = FaultProxy::start(moto.endpoint(), 1, rule).await.unwrap();

    let run = deploy(&proxy, &build);
    run.assert_success("deploy with lost create answers");
    let lost: Vec<String> = proxy.injected().into_iter().map(|injected| injected.operation).collect();
    assert_eq!(lost.len(), 3, "three answers were lost: {lost:?}");
    assert_converged(&aws).await;
    assert_no_op_plan(&moto, &build);
}

// ---------------------------------------------------------------------------------------
// A stalled endpoint

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_api_gateway_fails_the_deploy_within_its_timeouts_with_state_intact_and_the_lock_released() {
    let moto = moto();
    let aws = Aws::new(&moto).await;
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    // Every API Gateway call is applied and answered ten minutes later: a service that hangs.
    let stall: Rule =
        Box::new(
            |call: &Call, _| {
                if call.path.starts_with("/v2/") {
                    Fault::Slow(Duration::from_secs(600))
                } else {
                    Fault::Pass
                }
            },
        );
    let proxy = FaultProxy::start(moto.endpoint(), 0, stall).await.unwrap();

    let pid = AtomicU32::new(0);
    let stalled = run_with_pid(&proxy, &deploy_args(&build), &pid);
    assert!(!stalled.status.success(), "the deploy fails:\n{}", stalled.stdout);
    println!("the stalled deploy failed after {:.1?}", stalled.elapsed);
    // The attempt timeout is 1.5 s and a call's 4.5 s (ATTEMPT_TIMEOUT_MS): the run ends
    // well inside a minute instead of hanging on the lock.
    assert!(stalled.elapsed < Duration::from_secs(60), "it gave up within its timeouts: {:?}", stalled.elapsed);
    assert!(stalled.stderr.contains("no answer from"), "it says the endpoint did not answer:\n{}", stalled.stderr);
    assert!(aws.lock().await.is_none(), "the lock is released");
    let state = aws.state().await.expect("state was saved");
    assert!(!state.resources.is_empty(), "what was created is recorded");

    proxy.set_rule(pass());
    rerun(&proxy, &deploy_args(&build), "the deploy once API Gateway answers");
    assert_converged(&aws).await;
    assert_no_op_plan(&moto, &build);
}

// ---------------------------------------------------------------------------------------
// Refresh by recorded id

#[tokio::test]
async fn a_hand_edited_tag_on_the_api_does_not_make_refresh_recreate_it() {
    let moto = moto();
    let aws = Aws::new(&moto).await;
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    deploy(&moto, &build).assert_success("deploy");
    let api_id =
        aws.state().await.unwrap().resources[&xtask::engine::resource::ResourceId::new("api")].physical_id.clone();
    let arn = format!("arn:aws:apigateway:{REGION}::/apis/{api_id}");
    let api = aws.apigateway.get_api().api_id(&api_id).send().await.unwrap();
    let (key, _) = api.tags().and_then(|tags| tags.iter().next()).expect("the API is tagged");
    aws.apigateway.tag_resource().resource_arn(&arn).tags(key, "edited-by-hand").send().await.unwrap();

    let mut args = deploy_args(&build);
    args.push("--refresh");
    let run = xtask(&moto, &args);
    run.assert_success("deploy --refresh");
    assert!(!run.stdout.contains("no longer exist: api"), "{}", run.stdout);
    assert_converged(&aws).await;
    let state = aws.state().await.unwrap();
    assert_eq!(state.resources[&xtask::engine::resource::ResourceId::new("api")].physical_id, api_id);
    let api = aws.apigateway.get_api().api_id(&api_id).send().await.unwrap();
    assert_ne!(api.tags().unwrap()[key], "edited-by-hand", "the tag is put back");
}

// ---------------------------------------------------------------------------------------
// kill -9 at every mutating call, with its answer lost

/// How many mutating calls to the stack a deploy from empty and a destroy make, counted
/// through a proxy that injects nothing.
async fn mutations_of(moto: &e2e::Moto, build: &Build) -> (usize, usize) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let rule: Rule = Box::new(move |call: &Call, _| {
        if call.is_mutation() && !call.is_state() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        Fault::Pass
    });
    let proxy = FaultProxy::start(moto.endpoint(), 0, rule).await.unwrap();
    deploy(&proxy, build).assert_success("counting deploy");
    let deploy_calls = seen.swap(0, Ordering::SeqCst);
    xtask(&proxy, &["destroy", "--env", ENV, "--yes"]).assert_success("counting destroy");
    (deploy_calls, seen.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_or_destroy_killed_at_any_mutating_call_with_its_answer_lost_converges_on_a_plain_rerun() {
    let moto = moto();
    let aws = Aws::new(&moto).await;
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let (deploy_calls, destroy_calls) = mutations_of(&moto, &build).await;
    println!("a deploy makes {deploy_calls} mutating calls to the stack, a destroy {destroy_calls}");
    assert!(deploy_calls >= 17 && destroy_calls >= 17, "{deploy_calls} and {destroy_calls}");

    let pid = Arc::new(AtomicU32::new(0));
    let proxy = FaultProxy::start(moto.endpoint(), 0, pass()).await.unwrap();
    let destroy = ["destroy", "--env", ENV, "--yes"];
    let mut trials = 0;
    for at in 0..deploy_calls {
        let started = Instant::now();
        proxy.set_rule(kill_at(at, Arc::clone(&pid), Arc::new(AtomicUsize::new(0))));
        let killed = run_with_pid(&proxy, &deploy_args(&build), &pid);
        assert!(!killed.status.success(), "the deploy was killed at mutating call #{at}");
        proxy.set_rule(pass());
        rerun(&proxy, &deploy_args(&build), &format!("the deploy after a kill at #{at}"));
        assert_converged(&aws).await;
        assert_no_op_plan(&proxy, &build);

        // Half the trials also kill the destroy that follows, at the same point.
        if at % 2 == 0 && at < destroy_calls {
            proxy.set_rule(kill_at(at, Arc::clone(&pid), Arc::new(AtomicUsize::new(0))));
            let killed = run_with_pid(&proxy, &destroy, &pid);
            assert!(!killed.status.success(), "the destroy was killed at mutating call #{at}");
            proxy.set_rule(pass());
        }
        rerun(&proxy, &destroy, &format!("the destroy after trial #{at}"));
        assert_no_stack(&aws).await;
        let state = aws.state().await.expect("state remains");
        assert!(state.resources.is_empty() && state.pending.is_empty(), "state is empty after the destroy");
        trials += 1;
        println!("kill at mutating call #{at}: converged in {:.1?}", started.elapsed());
    }
    assert!(trials >= 20, "{trials} kill points");
}

// ---------------------------------------------------------------------------------------
// A mix of every fault, and kill -9 at a random moment

/// Each mutating call to the stack meets a fault with probability `percent`%: an error
/// answer, a throttle, a reset before it is sent on, a lost answer, or a slow one.
fn fault_mix(percent: u32) -> Rule {
    Box::new(move |call: &Call, rng: &mut fastrand::Rng| {
        if !call.is_mutation() || call.is_state() || rng.u32(0..100) >= percent {
            return Fault::Pass;
        }
        match rng.u32(0..5) {
            0 => Fault::Unavailable,
            1 => Fault::Throttle,
            2 => Fault::ResetBefore,
            3 => Fault::LoseAnswer,
            _ => Fault::Slow(SLOW),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_destroys_under_a_fault_mix_and_random_kills_converge() {
    let moto = moto();
    let aws = Aws::new(&moto).await;
    let dir = temp_dir();
    let build = synthetic_build(dir.path(), 1);
    let destroy = ["destroy", "--env", ENV, "--yes"];
    let pid = Arc::new(AtomicU32::new(0));
    let mut killed = 0;
    for seed in 1..=8_u64 {
        let started = Instant::now();
        let proxy = FaultProxy::start(moto.endpoint(), seed, fault_mix(15)).await.unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        for (what, args) in [("deploy", deploy_args(&build)), ("destroy", destroy.to_vec())] {
            // The first run is killed at a random moment; reruns go on under the fault mix
            // until one succeeds.
            let kill_after = Duration::from_millis(rng.u64(50..1000));
            let killer_pid = Arc::clone(&pid);
            let killer = std::thread::spawn(move || {
                std::thread::sleep(kill_after);
                kill(killer_pid.load(Ordering::SeqCst));
            });
            let first = run_with_pid(&proxy, &args, &pid);
            killer.join().unwrap();
            killed += usize::from(first.status.signal() == Some(9));
            let mut attempts = vec![first.status.success()];
            while !attempts.last().unwrap() && attempts.len() < 6 {
                attempts.push(run_with_pid(&proxy, &args, &pid).status.success());
            }
            assert!(attempts.last().unwrap(), "seed {seed}: {what} succeeded under the fault mix: {attempts:?}");
            if what == "deploy" {
                assert_converged(&aws).await;
                assert_no_op_plan(&moto, &build);
            } else {
                assert_no_stack(&aws).await;
            }
            println!(
                "seed {seed}: {what} killed after {kill_after:?}, {} runs; {} faults so far",
                attempts.len(),
                proxy.injected().len()
            );
        }
        let injected: Vec<Injected> = proxy.injected();
        assert!(!injected.is_empty(), "seed {seed}: faults were injected");
        println!("seed {seed}: converged in {:.1?}", started.elapsed());
    }
    println!("{killed} of 16 runs were killed midway");
    assert!(killed >= 4, "enough runs were killed midway to mean something: {killed}");
}

// ---------------------------------------------------------------------------------------
// Errors a person can act on

/// `xtask <args>` with no AWS credentials or endpoint configured at all, and `extra` set.
fn bare_xtask(args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let home = temp_dir();
    let mut command = std::process::Command::new(e2e::xtask_bin());
    command.current_dir(e2e::workspace_root()).args(args).env("HOME", home.path()).stdin(std::process::Stdio::null());
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "XTASK_LOG",
        "IMAGE_ANALYZER_ENV",
    ] {
        command.env_remove(name);
    }
    // No instance metadata service to ask on a developer's machine.
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in extra {
        command.env(name, value);
    }
    command.output().expect("xtask runs")
}

/// The error a run printed: its stderr, which must be one or two lines after `error:`, and
/// no SDK debug form.
fn short_error(output: &std::process::Output, what: &str) -> String {
    assert!(!output.status.success(), "{what} fails");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let error = &stderr[stderr.find("error:").unwrap_or_else(|| panic!("{what} prints an error:\n{stderr}"))..];
    assert!(error.trim_end().lines().count() <= 2, "{what}: one or two lines:\n{stderr}");
    for debug in ["DispatchFailure", "ProviderError(", "ConnectorError", "{ source"] {
        assert!(!stderr.contains(debug), "{what}: no SDK debug dump ({debug}):\n{stderr}");
    }
    error.to_owned()
}

#[test]
fn without_credentials_plan_deploy_and_destroy_say_so_and_how_to_set_them() {
    for args in [
        &["plan", "--env", "dev"][..],
        &["deploy", "--env", "dev", "--no-build", "--yes"],
        &["destroy", "--env", "dev", "--yes"],
    ] {
        let what = args.join(" ");
        let error = short_error(&bare_xtask(args, &[]), &what);
        assert!(error.contains("no AWS credentials"), "{what}: {error}");
        assert!(error.contains("AWS_PROFILE") && error.contains("--env local"), "{what} says what to do: {error}");
    }
}

#[test]
fn with_the_emulator_down_plan_and_destroy_name_the_endpoint_and_how_to_start_it() {
    let endpoint = format!("http://127.0.0.1:{}", e2e::free_loopback_port());
    for args in [&["plan", "--env", "dev"][..], &["destroy", "--env", "dev", "--yes"]] {
        let what = args.join(" ");
        let output = bare_xtask(args, &[("AWS_ENDPOINT_URL", &endpoint)]);
        let error = short_error(&output, &what);
        assert!(error.contains(&format!("cannot connect to {endpoint}")), "{what}: {error}");
        assert!(error.contains("cargo xtask local up"), "{what} says what to do: {error}");
    }
}

#[test]
fn an_unknown_environment_is_refused_before_anything_is_built() {
    let output = bare_xtask(&["deploy", "--env", "prdo"], &[]);
    let error = short_error(&output, "deploy --env prdo");
    assert!(error.contains("unknown environment `prdo`") && error.contains("did you mean `prod`"), "{error}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("build:"), "nothing was built:\n{stdout}");
}

// ---------------------------------------------------------------------------------------
// Promotion under faults

/// `dev`'s and `staging`'s state bucket on the emulator's account.
const SHARED_STATE_BUCKET: &str = "image-analyzer-state-123456789012-eu-west-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_under_a_fault_mix_and_random_kills_converge() {
    let manifest = e2e::workspace_root().join("target/lambda/manifest.json");
    assert!(manifest.exists(), "no release build at {}; run the tests with `cargo xtask test`", manifest.display());
    let emulator = moto();
    let proxy = FaultProxy::start(emulator.endpoint(), 7, pass()).await.unwrap();
    // A local cloud whose data plane reads the emulator directly and serves dev's and
    // staging's APIs, so that promotion's smoke tests run for real; the deployer talks to
    // the emulator through the proxy.
    let state = temp_dir();
    let cached = e2e::workspace_root().join("target/local/models");
    if cached.exists() {
        std::os::unix::fs::symlink(&cached, state.path().join("models")).unwrap();
    }
    let api_port = e2e::free_loopback_port().to_string();
    let local: [(&str, &str); 2] =
        [("XTASK_LOCAL_STATE_DIR", state.path().to_str().unwrap()), ("XTASK_LOCAL_API_PORT", &api_port)];
    let run = |target: &dyn Fn() -> std::process::Command, args: &[&str]| {
        let mut command = target();
        command.args(args).envs(local);
        command.output().expect("xtask runs")
    };
    let direct = || e2e::xtask(&emulator);
    let through_proxy = || {
        let mut command = e2e::xtask(&proxy);
        command.env(xtask::aws::ATTEMPT_TIMEOUT_ENV, ATTEMPT_TIMEOUT_MS);
        command
    };
    let kind = e2e::EmulatorKind::from_env().name();
    let up = run(&direct, &["local", "up", "--endpoint", emulator.endpoint(), "--emulator", kind]);
    assert!(up.status.success(), "local up: {}", String::from_utf8_lossy(&up.stderr));
    struct Down<F: Fn()>(F);
    impl<F: Fn()> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _down = Down(|| {
        run(&direct, &["local", "down"]);
    });
    let ok = |output: std::process::Output, what: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{what}: {}\n{stderr}", String::from_utf8_lossy(&output.stdout));
    };
    ok(run(&through_proxy, &["deploy", "--env", "dev", "--yes", "--no-build"]), "deploy dev");
    ok(run(&through_proxy, &["smoke-test", "--env", "dev"]), "smoke-test dev");

    let aws = Aws::for_environment(&emulator, "eu-west-1", SHARED_STATE_BUCKET, "staging").await;
    let dev = Aws::for_environment(&emulator, "eu-west-1", SHARED_STATE_BUCKET, "dev").await;
    let promote = ["promote", "--to", "staging", "--yes"];
    let pid = Arc::new(AtomicU32::new(0));
    for seed in 1..=3_u64 {
        proxy.set_rule(fault_mix(15));
        let mut rng = fastrand::Rng::with_seed(seed);
        let kill_after = Duration::from_millis(rng.u64(100..3000));
        let killer_pid = Arc::clone(&pid);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            kill(killer_pid.load(Ordering::SeqCst));
        });
        let mut attempts = Vec::new();
        let last = loop {
            let mut command = through_proxy();
            command.args(promote).envs(local).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let (log, started) = (tempfile::NamedTempFile::new().unwrap().into_temp_path(), Instant::now());
            let child = command.env(xtask::calls::CALL_LOG_ENV, &log).spawn().unwrap();
            pid.store(child.id(), Ordering::SeqCst);
            let promoted = finish(child, &log, started);
            pid.store(0, Ordering::SeqCst);
            attempts.push(promoted.status.code());
            if promoted.status.success() || attempts.len() == 6 {
                break promoted;
            }
        };
        killer.join().unwrap();
        assert!(
            last.status.success(),
            "seed {seed}: promote succeeded under the fault mix: {attempts:?}\n{}\n{}",
            last.stdout,
            last.stderr
        );
        proxy.set_rule(pass());

        // Staging serves dev's smoke-tested code, everything in the emulator is recorded by
        // dev's or staging's state, once, and nothing is left to do.
        let (staging_state, dev_state) = (aws.state().await.unwrap(), dev.state().await.unwrap());
        assert!(staging_state.pending.is_empty(), "seed {seed}: {:?}", staging_state.pending);
        assert_eq!(staging_state.resources.len(), STACK_SIZE, "seed {seed}");
        let inventory = aws.inventory().await;
        let mut recorded_by_both = recorded(&staging_state);
        recorded_by_both.extend(recorded(&dev_state));
        assert_eq!(inventory.set(), recorded_by_both, "seed {seed}: no orphan, nothing missing");
        assert_eq!(inventory.items.len(), inventory.set().len(), "seed {seed}: no duplicate");
        let plan = run(&through_proxy, &["plan", "--env", "staging", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "seed {seed}: {}", String::from_utf8_lossy(&plan.stdout));
        println!("seed {seed}: promote, killed after {kill_after:?}: {} runs, exit codes {attempts:?}", attempts.len());

        // Start the next trial from an empty staging.
        ok(run(&through_proxy, &["destroy", "--env", "staging", "--yes"]), "destroy staging");
    }
}
