//! API Gateway HTTP API (payload format 2.0) translation, the way the real service does it:
//! an HTTP request becomes the Lambda event an `AWS_PROXY` integration sends, and the
//! function's answer becomes the HTTP response API Gateway returns.
//!
//! The request side ([`to_event`]):
//! - `rawPath` and `requestContext.http.path` are the *decoded* path (HTTP APIs percent-decode
//!   it, unlike REST APIs and function URLs); `rawQueryString` is the query exactly as sent;
//! - `queryStringParameters` are decoded (`+` is a space), repeated keys joined with `,`;
//! - header names are lower-cased, repeated headers joined with `,`; `Cookie` headers move to
//!   `cookies` (split on `;`); API Gateway's own `x-forwarded-for`, `x-forwarded-proto`,
//!   `x-forwarded-port` and `x-amzn-trace-id` are added;
//! - the body is text when the content type is textual (`text/*`, `application/json`,
//!   `application/xml`, `application/javascript`, `+json`, `+xml`) and the bytes are UTF-8;
//!   otherwise, including a missing content type and `application/x-www-form-urlencoded`
//!   (as real HTTP APIs do), it is base64 with `isBase64Encoded: true`;
//! - `cookies`, `queryStringParameters`, `pathParameters`, `stageVariables` and `body` are
//!   omitted when empty.
//!
//! The response side ([`from_response`]): a JSON object with `statusCode` is a structured
//! response (`headers`, `multiValueHeaders`, `cookies`, `body`, `isBase64Encoded`); any other
//! valid JSON is inferred as `200`, `content-type: application/json`, body = the payload (a
//! JSON string gives its contents); a payload that is not JSON, or a malformed structured
//! response, is API Gateway's `500 {"message":"Internal Server Error"}`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
pub use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// What API Gateway knows about a request besides the request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// The API's id, e.g. `a1b2c3d4e5`.
    pub api_id: String,
    /// The stage name; `$default` for the default stage.
    pub stage: String,
    /// The matched route, e.g. `GET /upload-url`, or `$default`.
    pub route_key: String,
    /// The AWS account id.
    pub account_id: String,
    /// The host the API is served under, e.g. `a1b2c3d4e5.execute-api.us-east-1.amazonaws.com`
    /// or `127.0.0.1:8080`; its first label is `domainPrefix`.
    pub domain_name: String,
    /// The client's address.
    pub source_ip: String,
    /// API Gateway's request id (`requestContext.requestId`).
    pub request_id: String,
    /// When the request arrived.
    pub time: SystemTime,
    /// Values of the route's `{name}` path variables, if any.
    pub path_parameters: BTreeMap<String, String>,
    /// The stage's variables, if any.
    pub stage_variables: BTreeMap<String, String>,
}

impl EventContext {
    /// A context for `route_key` on the `$default` stage of `api_id`, arriving now, with
    /// no path parameters or stage variables.
    pub fn new(
        api_id: impl Into<String>,
        route_key: impl Into<String>,
        account_id: impl Into<String>,
        domain_name: impl Into<String>,
        source_ip: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Self {
            api_id: api_id.into(),
            stage: "$default".to_owned(),
            route_key: route_key.into(),
            account_id: account_id.into(),
            domain_name: domain_name.into(),
            source_ip: source_ip.into(),
            request_id: request_id.into(),
            time: SystemTime::now(),
            path_parameters: BTreeMap::new(),
            stage_variables: BTreeMap::new(),
        }
    }
}

/// The payload format 2.0 event API Gateway sends to a Lambda integration for `request`.
pub fn to_event(request: http::Request<Bytes>, ctx: &EventContext) -> Value {
    let (parts, body) = request.into_parts();
    let raw_path = decode_path(parts.uri.path());
    let raw_query = parts.uri.query().unwrap_or("").to_owned();

    let mut cookies = Vec::new();
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    add_gateway_headers(&mut headers, &parts, ctx);

    let mut query = BTreeMap::<String, String>::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(key.into_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }

    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let epoch_ms = ctx.time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let domain_prefix = ctx.domain_name.split('.').next().unwrap_or_default().to_owned();

    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(ctx.route_key));
    event.insert("rawPath".into(), json!(raw_path));
    event.insert("rawQueryString".into(), json!(raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), json!(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), json!(query));
    }
    if !ctx.path_parameters.is_empty() {
        event.insert("pathParameters".into(), json!(ctx.path_parameters));
    }
    if !ctx.stage_variables.is_empty() {
        event.insert("stageVariables".into(), json!(ctx.stage_variables));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "domainName": ctx.domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": protocol(parts.version),
                "sourceIp": ctx.source_ip,
                "userAgent": user_agent,
            },
            "requestId": ctx.request_id,
            "routeKey": ctx.route_key,
            "stage": ctx.stage,
            "time": clf_time(ctx.time),
            "timeEpoch": epoch_ms,
        }),
    );
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let base64_encoded = if body.is_empty() {
        false
    } else {
        match std::str::from_utf8(&body) {
            Ok(text) if is_text_content_type(content_type) => {
                event.insert("body".into(), json!(text));
                false
            }
            _ => {
                event.insert("body".into(), json!(base64::engine::general_purpose::STANDARD.encode(&body)));
                true
            }
        }
    };
    event.insert("isBase64Encoded".into(), json!(base64_encoded));
    Value::Object(event)
}

