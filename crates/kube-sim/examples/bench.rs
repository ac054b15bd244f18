//! kube-sim benchmark: 10,000 custom resources and 10,000 Secrets stored; write throughput
//! (create, merge patch), list latency (full, paginated with limit=500, label-selected), watch
//! fan-out (delivery latency to N watchers) and resident memory.
//!
//! ```text
//! cargo run --release -p kube-sim --example bench [-- --objects 10000 --watchers 50 --updates 200 --concurrency 32]
//! ```
//! Client (kube-rs over TLS, as an operator uses it) and server share the process and its cores;
//! the figures are therefore end-to-end, client cost included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::KubeSim;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    objects: usize,
    watchers: usize,
    updates: usize,
    concurrency: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        objects: 10_000,
        watchers: 50,
        updates: 200,
        concurrency: 32,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for w in args.windows(2) {
        let v = w[1].parse().unwrap_or(0);
        match w[0].as_str() {
            "--objects" if v > 0 => o.objects = v,
            "--watchers" if v > 0 => o.watchers = v,
            "--updates" if v > 0 => o.updates = v,
            "--concurrency" if v > 0 => o.concurrency = v,
            _ => {}
        }
    }
    o
}

fn crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "benches.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "benches", "singular": "bench", "kind": "Bench"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "description": {"type": "string", "maxLength": 1024},
                        "capabilities": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "generation": {"type": "integer", "minimum": 0},
                        "policy": {"type": "string", "enum": ["Revoke", "Retain"], "default": "Revoke"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn timed<F, Fut>(runs: usize, mut f: F) -> Result<(Duration, Duration), BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, BoxError>>,
{
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f().await?;
        v.push(t.elapsed());
    }
    v.sort();
    Ok((pct(&v, 0.5), *v.last().unwrap_or(&Duration::ZERO)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let o = opts();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "kube-sim bench: {} objects per kind, {} watchers x {} updates, concurrency {}, {} cores",
        o.objects, o.watchers, o.updates, o.concurrency, cores
    );
    let rss0 = rss_mib();
    // A large history keeps every change of the run watchable, as a real cluster's would be.
    let sim = KubeSim::builder().history(100_000).start().await?;
    let client = sim.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("bench".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns).await?;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    crds.create(&PostParams::default(), &serde_json::from_value(crd())?)
        .await?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Bench"));
    let crs: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench", &ar);
    // The CRD is served synchronously once created; wait until a list answers.
    for _ in 0..100 {
        if crs.list(&ListParams::default().limit(1)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // --- writes: create
    let t = Instant::now();
    futures::stream::iter(0..o.objects)
        .map(|i| {
            let crs = crs.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "example.com/v1", "kind": "Bench",
                    "metadata": {"name": format!("b-{i:05}"), "labels": {"shard": format!("s{}", i % 100), "app": "bench"}},
                    "spec": {"description": "an object of the benchmark, about the size of a LatticeAgent",
                             "capabilities": ["deploy.staging", "rollback.staging"], "generation": 0}}))?;
                crs.create(&PostParams::default(), &obj).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(o.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let cr_create = t.elapsed();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "bench");
    let t = Instant::now();
    futures::stream::iter(0..o.objects)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let s = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("s-{i:05}")),
                        labels: Some(BTreeMap::from([
                            ("shard".to_string(), format!("s{}", i % 100)),
                            ("app".to_string(), "bench".to_string()),
                        ])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        "key".to_string(),
                        ByteString(vec![b'x'; 64]),
                    )])),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &s).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(o.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let secret_create = t.elapsed();

    // --- writes: merge patch of every CR's spec
    let t = Instant::now();
    futures::stream::iter(0..o.objects)
        .map(|i| {
            let crs = crs.clone();
            async move {
                let p = json!({"spec": {"generation": 1}});
                crs.patch(
                    &format!("b-{i:05}"),
                    &PatchParams::default(),
                    &Patch::Merge(&p),
                )
                .await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(o.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let cr_patch = t.elapsed();
    let rss_stored = rss_mib();

    println!();
    println!("writes ({} concurrent requests)", o.concurrency);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "  create CR        {:>8.0} /s  ({} in {:.2} s)",
        rate(o.objects, cr_create),
        o.objects,
        cr_create.as_secs_f64()
    );
    println!(
        "  create Secret    {:>8.0} /s  ({} in {:.2} s)",
        rate(o.objects, secret_create),
        o.objects,
        secret_create.as_secs_f64()
    );
    println!(
        "  merge-patch CR   {:>8.0} /s  ({} in {:.2} s)",
        rate(o.objects, cr_patch),
        o.objects,
        cr_patch.as_secs_f64()
    );

    // --- reads: one object (the fixed cost of a request, client included)
    println!();
    let (m, x) = timed(50, || async {
        crs.get("b-00000").await?;
        Ok(1)
    })
    .await?;
    println!(
        "GET of one CR (median / max of 50)      {:>10} / {}",
        ms(m),
        ms(x)
    );

    // --- lists
    println!();
    println!("lists (median / max of 10 runs)");
    let (m, x) = timed(10, || async {
        Ok(crs.list(&ListParams::default()).await?.items.len())
    })
    .await?;
    println!(
        "  full list, {} CRs            {:>10} / {}",
        o.objects,
        ms(m),
        ms(x)
    );
    let (m, x) = timed(10, || async {
        Ok(secrets.list(&ListParams::default()).await?.items.len())
    })
    .await?;
    println!(
        "  full list, {} Secrets        {:>10} / {}",
        o.objects,
        ms(m),
        ms(x)
    );
    let pages = std::cell::Cell::new(0usize);
    let (m, x) = timed(10, || {
        let crs = crs.clone();
        let pages = &pages;
        async move {
            let mut lp = ListParams::default().limit(500);
            let mut n = 0;
            pages.set(0);
            loop {
                let l = crs.list(&lp).await?;
                n += l.items.len();
                pages.set(pages.get() + 1);
                match l.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = lp.continue_token(&c),
                    None => break,
                }
            }
            Ok(n)
        }
    })
    .await?;
    let pages = pages.get();
    println!(
        "  paginated limit=500, all {} pages {:>10} / {}  ({} per page)",
        pages,
        ms(m),
        ms(x),
        ms(m / pages.max(1) as u32)
    );
    let (m, x) = timed(10, || async {
        Ok(crs
            .list(&ListParams::default().labels("shard=s7"))
            .await?
            .items
            .len())
    })
    .await?;
    println!(
        "  label-selected (shard=s7, {} of {}) {:>6} / {}",
        o.objects / 100,
        o.objects,
        ms(m),
        ms(x)
    );

    // --- watch fan-out
    let rv = crs
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watchers = Vec::new();
    for _ in 0..o.watchers {
        let crs = crs.clone();
        let rv = rv.clone();
        let tx = tx.clone();
        let ready = ready_tx.clone();
        let want = o.updates;
        watchers.push(tokio::spawn(async move {
            let wp = WatchParams::default().fields("metadata.name=b-00000");
            let mut s = match crs.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    eprintln!("watch failed: {e}");
                    return;
                }
            };
            let _ = ready.send(());
            let mut seen = 0;
            while let Some(Ok(ev)) = s.next().await {
                if let WatchEvent::Modified(o) = ev {
                    let sent = o
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("bench/sent-ns"))
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(ns) = sent {
                        let _ = tx.send(start.elapsed().saturating_sub(Duration::from_nanos(ns)));
                        seen += 1;
                        if seen == want {
                            return;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    for _ in 0..o.watchers {
        ready_rx.recv().await;
    }
    let t = Instant::now();
    for _ in 0..o.updates {
        let sent = start.elapsed().as_nanos().to_string();
        let p = json!({"metadata": {"annotations": {"bench/sent-ns": sent}}});
        crs.patch("b-00000", &PatchParams::default(), &Patch::Merge(&p))
            .await?;
    }
    let mut lat = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            d = rx.recv() => match d { Some(d) => lat.push(d), None => break },
            _ = &mut deadline => break,
        }
    }
    let fanout = t.elapsed();
    lat.sort();
    println!();
    println!(
        "watch fan-out: {} watchers, {} sequential updates of one CR",
        o.watchers, o.updates
    );
    println!(
        "  deliveries {} of {}   p50 {}   p99 {}   max {}   ({:.0} events/s delivered)",
        lat.len(),
        o.watchers * o.updates,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        lat.len() as f64 / fanout.as_secs_f64()
    );
    println!();
    println!(
        "memory: RSS {:.0} MiB at start, {:.0} MiB with {} CRs + {} Secrets stored (client included)",
        rss0, rss_stored, o.objects, o.objects
    );
    sim.shutdown().await;
    Ok(())
}
