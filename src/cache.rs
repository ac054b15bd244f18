//! The operator's watch caches, each object kept packed (design §2.1): [`CompactStore`] for the
//! managed Secrets, [`agent::StoredAgent`] in kube-runtime's reflector store for the
//! LatticeAgents (the controller needs a reflector store; it keeps what it is given).
//!
//! kube-runtime's reflector store keeps every object decoded, as `Arc<K>`. For a Secret in cache
//! form that is about 3 KiB on the heap in some 35 allocations — three `BTreeMap`s (labels,
//! annotations, data) each take a whole node of eleven slots — against about 1.1 KiB for its JSON
//! and about 330 bytes packed ([`packed`]). With 100,000 agents the difference is hundreds of MiB,
//! and the operator reads a Secret from the cache once per reconcile, where unpacking it costs a
//! few microseconds.
//!
//! The cache follows the watcher's events as the reflector does: a re-list (`Init` …
//! `InitApply` … `InitDone`) fills a buffer that replaces the cache at `InitDone`, so objects
//! deleted while the watch was down disappear.

pub mod agent;
pub mod packed;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::runtime::watcher;

use packed::{Dictionary, Packable, Packed};

/// An object packed, with a hash of its resourceVersion (8 bytes instead of a string: the memory
/// asks whether a written version is cached without unpacking the object).
struct Cached {
    version: u64,
    packed: Packed,
}

/// A managed Secret in cache form.
const SECRET_SAMPLE: &str = include_str!("cache/dictionaries/secret.json");

impl Packable for Secret {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: std::sync::LazyLock<Dictionary> =
            std::sync::LazyLock::new(|| Dictionary::of::<Secret>(SECRET_SAMPLE));
        &DICTIONARY
    }
}

type Objects = HashMap<Box<str>, Cached>;

fn version_hash(rv: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    rv.hash(&mut h);
    h.finish()
}

#[derive(Default)]
struct State {
    objects: Objects,
    /// The objects of a re-list in progress.
    relist: Option<Objects>,
}

/// Namespaced objects of kind `K`, each kept encoded; clones share the cache.
pub struct CompactStore<K> {
    state: Arc<RwLock<State>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for CompactStore<K> {
    fn clone(&self) -> Self {
        CompactStore {
            state: Arc::clone(&self.state),
            kind: PhantomData,
        }
    }
}

impl<K> Default for CompactStore<K> {
    fn default() -> Self {
        CompactStore {
            state: Arc::default(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for CompactStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactStore")
            .field("objects", &self.len())
            .finish()
    }
}

impl<K> CompactStore<K> {
    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .map(|s| s.objects.len())
            .unwrap_or_default()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

impl<K: Resource + Packable> CompactStore<K> {
    /// Applies one watcher event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        match event {
            watcher::Event::Init => state.relist = Some(Objects::new()),
            watcher::Event::InitApply(obj) => {
                if let Some((k, v)) = encode(obj) {
                    state.relist.get_or_insert_default().insert(k, v);
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut fresh) = state.relist.take() {
                    fresh.shrink_to_fit();
                    state.objects = fresh;
                }
            }
            watcher::Event::Apply(obj) => {
                if let Some((k, v)) = encode(obj) {
                    state.objects.insert(k, v);
                }
            }
            watcher::Event::Delete(obj) => {
                let meta = obj.meta();
                if let Some(name) = meta.name.as_deref() {
                    let k = key(meta.namespace.as_deref().unwrap_or_default(), name);
                    state.objects.remove(&k);
                }
            }
        }
    }

    /// Whether the cache holds version `rv` of `namespace/name`.
    pub fn holds_version(&self, namespace: &str, name: &str, rv: &str) -> bool {
        self.state.read().is_ok_and(|s| {
            s.objects
                .get(&key(namespace, name))
                .is_some_and(|c| c.version == version_hash(rv))
        })
    }

    /// The object `namespace/name`, unpacked.
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let state = self.state.read().ok()?;
        let packed = &state.objects.get(&key(namespace, name))?.packed;
        match packed.unpack() {
            Ok(obj) => Some(obj),
            Err(e) => {
                // Cannot happen for bytes this cache packed itself; treated as absent.
                tracing::warn!(%namespace, %name, error = %e, "cached object does not unpack");
                None
            }
        }
    }
}

fn encode<K: Resource + Packable>(obj: &K) -> Option<(Box<str>, Cached)> {
    let meta = obj.meta();
    let name = meta.name.as_deref()?;
    let packed = match Packed::pack(obj) {
        Ok(packed) => packed,
        Err(e) => {
            tracing::warn!(%name, error = %e, "object does not encode; not cached");
            return None;
        }
    };
    Some((
        key(meta.namespace.as_deref().unwrap_or_default(), name),
        Cached {
            version: version_hash(meta.resource_version.as_deref().unwrap_or_default()),
            packed,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(ns: &str, name: &str, rv: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                resource_version: Some(rv.into()),
                labels: Some([("a".to_owned(), "b".to_owned())].into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            ..Default::default()
        }
    }

    fn rv(s: Option<Secret>) -> Option<String> {
        s.and_then(|s| s.metadata.resource_version)
    }

    #[test]
    fn the_secret_sample_is_what_a_secret_serializes_to() {
        assert!(packed::sample_is_faithful::<Secret>(SECRET_SAMPLE));
    }

    #[test]
    fn follows_the_watch_events() {
        let store = CompactStore::<Secret>::default();
        let reader = store.clone();
        store.apply(&watcher::Event::Apply(secret("ns", "s", "1")));
        store.apply(&watcher::Event::Apply(secret("other", "s", "2")));
        assert_eq!(reader.get("ns", "s"), Some(secret("ns", "s", "1")));
        assert_eq!(rv(reader.get("other", "s")), Some("2".into()));
        assert_eq!(reader.get("ns", "t"), None);
        store.apply(&watcher::Event::Apply(secret("ns", "s", "3")));
        assert_eq!(rv(reader.get("ns", "s")), Some("3".into()));
        assert!(reader.holds_version("ns", "s", "3"));
        assert!(!reader.holds_version("ns", "s", "1"));
        assert!(!reader.holds_version("ns", "t", "3"));
        store.apply(&watcher::Event::Delete(secret("ns", "s", "4")));
        assert_eq!(reader.get("ns", "s"), None);
        assert_eq!(reader.len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_cache_when_it_is_done() {
        let store = CompactStore::<Secret>::default();
        store.apply(&watcher::Event::Apply(secret("ns", "gone", "1")));
        store.apply(&watcher::Event::Apply(secret("ns", "kept", "2")));
        store.apply(&watcher::Event::Init);
        store.apply(&watcher::Event::InitApply(secret("ns", "kept", "5")));
        // Until the re-list is complete, the cache is the old one.
        assert_eq!(rv(store.get("ns", "gone")), Some("1".into()));
        assert_eq!(rv(store.get("ns", "kept")), Some("2".into()));
        assert!(!store.holds_version("ns", "kept", "5"));
        store.apply(&watcher::Event::InitApply(secret("ns", "new", "6")));
        store.apply(&watcher::Event::InitDone);
        assert_eq!(store.get("ns", "gone"), None);
        assert_eq!(rv(store.get("ns", "kept")), Some("5".into()));
        assert_eq!(rv(store.get("ns", "new")), Some("6".into()));
        assert_eq!(store.len(), 2);
    }
}
