//! `LatticeProvisioner` (namespaced) and `ClusterLatticeProvisioner` (cluster-scoped): who may
//! register agents with which service key, and under which policy (docs/tenancy.md).
//!
//! A provisioner names an AgentLattice base URL, the Secret holding its service key (which must
//! carry the label [`SERVICE_KEY_LABEL`]`: "true"`, see docs/tenancy.md for why), and a policy:
//! the capabilities its agents may hold and the agent names it may register. A
//! `LatticeProvisioner` serves the LatticeAgents of its own namespace only, and its Secret is in
//! that namespace; a `ClusterLatticeProvisioner` names the Secret's namespace and which namespaces
//! may use it (none by default).
//!
//! Provisioners are cluster-admin objects: the chart aggregates none of their verbs into the
//! built-in `edit` role, so the people who create LatticeAgents cannot widen their own policy.

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSON, JSONSchemaProps,
    JSONSchemaPropsOrArray, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CAPABILITY_MAX, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, column, finish_crd, prop,
    strip_nullable,
};

/// The label that marks a Secret as holding a service key a provisioner may use.
pub const SERVICE_KEY_LABEL: &str = "agentlattice.io/service-key";
/// The value of [`SERVICE_KEY_LABEL`] that marks it.
pub const SERVICE_KEY_LABEL_VALUE: &str = "true";
/// Default data field of a provisioner's service key Secret.
pub const DEFAULT_SERVICE_KEY_FIELD: &str = "AL_SERVICE_KEY";
/// A capability pattern of a policy: an exact capability, `prefix.*`, `provider:*` (an Alter
/// provider's scopes) or `*`.
pub const CAPABILITY_RULE_PATTERN: &str = "^(\\*|[a-z0-9]([a-z0-9._:-]*[a-z0-9])?([.:]\\*)?)$";
/// An agent-name prefix: the start of an agent name (may end with `-`, `.` or `_`).
pub const AGENT_NAME_PREFIX_PATTERN: &str = "^[a-z0-9][a-z0-9._-]*$";
/// Maximum number of capability rules of a policy.
pub const CAPABILITY_RULES_MAX: usize = 256;
/// Maximum number of namespace names a cluster provisioner lists.
pub const NAMESPACE_NAMES_MAX: usize = 1024;
/// An HTTP(S) URL (the operator checks the rest: HTTPS, or plain HTTP on loopback only).
pub const BASE_URL_PATTERN: &str = "^https?://[^\\s]+$";

/// A namespaced provisioner: registers the agents of LatticeAgents of its own namespace that
/// name it (`spec.provisionerRef: {kind: LatticeProvisioner, name}`), with the service key in a
/// Secret of its own namespace, under its policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agentlattice.io",
    version = "v1alpha1",
    kind = "LatticeProvisioner",
    plural = "latticeprovisioners",
    singular = "latticeprovisioner",
    namespaced,
    status = "ProvisionerStatus",
    shortname = "lprov",
    category = "agentlattice",
    derive = "PartialEq",
    doc = "Registers the AgentLattice agents of its namespace's LatticeAgents with its own service key, under its policy."
)]
#[serde(rename_all = "camelCase")]
pub struct LatticeProvisionerSpec {
    /// Base URL of the backend. Defaults to the operator's (`--agentlattice-url`), or for an
    /// Alter provisioner to Alter's public API (`https://backend.alterauth.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Register the agents with Alter's managed agents instead of AgentLattice
    /// (docs/alter.md): the Secret then holds an Alter app key, and the agents' Secrets carry
    /// `ALTER_API_KEY`, `ALTER_AGENT_ID` and `ALTER_BASE_URL`. Cannot be added or removed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alter: Option<AlterBackend>,
    /// The Secret of this namespace holding the service key. It must be labelled
    /// `agentlattice.io/service-key: "true"`.
    pub service_key_secret_ref: ServiceKeySecretRef,
    /// Which capabilities and agent names the agents may have.
    #[serde(default)]
    pub policy: ProvisionerPolicy,
    /// `true` halts every agent this provisioner registered and registers nothing new; `false`
    /// resumes the agents it halted.
    #[serde(default)]
    pub suspend: bool,
}

