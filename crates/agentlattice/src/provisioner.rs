//! The provisioning API (contract §2), authenticated with a service key.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use crate::Operation;
use crate::agent::AgentClient;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::key::{AgentKey, ServiceKey};
use crate::model::{
    Agent, AgentPage, IdempotencyKey, KeyInfo, KeyListWire, ListAgentsQuery, MintKeyBody,
    MintedKey, MintedWire, RegisterAgent, RegisteredAgent, RegisteredWire, UpdateAgent,
};
use crate::transport::{Auth, Call, Shared};

/// `Idempotency-Key`.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Page size used by [`ProvisionerClient::find_agents_by_name`].
const FIND_PAGE_SIZE: u32 = 100;
/// Pages [`ProvisionerClient::find_agents_by_name`] follows at most (a name matches at most one
/// live agent; revoked ones can pile up, but not by the hundred thousand).
const FIND_MAX_PAGES: u32 = 1000;

/// A client for the provisioning API, built from a [`ServiceKey`].
///
/// Cheap to clone: clones share the connection pool, the rate limit and the `Retry-After` gate.
/// It has no method that acts as an agent; an [`AgentKey`] cannot build one:
///
/// ```compile_fail,E0308
/// # use agentlattice::*;
/// # async fn f(config: ClientConfig, key: AgentKey) -> Result<()> {
/// let client = ProvisionerClient::new(&config, key)?; // expected `ServiceKey`, found `AgentKey`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProvisionerClient {
    shared: Arc<Shared>,
    auth: Auth,
}

impl fmt::Debug for ProvisionerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisionerClient")
            .field("base_url", &self.shared.base.as_str())
            .field("key", &"ServiceKey(<redacted>)")
            .finish()
    }
}

impl ProvisionerClient {
    /// A client for `config`'s base URL with this service key.
    pub fn new(config: &ClientConfig, key: ServiceKey) -> Result<Self> {
        Ok(Self {
            shared: config.build()?,
            auth: Auth::bearer(key.expose_secret())?,
        })
    }

