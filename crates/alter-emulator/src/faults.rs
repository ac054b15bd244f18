//! Fault injection, switchable at run time (`PUT /_admin/faults`, [`crate::Emulator::set_faults`]).
//! The JSON has the same shape as the AgentLattice emulator's, so one test harness drives both;
//! route names are this API's operations.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::error::Error;

/// The operations faults (and metrics) are keyed by; `"*"` means all of them.
pub const OPERATIONS: [&str; 17] = [
    "create_agent",
    "list_agents",
    "get_agent",
    "update_agent",
    "suspend_agent",
    "resume_agent",
    "delete_agent",
    "mint_key",
    "list_keys",
    "deprecate_key",
    "undeprecate_key",
    "revoke_key",
    "me",
    "resolve_identity",
    "agent_audit",
    "list_registry",
    "get_registry_entry",
];

/// The route key that applies to every operation.
pub const ALL_ROUTES: &str = "*";

/// Operation name (or `"*"`) → what to inject. Counters run down as faults fire; exhausted entries
/// disappear.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// The faults of each route.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteFaults>,
}

impl FaultConfig {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the faults of one operation (or `"*"`).
    pub fn route(mut self, operation: &str, faults: RouteFaults) -> Self {
        self.routes.insert(operation.to_owned(), faults);
        self
    }

    /// Checks names and values.
    pub fn validate(&self) -> Result<(), Error> {
        for (route, f) in &self.routes {
            if route != ALL_ROUTES && !OPERATIONS.contains(&route.as_str()) {
                return Err(Error::InvalidFaults(format!(
                    "unknown route {route:?}; use one of {} or \"*\"",
                    OPERATIONS.join(", ")
                )));
            }
            let bad = |what: &str| Err(Error::InvalidFaults(format!("routes.{route}.{what}")));
            let status_ok = |s: u16| (400..=599).contains(&s);
            if f.latency
                .as_ref()
                .is_some_and(|l| l.fixed_ms > 600_000 || l.jitter_ms > 600_000)
            {
                return bad("latency: at most 600000 ms");
            }
            if let Some(e) = &f.error_rate
                && (!(0.0..=1.0).contains(&e.rate) || !status_ok(e.status))
            {
                return bad("error_rate: rate in 0..=1, status in 400..=599");
            }
            if f.rate_limit
                .as_ref()
                .is_some_and(|r| !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0)
            {
                return bad("rate_limit: per_second > 0, burst >= 1");
            }
            if f.fail_next.as_ref().is_some_and(|n| !status_ok(n.status)) {
                return bad("fail_next.status: 400..=599");
            }
        }
        Ok(())
    }
}

/// What to inject on one operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFaults {
    /// Added before handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// A random share of requests fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ErrorRate>,
    /// A token bucket; over the rate → 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The next `count` requests get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_next: Option<ThrottleNext>,
    /// The next `count` requests fail with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<FailNext>,
    /// The next N requests are carried out, then the connection is closed without a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_response_next: Option<u32>,
}

impl RouteFaults {
    /// `fixed_ms` plus uniform `0..=jitter_ms`.
    pub fn latency(fixed_ms: u64, jitter_ms: u64) -> Self {
        Self {
            latency: Some(Latency {
                fixed_ms,
                jitter_ms,
            }),
            ..Self::default()
        }
    }

    /// A share `rate` fails with `status`, nothing done.
    pub fn error_rate(rate: f64, status: u16) -> Self {
        Self {
            error_rate: Some(ErrorRate {
                rate,
                status,
                after_commit: false,
                retry_after: None,
            }),
            ..Self::default()
        }
    }

    /// Token bucket.
    pub fn rate_limit(per_second: f64, burst: u32) -> Self {
        Self {
            rate_limit: Some(RateLimit { per_second, burst }),
            ..Self::default()
        }
    }

    /// The next `count` requests get 429 `rate_limit_exceeded` with `Retry-After: retry_after`.
    pub fn throttle_next(count: u32, retry_after: u64) -> Self {
        Self {
            throttle_next: Some(ThrottleNext {
                count,
                retry_after,
                quota: false,
            }),
            ..Self::default()
        }
    }

    /// The next `count` requests get 429 `quota_exceeded` (a policy denial).
    pub fn quota_next(count: u32, retry_after: u64) -> Self {
        Self {
            throttle_next: Some(ThrottleNext {
                count,
                retry_after,
                quota: true,
            }),
            ..Self::default()
        }
    }

    /// The next `count` requests fail with `status`, nothing done.
    pub fn fail_next(count: u32, status: u16) -> Self {
        Self {
            fail_next: Some(FailNext {
                count,
                status,
                after_commit: false,
                retry_after: None,
            }),
            ..Self::default()
        }
    }

