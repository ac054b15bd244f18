//! Stored records (what the state file holds: hashes, never plaintext) and the public views built
//! from them (wire responses, [`StateSnapshot`], [`AuditEntry`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{KeyHash, hex_hash};
use crate::time::{ms, ms_opt};

// ---------------------------------------------------------------------------------------------
// Stored records
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceKeyRec {
    pub id: Uuid,
    pub label: String,
    pub key_prefix: String,
    #[serde(with = "hex_hash")]
    pub key_hash: KeyHash,
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    #[serde(with = "ms_opt", default)]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "ms_opt", default)]
    pub last_used_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRec {
    pub id: Uuid,
    pub name: String,
    pub key_prefix: String,
    #[serde(with = "hex_hash")]
    pub key_hash: KeyHash,
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    #[serde(with = "ms_opt", default)]
    pub deprecated_at: Option<Timestamp>,
    #[serde(with = "ms_opt", default)]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "ms_opt", default)]
    pub last_used_at: Option<Timestamp>,
}

impl KeyRec {
    pub fn status(&self) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.deprecated_at.is_some() {
            KeyStatus::Deprecated
        } else {
            KeyStatus::Active
        }
    }

    pub fn view(&self) -> Key {
        Key {
            key_id: self.id.to_string(),
            key_prefix: self.key_prefix.clone(),
            name: self.name.clone(),
            status: self.status(),
            created_at: self.created_at,
            deprecated_at: self.deprecated_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentRec {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    pub created_by: Uuid,
    #[serde(with = "ms")]
    pub updated_at: Timestamp,
    #[serde(with = "ms_opt", default)]
    pub halted_at: Option<Timestamp>,
    #[serde(with = "ms_opt", default)]
    pub revoked_at: Option<Timestamp>,
    pub version: u64,
    pub keys: Vec<KeyRec>,
    /// How many keys were ever minted for this agent (names default to `<agent name>-<n>`).
    pub keys_minted: u32,
}

impl AgentRec {
    pub fn status(&self) -> AgentStatus {
        if self.revoked_at.is_some() {
            AgentStatus::Revoked
        } else if self.halted_at.is_some() {
            AgentStatus::Halted
        } else {
            AgentStatus::Active
        }
    }

    pub fn last_used_at(&self) -> Option<Timestamp> {
        self.keys.iter().filter_map(|k| k.last_used_at).max()
    }

    pub fn key(&self, id: Uuid) -> Option<&KeyRec> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn key_mut(&mut self, id: Uuid) -> Option<&mut KeyRec> {
        self.keys.iter_mut().find(|k| k.id == id)
    }

    pub fn non_revoked_keys(&self) -> usize {
        self.keys.iter().filter(|k| k.revoked_at.is_none()).count()
    }

    pub fn view(&self) -> Agent {
        Agent {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            capabilities: self.capabilities.clone(),
            metadata: self.metadata.clone(),
            status: self.status(),
            created_at: self.created_at,
            created_by: self.created_by.to_string(),
            updated_at: self.updated_at,
            halted_at: self.halted_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at(),
            version: self.version,
        }
    }

    pub fn snapshot(&self) -> AgentSnapshot {
        AgentSnapshot {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            capabilities: self.capabilities.clone(),
            metadata: self.metadata.clone(),
            status: self.status(),
            created_at: self.created_at,
            created_by: self.created_by.to_string(),
            updated_at: self.updated_at,
            halted_at: self.halted_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at(),
            version: self.version,
            keys: self.keys.iter().map(KeyRec::view).collect(),
        }
    }
}

/// A registration body as compared for idempotent replays: parsed, capabilities as a sorted set,
/// absent fields as their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterFingerprint {
    pub name: String,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdempotencyRec {
    pub idempotency_key: String,
    pub fingerprint: RegisterFingerprint,
    pub agent_id: Uuid,
    pub key_id: Uuid,
    #[serde(with = "ms")]
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// Public views
// ---------------------------------------------------------------------------------------------

/// `active | halted | revoked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May act.
    Active,
    /// Keys still authenticate (`whoami`), actions are refused with 403 `agent_halted`.
    Halted,
    /// Terminal; every key revoked.
    Revoked,
}

/// `active | deprecated | revoked`, derived from the timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Authenticates.
    Active,
    /// Authenticates; responses carry `X-AL-Key-Deprecated: true`.
    Deprecated,
    /// Terminal; gets 401 `key_revoked`.
    Revoked,
}

/// `active | revoked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKeyStatus {
    /// Authenticates.
    Active,
    /// Gets 401 `key_revoked`; the agents it created keep working.
    Revoked,
}

/// An agent as the provisioning API returns it (contract §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// UUID.
    pub id: String,
    /// Unique among non-revoked agents.
    pub name: String,
    /// Free text or `null`.
    pub description: Option<String>,
    /// The action types this agent may execute.
    pub capabilities: Vec<String>,
    /// String map.
    pub metadata: BTreeMap<String, String>,
    /// Derived from `halted_at` / `revoked_at`.
    pub status: AgentStatus,
    /// Creation time.
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    /// Id of the service key that registered the agent.
    pub created_by: String,
    /// Last change of the agent's own fields.
    #[serde(with = "ms")]
    pub updated_at: Timestamp,
    /// When halted (cleared by resume).
    #[serde(with = "ms_opt")]
    pub halted_at: Option<Timestamp>,
    /// When revoked.
    #[serde(with = "ms_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Latest `last_used_at` of the agent's keys.
    #[serde(with = "ms_opt")]
    pub last_used_at: Option<Timestamp>,
    /// Bumped by every change of the agent's own fields.
    pub version: u64,
}

