//! The operator: one kube-runtime controller per watched namespace (or one for the cluster),
//! all sharing one [`Context`] — its clients, event publisher, metrics and memory — plus the
//! sweepers that start the reconciles nothing else would (design §6): the resync sweeper, the
//! resources waiting for the service key, and the overlays past their TTL.
//!
//! Each controller watches LatticeAgents and the operator's labelled Secrets
//! ([`crate::cluster::watch`]), and reconciles through [`crate::reconcile::reconcile`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::core::PartialObjectMeta;

use crate::cache::CompactStore;
use crate::cache::agent::StoredAgent;
use crate::claims::ClaimIndex;
use crate::cluster::shutdown::drain_or_drop;
use crate::cluster::watch::{self as watches, Guarded};
use crate::cluster::{KubeCluster, REPORTER};
use crate::events::Publisher;
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::plan::Settings;
use crate::reconcile::{BackoffPolicy, Context, FailPoints, Reconciler, error_policy, reconcile};
use crate::remote::Backend;
use crate::secret::{self, cache_form};
use crate::workloads::controller::{
    IdentityContext, Waker, Workload, Workloads, run_identities, watch as workload_watch,
};

/// Whether the operator is ready: the CRD is installed and every cache has synced.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Ready?
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The planner's settings.
    pub settings: Settings,
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// Reconciles at once, per controller.
    pub concurrency: u16,
    /// Per-object backoff.
    pub backoff: BackoffPolicy,
    /// `reportingInstance` of events (the pod name); the controller name when `None`.
    pub instance: Option<String>,
    /// Spread the first drift read of each resource over the first resync interval after the
    /// start (design §3.1 step 6), instead of reading every registered agent at once.
    pub spread_first_drift_read: bool,
    /// Create identities for annotated workloads (with `settings.consumers.tracked`).
    pub workload_identities: bool,
}

impl OperatorConfig {
    /// Defaults for these settings.
    pub fn new(settings: Settings) -> Self {
        OperatorConfig {
            settings,
            namespaces: Vec::new(),
            concurrency: 16,
            backoff: BackoffPolicy::default(),
            instance: None,
            spread_first_drift_read: true,
            workload_identities: true,
        }
    }
}

/// The operator: one controller per watched namespace (or one for the cluster) around a shared
/// [`Context`].
pub struct Operator {
    client: kube::Client,
    config: OperatorConfig,
    remote: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    service_key_changes: Option<watch::Receiver<u64>>,
    background: Vec<BoxFuture<'static, ()>>,
    failpoints: Option<FailPoints>,
    readiness: Readiness,
    provisioners: Option<Arc<crate::provisioners::Provisioners>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// An operator reconciling through `client` against `remote`.
    pub fn new(
        client: kube::Client,
        config: OperatorConfig,
        remote: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Operator {
            client,
            config,
            remote,
            metrics,
            service_key_changes: None,
            background: Vec::new(),
            failpoints: None,
            readiness: Readiness::default(),
            provisioners: None,
        }
    }

    /// Serves `LatticeProvisioner`s and `ClusterLatticeProvisioner`s (docs/tenancy.md): their
    /// watches and checker run for as long as the operator runs, and a LatticeAgent naming one
    /// is reconciled when it changes. Without this, only the default provisioner exists.
    pub fn with_provisioners(
        mut self,
        provisioners: Arc<crate::provisioners::Provisioners>,
    ) -> Self {
        self.background
            .push(Box::pin(Arc::clone(&provisioners).run()));
        self.provisioners = Some(provisioners);
        self
    }

    /// Reconciles the resources that wait for the service key whenever `provider`'s Secret
    /// changes, and runs its watch for as long as the operator runs.
    pub fn with_service_key_provider(
        mut self,
        provider: Arc<crate::remote::ServiceKeyProvider>,
    ) -> Self {
        self.service_key_changes = Some(provider.subscribe());
        self.background.push(Box::pin(provider.watch()));
        self
    }

    /// Installs fail points (see [`FailPoints`]). Tests only: a fail point that fires stops the
    /// reconcile forever, as a crash would.
    #[doc(hidden)]
    pub fn with_failpoints(mut self, failpoints: FailPoints) -> Self {
        self.failpoints = Some(failpoints);
        self
    }

