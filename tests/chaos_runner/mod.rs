//! The chaos runner: the operator as its own OS process ([`process`]), random operations and
//! faults on both sides ([`ops`]), and once the faults stop, a bounded wait until everything holds
//! ([`checks`]). See docs/reliability.md ("Chaos") for how to run it long.
//!
//! A run is seeded: the operations, faults, kills and pauses are drawn from `CHAOS_SEED`, printed
//! first. What the operator does in between depends on timing, so a replay repeats the same
//! sequence of actions, not the same interleaving; a failure that needs one interleaving may need
//! a few replays (or a longer run) to show again.

pub mod checks;
pub mod ops;
pub mod process;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_sim::KubeSim;

use crate::support::World;
use crate::support::workloads::{WorkloadSim, WorkloadSimConfig};
use ops::{Actor, Injector, Model, Rng};
use process::{Fleet, ProcessConfig};

/// A run's bounds, from the environment.
#[derive(Clone, Debug)]
pub struct Bounds {
    pub seed: u64,
    /// Operations (the chaos phase ends after this many, or at `duration`).
    pub ops: u64,
    pub duration: Duration,
    /// How long the world may take to settle once the faults stop.
    pub settle: Duration,
}

fn env_duration(name: &str) -> Option<Duration> {
    let raw = std::env::var(name).ok()?;
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{name}={raw}: expected e.g. 90s, 15m or 2h"));
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("{name}={raw}: expected e.g. 90s, 15m or 2h"),
    };
    Some(Duration::from_secs(secs))
}

