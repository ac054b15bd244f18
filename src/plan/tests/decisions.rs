//! One test (or table) per row of design §3.1, in its order, plus validation, error classes and
//! status rules. Each builds a world in the row's state and checks the planner's decision.

use super::world::*;
use crate::crd::*;
use crate::plan::validate::{ValidSpec, validate};
use crate::plan::*;
use crate::secret;

fn action(step: &Step) -> &Effect {
    match step {
        Step::Perform { effect, .. } => effect,
        other => panic!("expected an effect, got {other:?}"),
    }
}

fn named(name: &str, namespace: &str) -> LatticeAgent {
    let mut r = resource();
    r.metadata.name = Some(name.into());
    r.metadata.namespace = Some(namespace.into());
    r
}

// ----- 1. deleting ------------------------------------------------------------------------------

#[test]
fn deleting_with_skip_revoke_releases_without_any_call() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    w.annotate(SKIP_REVOKE_ANNOTATION, "true");
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert_eq!(run.end, End::Released);
    assert_eq!(run.events.len(), 1);
    assert_eq!(run.events[0].reason, "RevocationSkipped");
    assert_eq!(run.events[0].type_, EventType::Warning);
    assert!(run.events[0].note.contains(&agent));
    assert_eq!(
        w.al.live_agents_of(UID).len(),
        1,
        "the agent was not revoked"
    );
}

#[test]
fn deleting_with_skip_revoke_other_than_true_still_revokes() {
    let mut w = World::registered();
    w.annotate(SKIP_REVOKE_ANNOTATION, "yes");
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents", "RevokeAgent"]);
    assert_eq!(run.end, End::Released);
}

#[test]
fn deleting_with_retain_releases_the_secret_and_keeps_the_agent() {
    let mut w = World::registered();
    w.res_mut().spec.deletion_policy = DeletionPolicy::Retain;
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["ReleaseSecret"]);
    assert_eq!(run.end, End::Released);
    assert_eq!(run.event_reasons(), ["AgentRetained"]);
    let secret = w
        .secret
        .as_ref()
        .expect("the Secret survives garbage collection");
    assert!(
        secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .all(|r| r.uid != UID)
    );
    assert_eq!(w.al.live_agents_of(UID).len(), 1);
    assert!(
        w.workload_uses_key(),
        "the retained agent keeps a usable key"
    );
}

#[test]
fn deleting_with_retain_and_no_secret_releases_at_once() {
    let mut w = World::registered();
    w.res_mut().spec.deletion_policy = DeletionPolicy::Retain;
    w.secret = None;
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert_eq!(run.event_reasons(), ["AgentRetained"]);
    assert_eq!(run.end, End::Released);
}

#[test]
fn deleting_revokes_the_agent_from_status_and_the_secret_goes_with_the_owner() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents", "RevokeAgent"]);
    assert_eq!(
        run.actions[1],
        Effect::RevokeAgent {
            agent_id: agent.clone()
        }
    );
    assert_eq!(run.event_reasons(), ["AgentRevoked"]);
    assert_eq!(run.end, End::Released);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Revoked);
    assert!(w.secret.is_none(), "garbage-collected with its owner");
}

#[test]
fn deleting_revokes_an_agent_only_the_secret_knows_after_verifying_it() {
    let mut w = World::registered();
    // The Secret records an agent of ours that the name lookup cannot find (another name).
    let hidden = w.al.create_agent("payments-old-name", Some(UID), w.now);
    w.secret_annotations_mut()
        .insert(secret::AGENT_ID_ANNOTATION.into(), hidden.clone());
    w.delete();
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FindAgents", "RevokeAgent", "FetchAgent", "RevokeAgent"]
    );
    assert_eq!(w.al.agent(&hidden).view.status, AgentStatus::Revoked);
    assert!(w.al.live_agents_of(UID).is_empty());
}

#[test]
fn deleting_never_revokes_a_foreign_agent_named_by_an_edited_secret() {
    let mut w = World::registered();
    let foreign = w.al.create_agent("someone-else", Some("other-uid"), w.now);
    w.secret_annotations_mut()
        .insert(secret::AGENT_ID_ANNOTATION.into(), foreign.clone());
    w.delete();
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FindAgents", "RevokeAgent", "FetchAgent"],
        "the foreign agent is read, found foreign, and left alone"
    );
    assert_eq!(run.end, End::Released);
    assert_eq!(w.al.agent(&foreign).view.status, AgentStatus::Active);
}

#[test]
fn deleting_revokes_a_registration_that_committed_but_was_never_recorded() {
    let mut w = World::default();
    w.faults.push(Fault::LoseResponse("Register"));
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteStatus"]);
    assert_eq!(w.al.live_agents_of(UID).len(), 1, "committed");
    assert_eq!(w.status().agent_id, None, "but not recorded");
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents", "RevokeAgent"]);
    assert_eq!(run.end, End::Released);
    assert!(w.al.live_agents_of(UID).is_empty());
}

#[test]
fn deleting_leaves_an_agent_of_the_same_name_that_is_not_ours() {
    let mut w = World::default();
    let other =
        w.al.create_agent("payments-deploy-bot", Some("other-uid"), w.now);
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents"]);
    assert_eq!(run.end, End::Released);
    assert_eq!(w.al.agent(&other).view.status, AgentStatus::Active);
}

