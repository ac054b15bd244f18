//! The kube-runtime wiring: watches, caches, the controller per namespace, the reconcile
//! function around the [`crate::executor`], the error policy and graceful shutdown.
//!
//! - The main watch is on `DeserializeGuard<LatticeAgent>`: an object the Rust type rejects is
//!   reported in its status (`InvalidSpec`) and never stops the watch. A predicate lets through
//!   changes of generation, deletion timestamp, finalizers, labels and the `agentlattice.io/`
//!   annotations, not status-only updates (design §6).
//! - Only Secrets labelled `app.kubernetes.io/managed-by=lattice-operator` are watched, and they
//!   pass through [`secret::cache_form`] (and lose `managedFields`) before the reflector stores
//!   them: the cache holds no key (design §2).
//! - `--namespaces a,b` runs one controller per namespace, each with its own watches and caches,
//!   all sharing one [`Context`]; without namespaces one controller watches the whole cluster.
//! - The finalizer is added and removed only by [`reconcile_agent`], with the JSON patches of
//!   kube-runtime's finalizer helper (a `test` of the list, then `add` or `remove`); unlike the
//!   helper, a reconcile that adds it goes on to register with the patched object (design §6).

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use crate::cache::CompactStore;
use crate::claims::ClaimIndex;
use crate::context::{BackoffPolicy, Context, FailPoints, Memory};
use crate::crd::{FINALIZER, GROUP, LatticeAgent};
use crate::error::{Error, Result};
use crate::events::{EventType, NewEvent, Publisher};
use crate::executor::{Cluster, Executor};
use crate::metrics::Metrics;
use crate::plan::validate::effective_secret_name;
use crate::plan::{self, ErrorClass, Observed, Requeue, Settings, condition_reason, schedule};
use crate::redact::redact;
use crate::remote::Remote;
use crate::secret::{self, SecretView, cache_form};

/// The name of the CustomResourceDefinition.
pub const CRD_NAME: &str = "latticeagents.agentlattice.io";
/// The event reporter (`reportingController`).
pub const REPORTER: &str = "lattice-operator";

type Guarded = DeserializeGuard<LatticeAgent>;

// ----- the Kubernetes side of a reconcile -------------------------------------------------------

/// [`Cluster`] on a kube client and the shared event publisher.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    events: Arc<Publisher>,
}

impl KubeCluster {
    /// The cluster of `client`, publishing events with `events`.
    pub fn new(client: kube::Client, events: Arc<Publisher>) -> Self {
        KubeCluster { client, events }
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Publishes an event about the object `reference`.
    pub async fn publish_to(&self, reference: &ObjectReference, event: &plan::Event, action: &str) {
        let note = truncate(&redact(&event.note), 1000);
        let event = NewEvent {
            type_: match event.type_ {
                plan::EventType::Normal => EventType::Normal,
                plan::EventType::Warning => EventType::Warning,
            },
            reason: event.reason,
            action,
            note: &note,
        };
        if let Err(e) = self.events.publish(&event, reference).await {
            tracing::warn!(
                reason = %event.reason,
                error = %crate::error::kube_message(&e),
                "could not publish event"
            );
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

impl Cluster for KubeCluster {
    fn create_secret<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, kube::Result<Secret>> {
        Box::pin(async move {
            let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
            self.secrets(namespace)
                .create(&PostParams::default(), secret)
                .await
        })
    }

    fn patch_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, kube::Result<Secret>> {
        Box::pin(async move {
            self.secrets(namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
        })
    }

    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        Box::pin(async move { self.secrets(namespace).get_opt(name).await })
    }

    fn replace_status<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        Box::pin(async move {
            let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
            let name = resource.metadata.name.as_deref().unwrap_or_default();
            Api::<LatticeAgent>::namespaced(self.client.clone(), namespace)
                .replace_status(name, &PostParams::default(), resource)
                .await
        })
    }

    fn remove_finalizer<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        Box::pin(async move {
            let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
            let api = Api::<LatticeAgent>::namespaced(self.client.clone(), namespace);
            let finalizers = resource.metadata.finalizers.as_deref().unwrap_or_default();
            let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
                return Ok(resource.clone());
            };
            // The test makes the patch fail instead of removing another controller's finalizer
            // if the list changed since it was read.
            let path = format!("/metadata/finalizers/{index}");
            let patch = json!([
                {"op": "test", "path": path, "value": FINALIZER},
                {"op": "remove", "path": path},
            ]);
            let patch: json_patch::Patch =
                serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
            api.patch(
                &resource.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        })
    }

    fn publish<'a>(
        &'a self,
        resource: &'a LatticeAgent,
        event: &'a plan::Event,
        action: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.publish_to(&resource.object_ref(&()), event, action)
                .await;
        })
    }
}

