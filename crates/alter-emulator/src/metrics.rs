//! Request counts by operation and status (`GET /_admin/metrics`, [`crate::Emulator::metrics`]).

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The status recorded for a request whose response was dropped on purpose.
pub(crate) const DROPPED: u16 = 0;

#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<HashMap<(&'static str, u16), u64>>,
}

impl Metrics {
    pub fn record(&self, operation: &'static str, status: u16) {
        *self.counts.lock().entry((operation, status)).or_default() += 1;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut snap = MetricsSnapshot::default();
        for ((op, status), n) in self.counts.lock().iter() {
            if *status == DROPPED {
                *snap.dropped.entry((*op).to_owned()).or_default() += n;
            } else {
                *snap
                    .requests
                    .entry((*op).to_owned())
                    .or_default()
                    .entry(*status)
                    .or_default() += n;
            }
        }
        snap
    }
}

/// Request counts. Operations are the route names of [`crate::OPERATIONS`] plus `healthz`,
/// `admin` and `unrouted`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// operation → status → count.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// operation → requests handled whose response was dropped.
    pub dropped: BTreeMap<String, u64>,
}

impl MetricsSnapshot {
    /// Every request of that operation, dropped ones included.
    pub fn count(&self, operation: &str) -> u64 {
        self.requests
            .get(operation)
            .map_or(0, |m| m.values().sum::<u64>())
            + self.dropped.get(operation).copied().unwrap_or(0)
    }

    /// Requests of that operation answered with that status.
    pub fn count_status(&self, operation: &str, status: u16) -> u64 {
        self.requests
            .get(operation)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }
}
