//! Request and response types, written from `alter-sdk==0.29.0` (`alter_sdk/models.py`,
//! `alter_sdk/agents.py`) and, for the routes the SDK does not have, from `docs/alter.md`. They are
//! this crate's own: the emulator has its own, so a wire mismatch is a failing test.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::key::AgentKey;

/// A JSON object (`metadata`, `policy`, response `scopes`).
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// An agent's scope allowlist: provider id → scopes, e.g. `{"slack": ["channels:read"]}`.
pub type Scopes = BTreeMap<String, Vec<String>>;

/// Largest compact JSON of a scope allowlist the SDK sends (12 KiB).
const MAX_SCOPES_JSON: usize = 12 * 1024;
/// Largest `grace_seconds` of a scope update (7 days).
const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;
/// Largest page of `GET /sdk/agents`.
const MAX_LIST_LIMIT: u32 = 1000;

/// Timestamps as the SDK's pydantic models accept them: RFC 3339, or an ISO 8601 date-time without
/// an offset (read as UTC).
pub(crate) mod ts {
    use super::*;

    pub(crate) fn parse(s: &str) -> Option<Timestamp> {
        s.parse::<Timestamp>().ok().or_else(|| {
            s.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })
    }

    pub(crate) fn required<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom("not a date-time"))
    }

    pub(crate) fn optional<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("not a date-time")),
        }
    }
}

/// `agent` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentType {
    /// An AI agent (the default; shows in the portal's Agents tab).
    #[default]
    Agent,
    /// Backend infrastructure.
    Service,
    /// A value this client does not know.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl AgentType {
    /// `agent` / `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::Agent => "agent",
            AgentType::Service => "service",
            AgentType::Unknown => "unknown",
        }
    }
}

/// `active`, `inactive` (suspended) or `revoked` (terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Working.
    Active,
    /// Suspended: keys and grants kept, calls other than `me` refused (`agent_inactive`).
    Inactive,
    /// Revoked: terminal, every key revoked.
    Revoked,
    /// A value this client does not know.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl AgentStatus {
    /// `active` / `inactive` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Inactive => "inactive",
            AgentStatus::Revoked => "revoked",
            AgentStatus::Unknown => "unknown",
        }
    }
}

/// A managed agent (the SDK's `AgentInfo`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Agent {
    /// UUID.
    pub id: String,
    /// Stable identifier, unique among the app's non-revoked agents.
    pub name: String,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `agent` or `service`.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// `active`, `inactive`, `revoked`.
    pub status: AgentStatus,
    /// The scope allowlist in force (provider → scopes).
    #[serde(default)]
    pub scopes: JsonMap,
    /// A narrowing waiting for its grace period to end.
    #[serde(default)]
    pub scopes_pending: Option<JsonMap>,
    /// When `scopes_pending` takes over.
    #[serde(default, deserialize_with = "ts::optional")]
    pub scopes_applies_at: Option<Timestamp>,
    /// The policy block.
    #[serde(default)]
    pub policy: JsonMap,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: JsonMap,
    /// Per-agent rate limit, if any.
    #[serde(default)]
    pub rate_limit_per_minute: Option<i64>,
    /// Bumped by every change of the agent's own row.
    pub version: u64,
    /// Creation time.
    #[serde(deserialize_with = "ts::required")]
    pub created_at: Timestamp,
    /// Latest use of any of its keys (Alter updates it lazily).
    #[serde(default, deserialize_with = "ts::optional")]
    pub last_used_at: Option<Timestamp>,
    /// Always `null` today.
    #[serde(default)]
    pub parent_agent_id: Option<String>,
}

fn scope_lists(map: &JsonMap) -> Option<Scopes> {
    map.iter()
        .map(|(k, v)| {
            let list = v
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?;
            Some((k.clone(), list))
        })
        .collect()
}

impl Agent {
    /// The scopes in force as provider → scope list, when every entry has that shape.
    pub fn scope_lists(&self) -> Option<Scopes> {
        scope_lists(&self.scopes)
    }

    /// The staged narrowing, in the same shape.
    pub fn pending_scope_lists(&self) -> Option<Scopes> {
        self.scopes_pending.as_ref().and_then(scope_lists)
    }
}

