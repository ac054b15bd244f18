//! CustomResourceDefinition defaulting and validation.
//!
//! Sources (apiextensions-apiserver v0.32.4): `pkg/apis/apiextensions/v1/{defaults,conversion}.go`,
//! `pkg/apis/apiextensions/validation/validation.go`, `pkg/registry/customresourcedefinition/
//! strategy.go`. Upstream validates the *internal* version: when every version carries the same
//! schema (always the case with one version), v1→internal conversion moves it to
//! `spec.validation`, so errors are reported at `spec.validation.openAPIV3Schema...`; the same
//! holds for `spec.subresources` and `spec.additionalPrinterColumns`. kube-sim reproduces that.

use serde_json::{Value, json};

use super::gofmt::sharp_v_strings;
use super::names::{self, NameRule, ObjectMetaOptions};
use super::{CrdSchema, structural};
use crate::error::{FieldError, FieldErrorType, go_quote};

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn invalid_s(path: impl Into<String>, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorType::Invalid, path, Some(go_quote(value)), detail)
}

/// Upstream CRD defaults (`SetDefaults_CustomResourceDefinition`): `names.singular` (lower-case
/// kind), `names.listKind` (`<kind>List`), `conversion: {strategy: None}`, webhook service port
/// 443, `status.storedVersions` from the storage version; plus the typed round-trip's
/// non-omitempty `served`/`storage` booleans.
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if names
            .get("singular")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && !kind.is_empty()
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    match spec.get_mut("conversion") {
        None | Some(Value::Null) => {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        Some(c) => {
            if let Some(svc) = c
                .pointer_mut("/webhook/clientConfig/service")
                .and_then(Value::as_object_mut)
            {
                svc.entry("port").or_insert(json!(443));
            }
        }
    }
    let mut storage = None;
    if let Some(versions) = spec.get_mut("versions").and_then(Value::as_array_mut) {
        for v in versions.iter_mut() {
            if let Some(o) = v.as_object_mut() {
                o.entry("served").or_insert(json!(false));
                o.entry("storage").or_insert(json!(false));
                if storage.is_none() && o.get("storage") == Some(&json!(true)) {
                    storage = o.get("name").cloned();
                }
            }
        }
    }
    let status = crd
        .as_object_mut()
        .map(|o| o.entry("status").or_insert(json!({})));
    if let (Some(Value::Object(st)), Some(name)) = (status, storage) {
        let empty = st
            .get("storedVersions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if empty {
            st.insert("storedVersions".into(), json!([name]));
        }
    }
}

/// The status a write leaves in place before validation (`PrepareForCreate`/`PrepareForUpdate`):
/// on create `storedVersions` is exactly the storage version; on update the old status is kept
/// and a new storage version is appended to `storedVersions`.
pub fn prepare_crd_status(crd: &mut Value, old: Option<&Value>) {
    let storage: Option<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage") == Some(&json!(true)))
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        });
    let mut status = match old {
        None => json!({"storedVersions": []}),
        Some(o) => o.get("status").cloned().unwrap_or(json!({})),
    };
    if let Some(st) = status.as_object_mut() {
        let stored = st.entry("storedVersions").or_insert(json!([]));
        if let (Some(a), Some(sv)) = (stored.as_array_mut(), storage)
            && !a.iter().any(|x| x.as_str() == Some(&sv))
        {
            a.push(json!(sv));
        }
    }
    if let Some(o) = crd.as_object_mut() {
        o.insert("status".into(), status);
    }
}

/// Go's `%#v` of `[]apiextensions.CustomResourceDefinitionVersion` cannot be reproduced (it
/// prints pointers); kube-sim prints the struct names and version names.
fn sharp_v_versions(versions: &[Value]) -> String {
    let items: Vec<String> = versions
        .iter()
        .map(|v| {
            format!(
                "apiextensions.CustomResourceDefinitionVersion{{Name:{}, Served:{}, Storage:{}, ...}}",
                go_quote(s(v, &["name"])),
                v.get("served").and_then(Value::as_bool).unwrap_or(false),
                v.get("storage").and_then(Value::as_bool).unwrap_or(false)
            )
        })
        .collect();
    format!(
        "[]apiextensions.CustomResourceDefinitionVersion{{{}}}",
        items.join(", ")
    )
}

fn identical<'a>(versions: &'a [Value], key: &str) -> (bool, Option<&'a Value>) {
    let first = versions
        .first()
        .and_then(|v| v.get(key))
        .filter(|x| !x.is_null());
    let same = versions
        .iter()
        .all(|v| v.get(key).filter(|x| !x.is_null()) == first);
    (same, first)
}

