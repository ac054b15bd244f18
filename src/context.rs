//! The [`Context`] every reconcile gets: every side effect (the Kubernetes client, AgentLattice,
//! the event publisher, metrics) and the executor's per-object memory.
//!
//! The memory is what a process may forget without harm (design §2, §4): when it last read each
//! agent (so the drift read is due once per resync interval, §6), each object's backoff, which
//! objects wait for the service key, and the objects this process wrote most recently (the
//! reflector caches catch up a moment later; a reconcile in that moment must not act on the
//! version its own write replaced).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use rand::Rng;

use crate::crd::LatticeAgent;
use crate::metrics::Metrics;
use crate::plan::Settings;
use crate::remote::Remote;

/// A fail point: called with `before:<Effect>` and `after:<Effect>` around every action of every
/// reconcile; returning `true` makes the reconcile stop right there, forever (a simulated crash:
/// the test then drops the operator and starts a fresh one with empty memory). Tests only.
pub type FailPoints = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Per-object exponential backoff with jitter (design §5): the n-th consecutive failure waits a
/// random time in `[d/2, d]` with `d = min(max, base·2ⁿ⁻¹)`, and never less than `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffPolicy {
    /// The delay after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32, at_least: Option<Duration>) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max);
        let half = ceiling / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
        };
        (half + jitter).max(at_least.unwrap_or_default())
    }
}

/// A version of an object this process wrote, with the versions it replaced.
#[derive(Clone, Debug)]
pub struct Overlay<T> {
    /// Resource versions this object replaced (`None`: it was created).
    pub superseded: Vec<Option<String>>,
    /// The object as the API server returned it (Secrets in cache form).
    pub latest: T,
    /// When it was written.
    pub at: Instant,
}

impl<T: Clone> Overlay<T> {
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

    /// The newer of the cached object (`cached_rv`: its resourceVersion, `None` if not cached)
    /// and this one: this one when the cache still shows a version it replaced.
    fn prefer(&self, cached_rv: Option<Option<String>>, ttl: Duration) -> bool {
        if self.at.elapsed() > ttl {
            return false;
        }
        match cached_rv {
            None => self.superseded.contains(&None),
            Some(rv) => rv.is_some() && self.superseded.contains(&rv),
        }
    }
}

/// What the executor remembers of one object (by uid).
#[derive(Clone, Debug, Default)]
pub struct ObjectMemory {
    /// When this process last read (or registered) the agent.
    pub last_remote_check: Option<Timestamp>,
    /// Consecutive failed reconciles.
    pub failures: u32,
    /// `(namespace, name)` while the last reconcile failed for want of a working service key.
    pub waiting_for_service_key: Option<(String, String)>,
    /// The resource as this process last wrote it (boxed: the map holds an entry per resource
    /// and most have no overlay; inline, the two overlays made each entry 1.5 KiB).
    pub resource: Option<Box<Overlay<LatticeAgent>>>,
    /// Its Secret as this process last wrote (or read past the cache) it, in cache form.
    pub secret: Option<Box<Overlay<Secret>>>,
    /// Whether the resource has a registered agent (for `lattice_agents_managed`).
    pub managed: bool,
    /// Whether old keys are waiting to be revoked (for `lattice_rotations_waiting`).
    pub rotating: bool,
    /// The hash of what the main watch's predicate looks at, as last let through.
    pub predicate: Option<u64>,
    /// A Secret this process is creating (design §6).
    pub creating_secret: Option<Creating>,
    /// When the next reconcile is due although nothing changed (the resync, a scheduled
    /// rotation, a retirement), with the resource's namespace and name: the resync sweeper of the
    /// controller starts it (design §6).
    pub due: Option<(Instant, Box<str>, Box<str>)>,
}

/// A Secret being created, as far as the Secret watch is concerned. The watch often delivers a new
/// Secret before the create's response is back, and always before the reconcile that created it
/// records its overlay (at its end); without this, it could neither tell the operator's own write
/// from another change, nor drop the overlay once the cache holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Creating {
    /// The create is sent; the Secret's [`crate::secret::fingerprint`].
    Sent(u64),
    /// The watch delivered it, at the resourceVersion of this hash (a hash, not the string: no
    /// allocation per new Secret, 8 bytes less per resource): the cache holds it, no overlay is
    /// needed.
    Seen(u64),
}