/// `active`, `deprecated` or `revoked`, derived from a key's timestamps (as the SDK derives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Authenticates.
    Active,
    /// Authenticates; responses carry `X-Alter-Key-Deprecated: true`.
    Deprecated,
    /// Terminal.
    Revoked,
}

/// One of an agent's keys, without its plaintext (the SDK's `AgentKey` model).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// UUID.
    pub key_id: String,
    /// The first characters of the plaintext, for display ([`AgentKey::matches_prefix`]).
    pub key_prefix: String,
    /// `<agent name>-<n>`, chosen by Alter.
    pub name: String,
    /// Mint time.
    #[serde(deserialize_with = "ts::required")]
    pub created_at: Timestamp,
    /// When deprecated (cleared by undeprecate; not refreshed by a repeated deprecate).
    #[serde(default, deserialize_with = "ts::optional")]
    pub deprecated_at: Option<Timestamp>,
    /// When revoked.
    #[serde(default, deserialize_with = "ts::optional")]
    pub revoked_at: Option<Timestamp>,
    /// Latest use (updated lazily by Alter).
    #[serde(default, deserialize_with = "ts::optional")]
    pub last_used_at: Option<Timestamp>,
}

impl KeyInfo {
    /// Derived from `(deprecated_at, revoked_at)`.
    pub fn status(&self) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.deprecated_at.is_some() {
            KeyStatus::Deprecated
        } else {
            KeyStatus::Active
        }
    }
}

/// A required-but-nullable field: missing is an error, `null` is `None`.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The answer of create: the agent, and its first key — `api_key` is `None` on an idempotent
/// replay (the plaintext was shown once and is gone; `key_id` is the original key's).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreatedAgent {
    /// The agent.
    pub agent: Agent,
    /// The one-time plaintext of the first key; `None` on a replay.
    pub api_key: Option<AgentKey>,
    /// Id of the first key.
    pub key_id: String,
}

impl CreatedAgent {
    /// Whether this answers a replayed `Idempotency-Key` (no plaintext).
    pub fn is_replay(&self) -> bool {
        self.api_key.is_none()
    }
}

#[derive(Deserialize)]
pub(crate) struct CreatedWire {
    #[serde(flatten)]
    agent: Agent,
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<AgentKey>>,
    key_id: String,
}

impl CreatedWire {
    pub(crate) fn into_created(self) -> std::result::Result<CreatedAgent, &'static str> {
        let api_key = self.api_key.ok_or("missing field `api_key`")?;
        Ok(CreatedAgent {
            agent: self.agent,
            api_key,
            key_id: self.key_id,
        })
    }
}

/// A freshly minted key: its metadata and the one-time plaintext.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MintedKey {
    /// The key's metadata.
    pub key: KeyInfo,
    /// The plaintext, shown once.
    pub api_key: AgentKey,
}

#[derive(Deserialize)]
pub(crate) struct MintedWire {
    #[serde(flatten)]
    key: KeyInfo,
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<AgentKey>>,
}

impl MintedWire {
    pub(crate) fn into_minted(self) -> std::result::Result<MintedKey, &'static str> {
        match self.api_key {
            Some(Some(api_key)) => Ok(MintedKey {
                key: self.key,
                api_key,
            }),
            _ => Err("missing field `api_key`"),
        }
    }
}

/// One page of `GET /sdk/agents`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct AgentPage {
    /// The agents (wire name `items`).
    #[serde(rename = "items")]
    pub agents: Vec<Agent>,
    /// Matching agents in all.
    pub total: u64,
    /// Page size used.
    pub limit: u32,
    /// Offset used.
    pub offset: u64,
    /// Whether another page follows (the SDK's pagination signal).
    pub has_more: bool,
}

#[derive(Deserialize)]
pub(crate) struct Items<T> {
    pub(crate) items: Vec<T>,
}