    /// Readiness (for `/readyz`).
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Metrics (for `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` resolves, then stops starting reconciles, lets the running ones
    /// finish, and returns. Leadership (a later issue) wraps this: run it once the Lease is held,
    /// and resolve `shutdown` when it is lost.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Operator {
            client,
            config,
            remote,
            metrics,
            service_key_changes,
            background,
            failpoints,
            readiness,
            provisioners,
        } = self;
        let events = Arc::new(Publisher::new(
            client.clone(),
            REPORTER,
            config.instance.clone(),
        ));
        let ctx = Arc::new(Context {
            client: client.clone(),
            remote,
            events: Arc::clone(&events),
            metrics,
            settings: config.settings.clone(),
            backoff: config.backoff,
            memory: Arc::new(Memory::default()),
            failpoints,
            started: Timestamp::now(),
            spread_first_drift_read: config.spread_first_drift_read,
            provisioners,
        });
        let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
            vec![None]
        } else {
            config.namespaces.iter().cloned().map(Some).collect()
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        let stop = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let caches = caches_per_controller(&config.settings);
        let pending = Arc::new(AtomicUsize::new(usize::from(caches) * scopes.len()));
        let controllers = scopes.into_iter().map(|namespace| {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let stopping = stop_rx.clone();
            let mut stop_rx = stop_rx.clone();
            let forward = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
                let _ = tx.send(());
            };
            let controller = run_controller(
                Arc::clone(&ctx),
                namespace,
                ControllerOptions {
                    concurrency: config.concurrency,
                    identities: config.workload_identities,
                    stopping,
                },
                service_key_changes.clone(),
                rx.map(|_| ()),
                Arc::clone(&pending),
                readiness.clone(),
            );
            async move {
                tokio::select! {
                    () = controller => {}
                    () = async { forward.await; futures::future::pending::<()>().await } => {}
                }
            }
        });
        let mut stop_bg = stop_rx.clone();
        let sweeper = {
            let ctx = Arc::clone(&ctx);
            async move {
                // Overlays past their TTL are dropped (crate `memory`); a tick of half the TTL
                // keeps each at most 1.5 TTL.
                let ttl = ctx.overlay_ttl();
                let mut tick = tokio::time::interval((ttl / 2).max(Duration::from_secs(1)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let dropped = ctx.memory.sweep(ttl);
                    if dropped > 0 {
                        tracing::debug!(dropped, "overlays past their TTL dropped");
                    }
                }
            }
        };
        let background = async move {
            let all = futures::future::join(futures::future::join_all(background), sweeper);
            tokio::select! {
                _ = all => {}
                _ = stop_bg.wait_for(|s| *s) => {}
            }
        };
        tokio::join!(stop, futures::future::join_all(controllers), background);
        readiness.set(false);
        tracing::info!("operator stopped");
    }
}

