//! Crash safety (design §4): the process dies after any action committed (or AgentLattice drops
//! the response after committing); a fresh reconcile must restore the invariant — exactly one
//! live agent per resource, its Secret holds a working key, no orphan agent or orphan live key.

use super::world::*;
use crate::crd::*;
use crate::plan::*;

/// Recovers after a crash: reconciles until quiet, then checks the invariant and that status
/// agrees with the Secret.
fn recover(w: &mut World, context: &str) {
    w.settle(8);
    w.check_invariant()
        .unwrap_or_else(|e| panic!("{context}: invariant broken: {e}"));
    let status = w.status();
    assert_eq!(status.agent_id, w.secret_agent_id(), "{context}");
    assert_eq!(
        status.active_key.map(|k| k.id),
        w.secret_annotation(crate::secret::KEY_ID_ANNOTATION),
        "{context}"
    );
    assert_eq!(status.mint_started_at, None, "{context}: intent cleared");
    assert_eq!(
        w.ready(),
        Some(("True".into(), "AgentReady".into())),
        "{context}"
    );
    // And the retiring keys go in due course, leaving exactly the Secret's key.
    w.advance(hours(25));
    w.settle(8);
    w.check_invariant()
        .unwrap_or_else(|e| panic!("{context}: invariant broken after retirement: {e}"));
    let agent = w.secret_agent_id().expect("agent");
    let live =
        w.al.agent(&agent)
            .keys
            .iter()
            .filter(|(k, _)| k.status != KeyStatus::Revoked)
            .count();
    assert_eq!(live, 1, "{context}: only the Secret's key is left");
}

/// Every crash point of the reconcile that `prepare` leads into, and every lost response of its
/// remote calls.
fn crash_everywhere(name: &str, prepare: impl Fn() -> World) {
    let clean = prepare().run();
    assert!(!clean.actions.is_empty(), "{name}: nothing to crash");
    for k in 1..=clean.actions.len() {
        let mut w = prepare();
        let run = w.run_with_crash(Some(k));
        let context = format!("{name}: crash after {:?}", run.kinds());
        recover(&mut w, &context);
    }
    let remote: Vec<&'static str> = clean
        .actions
        .iter()
        .filter(|a| a.is_remote())
        .map(Effect::kind)
        .collect();
    for kind in remote {
        let mut w = prepare();
        w.faults.push(Fault::LoseResponse(kind));
        w.run();
        recover(&mut w, &format!("{name}: lost response of {kind}"));
    }
    // Every action failing (before commit) at its first occurrence ends the reconcile early.
    let mut kinds: Vec<&'static str> = clean.actions.iter().map(Effect::kind).collect();
    kinds.dedup();
    for kind in kinds {
        let mut w = prepare();
        w.faults.push(Fault::Fail(kind, ErrorClass::Transient));
        w.run();
        recover(&mut w, &format!("{name}: {kind} failed"));
    }
}

#[test]
fn crash_anywhere_during_registration() {
    crash_everywhere("registration", World::default);
}

#[test]
fn crash_anywhere_during_rotation() {
    crash_everywhere("rotation", || {
        let mut w = World::registered();
        w.annotate(ROTATE_ANNOTATION, "r1");
        w
    });
}

#[test]
fn crash_anywhere_during_a_compromise_rotation() {
    crash_everywhere("compromised", || {
        let mut w = World::registered();
        w.annotate(COMPROMISED_ANNOTATION, "c1");
        w
    });
}

#[test]
fn crash_anywhere_while_restoring_a_deleted_secret() {
    crash_everywhere("lost secret", || {
        let mut w = World::registered();
        w.secret = None;
        w
    });
}

#[test]
fn crash_anywhere_while_retiring_the_old_key() {
    crash_everywhere("retirement", || {
        let mut w = World::registered();
        w.annotate(ROTATE_ANNOTATION, "r1");
        w.run();
        w.advance(mins(11));
        w
    });
}

#[test]
fn crash_anywhere_during_reregistration() {
    crash_everywhere("reregistration", || {
        let mut w = World::registered();
        let agent = w.status().agent_id.expect("agent");
        let now = w.now;
        w.al.revoke_agent(&agent, now);
        w.advance(mins(10));
        w.run();
        w.annotate(REREGISTER_ANNOTATION, "again");
        w
    });
}

#[test]
fn crash_anywhere_during_adoption_by_name() {
    crash_everywhere("adoption", || {
        let mut w = World::default();
        w.al.create_agent("payments-deploy-bot", Some(UID), w.now);
        w
    });
}

