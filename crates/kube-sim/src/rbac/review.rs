//! SubjectAccessReview, SelfSubjectAccessReview and LocalSubjectAccessReview
//! (`authorization.k8s.io/v1`): validation as `pkg/apis/authorization/validation`, evaluation
//! as the registries in `pkg/registry/authorization/*`.

use serde_json::{Map, Value, json};

use super::{RbacSnapshot, RequestAttributes, UserInfo, authorize, strings};
use crate::error::{FieldError, StatusError};

const GROUP: &str = "authorization.k8s.io";

fn invalid(kind: &str, errs: Vec<FieldError>) -> StatusError {
    StatusError::invalid(kind, GROUP, "", &errs)
}

/// Evaluate a review `body` of `kind` (`SubjectAccessReview`, `SelfSubjectAccessReview`,
/// `LocalSubjectAccessReview`) posted by `caller`; `namespace` is the URL namespace (Local only).
/// Returns the body with `status: {allowed, reason?}` — the 201 response — or the upstream error.
// The signature is the crate-wide one: every handler error is a `StatusError`.
#[allow(clippy::result_large_err)]
pub fn evaluate_access_review(
    kind: &str,
    body: &Value,
    caller: &UserInfo,
    rbac: &RbacSnapshot,
    namespace: Option<&str>,
) -> Result<Value, StatusError> {
    let Some(obj) = body.as_object() else {
        return Err(StatusError::bad_request(format!("not a {kind}")));
    };
    let empty = Map::new();
    let spec = obj.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let ra = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let nra = spec.get("nonResourceAttributes").filter(|v| !v.is_null());

    let mut errs = Vec::new();
    match (ra, nra) {
        (Some(_), Some(n)) => errs.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => errs.push(FieldError::required(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let mut body_ns = String::new();
    match kind {
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
            if user.is_empty() && strings(spec.get("groups")).is_empty() {
                errs.push(FieldError::invalid(
                    "spec.user",
                    &json!(user),
                    "at least one of user or group must be specified",
                ));
            }
        }
        "SelfSubjectAccessReview" => {}
        other => {
            return Err(StatusError::bad_request(format!(
                "unsupported review kind {other}"
            )));
        }
    }
    if kind == "LocalSubjectAccessReview" {
        body_ns = obj
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or(namespace)
            .unwrap_or("")
            .to_string();
        if let Some(ra) = ra {
            let ns = ra.get("namespace").and_then(Value::as_str).unwrap_or("");
            if ns != body_ns {
                errs.push(FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    &json!(ns),
                    "must match metadata.namespace",
                ));
            }
        }
        if let Some(n) = nra {
            errs.push(FieldError::invalid(
                "spec.nonResourceAttributes",
                n,
                "disallowed on this kind of request",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(invalid(kind, errs));
    }
    if kind == "LocalSubjectAccessReview" {
        let url_ns = namespace.unwrap_or("");
        if url_ns.is_empty() {
            return Err(StatusError::bad_request(
                "namespace is required on this type: ",
            ));
        }
        if url_ns != body_ns {
            return Err(StatusError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {url_ns}"
            )));
        }
    }

    let user = if kind == "SelfSubjectAccessReview" {
        caller.clone()
    } else {
        UserInfo {
            name: spec
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            uid: spec
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            groups: strings(spec.get("groups")),
        }
    };
    let s = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let attrs = match ra {
        Some(_) => RequestAttributes {
            user,
            verb: s(ra, "verb"),
            resource_request: true,
            api_group: s(ra, "group"),
            api_version: s(ra, "version"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            name: s(ra, "name"),
            namespace: s(ra, "namespace"),
            path: String::new(),
        },
        None => RequestAttributes {
            user,
            verb: s(nra, "verb"),
            resource_request: false,
            path: s(nra, "path"),
            ..Default::default()
        },
    };
    let decision = authorize(rbac, &attrs);
    let mut status = Map::new();
    status.insert("allowed".into(), json!(decision.allowed()));
    if !decision.reason().is_empty() {
        status.insert("reason".into(), json!(decision.reason()));
    }
    let mut out = obj.clone();
    out.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    out.insert("status".into(), Value::Object(status));
    Ok(Value::Object(out))
}
