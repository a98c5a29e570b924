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
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

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

/// The time results are stamped with in these tests, and its RFC 3339 form.
const NOW_SECONDS: u64 = 1_796_000_000;
const ANALYZED_AT: &str = "2026-11-30T00:53:20Z";

/// Dependencies whose S3 and Rekognition clients answer from the given mock rules. Unless a
/// rule says otherwise, no result is kept and keeping one succeeds.
fn deps(s3_rules: &[&Rule], rekognition_rules: &[&Rule]) -> Deps {
    let (absent, keeps) = (no_result(), Puts::default().rule());
    let s3_rules: Vec<&Rule> = s3_rules.iter().copied().chain([&absent, &keeps]).collect();
    exact_deps(&s3_rules, rekognition_rules)
}

/// Dependencies whose clients answer from exactly these rules; any other call fails.
fn exact_deps(s3_rules: &[&Rule], rekognition_rules: &[&Rule]) -> Deps {
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
        clock: || UNIX_EPOCH + std::time::Duration::from_secs(NOW_SECONDS),
    }
}

fn is_result_key(key: Option<&str>) -> bool {
    key.is_some_and(|key| key.starts_with("results/"))
}

/// GetObject of a result: none kept.
fn no_result() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|request| is_result_key(request.key()))
        .then_error(|| GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build()))
}

/// GetObject of a result: `document` is kept.
fn kept(document: Value) -> Rule {
    mock!(aws_sdk_s3::Client::get_object).match_requests(|request| is_result_key(request.key())).then_output(
        move || {
            let bytes = document.to_string().into_bytes();
            GetObjectOutput::builder().content_length(bytes.len() as i64).body(ByteStream::from(bytes)).build()
        },
    )
}

/// A result written with PutObject: key, `If-None-Match`, and the document.
type Put = (String, Option<String>, Value);

/// The results written with PutObject.
#[derive(Clone, Default)]
struct Puts(Arc<Mutex<Vec<Put>>>);

impl Puts {
    fn rule(&self) -> Rule {
        let puts = self.clone();
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |request| {
                let body = request.body().bytes().map(|bytes| serde_json::from_slice(bytes).unwrap());
                puts.0.lock().unwrap().push((
                    request.key().unwrap_or_default().to_owned(),
                    request.if_none_match().map(str::to_owned),
                    body.unwrap_or(Value::Null),
                ));
                is_result_key(request.key())
            })
            .then_output(|| PutObjectOutput::builder().build())
    }

    fn taken(&self) -> Vec<Put> {
        self.0.lock().unwrap().clone()
    }
}

/// `analysis` as kept and answered: with its key, status and time.
fn done(analysis: Value) -> Value {
    let mut document = analysis;
    document["fileKey"] = json!(KEY);
    document["status"] = json!("done");
    document["analyzedAt"] = json!(ANALYZED_AT);
    document
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
    exact_deps(&[], &[])
}

