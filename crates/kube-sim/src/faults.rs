//! Fault injection for reliability tests: fail chosen requests with upstream-shaped errors,
//! add latency, drop watch connections, expire watch history.
//!
//! ```no_run
//! # async fn f(sim: &kube_sim::KubeSim) {
//! use kube_sim::faults::Matcher;
//! // The next two updates of Secret "s1" answer 409 Conflict.
//! sim.faults().fail(Matcher::verb("update").resource("secrets").name("s1"), 409, 2);
//! // Every list of configmaps answers 429 with Retry-After: 1, once.
//! sim.faults().fail(Matcher::verb("list").resource("configmaps"), 429, 1);
//! // 200 ms latency on every request.
//! sim.faults().set_latency(Matcher::any(), std::time::Duration::from_millis(200));
//! // Close every open watch now (clients re-watch from their last resourceVersion).
//! sim.faults().drop_watches();
//! # }
//! ```

use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use crate::error::{StatusError, go_quote};

/// Which requests a fault applies to. `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Request verb as RBAC sees it: get, list, watch, create, update, patch, delete,
    /// deletecollection.
    pub verb: Option<String>,
    pub group: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Matcher {
    /// Matches every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches requests with this verb.
    pub fn verb(v: &str) -> Self {
        Self {
            verb: Some(v.to_string()),
            ..Self::default()
        }
    }

    pub fn group(mut self, g: &str) -> Self {
        self.group = Some(g.to_string());
        self
    }

    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.to_string());
        self
    }

    pub fn subresource(mut self, s: &str) -> Self {
        self.subresource = Some(s.to_string());
        self
    }

    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.to_string());
        self
    }

    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.to_string());
        self
    }

    pub fn matches(&self, r: &RequestInfo) -> bool {
        let ok = |m: &Option<String>, v: &str| m.as_deref().is_none_or(|m| m == v);
        ok(&self.verb, &r.verb)
            && ok(&self.group, &r.group)
            && ok(&self.resource, &r.resource)
            && ok(&self.subresource, &r.subresource)
            && ok(&self.namespace, &r.namespace)
            && ok(&self.name, &r.name)
    }
}

/// What the fault layer sees of a request.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Matcher,
    code: u16,
    remaining: usize,
    retry_after: u64,
}

/// The fault-injection switchboard of one simulator.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    latency: Mutex<Vec<(Matcher, Duration)>>,
    drop: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
            latency: Mutex::new(Vec::new()),
            drop: watch::channel(0).0,
        }
    }
}

/// An injected failure, ready to be written.
#[derive(Debug, Clone)]
pub struct Injected {
    pub status: StatusError,
    /// `Retry-After` header value (seconds) for 429/503.
    pub retry_after: Option<u64>,
}

impl Faults {
    /// Answer the next `times` requests matching `m` with `code`: 409 (optimistic-lock
    /// Conflict), 410 (Expired; for watches an ERROR event), 429 (TooManyRequests with
    /// Retry-After: 1), 500 (InternalError), 503 (ServiceUnavailable), 504 (Timeout), or any
    /// other code with a generic Status.
    pub fn fail(&self, m: Matcher, code: u16, times: usize) {
        self.fail_with_retry_after(m, code, times, 1);
    }

    /// Like [`Faults::fail`] with a chosen `Retry-After` for 429/503.
    pub fn fail_with_retry_after(&self, m: Matcher, code: u16, times: usize, retry_after: u64) {
        self.rules.lock().push(Rule {
            matcher: m,
            code,
            remaining: times,
            retry_after,
        });
    }

    /// Delay every request matching `m` by `d` before it is served (watches: before the
    /// stream starts). Latencies of several matching rules add up.
    pub fn set_latency(&self, m: Matcher, d: Duration) {
        self.latency.lock().push((m, d));
    }

    /// Remove all latency rules.
    pub fn clear_latency(&self) {
        self.latency.lock().clear();
    }

