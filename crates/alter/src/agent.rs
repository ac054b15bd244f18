//! The workload side, authenticated with a managed agent's key: the SDK's `Agent` class, for the
//! calls that say who the key is and record that it is in use.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;

use crate::config::ClientConfig;
use crate::error::Result;
use crate::key::AgentKey;
use crate::model::{Agent, Identity, Me};
use crate::operation::Operation;
use crate::transport::{Call, Credential, Shared};

/// A client acting as one managed agent, built from an [`AgentKey`]. Every call it makes is a use
/// of the key (Alter records `last_used_at`).
///
/// It cannot manage agents — there is no `create_agent` (nor any management call) on it, and an
/// [`crate::AppKey`] cannot build one:
///
/// ```compile_fail,E0599
/// # use alter::*;
/// # async fn f(config: ClientConfig, key: AgentKey) -> Result<()> {
/// let client = AgentClient::new(&config, key)?;
/// client.create_agent(&CreateAgent::new("sneaky"), None).await?; // no method `create_agent`
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # use alter::*;
/// # fn f(config: ClientConfig, key: AppKey) -> Result<()> {
/// let client = AgentClient::new(&config, key)?; // expected `AgentKey`, found `AppKey`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AgentClient {
    shared: Arc<Shared>,
    cred: Arc<Credential>,
}

impl fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClient")
            .field("base_url", &self.shared.base.as_str())
            .field("key", &"AgentKey(<redacted>)")
            .finish()
    }
}

impl AgentClient {
    /// A client for `config`'s base URL with this agent key.
    pub fn new(config: &ClientConfig, key: AgentKey) -> Result<Self> {
        Self::from_shared(config.build()?, key)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>, key: AgentKey) -> Result<Self> {
        Ok(Self {
            cred: Credential::new(key.expose_secret(), None)?,
            shared,
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.shared.base.as_str()
    }

    /// `GET /sdk/agents/me`: the agent this key belongs to, and whether the key is deprecated.
    /// Answers for a suspended agent too (so a workload can diagnose itself); a revoked key gets
    /// 401 `key_revoked`.
    pub async fn me(&self) -> Result<Me> {
        let call = Call::new(Operation::Me, Method::GET, ["sdk", "agents", "me"]);
        let response = self.shared.send(&self.cred, call).await?;
        let agent: Agent = response.json()?;
        Ok(Me {
            agent,
            key_deprecated: response.key_deprecated,
        })
    }

    /// `POST /sdk/identity/resolve` (headless): the app and agent this key resolves to. Refused
    /// for a suspended agent (401 `agent_inactive`).
    pub async fn resolve_identity(&self) -> Result<Identity> {
        let call = Call::new(
            Operation::ResolveIdentity,
            Method::POST,
            ["sdk", "identity", "resolve"],
        )
        .json(&serde_json::json!({ "include_profile": false }))?;
        self.shared.send(&self.cred, call).await?.json()
    }
}
