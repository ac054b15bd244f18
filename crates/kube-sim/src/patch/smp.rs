//! Strategic merge patch, following apimachinery@v0.32.4 `pkg/util/strategicpatch/patch.go`
//! (`StrategicMergeMapPatch` with `MergeParallelList` and `IgnoreUnmatchedNulls`).
//!
//! Semantics: merge patch, except
//! * lists whose schema says [`ListSemantics::Map`] merge item-wise by the first key (SMP's
//!   `patchMergeKey`), lists with [`ListSemantics::Set`] merge as a set of scalars
//!   (`finalizers: ["b"]` *adds* `b`), [`ListSemantics::Atomic`] lists are replaced;
//! * directives: `$patch: replace|delete` on maps, `{"$patch": "replace"}` and
//!   `{"<key>": x, "$patch": "delete"}` list items, `$retainKeys`, `$deleteFromPrimitiveList/<f>`,
//!   `$setElementOrder/<f>`;
//! * merged lists are ordered the way upstream orders them (`normalizeElementOrder` +
//!   `mergeSortedSlice`): without `$setElementOrder`, items named in the patch come first in patch
//!   order, interleaved with server-only items by their live order — so adding finalizer `b` to
//!   `[a]` gives `[b, a]`, exactly as a real API server does.
//!
//! Error mapping follows `interpretStrategicMergePatchError`: bad directive formats → 400, list of
//! lists → 422, anything else (missing merge key, unknown `$patch` value) → 500 with Go's text.
//! `$patch: merge` on a map is such a 500 upstream (`unknown patch type: merge in map: …`).
//!
//! One addition: directive keys left inside values that had nothing to merge with (a new list item,
//! a new map) are stripped from the result; upstream drops them when decoding into the Go type.

use serde_json::{Map, Value};

use super::{ListSemantics, MergeSchema, PatchError, go_fmt_v, json_equal};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ORDER_PREFIX: &str = "$setElementOrder";

/// Apply a strategic merge patch. `patch` must be a JSON object (else 400, like upstream's
/// decode into `map[string]interface{}`).
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Malformed(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            match patch {
                Value::Null => "null",
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                Value::Object(_) => "object",
            }
        )));
    };
    let original = match doc {
        Value::Object(m) => Some(m.clone()),
        _ => None,
    };
    let ctx = Ctx { schema };
    let mut merged = Value::Object(ctx.merge_map(original, p.clone(), &mut Vec::new())?);
    strip_directives(&mut merged);
    Ok(merged)
}

struct Ctx<'a> {
    schema: &'a dyn MergeSchema,
}

fn internal(s: impl Into<String>) -> PatchError {
    PatchError::Internal(s.into())
}

