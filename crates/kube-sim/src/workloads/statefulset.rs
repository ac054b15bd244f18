//! The StatefulSet controller (`pkg/controller/statefulset`): ordered pods `<name>-0…`, one
//! ControllerRevision per template (`controller-revision-hash`), `OrderedReady` creation and
//! reverse-order deletion, rolling updates from the highest ordinal down to the partition, and
//! `currentRevision`/`updateRevision` in status. No PersistentVolumeClaims.

use serde_json::{Value, json};

use super::util::{
    CONTROLLER_REVISION_HASH, int_at, label, owner_ref, pod_available, pod_ready, str_at,
    template_hash,
};
use super::{Action, EventSpec, PODS, Plan, REVISIONS, STATEFUL_SETS};
use crate::meta;

const COMPONENT: &str = "statefulset-controller";

fn ordinal(set: &str, pod: &Value) -> Option<i64> {
    meta::name(pod)
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn revision_data(template: &Value) -> Value {
    let mut t = template.clone();
    t["$patch"] = json!("replace");
    json!({"spec": {"template": t}})
}

fn revision_template(rev: &Value) -> Value {
    let mut t = rev
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

/// Find (or plan) the ControllerRevision holding `template`; returns its name.
pub fn ensure_revision(
    plan: &mut Plan,
    owner: &Value,
    owner_kind: &str,
    revisions: &[Value],
    name: &str,
    data: Value,
    labels: Value,
) -> String {
    let max = revisions
        .iter()
        .map(|r| int_at(r, "/revision"))
        .max()
        .unwrap_or(0);
    if let Some(r) = revisions.iter().find(|r| meta::name(r) == name) {
        if int_at(r, "/revision") < max {
            // An older template is current again (rollout undo): it becomes the newest.
            plan.actions.push(Action::Patch {
                res: REVISIONS,
                namespace: meta::namespace(owner).to_string(),
                name: name.to_string(),
                uid: meta::uid(r).to_string(),
                patch: json!({"revision": max + 1}),
            });
        }
        return name.to_string();
    }
    plan.actions.push(Action::Create {
        res: REVISIONS,
        namespace: meta::namespace(owner).to_string(),
        object: json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": meta::namespace(owner), "labels": labels,
                         "ownerReferences": [owner_ref("apps/v1", owner_kind, owner)]},
            "data": data,
            "revision": max + 1,
        }),
    });
    name.to_string()
}

fn event(plan: &mut Plan, set: &Value, reason: &'static str, message: String) {
    plan.actions.push(Action::Event(EventSpec {
        namespace: meta::namespace(set).to_string(),
        involved: super::util::object_ref("apps/v1", "StatefulSet", set),
        type_: if reason.starts_with("Failed") {
            "Warning"
        } else {
            "Normal"
        },
        reason,
        message,
        component: COMPONENT,
        host: None,
    }));
}

