//! Automatic identities (docs/workloads.md): a Deployment, StatefulSet or DaemonSet annotated
//! `agentlattice.io/capabilities` gets a LatticeAgent of the same name, owned by it (controller
//! owner reference), whose spec follows the annotations. Removing the annotation deletes it; the
//! workload's deletion takes it with it through garbage collection; both revoke the agent through
//! the LatticeAgent's own finalizer. A LatticeAgent that the workload does not own is never taken
//! over. Pure: the workload's metadata and the existing LatticeAgent in, one step out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::{
    AGENT_NAME_ANNOTATION, CAPABILITIES_ANNOTATION, DESCRIPTION_ANNOTATION,
    GRACE_PERIOD_ANNOTATION, MAX_GRACE_PERIOD_ANNOTATION, RESTART_ON_ROTATION_ANNOTATION,
    ROTATION_INTERVAL_ANNOTATION, SECRET_NAME_ANNOTATION,
};
use crate::crd::{GROUP, LatticeAgent};
use crate::plan::WorkloadKind;
use crate::secret::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Label on a LatticeAgent created for a workload: `<Kind>.<name>` of the workload.
pub const WORKLOAD_LABEL: &str = "agentlattice.io/workload";

/// The field manager of the identities' server-side applies.
pub const FIELD_MANAGER: &str = "lattice-operator-identities";

/// Annotation on a LatticeAgent created for a workload: the rotation fields its last apply set
/// from the workload's annotations (`interval=24h,gracePeriod=5m`, empty for none). Removing
/// such a workload annotation must apply again, without the field, so that server-side apply
/// drops it; the LatticeAgent's spec alone cannot tell a value the apply set from one a user set
/// with `kubectl edit`, which the apply leaves alone.
pub const APPLIED_ROTATION_ANNOTATION: &str = "agentlattice.io/applied-rotation";

/// What a workload's annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// Capabilities, sorted, without duplicates or blanks.
    pub capabilities: Vec<String>,
    /// `spec.agentName`.
    pub agent_name: Option<String>,
    /// `spec.secretName`.
    pub secret_name: Option<String>,
    /// `spec.description`.
    pub description: Option<String>,
    /// `spec.restartOnRotation`.
    pub restart_on_rotation: bool,
    /// `spec.rotation.interval`, `gracePeriod`, `maxGracePeriod`: set when annotated, else left
    /// to the CRD's defaults (or to what a user set on the LatticeAgent itself).
    pub rotation: RotationRequest,
}

/// The rotation fields a workload's annotations set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationRequest {
    /// `spec.rotation.interval`.
    pub interval: Option<String>,
    /// `spec.rotation.gracePeriod`.
    pub grace_period: Option<String>,
    /// `spec.rotation.maxGracePeriod`.
    pub max_grace_period: Option<String>,
}

impl RotationRequest {
    /// The fields that are set, by their spec names.
    fn fields(&self) -> Vec<(&'static str, &str)> {
        [
            ("interval", &self.interval),
            ("gracePeriod", &self.grace_period),
            ("maxGracePeriod", &self.max_grace_period),
        ]
        .into_iter()
        .filter_map(|(field, v)| v.as_deref().map(|v| (field, v)))
        .collect()
    }

