use super::diagnostics::function_names;
use super::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments")
}

/// A valid file; tests replace one line to break it.
const VALID: &str = "\
project: image-analyzer
environment: dev
region: eu-west-1
state:
  bucket: image-analyzer-state-{account_id}
  prefix: image-analyzer
functions:
  analyze:
    memory_mb: 512
    timeout_seconds: 10
log_retention_days: 14
cors_allowed_origins: [\"http://localhost:3000\"]
uploads_expire_after_days: 1
throttling:
  rate_limit: 50.0
  burst_limit: 100
tags: {team: imaging}
protect: false
";

fn parse(text: &str) -> Result<Environment, ConfigError> {
    Environment::parse(Path::new("environments/dev.yaml"), text)
}

fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "fixture has no `{from}`");
    VALID.replacen(from, to, 1)
}

fn error(text: &str) -> ConfigError {
    parse(text).expect_err("the file should be rejected")
}

fn at(err: &ConfigError) -> (u32, u32) {
    let l = err.location().expect("a located error");
    assert_eq!(l.file, Path::new("environments/dev.yaml"));
    (l.line, l.column)
}

#[test]
fn every_file_in_environments_loads() {
    let names = Environment::available(&dir());
    assert_eq!(names, ["dev", "local", "prod", "staging"]);
    for name in &names {
        let env = Environment::load(&dir(), name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&env.name, name);
        assert_eq!(env.project, "image-analyzer");
        let functions: Vec<&str> = env.functions.keys().map(String::as_str).collect();
        let mut expected = function_names();
        expected.sort_unstable();
        assert_eq!(functions, expected);
    }
}

#[test]
fn the_environments_differ_where_they_should() {
    let prod = Environment::load(&dir(), "prod").unwrap();
    assert!(prod.protect);
    assert_eq!(prod.region, "eu-central-1");
    assert_eq!(prod.promote_from.as_deref(), Some("staging"));
    assert_eq!(prod.functions["analyze"].memory_mb, 512);
    assert_eq!(prod.log_retention_days, 90);
    assert_eq!(prod.state_key(), "image-analyzer/prod/state.json");
    assert_eq!(prod.state.bucket_for_account("123456789012"), "image-analyzer-state-123456789012-eu-central-1");
    let local = Environment::load(&dir(), "local").unwrap();
    assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
    assert_eq!(local.local, Some(LocalSettings { api_port: 3000, max_instances: 4, emulator: EmulatorKind::Moto }));
    assert!(local.cors_allowed_origins.is_empty());
    let staging = Environment::load(&dir(), "staging").unwrap();
    assert_eq!(staging.promote_from.as_deref(), Some("dev"));
    assert!(!staging.protect);
    // Uploads: prod and its rehearsal sign every upload's length; local and dev keep the
    // seed's clients (which send none) working.
    for (env, required) in [(&prod, true), (&staging, true), (&local, false)] {
        assert_eq!(env.require_content_length, required, "{}", env.name);
        assert_eq!(env.max_upload_bytes, 15 * 1024 * 1024, "{}", env.name);
    }
    assert!(!Environment::load(&dir(), "dev").unwrap().require_content_length);
    // Denial of wallet: prod bounds each function's instances.
    for function in FUNCTIONS {
        assert!(prod.functions[function.name].reserved_concurrency.is_some(), "{}", function.name);
    }
}

#[test]
fn upload_bounds_and_reserved_concurrency_are_read_from_the_file() {
    let text = with("protect: false", "protect: false\nmax_upload_bytes: 5242880\nrequire_content_length: true");
    let text = text.replace("    timeout_seconds: 10\n", "    timeout_seconds: 10\n    reserved_concurrency: 20\n");
    let env = parse(&text).unwrap();
    assert_eq!((env.max_upload_bytes, env.require_content_length), (5 * 1024 * 1024, true));
    assert_eq!(env.functions["analyze"].reserved_concurrency, Some(20));
    assert_eq!(env.functions["upload-url"].reserved_concurrency, None);
}

