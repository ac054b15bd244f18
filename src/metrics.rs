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
//! | `lattice_keys_rotated_total` | counter | |
//! | `lattice_revocations_total` | counter | `kind` = `key`, `agent` |
//! | `lattice_agents_managed` | gauge | |
//! | `lattice_rotations_waiting` | gauge | |
//!
//! Labels never carry names of resources (unbounded cardinality) nor anything secret. The series
//! with a fixed set of labels (`result`, `kind`) exist from the start at zero, so that rates and
//! alerts work before the first error or revocation.

use std::sync::Arc;
use std::time::Duration;

use agentlattice::{Attempt, CallObserver, Operation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

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
    calls: Family<CallLabels, Counter>,
    call_duration: HistogramFamily<CallLabels>,
    throttle_wait: Family<OperationLabel, Counter<f64>>,
    keys_rotated: Counter,
    revocations: Family<KindLabel, Counter>,
    agents_managed: Gauge,
    rotations_waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
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
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "agentlattice_requests",
            "AgentLattice HTTP attempts by operation and status code",
            calls.clone(),
        );
        let call_duration: HistogramFamily<CallLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "agentlattice_request_duration_seconds",
            "Latency of AgentLattice HTTP attempts by operation and status code",
            call_duration.clone(),
        );
        let throttle_wait = Family::<OperationLabel, Counter<f64>>::default();
        registry.register(
            "agentlattice_throttle_wait_seconds",
            "Time spent waiting at the client's rate limit or Retry-After gate",
            throttle_wait.clone(),
        );
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
        for result in ["ok", "error"] {
            let _ = reconciles.get_or_create(&ResultLabel { result });
        }
        for kind in ["key", "agent"] {
            let _ = revocations.get_or_create(&KindLabel { kind });
        }
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            calls,
            call_duration,
            throttle_wait,
            keys_rotated,
            revocations,
            agents_managed,
            rotations_waiting,
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

    /// The observer to give the AgentLattice client.
    pub fn call_observer(self: &Arc<Self>) -> Arc<dyn CallObserver> {
        Arc::new(Observer(Arc::clone(self)))
    }
}

struct Observer(Arc<Metrics>);

impl CallObserver for Observer {
    fn on_attempt(&self, attempt: &Attempt<'_>) {
        let labels = CallLabels {
            operation: attempt.operation.as_str(),
            status: attempt.outcome.label().into_owned(),
        };
        self.0.calls.get_or_create(&labels).inc();
        self.0
            .call_duration
            .get_or_create(&labels)
            .observe(attempt.duration.as_secs_f64());
    }

    fn on_throttle_wait(&self, operation: Operation, waited: Duration) {
        self.0
            .throttle_wait
            .get_or_create(&OperationLabel {
                operation: operation.as_str(),
            })
            .inc_by(waited.as_secs_f64());
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
}
