//! Provisioners at run time (docs/tenancy.md): the caches of `LatticeProvisioner` and
//! `ClusterLatticeProvisioner`, one backend per provisioner — AgentLattice, or Alter for a
//! provisioner with `spec.alter` (docs/alter.md) — with its own key (read from its marked Secret
//! when needed) and its own base URL, the resolution of a
//! LatticeAgent's `spec.provisionerRef` into what the pure policy check needs
//! ([`crate::plan::policy`]), and the provisioner controller: it checks each key with
//! AgentLattice, writes the provisioner's status, and wakes the LatticeAgents that name a
//! provisioner when it changes.
//!
//! The default provisioner (the flags' service key) is the operator's existing backend; it has no
//! object, so its readiness is not tracked here (its failures show on each LatticeAgent as before).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlattice::{ClientConfig, ListAgentsQuery};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;

use crate::cache::agent::StoredAgent;
use crate::config::SecretRef;
use crate::crd::{
    ClusterLatticeProvisioner, LatticeAgent, LatticeProvisioner, ProvisionerPolicy,
    ProvisionerStatus, SERVICE_KEY_LABEL, SERVICE_KEY_LABEL_VALUE,
};
use crate::plan::BackendKind;
use crate::plan::policy::{self, Policy, ProvisionerId, ProvisionerView, Readiness, Resolution};
use crate::plan::{ErrorClass, conditions};
use crate::remote::{
    AgentLattice, Alter, AppKeyProvider, Backend, RemoteError, RemoteResult, ServiceKeyProvider,
    ServiceKeySource,
};

/// Where a provisioner's backend reads its key, which URL it calls, and for Alter which app:
/// a change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    secret: SecretRef,
    field: String,
    base_url: String,
    /// The Alter app, for an Alter provisioner.
    alter_app: Option<String>,
}

impl Source {
    fn backend(&self) -> BackendKind {
        match self.alter_app {
            Some(_) => BackendKind::Alter,
            None => BackendKind::AgentLattice,
        }
    }
}

/// A provisioner's backend, whichever it is: what the reconciles call, and what the checker
/// checks.
#[derive(Clone, Debug)]
enum Remote {
    AgentLattice(Arc<AgentLattice>),
    Alter(Arc<Alter>),
}

impl Remote {
    fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Remote::AgentLattice(b) => Arc::clone(b) as Arc<dyn Backend>,
            Remote::Alter(b) => Arc::clone(b) as Arc<dyn Backend>,
        }
    }

    /// Checks the key with the backend (see [`AgentLattice::check_service_key`] and
    /// [`Alter::check_app_key`]).
    async fn check(&self) -> RemoteResult<()> {
        match self {
            Remote::AgentLattice(b) => b.check_service_key().await,
            Remote::Alter(b) => b.check_app_key().await,
        }
    }

    fn key_info(&self) -> Option<(String, Timestamp)> {
        match self {
            Remote::AgentLattice(b) => b.provider().key_info(),
            Remote::Alter(b) => b.provider().key_info(),
        }
    }

    fn invalidate(&self) {
        match self {
            Remote::AgentLattice(b) => b.provider().invalidate(),
            Remote::Alter(b) => b.provider().invalidate(),
        }
    }

    /// What a Ready condition says of the key.
    fn accepted(&self) -> &'static str {
        match self {
            Remote::AgentLattice(_) => {
                "the service key is present, marked, and AgentLattice accepts it"
            }
            Remote::Alter(_) => {
                "the app key is present, marked, belongs to the app, and Alter accepts it"
            }
        }
    }
}

/// A provisioner object, whichever its kind.
#[derive(Clone, Debug)]
struct Object {
    id: ProvisionerId,
    generation: Option<i64>,
    source: Source,
    policy: ProvisionerPolicy,
    suspended: bool,
    status: ProvisionerStatus,
    /// For a cluster provisioner: its namespace rule.
    namespaces: Option<crate::crd::NamespaceRule>,
}

/// What the watch last saw of a provisioner: its generation and its readiness.
type Seen = (Option<i64>, Option<String>);

/// Where one cache of LatticeProvisioners is fed from: its scope (a namespace, or all).
type ScopedWriter = (Option<String>, reflector::store::Writer<LatticeProvisioner>);

