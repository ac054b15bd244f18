//! Where the operator's memory per LatticeAgent goes (docs/benchmarks.md, "memory"): a Ready
//! LatticeAgent and its Secret as the operator leaves them in kube-sim, copied 10,000 times (new
//! name, uid and resourceVersion each) into each per-object structure the operator keeps, with
//! the heap counted by a global allocator around each. The figures are requested bytes (jemalloc
//! rounds each allocation up to its size class on top). Print them with
//! `cargo test -p lattice-operator --test footprint -- --nocapture`.
//!
//! The assertions hold the reductions that were made (each fails without it), not timings.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use lattice_operator::cache::CompactStore;
use lattice_operator::cache::agent::StoredAgent;
use lattice_operator::claims::ClaimIndex;
use lattice_operator::crd::LatticeAgent;
use lattice_operator::crd::{LAST_APPLIED_ANNOTATION, keep_read_metadata};
use lattice_operator::memory::{Memory, Settlement};
use lattice_operator::secret::cache_form;
use support::*;

/// Counts the bytes allocated and not yet freed, by every thread: as requested (`LIVE`) and
/// rounded up to jemalloc's size class (`CLASSED`), as the operator's allocator hands them out.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static CLASSED: AtomicIsize = AtomicIsize::new(0);

/// jemalloc's size class of `size` (4 KiB pages, 16-byte quantum): 8, then multiples of 16 up
/// to 128, then four classes per doubling (160, 192, 224, 256, 320, …).
fn class(size: usize) -> isize {
    let c = match size {
        0 => 0,
        1..=8 => 8,
        9..=128 => size.div_ceil(16) * 16,
        _ => {
            let step = (size - 1).next_power_of_two() / 8;
            size.div_ceil(step) * step
        }
    };
    c as isize
}

