//! The order of decisions (design §3.1), first match wins: [`next_step`] and the [`Planner`],
//! which holds the observed state and the facts derived from it once. Each group of decisions
//! has its own file:
//!
//! - [`register`] — step 5: registration and what follows from each registration response;
//! - [`rotate`] — steps 7–10: minting (restore, rotate, compromise, schedule), the orphan sweep,
//!   Secret repair, and retiring old keys (deprecate, revoke, forget);
//! - [`consumers`] — steps 9b and 10: the workloads that read the key, their restarts, and the
//!   hold they put on an old key's revocation;
//! - [`status`] — step 11: the desired status, its conditions, and when to reconcile again;
//! - [`cleanup`] — step 1: deletion behind the finalizer;
//! - [`malformed`] — an object the Rust type rejects: reported, never registered.
//!
//! Steps 2–4 and 6 (invalid spec, Secret conflict, status recovery, drift) are short and stay
//! here, next to the order that calls them ([`Planner::reconcile`]).

mod cleanup;
mod consumers;
mod malformed;
mod register;
mod rotate;
mod status;

use cleanup::cleanup;
pub use register::idempotency_key;
use register::revoked_registration_message;
use status::projection;

use super::conditions::{self, READY};
use super::schedule::{self};
use super::validate::{self, ValidSpec, effective_agent_name, effective_secret_name};
use super::{
    AgentStatus, Effect, ErrorClass, Event, Failure, KeyStatus, KeyView, KeyWrite, Observed,
    Precondition, RegisterOutcome, RemoteAgent, Requeue, SecretWrite, Settled, Step, WritePurpose,
};
use crate::crd::{
    COMPROMISED_ANNOTATION, HandledAnnotations, LatticeAgent, LatticeAgentStatus,
    REREGISTER_ANNOTATION, ROTATE_ANNOTATION, SecretPolicy,
};
use crate::secret::{
    DecodedRecord, DesiredSecret, KeyRecord, ObservedSecret, Ownership, RETIRING_KEYS_ANNOTATION,
    RetiringKey, SecretInputs, SecretRecord,
};

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
    let Some(uid) = observed
        .resource
        .metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
    else {
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
    if let Some(problem) = &observed.malformed {
        return malformed::malformed(observed, problem);
    }
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
    /// The provisioner policy refuses the resource ([`crate::plan::policy::Refusal::reason`]).
    Refused(&'static str),
}

impl Blocker {
    fn reason(self) -> &'static str {
        match self {
            Blocker::InvalidSpec => "InvalidSpec",
            Blocker::SecretConflict => "SecretConflict",
            Blocker::NameConflict => "NameConflict",
            Blocker::RegistrationConflict => "RegistrationConflict",
            Blocker::AgentRevokedExternally => "AgentRevokedExternally",
            Blocker::Refused(reason) => reason,
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
    /// uid).
    adopted: bool,
    /// An adopted agent whose keys were never delivered: no Secret of ours holds a key other than
    /// one its record describes as a key of this agent. (A Secret that does — its record
    /// annotations removed or edited, status lost — may hold one of the agent's keys, in use:
    /// nothing is swept then, and every other key is retired with grace, as when the record is
    /// lost.)
    undelivered: bool,
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
        // A key in a Secret of ours (or one to be adopted: `secretPolicy: Adopt`) that its record
        // does not describe as a key of the adopted agent may be one of the adopted agent's keys
        // (see `undelivered`).
        let adopted_id = adoption
            .as_ref()
            .filter(|(_, adopted)| *adopted)
            .map(|(id, _)| id.as_str());
        let maybe_held = secret
            .filter(|s| matches!(s.ownership, Ownership::Ours | Ownership::Unowned))
            .is_some_and(|s| {
                let record = &s.decoded.record;
                let described = record.key.as_ref().map(|k| &k.sha256) == s.key_digest.as_ref();
                // Only the record of a Secret of ours is trusted (design §2), and only it spares
                // its key from the sweep: an unowned Secret's key may be held whatever its
                // annotations say.
                let spared = s.ownership == Ownership::Ours
                    && described
                    && record.agent_id.as_deref() == adopted_id;
                s.key_digest.is_some() && !spared
            });
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
            adopted: adoption.as_ref().is_some_and(|(_, adopted)| *adopted),
            undelivered: adopted_id.is_some() && !maybe_held,
        }
    }

    // ----- facts derived from what is observed ------------------------------------------------

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
                    && conditions::condition_reason(&self.status, READY)
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
        self.observed
            .remote
            .keys
            .get(agent_id)
            .and_then(|k| k.get(key_id))
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
                // The key the record says the Secret holds is never retiring, whatever an edited
                // list says: retiring it would revoke the workload's key. Nor is a key with its
                // public prefix: that is the same key under an edited id (prefixes are 8
                // characters of a random body).
                if let Some(active) = &r.record.key {
                    list.retain(|k| {
                        k.id != active.id && (active.prefix.is_empty() || k.prefix != active.prefix)
                    });
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
                fields: self.observed.settings.backend.secret_fields(),
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
        self.prior_intent() || self.undelivered
    }

    // ----- the decision order -------------------------------------------------------------------

    fn reconcile(&self) -> Step {
        if let Some(failure) = &self.observed.failure {
            return self.finish(Verdict::Failed(failure));
        }
        // Before anything that could call AgentLattice: a refusal costs no remote call.
        if let Err(refusal) = self.policy() {
            // A suspended provisioner halts its agents even when their spec is refused: a halt
            // only takes power away, and incident response must not depend on the spec.
            if let Some(step) = self.halt_for_provisioner() {
                return step;
            }
            return self.finish(Verdict::Blocked(
                Blocker::Refused(refusal.reason()),
                refusal.message(),
            ));
        }
        if let Some(message) = self.secret_conflict() {
            return self.finish(Verdict::Blocked(Blocker::SecretConflict, message));
        }
        if let Some(step) = self.verify_record() {
            return step;
        }
        if self.status_needs_recovery() {
            let desired = self.desired_status(&Verdict::Ok);
            let mut events = vec![Event::normal(
                "StatusRecovered",
                format!(
                    "status rewritten from Secret {} (agent {})",
                    self.secret_name,
                    self.agent_id.as_deref().unwrap_or_default()
                ),
            )];
            events.extend(self.status_events(&desired));
            return Step::Perform {
                effect: Effect::WriteStatus(Box::new(desired)),
                events,
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
        if self.key_check_due(&agent_id) {
            return perform(Effect::FetchKeys { agent_id }, vec![]);
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
        if let Some(step) = self.restart_consumers() {
            return step;
        }
        if let Some(step) = self.retire(&agent_id) {
            return step;
        }
        self.finish(Verdict::Ok)
    }

    /// Step 2b: the provisioner's policy (docs/tenancy.md). Capabilities are checked on every
    /// reconcile (one added later by an edit is refused before `UpdateAgent`, so the agent keeps
    /// its previous capabilities), the agent name only before registration.
    fn policy(&self) -> Result<(), super::policy::Refusal> {
        let Some(spec) = self.spec() else {
            return Ok(());
        };
        let meta = &self.observed.resource.metadata;
        super::policy::check(
            &super::policy::Request {
                namespace: meta.namespace.as_deref().unwrap_or_default(),
                name: meta.name.as_deref().unwrap_or_default(),
                agent_name: &spec.agent_name,
                capabilities: &spec.capabilities,
                registered: self.agent_id.is_some(),
                cluster_name: self.observed.settings.cluster_name.as_deref(),
            },
            &self.observed.provisioner,
        )
    }

    /// The read and the halt of a registered agent whose provisioner is suspended, when nothing
    /// else may be done for it (its spec is refused).
    fn halt_for_provisioner(&self) -> Option<Step> {
        if !self.provisioner_halts() {
            return None;
        }
        let agent_id = self.agent_id.clone()?;
        if self.agent_gone(&agent_id) {
            return None;
        }
        match self.remote_agent(&agent_id) {
            None if !self.status.halted_by_provisioner => {
                Some(perform(Effect::FetchAgent { agent_id }, vec![]))
            }
            Some(RemoteAgent::Found(view)) if view.status == AgentStatus::Active => Some(perform(
                Effect::HaltAgent {
                    agent_id: agent_id.clone(),
                },
                vec![Event::normal(
                    "AgentHalted",
                    format!(
                        "halted agent {agent_id} (provisioner {} is suspended)",
                        self.observed.provisioner.id()
                    ),
                )],
            )),
            _ => None,
        }
    }

    /// Whether the agent is to be halted because its provisioner is suspended (and not because
    /// of its own `spec.suspend`): recorded in status as `haltedByProvisioner`, so resuming the
    /// provisioner resumes exactly these.
    fn provisioner_halts(&self) -> bool {
        self.observed
            .provisioner
            .view()
            .is_some_and(|v| v.suspended)
            && !self.spec().is_some_and(|s| s.suspend)
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

    /// Step 6: the drift read is due once per resync interval, on a generation change and when an
    /// action annotation has a new value — not after the operator's own writes (their reconciles
    /// find a recent `last_remote_check`).
    fn drift_read_due(&self, agent_id: &str) -> bool {
        if self.remote_agent(agent_id).is_some() || self.agent_gone(agent_id) {
            return false;
        }
        self.resync_due()
            || self.status.observed_generation != self.generation()
            || self.status.halted_by_provisioner != self.provisioner_halts()
            || self.pending(ROTATE_ANNOTATION)
            || self.pending(COMPROMISED_ANNOTATION)
            || self.pending(REREGISTER_ANNOTATION)
    }

    /// Whether a resync interval has passed since this process last read the agent.
    fn resync_due(&self) -> bool {
        match self.observed.last_remote_check {
            None => true,
            Some(at) => {
                self.observed.now >= schedule::add(at, self.observed.settings.resync_interval)
            }
        }
    }

    /// Step 6, keys: the periodic drift read lists the agent's keys too. A key revoked outside
    /// the cluster — the Secret's own key included — changes nothing on the agent (not even its
    /// `version`), so without the list the operator would report Ready with a revoked key in the
    /// Secret until the next rotation (found by the chaos runner, tests/chaos.rs). With the list,
    /// `working_key` sees the revocation and the lost-key path mints a new key. Only the periodic
    /// read lists: a read triggered by a spec or annotation change does not (those reconciles
    /// list the keys anyway when they rotate), so this costs one call per agent per resync
    /// interval, not one per change.
    fn key_check_due(&self, agent_id: &str) -> bool {
        matches!(self.remote_agent(agent_id), Some(RemoteAgent::Found(_)))
            // Nothing learnt about its keys in this reconcile yet (a registration or a mint
            // knows the key it made; a rotation lists the keys itself).
            && !self.observed.remote.keys.contains_key(agent_id)
            && !self.observed.remote.listed.contains(agent_id)
            && self.resync_due()
            && self
                .record_is_for(agent_id)
                .is_some_and(|r| r.record.key.is_some())
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
        let why = if spec.suspend {
            "spec.suspend".to_owned()
        } else {
            format!(
                "provisioner {} is suspended",
                self.observed.provisioner.id()
            )
        };
        match (spec.suspend || self.provisioner_halts(), view.status) {
            (true, AgentStatus::Active) => Some(perform(
                Effect::HaltAgent {
                    agent_id: agent_id.to_owned(),
                },
                vec![Event::normal(
                    "AgentHalted",
                    format!("halted agent {agent_id} ({why})"),
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
}

fn perform(effect: Effect, events: Vec<Event>) -> Step {
    Step::Perform { effect, events }
}