/// An agent key without its plaintext (contract §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// UUID.
    pub key_id: String,
    /// First 8 characters of the key body (after the scheme).
    pub key_prefix: String,
    /// Label given at mint time, or `<agent name>-<n>`.
    pub name: String,
    /// Derived from the timestamps.
    pub status: KeyStatus,
    /// Mint time.
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    /// When deprecated (cleared by undeprecate).
    #[serde(with = "ms_opt")]
    pub deprecated_at: Option<Timestamp>,
    /// When revoked.
    #[serde(with = "ms_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Last request authenticated with this key.
    #[serde(with = "ms_opt")]
    pub last_used_at: Option<Timestamp>,
}

/// A service key without plaintext or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceKey {
    /// UUID (what agents' `created_by` and audit actors refer to).
    pub id: String,
    /// Label given at creation.
    pub label: String,
    /// First 8 characters of the key body.
    pub key_prefix: String,
    /// `active | revoked`.
    pub status: ServiceKeyStatus,
    /// Creation time.
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    /// When revoked.
    #[serde(with = "ms_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Last request authenticated with this key.
    #[serde(with = "ms_opt")]
    pub last_used_at: Option<Timestamp>,
}

impl ServiceKeyRec {
    pub fn view(&self) -> ServiceKey {
        ServiceKey {
            id: self.id.to_string(),
            label: self.label.clone(),
            key_prefix: self.key_prefix.clone(),
            status: if self.revoked_at.is_some() {
                ServiceKeyStatus::Revoked
            } else {
                ServiceKeyStatus::Active
            },
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

/// An agent with all its keys, as [`StateSnapshot`] and `GET /_admin/state` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Status.
    pub status: AgentStatus,
    /// Creation time.
    #[serde(with = "ms")]
    pub created_at: Timestamp,
    /// Service key id that registered it.
    pub created_by: String,
    /// Last change.
    #[serde(with = "ms")]
    pub updated_at: Timestamp,
    /// Halt time.
    #[serde(with = "ms_opt")]
    pub halted_at: Option<Timestamp>,
    /// Revocation time.
    #[serde(with = "ms_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Latest use of any key.
    #[serde(with = "ms_opt")]
    pub last_used_at: Option<Timestamp>,
    /// Version.
    pub version: u64,
    /// Every key ever minted, in mint order, revoked ones included.
    pub keys: Vec<Key>,
}

impl AgentSnapshot {
    /// Keys that still authenticate (active or deprecated).
    pub fn live_keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(|k| k.status != KeyStatus::Revoked)
    }

    /// Keys whose status is exactly `active`.
    pub fn active_keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(|k| k.status == KeyStatus::Active)
    }

