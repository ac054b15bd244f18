//! Workloads (docs/workloads.md) on kube-sim's simulated Deployments, the AgentLattice emulator
//! and the workload simulator (`support::workloads`: each pod holds the key its container would
//! hold and calls AgentLattice with it all the time, counting authentication failures):
//! identities that come and go with annotated workloads, restarts keyed by key id, and old keys
//! revoked only once every consumer has the new one.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{KubeSim, PodMatcher};
use lattice_operator::crd::ROTATE_ANNOTATION;
use serde_json::{Value, json};
use support::workloads::{PodCounters, WorkloadSim, WorkloadSimConfig};
use support::*;

/// kube-sim with pods that start and become Ready within 100 ms.
fn fast_pods() -> kube_sim::KubeSimBuilder {
    KubeSim::builder()
        .pod_start_delay(Duration::from_millis(30))
        .pod_ready_delay(Duration::from_millis(30))
        .pod_termination_delay(Duration::from_millis(30))
}

/// How a Deployment's pods read the key of the Secret `secret`.
#[derive(Clone, Copy, Debug)]
enum Reads {
    Env,
    File,
}

fn pod_spec(secret: &str, reads: Reads) -> Value {
    match reads {
        Reads::Env => json!({"containers": [{"name": "app", "image": "example/app:1",
            "envFrom": [{"secretRef": {"name": secret}}]}]}),
        Reads::File => json!({"containers": [{"name": "app", "image": "example/app:1",
            "volumeMounts": [{"name": "key", "mountPath": "/var/run/agentlattice"}]}],
            "volumes": [{"name": "key", "secret": {"secretName": secret}}]}),
    }
}

/// A Deployment `name` whose pods read `secret`, annotated with `annotations`.
fn deployment(name: &str, secret: &str, reads: Reads, annotations: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 3,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": pod_spec(secret, reads)}},
    }))
    .expect("deployment")
}

fn deployments(w: &World) -> Api<Deployment> {
    Api::namespaced(w.client.clone(), &w.ns)
}

async fn create_deployment(w: &World, d: &Deployment) {
    deployments(w)
        .create(&PostParams::default(), d)
        .await
        .expect("Deployment created");
}

/// An annotated Deployment: its identity is named after it, its Secret `<name>-agent-key`.
fn annotated(name: &str, reads: Reads, extra: Value) -> Deployment {
    let mut annotations =
        json!({"agentlattice.io/capabilities": "deploy.staging,rollback.staging"});
    if let (Some(a), Some(e)) = (annotations.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    deployment(name, &format!("{name}-agent-key"), reads, annotations)
}

/// How many times the operator changed the Deployment's pod template (its generation after
/// creation is 1; every restart adds one).
async fn restarts(w: &World, name: &str) -> i64 {
    let d = deployments(w).get(name).await.expect("the Deployment");
    d.metadata.generation.unwrap_or(1) - 1
}

async fn rollout_complete(w: &World, name: &str) -> bool {
    let Ok(d) = deployments(w).get(name).await else {
        return false;
    };
    let (Some(spec), Some(status)) = (d.spec, d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.available_replicas == Some(want)
}

fn failures(c: &BTreeMap<String, PodCounters>) -> u64 {
    c.values().map(|p| p.auth_failures).sum()
}

fn calls(c: &BTreeMap<String, PodCounters>) -> u64 {
    c.values().map(|p| p.whoami_ok).sum()
}

fn sim_config() -> WorkloadSimConfig {
    WorkloadSimConfig {
        kubelet_sync_delay: Duration::from_millis(300),
        interval: Duration::from_millis(20),
        ..WorkloadSimConfig::default()
    }
}

/// Shortens the grace periods of the identity `name` (fields the identity does not own: the
/// edit stays).
async fn grace(w: &World, name: &str, grace: &str, max_grace: &str) {
    w.agents()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"rotation": {"gracePeriod": grace, "maxGracePeriod": max_grace}}}),
            ),
        )
        .await
        .expect("grace periods set");
}

