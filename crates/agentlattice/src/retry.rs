//! Retry policy: which failures are retried (contract §1.2 and §4), how long to wait, and
//! `Retry-After`.

use std::time::Duration;

use rand::Rng;

use crate::error::MAX_RETRY_AFTER_SECS;

/// How a client retries a failed attempt: exponential backoff with full jitter, at least the
/// server's `Retry-After`.
///
/// The delay before retry *n* (1-based) is drawn uniformly from
/// `[0, min(max_delay, base_delay × 2ⁿ⁻¹)]`, then raised to `Retry-After` when the response sent
/// one. A `Retry-After` longer than `max_retry_after` is not waited for inside the call: the error
/// goes back to the caller, who knows better (a controller requeues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, base 200 ms, cap 10 s, `Retry-After` waited up to 60 s.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The default policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// One attempt, no retry.
    pub fn no_retries() -> Self {
        Self::default().max_attempts(1)
    }

    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff's first ceiling.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The backoff's largest ceiling.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The longest `Retry-After` (or closed shared gate) a call waits for before giving up with the
    /// error. Also bounds how long a call waits at the shared gate.
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// See [`RetryPolicy::max_retry_after`].
    pub fn retry_after_limit(&self) -> Duration {
        self.max_retry_after
    }

    /// The upper bound of the jittered delay before retry `retry` (1-based):
    /// `min(max_delay, base_delay × 2^(retry−1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        self.base_delay
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A full-jitter delay before retry `retry` (1-based): uniform in `[0, backoff_ceiling]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        if ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// The wait before retry `retry`: the jittered backoff, raised to `retry_after` when given.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(retry);
        match retry_after {
            Some(ra) => backoff.max(ra),
            None => backoff,
        }
    }
}

/// How an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptFailure {
    /// The server answered with this non-2xx status.
    Status(u16),
    /// The request never left (connection refused, connect timeout, DNS, TLS handshake).
    NotSent,
    /// The request may have reached the server (timeout or connection error after sending).
    MaybeSent,
}

/// Contract §1.2/§4: 429 and 503 never committed and are always retried; connect errors (request
/// not sent) too. 500, 502, 504 and failures after sending may have committed: retried only for
/// idempotent calls. Everything else (4xx, other statuses) is final.
pub(crate) fn should_retry(failure: AttemptFailure, idempotent: bool) -> bool {
    match failure {
        AttemptFailure::Status(429 | 503) => true,
        AttemptFailure::Status(500 | 502 | 504) => idempotent,
        AttemptFailure::Status(_) => false,
        AttemptFailure::NotSent => true,
        AttemptFailure::MaybeSent => idempotent,
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, relative to `now`; a date in the past means 0). Values are
/// clamped to a day. Anything else gives `None`.
pub(crate) fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let delta = at.duration_since(now);
    if delta.is_negative() {
        return Some(Duration::ZERO);
    }
    let delta = Duration::try_from(delta).ok()?;
    Some(delta.min(Duration::from_secs(MAX_RETRY_AFTER_SECS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptFailure::*;

    #[test]
    fn classification_follows_the_contract() {
        // (failure, retried when idempotent, retried when not)
        let table = [
            (Status(429), true, true),
            (Status(503), true, true),
            (NotSent, true, true),
            (Status(500), true, false),
            (Status(502), true, false),
            (Status(504), true, false),
            (MaybeSent, true, false),
            (Status(400), false, false),
            (Status(401), false, false),
            (Status(403), false, false),
            (Status(404), false, false),
            (Status(409), false, false),
            (Status(413), false, false),
            (Status(422), false, false),
            (Status(501), false, false),
            (Status(302), false, false),
        ];
        for (failure, idem, not_idem) in table {
            assert_eq!(should_retry(failure, true), idem, "{failure:?} idempotent");
            assert_eq!(
                should_retry(failure, false),
                not_idem,
                "{failure:?} not idempotent"
            );
        }
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy::new()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(2), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(3), Duration::from_millis(400));
        assert_eq!(p.backoff_ceiling(4), Duration::from_millis(800));
        assert_eq!(p.backoff_ceiling(5), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(1000), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(100));
    }

    #[test]
    fn backoff_stays_within_bounds_and_jitters() {
        let p = RetryPolicy::new()
            .base_delay(Duration::from_millis(50))
            .max_delay(Duration::from_millis(300));
        for retry in 1..10 {
            let ceiling = p.backoff_ceiling(retry);
            let samples: Vec<_> = (0..200).map(|_| p.backoff(retry)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "retry {retry}");
            // Full jitter: the samples spread over the range (not all equal to the ceiling).
            let distinct = samples
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            assert!(distinct > 10, "retry {retry}: {distinct} distinct");
        }
        let zero = RetryPolicy::new().base_delay(Duration::ZERO);
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    #[test]
    fn delay_is_at_least_retry_after() {
        let p = RetryPolicy::new()
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(20));
        for _ in 0..50 {
            assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
            assert!(p.delay(1, None) <= Duration::from_millis(10));
        }
    }

    #[test]
    fn attempts_are_at_least_one() {
        assert_eq!(RetryPolicy::new().max_attempts(0).attempts(), 1);
        assert_eq!(RetryPolicy::no_retries().attempts(), 1);
        assert_eq!(RetryPolicy::default().attempts(), 4);
    }

    #[test]
    fn retry_after_seconds() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(MAX_RETRY_AFTER_SECS))
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_http_date() {
        let now: jiff::Timestamp = "2015-10-21T07:27:50Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        // In the past: no wait.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Far future: clamped.
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now),
            Some(Duration::from_secs(MAX_RETRY_AFTER_SECS))
        );
    }
}
