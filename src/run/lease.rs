//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas never reconcile at
//! once (design §4: the orphan sweep relies on it).
//!
//! The algorithm is client-go's `leaderelection` package, written down here because the
//! maintained Rust crate for kube 5 (`kube-lease-manager` 0.13) does not fit one requirement: a
//! leader that cannot renew must stop *before* its Lease can be taken over. That crate keeps
//! reporting leadership while renewals fail (it retries with backoff) and exposes no time of the
//! last successful renewal, so a leader cut off from the API server would go on reconciling
//! (and calling AgentLattice) after a follower took over.
//!
//! The rules, with `duration` the Lease duration:
//! - **Who may take it.** A Lease with no holder (released) is taken at once. A Lease held by
//!   another replica is taken only when its record (holder, renew time) has not changed for
//!   `duration`, measured on this replica's own monotonic clock from the moment it *saw* the
//!   record change, never by comparing the holder's `renewTime` with this node's wall clock —
//!   so clock skew between nodes cannot shorten the wait.
//! - **Writes are conditional.** Creating fails if the Lease exists; taking over or renewing is a
//!   `PUT` carrying the `resourceVersion` read just before, so of two replicas racing for the same
//!   Lease exactly one wins and the other sees 409 Conflict.
//! - **A leader steps down in time.** It renews every `retry_period`; when no renewal has
//!   succeeded within `renew_deadline` (< `duration`) of the *start* of the last successful one,
//!   it reports the leadership lost. Any follower saw that renewal *after* it started, so it waits
//!   at least until that start + `duration`: the old leader has stopped `duration −
//!   renew_deadline` before anyone else may lead.
//! - **Release.** On a graceful stop the leader clears the holder (and sets the duration to 1 s),
//!   so a follower takes over at its next retry instead of waiting for expiry.
//!
//! RBAC: `get` and `update` on this Lease by name, `create` on Leases (the chart's Role).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::error::kube_message;

/// Lease timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a Lease is valid without renewal (written to the Lease).
    pub duration: Duration,
    /// How long the leader keeps leading without a successful renewal (shorter than `duration`).
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseTiming {
    /// client-go's proportions (15 s / 10 s / 2 s) for a Lease duration: the renew deadline is
    /// two thirds of it, the retry period a seventh (at least 50 ms). A duration is rounded up to
    /// whole seconds (what a Lease records), and is at least 1 s.
    pub fn for_duration(duration: Duration) -> LeaseTiming {
        let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
        let duration = Duration::from_secs(secs.max(1));
        LeaseTiming {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: (duration / 7).max(Duration::from_millis(50)),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Why leadership ended without a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the Lease now.
    TakenBy(String),
    /// No renewal succeeded within the renew deadline (the API server is unreachable or refuses).
    RenewDeadline {
        /// The last error seen, if any.
        last_error: Option<String>,
    },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(holder) => write!(f, "the Lease is now held by {holder}"),
            Lost::RenewDeadline { last_error: None } => {
                write!(
                    f,
                    "the Lease could not be renewed within the renew deadline"
                )
            }
            Lost::RenewDeadline {
                last_error: Some(e),
            } => write!(
                f,
                "the Lease could not be renewed within the renew deadline (last error: {e})"
            ),
        }
    }
}

/// The record as last seen, and when this replica saw it change.
#[derive(Debug, Clone)]
struct Seen {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    duration: Duration,
    at: Instant,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease; the attempt that wrote it started at this instant.
    Held(Instant),
    /// Another replica holds a valid Lease.
    HeldBy(String),
    /// Another replica won a race for it (409); try again later.
    Conflict,
}

/// One replica's view of the Lease.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    seen: Option<Seen>,
}