/// The longest a reconcile waits for the provisioner caches to list after a start.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// Builds the AgentLattice client configuration for a base URL (timeouts, rate limit, metrics).
pub type ConfigFor = Arc<dyn Fn(&str) -> ClientConfig + Send + Sync>;

/// Builds the Alter client configuration for a base URL and an app id.
pub type AlterConfigFor = Arc<dyn Fn(&str, &str) -> ::alter::ClientConfig + Send + Sync>;

/// The provisioners: caches, backends, the checker (see the module docs).
pub struct Provisioners {
    client: kube::Client,
    default: Arc<dyn Backend>,
    default_base_url: String,
    config_for: ConfigFor,
    alter_config_for: AlterConfigFor,
    /// One cache per watched namespace (or one for the cluster), like the LatticeAgents'.
    namespaced: Vec<Store<LatticeProvisioner>>,
    namespaced_writers: Mutex<Vec<ScopedWriter>>,
    cluster: Store<ClusterLatticeProvisioner>,
    cluster_writer: Mutex<Option<reflector::store::Writer<ClusterLatticeProvisioner>>>,
    backends: Mutex<HashMap<ProvisionerId, (Source, Remote)>>,
    changes: broadcast::Sender<ProvisionerId>,
    /// The provisioners to check now: their spec or their Secret changed (not their status,
    /// which the checker writes itself: that would be a loop).
    to_check: broadcast::Sender<ProvisionerId>,
    /// Per provisioner, the generation and readiness last seen by the watch.
    seen: Mutex<HashMap<ProvisionerId, Seen>>,
    agent_stores: Mutex<Vec<Store<StoredAgent>>>,
    /// How many provisioner caches have listed once, of [`Provisioners::caches`].
    synced: tokio::sync::watch::Sender<usize>,
    /// Until when reconciles wait for the caches: [`SYNC_WAIT`] after the start, once for the
    /// process, not per reconcile.
    sync_deadline: tokio::time::Instant,
    /// The provisioner caches: one per namespace scope, and the cluster one.
    caches: usize,
    /// How often a Ready provisioner's key is checked again.
    recheck: Duration,
    /// How long after a missing or rejected key it is checked again (a change of its Secret or
    /// its spec checks at once).
    retry: Duration,
}

impl std::fmt::Debug for Provisioners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioners").finish_non_exhaustive()
    }
}

impl Provisioners {
    /// Provisioners reading through `client`; `default` is the flags' backend. `namespaces`
    /// are the watched namespaces (empty: all): `LatticeProvisioner`s and marked Secrets are
    /// watched there only, with the permissions the operator has there anyway.
    pub fn new(
        client: kube::Client,
        default: Arc<dyn Backend>,
        default_base_url: &str,
        config_for: ConfigFor,
        namespaces: &[String],
        recheck: Duration,
        retry: Duration,
    ) -> Self {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let mut namespaced = Vec::new();
        let mut writers = Vec::new();
        for scope in scopes {
            let (store, writer) = reflector::store();
            namespaced.push(store);
            writers.push((scope, writer));
        }
        let (cluster, cw) = reflector::store();
        let caches = namespaced.len() + 1;
        Provisioners {
            client,
            default,
            default_base_url: default_base_url.to_owned(),
            config_for,
            alter_config_for: Arc::new(|base_url: &str, app_id: &str| {
                ::alter::ClientConfig::new(base_url).app_id(app_id)
            }),
            namespaced,
            namespaced_writers: Mutex::new(writers),
            cluster,
            cluster_writer: Mutex::new(Some(cw)),
            backends: Mutex::new(HashMap::new()),
            changes: broadcast::channel(4096).0,
            to_check: broadcast::channel(4096).0,
            seen: Mutex::new(HashMap::new()),
            agent_stores: Mutex::new(Vec::new()),
            synced: tokio::sync::watch::channel(0).0,
            sync_deadline: tokio::time::Instant::now() + SYNC_WAIT,
            caches,
            recheck,
            retry,
        }
    }

    /// Checks `id` again at once (a call with its key was rejected).
    pub fn recheck(&self, id: &ProvisionerId) {
        if *id != ProvisionerId::Default {
            let _ = self.to_check.send(id.clone());
        }
    }

