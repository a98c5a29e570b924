use aws_credential_types::Credentials;
use aws_sdk_rekognition::operation::detect_faces::DetectFacesOutput;
use aws_sdk_rekognition::types::error as rk_error;
use aws_sdk_rekognition::types::{BoundingBox, Emotion, EmotionName};
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use base64::Engine as _;
use lambda_http::http::StatusCode;
use serde_json::{json, Value};

use super::*;
use aws_sdk_rekognition::operation::detect_faces::DetectFacesError;
use aws_sdk_rekognition::types::{Attribute, FaceDetail};
use aws_sdk_s3::operation::head_object::HeadObjectError;

const EVENT: &str = include_str!("../tests/events/post-analyze.json");
const BUCKET: &str = "image-analyzer-dev-uploads-123456789012";
const KEY: &str = "uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg";

fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .http_client(create_mock_http_client())
        .build()
}

/// Dependencies whose S3 and Rekognition clients answer from the given mock rules.
fn deps(s3_rules: &[&Rule], rekognition_rules: &[&Rule]) -> Deps {
    let interceptor = |rules: &[&Rule]| {
        rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny), |interceptor, rule| {
            interceptor.with_rule(rule)
        })
    };
    let sdk_config = sdk_config();
    let s3 = aws_sdk_s3::config::Builder::from(&sdk_config).interceptor(interceptor(s3_rules)).build();
    let rekognition =
        aws_sdk_rekognition::config::Builder::from(&sdk_config).interceptor(interceptor(rekognition_rules)).build();
    Deps {
        s3: aws_sdk_s3::Client::from_conf(s3),
        rekognition: aws_sdk_rekognition::Client::from_conf(rekognition),
        config: Config { bucket: BUCKET.to_owned() },
    }
}

fn head_ok(content_type: &'static str, length: i64) -> Rule {
    mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|request| request.bucket() == Some(BUCKET) && request.key() == Some(KEY))
        .then_output(move || HeadObjectOutput::builder().content_type(content_type).content_length(length).build())
}

fn head_jpeg() -> Rule {
    head_ok("image/jpeg", 68_052)
}

fn emotion(name: EmotionName, confidence: f32) -> Emotion {
    Emotion::builder().r#type(name).confidence(confidence).build()
}

fn smiling_face() -> FaceDetail {
    FaceDetail::builder()
        .bounding_box(BoundingBox::builder().width(0.25).height(0.375).left(0.33).top(0.12).build())
        .confidence(99.99912)
        .age_range(aws_sdk_rekognition::types::AgeRange::builder().low(29).high(37).build())
        .smile(aws_sdk_rekognition::types::Smile::builder().value(true).confidence(97.4567).build())
        .emotions(emotion(EmotionName::Calm, 1.234567))
        .emotions(emotion(EmotionName::Happy, 96.78912))
        .emotions(emotion(EmotionName::Surprised, 0.5))
        .build()
}

fn detect(faces: Vec<FaceDetail>) -> Rule {
    mock!(aws_sdk_rekognition::Client::detect_faces)
        .match_requests(|request| {
            let object = request.image().and_then(|image| image.s3_object());
            object.and_then(|o| o.bucket()) == Some(BUCKET)
                && object.and_then(|o| o.name()) == Some(KEY)
                && request.attributes() == [Attribute::All]
        })
        .then_output(move || DetectFacesOutput::builder().set_face_details(Some(faces.clone())).build())
}

fn detect_error(error: fn() -> DetectFacesError) -> Rule {
    mock!(aws_sdk_rekognition::Client::detect_faces).then_error(error)
}

/// The fixture event, with `edit` applied to its JSON before it becomes a request.
fn event(edit: impl FnOnce(&mut Value)) -> Request {
    let mut value: Value = serde_json::from_str(EVENT).unwrap();
    edit(&mut value);
    lambda_http::request::from_str(&value.to_string()).unwrap()
}

