//! What the failure of an SDK call means: whether the request may have been applied (see
//! [`fate`]), and what went wrong in terms a person can act on (see [`Cause`]).

use std::error::Error as StdError;
use std::io::ErrorKind;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The error codes AWS services answer a throttled request with. A throttled request was not
/// applied.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

/// The error codes of a request refused for its credentials or their permissions.
pub const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// Whether a failed request may have changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It was not applied and the same request may succeed later: the connection was
    /// refused, or the service throttled it.
    NotApplied,
    /// The service answered and refused it (a client error): the same request fails the same
    /// way.
    Refused,
    /// No answer, a broken one, or a server error: it may have been applied.
    Unknown,
}

/// What a failed call's error says about the request.
pub fn fate<E: ProvideErrorMetadata + StdError + 'static>(error: &SdkError<E, HttpResponse>) -> Fate {
    match error {
        SdkError::ConstructionFailure(_) => Fate::Refused,
        SdkError::DispatchFailure(_) if connection_refused(error) || missing_credentials(error) => Fate::NotApplied,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Fate::Unknown,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            if status == 429 || error.code().is_some_and(|code| THROTTLING_CODES.contains(&code)) {
                Fate::NotApplied
            } else if status >= 500 {
                Fate::Unknown
            } else {
                Fate::Refused
            }
        }
        _ => Fate::Unknown,
    }
}

/// Why a call failed, in the terms a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The default chain found no credentials, or could not load them.
    NoCredentials { detail: String },
    /// The endpoint refused the connection or could not be reached.
    Unreachable,
    /// No answer within the call's timeout.
    TimedOut,
    /// The credentials are not allowed to do this.
    Denied { code: String, message: String },
    /// Still throttled after every retry.
    Throttled,
    /// Anything else.
    Other,
}

/// Why `error` happened.
pub fn cause<E: ProvideErrorMetadata + StdError + 'static>(error: &SdkError<E, HttpResponse>) -> Cause {
    if let Some(credentials) = find_in_chain::<CredentialsError>(error) {
        // "Not loaded" lists every provider tried, one per line: the message names them.
        let detail = match credentials {
            CredentialsError::CredentialsNotLoaded(_) => "none of them was configured".to_owned(),
            _ => chain(credentials).last().and_then(|last| last.lines().next()).unwrap_or_default().to_owned(),
        };
        return Cause::NoCredentials { detail };
    }
    if let Some(code) = error.code() {
        if DENIED_CODES.contains(&code) {
            return Cause::Denied { code: code.to_owned(), message: error.message().unwrap_or_default().to_owned() };
        }
        if THROTTLING_CODES.contains(&code) {
            return Cause::Throttled;
        }
    }
    match error {
        SdkError::TimeoutError(_) => Cause::TimedOut,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Cause::TimedOut,
        SdkError::DispatchFailure(_) if unreachable(error) => Cause::Unreachable,
        SdkError::ServiceError(service) if service.raw().status().as_u16() == 429 => Cause::Throttled,
        _ => Cause::Other,
    }
}

/// The endpoint this run talks to, for messages: set once the clients are built.
static ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the endpoint messages name (the first one set wins: one run, one cloud).
pub fn set_endpoint(endpoint: &str) {
    let _ = ENDPOINT.set(endpoint.to_owned());
}

fn endpoint() -> &'static str {
    ENDPOINT.get().map_or("the AWS endpoint", String::as_str)
}

