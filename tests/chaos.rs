//! Chaos with the operator as its own OS process (issue 16): `lattice-operator run` as child
//! processes, SIGKILLed and SIGTERMed at random moments and restarted, while random operations
//! run and both kube-sim and the AgentLattice emulator inject faults; once the faults stop, the
//! invariant must hold within a bounded settle time and nothing may be lost. The runner is in
//! `tests/chaos_runner/`; docs/reliability.md ("Chaos") says how to run it long (`CHAOS_SEED`,
//! `CHAOS_OPS`, `CHAOS_DURATION`, `CHAOS_SETTLE`).

mod chaos_runner;
mod support;

use std::time::Duration;

use chaos_runner::{Bounds, Case};
use kube_sim::Matcher;

/// One operator process without leader election, killed and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_one_replica() {
    let case = Case {
        name: "chaos-one",
        replicas: 1,
        lease: "",
    };
    chaos_runner::run(case, Bounds::from_env(80, Duration::from_secs(40))).await;
}

/// Two operator processes with leader election on a 3 s Lease: kills of the leader are
/// takeovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_replicas_with_leader_election() {
    let case = Case {
        name: "chaos-two",
        replicas: 2,
        lease: "3s",
    };
    chaos_runner::run(case, Bounds::from_env(80, Duration::from_secs(40))).await;
}

/// The checks are not vacuous: on a settled world they pass, and each thing a chaos run must not
/// leave behind — an agent revoked behind the model's back, a resource not in the state its spec
/// asks for, a key in a log line, a panic — is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_report_what_a_chaos_run_must_not_leave() {
    use chaos_runner::checks::violations;
    use chaos_runner::ops::{Actor, Model, Op};
    use chaos_runner::process::{Fleet, ProcessConfig};

    let mut world = support::World::start("chaos-checks").await;
    let config = ProcessConfig::for_world(&world, &format!("checks-{}", std::process::id()));
    let log_dir = config.log_dir.clone();
    let mut fleet = Fleet::new(config, 1);
    fleet.start_missing().expect("the operator starts");
    let mut actor = Actor {
        world: &mut world,
        model: Model::default(),
    };
    for name in ["first", "second"] {
        let op = Op::Create {
            name: name.into(),
            capabilities: vec!["deploy.staging".into()],
            suspend: false,
            retain: false,
        };
        actor.apply(&op).await.expect("created");
    }
    let mut last = Vec::new();
    for _ in 0..60 {
        last = violations(actor.world, &actor.model, &fleet.logs)
            .await
            .expect("the checks read the world");
        if last.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last.is_empty(), "a settled world: {last:#?}");
    fleet.stop_all().await;
    assert!(
        fleet.stats.unexpected.is_empty(),
        "{:?}",
        fleet.stats.unexpected
    );

    // Behind the model's back: the first agent revoked; the model expects the second suspended.
    let first = actor.model.resources["first"].uid.clone();
    let agent = actor
        .world
        .emu
        .snapshot()
        .agents
        .into_iter()
        .find(|a| a.is_live() && a.metadata.get("k8s.uid") == Some(&first))
        .expect("first's agent");
    actor
        .world
        .provisioner()
        .revoke_agent(&agent.id)
        .await
        .expect("revoked");
    if let Some(r) = actor.model.resources.get_mut("second") {
        r.suspend = true;
    }
    // A key and a panic in a log.
    let log = fleet.logs[0].clone();
    let mut text = std::fs::read_to_string(&log).expect("the log");
    text.push_str(&format!("token al_agent_{}\n", "Ab1".repeat(14)));
    text.push_str("thread 'main' panicked at src/x.rs:1:1\n");
    std::fs::write(&log, text).expect("log written");

    let found = violations(actor.world, &actor.model, &fleet.logs)
        .await
        .expect("the checks read the world");
    let has = |needle: &str| found.iter().any(|v| v.contains(needle));
    assert!(
        has("chaos-checks/first is Ready but has 0 live agents"),
        "{found:#?}"
    );
    assert!(
        has("second is Ready=True AgentReady, expected Ready=False Suspended"),
        "{found:#?}"
    );
    assert!(has("verify: key material in"), "{found:#?}");
    assert!(has("panicked at"), "{found:#?}");
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// Found by the chaos runner: the key a Secret holds, revoked at AgentLattice by someone else,
/// was never noticed (nothing on the agent changes; the periodic drift read did not list keys),
/// so the LatticeAgent stayed Ready with a key that no longer authenticates. Now the periodic
/// read lists the keys and the lost-key path puts a new, working key in the Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_key_revoked_outside_is_replaced_at_the_next_resync() {
    use support::Options;

    let mut w = support::World::start("chaos-revoked-key").await;
    w.start_operator(Options {
        resync: jiff::SignedDuration::from_secs(1),
        spread_first_drift_read: false,
        ..Options::default()
    })
    .await;
    let (agent, secret) = w.ready(&support::bot("bot", "")).await;
    let status = agent.status.expect("status");
    let agent_id = status.agent_id.expect("agent id");
    let key_id = status.active_key.expect("an active key").id;
    w.provisioner()
        .revoke_key(&agent_id, &key_id, true)
        .await
        .expect("the Secret's key revoked outside");
    assert!(
        w.whoami_with(&secret).await.is_err(),
        "the revoked key still works"
    );

    support::wait_until("a new key in the Secret", || async {
        let s = w.secret("bot-agent-key").await?;
        let a = w.get("bot").await;
        let active = a.status?.active_key?.id;
        (active != key_id
            && support::annotations(&s).get(lattice_operator::secret::KEY_ID_ANNOTATION)
                == Some(&active))
        .then_some(())
    })
    .await;
    w.wait_settled("bot", true).await;
    w.check_invariant("bot").await;
    let secret = w.secret("bot-agent-key").await.expect("the Secret");
    assert_eq!(
        w.whoami_with(&secret)
            .await
            .expect("the new key works")
            .config_id,
        agent_id,
        "the same agent, a new key"
    );
}

