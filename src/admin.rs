//! The admin HTTP server: `/metrics` (Prometheus text format), `/healthz` (the process is alive)
//! and `/readyz`.
//!
//! `/readyz` follows the replica's [`Phase`]: not ready while the CRD is missing; ready as a
//! standby (another replica holds the Lease: a standby that never became ready would stall every
//! rolling update of a two-replica Deployment); as the leader, ready once every cache has synced;
//! not ready again once it is shutting down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::operator::Readiness;

/// Where a replica is in its life, for `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PhaseKind {
    /// Waiting for the LatticeAgent CRD to be installed.
    WaitingForCrd = 0,
    /// The CRD is installed; another replica holds the Lease.
    Standby = 1,
    /// Running the controllers (ready once the caches have synced).
    Running = 2,
    /// Stopping (SIGTERM or lost leadership).
    Stopping = 3,
}

/// The shared, changing [`PhaseKind`] of this replica.
#[derive(Clone, Debug)]
pub struct Phase(Arc<AtomicU8>);

impl Phase {
    /// Starts in `kind`.
    pub fn new(kind: PhaseKind) -> Phase {
        Phase(Arc::new(AtomicU8::new(kind as u8)))
    }

    /// Moves to `kind`.
    pub fn set(&self, kind: PhaseKind) {
        self.0.store(kind as u8, Ordering::SeqCst);
    }

    /// The current phase.
    pub fn get(&self) -> PhaseKind {
        match self.0.load(Ordering::SeqCst) {
            0 => PhaseKind::WaitingForCrd,
            1 => PhaseKind::Standby,
            2 => PhaseKind::Running,
            _ => PhaseKind::Stopping,
        }
    }
}

/// What the admin server serves.
#[derive(Clone, Debug)]
pub struct Admin {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    phase: Phase,
}

impl Admin {
    /// Serves `metrics`, and readiness from the operator's caches (the replica is taken to be
    /// running: see [`Admin::with_phase`]).
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Admin {
        Admin {
            metrics,
            readiness,
            phase: Phase::new(PhaseKind::Running),
        }
    }

    /// Follows `phase` for `/readyz`.
    pub fn with_phase(mut self, phase: Phase) -> Admin {
        self.phase = phase;
        self
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<&'static str> {
        match self.phase.get() {
            PhaseKind::WaitingForCrd => {
                Some("the CustomResourceDefinition latticeagents.agentlattice.io is not installed")
            }
            PhaseKind::Standby => None,
            PhaseKind::Running if self.readiness.is_ready() => None,
            PhaseKind::Running => Some("the caches have not synced yet"),
            PhaseKind::Stopping => Some("shutting down"),
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String, content_type: &'static str| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            r
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
                "text/plain; charset=utf-8",
            );
        }
        match req.uri().path() {
            "/metrics" => text(
                StatusCode::OK,
                self.metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            "/healthz" | "/livez" => {
                text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8")
            }
            "/readyz" => match self.not_ready() {
                None if self.phase.get() == PhaseKind::Standby => text(
                    StatusCode::OK,
                    "ok: standby (another replica holds the Lease)\n".into(),
                    "text/plain; charset=utf-8",
                ),
                None => text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8"),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                    "text/plain; charset=utf-8",
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found\n".into(),
                "text/plain; charset=utf-8",
            ),
        }
    }
}

/// Binds the admin server's address (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, admin: Admin, shutdown: impl Future<Output = ()>) {
    let admin = Arc::new(admin);
    let accept = async {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "admin server: accept failed");
                    continue;
                }
            };
            let admin = Arc::clone(&admin);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = admin.respond(&req);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "admin server: connection error");
                }
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound address at once and the
/// server as a future.
pub async fn start(
    addr: SocketAddr,
    admin: Admin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let (listener, local) = bind(addr).await?;
    Ok((local, serve(listener, admin, shutdown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_phase() {
        let phase = Phase::new(PhaseKind::WaitingForCrd);
        let admin =
            Admin::new(Arc::new(Metrics::new()), Readiness::default()).with_phase(phase.clone());
        assert!(
            admin
                .not_ready()
                .is_some_and(|w| w.contains("not installed"))
        );
        phase.set(PhaseKind::Standby);
        assert_eq!(admin.not_ready(), None, "a standby is ready");
        phase.set(PhaseKind::Running);
        assert!(admin.not_ready().is_some_and(|w| w.contains("caches")));
        phase.set(PhaseKind::Stopping);
        assert_eq!(admin.not_ready(), Some("shutting down"));
        assert_eq!(phase.get(), PhaseKind::Stopping);
    }
}
