//! The `LatticeAgent` custom resource (design §1) and its generated CustomResourceDefinition.
//!
//! The Rust types are the source of truth: [`crd()`] derives the schema from them and then adds what
//! the derive cannot express (patterns, limits, list types, defaults, printer columns and the CEL
//! transition rule). `crds/latticeagents.agentlattice.io.yaml` is generated from [`crd_yaml()`] and a
//! test fails when it is stale.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSON, JSONSchemaProps,
    JSONSchemaPropsOrArray, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod provisioner;

pub use provisioner::{
    ALTER_APP_KEY_FIELD, AgentNamePolicy, AlterBackend, CAPABILITY_RULE_PATTERN,
    CLUSTER_PROVISIONER_CRD_FILE_NAME, ClusterLatticeProvisioner, ClusterLatticeProvisionerSpec,
    ClusterServiceKeySecretRef, DEFAULT_SERVICE_KEY_FIELD, FIXED_BACKEND_MESSAGE,
    FIXED_BACKEND_RULE, LatticeProvisioner, LatticeProvisionerSpec, NamespaceRule,
    PROVISIONER_CRD_FILE_NAME, ProvisionerKind, ProvisionerPolicy, ProvisionerStatus,
    SERVICE_KEY_LABEL, SERVICE_KEY_LABEL_VALUE, ServiceKeySecretRef, cluster_provisioner_crd,
    provisioner_crd,
};

/// API group of the resource.
pub const GROUP: &str = "agentlattice.io";
/// The finalizer that keeps a `LatticeAgent` until its agent is revoked (or retained).
pub const FINALIZER: &str = "agentlattice.io/cleanup";

/// Whether the object described by `meta` carries the operator's [`FINALIZER`].
pub fn has_finalizer(meta: &kube::core::ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}
/// Any change to a new non-empty value asks for one rotation with the normal grace period.
pub const ROTATE_ANNOTATION: &str = "agentlattice.io/rotate";
/// Any change to a new non-empty value rotates and revokes the previous key(s) at once.
pub const COMPROMISED_ANNOTATION: &str = "agentlattice.io/compromised";
/// Any change to a new non-empty value registers a new agent after `AgentRevokedExternally`.
pub const REREGISTER_ANNOTATION: &str = "agentlattice.io/reregister";
/// `"true"` lets a stuck deletion finish without revoking the agent.
pub const SKIP_REVOKE_ANNOTATION: &str = "agentlattice.io/skip-revoke";

/// Agent names: 1–63 characters (the name is also a label value on the Secret).
pub const AGENT_NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$";
/// Maximum length of an agent name.
pub const AGENT_NAME_MAX: usize = 63;
/// Capability strings, as in the wire contract.
pub const CAPABILITY_PATTERN: &str = "^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?$";
/// Maximum length of one capability.
pub const CAPABILITY_MAX: usize = 128;
/// Maximum number of capabilities.
pub const CAPABILITIES_MAX_ITEMS: usize = 64;
/// Maximum length of a description.
pub const DESCRIPTION_MAX: usize = 1024;
/// A DNS subdomain (RFC 1123), the rule for Secret names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Maximum length of a DNS subdomain.
pub const DNS_SUBDOMAIN_MAX: usize = 253;
/// Go duration syntax plus days, positive only: `90s`, `10m`, `1h30m`, `1.5h`, `30d`.
pub const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+$";

/// The CEL rule that freezes `spec.agentName` and `spec.secretName` once an agent is registered.
pub const IMMUTABLE_NAMES_RULE: &str = "!has(oldSelf.status) || !has(oldSelf.status.agentId) || \
     ((has(self.spec.agentName) ? self.spec.agentName : '') == \
     (has(oldSelf.spec.agentName) ? oldSelf.spec.agentName : '') && \
     (has(self.spec.secretName) ? self.spec.secretName : '') == \
     (has(oldSelf.spec.secretName) ? oldSelf.spec.secretName : ''))";
/// The message of [`IMMUTABLE_NAMES_RULE`].
pub const IMMUTABLE_NAMES_MESSAGE: &str = "spec.agentName and spec.secretName cannot change once the \
     agent is registered (status.agentId is set); create a new LatticeAgent instead";

/// The CEL rule that freezes `spec.provisionerRef` once an agent is registered: moving an agent to
/// another provisioner is a new registration, which the user asks for with a new LatticeAgent.
pub const IMMUTABLE_PROVISIONER_RULE: &str = "!has(oldSelf.status) || !has(oldSelf.status.agentId) || \
     (has(self.spec.provisionerRef) == has(oldSelf.spec.provisionerRef) && \
     (!has(self.spec.provisionerRef) || \
     (self.spec.provisionerRef.kind == oldSelf.spec.provisionerRef.kind && \
     self.spec.provisionerRef.name == oldSelf.spec.provisionerRef.name)))";
