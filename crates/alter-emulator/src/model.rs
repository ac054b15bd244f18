//! Stored records (what the state file holds: hashes, never plaintext) and the views built from
//! them: wire responses, [`StateSnapshot`], [`AuditEntry`], [`RegistryEntry`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{KeyHash, hex_hash};
use crate::time::{us, us_opt};

/// A JSON object.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
/// Provider → scopes.
pub type Scopes = BTreeMap<String, Vec<String>>;

/// Seconds in a day (activity is counted per UTC day).
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/// `agent` or `service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentType {
    /// An AI agent.
    Agent,
    /// Backend infrastructure.
    Service,
}

/// `active`, `inactive` (suspended), `revoked` (terminal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Working.
    Active,
    /// Suspended: only `/sdk/agents/me` answers its keys.
    Inactive,
    /// Revoked, with every key.
    Revoked,
}

impl AgentStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Inactive => "inactive",
            AgentStatus::Revoked => "revoked",
        }
    }
}

/// `active`, `deprecated`, `revoked`, derived from the timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Authenticates.
    Active,
    /// Authenticates; every response carries `X-Alter-Key-Deprecated: true`.
    Deprecated,
    /// Refused.
    Revoked,
}

fn key_status(deprecated_at: Option<Timestamp>, revoked_at: Option<Timestamp>) -> KeyStatus {
    match (deprecated_at, revoked_at) {
        (_, Some(_)) => KeyStatus::Revoked,
        (Some(_), None) => KeyStatus::Deprecated,
        (None, None) => KeyStatus::Active,
    }
}

// ---------------------------------------------------------------------------------------------
// Stored records
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppRec {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "us")]
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppKeyRec {
    pub id: Uuid,
    pub app_id: Uuid,
    pub label: String,
    pub key_prefix: String,
    #[serde(with = "hex_hash")]
    pub key_hash: KeyHash,
    pub scopes: Vec<String>,
    #[serde(with = "us")]
    pub created_at: Timestamp,
    #[serde(with = "us_opt", default)]
    pub deprecated_at: Option<Timestamp>,
    #[serde(with = "us_opt", default)]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "us_opt", default)]
    pub last_used_at: Option<Timestamp>,
}

