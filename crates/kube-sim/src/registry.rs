//! The served resource types (built-in kinds and custom resources of served CRDs), and the
//! documents generated from them: legacy and aggregated discovery, OpenAPI v3.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::schema_api::CrdSchema;
use crate::store::Gr;

/// Built-in behaviours; `Custom` for custom resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Namespace,
    Secret,
    ConfigMap,
    ServiceAccount,
    Event,
    EventV1,
    Service,
    ComponentStatus,
    Lease,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ControllerRevision,
    Pod,
    Node,
    Crd,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    SelfSubjectAccessReview,
    SubjectAccessReview,
    LocalSubjectAccessReview,
    SelfSubjectRulesReview,
    TokenReview,
    SelfSubjectReview,
    Custom,
}

impl Kind {
    /// Create-only kinds that are evaluated, never stored.
    pub fn is_review(self) -> bool {
        matches!(
            self,
            Kind::SelfSubjectAccessReview
                | Kind::SubjectAccessReview
                | Kind::LocalSubjectAccessReview
                | Kind::SelfSubjectRulesReview
                | Kind::TokenReview
                | Kind::SelfSubjectReview
        )
    }
}

/// `subresources.scale` of a CRD, or the built-in equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSpec {
    /// JSON path like `.spec.replicas`.
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One `additionalPrinterColumns` entry (or a built-in column).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// A served version of a custom resource.
#[derive(Debug)]
pub struct CustomInfo {
    pub crd_name: String,
    pub storage_version: String,
    pub list_kind: String,
    /// The compiled schema of this version (`None`: the CRD has none — preserve everything).
    pub schema: Option<Arc<CrdSchema>>,
    /// The raw `openAPIV3Schema` (OpenAPI documents, SSA list semantics).
    pub raw_schema: Arc<Value>,
    /// `additionalPrinterColumns` of this version (empty: `Name`, `Age`).
    pub columns: Vec<PrinterColumn>,
    /// `selectableFields[*].jsonPath`, e.g. `.spec.color`.
    pub selectable_fields: Vec<String>,
}

/// Another subresource than `status` and `scale` (`serviceaccounts/token`, `namespaces/finalize`).
#[derive(Debug, Clone)]
pub struct ExtraSub {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource in one version.
#[derive(Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub kind: String,
    pub singular: String,
    pub namespaced: bool,
    pub verbs: Vec<&'static str>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub behaviour: Kind,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    pub extra: Vec<ExtraSub>,
    pub storage: Gr,
    pub custom: Option<Arc<CustomInfo>>,
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        match &self.custom {
            Some(c) => c.list_kind.clone(),
            None => format!("{}List", self.kind),
        }
    }

    /// `<resource>[.<group>]`.
    pub fn qualified(&self) -> String {
        crate::error::StatusError::qualified(&self.resource, &self.group)
    }

    pub fn is_custom(&self) -> bool {
        self.behaviour == Kind::Custom
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Built-in strategies allow a PUT without resourceVersion; custom resources do not.
    pub fn allow_unconditional_update(&self) -> bool {
        !self.is_custom()
    }

    /// Kinds whose immediate delete answers with the object rather than a `Status`.
    pub fn returns_deleted_object(&self) -> bool {
        matches!(
            self.behaviour,
            Kind::ServiceAccount | Kind::Service | Kind::Pod | Kind::Node
        )
    }

    /// Kinds with `metadata.generation` managed by the server.
    pub fn has_generation(&self) -> bool {
        matches!(
            self.behaviour,
            Kind::Custom
                | Kind::Deployment
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::ReplicaSet
                | Kind::Crd
        )
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    behaviour: Kind,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    verbs: &'static [&'static str],
    storage: (&'static str, &'static str),
    extra: Vec<ExtraSub>,
}

