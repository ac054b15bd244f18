//! Request and response types of the contract (`docs/agentlattice-api.md` §2–§3), written for this
//! client alone. Unknown response fields are ignored; missing optional ones take their default.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::key::AgentKey;

/// `null` or absent → the type's default.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Can act.
    Active,
    /// Its keys authenticate, but actions are refused.
    Halted,
    /// Terminal; every key revoked.
    Revoked,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// An agent (contract §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Agent id (UUID).
    pub id: String,
    /// Unique name among non-revoked agents.
    pub name: String,
    /// Free text, or none.
    #[serde(default)]
    pub description: Option<String>,
    /// Granted capabilities (a set).
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Vec<String>,
    /// String metadata (the operator keeps `k8s.uid` and friends here).
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Id of the service key that registered it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Last change.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// When halted, if halted.
    #[serde(default)]
    pub halted_at: Option<Timestamp>,
    /// When revoked, if revoked.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    /// Latest use of any of its keys.
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Bumped by every change.
    #[serde(default)]
    pub version: u64,
}

/// A key's status, derived by the server from its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Authenticates.
    Active,
    /// Authenticates; responses carry `X-AL-Key-Deprecated: true`.
    Deprecated,
    /// Terminal.
    Revoked,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// An agent key's public record (never the plaintext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id (UUID).
    pub key_id: String,
    /// The first 8 characters of the key's body (no scheme); for people, not programs.
    pub key_prefix: String,
    /// Label given at mint time.
    #[serde(default)]
    pub name: Option<String>,
    /// Derived status.
    pub status: KeyStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// When deprecated, if deprecated.
    #[serde(default)]
    pub deprecated_at: Option<Timestamp>,
    /// When revoked, if revoked.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    /// Latest authenticated request with it.
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
}

/// Body of `POST /api/agents/register`.
///
/// `capabilities` is always sent (possibly empty); `description` and `metadata` only when set, so
/// that the same value always produces the same body (idempotent replays compare bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterAgent {
    /// The agent's name.
    pub name: String,
    /// Capabilities to grant.
    pub capabilities: Vec<String>,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl RegisterAgent {
    /// A registration with this name and nothing else.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            capabilities: Vec::new(),
            description: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the capabilities.
    pub fn capabilities<I, S>(mut self, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Result of a registration.
#[derive(Debug, Clone)]
pub struct RegisteredAgent {
    /// The agent.
    pub agent: Agent,
    /// The new agent key, shown this once. `None` on an idempotent replay (200): the plaintext was
    /// returned by the original registration and is gone.
    pub api_key: Option<AgentKey>,
    /// Id of the key minted by the (original) registration.
    pub key_id: String,
    /// Public prefix of that key.
    pub key_prefix: String,
    /// True when the server answered 200: a replay of an earlier registration with the same
    /// `Idempotency-Key`.
    pub replayed: bool,
}

#[derive(Deserialize)]
pub(crate) struct RegisteredWire {
    #[serde(flatten)]
    agent: Agent,
    #[serde(default)]
    api_key: Option<AgentKey>,
    #[serde(default, rename = "apiKey")]
    api_key_camel: Option<AgentKey>,
    #[serde(alias = "keyId")]
    key_id: String,
    #[serde(alias = "keyPrefix")]
    key_prefix: String,
}

impl RegisteredWire {
    pub(crate) fn into_registered(self, status: u16) -> RegisteredAgent {
        RegisteredAgent {
            agent: self.agent,
            api_key: self.api_key.or(self.api_key_camel),
            key_id: self.key_id,
            key_prefix: self.key_prefix,
            replayed: status == 200,
        }
    }
}

/// Query of `GET /api/agents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListAgentsQuery {
    /// Only agents with exactly this name.
    pub name: Option<String>,
    /// Include revoked agents (default false).
    pub include_revoked: bool,
    /// Page size, 1–1000 (server default 50).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u64>,
}

impl ListAgentsQuery {
    /// Every non-revoked agent, first page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only agents with this name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Include revoked agents.
    pub fn include_revoked(mut self, include: bool) -> Self {
        self.include_revoked = include;
        self
    }

    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Items to skip.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(name) = &self.name {
            q.push(("name", name.clone()));
        }
        if self.include_revoked {
            q.push(("include_revoked", "true".to_owned()));
        }
        if let Some(limit) = self.limit {
            q.push(("limit", limit.to_string()));
        }
        if let Some(offset) = self.offset {
            q.push(("offset", offset.to_string()));
        }
        q
    }
}

