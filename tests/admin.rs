//! The admin server of a replica run as `lattice-operator run` runs it: `/healthz` at once,
//! `/readyz` false until the CRD is installed and the caches have synced, `/metrics` with every
//! series the operations guide lists after a register → rotate → delete lifecycle, and a
//! graceful stop that releases the Lease.

mod replica;
mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_sim::KubeSim;
use lattice_operator::admin::PhaseKind;
use lattice_operator::cluster::install_crd;
use lattice_operator::crd::ROTATE_ANNOTATION;
use replica::{http_get, parse_metrics};
use support::{SERVICE_KEY_SECRET, World, bot, wait_until};

/// A world like `World::start`, but without the CRD.
async fn world_without_crd(ns: &str) -> World {
    let world = World::bare(KubeSim::builder(), "admin-tests", ns).await;
    world.create_namespace(ns).await;
    world.put_service_key(Some(&world.service_key)).await;
    world
}

fn value(metrics: &std::collections::BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("{series} is missing from /metrics:\n{metrics:#?}"))
}

async fn scrape(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains("al_agent_") && !body.contains("al_svc_"),
        "/metrics must carry no key material"
    );
    parse_metrics(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_crd_and_metrics_show_every_series() {
    let w = world_without_crd("admin").await;
    let args = replica::run_args(&w.emu.base_url(), &w.ns, SERVICE_KEY_SECRET, "15s", &[]);
    let r = replica::start(w.client.clone(), args, "admin-0").await;

    // Alive at once; not ready while the CRD is missing, however often it is checked.
    let (code, body) = http_get(r.admin, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    wait_until("three CRD checks", || async {
        let checks = w
            .sim
            .audit_log()
            .iter()
            .filter(|a| a.resource == "customresourcedefinitions" && a.verb == "get")
            .count();
        (checks >= 3).then_some(())
    })
    .await;
    let (code, body) = http_get(r.admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("latticeagents.agentlattice.io is not installed"),
        "{body}"
    );
    assert_eq!(r.phase.get(), PhaseKind::WaitingForCrd);
    let (code, _) = http_get(r.admin, "/nope").await;
    assert_eq!(code, 404);

    // Install it: the replica takes the Lease, syncs its caches and becomes ready.
    install_crd(&w.client, Duration::from_secs(10))
        .await
        .expect("CRD installed");
    wait_until("/readyz 200", || async {
        let (code, body) = http_get(r.admin, "/readyz").await;
        (code == 200 && body == "ok\n").then_some(())
    })
    .await;
    assert_eq!(r.phase.get(), PhaseKind::Running);
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), &w.ns);
    let lease = leases
        .get("lattice-operator")
        .await
        .expect("the Lease exists");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("admin-0"));
    assert_eq!(spec.lease_duration_seconds, Some(15));

    // Before any LatticeAgent: the gauges and the fixed-label counters exist and read zero.
    let m = scrape(r.admin).await;
    assert_eq!(value(&m, "lattice_reconciles_total{result=\"error\"}"), 0.0);
    assert_eq!(value(&m, "lattice_revocations_total{kind=\"key\"}"), 0.0);
    assert_eq!(value(&m, "lattice_keys_rotated_total"), 0.0);
    assert_eq!(value(&m, "lattice_agents_managed"), 0.0);
    assert_eq!(value(&m, "lattice_rotations_waiting"), 0.0);

    // Register, rotate (the old key waits out its 10 minute grace period).
    let (first, _) = w.ready(&bot("metrics-bot", "")).await;
    let first_key = first.status.and_then(|s| s.active_key).expect("a key").id;
    w.annotate("metrics-bot", ROTATE_ANNOTATION, "1").await;
    wait_until("the rotation", || async {
        let a = w.get("metrics-bot").await;
        let s = a.status?;
        (s.active_key.as_ref()?.id != first_key && s.retiring_keys.len() == 1).then_some(())
    })
    .await;
    let m = wait_until("gauges after the rotation", || async {
        let m = scrape(r.admin).await;
        (m.get("lattice_rotations_waiting") == Some(&1.0)).then_some(m)
    })
    .await;
    assert!(value(&m, "lattice_reconciles_total{result=\"ok\"}") >= 2.0);
    let reconciles: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("lattice_reconciles_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        value(&m, "lattice_reconcile_duration_seconds_count"),
        reconciles,
        "one duration per reconcile"
    );
    assert!(value(&m, "lattice_reconcile_duration_seconds_sum") > 0.0);
    assert_eq!(
        value(
            &m,
            "lattice_agentlattice_requests_total{operation=\"register\",status=\"201\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "lattice_agentlattice_requests_total{operation=\"mint_key\",status=\"201\"}"
        ),
        1.0
    );
    assert!(
        value(
            &m,
            "lattice_agentlattice_request_duration_seconds_count{operation=\"register\",status=\"201\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "lattice_agentlattice_request_duration_seconds_bucket{le=\"+Inf\",operation=\"register\",status=\"201\"}"
        ) >= 1.0
    );
    assert_eq!(value(&m, "lattice_keys_rotated_total"), 1.0);
    assert_eq!(value(&m, "lattice_agents_managed"), 1.0);
    assert_eq!(value(&m, "lattice_rotations_waiting"), 1.0);
    // Per operation, the attempts counted are the requests the emulator received.
    let mut counted = std::collections::BTreeMap::<String, f64>::new();
    for (series, v) in &m {
        if let Some(labels) = series.strip_prefix("lattice_agentlattice_requests_total{") {
            let op = labels
                .split("operation=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("an operation label");
            *counted.entry(op.to_owned()).or_default() += v;
        }
    }
    assert!(
        counted.len() >= 3,
        "register, mint_key, deprecate_key at least: {counted:?}"
    );
    // Each attempt has its latency observed under the same labels.
    for (series, v) in &m {
        if let Some(labels) = series.strip_prefix("lattice_agentlattice_requests_total") {
            let count = format!("lattice_agentlattice_request_duration_seconds_count{labels}");
            assert_eq!(value(&m, &count), *v, "{count}");
        }
    }
    for (op, n) in &counted {
        assert_eq!(
            *n,
            w.emu.request_count(op) as f64,
            "{op}: counted vs received"
        );
    }

    // Delete: the agent is revoked at AgentLattice.
    w.delete("metrics-bot").await;
    wait_until("the LatticeAgent is gone", || async {
        w.agents()
            .get_opt("metrics-bot")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let m = wait_until("gauges after the deletion", || async {
        let m = scrape(r.admin).await;
        (m.get("lattice_agents_managed") == Some(&0.0)).then_some(m)
    })
    .await;
    // One revocation, or two: under load a second cleanup reconcile can still see the deleted
    // object (stale cache, finalizer not yet gone) and revoke again. That repeat is idempotent at
    // AgentLattice and known (see the issue-4 notes); the counter must match the calls either way.
    let revoked = value(&m, "lattice_revocations_total{kind=\"agent\"}");
    assert!(
        (1.0..=2.0).contains(&revoked),
        "agent revocations: {revoked}"
    );
    assert_eq!(
        value(
            &m,
            "lattice_agentlattice_requests_total{operation=\"revoke_agent\",status=\"200\"}"
        ),
        revoked
    );
    assert_eq!(value(&m, "lattice_rotations_waiting"), 0.0);
    for family in [
        "lattice_reconciles",
        "lattice_reconcile_duration_seconds",
        "lattice_agentlattice_requests",
        "lattice_agentlattice_request_duration_seconds",
        "lattice_keys_rotated",
        "lattice_revocations",
        "lattice_agents_managed",
        "lattice_rotations_waiting",
    ] {
        let (_, body) = http_get(r.admin, "/metrics").await;
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "{family} is not described on /metrics"
        );
    }

    // SIGTERM: the replica stops cleanly and hands the Lease back.
    let admin = r.admin;
    r.terminate().await.expect("a clean stop");
    let spec = leases
        .get("lattice-operator")
        .await
        .expect("the Lease is kept")
        .spec
        .expect("lease spec");
    assert_eq!(spec.holder_identity, None, "the Lease was released");
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin server stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_the_crd_exists_is_clean() {
    let w = world_without_crd("admin-early").await;
    let args = replica::run_args(&w.emu.base_url(), &w.ns, SERVICE_KEY_SECRET, "15s", &[]);
    let r = replica::start(w.client.clone(), args, "admin-early-0").await;
    let (code, _) = http_get(r.admin, "/readyz").await;
    assert_eq!(code, 503);
    r.terminate().await.expect("a clean stop");
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), &w.ns);
    assert!(
        leases
            .get_opt("lattice-operator")
            .await
            .expect("read")
            .is_none(),
        "no Lease is taken before the CRD exists"
    );
}
