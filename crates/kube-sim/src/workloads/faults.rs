//! Fault injection for workloads: pods that never become Ready, pods that crash after they
//! start, pods that start slowly. Rules match pods by namespace, workload name (the pod's
//! controller, or the Deployment of its ReplicaSet), a label or an annotation of the pod (pod
//! template labels and annotations are the pod's).
//!
//! ```no_run
//! # async fn f(sim: &kube_sim::KubeSim) {
//! use kube_sim::PodMatcher;
//! use std::time::Duration;
//! sim.workload_faults().never_ready(PodMatcher::workload("shop", "web"));
//! sim.workload_faults().crash_after_start(PodMatcher::label("app", "worker"), Duration::from_millis(50));
//! sim.workload_faults().slow_start(PodMatcher::annotation("example.com/slow", "true"), Duration::from_secs(2));
//! sim.workload_faults().clear();
//! # }
//! ```

use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;

/// Which pods a workload fault applies to. `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMatcher {
    pub namespace: Option<String>,
    /// The pod's controller name, or the name of the Deployment owning its ReplicaSet.
    pub workload: Option<String>,
    pub label: Option<(String, String)>,
    pub annotation: Option<(String, String)>,
}

impl PodMatcher {
    /// Every pod.
    pub fn any() -> Self {
        Self::default()
    }

    /// Pods of workload `name` (Deployment, StatefulSet, DaemonSet or ReplicaSet) in `namespace`.
    pub fn workload(namespace: &str, name: &str) -> Self {
        Self {
            namespace: Some(namespace.to_string()),
            workload: Some(name.to_string()),
            ..Self::default()
        }
    }

    /// Pods carrying label `key=value`.
    pub fn label(key: &str, value: &str) -> Self {
        Self {
            label: Some((key.to_string(), value.to_string())),
            ..Self::default()
        }
    }

    /// Pods carrying annotation `key=value` (e.g. set on the pod template).
    pub fn annotation(key: &str, value: &str) -> Self {
        Self {
            annotation: Some((key.to_string(), value.to_string())),
            ..Self::default()
        }
    }

    /// Restrict to a namespace.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Whether `pod` (owned by the workloads named in `workloads`) matches.
    pub fn matches(&self, pod: &Value, workloads: &[String]) -> bool {
        let meta_map = |k: &str, key: &str| -> Option<String> {
            pod.pointer(&format!("/metadata/{k}"))?
                .get(key)?
                .as_str()
                .map(str::to_string)
        };
        self.namespace
            .as_deref()
            .is_none_or(|ns| crate::meta::namespace(pod) == ns)
            && self
                .workload
                .as_deref()
                .is_none_or(|w| workloads.iter().any(|x| x == w))
            && self
                .label
                .as_ref()
                .is_none_or(|(k, v)| meta_map("labels", k).as_deref() == Some(v.as_str()))
            && self
                .annotation
                .as_ref()
                .is_none_or(|(k, v)| meta_map("annotations", k).as_deref() == Some(v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Fault {
    NeverReady,
    CrashAfterStart(Duration),
    SlowStart(Duration),
}

/// What the simulated kubelet does differently for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodProfile {
    pub never_ready: bool,
    /// The container exits this long after each start (CrashLoopBackOff).
    pub crash_after: Option<Duration>,
    /// Added to the start delay.
    pub extra_start: Duration,
}

/// The workload fault switchboard of one simulator ([`crate::KubeSim::workload_faults`]).
#[derive(Debug)]
pub struct WorkloadFaults {
    rules: Mutex<Vec<(PodMatcher, Fault)>>,
    changed: watch::Sender<u64>,
}

impl Default for WorkloadFaults {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl WorkloadFaults {
    fn push(&self, m: PodMatcher, f: Fault) {
        self.rules.lock().push((m, f));
        self.changed.send_modify(|v| *v += 1);
    }

    /// Matching pods run but never pass their readiness check (`Ready=False`,
    /// `ContainersNotReady`): a rollout of their workload gets stuck, and a Deployment reports
    /// `ProgressDeadlineExceeded` after `progressDeadlineSeconds`.
    pub fn never_ready(&self, m: PodMatcher) {
        self.push(m, Fault::NeverReady);
    }

    /// Matching pods' containers exit with code 1 `after` each start; the kubelet restarts
    /// them with a doubling back-off (`CrashLoopBackOff`, `restartCount` grows, never Ready).
    pub fn crash_after_start(&self, m: PodMatcher, after: Duration) {
        self.push(m, Fault::CrashAfterStart(after));
    }

    /// Matching pods take `extra` longer to start (a slow rollout).
    pub fn slow_start(&self, m: PodMatcher, extra: Duration) {
        self.push(m, Fault::SlowStart(extra));
    }

    /// Remove every workload fault; affected pods recover.
    pub fn clear(&self) {
        self.rules.lock().clear();
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn profile(&self, pod: &Value, workloads: &[String]) -> PodProfile {
        let mut p = PodProfile::default();
        for (m, f) in self.rules.lock().iter() {
            if !m.matches(pod, workloads) {
                continue;
            }
            match f {
                Fault::NeverReady => p.never_ready = true,
                Fault::CrashAfterStart(d) => p.crash_after = Some(*d),
                Fault::SlowStart(d) => p.extra_start += *d,
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matchers() {
        let pod = json!({"metadata": {"namespace": "a", "labels": {"app": "web"}, "annotations": {"x": "1"}}});
        let f = WorkloadFaults::default();
        f.never_ready(PodMatcher::workload("a", "web"));
        f.slow_start(PodMatcher::annotation("x", "1"), Duration::from_millis(5));
        let p = f.profile(&pod, &["web-abc".into(), "web".into()]);
        assert!(p.never_ready);
        assert_eq!(p.extra_start, Duration::from_millis(5));
        assert!(!f.profile(&pod, &["other".into()]).never_ready);
        assert!(PodMatcher::label("app", "web").matches(&pod, &[]));
        assert!(!PodMatcher::label("app", "db").matches(&pod, &[]));
        f.clear();
        assert_eq!(f.profile(&pod, &["web".into()]), PodProfile::default());
    }
}
