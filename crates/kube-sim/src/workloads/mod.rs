//! The simulated workload controllers: what kube-controller-manager, kube-scheduler and the
//! kubelets of a cluster do with Deployments, ReplicaSets, StatefulSets, DaemonSets, Pods and
//! Nodes, as far as a client can observe it through the API.
//!
//! Every controller is a pure decision (`plan`: the objects it reads and the time in, the
//! [`Action`]s to take out) with unit tests, driven by this module's loop: committed store
//! events mark keys dirty (like the informers' work queues), each dirty key is planned from
//! the store's current state and its actions go through the same write pipeline as API
//! requests (resourceVersion, watch events, managedFields of `kube-controller-manager`,
//! `kube-scheduler` or `kubelet`). Timers exist only for pending transitions (a pod that will
//! start or become Ready, a progress deadline, `minReadySeconds`): with nothing pending the
//! loop sleeps until the next store event.

pub mod daemonset;
pub mod deployment;
pub mod faults;
pub mod nodes;
pub mod pods;
pub mod replicaset;
pub mod spec;
pub mod statefulset;
pub mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::meta;
use crate::ops::{self, DeleteOptions, Mode, Target, WriteParams};
use crate::state::State;
use crate::store::{Event, EventType, Gr};

/// Timing of the simulated cluster.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// From scheduling to `Running` (image pull and container start).
    pub pod_start_delay: Duration,
    /// From `Running` to `Ready` (the readiness probe's first success).
    pub pod_ready_delay: Duration,
    /// From a graceful DELETE of a pod to its removal by the kubelet.
    pub pod_termination_delay: Duration,
    /// Nodes created at start.
    pub nodes: Vec<String>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            pod_start_delay: Duration::from_millis(500),
            pod_ready_delay: Duration::from_millis(500),
            pod_termination_delay: Duration::from_millis(200),
            nodes: (1..=3).map(|i| format!("kube-sim-node-{i}")).collect(),
        }
    }
}

/// A resource the controllers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Res {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
}

pub const PODS: Res = Res {
    group: "",
    version: "v1",
    resource: "pods",
};
pub const NODES: Res = Res {
    group: "",
    version: "v1",
    resource: "nodes",
};
pub const REPLICA_SETS: Res = Res {
    group: "apps",
    version: "v1",
    resource: "replicasets",
};
pub const DEPLOYMENTS: Res = Res {
    group: "apps",
    version: "v1",
    resource: "deployments",
};
pub const STATEFUL_SETS: Res = Res {
    group: "apps",
    version: "v1",
    resource: "statefulsets",
};
pub const DAEMON_SETS: Res = Res {
    group: "apps",
    version: "v1",
    resource: "daemonsets",
};
pub const REVISIONS: Res = Res {
    group: "apps",
    version: "v1",
    resource: "controllerrevisions",
};

impl Res {
    pub fn gr(&self) -> Gr {
        Gr::new(self.group, self.resource)
    }
}

/// An Event as a controller records it (core/v1, through client-go's legacy recorder).
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub namespace: String,
    /// The `involvedObject` reference.
    pub involved: Value,
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// `source.component` / `reportingComponent`.
    pub component: &'static str,
    /// `source.host` (kubelet events).
    pub host: Option<String>,
}

/// One write a controller decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create {
        res: Res,
        namespace: String,
        object: Value,
    },
    /// Replace the whole status of the object with this uid.
    Status {
        res: Res,
        namespace: String,
        name: String,
        uid: String,
        status: Value,
    },
    /// JSON merge patch of the main resource of the object with this uid.
    Patch {
        res: Res,
        namespace: String,
        name: String,
        uid: String,
        patch: Value,
    },
    /// DELETE of the object with this uid (`grace`: `gracePeriodSeconds`).
    Delete {
        res: Res,
        namespace: String,
        name: String,
        uid: String,
        grace: Option<i64>,
    },
    Event(EventSpec),
}

/// A controller's decision: writes, and when to look again if nothing else happens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub requeue: Option<Duration>,
}