    /// Remove every rule (failures and latency).
    pub fn clear(&self) {
        self.rules.lock().clear();
        self.latency.lock().clear();
    }

    /// Abort every open watch connection now, as a network failure would (the chunked body
    /// ends without its terminator).
    pub fn drop_watches(&self) {
        self.drop.send_modify(|v| *v += 1);
    }

    /// How many injected failures are still pending.
    pub fn pending(&self) -> usize {
        self.rules.lock().iter().map(|r| r.remaining).sum()
    }

    pub(crate) fn subscribe_drops(&self) -> watch::Receiver<u64> {
        self.drop.subscribe()
    }

    pub(crate) fn latency_for(&self, r: &RequestInfo) -> Duration {
        self.latency
            .lock()
            .iter()
            .filter(|(m, _)| m.matches(r))
            .map(|(_, d)| *d)
            .sum()
    }

    /// Consume a matching rule, if any, and build its error.
    pub(crate) fn take(&self, r: &RequestInfo) -> Option<Injected> {
        let mut rules = self.rules.lock();
        let i = rules
            .iter()
            .position(|x| x.remaining > 0 && x.matcher.matches(r))?;
        rules[i].remaining -= 1;
        let rule = rules[i].clone();
        rules.retain(|x| x.remaining > 0);
        Some(build(r, rule.code, rule.retry_after))
    }
}

fn build(r: &RequestInfo, code: u16, retry_after: u64) -> Injected {
    let qualified = StatusError::qualified(&r.resource, &r.group);
    let mut details = json!({"kind": r.resource});
    if !r.name.is_empty() {
        details["name"] = json!(r.name);
    }
    if !r.group.is_empty() {
        details["group"] = json!(r.group);
    }
    let (status, ra) = match code {
        409 => (StatusError::conflict(&r.resource, &r.group, &r.name), None),
        410 => (
            StatusError::new(
                410,
                "Expired",
                "The resourceVersion for the provided list is too old.",
            ),
            None,
        ),
        429 => {
            let mut d = details.clone();
            d["retryAfterSeconds"] = json!(retry_after);
            (
                StatusError::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
                .with_details(d),
                Some(retry_after),
            )
        }
        500 => (
            StatusError::internal("kube-sim injected fault").with_details({
                let mut d = details.clone();
                d["causes"] = json!([{"message": "kube-sim injected fault"}]);
                d
            }),
            None,
        ),
        503 => {
            let mut d = details.clone();
            d["retryAfterSeconds"] = json!(retry_after);
            (
                StatusError::new(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )
                .with_details(d),
                Some(retry_after),
            )
        }
        504 => (
            StatusError::new(
                504,
                "Timeout",
                format!(
                    "Timeout: request did not complete within requested timeout - context deadline exceeded{}",
                    if r.name.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} {})", qualified, go_quote(&r.name))
                    }
                ),
            )
            .with_details(details.clone()),
            None,
        ),
        c => (
            StatusError::new(c, "", format!("kube-sim injected fault ({c})")).with_details(details),
            None,
        ),
    };
    Injected {
        status,
        retry_after: ra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_consumed() {
        let f = Faults::default();
        f.fail(Matcher::verb("update").resource("secrets"), 409, 2);
        let r = RequestInfo {
            verb: "update".into(),
            resource: "secrets".into(),
            name: "s".into(),
            ..Default::default()
        };
        let i = f.take(&r).unwrap();
        assert_eq!(i.status.code, 409);
        assert_eq!(i.status.reason, "Conflict");
        assert!(f.take(&r).is_some());
        assert!(f.take(&r).is_none());
        f.fail(Matcher::any(), 429, 1);
        let i = f.take(&r).unwrap();
        assert_eq!(i.retry_after, Some(1));
        assert_eq!(i.status.to_status()["details"]["retryAfterSeconds"], 1);
    }
}
