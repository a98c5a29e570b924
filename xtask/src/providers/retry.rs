//! Waiting out the cloud's eventual consistency: retries with a bounded, growing backoff, and
//! bounded polling. Throttling is not handled here: the SDK's standard retry strategy retries
//! it (see [`super::MAX_ATTEMPTS`]); except for creates whose id the server makes, which
//! [`create_once`] retries itself.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::Spec;
use crate::aws::error::{fate, Fate};
use crate::engine::provider::{Created, ProviderError};

/// Delays that start at `first`, double up to `max`, and stop once `budget` is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub budget: Duration,
}

impl Backoff {
    /// A new IAM role becomes assumable by Lambda within seconds, usually: retry densely at
    /// first (250 ms, 500 ms, 1 s, then every 2 s) for up to 40 s.
    pub const IAM_PROPAGATION: Self =
        Self { first: Duration::from_millis(250), max: Duration::from_secs(2), budget: Duration::from_secs(40) };

    /// A Lambda function busy with an update (`ResourceConflictException`), or a policy
    /// changed concurrently: retry every 1-5 s for up to 2 minutes.
    pub const LAMBDA_CONFLICT: Self =
        Self { first: Duration::from_secs(1), max: Duration::from_secs(5), budget: Duration::from_secs(120) };

    /// A create whose id the server makes, sent again after a failure that did not apply it:
    /// 0.5-5 s apart, for up to a minute.
    pub const CREATE: Self =
        Self { first: Duration::from_millis(500), max: Duration::from_secs(5), budget: Duration::from_secs(60) };

    /// The delays, in order; their sum stays within the budget.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        let mut next = self.first;
        let mut spent = Duration::ZERO;
        std::iter::from_fn(move || {
            let delay = next;
            if spent + delay > self.budget {
                return None;
            }
            spent += delay;
            next = (next * 2).min(self.max);
            Some(delay)
        })
    }
}

/// Calls `attempt` until it succeeds, fails with an error `retryable` rejects, or the
/// backoff's budget is spent; returns the last result.
pub async fn retry<T, E, Fut>(
    backoff: Backoff,
    mut attempt: impl FnMut() -> Fut,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = backoff.delays();
    loop {
        match attempt().await {
            Err(error) if retryable(&error) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            },
            result => return result,
        }
    }
}

/// How long to let a create whose answer was lost settle before looking for what it made.
const SETTLE: Duration = Duration::from_secs(1);

/// Creates a resource whose id the server makes (an API, an integration, a route), never
/// twice. `send` makes one attempt, with the SDK's retries off: a retry of a request whose
/// answer was lost would make a duplicate nobody knows about. After a failure that may have
/// been applied (no answer, a broken one, a server error), `find` looks the resource up by
/// its deterministic name or key before anything is sent again; found means adopted. Only
/// a failure that certainly changed nothing (throttled, connection refused) or an
/// ambiguous one that `find` shows changed nothing is retried, within [`Backoff::CREATE`].
pub(crate) async fn create_once<E, Attempt, Sent, Lookup, Found>(
    spec: &Spec<'_>,
    operation: &'static str,
    mut send: Attempt,
    find: Lookup,
) -> Result<Created, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    Attempt: FnMut() -> Sent,
    Sent: Future<Output = Result<Result<Created, ProviderError>, SdkError<E, HttpResponse>>>,
    Lookup: Fn() -> Found,
    Found: Future<Output = Result<Option<Created>, ProviderError>>,
{
    let mut delays = Backoff::CREATE.delays();
    loop {
        let error = match send().await {
            Ok(created) => return created,
            Err(error) => error,
        };
        match fate(&error) {
            Fate::Refused => return Err(spec.api(operation, error)),
            Fate::NotApplied => {}
            Fate::Unknown => {
                tokio::time::sleep(SETTLE).await;
                if let Some(found) = find().await? {
                    tracing::warn!(
                        "{operation} for {} {} may have been applied before it failed ({}); found {} and adopted it",
                        spec.kind,
                        spec.name,
                        super::error::describe(&error),
                        found.physical_id
                    );
                    return Ok(found);
                }
            }
        }
        match delays.next() {
            Some(delay) => {
                tracing::debug!(?delay, "{operation} for {} {} failed; sending it again", spec.kind, spec.name);
                tokio::time::sleep(delay).await;
            }
            None => return Err(spec.api(operation, error)),
        }
    }
}

/// How often and how long to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Poll {
    /// Lambda's asynchronous updates (State, LastUpdateStatus): every second, for 2 minutes.
    pub const LAMBDA_UPDATE: Self = Self { interval: Duration::from_secs(1), timeout: Duration::from_secs(120) };
}

/// Calls `check` until it returns `Ok(Some(_))` or an error; `Ok(None)` once `poll.timeout`
/// has passed without either.
pub async fn poll<T, E, Fut>(poll: Poll, mut check: impl FnMut() -> Fut) -> Result<Option<T>, E>
where
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + poll.timeout;
    loop {
        if let Some(done) = check().await? {
            return Ok(Some(done));
        }
        if Instant::now() + poll.interval > deadline {
            return Ok(None);
        }
        tokio::time::sleep(poll.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn iam_propagation_is_dense_first_and_bounded() {
        let delays: Vec<Duration> = Backoff::IAM_PROPAGATION.delays().collect();
        assert_eq!(&delays[..4], &[250, 500, 1000, 2000].map(Duration::from_millis));
        assert!(delays.iter().sum::<Duration>() <= Duration::from_secs(40));
        assert!(delays.iter().sum::<Duration>() > Duration::from_secs(37));
    }

    fn quick() -> Backoff {
        Backoff { first: Duration::from_millis(1), max: Duration::from_millis(2), budget: Duration::from_millis(20) }
    }

    #[tokio::test]
    async fn retry_stops_at_success() {
        let calls = Cell::new(0);
        let result: Result<u32, &str> = retry(
            quick(),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err("not yet")
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| true,
        )
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn retry_gives_up_on_other_errors_and_when_the_budget_is_spent() {
        let calls = Cell::new(0);
        let fatal: Result<(), &str> = retry(
            quick(),
            || {
                calls.set(calls.get() + 1);
                async { Err("fatal") }
            },
            |error| *error != "fatal",
        )
        .await;
        assert_eq!((fatal, calls.get()), (Err("fatal"), 1));

        calls.set(0);
        let spent: Result<(), &str> = retry(
            quick(),
            || {
                calls.set(calls.get() + 1);
                async { Err("again") }
            },
            |_| true,
        )
        .await;
        assert_eq!(spent, Err("again"));
        assert_eq!(calls.get(), 1 + quick().delays().count());
    }

    #[tokio::test]
    async fn poll_times_out_with_none() {
        let quick = Poll { interval: Duration::from_millis(1), timeout: Duration::from_millis(5) };
        let never: Result<Option<()>, ()> = poll(quick, || async { Ok(None) }).await;
        assert_eq!(never, Ok(None));
        let calls = Cell::new(0);
        let done: Result<Option<u32>, ()> = poll(quick, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { Ok((n == 2).then_some(n)) }
        })
        .await;
        assert_eq!(done, Ok(Some(2)));
    }
}
