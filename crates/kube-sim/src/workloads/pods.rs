//! The scheduler and the kubelet, for one pod at a time.
//!
//! Scheduling is trivial: the first Ready, schedulable node (round robin) that the pod's
//! `nodeSelector`, required node affinity and tolerations allow. No resources are counted,
//! no preemption, no spreading. The kubelet runs no containers: a bound pod goes `Pending`
//! (`ContainerCreating`) → `Running` after the start delay → `Ready` after the ready delay,
//! unless a workload fault says otherwise (never Ready, crash loop, slow start), or a Secret it
//! needs is missing: a volume that cannot mount keeps it `ContainerCreating` (`FailedMount`), an
//! environment that cannot be built leaves the container `CreateContainerConfigError`
//! (`Failed`), until the Secret (or key) exists; the delays count from then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::faults::PodProfile;
use super::util::{condition, set_condition, str_at};
use super::{Action, EventSpec, PODS, Plan};
use crate::meta;

fn node_ready(node: &Value) -> bool {
    node.get("status")
        .and_then(|s| condition(s, "Ready"))
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

fn requirement_matches(req: &Value, get: &dyn Fn(&str) -> Option<String>) -> bool {
    let key = str_at(req, "/key");
    let values: Vec<&str> = req
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let v = get(key);
    match str_at(req, "/operator") {
        "In" => v.is_some_and(|v| values.contains(&v.as_str())),
        "NotIn" => v.is_none_or(|v| !values.contains(&v.as_str())),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                v.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if str_at(req, "/operator") == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    tolerations.iter().any(|t| {
        let effect_ok = str_at(t, "/effect").is_empty() || t.get("effect") == taint.get("effect");
        let key_ok = str_at(t, "/key").is_empty() || t.get("key") == taint.get("key");
        let value_ok = str_at(t, "/operator") == "Exists" || t.get("value") == taint.get("value");
        effect_ok && key_ok && value_ok
    })
}

/// Whether the scheduler may put `pod` on `node`.
pub fn fits(pod: &Value, node: &Value) -> bool {
    if !node_ready(node) || meta::is_deleting(node) {
        return false;
    }
    let labels = meta::labels(node);
    let label = |k: &str| -> Option<String> {
        labels
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && sel.iter().any(|(k, v)| label(k).as_deref() != v.as_str())
    {
        return false;
    }
    if let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        && !terms.is_empty()
    {
        let name = meta::name(node).to_string();
        let field = |k: &str| (k == "metadata.name").then(|| name.clone());
        let ok = terms.iter().any(|t| {
            let exprs = t.get("matchExpressions").and_then(Value::as_array);
            let fields = t.get("matchFields").and_then(Value::as_array);
            (exprs.is_some() || fields.is_some())
                && exprs.is_none_or(|e| e.iter().all(|r| requirement_matches(r, &label)))
                && fields.is_none_or(|f| f.iter().all(|r| requirement_matches(r, &field)))
        });
        if !ok {
            return false;
        }
    }
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
    }
    taints
        .iter()
        .filter(|t| matches!(str_at(t, "/effect"), "NoSchedule" | "NoExecute"))
        .all(|t| tolerates(pod, t))
}

fn pod_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": meta::namespace(pod),
        "name": meta::name(pod),
        "uid": meta::uid(pod),
        "apiVersion": "v1",
        "resourceVersion": meta::resource_version(pod),
    })
}

/// Bind an unscheduled pod: the chosen node, or `PodScheduled=False` with the scheduler's
/// reason. Returns the plan and the next round-robin position.
pub fn schedule(pod: &Value, nodes: &[Value], start: usize, now: &str) -> (Plan, usize) {
    let mut plan = Plan::default();
    let (ns, name, uid) = (
        meta::namespace(pod).to_string(),
        meta::name(pod).to_string(),
        meta::uid(pod).to_string(),
    );
    let n = nodes.len();
    let chosen = (0..n)
        .map(|i| (start + i) % n.max(1))
        .find(|&i| fits(pod, &nodes[i]));
    match chosen {
        Some(i) => {
            let node = meta::name(&nodes[i]).to_string();
            plan.actions.push(Action::Patch {
                res: PODS,
                namespace: ns.clone(),
                name: name.clone(),
                uid: uid.clone(),
                patch: json!({"spec": {"nodeName": node}}),
            });
            let mut status = pod.get("status").cloned().unwrap_or(json!({}));
            set_condition(
                &mut status,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
                now,
                false,
            );
            plan.actions.push(Action::Status {
                res: PODS,
                namespace: ns.clone(),
                name: name.clone(),
                uid,
                status,
            });
            plan.actions.push(Action::Event(EventSpec {
                namespace: ns.clone(),
                involved: pod_ref(pod),
                type_: "Normal",
                reason: "Scheduled",
                message: format!("Successfully assigned {ns}/{name} to {node}"),
                component: "default-scheduler",
                host: None,
            }));
            (plan, i + 1)
        }
        None => {
            let message = format!(
                "0/{n} nodes are available: {n} node(s) didn't match Pod's node affinity/selector. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
            );
            let mut status = pod.get("status").cloned().unwrap_or(json!({}));
            let before = status.clone();
            set_condition(
                &mut status,
                json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null}),
                now,
                false,
            );
            if status != before {
                plan.actions.push(Action::Status {
                    res: PODS,
                    namespace: ns.clone(),
                    name,
                    uid,
                    status,
                });
                plan.actions.push(Action::Event(EventSpec {
                    namespace: ns,
                    involved: pod_ref(pod),
                    type_: "Warning",
                    reason: "FailedScheduling",
                    message,
                    component: "default-scheduler",
                    host: None,
                }));
            }
            (plan, start)
        }
    }
}

/// The kubelet's delays.
#[derive(Debug, Clone)]
pub struct Timing {
    pub start: Duration,
    pub ready: Duration,
}