/// One page of `GET /api/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentPage {
    /// Agents, ordered by `created_at`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Agent>,
    /// Matching agents in all.
    #[serde(default)]
    pub total: u64,
    /// Page size used.
    #[serde(default)]
    pub limit: u64,
    /// Offset used.
    #[serde(default)]
    pub offset: u64,
    /// Whether another page follows.
    #[serde(default)]
    pub has_more: bool,
}

/// Body of `PATCH /api/agents/{id}`: only the fields set are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateAgent {
    /// New capabilities (replaces the set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// `Some(Some(text))` sets the description, `Some(None)` clears it (sends `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// New metadata (replaces the map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl UpdateAgent {
    /// An empty update (the server refuses it: set at least one field).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the capabilities.
    pub fn capabilities<I, S>(mut self, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capabilities = Some(capabilities.into_iter().map(Into::into).collect());
        self
    }

    /// Sets (`Some`) or clears (`None`) the description.
    pub fn description(mut self, description: Option<String>) -> Self {
        self.description = Some(description);
        self
    }

    /// Replaces the metadata.
    pub fn metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// Body of `POST /api/agents/{id}/keys`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct MintKeyBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
}

/// A freshly minted key.
#[derive(Debug, Clone)]
pub struct MintedKey {
    /// The key's public record.
    pub key: KeyInfo,
    /// The plaintext, shown this once.
    pub api_key: AgentKey,
}

#[derive(Deserialize)]
pub(crate) struct MintedWire {
    #[serde(flatten)]
    key: KeyInfo,
    #[serde(default)]
    api_key: Option<AgentKey>,
    #[serde(default, rename = "apiKey")]
    api_key_camel: Option<AgentKey>,
}

impl MintedWire {
    /// `None` when neither spelling carries the key.
    pub(crate) fn into_minted(self) -> Option<MintedKey> {
        let api_key = self.api_key.or(self.api_key_camel)?;
        Some(MintedKey {
            key: self.key,
            api_key,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct KeyListWire {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) items: Vec<KeyInfo>,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Whoami {
    /// The agent id.
    pub config_id: String,
    /// The agent name.
    pub name: String,
    /// The workspace.
    #[serde(default)]
    pub org_id: Option<String>,
    /// False for a halted agent.
    pub is_active: bool,
    /// Circuit-breaker state (`closed`).
    #[serde(default)]
    pub cb_state: Option<String>,
    /// Granted capabilities.
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Vec<String>,
    /// The id of the key that made this call.
    #[serde(default)]
    pub key_id: Option<String>,
    /// As sent by the server.
    #[serde(default)]
    pub calibration: serde_json::Value,
    /// As sent by the server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<serde_json::Value>,
    /// As sent by the server.
    #[serde(default)]
    pub delegations: serde_json::Value,
    /// The response carried `X-AL-Key-Deprecated: true`: this key is being retired.
    #[serde(skip)]
    pub key_deprecated: bool,
}

/// An action to submit (`POST /api/v1/actions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// What the agent wants to do (a capability name).
    pub action_type: String,
    /// When; the call time if `None`.
    pub timestamp: Option<Timestamp>,
    /// Data touched (free form).
    pub data_accessed: Vec<serde_json::Value>,
    /// Free-form metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `X-AL-Event-ID`; a fresh UUID if `None`. The same id is sent on every retry, so the server
    /// answers a retry with the first result.
    pub event_id: Option<String>,
}

impl ActionRequest {
    /// An action of this type, now, with no data or metadata and a fresh event id.
    pub fn new(action_type: impl Into<String>) -> Self {
        Self {
            action_type: action_type.into(),
            timestamp: None,
            data_accessed: Vec::new(),
            metadata: serde_json::Map::new(),
            event_id: None,
        }
    }

    /// Sets the event id (for the caller's own deduplication).
    pub fn event_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = Some(event_id.into());
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, at: Timestamp) -> Self {
        self.timestamp = Some(at);
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds a data-accessed entry.
    pub fn data_accessed(mut self, entry: impl Into<serde_json::Value>) -> Self {
        self.data_accessed.push(entry.into());
        self
    }
}

#[derive(Serialize)]
pub(crate) struct ActionWire<'a> {
    pub(crate) action_type: &'a str,
    pub(crate) timestamp: String,
    pub(crate) data_accessed: &'a [serde_json::Value],
    pub(crate) metadata: &'a serde_json::Map<String, serde_json::Value>,
}

/// RFC 3339 UTC with millisecond precision (contract §1).
pub(crate) fn wire_timestamp(at: Timestamp) -> String {
    format!("{at:.3}")
}

/// What the server decided about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Allowed and recorded.
    Executed,
    /// Waiting for approval.
    Requested,
    /// Refused (see `denial_reason`).
    Denied,
    /// Approval timed out.
    TimedOut,
    /// No policy applies.
    PolicyNotFound,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// Answer to `POST /api/v1/actions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionResult {
    /// The decision.
    pub status: ActionStatus,
    /// The audit event recorded for it.
    pub audit_event_id: String,
    /// Human text.
    #[serde(default)]
    pub message: Option<String>,
    /// Why it was denied (`capability_not_granted`, …).
    #[serde(default)]
    pub denial_reason: Option<String>,
    /// The policy that decided.
    #[serde(default)]
    pub policy_name: Option<String>,
    /// Set when approval was requested.
    #[serde(default)]
    pub approval_id: Option<String>,
    /// As sent by the server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions_evaluated: Vec<serde_json::Value>,
    /// The `X-AL-Event-ID` sent.
    #[serde(skip)]
    pub event_id: String,
    /// The response carried `X-AL-Key-Deprecated: true`: this key is being retired.
    #[serde(skip)]
    pub key_deprecated: bool,
}

/// An `Idempotency-Key` for registration: 1–255 printable ASCII characters (contract §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks the value. The error does not repeat it.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
        let ok = (1..=255).contains(&value.len())
            && printable
            && !value.starts_with(' ')
            && !value.ends_with(' ');
        if ok {
            Ok(Self(value))
        } else {
            Err(Error::InvalidArgument(
                "an idempotency key must be 1–255 printable ASCII characters, without surrounding spaces"
                    .to_owned(),
            ))
        }
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT_JSON: &str = r#"{
        "id": "5b0e1f7e-0000-4000-8000-000000000001", "name": "payments-deploy-bot",
        "description": null, "capabilities": ["deploy.staging"],
        "metadata": {"k8s.uid": "u-1"}, "status": "active",
        "created_at": "2026-11-23T10:00:00.123Z", "created_by": "svc-1",
        "updated_at": "2026-11-23T10:00:00.123Z", "halted_at": null, "revoked_at": null,
        "last_used_at": null, "version": 1, "some_future_field": {"x": 1}"#;

