//! Behaviour 2 of the issue (design §4): crash safety against kube-sim and the emulator.
//!
//! The crash points are not hand-picked: a recording run of each scenario (registration, rotation,
//! compromised rotation) collects every fail point the executor passes (`before:<Action>` and
//! `after:<Action>`, in order), and the test then runs the scenario once per recorded point —
//! the n-th occurrence of that point — killing the operator there, starting a fresh one, and
//! checking the invariant: exactly one live agent per resource, its Secret holds a working key,
//! no orphan agent and no orphan live key. The same is done with the emulator committing a call
//! and dropping its response, for every AgentLattice operation the operator uses. Finally, an
//! agent of the same name that is not linked to the resource is never adopted (`NameConflict`).

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agentlattice::RegisterAgent;
use agentlattice_emulator::{FaultConfig, KeyStatus, RouteFaults};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use lattice_operator::crd::LatticeAgent;
use lattice_operator::crd::{COMPROMISED_ANNOTATION, ROTATE_ANNOTATION};
use lattice_operator::reconcile::FailPoints;
use lattice_operator::secret::{
    KEY_ID_ANNOTATION, MINT_STARTED_AT_ANNOTATION, RETIRING_KEYS_ANNOTATION,
};
use support::failpoints::{FailScript, occurrences};
use support::*;

const NAME: &str = "deploy-bot";
const SECRET: &str = "deploy-bot-agent-key";

/// Crash runs at once. A run mostly waits (for a grace period, a requeue, a watch event), so
/// they overlap well even on two cores.
const PARALLEL_RUNS: usize = 24;

/// A short grace period so that a rotation settles (old key revoked) within seconds, yet long
/// enough that a loaded machine still deprecates the old key before its revocation is due.
const SHORT_GRACE: &str = "  rotation: {gracePeriod: 3s, maxGracePeriod: 6s}";

fn deploy_bot() -> String {
    bot("deploy-bot", SHORT_GRACE)
}

/// The scenarios whose every fail point is crashed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Create the resource; settle.
    Register,
    /// Registered and settled; then `agentlattice.io/rotate` changes; settle (old key revoked).
    Rotate,
    /// Registered and settled; then `agentlattice.io/compromised` changes; settle.
    Compromised,
    /// Registered and settled; then the Secret is deleted (the lost-key path); settle.
    LostSecret,
    /// Registered and settled; then the resource is deleted; it goes away.
    Delete,
}

impl Scenario {
    fn tag(self) -> &'static str {
        match self {
            Scenario::Register => "reg",
            Scenario::Rotate => "rot",
            Scenario::Compromised => "cmp",
            Scenario::LostSecret => "lost",
            Scenario::Delete => "del",
        }
    }
}

/// Registers the resource with an operator using `failpoints` and waits until it settled; returns
/// the settled key id.
async fn register_and_settle(w: &mut World, failpoints: FailPoints) -> String {
    w.start_operator(Options {
        failpoints: Some(failpoints),
        ..Default::default()
    })
    .await;
    let (_, secret) = w.ready(&deploy_bot()).await;
    annotations(&secret)
        .get(KEY_ID_ANNOTATION)
        .cloned()
        .expect("the Secret names its key")
}

/// The action of the scenario (after registration for the rotations).
async fn act(w: &World, scenario: Scenario) {
    match scenario {
        Scenario::Register => {
            w.create(&deploy_bot()).await;
        }
        Scenario::Rotate => w.annotate(NAME, ROTATE_ANNOTATION, "r1").await,
        Scenario::Compromised => w.annotate(NAME, COMPROMISED_ANNOTATION, "c1").await,
        Scenario::LostSecret => {
            w.secrets()
                .delete(SECRET, &DeleteParams::default())
                .await
                .expect("Secret deleted");
        }
        Scenario::Delete => w.delete(NAME).await,
    }
}