#[test]
fn deleting_counts_a_missing_or_revoked_agent_as_done() {
    // 404
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    w.al.agents.remove(&agent);
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents", "RevokeAgent"]);
    assert_eq!(run.end, End::Released);
    // already revoked: the revoke is repeated (idempotent) or skipped, never an error
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    let now = w.now;
    w.al.revoke_agent(&agent, now);
    w.delete();
    let run = w.run();
    assert_eq!(run.end, End::Released);
    assert!(run.done_is_none());
}

trait RunExt {
    fn done_is_none(&self) -> bool;
}

impl RunExt for Run {
    fn done_is_none(&self) -> bool {
        !matches!(self.end, End::Settled(_))
    }
}

#[test]
fn deleting_keeps_the_finalizer_when_revocation_fails_and_says_why_once() {
    let mut w = World::registered();
    w.delete();
    w.faults
        .push(Fault::Fail("RevokeAgent", ErrorClass::ServiceKeyRejected));
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents", "RevokeAgent", "WriteStatus"]);
    let done = run.done();
    assert_eq!(done.requeue, Requeue::After(mins(5)));
    assert_eq!(
        done.failure.as_ref().map(|f| &f.class),
        Some(&ErrorClass::ServiceKeyRejected)
    );
    assert!(w.resource.is_some(), "the finalizer stays");
    assert_eq!(w.ready(), Some(("False".into(), "RevocationFailed".into())));
    let message = w.status().conditions[0].message.clone();
    assert!(message.contains(SKIP_REVOKE_ANNOTATION), "{message}");

    // The same failure again: the status already says it; no write.
    w.faults.push(Fault::Fail(
        "FindAgents",
        ErrorClass::Unavailable { retry_after: None },
    ));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FindAgents", "WriteStatus"],
        "the category changed"
    );
    w.faults.push(Fault::Fail(
        "FindAgents",
        ErrorClass::Unavailable { retry_after: None },
    ));
    let run = w.run();
    assert_eq!(run.kinds(), ["FindAgents"]);
    assert_eq!(run.done().requeue, Requeue::Backoff { at_least: None });

    // AgentLattice back: the deletion completes.
    let run = w.run();
    assert_eq!(run.end, End::Released);
    assert!(w.al.live_agents_of(UID).is_empty());
}

#[test]
fn deleting_never_validates_the_spec() {
    let mut w = World::registered();
    w.edit_spec(|s| {
        s.rotation.grace_period = "2h".into();
        s.rotation.max_grace_period = "1h".into();
    });
    w.delete();
    let run = w.run();
    assert_eq!(run.end, End::Released);
    assert!(w.al.live_agents_of(UID).is_empty());
}

#[test]
fn deleting_with_an_invalid_default_name_skips_the_lookup() {
    let mut w = World::new(named(&"n".repeat(60), "payments"));
    w.delete();
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert_eq!(run.end, End::Released);
}

// ----- 2. invalid spec --------------------------------------------------------------------------

/// Found by the spec fuzzer (`inputs.rs`): the invalid-spec message quotes the offending values,
/// and a key pasted into the spec (here a capability) reached status with it. Condition messages
/// are redacted; the rest of the message stays.
#[test]
fn a_key_pasted_into_the_spec_never_reaches_status() {
    let key = "al_agent_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD";
    let mut w = World::default();
    w.edit_spec(|s| s.capabilities.push(key.to_owned()));
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(w.ready(), Some(("False".into(), "InvalidSpec".into())));
    let status = serde_json::to_string(&w.status()).expect("status serialises");
    assert!(!status.contains(&key[9..]), "{status}");
    assert!(
        status.contains("spec.capabilities: \\\"<redacted>\\\" must be"),
        "{status}"
    );
}