/// The message of [`IMMUTABLE_PROVISIONER_RULE`].
pub const IMMUTABLE_PROVISIONER_MESSAGE: &str = "spec.provisionerRef cannot change once the agent \
     is registered (status.agentId is set); create a new LatticeAgent to register with another \
     provisioner";

/// A governed AgentLattice identity for a workload: the operator registers the agent, keeps its key
/// in a Secret, rotates the key on request or on a schedule, and revokes the agent on deletion.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agentlattice.io",
    version = "v1alpha1",
    kind = "LatticeAgent",
    plural = "latticeagents",
    singular = "latticeagent",
    namespaced,
    status = "LatticeAgentStatus",
    shortname = "la",
    category = "agentlattice",
    derive = "PartialEq",
    doc = "A governed AgentLattice identity for a workload, with its key kept in a Secret."
)]
#[serde(rename_all = "camelCase")]
pub struct LatticeAgentSpec {
    /// Name of the agent at AgentLattice. Defaults to `<namespace>-<name>`. Immutable once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Human-readable description of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The capabilities granted to the agent (a set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Name of the Secret that receives the agent key. Defaults to `<name>-agent-key`. Immutable
    /// once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `Owned` (default): never touch a Secret the operator does not own. `Adopt`: take over an
    /// existing Secret of that name that has no controller.
    #[serde(default)]
    pub secret_policy: SecretPolicy,
    /// Extra labels and annotations for the Secret (the operator's own win on a clash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Key rotation schedule and grace periods.
    #[serde(default)]
    pub rotation: RotationSpec,
    /// `Revoke` (default): revoke the agent when this resource is deleted. `Retain`: keep the agent
    /// and its Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true` halts the agent at AgentLattice; `false` resumes it.
    #[serde(default)]
    pub suspend: bool,
    /// Restart the workloads that read the key from the environment (or a `subPath` mount) after
    /// a new key is written, so that they have it before the old one is revoked
    /// (docs/workloads.md). On for the identities of annotated workloads.
    #[serde(default)]
    pub restart_on_rotation: bool,
    /// The provisioner that registers the agent (docs/tenancy.md). Absent: the operator's default
    /// provisioner (the service key and policy of its flags). Immutable once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner_ref: Option<ProvisionerRef>,
}

/// A reference to a provisioner.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerRef {
    /// `LatticeProvisioner` (of this namespace) or `ClusterLatticeProvisioner`.
    pub kind: ProvisionerKind,
    /// Its name.
    pub name: String,
}

/// Whether the operator may take over an existing Secret.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecretPolicy {
    // Only Secrets the operator created (controller owner reference to this resource).
    #[default]
    Owned,
    // Also an existing Secret of that name without a controller.
    Adopt,
}

/// What happens to the agent when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    // Revoke the agent at AgentLattice; the Secret is garbage-collected with the resource.
    #[default]
    Revoke,
    // Keep the agent and its Secret (the owner reference is removed).
    Retain,
}

/// Extra metadata for the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Extra labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Rotation schedule and grace periods. Durations use Go's syntax plus days (`90s`, `10m`,
/// `1h30m`, `30d`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// Rotate the key this long after it was created (jittered per agent). No schedule when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// An old key is revoked once this long has passed since its replacement was written and it
    /// has not been used for this long.
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    /// An old key is revoked at the latest this long after its replacement was written.
    #[serde(default = "default_max_grace_period")]
    pub max_grace_period: String,
}

/// Default of `spec.rotation.gracePeriod`.
pub const DEFAULT_GRACE_PERIOD: &str = "10m";
/// Default of `spec.rotation.maxGracePeriod`.
pub const DEFAULT_MAX_GRACE_PERIOD: &str = "24h";

fn default_grace_period() -> String {
    DEFAULT_GRACE_PERIOD.to_owned()
}

fn default_max_grace_period() -> String {
    DEFAULT_MAX_GRACE_PERIOD.to_owned()
}

impl Default for RotationSpec {
    fn default() -> Self {
        Self {
            interval: None,
            grace_period: default_grace_period(),
            max_grace_period: default_max_grace_period(),
        }
    }
}

