//! What the planner asks for: the [`Step`] of a reconcile — perform one [`Effect`] (with the
//! [`Event`]s to emit once it succeeded) or settle ([`Settled`]: when to come back, and the
//! [`Failure`] that ended the work, classified by [`ErrorClass`]).

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{Failure, Settings, WorkloadKind};
use crate::crd::LatticeAgentStatus;
use crate::secret::DesiredSecret;

/// The body of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// Agent name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Capabilities, sorted.
    pub capabilities: Vec<String>,
    /// `k8s.namespace`, `k8s.name`, `k8s.uid` and `k8s.cluster` when configured.
    pub metadata: BTreeMap<String, String>,
}

/// One step of work for the executor.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// `POST /api/agents/register` with `Idempotency-Key`.
    Register {
        /// The body.
        request: RegisterRequest,
        /// The `Idempotency-Key` header.
        idempotency_key: String,
    },
    /// `GET /api/agents?name=` (non-revoked agents of that name).
    FindAgents {
        /// Agent name.
        name: String,
    },
    /// `GET /api/agents/{id}` (the drift read).
    FetchAgent {
        /// Agent id.
        agent_id: String,
    },
    /// `GET /api/agents/{id}/keys`.
    FetchKeys {
        /// Agent id.
        agent_id: String,
    },
    /// `PATCH /api/agents/{id}` with the fields that differ.
    UpdateAgent {
        /// Agent id.
        agent_id: String,
        /// New capabilities, when they differ.
        capabilities: Option<Vec<String>>,
        /// New description (`Some(None)` clears it), when it differs.
        description: Option<Option<String>>,
    },
    /// `POST /api/agents/{id}/halt`.
    HaltAgent {
        /// Agent id.
        agent_id: String,
    },
    /// `POST /api/agents/{id}/resume`.
    ResumeAgent {
        /// Agent id.
        agent_id: String,
    },
    /// `DELETE /api/agents/{id}`.
    RevokeAgent {
        /// Agent id.
        agent_id: String,
    },
    /// `POST /api/agents/{id}/keys`. Not idempotent: preceded by a `mintStartedAt` status write.
    MintKey {
        /// Agent id.
        agent_id: String,
        /// A label for the key.
        name: String,
    },
    /// `PATCH /api/agents/{id}/keys/{key_id}/deprecate`.
    DeprecateKey {
        /// Agent id.
        agent_id: String,
        /// Key id.
        key_id: String,
    },
    /// `DELETE /api/agents/{id}/keys/{key_id}` (never with `force`: the Secret always holds another
    /// live key when the planner revokes one).
    RevokeKey {
        /// Agent id.
        agent_id: String,
        /// Key id.
        key_id: String,
    },
    /// Create or patch the Secret.
    WriteSecret(Box<SecretWrite>),
    /// Remove this resource's owner reference from the Secret (`deletionPolicy: Retain`).
    ReleaseSecret {
        /// Secret name.
        name: String,
        /// Precondition.
        resource_version: Option<String>,
        /// The owner references the Secret keeps.
        owner_references: Vec<OwnerReference>,
    },
    /// Replace the status (precondition: the resource's `resourceVersion`).
    WriteStatus(Box<LatticeAgentStatus>),
    /// Remove the operator's finalizer: deletion cleanup is complete and the resource may go.
    RemoveFinalizer,
    /// Restart a consumer whose pods cannot see a new key otherwise (environment, `subPath`): a
    /// rolling restart through its pod template's `agentlattice.io/restarted-for` (the key id)
    /// and `agentlattice.io/restarted-at` annotations. Idempotent: for the same key, the same
    /// template.
    RestartConsumer {
        /// Its kind.
        kind: WorkloadKind,
        /// Its name.
        name: String,
        /// The key it is restarted for.
        key_id: String,
        /// The restart's time, derived from durable facts (the same decision taken twice writes
        /// the same template).
        at: jiff::Timestamp,
    },
}

impl Effect {
    /// A stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Register { .. } => "Register",
            Effect::FindAgents { .. } => "FindAgents",
            Effect::FetchAgent { .. } => "FetchAgent",
            Effect::FetchKeys { .. } => "FetchKeys",
            Effect::UpdateAgent { .. } => "UpdateAgent",
            Effect::HaltAgent { .. } => "HaltAgent",
            Effect::ResumeAgent { .. } => "ResumeAgent",
            Effect::RevokeAgent { .. } => "RevokeAgent",
            Effect::MintKey { .. } => "MintKey",
            Effect::DeprecateKey { .. } => "DeprecateKey",
            Effect::RevokeKey { .. } => "RevokeKey",
            Effect::WriteSecret(_) => "WriteSecret",
            Effect::ReleaseSecret { .. } => "ReleaseSecret",
            Effect::WriteStatus(_) => "WriteStatus",
            Effect::RemoveFinalizer => "RemoveFinalizer",
            Effect::RestartConsumer { .. } => "RestartConsumer",
        }
    }

    /// Whether the action calls AgentLattice (as opposed to the Kubernetes API).
    pub fn is_remote(&self) -> bool {
        !matches!(
            self,
            Effect::WriteSecret(_)
                | Effect::ReleaseSecret { .. }
                | Effect::WriteStatus(_)
                | Effect::RemoveFinalizer
                | Effect::RestartConsumer { .. }
        )
    }
}

/// A Secret write.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretWrite {
    /// The Secret wanted.
    pub desired: DesiredSecret,
    /// Which key goes into `AL_API_KEY`.
    pub key: KeyWrite,
    /// Create, or patch with a resource-version precondition.
    pub precondition: Precondition,
    /// Why (for logs and metrics).
    pub purpose: WritePurpose,
}

