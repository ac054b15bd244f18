//! What this process remembers of each LatticeAgent between reconciles (design §2.1, §6).
//!
//! Everything here can be lost without harm — a restarted process starts with an empty memory
//! and is correct, only slower or louder for a moment — because the durable state is the
//! Kubernetes API (design §2). One entry per resource (by uid), forgotten when its finalizer is
//! released or the watch reports it deleted. The API is named after the moments that use it:
//!
//! | moment | who | methods |
//! |---|---|---|
//! | a watch event arrives | the watches | [`Memory::resource_event`], [`Memory::secret_event`] |
//! | the watch's cache stored it | the watches | [`Memory::resource_stored`], [`Memory::secret_stored`], [`Memory::forget`] |
//! | before a write is sent | the Kubernetes adapter | [`Memory::before_resource_write`], [`Memory::before_secret_write`] |
//! | after a write returned | the Kubernetes adapter | [`Memory::wrote_resource`], [`Memory::wrote_secret`], [`Memory::secret_write_refused`] |
//! | a reconcile reads the freshest object | observe | [`Memory::freshest_resource`], [`Memory::freshest_secret`] |
//! | a reconcile starts and ends | observe, report | [`Memory::begin`], [`Memory::settled`], [`Memory::failed`] |
//! | periodically | the operator's sweepers | [`Memory::take_due`], [`Memory::sweep`] |
//! | the service key changed | the service key wake-up | [`Memory::service_key_changed`] |
//!
//! It serves three concerns, each with one mechanism:
//!
//! 1. **Which watch events start a reconcile** — *seen content*. For each object kind the entry
//!    keeps a hash of the content the operator acts on, as last delivered by the watch or as the
//!    operator is about to write it: for the LatticeAgent the predicate hash (generation, deletion,
//!    finalizers, labels, the `agentlattice.io/` annotations, whether it parses), for its Secret
//!    [`crate::secret::fingerprint`]. An event with the content already seen starts nothing: a
//!    status-only update, the operator's own write (announced before it was sent), or anyone's
//!    write of exactly what the operator wants. Resources and Secrets once had three detectors
//!    (the pre-stored predicate hash, an overlay's resourceVersion, and a creation fingerprint);
//!    they are this one. A re-listed Secret (`InitApply`) always starts a reconcile, as before.
//! 2. **Reading one's own writes** — *overlays*. After a write the entry keeps the object the API
//!    server returned (Secrets in cache form) with the versions it replaced, because the watch
//!    delivers the write a moment later and a reconcile in that moment must not act on the version
//!    its own write replaced (it would, for example, find no Secret and register again). An overlay
//!    is preferred only while the cache still shows a version it replaced (or, after a create, no
//!    object) and for at most its TTL; it is dropped when the cache catches up.
//! 3. **Scheduling** — when the agent was last read (the drift read is due once per resync
//!    interval), consecutive failures (backoff), when the next reconcile is due (the resync
//!    sweeper, design §6), whether the resource waits for the service key, and the two gauges.
//!
//! # Ordering rules
//!
//! Each is held by a test that fails when the order is swapped.
//!
//! - **Announce before writing.** The watch often delivers a write before its response arrives,
//!   so the adapter announces the expected content ([`Memory::before_secret_write`],
//!   [`Memory::before_resource_write`]) before it sends the request
//!   (`cluster::tests::a_write_is_announced_before_it_is_sent`).
//! - **Store, then tell the memory.** A watch calls `*_stored` only after its cache holds the
//!   version (`cluster::watch::tests::the_cache_holds_a_version_before_its_overlay_goes`); so a
//!   reconcile that finds no overlay reads a cache at least as new as any dropped overlay.
//! - **Overlay first, cache second.** `freshest_*` looks the overlay up *before* it reads the cache
//!   (the `read_cache` closure is called after the lookup). Reading the cache first loses a race
//!   with the rule above: a copy read just before the store caught up, and the overlay gone by the
//!   time it is looked up (`freshest_reads_the_overlay_before_the_cache`).
//! - **Ask the cache under the lock.** `wrote_*` asks whether the cache already holds the written
//!   version while it holds the memory's lock, and the watch takes that lock after updating its
//!   cache: one of the two always sees the other, so no overlay outlives a version the cache
//!   holds (`a_write_asks_the_cache_under_the_lock`). Such an overlay would hide, until its TTL, a
//!   later deletion of the object.
//! - **Count the key change and mark the waiter under one lock.** A reconcile that fails for want
//!   of a service key marks its resource as waiting when it settles; a change of the key wakes the
//!   marked resources. A change that lands while the reconcile runs (after it began, before the
//!   mark) would wake nobody, and the resource would wait for `--service-key-retry`.
//!   [`Memory::service_key_changed`] counts the change and reads the marks under the memory's
//!   lock, and [`Memory::settled`] sets the mark and compares the count with the one
//!   [`Memory::begin`] saw under the same lock: either the wake-up finds the mark, or `settled`
//!   answers that the key changed meanwhile and the reconcile is requeued at once
//!   (`a_key_change_during_a_reconcile_is_never_lost`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;