/// The query of `GET /sdk/agents`.
///
/// `include_revoked`, `limit`, `offset` and `name` are what the SDK sends. `statuses`,
/// `agent_type`, `provider` and `search` are the `alter agents list` filters of the CLI; the SDK
/// does not send them and `docs/alter.md` marks them emulator-defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAgentsQuery {
    include_revoked: bool,
    limit: u32,
    offset: u64,
    name: Option<String>,
    statuses: Vec<AgentStatus>,
    agent_type: Option<AgentType>,
    provider: Option<String>,
    search: Option<String>,
}

impl Default for ListAgentsQuery {
    fn default() -> Self {
        Self {
            include_revoked: false,
            limit: 100,
            offset: 0,
            name: None,
            statuses: Vec::new(),
            agent_type: None,
            provider: None,
            search: None,
        }
    }
}

impl ListAgentsQuery {
    /// Non-revoked agents, 100 per page, from the start (the SDK's defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Include revoked agents.
    pub fn include_revoked(mut self, yes: bool) -> Self {
        self.include_revoked = yes;
        self
    }

    /// Page size, 1..=1000.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Offset.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Exact name (the unique-active-name lookup).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only these statuses (emulator-defined filter; overrides `include_revoked`).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = AgentStatus>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Only this type (emulator-defined filter).
    pub fn agent_type(mut self, t: AgentType) -> Self {
        self.agent_type = Some(t);
        self
    }

    /// Only agents whose scopes name this provider (emulator-defined filter).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Substring of the name or display name (emulator-defined filter).
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// The query pairs, sorted by name as the SDK sends them.
    pub(crate) fn pairs(&self) -> Result<Vec<(&'static str, String)>> {
        if !(1..=MAX_LIST_LIMIT).contains(&self.limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        if self.statuses.contains(&AgentStatus::Unknown)
            || self.agent_type == Some(AgentType::Unknown)
        {
            return Err(Error::InvalidArgument(
                "unknown status or type in a filter".into(),
            ));
        }
        let mut p = vec![
            ("include_revoked", self.include_revoked.to_string()),
            ("limit", self.limit.to_string()),
            ("offset", self.offset.to_string()),
        ];
        if let Some(n) = &self.name {
            if n.is_empty() {
                return Err(Error::InvalidArgument(
                    "name must be a non-empty string".into(),
                ));
            }
            p.push(("name", n.clone()));
        }
        if !self.statuses.is_empty() {
            let list: Vec<_> = self.statuses.iter().map(|s| s.as_str()).collect();
            p.push(("status", list.join(",")));
        }
        if let Some(t) = self.agent_type {
            p.push(("type", t.as_str().to_owned()));
        }
        if let Some(v) = &self.provider {
            p.push(("provider", v.clone()));
        }
        if let Some(v) = &self.search {
            p.push(("search", v.clone()));
        }
        p.sort_by(|a, b| a.0.cmp(b.0));
        Ok(p)
    }
}

/// The SDK's checks of a scope allowlist: provider ids and scopes are non-empty strings without
/// surrounding whitespace, every list is non-empty, the compact JSON is at most 12 KiB. An empty
/// allowlist is valid (a deny-all agent).
fn check_scopes(scopes: &Scopes) -> Result<()> {
    let edge = |s: &str| s.is_empty() || s.trim() != s;
    for (provider, list) in scopes {
        if edge(provider) {
            return Err(Error::InvalidArgument(
                "scope provider names must be non-empty strings without edge whitespace".into(),
            ));
        }
        if list.is_empty() || list.iter().any(|s| edge(s)) {
            return Err(Error::InvalidArgument(
                "each provider needs a non-empty list of non-empty scopes without edge whitespace"
                    .into(),
            ));
        }
    }
    let size = serde_json::to_vec(scopes)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_SCOPES_JSON {
        return Err(Error::InvalidArgument(format!(
            "scopes compact JSON must be at most {MAX_SCOPES_JSON} bytes"
        )));
    }
    Ok(())
}

/// The body of `POST /sdk/agents`.
///
/// ```
/// use alter::{AgentType, CreateAgent};
/// let body = CreateAgent::new("nightly-sync")
///     .display_name("Nightly Sync")
///     .agent_type(AgentType::Service)
///     .scope("slack", ["channels:read"])
///     .metadata("k8s.uid", "4f1c2a9e-5d6b-4c1e-9a7f-0b1c2d3e4f50");
/// # let _ = body;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateAgent {
    name: String,
    #[serde(rename = "type")]
    agent_type: AgentType,
    scopes: Scopes,
    metadata: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<JsonMap>,
}