#[test]
fn invalid_spec_is_reported_without_any_remote_call() {
    let mut w = World::new(named(&"n".repeat(60), "payments"));
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(w.ready(), Some(("False".into(), "InvalidSpec".into())));
    assert_eq!(
        w.condition("Synced"),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert!(
        w.status().conditions[0]
            .message
            .contains("set spec.agentName")
    );
    assert!(w.al.calls.is_empty());
    // Waits for a change; the status is not rewritten.
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert_eq!(run.done().requeue, Requeue::OnChange);
    // Fixing the spec registers.
    w.edit_spec(|s| s.agent_name = Some("payments-short".into()));
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn invalid_spec_on_a_registered_agent_keeps_it_ready_and_stops_syncing() {
    let mut w = World::registered();
    w.edit_spec(|s| {
        s.rotation.grace_period = "2h".into();
        s.rotation.max_grace_period = "1h".into();
    });
    w.annotate(ROTATE_ANNOTATION, "now");
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"], "no rotation, no remote call");
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    assert_eq!(
        w.condition("Synced"),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert_eq!(w.status().observed_generation, Some(2));
}

#[test]
fn validation_table() {
    fn check(edit: impl FnOnce(&mut LatticeAgent)) -> Result<ValidSpec, String> {
        let mut r = resource();
        edit(&mut r);
        validate(&r).map_err(|e| e.join("; "))
    }
    let ok = check(|_| {}).expect("fixture is valid");
    assert_eq!(ok.agent_name, "payments-deploy-bot");
    assert_eq!(ok.secret_name, "deploy-bot-agent-key");
    assert_eq!(ok.capabilities, ["deploy.staging", "rollback.staging"]);
    assert_eq!(ok.grace, mins(10));
    assert_eq!(ok.max_grace, hours(24));
    assert_eq!(ok.interval, None);

    type Edit = Box<dyn FnOnce(&mut LatticeAgent)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "defaulted name too long",
            Box::new(|r| r.metadata.name = Some("x".repeat(60))),
            "default agent name",
        ),
        (
            "explicit name bad",
            Box::new(|r| r.spec.agent_name = Some("Bad Name".into())),
            "spec.agentName",
        ),
        (
            "defaulted secret name too long",
            Box::new(|r| {
                r.metadata.name = Some("x".repeat(250));
                r.spec.agent_name = Some("ok".into());
            }),
            "default Secret name",
        ),
        (
            "duplicate capability",
            Box::new(|r| r.spec.capabilities = vec!["a".into(), "a".into()]),
            "duplicate",
        ),
        (
            "bad capability",
            Box::new(|r| r.spec.capabilities = vec!["Deploy!".into()]),
            "spec.capabilities",
        ),
        (
            "too many capabilities",
            Box::new(|r| r.spec.capabilities = (0..65).map(|i| format!("c{i}")).collect()),
            "at most 64",
        ),
        (
            "description too long",
            Box::new(|r| r.spec.description = Some("d".repeat(1025))),
            "spec.description",
        ),
        (
            "bad duration",
            Box::new(|r| r.spec.rotation.grace_period = "ten minutes".into()),
            "spec.rotation.gracePeriod",
        ),
        (
            "overflowing duration",
            Box::new(|r| r.spec.rotation.max_grace_period = "99999999d".into()),
            "too long",
        ),
        (
            "grace above max grace",
            Box::new(|r| {
                r.spec.rotation.grace_period = "2d".into();
                r.spec.rotation.max_grace_period = "1d".into();
            }),
            "must not exceed maxGracePeriod",
        ),
        (
            "interval not above grace",
            Box::new(|r| r.spec.rotation.interval = Some("10m".into())),
            "must be longer than gracePeriod",
        ),
        (
            "template label value",
            Box::new(|r| {
                r.spec.secret_template = Some(SecretTemplate {
                    labels: [("team".into(), "not valid!".into())].into(),
                    ..Default::default()
                })
            }),
            "spec.secretTemplate.labels",
        ),
    ];
    for (name, edit, expected) in cases {
        match check(edit) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(e.contains(expected), "{name}: {e}"),
        }
    }
    let days = check(|r| r.spec.rotation.interval = Some("30d".into())).expect("days are fine");
    assert_eq!(days.interval, Some(hours(720)));
}

// ----- 3. Secret conflicts ----------------------------------------------------------------------

#[test]
fn an_older_claimant_keeps_the_secret() {
    let mut w = World {
        older_claimant: Some("aaa-bot".into()),
        ..World::default()
    };
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.event_reasons(), ["SecretConflict"]);
    assert_eq!(run.events[0].type_, EventType::Warning);
    assert_eq!(w.ready(), Some(("False".into(), "SecretConflict".into())));
    assert!(w.status().conditions[0].message.contains("aaa-bot"));
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new(), "no new event, no write");
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
    assert!(w.al.calls.is_empty());
}

#[test]
fn older_claimant_helper_orders_by_creation_then_name() {
    let me = resource();
    let mut older = named("aaa", "payments");
    older.metadata.uid = Some("u-1".into());
    older.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        ts("2026-10-01T00:00:00Z"),
    ));
    older.spec.secret_name = Some("deploy-bot-agent-key".into());
    let mut newer = older.clone();
    newer.metadata.uid = Some("u-2".into());
    newer.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        ts("2026-12-01T00:00:00Z"),
    ));
    let mut same_time_smaller_name = me.clone();
    same_time_smaller_name.metadata.uid = Some("u-3".into());
    same_time_smaller_name.metadata.name = Some("a-bot".into());
    same_time_smaller_name.spec.secret_name = Some("deploy-bot-agent-key".into());
    let mut other_ns = older.clone();
    other_ns.metadata.namespace = Some("web".into());
    let mut deleting = older.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t0()));

    assert_eq!(older_claimant(&me, [&newer, &other_ns, &deleting]), None);
    assert_eq!(older_claimant(&me, [&newer, &older]), Some("aaa".into()));
    assert_eq!(
        older_claimant(&me, [&same_time_smaller_name]),
        Some("a-bot".into())
    );
    assert_eq!(older_claimant(&me, [&me.clone()]), None, "not itself");
}