use crate::crd::LatticeAgent;

/// A version of an object this process wrote, with the versions it replaced.
#[derive(Clone, Debug)]
struct Overlay<T> {
    /// Resource versions this object replaced (`None`: it was created, or read past the cache).
    superseded: Vec<Option<String>>,
    /// The object as the API server returned it (Secrets in cache form).
    latest: T,
    /// When it was written.
    at: Instant,
}

impl<T: Resource> Overlay<T> {
    fn push(slot: &mut Option<Box<Overlay<T>>>, replaced: Option<String>, latest: T) {
        match slot {
            Some(o) => {
                o.superseded.push(replaced);
                if o.superseded.len() > 8 {
                    o.superseded.remove(0);
                }
                o.latest = latest;
                o.at = Instant::now();
            }
            None => {
                *slot = Some(Box::new(Overlay {
                    superseded: vec![replaced],
                    latest,
                    at: Instant::now(),
                }));
            }
        }
    }

    /// Whether `rv` is one of the versions this one replaced.
    fn replaces(&self, rv: Option<&str>) -> bool {
        rv.is_some() && self.superseded.iter().any(|s| s.as_deref() == rv)
    }

    /// Whether to prefer this object to the cached one (`cached_rv`: its resourceVersion, `None`
    /// if not cached): while the cache still shows a version it replaced, within `ttl`.
    fn prefer(&self, cached_rv: Option<Option<&str>>, ttl: Duration) -> bool {
        if self.at.elapsed() > ttl {
            return false;
        }
        match cached_rv {
            None => self.superseded.contains(&None),
            Some(rv) => self.replaces(rv),
        }
    }

    fn name(&self) -> Option<&str> {
        self.latest.meta().name.as_deref()
    }

    fn version(&self) -> Option<&str> {
        self.latest.meta().resource_version.as_deref()
    }
}

/// One resource's entry. Overlays are boxed: most entries have none, and inline they made every
/// entry 1.5 KiB.
#[derive(Debug, Default)]
struct Entry {
    /// The LatticeAgent's predicate hash, as last delivered or announced.
    resource_seen: Option<u64>,
    /// Its Secret's fingerprint, as last delivered or announced.
    secret_seen: Option<u64>,
    /// The resource as this process last wrote it.
    resource: Option<Box<Overlay<LatticeAgent>>>,
    /// Its Secret as this process last wrote (or read past the cache) it, in cache form.
    secret: Option<Box<Overlay<Secret>>>,
    /// When this process last read (or registered) the agent.
    last_remote_check: Option<Timestamp>,
    /// Consecutive failed reconciles.
    failures: u32,
    /// The count of service key changes when the current reconcile began.
    key_changes_at_begin: u64,
    /// When the next reconcile is due although nothing changed (the resync sweeper starts it,
    /// design §6).
    due: Option<Instant>,
    /// The resource's `namespace/name` (set when a reconcile settles), for the sweeper and the
    /// service key's wake-up. One string, not two: with 100,000 resources each byte of an entry
    /// is 0.1 MB.
    object: Option<Box<str>>,
    /// The last reconcile failed for want of a working service key.
    waiting_for_service_key: bool,
    /// Whether the resource has a registered agent (`lattice_agents_managed`).
    managed: bool,
    /// Whether old keys are waiting to be revoked (`lattice_rotations_waiting`).
    rotating: bool,
}

/// `namespace/name` as `(namespace, name)` (neither contains a `/`).
fn split(object: Option<&str>) -> Option<(&str, &str)> {
    object?.split_once('/')
}

