//! The management API, authenticated with an app key: the SDK's `App.agents` namespace.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use crate::agent::AgentClient;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::key::{AgentKey, AppKey};
use crate::model::{
    Agent, AgentPage, AuditPage, CreateAgent, CreatedAgent, CreatedWire, IdempotencyKey, Identity,
    Items, KeyInfo, ListAgentsQuery, MintedKey, MintedWire, RegistryEntry, RegistryPage,
    UpdateAgent,
};
use crate::operation::Operation;
use crate::transport::{Call, Credential, Shared};

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Largest page of an agent's audit feed.
const MAX_AUDIT_LIMIT: u32 = 500;
/// Largest page of the registry.
const MAX_REGISTRY_LIMIT: u32 = 1000;

/// A client for Alter's managed-agents API, built from an [`AppKey`] (the provisioning
/// credential). Cheap to clone: clones share the connection pool, the rate limit and the
/// `Retry-After` gate.
///
/// A managed agent's key cannot build one:
///
/// ```compile_fail,E0308
/// # use alter::*;
/// # fn f(config: ClientConfig, key: AgentKey) -> Result<()> {
/// let client = AppClient::new(&config, key)?; // expected `AppKey`, found `AgentKey`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AppClient {
    shared: Arc<Shared>,
    cred: Arc<Credential>,
    key: AppKey,
}

impl fmt::Debug for AppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppClient")
            .field("base_url", &self.shared.base.as_str())
            .field("app_id", &self.shared.app_id)
            .field("key", &self.key)
            .finish()
    }
}

fn page_limit(limit: u32, max: u32) -> Result<()> {
    if (1..=max).contains(&limit) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "limit must be between 1 and {max}"
        )))
    }
}

impl AppClient {
    /// A client for `config`'s base URL with this app key.
    pub fn new(config: &ClientConfig, key: AppKey) -> Result<Self> {
        let cred = Credential::new(key.expose_secret(), None)?;
        Ok(Self {
            shared: config.build()?,
            cred,
            key,
        })
    }