    /// The next `count` requests are carried out, then answered with `status`.
    pub fn fail_next_after_commit(count: u32, status: u16) -> Self {
        Self {
            fail_next: Some(FailNext {
                count,
                status,
                after_commit: true,
                retry_after: None,
            }),
            ..Self::default()
        }
    }

    /// The next `count` requests are carried out, then dropped without a response.
    pub fn drop_response_next(count: u32) -> Self {
        Self {
            drop_response_next: Some(count),
            ..Self::default()
        }
    }

    fn prune(&mut self) {
        if self.throttle_next.as_ref().is_some_and(|t| t.count == 0) {
            self.throttle_next = None;
        }
        if self.fail_next.as_ref().is_some_and(|t| t.count == 0) {
            self.fail_next = None;
        }
        if self.drop_response_next == Some(0) {
            self.drop_response_next = None;
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Added latency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Always.
    #[serde(default)]
    pub fixed_ms: u64,
    /// Plus uniform `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
}

fn status_500() -> u16 {
    500
}
fn status_503() -> u16 {
    503
}
fn one() -> u32 {
    1
}
fn one_second() -> u64 {
    1
}

/// Random failures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRate {
    /// 0..=1.
    pub rate: f64,
    /// Default 500.
    #[serde(default = "status_500")]
    pub status: u16,
    /// Carry the request out first.
    #[serde(default)]
    pub after_commit: bool,
    /// `Retry-After` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Token bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Refill per second.
    pub per_second: f64,
    /// Capacity (and initial fill). Default 1.
    #[serde(default = "one")]
    pub burst: u32,
}

/// A burst of 429s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleNext {
    /// Requests left to refuse.
    pub count: u32,
    /// `Retry-After` seconds. Default 1.
    #[serde(default = "one_second")]
    pub retry_after: u64,
    /// `quota_exceeded` instead of `rate_limit_exceeded`.
    #[serde(default)]
    pub quota: bool,
}

/// A burst of failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailNext {
    /// Requests left to fail.
    pub count: u32,
    /// Default 503.
    #[serde(default = "status_503")]
    pub status: u16,
    /// Carry the request out first.
    #[serde(default)]
    pub after_commit: bool,
    /// `Retry-After` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// What happens to one request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub delay: Duration,
    /// Answer this without handling the request.
    pub refuse: Option<ApiError>,
    pub after: After,
}

/// What happens once the request was handled.
#[derive(Debug)]
pub(crate) enum After {
    Respond,
    Drop,
    Replace(ApiError),
}

#[derive(Default)]
struct Inner {
    config: FaultConfig,
    /// Per route key: (tokens, last refill).
    buckets: HashMap<String, (f64, Instant)>,
}

/// The run-time fault state. Without faults, a request costs one atomic load here.
#[derive(Default)]
pub(crate) struct Faults {
    active: AtomicBool,
    inner: Mutex<Inner>,
}

/// Decrements a counter; `true` when it fired.
fn fire(count: &mut u32) -> bool {
    if *count == 0 {
        return false;
    }
    *count -= 1;
    true
}