    /// The key with that id.
    pub fn key(&self, key_id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// Whether the agent is not revoked.
    pub fn is_live(&self) -> bool {
        self.status != AgentStatus::Revoked
    }
}

/// Everything the emulator holds, without plaintext and without hashes. Agents and service keys are
/// in creation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// The workspace id (`org_id` in `whoami`).
    pub org_id: String,
    /// Every service key.
    pub service_keys: Vec<ServiceKey>,
    /// Every agent, revoked ones included, with its keys.
    pub agents: Vec<AgentSnapshot>,
}

impl StateSnapshot {
    /// The agent with that id.
    pub fn agent(&self, id: &str) -> Option<&AgentSnapshot> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// Non-revoked agents.
    pub fn live_agents(&self) -> impl Iterator<Item = &AgentSnapshot> {
        self.agents.iter().filter(|a| a.is_live())
    }

    /// Every agent (revoked ones included) with that name.
    pub fn agents_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AgentSnapshot> + 'a {
        self.agents.iter().filter(move |a| a.name == name)
    }

    /// The non-revoked agent with that name (there is at most one).
    pub fn live_agent_named(&self, name: &str) -> Option<&AgentSnapshot> {
        self.agents.iter().find(|a| a.is_live() && a.name == name)
    }

    /// Agents (revoked ones included) whose metadata has `key` = `value`, e.g. `("k8s.uid", uid)`.
    pub fn agents_with_metadata<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a AgentSnapshot> + 'a {
        self.agents
            .iter()
            .filter(move |a| a.metadata.get(key).map(String::as_str) == Some(value))
    }

    /// `(agent, key)` for every key that still authenticates, across all agents.
    pub fn live_keys(&self) -> impl Iterator<Item = (&AgentSnapshot, &Key)> {
        self.agents
            .iter()
            .flat_map(|a| a.live_keys().map(move |k| (a, k)))
    }

    /// The service key with that id.
    pub fn service_key(&self, id: &str) -> Option<&ServiceKey> {
        self.service_keys.iter().find(|s| s.id == id)
    }
}

/// Who made an audited call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A service key (its id is in `actor.id`).
    ServiceKey,
    /// The emulator's admin (admin API or in-process library calls).
    Admin,
}

/// `{type, id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `service_key` or `admin`.
    #[serde(rename = "type")]
    pub kind: ActorKind,
    /// The service key id; `null` for the admin.
    pub id: Option<String>,
}

/// One audit-trail entry (contract §2.5, §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing from 1; `GET /_admin/audit?since=<seq>` returns entries after it.
    pub seq: u64,
    /// When.
    #[serde(with = "ms")]
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// Contract operation name (`register`, `revoke_key`, …) or `create_service_key` /
    /// `revoke_service_key`.
    pub operation: String,
    /// The agent concerned, when known.
    pub agent_id: Option<String>,
    /// The key concerned (agent key, or service key for the service-key operations), when known.
    pub key_id: Option<String>,
    /// `success`, or the error code the call was refused with.
    pub outcome: String,
}

/// Returned once by [`crate::Emulator::create_service_key`]: the only time the plaintext exists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedServiceKey {
    /// UUID.
    pub id: String,
    /// The plaintext `al_svc_…` key.
    pub api_key: String,
    /// First 8 characters of the body.
    pub key_prefix: String,
    /// Label.
    pub label: String,
    /// Creation time.
    #[serde(with = "ms")]
    pub created_at: Timestamp,
}

impl std::fmt::Debug for CreatedServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedServiceKey")
            .field("id", &self.id)
            .field("api_key", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("label", &self.label)
            .finish()
    }
}
