//! A typed async client for Alter's managed-agents API, spoken exactly as the public Python SDK
//! `alter-sdk==0.29.0` speaks it: the `/sdk/agents` routes, request signing, idempotent create,
//! the error codes and their meaning, `Retry-After`, the key-deprecation header. The wire is
//! written down in `docs/alter.md`.
//!
//! Two clients, two key types, so that "an app key manages agents; an agent key acts as one
//! agent" holds at compile time:
//!
//! - [`AppClient`], built from an [`AppKey`] (Alter's provisioning credential): create, list,
//!   get, get by name, update, suspend, resume, delete agents; mint, list, deprecate,
//!   undeprecate, revoke keys (with `force`).
//! - [`AgentClient`], built from an [`AgentKey`] (a workload's key): `me`, identity.
//!
//! ```no_run
//! use alter::{AppClient, AppKey, ClientConfig, CreateAgent, IdempotencyKey};
//!
//! # async fn run() -> alter::Result<()> {
//! let app_key: AppKey = std::env::var("ALTER_APP_KEY").unwrap_or_default().parse()?;
//! let config = ClientConfig::default().app_id("3f9c1d2e-0000-4000-8000-000000000001");
//! let client = AppClient::new(&config, app_key)?;
//! client.verify_app().await?; // the key belongs to the configured app
//! let request = CreateAgent::new("deploy-bot-staging")
//!     .display_name("Deploy bot (staging)")
//!     .scope("github", ["repo:deploy"])
//!     .metadata("k8s.uid", "4f1c…");
//! let idem = IdempotencyKey::new("lattice-operator/4f1c…/")?;
//! let created = client.create_agent(&request, Some(&idem)).await?;
//! // `api_key` is an `AgentKey`: its Debug is `AgentKey(<redacted>)`; `None` on a replay.
//! if let Some(key) = &created.api_key {
//!     store_somewhere(key.expose_secret());
//! }
//! # Ok(()) }
//! # fn store_somewhere(_: &str) {}
//! ```
//!
//! Managing agents with an agent key does not compile:
//!
//! ```compile_fail,E0308
//! use alter::{AgentKey, AppClient, ClientConfig, CreateAgent};
//! # async fn run(agent_key: AgentKey) -> alter::Result<()> {
//! let client = AppClient::new(&ClientConfig::default(), agent_key)?;
//! client.create_agent(&CreateAgent::new("x"), None).await?;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0599
//! use alter::{AgentClient, AgentKey, ClientConfig, CreateAgent};
//! # async fn run(agent_key: AgentKey) -> alter::Result<()> {
//! let client = AgentClient::new(&ClientConfig::default(), agent_key)?;
//! client.create_agent(&CreateAgent::new("x"), None).await?;
//! # Ok(()) }
//! ```
//!
//! The same code with the right key compiles (so the two above fail for the right reason):
//!
//! ```no_run
//! use alter::{AgentClient, AgentKey, AppClient, AppKey, ClientConfig, CreateAgent};
//! # async fn run(app_key: AppKey, agent_key: AgentKey) -> alter::Result<()> {
//! AppClient::new(&ClientConfig::default(), app_key)?
//!     .create_agent(&CreateAgent::new("x"), None)
//!     .await?;
//! AgentClient::new(&ClientConfig::default(), agent_key)?.me().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
mod app;
mod config;
mod error;
mod key;
mod model;
mod observe;
mod operation;
mod retry;
mod sign;
mod throttle;
mod transport;

pub use agent::AgentClient;
pub use app::AppClient;
pub use config::{
    ClientConfig, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{ApiError, Error, ErrorKind, Result};
pub use key::{AgentKey, AppKey, KeyError};
pub use model::{
    Agent, AgentPage, AgentStatus, AgentType, AuditActor, AuditEntry, AuditPage, CreateAgent,
    CreatedAgent, IdempotencyKey, Identity, JsonMap, KeyInfo, KeyStatus, ListAgentsQuery, Me,
    MintedKey, RegistryEntry, RegistryPage, Scopes, UpdateAgent,
};
pub use observe::{Attempt, AttemptOutcome, CallObserver};
pub use operation::Operation;
pub use retry::RetryPolicy;
pub use throttle::RateLimit;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