#[test]
fn an_owned_secret_is_kept_against_an_older_claimant() {
    let mut w = World::registered();
    w.older_claimant = Some("aaa-bot".into());
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn secret_conflicts_block_before_any_remote_call() {
    type Owner<'a> = Option<(&'a str, &'a str)>;
    let cases: Vec<(&str, Owner, SecretPolicy, &str)> = vec![
        (
            "controlled by something else",
            Some(("other", "uid-x")),
            SecretPolicy::Adopt,
            "controlled by",
        ),
        (
            "an earlier LatticeAgent of this name",
            Some(("deploy-bot", "old-uid")),
            SecretPolicy::Owned,
            "controlled by",
        ),
        (
            "unowned, policy Owned",
            None,
            SecretPolicy::Owned,
            "secretPolicy: Adopt",
        ),
    ];
    for (name, owner, policy, message) in cases {
        let mut w = World::default();
        w.res_mut().spec.secret_policy = policy;
        w.foreign_secret(owner);
        let run = w.run();
        assert_eq!(run.kinds(), ["WriteStatus"], "{name}");
        assert_eq!(
            w.ready(),
            Some(("False".into(), "SecretConflict".into())),
            "{name}"
        );
        assert!(w.status().conditions[0].message.contains(message), "{name}");
        assert!(w.al.calls.is_empty(), "{name}");
        assert_eq!(
            w.secret_data("password").as_deref(),
            Some("hunter2"),
            "{name}: untouched"
        );
    }
}

#[test]
fn adopt_takes_over_an_unowned_secret() {
    let mut w = World::default();
    w.res_mut().spec.secret_policy = SecretPolicy::Adopt;
    w.foreign_secret(None);
    if let Some(s) = w.secret.as_mut() {
        let mut app = secret::owner_reference("app", "app-uid");
        app.controller = None;
        s.metadata.owner_references = Some(vec![app]);
    }
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    assert!(matches!(
        &run.actions[1],
        Effect::WriteSecret(write) if matches!(write.precondition, Precondition::Update { .. })
    ));
    w.check_invariant().expect("invariant");
    let refs = w
        .secret
        .as_ref()
        .and_then(|s| s.metadata.owner_references.clone())
        .unwrap_or_default();
    assert_eq!(refs.len(), 2, "the other owner reference is kept");
    assert!(
        refs.iter()
            .any(|r| r.uid == UID && r.controller == Some(true))
    );
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn adopt_refuses_a_secret_that_is_not_opaque() {
    let mut w = World::default();
    w.res_mut().spec.secret_policy = SecretPolicy::Adopt;
    w.foreign_secret(None);
    if let Some(s) = w.secret.as_mut() {
        s.type_ = Some("kubernetes.io/tls".into());
    }
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(w.ready(), Some(("False".into(), "SecretConflict".into())));
}

// ----- 4. status recovered from the Secret ------------------------------------------------------

#[test]
fn a_lost_status_is_recovered_from_the_secret_after_verifying_the_agent() {
    let mut w = World::registered();
    let before = w.status();
    w.res_mut().status = None;
    w.last_remote_check = Some(w.now);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["StatusRecovered"]);
    let after = w.status();
    assert_eq!(after.agent_id, before.agent_id);
    assert_eq!(after.active_key, before.active_key);
    assert_eq!(after.handled, before.handled);
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    assert!(w.run().actions.is_empty());
}

#[test]
fn a_secret_naming_a_foreign_agent_is_not_trusted() {
    let mut w = World::registered();
    let foreign = w.al.create_agent("someone-else", Some("other-uid"), w.now);
    w.res_mut().status = None;
    w.secret_annotations_mut()
        .insert(secret::AGENT_ID_ANNOTATION.into(), foreign.clone());
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(w.ready(), Some(("False".into(), "SecretConflict".into())));
    assert_eq!(w.status().agent_id, None);
}

#[test]
fn a_stale_status_of_the_same_agent_is_recovered_without_a_remote_read() {
    let mut w = World::registered();
    let before = w.status();
    w.status_mut().active_key = None;
    w.status_mut().handled.rotate = Some("stale".into());
    w.last_remote_check = Some(w.now);
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.event_reasons(), ["StatusRecovered"]);
    assert_eq!(w.status().active_key, before.active_key);
    assert_eq!(w.status().handled, before.handled);
}

// ----- 5. registration --------------------------------------------------------------------------

#[test]
fn registration_costs_one_remote_call_and_two_object_writes() {
    let mut w = World::default();
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    assert_eq!(run.remote_calls(), 1);
    assert_eq!(run.event_reasons(), ["Registered"]);
    let Effect::Register {
        request,
        idempotency_key: key,
    } = &run.actions[0]
    else {
        panic!("register expected");
    };
    assert_eq!(key, &idempotency_key(UID, None));
    assert_eq!(request.name, "payments-deploy-bot");
    assert_eq!(request.capabilities, ["deploy.staging", "rollback.staging"]);
    assert_eq!(
        request.description.as_deref(),
        Some("Deploys the payments service")
    );
    assert_eq!(
        request.metadata,
        [
            (META_NAME.to_owned(), "deploy-bot".to_owned()),
            (META_NAMESPACE.to_owned(), "payments".to_owned()),
            (META_UID.to_owned(), UID.to_owned()),
        ]
        .into()
    );
    let Effect::WriteSecret(write) = &run.actions[1] else {
        panic!("secret expected");
    };
    assert_eq!(write.precondition, Precondition::Create);
    assert_eq!(write.purpose, WritePurpose::Register);
    assert!(matches!(write.key, KeyWrite::Fresh { .. }));

    w.check_invariant().expect("invariant");
    let status = w.status();
    let agent = status.agent_id.clone().expect("agent id");
    assert_eq!(status.agent_name.as_deref(), Some("payments-deploy-bot"));
    assert_eq!(status.secret_name.as_deref(), Some("deploy-bot-agent-key"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.mint_started_at, None);
    assert_eq!(status.next_rotation_time, None);
    let key = status.active_key.expect("active key");
    assert_eq!(
        w.secret_annotation(secret::KEY_ID_ANNOTATION),
        Some(key.id.clone())
    );
    assert_eq!(
        w.secret_annotation(secret::AGENT_ID_ANNOTATION),
        Some(agent.clone())
    );
    assert_eq!(
        w.secret_data(secret::BASE_URL_FIELD).as_deref(),
        Some(BASE_URL)
    );
    assert_eq!(
        w.al.agent(&agent).view.capabilities,
        ["deploy.staging", "rollback.staging"]
    );
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    assert_eq!(
        w.condition("Synced"),
        Some(("True".into(), "Synced".into()))
    );
    assert_eq!(
        w.condition("Rotating"),
        Some(("False".into(), "Idle".into()))
    );
}

#[test]
fn registration_metadata_carries_the_cluster_name_when_configured() {
    let mut w = World::default();
    w.settings.cluster_name = Some("prod-eu".into());
    let Effect::Register { request, .. } = action(&w.first_step()).clone() else {
        panic!("register expected");
    };
    assert_eq!(
        request.metadata.get(META_CLUSTER).map(String::as_str),
        Some("prod-eu")
    );
}

#[test]
fn idempotency_keys_derive_from_uid_and_the_reregister_value() {
    let a = idempotency_key("uid-1", None);
    assert!(a.starts_with("lattice-operator/uid-1/"));
    assert_eq!(a, idempotency_key("uid-1", Some("")));
    assert_eq!(
        a,
        idempotency_key("uid-1", None),
        "stable across calls and restarts"
    );
    assert_ne!(a, idempotency_key("uid-2", None));
    assert_ne!(a, idempotency_key("uid-1", Some("again")));
    assert!(a.len() <= 255 && a.chars().all(|c| c.is_ascii_graphic()));
}

#[test]
fn a_name_held_by_our_own_agent_is_adopted() {
    let mut w = World::default();
    let ours = w.al.create_agent("payments-deploy-bot", Some(UID), w.now);
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "Register",
            "FindAgents",
            "UpdateAgent",
            "FetchKeys",
            "MintKey",
            "WriteSecret",
            "RevokeKey",
            "WriteSecret",
            "WriteStatus"
        ]
    );
    assert_eq!(w.status().agent_id.as_deref(), Some(ours.as_str()));
    w.check_invariant().expect("invariant");
}

