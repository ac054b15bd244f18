//! What the planner knows: [`Observed`] — the resource, its Secret, what AgentLattice said in this
//! reconcile ([`RemoteFacts`]) and what the reconcile already did ([`Progress`]) — and how the
//! executor folds an effect's result into it ([`Observed::record`]).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::{Effect, ErrorClass, META_UID};
use crate::crd::LatticeAgent;
use crate::secret::SecretView;

/// Operator settings the planner needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The backend's base URL (written to the Secret's base URL field): the default
    /// provisioner's, replaced by the agent's provisioner's when it has one.
    pub base_url: String,
    /// The backend the agent lives at (the default provisioner's is AgentLattice), which names
    /// the Secret's fields.
    pub backend: BackendKind,
    /// Written to agent metadata as `k8s.cluster` when set.
    pub cluster_name: Option<String>,
    /// Drift reads are due this long after the last one; the longest requeue.
    pub resync_interval: SignedDuration,
    /// Requeue after a missing or rejected service key.
    pub service_key_retry: SignedDuration,
    /// How the operator treats the workloads that read an agent's key.
    pub consumers: ConsumerSettings,
    /// The policy of the operator-level (default) provisioner (`--default-allowed-capabilities`).
    pub default_policy: super::policy::Policy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            base_url: "https://www.agentlattice.io".to_owned(),
            backend: BackendKind::AgentLattice,
            cluster_name: None,
            resync_interval: SignedDuration::from_mins(10),
            service_key_retry: SignedDuration::from_mins(5),
            consumers: ConsumerSettings::default(),
            default_policy: super::policy::Policy::any_capability(),
        }
    }
}

/// Which service an agent lives at: its provisioner's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// AgentLattice (`/api/agents`), with a service key.
    #[default]
    AgentLattice,
    /// Alter's managed agents (`/sdk/agents`), with an app key (docs/alter.md).
    Alter,
}

impl BackendKind {
    /// The backend's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::AgentLattice => "AgentLattice",
            BackendKind::Alter => "Alter",
        }
    }

    /// The names of the Secret's data fields for an agent at this backend.
    pub fn secret_fields(self) -> crate::secret::SecretFields {
        match self {
            BackendKind::AgentLattice => crate::secret::AGENTLATTICE_FIELDS,
            BackendKind::Alter => crate::secret::ALTER_FIELDS,
        }
    }
}

impl Settings {
    /// These settings for an agent of `provisioner`: the Secret's base URL is the URL of the
    /// provisioner the agent was registered with, and its fields are named as that
    /// provisioner's backend names them.
    pub fn for_provisioner(&self, provisioner: &super::policy::Resolution) -> Settings {
        let mut settings = self.clone();
        if let Some(view) = provisioner.view() {
            settings.base_url = view.base_url.clone();
            settings.backend = view.backend;
        }
        settings
    }
}

/// How the operator treats the workloads that read an agent's key (docs/workloads.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Whether the workloads are watched (`--workloads`); when not, nothing is known of
    /// consumers, and old keys are retired by the grace periods alone.
    pub tracked: bool,
    /// Whether the operator may restart workloads at all (`--workload-restarts`); when not, a
    /// LatticeAgent's `restartOnRotation` has no effect and its environment consumers keep their
    /// key until something else restarts them.
    pub restarts: bool,
    /// A workload is restarted at most once per this interval: the rotations within it are served
    /// by one restart, for the newest key.
    pub restart_min_interval: SignedDuration,
    /// How long after a Secret write every mounted copy of it is up to date (the kubelet's sync
    /// period plus its cache): a file consumer has the new key once this long has passed.
    pub kubelet_sync_period: SignedDuration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            tracked: true,
            restarts: true,
            restart_min_interval: SignedDuration::from_mins(1),
            kubelet_sync_period: SignedDuration::from_mins(2),
        }
    }
}

/// A workload of the resource's namespace whose pod template reads the resource's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
    /// How its pods read the key.
    pub reads: KeySource,
    /// When the workload was created.
    pub created_at: Option<Timestamp>,
    /// The key id the operator last restarted it for (its pod template's
    /// `agentlattice.io/restarted-for`), and when (`agentlattice.io/restarted-at`).
    pub restarted_for: Option<(String, Option<Timestamp>)>,
    /// `kubectl rollout restart`'s `kubectl.kubernetes.io/restartedAt` on its pod template.
    pub restarted_at: Option<Timestamp>,
    /// Where its latest rollout stands.
    pub rollout: Rollout,
}

