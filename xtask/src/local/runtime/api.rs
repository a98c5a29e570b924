//! The Runtime API server: one HTTP server for every instance, told apart by the path prefix
//! in their `AWS_LAMBDA_RUNTIME_API`.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

pub(super) type ApiResponse = Response<Full<Bytes>>;

pub(super) async fn serve(listener: TcpListener, shared: Weak<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The routes, under each instance's prefix `/<instance-id>`.
pub(super) enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
}

pub(super) fn route(method: &Method, path: &str) -> Option<(String, Route)> {
    let rest = path.strip_prefix('/')?;
    let (instance, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix(API_VERSION)?.strip_prefix("/runtime/")?;
    let route = match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        (&Method::GET, ["invocation", "next"]) => Route::Next,
        (&Method::POST, ["invocation", id, "response"]) => Route::Response((*id).to_owned()),
        (&Method::POST, ["invocation", id, "error"]) => Route::Error((*id).to_owned()),
        (&Method::POST, ["init", "error"]) => Route::InitError,
        _ => return None,
    };
    Some((instance.to_owned(), route))
}

pub(super) async fn handle(shared: Weak<Shared>, request: Request<Incoming>) -> Result<ApiResponse, Infallible> {
    if let Err(refusal) = loopback::check_headers(request.headers()) {
        tracing::warn!("Runtime API {} {} -> 403: {refusal}", request.method(), request.uri().path());
        return Ok(api_error(StatusCode::FORBIDDEN, "AccessDenied", &refusal));
    }
    let Some((instance_id, route)) = route(request.method(), request.uri().path()) else {
        return Ok(api_error(StatusCode::NOT_FOUND, "InvalidRequest", "unknown Runtime API path"));
    };
    let instance = shared.upgrade().and_then(|shared| shared.instances.lock().unwrap().get(&instance_id).cloned());
    let Some(instance) = instance else {
        return Ok(api_error(StatusCode::FORBIDDEN, "InvalidInstance", "no such instance (it was stopped)"));
    };
    Ok(match route {
        Route::Next => next(&instance).await,
        Route::Response(id) => {
            let body = match read_body(request, MAX_RESPONSE_BYTES).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    complete(
                        &instance,
                        &id,
                        Reply::Error {
                            error_type: "Function.ResponseSizeTooLarge".into(),
                            error_message: format!(
                                "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                            ),
                        },
                    );
                    return Ok(api_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                    ));
                }
                Err(BodyError::Read) => {
                    return Ok(api_error(StatusCode::BAD_REQUEST, "InvalidRequest", "unreadable body"))
                }
            };
            if complete(&instance, &id, Reply::Response(body)) {
                accepted()
            } else {
                api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
            }
        }
        Route::Error(id) => {
            let header_type = error_type_header(&request);
            let body = read_body(request, MAX_RESPONSE_BYTES).await.unwrap_or_default();
            let (error_type, error_message) = diagnostic(&body, header_type);
            if complete(&instance, &id, Reply::Error { error_type, error_message }) {
                accepted()
            } else {
                api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
            }
        }
        Route::InitError => {
            let header_type = error_type_header(&request);
            let body = read_body(request, MAX_RESPONSE_BYTES).await.unwrap_or_default();
            let (error_type, error_message) = diagnostic(&body, header_type);
            instance.log.line(&format!("INIT_REPORT instance {} Status: error\tErrorType: {error_type}", instance.id));
            let reply = {
                let mut state = instance.state.lock().unwrap();
                state.init_error = Some((error_type.clone(), error_message.clone()));
                state.current.as_mut().and_then(|c| c.reply.take())
            };
            if let Some(reply) = reply {
                let _ = reply.send(Reply::InitError { error_type, error_message });
            }
            accepted()
        }
    })
}

/// `GET /next`: waits for this instance's next event.
pub(super) async fn next(instance: &Arc<Instance>) -> ApiResponse {
    instance.state.lock().unwrap().first_next.get_or_insert_with(Instant::now);
    let event = {
        let mut events = instance.events_rx.lock().await;
        events.recv().await
    };
    let Some(event) = event else {
        return api_error(StatusCode::GONE, "InstanceStopped", "the instance is stopping");
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + event.timeout;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &event.request_id)
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", &event.arn)
        .header("lambda-runtime-trace-id", &event.trace_id)
        .body(Full::new(event.payload))
        .expect("valid response parts");
    let delivered = {
        let mut state = instance.state.lock().unwrap();
        state.current.as_mut().filter(|c| c.request_id == event.request_id).and_then(|c| c.delivered.take())
    };
    if let Some(delivered) = delivered {
        let _ = delivered.send(());
    }
    response
}

/// Hands the function's answer to the waiting invoker; false for an unknown request id.
pub(super) fn complete(instance: &Instance, request_id: &str, reply: Reply) -> bool {
    let sender = {
        let mut state = instance.state.lock().unwrap();
        let sender = state.current.as_mut().filter(|c| c.request_id == request_id).and_then(|c| c.reply.take());
        if sender.is_some() {
            state.first_response.get_or_insert_with(Instant::now);
        }
        sender
    };
    match sender {
        Some(sender) => {
            let _ = sender.send(reply);
            true
        }
        None => false,
    }
}

pub(super) enum BodyError {
    TooLarge,
    Read,
}

pub(super) async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

pub(super) fn error_type_header(request: &Request<Incoming>) -> Option<String> {
    request.headers().get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `errorType` and `errorMessage` of an error report (the body's, else the header's type and
/// the body as the message).
pub(super) fn diagnostic(body: &[u8], header_type: Option<String>) -> (String, String) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Diagnostic {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Diagnostic>(body).ok();
    let error_type =
        parsed.as_ref().and_then(|d| d.error_type.clone()).or(header_type).unwrap_or_else(|| "Unhandled".to_owned());
    let error_message =
        parsed.and_then(|d| d.error_message).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    (error_type, error_message)
}

pub(super) fn accepted() -> ApiResponse {
    json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

pub(super) fn api_error(status: StatusCode, error_type: &str, message: &str) -> ApiResponse {
    json_response(status, serde_json::json!({"errorType": error_type, "errorMessage": message}))
}

pub(super) fn json_response(status: StatusCode, body: serde_json::Value) -> ApiResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response parts")
}
