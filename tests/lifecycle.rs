//! Behaviours 1, 4, 5 and 10 of the issue and the Secret rules, against kube-sim and the
//! emulator: registration, drift, deletion, events, foreign and shared Secrets, suspension and the
//! service key (rotation, behaviour 3, is in `rotation.rs`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{IdempotencyKey, RegisterAgent};
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use lattice_operator::crd::{REREGISTER_ANNOTATION, ROTATE_ANNOTATION, SKIP_REVOKE_ANNOTATION};
use lattice_operator::secret::{
    AGENT_ID_ANNOTATION, AGENT_ID_FIELD, AGENT_NAME_LABEL, API_KEY_FIELD, BASE_URL_FIELD,
    KEY_ID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, key_digest,
};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_finalizer_first_secret_then_status() {
    let mut w = World::start("register").await;
    // At the moment of the first AgentLattice call, the simulator must already have accepted the
    // finalizer patch, and the emulator must have seen nothing.
    let checked = Arc::new(Mutex::new(None::<Result<(), String>>));
    let (sim, emu, seen) = (Arc::clone(&w.sim), Arc::clone(&w.emu), Arc::clone(&checked));
    let failpoints: lattice_operator::reconcile::FailPoints = Arc::new(move |point: &str| {
        if point == "before:Register" {
            let log = sim.audit_log();
            let finalizer_patched = log.iter().any(|r| {
                r.resource == "latticeagents"
                    && r.verb == "patch"
                    && r.subresource.is_empty()
                    && r.code == 200
            });
            let verdict = if !finalizer_patched {
                Err("registration before the finalizer patch".to_owned())
            } else if emu
                .audit()
                .iter()
                .any(|e| e.operation != "create_service_key")
            {
                Err("AgentLattice was called before Register".to_owned())
            } else {
                Ok(())
            };
            if let Ok(mut c) = seen.lock() {
                c.get_or_insert(verdict);
            }
        }
        false
    });
    w.start_operator(Options {
        failpoints: Some(failpoints),
        ..Default::default()
    })
    .await;
    let (a, secret) = w.ready(&bot("deploy-bot", "")).await;
    assert_eq!(
        checked.lock().unwrap().clone(),
        Some(Ok(())),
        "finalizer first"
    );
    assert!(
        a.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "agentlattice.io/cleanup")
    );

    // The agent: linked to namespace, name and uid; one key, the Secret's.
    let uid = a.metadata.uid.clone().unwrap();
    let status = a.status.clone().unwrap();
    let snapshot = w.emu.snapshot();
    let agent = snapshot
        .agent(status.agent_id.as_deref().unwrap())
        .expect("agent exists");
    assert_eq!(agent.name, "register-deploy-bot");
    assert_eq!(agent.metadata["k8s.namespace"], "register");
    assert_eq!(agent.metadata["k8s.name"], "deploy-bot");
    assert_eq!(agent.metadata["k8s.uid"], uid);
    assert_eq!(
        agent.capabilities,
        vec!["deploy.staging", "rollback.staging"]
    );
    assert_eq!(
        agent.description.as_deref(),
        Some("Deploys the payments service")
    );
    assert_eq!(agent.keys.len(), 1);
    assert_eq!(
        annotations(&secret).get(KEY_ID_ANNOTATION),
        Some(&agent.keys[0].key_id)
    );
    let me = w.whoami_with(&secret).await.expect("the key works");
    assert_eq!(me.config_id, agent.id);

    // The Secret: Opaque, owned by the resource, the three fields a workload can `envFrom`, our
    // labels, and annotations that describe the key without holding it.
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let data = secret.data.clone().unwrap_or_default();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![AGENT_ID_FIELD, API_KEY_FIELD, BASE_URL_FIELD]
    );
    assert_eq!(data[AGENT_ID_FIELD].0, agent.id.as_bytes());
    assert_eq!(data[BASE_URL_FIELD].0, w.emu.base_url().as_bytes());
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    assert_eq!(labels[AGENT_NAME_LABEL], "register-deploy-bot");
    let ann = annotations(&secret);
    assert_eq!(ann[AGENT_ID_ANNOTATION], agent.id);
    let key = secret_key(&secret).expect("key");
    assert!(
        ann.values().all(|v| !v.contains(key.expose_secret())),
        "no annotation holds the key"
    );
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].uid.as_str(),
            owners[0].controller
        ),
        ("LatticeAgent", uid.as_str(), Some(true))
    );

    // One AgentLattice write, and the idempotency key is derived from the uid: replaying it
    // with the same body answers with the same agent.
    let audit = w.emu.audit();
    assert_eq!(
        audit
            .iter()
            .map(|e| e.operation.as_str())
            .collect::<Vec<_>>(),
        vec!["create_service_key", "register"]
    );
    let replay = w
        .provisioner()
        .register(
            &RegisterAgent::new("register-deploy-bot")
                .capabilities(["deploy.staging", "rollback.staging"])
                .description("Deploys the payments service")
                .metadata("k8s.namespace", "register")
                .metadata("k8s.name", "deploy-bot")
                .metadata("k8s.uid", uid.clone()),
            Some(
                &IdempotencyKey::new(format!("lattice-operator/{uid}/{}", key_digest(b"")))
                    .unwrap(),
            ),
        )
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.agent.id, agent.id);

    // Kubernetes writes, in order: finalizer, Secret, status (and events).
    let writes: Vec<String> = w
        .sim
        .audit_log()
        .into_iter()
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch"))
        .filter(|r| r.namespace == "register" && r.resource != "events")
        .filter(|r| r.name != SERVICE_KEY_SECRET && r.resource != "namespaces")
        .map(|r| {
            format!(
                "{} {}{}",
                r.verb,
                r.resource,
                if r.subresource.is_empty() {
                    String::new()
                } else {
                    format!("/{}", r.subresource)
                }
            )
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            "create latticeagents",
            "patch latticeagents",
            "create secrets",
            "update latticeagents/status"
        ]
    );
    w.wait_event("deploy-bot", "Registered").await;
    w.check_invariant("deploy-bot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_recovered_from_the_secret_after_a_lost_status_write() {
    let mut w = World::start("recover").await;
    // The first status write fails (as if the process died before it).
    w.sim.faults().fail(
        kube_sim::Matcher::verb("update")
            .resource("latticeagents")
            .subresource("status"),
        500,
        1,
    );
    w.start_operator(Options::default()).await;
    let (a, _) = w.ready(&bot("deploy-bot", "")).await;
    assert!(a.status.unwrap().agent_id.is_some());
    let reasons = w.event_reasons("deploy-bot").await;
    assert!(reasons.contains(&"Registered".to_owned()), "{reasons:?}");
    assert!(
        reasons.contains(&"ReconcileError".to_owned()),
        "{reasons:?}"
    );
    assert_eq!(w.emu.snapshot().live_agents().count(), 1);
    w.check_invariant("deploy-bot").await;

    // Status wiped entirely (a restore without status): recovered from the Secret.
    w.stop_operator().await;
    let mut a = w.get("deploy-bot").await;
    a.status = None;
    w.agents()
        .replace_status("deploy-bot", &kube::api::PostParams::default(), &a)
        .await
        .expect("status cleared");
    w.start_operator(Options::default()).await;
    w.wait_settled("deploy-bot", true).await;
    w.wait_event("deploy-bot", "StatusRecovered").await;
    assert_eq!(w.emu.snapshot().live_agents().count(), 1);
    w.check_invariant("deploy-bot").await;

    // The process dies right before its status write (a fail point): the next operator finds
    // the agent through the Secret, not by registering again.
    w.stop_operator().await;
    let fired = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&fired);
    let failpoints: lattice_operator::reconcile::FailPoints = Arc::new(move |point: &str| {
        let mut fired = flag.lock().unwrap();
        let fire = point == "before:WriteStatus" && !*fired;
        *fired |= fire;
        fire
    });
    w.start_operator(Options {
        failpoints: Some(failpoints),
        ..Default::default()
    })
    .await;
    w.create(&bot("second-bot", "")).await;
    wait_until("the status write is dropped", || async {
        fired.lock().unwrap().then_some(())
    })
    .await;
    w.kill_operator().await;
    let a = w.get("second-bot").await;
    assert!(
        a.status.and_then(|s| s.agent_id).is_none(),
        "status was not written"
    );
    assert!(
        w.secret("second-bot-agent-key").await.is_some(),
        "the Secret was"
    );
    w.start_operator(Options::default()).await;
    w.wait_settled("second-bot", true).await;
    w.wait_event("second-bot", "StatusRecovered").await;
    assert_eq!(w.emu.request_count("register"), 2, "one per resource");
    w.check_invariant("second-bot").await;
}