fn builtins() -> Vec<Builtin> {
    let b = |group: &'static str,
             version: &'static str,
             resource: &'static str,
             kind: &'static str,
             namespaced: bool,
             behaviour: Kind| Builtin {
        group,
        version,
        resource,
        kind,
        namespaced,
        behaviour,
        short: &[],
        categories: &[],
        status: false,
        scale: false,
        verbs: ALL_VERBS,
        storage: (group, resource),
        extra: Vec::new(),
    };
    const CREATE: &[&str] = &["create"];
    const NS_VERBS: &[&str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        Builtin {
            short: &["cm"],
            ..b("", "v1", "configmaps", "ConfigMap", true, Kind::ConfigMap)
        },
        Builtin {
            short: &["cs"],
            verbs: &["get", "list"],
            ..b(
                "",
                "v1",
                "componentstatuses",
                "ComponentStatus",
                false,
                Kind::ComponentStatus,
            )
        },
        Builtin {
            short: &["ev"],
            ..b("", "v1", "events", "Event", true, Kind::Event)
        },
        Builtin {
            short: &["ns"],
            status: true,
            verbs: NS_VERBS,
            extra: vec![ExtraSub {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            }],
            ..b("", "v1", "namespaces", "Namespace", false, Kind::Namespace)
        },
        b("", "v1", "secrets", "Secret", true, Kind::Secret),
        Builtin {
            short: &["po"],
            categories: &["all"],
            status: true,
            ..b("", "v1", "pods", "Pod", true, Kind::Pod)
        },
        Builtin {
            short: &["no"],
            status: true,
            ..b("", "v1", "nodes", "Node", false, Kind::Node)
        },
        Builtin {
            short: &["sa"],
            extra: vec![ExtraSub {
                name: "token",
                group: "authentication.k8s.io",
                version: "v1",
                kind: "TokenRequest",
                verbs: CREATE,
            }],
            ..b(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                Kind::ServiceAccount,
            )
        },
        Builtin {
            short: &["svc"],
            categories: &["all"],
            status: true,
            verbs: &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            ..b("", "v1", "services", "Service", true, Kind::Service)
        },
        Builtin {
            short: &["ds"],
            categories: &["all"],
            status: true,
            ..b(
                "apps",
                "v1",
                "daemonsets",
                "DaemonSet",
                true,
                Kind::DaemonSet,
            )
        },
        Builtin {
            short: &["deploy"],
            categories: &["all"],
            status: true,
            scale: true,
            ..b(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                Kind::Deployment,
            )
        },
        Builtin {
            short: &["rs"],
            categories: &["all"],
            status: true,
            scale: true,
            ..b(
                "apps",
                "v1",
                "replicasets",
                "ReplicaSet",
                true,
                Kind::ReplicaSet,
            )
        },
        b(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
            Kind::ControllerRevision,
        ),
        Builtin {
            short: &["sts"],
            categories: &["all"],
            status: true,
            scale: true,
            ..b(
                "apps",
                "v1",
                "statefulsets",
                "StatefulSet",
                true,
                Kind::StatefulSet,
            )
        },
        Builtin {
            short: &["ev"],
            storage: ("", "events"),
            ..b(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                Kind::EventV1,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authentication.k8s.io",
                "v1",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
                Kind::SelfSubjectReview,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authentication.k8s.io",
                "v1",
                "tokenreviews",
                "TokenReview",
                false,
                Kind::TokenReview,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authorization.k8s.io",
                "v1",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
                true,
                Kind::LocalSubjectAccessReview,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
                Kind::SelfSubjectAccessReview,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authorization.k8s.io",
                "v1",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
                false,
                Kind::SelfSubjectRulesReview,
            )
        },
        Builtin {
            verbs: CREATE,
            ..b(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
                Kind::SubjectAccessReview,
            )
        },
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            Kind::ClusterRoleBinding,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            Kind::ClusterRole,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            Kind::RoleBinding,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            Kind::Role,
        ),
        Builtin {
            short: &["crd", "crds"],
            categories: &["api-extensions"],
            status: true,
            ..b(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                Kind::Crd,
            )
        },
        b(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            Kind::Lease,
        ),
    ]
}

/// The order of built-in groups in `/apis` (upstream's priority order, abridged).
const GROUP_ORDER: &[&str] = &[
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
];