fn has_status(sub: Option<&Value>) -> bool {
    sub.and_then(|s| s.get("status"))
        .is_some_and(|x| !x.is_null())
}

/// `validateCustomResourceDefinitionValidation` for one schema at `path` (`...schema` or
/// `spec.validation`).
fn validate_schema_at(
    schema_holder: Option<&Value>,
    status_enabled: bool,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(schema) = schema_holder
        .and_then(|h| h.get("openAPIV3Schema"))
        .filter(|x| !x.is_null())
    else {
        return;
    };
    let prefix = format!("{path}.openAPIV3Schema");
    if status_enabled {
        const ALLOWED: &[&str] = &[
            "description",
            "type",
            "format",
            "title",
            "maximum",
            "exclusiveMaximum",
            "minimum",
            "exclusiveMinimum",
            "maxLength",
            "minLength",
            "pattern",
            "maxItems",
            "minItems",
            "uniqueItems",
            "multipleOf",
            "required",
            "items",
            "properties",
            "externalDocs",
            "example",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-validations",
        ];
        if let Some(o) = schema.as_object() {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("");
            if !t.is_empty() && t != "object" {
                errs.push(invalid_s(
                    format!("{prefix}.type"),
                    t,
                    r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
                ));
            } else if o
                .iter()
                .any(|(k, v)| !ALLOWED.contains(&k.as_str()) && !v.is_null() && v != &json!(false))
            {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    prefix.clone(),
                    Some("apiextensions.JSONSchemaProps{...}".into()),
                    "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled",
                ));
            }
        }
    }
    if let Err(e) = structural::compile(schema, &prefix) {
        errs.extend(e);
    }
}

fn validate_json_path(p: &str, path: &str, errs: &mut Vec<FieldError>) -> bool {
    if p.is_empty() {
        errs.push(invalid_s(path, p, "must not be empty"));
        false
    } else if !p.starts_with('.') {
        errs.push(invalid_s(
            path,
            p,
            "must be a simple json path starting with .",
        ));
        false
    } else {
        true
    }
}

fn validate_subresources(sub: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(scale) = sub.and_then(|x| x.get("scale")).filter(|x| !x.is_null()) else {
        return;
    };
    let spec_p = s(scale, &["specReplicasPath"]);
    if spec_p.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.scale.specReplicasPath"),
            "",
        ));
    } else if validate_json_path(spec_p, &format!("{path}.scale.specReplicasPath"), errs)
        && !spec_p.starts_with(".spec.")
    {
        errs.push(invalid_s(
            format!("{path}.scale.specReplicasPath"),
            spec_p,
            "should be a json path under .spec",
        ));
    }
    let st_p = s(scale, &["statusReplicasPath"]);
    if st_p.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.scale.statusReplicasPath"),
            "",
        ));
    } else if validate_json_path(st_p, &format!("{path}.scale.statusReplicasPath"), errs)
        && !st_p.starts_with(".status.")
    {
        errs.push(invalid_s(
            format!("{path}.scale.statusReplicasPath"),
            st_p,
            "should be a json path under .status",
        ));
    }
    let ls = s(scale, &["labelSelectorPath"]);
    if !ls.is_empty()
        && validate_json_path(ls, &format!("{path}.scale.labelSelectorPath"), errs)
        && !ls.starts_with(".spec.")
        && !ls.starts_with(".status.")
    {
        errs.push(invalid_s(
            format!("{path}.scale.labelSelectorPath"),
            ls,
            "should be a json path under either .spec or .status",
        ));
    }
}

fn validate_columns(cols: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(cols) = cols.and_then(Value::as_array) else {
        return;
    };
    const TYPES: &str = "boolean,date,integer,number,string";
    const FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
    for (i, c) in cols.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if s(c, &["name"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        let t = s(c, &["type"]);
        if t.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.type"),
                format!("must be one of {TYPES}"),
            ));
        } else if !TYPES.split(',').any(|x| x == t) {
            errs.push(invalid_s(
                format!("{p}.type"),
                t,
                format!("must be one of {TYPES}"),
            ));
        }
        let f = s(c, &["format"]);
        if !f.is_empty() && !FORMATS.split(',').any(|x| x == f) {
            errs.push(invalid_s(
                format!("{p}.format"),
                f,
                format!("must be one of {FORMATS}"),
            ));
        }
        let jp = s(c, &["jsonPath"]);
        if jp.is_empty() {
            errs.push(FieldError::required(format!("{p}.JSONPath"), ""));
        } else {
            validate_json_path(jp, &format!("{p}.JSONPath"), errs);
        }
    }
}

