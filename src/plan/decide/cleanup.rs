//! Step 1 (design §3.1): cleanup behind the finalizer. It never validates the spec: revoke every
//! agent known for the resource (or keep it, `deletionPolicy: Retain`), then let the finalizer go.

use std::collections::BTreeSet;

use super::perform;

use crate::crd::{DeletionPolicy, LatticeAgent, LatticeAgentStatus, SKIP_REVOKE_ANNOTATION};
use crate::plan::conditions::{READY, SYNCED, condition};
use crate::plan::validate::{effective_agent_name, effective_secret_name};
use crate::plan::{
    Effect, Event, Failure, Observed, RemoteAgent, Requeue, Settled, Step, validate,
};
use crate::secret::{Ownership, released_owner_references};

/// Step 1: cleanup behind the finalizer. Never validates the spec.
pub(super) fn cleanup(observed: &Observed, uid: &str) -> Step {
    if !has_finalizer(&observed.resource) {
        // Released already (or never ours): nothing to clean up.
        return Step::Settle(Settled {
            requeue: Requeue::OnChange,
            failure: None,
            remote_checked: false,
        });
    }
    let annotations = observed.resource.metadata.annotations.as_ref();
    let status = observed.resource.status.clone().unwrap_or_default();
    let secret = observed
        .secret
        .present()
        .filter(|s| s.ownership == Ownership::Ours);
    let record_id = secret.and_then(|s| s.decoded.record.agent_id.clone());
    let known: Vec<String> = status
        .agent_id
        .iter()
        .chain(record_id.iter())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    if annotations
        .and_then(|a| a.get(SKIP_REVOKE_ANNOTATION))
        .is_some_and(|v| v == "true")
    {
        return release(
            observed,
            vec![Event::warning(
                "RevocationSkipped",
                format!(
                    "{SKIP_REVOKE_ANNOTATION}: deletion finished without revoking agent(s) [{}]; \
                     revoke them at AgentLattice if they should not live on",
                    known.join(", ")
                ),
            )],
        );
    }

    if let Some(failure) = &observed.failure {
        return cleanup_failed(observed, &status, failure);
    }

    if observed.resource.spec.deletion_policy == DeletionPolicy::Retain {
        if let Some(s) = secret {
            return perform(
                Effect::ReleaseSecret {
                    name: s.name.clone(),
                    resource_version: s.resource_version.clone(),
                    owner_references: released_owner_references(s, uid),
                },
                vec![],
            );
        }
        return release(
            observed,
            vec![Event::normal(
                "AgentRetained",
                format!(
                    "deletionPolicy Retain: agent(s) [{}] and Secret {} are kept",
                    known.join(", "),
                    effective_secret_name(&observed.resource)
                ),
            )],
        );
    }

    let agent_name = effective_agent_name(&observed.resource);
    if observed.progress.found.is_none() && validate::check_agent_name(&agent_name).is_ok() {
        return perform(Effect::FindAgents { name: agent_name }, vec![]);
    }
    let found: Vec<String> = observed
        .progress
        .found
        .iter()
        .flatten()
        .filter(|a| a.belongs_to(uid))
        .map(|a| a.id.clone())
        .collect();

    let mut candidates: Vec<(String, bool)> = Vec::new();
    let mut push = |id: &String, trusted: bool| {
        if !candidates.iter().any(|(c, _)| c == id) {
            candidates.push((id.clone(), trusted));
        }
    };
    status.agent_id.iter().for_each(|id| push(id, true));
    found.iter().for_each(|id| push(id, true));
    record_id.iter().for_each(|id| push(id, false));

    for (id, trusted) in candidates {
        match observed.remote.agents.get(&id) {
            Some(remote) if remote.is_gone() => continue,
            Some(RemoteAgent::Found(view)) if !trusted && !view.belongs_to(uid) => continue,
            None if !trusted => {
                return perform(Effect::FetchAgent { agent_id: id }, vec![]);
            }
            _ => {
                return perform(
                    Effect::RevokeAgent {
                        agent_id: id.clone(),
                    },
                    vec![Event::normal(
                        "AgentRevoked",
                        format!("revoked agent {agent_name} ({id})"),
                    )],
                );
            }
        }
    }
    release(observed, vec![])
}

/// Cleanup could not finish: say why in status (once), keep the finalizer, retry with backoff.
pub(super) fn cleanup_failed(
    observed: &Observed,
    status: &LatticeAgentStatus,
    failure: &Failure,
) -> Step {
    let now = observed.now;
    let generation = observed.resource.metadata.generation;
    let mut desired = status.clone();
    let message = format!(
        "cannot revoke the agent: {} ({}); the finalizer stays until it succeeds — set \
         {SKIP_REVOKE_ANNOTATION}: \"true\" to delete without revoking",
        failure.message,
        failure.class.category()
    );
    let prev = &status.conditions;
    let mut conditions: Vec<_> = prev
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != SYNCED)
        .cloned()
        .collect();
    conditions.insert(
        0,
        condition(
            prev,
            READY,
            false,
            "RevocationFailed",
            message,
            generation,
            now,
        ),
    );
    conditions.insert(
        1,
        condition(
            prev,
            SYNCED,
            false,
            failure.class.category(),
            failure.message.clone(),
            generation,
            now,
        ),
    );
    desired.conditions = conditions;
    if observed.resource.status.as_ref() != Some(&desired) && failure.effect != "WriteStatus" {
        return perform(Effect::WriteStatus(Box::new(desired)), vec![]);
    }
    Step::Settle(Settled {
        requeue: failure.class.requeue(&observed.settings),
        failure: Some(failure.clone()),
        remote_checked: false,
    })
}

/// Whether the resource still carries the operator's finalizer.
pub(super) fn has_finalizer(resource: &LatticeAgent) -> bool {
    crate::crd::has_finalizer(&resource.metadata)
}

/// Cleanup is complete: the finalizer goes (with `events`, emitted once it is gone).
pub(super) fn release(observed: &Observed, events: Vec<Event>) -> Step {
    if has_finalizer(&observed.resource) {
        return perform(Effect::RemoveFinalizer, events);
    }
    Step::Settle(Settled {
        requeue: Requeue::OnChange,
        failure: None,
        remote_checked: false,
    })
}