/// A cluster-wide provisioner: usable by the LatticeAgents of the namespaces it lists or selects
/// (none by default).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agentlattice.io",
    version = "v1alpha1",
    kind = "ClusterLatticeProvisioner",
    plural = "clusterlatticeprovisioners",
    singular = "clusterlatticeprovisioner",
    status = "ProvisionerStatus",
    shortname = "clprov",
    category = "agentlattice",
    derive = "PartialEq",
    doc = "Registers the AgentLattice agents of the LatticeAgents of the namespaces it allows, with its own service key, under its policy."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLatticeProvisionerSpec {
    /// Base URL of the backend. Defaults to the operator's (`--agentlattice-url`), or for an
    /// Alter provisioner to Alter's public API (`https://backend.alterauth.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Register the agents with Alter's managed agents instead of AgentLattice
    /// (docs/alter.md): the Secret then holds an Alter app key, and the agents' Secrets carry
    /// `ALTER_API_KEY`, `ALTER_AGENT_ID` and `ALTER_BASE_URL`. Cannot be added or removed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alter: Option<AlterBackend>,
    /// The Secret holding the service key (with its namespace). It must be labelled
    /// `agentlattice.io/service-key: "true"`.
    pub service_key_secret_ref: ClusterServiceKeySecretRef,
    /// Which capabilities and agent names the agents may have.
    #[serde(default)]
    pub policy: ProvisionerPolicy,
    /// Which namespaces may use this provisioner: those listed, and those the selector matches.
    /// None by default.
    #[serde(default)]
    pub namespaces: NamespaceRule,
    /// `true` halts every agent this provisioner registered and registers nothing new; `false`
    /// resumes the agents it halted.
    #[serde(default)]
    pub suspend: bool,
}

/// The Alter backend of a provisioner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlterBackend {
    /// The Alter app the agents belong to (`alter agents --app`, `ALTER_APP_ID`). The app key
    /// must belong to it: the operator checks (`POST /sdk/identity/resolve`) before the
    /// provisioner is Ready.
    pub app_id: String,
}

/// The CEL rule that keeps a provisioner on one backend: its agents live where they were
/// registered.
pub const FIXED_BACKEND_RULE: &str = "has(self.alter) == has(oldSelf.alter)";
/// The message of [`FIXED_BACKEND_RULE`].
pub const FIXED_BACKEND_MESSAGE: &str = "spec.alter cannot be added or removed: the agents of a \
     provisioner live at the backend they were registered with; create another provisioner";
/// The Secret data field of an Alter app key, by convention (the CLI's variable is
/// `ALTER_API_KEY`; `serviceKeySecretRef.key` names it).
pub const ALTER_APP_KEY_FIELD: &str = "ALTER_APP_KEY";

/// A service key Secret in the provisioner's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKeySecretRef {
    /// The Secret's name.
    pub name: String,
    /// The data field holding the key (default `AL_SERVICE_KEY`; for an Alter provisioner,
    /// name the field holding the app key, e.g. `ALTER_APP_KEY`).
    #[serde(default = "default_field")]
    pub key: String,
}

/// A service key Secret anywhere in the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceKeySecretRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The data field holding the key (default `AL_SERVICE_KEY`; for an Alter provisioner,
    /// name the field holding the app key, e.g. `ALTER_APP_KEY`).
    #[serde(default = "default_field")]
    pub key: String,
}

fn default_field() -> String {
    DEFAULT_SERVICE_KEY_FIELD.to_owned()
}

/// What the agents of a provisioner may be.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerPolicy {
    /// The capabilities an agent may hold: exact names, `prefix.*` (any capability starting with
    /// `prefix.`), `provider:*` (any capability starting with `provider:`, an Alter provider's
    /// scopes) or `*` (any). Empty (the default): no capability at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The agent names it may register.
    #[serde(default)]
    pub agent_names: AgentNamePolicy,
}

/// The agent names a provisioner may register.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentNamePolicy {
    /// Names must begin with this. Default: `<cluster-name>-<namespace>-` of the LatticeAgent
    /// (`<namespace>-` when the operator has no `--cluster-name`), so that no namespace can take
    /// another's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Which namespaces may use a cluster provisioner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceRule {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Observed state of a provisioner, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerStatus {
    /// `Ready`: the service key is present, marked, and AgentLattice accepts it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the operator last checked the service key with AgentLattice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::date_time_schema")]
    pub last_checked: Option<Timestamp>,
    /// How many LatticeAgents this provisioner registered (their status names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<i64>,
    /// The public prefix of the service key (8 characters after `al_svc_`; never the key).
    /// Its id is not shown: AgentLattice does not tell a service key its own id (no service-key
    /// endpoint); each LatticeAgent's `status.serviceKeyId` has the id of the key that
    /// registered it (AgentLattice's `created_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_key_prefix: Option<String>,
    /// When the current service key was written to its Secret (or first seen there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::date_time_schema")]
    pub service_key_created: Option<Timestamp>,
}

/// The two provisioner kinds, as `spec.provisionerRef.kind` names them.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum ProvisionerKind {
    /// A `LatticeProvisioner` of the LatticeAgent's namespace.
    LatticeProvisioner,
    /// A `ClusterLatticeProvisioner`.
    ClusterLatticeProvisioner,
}

impl ProvisionerKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisionerKind::LatticeProvisioner => "LatticeProvisioner",
            ProvisionerKind::ClusterLatticeProvisioner => "ClusterLatticeProvisioner",
        }
    }
}

impl std::fmt::Display for ProvisionerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// File name of the generated `LatticeProvisioner` CRD under `crds/`.
pub const PROVISIONER_CRD_FILE_NAME: &str = "latticeprovisioners.agentlattice.io.yaml";
/// File name of the generated `ClusterLatticeProvisioner` CRD under `crds/`.
pub const CLUSTER_PROVISIONER_CRD_FILE_NAME: &str =
    "clusterlatticeprovisioners.agentlattice.io.yaml";

