//! Schema checks at CRD create/update: structural schema rules, the CRD OpenAPI schema rules,
//! default values, and compilation of the CEL rules.
//!
//! Sources (apiextensions-apiserver v0.32.4): `pkg/apiserver/schema/{validation,complete}.go`
//! (`ValidateStructural`), `pkg/apis/apiextensions/validation/validation.go`
//! (`validateCustomResourceDefinitionValidation`, `ValidateCustomResourceDefinitionOpenAPISchema`,
//! `specStandardValidatorV3`, `validateMapListKeysMapSet`), `pkg/apiserver/schema/defaulting/
//! validation.go` (`ValidateDefaults`).

use serde_json::Value;

use super::gofmt::{body_value, sharp_v_strings};
use super::{CrdSchema, Node, prune, rules, validate};
use crate::error::{FieldError, FieldErrorType, go_quote};

fn child(p: &str, n: &str) -> String {
    if p.is_empty() {
        n.to_string()
    } else {
        format!("{p}.{n}")
    }
}

fn key(p: &str, k: &str) -> String {
    format!("{p}[{k}]")
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn b(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool) == Some(true)
}

fn props(v: &Value) -> Vec<(&String, &Value)> {
    v.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

fn list<'a>(v: &'a Value, k: &str) -> Vec<&'a Value> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn ty(v: &Value) -> &str {
    s(v, "type").unwrap_or("")
}

fn invalid_s(path: String, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorType::Invalid, path, Some(go_quote(value)), detail)
}

