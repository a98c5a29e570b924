//! The `Host` check every server of the local cloud makes (the data plane, the Lambda Runtime
//! API and the face-analysis service): a request is served only when it is addressed to this
//! machine by a loopback name or address.
//!
//! These servers listen on loopback, but a web page the user visits can still reach them
//! through DNS rebinding: its own name, re-pointed at 127.0.0.1, makes the browser send the
//! page's requests here with `Host: <the page's name>`. Refusing every other `Host` closes
//! that door; no page can make a browser send `Host: 127.0.0.1`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether a `Host` header value names this machine: `localhost` or a name under
/// `.localhost` (which resolve to loopback only, RFC 6761), an IPv4 address in
/// `127.0.0.0/8`, or `[::1]`, each with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else { return false };
        return is_port_suffix(after) && address.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port_suffix(&format!(":{port}")) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Nothing, or `:` and a port number.
fn is_port_suffix(text: &str) -> bool {
    text.is_empty() || text.strip_prefix(':').is_some_and(|port| !port.is_empty() && port.parse::<u16>().is_ok())
}

/// Checks the `Host` header among a request's `headers`; the error says why the request is
/// refused, for the server's log and the refusal's body.
pub fn check_headers(headers: &http::HeaderMap) -> Result<(), String> {
    check_host(headers.get(http::header::HOST).and_then(|value| value.to_str().ok()))
}

/// Checks a request's `Host` header (`None` when it has none or it is not text).
pub fn check_host(host: Option<&str>) -> Result<(), String> {
    match host {
        Some(host) if is_loopback_host(host) => Ok(()),
        Some(host) => Err(format!(
            "refused a request for Host {host:?}: this local service answers only requests addressed to this \
             machine (localhost, 127.0.0.1 or [::1]), a guard against DNS rebinding"
        )),
        None => Err("refused a request without a Host header: this local service answers only requests addressed \
                     to this machine (localhost, 127.0.0.1 or [::1])"
            .to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_are_accepted_with_or_without_a_port() {
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "localhost.",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:4566",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
        ] {
            assert!(is_loopback_host(host), "{host}");
            assert_eq!(check_host(Some(host)), Ok(()));
        }
    }

    #[test]
    fn every_other_host_is_refused_with_the_reason() {
        for host in [
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:3000",
            "0.0.0.0:3000",
            "192.168.1.2",
            "[::2]:3000",
            "[::1",
            "localhost:",
            "localhost:99999",
            "localhost:3000:1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        let refusal = check_host(Some("evil.example")).unwrap_err();
        assert!(refusal.contains("\"evil.example\"") && refusal.contains("DNS rebinding"), "{refusal}");
        assert!(check_host(None).unwrap_err().contains("without a Host header"));
        let mut headers = http::HeaderMap::new();
        assert!(check_headers(&headers).is_err(), "no Host header");
        headers.insert(http::header::HOST, http::HeaderValue::from_static("127.0.0.1:3000"));
        assert_eq!(check_headers(&headers), Ok(()));
    }
}