// ----- drift (behaviour 4) ----------------------------------------------------------------------

const ONE_SECOND_GRACE: &str = "  rotation: {gracePeriod: 1s, maxGracePeriod: 10s}";

fn key_status(w: &World, agent_id: &str, key_id: &str) -> agentlattice_emulator::KeyStatus {
    w.emu
        .snapshot()
        .agent(agent_id)
        .and_then(|a| a.key(key_id).map(|k| k.status))
        .expect("the key exists")
}

async fn wait_key_revoked(w: &World, agent_id: &str, key_id: &str) {
    wait_until(&format!("key {key_id} is revoked"), || async move {
        (key_status(w, agent_id, key_id) == agentlattice_emulator::KeyStatus::Revoked).then_some(())
    })
    .await;
}

/// Waits until the Secret holds a key other than `old` and the resource has settled on it.
async fn wait_new_key(w: &World, name: &str, secret: &str, old: &str) -> String {
    let new = wait_until("a new key in the Secret", || async move {
        let s = w.secret(secret).await?;
        annotations(&s)
            .get(KEY_ID_ANNOTATION)
            .filter(|k| *k != old)
            .cloned()
    })
    .await;
    w.wait_settled(name, false).await;
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_edited_secret_gets_a_fresh_key_and_the_lost_one_is_retired() {
    let mut w = World::start("drift-secret").await;
    w.start_operator(Options::default()).await;
    let (a, _) = w.ready(&bot("deploy-bot", ONE_SECOND_GRACE)).await;
    let status = a.status.unwrap();
    let agent_id = status.agent_id.unwrap();
    let secret = status.secret_name.unwrap();
    let first = status.active_key.unwrap().id;

    // Deleted: a new key is written to a new Secret, the lost one is revoked after its grace.
    w.secrets()
        .delete(&secret, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let second = wait_new_key(&w, "deploy-bot", &secret, &first).await;
    w.wait_event("deploy-bot", "SecretRestored").await;
    wait_key_revoked(&w, &agent_id, &first).await;
    w.wait_settled("deploy-bot", true).await;
    w.check_invariant("deploy-bot").await;

    // Edited: the same.
    w.secrets()
        .patch(
            &secret,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {API_KEY_FIELD: "pasted by hand"}})),
        )
        .await
        .unwrap();
    let third = wait_new_key(&w, "deploy-bot", &secret, &second).await;
    assert_ne!(third, first);
    wait_key_revoked(&w, &agent_id, &second).await;
    w.wait_settled("deploy-bot", true).await;
    w.check_invariant("deploy-bot").await;
    // One agent throughout, one registration, two new keys.
    assert_eq!(w.emu.request_count("register"), 1);
    assert_eq!(w.emu.request_count("mint_key"), 2);
}