/// Where a bound pod is in its life, from how long it has been bound.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Creating {
        until: Duration,
    },
    Running {
        ready: bool,
        until: Option<Duration>,
    },
    /// Crash loop: `restarts` so far; `running` while the container runs.
    Crashing {
        restarts: i64,
        running: bool,
        until: Duration,
    },
}

fn stage(elapsed: Duration, t: &Timing, p: &PodProfile) -> Stage {
    let start = t.start + p.extra_start;
    if elapsed < start {
        return Stage::Creating {
            until: start - elapsed,
        };
    }
    let up = elapsed - start;
    if let Some(crash) = p.crash_after {
        let crash = crash.max(Duration::from_millis(1));
        // run `crash`, back off (doubling from `crash`, at most 5 min), run again…
        let mut at = Duration::ZERO;
        let mut backoff = crash;
        let mut restarts = 0i64;
        loop {
            if up < at + crash {
                return Stage::Crashing {
                    restarts,
                    running: true,
                    until: at + crash - up,
                };
            }
            if up < at + crash + backoff {
                return Stage::Crashing {
                    restarts: restarts + 1,
                    running: false,
                    until: at + crash + backoff - up,
                };
            }
            at += crash + backoff;
            restarts += 1;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
    if p.never_ready {
        return Stage::Running {
            ready: false,
            until: None,
        };
    }
    if up < t.ready {
        return Stage::Running {
            ready: false,
            until: Some(t.ready - up),
        };
    }
    Stage::Running {
        ready: true,
        until: None,
    }
}

fn node_ip(node: &Value) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
        })
        .and_then(|x| x.get("address"))
        .and_then(Value::as_str)
        .unwrap_or("10.89.0.2")
        .to_string()
}

/// A pod IP in the node's pod CIDR, stable for the pod (from its uid).
fn pod_ip(node: &Value, uid: &str) -> String {
    let cidr = str_at(node, "/spec/podCIDR");
    let base: Vec<&str> = cidr.split('/').next().unwrap_or("").split('.').collect();
    let h = super::util::fnv32a(uid.as_bytes());
    let last = 2 + (h % 250);
    if base.len() == 4 {
        format!("{}.{}.{}.{last}", base[0], base[1], base[2])
    } else {
        format!("10.244.{}.{last}", (h >> 8) % 250)
    }
}

fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_optional(source: &Value) -> bool {
    source.get("optional").and_then(Value::as_bool) == Some(true)
}

/// `secret.Data[key]` exists (the API server already folded `stringData` into `data`).
fn has_key(secret: &Value, key: &str) -> bool {
    secret.get("data").and_then(|d| d.get(key)).is_some()
}

/// The secret manager's not-found error (`apierrors.NewNotFound(corev1.Resource("secret"), name)`).
fn not_found(name: &str) -> String {
    format!("secret {} not found", crate::error::go_quote(name))
}

/// The pod's app containers (init containers are not simulated: the kubelet never runs them).
fn app_containers(pod: &Value) -> &[Value] {
    items(pod, "/spec/containers")
}

/// The names of the Secrets a pod refers to: its containers' `envFrom[].secretRef` and
/// `env[].valueFrom.secretKeyRef`, and its `secret` and `projected` volumes (optional or not).
pub fn referenced_secrets(pod: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in app_containers(pod) {
        for from in items(c, "/envFrom") {
            if let Some(r) = from.get("secretRef") {
                out.insert(str_at(r, "/name").to_string());
            }
        }
        for e in items(c, "/env") {
            if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                out.insert(str_at(r, "/name").to_string());
            }
        }
    }
    for v in items(pod, "/spec/volumes") {
        if let Some(s) = v.get("secret") {
            out.insert(str_at(s, "/secretName").to_string());
        }
        for src in items(v, "/projected/sources") {
            if let Some(s) = src.get("secret") {
                out.insert(str_at(s, "/name").to_string());
            }
        }
    }
    out.remove("");
    out
}

/// What missing Secrets (or keys) hold up, in upstream's words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretWait {
    /// `(volume, error)` for each volume the pod mounts whose `SetUp` fails, in `spec.volumes`
    /// order: until every one mounts, no container starts (`ContainerCreating`).
    pub volumes: Vec<(String, String)>,
    /// The `CreateContainerConfigError` message of each container whose environment cannot be
    /// built.
    pub containers: BTreeMap<String, String>,
}

impl SecretWait {
    /// Whether the kubelet may start `container` now.
    pub fn may_start(&self, container: &str) -> bool {
        self.volumes.is_empty() && !self.containers.contains_key(container)
    }

    /// The messages of the `FailedMount` Events for these volumes.
    pub fn mount_messages(&self) -> Vec<String> {
        self.volumes
            .iter()
            .map(|(vol, err)| {
                format!(
                    "MountVolume.SetUp failed for volume {} : {err}",
                    crate::error::go_quote(vol)
                )
            })
            .collect()
    }
}

/// `makeEnvironmentVariables` for one container, Secrets only: the first error in the order the
/// kubelet meets them (`envFrom` first, then `env`). Optional references never fail.
fn env_error(ns: &str, c: &Value, secrets: &BTreeMap<String, Value>) -> Option<String> {
    for from in items(c, "/envFrom") {
        if let Some(r) = from.get("secretRef") {
            let name = str_at(r, "/name");
            if !secrets.contains_key(name) && !is_optional(r) {
                return Some(not_found(name));
            }
        }
    }
    for e in items(c, "/env") {
        let Some(r) = e.pointer("/valueFrom/secretKeyRef") else {
            continue;
        };
        if is_optional(r) {
            continue;
        }
        let (name, key) = (str_at(r, "/name"), str_at(r, "/key"));
        match secrets.get(name) {
            None => return Some(not_found(name)),
            Some(s) if !has_key(s, key) => {
                return Some(format!("couldn't find key {key} in Secret {ns}/{name}"));
            }
            Some(_) => {}
        }
    }
    None
}