fn builtin_type(b: Builtin) -> ResourceType {
    ResourceType {
        group: b.group.to_string(),
        version: b.version.to_string(),
        resource: b.resource.to_string(),
        kind: b.kind.to_string(),
        singular: b.kind.to_lowercase(),
        namespaced: b.namespaced,
        verbs: b.verbs.to_vec(),
        short_names: b.short.iter().map(|s| s.to_string()).collect(),
        categories: b.categories.iter().map(|s| s.to_string()).collect(),
        behaviour: b.behaviour,
        status: b.status,
        scale: b.scale.then(|| ScaleSpec {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None,
        }),
        extra: b.extra,
        storage: Gr::new(b.storage.0, b.storage.1),
        custom: None,
    }
}

/// All types, immutable; replaced wholesale when CRDs come and go.
#[derive(Debug, Default)]
pub struct Types {
    /// Every type in discovery order.
    pub list: Vec<Arc<ResourceType>>,
    by_path: HashMap<(String, String, String), Arc<ResourceType>>,
    /// Custom resource types by CRD name.
    crds: BTreeMap<String, Vec<Arc<ResourceType>>>,
}

impl Types {
    fn build(
        builtin: &[Arc<ResourceType>],
        crds: BTreeMap<String, Vec<Arc<ResourceType>>>,
    ) -> Self {
        let mut list: Vec<Arc<ResourceType>> = builtin.to_vec();
        let mut custom: Vec<Arc<ResourceType>> = crds.values().flatten().cloned().collect();
        custom.sort_by(|a, b| {
            (&a.group, version_priority(&a.version), &a.resource).cmp(&(
                &b.group,
                version_priority(&b.version),
                &b.resource,
            ))
        });
        list.extend(custom);
        let by_path = list
            .iter()
            .map(|t| {
                (
                    (t.group.clone(), t.version.clone(), t.resource.clone()),
                    t.clone(),
                )
            })
            .collect();
        Self {
            list,
            by_path,
            crds,
        }
    }

    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceType>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// Any served version of a group/resource (the preferred one first).
    pub fn lookup_gr(&self, group: &str, resource: &str) -> Option<Arc<ResourceType>> {
        self.list
            .iter()
            .find(|t| t.group == group && t.resource == resource)
            .cloned()
    }

    /// The type serving `apiVersion`/`kind` (owner references, GC).
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
        self.list
            .iter()
            .find(|t| t.group == g && t.version == v && t.kind == kind)
            .cloned()
    }

    /// Groups in discovery order with their versions in preference order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.list {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    if !vs.contains(&t.version) {
                        vs.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, vs) in out.iter_mut() {
            vs.sort_by_key(|v| version_priority(v));
        }
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.list
            .iter()
            .filter(move |t| t.group == group && t.version == version)
    }

    pub fn custom_types(&self, crd_name: &str) -> Vec<Arc<ResourceType>> {
        self.crds.get(crd_name).cloned().unwrap_or_default()
    }
}

