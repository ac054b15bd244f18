//! The order of decisions (design §3.1), first match wins.

use std::collections::BTreeSet;

use jiff::SignedDuration;

use super::schedule::{self, Retirement, RevokeWhy, WaitWhy};
use super::status::{self, READY, ROTATING, SYNCED, condition};
use super::validate::{self, ValidSpec, effective_agent_name, effective_secret_name};
use super::{
    AgentStatus, Effect, ErrorClass, Event, Failure, KeyStatus, KeyView, KeyWrite,
    META_CLUSTER, META_NAME, META_NAMESPACE, META_UID, MintedKey, Observed, Precondition,
    RegisterOutcome, RegisterRequest, RemoteAgent, Requeue, SecretWrite, Settled, Step, WritePurpose,
};
use crate::crd::{
    ActiveKeyStatus, COMPROMISED_ANNOTATION, DeletionPolicy, FINALIZER, HandledAnnotations, LatticeAgent,
    LatticeAgentStatus, REREGISTER_ANNOTATION, ROTATE_ANNOTATION, RetiringKeyStatus,
    SKIP_REVOKE_ANNOTATION, SecretPolicy,
};
use crate::secret::{
    DecodedRecord, DesiredSecret, KeyRecord, ObservedSecret, Ownership, RETIRING_KEYS_ANNOTATION,
    RetiringKey, SecretInputs, SecretRecord, key_digest, released_owner_references,
};

/// The `Idempotency-Key` of a registration: derived from the resource uid and the value of the
/// `reregister` annotation being acted on, so a retry after a crash replays the same registration
/// and a deliberate re-registration gets a new one.
pub fn idempotency_key(uid: &str, reregister: Option<&str>) -> String {
    format!(
        "lattice-operator/{uid}/{}",
        key_digest(reregister.unwrap_or_default().as_bytes())
    )
}

/// The name of the oldest other `LatticeAgent` (creation time, then name) in the same namespace
/// that names the same Secret as `me`, if it is older than `me`. Resources being deleted do not
/// count.
pub fn older_claimant<'a>(
    me: &LatticeAgent,
    others: impl IntoIterator<Item = &'a LatticeAgent>,
) -> Option<String> {
    let secret = effective_secret_name(me);
    let rank = |a: &LatticeAgent| {
        (
            a.metadata.creation_timestamp.clone(),
            a.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mine = rank(me);
    others
        .into_iter()
        .filter(|o| o.metadata.uid != me.metadata.uid)
        .filter(|o| o.metadata.namespace == me.metadata.namespace)
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| effective_secret_name(o) == secret)
        .filter(|o| rank(o) < mine)
        .min_by_key(|o| rank(o))
        .and_then(|o| o.metadata.name.clone())
}

/// Plans the next step of a reconcile.
pub fn next_step(observed: &Observed) -> Step {
    let Some(uid) = observed.resource.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Step::Settle(Settled {
            requeue: Requeue::OnChange,
            failure: Some(Failure {
                effect: "Plan",
                class: ErrorClass::Invalid("resource".into()),
                message: "the resource has no metadata.uid".into(),
            }),
            remote_checked: false,
        });
    };
    if observed.resource.metadata.deletion_timestamp.is_some() {
        return cleanup(observed, uid);
    }
    match validate::validate(&observed.resource) {
        Err(errors) => {
            let cx = Planner::new(observed, uid, None);
            cx.finish(Verdict::Blocked(Blocker::InvalidSpec, errors.join("; ")))
        }
        Ok(spec) => Planner::new(observed, uid, Some(&spec)).reconcile(),
    }
}

/// Why a reconcile stops and waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocker {
    InvalidSpec,
    SecretConflict,
    NameConflict,
    RegistrationConflict,
    AgentRevokedExternally,
}

impl Blocker {
    fn reason(self) -> &'static str {
        match self {
            Blocker::InvalidSpec => "InvalidSpec",
            Blocker::SecretConflict => "SecretConflict",
            Blocker::NameConflict => "NameConflict",
            Blocker::RegistrationConflict => "RegistrationConflict",
            Blocker::AgentRevokedExternally => "AgentRevokedExternally",
        }
    }
}

/// How a reconcile ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict<'a> {
    Ok,
    Blocked(Blocker, String),
    Failed(&'a Failure),
}

/// Why a key is minted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MintReason {
    /// The Secret has no working key for the agent.
    Restore,
    /// `agentlattice.io/compromised` changed.
    Compromised,
    /// `agentlattice.io/rotate` changed.
    Rotate,
    /// The schedule is due.
    Scheduled,
}

/// The decision context: the observed state plus what is derived from it once.
struct Planner<'a> {
    observed: &'a Observed,
    uid: &'a str,
    spec: Option<&'a ValidSpec>,
    status: LatticeAgentStatus,
    agent_name: String,
    secret_name: String,
    /// The Secret, if it exists.
    secret: Option<&'a ObservedSecret>,
    /// The record, if the Secret is ours (only then is it trusted).
    record: Option<&'a DecodedRecord>,
    /// The agent id of a record that turned out to name another resource's agent.
    foreign_record: Option<String>,
    /// The agent this resource is (or is becoming) linked to.
    agent_id: Option<String>,
    /// The agent was adopted by this reconcile (replayed registration, or found by name with our
    /// uid): its keys were never delivered.
    adopted: bool,
}

