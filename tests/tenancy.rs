//! Tenancy (docs/tenancy.md), on kube-sim with RBAC enforced and the AgentLattice emulator: a
//! namespace editor (a user bound to the built-in `edit` ClusterRole in their namespace, which
//! picks up the chart's LatticeAgent rules by aggregation) is held to their provisioner's policy;
//! provisioners are not theirs to create or edit; each provisioner's service key is its own, is
//! replaced in place without disruption, is reported once when revoked, and a suspended
//! provisioner halts exactly the agents it registered.

#[path = "chart/support.rs"]
mod chart;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use agentlattice_emulator::AgentStatus as EmuStatus;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::KubeSim;
use lattice_operator::crd::{
    ClusterLatticeProvisioner, LatticeAgent, LatticeProvisioner, ROTATE_ANNOTATION,
};
use serde_json::json;
use support::{Options, World, condition, wait_until};

/// The editor's namespace (the world's).
const TEAM: &str = "payments";
/// Another team's namespace.
const OTHER: &str = "billing";
const EDITOR_TOKEN: &str = "alice-editor-token";

/// kube-sim with RBAC, the CRDs, namespaces [`TEAM`] and [`OTHER`], the chart's roles for people
/// (aggregated into the built-in roles), and user `alice` bound to `edit` in [`TEAM`].
async fn world() -> (World, kube::Client) {
    let w = World::start_with(KubeSim::builder().rbac(true), TEAM).await;
    w.create_namespace(OTHER).await;
    let rendered = tokio::task::spawn_blocking(|| chart::render(serde_json::Value::Null))
        .await
        .expect("the chart renders");
    let roles: Api<ClusterRole> = Api::all(w.client.clone());
    let mut aggregated = 0;
    for o in rendered.all("ClusterRole") {
        let labels = o.value["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if labels
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        {
            let role: ClusterRole = serde_json::from_value(o.value.clone()).expect("a ClusterRole");
            roles
                .create(&PostParams::default(), &role)
                .await
                .expect("the chart's role for people");
            aggregated += 1;
        }
    }
    assert_eq!(aggregated, 2, "the chart's view and edit roles");
    w.sim.add_token(EDITOR_TOKEN, "alice", &[]);
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-edit", "namespace": TEAM},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(w.client.clone(), TEAM)
        .create(&PostParams::default(), &binding)
        .await
        .expect("alice edits payments");
    let editor = w.sim.client_for_token(EDITOR_TOKEN).expect("a client");
    (w, editor)
}

/// Writes the service key Secret `name` in `ns`, marked (or not) as a service key.
async fn put_key(w: &World, ns: &str, name: &str, key: &str, marked: bool) {
    let mut labels = BTreeMap::new();
    if marked {
        labels.insert("agentlattice.io/service-key", "true");
    }
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "stringData": {"AL_SERVICE_KEY": key},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(w.client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("service key Secret written");
}

/// Creates (as the admin) LatticeProvisioner `name` in `ns` with its own service key; returns
/// the key's id at the emulator.
async fn provisioner(w: &World, ns: &str, name: &str, capabilities: &[&str]) -> String {
    let svc = w.emu.create_service_key(name);
    put_key(w, ns, &format!("{name}-key"), &svc.api_key, true).await;
    let p: LatticeProvisioner = serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeProvisioner",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceKeySecretRef": {"name": format!("{name}-key")},
            "policy": {"capabilities": capabilities},
        },
    }))
    .expect("provisioner");
    Api::<LatticeProvisioner>::namespaced(w.client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .expect("provisioner created");
    svc.id
}

fn provisioners(w: &World) -> Api<LatticeProvisioner> {
    Api::namespaced(w.client.clone(), TEAM)
}

async fn wait_provisioner_ready(w: &World, name: &str, ready: &str) -> LatticeProvisioner {
    wait_until(&format!("provisioner {name} Ready={ready}"), || async {
        let p = provisioners(w).get_opt(name).await.ok()??;
        let c = p
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == ready).then_some(p.clone())
    })
    .await
}

/// A LatticeAgent named `name` in the editor's namespace.
fn agent(name: &str, extra_spec: serde_json::Value) -> LatticeAgent {
    let mut spec = json!({"capabilities": ["deploy.staging"]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
        "metadata": {"name": name, "namespace": TEAM},
        "spec": spec,
    }))
    .expect("agent")
}