/// Observed state, written only by the operator. Everything but the conditions, `mintStartedAt`,
/// `lastRotationTime` and the remote deprecation times is a projection of the Secret (design §2).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatticeAgentStatus {
    /// `Ready`, `Synced` and `Rotating`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The AgentLattice agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The registered agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// The Secret holding the agent key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The key in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<ActiveKeyStatus>,
    /// Keys replaced by a newer one and waiting to be revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring_keys: Vec<RetiringKeyStatus>,
    /// When the key in the Secret was last replaced by a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_rotation_time: Option<Timestamp>,
    /// When the schedule (`spec.rotation.interval` plus jitter) rotates the key next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub next_rotation_time: Option<Timestamp>,
    /// The last values of the action annotations that were acted on.
    #[serde(default, skip_serializing_if = "HandledAnnotations::is_empty")]
    pub handled: HandledAnnotations,
    /// Set before a key is minted and cleared once it is in the Secret: after a crash in between,
    /// the next reconcile revokes any key that was minted but never delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub mint_started_at: Option<Timestamp>,
    /// The workloads of the namespace whose pods read the key from the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerStatus>,
    /// The provisioner that registered the agent: `default`, `LatticeProvisioner/<ns>/<name>`
    /// or `ClusterLatticeProvisioner/<name>` (also in the agent's metadata at AgentLattice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    /// The id of the service key that registered the agent (AgentLattice's `created_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_key_id: Option<String>,
    /// The agent was halted because its provisioner is suspended; resuming the provisioner
    /// resumes it (and only the agents halted this way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub halted_by_provisioner: bool,
}

/// A workload whose pods read the agent key (docs/workloads.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// How its pods read the key: `Environment` (fixed when a container starts), `File` (a
    /// mounted Secret, refreshed by the kubelet), `SubPathFile` (a `subPath` mount, never
    /// refreshed).
    pub reads: String,
    /// Whether it runs with the key in the Secret: `Current`, `RollingOut` (restarted for it),
    /// `Syncing` (a mounted file, within the kubelet's sync period), `Stale` (pods hold an older
    /// key), `Stuck` (its rollout cannot finish).
    pub key: String,
    /// The key id the operator last restarted it for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_for: Option<String>,
}

/// The key currently in the Secret (never the key itself).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveKeyStatus {
    /// AgentLattice key id.
    pub id: String,
    /// Public prefix (8 characters, without the scheme).
    pub prefix: String,
    /// When AgentLattice created the key.
    #[schemars(schema_with = "date_time_schema")]
    pub created_at: Timestamp,
}

/// A key being retired (design §3.1 step 10).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKeyStatus {
    /// AgentLattice key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// When its replacement was written to the Secret.
    #[schemars(schema_with = "date_time_schema")]
    pub retiring_since: Timestamp,
    /// When AgentLattice marked it deprecated (unset until the deprecation is confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub deprecated_at: Option<Timestamp>,
    /// The last use AgentLattice reported when the operator last checked (it is revoked once
    /// unused for a whole grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_used_at: Option<Timestamp>,
    /// The earliest revocation: `retiringSince + gracePeriod` (at once when `immediate`), and only
    /// once the key has not been used for a whole grace period.
    #[schemars(schema_with = "date_time_schema")]
    pub revoke_after: Timestamp,
    /// The latest revocation: `retiringSince + maxGracePeriod`.
    #[schemars(schema_with = "date_time_schema")]
    pub revoke_by: Timestamp,
    /// Revoked without grace (compromised, or never delivered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immediate: bool,
}

/// The last action-annotation values acted on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandledAnnotations {
    /// Last `agentlattice.io/rotate` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<String>,
    /// Last `agentlattice.io/compromised` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised: Option<String>,
    /// Last `agentlattice.io/reregister` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregister: Option<String>,
}

impl HandledAnnotations {
    /// True when no annotation was ever acted on.
    pub fn is_empty(&self) -> bool {
        self.rotate.is_none() && self.compromised.is_none() && self.reregister.is_none()
    }
}

pub(crate) fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// The CustomResourceDefinition, post-processed from the derive (see the module docs).
pub fn crd() -> CustomResourceDefinition {
    finish_crd(LatticeAgent::crd(), printer_columns, refine_schema)
}

/// What the derive cannot say, for each of the operator's CRDs: kept by `helm uninstall` (deleting
/// a CRD deletes every object of it — LatticeAgents with their Secrets while their agents stay
/// alive at AgentLattice, provisioners with the link to the agents they registered; Helm already
/// leaves a chart's `crds/` alone, this also covers a CRD that was templated or adopted), and each
/// version's printer columns and schema refinements.
fn finish_crd(
    mut crd: CustomResourceDefinition,
    columns: fn() -> Vec<CustomResourceColumnDefinition>,
    refine: fn(&mut JSONSchemaProps),
) -> CustomResourceDefinition {
    crd.metadata.annotations = Some(BTreeMap::from([(
        "helm.sh/resource-policy".to_owned(),
        "keep".to_owned(),
    )]));
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(columns());
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            refine(root);
        }
    }
    crd
}