/// The secret volume plugin's `SetUpAt` for one source: the Secret itself, then `MakePayload`
/// (each listed item's key must exist unless the source is optional).
fn payload_error(source: &Value, name: &str, secrets: &BTreeMap<String, Value>) -> Option<String> {
    let optional = is_optional(source);
    match secrets.get(name) {
        None if optional => None,
        None => Some(not_found(name)),
        Some(_) if optional => None,
        Some(s) => items(source, "/items")
            .iter()
            .map(|i| str_at(i, "/key"))
            .find(|k| !has_key(s, k))
            .map(|k| format!("references non-existent secret key: {k}")),
    }
}

/// `utilerrors.NewAggregate(errs).Error()`: one message as is, several deduplicated in brackets.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// Which of the pod's Secrets (or keys) are missing, given those that exist (by name), and what
/// that holds up. Only volumes some container mounts count (the volume manager ignores the
/// others).
pub fn secret_wait(pod: &Value, secrets: &BTreeMap<String, Value>) -> SecretWait {
    let ns = meta::namespace(pod);
    let mut mounted = BTreeSet::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(pod, &format!("/spec/{list}")) {
            for m in items(c, "/volumeMounts")
                .iter()
                .chain(items(c, "/volumeDevices"))
            {
                mounted.insert(str_at(m, "/name"));
            }
        }
    }
    let mut wait = SecretWait::default();
    for v in items(pod, "/spec/volumes") {
        let vol = str_at(v, "/name");
        if !mounted.contains(vol) {
            continue;
        }
        let err = if let Some(s) = v.get("secret") {
            payload_error(s, str_at(s, "/secretName"), secrets)
        } else {
            aggregate(
                items(v, "/projected/sources")
                    .iter()
                    .filter_map(|src| src.get("secret"))
                    .filter_map(|s| payload_error(s, str_at(s, "/name"), secrets))
                    .collect(),
            )
        };
        if let Some(err) = err {
            wait.volumes.push((vol.to_string(), err));
        }
    }
    for c in app_containers(pod) {
        if let Some(err) = env_error(ns, c, secrets) {
            wait.containers.insert(str_at(c, "/name").to_string(), err);
        }
    }
    wait
}

/// What the kubelet remembers of a pod between two syncs (a real kubelet keeps the same in
/// process: its containers, and the volume errors it already reported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// How long ago each container became free to start (the pod's volumes mounted, its own
    /// Secrets found): its start and ready delays count from then. A container not listed has
    /// not been free to start yet.
    pub startable_for: BTreeMap<String, Duration>,
    /// `FailedMount` messages already recorded as Events: each is recorded once while it lasts.
    pub reported_mounts: BTreeSet<String>,
}

/// How a sync changes the kubelet's container clocks: `(start, stop)`. A container free to start
/// gets a clock; one whose Secret went missing before it started loses it (upstream builds a
/// container's environment and mounts when it creates it, so it now waits again). A container
/// that already started keeps running: its environment and mounts are set.
pub fn clock_changes(
    pod: &Value,
    secrets: &BTreeMap<String, Value>,
    startable_for: &BTreeMap<String, Duration>,
    timing: &Timing,
    profile: &PodProfile,
) -> (Vec<String>, Vec<String>) {
    let wait = secret_wait(pod, secrets);
    let started = timing.start + profile.extra_start;
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    for c in app_containers(pod) {
        let name = str_at(c, "/name");
        match startable_for.get(name) {
            None if wait.may_start(name) => start.push(name.to_string()),
            Some(since) if *since < started && !wait.may_start(name) => {
                stop.push(name.to_string());
            }
            _ => {}
        }
    }
    (start, stop)
}

/// One container as the kubelet sees it now.
#[derive(Debug, Clone, PartialEq)]
enum Container {
    /// Waiting for the pod's volumes to mount (`ContainerCreating`, no message).
    Mounting,
    /// Its environment cannot be built: `CreateContainerConfigError` with upstream's message.
    ConfigError(String),
    /// Free to start: where it is in its life.
    Staged(Stage),
}

impl Container {
    /// (ready, running, restarts, counts as waiting for the pod's phase)
    fn facts(&self) -> (bool, bool, i64, bool) {
        match self {
            Container::Mounting | Container::ConfigError(_) => (false, false, 0, true),
            Container::Staged(Stage::Creating { .. }) => (false, false, 0, true),
            Container::Staged(Stage::Running { ready, .. }) => (*ready, true, 0, false),
            Container::Staged(Stage::Crashing {
                restarts, running, ..
            }) => (false, *running, *restarts, false),
        }
    }

    fn requeue(&self) -> Option<Duration> {
        match self {
            Container::Mounting | Container::ConfigError(_) => None,
            Container::Staged(Stage::Creating { until }) => Some(*until),
            Container::Staged(Stage::Running { until, .. }) => *until,
            Container::Staged(Stage::Crashing { until, .. }) => Some(*until),
        }
    }
}

