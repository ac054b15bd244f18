//! Fault injection, switchable at run time (admin API `PUT /_admin/faults` or
//! [`crate::Emulator::set_faults`]). See the README for the JSON and for the order faults apply in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::error::Error;

/// The contract's operation names: the keys of [`FaultConfig::routes`] (plus `"*"` for all of them)
/// and of the request metrics.
pub const OPERATIONS: [&str; 14] = [
    "register",
    "list_agents",
    "get_agent",
    "update_agent",
    "halt_agent",
    "resume_agent",
    "revoke_agent",
    "mint_key",
    "list_keys",
    "deprecate_key",
    "undeprecate_key",
    "revoke_key",
    "whoami",
    "execute_action",
];

/// Route key that applies to every operation.
pub const ALL_ROUTES: &str = "*";

/// The whole fault configuration: per operation name (or `"*"`), what to inject.
/// Counters (`count`, `drop_response_next`) go down as they fire; exhausted entries disappear.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Operation name or `"*"` → faults.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteFaults>,
}

impl FaultConfig {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the faults of one operation (or `"*"`).
    pub fn route(mut self, operation: &str, faults: RouteFaults) -> Self {
        self.routes.insert(operation.to_owned(), faults);
        self
    }

    /// Checks route names and values.
    pub fn validate(&self) -> Result<(), Error> {
        for (route, f) in &self.routes {
            if route != ALL_ROUTES && !OPERATIONS.contains(&route.as_str()) {
                return Err(Error::InvalidFaults(format!(
                    "unknown route {route:?}; use one of {} or \"*\"",
                    OPERATIONS.join(", ")
                )));
            }
            let bad = |what: &str| Err(Error::InvalidFaults(format!("routes.{route}.{what}")));
            if let Some(l) = &f.latency
                && (l.fixed_ms > 600_000 || l.jitter_ms > 600_000)
            {
                return bad("latency: at most 600000 ms");
            }
            if let Some(e) = &f.error_rate {
                if !(0.0..=1.0).contains(&e.rate) {
                    return bad("error_rate.rate: between 0 and 1");
                }
                if !(400..=599).contains(&e.status) {
                    return bad("error_rate.status: 400-599");
                }
            }
            if let Some(r) = &f.rate_limit
                && (!r.per_second.is_finite() || r.per_second <= 0.0 || r.burst == 0)
            {
                return bad("rate_limit: per_second > 0 and burst >= 1");
            }
            if let Some(n) = &f.fail_next
                && !(400..=599).contains(&n.status)
            {
                return bad("fail_next.status: 400-599");
            }
        }
        Ok(())
    }
}

/// What to inject on one operation (or on all, under `"*"`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFaults {
    /// Added before the request is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// A random share of requests fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ErrorRate>,
    /// Token bucket; over the rate → 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The next `count` requests get 429 with `Retry-After: retry_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_next: Option<ThrottleNext>,
    /// The next `count` requests fail with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<FailNext>,
    /// The next N requests are handled (the change is committed) and then the connection is closed
    /// without any response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_response_next: Option<u32>,
}

impl RouteFaults {
    fn is_empty(&self) -> bool {
        *self == RouteFaults::default()
    }

    /// `fixed_ms` plus a uniform random `0..=jitter_ms`.
    pub fn latency(fixed_ms: u64, jitter_ms: u64) -> Self {
        RouteFaults {
            latency: Some(Latency {
                fixed_ms,
                jitter_ms,
            }),
            ..Default::default()
        }
    }

    /// A share `rate` (0..=1) of requests fail with `status` before anything is committed.
    pub fn error_rate(rate: f64, status: u16) -> Self {
        RouteFaults {
            error_rate: Some(ErrorRate {
                rate,
                status,
                after_commit: false,
                retry_after: None,
            }),
            ..Default::default()
        }
    }

    /// Token bucket: `per_second` refill, `burst` capacity.
    pub fn rate_limit(per_second: f64, burst: u32) -> Self {
        RouteFaults {
            rate_limit: Some(RateLimit { per_second, burst }),
            ..Default::default()
        }
    }

    /// The next `count` requests get 429 with `Retry-After: retry_after`.
    pub fn throttle_next(count: u32, retry_after: u64) -> Self {
        RouteFaults {
            throttle_next: Some(ThrottleNext { count, retry_after }),
            ..Default::default()
        }
    }

    /// The next `count` requests fail with `status`, nothing committed.
    pub fn fail_next(count: u32, status: u16) -> Self {
        RouteFaults {
            fail_next: Some(FailNext {
                count,
                status,
                after_commit: false,
                retry_after: None,
            }),
            ..Default::default()
        }
    }

    /// The next `count` requests are committed, then answered with `status` (e.g. a 500 that did
    /// commit, or a 504 from a gateway that gave up).
    pub fn fail_next_after_commit(count: u32, status: u16) -> Self {
        RouteFaults {
            fail_next: Some(FailNext {
                count,
                status,
                after_commit: true,
                retry_after: None,
            }),
            ..Default::default()
        }
    }