    /// Lets the provisioner controller count the LatticeAgents of a controller's cache.
    pub fn add_agent_store(&self, store: Store<StoredAgent>) {
        if let Ok(mut stores) = self.agent_stores.lock() {
            stores.push(store);
        }
    }

    /// The provisioners that changed (spec, status, or their Secret), for waking their agents.
    pub fn subscribe(&self) -> broadcast::Receiver<ProvisionerId> {
        self.changes.subscribe()
    }

    fn object(&self, id: &ProvisionerId) -> Option<Object> {
        match id {
            ProvisionerId::Default => None,
            ProvisionerId::Namespaced { namespace, name } => self
                .namespaced
                .iter()
                .find_map(|s| s.get(&ObjectRef::new(name).within(namespace)))
                .map(|p| namespaced_object(&p, &self.default_base_url)),
            ProvisionerId::Cluster { name } => self
                .cluster
                .get(&ObjectRef::new(name))
                .map(|p| cluster_object(&p, &self.default_base_url)),
        }
    }

    /// Resolves what `agent` names, with the default provisioner's `default_policy` (reads the
    /// namespace's labels when a cluster provisioner selects namespaces by label).
    pub async fn resolve(&self, agent: &LatticeAgent, default_policy: &Policy) -> Resolution {
        let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
        let id = ProvisionerId::of(namespace, agent.spec.provisioner_ref.as_ref());
        if id == ProvisionerId::Default {
            return Resolution::default_provisioner(default_policy.clone(), &self.default_base_url);
        }
        self.wait_synced().await;
        let Some(object) = self.object(&id) else {
            return Resolution::NotFound(id, "does not exist".to_owned());
        };
        let namespace_allowed = match &object.namespaces {
            None => true,
            Some(rule) if rule.names.iter().any(|n| n == namespace) => true,
            Some(rule) if rule.selector.is_some() => {
                let labels = self.namespace_labels(namespace).await;
                policy::namespace_allowed(rule, namespace, labels.as_ref())
            }
            Some(_) => false,
        };
        Resolution::Resolved(ProvisionerView {
            id,
            policy: Policy {
                capabilities: object.policy.capabilities.clone(),
                name_prefix: object.policy.agent_names.prefix.clone(),
            },
            namespace_allowed,
            readiness: readiness(&object.status),
            suspended: object.suspended,
            base_url: object.source.base_url.clone(),
            backend: object.source.backend(),
        })
    }