#[test]
fn a_name_held_by_another_agent_is_a_name_conflict_and_never_adopted() {
    let mut w = World::default();
    let other =
        w.al.create_agent("payments-deploy-bot", Some("other-uid"), w.now);
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "FindAgents", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["NameConflict"]);
    assert_eq!(w.ready(), Some(("False".into(), "NameConflict".into())));
    assert_eq!(w.status().agent_id, None);
    assert_eq!(w.al.agent(&other).keys.len(), 1, "untouched");
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "FindAgents"]);
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
    assert!(run.events.is_empty());
}

#[test]
fn an_idempotency_mismatch_is_resolved_by_name() {
    let mut w = World::default();
    w.faults.push(Fault::LoseResponse("Register"));
    w.run();
    w.edit_spec(|s| s.capabilities.push("deploy.prod".into()));
    let run = w.run();
    assert_eq!(&run.kinds()[..2], ["Register", "FindAgents"]);
    w.check_invariant().expect("invariant");
    let agent = w.status().agent_id.expect("adopted");
    assert!(
        w.al.agent(&agent)
            .view
            .capabilities
            .contains(&"deploy.prod".to_owned())
    );
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn an_idempotency_mismatch_under_another_name_is_a_registration_conflict() {
    let mut w = World::default();
    w.faults.push(Fault::LoseResponse("Register"));
    w.run();
    w.edit_spec(|s| s.agent_name = Some("payments-renamed".into()));
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "FindAgents", "WriteStatus"]);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "RegistrationConflict".into()))
    );
    // The documented way out registers afresh.
    w.annotate(REREGISTER_ANNOTATION, "1");
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
}

#[test]
fn a_revoked_idempotent_registration_waits_for_a_reregister() {
    let mut w = World::default();
    w.faults.push(Fault::LoseResponse("Register"));
    w.run();
    let agent = w.al.agents.keys().next().cloned().expect("agent");
    let now = w.now;
    w.al.revoke_agent(&agent, now);
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteStatus"]);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "AgentRevokedExternally".into()))
    );
    let run = w.run();
    assert_eq!(
        run.kinds(),
        Vec::<&str>::new(),
        "no register on every resync"
    );
    assert_eq!(run.done().requeue, Requeue::OnChange);
    w.annotate(REREGISTER_ANNOTATION, "2026-11-23");
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    w.check_invariant().expect("invariant");
    assert_eq!(w.status().handled.reregister.as_deref(), Some("2026-11-23"));
}

// ----- 6. drift read ----------------------------------------------------------------------------

#[test]
fn steady_state_is_quiet_and_reads_once_per_resync() {
    let mut w = World::registered();
    let run = w.run();
    assert_eq!(
        run.kinds(),
        Vec::<&str>::new(),
        "not after the operator's own writes"
    );
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
    w.advance(mins(9));
    assert!(w.run().actions.is_empty());
    w.advance(mins(1));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["FetchAgent", "FetchKeys"],
        "two cheap reads per resync (the agent and its keys), no write"
    );
    assert!(run.done().remote_checked);
    assert!(w.run().actions.is_empty());
}

/// Found by the chaos runner (tests/chaos.rs): the Secret's key revoked at AgentLattice by
/// someone else changes nothing on the agent, so a drift read of the agent alone never noticed it
/// and the resource stayed Ready with a dead key. The periodic read lists the keys; the lost-key
/// path mints a new one, the same agent keeps going.
#[test]
fn a_secret_key_revoked_outside_is_replaced_at_the_next_resync() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    let old = w.status().active_key.expect("a key").id;
    let now = w.now;
    for (k, _) in &mut w.al.agent_mut(&agent).keys {
        if k.id == old {
            k.status = KeyStatus::Revoked;
            k.revoked_at = Some(now);
        }
    }
    // Not before the resync is due: a change made outside is found at the next periodic read.
    assert!(w.run().actions.is_empty());
    w.advance(mins(10));
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "FetchAgent",
            "FetchKeys",
            "WriteSecret", // the mint intent
            "MintKey",
            "WriteSecret",
            "WriteSecret",
            "WriteStatus"
        ]
    );
    let new = w.status().active_key.expect("a key").id;
    assert_ne!(new, old);
    assert_eq!(w.status().agent_id.as_deref(), Some(agent.as_str()));
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    w.check_invariant().expect("invariant");
    assert!(w.workload_uses_key(), "the Secret's key works");
}

