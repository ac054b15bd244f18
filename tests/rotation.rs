//! Behaviour 3 of the issue against kube-sim and the emulator: rotation on the `rotate`
//! annotation (exactly once per value), on schedule (with jitter) and on `compromised`, in the
//! order mint → Secret → status → deprecate → revoke, with workloads that see no authentication
//! failure.

mod support;

use std::time::Duration;

use agentlattice_emulator::KeyStatus;
use jiff::SignedDuration;
use lattice_operator::crd::{COMPROMISED_ANNOTATION, ROTATE_ANNOTATION};
use lattice_operator::plan::schedule;
use lattice_operator::secret::KEY_ID_ANNOTATION;
use support::*;

const TWO_SECOND_GRACE: &str = "  rotation: {gracePeriod: 2s, maxGracePeriod: 60s}";

const GRACE: SignedDuration = SignedDuration::from_secs(2);

/// The key id the Secret holds.
async fn key_in_secret(w: &World, secret: &str) -> Option<String> {
    annotations(&w.secret(secret).await?)
        .get(KEY_ID_ANNOTATION)
        .cloned()
}

fn key_of(w: &World, agent_id: &str, key_id: &str) -> agentlattice_emulator::Key {
    w.emu
        .snapshot()
        .agent(agent_id)
        .and_then(|a| a.key(key_id).cloned())
        .expect("the key exists at the emulator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_annotation_rotates_once_in_order_without_downtime() {
    let mut w = World::start("rotate").await;
    let trace = Trace::default();
    w.start_operator(Options {
        failpoints: Some(trace.failpoints()),
        ..Default::default()
    })
    .await;
    let (a, _) = w.ready(&bot("rotor", TWO_SECOND_GRACE)).await;
    let status = a.status.clone().unwrap();
    let agent_id = status.agent_id.clone().unwrap();
    let secret = status.secret_name.clone().unwrap();
    let old_key = status.active_key.clone().unwrap().id;

    // A workload that re-reads the Secret before every call (a mounted Secret file), and one
    // that keeps the key it read at start (a pod not yet restarted).
    let mounted = w.workload(&secret, true);
    let lagging = w.workload(&secret, false);
    wait_until("the workloads run", || async {
        key_of(&w, &agent_id, &old_key).last_used_at.map(|_| ())
    })
    .await;

    let mark = trace.len();
    let minted_before = w.emu.request_count("mint_key");
    w.annotate("rotor", ROTATE_ANNOTATION, "r1").await;
    let new_key = wait_until("the Secret holds a new key", || async {
        key_in_secret(&w, &secret).await.filter(|k| *k != old_key)
    })
    .await;

    // First the grace period runs (nothing can change before it ends)…
    w.wait_condition("rotor", "Rotating", "True", Some("WaitingForGracePeriod"))
        .await;
    // … then the old key is still used (by the lagging pod): it is kept, and status says why.
    let a = w
        .wait_condition("rotor", "Rotating", "True", Some("WaitingForOldKeyUnused"))
        .await;
    let status = a.status.clone().unwrap();
    assert_eq!(status.active_key.as_ref().map(|k| &k.id), Some(&new_key));
    assert_eq!(status.retiring_keys.len(), 1);
    assert_eq!(status.retiring_keys[0].id, old_key);
    assert_eq!(status.handled.rotate.as_deref(), Some("r1"));
    let old = key_of(&w, &agent_id, &old_key);
    assert_eq!(old.status, KeyStatus::Deprecated, "deprecated, not revoked");

    // The lagging pod is restarted (stops using the old key): the old key is revoked once it
    // has not been used for a whole grace period.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lagging = lagging.stop().await;
    assert_eq!(lagging.unauthorized, 0, "{lagging:?}");
    assert!(lagging.errors.is_empty(), "{lagging:?}");
    let last_used = key_of(&w, &agent_id, &old_key)
        .last_used_at
        .expect("the old key was used");
    let revoked_at = wait_until("the old key is revoked", || async {
        key_of(&w, &agent_id, &old_key).revoked_at
    })
    .await;
    let since = status.retiring_keys[0].retiring_since;
    assert!(
        revoked_at >= last_used + GRACE,
        "revoked at {revoked_at}, last used {last_used}"
    );
    assert!(
        revoked_at >= since + GRACE,
        "revoked at {revoked_at}, since {since}"
    );
    let (a, _) = w.wait_settled("rotor", true).await;
    let rotating = condition(&a, "Rotating").unwrap();
    assert_eq!(
        (rotating.status.as_str(), rotating.reason.as_str()),
        ("False", "Idle")
    );

    // The mounted workload switched keys without a single failure.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mounted = mounted.stop().await;
    assert_eq!(mounted.unauthorized, 0, "{mounted:?}");
    assert!(mounted.errors.is_empty(), "{mounted:?}");
    assert!(mounted.keys.contains(&old_key) && mounted.keys.contains(&new_key));

    // Exactly one rotation, in order: mint → Secret → status → deprecate → revoke.
    assert_eq!(w.emu.request_count("mint_key"), minted_before + 1);
    let actions = trace.actions_since(mark);
    let pos = |what: &str, after: usize| {
        actions
            .iter()
            .skip(after)
            .position(|a| a == what)
            .map(|p| p + after)
            .unwrap_or_else(|| panic!("no {what} after step {after}: {actions:?}"))
    };
    let mint = pos("MintKey", 0);
    let secret_write = pos("WriteSecret", mint);
    let status_write = pos("WriteStatus", secret_write);
    let deprecate = pos("DeprecateKey", status_write);
    let revoke = pos("RevokeKey", deprecate);
    assert!(
        !actions[..status_write]
            .iter()
            .any(|a| a == "DeprecateKey" || a == "RevokeKey"),
        "the old key was touched before status recorded the new one: {actions:?}"
    );
    assert!(mint < secret_write && deprecate < revoke);
    // Events are written after the call they report: wait for the last one before reading them.
    w.wait_event("rotor", "KeyRevoked").await;
    let reasons = w.event_reasons("rotor").await;
    let count = |r: &str| reasons.iter().filter(|x| *x == r).count();
    assert_eq!(count("KeyRotated"), 1, "{reasons:?}");
    assert_eq!(count("KeyRevoked"), 1, "{reasons:?}");

    // The same value again (re-applied, with an unrelated change that triggers a reconcile),
    // and again after a restart with empty memory: no rotation.
    let before = reconciles(&w.metrics());
    w.agents()
        .patch(
            "rotor",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {
                "labels": {"team": "payments"},
                "annotations": {ROTATE_ANNOTATION: "r1"},
            }})),
        )
        .await
        .unwrap();
    w.wait_reconciles_total(before + 1).await;
    w.stop_operator().await;
    w.start_operator(Options::default()).await;
    w.wait_reconciles_total(1).await;
    assert_eq!(w.emu.request_count("mint_key"), minted_before + 1);
    assert_eq!(key_in_secret(&w, &secret).await, Some(new_key.clone()));

    // A new value: exactly one more rotation.
    w.annotate("rotor", ROTATE_ANNOTATION, "r2").await;
    wait_until("a second rotation", || async {
        key_in_secret(&w, &secret).await.filter(|k| *k != new_key)
    })
    .await;
    w.wait_settled("rotor", true).await;
    assert_eq!(w.emu.request_count("mint_key"), minted_before + 2);
    w.check_invariant("rotor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_is_jittered_and_keeps_the_workload_working() {
    let mut w = World::start("schedule").await;
    w.start_operator(Options::default()).await;
    let interval = SignedDuration::from_secs(4);
    for name in ["sched-a", "sched-b"] {
        w.create(&bot(
            name,
            "  rotation: {interval: 4s, gracePeriod: 2s, maxGracePeriod: 3s}",
        ))
        .await;
    }
    let mut first = Vec::new();
    for name in ["sched-a", "sched-b"] {
        let (a, _) = w.wait_settled(name, false).await;
        let uid = a.metadata.uid.clone().unwrap();
        let status = a.status.unwrap();
        let key = status.active_key.clone().unwrap();
        // nextRotationTime = key creation + interval + the resource's own jitter (≤ 10%).
        let jitter = schedule::jitter(&uid, &key.id, interval);
        assert!(jitter >= SignedDuration::ZERO && jitter <= interval / 10);
        let next = status.next_rotation_time.expect("nextRotationTime");
        let expected = key.created_at + interval + jitter;
        assert_eq!(next, expected);
        first.push((name, status.secret_name.unwrap(), key.id, next));
    }

    // sched-a's workload re-reads its Secret; sched-b's keeps the key it started with, so its
    // old key stays in use and only maxGracePeriod ends it.
    let workload = w.workload(&first[0].1, true);
    let lagging = w.workload(&first[1].1, false);
    for (name, secret, old, due) in &first {
        let new = wait_until("a scheduled rotation", || async {
            key_in_secret(&w, secret).await.filter(|k| k != old)
        })
        .await;
        let a = w.get(name).await;
        let agent_id = a.status.unwrap().agent_id.unwrap();
        let created = key_of(&w, &agent_id, &new).created_at;
        // (AgentLattice keeps milliseconds.)
        assert!(
            created >= *due - SignedDuration::from_millis(1),
            "rotated at {created}, before it was due at {due}"
        );
        // The old key goes once unused for the grace period, or at maxGracePeriod.
        let revoked_at = wait_until("the old key is revoked", || async {
            key_of(&w, &agent_id, old).revoked_at
        })
        .await;
        let last_used = key_of(&w, &agent_id, old).last_used_at.expect("used");
        if *name == "sched-b" {
            assert!(
                revoked_at >= created + SignedDuration::from_secs(3),
                "revoked at {revoked_at} before maxGracePeriod (new key of {created})"
            );
            assert!(
                last_used + SignedDuration::from_secs(2) > revoked_at,
                "still in use within the grace period: only maxGracePeriod revokes it"
            );
            let revoked = w.wait_event(name, "KeyRevoked").await;
            let note = revoked.note.unwrap_or_default();
            assert!(note.contains("maximum grace period"), "{note}");
        } else {
            assert!(revoked_at >= last_used + SignedDuration::from_secs(2));
        }
        // Events are written after the call they report, so wait for them rather than read once.
        w.wait_event(name, "KeyRotated").await;
        w.wait_event(name, "KeyRevoked").await;
    }
    let report = workload.stop().await;
    assert_eq!(report.unauthorized, 0, "{report:?}");
    assert!(report.keys.len() >= 2, "{report:?}");
    let lagging = lagging.stop().await;
    assert_eq!(lagging.keys.len(), 1, "{lagging:?}");
    // Stop the schedule so that no rotation is under way while the invariant is checked.
    for name in ["sched-a", "sched-b"] {
        w.agents()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"spec": {"rotation": {"interval": null}}}),
                ),
            )
            .await
            .unwrap();
    }
    for name in ["sched-a", "sched-b"] {
        wait_until("the schedule is off", || async {
            let a = w.get(name).await;
            (a.status?.next_rotation_time.is_none()).then_some(())
        })
        .await;
        w.wait_settled(name, true).await;
        w.check_invariant(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compromised_revokes_the_old_key_at_once() {
    let mut w = World::start("compromised").await;
    w.start_operator(Options::default()).await;
    let (a, leaked) = w.ready(&bot("rotor", TWO_SECOND_GRACE)).await;
    let status = a.status.unwrap();
    let agent_id = status.agent_id.unwrap();
    let old_key = status.active_key.unwrap().id;
    w.whoami_with(&leaked).await.expect("the key works");

    w.annotate("rotor", COMPROMISED_ANNOTATION, "leaked-in-ci-log")
        .await;
    let secret_name = "rotor-agent-key".to_owned();
    wait_until("the Secret holds a new key", || async {
        key_in_secret(&w, &secret_name)
            .await
            .filter(|k| *k != old_key)
    })
    .await;
    let (a, secret) = w.wait_settled("rotor", true).await;
    let status = a.status.unwrap();
    assert_ne!(status.active_key.as_ref().unwrap().id, old_key);
    assert_eq!(
        status.handled.compromised.as_deref(),
        Some("leaked-in-ci-log")
    );
    // Revoked without any grace: the leaked key no longer authenticates, the new one does.
    assert_eq!(key_of(&w, &agent_id, &old_key).status, KeyStatus::Revoked);
    let err = w
        .whoami_with(&leaked)
        .await
        .expect_err("the leaked key is dead");
    assert_eq!(err.status(), Some(401));
    w.whoami_with(&secret).await.expect("the new key works");
    // Events are written after the call they report: wait for the last one before reading them.
    w.wait_event("rotor", "KeyRevoked").await;
    let reasons = w.event_reasons("rotor").await;
    assert!(reasons.iter().any(|r| r == "KeyRotated"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "KeyRevoked"), "{reasons:?}");
    assert_eq!(w.emu.request_count("mint_key"), 1);
    w.check_invariant("rotor").await;
}