/// Waits until the old keys of `name` are revoked (no key retiring) after a rotation to a key
/// other than `previous`; returns the new key id.
async fn wait_rotated(w: &World, name: &str, previous: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = w.get(name).await;
        if let Some(s) = &a.status
            && let Some(key) = &s.active_key
            && key.id != previous
            && s.retiring_keys.is_empty()
        {
            return key.id.clone();
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{name} not rotated with its old key revoked (generation {:?}, {:?}): {}",
                a.metadata.generation,
                a.spec.rotation,
                serde_json::to_string_pretty(&a.status).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- identities ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_deployment_gets_its_identity_and_loses_it_with_the_annotation() {
    let mut w = World::start_with(fast_pods(), "wl-identity").await;
    w.start_operator(Options::default()).await;
    let sim = WorkloadSim::start(w.client.clone(), &w.emu.base_url(), &w.ns, sim_config());
    create_deployment(
        &w,
        &annotated(
            "web",
            Reads::Env,
            json!({"agentlattice.io/description": "The web shop"}),
        ),
    )
    .await;
    // Annotate → LatticeAgent → Secret → pods Ready (and calling AgentLattice with the key).
    let (agent, _) = w.wait_settled("web", true).await;
    assert_eq!(
        agent.spec.capabilities,
        ["deploy.staging", "rollback.staging"]
    );
    assert!(agent.spec.restart_on_rotation);
    let owner = &agent.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
    w.wait_event("web", "IdentityCreated").await;
    wait_until("the pods run and use the key", || async {
        let c = sim.counters();
        (rollout_complete(&w, "web").await && c.len() == 2 && c.values().all(|p| p.whoami_ok > 0))
            .then_some(())
    })
    .await;
    let status = w.get("web").await.status.expect("status");
    assert_eq!(status.consumers.len(), 1);
    assert_eq!(
        (
            status.consumers[0].reads.as_str(),
            status.consumers[0].key.as_str()
        ),
        ("Environment", "Current")
    );
    let agent_id = status.agent_id.clone().expect("agent");
    // Until the identity goes, no pod ever failed to authenticate.
    let counters = sim.stop().await;
    assert!(calls(&counters) > 0);
    assert_eq!(failures(&counters), 0);

    // Editing the annotation updates the LatticeAgent and the agent at AgentLattice.
    deployments(&w)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "agentlattice.io/capabilities": "deploy.staging"}}})),
        )
        .await
        .expect("annotation edited");
    wait_until("the capabilities follow the annotation", || async {
        let snapshot = w.emu.snapshot();
        let a = snapshot.agent(&agent_id)?;
        (a.capabilities == ["deploy.staging"]).then_some(())
    })
    .await;

    // The rotation annotations set the schedule and the grace period; without them, the CRD's
    // defaults come back (server-side apply drops what its manager no longer sets).
    let set_rotation = |interval: Option<&str>, grace: Option<&str>| {
        let patch = json!({"metadata": {"annotations": {
            "agentlattice.io/rotation-interval": interval,
            "agentlattice.io/grace-period": grace}}});
        let api = deployments(&w);
        async move {
            api.patch("web", &PatchParams::default(), &Patch::Merge(patch))
                .await
                .expect("rotation annotations")
        }
    };
    set_rotation(Some("720h"), Some("5m")).await;
    wait_until("the rotation follows the annotations", || async {
        let r = w.get("web").await.spec.rotation;
        (r.interval.as_deref() == Some("720h") && r.grace_period == "5m").then_some(())
    })
    .await;
    set_rotation(None, None).await;
    wait_until("the defaults come back", || async {
        let r = w.get("web").await.spec.rotation;
        (r.interval.is_none() && r.grace_period == "10m").then_some(())
    })
    .await;

    // Removing the annotation deletes the identity, which revokes the agent.
    deployments(&w)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"agentlattice.io/capabilities": null}}}),
            ),
        )
        .await
        .expect("annotation removed");
    w.wait_gone("web").await;
    wait_until("the agent is revoked", || async {
        w.emu.snapshot().agent(&agent_id)?.revoked_at.map(|_| ())
    })
    .await;
    w.wait_event("web", "IdentityDeleted").await;
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_deployment_revokes_its_agent() {
    let mut w = World::start_with(fast_pods(), "wl-delete").await;
    w.start_operator(Options::default()).await;
    create_deployment(&w, &annotated("api", Reads::File, json!({}))).await;
    let (agent, _) = w.wait_settled("api", true).await;
    let agent_id = agent.status.and_then(|s| s.agent_id).expect("agent");
    deployments(&w)
        .delete("api", &DeleteParams::default())
        .await
        .expect("Deployment deleted");
    w.wait_gone("api").await;
    wait_until("the agent is revoked", || async {
        w.emu.snapshot().agent(&agent_id)?.revoked_at.map(|_| ())
    })
    .await;
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_latticeagent_is_never_taken_over() {
    let mut w = World::start_with(fast_pods(), "wl-foreign").await;
    w.start_operator(Options::default()).await;
    let (mine, _) = w.ready(&bot("web", "")).await;
    create_deployment(&w, &annotated("web", Reads::Env, json!({}))).await;
    let warning = w.wait_event("web", "IdentityConflict").await;
    assert_eq!(
        warning.regarding.as_ref().and_then(|r| r.kind.as_deref()),
        Some("Deployment"),
        "the warning is on the workload"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = w.get("web").await;
    assert_eq!(now.spec, mine.spec, "left alone");
    assert!(now.metadata.owner_references.is_none());
    w.stop_operator().await;
}

// ----- restarts and revocation held for consumers ----------------------------------------------

/// Rotations of agents whose consumers read the key from the environment, restart on: every
/// rotation restarts each consumer exactly once (its generation counts the template changes),
/// the old key is revoked only after the restart, and no pod ever fails to authenticate — also
/// when the operator is killed in the middle of rollouts and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_restart_each_environment_consumer_once_without_a_failure() {
    const AGENTS: usize = 10;
    const ROUNDS: usize = 10;
    let mut w = World::start_with(fast_pods(), "wl-rotations").await;
    let options = Options::default();
    w.start_operator(options.clone()).await;
    let sim = WorkloadSim::start(w.client.clone(), &w.emu.base_url(), &w.ns, sim_config());
    let names: Vec<String> = (0..AGENTS).map(|i| format!("svc-{i}")).collect();
    for name in &names {
        create_deployment(&w, &annotated(name, Reads::Env, json!({}))).await;
    }
    let mut keys = BTreeMap::new();
    for name in &names {
        let (a, _) = w.wait_settled(name, true).await;
        // The grace period must outlast the longest gap between two calls of a pod that still
        // holds the old key (docs/workloads.md §3): the simulator lists the pods, then calls, and
        // on two loaded cores one of its rounds took more than 2 s — an old pod listed just before
        // its rollout finished then called after the revocation (both engineers saw it under a
        // parallel 200,000-case property run). 5 s keeps the test about the operator.
        grace(&w, name, "5s", "60s").await;
        keys.insert(
            name.clone(),
            a.status.and_then(|s| s.active_key).expect("key").id,
        );
    }
    for name in &names {
        wait_until("the first pods run", || async {
            rollout_complete(&w, name).await.then_some(())
        })
        .await;
    }
    for round in 1..=ROUNDS {
        for name in &names {
            w.annotate(name, ROTATE_ANNOTATION, &round.to_string())
                .await;
        }
        if round % 3 == 0 {
            // Killed while the restarts roll out: the new process must not restart anything
            // twice for the same key.
            tokio::time::sleep(Duration::from_millis(150)).await;
            w.kill_operator().await;
            w.start_operator(options.clone()).await;
        }
        for name in &names {
            let previous = keys[name].clone();
            let key = wait_rotated(&w, name, &previous).await;
            keys.insert(name.clone(), key);
        }
        for name in &names {
            assert_eq!(
                restarts(&w, name).await,
                round as i64,
                "{name}: one restart per rotation (round {round})"
            );
        }
    }
    let counters = sim.stop().await;
    assert!(calls(&counters) > 0);
    let failed: Vec<_> = counters
        .iter()
        .filter(|(_, c)| c.auth_failures > 0)
        .collect();
    assert!(
        failed.is_empty(),
        "no pod failed to authenticate: {failed:#?}"
    );
    let total: i64 = {
        let mut n = 0;
        for name in &names {
            n += restarts(&w, name).await;
        }
        n
    };
    println!(
        "{} rotations, {total} restarts, {} whoami calls, 0 authentication failures",
        AGENTS * ROUNDS,
        calls(&counters)
    );
    assert_eq!(total, (AGENTS * ROUNDS) as i64);
    w.stop_operator().await;
}

/// The same with mounted files and restart off: nothing is restarted, the old key waits for the
/// kubelet sync period, and no pod fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_reach_mounted_files_without_a_restart_or_a_failure() {
    let mut w = World::start_with(fast_pods(), "wl-files").await;
    w.start_operator(Options::default()).await;
    let sim = WorkloadSim::start(w.client.clone(), &w.emu.base_url(), &w.ns, sim_config());
    let extra = json!({"agentlattice.io/restart-on-rotation": "false"});
    create_deployment(&w, &annotated("reader", Reads::File, extra)).await;
    let (a, _) = w.wait_settled("reader", true).await;
    assert!(!a.spec.restart_on_rotation);
    grace(&w, "reader", "1s", "60s").await;
    let mut key = a.status.and_then(|s| s.active_key).expect("key").id;
    wait_until("the pods run", || async {
        rollout_complete(&w, "reader").await.then_some(())
    })
    .await;
    for round in 1..=5 {
        w.annotate("reader", ROTATE_ANNOTATION, &round.to_string())
            .await;
        // While the kubelet may not have refreshed the file, the old key is held.
        let status = wait_until("the rotation", || async {
            let s = w.get("reader").await.status?;
            (s.active_key.as_ref()?.id != key).then_some(s)
        })
        .await;
        if let Some(c) = status.consumers.first() {
            assert_eq!(c.reads, "File");
        }
        key = wait_rotated(&w, "reader", &key).await;
    }
    let counters = sim.stop().await;
    assert!(calls(&counters) > 0);
    assert_eq!(failures(&counters), 0);
    assert_eq!(restarts(&w, "reader").await, 0, "a file needs no restart");
    w.stop_operator().await;
}