#[test]
fn crash_anywhere_during_deletion() {
    let prepare = || {
        let mut w = World::registered();
        w.delete();
        w
    };
    let clean = prepare().run();
    for k in 1..=clean.actions.len() {
        let mut w = prepare();
        w.run_with_crash(Some(k));
        assert!(
            w.resource.is_some(),
            "the finalizer is still there after a crash"
        );
        let run = w.run();
        assert_eq!(run.end, End::Released, "crash after {k}");
        assert!(w.al.live_agents_of(UID).is_empty(), "crash after {k}");
        assert!(w.secret.is_none());
    }
    let mut w = prepare();
    w.faults.push(Fault::LoseResponse("RevokeAgent"));
    let run = w.run();
    assert!(matches!(run.end, End::Settled(_)), "the finalizer stays");
    let run = w.run();
    assert_eq!(run.end, End::Released);
    assert!(w.al.live_agents_of(UID).is_empty());
}

// ----- the rows of the §4 table, one by one, with the exact recovery ---------------------------

#[test]
fn row_finalizer_added_before_register_registers_with_the_same_idempotency_key() {
    let w = World::default();
    let Step::Perform {
        effect: Effect::Register {
            idempotency_key: key,
            ..
        },
        ..
    } = w.first_step()
    else {
        panic!("register expected");
    };
    assert_eq!(key, idempotency_key(UID, None));
}

/// Whether the process died right after the registration committed, or only its response was
/// lost (the reconcile then reports the unavailability), the next reconcile replays the
/// registration, takes the lost-key path and revokes the original, never delivered, key at once.
#[test]
fn row_register_committed_response_lost_replays_and_revokes_the_original_key() {
    for crashed in [true, false] {
        let mut w = World::default();
        if crashed {
            w.run_with_crash(Some(1));
        } else {
            w.faults.push(Fault::LoseResponse("Register"));
            let run = w.run();
            assert_eq!(run.kinds(), ["Register", "WriteStatus"]);
            assert_eq!(
                w.ready(),
                Some(("False".into(), "AgentLatticeUnavailable".into()))
            );
        }
        let agent = w.al.agents.keys().next().cloned().expect("committed");
        let original = w.al.agent(&agent).keys[0].0.id.clone();
        let run = w.run();
        assert_eq!(
            run.kinds(),
            [
                "Register",
                "FetchAgent",
                "FetchKeys",
                "MintKey",
                "WriteSecret",
                "RevokeKey",
                "WriteSecret",
                "WriteStatus"
            ],
            "crashed: {crashed}"
        );
        assert_eq!(
            run.actions[5],
            Effect::RevokeKey {
                agent_id: agent.clone(),
                key_id: original
            },
            "the replayed key was never delivered: revoked at once"
        );
        w.check_invariant().expect("invariant");
        assert_eq!(w.status().agent_id.as_deref(), Some(agent.as_str()));
        assert_eq!(w.status().mint_started_at, None);
        assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    }
}

#[test]
fn row_secret_written_status_not_recovers_status_from_the_secret() {
    let mut w = World::default();
    w.run_with_crash(Some(2));
    assert!(w.secret.is_some());
    assert_eq!(w.status().agent_id, None);
    let run = w.run();
    // The periodic drift read (a new process has read nothing) lists the keys too.
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus", "FetchKeys"]);
    assert_eq!(run.event_reasons(), ["StatusRecovered"]);
    assert_eq!(w.status().agent_id, w.secret_agent_id());
    w.check_invariant().expect("invariant");
}

#[test]
fn row_mint_committed_response_lost_sweeps_the_stray_key_then_redoes_the_rotation() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "r1");
    w.run_with_crash(Some(3)); // FetchAgent, WriteSecret(intent), MintKey
    assert!(
        w.secret_annotation(crate::secret::MINT_STARTED_AT_ANNOTATION)
            .is_some()
    );
    let agent = w.status().agent_id.expect("agent");
    let stray = w.al.agent(&agent).keys.last().expect("minted").0.id.clone();
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "FetchAgent",
            "MintKey",
            "WriteSecret",
            "FetchKeys",
            "RevokeKey",
            "WriteSecret",
            "WriteStatus",
            "DeprecateKey",
            "WriteStatus"
        ]
    );
    assert_eq!(
        run.actions[4],
        Effect::RevokeKey {
            agent_id: agent.clone(),
            key_id: stray
        }
    );
    w.check_invariant().expect("invariant");
    assert_eq!(w.status().mint_started_at, None);
    assert_eq!(
        w.secret_annotation(crate::secret::MINT_STARTED_AT_ANNOTATION),
        None,
        "lifted once swept"
    );
}