/// The controller of one namespace (or of the cluster).
async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    options: ControllerOptions,
    service_key_changes: Option<watch::Receiver<u64>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    pending: Arc<AtomicUsize>,
    readiness: Readiness,
) {
    let client = ctx.client.clone();
    let (agents_api, secrets_api): (Api<Guarded>, Api<Secret>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (agent_reader, agent_writer) = reflector::store::<StoredAgent>();
    let secret_cache = CompactStore::<Secret>::default();
    // Readiness: each cache reports its first complete list (`InitDone`). Reconciles wait until
    // both caches of this controller have synced (`reconcile`).
    let (local_tx, synced) = watch::channel(0u8);
    let local_tx = Arc::new(local_tx);
    let agents_synced = synced_once(
        Arc::clone(&pending),
        readiness.clone(),
        Arc::clone(&local_tx),
    );
    let secrets_synced = synced_once(
        Arc::clone(&pending),
        readiness.clone(),
        Arc::clone(&local_tx),
    );
    let claims = ClaimIndex::default();

    let metrics = Arc::clone(&ctx.metrics);
    let agents = watches::agents(
        watcher(agents_api, watcher::Config::default())
            .default_backoff()
            .modify(|g: &mut Guarded| crate::crd::keep_read_metadata(g.meta_mut()))
            // A resource gone from the cluster has no series any more (the reconcile that
            // released its finalizer forgot it already; this covers the ones deleted without).
            .inspect_ok(move |event| {
                if let watcher::Event::Delete(g) = event
                    && let Some(uid) = g.meta().uid.as_deref()
                {
                    metrics.forget_agent(uid);
                }
            }),
        agent_writer,
        claims.clone(),
        Arc::clone(&ctx.memory),
        agents_synced,
    );
    let selector = format!("{}={}", secret::MANAGED_BY_LABEL, secret::MANAGED_BY_VALUE);
    let secrets = watches::secrets(
        watcher(secrets_api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .modify(|s: &mut Secret| {
                let mut cached = cache_form(std::mem::take(s));
                cached.metadata.managed_fields = None;
                *s = cached;
            }),
        secret_cache.clone(),
        Arc::clone(&ctx.memory),
        secrets_synced,
    );

    // The workloads (docs/workloads.md): their indexes, the LatticeAgents woken when their
    // consumers change, and the identities of annotated ones.
    let shutdown = shutdown.shared();
    let workloads = Workloads::default();
    let (wake_tx, wake_rx) = futures::channel::mpsc::unbounded();
    let mut workload_tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
    if ctx.settings.consumers.tracked {
        let waker = Waker::new(claims.clone(), wake_tx);
        let identities = Arc::new(IdentityContext {
            client: client.clone(),
            events: Arc::clone(&ctx.events),
            agents: agent_reader.clone(),
            retry: ctx.settings.resync_interval.unsigned_abs(),
        });
        let scope = WorkloadScope {
            client: &client,
            namespace: namespace.as_deref(),
            workloads: &workloads,
            waker: &waker,
            identities: options.identities.then_some(&identities),
            shutdown: &shutdown,
        };
        let synced = || {
            synced_once(
                Arc::clone(&pending),
                readiness.clone(),
                Arc::clone(&local_tx),
            )
        };
        workload_tasks.push(scope.task::<Deployment>(synced()));
        workload_tasks.push(scope.task::<StatefulSet>(synced()));
        workload_tasks.push(scope.task::<DaemonSet>(synced()));
    }

    let reconciler = Arc::new(Reconciler {
        cluster: KubeCluster::new(
            client,
            Arc::clone(&ctx.events),
            Arc::clone(&ctx.memory),
            agent_reader.clone(),
            secret_cache.clone(),
        ),
        ctx: Arc::clone(&ctx),
        claims,
        agents: agent_reader.clone(),
        secrets: secret_cache,
        workloads,
        caches: caches_per_controller(&ctx.settings),
        synced,
        stopping: options.stopping.clone(),
    });
    let mut controller = Controller::for_stream(agents, agent_reader.clone())
        .owns_stream(secrets)
        .with_config(ControllerConfig::default().concurrency(options.concurrency))
        .graceful_shutdown_on(shutdown.clone());
    controller = controller.reconcile_on(wake_rx);
    controller = controller.reconcile_on(due_reconciles(Arc::clone(&ctx), namespace.clone()));
    if let Some(provisioners) = &ctx.provisioners {
        provisioners.add_agent_store(agent_reader.clone());
        controller = controller.reconcile_on(naming_changed_provisioners(
            provisioners.subscribe(),
            agent_reader.clone(),
        ));
    }
    if let Some(changes) = service_key_changes {
        controller = controller.reconcile_on(waiting_for_service_key(ctx, changes, namespace));
    }
    let agents = controller
        .run(reconcile, error_policy, reconciler)
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => tracing::debug!(error = %other, "controller"),
                }
            }
        });
    // Stopped before the LatticeAgents listed, the controller is dropped (its graceful shutdown
    // would wait forever: `drain_or_drop`), and with it the LatticeAgent watch: the workload
    // tasks waiting for that cache are told it will not list.
    let agents = drain_or_drop(agents, &agent_reader, shutdown);
    futures::future::join(agents, futures::future::join_all(workload_tasks)).await;
}

/// How one controller runs.
#[derive(Clone, Debug)]
struct ControllerOptions {
    /// Reconciles at once.
    concurrency: u16,
    /// Whether annotated workloads get identities.
    identities: bool,
    /// Becomes `true` when the operator starts shutting down (reconciles still waiting for the
    /// caches end then: `reconcile::caches_synced`).
    stopping: watch::Receiver<bool>,
}

/// How many caches a controller lists before it reconciles: LatticeAgents and Secrets, and the
/// three workload kinds when they are watched.
fn caches_per_controller(settings: &Settings) -> u8 {
    if settings.consumers.tracked { 5 } else { 2 }
}

/// What the workload watches of one controller share.
struct WorkloadScope<'a, S> {
    client: &'a kube::Client,
    namespace: Option<&'a str>,
    workloads: &'a Workloads,
    waker: &'a Waker,
    identities: Option<&'a Arc<IdentityContext>>,
    shutdown: &'a S,
}