impl Faults {
    pub fn set(&self, mut config: FaultConfig) -> Result<(), Error> {
        config.validate()?;
        for r in config.routes.values_mut() {
            r.prune();
        }
        config.routes.retain(|_, r| !r.is_empty());
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
        let mut plan = Plan {
            delay: Duration::ZERO,
            refuse: None,
            after: After::Respond,
        };
        for key in [op, ALL_ROUTES] {
            let Some(r) = config.routes.get_mut(key) else {
                continue;
            };
            if let Some(l) = &r.latency {
                let jitter = if l.jitter_ms > 0 {
                    rng.random_range(0..=l.jitter_ms)
                } else {
                    0
                };
                plan.delay += Duration::from_millis(l.fixed_ms.saturating_add(jitter));
            }
            if plan.refuse.is_some() {
                continue;
            }
            if let Some(t) = &mut r.throttle_next
                && fire(&mut t.count)
            {
                plan.refuse = Some(ApiError::throttled(t.retry_after, 0, t.quota));
            } else if let Some(rl) = &r.rate_limit {
                let now = Instant::now();
                let (tokens, last) = buckets
                    .entry(key.to_owned())
                    .or_insert((f64::from(rl.burst), now));
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rl.per_second)
                    .min(f64::from(rl.burst));
                *last = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                } else {
                    let wait = ((1.0 - *tokens) / rl.per_second).ceil().max(1.0) as u64;
                    let limit = (rl.per_second * 60.0).round() as u64;
                    plan.refuse = Some(ApiError::throttled(wait, limit, false));
                }
            }
            if plan.refuse.is_none()
                && let Some(n) = r.fail_next.as_mut().filter(|n| !n.after_commit)
                && fire(&mut n.count)
            {
                plan.refuse = Some(ApiError::injected(n.status, n.retry_after));
            }
            if plan.refuse.is_none()
                && let Some(e) = r.error_rate.as_ref().filter(|e| !e.after_commit)
                && rng.random_bool(e.rate)
            {
                plan.refuse = Some(ApiError::injected(e.status, e.retry_after));
            }
        }
        if plan.refuse.is_none() {
            for key in [op, ALL_ROUTES] {
                let Some(r) = config.routes.get_mut(key) else {
                    continue;
                };
                if let Some(n) = &mut r.drop_response_next
                    && fire(n)
                {
                    plan.after = After::Drop;
                } else if let Some(n) = r.fail_next.as_mut().filter(|n| n.after_commit)
                    && fire(&mut n.count)
                {
                    plan.after = After::Replace(ApiError::injected(n.status, n.retry_after));
                } else if let Some(e) = r.error_rate.as_ref().filter(|e| e.after_commit)
                    && rng.random_bool(e.rate)
                {
                    plan.after = After::Replace(ApiError::injected(e.status, e.retry_after));
                } else {
                    continue;
                }
                break;
            }
        }
        for r in config.routes.values_mut() {
            r.prune();
        }
        config.routes.retain(|_, r| !r.is_empty());
        if config.routes.is_empty() {
            self.active.store(false, Ordering::Release);
        }
        let nothing =
            plan.delay.is_zero() && plan.refuse.is_none() && matches!(plan.after, After::Respond);
        (!nothing).then_some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_down_and_disappear() {
        let f = Faults::default();
        f.set(FaultConfig::new().route("mint_key", RouteFaults::fail_next(2, 503)))
            .unwrap();
        assert!(f.plan("me").is_none());
        assert_eq!(f.plan("mint_key").unwrap().refuse.unwrap().status, 503);
        assert_eq!(
            f.get().routes["mint_key"].fail_next.as_ref().unwrap().count,
            1
        );
        assert!(f.plan("mint_key").unwrap().refuse.is_some());
        assert!(f.plan("mint_key").is_none());
        assert_eq!(f.get(), FaultConfig::default());
    }

    #[test]
    fn throttles_and_quotas() {
        let f = Faults::default();
        f.set(FaultConfig::new().route("*", RouteFaults::quota_next(1, 9)))
            .unwrap();
        let e = f.plan("list_keys").unwrap().refuse.unwrap();
        assert_eq!((e.code, e.retry_after), ("quota_exceeded", Some(9)));
        f.set(FaultConfig::new().route("me", RouteFaults::rate_limit(0.5, 1)))
            .unwrap();
        assert!(f.plan("me").is_none());
        let e = f.plan("me").unwrap().refuse.unwrap();
        assert_eq!((e.code, e.retry_after), ("rate_limit_exceeded", Some(2)));
    }

    #[test]
    fn drops_and_replacements_come_after_the_work() {
        let f = Faults::default();
        f.set(
            FaultConfig::new()
                .route("create_agent", RouteFaults::drop_response_next(1))
                .route("*", RouteFaults::fail_next_after_commit(1, 500)),
        )
        .unwrap();
        let p = f.plan("create_agent").unwrap();
        assert!(p.refuse.is_none() && matches!(p.after, After::Drop));
        let p = f.plan("create_agent").unwrap();
        assert!(matches!(p.after, After::Replace(ref e) if e.status == 500));
        assert!(f.plan("create_agent").is_none());
    }

    #[test]
    fn validation() {
        assert!(
            FaultConfig::new()
                .route("register", RouteFaults::default())
                .validate()
                .is_err()
        );
        assert!(
            FaultConfig::new()
                .route("*", RouteFaults::error_rate(2.0, 500))
                .validate()
                .is_err()
        );
        assert!(
            FaultConfig::new()
                .route("*", RouteFaults::fail_next(1, 200))
                .validate()
                .is_err()
        );
        let c: FaultConfig =
            serde_json::from_str(r#"{"routes":{"mint_key":{"throttle_next":{"count":2}}}}"#)
                .unwrap();
        assert_eq!(
            c.routes["mint_key"]
                .throttle_next
                .as_ref()
                .unwrap()
                .retry_after,
            1
        );
        assert!(serde_json::from_str::<FaultConfig>(r#"{"routes":{"me":{"typo":1}}}"#).is_err());
    }
}
