//! Report: the end of a reconcile — what the process remembers for next time, the metrics, a
//! Warning event for a failure, and when kube-runtime should reconcile again (design §5, §6).
//!
//! A successful reconcile's next one, when due after a delay, is the resync sweeper's to start
//! (the memory's due time, design §6); anything else is kube-runtime's: `await_change`, or a
//! requeue after an error through [`error_policy`] (per-object exponential backoff with jitter,
//! at least `Retry-After`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::ObjectMeta;
use kube::runtime::controller::Action;
use rand::Rng;

use super::Reconciler;
use super::execute::Report;
use crate::cache::agent::StoredAgent;
use crate::crd::has_finalizer;
use crate::error::{Error, Result};
use crate::memory::Settlement;
use crate::plan::{self, ErrorClass, Requeue, condition_reason};
use crate::redact::redact;

/// Per-object exponential backoff with jitter (design §5): the n-th consecutive failure waits a
/// random time in `[d/2, d]` with `d = min(max, base·2ⁿ⁻¹)`, and never less than `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffPolicy {
    /// The delay after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32, at_least: Option<Duration>) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max);
        let half = ceiling / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
        };
        (half + jitter).max(at_least.unwrap_or_default())
    }
}

/// Reports how the reconcile of the resource described by `meta` ended.
pub(super) async fn report(
    meta: &ObjectMeta,
    r: &Reconciler,
    ended: Result<Report>,
    started: Instant,
) -> Result<Action> {
    let ctx = &r.ctx;
    let result = ended.and_then(|report| settle(r, report));
    match &result {
        Ok(_) => ctx.metrics.reconciled("ok", started.elapsed()),
        Err(e) => {
            ctx.metrics.reconciled("error", started.elapsed());
            ctx.metrics.reconcile_error(e.category());
            let message = redact(&match e {
                Error::Step { message, .. } => message.clone(),
                other => other.to_string(),
            });
            tracing::warn!(category = e.category(), error = %message, "reconcile failed");
            let event = plan::Event {
                type_: plan::EventType::Warning,
                reason: warning_reason(e),
                note: format!("{}: {message}", e.category()),
            };
            r.cluster.publish_about(meta, &event, "Reconcile").await;
        }
    }
    result
}

/// The reason of the Warning event for a failed reconcile: what failed, when that has a name of
/// its own.
fn warning_reason(e: &Error) -> &'static str {
    match e {
        Error::Step {
            effect: "RestartConsumer",
            ..
        } => "RolloutRestartFailed",
        _ => "ReconcileError",
    }
}

/// Remembers how the planner settled, and turns it into kube-runtime's [`Action`] (a failure the
/// planner reported becomes an error, for the error policy and the Warning event).
fn settle(r: &Reconciler, report: Report) -> Result<Action> {
    let ctx = &r.ctx;
    let resource = &report.observed.resource;
    let uid = resource.metadata.uid.as_deref().unwrap_or_default();
    let deleting = resource.metadata.deletion_timestamp.is_some();
    if deleting && !has_finalizer(&resource.metadata) {
        // Released (or never ours): the resource goes, and so does what is remembered of it.
        ctx.memory.forget(uid);
        ctx.metrics.forget_agent(uid);
        ctx.update_gauges();
        return Ok(Action::await_change());
    }
    let settled = report.settled;
    let status = resource.status.clone().unwrap_or_default();
    let succeeded = settled.failure.is_none() && !deleting;
    let due = match settled.requeue {
        Requeue::After(d) if succeeded => Some(Instant::now() + requeue_delay(d)),
        _ => None,
    };
    let waits_for_service_key = settled.failure.as_ref().is_some_and(|f| {
        matches!(
            f.class,
            ErrorClass::ServiceKeyMissing | ErrorClass::ServiceKeyRejected
        )
    });
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    ctx.metrics.agent_settled(
        uid,
        &namespace,
        &name,
        status
            .active_key
            .as_ref()
            .filter(|_| !deleting)
            .map(|k| k.created_at),
        status
            .retiring_keys
            .iter()
            .map(|k| k.revoke_by)
            .min()
            .filter(|_| !deleting),
    );
    let key_changed_meanwhile = ctx.memory.settled(
        uid,
        Settlement {
            remote_checked_at: settled.remote_checked.then_some(report.observed.now),
            managed: !deleting && status.agent_id.is_some(),
            rotating: !deleting && !status.retiring_keys.is_empty(),
            waiting_for_service_key: waits_for_service_key,
            succeeded: succeeded.then_some(due),
            namespace,
            name,
        },
    );
    ctx.update_gauges();
    tracing::debug!(
        ready = condition_reason(&status, plan::READY).unwrap_or_default(),
        requeue = ?settled.requeue,
        effects = ?report.effects,
        "reconciled"
    );
    match settled.failure {
        Some(f) => Err(Error::Step {
            effect: f.effect,
            class: f.class,
            message: f.message,
            // The key changed while this reconcile ran without the key: try again at once (the
            // change's wake-up may have missed this resource, see `Memory::settled`).
            requeue: if key_changed_meanwhile {
                Requeue::After(jiff::SignedDuration::from_secs(1))
            } else {
                settled.requeue
            },
        }),
        // The cleanup is not finished and nothing failed: not yet (the planner always names a
        // failure when it cannot finish; the resync comes back in any case).
        None if deleting => Ok(Action::requeue(requeue_delay(ctx.settings.resync_interval))),
        None if due.is_some() => Ok(Action::await_change()),
        None => Ok(requeue_action(settled.requeue, None)),
    }
}