/// A workload kind the operator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }

    /// Every kind.
    pub const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
    ];
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a consumer's pods read the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySource {
    /// An environment variable (`env[].valueFrom.secretKeyRef`, `envFrom`): fixed when the
    /// container starts; only a restart brings a new key.
    Environment,
    /// A mounted Secret file (a `secret` or `projected` volume): the kubelet refreshes it within
    /// its sync period.
    File,
    /// A mounted Secret file through `subPath`: never refreshed, so it behaves like the
    /// environment.
    SubPathFile,
}

impl KeySource {
    /// Whether pods only get a new key by being replaced.
    pub fn needs_restart(self) -> bool {
        !matches!(self, KeySource::File)
    }
}

/// Where a workload's latest rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the current pod template and is available.
    Complete,
    /// Replicas of an older template remain, or new ones are not available yet.
    InProgress,
    /// The rollout cannot finish (`ProgressDeadlineExceeded`).
    Stuck,
}

/// Everything a planning decision may depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The clock, read once per reconcile by the executor.
    pub now: Timestamp,
    /// Operator settings.
    pub settings: Settings,
    /// The resource (with its status as last written).
    pub resource: LatticeAgent,
    /// The Secret it names.
    pub secret: SecretView,
    /// An older `LatticeAgent` naming the same Secret (see [`super::older_claimant`]).
    pub older_claimant: Option<String>,
    /// What is known of AgentLattice in this reconcile (nothing at the start).
    pub remote: RemoteFacts,
    /// What this reconcile already did.
    pub progress: Progress,
    /// The failure that ended this reconcile's work, if any.
    pub failure: Option<Failure>,
    /// When this process last read (or registered) the agent; kept by the process between
    /// reconciles, `None` after a restart.
    pub last_remote_check: Option<Timestamp>,
    /// The object does not match the LatticeAgent type: what is wrong (without its values). Its
    /// `resource` then has the stored metadata and status and a default spec no decision reads.
    pub malformed: Option<String>,
    /// The workloads that read the resource's Secret, by kind and name.
    pub consumers: Vec<Consumer>,
    /// The provisioner the resource names (the default one unless `spec.provisionerRef`), as
    /// resolved by observe.
    pub provisioner: super::policy::Resolution,
}

impl Observed {
    /// The state at the start of a reconcile.
    pub fn new(
        now: Timestamp,
        settings: Settings,
        resource: LatticeAgent,
        secret: SecretView,
    ) -> Observed {
        Observed {
            now,
            resource,
            secret,
            older_claimant: None,
            remote: RemoteFacts::default(),
            progress: Progress::default(),
            failure: None,
            last_remote_check: None,
            malformed: None,
            consumers: Vec::new(),
            provisioner: super::policy::Resolution::default_provisioner(
                settings.default_policy.clone(),
                &settings.base_url,
            ),
            settings,
        }
    }
}

/// What is known of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteAgent {
    /// Read (or written) in this reconcile.
    Found(AgentView),
    /// 404 `agent_not_found`.
    NotFound,
    /// 409 `agent_revoked`.
    Revoked,
}

impl RemoteAgent {
    /// Whether the agent is revoked or does not exist.
    pub fn is_gone(&self) -> bool {
        match self {
            RemoteAgent::Found(view) => view.status == super::AgentStatus::Revoked,
            RemoteAgent::NotFound | RemoteAgent::Revoked => true,
        }
    }
}

/// AgentLattice knowledge gathered in this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteFacts {
    /// Agents by id.
    pub agents: BTreeMap<String, RemoteAgent>,
    /// Keys by agent id, then key id (from lists and from single-key responses).
    pub keys: BTreeMap<String, BTreeMap<String, KeyView>>,
    /// Agents whose complete key list was fetched.
    pub listed: BTreeSet<String>,
    /// Keys known to be revoked or absent from an error response (no key body to keep).
    pub gone_keys: BTreeSet<String>,
}

/// What this reconcile already did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The registration response.
    pub registration: Option<RegisterOutcome>,
    /// Agents found by name.
    pub found: Option<Vec<AgentView>>,
    /// A key minted in this reconcile: (agent id, key). The executor holds its plaintext.
    pub minted: Option<(String, MintedKey)>,
    /// This reconcile wrote a new mint intent (on the Secret's record or on status).
    pub intent_written: bool,
    /// This reconcile wrote the Secret.
    pub secret_written: bool,
}

/// A failed effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// [`Effect::kind`] of the effect that failed.
    pub effect: &'static str,
    /// Its class.
    pub class: ErrorClass,
    /// A short, secret-free message.
    pub message: String,
}

