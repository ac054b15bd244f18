//! The two watches of a controller, and how each event feeds the caches, the claims index and
//! the memory before it reaches kube-runtime's controller.
//!
//! - LatticeAgents (`DeserializeGuard`: an object the Rust type rejects is reconciled as a
//!   malformed object and never stops the watch) go into the claims index, then — in their stored
//!   form, [`StoredAgent`] — into kube-runtime's reflector store (the controller reads it); one
//!   starts a reconcile only when what the operator acts on changed (the predicate, crate
//!   `memory`).
//! - Secrets labelled `app.kubernetes.io/managed-by=lattice-operator`, in cache form (no key),
//!   go into the [`CompactStore`]; one starts a reconcile of its owner unless it only delivers
//!   content already seen — the operator's own write, announced before it was sent.
//!
//! Both store an event before they tell the memory ([`store_then_tell`]).

use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};

use super::predicate_hash;
use crate::cache::CompactStore;
use crate::cache::agent::StoredAgent;
use crate::claims::ClaimIndex;
use crate::crd::LatticeAgent;
use crate::memory::Memory;
use crate::secret::fingerprint;

/// A LatticeAgent as the watch delivers it: parsed, or malformed with its metadata.
pub type Guarded = DeserializeGuard<LatticeAgent>;

/// A cache a watch writes its events into.
pub trait Stores<K> {
    /// Applies one watch event.
    fn store(&mut self, event: &watcher::Event<K>);
}

impl Stores<StoredAgent> for Writer<StoredAgent> {
    fn store(&mut self, event: &watcher::Event<StoredAgent>) {
        self.apply_watcher_event(event);
    }
}

impl Stores<Secret> for CompactStore<Secret> {
    fn store(&mut self, event: &watcher::Event<Secret>) {
        self.apply(event);
    }
}

/// Stores `event` in `cache`, then — for a changed object, which the cache shows at once —
/// `tell`s the memory that the cache holds it. Never the other way round: a reconcile that finds
/// an overlay dropped must find the cache at least as new (crate `memory`, ordering rules).
/// Re-listed objects (`InitApply`) are not told: the cache shows them only at `InitDone`.
pub fn store_then_tell<K>(
    cache: &mut impl Stores<K>,
    event: &watcher::Event<K>,
    tell: impl FnOnce(&K),
) {
    cache.store(event);
    if let watcher::Event::Apply(obj) = event {
        tell(obj);
    }
}

/// The LatticeAgent watch's `events` (metadata as [`crate::crd::keep_read_metadata`] leaves it)
/// through the claims index, then in their stored form through the store and the memory; yields
/// the objects that start a reconcile. `synced` is called at each complete list.
pub fn agents(
    events: impl Stream<Item = watcher::Result<watcher::Event<Guarded>>> + Send,
    mut store: Writer<StoredAgent>,
    claims: ClaimIndex,
    memory: Arc<Memory>,
    synced: impl Fn() + Send,
) -> impl Stream<Item = watcher::Result<StoredAgent>> + Send {
    let seen = Arc::clone(&memory);
    events
        .map_ok(move |event| {
            claims.apply_event(&event);
            // A resource gone from the cluster needs no memory (the reconcile that released its
            // finalizer forgot it already; this covers the ones deleted without one).
            if let watcher::Event::Delete(g) = &event
                && let Some(uid) = g.meta().uid.as_deref()
            {
                memory.forget(uid);
            }
            let event = stored(event);
            store_then_tell(&mut store, &event, |g| {
                let meta = g.meta();
                if let Some(uid) = meta.uid.as_deref() {
                    memory.resource_stored(uid, meta.resource_version.as_deref());
                }
            });
            if matches!(event, watcher::Event::InitDone) {
                synced();
            }
            event
        })
        .applied_objects()
        .try_filter(move |g| {
            let meta = g.meta();
            let pass = match meta.uid.as_deref() {
                Some(uid) => seen.resource_event(uid, predicate_hash(meta, g.parsed())),
                None => true,
            };
            std::future::ready(pass)
        })
}

