//! The Deployment controller (`pkg/controller/deployment`, 1.32): the new ReplicaSet (found by
//! template, created as `<name>-<hash>` with `pod-template-hash`), revisions and their
//! annotations, rolling updates within `maxSurge`/`maxUnavailable` (percentages rounded as
//! upstream: surge up, unavailable down), Recreate, proportional scaling, the revision history
//! limit, and status with `Progressing`/`Available` conditions and the progress deadline.
//!
//! Like upstream, one sync takes one step (create, scale up, or scale down) and reports status;
//! the resulting watch events bring the Deployment back for the next step.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::util::{
    DESIRED_REPLICAS, MAX_REPLICAS, POD_TEMPLATE_HASH, REVISION, REVISION_HISTORY, annotation,
    condition, equal_ignore_hash, int_at, owner_ref, scaled_value, set_condition, str_at,
    template_hash,
};
use super::{Action, DEPLOYMENTS, EventSpec, Plan, REPLICA_SETS};
use crate::meta;

const COMPONENT: &str = "deployment-controller";

/// Annotations never copied from a Deployment to its ReplicaSets (`annotationsToSkip`).
const SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

fn replicas(v: &Value) -> i64 {
    int_at(v, "/spec/replicas")
}

fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn rolling(d: &Value) -> bool {
    str_at(d, "/spec/strategy/type") != "Recreate"
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable).
pub fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = replicas(d);
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled_value(ru.and_then(|r| r.get("maxSurge")), desired, true);
    let mut unavailable = scaled_value(ru.and_then(|r| r.get("maxUnavailable")), desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// `MaxUnavailable`.
pub fn max_unavailable(d: &Value) -> i64 {
    if !rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// `MaxSurge`.
pub fn max_surge(d: &Value) -> i64 {
    if !rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

fn sum(rss: &[Value], p: &str) -> i64 {
    rss.iter().map(|r| int_at(r, p)).sum()
}

fn created(rs: &Value) -> (String, String) {
    (
        str_at(rs, "/metadata/creationTimestamp").to_string(),
        meta::name(rs).to_string(),
    )
}

fn d_ref(d: &Value) -> Value {
    super::util::object_ref("apps/v1", "Deployment", d)
}

struct Sync<'a> {
    d: &'a Value,
    ns: String,
    plan: Plan,
    now: String,
}

impl Sync<'_> {
    fn event(&mut self, reason: &'static str, message: String) {
        self.plan.actions.push(Action::Event(EventSpec {
            namespace: self.ns.clone(),
            involved: d_ref(self.d),
            type_: "Normal",
            reason,
            message,
            component: COMPONENT,
            host: None,
        }));
    }

    /// `scaleReplicaSetAndRecordEvent`: resize (and refresh the replicas annotations).
    fn scale(&mut self, rs: &mut Value, to: i64) -> bool {
        let from = replicas(rs);
        let desired = replicas(self.d).to_string();
        let max = (replicas(self.d) + max_surge(self.d)).to_string();
        let annotations_stale = annotation(rs, DESIRED_REPLICAS) != Some(desired.as_str())
            || annotation(rs, MAX_REPLICAS) != Some(max.as_str());
        if from == to && !annotations_stale {
            return false;
        }
        self.plan.actions.push(Action::Patch {
            res: REPLICA_SETS,
            namespace: self.ns.clone(),
            name: meta::name(rs).to_string(),
            uid: meta::uid(rs).to_string(),
            patch: json!({"spec": {"replicas": to},
                          "metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}}}),
        });
        rs["spec"]["replicas"] = json!(to);
        if let Some(a) = rs
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.insert(DESIRED_REPLICAS.into(), json!(desired));
            a.insert(MAX_REPLICAS.into(), json!(max));
        }
        if from != to {
            let op = if to > from { "up" } else { "down" };
            self.event(
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {from} to {to}",
                    meta::name(rs)
                ),
            );
        }
        from != to
    }
}

/// `NewRSNewReplicas`.
fn new_rs_replicas(d: &Value, all: &[Value], new_rs: Option<&Value>) -> i64 {
    let current_new = new_rs.map(replicas).unwrap_or(0);
    if !rolling(d) {
        return replicas(d);
    }
    let current = sum(all, "/spec/replicas");
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return current_new;
    }
    let up = (max_total - current).min(replicas(d) - current_new);
    current_new + up.max(0)
}