impl CreateAgent {
    /// An agent of type `agent` with no scopes (deny-all) and no metadata.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            agent_type: AgentType::Agent,
            scopes: Scopes::new(),
            metadata: JsonMap::new(),
            display_name: None,
            policy: None,
        }
    }

    /// The human-readable name.
    pub fn display_name(mut self, display_name: impl Into<String>) -> Self {
        self.display_name = Some(display_name.into());
        self
    }

    /// `agent` (default) or `service`.
    pub fn agent_type(mut self, t: AgentType) -> Self {
        self.agent_type = t;
        self
    }

    /// The whole scope allowlist.
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Adds one provider's scopes.
    pub fn scope<S: Into<String>>(
        mut self,
        provider: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.scopes.insert(
            provider.into(),
            scopes.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// One metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The policy block.
    pub fn policy(mut self, policy: JsonMap) -> Self {
        self.policy = Some(policy);
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidArgument(
                "agent name must be a non-empty string".into(),
            ));
        }
        if self.agent_type == AgentType::Unknown {
            return Err(Error::InvalidArgument(
                "agent type must be agent or service".into(),
            ));
        }
        check_scopes(&self.scopes)
    }
}

/// The changes of `PATCH /sdk/agents/{id}`; fields left unset are not sent. Sending nothing is a
/// no-op that returns the agent unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateAgent {
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Scopes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<JsonMap>,
    #[serde(skip)]
    expected_version: Option<u64>,
    #[serde(skip)]
    grace_seconds: Option<u64>,
}

impl UpdateAgent {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new display name.
    pub fn display_name(mut self, display_name: impl Into<String>) -> Self {
        self.display_name = Some(display_name.into());
        self
    }

    /// New metadata (replaces the object).
    pub fn metadata(mut self, metadata: JsonMap) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The full desired scope allowlist, computed from the agent at `expected_version` (a stale
    /// version is refused with 409 `agent_concurrent_update`). Broadening applies at once;
    /// narrowing is staged for [`UpdateAgent::grace_seconds`] (Alter's default: 24 h).
    pub fn scopes(mut self, scopes: Scopes, expected_version: u64) -> Self {
        self.scopes = Some(scopes);
        self.expected_version = Some(expected_version);
        self
    }

    /// How long a narrowing waits, 0..=604800 s (0: immediate cut-over). Needs scopes.
    pub fn grace_seconds(mut self, seconds: u64) -> Self {
        self.grace_seconds = Some(seconds);
        self
    }

    /// A new policy block (replaces it).
    pub fn policy(mut self, policy: JsonMap) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Only an optimistic-concurrency check, without new scopes.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    pub(crate) fn has_scopes(&self) -> bool {
        self.scopes.is_some()
    }

    pub(crate) fn query(&self) -> Result<Vec<(&'static str, String)>> {
        if let Some(scopes) = &self.scopes {
            check_scopes(scopes)?;
        }
        if self.expected_version == Some(0) {
            return Err(Error::InvalidArgument(
                "expected_version must be a positive integer".into(),
            ));
        }
        if let Some(g) = self.grace_seconds {
            if self.scopes.is_none() {
                return Err(Error::InvalidArgument(
                    "grace_seconds requires scopes".into(),
                ));
            }
            if g > MAX_GRACE_SECONDS {
                return Err(Error::InvalidArgument(format!(
                    "grace_seconds must be between 0 and {MAX_GRACE_SECONDS}"
                )));
            }
        }
        let mut q = Vec::new();
        if let Some(v) = self.expected_version {
            q.push(("expected_version", v.to_string()));
        }
        if let Some(g) = self.grace_seconds {
            q.push(("grace_seconds", g.to_string()));
        }
        Ok(q)
    }
}

/// An `Idempotency-Key` for create: 1–255 visible ASCII characters (the SDK only refuses CR and
/// LF; this client is stricter so the value always survives as a header).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(
                "an idempotency key is 1-255 visible ASCII characters".into(),
            ));
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `GET /sdk/agents/me` returns: the calling agent, and whether its key is deprecated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Me {
    /// The agent the key belongs to.
    pub agent: Agent,
    /// The response carried `X-Alter-Key-Deprecated: true`: this key is being retired.
    pub key_deprecated: bool,
}