fn no_merge_key(m: &Map<String, Value>, k: &str) -> PatchError {
    internal(format!(
        "map: {} does not contain declared merge key: {k}",
        go_fmt_v(&Value::Object(m.clone()))
    ))
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    internal(format!(
        "unknown patch type: {} in map: {}",
        go_fmt_v(t),
        go_fmt_v(&Value::Object(m.clone()))
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Map,
    Scalar,
}

impl Ctx<'_> {
    fn semantics(&self, path: &[String]) -> ListSemantics {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        self.schema.list_semantics(&refs)
    }

    fn merge_key(&self, path: &[String]) -> Option<String> {
        match self.semantics(path) {
            ListSemantics::Map { keys } => keys.first().cloned(),
            _ => None,
        }
    }

    fn merge_map(
        &self,
        original: Option<Map<String, Value>>,
        mut patch: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(d) = patch.get(DIRECTIVE).cloned() {
            return match d.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(bad_patch_type(&d, &patch)),
            };
        }
        let mut original = original.unwrap_or_default();
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch, path)?;

        for (key, patch_v) in patch {
            let (k, is_delete_list) = if key.starts_with(DELETE_PRIMITIVE_PREFIX) {
                (extract_key(&key, DELETE_PRIMITIVE_PREFIX)?, true)
            } else {
                (key, false)
            };
            if patch_v.is_null() {
                original.shift_remove(&k);
                continue;
            }
            let same_type = original
                .get(&k)
                .map(|o| value_type(o) == value_type(&patch_v));
            match same_type {
                None | Some(false) => {
                    if !is_delete_list {
                        let mut v = patch_v;
                        discard_nulls(&mut v);
                        match remove_directives(v) {
                            Some(v) => {
                                original.insert(k, v);
                            }
                            None => {
                                original.shift_remove(&k);
                            }
                        }
                    }
                }
                Some(true) => {
                    path.push(k.clone());
                    let result = match (original.get_mut(&k), patch_v) {
                        (Some(Value::Object(o)), Value::Object(p)) => {
                            let o = std::mem::take(o);
                            self.merge_map(Some(o), p, path).map(Value::Object)
                        }
                        (Some(Value::Array(o)), Value::Array(p)) => {
                            let o = std::mem::take(o);
                            self.merge_slice_handler(o, p, path, is_delete_list)
                                .map(Value::Array)
                        }
                        (_, v) => Ok(v),
                    };
                    path.pop();
                    original.insert(k, result?);
                }
            }
        }
        Ok(original)
    }

    fn merge_slice_handler(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &[String],
        is_delete_list: bool,
    ) -> Result<Vec<Value>, PatchError> {
        let sem = self.semantics(path);
        if sem != ListSemantics::Atomic || is_delete_list {
            let key = match sem {
                ListSemantics::Map { keys } => keys.first().cloned(),
                _ => None,
            };
            self.merge_slice(original, patch, key.as_deref(), path, is_delete_list)
        } else {
            Ok(patch)
        }
    }

    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: Option<&str>,
        path: &[String],
        is_delete_list: bool,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = slice_element_kind(&[&original, &patch])?;
        let (original, patch, merged) = if kind != Kind::Map {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.iter().any(|d| json_equal(d, v)))
                    .collect());
            }
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for v in original.iter().chain(patch.iter()) {
                if !merged.iter().any(|m| json_equal(m, v)) {
                    merged.push(v.clone());
                }
            }
            (original, patch, merged)
        } else {
            let Some(key) = merge_key else {
                return Err(internal(format!(
                    "cannot merge lists without merge key for {}",
                    path.last().map(String::as_str).unwrap_or("")
                )));
            };
            let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
            let merged = self.merge_slice_without_special_elements(
                original.clone(),
                &patch,
                key,
                &mut path.to_vec(),
            )?;
            (original, patch, merged)
        };
        let key = if kind == Kind::Map { merge_key } else { None };
        let (patch_items, server_only) = partition(merged, &patch, key)?;
        normalize_element_order(patch_items, server_only, &patch, &original, key)
    }

    fn merge_slice_without_special_elements(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
        path: &mut Vec<String>,
    ) -> Result<Vec<Value>, PatchError> {
        for v in patch {
            let Value::Object(pm) = v else {
                return Err(internal("expected a map in a merging list"));
            };
            let Some(mv) = pm.get(key) else {
                return Err(no_merge_key(pm, key));
            };
            match find_by_key(&original, key, mv)? {
                Some(i) => {
                    let o = match std::mem::take(&mut original[i]) {
                        Value::Object(o) => o,
                        _ => Map::new(),
                    };
                    original[i] = Value::Object(self.merge_map(Some(o), pm.clone(), path)?);
                }
                None => original.push(v.clone()),
            }
        }
        Ok(original)
    }

    /// `mergePatchIntoOriginal`: process every `$setElementOrder/<f>` together with `<f>`.
    fn merge_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ORDER_PREFIX))
            .cloned()
            .collect();
        for key in keys {
            let Some(order_v) = patch.shift_remove(&key) else {
                continue;
            };
            let Value::Array(order) = order_v else {
                return Err(internal(format!(
                    "expected a []interface {{}}, but received a {}",
                    go_type_name(&order_v)
                )));
            };
            let field = extract_key(&key, SET_ORDER_PREFIX)?;
            let original_list = match original.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => {
                    return Err(internal(format!(
                        "expected a []interface {{}}, but received a {}",
                        go_type_name(other)
                    )));
                }
            };
            let patch_list = match patch.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => {
                    return Err(internal(format!(
                        "expected a []interface {{}}, but received a {}",
                        go_type_name(other)
                    )));
                }
            };
            path.push(field.clone());
            let merge_key = self.merge_key(path);
            let result = (|| {
                validate_patch_with_set_order(
                    patch_list.as_deref().unwrap_or(&[]),
                    &order,
                    merge_key.as_deref(),
                )?;
                let merged = match (&original_list, &patch_list) {
                    (Some(o), None) => o.clone(),
                    (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    },
                    (Some(o), Some(p)) => {
                        self.merge_slice_handler(o.clone(), p.clone(), path, false)?
                    }
                    (None, None) => return Ok(None),
                };
                let empty = Vec::new();
                let kind = slice_element_kind(&[
                    original_list.as_ref().unwrap_or(&empty),
                    patch_list.as_ref().unwrap_or(&empty),
                ])?;
                let key = if kind == Kind::Map {
                    merge_key.as_deref()
                } else {
                    None
                };
                let (patch_items, server_only) = partition(merged, &order, key)?;
                normalize_element_order(
                    patch_items,
                    server_only,
                    &order,
                    original_list.as_ref().unwrap_or(&empty),
                    key,
                )
                .map(Some)
            })();
            path.pop();
            if let Some(both) = result? {
                original.insert(field.clone(), Value::Array(both));
                patch.shift_remove(&field);
            }
        }
        Ok(())
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Coarse Go `reflect.TypeOf` equivalent (numbers are one type).
fn value_type(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// `sliceElementType`: all elements must share one type; lists of lists are refused.
fn slice_element_kind(slices: &[&Vec<Value>]) -> Result<Kind, PatchError> {
    let mut prev: Option<u8> = None;
    for s in slices {
        for v in s.iter() {
            let t = value_type(v);
            match prev {
                None => {
                    if t == 4 {
                        return Err(PatchError::Apply(
                            "lists of lists are not supported".to_string(),
                        ));
                    }
                    prev = Some(t);
                }
                Some(p) if p != t => {
                    return Err(internal(format!(
                        "list element types are not identical: {}",
                        slices
                            .iter()
                            .map(|s| go_fmt_v(&Value::Array((*s).clone())))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )));
                }
                Some(_) => {}
            }
        }
    }
    match prev {
        None => Err(internal("no elements in any of the given slices")),
        Some(5) => Ok(Kind::Map),
        Some(_) => Ok(Kind::Scalar),
    }
}

fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(match prefix {
            DELETE_PRIMITIVE_PREFIX => {
                PatchError::Malformed("invalid patch format of primitive list".to_string())
            }
            _ => PatchError::Malformed("invalid patch format of setElementOrder list".to_string()),
        }),
    }
}