    /// The same transport (pool, rate limit, gate) with another app key: for a rotated Secret.
    pub fn with_app_key(&self, key: AppKey) -> Result<Self> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            cred: Credential::new(key.expose_secret(), None)?,
            key,
        })
    }

    /// The same client narrowed to these scopes (the SDK's `with_constraints(scopes=…)`): every
    /// request carries `X-Alter-Scope-Constraints`, bound into the signature. Each scope must be
    /// one the key holds (else 400 `constraint_not_narrowing`).
    pub fn with_scope_constraints<S: AsRef<str>>(&self, scopes: &[S]) -> Result<Self> {
        if scopes.is_empty() {
            return Err(Error::InvalidArgument(
                "scope constraints need at least one scope".into(),
            ));
        }
        let mut list = Vec::with_capacity(scopes.len());
        for s in scopes {
            let s = s.as_ref();
            if s.is_empty()
                || s == "*"
                || s.contains(',')
                || !s.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(Error::InvalidArgument(
                    "a scope constraint is a non-empty scope name, never `*`".into(),
                ));
            }
            list.push(s);
        }
        Ok(Self {
            shared: Arc::clone(&self.shared),
            cred: Credential::new(self.key.expose_secret(), Some(list.join(",")))?,
            key: self.key.clone(),
        })
    }

    /// An [`AgentClient`] on this client's transport.
    pub fn agent_client(&self, key: AgentKey) -> Result<AgentClient> {
        AgentClient::from_shared(Arc::clone(&self.shared), key)
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.shared.base.as_str()
    }

    /// The configured app id.
    pub fn app_id(&self) -> Option<&str> {
        self.shared.app_id.as_deref()
    }

    /// Whether the last successful response said this app key is deprecated
    /// (`X-Alter-Key-Deprecated: true`): it is being retired and should be replaced.
    pub fn key_deprecated(&self) -> bool {
        self.cred.deprecated()
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        self.shared.send(&self.cred, call).await?.json()
    }

    /// `POST /sdk/agents`: the agent and its first key. With an `Idempotency-Key` the call is
    /// idempotent (same key and body: the same agent, `api_key: None`) and retried on ambiguous
    /// failures; without, it is retried only when Alter surely did nothing (a rate-limit 429, a
    /// connection never made).
    pub async fn create_agent(
        &self,
        request: &CreateAgent,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<CreatedAgent> {
        request.check()?;
        let mut call =
            Call::new(Operation::CreateAgent, Method::POST, ["sdk", "agents"]).json(request)?;
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key.as_str()).map_err(|_| {
                Error::InvalidArgument("the idempotency key is not a header value".into())
            })?;
            call.headers.push((IDEMPOTENCY_KEY.clone(), value));
            call.idempotent = true;
        }
        let response = self.shared.send(&self.cred, call).await?;
        let wire: CreatedWire = response.json()?;
        wire.into_created().map_err(|d| response.decode_error(d))
    }

    /// `GET /sdk/agents`: one page.
    pub async fn list_agents(&self, query: &ListAgentsQuery) -> Result<AgentPage> {
        let mut call = Call::new(Operation::ListAgents, Method::GET, ["sdk", "agents"]);
        call.query = query.pairs()?;
        self.json(call).await
    }

    /// `GET /sdk/agents?name=…`: the non-revoked agent with exactly this name, if any (the SDK's
    /// `get_by_name`).
    pub async fn get_agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "name must be a non-empty string".into(),
            ));
        }
        let mut call = Call::new(Operation::ListAgents, Method::GET, ["sdk", "agents"]);
        call.query = vec![("name", name.to_owned())];
        let page: Items<Agent> = self.json(call).await?;
        Ok(page.items.into_iter().next())
    }

    /// `GET /sdk/agents/{id}`. A revoked agent is 404 `agent_not_found` here; see
    /// [`AppClient::get_agent_including_revoked`].
    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent> {
        self.json(Call::new(
            Operation::GetAgent,
            Method::GET,
            ["sdk", "agents", agent_id],
        ))
        .await
    }

    /// `GET /sdk/agents/{id}?include_revoked=true`: the agent whatever its status, so that a
    /// revocation (by the portal, the CLI, anyone) can be told from a deletion.
    pub async fn get_agent_including_revoked(&self, agent_id: &str) -> Result<Agent> {
        let mut call = Call::new(
            Operation::GetAgent,
            Method::GET,
            ["sdk", "agents", agent_id],
        );
        call.query = vec![("include_revoked", "true".to_owned())];
        self.json(call).await
    }

    /// `PATCH /sdk/agents/{id}`. Retried after an ambiguous failure only when it carries no new
    /// scopes: a scope update names `expected_version`, and a retry after a committed first
    /// attempt would be refused as stale (409 `agent_concurrent_update`) — the caller re-reads.
    pub async fn update_agent(&self, agent_id: &str, update: &UpdateAgent) -> Result<Agent> {
        let query = update.query()?;
        let mut call = Call::new(
            Operation::UpdateAgent,
            Method::PATCH,
            ["sdk", "agents", agent_id],
        )
        .json(update)?;
        call.query = query;
        call.idempotent = !update.has_scopes();
        self.json(call).await
    }

    async fn set_status(&self, op: Operation, agent_id: &str, status: &str) -> Result<Agent> {
        let call = Call::new(op, Method::PATCH, ["sdk", "agents", agent_id])
            .json(&serde_json::json!({ "status": status }))?;
        self.json(call).await
    }

    /// Suspends an agent (`active` → `inactive`): its keys and grants stay, its calls other than
    /// `me` are refused with 401 `agent_inactive`. Idempotent.
    pub async fn suspend_agent(&self, agent_id: &str) -> Result<Agent> {
        self.set_status(Operation::SuspendAgent, agent_id, "inactive")
            .await
    }

    /// Resumes a suspended agent. Idempotent.
    pub async fn resume_agent(&self, agent_id: &str) -> Result<Agent> {
        self.set_status(Operation::ResumeAgent, agent_id, "active")
            .await
    }

    /// `DELETE /sdk/agents/{id}`: revokes the agent and, in the same step, all its keys.
    /// Idempotent: a revoked agent is returned unchanged.
    pub async fn delete_agent(&self, agent_id: &str) -> Result<Agent> {
        self.json(Call::new(
            Operation::DeleteAgent,
            Method::DELETE,
            ["sdk", "agents", agent_id],
        ))
        .await
    }

    /// `POST /sdk/agents/{id}/keys`. Never retried after an ambiguous failure
    /// ([`Error::may_have_committed`]: a key nobody received may exist; find it with
    /// [`AppClient::list_keys`] and revoke it).
    pub async fn mint_key(&self, agent_id: &str) -> Result<MintedKey> {
        let call = Call::new(
            Operation::MintKey,
            Method::POST,
            ["sdk", "agents", agent_id, "keys"],
        )
        .json(&serde_json::json!({}))?;
        let response = self.shared.send(&self.cred, call).await?;
        let wire: MintedWire = response.json()?;
        wire.into_minted().map_err(|d| response.decode_error(d))
    }

    /// `GET /sdk/agents/{id}/keys`: every key, revoked ones included, oldest first.
    pub async fn list_keys(&self, agent_id: &str) -> Result<Vec<KeyInfo>> {
        let page: Items<KeyInfo> = self
            .json(Call::new(
                Operation::ListKeys,
                Method::GET,
                ["sdk", "agents", agent_id, "keys"],
            ))
            .await?;
        Ok(page.items)
    }

    async fn key_action(
        &self,
        op: Operation,
        agent_id: &str,
        key_id: &str,
        action: &str,
    ) -> Result<KeyInfo> {
        let call = Call::new(
            op,
            Method::PATCH,
            ["sdk", "agents", agent_id, "keys", key_id, action],
        )
        .json(&serde_json::json!({}))?;
        self.json(call).await
    }

    /// Marks a key deprecated: it still authenticates, and every response to it carries
    /// `X-Alter-Key-Deprecated: true`. Idempotent (`deprecated_at` is not refreshed).
    pub async fn deprecate_key(&self, agent_id: &str, key_id: &str) -> Result<KeyInfo> {
        self.key_action(Operation::DeprecateKey, agent_id, key_id, "deprecate")
            .await
    }

    /// Clears a key's deprecation. Idempotent.
    pub async fn undeprecate_key(&self, agent_id: &str, key_id: &str) -> Result<KeyInfo> {
        self.key_action(Operation::UndeprecateKey, agent_id, key_id, "undeprecate")
            .await
    }

    /// `DELETE /sdk/agents/{id}/keys/{key_id}[?force=true]`. Without `force`, revoking the agent's
    /// last non-revoked key is refused (409 `last_active_key`). Idempotent.
    pub async fn revoke_key(&self, agent_id: &str, key_id: &str, force: bool) -> Result<KeyInfo> {
        let mut call = Call::new(
            Operation::RevokeKey,
            Method::DELETE,
            ["sdk", "agents", agent_id, "keys", key_id],
        );
        if force {
            call.query.push(("force", "true".to_owned()));
        }
        self.json(call).await
    }

    /// `POST /sdk/identity/resolve` (headless): which app this key belongs to.
    pub async fn resolve_identity(&self) -> Result<Identity> {
        let call = Call::new(
            Operation::ResolveIdentity,
            Method::POST,
            ["sdk", "identity", "resolve"],
        )
        .json(&serde_json::json!({ "include_profile": false }))?;
        self.json(call).await
    }

    /// Checks that the app key belongs to the configured app ([`ClientConfig::app_id`]); with no
    /// app configured, returns the identity unchecked. [`Error::AppMismatch`] otherwise.
    pub async fn verify_app(&self) -> Result<Identity> {
        let identity = self.resolve_identity().await?;
        match self.shared.app_id.as_deref() {
            Some(expected) if expected != identity.app_id => Err(Error::AppMismatch {
                expected: expected.to_owned(),
                actual: identity.app_id,
            }),
            _ => Ok(identity),
        }
    }

    /// `GET /sdk/agents/{id}/audit`: the agent's audit feed, newest first (`alter agents audit`;
    /// emulator-defined route, needs `dashboard_audit:read`). `limit` 1..=500.
    pub async fn agent_audit(&self, agent_id: &str, limit: u32, offset: u64) -> Result<AuditPage> {
        page_limit(limit, MAX_AUDIT_LIMIT)?;
        let mut call = Call::new(
            Operation::AgentAudit,
            Method::GET,
            ["sdk", "agents", agent_id, "audit"],
        );
        call.query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        self.json(call).await
    }

    /// `GET /sdk/agent-registry`: agents seen calling, with their activity (`alter agents
    /// registry-list`; emulator-defined route). `limit` 1..=1000.
    pub async fn list_registry(&self, limit: u32, offset: u64) -> Result<RegistryPage> {
        page_limit(limit, MAX_REGISTRY_LIMIT)?;
        let mut call = Call::new(
            Operation::ListRegistry,
            Method::GET,
            ["sdk", "agent-registry"],
        );
        call.query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        self.json(call).await
    }

    /// `GET /sdk/agent-registry/{actor_id}` (`alter agents registry-show`; emulator-defined).
    pub async fn get_registry_entry(&self, actor_id: &str) -> Result<RegistryEntry> {
        self.json(Call::new(
            Operation::GetRegistryEntry,
            Method::GET,
            ["sdk", "agent-registry", actor_id],
        ))
        .await
    }
}
