//! The real kubectl against simulated workloads: `rollout status/restart/undo/history`,
//! `scale`, `get pods -o wide`, `describe`, `get events`, a stuck rollout, StatefulSet order,
//! DaemonSets following nodes, garbage collection, `auth can-i` (protobuf), `explain` of a CRD
//! field, `create token`, pods missing a Secret (`get pods` STATUS, `describe pod` events).
//! Pods start and get Ready in milliseconds here (builder delays).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kubectl::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube_sim::{KubeSim, PodMatcher};

async fn fast_sim() -> KubeSim {
    KubeSim::builder()
        .pod_start_delay(Duration::from_millis(30))
        .pod_ready_delay(Duration::from_millis(30))
        .pod_termination_delay(Duration::from_millis(20))
        .start()
        .await
        .expect("simulator starts")
}

fn deployment(name: &str, replicas: u32, surge: &str, unavailable: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  progressDeadlineSeconds: 600\n  strategy:\n    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
    )
}

fn header(out: &str) -> Vec<&str> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

fn rows(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_waits_for_a_new_deployment_and_get_pods_wide() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "rollout");
    k.apply_ns("k-roll").await;
    k.run_stdin(
        &["apply", "-n", "k-roll", "-f", "-"],
        Some(&deployment("web", 3, "25%", "25%", "nginx:1.27")),
    )
    .await
    .success();
    let out = k
        .run(&[
            "rollout",
            "status",
            "-n",
            "k-roll",
            "deploy/web",
            "--timeout=30s",
        ])
        .await
        .success();
    assert_eq!(
        out.lines().last(),
        Some("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let out = k
        .run(&["get", "pods", "-n", "k-roll", "-o", "wide"])
        .await
        .success();
    assert_eq!(
        header(&out),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    let r = rows(&out);
    assert_eq!(r.len(), 3, "{out}");
    for row in &r {
        assert!(row[0].starts_with("web-"), "{out}");
        assert_eq!(&row[1..4], ["1/1", "Running", "0"], "{out}");
        assert!(row[5].starts_with("10.244."), "{out}");
        assert!(row[6].starts_with("kube-sim-node-"), "{out}");
    }
    let out = k.run(&["get", "deploy,rs", "-n", "k-roll"]).await.success();
    assert!(
        out.contains("deployment.apps/web   3/3     3            3"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_rolls_every_pod_once_within_the_surge_limits() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "restart");
    k.apply_ns("k-restart").await;
    // 4 replicas, at most 1 extra and 1 missing.
    k.run_stdin(
        &["apply", "-n", "k-restart", "-f", "-"],
        Some(&deployment("web", 4, "1", "1", "nginx")),
    )
    .await
    .success();
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-restart",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    // Watch the pods through the restart: which exist, which are ready.
    let pods: Api<Pod> = Api::namespaced(sim.client(), "k-restart");
    let state: Arc<Mutex<BTreeMap<String, (bool, bool)>>> = Arc::default();
    let created: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let worst = Arc::new(Mutex::new((0usize, usize::MAX)));
    let before: BTreeSet<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let watch = {
        let (state, created, worst) = (state.clone(), created.clone(), worst.clone());
        let stream = watcher(pods.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                let mut s = state.lock().unwrap();
                let mut apply = |p: &Pod, gone: bool| {
                    let name = p.metadata.name.clone().unwrap();
                    created.lock().unwrap().insert(name.clone());
                    if gone {
                        s.remove(&name);
                    } else {
                        let terminating = p.metadata.deletion_timestamp.is_some();
                        let ready = p
                            .status
                            .as_ref()
                            .and_then(|st| st.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        s.insert(name, (terminating, ready && !terminating));
                    }
                };
                match &ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => apply(p, false),
                    watcher::Event::Delete(p) => apply(p, true),
                    _ => {}
                }
                let alive = s.values().filter(|(t, _)| !t).count();
                let ready = s.values().filter(|(_, r)| *r).count();
                if matches!(
                    ev,
                    watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)
                ) && !s.is_empty()
                {
                    let mut w = worst.lock().unwrap();
                    w.0 = w.0.max(alive);
                    w.1 = w.1.min(ready);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = k
        .run(&["rollout", "restart", "-n", "k-restart", "deploy/web"])
        .await
        .success();
    assert_eq!(out.trim(), "deployment.apps/web restarted");
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-restart",
        "deploy/web",
        "--timeout=60s",
    ])
    .await
    .success();
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let now: BTreeSet<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(now.len(), 4);
    assert!(
        now.is_disjoint(&before),
        "every pod was replaced: {before:?} -> {now:?}"
    );
    let new_pods: BTreeSet<String> = created
        .lock()
        .unwrap()
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(
        new_pods, now,
        "each pod was replaced exactly once (no extra pods)"
    );
    let (max_alive, min_ready) = *worst.lock().unwrap();
    assert!(
        max_alive <= 5,
        "maxSurge 1 exceeded: {max_alive} pods at once"
    );
    assert!(
        min_ready >= 3,
        "maxUnavailable 1 exceeded: only {min_ready} ready"
    );
    let v = k
        .run(&[
            "get",
            "deploy",
            "web",
            "-n",
            "k-restart",
            "-o",
            "jsonpath={.spec.template.metadata.annotations}",
        ])
        .await
        .success();
    assert!(v.contains("kubectl.kubernetes.io/restartedAt"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_rollout_exceeds_its_progress_deadline() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "stuck");
    k.apply_ns("k-stuck").await;
    sim.workload_faults()
        .never_ready(PodMatcher::workload("k-stuck", "web"));
    let d = deployment("web", 2, "25%", "25%", "nginx")
        .replace("progressDeadlineSeconds: 600", "progressDeadlineSeconds: 1");
    k.run_stdin(&["apply", "-n", "k-stuck", "-f", "-"], Some(&d))
        .await
        .success();
    let err = k
        .run(&[
            "rollout",
            "status",
            "-n",
            "k-stuck",
            "deploy/web",
            "--timeout=30s",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "error: deployment \"web\" exceeded its progress deadline"
    );
    let reason = k
        .run(&[
            "get",
            "deploy",
            "web",
            "-n",
            "k-stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ])
        .await
        .success();
    assert_eq!(reason, "ProgressDeadlineExceeded");
    let out = k.run(&["get", "pods", "-n", "k-stuck"]).await.success();
    for row in rows(&out) {
        assert_eq!(&row[1..3], ["0/1", "Running"], "{out}");
    }
    // A crash loop shows as CrashLoopBackOff with restarts.
    sim.workload_faults().clear();
    sim.workload_faults().crash_after_start(
        PodMatcher::workload("k-stuck", "crash"),
        Duration::from_millis(20),
    );
    k.run_stdin(
        &["apply", "-n", "k-stuck", "-f", "-"],
        Some(&deployment("crash", 1, "25%", "25%", "busybox")),
    )
    .await
    .success();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = k
            .run(&["get", "pods", "-n", "k-stuck", "-l", "app=crash"])
            .await
            .success();
        if rows(&seen)
            .first()
            .is_some_and(|r| r[2] == "CrashLoopBackOff" && r[3] != "0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = rows(&seen);
    assert_eq!(r[0][1], "0/1", "{seen}");
    assert_eq!(r[0][2], "CrashLoopBackOff", "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_set_image_history_and_undo() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "undo");
    k.apply_ns("k-undo").await;
    k.run_stdin(
        &["apply", "-n", "k-undo", "-f", "-"],
        Some(&deployment("web", 2, "25%", "25%", "nginx:1.27")),
    )
    .await
    .success();
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-undo",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    let out = k
        .run(&["scale", "-n", "k-undo", "deploy/web", "--replicas=4"])
        .await
        .success();
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-undo",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    let ready = k
        .run(&[
            "get",
            "deploy",
            "web",
            "-n",
            "k-undo",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
        .await
        .success();
    assert_eq!(ready, "4");
    k.run(&[
        "set",
        "image",
        "-n",
        "k-undo",
        "deploy/web",
        "app=nginx:1.28",
    ])
    .await
    .success();
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-undo",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    let out = k
        .run(&["rollout", "history", "-n", "k-undo", "deploy/web"])
        .await
        .success();
    let revs: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2"], "{out}");
    let out = k
        .run(&["rollout", "undo", "-n", "k-undo", "deploy/web"])
        .await
        .success();
    assert_eq!(out.trim(), "deployment.apps/web rolled back");
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-undo",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    let image = k
        .run(&[
            "get",
            "deploy",
            "web",
            "-n",
            "k-undo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await
        .success();
    assert_eq!(image, "nginx:1.27");
    let out = k
        .run(&["rollout", "history", "-n", "k-undo", "deploy/web"])
        .await
        .success();
    let revs: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "revision 1 came back as 3: {out}");
    let out = k
        .run(&[
            "get",
            "pods",
            "-n",
            "k-undo",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])
        .await
        .success();
    assert!(out.split_whitespace().all(|i| i == "nginx:1.27"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_rolls_in_order_and_daemonset_follows_nodes() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "sts");
    k.apply_ns("k-sts").await;
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: db\n        image: postgres:16\n";
    k.run_stdin(&["apply", "-n", "k-sts", "-f", "-"], Some(sts))
        .await
        .success();
    let out = k
        .run(&[
            "rollout",
            "status",
            "-n",
            "k-sts",
            "sts/db",
            "--timeout=30s",
        ])
        .await
        .success();
    assert_eq!(
        out.lines().last(),
        Some("partitioned roll out complete: 3 new pods have been updated..."),
        "{out}"
    );
    let pods: Api<Pod> = Api::namespaced(sim.client(), "k-sts");
    let mut by_time: Vec<(String, String)> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.resource_version.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    by_time.sort_by_key(|(_, n)| n.clone());
    assert_eq!(
        by_time.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        ["db-0", "db-1", "db-2"]
    );
    // An update replaces db-2, then db-1, then db-0: record the deletions.
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let w = {
        let deleted = deleted.clone();
        let stream = watcher(pods.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                if let watcher::Event::Apply(p) = ev
                    && p.metadata.deletion_timestamp.is_some()
                {
                    let n = p.metadata.name.clone().unwrap();
                    let mut d = deleted.lock().unwrap();
                    if d.last() != Some(&n) {
                        d.push(n);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    k.run(&["set", "image", "-n", "k-sts", "sts/db", "db=postgres:17"])
        .await
        .success();
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-sts",
        "sts/db",
        "--timeout=30s",
    ])
    .await
    .success();
    w.abort();
    assert_eq!(*deleted.lock().unwrap(), ["db-2", "db-1", "db-0"]);
    let revs = k
        .run(&[
            "get",
            "sts",
            "db",
            "-n",
            "k-sts",
            "-o",
            "jsonpath={.status.currentRevision} {.status.updateRevision}",
        ])
        .await
        .success();
    let r: Vec<&str> = revs.split_whitespace().collect();
    assert_eq!(r[0], r[1], "{revs}");
    let out = k
        .run(&["rollout", "history", "-n", "k-sts", "sts/db"])
        .await
        .success();
    assert!(out.contains("\n1 ") && out.contains("\n2 "), "{out}");

    // DaemonSet: one pod per node, following nodes.
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: fluent-bit\n";
    k.run_stdin(&["apply", "-n", "k-sts", "-f", "-"], Some(ds))
        .await
        .success();
    let out = k
        .run(&[
            "rollout",
            "status",
            "-n",
            "k-sts",
            "ds/agent",
            "--timeout=30s",
        ])
        .await
        .success();
    assert_eq!(
        out.lines().last(),
        Some("daemon set \"agent\" successfully rolled out")
    );
    let count = |out: &str| out.split_whitespace().count();
    let nodes_of = "jsonpath={.items[*].spec.nodeName}";
    let out = k
        .run(&[
            "get",
            "pods",
            "-n",
            "k-sts",
            "-l",
            "app=agent",
            "-o",
            nodes_of,
        ])
        .await
        .success();
    assert_eq!(count(&out), 3, "{out}");
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: extra-node\n";
    k.run_stdin(&["apply", "-f", "-"], Some(node))
        .await
        .success();
    let mut out = String::new();
    for _ in 0..100 {
        out = k
            .run(&[
                "get",
                "ds",
                "agent",
                "-n",
                "k-sts",
                "-o",
                "jsonpath={.status.numberAvailable}/{.status.desiredNumberScheduled}",
            ])
            .await
            .success();
        if out == "4/4" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(out, "4/4");
    k.run(&["delete", "node", "extra-node"]).await.success();
    for _ in 0..100 {
        out = k
            .run(&[
                "get",
                "pods",
                "-n",
                "k-sts",
                "-l",
                "app=agent",
                "-o",
                nodes_of,
            ])
            .await
            .success();
        if count(&out) == 3 && !out.contains("extra-node") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!out.contains("extra-node") && count(&out) == 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collects_pods_and_get_events_agrees_with_describe() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "events");
    k.apply_ns("k-ev").await;
    k.run_stdin(
        &["apply", "-n", "k-ev", "-f", "-"],
        Some(&deployment("web", 2, "25%", "25%", "nginx")),
    )
    .await
    .success();
    k.run(&[
        "rollout",
        "status",
        "-n",
        "k-ev",
        "deploy/web",
        "--timeout=30s",
    ])
    .await
    .success();
    let out = k
        .run(&[
            "get",
            "events",
            "-n",
            "k-ev",
            "--field-selector",
            "involvedObject.kind=Deployment",
        ])
        .await
        .success();
    assert_eq!(
        header(&out),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    let line = out.lines().nth(1).unwrap_or("");
    let msg = line
        .split("deployment/web")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        msg.starts_with("Scaled up replica set web-") && msg.ends_with("from 0 to 2"),
        "{out}"
    );
    assert!(
        line.contains("Normal") && line.contains("ScalingReplicaSet"),
        "{out}"
    );
    let described = k
        .run(&["describe", "deployment", "web", "-n", "k-ev"])
        .await
        .success();
    let events = described.split("Events:").nth(1).unwrap_or("");
    assert!(
        events.contains(&msg) && events.contains("deployment-controller"),
        "{described}"
    );
    // The same store seen through events.k8s.io/v1.
    let v1 = k
        .run(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            "k-ev",
            "-o",
            "jsonpath={.items[*].note}",
        ])
        .await
        .success();
    assert!(v1.contains(&msg), "{v1}");
    let pod_events = k.run(&["describe", "pods", "-n", "k-ev"]).await.success();
    assert!(
        pod_events.contains("Successfully assigned k-ev/web-"),
        "{pod_events}"
    );

    let out = k
        .run(&["delete", "deploy", "web", "-n", "k-ev"])
        .await
        .success();
    assert_eq!(out.trim(), "deployment.apps \"web\" deleted");
    let mut left = String::new();
    for _ in 0..100 {
        left = k
            .run(&["get", "rs,pods", "-n", "k-ev", "-o", "name"])
            .await
            .success();
        if left.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        left.trim(),
        "",
        "the ReplicaSet and its pods were collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_create_token_and_explain() {
    let sim = KubeSim::builder().rbac(true).start().await.expect("sim");
    let admin = Kubectl::admin(&sim, "auth-admin");
    admin.apply_ns("k-auth").await;
    let rbac = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: pod-reader\n  namespace: k-auth\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: pod-reader\n  namespace: k-auth\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}\nsubjects:\n- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}\n- {kind: ServiceAccount, name: bot, namespace: k-auth}\n";
    admin
        .run_stdin(&["apply", "-f", "-"], Some(rbac))
        .await
        .success();
    sim.add_token("alice-token", "alice", &[]);
    let k = Kubectl::anonymous(&sim, "auth-alice");
    let out = k
        .run(&[
            "--token",
            "alice-token",
            "auth",
            "can-i",
            "list",
            "pods",
            "-n",
            "k-auth",
        ])
        .await
        .success();
    assert_eq!(out.trim(), "yes");
    let o = k
        .run(&[
            "--token",
            "alice-token",
            "auth",
            "can-i",
            "delete",
            "pods",
            "-n",
            "k-auth",
        ])
        .await;
    assert!(!o.ok);
    assert_eq!(o.stdout.trim(), "no");
    // create token (a protobuf TokenRequest), then use it.
    let out = admin
        .run(&["create", "serviceaccount", "bot", "-n", "k-auth"])
        .await
        .success();
    assert_eq!(out.trim(), "serviceaccount/bot created");
    let token = admin
        .run(&["create", "token", "bot", "-n", "k-auth", "--duration=10m"])
        .await
        .success();
    let token = token.trim().to_string();
    assert!(token.len() >= 32);
    let out = k
        .run(&["--token", &token, "get", "pods", "-n", "k-auth"])
        .await;
    assert!(out.ok, "{}", out.stderr);
    let err = k
        .run(&["--token", &token, "get", "secrets", "-n", "k-auth"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): secrets is forbidden: User \"system:serviceaccount:k-auth:bot\" cannot list resource \"secrets\" in API group \"\" in the namespace \"k-auth\""
    );
    let whoami = k
        .run(&[
            "--token",
            &token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await
        .success();
    assert_eq!(whoami, "system:serviceaccount:k-auth:bot");
    // explain: a CRD field and a built-in one.
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/latticeagents.agentlattice.io.yaml");
    admin
        .run(&["apply", "-f", crd.to_str().unwrap()])
        .await
        .success();
    let fresh = Kubectl::admin(&sim, "explain");
    let out = fresh
        .run(&["explain", "latticeagents.spec.capabilities"])
        .await
        .success();
    assert!(out.contains("KIND:       LatticeAgent"), "{out}");
    assert!(out.contains("FIELD: capabilities <[]string>"), "{out}");
    let out = fresh.run(&["explain", "latticeagents"]).await.success();
    assert!(out.contains("metadata\t<ObjectMeta>"), "{out}");
    let out = fresh
        .run(&[
            "explain",
            "deployments.spec.strategy.rollingUpdate.maxSurge",
        ])
        .await
        .success();
    assert!(out.contains("FIELD: maxSurge <IntOrString>"), "{out}");
    assert!(
        out.contains("The maximum number of pods that can be scheduled above"),
        "{out}"
    );
}

/// The `Events:` lines of a `kubectl describe` whose TYPE and REASON are these, as
/// `(FROM, MESSAGE)`.
fn described_events(described: &str, type_: &str, reason: &str) -> Vec<(String, String)> {
    let events = described.split("\nEvents:").nth(1).unwrap_or("");
    events
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // TYPE REASON AGE FROM MESSAGE…
            (w.len() > 4 && w[0] == type_ && w[1] == reason).then(|| {
                let from_at = l.find(&format!(" {} ", w[3])).unwrap_or(0);
                (
                    w[3].to_string(),
                    l[from_at + w[3].len() + 2..].trim().to_string(),
                )
            })
        })
        .collect()
}

/// `kubectl describe pod <args>` once `done` holds for its output (or after ~5 s).
async fn describe_pod_until(k: &Kubectl, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let mut described = String::new();
    for _ in 0..100 {
        let mut cmd = vec!["describe", "pod", "-n", "k-sec"];
        cmd.extend_from_slice(args);
        described = k.run(&cmd).await.success();
        if done(&described) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    described
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_missing_a_secret_say_why_in_get_and_describe() {
    let sim = fast_sim().await;
    let k = Kubectl::admin(&sim, "secret-wait");
    k.apply_ns("k-sec").await;
    let env = deployment("env", 1, "25%", "25%", "nginx").replace(
        "        image: nginx\n",
        "        image: nginx\n        env:\n        - name: AL_API_KEY\n          valueFrom:\n            secretKeyRef: {name: agent-key, key: AL_API_KEY}\n",
    );
    let vol = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vol\nspec:\n  containers:\n  - name: app\n    image: busybox\n    volumeMounts:\n    - {name: files, mountPath: /var/run/agentlattice}\n  volumes:\n  - name: files\n    secret: {secretName: agent-files}\n";
    for manifest in [env.as_str(), vol] {
        k.run_stdin(&["apply", "-n", "k-sec", "-f", "-"], Some(manifest))
            .await
            .success();
    }
    let statuses = || async {
        let out = k.run(&["get", "pods", "-n", "k-sec"]).await.success();
        let got: BTreeMap<String, (String, String)> = rows(&out)
            .iter()
            .map(|r| {
                let name = if r[0].starts_with("env-") {
                    "env"
                } else {
                    r[0]
                };
                (name.to_string(), (r[1].to_string(), r[2].to_string()))
            })
            .collect();
        (out, got)
    };
    let want = |a: &str, b: &str| -> BTreeMap<String, (String, String)> {
        [
            ("env".to_string(), ("0/1".to_string(), a.to_string())),
            ("vol".to_string(), ("0/1".to_string(), b.to_string())),
        ]
        .into()
    };
    let mut seen = (String::new(), BTreeMap::new());
    for _ in 0..100 {
        seen = statuses().await;
        if seen.1 == want("CreateContainerConfigError", "ContainerCreating") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.1,
        want("CreateContainerConfigError", "ContainerCreating"),
        "{}",
        seen.0
    );
    let failed = |d: &str| described_events(d, "Warning", "Failed");
    let described = describe_pod_until(&k, &["-l", "app=env"], |d| !failed(d).is_empty()).await;
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Reason:", "CreateContainerConfigError"]),
        "{described}"
    );
    assert_eq!(
        described_events(&described, "Warning", "Failed"),
        [(
            "kubelet".to_string(),
            "Error: secret \"agent-key\" not found".to_string()
        )],
        "{described}"
    );
    let described = describe_pod_until(&k, &["vol"], |d| {
        !described_events(d, "Warning", "FailedMount").is_empty()
    })
    .await;
    assert_eq!(
        described_events(&described, "Warning", "FailedMount"),
        [(
            "kubelet".to_string(),
            "MountVolume.SetUp failed for volume \"files\" : secret \"agent-files\" not found"
                .to_string()
        )],
        "{described}"
    );
    // The Secret without the key: the reason stays, the message names the key.
    k.run(&[
        "create",
        "secret",
        "generic",
        "agent-key",
        "-n",
        "k-sec",
        "--from-literal=OTHER=x",
    ])
    .await
    .success();
    let described = describe_pod_until(&k, &["-l", "app=env"], |d| failed(d).len() == 2).await;
    // (describe sorts by a timestamp in seconds: the two may come in either order)
    let mut messages: Vec<String> = failed(&described).into_iter().map(|e| e.1).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "Error: couldn't find key AL_API_KEY in Secret k-sec/agent-key",
            "Error: secret \"agent-key\" not found"
        ],
        "{described}"
    );
    // Both Secrets complete: the pods start, the rollout completes.
    k.run(&[
        "patch",
        "secret",
        "agent-key",
        "-n",
        "k-sec",
        "--type=merge",
        "-p",
        r#"{"data":{"AL_API_KEY":"a2V5"}}"#,
    ])
    .await
    .success();
    k.run(&[
        "create",
        "secret",
        "generic",
        "agent-files",
        "-n",
        "k-sec",
        "--from-literal=AL_API_KEY=key",
    ])
    .await
    .success();
    let out = k
        .run(&[
            "rollout",
            "status",
            "-n",
            "k-sec",
            "deploy/env",
            "--timeout=30s",
        ])
        .await
        .success();
    assert_eq!(
        out.lines().last(),
        Some("deployment \"env\" successfully rolled out"),
        "{out}"
    );
    k.run(&[
        "wait",
        "-n",
        "k-sec",
        "--for=condition=Ready",
        "pod/vol",
        "--timeout=30s",
    ])
    .await
    .success();
    let (out, got) = statuses().await;
    assert_eq!(
        got,
        [
            (
                "env".to_string(),
                ("1/1".to_string(), "Running".to_string())
            ),
            (
                "vol".to_string(),
                ("1/1".to_string(), "Running".to_string())
            ),
        ]
        .into(),
        "{out}"
    );
}