fn count(added: usize, removed: usize) {
    LIVE.fetch_add(added as isize - removed as isize, Ordering::Relaxed);
    CLASSED.fetch_add(class(added) - class(removed), Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;

/// The heap bytes per object that `build` leaves allocated (what it returns is kept until then).
/// (Requested bytes; jemalloc's classes in parentheses.)
fn per_object<T>(what: &str, build: impl FnOnce() -> T) -> (T, f64) {
    let before = (
        LIVE.load(Ordering::Relaxed),
        CLASSED.load(Ordering::Relaxed),
    );
    let kept = build();
    let bytes = (LIVE.load(Ordering::Relaxed) - before.0) as f64 / N as f64;
    let classed = (CLASSED.load(Ordering::Relaxed) - before.1) as f64 / N as f64;
    println!("{what:<66} {bytes:>6.0} ({classed:>6.0}) bytes per agent");
    (kept, bytes)
}

/// The `i`th copy of `agent`: its own name, uid and resourceVersion.
fn copy_agent(agent: &LatticeAgent, i: usize) -> LatticeAgent {
    let mut a = agent.clone();
    a.metadata.name = Some(format!("agent-{i:05}"));
    a.metadata.uid = Some(format!("{:08x}-0000-4000-8000-{i:012x}", i));
    a.metadata.resource_version = Some(format!("{}", 100_000 + i));
    if let Some(s) = a.status.as_mut() {
        s.secret_name = Some(format!("agent-{i:05}-agentlattice"));
    }
    a
}

fn copy_secret(secret: &Secret, owner: &LatticeAgent, i: usize) -> Secret {
    let mut s = secret.clone();
    s.metadata.name = owner.status.as_ref().and_then(|s| s.secret_name.clone());
    s.metadata.uid = Some(format!("{:08x}-1111-4000-8000-{i:012x}", i));
    s.metadata.resource_version = Some(format!("{}", 200_000 + i));
    for r in s.metadata.owner_references.iter_mut().flatten() {
        r.uid = owner.metadata.uid.clone().unwrap_or_default();
        r.name = owner.metadata.name.clone().unwrap_or_default();
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_per_agent_by_structure() {
    let mut w = World::start("footprint").await;
    w.start_operator(Options::default()).await;
    w.create(&bot("agent", "")).await;
    let (mut agent, secret) = w.wait_settled("agent", true).await;
    w.stop_operator().await;
    // Nothing else allocates while the heap is counted.
    drop(w);
    // As the watch hands them over (operator.rs): managed fields stripped.
    agent.metadata.managed_fields = None;
    let secret = {
        let mut s = cache_form(secret);
        s.metadata.managed_fields = None;
        s
    };
    println!(
        "a Ready LatticeAgent: {} bytes of JSON; its Secret in cache form: {} bytes",
        serde_json::to_vec(&agent).unwrap().len(),
        serde_json::to_vec(&secret).unwrap().len()
    );
    println!(
        "inline sizes: LatticeAgent {} (ObjectMeta {}, spec {}, status {}), Secret {}",
        std::mem::size_of::<LatticeAgent>(),
        std::mem::size_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(),
        std::mem::size_of::<lattice_operator::crd::LatticeAgentSpec>(),
        std::mem::size_of::<lattice_operator::crd::LatticeAgentStatus>(),
        std::mem::size_of::<Secret>(),
    );
    println!("{}", serde_json::to_string_pretty(&agent).unwrap());
    println!("{}", serde_json::to_string_pretty(&secret).unwrap());
    let secret_json = serde_json::to_vec(&secret).unwrap().len() as f64;
    let agents: Vec<LatticeAgent> = (0..N).map(|i| copy_agent(&agent, i)).collect();
    let secrets: Vec<Secret> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| copy_secret(&secret, a, i))
        .collect();

    let (decoded, decoded_store) = per_object(
        "LatticeAgent reflector store, objects decoded (kube-runtime's form)",
        || {
            let (reader, mut writer) = reflector::store::<DeserializeGuard<LatticeAgent>>();
            for a in &agents {
                writer.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(a.clone()))));
            }
            (reader, writer)
        },
    );
    drop(decoded);
    let stored = |a: &LatticeAgent| StoredAgent::new(DeserializeGuard(Ok(a.clone())));
    // A reflector store of `agents` as the operator keeps them (reader and writer, as the
    // operator holds both).
    let store_of = |agents: &[LatticeAgent]| {
        let (reader, mut writer) = reflector::store::<StoredAgent>();
        for a in agents {
            writer.apply_watcher_event(&Event::Apply(stored(a)));
        }
        (reader, writer)
    };
    println!(
        "its spec and status packed: {} bytes (of {} bytes of JSON); StoredAgent {} bytes inline",
        stored(&agent).packed_len(),
        serde_json::to_vec(&(&agent.spec, &agent.status))
            .unwrap()
            .len(),
        std::mem::size_of::<StoredAgent>(),
    );
    let (store, agent_store) = per_object(
        "LatticeAgent reflector store (StoredAgent: spec and status packed)",
        || store_of(&agents),
    );
    assert_eq!(store.0.state().len(), N);
    assert!(
        agent_store * 2.0 < decoded_store,
        "the spec and status are kept packed: {agent_store:.0} against {decoded_store:.0} bytes"
    );

    // The same agents created by `kubectl apply`, as the watch hands them over
    // (`keep_read_metadata`): the manifest's copy in the annotation is not kept.
    let applied: Vec<LatticeAgent> = agents
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let manifest = serde_json::json!({
                "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
                "metadata": {"annotations": {}, "name": a.metadata.name, "namespace": a.metadata.namespace},
                "spec": a.spec,
            });
            a.metadata.annotations = Some(
                [(LAST_APPLIED_ANNOTATION.to_owned(), format!("{manifest}\n"))].into(),
            );
            a
        })
        .collect();
    let (whole, applied_whole) = per_object(
        "LatticeAgent reflector store, created by kubectl apply, kept whole",
        || store_of(&applied),
    );
    drop(whole);
    let applied: Vec<LatticeAgent> = applied
        .into_iter()
        .map(|mut a| {
            keep_read_metadata(&mut a.metadata);
            a
        })
        .collect();
    let (_applied, applied_store) = per_object(
        "LatticeAgent reflector store, created by kubectl apply",
        || store_of(&applied),
    );
    assert!(applied_whole > agent_store + 200.0, "the annotation is big");
    assert!(
        applied_store < agent_store + 16.0,
        "kubectl's copy of the manifest is not kept: {applied_store:.0} against {agent_store:.0} bytes"
    );
    drop(applied);

    let (cache, secret_cache) = per_object("Secret cache (CompactStore, cache form)", || {
        let cache = CompactStore::<Secret>::default();
        for s in &secrets {
            cache.apply(&Event::Apply(s.clone()));
        }
        cache
    });
    assert_eq!(cache.len(), N);
    assert!(
        secret_cache < secret_json,
        "Secrets are kept packed: {secret_cache:.0} bytes for {secret_json:.0} of JSON"
    );

    let (_claims, claims) = per_object("claims index", || {
        let claims = ClaimIndex::default();
        for a in &agents {
            claims.apply_event(&Event::Apply(DeserializeGuard(Ok(a.clone()))));
        }
        claims
    });

    let (memory_kept, memory) =
        per_object("memory: entries of settled agents (no overlay)", || {
            let memory = Memory::default();
            let due = Instant::now() + Duration::from_secs(600);
            for a in &agents {
                let uid = a.metadata.uid.as_deref().unwrap();
                memory.resource_event(uid, 1);
                memory.secret_listed(uid, 2);
                memory.begin(uid);
                memory.settled(
                    uid,
                    Settlement {
                        remote_checked_at: Some(jiff::Timestamp::now()),
                        managed: true,
                        rotating: false,
                        waiting_for_service_key: false,
                        succeeded: Some(Some(due)),
                        namespace: a.metadata.namespace.clone().unwrap_or_default(),
                        name: a.metadata.name.clone().unwrap_or_default(),
                    },
                );
            }
            memory
        });

    let (_overlays, _) = per_object(
        "memory: overlays of a status and a Secret write, on top",
        || {
            for (a, s) in agents.iter().zip(&secrets) {
                let uid = a.metadata.uid.as_deref().unwrap();
                memory_kept.wrote_resource(uid, Some("1".into()), a.clone(), || None);
                memory_kept.wrote_secret(uid, Some("1".into()), s.clone(), |_| false);
            }
        },
    );

    // What packing costs (printed, not asserted: figures, not a test).
    let started = Instant::now();
    let stored_agents: Vec<StoredAgent> = agents.iter().map(stored).collect();
    let packing = started.elapsed();
    let started = Instant::now();
    let unpacked = stored_agents.iter().filter_map(|s| s.agent()).count();
    let unpacking = started.elapsed();
    assert_eq!(unpacked, N);
    println!(
        "packing a LatticeAgent's spec and status: {:.1} µs; unpacking it: {:.1} µs",
        packing.as_secs_f64() * 1e6 / N as f64,
        unpacking.as_secs_f64() * 1e6 / N as f64
    );
    drop(stored_agents);

    println!(
        "sum of these: {:.0} bytes per agent",
        agent_store + secret_cache + claims + memory
    );
    let _ = agent.meta();
}