impl Plan {
    pub fn requeue_min(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

/// What a loop iteration works on. Dirty keys are taken in this order: the kubelets and
/// scheduler first, then the pod owners, Deployments last — so a ReplicaSet a Deployment just
/// scaled down has deleted its surplus pods before the Deployment's next step scales another
/// one up (the rollout never holds more pods than `maxSurge` allows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Node(String),
    Pod(String, String),
    ReplicaSet(String, String),
    StatefulSet(String, String),
    DaemonSet(String, String),
    Deployment(String, String),
    /// Every DaemonSet (nodes changed).
    AllDaemonSets,
    /// Every unscheduled pod (nodes changed).
    PendingPods,
    /// Every pod (workload faults changed).
    AllPods,
}

/// Controller memory: what a real kubelet or scheduler keeps in process.
struct Controllers {
    st: Arc<State>,
    cfg: WorkloadConfig,
    dirty: BTreeSet<Key>,
    timers: Vec<(Instant, Key)>,
    /// The kubelet's memory of each bound pod (by uid).
    kubelet: HashMap<String, PodMemory>,
    /// The pods (by name) that refer to each Secret (by namespace and name), so that a change of
    /// that Secret syncs exactly them again.
    secret_users: HashMap<(String, String), BTreeSet<String>>,
    /// The Secrets each of those pods (by namespace and name) refers to.
    pod_secrets: HashMap<(String, String), BTreeSet<String>>,
    /// When a graceful deletion was first seen (by uid).
    deleting_since: HashMap<String, Instant>,
    /// Round-robin position of the scheduler.
    next_node: usize,
}

pub async fn run(st: Arc<State>, mut rx: mpsc::UnboundedReceiver<Arc<Event>>, cfg: WorkloadConfig) {
    let mut shutdown = st.shutdown.subscribe();
    let mut faults = st.workload_faults.subscribe();
    let mut c = Controllers {
        st: st.clone(),
        cfg,
        dirty: BTreeSet::new(),
        timers: Vec::new(),
        kubelet: HashMap::new(),
        secret_users: HashMap::new(),
        pod_secrets: HashMap::new(),
        deleting_since: HashMap::new(),
        next_node: 0,
    };
    // Objects loaded from a state file, or created before the loop ran.
    c.dirty.insert(Key::AllPods);
    c.dirty.insert(Key::AllDaemonSets);
    c.enqueue_all(&DEPLOYMENTS);
    c.enqueue_all(&STATEFUL_SETS);
    c.enqueue_all(&REPLICA_SETS);
    c.enqueue_all(&NODES);
    loop {
        while let Ok(ev) = rx.try_recv() {
            c.on_event(&ev);
        }
        let now = Instant::now();
        let mut due = Vec::new();
        c.timers.retain(|(t, k)| {
            if *t <= now {
                due.push(k.clone());
                false
            } else {
                true
            }
        });
        c.dirty.extend(due);
        if let Some(key) = c.dirty.pop_first() {
            c.sync(key);
            continue;
        }
        let next = c.timers.iter().map(|(t, _)| *t).min();
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => c.on_event(&ev),
                None => return,
            },
            _ = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
            r = faults.changed() => {
                if r.is_ok() {
                    c.dirty.insert(Key::AllPods);
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// What the kubelet keeps in process about one pod.
#[derive(Debug, Default)]
struct PodMemory {
    /// When each container became free to start.
    startable_since: BTreeMap<String, Instant>,
    /// `FailedMount` messages already recorded.
    reported_mounts: BTreeSet<String>,
}

impl PodMemory {
    fn since(&self, now: Instant) -> BTreeMap<String, Duration> {
        self.startable_since
            .iter()
            .map(|(c, t)| (c.clone(), now.saturating_duration_since(*t)))
            .collect()
    }
}

fn owner_key(v: &Value) -> Option<Key> {
    let (kind, name, _) = util::controller_of(v)?;
    let ns = meta::namespace(v).to_string();
    match kind.as_str() {
        "Deployment" => Some(Key::Deployment(ns, name)),
        "ReplicaSet" => Some(Key::ReplicaSet(ns, name)),
        "StatefulSet" => Some(Key::StatefulSet(ns, name)),
        "DaemonSet" => Some(Key::DaemonSet(ns, name)),
        _ => None,
    }
}

impl Controllers {
    fn enqueue_all(&mut self, res: &Res) {
        for o in self.st.store.list(&res.gr(), None).items {
            let (ns, name) = (o.namespace().to_string(), o.name().to_string());
            let key = match res.resource {
                "deployments" => Key::Deployment(ns, name),
                "statefulsets" => Key::StatefulSet(ns, name),
                "replicasets" => Key::ReplicaSet(ns, name),
                "nodes" => Key::Node(name),
                _ => continue,
            };
            self.dirty.insert(key);
        }
    }

    fn on_event(&mut self, ev: &Event) {
        let gr = &ev.key.gr;
        let (ns, name) = (ev.key.namespace.clone(), ev.key.name.clone());
        let mut owners = Vec::new();
        if let Some(k) = owner_key(&ev.obj.value) {
            owners.push(k);
        }
        if let Some(p) = &ev.prev
            && let Some(k) = owner_key(&p.value)
        {
            owners.push(k);
        }
        match (gr.group.as_str(), gr.resource.as_str()) {
            ("apps", "deployments") => {
                self.dirty.insert(Key::Deployment(ns, name));
            }
            ("apps", "replicasets") => {
                self.dirty.insert(Key::ReplicaSet(ns, name));
                self.dirty.extend(owners);
            }
            ("apps", "statefulsets") => {
                self.dirty.insert(Key::StatefulSet(ns, name));
            }
            ("apps", "daemonsets") => {
                self.dirty.insert(Key::DaemonSet(ns, name));
            }
            ("apps", "controllerrevisions") => self.dirty.extend(owners),
            ("", "pods") => {
                if ev.kind == EventType::Deleted {
                    let uid = ev.obj.uid().to_string();
                    self.kubelet.remove(&uid);
                    self.deleting_since.remove(&uid);
                    self.index_secrets(&ns, &name, BTreeSet::new());
                    // A pod of the same name created meanwhile (a StatefulSet's) may already
                    // have been synced and indexed: sync it again to index it back.
                    self.dirty.insert(Key::Pod(ns, name));
                } else {
                    self.dirty.insert(Key::Pod(ns, name));
                }
                self.dirty.extend(owners);
            }
            ("", "secrets") => {
                // The kubelet's secret manager: pods waiting for this Secret (or a key of it)
                // are evaluated again; no other pod is touched.
                if let Some(pods) = self.secret_users.get(&(ns.clone(), name)) {
                    for p in pods {
                        self.dirty.insert(Key::Pod(ns.clone(), p.clone()));
                    }
                }
            }
            ("", "nodes") => {
                self.dirty.insert(Key::Node(name));
                self.dirty.insert(Key::AllDaemonSets);
                self.dirty.insert(Key::PendingPods);
                if ev.kind == EventType::Deleted {
                    // Pod GC: pods bound to a node that is gone.
                    self.dirty.insert(Key::AllPods);
                }
            }
            _ => {}
        }
    }

    fn after(&mut self, d: Duration, key: Key) {
        let at = Instant::now() + d;
        if let Some(slot) = self.timers.iter_mut().find(|(_, k)| *k == key) {
            if at < slot.0 {
                slot.0 = at;
            }
            return;
        }
        self.timers.push((at, key));
    }

    fn sync(&mut self, key: Key) {
        let plan = match &key {
            Key::AllPods | Key::PendingPods => {
                let pending_only = key == Key::PendingPods;
                for p in self.st.store.list(&PODS.gr(), None).items {
                    if pending_only && !meta::str_at(&p.value, "/spec/nodeName").is_empty() {
                        continue;
                    }
                    self.dirty
                        .insert(Key::Pod(p.namespace().to_string(), p.name().to_string()));
                }
                return;
            }
            Key::AllDaemonSets => {
                for d in self.st.store.list(&DAEMON_SETS.gr(), None).items {
                    self.dirty.insert(Key::DaemonSet(
                        d.namespace().to_string(),
                        d.name().to_string(),
                    ));
                }
                return;
            }
            Key::Node(name) => {
                let Some(n) = self.st.store.get(&NODES.gr(), "", name) else {
                    return;
                };
                (nodes::plan(&n.value, &meta::now_rfc3339()), "kubelet")
            }
            Key::Pod(ns, name) => match self.plan_pod(ns, name) {
                Some(p) => p,
                None => return,
            },
            Key::ReplicaSet(ns, name) => {
                let Some(rs) = self.st.store.get(&REPLICA_SETS.gr(), ns, name) else {
                    return;
                };
                let pods = self.owned(&rs.value, &PODS);
                (
                    replicaset::plan(&rs.value, &pods, jiff::Timestamp::now().as_second()),
                    "kube-controller-manager",
                )
            }
            Key::Deployment(ns, name) => {
                let Some(d) = self.st.store.get(&DEPLOYMENTS.gr(), ns, name) else {
                    return;
                };
                let rss = self.owned(&d.value, &REPLICA_SETS);
                (
                    deployment::plan(&d.value, &rss, jiff::Timestamp::now()),
                    "kube-controller-manager",
                )
            }
            Key::StatefulSet(ns, name) => {
                let Some(s) = self.st.store.get(&STATEFUL_SETS.gr(), ns, name) else {
                    return;
                };
                let pods = self.owned(&s.value, &PODS);
                let revisions = self.owned(&s.value, &REVISIONS);
                (
                    statefulset::plan(&s.value, &pods, &revisions, jiff::Timestamp::now()),
                    "kube-controller-manager",
                )
            }
            Key::DaemonSet(ns, name) => {
                let Some(d) = self.st.store.get(&DAEMON_SETS.gr(), ns, name) else {
                    return;
                };
                let pods = self.owned(&d.value, &PODS);
                let revisions = self.owned(&d.value, &REVISIONS);
                let nodes: Vec<Value> = self
                    .st
                    .store
                    .list(&NODES.gr(), None)
                    .items
                    .iter()
                    .map(|n| n.value.clone())
                    .collect();
                (
                    daemonset::plan(&d.value, &pods, &revisions, &nodes, jiff::Timestamp::now()),
                    "kube-controller-manager",
                )
            }
        };
        let (plan, manager) = plan;
        let mut failed = false;
        for a in &plan.actions {
            failed |= !execute(&self.st, a, manager);
        }
        if let Some(d) = plan.requeue {
            self.after(d, key.clone());
        }
        if failed {
            // Nothing may change to bring the key back (a name taken, a write refused).
            self.after(Duration::from_millis(250), key);
        }
    }

    /// Objects of `res` whose controller is `owner`.
    fn owned(&self, owner: &Value, res: &Res) -> Vec<Value> {
        let uid = meta::uid(owner);
        let gr = res.gr();
        let mut out: Vec<Value> = self
            .st
            .store
            .dependents_of(uid)
            .into_iter()
            .filter(|(k, _)| k.gr == gr)
            .map(|(_, o)| o.value.clone())
            .filter(|v| util::controller_of(v).is_some_and(|(_, _, u)| u == uid))
            .collect();
        out.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        out
    }

    /// The workloads a pod belongs to (its controller, and that controller's controller).
    fn workloads_of(&self, pod: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((kind, name, _)) = util::controller_of(pod) {
            if kind == "ReplicaSet"
                && let Some(rs) = self
                    .st
                    .store
                    .get(&REPLICA_SETS.gr(), meta::namespace(pod), &name)
                && let Some((_, d, _)) = util::controller_of(&rs.value)
            {
                out.push(d);
            }
            out.push(name);
        }
        out
    }

    fn plan_pod(&mut self, ns: &str, name: &str) -> Option<(Plan, &'static str)> {
        let pod = self.st.store.get(&PODS.gr(), ns, name)?;
        let pod = &pod.value;
        let uid = meta::uid(pod).to_string();
        let node_name = meta::str_at(pod, "/spec/nodeName").to_string();
        if meta::is_deleting(pod) {
            let since = *self
                .deleting_since
                .entry(uid.clone())
                .or_insert_with(Instant::now);
            let grace = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if grace == 0 {
                return None;
            }
            let elapsed = since.elapsed();
            let mut plan = Plan::default();
            if elapsed >= self.cfg.pod_termination_delay {
                plan.actions.push(Action::Delete {
                    res: PODS,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    uid,
                    grace: Some(0),
                });
            } else {
                plan.requeue = Some(self.cfg.pod_termination_delay - elapsed);
            }
            return Some((plan, "kubelet"));
        }
        let nodes: Vec<Value> = self
            .st
            .store
            .list(&NODES.gr(), None)
            .items
            .iter()
            .map(|n| n.value.clone())
            .collect();
        if node_name.is_empty() {
            let (plan, next) = pods::schedule(pod, &nodes, self.next_node, &meta::now_rfc3339());
            self.next_node = next;
            return Some((plan, "kube-scheduler"));
        }
        let Some(node) = nodes.iter().find(|n| meta::name(n) == node_name) else {
            // Pod GC: the node is gone.
            let mut plan = Plan::default();
            plan.actions.push(Action::Delete {
                res: PODS,
                namespace: ns.to_string(),
                name: name.to_string(),
                uid,
                grace: Some(0),
            });
            return Some((plan, "kube-controller-manager"));
        };
        let refs = pods::referenced_secrets(pod);
        let secret_gr = Gr::new("", "secrets");
        let secrets: BTreeMap<String, Value> = refs
            .iter()
            .filter_map(|s| {
                let o = self.st.store.get(&secret_gr, ns, s)?;
                Some((s.clone(), o.value.clone()))
            })
            .collect();
        self.index_secrets(ns, name, refs);
        let profile = self
            .st
            .workload_faults
            .profile(pod, &self.workloads_of(pod));
        let timing = pods::Timing {
            start: self.cfg.pod_start_delay,
            ready: self.cfg.pod_ready_delay,
        };
        let mem = self.kubelet.entry(uid).or_default();
        let now = Instant::now();
        let (start, stop) = pods::clock_changes(pod, &secrets, &mem.since(now), &timing, &profile);
        for c in stop {
            mem.startable_since.remove(&c);
        }
        for c in start {
            mem.startable_since.insert(c, now);
        }
        let seen = pods::Seen {
            startable_for: mem.since(now),
            reported_mounts: mem.reported_mounts.clone(),
        };
        let plan = pods::kubelet(
            pod,
            node,
            &secrets,
            &seen,
            &timing,
            &profile,
            &meta::now_rfc3339(),
        );
        mem.reported_mounts = pods::secret_wait(pod, &secrets)
            .mount_messages()
            .into_iter()
            .collect();
        Some((plan, "kubelet"))
    }

    /// Record which Secrets the pod `ns/name` refers to (none: forget the pod).
    fn index_secrets(&mut self, ns: &str, name: &str, refs: BTreeSet<String>) {
        let key = (ns.to_string(), name.to_string());
        if self.pod_secrets.get(&key) == Some(&refs) {
            return;
        }
        for s in self.pod_secrets.remove(&key).unwrap_or_default() {
            let sk = (ns.to_string(), s);
            if let Some(users) = self.secret_users.get_mut(&sk) {
                users.remove(name);
                if users.is_empty() {
                    self.secret_users.remove(&sk);
                }
            }
        }
        if refs.is_empty() {
            return;
        }
        for s in &refs {
            self.secret_users
                .entry((ns.to_string(), s.clone()))
                .or_default()
                .insert(name.to_string());
        }
        self.pod_secrets.insert(key, refs);
    }
}

fn lookup(st: &State, res: &Res) -> Option<Arc<crate::registry::ResourceType>> {
    st.registry
        .types()
        .lookup(res.group, res.version, res.resource)
}

/// Carry out one action through the write pipeline; `false` only when it should be tried again
/// soon (a generated pod name already taken). Other failures (a conflict with a concurrent
/// write, an object gone or recreated meanwhile, an invalid template) wait for the change that
/// brings the key back, as a controller's work queue would without busy retries.
pub fn execute(st: &State, a: &Action, manager: &str) -> bool {
    let p = WriteParams::system(manager);
    match a {
        Action::Create {
            res,
            namespace,
            object,
        } => {
            let Some(rt) = lookup(st, res) else {
                return false;
            };
            match ops::create(st, &rt, namespace, object.clone(), &p, Mode::Create) {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!("kube-sim {manager}: create {}: {}", res.resource, e.message);
                    // A generated name already taken: try again with another. Anything else
                    // (an invalid template, a terminating namespace) waits for a change.
                    e.reason != "AlreadyExists"
                }
            }
        }
        Action::Status {
            res,
            namespace,
            name,
            uid,
            status,
        } => {
            let Some(rt) = lookup(st, res) else {
                return false;
            };
            let _ = ops::update_with(
                st,
                &rt,
                namespace,
                name,
                Target::Status,
                &p,
                Mode::Update,
                |v| {
                    check_uid(v, uid)?;
                    let mut v = v.clone();
                    v["status"] = status.clone();
                    Ok(v)
                },
            );
            true
        }
        Action::Patch {
            res,
            namespace,
            name,
            uid,
            patch,
        } => {
            let Some(rt) = lookup(st, res) else {
                return false;
            };
            let _ = ops::update_with(
                st,
                &rt,
                namespace,
                name,
                Target::Main,
                &p,
                Mode::Update,
                |v| {
                    check_uid(v, uid)?;
                    Ok(crate::patch::merge_patch(v, patch))
                },
            );
            true
        }
        Action::Delete {
            res,
            namespace,
            name,
            uid,
            grace,
        } => {
            let Some(rt) = lookup(st, res) else {
                return false;
            };
            let o = DeleteOptions {
                precondition_uid: Some(uid.clone()),
                propagation: Some("Background".into()),
                grace_period_seconds: *grace,
                ..Default::default()
            };
            let _ = ops::delete(st, &rt, namespace, name, &o);
            true
        }
        Action::Event(e) => {
            record_event(st, e);
            true
        }
    }
}

fn check_uid(v: &Value, uid: &str) -> Result<(), crate::error::StatusError> {
    if meta::uid(v) == uid {
        Ok(())
    } else {
        Err(crate::error::StatusError::conflict("", "", meta::name(v)))
    }
}

/// Write an Event the way client-go's legacy recorder does (`<object>.<hex nanoseconds>`).
pub fn record_event(st: &State, e: &EventSpec) {
    let Some(rt) = st.registry.types().lookup("", "v1", "events") else {
        return;
    };
    let now = jiff::Timestamp::now();
    let ts = meta::format_time(now);
    let object_name = e
        .involved
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("event");
    let mut source = json!({"component": e.component});
    if let Some(h) = &e.host {
        source["host"] = json!(h);
    }
    let nanos = now.as_nanosecond();
    for bump in 0..8i128 {
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{object_name}.{:x}", nanos + bump), "namespace": e.namespace},
            "involvedObject": e.involved,
            "reason": e.reason,
            "message": e.message,
            "source": source,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": e.type_,
            "eventTime": null,
            "reportingComponent": e.component,
            "reportingInstance": e.host.clone().unwrap_or_default(),
        });
        match ops::create(
            st,
            &rt,
            &e.namespace,
            ev,
            &WriteParams::system(e.component),
            Mode::Create,
        ) {
            Err(err) if err.reason == "AlreadyExists" => continue,
            _ => return,
        }
    }
}