impl<'a> Planner<'a> {
    fn new(observed: &'a Observed, uid: &'a str, spec: Option<&'a ValidSpec>) -> Planner<'a> {
        let status = observed.resource.status.clone().unwrap_or_default();
        let secret = observed.secret.present();
        let mut record = secret
            .filter(|s| s.ownership == Ownership::Ours)
            .map(|s| &s.decoded);
        // A record naming an agent that AgentLattice says belongs to another resource is not
        // ours, whatever its owner reference says (see `verify_record`).
        let foreign_record = record
            .and_then(|r| r.record.agent_id.as_ref())
            .filter(|id| {
                matches!(observed.remote.agents.get(*id), Some(RemoteAgent::Found(view)) if !view.belongs_to(uid))
            })
            .cloned();
        if foreign_record.is_some() {
            record = None;
        }
        let adoption = match &observed.progress.registration {
            Some(RegisterOutcome::Created { agent, .. }) => Some((agent.id.clone(), false)),
            Some(RegisterOutcome::Replayed { agent_id, .. }) => Some((agent_id.clone(), true)),
            Some(RegisterOutcome::NameTaken | RegisterOutcome::IdempotencyMismatch) => observed
                .progress
                .found
                .iter()
                .flatten()
                .find(|a| a.belongs_to(uid) && a.status != AgentStatus::Revoked)
                .map(|a| (a.id.clone(), true)),
            _ => None,
        };
        let agent_id = adoption
            .as_ref()
            .map(|(id, _)| id.clone())
            .or_else(|| record.and_then(|r| r.record.agent_id.clone()))
            .or_else(|| status.agent_id.clone());
        Planner {
            observed,
            uid,
            spec,
            agent_name: spec
                .map(|s| s.agent_name.clone())
                .unwrap_or_else(|| effective_agent_name(&observed.resource)),
            secret_name: spec
                .map(|s| s.secret_name.clone())
                .unwrap_or_else(|| effective_secret_name(&observed.resource)),
            status,
            secret,
            record,
            foreign_record,
            agent_id,
            adopted: adoption.is_some_and(|(_, adopted)| adopted),
        }
    }

    // ----- derived facts ------------------------------------------------------------------------

    fn generation(&self) -> Option<i64> {
        self.observed.resource.metadata.generation
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.observed
            .resource
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The action-annotation values acted on so far: from the record when the Secret is ours
    /// (it is written together with the key), else from status.
    fn handled(&self) -> HandledAnnotations {
        match self.record {
            Some(r) => r.record.handled.clone(),
            None => self.status.handled.clone(),
        }
    }

    fn pending(&self, key: &str) -> bool {
        let handled = self.handled();
        let done = match key {
            ROTATE_ANNOTATION => handled.rotate,
            COMPROMISED_ANNOTATION => handled.compromised,
            _ => handled.reregister,
        };
        self.annotation(key)
            .is_some_and(|v| Some(v) != done.as_deref())
    }

    fn remote_agent(&self, id: &str) -> Option<&'a RemoteAgent> {
        self.observed.remote.agents.get(id)
    }

    /// Whether the agent is known to be revoked or absent: from this reconcile's reads, or from
    /// status when it already says so for this agent (revocation is terminal, no need to re-read).
    fn agent_gone(&self, id: &str) -> bool {
        match self.remote_agent(id) {
            Some(remote) => remote.is_gone(),
            None => {
                self.status.agent_id.as_deref() == Some(id)
                    && status::condition_reason(&self.status, READY)
                        == Some(Blocker::AgentRevokedExternally.reason())
            }
        }
    }

    fn record_is_for(&self, agent_id: &str) -> Option<&'a DecodedRecord> {
        self.record
            .filter(|r| r.record.agent_id.as_deref() == Some(agent_id))
    }

