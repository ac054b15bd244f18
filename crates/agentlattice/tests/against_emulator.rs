//! The client against the real emulator (`agentlattice-emulator`, in process). The two crates share
//! no types: a disagreement about the wire contract fails here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{
    ActionRequest, ActionStatus, AgentClient, AgentKey, AgentStatus, Attempt, ClientConfig, Error,
    IdempotencyKey, KeyStatus, ListAgentsQuery, Operation, ProvisionerClient, RegisterAgent,
    RetryPolicy, ServiceKey, UpdateAgent,
};
use agentlattice_emulator::{Emulator, EmulatorConfig, FaultConfig, RouteFaults};
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<(Operation, String)>>>;

struct World {
    emu: Emulator,
    config: ClientConfig,
    client: ProvisionerClient,
    service_key_id: String,
    log: Log,
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new()
        .max_attempts(4)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100))
        .max_retry_after(Duration::from_secs(5))
}

async fn world() -> World {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let svc = emu.create_service_key("client-tests");
    let log: Log = Arc::default();
    let sink = log.clone();
    let config = ClientConfig::new(emu.base_url())
        .retry(fast_retries())
        .request_timeout(Duration::from_secs(5))
        .observer(Arc::new(move |a: &Attempt<'_>| {
            sink.lock()
                .unwrap()
                .push((a.operation, a.outcome.label().into_owned()));
        }));
    let client = ProvisionerClient::new(&config, ServiceKey::new(svc.api_key).unwrap()).unwrap();
    World {
        emu,
        config,
        client,
        service_key_id: svc.id,
        log,
    }
}

fn bot(name: &str) -> RegisterAgent {
    RegisterAgent::new(name)
        .capabilities(["deploy.staging", "rollback.staging"])
        .description("a test agent")
        .metadata("k8s.namespace", "payments")
        .metadata("k8s.uid", format!("uid-{name}"))
}

fn idem(value: &str) -> IdempotencyKey {
    IdempotencyKey::new(value).unwrap()
}