/// The kubelet's view of one bound pod: the status it reports now, the Events it records, and
/// when it will look again. `secrets` are the Secrets the pod refers to that exist, by name
/// ([`referenced_secrets`]); `seen` is the kubelet's memory of the pod.
///
/// Each container goes `ContainerCreating` → running → Ready after the start and ready delays,
/// counted from when it became free to start. A missing Secret (or key) that is not optional
/// holds it up as a real kubelet does: a volume that cannot mount keeps every container in
/// `ContainerCreating` (a `FailedMount` Event per volume); an environment that cannot be built
/// leaves that container `waiting` with `CreateContainerConfigError` (a `Failed` Event), the pod
/// `Pending`, not Ready. No timer: the loop syncs the pod again when one of its Secrets changes.
pub fn kubelet(
    pod: &Value,
    node: &Value,
    secrets: &BTreeMap<String, Value>,
    seen: &Seen,
    timing: &Timing,
    profile: &PodProfile,
    now: &str,
) -> Plan {
    let mut plan = Plan::default();
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return plan;
    }
    let wait = secret_wait(pod, secrets);
    let old = pod.get("status").cloned().unwrap_or(json!({}));
    let mut status = old.clone();
    let containers = app_containers(pod);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let states: Vec<Container> = names
        .iter()
        .map(|name| match seen.startable_for.get(*name) {
            Some(elapsed) => Container::Staged(stage(*elapsed, timing, profile)),
            None if !wait.volumes.is_empty() => Container::Mounting,
            None => match wait.containers.get(*name) {
                Some(err) => Container::ConfigError(err.clone()),
                // Free to start but not yet seen so (the loop gives it a clock first).
                None => Container::Staged(stage(Duration::ZERO, timing, profile)),
            },
        })
        .collect();
    let old_statuses = old
        .get("containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_of = |n: &str| {
        old_statuses
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(n))
            .cloned()
    };
    status["hostIP"] = json!(node_ip(node));
    status["hostIPs"] = json!([{"ip": node_ip(node)}]);
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now);
    }
    let facts: Vec<(bool, bool, i64, bool)> = states.iter().map(Container::facts).collect();
    // `getPhase`: a container that has not started yet keeps the pod Pending.
    let phase = if facts.iter().any(|f| f.3) {
        "Pending"
    } else {
        "Running"
    };
    let ready = !facts.is_empty() && facts.iter().all(|f| f.0);
    // The sandbox (and its IP) exists once a container ran, or once the kubelet got as far as
    // building a container's configuration.
    let sandbox = states
        .iter()
        .zip(&facts)
        .any(|(s, f)| f.1 || f.2 > 0 || matches!(s, Container::ConfigError(_)));
    status["phase"] = json!(phase);
    if sandbox {
        let ip = pod_ip(node, meta::uid(pod));
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    let cstatuses: Vec<Value> = containers
        .iter()
        .zip(&states)
        .zip(&facts)
        .map(|((c, st), &(ready, running, restarts, _))| {
            let name = str_at(c, "/name");
            let image = str_at(c, "/image");
            let prev = old_of(name);
            let prev_restarts = prev
                .as_ref()
                .and_then(|p| p.get("restartCount"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let prev_state = prev.as_ref().and_then(|p| p.get("state")).cloned();
            let mut cs = json!({
                "name": name,
                "image": image,
                "imageID": format!("docker.io/library/{image}@sha256:{:064x}", super::util::fnv32a(image.as_bytes())),
                "ready": ready,
                "restartCount": restarts,
                "started": running,
            });
            if running {
                cs["containerID"] = json!(format!("containerd://{:016x}{:016x}", super::util::fnv32a(meta::uid(pod).as_bytes()), super::util::fnv32a(name.as_bytes()) as u64 + restarts as u64));
            }
            let state = match (st, running) {
                (Container::Mounting | Container::Staged(Stage::Creating { .. }), _) => {
                    json!({"waiting": {"reason": "ContainerCreating"}})
                }
                (Container::ConfigError(err), _) => {
                    json!({"waiting": {"reason": "CreateContainerConfigError", "message": err}})
                }
                (_, true) => {
                    // Keep startedAt while the same run goes on.
                    let started = prev_state
                        .as_ref()
                        .and_then(|s| s.pointer("/running/startedAt"))
                        .filter(|_| prev_restarts == restarts)
                        .cloned()
                        .unwrap_or(json!(now));
                    json!({"running": {"startedAt": started}})
                }
                (_, false) => json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {name} in pod {}_{}({})", meta::name(pod), meta::namespace(pod), meta::uid(pod))}}),
            };
            cs["state"] = state;
            if restarts > 0 {
                let last = if prev_restarts == restarts {
                    prev.as_ref().and_then(|p| p.get("lastState")).cloned()
                } else {
                    None
                };
                cs["lastState"] = last.unwrap_or_else(|| {
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}})
                });
            } else {
                cs["lastState"] = json!({});
            }
            cs
        })
        .collect();
    status["containerStatuses"] = json!(cstatuses);
    let not_ready: Vec<&str> = names
        .iter()
        .zip(&facts)
        .filter(|(_, f)| !f.0)
        .map(|(n, _)| *n)
        .collect();
    let unready_msg = format!("containers with unready status: [{}]", not_ready.join(" "));
    let cond = |t: &str, ok: bool, reason: &str, msg: &str| {
        let mut c =
            json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(msg);
        }
        c
    };
    for c in [
        cond("PodReadyToStartContainers", sandbox, "", ""),
        cond("Initialized", true, "", ""),
        cond("Ready", ready, "ContainersNotReady", &unready_msg),
        cond("ContainersReady", ready, "ContainersNotReady", &unready_msg),
        cond("PodScheduled", true, "", ""),
    ] {
        set_condition(&mut status, c, now, false);
    }
    let host = Some(meta::name(node).to_string());
    let ev = |type_: &'static str, reason: &'static str, message: String| {
        Action::Event(EventSpec {
            namespace: meta::namespace(pod).to_string(),
            involved: pod_ref(pod),
            type_,
            reason,
            message,
            component: "kubelet",
            host: host.clone(),
        })
    };
    // `startedAt`/`startTime` only ever come from `now` on a change: compare without them.
    if !crate::meta::json_eq(&status, &old) {
        plan.actions.push(Action::Status {
            res: PODS,
            namespace: meta::namespace(pod).to_string(),
            name: meta::name(pod).to_string(),
            uid: meta::uid(pod).to_string(),
            status,
        });
        for ((c, st), &(_, running, restarts, _)) in containers.iter().zip(&states).zip(&facts) {
            let name = str_at(c, "/name");
            let image = str_at(c, "/image");
            let prev = old_of(name);
            let prev_waiting = |reason: &str| {
                prev.as_ref()
                    .and_then(|p| p.pointer("/state/waiting/reason"))
                    .and_then(Value::as_str)
                    == Some(reason)
            };
            let prev_restarts = prev
                .as_ref()
                .and_then(|p| p.get("restartCount"))
                .and_then(Value::as_i64);
            let pulled = || {
                ev(
                    "Normal",
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                )
            };
            let prev_message = prev
                .as_ref()
                .and_then(|p| p.pointer("/state/waiting/message"))
                .and_then(Value::as_str);
            let same_run = prev
                .as_ref()
                .is_some_and(|p| p.pointer("/state/running").is_some())
                && prev_restarts == Some(restarts);
            match st {
                Container::ConfigError(err)
                    if !(prev_waiting("CreateContainerConfigError")
                        && prev_message == Some(err.as_str())) =>
                {
                    // Upstream pulls the image, then fails to build the configuration.
                    plan.actions.push(pulled());
                    plan.actions
                        .push(ev("Warning", "Failed", format!("Error: {err}")));
                }
                Container::Staged(Stage::Crashing { running: false, .. })
                    if !(prev_waiting("CrashLoopBackOff") && prev_restarts == Some(restarts)) =>
                {
                    plan.actions.push(ev(
                        "Warning",
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {name} in pod {}_{}({})",
                            meta::name(pod),
                            meta::namespace(pod),
                            meta::uid(pod)
                        ),
                    ));
                }
                _ if running && !same_run => {
                    plan.actions.push(pulled());
                    plan.actions.push(ev(
                        "Normal",
                        "Created",
                        format!("Created container: {name}"),
                    ));
                    plan.actions
                        .push(ev("Normal", "Started", format!("Started container {name}")));
                }
                _ => {}
            }
        }
    }
    // Each volume error once while it lasts (upstream repeats it with a back-off), also for a
    // pod that already runs: its mounts stay as they were.
    for message in wait.mount_messages() {
        if !seen.reported_mounts.contains(&message) {
            plan.actions.push(ev("Warning", "FailedMount", message));
        }
    }
    for d in states.iter().filter_map(Container::requeue) {
        plan.requeue_min(d);
    }
    plan
}

