//! Step 5 (design §3.1): register when there is no agent, and act on each registration response
//! — write the new key, adopt a replayed registration or an agent of ours found by name, or
//! report a conflict.

use super::rotate::key_record;
use super::{Blocker, Planner, Verdict, perform};

use crate::crd::REREGISTER_ANNOTATION;
use crate::plan::conditions::READY;
use crate::plan::{
    Effect, Event, KeyWrite, META_CLUSTER, META_NAME, META_NAMESPACE, META_UID, RegisterOutcome,
    RegisterRequest, SecretWrite, Step, WritePurpose, conditions,
};
use crate::secret::{SecretRecord, key_digest};

/// The `Idempotency-Key` of a registration: derived from the resource uid and the value of the
/// `reregister` annotation being acted on, so a retry after a crash replays the same registration
/// and a deliberate re-registration gets a new one.
pub fn idempotency_key(uid: &str, reregister: Option<&str>) -> String {
    format!(
        "lattice-operator/{uid}/{}",
        key_digest(reregister.unwrap_or_default().as_bytes())
    )
}

impl<'a> Planner<'a> {
    /// Step 5: registration, and what follows from each registration response.
    pub(super) fn registration(&self) -> Option<Step> {
        match &self.observed.progress.registration {
            Some(RegisterOutcome::Created { agent, key }) => {
                let holds = self
                    .record_is_for(&agent.id)
                    .and_then(|r| r.record.key.as_ref())
                    .is_some_and(|k| k.id == key.id);
                if holds {
                    return None;
                }
                let record = SecretRecord {
                    agent_id: Some(agent.id.clone()),
                    key: Some(key_record(key)),
                    retiring: Vec::new(),
                    handled: self.handled_after_mint(),
                    mint_started_at: None,
                };
                Some(perform(
                    Effect::WriteSecret(Box::new(SecretWrite {
                        desired: self.desired_secret(&agent.id, record),
                        key: KeyWrite::Fresh {
                            key_id: key.id.clone(),
                        },
                        precondition: self.precondition(),
                        purpose: WritePurpose::Register,
                    })),
                    vec![Event::normal(
                        "Registered",
                        format!(
                            "registered agent {} ({}); key {} written to Secret {}",
                            self.agent_name, agent.id, key.prefix, self.secret_name
                        ),
                    )],
                ))
            }
            // Adopted: the lost-key path mints the key (agent_id is set).
            Some(RegisterOutcome::Replayed { .. }) => None,
            Some(outcome @ (RegisterOutcome::NameTaken | RegisterOutcome::IdempotencyMismatch)) => {
                if self.observed.progress.found.is_none() {
                    return Some(perform(
                        Effect::FindAgents {
                            name: self.agent_name.clone(),
                        },
                        vec![],
                    ));
                }
                if self.adopted {
                    return None;
                }
                Some(if *outcome == RegisterOutcome::NameTaken {
                    self.finish(Verdict::Blocked(
                        Blocker::NameConflict,
                        format!(
                            "an agent named {} already exists at AgentLattice and is not linked \
                             to this LatticeAgent; choose another spec.agentName",
                            self.agent_name
                        ),
                    ))
                } else {
                    self.finish(Verdict::Blocked(
                        Blocker::RegistrationConflict,
                        format!(
                            "an earlier registration attempt of this LatticeAgent used a different \
                             agent name and its agent was not found under {}; set the \
                             {REREGISTER_ANNOTATION} annotation to a new value to register afresh",
                            self.agent_name
                        ),
                    ))
                })
            }
            Some(RegisterOutcome::AgentRevoked) => Some(self.finish(Verdict::Blocked(
                Blocker::AgentRevokedExternally,
                revoked_registration_message(),
            ))),
            None => self.needs_registration().then(|| self.register()),
        }
    }

    pub(super) fn needs_registration(&self) -> bool {
        match self.agent_id.as_deref() {
            Some(id) => self.agent_gone(id) && self.pending(REREGISTER_ANNOTATION),
            None => {
                // A registration whose agent was revoked (409 idempotency_key_agent_revoked)
                // waits for a new reregister value instead of asking again on every resync.
                let revoked = conditions::condition_reason(&self.status, READY)
                    == Some(Blocker::AgentRevokedExternally.reason());
                !(revoked
                    && self.status.handled.reregister.as_deref()
                        == self.annotation(REREGISTER_ANNOTATION))
            }
        }
    }

    pub(super) fn register(&self) -> Step {
        let Some(spec) = self.spec() else {
            return self.finish(Verdict::Ok);
        };
        let meta = &self.observed.resource.metadata;
        let mut metadata = std::collections::BTreeMap::from([
            (
                META_NAMESPACE.to_owned(),
                meta.namespace.clone().unwrap_or_default(),
            ),
            (META_NAME.to_owned(), meta.name.clone().unwrap_or_default()),
            (META_UID.to_owned(), self.uid.to_owned()),
        ]);
        if let Some(cluster) = &self.observed.settings.cluster_name {
            metadata.insert(META_CLUSTER.to_owned(), cluster.clone());
        }
        let provisioner = self.observed.provisioner.id();
        if *provisioner != crate::plan::policy::ProvisionerId::Default {
            metadata.insert(
                crate::plan::META_PROVISIONER.to_owned(),
                provisioner.to_string(),
            );
        }
        perform(
            Effect::Register {
                request: RegisterRequest {
                    name: spec.agent_name.clone(),
                    description: spec.description.clone(),
                    capabilities: spec.capabilities.clone(),
                    metadata,
                },
                idempotency_key: idempotency_key(self.uid, self.annotation(REREGISTER_ANNOTATION)),
            },
            vec![],
        )
    }
}

pub(super) fn revoked_registration_message() -> String {
    format!(
        "the agent registered for this LatticeAgent was revoked outside the cluster; set the \
         {REREGISTER_ANNOTATION} annotation to a new value to register a new agent"
    )
}
