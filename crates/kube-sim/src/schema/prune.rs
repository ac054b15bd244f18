//! Pruning, null removal and defaulting.
//!
//! Sources (apiextensions-apiserver v0.32.4): `pkg/apiserver/schema/pruning/algorithm.go`,
//! `pkg/apiserver/schema/defaulting/{algorithm,prunenulls}.go`,
//! `pkg/apiserver/schema/objectmeta/{coerce,algorithm}.go`, and
//! `pkg/apiserver/customresource_handler.go` (`unstructuredSchemaCoercer.apply`, which runs
//! them in this order: ObjectMeta round-trip, prune, drop nulls, coerce embedded metadata).

use serde_json::Value;

use super::Node;
use super::names::coerce_object_meta;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn append_key(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// The whole decode-time pipeline for a resource root. Returns the unknown field paths.
pub(crate) fn prune_object(root: &Node, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(meta) = obj.get_mut("metadata")
        && meta.is_object()
    {
        unknown.extend(coerce_object_meta(meta, "metadata"));
    }
    let mut pruned = Vec::new();
    prune_value(obj, Some(root), true, &mut pruned, "");
    pruned.sort();
    unknown.extend(pruned);
    prune_nulls(obj, Some(root));
    let mut coerced = Vec::new();
    coerce_embedded(obj, root, "", &mut coerced);
    coerced.sort();
    unknown.extend(coerced);
    unknown
}

/// `prune(x, s, opts)`; `force_embedded` is the resource-root clone with XEmbeddedResource set.
pub(crate) fn prune_value(
    x: &mut Value,
    s: Option<&Node>,
    force_embedded: bool,
    unknown: &mut Vec<String>,
    path: &str,
) {
    if let Some(s) = s
        && s.preserve_unknown
    {
        skip_prune(x, s, force_embedded, unknown, path);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                for k in m.keys() {
                    unknown.push(append_key(path, k));
                }
                m.clear();
                return;
            };
            let embedded = s.embedded || force_embedded;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.prop(&k) {
                    prune_value(
                        m.get_mut(&k).expect("key"),
                        Some(p),
                        false,
                        unknown,
                        &append_key(path, &k),
                    );
                } else if s.additional.is_some() || s.additional_any {
                    prune_value(
                        m.get_mut(&k).expect("key"),
                        s.additional.as_deref(),
                        false,
                        unknown,
                        &append_key(path, &k),
                    );
                } else {
                    if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                        unknown.push(append_key(path, &k));
                    }
                    m.remove(&k);
                }
            }
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                prune_value(v, items, false, unknown, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn skip_prune(
    x: &mut Value,
    s: &Node,
    force_embedded: bool,
    unknown: &mut Vec<String>,
    path: &str,
) {
    match x {
        Value::Object(m) => {
            let embedded = s.embedded || force_embedded;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let v = m.get_mut(&k).expect("key");
                if let Some(p) = s.prop(&k) {
                    prune_value(v, Some(p), false, unknown, &append_key(path, &k));
                } else if s.additional.is_some() || s.additional_any {
                    prune_value(
                        v,
                        s.additional.as_deref(),
                        false,
                        unknown,
                        &append_key(path, &k),
                    );
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    skip_prune(v, items, false, unknown, &format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

/// `objectmeta.Coerce` below the root: embedded resources get their metadata round-tripped
/// and non-string apiVersion/kind dropped (`DropInvalidFields`, as for request bodies).
fn coerce_embedded(x: &mut Value, s: &Node, path: &str, unknown: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            if s.embedded {
                for k in ["apiVersion", "kind"] {
                    if m.get(k).is_some_and(|v| !v.is_string()) {
                        m.remove(k);
                    }
                }
                if let Some(meta) = m.get_mut("metadata") {
                    if meta.is_object() {
                        unknown.extend(coerce_object_meta(meta, &append_key(path, "metadata")));
                    } else {
                        m.remove("metadata");
                    }
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let v = m.get_mut(&k).expect("key");
                if let Some(p) = s.prop(&k) {
                    coerce_embedded(v, p, &append_key(path, &k), unknown);
                } else if let Some(ap) = s.additional.as_deref() {
                    coerce_embedded(v, ap, &format!("{path}[{k}]"), unknown);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    coerce_embedded(v, items, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn field_schema<'a>(k: &str, s: Option<&'a Node>) -> Option<&'a Node> {
    let s = s?;
    s.prop(k).or(s.additional.as_deref())
}

/// `PruneNonNullableNullsWithoutDefaults`: map values that are null where the schema is not
/// nullable and has no default are removed (array items are left alone).
pub(crate) fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let schema = field_schema(&k, s);
                let drop = m.get(&k).is_some_and(Value::is_null)
                    && schema.is_some_and(|sc| !sc.nullable && sc.default.is_none());
                if drop {
                    m.remove(&k);
                } else if let Some(v) = m.get_mut(&k) {
                    prune_nulls(v, schema);
                }
            }
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for v in a.iter_mut() {
                prune_nulls(v, items);
            }
        }
        _ => {}
    }
}

fn non_nullable_null(x: &Value, s: &Node) -> bool {
    x.is_null() && !s.nullable
}

/// `defaulting.Default`.
pub(crate) fn apply_defaults(x: &mut Value, s: &Node) {
    match x {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else {
                    continue;
                };
                if d.is_null() {
                    continue;
                }
                let needs = match m.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, prop),
                };
                if needs {
                    m.insert(k.clone(), d.clone());
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let v = m.get_mut(&k).expect("key");
                if let Some(p) = s.prop(&k) {
                    apply_defaults(v, p);
                } else if let Some(ap) = s.additional.as_deref() {
                    if non_nullable_null(v, ap) {
                        *v = ap.default.clone().unwrap_or(Value::Null);
                    }
                    apply_defaults(v, ap);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for v in a.iter_mut() {
                    if non_nullable_null(v, items) {
                        *v = items.default.clone().unwrap_or(Value::Null);
                    }
                    apply_defaults(v, items);
                }
            }
        }
        _ => {}
    }
}
