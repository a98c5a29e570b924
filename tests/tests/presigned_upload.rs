//! The upload route's real handler presigns a URL against the emulator's S3 (signed for the
//! photo's type and length, as prod requires), a plain HTTP client PUTs a photo through it,
//! and the object reads back byte for byte.

use std::time::Duration;

use e2e::{photo, Moto};
use lambda_http::Body;
use serde_json::Value;

const BUCKET: &str = "image-analyzer-test-uploads";
const EVENT: &str = include_str!("../../lambdas/upload-url/tests/events/get-upload-url.json");

async fn upload_url(deps: &upload_url::Deps, content_type: &str, length: usize) -> Value {
    let mut event: Value = serde_json::from_str(EVENT).unwrap();
    // As API Gateway sends it: the raw query string, which lambda_http reads, and its map.
    event["rawQueryString"] = format!("contentType={}&contentLength={length}", content_type.replace('/', "%2F")).into();
    event["queryStringParameters"] =
        serde_json::json!({ "contentType": content_type, "contentLength": length.to_string() });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = upload_url::handle(deps, request).await.unwrap();
    let Body::Text(text) = response.body() else { panic!("expected a JSON body") };
    assert_eq!(response.status(), 200, "{text}");
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn photo_put_through_the_presigned_url_reads_back_byte_for_byte() {
    let moto = Moto::start().unwrap();
    let sdk_config = moto.sdk_config().await;
    let s3 = upload_url::s3_client(&sdk_config, true);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let deps = upload_url::Deps {
        s3: s3.clone(),
        config: upload_url::Config {
            bucket: BUCKET.to_owned(),
            expiry: Duration::from_secs(300),
            max_upload_bytes: upload_url::MAX_UPLOAD_BYTES,
            require_content_length: true,
        },
    };

    for (content_type, name) in [("image/jpeg", "astronaut.jpg"), ("image/png", "astronaut.png")] {
        let bytes = photo(name);
        let body = upload_url(&deps, content_type, bytes.len()).await;
        let url = body["uploadUrl"].as_str().unwrap();
        let key = body["fileKey"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/{BUCKET}/{key}?", moto.endpoint())), "{url}");
        assert!(url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"), "{url}");
        assert_eq!(
            (body["contentType"].as_str(), body["contentLength"].as_u64()),
            (Some(content_type), Some(bytes.len() as u64))
        );

        let put = reqwest::Client::new()
            .put(url)
            .header("Content-Type", content_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "PUT {url}: {} {}", put.status(), put.text().await.unwrap());

        let object = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap();
        assert_eq!(object.content_type(), Some(content_type));
        let stored = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(stored.len(), bytes.len());
        assert!(stored == bytes, "{key} differs from {name}");
    }
}
