//! kube-sim workload benchmark: N Deployments × R replicas created at once, waited until every
//! one is available, then all rolled once (the `kubectl rollout restart` patch) and waited
//! until every rollout is complete; wall time of each phase, objects and events written, and
//! resident memory.
//!
//! ```text
//! cargo run --release -p kube-sim --example workloads_bench [-- --deployments 200 --replicas 3 --start-ms 100 --ready-ms 100 --concurrency 32]
//! ```
//! Client (kube-rs over TLS) and server share the process and its cores: the memory figure
//! includes the client, and the times include the simulated pod start and ready delays.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_sim::KubeSim;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Wait until every Deployment reports `generation` observed and all replicas updated and
/// available with no old replicas left.
async fn wait_rolled(
    api: &Api<Deployment>,
    n: usize,
    replicas: i32,
    generation: i64,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = api.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|d| {
                let s = d.status.clone().unwrap_or_default();
                s.observed_generation == Some(generation)
                    && s.updated_replicas == Some(replicas)
                    && s.available_replicas == Some(replicas)
                    && s.replicas == Some(replicas)
            })
            .count();
        if done == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {done}/{n} rolled out").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let n = arg("--deployments", 200) as usize;
    let replicas = arg("--replicas", 3) as i32;
    let concurrency = arg("--concurrency", 32) as usize;
    let sim = KubeSim::builder()
        .pod_start_delay(Duration::from_millis(arg("--start-ms", 100)))
        .pod_ready_delay(Duration::from_millis(arg("--ready-ms", 100)))
        .pod_termination_delay(Duration::from_millis(arg("--termination-ms", 50)))
        .history(200_000)
        .start()
        .await?;
    let client = sim.client();
    let ns = "bench";
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
    )
    .await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rss_before = rss_mib();
    let rv0 = sim.resource_version();

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("app-{i:04}");
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
                }))?;
                api.create(&PostParams::default(), &d).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let created = t.elapsed();
    wait_rolled(&api, n, replicas, 1).await?;
    let available = t.elapsed();
    let rv1 = sim.resource_version();
    println!(
        "create {n} Deployments x {replicas}: requests {:.2} s, all available after {:.2} s ({} pods, {} writes)",
        created.as_secs_f64(),
        available.as_secs_f64(),
        sim.object_count("", "pods"),
        rv1 - rv0
    );
    println!(
        "RSS after rollout: {:.0} MiB (before: {:.0} MiB)",
        rss_mib(),
        rss_before
    );

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
                api.patch(
                    &format!("app-{i:04}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let patched = t.elapsed();
    wait_rolled(&api, n, replicas, 2).await?;
    // Old pods finish terminating.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    while pods.list(&ListParams::default()).await?.items.len() > n * replicas as usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled = t.elapsed();
    println!(
        "roll all {n}: patches {:.2} s, all rolled out after {:.2} s ({} writes, {} ReplicaSets, {} events)",
        patched.as_secs_f64(),
        rolled.as_secs_f64(),
        sim.resource_version() - rv1,
        sim.object_count("apps", "replicasets"),
        sim.object_count("", "events"),
    );
    println!("RSS after the roll: {:.0} MiB", rss_mib());
    // Idle: nothing pending, nothing written.
    let rv = sim.resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("writes while idle for 2 s: {}", sim.resource_version() - rv);
    sim.shutdown().await;
    Ok(())
}