/// A service key of the right shape that the emulator never issued.
fn unknown_service_key() -> ServiceKey {
    ServiceKey::new(format!("al_svc_{}", "Z".repeat(40))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Every operation

#[tokio::test]
async fn every_provisioning_operation() {
    let w = world().await;
    let c = &w.client;

    // register
    let reg = c.register(&bot("payments-deploy-bot"), None).await.unwrap();
    assert!(!reg.replayed);
    let key = reg
        .api_key
        .clone()
        .expect("a new registration returns the key");
    assert_eq!(key.public_prefix(), reg.key_prefix);
    let agent = &reg.agent;
    assert_eq!(agent.name, "payments-deploy-bot");
    assert_eq!(agent.status, AgentStatus::Active);
    assert_eq!(
        agent.capabilities,
        vec!["deploy.staging", "rollback.staging"]
    );
    assert_eq!(agent.metadata["k8s.uid"], "uid-payments-deploy-bot");
    assert_eq!(agent.description.as_deref(), Some("a test agent"));
    assert_eq!(agent.created_by.as_deref(), Some(w.service_key_id.as_str()));
    assert_eq!(agent.version, 1);
    let id = agent.id.clone();

    // get
    let got = c.get_agent(&id).await.unwrap();
    assert_eq!(&got, agent);

    // list / find
    let page = c
        .list_agents(&ListAgentsQuery::new().name("payments-deploy-bot"))
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, id);
    assert!(!page.has_more);
    let found = c
        .find_agents_by_name("payments-deploy-bot", false)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        c.find_agents_by_name("nobody", true)
            .await
            .unwrap()
            .is_empty()
    );

    // update (a change bumps the version; the same body again does not)
    let update = UpdateAgent::new()
        .capabilities(["deploy.staging"])
        .description(None);
    let updated = c.update_agent(&id, &update).await.unwrap();
    assert_eq!(updated.capabilities, vec!["deploy.staging"]);
    assert_eq!(updated.description, None);
    assert_eq!(updated.version, 2);
    assert_eq!(c.update_agent(&id, &update).await.unwrap().version, 2);
    let mut md = BTreeMap::new();
    md.insert("k8s.uid".to_owned(), "uid-2".to_owned());
    assert_eq!(
        c.update_agent(&id, &UpdateAgent::new().metadata(md.clone()))
            .await
            .unwrap()
            .metadata,
        md
    );

    // halt / resume, both idempotent
    let halted = c.halt_agent(&id).await.unwrap();
    assert_eq!(halted.status, AgentStatus::Halted);
    assert!(halted.halted_at.is_some());
    assert_eq!(c.halt_agent(&id).await.unwrap().status, AgentStatus::Halted);
    assert_eq!(
        c.resume_agent(&id).await.unwrap().status,
        AgentStatus::Active
    );
    assert_eq!(
        c.resume_agent(&id).await.unwrap().status,
        AgentStatus::Active
    );

    // keys: mint, list, deprecate, undeprecate, revoke
    let minted = c.mint_key(&id, Some("rotation-1")).await.unwrap();
    assert_eq!(minted.key.name.as_deref(), Some("rotation-1"));
    assert_eq!(minted.key.status, KeyStatus::Active);
    assert_eq!(minted.api_key.public_prefix(), minted.key.key_prefix);
    assert_ne!(minted.api_key, key);
    let keys = c.list_keys(&id).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        vec![reg.key_id.as_str(), minted.key.key_id.as_str()]
    );
    let dep = c.deprecate_key(&id, &reg.key_id).await.unwrap();
    assert_eq!(dep.status, KeyStatus::Deprecated);
    let again = c.deprecate_key(&id, &reg.key_id).await.unwrap();
    assert_eq!(again.deprecated_at, dep.deprecated_at, "not refreshed");
    let undep = c.undeprecate_key(&id, &reg.key_id).await.unwrap();
    assert_eq!(undep.status, KeyStatus::Active);
    assert_eq!(undep.deprecated_at, None);
    let revoked = c.revoke_key(&id, &reg.key_id, false).await.unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    let again = c.revoke_key(&id, &reg.key_id, false).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at, "idempotent");

    // revoke agent: cascades to every key; idempotent
    let gone = c.revoke_agent(&id).await.unwrap();
    assert_eq!(gone.status, AgentStatus::Revoked);
    assert_eq!(
        c.revoke_agent(&id).await.unwrap().revoked_at,
        gone.revoked_at
    );
    assert!(
        c.list_keys(&id)
            .await
            .unwrap()
            .iter()
            .all(|k| k.status == KeyStatus::Revoked)
    );
    assert!(
        c.find_agents_by_name("payments-deploy-bot", false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.find_agents_by_name("payments-deploy-bot", true)
            .await
            .unwrap()
            .len(),
        1
    );

    // The observer saw the contract's operation names, the same the emulator counts by.
    let ops: Vec<&str> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(o, _)| o.as_str())
        .collect();
    for op in [
        "register",
        "get_agent",
        "list_agents",
        "update_agent",
        "halt_agent",
        "resume_agent",
        "mint_key",
        "list_keys",
        "deprecate_key",
        "undeprecate_key",
        "revoke_key",
        "revoke_agent",
    ] {
        assert!(ops.contains(&op), "{op}");
        assert!(w.emu.request_count(op) > 0, "{op}");
    }

    // Every change is in the audit trail, attributed to our service key.
    let audit = w.emu.audit();
    let by_us: Vec<_> = audit
        .iter()
        .filter(|e| e.actor.id.as_deref() == Some(w.service_key_id.as_str()))
        .map(|e| e.operation.as_str())
        .collect();
    for op in [
        "register",
        "update_agent",
        "halt_agent",
        "resume_agent",
        "mint_key",
        "deprecate_key",
        "undeprecate_key",
        "revoke_key",
        "revoke_agent",
    ] {
        assert!(by_us.contains(&op), "{op}: {by_us:?}");
    }
}

#[test]
fn operation_names_match_the_emulator() {
    let ours: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(ours, agentlattice_emulator::OPERATIONS.to_vec());
}