#[test]
fn omitted_functions_and_fields_get_their_defaults() {
    let text = with(
        "functions:\n  analyze:\n    memory_mb: 512\n    timeout_seconds: 10\n",
        "functions:\n  analyze:\n    memory_mb: 1024\n",
    );
    let env = parse(&text).unwrap();
    assert_eq!(
        env.functions["analyze"],
        FunctionSettings {
            memory_mb: 1024,
            timeout_seconds: 10,
            architecture: Arch::X86_64,
            reserved_concurrency: None
        }
    );
    assert_eq!(env.functions["upload-url"], default_settings(&FUNCTIONS[0]));
    assert_eq!(env.functions["upload-url"].timeout_seconds, 5);
    assert_eq!(env.upload_url_expiry_seconds, 300);

    let without = with("functions:\n  analyze:\n    memory_mb: 512\n    timeout_seconds: 10\n", "");
    let env = parse(&without).unwrap();
    assert_eq!(env.functions["analyze"].timeout_seconds, 10);
    assert_eq!(env.functions["analyze"].memory_mb, 256);
    assert_eq!(env.functions.len(), FUNCTIONS.len());
    assert!(env.tags.is_empty() || env.tags.contains_key("team"));
}

#[test]
fn every_function_has_explicit_defaults() {
    for f in FUNCTIONS {
        let defaults = default_settings(f);
        assert_eq!((defaults.memory_mb, defaults.timeout_seconds), (f.default_memory_mb, f.default_timeout_seconds));
    }
}

#[test]
fn architecture_accepts_lambda_names() {
    let text = with("    timeout_seconds: 10\n", "    timeout_seconds: 10\n    architecture: arm64\n");
    assert_eq!(parse(&text).unwrap().functions["analyze"].architecture, Arch::Arm64);
}

#[test]
fn mistyped_key_suggests_the_nearest_field() {
    let err = error(&with("    memory_mb: 512", "    memroy_mb: 512"));
    assert_eq!(
        err.to_string(),
        "environments/dev.yaml:9:5: functions.analyze.memroy_mb: unknown field `memroy_mb` (did you mean `memory_mb`?)"
    );
    assert_eq!(at(&err), (9, 5));
    assert_eq!(err.field(), Some("functions.analyze.memroy_mb"));
    assert_eq!(err.suggestion(), Some("memory_mb"));
}

#[test]
fn unknown_top_level_key_without_near_match_lists_the_fields() {
    let err = error(&with("protect: false\n", "protect: false\nzzz: 1\n"));
    assert_eq!(at(&err), (19, 1));
    assert_eq!(err.suggestion(), None);
    assert!(
        err.to_string().starts_with(
            "environments/dev.yaml:19:1: zzz: unknown field `zzz`; expected one of `project`, `environment`,"
        ),
        "{err}"
    );
}

#[test]
fn unknown_function_suggests_the_nearest_function() {
    let err = error(&with("  analyze:", "  analyse:"));
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:8:3: functions.analyse: unknown function `analyse`; the functions are `upload-url`, `analyze`, `web` (did you mean `analyze`?)"
        );
    assert_eq!(at(&err), (8, 3));
    assert_eq!(err.suggestion(), Some("analyze"));
}

#[test]
fn wrong_type_names_the_expected_type() {
    let err = error(&with("timeout_seconds: 10", "timeout_seconds: ten"));
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:10:22: functions.analyze.timeout_seconds: invalid type: string \"ten\", expected an integer from 1 to 900"
        );
    assert!(matches!(err, ConfigError::WrongType { .. }));
}

#[test]
fn missing_required_field_points_at_its_mapping() {
    let err = error(&with("  prefix: image-analyzer\n", ""));
    assert_eq!(err.to_string(), "environments/dev.yaml:5:3: state.prefix: missing required field");
    assert!(matches!(err, ConfigError::MissingField { .. }));
}

#[test]
fn out_of_range_memory_is_rejected_at_the_value() {
    let err = error(&with("memory_mb: 512", "memory_mb: 64"));
    assert_eq!(
        err.to_string(),
        "environments/dev.yaml:9:16: functions.analyze.memory_mb: must be between 128 and 10240, got 64"
    );
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
}

