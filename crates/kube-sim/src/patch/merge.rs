//! RFC 7386 JSON merge patch as `evanphx/json-patch` v4.12.0 `MergePatch` implements it.
//!
//! Objects merge recursively, `null` deletes a member, anything else (arrays included) replaces.
//! Values that land where the document had nothing (or `null`) are stored with their `null`
//! members pruned, recursively; nulls directly inside arrays are kept (v4's `pruneAryNulls`).
//! Key order: existing members keep their position, new members are appended.

use serde_json::{Map, Value};

use super::PatchError;

/// `jsonpatch.MergePatch(doc, patch)` on already-parsed values. Never fails: a non-object patch
/// replaces the document (RFC 7386). Use [`merge_patch_bytes`] for the request body, which also
/// reproduces upstream's rejection of `null` and scalar patches.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => match doc {
            Value::Object(d) => {
                let mut d = d.clone();
                merge_docs(&mut d, p);
                Value::Object(d)
            }
            _ => {
                let mut p = patch.clone();
                prune_nulls(&mut p);
                p
            }
        },
        Value::Array(_) => {
            let mut p = patch.clone();
            prune_nulls(&mut p);
            p
        }
        other => other.clone(),
    }
}

/// The merge patch request body as upstream handles it: a JSON syntax error, `null` or a scalar
/// patch → [`PatchError::Malformed`]`("Invalid JSON Patch")` (400, `jsonpatch.ErrBadJSONPatch`).
pub fn merge_patch_bytes(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let bad = || PatchError::Malformed("Invalid JSON Patch".to_string());
    let p: Value = serde_json::from_slice(patch).map_err(|_| bad())?;
    match p {
        Value::Object(_) | Value::Array(_) => Ok(merge_patch(doc, &p)),
        _ => Err(bad()),
    }
}

fn merge_docs(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            doc.shift_remove(k);
            continue;
        }
        match doc.get_mut(k) {
            Some(cur) if !cur.is_null() => merge_value(cur, v),
            _ => {
                let mut v = v.clone();
                prune_nulls(&mut v);
                doc.insert(k.clone(), v);
            }
        }
    }
}

/// v4 `merge(cur, patch)`: a non-object `cur` is replaced by the pruned patch; a non-object patch
/// replaces an object `cur` as is.
fn merge_value(cur: &mut Value, patch: &Value) {
    match (cur.as_object_mut(), patch) {
        (Some(c), Value::Object(p)) => merge_docs(c, p),
        (Some(_), _) => *cur = patch.clone(),
        (None, _) => {
            let mut p = patch.clone();
            prune_nulls(&mut p);
            *cur = p;
        }
    }
}

fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                prune_nulls(v);
            }
        }
        Value::Array(a) => {
            for v in a.iter_mut() {
                prune_nulls(v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386 Appendix A, every row.
    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (i, (doc, patch, want)) in cases.iter().enumerate() {
            assert_eq!(&merge_patch(doc, patch), want, "case {i}");
        }
    }

    #[test]
    fn arrays_keep_nulls_but_objects_in_them_are_pruned() {
        let got = merge_patch(&json!({}), &json!({"a":[null,{"x":null,"y":1}]}));
        assert_eq!(got, json!({"a":[null,{"y":1}]}));
    }

    #[test]
    fn kubectl_annotate_and_key_order() {
        let doc = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"a":"1"}},"data":{"x":"y"}});
        let got = merge_patch(&doc, &json!({"metadata":{"annotations":{"foo":"bar"}}}));
        assert_eq!(
            serde_json::to_string(&got).unwrap_or_default(),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"a":"1","foo":"bar"}},"data":{"x":"y"}}"#
        );
        // Deleting keeps the remaining order.
        let got = merge_patch(&json!({"a":1,"b":2,"c":3}), &json!({"a":null}));
        assert_eq!(
            serde_json::to_string(&got).unwrap_or_default(),
            r#"{"b":2,"c":3}"#
        );
    }

    #[test]
    fn bytes_variant_rejects_like_upstream() {
        let doc = json!({"a":1});
        for bad in [&b"null"[..], b"\"x\"", b"3", b"{", b""] {
            assert_eq!(
                merge_patch_bytes(&doc, bad),
                Err(PatchError::Malformed("Invalid JSON Patch".into())),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            merge_patch_bytes(&doc, b"{\"b\":2}"),
            Ok(json!({"a":1,"b":2}))
        );
    }
}