fn rv_hash(rv: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(rv, &mut h);
    std::hash::Hasher::finish(&h)
}

/// Where in an [`ObjectMemory`] the overlay of one kind of object is.
type Slot<T> = fn(&mut ObjectMemory) -> &mut Option<Box<Overlay<T>>>;

/// The per-object memory of this process.
#[derive(Debug, Default)]
pub struct Memory {
    objects: Mutex<HashMap<String, ObjectMemory>>,
    /// How many entries have `managed` set (changed under the `objects` lock).
    managed: AtomicUsize,
    /// How many entries have `rotating` set.
    rotating: AtomicUsize,
}

impl Memory {
    /// A copy of what is remembered of `uid`.
    pub fn get(&self, uid: &str) -> ObjectMemory {
        self.objects
            .lock()
            .ok()
            .and_then(|m| m.get(uid).cloned())
            .unwrap_or_default()
    }

    /// When this process last read (or registered) the agent of `uid` (without copying the
    /// overlays, as [`Memory::get`] does).
    pub fn last_remote_check(&self, uid: &str) -> Option<Timestamp> {
        self.objects
            .lock()
            .ok()
            .and_then(|m| m.get(uid).and_then(|o| o.last_remote_check))
    }

    /// Drops every overlay older than `ttl` (design §2.3): past its TTL an overlay is never
    /// preferred to the cache again, so keeping it only costs memory. Called periodically: an
    /// object whose last write was a status update (which the predicate does not reconcile) would
    /// otherwise keep a copy of itself and of its Secret for the life of the process.
    pub fn sweep(&self, ttl: Duration) -> usize {
        let Ok(mut objects) = self.objects.lock() else {
            return 0;
        };
        let mut dropped = 0;
        for o in objects.values_mut() {
            if o.resource.as_ref().is_some_and(|r| r.at.elapsed() > ttl) {
                o.resource = None;
                dropped += 1;
            }
            if o.secret.as_ref().is_some_and(|s| s.at.elapsed() > ttl) {
                o.secret = None;
                dropped += 1;
            }
        }
        dropped
    }

    /// The LatticeAgent cache now holds version `rv` of `uid`: its overlay goes unless `rv` is a
    /// version the overlay replaced (then the cache is still stale and the overlay still needed).
    /// Called by the watch after the store was updated, so a reconcile that no longer finds the
    /// overlay finds that version or a newer one in the cache.
    pub fn cached_resource(&self, uid: &str, rv: Option<&str>) {
        if let Ok(mut objects) = self.objects.lock()
            && let Some(o) = objects.get_mut(uid)
            && o.resource.as_ref().is_some_and(|r| !r.replaces(rv))
        {
            o.resource = None;
        }
    }

    /// The Secret cache now holds `secret` (in cache form), owned by `uid` (see
    /// [`Memory::cached_resource`]). Returns whether it is the operator's own write: the version
    /// this process wrote last, or the Secret it is creating, known by its content
    /// ([`Creating`]).
    pub fn cached_secret(&self, uid: &str, secret: &Secret) -> bool {
        let Ok(mut objects) = self.objects.lock() else {
            return false;
        };
        let Some(o) = objects.get_mut(uid) else {
            return false;
        };
        let (name, rv) = (
            secret.metadata.name.as_deref(),
            secret.metadata.resource_version.as_deref(),
        );
        let created = matches!(o.creating_secret, Some(Creating::Sent(fp))
            if fp == crate::secret::fingerprint(secret));
        if created {
            o.creating_secret = rv.map(|rv| Creating::Seen(rv_hash(rv)));
        }
        let mut own = false;
        if let Some(overlay) = o.secret.as_ref()
            && overlay.latest.metadata.name.as_deref() == name
            && !overlay.replaces(rv)
        {
            own = rv.is_some() && overlay.latest.metadata.resource_version.as_deref() == rv;
            o.secret = None;
        }
        own || created
    }

    /// This process is about to create `secret` for `uid` (see [`Creating`]).
    pub fn creating_secret(&self, uid: &str, secret: &Secret) {
        let fp = crate::secret::fingerprint(secret);
        self.update(uid, |m| m.creating_secret = Some(Creating::Sent(fp)));
    }