impl Bounds {
    /// `CHAOS_SEED` (default: from the clock), `CHAOS_OPS` (default `ops`), `CHAOS_DURATION`
    /// (default `duration`; e.g. `15m`), `CHAOS_SETTLE` (default 90 s).
    pub fn from_env(ops: u64, duration: Duration) -> Bounds {
        let seed = match std::env::var("CHAOS_SEED") {
            Ok(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("CHAOS_SEED={s} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        let ops = match std::env::var("CHAOS_OPS") {
            Ok(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("CHAOS_OPS={s} is not a number")),
            Err(_) => ops,
        };
        Bounds {
            seed,
            ops,
            duration: env_duration("CHAOS_DURATION").unwrap_or(duration),
            settle: env_duration("CHAOS_SETTLE").unwrap_or(Duration::from_secs(90)),
        }
    }
}

/// What a run is.
#[derive(Clone, Debug)]
pub struct Case {
    /// The test's name (and namespace).
    pub name: &'static str,
    /// Two replicas with leader election, or one without.
    pub replicas: usize,
    /// With two replicas: the Lease duration.
    pub lease: &'static str,
}

/// What happened in a run.
#[derive(Debug, Default)]
struct Tally {
    ops: BTreeMap<&'static str, u32>,
    skipped: BTreeMap<&'static str, u32>,
    /// Operations whose requests failed every retry (under faults): not applied.
    failed: Vec<String>,
    faults: BTreeMap<&'static str, u32>,
    takeovers: u32,
    lease_transitions: Option<i32>,
}

fn list(map: &BTreeMap<&'static str, u32>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Watches the Lease's holder; counts changes of holder (every process has its own identity, so
/// a restarted process taking the Lease back counts too).
fn count_takeovers(world: &World, ns: &str) -> (tokio::task::JoinHandle<()>, Arc<AtomicU32>) {
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), ns);
    let count = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&count);
    let task = tokio::spawn(async move {
        let mut holder: Option<String> = None;
        loop {
            if let Ok(Some(lease)) = leases.get_opt("lattice-operator").await
                && let Some(h) = lease.spec.and_then(|s| s.holder_identity)
            {
                if holder.as_ref().is_some_and(|prev| *prev != h) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                holder = Some(h);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (task, count)
}

/// Runs one chaos case; panics with the seed and every violation when something is wrong.
pub async fn run(case: Case, bounds: Bounds) {
    println!(
        "chaos {}: CHAOS_SEED={} CHAOS_OPS={} CHAOS_DURATION={}s ({} replica(s){})",
        case.name,
        bounds.seed,
        bounds.ops,
        bounds.duration.as_secs(),
        case.replicas,
        if case.replicas > 1 {
            format!(", leader election, Lease {}", case.lease)
        } else {
            String::new()
        }
    );
    let mut rng = Rng::new(bounds.seed);
    let sim = KubeSim::builder()
        .pod_start_delay(Duration::from_millis(30))
        .pod_ready_delay(Duration::from_millis(30))
        .pod_termination_delay(Duration::from_millis(30));
    let mut world = World::start_with(sim, case.name).await;
    let config = ProcessConfig {
        lease: (case.replicas > 1).then(|| case.lease.to_owned()),
        ..ProcessConfig::for_world(
            &world,
            &format!("{}-{}-{}", case.name, std::process::id(), bounds.seed),
        )
    };
    let log_dir = config.log_dir.clone();
    let mut fleet = Fleet::new(config, case.replicas);
    fleet.start_missing().expect("the operator starts");
    let (lease_task, lease_state) = count_takeovers(&world, case.name);

    let mut tally = Tally::default();
    let mut injector = Injector::default();
    let mut actor = Actor {
        world: &mut world,
        model: Model::default(),
    };
    actor
        .create_workloads()
        .await
        .expect("the annotated Deployments are created");
    // The Deployments' pods use their keys all along (reported, not asserted: compromised keys
    // and keys revoked outside are meant to fail).
    let apps = WorkloadSim::start(
        actor.world.client.clone(),
        &actor.world.emu.base_url(),
        &actor.world.ns,
        WorkloadSimConfig {
            interval: Duration::from_millis(200),
            ..WorkloadSimConfig::default()
        },
    );

    // The chaos phase.
    let started = Instant::now();
    let mut done = 0u64;
    while done < bounds.ops && started.elapsed() < bounds.duration {
        tokio::time::sleep(rng.millis(20, 300)).await;
        if let Err(e) = fleet.reap() {
            panic!("seed {}: {e}", bounds.seed);
        }
        match rng.below(100) {
            0..=61 => {
                let op = ops::next_op(&mut rng, &mut actor.model);
                done += 1;
                match actor.apply(&op).await {
                    Ok(ops::Outcome::Done) => *tally.ops.entry(op.kind()).or_default() += 1,
                    Ok(ops::Outcome::Skipped) => *tally.skipped.entry(op.kind()).or_default() += 1,
                    Err(e) => tally.failed.push(e),
                }
            }
            62..=91 => {
                let fault = ops::next_fault(&mut rng);
                injector.inject(actor.world, &fault);
                *tally.faults.entry(fault.kind()).or_default() += 1;
            }
            92..=97 => {
                let i = rng.below(fleet.replicas() as u64) as usize;
                let after = rng.millis(0, 1500);
                fleet
                    .kill(i, after)
                    .await
                    .unwrap_or_else(|e| panic!("seed {}: {e}", bounds.seed));
            }
            _ => {
                let i = rng.below(fleet.replicas() as u64) as usize;
                let after = rng.millis(0, 1500);
                fleet
                    .terminate(i, after)
                    .await
                    .unwrap_or_else(|e| panic!("seed {}: {e}", bounds.seed));
            }
        }
    }
    let chaos_time = started.elapsed();

    // The faults stop; wait until everything holds.
    injector.clear(actor.world);
    let settle_start = Instant::now();
    let mut last = Vec::new();
    let mut settled = None;
    while settle_start.elapsed() < bounds.settle {
        if let Err(e) = fleet.reap() {
            panic!("seed {}: {e}", bounds.seed);
        }
        match checks::violations(actor.world, &actor.model, &fleet.logs).await {
            Ok(v) if v.is_empty() => {
                settled = Some(settle_start.elapsed());
                break;
            }
            Ok(v) => last = v,
            Err(e) => last = vec![e],
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let chaos_stats = fleet.stats.clone();
    let pods = apps.stop().await;

    // A clean stop: every process exits 0; then the whole logs are checked once more.
    fleet.stop_all().await;
    lease_task.abort();
    tally.takeovers = lease_state.load(Ordering::SeqCst);
    if case.replicas > 1 {
        tally.lease_transitions =
            Api::<Lease>::namespaced(actor.world.client.clone(), &actor.world.ns)
                .get_opt("lattice-operator")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.lease_transitions);
    }
    let mut after_stop = Vec::new();
    if settled.is_some() {
        match checks::violations(actor.world, &actor.model, &fleet.logs).await {
            Ok(v) => after_stop = v,
            Err(e) => after_stop = vec![e],
        }
    }
    let mut unexpected = fleet.stats.unexpected.clone();
    unexpected.dedup();

    let mut summary = String::new();
    let _ = writeln!(summary, "chaos {} summary", case.name);
    let _ = writeln!(summary, "  seed:        CHAOS_SEED={}", bounds.seed);
    let _ = writeln!(
        summary,
        "  chaos phase: {:.1} s, {} operations",
        chaos_time.as_secs_f64(),
        done
    );
    let _ = writeln!(summary, "  operations:  {}", list(&tally.ops));
    let _ = writeln!(
        summary,
        "  skipped (nothing to act on): {}",
        list(&tally.skipped)
    );
    let _ = writeln!(
        summary,
        "  operations that failed every retry under faults: {}",
        tally.failed.len()
    );
    let _ = writeln!(summary, "  faults:      {}", list(&tally.faults));
    let _ = writeln!(
        summary,
        "  processes:   {} starts, {} SIGKILL, {} SIGTERM ({} before the caches synced), {} \
         stopped on a lost Lease, exits on their own {:?}",
        chaos_stats.starts,
        chaos_stats.sigkills,
        chaos_stats.sigterms,
        chaos_stats.sigterms_before_synced,
        chaos_stats.leadership_lost,
        chaos_stats.own_exits
    );
    if case.replicas > 1 {
        let _ = writeln!(
            summary,
            "  takeovers:   {} holder changes seen, leaseTransitions {:?}",
            tally.takeovers, tally.lease_transitions
        );
    }
    let _ = writeln!(
        summary,
        "  workload pods: {} seen, {} whoami and {} actions answered, {} refused 401/403, {} other \
         errors",
        pods.len(),
        pods.values().map(|c| c.whoami_ok).sum::<u64>(),
        pods.values().map(|c| c.actions_ok).sum::<u64>(),
        pods.values().map(|c| c.auth_failures).sum::<u64>(),
        pods.values().map(|c| c.other_errors).sum::<u64>(),
    );
    let _ = writeln!(
        summary,
        "  resources:   {} created, {} deleted",
        actor.model.resources.len(),
        actor.model.resources.values().filter(|r| r.deleted).count()
    );
    match settled {
        Some(t) => {
            let _ = writeln!(summary, "  settled in:  {:.1} s", t.as_secs_f64());
        }
        None => {
            let _ = writeln!(
                summary,
                "  NOT settled within {} s",
                bounds.settle.as_secs()
            );
        }
    }
    let violations: Vec<String> = last
        .iter()
        .filter(|_| settled.is_none())
        .chain(&after_stop)
        .chain(&unexpected)
        .cloned()
        .collect();
    let _ = writeln!(
        summary,
        "  violations and anything lost: {}",
        violations.len()
    );
    for v in &violations {
        let _ = writeln!(summary, "    - {v}");
    }
    let _ = writeln!(summary, "  operator logs: {}", log_dir.display());
    println!("{summary}");
    for e in tally.failed.iter().take(5) {
        println!("  (an operation that failed under faults: {e})");
    }
    assert!(
        settled.is_some() && violations.is_empty(),
        "chaos {} failed; replay with CHAOS_SEED={}\n{summary}",
        case.name,
        bounds.seed
    );
    // Keep the logs of a failed run only.
    let _ = std::fs::remove_dir_all(&log_dir);
}
