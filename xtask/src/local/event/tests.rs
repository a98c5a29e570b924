use std::time::{Duration, UNIX_EPOCH};

use lambda_http::{Body, RequestExt};
use serde_json::json;

use super::*;

fn ctx(route_key: &str) -> EventContext {
    EventContext {
        api_id: "a1b2c3d4e5".into(),
        stage: "$default".into(),
        route_key: route_key.into(),
        account_id: "123456789012".into(),
        domain_name: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com".into(),
        source_ip: "192.0.2.1".into(),
        request_id: "JKJaXmPLvHcESHA=".into(),
        // 2026-11-25T02:30:00.123Z
        time: UNIX_EPOCH + Duration::from_millis(1_795_573_800_123),
        path_parameters: BTreeMap::new(),
        stage_variables: BTreeMap::new(),
    }
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Request<Bytes> {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::copy_from_slice(body)).unwrap()
}

/// Parses an event the way the deployed functions do (lambda_http's API Gateway v2 path).
fn as_lambda_http(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("lambda_http parses the event")
}

#[test]
fn get_event_matches_the_documented_format_exactly() {
    let event = to_event(
        request(
            "GET",
            "/upload-url?contentType=image%2Fpng",
            &[
                ("Host", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"),
                ("User-Agent", "curl/8.5.0"),
                ("Accept", "*/*"),
            ],
            b"",
        ),
        &ctx("GET /upload-url"),
    );
    let trace = event["headers"]["x-amzn-trace-id"].as_str().unwrap().to_owned();
    assert!(trace.starts_with("Root=1-6b064828-") && trace.len() == "Root=1-6b064828-".len() + 24, "{trace}");
    assert_eq!(
        event,
        json!({
            "version": "2.0",
            "routeKey": "GET /upload-url",
            "rawPath": "/upload-url",
            "rawQueryString": "contentType=image%2Fpng",
            "headers": {
                "accept": "*/*",
                "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "user-agent": "curl/8.5.0",
                "x-amzn-trace-id": trace,
                "x-forwarded-for": "192.0.2.1",
                "x-forwarded-port": "80",
                "x-forwarded-proto": "http",
            },
            "queryStringParameters": {"contentType": "image/png"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "a1b2c3d4e5",
                "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "a1b2c3d4e5",
                "http": {
                    "method": "GET",
                    "path": "/upload-url",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.1",
                    "userAgent": "curl/8.5.0",
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": "GET /upload-url",
                "stage": "$default",
                "time": "25/Nov/2026:02:30:00 +0000",
                "timeEpoch": 1_795_573_800_123u64,
            },
            "isBase64Encoded": false,
        })
    );
    // The same typed view the deployed function gets.
    let parsed: lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest =
        serde_json::from_value(event.clone()).expect("aws_lambda_events parses the event");
    assert_eq!(parsed.request_context.http.method, http::Method::GET);
    assert_eq!(parsed.route_key.as_deref(), Some("GET /upload-url"));
    let request = as_lambda_http(&event);
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(request.uri().path(), "/upload-url");
    assert_eq!(request.query_string_parameters().first("contentType"), Some("image/png"));
}

#[test]
fn query_strings_keep_the_raw_form_and_decode_and_join_repeated_keys() {
    let event = to_event(
        request("GET", "/search?tag=a&tag=b%20c&q=caf%C3%A9+au+lait&empty=&flag&sym=%26%3D%2B", &[], b""),
        &ctx("GET /search"),
    );
    assert_eq!(event["rawQueryString"], "tag=a&tag=b%20c&q=caf%C3%A9+au+lait&empty=&flag&sym=%26%3D%2B");
    assert_eq!(
        event["queryStringParameters"],
        json!({"tag": "a,b c", "q": "café au lait", "empty": "", "flag": "", "sym": "&=+"})
    );
    // lambda_http rebuilds the URI from rawQueryString, so repeated keys survive there.
    let request = as_lambda_http(&event);
    let params = request.query_string_parameters();
    assert_eq!(params.all("tag").unwrap(), vec!["a", "b c"]);
}

#[test]
fn no_query_string_means_empty_raw_query_and_no_parameters() {
    let event = to_event(request("GET", "/upload-url", &[], b""), &ctx("GET /upload-url"));
    assert_eq!(event["rawQueryString"], "");
    assert!(event.get("queryStringParameters").is_none());
    assert!(event.get("cookies").is_none());
    assert!(event.get("body").is_none());
    assert!(event.get("pathParameters").is_none());
    assert!(event.get("stageVariables").is_none());
}

#[test]
fn raw_path_is_percent_decoded_like_http_apis_do() {
    let event = to_event(request("GET", "/files/a%20b/%C3%A9t%C3%A9", &[], b""), &ctx("GET /files/{proxy+}"));
    assert_eq!(event["rawPath"], "/files/a b/été");
    assert_eq!(event["requestContext"]["http"]["path"], "/files/a b/été");
    // Still a request the functions can parse.
    assert_eq!(as_lambda_http(&event).uri().path(), "/files/a%20b/%C3%A9t%C3%A9");
}

#[test]
fn repeated_headers_are_joined_with_commas_and_names_lower_cased() {
    let event = to_event(
        request(
            "GET",
            "/h",
            &[("X-Custom", "one"), ("x-custom", "two"), ("Accept", "text/html"), ("accept", "application/json")],
            b"",
        ),
        &ctx("GET /h"),
    );
    assert_eq!(event["headers"]["x-custom"], "one,two");
    assert_eq!(event["headers"]["accept"], "text/html,application/json");
    assert!(event["headers"].as_object().unwrap().keys().all(|k| k == &k.to_ascii_lowercase()));
}

#[test]
fn cookies_move_from_the_header_to_the_cookies_array() {
    let event = to_event(
        request("GET", "/c", &[("Cookie", "session=abc; theme=dark"), ("Cookie", "lang=en")], b""),
        &ctx("GET /c"),
    );
    assert_eq!(event["cookies"], json!(["session=abc", "theme=dark", "lang=en"]));
    assert!(event["headers"].get("cookie").is_none());
    // lambda_http puts them back into one Cookie header.
    let request = as_lambda_http(&event);
    assert_eq!(request.headers()["cookie"], "session=abc; theme=dark; lang=en");
}

#[test]
fn forwarding_headers_extend_the_clients_chain_and_name_the_port() {
    let event = to_event(
        request("GET", "/f", &[("Host", "127.0.0.1:8080"), ("X-Forwarded-For", "203.0.113.9")], b""),
        &ctx("GET /f"),
    );
    assert_eq!(event["headers"]["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
    assert_eq!(event["headers"]["x-forwarded-port"], "8080");
    assert_eq!(event["headers"]["x-forwarded-proto"], "http");
}

#[test]
fn path_parameters_and_stage_variables_appear_when_present() {
    let mut context = ctx("GET /items/{id}");
    context.path_parameters.insert("id".into(), "42".into());
    context.stage_variables.insert("env".into(), "dev".into());
    let event = to_event(request("GET", "/items/42", &[], b""), &context);
    assert_eq!(event["pathParameters"], json!({"id": "42"}));
    assert_eq!(event["stageVariables"], json!({"env": "dev"}));
}

#[test]
fn json_and_text_bodies_are_passed_as_text() {
    let body = br#"{"fileKey":"uploads/x.jpg"}"#;
    let event = to_event(
        request("POST", "/analyze", &[("Content-Type", "application/json; charset=utf-8")], body),
        &ctx("POST /analyze"),
    );
    assert_eq!(event["body"], r#"{"fileKey":"uploads/x.jpg"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    let parsed = as_lambda_http(&event);
    assert_eq!(parsed.body(), &Body::Text(r#"{"fileKey":"uploads/x.jpg"}"#.into()));

    for content_type in
        ["text/plain", "application/xml", "application/javascript", "application/vnd.api+json", "image/svg+xml"]
    {
        let event = to_event(request_with_type(content_type, b"hello"), &ctx("POST /t"));
        assert_eq!(event["isBase64Encoded"], false, "{content_type}");
        assert_eq!(event["body"], "hello", "{content_type}");
    }
}

fn request_with_type(content_type: &str, body: &[u8]) -> http::Request<Bytes> {
    request("POST", "/t", &[("Content-Type", content_type)], body)
}

#[test]
fn binary_bodies_are_base64_encoded() {
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff];
    let event = to_event(request_with_type("image/png", &png), &ctx("POST /t"));
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "iVBORw0KGgoA/w==");
    let parsed = as_lambda_http(&event);
    assert_eq!(parsed.body(), &Body::Binary(png.to_vec()));

    // Text that is not UTF-8 cannot travel as a JSON string.
    let event = to_event(request_with_type("text/plain", &[0xff, 0xfe]), &ctx("POST /t"));
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "//4=");

    // Like real HTTP APIs: no content type, octet-stream and form posts are base64.
    for content_type in
        ["application/octet-stream", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        let event = to_event(request_with_type(content_type, b"a=1"), &ctx("POST /t"));
        assert_eq!(event["isBase64Encoded"], true, "{content_type}");
        assert_eq!(event["body"], "YT0x", "{content_type}");
    }
    let event = to_event(request("POST", "/t", &[], b"a=1"), &ctx("POST /t"));
    assert_eq!(event["isBase64Encoded"], true);
}

#[test]
fn structured_responses_use_status_headers_cookies_and_body() {
    let payload = json!({
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-count": 3, "vary": "a,b"},
        "multiValueHeaders": {"x-multi": ["1", "2"]},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": "{\"ok\":true}",
        "isBase64Encoded": false,
    });
    let response = from_response(payload.to_string().as_bytes());
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-count"], "3");
    assert_eq!(response.headers()["vary"], "a,b");
    let multi: Vec<_> = response.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2"]);
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    assert_eq!(response.body(), &Bytes::from_static(br#"{"ok":true}"#));
}

#[test]
fn base64_response_bodies_are_decoded() {
    let payload = json!({
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "body": "iVBORw0KGgoA/w==",
        "isBase64Encoded": true,
    });
    let response = from_response(payload.to_string().as_bytes());
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff]);
}

#[test]
fn lambda_http_responses_round_trip() {
    // What lambda_http serializes for an API Gateway v2 request: headers, empty multiValueHeaders,
    // cookies apart, status as a number.
    let payload = br#"{"statusCode":400,"headers":{"content-type":"application/json"},"multiValueHeaders":{},"body":"{\"error\":\"InvalidRequest\"}","isBase64Encoded":false,"cookies":[]}"#;
    let response = from_response(payload);
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers().len(), 1);
    assert_eq!(response.body(), &Bytes::from_static(br#"{"error":"InvalidRequest"}"#));
    // No body at all is an empty body.
    let response = from_response(br#"{"statusCode":204}"#);
    assert_eq!(response.status(), 204);
    assert!(response.body().is_empty());
    assert!(response.headers().is_empty());
}

#[test]
fn responses_without_status_code_are_inferred_as_200_json() {
    let response = from_response(br#"{"message":"Hello from Lambda!"}"#);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.body(), &Bytes::from_static(br#"{"message":"Hello from Lambda!"}"#));

    // A JSON string is the body itself, as in AWS's documented example.
    let response = from_response(br#""Hello from Lambda!""#);
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), &Bytes::from_static(b"Hello from Lambda!"));

    for payload in [&b"[1,2]"[..], b"42", b"null", b"true"] {
        let response = from_response(payload);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.body().as_ref(), payload);
    }
}

#[test]
fn unusable_responses_are_internal_server_errors() {
    for payload in [
        &b"not json"[..],
        b"",
        br#"{"statusCode":"abc"}"#,
        br#"{"statusCode":99}"#,
        br#"{"statusCode":1000}"#,
        br#"{"statusCode":200,"body":"%%%","isBase64Encoded":true}"#,
        br#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
    ] {
        let response = from_response(payload);
        assert_eq!(response.status(), 500, "{}", String::from_utf8_lossy(payload));
        assert_eq!(response.body(), &Bytes::from_static(br#"{"message":"Internal Server Error"}"#));
    }
    // A numeric string status is accepted.
    assert_eq!(from_response(br#"{"statusCode":"302","headers":{"location":"/x"}}"#).status(), 302);
}

#[test]
fn text_content_types() {
    assert!(is_text_content_type(Some("text/html; charset=utf-8")));
    assert!(is_text_content_type(Some("Application/JSON")));
    assert!(is_text_content_type(Some("application/problem+json")));
    assert!(!is_text_content_type(Some("image/jpeg")));
    assert!(!is_text_content_type(Some("application/x-www-form-urlencoded")));
    assert!(!is_text_content_type(None));
}

#[test]
fn clf_time_is_api_gateways_format() {
    assert_eq!(clf_time(UNIX_EPOCH + Duration::from_secs(1_583_348_638)), "04/Mar/2020:19:03:58 +0000");
}
