//! The workloads that read the key (design §3.1 step 9b, docs/workloads.md): restarts after a
//! rotation, the old key's retirement gated on them, the minimum interval between restarts, and
//! what status and events say meanwhile. Each test runs whole reconciles against the world, whose
//! workloads begin a rollout when restarted and finish it on `roll_out`.

use super::world::*;
use crate::crd::*;
use crate::plan::*;
use jiff::SignedDuration;

/// A registered world with one reader of the key, its restarts as given, and an hour between
/// drift reads so that the retirement steps are not mixed with them.
fn with_reader(reads: KeySource, restart_on_rotation: bool) -> World {
    let mut w = World::registered();
    w.settings.resync_interval = hours(1);
    w.edit_spec(|s| s.restart_on_rotation = restart_on_rotation);
    w.reader(WorkloadKind::Deployment, "web", reads);
    w.settle(3);
    w
}

/// Rotates by annotation; returns (the old key, the new key).
fn rotate(w: &mut World, value: &str) -> (String, String) {
    let old = w.status().active_key.expect("a key").id;
    w.annotate(ROTATE_ANNOTATION, value);
    w.run();
    let new = w.status().active_key.expect("a key").id;
    assert_ne!(old, new, "rotated");
    (old, new)
}

fn consumer(w: &World) -> ConsumerStatus {
    w.status().consumers.first().cloned().expect("one consumer")
}

fn rotating_message(w: &World) -> String {
    w.status()
        .conditions
        .iter()
        .find(|c| c.type_ == "Rotating")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn revoked(w: &World, key: &str) -> bool {
    let agent = w.status().agent_id.expect("agent");
    w.al.key(&agent, key).map(|k| k.status) == Some(KeyStatus::Revoked)
}

#[test]
fn before_any_rotation_every_reader_holds_the_key() {
    let w = with_reader(KeySource::Environment, true);
    let c = consumer(&w);
    assert_eq!(
        (
            c.kind.as_str(),
            c.name.as_str(),
            c.reads.as_str(),
            c.key.as_str()
        ),
        ("Deployment", "web", "Environment", "Current")
    );
    assert_eq!(c.restarted_for, None);
}

#[test]
fn an_environment_reader_is_restarted_after_the_new_key_is_written_and_the_old_key_waits_for_it() {
    let mut w = with_reader(KeySource::Environment, true);
    let old = w.status().active_key.expect("key").id;
    w.annotate(ROTATE_ANNOTATION, "r1");
    let run = w.run();
    let new = w.status().active_key.expect("key").id;
    let kinds = run.kinds();
    let restart = kinds
        .iter()
        .position(|k| *k == "RestartConsumer")
        .unwrap_or_else(|| panic!("no restart in {kinds:?}"));
    let delivered = run
        .actions
        .iter()
        .position(|a| matches!(a, Effect::WriteSecret(w) if w.key != KeyWrite::Keep))
        .expect("the new key is written");
    assert!(
        delivered < restart,
        "restarted only once the Secret holds the new key: {kinds:?}"
    );
    let Effect::RestartConsumer {
        kind, name, key_id, ..
    } = &run.actions[restart]
    else {
        unreachable!()
    };
    assert_eq!(
        (*kind, name.as_str(), key_id),
        (WorkloadKind::Deployment, "web", &new)
    );
    assert!(run.event_reasons().contains(&"RolloutRestartTriggered"));
    let c = consumer(&w);
    assert_eq!(c.key, "RollingOut");
    assert_eq!(c.restarted_for.as_deref(), Some(new.as_str()));
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "WaitingForConsumers".into()))
    );
    assert!(
        rotating_message(&w).contains("Deployment web (rolling out)"),
        "{}",
        rotating_message(&w)
    );

    // The grace period passes while the rollout runs: the old key stays.
    w.advance(mins(30));
    let run = w.run();
    assert!(!run.kinds().contains(&"RevokeKey"), "{:?}", run.kinds());
    assert!(!revoked(&w, &old));

    // The rollout finishes: the old key goes, restarted once.
    w.roll_out();
    let runs = w.settle(4);
    let kinds: Vec<&str> = runs.iter().flat_map(|r| r.kinds()).collect();
    assert!(kinds.contains(&"RevokeKey"), "{kinds:?}");
    assert!(!kinds.contains(&"RestartConsumer"), "{kinds:?}");
    assert!(revoked(&w, &old));
    assert_eq!(consumer(&w).key, "Current");
    assert_eq!(
        w.condition("Rotating"),
        Some(("False".into(), "Idle".into()))
    );
    w.check_invariant().expect("invariant");
}

#[test]
fn a_restart_decided_twice_before_the_watch_catches_up_is_the_same_template() {
    let mut w = with_reader(KeySource::Environment, true);
    let stale = w.consumers.clone();
    w.annotate(ROTATE_ANNOTATION, "r1");
    let first = w.run();
    let restart = |run: &Run| {
        run.actions
            .iter()
            .find(|a| matches!(a, Effect::RestartConsumer { .. }))
            .cloned()
            .expect("a restart")
    };
    let decided = restart(&first);
    // The next reconcile reads the workload before its patch came back through the watch.
    w.consumers = stale;
    let again = w.run();
    assert_eq!(
        restart(&again),
        decided,
        "same key, same time: no second rollout"
    );
}

