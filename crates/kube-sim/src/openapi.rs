//! OpenAPI v3 schemas for `/openapi/v3/<group-version>`: the built-in kinds' schemas generated
//! from k8s-openapi's `JsonSchema` implementations (the upstream OpenAPI descriptions, pinned
//! with the k8s-openapi version), in upstream's shape (`#/components/schemas/io.k8s…`,
//! `allOf` around references with a description, `x-kubernetes-group-version-kind` on each
//! kind), and custom resources' `openAPIV3Schema` completed with `apiVersion`, `kind` and
//! `metadata` as the apiextensions server publishes them. `kubectl explain` reads these.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use sha2::{Digest, Sha256};

use crate::registry::{Kind, ResourceType, Types};

struct Schemas {
    defs: Map<String, Value>,
    roots: Vec<(Kind, String)>,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        use k8s_openapi::api::{
            apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
            coordination::v1 as coord, core::v1 as core, events::v1 as events, rbac::v1 as rbac,
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut g = SchemaGenerator::new(SchemaSettings::openapi3());
        let mut roots = Vec::new();
        macro_rules! root {
            ($($kind:expr => $ty:ty),* $(,)?) => {
                $(
                    let r = g.subschema_for::<$ty>();
                    if let Some(name) = r.get("$ref").and_then(Value::as_str).and_then(|s| s.rsplit('/').next()) {
                        roots.push(($kind, name.to_string()));
                    }
                )*
            };
        }
        root!(
            Kind::Namespace => core::Namespace,
            Kind::Secret => core::Secret,
            Kind::ConfigMap => core::ConfigMap,
            Kind::ServiceAccount => core::ServiceAccount,
            Kind::Event => core::Event,
            Kind::EventV1 => events::Event,
            Kind::Service => core::Service,
            Kind::ComponentStatus => core::ComponentStatus,
            Kind::Pod => core::Pod,
            Kind::Node => core::Node,
            Kind::Lease => coord::Lease,
            Kind::Deployment => apps::Deployment,
            Kind::StatefulSet => apps::StatefulSet,
            Kind::DaemonSet => apps::DaemonSet,
            Kind::ReplicaSet => apps::ReplicaSet,
            Kind::ControllerRevision => apps::ControllerRevision,
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
        let _ = g.subschema_for::<ObjectMeta>();
        let defs = g.take_definitions(true);
        Schemas { defs, roots }
    })
}

/// The component name of a built-in kind (`io.k8s.api.apps.v1.Deployment`).
pub fn builtin_name(kind: Kind) -> Option<String> {
    schemas()
        .roots
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| n.clone())
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(n) = r.strip_prefix("#/components/schemas/")
            {
                out.insert(n.to_string());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Add `name` and every schema it references to `into`.
fn closure(name: &str, into: &mut Map<String, Value>) {
    let defs = &schemas().defs;
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        if into.contains_key(&n) {
            continue;
        }
        let Some(s) = defs.get(&n) else { continue };
        into.insert(n.clone(), s.clone());
        let mut more = BTreeSet::new();
        refs(s, &mut more);
        todo.extend(more);
    }
}

/// The schema of one served type (and what it references) into `components`; returns the
/// component name.
pub fn add_type(t: &ResourceType, name: &str, components: &mut Map<String, Value>) {
    let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
    match &t.custom {
        Some(c) => {
            let mut s = if c.raw_schema.is_object() {
                c.raw_schema.as_ref().clone()
            } else {
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
            };
            if let Some(m) = s.as_object_mut() {
                let props = m.entry("properties").or_insert_with(|| json!({}));
                if let Some(p) = props.as_object_mut() {
                    p.insert("apiVersion".into(), json!({"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"}));
                    p.insert("kind".into(), json!({"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}));
                    p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
                }
                m.insert("x-kubernetes-group-version-kind".into(), gvk);
            }
            components.insert(name.to_string(), s);
            closure(OBJECT_META, components);
        }
        None => {
            let root = schemas()
                .roots
                .iter()
                .find(|(k, _)| *k == t.behaviour)
                .map(|(_, n)| n.clone());
            match root {
                Some(r) => {
                    closure(&r, components);
                    if let Some(m) = components.get_mut(&r).and_then(Value::as_object_mut) {
                        m.insert("x-kubernetes-group-version-kind".into(), gvk);
                    }
                }
                None => {
                    components.insert(
                        name.to_string(),
                        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-group-version-kind": gvk}),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The documents: the index, one per group version

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The component name upstream uses: reversed group + version + kind
/// (`com.example.v1.Widget`, `io.k8s.api.core.v1.ConfigMap` for core).
pub fn schema_name(t: &ResourceType) -> String {
    if t.is_custom() {
        let rev: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", rev.join("."), t.version, t.kind)
    } else if let Some(n) = builtin_name(t.behaviour) {
        n
    } else {
        let g = if t.group.is_empty() {
            "core".to_string()
        } else {
            t.group.split('.').next().unwrap_or("").to_string()
        };
        format!("io.k8s.api.{g}.{}.{}", t.version, t.kind)
    }
}

/// The OpenAPI v3 document of one group version, with one path per resource whose `patch`
/// operation names the GVK and the `fieldValidation` parameter (what kubectl's field
/// validation verifier looks for), and the custom resources' schemas.
pub fn openapi_gv(types: &Types, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut any = false;
    for t in types.in_group_version(group, version) {
        any = true;
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let coll = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.resource)
        } else {
            format!("{prefix}/{}", t.resource)
        };
        let sref = json!({"$ref": format!("#/components/schemas/{}", schema_name(t))});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
        let op = |action: &str, id: &str| {
            json!({
                "operationId": format!("{id}{}", t.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": sref}}}},
            })
        };
        if t.behaviour.is_review() {
            paths.insert(coll.clone(), json!({"post": op("post", "create")}));
        } else {
            paths.insert(
                coll.clone(),
                json!({"get": op("list", "list"), "post": op("post", "create")}),
            );
            paths.insert(
                format!("{coll}/{{name}}"),
                json!({
                    "get": op("get", "read"),
                    "put": op("put", "replace"),
                    "patch": op("patch", "patch"),
                    "delete": op("delete", "delete"),
                }),
            );
            if t.status {
                paths.insert(
                    format!("{coll}/{{name}}/status"),
                    json!({"get": op("get", "read"), "put": op("put", "replace"), "patch": op("patch", "patch")}),
                );
            }
        }
        add_type(t, &schema_name(t), &mut schemas);
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::VERSION_INFO.1},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A stable hash of a document (the `?hash=` of `serverRelativeURL`).
pub fn doc_hash(doc: &Value) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(doc).unwrap_or_default());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
}

/// `/openapi/v3`: the index of group-version documents.
pub fn openapi_root(types: &Types) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".to_string())];
    for (g, vs) in types.groups() {
        for v in vs {
            gvs.push((g.clone(), v));
        }
    }
    for (g, v) in gvs {
        if let Some(doc) = openapi_gv(types, &g, &v) {
            let key = gv_key(&g, &v);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc_hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_have_descriptions_and_references() {
        let reg = crate::registry::Registry::new();
        let t = reg.types().lookup("apps", "v1", "deployments").unwrap();
        let mut c = Map::new();
        add_type(&t, "x", &mut c);
        let d = &c["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert!(
            d["description"]
                .as_str()
                .unwrap()
                .starts_with("Deployment enables")
        );
        assert!(c.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(c.contains_key(OBJECT_META));
        let spec = &d["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
    }
}
