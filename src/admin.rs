//! The admin HTTP server: `/metrics` (Prometheus text format), `/healthz` (the process is alive)
//! and `/readyz` (the CRD is installed and every cache has synced).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::controller::Readiness;
use crate::error::Result;
use crate::metrics::Metrics;

/// What the admin server serves.
#[derive(Clone, Debug)]
pub struct Admin {
    /// Metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Readiness for `/readyz`.
    pub readiness: Readiness,
}

impl Admin {
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
            "/readyz" if self.readiness.is_ready() => {
                text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8")
            }
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the caches have not synced yet\n".into(),
                "text/plain; charset=utf-8",
            ),
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
