//! # agentlattice-emulator
//!
//! A faithful emulator of the AgentLattice API as written down in the project's wire contract
//! (`docs/agentlattice-api.md`): the provisioning API (service keys), the agent API (agent keys),
//! the emulator-only admin API (`/_admin/…`) and `/healthz`, with run-time fault injection and
//! optional persistence. Every operator test, the `dev` mode and the benchmarks run against it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agentlattice_emulator::Error> {
//! use agentlattice_emulator::{Emulator, EmulatorConfig, FaultConfig, RouteFaults};
//!
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! let svc = emu.create_service_key("ci");
//! // … point a client at emu.base_url() with svc.api_key …
//! emu.set_faults(FaultConfig::new().route("register", RouteFaults::drop_response_next(1)));
//! let snapshot = emu.snapshot();
//! assert!(snapshot.live_agents().count() <= 1);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The emulator's request and response types are its own, written from the contract; it shares no
//! code with the `agentlattice` client crate, so that a disagreement is a failing test.

#![warn(missing_docs)]

mod api_error;
mod error;
mod faults;
mod keys;
mod metrics;
mod model;
mod persist;
mod server;
mod state;
mod time;
mod validate;
mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
pub use keys::{AGENT_SCHEME, BODY_LEN, PREFIX_LEN, SERVICE_SCHEME};
pub use metrics::MetricsSnapshot;
pub use model::{
    Actor, ActorKind, Agent, AgentSnapshot, AgentStatus, AuditEntry, CreatedServiceKey, Key,
    KeyStatus, ServiceKey, ServiceKeyStatus, StateSnapshot,
};

use crate::persist::Persister;
use crate::server::Shared;
use crate::state::State;

/// Request bodies above this many bytes are refused with 413 `payload_too_large`.
pub const BODY_LIMIT: usize = server::BODY_LIMIT;
/// At most this many non-revoked keys per agent (409 `agent_key_limit_reached` beyond).
pub const KEY_LIMIT: usize = state::KEY_LIMIT;

/// How long a clean shutdown waits for in-flight requests before closing their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Persistence is debounced by this much: a burst of changes becomes one write.
const PERSIST_DEBOUNCE: Duration = Duration::from_millis(50);

/// How to start an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen. Default `127.0.0.1:0` (loopback, ephemeral port).
    pub bind: SocketAddr,
    /// Token for the admin API (`Authorization: Bearer <token>`); random when `None`.
    pub admin_token: Option<String>,
    /// Load the state from this JSON file at start (if it exists) and write it back, atomically,
    /// after changes and at shutdown. Holds key hashes, never plaintext.
    pub state_file: Option<PathBuf>,
    /// Send error bodies as `{"detail": {"error", "message"}}` instead of `{"error", "message"}`.
    pub wrap_errors_in_detail: bool,
    /// Faults active from the start.
    pub faults: FaultConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            admin_token: None,
            state_file: None,
            wrap_errors_in_detail: false,
            faults: FaultConfig::default(),
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
    /// Binds, loads the state file (if any) and starts serving on the current Tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, Error> {
        let (state, persister) = match &config.state_file {
            Some(path) => {
                let state = persist::load(path)?.unwrap_or_else(State::new);
                (state, Some(Persister::new(path.clone())))
            }
            None => (State::new(), None),
        };
        let admin_token = config
            .admin_token
            .clone()
            .unwrap_or_else(|| format!("emu_admin_{}", keys::random_alnum(32)));
        let shared = Arc::new(Shared::new(
            state,
            admin_token,
            config.wrap_errors_in_detail,
            persister,
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
        tracing::info!(%addr, "agentlattice emulator listening");
        Ok(Emulator {
            shared,
            addr,
            stop,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API token.
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// Creates a service key; the returned plaintext exists nowhere else. Recorded in the audit
    /// trail as an admin action.
    pub fn create_service_key(&self, label: &str) -> CreatedServiceKey {
        create_service_key(&self.shared, label.to_owned())
    }

    /// Revokes a service key (idempotent). Its agents and their keys keep working.
    pub fn revoke_service_key(&self, id: &str) -> Result<(), Error> {
        let uuid =
            uuid::Uuid::try_parse(id).map_err(|_| Error::ServiceKeyNotFound(id.to_owned()))?;
        let revoked = self
            .shared
            .state
            .lock()
            .revoke_service_key(uuid, time::now());
        self.shared.changed();
        revoked
            .map(|_| ())
            .ok_or_else(|| Error::ServiceKeyNotFound(id.to_owned()))
    }

    /// Replaces the fault configuration. An invalid configuration (unknown route name, rate
    /// outside 0..=1, …) is logged and ignored; use [`Emulator::try_set_faults`] to get the error.
    pub fn set_faults(&self, faults: FaultConfig) {
        if let Err(e) = self.try_set_faults(faults) {
            tracing::error!(error = %e, "fault configuration ignored");
        }
    }

    /// Replaces the fault configuration, or says why it is invalid.
    pub fn try_set_faults(&self, faults: FaultConfig) -> Result<(), Error> {
        self.shared.set_faults(faults)
    }

    /// The current fault configuration, with counters as they are now.
    pub fn faults(&self) -> FaultConfig {
        self.shared.faults.get()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let _ = self.shared.set_faults(FaultConfig::default());
    }

    /// Switches the `{"detail": {...}}` error wrapping at run time.
    pub fn set_wrap_errors_in_detail(&self, wrap: bool) {
        self.shared.wrap_errors.store(wrap, Ordering::Relaxed);
    }

    /// Every service key and every agent with its keys: no plaintext, no hashes.
    pub fn snapshot(&self) -> StateSnapshot {
        self.shared.state.lock().snapshot()
    }

    /// The whole audit trail, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.state.lock().audit(0, usize::MAX)
    }

    /// How many requests of that operation (contract name, or `healthz`, `admin`, `unrouted`)
    /// the emulator has received, whatever their outcome — faults and dropped responses included.
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

pub(crate) fn create_service_key(shared: &Shared, label: String) -> CreatedServiceKey {
    let minted = keys::mint(keys::KeyKind::Service);
    let rec = shared
        .state
        .lock()
        .create_service_key(label, &minted, time::now());
    shared.changed();
    CreatedServiceKey {
        id: rec.id.to_string(),
        api_key: minted.plaintext,
        key_prefix: rec.key_prefix,
        label: rec.label,
        created_at: rec.created_at,
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let persist_task = shared.persister.is_some().then(|| {
        let shared = shared.clone();
        let stop = stop.clone();
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
                // No header-read timeout: it would also close idle keep-alive connections, and a
                // client reusing one at that moment would see a spurious transport error.
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
        let shared = shared.clone();
        let path = p.path().to_owned();
        let result = tokio::task::spawn_blocking(move || match &shared.persister {
            Some(p) => p.save(&shared.state),
            None => Ok(false),
        })
        .await;
        match result {
            Ok(Ok(_)) => tracing::info!(path = %path.display(), "state saved"),
            Ok(Err(e)) => tracing::error!(error = %e, "final state write failed"),
            Err(e) => tracing::error!(error = %e, "final state write panicked"),
        }
    }
    tracing::info!("agentlattice emulator stopped");
}

async fn persist_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(p) = &shared.persister else { return };
    // The whole state is rewritten each time: with a large state, wait longer between writes so
    // that writing never takes more than about a fifth of the time.
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
    fn the_handle_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<super::Emulator>();
        send_sync::<super::StateSnapshot>();
        send_sync::<super::FaultConfig>();
    }
}