#[test]
fn row_rotated_secret_written_status_not_recovers_and_continues() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "r1");
    w.run_with_crash(Some(4)); // … WriteSecret
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["WriteStatus", "DeprecateKey", "WriteStatus"],
        "the write that delivered the key lifted the intent: nothing to sweep"
    );
    assert_eq!(run.event_reasons(), ["StatusRecovered"]);
    let status = w.status();
    assert_eq!(
        status.handled.rotate.as_deref(),
        Some("r1"),
        "from the Secret"
    );
    assert_eq!(status.retiring_keys.len(), 1);
    assert_eq!(status.mint_started_at, None);
    w.check_invariant().expect("invariant");
}

#[test]
fn row_deprecate_or_revoke_response_lost_is_repeated_or_observed() {
    // Deprecation: repeated (idempotent).
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "r1");
    w.run_with_crash(Some(6)); // … WriteStatus, DeprecateKey
    let run = w.run();
    assert_eq!(run.kinds(), ["DeprecateKey", "WriteStatus"]);
    assert!(w.status().retiring_keys[0].deprecated_at.is_some());
    // Revocation of a compromised key: repeated at once (idempotent), then forgotten.
    let mut w = World::registered();
    w.annotate(COMPROMISED_ANNOTATION, "c1");
    w.run_with_crash(Some(6)); // … WriteStatus, RevokeKey
    let run = w.run();
    assert_eq!(run.kinds(), ["RevokeKey", "WriteSecret", "WriteStatus"]);
    w.check_invariant().expect("invariant");
    assert!(w.status().retiring_keys.is_empty());
    let mut w = World::registered();
    w.annotate(COMPROMISED_ANNOTATION, "c1");
    w.faults
        .push(Fault::Fail("RevokeKey", ErrorClass::Transient));
    w.run();
    let run = w.run();
    assert_eq!(run.kinds(), ["RevokeKey", "WriteSecret", "WriteStatus"]);
    w.check_invariant().expect("invariant");
}

#[test]
fn row_revoke_agent_response_lost_during_deletion_is_repeated() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("agent");
    w.delete();
    w.run_with_crash(Some(2)); // FindAgents, RevokeAgent
    assert!(w.resource.is_some());
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FindAgents", "RevokeAgent"],
        "a revoked agent is no longer found by name; status still names it"
    );
    assert_eq!(run.end, End::Released);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Revoked);
}

// ----- beyond the table: status lost as well (design §2: status can be lost) -------------------

#[test]
fn a_lost_status_does_not_lose_a_mint_intent() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "r1");
    w.run_with_crash(Some(3)); // FetchAgent, WriteSecret(intent), MintKey
    w.res_mut().status = None;
    let agent = w.secret_agent_id().expect("agent");
    let stray = w.al.agent(&agent).keys.last().expect("minted").0.id.clone();
    recover(&mut w, "status lost after the mint");
    assert_eq!(
        w.al.key(&agent, &stray).map(|k| k.status),
        Some(KeyStatus::Revoked)
    );
}

#[test]
fn a_secret_deleted_before_status_caught_up_retires_every_live_key() {
    // A rotation wrote the Secret, status never learned the new key, then the Secret was
    // deleted: status names a key that is no longer the delivered one.
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "r1");
    w.run_with_crash(Some(4)); // FetchAgent, WriteSecret(intent), MintKey, WriteSecret
    let agent = w.secret_agent_id().expect("agent");
    let delivered = w
        .secret_annotation(crate::secret::KEY_ID_ANNOTATION)
        .expect("key id");
    w.secret = None;
    let run = w.run();
    assert!(run.kinds().contains(&"FetchKeys"), "{:?}", run.kinds());
    let retiring: Vec<String> = w
        .status()
        .retiring_keys
        .iter()
        .map(|k| k.id.clone())
        .collect();
    assert!(retiring.contains(&delivered), "{retiring:?}");
    assert_eq!(
        w.al.key(&agent, &delivered).map(|k| k.status),
        Some(KeyStatus::Deprecated),
        "a pod may still hold it: retired with grace, not revoked at once"
    );
    recover(&mut w, "Secret deleted after an unrecorded rotation");
}