    #[test]
    fn agent_ignores_unknown_fields() {
        let a: Agent = serde_json::from_str(&format!("{AGENT_JSON}}}")).unwrap();
        assert_eq!(a.name, "payments-deploy-bot");
        assert_eq!(a.status, AgentStatus::Active);
        assert_eq!(a.metadata["k8s.uid"], "u-1");
        assert_eq!(a.version, 1);
        assert_eq!(a.created_at.to_string(), "2026-11-23T10:00:00.123Z");
    }

    #[test]
    fn unknown_statuses_do_not_fail() {
        let a: Agent = serde_json::from_str(
            &format!("{AGENT_JSON}}}").replace("\"active\"", "\"quarantined\""),
        )
        .unwrap();
        assert_eq!(a.status, AgentStatus::Unknown);
    }

    #[test]
    fn register_response_reads_both_spellings_and_null() {
        let snake = format!(
            r#"{AGENT_JSON}, "api_key": "al_agent_abcdefgh0123456789", "key_id": "k1", "key_prefix": "abcdefgh"}}"#
        );
        let r: RegisteredWire = serde_json::from_str(&snake).unwrap();
        let r = r.into_registered(201);
        assert_eq!(
            r.api_key.as_ref().map(|k| k.expose_secret()),
            Some("al_agent_abcdefgh0123456789")
        );
        assert!(!r.replayed);
        assert_eq!(r.agent.name, "payments-deploy-bot");

        let camel = snake.replace("\"api_key\"", "\"apiKey\"");
        let r: RegisteredWire = serde_json::from_str(&camel).unwrap();
        assert!(r.into_registered(201).api_key.is_some());

        let replay = snake.replace("\"al_agent_abcdefgh0123456789\"", "null");
        let r: RegisteredWire = serde_json::from_str(&replay).unwrap();
        let r = r.into_registered(200);
        assert!(r.api_key.is_none());
        assert!(r.replayed);
        assert_eq!(r.key_id, "k1");
        // Debug of the result never shows the key.
        let r: RegisteredWire = serde_json::from_str(&snake).unwrap();
        let shown = format!("{:?}", r.into_registered(201));
        assert!(!shown.contains("abcdefgh0123456789"), "{shown}");
        assert!(shown.contains("AgentKey(<redacted>)"), "{shown}");
    }

