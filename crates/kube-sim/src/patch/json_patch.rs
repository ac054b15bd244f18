//! RFC 6902 JSON patch with the exact semantics of `gopkg.in/evanphx/json-patch.v4` v4.12.0
//! (the version kube-apiserver 1.32 vendors), quirks included:
//!
//! * `test` of `null` on a missing member of an existing object passes (kube-runtime's finalizer
//!   helper depends on it); a missing *parent* fails.
//! * `replace` of a missing member of an existing object succeeds and adds it (v4's
//!   `partialDoc.get` never fails); a missing parent fails.
//! * `copy` from a missing member of an existing object copies `null`.
//! * Negative array indices count from the end (`SupportNegativeIndices = true`).
//! * A path without a leading `/` addresses its last segment in the root (`"a/b"` acts as `"/b"`).
//! * `null` as the whole patch is zero operations.
//!
//! One deliberate divergence: `test` compares numbers by value (`1` equals `1.0`); v4.12.0 compares
//! the compacted literal bytes of scalars, which the simulator cannot reproduce because it does not
//! keep the server's encoding of stored numbers.

use serde_json::{Map, Value};

use super::{PatchError, json_equal};

/// Upstream `maxJSONPatchOperations` (apiserver handlers/patch.go).
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// Apply a JSON patch (`application/json-patch+json`) to `doc`.
///
/// Errors: unparsable patch or a patch that is not a list of objects → [`PatchError::Malformed`]
/// (400); more than 10 000 operations → [`PatchError::TooManyOps`] (413); any operation failing →
/// [`PatchError::Apply`] (422, generic message) carrying evanphx's error text.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let parsed: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(go_json_error(&e)))?;
    let ops: Vec<Value> = match parsed {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        other => {
            return Err(PatchError::Malformed(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                go_json_type(&other)
            )));
        }
    };
    for op in &ops {
        if !(op.is_object() || op.is_null()) {
            return Err(PatchError::Malformed(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                go_json_type(op)
            )));
        }
    }
    if ops.len() > MAX_JSON_PATCH_OPS {
        return Err(PatchError::TooManyOps(ops.len()));
    }
    let mut doc = doc.clone();
    let empty = Map::new();
    for op in &ops {
        let op = op.as_object().unwrap_or(&empty);
        apply_op(&mut doc, op).map_err(PatchError::Apply)?;
    }
    Ok(doc)
}

fn go_json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An approximation of Go's `encoding/json` syntax error text.
fn go_json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
        _ => format!("invalid character in JSON input: {e}"),
    }
}

fn op_kind(op: &Map<String, Value>) -> String {
    match op.get("op") {
        Some(Value::String(s)) => s.clone(),
        _ => "unknown".to_string(),
    }
}

/// `Operation.Path()` / `From()`: a string, or an error text.
fn op_str(op: &Map<String, Value>, field: &str) -> Result<String, String> {
    match op.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Err(if field == "path" {
            "operation missing path field: missing value".to_string()
        } else {
            "operation, missing from field: missing value".to_string()
        }),
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go value of type string",
            go_json_type(other)
        )),
    }
}

/// The `value` member; absent and `null` both become JSON null (v4 stores a nil node).
fn op_value(op: &Map<String, Value>) -> Value {
    op.get("value").cloned().unwrap_or(Value::Null)
}