/// The successful result of an action, as the executor reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `Register`.
    Registered(RegisterOutcome),
    /// `FindAgents`.
    Found(Vec<AgentView>),
    /// `FetchAgent`, `UpdateAgent`, `HaltAgent`, `ResumeAgent`, `RevokeAgent`.
    Agent(AgentView),
    /// `FetchKeys`.
    Keys(Vec<KeyView>),
    /// `DeprecateKey`, `RevokeKey`.
    Key(KeyView),
    /// `MintKey`.
    Minted(MintedKey),
    /// `WriteSecret`, `ReleaseSecret`: the Secret as the API server returned it.
    Secret(SecretView),
    /// `WriteStatus`, `RemoveFinalizer`: the resource as the API server returned it.
    Resource(Box<LatticeAgent>),
    /// `RestartConsumer`: the restart began at this time.
    Restarted(Timestamp),
}

impl Observed {
    /// Folds the result of `action` into what is known. Errors that are knowledge (a 404 or
    /// `agent_revoked` for an agent, a 404 or `key_revoked` for a key) become knowledge; any other
    /// error is recorded as [`Observed::failure`], which ends the reconcile's work.
    pub fn record(&mut self, action: &Effect, result: Result<Outcome, Failure>) {
        match result {
            Ok(outcome) => self.record_success(action, outcome),
            Err(failure) => self.record_failure(action, failure),
        }
    }

    fn record_success(&mut self, action: &Effect, outcome: Outcome) {
        match (action, outcome) {
            (Effect::Register { .. }, Outcome::Registered(registration)) => {
                if let RegisterOutcome::Created { agent, key } = &registration {
                    self.remember_key(
                        &agent.id,
                        KeyView {
                            id: key.id.clone(),
                            prefix: key.prefix.clone(),
                            status: KeyStatus::Active,
                            created_at: key.created_at,
                            deprecated_at: None,
                            revoked_at: None,
                            last_used_at: None,
                        },
                    );
                    self.remote
                        .agents
                        .insert(agent.id.clone(), RemoteAgent::Found(agent.clone()));
                }
                self.progress.registration = Some(registration);
            }
            (Effect::FindAgents { .. }, Outcome::Found(agents)) => {
                for agent in &agents {
                    self.remote
                        .agents
                        .entry(agent.id.clone())
                        .or_insert_with(|| RemoteAgent::Found(agent.clone()));
                }
                self.progress.found = Some(agents);
            }
            (
                Effect::FetchAgent { .. }
                | Effect::UpdateAgent { .. }
                | Effect::HaltAgent { .. }
                | Effect::ResumeAgent { .. }
                | Effect::RevokeAgent { .. },
                Outcome::Agent(agent),
            ) => {
                self.remote
                    .agents
                    .insert(agent.id.clone(), RemoteAgent::Found(agent));
            }
            (Effect::FetchKeys { agent_id }, Outcome::Keys(keys)) => {
                self.remote.keys.insert(
                    agent_id.clone(),
                    keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
                );
                self.remote.listed.insert(agent_id.clone());
            }
            (
                Effect::DeprecateKey { agent_id, .. } | Effect::RevokeKey { agent_id, .. },
                Outcome::Key(key),
            ) => self.remember_key(agent_id, key),
            (Effect::MintKey { agent_id, .. }, Outcome::Minted(key)) => {
                self.remember_key(
                    agent_id,
                    KeyView {
                        id: key.id.clone(),
                        prefix: key.prefix.clone(),
                        status: KeyStatus::Active,
                        created_at: key.created_at,
                        deprecated_at: None,
                        revoked_at: None,
                        last_used_at: None,
                    },
                );
                self.progress.minted = Some((agent_id.clone(), key));
            }
            (Effect::WriteSecret(write), Outcome::Secret(view)) => {
                self.note_intent(write.desired.record.mint_started_at);
                self.secret = view;
                self.progress.secret_written = true;
            }
            (Effect::ReleaseSecret { .. }, Outcome::Secret(view)) => self.secret = view,
            (Effect::WriteStatus(written), Outcome::Resource(resource)) => {
                self.note_intent(written.mint_started_at);
                self.resource = *resource;
            }
            (Effect::RemoveFinalizer, Outcome::Resource(resource)) => self.resource = *resource,
            (
                Effect::RestartConsumer {
                    kind, name, key_id, ..
                },
                Outcome::Restarted(at),
            ) => {
                if let Some(c) = self
                    .consumers
                    .iter_mut()
                    .find(|c| c.kind == *kind && &c.name == name)
                {
                    c.restarted_for = Some((key_id.clone(), Some(at)));
                    c.rollout = Rollout::InProgress;
                }
            }
            (action, _) => {
                self.failure = Some(Failure {
                    effect: action.kind(),
                    class: ErrorClass::Transient,
                    message: format!("internal error: unexpected outcome for {}", action.kind()),
                });
            }
        }
    }