#[test]
fn a_generation_change_triggers_the_drift_read() {
    let mut w = World::registered();
    w.edit_spec(|_| {});
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(w.status().observed_generation, Some(2));
}

#[test]
fn an_agent_deleted_or_revoked_outside_is_reported_and_not_reregistered() {
    for how in ["deleted", "revoked"] {
        let mut w = World::registered();
        let agent = w.status().agent_id.expect("registered");
        let now = w.now;
        if how == "deleted" {
            w.al.agents.remove(&agent);
        } else {
            w.al.revoke_agent(&agent, now);
        }
        w.advance(mins(10));
        let run = w.run();
        assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"], "{how}");
        assert_eq!(
            w.ready(),
            Some(("False".into(), "AgentRevokedExternally".into())),
            "{how}"
        );
        assert_eq!(run.done().requeue, Requeue::OnChange);
        w.advance(hours(1));
        let run = w.run();
        assert_eq!(
            run.kinds(),
            Vec::<&str>::new(),
            "{how}: no read, no register"
        );
        assert!(w.al.live_agents_of(UID).is_empty());
    }
}

#[test]
fn the_reregister_annotation_registers_a_new_agent_into_the_same_secret() {
    let mut w = World::registered();
    let old = w.status().agent_id.expect("registered");
    let now = w.now;
    w.al.revoke_agent(&old, now);
    w.advance(mins(10));
    w.run();
    w.annotate(REREGISTER_ANNOTATION, "again");
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    let Effect::Register {
        idempotency_key: key,
        ..
    } = &run.actions[0]
    else {
        panic!("register expected");
    };
    assert_eq!(key, &idempotency_key(UID, Some("again")));
    assert!(matches!(
        &run.actions[1],
        Effect::WriteSecret(write) if matches!(write.precondition, Precondition::Update { .. })
    ));
    w.check_invariant().expect("invariant");
    let new = w.status().agent_id.expect("new agent");
    assert_ne!(new, old);
    assert_eq!(w.status().handled.reregister.as_deref(), Some("again"));
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    // The same value again does nothing.
    assert!(w.run().actions.is_empty());
}

#[test]
fn capability_and_description_drift_updates_the_agent() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    w.edit_spec(|s| {
        s.capabilities = vec!["deploy.prod".into()];
        s.description = None;
    });
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "UpdateAgent", "WriteStatus"]);
    assert_eq!(
        run.actions[1],
        Effect::UpdateAgent {
            agent_id: agent.clone(),
            capabilities: Some(vec!["deploy.prod".into()]),
            description: Some(None),
        }
    );
    assert_eq!(run.event_reasons(), ["AgentUpdated"]);
    assert_eq!(w.al.agent(&agent).view.capabilities, ["deploy.prod"]);

    // Someone changes the description at AgentLattice: the next drift read puts it back.
    w.al.agent_mut(&agent).view.description = Some("edited".into());
    w.advance(mins(10));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "FetchKeys", "UpdateAgent"]);
    assert_eq!(w.al.agent(&agent).view.description, None);
}

#[test]
fn suspend_halts_and_resume_resumes() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    w.edit_spec(|s| s.suspend = true);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "HaltAgent", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["AgentHalted"]);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Halted);
    assert_eq!(w.ready(), Some(("False".into(), "Suspended".into())));
    w.edit_spec(|s| s.suspend = false);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "ResumeAgent", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["AgentResumed"]);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Active);
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

// ----- 7. Secret drift --------------------------------------------------------------------------

#[test]
fn a_deleted_secret_gets_a_new_key_and_the_lost_key_retires_with_grace() {
    let mut w = World::registered();
    let lost = w.status().active_key.expect("key");
    w.secret = None;
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "WriteStatus",
            "MintKey",
            "FetchKeys",
            "WriteSecret",
            "WriteStatus",
            "DeprecateKey",
            "WriteStatus"
        ],
        "intent on status (no Secret to hold it); every live key is retired"
    );
    assert_eq!(run.event_reasons(), ["SecretRestored"]);
    let status = w.status();
    assert_ne!(status.active_key.as_ref().map(|k| &k.id), Some(&lost.id));
    assert_eq!(status.retiring_keys.len(), 1);
    assert_eq!(status.retiring_keys[0].id, lost.id);
    assert!(
        !status.retiring_keys[0].immediate,
        "a running pod may still hold it"
    );
    assert!(status.retiring_keys[0].deprecated_at.is_some());
    assert_eq!(status.mint_started_at, None);
    w.check_invariant().expect("invariant");
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    assert_eq!(
        w.condition("Rotating"),
        Some(("True".into(), "WaitingForGracePeriod".into()))
    );
}