fn copied_annotations(d: &Value) -> Map<String, Value> {
    d.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !SKIP.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// One sync of a Deployment given the ReplicaSets it controls.
pub fn plan(d: &Value, owned: &[Value], now: Timestamp) -> Plan {
    let now_s = meta::format_time(now);
    let mut s = Sync {
        d,
        ns: meta::namespace(d).to_string(),
        plan: Plan::default(),
        now: now_s,
    };
    let mut rss: Vec<Value> = owned
        .iter()
        .filter(|r| !meta::is_deleting(r))
        .cloned()
        .collect();
    rss.sort_by_key(created);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut new_idx = rss.iter().position(|r| {
        equal_ignore_hash(
            r.pointer("/spec/template").unwrap_or(&Value::Null),
            &template,
        )
    });
    let mut status = d.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    if meta::is_deleting(d) {
        return finish(s, d, &rss, new_idx, status, now);
    }
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    // A scaling event: an active set was sized for another replica count.
    let scaling = rss.iter().any(|r| {
        replicas(r) > 0
            && annotation(r, DESIRED_REPLICAS)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x != replicas(d))
    });
    if paused || scaling {
        scale(&mut s, &mut rss, new_idx);
        return finish(s, d, &rss, new_idx, status, now);
    }
    // getNewReplicaSetsAndSyncRevision.
    let max_old_revision = rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, r)| revision(r))
        .max()
        .unwrap_or(0);
    let new_revision = (max_old_revision + 1).to_string();
    let mut d_annotations = Map::new();
    match new_idx {
        Some(i) => {
            let rs = &mut rss[i];
            let mut ann = copied_annotations(d);
            ann.retain(|k, v| annotation(rs, k) != v.as_str());
            let old_rev = annotation(rs, REVISION).unwrap_or("").to_string();
            if old_rev.parse::<i64>().unwrap_or(0) < max_old_revision + 1 {
                ann.insert(REVISION.into(), json!(new_revision));
                if !old_rev.is_empty() {
                    let history = match annotation(rs, REVISION_HISTORY) {
                        Some(h) if !h.is_empty() => format!("{h},{old_rev}"),
                        _ => old_rev.clone(),
                    };
                    ann.insert(REVISION_HISTORY.into(), json!(history));
                }
            }
            let min_ready_stale = rs.pointer("/spec/minReadySeconds")
                != d.pointer("/spec/minReadySeconds")
                && int_at(rs, "/spec/minReadySeconds") != int_at(d, "/spec/minReadySeconds");
            if !ann.is_empty() || min_ready_stale {
                let mut patch = json!({"metadata": {"annotations": Value::Object(ann.clone())}});
                if min_ready_stale {
                    patch["spec"] = json!({"minReadySeconds": int_at(d, "/spec/minReadySeconds")});
                }
                s.plan.actions.push(Action::Patch {
                    res: REPLICA_SETS,
                    namespace: s.ns.clone(),
                    name: meta::name(rs).to_string(),
                    uid: meta::uid(rs).to_string(),
                    patch,
                });
                if let Some(m) = rs.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    let a = m.entry("annotations").or_insert_with(|| json!({}));
                    for (k, v) in ann {
                        a[k] = v;
                    }
                }
            }
            let rev = annotation(rs, REVISION).unwrap_or("").to_string();
            if annotation(d, REVISION) != Some(rev.as_str()) {
                d_annotations.insert(REVISION.into(), json!(rev));
            }
            if condition(&status, "Progressing").is_none() && has_deadline(d) {
                set_condition(
                    &mut status,
                    json!({"type": "Progressing", "status": "True", "reason": "FoundNewReplicaSet",
                           "message": format!("Found new replica set {}", go_q(meta::name(rs)))}),
                    &s.now,
                    true,
                );
            }
        }
        None => {
            let create_now = rolling(d)
                || rss
                    .iter()
                    .all(|r| replicas(r) == 0 && int_at(r, "/status/replicas") == 0);
            if create_now {
                let count = int_at(d, "/status/collisionCount");
                let hash = template_hash(&template, count);
                let name = format!("{}-{hash}", meta::name(d));
                let count_new = new_rs_replicas(d, &rss, None);
                let mut t = template.clone();
                t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut ann = copied_annotations(d);
                ann.insert(REVISION.into(), json!(new_revision));
                ann.insert(DESIRED_REPLICAS.into(), json!(replicas(d).to_string()));
                ann.insert(
                    MAX_REPLICAS.into(),
                    json!((replicas(d) + max_surge(d)).to_string()),
                );
                let mut spec = json!({"replicas": count_new, "selector": selector, "template": t});
                if int_at(d, "/spec/minReadySeconds") > 0 {
                    spec["minReadySeconds"] = json!(int_at(d, "/spec/minReadySeconds"));
                }
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": name,
                        "namespace": s.ns,
                        "labels": t["metadata"]["labels"].clone(),
                        "annotations": ann,
                        "ownerReferences": [owner_ref("apps/v1", "Deployment", d)],
                    },
                    "spec": spec,
                });
                s.plan.actions.push(Action::Create {
                    res: REPLICA_SETS,
                    namespace: s.ns.clone(),
                    object: rs,
                });
                if count_new > 0 {
                    s.event(
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {count_new}"),
                    );
                }
                d_annotations.insert(REVISION.into(), json!(new_revision));
                if has_deadline(d) {
                    set_condition(
                        &mut status,
                        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                               "message": format!("Created new replica set {}", go_q(&name))}),
                        &s.now,
                        true,
                    );
                }
                patch_annotations(&mut s, d, d_annotations);
                // The new set is not in `rss` yet: report status now, step on its event.
                return finish(s, d, &rss, None, status, now);
            }
        }
    }
    patch_annotations(&mut s, d, d_annotations);
    if rolling(d) {
        let all: Vec<Value> = rss.clone();
        if let Some(i) = new_idx {
            // reconcileNewReplicaSet.
            let target = if replicas(&rss[i]) > replicas(d) {
                replicas(d)
            } else {
                new_rs_replicas(d, &all, Some(&rss[i]))
            };
            let mut rs = rss[i].clone();
            if s.scale(&mut rs, target) && target > replicas(&rss[i]) {
                rss[i] = rs;
                return finish(s, d, &rss, new_idx, status, now);
            }
            rss[i] = rs;
            // reconcileOldReplicaSets.
            if reconcile_old(&mut s, &mut rss, i) {
                return finish(s, d, &rss, new_idx, status, now);
            }
        }
    } else {
        // rolloutRecreate.
        let old_active = rss
            .iter()
            .enumerate()
            .any(|(j, r)| Some(j) != new_idx && replicas(r) > 0);
        if old_active {
            for (j, rs) in rss.iter_mut().enumerate() {
                if Some(j) != new_idx && replicas(rs) > 0 {
                    s.scale(rs, 0);
                }
            }
            return finish(s, d, &rss, new_idx, status, now);
        }
        let old_running = rss
            .iter()
            .enumerate()
            .any(|(j, r)| Some(j) != new_idx && int_at(r, "/status/replicas") > 0);
        if old_running {
            return finish(s, d, &rss, new_idx, status, now);
        }
        if let Some(i) = new_idx {
            let mut rs = rss[i].clone();
            let scaled = s.scale(&mut rs, replicas(d));
            rss[i] = rs;
            if scaled {
                return finish(s, d, &rss, new_idx, status, now);
            }
        }
    }
    // Complete: drop history beyond revisionHistoryLimit.
    let probe = calculate(d, &rss, new_idx);
    if complete(d, &probe) {
        cleanup(&mut s, d, &rss, new_idx);
    }
    new_idx = new_idx.filter(|i| *i < rss.len());
    finish(s, d, &rss, new_idx, status, now)
}

