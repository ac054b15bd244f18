//! Resolves when the process is asked to stop: SIGTERM (what Kubernetes sends a pod, and
//! `kill`), or Ctrl-C (SIGINT). Every binary of the workspace stops gracefully on it: the
//! operator, `kube-sim`, and the two emulators.
//!
//! ```no_run
//! # async fn serve() {}
//! # async fn example() {
//! tokio::select! {
//!     () = serve() => {}
//!     () = shutdown_signal::requested() => {}
//! }
//! # }
//! ```

/// Resolves on SIGTERM or Ctrl-C. Where SIGTERM cannot be listened for (not a Unix system, or
/// the handler could not be installed), on Ctrl-C alone.
pub async fn requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn sigterm_is_a_request_to_stop() {
        let waiting = tokio::spawn(super::requested());
        // Let the handler be installed before the signal is sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("resolved after SIGTERM")
            .expect("no panic");
    }
}