#[test]
fn retention_not_accepted_by_cloudwatch_names_the_nearest() {
    let err = error(&with("log_retention_days: 14", "log_retention_days: 10"));
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:11:21: log_retention_days: CloudWatch Logs does not accept 10 days (nearest: 7 or 14); it accepts 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"
        );
}

#[test]
fn environment_must_match_the_file_stem() {
    let err = error(&with("environment: dev", "environment: prod"));
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:2:14: environment: `prod` does not match the file name `dev.yaml`; an environment's name is its file's name"
        );
}

#[test]
fn syntax_error_is_located() {
    let err = error(&with("region: eu-west-1", "region: [eu-west-1"));
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:4:6: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 3 column 9"
        );
    assert!(matches!(err, ConfigError::Syntax { .. }));
}

#[test]
fn syntax_error_late_in_the_file_is_not_reported_as_a_missing_field() {
    let err = error(&with("protect: false\n", "protect: false\n  : bad: [\n"));
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn empty_file_says_so() {
    let err = error("# nothing yet\n");
    assert_eq!(
        err.to_string(),
        "environments/dev.yaml:1:1: the file holds no settings; expected a mapping that starts with `project:`"
    );
}

#[test]
fn repeated_key_is_rejected_at_the_repeat() {
    let err = error(&with("  prefix: image-analyzer\n", "  prefix: image-analyzer\n  prefix: other\n"));
    assert_eq!(err.to_string(), "environments/dev.yaml:7:3: state.prefix: `prefix` is set more than once");
    let err = error(&with("{team: imaging}", "{team: imaging, team: vision}"));
    assert_eq!(err.to_string(), "environments/dev.yaml:17:23: tags.team: `team` is set more than once");
}

#[test]
fn second_yaml_document_is_rejected() {
    let err = error(&format!("{VALID}---\n{VALID}"));
    assert_eq!(
        err.to_string(),
        "environments/dev.yaml:19:1: invalid YAML: a second YAML document starts here; an environment file holds one"
    );
}

#[test]
fn unknown_environment_lists_the_available_ones() {
    let err = Environment::load(&dir(), "prdo").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unknown environment `prdo`; {}/ has: dev, local, prod, staging (did you mean `prod`?)",
            dir().display()
        )
    );
    assert_eq!(err.suggestion(), Some("prod"));
}

#[test]
fn unknown_architecture_suggests_the_nearest() {
    let text = with("    timeout_seconds: 10\n", "    timeout_seconds: 10\n    architecture: arm\n");
    let err = error(&text);
    assert_eq!(
            err.to_string(),
            "environments/dev.yaml:11:19: functions.analyze.architecture: unknown value `arm`; expected `x86_64`, `arm64` (did you mean `arm64`?)"
        );
}