    /// What AgentLattice said about a key in this reconcile.
    fn key_view(&self, agent_id: &str, key_id: &str) -> Option<&'a KeyView> {
        self.observed.remote.keys.get(agent_id).and_then(|k| k.get(key_id))
    }

    fn key_gone(&self, agent_id: &str, key_id: &str) -> bool {
        if self.observed.remote.gone_keys.contains(key_id) {
            return true;
        }
        match self.key_view(agent_id, key_id) {
            Some(k) => k.status == KeyStatus::Revoked,
            None => self.observed.remote.listed.contains(agent_id),
        }
    }

    /// The key in the Secret, if the Secret is ours, describes this agent, holds the key it
    /// describes, and the key is not known to be revoked.
    fn working_key(&self) -> Option<&'a KeyRecord> {
        let agent_id = self.agent_id.as_deref()?;
        let secret = self.secret?;
        let key = self.record_is_for(agent_id)?.record.key.as_ref()?;
        (secret.key_digest.as_deref() == Some(key.sha256.as_str())
            && !self.key_gone(agent_id, &key.id))
        .then_some(key)
    }

    /// The keys being retired: the record's, plus status's when the record's list is unreadable
    /// or the record is gone (the Secret was deleted).
    fn retiring(&self) -> Vec<RetiringKey> {
        let Some(agent_id) = self.agent_id.as_deref() else {
            return Vec::new();
        };
        let from_status = || -> Vec<RetiringKey> {
            if self.status.agent_id.as_deref() != Some(agent_id) {
                return Vec::new();
            }
            self.status
                .retiring_keys
                .iter()
                .map(|k| RetiringKey {
                    id: k.id.clone(),
                    prefix: k.prefix.clone(),
                    since: k.retiring_since,
                    immediate: k.immediate,
                })
                .collect()
        };
        match self.record_is_for(agent_id) {
            Some(r) => {
                let mut list = r.record.retiring.clone();
                if r.has_problem(RETIRING_KEYS_ANNOTATION) {
                    for k in from_status() {
                        if !list.iter().any(|l| l.id == k.id) {
                            list.push(k);
                        }
                    }
                }
                list
            }
            None => from_status(),
        }
    }

    /// The key a new key replaces (id, prefix): the record's, an unreadable record's, or status's.
    fn replaced_key(&self) -> Option<(String, String)> {
        let agent_id = self.agent_id.as_deref()?;
        if let Some(r) = self.record_is_for(agent_id) {
            if let Some(k) = &r.record.key {
                return Some((k.id.clone(), k.prefix.clone()));
            }
            if let Some(id) = &r.damaged_key_id {
                return Some((id.clone(), String::new()));
            }
        }
        if self.status.agent_id.as_deref() == Some(agent_id) {
            return self
                .status
                .active_key
                .as_ref()
                .map(|k| (k.id.clone(), k.prefix.clone()));
        }
        None
    }

    fn spec(&self) -> Option<&'a ValidSpec> {
        self.spec
    }

    /// Writes `record` (an intent set or lifted) to the Secret, keeping the key it holds.
    fn write_intent(&self, agent_id: &str, record: SecretRecord) -> Step {
        perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired: self.desired_secret(agent_id, record),
                key: KeyWrite::Keep,
                precondition: self.precondition(),
                purpose: WritePurpose::Intent,
            })),
            vec![],
        )
    }

    fn desired_secret(&self, agent_id: &str, record: SecretRecord) -> DesiredSecret {
        DesiredSecret::new(
            SecretInputs {
                agent: &self.observed.resource,
                secret_name: &self.secret_name,
                agent_name: &self.agent_name,
                base_url: &self.observed.settings.base_url,
            },
            agent_id,
            record,
        )
    }

    fn precondition(&self) -> Precondition {
        match self.secret {
            None => Precondition::Create,
            Some(s) => Precondition::Update {
                resource_version: s.resource_version.clone(),
            },
        }
    }

    /// The mint intent: on the record when the Secret holds this agent's record (it survives a
    /// lost status), else on status (the Secret is gone or not ours yet).
    fn intent(&self) -> Option<jiff::Timestamp> {
        let agent_id = self.agent_id.as_deref()?;
        let on_status = || {
            self.status
                .mint_started_at
                .filter(|_| self.status.agent_id.as_deref() == Some(agent_id))
        };
        self.record_is_for(agent_id)
            .and_then(|r| r.record.mint_started_at)
            .or_else(on_status)
    }

    /// Whether an earlier reconcile left a mint intent (a key may have been minted and lost).
    fn prior_intent(&self) -> bool {
        self.intent().is_some() && !self.observed.progress.intent_written
    }

    fn sweep_required(&self) -> bool {
        self.prior_intent() || self.adopted
    }

    // ----- the decision order -------------------------------------------------------------------

    fn reconcile(&self) -> Step {
        if let Some(failure) = &self.observed.failure {
            return self.finish(Verdict::Failed(failure));
        }
        if let Some(message) = self.secret_conflict() {
            return self.finish(Verdict::Blocked(Blocker::SecretConflict, message));
        }
        if let Some(step) = self.verify_record() {
            return step;
        }
        if self.status_needs_recovery() {
            return Step::Perform {
                effect: Effect::WriteStatus(Box::new(self.desired_status(&Verdict::Ok))),
                events: vec![Event::normal(
                    "StatusRecovered",
                    format!(
                        "status rewritten from Secret {} (agent {})",
                        self.secret_name,
                        self.agent_id.as_deref().unwrap_or_default()
                    ),
                )],
            };
        }
        if let Some(step) = self.registration() {
            return step;
        }
        let Some(agent_id) = self.agent_id.clone() else {
            // No agent and no registration wanted: the registration's agent was revoked
            // (`needs_registration`), waiting for a new reregister value.
            return self.finish(Verdict::Blocked(
                Blocker::AgentRevokedExternally,
                revoked_registration_message(),
            ));
        };
        if self.drift_read_due(&agent_id) {
            return perform(Effect::FetchAgent { agent_id }, vec![]);
        }
        if self.agent_gone(&agent_id) {
            return self.finish(Verdict::Blocked(
                Blocker::AgentRevokedExternally,
                format!(
                    "agent {agent_id} was revoked or deleted outside the cluster; set the \
                     {REREGISTER_ANNOTATION} annotation to a new value to register a new agent"
                ),
            ));
        }
        if let Some(step) = self.agent_drift(&agent_id) {
            return step;
        }
        if let Some(reason) = self.mint_reason() {
            return self.mint(&agent_id, reason);
        }
        if let Some(step) = self.revoke_undeliverable(&agent_id) {
            return step;
        }
        if let Some(step) = self.repair_secret(&agent_id) {
            return step;
        }
        if let Some(step) = self.sweep(&agent_id) {
            return step;
        }
        if let Some(step) = self.retire(&agent_id) {
            return step;
        }
        self.finish(Verdict::Ok)
    }

    /// Step 3: someone else has (or has a better claim to) the Secret.
    fn secret_conflict(&self) -> Option<String> {
        let name = &self.secret_name;
        if let Some(agent) = &self.foreign_record {
            return Some(format!(
                "Secret {name} records agent {agent}, which does not belong to this LatticeAgent"
            ));
        }
        let claimant = || {
            self.observed.older_claimant.as_ref().map(|other| {
                format!(
                    "Secret {name} is also named by the older LatticeAgent {other}, which keeps it"
                )
            })
        };
        match self.secret {
            None => claimant(),
            Some(s) => match &s.ownership {
                Ownership::Ours => None,
                Ownership::Controlled { kind, name: owner } => Some(format!(
                    "Secret {name} exists and is controlled by {kind} {owner}; choose another \
                     spec.secretName"
                )),
                Ownership::Unowned => {
                    if let Some(message) = claimant() {
                        return Some(message);
                    }
                    let adopt = self.spec().map(|s| s.secret_policy) == Some(SecretPolicy::Adopt);
                    if !adopt {
                        Some(format!(
                            "Secret {name} exists and is not managed by this LatticeAgent; set \
                             spec.secretPolicy: Adopt to take it over, or choose another \
                             spec.secretName"
                        ))
                    } else if s.type_.as_deref().is_some_and(|t| t != "Opaque") {
                        Some(format!(
                            "Secret {name} has type {}, not Opaque, and cannot be adopted",
                            s.type_.as_deref().unwrap_or_default()
                        ))
                    } else {
                        None
                    }
                }
            },
        }
    }

    /// An agent id that only the Secret vouches for (status says otherwise or nothing) is used
    /// only once AgentLattice confirms that the agent's metadata carries this resource's uid: a
    /// Secret can be edited by anyone who can write Secrets in the namespace, and the operator's
    /// service key can revoke any agent of the workspace.
    fn verify_record(&self) -> Option<Step> {
        let record_id = self.record?.record.agent_id.as_deref()?;
        if self.status.agent_id.as_deref() == Some(record_id)
            || self.observed.progress.secret_written
            || self.adopted
            || self.agent_id.as_deref() != Some(record_id)
        {
            return None;
        }
        // Once read, a foreign agent makes the record untrusted (`Planner::new`) and a conflict.
        self.remote_agent(record_id).is_none().then(|| {
            perform(
                Effect::FetchAgent {
                    agent_id: record_id.to_owned(),
                },
                vec![],
            )
        })
    }

    /// Step 4: status disagrees with the Secret (a status write was lost).
    fn status_needs_recovery(&self) -> bool {
        if self.observed.progress.secret_written || self.spec.is_none() {
            return false;
        }
        let Some(agent_id) = self.agent_id.as_deref() else {
            return false;
        };
        if self.record_is_for(agent_id).is_none() {
            return false;
        }
        let desired = self.desired_status(&Verdict::Ok);
        projection(&self.status) != projection(&desired)
    }

    /// Step 5: registration, and what follows from each registration response.
    fn registration(&self) -> Option<Step> {
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

    fn needs_registration(&self) -> bool {
        match self.agent_id.as_deref() {
            Some(id) => self.agent_gone(id) && self.pending(REREGISTER_ANNOTATION),
            None => {
                // A registration whose agent was revoked (409 idempotency_key_agent_revoked)
                // waits for a new reregister value instead of asking again on every resync.
                let revoked = status::condition_reason(&self.status, READY)
                    == Some(Blocker::AgentRevokedExternally.reason());
                !(revoked
                    && self.status.handled.reregister.as_deref()
                        == self.annotation(REREGISTER_ANNOTATION))
            }
        }
    }

    fn register(&self) -> Step {
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

    /// Step 6: the drift read is due once per resync interval, on a generation change and when an
    /// action annotation has a new value — not after the operator's own writes (their reconciles
    /// find a recent `last_remote_check`).
    fn drift_read_due(&self, agent_id: &str) -> bool {
        if self.remote_agent(agent_id).is_some() || self.agent_gone(agent_id) {
            return false;
        }
        let stale = match self.observed.last_remote_check {
            None => true,
            Some(at) => self.observed.now >= schedule::add(at, self.observed.settings.resync_interval),
        };
        stale
            || self.status.observed_generation != self.generation()
            || self.pending(ROTATE_ANNOTATION)
            || self.pending(COMPROMISED_ANNOTATION)
            || self.pending(REREGISTER_ANNOTATION)
    }

    /// Step 6: capabilities, description, suspension.
    fn agent_drift(&self, agent_id: &str) -> Option<Step> {
        let spec = self.spec()?;
        let Some(RemoteAgent::Found(view)) = self.remote_agent(agent_id) else {
            return None;
        };
        let mut remote_caps = view.capabilities.clone();
        remote_caps.sort();
        remote_caps.dedup();
        let remote_description = view.description.clone().filter(|d| !d.is_empty());
        let capabilities = (remote_caps != spec.capabilities).then(|| spec.capabilities.clone());
        let description =
            (remote_description != spec.description).then(|| spec.description.clone());
        if capabilities.is_some() || description.is_some() {
            let what: Vec<&str> = [
                capabilities.as_ref().map(|_| "capabilities"),
                description.as_ref().map(|_| "description"),
            ]
            .into_iter()
            .flatten()
            .collect();
            return Some(perform(
                Effect::UpdateAgent {
                    agent_id: agent_id.to_owned(),
                    capabilities,
                    description,
                },
                vec![Event::normal(
                    "AgentUpdated",
                    format!("updated {} of agent {agent_id}", what.join(" and ")),
                )],
            ));
        }
        match (spec.suspend, view.status) {
            (true, AgentStatus::Active) => Some(perform(
                Effect::HaltAgent {
                    agent_id: agent_id.to_owned(),
                },
                vec![Event::normal(
                    "AgentHalted",
                    format!("halted agent {agent_id} (spec.suspend)"),
                )],
            )),
            (false, AgentStatus::Halted) => Some(perform(
                Effect::ResumeAgent {
                    agent_id: agent_id.to_owned(),
                },
                vec![Event::normal(
                    "AgentResumed",
                    format!("resumed agent {agent_id}"),
                )],
            )),
            _ => None,
        }
    }

    /// Steps 7 and 9: a new key is needed.
    fn mint_reason(&self) -> Option<MintReason> {
        if self.working_key().is_none() {
            return Some(MintReason::Restore);
        }
        if self.pending(COMPROMISED_ANNOTATION) {
            return Some(MintReason::Compromised);
        }
        if self.pending(ROTATE_ANNOTATION) {
            return Some(MintReason::Rotate);
        }
        self.schedule_due().then_some(MintReason::Scheduled)
    }

    fn next_rotation(&self) -> Option<jiff::Timestamp> {
        let interval = self.spec()?.interval?;
        let key = self.working_key()?;
        Some(schedule::next_rotation(
            key.created_at,
            interval,
            self.uid,
            &key.id,
        ))
    }

    /// A scheduled rotation waits while keys are retiring and while the agent is suspended.
    fn schedule_due(&self) -> bool {
        let suspended = self.spec().is_some_and(|s| s.suspend);
        !suspended
            && self.retiring().is_empty()
            && self.next_rotation().is_some_and(|at| self.observed.now >= at)
    }

    /// The handled values after a new key was written: every pending rotation request is satisfied
    /// by the new key, and a registration acts on the current reregister value.
    fn handled_after_mint(&self) -> HandledAnnotations {
        let mut handled = self.handled();
        if let Some(v) = self.annotation(ROTATE_ANNOTATION) {
            handled.rotate = Some(v.to_owned());
        }
        if let Some(v) = self.annotation(COMPROMISED_ANNOTATION) {
            handled.compromised = Some(v.to_owned());
        }
        if self.observed.progress.registration.is_some()
            && let Some(v) = self.annotation(REREGISTER_ANNOTATION)
        {
            handled.reregister = Some(v.to_owned());
        }
        handled
    }

    /// Design §3.2/§3.3: intent → mint → Secret. (Status follows through [`Planner::finish`], the old
    /// key's deprecation or revocation through [`Planner::retire`].)
    fn mint(&self, agent_id: &str, reason: MintReason) -> Step {
        let minted = self
            .observed
            .progress
            .minted
            .as_ref()
            .filter(|(for_agent, _)| for_agent == agent_id)
            .map(|(_, key)| key);
        let Some(key) = minted else {
            // The intent goes first, where the next reconcile will find it: on the record if the
            // Secret holds this agent's record, else on status. An adopted agent needs none: a
            // crash re-adopts it, and adoption always sweeps.
            // An adopted agent's keys were never delivered: sweep them before minting too, down
            // to one (AgentLattice refuses to revoke an agent's last live key; the sweep after
            // the delivery takes that one). Otherwise every failed delivery (the Secret write
            // fails, the process dies) leaves one more live key, and at AgentLattice's limit of
            // live keys per agent the mint is refused forever.
            if self.adopted
                && (!self.observed.remote.listed.contains(agent_id) || self.strays(agent_id).len() > 1)
                && let Some(step) = self.sweep(agent_id)
            {
                return step;
            }
            if self.intent().is_none() && !self.adopted {
                if let Some(mut record) = self.current_record(agent_id) {
                    record.mint_started_at = Some(self.observed.now);
                    return self.write_intent(agent_id, record);
                }
                let mut intent = self.desired_status(&Verdict::Ok);
                intent.mint_started_at = Some(self.observed.now);
                return perform(Effect::WriteStatus(Box::new(intent)), vec![]);
            }
            return perform(
                Effect::MintKey {
                    agent_id: agent_id.to_owned(),
                    name: format!(
                        "lattice-operator-{}",
                        match reason {
                            MintReason::Restore => "restore",
                            MintReason::Compromised => "compromised",
                            MintReason::Rotate => "rotate",
                            MintReason::Scheduled => "scheduled",
                        }
                    ),
                },
                vec![],
            );
        };

        // Without a record of this agent (the Secret was deleted, or is not ours yet) nobody
        // knows which of its keys were delivered: status may be stale. Every live key other than
        // the new one is retired with the normal grace, so none is left behind and none that a
        // pod may hold is revoked at once. (Adopted agents are different: their keys were never
        // delivered, and the sweep revokes them.)
        let record_lost = reason == MintReason::Restore
            && self.record_is_for(agent_id).is_none()
            && !self.adopted;
        if record_lost && !self.observed.remote.listed.contains(agent_id) {
            return perform(
                Effect::FetchKeys {
                    agent_id: agent_id.to_owned(),
                },
                vec![],
            );
        }
        let compromised = reason == MintReason::Compromised || self.pending(COMPROMISED_ANNOTATION);
        let mut retiring = self.retiring();
        if record_lost {
            let live = self
                .observed
                .remote
                .keys
                .get(agent_id)
                .into_iter()
                .flat_map(|keys| keys.values())
                .filter(|k| k.status != KeyStatus::Revoked && k.id != key.id)
                .filter(|k| !self.observed.remote.gone_keys.contains(&k.id));
            for k in live {
                if !retiring.iter().any(|r| r.id == k.id) {
                    retiring.push(RetiringKey {
                        id: k.id.clone(),
                        prefix: k.prefix.clone(),
                        since: self.observed.now,
                        immediate: false,
                    });
                }
            }
        }
        let replaced = self.replaced_key().filter(|(id, _)| *id != key.id);
        if let Some((id, prefix)) = &replaced
            && !retiring.iter().any(|k| &k.id == id)
        {
            retiring.push(RetiringKey {
                id: id.clone(),
                prefix: prefix.clone(),
                since: self.observed.now,
                immediate: false,
            });
        }
        if compromised {
            retiring.iter_mut().for_each(|k| k.immediate = true);
        }
        let record = SecretRecord {
            agent_id: Some(agent_id.to_owned()),
            key: Some(key_record(key)),
            retiring,
            handled: self.handled_after_mint(),
            // Still to sweep (an earlier intent, or an adoption): the record keeps the intent
            // until the sweep is done. Otherwise this write is the end of the mint.
            mint_started_at: if self.sweep_required() {
                Some(self.intent().unwrap_or(self.observed.now))
            } else {
                None
            },
        };
        let old = replaced
            .as_ref()
            .map(|(id, prefix)| {
                if prefix.is_empty() {
                    id.clone()
                } else {
                    prefix.clone()
                }
            })
            .unwrap_or_else(|| "none".to_owned());
        let (purpose, event) = match reason {
            MintReason::Restore => (
                WritePurpose::Restore,
                Event::normal(
                    "SecretRestored",
                    format!(
                        "wrote new key {} to Secret {}; the previous key ({old}) is retired",
                        key.prefix, self.secret_name
                    ),
                ),
            ),
            MintReason::Compromised => (
                WritePurpose::Rotate,
                Event::normal(
                    "KeyRotated",
                    format!(
                        "rotated key {old} → {} ({COMPROMISED_ANNOTATION}: the old key is revoked \
                         at once)",
                        key.prefix
                    ),
                ),
            ),
            MintReason::Rotate | MintReason::Scheduled => (
                WritePurpose::Rotate,
                Event::normal(
                    "KeyRotated",
                    format!(
                        "rotated key {old} → {} ({})",
                        key.prefix,
                        if reason == MintReason::Rotate {
                            ROTATE_ANNOTATION
                        } else {
                            "schedule"
                        }
                    ),
                ),
            ),
        };
        perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired: self.desired_secret(agent_id, record),
                key: KeyWrite::Fresh {
                    key_id: key.id.clone(),
                },
                precondition: self.precondition(),
                purpose,
            })),
            vec![event],
        )
    }

    /// The record the Secret should carry now (no new key).
    fn current_record(&self, agent_id: &str) -> Option<SecretRecord> {
        let r = self.record_is_for(agent_id)?;
        let mut record = r.record.clone();
        record.retiring = self.retiring();
        Some(record)
    }

    /// A key minted in this reconcile that no longer has to be delivered (its Secret write found
    /// a Secret of ours with a working key after all: a stale cache) is revoked at once: it was
    /// never delivered, and once this reconcile ends nothing would remember it.
    fn revoke_undeliverable(&self, agent_id: &str) -> Option<Step> {
        let (for_agent, key) = self.observed.progress.minted.as_ref()?;
        if for_agent != agent_id || self.key_gone(agent_id, &key.id) {
            return None;
        }
        let delivered = self
            .record_is_for(agent_id)
            .and_then(|r| r.record.key.as_ref())
            .is_some_and(|k| k.id == key.id)
            || self.retiring().iter().any(|r| r.id == key.id);
        (!delivered).then(|| {
            perform(
                Effect::RevokeKey {
                    agent_id: agent_id.to_owned(),
                    key_id: key.id.clone(),
                },
                vec![Event::normal(
                    "KeyRevoked",
                    format!(
                        "revoked key {} of agent {agent_id}: minted but not needed (the Secret \
                         still holds a working key)",
                        key.prefix
                    ),
                )],
            )
        })
    }

    /// Step 7, second half: non-key fields of the Secret are wrong → patch them (no new key).
    fn repair_secret(&self, agent_id: &str) -> Option<Step> {
        let secret = self.secret?;
        let record = self.current_record(agent_id)?;
        let desired = self.desired_secret(agent_id, record);
        if desired.drift(secret).is_empty() {
            return None;
        }
        Some(perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired,
                key: KeyWrite::Keep,
                precondition: self.precondition(),
                purpose: WritePurpose::Repair,
            })),
            vec![],
        ))
    }

    /// Step 8: after an interrupted mint (or an adoption), revoke every live key that is neither
    /// in the Secret nor retiring: it was minted but never delivered.
    fn sweep(&self, agent_id: &str) -> Option<Step> {
        if !self.sweep_required() {
            return None;
        }
        if !self.observed.remote.listed.contains(agent_id) {
            return Some(perform(
                Effect::FetchKeys {
                    agent_id: agent_id.to_owned(),
                },
                vec![],
            ));
        }
        let Some(stray) = self.strays(agent_id).into_iter().next() else {
            // Swept: lift the intent from the record (status follows in `finish`).
            let mut record = self.current_record(agent_id)?;
            record.mint_started_at?;
            record.mint_started_at = None;
            return Some(self.write_intent(agent_id, record));
        };
        Some(perform(
            Effect::RevokeKey {
                agent_id: agent_id.to_owned(),
                key_id: stray.id.clone(),
            },
            vec![Event::normal(
                "KeyRevoked",
                format!(
                    "revoked key {} of agent {agent_id}: minted but never delivered",
                    stray.prefix
                ),
            )],
        ))
    }

    fn strays(&self, agent_id: &str) -> Vec<&'a KeyView> {
        let mut spare: BTreeSet<String> = self.retiring().into_iter().map(|k| k.id).collect();
        if let Some(key) = self
            .record_is_for(agent_id)
            .and_then(|r| r.record.key.as_ref())
        {
            spare.insert(key.id.clone());
        }
        if let Some((_, key)) = &self.observed.progress.minted {
            spare.insert(key.id.clone());
        }
        self.observed
            .remote
            .keys
            .get(agent_id)
            .into_iter()
            .flat_map(|keys| keys.values())
            .filter(|k| k.status != KeyStatus::Revoked)
            .filter(|k| !self.observed.remote.gone_keys.contains(&k.id))
            .filter(|k| !spare.contains(&k.id))
            .collect()
    }

    fn sweep_done(&self) -> bool {
        let Some(agent_id) = self.agent_id.as_deref() else {
            return false;
        };
        self.observed.remote.listed.contains(agent_id) && self.strays(agent_id).is_empty()
    }

    /// Whether a retiring key is known to be deprecated (or further along).
    fn deprecated(&self, agent_id: &str, key: &RetiringKey) -> bool {
        match self.key_view(agent_id, &key.id) {
            Some(k) => k.status != KeyStatus::Active,
            None => self
                .status
                .retiring_keys
                .iter()
                .any(|s| s.id == key.id && s.deprecated_at.is_some()),
        }
    }

    /// The key's last use: as read in this reconcile, or as status last recorded it while that
    /// is recent enough to decide (a later use can only postpone the revocation, so until
    /// `last use + grace` nothing needs reading).
    fn usage(&self, agent_id: &str, key_id: &str) -> Option<Option<jiff::Timestamp>> {
        if self.observed.remote.listed.contains(agent_id) {
            return Some(self.key_view(agent_id, key_id).and_then(|k| k.last_used_at));
        }
        let grace = self.spec()?.grace;
        self.status
            .retiring_keys
            .iter()
            .find(|k| k.id == key_id)
            .and_then(|k| k.last_used_at)
            .filter(|used| self.observed.now < schedule::add(*used, grace))
            .map(Some)
    }

    fn retirement(&self, agent_id: &str, key: &RetiringKey) -> Option<Retirement> {
        let spec = self.spec()?;
        Some(schedule::retirement(
            self.observed.now,
            key.since,
            key.immediate,
            spec.grace,
            spec.max_grace,
            self.usage(agent_id, &key.id),
        ))
    }

    /// Design §3.2: an old key is touched (deprecated or revoked) only once status records the
    /// key that replaces it — mint → Secret → status → deprecate → revoke. When status lags the
    /// record (the rotation's Secret write just happened, or a status write was lost), it is
    /// written first.
    fn status_before_retiring(&self, agent_id: &str, key: &RetiringKey) -> Option<Step> {
        let record_key = self.record_is_for(agent_id)?.record.key.as_ref()?;
        let records = |s: &LatticeAgentStatus| {
            s.agent_id.as_deref() == Some(agent_id)
                && s.active_key.as_ref().map(|k| &k.id) == Some(&record_key.id)
                && s.retiring_keys.iter().any(|r| r.id == key.id)
        };
        if records(&self.status) {
            return None;
        }
        let desired = self.desired_status(&Verdict::Ok);
        // Never loop: only when the write would make status record it.
        records(&desired).then(|| perform(Effect::WriteStatus(Box::new(desired)), vec![]))
    }

    /// Step 10: deprecate, revoke, forget.
    fn retire(&self, agent_id: &str) -> Option<Step> {
        let retiring = self.retiring();
        let mut forget = Vec::new();
        for key in &retiring {
            if self.key_gone(agent_id, &key.id) {
                forget.push(key.id.clone());
                continue;
            }
            let retirement = self.retirement(agent_id, key)?;
            let touches = match retirement {
                Retirement::Revoke(_) => true,
                Retirement::Wait { .. } => !self.deprecated(agent_id, key),
                Retirement::NeedUsage => false,
            };
            if touches && let Some(step) = self.status_before_retiring(agent_id, key) {
                return Some(step);
            }
            match retirement {
                Retirement::Revoke(why) => {
                    let why = match why {
                        RevokeWhy::Immediate => "no grace (compromised)",
                        RevokeWhy::Unused => "unused for a whole grace period",
                        RevokeWhy::MaxGrace => "maximum grace period reached",
                    };
                    return Some(perform(
                        Effect::RevokeKey {
                            agent_id: agent_id.to_owned(),
                            key_id: key.id.clone(),
                        },
                        vec![Event::normal(
                            "KeyRevoked",
                            format!("revoked old key {} of agent {agent_id}: {why}", key.prefix),
                        )],
                    ));
                }
                Retirement::NeedUsage => {
                    return Some(perform(
                        Effect::FetchKeys {
                            agent_id: agent_id.to_owned(),
                        },
                        vec![],
                    ));
                }
                Retirement::Wait { .. } => {
                    if !self.deprecated(agent_id, key) {
                        return Some(perform(
                            Effect::DeprecateKey {
                                agent_id: agent_id.to_owned(),
                                key_id: key.id.clone(),
                            },
                            vec![],
                        ));
                    }
                }
            }
        }
        if forget.is_empty() {
            return None;
        }
        let mut record = self.current_record(agent_id)?;
        record.retiring.retain(|k| !forget.contains(&k.id));
        Some(perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired: self.desired_secret(agent_id, record),
                key: KeyWrite::Keep,
                precondition: self.precondition(),
                purpose: WritePurpose::Retire,
            })),
            vec![],
        ))
    }

    // ----- status and the end of a reconcile ----------------------------------------------------

    /// Step 11: write status if it changed, else stop with the right requeue.
    fn finish(&self, verdict: Verdict<'_>) -> Step {
        let desired = self.desired_status(&verdict);
        let unchanged = self.observed.resource.status.as_ref() == Some(&desired);
        // Whatever the verdict (an invalid spec is decided before the failure is looked at), a
        // failed status write is not retried within the reconcile.
        let failure = match &verdict {
            Verdict::Failed(f) => Some(*f),
            _ => self.observed.failure.as_ref(),
        };
        let status_failed = failure.is_some_and(|f| f.effect == "WriteStatus");
        if !unchanged && !status_failed {
            let mut events = Vec::new();
            if let Verdict::Blocked(
                blocker @ (Blocker::SecretConflict | Blocker::NameConflict),
                message,
            ) = &verdict
                && status::condition_reason(&self.status, READY) != Some(blocker.reason())
            {
                events.push(Event::warning(blocker.reason(), message.clone()));
            }
            return perform(Effect::WriteStatus(Box::new(desired)), events);
        }
        let requeue = match (&verdict, failure) {
            (_, Some(f)) => f.class.requeue(&self.observed.settings),
            (Verdict::Blocked(Blocker::InvalidSpec | Blocker::AgentRevokedExternally, _), None) => {
                Requeue::OnChange
            }
            (Verdict::Blocked(_, _), None) => Requeue::After(self.observed.settings.resync_interval),
            (_, None) => Requeue::After(self.requeue_after()),
        };
        Step::Settle(Settled {
            requeue,
            failure: failure.cloned(),
            remote_checked: self
                .agent_id
                .as_deref()
                .is_some_and(|id| self.remote_agent(id).is_some()),
        })
    }

    /// The earliest of: the resync interval, the next scheduled rotation, the next retirement
    /// decision. At least one second, so a deadline that has just passed cannot spin.
    fn requeue_after(&self) -> SignedDuration {
        let now = self.observed.now;
        let mut at = schedule::add(now, self.observed.settings.resync_interval);
        if self.retiring().is_empty()
            && !self.spec().is_some_and(|s| s.suspend)
            && let Some(next) = self.next_rotation()
        {
            at = at.min(next);
        }
        if let Some(agent_id) = self.agent_id.as_deref() {
            // The next drift read: earlier than a full interval from now when the last read was
            // earlier than now (a reconcile between two reads, or the spread first read after a
            // start) — unless this reconcile read the agent (or registered it): then the last
            // read is now.
            if let Some(last) = self.observed.last_remote_check
                && self.remote_agent(agent_id).is_none()
            {
                at = at.min(schedule::add(last, self.observed.settings.resync_interval));
            }
            for key in self.retiring() {
                if let Some(Retirement::Wait { until, .. }) = self.retirement(agent_id, &key) {
                    at = at.min(until);
                }
            }
        }
        now.duration_until(at).max(SignedDuration::from_secs(1))
    }

    fn desired_status(&self, verdict: &Verdict<'_>) -> LatticeAgentStatus {
        let current = &self.status;
        // Status names an agent only once the Secret records it (or status already did): an
        // agent registered or adopted in this reconcile whose key never reached the Secret is
        // found again by the next registration attempt (replay or name), which sweeps its keys.
        let agent_id = self.agent_id.clone().filter(|id| {
            self.record_is_for(id).is_some() || current.agent_id.as_deref() == Some(id)
        });
        let record = agent_id.as_deref().and_then(|id| self.record_is_for(id));
        let mut s = LatticeAgentStatus {
            observed_generation: self.generation(),
            agent_id: agent_id.clone(),
            agent_name: agent_id.as_ref().map(|_| self.agent_name.clone()),
            secret_name: Some(self.secret_name.clone()),
            last_rotation_time: current.last_rotation_time,
            ..Default::default()
        };
        match (record, self.spec()) {
            (Some(r), Some(spec)) => {
                s.active_key = r.record.key.as_ref().map(|k| ActiveKeyStatus {
                    id: k.id.clone(),
                    prefix: k.prefix.clone(),
                    created_at: k.created_at,
                });
                let agent = agent_id.as_deref().unwrap_or_default();
                s.retiring_keys = self
                    .retiring()
                    .iter()
                    .map(|k| self.retiring_status(agent, k, spec))
                    .collect();
                s.handled = r.record.handled.clone();
            }
            _ => {
                // Not (yet) projected from a Secret of ours: keep what status knew of this agent,
                // which is what a lost-key write needs (the lost key's id, the keys still
                // retiring).
                if current.agent_id == agent_id {
                    s.active_key = current.active_key.clone();
                    s.retiring_keys = current.retiring_keys.clone();
                }
                s.handled = current.handled.clone();
            }
        }
        if matches!(
            verdict,
            Verdict::Blocked(Blocker::AgentRevokedExternally, _)
        ) && self.agent_id.is_none()
        {
            s.handled.reregister = self.annotation(REREGISTER_ANNOTATION).map(str::to_owned);
        }
        if let Some((_, key)) = &self.observed.progress.minted
            && self.working_key().is_some_and(|k| k.id == key.id)
            && self.observed.progress.registration.is_none()
        {
            s.last_rotation_time = Some(key.created_at);
        }
        s.next_rotation_time = self.next_rotation();
        // Status shows the intent of the record; without a record of this agent it keeps its own
        // (written by the Secret-less lost-key path) until a Secret write takes over. An intent
        // this reconcile still has to sweep is never dropped.
        s.mint_started_at = match record {
            Some(r) => r.record.mint_started_at,
            None => current
                .mint_started_at
                .filter(|_| current.agent_id == agent_id),
        };
        if self.sweep_required() && !self.sweep_done() && s.mint_started_at.is_none() {
            s.mint_started_at = self.intent();
        }
        s.conditions = self.conditions(verdict, &s);
        s
    }

    fn retiring_status(
        &self,
        agent_id: &str,
        k: &RetiringKey,
        spec: &ValidSpec,
    ) -> RetiringKeyStatus {
        let previous = self.status.retiring_keys.iter().find(|s| s.id == k.id);
        let (deprecated_at, last_used_at) = match self.key_view(agent_id, &k.id) {
            Some(view) => (view.deprecated_at, view.last_used_at),
            None => (
                previous.and_then(|s| s.deprecated_at),
                previous.and_then(|s| s.last_used_at),
            ),
        };
        RetiringKeyStatus {
            id: k.id.clone(),
            prefix: k.prefix.clone(),
            retiring_since: k.since,
            deprecated_at,
            last_used_at,
            revoke_after: if k.immediate {
                k.since
            } else {
                schedule::add(k.since, spec.grace)
            },
            revoke_by: if k.immediate {
                k.since
            } else {
                schedule::add(k.since, spec.max_grace)
            },
            immediate: k.immediate,
        }
    }

    fn conditions(
        &self,
        verdict: &Verdict<'_>,
        desired: &LatticeAgentStatus,
    ) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        let prev = &self.status.conditions;
        let generation = self.generation();
        let now = self.observed.now;
        let working = self.working_key();
        let gone = self
            .agent_id
            .as_deref()
            .is_some_and(|id| self.agent_gone(id));

        let (ready, ready_reason, ready_message) = match verdict {
            Verdict::Blocked(
                blocker @ (Blocker::SecretConflict
                | Blocker::NameConflict
                | Blocker::RegistrationConflict
                | Blocker::AgentRevokedExternally),
                message,
            ) => (false, blocker.reason(), message.clone()),
            Verdict::Blocked(Blocker::InvalidSpec, message) if working.is_none() || gone => {
                (false, "InvalidSpec", message.clone())
            }
            _ if gone => (
                false,
                "AgentRevokedExternally",
                format!(
                    "agent {} was revoked or deleted outside the cluster; set the \
                     {REREGISTER_ANNOTATION} annotation to a new value to register a new agent",
                    self.agent_id.as_deref().unwrap_or_default()
                ),
            ),
            _ => match working {
                Some(key) if self.spec().is_some_and(|s| s.suspend) => (
                    false,
                    "Suspended",
                    format!(
                        "agent is halted (spec.suspend); key {} stays in the Secret",
                        key.prefix
                    ),
                ),
                Some(key) => (
                    true,
                    "AgentReady",
                    format!(
                        "key {} of agent {} is in Secret {}",
                        key.prefix, self.agent_name, self.secret_name
                    ),
                ),
                None => match verdict {
                    Verdict::Failed(f) => (false, f.class.category(), f.message.clone()),
                    _ => (
                        false,
                        "Registering",
                        if self.agent_id.is_some() {
                            format!("writing a new key to Secret {}", self.secret_name)
                        } else {
                            format!("registering agent {}", self.agent_name)
                        },
                    ),
                },
            },
        };
        let (synced, synced_reason, synced_message) = match verdict {
            Verdict::Ok => (
                true,
                "Synced",
                "the agent and its Secret match the spec".to_owned(),
            ),
            Verdict::Blocked(blocker, message) => (false, blocker.reason(), message.clone()),
            Verdict::Failed(f) => (false, f.class.category(), f.message.clone()),
        };
        let (rotating, rotating_reason, rotating_message) = self.rotating(desired);
        vec![
            condition(
                prev,
                READY,
                ready,
                ready_reason,
                ready_message,
                generation,
                now,
            ),
            condition(
                prev,
                SYNCED,
                synced,
                synced_reason,
                synced_message,
                generation,
                now,
            ),
            condition(
                prev,
                ROTATING,
                rotating,
                rotating_reason,
                rotating_message,
                generation,
                now,
            ),
        ]
    }

    fn rotating(&self, desired: &LatticeAgentStatus) -> (bool, &'static str, String) {
        let (Some(agent_id), Some(spec)) = (self.agent_id.as_deref(), self.spec()) else {
            return self.carry_rotating(desired);
        };
        let retiring = self.retiring();
        if retiring.is_empty() || desired.retiring_keys.is_empty() {
            return (false, "Idle", "no key is being retired".to_owned());
        }
        let mut grace: Vec<String> = Vec::new();
        let mut used: Vec<String> = Vec::new();
        let mut unknown_usage = false;
        let mut revoking: Vec<String> = Vec::new();
        for key in &retiring {
            let revoke_by = schedule::add(key.since, spec.max_grace);
            match self.retirement(agent_id, key) {
                Some(Retirement::Wait {
                    until,
                    why: WaitWhy::GracePeriod,
                }) => grace.push(format!(
                    "key {} retiring since {}: revoked after {until} once unused for {}, at the \
                     latest at {revoke_by}",
                    key.prefix, key.since, self.observed.resource.spec.rotation.grace_period
                )),
                Some(Retirement::Wait {
                    why: WaitWhy::OldKeyUsed { last_used },
                    ..
                }) => used.push(format!(
                    "key {} was last used at {last_used}; revoked once unused for {}, at the latest \
                     at {revoke_by}",
                    key.prefix, self.observed.resource.spec.rotation.grace_period
                )),
                Some(Retirement::NeedUsage) => unknown_usage = true,
                _ => revoking.push(format!("key {}", key.prefix)),
            }
        }
        if !used.is_empty() || (unknown_usage && grace.is_empty()) {
            if used.is_empty()
                && let Some(prev) = status::find(&self.status.conditions, ROTATING)
                && prev.reason == "WaitingForOldKeyUnused"
            {
                // Usage not read in this reconcile: keep the last message rather than flap.
                return (true, "WaitingForOldKeyUnused", prev.message.clone());
            }
            if used.is_empty() {
                used.push("the old key's last use is being checked".to_owned());
            }
            return (true, "WaitingForOldKeyUnused", used.join("; "));
        }
        if !grace.is_empty() {
            return (true, "WaitingForGracePeriod", grace.join("; "));
        }
        (
            true,
            "RevokingOldKey",
            format!("{} to be revoked now", revoking.join(", ")),
        )
    }

    fn carry_rotating(&self, desired: &LatticeAgentStatus) -> (bool, &'static str, String) {
        match status::find(&self.status.conditions, ROTATING) {
            Some(c) if !desired.retiring_keys.is_empty() => {
                let reason = match c.reason.as_str() {
                    "WaitingForGracePeriod" => "WaitingForGracePeriod",
                    "WaitingForOldKeyUnused" => "WaitingForOldKeyUnused",
                    _ => "RevokingOldKey",
                };
                (c.status == "True", reason, c.message.clone())
            }
            _ => (false, "Idle", "no key is being retired".to_owned()),
        }
    }
}