impl LeaderElector {
    /// Elects on Lease `namespace/name` as `identity` (unique per replica: the pod name).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: impl Into<String>,
        timing: LeaseTiming,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.into(),
            timing,
            seen: None,
        }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The timings.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    fn our_spec(&self, previous: Option<&LeaseSpec>, now: MicroTime) -> LeaseSpec {
        let ours = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_some_and(|h| h == self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.duration_seconds()),
            acquire_time: if ours {
                previous
                    .and_then(|p| p.acquire_time.clone())
                    .or(Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            preferred_holder: None,
            strategy: previous.and_then(|p| p.strategy.clone()),
        }
    }

    fn observe(&mut self, spec: Option<&LeaseSpec>) {
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        let changed = self
            .seen
            .as_ref()
            .is_none_or(|s| s.holder != holder || s.renew_time != renew_time);
        if changed {
            let secs = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|d| u64::try_from(d).ok())
                .unwrap_or(self.timing.duration.as_secs());
            self.seen = Some(Seen {
                holder,
                renew_time,
                duration: Duration::from_secs(secs),
                at: Instant::now(),
            });
        }
    }

    /// One attempt to acquire the Lease, or to renew it when this replica holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let started = Instant::now();
        let now = MicroTime(jiff::Timestamp::now());
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.our_spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.as_ref());
                    Ok(Attempt::Held(started))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        self.observe(current.spec.as_ref());
        let holder = current
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        if let (Some(holder), Some(seen)) = (&holder, &self.seen)
            && *holder != self.identity
            && seen.at.elapsed() < seen.duration
        {
            return Ok(Attempt::HeldBy(holder.clone()));
        }
        let mut next = current.clone();
        next.spec = Some(self.our_spec(current.spec.as_ref(), now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.observe(written.spec.as_ref());
                if holder.as_deref() != Some(self.identity.as_str()) {
                    tracing::info!(
                        lease = %self.name,
                        identity = %self.identity,
                        previous = holder.as_deref().unwrap_or("none"),
                        "acquired the Lease"
                    );
                }
                Ok(Attempt::Held(started))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Tries every retry period until this replica holds the Lease; returns the start of the
    /// successful attempt (the base of the renew deadline).
    pub async fn acquire(&mut self) -> Instant {
        let mut announced: Option<String> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held(at)) => return at,
                Ok(Attempt::HeldBy(holder)) => {
                    if announced.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            lease = %self.name,
                            %holder,
                            "standing by: another replica holds the Lease"
                        );
                        announced = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {}
                Err(e) => tracing::warn!(
                    lease = %self.name,
                    error = %kube_message(&e),
                    "could not read or take the Lease; retrying"
                ),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease every retry period until `release` resolves (then releases it and
    /// returns `Ok`) or leadership is lost (returns why, without touching the Lease).
    /// `renewed` is the start of the attempt that last acquired or renewed it.
    pub async fn hold(
        &mut self,
        mut renewed: Instant,
        release: impl std::future::Future<Output = ()>,
    ) -> Result<(), Lost> {
        tokio::pin!(release);
        let mut last_error = None;
        loop {
            tokio::select! {
                () = &mut release => {
                    self.release().await;
                    return Ok(());
                }
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
            let deadline = renewed + self.timing.renew_deadline;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held(at))) => {
                    renewed = at;
                    last_error = None;
                }
                Ok(Ok(Attempt::HeldBy(holder))) => return Err(Lost::TakenBy(holder)),
                Ok(Ok(Attempt::Conflict)) => {}
                Ok(Err(e)) => {
                    let message = kube_message(&e);
                    tracing::warn!(lease = %self.name, error = %message, "could not renew the Lease");
                    last_error = Some(message);
                }
                Err(_elapsed) => {
                    return Err(Lost::RenewDeadline {
                        last_error: last_error
                            .or_else(|| Some("the last attempt did not finish in time".into())),
                    });
                }
            }
            if renewed + self.timing.renew_deadline <= Instant::now() {
                return Err(Lost::RenewDeadline { last_error });
            }
        }
    }

    /// Gives the Lease up if this replica still holds it (a conditional write: a Lease taken
    /// over meanwhile is left alone). Errors are logged: the Lease then expires on its own.
    pub async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(lease = %self.name, "released the Lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                lease = %self.name,
                error = %kube_message(&e),
                "could not release the Lease; it expires on its own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_client_go_proportions() {
        let t = LeaseTiming::for_duration(Duration::from_secs(15));
        assert_eq!(t.duration, Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(15) / 7);
        assert!(t.renew_deadline < t.duration && t.retry_period < t.renew_deadline);
        // Rounded up to whole seconds, at least one.
        let t = LeaseTiming::for_duration(Duration::from_millis(1500));
        assert_eq!(t.duration, Duration::from_secs(2));
        let t = LeaseTiming::for_duration(Duration::ZERO);
        assert_eq!(t.duration, Duration::from_secs(1));
        assert_eq!(t.retry_period, Duration::from_secs(1) / 7);
    }

    #[test]
    fn lost_messages_name_the_cause() {
        assert_eq!(
            Lost::TakenBy("pod-b".into()).to_string(),
            "the Lease is now held by pod-b"
        );
        assert!(
            Lost::RenewDeadline {
                last_error: Some("HTTP 503".into())
            }
            .to_string()
            .contains("HTTP 503")
        );
    }
}