    /// Waits until every provisioner cache has listed once, so that a reconcile right after a
    /// start does not report an existing provisioner as not found (a Warning event and a
    /// `Ready` flip on every agent at each restart). At most [`SYNC_WAIT`]: without the CRDs or
    /// the RBAC to list them the caches never sync, and the agents naming a provisioner are then
    /// refused with `ProvisionerNotFound` rather than held forever. The wait ends
    /// [`SYNC_WAIT`] after the start for every reconcile, not [`SYNC_WAIT`] per reconcile: an
    /// upgrade with `helm upgrade` does not install new CRDs (Helm installs `crds/` only at
    /// install), and 10,000 LatticeAgents waiting 10 s each, 16 at a time, would take 100 minutes.
    async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let caches = self.caches;
        let _ = tokio::time::timeout_at(self.sync_deadline, rx.wait_for(|n| *n >= caches)).await;
    }

    /// A cache listed for the first time (`done` makes it count once).
    fn cache_synced(&self, done: &std::sync::atomic::AtomicBool) {
        if !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.synced.send_modify(|n| *n += 1);
        }
    }

    async fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(namespace).await {
            Ok(Some(ns)) => Some(ns.metadata.labels.unwrap_or_default()),
            Ok(None) => None,
            Err(e) => {
                // Not allowed or unreachable: the selector matches nothing (deny by default).
                tracing::warn!(namespace, error = %crate::error::kube_message(&e), "reading a namespace's labels for a provisioner selector");
                None
            }
        }
    }

    /// The backend of `id`: the default one, the provisioner's own (built when first needed and
    /// rebuilt when its Secret reference or base URL changes), or one that fails every call with
    /// why the provisioner cannot be used (a deletion then waits, with `RevocationFailed`).
    pub fn backend(&self, id: &ProvisionerId) -> Arc<dyn Backend> {
        if *id == ProvisionerId::Default {
            return Arc::clone(&self.default);
        }
        match self.object(id) {
            Some(object) => self.remote(id, &object.source).backend(),
            None => Arc::new(Unavailable(format!("provisioner {id} does not exist"))),
        }
    }

    /// Builds the Alter clients' configuration with `config_for` (base URL, app id) instead of
    /// the defaults (the operator's timeouts, rate limit and metrics).
    pub fn with_alter_config(mut self, config_for: AlterConfigFor) -> Self {
        self.alter_config_for = config_for;
        self
    }

    fn remote(&self, id: &ProvisionerId, source: &Source) -> Remote {
        let Ok(mut backends) = self.backends.lock() else {
            return self.build(source);
        };
        if let Some((s, b)) = backends.get(id)
            && s == source
        {
            return b.clone();
        }
        let backend = self.build(source);
        backends.insert(id.clone(), (source.clone(), backend.clone()));
        backend
    }

    fn build(&self, source: &Source) -> Remote {
        let key_source = ServiceKeySource {
            secret: source.secret.clone(),
            field: source.field.clone(),
        };
        match &source.alter_app {
            None => {
                let provider = ServiceKeyProvider::new(
                    self.client.clone(),
                    key_source,
                    (self.config_for)(&source.base_url),
                )
                .requiring_mark();
                Remote::AgentLattice(Arc::new(AgentLattice::new(Arc::new(provider))))
            }
            Some(app_id) => {
                let provider = AppKeyProvider::new(
                    self.client.clone(),
                    key_source,
                    (self.alter_config_for)(&source.base_url, app_id),
                )
                .requiring_mark();
                Remote::Alter(Arc::new(Alter::new(Arc::new(provider))))
            }
        }
    }

    /// The provisioners whose key lives in Secret `namespace/name`.
    fn using_secret(&self, namespace: &str, name: &str) -> Vec<ProvisionerId> {
        let mut ids = Vec::new();
        for p in self.namespaced.iter().flat_map(|s| s.state()) {
            let o = namespaced_object(&p, &self.default_base_url);
            if o.source.secret.namespace == namespace && o.source.secret.name == name {
                ids.push(o.id);
            }
        }
        for p in self.cluster.state() {
            let o = cluster_object(&p, &self.default_base_url);
            if o.source.secret.namespace == namespace && o.source.secret.name == name {
                ids.push(o.id);
            }
        }
        ids
    }

    fn secret_changed(&self, namespace: &str, name: &str) {
        for id in self.using_secret(namespace, name) {
            if let Ok(backends) = self.backends.lock()
                && let Some((_, b)) = backends.get(&id)
            {
                b.invalidate();
            }
            let _ = self.to_check.send(id.clone());
            let _ = self.changes.send(id);
        }
    }

    /// A provisioner as the watch delivered it: a new generation is checked at once and wakes
    /// its agents; a new readiness (the checker's own status write) only wakes its agents;
    /// anything else (`lastChecked`, the agent count) does nothing.
    fn observed(&self, object: Object) {
        let ready = conditions::find(&object.status.conditions, conditions::READY)
            .map(|c| format!("{}/{}", c.status, c.reason));
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let previous = seen.insert(object.id.clone(), (object.generation, ready.clone()));
        let (generation_changed, readiness_changed) = match &previous {
            None => (true, true),
            Some((generation, r)) => (*generation != object.generation, *r != ready),
        };
        if generation_changed {
            let _ = self.to_check.send(object.id.clone());
        }
        if generation_changed || readiness_changed {
            let _ = self.changes.send(object.id);
        }
    }

    /// A provisioner deleted: its agents are told (they are refused with `ProvisionerNotFound`),
    /// and what the process kept of it is dropped.
    fn gone(&self, id: ProvisionerId) {
        self.forget(&id);
        let _ = self.changes.send(id);
    }

    /// A provisioner that is gone: its backend and what the watch saw of it are dropped.
    fn forget(&self, id: &ProvisionerId) {
        if let Ok(mut backends) = self.backends.lock() {
            backends.remove(id);
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(id);
        }
    }

    /// How many LatticeAgents in the operator's caches record `id` as their provisioner.
    fn count_agents(&self, id: &ProvisionerId) -> i64 {
        let wanted = id.to_string();
        let Ok(stores) = self.agent_stores.lock() else {
            return 0;
        };
        let n = stores
            .iter()
            .flat_map(|s| s.state())
            .filter(|stored| stored.records_provisioner(&wanted))
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// The watch of one provisioner kind: its cache, and what it observes of each object
    /// (`object` reads one as the planner sees it).
    async fn watch<K>(
        self: Arc<Self>,
        api: Api<K>,
        writer: reflector::store::Writer<K>,
        object: fn(&K, &str) -> Object,
        kind: &'static str,
    ) where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let done = std::sync::atomic::AtomicBool::new(false);
        watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        self.observed(object(&p, &self.default_base_url));
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        self.gone(object(&p, &self.default_base_url).id);
                    }
                    Ok(watcher::Event::InitDone) => self.cache_synced(&done),
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::debug!(error = %e, kind, "provisioner watch (retrying)"),
                }
                std::future::ready(())
            })
            .await;
    }

    /// Runs the watches (provisioners of both kinds, marked Secrets) and the checker until the
    /// future is dropped.
    pub async fn run(self: Arc<Self>) {
        let writers = self
            .namespaced_writers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let cw = self.cluster_writer.lock().ok().and_then(|mut w| w.take());
        let Some(cw) = cw else {
            return;
        };
        let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
        let selector = format!("{SERVICE_KEY_LABEL}={SERVICE_KEY_LABEL_VALUE}");
        for (scope, writer) in writers {
            let (provisioners, secrets): (Api<LatticeProvisioner>, Api<PartialObjectMeta<Secret>>) =
                match &scope {
                    Some(ns) => (
                        Api::namespaced(self.client.clone(), ns),
                        Api::namespaced(self.client.clone(), ns),
                    ),
                    None => (Api::all(self.client.clone()), Api::all(self.client.clone())),
                };
            tasks.push(Box::pin(Arc::clone(&self).watch(
                provisioners,
                writer,
                namespaced_object,
                "LatticeProvisioner",
            )));
            // The marked Secrets: a key replaced in place is used from the next call on.
            let me = Arc::clone(&self);
            tasks.push(Box::pin(
                watcher(secrets, watcher::Config::default().labels(&selector))
                    .default_backoff()
                    .touched_objects()
                    .for_each(move |event| {
                        match event {
                            Ok(s) => {
                                me.secret_changed(&s.namespace().unwrap_or_default(), &s.name_any())
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "service key Secret watch (retrying)")
                            }
                        }
                        std::future::ready(())
                    }),
            ));
        }
        tasks.push(Box::pin(Arc::clone(&self).watch(
            Api::<ClusterLatticeProvisioner>::all(self.client.clone()),
            cw,
            cluster_object,
            "ClusterLatticeProvisioner",
        )));
        tasks.push(Box::pin(Arc::clone(&self).checker()));
        futures::future::join_all(tasks).await;
    }

    /// Checks each provisioner's key when it changes, when its Secret changes, and every
    /// `recheck` (every `retry` while it is not ready): one `GET /api/agents?limit=1` per check,
    /// the cheapest call AgentLattice authenticates with a service key.
    async fn checker(self: Arc<Self>) {
        let mut changes = self.to_check.subscribe();
        let mut due: HashMap<ProvisionerId, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = changes.recv() => match changed {
                    Ok(id) => { due.insert(id, Instant::now()); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for id in self.all_ids() { due.insert(id, Instant::now()); }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    for id in self.all_ids() {
                        due.entry(id).or_insert(now);
                    }
                    let ready: Vec<ProvisionerId> = due
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in ready {
                        let next = match self.check(&id).await {
                            Some(true) => now + self.recheck,
                            Some(false) => now + self.retry,
                            None => {
                                self.forget(&id);
                                due.remove(&id);
                                continue;
                            }
                        };
                        due.insert(id, next);
                    }
                }
            }
        }
    }

    fn all_ids(&self) -> Vec<ProvisionerId> {
        let mut ids: Vec<ProvisionerId> = self
            .namespaced
            .iter()
            .flat_map(|s| s.state())
            .map(|p| namespaced_object(&p, &self.default_base_url).id)
            .collect();
        ids.extend(
            self.cluster
                .state()
                .iter()
                .map(|p| cluster_object(p, &self.default_base_url).id),
        );
        ids
    }

    /// One check of `id`: `Some(ready)`, or `None` when it is gone. Writes its status (one patch
    /// per check: `lastChecked` moves; checks come once per resync interval while ready, once per
    /// `--service-key-retry` while not, and at once when its spec or Secret changes or a call
    /// with its key is rejected).
    async fn check(&self, id: &ProvisionerId) -> Option<bool> {
        let object = self.object(id)?;
        let backend = self.remote(id, &object.source);
        let result = backend.check().await;
        let now = Timestamp::now();
        let (ready, reason, message) = match &result {
            Ok(()) => (true, "ServiceKeyAccepted", backend.accepted().to_owned()),
            Err(e) => (false, e.class.category(), e.message.clone()),
        };
        let key_info = backend.key_info();
        let previous = &object.status;
        let condition = conditions::condition(
            &previous.conditions,
            conditions::READY,
            ready,
            reason,
            message,
            object.generation,
            now,
        );
        let status = ProvisionerStatus {
            conditions: vec![condition],
            observed_generation: object.generation,
            last_checked: Some(Timestamp::from_second(now.as_second()).unwrap_or(now)),
            agents: Some(self.count_agents(id)),
            service_key_prefix: key_info
                .as_ref()
                .map(|(p, _)| p.clone())
                .or(previous.service_key_prefix.clone()),
            service_key_created: key_info
                .as_ref()
                .map(|(_, t)| Timestamp::from_second(t.as_second()).unwrap_or(*t))
                .or(previous.service_key_created),
        };
        let became = ready != readiness_is_ready(previous);
        if let Err(e) = self.write_status(id, &status).await {
            tracing::warn!(provisioner = %id, error = %crate::error::kube_message(&e), "writing provisioner status");
        } else if became {
            if ready {
                tracing::info!(provisioner = %id, "provisioner ready");
            } else {
                tracing::warn!(provisioner = %id, reason, "provisioner not ready");
            }
        }
        Some(ready)
    }

    async fn write_status(
        &self,
        id: &ProvisionerId,
        status: &ProvisionerStatus,
    ) -> kube::Result<()> {
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        let params = PatchParams::default();
        match id {
            ProvisionerId::Default => Ok(()),
            ProvisionerId::Namespaced { namespace, name } => {
                let api: Api<LatticeProvisioner> = Api::namespaced(self.client.clone(), namespace);
                api.patch_status(name, &params, &patch).await.map(|_| ())
            }
            ProvisionerId::Cluster { name } => {
                let api: Api<ClusterLatticeProvisioner> = Api::all(self.client.clone());
                api.patch_status(name, &params, &patch).await.map(|_| ())
            }
        }
    }

    /// Every LatticeAgent of `store` that names `id`.
    pub fn agents_naming(
        store: &Store<StoredAgent>,
        id: &ProvisionerId,
    ) -> Vec<ObjectRef<StoredAgent>> {
        let wanted = id.to_string();
        store
            .state()
            .iter()
            .filter(|stored| stored.names_provisioner(&wanted))
            .map(|stored| ObjectRef::from_obj(stored.as_ref()))
            .collect()
    }
}