fn revoked_registration_message() -> String {
    format!(
        "the agent registered for this LatticeAgent was revoked outside the cluster; set the \
         {REREGISTER_ANNOTATION} annotation to a new value to register a new agent"
    )
}

fn key_record(key: &MintedKey) -> KeyRecord {
    KeyRecord {
        id: key.id.clone(),
        prefix: key.prefix.clone(),
        created_at: key.created_at,
        sha256: key.sha256.clone(),
    }
}

fn perform(effect: Effect, events: Vec<Event>) -> Step {
    Step::Perform { effect, events }
}

/// The part of status that is a projection of the Secret.
#[derive(PartialEq)]
struct Projection<'s> {
    agent_id: Option<&'s String>,
    secret_name: Option<&'s String>,
    active_key: Option<&'s ActiveKeyStatus>,
    retiring: Vec<(&'s String, jiff::Timestamp, bool)>,
    handled: &'s HandledAnnotations,
}

fn projection(s: &LatticeAgentStatus) -> Projection<'_> {
    Projection {
        agent_id: s.agent_id.as_ref(),
        secret_name: s.secret_name.as_ref(),
        active_key: s.active_key.as_ref(),
        retiring: s
            .retiring_keys
            .iter()
            .map(|k| (&k.id, k.retiring_since, k.immediate))
            .collect(),
        handled: &s.handled,
    }
}

// ----- deletion ------------------------------------------------------------------------------------

/// Step 1: cleanup behind the finalizer. Never validates the spec.
fn cleanup(observed: &Observed, uid: &str) -> Step {
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
            observed, vec![Event::warning(
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
            observed, vec![Event::normal(
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
fn cleanup_failed(observed: &Observed, status: &LatticeAgentStatus, failure: &Failure) -> Step {
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
fn has_finalizer(resource: &LatticeAgent) -> bool {
    resource
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// Cleanup is complete: the finalizer goes (with `events`, emitted once it is gone).
fn release(observed: &Observed, events: Vec<Event>) -> Step {
    if has_finalizer(&observed.resource) {
        return perform(Effect::RemoveFinalizer, events);
    }
    Step::Settle(Settled {
        requeue: Requeue::OnChange,
        failure: None,
        remote_checked: false,
    })
}
