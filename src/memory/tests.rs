//! The per-object memory: overlays, seen content, scheduling, and its ordering rules.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::secret::{API_KEY_FIELD, cache_form, fingerprint};

const TTL: Duration = Duration::from_secs(60);

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

fn agent(rv: &str) -> LatticeAgent {
    let mut a = LatticeAgent::new("a", Default::default());
    a.metadata.resource_version = Some(rv.into());
    a
}

fn rv_of(s: Option<Secret>) -> Option<String> {
    s.and_then(|s| s.metadata.resource_version)
}

/// A cache that holds nothing (asked by `wrote_*`).
fn empty(_: &str) -> bool {
    false
}

#[test]
fn a_stale_cache_is_overlaid_until_it_catches_up() {
    let m = Memory::default();
    // Nothing remembered: the cache wins.
    assert_eq!(m.freshest_secret("u", "s", || None, TTL), None);
    // Created "s" at rv 5: a cache without it is stale.
    m.wrote_secret("u", None, secret("s", "5"), empty);
    assert_eq!(
        rv_of(m.freshest_secret("u", "s", || None, TTL)),
        Some("5".into())
    );
    // Patched 5 → 6: the cache at 5 is stale.
    m.wrote_secret("u", Some("5".into()), secret("s", "6"), empty);
    let got = m.freshest_secret("u", "s", || Some(secret("s", "5")), TTL);
    assert_eq!(rv_of(got), Some("6".into()));
    // The cache moved past: it wins and the overlay is dropped.
    let got = m.freshest_secret("u", "s", || Some(secret("s", "9")), TTL);
    assert_eq!(rv_of(got), Some("9".into()));
    assert_eq!(m.overlays(), 0);
    // Another Secret name: never overlaid.
    m.wrote_secret("u", None, secret("s", "10"), empty);
    assert_eq!(m.freshest_secret("u", "other", || None, TTL), None);
}

#[test]
fn gauges_follow_the_entries() {
    let m = Memory::default();
    let settle = |uid: &str, managed: bool, rotating: bool| {
        m.settled(
            uid,
            Settlement {
                managed,
                rotating,
                ..Default::default()
            },
        )
    };
    settle("u1", true, false);
    settle("u2", true, true);
    m.failed("u3");
    assert_eq!(m.gauges(), (2, 1));
    settle("u2", true, false);
    settle("u1", true, false);
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
    let due = |uid: &str, ns: &str, name: &str, at: Instant| {
        m.settled(
            uid,
            Settlement {
                succeeded: Some(Some(at)),
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            },
        )
    };
    due("u1", "a", "one", now);
    due("u2", "b", "two", now);
    due("u3", "a", "later", now + Duration::from_secs(60));
    assert_eq!(m.take_due(Some("a"), now), vec![("a".into(), "one".into())]);
    assert_eq!(m.take_due(Some("a"), now), vec![], "taken once");
    assert_eq!(m.take_due(None, now), vec![("b".into(), "two".into())]);
    assert_eq!(
        m.take_due(None, now + Duration::from_secs(60)),
        vec![("a".into(), "later".into())]
    );
    // A reconcile that starts replaces the one that was due; a failure keeps the count.
    due("u1", "a", "one", now);
    m.begin("u1");
    assert_eq!(m.take_due(None, now), vec![]);
    assert_eq!(m.failed("u1"), 1);
    assert_eq!(m.failed("u1"), 2);
    due("u1", "a", "one", now);
    assert_eq!(m.failures("u1"), 0, "a success resets the failures");
}