async fn merge_spec(w: &World, spec: serde_json::Value) -> Option<i64> {
    w.agents()
        .patch(
            "deploy-bot",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap()
        .metadata
        .generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_changes_update_halt_and_resume_the_agent() {
    let mut w = World::start("drift-spec").await;
    w.start_operator(Options::default()).await;
    let (a, secret) = w.ready(&bot("deploy-bot", ONE_SECOND_GRACE)).await;
    let agent_id = a.status.unwrap().agent_id.unwrap();
    let key = annotations(&secret)[KEY_ID_ANNOTATION].clone();

    let generation = merge_spec(
        &w,
        serde_json::json!({
            "capabilities": ["deploy.staging", "deploy.production"],
            "description": "Deploys everything",
        }),
    )
    .await;
    wait_until("the agent is updated", || async {
        let a = w.emu.snapshot().agent(&agent_id).cloned()?;
        (a.capabilities == vec!["deploy.production", "deploy.staging"]
            && a.description.as_deref() == Some("Deploys everything"))
        .then_some(())
    })
    .await;
    w.wait_event("deploy-bot", "AgentUpdated").await;
    let a = w.wait_ready("deploy-bot").await;
    wait_until("observedGeneration", || async {
        (w.get("deploy-bot").await.status?.observed_generation == generation).then_some(())
    })
    .await;
    assert_eq!(
        a.status.unwrap().agent_id.as_deref(),
        Some(agent_id.as_str())
    );

    // suspend: halted at AgentLattice, Ready=False Suspended, the key stays in the Secret.
    merge_spec(&w, serde_json::json!({"suspend": true})).await;
    w.wait_condition("deploy-bot", "Ready", "False", Some("Suspended"))
        .await;
    wait_until("the agent is halted", || async {
        (w.emu.snapshot().agent(&agent_id)?.status == agentlattice_emulator::AgentStatus::Halted)
            .then_some(())
    })
    .await;
    w.wait_event("deploy-bot", "AgentHalted").await;
    // Resumed: active again with the same key.
    merge_spec(&w, serde_json::json!({"suspend": false})).await;
    w.wait_ready("deploy-bot").await;
    wait_until("the agent is active", || async {
        (w.emu.snapshot().agent(&agent_id)?.status == agentlattice_emulator::AgentStatus::Active)
            .then_some(())
    })
    .await;
    w.wait_event("deploy-bot", "AgentResumed").await;
    let secret = w.secret("deploy-bot-agent-key").await.unwrap();
    assert_eq!(annotations(&secret)[KEY_ID_ANNOTATION], key);
    w.whoami_with(&secret).await.expect("the key works");
    assert_eq!(w.emu.request_count("register"), 1);
    assert_eq!(w.emu.request_count("mint_key"), 0);
    w.check_invariant("deploy-bot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_revoked_outside_is_reported_and_only_reregistered_on_request() {
    let mut w = World::start("drift-revoked").await;
    let options = Options {
        resync: SignedDuration::from_millis(500),
        ..Default::default()
    };
    w.start_operator(options.clone()).await;
    let (a, _) = w.ready(&bot("deploy-bot", ONE_SECOND_GRACE)).await;
    let first = a.status.unwrap().agent_id.unwrap();

    w.provisioner().revoke_agent(&first).await.expect("revoked");
    let a = w
        .wait_condition(
            "deploy-bot",
            "Ready",
            "False",
            Some("AgentRevokedExternally"),
        )
        .await;
    assert_eq!(a.status.unwrap().agent_id.as_deref(), Some(first.as_str()));
    // Not re-registered: not on a later change, nor after a restart.
    let before = reconciles(&w.metrics());
    w.agents()
        .patch(
            "deploy-bot",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    w.wait_reconciles_total(before + 1).await;
    w.stop_operator().await;
    w.start_operator(options).await;
    w.wait_reconciles_total(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.emu.request_count("register"), 1);
    assert_eq!(w.emu.snapshot().live_agents().count(), 0);
    w.wait_condition(
        "deploy-bot",
        "Ready",
        "False",
        Some("AgentRevokedExternally"),
    )
    .await;

    // Asked for: a new agent, with a new key in the Secret.
    w.annotate("deploy-bot", REREGISTER_ANNOTATION, "after-incident-42")
        .await;
    let (a, _) = w.wait_settled("deploy-bot", true).await;
    let status = a.status.unwrap();
    assert_ne!(status.agent_id.as_deref(), Some(first.as_str()));
    assert_eq!(
        status.handled.reregister.as_deref(),
        Some("after-incident-42")
    );
    assert_eq!(w.emu.request_count("register"), 2);
    w.check_invariant("deploy-bot").await;
}

// ----- deletion (behaviour 5) -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_revokes_the_agent_and_the_secret_goes_with_the_resource() {
    let mut w = World::start("delete-revoke").await;
    w.start_operator(Options::default()).await;
    let (a, _) = w.ready(&bot("deploy-bot", "")).await;
    let agent_id = a.status.unwrap().agent_id.unwrap();
    w.delete("deploy-bot").await;
    w.wait_gone("deploy-bot").await;
    let agent = w.emu.snapshot().agent(&agent_id).cloned().unwrap();
    assert_eq!(agent.status, agentlattice_emulator::AgentStatus::Revoked);
    w.wait_secret_gone("deploy-bot-agent-key").await;
    // Events outlive the resource.
    w.wait_event("deploy-bot", "AgentRevoked").await;

    // An agent AgentLattice no longer knows (404) counts as revoked.
    let (a, _) = w.ready(&bot("deploy-bot", "")).await;
    let uid = a.metadata.uid.clone().unwrap();
    w.stop_operator().await;
    w.replace_emulator().await;
    w.start_operator(Options::default()).await;
    w.delete("deploy-bot").await;
    w.wait_gone("deploy-bot").await;
    assert!(
        w.remote_calls_with_status(404) >= 1,
        "{}",
        w.metrics().encode()
    );
    assert_eq!(w.emu.snapshot().agents.len(), 0);
    let _ = uid;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_agent_and_its_secret() {
    let mut w = World::start("delete-retain").await;
    w.start_operator(Options::default()).await;
    let (a, _) = w.ready(&bot("keeper", "  deletionPolicy: Retain")).await;
    let agent_id = a.status.unwrap().agent_id.unwrap();
    w.delete("keeper").await;
    w.wait_gone("keeper").await;
    w.wait_event("keeper", "AgentRetained").await;
    // The garbage collector had its chance: the Secret stays, no longer owned, its key works.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let secret = w
        .secret("keeper-agent-key")
        .await
        .expect("the Secret stays");
    assert!(
        secret
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .is_empty()
    );
    let me = w.whoami_with(&secret).await.expect("the key works");
    assert_eq!(me.config_id, agent_id);
    assert!(w.emu.snapshot().agent(&agent_id).unwrap().is_live());
}

/// The deletion is stuck for want of `category`: finalizer kept, agent live, status says why.
async fn blocked(w: &World, agent_id: &str, category: &str) {
    let a = w
        .wait_condition("deploy-bot", "Synced", "False", Some(category))
        .await;
    let ready = condition(&a, "Ready").unwrap();
    assert_eq!(ready.reason, "RevocationFailed", "{ready:?}");
    assert!(ready.message.contains("skip-revoke"), "{}", ready.message);
    assert!(
        a.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "agentlattice.io/cleanup")
    );
    assert!(w.emu.snapshot().agent(agent_id).unwrap().is_live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_cannot_revoke_keeps_the_finalizer_until_skip_revoke() {
    let mut w = World::start("delete-blocked").await;
    w.start_operator(Options::default()).await;
    let (a, _) = w.ready(&bot("deploy-bot", "")).await;
    let agent_id = a.status.unwrap().agent_id.unwrap();

    // The service key Secret is missing.
    w.put_service_key(None).await;
    w.delete("deploy-bot").await;
    blocked(&w, &agent_id, "ServiceKeyMissing").await;
    // Back, but revoked at AgentLattice.
    let key = w.service_key.clone();
    w.emu.revoke_service_key(&w.service_key_id).unwrap();
    w.put_service_key(Some(&key)).await;
    blocked(&w, &agent_id, "ServiceKeyRejected").await;
    // A working key, but AgentLattice is down.
    w.new_service_key();
    w.emu
        .set_faults(agentlattice_emulator::FaultConfig::new().route(
            "*",
            agentlattice_emulator::RouteFaults::error_rate(1.0, 503),
        ));
    let key = w.service_key.clone();
    w.put_service_key(Some(&key)).await;
    blocked(&w, &agent_id, "AgentLatticeUnavailable").await;
    // A Warning event for each failed reconcile (published once the reconcile has ended).
    for category in [
        "ServiceKeyMissing",
        "ServiceKeyRejected",
        "AgentLatticeUnavailable",
    ] {
        let event = wait_until(&format!("a Warning for {category}"), || async {
            w.events("deploy-bot").await.into_iter().find(|e| {
                e.reason.as_deref() == Some("ReconcileError")
                    && e.note.as_deref().unwrap_or_default().starts_with(category)
            })
        })
        .await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }

    // The escape hatch: deletion finishes on purpose, recorded as a Warning event.
    w.annotate("deploy-bot", SKIP_REVOKE_ANNOTATION, "true")
        .await;
    w.wait_gone("deploy-bot").await;
    let skipped = w.wait_event("deploy-bot", "RevocationSkipped").await;
    assert_eq!(skipped.type_.as_deref(), Some("Warning"));
    assert!(w.emu.snapshot().agent(&agent_id).unwrap().is_live());
}

// ----- the Secret's rules -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_is_never_overwritten_unless_adopted() {
    let mut w = World::start("secret-foreign").await;
    w.start_operator(Options::default()).await;
    let foreign: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "deploy-bot-agent-key", "labels": {"team": "payments"}},
        "stringData": {"password": "hunter2"},
    }))
    .unwrap();
    w.secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    w.create(&bot("deploy-bot", "")).await;
    let a = w
        .wait_condition("deploy-bot", "Ready", "False", Some("SecretConflict"))
        .await;
    w.wait_event("deploy-bot", "SecretConflict").await;
    let s = w.secret("deploy-bot-agent-key").await.unwrap();
    assert_eq!(s.data.unwrap().keys().collect::<Vec<_>>(), vec!["password"]);
    assert!(s.metadata.owner_references.unwrap_or_default().is_empty());
    assert_eq!(w.emu.request_count("register"), 0, "no remote call");

    // secretPolicy: Adopt takes it over.
    w.agents()
        .patch(
            "deploy-bot",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"secretPolicy": "Adopt"}})),
        )
        .await
        .unwrap();
    let (_, s) = w.wait_settled("deploy-bot", true).await;
    let owner = &s.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(Some(&owner.uid), a.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    w.check_invariant("deploy-bot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_naming_one_secret_the_older_keeps_it() {
    let mut w = World::start("secret-shared").await;
    w.start_operator(Options::default()).await;
    let yaml = |name: &str| bot(name, "  secretName: shared-key");
    let (older, _) = w.ready(&yaml("older")).await;
    // creationTimestamp has one-second resolution: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.create(&yaml("newer")).await;
    w.wait_condition("newer", "Ready", "False", Some("SecretConflict"))
        .await;
    w.wait_event("newer", "SecretConflict").await;
    let s = w.secret("shared-key").await.unwrap();
    assert_eq!(
        s.metadata.owner_references.unwrap()[0].uid,
        older.metadata.uid.clone().unwrap()
    );
    assert_eq!(w.emu.request_count("register"), 1, "only the older one");
    w.check_invariant("older").await;
    // The older one stays Ready and keeps its key.
    w.wait_ready("older").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_key_change_is_picked_up_without_a_restart() {
    let mut w = World::start("service-key").await;
    w.put_service_key(None).await;
    // The fallback retry is far away: only the change can make progress here.
    w.start_operator(Options::default()).await;
    w.create(&bot("deploy-bot", "")).await;
    w.wait_condition("deploy-bot", "Ready", "False", Some("ServiceKeyMissing"))
        .await;
    let key = w.service_key.clone();
    w.put_service_key(Some(&key)).await;
    w.wait_settled("deploy-bot", true).await;

    // The key is replaced and the old one revoked: the operator uses the new one at once.
    let old = w.new_service_key();
    let key = w.service_key.clone();
    let mark = w.service_key_mark();
    w.put_service_key(Some(&key)).await;
    w.wait_service_key_noticed(mark).await;
    w.emu.revoke_service_key(&old).unwrap();
    w.annotate("deploy-bot", ROTATE_ANNOTATION, "1").await;
    wait_until("rotated", || async {
        (w.emu.request_count("mint_key") == 1).then_some(())
    })
    .await;
    w.wait_settled("deploy-bot", false).await;
    assert_eq!(
        w.remote_calls_with_status(401),
        0,
        "{}",
        w.metrics().encode()
    );
    w.check_invariant("deploy-bot").await;
}
