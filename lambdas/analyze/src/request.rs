//! Validation of what clients send: the `POST /analyze` body and the `GET /analysis/{id}`
//! id, each exactly what the upload route hands out.

use api_common::ApiError;
use lambda_http::Body;
use serde_json::Value;

/// The largest request body accepted. `{"fileKey": "uploads/<uuid>.jpg"}` is about 60 bytes.
pub const MAX_BODY_BYTES: usize = 4096;
/// The longest `fileKey` accepted before its shape is even looked at.
pub const MAX_FILE_KEY_LEN: usize = 128;
/// Where clients upload; the only keys this function analyses.
pub const UPLOAD_PREFIX: &str = "uploads/";
const EXTENSIONS: [&str; 2] = ["jpg", "png"];

/// The `fileKey` of a request body, validated to the shape `uploads/<uuid>.<jpg|png>`.
/// `lambda_http` has already decoded base64 bodies (`isBase64Encoded`) into bytes.
pub fn parse_file_key(body: &Body) -> Result<String, ApiError> {
    let bytes: &[u8] = body.as_ref();
    if bytes.is_empty() {
        return Err(ApiError::invalid_request(r#"the request body is empty; send {"fileKey": "uploads/..."}"#));
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::invalid_request(format!(
            "the request body is {} bytes; at most {MAX_BODY_BYTES} are accepted",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|error| ApiError::invalid_request(format!("the request body is not valid UTF-8: {error}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|error| ApiError::invalid_request(format!("the request body is not valid JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_request(format!(
            "the request body must be a JSON object, not {}",
            json_type(&value)
        )));
    };
    let file_key = match object.get("fileKey") {
        None => return Err(ApiError::invalid_request("fileKey is missing from the request body")),
        Some(Value::String(file_key)) => file_key,
        Some(other) => {
            return Err(ApiError::invalid_request(format!("fileKey must be a string, not {}", json_type(other))));
        }
    };
    check_upload_key(file_key)?;
    Ok(file_key.clone())
}

/// The upload key of `GET /analysis/{id}`'s id, `<uuid>.<jpg|png>` as in `fileKey`.
pub fn parse_result_id(id: &str) -> Result<String, ApiError> {
    let shape_error = || {
        ApiError::invalid_request(format!(
            "the id must be the upload's name as in its fileKey, <uuid>.jpg or <uuid>.png; got {id:?}"
        ))
    };
    if id.is_empty() || id.contains('/') || id.chars().count() > MAX_FILE_KEY_LEN {
        return Err(shape_error());
    }
    let file_key = format!("{UPLOAD_PREFIX}{id}");
    check_upload_key(&file_key).map_err(|_| shape_error())?;
    Ok(file_key)
}

/// Checks that a key is `uploads/<uuid>.<jpg|png>`, the only shape the upload route hands
/// out (the uuid hyphenated and lowercase).
pub fn check_upload_key(file_key: &str) -> Result<(), ApiError> {
    let length = file_key.chars().count();
    if length > MAX_FILE_KEY_LEN {
        return Err(ApiError::invalid_request(format!(
            "fileKey is {length} characters long; at most {MAX_FILE_KEY_LEN} are accepted"
        )));
    }
    if file_key.contains("..") {
        return Err(ApiError::invalid_request("fileKey must not contain '..'"));
    }
    let Some(name) = file_key.strip_prefix(UPLOAD_PREFIX) else {
        return Err(ApiError::invalid_request(format!("fileKey must start with {UPLOAD_PREFIX:?}, got {file_key:?}")));
    };
    let shape_error = || {
        ApiError::invalid_request(format!(
            "fileKey must be the key GET /upload-url returned, uploads/<uuid>.jpg or uploads/<uuid>.png; got {file_key:?}"
        ))
    };
    let (stem, extension) = name.rsplit_once('.').ok_or_else(shape_error)?;
    if !EXTENSIONS.contains(&extension) {
        return Err(shape_error());
    }
    // Only the hyphenated lowercase form that the upload route generates.
    let uuid = uuid::Uuid::try_parse(stem).map_err(|_| shape_error())?;
    if uuid.hyphenated().to_string() != stem {
        return Err(shape_error());
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