    /// The same client (pool, rate limit, gate) with another service key: for a rotated
    /// service-key Secret.
    pub fn with_service_key(&self, key: ServiceKey) -> Result<Self> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            auth: Auth::bearer(key.expose_secret())?,
        })
    }

    /// An [`AgentClient`] sharing this client's transport (pool, rate limit, gate).
    pub fn agent_client(&self, key: AgentKey) -> Result<AgentClient> {
        AgentClient::from_shared(Arc::clone(&self.shared), &key)
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.shared.base.as_str()
    }

    /// `POST /api/agents/register`. With an `Idempotency-Key` the call is idempotent (a replay
    /// answers 200 with the same agent and `api_key: None`) and is retried on ambiguous failures;
    /// without one it is retried only when the server surely did not commit (429, 503, connect
    /// errors).
    pub async fn register(
        &self,
        request: &RegisterAgent,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<RegisteredAgent> {
        let mut call = Call::new(
            Operation::Register,
            Method::POST,
            ["api", "agents", "register"],
        )
        .json(request)?;
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key.as_str()).map_err(|_| {
                Error::InvalidArgument("the idempotency key is not a valid header value".into())
            })?;
            call.headers.push((IDEMPOTENCY_KEY.clone(), value));
            call.idempotent = true;
        }
        let response = self.shared.send(&self.auth, call).await?;
        let wire: RegisteredWire = response.json()?;
        Ok(wire.into_registered(response.status))
    }

    /// `GET /api/agents` — one page.
    pub async fn list_agents(&self, query: &ListAgentsQuery) -> Result<AgentPage> {
        let mut call = Call::new(Operation::ListAgents, Method::GET, ["api", "agents"]);
        call.query = query.pairs();
        self.shared.send(&self.auth, call).await?.json()
    }

    /// Every agent with exactly this name (following pages), ordered by `created_at`. At most one
    /// is not revoked.
    pub async fn find_agents_by_name(
        &self,
        name: &str,
        include_revoked: bool,
    ) -> Result<Vec<Agent>> {
        let mut found = Vec::new();
        let mut offset = 0u64;
        for _ in 0..FIND_MAX_PAGES {
            let query = ListAgentsQuery::new()
                .name(name)
                .include_revoked(include_revoked)
                .limit(FIND_PAGE_SIZE)
                .offset(offset);
            let page = self.list_agents(&query).await?;
            let n = page.items.len() as u64;
            found.extend(page.items.into_iter().filter(|a| a.name == name));
            if !page.has_more || n == 0 {
                break;
            }
            offset += n;
        }
        Ok(found)
    }

    /// `GET /api/agents/{id}` (revoked agents too).
    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent> {
        let call = Call::new(
            Operation::GetAgent,
            Method::GET,
            ["api", "agents", agent_id],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `PATCH /api/agents/{id}`.
    pub async fn update_agent(&self, agent_id: &str, update: &UpdateAgent) -> Result<Agent> {
        let call = Call::new(
            Operation::UpdateAgent,
            Method::PATCH,
            ["api", "agents", agent_id],
        )
        .json(update)?;
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `POST /api/agents/{id}/halt` (idempotent).
    pub async fn halt_agent(&self, agent_id: &str) -> Result<Agent> {
        let call = Call::new(
            Operation::HaltAgent,
            Method::POST,
            ["api", "agents", agent_id, "halt"],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `POST /api/agents/{id}/resume` (idempotent).
    pub async fn resume_agent(&self, agent_id: &str) -> Result<Agent> {
        let call = Call::new(
            Operation::ResumeAgent,
            Method::POST,
            ["api", "agents", agent_id, "resume"],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `DELETE /api/agents/{id}`: revokes the agent and all its keys (idempotent).
    pub async fn revoke_agent(&self, agent_id: &str) -> Result<Agent> {
        let call = Call::new(
            Operation::RevokeAgent,
            Method::DELETE,
            ["api", "agents", agent_id],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `POST /api/agents/{id}/keys`. Not idempotent: never retried after an ambiguous failure
    /// ([`Error::may_have_committed`] tells the caller a key may exist that nobody received).
    pub async fn mint_key(&self, agent_id: &str, name: Option<&str>) -> Result<MintedKey> {
        let call = Call::new(
            Operation::MintKey,
            Method::POST,
            ["api", "agents", agent_id, "keys"],
        )
        .json(&MintKeyBody { name })?;
        let response = self.shared.send(&self.auth, call).await?;
        let wire: MintedWire = response.json()?;
        wire.into_minted()
            .ok_or_else(|| response.decode_error("missing field `api_key`"))
    }

    /// `GET /api/agents/{id}/keys`: every key, revoked ones included, ordered by `created_at`.
    pub async fn list_keys(&self, agent_id: &str) -> Result<Vec<KeyInfo>> {
        let call = Call::new(
            Operation::ListKeys,
            Method::GET,
            ["api", "agents", agent_id, "keys"],
        );
        let wire: KeyListWire = self.shared.send(&self.auth, call).await?.json()?;
        Ok(wire.items)
    }

    /// `PATCH /api/agents/{id}/keys/{key_id}/deprecate` (idempotent).
    pub async fn deprecate_key(&self, agent_id: &str, key_id: &str) -> Result<KeyInfo> {
        let call = Call::new(
            Operation::DeprecateKey,
            Method::PATCH,
            ["api", "agents", agent_id, "keys", key_id, "deprecate"],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `PATCH /api/agents/{id}/keys/{key_id}/undeprecate` (idempotent).
    pub async fn undeprecate_key(&self, agent_id: &str, key_id: &str) -> Result<KeyInfo> {
        let call = Call::new(
            Operation::UndeprecateKey,
            Method::PATCH,
            ["api", "agents", agent_id, "keys", key_id, "undeprecate"],
        );
        self.shared.send(&self.auth, call).await?.json()
    }

    /// `DELETE /api/agents/{id}/keys/{key_id}[?force=true]` (idempotent). Without `force`, revoking
    /// the agent's last non-revoked key fails with 409 `last_active_key`.
    pub async fn revoke_key(&self, agent_id: &str, key_id: &str, force: bool) -> Result<KeyInfo> {
        let mut call = Call::new(
            Operation::RevokeKey,
            Method::DELETE,
            ["api", "agents", agent_id, "keys", key_id],
        );
        if force {
            call.query.push(("force", "true".to_owned()));
        }
        self.shared.send(&self.auth, call).await?.json()
    }
}
