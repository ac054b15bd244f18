//! # alter-emulator
//!
//! An emulator of Alter's managed-agents API as the public Python SDK `alter-sdk==0.29.0` speaks
//! it (`docs/alter.md`): the `/sdk/agents` routes with request-signature verification and a replay
//! guard, permission scopes per app key, app scoping, the per-agent audit feed, the agent
//! registry, `/sdk/agents/me` (the agent-side call that records a key's use), an admin API
//! (`/_admin/…`), run-time fault injection and optional persistence.
//!
//! ```no_run
//! # async fn demo() -> Result<(), alter_emulator::Error> {
//! use alter_emulator::{Emulator, EmulatorConfig, FaultConfig, RouteFaults};
//!
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! let app = emu.create_app("payments");
//! let key = emu.create_app_key(&app.id, "operator", None)?; // every scope
//! // … point a client at emu.base_url() with key.api_key …
//! emu.set_faults(FaultConfig::new().route("mint_key", RouteFaults::drop_response_next(1)));
//! let snapshot = emu.snapshot();
//! assert!(snapshot.live_agents().count() <= 1);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Its request and response types are its own: it shares no code with the `alter` client crate,
//! so a disagreement is a failing test.

#![warn(missing_docs)]

mod api_error;
mod error;
mod faults;
mod keys;
mod metrics;
mod model;
mod persist;
pub mod scopes;
mod server;
mod sign;
mod state;
mod time;
mod validate;
mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::Error;
pub use faults::{
    ALL_ROUTES, ErrorRate, FailNext, FaultConfig, Latency, OPERATIONS, RateLimit, RouteFaults,
    ThrottleNext,
};
pub use keys::{AGENT_KEY_SCHEME, APP_KEY_SCHEME, PREFIX_LEN};
pub use metrics::MetricsSnapshot;
pub use model::{
    Actor, ActorKind, Agent, AgentSnapshot, AgentStatus, AgentType, App, AppKey, AuditEntry,
    CreatedAppKey, JsonMap, Key, KeySnapshot, KeyStatus, RegistryEntry, Scopes, StateSnapshot,
};

use crate::persist::Persister;
use crate::server::Shared;
use crate::state::State;

/// Request bodies above this many bytes are refused with 413.
pub const BODY_LIMIT: usize = server::BODY_LIMIT;
/// Default number of non-revoked keys an agent may hold (409 `agent_key_limit_reached` beyond).
pub const DEFAULT_KEY_LIMIT: usize = state::DEFAULT_KEY_LIMIT;
/// Default accepted clock difference of a signed request's `X-Alter-Timestamp`.
pub const DEFAULT_SIGNATURE_WINDOW: Duration = Duration::from_secs(300);

/// How long a clean shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Persistence is debounced by at least this much.
const PERSIST_DEBOUNCE: Duration = Duration::from_millis(50);

/// How to start an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen. Default `127.0.0.1:0` (loopback, ephemeral port).
    pub bind: SocketAddr,
    /// Token of the admin API (`Authorization: Bearer <token>`); random when `None`.
    pub admin_token: Option<String>,
    /// Load the state from this JSON file (if it exists) and write it back atomically after
    /// changes and at shutdown. Holds key hashes, never plaintext.
    pub state_file: Option<PathBuf>,
    /// Faults active from the start.
    pub faults: FaultConfig,
    /// How far `X-Alter-Timestamp` may be from the emulator's clock. Default 300 s.
    pub signature_window: Duration,
    /// Non-revoked keys an agent may hold. Default 10.
    pub key_limit: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            admin_token: None,
            state_file: None,
            faults: FaultConfig::default(),
            signature_window: DEFAULT_SIGNATURE_WINDOW,
            key_limit: DEFAULT_KEY_LIMIT,
        }
    }
}

