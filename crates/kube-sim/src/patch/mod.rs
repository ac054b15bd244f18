//! Patch semantics: JSON patch, merge patch, strategic merge patch, server-side apply.
//!
//! Everything here is pure: functions over [`serde_json::Value`], no I/O, no clock (callers pass
//! the time in). The core decides which function a request needs from its `Content-Type`:
//!
//! | Content-Type | function | upstream |
//! |---|---|---|
//! | `application/json-patch+json` | [`json_patch`] | `gopkg.in/evanphx/json-patch.v4` v4.12.0 `Patch.Apply` |
//! | `application/merge-patch+json` | [`merge_patch_bytes`] / [`merge_patch`] | same module, `MergePatch` |
//! | `application/strategic-merge-patch+json` | [`strategic_merge_patch`] | apimachinery `strategicpatch.StrategicMergeMapPatch` |
//! | `application/apply-patch+yaml` | [`ssa::apply`] | apimachinery `managedfields` + structured-merge-diff v4.4.2 |
//!
//! Every non-apply write also calls [`ssa::track_update`] so that `metadata.managedFields` records
//! who changed what. Errors map onto upstream statuses through [`PatchError::to_status`].

use serde_json::Value;

use crate::error::StatusError;

mod fieldpath;
mod json_patch;
mod merge;
mod schema;
mod smp;
pub mod ssa;

pub use json_patch::{MAX_JSON_PATCH_OPS, json_patch};
pub use merge::{merge_patch, merge_patch_bytes};
pub use schema::{BuiltinSchema, NoSchema, OpenApiSchema, builtin_merge_schema};
pub use smp::strategic_merge_patch;
pub use ssa::{
    ApplyOptions, UpdateOptions, apply, manager_name, reset_managed_fields_request, track_update,
};

/// Why a patch could not be applied. [`PatchError::to_status`] gives the upstream response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is unusable (bad JSON, wrong shape, bad directive format):
    /// 400 BadRequest with this message.
    #[error("{0}")]
    Malformed(String),
    /// The patch is well-formed but does not apply to this object (JSON patch op failed, SMP
    /// list-of-lists...): 422 Invalid with upstream's generic message; the detail is only logged
    /// upstream (`NewGenericServerResponse` drops it), we keep it here for tests and logs.
    #[error("{0}")]
    Apply(String),
    /// More than [`MAX_JSON_PATCH_OPS`] operations: 413 RequestEntityTooLarge.
    #[error("The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {0}")]
    TooManyOps(usize),
    /// An error upstream does not translate into a `Status` (e.g. a missing SMP merge key): it
    /// surfaces as a 500 whose message is the Go error text and whose reason is empty.
    #[error("{0}")]
    Internal(String),
}

/// The message upstream sends for every 422 produced by `NewGenericServerResponse`.
pub const GENERIC_422_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

impl PatchError {
    /// The `Status` upstream answers with (apiserver `handlers/patch.go` `applyJSPatch`,
    /// `interpretStrategicMergePatchError`; apimachinery `errors.NewGenericServerResponse`).
    pub fn to_status(&self) -> StatusError {
        match self {
            PatchError::Malformed(m) => StatusError::bad_request(m.clone()),
            PatchError::Apply(_) => StatusError::new(422, "Invalid", GENERIC_422_MESSAGE)
                .with_details(serde_json::json!({})),
            PatchError::TooManyOps(_) => StatusError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: {self}"),
            ),
            PatchError::Internal(m) => StatusError::new(500, "", m.clone()),
        }
    }
}

/// How a list field merges (strategic merge patch) and is owned (server-side apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSemantics {
    /// Replaced wholesale; owned as one leaf (`x-kubernetes-list-type: atomic`, no `patchStrategy`).
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`, SMP `patchStrategy: merge` on a primitive list).
    Set,
    /// Items identified by key fields (`x-kubernetes-list-type: map` + `x-kubernetes-list-map-keys`).
    /// Strategic merge patch uses the first key as its `patchMergeKey`.
    Map { keys: Vec<String> },
}

/// Where list semantics come from. `path` holds field names from the object root; list items are
/// addressed by the list's field name (so `spec.template.spec.containers[*].env` is
/// `["spec", "template", "spec", "containers", "env"]`).
pub trait MergeSchema {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics;

    /// Whether the map at `path` has `patchStrategy: retainKeys` (SMP only; informational,
    /// the `$retainKeys` directive is honoured wherever it appears, as upstream does).
    fn retain_keys(&self, _path: &[&str]) -> bool {
        false
    }
}

impl<T: MergeSchema + ?Sized> MergeSchema for Box<T> {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics {
        (**self).list_semantics(path)
    }
    fn retain_keys(&self, path: &[&str]) -> bool {
        (**self).retain_keys(path)
    }
}

/// Go's `%v` rendering of a decoded JSON value, used where upstream formats maps in messages
/// (`map[a:1 b:x]`, keys sorted, `<nil>` for null).
pub(crate) fn go_fmt_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_fmt_v).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", k, go_fmt_v(&m[k.as_str()])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go prints a decoded JSON number (a float64) with `%v`: integers without a fraction,
/// large/small magnitudes in exponent form.
fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        let f = n.as_f64().unwrap_or(0.0);
        if f.abs() < 1e21 {
            return n.to_string();
        }
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f != 0.0 && (f.abs() < 1e-4 || f.abs() >= 1e21) {
        let s = format!("{f:e}");
        // Rust: 1e21 / 1.5e-5 ; Go: 1e+21 / 1.5e-05
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                let digits = if digits.len() < 2 {
                    format!("0{digits}")
                } else {
                    digits.to_string()
                };
                format!("{m}e{sign}{digits}")
            }
            None => s,
        }
    } else if f.fract() == 0.0 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// JSON equality with numbers compared by value (`1` == `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            x.as_f64() == y.as_f64()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_fmt_matches_go_printing() {
        assert_eq!(go_fmt_v(&json!({"b": "x", "a": 1})), "map[a:1 b:x]");
        assert_eq!(go_fmt_v(&json!([1, "a", null])), "[1 a <nil>]");
        assert_eq!(go_fmt_v(&json!(1.5)), "1.5");
        assert_eq!(go_fmt_v(&json!(2.0)), "2");
    }

    #[test]
    fn statuses_match_upstream() {
        let s = PatchError::Apply("x".into()).to_status();
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
        assert_eq!(s.message, GENERIC_422_MESSAGE);
        assert_eq!(s.to_status()["details"], json!({}));
        let s = PatchError::TooManyOps(10001).to_status();
        assert_eq!(s.code, 413);
        assert_eq!(
            s.message,
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let s = PatchError::Malformed("Invalid JSON Patch".into()).to_status();
        assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
    }
}
