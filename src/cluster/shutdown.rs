//! Stopping a kube-runtime controller: [`drain_or_drop`].

use std::future::Future;
use std::hash::Hash;

use futures::FutureExt;
use kube::runtime::reflector::{Lookup, Store};

/// Drives `controller` — a kube-runtime controller run to its end, built with
/// `graceful_shutdown_on(shutdown)` on a trigger stream that fills `store` — until it ends (a
/// graceful shutdown *drains* it: its running reconciles finish); or, when `shutdown` comes
/// before `store` has listed, *drops* it.
///
/// The ordering this rests on — **a shutdown waits only for a controller whose store has
/// listed**: kube-runtime starts no reconcile before the controller's store has listed (its
/// runner is held until `Store::wait_until_ready`), and its graceful shutdown stops polling the
/// trigger streams — the watch that fills the store among them — and then waits for the runner to
/// end. A runner still held never ends, so a shutdown before the store's first list waited
/// forever: the process logged "shutting down" and hung until SIGKILL (issue 16, found by the
/// chaos runner; `a_sigterm_before_the_workloads_have_listed_stops_the_process` and
/// `a_sigterm_before_the_lattice_agents_have_listed_stops_the_process` in `tests/chaos.rs`,
/// `drain_or_drop_*` there for this function alone). Such a controller has started nothing,
/// so there is nothing to finish: it is dropped, and with it the watch and the store's writer
/// (whoever waits for that store is told it will not list). Looking at the store once, when the
/// shutdown has come, is enough: from then on its watch is not polled, so it cannot list later.
pub async fn drain_or_drop<K>(
    controller: impl Future<Output = ()>,
    store: &Store<K>,
    shutdown: impl Future<Output = ()>,
) where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let unlisted_at_shutdown = async {
        shutdown.await;
        match store.wait_until_ready().now_or_never() {
            // Listed: the graceful shutdown drains the controller.
            Some(Ok(())) => std::future::pending::<()>().await,
            // Not listed (or its writer is gone already): nothing was started.
            None | Some(Err(_)) => {
                tracing::debug!("stopped before its store listed: the controller is dropped");
            }
        }
    };
    tokio::select! {
        () = controller => {}
        () = unlisted_at_shutdown => {}
    }
}
