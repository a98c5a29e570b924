//! Minimal HTTP/1.1 probes for health checks: no dependencies and no runtime, because `up`,
//! `status` and `down` are synchronous.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Whether anything accepts connections at `address`.
pub fn listens(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// A GET: the status code and body.
pub fn http_get(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    http_request(address, "GET", path, timeout)
}

/// An empty `POST` to `address`; (status, body).
pub fn http_post(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    http_request(address, "POST", path, timeout)
}

fn http_request(address: SocketAddr, method: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}
