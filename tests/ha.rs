//! High availability: two replicas run as `lattice-operator run` runs them, with leader election
//! on one Lease (3 s duration: renew deadline 2 s, retry every 0.43 s), against one kube-sim
//! and one emulator.
//!
//! - Only the leader reconciles; the standby is ready but reconciles nothing.
//! - The leader is killed mid-work (its task aborted: the Lease is not released): the standby
//!   takes over once the Lease has expired and not before, finishes the work, and no resource is
//!   registered twice (one agent per resource at the emulator, the design §4 invariant for each).
//! - A graceful stop (SIGTERM) finishes the reconcile in flight, then releases the Lease, so the
//!   standby takes over without waiting for expiry.
//! - A leader that cannot renew stops before its Lease expires.

mod replica;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::Api;
use kube_sim::Matcher;
use lattice_operator::Error;
use lattice_operator::admin::PhaseKind;
use replica::{Running, http_get};
use support::{SERVICE_KEY_SECRET, World, bot, wait_until};

const LEASE: &str = "3s";
const LEASE_DURATION: SignedDuration = SignedDuration::from_secs(3);

async fn start(w: &World, identity: &str) -> Running {
    let args = replica::run_args(&w.emu.base_url(), &w.ns, SERVICE_KEY_SECRET, LEASE, &[]);
    replica::start(w.client.clone(), args, identity).await
}

async fn wait_phase(r: &Running, phase: PhaseKind) {
    wait_until(&format!("{} is {phase:?}", r.identity), || async {
        (r.phase.get() == phase).then_some(())
    })
    .await;
}

async fn lease(w: &World) -> LeaseSpec {
    Api::<Lease>::namespaced(w.client.clone(), &w.ns)
        .get("lattice-operator")
        .await
        .expect("the Lease exists")
        .spec
        .expect("a Lease spec")
}

