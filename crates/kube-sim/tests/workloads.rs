//! Simulated workloads through kube-rs: a Deployment's ReplicaSet and pods with their owner
//! references and status, the simulator staying idle once a rollout is done, garbage
//! collection, Pod validation, workload faults and their recovery, core/v1 and
//! events.k8s.io/v1 events of the controllers, pods waiting for a Secret that does not exist yet.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Secret};
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube_sim::{KubeSim, PodMatcher};
use serde_json::json;

async fn sim() -> KubeSim {
    KubeSim::builder()
        .pod_start_delay(Duration::from_millis(20))
        .pod_ready_delay(Duration::from_millis(20))
        .pod_termination_delay(Duration::from_millis(10))
        .nodes(2)
        .start()
        .await
        .expect("simulator starts")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
    }))
    .unwrap()
}

async fn wait_available(api: &Api<Deployment>, name: &str) {
    tokio::time::timeout(
        Duration::from_secs(20),
        await_condition(api.clone(), name, |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.available_replicas == Some(3) && s.updated_replicas == Some(3))
        }),
    )
    .await
    .expect("rolled out in time")
    .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_runs_pods_owned_through_its_replica_set_then_goes_idle() {
    let sim = sim().await;
    common::create_ns(&sim.client(), "w1").await;
    let deploys: Api<Deployment> = Api::namespaced(sim.client(), "w1");
    deploys
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    wait_available(&deploys, "web").await;
    let d = deploys.get("web").await.unwrap();
    let st = d.status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.ready_replicas, Some(3));
    assert_eq!(st.unavailable_replicas, None);
    let conds = st.conditions.unwrap();
    let progressing = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let available = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(available.status, "True");
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let rss: Api<ReplicaSet> = Api::namespaced(sim.client(), "w1");
    let rs = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    let pods: Api<Pod> = Api::namespaced(sim.client(), "w1");
    let list = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 3);
    for p in &list {
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str()),
            ("ReplicaSet", rs.metadata.uid.as_deref().unwrap())
        );
        let s = p.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(
            p.spec
                .as_ref()
                .unwrap()
                .node_name
                .as_deref()
                .unwrap()
                .starts_with("kube-sim-node-")
        );
    }
    // Nothing pending: no write happens any more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rv = sim.resource_version();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sim.resource_version(), rv, "the simulator is idle");
    // Garbage collection.
    deploys
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        common::eventually(|| async {
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
                && rss
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
        })
        .await,
        "pods and replica set collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_validated_like_core_v1() {
    let sim = sim().await;
    common::create_ns(&sim.client(), "w2").await;
    let r = common::post(
        &sim.client(),
        "/api/v1/namespaces/w2/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
    )
    .await;
    r.assert_status(
        422,
        "Invalid",
        "Pod \"p\" is invalid: spec.containers: Required value",
    );
    let r = common::post(
        &sim.client(),
        "/apis/apps/v1/namespaces/w2/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}}}),
    )
    .await;
    r.assert_status(
        422,
        "Invalid",
        "Deployment.apps \"d\" is invalid: [spec.template.spec.containers[0].image: Required value, spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"]",
    );
    // A bare pod is scheduled and started; its spec cannot change afterwards.
    let pods: Api<Pod> = Api::namespaced(sim.client(), "w2");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "solo"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(pods.clone(), "solo", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let r = common::patch(
        &sim.client(),
        "/api/v1/namespaces/w2/pods/solo",
        common::MERGE,
        json!({"spec": {"containers": [{"name": "c", "image": "busybox", "workingDir": "/x"}]}}),
    )
    .await;
    assert_eq!(r.code, 422, "{}", r.text);
    assert!(
        r.message()
            .contains("spec: Forbidden: pod updates may not change fields other than"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_faults_and_recovery_and_controller_events() {
    let sim = sim().await;
    common::create_ns(&sim.client(), "w3").await;
    sim.workload_faults()
        .never_ready(PodMatcher::workload("w3", "web"));
    let deploys: Api<Deployment> = Api::namespaced(sim.client(), "w3");
    deploys
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "w3");
    assert!(
        common::eventually(|| async {
            let l = pods.list(&ListParams::default()).await.unwrap().items;
            l.len() == 3
                && l.iter()
                    .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.status.as_ref().unwrap().available_replicas, None);
    assert_eq!(d.status.as_ref().unwrap().unavailable_replicas, Some(3));
    // Recovery once the fault is gone.
    sim.workload_faults().clear();
    wait_available(&deploys, "web").await;
    // Crash loop: restarts grow, never Ready.
    sim.workload_faults()
        .crash_after_start(PodMatcher::label("app", "crash"), Duration::from_millis(10));
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "crash", "labels": {"app": "crash"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    assert!(
        common::eventually(|| async {
            let p = pods.get("crash").await.unwrap();
            p.status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next())
                .is_some_and(|cs| cs.restart_count >= 2 && !cs.ready)
        })
        .await,
        "restartCount grows"
    );
    // The controllers' events, in both event APIs.
    let core: Api<Event> = Api::namespaced(sim.client(), "w3");
    let reasons: Vec<String> = core
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Scheduled",
        "Started",
        "BackOff",
    ] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    let v1: Api<EventV1> = Api::namespaced(sim.client(), "w3");
    let scaled = v1
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
        .unwrap();
    assert!(
        scaled
            .note
            .unwrap()
            .starts_with("Scaled up replica set web-")
    );
    assert_eq!(
        scaled.regarding.unwrap().kind.as_deref(),
        Some("Deployment")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_seeded_with_status_and_api_created_nodes_get_one() {
    let sim = sim().await;
    let nodes: Api<Node> = Api::all(sim.client());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        list.iter()
            .map(|n| n.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["kube-sim-node-1", "kube-sim-node-2"]
    );
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "extra"}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    assert!(
        common::eventually(|| async {
            let n = nodes.get("extra").await.unwrap();
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                && n.spec.and_then(|s| s.pod_cidr).is_some()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_delays_only_the_matching_pods() {
    let sim = sim().await;
    common::create_ns(&sim.client(), "w4").await;
    sim.workload_faults().slow_start(
        PodMatcher::annotation("example.com/slow", "true").in_namespace("w4"),
        Duration::from_millis(800),
    );
    let pods: Api<Pod> = Api::namespaced(sim.client(), "w4");
    for (name, slow) in [("fast", false), ("slow", true)] {
        let mut p = json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if slow {
            p["metadata"]["annotations"] = json!({"example.com/slow": "true"});
        }
        pods.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();
    }
    let phase = |p: Pod| p.status.and_then(|s| s.phase).unwrap_or_default();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(pods.clone(), "fast", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(phase(pods.get("slow").await.unwrap()), "Pending");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(pods.clone(), "slow", conditions::is_pod_running()),
    )
    .await
    .unwrap()
    .unwrap();
    let waiting = pods.get("slow").await.unwrap();
    assert_eq!(phase(waiting), "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_wait_for_a_missing_secret_then_the_deployment_becomes_available() {
    let sim = sim().await;
    common::create_ns(&sim.client(), "w5").await;
    let mut d = serde_json::to_value(deployment("web", 3)).unwrap();
    d["spec"]["progressDeadlineSeconds"] = json!(1);
    d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "AL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "agent-key", "key": "AL_API_KEY"}}}]);
    let deploys: Api<Deployment> = Api::namespaced(sim.client(), "w5");
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "w5");
    let waiting = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .map(|w| (w.reason.clone(), w.message.clone()))
    };
    assert!(
        common::eventually(|| async {
            let l = pods.list(&ListParams::default()).await.unwrap().items;
            l.len() == 3
                && l.iter().all(|p| {
                    waiting(p).is_some_and(|w| w.0.as_deref() == Some("CreateContainerConfigError"))
                })
        })
        .await,
        "every pod waits for the Secret"
    );
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        assert_eq!(
            waiting(&p).unwrap().1.as_deref(),
            Some("secret \"agent-key\" not found")
        );
        let s = p.status.unwrap();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        for t in ["Ready", "ContainersReady"] {
            let c = s
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("False", Some("ContainersNotReady"))
            );
        }
    }
    // A stuck rollout like any other: never Available, then past its progress deadline.
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(deploys.clone(), "web", |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.type_ == "Progressing"
                            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                    })
                })
        }),
    )
    .await
    .expect("deadline exceeded in time")
    .expect("watch");
    let st = deploys.get("web").await.unwrap().status.unwrap();
    assert_eq!(st.available_replicas, None);
    assert_eq!(st.unavailable_replicas, Some(3));
    let available = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "False");
    // The kubelet's Event, once per pod.
    let failed: Vec<Event> = Api::<Event>::namespaced(sim.client(), "w5")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Failed"))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for e in &failed {
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            e.message.as_deref(),
            Some("Error: secret \"agent-key\" not found")
        );
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("kubelet")
        );
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
    }
    // Waiting is not polling: nothing is written while nothing changes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rv = sim.resource_version();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.resource_version(), rv, "the simulator is idle");
    // An unrelated Secret changes nothing; the one the pods need starts them.
    let secrets: Api<Secret> = Api::namespaced(sim.client(), "w5");
    let secret = |name: &str| -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "stringData": {"AL_API_KEY": "k"}}),
        )
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret("other"))
        .await
        .unwrap();
    let rv = sim.resource_version();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.resource_version(), rv, "no pod refers to that Secret");
    secrets
        .create(&PostParams::default(), &secret("agent-key"))
        .await
        .unwrap();
    wait_available(&deploys, "web").await;
    let st = deploys.get("web").await.unwrap().status.unwrap();
    let progressing = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let cs = &p.status.unwrap().container_statuses.unwrap()[0];
        assert!(
            cs.ready && cs.state.as_ref().unwrap().running.is_some(),
            "{cs:?}"
        );
    }
}
