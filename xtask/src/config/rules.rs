//! The rules a value of an environment file must follow: names, regions, endpoints, buckets,
//! prefixes, tags and origins, as AWS and browsers define them.

use super::ACCOUNT_ID_PLACEHOLDER;

pub(super) fn check_project(v: &str) -> Result<(), String> {
    check_name(v, 32)
}

pub(super) fn check_env_name(v: &str) -> Result<(), String> {
    check_name(v, 32)
}

/// `[a-z0-9-]`, 1..=`max` characters, starting and ending with a letter or digit (these names
/// become parts of bucket and function names, which forbid a leading or trailing `-`).
pub(super) fn check_name(v: &str, max: usize) -> Result<(), String> {
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!("`{v}` contains `{c}`; use only lowercase letters, digits and `-`"));
    }
    if v.len() > max {
        return Err(format!("`{v}` is {} characters long; the limit is {max}", v.len()));
    }
    if v.starts_with('-') || v.ends_with('-') {
        return Err(format!("`{v}` must start and end with a letter or a digit"));
    }
    Ok(())
}

/// `xx-name-N`, as in `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`.
pub(super) fn check_region(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not an AWS region name like `eu-west-1`"))
    }
}

/// `http(s)://host[:port]`, optionally with a trailing `/`.
pub(super) fn check_endpoint(v: &str) -> Result<(), String> {
    let origin = v.strip_suffix('/').unwrap_or(v);
    parse_origin(origin)
        .map(|_| ())
        .map_err(|why| format!("`{v}` is not an endpoint URL like `http://127.0.0.1:4566`: {why}"))
}

/// Splits `scheme://host[:port]` and checks each part. Returns (scheme, port).
pub(super) fn parse_origin(v: &str) -> Result<(&str, Option<u16>), String> {
    let (scheme, rest) = v.split_once("://").ok_or_else(|| "it has no `http://` or `https://`".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme must be `http` or `https`, not `{scheme}`"));
    }
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!("it must not have a path, query or fragment (`{}`)", &rest[i..]));
    }
    if rest.contains('@') {
        return Err("it must not contain credentials".into());
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        // IPv6 literal.
        let (addr, after) = after.split_once(']').ok_or_else(|| "an IPv6 address needs a closing `]`".to_string())?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("`[{addr}]` is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            p => (addr, Some(p.strip_prefix(':').ok_or_else(|| format!("unexpected `{p}`"))?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if !rest.starts_with('[') {
        check_host(host)?;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{p}` is not a port number (1 to 65535)")),
        },
    };
    Ok((scheme, port))
}

pub(super) fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("the host `{host}` must be lowercase"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{host}` is not a valid host name"));
        }
    }
    Ok(())
}

/// S3 general-purpose bucket naming rules, with `{account_id}` standing for a 12-digit id.
pub(super) fn check_bucket(v: &str) -> Result<(), String> {
    let name = v.replace(ACCOUNT_ID_PLACEHOLDER, "123456789012");
    if name.contains(['{', '}']) {
        return Err(format!("`{v}`: the only placeholder a bucket name may contain is `{ACCOUNT_ID_PLACEHOLDER}`"));
    }
    let why = if !(3..=63).contains(&name.len()) {
        Some(if v.contains(ACCOUNT_ID_PLACEHOLDER) {
            format!(
                "it must be 3 to 63 characters long with the 12-digit account id in place of \
                 `{ACCOUNT_ID_PLACEHOLDER}`, and is {}",
                name.len()
            )
        } else {
            format!("it must be 3 to 63 characters long, and is {}", name.len())
        })
    } else if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        Some(format!("it contains `{c}`; use only lowercase letters, digits, `.` and `-`"))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("it must start and end with a letter or a digit".into())
    } else if name.contains("..") {
        Some("it must not contain two adjacent periods".into())
    } else if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        Some("it must not look like an IP address".into())
    } else if let Some(p) = ["xn--", "sthree-", "amzn-s3-demo-"].iter().find(|p| name.starts_with(*p)) {
        Some(format!("the prefix `{p}` is reserved"))
    } else {
        ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .find(|s| name.ends_with(*s))
            .map(|s| format!("the suffix `{s}` is reserved"))
    };
    match why {
        Some(why) => Err(format!("`{v}` is not a valid S3 bucket name: {why}")),
        None => Ok(()),
    }
}

/// A key prefix of S3-safe characters, `/`-separated, without empty, `.` or `..` segments.
pub(super) fn check_prefix(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.len() > 512 {
        return Err("must be at most 512 characters long".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()/".contains(*c))) {
        return Err(format!("`{v}` contains `{c}`; use letters, digits, `/` and `!-_.*'()`"));
    }
    if v.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("`{v}` must not start or end with `/`, nor contain `//`, `.` or `..` segments"));
    }
    Ok(())
}

pub(super) fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

pub(super) fn check_tag_key(v: &str) -> Result<(), String> {
    let len = v.chars().count();
    if !(1..=128).contains(&len) {
        return Err(format!("tag key `{v}` must be 1 to 128 characters long, and is {len}"));
    }
    if v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(format!("tag key `{v}`: the `aws:` prefix is reserved for AWS"));
    }
    if let Some(c) = v.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!("tag key `{v}` contains `{c}`; use letters, digits, spaces and `+-=._:/@`"));
    }
    Ok(())
}

pub(super) fn check_tag_value(v: &str) -> Result<(), String> {
    let len = v.chars().count();
    if len > 256 {
        return Err(format!("a tag value must be at most 256 characters long, and is {len}"));
    }
    if let Some(c) = v.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!("tag value `{v}` contains `{c}`; use letters, digits, spaces and `+-=._:/@`"));
    }
    Ok(())
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path, no default port.
pub(super) fn check_origin(v: &str) -> Result<(), String> {
    if let Some(without) = v.strip_suffix('/') {
        if parse_origin(without).is_ok() {
            return Err(format!("`{v}`: an origin has no path; write `{without}` (browsers send no trailing `/`)"));
        }
    }
    let (scheme, port) =
        parse_origin(v).map_err(|why| format!("`{v}` is not an origin like `https://app.example.com`: {why}"))?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    if port == Some(default_port) {
        return Err(format!("`{v}`: browsers leave the default port out of the Origin header; drop `:{default_port}`"));
    }
    Ok(())
}