/// Found by the chaos runner (seed 20261208, 12 minutes): a SIGTERM that came before the caches
/// had listed left the process hanging until SIGKILL. The reconciles waited for the caches, and
/// kube-runtime's graceful shutdown had stopped polling the watches that fill them while it
/// waited for those reconciles. Now a reconcile that is still waiting for the caches ends at
/// shutdown, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_caches_have_listed_stops_the_process() {
    let world = support::World::start("chaos-early-term").await;
    // A LatticeAgent whose reconcile starts as soon as the LatticeAgents are listed, and a
    // Secret list that takes 5 s: the caches cannot have listed when the SIGTERM comes.
    world.create(&support::bot("early", "")).await;
    sigterm_before_the_caches_have_listed(&world, "early", "secrets").await;
}

/// The second early-SIGTERM hang the chaos runner found (seed 20261208, 12 minutes, again after
/// the fix above), as it was reproduced by hand: annotated Deployments, latency on every
/// Kubernetes request, a SIGTERM right after the start. Each workload kind's identity controller
/// is a kube-runtime controller whose reconciles are held until its store of workloads has
/// listed; its graceful shutdown stopped polling the watch that lists them and then waited for
/// the runner, which never ends while it holds — so the process hung until SIGKILL. The
/// Deployment list is made slow (5 s) so that the SIGTERM surely comes before it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_workloads_have_listed_stops_the_process() {
    let world = with_annotated_deployments("chaos-early-workloads").await;
    world
        .sim
        .faults()
        .set_latency(Matcher::any(), Duration::from_millis(100));
    sigterm_before_the_caches_have_listed(&world, "early-workloads", "deployments").await;
}

/// The same with the LatticeAgent list slow: the LatticeAgent controller holds its reconciles
/// until its store has listed, and the workload watches wait for that store before they list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_lattice_agents_have_listed_stops_the_process() {
    let world = with_annotated_deployments("chaos-early-agents").await;
    world.create(&support::bot("early", "")).await;
    sigterm_before_the_caches_have_listed(&world, "early-agents", "latticeagents").await;
}

/// A world with the chaos runner's annotated Deployments (each gets a workload identity).
async fn with_annotated_deployments(name: &str) -> support::World {
    use chaos_runner::ops::{Actor, Model};

    let mut world = support::World::start(name).await;
    Actor {
        world: &mut world,
        model: Model::default(),
    }
    .create_workloads()
    .await
    .expect("the annotated Deployments are created");
    world
}

/// Makes kube-sim answer lists of `slow_list` (a resource's plural) only after 5 s, starts one
/// operator process against `world`, SIGTERMs it half a second after it logged
/// "lattice-operator running" — before its caches have listed — and asserts that it exits 0
/// within the runner's grace period for a SIGTERM (30 s, `process::TERM_GRACE`: a bound on a
/// hang, not on speed).
async fn sigterm_before_the_caches_have_listed(
    world: &support::World,
    label: &str,
    slow_list: &str,
) {
    world.sim.faults().set_latency(
        Matcher::verb("list").resource(slow_list),
        Duration::from_secs(5),
    );
    use chaos_runner::process::{Fleet, ProcessConfig};

    let config = ProcessConfig::for_world(world, &format!("{label}-{}", std::process::id()));
    let log_dir = config.log_dir.clone();
    let mut fleet = Fleet::new(config, 1);
    fleet.start_missing().expect("the operator starts");
    let log = fleet.logs[0].clone();
    support::wait_until("the controllers run", || async {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("lattice-operator running"))
            .then_some(())
    })
    .await;
    // The fast lists are answered meanwhile; the slow one is not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        !text.contains("caches synced"),
        "the caches listed already:\n{text}"
    );
    fleet.stop_all().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        fleet.stats.unexpected.is_empty(),
        "{:?}\n{text}",
        fleet.stats.unexpected,
    );
    assert!(text.contains("operator stopped"), "{text}");
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// A kube-runtime controller over ConfigMaps, for [`drain_or_drop`] alone: `trigger` feeds it,
/// `writer` (kept alive by it) fills its store, each reconcile calls `reconcile`.
mod bare_controller {
    use std::future::Future;
    use std::sync::Arc;

