//! Promotion and rollback, the way a user runs them: the project's own dev, staging and prod
//! environment files (staging in eu-west-1, prod in eu-central-1), all pointed at one local
//! cloud (on moto, or MiniStack with `E2E_EMULATOR=ministack`) whose data plane serves each
//! environment's API, so that every smoke test runs for real against the deployed release
//! Lambdas.
//!
//! Needs the release build (`cargo xtask test` builds it before running the tests) and npm
//! for the face models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use e2e::{echo_bootstrap, free_loopback_port, workspace_root, xtask_bin};
use serde_json::{json, Value};

struct Cloud {
    state_dir: PathBuf,
    endpoint: String,
    api_port: u16,
}

impl Cloud {
    fn run(&self, args: &[&str]) -> Output {
        let bin = xtask_bin();
        assert!(bin.exists(), "{} does not exist; run the tests with `cargo xtask test`", bin.display());
        Command::new(bin)
            .args(args)
            .current_dir(workspace_root())
            .env("XTASK_LOCAL_STATE_DIR", &self.state_dir)
            .env("XTASK_LOCAL_API_PORT", self.api_port.to_string())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("XTASK_ENVIRONMENTS_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("xtask runs")
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "`{}` failed ({}):\n{stdout}\n{stderr}", args.join(" "), output.status);
        stdout
    }

    /// Runs a command that must fail; returns its standard output and error together.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let (stdout, stderr) = texts(&output);
        assert!(!output.status.success(), "`{}` succeeded but must fail:\n{stdout}\n{stderr}", args.join(" "));
        format!("{stdout}\n{stderr}")
    }

    fn history(&self, env: &str) -> Vec<Value> {
        let text = self.ok(&["history", "--env", env, "--json"]);
        serde_json::from_str::<Vec<Value>>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// What each function's `live` alias runs in `env`, as the emulator reports it:
    /// function -> (version, CodeSha256).
    async fn live(&self, env: &str, region: &str) -> BTreeMap<String, (String, String)> {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(api_common::https_client())
            .load()
            .await;
        let lambda = aws_sdk_lambda::Client::new(&config);
        let mut live = BTreeMap::new();
        for function in xtask::functions::FUNCTIONS.iter().map(|function| function.name) {
            let found = lambda
                .get_function_configuration()
                .function_name(format!("image-analyzer-{env}-{function}"))
                .qualifier("live")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{env} {function}:live: {e:?}"));
            live.insert(
                function.to_owned(),
                (found.version().unwrap().to_owned(), found.code_sha256().unwrap().to_owned()),
            );
        }
        live
    }
}

/// `local down` when dropped, so that a failing test leaves no process behind.
impl Drop for Cloud {
    fn drop(&mut self) {
        self.run(&["local", "down"]);
    }
}

fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The release build's hashes, function -> CodeSha256, and the files a build would rewrite.
fn release_build() -> (BTreeMap<String, String>, Vec<PathBuf>) {
    let root = workspace_root();
    let manifest_path = root.join("target/lambda/manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!("no release build at {} ({e}); run the tests with `cargo xtask test`", manifest_path.display())
    });
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let mut hashes = BTreeMap::new();
    let mut files = vec![manifest_path];
    for (function, by_arch) in manifest["functions"].as_object().unwrap() {
        let artifact = &by_arch["x86_64"];
        hashes.insert(function.clone(), artifact["sha256_base64"].as_str().unwrap().to_owned());
        files.push(root.join(artifact["zip_path"].as_str().unwrap()));
    }
    (hashes, files)
}