    #[test]
    fn register_response_rejects_a_service_key_without_showing_it() {
        let bad = format!(
            r#"{AGENT_JSON}, "api_key": "al_svc_zzzzzzzz0123456789", "key_id": "k1", "key_prefix": "zzzzzzzz"}}"#
        );
        let e = serde_json::from_str::<RegisteredWire>(&bad).err().unwrap();
        let detail = crate::error::sanitize_decode_detail(&e.to_string());
        assert!(!detail.contains("zzzzzzzz0123456789"), "{detail}");
    }

    #[test]
    fn mint_response() {
        let json = r#"{"key_id":"k2","key_prefix":"Qw3rTy12","name":"rotation","status":"active",
            "created_at":"2026-11-23T10:00:00.000Z","deprecated_at":null,"revoked_at":null,
            "last_used_at":null,"apiKey":"al_agent_Qw3rTy12xxxxxxxx"}"#;
        let m: MintedWire = serde_json::from_str(json).unwrap();
        let m = m.into_minted().unwrap();
        assert_eq!(m.key.key_id, "k2");
        assert_eq!(m.key.status, KeyStatus::Active);
        assert_eq!(m.api_key.public_prefix(), "Qw3rTy12");
        let none: MintedWire = serde_json::from_str(
            &json.replace(r#""apiKey":"al_agent_Qw3rTy12xxxxxxxx""#, r#""x":1"#),
        )
        .unwrap();
        assert!(none.into_minted().is_none());
    }

    #[test]
    fn register_body_is_deterministic() {
        let body = RegisterAgent::new("bot")
            .capabilities(["b", "a"])
            .metadata("k8s.uid", "u");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"bot","capabilities":["b","a"],"metadata":{"k8s.uid":"u"}}"#
        );
        assert_eq!(
            serde_json::to_string(&RegisterAgent::new("bot").description("d")).unwrap(),
            r#"{"name":"bot","capabilities":[],"description":"d"}"#
        );
    }

    #[test]
    fn update_body_sends_only_what_is_set() {
        assert_eq!(serde_json::to_string(&UpdateAgent::new()).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&UpdateAgent::new().description(None)).unwrap(),
            r#"{"description":null}"#
        );
        assert_eq!(
            serde_json::to_string(&UpdateAgent::new().capabilities(["x"])).unwrap(),
            r#"{"capabilities":["x"]}"#
        );
    }

    #[test]
    fn list_query_pairs() {
        assert!(ListAgentsQuery::new().pairs().is_empty());
        assert_eq!(
            ListAgentsQuery::new()
                .name("bot")
                .include_revoked(true)
                .limit(10)
                .offset(20)
                .pairs(),
            vec![
                ("name", "bot".to_owned()),
                ("include_revoked", "true".to_owned()),
                ("limit", "10".to_owned()),
                ("offset", "20".to_owned())
            ]
        );
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::new("lattice-operator/uid/0123456789abcdef").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("x".repeat(256)).is_err());
        assert!(IdempotencyKey::new("x".repeat(255)).is_ok());
        assert!(IdempotencyKey::new("tab\there").is_err());
        assert!(IdempotencyKey::new("é").is_err());
        let e = IdempotencyKey::new("secret\nvalue").err().unwrap();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn timestamps_have_milliseconds() {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(wire_timestamp(t), "2026-11-23T10:00:00.000Z");
        let t: Timestamp = "2026-11-23T10:00:00.123456Z".parse().unwrap();
        assert_eq!(wire_timestamp(t), "2026-11-23T10:00:00.123Z");
    }

    #[test]
    fn whoami_and_action_results() {
        let w: Whoami = serde_json::from_str(
            r#"{"config_id":"a1","name":"bot","org_id":"o","is_active":true,"cb_state":"closed",
                "calibration":{},"policies":[],"delegations":{"as_parent":[],"as_child":[]},
                "capabilities":["deploy.staging"],"key_id":"k1","extra":true}"#,
        )
        .unwrap();
        assert_eq!(w.config_id, "a1");
        assert!(w.is_active);
        assert!(!w.key_deprecated);
        let r: ActionResult = serde_json::from_str(
            r#"{"status":"denied","audit_event_id":"e1","message":null,
                "denial_reason":"capability_not_granted","policy_name":null,"conditions_evaluated":[]}"#,
        )
        .unwrap();
        assert_eq!(r.status, ActionStatus::Denied);
        assert_eq!(r.denial_reason.as_deref(), Some("capability_not_granted"));
    }
}