    /// What [`APPLIED_ROTATION_ANNOTATION`] records of it.
    fn record(&self) -> String {
        self.fields()
            .iter()
            .map(|(field, v)| format!("{field}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The identity the workload's annotations ask for, if any.
pub fn requested(meta: &ObjectMeta) -> Option<Requested> {
    let annotations = meta.annotations.as_ref()?;
    let capabilities = annotations.get(CAPABILITIES_ANNOTATION)?;
    let mut capabilities: Vec<String> = capabilities
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    capabilities.sort();
    capabilities.dedup();
    let text = |key: &str| {
        annotations
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(Requested {
        capabilities,
        agent_name: text(AGENT_NAME_ANNOTATION),
        secret_name: text(SECRET_NAME_ANNOTATION),
        description: text(DESCRIPTION_ANNOTATION),
        restart_on_rotation: annotations
            .get(RESTART_ON_ROTATION_ANNOTATION)
            .is_none_or(|v| v.trim() != "false"),
        rotation: RotationRequest {
            interval: text(ROTATION_INTERVAL_ANNOTATION),
            grace_period: text(GRACE_PERIOD_ANNOTATION),
            max_grace_period: text(MAX_GRACE_PERIOD_ANNOTATION),
        },
    })
}

/// What to do about a workload's identity.
#[derive(Clone, Debug, PartialEq)]
pub enum IdentityStep {
    /// Server-side apply this LatticeAgent (create it, or bring its fields back to the
    /// annotations).
    Apply(Value),
    /// Delete the LatticeAgent (the annotation went), with this uid as precondition.
    Delete {
        /// Its uid.
        uid: String,
    },
    /// A LatticeAgent of that name exists and the workload does not own it: left alone.
    Conflict(String),
    /// Nothing to do.
    Nothing,
}

/// Whether `agent` is the identity of the workload with uid `uid` (its controller owner).
pub fn owned_by(agent: &LatticeAgent, uid: &str) -> bool {
    agent
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The step for the workload `kind` described by `meta`, given the LatticeAgent of its name, if
/// any.
pub fn plan(
    kind: WorkloadKind,
    meta: &ObjectMeta,
    existing: Option<&LatticeAgent>,
) -> IdentityStep {
    let (Some(name), Some(uid)) = (meta.name.as_deref(), meta.uid.as_deref()) else {
        return IdentityStep::Nothing;
    };
    if meta.deletion_timestamp.is_some() {
        // Going: garbage collection takes its LatticeAgent.
        return IdentityStep::Nothing;
    }
    let ours = existing.filter(|a| owned_by(a, uid));
    match (requested(meta), existing, ours) {
        (None, _, Some(agent)) if agent.metadata.deletion_timestamp.is_none() => {
            IdentityStep::Delete {
                uid: agent.metadata.uid.clone().unwrap_or_default(),
            }
        }
        (None, _, _) => IdentityStep::Nothing,
        (Some(_), Some(other), None) => IdentityStep::Conflict(format!(
            "LatticeAgent {name} exists and was not created for this {kind}{}; it is left alone \
             (delete it, or set no {CAPABILITIES_ANNOTATION} annotation here)",
            if other.metadata.deletion_timestamp.is_some() {
                " (it is being deleted)"
            } else {
                ""
            }
        )),
        (Some(req), _, Some(agent)) if matches(agent, &req) => IdentityStep::Nothing,
        (Some(_), _, Some(agent)) if agent.metadata.deletion_timestamp.is_some() => {
            // Being deleted (the annotation went and came back): apply once it is gone.
            IdentityStep::Nothing
        }
        (Some(req), _, _) => IdentityStep::Apply(desired(kind, meta, name, uid, &req)),
    }
}

/// Whether `agent` already carries what `req` asks for.
fn matches(agent: &LatticeAgent, req: &Requested) -> bool {
    let spec = &agent.spec;
    let mut caps = spec.capabilities.clone();
    caps.sort();
    caps.dedup();
    caps == req.capabilities
        && spec.agent_name == req.agent_name
        && spec.secret_name == req.secret_name
        && spec.description == req.description
        && spec.restart_on_rotation == req.restart_on_rotation
        && req.rotation.fields().iter().all(|(field, v)| {
            let actual = match *field {
                "interval" => spec.rotation.interval.as_deref(),
                "gracePeriod" => Some(spec.rotation.grace_period.as_str()),
                _ => Some(spec.rotation.max_grace_period.as_str()),
            };
            actual == Some(*v)
        })
        && agent
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPLIED_ROTATION_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default()
            == req.rotation.record()
}

/// The apply body: only the fields the annotations decide, so that other fields of the
/// LatticeAgent (a rotation schedule, grace periods, when not annotated) stay the user's.
fn desired(kind: WorkloadKind, meta: &ObjectMeta, name: &str, uid: &str, req: &Requested) -> Value {
    let mut spec = json!({
        "capabilities": req.capabilities,
        "restartOnRotation": req.restart_on_rotation,
    });
    for (field, value) in [
        ("agentName", &req.agent_name),
        ("secretName", &req.secret_name),
        ("description", &req.description),
    ] {
        if let Some(v) = value {
            spec[field] = json!(v);
        }
    }
    let rotation = req.rotation.fields();
    if !rotation.is_empty() {
        spec["rotation"] = rotation
            .iter()
            .map(|(field, v)| ((*field).to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    json!({
        "apiVersion": format!("{GROUP}/v1alpha1"),
        "kind": "LatticeAgent",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                WORKLOAD_LABEL: format!("{kind}.{name}"),
            },
            "annotations": {APPLIED_ROTATION_ANNOTATION: req.rotation.record()},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": kind.as_str(),
                "name": name,
                "uid": uid,
                "controller": true,
            }],
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("w-uid".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn agent_from(step: &IdentityStep) -> LatticeAgent {
        let IdentityStep::Apply(body) = step else {
            panic!("apply expected, got {step:?}");
        };
        let mut agent: LatticeAgent = serde_json::from_value(body.clone()).expect("a LatticeAgent");
        agent.metadata.uid = Some("la-uid".into());
        agent
    }

    #[test]
    fn annotations_ask_for_an_identity_the_workload_owns() {
        let m = meta(&[
            (
                CAPABILITIES_ANNOTATION,
                " rollback.staging,deploy.staging,, deploy.staging",
            ),
            (DESCRIPTION_ANNOTATION, "The web shop"),
        ]);
        let step = plan(WorkloadKind::Deployment, &m, None);
        let agent = agent_from(&step);
        assert_eq!(
            agent.spec.capabilities,
            ["deploy.staging", "rollback.staging"]
        );
        assert_eq!(agent.spec.description.as_deref(), Some("The web shop"));
        assert!(agent.spec.restart_on_rotation, "on by default");
        assert!(owned_by(&agent, "w-uid"));
        let IdentityStep::Apply(body) = &step else {
            unreachable!()
        };
        assert!(
            body["spec"].get("rotation").is_none(),
            "only the annotations' fields"
        );
        assert_eq!(body["metadata"]["labels"][WORKLOAD_LABEL], "Deployment.web");
        // Applied already: nothing to do; an edit of the annotation: apply again.
        assert_eq!(
            plan(WorkloadKind::Deployment, &m, Some(&agent)),
            IdentityStep::Nothing
        );
        let edited = meta(&[
            (CAPABILITIES_ANNOTATION, "deploy.staging"),
            (RESTART_ON_ROTATION_ANNOTATION, "false"),
        ]);
        let again = agent_from(&plan(WorkloadKind::Deployment, &edited, Some(&agent)));
        assert_eq!(again.spec.capabilities, ["deploy.staging"]);
        assert!(!again.spec.restart_on_rotation);
        // The annotation removed: delete it.
        assert_eq!(
            plan(WorkloadKind::Deployment, &meta(&[]), Some(&agent)),
            IdentityStep::Delete {
                uid: "la-uid".into()
            }
        );
    }

    #[test]
    fn a_latticeagent_it_does_not_own_is_never_taken_over() {
        let mut hand_written = LatticeAgent::new("web", Default::default());
        hand_written.metadata.uid = Some("other".into());
        let m = meta(&[(CAPABILITIES_ANNOTATION, "deploy.staging")]);
        let IdentityStep::Conflict(message) =
            plan(WorkloadKind::StatefulSet, &m, Some(&hand_written))
        else {
            panic!("conflict expected");
        };
        assert!(
            message.contains("not created for this StatefulSet"),
            "{message}"
        );
        // Without the annotation, someone else's LatticeAgent is not deleted either.
        assert_eq!(
            plan(WorkloadKind::StatefulSet, &meta(&[]), Some(&hand_written)),
            IdentityStep::Nothing
        );
    }

    #[test]
    fn rotation_annotations_set_the_schedule_and_their_removal_applies_again() {
        let m = meta(&[
            (CAPABILITIES_ANNOTATION, "deploy.staging"),
            (ROTATION_INTERVAL_ANNOTATION, "720h"),
            (GRACE_PERIOD_ANNOTATION, "5m"),
        ]);
        let step = plan(WorkloadKind::Deployment, &m, None);
        let IdentityStep::Apply(body) = &step else {
            panic!("apply expected, got {step:?}");
        };
        assert_eq!(
            body["spec"]["rotation"],
            json!({"interval": "720h", "gracePeriod": "5m"}),
            "only the annotated fields: maxGracePeriod stays the CRD's default"
        );
        let agent = agent_from(&step);
        assert_eq!(agent.spec.rotation.interval.as_deref(), Some("720h"));
        assert_eq!(agent.spec.rotation.grace_period, "5m");
        assert_eq!(
            plan(WorkloadKind::Deployment, &m, Some(&agent)),
            IdentityStep::Nothing
        );
        // A changed value applies again.
        let longer = meta(&[
            (CAPABILITIES_ANNOTATION, "deploy.staging"),
            (ROTATION_INTERVAL_ANNOTATION, "2160h"),
            (GRACE_PERIOD_ANNOTATION, "5m"),
        ]);
        assert!(matches!(
            plan(WorkloadKind::Deployment, &longer, Some(&agent)),
            IdentityStep::Apply(_)
        ));
        // A removed one applies again, without the field, even though the spec still holds
        // the value (server-side apply drops what the manager no longer sets).
        let removed = meta(&[(CAPABILITIES_ANNOTATION, "deploy.staging")]);
        let IdentityStep::Apply(body) = plan(WorkloadKind::Deployment, &removed, Some(&agent))
        else {
            panic!("apply expected");
        };
        assert!(body["spec"].get("rotation").is_none(), "{body}");
        // A value a user set on the LatticeAgent itself, with no annotation, is left alone.
        let mut edited = agent_from(&plan(WorkloadKind::Deployment, &removed, None));
        edited.spec.rotation.interval = Some("24h".into());
        assert_eq!(
            plan(WorkloadKind::Deployment, &removed, Some(&edited)),
            IdentityStep::Nothing
        );
    }
}