#[test]
fn an_edited_key_is_treated_as_lost() {
    let mut w = World::registered();
    let lost = w.status().active_key.expect("key");
    if let Some(data) = w.secret.as_mut().and_then(|s| s.data.as_mut()) {
        data.insert(
            secret::API_KEY_FIELD.into(),
            k8s_openapi::ByteString(b"al_agent_pasted_by_hand".to_vec()),
        );
    }
    let run = w.run();
    assert_eq!(
        run.kinds(),
        [
            "WriteSecret",
            "MintKey",
            "WriteSecret",
            "WriteStatus",
            "DeprecateKey",
            "WriteStatus"
        ],
        "the intent goes on the Secret's record"
    );
    assert_eq!(w.status().retiring_keys[0].id, lost.id);
    w.check_invariant().expect("invariant");
}

#[test]
fn wrong_non_key_fields_are_patched_without_a_new_key() {
    let mut w = World::registered();
    let key = w.secret_key();
    if let Some(s) = w.secret.as_mut() {
        if let Some(data) = s.data.as_mut() {
            data.insert(
                secret::BASE_URL_FIELD.into(),
                k8s_openapi::ByteString(b"https://elsewhere".to_vec()),
            );
        }
        if let Some(labels) = s.metadata.labels.as_mut() {
            labels.remove(secret::AGENT_NAME_LABEL);
        }
    }
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteSecret"]);
    let Effect::WriteSecret(write) = &run.actions[0] else {
        panic!("secret expected");
    };
    assert_eq!(write.key, KeyWrite::Keep);
    assert_eq!(write.purpose, WritePurpose::Repair);
    assert_eq!(w.secret_key(), key, "the key is untouched");
    assert_eq!(
        w.secret_data(secret::BASE_URL_FIELD).as_deref(),
        Some(BASE_URL)
    );
    assert!(w.run().actions.is_empty());
}

#[test]
fn an_unreadable_retiring_list_falls_back_to_status() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "1");
    w.run();
    let retiring = w.status().retiring_keys.clone();
    assert_eq!(retiring.len(), 1);
    w.secret_annotations_mut()
        .insert(secret::RETIRING_KEYS_ANNOTATION.into(), "{garbage".into());
    let run = w.run();
    assert_eq!(
        run.kinds(),
        ["WriteSecret"],
        "the record is rewritten from status"
    );
    assert_eq!(w.status().retiring_keys, retiring);
    w.check_invariant().expect("invariant");
}

// ----- 8. orphan sweep --------------------------------------------------------------------------

#[test]
fn a_leftover_mint_intent_sweeps_undelivered_keys() {
    let mut w = World::registered();
    let agent = w.status().agent_id.expect("registered");
    // A previous reconcile wrote the intent and minted, then died.
    w.status_mut().mint_started_at = Some(w.now);
    let now = w.now;
    let (stray, _) = w.al.new_key(now);
    w.al.agent_mut(&agent)
        .keys
        .push((stray.clone(), "al_agent_lost".into()));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchKeys", "RevokeKey", "WriteStatus"]);
    assert_eq!(
        run.actions[1],
        Effect::RevokeKey {
            agent_id: agent.clone(),
            key_id: stray.id.clone()
        }
    );
    assert_eq!(run.event_reasons(), ["KeyRevoked"]);
    assert_eq!(w.status().mint_started_at, None);
    assert_eq!(
        w.al.key(&agent, &stray.id).map(|k| k.status),
        Some(KeyStatus::Revoked)
    );
    w.check_invariant().expect("invariant");
}

#[test]
fn a_leftover_mint_intent_without_strays_is_just_cleared() {
    let mut w = World::registered();
    w.status_mut().mint_started_at = Some(w.now);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchKeys", "WriteStatus"]);
    assert_eq!(w.status().mint_started_at, None);
}

// ----- 11. status -------------------------------------------------------------------------------

#[test]
fn conditions_keep_their_transition_time_unless_the_status_flips() {
    let mut w = World::registered();
    let ready_at = w.status().conditions[0].last_transition_time.clone();
    w.advance(hours(1));
    // Synced flips (False), Ready does not.
    w.faults.push(Fault::Fail(
        "FetchAgent",
        ErrorClass::Unavailable { retry_after: None },
    ));
    w.run();
    let status = w.status();
    assert_eq!(status.conditions[0].last_transition_time, ready_at);
    assert_eq!(
        w.condition("Synced"),
        Some(("False".into(), "AgentLatticeUnavailable".into()))
    );
    let synced_at = status.conditions[1].last_transition_time.clone();
    assert_ne!(synced_at, ready_at);
    assert_eq!(
        synced_at.0.subsec_nanosecond(),
        0,
        "whole seconds, like metav1.Time"
    );
    // Back to normal.
    w.advance(mins(1));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "FetchKeys", "WriteStatus"]);
    assert_eq!(w.status().conditions[0].last_transition_time, ready_at);
    assert!(conditions_equal_ignoring_time(
        &w.status().conditions,
        &World::registered().status().conditions
    ));
}

#[test]
fn a_registered_agent_stays_ready_while_syncing_fails() {
    let mut w = World::registered();
    w.annotate(ROTATE_ANNOTATION, "1");
    w.faults
        .push(Fault::Fail("FetchAgent", ErrorClass::ServiceKeyRejected));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(run.done().requeue, Requeue::After(mins(5)));
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
    assert_eq!(
        w.condition("Synced"),
        Some(("False".into(), "ServiceKeyRejected".into()))
    );
}