/// `event` with its object in the stored form.
fn stored(event: watcher::Event<Guarded>) -> watcher::Event<StoredAgent> {
    use watcher::Event;
    match event {
        Event::Apply(g) => Event::Apply(g.into()),
        Event::Delete(g) => Event::Delete(g.into()),
        Event::Init => Event::Init,
        Event::InitApply(g) => Event::InitApply(g.into()),
        Event::InitDone => Event::InitDone,
    }
}

/// The uid of the LatticeAgent that controls `secret`.
fn owner_uid(secret: &Secret) -> Option<&str> {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// The Secret watch's `events` (in cache form) through the cache and the memory; yields the
/// Secrets whose owner's reconcile they start. `synced` is called at each complete list.
pub fn secrets(
    events: impl Stream<Item = watcher::Result<watcher::Event<Secret>>> + Send,
    mut cache: CompactStore<Secret>,
    memory: Arc<Memory>,
    synced: impl Fn() + Send,
) -> impl Stream<Item = watcher::Result<Secret>> + Send {
    events
        .map_ok(move |event| {
            store_then_tell(&mut cache, &event, |s| {
                if let (Some(uid), Some(name)) = (owner_uid(s), s.metadata.name.as_deref()) {
                    memory.secret_stored(uid, name, s.metadata.resource_version.as_deref());
                }
            });
            let starts = match &event {
                watcher::Event::InitDone => {
                    synced();
                    true
                }
                watcher::Event::Apply(s) => {
                    owner_uid(s).is_none_or(|uid| memory.secret_event(uid, fingerprint(s)))
                }
                watcher::Event::InitApply(s) => {
                    if let Some(uid) = owner_uid(s) {
                        memory.secret_listed(uid, fingerprint(s));
                    }
                    true
                }
                watcher::Event::Init | watcher::Event::Delete(_) => true,
            };
            starts.then_some(event)
        })
        .try_filter_map(|event| std::future::ready(Ok(event)))
        .touched_objects()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::{StreamExt, stream};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;
    use crate::crd::{LAST_APPLIED_ANNOTATION, keep_read_metadata};

    /// A cache that logs when it stores.
    struct Logged<'a>(&'a Mutex<Vec<&'static str>>);

    impl Stores<Secret> for Logged<'_> {
        fn store(&mut self, _: &watcher::Event<Secret>) {
            self.0.lock().unwrap().push("store");
        }
    }

    fn secret(name: &str, rv: &str, owner: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn kept_metadata_drops_only_what_no_decision_reads() {
        let mut meta = ObjectMeta {
            name: Some("a".into()),
            annotations: Some(
                [
                    (
                        LAST_APPLIED_ANNOTATION.to_owned(),
                        "{\"spec\":{}}".to_owned(),
                    ),
                    ("agentlattice.io/rotate".to_owned(), "1".to_owned()),
                    ("owner".to_owned(), "me".to_owned()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![Default::default()]),
            ..Default::default()
        };
        keep_read_metadata(&mut meta);
        assert_eq!(meta.managed_fields, None);
        let kept: Vec<&str> = meta
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(kept, ["agentlattice.io/rotate", "owner"]);
        // The only annotation gone: the map stays, empty.
        let mut meta = ObjectMeta {
            annotations: Some([(LAST_APPLIED_ANNOTATION.to_owned(), "{}".to_owned())].into()),
            ..Default::default()
        };
        keep_read_metadata(&mut meta);
        assert_eq!(meta.annotations, Some(Default::default()));
    }

    /// Ordering rule "store, then tell the memory".
    #[test]
    fn the_cache_holds_a_version_before_its_overlay_goes() {
        let log = Mutex::new(Vec::new());
        let mut cache = Logged(&log);
        let event = watcher::Event::Apply(secret("s", "7", "u"));
        store_then_tell(&mut cache, &event, |_| log.lock().unwrap().push("tell"));
        assert_eq!(*log.lock().unwrap(), ["store", "tell"]);
        // A re-listed object is not told: the cache shows it only at InitDone.
        log.lock().unwrap().clear();
        let event = watcher::Event::InitApply(secret("s", "8", "u"));
        store_then_tell(&mut cache, &event, |_| log.lock().unwrap().push("tell"));
        assert_eq!(*log.lock().unwrap(), ["store"]);
    }

    #[tokio::test]
    async fn own_secret_writes_start_no_reconcile_and_drop_their_overlay() {
        let memory = Arc::new(Memory::default());
        let cache = CompactStore::<Secret>::default();
        let written = secret("s", "7", "u");
        memory.before_secret_write("u", fingerprint(&written));
        memory.wrote_secret("u", Some("6".into()), written.clone(), |_| false);
        let mut edited = secret("s", "8", "u");
        edited.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        let events = stream::iter(vec![
            Ok(watcher::Event::Apply(written.clone())),
            Ok(watcher::Event::Apply(edited.clone())),
            Ok(watcher::Event::Apply(secret("t", "9", "stranger"))),
            Ok(watcher::Event::Delete(edited.clone())),
        ]);
        let started: Vec<String> = secrets(events, cache.clone(), Arc::clone(&memory), || {})
            .map(|s| s.unwrap().metadata.resource_version.unwrap())
            .collect()
            .await;
        assert_eq!(
            started,
            ["8", "9", "8"],
            "the own write (7) started nothing"
        );
        assert_eq!(memory.overlays(), 0, "dropped once the cache held 7");
        assert!(cache.get("ns", "s").is_none(), "deleted");
    }

    fn agent(name: &str, rv: &str, generation: i64, spec: serde_json::Value) -> Guarded {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "resourceVersion": rv, "generation": generation,
            },
            "spec": spec,
        }))
        .expect("a LatticeAgent's JSON")
    }

    /// The claims index is fed the decoded objects, the store their stored form, and the
    /// predicate reads the stored metadata: a change of the watch that broke one of them fails.
    #[tokio::test]
    async fn agents_feed_the_claims_index_and_the_store() {
        let memory = Arc::new(Memory::default());
        let claims = ClaimIndex::default();
        let (reader, writer) = kube::runtime::reflector::store::<StoredAgent>();
        let first = agent("a", "1", 1, serde_json::json!({"secretName": "shared"}));
        let mut status_only = agent("a", "2", 1, serde_json::json!({"secretName": "shared"}));
        if let Ok(a) = &mut status_only.0 {
            a.status = Some(Default::default());
        }
        let moved = agent("a", "3", 2, serde_json::json!({"secretName": "moved"}));
        let malformed = agent(
            "m",
            "1",
            1,
            serde_json::json!({"capabilities": "not a list"}),
        );
        assert!(malformed.0.is_err());
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(first)),
            Ok(watcher::Event::InitApply(malformed)),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(status_only)),
            Ok(watcher::Event::Apply(moved.clone())),
        ]);
        let started: Vec<StoredAgent> =
            agents(events, writer, claims.clone(), Arc::clone(&memory), || {})
                .map(|s| s.unwrap())
                .collect()
                .await;
        let versions: Vec<&str> = started
            .iter()
            .map(|s| s.meta().resource_version.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(
            versions,
            ["1", "1", "3"],
            "the status-only change (2) started nothing"
        );
        let moved = moved.0.expect("parses");
        assert_eq!(started[2].agent().as_ref(), Some(&moved));
        assert!(!started[1].parsed());

        assert_eq!(claims.claimants("ns/moved"), ["a"]);
        assert!(claims.claimants("ns/shared").is_empty());
        assert!(
            claims.claimants("ns/m-agent-key").is_empty(),
            "a malformed one claims nothing"
        );

        let get = |name: &str| {
            reader
                .get(&kube::runtime::reflector::ObjectRef::new(name).within("ns"))
                .expect("stored")
        };
        assert_eq!(get("a").agent(), Some(moved));
        assert!(!get("m").parsed());
        assert_eq!(get("m").meta().uid.as_deref(), Some("uid-m"));
    }
}
