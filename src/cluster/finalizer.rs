//! The operator's finalizer (`agentlattice.io/cleanup`): the one place it is added and removed.
//!
//! Both use kube-runtime's JSON patches — a `test` of the list, then `add` or `remove` — so a
//! patch based on a list that changed meanwhile fails instead of duplicating the finalizer
//! (Kubernetes does not deduplicate them) or removing another controller's. Unlike kube-runtime's
//! finalizer helper, the reconcile that adds it goes on with the patched object instead of ending
//! and waiting for the watch (design §6); the finalizer is on before any remote call.

use kube::core::ObjectMeta;
use serde_json::json;

use crate::crd::FINALIZER;
pub use crate::crd::has_finalizer as present;

/// The patch that adds the finalizer, `None` if it is there already.
pub fn add(meta: &ObjectMeta) -> Option<json_patch::Patch> {
    if present(meta) {
        return None;
    }
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let patch = if finalizers.is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    serde_json::from_value(patch).ok()
}

/// The patch that removes the finalizer, `None` if it is not there.
pub fn remove(meta: &ObjectMeta) -> Option<json_patch::Patch> {
    let index = meta
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(finalizers: Option<&[&str]>) -> ObjectMeta {
        ObjectMeta {
            finalizers: finalizers.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        }
    }

    fn apply(meta: &ObjectMeta, patch: &json_patch::Patch) -> Result<Vec<String>, String> {
        let mut doc = serde_json::json!({"metadata": {"finalizers": meta.finalizers}});
        json_patch::patch(&mut doc, patch).map_err(|e| e.to_string())?;
        Ok(serde_json::from_value(doc["metadata"]["finalizers"].clone()).unwrap_or_default())
    }

    #[test]
    fn added_once_after_the_others_and_removed_alone() {
        let none = meta(None);
        assert_eq!(apply(&none, &add(&none).unwrap()).unwrap(), [FINALIZER]);
        let other = meta(Some(&["other/x"]));
        let with = apply(&other, &add(&other).unwrap()).unwrap();
        assert_eq!(with, ["other/x", FINALIZER]);
        let ours = meta(Some(&["other/x", FINALIZER, "other/y"]));
        assert!(add(&ours).is_none());
        assert_eq!(
            apply(&ours, &remove(&ours).unwrap()).unwrap(),
            ["other/x", "other/y"]
        );
        assert!(remove(&other).is_none());
    }

    #[test]
    fn a_patch_based_on_a_changed_list_fails() {
        let read = meta(Some(&["other/x"]));
        let now = meta(Some(&["other/x", "other/z"]));
        assert!(apply(&now, &add(&read).unwrap()).is_err());
        let read = meta(Some(&["other/x", FINALIZER]));
        let now = meta(Some(&[FINALIZER]));
        assert!(apply(&now, &remove(&read).unwrap()).is_err());
    }
}
