//! `GET /`: the page where a person uploads a photo and sees its faces. Its HTML, CSS and
//! JavaScript are embedded at build time and assembled into one document at cold start, so
//! that the first paint waits on no other request; the page calls the API on its own origin.
//! The function touches no AWS service.

use api_common::{check_route, request_id, ConfigError};
use base64::Engine;
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};

pub const ROUTE_METHOD: Method = Method::GET;
pub const ROUTE_PATH: &str = "/";

const HTML: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/style.css");
const SCRIPT: &str = include_str!("page/app.js");

pub use api_common::MAX_UPLOAD_BYTES_ENV;

/// The page as this function serves it, built once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the page may send requests besides its own origin: the S3 endpoint that upload
    /// URLs point at.
    pub upload_origin: String,
    /// The largest photo the page uploads.
    pub max_upload_bytes: u64,
    /// The `Content-Security-Policy` header.
    csp: HeaderValue,
    /// The whole document.
    page: String,
    /// Its entity tag: its content hash, so a browser revalidates and gets `304` until a
    /// deploy changes it.
    etag: String,
}

/// S3 in any commercial region, where presigned URLs are virtual-hosted
/// (`https://<bucket>.s3.<region>.amazonaws.com`).
pub const AWS_UPLOAD_ORIGIN: &str = "https://*.amazonaws.com";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The upload origin is S3's own, unless `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`
    /// name another endpoint (as on the local cloud): then that endpoint's origin. The upload
    /// limit is `MAX_UPLOAD_BYTES`, else Rekognition's 15 MiB.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let max_upload_bytes = api_common::max_upload_bytes(var(MAX_UPLOAD_BYTES_ENV))?;
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| var(name).filter(|url| !url.trim().is_empty()).map(|url| (name, url)));
        let upload_origin = match endpoint {
            None => AWS_UPLOAD_ORIGIN.to_owned(),
            Some((name, url)) => origin(url.trim())
                .ok_or_else(|| ConfigError(format!("{name}={url:?} is not an http:// or https:// URL")))?,
        };
        let csp = HeaderValue::from_str(&content_security_policy(&upload_origin))
            .map_err(|_| ConfigError(format!("the upload origin {upload_origin:?} cannot go in a header")))?;
        let page = page(max_upload_bytes);
        let etag = format!("\"{}\"", &sha256_base64(&page)[..22]);
        Ok(Self { upload_origin, max_upload_bytes, csp, page, etag })
    }

    /// The whole document, as served.
    pub fn page(&self) -> &str {
        &self.page
    }
}

/// The document: the HTML with its style and script inline and the upload limit filled in.
fn page(max_upload_bytes: u64) -> String {
    HTML.replacen("{{STYLE}}", STYLE, 1).replacen("{{SCRIPT}}", SCRIPT, 1).replacen(
        "{{MAX_BYTES}}",
        &max_upload_bytes.to_string(),
        1,
    )
}

/// The page's Content Security Policy: its own inline style and script (by hash), the photo
/// shown from memory, requests to its own origin and the upload endpoint, nothing else.
pub fn content_security_policy(upload_origin: &str) -> String {
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src blob: data:; \
         connect-src 'self' {upload_origin}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_base64(SCRIPT),
        sha256_base64(STYLE),
    )
}

/// `scheme://host[:port]` of an http(s) URL: everything before the path.
fn origin(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().filter(|authority| !authority.is_empty())?;
    Some(format!("{}{authority}", &url[..url.len() - rest.len()]))
}

fn sha256_base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// The Lambda handler: the page for `GET /`, `304` when the browser has it already.
pub async fn handle(config: &Config, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    Ok(respond(config, &request))
}

pub fn respond(config: &Config, request: &Request) -> Response<Body> {
    if let Err(error) = check_route(request, &ROUTE_METHOD, ROUTE_PATH) {
        return error.into_response(&request_id(request));
    }
    let cached = request.headers().get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|tags| tags.split(',').any(|tag| tag.trim() == config.etag || tag.trim() == "*"))
    });
    let (status, body) = if cached {
        (StatusCode::NOT_MODIFIED, Body::Empty)
    } else {
        (StatusCode::OK, Body::Text(config.page.clone()))
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ETAG, config.etag.as_str())
        .header(header::CONTENT_SECURITY_POLICY, config.csp.clone())
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(body)
        .expect("a response from a valid status and valid headers is valid")
}

#[cfg(test)]
mod tests;