// ----- readiness --------------------------------------------------------------------------------

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

/// Checks that the LatticeAgent CRD is installed and serves `v1alpha1`.
pub async fn check_crd(client: &kube::Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await? {
        None => Err(Error::CrdNotInstalled(CRD_NAME.to_owned())),
        Some(crd)
            if crd
                .spec
                .versions
                .iter()
                .any(|v| v.name == "v1alpha1" && v.served) =>
        {
            Ok(())
        }
        Some(_) => Err(Error::CrdNotInstalled(format!(
            "{CRD_NAME} (version v1alpha1 is not served)"
        ))),
    }
}

/// Installs (or updates) the LatticeAgent CRD and waits until it is established (used by `dev`
/// and the tests; in a cluster, `kubectl apply -f crds/`).
pub async fn install_crd(client: &kube::Client, timeout: Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crate::crd::crd();
    let params = PatchParams::apply(REPORTER).force();
    crds.patch(CRD_NAME, &params, &Patch::Apply(&crd)).await?;
    let established = kube::runtime::wait::await_condition(
        crds,
        CRD_NAME,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    match tokio::time::timeout(timeout, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Internal(format!("waiting for the CRD: {e}"))),
        Err(_) => Err(Error::Internal(format!(
            "the CRD {CRD_NAME} was not established within {timeout:?}"
        ))),
    }
}

// ----- the operator -----------------------------------------------------------------------------

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
        }
    }
}