/// How a successful or failed reconcile ended, for [`Memory::settled`].
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    /// The agent was read from (or written to) AgentLattice: remember `now` as the last check.
    pub remote_checked_at: Option<Timestamp>,
    /// The resource has a registered agent.
    pub managed: bool,
    /// Old keys wait to be revoked.
    pub rotating: bool,
    /// The reconcile failed for want of a working service key.
    pub waiting_for_service_key: bool,
    /// The reconcile succeeded: failures reset, and the next reconcile is due at this time (the
    /// sweeper's; `None`: only on a change or kube-runtime's requeue).
    pub succeeded: Option<Option<Instant>>,
    /// Namespace and name (for the sweeper).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The per-object memory of this process.
#[derive(Debug, Default)]
pub struct Memory {
    objects: Mutex<HashMap<Box<str>, Entry>>,
    /// How many entries have `managed` set (changed under the `objects` lock).
    managed: AtomicUsize,
    /// How many entries have `rotating` set.
    rotating: AtomicUsize,
    /// How many times the service key changed (changed under the `objects` lock; see the
    /// ordering rules).
    key_changes: AtomicU64,
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Entry>> {
        // A panic while holding the lock leaves the map as it was between two operations.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<R>(&self, uid: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut objects = self.lock();
        // `entry` wants an owned key: look up first so that the common case allocates nothing.
        let entry = match objects.get_mut(uid) {
            Some(e) => e,
            None => objects.entry(uid.into()).or_default(),
        };
        let before = (entry.managed, entry.rotating);
        let r = f(entry);
        self.count(before, (entry.managed, entry.rotating));
        r
    }

    fn with_existing<R>(&self, uid: &str, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.lock().get_mut(uid).map(f)
    }

    /// Keeps the gauge counts as entries change (counting them on every reconcile made the
    /// gauges O(n) per reconcile).
    fn count(&self, before: (bool, bool), after: (bool, bool)) {
        let adjust = |counter: &AtomicUsize, was: bool, is: bool| match (was, is) {
            (false, true) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        };
        adjust(&self.managed, before.0, after.0);
        adjust(&self.rotating, before.1, after.1);
    }

    // ----- a watch event arrives ------------------------------------------------------------------

    /// The LatticeAgent watch delivered a resource whose predicate hash is `hash`: whether it
    /// starts a reconcile (the first time, and whenever the hash differs from the one seen).
    pub fn resource_event(&self, uid: &str, hash: u64) -> bool {
        self.with(uid, |e| e.resource_seen.replace(hash) != Some(hash))
    }

    /// The Secret watch delivered (as a change, not a re-list) a Secret controlled by `uid` with
    /// this [`crate::secret::fingerprint`]: whether it starts a reconcile. Not when the content is
    /// the one seen last or announced by [`Memory::before_secret_write`]. Nothing is remembered for
    /// a uid without an entry (not a resource of this process).
    pub fn secret_event(&self, uid: &str, fingerprint: u64) -> bool {
        self.with_existing(uid, |e| {
            e.secret_seen.replace(fingerprint) != Some(fingerprint)
        })
        .unwrap_or(true)
    }

    /// A re-listed Secret (`InitApply`): remembered as seen; it starts a reconcile anyway.
    pub fn secret_listed(&self, uid: &str, fingerprint: u64) {
        self.with_existing(uid, |e| e.secret_seen = Some(fingerprint));
    }

    // ----- the watch's cache stored it ------------------------------------------------------------

    /// The LatticeAgent cache now holds version `rv` of `uid`: its overlay goes unless `rv` is a
    /// version the overlay replaced (then the cache is still stale). Called only after the store
    /// was updated (module docs).
    pub fn resource_stored(&self, uid: &str, rv: Option<&str>) {
        self.with_existing(uid, |e| {
            if e.resource.as_ref().is_some_and(|o| !o.replaces(rv)) {
                e.resource = None;
            }
        });
    }

    /// The Secret cache now holds version `rv` of the Secret `name` of `uid` (see
    /// [`Memory::resource_stored`]).
    pub fn secret_stored(&self, uid: &str, name: &str, rv: Option<&str>) {
        self.with_existing(uid, |e| {
            if e.secret
                .as_ref()
                .is_some_and(|o| o.name() == Some(name) && !o.replaces(rv))
            {
                e.secret = None;
            }
        });
    }

    /// Forgets `uid` (its resource is gone, or its finalizer was released).
    pub fn forget(&self, uid: &str) {
        if let Some(e) = self.lock().remove(uid) {
            self.count((e.managed, e.rotating), (false, false));
        }
    }

    // ----- before a write is sent -----------------------------------------------------------------

