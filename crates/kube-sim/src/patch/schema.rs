//! List semantics for strategic merge patch and server-side apply.
//!
//! [`BuiltinSchema`] is a static table for the built-in kinds the simulator serves, written from
//! the upstream Go struct tags (`patchStrategy`/`patchMergeKey`) and `+listType`/`+listMapKey`
//! markers of k8s.io/api v0.32 (k8s-openapi 0.29 does not carry them in its doc comments).
//! [`OpenApiSchema`] reads `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` from a CRD's
//! `openAPIV3Schema`, for server-side apply on custom resources.
//!
//! Both apply the ObjectMeta rules wherever a `metadata` object appears (object root, pod
//! templates): `finalizers` is a set, `ownerReferences` a map keyed by `uid`, `managedFields`
//! atomic. Unknown lists are atomic.

use std::sync::Arc;

use serde_json::Value;

use super::{ListSemantics, MergeSchema};

/// No schema: every list is atomic except the ObjectMeta lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSchema;

impl MergeSchema for NoSchema {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics {
        object_meta_semantics(path).unwrap_or(ListSemantics::Atomic)
    }
}

fn map(keys: &[&str]) -> ListSemantics {
    ListSemantics::Map {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

/// ObjectMeta list fields, recognised at `<...>/metadata/<field>`.
fn object_meta_semantics(path: &[&str]) -> Option<ListSemantics> {
    match path {
        [.., "metadata", "finalizers"] => Some(ListSemantics::Set),
        [.., "metadata", "ownerReferences"] => Some(map(&["uid"])),
        [.., "metadata", "managedFields"] => Some(ListSemantics::Atomic),
        _ => None,
    }
}

/// Static strategic-merge / apply schema of one built-in kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinSchema {
    pub group: String,
    pub kind: String,
}

/// The schema for a built-in `group`/`kind` (`""` is the core group). Kinds without list fields
/// of their own (ConfigMap, Secret, Lease, Namespace, RBAC kinds...) get the ObjectMeta rules
/// only: their `data` maps merge like plain maps, RBAC `rules`/`subjects` are atomic.
pub fn builtin_merge_schema(group: &str, kind: &str) -> Box<dyn MergeSchema> {
    Box::new(BuiltinSchema {
        group: group.to_string(),
        kind: kind.to_string(),
    })
}

impl BuiltinSchema {
    /// Where the PodSpec sits in this kind, if it has one.
    fn pod_spec_prefix(&self) -> Option<&'static [&'static str]> {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Pod") => Some(&["spec"]),
            ("", "PodTemplate") => Some(&["template", "spec"]),
            ("", "ReplicationController")
            | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job") => Some(&["spec", "template", "spec"]),
            ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            _ => None,
        }
    }
}

/// Lists inside a PodSpec, relative to it.
fn pod_spec_semantics(rel: &[&str]) -> Option<ListSemantics> {
    let container_lists = |rest: &[&str]| -> Option<ListSemantics> {
        match rest {
            [] => Some(map(&["name"])),
            ["env"] => Some(map(&["name"])),
            ["ports"] => Some(map(&["containerPort", "protocol"])),
            ["volumeMounts"] => Some(map(&["mountPath"])),
            ["volumeDevices"] => Some(map(&["devicePath"])),
            ["resizePolicy"] => Some(ListSemantics::Atomic),
            ["resources", "claims"] => Some(map(&["name"])),
            _ => None,
        }
    };
    match rel {
        [
            "containers" | "initContainers" | "ephemeralContainers",
            rest @ ..,
        ] => container_lists(rest),
        ["volumes"] => Some(map(&["name"])),
        ["imagePullSecrets"] => Some(map(&["name"])),
        ["hostAliases"] => Some(map(&["ip"])),
        ["topologySpreadConstraints"] => Some(map(&["topologyKey", "whenUnsatisfiable"])),
        ["resourceClaims"] => Some(map(&["name"])),
        ["schedulingGates"] => Some(map(&["name"])),
        ["tolerations"] | ["readinessGates"] => Some(ListSemantics::Atomic),
        _ => None,
    }
}

impl MergeSchema for BuiltinSchema {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics {
        if let Some(s) = object_meta_semantics(path) {
            return s;
        }
        if let Some(prefix) = self.pod_spec_prefix()
            && path.len() > prefix.len()
            && path[..prefix.len()] == *prefix
            && let Some(s) = pod_spec_semantics(&path[prefix.len()..])
        {
            return s;
        }
        match (self.group.as_str(), self.kind.as_str(), path) {
            // Status conditions of the workload kinds, Pod, Namespace, Node, CRD, Job...
            (_, _, ["status", "conditions"]) => map(&["type"]),
            ("", "Service", ["spec", "ports"]) => map(&["port", "protocol"]),
            ("", "ServiceAccount", ["secrets"]) => map(&["name"]),
            ("", "Pod", ["status", "podIPs"]) => map(&["ip"]),
            ("", "Pod", ["status", "containerStatuses" | "initContainerStatuses"]) => {
                ListSemantics::Atomic
            }
            ("", "Node", ["spec", "taints"]) => ListSemantics::Atomic,
            ("", "Node", ["status", "addresses"]) => map(&["type"]),
            _ => ListSemantics::Atomic,
        }
    }