#[test]
fn an_overlay_goes_once_the_cache_caught_up_or_its_ttl_passed() {
    let m = Memory::default();
    // Status written 1 → 2: the cache at 1 is stale, the overlay wins and stays.
    m.wrote_resource("u", Some("1".into()), agent("2"), || None);
    let got = m.freshest_resource("u", || agent("1"), TTL);
    assert_eq!(got.metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(m.overlays(), 1);
    // The cache shows 2: caught up, the overlay is dropped.
    let got = m.freshest_resource("u", || agent("2"), TTL);
    assert_eq!(got.metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(m.overlays(), 0);
    // A sweep keeps young overlays and drops old ones; the rest of the memory stays.
    m.wrote_resource("u", Some("2".into()), agent("3"), || None);
    m.wrote_secret("u", None, secret("s", "4"), empty);
    m.failed("u");
    assert_eq!(m.sweep(TTL), 0);
    assert_eq!(m.overlays(), 2);
    assert_eq!(m.sweep(Duration::ZERO), 2);
    assert_eq!(m.overlays(), 0);
    assert_eq!(m.failures("u"), 1);
    // The watch stores a replaced version: kept; the written one: dropped.
    m.wrote_resource("u", Some("3".into()), agent("4"), || None);
    m.resource_stored("u", Some("3"));
    assert_eq!(m.overlays(), 1);
    m.resource_stored("u", Some("4"));
    assert_eq!(m.overlays(), 0);
    m.wrote_secret("u", Some("7".into()), secret("s", "8"), empty);
    m.secret_stored("u", "other", Some("8"));
    m.secret_stored("u", "s", Some("7"));
    assert_eq!(m.overlays(), 1, "another Secret, or a replaced version");
    m.secret_stored("u", "s", Some("8"));
    assert_eq!(m.overlays(), 0);
    m.wrote_secret("u", Some("8".into()), secret("s", "9"), empty);
    m.secret_stored("u", "s", Some("10"));
    assert_eq!(m.overlays(), 0, "a newer version");
    // The cache holds the written version already: no overlay, and an older one goes.
    m.wrote_resource("u", Some("10".into()), agent("11"), || None);
    assert_eq!(m.overlays(), 1);
    m.wrote_resource("u", Some("11".into()), agent("12"), || Some("12".into()));
    assert_eq!(m.overlays(), 0);
    m.wrote_secret("u", None, secret("s", "13"), |rv| rv == "13");
    assert_eq!(m.overlays(), 0, "the watch stored the created Secret first");
    // A refused Secret write drops its overlay.
    m.wrote_secret("u", Some("13".into()), secret("s", "14"), empty);
    m.secret_write_refused("u");
    assert_eq!(m.overlays(), 0);
    // Past its TTL an overlay would not have been preferred anyway.
    m.wrote_resource("u", Some("3".into()), agent("5"), || None);
    let got = m.freshest_resource("u", || agent("3"), Duration::ZERO);
    assert_eq!(got.metadata.resource_version.as_deref(), Some("3"));
}

/// Ordering rule "overlay first, cache second": the watch catches up between the overlay lookup
/// and the cache read (the reconcile would otherwise hold a copy read before the store moved on,
/// and find the overlay already gone). Swapping the lookup and the read fails both halves.
#[test]
fn freshest_reads_the_overlay_before_the_cache() {
    let m = Memory::default();
    m.wrote_resource("u", Some("6".into()), agent("7"), || None);
    let got = m.freshest_resource(
        "u",
        || {
            // The store moves to 7 and the watch drops the overlay — after a copy of 6 was read.
            m.resource_stored("u", Some("7"));
            agent("6")
        },
        TTL,
    );
    assert_eq!(got.metadata.resource_version.as_deref(), Some("7"));

    m.wrote_secret("u", Some("6".into()), secret("s", "7"), empty);
    let got = m.freshest_secret(
        "u",
        "s",
        || {
            m.secret_stored("u", "s", Some("7"));
            Some(secret("s", "6"))
        },
        TTL,
    );
    assert_eq!(rv_of(got), Some("7".into()));
    assert_eq!(m.overlays(), 0);
}

/// Ordering rule "ask the cache under the lock": the question is asked while the memory's lock
/// is held, so a watch that updated its cache and then waits for the lock drops the overlay
/// after it was pushed. Asking before taking the lock fails this test.
#[test]
fn a_write_asks_the_cache_under_the_lock() {
    let m = Memory::default();
    let mut asked = 0;
    m.wrote_resource("u", None, agent("2"), || {
        asked += 1;
        assert!(
            !m.unlocked(),
            "the resource's cache is asked under the lock"
        );
        None
    });
    m.wrote_secret("u", None, secret("s", "3"), |_| {
        asked += 1;
        assert!(!m.unlocked(), "the Secret cache is asked under the lock");
        false
    });
    assert_eq!(asked, 2);
}

#[test]
fn seen_content_starts_no_reconcile_whoever_wrote_it() {
    let m = Memory::default();
    // The resource: the first event, then only changes.
    assert!(m.resource_event("u", 1));
    assert!(!m.resource_event("u", 1), "a status-only update");
    assert!(m.resource_event("u", 2));
    // Announced before the finalizer patch: its event starts nothing, a later change does.
    m.before_resource_write("u", 3);
    assert!(!m.resource_event("u", 3));
    assert!(m.resource_event("u", 4));

    // The Secret being created, delivered before its create returned: the operator's own.
    let mut creating = secret("s", "");
    creating.data = Some(BTreeMap::from([(
        API_KEY_FIELD.to_owned(),
        ByteString(b"al_agent_example".to_vec()),
    )]));
    m.before_secret_write("u", fingerprint(&creating));
    let mut delivered = cache_form(creating.clone());
    delivered.metadata.resource_version = Some("11".into());
    delivered.metadata.uid = Some("server-set".into());
    let mut edited = delivered.clone();
    edited
        .metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    assert!(
        !m.secret_event("u", fingerprint(&delivered)),
        "its own write"
    );
    assert!(m.secret_event("u", fingerprint(&edited)), "an edit");
    assert!(m.secret_event("u", fingerprint(&delivered)), "edited back");
    assert!(!m.secret_event("u", fingerprint(&delivered)), "seen");
    // Not a resource of this process: every event is reconciled (nothing is remembered).
    assert!(m.secret_event("stranger", 7));
    assert!(m.secret_event("stranger", 7));
    // A re-list is remembered as seen.
    m.secret_listed("u", fingerprint(&edited));
    assert!(!m.secret_event("u", fingerprint(&edited)));
}

#[test]
fn a_key_change_during_a_reconcile_is_never_lost() {
    let waiting = || Settlement {
        waiting_for_service_key: true,
        namespace: "payments".into(),
        name: "bot".into(),
        ..Default::default()
    };
    // The change lands while the reconcile runs, before its mark: the wake-up finds nobody, so
    // `settled` must say the key changed meanwhile.
    let m = Memory::default();
    m.begin("u1");
    assert!(m.service_key_changed().is_empty());
    assert!(
        m.settled("u1", waiting()),
        "the change during the reconcile is reported"
    );
    // The change lands after the mark: the wake-up finds the resource, `settled` said nothing.
    let m = Memory::default();
    m.begin("u1");
    assert!(!m.settled("u1", waiting()));
    assert_eq!(
        m.service_key_changed(),
        [("payments".to_owned(), "bot".to_owned())]
    );
    // A change before the reconcile began is not "meanwhile" (the reconcile read the new key).
    let m = Memory::default();
    m.service_key_changed();
    m.begin("u1");
    assert!(!m.settled("u1", waiting()));
    // Nor is a change during a reconcile that does not wait for the key.
    let m = Memory::default();
    m.begin("u1");
    m.service_key_changed();
    assert!(!m.settled("u1", Settlement::default()));
}

/// The entry keeps one `namespace/name` for the sweeper and the wake-up: the last settlement's,
/// kept by a failed settlement, and a mark cleared by the next settlement.
#[test]
fn due_and_waiting_name_the_last_settled_object() {
    let m = Memory::default();
    let now = Instant::now();
    let settle = |name: &str, waiting: bool, succeeded: Option<Option<Instant>>| {
        m.settled(
            "u1",
            Settlement {
                waiting_for_service_key: waiting,
                succeeded,
                namespace: "ns".into(),
                name: name.into(),
                ..Default::default()
            },
        )
    };
    settle("one", false, Some(Some(now)));
    // A failure waiting for the key keeps the due time.
    settle("one", true, None);
    assert_eq!(
        m.service_key_changed(),
        [("ns".to_owned(), "one".to_owned())]
    );
    assert_eq!(m.take_due(None, now), [("ns".to_owned(), "one".to_owned())]);
    // Settled under another name (the same uid): both name the new one.
    settle("two", true, Some(Some(now)));
    assert_eq!(
        m.service_key_changed(),
        [("ns".to_owned(), "two".to_owned())]
    );
    assert_eq!(
        m.take_due(Some("ns"), now),
        [("ns".to_owned(), "two".to_owned())]
    );
    // Settled without waiting: the wake-up finds nobody; nothing due.
    settle("two", false, Some(None));
    assert!(m.service_key_changed().is_empty());
    assert!(m.take_due(None, now).is_empty());
    // An entry never settled is neither due nor waiting.
    m.begin("u2");
    assert!(m.service_key_changed().is_empty());
    assert!(m.take_due(None, now).is_empty());
}

/// An overlay keeps what the cache keeps (`crd::keep_read_metadata`): a reconcile sees
/// the same metadata whichever it reads, and the overlay of an applied resource is not twice its
/// size.
#[test]
fn an_overlay_keeps_the_metadata_the_cache_keeps() {
    use crate::crd::LAST_APPLIED_ANNOTATION;
    let m = Memory::default();
    let mut written = agent("2");
    written.metadata.annotations = Some(BTreeMap::from([
        (
            LAST_APPLIED_ANNOTATION.to_owned(),
            "{\"spec\":{}}".to_owned(),
        ),
        ("agentlattice.io/rotate".to_owned(), "1".to_owned()),
    ]));
    written.metadata.managed_fields = Some(vec![Default::default()]);
    m.wrote_resource("u", Some("1".into()), written, || None);
    let got = m.freshest_resource("u", || agent("1"), TTL);
    assert_eq!(
        got.metadata.resource_version.as_deref(),
        Some("2"),
        "the overlay"
    );
    assert_eq!(got.metadata.managed_fields, None);
    assert_eq!(
        got.metadata.annotations,
        Some(BTreeMap::from([(
            "agentlattice.io/rotate".to_owned(),
            "1".to_owned()
        )]))
    );
}