#[tokio::test]
async fn list_pages() {
    let w = world().await;
    for i in 0..3 {
        w.client
            .register(&bot(&format!("bot-{i}")), None)
            .await
            .unwrap();
    }
    let first = w
        .client
        .list_agents(&ListAgentsQuery::new().limit(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.total, 3);
    assert!(first.has_more);
    let second = w
        .client
        .list_agents(&ListAgentsQuery::new().limit(2).offset(2))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(!second.has_more);
    assert_eq!(second.items[0].name, "bot-2");
}

#[tokio::test]
async fn agent_operations() {
    let w = world().await;
    let reg = w.client.register(&bot("actor"), None).await.unwrap();
    let agent = w.client.agent_client(reg.api_key.clone().unwrap()).unwrap();

    let me = agent.whoami().await.unwrap();
    assert_eq!(me.config_id, reg.agent.id);
    assert_eq!(me.name, "actor");
    assert!(me.is_active);
    assert_eq!(me.cb_state.as_deref(), Some("closed"));
    assert_eq!(me.key_id.as_deref(), Some(reg.key_id.as_str()));
    assert_eq!(me.capabilities, vec!["deploy.staging", "rollback.staging"]);
    assert_eq!(me.org_id.as_deref(), Some(w.emu.snapshot().org_id.as_str()));
    assert!(!me.key_deprecated);

    let done = agent
        .execute_action(
            &ActionRequest::new("deploy.staging").data_accessed(serde_json::json!({"table": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ActionStatus::Executed);
    assert!(!done.audit_event_id.is_empty());

    let denied = agent
        .execute_action(&ActionRequest::new("delete.production"))
        .await
        .unwrap();
    assert_eq!(denied.status, ActionStatus::Denied);
    assert_eq!(
        denied.denial_reason.as_deref(),
        Some("capability_not_granted")
    );

    // A replayed event id gets the first result.
    let first = agent
        .execute_action(&ActionRequest::new("deploy.staging").event_id("evt-42"))
        .await
        .unwrap();
    let replay = agent
        .execute_action(&ActionRequest::new("deploy.staging").event_id("evt-42"))
        .await
        .unwrap();
    assert_eq!(first.audit_event_id, replay.audit_event_id);

    // The key's use shows up in the provisioning view.
    let keys = w.client.list_keys(&reg.agent.id).await.unwrap();
    assert!(keys[0].last_used_at.is_some());
    assert!(
        w.client
            .get_agent(&reg.agent.id)
            .await
            .unwrap()
            .last_used_at
            .is_some()
    );

    // A separately built AgentClient works the same.
    let standalone = AgentClient::new(&w.config, reg.api_key.unwrap()).unwrap();
    assert_eq!(standalone.whoami().await.unwrap().config_id, reg.agent.id);
}

#[tokio::test]
async fn deprecated_keys_are_flagged_to_the_workload() {
    let w = world().await;
    let reg = w.client.register(&bot("old-key"), None).await.unwrap();
    let agent = w.client.agent_client(reg.api_key.unwrap()).unwrap();
    w.client
        .deprecate_key(&reg.agent.id, &reg.key_id)
        .await
        .unwrap();
    assert!(agent.whoami().await.unwrap().key_deprecated);
    let r = agent
        .execute_action(&ActionRequest::new("deploy.staging"))
        .await
        .unwrap();
    assert!(r.key_deprecated);
    w.client
        .undeprecate_key(&reg.agent.id, &reg.key_id)
        .await
        .unwrap();
    assert!(!agent.whoami().await.unwrap().key_deprecated);
}

// ---------------------------------------------------------------------------------------------
// Idempotent registration

#[tokio::test]
async fn idempotent_replay() {
    let w = world().await;
    let key = idem("lattice-operator/uid-1/");
    let first = w
        .client
        .register(&bot("replayed"), Some(&key))
        .await
        .unwrap();
    assert!(first.api_key.is_some());
    assert!(!first.replayed);

    // Same key, same body (capabilities in another order: compared as a set) → same agent, no key.
    let same = bot("replayed").capabilities(["rollback.staging", "deploy.staging"]);
    let replay = w.client.register(&same, Some(&key)).await.unwrap();
    assert!(replay.replayed);
    assert!(replay.api_key.is_none());
    assert_eq!(replay.agent.id, first.agent.id);
    assert_eq!(replay.key_id, first.key_id);
    assert_eq!(w.emu.snapshot().agents_named("replayed").count(), 1);

    // Same key, different body → 422 idempotency_key_body_mismatch.
    let err = w
        .client
        .register(&bot("replayed").description("changed"), Some(&key))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.is_code("idempotency_key_body_mismatch"), "{err}");
    assert_eq!(err.category(), "validation");

    // Without the header, the same name is a conflict.
    let err = w.client.register(&bot("replayed"), None).await.unwrap_err();
    assert!(err.is_conflict_code("agent_name_exists"), "{err}");

    // Agent revoked since → 409 idempotency_key_agent_revoked; the name is free again.
    w.client.revoke_agent(&first.agent.id).await.unwrap();
    let err = w
        .client
        .register(&bot("replayed"), Some(&key))
        .await
        .unwrap_err();
    assert!(
        err.is_conflict_code("idempotency_key_agent_revoked"),
        "{err}"
    );
    let again = w
        .client
        .register(&bot("replayed"), Some(&idem("lattice-operator/uid-1/next")))
        .await
        .unwrap();
    assert_ne!(again.agent.id, first.agent.id);
}

#[tokio::test]
async fn idempotency_survives_a_service_key_rotation() {
    let w = world().await;
    let key = idem("rotation-proof");
    let first = w
        .client
        .register(&bot("rotated"), Some(&key))
        .await
        .unwrap();
    let svc2 = w.emu.create_service_key("second");
    w.emu.revoke_service_key(&w.service_key_id).unwrap();
    let c2 = w
        .client
        .with_service_key(ServiceKey::new(svc2.api_key).unwrap())
        .unwrap();
    let replay = c2.register(&bot("rotated"), Some(&key)).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.agent.id, first.agent.id);
}

#[tokio::test]
async fn register_retried_after_a_committed_500_replays() {
    let w = world().await;
    w.emu.set_faults(
        FaultConfig::new().route("register", RouteFaults::fail_next_after_commit(1, 500)),
    );
    let reg = w
        .client
        .register(&bot("committed"), Some(&idem("commit-1")))
        .await
        .unwrap();
    // The first attempt committed and answered 500; the retry is a replay: same agent, no key.
    assert!(reg.replayed);
    assert!(reg.api_key.is_none());
    assert_eq!(w.emu.request_count("register"), 2);
    assert_eq!(w.emu.snapshot().agents_named("committed").count(), 1);
}

#[tokio::test]
async fn register_after_a_lost_response() {
    let w = world().await;
    // With an idempotency key the client retries and gets the replay.
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::drop_response_next(1)));
    let reg = w
        .client
        .register(&bot("dropped"), Some(&idem("drop-1")))
        .await
        .unwrap();
    assert!(reg.replayed);
    assert_eq!(w.emu.request_count("register"), 2);

    // Without one it does not retry: the error says the request may have committed, and it did.
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::drop_response_next(1)));
    let err = w
        .client
        .register(&bot("dropped-2"), None)
        .await
        .unwrap_err();
    assert!(err.may_have_committed(), "{err:?}");
    assert!(
        matches!(err, Error::Transport { sent: true, .. }),
        "{err:?}"
    );
    assert_eq!(w.emu.request_count("register"), 3);
    assert!(w.emu.snapshot().live_agent_named("dropped-2").is_some());
}

