//! CORS as HTTP APIs answer it: preflights from the API's configuration, and the headers
//! added to responses for an allowed origin.

use crate::local::discovery::Cors;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

pub(super) fn origin_allowed(cors: &Cors, origin: &str) -> Option<String> {
    if cors.allow_origins.iter().any(|allowed| allowed == "*") {
        return Some(if cors.allow_credentials { origin.to_owned() } else { "*".to_owned() });
    }
    cors.allow_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)).then(|| origin.to_owned())
}

/// API Gateway's answer to a CORS preflight: 204, with the CORS headers when the origin is
/// allowed.
pub(super) fn preflight(cors: &Cors, origin: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let Some(allowed) = origin_allowed(cors, origin) else { return response };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("access-control-allow-origin", allowed);
    if !cors.allow_methods.is_empty() {
        set("access-control-allow-methods", cors.allow_methods.join(","));
    }
    if !cors.allow_headers.is_empty() {
        set("access-control-allow-headers", cors.allow_headers.join(","));
    }
    if let Some(max_age) = cors.max_age {
        set("access-control-max-age", max_age.to_string());
    }
    if cors.allow_credentials {
        set("access-control-allow-credentials", "true".to_owned());
    }
    response
}

/// The CORS headers API Gateway puts on an actual response (replacing the function's own).
pub(super) fn add_cors_headers(response: &mut Response<Bytes>, cors: &Cors, origin: &str) {
    let headers = response.headers_mut();
    for name in ["access-control-allow-origin", "access-control-expose-headers", "access-control-allow-credentials"] {
        headers.remove(name);
    }
    let Some(allowed) = origin_allowed(cors, origin) else { return };
    if let Ok(value) = HeaderValue::from_str(&allowed) {
        headers.insert("access-control-allow-origin", value);
    }
    if !cors.expose_headers.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&cors.expose_headers.join(",")) {
            headers.insert("access-control-expose-headers", value);
        }
    }
    if cors.allow_credentials {
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
    }
}