fn codes(live: &BTreeMap<String, (String, String)>) -> BTreeMap<String, String> {
    live.iter().map(|(function, (_, code))| (function.clone(), code.clone())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_moves_only_smoke_tested_bytes_and_rollback_restores_earlier_versions() {
    let (built, build_files) = release_build();
    let built_at: Vec<SystemTime> = build_files.iter().map(|file| modified(file)).collect();
    let state = tempfile::tempdir().unwrap();
    let cached = workspace_root().join("target/local/models");
    if cached.exists() {
        std::os::unix::fs::symlink(&cached, state.path().join("models")).unwrap();
    }
    let endpoint = format!("http://127.0.0.1:{}", free_loopback_port());
    let cloud =
        Cloud { state_dir: state.path().to_path_buf(), endpoint: endpoint.clone(), api_port: free_loopback_port() };
    // The local cloud on the emulator the run asks for (E2E_EMULATOR).
    cloud.ok(&["local", "up", "--endpoint", &endpoint, "--emulator", e2e::EmulatorKind::from_env().name()]);

    // dev: the release build. Promotion waits for a smoke test of exactly this code.
    cloud.ok(&["deploy", "--env", "dev", "--yes", "--no-build"]);
    let refused = cloud.fails(&["promote", "--to", "staging", "--yes"]);
    assert!(refused.contains("never been smoke-tested"), "{refused}");
    cloud.ok(&["smoke-test", "--env", "dev"]);

    // dev -> staging (promote_from in staging.yaml) -> prod (promote_from: staging, another
    // region): each ends with the very bytes that were built, and nothing is built.
    let to_staging = cloud.ok(&["promote", "--to", "staging", "--yes"]);
    assert!(to_staging.contains("passed its smoke test"), "{to_staging}");
    let to_prod = cloud.ok(&["promote", "--to", "prod", "--yes"]);
    assert!(to_prod.contains("SHA-256 verified"), "the code is copied to eu-central-1's store: {to_prod}");
    assert!(to_prod.contains("passed its smoke test"), "{to_prod}");
    for (env, region) in [("dev", "eu-west-1"), ("staging", "eu-west-1"), ("prod", "eu-central-1")] {
        assert_eq!(codes(&cloud.live(env, region).await), built, "{env} runs the release build's bytes");
    }
    for output in [&to_staging, &to_prod] {
        assert!(!output.contains("Compiling") && !output.contains("cargo lambda"), "no build: {output}");
    }
    let rebuilt: Vec<SystemTime> = build_files.iter().map(|file| modified(file)).collect();
    assert_eq!(rebuilt, built_at, "no build artifact was rewritten");
    let prod = cloud.history("prod");
    assert_eq!(prod.len(), 1);
    assert_eq!(prod[0]["kind"], "promote");
    assert_eq!(prod[0]["from_env"], "staging");
    assert_eq!(prod[0]["smoke_test"]["passed"], true);
    assert_eq!(prod[0]["functions"]["analyze"]["code_sha256"], built["analyze"].as_str());

    // dev gets a broken analyze (it answers, but finds no faces): its smoke test fails, and
    // promotion is refused.
    let broken = tempfile::tempdir().unwrap();
    let zip = xtask::artifact::zip_bootstrap(&echo_bootstrap("broken")).unwrap();
    let (hex, base64) = xtask::artifact::sha256(&zip);
    let zip_path = broken.path().join("analyze.zip");
    std::fs::write(&zip_path, &zip).unwrap();
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("target/lambda/manifest.json")).unwrap())
            .unwrap();
    manifest["functions"]["analyze"]["x86_64"] = json!({
        "zip_path": zip_path.to_str().unwrap(),
        "zipped_bytes": zip.len(),
        "unzipped_bytes": 0,
        "sha256_hex": hex,
        "sha256_base64": base64,
    });
    let manifest_path = broken.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    cloud.ok(&["deploy", "--env", "dev", "--yes", "--manifest", manifest_path.to_str().unwrap()]);
    let dev_broken = cloud.live("dev", "eu-west-1").await;
    assert_eq!(dev_broken["analyze"], ("2".to_owned(), base64.clone()), "a new version went live");
    cloud.fails(&["smoke-test", "--env", "dev"]);
    let refused = cloud.fails(&["promote", "--to", "staging", "--yes"]);
    assert!(refused.contains("refusing to promote") && refused.contains("failed at"), "{refused}");

    // Forced anyway: staging's smoke test fails, and staging goes back to its versions.
    let staging_before = cloud.live("staging", "eu-west-1").await;
    let forced = cloud.fails(&["promote", "--to", "staging", "--yes", "--force"]);
    assert!(forced.contains("WARNING: promoted with --force"), "{forced}");
    assert!(forced.contains("was rolled back to deployment #1"), "{forced}");
    assert_eq!(cloud.live("staging", "eu-west-1").await, staging_before, "staging serves its previous versions");
    let staging = cloud.history("staging");
    let kinds: Vec<(&str, bool)> = staging
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["forced"].as_bool().or(d["automatic"].as_bool()).unwrap()))
        .collect();
    assert_eq!(kinds, [("promote", false), ("promote", true), ("rollback", true)]);
    assert!(staging[1]["warning"].as_str().unwrap().contains("--force"), "{:#}", staging[1]);
    assert_eq!(staging[1]["smoke_test"]["passed"], false);
    assert_eq!(staging[2]["to"], 1);
    cloud.ok(&["smoke-test", "--env", "staging"]);

    // dev rolls back to its last good deployment, without a build, and serves it again.
    let rollback = cloud.ok(&["rollback", "--env", "dev", "--yes"]);
    assert!(rollback.contains("Recorded deployment #3 of `dev` (rollback to #1)"), "{rollback}");
    let dev = cloud.live("dev", "eu-west-1").await;
    assert_eq!(dev["analyze"], ("1".to_owned(), built["analyze"].clone()), "version 1 is live again");
    assert_eq!(codes(&dev), built);
    let history = cloud.history("dev");
    assert_eq!(history.len(), 3);
    assert_eq!(history[2]["kind"], "rollback");
    assert_eq!(history[2]["functions"]["analyze"]["version"], "1");
    cloud.ok(&["smoke-test", "--env", "dev"]);
    assert_eq!(cloud.history("dev")[2]["smoke_test"]["passed"], true, "the smoke test ran against version 1");

    // A deploy after the rollback rolls forward to the build's code, as a plan shows it.
    let plan = cloud.ok(&["plan", "--env", "dev"]);
    assert!(plan.contains("function_version = \"1\" -> (known after apply)"), "{plan}");
}