// ---------------------------------------------------------------------------------------------
// Retries and faults

#[tokio::test]
async fn retries_injected_5xx() {
    let w = world().await;
    let reg = w.client.register(&bot("flaky"), None).await.unwrap();
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::fail_next(2, 503)));
    w.client.get_agent(&reg.agent.id).await.unwrap();
    assert_eq!(w.emu.request_count("get_agent"), 3);

    w.emu
        .set_faults(FaultConfig::new().route("list_keys", RouteFaults::fail_next(1, 500)));
    assert_eq!(w.client.list_keys(&reg.agent.id).await.unwrap().len(), 1);
    assert_eq!(w.emu.request_count("list_keys"), 2);

    // Idempotent calls survive a dropped response.
    w.emu
        .set_faults(FaultConfig::new().route("halt_agent", RouteFaults::drop_response_next(1)));
    let halted = w.client.halt_agent(&reg.agent.id).await.unwrap();
    assert_eq!(halted.status, AgentStatus::Halted);
    assert_eq!(w.emu.request_count("halt_agent"), 2);

    let labels: Vec<String> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _)| *op == Operation::GetAgent)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(labels, vec!["503", "503", "200"]);
}

#[tokio::test]
async fn mint_is_not_retried_after_a_committed_500() {
    let w = world().await;
    let reg = w.client.register(&bot("minty"), None).await.unwrap();
    w.emu.set_faults(
        FaultConfig::new().route("mint_key", RouteFaults::fail_next_after_commit(1, 500)),
    );
    let err = w.client.mint_key(&reg.agent.id, None).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.code(), Some("internal_error"));
    assert!(err.may_have_committed());
    assert_eq!(w.emu.request_count("mint_key"), 1);
    // The orphan exists, as the contract warns; the caller can find and revoke it.
    let keys = w.client.list_keys(&reg.agent.id).await.unwrap();
    assert_eq!(keys.len(), 2);

    // 503 did not commit: retried.
    w.emu
        .set_faults(FaultConfig::new().route("mint_key", RouteFaults::fail_next(1, 503)));
    w.client.mint_key(&reg.agent.id, None).await.unwrap();
    assert_eq!(w.emu.request_count("mint_key"), 3);
    assert_eq!(w.client.list_keys(&reg.agent.id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn honours_retry_after_from_the_emulator() {
    let w = world().await;
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::throttle_next(1, 1)));
    let start = Instant::now();
    // Even without an idempotency key: a 429 never committed.
    let reg = w.client.register(&bot("throttled"), None).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(reg.api_key.is_some());
    assert_eq!(w.emu.request_count("register"), 2);
}

