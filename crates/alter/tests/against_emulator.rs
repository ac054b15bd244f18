//! The client against the real emulator, in process: every operation, every error code the typed
//! client can provoke, fault injection, idempotent replays. The emulator shares no type with the
//! client, so any wire disagreement fails here.

use std::time::Duration;

use alter::{
    AgentClient, AgentStatus, AgentType, AppClient, AppKey, ClientConfig, CreateAgent, Error,
    ErrorKind, IdempotencyKey, KeyStatus, ListAgentsQuery, RetryPolicy, Scopes, UpdateAgent,
};
use alter_emulator::scopes::{AGENTS_READ, AGENTS_WRITE};
use alter_emulator::{Emulator, EmulatorConfig, FaultConfig, RouteFaults};

struct Env {
    emu: Emulator,
    app_id: String,
    config: ClientConfig,
    client: AppClient,
}

async fn env() -> Env {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let app_id = emu.create_app("client-tests").id;
    let key = emu.create_app_key(&app_id, "ops", None).unwrap();
    let config = ClientConfig::new(emu.base_url()).app_id(&app_id).retry(
        RetryPolicy::new()
            .max_attempts(3)
            .base_delay(Duration::from_millis(5)),
    );
    let client = AppClient::new(&config, key.api_key.parse().unwrap()).unwrap();
    Env {
        emu,
        app_id,
        config,
        client,
    }
}

impl Env {
    fn key_with(&self, scopes: &[&str]) -> AppClient {
        let k = self
            .emu
            .create_app_key(&self.app_id, "scoped", Some(scopes))
            .unwrap();
        self.client
            .with_app_key(k.api_key.parse().unwrap())
            .unwrap()
    }
}

fn kind(e: Error) -> ErrorKind {
    e.kind()
}

