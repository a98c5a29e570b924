//! Rekognition's DetectFaces request and response (JSON 1.1, PascalCase field names), and its
//! error codes.

use serde::{Deserialize, Serialize};

/// The DetectFaces request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetectFacesRequest {
    pub image: Option<ImageSource>,
    pub attributes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSource {
    /// Base64 of the image file.
    pub bytes: Option<String>,
    pub s3_object: Option<S3ObjectRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3ObjectRef {
    pub bucket: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetectFacesResponse {
    pub face_details: Vec<FaceDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation_correction: Option<String>,
}

/// One face. Fields that this service cannot compute are absent (see the README).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceDetail {
    pub bounding_box: BoundingBox,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_range: Option<AgeRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emotions: Option<Vec<Emotion>>,
    pub landmarks: Vec<Landmark>,
    pub pose: Pose,
    pub quality: Quality,
    pub confidence: f32,
}

/// Ratios of the image's width and height (after EXIF orientation correction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoundingBox {
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub top: f32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgeRange {
    pub low: i32,
    pub high: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gender {
    pub value: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Emotion {
    pub r#type: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Landmark {
    pub r#type: String,
    pub x: f32,
    pub y: f32,
}

/// Only Roll can be measured from BlazeFace's key points; Yaw and Pitch are left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pose {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roll: Option<f32>,
}

/// Only Brightness is measured; Sharpness is left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Quality {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brightness: Option<f32>,
}

/// Rekognition's error codes that this service returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidImageFormat,
    ImageTooLarge,
    InvalidS3Object,
    InvalidParameter,
    AccessDenied,
    Serialization,
    UnknownOperation,
    /// The request body was not received in time (HTTP 408).
    RequestTimeout,
    InternalServerError,
}

impl ErrorCode {
    /// The `__type` / `x-amzn-ErrorType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidImageFormat => "InvalidImageFormatException",
            Self::ImageTooLarge => "ImageTooLargeException",
            Self::InvalidS3Object => "InvalidS3ObjectException",
            Self::InvalidParameter => "InvalidParameterException",
            Self::AccessDenied => "AccessDeniedException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::RequestTimeout => "RequestTimeoutException",
            Self::InternalServerError => "InternalServerError",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::InternalServerError => 500,
            Self::RequestTimeout => 408,
            Self::InvalidImageFormat
            | Self::ImageTooLarge
            | Self::InvalidS3Object
            | Self::InvalidParameter
            | Self::AccessDenied
            | Self::Serialization
            | Self::UnknownOperation => 400,
        }
    }
}

/// A Rekognition error: HTTP 400 (500 for internal errors) with
/// `{"__type": "<Code>", "Message": "..."}` and the `x-amzn-ErrorType` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RekognitionError {
    pub code: ErrorCode,
    pub message: String,
}

impl RekognitionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "__type": self.code.as_str(), "Message": self.message }).to_string()
    }
}

/// Which face attributes a request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributeSet {
    pub age_range: bool,
    pub gender: bool,
    pub emotions: bool,
}

impl AttributeSet {
    pub const ALL: Self = Self { age_range: true, gender: true, emotions: true };

    /// Rekognition's `Attributes`: absent or `["DEFAULT"]` gives the default set;
    /// `"ALL"` everything; single attributes add themselves to the default set. Attributes
    /// that exist in Rekognition but that no model here computes (e.g. `SMILE`, `BEARD`) are
    /// accepted and left out of the answer; anything else is an `InvalidParameterException`.
    pub fn parse(attributes: Option<&[String]>) -> Result<Self, RekognitionError> {
        let mut set = Self::default();
        for attribute in attributes.unwrap_or_default() {
            match attribute.as_str() {
                "DEFAULT" => {}
                "ALL" => set = Self::ALL,
                "AGE_RANGE" => set.age_range = true,
                "GENDER" => set.gender = true,
                "EMOTIONS" => set.emotions = true,
                "BEARD" | "EYEGLASSES" | "EYES_OPEN" | "MOUTH_OPEN" | "MUSTACHE" | "SMILE" | "SUNGLASSES"
                | "FACE_OCCLUDED" | "EYE_DIRECTION" => {}
                other => {
                    return Err(RekognitionError::new(
                        ErrorCode::InvalidParameter,
                        format!(
                            "1 validation error detected: Value '{other}' at 'attributes' failed to satisfy constraint: \
                             Member must satisfy enum value set: [DEFAULT, ALL, AGE_RANGE, BEARD, EMOTIONS, EYE_DIRECTION, \
                             EYEGLASSES, EYES_OPEN, FACE_OCCLUDED, GENDER, MOUTH_OPEN, MUSTACHE, SMILE, SUNGLASSES]"
                        ),
                    ))
                }
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_rekognition() {
        assert_eq!(AttributeSet::parse(None).unwrap(), AttributeSet::default());
        assert_eq!(AttributeSet::parse(Some(&["DEFAULT".into()])).unwrap(), AttributeSet::default());
        assert_eq!(AttributeSet::parse(Some(&["ALL".into()])).unwrap(), AttributeSet::ALL);
        let emotions = AttributeSet::parse(Some(&["EMOTIONS".into(), "SMILE".into()])).unwrap();
        assert!(emotions.emotions && !emotions.age_range);
        let error = AttributeSet::parse(Some(&["EVERYTHING".into()])).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParameter);
    }

    #[test]
    fn errors_have_the_json_1_1_shape() {
        let error = RekognitionError::new(ErrorCode::InvalidImageFormat, "Request has invalid image format");
        let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap();
        assert_eq!(body["__type"], "InvalidImageFormatException");
        assert_eq!(body["Message"], "Request has invalid image format");
        assert_eq!(error.code.status(), 400);
    }

    #[test]
    fn absent_fields_are_not_serialized() {
        let face = FaceDetail { confidence: 99.0, ..Default::default() };
        let json = serde_json::to_value(&face).unwrap();
        assert!(json.get("Emotions").is_none());
        assert!(json.get("AgeRange").is_none());
        assert_eq!(json["Pose"], serde_json::json!({}));
        assert!(json.get("BoundingBox").is_some());
    }
}
