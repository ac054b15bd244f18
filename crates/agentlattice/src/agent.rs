//! The agent API (contract §3), authenticated with an agent key.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use crate::Operation;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::key::AgentKey;
use crate::model::{ActionRequest, ActionResult, ActionWire, Whoami, wire_timestamp};
use crate::transport::{Auth, Call, Shared};

/// `X-AL-Event-ID`.
static EVENT_ID: HeaderName = HeaderName::from_static("x-al-event-id");

/// A client for the agent API, built from an [`AgentKey`]. Cheap to clone (clones share the pool,
/// rate limit and gate).
///
/// It cannot provision: there is no `register` (nor any other provisioning call) on it, and a
/// [`crate::ServiceKey`] cannot build one.
///
/// ```compile_fail,E0599
/// # use agentlattice::*;
/// # async fn f(config: ClientConfig, key: AgentKey) -> Result<()> {
/// let client = AgentClient::new(&config, key)?;
/// client.register(&RegisterAgent::new("sneaky"), None).await?; // no method `register`
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # use agentlattice::*;
/// # fn f(config: ClientConfig, key: ServiceKey) -> Result<()> {
/// let client = AgentClient::new(&config, key)?; // expected `AgentKey`, found `ServiceKey`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AgentClient {
    shared: Arc<Shared>,
    auth: Auth,
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
        Self::from_shared(config.build()?, &key)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>, key: &AgentKey) -> Result<Self> {
        Ok(Self {
            shared,
            auth: Auth::bearer(key.expose_secret())?,
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.shared.base.as_str()
    }

    /// `GET /api/v1/whoami`. [`Whoami::key_deprecated`] tells whether this key is being retired.
    pub async fn whoami(&self) -> Result<Whoami> {
        let call = Call::new(Operation::Whoami, Method::GET, ["api", "v1", "whoami"]);
        let response = self.shared.send(&self.auth, call).await?;
        let mut whoami: Whoami = response.json()?;
        whoami.key_deprecated = response.key_deprecated();
        Ok(whoami)
    }

    /// `POST /api/v1/actions`. The same `X-AL-Event-ID` is sent on every attempt, so a retry after
    /// an ambiguous failure gets the first result rather than a second action.
    pub async fn execute_action(&self, action: &ActionRequest) -> Result<ActionResult> {
        let event_id = action
            .event_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let event_header = HeaderValue::from_str(&event_id).map_err(|_| {
            Error::InvalidArgument("the event id is not a valid header value".into())
        })?;
        let body = ActionWire {
            action_type: &action.action_type,
            timestamp: wire_timestamp(action.timestamp.unwrap_or_else(jiff::Timestamp::now)),
            data_accessed: &action.data_accessed,
            metadata: &action.metadata,
        };
        let mut call = Call::new(
            Operation::ExecuteAction,
            Method::POST,
            ["api", "v1", "actions"],
        )
        .json(&body)?;
        call.headers.push((EVENT_ID.clone(), event_header));
        let response = self.shared.send(&self.auth, call).await?;
        let mut result: ActionResult = response.json()?;
        result.event_id = event_id;
        result.key_deprecated = response.key_deprecated();
        Ok(result)
    }
}