    /// How many overlays are held (tests and debugging).
    pub fn overlays(&self) -> usize {
        self.objects
            .lock()
            .map(|m| {
                m.values()
                    .map(|o| usize::from(o.resource.is_some()) + usize::from(o.secret.is_some()))
                    .sum()
            })
            .unwrap_or_default()
    }

    /// Changes what is remembered of `uid`.
    pub fn update<R>(&self, uid: &str, f: impl FnOnce(&mut ObjectMemory) -> R) -> Option<R> {
        let mut objects = self.objects.lock().ok()?;
        // `entry` wants an owned key: look up first so that the common case (the entry exists)
        // allocates nothing.
        let o = match objects.get_mut(uid) {
            Some(o) => o,
            None => objects.entry(uid.to_owned()).or_default(),
        };
        let before = (o.managed, o.rotating);
        let r = f(o);
        let after = (o.managed, o.rotating);
        self.count(before, after);
        Some(r)
    }

    /// Keeps the gauge counts as entries change (counting them on every reconcile made the
    /// gauges O(n) per reconcile: 1 % of the CPU of creating 1,000 agents, more with more).
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

    /// Whether the watch should let a resource through whose predicate hash is `hash`: the
    /// first time, and whenever the hash changes (kube-runtime's `predicate_filter` keeps the
    /// same in a map of its own, keyed by name, namespace and uid; here it is 8 bytes in the
    /// entry every resource has anyway).
    pub fn predicate_changed(&self, uid: &str, hash: u64) -> bool {
        self.update(uid, |m| m.predicate.replace(hash) != Some(hash))
            .unwrap_or(true)
    }

    /// The resources of `namespace` (all with `None`) whose reconcile is due at `now`, as
    /// `(namespace, name)`; each is returned once (its due time is cleared).
    pub fn take_due(&self, namespace: Option<&str>, now: Instant) -> Vec<(String, String)> {
        let Ok(mut objects) = self.objects.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for o in objects.values_mut() {
            let ready = o.due.as_ref().is_some_and(|(at, ns, _)| {
                *at <= now && namespace.is_none_or(|want| want == &**ns)
            });
            if ready && let Some((_, ns, name)) = o.due.take() {
                out.push((ns.into_string(), name.into_string()));
            }
        }
        out
    }

