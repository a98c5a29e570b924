use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request};

use super::*;

fn config() -> Config {
    Config::from_vars(|_| None).unwrap()
}

fn request(method: &str, path: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://example.com{path}"))
        .body(Body::Empty)
        .unwrap()
}

fn text(body: &Body) -> &str {
    match body {
        Body::Text(text) => text,
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// The contents of the page's one `<tag>` element.
fn inline(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = page.find(&open).unwrap_or_else(|| panic!("no <{tag}>")) + open.len();
    let end = start + page[start..].find(&format!("</{tag}>")).unwrap();
    page[start..end].to_owned()
}

#[test]
fn get_slash_serves_the_whole_page_as_html() {
    let response = respond(&config(), &request("GET", "/"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let page = text(response.body());
    assert!(page.starts_with("<!doctype html>"));
    assert!(!page.contains("{{"), "a placeholder was left unfilled");
    assert!(page.contains(&format!("data-max-bytes=\"{}\"", api_common::MAX_IMAGE_BYTES)));
    assert_eq!(inline(page, "script"), SCRIPT);
    assert_eq!(inline(page, "style"), STYLE);
}

#[test]
fn the_page_is_under_50_kb_and_loads_nothing_from_elsewhere() {
    let config = config();
    let page = config.page();
    assert!(page.len() < 50 * 1024, "the page is {} bytes", page.len());
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let value = &page[at + attribute.len()..];
            assert!(
                value.starts_with("data:") || value.starts_with('"'),
                "the page loads {}",
                &value[..40.min(value.len())]
            );
        }
    }
    assert!(!page.contains("@import") && !page.contains("url("), "the style loads a resource");
    assert!(!page.contains("://"), "the page names another site");
}

#[test]
fn the_page_refuses_what_the_environment_would_not_sign() {
    let limit = |value: Option<&'static str>| {
        Config::from_vars(move |name| (name == MAX_UPLOAD_BYTES_ENV).then_some(value?.to_owned()))
    };
    let five_mib = limit(Some("5242880")).unwrap();
    assert_eq!(five_mib.max_upload_bytes, 5 * 1024 * 1024);
    assert!(five_mib.page().contains("data-max-bytes=\"5242880\""));
    assert_ne!(five_mib.etag, config().etag, "another page, another entity tag");
    assert_eq!(limit(None).unwrap().max_upload_bytes, api_common::MAX_IMAGE_BYTES as u64);
    for bad in ["0", "15728641", "lots"] {
        let error = limit(Some(bad)).unwrap_err();
        assert!(error.to_string().contains(MAX_UPLOAD_BYTES_ENV), "{error}");
    }
}

#[test]
fn the_content_security_policy_allows_exactly_the_inline_style_and_script() {
    let response = respond(&config(), &request("GET", "/"));
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    let page = text(response.body());
    let hash = |text: &str| format!("'sha256-{}'", sha256_base64(text));
    assert!(policy.contains(&format!("script-src {};", hash(&inline(page, "script")))), "{policy}");
    assert!(policy.contains(&format!("style-src {};", hash(&inline(page, "style")))), "{policy}");
    assert!(policy.starts_with("default-src 'none';"));
    assert!(policy.contains("connect-src 'self' https://*.amazonaws.com;"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"));
    assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[test]
fn uploads_may_go_to_the_s3_endpoint_the_function_is_given() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    };
    let local = Config::from_vars(vars(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4567/"),
    ]))
    .unwrap();
    assert_eq!(local.upload_origin, "http://127.0.0.1:4567");
    let emulator = Config::from_vars(vars(&[("AWS_ENDPOINT_URL", "https://localhost:4566/path?x#y")])).unwrap();
    assert_eq!(emulator.upload_origin, "https://localhost:4566");
    assert_eq!(config().upload_origin, AWS_UPLOAD_ORIGIN);

    let error = Config::from_vars(vars(&[("AWS_ENDPOINT_URL_S3", "localhost:4567")])).unwrap_err();
    assert!(
        error.to_string().contains("AWS_ENDPOINT_URL_S3=\"localhost:4567\" is not an http:// or https:// URL"),
        "{error}"
    );
}

#[test]
fn a_browser_holding_the_current_page_gets_304() {
    let first = respond(&config(), &request("GET", "/"));
    let etag = first.headers()[header::ETAG].clone();
    let mut again = request("GET", "/");
    again.headers_mut().insert(header::IF_NONE_MATCH, etag.clone());
    let response = respond(&config(), &again);
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(matches!(response.body(), Body::Empty));
    assert_eq!(response.headers()[header::ETAG], etag);

    let mut stale = request("GET", "/");
    stale.headers_mut().insert(header::IF_NONE_MATCH, "\"an-older-page\"".parse().unwrap());
    assert_eq!(respond(&config(), &stale).status(), StatusCode::OK);
}

#[test]
fn other_paths_and_methods_get_the_apis_json_errors() {
    let response = respond(&config(), &request("POST", "/"));
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(respond(&config(), &request("GET", "/index.html")).status(), StatusCode::NOT_FOUND);
}
