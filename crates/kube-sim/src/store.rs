//! The object store: one global resourceVersion counter (etcd's revision), objects keyed by
//! (group, resource) then (namespace, name) in etcd key order, an RV-ordered event history for
//! watch resumption and consistent paginated snapshots, and per-resource broadcast channels for
//! watch fan-out.
//!
//! Every method takes the one store lock for a short, synchronous critical section; nothing here
//! awaits. Objects are kept both parsed ([`Obj::value`]) and serialised ([`Obj::json`]) so that a
//! list or a watch event is a concatenation of bytes, not a re-serialisation.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

/// A storage identity: the API group and plural resource name. Versions of one resource share
/// their storage (custom resources), and so do `events` in `v1` and `events.k8s.io/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gr {
    pub group: String,
    pub resource: String,
}

impl Gr {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for Gr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Where one object lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub gr: Gr,
    pub namespace: String,
    pub name: String,
}

/// One stored object version.
#[derive(Debug)]
pub struct Obj {
    /// The object as stored (storage version), `metadata.resourceVersion` included.
    pub value: Value,
    /// `value` serialised as single-line JSON.
    pub json: Bytes,
    pub rv: u64,
}

impl Obj {
    fn new(mut value: Value, rv: u64) -> Self {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Self { value, json, rv }
    }

    pub fn uid(&self) -> &str {
        self.value
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn owner_uids(&self) -> Vec<String> {
        owner_uids(&self.value)
    }
}

fn owner_uids(v: &Value) -> Vec<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A watch's subscription to one resource's events.
pub type EventReceiver = broadcast::Receiver<Arc<Event>>;

/// The type of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: ObjKey,
    pub kind: EventType,
    /// The new state; for `Deleted` the last state carrying the deletion's resourceVersion.
    pub obj: Arc<Obj>,
    /// The state before the change (`None` for `Added`).
    pub prev: Option<Arc<Obj>>,
}

/// A write to commit.
pub enum Commit {
    /// Fails with [`CommitError::Exists`] when the key is taken.
    Create(Value),
    /// Replaces the object if its resourceVersion still is `expect_rv`.
    Update { expect_rv: u64, value: Value },
    /// Removes the object if its resourceVersion still is `expect_rv`. The DELETED event
    /// carries `value` (normally the last state) at the new resourceVersion.
    Delete { expect_rv: u64, value: Value },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    Exists,
    NotFound,
    /// The object changed since it was read; carries the current resourceVersion.
    Stale(u64),
}

/// Why a read at an old resourceVersion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOld {
    /// The oldest resourceVersion still served.
    pub oldest: u64,
}

struct Table {
    objects: BTreeMap<(String, String), Arc<Obj>>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Table {
    fn new(capacity: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            tx: broadcast::channel(capacity).0,
        }
    }
}

struct Inner {
    rv: u64,
    tables: HashMap<Gr, Table>,
    history: VecDeque<Arc<Event>>,
    /// Every event with `rv > history_start` is in `history`.
    history_start: u64,
    uid_index: HashMap<String, ObjKey>,
    owner_index: HashMap<String, BTreeSet<ObjKey>>,
    listeners: Vec<mpsc::UnboundedSender<Arc<Event>>>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    history_capacity: usize,
    channel_capacity: usize,
}

/// A consistent view of part of one resource at one resourceVersion.
pub struct Snapshot {
    pub rv: u64,
    /// Objects in key order (namespace, name).
    pub items: Vec<Arc<Obj>>,
}