    use futures::{Stream, StreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::reflector::{Store, store::Writer};
    use kube::runtime::watcher;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub struct Never;

    pub type Reconcile =
        dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static;

    pub fn run(
        trigger: impl Stream<Item = ConfigMap> + Send + 'static,
        writer: Writer<ConfigMap>,
        reader: Store<ConfigMap>,
        reconcile: Arc<Reconcile>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> impl Future<Output = ()> + Send {
        // The writer lives as long as the trigger stream, as a reflector's does.
        let trigger = trigger.map(move |o| {
            let _ = &writer;
            Ok::<_, watcher::Error>(o)
        });
        Controller::for_stream(trigger, reader)
            .graceful_shutdown_on(shutdown)
            .run(
                |_: Arc<ConfigMap>, r: Arc<Arc<Reconcile>>| async move {
                    r().await;
                    Ok::<_, Never>(Action::await_change())
                },
                |_, _, _| Action::await_change(),
                Arc::new(reconcile),
            )
            .for_each(|_| async {})
    }
}

/// `drain_or_drop` (src/cluster/shutdown.rs): a controller stopped before its store listed is
/// dropped — kube-runtime's graceful shutdown alone never ends then, which is what hung the
/// early-SIGTERMed processes above (the 2 s bound here is on a hang: it is never ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_or_drop_drops_a_controller_stopped_before_its_store_listed() {
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use lattice_operator::cluster::shutdown::drain_or_drop;

    let unlisted = || {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let shutdown = rx.map(|_| ()).shared();
        let controller = bare_controller::run(
            futures::stream::pending(),
            writer,
            reader.clone(),
            std::sync::Arc::new(|| async {}.boxed()),
            shutdown.clone(),
        );
        tx.send(()).expect("the shutdown sent");
        (controller, reader, shutdown)
    };
    // kube-runtime alone: the graceful shutdown waits for a runner held until the store lists.
    let (controller, _reader, _shutdown) = unlisted();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), controller)
            .await
            .is_err(),
        "kube-runtime's graceful shutdown ended a controller whose store never listed: \
         drain_or_drop may no longer be needed"
    );
    // With drain_or_drop it ends.
    let (controller, reader, shutdown) = unlisted();
    tokio::time::timeout(
        Duration::from_secs(30),
        drain_or_drop(controller, &reader, shutdown),
    )
    .await
    .expect("the controller was dropped");
}

/// `drain_or_drop`: a controller whose store has listed is drained — a reconcile running when
/// the shutdown comes finishes before it returns (dropping the controller would have cancelled
/// it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_or_drop_lets_a_listed_controller_finish_its_running_reconcile() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::{FutureExt, StreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::{reflector, watcher};
    use lattice_operator::cluster::shutdown::drain_or_drop;
    use tokio::sync::{Notify, Semaphore};

    let (reader, mut writer) = reflector::store::<ConfigMap>();
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some("one".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let started = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let reconcile: Arc<bare_controller::Reconcile> = {
        let (started, release, finished) = (
            Arc::clone(&started),
            Arc::clone(&release),
            Arc::clone(&finished),
        );
        Arc::new(move || {
            let (started, release, finished) = (
                Arc::clone(&started),
                Arc::clone(&release),
                Arc::clone(&finished),
            );
            async move {
                started.notify_one();
                let _ = release.acquire().await;
                finished.store(true, Ordering::SeqCst);
            }
            .boxed()
        })
    };
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let shutdown = rx.map(|_| ()).shared();
    let controller = bare_controller::run(
        futures::stream::iter([object]).chain(futures::stream::pending()),
        writer,
        reader.clone(),
        reconcile,
        shutdown.clone(),
    );
    let run = tokio::spawn(async move { drain_or_drop(controller, &reader, shutdown).await });
    started.notified().await;
    tx.send(()).expect("the shutdown sent");
    // A drain_or_drop that dropped the controller would cancel the reconcile meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.add_permits(1);
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the controller ended")
        .expect("no panic");
    assert!(
        finished.load(Ordering::SeqCst),
        "the running reconcile was cancelled, not finished"
    );
}
