//! Observability hooks, without a metrics crate: the operator plugs its own counters in.

use std::borrow::Cow;
use std::time::Duration;

use crate::Operation;

/// Called for every HTTP attempt a client makes (retries included), and for time spent waiting at
/// the client's shared throttle. Implementations must be quick and must not block: they run on the
/// caller's task.
///
/// Any `Fn(&Attempt<'_>) + Send + Sync` closure is an observer.
pub trait CallObserver: Send + Sync {
    /// One HTTP attempt finished (a response was read, or it failed).
    fn on_attempt(&self, attempt: &Attempt<'_>);

    /// A call waited `waited` at the client's rate limit or shared `Retry-After` gate before an
    /// attempt. Called only when the wait was not zero.
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

/// What an observer learns about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt<'a> {
    /// The operation (its [`Operation::as_str`] is the metric label).
    pub operation: Operation,
    /// 1 for the first attempt of a call, 2 for the first retry, …
    pub attempt: u32,
    /// The HTTP status, or how the attempt failed without one.
    pub outcome: AttemptOutcome,
    /// From sending the request to having read the whole response (or the failure).
    pub duration: Duration,
    /// `X-Request-Id` of the response, when there was one.
    pub request_id: Option<&'a str>,
    /// Whether the client will try again.
    pub will_retry: bool,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// A response with this status.
    Status(u16),
    /// No complete response within the timeout.
    Timeout,
    /// The connection failed.
    Transport,
}

impl AttemptOutcome {
    /// The HTTP status, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// A metric label: the status code (`"200"`, `"429"`), or `"timeout"` / `"transport"`.
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
    fn labels() {
        assert_eq!(AttemptOutcome::Status(201).label(), "201");
        assert_eq!(AttemptOutcome::Timeout.label(), "timeout");
        assert_eq!(AttemptOutcome::Transport.label(), "transport");
        assert_eq!(AttemptOutcome::Status(429).status(), Some(429));
        assert_eq!(AttemptOutcome::Timeout.status(), None);
    }

    #[test]
    fn closures_are_observers() {
        let seen = std::sync::Mutex::new(Vec::new());
        let obs = |a: &Attempt<'_>| seen.lock().unwrap().push(a.operation.as_str());
        obs.on_attempt(&Attempt {
            operation: Operation::Whoami,
            attempt: 1,
            outcome: AttemptOutcome::Status(200),
            duration: Duration::ZERO,
            request_id: None,
            will_retry: false,
        });
        obs.on_throttle_wait(Operation::Whoami, Duration::from_secs(1));
        assert_eq!(*seen.lock().unwrap(), vec!["whoami"]);
    }
}