/// Whether API Gateway passes a body of this content type to Lambda as text.
///
/// Real HTTP APIs deliver text only for `text/*`, `application/json`, `application/xml` and
/// `application/javascript` (and structured `+json`/`+xml` types); everything else, a
/// missing content type and `application/x-www-form-urlencoded` included, is base64.
pub fn is_text_content_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return false };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(essence.as_str(), "application/json" | "application/xml" | "application/javascript")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// The HTTP response API Gateway returns for a function's response `payload`.
pub fn from_response(payload: &[u8]) -> http::Response<Bytes> {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return internal_server_error();
    };
    match value {
        Value::Object(object) if object.contains_key("statusCode") => {
            structured_response(&object).unwrap_or_else(|_| internal_server_error())
        }
        Value::String(text) => json_response(StatusCode::OK, Bytes::from(text)),
        _ => json_response(StatusCode::OK, Bytes::copy_from_slice(payload)),
    }
}

/// API Gateway's answer when the integration's response cannot be used.
pub fn internal_server_error() -> http::Response<Bytes> {
    json_response(StatusCode::INTERNAL_SERVER_ERROR, Bytes::from_static(br#"{"message":"Internal Server Error"}"#))
}

fn json_response(status: StatusCode, body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Why a structured response was rejected (only ever turned into a 500).
#[derive(Debug)]
struct Malformed;

fn structured_response(object: &Map<String, Value>) -> Result<http::Response<Bytes>, Malformed> {
    let status = match &object["statusCode"] {
        Value::Number(n) => n.as_u64().ok_or(Malformed)?,
        Value::String(s) => s.trim().parse::<u64>().map_err(|_| Malformed)?,
        _ => return Err(Malformed),
    };
    let status = u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).ok_or(Malformed)?;
    if status.as_u16() < 100 {
        return Err(Malformed);
    }

    let mut headers = HeaderMap::new();
    if let Some(Value::Object(map)) = object.get("headers") {
        for (name, value) in map {
            if let Some(text) = scalar_text(value) {
                headers.append(header_name(name)?, header_value(&text)?);
            }
        }
    }
    if let Some(Value::Object(map)) = object.get("multiValueHeaders") {
        for (name, values) in map {
            let Value::Array(values) = values else { continue };
            for value in values {
                if let Some(text) = scalar_text(value) {
                    headers.append(header_name(name)?, header_value(&text)?);
                }
            }
        }
    }
    if let Some(Value::Array(cookies)) = object.get("cookies") {
        for cookie in cookies {
            if let Some(text) = scalar_text(cookie) {
                headers.append(http::header::SET_COOKIE, header_value(&text)?);
            }
        }
    }

    let base64_encoded = matches!(object.get("isBase64Encoded"), Some(Value::Bool(true)));
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if base64_encoded => {
            Bytes::from(base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| Malformed)?)
        }
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };

    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn header_name(name: &str) -> Result<HeaderName, Malformed> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| Malformed)
}

fn header_value(value: &str) -> Result<HeaderValue, Malformed> {
    HeaderValue::from_str(value).map_err(|_| Malformed)
}

/// The headers API Gateway adds on its way to the integration.
fn add_gateway_headers(headers: &mut BTreeMap<String, String>, parts: &http::request::Parts, ctx: &EventContext) {
    match headers.get_mut("x-forwarded-for") {
        Some(chain) => {
            chain.push_str(", ");
            chain.push_str(&ctx.source_ip);
        }
        None => {
            headers.insert("x-forwarded-for".into(), ctx.source_ip.clone());
        }
    }
    let scheme = parts.uri.scheme_str().unwrap_or("http").to_owned();
    let port = parts
        .uri
        .port_u16()
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            host.parse::<http::uri::Authority>().ok()?.port_u16()
        })
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    headers.insert("x-forwarded-proto".into(), scheme);
    headers.insert("x-forwarded-port".into(), port.to_string());
    headers.entry("x-amzn-trace-id".into()).or_insert_with(|| trace_id(ctx));
}

/// An X-Ray root trace id (`Root=1-<epoch seconds hex>-<96 bits hex>`), derived from the
/// request id so the same request always gets the same id.
fn trace_id(ctx: &EventContext) -> String {
    let seconds = ctx.time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let digest = Sha256::digest(ctx.request_id.as_bytes());
    format!("Root=1-{:08x}-{}", seconds as u32, hex::encode(&digest[..12]))
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `25/Nov/2026:02:30:00 +0000`, API Gateway's `requestContext.time`.
pub fn clf_time(time: SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    let month = time.month().to_string();
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        time.day(),
        &month[..3],
        time.year(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// The percent-decoded path, as HTTP APIs put it in `rawPath` (invalid UTF-8 is replaced).
fn decode_path(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests;