fn dns1035_joined(v: &str) -> Option<String> {
    let e = names::is_dns1035_label(v);
    (!e.is_empty()).then(|| e.join(","))
}

fn validate_names(names: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["plural", "singular"] {
        let v = s(names, &[k]);
        if !v.is_empty()
            && let Some(e) = dns1035_joined(v)
        {
            errs.push(invalid_s(format!("{path}.{k}"), v, e));
        }
    }
    for k in ["kind", "listKind"] {
        let v = s(names, &[k]);
        if !v.is_empty()
            && let Some(e) = dns1035_joined(&v.to_lowercase())
        {
            errs.push(invalid_s(
                format!("{path}.{k}"),
                v,
                format!("may have mixed case, but should otherwise match: {e}"),
            ));
        }
    }
    for k in ["shortNames"] {
        for (i, v) in names
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let v = v.as_str().unwrap_or("");
            if let Some(e) = dns1035_joined(v) {
                errs.push(invalid_s(format!("{path}.{k}[{i}]"), v, e));
            }
        }
    }
    let (kind, list_kind) = (s(names, &["kind"]), s(names, &["listKind"]));
    if !kind.is_empty() && kind == list_kind {
        errs.push(invalid_s(
            format!("{path}.listKind"),
            list_kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, v) in names
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let v = v.as_str().unwrap_or("");
        if let Some(e) = dns1035_joined(v) {
            errs.push(invalid_s(format!("{path}.categories[{i}]"), v, e));
        }
    }
}

fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, &["type"]) == "Established" && s(c, &["status"]) == "True")
        })
}