pub(crate) fn compile(schema: &Value, prefix: &str) -> Result<CrdSchema, Vec<FieldError>> {
    let mut errs = Vec::new();
    if b(schema, "nullable") {
        errs.push(FieldError::forbidden(
            child(prefix, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    invariants(schema, Level::Root, prefix, &mut structural);
    completeness(schema, prefix, &mut structural);
    structural.sort_by_key(|e| e.to_string());
    let structural_ok = structural.is_empty();
    let mut root = Node::build(schema);
    let mut lists = Lists::default();
    openapi_schema(
        schema,
        Some(&mut root),
        prefix,
        &Ssv::default(),
        true,
        structural_ok,
        &mut lists,
    );
    let mut patterns = validate::Patterns::new();
    validate::collect_patterns(schema, &mut patterns);
    errs.extend(structural);
    if structural_ok {
        let mut d = Vec::new();
        defaults(&root, &root, prefix, &patterns, &mut d);
        errs.extend(d);
    }
    errs.extend(lists.schema);
    errs.extend(lists.cel);
    if errs.is_empty() {
        Ok(CrdSchema { root, patterns })
    } else {
        Err(errs)
    }
}

// ---------------------------------------------------------------------------------------------
// ValidateStructural

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

fn is_int_or_string_any_of(any_of: &[&Value]) -> bool {
    any_of.len() == 2
        && any_of[0] == &serde_json::json!({"type": "integer"})
        && any_of[1] == &serde_json::json!({"type": "string"})
}

fn invariants(sc: &Value, lvl: Level, p: &str, errs: &mut Vec<FieldError>) {
    if !sc.is_object() {
        return;
    }
    let t = ty(sc);
    if t == "array" && sc.get("items").is_none_or(|i| !i.is_object()) {
        errs.push(FieldError::required(child(p, "items"), "must be specified"));
    }
    if let Some(items) = sc.get("items").filter(|i| i.is_object()) {
        invariants(items, Level::Item, &child(p, "items"), errs);
    }
    for (k, v) in props(sc) {
        invariants(v, Level::Field, &key(&child(p, "properties"), k), errs);
    }
    if let Some(ap) = sc.get("additionalProperties") {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                child(p, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if ap.is_object() {
            invariants(ap, Level::Field, &child(p, "additionalProperties"), errs);
        }
    }
    let ios = b(sc, "x-kubernetes-int-or-string");
    let pres = b(sc, "x-kubernetes-preserve-unknown-fields");
    let emb = b(sc, "x-kubernetes-embedded-resource");
    if ios && pres {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            child(p, "x-kubernetes-preserve-unknown-fields"),
            Some("true".into()),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if ios && emb {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            child(p, "x-kubernetes-embedded-resource"),
            Some("true".into()),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let any_of = list(sc, "anyOf");
    let skip_any_of = is_int_or_string_any_of(&any_of);
    let all_of = list(sc, "allOf");
    let skip_first_all_of_any_of = all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&list(a, "anyOf")));
    value_validation(sc, skip_any_of, skip_first_all_of_any_of, p, errs);

    let check_metadata = lvl == Level::Root || emb;
    if emb && t != "object" {
        if t.is_empty() {
            errs.push(FieldError::required(
                child(p, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(invalid_s(
                child(p, "type"),
                t,
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if t.is_empty() && !ios && !pres {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(child(p, "type"), msg));
    }
    if emb && sc.get("additionalProperties").is_some() {
        errs.push(FieldError::forbidden(
            child(p, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        errs.push(invalid_s(child(p, "type"), t, "must be object at the root"));
    }
    let pp = child(p, "properties");
    for f in ["kind", "apiVersion"] {
        if let Some(v) = sc.get("properties").and_then(|x| x.get(f))
            && check_metadata
            && ty(v) != "string"
        {
            errs.push(invalid_s(
                child(&key(&pp, f), "type"),
                ty(v),
                "must be string",
            ));
        }
    }
    if let Some(m) = sc.get("properties").and_then(|x| x.get("metadata")) {
        let mp = key(&pp, "metadata");
        if check_metadata && ty(m) != "object" {
            errs.push(invalid_s(child(&mp, "type"), ty(m), "must be object"));
        }
        if lvl == Level::Root {
            let allowed = |k: &str| matches!(k, "type" | "default" | "properties");
            let mut bad = m.as_object().is_some_and(|o| o.keys().any(|k| !allowed(k)));
            if let Some(mprops) = m.get("properties").and_then(Value::as_object) {
                let only_names = mprops.keys().all(|k| k == "name" || k == "generateName");
                if !only_names {
                    bad = true;
                }
            }
            if bad {
                errs.push(FieldError::forbidden(
                    mp,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if emb && !pres && props(sc).is_empty() {
        errs.push(FieldError::required(
            child(p, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn value_validation(
    v: &Value,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    p: &str,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, a) in list(v, "anyOf").iter().enumerate() {
            nested(a, false, &format!("{}[{i}]", child(p, "anyOf")), errs);
        }
    }
    for (i, a) in list(v, "allOf").iter().enumerate() {
        nested(
            a,
            skip_first_all_of_any_of && i == 0,
            &format!("{}[{i}]", child(p, "allOf")),
            errs,
        );
    }
    for (i, a) in list(v, "oneOf").iter().enumerate() {
        nested(a, false, &format!("{}[{i}]", child(p, "oneOf")), errs);
    }
    if let Some(n) = v.get("not").filter(|n| n.is_object()) {
        nested(n, false, &child(p, "not"), errs);
    }
    if let Some(pat) = s(v, "pattern").filter(|x| !x.is_empty())
        && let Err(e) = regex::Regex::new(pat)
    {
        errs.push(invalid_s(
            child(p, "pattern"),
            pat,
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

fn nested(v: &Value, skip_any_of: bool, p: &str, errs: &mut Vec<FieldError>) {
    if !v.is_object() {
        return;
    }
    value_validation(v, skip_any_of, false, p, errs);
    if let Some(items) = v.get("items").filter(|i| i.is_object()) {
        nested(items, false, &child(p, "items"), errs);
    }
    for (k, f) in props(v) {
        nested(f, false, &key(&child(p, "properties"), k), errs);
    }
    if !ty(v).is_empty() {
        errs.push(FieldError::forbidden(
            child(p, "type"),
            "must be empty to be structural",
        ));
    }
    if v.get("additionalProperties").is_some() {
        errs.push(FieldError::forbidden(
            child(p, "additionalProperties"),
            "must be undefined to be structural",
        ));
    }
    if v.get("default").is_some_and(|d| !d.is_null()) {
        errs.push(FieldError::forbidden(
            child(p, "default"),
            "must be undefined to be structural",
        ));
    }
    for (k, what) in [("title", "empty"), ("description", "empty")] {
        if s(v, k).is_some_and(|x| !x.is_empty()) {
            errs.push(FieldError::forbidden(
                child(p, k),
                format!("must be {what} to be structural"),
            ));
        }
    }
    for k in [
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if b(v, k) {
            errs.push(FieldError::forbidden(
                child(p, k),
                "must be false to be structural",
            ));
        }
    }
    if !list(v, "x-kubernetes-list-map-keys").is_empty() {
        errs.push(FieldError::forbidden(
            child(p, "x-kubernetes-list-map-keys"),
            "must be empty to be structural",
        ));
    }
    for k in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if v.get(k).is_some_and(|x| !x.is_null()) {
            errs.push(FieldError::forbidden(
                child(p, k),
                "must be undefined to be structural",
            ));
        }
    }
    if !list(v, "x-kubernetes-validations").is_empty() {
        errs.push(FieldError::forbidden(
            child(p, "x-kubernetes-validations"),
            "must be empty to be structural",
        ));
    }
    if v.get("properties")
        .and_then(|x| x.get("metadata"))
        .is_some()
    {
        errs.push(FieldError::forbidden(
            key(&child(p, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: what value validations mention must exist structurally.
fn completeness(sc: &Value, p: &str, errs: &mut Vec<FieldError>) {
    value_completeness(sc, Some(sc), p, p, errs);
}

fn value_completeness(
    v: &Value,
    sc: Option<&Value>,
    sp: &str,
    vp: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(sc) = sc else {
        errs.push(FieldError::required(
            sp,
            format!("because it is defined in {vp}"),
        ));
        return;
    };
    if let Some(n) = v.get("not").filter(|n| n.is_object()) {
        nested_completeness(n, Some(sc), sp, &child(vp, "not"), errs);
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        for (i, a) in list(v, k).iter().enumerate() {
            nested_completeness(a, Some(sc), sp, &format!("{}[{i}]", child(vp, k)), errs);
        }
    }
}

fn nested_completeness(
    v: &Value,
    sc: Option<&Value>,
    sp: &str,
    vp: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(scv) = sc else {
        errs.push(FieldError::required(
            sp,
            format!("because it is defined in {vp}"),
        ));
        return;
    };
    value_completeness(v, Some(scv), sp, vp, errs);
    if let Some(items) = v.get("items").filter(|i| i.is_object()) {
        nested_completeness(
            items,
            scv.get("items").filter(|i| i.is_object()),
            &child(sp, "items"),
            &child(vp, "items"),
            errs,
        );
    }
    for (k, f) in props(v) {
        let spk = key(&child(sp, "properties"), k);
        let vpk = key(&child(vp, "properties"), k);
        match scv.get("properties").and_then(|x| x.get(k.as_str())) {
            None => errs.push(FieldError::required(
                spk,
                format!("because it is defined in {vpk}"),
            )),
            Some(sf) => nested_completeness(f, Some(sf), &spk, &vpk, errs),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ValidateCustomResourceDefinitionOpenAPISchema

#[derive(Clone, Default)]
struct Ssv {
    forbid_defaults: Option<String>,
    inside_meta: bool,
    uncorrelatable: Option<String>,
}

#[derive(Default)]
struct Lists {
    schema: Vec<FieldError>,
    cel: Vec<FieldError>,
}

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

fn ssv_validate(sc: &Value, p: &str, ssv: &Ssv, out: &mut Vec<FieldError>) {
    let t = ty(sc);
    if !t.is_empty() && !OPENAPI_V3_TYPES.contains(&t) {
        let quoted: Vec<String> = OPENAPI_V3_TYPES.iter().map(|x| go_quote(x)).collect();
        out.push(FieldError::new(
            FieldErrorType::NotSupported,
            child(p, "type"),
            Some(go_quote(t)),
            format!("supported values: {}", quoted.join(", ")),
        ));
    }
    if sc.get("default").is_some_and(|d| !d.is_null())
        && let Some(reason) = &ssv.forbid_defaults
    {
        let mut detail = "must not be set".to_string();
        if !reason.is_empty() {
            detail.push(' ');
            detail.push_str(reason);
        }
        out.push(FieldError::forbidden(child(p, "default"), detail));
    }
    let forbid = |k: &str, msg: &str, out: &mut Vec<FieldError>| {
        out.push(FieldError::forbidden(child(p, k), msg));
    };
    if s(sc, "id").is_some_and(|x| !x.is_empty()) {
        forbid("id", "id is not supported", out);
    }
    if sc.get("additionalItems").is_some() {
        forbid("additionalItems", "additionalItems is not supported", out);
    }
    if sc
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        forbid(
            "patternProperties",
            "patternProperties is not supported",
            out,
        );
    }
    if sc
        .get("definitions")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        forbid("definitions", "definitions is not supported", out);
    }
    if sc.get("dependencies").is_some() {
        forbid("dependencies", "dependencies is not supported", out);
    }
    if sc.get("$ref").is_some() {
        forbid("$ref", "$ref is not supported", out);
    }
    if t == "null" {
        forbid(
            "type",
            "type cannot be set to null, use nullable as an alternative",
            out,
        );
    }
    if sc.get("items").is_some_and(Value::is_array) {
        forbid(
            "items",
            "items must be a schema object and not an array",
            out,
        );
    }
    if ssv.inside_meta && b(sc, "x-kubernetes-embedded-resource") {
        forbid(
            "x-kubernetes-embedded-resource",
            "must not be used inside of resource meta",
            out,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn openapi_schema(
    sc: &Value,
    mut node: Option<&mut Node>,
    p: &str,
    ssv: &Ssv,
    is_root: bool,
    structural_ok: bool,
    out: &mut Lists,
) {
    if !sc.is_object() {
        return;
    }
    ssv_validate(sc, p, ssv, &mut out.schema);
    if b(sc, "uniqueItems") {
        out.schema.push(FieldError::forbidden(
            child(p, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_props = !props(sc).is_empty();
    if let Some(ap) = sc.get("additionalProperties") {
        if has_props && (ap == &Value::Bool(false) || ap.is_object()) {
            out.schema.push(FieldError::forbidden(
                child(p, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        let mut sub = ssv.clone();
        if ssv.inside_meta {
            sub.forbid_defaults =
                Some("inside additionalProperties applying to object metadata".into());
        }
        let child_node = node
            .as_deref_mut()
            .and_then(|n| n.additional.as_deref_mut());
        openapi_schema(
            ap,
            child_node,
            &child(p, "additionalProperties"),
            &sub,
            false,
            structural_ok,
            out,
        );
    }
    let map_correlatable = matches!(
        s(sc, "x-kubernetes-map-type"),
        None | Some("granular" | "atomic")
    );
    for (k, v) in props(sc) {
        let mut sub = ssv.clone();
        if !map_correlatable && sub.uncorrelatable.is_none() {
            sub.uncorrelatable = Some(p.to_string());
        }
        if (is_root || b(sc, "x-kubernetes-embedded-resource"))
            && matches!(k.as_str(), "metadata" | "kind" | "apiVersion")
        {
            sub.inside_meta = true;
            if is_root {
                sub.forbid_defaults = Some(format!("in top-level {k}"));
            }
        }
        let child_node = node.as_deref_mut().and_then(|n| n.prop_mut(k));
        openapi_schema(
            v,
            child_node,
            &key(&child(p, "properties"), k),
            &sub,
            false,
            structural_ok,
            out,
        );
    }
    if let Some(n) = sc.get("not") {
        openapi_schema(n, None, &child(p, "not"), ssv, false, structural_ok, out);
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        for (i, a) in list(sc, k).iter().enumerate() {
            openapi_schema(
                a,
                None,
                &format!("{}[{i}]", child(p, k)),
                ssv,
                false,
                structural_ok,
                out,
            );
        }
    }
    let list_type = s(sc, "x-kubernetes-list-type");
    if let Some(items) = sc.get("items").filter(|i| i.is_object()) {
        let mut sub = ssv.clone();
        if list_type != Some("map") && sub.uncorrelatable.is_none() {
            sub.uncorrelatable = Some(p.to_string());
        }
        let child_node = node.as_deref_mut().and_then(|n| n.items.as_deref_mut());
        openapi_schema(
            items,
            child_node,
            &child(p, "items"),
            &sub,
            false,
            structural_ok,
            out,
        );
    }
    if sc.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        out.schema.push(FieldError::new(
            FieldErrorType::Invalid,
            child(p, "x-kubernetes-preserve-unknown-fields"),
            Some("false".into()),
            "must be true or undefined",
        ));
    }
    let t = ty(sc);
    if let Some(mt) = s(sc, "x-kubernetes-map-type") {
        if t != "object" {
            if t.is_empty() {
                out.schema.push(FieldError::required(
                    child(p, "type"),
                    "must be object if x-kubernetes-map-type is specified",
                ));
            } else {
                out.schema.push(invalid_s(
                    child(p, "type"),
                    t,
                    "must be object if x-kubernetes-map-type is specified",
                ));
            }
        }
        if mt != "atomic" && mt != "granular" {
            out.schema.push(FieldError::new(
                FieldErrorType::NotSupported,
                child(p, "x-kubernetes-map-type"),
                Some(go_quote(mt)),
                "supported values: \"atomic\", \"granular\"",
            ));
        }
    }
    let items = sc.get("items").filter(|i| i.is_object());
    if let Some(lt) = list_type {
        if t != "array" {
            if t.is_empty() {
                out.schema.push(FieldError::required(
                    child(p, "type"),
                    "must be array if x-kubernetes-list-type is specified",
                ));
            } else {
                out.schema.push(invalid_s(
                    child(p, "type"),
                    t,
                    "must be array if x-kubernetes-list-type is specified",
                ));
            }
        } else if lt == "set"
            && let Some(is) = items
        {
            match ty(is) {
                "array" => {
                    if let Some(ilt) = s(is, "x-kubernetes-list-type").filter(|x| *x != "atomic") {
                        out.schema.push(invalid_s(
                            child(&child(p, "items"), "x-kubernetes-list-type"),
                            ilt,
                            "must be atomic as item of a list with x-kubernetes-list-type=set",
                        ));
                    }
                }
                "object" if s(is, "x-kubernetes-map-type") != Some("atomic") => {
                    // upstream passes the (nil) list type pointer as the value
                    out.schema.push(FieldError::new(
                        FieldErrorType::Invalid,
                        child(&child(p, "items"), "x-kubernetes-map-type"),
                        Some("\"null\"".into()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                _ => {}
            }
        }
        if lt != "atomic" && lt != "set" && lt != "map" {
            out.schema.push(FieldError::new(
                FieldErrorType::NotSupported,
                child(p, "x-kubernetes-list-type"),
                Some(go_quote(lt)),
                "supported values: \"atomic\", \"set\", \"map\"",
            ));
        }
    }
    let map_keys: Vec<&str> = list(sc, "x-kubernetes-list-map-keys")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    if !map_keys.is_empty() {
        match list_type {
            None => out.schema.push(FieldError::required(
                child(p, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(lt) if lt != "map" => out.schema.push(invalid_s(
                child(p, "x-kubernetes-list-type"),
                lt,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            _ => {}
        }
    }
    if list_type == Some("map") {
        if map_keys.is_empty() {
            out.schema.push(FieldError::required(
                child(p, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match sc.get("items") {
            None => out.schema.push(FieldError::required(
                child(p, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(Value::Array(_)) => out.schema.push(FieldError::new(
                FieldErrorType::Invalid,
                child(p, "items"),
                Some("\"array\"".into()),
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            Some(is) if ty(is) != "object" => out.schema.push(invalid_s(
                child(&child(p, "items"), "type"),
                ty(is),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let mut seen: Vec<&str> = Vec::new();
                for k in &map_keys {
                    match is.get("properties").and_then(|x| x.get(*k)) {
                        Some(kp) => {
                            if matches!(ty(kp), "array" | "object") {
                                out.schema.push(invalid_s(
                                    child(&key(&child(&child(p, "items"), "properties"), k), "type"),
                                    ty(is),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => out.schema.push(FieldError::new(
                            FieldErrorType::Invalid,
                            child(p, "x-kubernetes-list-map-keys"),
                            Some(sharp_v_strings(&map_keys)),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(k) {
                        out.schema.push(FieldError::new(
                            FieldErrorType::Invalid,
                            child(p, "x-kubernetes-list-map-keys"),
                            Some(sharp_v_strings(&map_keys)),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    // validateMapListKeysMapSet
    if let (Some(is), Some(lt @ ("set" | "map"))) = (items, list_type) {
        if b(is, "nullable") {
            out.schema.push(FieldError::forbidden(
                child(&child(p, "items"), "nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = list(is, "required")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            for k in &map_keys {
                let Some(kp) = is.get("properties").and_then(|x| x.get(*k)) else {
                    continue;
                };
                let kpath = key(&child(&child(p, "items"), "properties"), k);
                if !required.contains(k) && kp.get("default").is_none_or(Value::is_null) {
                    out.schema.push(FieldError::required(
                        child(&kpath, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if b(kp, "nullable") {
                    out.schema.push(FieldError::forbidden(
                        child(&kpath, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
    // x-kubernetes-validations
    let rules_json = list(sc, "x-kubernetes-validations");
    if !rules_json.is_empty() {
        let vp = child(p, "x-kubernetes-validations");
        for (i, r) in rules_json.iter().enumerate() {
            let ip = format!("{vp}[{i}]");
            let rule = s(r, "rule").unwrap_or("");
            let msg = s(r, "message").unwrap_or("");
            let tr = rule.trim();
            let tm = msg.trim();
            if tr.is_empty() {
                out.schema.push(FieldError::required(
                    child(&ip, "rule"),
                    "rule is not specified",
                ));
            } else if !msg.is_empty() && tm.is_empty() {
                out.schema.push(invalid_s(
                    child(&ip, "message"),
                    msg,
                    "message must be non-empty if specified",
                ));
            } else if tm.contains('\n') {
                out.schema.push(invalid_s(
                    child(&ip, "message"),
                    msg,
                    "message must not contain line breaks",
                ));
            } else if tr.contains('\n') && tm.is_empty() {
                out.schema.push(FieldError::required(
                    child(&ip, "message"),
                    "message must be specified if rule contains line breaks",
                ));
            }
            let me = s(r, "messageExpression").unwrap_or("");
            if !me.is_empty() && me.trim().is_empty() {
                out.schema.push(FieldError::required(
                    child(&ip, "messageExpression"),
                    "messageExpression must be non-empty if specified",
                ));
            }
            if let Some(reason) = s(r, "reason") {
                const REASONS: &[&str] = &[
                    "FieldValueDuplicate",
                    "FieldValueForbidden",
                    "FieldValueInvalid",
                    "FieldValueRequired",
                ];
                if !REASONS.contains(&reason) {
                    let quoted: Vec<String> = REASONS.iter().map(|x| go_quote(x)).collect();
                    out.schema.push(FieldError::new(
                        FieldErrorType::NotSupported,
                        child(&ip, "reason"),
                        Some(go_quote(reason)),
                        format!("supported values: {}", quoted.join(", ")),
                    ));
                }
            }
            let fp = s(r, "fieldPath").unwrap_or("");
            if !fp.is_empty() && fp.trim().is_empty() {
                out.schema.push(invalid_s(
                    child(&ip, "fieldPath"),
                    fp,
                    "fieldPath must be non-empty if specified",
                ));
            }
            if fp.contains('\n') {
                out.schema.push(invalid_s(
                    child(&ip, "fieldPath"),
                    fp,
                    "fieldPath must not contain line breaks",
                ));
            }
            if !fp.is_empty()
                && structural_ok
                && let Some(n) = node.as_deref()
                && rules::valid_field_path(fp, n).is_err()
            {
                out.schema.push(invalid_s(
                    child(&ip, "fieldPath"),
                    fp,
                    "fieldPath must be a valid path",
                ));
            }
        }
        if out.schema.is_empty()
            && structural_ok
            && let Some(n) = node
        {
            rules::compile_node(
                n,
                &rules_json,
                &vp,
                is_root,
                ssv.uncorrelatable.as_deref(),
                &mut out.cel,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ValidateDefaults

fn defaults(
    n: &Node,
    root: &Node,
    p: &str,
    patterns: &validate::Patterns,
    errs: &mut Vec<FieldError>,
) {
    defaults_rec(n, root, p, patterns, false, errs);
}

fn defaults_rec(
    n: &Node,
    root: &Node,
    p: &str,
    patterns: &validate::Patterns,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
) {
    if let Some(d) = n.default.as_ref().filter(|d| !d.is_null()) {
        let dp = child(p, "default");
        if inside_meta {
            // upstream checks the default inside a synthetic object's metadata; kube-sim only
            // checks the value against the node's own schema.
            let r = validate::Validator { patterns }.validate(&n.raw, d, "");
            errs.extend(validate::to_field_errors(Some(&dp), &r));
        } else {
            let mut pruned = d.clone();
            prune::prune_value(&mut pruned, Some(n), n.embedded, &mut Vec::new(), "");
            if pruned != *d {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    dp.clone(),
                    Some(body_value(d)),
                    "must not have unknown fields",
                ));
            }
            let mut emb = Vec::new();
            validate::embedded_resources(&dp, n, d, &mut emb);
            if !emb.is_empty() {
                errs.extend(emb);
            } else {
                let r = validate::Validator { patterns }.validate(&n.raw, d, "");
                let ve = validate::to_field_errors(Some(&dp), &r);
                if !ve.is_empty() {
                    errs.extend(ve);
                } else {
                    rules::run(n, Some(&dp), d, Some(d), std::ptr::eq(n, root), errs);
                }
            }
        }
    }
    if let Some(items) = n.items.as_deref() {
        defaults_rec(items, root, &child(p, "items"), patterns, inside_meta, errs);
    }
    for (k, sub) in &n.properties {
        let sub_meta =
            inside_meta || (n.embedded && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
        defaults_rec(
            sub,
            root,
            &key(&child(p, "properties"), k),
            patterns,
            sub_meta,
            errs,
        );
    }
}