/// The operator: one controller per watched namespace (or one for the cluster) around a shared
/// [`Context`].
pub struct Operator {
    client: kube::Client,
    config: OperatorConfig,
    remote: Arc<dyn Remote>,
    metrics: Arc<Metrics>,
    service_key_changes: Option<watch::Receiver<u64>>,
    background: Vec<BoxFuture<'static, ()>>,
    failpoints: Option<FailPoints>,
    readiness: Readiness,
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
        remote: Arc<dyn Remote>,
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
        }
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
            memory: Memory::default(),
            failpoints,
            started: Timestamp::now(),
            spread_first_drift_read: config.spread_first_drift_read,
        });
        let cluster = KubeCluster::new(client, events);
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
        let pending = Arc::new(AtomicUsize::new(2 * scopes.len()));
        let controllers = scopes.into_iter().map(|namespace| {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let mut stop_rx = stop_rx.clone();
            let forward = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
                let _ = tx.send(());
            };
            let controller = run_controller(
                Arc::clone(&ctx),
                cluster.clone(),
                namespace,
                config.concurrency,
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
                // Overlays past their TTL are dropped (design §2.3); a tick of half the TTL keeps
                // each at most 1.5 TTL.
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
#[allow(clippy::too_many_arguments)]
async fn run_controller(
    ctx: Arc<Context>,
    cluster: KubeCluster,
    namespace: Option<String>,
    concurrency: u16,
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
    let (agent_reader, agent_writer) = reflector::store::<Guarded>();
    let secret_cache = CompactStore::<Secret>::default();
    let secret_writer = secret_cache.clone();
    // Readiness: each cache reports its first complete list (`InitDone`). (Waiting on
    // `Store::wait_until_ready` from a second task does not work: the store wakes one waiter
    // only, and the controller is already waiting.)
    // Reconciles wait until both caches of this controller have synced: a reconcile that ran on
    // an empty Secret cache would not see the durable record (design §2) and act as if the
    // Secret were gone (found by the crash tests: a restart right after a registration's Secret
    // write minted a key that was never delivered).
    let (local_tx, synced) = watch::channel(0u8);
    let local_tx = Arc::new(local_tx);
    let agents_synced = synced_once(
        Arc::clone(&pending),
        readiness.clone(),
        Arc::clone(&local_tx),
    );
    let secrets_synced = synced_once(pending, readiness, local_tx);
    let claims = ClaimIndex::default();
    let (claims_feed, forget) = (claims.clone(), Arc::clone(&ctx));
    let (caught_up, secret_caught_up) = (Arc::clone(&ctx), Arc::clone(&ctx));
    let seen = Arc::clone(&ctx);
    let agents = watcher(agents_api, watcher::Config::default())
        .default_backoff()
        .modify(|g: &mut Guarded| g.meta_mut().managed_fields = None)
        .inspect(move |e| {
            if let Ok(event) = e {
                claims_feed.apply_event(event);
                // A resource gone from the cluster needs no memory (its reconcile that released
                // the finalizer forgot it already; this covers the ones deleted without one).
                if let watcher::Event::Delete(g) = event
                    && let Some(uid) = g.meta().uid.as_deref()
                {
                    forget.memory.forget(uid);
                }
            }
        })
        .reflect(agent_writer)
        .inspect(move |e| match e {
            Ok(watcher::Event::InitDone) => agents_synced(),
            // The store has this version now: an overlay it catches up with goes (design §2.1).
            Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => {
                let meta = g.meta();
                if let Some(uid) = meta.uid.as_deref() {
                    caught_up
                        .memory
                        .cached_resource(uid, meta.resource_version.as_deref());
                }
            }
            _ => {}
        })
        .applied_objects()
        .try_filter(move |g| {
            let pass = match (g.meta().uid.as_deref(), main_predicate(g)) {
                (Some(uid), Some(hash)) => seen.memory.predicate_changed(uid, hash),
                _ => true,
            };
            std::future::ready(pass)
        });
    let selector = format!("{}={}", secret::MANAGED_BY_LABEL, secret::MANAGED_BY_VALUE);
    let secrets = watcher(secrets_api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .modify(|s: &mut Secret| {
            let mut cached = cache_form(std::mem::take(s));
            cached.metadata.managed_fields = None;
            *s = cached;
        })
        .inspect(move |e| {
            if let Ok(event) = e {
                secret_writer.apply(event);
            }
        })
        // The cache has this version now: the overlay goes (design §2.1). A Secret event that
        // only delivers the write the last reconcile made does not start another reconcile
        // (design §6): that reconcile saw it already. Any other change of the Secret does.
        .filter(move |e| {
            let keep = match e {
                Ok(watcher::Event::InitDone) => {
                    secrets_synced();
                    true
                }
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    let owner = s
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .find(|r| r.controller == Some(true));
                    let own =
                        owner.is_some_and(|o| secret_caught_up.memory.cached_secret(&o.uid, s));
                    !(own && matches!(e, Ok(watcher::Event::Apply(_))))
                }
                _ => true,
            };
            std::future::ready(keep)
        })
        .touched_objects();

    let scope = Arc::new(Scope {
        ctx: Arc::clone(&ctx),
        cluster,
        claims,
        agents: agent_reader.clone(),
        secrets: secret_cache,
        synced,
    });
    let mut controller = Controller::for_stream(agents, agent_reader)
        .owns_stream(secrets)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown);
    controller = controller.reconcile_on(due_reconciles(Arc::clone(&ctx), namespace.clone()));
    if let Some(changes) = service_key_changes {
        controller = controller.reconcile_on(waiting_for_service_key(ctx, changes, namespace));
    }
    controller
        .run(reconcile, error_policy, scope)
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => tracing::debug!(error = %other, "controller"),
                }
            }
        })
        .await;
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
) -> impl futures::Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    futures::stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
    .flat_map(move |()| {
        let refs: Vec<ObjectRef<Guarded>> = ctx
            .memory
            .waiting_for_service_key()
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
) -> impl futures::Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    let tick = (ctx.settings.resync_interval.unsigned_abs() / 8)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
    .flat_map(move |()| {
        let refs: Vec<ObjectRef<Guarded>> = ctx
            .memory
            .take_due(namespace.as_deref(), Instant::now())
            .into_iter()
            .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            .collect();
        futures::stream::iter(refs)
    })
}

/// Lets through what the operator acts on: generation (spec), deletion, finalizers, labels, the
/// `agentlattice.io/` annotations — and not status-only updates (design §6).
fn main_predicate(obj: &Guarded) -> Option<u64> {
    Some(predicate_hash(obj.meta(), obj.0.is_ok()))
}