#[tokio::test]
async fn retry_after_gate_is_shared_with_the_emulator() {
    let w = world().await;
    let reg = w.client.register(&bot("gated"), None).await.unwrap();
    let config = w.config.clone().retry(RetryPolicy::no_retries());
    let svc = w.emu.create_service_key("gate");
    let a = ProvisionerClient::new(&config, ServiceKey::new(svc.api_key).unwrap()).unwrap();
    let b = a.clone();
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::throttle_next(1, 2)));
    let start = Instant::now();
    let err = a.get_agent(&reg.agent.id).await.unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(err.code(), Some("rate_limit_exceeded"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    // The clone's list call is another operation, but the gate covers every call of the client.
    b.list_keys(&reg.agent.id).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn timeouts_from_injected_latency() {
    let w = world().await;
    let reg = w.client.register(&bot("slow"), None).await.unwrap();
    let config = w
        .config
        .clone()
        .request_timeout(Duration::from_millis(300))
        .retry(fast_retries().max_attempts(2));
    let svc = w.emu.create_service_key("slow");
    let c = ProvisionerClient::new(&config, ServiceKey::new(svc.api_key).unwrap()).unwrap();
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::latency(1500, 0)));
    let start = Instant::now();
    let err = c.get_agent(&reg.agent.id).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.category(), "timeout");
    assert!(start.elapsed() < Duration::from_millis(1500));
    // Idempotent: tried twice. (Counted on the client side: the emulator counts a request when it
    // finishes, and these were abandoned during the injected latency.)
    let attempts = |op: Operation| -> Vec<String> {
        w.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, l)| l.clone())
            .collect()
    };
    assert_eq!(attempts(Operation::GetAgent), vec!["timeout", "timeout"]);

    // Mint with latency: a timeout after sending is not retried.
    w.emu
        .set_faults(FaultConfig::new().route("mint_key", RouteFaults::latency(1500, 0)));
    let err = c.mint_key(&reg.agent.id, None).await.unwrap_err();
    assert!(err.is_timeout());
    assert!(err.may_have_committed());
    assert_eq!(attempts(Operation::MintKey), vec!["timeout"]);
}