#[test]
fn error_classes_map_to_conditions_and_requeues() {
    let secs = jiff::SignedDuration::from_secs;
    let cases: Vec<(ErrorClass, &str, Requeue)> = vec![
        (
            ErrorClass::ServiceKeyMissing,
            "ServiceKeyMissing",
            Requeue::After(mins(5)),
        ),
        (
            ErrorClass::ServiceKeyRejected,
            "ServiceKeyRejected",
            Requeue::After(mins(5)),
        ),
        (
            ErrorClass::RateLimited {
                retry_after: Some(secs(7)),
            },
            "RateLimited",
            Requeue::Backoff {
                at_least: Some(secs(7)),
            },
        ),
        (
            ErrorClass::Unavailable { retry_after: None },
            "AgentLatticeUnavailable",
            Requeue::Backoff { at_least: None },
        ),
        (
            ErrorClass::Transient,
            "TransientError",
            Requeue::Backoff { at_least: None },
        ),
        (
            ErrorClass::Invalid("validation_failed".into()),
            "InvalidRequest",
            Requeue::After(mins(10)),
        ),
        (
            ErrorClass::Conflict("agent_key_limit_reached".into()),
            "AgentLatticeConflict",
            Requeue::After(mins(10)),
        ),
    ];
    for (class, reason, requeue) in cases {
        let mut w = World::default();
        w.faults.push(Fault::Fail("Register", class.clone()));
        let run = w.run();
        assert_eq!(run.kinds(), ["Register", "WriteStatus"], "{reason}");
        assert_eq!(run.done().requeue, requeue, "{reason}");
        assert_eq!(run.done().failure.as_ref().map(|f| &f.class), Some(&class));
        assert_eq!(w.ready(), Some(("False".into(), reason.into())), "{reason}");
        assert_eq!(w.condition("Synced"), Some(("False".into(), reason.into())));
        assert!(w.al.agents.is_empty());
    }
}

#[test]
fn a_failed_status_write_is_not_retried_in_the_same_reconcile() {
    let mut w = World::default();
    w.faults
        .push(Fault::Fail("WriteStatus", ErrorClass::Transient));
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    assert!(run.done().failure.is_some());
    // The next reconcile recovers status from the Secret.
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["StatusRecovered"]);
    w.check_invariant().expect("invariant");
}

#[test]
fn a_failed_status_write_for_an_invalid_spec_is_not_retried_in_the_same_reconcile() {
    let mut w = World::new(named(&"n".repeat(60), "payments"));
    w.faults
        .push(Fault::Fail("WriteStatus", ErrorClass::Transient));
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.done().requeue, Requeue::Backoff { at_least: None });
    assert!(run.done().failure.is_some());
}

#[test]
fn a_resource_without_uid_is_refused() {
    let mut r = resource();
    r.metadata.uid = None;
    let o = Observed::new(t0(), settings(), r, crate::secret::SecretView::Absent);
    let Step::Settle(done) = next_step(&o) else {
        panic!("settled expected");
    };
    assert!(done.failure.is_some());
}

#[test]
fn a_minted_key_that_cannot_be_delivered_is_revoked_at_once() {
    // A stale cache shows no Secret: the lost-key path mints, then its create finds the Secret
    // (409 AlreadyExists; the executor reads it and plans again). The Secret's key still works,
    // so the new key will never be delivered: it is revoked before the reconcile ends.
    let mut w = World::registered();
    let kept = w.secret.clone().expect("Secret");
    let kept_key = w.status().active_key.expect("key").id;
    w.secret = None;
    let mut o = w.observe();
    w.secret = Some(kept.clone());
    let mut held = std::collections::BTreeMap::new();
    let mut kinds = Vec::new();
    let mut events = Vec::new();
    for _ in 0..32 {
        match next_step(&o) {
            Step::Perform { effect, events: e } => {
                if let Effect::WriteSecret(write) = &effect
                    && write.precondition == Precondition::Create
                {
                    kinds.push("AlreadyExists");
                    o.secret = secret::SecretView::observe(&secret::cache_form(kept.clone()), UID);
                    continue;
                }
                let result = w.perform(&effect, &mut held);
                kinds.push(effect.kind());
                if result.is_ok() {
                    events.extend(e.into_iter().map(|e| e.reason));
                }
                o.record(&effect, result);
            }
            Step::Settle(_) => break,
        }
    }
    assert_eq!(
        kinds,
        [
            "WriteStatus",
            "MintKey",
            "FetchKeys",
            "AlreadyExists",
            "RevokeKey",
            "WriteStatus"
        ]
    );
    assert_eq!(events, ["KeyRevoked"]);
    assert_eq!(
        w.secret_annotation(secret::KEY_ID_ANNOTATION).as_deref(),
        Some(kept_key.as_str())
    );
    w.check_invariant().expect("invariant");
    assert_eq!(w.status().mint_started_at, None);
}

/// A reconcile that registers has just read the agent (it made it): its next drift read is a full
/// resync interval away, even when the last read this process knew of was earlier — the spread
/// first read after a start (design §3.1 step 6) is for resources registered before the start.
/// (Found in the `scale` benchmark: with one reconcile per new agent, every agent created after a
/// start got a drift read within the first interval.)
#[test]
fn a_registration_counts_as_the_drift_read() {
    let mut w = World::default();
    // As the controller does for a uid it has not read yet: the last read one interval before a
    // point of the first interval after the start, here 9 minutes ago.
    w.last_remote_check = Some(schedule::add(w.now, -mins(9)));
    let run = w.run();
    assert!(run.kinds().contains(&"Register"), "{:?}", run.kinds());
    assert!(run.done().remote_checked);
    assert_eq!(run.done().requeue, Requeue::After(mins(10)));
}
