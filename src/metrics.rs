//! Prometheus metrics (prometheus-client), served on `/metrics` by [`crate::admin`].
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `lattice_reconciles_total` | counter | `result` = `ok`, `error` |
//! | `lattice_reconcile_duration_seconds` | histogram | |
//! | `lattice_reconcile_errors_total` | counter | `category` (the condition reason, e.g. `RateLimited`) |
//! | `lattice_agentlattice_requests_total` | counter | `operation`, `status` (`201`, `429`, `timeout`, …) |
//! | `lattice_agentlattice_request_duration_seconds` | histogram | `operation`, `status` |
//! | `lattice_agentlattice_throttle_wait_seconds_total` | counter | `operation` |
//! | `lattice_alter_requests_total` | counter | `operation`, `status` (Alter provisioners) |
//! | `lattice_alter_request_duration_seconds` | histogram | `operation`, `status` |
//! | `lattice_alter_throttle_wait_seconds_total` | counter | `operation` |
//! | `lattice_keys_rotated_total` | counter | |
//! | `lattice_revocations_total` | counter | `kind` = `key`, `agent` |
//! | `lattice_agents_managed` | gauge | |
//! | `lattice_rotations_waiting` | gauge | |
//! | `lattice_rotations_overdue` | gauge | |
//! | `lattice_service_key_age_seconds` | gauge | |
//! | `lattice_agent_key_age_seconds` | gauge | `namespace`, `name` (opt-in: `--per-agent-metrics`) |
//!
//! Labels never carry names of resources (unbounded cardinality) nor anything secret — except
//! `lattice_agent_key_age_seconds`, one series per LatticeAgent, which exists only when the
//! operator runs with `--per-agent-metrics`. The series with a fixed set of labels (`result`,
//! `kind`) and the two service key error categories exist from the start at zero, so that rates
//! and alerts work before the first error or revocation.
//!
//! The ages and `lattice_rotations_overdue` are computed when `/metrics` is scraped (from the times
//! remembered here at the end of each reconcile), so they move between reconciles as time does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{Attempt, CallObserver, Operation};
use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    namespace: String,
    name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Help of `lattice_service_key_age_seconds`: what the age is measured from.
pub const SERVICE_KEY_AGE_HELP: &str = "Seconds since the service key in its Secret last changed, \
     as far as the operator can tell: AgentLattice does not tell a service key's creation time, so \
     this is the age of the Secret's data (the last write of its data recorded in managedFields, \
     else the Secret's creationTimestamp), or since this process first saw a new key value";

/// Help of `lattice_agent_key_age_seconds`.
pub const AGENT_KEY_AGE_HELP: &str = "Seconds since the active key of a LatticeAgent was created \
     at AgentLattice (status.activeKey.createdAt); one series per LatticeAgent, only with \
     --per-agent-metrics";

/// Help of `lattice_rotations_overdue`.
pub const ROTATIONS_OVERDUE_HELP: &str = "LatticeAgents with an old key still not revoked after \
     its latest revocation time (status.retiringKeys[].revokeBy = retiringSince + maxGracePeriod)";

/// The times the age gauges and `lattice_rotations_overdue` are computed from at each scrape.
#[derive(Debug, Default)]
struct Ages {
    /// Whether `lattice_agent_key_age_seconds` is exported.
    per_agent: bool,
    /// uid → (labels, creation time of the active key); only with `per_agent`.
    agents: Mutex<HashMap<String, (AgentLabels, Timestamp)>>,
    /// uid → the earliest `revokeBy` of its retiring keys (rotating LatticeAgents only).
    revoke_by: Mutex<HashMap<String, Timestamp>>,
    /// Since when the current service key value is known to exist.
    service_key_since: Mutex<Option<Timestamp>>,
}

fn age_seconds(since: Timestamp, now: Timestamp) -> i64 {
    now.duration_since(since).as_secs().max(0)
}