/// What `kubectl get pods` prints for a pod (`printPod`): READY, STATUS, RESTARTS.
pub struct Printed {
    pub ready: String,
    pub reason: String,
    pub restarts: String,
}

pub fn printed(pod: &Value) -> Printed {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let mut reason = str_at(pod, "/status/phase").to_string();
    if !str_at(pod, "/status/reason").is_empty() {
        reason = str_at(pod, "/status/reason").to_string();
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut has_running = false;
    for c in statuses.iter().rev() {
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        if let Some(t) = c
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            && last_restart.is_none_or(|l| l < t)
        {
            last_restart = Some(t);
        }
        let waiting = str_at(c, "/state/waiting/reason");
        let terminated = str_at(c, "/state/terminated/reason");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if !terminated.is_empty() {
            reason = terminated.to_string();
        } else if c.get("ready").and_then(Value::as_bool) == Some(true)
            && c.pointer("/state/running").is_some()
        {
            has_running = true;
            ready += 1;
        }
    }
    if reason == "Completed" && has_running {
        reason = if super::util::pod_ready(pod) {
            "Running".into()
        } else {
            "NotReady".into()
        };
    }
    if meta::is_deleting(pod) {
        reason = "Terminating".into();
    }
    let restarts = match last_restart {
        Some(t) => format!(
            "{restarts} ({} ago)",
            meta::human_duration(jiff::Timestamp::now().as_second() - t.as_second())
        ),
        None => restarts.to_string(),
    };
    Printed {
        ready: format!("{ready}/{total}"),
        reason,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"podCIDR": "10.244.1.0/24"},
               "status": {"conditions": [{"type": "Ready", "status": "True"}],
                          "addresses": [{"type": "InternalIP", "address": "10.89.0.2"}]}})
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec, "status": {"phase": "Pending"}})
    }

    /// The kubelet on a pod without Secrets whose containers have been free to start for `elapsed`.
    fn run(
        p: &Value,
        n: &Value,
        elapsed: Duration,
        t: &Timing,
        profile: &PodProfile,
        now: &str,
    ) -> Plan {
        let seen = Seen {
            startable_for: items(p, "/spec/containers")
                .iter()
                .map(|c| (str_at(c, "/name").to_string(), elapsed))
                .collect(),
            ..Seen::default()
        };
        kubelet(p, n, &BTreeMap::new(), &seen, t, profile, now)
    }

    #[test]
    fn scheduling_honours_selectors_affinity_and_round_robin() {
        let nodes = vec![
            node("a", json!({"zone": "1"})),
            node("b", json!({"zone": "2"})),
        ];
        let (plan, next) = schedule(&pod(json!({})), &nodes, 1, "t");
        assert_eq!(next, 2);
        assert!(
            matches!(&plan.actions[0], Action::Patch { patch, .. } if patch["spec"]["nodeName"] == "b")
        );
        let p = pod(json!({"nodeSelector": {"zone": "1"}}));
        let (plan, _) = schedule(&p, &nodes, 1, "t");
        assert!(
            matches!(&plan.actions[0], Action::Patch { patch, .. } if patch["spec"]["nodeName"] == "a")
        );
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
        );
        let (plan, _) = schedule(&p, &nodes, 0, "t");
        assert!(
            matches!(&plan.actions[0], Action::Patch { patch, .. } if patch["spec"]["nodeName"] == "b")
        );
        let p = pod(json!({"nodeSelector": {"zone": "9"}}));
        let (plan, _) = schedule(&p, &nodes, 0, "t");
        assert!(
            matches!(&plan.actions[0], Action::Status { status, .. } if status["conditions"][0]["reason"] == "Unschedulable")
        );
        let mut tainted = node("c", json!({}));
        tainted["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
        assert!(!fits(&pod(json!({})), &tainted));
        assert!(fits(
            &pod(json!({"tolerations": [{"key": "k", "operator": "Exists"}]})),
            &tainted
        ));
    }

    #[test]
    fn kubelet_timeline_and_faults() {
        let t = Timing {
            start: Duration::from_millis(100),
            ready: Duration::from_millis(100),
        };
        let n = node("a", json!({}));
        let p = pod(json!({"nodeName": "a", "containers": [{"name": "c", "image": "nginx"}]}));
        let plan = run(
            &p,
            &n,
            Duration::from_millis(10),
            &t,
            &PodProfile::default(),
            "t",
        );
        assert_eq!(plan.requeue, Some(Duration::from_millis(90)));
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["phase"], "Pending");
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        let plan = run(
            &p,
            &n,
            Duration::from_millis(150),
            &t,
            &PodProfile::default(),
            "t",
        );
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["phase"], "Running");
        assert_eq!(condition(status, "Ready").unwrap()["status"], "False");
        assert_eq!(plan.requeue, Some(Duration::from_millis(50)));
        let ready = run(
            &p,
            &n,
            Duration::from_millis(250),
            &t,
            &PodProfile::default(),
            "t",
        );
        let Action::Status { status, .. } = &ready.actions[0] else {
            panic!()
        };
        assert_eq!(condition(status, "Ready").unwrap()["status"], "True");
        assert_eq!(ready.requeue, None);
        // The same state again is no write.
        let mut settled = p.clone();
        settled["status"] = status.clone();
        let again = run(
            &settled,
            &n,
            Duration::from_millis(900),
            &t,
            &PodProfile::default(),
            "t2",
        );
        assert!(again.actions.is_empty(), "{:?}", again.actions);
        let never = PodProfile {
            never_ready: true,
            ..Default::default()
        };
        let plan = run(&p, &n, Duration::from_secs(60), &t, &never, "t");
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(
            condition(status, "Ready").unwrap()["reason"],
            "ContainersNotReady"
        );
        let crash = PodProfile {
            crash_after: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        // start at 100; run 10, back off 10, run 10, back off 20 …
        let plan = run(&p, &n, Duration::from_millis(115), &t, &crash, "t");
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["containerStatuses"][0]["restartCount"], 1);
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        let plan = run(&p, &n, Duration::from_millis(135), &t, &crash, "t");
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(
            crate::builtin::qos_class(Some(&json!({"containers": [{}]}))),
            "BestEffort"
        );
    }

    const T: Timing = Timing {
        start: Duration::from_millis(100),
        ready: Duration::from_millis(100),
    };

    fn secret(keys: &[&str]) -> Value {
        let data: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.to_string(), json!("eA==")))
            .collect();
        json!({"metadata": {"name": "s", "namespace": "ns"}, "data": data})
    }

    fn secrets(list: &[(&str, &[&str])]) -> BTreeMap<String, Value> {
        list.iter()
            .map(|(name, keys)| (name.to_string(), secret(keys)))
            .collect()
    }

    fn bound(containers: Value, volumes: Value) -> Value {
        pod(json!({"nodeName": "a", "containers": containers, "volumes": volumes}))
    }

    /// The kubelet's first look at a pod: containers free to start get a clock of `elapsed`.
    fn first_sync(p: &Value, s: &BTreeMap<String, Value>, elapsed: Duration) -> (Plan, Seen) {
        let (start, stop) = clock_changes(p, s, &BTreeMap::new(), &T, &PodProfile::default());
        assert!(stop.is_empty());
        let seen = Seen {
            startable_for: start.into_iter().map(|c| (c, elapsed)).collect(),
            ..Seen::default()
        };
        let plan = kubelet(
            p,
            &node("a", json!({})),
            s,
            &seen,
            &T,
            &PodProfile::default(),
            "t",
        );
        (plan, seen)
    }

    fn status_of(plan: &Plan) -> &Value {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::Status { status, .. } => Some(status),
                _ => None,
            })
            .expect("a status write")
    }

    /// `(type, reason, message)` of the Events of a plan.
    fn events(plan: &Plan) -> Vec<(&'static str, &'static str, String)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some((e.type_, e.reason, e.message.clone())),
                _ => None,
            })
            .collect()
    }

    /// The pod after the plan's status write.
    fn applied(p: &Value, plan: &Plan) -> Value {
        let mut p = p.clone();
        p["status"] = status_of(plan).clone();
        p
    }

    #[test]
    fn referenced_secrets_come_from_env_env_from_and_volumes() {
        let p = bound(
            json!([{"name": "c", "image": "i",
                "envFrom": [{"secretRef": {"name": "from"}}, {"configMapRef": {"name": "cm"}}],
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}},
                        {"name": "B", "value": "plain"}]}]),
            json!([{"name": "v", "secret": {"secretName": "vol", "optional": true}},
                   {"name": "pr", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "cm"}}]}},
                   {"name": "e", "emptyDir": {}}]),
        );
        assert_eq!(
            referenced_secrets(&p).into_iter().collect::<Vec<_>>(),
            ["from", "key", "proj", "vol"]
        );
        assert!(referenced_secrets(&pod(json!({"containers": [{"name": "c"}]}))).is_empty());
    }

    #[test]
    fn a_missing_env_secret_is_a_create_container_config_error() {
        let p = bound(
            json!([{"name": "app", "image": "nginx",
                    "envFrom": [{"secretRef": {"name": "agent-key"}}]}]),
            json!([]),
        );
        let (plan, seen) = first_sync(&p, &BTreeMap::new(), Duration::ZERO);
        assert!(seen.startable_for.is_empty());
        assert_eq!(
            plan.requeue, None,
            "no timer: a Secret event brings it back"
        );
        let status = status_of(&plan);
        assert_eq!(status["phase"], "Pending");
        assert_eq!(
            status["containerStatuses"][0]["state"],
            json!({"waiting": {"reason": "CreateContainerConfigError",
                               "message": "secret \"agent-key\" not found"}})
        );
        assert_eq!(status["containerStatuses"][0]["ready"], false);
        assert_eq!(status["containerStatuses"][0]["started"], false);
        assert!(status["containerStatuses"][0].get("containerID").is_none());
        for c in ["Ready", "ContainersReady"] {
            let c = condition(status, c).unwrap();
            assert_eq!(
                (&c["status"], &c["reason"], &c["message"]),
                (
                    &json!("False"),
                    &json!("ContainersNotReady"),
                    &json!("containers with unready status: [app]")
                )
            );
        }
        // The sandbox exists (the kubelet got as far as the container's configuration).
        assert_eq!(
            condition(status, "PodReadyToStartContainers").unwrap()["status"],
            "True"
        );
        assert!(status["podIP"].as_str().unwrap().starts_with("10.244.1."));
        assert_eq!(
            events(&plan),
            [
                (
                    "Normal",
                    "Pulled",
                    "Container image \"nginx\" already present on machine".to_string()
                ),
                (
                    "Warning",
                    "Failed",
                    "Error: secret \"agent-key\" not found".to_string()
                ),
            ]
        );
        assert_eq!(
            printed(&applied(&p, &plan)).reason,
            "CreateContainerConfigError"
        );
        // Synced again with nothing changed: no write, no Event.
        let again = kubelet(
            &applied(&p, &plan),
            &node("a", json!({})),
            &BTreeMap::new(),
            &seen,
            &T,
            &PodProfile::default(),
            "t2",
        );
        assert_eq!(again, Plan::default());
    }

    #[test]
    fn a_missing_key_names_the_key_and_the_secret() {
        let p = bound(
            json!([{"name": "app", "image": "nginx", "env": [
                {"name": "K", "valueFrom": {"secretKeyRef": {"name": "agent-key", "key": "AL_API_KEY"}}}]}]),
            json!([]),
        );
        let (plan, _) = first_sync(&p, &secrets(&[("agent-key", &["other"])]), Duration::ZERO);
        assert_eq!(
            status_of(&plan)["containerStatuses"][0]["state"]["waiting"]["message"],
            "couldn't find key AL_API_KEY in Secret ns/agent-key"
        );
        assert_eq!(
            events(&plan)[1].2,
            "Error: couldn't find key AL_API_KEY in Secret ns/agent-key"
        );
        // The first error in the kubelet's order: envFrom before env.
        let p = bound(
            json!([{"name": "app", "image": "nginx",
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "first", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "second"}}]}]),
            json!([]),
        );
        assert_eq!(
            secret_wait(&p, &BTreeMap::new()).containers["app"],
            "secret \"second\" not found"
        );
    }

    #[test]
    fn optional_references_never_hold_a_pod() {
        let p = bound(
            json!([{"name": "app", "image": "nginx",
                "envFrom": [{"secretRef": {"name": "a", "optional": true}}],
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "b", "key": "k", "optional": true}}},
                        {"name": "L", "valueFrom": {"secretKeyRef": {"name": "c", "key": "missing", "optional": true}}}],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}, {"name": "p", "mountPath": "/p"}]}]),
            json!([{"name": "v", "secret": {"secretName": "d", "optional": true, "items": [{"key": "x", "path": "x"}]}},
                   {"name": "p", "projected": {"sources": [{"secret": {"name": "e", "optional": true}}]}}]),
        );
        let s = secrets(&[("c", &["k"])]);
        assert_eq!(secret_wait(&p, &s), SecretWait::default());
        let (plan, seen) = first_sync(&p, &s, Duration::from_millis(10));
        assert_eq!(seen.startable_for.len(), 1);
        assert_eq!(
            status_of(&plan)["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(plan.requeue, Some(Duration::from_millis(90)));
        assert!(events(&plan).is_empty());
    }

    #[test]
    fn a_missing_volume_secret_keeps_every_container_creating() {
        let p = bound(
            json!([{"name": "app", "image": "nginx", "volumeMounts": [{"name": "key", "mountPath": "/k"}]},
                   {"name": "side", "image": "busybox"}]),
            json!([{"name": "key", "secret": {"secretName": "agent-key"}},
                   {"name": "unused", "secret": {"secretName": "nobody-mounts-this"}}]),
        );
        let (plan, seen) = first_sync(&p, &BTreeMap::new(), Duration::ZERO);
        assert!(
            seen.startable_for.is_empty(),
            "nothing starts before the mounts"
        );
        assert_eq!(plan.requeue, None);
        let status = status_of(&plan);
        assert_eq!(status["phase"], "Pending");
        for i in 0..2 {
            assert_eq!(
                status["containerStatuses"][i]["state"],
                json!({"waiting": {"reason": "ContainerCreating"}})
            );
        }
        assert_eq!(
            condition(status, "PodReadyToStartContainers").unwrap()["status"],
            "False"
        );
        assert!(status.get("podIP").is_none());
        assert_eq!(
            condition(status, "Ready").unwrap()["message"],
            "containers with unready status: [app side]"
        );
        assert_eq!(
            events(&plan),
            [(
                "Warning",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"key\" : secret \"agent-key\" not found"
                    .to_string()
            )]
        );
        assert_eq!(printed(&applied(&p, &plan)).reason, "ContainerCreating");
        // Reported once: the same sync again writes nothing.
        let seen = Seen {
            reported_mounts: secret_wait(&p, &BTreeMap::new())
                .mount_messages()
                .into_iter()
                .collect(),
            ..seen
        };
        let again = kubelet(
            &applied(&p, &plan),
            &node("a", json!({})),
            &BTreeMap::new(),
            &seen,
            &T,
            &PodProfile::default(),
            "t2",
        );
        assert_eq!(again, Plan::default());
        // The Secret without the listed key: the next error is reported, the pod still waits.
        let listed = bound(
            json!([{"name": "app", "image": "nginx", "volumeMounts": [{"name": "key", "mountPath": "/k"}]}]),
            json!([{"name": "key", "secret": {"secretName": "agent-key", "items": [{"key": "AL_API_KEY", "path": "key"}]}}]),
        );
        let (plan, _) = first_sync(
            &listed,
            &secrets(&[("agent-key", &["other"])]),
            Duration::ZERO,
        );
        assert_eq!(
            events(&plan),
            [(
                "Warning",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"key\" : references non-existent secret key: AL_API_KEY"
                    .to_string()
            )]
        );
    }

    #[test]
    fn a_projected_volume_aggregates_its_missing_secrets() {
        let mounts = json!([{"name": "app", "image": "i", "volumeMounts": [{"name": "all", "mountPath": "/a"}]}]);
        let one = bound(
            mounts.clone(),
            json!([{"name": "all", "projected": {"sources": [
                {"secret": {"name": "a"}}, {"serviceAccountToken": {"path": "token"}}]}}]),
        );
        assert_eq!(
            secret_wait(&one, &BTreeMap::new()).volumes,
            [("all".to_string(), "secret \"a\" not found".to_string())]
        );
        let two = bound(
            mounts,
            json!([{"name": "all", "projected": {"sources": [
                {"secret": {"name": "a"}}, {"secret": {"name": "b"}}, {"secret": {"name": "a"}},
                {"secret": {"name": "c", "items": [{"key": "k", "path": "k"}]}}]}}]),
        );
        assert_eq!(
            secret_wait(&two, &secrets(&[("c", &["other"])])).mount_messages(),
            [
                "MountVolume.SetUp failed for volume \"all\" : [secret \"a\" not found, secret \"b\" not found, references non-existent secret key: k]"
            ]
        );
        assert_eq!(
            secret_wait(&two, &secrets(&[("a", &[]), ("b", &[]), ("c", &["k"])])),
            SecretWait::default()
        );
    }

    #[test]
    fn only_the_container_missing_its_secret_waits() {
        let p = bound(
            json!([{"name": "app", "image": "nginx",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "agent-key", "key": "k"}}}]},
                   {"name": "side", "image": "busybox"}]),
            json!([]),
        );
        let (plan, seen) = first_sync(&p, &BTreeMap::new(), Duration::from_millis(250));
        assert_eq!(seen.startable_for.keys().collect::<Vec<_>>(), ["side"]);
        let status = status_of(&plan);
        assert_eq!(status["phase"], "Pending", "a container not started yet");
        assert_eq!(status["containerStatuses"][1]["ready"], true);
        assert!(status["containerStatuses"][1]["state"]["running"].is_object());
        assert_eq!(
            condition(status, "Ready").unwrap()["message"],
            "containers with unready status: [app]"
        );
        let reasons: Vec<_> = events(&plan).into_iter().map(|e| e.1).collect();
        assert_eq!(
            reasons,
            ["Pulled", "Failed", "Pulled", "Created", "Started"]
        );
        let pr = printed(&applied(&p, &plan));
        assert_eq!(
            (pr.ready.as_str(), pr.reason.as_str()),
            ("1/2", "CreateContainerConfigError")
        );
    }

    #[test]
    fn a_pod_starts_once_its_secret_exists_with_delays_counted_from_then() {
        let p = bound(
            json!([{"name": "app", "image": "nginx",
                    "envFrom": [{"secretRef": {"name": "agent-key"}}],
                    "volumeMounts": [{"name": "key", "mountPath": "/k"}]}]),
            json!([{"name": "key", "secret": {"secretName": "agent-key"}}]),
        );
        let (waiting, _) = first_sync(&p, &BTreeMap::new(), Duration::ZERO);
        let waiting = applied(&p, &waiting);
        // The Secret appears: the container gets its clock now and is created, then runs.
        let s = secrets(&[("agent-key", &["AL_API_KEY"])]);
        let (start, stop) =
            clock_changes(&waiting, &s, &BTreeMap::new(), &T, &PodProfile::default());
        assert_eq!((start, stop), (vec!["app".to_string()], vec![]));
        let at = |ms: u64| Seen {
            startable_for: [("app".to_string(), Duration::from_millis(ms))].into(),
            ..Seen::default()
        };
        // `ContainerCreating` either way: no write, but a timer for the start.
        let plan = kubelet(
            &waiting,
            &node("a", json!({})),
            &s,
            &at(0),
            &T,
            &PodProfile::default(),
            "t",
        );
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.requeue, Some(Duration::from_millis(100)));
        let plan = kubelet(
            &waiting,
            &node("a", json!({})),
            &s,
            &at(60),
            &T,
            &PodProfile::default(),
            "t",
        );
        assert_eq!(plan.requeue, Some(Duration::from_millis(40)));
        let plan = kubelet(
            &waiting,
            &node("a", json!({})),
            &s,
            &at(250),
            &T,
            &PodProfile::default(),
            "t",
        );
        assert_eq!(status_of(&plan)["phase"], "Running");
        assert_eq!(
            condition(status_of(&plan), "Ready").unwrap()["status"],
            "True"
        );
        let reasons: Vec<_> = events(&plan).into_iter().map(|e| e.1).collect();
        assert_eq!(reasons, ["Pulled", "Created", "Started"]);
        // Deleted before the container was created: it waits again. Deleted after: it runs on.
        let none = BTreeMap::new();
        let changes = |ms| {
            clock_changes(
                &waiting,
                &none,
                &at(ms).startable_for,
                &T,
                &PodProfile::default(),
            )
        };
        assert_eq!(changes(50), (vec![], vec!["app".to_string()]));
        assert_eq!(changes(100), (vec![], vec![]));
        let slow = PodProfile {
            extra_start: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(
            clock_changes(&waiting, &none, &at(150).startable_for, &T, &slow),
            (vec![], vec!["app".to_string()])
        );
        let running = applied(&waiting, &plan);
        let plan = kubelet(
            &running,
            &node("a", json!({})),
            &none,
            &at(900),
            &T,
            &PodProfile::default(),
            "t2",
        );
        // Its status stands; the kubelet's remount of the gone Secret fails (reported once).
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Status { .. }))
        );
        assert_eq!(
            events(&plan),
            [(
                "Warning",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"key\" : secret \"agent-key\" not found"
                    .to_string()
            )]
        );
    }
}
