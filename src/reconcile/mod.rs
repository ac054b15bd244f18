//! One reconcile of one LatticeAgent, top-down (design §3):
//!
//! 1. `observe::observe` — the freshest copy of the resource (the memory's overlay or
//!    the cache), the finalizer added before anything else, its Secret (overlay, cache, or one
//!    direct read), the older claimant of that Secret, when the agent was last read;
//! 2. plan and 3. [`execute`](execute::Executor::run) — the pure planner's next effect, performed,
//!    its result folded into what is known, until the planner settles;
//! 4. `report::report` — what the process remembers for next time, metrics, a Warning
//!    event for a failure, and when kube-runtime should come back.
//!
//! A malformed object (one the Rust type rejects) takes the same path: observe reads its stored
//! status and hands the planner its problem; the planner reports it (or lets its deletion finish
//! with `skip-revoke`) through the same executor.

pub mod execute;
mod observe;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::Instrument;

pub use execute::FailPoints;
pub use report::{BackoffPolicy, error_policy};

use crate::cache::CompactStore;
use crate::cache::agent::StoredAgent;
use crate::claims::ClaimIndex;
use crate::cluster::KubeCluster;
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::plan::Settings;
use crate::remote::Backend;
use crate::workloads::controller::Workloads;

/// What every reconcile of every controller shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// AgentLattice.
    pub remote: Arc<dyn Backend>,
    /// The one shared event publisher.
    pub events: Arc<Publisher>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The planner's settings.
    pub settings: Settings,
    /// Per-object backoff.
    pub backoff: BackoffPolicy,
    /// What the process remembers of each resource.
    pub memory: Arc<Memory>,
    /// Fail points (tests only).
    pub failpoints: Option<FailPoints>,
    /// When this process started reconciling.
    pub started: jiff::Timestamp,
    /// Whether the first drift read of each resource is spread over the first resync interval.
    pub spread_first_drift_read: bool,
    /// The provisioners (docs/tenancy.md); `None`: only the default provisioner exists, and a
    /// LatticeAgent naming another is refused with `ProvisionerNotFound`.
    pub provisioners: Option<Arc<crate::provisioners::Provisioners>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// How long a remembered write is preferred over the cache: long enough for any watch to
    /// deliver it, short enough that a missed event (an unwatched foreign Secret deleted) heals.
    pub fn overlay_ttl(&self) -> Duration {
        self.settings
            .resync_interval
            .unsigned_abs()
            .min(Duration::from_secs(60))
    }

    /// Refreshes the two gauges from the memory.
    pub fn update_gauges(&self) {
        let (managed, rotating) = self.memory.gauges();
        self.metrics.set_gauges(managed, rotating);
    }
}

/// The reconciler of one controller (a namespace, or the cluster): the shared [`Context`] and
/// this controller's caches and Kubernetes adapter.
pub struct Reconciler {
    /// What every controller shares.
    pub ctx: Arc<Context>,
    /// The Kubernetes side, for this controller's resources.
    pub cluster: KubeCluster,
    /// Who claims which Secret (kept by the LatticeAgent watch).
    pub claims: ClaimIndex,
    /// The LatticeAgent cache (the controller reads it too).
    pub agents: Store<StoredAgent>,
    /// Managed Secrets in cache form.
    pub secrets: CompactStore<Secret>,
    /// The workloads of the scope, as consumers of Secrets.
    pub workloads: Workloads,
    /// How many caches this controller lists before it reconciles.
    pub caches: u8,
    /// How many of them have synced.
    pub synced: watch::Receiver<u8>,
    /// Becomes `true` when the operator starts shutting down.
    pub stopping: watch::Receiver<bool>,
}

/// Waits until the controller's caches have all listed: `false` when the operator starts
/// shutting down first (or the caches' watches are gone).
///
/// A reconcile that waited for the caches alone deadlocked a shutdown that came before they
/// synced: kube-runtime's graceful shutdown stops polling the controller's watch streams — which
/// are what fills the caches — and then waits for the running reconciles, which waited for the
/// caches. The process hung until SIGKILLed (found by the chaos runner, tests/chaos.rs).
async fn caches_synced(r: &Reconciler) -> bool {
    let mut synced = r.synced.clone();
    let mut stopping = r.stopping.clone();
    tokio::select! {
        done = synced.wait_for(|n| *n >= r.caches) => done.is_ok(),
        _ = stopping.wait_for(|s| *s) => false,
    }
}

/// Reconciles one LatticeAgent: observe → plan and execute → report.
pub async fn reconcile(obj: Arc<StoredAgent>, r: Arc<Reconciler>) -> Result<Action> {
    // Never act on caches that have not listed yet (a reconcile on an empty Secret cache would
    // not see the durable record and act as if the Secret were gone). Shutting down before they
    // did, there is nothing to do and nothing to finish.
    if !caches_synced(&r).await {
        return Ok(Action::await_change());
    }
    let span = tracing::info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let started = Instant::now();
    let ended = async {
        // A handed-over object that does not unpack is the cache's fault: an error, retried with
        // backoff — not reported as a malformed object (`StoredAgent::guarded`).
        let handed_over = obj.guarded().map_err(|e| {
            Error::Internal(format!("the cached LatticeAgent does not unpack: {e}"))
        })?;
        let observed = observe::observe(&handed_over, &r).await?;
        // Every remote call of this reconcile goes through the provisioner the resource names
        // (the one that registered it: `spec.provisionerRef` is immutable once registered).
        let remote = match &r.ctx.provisioners {
            Some(p) => p.backend(observed.provisioner.id()),
            None => Arc::clone(&r.ctx.remote),
        };
        let provisioner = observed.provisioner.id().clone();
        let report = execute::Executor {
            remote: remote.as_ref(),
            cluster: &r.cluster,
            metrics: &r.ctx.metrics,
            failpoints: r.ctx.failpoints.as_ref(),
        }
        .run(observed)
        .await;
        // A provisioner's key that failed a call is checked again at once, so that its status
        // and every agent naming it say so (each once), instead of each agent finding out.
        if let (Some(p), Ok(report)) = (&r.ctx.provisioners, &report)
            && report.settled.failure.as_ref().is_some_and(|f| {
                matches!(
                    f.class,
                    crate::plan::ErrorClass::ServiceKeyRejected
                        | crate::plan::ErrorClass::ServiceKeyMissing
                )
            })
        {
            p.recheck(&provisioner);
        }
        report
    }
    .instrument(span.clone())
    .await;
    report::report(obj.meta(), &r, ended, started)
        .instrument(span)
        .await
}