/// The `LatticeProvisioner` CRD, post-processed like the LatticeAgent's.
pub fn provisioner_crd() -> CustomResourceDefinition {
    finish_crd(LatticeProvisioner::crd(), printer_columns, refine)
}

/// The `ClusterLatticeProvisioner` CRD, post-processed like the LatticeAgent's.
pub fn cluster_provisioner_crd() -> CustomResourceDefinition {
    finish_crd(ClusterLatticeProvisioner::crd(), printer_columns, refine)
}

fn printer_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column(
            "Ready",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
            "Whether the service key is present, marked and accepted by AgentLattice",
        ),
        column(
            "Agents",
            "integer",
            ".status.agents",
            "How many LatticeAgents this provisioner registered",
        ),
        column(
            "Key age",
            "date",
            ".status.serviceKeyCreated",
            "When the service key was written to its Secret",
        ),
        column(
            "Suspended",
            "boolean",
            ".spec.suspend",
            "Whether the provisioner halts its agents",
        ),
        CustomResourceColumnDefinition {
            priority: Some(1),
            ..column(
                "Alter app",
                "string",
                ".spec.alter.appId",
                "The Alter app of an Alter provisioner (empty: AgentLattice)",
            )
        },
        column(
            "Age",
            "date",
            ".metadata.creationTimestamp",
            "When the provisioner was created",
        ),
    ]
}

fn refine(root: &mut JSONSchemaProps) {
    strip_nullable(root);
    if let Some(spec) = prop(root, "spec") {
        spec.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: FIXED_BACKEND_RULE.to_owned(),
            message: Some(FIXED_BACKEND_MESSAGE.to_owned()),
            reason: Some("FieldValueForbidden".to_owned()),
            ..Default::default()
        }]);
        if let Some(alter) = prop(spec, "alter")
            && let Some(p) = prop(alter, "appId")
        {
            p.min_length = Some(1);
            p.max_length = Some(64);
            p.pattern = Some("^[A-Za-z0-9][A-Za-z0-9_-]*$".to_owned());
        }
        if let Some(p) = prop(spec, "baseUrl") {
            p.pattern = Some(BASE_URL_PATTERN.to_owned());
            p.max_length = Some(2048);
        }
        if let Some(r) = prop(spec, "serviceKeySecretRef") {
            for field in ["name", "namespace"] {
                if let Some(p) = prop(r, field) {
                    p.min_length = Some(1);
                    p.max_length = Some(DNS_SUBDOMAIN_MAX as i64);
                    p.pattern = Some(DNS_SUBDOMAIN_PATTERN.to_owned());
                }
            }
            if let Some(p) = prop(r, "key") {
                p.min_length = Some(1);
                p.max_length = Some(DNS_SUBDOMAIN_MAX as i64);
                p.pattern = Some("^[-._a-zA-Z0-9]+$".to_owned());
            }
        }
        if let Some(policy) = prop(spec, "policy") {
            policy.default = Some(JSON(serde_json::json!({})));
            if let Some(p) = prop(policy, "capabilities") {
                p.max_items = Some(CAPABILITY_RULES_MAX as i64);
                p.x_kubernetes_list_type = Some("set".to_owned());
                if let Some(JSONSchemaPropsOrArray::Schema(item)) = p.items.as_mut() {
                    item.min_length = Some(1);
                    item.max_length = Some(CAPABILITY_MAX as i64 + 2);
                    item.pattern = Some(CAPABILITY_RULE_PATTERN.to_owned());
                }
            }
            if let Some(names) = prop(policy, "agentNames") {
                names.default = Some(JSON(serde_json::json!({})));
                if let Some(p) = prop(names, "prefix") {
                    p.min_length = Some(1);
                    p.max_length = Some(super::AGENT_NAME_MAX as i64 - 1);
                    p.pattern = Some(AGENT_NAME_PREFIX_PATTERN.to_owned());
                }
            }
        }
        if let Some(namespaces) = prop(spec, "namespaces") {
            namespaces.default = Some(JSON(serde_json::json!({})));
            if let Some(p) = prop(namespaces, "names") {
                p.max_items = Some(NAMESPACE_NAMES_MAX as i64);
                p.x_kubernetes_list_type = Some("set".to_owned());
                if let Some(JSONSchemaPropsOrArray::Schema(item)) = p.items.as_mut() {
                    item.min_length = Some(1);
                    item.max_length = Some(63);
                    item.pattern = Some("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$".to_owned());
                }
            }
        }
        if let Some(p) = prop(spec, "suspend") {
            p.default = Some(JSON(serde_json::Value::Bool(false)));
        }
    }
    if let Some(status) = prop(root, "status")
        && let Some(conditions) = prop(status, "conditions")
    {
        conditions.x_kubernetes_list_type = Some("map".to_owned());
        conditions.x_kubernetes_list_map_keys = Some(vec!["type".to_owned()]);
    }
}
