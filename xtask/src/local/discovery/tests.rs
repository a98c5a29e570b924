use std::collections::BTreeMap;

use super::*;

fn route(key: &str) -> Route {
    Route { id: key.to_owned(), key: key.to_owned(), parsed: parse_route_key(key).unwrap(), integration_id: None }
}

fn api(keys: &[&str], stages: &[&str]) -> Api {
    Api {
        id: "abc123".into(),
        name: "image-analyzer-local-api".into(),
        region: "us-east-1".into(),
        tags: BTreeMap::from([("project".into(), "image-analyzer".into()), ("environment".into(), "local".into())]),
        routes: keys.iter().map(|key| route(key)).collect(),
        integrations: BTreeMap::new(),
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        throttling: BTreeMap::new(),
        cors: None,
    }
}

fn key_of(api: &Api, method: &str, path: &str) -> Option<String> {
    api.route(method, path).map(|matched| matched.route.key.clone())
}

#[test]
fn exact_routes_then_any_then_default() {
    let api = api(&["GET /upload-url", "POST /analyze", "ANY /analyze", "$default"], &["$default"]);
    assert_eq!(key_of(&api, "GET", "/upload-url").as_deref(), Some("GET /upload-url"));
    assert_eq!(key_of(&api, "POST", "/analyze").as_deref(), Some("POST /analyze"));
    assert_eq!(key_of(&api, "PUT", "/analyze").as_deref(), Some("ANY /analyze"));
    assert_eq!(key_of(&api, "POST", "/upload-url").as_deref(), Some("$default"));
    assert_eq!(key_of(&api, "GET", "/nothing").as_deref(), Some("$default"));
}

#[test]
fn without_a_default_route_unmatched_requests_are_not_found() {
    let api = api(&["GET /upload-url", "POST /analyze"], &["$default"]);
    assert_eq!(key_of(&api, "POST", "/upload-url"), None);
    assert_eq!(key_of(&api, "GET", "/upload-url/"), None);
    assert_eq!(key_of(&api, "GET", "/"), None);
    assert_eq!(key_of(&api, "get", "/upload-url"), None, "methods are case-sensitive");
}

#[test]
fn literals_beat_variables_beat_greedy_and_parameters_are_extracted() {
    let api = api(&["GET /pets/dog", "GET /pets/{id}", "ANY /pets/{proxy+}", "GET /{proxy+}"], &["$default"]);
    assert_eq!(key_of(&api, "GET", "/pets/dog").as_deref(), Some("GET /pets/dog"));
    let matched = api.route("GET", "/pets/cat%20x").unwrap();
    assert_eq!(matched.route.key, "GET /pets/{id}");
    assert_eq!(matched.path_parameters["id"], "cat x");
    let matched = api.route("GET", "/pets/cat/toys").unwrap();
    assert_eq!(matched.route.key, "ANY /pets/{proxy+}");
    assert_eq!(matched.path_parameters["proxy"], "cat/toys");
    assert_eq!(key_of(&api, "GET", "/other/x").as_deref(), Some("GET /{proxy+}"));
    assert_eq!(key_of(&api, "DELETE", "/other"), None);
}

#[test]
fn named_stages_prefix_the_path_and_no_stage_serves_nothing() {
    let staged = api(&["GET /upload-url"], &["prod"]);
    let matched = staged.route("GET", "/prod/upload-url").unwrap();
    assert_eq!((matched.route.key.as_str(), matched.stage.as_str()), ("GET /upload-url", "prod"));
    assert_eq!(key_of(&staged, "GET", "/upload-url"), None);
    assert_eq!(key_of(&api(&["GET /upload-url"], &[]), "GET", "/upload-url"), None);
}

#[test]
fn route_keys_parse_strictly() {
    assert_eq!(parse_route_key("$default"), Some(RouteKey::Default));
    assert_eq!(parse_route_key("GET"), None);
    assert_eq!(parse_route_key("GET upload"), None);
    assert_eq!(parse_route_key("GET /{proxy+}/x"), None);
    assert_eq!(parse_route_key("GET /"), Some(RouteKey::Route { method: "GET".into(), segments: vec![] }));
}

#[test]
fn integration_uris_name_functions() {
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:image-analyzer-local-analyze";
    assert_eq!(function_of_uri(arn), Some(("us-east-1".into(), "image-analyzer-local-analyze".into(), None)));
    let invocation = format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}:live/invocations");
    assert_eq!(
        function_of_uri(&invocation),
        Some(("us-east-1".into(), "image-analyzer-local-analyze".into(), Some("live".into())))
    );
    assert_eq!(function_of_uri("https://example.com"), None);
    assert_eq!(account_of_arn(arn), Some("123456789012"));
}

#[test]
fn a_versions_code_is_looked_for_beside_a_content_addressed_key() {
    let old = format!("image-analyzer/artifacts/{}.zip", "a".repeat(64));
    let expected = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xbb_u8; 32]);
    assert_eq!(
        content_addressed_sibling(&old, &expected),
        Some(format!("image-analyzer/artifacts/{}.zip", "bb".repeat(32)))
    );
    assert_eq!(content_addressed_sibling("function-1234", &expected), None, "not content-addressed");
    let same = format!("{}.zip", "bb".repeat(32));
    assert_eq!(content_addressed_sibling(&same, &expected), None, "already the right key");
}

#[test]
fn moto_code_locations_carry_the_s3_key() {
    assert_eq!(
        moto_code_key("https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/image-analyzer/artifacts/ab.zip")
            .as_deref(),
        Some("image-analyzer/artifacts/ab.zip")
    );
    assert_eq!(moto_code_key("https://prod-04-2014-tasks.s3.us-east-1.amazonaws.com/snapshots/x?X-Amz=1"), None);
    assert_eq!(moto_code_key("http://127.0.0.1:4566/x"), None);
}

#[test]
fn environments_come_from_tags_then_names() {
    let mut tagged = api(&[], &[]);
    assert_eq!(tagged.environment().as_deref(), Some("local"));
    assert!(tagged.is_environment("image-analyzer", "local"));
    assert!(!tagged.is_environment("image-analyzer", "dev"));
    tagged.tags.remove("environment");
    assert_eq!(tagged.environment().as_deref(), Some("local"));
    tagged.tags.clear();
    assert_eq!(tagged.environment(), None);
}

#[test]
fn a_route_of_its_own_overrides_the_stage_default_limit() {
    let throttling = Throttling {
        default: Some(Limit { rate: 50.0, burst: 100 }),
        routes: BTreeMap::from([("POST /analyze".to_owned(), Limit { rate: 5.0, burst: 10 })]),
    };
    assert_eq!(throttling.limit_for("POST /analyze"), Some(Limit { rate: 5.0, burst: 10 }));
    assert_eq!(throttling.limit_for("GET /upload-url"), Some(Limit { rate: 50.0, burst: 100 }));
    assert_eq!(Throttling::default().limit_for("GET /upload-url"), None);
}