/// A printer column `kubectl get` always shows.
fn column(
    name: &str,
    type_: &str,
    path: &str,
    description: &str,
) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.to_owned(),
        type_: type_.to_owned(),
        json_path: path.to_owned(),
        description: Some(description.to_owned()),
        ..Default::default()
    }
}

/// [`crd()`] as YAML with every mapping's keys sorted, so the output does not depend on serde_json
/// feature unification (`preserve_order`) and reruns are byte-identical.
pub fn crd_yaml() -> Result<String, crate::yaml::YamlError> {
    let value = serde_json::to_value(crd()).unwrap_or_default();
    crate::yaml::to_string(&sorted(value))
}

/// File name of the generated CRD under `crds/`.
pub const CRD_FILE_NAME: &str = "latticeagents.agentlattice.io.yaml";

/// Every CRD of the operator: (file name under `crds/`, object).
pub fn all_crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        (CRD_FILE_NAME, crd()),
        (PROVISIONER_CRD_FILE_NAME, provisioner_crd()),
        (CLUSTER_PROVISIONER_CRD_FILE_NAME, cluster_provisioner_crd()),
    ]
}

/// Every CRD of the operator as YAML, like [`crd_yaml`]: (file name under `crds/`, YAML).
pub fn all_crd_yaml() -> Result<Vec<(&'static str, String)>, crate::yaml::YamlError> {
    all_crds()
        .into_iter()
        .map(|(name, crd)| {
            let value = serde_json::to_value(crd).unwrap_or_default();
            crate::yaml::to_string(&sorted(value)).map(|y| (name, y))
        })
        .collect()
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let entries: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(entries.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn printer_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column(
            "Ready",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
            "Whether the workload has a working key in its Secret",
        ),
        column(
            "Agent",
            "string",
            ".status.agentName",
            "The AgentLattice agent name",
        ),
        column(
            "Secret",
            "string",
            ".status.secretName",
            "The Secret holding the agent key",
        ),
        column(
            "Key age",
            "date",
            ".status.activeKey.createdAt",
            "When the key in the Secret was created",
        ),
        column(
            "Age",
            "date",
            ".metadata.creationTimestamp",
            "When the resource was created",
        ),
        // `-o wide` only: where a key's retirement stands, and the schedule.
        wide(column(
            "Rotating",
            "string",
            ".status.conditions[?(@.type==\"Rotating\")].reason",
            "Key retirement: Idle, or what the old key waits for",
        )),
        // A string, not a date: a date column shows an age, and a future time's age is
        // "<invalid>" (the API server's HumanDuration).
        wide(column(
            "Next rotation",
            "string",
            ".status.nextRotationTime",
            "When the schedule rotates the key next",
        )),
        wide(column(
            "Provisioner",
            "string",
            ".status.provisioner",
            "The provisioner that registered the agent",
        )),
    ]
}

/// A column `kubectl get` shows only with `-o wide`.
fn wide(column: CustomResourceColumnDefinition) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        priority: Some(1),
        ..column
    }
}