// ---------------------------------------------------------------------------------------------
// Every error code the typed client can provoke

#[tokio::test]
async fn provisioning_error_codes() {
    let w = world().await;
    let c = &w.client;
    let reg = c.register(&bot("errors"), None).await.unwrap();
    let id = reg.agent.id.clone();
    let missing = "00000000-0000-4000-8000-000000000000";

    let check = |err: Error, status: u16, code: &str| {
        assert_eq!(err.status(), Some(status), "{err}");
        assert_eq!(err.code(), Some(code), "{err}");
        assert!(
            err.request_id().is_some(),
            "every response carries X-Request-Id: {err}"
        );
        let shown = err.to_string();
        assert!(
            !shown.contains("al_svc_") && !shown.contains("al_agent_"),
            "{shown}"
        );
    };

    // 401
    let stranger = ProvisionerClient::new(&w.config, unknown_service_key()).unwrap();
    check(
        stranger.get_agent(&id).await.unwrap_err(),
        401,
        "invalid_key",
    );

    // 404
    check(
        c.get_agent(missing).await.unwrap_err(),
        404,
        "agent_not_found",
    );
    check(
        c.deprecate_key(&id, missing).await.unwrap_err(),
        404,
        "key_not_found",
    );
    let prefixed = ProvisionerClient::new(
        &w.config
            .clone()
            .base_url(format!("{}/nowhere", w.emu.base_url())),
        ServiceKey::new(w.emu.create_service_key("p").api_key).unwrap(),
    )
    .unwrap();
    check(prefixed.get_agent(&id).await.unwrap_err(), 404, "not_found");
    assert!(c.get_agent(missing).await.unwrap_err().is_not_found());

    // 409
    check(
        c.register(&bot("errors"), None).await.unwrap_err(),
        409,
        "agent_name_exists",
    );
    check(
        c.revoke_key(&id, &reg.key_id, false).await.unwrap_err(),
        409,
        "last_active_key",
    );
    for _ in 0..9 {
        c.mint_key(&id, None).await.unwrap();
    }
    check(
        c.mint_key(&id, None).await.unwrap_err(),
        409,
        "agent_key_limit_reached",
    );
    // Forced revocation of the last key is allowed.
    let lone = c.register(&bot("lone"), None).await.unwrap();
    let forced = c
        .revoke_key(&lone.agent.id, &lone.key_id, true)
        .await
        .unwrap();
    assert_eq!(forced.status, KeyStatus::Revoked);
    check(
        c.deprecate_key(&lone.agent.id, &lone.key_id)
            .await
            .unwrap_err(),
        409,
        "key_revoked",
    );
    check(
        c.undeprecate_key(&lone.agent.id, &lone.key_id)
            .await
            .unwrap_err(),
        409,
        "key_revoked",
    );
    c.revoke_agent(&lone.agent.id).await.unwrap();
    check(
        c.update_agent(&lone.agent.id, &UpdateAgent::new().capabilities(["x"]))
            .await
            .unwrap_err(),
        409,
        "agent_revoked",
    );
    check(
        c.halt_agent(&lone.agent.id).await.unwrap_err(),
        409,
        "agent_revoked",
    );
    check(
        c.resume_agent(&lone.agent.id).await.unwrap_err(),
        409,
        "agent_revoked",
    );
    check(
        c.mint_key(&lone.agent.id, None).await.unwrap_err(),
        409,
        "agent_revoked",
    );

    // 413
    let huge = bot("huge").description("x".repeat(70 * 1024));
    check(
        c.register(&huge, None).await.unwrap_err(),
        413,
        "payload_too_large",
    );

    // 422
    check(
        c.register(&RegisterAgent::new("Not A Valid Name!"), None)
            .await
            .unwrap_err(),
        422,
        "validation_failed",
    );
    check(
        c.register(
            &RegisterAgent::new("dup-caps").capabilities(["a", "a"]),
            None,
        )
        .await
        .unwrap_err(),
        422,
        "validation_failed",
    );
    check(
        c.update_agent(&id, &UpdateAgent::new()).await.unwrap_err(),
        422,
        "validation_failed",
    );
    check(
        c.list_agents(&ListAgentsQuery::new().limit(0))
            .await
            .unwrap_err(),
        422,
        "validation_failed",
    );
    check(
        c.list_agents(&ListAgentsQuery::new().limit(1001))
            .await
            .unwrap_err(),
        422,
        "validation_failed",
    );

    // 429, 500, 503 (injected; no retries so the status comes back)
    let once = ProvisionerClient::new(
        &w.config.clone().retry(RetryPolicy::no_retries()),
        ServiceKey::new(w.emu.create_service_key("once").api_key).unwrap(),
    )
    .unwrap();
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::throttle_next(1, 1)));
    let err = once.get_agent(&id).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    check(err, 429, "rate_limit_exceeded");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::fail_next(1, 500)));
    check(
        once.get_agent(&id).await.unwrap_err(),
        500,
        "internal_error",
    );
    w.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::fail_next(1, 503)));
    let err = once.get_agent(&id).await.unwrap_err();
    assert_eq!(err.category(), "unavailable");
    check(err, 503, "unavailable");
}

