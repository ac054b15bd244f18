//! The workload side of one controller scope (a namespace, or the cluster): a watch per kind
//! (Deployments, StatefulSets, DaemonSets) that keeps the [`WorkloadIndex`] of that kind, wakes
//! the LatticeAgents whose consumers changed, and — with `--workload-identities` — reconciles the
//! identities of annotated workloads.
//!
//! A workload is kept twice, both trimmed: its [`WorkloadView`] in the index (what consumer
//! discovery needs), and its identity-relevant metadata (name, uid, deletion, the
//! `agentlattice.io/` annotations) in the identity controller's store. The full object is only
//! held while an event is processed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{ObjectMeta, PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::identity::{self, FIELD_MANAGER, IdentityStep};
use super::index::WorkloadIndex;
use super::view::WorkloadView;
use crate::cache::agent::StoredAgent;
use crate::claims::ClaimIndex;
use crate::cluster::shutdown::drain_or_drop;
use crate::crd::{GROUP, LatticeAgent};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::plan::{Consumer, Event, EventType, WorkloadKind};

/// A workload kind: its typed object, and how to view it.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: WorkloadKind;
    /// Its view.
    fn view(&self) -> WorkloadView;
}

impl Workload for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn view(&self) -> WorkloadView {
        WorkloadView::of_deployment(self)
    }
}

impl Workload for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn view(&self) -> WorkloadView {
        WorkloadView::of_stateful_set(self)
    }
}

impl Workload for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn view(&self) -> WorkloadView {
        WorkloadView::of_daemon_set(self)
    }
}

/// The indexes of the three kinds of one scope.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    /// Deployments.
    pub deployments: WorkloadIndex,
    /// StatefulSets.
    pub stateful_sets: WorkloadIndex,
    /// DaemonSets.
    pub daemon_sets: WorkloadIndex,
}

impl Workloads {
    /// The index of `kind`.
    pub fn of(&self, kind: WorkloadKind) -> &WorkloadIndex {
        match kind {
            WorkloadKind::Deployment => &self.deployments,
            WorkloadKind::StatefulSet => &self.stateful_sets,
            WorkloadKind::DaemonSet => &self.daemon_sets,
        }
    }

    /// The consumers of the Secret `namespace/secret`, of every kind.
    pub fn consumers(&self, namespace: &str, secret: &str) -> Vec<Consumer> {
        WorkloadKind::ALL
            .into_iter()
            .flat_map(|k| self.of(k).consumers(namespace, secret))
            .collect()
    }
}

/// Wakes the LatticeAgents that claim a Secret whose consumers changed.
#[derive(Clone, Debug)]
pub struct Waker {
    claims: ClaimIndex,
    tx: UnboundedSender<ObjectRef<StoredAgent>>,
}

impl Waker {
    /// Wakes through `tx` the LatticeAgents `claims` knows.
    pub fn new(claims: ClaimIndex, tx: UnboundedSender<ObjectRef<StoredAgent>>) -> Waker {
        Waker { claims, tx }
    }

    fn secrets_changed(&self, secrets: &[Box<str>]) {
        for secret in secrets {
            let Some((namespace, _)) = secret.split_once('/') else {
                continue;
            };
            for name in self.claims.claimants(secret) {
                tracing::trace!(%namespace, %name, "consumers changed: waking the LatticeAgent");
                // A closed channel means the controller stopped: nothing left to wake.
                let _ = self
                    .tx
                    .unbounded_send(ObjectRef::new(&name).within(namespace));
            }
        }
    }
}

/// The identity-relevant metadata of a workload: name, namespace, uid, deletion and the
/// `agentlattice.io/` annotations.
fn identity_meta<K: Workload>(obj: &K) -> PartialObjectMeta<K> {
    let meta = obj.meta();
    let prefix = format!("{GROUP}/");
    let annotations: BTreeMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        deletion_timestamp: meta.deletion_timestamp.clone(),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    }
    .into_response_partial()
}