fn reconciles(r: &Running) -> f64 {
    replica::parse_metrics(&r.metrics.encode())
        .iter()
        .filter(|(k, _)| k.starts_with("lattice_reconciles_total{"))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_killed_leader_without_registering_twice() {
    let w = World::start("ha-failover").await;
    let a = start(&w, "ha-a").await;
    wait_phase(&a, PhaseKind::Running).await;
    let b = start(&w, "ha-b").await;
    wait_phase(&b, PhaseKind::Standby).await;
    let (code, body) = http_get(b.admin, "/readyz").await;
    assert_eq!(code, 200, "a standby is ready: {body}");
    assert!(body.contains("standby"), "{body}");

    // The leader does the work; the standby reconciles nothing.
    for i in 0..4 {
        w.create(&bot(&format!("bot-{i}"), "")).await;
    }
    for i in 0..4 {
        w.wait_ready(&format!("bot-{i}")).await;
    }
    assert!(reconciles(&a) >= 4.0);
    assert_eq!(reconciles(&b), 0.0, "the standby reconciled");

    // More work, and the leader dies in the middle of it (the first new registration has
    // reached AgentLattice; the Lease is not released).
    for i in 4..10 {
        w.create(&bot(&format!("bot-{i}"), "")).await;
    }
    wait_until("a registration of the second batch", || async {
        (w.emu.request_count("register") >= 5).then_some(())
    })
    .await;
    let before_kill = lease(&w).await;
    a.kill().await;
    let killed = Instant::now();
    let last_renewal = before_kill.renew_time.expect("a renew time").0;

    wait_phase(&b, PhaseKind::Running).await;
    let took = killed.elapsed();
    let after = lease(&w).await;
    assert_eq!(after.holder_identity.as_deref(), Some("ha-b"));
    assert_eq!(after.lease_transitions, Some(1));
    let acquired = after.acquire_time.expect("an acquire time").0;
    // Safety: the standby never took a Lease that was still valid. (The leader may have renewed
    // once more between the read above and the kill, which only makes this stricter.)
    assert!(
        acquired >= last_renewal + LEASE_DURATION,
        "taken over at {acquired}, but the Lease renewed at {last_renewal} was valid for {LEASE}"
    );
    // Liveness, loosely (the figure is printed): the takeover comes about one Lease duration
    // after the kill, not many.
    println!("takeover {took:?} after the kill (Lease duration {LEASE})");
    assert!(
        took < Duration::from_secs(10),
        "the standby took {took:?} to take over a 3 s Lease"
    );

    // The new leader finishes the work: every resource Ready, one agent each, never two.
    for i in 0..10 {
        let name = format!("bot-{i}");
        w.wait_ready(&name).await;
        w.check_invariant(&name).await;
    }
    let agents = w.agents_of_namespace(&w.ns);
    let names: BTreeSet<&str> = agents
        .iter()
        .filter_map(|a| a.metadata.get("k8s.name").map(String::as_str))
        .collect();
    assert_eq!(
        agents.len(),
        10,
        "exactly one agent registered per resource: {:?}",
        agents.iter().map(|a| &a.name).collect::<Vec<_>>()
    );
    assert_eq!(names.len(), 10);
    assert!(reconciles(&b) >= 6.0);

    b.terminate().await.expect("a clean stop");
    assert_eq!(lease(&w).await.holder_identity, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_the_lease_over_without_waiting_for_expiry() {
    let w = World::start("ha-handover").await;
    let a = start(&w, "ha-a").await;
    wait_phase(&a, PhaseKind::Running).await;
    let b = start(&w, "ha-b").await;
    wait_phase(&b, PhaseKind::Standby).await;
    w.ready(&bot("bot", "")).await;

    a.terminate()
        .await
        .expect("SIGTERM stops the leader cleanly");
    let released = Timestamp::now();
    wait_phase(&b, PhaseKind::Running).await;
    let spec = lease(&w).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("ha-b"));
    let acquired = spec.acquire_time.expect("an acquire time").0;
    assert!(
        acquired < released + LEASE_DURATION,
        "the standby waited for expiry ({acquired} vs released at {released})"
    );
    // The new leader carries on: a rotation request is served.
    w.annotate("bot", lattice_operator::crd::ROTATE_ANNOTATION, "1")
        .await;
    wait_until("the rotation by the new leader", || async {
        let a = w.get("bot").await;
        (a.status?.retiring_keys.len() == 1).then_some(())
    })
    .await;
    w.check_invariant("bot").await;
    assert_eq!(w.agents_of_namespace(&w.ns).len(), 1);
    b.terminate().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    let w = World::start("ha-stepdown").await;
    let a = start(&w, "ha-a").await;
    wait_phase(&a, PhaseKind::Running).await;
    // Let it renew at least once, then cut it off from its Lease.
    let first = lease(&w).await.renew_time.expect("renew time").0;
    wait_until("a renewal", || async {
        (lease(&w).await.renew_time?.0 > first).then_some(())
    })
    .await;
    w.sim.faults().fail(
        Matcher::verb("get").resource("leases").namespace(&w.ns),
        503,
        10_000,
    );
    let result = tokio::time::timeout(Duration::from_secs(20), a.task)
        .await
        .expect("the leader stops")
        .expect("no panic");
    let stopped = Timestamp::now();
    let last_renewal = lease_without_faults(&w).await;
    match result {
        Err(Error::LeadershipLost(why)) => {
            assert!(why.contains("renew deadline"), "{why}");
        }
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
    assert!(
        stopped < last_renewal + LEASE_DURATION,
        "stopped at {stopped}, after its Lease (renewed at {last_renewal}) had expired"
    );
    w.sim.faults().clear();
}

/// The Lease's last renew time, read past the injected faults (they match `get` only; a list
/// is not a get).
async fn lease_without_faults(w: &World) -> Timestamp {
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), &w.ns);
    let list = leases
        .list(&kube::api::ListParams::default())
        .await
        .expect("leases listed");
    list.items
        .into_iter()
        .find(|l| l.metadata.name.as_deref() == Some("lattice-operator"))
        .and_then(|l| l.spec?.renew_time)
        .expect("the Lease has a renew time")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_running_reconcile_before_releasing_the_lease() {
    let w = World::start("ha-drain").await;
    let a = start(&w, "ha-a").await;
    wait_phase(&a, PhaseKind::Running).await;
    // Writing a Secret takes 1.5 s: once the registration has been answered, the reconcile is
    // in flight (the key is only in the operator's memory) for that long.
    w.sim.faults().set_latency(
        Matcher::verb("create").resource("secrets").namespace(&w.ns),
        Duration::from_millis(1500),
    );
    w.create(&bot("slow-bot", "")).await;
    wait_until("the registration is answered", || async {
        (w.emu.request_count("register") == 1).then_some(())
    })
    .await;
    assert!(w.secret("slow-bot-agent-key").await.is_none());
    // SIGTERM now.
    a.terminate().await.expect("a clean stop");
    w.sim.faults().clear_latency();
    // The reconcile was not cut short: the key reached its Secret and the status says so.
    let secret = w
        .secret("slow-bot-agent-key")
        .await
        .expect("the Secret was written before the replica stopped");
    assert!(support::secret_key(&secret).is_some());
    let agent = w.get("slow-bot").await;
    let ready = support::condition(&agent, "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "True");
    assert_eq!(
        lease(&w).await.holder_identity,
        None,
        "then the Lease was released"
    );
}
