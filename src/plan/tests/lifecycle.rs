//! Rotation (§3.2), key retirement (§3.1 step 10), the schedule with its jitter, and requeue
//! times, on whole reconciles.

use super::world::*;
use crate::crd::*;
use crate::plan::schedule::{self, Retirement, RevokeWhy, WaitWhy};
use crate::plan::*;
use crate::secret;

/// A world right after a rotation by annotation. The resync interval is an hour so that the
/// retirement steps are not mixed with drift reads.
fn rotated() -> (World, String, String) {
    let mut w = World::registered();
    w.settings.resync_interval = hours(1);
    let old = w.status().active_key.expect("key").id;
    w.annotate(ROTATE_ANNOTATION, "2026-11-23");
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "FetchAgent",
            "WriteSecret",
            "MintKey",
            "WriteSecret",
            "WriteStatus",
            "DeprecateKey",
            "WriteStatus"
        ]
    );
    assert_eq!(run.event_reasons(), ["KeyRotated"]);
    // The intent went on the Secret's record (it survives a lost status) and was lifted by the
    // write that delivered the new key.
    let Effect::WriteSecret(intent) = &run.actions[1] else {
        panic!("intent expected");
    };
    assert_eq!(intent.purpose, WritePurpose::Intent);
    assert_eq!(intent.key, KeyWrite::Keep);
    assert!(intent.desired.record.mint_started_at.is_some());
    let Effect::WriteSecret(delivery) = &run.actions[3] else {
        panic!("delivery expected");
    };
    assert_eq!(delivery.desired.record.mint_started_at, None);
    let agent = w.status().agent_id.expect("agent");
    (w, agent, old)
}

#[test]
fn the_rotate_annotation_rotates_once_in_the_safe_order() {
    let (mut w, agent, old) = rotated();
    // Order: intent in status, then mint, then the Secret, and only then the old key is touched.
    let status = w.status();
    let new = status.active_key.clone().expect("new key");
    assert_ne!(new.id, old);
    assert_eq!(status.handled.rotate.as_deref(), Some("2026-11-23"));
    assert_eq!(
        w.secret_annotation(secret::HANDLED_ROTATE_ANNOTATION)
            .as_deref(),
        Some("2026-11-23")
    );
    assert_eq!(status.mint_started_at, None);
    assert_eq!(status.last_rotation_time, Some(new.created_at));
    assert_eq!(status.retiring_keys.len(), 1);
    let retiring = &status.retiring_keys[0];
    assert_eq!(retiring.id, old);
    assert!(!retiring.immediate);
    assert_eq!(
        retiring.revoke_after,
        schedule::add(retiring.retiring_since, mins(10))
    );
    assert_eq!(
        retiring.revoke_by,
        schedule::add(retiring.retiring_since, hours(24))
    );
    assert!(retiring.deprecated_at.is_some());
    assert_eq!(
        w.al.key(&agent, &old).map(|k| k.status),
        Some(KeyStatus::Deprecated),
        "the old key still works"
    );
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "WaitingForGracePeriod".into()))
    );
    w.check_invariant().expect("invariant");
    // The same value again asks for nothing.
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    // Requeued at the end of the grace period.
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
}

#[test]
fn an_old_key_unused_for_the_grace_period_is_revoked_after_it() {
    let (mut w, agent, old) = rotated();
    w.advance(mins(9));
    assert!(w.run().actions.is_empty(), "within the grace period");
    w.advance(mins(1));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FetchKeys", "RevokeKey", "WriteSecret", "WriteStatus"]
    );
    assert_eq!(run.event_reasons(), ["KeyRevoked"]);
    assert_eq!(
        w.al.key(&agent, &old).map(|k| k.status),
        Some(KeyStatus::Revoked)
    );
    assert!(w.status().retiring_keys.is_empty());
    assert_eq!(w.secret_annotation(secret::RETIRING_KEYS_ANNOTATION), None);
    assert_eq!(
        w.condition("Rotating"),
        Some(("False".into(), "Idle".into()))
    );
    w.check_invariant().expect("invariant");
    assert!(w.run().actions.is_empty());
}

