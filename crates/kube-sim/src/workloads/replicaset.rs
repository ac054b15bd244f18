//! The ReplicaSet controller (`pkg/controller/replicaset`): keep `spec.replicas` active pods
//! from the template, delete the surplus in upstream's order, report status.

use std::time::Duration;

use serde_json::{Value, json};

use super::util::{
    int_at, owner_ref, pod_active, pod_available, pod_available_at, pod_from_template, pod_ready,
    selector_matches, str_at,
};
use super::{Action, EventSpec, PODS, Plan, REPLICA_SETS};
use crate::meta;

fn rs_ref(rs: &Value) -> Value {
    super::util::object_ref("apps/v1", "ReplicaSet", rs)
}

/// Which of `pods` to delete first (`getPodsToDelete` / `ActivePodsWithRanks`): unassigned
/// before assigned, pending before running, not ready before ready, more restarts first,
/// newer before older.
pub fn deletion_order(pods: &mut [Value]) {
    let phase_rank = |p: &Value| match str_at(p, "/status/phase") {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let restarts = |p: &Value| -> i64 {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    pods.sort_by(|a, b| {
        let key = |p: &Value| {
            (
                !str_at(p, "/spec/nodeName").is_empty(),
                phase_rank(p),
                pod_ready(p),
                -restarts(p),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| {
                str_at(b, "/metadata/creationTimestamp")
                    .cmp(str_at(a, "/metadata/creationTimestamp"))
            })
            .then_with(|| meta::name(b).cmp(meta::name(a)))
    });
}

/// One sync of a ReplicaSet given the pods it controls; `now` in seconds since the epoch.
pub fn plan(rs: &Value, pods: &[Value], now: i64) -> Plan {
    let mut plan = Plan::default();
    let ns = meta::namespace(rs).to_string();
    let name = meta::name(rs).to_string();
    let uid = meta::uid(rs).to_string();
    let replicas = int_at(rs, "/spec/replicas");
    let min_ready = int_at(rs, "/spec/minReadySeconds");
    let mut active: Vec<Value> = pods.iter().filter(|p| pod_active(p)).cloned().collect();
    if !meta::is_deleting(rs) {
        let diff = active.len() as i64 - replicas;
        if diff < 0 {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for _ in 0..(-diff).min(500) {
                let mut pod =
                    pod_from_template(&template, &ns, &[], owner_ref("apps/v1", "ReplicaSet", rs));
                // `generateName` as upstream sends it, resolved here so the event can name
                // the pod.
                let pod_name = meta::generate_name(&format!("{name}-"));
                pod["metadata"]["generateName"] = json!(format!("{name}-"));
                pod["metadata"]["name"] = json!(pod_name);
                plan.actions.push(Action::Create {
                    res: PODS,
                    namespace: ns.clone(),
                    object: pod,
                });
                plan.actions.push(Action::Event(EventSpec {
                    namespace: ns.clone(),
                    involved: rs_ref(rs),
                    type_: "Normal",
                    reason: "SuccessfulCreate",
                    message: format!("Created pod: {pod_name}"),
                    component: "replicaset-controller",
                    host: None,
                }));
            }
        } else if diff > 0 {
            deletion_order(&mut active);
            for p in active.iter().take(diff as usize) {
                plan.actions.push(Action::Delete {
                    res: PODS,
                    namespace: ns.clone(),
                    name: meta::name(p).to_string(),
                    uid: meta::uid(p).to_string(),
                    grace: None,
                });
                plan.actions.push(Action::Event(EventSpec {
                    namespace: ns.clone(),
                    involved: rs_ref(rs),
                    type_: "Normal",
                    reason: "SuccessfulDelete",
                    message: format!("Deleted pod: {}", meta::name(p)),
                    component: "replicaset-controller",
                    host: None,
                }));
            }
        }
    }
    // Status from the pods seen at the start of this sync (as upstream computes it).
    let template_labels = json!({"matchLabels": rs.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}))});
    let current: Vec<&Value> = pods.iter().filter(|p| pod_active(p)).collect();
    let ready = current.iter().filter(|p| pod_ready(p)).count() as i64;
    let available = current
        .iter()
        .filter(|p| pod_available(p, min_ready, now))
        .count() as i64;
    let fully_labeled = current
        .iter()
        .filter(|p| selector_matches(Some(&template_labels), p))
        .count() as i64;
    let mut status = json!({
        "replicas": current.len(),
        "fullyLabeledReplicas": fully_labeled,
        "observedGeneration": int_at(rs, "/metadata/generation"),
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
    }
    if available > 0 {
        status["availableReplicas"] = json!(available);
    }
    if let Some(c) = rs.pointer("/status/conditions") {
        status["conditions"] = c.clone();
    }
    let zeroes = |s: &Value| {
        let mut s = s.clone();
        if let Some(m) = s.as_object_mut() {
            m.retain(|_, v| v.as_i64() != Some(0));
        }
        s
    };
    let status = zeroes(&status);
    if !meta::json_eq(&status, rs.get("status").unwrap_or(&json!({}))) {
        plan.actions.push(Action::Status {
            res: REPLICA_SETS,
            namespace: ns,
            name,
            uid,
            status,
        });
    }
    if min_ready > 0
        && let Some(at) = current
            .iter()
            .filter_map(|p| pod_available_at(p, min_ready))
            .filter(|at| *at > now)
            .min()
    {
        plan.requeue = Some(Duration::from_secs((at - now) as u64) + Duration::from_millis(50));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"metadata": {"name": "web-abc", "namespace": "ns", "uid": "rs-uid", "generation": 2},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    fn pod(name: &str, node: &str, ready: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "web"}, "creationTimestamp": created},
               "spec": {"nodeName": node},
               "status": {"phase": if node.is_empty() { "Pending" } else { "Running" },
                          "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    }

    #[test]
    fn scales_up_with_owned_pods_from_the_template() {
        let p = plan(&rs(3), &[pod("a", "n", true, "t1")], 0);
        let creates: Vec<&Value> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { object, .. } => Some(object),
                _ => None,
            })
            .collect();
        assert_eq!(creates.len(), 2);
        assert_eq!(creates[0]["metadata"]["generateName"], "web-abc-");
        assert_eq!(
            creates[0]["metadata"]["ownerReferences"][0]["controller"],
            true
        );
        assert_eq!(creates[0]["metadata"]["labels"]["app"], "web");
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!()
        };
        assert_eq!(status["replicas"], 1);
        assert_eq!(status["readyReplicas"], 1);
        assert_eq!(status["observedGeneration"], 2);
    }

    #[test]
    fn scales_down_unready_and_unassigned_first() {
        let pods = [
            pod("ready-old", "n", true, "2026-01-01T00:00:00Z"),
            pod("unready", "n", false, "2026-01-01T00:00:01Z"),
            pod("pending", "", false, "2026-01-01T00:00:02Z"),
            pod("ready-new", "n", true, "2026-01-01T00:00:03Z"),
        ];
        let p = plan(&rs(1), &pods, 0);
        let deleted: Vec<&str> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["pending", "unready", "ready-new"]);
    }

    #[test]
    fn settled_set_writes_nothing() {
        let pods = [pod("a", "n", true, "t")];
        let mut r = rs(1);
        r["status"] = json!({"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2});
        assert!(plan(&r, &pods, 0).actions.is_empty());
    }
}
