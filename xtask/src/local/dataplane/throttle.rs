//! Stage throttling as API Gateway applies it: a token bucket per route of a stage, as large
//! as the route's burst and refilled at its rate. A request that finds the bucket empty is
//! answered `429 {"message":"Too Many Requests"}` without reaching the function.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::local::discovery::Limit;

/// The buckets of every throttled route, by API id, stage and route key.
#[derive(Debug, Default)]
pub(super) struct Buckets {
    buckets: Mutex<HashMap<(String, String, String), Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    limit: Limit,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(limit: Limit, now: Instant) -> Self {
        Self { limit, tokens: f64::from(limit.burst), refilled: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.rate).min(f64::from(self.limit.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Buckets {
    /// Whether a request to the route `key` under `limit` may pass at `now`. A route whose
    /// limit changed (a deploy) starts again with a full bucket of the new size.
    pub(super) fn admit(&self, key: (&str, &str, &str), limit: Limit, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap();
        let key = (key.0.to_owned(), key.1.to_owned(), key.2.to_owned());
        let bucket = buckets.entry(key).or_insert_with(|| Bucket::full(limit, now));
        if bucket.limit != limit {
            *bucket = Bucket::full(limit, now);
        }
        bucket.take(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KEY: (&str, &str, &str) = ("api", "$default", "GET /upload-url");

    #[test]
    fn a_burst_passes_and_the_next_request_is_throttled() {
        let (buckets, now) = (Buckets::default(), Instant::now());
        let limit = Limit { rate: 10.0, burst: 3 };
        let admitted: Vec<bool> = (0..5).map(|_| buckets.admit(KEY, limit, now)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
    }

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_the_burst() {
        let (buckets, now) = (Buckets::default(), Instant::now());
        let limit = Limit { rate: 10.0, burst: 2 };
        assert!(buckets.admit(KEY, limit, now) && buckets.admit(KEY, limit, now));
        assert!(!buckets.admit(KEY, limit, now));
        // 10 per second: one token per 100 ms.
        assert!(buckets.admit(KEY, limit, now + Duration::from_millis(100)));
        assert!(!buckets.admit(KEY, limit, now + Duration::from_millis(150)));
        // A long pause refills only up to the burst.
        let later = now + Duration::from_secs(60);
        let admitted = (0..4).filter(|_| buckets.admit(KEY, limit, later)).count();
        assert_eq!(admitted, 2);
    }

    #[test]
    fn routes_have_buckets_of_their_own_and_a_new_limit_starts_full() {
        let (buckets, now) = (Buckets::default(), Instant::now());
        let limit = Limit { rate: 1.0, burst: 1 };
        assert!(buckets.admit(KEY, limit, now));
        assert!(!buckets.admit(KEY, limit, now));
        assert!(buckets.admit(("api", "$default", "POST /analyze"), limit, now));
        assert!(buckets.admit(KEY, Limit { rate: 1.0, burst: 2 }, now), "a deploy that changed the limit");
    }
}