/// Whether the scenario is complete now: the resource gone (deletion), or settled — Ready,
/// status describing the Secret's key, no mint intent, no retiring key — on a key other than
/// `old` (rotations).
async fn complete(
    w: &World,
    scenario: Scenario,
    old: Option<&str>,
) -> Option<(LatticeAgent, Secret)> {
    if scenario == Scenario::Delete {
        return match w.agents().get_opt(NAME).await {
            Ok(None) => Some((
                LatticeAgent::new(NAME, Default::default()),
                Secret::default(),
            )),
            _ => None,
        };
    }
    let a = w.agents().get_opt(NAME).await.ok()??;
    if condition(&a, "Ready")?.status != "True" {
        return None;
    }
    let status = a.status.clone()?;
    let s = w.secrets().get_opt(SECRET).await.ok()??;
    let ann = annotations(&s);
    let key_id = ann.get(KEY_ID_ANNOTATION)?;
    let settled = status.active_key.as_ref().map(|k| &k.id) == Some(key_id)
        && !ann.contains_key(MINT_STARTED_AT_ANNOTATION)
        && status.mint_started_at.is_none()
        && !ann.contains_key(RETIRING_KEYS_ANNOTATION)
        && status.retiring_keys.is_empty()
        && old != Some(key_id.as_str());
    settled.then_some((a, s))
}

/// Waits until the scenario is complete (see [`complete`]).
async fn wait_complete(w: &World, scenario: Scenario, old: Option<&str>) -> (LatticeAgent, Secret) {
    wait_until(&format!("{scenario:?} completes"), || {
        complete(w, scenario, old)
    })
    .await
}

/// The recording run: every fail point the executor passes during the scenario, in order.
async fn record(scenario: Scenario) -> Vec<String> {
    let mut w = World::start(&format!("record-{}", scenario.tag())).await;
    let recording = FailScript::default();
    let old = if scenario == Scenario::Register {
        recording.arm();
        w.start_operator(Options {
            failpoints: Some(recording.failpoints()),
            ..Default::default()
        })
        .await;
        None
    } else {
        let old = register_and_settle(&mut w, recording.failpoints()).await;
        recording.arm();
        Some(old)
    };
    act(&w, scenario).await;
    wait_complete(&w, scenario, old.as_deref()).await;
    w.stop_operator().await;
    recording.seen()
}

/// One crash run: the scenario with a crash at the `occurrence`-th `point`, a restart, and the
/// checks. Panics (with the point in the message) when something is wrong; returns whether the
/// point was reached (timing decides how often some reads happen, e.g. the last-use check of a
/// retiring key, so a late occurrence may not come; the run is then checked all the same).
async fn crash_run(scenario: Scenario, index: usize, point: String, occurrence: usize) -> bool {
    let mut w = World::start(&format!("crash-{}-{index}", scenario.tag())).await;
    let crash = FailScript::crashing(&point, occurrence);
    let before = if scenario == Scenario::Register {
        crash.arm();
        w.start_operator(Options {
            failpoints: Some(crash.failpoints()),
            ..Default::default()
        })
        .await;
        None
    } else {
        let key = register_and_settle(&mut w, crash.failpoints()).await;
        crash.arm();
        Some(key)
    };
    act(&w, scenario).await;
    let what = format!("{scenario:?}: fail point {point} #{occurrence}");
    wait_until(
        &format!("{what} is reached or the scenario completes"),
        || async {
            (crash.fired() || complete(&w, scenario, before.as_deref()).await.is_some())
                .then_some(())
        },
    )
    .await;
    let fired = crash.fired();
    w.kill_operator().await;

    // A fresh operator with empty memory finishes the job.
    w.start_operator(Options::default()).await;
    if scenario == Scenario::Delete {
        // The resource goes, its agent is revoked, nothing of it is left live.
        wait_complete(&w, scenario, None).await;
        let snapshot = w.emu.snapshot();
        assert_eq!(
            snapshot.live_agents().count(),
            0,
            "{what}: the agent is revoked: {:#?}",
            snapshot.agents
        );
        assert_eq!(snapshot.agents.len(), 1, "{what}: one agent ever");
        w.stop_operator().await;
        return fired;
    }
    let (a, secret) = wait_complete(&w, scenario, before.as_deref()).await;
    w.check_invariant(NAME).await;

    let snapshot = w.emu.snapshot();
    let live: Vec<_> = snapshot.live_agents().collect();
    assert_eq!(
        live.len(),
        1,
        "{what}: one live agent: {:#?}",
        snapshot.agents
    );
    let agent = live[0];
    let key_id = annotations(&secret)
        .get(KEY_ID_ANNOTATION)
        .cloned()
        .expect("key id");
    let live_keys: Vec<&str> = agent.live_keys().map(|k| k.key_id.as_str()).collect();
    assert_eq!(
        live_keys,
        vec![key_id.as_str()],
        "{what}: only the Secret's key is live (every other key revoked): {:#?}",
        agent.keys
    );
    if let Some(old) = before {
        // The rotation asked for did happen, exactly once, and the old key is gone.
        assert_ne!(key_id, old, "{what}: the key was rotated");
        assert_eq!(
            agent.key(&old).map(|k| k.status),
            Some(KeyStatus::Revoked),
            "{what}: the old key is revoked"
        );
        let handled = a.status.map(|s| s.handled).unwrap_or_default();
        let handled = match scenario {
            Scenario::Rotate => handled.rotate,
            Scenario::Compromised => handled.compromised,
            _ => Some(String::new()),
        };
        assert!(
            handled.is_some(),
            "{what}: the request is recorded as handled"
        );
    }
    w.stop_operator().await;
    fired
}