/// Restart off with a consumer that reads the key from the environment: the operator says, in
/// a Warning and a condition, before the maximum grace period, that the consumer will lose
/// access; at the maximum grace period the key is revoked, and the failures that follow are
/// counted, not hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_restarts_an_environment_consumer_is_warned_about_then_loses_access() {
    let mut w = World::start_with(fast_pods(), "wl-norestart").await;
    w.start_operator(Options::default()).await;
    let sim = WorkloadSim::start(w.client.clone(), &w.emu.base_url(), &w.ns, sim_config());
    let extra = json!({"agentlattice.io/restart-on-rotation": "false"});
    create_deployment(&w, &annotated("legacy", Reads::Env, extra)).await;
    w.wait_settled("legacy", true).await;
    // A short maximum grace period (an edit of the LatticeAgent the identity does not own).
    grace(&w, "legacy", "1s", "4s").await;
    wait_until("the pods run", || async {
        rollout_complete(&w, "legacy").await.then_some(())
    })
    .await;
    let before = w.get("legacy").await;
    let old = before.status.and_then(|s| s.active_key).expect("key").id;
    w.annotate("legacy", ROTATE_ANNOTATION, "1").await;
    let warning = w.wait_event("legacy", "ConsumersWillLoseAccess").await;
    let note = warning.note.clone().unwrap_or_default();
    assert!(note.contains("Deployment legacy"), "{note}");
    let rotating = w
        .wait_condition(
            "legacy",
            "Rotating",
            "True",
            Some("ConsumersWillLoseAccess"),
        )
        .await;
    let retiring = rotating.status.expect("status").retiring_keys[0].clone();
    assert_eq!(retiring.id, old);
    let warned_at = warning.event_time.map(|t| t.0).expect("event time");
    assert!(
        warned_at < retiring.revoke_by,
        "warned before the maximum grace period"
    );
    wait_rotated(&w, "legacy", &old).await;
    let revoked_at = w
        .emu
        .snapshot()
        .live_agent_named(&format!("{}-legacy", w.ns))
        .and_then(|a| a.key(&old).and_then(|k| k.revoked_at))
        .expect("the old key is revoked");
    assert!(
        revoked_at >= retiring.revoke_by,
        "not before the maximum grace period"
    );
    wait_until("the failures are counted", || async {
        (failures(&sim.counters()) > 0).then_some(())
    })
    .await;
    assert_eq!(restarts(&w, "legacy").await, 0);
    sim.stop().await;
    w.stop_operator().await;
}

