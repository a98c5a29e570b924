use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use super::cors::{add_cors_headers, preflight};
use super::serving::{error_response, request_id};
use super::*;
use crate::local::discovery::Cors;
use crate::local::runtime::InvokeError;
use crate::providers::s3::LambdaNotification;

fn function() -> Function {
    Function {
        name: "image-analyzer-local-analyze".into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:image-analyzer-local-analyze".into(),
        region: "us-east-1".into(),
        qualifier: Some("live".into()),
        version: "3".into(),
        code_sha256: "abc=".into(),
        memory_mb: 256,
        timeout: Duration::from_secs(10),
        environment: BTreeMap::from([
            ("UPLOAD_BUCKET".into(), "b".into()),
            (REKOGNITION_ENDPOINT_VAR.into(), "http://stale".into()),
        ]),
        reserved_concurrency: None,
    }
}

#[test]
fn functions_reach_the_emulator_through_the_standard_variables() {
    let endpoints = Endpoints { emulator: "http://127.0.0.1:4566", s3: None, rekognition: None };
    let environment = function_environment(&function(), &endpoints);
    assert_eq!(environment["UPLOAD_BUCKET"], "b");
    assert_eq!(environment["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
    assert_eq!(environment["AWS_ACCESS_KEY_ID"], "test");
    assert_eq!(environment["AWS_SECRET_ACCESS_KEY"], "test");
    assert_eq!(environment["S3_FORCE_PATH_STYLE"], "true");
    assert!(!environment.contains_key(REKOGNITION_ENDPOINT_VAR));
    assert!(!environment.contains_key(S3_ENDPOINT_VAR));
    let endpoints = Endpoints {
        emulator: "http://127.0.0.1:4566",
        s3: Some("http://127.0.0.1:4567"),
        rekognition: Some("http://127.0.0.1:4600"),
    };
    let environment = function_environment(&function(), &endpoints);
    assert_eq!(environment[REKOGNITION_ENDPOINT_VAR], "http://127.0.0.1:4600");
    assert_eq!(environment[S3_ENDPOINT_VAR], "http://127.0.0.1:4567", "presigned URLs point at the S3 endpoint");
}

#[test]
fn invoke_errors_become_api_gateway_answers() {
    let cases = [
        (InvokeError::Timeout { after: Duration::from_secs(1), during_init: false }, 503, "Service Unavailable"),
        (
            InvokeError::Crashed { exit_code: Some(1), signal: None, log_tail: String::new() },
            502,
            "Internal Server Error",
        ),
        (
            InvokeError::InitError {
                error_type: "Runtime.ExitError".into(),
                error_message: "x".into(),
                exit_code: Some(1),
                log_tail: String::new(),
            },
            502,
            "Internal Server Error",
        ),
        (
            InvokeError::FunctionError { error_type: "E".into(), error_message: "m".into() },
            500,
            "Internal Server Error",
        ),
        (InvokeError::Throttled("queue full".into()), 429, "Too Many Requests"),
        (InvokeError::DeadlinePassed { after: Duration::from_secs(30) }, 503, "Service Unavailable"),
        (InvokeError::Unavailable("stopping".into()), 503, "Service Unavailable"),
    ];
    for (error, status, text) in cases {
        let (response, _) = error_response(&error);
        assert_eq!(response.status().as_u16(), status, "{error:?}");
        assert_eq!(response.body().as_ref(), json!({ "message": text }).to_string().as_bytes());
    }
}

#[test]
fn cors_follows_the_api_configuration() {
    let cors = Cors {
        allow_origins: vec!["http://localhost:3000".into()],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["content-type".into()],
        max_age: Some(300),
        ..Cors::default()
    };
    let answer = preflight(&cors, "http://localhost:3000");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(answer.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(answer.headers()["access-control-allow-methods"], "GET,POST");
    assert_eq!(answer.headers()["access-control-max-age"], "300");
    assert!(preflight(&cors, "http://evil.example").headers().get("access-control-allow-origin").is_none());
    let mut response = message(StatusCode::OK, "x");
    response.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
    add_cors_headers(&mut response, &cors, "http://evil.example");
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let any = Cors { allow_origins: vec!["*".into()], ..Cors::default() };
    let mut response = message(StatusCode::OK, "x");
    add_cors_headers(&mut response, &any, "http://a.example");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[test]
fn request_ids_look_like_api_gateways() {
    let id = request_id();
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
}

#[test]
fn requests_that_create_objects_are_told_from_the_rest() {
    let none = HeaderMap::new();
    let presigned = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=c&X-Amz-Signature=s&x-id=PutObject";
    assert_eq!(
        creation(&Method::PUT, "/b/uploads/a%20b.jpg", Some(presigned), &none),
        Some(("b".to_owned(), "uploads/a b.jpg".to_owned(), CreatedBy::Put))
    );
    let mut copy = HeaderMap::new();
    copy.insert("x-amz-copy-source", "b/uploads/x.jpg".parse().unwrap());
    assert_eq!(creation(&Method::PUT, "/b/k.jpg", None, &copy).map(|c| c.2), Some(CreatedBy::Copy));
    assert_eq!(
        creation(&Method::POST, "/b/k.jpg", Some("uploadId=u"), &none).map(|c| c.2),
        Some(CreatedBy::CompleteMultipartUpload)
    );
    for (method, path, query) in [
        (Method::PUT, "/b/k.jpg", Some("tagging")),
        (Method::PUT, "/b/k.jpg", Some("partNumber=1&uploadId=u")),
        (Method::PUT, "/b", None),
        (Method::PUT, "/b/", None),
        (Method::GET, "/b/k.jpg", None),
        (Method::DELETE, "/b/k.jpg", None),
        (Method::POST, "/b/k.jpg", Some("uploads")),
    ] {
        assert_eq!(creation(&method, path, query, &none), None, "{method} {path}?{query:?}");
    }
}

#[test]
fn event_keys_are_url_encoded_as_s3_encodes_them() {
    assert_eq!(encode_key("uploads/0f8e1c2a-3b4d.jpg"), "uploads/0f8e1c2a-3b4d.jpg");
    assert_eq!(encode_key("uploads/a b+c=é.jpg"), "uploads/a+b%2Bc%3D%C3%A9.jpg");
}

#[test]
fn an_s3_event_has_the_shape_s3_sends_to_lambda() {
    let creation = Creation {
        bucket: "bkt".to_owned(),
        key: "uploads/a b.jpg".to_owned(),
        by: CreatedBy::Put,
        size: 68_052,
        etag: Some("\"abc\"".to_owned()),
        source_ip: "127.0.0.1".to_owned(),
        time: std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000),
    };
    let event = s3_event(&creation, "eu-west-1", "analyze-jpg", 255);
    let record = &event["Records"][0];
    assert_eq!(record["eventSource"], "aws:s3");
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    assert_eq!(record["eventTime"], "2026-11-30T00:53:20.000Z");
    assert_eq!(record["awsRegion"], "eu-west-1");
    assert_eq!(record["s3"]["configurationId"], "analyze-jpg");
    assert_eq!(
        record["s3"]["bucket"],
        json!({"name": "bkt", "ownerIdentity": {"principalId": "local"}, "arn": "arn:aws:s3:::bkt"})
    );
    assert_eq!(
        record["s3"]["object"],
        json!({"key": "uploads/a+b.jpg", "size": 68_052, "eTag": "abc", "sequencer": "00000000000000FF"})
    );
}

#[test]
fn notifications_match_their_event_names_and_key_filters() {
    let target = LambdaNotification {
        id: "analyze-jpg".to_owned(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f:live".to_owned(),
        events: vec!["s3:ObjectCreated:*".to_owned()],
        prefix: "uploads/".to_owned(),
        suffix: ".jpg".to_owned(),
    };
    assert!(target.matches("ObjectCreated:Put", "uploads/x.jpg"));
    assert!(target.matches("ObjectCreated:CompleteMultipartUpload", "uploads/x.jpg"));
    assert!(!target.matches("ObjectCreated:Put", "results/x.jpg"));
    assert!(!target.matches("ObjectCreated:Put", "uploads/x.png"));
    assert!(!target.matches("ObjectRemoved:Delete", "uploads/x.jpg"));
    let put_only = LambdaNotification { events: vec!["s3:ObjectCreated:Put".to_owned()], ..target };
    assert!(put_only.matches("ObjectCreated:Put", "uploads/x.jpg"));
    assert!(!put_only.matches("ObjectCreated:Copy", "uploads/x.jpg"));
}