impl AppKeyRec {
    pub fn view(&self) -> AppKey {
        AppKey {
            id: self.id.to_string(),
            app_id: self.app_id.to_string(),
            label: self.label.clone(),
            key_prefix: self.key_prefix.clone(),
            scopes: self.scopes.clone(),
            status: key_status(self.deprecated_at, self.revoked_at),
            created_at: self.created_at,
            deprecated_at: self.deprecated_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRec {
    pub id: Uuid,
    pub name: String,
    pub key_prefix: String,
    #[serde(with = "hex_hash")]
    pub key_hash: KeyHash,
    #[serde(with = "us")]
    pub created_at: Timestamp,
    #[serde(with = "us_opt", default)]
    pub deprecated_at: Option<Timestamp>,
    #[serde(with = "us_opt", default)]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "us_opt", default)]
    pub last_used_at: Option<Timestamp>,
}

impl KeyRec {
    pub fn status(&self) -> KeyStatus {
        key_status(self.deprecated_at, self.revoked_at)
    }

    pub fn view(&self) -> Key {
        Key {
            key_id: self.id.to_string(),
            key_prefix: self.key_prefix.clone(),
            name: self.name.clone(),
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
    pub app_id: Uuid,
    /// The registry's key for this agent.
    pub actor_id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    pub agent_type: AgentType,
    pub status: AgentStatus,
    pub scopes: Scopes,
    pub scopes_pending: Option<Scopes>,
    #[serde(with = "us_opt", default)]
    pub scopes_applies_at: Option<Timestamp>,
    pub policy: JsonMap,
    pub metadata: JsonMap,
    pub version: u64,
    #[serde(with = "us")]
    pub created_at: Timestamp,
    #[serde(with = "us")]
    pub updated_at: Timestamp,
    #[serde(with = "us_opt", default)]
    pub revoked_at: Option<Timestamp>,
    pub keys: Vec<KeyRec>,
    /// Keys ever minted (names are `<agent name>-<n>`).
    pub keys_minted: u32,
    /// Calls made with the agent's keys, per UTC day number.
    pub activity: BTreeMap<i64, u64>,
    #[serde(with = "us_opt", default)]
    pub last_activity_at: Option<Timestamp>,
}

impl AgentRec {
    pub fn key(&self, id: Uuid) -> Option<&KeyRec> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn key_mut(&mut self, id: Uuid) -> Option<&mut KeyRec> {
        self.keys.iter_mut().find(|k| k.id == id)
    }

    pub fn non_revoked_keys(&self) -> usize {
        self.keys.iter().filter(|k| k.revoked_at.is_none()).count()
    }

    pub fn last_used_at(&self) -> Option<Timestamp> {
        self.keys.iter().filter_map(|k| k.last_used_at).max()
    }

    /// Applies a staged narrowing whose time has come.
    pub fn settle(&mut self, now: Timestamp) {
        if self.scopes_applies_at.is_some_and(|at| at <= now) {
            if let Some(pending) = self.scopes_pending.take() {
                self.scopes = pending;
            }
            self.scopes_applies_at = None;
        }
    }

    /// The scopes in force and the pending narrowing, as seen at `now`.
    fn scopes_at(&self, now: Timestamp) -> (Scopes, Option<Scopes>, Option<Timestamp>) {
        match (&self.scopes_pending, self.scopes_applies_at) {
            (Some(p), Some(at)) if at <= now => (p.clone(), None, None),
            _ => (
                self.scopes.clone(),
                self.scopes_pending.clone(),
                self.scopes_applies_at,
            ),
        }
    }

    pub fn record_activity(&mut self, now: Timestamp) {
        *self
            .activity
            .entry(now.as_second().div_euclid(DAY))
            .or_default() += 1;
        let horizon = now.as_second().div_euclid(DAY) - 30;
        self.activity.retain(|day, _| *day > horizon);
        self.last_activity_at = Some(now);
    }

    pub fn activity_30d(&self, now: Timestamp) -> u64 {
        let horizon = now.as_second().div_euclid(DAY) - 30;
        self.activity.range(horizon + 1..).map(|(_, n)| n).sum()
    }

    pub fn view(&self, now: Timestamp) -> Agent {
        let (scopes, scopes_pending, scopes_applies_at) = self.scopes_at(now);
        Agent {
            id: self.id.to_string(),
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            agent_type: self.agent_type,
            status: self.status,
            scopes,
            scopes_pending,
            scopes_applies_at,
            policy: self.policy.clone(),
            metadata: self.metadata.clone(),
            rate_limit_per_minute: None,
            version: self.version,
            created_at: self.created_at,
            last_used_at: self.last_used_at(),
            parent_agent_id: None,
            stored_legacy_managed_secret_names: Vec::new(),
        }
    }

    pub fn registry_entry(&self, now: Timestamp) -> RegistryEntry {
        RegistryEntry {
            actor_id: self.actor_id.to_string(),
            agent_id: self.id.to_string(),
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            agent_type: self.agent_type,
            last_activity_at: self.last_activity_at,
            activity_30d: self.activity_30d(now),
        }
    }

    pub fn snapshot(&self, now: Timestamp) -> AgentSnapshot {
        AgentSnapshot {
            app_id: self.app_id.to_string(),
            actor_id: self.actor_id.to_string(),
            updated_at: self.updated_at,
            revoked_at: self.revoked_at,
            activity_30d: self.activity_30d(now),
            last_activity_at: self.last_activity_at,
            keys: self
                .keys
                .iter()
                .map(|k| KeySnapshot {
                    key: k.view(),
                    status: k.status(),
                })
                .collect(),
            agent: self.view(now),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdempotencyRec {
    pub app_id: Uuid,
    pub idempotency_key: String,
    /// The create body as parsed, defaults filled in.
    pub fingerprint: serde_json::Value,
    pub agent_id: Uuid,
    pub key_id: Uuid,
    #[serde(with = "us")]
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// Wire views
// ---------------------------------------------------------------------------------------------

/// A managed agent as the API returns it (the SDK's `AgentInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// UUID.
    pub id: String,
    /// Unique among the app's non-revoked agents.
    pub name: String,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// `agent` / `service`.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Status.
    pub status: AgentStatus,
    /// The allowlist in force.
    pub scopes: Scopes,
    /// A staged narrowing.
    pub scopes_pending: Option<Scopes>,
    /// When it takes over.
    #[serde(with = "us_opt")]
    pub scopes_applies_at: Option<Timestamp>,
    /// Policy block.
    pub policy: JsonMap,
    /// Metadata.
    pub metadata: JsonMap,
    /// Always `null` here.
    pub rate_limit_per_minute: Option<u64>,
    /// Bumped by every change of the agent's row.
    pub version: u64,
    /// Creation time.
    #[serde(with = "us")]
    pub created_at: Timestamp,
    /// Latest use of any key.
    #[serde(with = "us_opt")]
    pub last_used_at: Option<Timestamp>,
    /// Always `null`.
    pub parent_agent_id: Option<String>,
    /// Always empty.
    pub stored_legacy_managed_secret_names: Vec<String>,
}

/// An agent key without its plaintext (the SDK's `AgentKey` model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// UUID.
    pub key_id: String,
    /// The first 16 characters of the plaintext.
    pub key_prefix: String,
    /// `<agent name>-<n>`.
    pub name: String,
    /// Mint time.
    #[serde(with = "us")]
    pub created_at: Timestamp,
    /// Deprecation time.
    #[serde(with = "us_opt")]
    pub deprecated_at: Option<Timestamp>,
    /// Revocation time.
    #[serde(with = "us_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Latest use.
    #[serde(with = "us_opt")]
    pub last_used_at: Option<Timestamp>,
}

/// An agent seen calling, with its activity (`GET /sdk/agent-registry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The registry key.
    pub actor_id: String,
    /// The managed agent.
    pub agent_id: String,
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Type.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Latest call made with one of its keys.
    #[serde(with = "us_opt")]
    pub last_activity_at: Option<Timestamp>,
    /// Calls in the last 30 days.
    pub activity_30d: u64,
}

// ---------------------------------------------------------------------------------------------
// Snapshots (tests, `GET /_admin/state`)
// ---------------------------------------------------------------------------------------------

/// An app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// UUID (what `POST /sdk/identity/resolve` returns as `app_id`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Creation time.
    #[serde(with = "us")]
    pub created_at: Timestamp,
}

/// An app key without plaintext or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKey {
    /// UUID (what audit actors name).
    pub id: String,
    /// Its app.
    pub app_id: String,
    /// Label.
    pub label: String,
    /// First 16 characters.
    pub key_prefix: String,
    /// Permission scopes.
    pub scopes: Vec<String>,
    /// Status.
    pub status: KeyStatus,
    /// Creation time.
    #[serde(with = "us")]
    pub created_at: Timestamp,
    /// Deprecation time.
    #[serde(with = "us_opt")]
    pub deprecated_at: Option<Timestamp>,
    /// Revocation time.
    #[serde(with = "us_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Latest use.
    #[serde(with = "us_opt")]
    pub last_used_at: Option<Timestamp>,
}

/// An agent key with its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySnapshot {
    /// The key as the API shows it.
    #[serde(flatten)]
    pub key: Key,
    /// Derived status.
    pub status: KeyStatus,
}

/// An agent with everything the emulator knows about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// The agent as the API shows it.
    #[serde(flatten)]
    pub agent: Agent,
    /// Its app.
    pub app_id: String,
    /// Its registry actor id.
    pub actor_id: String,
    /// Latest change of its row.
    #[serde(with = "us")]
    pub updated_at: Timestamp,
    /// Revocation time.
    #[serde(with = "us_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Calls in the last 30 days.
    pub activity_30d: u64,
    /// Latest call.
    #[serde(with = "us_opt")]
    pub last_activity_at: Option<Timestamp>,
    /// Every key, in mint order.
    pub keys: Vec<KeySnapshot>,
}

impl AgentSnapshot {
    /// Keys that still authenticate.
    pub fn live_keys(&self) -> impl Iterator<Item = &KeySnapshot> {
        self.keys.iter().filter(|k| k.status != KeyStatus::Revoked)
    }

    /// The key with that id.
    pub fn key(&self, key_id: &str) -> Option<&KeySnapshot> {
        self.keys.iter().find(|k| k.key.key_id == key_id)
    }

    /// Not revoked.
    pub fn is_live(&self) -> bool {
        self.agent.status != AgentStatus::Revoked
    }
}

/// Everything the emulator holds, without plaintext and without hashes, in creation order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Apps.
    pub apps: Vec<App>,
    /// App keys.
    pub app_keys: Vec<AppKey>,
    /// Agents, revoked ones included.
    pub agents: Vec<AgentSnapshot>,
}

impl StateSnapshot {
    /// The agent with that id.
    pub fn agent(&self, id: &str) -> Option<&AgentSnapshot> {
        self.agents.iter().find(|a| a.agent.id == id)
    }