fn map_event<K, T>(event: watcher::Event<K>, f: impl Fn(&K) -> T) -> watcher::Event<T> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(&o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(&o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(&o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Workloads per list page.
const WORKLOAD_PAGE_SIZE: u32 = 100;

/// The watch of one kind: every event updates its index (and wakes the LatticeAgents whose
/// consumers changed) and the identity store; yields the workloads whose identity must be looked
/// at ([`IdentityFilter`]). `synced` is called at each complete list.
pub fn watch<K: Workload>(
    api: Api<K>,
    index: WorkloadIndex,
    waker: Waker,
    store: Writer<PartialObjectMeta<K>>,
    agents: Option<Store<StoredAgent>>,
    synced: impl Fn() + Send + 'static,
) -> impl Stream<Item = watcher::Result<PartialObjectMeta<K>>> + Send {
    let mut identities = IdentityFilter::new(store, move |meta: &ObjectMeta| {
        agents
            .as_ref()
            .is_some_and(|agents| has_identity(agents, meta))
    });
    // Pages of 100 instead of client-go's 500: a page of full workload objects is held while its
    // events are processed, and the trimmed views kept meanwhile end up spread over the pages
    // it occupied (docs/benchmarks.md, "Watching workloads").
    watcher(
        api,
        watcher::Config::default().page_size(WORKLOAD_PAGE_SIZE),
    )
    .default_backoff()
    .map_ok(move |event| {
        let changed = index.apply(&event, |obj: &K| {
            Some((obj.namespace().unwrap_or_default(), obj.view()))
        });
        waker.secrets_changed(&changed);
        if matches!(event, watcher::Event::InitDone) {
            synced();
        }
        identities.apply(map_event(event, identity_meta::<K>))
    })
    .try_filter_map(|wake| std::future::ready(Ok(wake)))
}

/// Whether the LatticeAgent cache holds an identity created for the workload `meta` (a
/// LatticeAgent of its name whose controller owner is its uid).
fn has_identity(agents: &Store<StoredAgent>, meta: &ObjectMeta) -> bool {
    let (Some(name), Some(uid)) = (meta.name.as_deref(), meta.uid.as_deref()) else {
        return false;
    };
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    agents
        .get(&ObjectRef::new(name).within(namespace))
        .is_some_and(|stored| {
            stored
                .meta()
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
}

/// The identity store of one kind, and which of its watch events start an identity reconcile:
/// those that change a workload's identity-relevant metadata ([`identity_hash`]) and concern an
/// identity — the workload has `agentlattice.io/` annotations, had them, or is seen for the first
/// time with an identity in the LatticeAgent cache (its annotations were removed while the
/// operator was away: the identity must go; that cache has synced before the workloads are
/// listed, `WorkloadScope::task`). An unannotated workload without an identity starts nothing:
/// with 10,000 of them, reconciling each at start-up (and remembering a hash per workload, as
/// kube-runtime's `predicate_filter` does) cost more memory than the workloads' budget
/// (docs/benchmarks.md, "Watching workloads").
///
/// Ordering: the previous version is read from the store **before** the event is applied to it;
/// read after, every event would compare a workload with itself and none would start a reconcile
/// (`identity_filter_compares_with_the_version_before_the_event` fails then).
pub struct IdentityFilter<K: Workload, F> {
    store: Writer<PartialObjectMeta<K>>,
    reader: Store<PartialObjectMeta<K>>,
    has_identity: F,
}

impl<K: Workload, F: Fn(&ObjectMeta) -> bool> IdentityFilter<K, F> {
    /// A filter writing `store`; `has_identity` says whether a workload has an identity.
    pub fn new(store: Writer<PartialObjectMeta<K>>, has_identity: F) -> Self {
        let reader = store.as_reader();
        IdentityFilter {
            store,
            reader,
            has_identity,
        }
    }

    /// Applies `event` to the store; returns the workload to reconcile, if any.
    pub fn apply(
        &mut self,
        event: watcher::Event<PartialObjectMeta<K>>,
    ) -> Option<PartialObjectMeta<K>> {
        let wake = match &event {
            watcher::Event::Apply(new) | watcher::Event::InitApply(new) => {
                self.relevant(new).then(|| new.clone())
            }
            watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone => None,
        };
        self.store.apply_watcher_event(&event);
        wake
    }

    fn relevant(&self, new: &PartialObjectMeta<K>) -> bool {
        let old = self.reader.get(&ObjectRef::from_obj(new));
        let annotated = |m: &PartialObjectMeta<K>| m.metadata.annotations.is_some();
        match old.as_deref() {
            Some(old) if identity_hash(old) == identity_hash(new) => false,
            Some(old) => annotated(old) || annotated(new),
            None => annotated(new) || (self.has_identity)(&new.metadata),
        }
    }
}

/// What an identity depends on: the workload's uid, its deletion and its annotations.
fn identity_hash<K: Workload>(obj: &PartialObjectMeta<K>) -> u64 {
    let meta = &obj.metadata;
    let mut h = DefaultHasher::new();
    (
        &meta.uid,
        meta.deletion_timestamp.is_some(),
        &meta.annotations,
    )
        .hash(&mut h);
    h.finish()
}

/// What identity reconciles share.
pub struct IdentityContext {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The event publisher.
    pub events: Arc<Publisher>,
    /// The LatticeAgent cache of the scope.
    pub agents: Store<StoredAgent>,
    /// Requeue of a conflict (the other LatticeAgent may go).
    pub retry: std::time::Duration,
}

/// Runs the identity controller of one kind on `stream` until `shutdown`: its running reconciles
/// finish; when `shutdown` comes before the workloads of `stream` have listed, none started, and
/// it stops at once (`drain_or_drop`: its graceful shutdown alone would wait forever then).
pub async fn run_identities<K: Workload>(
    stream: impl Stream<Item = watcher::Result<PartialObjectMeta<K>>> + Send + 'static,
    store: Store<PartialObjectMeta<K>>,
    ctx: Arc<IdentityContext>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let controller = Controller::for_stream(stream, store.clone())
        .with_config(ControllerConfig::default().concurrency(4))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_identity::<K>, identity_error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = %K::KIND, error = %e, "identity controller");
            }
        });
    drain_or_drop(controller, &store, shutdown).await;
}

fn workload_reference<K: Workload>(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".to_owned()),
        kind: Some(K::KIND.as_str().to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}

async fn event_on<K: Workload>(
    ctx: &IdentityContext,
    meta: &ObjectMeta,
    type_: EventType,
    reason: &'static str,
    note: String,
) {
    let event = Event {
        type_,
        reason,
        note,
    };
    if let Err(e) = ctx
        .events
        .publish(&workload_reference::<K>(meta), &event, "Reconcile")
        .await
    {
        tracing::warn!(reason, error = %crate::error::kube_message(&e), "could not publish event");
    }
}

/// The LatticeAgent of the workload's name in the cache, if any (a malformed one with its
/// metadata and an empty spec); an error when the cached one does not unpack
/// (`StoredAgent::guarded`: it is not taken for a malformed one).
fn existing(ctx: &IdentityContext, namespace: &str, name: &str) -> Result<Option<LatticeAgent>> {
    let Some(stored) = ctx.agents.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(None);
    };
    let guarded = stored.guarded().map_err(|e| {
        Error::Internal(format!(
            "the cached LatticeAgent {namespace}/{name} does not unpack: {e}"
        ))
    })?;
    Ok(Some(match guarded.0 {
        Ok(agent) => agent,
        Err(invalid) => {
            let mut agent = LatticeAgent::new(name, Default::default());
            agent.metadata = invalid.metadata;
            agent
        }
    }))
}

async fn reconcile_identity<K: Workload>(
    obj: Arc<PartialObjectMeta<K>>,
    ctx: Arc<IdentityContext>,
) -> Result<Action> {
    let meta = &obj.metadata;
    let span = tracing::info_span!(
        "identity",
        kind = %K::KIND,
        namespace = %meta.namespace.as_deref().unwrap_or_default(),
        name = %meta.name.as_deref().unwrap_or_default()
    );
    identity_step::<K>(&obj, &ctx).instrument(span).await
}

async fn identity_step<K: Workload>(
    obj: &PartialObjectMeta<K>,
    ctx: &IdentityContext,
) -> Result<Action> {
    let meta = &obj.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let found = existing(ctx, &namespace, &name)?;
    let api: Api<LatticeAgent> = Api::namespaced(ctx.client.clone(), &namespace);
    match identity::plan(K::KIND, meta, found.as_ref()) {
        IdentityStep::Nothing => Ok(Action::await_change()),
        IdentityStep::Apply(body) => {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch(&name, &params, &Patch::Apply(&body)).await {
                Ok(_) => {
                    if found.is_none() {
                        tracing::info!("identity created");
                        event_on::<K>(
                            ctx,
                            meta,
                            EventType::Normal,
                            "IdentityCreated",
                            format!("created LatticeAgent {name} for this {}", K::KIND),
                        )
                        .await;
                    }
                    Ok(Action::await_change())
                }
                // Refused as invalid (a capability the CRD rejects, a name that cannot change
                // once registered): the annotations must change first.
                Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
                    event_on::<K>(
                        ctx,
                        meta,
                        EventType::Warning,
                        "IdentityNotApplied",
                        format!(
                            "LatticeAgent {name} cannot take this {}'s annotations: {}",
                            K::KIND,
                            crate::redact::redact(&s.message)
                        ),
                    )
                    .await;
                    Ok(Action::await_change())
                }
                Err(e) => Err(Error::Kube(e)),
            }
        }
        IdentityStep::Delete { uid } => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!("identity deleted");
                    event_on::<K>(
                        ctx,
                        meta,
                        EventType::Normal,
                        "IdentityDeleted",
                        format!(
                            "deleted LatticeAgent {name}: this {} no longer asks for an identity \
                             (its agent is revoked)",
                            K::KIND
                        ),
                    )
                    .await;
                    Ok(Action::await_change())
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    Ok(Action::await_change())
                }
                Err(e) => Err(Error::Kube(e)),
            }
        }
        IdentityStep::Conflict(message) => {
            event_on::<K>(ctx, meta, EventType::Warning, "IdentityConflict", message).await;
            // The other LatticeAgent may go; look again later.
            Ok(Action::requeue(ctx.retry))
        }
    }
}

