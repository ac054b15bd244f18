//! What every client sharing a transport waits on: an optional client-side rate limit and the
//! "not before" instant set by a 429 (or 503) carrying `Retry-After`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A client-side rate limit: `per_second` on average, bursts of up to `burst`, shared by every
/// client built on the same transport.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// `per_second` must be positive and finite, `burst` at least 1 (checked when a client is
    /// built).
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) || self.burst == 0 {
            return Err("a rate limit needs per_second > 0 and burst >= 1".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Inner {
    /// (tokens, last refill) when a rate limit is set.
    bucket: Option<(f64, Instant)>,
    not_before: Option<Instant>,
}

/// Shared by a client and everything built from it.
#[derive(Debug)]
pub(crate) struct Throttle {
    limit: Option<RateLimit>,
    inner: Mutex<Inner>,
}

impl Throttle {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        let bucket = limit.map(|l| (f64::from(l.burst), Instant::now()));
        Self {
            limit,
            inner: Mutex::new(Inner {
                bucket,
                not_before: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data (instants, a token count) stays valid whatever panicked while it was held.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nobody sends before `until` (an earlier instant never shortens a longer closure).
    pub(crate) fn close_until(&self, until: Instant) {
        let mut g = self.lock();
        if g.not_before.is_none_or(|nb| nb < until) {
            g.not_before = Some(until);
        }
    }

    fn gate_remaining(&self) -> Option<Duration> {
        let nb = self.lock().not_before?;
        let left = nb.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Takes a token (reserving a future one when none is left), returning the wait.
    fn reserve(&self) -> Duration {
        let Some(limit) = self.limit else {
            return Duration::ZERO;
        };
        let mut g = self.lock();
        let now = Instant::now();
        let Some((tokens, last)) = g.bucket.as_mut() else {
            return Duration::ZERO;
        };
        let refill = now.saturating_duration_since(*last).as_secs_f64() * limit.per_second;
        *tokens = (*tokens + refill).min(f64::from(limit.burst)) - 1.0;
        *last = now;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / limit.per_second)
        }
    }

    /// Waits for the gate and a token; returns the time waited, or — at once — how long the gate
    /// stays closed when that is more than `max_wait`.
    pub(crate) async fn admit(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let start = Instant::now();
        while let Some(left) = self.gate_remaining() {
            if left > max_wait {
                return Err(left);
            }
            tokio::time::sleep(left).await;
        }
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_gate_holds_callers_and_refuses_long_waits() {
        let t = Throttle::new(None);
        assert_eq!(t.admit(Duration::from_secs(1)).await, Ok(Duration::ZERO));
        t.close_until(Instant::now() + Duration::from_secs(5));
        t.close_until(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            t.admit(Duration::from_secs(2)).await,
            Err(Duration::from_secs(5))
        );
        assert_eq!(
            t.admit(Duration::from_secs(10)).await,
            Ok(Duration::from_secs(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_paces() {
        let t = Throttle::new(Some(RateLimit::new(4.0, 2)));
        let start = Instant::now();
        for _ in 0..6 {
            t.admit(Duration::from_secs(60)).await.unwrap();
        }
        // Two at once, then four at 250 ms intervals.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(RateLimit::new(0.0, 1).check().is_err());
        assert!(RateLimit::new(1.0, 0).check().is_err());
        assert!(RateLimit::new(f64::NAN, 1).check().is_err());
    }
}
