//! The analysis itself: HeadObject to check the upload, DetectFaces, and the faces it finds
//! as the API answers them; and why an analysis failed, as a closed set.

use api_common::ApiError;
use aws_sdk_rekognition::config::http::HttpResponse;
use aws_sdk_rekognition::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::operation::detect_faces::DetectFacesError;
use aws_sdk_rekognition::types::{Attribute, FaceDetail, Image, S3Object};
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use lambda_http::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{Deps, IMAGE_TYPES, MAX_IMAGE_BYTES, RETRY_AFTER_SECONDS};

/// Why an image could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The image's own fault: asking again gives the same answer, so it is kept as a failed
    /// result and never retried.
    Image(ImageFault, String),
    /// There is no object at the key (or it cannot be read as one).
    Missing(ApiError),
    /// An upstream service failed, throttled or did not answer in time: a retry may succeed.
    /// Never kept.
    Transient(ApiError),
}

/// What can be wrong with an image itself. Serialized as the API's error code, which is how
/// a failed result stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageFault {
    /// Not a JPEG or PNG Rekognition can decode.
    InvalidImageFormat,
    /// Stored with a content type other than `image/jpeg` or `image/png`.
    UnsupportedMediaType,
    /// Over Rekognition's size limit.
    ImageTooLarge,
    /// Refused by Rekognition's parameter checks (e.g. too small to analyse).
    InvalidParameter,
}

impl ImageFault {
    pub const fn code(self) -> &'static str {
        match self {
            ImageFault::InvalidImageFormat => "InvalidImageFormat",
            ImageFault::UnsupportedMediaType => "UnsupportedMediaType",
            ImageFault::ImageTooLarge => "ImageTooLarge",
            ImageFault::InvalidParameter => "InvalidParameter",
        }
    }

    /// The status `POST /analyze` answers this fault with.
    pub const fn status(self) -> StatusCode {
        match self {
            ImageFault::InvalidImageFormat | ImageFault::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ImageFault::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ImageFault::InvalidParameter => StatusCode::BAD_REQUEST,
        }
    }

    pub fn api_error(self, message: impl Into<String>) -> ApiError {
        ApiError::new(self.status(), self.code(), message)
    }
}