    /// Forgets `uid` (its resource is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut m) = self.objects.lock()
            && let Some(o) = m.remove(uid)
        {
            self.count((o.managed, o.rotating), (false, false));
        }
    }

    /// `(agents managed, rotations waiting)`.
    pub fn gauges(&self) -> (usize, usize) {
        (
            self.managed.load(Ordering::Relaxed),
            self.rotating.load(Ordering::Relaxed),
        )
    }

    /// The objects whose last reconcile failed for want of a working service key.
    pub fn waiting_for_service_key(&self) -> Vec<(String, String)> {
        self.objects
            .lock()
            .map(|m| {
                m.values()
                    .filter_map(|o| o.waiting_for_service_key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembers a write of the resource — unless the cache holds that version already
    /// (`cached_rv`: the resourceVersion the cache holds, asked under the memory's lock). The watch
    /// often delivers a write before the reconcile that made it records it; an overlay pushed after
    /// that would wait for the next watch event or its TTL (and cost 2 KiB per resource meanwhile:
    /// +2 MiB in the `scale` benchmark once nothing else triggered a later reconcile). The watch
    /// updates the cache before it takes the lock to drop overlays, so one of the two always sees
    /// the other.
    pub fn wrote_resource(
        &self,
        uid: &str,
        replaced: Option<String>,
        mut latest: LatticeAgent,
        cached_rv: impl FnOnce() -> Option<String>,
    ) {
        // As in the cache: the planner never reads them.
        latest.metadata.managed_fields = None;
        self.update(uid, |m| {
            if latest.metadata.resource_version.is_some()
                && cached_rv() == latest.metadata.resource_version
            {
                m.resource = None;
                return;
            }
            Overlay::push(&mut m.resource, replaced, latest)
        });
    }

    /// Remembers a write (or a direct read) of the Secret, in cache form — unless the watch
    /// delivered that very write already ([`Creating::Seen`]): then the cache holds it and no
    /// overlay is needed (one would outlive the Secret if it were deleted next, and hide that).
    pub fn wrote_secret(&self, uid: &str, replaced: Option<String>, latest: Secret) {
        self.update(uid, |m| {
            if let Some(Creating::Seen(seen)) = m.creating_secret.take()
                && latest.metadata.resource_version.as_deref().map(rv_hash) == Some(seen)
            {
                m.secret = None;
                return;
            }
            Overlay::push(&mut m.secret, replaced, latest)
        });
    }

    /// Forgets the Secret this process wrote (a write based on it failed: the cache knows
    /// better).
    pub fn drop_secret(&self, uid: &str) {
        self.update(uid, |m| m.secret = None);
    }

    /// The resource to reconcile: the cached one, or the one this process wrote if the cache has
    /// not caught up yet.
    ///
    /// `cached` reads the cache and is called *after* the overlay was looked up. The watch drops
    /// an overlay only once the store holds the version it covers ([`Memory::cached_resource`]),
    /// so a cache read made after finding no overlay is at least as new as any overlay dropped
    /// before it. Reading the cache first would race with that drop: a reconcile could hold a
    /// copy read just before the store caught up and find the overlay already gone (seen in the
    /// `create` benchmark as a status write on a stale object, 409, and a second reconcile for
    /// about 4 % of new agents).
    pub fn freshest_resource(
        &self,
        uid: &str,
        cached: impl FnOnce() -> LatticeAgent,
        ttl: Duration,
    ) -> LatticeAgent {
        let slot: Slot<LatticeAgent> = |m| &mut m.resource;
        let overlay = self.overlay(uid, slot);
        let cached = cached();
        let rv = Some(cached.metadata.resource_version.clone());
        self.resolve(uid, slot, overlay, None, rv, ttl)
            .unwrap_or(cached)
    }

    /// The Secret to reconcile with (see [`Memory::freshest_resource`], also for why `cached`
    /// is called after the overlay was looked up); `name` is the Secret the resource names now.
    pub fn freshest_secret(
        &self,
        uid: &str,
        name: &str,
        cached: impl FnOnce() -> Option<Secret>,
        ttl: Duration,
    ) -> Option<Secret> {
        let slot: Slot<Secret> = |m| &mut m.secret;
        let overlay = self.overlay(uid, slot);
        let cached = cached();
        let rv = cached.as_ref().map(|s| s.metadata.resource_version.clone());
        self.resolve(uid, slot, overlay, Some(name), rv, ttl)
            .or(cached)
    }

    /// A copy of the overlay in `slot` of `uid` (the lock is released before the caller reads a
    /// cache).
    fn overlay<T: Clone>(&self, uid: &str, slot: Slot<T>) -> Option<Box<Overlay<T>>> {
        let mut objects = self.objects.lock().ok()?;
        slot(objects.get_mut(uid)?).clone()
    }

    /// The overlay's object if it is to be preferred to the cached version `cached_rv` (see
    /// [`Overlay::prefer`]; `name`: the object it must be, for Secrets). If not, the cache has
    /// caught up and the overlay is dropped, unless another write replaced it meanwhile.
    fn resolve<T: Clone + Resource>(
        &self,
        uid: &str,
        slot: Slot<T>,
        overlay: Option<Box<Overlay<T>>>,
        name: Option<&str>,
        cached_rv: Option<Option<String>>,
        ttl: Duration,
    ) -> Option<T> {
        let overlay = overlay?;
        let named = name.is_none_or(|n| overlay.latest.meta().name.as_deref() == Some(n));
        if named && overlay.prefer(cached_rv, ttl) {
            return Some(overlay.latest);
        }
        self.update(uid, |m| {
            let current = slot(m);
            if current
                .as_ref()
                .is_some_and(|o| same_version(o.latest.meta(), overlay.latest.meta()))
            {
                *current = None;
            }
        });
        None
    }
}

fn same_version(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.resource_version.is_some() && a.resource_version == b.resource_version
}

/// Everything a reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// AgentLattice.
    pub remote: Arc<dyn Remote>,
    /// The one shared event publisher.
    pub events: Arc<crate::events::Publisher>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The planner's settings.
    pub settings: Settings,
    /// Per-object backoff.
    pub backoff: BackoffPolicy,
    /// Per-object memory.
    pub memory: Memory,
    /// Fail points (tests only).
    pub failpoints: Option<FailPoints>,
    /// When this process started reconciling.
    pub started: Timestamp,
    /// Whether the first drift read of each resource is spread over the first resync interval.
    pub spread_first_drift_read: bool,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn backoff_grows_is_jittered_capped_and_honours_retry_after() {
        let p = BackoffPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d4 = p.delay(4, None);
            assert!(d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8));
            let d30 = p.delay(30, None);
            assert!(d30 >= Duration::from_secs(30) && d30 <= Duration::from_secs(60));
            assert!(p.delay(1, Some(Duration::from_secs(9))) >= Duration::from_secs(9));
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(6, None)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    fn secret(name: &str, rv: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_cache_is_overlaid_until_it_catches_up() {
        let m = Memory::default();
        let ttl = Duration::from_secs(60);
        // Nothing remembered: the cache wins.
        assert_eq!(m.freshest_secret("u", "s", || None, ttl), None);
        // Created "s" at rv 5: a cache without it is stale.
        m.wrote_secret("u", None, secret("s", "5"));
        let got = m.freshest_secret("u", "s", || None, ttl);
        assert_eq!(
            got.and_then(|s| s.metadata.resource_version),
            Some("5".into())
        );
        // Patched 5 → 6: the cache at 5 is stale.
        m.wrote_secret("u", Some("5".into()), secret("s", "6"));
        let got = m.freshest_secret("u", "s", || Some(secret("s", "5")), ttl);
        assert_eq!(
            got.and_then(|s| s.metadata.resource_version),
            Some("6".into())
        );
        // The cache moved past: it wins and the overlay is dropped.
        let got = m.freshest_secret("u", "s", || Some(secret("s", "9")), ttl);
        assert_eq!(
            got.and_then(|s| s.metadata.resource_version),
            Some("9".into())
        );
        assert!(m.get("u").secret.is_none());
        // Another Secret name: never overlaid.
        m.wrote_secret("u", None, secret("s", "10"));
        assert_eq!(m.freshest_secret("u", "other", || None, ttl), None);
    }

    #[test]
    fn gauges_follow_the_entries() {
        let m = Memory::default();
        m.update("u1", |o| o.managed = true);
        m.update("u2", |o| {
            o.managed = true;
            o.rotating = true;
        });
        m.update("u3", |o| o.failures = 1);
        assert_eq!(m.gauges(), (2, 1));
        m.update("u2", |o| o.rotating = false);
        m.update("u1", |o| o.managed = true);
        assert_eq!(m.gauges(), (2, 0));
        m.forget("u1");
        m.forget("u3");
        m.forget("nobody");
        assert_eq!(m.gauges(), (1, 0));
    }

    #[test]
    fn due_reconciles_are_taken_once_per_namespace() {
        let m = Memory::default();
        let now = Instant::now();
        let due = |ns: &str, name: &str, at: Instant| Some((at, ns.into(), name.into()));
        m.update("u1", |o| o.due = due("a", "one", now));
        m.update("u2", |o| o.due = due("b", "two", now));
        m.update("u3", |o| {
            o.due = due("a", "later", now + Duration::from_secs(60))
        });
        assert_eq!(m.take_due(Some("a"), now), vec![("a".into(), "one".into())]);
        assert_eq!(m.take_due(Some("a"), now), vec![], "taken once");
        assert_eq!(m.take_due(None, now), vec![("b".into(), "two".into())]);
        assert_eq!(
            m.take_due(None, now + Duration::from_secs(60)),
            vec![("a".into(), "later".into())]
        );
    }

    fn agent(rv: &str) -> LatticeAgent {
        let mut a = LatticeAgent::new("a", Default::default());
        a.metadata.resource_version = Some(rv.into());
        a
    }

    #[test]
    fn an_overlay_goes_once_the_cache_caught_up_or_its_ttl_passed() {
        let m = Memory::default();
        let ttl = Duration::from_secs(60);
        // Status written 1 → 2: the cache at 1 is stale, the overlay wins and stays.
        m.wrote_resource("u", Some("1".into()), agent("2"), || None);
        let got = m.freshest_resource("u", || agent("1"), ttl);
        assert_eq!(got.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(m.overlays(), 1);
        // The cache shows 2: caught up, the overlay is dropped.
        let got = m.freshest_resource("u", || agent("2"), ttl);
        assert_eq!(got.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(m.overlays(), 0);
        // A sweep keeps young overlays and drops old ones; the rest of the memory stays.
        m.wrote_resource("u", Some("2".into()), agent("3"), || None);
        m.wrote_secret("u", None, secret("s", "4"));
        m.update("u", |o| o.failures = 3);
        assert_eq!(m.sweep(ttl), 0);
        assert_eq!(m.overlays(), 2);
        assert_eq!(m.sweep(Duration::ZERO), 2);
        assert_eq!(m.overlays(), 0);
        assert_eq!(m.get("u").failures, 3);
        // The watch delivers a replaced version: kept; the written one: dropped.
        m.wrote_resource("u", Some("3".into()), agent("4"), || None);
        m.cached_resource("u", Some("3"));
        assert_eq!(m.overlays(), 1);
        m.cached_resource("u", Some("4"));
        assert_eq!(m.overlays(), 0);
        m.wrote_secret("u", Some("7".into()), secret("s", "8"));
        assert!(!m.cached_secret("u", &secret("other", "8")));
        assert!(!m.cached_secret("u", &secret("s", "7")));
        assert_eq!(m.overlays(), 1);
        assert!(m.cached_secret("u", &secret("s", "8")), "its own write");
        assert_eq!(m.overlays(), 0);
        m.wrote_secret("u", Some("8".into()), secret("s", "9"));
        assert!(
            !m.cached_secret("u", &secret("s", "10")),
            "a newer version: not its own"
        );
        assert_eq!(m.overlays(), 0);
        // The Secret being created, delivered before its create returned (no overlay yet): own
        // by content, once; the same Secret with anything else changed is not.
        let mut creating = secret("s", "");
        creating.data = Some(BTreeMap::from([(
            crate::secret::API_KEY_FIELD.to_owned(),
            ByteString(b"al_agent_example".to_vec()),
        )]));
        m.creating_secret("u", &creating);
        let mut delivered = crate::secret::cache_form(creating.clone());
        delivered.metadata.resource_version = Some("11".into());
        delivered.metadata.uid = Some("server-set".into());
        let mut edited = delivered.clone();
        edited
            .metadata
            .labels
            .get_or_insert_default()
            .insert("x".into(), "y".into());
        assert!(!m.cached_secret("u", &edited), "a different Secret");
        assert!(m.cached_secret("u", &delivered), "the one being created");
        assert!(!m.cached_secret("u", &delivered), "recognised once");
        // Its reconcile then records the write the watch delivered already: no overlay, which
        // would otherwise hide the Secret's deletion until its TTL.
        m.wrote_secret("u", None, delivered.clone());
        assert_eq!(m.overlays(), 0);
        assert_eq!(m.get("u").creating_secret, None);
        // Delivered after the overlay was recorded: the overlay's own-write check applies.
        m.creating_secret("u", &creating);
        m.wrote_secret("u", None, delivered.clone());
        assert_eq!(m.overlays(), 1);
        assert!(m.cached_secret("u", &delivered), "its own write");
        assert_eq!(m.overlays(), 0);
        // The cache holds the written version already: no overlay, and an older one goes.
        m.wrote_resource("u", Some("10".into()), agent("11"), || None);
        assert_eq!(m.overlays(), 1);
        m.wrote_resource("u", Some("11".into()), agent("12"), || Some("12".into()));
        assert_eq!(m.overlays(), 0);
        // The watch catching up between the overlay lookup and the cache read (the reconcile
        // holds a copy read before the store moved on): the overlay found first still wins.
        m.wrote_resource("u", Some("6".into()), agent("7"), || None);
        let got = m.freshest_resource(
            "u",
            || {
                m.cached_resource("u", Some("7"));
                agent("6")
            },
            ttl,
        );
        assert_eq!(got.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(m.overlays(), 0);
        // Past its TTL an overlay would not have been preferred anyway.
        m.wrote_resource("u", Some("3".into()), agent("5"), || None);
        let got = m.freshest_resource("u", || agent("3"), Duration::ZERO);
        assert_eq!(got.metadata.resource_version.as_deref(), Some("3"));
    }
}