/// `applyRetainKeysDirective`: clear keys of `original` missing from the list; every key the patch
/// sets must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::Malformed("invalid patch format of retainKeys".to_string());
    let Value::Array(list) = retain else {
        return Err(bad());
    };
    let listed = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE_PREFIX) || k.starts_with(SET_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

fn validate_patch_with_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => {
            let mut out = Vec::new();
            for v in patch_list {
                let Value::Object(m) = v else {
                    return Err(internal(format!(
                        "expected a map[string]interface {{}}, but received a {}",
                        go_type_name(v)
                    )));
                };
                if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                    out.push(v);
                }
            }
            out
        }
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if non_delete[pi]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ORDER_PREFIX} list:\n{}\n",
            go_fmt_v(&Value::Array(patch_list.to_vec())),
            go_fmt_v(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(l: &Value, r: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else {
        return Ok(json_equal(l, r));
    };
    let (Value::Object(lm), Value::Object(rm)) = (l, r) else {
        return Err(internal(
            "expected a map[string]interface {}, but received a scalar",
        ));
    };
    let lv = lm.get(key).ok_or_else(|| no_merge_key(lm, key))?;
    let rv = rm.get(key).ok_or_else(|| no_merge_key(rm, key))?;
    Ok(json_equal(lv, rv))
}

fn merge_slice_with_special_elements(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut original = original;
    let mut without = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            without.push(v);
            continue;
        };
        match m.get(DIRECTIVE) {
            None => without.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(mv) = m.get(key) else {
                        return Err(no_merge_key(m, key));
                    };
                    while let Some(i) = find_by_key(&original, key, mv)? {
                        original.remove(i);
                    }
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(internal(
                        "merging lists cannot yet be specified in the patch",
                    ));
                }
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        return Ok((without, Vec::new()));
    }
    Ok((original, without))
}

fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(internal(format!("value for key {i} is not a map")));
        };
        if m.get(key).is_some_and(|x| json_equal(x, value)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Split `merged` into items present in `by` (patch or `$setElementOrder` list) and server-only ones.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let found = match key {
            None => by.iter().any(|b| json_equal(b, &v)),
            Some(k) => {
                let Value::Object(m) = &v else {
                    return Err(internal("expected a map[string]interface {}"));
                };
                let mv = m.get(k).ok_or_else(|| no_merge_key(m, k))?;
                find_by_key(by, k, mv)?.is_some()
            }
        };
        if found {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// `index()`: position of `v` in `l`, by merge key value for maps, by value for scalars.
fn index_of(l: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    let get = |x: &Value| -> Option<Value> {
        match key {
            Some(k) => Some(x.as_object()?.get(k).cloned().unwrap_or(Value::Null)),
            None => Some(x.clone()),
        }
    };
    let want = get(v)?;
    l.iter()
        .position(|x| get(x).is_some_and(|g| json_equal(&g, &want)))
}

fn normalize_slice_order(
    mut to_sort: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut to_delete = Vec::new();
    if let Some(k) = key {
        for v in to_sort.iter().chain(order.iter()) {
            let Value::Object(m) = v else {
                return Err(internal("expected a map[string]interface {}"));
            };
            if !m.contains_key(k) {
                return Err(no_merge_key(m, k));
            }
        }
        let (keep, del): (Vec<Value>, Vec<Value>) = to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        to_sort = keep;
        to_delete = del;
    }
    // Stable sort by position in `order`; items absent from `order` keep their place.
    let mut indexed: Vec<(Option<usize>, usize, Value)> = to_sort
        .into_iter()
        .enumerate()
        .map(|(i, v)| (index_of(order, &v, key), i, v))
        .collect();
    indexed.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
        _ => a.1.cmp(&b.1),
    });
    let mut out: Vec<Value> = indexed.into_iter().map(|(_, _, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch = normalize_slice_order(patch, patch_order, key)?;
    let server_only = normalize_slice_order(server_only, server_order, key)?;
    Ok(merge_sorted_slice(server_only, patch, server_order, key))
}

/// `mergeSortedSlice`: insert server-only items (`left`) into the patch items (`right`) where
/// the live order puts them; patch order wins.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let size = left.len() + right.len();
    let mut out = Vec::with_capacity(size);
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    for _ in 0..size {
        let take_left = match (left.peek(), right.peek()) {
            (Some(_), None) => true,
            (None, _) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, key),
                    index_of(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some(v) = next {
            out.push(v);
        }
    }
    out
}

/// `removeDirectives`: drop maps carrying `$patch` (and list items that are such maps).
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `discardNullValuesFromPatch`.
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                discard_nulls(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(&format!("{SET_ORDER_PREFIX}/"))
        || k.starts_with(&format!("{DELETE_PRIMITIVE_PREFIX}/"))
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_directive_key(k));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => {
            a.retain(|x| !x.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)));
            a.iter_mut().for_each(strip_directives);
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "smp_tests.rs"]
mod tests;
