//! The test world: a fake AgentLattice (per docs/agentlattice-api.md), a fake API server for one
//! `LatticeAgent` and its Secret, and an executor loop with crash and fault injection.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::{LatticeAgent, LatticeAgentStatus};
use crate::plan::policy::Resolution;
use crate::plan::{
    AgentStatus, AgentView, Consumer, Effect, ErrorClass, Event, Failure, KeySource, KeyStatus,
    KeyView, KeyWrite, MintedKey, Observed, Outcome, Precondition, RegisterOutcome, Rollout,
    Settings, Settled, Step, WorkloadKind, next_step, schedule,
};
use crate::secret::{self, SecretView, cache_form, key_digest};

pub const UID: &str = "6f1c2d3e-0000-4000-8000-000000000001";
pub const BASE_URL: &str = "https://www.agentlattice.io";

/// A fixed instant, with AgentLattice's millisecond precision.
pub fn t0() -> Timestamp {
    ts("2026-11-23T10:00:00.000Z")
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

pub fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

pub fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

pub fn settings() -> Settings {
    Settings {
        base_url: BASE_URL.into(),
        backend: crate::plan::BackendKind::AgentLattice,
        cluster_name: None,
        resync_interval: mins(10),
        service_key_retry: mins(5),
        consumers: crate::plan::ConsumerSettings::default(),
        default_policy: crate::plan::policy::Policy::any_capability(),
    }
}

/// The fixture resource.
pub const RESOURCE_YAML: &str = r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata:
  name: deploy-bot
  namespace: payments
  uid: 6f1c2d3e-0000-4000-8000-000000000001
  generation: 1
  resourceVersion: "1"
  creationTimestamp: "2026-11-01T00:00:00Z"
  finalizers: [agentlattice.io/cleanup]
spec:
  description: Deploys the payments service
  capabilities: [rollback.staging, deploy.staging]
"#;

pub fn resource() -> LatticeAgent {
    crate::yaml::from_str(RESOURCE_YAML).expect("fixture parses")
}

/// An agent in the fake AgentLattice.
#[derive(Clone, Debug)]
pub struct FakeAgent {
    pub view: AgentView,
    pub keys: Vec<(KeyView, String)>,
}

/// The fake AgentLattice.
#[derive(Clone, Debug, Default)]
pub struct FakeAl {
    pub agents: BTreeMap<String, FakeAgent>,
    /// Idempotency key → (agent id, body fingerprint, key id).
    pub idempotency: BTreeMap<String, (String, String, String)>,
    pub counter: u64,
    /// Every state-changing call, for "how many calls" assertions.
    pub calls: Vec<&'static str>,
}

impl FakeAl {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub fn new_key(&mut self, now: Timestamp) -> (KeyView, String) {
        let n = self.next();
        let body: String = Sha256::digest(format!("key-{n}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..40]
            .to_owned();
        let view = KeyView {
            id: format!("key-{n:04}"),
            prefix: body[..8].to_owned(),
            status: KeyStatus::Active,
            created_at: now,
            deprecated_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        (view, format!("al_agent_{body}"))
    }

    /// Creates an agent directly (as another tool would).
    pub fn create_agent(&mut self, name: &str, uid: Option<&str>, now: Timestamp) -> String {
        let n = self.next();
        let id = format!("agent-{n:04}");
        let (key, plain) = self.new_key(now);
        let mut metadata = BTreeMap::new();
        if let Some(uid) = uid {
            metadata.insert(crate::plan::META_UID.to_owned(), uid.to_owned());
        }
        self.agents.insert(
            id.clone(),
            FakeAgent {
                view: AgentView {
                    id: id.clone(),
                    name: name.into(),
                    status: AgentStatus::Active,
                    capabilities: vec![],
                    description: None,
                    metadata,
                    created_by: Some("svc-test".into()),
                },
                keys: vec![(key, plain)],
            },
        );
        id
    }

    pub fn agent(&self, id: &str) -> &FakeAgent {
        &self.agents[id]
    }

    pub fn agent_mut(&mut self, id: &str) -> &mut FakeAgent {
        self.agents.get_mut(id).expect("agent exists")
    }

    pub fn revoke_agent(&mut self, id: &str, now: Timestamp) {
        let agent = self.agent_mut(id);
        agent.view.status = AgentStatus::Revoked;
        for (k, _) in &mut agent.keys {
            if k.status != KeyStatus::Revoked {
                k.status = KeyStatus::Revoked;
                k.revoked_at = Some(now);
            }
        }
    }

    pub fn live_agents_of(&self, uid: &str) -> Vec<&FakeAgent> {
        self.agents
            .values()
            .filter(|a| a.view.status != AgentStatus::Revoked && a.view.belongs_to(uid))
            .collect()
    }

    /// The workload uses a key: sets its `last_used_at`.
    pub fn use_key(&mut self, plaintext: &str, now: Timestamp) -> bool {
        for agent in self.agents.values_mut() {
            for (k, p) in &mut agent.keys {
                if p == plaintext && k.status != KeyStatus::Revoked {
                    k.last_used_at = Some(now);
                    return true;
                }
            }
        }
        false
    }

    pub fn key(&self, agent: &str, key: &str) -> Option<&KeyView> {
        self.agents
            .get(agent)?
            .keys
            .iter()
            .map(|(k, _)| k)
            .find(|k| k.id == key)
    }
}

/// A fault to inject on the next action of a kind.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Fail before committing.
    Fail(&'static str, ErrorClass),
    /// Commit, then lose the response (the executor sees Unavailable).
    LoseResponse(&'static str),
}

/// How a reconcile ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    Settled(Settled),
    Released,
    /// The process died after the last action committed (its response was never folded).
    Crashed,
}

/// One reconcile's trace.
#[derive(Clone, Debug)]
pub struct Run {
    pub actions: Vec<Effect>,
    pub events: Vec<Event>,
    pub end: End,
}

impl Run {
    pub fn kinds(&self) -> Vec<&'static str> {
        self.actions.iter().map(Effect::kind).collect()
    }

    pub fn done(&self) -> &Settled {
        match &self.end {
            End::Settled(d) => d,
            other => panic!("expected Settled, got {other:?}"),
        }
    }

    pub fn event_reasons(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.reason).collect()
    }

    pub fn remote_calls(&self) -> usize {
        self.actions.iter().filter(|a| a.is_remote()).count()
    }

    pub fn kube_writes(&self) -> usize {
        self.actions.iter().filter(|a| !a.is_remote()).count()
    }
}

/// The world.
#[derive(Clone, Debug)]
pub struct World {
    pub now: Timestamp,
    pub settings: Settings,
    pub resource: Option<LatticeAgent>,
    pub secret: Option<Secret>,
    pub al: FakeAl,
    pub last_remote_check: Option<Timestamp>,
    pub older_claimant: Option<String>,
    pub faults: Vec<Fault>,
    pub rv: u64,
    /// The workloads that read the Secret, as the workload watches report them.
    pub consumers: Vec<Consumer>,
    /// The provisioner as observe resolves it (`None`: the default provisioner of `settings`).
    pub provisioner: Option<crate::plan::policy::Resolution>,
}

impl Default for World {
    fn default() -> Self {
        World::new(resource())
    }
}

impl World {
    pub fn new(resource: LatticeAgent) -> World {
        World {
            now: t0(),
            settings: settings(),
            resource: Some(resource),
            secret: None,
            al: FakeAl::default(),
            last_remote_check: None,
            older_claimant: None,
            faults: Vec::new(),
            rv: 100,
            consumers: Vec::new(),
            provisioner: None,
        }
    }

    /// A world where the resource has been reconciled to its steady state (registered, Ready).
    pub fn registered() -> World {
        let mut w = World::default();
        let run = w.run();
        assert!(matches!(run.end, End::Settled(_)), "{run:?}");
        w
    }

    pub fn res(&self) -> &LatticeAgent {
        self.resource.as_ref().expect("resource exists")
    }

    pub fn res_mut(&mut self) -> &mut LatticeAgent {
        self.resource.as_mut().expect("resource exists")
    }

    pub fn status(&self) -> LatticeAgentStatus {
        self.res().status.clone().unwrap_or_default()
    }

    pub fn status_mut(&mut self) -> &mut LatticeAgentStatus {
        self.res_mut().status.get_or_insert_with(Default::default)
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        self.res_mut()
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    /// Edits the spec as a user would (bumps the generation).
    pub fn edit_spec(&mut self, f: impl FnOnce(&mut crate::crd::LatticeAgentSpec)) {
        let res = self.res_mut();
        f(&mut res.spec);
        res.metadata.generation = Some(res.metadata.generation.unwrap_or(1) + 1);
    }

    pub fn advance(&mut self, d: SignedDuration) {
        self.now = self.now.checked_add(d).expect("time advances");
    }

    /// The agent id the Secret says.
    pub fn secret_agent_id(&self) -> Option<String> {
        self.secret_data(self.fields().agent_id)
    }

    /// The key in the Secret (what the workload reads).
    pub fn secret_key(&self) -> Option<String> {
        self.secret_data(self.fields().api_key)
    }

    pub fn secret_data(&self, field: &str) -> Option<String> {
        self.secret
            .as_ref()?
            .data
            .as_ref()?
            .get(field)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    }

    pub fn secret_annotation(&self, key: &str) -> Option<String> {
        self.secret
            .as_ref()?
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .cloned()
    }

    pub fn secret_annotations_mut(&mut self) -> &mut BTreeMap<String, String> {
        self.secret
            .as_mut()
            .expect("secret exists")
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
    }

    /// The workload uses the key it finds in its Secret.
    pub fn workload_uses_key(&mut self) -> bool {
        match self.secret_key() {
            Some(key) => {
                let now = self.now;
                self.al.use_key(&key, now)
            }
            None => false,
        }
    }

    /// The state at the start of a reconcile, as the executor builds it.
    pub fn observe(&self) -> Observed {
        let provisioner = self.provisioner.clone().unwrap_or_else(|| {
            Resolution::default_provisioner(
                self.settings.default_policy.clone(),
                &self.settings.base_url,
            )
        });
        let settings = self.settings.for_provisioner(&provisioner);
        let secret = self.secret_view_with(settings.backend.secret_fields());
        let mut o = Observed::new(self.now, settings, self.res().clone(), secret);
        o.last_remote_check = self.last_remote_check;
        o.older_claimant = self.older_claimant.clone();
        o.consumers = self.consumers.clone();
        o.provisioner = provisioner;
        o
    }

    /// The fields of the backend the agent lives at.
    pub fn fields(&self) -> secret::SecretFields {
        match &self.provisioner {
            Some(p) => self.settings.for_provisioner(p).backend.secret_fields(),
            None => self.settings.backend.secret_fields(),
        }
    }

    /// The first step of a reconcile.
    pub fn first_step(&self) -> Step {
        next_step(&self.observe())
    }

    /// One reconcile.
    pub fn run(&mut self) -> Run {
        self.run_with_crash(None)
    }

    /// One reconcile; with `Some(n)`, the process dies right after the n-th action (1-based)
    /// committed, before its response is folded.
    pub fn run_with_crash(&mut self, crash_after: Option<usize>) -> Run {
        let mut o = self.observe();
        let mut held: BTreeMap<String, String> = BTreeMap::new();
        let mut run = Run {
            actions: Vec::new(),
            events: Vec::new(),
            end: End::Crashed,
        };
        for _ in 0..32 {
            match next_step(&o) {
                Step::Perform {
                    effect: Effect::RemoveFinalizer,
                    events,
                } => {
                    // The end of a deletion: the world models it as the resource going (not
                    // counted among the reconcile's effects).
                    run.events.extend(events);
                    self.release();
                    run.end = End::Released;
                    return run;
                }
                Step::Perform { effect, events } => {
                    let result = self.perform(&effect, &mut held);
                    run.actions.push(effect.clone());
                    if crash_after == Some(run.actions.len()) {
                        run.end = End::Crashed;
                        return run;
                    }
                    if result.is_ok() {
                        run.events.extend(events);
                    }
                    o.record(&effect, result);
                }
                Step::Settle(settled) => {
                    if settled.remote_checked {
                        self.last_remote_check = Some(self.now);
                    }
                    run.end = End::Settled(settled);
                    return run;
                }
            }
        }
        panic!("reconcile did not settle in 32 steps: {:?}", run.kinds());
    }

    /// A workload, created an hour before t0, that reads the Secret `reads`; its rollout is
    /// complete.
    pub fn reader(&mut self, kind: WorkloadKind, name: &str, reads: KeySource) {
        self.consumers.push(Consumer {
            kind,
            name: name.into(),
            reads,
            created_at: Some(schedule::add(t0(), hours(-1))),
            restarted_for: None,
            restarted_at: None,
            rollout: Rollout::Complete,
        });
    }

    /// Every rollout under way finishes.
    pub fn roll_out(&mut self) {
        for c in &mut self.consumers {
            if c.rollout == Rollout::InProgress {
                c.rollout = Rollout::Complete;
            }
        }
    }

    /// Marks the resource deleted (the finalizer keeps it).
    pub fn delete(&mut self) {
        let now = self.now;
        self.res_mut().metadata.deletion_timestamp = Some(Time(now));
    }

    /// The finalizer went: the resource is gone and the garbage collector deletes the Secret if
    /// it is still controlled by it.
    pub fn release(&mut self) {
        self.resource = None;
        let owned = self.secret.as_ref().is_some_and(|s| {
            s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == UID)
        });
        if owned {
            self.secret = None;
        }
    }

    fn take_fault(&mut self, kind: &'static str) -> Option<Fault> {
        let pos = self.faults.iter().position(|f| match f {
            Fault::Fail(k, _) | Fault::LoseResponse(k) => *k == kind,
        })?;
        Some(self.faults.remove(pos))
    }

    pub fn perform(
        &mut self,
        action: &Effect,
        held: &mut BTreeMap<String, String>,
    ) -> Result<Outcome, Failure> {
        let kind = action.kind();
        let fault = self.take_fault(kind);
        if let Some(Fault::Fail(_, class)) = &fault {
            return Err(Failure {
                effect: kind,
                class: class.clone(),
                message: format!("injected {}", class.category()),
            });
        }
        let result = self.commit(action, held);
        if let Some(Fault::LoseResponse(_)) = fault {
            return Err(Failure {
                effect: kind,
                class: ErrorClass::Unavailable { retry_after: None },
                message: "response lost".into(),
            });
        }
        result
    }

    fn fail(kind: &'static str, class: ErrorClass) -> Result<Outcome, Failure> {
        Err(Failure {
            effect: kind,
            message: class.category().to_owned(),
            class,
        })
    }

    fn commit(
        &mut self,
        action: &Effect,
        held: &mut BTreeMap<String, String>,
    ) -> Result<Outcome, Failure> {
        let now = self.now;
        let kind = action.kind();
        if action.is_remote()
            && !matches!(
                action,
                Effect::FindAgents { .. } | Effect::FetchAgent { .. } | Effect::FetchKeys { .. }
            )
        {
            self.al.calls.push(kind);
        }
        match action {
            Effect::Register {
                request,
                idempotency_key,
            } => {
                let mut caps = request.capabilities.clone();
                caps.sort();
                let body = format!(
                    "{}|{:?}|{:?}|{:?}",
                    request.name, request.description, caps, request.metadata
                );
                if let Some((agent_id, fingerprint, key_id)) =
                    self.al.idempotency.get(idempotency_key).cloned()
                {
                    let agent = self.al.agent(&agent_id);
                    let outcome = if agent.view.status == AgentStatus::Revoked {
                        RegisterOutcome::AgentRevoked
                    } else if fingerprint != body {
                        RegisterOutcome::IdempotencyMismatch
                    } else {
                        RegisterOutcome::Replayed { agent_id, key_id }
                    };
                    return Ok(Outcome::Registered(outcome));
                }
                let taken =
                    self.al.agents.values().any(|a| {
                        a.view.name == request.name && a.view.status != AgentStatus::Revoked
                    });
                if taken {
                    return Ok(Outcome::Registered(RegisterOutcome::NameTaken));
                }
                let n = self.al.next();
                let id = format!("agent-{n:04}");
                let (key, plain) = self.al.new_key(now);
                let view = AgentView {
                    id: id.clone(),
                    name: request.name.clone(),
                    status: AgentStatus::Active,
                    capabilities: caps,
                    description: request.description.clone(),
                    metadata: request.metadata.clone(),
                    created_by: Some("svc-test".into()),
                };
                self.al
                    .idempotency
                    .insert(idempotency_key.clone(), (id.clone(), body, key.id.clone()));
                self.al.agents.insert(
                    id.clone(),
                    FakeAgent {
                        view: view.clone(),
                        keys: vec![(key.clone(), plain.clone())],
                    },
                );
                held.insert(key.id.clone(), plain.clone());
                Ok(Outcome::Registered(RegisterOutcome::Created {
                    agent: view,
                    key: MintedKey {
                        id: key.id,
                        prefix: key.prefix,
                        created_at: key.created_at,
                        sha256: key_digest(plain.as_bytes()),
                    },
                }))
            }
            Effect::FindAgents { name } => Ok(Outcome::Found(
                self.al
                    .agents
                    .values()
                    .filter(|a| &a.view.name == name && a.view.status != AgentStatus::Revoked)
                    .map(|a| a.view.clone())
                    .collect(),
            )),
            Effect::FetchAgent { agent_id } => match self.al.agents.get(agent_id) {
                Some(a) => Ok(Outcome::Agent(a.view.clone())),
                None => Self::fail(kind, ErrorClass::AgentNotFound),
            },
            Effect::FetchKeys { agent_id } => match self.al.agents.get(agent_id) {
                Some(a) => Ok(Outcome::Keys(
                    a.keys.iter().map(|(k, _)| k.clone()).collect(),
                )),
                None => Self::fail(kind, ErrorClass::AgentNotFound),
            },
            Effect::UpdateAgent {
                agent_id,
                capabilities,
                description,
            } => {
                let Some(a) = self.al.agents.get_mut(agent_id) else {
                    return Self::fail(kind, ErrorClass::AgentNotFound);
                };
                if a.view.status == AgentStatus::Revoked {
                    return Self::fail(kind, ErrorClass::AgentRevoked);
                }
                if let Some(c) = capabilities {
                    a.view.capabilities = c.clone();
                }
                if let Some(d) = description {
                    a.view.description = d.clone();
                }
                Ok(Outcome::Agent(a.view.clone()))
            }
            Effect::HaltAgent { agent_id } | Effect::ResumeAgent { agent_id } => {
                let Some(a) = self.al.agents.get_mut(agent_id) else {
                    return Self::fail(kind, ErrorClass::AgentNotFound);
                };
                if a.view.status == AgentStatus::Revoked {
                    return Self::fail(kind, ErrorClass::AgentRevoked);
                }
                a.view.status = if matches!(action, Effect::HaltAgent { .. }) {
                    AgentStatus::Halted
                } else {
                    AgentStatus::Active
                };
                Ok(Outcome::Agent(a.view.clone()))
            }
            Effect::RevokeAgent { agent_id } => {
                if !self.al.agents.contains_key(agent_id) {
                    return Self::fail(kind, ErrorClass::AgentNotFound);
                }
                self.al.revoke_agent(agent_id, now);
                Ok(Outcome::Agent(self.al.agent(agent_id).view.clone()))
            }
            Effect::MintKey { agent_id, .. } => {
                let Some(a) = self.al.agents.get(agent_id) else {
                    return Self::fail(kind, ErrorClass::AgentNotFound);
                };
                if a.view.status == AgentStatus::Revoked {
                    return Self::fail(kind, ErrorClass::AgentRevoked);
                }
                let live = a
                    .keys
                    .iter()
                    .filter(|(k, _)| k.status != KeyStatus::Revoked)
                    .count();
                if live >= 10 {
                    return Self::fail(
                        kind,
                        ErrorClass::Conflict("agent_key_limit_reached".into()),
                    );
                }
                let (key, plain) = self.al.new_key(now);
                self.al
                    .agent_mut(agent_id)
                    .keys
                    .push((key.clone(), plain.clone()));
                held.insert(key.id.clone(), plain.clone());
                Ok(Outcome::Minted(MintedKey {
                    id: key.id,
                    prefix: key.prefix,
                    created_at: key.created_at,
                    sha256: key_digest(plain.as_bytes()),
                }))
            }
            Effect::DeprecateKey { agent_id, key_id } | Effect::RevokeKey { agent_id, key_id } => {
                let revoke = matches!(action, Effect::RevokeKey { .. });
                let Some(a) = self.al.agents.get_mut(agent_id) else {
                    return Self::fail(kind, ErrorClass::AgentNotFound);
                };
                let live = a
                    .keys
                    .iter()
                    .filter(|(k, _)| k.status != KeyStatus::Revoked)
                    .count();
                let Some((k, _)) = a.keys.iter_mut().find(|(k, _)| &k.id == key_id) else {
                    return Self::fail(kind, ErrorClass::KeyNotFound);
                };
                if revoke {
                    if k.status != KeyStatus::Revoked {
                        if live <= 1 {
                            return Self::fail(
                                kind,
                                ErrorClass::Conflict("last_active_key".into()),
                            );
                        }
                        k.status = KeyStatus::Revoked;
                        k.revoked_at = Some(now);
                    }
                } else {
                    if k.status == KeyStatus::Revoked {
                        return Self::fail(kind, ErrorClass::KeyRevoked);
                    }
                    k.status = KeyStatus::Deprecated;
                    k.deprecated_at.get_or_insert(now);
                }
                Ok(Outcome::Key(k.clone()))
            }
            Effect::WriteSecret(write) => {
                let key = match &write.key {
                    KeyWrite::Fresh { key_id } => match held.get(key_id) {
                        Some(k) => Some(k.clone()),
                        None => return Self::fail(kind, ErrorClass::Transient),
                    },
                    KeyWrite::Keep => None,
                };
                match &write.precondition {
                    Precondition::Create => {
                        if self.secret.is_some() {
                            return Self::fail(kind, ErrorClass::Transient);
                        }
                        let Some(key) = key else {
                            return Self::fail(kind, ErrorClass::Transient);
                        };
                        let mut s = write.desired.to_secret(key.as_bytes());
                        self.rv += 1;
                        s.metadata.resource_version = Some(self.rv.to_string());
                        self.secret = Some(s);
                    }
                    Precondition::Update { resource_version } => {
                        let Some(current) = self.secret.clone() else {
                            return Self::fail(kind, ErrorClass::Transient);
                        };
                        if current.metadata.resource_version != *resource_version {
                            return Self::fail(kind, ErrorClass::Transient);
                        }
                        let SecretView::Present(view) = SecretView::observe_with(
                            &cache_form(current.clone()),
                            UID,
                            self.fields(),
                        ) else {
                            return Self::fail(kind, ErrorClass::Transient);
                        };
                        let patch = write
                            .desired
                            .merge_patch(&view, key.as_deref().map(str::as_bytes));
                        let mut value = serde_json::to_value(&current).expect("secret serialises");
                        merge(&mut value, &patch);
                        let mut s: Secret = serde_json::from_value(value).expect("patched secret");
                        self.rv += 1;
                        s.metadata.resource_version = Some(self.rv.to_string());
                        self.secret = Some(s);
                    }
                }
                Ok(Outcome::Secret(self.secret_view()))
            }
            Effect::ReleaseSecret {
                resource_version,
                owner_references,
                ..
            } => {
                let Some(s) = self.secret.as_mut() else {
                    return Self::fail(kind, ErrorClass::Transient);
                };
                if s.metadata.resource_version != *resource_version {
                    return Self::fail(kind, ErrorClass::Transient);
                }
                s.metadata.owner_references = Some(owner_references.clone());
                self.rv += 1;
                s.metadata.resource_version = Some(self.rv.to_string());
                Ok(Outcome::Secret(self.secret_view()))
            }
            // The restart's rollout begins; `roll_out` finishes it.
            Effect::RestartConsumer {
                kind,
                name,
                key_id,
                at,
            } => {
                if let Some(c) = self
                    .consumers
                    .iter_mut()
                    .find(|c| c.kind == *kind && &c.name == name)
                {
                    c.restarted_for = Some((key_id.clone(), Some(*at)));
                    c.rollout = Rollout::InProgress;
                }
                Ok(Outcome::Restarted(*at))
            }
            Effect::RemoveFinalizer => {
                self.res_mut()
                    .metadata
                    .finalizers
                    .get_or_insert_default()
                    .retain(|f| f != crate::crd::FINALIZER);
                Ok(Outcome::Resource(Box::new(self.res().clone())))
            }
            Effect::WriteStatus(status) => {
                // Round-trip through JSON like the API server (metav1.Time keeps whole seconds).
                let json = serde_json::to_value(status.as_ref()).expect("status serialises");
                let stored: LatticeAgentStatus =
                    serde_json::from_value(json).expect("status deserialises");
                self.rv += 1;
                let rv = self.rv.to_string();
                let res = self.res_mut();
                res.status = Some(stored);
                res.metadata.resource_version = Some(rv);
                Ok(Outcome::Resource(Box::new(self.res().clone())))
            }
        }
    }

    fn secret_view(&self) -> SecretView {
        self.secret_view_with(self.fields())
    }

    fn secret_view_with(&self, fields: secret::SecretFields) -> SecretView {
        match &self.secret {
            Some(s) => SecretView::observe_with(&cache_form(s.clone()), UID, fields),
            None => SecretView::Absent,
        }
    }

    /// The invariant of design §4: exactly one live agent for the resource, its Secret holds a
    /// working key of it, and every other live key of the agent is recorded as retiring.
    pub fn check_invariant(&self) -> Result<(), String> {
        let live = self.al.live_agents_of(UID);
        if live.len() != 1 {
            return Err(format!(
                "expected exactly one live agent, found {:?}",
                live.iter().map(|a| &a.view.id).collect::<Vec<_>>()
            ));
        }
        let agent = live[0];
        if self.secret_agent_id().as_deref() != Some(agent.view.id.as_str()) {
            return Err(format!(
                "Secret names agent {:?}, live agent is {}",
                self.secret_agent_id(),
                agent.view.id
            ));
        }
        let key = self.secret_key().ok_or("Secret has no key")?;
        let working = agent
            .keys
            .iter()
            .any(|(k, p)| p == &key && k.status != KeyStatus::Revoked);
        if !working {
            return Err("the Secret's key is not a live key of the agent".into());
        }
        let retiring: Vec<secret::RetiringKey> = self
            .secret_annotation(secret::RETIRING_KEYS_ANNOTATION)
            .map(|r| serde_json::from_str(&r).expect("retiring keys parse"))
            .unwrap_or_default();
        for (k, p) in &agent.keys {
            if k.status != KeyStatus::Revoked && p != &key && !retiring.iter().any(|r| r.id == k.id)
            {
                return Err(format!("orphan live key {}", k.id));
            }
        }
        Ok(())
    }

    /// Reconciles until a run performs no Kubernetes write (at most `n` runs), advancing the clock
    /// a little between runs.
    pub fn settle(&mut self, n: usize) -> Vec<Run> {
        let mut runs = Vec::new();
        for _ in 0..n {
            let run = self.run();
            let quiet = run.kube_writes() == 0 && matches!(run.end, End::Settled(_));
            runs.push(run);
            if quiet || self.resource.is_none() {
                break;
            }
            self.advance(SignedDuration::from_secs(1));
        }
        runs
    }

    pub fn condition(&self, type_: &str) -> Option<(String, String)> {
        self.status()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
    }

    pub fn ready(&self) -> Option<(String, String)> {
        self.condition("Ready")
    }

    /// Puts a Secret of the fixture's name that the operator does not own into the world.
    pub fn foreign_secret(&mut self, owner: Option<(&str, &str)>) {
        let refs = owner.map(|(name, uid)| vec![secret::owner_reference(name, uid)]);
        self.secret = Some(Secret {
            metadata: ObjectMeta {
                name: Some("deploy-bot-agent-key".into()),
                namespace: Some("payments".into()),
                resource_version: Some("5".into()),
                owner_references: refs,
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "password".into(),
                k8s_openapi::ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        });
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}