/// [`main_predicate`]'s hash of a resource's metadata; `valid`: whether it deserialised.
fn predicate_hash(meta: &kube::core::ObjectMeta, valid: bool) -> u64 {
    let ours: BTreeMap<&String, &String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&format!("{GROUP}/")))
        .collect();
    let mut h = DefaultHasher::new();
    (
        &meta.uid,
        meta.generation,
        meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()),
        &meta.finalizers,
        &meta.labels,
        ours,
        valid,
    )
        .hash(&mut h);
    h.finish()
}

// ----- reconcile --------------------------------------------------------------------------------

/// What one controller's reconciles share.
pub struct Scope {
    ctx: Arc<Context>,
    cluster: KubeCluster,
    /// Who claims which Secret (kept by the LatticeAgent watch).
    claims: ClaimIndex,
    /// The LatticeAgent cache (the controller reads it too).
    agents: Store<Guarded>,
    /// Managed Secrets in cache form (kept encoded, see [`CompactStore`]).
    secrets: CompactStore<Secret>,
    /// How many of this controller's two caches have synced.
    synced: watch::Receiver<u8>,
}

async fn reconcile(obj: Arc<Guarded>, scope: Arc<Scope>) -> Result<Action> {
    // Never act on caches that have not listed yet (the sender only goes away at shutdown).
    let _ = scope.synced.clone().wait_for(|n| *n >= 2).await;
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span = tracing::info_span!("reconcile", %namespace, %name);
    let started = Instant::now();
    let result = async {
        match &obj.0 {
            Ok(agent) => reconcile_agent(agent, &scope).await,
            Err(invalid) => reconcile_invalid(invalid, &scope).await,
        }
    }
    .instrument(span.clone())
    .await;
    let ctx = &scope.ctx;
    match &result {
        Ok(_) => ctx.metrics.reconciled("ok", started.elapsed()),
        Err(Error::CleanupPending) => ctx.metrics.reconciled("ok", started.elapsed()),
        Err(e) => {
            ctx.metrics.reconciled("error", started.elapsed());
            ctx.metrics.reconcile_error(e.category());
            let message = match e {
                Error::Step { message, .. } => message.clone(),
                other => other.to_string(),
            };
            let message = redact(&message);
            span.in_scope(|| {
                tracing::warn!(category = e.category(), error = %message, "reconcile failed");
            });
            let note = format!("{}: {message}", e.category());
            let event = plan::Event {
                type_: plan::EventType::Warning,
                reason: "ReconcileError",
                note,
            };
            scope
                .cluster
                .publish_to(&reference(obj.meta()), &event, "Reconcile")
                .instrument(span)
                .await;
        }
    }
    result
}

fn reference(meta: &kube::core::ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{GROUP}/v1alpha1")),
        kind: Some("LatticeAgent".to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

async fn reconcile_agent(agent: &LatticeAgent, scope: &Arc<Scope>) -> Result<Action> {
    let ctx = &scope.ctx;
    let Some(uid) = agent.metadata.uid.clone() else {
        return Err(Error::Internal("the resource has no metadata.uid".into()));
    };
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    // This reconcile replaces the one that was due, if any (it records the next when it is done;
    // after an error, kube-runtime's backoff requeues it).
    ctx.memory.update(&uid, |m| m.due = None);
    // The copy the controller handed over was read from the store when the reconcile was
    // scheduled; the store may have moved on since. Read it again, after the overlay (see
    // `Memory::freshest_resource`).
    let agent = ctx.memory.freshest_resource(
        &uid,
        || {
            scope
                .agents
                .get(&ObjectRef::new(&agent.name_any()).within(&namespace))
                .and_then(|g| g.0.as_ref().ok().cloned())
                .filter(|a| a.metadata.uid.as_deref() == Some(uid.as_str()))
                .unwrap_or_else(|| agent.clone())
        },
        ctx.overlay_ttl(),
    );
    tracing::trace!(
        resource_version = agent
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default(),
        "reconciling"
    );
    let api: Api<LatticeAgent> = Api::namespaced(ctx.client.clone(), &namespace);
    let finalizers = agent.metadata.finalizers.as_deref().unwrap_or_default();
    let index = finalizers.iter().position(|f| f == FINALIZER);
    match (index, agent.metadata.deletion_timestamp.is_some()) {
        (Some(_), false) => {
            let secret = observe_secret(&agent, scope, false).await?;
            execute(&agent, scope, false, secret).await
        }
        (None, true) => Ok(Action::await_change()),
        (Some(_), true) => {
            let secret = observe_secret(&agent, scope, true).await?;
            execute(&agent, scope, true, secret).await
        }
        (None, false) => {
            // On before any remote call (design §3.1 step 1). The test makes the patch fail if
            // the list changed since it was read (Kubernetes does not deduplicate finalizers).
            let patch = if finalizers.is_empty() {
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ])
            } else {
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                ])
            };
            // Go straight on with the patched object (kube-runtime's finalizer helper ends the
            // reconcile here and waits for the watch to bring the patch back: a second pass
            // through the queue for every new resource). The watch event of this patch must
            // then start no reconcile: the predicate is told what the patched object will look
            // like before the patch is sent, because the watch often delivers the event before
            // the patch's response arrives (design §6). If the patch fails, this reconcile's
            // error requeues the resource anyway.
            let mut expected = agent.metadata.clone();
            expected
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(FINALIZER.to_owned());
            ctx.memory
                .predicate_changed(&uid, predicate_hash(&expected, true));
            // The Secret is read (if it must be) while the patch is under way: a read is not a
            // remote call, and a new resource's reconcile waits for one round trip less.
            let (patched, secret) = tokio::try_join!(
                json_patch_of(&api, &agent, patch),
                observe_secret(&agent, scope, false)
            )?;
            ctx.memory.wrote_resource(
                &uid,
                agent.metadata.resource_version.clone(),
                patched.clone(),
                || cached_resource_version(scope, &namespace, &patched.name_any(), &uid),
            );
            execute(&patched, scope, false, secret).await
        }
    }
}