/// The identity Alter resolves a key to (`POST /sdk/identity/resolve`, headless).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// The app (tenant) the key belongs to.
    pub app_id: String,
    /// The managed agent, for an agent key.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The audit correlation label, when there is one.
    #[serde(default)]
    pub actor_id: Option<String>,
}

/// Who did an audited action.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AuditActor {
    /// `app_key`, `agent_key` or `admin`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key id, when there is one.
    #[serde(default)]
    pub id: Option<String>,
}

/// One entry of an agent's audit feed (emulator-defined route, see `docs/alter.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Increasing sequence number.
    pub seq: u64,
    /// When.
    #[serde(deserialize_with = "ts::required")]
    pub at: Timestamp,
    /// `create_agent`, `update_agent`, `mint_key`, `revoke_key`, …
    pub action: String,
    /// Who.
    pub actor: AuditActor,
    /// The agent.
    pub agent_id: String,
    /// The key concerned, if any.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `success`, or the error code the action was refused with.
    pub outcome: String,
}

/// A page of an agent's audit feed, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AuditPage {
    /// The entries.
    pub items: Vec<AuditEntry>,
    /// Entries in all.
    pub total: u64,
    /// Page size used.
    pub limit: u32,
    /// Offset used.
    pub offset: u64,
    /// Whether another page follows.
    pub has_more: bool,
}

/// An agent seen in audit data, with its activity (emulator-defined route).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RegistryEntry {
    /// The actor id (the registry's key).
    pub actor_id: String,
    /// The managed agent.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// Its display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `agent` or `service`.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Latest call made with one of its keys.
    #[serde(default, deserialize_with = "ts::optional")]
    pub last_activity_at: Option<Timestamp>,
    /// Calls made with its keys in the last 30 days.
    pub activity_30d: u64,
}

