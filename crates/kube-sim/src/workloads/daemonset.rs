//! The DaemonSet controller (`pkg/controller/daemon`): one pod per eligible node (pinned with
//! node affinity on `metadata.name`, bound by the scheduler), following nodes as they come and
//! go, rolling updates within `maxUnavailable` (or `maxSurge`), ControllerRevisions, status.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::statefulset::ensure_revision;
use super::util::{
    CONTROLLER_REVISION_HASH, int_at, label, owner_ref, pod_active, pod_available, scaled_value,
    str_at, template_hash,
};
use super::{Action, DAEMON_SETS, EventSpec, PODS, Plan};
use crate::meta;

const COMPONENT: &str = "daemonset-controller";

/// The tolerations the controller adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations() -> Vec<Value> {
    let mut t = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute"}));
    }
    for key in [
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        t.push(json!({"key": key, "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

fn pinned(template: &Value, node: &str) -> Value {
    let mut t = template.clone();
    t["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
    let mut tol = t
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for x in daemon_tolerations() {
        if !tol
            .iter()
            .any(|y| y.get("key") == x.get("key") && y.get("effect") == x.get("effect"))
        {
            tol.push(x);
        }
    }
    t["spec"]["tolerations"] = json!(tol);
    t
}

/// The node a daemon pod is for: where it runs, or where its affinity pins it.
fn node_of(pod: &Value) -> String {
    let n = str_at(pod, "/spec/nodeName");
    if !n.is_empty() {
        return n.to_string();
    }
    pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn event(plan: &mut Plan, ds: &Value, reason: &'static str, message: String) {
    plan.actions.push(Action::Event(EventSpec {
        namespace: meta::namespace(ds).to_string(),
        involved: super::util::object_ref("apps/v1", "DaemonSet", ds),
        type_: "Normal",
        reason,
        message,
        component: COMPONENT,
        host: None,
    }));
}

fn delete(plan: &mut Plan, ds: &Value, p: &Value) {
    plan.actions.push(Action::Delete {
        res: PODS,
        namespace: meta::namespace(ds).to_string(),
        name: meta::name(p).to_string(),
        uid: meta::uid(p).to_string(),
        grace: None,
    });
    event(
        plan,
        ds,
        "SuccessfulDelete",
        format!("Deleted pod: {}", meta::name(p)),
    );
}

/// One sync of a DaemonSet given its pods, ControllerRevisions and all nodes.
pub fn plan(
    ds: &Value,
    pods: &[Value],
    revisions: &[Value],
    nodes: &[Value],
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let name = meta::name(ds).to_string();
    let ns = meta::namespace(ds).to_string();
    let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template, int_at(ds, "/status/collisionCount"));
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels[CONTROLLER_REVISION_HASH] = json!(hash);
    let mut data_t = template.clone();
    data_t["$patch"] = json!("replace");
    ensure_revision(
        &mut plan,
        ds,
        "DaemonSet",
        revisions,
        &format!("{name}-{hash}"),
        json!({"spec": {"template": data_t}}),
        labels,
    );
    let min_ready = int_at(ds, "/spec/minReadySeconds");
    let now_s = now.as_second();
    // Eligible nodes.
    let eligible: Vec<String> = nodes
        .iter()
        .filter(|n| {
            let probe = json!({"spec": pinned(&template, meta::name(n))["spec"].clone()});
            super::pods::fits(&probe, n)
        })
        .map(|n| meta::name(n).to_string())
        .collect();
    let mut by_node: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for p in pods.iter().filter(|p| pod_active(p)) {
        by_node.entry(node_of(p)).or_default().push(p);
    }
    let is_new = |p: &Value| label(p, CONTROLLER_REVISION_HASH) == Some(hash.as_str());
    let deleting = meta::is_deleting(ds);
    if !deleting {
        for node in &eligible {
            match by_node.get(node).map(Vec::as_slice) {
                None | Some([]) => {
                    let pod_name = meta::generate_name(&format!("{name}-"));
                    let mut pod = super::util::pod_from_template(
                        &pinned(&template, node),
                        &ns,
                        &[
                            (CONTROLLER_REVISION_HASH, hash.as_str()),
                            (
                                "pod-template-generation",
                                int_at(ds, "/metadata/generation").to_string().as_str(),
                            ),
                        ],
                        owner_ref("apps/v1", "DaemonSet", ds),
                    );
                    pod["metadata"]["name"] = json!(pod_name);
                    pod["metadata"]["generateName"] = json!(format!("{name}-"));
                    plan.actions.push(Action::Create {
                        res: PODS,
                        namespace: ns.clone(),
                        object: pod,
                    });
                    event(
                        &mut plan,
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {pod_name}"),
                    );
                }
                Some(list) if list.len() > 1 => {
                    // Keep the newest-template, oldest pod; delete the others.
                    let mut sorted: Vec<&Value> = list.to_vec();
                    sorted.sort_by_key(|p| {
                        (
                            !is_new(p),
                            str_at(p, "/metadata/creationTimestamp").to_string(),
                        )
                    });
                    let surge_allows = int_at(ds, "/spec/updateStrategy/rollingUpdate/maxSurge")
                        > 0
                        || ds
                            .pointer("/spec/updateStrategy/rollingUpdate/maxSurge")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s != "0" && s != "0%");
                    for p in sorted.iter().skip(1) {
                        // During a surge update the old pod stays until the new one is available.
                        if surge_allows && !is_new(p) && !pod_available(sorted[0], min_ready, now_s)
                        {
                            continue;
                        }
                        delete(&mut plan, ds, p);
                    }
                }
                Some(_) => {}
            }
        }
        // Pods on nodes that are gone or no longer eligible.
        for (node, list) in &by_node {
            if !eligible.contains(node) {
                for p in list {
                    delete(&mut plan, ds, p);
                }
            }
        }
        // Rolling update.
        if str_at(ds, "/spec/updateStrategy/type") != "OnDelete" {
            let desired = eligible.len() as i64;
            let ru = ds.pointer("/spec/updateStrategy/rollingUpdate");
            let surge = scaled_value(ru.and_then(|r| r.get("maxSurge")), desired, true);
            let mut max_unavailable =
                scaled_value(ru.and_then(|r| r.get("maxUnavailable")), desired, true);
            if surge == 0 && max_unavailable == 0 {
                max_unavailable = 1;
            }
            let old: Vec<&Value> = eligible
                .iter()
                .filter_map(|n| by_node.get(n))
                .filter(|l| l.len() == 1)
                .map(|l| l[0])
                .filter(|p| !is_new(p))
                .collect();
            if surge > 0 {
                // Nodes already running an old and a new pod use up the surge.
                let surging = eligible
                    .iter()
                    .filter(|n| by_node.get(*n).is_some_and(|l| l.len() > 1))
                    .count() as i64;
                let mut budget = (surge - surging).max(0);
                for p in &old {
                    if budget == 0 {
                        break;
                    }
                    let node = node_of(p);
                    let pod_name = meta::generate_name(&format!("{name}-"));
                    let mut pod = super::util::pod_from_template(
                        &pinned(&template, &node),
                        &ns,
                        &[(CONTROLLER_REVISION_HASH, hash.as_str())],
                        owner_ref("apps/v1", "DaemonSet", ds),
                    );
                    pod["metadata"]["name"] = json!(pod_name);
                    plan.actions.push(Action::Create {
                        res: PODS,
                        namespace: ns.clone(),
                        object: pod,
                    });
                    event(
                        &mut plan,
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {pod_name}"),
                    );
                    budget -= 1;
                }
            } else {
                let unavailable = eligible
                    .iter()
                    .filter(|n| {
                        by_node
                            .get(*n)
                            .is_none_or(|l| !l.iter().any(|p| pod_available(p, min_ready, now_s)))
                    })
                    .count() as i64;
                let mut budget = max_unavailable - unavailable;
                let (mut down, mut up): (Vec<&Value>, Vec<&Value>) = old
                    .iter()
                    .partition(|p| !pod_available(p, min_ready, now_s));
                for p in down.drain(..) {
                    delete(&mut plan, ds, p);
                }
                up.sort_by_key(|p| node_of(p));
                for p in up {
                    if budget <= 0 {
                        break;
                    }
                    delete(&mut plan, ds, p);
                    budget -= 1;
                }
            }
        }
    }
    // Status.
    let on = |n: &String| by_node.get(n).map(|l| l.as_slice()).unwrap_or(&[]);
    let desired = eligible.len() as i64;
    let scheduled = eligible.iter().filter(|n| !on(n).is_empty()).count() as i64;
    let misscheduled = by_node
        .iter()
        .filter(|(n, l)| !eligible.contains(n) && !l.is_empty())
        .count() as i64;
    let ready = eligible
        .iter()
        .filter(|n| on(n).iter().any(|p| super::util::pod_ready(p)))
        .count() as i64;
    let available = eligible
        .iter()
        .filter(|n| on(n).iter().any(|p| pod_available(p, min_ready, now_s)))
        .count() as i64;
    let updated = eligible
        .iter()
        .filter(|n| on(n).iter().any(|p| is_new(p)))
        .count() as i64;
    let mut status = json!({
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": int_at(ds, "/metadata/generation"),
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            !(v.as_i64() == Some(0)
                && matches!(
                    k.as_str(),
                    "updatedNumberScheduled" | "numberAvailable" | "numberUnavailable"
                ))
        });
    }
    if !meta::json_eq(&status, ds.get("status").unwrap_or(&json!({}))) {
        plan.actions.push(Action::Status {
            res: DAEMON_SETS,
            namespace: ns,
            name,
            uid: meta::uid(ds).to_string(),
            status,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> Value {
        json!({"metadata": {"name": n, "labels": {}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn ds(image: &str) -> Value {
        json!({"metadata": {"name": "agent", "namespace": "ns", "uid": "d", "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn pod(name: &str, node: &str, hash: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name, "labels": {CONTROLLER_REVISION_HASH: hash}},
               "spec": {"nodeName": node},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn count(p: &Plan, create: bool) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { res, object, .. } if create && *res == PODS => {
                    Some(node_of(object))
                }
                Action::Delete { res, name, .. } if !create && *res == PODS => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_pod_per_node_following_nodes() {
        let d = ds("v1");
        let nodes = [node("a"), node("b")];
        assert_eq!(
            count(&plan(&d, &[], &[], &nodes, jiff::Timestamp::now()), true),
            ["a", "b"]
        );
        let hash = template_hash(&d["spec"]["template"], 0);
        let pods = [
            pod("p-a", "a", &hash),
            pod("p-b", "b", &hash),
            pod("p-c", "c", &hash),
        ];
        let p = plan(&d, &pods, &[], &nodes, jiff::Timestamp::now());
        assert_eq!(count(&p, false), ["p-c"]);
        let Some(Action::Status { status, .. }) = p
            .actions
            .iter()
            .find(|a| matches!(a, Action::Status { .. }))
        else {
            panic!()
        };
        assert_eq!(status["desiredNumberScheduled"], 2);
        assert_eq!(status["numberMisscheduled"], 1);
        assert_eq!(status["updatedNumberScheduled"], 2);
    }

    #[test]
    fn surge_update_creates_within_max_surge() {
        let old = ds("v1");
        let old_hash = template_hash(&old["spec"]["template"], 0);
        let mut new = ds("v2");
        new["spec"]["updateStrategy"]["rollingUpdate"] =
            json!({"maxUnavailable": 0, "maxSurge": 1});
        let new_hash = template_hash(&new["spec"]["template"], 0);
        let nodes = [node("a"), node("b"), node("c")];
        let pods = [
            pod("p-a", "a", &old_hash),
            pod("p-b", "b", &old_hash),
            pod("p-c", "c", &old_hash),
        ];
        assert_eq!(
            count(
                &plan(&new, &pods, &[], &nodes, jiff::Timestamp::now()),
                true
            )
            .len(),
            1
        );
        // One node is surging (its new pod not yet available): nothing more starts.
        let mut fresh = pod("n-a", "a", &new_hash);
        fresh["status"]["conditions"][0]["status"] = json!("False");
        let pods = [
            pod("p-a", "a", &old_hash),
            fresh,
            pod("p-b", "b", &old_hash),
            pod("p-c", "c", &old_hash),
        ];
        let p = plan(&new, &pods, &[], &nodes, jiff::Timestamp::now());
        assert!(count(&p, true).is_empty());
        assert!(
            count(&p, false).is_empty(),
            "the old pod stays until the new one is available"
        );
    }

    #[test]
    fn rolling_update_replaces_one_node_at_a_time() {
        let old = ds("v1");
        let old_hash = template_hash(&old["spec"]["template"], 0);
        let new = ds("v2");
        let nodes = [node("a"), node("b")];
        let pods = [pod("p-a", "a", &old_hash), pod("p-b", "b", &old_hash)];
        assert_eq!(
            count(
                &plan(&new, &pods, &[], &nodes, jiff::Timestamp::now()),
                false
            ),
            ["p-a"]
        );
    }
}