#[tokio::test]
async fn the_agent_lifecycle() {
    let env = env().await;
    let c = &env.client;
    let ident = c.verify_app().await.unwrap();
    assert_eq!(ident.app_id, env.app_id);
    let request = CreateAgent::new("deploy-bot")
        .display_name("Deploy bot")
        .agent_type(AgentType::Service)
        .scope("github", ["repo:deploy"])
        .metadata("k8s.uid", "u-1");
    let idem = IdempotencyKey::new("lattice/u-1/").unwrap();
    let created = c.create_agent(&request, Some(&idem)).await.unwrap();
    let first_key = created
        .api_key
        .clone()
        .expect("a first create has the plaintext");
    let a = &created.agent;
    assert_eq!(
        (a.name.as_str(), a.agent_type, a.status, a.version),
        ("deploy-bot", AgentType::Service, AgentStatus::Active, 1)
    );
    assert_eq!(a.scope_lists().unwrap()["github"], ["repo:deploy"]);
    let replay = c.create_agent(&request, Some(&idem)).await.unwrap();
    assert!(replay.is_replay());
    assert_eq!(
        (replay.agent.id.as_str(), replay.key_id.as_str()),
        (a.id.as_str(), created.key_id.as_str())
    );
    assert_eq!(
        kind(
            c.create_agent(&request.clone().metadata("k8s.uid", "u-2"), Some(&idem))
                .await
                .unwrap_err()
        ),
        ErrorKind::IdempotencyBodyMismatch
    );
    assert_eq!(
        kind(c.create_agent(&request, None).await.unwrap_err()),
        ErrorKind::AgentNameExists
    );

    // Reads.
    c.create_agent(&CreateAgent::new("other-bot"), None)
        .await
        .unwrap();
    let page = c
        .list_agents(&ListAgentsQuery::new().limit(1))
        .await
        .unwrap();
    assert_eq!((page.agents.len(), page.total, page.has_more), (1, 2, true));
    let services = c
        .list_agents(&ListAgentsQuery::new().agent_type(AgentType::Service))
        .await
        .unwrap();
    assert_eq!(services.agents.len(), 1);
    let found = c
        .list_agents(&ListAgentsQuery::new().provider("github").search("DEPLOY"))
        .await
        .unwrap();
    assert_eq!(found.agents[0].id, a.id);
    assert_eq!(
        c.get_agent(&a.id).await.unwrap().display_name.as_deref(),
        Some("Deploy bot")
    );
    assert_eq!(
        c.get_agent_by_name("deploy-bot").await.unwrap().unwrap().id,
        a.id
    );
    assert!(c.get_agent_by_name("nobody").await.unwrap().is_none());
    assert_eq!(
        kind(
            c.get_agent("00000000-0000-4000-8000-000000000000")
                .await
                .unwrap_err()
        ),
        ErrorKind::AgentNotFound
    );

    // Updates: cosmetic, then scopes with optimistic concurrency, a staged narrowing.
    let meta = serde_json::json!({"k8s.uid": "u-1", "team": "payments"});
    let up = c
        .update_agent(
            &a.id,
            &UpdateAgent::new()
                .display_name("Deploy")
                .metadata(meta.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(up.version, 2);
    let wider = Scopes::from([(
        "github".to_owned(),
        vec!["repo:deploy".to_owned(), "repo:read".to_owned()],
    )]);
    let up = c
        .update_agent(&a.id, &UpdateAgent::new().scopes(wider, 2))
        .await
        .unwrap();
    assert_eq!(
        (up.version, up.scope_lists().unwrap()["github"].len()),
        (3, 2)
    );
    let narrower = Scopes::from([("github".to_owned(), vec!["repo:read".to_owned()])]);
    assert_eq!(
        kind(
            c.update_agent(&a.id, &UpdateAgent::new().scopes(narrower.clone(), 2))
                .await
                .unwrap_err()
        ),
        ErrorKind::ConcurrentUpdate
    );
    let staged = c
        .update_agent(
            &a.id,
            &UpdateAgent::new()
                .scopes(narrower.clone(), 3)
                .grace_seconds(600),
        )
        .await
        .unwrap();
    assert_eq!(staged.pending_scope_lists().unwrap(), narrower);
    assert!(staged.scopes_applies_at.is_some());

    // Suspend and resume; the workload side.
    let agent = c.agent_client(first_key.clone()).unwrap();
    assert_eq!(
        c.suspend_agent(&a.id).await.unwrap().status,
        AgentStatus::Inactive
    );
    assert_eq!(
        c.suspend_agent(&a.id).await.unwrap().version,
        5,
        "suspending twice is one change"
    );
    assert_eq!(
        agent.me().await.unwrap().agent.status,
        AgentStatus::Inactive
    );
    assert_eq!(
        kind(agent.resolve_identity().await.unwrap_err()),
        ErrorKind::AgentInactive
    );
    assert_eq!(
        kind(c.create_agent(&request, Some(&idem)).await.unwrap_err()),
        ErrorKind::IdempotencyAgentInactive
    );
    assert_eq!(
        c.resume_agent(&a.id).await.unwrap().status,
        AgentStatus::Active
    );
    let id = agent.resolve_identity().await.unwrap();
    assert_eq!(
        (id.app_id.as_str(), id.agent_id.as_deref()),
        (env.app_id.as_str(), Some(a.id.as_str()))
    );

    // Delete: cascade revoke, idempotent, revoked agents hidden unless asked for.
    let gone = c.delete_agent(&a.id).await.unwrap();
    assert_eq!(gone.status, AgentStatus::Revoked);
    assert_eq!(c.delete_agent(&a.id).await.unwrap().version, gone.version);
    assert_eq!(kind(agent.me().await.unwrap_err()), ErrorKind::KeyRevoked);
    assert_eq!(
        kind(c.get_agent(&a.id).await.unwrap_err()),
        ErrorKind::AgentNotFound
    );
    assert_eq!(
        c.get_agent_including_revoked(&a.id).await.unwrap().status,
        AgentStatus::Revoked
    );
    assert_eq!(
        kind(c.create_agent(&request, Some(&idem)).await.unwrap_err()),
        ErrorKind::IdempotencyAgentRevoked
    );
    assert!(
        c.list_keys(&a.id)
            .await
            .unwrap()
            .iter()
            .all(|k| k.status() == KeyStatus::Revoked)
    );
    assert_eq!(
        kind(c.mint_key(&a.id).await.unwrap_err()),
        ErrorKind::AgentNotFound
    );
    let listed = c
        .list_agents(&ListAgentsQuery::new().statuses([AgentStatus::Revoked]))
        .await
        .unwrap();
    assert_eq!(listed.agents.len(), 1);
}

#[tokio::test]
async fn the_key_lifecycle() {
    let env = env().await;
    let c = &env.client;
    let created = c
        .create_agent(&CreateAgent::new("rotating"), None)
        .await
        .unwrap();
    let id = created.agent.id.clone();
    let old_key = created.api_key.unwrap();
    let minted = c.mint_key(&id).await.unwrap();
    assert!(minted.api_key.matches_prefix(&minted.key.key_prefix));
    assert_eq!(minted.key.name, "rotating-2");

    // Deploy: the workload uses the new key; its last use is recorded.
    let new_agent = AgentClient::new(&env.config, minted.api_key.clone()).unwrap();
    let me = new_agent.me().await.unwrap();
    assert_eq!(
        (me.agent.id.as_str(), me.key_deprecated),
        (id.as_str(), false)
    );
    let keys = c.list_keys(&id).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].last_used_at.is_none() && keys[1].last_used_at.is_some());
    assert!(
        old_key.matches_prefix(&keys[0].key_prefix) && !old_key.matches_prefix(&keys[1].key_prefix)
    );

    // Deprecate the old key: it still works, with the advisory header.
    let old_agent = c.agent_client(old_key.clone()).unwrap();
    let dep = c.deprecate_key(&id, &created.key_id).await.unwrap();
    assert_eq!(dep.status(), KeyStatus::Deprecated);
    assert!(old_agent.me().await.unwrap().key_deprecated);
    assert_eq!(
        c.undeprecate_key(&id, &created.key_id)
            .await
            .unwrap()
            .status(),
        KeyStatus::Active
    );
    assert!(!old_agent.me().await.unwrap().key_deprecated);

    // Revoke: the guard, force, idempotence, terminal state.
    let r = c.revoke_key(&id, &created.key_id, false).await.unwrap();
    assert_eq!(r.status(), KeyStatus::Revoked);
    assert_eq!(
        c.revoke_key(&id, &created.key_id, false)
            .await
            .unwrap()
            .revoked_at,
        r.revoked_at
    );
    assert_eq!(
        kind(old_agent.me().await.unwrap_err()),
        ErrorKind::KeyRevoked
    );
    assert_eq!(
        kind(
            c.revoke_key(&id, &minted.key.key_id, false)
                .await
                .unwrap_err()
        ),
        ErrorKind::LastActiveKey
    );
    assert_eq!(
        kind(c.deprecate_key(&id, &created.key_id).await.unwrap_err()),
        ErrorKind::KeyAlreadyRevoked
    );
    assert_eq!(
        kind(
            c.revoke_key(&id, "00000000-0000-4000-8000-000000000000", true)
                .await
                .unwrap_err()
        ),
        ErrorKind::KeyNotFound
    );
    env.emu.set_key_limit(2);
    c.mint_key(&id).await.unwrap();
    let e = c.mint_key(&id).await.unwrap_err();
    assert_eq!(kind(e), ErrorKind::KeyLimitReached);
    assert_eq!(
        c.revoke_key(&id, &minted.key.key_id, true)
            .await
            .unwrap()
            .status(),
        KeyStatus::Revoked
    );
    let live = env.emu.snapshot().agent(&id).unwrap().live_keys().count();
    assert_eq!(live, 1);
}

