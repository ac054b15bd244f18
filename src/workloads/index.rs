//! The workloads of one kind, as trimmed views, by namespace and name and by the Secret they read
//! the key from: the consumers of each agent's Secret in one lookup. Fed the watch events of that
//! kind (a re-list replaces the whole index at `InitDone`, as a reflector store does), and it
//! says which Secrets' consumers each event changed, so that only their LatticeAgents are woken.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher;

use super::view::WorkloadView;
use crate::plan::Consumer;

/// `namespace/name` of a workload or a Secret.
type Key = Box<str>;

fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}").into_boxed_str()
}

#[derive(Debug, Default)]
struct Views {
    by_name: HashMap<Key, WorkloadView>,
    /// Secret → the workloads reading its key, sorted. A `Vec`, not a `BTreeSet`: most Secrets
    /// have one or two consumers, and a B-tree allocates a node of eleven slots for one (1.7 KiB
    /// per Deployment became 1.2 with this and the identity filter, docs/benchmarks.md).
    by_secret: HashMap<Key, Vec<Key>>,
}

impl Views {
    /// Replaces (`Some`) or removes (`None`) the workload `name`; returns the Secrets whose
    /// consumers changed.
    fn put(&mut self, namespace: &str, name: &str, view: Option<WorkloadView>) -> Vec<Key> {
        let k = key(namespace, name);
        let old = match &view {
            Some(v) => self.by_name.insert(k.clone(), v.clone()),
            None => self.by_name.remove(&k),
        };
        if old.as_ref() == view.as_ref() {
            return Vec::new();
        }
        let secrets = |v: Option<&WorkloadView>| -> BTreeSet<Key> {
            v.into_iter()
                .flat_map(|v| v.uses.iter().map(|(s, _)| key(namespace, s)))
                .collect()
        };
        let before = secrets(old.as_ref());
        let after = secrets(view.as_ref());
        for s in before.difference(&after) {
            if let Some(names) = self.by_secret.get_mut(s) {
                names.retain(|n| *n != k);
                if names.is_empty() {
                    self.by_secret.remove(s);
                }
            }
        }
        for s in &after {
            let names = self.by_secret.entry(s.clone()).or_default();
            if let Err(at) = names.binary_search(&k) {
                names.insert(at, k.clone());
            }
        }
        // Every Secret it read or reads: its consumer there appeared, went, or changed.
        before.union(&after).cloned().collect()
    }
}

/// The index of one workload kind, shared by its watch (which writes) and the reconciles (which
/// read).
#[derive(Clone, Debug, Default)]
pub struct WorkloadIndex {
    current: Arc<RwLock<Views>>,
    /// The objects of a re-list in progress.
    relist: Arc<RwLock<Option<Views>>>,
}

