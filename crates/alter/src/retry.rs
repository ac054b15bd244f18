//! When a failed attempt is tried again, and how long to wait first.

use std::time::Duration;

use rand::Rng;

/// How a client retries: attempts in all, a full-jitter exponential backoff, and how long a
/// `Retry-After` may be before the call gives up and returns it to the caller.
///
/// ```
/// use std::time::Duration;
/// let policy = alter::RetryPolicy::new()
///     .max_attempts(5)
///     .base_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(5))
///     .max_retry_after(Duration::from_secs(30));
/// assert_eq!(policy.attempts(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts in all, base 200 ms, cap 10 s, `Retry-After` waited for up to 60 s.
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

    /// One attempt, never retried.
    pub fn no_retries() -> Self {
        Self::default().max_attempts(1)
    }

    /// Attempts in all (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The first backoff ceiling; it doubles per retry.
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The largest backoff ceiling.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The longest `Retry-After` (or closed shared gate) a call waits for inside the call.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
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

    /// `min(max_delay, base_delay · 2^(retry−1))` for retry 1, 2, …
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(30);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The wait before retry `retry`: uniform in `[0, backoff_ceiling]`, raised to `retry_after`.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let jittered = if ceiling.is_zero() {
            ceiling
        } else {
            let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rand::rng().random_range(0..=nanos))
        };
        retry_after.map_or(jittered, |ra| jittered.max(ra))
    }
}

/// How an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A rate-limit 429 (`rate_limit_exceeded`, or a non-JSON 429 from an intermediary): the
    /// limiter runs before anything is done, so nothing was committed.
    Throttled,
    /// Any 5xx: whether Alter did the work first is not published.
    Server,
    /// The request never left (connection refused, connect timeout, DNS, TLS handshake).
    NotSent,
    /// The request may have reached the server (timeout or connection error after sending).
    MaybeSent,
    /// Anything else: 4xx (a `quota_exceeded` 429 included: a policy denial the SDK says must not
    /// be retried), 3xx, odd statuses.
    Final,
}

/// Whether to try again. Ambiguous failures are retried only for idempotent calls.
pub(crate) fn should_retry(failure: Failure, idempotent: bool) -> bool {
    match failure {
        Failure::Throttled | Failure::NotSent => true,
        Failure::Server | Failure::MaybeSent => idempotent,
        Failure::Final => false,
    }
}

/// A `Retry-After` header as the SDK reads it (`_parse_retry_after`): ASCII digits only (Alter
/// never sends the HTTP-date form, and a malformed value is worth less than the body's), leading
/// zeros allowed, clamped to `max_secs`.
pub(crate) fn parse_retry_after(value: &str, max_secs: u64) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = v.trim_start_matches('0');
    let secs = if significant.len() > 20 {
        max_secs
    } else {
        significant.parse::<u64>().unwrap_or(0).min(max_secs)
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Failure::*;

    #[test]
    fn classification() {
        for (f, idem, not_idem) in [
            (Throttled, true, true),
            (NotSent, true, true),
            (Server, true, false),
            (MaybeSent, true, false),
            (Final, false, false),
        ] {
            assert_eq!(should_retry(f, true), idem, "{f:?}");
            assert_eq!(should_retry(f, false), not_idem, "{f:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters() {
        let p = RetryPolicy::new()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(700));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(3), Duration::from_millis(400));
        assert_eq!(p.backoff_ceiling(4), Duration::from_millis(700));
        assert_eq!(p.backoff_ceiling(99), Duration::from_millis(700));
        let samples: std::collections::BTreeSet<_> = (0..100).map(|_| p.delay(2, None)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(200)));
        assert!(samples.len() > 10, "full jitter spreads the delays");
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(RetryPolicy::new().max_attempts(0).attempts(), 1);
    }

    #[test]
    fn retry_after_like_the_sdk() {
        assert_eq!(parse_retry_after("7", 3600), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 00060 ", 3600),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("0", 3600), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999", 3600),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after(&"9".repeat(5000), 3600),
            Some(Duration::from_secs(3600))
        );
        for bad in ["", "-1", "+3", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "١"] {
            assert_eq!(parse_retry_after(bad, 3600), None, "{bad}");
        }
    }
}