fn team_ref() -> serde_json::Value {
    json!({"kind": "LatticeProvisioner", "name": "team"})
}

fn status_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Requests the emulator answered, all operations.
fn emulator_requests(w: &World) -> u64 {
    w.emu
        .metrics()
        .requests
        .values()
        .flat_map(|m| m.values())
        .sum()
}

fn emulator_agent(w: &World, name: &str) -> Option<agentlattice_emulator::AgentSnapshot> {
    w.emu
        .snapshot()
        .agents
        .into_iter()
        .find(|a| a.name == name && a.revoked_at.is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_editor_is_held_to_the_provisioner_policy() {
    let (mut w, editor) = world().await;
    let team_key = provisioner(&w, TEAM, "team", &["deploy.*"]).await;
    provisioner(&w, OTHER, "billing-team", &["*"]).await;
    let platform: ClusterLatticeProvisioner = serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "ClusterLatticeProvisioner",
        "metadata": {"name": "platform"},
        "spec": {
            "serviceKeySecretRef": {"namespace": TEAM, "name": "team-key"},
            "policy": {"capabilities": ["*"]},
            "namespaces": {"names": [OTHER]},
        },
    }))
    .expect("cluster provisioner");
    Api::<ClusterLatticeProvisioner>::all(w.client.clone())
        .create(&PostParams::default(), &platform)
        .await
        .expect("cluster provisioner created");
    w.start_operator(Options::default()).await;
    wait_provisioner_ready(&w, "team", "True").await;

    let as_editor: Api<LatticeAgent> = Api::namespaced(editor.clone(), TEAM);
    let create = |a: LatticeAgent| {
        let api = as_editor.clone();
        async move {
            api.create(&PostParams::default(), &a)
                .await
                .expect("the editor creates LatticeAgents")
        }
    };

    // Within the policy: registered with the provisioner's own key.
    create(agent("ok", json!({"provisionerRef": team_ref()}))).await;
    let (ok, secret) = w.wait_settled("ok", true).await;
    let status = ok.status.clone().expect("status");
    assert_eq!(
        status.provisioner.as_deref(),
        Some("LatticeProvisioner/payments/team")
    );
    assert_eq!(status.service_key_id.as_deref(), Some(team_key.as_str()));
    let remote = emulator_agent(&w, "payments-ok").expect("registered");
    assert_eq!(
        remote.created_by, team_key,
        "registered with the team's key"
    );
    assert_eq!(
        remote
            .metadata
            .get("lattice.provisioner")
            .map(String::as_str),
        Some("LatticeProvisioner/payments/team")
    );
    assert!(w.whoami_with(&secret).await.is_ok());

    // Refused, each with its rule, a Warning event, and no remote call.
    let before = emulator_requests(&w);
    let refused = [
        (
            "greedy",
            json!({"provisionerRef": team_ref(), "capabilities": ["deploy.staging", "admin.everything"]}),
            "CapabilityNotAllowed",
        ),
        (
            "squatter",
            json!({"provisionerRef": team_ref(), "agentName": "billing-deploy-bot"}),
            "AgentNameNotAllowed",
        ),
        (
            "borrower",
            json!({"provisionerRef": {"kind": "LatticeProvisioner", "name": "billing-team"}}),
            "ProvisionerNotFound",
        ),
        (
            "gatecrasher",
            json!({"provisionerRef": {"kind": "ClusterLatticeProvisioner", "name": "platform"}}),
            "ProvisionerNotAllowed",
        ),
        (
            "default-squatter",
            json!({"agentName": "billing-deploy-bot"}),
            "AgentNameNotAllowed",
        ),
    ];
    for (name, spec, reason) in &refused {
        create(agent(name, spec.clone())).await;
        let a = w.wait_condition(name, "Ready", "False", Some(reason)).await;
        assert!(a.status.and_then(|s| s.agent_id).is_none(), "{name}");
        w.wait_event(name, reason).await;
    }
    // Several resyncs' worth of reconciles later, still nothing at AgentLattice for them, and
    // each said so once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, _, reason) in &refused {
        let events = w.events(name).await;
        let warnings: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect();
        assert_eq!(warnings.len(), 1, "{name}: {events:?}");
        assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
        assert!(w.secret(&format!("{name}-agent-key")).await.is_none());
    }
    assert!(emulator_agent(&w, "billing-deploy-bot").is_none());
    assert_eq!(
        emulator_requests(&w),
        before,
        "no AgentLattice call for a refusal"
    );

    // A capability added later is refused; the agent keeps its previous capabilities.
    as_editor
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"capabilities": ["deploy.staging", "admin.everything"]}}),
            ),
        )
        .await
        .expect("the editor edits");
    w.wait_condition("ok", "Ready", "False", Some("CapabilityNotAllowed"))
        .await;
    assert_eq!(
        emulator_agent(&w, "payments-ok")
            .expect("agent")
            .capabilities,
        ["deploy.staging"]
    );
    // Allowed capabilities change as asked.
    as_editor
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"capabilities": ["deploy.staging", "deploy.production"]}}),
            ),
        )
        .await
        .expect("the editor edits");
    w.wait_condition("ok", "Ready", "True", None).await;
    wait_until("the capability is granted", || async {
        let caps = emulator_agent(&w, "payments-ok")?.capabilities;
        (caps.len() == 2).then_some(())
    })
    .await;

    // The provisioner of a registered agent cannot change (CEL, enforced by the API server).
    let e = as_editor
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"provisionerRef": null}})),
        )
        .await
        .expect_err("immutable");
    assert_eq!(status_code(e), 422);
    let e = w
        .agents()
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"provisionerRef": {"kind": "ClusterLatticeProvisioner", "name": "platform"}}})),
        )
        .await
        .expect_err("immutable, even for the admin");
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            // Upstream's form for a failed root-level rule with reason FieldValueForbidden.
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message
                    .starts_with("LatticeAgent.agentlattice.io \"ok\" is invalid: ")
                    && s.message.contains(
                        "Forbidden: spec.provisionerRef cannot change once the agent is registered"
                    ),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }

    // Provisioners are not the editor's: no create, no edit, no status; reading is allowed.
    let as_editor_provisioners: Api<LatticeProvisioner> = Api::namespaced(editor.clone(), TEAM);
    let mine: LatticeProvisioner = serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeProvisioner",
        "metadata": {"name": "mine", "namespace": TEAM},
        "spec": {"serviceKeySecretRef": {"name": "team-key"}, "policy": {"capabilities": ["*"]}},
    }))
    .expect("provisioner");
    let e = as_editor_provisioners
        .create(&PostParams::default(), &mine)
        .await
        .expect_err("forbidden");
    assert_eq!(status_code(e), 403);
    let widen = Patch::Merge(json!({"spec": {"policy": {"capabilities": ["*"]}}}));
    let e = as_editor_provisioners
        .patch("team", &PatchParams::default(), &widen)
        .await
        .expect_err("forbidden");
    assert_eq!(status_code(e), 403);
    let e = as_editor_provisioners
        .patch_status(
            "team",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {}})),
        )
        .await
        .expect_err("forbidden");
    assert_eq!(status_code(e), 403);
    let e = Api::<ClusterLatticeProvisioner>::all(editor.clone())
        .patch("platform", &PatchParams::default(), &widen)
        .await
        .expect_err("forbidden");
    assert_eq!(status_code(e), 403);
    let seen = as_editor_provisioners
        .get("team")
        .await
        .expect("the editor reads it");
    assert_eq!(seen.spec.policy.capabilities, ["deploy.*"]);

    // The default provisioner still works (its policy from the flags: any capability here).
    create(agent("plain", json!({"capabilities": ["anything.at.all"]}))).await;
    let (plain, _) = w.wait_settled("plain", true).await;
    assert_eq!(
        plain.status.and_then(|s| s.provisioner).as_deref(),
        Some("default")
    );
    assert_eq!(
        emulator_agent(&w, "payments-plain")
            .expect("registered")
            .created_by,
        w.service_key_id
    );
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_service_key_secret_is_never_used() {
    let (mut w, _) = world().await;
    provisioner(&w, TEAM, "team", &["*"]).await;
    // The same Secret without the mark.
    let key = w.emu.create_service_key("unmarked");
    put_key(&w, TEAM, "team-key", &key.api_key, false).await;
    Api::<Secret>::namespaced(w.client.clone(), TEAM)
        .patch(
            "team-key",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"agentlattice.io/service-key": null}}})),
        )
        .await
        .expect("mark removed");
    w.start_operator(Options::default()).await;
    let p = wait_provisioner_ready(&w, "team", "False").await;
    let c = p.status.expect("status").conditions.remove(0);
    assert_eq!(c.reason, "ServiceKeyMissing");
    assert!(c.message.contains("not marked"), "{}", c.message);
    assert!(!c.message.contains("al_svc_"), "{}", c.message);
    w.create(&support::bot(
        "marked-bot",
        "  provisionerRef: {kind: LatticeProvisioner, name: team}",
    ))
    .await;
    w.wait_condition("marked-bot", "Ready", "False", Some("ProvisionerNotReady"))
        .await;
    assert_eq!(emulator_requests(&w), 0, "the unmarked key was never sent");
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_key_replaced_in_place_under_100_agents_disrupts_nothing() {
    let (mut w, _) = world().await;
    let old_key = provisioner(&w, TEAM, "team", &["deploy.*", "rollback.*"]).await;
    w.start_operator(Options::default()).await;
    let before = wait_provisioner_ready(&w, "team", "True").await;
    let old_prefix = before
        .status
        .and_then(|s| s.service_key_prefix)
        .expect("prefix");
    for i in 0..100 {
        w.create(&support::bot(
            &format!("bot-{i:03}"),
            "  provisionerRef: {kind: LatticeProvisioner, name: team}",
        ))
        .await;
    }
    for i in 0..100 {
        w.wait_settled(&format!("bot-{i:03}"), true).await;
    }
    // The provisioner counts them (at its next check: the Secret change below triggers one).

    // The key is replaced in place in its Secret; then the old one is revoked at AgentLattice.
    let new = w.emu.create_service_key("team-2");
    put_key(&w, TEAM, "team-key", &new.api_key, true).await;
    wait_until("the provisioner uses the new key", || async {
        let p = provisioners(&w).get("team").await.ok()?;
        let s = p.status?;
        (s.service_key_prefix.as_deref() == Some(new.key_prefix.as_str())
            && s.agents == Some(100)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(())
    })
    .await;
    assert_ne!(old_prefix, new.key_prefix);
    w.emu.revoke_service_key(&old_key).expect("old key revoked");

    // Zero disruption: every workload's key still works, every agent is still Ready.
    for i in 0..100 {
        let name = format!("bot-{i:03}");
        let a = w.get(&name).await;
        assert_eq!(
            condition(&a, "Ready").map(|c| c.status.clone()).as_deref(),
            Some("True"),
            "{name}"
        );
        let secret = w
            .secret(&format!("{name}-agent-key"))
            .await
            .expect("Secret");
        w.whoami_with(&secret)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // And they are still managed: a rotation now goes through the new key.
    let first = w
        .get("bot-007")
        .await
        .status
        .and_then(|s| s.active_key)
        .expect("key")
        .id;
    w.annotate("bot-007", ROTATE_ANNOTATION, "after-key-change")
        .await;
    wait_until("bot-007 rotated", || async {
        let key = w.get("bot-007").await.status?.active_key?.id;
        (key != first).then_some(())
    })
    .await;
    let minted_by: Vec<Option<String>> = w
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.operation == "mint_key")
        .map(|e| e.actor.id)
        .collect();
    assert_eq!(minted_by, [Some(new.id.clone())], "minted with the new key");
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_service_key_is_reported_once_without_a_retry_storm() {
    let (mut w, _) = world().await;
    let key = provisioner(&w, TEAM, "team", &["deploy.*", "rollback.*"]).await;
    w.start_operator(Options {
        resync: jiff::SignedDuration::from_secs(2),
        ..Options::default()
    })
    .await;
    wait_provisioner_ready(&w, "team", "True").await;
    let names: Vec<String> = (0..5).map(|i| format!("bot-{i}")).collect();
    for name in &names {
        w.create(&support::bot(
            name,
            "  provisionerRef: {kind: LatticeProvisioner, name: team}",
        ))
        .await;
    }
    for name in &names {
        w.wait_settled(name, true).await;
    }
    w.emu.revoke_service_key(&key).expect("revoked");
    // Any call with the key finds out (here a rotation request; the periodic check would too).
    w.annotate("bot-0", ROTATE_ANNOTATION, "1").await;
    let p = wait_provisioner_ready(&w, "team", "False").await;
    let c = p.status.expect("status").conditions.remove(0);
    assert_eq!(c.reason, "ServiceKeyRejected", "{c:?}");
    for name in &names {
        w.wait_condition(name, "Ready", "False", Some("ProvisionerNotReady"))
            .await;
    }
    // Quiet from here: over several resync intervals, no call to AgentLattice at all (the
    // provisioner is checked again only after --service-key-retry, 5 minutes here), and each
    // agent said so once.
    let calls = emulator_requests(&w);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(emulator_requests(&w), calls, "no retry storm");
    for name in &names {
        let said: Vec<_> = w
            .events(name)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ProvisionerNotReady"))
            .collect();
        assert_eq!(said.len(), 1, "{name}: {said:?}");
    }
    // A new key in the Secret brings everything back without a restart.
    let new = w.emu.create_service_key("team-2");
    put_key(&w, TEAM, "team-key", &new.api_key, true).await;
    wait_provisioner_ready(&w, "team", "True").await;
    for name in &names {
        w.wait_condition(name, "Ready", "True", None).await;
    }
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_a_provisioner_halts_its_agents_and_resuming_restores_exactly_those() {
    let (mut w, _) = world().await;
    provisioner(&w, TEAM, "team", &["deploy.*", "rollback.*"]).await;
    w.start_operator(Options::default()).await;
    wait_provisioner_ready(&w, "team", "True").await;
    let team = "  provisionerRef: {kind: LatticeProvisioner, name: team}";
    for name in ["bot-a", "bot-b"] {
        w.ready(&support::bot(name, team)).await;
    }
    // Halted for its own reason, before the incident.
    w.ready(&support::bot("bot-own", team)).await;
    w.agents()
        .patch(
            "bot-own",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspended");
    wait_until("bot-own halted", || async {
        (emulator_agent(&w, &format!("{TEAM}-bot-own"))?.status == EmuStatus::Halted).then_some(())
    })
    .await;
    // Another provisioner's agent (the default one).
    w.ready(&support::bot("bot-default", "")).await;

    let suspend = |on: bool| {
        let api = provisioners(&w);
        async move {
            api.patch(
                "team",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": on}})),
            )
            .await
            .expect("provisioner patched");
        }
    };
    let status_of = |name: &str| emulator_agent(&w, &format!("{TEAM}-{name}")).map(|a| a.status);

    suspend(true).await;
    for name in ["bot-a", "bot-b"] {
        let a = w
            .wait_condition(name, "Ready", "False", Some("ProvisionerSuspended"))
            .await;
        assert!(a.status.expect("status").halted_by_provisioner, "{name}");
        assert_eq!(status_of(name), Some(EmuStatus::Halted), "{name}");
    }
    assert_eq!(status_of("bot-default"), Some(EmuStatus::Active));
    assert!(
        !w.get("bot-own")
            .await
            .status
            .expect("status")
            .halted_by_provisioner
    );
    // Nothing new is registered while suspended.
    w.create(&support::bot("bot-late", team)).await;
    w.wait_condition("bot-late", "Ready", "False", Some("ProvisionerSuspended"))
        .await;
    assert!(emulator_agent(&w, &format!("{TEAM}-bot-late")).is_none());

    suspend(false).await;
    for name in ["bot-a", "bot-b"] {
        w.wait_condition(name, "Ready", "True", None).await;
        assert_eq!(status_of(name), Some(EmuStatus::Active), "{name}");
        assert!(
            !w.get(name)
                .await
                .status
                .expect("status")
                .halted_by_provisioner
        );
    }
    w.wait_settled("bot-late", true).await;
    // The agent halted for its own reason stays halted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_of("bot-own"), Some(EmuStatus::Halted));
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_provisioner_serves_the_namespaces_it_selects_with_its_own_key() {
    let (mut w, editor) = world().await;
    let svc = w.emu.create_service_key("platform");
    put_key(&w, TEAM, "platform-key", &svc.api_key, true).await;
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(w.client.clone());
    namespaces
        .patch(
            TEAM,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"lattice-tenant": "yes"}}})),
        )
        .await
        .expect("namespace labelled");
    let platform: ClusterLatticeProvisioner = serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "ClusterLatticeProvisioner",
        "metadata": {"name": "platform"},
        "spec": {
            "serviceKeySecretRef": {"namespace": TEAM, "name": "platform-key"},
            "policy": {"capabilities": ["observe.*"]},
            "namespaces": {"selector": {"matchLabels": {"lattice-tenant": "yes"}}},
        },
    }))
    .expect("cluster provisioner");
    let clusterwide: Api<ClusterLatticeProvisioner> = Api::all(w.client.clone());
    clusterwide
        .create(&PostParams::default(), &platform)
        .await
        .expect("cluster provisioner created");
    w.start_operator(Options::default()).await;
    let platform_ref = json!({"kind": "ClusterLatticeProvisioner", "name": "platform"});
    Api::<LatticeAgent>::namespaced(editor, TEAM)
        .create(
            &PostParams::default(),
            &agent(
                "watcher",
                json!({"provisionerRef": platform_ref, "capabilities": ["observe.metrics"]}),
            ),
        )
        .await
        .expect("the editor creates it");
    let (a, secret) = w.wait_settled("watcher", true).await;
    assert_eq!(
        a.status.and_then(|s| s.provisioner).as_deref(),
        Some("ClusterLatticeProvisioner/platform")
    );
    assert_eq!(
        emulator_agent(&w, "payments-watcher")
            .expect("registered")
            .created_by,
        svc.id
    );
    assert!(w.whoami_with(&secret).await.is_ok());
    // Its status: Ready, the key's prefix; the agent count at a later check (a change of its
    // Secret's metadata asks for one).
    Api::<Secret>::namespaced(w.client.clone(), TEAM)
        .patch(
            "platform-key",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .expect("touched");
    wait_until("the cluster provisioner reports", || async {
        let s = clusterwide.get("platform").await.ok()?.status?;
        (s.agents == Some(1)
            && s.service_key_prefix.as_deref() == Some(svc.key_prefix.as_str())
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(())
    })
    .await;
    // The label goes: the namespace is no longer allowed; the agent says so at its next
    // reconcile (here an edit), and nothing is called for it.
    namespaces
        .patch(
            TEAM,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"lattice-tenant": null}}})),
        )
        .await
        .expect("label removed");
    w.agents()
        .patch(
            "watcher",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "changed"}})),
        )
        .await
        .expect("edited");
    w.wait_condition("watcher", "Ready", "False", Some("ProvisionerNotAllowed"))
        .await;
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_report_existing_provisioners_as_missing() {
    let (mut w, _) = world().await;
    provisioner(&w, TEAM, "team", &["deploy.*", "rollback.*"]).await;
    w.start_operator(Options::default()).await;
    let team = "  provisionerRef: {kind: LatticeProvisioner, name: team}";
    let names: Vec<String> = (0..20).map(|i| format!("bot-{i:02}")).collect();
    for name in &names {
        w.create(&support::bot(name, team)).await;
    }
    for name in &names {
        w.wait_settled(name, true).await;
    }
    // A restart: every agent is reconciled at once, while the provisioner cache is still
    // listing (its list answered 2 s late).
    w.kill_operator().await;
    w.sim.faults().set_latency(
        kube_sim::Matcher::verb("list").resource("latticeprovisioners"),
        Duration::from_secs(2),
    );
    w.start_operator(Options::default()).await;
    wait_until("every agent reconciled after the restart", || async {
        (support::reconciles(&w.metrics()) >= names.len() as u64).then_some(())
    })
    .await;
    for name in &names {
        let a = w.get(name).await;
        assert_eq!(
            condition(&a, "Ready").map(|c| c.reason.clone()).as_deref(),
            Some("AgentReady"),
            "{name}"
        );
        let reasons = w.event_reasons(name).await;
        assert!(
            !reasons.iter().any(|r| r == "ProvisionerNotFound"),
            "{name}: {reasons:?}"
        );
    }
    w.stop_operator().await;
}