#[test]
fn without_restart_on_rotation_an_environment_reader_is_named_and_the_old_key_lives_until_max_grace()
 {
    let mut w = with_reader(KeySource::Environment, false);
    w.annotate(ROTATE_ANNOTATION, "r1");
    let run = w.run();
    let old = w.status().retiring_keys[0].id.clone();
    assert!(!run.kinds().contains(&"RestartConsumer"));
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "ConsumersWillLoseAccess".into()))
    );
    let message = rotating_message(&w);
    assert!(
        message.contains("Deployment web (holds the old key)")
            && message.contains("restartOnRotation"),
        "{message}"
    );
    let warnings: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| e.reason == "ConsumersWillLoseAccess")
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", run.events);
    assert_eq!(warnings[0].type_, EventType::Warning);

    w.advance(hours(23));
    w.settle(3);
    assert!(!revoked(&w, &old), "kept while the reader still uses it");
    w.advance(hours(1));
    w.settle(3);
    assert!(revoked(&w, &old), "revoked at maxGracePeriod");
}

#[test]
fn with_restarts_turned_off_for_the_operator_restart_on_rotation_has_no_effect() {
    let mut w = with_reader(KeySource::Environment, true);
    w.settings.consumers.restarts = false;
    w.annotate(ROTATE_ANNOTATION, "r1");
    let run = w.run();
    assert!(!run.kinds().contains(&"RestartConsumer"));
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "ConsumersWillLoseAccess".into()))
    );
}

#[test]
fn a_file_reader_is_never_restarted_and_the_old_key_waits_for_the_kubelet_sync() {
    let mut w = with_reader(KeySource::File, true);
    // A sync period longer than the grace period, so that it is what holds the key.
    w.settings.consumers.kubelet_sync_period = mins(30);
    let (old, _) = rotate(&mut w, "r1");
    assert_eq!(consumer(&w).key, "Syncing");
    assert!(
        rotating_message(&w).contains("Deployment web (mounted file syncing until"),
        "{}",
        rotating_message(&w)
    );
    w.advance(mins(20));
    let runs = w.settle(3);
    assert!(runs.iter().all(|r| !r.kinds().contains(&"RestartConsumer")));
    assert!(!revoked(&w, &old), "the kubelet may not have synced yet");
    w.advance(mins(11));
    w.settle(3);
    assert!(revoked(&w, &old));
    assert_eq!(consumer(&w).key, "Current");
}

#[test]
fn a_sub_path_file_is_never_refreshed_so_it_is_restarted_like_the_environment() {
    let mut w = with_reader(KeySource::SubPathFile, true);
    w.annotate(ROTATE_ANNOTATION, "r1");
    let run = w.run();
    assert!(
        run.kinds().contains(&"RestartConsumer"),
        "{:?}",
        run.kinds()
    );
}

#[test]
fn a_second_rotation_within_the_minimum_interval_restarts_once_the_interval_has_passed() {
    let mut w = with_reader(KeySource::Environment, true);
    rotate(&mut w, "r1");
    let first = w.consumers[0]
        .restarted_for
        .as_ref()
        .and_then(|(_, at)| *at)
        .expect("restarted, and when");
    w.roll_out();
    w.advance(SignedDuration::from_secs(10));
    w.settle(3);
    // The second rotation comes some 20 s after the first restart.
    w.advance(SignedDuration::from_secs(10));
    let (_, second) = rotate(&mut w, "r2");
    assert_ne!(consumer(&w).restarted_for.as_deref(), Some(second.as_str()));
    assert_eq!(consumer(&w).key, "Stale");
    let due = schedule::add(first, mins(1));
    let message = rotating_message(&w);
    assert!(
        message.contains(&format!("next restart at {due}, one per 1m at most")),
        "{message}"
    );
    let quiet = w.run();
    assert!(quiet.actions.is_empty(), "{:?}", quiet.kinds());
    assert_eq!(
        quiet.done().requeue,
        Requeue::After(due.duration_since(w.now))
    );

    w.now = due;
    let run = w.run();
    let restart = run
        .actions
        .iter()
        .find_map(|a| match a {
            Effect::RestartConsumer { key_id, at, .. } => Some((key_id.clone(), *at)),
            _ => None,
        })
        .expect("restarted once the interval has passed");
    assert_eq!(restart, (second, due));
}

#[test]
fn a_stuck_rollout_is_named_and_the_old_key_lives_until_max_grace() {
    let mut w = with_reader(KeySource::Environment, true);
    let (old, _) = rotate(&mut w, "r1");
    for c in &mut w.consumers {
        c.rollout = Rollout::Stuck;
    }
    w.run();
    assert_eq!(consumer(&w).key, "Stuck");
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "ConsumersWillLoseAccess".into()))
    );
    assert!(rotating_message(&w).contains("Deployment web (rollout stuck)"));
    w.advance(hours(23));
    w.settle(3);
    assert!(!revoked(&w, &old));
    w.advance(hours(1));
    w.settle(3);
    assert!(revoked(&w, &old));
}

#[test]
fn untracked_workloads_leave_the_grace_periods_alone_in_charge() {
    let mut w = with_reader(KeySource::Environment, true);
    w.settings.consumers.tracked = false;
    let (old, _) = rotate(&mut w, "r1");
    assert!(w.status().consumers.is_empty());
    w.advance(mins(10));
    let runs = w.settle(3);
    assert!(runs.iter().all(|r| !r.kinds().contains(&"RestartConsumer")));
    assert!(revoked(&w, &old), "revoked after the grace period alone");
}

#[test]
fn a_compromised_key_is_revoked_at_once_whatever_reads_it() {
    let mut w = with_reader(KeySource::Environment, true);
    let old = w.status().active_key.expect("key").id;
    w.annotate(COMPROMISED_ANNOTATION, "c1");
    let runs = w.settle(3);
    let kinds: Vec<&str> = runs.iter().flat_map(|r| r.kinds()).collect();
    assert!(revoked(&w, &old), "{kinds:?}");
    assert!(
        kinds.contains(&"RestartConsumer"),
        "the reader is restarted for the new key: {kinds:?}"
    );
}