/// A page of the agent registry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RegistryPage {
    /// The entries, most recently active first.
    pub items: Vec<RegistryEntry>,
    /// Entries in all.
    pub total: u64,
    /// Page size used.
    pub limit: u32,
    /// Offset used.
    pub offset: u64,
    /// Whether another page follows.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent_json() -> serde_json::Value {
        json!({
            "id": "6f1e0c3a-9b2d-4e5f-8a7b-1c2d3e4f5a6b", "name": "nightly-sync",
            "display_name": null, "type": "service", "status": "inactive",
            "scopes": {"slack": ["channels:read"]}, "scopes_pending": null,
            "scopes_applies_at": null, "policy": {}, "metadata": {"team": "growth"},
            "rate_limit_per_minute": null, "version": 3,
            "created_at": "2026-11-23T10:00:00.123456Z", "last_used_at": null,
            "parent_agent_id": null, "stored_legacy_managed_secret_names": [],
            "a_field_from_the_future": true
        })
    }

    #[test]
    fn agents_decode_leniently_and_unknown_words_are_unknown() {
        let a: Agent = serde_json::from_value(agent_json()).unwrap();
        assert_eq!(a.agent_type, AgentType::Service);
        assert_eq!(a.status, AgentStatus::Inactive);
        assert_eq!(a.scope_lists().unwrap()["slack"], ["channels:read"]);
        let mut v = agent_json();
        v["status"] = json!("paused");
        v["type"] = json!("robot");
        v["created_at"] = json!("2026-11-23T10:00:00");
        let a: Agent = serde_json::from_value(v).unwrap();
        assert_eq!(
            (a.status, a.agent_type),
            (AgentStatus::Unknown, AgentType::Unknown)
        );
        assert_eq!(
            a.created_at,
            "2026-11-23T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        let mut v = agent_json();
        v["scopes"] = json!({"weird": {"nested": 1}});
        assert!(
            serde_json::from_value::<Agent>(v)
                .unwrap()
                .scope_lists()
                .is_none()
        );
    }

    #[test]
    fn create_answers_need_api_key_present_and_nullable() {
        let mut v = agent_json();
        v["key_id"] = json!("k1");
        v["api_key"] = json!(null);
        let w: CreatedWire = serde_json::from_value(v.clone()).unwrap();
        assert!(w.into_created().unwrap().is_replay());
        v.as_object_mut().unwrap().remove("api_key");
        let w: CreatedWire = serde_json::from_value(v).unwrap();
        assert!(w.into_created().is_err());
        let m: MintedWire = serde_json::from_value(json!({
            "key_id": "k", "key_prefix": "alter_key_abcdef", "name": "a-2",
            "created_at": "2026-11-23T10:00:00Z", "api_key": null
        }))
        .unwrap();
        assert!(m.into_minted().is_err());
    }

    #[test]
    fn key_status_comes_from_timestamps() {
        let mut k: KeyInfo = serde_json::from_value(json!({
            "key_id": "k", "key_prefix": "p", "name": "a-1", "created_at": "2026-11-23T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(k.status(), KeyStatus::Active);
        k.deprecated_at = Some(k.created_at);
        assert_eq!(k.status(), KeyStatus::Deprecated);
        k.revoked_at = Some(k.created_at);
        assert_eq!(k.status(), KeyStatus::Revoked);
    }

    #[test]
    fn create_bodies_match_the_sdk() {
        let body = CreateAgent::new("nightly-sync");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"nightly-sync","type":"agent","scopes":{},"metadata":{}}"#
        );
        assert!(CreateAgent::new("").check().is_err());
        assert!(
            CreateAgent::new("a")
                .scope("slack", Vec::<String>::new())
                .check()
                .is_err()
        );
        assert!(
            CreateAgent::new("a")
                .scope(" slack", ["x"])
                .check()
                .is_err()
        );
        assert!(
            CreateAgent::new("a")
                .scope("slack", ["x "])
                .check()
                .is_err()
        );
        assert!(
            CreateAgent::new("a")
                .scope("p", ["s".repeat(13 * 1024)])
                .check()
                .is_err()
        );
        assert!(
            CreateAgent::new("a")
                .scope("slack", ["chat:write"])
                .check()
                .is_ok()
        );
    }

    #[test]
    fn update_controls_like_the_sdk() {
        assert!(UpdateAgent::new().grace_seconds(5).query().is_err());
        let s = Scopes::from([("slack".to_owned(), vec!["a".to_owned()])]);
        assert!(UpdateAgent::new().scopes(s.clone(), 0).query().is_err());
        assert!(
            UpdateAgent::new()
                .scopes(s.clone(), 2)
                .grace_seconds(604_801)
                .query()
                .is_err()
        );
        let q = UpdateAgent::new()
            .scopes(s, 2)
            .grace_seconds(0)
            .query()
            .unwrap();
        assert_eq!(
            q,
            [
                ("expected_version", "2".into()),
                ("grace_seconds", "0".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&UpdateAgent::new().display_name("X")).unwrap(),
            r#"{"display_name":"X"}"#
        );
    }

    #[test]
    fn list_queries_are_sorted_and_checked() {
        let q = ListAgentsQuery::new()
            .limit(5)
            .search("sync")
            .statuses([AgentStatus::Active, AgentStatus::Inactive])
            .agent_type(AgentType::Service)
            .provider("slack")
            .name("x");
        let names: Vec<_> = q.pairs().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "include_revoked",
                "limit",
                "name",
                "offset",
                "provider",
                "search",
                "status",
                "type"
            ]
        );
        assert!(ListAgentsQuery::new().limit(0).pairs().is_err());
        assert!(ListAgentsQuery::new().limit(1001).pairs().is_err());
        assert!(ListAgentsQuery::new().name("").pairs().is_err());
        assert!(IdempotencyKey::new("a\r\nb").is_err());
        assert!(IdempotencyKey::new("").is_err());
        assert_eq!(
            IdempotencyKey::new("op/uid/1").unwrap().as_str(),
            "op/uid/1"
        );
    }
}
