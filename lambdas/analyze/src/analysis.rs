//! The analysis itself: HeadObject to check the upload, DetectFaces, and the faces it finds
//! as the API answers them.

use api_common::ApiError;
use aws_sdk_rekognition::config::http::HttpResponse;
use aws_sdk_rekognition::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::operation::detect_faces::DetectFacesError;
use aws_sdk_rekognition::types::{Attribute, FaceDetail, Image, S3Object};
use aws_sdk_s3::operation::head_object::HeadObjectError;
use lambda_http::http::StatusCode;
use lambda_http::Request;
use serde::Serialize;

use crate::{
    check_route, parse_file_key, Deps, IMAGE_TYPES, MAX_IMAGE_BYTES, RETRY_AFTER_SECONDS, ROUTE_METHOD, ROUTE_PATH,
};

/// The 200 response: the seed's fields, extended compatibly.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub faces_detected: usize,
    pub faces: Vec<Face>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Face {
    pub face_number: usize,
    pub position: Position,
    pub emotions: Vec<EmotionScore>,
    pub dominant_emotion: Option<String>,
    pub age_range: Option<AgeRange>,
    pub smile: Option<Smile>,
    pub confidence: Option<f64>,
}

/// Rekognition's BoundingBox, as ratios of the image size, with its PascalCase keys.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Position {
    pub width: Option<f32>,
    pub height: Option<f32>,
    pub left: Option<f32>,
    pub top: Option<f32>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct EmotionScore {
    pub emotion: String,
    pub confidence: f64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AgeRange {
    pub low: Option<i32>,
    pub high: Option<i32>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Smile {
    pub value: bool,
    pub confidence: Option<f64>,
}

pub(crate) async fn analyze(deps: &Deps, request: &Request) -> Result<Analysis, ApiError> {
    check_route(request, &ROUTE_METHOD, ROUTE_PATH)?;
    let file_key = parse_file_key(request.body())?;
    check_object(deps, &file_key).await?;

    let image =
        Image::builder().s3_object(S3Object::builder().bucket(&deps.config.bucket).name(&file_key).build()).build();
    let output = deps
        .rekognition
        .detect_faces()
        .image(image)
        .attributes(Attribute::All)
        .send()
        .await
        .map_err(|error| detect_faces_error(&error, &file_key))?;
    let faces: Vec<Face> =
        output.face_details().iter().enumerate().map(|(index, detail)| face(index + 1, detail)).collect();
    Ok(Analysis { faces_detected: faces.len(), faces })
}

/// HeadObject before DetectFaces: a missing, oversized or non-image object gets a precise
/// answer instead of Rekognition's generic one, and costs no Rekognition call.
async fn check_object(deps: &Deps, file_key: &str) -> Result<(), ApiError> {
    let head = deps.s3.head_object().bucket(&deps.config.bucket).key(file_key).send().await;
    let head = match head {
        Ok(head) => head,
        Err(SdkError::ServiceError(error)) if is_missing(error.err(), error.raw().status().as_u16()) => {
            return Err(ApiError::not_found(format!(
                "no image at fileKey {file_key:?}; upload it first with the URL from GET /upload-url"
            )));
        }
        Err(error) => {
            tracing::error!(error = %DisplayErrorContext(&error), file_key, "HeadObject failed");
            return Err(ApiError::upstream());
        }
    };
    let size = head.content_length().unwrap_or(0);
    if size > MAX_IMAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ImageTooLarge",
            format!("the image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes (15 MB)"),
        ));
    }
    let content_type = head.content_type().unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !IMAGE_TYPES.iter().any(|allowed| allowed.eq_ignore_ascii_case(essence)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the image was stored as {content_type:?}; only image/jpeg and image/png can be analyzed"),
        ));
    }
    Ok(())
}

/// A missing object. Without `s3:ListBucket`, which this function deliberately lacks, S3
/// answers HeadObject on a missing key with 403 rather than 404; the function may read
/// every key under `uploads/`, so a 403 there means the object does not exist.
fn is_missing(error: &HeadObjectError, status: u16) -> bool {
    matches!(error, HeadObjectError::NotFound(_)) || status == 404 || status == 403
}

fn detect_faces_error(error: &SdkError<DetectFacesError, HttpResponse>, file_key: &str) -> ApiError {
    let service_error = match error {
        SdkError::ServiceError(service_error) => service_error.err(),
        _ => {
            tracing::error!(error = %DisplayErrorContext(error), file_key, "DetectFaces call failed");
            return ApiError::upstream();
        }
    };
    tracing::warn!(
        code = service_error.code(),
        message = service_error.message(),
        file_key,
        "DetectFaces refused the image"
    );
    match service_error {
        DetectFacesError::InvalidImageFormatException(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidImageFormat",
            "the image is not a valid JPEG or PNG",
        ),
        DetectFacesError::ImageTooLargeException(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "ImageTooLarge", "the image is too large for face analysis")
        }
        DetectFacesError::InvalidS3ObjectException(_) => {
            ApiError::not_found(format!("the image at fileKey {file_key:?} could not be read"))
        }
        DetectFacesError::InvalidParameterException(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "the image cannot be analyzed: it must be at least 80 pixels on each side",
        ),
        DetectFacesError::ThrottlingException(_) | DetectFacesError::ProvisionedThroughputExceededException(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Throttled", "face analysis is busy; retry shortly")
                .with_retry_after(RETRY_AFTER_SECONDS)
        }
        _ => ApiError::upstream(),
    }
}

fn round2(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

fn face(face_number: usize, detail: &FaceDetail) -> Face {
    let bounding_box = detail.bounding_box();
    let mut emotions: Vec<EmotionScore> = detail
        .emotions()
        .iter()
        .filter_map(|emotion| {
            Some(EmotionScore {
                emotion: emotion.r#type()?.as_str().to_owned(),
                confidence: round2(emotion.confidence()?),
            })
        })
        .collect();
    // Highest confidence first; ties keep a stable, name-ordered result.
    emotions.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.emotion.cmp(&b.emotion)));
    Face {
        face_number,
        position: Position {
            width: bounding_box.and_then(|b| b.width()),
            height: bounding_box.and_then(|b| b.height()),
            left: bounding_box.and_then(|b| b.left()),
            top: bounding_box.and_then(|b| b.top()),
        },
        dominant_emotion: emotions.first().map(|emotion| emotion.emotion.clone()),
        emotions,
        age_range: detail.age_range().map(|age| AgeRange { low: age.low(), high: age.high() }),
        smile: detail.smile().map(|smile| Smile { value: smile.value(), confidence: smile.confidence().map(round2) }),
        confidence: detail.confidence().map(round2),
    }
}
