//! Per-kind behaviour of the built-in kinds: typed decoding (k8s-openapi round-trip, which also
//! finds unknown fields), defaulting, strategies (status, generation) and validation with
//! upstream's messages, plus the events.k8s.io ↔ core/v1 Event mapping.

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::{FieldError, FieldErrorType, StatusError, go_quote, render_value};
use crate::registry::{Kind, ResourceType};
use crate::schema_api::{NameRule, is_dns1123_subdomain, is_qualified_name};

/// The name rule of a kind (`ValidateNameFunc`).
pub fn name_rule(kind: Kind) -> NameRule {
    match kind {
        Kind::Namespace | Kind::Service => NameRule::DnsLabel,
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding => {
            NameRule::PathSegment
        }
        _ => NameRule::DnsSubdomain,
    }
}

fn roundtrip<K: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let k: K = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&k).map_err(|e| e.to_string())
}

/// Remove from `input` every member the typed round-trip dropped, recording its path.
fn strip_unknown(input: &mut Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            let mut remove = Vec::new();
            for (k, v) in i.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    None => {
                        if !v.is_null() {
                            out.push(p);
                        }
                        remove.push(k.clone());
                    }
                    Some(ov) => strip_unknown(v, ov, &p, out),
                }
            }
            for k in remove {
                i.remove(&k);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter_mut().zip(o.iter()).enumerate() {
                strip_unknown(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

macro_rules! typed {
    ($v:expr, $($kind:pat => $ty:ty),* $(,)?) => {
        |k: Kind, v: &Value| -> Option<Result<Value, String>> {
            match k {
                $($kind => Some(roundtrip::<$ty>(v)),)*
                _ => None,
            }
        }
    };
}

/// Decode a built-in object through its k8s-openapi type: type errors → 400 like upstream's
/// decoder; unknown fields are removed from `obj` and returned as paths (`spec.bogus`).
pub fn decode_typed(rt: &ResourceType, obj: &mut Value) -> Result<Vec<String>, StatusError> {
    use k8s_openapi::api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        coordination::v1 as coord, core::v1 as core, events::v1 as events, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let f = typed!(obj,
        Kind::Namespace => core::Namespace,
        Kind::Secret => core::Secret,
        Kind::ConfigMap => core::ConfigMap,
        Kind::ServiceAccount => core::ServiceAccount,
        Kind::Event => core::Event,
        Kind::EventV1 => events::Event,
        Kind::Service => core::Service,
        Kind::ComponentStatus => core::ComponentStatus,
        Kind::Lease => coord::Lease,
        Kind::Deployment => apps::Deployment,
        Kind::StatefulSet => apps::StatefulSet,
        Kind::DaemonSet => apps::DaemonSet,
        Kind::ReplicaSet => apps::ReplicaSet,
        Kind::ControllerRevision => apps::ControllerRevision,
        Kind::Pod => core::Pod,
        Kind::Node => core::Node,
        Kind::Crd => apiext::CustomResourceDefinition,
        Kind::Role => rbac::Role,
        Kind::ClusterRole => rbac::ClusterRole,
        Kind::RoleBinding => rbac::RoleBinding,
        Kind::ClusterRoleBinding => rbac::ClusterRoleBinding,
        Kind::SelfSubjectAccessReview => authz::SelfSubjectAccessReview,
        Kind::SubjectAccessReview => authz::SubjectAccessReview,
        Kind::LocalSubjectAccessReview => authz::LocalSubjectAccessReview,
        Kind::SelfSubjectRulesReview => authz::SelfSubjectRulesReview,
        Kind::TokenReview => authn::TokenReview,
        Kind::SelfSubjectReview => authn::SelfSubjectReview,
    );
    let Some(res) = f(rt.behaviour, obj) else {
        return Ok(Vec::new());
    };
    match res {
        Ok(out) => {
            let mut unknown = Vec::new();
            strip_unknown(obj, &out, "", &mut unknown);
            Ok(unknown)
        }
        Err(e) => Err(StatusError::bad_request(format!(
            "{} in version {} cannot be handled as a {}: {}",
            rt.kind,
            go_quote(&rt.version),
            rt.kind,
            e
        ))),
    }
}

/// Decode-time conversions and defaults (`SetDefaults_*`, Secret `stringData`), applied to
/// every incoming object (create, update, patch result). Errors are decode errors (400).
pub fn decode_defaults(rt: &ResourceType, obj: &mut Value) -> Result<(), StatusError> {
    let Some(m) = obj.as_object_mut() else {
        return Ok(());
    };
    match rt.behaviour {
        Kind::Secret => {
            if let Some(Value::Object(data)) = m.get("data") {
                for (_, v) in data.iter() {
                    if let Value::String(s) = v
                        && let Err(pos) = check_base64(s)
                    {
                        return Err(StatusError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {pos}"
                        )));
                    }
                }
            }
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
                if !data.is_object() {
                    *data = Value::Object(Map::new());
                }
                if let Some(data) = data.as_object_mut() {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or("").to_string();
                        data.insert(
                            k,
                            Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
            if m.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                m.insert("type".into(), json!("Opaque"));
            }
        }
        Kind::ConfigMap => {
            if let Some(Value::Object(data)) = m.get("binaryData") {
                for (_, v) in data.iter() {
                    if let Value::String(s) = v
                        && let Err(pos) = check_base64(s)
                    {
                        return Err(StatusError::bad_request(format!(
                            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: illegal base64 data at input byte {pos}"
                        )));
                    }
                }
            }
        }
        Kind::Deployment => {
            let spec = obj_entry(m, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            let strategy = spec.entry("strategy").or_insert(json!({}));
            if let Some(s) = strategy.as_object_mut() {
                let t = s.entry("type").or_insert(json!("RollingUpdate"));
                if t.as_str() == Some("RollingUpdate") {
                    let ru = s.entry("rollingUpdate").or_insert(json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("maxUnavailable").or_insert(json!("25%"));
                        ru.entry("maxSurge").or_insert(json!("25%"));
                    }
                }
            }
            crate::workloads::spec::default_template(spec);
        }
        Kind::ReplicaSet => {
            let spec = obj_entry(m, "spec");
            spec.entry("replicas").or_insert(json!(1));
            crate::workloads::spec::default_template(spec);
        }
        Kind::Pod => {
            let spec = obj_entry(m, "spec");
            crate::workloads::spec::default_pod_spec(spec, true);
        }
        Kind::StatefulSet => {
            let spec = obj_entry(m, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("podManagementPolicy")
                .or_insert(json!("OrderedReady"));
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            crate::workloads::spec::default_template(spec);
        }
        Kind::DaemonSet => {
            let spec = obj_entry(m, "spec");
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy").or_insert(json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}
            }));
            crate::workloads::spec::default_template(spec);
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            // SetDefaults_Subject: ServiceAccount subjects get apiGroup "", users/groups the RBAC group.
            if let Some(Value::Array(subjects)) = m.get_mut("subjects") {
                for s in subjects.iter_mut() {
                    if let Some(s) = s.as_object_mut()
                        && s.get("apiGroup")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                    {
                        match s.get("kind").and_then(Value::as_str) {
                            Some("User" | "Group") => {
                                s.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
                            }
                            Some("ServiceAccount") => {
                                s.insert("apiGroup".into(), json!(""));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Kind::Service => {
            let spec = obj_entry(m, "spec");
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
        }
        _ => {}
    }
    Ok(())
}

fn obj_entry<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let e = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    match e {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// Go's `base64.StdEncoding` strictness: returns the byte offset of the first error.
fn check_base64(s: &str) -> Result<(), usize> {
    let bytes = s.as_bytes();
    if base64::engine::general_purpose::STANDARD.decode(s).is_ok() {
        return Ok(());
    }
    for (i, b) in bytes.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/' || *b == b'=') {
            return Err(i);
        }
    }
    // Wrong length or padding: Go reports the offset of the last complete quantum.
    Err(bytes.len() - bytes.len() % 4)
}

/// Create strategy (`PrepareForCreate`): status handling and server-set spec fields.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    let name = crate::meta::name(obj).to_string();
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    match rt.behaviour {
        Kind::Namespace => {
            let spec = obj_entry(m, "spec");
            let has = spec
                .get("finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|f| f == "kubernetes"));
            if !has {
                let mut f = spec
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                f.push(json!("kubernetes"));
                spec.insert("finalizers".into(), Value::Array(f));
            }
            m.insert("status".into(), json!({"phase": "Active"}));
            let meta = obj_entry(m, "metadata");
            let labels = obj_entry(meta, "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        Kind::Deployment
        | Kind::StatefulSet
        | Kind::DaemonSet
        | Kind::ReplicaSet
        | Kind::Service
        | Kind::Crd => {
            m.remove("status");
        }
        Kind::Pod => {
            // PodStrategy.PrepareForCreate: a new Pod is Pending, whatever it says.
            m.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos_class(m.get("spec"))}),
            );
        }
        Kind::Custom if rt.status => {
            m.remove("status");
        }
        _ => {}
    }
}

/// Update strategy of the main resource (`PrepareForUpdate`): status of kinds with a status
/// subresource is kept from the stored object; returns whether generation must increase.
pub fn prepare_update(rt: &ResourceType, old: &Value, new: &mut Value) -> bool {
    if rt.status {
        match old.get("status") {
            Some(s) => {
                if let Some(m) = new.as_object_mut() {
                    m.insert("status".into(), s.clone());
                }
            }
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    match rt.behaviour {
        Kind::Namespace => {
            // spec.finalizers change only through /finalize.
            if let Some(f) = old.pointer("/spec/finalizers")
                && let Some(m) = new.as_object_mut()
            {
                let spec = obj_entry(m, "spec");
                spec.insert("finalizers".into(), f.clone());
            }
            let name = crate::meta::name(old).to_string();
            let meta = crate::meta::meta_mut(new);
            let labels = obj_entry(meta, "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            false
        }
        Kind::Custom => !crate::meta::equal_ignoring_metadata(old, new),
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet | Kind::Crd => {
            !crate::meta::json_eq(
                old.get("spec").unwrap_or(&Value::Null),
                new.get("spec").unwrap_or(&Value::Null),
            )
        }
        _ => false,
    }
}

/// `GetPodQOS`, for the containers' requests and limits.
pub fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        let full = |m: Option<&serde_json::Map<String, Value>>| {
            m.is_some_and(|m| m.contains_key("cpu") && m.contains_key("memory"))
        };
        if !full(lim) || (req.is_some() && req != lim && req.is_some_and(|r| !r.is_empty())) {
            guaranteed = false;
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The grace period of a DELETE for kinds with graceful deletion (`CheckGracefulDelete`):
/// Pods that are scheduled and not finished wait `gracePeriodSeconds` (default
/// `spec.terminationGracePeriodSeconds`, 30) for the kubelet; `None` for every other kind.
/// `requested`: the DELETE's `gracePeriodSeconds`.
pub fn deletion_grace(rt: &ResourceType, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if rt.behaviour != Kind::Pod {
        return None;
    }
    let unscheduled = crate::meta::str_at(obj, "/spec/nodeName").is_empty();
    let finished = matches!(
        crate::meta::str_at(obj, "/status/phase"),
        "Succeeded" | "Failed"
    );
    if unscheduled || finished {
        return Some(0);
    }
    let default = obj
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    Some(requested.unwrap_or(default).max(0))
}

/// The `/status` strategy: everything but `status` (and managedFields) comes from the stored
/// object.
pub fn status_update(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    if let Some(m) = out.as_object_mut() {
        match new.get("status") {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
    match new.pointer("/metadata/managedFields") {
        Some(mf) => {
            crate::meta::meta_mut(&mut out).insert("managedFields".into(), mf.clone());
        }
        None => {
            crate::meta::meta_mut(&mut out).remove("managedFields");
        }
    }
    // The resourceVersion precondition of the request is kept for the conflict check.
    if let Some(rv) = new.pointer("/metadata/resourceVersion") {
        crate::meta::meta_mut(&mut out).insert("resourceVersion".into(), rv.clone());
    }
    out
}

fn str_map(v: Option<&Value>) -> Vec<(String, Value)> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// `RegexError` of apimachinery.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = msg.to_string();
    if !examples.is_empty() {
        s.push_str(" (e.g. ");
        let ex: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
        s.push_str(&ex.join(",  or "));
        s.push_str(", ");
    } else {
        s.push_str(" (");
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// `IsConfigMapKey`.
pub fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".into());
    } else if key == ".." {
        errs.push("must not be '..'".into());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

fn key_field(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

fn immutable(path: &str, new: &Value) -> FieldError {
    FieldError::invalid(path, new, "field is immutable")
}

const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn decoded_len(v: &Value) -> usize {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| b.len())
        .unwrap_or(0)
}

fn validate_secret(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        let (nt, ot) = (
            new.get("type").cloned().unwrap_or(json!("")),
            old.get("type").cloned().unwrap_or(json!("")),
        );
        if nt != ot {
            errs.push(immutable("type", &nt));
        }
        if old.get("immutable").and_then(Value::as_bool) == Some(true) {
            if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            if !crate::meta::json_eq(
                new.get("data").unwrap_or(&Value::Null),
                old.get("data").unwrap_or(&Value::Null),
            ) {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    let data = str_map(new.get("data"));
    let mut total = 0;
    for (k, v) in &data {
        for msg in config_map_key_errors(k) {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                key_field("data", k),
                Some(go_quote(k)),
                msg,
            ));
        }
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::new(
            FieldErrorType::TooLong,
            "data",
            None,
            format!("may not be more than {MAX_SECRET_SIZE} bytes"),
        ));
    }
    let has = |k: &str| data.iter().any(|(x, _)| x == k);
    let get = |k: &str| {
        data.iter()
            .find(|(x, _)| x == k)
            .and_then(|(_, v)| v.as_str())
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    };
    let t = new.get("type").and_then(Value::as_str).unwrap_or("");
    let required = |errs: &mut Vec<FieldError>, k: &str| {
        errs.push(FieldError::required(key_field("data", k), ""));
    };
    match t {
        "kubernetes.io/service-account-token" => {
            let ok = new
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !ok {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match get(key) {
                None if !has(key) => required(&mut errs, key),
                bytes => {
                    let b = bytes.unwrap_or_default();
                    if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&b) {
                        errs.push(FieldError::new(
                            FieldErrorType::Invalid,
                            key_field("data", key),
                            Some(go_quote("<secret contents redacted>")),
                            e.to_string(),
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required(&mut errs, "username");
            required(&mut errs, "password");
        }
        "kubernetes.io/ssh-auth" if get("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            required(&mut errs, "ssh-privatekey");
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                required(&mut errs, "tls.crt");
            }
            if !has("tls.key") {
                required(&mut errs, "tls.key");
            }
        }
        _ => {}
    }
    errs
}

fn validate_config_map(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old
        && old.get("immutable").and_then(Value::as_bool) == Some(true)
    {
        if new.get("immutable").and_then(Value::as_bool) != Some(true) {
            errs.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for f in ["data", "binaryData"] {
            if !crate::meta::json_eq(
                new.get(f).unwrap_or(&Value::Null),
                old.get(f).unwrap_or(&Value::Null),
            ) {
                errs.push(FieldError::forbidden(
                    f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    let data = str_map(new.get("data"));
    let binary = str_map(new.get("binaryData"));
    let mut total = 0;
    for (k, v) in &data {
        for msg in config_map_key_errors(k) {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                key_field("data", k),
                Some(go_quote(k)),
                msg,
            ));
        }
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    for (k, v) in &binary {
        for msg in config_map_key_errors(k) {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                key_field("binaryData", k),
                Some(go_quote(k)),
                msg,
            ));
        }
        if data.iter().any(|(x, _)| x == k) {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                "binaryData",
                Some(go_quote(k)),
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::new(
            FieldErrorType::TooLong,
            "",
            None,
            format!("may not be more than {MAX_SECRET_SIZE} bytes"),
        ));
    }
    errs
}

fn validate_lease(new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(d) = new.pointer("/spec/leaseDurationSeconds")
        && d.as_i64().is_some_and(|d| d <= 0)
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = new.pointer("/spec/leaseTransitions")
        && t.as_i64().is_some_and(|t| t < 0)
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

fn validate_namespace(new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(f) = new.pointer("/spec/finalizers").and_then(Value::as_array) {
        for (i, x) in f.iter().enumerate() {
            let s = x.as_str().unwrap_or("");
            for msg in is_qualified_name(s) {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    format!("spec.finalizers[{i}]"),
                    Some(go_quote(s)),
                    msg,
                ));
            }
        }
    }
    errs
}

fn role_ref_go(v: &Value) -> String {
    let s = |k: &str| go_quote(v.get(k).and_then(Value::as_str).unwrap_or(""));
    format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        s("apiGroup"),
        s("kind"),
        s("name")
    )
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn go_string_slice(v: &[String]) -> String {
    format!(
        "[]string{{{}}}",
        v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ")
    )
}

fn validate_rules(new: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules = new
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, r) in rules.iter().enumerate() {
        let p = |f: &str| format!("rules[{i}].{f}");
        let verbs = strings(r.get("verbs"));
        let groups = strings(r.get("apiGroups"));
        let resources = strings(r.get("resources"));
        let names = strings(r.get("resourceNames"));
        let urls = strings(r.get("nonResourceURLs"));
        if verbs.is_empty() {
            errs.push(FieldError::required(
                p("verbs"),
                "verbs must contain at least one value",
            ));
        }
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    p("nonResourceURLs"),
                    Some(go_string_slice(&urls)),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    p("nonResourceURLs"),
                    Some(go_string_slice(&urls)),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups.is_empty() {
            errs.push(FieldError::required(
                p("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errs.push(FieldError::required(
                p("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

fn not_supported(path: &str, v: &str, supported: &[&str]) -> FieldError {
    FieldError::new(
        FieldErrorType::NotSupported,
        path,
        Some(go_quote(v)),
        format!(
            "supported values: {}",
            supported
                .iter()
                .map(|s| go_quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn validate_binding(new: &Value, old: Option<&Value>, cluster: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rr = new.get("roleRef").cloned().unwrap_or(json!({}));
    if let Some(old) = old {
        let orr = old.get("roleRef").cloned().unwrap_or(json!({}));
        if !crate::meta::json_eq(&rr, &orr) {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                "roleRef",
                Some(role_ref_go(&rr)),
                "cannot change roleRef",
            ));
            return errs;
        }
    }
    let g = rr.get("apiGroup").and_then(Value::as_str).unwrap_or("");
    if g != "rbac.authorization.k8s.io" {
        errs.push(not_supported(
            "roleRef.apiGroup",
            g,
            &["rbac.authorization.k8s.io"],
        ));
    }
    let k = rr.get("kind").and_then(Value::as_str).unwrap_or("");
    if cluster {
        if k != "ClusterRole" {
            errs.push(not_supported("roleRef.kind", k, &["ClusterRole"]));
        }
    } else if k != "Role" && k != "ClusterRole" {
        errs.push(not_supported("roleRef.kind", k, &["Role", "ClusterRole"]));
    }
    let n = rr.get("name").and_then(Value::as_str).unwrap_or("");
    if n.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if let Some(subjects) = new.get("subjects").and_then(Value::as_array) {
        for (i, s) in subjects.iter().enumerate() {
            let p = |f: &str| format!("subjects[{i}].{f}");
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(p("name"), ""));
            }
            let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
            let api_group = s.get("apiGroup").and_then(Value::as_str).unwrap_or("");
            match kind {
                "ServiceAccount" => {
                    if !api_group.is_empty() {
                        errs.push(not_supported(p("apiGroup").as_str(), api_group, &[""]));
                    }
                    if cluster
                        && s.get("namespace")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                    {
                        errs.push(FieldError::required(p("namespace"), ""));
                    }
                }
                "User" | "Group" => {
                    if api_group != "rbac.authorization.k8s.io" {
                        errs.push(not_supported(
                            p("apiGroup").as_str(),
                            api_group,
                            &["rbac.authorization.k8s.io"],
                        ));
                    }
                }
                _ => errs.push(not_supported(
                    p("kind").as_str(),
                    kind,
                    &["ServiceAccount", "User", "Group"],
                )),
            }
        }
    }
    errs
}

fn validate_workload(new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(r) = new.pointer("/spec/replicas")
        && r.as_i64().is_some_and(|r| r < 0)
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    match new.pointer("/spec/selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            if empty {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for deployment",
                ));
            } else if let Ok(s) = crate::selector::LabelSelector::from_object(sel) {
                let labels = new
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object);
                if !s.matches(labels) {
                    let rendered = labels
                        .map(|l| {
                            let mut kv: Vec<String> = l
                                .iter()
                                .map(|(k, v)| {
                                    format!(
                                        "{}:{}",
                                        go_quote(k),
                                        go_quote(v.as_str().unwrap_or(""))
                                    )
                                })
                                .collect();
                            kv.sort();
                            format!("map[string]string{{{}}}", kv.join(", "))
                        })
                        .unwrap_or_else(|| "map[string]string(nil)".to_string());
                    errs.push(FieldError::new(
                        FieldErrorType::Invalid,
                        "spec.template.metadata.labels",
                        Some(rendered),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    errs
}

fn template_errors(new: &Value) -> Vec<FieldError> {
    crate::workloads::spec::validate_pod_spec(
        new.pointer("/spec/template/spec"),
        "spec.template.spec",
        true,
    )
}

/// The core/v1 field names of an Event held in core form, as `legacyValidateEvent` uses them.
fn validate_event(core: &Value, old: Option<&Value>, v1: bool, namespace: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let event_time = s(core, "/eventTime");
    let involved_ns = s(core, "/involvedObject/namespace");
    let reporting_field = if v1 {
        "reportingController"
    } else {
        "reportingComponent"
    };
    if event_time.is_empty() {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(FieldError::invalid(
                    "involvedObject.namespace",
                    &json!(involved_ns),
                    "does not match event.namespace",
                ));
            }
        } else if namespace != involved_ns {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(involved_ns),
                "does not match event.namespace",
            ));
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(involved_ns),
                "does not match event.namespace",
            ));
        }
        let rc = s(core, "/reportingComponent");
        if rc.is_empty() {
            errs.push(FieldError::required(reporting_field, ""));
        }
        for msg in is_qualified_name(&rc) {
            errs.push(FieldError::invalid(reporting_field, &json!(rc), msg));
        }
        let ri = s(core, "/reportingInstance");
        if ri.is_empty() {
            errs.push(FieldError::required("reportingInstance", ""));
        }
        if ri.len() > 128 {
            errs.push(FieldError::invalid(
                "reportingInstance",
                &json!(""),
                "can have at most 128 characters",
            ));
        }
        for (f, limit) in [("action", 128usize), ("reason", 128)] {
            let v = s(core, &format!("/{f}"));
            if v.is_empty() {
                errs.push(FieldError::required(f, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    f,
                    &json!(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if s(core, "/message").len() > 1024 {
            errs.push(FieldError::invalid(
                "message",
                &json!(""),
                "can have at most 1024 characters",
            ));
        }
    }
    for msg in is_dns1123_subdomain(namespace) {
        errs.push(FieldError::invalid("namespace", &json!(namespace), msg));
    }
    if !v1 {
        return errs;
    }
    let series_check = |errs: &mut Vec<FieldError>| {
        if let Some(series) = core.get("series").filter(|v| !v.is_null()) {
            if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
                errs.push(FieldError::invalid(
                    "series.count",
                    &json!(""),
                    "should be at least 2",
                ));
            }
            if series
                .get("lastObservedTime")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required("series.lastObservedTime", ""));
            }
        }
    };
    match old {
        None => {
            series_check(&mut errs);
            if event_time.is_empty() {
                errs.push(FieldError::required("eventTime", ""));
            }
            let t = s(core, "/type");
            if t != "Normal" && t != "Warning" {
                errs.push(FieldError::invalid(
                    "type",
                    &json!(""),
                    format!("has invalid value: {t}"),
                ));
            }
            for (f, name) in [
                ("/firstTimestamp", "deprecatedFirstTimestamp"),
                ("/lastTimestamp", "deprecatedLastTimestamp"),
            ] {
                if !s(core, f).is_empty() {
                    errs.push(FieldError::invalid(name, &json!(""), "needs to be unset"));
                }
            }
            if core.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
                errs.push(FieldError::invalid(
                    "deprecatedCount",
                    &json!(""),
                    "needs to be unset",
                ));
            }
            if !s(core, "/source/component").is_empty() || !s(core, "/source/host").is_empty() {
                errs.push(FieldError::invalid(
                    "deprecatedSource",
                    &json!(""),
                    "needs to be unset",
                ));
            }
        }
        Some(old) => {
            if !crate::meta::json_eq(
                core.get("series").unwrap_or(&Value::Null),
                old.get("series").unwrap_or(&Value::Null),
            ) {
                series_check(&mut errs);
            }
            for f in [
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
                "type",
            ] {
                let (n, o) = (
                    core.get(f).unwrap_or(&Value::Null),
                    old.get(f).unwrap_or(&Value::Null),
                );
                if !crate::meta::json_eq(n, o) {
                    let path = if f == "reportingComponent" {
                        "reportingController"
                    } else {
                        f
                    };
                    let shown = if n.is_object() { &json!({}) } else { n };
                    errs.push(FieldError::new(
                        FieldErrorType::Invalid,
                        path,
                        Some(if n.is_object() {
                            "\"object\"".to_string()
                        } else {
                            render_value(shown)
                        }),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    errs
}

/// Kind-specific validation on create (`old = None`) or update. `namespace` is the object's.
pub fn validate(rt: &ResourceType, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let ns = crate::meta::namespace(new).to_string();
    match rt.behaviour {
        Kind::Secret => validate_secret(new, old),
        Kind::ConfigMap => validate_config_map(new, old),
        Kind::Lease => validate_lease(new),
        Kind::Namespace => validate_namespace(new),
        Kind::Role => validate_rules(new, true),
        Kind::ClusterRole => validate_rules(new, false),
        Kind::RoleBinding => validate_binding(new, old, false),
        Kind::ClusterRoleBinding => validate_binding(new, old, true),
        Kind::Deployment => {
            let mut e = validate_workload(new);
            e.extend(crate::workloads::spec::validate_rolling_update(
                new.get("spec"),
            ));
            e.extend(template_errors(new));
            e
        }
        Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet => {
            let mut e = validate_workload(new);
            e.extend(template_errors(new));
            e
        }
        Kind::Pod => {
            let mut e = crate::workloads::spec::validate_pod_spec(new.get("spec"), "spec", false);
            if let Some(old) = old {
                e.extend(crate::workloads::spec::validate_pod_update(new, old));
            }
            e
        }
        Kind::Event => validate_event(new, old, false, &ns),
        Kind::EventV1 => validate_event(new, old, true, &ns),
        Kind::ServiceAccount => Vec::new(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// events.k8s.io/v1 <-> core/v1 Event

const EVENT_MAP: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// An events.k8s.io/v1 Event in core/v1 form (storage).
pub fn event_v1_to_core(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        let key = EVENT_MAP
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, b)| *b)
            .unwrap_or(k.as_str());
        let val = match key {
            "apiVersion" => json!("v1"),
            _ => val.clone(),
        };
        out.insert(key.to_string(), val);
    }
    Value::Object(out)
}

/// A stored core/v1 Event seen through events.k8s.io/v1.
pub fn event_core_to_v1(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        let key = EVENT_MAP
            .iter()
            .find(|(_, b)| b == k)
            .map(|(a, _)| *a)
            .unwrap_or(k.as_str());
        if key == "deprecatedSource" && val.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        let val = match key {
            "apiVersion" => json!("events.k8s.io/v1"),
            _ => val.clone(),
        };
        out.insert(key.to_string(), val);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn unknown_fields_are_found_and_removed() {
        let reg = Registry::new();
        let rt = reg.types().lookup("", "v1", "configmaps").unwrap();
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"a": "b"}, "extra": true});
        let unknown = decode_typed(&rt, &mut v).unwrap();
        assert_eq!(unknown, vec!["metadata.bogus", "extra"]);
        assert!(v.get("extra").is_none());
        let mut bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}});
        let e = decode_typed(&rt, &mut bad).unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn secret_string_data_and_base64() {
        let reg = Registry::new();
        let rt = reg.types().lookup("", "v1", "secrets").unwrap();
        let mut v = json!({"data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}});
        decode_defaults(&rt, &mut v).unwrap();
        assert_eq!(v["data"]["a"], "eQ==");
        assert_eq!(v["data"]["b"], "eg==");
        assert_eq!(v["type"], "Opaque");
        assert!(v.get("stringData").is_none());
        let mut bad = json!({"data": {"a": "!!!"}});
        let e = decode_defaults(&rt, &mut bad).unwrap_err();
        assert!(e.message.ends_with("illegal base64 data at input byte 0"));
    }

    #[test]
    fn config_keys() {
        assert!(config_map_key_errors("a.b-c_D").is_empty());
        assert_eq!(
            config_map_key_errors("..x"),
            vec!["must not start with '..'"]
        );
        assert!(config_map_key_errors("a b")[0].starts_with("a valid config key"));
    }

    #[test]
    fn event_mapping_round_trips() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "x"}, "note": "n", "reportingController": "c"});
        let core = event_v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(event_core_to_v1(&core), v1);
    }
}