    fn retain_keys(&self, path: &[&str]) -> bool {
        // DeploymentSpec.strategy and PodSpec.volumes items carry patchStrategy retainKeys.
        matches!(
            (self.group.as_str(), self.kind.as_str(), path),
            ("apps", "Deployment", ["spec", "strategy"])
        ) || self.pod_spec_prefix().is_some_and(|p| {
            path.len() == p.len() + 1 && path[..p.len()] == *p && path[p.len()] == "volumes"
        })
    }
}

/// List semantics read from an OpenAPI v3 schema (a CRD version's `schema.openAPIV3Schema`).
#[derive(Debug, Clone)]
pub struct OpenApiSchema {
    /// Shared with the registry: a write builds its merge schema without copying the document.
    pub root: Arc<Value>,
}

impl OpenApiSchema {
    pub fn new(open_api_v3_schema: impl Into<Arc<Value>>) -> Self {
        Self {
            root: open_api_v3_schema.into(),
        }
    }

    /// Follow `properties` / `additionalProperties` / `items` down `path`.
    fn lookup(&self, path: &[&str]) -> Option<&Value> {
        let mut cur: &Value = &self.root;
        for (i, seg) in path.iter().enumerate() {
            let props = cur.get("properties").and_then(|p| p.get(*seg));
            let next = match props {
                Some(n) => n,
                None => cur.get("additionalProperties").filter(|a| a.is_object())?,
            };
            // Descend into list items for every segment but the last.
            cur = if i + 1 < path.len() && next.get("type").and_then(Value::as_str) == Some("array")
            {
                next.get("items")?
            } else {
                next
            };
        }
        Some(cur)
    }
}

impl MergeSchema for OpenApiSchema {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics {
        if let Some(s) = object_meta_semantics(path) {
            return s;
        }
        let Some(node) = self.lookup(path) else {
            return ListSemantics::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListSemantics::Set,
            Some("map") => {
                let keys: Vec<String> = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListSemantics::Atomic
                } else {
                    ListSemantics::Map { keys }
                }
            }
            _ => ListSemantics::Atomic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_table() {
        let d = builtin_merge_schema("apps", "Deployment");
        let t = ["spec", "template", "spec"];
        let p = |rest: &[&'static str]| -> Vec<&'static str> {
            t.iter().chain(rest.iter()).copied().collect()
        };
        assert_eq!(d.list_semantics(&p(&["containers"])), map(&["name"]));
        assert_eq!(
            d.list_semantics(&p(&["initContainers", "env"])),
            map(&["name"])
        );
        assert_eq!(
            d.list_semantics(&p(&["containers", "ports"])),
            map(&["containerPort", "protocol"])
        );
        assert_eq!(d.list_semantics(&p(&["volumes"])), map(&["name"]));
        assert_eq!(
            d.list_semantics(&p(&["containers", "volumeMounts"])),
            map(&["mountPath"])
        );
        assert_eq!(d.list_semantics(&p(&["imagePullSecrets"])), map(&["name"]));
        assert_eq!(
            d.list_semantics(&p(&["tolerations"])),
            ListSemantics::Atomic
        );
        assert_eq!(
            d.list_semantics(&p(&["containers", "args"])),
            ListSemantics::Atomic
        );
        assert_eq!(
            d.list_semantics(&["metadata", "finalizers"]),
            ListSemantics::Set
        );
        assert_eq!(
            d.list_semantics(&["spec", "template", "metadata", "ownerReferences"]),
            map(&["uid"])
        );
        assert_eq!(d.list_semantics(&["status", "conditions"]), map(&["type"]));
        let cj = builtin_merge_schema("batch", "CronJob");
        assert_eq!(
            cj.list_semantics(&[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers"
            ]),
            map(&["name"])
        );
        let cr = builtin_merge_schema("rbac.authorization.k8s.io", "ClusterRole");
        assert_eq!(cr.list_semantics(&["rules"]), ListSemantics::Atomic);
        let cm = builtin_merge_schema("", "ConfigMap");
        assert_eq!(
            cm.list_semantics(&["metadata", "finalizers"]),
            ListSemantics::Set
        );
        assert!(builtin_merge_schema("apps", "Deployment").retain_keys(&["spec", "strategy"]));
    }

    #[test]
    fn openapi_list_types() {
        let s = OpenApiSchema::new(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "items": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                       "items": {"type": "string"}}}}},
                "plain": {"type": "array", "items": {"type": "string"}},
                "byKey": {"type": "object", "additionalProperties": {"type": "array",
                          "x-kubernetes-list-type": "set", "items": {"type": "string"}}}
            }}}
        }));
        assert_eq!(s.list_semantics(&["spec", "items"]), map(&["name"]));
        assert_eq!(
            s.list_semantics(&["spec", "items", "tags"]),
            ListSemantics::Set
        );
        assert_eq!(s.list_semantics(&["spec", "plain"]), ListSemantics::Atomic);
        assert_eq!(
            s.list_semantics(&["spec", "byKey", "x"]),
            ListSemantics::Set
        );
        assert_eq!(
            s.list_semantics(&["metadata", "finalizers"]),
            ListSemantics::Set
        );
        assert_eq!(
            NoSchema.list_semantics(&["spec", "x"]),
            ListSemantics::Atomic
        );
    }
}