/// A requeue delay, at least a second (a deadline that has just passed cannot spin).
fn requeue_delay(d: jiff::SignedDuration) -> Duration {
    d.unsigned_abs().max(Duration::from_secs(1))
}

fn requeue_action(requeue: Requeue, backoff: Option<Duration>) -> Action {
    match requeue {
        Requeue::After(d) => Action::requeue(requeue_delay(d)),
        Requeue::OnChange => Action::await_change(),
        Requeue::Backoff { at_least } => Action::requeue(
            backoff
                .unwrap_or(Duration::from_secs(1))
                .max(at_least.map(|d| d.unsigned_abs()).unwrap_or_default()),
        ),
    }
}

/// kube-runtime's error policy: when to try again after a failed reconcile.
pub fn error_policy(obj: Arc<StoredAgent>, error: &Error, r: Arc<Reconciler>) -> Action {
    let ctx = &r.ctx;
    let uid = kube::Resource::meta(obj.as_ref())
        .uid
        .clone()
        .unwrap_or_default();
    let failures = ctx.memory.failed(&uid);
    let requeue = match error {
        Error::Step { requeue, .. } => *requeue,
        other => match other.class() {
            ErrorClass::Invalid(_) | ErrorClass::Conflict(_) => {
                Requeue::After(ctx.settings.resync_interval)
            }
            _ => Requeue::Backoff { at_least: None },
        },
    };
    let backoff = match requeue {
        Requeue::Backoff { at_least } => Some(
            ctx.backoff
                .delay(failures, at_least.map(|d| d.unsigned_abs())),
        ),
        _ => None,
    };
    let action = requeue_action(requeue, backoff);
    tracing::debug!(failures, ?action, "requeue after failure");
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_capped_and_honours_retry_after() {
        let p = BackoffPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d4 = p.delay(4, None);
            assert!(d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8));
            let d30 = p.delay(30, None);
            assert!(d30 >= Duration::from_secs(30) && d30 <= Duration::from_secs(60));
            assert!(p.delay(1, Some(Duration::from_secs(9))) >= Duration::from_secs(9));
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(6, None)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn requeue_actions() {
        assert_eq!(
            requeue_action(Requeue::After(jiff::SignedDuration::from_secs(90)), None),
            Action::requeue(Duration::from_secs(90))
        );
        assert_eq!(
            requeue_action(Requeue::OnChange, None),
            Action::await_change()
        );
        assert_eq!(
            requeue_action(
                Requeue::Backoff {
                    at_least: Some(jiff::SignedDuration::from_secs(30))
                },
                Some(Duration::from_secs(2))
            ),
            Action::requeue(Duration::from_secs(30))
        );
    }
}
