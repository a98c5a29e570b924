//! The `local-rekognition` binary: starts, prints its address, answers a health check and a
//! DetectFaces request over plain HTTP, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

fn http(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_binary_serves_detect_faces_and_stops_on_sigterm() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = root.join("target/local/models");
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-rekognition"))
        .args(["--listen", "127.0.0.1:0", "--models"])
        .arg(&models)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().rsplit("http://").next().unwrap().to_string();
    assert!(line.starts_with("local-rekognition listening on http://127.0.0.1:"), "{line}");

    let health = http(&address, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let rebound = http(&address, "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.1 400") && rebound.contains("AccessDeniedException"), "{rebound}");

    let photo = std::fs::read(root.join("tests/fixtures/photos/astronaut.jpg")).unwrap();
    let body = format!(
        r#"{{"Image":{{"Bytes":"{}"}},"Attributes":["ALL"]}}"#,
        base64::engine::general_purpose::STANDARD.encode(photo)
    );
    let response = http(
        &address,
        &format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Amz-Target: RekognitionService.DetectFaces\r\n\
             Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["FaceDetails"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["FaceDetails"][0]["Emotions"][0]["Type"], "HAPPY");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}