/// The key written to `AL_API_KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyWrite {
    /// The key the executor received in this reconcile (registration or mint) with this id.
    Fresh {
        /// Key id.
        key_id: String,
    },
    /// Leave `AL_API_KEY` as it is.
    Keep,
}

/// How the Secret is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Create; fails if it exists.
    Create,
    /// Merge-patch the existing Secret with this resource version (`None` only when the cache has
    /// none, which the API server never sends).
    Update {
        /// Precondition.
        resource_version: Option<String>,
    },
}

/// Why the Secret is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePurpose {
    /// First key of a new agent.
    Register,
    /// A rotation (annotation, schedule or compromise).
    Rotate,
    /// The key was lost (Secret deleted, key edited, registration replayed).
    Restore,
    /// Retired keys dropped from the record.
    Retire,
    /// Non-key fields repaired.
    Repair,
    /// The mint intent set (before a mint) or lifted (after the sweep).
    Intent,
}

/// An event to emit once the action it comes with has succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason (CamelCase).
    pub reason: &'static str,
    /// A short, secret-free note.
    pub note: String,
}

/// `events.k8s.io/v1` event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl Event {
    pub(super) fn normal(reason: &'static str, note: impl Into<String>) -> Event {
        Event {
            type_: EventType::Normal,
            reason,
            note: note.into(),
        }
    }

    pub(super) fn warning(reason: &'static str, note: impl Into<String>) -> Event {
        Event {
            type_: EventType::Warning,
            reason,
            note: note.into(),
        }
    }
}

/// When to reconcile again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After this long.
    After(SignedDuration),
    /// Per-object exponential backoff with jitter, at least this long (`Retry-After`).
    Backoff {
        /// Lower bound.
        at_least: Option<SignedDuration>,
    },
    /// Only when something changes (the watch brings it).
    OnChange,
}

/// The end of a reconcile's work: the planner has nothing more to do now.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// When to come back.
    pub requeue: Requeue,
    /// The failure that ended the reconcile (reported as a `ReconcileError` Warning event and
    /// counted); `None` for success and for states that wait for a human.
    pub failure: Option<Failure>,
    /// Whether the agent was read from (or written to) AgentLattice in this reconcile: the
    /// process remembers `now` as the last remote check, which makes the next drift read due one
    /// resync interval later (design §6).
    pub remote_checked: bool,
}

/// What the executor does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Perform the effect; on success emit the events and record the outcome.
    Perform {
        /// The effect.
        effect: Effect,
        /// Events to emit once it succeeded.
        events: Vec<Event>,
    },
    /// Stop: nothing more to do in this reconcile.
    Settle(Settled),
}

/// A class of failure, as the error policy sees it (design §5). The executor maps its client and
/// Kubernetes errors to these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The service-key Secret or its field is missing.
    ServiceKeyMissing,
    /// AgentLattice rejected the service key (401/403).
    ServiceKeyRejected,
    /// 429, with `Retry-After`.
    RateLimited {
        /// `Retry-After`.
        retry_after: Option<SignedDuration>,
    },
    /// 503, 5xx, timeouts, transport errors.
    Unavailable {
        /// `Retry-After`, when sent.
        retry_after: Option<SignedDuration>,
    },
    /// Anything else worth retrying with backoff (Kubernetes API errors, write conflicts).
    Transient,
    /// 409 `agent_revoked`.
    AgentRevoked,
    /// 404 `agent_not_found`.
    AgentNotFound,
    /// 404 `key_not_found`.
    KeyNotFound,
    /// 409 `key_revoked` (deprecating a revoked key).
    KeyRevoked,
    /// Another 409 (e.g. `agent_key_limit_reached`, `last_active_key`), with its code.
    Conflict(String),
    /// 400/422: a request the operator should never have sent.
    Invalid(String),
}

impl ErrorClass {
    /// The condition reason / event note category (stable; CamelCase).
    pub fn category(&self) -> &'static str {
        match self {
            ErrorClass::ServiceKeyMissing => "ServiceKeyMissing",
            ErrorClass::ServiceKeyRejected => "ServiceKeyRejected",
            ErrorClass::RateLimited { .. } => "RateLimited",
            ErrorClass::Unavailable { .. } => "AgentLatticeUnavailable",
            ErrorClass::Transient => "TransientError",
            ErrorClass::AgentRevoked | ErrorClass::AgentNotFound => "AgentRevokedExternally",
            ErrorClass::KeyNotFound | ErrorClass::KeyRevoked => "KeyGone",
            ErrorClass::Conflict(_) => "AgentLatticeConflict",
            ErrorClass::Invalid(_) => "InvalidRequest",
        }
    }

    /// How to requeue after a reconcile that ended with this failure.
    pub fn requeue(&self, settings: &Settings) -> Requeue {
        match self {
            ErrorClass::ServiceKeyMissing | ErrorClass::ServiceKeyRejected => {
                Requeue::After(settings.service_key_retry)
            }
            ErrorClass::RateLimited { retry_after } | ErrorClass::Unavailable { retry_after } => {
                Requeue::Backoff {
                    at_least: *retry_after,
                }
            }
            ErrorClass::Transient
            | ErrorClass::AgentRevoked
            | ErrorClass::AgentNotFound
            | ErrorClass::KeyNotFound
            | ErrorClass::KeyRevoked => Requeue::Backoff { at_least: None },
            // Retrying at once cannot help; a spec change or the resync may.
            ErrorClass::Conflict(_) | ErrorClass::Invalid(_) => {
                Requeue::After(settings.resync_interval)
            }
        }
    }
}
