//! Helpers shared by the simulated controllers: upstream's hashing of pod templates, int-or-
//! percent arithmetic, owner references, conditions and pod readiness.

use serde_json::{Map, Value, json};

use crate::meta;

/// FNV-1a, 32 bits (what `controller.ComputeHash` feeds its template dump into).
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString`: each byte mapped onto an alphabet without vowels (no words).
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Drop what the API server's typed round trip drops anyway (nulls, empty maps and lists), so
/// two templates compare like upstream's `apiequality.Semantic.DeepEqual` of the Go structs.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let n = normalize(x);
                let empty = match &n {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty() && k != "resources" && k != "securityContext",
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// A pod template without the `pod-template-hash` label, normalised.
pub fn template_without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(POD_TEMPLATE_HASH);
    }
    normalize(&t)
}

/// `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    meta::json_eq(&template_without_hash(a), &template_without_hash(b))
}

/// The stable hash of a template (with a collision count), encoded as upstream encodes
/// `ComputeHash`: a decimal number mapped through `SafeEncodeString`.
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut bytes =
        serde_json::to_vec(&sorted(&template_without_hash(template))).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend_from_slice(collision_count.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Keys sorted (serde_json keeps insertion order here).
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => {
                let x = p * total;
                if round_up {
                    (x + 99).div_euclid(100)
                } else {
                    x.div_euclid(100)
                }
            }
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

pub fn int_at(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

pub fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    meta::str_at(v, p)
}

/// The controller owner reference of an object: (kind, name, uid).
pub fn controller_of(v: &Value) -> Option<(String, String, String)> {
    v.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("kind"), s("name"), s("uid"))
        })
}

pub fn owner_ref(api_version: &str, kind: &str, owner: &Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta::name(owner),
        "uid": meta::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// An `ObjectReference` to an object (events' `involvedObject`).
pub fn object_ref(api_version: &str, kind: &str, v: &Value) -> Value {
    json!({
        "kind": kind,
        "namespace": meta::namespace(v),
        "name": meta::name(v),
        "uid": meta::uid(v),
        "apiVersion": api_version,
        "resourceVersion": meta::resource_version(v),
    })
}

pub fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")?.get(key)?.as_str()
}

pub fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/labels")?.get(key)?.as_str()
}

pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Set a condition, keeping `lastTransitionTime` when its status did not change
/// (`SetDeploymentCondition` / `UpdatePodCondition` semantics); returns the new list.
pub fn set_condition(status: &mut Value, mut cond: Value, now: &str, update_time: bool) {
    let Some(m) = status.as_object_mut() else {
        return;
    };
    let conds = m
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conds.is_array() {
        *conds = Value::Array(Vec::new());
    }
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    let t = cond.get("type").cloned().unwrap_or(Value::Null);
    let existing = list.iter().position(|c| c.get("type") == Some(&t));
    if let Some(i) = existing {
        let old = &list[i];
        let same_status = old.get("status") == cond.get("status");
        let same_reason = old.get("reason") == cond.get("reason");
        if same_status && same_reason && old.get("message") == cond.get("message") {
            return;
        }
        if same_status {
            if let Some(ltt) = old.get("lastTransitionTime").cloned() {
                cond["lastTransitionTime"] = ltt;
            }
        } else {
            cond["lastTransitionTime"] = json!(now);
        }
        if update_time {
            cond["lastUpdateTime"] = json!(now);
        }
        list[i] = cond;
    } else {
        cond["lastTransitionTime"] = json!(now);
        if update_time {
            cond["lastUpdateTime"] = json!(now);
        }
        list.push(cond);
    }
}

/// Whether a pod has `Ready=True`.
pub fn pod_ready(pod: &Value) -> bool {
    pod.get("status")
        .and_then(|s| condition(s, "Ready"))
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// `IsPodAvailable`: ready for at least `min_ready` seconds at `now` (seconds since epoch).
pub fn pod_available(pod: &Value, min_ready: i64, now: i64) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = pod
        .get("status")
        .and_then(|s| condition(s, "Ready"))
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second());
    since.is_some_and(|s| s + min_ready <= now)
}

/// When a ready pod becomes available (seconds since epoch), if it is not yet.
pub fn pod_available_at(pod: &Value, min_ready: i64) -> Option<i64> {
    if !pod_ready(pod) || min_ready <= 0 {
        return None;
    }
    pod.get("status")
        .and_then(|s| condition(s, "Ready"))
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second() + min_ready)
}

/// Active pods: not being deleted, not finished (`FilterActivePods`).
pub fn pod_active(pod: &Value) -> bool {
    !meta::is_deleting(pod) && !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

pub fn selector_matches(selector: Option<&Value>, v: &Value) -> bool {
    match selector.map(crate::selector::LabelSelector::from_object) {
        Some(Ok(s)) => s.matches(meta::labels(v)),
        _ => false,
    }
}

/// Pod labels/annotations/spec from a template, with extra labels.
pub fn pod_from_template(
    template: &Value,
    namespace: &str,
    extra_labels: &[(&str, &str)],
    owner: Value,
) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut metadata =
        json!({"namespace": namespace, "labels": labels, "ownerReferences": [owner]});
    if let Some(a) = template
        .pointer("/metadata/annotations")
        .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
    {
        metadata["annotations"] = a.clone();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounding_is_upstreams() {
        assert_eq!(scaled_value(Some(&json!("25%")), 3, true), 1);
        assert_eq!(scaled_value(Some(&json!("25%")), 3, false), 0);
        assert_eq!(scaled_value(Some(&json!("25%")), 10, true), 3);
        assert_eq!(scaled_value(Some(&json!("25%")), 10, false), 2);
        assert_eq!(scaled_value(Some(&json!(2)), 10, false), 2);
    }

    #[test]
    fn hashes_are_stable_and_ignore_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}});
        let mut b = a.clone();
        b["metadata"]["labels"][POD_TEMPLATE_HASH] = json!("abc");
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(equal_ignore_hash(&a, &b));
        assert!(
            template_hash(&a, 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let mut c = a.clone();
        c["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": "now"});
        assert!(!equal_ignore_hash(&a, &c));
    }
}