fn refine_schema(root: &mut JSONSchemaProps) {
    strip_nullable(root);
    root.x_kubernetes_validations = Some(vec![
        ValidationRule {
            rule: IMMUTABLE_NAMES_RULE.to_owned(),
            message: Some(IMMUTABLE_NAMES_MESSAGE.to_owned()),
            reason: Some("FieldValueForbidden".to_owned()),
            ..Default::default()
        },
        ValidationRule {
            rule: IMMUTABLE_PROVISIONER_RULE.to_owned(),
            message: Some(IMMUTABLE_PROVISIONER_MESSAGE.to_owned()),
            reason: Some("FieldValueForbidden".to_owned()),
            ..Default::default()
        },
    ]);

    if let Some(spec) = prop(root, "spec") {
        if let Some(p) = prop(spec, "agentName") {
            p.min_length = Some(1);
            p.max_length = Some(AGENT_NAME_MAX as i64);
            p.pattern = Some(AGENT_NAME_PATTERN.to_owned());
        }
        if let Some(p) = prop(spec, "description") {
            p.max_length = Some(DESCRIPTION_MAX as i64);
        }
        if let Some(p) = prop(spec, "capabilities") {
            p.max_items = Some(CAPABILITIES_MAX_ITEMS as i64);
            p.x_kubernetes_list_type = Some("set".to_owned());
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = p.items.as_mut() {
                item.min_length = Some(1);
                item.max_length = Some(CAPABILITY_MAX as i64);
                item.pattern = Some(CAPABILITY_PATTERN.to_owned());
            }
        }
        if let Some(p) = prop(spec, "secretName") {
            p.min_length = Some(1);
            p.max_length = Some(DNS_SUBDOMAIN_MAX as i64);
            p.pattern = Some(DNS_SUBDOMAIN_PATTERN.to_owned());
        }
        if let Some(r) = prop(spec, "provisionerRef") {
            if let Some(p) = prop(r, "kind") {
                set_enum_values(p, &["LatticeProvisioner", "ClusterLatticeProvisioner"]);
            }
            if let Some(p) = prop(r, "name") {
                p.min_length = Some(1);
                p.max_length = Some(DNS_SUBDOMAIN_MAX as i64);
                p.pattern = Some(DNS_SUBDOMAIN_PATTERN.to_owned());
            }
        }
        if let Some(p) = prop(spec, "secretPolicy") {
            set_enum(p, &["Owned", "Adopt"], "Owned");
        }
        if let Some(p) = prop(spec, "deletionPolicy") {
            set_enum(p, &["Revoke", "Retain"], "Revoke");
        }
        for flag in ["suspend", "restartOnRotation"] {
            if let Some(p) = prop(spec, flag) {
                p.default = Some(JSON(serde_json::Value::Bool(false)));
            }
        }
        if let Some(rotation) = prop(spec, "rotation") {
            // `{}` lets the API server apply the nested defaults when `rotation` is omitted.
            rotation.default = Some(JSON(serde_json::json!({})));
            for (field, default) in [
                ("interval", None),
                ("gracePeriod", Some(DEFAULT_GRACE_PERIOD)),
                ("maxGracePeriod", Some(DEFAULT_MAX_GRACE_PERIOD)),
            ] {
                if let Some(p) = prop(rotation, field) {
                    p.pattern = Some(DURATION_PATTERN.to_owned());
                    p.max_length = Some(64);
                    p.default = default.map(|d| JSON(serde_json::Value::String(d.to_owned())));
                }
            }
        }
    }
    if let Some(status) = prop(root, "status")
        && let Some(conditions) = prop(status, "conditions")
    {
        conditions.x_kubernetes_list_type = Some("map".to_owned());
        conditions.x_kubernetes_list_map_keys = Some(vec!["type".to_owned()]);
    }
}

pub(crate) fn prop<'a>(
    schema: &'a mut JSONSchemaProps,
    name: &str,
) -> Option<&'a mut JSONSchemaProps> {
    schema.properties.as_mut()?.get_mut(name)
}

fn set_enum(p: &mut JSONSchemaProps, values: &[&str], default: &str) {
    set_enum_values(p, values);
    p.default = Some(JSON(serde_json::Value::String(default.to_owned())));
}

fn set_enum_values(p: &mut JSONSchemaProps, values: &[&str]) {
    p.type_ = Some("string".to_owned());
    p.enum_ = Some(
        values
            .iter()
            .map(|v| JSON(serde_json::Value::String((*v).to_owned())))
            .collect(),
    );
    p.one_of = None;
    p.any_of = None;
}

/// Every optional field is omitted rather than sent as `null` (serde `skip_serializing_if`), so
/// `nullable` only widens what the API server accepts without any use; drop it for a tighter schema.
pub(crate) fn strip_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(props) = schema.properties.as_mut() {
        props.values_mut().for_each(strip_nullable);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = schema.items.as_mut() {
        strip_nullable(item);
    }
    if let Some(extra) = schema.additional_properties.as_mut()
        && let k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(s) = extra
    {
        strip_nullable(s);
    }
}

/// The annotation `kubectl apply` (client-side) adds: the whole manifest as JSON, so a
/// LatticeAgent applied that way carries its spec twice.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What of a LatticeAgent's metadata the operator keeps in memory (the reflector store, in
/// `cluster::watch`, and its own writes' overlays, in `memory`): all but the managed fields and `kubectl apply`'s copy of the manifest.
/// No decision reads either — the planner reads annotations by their `agentlattice.io/` keys,
/// the predicate hashes only those — and no write sends cached metadata back: status is written
/// through the `/status` subresource, whose strategy takes everything but `status` from the
/// stored object, and the finalizer through JSON patches of `/metadata/finalizers`. The map
/// itself stays (`Some`, empty if that was the only annotation): nothing else changes shape.
pub fn keep_read_metadata(meta: &mut kube::core::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}