fn readiness_is_ready(status: &ProvisionerStatus) -> bool {
    conditions::find(&status.conditions, conditions::READY).is_some_and(|c| c.status == "True")
}

/// The readiness the policy sees: the `Ready` condition as last written by the checker, unknown
/// before its first check (a new provisioner does not block its agents; a bad key then fails
/// their first call, which asks for a check at once).
fn readiness(status: &ProvisionerStatus) -> Readiness {
    match conditions::find(&status.conditions, conditions::READY) {
        None => Readiness::Unknown,
        Some(Condition { status, .. }) if status == "True" => Readiness::Ready,
        Some(c) => Readiness::NotReady(format!("{}: {}", c.reason, c.message)),
    }
}

fn namespaced_object(p: &LatticeProvisioner, default_base_url: &str) -> Object {
    let namespace = p.namespace().unwrap_or_default();
    Object {
        id: ProvisionerId::Namespaced {
            namespace: namespace.clone(),
            name: p.name_any(),
        },
        generation: p.meta().generation,
        source: Source {
            secret: SecretRef {
                namespace,
                name: p.spec.service_key_secret_ref.name.clone(),
            },
            field: p.spec.service_key_secret_ref.key.clone(),
            base_url: base_url(
                p.spec.base_url.as_ref(),
                p.spec.alter.as_ref(),
                default_base_url,
            ),
            alter_app: p.spec.alter.as_ref().map(|a| a.app_id.clone()),
        },
        policy: p.spec.policy.clone(),
        suspended: p.spec.suspend,
        status: p.status.clone().unwrap_or_default(),
        namespaces: None,
    }
}

