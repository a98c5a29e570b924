//! SDK errors, as the service's error code and message.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// An error of any SDK call.
pub(crate) type CallError<E> = SdkError<E, HttpResponse>;

/// The service's error code, e.g. `NoSuchEntity`; `None` for transport and timeout errors.
pub(crate) fn code<E: ProvideErrorMetadata>(error: &CallError<E>) -> Option<&str> {
    error.code()
}

/// Whether the service answered with one of `codes`.
pub(crate) fn is<E: ProvideErrorMetadata>(error: &CallError<E>, codes: &[&str]) -> bool {
    code(error).is_some_and(|code| codes.contains(&code))
}

/// `<code>: <message>` when the service answered, the HTTP status when it answered without
/// a body (S3 HEAD requests), otherwise what happened and what to do (see
/// [`crate::aws::error::explain`]).
pub(crate) fn describe<E>(error: &CallError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::aws::error::explain(error)
}
