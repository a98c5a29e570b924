use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::cors::{add_cors_headers, preflight};
use super::serving::{error_response, request_id};
use super::*;
use crate::local::discovery::Cors;
use crate::local::runtime::InvokeError;

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
    let environment = function_environment(&function(), "http://127.0.0.1:4566", None);
    assert_eq!(environment["UPLOAD_BUCKET"], "b");
    assert_eq!(environment["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
    assert_eq!(environment["AWS_ACCESS_KEY_ID"], "test");
    assert_eq!(environment["AWS_SECRET_ACCESS_KEY"], "test");
    assert_eq!(environment["S3_FORCE_PATH_STYLE"], "true");
    assert!(!environment.contains_key(REKOGNITION_ENDPOINT_VAR));
    let environment = function_environment(&function(), "http://127.0.0.1:4566", Some("http://127.0.0.1:4600"));
    assert_eq!(environment[REKOGNITION_ENDPOINT_VAR], "http://127.0.0.1:4600");
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