/// A restart whose rollout cannot finish holds the old key until the maximum grace period, and
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_holds_revocation_until_the_maximum_grace_period() {
    let mut w = World::start_with(fast_pods(), "wl-stuck").await;
    w.start_operator(Options::default()).await;
    create_deployment(&w, &annotated("stuck", Reads::Env, json!({}))).await;
    w.wait_settled("stuck", true).await;
    grace(&w, "stuck", "1s", "8s").await;
    wait_until("the pods run", || async {
        rollout_complete(&w, "stuck").await.then_some(())
    })
    .await;
    // From now on, new pods never become Ready.
    w.sim
        .workload_faults()
        .never_ready(PodMatcher::workload(&w.ns, "stuck"));
    let old = w
        .get("stuck")
        .await
        .status
        .and_then(|s| s.active_key)
        .expect("key")
        .id;
    w.annotate("stuck", ROTATE_ANNOTATION, "1").await;
    w.wait_event("stuck", "RolloutRestartTriggered").await;
    let stuck = w
        .wait_condition("stuck", "Rotating", "True", Some("ConsumersWillLoseAccess"))
        .await;
    let message = support::condition(&stuck, "Rotating")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("rollout stuck"), "{message}");
    let retiring = stuck.status.expect("status").retiring_keys[0].clone();
    wait_rotated(&w, "stuck", &old).await;
    let snapshot = w.emu.snapshot();
    let revoked_at = snapshot
        .live_agent_named(&format!("{}-stuck", w.ns))
        .and_then(|a| a.key(&old).and_then(|k| k.revoked_at))
        .expect("revoked");
    assert!(
        revoked_at >= retiring.revoke_by,
        "held until the maximum grace period ({revoked_at} < {})",
        retiring.revoke_by
    );
    assert_eq!(restarts(&w, "stuck").await, 1, "restarted once");
    w.stop_operator().await;
}

