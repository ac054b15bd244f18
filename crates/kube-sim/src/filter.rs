//! List/watch filtering: namespace, label selector, field selector (per-kind selectable fields).

use serde_json::Value;

use crate::error::{StatusError, go_quote};
use crate::registry::{Kind, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// The selectable fields of a kind besides `metadata.name` / `metadata.namespace`.
fn kind_fields(rt: &ResourceType) -> Vec<String> {
    let v: &[&str] = match rt.behaviour {
        Kind::Secret => &["type"],
        Kind::Namespace => &["status.phase"],
        Kind::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Kind::EventV1 => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        Kind::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Kind::Node => &["spec.unschedulable"],
        Kind::ReplicaSet => &["status.replicas"],
        Kind::ServiceAccount | Kind::ConfigMap => &[],
        Kind::Custom => {
            return rt
                .custom
                .as_ref()
                .map(|c| {
                    c.selectable_fields
                        .iter()
                        .map(|f| f.trim_start_matches('.').to_string())
                        .collect()
                })
                .unwrap_or_default();
        }
        _ => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Reject fields the kind cannot select on (400, upstream's messages).
pub fn check_fields(rt: &ResourceType, fs: &FieldSelector) -> Result<(), StatusError> {
    let extra = kind_fields(rt);
    for t in &fs.terms {
        if t.field == "metadata.name" || t.field == "metadata.namespace" {
            continue;
        }
        if extra.contains(&t.field) {
            continue;
        }
        if rt.is_custom() {
            let mut known = vec![go_quote("metadata.name"), go_quote("metadata.namespace")];
            known.extend(extra.iter().map(|f| go_quote(f)));
            return Err(StatusError::bad_request(format!(
                "{} is not a known field selector: only {}",
                go_quote(&t.field),
                known.join(", ")
            )));
        }
        return Err(StatusError::bad_request(format!(
            "field label not supported: {}",
            t.field
        )));
    }
    Ok(())
}

/// The value of a selectable field of a stored object (core form for events).
pub fn field_value(rt: &ResourceType, obj: &Value, field: &str) -> Option<String> {
    let path = match (rt.behaviour, field) {
        (_, "metadata.name") => "/metadata/name".to_string(),
        (_, "metadata.namespace") => "/metadata/namespace".to_string(),
        (Kind::EventV1, f) if f.starts_with("regarding.") => {
            format!("/involvedObject/{}", &f["regarding.".len()..])
        }
        (Kind::EventV1, "reportingController") => "/reportingComponent".to_string(),
        (Kind::Event, "source") => "/source/component".to_string(),
        (_, f) => format!("/{}", f.replace('.', "/")),
    };
    match obj.pointer(&path) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => Some(String::new()),
    }
}

/// A list/watch filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn is_trivial(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether a stored object passes.
    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && crate::meta::namespace(obj) != ns
        {
            return false;
        }
        if !self.labels.is_empty() && !self.labels.matches(crate::meta::labels(obj)) {
            return false;
        }
        if !self.fields.is_empty() && !self.fields.matches(&|f| field_value(rt, obj, f)) {
            return false;
        }
        true
    }
}