/// Full validation of a CustomResourceDefinition (v1 JSON, after [`default_crd`]) on create
/// (`old == None`) and update: metadata (name must be `<plural>.<group>`), group, scope, names,
/// versions (DNS-1035 names, exactly one storage version, unique), each schema (structural,
/// OpenAPI rules, defaults, CEL rules — via [`CrdSchema::compile`]), subresources, printer
/// columns, conversion, stored versions, and on update the immutable scope (once Established),
/// group and plural. The stored versions checked are the ones upstream's strategy leaves in
/// place (see [`prepare_crd_status`]), so removing a stored version from `spec.versions` fails
/// with `status.storedVersions[i]: Invalid value: "v1": must appear in spec.versions`.
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut crd = crd.clone();
    prepare_crd_status(&mut crd, old);
    let crd = &crd;
    let empty = json!({});
    let meta = crd.get("metadata").unwrap_or(&empty);
    let spec = crd.get("spec").unwrap_or(&empty);
    let names = spec.get("names").unwrap_or(&empty);
    let group = s(spec, &["group"]);
    let plural = s(names, &["plural"]);
    let mut errs = Vec::new();

    // metadata
    match old {
        None => {
            let required = format!("{plural}.{group}");
            let extra = move |name: &str, _prefix: bool| -> Vec<String> {
                if name != required {
                    vec![r#"must be spec.names.plural+"."+spec.group"#.to_string()]
                } else {
                    vec![]
                }
            };
            errs.extend(names::validate_object_meta_with(
                meta,
                &ObjectMetaOptions {
                    name_rule: NameRule::DnsSubdomain,
                    namespaced: Some(false),
                    path: "metadata",
                    extra_name_check: Some(&extra),
                },
                None,
            ));
        }
        Some(o) => errs.extend(names::validate_object_meta(
            meta,
            NameRule::DnsSubdomain,
            Some(o.get("metadata").unwrap_or(&empty)),
        )),
    }

    // spec
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let e = names::is_dns1123_subdomain(group);
        if !e.is_empty() {
            errs.push(invalid_s("spec.group", group, e.join(",")));
        } else if !group.contains('.') {
            errs.push(invalid_s(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    let scope = s(spec, &["scope"]);
    if scope.is_empty() {
        errs.push(FieldError::required("spec.scope", ""));
    } else if scope != "Cluster" && scope != "Namespaced" {
        errs.push(FieldError::new(
            FieldErrorType::NotSupported,
            "spec.scope",
            Some(go_quote(scope)),
            "supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    let versions: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (schema_same, top_schema) = identical(&versions, "schema");
    let (sub_same, top_sub) = identical(&versions, "subresources");
    let (cols_same, top_cols) = identical(&versions, "additionalPrinterColumns");
    if !(schema_same
        && top_schema.is_some_and(|s| s.get("openAPIV3Schema").is_some_and(|x| !x.is_null())))
    {
        for (i, v) in versions.iter().enumerate() {
            if v.pointer("/schema/openAPIV3Schema")
                .is_none_or(Value::is_null)
            {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    let any_status = if sub_same {
        has_status(top_sub)
    } else {
        versions.iter().any(|v| has_status(v.get("subresources")))
    };
    let mut storage_count = 0;
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        let vp = format!("spec.versions[{i}]");
        if v.get("storage") == Some(&json!(true)) {
            storage_count += 1;
        }
        let name = s(v, &["name"]);
        if seen.contains(&name) {
            unique = false;
        } else {
            seen.push(name);
        }
        if let Some(e) = dns1035_joined(name) {
            errs.push(invalid_s(format!("{vp}.name"), name, e));
        }
        // deprecationWarning
        let deprecated = v.get("deprecated") == Some(&json!(true));
        if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
            let mut msgs = Vec::new();
            if !deprecated {
                msgs.push("can only be set for deprecated versions".to_string());
            } else {
                if w.len() > 256 {
                    msgs.push("must be <= 256 characters long".into());
                }
                if w.is_empty() {
                    msgs.push("must not be an empty string".into());
                }
                if let Some((idx, _)) = w.char_indices().find(|(_, c)| c.is_control()) {
                    msgs.push(format!(
                        "must only contain printable UTF-8 characters; control character found at index {idx}"
                    ));
                }
            }
            for m in msgs {
                errs.push(invalid_s(format!("{vp}.deprecationWarning"), w, m));
            }
        }
        let status_enabled = if sub_same {
            has_status(top_sub)
        } else {
            has_status(v.get("subresources"))
        };
        if !schema_same {
            validate_schema_at(
                v.get("schema"),
                status_enabled,
                &format!("{vp}.schema"),
                &mut errs,
            );
        }
        if !sub_same {
            validate_subresources(
                v.get("subresources"),
                &format!("{vp}.subresources"),
                &mut errs,
            );
        }
        if !cols_same {
            validate_columns(
                v.get("additionalPrinterColumns"),
                &format!("{vp}.additionalPrinterColumns"),
                &mut errs,
            );
        }
    }
    if !unique {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            "spec.versions",
            Some(sharp_v_versions(&versions)),
            "must contain unique version names",
        ));
    }
    if storage_count != 1 {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            "spec.versions",
            Some(sharp_v_versions(&versions)),
            "must have exactly one version marked as storage version",
        ));
    }
    if let Some(first) = versions.first() {
        let name = s(first, &["name"]);
        if !name.is_empty()
            && let Some(e) = dns1035_joined(name)
        {
            errs.push(invalid_s("spec.version", name, e));
        }
    }
    for (k, p) in [
        ("plural", "spec.names.plural"),
        ("singular", "spec.names.singular"),
        ("kind", "spec.names.kind"),
        ("listKind", "spec.names.listKind"),
    ] {
        if s(names, &[k]).is_empty() {
            errs.push(FieldError::required(p, ""));
        }
    }
    validate_names(names, "spec.names", &mut errs);
    if schema_same {
        validate_schema_at(top_schema, any_status, "spec.validation", &mut errs);
    }
    if sub_same {
        validate_subresources(top_sub, "spec.subresources", &mut errs);
    }
    if cols_same {
        validate_columns(top_cols, "spec.additionalPrinterColumns", &mut errs);
    }
    // conversion
    if let Some(conv) = spec.get("conversion").filter(|c| !c.is_null()) {
        let strategy = s(conv, &["strategy"]);
        if strategy.is_empty() {
            errs.push(FieldError::required("spec.conversion.strategy", ""));
        } else if strategy != "None" && strategy != "Webhook" {
            errs.push(FieldError::new(
                FieldErrorType::NotSupported,
                "spec.conversion.strategy",
                Some(go_quote(strategy)),
                "supported values: \"None\", \"Webhook\"",
            ));
        }
        let webhook = conv.get("webhook").filter(|w| !w.is_null());
        let cc = webhook
            .and_then(|w| w.get("clientConfig"))
            .filter(|c| !c.is_null());
        let crv: Vec<String> = webhook
            .and_then(|w| w.get("conversionReviewVersions"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        if strategy == "Webhook" {
            match cc {
                None => errs.push(FieldError::required(
                    "spec.conversion.webhookClientConfig",
                    "required when strategy is set to Webhook",
                )),
                Some(c) => {
                    let has_url = c.get("url").is_some_and(|x| !x.is_null());
                    let has_svc = c.get("service").is_some_and(|x| !x.is_null());
                    if has_url == has_svc {
                        errs.push(FieldError::required(
                            "spec.conversion.webhookClientConfig",
                            "exactly one of url or service is required",
                        ));
                    }
                }
            }
            if crv.is_empty() {
                errs.push(FieldError::required(
                    "spec.conversion.conversionReviewVersions",
                    "",
                ));
            } else if !crv.iter().any(|v| v == "v1" || v == "v1beta1") {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    "spec.conversion.conversionReviewVersions",
                    Some(sharp_v_strings(&crv)),
                    "must include at least one of v1, v1beta1",
                ));
            }
        } else {
            if cc.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.conversion.webhookClientConfig",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
            if !crv.is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.conversion.conversionReviewVersions",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
    }
    // update-only spec rules
    if let Some(o) = old {
        let ospec = o.get("spec").unwrap_or(&empty);
        if is_established(o) {
            let oscope = s(ospec, &["scope"]);
            if scope != oscope {
                errs.push(invalid_s(
                    "spec.scope",
                    scope,
                    names::FIELD_IMMUTABLE_ERROR_MSG,
                ));
            }
            let (k, ok) = (s(names, &["kind"]), s(ospec, &["names", "kind"]));
            if k != ok {
                errs.push(invalid_s(
                    "spec.names.kind",
                    k,
                    names::FIELD_IMMUTABLE_ERROR_MSG,
                ));
            }
        }
        if group != s(ospec, &["group"]) {
            errs.push(invalid_s(
                "spec.group",
                group,
                names::FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
        if plural != s(ospec, &["names", "plural"]) {
            errs.push(invalid_s(
                "spec.names.plural",
                plural,
                names::FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
    }
    // status
    if let Some(accepted) = crd.pointer("/status/acceptedNames") {
        validate_names(accepted, "status.acceptedNames", &mut errs);
    }
    let stored: Vec<String> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    if stored.is_empty() {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            "status.storedVersions",
            Some("[]string{}".into()),
            "must have at least one stored version",
        ));
    } else {
        let mut remaining: Vec<(usize, &String)> = stored.iter().enumerate().collect();
        for v in &versions {
            let name = s(v, &["name"]);
            let found = remaining.iter().position(|(_, x)| x.as_str() == name);
            if v.get("storage") == Some(&json!(true))
                && found.is_none()
                && !stored.iter().any(|x| x == name)
            {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    "status.storedVersions",
                    Some(sharp_v_strings(&stored)),
                    format!("must have the storage version {name}"),
                ));
            }
            if let Some(pos) = found {
                remaining.remove(pos);
            }
        }
        for (i, v) in remaining {
            errs.push(invalid_s(
                format!("status.storedVersions[{i}]"),
                v,
                "must appear in spec.versions",
            ));
        }
    }
    // preserveUnknownFields
    let old_preserve =
        old.and_then(|o| o.pointer("/spec/preserveUnknownFields")) == Some(&json!(true));
    if !old_preserve && spec.get("preserveUnknownFields") == Some(&json!(true)) {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            "spec.preserveUnknownFields",
            Some("true".into()),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs
}

/// Validation of a write to `customresourcedefinitions/{name}/status`
/// (`ValidateUpdateCustomResourceDefinitionStatus`): metadata update rules and accepted names.
pub fn validate_crd_status_update(crd: &Value, old: &Value) -> Vec<FieldError> {
    let empty = json!({});
    let mut errs = names::validate_object_meta(
        crd.get("metadata").unwrap_or(&empty),
        NameRule::DnsSubdomain,
        Some(old.get("metadata").unwrap_or(&empty)),
    );
    if let Some(accepted) = crd.pointer("/status/acceptedNames") {
        validate_names(accepted, "status.acceptedNames", &mut errs);
    }
    errs
}

/// Compile the schema of every served version of a (valid) CRD: `(version name, schema)`.
pub fn compile_crd_schemas(crd: &Value) -> Result<Vec<(String, CrdSchema)>, Vec<FieldError>> {
    let mut out = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, v) in versions.iter().enumerate() {
        let name = s(v, &["name"]).to_string();
        let schema = match v
            .pointer("/schema/openAPIV3Schema")
            .filter(|x| !x.is_null())
        {
            Some(sc) => {
                CrdSchema::compile(sc, &format!("spec.versions[{i}].schema.openAPIV3Schema"))?
            }
            None => CrdSchema::preserve_unknown(),
        };
        out.push((name, schema));
    }
    Ok(out)
}
