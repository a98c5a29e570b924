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
        config: Config {
            bucket: BUCKET.to_owned(),
            expiry: Duration::from_secs(expiry),
            max_upload_bytes: MAX_UPLOAD_BYTES,
            require_content_length: false,
        },
    }
}

/// The fixture event, with `edit` applied to its JSON before it becomes a request.
fn event(edit: impl FnOnce(&mut Value)) -> Request {
    let mut value: Value = serde_json::from_str(EVENT).unwrap();
    edit(&mut value);
    lambda_http::request::from_str(&value.to_string()).unwrap()
}

fn with_query(query: &str, value: &str) -> Request {
    with_params(&[(query, value)])
}

/// The fixture event with exactly these query parameters.
fn with_params(params: &[(&str, &str)]) -> Request {
    let raw: Vec<String> = params.iter().map(|(name, value)| format!("{name}={}", value.replace('/', "%2F"))).collect();
    let map: serde_json::Map<String, Value> =
        params.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
    event(|event| {
        event["rawQueryString"] = json!(raw.join("&"));
        event["queryStringParameters"] = Value::Object(map);
    })
}

fn requiring_length() -> Deps {
    let mut deps = deps(300);
    deps.config.require_content_length = true;
    deps
}

fn signed_headers(body: &Value) -> Vec<String> {
    let url = url::Url::parse(body["uploadUrl"].as_str().unwrap()).unwrap();
    query_of(&url)["X-Amz-SignedHeaders"].split(';').map(str::to_owned).collect()
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
async fn a_url_issued_for_n_bytes_has_the_length_among_its_signed_headers() {
    let (status, body) =
        call(&deps(300), with_params(&[("contentType", "image/png"), ("contentLength", "48213")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["contentLength"], 48213);
    assert_eq!(signed_headers(&body), ["content-length", "content-type", "host"]);
}

#[tokio::test]
async fn without_a_length_the_url_signs_none_and_says_none() {
    let (status, body) = call(&deps(300), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("contentLength").is_none(), "{body}");
    assert_eq!(signed_headers(&body), ["content-type", "host"]);
}

#[tokio::test]
async fn a_length_over_the_limit_is_a_400_that_says_the_limit() {
    let (status, body) = call(&deps(300), with_query("contentLength", "15728641")).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "InvalidRequest"));
    assert_eq!(body["message"], "contentLength 15728641 is over the upload limit of 15728640 bytes (15 MiB)");

    let mut small = deps(300);
    small.config.max_upload_bytes = 1024 * 1024;
    let (status, body) = call(&small, with_query("contentLength", "1048577")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("limit of 1048576 bytes (1 MiB)"), "{body}");
    let (status, _) = call(&small, with_query("contentLength", "1048576")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_length_that_is_not_a_positive_whole_number_is_a_400_that_says_the_limit() {
    for bad in ["0", "-1", "12.5", "1e6", "abc", "", "18446744073709551616"] {
        let (status, body) = call(&deps(300), with_query("contentLength", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("from 1 to 15728640"), "{bad}: {message}");
    }
}

#[tokio::test]
async fn where_the_length_is_required_a_request_without_it_is_told_how_to_call() {
    let deps = requiring_length();
    let (status, body) = call(&deps, with_query("contentType", "image/png")).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "InvalidRequest"));
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("contentLength is required"), "{message}");
    assert!(message.contains("GET /upload-url?contentType=image/png&contentLength="), "{message}");
    let (status, body) = call(&deps, with_params(&[("contentType", "image/png"), ("contentLength", "100")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(signed_headers(&body).contains(&"content-length".to_owned()));
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
    assert_eq!(
        config,
        Config {
            bucket: BUCKET.to_owned(),
            expiry: Duration::from_secs(300),
            max_upload_bytes: 15 * 1024 * 1024,
            require_content_length: false,
        }
    );

    let vars = |name: &str| match name {
        BUCKET_ENV => Some(BUCKET.to_owned()),
        EXPIRY_ENV => Some("7200".to_owned()),
        _ => None,
    };
    assert!(Config::from_vars(vars).unwrap_err().to_string().contains("3600"));
}

#[test]
fn upload_bounds_are_read_from_the_environment_and_checked() {
    let config = |pairs: &[(&str, &str)]| {
        let vars: Vec<(String, String)> =
            pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        Config::from_vars(move |name| {
            (name == BUCKET_ENV)
                .then(|| BUCKET.to_owned())
                .or_else(|| vars.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()))
        })
    };
    let read = config(&[(MAX_UPLOAD_BYTES_ENV, "5242880"), (REQUIRE_CONTENT_LENGTH_ENV, "true")]).unwrap();
    assert_eq!((read.max_upload_bytes, read.require_content_length), (5 * 1024 * 1024, true));
    assert!(!config(&[(REQUIRE_CONTENT_LENGTH_ENV, "FALSE")]).unwrap().require_content_length);
    for (name, bad) in [
        (MAX_UPLOAD_BYTES_ENV, "0"),
        (MAX_UPLOAD_BYTES_ENV, "15728641"),
        (MAX_UPLOAD_BYTES_ENV, "lots"),
        (REQUIRE_CONTENT_LENGTH_ENV, "yes"),
    ] {
        let error = config(&[(name, bad)]).unwrap_err();
        assert!(error.to_string().contains(name), "{error}");
    }
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