fn go_q(s: &str) -> String {
    crate::error::go_quote(s)
}

fn has_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|p| p != i64::from(i32::MAX))
}

fn patch_annotations(s: &mut Sync, d: &Value, ann: Map<String, Value>) {
    if ann.is_empty() {
        return;
    }
    s.plan.actions.push(Action::Patch {
        res: DEPLOYMENTS,
        namespace: s.ns.clone(),
        name: meta::name(d).to_string(),
        uid: meta::uid(d).to_string(),
        patch: json!({"metadata": {"annotations": ann}}),
    });
}

/// `reconcileOldReplicaSets` (cleanup of unhealthy replicas, then scale down within
/// `maxUnavailable`); whether anything was scaled down.
fn reconcile_old(s: &mut Sync, rss: &mut [Value], new_i: usize) -> bool {
    let d = s.d;
    let old_idx: Vec<usize> = (0..rss.len())
        .filter(|j| *j != new_i && replicas(&rss[*j]) > 0)
        .collect();
    let old_count: i64 = old_idx.iter().map(|j| replicas(&rss[*j])).sum();
    if old_count == 0 {
        return false;
    }
    let all_count = sum(rss, "/spec/replicas");
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = replicas(&rss[new_i]) - int_at(&rss[new_i], "/status/availableReplicas");
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut total = 0;
    // cleanupUnhealthyReplicas.
    for &j in &old_idx {
        if total >= max_scaled_down {
            break;
        }
        let r = replicas(&rss[j]);
        let avail = int_at(&rss[j], "/status/availableReplicas");
        if r == 0 || r == avail {
            continue;
        }
        let down = (max_scaled_down - total).min(r - avail);
        let mut rs = rss[j].clone();
        s.scale(&mut rs, r - down);
        rss[j] = rs;
        total += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate.
    let available = sum(rss, "/status/availableReplicas");
    let mut scaled = 0;
    if available > min_available {
        let budget = available - min_available;
        for &j in &old_idx {
            if scaled >= budget {
                break;
            }
            let r = replicas(&rss[j]);
            if r == 0 {
                continue;
            }
            let down = r.min(budget - scaled);
            let mut rs = rss[j].clone();
            s.scale(&mut rs, r - down);
            rss[j] = rs;
            scaled += down;
        }
    }
    total + scaled > 0
}

/// `scale`: a replica count change outside a rollout (and paused Deployments).
fn scale(s: &mut Sync, rss: &mut [Value], new_idx: Option<usize>) {
    let d = s.d;
    let active: Vec<usize> = (0..rss.len()).filter(|j| replicas(&rss[*j]) > 0).collect();
    // FindActiveOrLatest.
    let single = match active.len() {
        1 => Some(active[0]),
        0 => new_idx.or_else(|| (!rss.is_empty()).then(|| rss.len() - 1)),
        _ => None,
    };
    if let Some(j) = single {
        let mut rs = rss[j].clone();
        s.scale(&mut rs, replicas(d));
        rss[j] = rs;
        return;
    }
    if let Some(i) = new_idx
        && replicas(&rss[i]) == replicas(d)
        && int_at(&rss[i], "/status/availableReplicas") == replicas(d)
    {
        for j in active {
            if j != i {
                let mut rs = rss[j].clone();
                s.scale(&mut rs, 0);
                rss[j] = rs;
            }
        }
        return;
    }
    if !rolling(d) {
        return;
    }
    let total: i64 = active.iter().map(|j| replicas(&rss[*j])).sum();
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order = active.clone();
    // Larger first; ties: newer first when scaling up, older first when scaling down.
    order.sort_by(|a, b| {
        replicas(&rss[*b]).cmp(&replicas(&rss[*a])).then_with(|| {
            if to_add > 0 {
                created(&rss[*b]).cmp(&created(&rss[*a]))
            } else {
                created(&rss[*a]).cmp(&created(&rss[*b]))
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(usize, i64)> = Vec::new();
    for &j in &order {
        let r = replicas(&rss[j]);
        let mut size = r;
        if to_add != 0 && to_add != added {
            let fraction = if replicas(d) == 0 {
                -r
            } else {
                let before = super::util::annotation(&rss[j], MAX_REPLICAS)
                    .and_then(|m| m.parse::<i64>().ok())
                    .filter(|m| *m > 0)
                    .unwrap_or_else(|| int_at(d, "/status/replicas").max(1));
                let new_size = (r * (replicas(d) + max_surge(d))) as f64 / before as f64;
                new_size.round() as i64 - r
            };
            let allowed = to_add - added;
            let p = if to_add > 0 {
                fraction.min(allowed)
            } else {
                fraction.max(allowed)
            };
            size += p;
            added += p;
        }
        sizes.push((j, size));
    }
    for (k, (j, size)) in sizes.into_iter().enumerate() {
        let size = if k == 0 && to_add != 0 {
            (size + to_add - added).max(0)
        } else {
            size
        };
        let mut rs = rss[j].clone();
        s.scale(&mut rs, size);
        rss[j] = rs;
    }
}

fn cleanup(s: &mut Sync, d: &Value, rss: &[Value], new_idx: Option<usize>) {
    let Some(limit) = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
    else {
        return;
    };
    let mut old: Vec<&Value> = rss
        .iter()
        .enumerate()
        .filter(|(j, _)| Some(*j) != new_idx)
        .map(|(_, r)| r)
        .collect();
    let diff = old.len() as i64 - limit;
    if diff <= 0 {
        return;
    }
    old.sort_by_key(|r| (revision(r), created(r)));
    for rs in old.into_iter().take(diff as usize) {
        if int_at(rs, "/status/replicas") != 0
            || replicas(rs) != 0
            || int_at(rs, "/metadata/generation") > int_at(rs, "/status/observedGeneration")
        {
            continue;
        }
        s.plan.actions.push(Action::Delete {
            res: REPLICA_SETS,
            namespace: s.ns.clone(),
            name: meta::name(rs).to_string(),
            uid: meta::uid(rs).to_string(),
            grace: None,
        });
    }
}

/// `calculateStatus` without the conditions.
fn calculate(d: &Value, rss: &[Value], new_idx: Option<usize>) -> Value {
    let available = sum(rss, "/status/availableReplicas");
    let total = sum(rss, "/spec/replicas");
    let mut s = json!({
        "observedGeneration": int_at(d, "/metadata/generation"),
        "replicas": sum(rss, "/status/replicas"),
        "updatedReplicas": new_idx.map(|i| int_at(&rss[i], "/status/replicas")).unwrap_or(0),
        "readyReplicas": sum(rss, "/status/readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    });
    if let Some(c) = d.pointer("/status/collisionCount") {
        s["collisionCount"] = c.clone();
    }
    s
}

fn complete(d: &Value, s: &Value) -> bool {
    let r = replicas(d);
    int_at(s, "/updatedReplicas") == r
        && int_at(s, "/replicas") == r
        && int_at(s, "/availableReplicas") == r
        && int_at(s, "/observedGeneration") >= int_at(d, "/metadata/generation")
}

/// `syncRolloutStatus`: status, conditions, and when to look again for the deadline.
fn finish(
    mut s: Sync,
    d: &Value,
    rss: &[Value],
    new_idx: Option<usize>,
    base: Value,
    now: Timestamp,
) -> Plan {
    let mut status = calculate(d, rss, new_idx);
    status["conditions"] = base.get("conditions").cloned().unwrap_or(json!([]));
    let old_status = d.get("status").cloned().unwrap_or(json!({}));
    let new_rs_name = new_idx.map(|i| meta::name(&rss[i]).to_string());
    let available = int_at(&status, "/availableReplicas");
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                   "message": "Deployment has minimum availability."}),
            &s.now,
            true,
        );
    } else {
        set_condition(
            &mut status,
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                   "message": "Deployment does not have minimum availability."}),
            &s.now,
            true,
        );
    }
    // checkPausedConditions: a paused Deployment reports it and makes no progress estimate.
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let current = condition(&old_status, "Progressing").cloned();
    let was_paused = current
        .as_ref()
        .is_some_and(|c| str_at(c, "/reason") == "DeploymentPaused");
    if has_deadline(d) && paused && !was_paused {
        set_condition(
            &mut status,
            json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused",
                   "message": "Deployment is paused"}),
            &s.now,
            true,
        );
    } else if has_deadline(d) && !paused && was_paused {
        set_condition(
            &mut status,
            json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentResumed",
                   "message": "Deployment is resumed"}),
            &s.now,
            true,
        );
    }
    let deadline = has_deadline(d) && !paused;
    let complete_before = int_at(&status, "/replicas") == int_at(&status, "/updatedReplicas")
        && current
            .as_ref()
            .is_some_and(|c| str_at(c, "/reason") == "NewReplicaSetAvailable");
    let subject = |what: &str| match &new_rs_name {
        Some(n) => format!("ReplicaSet {} {what}", go_q(n)),
        None => format!("Deployment {} {what}", go_q(meta::name(d))),
    };
    if !has_deadline(d) {
        if let Some(list) = status["conditions"].as_array_mut() {
            list.retain(|c| str_at(c, "/type") != "Progressing");
        }
    } else if deadline && !complete_before {
        let old = |p: &str| int_at(&old_status, p);
        let progressing = int_at(&status, "/updatedReplicas") > old("/updatedReplicas")
            || (int_at(&status, "/replicas") - int_at(&status, "/updatedReplicas"))
                < (old("/replicas") - old("/updatedReplicas"))
            || int_at(&status, "/readyReplicas") > old("/readyReplicas")
            || int_at(&status, "/availableReplicas") > old("/availableReplicas");
        let cond = condition(&status, "Progressing").cloned();
        if complete(d, &status) && !was_paused {
            set_condition(
                &mut status,
                json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                       "message": subject("has successfully progressed.")}),
                &s.now,
                true,
            );
        } else if progressing {
            let mut c = json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                               "message": subject("is progressing."), "lastUpdateTime": s.now, "lastTransitionTime": s.now});
            if let Some(cur) = &cond
                && str_at(cur, "/status") == "True"
                && let Some(t) = cur.get("lastTransitionTime")
            {
                c["lastTransitionTime"] = t.clone();
            }
            if let Some(list) = status["conditions"].as_array_mut() {
                list.retain(|x| str_at(x, "/type") != "Progressing");
                list.push(c);
            }
        } else if let Some(c) = &cond {
            let reason = str_at(c, "/reason");
            let timed_out = reason == "ProgressDeadlineExceeded"
                || (reason != "NewReplicaSetAvailable"
                    && str_at(c, "/lastUpdateTime")
                        .parse::<Timestamp>()
                        .ok()
                        .is_some_and(|t| {
                            t.as_second() + int_at(d, "/spec/progressDeadlineSeconds")
                                < now.as_second()
                        }));
            if timed_out {
                set_condition(
                    &mut status,
                    json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": subject("has timed out progressing.")}),
                    &s.now,
                    true,
                );
            }
        }
    }
    // Stuck rollout: look again when the deadline passes (`requeueStuckDeployment`).
    if deadline
        && !complete(d, &status)
        && let Some(c) = condition(&status, "Progressing")
        && str_at(c, "/reason") != "ProgressDeadlineExceeded"
        && let Ok(t) = str_at(c, "/lastUpdateTime").parse::<Timestamp>()
    {
        let due = t.as_second() + int_at(d, "/spec/progressDeadlineSeconds") + 1;
        let wait = (due - now.as_second()).max(0) as u64;
        s.plan
            .requeue_min(Duration::from_secs(wait) + Duration::from_millis(100));
    }
    let zeroes = |v: &mut Value| {
        if let Some(m) = v.as_object_mut() {
            m.retain(|k, x| !(x.as_i64() == Some(0) && k != "observedGeneration"));
            if m.get("conditions")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                m.remove("conditions");
            }
        }
    };
    zeroes(&mut status);
    if !meta::json_eq(&status, &old_status) {
        s.plan.actions.push(Action::Status {
            res: DEPLOYMENTS,
            namespace: s.ns.clone(),
            name: meta::name(d).to_string(),
            uid: meta::uid(d).to_string(),
            status,
        });
    }
    s.plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, surge: Value, unavail: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}}})
    }

    fn rs_for(
        d: &Value,
        name: &str,
        rev: i64,
        replicas: i64,
        available: i64,
        created: &str,
    ) -> Value {
        let mut t = d["spec"]["template"].clone();
        t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(name);
        json!({"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created,
                            "annotations": {REVISION: rev.to_string(), DESIRED_REPLICAS: d["spec"]["replicas"].as_i64().unwrap().to_string(),
                                            MAX_REPLICAS: (d["spec"]["replicas"].as_i64().unwrap() + max_surge(d)).to_string()}},
               "spec": {"replicas": replicas, "template": t},
               "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available}})
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:10Z".parse().unwrap()
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        assert_eq!(fenceposts(&deploy(3, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(max_unavailable(&deploy(3, json!("25%"), json!("25%"))), 0);
        assert_eq!(fenceposts(&deploy(10, json!("25%"), json!("25%"))), (3, 2));
        assert_eq!(fenceposts(&deploy(4, json!(0), json!(0))), (0, 1));
    }

    #[test]
    fn first_sync_creates_the_new_replica_set() {
        let d = deploy(3, json!("25%"), json!("25%"));
        let p = plan(&d, &[], now());
        let Action::Create { object, .. } = &p.actions[0] else {
            panic!("{:?}", p.actions)
        };
        let name = object["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-"));
        let hash = &name[4..];
        assert_eq!(
            object["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH],
            hash
        );
        assert_eq!(
            object["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH],
            hash
        );
        assert_eq!(object["spec"]["replicas"], 3);
        assert_eq!(object["metadata"]["annotations"][REVISION], "1");
        assert!(p.actions.iter().any(|a| matches!(a, Action::Event(e) if e.message == format!("Scaled up replica set {name} from 0 to 3"))));
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!()
        };
        assert_eq!(
            condition(status, "Progressing").unwrap()["reason"],
            "NewReplicaSetCreated"
        );
    }

    #[test]
    fn rolling_update_respects_surge_then_scales_old_down() {
        // 3 replicas, surge 1, unavailable 0: new set may go to 1 while the old keeps 3.
        let d1 = deploy(3, json!("25%"), json!("25%"));
        let old = rs_for(&d1, "web-old", 1, 3, 3, "2026-01-01T00:00:00Z");
        let mut d2 = d1.clone();
        d2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
        let newer = rs_for(&d2, "web-new", 0, 0, 0, "2026-01-01T00:00:05Z");
        let p = plan(&d2, &[old.clone(), newer.clone()], now());
        let ups: Vec<(String, i64)> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { name, patch, .. } if patch.pointer("/spec/replicas").is_some() => {
                    Some((name.clone(), patch["spec"]["replicas"].as_i64().unwrap()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ups, [("web-new".to_string(), 1)]);
        // The new pod is available: one old replica may go.
        let newer = rs_for(&d2, "web-new", 2, 1, 1, "2026-01-01T00:00:05Z");
        let p = plan(&d2, &[old, newer], now());
        let downs: Vec<(String, i64)> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { name, patch, .. } if patch.pointer("/spec/replicas").is_some() => {
                    Some((name.clone(), patch["spec"]["replicas"].as_i64().unwrap()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(downs, [("web-old".to_string(), 2)]);
    }

    #[test]
    fn complete_rollout_reports_new_replica_set_available_and_prunes_history() {
        let mut d = deploy(2, json!(1), json!(0));
        d["spec"]["revisionHistoryLimit"] = json!(1);
        let cur = rs_for(&d, "web-c", 3, 2, 2, "2026-01-01T00:00:05Z");
        let mut o1 = rs_for(&d, "web-a", 1, 0, 0, "2026-01-01T00:00:01Z");
        o1["spec"]["template"]["spec"]["containers"][0]["image"] = json!("old1");
        let mut o2 = rs_for(&d, "web-b", 2, 0, 0, "2026-01-01T00:00:02Z");
        o2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("old2");
        d["metadata"]["annotations"] = json!({REVISION: "3"});
        d["status"] = json!({"conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:09Z"}]});
        let p = plan(&d, &[o1, o2, cur], now());
        assert!(
            p.actions
                .iter()
                .any(|a| matches!(a, Action::Delete { name, .. } if name == "web-a"))
        );
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::Delete { name, .. } if name == "web-b"))
        );
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!()
        };
        assert_eq!(
            condition(status, "Progressing").unwrap()["reason"],
            "NewReplicaSetAvailable"
        );
        assert_eq!(condition(status, "Available").unwrap()["status"], "True");
        assert_eq!(status["updatedReplicas"], 2);
    }

    #[test]
    fn stuck_rollout_times_out() {
        let mut d = deploy(1, json!(1), json!(0));
        d["spec"]["progressDeadlineSeconds"] = json!(2);
        let cur = rs_for(&d, "web-c", 1, 1, 0, "2026-01-01T00:00:05Z");
        d["metadata"]["annotations"] = json!({REVISION: "1"});
        d["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:05Z", "lastTransitionTime": "2026-01-01T00:00:05Z"}]});
        let p = plan(&d, &[cur], now());
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!("{:?}", p.actions)
        };
        let c = condition(status, "Progressing").unwrap();
        assert_eq!(c["reason"], "ProgressDeadlineExceeded");
        assert_eq!(
            c["message"],
            "ReplicaSet \"web-c\" has timed out progressing."
        );
    }

    #[test]
    fn paused_rollouts_report_it_and_never_time_out() {
        let mut d = deploy(1, json!(1), json!(0));
        d["spec"]["progressDeadlineSeconds"] = json!(1);
        d["spec"]["paused"] = json!(true);
        let cur = rs_for(&d, "web-c", 1, 1, 0, "2026-01-01T00:00:05Z");
        d["metadata"]["annotations"] = json!({REVISION: "1"});
        d["status"] = json!({"conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:00Z"}]});
        let p = plan(&d, std::slice::from_ref(&cur), now());
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!("{:?}", p.actions)
        };
        assert_eq!(
            condition(status, "Progressing").unwrap()["reason"],
            "DeploymentPaused"
        );
        assert_eq!(p.requeue, None);
        d["spec"]["paused"] = json!(false);
        d["status"] = status.clone();
        let p = plan(&d, &[cur], now());
        let Some(Action::Status { status, .. }) = p.actions.last() else {
            panic!("{:?}", p.actions)
        };
        assert_eq!(
            condition(status, "Progressing").unwrap()["reason"],
            "DeploymentResumed"
        );
    }

    #[test]
    fn scaling_event_resizes_the_only_active_set() {
        let d = deploy(3, json!("25%"), json!("25%"));
        let cur = rs_for(&d, "web-c", 1, 3, 3, "2026-01-01T00:00:05Z");
        let mut d5 = d.clone();
        d5["spec"]["replicas"] = json!(5);
        let p = plan(&d5, &[cur], now());
        assert!(
            p.actions.iter().any(
                |a| matches!(a, Action::Patch { patch, .. } if patch["spec"]["replicas"] == 5)
            )
        );
    }
}
