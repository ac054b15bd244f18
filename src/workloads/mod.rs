//! Workloads: the Deployments, StatefulSets and DaemonSets of the watched namespaces
//! (docs/workloads.md).
//!
//! - [`view`] — what the operator keeps of a workload (a trimmed view, not the object): which
//!   Secrets its pods read the agent key from and how, its restart annotations, where its rollout
//!   stands; pure, from the typed object.
//! - [`index`] — the views by namespace and Secret: the consumers of each agent's Secret, for the
//!   LatticeAgent reconcile (`Observed::consumers`).
//! - [`identity`] — automatic identities: the LatticeAgent an annotated workload asks for, and
//!   what to do about the one that exists (pure).
//! - [`controller`] — the watches that keep the index, wake the LatticeAgents whose consumers
//!   changed, and reconcile identities.

pub mod controller;
pub mod identity;
pub mod index;
pub mod view;

use serde_json::json;

/// Workload annotation: the capabilities of the workload's identity, comma-separated. Its
/// presence asks for a LatticeAgent (with `--workload-identities`).
pub const CAPABILITIES_ANNOTATION: &str = "agentlattice.io/capabilities";
/// Workload annotation: the identity's `spec.agentName` (optional).
pub const AGENT_NAME_ANNOTATION: &str = "agentlattice.io/agent-name";
/// Workload annotation: the identity's `spec.secretName` (optional).
pub const SECRET_NAME_ANNOTATION: &str = "agentlattice.io/secret-name";
/// Workload annotation: the identity's `spec.description` (optional).
pub const DESCRIPTION_ANNOTATION: &str = "agentlattice.io/description";
/// Workload annotation: `"false"` turns off the restart on rotation of the workload's identity
/// (on by default for annotated workloads).
pub const RESTART_ON_ROTATION_ANNOTATION: &str = "agentlattice.io/restart-on-rotation";
/// Workload annotation: the identity's `spec.rotation.interval` (optional: no schedule).
pub const ROTATION_INTERVAL_ANNOTATION: &str = "agentlattice.io/rotation-interval";
/// Workload annotation: the identity's `spec.rotation.gracePeriod` (optional: the default).
pub const GRACE_PERIOD_ANNOTATION: &str = "agentlattice.io/grace-period";
/// Workload annotation: the identity's `spec.rotation.maxGracePeriod` (optional: the default).
pub const MAX_GRACE_PERIOD_ANNOTATION: &str = "agentlattice.io/max-grace-period";
/// Pod-template annotation: the key id the operator last restarted the workload for.
pub const RESTARTED_FOR_ANNOTATION: &str = "agentlattice.io/restarted-for";
/// Pod-template annotation: when the operator last restarted the workload (RFC 3339).
pub const RESTARTED_AT_ANNOTATION: &str = "agentlattice.io/restarted-at";
/// Pod-template annotation `kubectl rollout restart` sets.
pub const KUBECTL_RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// The merge patch that restarts a workload for `key_id` at `at`: its pod template's restart
/// annotations. The planner derives `at` from durable facts only (the key's creation, the
/// workload's previous restart), so a restart decided twice — by a reconcile that read the
/// workload before the first patch came back through the watch — is the same template, which
/// starts no second rollout.
pub fn restart_patch(key_id: &str, at: jiff::Timestamp) -> serde_json::Value {
    let at = jiff::Timestamp::from_second(at.as_second()).unwrap_or(at);
    json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_FOR_ANNOTATION: key_id,
        RESTARTED_AT_ANNOTATION: at.to_string(),
    }}}}})
}
