//! The listener: one task per connection, HTTP/1.1 (and h2 when negotiated), plain or TLS,
//! graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::State;

pub async fn serve(
    listener: TcpListener,
    st: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                let shutdown = shutdown.clone();
                match acceptor.clone() {
                    Some(acc) => {
                        tokio::spawn(async move {
                            if let Ok(s) = acc.accept(stream).await {
                                connection(TokioIo::new(s), st, true, shutdown).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(connection(TokioIo::new(stream), st, false, shutdown));
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection<I>(io: I, st: Arc<State>, tls: bool, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(crate::handler::handle(st, req, tls).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
        }
    }
}