#[tokio::test]
async fn one_face_gives_the_seed_shape_with_the_extensions() {
    let (head, faces) = (head_jpeg(), detect(vec![smiling_face()]));
    let (status, body, _) = call(&deps(&[&head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        done(json!({
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
        }))
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
    assert_eq!(body, done(json!({"facesDetected": 0, "faces": []})));
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

#[tokio::test]
async fn s3_asking_to_slow_down_is_a_503_with_retry_after_like_rekognitions_throttling() {
    let head = mock!(aws_sdk_s3::Client::head_object).sequence().http_status(503, None).times(4).build();
    let (status, body, headers) = call(&deps(&[&head], &[]), event(|_| {})).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::SERVICE_UNAVAILABLE, "Throttled"), "{body}");
    assert_eq!(body["message"], "storage is busy; retry shortly");
    assert_eq!(headers["retry-after"], RETRY_AFTER_SECONDS.to_string());
}

#[tokio::test]
async fn an_image_refused_by_rekognition_is_described_in_rekognitions_words() {
    let said = "Request has invalid parameters: the image is 60x40 pixels; the minimum is 80 pixels";
    let faces = detect_error(|| {
        DetectFacesError::InvalidParameterException(
            rk_error::InvalidParameterException::builder()
                .message("Request has invalid parameters: the image is 60x40 pixels; the minimum is 80 pixels")
                .build(),
        )
    });
    let message =
        expect_error(&deps(&[&head_jpeg()], &[&faces]), event(|_| {}), StatusCode::BAD_REQUEST, "InvalidParameter")
            .await;
    assert_eq!(message, format!("face analysis refused the image (Rekognition: {said})"));

    let faces = detect_error(|| {
        DetectFacesError::InvalidImageFormatException(
            rk_error::InvalidImageFormatException::builder().message("Request has invalid image format").build(),
        )
    });
    let message = expect_error(
        &deps(&[&head_jpeg()], &[&faces]),
        event(|_| {}),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "InvalidImageFormat",
    )
    .await;
    assert!(message.ends_with("(Rekognition: Request has invalid image format)"), "{message}");
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

// ---------------------------------------------------------------------------------------
// Kept results and POST /analyze

#[tokio::test]
async fn an_analysis_is_kept_at_results_uuid_json_written_only_if_none_is() {
    let (head, faces, puts) = (head_jpeg(), detect(vec![smiling_face()]), Puts::default());
    let put = puts.rule();
    let (status, body, _) = call(&deps(&[&head, &put], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    let taken = puts.taken();
    assert_eq!(taken.len(), 1);
    let (key, if_none_match, document) = &taken[0];
    assert_eq!(key, "results/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.json");
    assert_eq!(if_none_match.as_deref(), Some("*"));
    assert_eq!(document, &body, "the answer is the kept document");
    assert_eq!((body["status"].as_str(), body["fileKey"].as_str()), (Some("done"), Some(KEY)));
}

#[tokio::test]
async fn a_kept_result_is_answered_without_calling_s3_head_or_rekognition_again() {
    let document = done(json!({"facesDetected": 0, "faces": []}));
    let (stored, head, faces, puts) = (kept(document.clone()), head_jpeg(), detect(vec![]), Puts::default());
    let put = puts.rule();
    let (status, body, _) = call(&deps(&[&stored, &head, &put], &[&faces]), event(|_| {})).await;
    assert_eq!((status, body), (StatusCode::OK, document));
    assert_eq!((head.num_calls(), faces.num_calls(), puts.taken().len()), (0, 0, 0));
}

#[tokio::test]
async fn a_failure_of_the_image_is_kept_and_answered_as_the_same_error_ever_after() {
    let (head, puts) = (head_jpeg(), Puts::default());
    let put = puts.rule();
    let faces = detect_error(|| {
        DetectFacesError::InvalidImageFormatException(rk_error::InvalidImageFormatException::builder().build())
    });
    let first = expect_error(
        &deps(&[&head, &put], &[&faces]),
        event(|_| {}),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "InvalidImageFormat",
    )
    .await;
    let (_, _, document) = puts.taken().pop().unwrap();
    assert_eq!(
        document,
        json!({"fileKey": KEY, "analyzedAt": ANALYZED_AT, "status": "failed", "error": "InvalidImageFormat", "message": first})
    );

    let (stored, faces) = (kept(document), detect(vec![]));
    let again = expect_error(
        &deps(&[&stored], &[&faces]),
        event(|_| {}),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "InvalidImageFormat",
    )
    .await;
    assert_eq!(again, first);
    assert_eq!(faces.num_calls(), 0);
}

#[tokio::test]
async fn an_upstream_failure_is_not_kept() {
    let (head, puts) = (head_jpeg(), Puts::default());
    let put = puts.rule();
    let faces =
        detect_error(|| DetectFacesError::ThrottlingException(rk_error::ThrottlingException::builder().build()));
    expect_error(&deps(&[&head, &put], &[&faces]), event(|_| {}), StatusCode::SERVICE_UNAVAILABLE, "Throttled").await;
    assert!(puts.taken().is_empty());
}

#[tokio::test]
async fn losing_the_race_to_keep_a_result_answers_the_winners() {
    let winner = done(json!({"facesDetected": 0, "faces": [], "note": "kept first"}));
    let winner_kept = winner.clone();
    let reads = mock!(aws_sdk_s3::Client::get_object)
        .sequence()
        .error(|| GetObjectError::NoSuchKey(aws_sdk_s3::types::error::NoSuchKey::builder().build()))
        .output(move || {
            let bytes = winner_kept.to_string().into_bytes();
            GetObjectOutput::builder().content_length(bytes.len() as i64).body(ByteStream::from(bytes)).build()
        })
        .build();
    let refused = mock!(aws_sdk_s3::Client::put_object).sequence().http_status(412, None).build();
    let (head, faces) = (head_jpeg(), detect(vec![smiling_face()]));
    let (status, body, _) = call(&deps(&[&reads, &refused, &head], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["facesDetected"], 0, "the kept result, not this analysis: {body}");
}

#[tokio::test]
async fn an_unreadable_kept_document_is_replaced_by_a_new_analysis() {
    let (stored, head, faces, puts) = (kept(json!({"status": "bogus"})), head_jpeg(), detect(vec![]), Puts::default());
    let put = puts.rule();
    let (status, _, _) = call(&deps(&[&stored, &head, &put], &[&faces]), event(|_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faces.num_calls(), 1);
    let (_, if_none_match, _) = puts.taken().pop().unwrap();
    assert_eq!(if_none_match, None, "an unusable document is overwritten");
}

// ---------------------------------------------------------------------------------------
// GET /analysis/{id}

const ID: &str = "0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg";

fn get_analysis(id: &str) -> Request {
    let path = format!("/analysis/{id}");
    event(|event| {
        event["routeKey"] = json!("GET /analysis/{id}");
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["method"] = json!("GET");
        event["requestContext"]["http"]["path"] = json!(path);
        event["requestContext"]["routeKey"] = json!("GET /analysis/{id}");
        event["pathParameters"] = json!({"id": id});
        event.as_object_mut().unwrap().remove("body");
    })
}

#[tokio::test]
async fn a_done_result_is_200_with_the_kept_document() {
    let document = done(json!({"facesDetected": 0, "faces": []}));
    let stored = kept(document.clone());
    let (status, body, _) = call(&deps(&[&stored], &[]), get_analysis(ID)).await;
    assert_eq!((status, body), (StatusCode::OK, document));
}

#[tokio::test]
async fn a_failed_result_is_422_with_the_kept_failure() {
    let document = json!({
        "fileKey": KEY, "analyzedAt": ANALYZED_AT, "status": "failed",
        "error": "InvalidImageFormat", "message": "the image is not a valid JPEG or PNG"
    });
    let stored = kept(document.clone());
    let (status, body, _) = call(&deps(&[&stored], &[]), get_analysis(ID)).await;
    assert_eq!((status, body), (StatusCode::UNPROCESSABLE_ENTITY, document));
}

#[tokio::test]
async fn an_upload_without_a_result_is_202_pending() {
    let head = head_jpeg();
    let (status, body, _) = call(&deps(&[&head], &[]), get_analysis(ID)).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"status": "pending"})));
}

#[tokio::test]
async fn an_id_without_an_upload_is_404() {
    let head = mock!(aws_sdk_s3::Client::head_object)
        .then_error(|| HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build()));
    let message = expect_error(&deps(&[&head], &[]), get_analysis(ID), StatusCode::NOT_FOUND, "NotFound").await;
    assert!(message.contains(ID), "{message}");
}

#[tokio::test]
async fn ids_that_are_not_an_uploads_name_are_400_without_any_aws_call() {
    let upper = ID.to_uppercase();
    for id in [
        "x",
        "0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b",
        "0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.gif",
        &upper,
        "..%2F.jpg",
        "",
    ] {
        let message = expect_error(&no_aws(), get_analysis(id), StatusCode::BAD_REQUEST, "InvalidRequest").await;
        assert!(message.contains("<uuid>.jpg"), "{id}: {message}");
    }
}

#[tokio::test]
async fn analysis_results_are_read_with_get_only() {
    let request = get_analysis(ID);
    let (mut parts, body) = request.into_parts();
    parts.method = Method::POST;
    let request = Request::from_parts(parts, body);
    expect_error(&no_aws(), request, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
}

// ---------------------------------------------------------------------------------------
// S3 notifications

const S3_EVENT: &str = include_str!("../tests/events/s3-object-created.json");

/// The fixture notification, edited, as the handler receives it (pass-through).
fn notification(edit: impl FnOnce(&mut Value)) -> Request {
    let mut value: Value = serde_json::from_str(S3_EVENT).unwrap();
    edit(&mut value);
    lambda_http::request::from_str(&value.to_string()).unwrap()
}

async fn notify(deps: &Deps, request: Request) -> Result<Value, String> {
    match handle(deps, request).await {
        Ok(response) => {
            let Body::Text(text) = response.body() else { panic!("expected a JSON summary") };
            Ok(serde_json::from_str(text).unwrap())
        }
        Err(error) => Err(error.to_string()),
    }
}

#[test]
fn keys_are_decoded_as_s3_encodes_them_in_notifications() {
    assert_eq!(events::decode_key("uploads/a+b%2Bc%C3%A9.jpg").as_deref(), Some("uploads/a b+cé.jpg"));
    assert_eq!(events::decode_key(KEY).as_deref(), Some(KEY));
    assert_eq!(events::decode_key("uploads/%FF.jpg"), None, "not UTF-8");
}

#[tokio::test]
async fn an_upload_notification_is_analysed_and_its_result_kept() {
    let (head, faces, puts) = (head_jpeg(), detect(vec![smiling_face()]), Puts::default());
    let put = puts.rule();
    let summary = notify(&deps(&[&head, &put], &[&faces]), notification(|_| {})).await.unwrap();
    assert_eq!(summary, json!({"analyzed": 1, "alreadyAnalyzed": 0, "ignored": 0, "toRetry": 0}));
    let (key, _, document) = puts.taken().pop().unwrap();
    assert_eq!(key, "results/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.json");
    assert_eq!((document["status"].as_str(), document["facesDetected"].as_u64()), (Some("done"), Some(1)));
}

#[tokio::test]
async fn an_encoded_key_is_decoded_before_it_is_checked() {
    let encoded = KEY.replace('-', "%2D");
    let (head, faces) = (head_jpeg(), detect(vec![]));
    let request = notification(|event| event["Records"][0]["s3"]["object"]["key"] = json!(encoded));
    let summary = notify(&deps(&[&head], &[&faces]), request).await.unwrap();
    assert_eq!(summary["analyzed"], 1, "{summary}");
    assert_eq!(head.num_calls(), 1, "HeadObject on the decoded key");
}

#[tokio::test]
async fn a_duplicate_notification_changes_nothing_and_calls_rekognition_never() {
    let (stored, faces, puts) = (kept(done(json!({"facesDetected": 0, "faces": []}))), detect(vec![]), Puts::default());
    let put = puts.rule();
    let summary = notify(&deps(&[&stored, &put], &[&faces]), notification(|_| {})).await.unwrap();
    assert_eq!(summary["alreadyAnalyzed"], 1, "{summary}");
    assert_eq!((faces.num_calls(), puts.taken().len()), (0, 0));
}

#[tokio::test]
async fn records_that_are_not_uploads_of_this_bucket_are_ignored_without_any_aws_call() {
    let edits: [(&str, Value); 6] = [
        ("/s3/object/key", json!("uploads/cat.jpg")),
        ("/s3/object/key", json!("results/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.json")),
        ("/s3/object/key", json!("uploads/0f8e1c2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b.jpg+")),
        ("/s3/bucket/name", json!("someone-elses-bucket")),
        ("/eventName", json!("ObjectRemoved:Delete")),
        ("/eventSource", json!("aws:sqs")),
    ];
    for (pointer, value) in edits {
        let request = notification(|event| *event["Records"][0].pointer_mut(pointer).unwrap() = value.clone());
        let summary = notify(&no_aws(), request).await.unwrap();
        assert_eq!(summary["ignored"], 1, "{pointer} = {value}: {summary}");
    }
}

#[tokio::test]
async fn a_failure_of_the_image_is_kept_and_not_retried() {
    let (head, puts) = (head_jpeg(), Puts::default());
    let put = puts.rule();
    let faces = detect_error(|| {
        DetectFacesError::InvalidImageFormatException(rk_error::InvalidImageFormatException::builder().build())
    });
    let summary = notify(&deps(&[&head, &put], &[&faces]), notification(|_| {})).await.unwrap();
    assert_eq!(summary["analyzed"], 1, "{summary}");
    let (_, _, document) = puts.taken().pop().unwrap();
    assert_eq!((document["status"].as_str(), document["error"].as_str()), (Some("failed"), Some("InvalidImageFormat")));
}

#[tokio::test]
async fn an_upstream_failure_fails_the_invocation_so_lambda_retries_it() {
    let (head, puts) = (head_jpeg(), Puts::default());
    let put = puts.rule();
    let faces =
        detect_error(|| DetectFacesError::ThrottlingException(rk_error::ThrottlingException::builder().build()));
    let error = notify(&deps(&[&head, &put], &[&faces]), notification(|_| {})).await.unwrap_err();
    assert!(error.contains("retry"), "{error}");
    assert!(puts.taken().is_empty());
}

#[tokio::test]
async fn an_object_gone_before_its_analysis_is_ignored() {
    let head = mock!(aws_sdk_s3::Client::head_object)
        .then_error(|| HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build()));
    let summary = notify(&deps(&[&head], &[]), notification(|_| {})).await.unwrap();
    assert_eq!(summary["ignored"], 1, "{summary}");
}

#[tokio::test]
async fn an_event_that_is_neither_http_nor_s3_is_an_error_that_says_what_was_expected() {
    let request = lambda_http::request::from_str(r#"{"hello": "world"}"#).unwrap();
    let error = notify(&no_aws(), request).await.unwrap_err();
    assert!(error.contains("S3 notification"), "{error}");
}