    /// The next `count` requests are committed, then the connection is closed without a response.
    pub fn drop_response_next(count: u32) -> Self {
        RouteFaults {
            drop_response_next: Some(count),
            ..Default::default()
        }
    }
}

/// Added latency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Always added.
    #[serde(default)]
    pub fixed_ms: u64,
    /// Plus a uniform random `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
}

fn default_500() -> u16 {
    500
}
fn default_503() -> u16 {
    503
}
fn default_one() -> u32 {
    1
}
fn default_one_sec() -> u64 {
    1
}

/// Random failures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRate {
    /// 0.0..=1.0.
    pub rate: f64,
    /// Default 500.
    #[serde(default = "default_500")]
    pub status: u16,
    /// Run the request (commit) first, then answer with the error. Default false.
    #[serde(default)]
    pub after_commit: bool,
    /// Optional `Retry-After` seconds (useful with 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Token bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Capacity (and initial fill). Default 1.
    #[serde(default = "default_one")]
    pub burst: u32,
}

/// A burst of 429s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleNext {
    /// How many requests still get a 429.
    pub count: u32,
    /// `Retry-After` seconds. Default 1.
    #[serde(default = "default_one_sec")]
    pub retry_after: u64,
}

/// A burst of failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailNext {
    /// How many requests still fail.
    pub count: u32,
    /// Default 503.
    #[serde(default = "default_503")]
    pub status: u16,
    /// Run the request (commit) first, then answer with the error. Default false.
    #[serde(default)]
    pub after_commit: bool,
    /// Optional `Retry-After` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// The error an injected status is reported as.
pub(crate) fn injected(status: u16, retry_after: Option<u64>) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match status.as_u16() {
        429 => "rate_limit_exceeded",
        500 => "internal_error",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        _ => "injected_fault",
    };
    let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
        Some(retry_after.unwrap_or(1))
    } else {
        retry_after
    };
    ApiError::new(status, code, "injected fault (agentlattice-emulator)")
        .with_retry_after(retry_after)
}

fn throttled(retry_after: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        format!("rate limit exceeded; retry after {retry_after} s"),
    )
    .with_retry_after(Some(retry_after))
}

/// What to do with one request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub delay: Duration,
    /// Answer with this instead of handling the request.
    pub reject: Option<ApiError>,
    pub after: After,
}

/// What to do once the request has been handled.
#[derive(Debug)]
pub(crate) enum After {
    Respond,
    /// Close the connection without a response.
    Drop,
    /// Replace the response.
    Replace(ApiError),
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Inner {
    config: FaultConfig,
    buckets: HashMap<String, Bucket>,
}

/// The run-time fault state. Without faults, a request costs one relaxed atomic load here.
#[derive(Default)]
pub(crate) struct FaultEngine {
    active: AtomicBool,
    inner: Mutex<Inner>,
}

impl FaultEngine {
    pub fn set(&self, mut config: FaultConfig) -> Result<(), Error> {
        config.validate()?;
        // A counter at 0 means "nothing left to inject".
        for rf in config.routes.values_mut() {
            if rf.throttle_next.as_ref().is_some_and(|t| t.count == 0) {
                rf.throttle_next = None;
            }
            if rf.fail_next.as_ref().is_some_and(|t| t.count == 0) {
                rf.fail_next = None;
            }
            if rf.drop_response_next == Some(0) {
                rf.drop_response_next = None;
            }
        }
        config.routes.retain(|_, rf| !rf.is_empty());
        let mut g = self.inner.lock();
        self.active
            .store(!config.routes.is_empty(), Ordering::Release);
        g.config = config;
        g.buckets.clear();
        Ok(())
    }

    pub fn get(&self) -> FaultConfig {
        self.inner.lock().config.clone()
    }

    pub fn plan(&self, op: &str) -> Option<Plan> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.inner.lock();
        let Inner { config, buckets } = &mut *g;
        let mut rng = rand::rng();
        let keys = [op, ALL_ROUTES];

        let mut delay_ms = 0u64;
        for k in keys {
            if let Some(l) = config.routes.get(k).and_then(|r| r.latency.as_ref()) {
                let jitter = if l.jitter_ms > 0 {
                    rng.random_range(0..=l.jitter_ms)
                } else {
                    0
                };
                delay_ms = delay_ms.saturating_add(l.fixed_ms).saturating_add(jitter);
            }
        }