/// The 200 response: the seed's fields, extended compatibly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub faces_detected: usize,
    pub faces: Vec<Face>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Position {
    pub width: Option<f32>,
    pub height: Option<f32>,
    pub left: Option<f32>,
    pub top: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmotionScore {
    pub emotion: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgeRange {
    pub low: Option<i32>,
    pub high: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Smile {
    pub value: bool,
    pub confidence: Option<f64>,
}

/// Analyses the image at `file_key` (already checked to be an upload key): HeadObject, then
/// DetectFaces with every attribute.
pub async fn analyze(deps: &Deps, file_key: &str) -> Result<Analysis, Failure> {
    check_object(deps, file_key).await?;

    let image =
        Image::builder().s3_object(S3Object::builder().bucket(&deps.config.bucket).name(file_key).build()).build();
    let output = deps
        .rekognition
        .detect_faces()
        .image(image)
        .attributes(Attribute::All)
        .send()
        .await
        .map_err(|error| detect_faces_error(&error, file_key))?;
    let faces: Vec<Face> =
        output.face_details().iter().enumerate().map(|(index, detail)| face(index + 1, detail)).collect();
    Ok(Analysis { faces_detected: faces.len(), faces })
}

/// HeadObject before DetectFaces: a missing, oversized or non-image object gets a precise
/// answer instead of Rekognition's generic one, and costs no Rekognition call.
async fn check_object(deps: &Deps, file_key: &str) -> Result<(), Failure> {
    let Some(head) = head(deps, file_key).await.map_err(Failure::Transient)? else {
        return Err(Failure::Missing(ApiError::not_found(format!(
            "no image at fileKey {file_key:?}; upload it first with the URL from GET /upload-url"
        ))));
    };
    let size = head.content_length().unwrap_or(0);
    if size > MAX_IMAGE_BYTES {
        return Err(Failure::Image(
            ImageFault::ImageTooLarge,
            format!("the image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes (15 MB)"),
        ));
    }
    let content_type = head.content_type().unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !IMAGE_TYPES.iter().any(|allowed| allowed.eq_ignore_ascii_case(essence)) {
        return Err(Failure::Image(
            ImageFault::UnsupportedMediaType,
            format!("the image was stored as {content_type:?}; only image/jpeg and image/png can be analyzed"),
        ));
    }
    Ok(())
}

/// Whether an object exists at `file_key`.
pub async fn upload_exists(deps: &Deps, file_key: &str) -> Result<bool, ApiError> {
    Ok(head(deps, file_key).await?.is_some())
}

/// HeadObject of `file_key`; `None` when there is no object. Only a failure to ask is an error.
async fn head(deps: &Deps, file_key: &str) -> Result<Option<HeadObjectOutput>, ApiError> {
    match deps.s3.head_object().bucket(&deps.config.bucket).key(file_key).send().await {
        Ok(head) => Ok(Some(head)),
        Err(SdkError::ServiceError(error)) if is_missing(error.err(), error.raw().status().as_u16()) => Ok(None),
        Err(error) => Err(s3_failure(&error, "HeadObject", file_key)),
    }
}

/// A missing object. Without `s3:ListBucket`, which this function deliberately lacks, S3
/// answers HeadObject on a missing key with 403 rather than 404; the function may read
/// every key under `uploads/`, so a 403 there means the object does not exist.
fn is_missing(error: &HeadObjectError, status: u16) -> bool {
    matches!(error, HeadObjectError::NotFound(_)) || status == 404 || status == 403
}

fn detect_faces_error(error: &SdkError<DetectFacesError, HttpResponse>, file_key: &str) -> Failure {
    let service_error = match error {
        SdkError::ServiceError(service_error) => service_error.err(),
        _ => {
            tracing::error!(error = %DisplayErrorContext(error), file_key, "DetectFaces call failed");
            return Failure::Transient(ApiError::upstream());
        }
    };
    tracing::warn!(
        code = service_error.code(),
        message = service_error.message(),
        file_key,
        "DetectFaces refused the image"
    );
    // Rekognition's own words about an image are the person's best clue; its other messages
    // (access denied, internal errors) may name internals and are not passed on.
    let said = |ours: &str, theirs: Option<&str>| match theirs.map(str::trim) {
        Some(message) if !message.is_empty() => format!("{ours} (Rekognition: {message})"),
        _ => ours.to_owned(),
    };
    match service_error {
        DetectFacesError::InvalidImageFormatException(error) => Failure::Image(
            ImageFault::InvalidImageFormat,
            said("the image is not a valid, complete JPEG or PNG", error.message()),
        ),
        DetectFacesError::ImageTooLargeException(error) => {
            Failure::Image(ImageFault::ImageTooLarge, said("the image is too large for face analysis", error.message()))
        }
        DetectFacesError::InvalidS3ObjectException(_) => {
            Failure::Missing(ApiError::not_found(format!("the image at fileKey {file_key:?} could not be read")))
        }
        DetectFacesError::InvalidParameterException(error) => {
            Failure::Image(ImageFault::InvalidParameter, said("face analysis refused the image", error.message()))
        }
        DetectFacesError::ThrottlingException(_) | DetectFacesError::ProvisionedThroughputExceededException(_) => {
            Failure::Transient(throttled("face analysis"))
        }
        _ => Failure::Transient(ApiError::upstream()),
    }
}

/// 503 `Throttled` with `Retry-After`: `service` asked to slow down, and a retry shortly will
/// likely succeed.
fn throttled(service: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Throttled", format!("{service} is busy; retry shortly"))
        .with_retry_after(RETRY_AFTER_SECONDS)
}

/// A failed S3 call as the API answers it, logged first: S3 asking to slow down (`SlowDown`,
/// or any 503 once the SDK's own retries are spent) is 503 `Throttled` with `Retry-After`, as
/// Rekognition's throttling is; anything else is an opaque 502.
pub(crate) fn s3_failure<E>(error: &SdkError<E, HttpResponse>, operation: &str, key: &str) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|response| response.status().as_u16());
    let slow_down = status == Some(503)
        || matches!(
            error.code(),
            Some(
                "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
            )
        );
    if slow_down {
        tracing::warn!(error = %DisplayErrorContext(error), key, "S3 {operation} throttled");
        throttled("storage")
    } else {
        tracing::error!(error = %DisplayErrorContext(error), key, "S3 {operation} failed");
        ApiError::upstream()
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