impl<S> WorkloadScope<'_, S>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    /// The watch of kind `K` (and its identity controller), as one task.
    fn task<K: Workload>(&self, synced: impl Fn() + Send + 'static) -> BoxFuture<'static, ()> {
        let api: Api<K> = match self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let (reader, writer) = reflector::store::<PartialObjectMeta<K>>();
        let agents = self.identities.map(|ctx| ctx.agents.clone());
        let stream = workload_watch::<K>(
            api,
            self.workloads.of(K::KIND).clone(),
            self.waker.clone(),
            writer,
            agents.clone(),
            synced,
        );
        let shutdown = self.shutdown.clone();
        match (self.identities, agents) {
            // The workloads are listed once the LatticeAgent cache has synced, so that a workload
            // whose annotations were removed while the operator was away is seen with its
            // identity (`IdentityFilter`). The stream is lazy: nothing is listed before it runs.
            (Some(ctx), Some(agents)) => {
                let ctx = Arc::clone(ctx);
                Box::pin(async move {
                    // An error means the LatticeAgent watch is gone: the operator stopped before
                    // it listed, and nothing was started here either.
                    if agents.wait_until_ready().await.is_ok() {
                        run_identities(stream, reader, ctx, shutdown).await;
                    }
                })
            }
            _ => Box::pin(
                stream
                    .take_until(shutdown)
                    .for_each(|_| std::future::ready(())),
            ),
        }
    }
}

/// A callback for one cache: the first call counts the cache as synced (in `local`, the
/// controller's count, and in `pending`, the operator's); the last cache to sync makes the
/// operator ready.
fn synced_once(
    pending: Arc<AtomicUsize>,
    readiness: Readiness,
    local: Arc<watch::Sender<u8>>,
) -> impl Fn() + Send + 'static {
    let done = AtomicBool::new(false);
    move || {
        if done.swap(true, Ordering::SeqCst) {
            return;
        }
        local.send_modify(|n| *n = n.saturating_add(1));
        if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            readiness.set(true);
            tracing::info!("caches synced; ready");
        }
    }
}

/// The resources whose last reconcile failed for want of a working service key, each time the
/// service key Secret changes.
fn waiting_for_service_key(
    ctx: Arc<Context>,
    changes: watch::Receiver<u64>,
    namespace: Option<String>,
) -> impl futures::Stream<Item = ObjectRef<StoredAgent>> + Send + 'static {
    futures::stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
    .flat_map(move |()| {
        let refs: Vec<ObjectRef<StoredAgent>> = ctx
            .memory
            .service_key_changed()
            .into_iter()
            .filter(|(ns, _)| namespace.as_deref().is_none_or(|n| n == ns))
            .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            .collect();
        if !refs.is_empty() {
            tracing::info!(
                count = refs.len(),
                "service key changed: reconciling the resources that waited for it"
            );
        }
        futures::stream::iter(refs)
    })
}

/// The LatticeAgents of this controller that name a provisioner, each time it changes (its spec,
/// its readiness, or its Secret): a suspension, a key that is accepted again or a provisioner
/// created after its agents all act at once, not at the next resync.
fn naming_changed_provisioners(
    changes: tokio::sync::broadcast::Receiver<crate::plan::policy::ProvisionerId>,
    agents: reflector::Store<StoredAgent>,
) -> impl futures::Stream<Item = ObjectRef<StoredAgent>> + Send + 'static {
    futures::stream::unfold(changes, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(id) => return Some((id, rx)),
                // Missed changes are caught up by the resync.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |id| {
        futures::stream::iter(crate::provisioners::Provisioners::agents_naming(
            &agents, &id,
        ))
    })
}

/// The resync sweeper: every tick, the resources of this controller whose next reconcile is due
/// (design §6). A successful reconcile records when the next one is due in the per-object memory
/// instead of asking kube-runtime to requeue it: its scheduler keeps an entry of about 0.8 KiB per
/// pending requeue, which with a resync pending for every resource was 8 MiB at 10,000 resources
/// (docs/benchmarks.md); the memory entry every resource has anyway grows by its name. The tick is
/// an eighth of the resync interval, between 100 ms and 1 s: how late a due reconcile may start.
/// Requeues after errors (backoff) stay with kube-runtime.
fn due_reconciles(
    ctx: Arc<Context>,
    namespace: Option<String>,
) -> impl futures::Stream<Item = ObjectRef<StoredAgent>> + Send + 'static {
    let tick = (ctx.settings.resync_interval.unsigned_abs() / 8)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
    .flat_map(move |()| {
        let refs: Vec<ObjectRef<StoredAgent>> = ctx
            .memory
            .take_due(namespace.as_deref(), Instant::now())
            .into_iter()
            .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            .collect();
        futures::stream::iter(refs)
    })
}