    /// The operator is about to write the resource so that its predicate hash becomes `hash`:
    /// the watch event of that write starts no reconcile.
    pub fn before_resource_write(&self, uid: &str, hash: u64) {
        self.with(uid, |e| e.resource_seen = Some(hash));
    }

    /// The operator is about to write `uid`'s Secret so that its fingerprint becomes
    /// `fingerprint`: the watch event of that write starts no reconcile.
    pub fn before_secret_write(&self, uid: &str, fingerprint: u64) {
        self.with(uid, |e| e.secret_seen = Some(fingerprint));
    }

    // ----- after a write returned -----------------------------------------------------------------

    /// Remembers a write of the resource (`replaced`: the version it replaced) — unless the cache
    /// holds that version already (`cached_rv` is asked under the memory's lock, module docs).
    pub fn wrote_resource(
        &self,
        uid: &str,
        replaced: Option<String>,
        mut latest: LatticeAgent,
        cached_rv: impl FnOnce() -> Option<String>,
    ) {
        // As in the cache (the planner sees the same metadata either way).
        crate::crd::keep_read_metadata(&mut latest.metadata);
        self.with(uid, |e| {
            if latest.metadata.resource_version.is_some()
                && cached_rv() == latest.metadata.resource_version
            {
                e.resource = None;
                return;
            }
            Overlay::push(&mut e.resource, replaced, latest);
        });
    }

    /// Remembers a write (or a direct read, `replaced: None`) of the Secret, in cache form —
    /// unless the cache holds that version already (`cache_holds(rv)` is asked under the lock).
    pub fn wrote_secret(
        &self,
        uid: &str,
        replaced: Option<String>,
        latest: Secret,
        cache_holds: impl FnOnce(&str) -> bool,
    ) {
        self.with(uid, |e| {
            if latest
                .metadata
                .resource_version
                .as_deref()
                .is_some_and(cache_holds)
            {
                e.secret = None;
                return;
            }
            Overlay::push(&mut e.secret, replaced, latest);
        });
    }

    /// A write of the Secret was refused because what it was based on is out of date (404, 409):
    /// the overlay goes, the cache knows better.
    pub fn secret_write_refused(&self, uid: &str) {
        self.with_existing(uid, |e| e.secret = None);
    }

    // ----- a reconcile reads the freshest object --------------------------------------------------

    /// The resource to reconcile: the one this process wrote if the cache has not caught up yet,
    /// else the cached one. `read_cache` is called *after* the overlay was looked up (module docs).
    pub fn freshest_resource(
        &self,
        uid: &str,
        read_cache: impl FnOnce() -> LatticeAgent,
        ttl: Duration,
    ) -> LatticeAgent {
        let overlay = self.with_existing(uid, |e| e.resource.clone()).flatten();
        let cached = read_cache();
        let rv = cached.metadata.resource_version.as_deref();
        match overlay {
            Some(o) if o.prefer(Some(rv), ttl) => o.latest,
            Some(o) => {
                self.caught_up(uid, |e| &mut e.resource, &o);
                cached
            }
            None => cached,
        }
    }

    /// The Secret to reconcile with (see [`Memory::freshest_resource`]); `name`: the Secret the
    /// resource names now (an overlay of another name is never used).
    pub fn freshest_secret(
        &self,
        uid: &str,
        name: &str,
        read_cache: impl FnOnce() -> Option<Secret>,
        ttl: Duration,
    ) -> Option<Secret> {
        let overlay = self.with_existing(uid, |e| e.secret.clone()).flatten();
        let cached = read_cache();
        let rv = cached
            .as_ref()
            .map(|s| s.metadata.resource_version.as_deref());
        match overlay {
            Some(o) if o.name() == Some(name) && o.prefer(rv, ttl) => Some(o.latest),
            Some(o) => {
                self.caught_up(uid, |e| &mut e.secret, &o);
                cached
            }
            None => cached,
        }
    }

    /// The cache has caught up with `seen`: drop it, unless another write replaced it meanwhile.
    fn caught_up<T: Resource>(
        &self,
        uid: &str,
        slot: fn(&mut Entry) -> &mut Option<Box<Overlay<T>>>,
        seen: &Overlay<T>,
    ) {
        self.with_existing(uid, |e| {
            let current = slot(e);
            if current
                .as_ref()
                .is_some_and(|o| o.version().is_some() && o.version() == seen.version())
            {
                *current = None;
            }
        });
    }

    // ----- a reconcile starts and ends ------------------------------------------------------------