        let mut reject = None;
        'pre: for k in keys {
            let Some(rf) = config.routes.get_mut(k) else {
                continue;
            };
            if let Some(t) = &mut rf.throttle_next {
                let retry_after = t.retry_after;
                t.count = t.count.saturating_sub(1);
                if t.count == 0 {
                    rf.throttle_next = None;
                }
                reject = Some(throttled(retry_after));
                break 'pre;
            }
            if let Some(rl) = &rf.rate_limit {
                let now = Instant::now();
                let b = buckets.entry(k.to_owned()).or_insert(Bucket {
                    tokens: f64::from(rl.burst),
                    last: now,
                });
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * rl.per_second).min(f64::from(rl.burst));
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                } else {
                    let wait = ((1.0 - b.tokens) / rl.per_second).ceil().max(1.0);
                    reject = Some(throttled(wait as u64));
                    break 'pre;
                }
            }
            if let Some(n) = &mut rf.fail_next
                && !n.after_commit
            {
                let err = injected(n.status, n.retry_after);
                n.count = n.count.saturating_sub(1);
                if n.count == 0 {
                    rf.fail_next = None;
                }
                reject = Some(err);
                break 'pre;
            }
            if let Some(e) = &rf.error_rate
                && !e.after_commit
                && rng.random_bool(e.rate)
            {
                reject = Some(injected(e.status, e.retry_after));
                break 'pre;
            }
        }

        let mut after = After::Respond;
        if reject.is_none() {
            'post: for k in keys {
                let Some(rf) = config.routes.get_mut(k) else {
                    continue;
                };
                if let Some(n) = &mut rf.drop_response_next {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        rf.drop_response_next = None;
                    }
                    after = After::Drop;
                    break 'post;
                }
                if let Some(n) = &mut rf.fail_next
                    && n.after_commit
                {
                    let err = injected(n.status, n.retry_after);
                    n.count = n.count.saturating_sub(1);
                    if n.count == 0 {
                        rf.fail_next = None;
                    }
                    after = After::Replace(err);
                    break 'post;
                }
                if let Some(e) = &rf.error_rate
                    && e.after_commit
                    && rng.random_bool(e.rate)
                {
                    after = After::Replace(injected(e.status, e.retry_after));
                    break 'post;
                }
            }
        }

        config.routes.retain(|_, rf| !rf.is_empty());
        if config.routes.is_empty() {
            self.active.store(false, Ordering::Release);
        }
        if delay_ms == 0 && reject.is_none() && matches!(after, After::Respond) {
            return None;
        }
        Some(Plan {
            delay: Duration::from_millis(delay_ms),
            reject,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_down_and_disappear() {
        let f = FaultEngine::default();
        f.set(FaultConfig::new().route("register", RouteFaults::fail_next(2, 503)))
            .unwrap();
        assert!(f.plan("whoami").is_none());
        assert_eq!(f.plan("register").unwrap().reject.unwrap().status, 503);
        assert_eq!(
            f.get().routes["register"].fail_next.as_ref().unwrap().count,
            1
        );
        assert_eq!(
            f.plan("register").unwrap().reject.unwrap().code,
            "unavailable"
        );
        assert!(f.plan("register").is_none());
        assert_eq!(f.get(), FaultConfig::default());
    }

    #[test]
    fn star_applies_to_every_route() {
        let f = FaultEngine::default();
        f.set(FaultConfig::new().route("*", RouteFaults::throttle_next(1, 7)))
            .unwrap();
        let e = f.plan("list_keys").unwrap().reject.unwrap();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(7)));
        assert!(f.plan("list_keys").is_none());
    }

    #[test]
    fn token_bucket() {
        let f = FaultEngine::default();
        f.set(FaultConfig::new().route("whoami", RouteFaults::rate_limit(0.5, 2)))
            .unwrap();
        assert!(f.plan("whoami").is_none());
        assert!(f.plan("whoami").is_none());
        let e = f.plan("whoami").unwrap().reject.unwrap();
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.retry_after, Some(2));
    }

    #[test]
    fn drop_is_after_commit() {
        let f = FaultEngine::default();
        f.set(FaultConfig::new().route("mint_key", RouteFaults::drop_response_next(1)))
            .unwrap();
        let p = f.plan("mint_key").unwrap();
        assert!(p.reject.is_none() && matches!(p.after, After::Drop));
        assert!(f.plan("mint_key").is_none());
    }

    #[test]
    fn validation() {
        assert!(
            FaultConfig::new()
                .route("nope", RouteFaults::default())
                .validate()
                .is_err()
        );
        assert!(
            FaultConfig::new()
                .route("*", RouteFaults::error_rate(1.5, 500))
                .validate()
                .is_err()
        );
        assert!(
            FaultConfig::new()
                .route("*", RouteFaults::rate_limit(0.0, 1))
                .validate()
                .is_err()
        );
        let json = r#"{"routes":{"register":{"fail_next":{"count":1}}}}"#;
        let c: FaultConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.routes["register"].fail_next.as_ref().unwrap().status, 503);
        assert!(
            serde_json::from_str::<FaultConfig>(r#"{"routes":{"register":{"typo":1}}}"#).is_err()
        );
    }
}
