//! Behaviours 1, 3, 4, 5 and 10 of the issue against kube-sim and the emulator: registration,
//! rotation, drift, deletion and events.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{IdempotencyKey, RegisterAgent};
use lattice_operator::secret::{KEY_ID_ANNOTATION, key_digest};
use support::*;

const BOT: &str = r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata: {name: deploy-bot}
spec:
  description: Deploys the payments service
  capabilities: [deploy.staging, rollback.staging]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_finalizer_first_secret_then_status() {
    let mut w = World::start("register").await;
    // At the moment of the first AgentLattice call, the simulator must already have accepted the
    // finalizer patch, and the emulator must have seen nothing.
    let checked = Arc::new(Mutex::new(None::<Result<(), String>>));
    let (sim, emu, seen) = (Arc::clone(&w.sim), Arc::clone(&w.emu), Arc::clone(&checked));
    let failpoints: lattice_operator::context::FailPoints = Arc::new(move |point: &str| {
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
    w.create(BOT).await;
    let (a, secret) = w.wait_settled("deploy-bot", true).await;
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
    w.create(BOT).await;
    let (a, _) = w.wait_settled("deploy-bot", true).await;
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
    let _ = Duration::ZERO;
}
