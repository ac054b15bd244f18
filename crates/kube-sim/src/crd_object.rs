//! What the write pipeline needs to know about a CustomResourceDefinition object itself: how a
//! create is prepared, the cleanup finalizer a deletion adds, and the `Terminating` condition.
//! Pure functions on the JSON object, below both the pipeline (`ops`) and the CRD controllers
//! (`crd`, `controllers`) that write through it, so neither of those has to import the other
//! for them.

use serde_json::{Value, json};

use crate::meta;
use crate::schema_api::default_crd;
use crate::store::Gr;

/// The finalizer the apiextensions server adds to a deleted CRD until its instances are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub fn crd_gr() -> Gr {
    Gr::new("apiextensions.k8s.io", "customresourcedefinitions")
}

/// `PrepareForCreate` + defaulting.
pub fn prepare_create(obj: &mut Value) {
    default_crd(obj);
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
}

/// Set condition `type_`, keeping its `lastTransitionTime` when the status does not flip.
pub fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let now = meta::now_rfc3339();
    match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)) {
        Some(c) => {
            let same = c.get("status").and_then(Value::as_str) == Some(status);
            let ltt = if same {
                c.get("lastTransitionTime").cloned().unwrap_or(json!(now))
            } else {
                json!(now)
            };
            *c = json!({"type": type_, "status": status, "lastTransitionTime": ltt, "reason": reason, "message": message});
        }
        None => conds.push(json!({"type": type_, "status": status, "lastTransitionTime": now, "reason": reason, "message": message})),
    }
}

/// Add (or update) the `Terminating` condition.
pub fn mark_terminating(crd: &mut Value, in_progress: bool) {
    let mut conds = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if in_progress {
        set_condition(
            &mut conds,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    } else {
        set_condition(
            &mut conds,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
    if let Some(m) = crd.as_object_mut() {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            s.insert("conditions".into(), Value::Array(conds));
        }
    }
}