#[test]
fn invalid_values_are_rejected_with_their_field() {
    let cases = [
        ("project: image-analyzer", "project: Image", "project", "contains `I`"),
        ("region: eu-west-1", "region: europe", "region", "not an AWS region"),
        (
            "bucket: image-analyzer-state-{account_id}",
            "bucket: image_analyzer",
            "state.bucket",
            "not a valid S3 bucket name",
        ),
        ("bucket: image-analyzer-state-{account_id}", "bucket: state-{account}", "state.bucket", "only placeholder"),
        ("prefix: image-analyzer", "prefix: /state/", "state.prefix", "must not start"),
        ("[\"http://localhost:3000\"]", "[\"http://localhost:3000/\"]", "cors_allowed_origins[0]", "no trailing `/`"),
        ("[\"http://localhost:3000\"]", "[\"https://app.example.com:443\"]", "cors_allowed_origins[0]", "drop `:443`"),
        ("[\"http://localhost:3000\"]", "[\"http://localhost:3000\", \"*\"]", "cors_allowed_origins[1]", "only entry"),
        (
            "[\"http://localhost:3000\"]",
            "[\"http://localhost:3000\", \"http://localhost:3000\"]",
            "cors_allowed_origins[1]",
            "more than once",
        ),
        (
            "[\"http://localhost:3000\"]",
            "[\"*\"]",
            "cors_allowed_origins",
            "`*` is only for an environment with a `local:`",
        ),
        ("rate_limit: 50.0", "rate_limit: 0", "throttling.rate_limit", "greater than 0"),
        ("burst_limit: 100", "burst_limit: 0", "throttling.burst_limit", "at least 1"),
        ("uploads_expire_after_days: 1", "uploads_expire_after_days: 0", "uploads_expire_after_days", "at least 1"),
        ("{team: imaging}", "{aws:team: imaging}", "tags.aws:team", "reserved"),
        ("{team: imaging}", "{team: imaging, team: x}", "tags.team", "more than once"),
        ("{team: imaging}", "{team: \"a|b\"}", "tags.team", "contains `|`"),
        ("protect: false", "protect: false\nlocal: {api_port: 80}", "local.api_port", "between 1024 and 65535"),
        (
            "protect: false",
            "protect: false\nlocal: {api_port: 3000, max_instances: 0}",
            "local.max_instances",
            "between 1 and 1000",
        ),
        (
            "protect: false",
            "protect: false\nlocal: {api_port: 3000, emulator: localstack}",
            "local.emulator",
            "expected `moto`, `ministack`",
        ),
        ("protect: false", "protect: false\nendpoint: ftp://x", "endpoint", "scheme"),
        ("protect: false", "protect: false\npromote_from: dev", "promote_from", "itself"),
        (
            "protect: false",
            "protect: false\nupload_url_expiry_seconds: 7200",
            "upload_url_expiry_seconds",
            "between 1 and 3600",
        ),
        ("protect: false", "protect: false\nmax_upload_bytes: 20000000", "max_upload_bytes", "between 1 and 15728640"),
        ("protect: false", "protect: false\nrequire_content_length: yes please", "require_content_length", "boolean"),
        (
            "    timeout_seconds: 10\n",
            "    timeout_seconds: 10\n    reserved_concurrency: -1\n",
            "functions.analyze.reserved_concurrency",
            "between 0 and 10000",
        ),
    ];
    for (from, to, field, needle) in cases {
        let err = error(&with(from, to));
        assert_eq!(err.field(), Some(field), "{to}: {err}");
        assert!(err.to_string().contains(needle), "{to}: {err}");
        assert!(err.location().is_some());
    }
}

#[test]
fn any_origin_is_allowed_on_the_local_cloud_only() {
    let text = with("[\"http://localhost:3000\"]", "[\"*\"]")
        .replace("protect: false", "protect: false\nlocal: {api_port: 3000}");
    assert_eq!(parse(&text).unwrap().cors_allowed_origins, ["*"]);
}

#[test]
fn promote_from_must_name_an_existing_environment() {
    let tmp = std::env::temp_dir().join(format!("xtask-config-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("dev.yaml"), with("protect: false", "protect: false\npromote_from: stagin")).unwrap();
    fs::write(tmp.join("staging.yaml"), "").unwrap();
    let err = Environment::load(&tmp, "dev").unwrap_err();
    let _ = fs::remove_dir_all(&tmp);
    assert_eq!(err.field(), Some("promote_from"));
    assert_eq!(err.location().map(|l| (l.line, l.column)), Some((19, 15)));
    assert!(err.to_string().ends_with("has: dev, staging (did you mean `staging`?)"), "{err}");
}

#[test]
fn suggestions_need_a_near_match() {
    assert_eq!(suggest("timeout", ["timeout_seconds", "memory_mb"]), Some("timeout_seconds".into()));
    assert_eq!(suggest("prdo", ["dev", "local", "prod", "staging"]), Some("prod".into()));
    assert_eq!(suggest("qa", ["dev", "local", "prod", "staging"]), None);
    assert_eq!(suggest("xyz", ["upload-url", "analyze"]), None);
}