fn identity_error_policy<K: Workload>(
    obj: Arc<PartialObjectMeta<K>>,
    error: &Error,
    _ctx: Arc<IdentityContext>,
) -> Action {
    tracing::warn!(
        kind = %K::KIND,
        name = %obj.name_any(),
        error = %crate::redact::redact(&error.to_string()),
        "identity reconcile failed"
    );
    Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use watcher::Event::{Apply, Init, InitApply, InitDone};

    use super::*;

    fn meta(name: &str, uid: &str, capabilities: Option<&str>) -> PartialObjectMeta<Deployment> {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            annotations: capabilities.map(|c| {
                BTreeMap::from([("agentlattice.io/capabilities".to_owned(), c.to_owned())])
            }),
            ..Default::default()
        }
        .into_response_partial()
    }

    #[test]
    fn identity_filter_compares_with_the_version_before_the_event() {
        let (_, writer) = reflector::store::<PartialObjectMeta<Deployment>>();
        // "db" (uid u3) has an identity in the LatticeAgent cache.
        let mut f = IdentityFilter::new(writer, |m: &ObjectMeta| m.uid.as_deref() == Some("u3"));
        let wakes = |w: Option<PartialObjectMeta<Deployment>>| w.map(|m| m.metadata.name.unwrap());
        // An annotated workload: its first sight and each change start a reconcile; the same
        // version again does not.
        assert_eq!(
            wakes(f.apply(Apply(meta("web", "u1", Some("a.b"))))),
            Some("web".into())
        );
        assert_eq!(wakes(f.apply(Apply(meta("web", "u1", Some("a.b"))))), None);
        assert_eq!(
            wakes(f.apply(Apply(meta("web", "u1", Some("a.c"))))),
            Some("web".into())
        );
        // The annotation removed: its identity must go.
        assert_eq!(
            wakes(f.apply(Apply(meta("web", "u1", None)))),
            Some("web".into())
        );
        // Unannotated and staying so, or new and unannotated: nothing to do.
        assert_eq!(wakes(f.apply(Apply(meta("web", "u1", None)))), None);
        assert_eq!(wakes(f.apply(Apply(meta("api", "u2", None)))), None);
        // A re-list: a workload known and unchanged starts nothing; one seen for the first time
        // without annotations but with an identity is looked at (its annotations were removed
        // meanwhile), one without an identity is not.
        assert_eq!(wakes(f.apply(Init)), None);
        assert_eq!(wakes(f.apply(InitApply(meta("api", "u2", None)))), None);
        assert_eq!(
            wakes(f.apply(InitApply(meta("db", "u3", None)))),
            Some("db".into())
        );
        assert_eq!(wakes(f.apply(InitApply(meta("cache", "u5", None)))), None);
        assert_eq!(wakes(f.apply(InitDone)), None);
        // A workload re-created under the same name (another uid) is a change.
        assert_eq!(
            wakes(f.apply(Apply(meta("db", "u4", Some("a.b"))))),
            Some("db".into())
        );
    }
}