fn apply_op(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    match op_kind(op).as_str() {
        "add" => {
            let path = op_str(op, "path")
                .map_err(|_| "add operation failed to decode path: missing value".to_string())?;
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "add operation does not apply: doc is missing path: \"{path}\": missing value"
                )
            })?;
            con_add(con, &key, op_value(op))
                .map_err(|e| format!("error in add for path: '{path}': {e}"))
        }
        "remove" => {
            let path = op_str(op, "path")
                .map_err(|_| "remove operation failed to decode path: missing value".to_string())?;
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": missing value"
                )
            })?;
            con_remove(con, &key).map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "replace" => {
            let path = op_str(op, "path")
                .map_err(|e| format!("replace operation failed to decode path: {e}"))?;
            if path.is_empty() {
                let v = op_value(op);
                if !(v.is_object() || v.is_array()) {
                    return Err("replace operation value must be object or array".to_string());
                }
                *doc = v;
                return Ok(());
            }
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "replace operation does not apply: doc is missing path: {path}: missing value"
                )
            })?;
            if con_get(con, &key).is_err() {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ));
            }
            con_set(con, &key, op_value(op))
                .map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "move" => {
            let from = op_str(op, "from")
                .map_err(|e| format!("move operation failed to decode from: {e}"))?;
            let (con, key) = find_object(doc, &from).ok_or_else(|| {
                format!(
                    "move operation does not apply: doc is missing from path: {from}: missing value"
                )
            })?;
            let val = con_get(con, &key)
                .map_err(|e| format!("error in move for path: '{key}': {e}"))?
                .cloned()
                .unwrap_or(Value::Null);
            con_remove(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
            let path = op_str(op, "path")
                .map_err(|e| format!("move operation failed to decode path: {e}"))?;
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "move operation does not apply: doc is missing destination path: {path}: missing value"
                )
            })?;
            con_add(con, &key, val).map_err(|e| format!("error in move for path: '{path}': {e}"))
        }
        "copy" => {
            let from = op_str(op, "from")
                .map_err(|e| format!("copy operation failed to decode from: {e}"))?;
            let (con, key) = find_object(doc, &from).ok_or_else(|| {
                format!(
                    "copy operation does not apply: doc is missing from path: {from}: missing value"
                )
            })?;
            let val = con_get(con, &key)
                .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
                .cloned()
                .unwrap_or(Value::Null);
            let path = op_str(op, "path")
                .map_err(|_| "copy operation failed to decode path: missing value".to_string())?;
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "copy operation does not apply: doc is missing destination path: {path}: missing value"
                )
            })?;
            con_add(con, &key, val)
                .map_err(|e| format!("error while adding value during copy: {e}"))
        }
        "test" => {
            let path = op_str(op, "path")
                .map_err(|e| format!("test operation failed to decode path: {e}"))?;
            let expected = op_value(op);
            if path.is_empty() {
                if json_equal(doc, &expected) {
                    return Ok(());
                }
                return Err(format!("testing value {path} failed: test failed"));
            }
            let (con, key) = find_object(doc, &path).ok_or_else(|| {
                format!("test operation does not apply: is missing path: {path}: missing value")
            })?;
            let val =
                con_get(con, &key).map_err(|e| format!("error in test for path: '{path}': {e}"))?;
            match val {
                // Missing member or explicit null: passes only against null.
                None | Some(Value::Null) => {
                    if expected.is_null() {
                        Ok(())
                    } else {
                        Err(format!("testing value {path} failed: test failed"))
                    }
                }
                Some(v) => {
                    if !expected.is_null() && json_equal(v, &expected) {
                        Ok(())
                    } else {
                        Err(format!("testing value {path} failed: test failed"))
                    }
                }
            }
        }
        other => Err(format!("Unexpected kind: {other}")),
    }
}

/// RFC 6901 unescaping in evanphx's order (`~1` then `~0`, in one left-to-right pass).
fn decode_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut chars = k.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// `findObject`: walk every segment but the last; the container must be an object or array.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let parts = &split[1..split.len() - 1];
    let key = decode_key(split[split.len() - 1]);
    let mut cur = doc;
    for part in parts {
        let next = match con_get_mut(cur, &decode_key(part)) {
            Ok(Some(v)) if !v.is_null() => v,
            _ => return None,
        };
        if !(next.is_object() || next.is_array()) {
            return None;
        }
        cur = next;
    }
    if cur.is_object() || cur.is_array() {
        Some((cur, key))
    } else {
        None
    }
}

fn atoi(key: &str) -> Result<i64, String> {
    key.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.Atoi: parsing \"{key}\": {why}")
    })
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: invalid index referenced")
}

/// Resolve an existing-element index (get/set/remove), negative from the end.
fn existing_index(key: &str, len: usize) -> Result<usize, String> {
    let mut idx = atoi(key)?;
    let len = len as i64;
    if idx < 0 {
        if idx < -len {
            return Err(invalid_index(idx));
        }
        idx += len;
    }
    if idx >= len {
        return Err(invalid_index(idx));
    }
    Ok(idx as usize)
}

/// `container.get`: objects never fail (missing → `None`); arrays fail on bad indices.
fn con_get<'a>(con: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    match con {
        Value::Object(m) => Ok(m.get(key)),
        Value::Array(a) => {
            let i = existing_index(key, a.len())?;
            Ok(a.get(i))
        }
        _ => Ok(None),
    }
}

fn con_get_mut<'a>(con: &'a mut Value, key: &str) -> Result<Option<&'a mut Value>, String> {
    match con {
        Value::Object(m) => Ok(m.get_mut(key)),
        Value::Array(a) => {
            let i = existing_index(key, a.len())?;
            Ok(a.get_mut(i))
        }
        _ => Ok(None),
    }
}

fn con_add(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let mut idx = atoi(key)
                .map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            let sz = a.len() as i64 + 1;
            if idx >= sz {
                return Err(invalid_index(idx));
            }
            if idx < 0 {
                if idx < -sz {
                    return Err(invalid_index(idx));
                }
                idx += sz;
            }
            a.insert(idx as usize, val);
            Ok(())
        }
        _ => Err("unknown object type".to_string()),
    }
}

fn con_set(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            let i = existing_index(key, a.len())?;
            a[i] = val;
            Ok(())
        }
        _ => Err("unknown object type".to_string()),
    }
}

fn con_remove(con: &mut Value, key: &str) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            if m.shift_remove(key).is_none() {
                return Err(format!(
                    "Unable to remove nonexistent key: {key}: missing value"
                ));
            }
            Ok(())
        }
        Value::Array(a) => {
            let mut idx = atoi(key)?;
            let len = a.len() as i64;
            if idx >= len {
                return Err(invalid_index(idx));
            }
            if idx < 0 {
                if idx < -len {
                    return Err(invalid_index(idx));
                }
                idx += len;
            }
            a.remove(idx as usize);
            Ok(())
        }
        _ => Err("unknown object type".to_string()),
    }
}

#[cfg(test)]
#[path = "json_patch_tests.rs"]
mod tests;
