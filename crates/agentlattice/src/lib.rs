//! A typed async client for AgentLattice, following the project's wire contract
//! (`docs/agentlattice-api.md`).
//!
//! Two clients, two key types, so that the published rule "a service key can register agents but
//! cannot act as one; an agent key can act but cannot register" holds at compile time:
//!
//! - [`ProvisionerClient`], built from a [`ServiceKey`]: register, list/find, get, update, halt,
//!   resume, revoke agents; mint, list, deprecate, undeprecate, revoke keys.
//! - [`AgentClient`], built from an [`AgentKey`]: whoami, execute an action.
//!
//! ```no_run
//! use agentlattice::{ClientConfig, IdempotencyKey, ProvisionerClient, RegisterAgent, ServiceKey};
//!
//! # async fn run() -> agentlattice::Result<()> {
//! let service_key: ServiceKey = std::env::var("AL_SERVICE_KEY").unwrap_or_default().parse()?;
//! let client = ProvisionerClient::new(&ClientConfig::default(), service_key)?;
//! let request = RegisterAgent::new("deploy-bot-staging")
//!     .capabilities(["deploy.staging", "rollback.staging"])
//!     .metadata("k8s.uid", "4f1c…");
//! let idem = IdempotencyKey::new("lattice-operator/4f1c…/")?;
//! let registered = client.register(&request, Some(&idem)).await?;
//! // `api_key` is an `AgentKey`: its Debug is `AgentKey(<redacted>)`; `None` on a replay.
//! if let Some(key) = &registered.api_key {
//!     store_somewhere(key.expose_secret());
//! }
//! # Ok(()) }
//! # fn store_somewhere(_: &str) {}
//! ```
//!
//! Registering with an agent key does not compile:
//!
//! ```compile_fail,E0308
//! use agentlattice::{AgentKey, ClientConfig, ProvisionerClient, RegisterAgent};
//! # async fn run(agent_key: AgentKey) -> agentlattice::Result<()> {
//! let client = ProvisionerClient::new(&ClientConfig::default(), agent_key)?;
//! client.register(&RegisterAgent::new("x"), None).await?;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0599
//! use agentlattice::{AgentClient, AgentKey, ClientConfig, RegisterAgent};
//! # async fn run(agent_key: AgentKey) -> agentlattice::Result<()> {
//! let client = AgentClient::new(&ClientConfig::default(), agent_key)?;
//! client.register(&RegisterAgent::new("x"), None).await?;
//! # Ok(()) }
//! ```
//!
//! The same code with the right key and client compiles (so the two examples above fail for the
//! right reason):
//!
//! ```no_run
//! use agentlattice::{ClientConfig, ProvisionerClient, RegisterAgent, ServiceKey};
//! # async fn run(service_key: ServiceKey) -> agentlattice::Result<()> {
//! let client = ProvisionerClient::new(&ClientConfig::default(), service_key)?;
//! client.register(&RegisterAgent::new("x"), None).await?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! use agentlattice::{AgentClient, AgentKey, ClientConfig};
//! # async fn run(agent_key: AgentKey) -> agentlattice::Result<()> {
//! let client = AgentClient::new(&ClientConfig::default(), agent_key)?;
//! client.whoami().await?;
//! # Ok(()) }
//! ```
//!
//! Retries, the shared `Retry-After` gate, the client-side rate limit and the redaction rules are
//! described in the crate's README.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
mod config;
mod error;
mod key;
mod model;
mod observe;
mod provisioner;
mod retry;
mod throttle;
mod transport;

pub use agent::AgentClient;
pub use agentlattice_contract::Operation;
pub use config::{
    ClientConfig, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{ApiError, Error, Result};
pub use key::{AgentKey, KeyError, ServiceKey};
pub use model::{
    ActionRequest, ActionResult, ActionStatus, Agent, AgentPage, AgentStatus, IdempotencyKey,
    KeyInfo, KeyStatus, ListAgentsQuery, MintedKey, RegisterAgent, RegisteredAgent, UpdateAgent,
    Whoami,
};
pub use observe::{Attempt, AttemptOutcome, CallObserver};
pub use provisioner::ProvisionerClient;
pub use retry::RetryPolicy;
pub use throttle::RateLimit;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