#[test]
fn an_old_key_still_in_use_is_kept_until_unused_for_a_grace_period() {
    let (mut w, agent, old) = rotated();
    let old_plain =
        w.al.agent(&agent)
            .keys
            .iter()
            .find(|(k, _)| k.id == old)
            .map(|(_, p)| p.clone())
            .expect("old key");
    // A pod that has not reloaded yet keeps using the old key.
    w.advance(mins(8));
    let now = w.now;
    assert!(w.al.use_key(&old_plain, now));
    let used_at = w.now;
    w.advance(mins(3));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchKeys", "WriteStatus"]);
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "WaitingForOldKeyUnused".into()))
    );
    let message = w.status().conditions[2].message.clone();
    assert!(message.contains(&used_at.to_string()), "{message}");
    assert_eq!(
        run.done().requeue,
        Requeue::After(mins(7)),
        "at last use + grace"
    );
    // A reconcile that does not read the keys keeps the message (no flapping).
    assert!(w.run().actions.is_empty());
    // Unused for the whole grace period: revoked.
    w.advance(mins(7));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FetchKeys", "RevokeKey", "WriteSecret", "WriteStatus"]
    );
    assert_eq!(
        w.al.key(&agent, &old).map(|k| k.status),
        Some(KeyStatus::Revoked)
    );
}

#[test]
fn an_old_key_is_revoked_at_the_max_grace_period_even_if_used() {
    let (mut w, agent, old) = rotated();
    let old_plain =
        w.al.agent(&agent)
            .keys
            .iter()
            .find(|(k, _)| k.id == old)
            .map(|(_, p)| p.clone())
            .expect("old key");
    for _ in 0..30 {
        w.advance(hours(1));
        let now = w.now;
        w.al.use_key(&old_plain, now);
        w.run();
        if w.al.key(&agent, &old).map(|k| k.status) == Some(KeyStatus::Revoked) {
            break;
        }
    }
    let revoked_at =
        w.al.key(&agent, &old)
            .and_then(|k| k.revoked_at)
            .expect("revoked");
    let since = t0();
    assert!(revoked_at >= schedule::add(since, hours(24)));
    assert!(revoked_at < schedule::add(since, hours(25)));
    w.check_invariant().expect("invariant");
}

#[test]
fn a_retiring_key_revoked_elsewhere_is_forgotten() {
    let (mut w, agent, old) = rotated();
    let now = w.now;
    if let Some((k, _)) =
        w.al.agent_mut(&agent)
            .keys
            .iter_mut()
            .find(|(k, _)| k.id == old)
    {
        k.status = KeyStatus::Revoked;
        k.revoked_at = Some(now);
    }
    w.advance(mins(11));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FetchKeys", "WriteSecret", "WriteStatus"],
        "no RevokeKey"
    );
    assert!(w.status().retiring_keys.is_empty());
    w.check_invariant().expect("invariant");
}

#[test]
fn the_compromised_annotation_revokes_the_old_key_at_once() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("agent");
    let old = w.status().active_key.expect("key").id;
    w.annotate(COMPROMISED_ANNOTATION, "leaked-in-ci");
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "FetchAgent",
            "WriteSecret",
            "MintKey",
            "WriteSecret",
            "WriteStatus",
            "RevokeKey",
            "WriteSecret",
            "WriteStatus"
        ]
    );
    assert_eq!(run.event_reasons(), ["KeyRotated", "KeyRevoked"]);
    assert_eq!(
        w.al.key(&agent, &old).map(|k| k.status),
        Some(KeyStatus::Revoked)
    );
    let status = w.status();
    assert!(status.retiring_keys.is_empty());
    assert_eq!(status.handled.compromised.as_deref(), Some("leaked-in-ci"));
    w.check_invariant().expect("invariant");
    assert!(w.run().actions.is_empty());
}

#[test]
fn compromised_during_a_rotation_revokes_every_old_key() {
    let (mut w, agent, first) = rotated();
    let second = w.status().active_key.expect("key").id;
    w.annotate(COMPROMISED_ANNOTATION, "x");
    let run = w.run();
    assert_eq!(
        run.kinds().iter().filter(|k| **k == "RevokeKey").count(),
        2,
        "{:?}",
        run.kinds()
    );
    for key in [&first, &second] {
        assert_eq!(
            w.al.key(&agent, key).map(|k| k.status),
            Some(KeyStatus::Revoked)
        );
    }
    w.check_invariant().expect("invariant");
}