fn has_finalizer(agent: &LatticeAgent) -> bool {
    agent
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// The resourceVersion the LatticeAgent cache holds for the resource (`None`: not cached, or
/// another object of that name).
fn cached_resource_version(
    scope: &Scope,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Option<String> {
    scope
        .agents
        .get(&ObjectRef::new(name).within(namespace))
        .filter(|g| g.meta().uid.as_deref() == Some(uid))
        .and_then(|g| g.meta().resource_version.clone())
}

/// Applies a JSON patch (RFC 6902) to the resource; returns the patched resource.
async fn json_patch_of(
    api: &Api<LatticeAgent>,
    agent: &LatticeAgent,
    patch: serde_json::Value,
) -> Result<LatticeAgent> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Internal(e.to_string()))?;
    api.patch(
        &agent.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(Error::Kube)
}

/// The resource's Secret as a reconcile starts from: this process's last write of it, the cache,
/// or a direct read.
async fn observe_secret(
    agent: &LatticeAgent,
    scope: &Scope,
    deleting: bool,
) -> Result<Option<Secret>> {
    let ctx = &scope.ctx;
    let uid = agent.metadata.uid.as_deref().unwrap_or_default();
    let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
    let secret_name = effective_secret_name(agent);
    let cached = || scope.secrets.get(namespace, &secret_name);
    let secret = ctx
        .memory
        .freshest_secret(uid, &secret_name, cached, ctx.overlay_ttl());
    if secret.is_some() || deleting {
        return Ok(secret);
    }
    // The watch sees only Secrets labelled as ours: a foreign Secret of that name is found by a
    // direct read, before anything is registered for a Secret that cannot be written (design
    // §3.1 step 3: a conflict costs no remote call). One read per reconcile that finds no Secret
    // of ours in the cache: a new resource, a deleted Secret, a conflict.
    scope
        .cluster
        .get_secret(namespace, &secret_name)
        .await
        .map_err(Error::Kube)
}

/// One reconcile through the executor, with the resource's Secret as [`observe_secret`] found it.
async fn execute(
    agent: &LatticeAgent,
    scope: &Scope,
    deleting: bool,
    secret: Option<Secret>,
) -> Result<Action> {
    let ctx = &scope.ctx;
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    let name = agent.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();

    let view = secret
        .map(|s| SecretView::observe(&cache_form(s), &uid))
        .unwrap_or_default();
    let mut observed = Observed::new(now, ctx.settings.clone(), agent.clone(), view);
    observed.older_claimant = scope.claims.older_claimant(agent);
    observed.last_remote_check = ctx.memory.last_remote_check(&uid).or_else(|| {
        // Not read by this process yet: the first read falls at a point of the first resync
        // interval after the start that depends on the uid alone, as if the last read had been
        // one interval before it (design §3.1 step 6).
        ctx.spread_first_drift_read.then(|| {
            let interval = ctx.settings.resync_interval;
            let due = schedule::add(ctx.started, schedule::startup_offset(&uid, interval));
            due.checked_sub(interval).unwrap_or(due)
        })
    });

    let executor = Executor {
        remote: ctx.remote.as_ref(),
        cluster: &scope.cluster,
        metrics: &ctx.metrics,
        failpoints: ctx.failpoints.as_ref(),
        memory: Some(&ctx.memory),
    };
    let report = executor.run(observed).await?;

    for (replaced, secret) in report.secrets {
        ctx.memory.wrote_secret(&uid, replaced, secret);
    }
    if report.secret_stale {
        ctx.memory.drop_secret(&uid);
    }
    for (replaced, resource) in report.resources {
        let cached = || cached_resource_version(scope, &namespace, &name, &uid);
        ctx.memory.wrote_resource(&uid, replaced, resource, cached);
    }
    let done = report.settled;
    if deleting && !has_finalizer(&report.observed.resource) {
        ctx.memory.forget(&uid);
        ctx.update_gauges();
        return Ok(Action::await_change());
    }
    let status = report.observed.resource.status.clone().unwrap_or_default();
    let service_key_wait = done.failure.as_ref().is_some_and(|f| {
        matches!(
            f.class,
            ErrorClass::ServiceKeyMissing | ErrorClass::ServiceKeyRejected
        )
    });
    // A successful reconcile's next one, when due after a delay, is the sweeper's to start
    // (design §6); anything else is kube-runtime's.
    let succeeded = done.failure.is_none() && !deleting;
    let due = match done.requeue {
        Requeue::After(d) if succeeded => Some(Instant::now() + requeue_delay(d)),
        _ => None,
    };
    ctx.memory.update(&uid, |m| {
        if done.remote_checked {
            m.last_remote_check = Some(now);
        }
        m.managed = !deleting && status.agent_id.is_some();
        m.rotating = !deleting && !status.retiring_keys.is_empty();
        m.waiting_for_service_key = service_key_wait.then(|| (namespace.clone(), name.clone()));
        if succeeded {
            m.failures = 0;
            m.due = due.map(|at| (at, namespace.as_str().into(), name.as_str().into()));
        }
    });
    ctx.update_gauges();
    tracing::debug!(
        ready = condition_reason(&status, plan::READY).unwrap_or_default(),
        requeue = ?done.requeue,
        "reconciled"
    );
    match done.failure {
        Some(f) => Err(Error::Step {
            effect: f.effect,
            class: f.class,
            message: f.message,
            requeue: done.requeue,
        }),
        None if deleting => Err(Error::CleanupPending),
        None if due.is_some() => Ok(Action::await_change()),
        None => Ok(requeue_action(done.requeue, None)),
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

fn error_policy(obj: Arc<Guarded>, error: &Error, scope: Arc<Scope>) -> Action {
    let ctx = &scope.ctx;
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let failures = ctx
        .memory
        .update(&uid, |m| {
            m.failures = m.failures.saturating_add(1);
            m.failures
        })
        .unwrap_or(1);
    let requeue = match error {
        Error::Step { requeue, .. } => *requeue,
        Error::CleanupPending => Requeue::After(ctx.settings.resync_interval),
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

// ----- malformed objects ------------------------------------------------------------------------

/// An object the Rust type rejects (stored through an older or looser CRD): say so in its status
/// and wait for a change. Nothing was registered for it (the finalizer is only added to objects
/// that parse), unless it parsed before; a deletion then waits for the spec to be fixed or for
/// `agentlattice.io/skip-revoke: "true"`.
async fn reconcile_invalid(invalid: &InvalidObject, scope: &Scope) -> Result<Action> {
    let ctx = &scope.ctx;
    let meta = &invalid.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let message = format!(
        "the object does not match the LatticeAgent schema: {}",
        sanitize_serde_error(&invalid.error)
    );
    tracing::warn!(error = %message, "malformed LatticeAgent");
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &ApiResource::erase::<LatticeAgent>(&()),
    );
    let has_finalizer = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    if meta.deletion_timestamp.is_some() && has_finalizer {
        let skip = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::crd::SKIP_REVOKE_ANNOTATION))
            .is_some_and(|v| v == "true");
        if skip {
            let finalizers: Vec<&String> = meta
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .collect();
            let patch = serde_json::json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": meta.resource_version,
            }});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            scope
                .cluster
                .publish_to(
                    &reference(meta),
                    &plan::Event {
                        type_: plan::EventType::Warning,
                        reason: "RevocationSkipped",
                        note: format!(
                            "{}: deletion of a malformed object finished without revoking its \
                             agent",
                            crate::crd::SKIP_REVOKE_ANNOTATION
                        ),
                    },
                    "Delete",
                )
                .await;
            return Ok(Action::await_change());
        }
    }
    let current = api.get_opt(&name).await?;
    let Some(current) = current else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let previous: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> = current
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = meta.generation;
    let conditions = vec![
        plan::condition(
            &previous,
            plan::READY,
            false,
            "InvalidSpec",
            message.clone(),
            generation,
            now,
        ),
        plan::condition(
            &previous,
            plan::SYNCED,
            false,
            "InvalidSpec",
            message,
            generation,
            now,
        ),
    ];
    let unchanged = conditions.iter().all(|c| {
        previous.iter().any(|p| {
            p.type_ == c.type_
                && p.status == c.status
                && p.reason == c.reason
                && p.message == c.message
                && p.observed_generation == c.observed_generation
        })
    });
    if !unchanged {
        let mut merged: Vec<_> = previous
            .iter()
            .filter(|p| !conditions.iter().any(|c| c.type_ == p.type_))
            .cloned()
            .collect();
        merged.extend(conditions);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": {"conditions": merged, "observedGeneration": generation},
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// A serde error without the values it quotes (a value could be anything a user pasted).
fn sanitize_serde_error(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut in_quotes = false;
    for c in error.chars() {
        if c == '"' {
            if in_quotes {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    truncate(&redact(&out), 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(yaml: &str) -> Guarded {
        serde_yaml::from_str(yaml).expect("test object")
    }

    const BASE: &str = r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata:
  name: a
  namespace: ns
  uid: u1
  generation: 1
  resourceVersion: "1"
  annotations: {agentlattice.io/rotate: "1", other: x}
  labels: {app: a}
spec: {capabilities: [x]}
"#;

    #[test]
    fn predicate_ignores_status_and_foreign_annotations_only() {
        let base = guarded(BASE);
        let h = main_predicate(&base);
        // Status and resourceVersion: ignored.
        let mut g = base.clone();
        g.meta_mut().resource_version = Some("2".into());
        if let Ok(a) = g.0.as_mut() {
            a.status = Some(Default::default());
        }
        assert_eq!(main_predicate(&g), h);
        // A foreign annotation: ignored.
        let mut g = base.clone();
        g.meta_mut()
            .annotations
            .get_or_insert_default()
            .insert("other".into(), "y".into());
        assert_eq!(main_predicate(&g), h);
        // Ours, labels, finalizers, generation, deletion: not ignored.
        type Change = Box<dyn Fn(&mut kube::core::ObjectMeta)>;
        let changes: Vec<Change> = vec![
            Box::new(|m| {
                m.annotations
                    .get_or_insert_default()
                    .insert("agentlattice.io/rotate".into(), "2".into());
            }),
            Box::new(|m| {
                m.labels
                    .get_or_insert_default()
                    .insert("app".into(), "b".into());
            }),
            Box::new(|m| m.finalizers = Some(vec![FINALIZER.into()])),
            Box::new(|m| m.generation = Some(2)),
            Box::new(|m| {
                m.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::now(),
                ));
            }),
        ];
        for change in changes {
            let mut g = base.clone();
            change(g.meta_mut());
            assert_ne!(main_predicate(&g), h);
        }
    }

    #[test]
    fn malformed_objects_are_guarded() {
        let g = guarded(
            r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata: {name: bad, namespace: ns, uid: u2}
spec: {capabilities: "al_agent_SHOULDNOTLEAK12345 is not a list"}
"#,
        );
        let Err(invalid) = &g.0 else {
            panic!("the object should not parse");
        };
        let message = sanitize_serde_error(&invalid.error);
        assert!(!message.contains("al_agent_"), "{message}");
        assert!(!message.contains("SHOULDNOTLEAK"), "{message}");
        assert!(message.to_lowercase().contains("invalid type"), "{message}");
        assert_eq!(g.meta().name.as_deref(), Some("bad"));
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