fn cluster_object(p: &ClusterLatticeProvisioner, default_base_url: &str) -> Object {
    Object {
        id: ProvisionerId::Cluster { name: p.name_any() },
        generation: p.meta().generation,
        source: Source {
            secret: SecretRef {
                namespace: p.spec.service_key_secret_ref.namespace.clone(),
                name: p.spec.service_key_secret_ref.name.clone(),
            },
            field: p.spec.service_key_secret_ref.key.clone(),
            base_url: base_url(
                p.spec.base_url.as_ref(),
                p.spec.alter.as_ref(),
                default_base_url,
            ),
            alter_app: p.spec.alter.as_ref().map(|a| a.app_id.clone()),
        },
        policy: p.spec.policy.clone(),
        suspended: p.spec.suspend,
        status: p.status.clone().unwrap_or_default(),
        namespaces: Some(p.spec.namespaces.clone()),
    }
}

/// A provisioner's base URL: its own, else its backend's default (the operator's AgentLattice
/// URL, or Alter's public API).
fn base_url(
    own: Option<&String>,
    alter: Option<&crate::crd::AlterBackend>,
    default_base_url: &str,
) -> String {
    match (own, alter) {
        (Some(url), _) => url.clone(),
        (None, Some(_)) => crate::remote::alter::DEFAULT_BASE_URL.to_owned(),
        (None, None) => default_base_url.to_owned(),
    }
}

