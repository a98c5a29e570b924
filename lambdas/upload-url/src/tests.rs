use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};

use super::*;

const EVENT: &str = include_str!("../tests/events/get-upload-url.json");
const BUCKET: &str = "image-analyzer-dev-uploads-123456789012";

fn deps(expiry: u64) -> Deps {
    let sdk_config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .build();
    Deps {
        s3: s3_client(&sdk_config, false),
        config: Config { bucket: BUCKET.to_owned(), expiry: Duration::from_secs(expiry) },
    }
}

/// The fixture event, with `edit` applied to its JSON before it becomes a request.
fn event(edit: impl FnOnce(&mut Value)) -> Request {
    let mut value: Value = serde_json::from_str(EVENT).unwrap();
    edit(&mut value);
    lambda_http::request::from_str(&value.to_string()).unwrap()
}

fn with_query(query: &str, value: &str) -> Request {
    event(|event| {
        event["rawQueryString"] = json!(format!("contentType={}", value.replace('/', "%2F")));
        event["queryStringParameters"] = json!({ query: value });
    })
}

async fn call(deps: &Deps, request: Request) -> (StatusCode, Value) {
    let response = handle(deps, request).await.unwrap();
    let status = response.status();
    let Body::Text(text) = response.into_body() else { panic!("expected a JSON text body") };
    (status, serde_json::from_str(&text).unwrap())
}

fn query_of(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

#[tokio::test]
async fn default_request_gets_a_jpeg_upload_url_with_a_uuid_key() {
    let (status, body) = call(&deps(300), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["contentType"], "image/jpeg");
    assert_eq!(body["expiresIn"], 300);
    let key = body["fileKey"].as_str().unwrap();
    let name = key.strip_prefix("uploads/").unwrap().strip_suffix(".jpg").unwrap();
    let uuid = uuid::Uuid::parse_str(name).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["uploadUrl", "fileKey", "expiresIn", "contentType"]
    );
}

#[tokio::test]
async fn presigned_url_targets_the_key_with_expiry_and_signed_content_type() {
    let (_, body) = call(&deps(900), with_query("contentType", "image/png")).await;
    let key = body["fileKey"].as_str().unwrap();
    assert!(key.ends_with(".png"), "{key}");
    assert_eq!(body["contentType"], "image/png");
    assert_eq!(body["expiresIn"], 900);

    let url = url::Url::parse(body["uploadUrl"].as_str().unwrap()).unwrap();
    assert_eq!(url.scheme(), "https");
    assert_eq!(url.host_str(), Some(format!("{BUCKET}.s3.eu-west-1.amazonaws.com").as_str()));
    assert_eq!(url.path(), format!("/{key}"));
    let query = query_of(&url);
    assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    assert_eq!(query["X-Amz-Expires"], "900");
    let signed: Vec<&str> = query["X-Amz-SignedHeaders"].split(';').collect();
    assert!(signed.contains(&"content-type"), "content type must be signed: {signed:?}");
    assert!(signed.contains(&"host"), "{signed:?}");
    assert!(query["X-Amz-Credential"].starts_with("AKIDEXAMPLE/"));
    assert_eq!(query["X-Amz-Signature"].len(), 64);
    assert!(
        !query.keys().any(|name| name.to_ascii_lowercase().starts_with("x-amz-checksum")),
        "a presigned PUT must not pin a checksum: {query:?}"
    );
}

#[tokio::test]
async fn path_style_client_puts_the_bucket_in_the_path() {
    let mut deps = deps(300);
    let sdk_config = deps.s3.config().clone();
    deps.s3 = aws_sdk_s3::Client::from_conf(sdk_config.to_builder().force_path_style(true).build());
    let (_, body) = call(&deps, event(|_| {})).await;
    let url = url::Url::parse(body["uploadUrl"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), format!("/{BUCKET}/{}", body["fileKey"].as_str().unwrap()));
}

#[tokio::test]
async fn content_type_is_matched_case_insensitively() {
    let (status, body) = call(&deps(300), with_query("contentType", "IMAGE/PNG")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["contentType"], "image/png");
}

#[tokio::test]
async fn unsupported_content_type_is_rejected_listing_the_allowed_types() {
    let (status, body) = call(&deps(300), with_query("contentType", "image/gif")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "InvalidRequest");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("image/gif"), "{message}");
    assert!(message.contains("image/jpeg, image/png"), "{message}");
}

#[tokio::test]
async fn each_request_gets_a_fresh_key() {
    let deps = deps(300);
    let (_, first) = call(&deps, event(|_| {})).await;
    let (_, second) = call(&deps, event(|_| {})).await;
    assert_ne!(first["fileKey"], second["fileKey"]);
}

#[tokio::test]
async fn unknown_path_is_a_json_404_and_wrong_method_a_json_405() {
    let deps = deps(300);
    let (status, body) = call(&deps, event(|event| event["rawPath"] = json!("/nope"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "NotFound");

    let (status, body) = call(&deps, event(|event| event["requestContext"]["http"]["method"] = json!("DELETE"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "MethodNotAllowed");
}

#[test]
fn configuration_needs_the_bucket_and_defaults_the_expiry() {
    let error = Config::from_vars(|_| None).unwrap_err();
    assert!(error.to_string().contains("UPLOAD_BUCKET"), "{error}");

    let config = Config::from_vars(|name| (name == BUCKET_ENV).then(|| BUCKET.to_owned())).unwrap();
    assert_eq!(config, Config { bucket: BUCKET.to_owned(), expiry: Duration::from_secs(300) });

    let vars = |name: &str| match name {
        BUCKET_ENV => Some(BUCKET.to_owned()),
        EXPIRY_ENV => Some("7200".to_owned()),
        _ => None,
    };
    assert!(Config::from_vars(vars).unwrap_err().to_string().contains("3600"));
}

#[test]
fn expiry_defaults_to_300_and_is_bounded_by_3600() {
    assert_eq!(parse_expiry("3600"), Ok(3600));
    assert_eq!(parse_expiry(" 60 "), Ok(60));
    for bad in ["0", "3601", "-5", "five minutes", ""] {
        let error = parse_expiry(bad).unwrap_err();
        assert!(error.0.contains(EXPIRY_ENV), "{error}");
    }
}

#[test]
fn signing_time_is_injected_so_urls_are_reproducible() {
    // `upload_url` takes `now` as a parameter: two presignings at the same instant
    // for the same key differ only by the random key.
    let now = UNIX_EPOCH + Duration::from_secs(1_795_573_800);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deps = deps(300);
    let body = runtime.block_on(upload_url(&deps, &event(|_| {}), now)).unwrap();
    let url = url::Url::parse(&body.upload_url).unwrap();
    assert_eq!(query_of(&url)["X-Amz-Date"], "20261125T023000Z");
}
