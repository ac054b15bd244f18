//! The workload simulator of the operator's tests (`tests/support/workloads.rs`) against
//! kube-sim and the AgentLattice emulator: pods reading a key through an environment variable
//! keep the key their container started with until they are restarted, pods reading a mounted
//! Secret file pick up a new key after the kubelet sync delay, and a key revoked at AgentLattice
//! shows as authentication failures of exactly the pods still using it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentlattice::RegisterAgent;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::KubeSim;
use serde_json::json;
use support::workloads::{PodCounters, WorkloadSim, WorkloadSimConfig};
use support::{World, wait_until};

const NS: &str = "workload-sim";
const SYNC: Duration = Duration::from_millis(600);

fn deployment(name: &str, replicas: i32, env: bool) -> Deployment {
    let mut spec = json!({"containers": [{"name": "app", "image": "al-cli"}]});
    if env {
        spec["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "agent-key"}}]);
    } else {
        spec["containers"][0]["volumeMounts"] =
            json!([{"name": "key", "mountPath": "/var/run/agentlattice", "readOnly": true}]);
        spec["volumes"] = json!([{"name": "key", "secret": {"secretName": "agent-key"}}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
    }))
    .expect("deployment")
}

async fn put_key(world: &World, key: &str) {
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), NS);
    let s: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "agent-key"}, "stringData": {"AL_API_KEY": key}}))
    .expect("secret");
    secrets
        .patch(
            "agent-key",
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&s),
        )
        .await
        .expect("key written");
}

fn of<'a>(
    c: &'a BTreeMap<String, PodCounters>,
    prefix: &str,
) -> Vec<(&'a String, &'a PodCounters)> {
    c.iter().filter(|(n, _)| n.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_keys_hold_until_restart_files_follow_the_secret_and_revocation_is_counted() {
    let sim = KubeSim::builder()
        .pod_start_delay(Duration::from_millis(20))
        .pod_ready_delay(Duration::from_millis(20))
        .pod_termination_delay(Duration::from_millis(10));
    let world = World::bare(sim, "workload-sim", NS).await;
    world.create_namespace(NS).await;
    let provisioner = world.provisioner();
    let registered = provisioner
        .register(
            &RegisterAgent::new("workload-sim-app").capabilities(["deploy.staging"]),
            None,
        )
        .await
        .expect("agent registered");
    let agent_id = registered.agent.id.clone();
    let key1_id = registered.key_id.clone();
    let key1 = registered.api_key.expect("key shown once");
    put_key(&world, key1.expose_secret()).await;
    let deploys: Api<Deployment> = Api::namespaced(world.client.clone(), NS);
    for d in [
        deployment("env-app", 2, true),
        deployment("file-app", 1, false),
    ] {
        deploys
            .create(&PostParams::default(), &d)
            .await
            .expect("deployment");
    }
    let apps = WorkloadSim::start(
        world.client.clone(),
        &world.emu.base_url(),
        NS,
        WorkloadSimConfig {
            kubelet_sync_delay: SYNC,
            ..WorkloadSimConfig::default()
        },
    );
    wait_until("three pods call with the first key", || {
        let c = apps.counters();
        let k1 = key1_id.clone();
        async move {
            (c.len() == 3
                && c.values().all(|p| {
                    p.whoami_ok >= 3 && p.actions_ok >= 3 && p.last_key_id.as_ref() == Some(&k1)
                }))
            .then_some(())
        }
    })
    .await;
    let c = apps.counters();
    assert_eq!(
        of(&c, "env-app")
            .iter()
            .filter(|(_, p)| p.source == "env")
            .count(),
        2
    );
    assert_eq!(of(&c, "file-app")[0].1.source, "file");

    // Rotate: a second key goes into the Secret.
    let minted = provisioner.mint_key(&agent_id, None).await.expect("mint");
    let key2_id = minted.key.key_id.clone();
    put_key(&world, minted.api_key.expose_secret()).await;
    tokio::time::sleep(SYNC / 3).await;
    let c = apps.counters();
    assert_eq!(
        of(&c, "file-app")[0].1.last_key_id.as_ref(),
        Some(&key1_id),
        "the mounted file still holds the old key before the kubelet syncs"
    );
    wait_until("the file pod follows the Secret", || {
        let c = apps.counters();
        let k2 = key2_id.clone();
        async move { (of(&c, "file-app")[0].1.last_key_id.as_ref() == Some(&k2)).then_some(()) }
    })
    .await;
    let c = apps.counters();
    for (n, p) in of(&c, "env-app") {
        assert_eq!(
            p.last_key_id.as_ref(),
            Some(&key1_id),
            "{n} keeps its environment"
        );
        assert_eq!(p.key_ids.len(), 1);
    }

    // Revoke the first key at AgentLattice: only the env pods fail.
    provisioner
        .revoke_key(&agent_id, &key1_id, true)
        .await
        .expect("revoke");
    wait_until("the env pods are refused", || {
        let c = apps.counters();
        async move {
            of(&c, "env-app")
                .iter()
                .all(|(_, p)| p.auth_failures >= 4)
                .then_some(())
        }
    })
    .await;
    let file_failures = of(&apps.counters(), "file-app")[0].1.auth_failures;
    assert_eq!(
        file_failures, 0,
        "the file pod moved to the new key before the revocation"
    );

    // Restart the env pods (what kubectl rollout restart patches): new pods, new key.
    let old: BTreeSet<String> = of(&apps.counters(), "env-app")
        .iter()
        .map(|(n, _)| (*n).clone())
        .collect();
    deploys
        .patch(
            "env-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}})),
        )
        .await
        .expect("restart");
    wait_until("restarted env pods use the new key", || {
        let c = apps.counters();
        let (old, k2) = (old.clone(), key2_id.clone());
        async move {
            let fresh: Vec<&PodCounters> = of(&c, "env-app")
                .into_iter()
                .filter(|(n, _)| !old.contains(*n))
                .map(|(_, p)| p)
                .collect();
            (fresh.len() == 2
                && fresh.iter().all(|p| {
                    p.whoami_ok >= 2 && p.auth_failures == 0 && p.last_key_id.as_ref() == Some(&k2)
                }))
            .then_some(())
        }
    })
    .await;
    let last = apps.stop().await;
    let shown = format!("{last:?}");
    assert!(
        !shown.contains(key1.expose_secret()) && !shown.contains(minted.api_key.expose_secret())
    );
}