/// What went wrong with a call that got no usable answer, and what to do, in one or two
/// lines: no credentials, an endpoint that cannot be reached, no answer in time, access
/// denied, throttled past the retries; otherwise the service's code and message, or the
/// causes in a row. The SDK's debug form is logged at `XTASK_LOG=debug` only.
pub fn explain<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    tracing::debug!("{:?}", error);
    match cause(error) {
        Cause::NoCredentials { detail } => format!(
            "no AWS credentials: the default chain (environment variables, AWS_PROFILE and ~/.aws, SSO, web \
             identity, container and instance metadata) found none: {detail}.\n  Set AWS_PROFILE, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; to use the local cloud instead, pass `--env local`"
        ),
        Cause::Unreachable => {
            let reason = chain(error).last().cloned().unwrap_or_default();
            let endpoint = endpoint();
            if super::is_local_endpoint(endpoint) {
                format!(
                    "cannot connect to {endpoint} ({reason}): is the local cloud running? \
                     `cargo xtask local up` starts it"
                )
            } else {
                format!("cannot connect to {endpoint} ({reason}): check the network, and AWS_ENDPOINT_URL if set")
            }
        }
        Cause::TimedOut => format!(
            "no answer from {} within the call's timeout: it is stalled or overloaded; run again later \
             ({}=<ms> sets a longer attempt timeout)",
            endpoint(),
            super::ATTEMPT_TIMEOUT_ENV
        ),
        Cause::Denied { code, message } => {
            format!("{code}: {message}\n  The credentials in use are not allowed this call on this resource")
        }
        Cause::Throttled => "throttled, and still throttled after every retry; wait a minute and run again".to_owned(),
        Cause::Other => match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            (None, _) => match error {
                SdkError::ServiceError(service) => {
                    format!("HTTP {} without an error code", service.raw().status().as_u16())
                }
                _ => chain(error).join(": "),
            },
        },
    }
}

fn connection_refused(error: &(dyn StdError + 'static)) -> bool {
    find_in_chain::<std::io::Error>(error).is_some_and(|io| io.kind() == ErrorKind::ConnectionRefused)
}

fn missing_credentials(error: &(dyn StdError + 'static)) -> bool {
    find_in_chain::<CredentialsError>(error).is_some()
}

/// A connection that could not be made: refused, no route, or a name that does not resolve.
fn unreachable(error: &(dyn StdError + 'static)) -> bool {
    let io_kind = find_in_chain::<std::io::Error>(error).map(std::io::Error::kind);
    matches!(
        io_kind,
        Some(
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable
        )
    ) || chain(error).iter().any(|message| message.contains("dns error") || message.contains("failed to lookup"))
}

/// The first error of type `T` in `error`'s source chain, `error` included.
fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// The messages of `error` and its sources, outermost first.
fn chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        messages.push(error.to_string());
        current = error.source();
    }
    messages
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type TestError = SdkError<ErrorMetadata, HttpResponse>;

    fn answered(status: u16, code: &str) -> TestError {
        let metadata = ErrorMetadata::builder().code(code).message("said the service").build();
        let response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(metadata, response)
    }

    fn io(kind: ErrorKind) -> TestError {
        SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::new(kind, "from the socket"))))
    }

    #[test]
    fn a_lost_or_failed_answer_may_have_been_applied_and_a_refusal_was_not() {
        assert_eq!(fate(&io(ErrorKind::ConnectionReset)), Fate::Unknown);
        assert_eq!(fate(&SdkError::<ErrorMetadata, HttpResponse>::timeout_error("slow")), Fate::Unknown);
        assert_eq!(fate(&answered(503, "ServiceUnavailable")), Fate::Unknown);
        assert_eq!(fate(&io(ErrorKind::ConnectionRefused)), Fate::NotApplied);
        assert_eq!(fate(&answered(429, "TooManyRequestsException")), Fate::NotApplied);
        assert_eq!(fate(&answered(400, "ThrottlingException")), Fate::NotApplied);
        assert_eq!(fate(&answered(400, "BadRequestException")), Fate::Refused);
    }

    #[test]
    fn causes_are_told_apart() {
        assert_eq!(cause(&io(ErrorKind::ConnectionRefused)), Cause::Unreachable);
        assert_eq!(cause(&SdkError::<ErrorMetadata, HttpResponse>::timeout_error("slow")), Cause::TimedOut);
        assert_eq!(cause(&answered(429, "TooManyRequestsException")), Cause::Throttled);
        assert_eq!(
            cause(&answered(403, "AccessDeniedException")),
            Cause::Denied { code: "AccessDeniedException".into(), message: "said the service".into() }
        );
        let no_credentials = SdkError::<ErrorMetadata, HttpResponse>::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded("no providers in chain provided credentials")),
            None,
        ));
        assert!(matches!(cause(&no_credentials), Cause::NoCredentials { .. }), "{:?}", cause(&no_credentials));
        assert_eq!(fate(&no_credentials), Fate::NotApplied);
        assert_eq!(cause(&answered(404, "NotFoundException")), Cause::Other);
    }
}