#[test]
fn a_rotation_without_a_prior_drift_read_due_skips_the_read() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "a");
    w.run();
    w.advance(mins(11));
    w.run(); // revokes the old key
    // A second rotation within the resync of the last read still reads first: a pending
    // annotation makes the drift read due (the agent may have been revoked meanwhile).
    w.annotate(ROTATE_ANNOTATION, "b");
    let run = w.run();
    assert_eq!(run.kinds()[0], "FetchAgent");
}

#[test]
fn jitter_is_bounded_deterministic_and_spread() {
    let interval = hours(720);
    assert_eq!(
        schedule::max_jitter(interval),
        hours(1),
        "capped at one hour"
    );
    assert_eq!(
        schedule::max_jitter(hours(2)),
        mins(12),
        "10% of the interval"
    );
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        let uid = format!("uid-{i}");
        let j = schedule::jitter(&uid, "key-1", interval);
        assert!(j >= jiff::SignedDuration::ZERO && j <= hours(1), "{j:?}");
        assert_eq!(
            j,
            schedule::jitter(&uid, "key-1", interval),
            "deterministic"
        );
        seen.insert(j.as_millis());
    }
    assert!(seen.len() > 190, "agents created together spread out");
    assert_ne!(
        schedule::jitter("uid-1", "key-1", interval),
        schedule::jitter("uid-1", "key-2", interval),
        "each key gets its own offset"
    );
    assert_eq!(
        schedule::jitter("u", "k", jiff::SignedDuration::ZERO),
        jiff::SignedDuration::ZERO
    );
}

#[test]
fn scheduled_rotation_happens_within_the_jitter_window() {
    let mut w = World::default();
    w.res_mut().spec.rotation.interval = Some("30d".into());
    w.run();
    let key = w.status().active_key.expect("key");
    let next = w.status().next_rotation_time.expect("scheduled");
    assert!(next >= schedule::add(key.created_at, hours(720)));
    assert!(next <= schedule::add(key.created_at, hours(721)));
    assert_eq!(
        next,
        schedule::next_rotation(key.created_at, hours(720), UID, &key.id)
    );
    // Requeued for the resync, never later than the schedule.
    let run = w.run();
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
    // Just before: nothing.
    w.now = next
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .expect("time");
    w.last_remote_check = Some(w.now);
    let run = w.run();
    assert!(run.actions.is_empty());
    assert_eq!(
        run.done().requeue,
        Requeue::After(jiff::SignedDuration::from_secs(1))
    );
    // At the time: rotation.
    w.now = next;
    let run = w.run();
    assert!(run.kinds().contains(&"MintKey"), "{:?}", run.kinds());
    assert_eq!(run.event_reasons(), ["KeyRotated"]);
    let status = w.status();
    let new = status.active_key.expect("key");
    assert_ne!(new.id, key.id);
    assert_eq!(
        status.next_rotation_time,
        Some(schedule::next_rotation(
            new.created_at,
            hours(720),
            UID,
            &new.id
        ))
    );
    w.check_invariant().expect("invariant");
}

#[test]
fn scheduled_rotation_waits_while_keys_retire_or_the_agent_is_suspended() {
    // An old key kept alive by use past the scheduled time: no new rotation until it is gone.
    let (mut w, agent, old) = rotated();
    w.res_mut().spec.rotation.interval = Some("1h".into());
    w.res_mut().spec.rotation.max_grace_period = "3h".into();
    w.run();
    let old_plain =
        w.al.agent(&agent)
            .keys
            .iter()
            .find(|(k, _)| k.id == old)
            .map(|(_, p)| p.clone())
            .expect("old key");
    let due = w.status().next_rotation_time.expect("scheduled");
    while w.now < schedule::add(due, mins(20)) {
        w.advance(mins(5));
        let now = w.now;
        w.al.use_key(&old_plain, now);
        let run = w.run();
        assert!(!run.kinds().contains(&"MintKey"), "{:?}", run.kinds());
    }
    assert_eq!(w.status().retiring_keys.len(), 1);
    // Once the old key is unused for the grace period and revoked, the overdue rotation runs.
    w.advance(mins(11));
    let run = w.run();
    assert!(run.kinds().contains(&"RevokeKey"), "{:?}", run.kinds());
    assert!(run.kinds().contains(&"MintKey"), "{:?}", run.kinds());
    w.check_invariant().expect("invariant");

    // Suspended agents are not rotated on schedule.
    let mut w = World::default();
    w.res_mut().spec.rotation.interval = Some("1h".into());
    w.res_mut().spec.suspend = true;
    w.run();
    w.advance(hours(3));
    let run = w.run();
    assert!(!run.kinds().contains(&"MintKey"), "{:?}", run.kinds());
    assert_eq!(w.ready(), Some(("False".into(), "Suspended".into())));
}