fn with_body(body: &str) -> Request {
    event(|event| event["body"] = json!(body))
}

async fn call(deps: &Deps, request: Request) -> (StatusCode, Value, lambda_http::http::HeaderMap) {
    let response = handle(deps, request).await.unwrap();
    let (parts, body) = response.into_parts();
    let Body::Text(text) = body else { panic!("expected a JSON text body") };
    (parts.status, serde_json::from_str(&text).unwrap(), parts.headers)
}

async fn expect_error(deps: &Deps, request: Request, status: StatusCode, code: &str) -> String {
    let (actual, body, _) = call(deps, request).await;
    assert_eq!(actual, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "error bodies are exactly {{error, message}}: {body}");
    body["message"].as_str().unwrap().to_owned()
}

/// Requests that never reach AWS: these mocks fail the test if they are called.
fn no_aws() -> Deps {
    deps(&[], &[])
}

#[tokio::test]
async fn one_face_gives_the_seed_shape_with_the_extensions() {
    let (head, faces) = (head_jpeg(), detect(vec![smiling_face()]));
    let (status, body, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "facesDetected": 1,
            "faces": [{
                "faceNumber": 1,
                "position": {"Width": 0.25, "Height": 0.375, "Left": 0.33, "Top": 0.12},
                "emotions": [
                    {"emotion": "HAPPY", "confidence": 96.79},
                    {"emotion": "CALM", "confidence": 1.23},
                    {"emotion": "SURPRISED", "confidence": 0.5}
                ],
                "dominantEmotion": "HAPPY",
                "ageRange": {"low": 29, "high": 37},
                "smile": {"value": true, "confidence": 97.46},
                "confidence": 100.0
            }]
        })
    );
    assert_eq!(head.num_calls(), 1);
    assert_eq!(faces.num_calls(), 1);
}

#[tokio::test]
async fn faces_are_numbered_in_rekognition_order() {
    let (head, faces) = (head_jpeg(), detect(vec![smiling_face(), FaceDetail::builder().confidence(90.0).build()]));
    let (_, body, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(body["facesDetected"], 2);
    assert_eq!(body["faces"][1]["faceNumber"], 2);
    assert_eq!(body["faces"][1]["emotions"], json!([]));
    assert_eq!(body["faces"][1]["dominantEmotion"], Value::Null);
}

#[tokio::test]
async fn zero_faces_is_a_successful_analysis() {
    let (head, faces) = (head_jpeg(), detect(vec![]));
    let (status, body, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"facesDetected": 0, "faces": []}));
}