/// One sync of a StatefulSet given its pods and ControllerRevisions.
pub fn plan(set: &Value, pods: &[Value], revisions: &[Value], now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let name = meta::name(set).to_string();
    let ns = meta::namespace(set).to_string();
    let template = set.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template, int_at(set, "/status/collisionCount"));
    let update_name = format!("{name}-{hash}");
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let update_rev = ensure_revision(
        &mut plan,
        set,
        "StatefulSet",
        revisions,
        &update_name,
        revision_data(&template),
        labels,
    );
    let current_rev = {
        let c = str_at(set, "/status/currentRevision");
        if !c.is_empty() && revisions.iter().any(|r| meta::name(r) == c) {
            c.to_string()
        } else {
            update_rev.clone()
        }
    };
    let template_of = |rev: &str| -> Value {
        if rev == update_rev {
            return template.clone();
        }
        revisions
            .iter()
            .find(|r| meta::name(r) == rev)
            .map(revision_template)
            .unwrap_or_else(|| template.clone())
    };
    let replicas = int_at(set, "/spec/replicas");
    let partition = int_at(set, "/spec/updateStrategy/rollingUpdate/partition");
    let rolling = str_at(set, "/spec/updateStrategy/type") != "OnDelete";
    let parallel = str_at(set, "/spec/podManagementPolicy") == "Parallel";
    let min_ready = int_at(set, "/spec/minReadySeconds");
    let mut by_ordinal: Vec<(i64, &Value)> = pods
        .iter()
        .filter_map(|p| ordinal(&name, p).map(|o| (o, p)))
        .collect();
    by_ordinal.sort_by_key(|(o, _)| *o);
    let get = |o: i64| by_ordinal.iter().find(|(x, _)| *x == o).map(|(_, p)| *p);
    let healthy = |p: &Value| {
        !meta::is_deleting(p) && str_at(p, "/status/phase") == "Running" && pod_ready(p)
    };
    let mut acted = false;
    if !meta::is_deleting(set) {
        // Create missing pods in order.
        for o in 0..replicas {
            match get(o) {
                None => {
                    let rev = if rolling && o < partition {
                        current_rev.clone()
                    } else {
                        update_rev.clone()
                    };
                    let pod_name = format!("{name}-{o}");
                    let mut pod = super::util::pod_from_template(
                        &template_of(&rev),
                        &ns,
                        &[
                            (CONTROLLER_REVISION_HASH, rev.as_str()),
                            ("statefulset.kubernetes.io/pod-name", pod_name.as_str()),
                            ("apps.kubernetes.io/pod-index", o.to_string().as_str()),
                        ],
                        owner_ref("apps/v1", "StatefulSet", set),
                    );
                    pod["metadata"]["name"] = json!(pod_name);
                    pod["spec"]["hostname"] = json!(pod_name);
                    let svc = str_at(set, "/spec/serviceName");
                    if !svc.is_empty() {
                        pod["spec"]["subdomain"] = json!(svc);
                    }
                    plan.actions.push(Action::Create {
                        res: PODS,
                        namespace: ns.clone(),
                        object: pod,
                    });
                    event(
                        &mut plan,
                        set,
                        "SuccessfulCreate",
                        format!("create Pod {pod_name} in StatefulSet {name} successful"),
                    );
                    acted = true;
                    if !parallel {
                        break;
                    }
                }
                Some(p) if !parallel && !healthy(p) => {
                    acted = true; // wait for this one before the next
                    break;
                }
                Some(_) => {}
            }
        }
        // Scale down: highest ordinal first, one at a time.
        if !acted {
            let all_healthy = (0..replicas).all(|o| get(o).is_some_and(healthy));
            let surplus: Vec<&Value> = by_ordinal
                .iter()
                .rev()
                .filter(|(o, _)| *o >= replicas)
                .map(|(_, p)| *p)
                .collect();
            if let Some(p) = surplus.first() {
                if !meta::is_deleting(p) && (parallel || all_healthy) {
                    plan.actions.push(Action::Delete {
                        res: PODS,
                        namespace: ns.clone(),
                        name: meta::name(p).to_string(),
                        uid: meta::uid(p).to_string(),
                        grace: None,
                    });
                    event(
                        &mut plan,
                        set,
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {} in StatefulSet {name} successful",
                            meta::name(p)
                        ),
                    );
                }
                acted = true;
            }
        }
        // Rolling update: from the highest ordinal down to the partition.
        if !acted && rolling {
            let all_healthy = (0..replicas).all(|o| get(o).is_some_and(healthy));
            if all_healthy {
                for o in (partition.max(0)..replicas).rev() {
                    if let Some(p) = get(o)
                        && label(p, CONTROLLER_REVISION_HASH) != Some(update_rev.as_str())
                    {
                        plan.actions.push(Action::Delete {
                            res: PODS,
                            namespace: ns.clone(),
                            name: meta::name(p).to_string(),
                            uid: meta::uid(p).to_string(),
                            grace: None,
                        });
                        event(
                            &mut plan,
                            set,
                            "SuccessfulDelete",
                            format!(
                                "delete Pod {} in StatefulSet {name} successful",
                                meta::name(p)
                            ),
                        );
                        break;
                    }
                }
            }
        }
    }
    // Status.
    let live: Vec<&Value> = pods
        .iter()
        .filter(|p| ordinal(&name, p).is_some())
        .collect();
    let count = |f: &dyn Fn(&Value) -> bool| live.iter().filter(|p| f(p)).count() as i64;
    let ready = count(&|p| !meta::is_deleting(p) && pod_ready(p));
    let available =
        count(&|p| !meta::is_deleting(p) && pod_available(p, min_ready, now.as_second()));
    let current = count(&|p| label(p, CONTROLLER_REVISION_HASH) == Some(current_rev.as_str()));
    let updated = count(&|p| label(p, CONTROLLER_REVISION_HASH) == Some(update_rev.as_str()));
    let mut status = json!({
        "observedGeneration": int_at(set, "/metadata/generation"),
        "replicas": live.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_rev,
        "updateRevision": update_rev,
        "collisionCount": int_at(set, "/status/collisionCount"),
    });
    if rolling
        && updated == live.len() as i64
        && ready == live.len() as i64
        && live.len() as i64 == replicas
    {
        status["currentRevision"] = json!(update_rev);
        status["currentReplicas"] = json!(updated);
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            !(v.as_i64() == Some(0)
                && matches!(
                    k.as_str(),
                    "readyReplicas" | "currentReplicas" | "updatedReplicas"
                ))
        });
    }
    if !meta::json_eq(&status, set.get("status").unwrap_or(&json!({}))) {
        plan.actions.push(Action::Status {
            res: STATEFUL_SETS,
            namespace: ns.clone(),
            name: name.clone(),
            uid: meta::uid(set).to_string(),
            status: status.clone(),
        });
    }
    // Revision history: keep the limit of unused revisions.
    let limit = set
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10);
    let in_use = |r: &str| {
        r == update_rev
            || r == str_at(&status, "/currentRevision")
            || pods
                .iter()
                .any(|p| label(p, CONTROLLER_REVISION_HASH) == Some(r))
    };
    let mut unused: Vec<&Value> = revisions
        .iter()
        .filter(|r| !in_use(meta::name(r)))
        .collect();
    unused.sort_by_key(|r| int_at(r, "/revision"));
    let excess = unused.len() as i64 - limit;
    for r in unused.into_iter().take(excess.max(0) as usize) {
        plan.actions.push(Action::Delete {
            res: REVISIONS,
            namespace: ns.clone(),
            name: meta::name(r).to_string(),
            uid: meta::uid(r).to_string(),
            grace: None,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(replicas: i64, image: &str) -> Value {
        json!({"metadata": {"name": "db", "namespace": "ns", "uid": "s", "generation": 1},
               "spec": {"replicas": replicas, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                        "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn rev_for(s: &Value, revision: i64) -> (String, Value) {
        let t = s["spec"]["template"].clone();
        let name = format!("db-{}", template_hash(&t, 0));
        (
            name.clone(),
            json!({"metadata": {"name": name, "uid": name}, "revision": revision, "data": revision_data(&t)}),
        )
    }

    fn pod(o: i64, rev: &str, ready: bool) -> Value {
        json!({"metadata": {"name": format!("db-{o}"), "uid": format!("p{o}"), "labels": {CONTROLLER_REVISION_HASH: rev}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn created(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { res, object, .. } if *res == PODS => {
                    Some(object["metadata"]["name"].as_str().unwrap().to_string())
                }
                _ => None,
            })
            .collect()
    }

    fn deleted(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { res, name, .. } if *res == PODS => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ordered_creation_waits_for_each_pod() {
        let s = set(3, "v1");
        let (rname, rev) = rev_for(&s, 1);
        assert_eq!(
            created(&plan(&s, &[], std::slice::from_ref(&rev), now())),
            ["db-0"]
        );
        assert!(
            created(&plan(
                &s,
                &[pod(0, &rname, false)],
                std::slice::from_ref(&rev),
                now()
            ))
            .is_empty()
        );
        assert_eq!(
            created(&plan(&s, &[pod(0, &rname, true)], &[rev], now())),
            ["db-1"]
        );
    }

    #[test]
    fn rolling_update_goes_from_the_highest_ordinal() {
        let s1 = set(3, "v1");
        let (old, rev1) = rev_for(&s1, 1);
        let s2 = set(3, "v2");
        let (new, rev2) = rev_for(&s2, 2);
        let pods = [pod(0, &old, true), pod(1, &old, true), pod(2, &old, true)];
        let p = plan(&s2, &pods, &[rev1.clone(), rev2.clone()], now());
        assert_eq!(deleted(&p), ["db-2"]);
        let pods = [pod(0, &old, true), pod(1, &old, true), pod(2, &new, true)];
        let p = plan(&s2, &pods, &[rev1.clone(), rev2.clone()], now());
        assert_eq!(deleted(&p), ["db-1"]);
        let Some(Action::Status { status, .. }) = p
            .actions
            .iter()
            .find(|a| matches!(a, Action::Status { .. }))
        else {
            panic!()
        };
        assert_eq!(status["updateRevision"], new.as_str());
        assert_eq!(status["updatedReplicas"], 1);
        let pods = [pod(0, &new, true), pod(1, &new, true), pod(2, &new, true)];
        let p = plan(&s2, &pods, &[rev1, rev2], now());
        let Some(Action::Status { status, .. }) = p
            .actions
            .iter()
            .find(|a| matches!(a, Action::Status { .. }))
        else {
            panic!()
        };
        assert_eq!(status["currentRevision"], new.as_str());
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal() {
        let s = set(1, "v1");
        let (r, rev) = rev_for(&s, 1);
        let pods = [pod(0, &r, true), pod(1, &r, true), pod(2, &r, true)];
        assert_eq!(deleted(&plan(&s, &pods, &[rev], now())), ["db-2"]);
    }
}