#[test]
fn retirement_rules() {
    let since = t0();
    let g = mins(10);
    let m = hours(24);
    let at = |d: jiff::SignedDuration| schedule::add(since, d);
    type Usage = Option<Option<jiff::Timestamp>>;
    let cases: Vec<(&str, jiff::Timestamp, bool, Usage, Retirement)> = vec![
        (
            "immediate",
            at(mins(0)),
            true,
            None,
            Retirement::Revoke(RevokeWhy::Immediate),
        ),
        (
            "in grace",
            at(mins(5)),
            false,
            Some(None),
            Retirement::Wait {
                until: at(g),
                why: WaitWhy::GracePeriod,
            },
        ),
        (
            "grace over, usage unknown",
            at(g),
            false,
            None,
            Retirement::NeedUsage,
        ),
        (
            "grace over, never used",
            at(g),
            false,
            Some(None),
            Retirement::Revoke(RevokeWhy::Unused),
        ),
        (
            "grace over, used before the switch",
            at(mins(11)),
            false,
            Some(Some(at(mins(0)))),
            Retirement::Revoke(RevokeWhy::Unused),
        ),
        (
            "grace over, used recently",
            at(mins(15)),
            false,
            Some(Some(at(mins(12)))),
            Retirement::Wait {
                until: at(mins(22)),
                why: WaitWhy::OldKeyUsed {
                    last_used: at(mins(12)),
                },
            },
        ),
        (
            "used right before max grace: wait is capped",
            at(hours(24) - mins(1)),
            false,
            Some(Some(at(hours(24) - mins(2)))),
            Retirement::Wait {
                until: at(m),
                why: WaitWhy::OldKeyUsed {
                    last_used: at(hours(24) - mins(2)),
                },
            },
        ),
        (
            "max grace",
            at(m),
            false,
            Some(Some(at(m))),
            Retirement::Revoke(RevokeWhy::MaxGrace),
        ),
        (
            "max grace, usage unknown",
            at(m),
            false,
            None,
            Retirement::Revoke(RevokeWhy::MaxGrace),
        ),
    ];
    for (name, now, immediate, usage, expected) in cases {
        assert_eq!(
            schedule::retirement(now, since, immediate, g, m, usage),
            expected,
            "{name}"
        );
    }
}

#[test]
fn requeue_is_the_earliest_deadline() {
    // Rotation schedule earlier than the resync.
    let mut w = World::default();
    w.res_mut().spec.rotation.interval = Some("15m".into());
    w.run();
    let next = w.status().next_rotation_time.expect("scheduled");
    w.advance(mins(9));
    w.last_remote_check = Some(w.now);
    let run = w.run();
    assert_eq!(
        run.done().requeue,
        Requeue::After(w.now.duration_until(next).min(mins(10)))
    );
    // Retirement deadline earlier than the resync.
    let (mut w, _, _) = rotated();
    w.advance(mins(4));
    let run = w.run();
    assert_eq!(run.done().requeue, Requeue::After(mins(6)));
}

#[test]
fn the_workload_never_sees_a_revoked_key_during_rotation() {
    // After every reconcile of a rotation, the key in the Secret works.
    let (mut w, _, _) = rotated();
    for _ in 0..10 {
        assert!(w.workload_uses_key(), "the Secret holds a live key");
        w.advance(mins(3));
        w.run();
    }
    w.check_invariant().expect("invariant");
}