#[tokio::test]
async fn agent_error_codes() {
    let w = world().await;
    let reg = w.client.register(&bot("agent-errors"), None).await.unwrap();
    let agent = w.client.agent_client(reg.api_key.clone().unwrap()).unwrap();

    // 403 agent_halted: whoami still answers.
    w.client.halt_agent(&reg.agent.id).await.unwrap();
    let err = agent
        .execute_action(&ActionRequest::new("deploy.staging"))
        .await
        .unwrap_err();
    assert!(err.is_forbidden());
    assert_eq!(err.code(), Some("agent_halted"));
    assert!(!agent.whoami().await.unwrap().is_active);
    w.client.resume_agent(&reg.agent.id).await.unwrap();

    // 401 invalid_key for an agent key the server never issued.
    let stranger = AgentClient::new(
        &w.config,
        AgentKey::new(format!("al_agent_{}", "Q".repeat(40))).unwrap(),
    )
    .unwrap();
    let err = stranger.whoami().await.unwrap_err();
    assert!(err.is_unauthorized());
    assert_eq!(err.code(), Some("invalid_key"));

    // 401 key_revoked once the agent is revoked (the cascade reached its keys).
    w.client.revoke_agent(&reg.agent.id).await.unwrap();
    let err = agent.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("key_revoked"));
    assert_eq!(err.category(), "unauthorized");
}

#[tokio::test]
async fn revoked_service_key_is_refused_but_its_agents_keep_working() {
    let w = world().await;
    let reg = w.client.register(&bot("survivor"), None).await.unwrap();
    let agent = w.client.agent_client(reg.api_key.unwrap()).unwrap();
    w.emu.revoke_service_key(&w.service_key_id).unwrap();

    let err = w.client.register(&bot("after"), None).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("key_revoked"));
    assert!(!err.is_retryable());
    let err = w.client.get_agent(&reg.agent.id).await.unwrap_err();
    assert!(err.is_unauthorized() && err.is_code("key_revoked"));

    let me = agent.whoami().await.unwrap();
    assert_eq!(me.config_id, reg.agent.id);
    let r = agent
        .execute_action(&ActionRequest::new("deploy.staging"))
        .await
        .unwrap();
    assert_eq!(r.status, ActionStatus::Executed);
}

#[tokio::test]
async fn detail_wrapped_errors_are_read() {
    let w = world().await;
    w.emu.set_wrap_errors_in_detail(true);
    let reg = w.client.register(&bot("wrapped"), None).await.unwrap();
    let err = w
        .client
        .revoke_key(&reg.agent.id, &reg.key_id, false)
        .await
        .unwrap_err();
    assert!(err.is_conflict_code("last_active_key"), "{err}");
    assert!(err.message().is_some());
    let err = w
        .client
        .get_agent("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("agent_not_found"));
}