#[tokio::test]
async fn base64_encoded_body_is_accepted() {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(r#"{{"fileKey":"{KEY}"}}"#));
    let request = event(|event| {
        event["body"] = json!(encoded);
        event["isBase64Encoded"] = json!(true);
    });
    let (head, faces) = (head_jpeg(), detect(vec![]));
    let (status, _, _) = call(&deps(&[&head], &[&faces]), request).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn png_keys_are_accepted() {
    let key = KEY.replace(".jpg", ".png");
    let head = mock!(aws_sdk_s3::Client::head_object)
        .then_output(|| HeadObjectOutput::builder().content_type("image/png").content_length(10).build());
    let faces = mock!(aws_sdk_rekognition::Client::detect_faces).then_output(|| DetectFacesOutput::builder().build());
    let (status, _, _) = call(&deps(&[&head], &[&faces]), with_body(&json!({ "fileKey": key }).to_string())).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests_that_say_what_is_wrong() {
    let deps = no_aws();
    let cases = [
        ("", "empty"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ("\"uploads/x.jpg\"", "must be a JSON object, not a string"),
        ("{}", "fileKey is missing"),
        (r#"{"fileKey": 42}"#, "fileKey must be a string, not a number"),
        (r#"{"fileKey": null}"#, "fileKey must be a string, not null"),
    ];
    for (body, expected) in cases {
        let request = if body.is_empty() { event(|event| event["body"] = Value::Null) } else { with_body(body) };
        let message = expect_error(&deps, request, StatusCode::BAD_REQUEST, "InvalidRequest").await;
        assert!(message.contains(expected), "body {body:?}: {message}");
    }
}

#[tokio::test]
async fn keys_outside_the_upload_shape_are_rejected() {
    let deps = no_aws();
    let cases = [
        ("uploads/../secrets/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg", "'..'"),
        ("uploads/..%2f0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg", "'..'"),
        ("private/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg", "must start with \"uploads/\""),
        ("/uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg", "must start with"),
        ("uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.gif", "uploads/<uuid>.jpg"),
        ("uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", "uploads/<uuid>.jpg"),
        ("uploads/photo.jpg", "uploads/<uuid>.jpg"),
        ("uploads/sub/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg", "uploads/<uuid>.jpg"),
        ("uploads/0F8E1C2A-3B4D-4E5F-8A6B-7C8D9E0F1A2B.jpg", "uploads/<uuid>.jpg"),
        ("uploads/{0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b}.jpg", "uploads/<uuid>.jpg"),
        ("uploads/", "uploads/<uuid>.jpg"),
    ];
    for (key, expected) in cases {
        let body = json!({ "fileKey": key }).to_string();
        let message = expect_error(&deps, with_body(&body), StatusCode::BAD_REQUEST, "InvalidRequest").await;
        assert!(message.contains(expected), "key {key:?}: {message}");
    }
    let long = format!("uploads/{}.jpg", "a".repeat(200));
    let message = expect_error(
        &deps,
        with_body(&json!({ "fileKey": long }).to_string()),
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    )
    .await;
    assert!(message.contains("at most 128"), "{message}");
}

#[tokio::test]
async fn huge_body_is_rejected_before_parsing() {
    let body = json!({ "fileKey": KEY, "padding": "x".repeat(5 * 1024 * 1024) }).to_string();
    let message = expect_error(&no_aws(), with_body(&body), StatusCode::BAD_REQUEST, "InvalidRequest").await;
    assert!(message.contains("at most 4096"), "{message}");
}

#[tokio::test]
async fn body_that_is_not_utf8_is_rejected() {
    let bytes = [b'{', 0xff, 0xfe, b'}'];
    let request = event(|event| {
        event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        event["isBase64Encoded"] = json!(true);
    });
    let message = expect_error(&no_aws(), request, StatusCode::BAD_REQUEST, "InvalidRequest").await;
    assert!(message.contains("UTF-8"), "{message}");
}

#[tokio::test]
async fn missing_object_is_404_and_rekognition_is_not_called() {
    let head = mock!(aws_sdk_s3::Client::head_object)
        .then_error(|| HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build()));
    let faces = detect(vec![]);
    let deps = deps(&[&head], &[&faces]);
    let message = expect_error(&deps, event(|_| {}), StatusCode::NOT_FOUND, "NotFound").await;
    assert!(message.contains(KEY), "{message}");
    assert_eq!(faces.num_calls(), 0);
}

#[tokio::test]
async fn forbidden_head_without_list_permission_means_missing() {
    let head = mock!(aws_sdk_s3::Client::head_object).sequence().http_status(403, None).build();
    expect_error(&deps(&[&head], &[]), event(|_| {}), StatusCode::NOT_FOUND, "NotFound").await;
}

#[tokio::test]
async fn object_over_15_mb_is_413() {
    let (head, faces) = (head_ok("image/jpeg", MAX_IMAGE_BYTES + 1), detect(vec![]));
    let message =
        expect_error(&deps(&[&head], &[&faces]), event(|_| {}), StatusCode::PAYLOAD_TOO_LARGE, "ImageTooLarge").await;
    assert!(message.contains("15 MB"), "{message}");
    assert_eq!(faces.num_calls(), 0);
}

#[tokio::test]
async fn object_of_exactly_15_mb_is_analyzed() {
    let (head, faces) = (head_ok("image/jpeg", MAX_IMAGE_BYTES), detect(vec![]));
    let (status, _, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn object_stored_as_another_type_is_415() {
    for content_type in ["text/plain", "image/gif", "application/octet-stream"] {
        let (head, faces) = (head_ok(content_type, 100), detect(vec![]));
        let message = expect_error(
            &deps(&[&head], &[&faces]),
            event(|_| {}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
        )
        .await;
        assert!(message.contains(content_type), "{message}");
    }
}

#[tokio::test]
async fn stored_content_type_parameters_are_ignored() {
    let (head, faces) = (head_ok("image/jpeg; charset=binary", 100), detect(vec![]));
    let (status, _, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn head_object_failure_is_an_opaque_502() {
    let head = mock!(aws_sdk_s3::Client::head_object).sequence().http_status(500, None).times(4).build();
    let message = expect_error(&deps(&[&head], &[]), event(|_| {}), StatusCode::BAD_GATEWAY, "UpstreamError").await;
    assert!(!message.contains("500"), "{message}");
}

/// A Rekognition error, and the status and error code the API answers it with.
type ErrorCase = (fn() -> DetectFacesError, StatusCode, &'static str);

#[tokio::test]
async fn rekognition_errors_map_to_http_statuses() {
    let cases: [ErrorCase; 7] = [
        (
            || DetectFacesError::InvalidImageFormatException(rk_error::InvalidImageFormatException::builder().build()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidImageFormat",
        ),
        (
            || DetectFacesError::ImageTooLargeException(rk_error::ImageTooLargeException::builder().build()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "ImageTooLarge",
        ),
        (
            || DetectFacesError::InvalidS3ObjectException(rk_error::InvalidS3ObjectException::builder().build()),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
        (
            || DetectFacesError::InvalidParameterException(rk_error::InvalidParameterException::builder().build()),
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
        ),
        (
            || DetectFacesError::ThrottlingException(rk_error::ThrottlingException::builder().build()),
            StatusCode::SERVICE_UNAVAILABLE,
            "Throttled",
        ),
        (
            || {
                DetectFacesError::ProvisionedThroughputExceededException(
                    rk_error::ProvisionedThroughputExceededException::builder().build(),
                )
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "Throttled",
        ),
        (
            || {
                DetectFacesError::AccessDeniedException(
                    rk_error::AccessDeniedException::builder()
                        .message("User arn:aws:sts::123:assumed-role/x is not authorized")
                        .build(),
                )
            },
            StatusCode::BAD_GATEWAY,
            "UpstreamError",
        ),
    ];
    for (error, status, code) in cases {
        let (head, faces) = (head_jpeg(), detect_error(error));
        let (actual, body, headers) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
        assert_eq!((actual, body["error"].as_str().unwrap()), (status, code), "{body}");
        assert!(!body["message"].as_str().unwrap().contains("arn:aws"), "internals leaked: {body}");
        let retry_after = headers.get("retry-after").map(|value| value.to_str().unwrap().to_owned());
        let expected = (status == StatusCode::SERVICE_UNAVAILABLE).then(|| RETRY_AFTER_SECONDS.to_string());
        assert_eq!(retry_after, expected, "{code}");
    }
}

#[tokio::test]
async fn unknown_path_is_a_json_404_and_wrong_method_a_json_405() {
    let deps = no_aws();
    expect_error(&deps, event(|event| event["rawPath"] = json!("/analyse")), StatusCode::NOT_FOUND, "NotFound").await;
    let request = event(|event| event["requestContext"]["http"]["method"] = json!("GET"));
    expect_error(&deps, request, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
}

#[test]
fn configuration_needs_the_bucket() {
    let error = Config::from_vars(|_| None).unwrap_err();
    assert!(error.to_string().contains("UPLOAD_BUCKET"), "{error}");
    let config = Config::from_vars(|name| (name == BUCKET_ENV).then(|| BUCKET.to_owned())).unwrap();
    assert_eq!(config.bucket, BUCKET);
}