/// A running emulator. Dropping it stops it too (without waiting); [`Emulator::shutdown`] waits
/// for in-flight requests and the final state-file write.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Binds, loads the state file (if any) and serves on the current Tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, Error> {
        let (state, persister) = match &config.state_file {
            Some(path) => (
                persist::load(path, config.key_limit)?
                    .unwrap_or_else(|| State::new(config.key_limit)),
                Some(Persister::new(path.clone())),
            ),
            None => (State::new(config.key_limit), None),
        };
        let admin_token = config
            .admin_token
            .clone()
            .unwrap_or_else(|| format!("emu_admin_{}", keys::random_alnum(32)));
        let shared = Arc::new(Shared::new(
            state,
            admin_token,
            persister,
            config.signature_window,
        ));
        shared.set_faults(config.faults.clone())?;
        if let Some(p) = &shared.persister {
            // Fail now, not at the first change, if the file cannot be written.
            p.save(&shared.state)?;
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, shared.clone(), stop_rx));
        tracing::info!(%addr, "alter emulator listening");
        Ok(Emulator {
            shared,
            addr,
            stop,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT` (what the SDK's `ALTER_BASE_URL` takes).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API token.
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// Creates an app (a tenant: its agents, names and idempotency keys are its own).
    pub fn create_app(&self, name: &str) -> App {
        create_app(&self.shared, name.to_owned())
    }

    /// Creates an app key with these scopes (`None`: all of [`scopes::ALL_SCOPES`]); the returned
    /// plaintext exists nowhere else. Audited as an admin action.
    pub fn create_app_key(
        &self,
        app_id: &str,
        label: &str,
        scopes: Option<&[&str]>,
    ) -> Result<CreatedAppKey, Error> {
        create_app_key(
            &self.shared,
            app_id,
            label.to_owned(),
            scopes.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
        )
    }

    /// Revokes an app key (idempotent): its next call gets 401 `invalid_key`.
    pub fn revoke_app_key(&self, id: &str) -> Result<(), Error> {
        let uuid = uuid::Uuid::try_parse(id).map_err(|_| Error::AppKeyNotFound(id.to_owned()))?;
        let done = self
            .shared
            .with_state(|s| s.revoke_app_key(uuid, time::now()));
        self.shared.changed();
        done.map(|_| ())
            .ok_or_else(|| Error::AppKeyNotFound(id.to_owned()))
    }

    /// Deprecates (or undeprecates) an app key: it keeps working, its responses carry
    /// `X-Alter-Key-Deprecated: true`.
    pub fn set_app_key_deprecated(&self, id: &str, deprecated: bool) -> Result<(), Error> {
        let uuid = uuid::Uuid::try_parse(id).map_err(|_| Error::AppKeyNotFound(id.to_owned()))?;
        let done = self
            .shared
            .with_state(|s| s.set_app_key_deprecated(uuid, deprecated, time::now()));
        self.shared.changed();
        done.map(|_| ())
            .ok_or_else(|| Error::AppKeyNotFound(id.to_owned()))
    }

    /// Changes the per-agent key limit (for tests of `agent_key_limit_reached`).
    pub fn set_key_limit(&self, limit: usize) {
        self.shared.with_state(|s| s.set_key_limit(limit));
    }

    /// Replaces the fault configuration; an invalid one is logged and ignored (see
    /// [`Emulator::try_set_faults`]).
    pub fn set_faults(&self, faults: FaultConfig) {
        if let Err(e) = self.try_set_faults(faults) {
            tracing::error!(error = %e, "fault configuration ignored");
        }
    }

    /// Replaces the fault configuration, or says why it is invalid.
    pub fn try_set_faults(&self, faults: FaultConfig) -> Result<(), Error> {
        self.shared.set_faults(faults)
    }

    /// The current faults, counters as they are now.
    pub fn faults(&self) -> FaultConfig {
        self.shared.faults.get()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let _ = self.shared.set_faults(FaultConfig::default());
    }

    /// Apps, app keys, agents with their keys: no plaintext, no hashes.
    pub fn snapshot(&self) -> StateSnapshot {
        self.shared.with_state(|s| s.snapshot(time::now()))
    }

    /// The whole audit trail, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.with_state(|s| s.audit(0, usize::MAX))
    }

    /// Requests of that operation ([`OPERATIONS`], `healthz`, `admin`, `unrouted`) received,
    /// whatever their outcome.
    pub fn request_count(&self, operation: &str) -> u64 {
        self.shared.metrics.snapshot().count(operation)
    }

    /// Request counts by operation and status.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Writes the state file now (if there is one and the state changed).
    pub fn persist_now(&self) -> Result<(), Error> {
        match &self.shared.persister {
            Some(p) => p.save(&self.shared.state).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), writes the state file.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn create_app(shared: &Shared, name: String) -> App {
    let rec = shared.with_state(|s| s.create_app(name, time::now()));
    shared.changed();
    App {
        id: rec.id.to_string(),
        name: rec.name,
        created_at: rec.created_at,
    }
}

pub(crate) fn create_app_key(
    shared: &Shared,
    app_id: &str,
    label: String,
    scopes: Option<Vec<String>>,
) -> Result<CreatedAppKey, Error> {
    let scopes =
        scopes.unwrap_or_else(|| scopes::ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = scopes.iter().find(|s| !scopes::is_known(s)) {
        return Err(Error::InvalidArgument(format!(
            "unknown scope {bad:?}; known: {}",
            scopes::ALL_SCOPES.join(", ")
        )));
    }
    if label.is_empty() {
        return Err(Error::InvalidArgument("an app key needs a label".into()));
    }
    let app = uuid::Uuid::try_parse(app_id).map_err(|_| Error::AppNotFound(app_id.to_owned()))?;
    let minted = keys::mint_app_key();
    let rec = shared
        .with_state(|s| s.create_app_key(app, label, scopes, &minted, time::now()))
        .ok_or_else(|| Error::AppNotFound(app_id.to_owned()))?;
    shared.changed();
    Ok(CreatedAppKey {
        id: rec.id.to_string(),
        app_id: rec.app_id.to_string(),
        label: rec.label,
        api_key: minted.plaintext,
        key_prefix: rec.key_prefix,
        scopes: rec.scopes,
        created_at: rec.created_at,
    })
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let persist_task = shared.persister.is_some().then(|| {
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(persist_loop(shared, stop))
    });
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let service = service_fn(move |req| server::handle(shared.clone(), req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(None)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
    if let Some(task) = persist_task {
        let _ = task.await;
    }
    if let Some(p) = &shared.persister {
        let path = p.path().display().to_string();
        let sh = shared.clone();
        let result = tokio::task::spawn_blocking(move || match &sh.persister {
            Some(p) => p.save(&sh.state),
            None => Ok(false),
        })
        .await;
        match result {
            Ok(Ok(_)) => tracing::info!(%path, "state saved"),
            Ok(Err(e)) => tracing::error!(error = %e, "final state write failed"),
            Err(e) => tracing::error!(error = %e, "final state write panicked"),
        }
    }
    tracing::info!("alter emulator stopped");
}

async fn persist_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(p) = &shared.persister else { return };
    let mut debounce = PERSIST_DEBOUNCE;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = p.notify.notified() => {}
        }
        tokio::time::sleep(debounce).await;
        let sh = shared.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || match &sh.persister {
            Some(p) => p.save(&sh.state),
            None => Ok(false),
        })
        .await;
        // Writing the whole state stays a small share of the time, however large it grows.
        debounce = PERSIST_DEBOUNCE
            .max(started.elapsed() * 4)
            .min(Duration::from_secs(5));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "state write failed; will retry on the next change")
            }
            Err(e) => tracing::error!(error = %e, "state write panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handle_is_shareable() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<super::Emulator>();
        send_sync::<super::StateSnapshot>();
        send_sync::<super::FaultConfig>();
    }
}