    /// Non-revoked agents.
    pub fn live_agents(&self) -> impl Iterator<Item = &AgentSnapshot> {
        self.agents.iter().filter(|a| a.is_live())
    }

    /// The non-revoked agent of `app_id` with that name.
    pub fn live_agent_named(&self, app_id: &str, name: &str) -> Option<&AgentSnapshot> {
        self.live_agents()
            .find(|a| a.app_id == app_id && a.agent.name == name)
    }

    /// Agents whose metadata has `key` = the string `value`.
    pub fn agents_with_metadata<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a AgentSnapshot> + 'a {
        self.agents
            .iter()
            .filter(move |a| a.agent.metadata.get(key).and_then(|v| v.as_str()) == Some(value))
    }

    /// `(agent, key)` for every key that still authenticates.
    pub fn live_keys(&self) -> impl Iterator<Item = (&AgentSnapshot, &KeySnapshot)> {
        self.agents
            .iter()
            .flat_map(|a| a.live_keys().map(move |k| (a, k)))
    }

    /// The app key with that id.
    pub fn app_key(&self, id: &str) -> Option<&AppKey> {
        self.app_keys.iter().find(|k| k.id == id)
    }
}

/// Who made an audited call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An app key (its id in `actor.id`).
    AppKey,
    /// The emulator's admin.
    Admin,
}