/// Several rotations within the minimum restart interval are served by one restart (besides
/// the one the first rotation starts at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_within_the_minimum_interval_cause_one_restart() {
    let mut w = World::start_with(fast_pods(), "wl-interval").await;
    let mut options = Options::default();
    options.consumers.restart_min_interval = jiff::SignedDuration::from_secs(4);
    w.start_operator(options).await;
    create_deployment(&w, &annotated("burst", Reads::Env, json!({}))).await;
    w.wait_settled("burst", true).await;
    grace(&w, "burst", "1s", "60s").await;
    wait_until("the pods run", || async {
        rollout_complete(&w, "burst").await.then_some(())
    })
    .await;
    let mut key = w
        .get("burst")
        .await
        .status
        .and_then(|s| s.active_key)
        .expect("key")
        .id;
    // The first rotation restarts at once.
    w.annotate("burst", ROTATE_ANNOTATION, "1").await;
    wait_until("the first restart", || async {
        (restarts(&w, "burst").await == 1).then_some(())
    })
    .await;
    let first = key.clone();
    key = wait_until("the first rotation", || async {
        let k = w.get("burst").await.status?.active_key?.id;
        (k != first).then_some(k)
    })
    .await;
    // Three more within the interval: one more restart, for the last key, after it.
    for value in ["2", "3", "4"] {
        let previous = key.clone();
        w.annotate("burst", ROTATE_ANNOTATION, value).await;
        key = wait_until("the rotation", || async {
            let k = w.get("burst").await.status?.active_key?.id;
            (k != previous).then_some(k)
        })
        .await;
    }
    wait_rotated(&w, "burst", "none").await;
    assert_eq!(restarts(&w, "burst").await, 2, "one restart for the burst");
    let d = deployments(&w).get("burst").await.expect("Deployment");
    let stamped = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("agentlattice.io/restarted-for").cloned());
    assert_eq!(stamped.as_deref(), Some(key.as_str()), "for the newest key");
    w.stop_operator().await;
}

/// Many annotated Deployments at once all get Ready identities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_annotated_deployments_get_ready_identities() {
    const N: usize = 200;
    let mut w = World::start_with(fast_pods(), "wl-many").await;
    w.start_operator(Options {
        resync: jiff::SignedDuration::from_mins(5),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let creates = (0..N).map(|i| {
        let w = &w;
        async move {
            create_deployment(w, &annotated(&format!("d{i:03}"), Reads::File, json!({}))).await;
        }
    });
    futures::future::join_all(creates).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let list = w.agents().list(&Default::default()).await.expect("list");
        let ready = list
            .items
            .iter()
            .filter(|a| support::condition(a, "Ready").is_some_and(|c| c.status == "True"))
            .count();
        if ready == N {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ready} of {N} Ready after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{N} annotated Deployments created at once: every identity Ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(w.emu.snapshot().live_agents().count(), N);
    w.stop_operator().await;
}