impl Collector for Ages {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Timestamp::now();
        let overdue = self
            .revoke_by
            .lock()
            .map(|r| r.values().filter(|by| **by < now).count())
            .unwrap_or_default();
        let gauge = ConstGauge::new(i64::try_from(overdue).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "rotations_overdue",
            ROTATIONS_OVERDUE_HELP,
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)?;
        let service_key_since = self.service_key_since.lock().ok().and_then(|s| *s);
        if let Some(since) = service_key_since {
            let gauge = ConstGauge::new(age_seconds(since, now));
            let metric = encoder.encode_descriptor(
                "service_key_age_seconds",
                SERVICE_KEY_AGE_HELP,
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        if self.per_agent {
            let mut agents: Vec<(AgentLabels, Timestamp)> = self
                .agents
                .lock()
                .map(|a| a.values().cloned().collect())
                .unwrap_or_default();
            agents.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
            let mut family = encoder.encode_descriptor(
                "agent_key_age_seconds",
                AGENT_KEY_AGE_HELP,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (labels, created) in &agents {
                let gauge = ConstGauge::new(age_seconds(*created, now));
                gauge.encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<CategoryLabel, Counter>,
    /// AgentLattice's calls.
    agentlattice: BackendCalls,
    /// Alter's (its operations have their own names, some equal to AgentLattice's: families of
    /// their own keep them apart without a new label on the existing series).
    alter: BackendCalls,
    keys_rotated: Counter,
    revocations: Family<KindLabel, Counter>,
    agents_managed: Gauge,
    rotations_waiting: Gauge,
    ages: Arc<Ages>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        Metrics::with_per_agent_metrics(false)
    }

    /// A fresh registry; with `per_agent` also `lattice_agent_key_age_seconds`, one series per
    /// LatticeAgent (`--per-agent-metrics`).
    pub fn with_per_agent_metrics(per_agent: bool) -> Metrics {
        let mut registry = Registry::with_prefix("lattice");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of LatticeAgents by result",
            reconciles.clone(),
        );
        let reconcile_duration = latency_histogram();
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<CategoryLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            reconcile_errors.clone(),
        );
        let agentlattice = BackendCalls::register(&mut registry, "agentlattice", "AgentLattice");
        let alter = BackendCalls::register(&mut registry, "alter", "Alter");
        let keys_rotated = Counter::default();
        registry.register(
            "keys_rotated",
            "Agent keys replaced in their Secret by a rotation",
            keys_rotated.clone(),
        );
        let revocations = Family::<KindLabel, Counter>::default();
        registry.register(
            "revocations",
            "Revocations at AgentLattice by kind (key, agent)",
            revocations.clone(),
        );
        let agents_managed = Gauge::default();
        registry.register(
            "agents_managed",
            "LatticeAgents with a registered agent",
            agents_managed.clone(),
        );
        let rotations_waiting = Gauge::default();
        registry.register(
            "rotations_waiting",
            "LatticeAgents with old keys waiting to be revoked",
            rotations_waiting.clone(),
        );
        let ages = Arc::new(Ages {
            per_agent,
            ..Ages::default()
        });
        registry.register_collector(Box::new(Arc::clone(&ages)));
        for result in ["ok", "error"] {
            let _ = reconciles.get_or_create(&ResultLabel { result });
        }
        for kind in ["key", "agent"] {
            let _ = revocations.get_or_create(&KindLabel { kind });
        }
        // The service key alerts fire on the first such error (an `increase` needs a sample
        // before it).
        for category in ["ServiceKeyMissing", "ServiceKeyRejected"] {
            let _ = reconcile_errors.get_or_create(&CategoryLabel { category });
        }
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            agentlattice,
            alter,
            keys_rotated,
            revocations,
            agents_managed,
            rotations_waiting,
            ages,
        }
    }

    /// Whether `lattice_agent_key_age_seconds` is exported.
    pub fn per_agent(&self) -> bool {
        self.ages.per_agent
    }

    /// The LatticeAgent `uid` (`namespace/name`) settled with an active key created at
    /// `key_created_at` (`None`: no key, its `lattice_agent_key_age_seconds` series goes — kept only
    /// with per-agent metrics), and retiring keys whose earliest `revokeBy` is `revoke_by` (`None`:
    /// nothing retiring).
    pub fn agent_settled(
        &self,
        uid: &str,
        namespace: &str,
        name: &str,
        key_created_at: Option<Timestamp>,
        revoke_by: Option<Timestamp>,
    ) {
        if let Ok(mut map) = self.ages.revoke_by.lock() {
            match revoke_by {
                Some(by) => {
                    map.insert(uid.to_owned(), by);
                }
                None => {
                    map.remove(uid);
                }
            }
        }
        if !self.ages.per_agent {
            return;
        }
        if let Ok(mut agents) = self.ages.agents.lock() {
            match key_created_at {
                Some(created) => {
                    let labels = AgentLabels {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    };
                    agents.insert(uid.to_owned(), (labels, created));
                }
                None => {
                    agents.remove(uid);
                }
            }
        }
    }

    /// The LatticeAgent `uid` is gone: nothing is remembered of it any more.
    pub fn forget_agent(&self, uid: &str) {
        if let Ok(mut agents) = self.ages.agents.lock() {
            agents.remove(uid);
        }
        if let Ok(mut map) = self.ages.revoke_by.lock() {
            map.remove(uid);
        }
    }

    /// The current service key value is known to exist since `since`.
    pub fn service_key_since(&self, since: Timestamp) {
        if let Ok(mut s) = self.ages.service_key_since.lock() {
            *s = Some(since);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One reconcile ended (`ok` or `error`) after `duration`.
    pub fn reconciled(&self, result: &'static str, duration: Duration) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// A reconcile failed with this category.
    pub fn reconcile_error(&self, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabel { category })
            .inc();
    }

    /// A key was rotated into its Secret.
    pub fn key_rotated(&self) {
        self.keys_rotated.inc();
    }

    /// A key or an agent was revoked.
    pub fn revoked(&self, kind: &'static str) {
        self.revocations.get_or_create(&KindLabel { kind }).inc();
    }

    /// Sets the two gauges.
    pub fn set_gauges(&self, agents_managed: usize, rotations_waiting: usize) {
        self.agents_managed
            .set(i64::try_from(agents_managed).unwrap_or(i64::MAX));
        self.rotations_waiting
            .set(i64::try_from(rotations_waiting).unwrap_or(i64::MAX));
    }

    /// The observer to give the Alter client.
    pub fn alter_observer(self: &Arc<Self>) -> Arc<dyn alter::CallObserver> {
        Arc::new(AlterObserver(Arc::clone(self)))
    }

    /// The observer to give the AgentLattice client.
    pub fn call_observer(self: &Arc<Self>) -> Arc<dyn CallObserver> {
        Arc::new(Observer(Arc::clone(self)))
    }
}

/// One backend's call metrics: `lattice_<prefix>_requests_total`,
/// `…_request_duration_seconds` and `…_throttle_wait_seconds_total`.
#[derive(Debug)]
struct BackendCalls {
    requests: Family<CallLabels, Counter>,
    duration: HistogramFamily<CallLabels>,
    throttle_wait: Family<OperationLabel, Counter<f64>>,
}

impl BackendCalls {
    /// The three families of backend `name`, registered under `prefix`.
    fn register(registry: &mut Registry, prefix: &str, name: &str) -> BackendCalls {
        let calls = BackendCalls {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            throttle_wait: Family::default(),
        };
        registry.register(
            format!("{prefix}_requests"),
            format!("{name} HTTP attempts by operation and status code"),
            calls.requests.clone(),
        );
        registry.register(
            format!("{prefix}_request_duration_seconds"),
            format!("Latency of {name} HTTP attempts by operation and status code"),
            calls.duration.clone(),
        );
        registry.register(
            format!("{prefix}_throttle_wait_seconds"),
            format!("Time spent waiting at the {name} client's rate limit or Retry-After gate"),
            calls.throttle_wait.clone(),
        );
        calls
    }

    fn attempt(&self, operation: &'static str, status: String, duration: Duration) {
        let labels = CallLabels { operation, status };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    fn throttled(&self, operation: &'static str, waited: Duration) {
        self.throttle_wait
            .get_or_create(&OperationLabel { operation })
            .inc_by(waited.as_secs_f64());
    }
}

/// The observer of the AgentLattice client: the `lattice_agentlattice_*` families.
struct Observer(Arc<Metrics>);

/// The observer of the Alter client: the `lattice_alter_*` families.
struct AlterObserver(Arc<Metrics>);

impl alter::CallObserver for AlterObserver {
    fn on_attempt(&self, attempt: &alter::Attempt<'_>) {
        self.0.alter.attempt(
            attempt.operation.as_str(),
            attempt.outcome.label().into_owned(),
            attempt.duration,
        );
    }

    fn on_throttle_wait(&self, operation: alter::Operation, waited: Duration) {
        self.0.alter.throttled(operation.as_str(), waited);
    }
}

impl CallObserver for Observer {
    fn on_attempt(&self, attempt: &Attempt<'_>) {
        self.0.agentlattice.attempt(
            attempt.operation.as_str(),
            attempt.outcome.label().into_owned(),
            attempt.duration,
        );
    }

    fn on_throttle_wait(&self, operation: Operation, waited: Duration) {
        self.0.agentlattice.throttled(operation.as_str(), waited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Arc::new(Metrics::new());
        m.reconciled("ok", Duration::from_millis(12));
        m.reconcile_error("RateLimited");
        m.key_rotated();
        m.revoked("key");
        m.set_gauges(3, 1);
        // (`Attempt` is non-exhaustive: the client calls the observer, as the integration tests
        // show; here only the throttle hook can be driven.)
        m.call_observer()
            .on_throttle_wait(Operation::Register, Duration::from_millis(3));
        let text = m.encode();
        for needle in [
            "lattice_reconciles_total{result=\"ok\"} 1",
            "lattice_reconcile_duration_seconds_count 1",
            "lattice_reconcile_errors_total{category=\"RateLimited\"} 1",
            "lattice_agentlattice_throttle_wait_seconds_total{operation=\"register\"} 0.003",
            "lattice_keys_rotated_total 1",
            "lattice_revocations_total{kind=\"key\"} 1",
            "lattice_agents_managed 3",
            "lattice_rotations_waiting 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn key_ages_are_computed_at_scrape_time_and_per_agent_series_are_opt_in() {
        let hour_ago = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let off = Metrics::new();
        off.agent_settled("u1", "payments", "deploy-bot", Some(hour_ago), None);
        let text = off.encode();
        assert!(!text.contains("agent_key_age_seconds"), "{text}");
        assert!(
            !text.contains("service_key_age_seconds"),
            "no service key seen yet: {text}"
        );
        off.service_key_since(hour_ago);
        let text = off.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("lattice_service_key_age_seconds "))
            .unwrap_or_else(|| panic!("{text}"));
        let age: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3600..3660).contains(&age), "{line}");

        let on = Metrics::with_per_agent_metrics(true);
        assert!(on.per_agent());
        on.agent_settled("u1", "payments", "deploy-bot", Some(hour_ago), None);
        on.agent_settled("u2", "web", "api", Some(Timestamp::now()), None);
        let text = on.encode();
        assert!(
            text.contains("# TYPE lattice_agent_key_age_seconds gauge"),
            "{text}"
        );
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("lattice_agent_key_age_seconds{"))
            .collect();
        assert_eq!(series.len(), 2, "{text}");
        assert!(
            series[0].starts_with(
                "lattice_agent_key_age_seconds{namespace=\"payments\",name=\"deploy-bot\"} 36"
            ),
            "{series:?}"
        );
        assert!(
            series[1].starts_with("lattice_agent_key_age_seconds{namespace=\"web\",name=\"api\"} ")
        );
        on.agent_settled("u2", "web", "api", None, None);
        on.forget_agent("u1");
        let text = on.encode();
        assert!(
            !text.contains("lattice_agent_key_age_seconds{"),
            "both series gone: {text}"
        );
    }

    #[test]
    fn rotations_are_overdue_once_past_their_latest_revocation_time() {
        let m = Metrics::new();
        let now = Timestamp::now();
        let overdue = |m: &Metrics| -> String {
            m.encode()
                .lines()
                .find(|l| l.starts_with("lattice_rotations_overdue "))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert_eq!(
            overdue(&m),
            "lattice_rotations_overdue 0",
            "exists from the start"
        );
        let past = now - jiff::SignedDuration::from_mins(5);
        let future = now + jiff::SignedDuration::from_hours(1);
        m.agent_settled("a", "ns", "a", Some(now), Some(past));
        m.agent_settled("b", "ns", "b", Some(now), Some(future));
        m.agent_settled("c", "ns", "c", Some(now), Some(past));
        assert_eq!(overdue(&m), "lattice_rotations_overdue 2");
        m.agent_settled("a", "ns", "a", Some(now), None);
        m.forget_agent("c");
        assert_eq!(overdue(&m), "lattice_rotations_overdue 0");
        assert!(
            !m.encode().contains("agent_key_age_seconds"),
            "per-agent series stay off"
        );
    }
}
