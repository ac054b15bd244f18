//! The scheduler and the kubelet, for one pod at a time.
//!
//! Scheduling is trivial: the first Ready, schedulable node (round robin) that the pod's
//! `nodeSelector`, required node affinity and tolerations allow. No resources are counted,
//! no preemption, no spreading. The kubelet runs no containers: a bound pod goes `Pending`
//! (`ContainerCreating`) → `Running` after the start delay → `Ready` after the ready delay,
//! unless a workload fault says otherwise (never Ready, crash loop, slow start).

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

/// The kubelet's view of one bound pod: the status it reports now, and when it will change.
pub fn kubelet(
    pod: &Value,
    node: &Value,
    bound_for: Duration,
    timing: &Timing,
    profile: &PodProfile,
    now: &str,
) -> Plan {
    let mut plan = Plan::default();
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return plan;
    }
    let st = stage(bound_for, timing, profile);
    let old = pod.get("status").cloned().unwrap_or(json!({}));
    let mut status = old.clone();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = containers
        .iter()
        .map(|c| str_at(c, "/name").to_string())
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
    let (phase, ready, running, restarts) = match &st {
        Stage::Creating { .. } => ("Pending", false, false, 0),
        Stage::Running { ready, .. } => ("Running", *ready, true, 0),
        Stage::Crashing {
            restarts, running, ..
        } => ("Running", false, *running, *restarts),
    };
    status["phase"] = json!(phase);
    if phase == "Running" {
        let ip = pod_ip(node, meta::uid(pod));
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    let cstatuses: Vec<Value> = containers
        .iter()
        .map(|c| {
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
            let state = match (&st, running) {
                (Stage::Creating { .. }, _) => json!({"waiting": {"reason": "ContainerCreating"}}),
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
    let not_ready: Vec<&String> = if ready {
        Vec::new()
    } else {
        names.iter().collect()
    };
    let unready_msg = format!(
        "containers with unready status: [{}]",
        not_ready
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
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
        cond("PodReadyToStartContainers", running || restarts > 0, "", ""),
        cond("Initialized", true, "", ""),
        cond("Ready", ready, "ContainersNotReady", &unready_msg),
        cond("ContainersReady", ready, "ContainersNotReady", &unready_msg),
        cond("PodScheduled", true, "", ""),
    ] {
        set_condition(&mut status, c, now, false);
    }
    // `startedAt`/`startTime` only ever come from `now` on a change: compare without them.
    if !crate::meta::json_eq(&status, &old) {
        plan.actions.push(Action::Status {
            res: PODS,
            namespace: meta::namespace(pod).to_string(),
            name: meta::name(pod).to_string(),
            uid: meta::uid(pod).to_string(),
            status,
        });
        let host = Some(meta::name(node).to_string());
        let ev = |reason: &'static str, message: String| {
            Action::Event(EventSpec {
                namespace: meta::namespace(pod).to_string(),
                involved: pod_ref(pod),
                type_: if reason == "BackOff" {
                    "Warning"
                } else {
                    "Normal"
                },
                reason,
                message,
                component: "kubelet",
                host: host.clone(),
            })
        };
        let was_running = str_at(&old, "/phase") == "Running";
        if running
            && (!was_running
                || old_statuses
                    .iter()
                    .any(|c| c.get("restartCount").and_then(Value::as_i64) != Some(restarts)))
        {
            for c in &containers {
                let name = str_at(c, "/name");
                plan.actions.push(ev(
                    "Pulled",
                    format!(
                        "Container image \"{}\" already present on machine",
                        str_at(c, "/image")
                    ),
                ));
                plan.actions
                    .push(ev("Created", format!("Created container: {name}")));
                plan.actions
                    .push(ev("Started", format!("Started container {name}")));
            }
        }
        if matches!(st, Stage::Crashing { running: false, .. })
            && !old_statuses.iter().any(|c| {
                c.pointer("/state/waiting/reason").and_then(Value::as_str)
                    == Some("CrashLoopBackOff")
                    && c.get("restartCount").and_then(Value::as_i64) == Some(restarts)
            })
        {
            for n in &names {
                plan.actions.push(ev(
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {n} in pod {}_{}({})",
                        meta::name(pod),
                        meta::namespace(pod),
                        meta::uid(pod)
                    ),
                ));
            }
        }
    }
    plan.requeue = match st {
        Stage::Creating { until } => Some(until),
        Stage::Running { until, .. } => until,
        Stage::Crashing { until, .. } => Some(until),
    };
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
        let plan = kubelet(
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
        let plan = kubelet(
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
        let ready = kubelet(
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
        let again = kubelet(
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
        let plan = kubelet(&p, &n, Duration::from_secs(60), &t, &never, "t");
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
        let plan = kubelet(&p, &n, Duration::from_millis(115), &t, &crash, "t");
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["containerStatuses"][0]["restartCount"], 1);
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        let plan = kubelet(&p, &n, Duration::from_millis(135), &t, &crash, "t");
        let Action::Status { status, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(status["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(
            crate::builtin::qos_class(Some(&json!({"containers": [{}]}))),
            "BestEffort"
        );
    }
}