    /// A reconcile of `uid` starts: it replaces the one that was due, if any. Returns when this
    /// process last read (or registered) the agent.
    pub fn begin(&self, uid: &str) -> Option<Timestamp> {
        let key_changes = &self.key_changes;
        self.with(uid, |e| {
            e.due = None;
            e.key_changes_at_begin = key_changes.load(Ordering::SeqCst);
            e.last_remote_check
        })
    }

    /// A reconcile of `uid` ended (successfully, or with a failure the planner reported).
    /// Returns `true` when it waits for the service key but the key changed since it began: the
    /// change's wake-up may have come before this mark, so the caller requeues at once rather
    /// than wait for the next change (see the ordering rules).
    pub fn settled(&self, uid: &str, s: Settlement) -> bool {
        let key_changes = &self.key_changes;
        self.with(uid, |e| {
            let changed_meanwhile = s.waiting_for_service_key
                && key_changes.load(Ordering::SeqCst) != e.key_changes_at_begin;
            if let Some(at) = s.remote_checked_at {
                e.last_remote_check = Some(at);
            }
            e.managed = s.managed;
            e.rotating = s.rotating;
            e.waiting_for_service_key = s.waiting_for_service_key;
            if split(e.object.as_deref()) != Some((&s.namespace, &s.name)) {
                e.object = Some(format!("{}/{}", s.namespace, s.name).into_boxed_str());
            }
            if let Some(due) = s.succeeded {
                e.failures = 0;
                e.due = due;
            }
            changed_meanwhile
        })
    }

    /// The service key changed: counts the change and returns the resources waiting for it, to
    /// reconcile now — both under the memory's lock (see the ordering rules).
    pub fn service_key_changed(&self) -> Vec<(String, String)> {
        let objects = self.lock();
        self.key_changes.fetch_add(1, Ordering::SeqCst);
        objects
            .values()
            .filter(|e| e.waiting_for_service_key)
            .filter_map(|e| split(e.object.as_deref()))
            .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
            .collect()
    }

    /// A reconcile of `uid` failed: the number of consecutive failures, this one included.
    pub fn failed(&self, uid: &str) -> u32 {
        self.with(uid, |e| {
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
    }

    // ----- periodically ---------------------------------------------------------------------------

    /// The resources of `namespace` (all with `None`) whose reconcile is due at `now`, as
    /// `(namespace, name)`; each is returned once (its due time is cleared).
    pub fn take_due(&self, namespace: Option<&str>, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for e in self.lock().values_mut() {
            let Some((ns, name)) = split(e.object.as_deref()) else {
                continue;
            };
            let ready =
                e.due.is_some_and(|at| at <= now) && namespace.is_none_or(|want| want == ns);
            if ready {
                e.due = None;
                out.push((ns.to_owned(), name.to_owned()));
            }
        }
        out
    }

    /// Drops every overlay older than `ttl`: past its TTL an overlay is never preferred again, so
    /// keeping it only costs memory (an object whose last write was a status update would
    /// otherwise keep a copy of itself and its Secret for the life of the process).
    pub fn sweep(&self, ttl: Duration) -> usize {
        let mut dropped = 0;
        for e in self.lock().values_mut() {
            if e.resource.as_ref().is_some_and(|r| r.at.elapsed() > ttl) {
                e.resource = None;
                dropped += 1;
            }
            if e.secret.as_ref().is_some_and(|s| s.at.elapsed() > ttl) {
                e.secret = None;
                dropped += 1;
            }
        }
        dropped
    }

    /// `(agents managed, rotations waiting)`.
    pub fn gauges(&self) -> (usize, usize) {
        (
            self.managed.load(Ordering::Relaxed),
            self.rotating.load(Ordering::Relaxed),
        )
    }

    /// How many overlays are held (tests and debugging).
    pub fn overlays(&self) -> usize {
        self.lock()
            .values()
            .map(|e| usize::from(e.resource.is_some()) + usize::from(e.secret.is_some()))
            .sum()
    }

    /// How many consecutive failures `uid` has (tests and debugging).
    pub fn failures(&self, uid: &str) -> u32 {
        self.with_existing(uid, |e| e.failures).unwrap_or_default()
    }

    /// Whether the memory's lock is free (tests of the ordering rules).
    #[cfg(test)]
    fn unlocked(&self) -> bool {
        self.objects.try_lock().is_ok()
    }
}

#[cfg(test)]
mod tests;