    fn record_failure(&mut self, action: &Effect, failure: Failure) {
        let agent_id = match action {
            Effect::FetchAgent { agent_id }
            | Effect::FetchKeys { agent_id }
            | Effect::UpdateAgent { agent_id, .. }
            | Effect::HaltAgent { agent_id }
            | Effect::ResumeAgent { agent_id }
            | Effect::RevokeAgent { agent_id }
            | Effect::MintKey { agent_id, .. }
            | Effect::DeprecateKey { agent_id, .. }
            | Effect::RevokeKey { agent_id, .. } => Some(agent_id),
            _ => None,
        };
        let key_id = match action {
            Effect::DeprecateKey { key_id, .. } | Effect::RevokeKey { key_id, .. } => Some(key_id),
            _ => None,
        };
        match (&failure.class, agent_id, key_id) {
            (ErrorClass::AgentNotFound, Some(agent_id), _) => {
                self.remote
                    .agents
                    .insert(agent_id.clone(), RemoteAgent::NotFound);
            }
            (ErrorClass::AgentRevoked, Some(agent_id), _) => {
                self.remote
                    .agents
                    .insert(agent_id.clone(), RemoteAgent::Revoked);
            }
            (ErrorClass::KeyNotFound | ErrorClass::KeyRevoked, _, Some(key_id)) => {
                self.remote.gone_keys.insert(key_id.clone());
            }
            _ => self.failure = Some(failure),
        }
    }

    /// A write carrying a mint intent that neither status nor the record held before is this
    /// reconcile's own intent; copying an existing one (status recovered from the record, the
    /// record taking over status's) is not.
    fn note_intent(&mut self, written: Option<Timestamp>) {
        let Some(written) = written else {
            return;
        };
        let on_status = self
            .resource
            .status
            .as_ref()
            .and_then(|s| s.mint_started_at);
        let on_record = self
            .secret
            .present()
            .and_then(|s| s.decoded.record.mint_started_at);
        if on_status != Some(written) && on_record != Some(written) {
            self.progress.intent_written = true;
        }
    }

    fn remember_key(&mut self, agent_id: &str, key: KeyView) {
        self.remote
            .keys
            .entry(agent_id.to_owned())
            .or_default()
            .insert(key.id.clone(), key);
    }
}

/// The planner's view of an AgentLattice agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// Capabilities (a set; compared sorted).
    pub capabilities: Vec<String>,
    /// Description (`null` on the wire is `None`).
    pub description: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// The id of the service key that registered it (AgentLattice's `created_by`).
    pub created_by: Option<String>,
}

impl AgentView {
    /// Whether the agent's metadata links it to the resource with this uid.
    pub fn belongs_to(&self, uid: &str) -> bool {
        self.metadata.get(META_UID).map(String::as_str) == Some(uid)
    }
}

/// An agent's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentStatus {
    /// Working.
    Active,
    /// Halted: its keys authenticate but cannot act.
    Halted,
    /// Revoked: terminal.
    Revoked,
}

/// The planner's view of an agent key (never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// Lifecycle status.
    pub status: KeyStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Deprecation time.
    pub deprecated_at: Option<Timestamp>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
    /// Last authenticated use.
    pub last_used_at: Option<Timestamp>,
}

/// A key's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Usable, flagged as deprecated.
    Deprecated,
    /// Unusable: terminal.
    Revoked,
}

/// A key freshly issued by AgentLattice (by registration or mint). The executor holds the
/// plaintext; the planner only its description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedKey {
    /// Key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// [`crate::secret::key_digest`] of the key, computed by the executor on receipt (a digest is
    /// not key material; it lets the record describe the key the Secret is about to hold).
    pub sha256: String,
}

/// The result of `Register`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 201: a new agent; the executor holds the key.
    Created {
        /// The agent as returned.
        agent: AgentView,
        /// Its first key.
        key: MintedKey,
    },
    /// 200 replay: the agent of an earlier attempt; its key is gone (`api_key: null`).
    Replayed {
        /// Agent id.
        agent_id: String,
        /// Id of the key minted by the original registration (never delivered).
        key_id: String,
    },
    /// 409 `agent_name_exists`.
    NameTaken,
    /// 422 `idempotency_key_body_mismatch`.
    IdempotencyMismatch,
    /// 409 `idempotency_key_agent_revoked`.
    AgentRevoked,
}