/// `{type, id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `app_key` or `admin`.
    #[serde(rename = "type")]
    pub kind: ActorKind,
    /// The app key's id; `null` for the admin.
    pub id: Option<String>,
}

/// One audit-trail entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, …
    pub seq: u64,
    /// When.
    #[serde(with = "us")]
    pub at: Timestamp,
    /// The app.
    pub app_id: String,
    /// Who.
    pub actor: Actor,
    /// `create_agent`, `update_agent`, `suspend_agent`, `resume_agent`, `delete_agent`,
    /// `mint_key`, `deprecate_key`, `undeprecate_key`, `revoke_key`, `create_app_key`,
    /// `deprecate_app_key`, `undeprecate_app_key`, `revoke_app_key`.
    pub action: String,
    /// The agent, when there is one.
    pub agent_id: Option<String>,
    /// The key (an agent's, or the app key for app-key actions).
    pub key_id: Option<String>,
    /// `success`, or the error code of a refused call.
    pub outcome: String,
}

/// Returned once by [`crate::Emulator::create_app_key`]: the only time the plaintext exists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAppKey {
    /// UUID.
    pub id: String,
    /// Its app.
    pub app_id: String,
    /// Label.
    pub label: String,
    /// The plaintext `alter_rk_…` key.
    pub api_key: String,
    /// First 16 characters.
    pub key_prefix: String,
    /// Permission scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    #[serde(with = "us")]
    pub created_at: Timestamp,
}

impl std::fmt::Debug for CreatedAppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAppKey")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("label", &self.label)
            .field("api_key", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}
