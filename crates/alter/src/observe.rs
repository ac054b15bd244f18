//! Observability hooks without a metrics crate: the caller plugs its own counters in.

use std::borrow::Cow;
use std::time::Duration;

use crate::operation::Operation;

/// Told about every HTTP attempt (retries included) and every wait at the shared throttle. Must be
/// quick and must not block: it runs on the caller's task. Any `Fn(&Attempt<'_>) + Send + Sync`
/// closure is one.
pub trait CallObserver: Send + Sync {
    /// One attempt finished (a response was read, or it failed).
    fn on_attempt(&self, attempt: &Attempt<'_>);

    /// A call waited `waited` (> 0) at the client-side rate limit or the `Retry-After` gate.
    fn on_throttle_wait(&self, operation: Operation, waited: Duration) {
        let _ = (operation, waited);
    }
}

impl<F> CallObserver for F
where
    F: Fn(&Attempt<'_>) + Send + Sync,
{
    fn on_attempt(&self, attempt: &Attempt<'_>) {
        self(attempt)
    }
}

/// One attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt<'a> {
    /// The operation ([`Operation::as_str`] is the metric label).
    pub operation: Operation,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// The status, or how the attempt failed without one.
    pub outcome: AttemptOutcome,
    /// From sending to having read the whole response (or the failure).
    pub duration: Duration,
    /// `X-Request-Id` of the response.
    pub request_id: Option<&'a str>,
    /// Whether the client will try again.
    pub will_retry: bool,
    /// The response carried `X-Alter-Key-Deprecated: true`: the key in use is being retired.
    pub key_deprecated: bool,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// A response with this status.
    Status(u16),
    /// No complete response in time.
    Timeout,
    /// The connection failed.
    Transport,
}

impl AttemptOutcome {
    /// A metric label: `"201"`, `"429"`, `"timeout"`, `"transport"`.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            AttemptOutcome::Status(s) => Cow::Owned(s.to_string()),
            AttemptOutcome::Timeout => Cow::Borrowed("timeout"),
            AttemptOutcome::Transport => Cow::Borrowed("transport"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_observe_and_labels_are_stable() {
        let seen = std::sync::Mutex::new(Vec::new());
        let obs = |a: &Attempt<'_>| seen.lock().unwrap().push(a.outcome.label().into_owned());
        obs.on_attempt(&Attempt {
            operation: Operation::Me,
            attempt: 1,
            outcome: AttemptOutcome::Status(200),
            duration: Duration::ZERO,
            request_id: None,
            will_retry: false,
            key_deprecated: false,
        });
        obs.on_throttle_wait(Operation::Me, Duration::from_secs(1));
        assert_eq!(*seen.lock().unwrap(), ["200"]);
        assert_eq!(AttemptOutcome::Timeout.label(), "timeout");
        assert_eq!(AttemptOutcome::Transport.label(), "transport");
    }
}
