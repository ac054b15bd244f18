//! Fail points for the crash tests (`tests/crash.rs`, `tests/backends.rs`): a recording run
//! learns every point the executor passes during a scenario, then one run per point crashes there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lattice_operator::reconcile::FailPoints;

/// Once armed, records every fail point passed, in order; built with [`FailScript::crashing`],
/// also fires (once) at the `occurrence`-th pass (1-based) of one point. Clones share the state.
#[derive(Clone, Default)]
pub struct FailScript {
    armed: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    crash_at: Option<(String, usize)>,
    count: Arc<AtomicUsize>,
    fired: Arc<AtomicBool>,
}

impl FailScript {
    /// A script that records and crashes at the `occurrence`-th pass of `point`.
    pub fn crashing(point: &str, occurrence: usize) -> FailScript {
        FailScript {
            crash_at: Some((point.to_owned(), occurrence)),
            ..FailScript::default()
        }
    }

    /// From now on, passes count (before, the scenario's set-up passes them too).
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The operator's fail points, following this script.
    pub fn failpoints(&self) -> FailPoints {
        let me = self.clone();
        Arc::new(move |point: &str| {
            if !me.armed.load(Ordering::SeqCst) {
                return false;
            }
            if let Ok(mut seen) = me.seen.lock() {
                seen.push(point.to_owned());
            }
            match &me.crash_at {
                Some((p, occurrence)) if p == point => {
                    let n = me.count.fetch_add(1, Ordering::SeqCst) + 1;
                    n == *occurrence && !me.fired.swap(true, Ordering::SeqCst)
                }
                _ => false,
            }
        })
    }

    /// Every point passed since armed, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether it was built to crash (the run then kills the operator and starts a fresh one).
    pub fn crashes(&self) -> bool {
        self.crash_at.is_some()
    }

    /// Whether the crash point fired.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// `[(point, occurrence)]` for a recorded sequence of points: each pass of a point, numbered from
/// 1 (what [`FailScript::crashing`] takes).
pub fn occurrences(seen: &[String]) -> Vec<(String, usize)> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    seen.iter()
        .map(|p| {
            let n = count.entry(p.as_str()).or_default();
            *n += 1;
            (p.clone(), *n)
        })
        .collect()
}
