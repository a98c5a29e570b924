//! Keeping signing secrets out of what the tool records and prints.
//!
//! A presigned URL is a bearer credential: its query carries the signature, the access key's
//! scope and, with temporary credentials, the session token. S3's refusals echo the same
//! material (`StringToSign`, `CanonicalRequest`, `SignatureProvided`). Text that may hold any
//! of it (a failed step's error, a response body) passes through [`redact`] before it is
//! kept in state or shown.

/// Query parameters whose values are secrets or lead to them.
const SECRET_PARAMETERS: [&str; 3] = ["x-amz-signature", "x-amz-security-token", "x-amz-credential"];

/// Elements of S3's error documents that echo the signed request.
const SECRET_ELEMENTS: [&str; 6] = [
    "StringToSign",
    "StringToSignBytes",
    "CanonicalRequest",
    "CanonicalRequestBytes",
    "SignatureProvided",
    "AWSAccessKeyId",
];

/// What a removed query becomes.
pub const REMOVED_QUERY: &str = "[signed query removed]";
/// What any other removed secret becomes.
pub const REMOVED: &str = "[removed]";

/// `text` with signing secrets removed: the whole query of every URL that carries a
/// signature parameter, the contents of S3's signing elements, and any signature parameter
/// left elsewhere, name and value.
pub fn redact(text: &str) -> String {
    let text = redact_signed_queries(text);
    let text = redact_elements(&text);
    redact_parameters(&text)
}

/// Characters that end a URL or a parameter's value in running text.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | ',')
}

fn redact_signed_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url_and_after = &rest[start..];
        let end = url_and_after.find(ends_token).unwrap_or(url_and_after.len());
        let url = &url_and_after[..end];
        match url.split_once('?') {
            Some((base, query)) if has_secret_parameter(query) => {
                out.push_str(base);
                out.push('?');
                out.push_str(REMOVED_QUERY);
            }
            _ => out.push_str(url),
        }
        rest = &url_and_after[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn has_secret_parameter(query: &str) -> bool {
    let query = query.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|name| query.contains(name))
}

fn redact_elements(text: &str) -> String {
    let mut text = text.to_owned();
    for element in SECRET_ELEMENTS {
        let (open, close) = (format!("<{element}>"), format!("</{element}>"));
        let mut from = 0;
        while let Some(found) = text[from..].find(&open) {
            let content = from + found + open.len();
            let end = text[content..].find(&close).map_or(text.len(), |at| content + at);
            text.replace_range(content..end, REMOVED);
            from = content + REMOVED.len();
        }
    }
    text
}

/// Any signature parameter outside a URL (a canonical request, a header dump), name and
/// value, whatever its case and whether `=` or `:` follows it.
fn redact_parameters(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some((start, name)) =
        SECRET_PARAMETERS.iter().filter_map(|name| lower[at..].find(name).map(|found| (at + found, name.len()))).min()
    {
        out.push_str(&text[at..start]);
        out.push_str(REMOVED);
        let mut end = start + name;
        if let Some(after) = text[end..].strip_prefix(['=', ':']) {
            let value = after.trim_start_matches(' ');
            let length = value.find(|c: char| ends_token(c) || matches!(c, '&' | ';')).unwrap_or(value.len());
            end = text.len() - value.len() + length;
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESIGNED: &str =
        "http://127.0.0.1:4566/bucket/uploads/a.jpg?x-id=PutObject&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=ASIAEXAMPLE%2F20261204%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261204T120000Z\
        &X-Amz-Expires=300&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLETOKEN&X-Amz-SignedHeaders=content-type%3Bhost\
        &X-Amz-Signature=0123456789abcdef";

    fn assert_clean(text: &str) {
        for secret in ["X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", "IQoJb3JpZ2luX2VjEXAMPLETOKEN"] {
            assert!(!text.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()), "{secret} in {text}");
        }
        assert!(!text.contains("0123456789abcdef") && !text.contains("ASIAEXAMPLE"), "{text}");
    }

    #[test]
    fn a_presigned_url_loses_its_query_and_keeps_where_it_points() {
        let text = format!("error sending request for url ({PRESIGNED}): connection refused");
        let redacted = redact(&text);
        assert_clean(&redacted);
        assert_eq!(
            redacted,
            format!("error sending request for url (http://127.0.0.1:4566/bucket/uploads/a.jpg?{REMOVED_QUERY}): connection refused")
        );
    }

    #[test]
    fn a_json_body_with_an_upload_url_is_cleaned() {
        let body = format!(r#"{{"uploadUrl":"{PRESIGNED}","fileKey":"uploads/a.jpg","expiresIn":300}}"#);
        let redacted = redact(&body);
        assert_clean(&redacted);
        assert!(redacted.contains(r#""fileKey":"uploads/a.jpg""#), "{redacted}");
    }

    #[test]
    fn s3s_signature_mismatch_document_is_cleaned() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature \
            we calculated does not match</Message><AWSAccessKeyId>ASIAEXAMPLE</AWSAccessKeyId><StringToSign>\
            AWS4-HMAC-SHA256\n20261204T120000Z</StringToSign><SignatureProvided>0123456789abcdef</SignatureProvided>\
            <CanonicalRequest>PUT\n/bucket/uploads/a.jpg\nX-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLETOKEN&amp;\
            X-Amz-Signature=0123456789abcdef</CanonicalRequest></Error>";
        let redacted = redact(body);
        assert_clean(&redacted);
        assert!(redacted.contains("<Code>SignatureDoesNotMatch</Code>"), "{redacted}");
    }

    #[test]
    fn stray_parameters_lose_name_and_value_in_any_case() {
        let redacted =
            redact("headers: x-amz-security-token: IQoJb3JpZ2luX2VjEXAMPLETOKEN; X-AMZ-SIGNATURE=0123456789abcdef end");
        assert_clean(&redacted);
        assert_eq!(redacted, format!("headers: {REMOVED}; {REMOVED} end"));
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for text in [
            "GET /upload-url returned 500: {\"message\":\"Internal Server Error\"}",
            "http://127.0.0.1:3000/analyze?x=1",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