impl Store {
    pub fn new(history_capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rv: 0,
                tables: HashMap::new(),
                history: VecDeque::new(),
                history_start: 0,
                uid_index: HashMap::new(),
                owner_index: HashMap::new(),
                listeners: Vec::new(),
            }),
            history_capacity: history_capacity.max(1),
            channel_capacity: 8192,
        }
    }

    /// The current revision.
    pub fn current_rv(&self) -> u64 {
        self.inner.lock().rv
    }

    /// The oldest resourceVersion a watch or an exact read may start from.
    pub fn oldest_rv(&self) -> u64 {
        self.inner.lock().history_start
    }

    /// Receive every committed event, in commit order, for in-process controllers.
    pub fn listen(&self) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.lock().listeners.push(tx);
        rx
    }

    pub fn get(&self, gr: &Gr, namespace: &str, name: &str) -> Option<Arc<Obj>> {
        let inner = self.inner.lock();
        inner
            .tables
            .get(gr)?
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn find_by_uid(&self, uid: &str) -> Option<(ObjKey, Arc<Obj>)> {
        let inner = self.inner.lock();
        let key = inner.uid_index.get(uid)?.clone();
        let obj = inner
            .tables
            .get(&key.gr)?
            .objects
            .get(&(key.namespace.clone(), key.name.clone()))?
            .clone();
        Some((key, obj))
    }

    /// Objects whose ownerReferences name `owner_uid`.
    pub fn dependents_of(&self, owner_uid: &str) -> Vec<(ObjKey, Arc<Obj>)> {
        let inner = self.inner.lock();
        let Some(keys) = inner.owner_index.get(owner_uid) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| {
                let o = inner
                    .tables
                    .get(&k.gr)?
                    .objects
                    .get(&(k.namespace.clone(), k.name.clone()))?
                    .clone();
                Some((k.clone(), o))
            })
            .collect()
    }

    /// Every object of `gr` in `namespace` (`None`: all namespaces), current state.
    pub fn list(&self, gr: &Gr, namespace: Option<&str>) -> Snapshot {
        let inner = self.inner.lock();
        let items = match inner.tables.get(gr) {
            Some(t) => range(&t.objects, namespace, None)
                .map(|(_, o)| o.clone())
                .collect(),
            None => Vec::new(),
        };
        Snapshot {
            rv: inner.rv,
            items,
        }
    }

    /// Every object of every resource in `namespace` (namespace controller).
    pub fn list_namespace_content(&self, namespace: &str) -> Vec<(ObjKey, Arc<Obj>)> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for (gr, t) in inner.tables.iter() {
            for ((ns, name), o) in range(&t.objects, Some(namespace), None) {
                out.push((
                    ObjKey {
                        gr: gr.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    },
                    o.clone(),
                ));
            }
        }
        out
    }

    /// The objects of `gr` in `namespace` after the key `after`, as they were at `at_rv`
    /// (`None`: now). Errors when `at_rv` is older than the retained history.
    pub fn snapshot(
        &self,
        gr: &Gr,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
        at_rv: Option<u64>,
    ) -> Result<Snapshot, TooOld> {
        let inner = self.inner.lock();
        let empty = BTreeMap::new();
        let objects = inner.tables.get(gr).map(|t| &t.objects).unwrap_or(&empty);
        let at = at_rv.unwrap_or(inner.rv).min(inner.rv);
        if at < inner.history_start && at < inner.rv {
            return Err(TooOld {
                oldest: inner.history_start,
            });
        }
        if at == inner.rv {
            return Ok(Snapshot {
                rv: at,
                items: range(objects, namespace, after)
                    .map(|(_, o)| o.clone())
                    .collect(),
            });
        }
        // State at `at`: the current objects, with every key changed since replaced by its
        // state before the first change after `at`.
        let mut overrides: BTreeMap<(String, String), Option<Arc<Obj>>> = BTreeMap::new();
        for ev in inner
            .history
            .iter()
            .filter(|e| e.rv > at && e.key.gr == *gr)
        {
            if namespace.is_some_and(|ns| ns != ev.key.namespace) {
                continue;
            }
            let k = (ev.key.namespace.clone(), ev.key.name.clone());
            if after.is_some_and(|a| &k <= a) {
                continue;
            }
            overrides.entry(k).or_insert_with(|| ev.prev.clone());
        }
        let mut items = Vec::new();
        let mut cur = range(objects, namespace, after).peekable();
        let mut ovr = overrides.into_iter().peekable();
        loop {
            match (cur.peek(), ovr.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    if let Some((_, o)) = cur.next() {
                        items.push(o.clone());
                    }
                }
                (None, Some(_)) => {
                    if let Some((_, Some(o))) = ovr.next() {
                        items.push(o);
                    }
                }
                (Some((ck, _)), Some((ok, _))) => {
                    if *ck < ok {
                        if let Some((_, o)) = cur.next() {
                            items.push(o.clone());
                        }
                    } else {
                        if *ck == ok {
                            cur.next();
                        }
                        if let Some((_, Some(o))) = ovr.next() {
                            items.push(o);
                        }
                    }
                }
            }
        }
        Ok(Snapshot { rv: at, items })
    }

    /// Start a watch on `gr` from `from_rv`: the retained events after it and a receiver for
    /// everything later, taken atomically.
    pub fn watch_from(
        &self,
        gr: &Gr,
        from_rv: u64,
    ) -> Result<(Vec<Arc<Event>>, EventReceiver), TooOld> {
        let mut inner = self.inner.lock();
        if from_rv < inner.history_start {
            return Err(TooOld {
                oldest: inner.history_start,
            });
        }
        let cap = self.channel_capacity;
        let rx = inner
            .tables
            .entry(gr.clone())
            .or_insert_with(|| Table::new(cap))
            .tx
            .subscribe();
        let events = if from_rv >= inner.rv {
            Vec::new()
        } else {
            inner
                .history
                .iter()
                .filter(|e| e.rv > from_rv && e.key.gr == *gr)
                .cloned()
                .collect()
        };
        Ok((events, rx))
    }

    /// Start a watch on `gr` with the current state: the objects now (in key order), the
    /// revision they are at, and a receiver for every later event, taken atomically.
    pub fn watch_with_state(
        &self,
        gr: &Gr,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Obj>>, u64, broadcast::Receiver<Arc<Event>>) {
        let mut inner = self.inner.lock();
        let cap = self.channel_capacity;
        let rv = inner.rv;
        let table = inner
            .tables
            .entry(gr.clone())
            .or_insert_with(|| Table::new(cap));
        let rx = table.tx.subscribe();
        let items = range(&table.objects, namespace, None)
            .map(|(_, o)| o.clone())
            .collect();
        (items, rv, rx)
    }

    /// The current revision if `rx` has consumed every event committed so far (so a bookmark
    /// at that revision is safe), else `None`.
    pub fn rv_if_caught_up(&self, rx: &broadcast::Receiver<Arc<Event>>) -> Option<u64> {
        let inner = self.inner.lock();
        rx.is_empty().then_some(inner.rv)
    }

    /// Commit one write. Returns the event it produced.
    pub fn commit(
        &self,
        gr: &Gr,
        namespace: &str,
        name: &str,
        commit: Commit,
    ) -> Result<Arc<Event>, CommitError> {
        let mut inner = self.inner.lock();
        let cap = self.channel_capacity;
        let key = (namespace.to_string(), name.to_string());
        let next = inner.rv + 1;
        let table = inner
            .tables
            .entry(gr.clone())
            .or_insert_with(|| Table::new(cap));
        let current = table.objects.get(&key).cloned();
        let (kind, obj, prev) = match commit {
            Commit::Create(value) => {
                if current.is_some() {
                    return Err(CommitError::Exists);
                }
                let obj = Arc::new(Obj::new(value, next));
                table.objects.insert(key.clone(), obj.clone());
                (EventType::Added, obj, None)
            }
            Commit::Update { expect_rv, value } => {
                let Some(cur) = current else {
                    return Err(CommitError::NotFound);
                };
                if cur.rv != expect_rv {
                    return Err(CommitError::Stale(cur.rv));
                }
                let obj = Arc::new(Obj::new(value, next));
                table.objects.insert(key.clone(), obj.clone());
                (EventType::Modified, obj, Some(cur))
            }
            Commit::Delete { expect_rv, value } => {
                let Some(cur) = current else {
                    return Err(CommitError::NotFound);
                };
                if cur.rv != expect_rv {
                    return Err(CommitError::Stale(cur.rv));
                }
                table.objects.remove(&key);
                let obj = Arc::new(Obj::new(value, next));
                (EventType::Deleted, obj, Some(cur))
            }
        };
        inner.rv = next;
        let okey = ObjKey {
            gr: gr.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        // Indexes.
        if let Some(p) = &prev {
            inner.uid_index.remove(p.uid());
            for o in p.owner_uids() {
                if let Some(set) = inner.owner_index.get_mut(&o) {
                    set.remove(&okey);
                    if set.is_empty() {
                        inner.owner_index.remove(&o);
                    }
                }
            }
        }
        if kind != EventType::Deleted {
            inner.uid_index.insert(obj.uid().to_string(), okey.clone());
            for o in obj.owner_uids() {
                inner.owner_index.entry(o).or_default().insert(okey.clone());
            }
        }
        let event = Arc::new(Event {
            rv: next,
            key: okey,
            kind,
            obj,
            prev,
        });
        inner.history.push_back(event.clone());
        while inner.history.len() > self.history_capacity {
            if let Some(old) = inner.history.pop_front() {
                inner.history_start = old.rv;
            }
        }
        if let Some(t) = inner.tables.get(gr) {
            // No receivers is fine.
            let _ = t.tx.send(event.clone());
        }
        inner.listeners.retain(|l| l.send(event.clone()).is_ok());
        Ok(event)
    }

    /// Every stored object with its resource, and the current revision (for a state file).
    pub fn dump(&self) -> (u64, Vec<(Gr, Value)>) {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        let mut grs: Vec<&Gr> = inner.tables.keys().collect();
        grs.sort();
        for gr in grs {
            if let Some(t) = inner.tables.get(gr) {
                out.extend(t.objects.values().map(|o| (gr.clone(), o.value.clone())));
            }
        }
        (inner.rv, out)
    }

    /// Load objects as they were stored (each keeps its uid and resourceVersion), without
    /// events; the history starts empty at `rv`, as after an etcd compaction.
    pub fn restore(&self, rv: u64, objects: Vec<(Gr, Value)>) {
        let mut inner = self.inner.lock();
        let cap = self.channel_capacity;
        let mut top = rv.max(inner.rv);
        for (gr, value) in objects {
            let orv = value
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(rv);
            top = top.max(orv);
            let obj = Arc::new(Obj::new(value, orv));
            let okey = ObjKey {
                gr: gr.clone(),
                namespace: obj.namespace().to_string(),
                name: obj.name().to_string(),
            };
            inner.uid_index.insert(obj.uid().to_string(), okey.clone());
            for o in obj.owner_uids() {
                inner.owner_index.entry(o).or_default().insert(okey.clone());
            }
            inner
                .tables
                .entry(gr)
                .or_insert_with(|| Table::new(cap))
                .objects
                .insert((okey.namespace, okey.name), obj);
        }
        inner.rv = top;
        inner.history.clear();
        inner.history_start = top;
    }

    /// Forget all history: every watch or exact read from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let mut inner = self.inner.lock();
        inner.history.clear();
        inner.history_start = inner.rv;
    }

    /// Number of stored objects of `gr` (tests, benchmarks).
    pub fn count(&self, gr: &Gr) -> usize {
        self.inner
            .lock()
            .tables
            .get(gr)
            .map(|t| t.objects.len())
            .unwrap_or(0)
    }
}