#[tokio::test]
async fn keys_scopes_and_apps() {
    let env = env().await;
    let c = &env.client;
    let created = c
        .create_agent(&CreateAgent::new("guarded"), None)
        .await
        .unwrap();
    let id = created.agent.id.clone();

    let reader = env.key_with(&[AGENTS_READ]);
    reader.list_keys(&id).await.unwrap();
    let e = reader.mint_key(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsufficientScope);
    assert_eq!(e.api().unwrap().missing_scopes, [AGENTS_WRITE]);
    let writer = env.key_with(&[AGENTS_WRITE]);
    assert_eq!(
        kind(writer.delete_agent(&id).await.unwrap_err()),
        ErrorKind::InsufficientScope
    );
    assert_eq!(
        kind(writer.agent_audit(&id, 10, 0).await.unwrap_err()),
        ErrorKind::InsufficientScope
    );
    let narrowed = c.with_scope_constraints(&[AGENTS_READ]).unwrap();
    narrowed.get_agent(&id).await.unwrap();
    assert_eq!(
        kind(narrowed.suspend_agent(&id).await.unwrap_err()),
        ErrorKind::InsufficientScope
    );
    let e = reader
        .with_scope_constraints(&[AGENTS_WRITE])
        .unwrap()
        .get_agent(&id)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code(), e.kind()),
        (
            Some(400),
            Some("constraint_not_narrowing"),
            ErrorKind::Invalid
        )
    );

    // A managed agent's key in an app key's place (a legacy app key looks the same).
    let as_app = c
        .with_app_key(AppKey::legacy(created.api_key.unwrap().expose_secret()).unwrap())
        .unwrap();
    assert_eq!(
        kind(
            as_app
                .list_agents(&ListAgentsQuery::new())
                .await
                .unwrap_err()
        ),
        ErrorKind::AgentCannotMintSubagents
    );

    // Unknown, revoked and deprecated app keys.
    let stranger = c
        .with_app_key("alter_rk_abcdefghijklmnopqrstuv_iwpykn".parse().unwrap())
        .unwrap();
    let e = stranger
        .list_agents(&ListAgentsQuery::new())
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::InvalidKey, Some(401)));
    assert!(e.api().unwrap().hint.is_some());
    let spare = env.emu.create_app_key(&env.app_id, "spare", None).unwrap();
    let spare_client = c.with_app_key(spare.api_key.parse().unwrap()).unwrap();
    env.emu.set_app_key_deprecated(&spare.id, true).unwrap();
    spare_client
        .list_agents(&ListAgentsQuery::new())
        .await
        .unwrap();
    assert!(spare_client.key_deprecated() && !c.key_deprecated());
    env.emu.revoke_app_key(&spare.id).unwrap();
    assert_eq!(
        kind(
            spare_client
                .list_agents(&ListAgentsQuery::new())
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidKey
    );

    // Another app: its key sees none of this app's agents, and verify_app says so.
    let other_app = env.emu.create_app("other").id;
    let other_key = env.emu.create_app_key(&other_app, "o", None).unwrap();
    let other = AppClient::new(&env.config, other_key.api_key.parse().unwrap()).unwrap();
    assert_eq!(
        kind(other.get_agent(&id).await.unwrap_err()),
        ErrorKind::AgentNotFound
    );
    match other.verify_app().await.unwrap_err() {
        Error::AppMismatch { expected, actual } => {
            assert_eq!((expected, actual), (env.app_id.clone(), other_app))
        }
        e => panic!("{e}"),
    }
}