/// Runs `f(item)` for every item, up to [`PARALLEL_RUNS`] at a time, each in its own task (a world of its
/// own); panics listing every failed item with its panic message.
async fn run_all<I, T, F, Fut>(
    items: Vec<I>,
    label: impl Fn(&I) -> String,
    f: F,
) -> Vec<(String, T)>
where
    I: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    use futures::StreamExt;
    let results: Vec<(String, Result<T, tokio::task::JoinError>)> =
        futures::stream::iter(items.into_iter().map(|item| {
            let label = label(&item);
            let run = f(item);
            async move { (label, tokio::spawn(run).await) }
        }))
        .buffer_unordered(PARALLEL_RUNS)
        .collect()
        .await;
    let mut failures = Vec::new();
    let mut outputs = Vec::new();
    for (label, result) in results {
        match result {
            Ok(output) => outputs.push((label, output)),
            Err(e) => {
                let message = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                failures.push(format!("{label}: {message}"));
            }
        }
    }
    failures.sort();
    assert!(failures.is_empty(), "failed runs:\n{}", failures.join("\n"));
    outputs
}

/// Every recorded fail point of `scenario`, crashed at one after the other.
async fn crash_everywhere(scenario: Scenario, must_include: &[&str]) {
    // On a loaded machine a recording can include a reconcile retried for timing alone (a
    // deletion reconciled twice): its second half then never recurs in the crash runs. Up to
    // three recordings while one passes a point twice; the shortest is the path.
    let mut seen = record(scenario).await;
    for _ in 0..2 {
        if occurrences(&seen).iter().all(|(_, n)| *n == 1) {
            break;
        }
        let again = record(scenario).await;
        if again.len() < seen.len() {
            seen = again;
        }
    }
    for point in must_include {
        assert!(
            seen.iter().any(|p| p == point),
            "the recording of {scenario:?} passes {point}: {seen:?}"
        );
    }
    let points = occurrences(&seen);
    eprintln!("{scenario:?}: {} crash points: {seen:?}", points.len());
    // `CRASH_ONLY=<index>` reruns one crash point (with `TEST_LOG=debug` to see it).
    let only: Option<usize> = std::env::var("CRASH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let items: Vec<(usize, String, usize)> = points
        .into_iter()
        .enumerate()
        .map(|(i, (p, n))| (i, p, n))
        .filter(|(i, _, _)| only.is_none_or(|o| o == *i))
        .collect();
    let outcomes = run_all(
        items,
        |(i, p, n)| format!("#{i} {p} (occurrence {n})"),
        move |(i, p, n)| crash_run(scenario, i, p, n),
    )
    .await;
    // Every distinct point was crashed at (a late occurrence may not recur in a run).
    let mut crashed: BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, fired)| *fired)
        .filter_map(|(label, _)| label.split(' ').nth(1).map(str::to_owned))
        .collect();
    let missed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, fired)| !*fired)
        .map(|(label, _)| label)
        .collect();
    eprintln!("{scenario:?}: not reached (checked all the same): {missed:?}");
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    if only.is_some() {
        return;
    }
    assert!(
        missed.len() * 4 <= outcomes.len(),
        "most recorded points recur: {missed:?}"
    );
    // A second chance for a point no run reached: on a loaded machine a grace period can pass
    // before the old key is deprecated, and the planner then revokes it without deprecating.
    let retry: Vec<(usize, String, usize)> = distinct
        .difference(&crashed)
        .enumerate()
        .map(|(i, p)| (100 + i, p.clone(), 1))
        .collect();
    if !retry.is_empty() {
        eprintln!("{scenario:?}: second chance for {retry:?}");
        for (label, fired) in run_all(
            retry,
            |(i, p, n)| format!("#{i} {p} (occurrence {n})"),
            move |(i, p, n)| crash_run(scenario, i, p, n),
        )
        .await
        {
            if fired && let Some(p) = label.split(' ').nth(1) {
                crashed.insert(p.to_owned());
            }
        }
    }
    assert_eq!(crashed, distinct, "every fail point was crashed at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_fail_point_of_registration() {
    crash_everywhere(
        Scenario::Register,
        &[
            "before:Register",
            "after:Register",
            "before:WriteSecret",
            "after:WriteSecret",
            "before:WriteStatus",
            "after:WriteStatus",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_fail_point_of_rotation() {
    crash_everywhere(
        Scenario::Rotate,
        &[
            "before:MintKey",
            "after:MintKey",
            "before:WriteSecret",
            "before:DeprecateKey",
            "before:RevokeKey",
            "after:RevokeKey",
            "before:WriteStatus",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_fail_point_of_compromised_rotation() {
    crash_everywhere(
        Scenario::Compromised,
        &[
            "before:MintKey",
            "after:MintKey",
            "before:WriteSecret",
            "before:RevokeKey",
            "after:RevokeKey",
            "before:WriteStatus",
        ],
    )
    .await;
}

/// Registers, settles, rotates, settles, with the emulator committing the first call of `op` and
/// dropping its response.
async fn drop_run(index: usize, op: String) {
    let mut w = World::start(&format!("drop-{index}")).await;
    w.emu
        .set_faults(FaultConfig::new().route(&op, RouteFaults::drop_response_next(1)));
    let first = register_and_settle(&mut w, Arc::new(|_: &str| false)).await;
    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    let (_, secret) = w
        .wait_until_rotated(&first)
        .await
        .expect("rotated after a dropped response");
    w.check_invariant(NAME).await;
    let what = format!("drop the response of {op}");
    assert_eq!(
        w.emu.metrics().dropped.get(op.as_str()).copied(),
        Some(1),
        "{what}: the fault fired"
    );
    let snapshot = w.emu.snapshot();
    let live: Vec<_> = snapshot.live_agents().collect();
    assert_eq!(
        live.len(),
        1,
        "{what}: one live agent: {:#?}",
        snapshot.agents
    );
    let key_id = annotations(&secret)
        .get(KEY_ID_ANNOTATION)
        .cloned()
        .expect("key id");
    let live_keys: Vec<&str> = live[0].live_keys().map(|k| k.key_id.as_str()).collect();
    assert_eq!(
        live_keys,
        vec![key_id.as_str()],
        "{what}: only the Secret's key is live: {:#?}",
        live[0].keys
    );
    w.stop_operator().await;
}

trait RotatedExt {
    async fn wait_until_rotated(
        &self,
        old: &str,
    ) -> Option<(
        lattice_operator::crd::LatticeAgent,
        k8s_openapi::api::core::v1::Secret,
    )>;
}

impl RotatedExt for World {
    /// Waits until the resource settled (idle) on a key other than `old`.
    async fn wait_until_rotated(
        &self,
        old: &str,
    ) -> Option<(
        lattice_operator::crd::LatticeAgent,
        k8s_openapi::api::core::v1::Secret,
    )> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (a, s) = self.wait_settled(NAME, true).await;
            if annotations(&s).get(KEY_ID_ANNOTATION).map(String::as_str) != Some(old) {
                return Some((a, s));
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_responses_after_commit_of_every_operation() {
    // Which AgentLattice operations does a registration and a rotation use? Ask the emulator
    // after a clean run rather than listing them here.
    let mut w = World::start("drop-record").await;
    let first = register_and_settle(&mut w, Arc::new(|_: &str| false)).await;
    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    w.wait_until_rotated(&first).await.expect("rotated");
    w.stop_operator().await;
    let ops: Vec<String> = w
        .emu
        .metrics()
        .requests
        .keys()
        .filter(|op| {
            agentlattice_emulator::OPERATIONS.contains(&op.as_str()) && op.as_str() != "whoami"
        })
        .cloned()
        .collect();
    for op in ["register", "mint_key", "deprecate_key", "revoke_key"] {
        assert!(ops.iter().any(|o| o == op), "{op} is used: {ops:?}");
    }
    eprintln!("operations: {ops:?}");
    let items: Vec<(usize, String)> = ops.into_iter().enumerate().collect();
    run_all(items, |(_, op)| op.clone(), |(i, op)| drop_run(i, op)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_registration_response_is_replayed_and_its_lost_key_revoked() {
    let mut w = World::start("drop-register").await;
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::drop_response_next(1)));
    w.start_operator(Options::default()).await;
    let (_, secret) = w.ready(&deploy_bot()).await;
    w.check_invariant(NAME).await;
    let snapshot = w.emu.snapshot();
    assert_eq!(snapshot.agents.len(), 1, "one agent ever registered");
    let agent = &snapshot.agents[0];
    // The key of the committed registration never reached the operator: revoked; the Secret
    // holds a freshly minted one.
    assert!(agent.keys.len() >= 2, "{:#?}", agent.keys);
    assert_eq!(agent.keys[0].status, KeyStatus::Revoked);
    assert_eq!(
        annotations(&secret).get(KEY_ID_ANNOTATION),
        agent.live_keys().next().map(|k| &k.key_id)
    );
    assert_eq!(agent.live_keys().count(), 1);
    assert!(
        w.emu.request_count("register") >= 2,
        "the registration was replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_mint_response_leaves_no_orphan_key() {
    let mut w = World::start("drop-mint").await;
    let first = register_and_settle(&mut w, Arc::new(|_: &str| false)).await;
    w.emu
        .set_faults(FaultConfig::new().route("mint_key", RouteFaults::drop_response_next(1)));
    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    let (_, secret) = w.wait_until_rotated(&first).await.expect("rotated");
    w.check_invariant(NAME).await;
    let snapshot = w.emu.snapshot();
    let agent = snapshot.live_agents().next().expect("the agent");
    // The original key, the stray key whose mint response was dropped, and the delivered one.
    assert!(agent.keys.len() >= 3, "{:#?}", agent.keys);
    let key_id = annotations(&secret).get(KEY_ID_ANNOTATION).cloned();
    for key in &agent.keys {
        if Some(&key.key_id) != key_id.as_ref() {
            assert_eq!(key.status, KeyStatus::Revoked, "{:#?}", agent.keys);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_the_same_name_not_linked_to_the_resource_is_never_adopted() {
    let mut w = World::start("nameconflict").await;
    // Two agents that carry the resource's default name, registered outside the operator: one
    // without metadata, one that claims the same namespace and name (an earlier resource of that
    // name, deleted with `Retain`) but another uid.
    let provisioner = w.provisioner();
    let foreign = provisioner
        .register(
            &RegisterAgent::new("nameconflict-deploy-bot")
                .capabilities(["deploy.staging"])
                .metadata("k8s.namespace", "nameconflict")
                .metadata("k8s.name", "deploy-bot")
                .metadata("k8s.uid", "00000000-0000-0000-0000-000000000001"),
            None,
        )
        .await
        .expect("registered directly");
    let other = provisioner
        .register(&RegisterAgent::new("nameconflict-other-bot"), None)
        .await
        .expect("registered directly");
    let before = w.emu.snapshot();
    let audit_before = w.emu.audit().len();

    w.start_operator(Options::default()).await;
    w.create(&deploy_bot()).await;
    w.create(&bot("other-bot", SHORT_GRACE)).await;
    for name in [NAME, "other-bot"] {
        let a = w
            .wait_condition(name, "Ready", "False", Some("NameConflict"))
            .await;
        assert!(a.status.as_ref().and_then(|s| s.agent_id.clone()).is_none());
        w.wait_event(name, "NameConflict").await;
        assert!(
            w.secret(&format!("{name}-agent-key")).await.is_none(),
            "no Secret for {name}"
        );
    }
    // Let a few more reconciles happen, then delete both resources: the foreign agents are
    // untouched throughout (no key minted, deprecated or revoked, not updated, not revoked).
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.delete(NAME).await;
    w.delete("other-bot").await;
    for name in [NAME, "other-bot"] {
        let api = w.agents();
        wait_until(&format!("{name} is gone"), || {
            let api = api.clone();
            async move {
                api.get_opt(name)
                    .await
                    .ok()
                    .and_then(|a| a.is_none().then_some(()))
            }
        })
        .await;
    }
    let after = w.emu.snapshot();
    assert_eq!(
        after.agents, before.agents,
        "the foreign agents are untouched"
    );
    assert!(after.agent(&foreign.agent.id).is_some_and(|a| a.is_live()));
    assert!(after.agent(&other.agent.id).is_some_and(|a| a.is_live()));
    // At AgentLattice, the operator only ever tried to register (and was refused).
    let calls: Vec<String> = w.emu.audit()[audit_before..]
        .iter()
        .map(|e| format!("{} {}", e.operation, e.outcome))
        .collect();
    assert!(!calls.is_empty(), "registration was attempted");
    assert!(
        calls.iter().all(|c| c == "register agent_name_exists"),
        "{calls:?}"
    );
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_fail_point_of_the_lost_key_path() {
    crash_everywhere(
        Scenario::LostSecret,
        &[
            "before:MintKey",
            "after:MintKey",
            "before:WriteSecret",
            "after:WriteSecret",
            "before:WriteStatus",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_fail_point_of_deletion() {
    crash_everywhere(
        Scenario::Delete,
        &["before:RevokeAgent", "after:RevokeAgent"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_of_the_same_name_leaves_no_orphan_agent() {
    let mut w = World::start("foreign-secret").await;
    // Someone else's Secret, not labelled as the operator's (its watch does not see it).
    let foreign: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET},
        "stringData": {"password": "hunter2"},
    }))
    .expect("secret");
    w.secrets()
        .create(&kube::api::PostParams::default(), &foreign)
        .await
        .expect("foreign Secret");
    // Conflicts are retried at the resync interval (the operator does not watch that Secret).
    w.start_operator(Options {
        resync: jiff::SignedDuration::from_secs(1),
        ..Default::default()
    })
    .await;
    w.create(&deploy_bot()).await;
    w.wait_condition(NAME, "Ready", "False", Some("SecretConflict"))
        .await;
    w.wait_event(NAME, "SecretConflict").await;
    let s = w.secret(SECRET).await.expect("still there");
    assert_eq!(
        s.data.map(|d| d.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["password".to_owned()]),
        "never overwritten"
    );
    // The conflict is found before anything is registered: no agent, hence no undelivered key.
    assert_eq!(
        w.emu.request_count("register"),
        0,
        "no AgentLattice call on a SecretConflict"
    );
    assert!(w.emu.snapshot().agents.is_empty());
    // The conflict goes away: the resource gets its agent and key, and nothing else is live.
    w.secrets()
        .delete(SECRET, &DeleteParams::default())
        .await
        .expect("foreign Secret deleted");
    w.wait_settled(NAME, true).await;
    w.check_invariant(NAME).await;
    let snapshot = w.emu.snapshot();
    assert_eq!(snapshot.live_agents().count(), 1);
    assert_eq!(
        snapshot.live_agents().flat_map(|a| a.live_keys()).count(),
        1,
        "{:#?}",
        snapshot.agents
    );
    w.stop_operator().await;
}