/// Found by the planner's property tests (`properties.rs`): a Secret of ours holds the agent's
/// key, but its record annotations were removed and status was lost. The registration replays
/// (or the agent is found by name) and the agent is adopted — but its key was delivered: it is in
/// the Secret, and the workload uses it. It must not be revoked at once as a never-delivered key
/// would be; it is retired with the grace period after the new key is written (the lost-record
/// path), so the workload never holds a revoked key.
#[test]
fn adoption_keeps_a_key_that_a_secret_without_its_record_holds() {
    let edits = [
        "record removed",
        "agent id removed",
        "agent id edited",
        "unowned, adopted",
        "unowned with its record, adopted",
    ];
    for (by_name, edit) in [false, true]
        .into_iter()
        .flat_map(|b| edits.into_iter().map(move |e| (b, e)))
    {
        let mut w = World::registered();
        if by_name {
            // The replay is gone (another idempotency key): the agent is found by name.
            w.al.idempotency.clear();
        }
        let agent = w.secret_agent_id().expect("agent");
        let held = w.secret_key().expect("key");
        let held_id = w.status().active_key.expect("active key").id;
        // Every record annotation removed, or only the agent id, or the agent id edited (the
        // key is still described, but not tied to this agent).
        if edit == "agent id removed" {
            w.secret_annotations_mut()
                .remove(crate::secret::AGENT_ID_ANNOTATION);
        } else if edit == "agent id edited" {
            w.secret_annotations_mut().insert(
                crate::secret::AGENT_ID_ANNOTATION.to_owned(),
                "agent-unknown".to_owned(),
            );
            // That agent is not found: the user asks for a new registration, which finds the
            // agent of this resource again (by replay or by name).
            w.annotate(REREGISTER_ANNOTATION, "again");
        } else if edit == "unowned with its record, adopted" {
            // Released by hand, the record intact: untrusted (not ours), but right about the key.
            w.secret.as_mut().expect("secret").metadata.owner_references = None;
            w.edit_spec(|s| s.secret_policy = SecretPolicy::Adopt);
        } else if edit == "unowned, adopted" {
            // A Secret holding the agent's key without owner or record (written by hand, or
            // released), taken over with `secretPolicy: Adopt`.
            for a in crate::secret::RECORD_ANNOTATIONS {
                w.secret_annotations_mut().remove(a);
            }
            w.secret.as_mut().expect("secret").metadata.owner_references = None;
            w.edit_spec(|s| s.secret_policy = SecretPolicy::Adopt);
        } else {
            for a in crate::secret::RECORD_ANNOTATIONS {
                w.secret_annotations_mut().remove(a);
            }
        }
        w.res_mut().status = None;
        let run = w.run();
        for action in &run.actions {
            assert_ne!(
                action,
                &Effect::RevokeKey {
                    agent_id: agent.clone(),
                    key_id: held_id.clone()
                },
                "by name: {by_name}, {edit}: the Secret's key was revoked: {:?}",
                run.kinds()
            );
        }
        // The old key still works, and is retiring with grace.
        assert!(w.al.use_key(&held, w.now), "by name: {by_name}");
        let retiring: Vec<crate::secret::RetiringKey> = serde_json::from_str(
            &w.secret_annotation(crate::secret::RETIRING_KEYS_ANNOTATION)
                .expect("retiring keys"),
        )
        .expect("retiring keys parse");
        assert!(
            retiring.iter().any(|k| k.id == held_id && !k.immediate),
            "by name: {by_name}: {retiring:?}"
        );
        recover(
            &mut w,
            &format!("adoption with the record removed (by name: {by_name})"),
        );
    }
}

/// Found by the planner's property tests: a record whose retiring list (edited by hand) names the
/// key the Secret holds. That key is never retired: not deprecated, not revoked, and the list
/// written back no longer names it.
#[test]
fn a_retiring_list_naming_the_secrets_key_never_retires_it() {
    // The list names the active key by its id, or (found later) the key-id annotation was edited
    // too and the list names the real key: the same public prefix gives it away.
    for edited_id in [false, true] {
        let mut w = World::registered();
        let agent = w.secret_agent_id().expect("agent");
        let active = w.status().active_key.expect("active key");
        let listed = format!(
            r#"[{{"id":"{}","prefix":"{}","since":"2026-11-20T10:00:00Z","immediate":true}}]"#,
            active.id, active.prefix
        );
        w.secret_annotations_mut()
            .insert(crate::secret::RETIRING_KEYS_ANNOTATION.to_owned(), listed);
        if edited_id {
            w.secret_annotations_mut().insert(
                crate::secret::KEY_ID_ANNOTATION.to_owned(),
                "key-edited".to_owned(),
            );
            w.res_mut().status = None;
        }
        w.advance(hours(30));
        let runs = w.settle(6);
        for run in &runs {
            for action in &run.actions {
                if let Effect::RevokeKey { key_id, .. } | Effect::DeprecateKey { key_id, .. } =
                    action
                {
                    assert_ne!(
                        key_id,
                        &active.id,
                        "edited id: {edited_id}: {:?}",
                        run.kinds()
                    );
                }
            }
        }
        assert_eq!(
            w.al.key(&agent, &active.id).map(|k| k.status),
            Some(KeyStatus::Active),
            "edited id: {edited_id}"
        );
        if !edited_id {
            assert_eq!(
                w.secret_annotation(crate::secret::RETIRING_KEYS_ANNOTATION),
                None,
                "the list is repaired"
            );
            w.check_invariant().expect("invariant");
        }
    }
}