#[tokio::test]
async fn audit_feed_and_registry() {
    let env = env().await;
    let c = &env.client;
    let created = c
        .create_agent(&CreateAgent::new("observed"), None)
        .await
        .unwrap();
    let id = created.agent.id.clone();
    c.mint_key(&id).await.unwrap();
    let feed = c.agent_audit(&id, 10, 0).await.unwrap();
    let actions: Vec<_> = feed.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["mint_key", "create_agent"]);
    assert_eq!(feed.items[0].actor.kind, "app_key");
    assert!(c.list_registry(10, 0).await.unwrap().items.is_empty());
    let agent = c.agent_client(created.api_key.unwrap()).unwrap();
    agent.me().await.unwrap();
    agent.me().await.unwrap();
    let reg = c.list_registry(10, 0).await.unwrap();
    assert_eq!((reg.items.len(), reg.items[0].activity_30d), (1, 2));
    assert!(reg.items[0].last_activity_at.is_some());
    let entry = c.get_registry_entry(&reg.items[0].actor_id).await.unwrap();
    assert_eq!(entry.agent_id, id);
    assert!(c.get_registry_entry(&id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn faults_retries_and_ambiguous_outcomes() {
    let env = env().await;
    let c = &env.client;
    let created = c
        .create_agent(&CreateAgent::new("faulty"), None)
        .await
        .unwrap();
    let id = created.agent.id.clone();

    // Throttled twice, then served: retried after Retry-After (1 s each).
    env.emu
        .set_faults(FaultConfig::new().route("list_keys", RouteFaults::throttle_next(2, 1)));
    let t = std::time::Instant::now();
    assert_eq!(c.list_keys(&id).await.unwrap().len(), 1);
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert_eq!(env.emu.request_count("list_keys"), 3);

    // A quota is final.
    env.emu
        .set_faults(FaultConfig::new().route("list_keys", RouteFaults::quota_next(1, 3600)));
    let e = c.list_keys(&id).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.retry_after()),
        (ErrorKind::QuotaExceeded, Some(Duration::from_secs(3600)))
    );

    // 503s on an idempotent call are retried.
    env.emu
        .set_faults(FaultConfig::new().route("get_agent", RouteFaults::fail_next(2, 503)));
    c.get_agent(&id).await.unwrap();

    // A mint that committed and then failed: not retried, and the key exists.
    env.emu.set_faults(
        FaultConfig::new().route("mint_key", RouteFaults::fail_next_after_commit(1, 500)),
    );
    let e = c.mint_key(&id).await.unwrap_err();
    assert!(e.may_have_committed());
    assert_eq!(
        c.list_keys(&id).await.unwrap().len(),
        2,
        "a key nobody received: find and revoke it"
    );
    assert_eq!(env.emu.request_count("mint_key"), 1);

    // A create whose response was lost: with an Idempotency-Key the retry gets the replay.
    env.emu
        .set_faults(FaultConfig::new().route("create_agent", RouteFaults::drop_response_next(1)));
    let idem = IdempotencyKey::new("lost-response").unwrap();
    let out = c
        .create_agent(&CreateAgent::new("lost"), Some(&idem))
        .await
        .unwrap();
    assert!(
        out.is_replay(),
        "the plaintext went with the dropped response"
    );
    assert_eq!(env.emu.request_count("create_agent"), 3);
    let snap = env.emu.snapshot();
    assert_eq!(
        snap.live_agent_named(&env.app_id, "lost").unwrap().agent.id,
        out.agent.id
    );

    // Without one, it is not retried: the caller must look the agent up by name.
    env.emu
        .set_faults(FaultConfig::new().route("create_agent", RouteFaults::drop_response_next(1)));
    let e = c
        .create_agent(&CreateAgent::new("lost-too"), None)
        .await
        .unwrap_err();
    assert!(e.may_have_committed(), "{e}");
    assert!(c.get_agent_by_name("lost-too").await.unwrap().is_some());

    // Latency beyond the request timeout.
    env.emu
        .set_faults(FaultConfig::new().route("me", RouteFaults::latency(400, 0)));
    let slow = AgentClient::new(
        &env.config
            .clone()
            .request_timeout(Duration::from_millis(100))
            .retry(RetryPolicy::no_retries()),
        out_key(&env).await,
    )
    .unwrap();
    assert!(slow.me().await.unwrap_err().is_timeout());
}

async fn out_key(env: &Env) -> alter::AgentKey {
    env.client
        .create_agent(&CreateAgent::new("for-timeouts"), None)
        .await
        .unwrap()
        .api_key
        .unwrap()
}