/// Kubernetes version priority (`version.CompareKubeAwareVersionStrings`): GA > beta > alpha,
/// higher numbers first, then non-conforming names alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        for (pre, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(pre) {
                let minor: i64 = if n.is_empty() { 0 } else { n.parse().ok()? };
                return Some((major, rank, minor));
            }
        }
        None
    };
    match parse(v) {
        Some((major, rank, minor)) => (rank, -major, -minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The registry: built-ins plus whatever CRDs are served right now.
pub struct Registry {
    builtin: Vec<Arc<ResourceType>>,
    current: RwLock<Arc<Types>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut b: Vec<Builtin> = builtins();
        b.sort_by_key(|t| {
            let g = if t.group.is_empty() {
                0
            } else {
                GROUP_ORDER
                    .iter()
                    .position(|x| *x == t.group)
                    .map(|i| i + 1)
                    .unwrap_or(GROUP_ORDER.len() + 1)
            };
            (g, t.resource)
        });
        let builtin: Vec<Arc<ResourceType>> =
            b.into_iter().map(|t| Arc::new(builtin_type(t))).collect();
        let current = RwLock::new(Arc::new(Types::build(&builtin, BTreeMap::new())));
        Self { builtin, current }
    }

    pub fn types(&self) -> Arc<Types> {
        self.current.read().clone()
    }

    /// Serve (or re-serve) the versions of one CRD.
    pub fn set_crd(&self, crd_name: &str, types: Vec<ResourceType>) {
        let mut cur = self.current.write();
        let mut crds = cur.crds.clone();
        if types.is_empty() {
            crds.remove(crd_name);
        } else {
            crds.insert(
                crd_name.to_string(),
                types.into_iter().map(Arc::new).collect(),
            );
        }
        *cur = Arc::new(Types::build(&self.builtin, crds));
    }

    pub fn remove_crd(&self, crd_name: &str) {
        self.set_crd(crd_name, Vec::new());
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery documents

fn subresource_entries(
    t: &ResourceType,
) -> Vec<(String, String, String, String, Vec<&'static str>)> {
    let mut out = Vec::new();
    if t.status {
        out.push((
            "status".to_string(),
            t.group.clone(),
            t.version.clone(),
            t.kind.clone(),
            vec!["get", "patch", "update"],
        ));
    }
    if t.scale.is_some() {
        out.push((
            "scale".to_string(),
            "autoscaling".to_string(),
            "v1".to_string(),
            "Scale".to_string(),
            vec!["get", "patch", "update"],
        ));
    }
    for e in &t.extra {
        out.push((
            e.name.to_string(),
            e.group.to_string(),
            e.version.to_string(),
            e.kind.to_string(),
            e.verbs.to_vec(),
        ));
    }
    out
}

fn storage_version_hash(t: &ResourceType) -> String {
    use base64::Engine;
    let mut h = Sha256::new();
    h.update(format!("{}/{}/{}", t.group, t.version, t.kind));
    let d = h.finalize();
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

/// `APIResourceList` of one group version (legacy discovery).
pub fn api_resource_list(types: &Types, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types.in_group_version(group, version) {
        let mut r = json!({
            "name": t.resource,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs,
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        if !t.behaviour.is_review() {
            r["storageVersionHash"] = json!(storage_version_hash(t));
        }
        resources.push(r);
        for (sub, g, v, k, verbs) in subresource_entries(t) {
            let mut r = json!({
                "name": format!("{}/{}", t.resource, sub),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if g != t.group || v != t.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn gv_json(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// `APIGroup` for `/apis/<group>`.
pub fn api_group(types: &Types, group: &str) -> Option<Value> {
    let (_, versions) = types.groups().into_iter().find(|(g, _)| g == group)?;
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions.iter().map(|v| gv_json(group, v)).collect::<Vec<_>>(),
        "preferredVersion": gv_json(group, &versions[0]),
    }))
}

/// `APIGroupList` for `/apis`.
pub fn api_group_list(types: &Types) -> Value {
    let groups: Vec<Value> = types
        .groups()
        .iter()
        .map(|(g, vs)| {
            json!({
                "name": g,
                "versions": vs.iter().map(|v| gv_json(g, v)).collect::<Vec<_>>(),
                "preferredVersion": gv_json(g, &vs[0]),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIVersions` for `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn discovery_resource(t: &ResourceType) -> Value {
    let mut r = json!({
        "resource": t.resource,
        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let subs: Vec<Value> = subresource_entries(t)
        .into_iter()
        .map(|(sub, g, v, k, verbs)| {
            json!({
                "subresource": sub,
                "responseKind": {"group": g, "version": v, "kind": k},
                "verbs": verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

fn discovery_group(types: &Types, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = types
                .in_group_version(group, v)
                .map(|t| discovery_resource(t))
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for `/api`
/// (`core = true`) or `/apis`.
pub fn aggregated_discovery(types: &Types, core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group(types, "", &["v1".to_string()])]
    } else {
        types
            .groups()
            .iter()
            .map(|(g, vs)| discovery_group(types, g, vs))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2", "v1beta1", "v1", "foo", "v1beta2"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn builtin_discovery() {
        let r = Registry::new();
        let t = r.types();
        let cm = t.lookup("", "v1", "configmaps").unwrap();
        assert_eq!(cm.kind, "ConfigMap");
        let list = api_resource_list(&t, "apps", "v1").unwrap();
        assert!(
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["group"] == "autoscaling")
        );
        let agg = aggregated_discovery(&t, false, "v2");
        assert_eq!(agg["items"][0]["metadata"]["name"], "apps");
        assert!(crate::openapi::openapi_root(&t)["paths"]["api/v1"].is_object());
    }
}