/// A backend for a provisioner that cannot be used: every call fails with why.
struct Unavailable(String);

impl Unavailable {
    fn fail<T>(&self) -> futures::future::BoxFuture<'_, RemoteResult<T>>
    where
        T: Send + 'static,
    {
        let error = RemoteError {
            class: ErrorClass::ServiceKeyMissing,
            message: self.0.clone(),
        };
        Box::pin(async move { Err(error) })
    }
}

impl Backend for Unavailable {
    fn register<'a>(
        &'a self,
        _: &'a crate::plan::RegisterRequest,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::remote::Registration>> {
        self.fail()
    }
    fn find_agents<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<Vec<crate::plan::AgentView>>> {
        self.fail()
    }
    fn get_agent<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::AgentView>> {
        self.fail()
    }
    fn update_agent<'a>(
        &'a self,
        _: &'a str,
        _: Option<Vec<String>>,
        _: Option<Option<String>>,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::AgentView>> {
        self.fail()
    }
    fn halt_agent<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::AgentView>> {
        self.fail()
    }
    fn resume_agent<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::AgentView>> {
        self.fail()
    }
    fn revoke_agent<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::AgentView>> {
        self.fail()
    }
    fn mint_key<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::remote::Minted>> {
        self.fail()
    }
    fn list_keys<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<Vec<crate::plan::KeyView>>> {
        self.fail()
    }
    fn deprecate_key<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::KeyView>> {
        self.fail()
    }
    fn revoke_key<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, RemoteResult<crate::plan::KeyView>> {
        self.fail()
    }
}

impl AgentLattice {
    /// Checks the service key: present, marked (for a provisioner), and accepted by AgentLattice
    /// (`GET /api/agents?limit=1`, the cheapest authenticated call).
    pub async fn check_service_key(&self) -> RemoteResult<()> {
        let client = self.provider().client().await?;
        let query = ListAgentsQuery {
            limit: Some(1),
            ..Default::default()
        };
        match client.list_agents(&query).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = crate::remote::classify(&e);
                if error.class == ErrorClass::ServiceKeyRejected {
                    self.provider().invalidate();
                }
                Err(error)
            }
        }
    }
}