impl WorkloadIndex {
    /// Applies one watch event (`view` turns an object into its view); returns the Secrets
    /// (`namespace/name`) whose consumers changed.
    pub fn apply<K>(
        &self,
        event: &watcher::Event<K>,
        view: impl Fn(&K) -> Option<(String, WorkloadView)>,
    ) -> Vec<Box<str>> {
        match event {
            watcher::Event::Apply(obj) => match view(obj) {
                Some((ns, v)) => {
                    let name = v.name.clone();
                    self.write().put(&ns, &name, Some(v))
                }
                None => Vec::new(),
            },
            watcher::Event::Delete(obj) => match view(obj) {
                Some((ns, v)) => self.write().put(&ns, &v.name, None),
                None => Vec::new(),
            },
            watcher::Event::Init => {
                *self.relist_mut() = Some(Views::default());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let Some((ns, v)) = view(obj) {
                    let name = v.name.clone();
                    self.relist_mut()
                        .get_or_insert_default()
                        .put(&ns, &name, Some(v));
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let Some(fresh) = self.relist_mut().take() else {
                    return Vec::new();
                };
                let mut current = self.write();
                // Whatever differs between the old and the new index.
                let mut changed: BTreeSet<Key> = BTreeSet::new();
                for (k, v) in &fresh.by_name {
                    if current.by_name.get(k) != Some(v) {
                        changed.extend(secrets_of(k, v));
                        if let Some(old) = current.by_name.get(k) {
                            changed.extend(secrets_of(k, old));
                        }
                    }
                }
                for (k, old) in &current.by_name {
                    if !fresh.by_name.contains_key(k) {
                        changed.extend(secrets_of(k, old));
                    }
                }
                *current = fresh;
                changed.into_iter().collect()
            }
        }
    }

    /// The consumers of the Secret `namespace/secret`, sorted by kind and name.
    pub fn consumers(&self, namespace: &str, secret: &str) -> Vec<Consumer> {
        let Ok(views) = self.current.read() else {
            return Vec::new();
        };
        let Some(names) = views.by_secret.get(&key(namespace, secret)) else {
            return Vec::new();
        };
        let mut out: Vec<Consumer> = names
            .iter()
            .filter_map(|n| views.by_name.get(n))
            .filter_map(|v| v.consumer_of(secret))
            .collect();
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        out
    }

    /// How many workloads are indexed.
    pub fn len(&self) -> usize {
        self.current.read().map(|v| v.by_name.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Views> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }

    fn relist_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Views>> {
        self.relist.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Secrets (`namespace/name`) the workload `namespace/name` reads.
fn secrets_of(workload: &str, v: &WorkloadView) -> Vec<Key> {
    let namespace = workload
        .split_once('/')
        .map(|(ns, _)| ns)
        .unwrap_or_default();
    v.uses.iter().map(|(s, _)| key(namespace, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{KeySource, Rollout, WorkloadKind};

    fn view(name: &str, uses: &[(&str, KeySource)], rollout: Rollout) -> WorkloadView {
        WorkloadView {
            kind: WorkloadKind::Deployment,
            name: name.into(),
            created_at: None,
            uses: uses.iter().map(|(s, h)| ((*s).to_owned(), *h)).collect(),
            restarted_for: None,
            restarted_at: None,
            rollout,
        }
    }

    fn ev(v: WorkloadView) -> watcher::Event<(String, WorkloadView)> {
        watcher::Event::Apply(("ns".into(), v))
    }

    fn id(o: &(String, WorkloadView)) -> Option<(String, WorkloadView)> {
        Some(o.clone())
    }

    #[test]
    fn consumers_follow_the_workloads() {
        let index = WorkloadIndex::default();
        let env = KeySource::Environment;
        let changed = index.apply(&ev(view("web", &[("key", env)], Rollout::Complete)), id);
        assert_eq!(changed, vec![Box::from("ns/key")]);
        assert_eq!(index.consumers("ns", "key")[0].name, "web");
        assert!(index.consumers("other", "key").is_empty());
        // The same again: nothing changed.
        assert!(
            index
                .apply(&ev(view("web", &[("key", env)], Rollout::Complete)), id)
                .is_empty()
        );
        // A rollout state change wakes its Secret; a move to another Secret wakes both.
        let changed = index.apply(&ev(view("web", &[("key", env)], Rollout::InProgress)), id);
        assert_eq!(changed, vec![Box::from("ns/key")]);
        let changed = index.apply(&ev(view("web", &[("new", env)], Rollout::InProgress)), id);
        assert_eq!(changed, vec![Box::from("ns/key"), Box::from("ns/new")]);
        assert!(index.consumers("ns", "key").is_empty());
        let changed = index.apply(
            &watcher::Event::Delete(("ns".into(), view("web", &[], Rollout::Complete))),
            id,
        );
        assert_eq!(changed, vec![Box::from("ns/new")]);
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_and_reports_what_differs() {
        let index = WorkloadIndex::default();
        let env = KeySource::Environment;
        index.apply(&ev(view("gone", &[("a", env)], Rollout::Complete)), id);
        index.apply(&ev(view("kept", &[("b", env)], Rollout::Complete)), id);
        index.apply(&watcher::Event::Init, id);
        let listed = |v| watcher::Event::InitApply(("ns".to_owned(), v));
        index.apply(&listed(view("kept", &[("b", env)], Rollout::Complete)), id);
        index.apply(&listed(view("new", &[("c", env)], Rollout::Complete)), id);
        assert_eq!(
            index.consumers("ns", "a").len(),
            1,
            "the old index until InitDone"
        );
        let changed = index.apply(&watcher::Event::InitDone, id);
        assert_eq!(changed, vec![Box::from("ns/a"), Box::from("ns/c")]);
        assert!(index.consumers("ns", "a").is_empty());
        assert_eq!(index.len(), 2);
    }
}
