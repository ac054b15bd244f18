//! The throttle shared by every clone of a client: a client-side rate limit (token bucket, off by
//! default) and a "not before" gate closed by a 429 (or 503) carrying `Retry-After`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// A client-side rate limit: `per_second` requests per second on average, bursts of up to `burst`.
/// Every clone of a client (and every client made from it with `with_service_key` /
/// `agent_client`) draws from the same bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// `per_second` must be positive and finite, `burst` at least 1 (checked when the client is
    /// built).
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Largest burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err("the rate limit must be a positive number of requests per second".into());
        }
        if self.burst == 0 {
            return Err("the rate limit's burst must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        let burst = f64::from(limit.burst);
        Self {
            rate: limit.per_second,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, reserving a future one when none is left (so waiters are served in order);
    /// returns how long to wait for it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Shared state behind a client's `Arc`.
#[derive(Debug)]
pub(crate) struct Throttle {
    bucket: Option<Mutex<Bucket>>,
    not_before: Mutex<Option<Instant>>,
}

/// Locks without panicking on poison: the data (an instant, a bucket) stays valid whatever panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Throttle {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            bucket: limit.map(|l| Mutex::new(Bucket::new(l, Instant::now()))),
            not_before: Mutex::new(None),
        }
    }

    /// Closes the gate until `until` (never shortens an already longer closure).
    pub(crate) fn close_until(&self, until: Instant) {
        let mut nb = lock(&self.not_before);
        if nb.is_none_or(|current| current < until) {
            *nb = Some(until);
        }
    }

    /// How long until the gate opens, if it is closed.
    pub(crate) fn gate_remaining(&self) -> Option<Duration> {
        let nb = *lock(&self.not_before);
        let remaining = nb?.saturating_duration_since(Instant::now());
        (!remaining.is_zero()).then_some(remaining)
    }

    /// Waits for the gate to open and for a token. Returns the time waited, or — without waiting —
    /// the time left when the gate stays closed for longer than `max_wait`.
    pub(crate) async fn admit(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let start = Instant::now();
        while let Some(remaining) = self.gate_remaining() {
            if remaining > max_wait {
                return Err(remaining);
            }
            tokio::time::sleep(remaining).await;
        }
        if let Some(bucket) = &self.bucket {
            let wait = lock(bucket).reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_limits() {
        assert!(RateLimit::new(10.0, 5).validate().is_ok());
        assert!(RateLimit::new(0.0, 5).validate().is_err());
        assert!(RateLimit::new(f64::NAN, 5).validate().is_err());
        assert!(RateLimit::new(f64::INFINITY, 5).validate().is_err());
        assert!(RateLimit::new(1.0, 0).validate().is_err());
    }

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::new(10.0, 3), t0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        let w1 = b.reserve(t0);
        let w2 = b.reserve(t0);
        assert!((w1.as_secs_f64() - 0.1).abs() < 1e-9, "{w1:?}");
        assert!((w2.as_secs_f64() - 0.2).abs() < 1e-9, "{w2:?}");
        // After a long pause the bucket is full again, but never above the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.reserve(later), Duration::ZERO);
        }
        assert!(b.reserve(later) > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn gate_holds_every_caller_until_it_opens() {
        let t = Throttle::new(None);
        assert_eq!(t.admit(Duration::from_secs(1)).await, Ok(Duration::ZERO));
        t.close_until(Instant::now() + Duration::from_secs(5));
        // A shorter closure does not reopen it early.
        t.close_until(Instant::now() + Duration::from_secs(1));
        assert_eq!(t.gate_remaining(), Some(Duration::from_secs(5)));
        // Too long to wait: refused at once.
        assert_eq!(
            t.admit(Duration::from_secs(1)).await,
            Err(Duration::from_secs(5))
        );
        let waited = t.admit(Duration::from_secs(10)).await.unwrap();
        assert_eq!(waited, Duration::from_secs(5));
        assert_eq!(t.gate_remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_requests() {
        let t = Throttle::new(Some(RateLimit::new(2.0, 1)));
        let start = Instant::now();
        for _ in 0..5 {
            t.admit(Duration::from_secs(60)).await.unwrap();
        }
        // One immediately, then four at 0.5 s intervals.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