fn range<'a>(
    objects: &'a BTreeMap<(String, String), Arc<Obj>>,
    namespace: Option<&str>,
    after: Option<&(String, String)>,
) -> impl Iterator<Item = (&'a (String, String), &'a Arc<Obj>)> + 'a {
    use std::ops::Bound;
    let ns = namespace.map(str::to_string);
    let lower = match (after, &ns) {
        (Some(a), Some(ns)) if a.0 < *ns => Bound::Included((ns.clone(), String::new())),
        (Some(a), _) => Bound::Excluded(a.clone()),
        (None, Some(ns)) => Bound::Included((ns.clone(), String::new())),
        (None, None) => Bound::Unbounded,
    };
    objects
        .range((lower, Bound::Unbounded))
        .take_while(move |((n, _), _)| ns.as_ref().is_none_or(|ns| n == ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(ns: &str, name: &str, v: i64) -> Value {
        json!({"metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}")}, "v": v})
    }

    #[test]
    fn global_rv_and_snapshots() {
        let s = Store::new(100);
        let gr = Gr::new("", "configmaps");
        s.commit(&gr, "a", "x", Commit::Create(obj("a", "x", 1)))
            .unwrap();
        s.commit(&gr, "b", "y", Commit::Create(obj("b", "y", 1)))
            .unwrap();
        assert_eq!(s.current_rv(), 2);
        s.commit(
            &gr,
            "a",
            "x",
            Commit::Update {
                expect_rv: 1,
                value: obj("a", "x", 2),
            },
        )
        .unwrap();
        assert_eq!(
            s.commit(
                &gr,
                "a",
                "x",
                Commit::Update {
                    expect_rv: 1,
                    value: obj("a", "x", 3)
                }
            )
            .unwrap_err(),
            CommitError::Stale(3)
        );
        s.commit(
            &gr,
            "b",
            "y",
            Commit::Delete {
                expect_rv: 2,
                value: obj("b", "y", 1),
            },
        )
        .unwrap();
        let now = s.snapshot(&gr, None, None, None).unwrap();
        assert_eq!(now.items.len(), 1);
        let at2 = s.snapshot(&gr, None, None, Some(2)).unwrap();
        assert_eq!(at2.items.len(), 2);
        assert_eq!(at2.items[0].value["v"], 1);
        let at1 = s.snapshot(&gr, None, None, Some(1)).unwrap();
        assert_eq!(at1.items.len(), 1);
        let after = s
            .snapshot(&gr, None, Some(&("a".into(), "x".into())), Some(2))
            .unwrap();
        assert_eq!(after.items.len(), 1);
        assert_eq!(after.items[0].name(), "y");
        s.compact();
        assert!(s.snapshot(&gr, None, None, Some(2)).is_err());
        assert!(s.watch_from(&gr, 2).is_err());
        assert!(s.watch_from(&gr, 4).is_ok());
    }

    #[test]
    fn namespace_ranges() {
        let s = Store::new(100);
        let gr = Gr::new("", "secrets");
        for (ns, n) in [("a", "1"), ("b", "1"), ("b", "2"), ("c", "1")] {
            s.commit(&gr, ns, n, Commit::Create(obj(ns, n, 0))).unwrap();
        }
        assert_eq!(s.list(&gr, Some("b")).items.len(), 2);
        let snap = s
            .snapshot(&gr, Some("b"), Some(&("b".into(), "1".into())), None)
            .unwrap();
        assert_eq!(snap.items.len(), 1);
        assert_eq!(s.dependents_of("x").len(), 0);
        assert!(s.find_by_uid("b-2").is_some());
    }
}
