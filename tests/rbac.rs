//! Least privilege, proven: the chart is installed with `helm install` (Helm 4's own Go code
//! through helm-python-sdk, over TLS with an admin kubeconfig) into kube-sim with RBAC
//! enforcement (and OwnerReferencesPermissionEnforcement) on; then the operator runs exactly as
//! `lattice-operator run` with the arguments of the installed Deployment, authenticated with a
//! token of the chart's ServiceAccount.
//!
//! - A full lifecycle (register, rotate, delete; an annotated Deployment's identity, its restart
//!   on rotation, the identity deleted with the annotation) gets zero forbidden responses, in both
//!   watch modes (kube-sim's audit log).
//! - With watched namespaces, the operator cannot read a Secret it does not own.
//! - Each rule of the chart is needed: with that one rule removed, a named step fails with 403.

#[path = "chart/support.rs"]
mod chart;
mod replica;
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::Patch;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::{AuditRecord, KubeSim};
use lattice_operator::admin::PhaseKind;
use lattice_operator::config::{Args, Command, RunArgs};
use lattice_operator::crd::{ClusterLatticeProvisioner, LatticeProvisioner, ROTATE_ANNOTATION};
use serde_json::{Value, json};
use support::{World, bot, wait_until};

/// The release namespace (the operator's own).
const RELEASE_NS: &str = "lattice-system";
/// The namespace LatticeAgents live in (the watched one in namespace-list mode).
const TEAM_NS: &str = "team-a";
/// A namespace the operator does not watch in namespace-list mode.
const OTHER_NS: &str = "other";
/// The chart's ServiceAccount as a user name.
const OPERATOR_USER: &str = "system:serviceaccount:lattice-system:lattice-operator";
const SERVICE_KEY_SECRET: &str = "agentlattice-service-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ClusterWide,
    Namespaces,
}

/// kube-sim (RBAC on) with the chart installed by Helm, the emulator, the service key Secret.
struct Installed {
    /// `ns` is [`TEAM_NS`]; the client is the admin's.
    w: World,
    /// The Deployment's arguments, as `lattice-operator run` would parse them.
    args: RunArgs,
    /// A client authenticated as the chart's ServiceAccount.
    operator_client: kube::Client,
}

async fn install(mode: Mode) -> Installed {
    let sim = KubeSim::builder()
        .rbac(true)
        .owner_references_permission_enforcement(true);
    let w = World::bare(sim, "rbac-tests", TEAM_NS).await;
    for ns in [RELEASE_NS, TEAM_NS, OTHER_NS] {
        w.create_namespace(ns).await;
    }
    let mut values = json!({
        "agentlattice": {"url": w.emu.base_url()},
        "leaderElection": {"leaseDuration": "5s"},
    });
    if mode == Mode::Namespaces {
        values["watchNamespaces"] = json!([TEAM_NS]);
    }
    let request = json!({
        "op": "install",
        "kubeconfig": w.sim.kubeconfig_path(),
        "values": values,
        "name": chart::RELEASE,
        "namespace": RELEASE_NS,
        // Helm's default release storage: a Secret in the release namespace (written with
        // client-go's protobuf encoding).
        "storage_driver": null,
    });
    let response = tokio::task::spawn_blocking(move || chart::helm(&[request]).remove(0))
        .await
        .expect("the Helm driver ran");
    let Some(ok) = response.get("ok") else {
        panic!("helm install failed: {}", chart::error_message(&response));
    };
    assert_eq!(ok["status"], "deployed", "{}", ok["fields"]);
    let manifest = ok["manifest"].as_str().expect("a manifest").to_owned();
    let release_records = Api::<Secret>::namespaced(w.client.clone(), RELEASE_NS)
        .list(&ListParams::default().labels("owner=helm"))
        .await
        .expect("Helm's release records listed");
    assert_eq!(release_records.items.len(), 1, "Helm stored its release");

    // The service key Secret, as the user creates it (NOTES step 1).
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), RELEASE_NS);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SERVICE_KEY_SECRET},
        "stringData": {"AL_SERVICE_KEY": w.service_key},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("service key Secret created");

    let args = deployment_args(&manifest);
    let token = w
        .sim
        .create_token_for_service_account(RELEASE_NS, "lattice-operator");
    let operator_client = w.sim.client_for_token(&token).expect("a client");
    Installed {
        w,
        args,
        operator_client,
    }
}

/// The installed Deployment's container arguments, parsed by the operator's own parser (only
/// the admin address is moved to a free loopback port).
fn deployment_args(manifest: &str) -> RunArgs {
    let deployment = lattice_operator::yaml::documents(manifest)
        .expect("the manifest is YAML")
        .into_iter()
        .find(|v: &Value| v["kind"] == "Deployment")
        .expect("the manifest has a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["lattice-operator".to_owned()];
    for arg in container["args"].as_array().expect("args") {
        let arg = arg.as_str().expect("a string argument");
        argv.push(if arg.starts_with("--metrics-addr=") {
            "--metrics-addr=127.0.0.1:0".to_owned()
        } else {
            arg.to_owned()
        });
    }
    let args = <Args as clap::Parser>::try_parse_from(&argv).expect("the chart's arguments parse");
    match args.command {
        Command::Run(run) => run,
        other => panic!("the chart runs {other:?}"),
    }
}

fn is_operator(r: &AuditRecord) -> bool {
    r.user == OPERATOR_USER
}

fn forbidden(w: &World) -> Vec<AuditRecord> {
    w.sim
        .audit_log()
        .into_iter()
        .filter(|r| is_operator(r) && (!r.allowed || r.code == 403))
        .collect()
}

async fn lifecycle(mode: Mode) {
    let i = install(mode).await;
    let w = &i.w;
    let r = replica::start(i.operator_client.clone(), i.args.clone(), "rbac-0").await;
    wait_until("the operator is ready", || async {
        let (code, _) = replica::http_get(r.admin, "/readyz").await;
        (code == 200 && r.phase.get() == PhaseKind::Running).then_some(())
    })
    .await;

    let (first, _) = w.ready(&bot("rbac-bot", "")).await;
    let first_key = first.status.and_then(|s| s.active_key).expect("a key").id;
    w.wait_event("rbac-bot", "Registered").await;
    w.annotate("rbac-bot", ROTATE_ANNOTATION, "1").await;
    wait_until("the rotation", || async {
        let s = w.get("rbac-bot").await.status?;
        (s.active_key?.id != first_key && s.retiring_keys.len() == 1).then_some(())
    })
    .await;
    w.wait_event("rbac-bot", "KeyRotated").await;
    w.delete("rbac-bot").await;
    wait_until("the LatticeAgent is gone", || async {
        w.agents()
            .get_opt("rbac-bot")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let agents = w.agents_of_namespace(TEAM_NS);
    assert_eq!(agents.len(), 1);
    assert!(
        agents[0].revoked_at.is_some(),
        "the agent was revoked on deletion"
    );

    // An annotated Deployment: its identity, a restart on rotation, the identity deleted with
    // the annotation.
    create_web(w).await;
    let (web, _) = w.wait_settled("rbac-web", true).await;
    let web_key = web.status.and_then(|s| s.active_key).expect("a key").id;
    w.annotate("rbac-web", ROTATE_ANNOTATION, "1").await;
    wait_until("the restart for the new key", || async {
        let new = w.get("rbac-web").await.status?.active_key?.id;
        (new != web_key && restarted_for(w).await.as_deref() == Some(new.as_str())).then_some(())
    })
    .await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(w.client.clone(), &w.ns);
    deployments
        .patch(
            "rbac-web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"agentlattice.io/capabilities": null}}}),
            ),
        )
        .await
        .expect("annotation removed");
    wait_until("the identity is gone", || async {
        w.agents()
            .get_opt("rbac-web")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    r.terminate().await.expect("a clean stop");

    let log = w.sim.audit_log();
    let ours: Vec<&AuditRecord> = log.iter().filter(|r| is_operator(r)).collect();
    let denied = forbidden(w);
    println!(
        "{mode:?}: {} requests as the operator's ServiceAccount, {} forbidden",
        ours.len(),
        denied.len()
    );
    assert!(
        ours.len() > 20,
        "the operator did work as its ServiceAccount"
    );
    assert!(
        denied.is_empty(),
        "forbidden responses during the lifecycle: {denied:#?}"
    );
    // Every kind of call the lifecycle needs was made as the ServiceAccount.
    for (verb, resource, subresource) in [
        ("get", "customresourcedefinitions", ""),
        ("list", "latticeagents", ""),
        ("watch", "latticeagents", ""),
        ("patch", "latticeagents", ""),
        ("update", "latticeagents", "status"),
        ("list", "secrets", ""),
        ("create", "secrets", ""),
        ("patch", "secrets", ""),
        ("create", "events", ""),
        ("create", "leases", ""),
        ("get", "leases", ""),
        ("update", "leases", ""),
        ("list", "deployments", ""),
        ("watch", "deployments", ""),
        ("patch", "deployments", ""),
        ("delete", "latticeagents", ""),
    ] {
        assert!(
            ours.iter()
                .any(|r| r.verb == verb && r.resource == resource && r.subresource == subresource),
            "no {verb} {resource}/{subresource} as the operator"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_lifecycle_has_no_forbidden_request() {
    lifecycle(Mode::ClusterWide).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_list_lifecycle_has_no_forbidden_request() {
    lifecycle(Mode::Namespaces).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watched_namespaces_the_operator_cannot_read_secrets_it_does_not_own() {
    let i = install(Mode::Namespaces).await;
    let w = &i.w;
    let put = |ns: &'static str, name: &'static str| {
        let client = w.client.clone();
        async move {
            let secret: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {"password": "not-for-the-operator"},
            }))
            .expect("secret");
            Api::<Secret>::namespaced(client, ns)
                .create(&PostParams::default(), &secret)
                .await
                .expect("secret created");
        }
    };
    put(OTHER_NS, "payroll-db").await;
    put(RELEASE_NS, "unrelated").await;
    let as_operator = |ns: &str| Api::<Secret>::namespaced(i.operator_client.clone(), ns);
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other}"),
    };

    // Outside the watched namespaces: nothing.
    let e = as_operator(OTHER_NS)
        .get("payroll-db")
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    let e = as_operator(OTHER_NS)
        .list(&ListParams::default())
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    let e = Api::<Secret>::all(i.operator_client.clone())
        .list(&ListParams::default())
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    // In its own namespace: only the service key, by name.
    let e = as_operator(RELEASE_NS)
        .get("unrelated")
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    // Helm's release record (it holds the chart's values) is not readable either.
    Api::<Secret>::namespaced(w.client.clone(), RELEASE_NS)
        .get("sh.helm.release.v1.lattice-operator.v1")
        .await
        .expect("Helm's release record exists");
    let e = as_operator(RELEASE_NS)
        .get("sh.helm.release.v1.lattice-operator.v1")
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    let e = as_operator(RELEASE_NS)
        .list(&ListParams::default())
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
    as_operator(RELEASE_NS)
        .get(SERVICE_KEY_SECRET)
        .await
        .expect("the service key is readable");
    as_operator(RELEASE_NS)
        .list(&ListParams::default().fields(&format!("metadata.name={SERVICE_KEY_SECRET}")))
        .await
        .expect("the service key is watchable by name");
    // Nor can it write Secrets outside the watched namespaces.
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "planted"},
    }))
    .expect("secret");
    let e = as_operator(OTHER_NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect_err("403");
    assert_eq!(code(e), 403);
}

// ----- every rule is needed ---------------------------------------------------------------------

/// What the operator still manages to do with one rule missing.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// `/readyz` stays 503 in this phase.
    NeverReady(PhaseKind),
    /// Never leads: stays a standby.
    NeverLeads,
    /// The LatticeAgent never gets a status.
    NoStatus,
    /// The agent is registered but its key never reaches a Secret.
    NoSecret,
    /// Everything works except the events.
    NoEvents,
    /// Nothing is registered: the service key cannot be read.
    NothingRegistered,
    /// The annotated Deployment gets no LatticeAgent.
    NoIdentity,
    /// The Deployment is never restarted for its new key.
    NoRestart,
    /// The provisioner never gets a status.
    NoProvisionerStatus,
}

/// One rule of the chart (namespace-list mode), the step that needs it, and what fails without it.
struct Case {
    /// The Role (`namespace`, `name`; no namespace: a ClusterRole).
    role: (Option<&'static str>, &'static str),
    /// Picks the rule out of the role.
    rule: fn(&PolicyRule) -> bool,
    /// The operator's step that needs the rule.
    step: &'static str,
    /// The forbidden request that step makes without it.
    denied: fn(&AuditRecord) -> bool,
    /// What the test sets up for the step to happen.
    setup: Setup,
    effect: Effect,
}

/// What a rule-removal test creates for the operator to work on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Nothing: the step happens at start-up.
    Nothing,
    /// A LatticeAgent.
    Agent,
    /// A Deployment annotated for an identity, its pods reading the key from the environment.
    IdentityFor,
    /// The same, Ready, then rotated: the operator restarts the Deployment.
    Rotated,
    /// A LatticeProvisioner `team` of the watched namespace and a LatticeAgent naming it.
    TeamProvisioner,
    /// A ClusterLatticeProvisioner `platform` listing the watched namespace, and a LatticeAgent
    /// naming it.
    ClusterProvisioner,
    /// The same, selecting the watched namespace by label.
    ClusterProvisionerBySelector,
}

fn has(rule: &PolicyRule, group: &str, resource: &str) -> bool {
    rule.api_groups.iter().flatten().any(|g| g == group)
        && rule.resources.iter().flatten().any(|r| r == resource)
}

fn verbs(rule: &PolicyRule) -> Vec<&str> {
    rule.verbs.iter().map(String::as_str).collect()
}

const CRD_ROLE: (Option<&str>, &str) = (None, "lattice-system-lattice-operator-crd");
const WATCHED_ROLE: (Option<&str>, &str) = (Some(TEAM_NS), "lattice-operator");
const OWN_ROLE: (Option<&str>, &str) = (Some(RELEASE_NS), "lattice-operator-own-namespace");

const CASES: &[Case] = &[
    Case {
        role: CRD_ROLE,
        rule: |r| has(r, "apiextensions.k8s.io", "customresourcedefinitions"),
        step: "check at start-up that the CRD is installed",
        denied: |a| a.verb == "get" && a.resource == "customresourcedefinitions",
        setup: Setup::Nothing,
        effect: Effect::NeverReady(PhaseKind::WaitingForCrd),
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeagents") && verbs(r).contains(&"list"),
        step: "list and watch LatticeAgents (the controller's cache)",
        denied: |a| a.verb == "list" && a.resource == "latticeagents",
        setup: Setup::Nothing,
        effect: Effect::NeverReady(PhaseKind::Running),
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeagents/status"),
        step: "write the LatticeAgent's status",
        denied: |a| a.resource == "latticeagents" && a.subresource == "status",
        setup: Setup::Agent,
        effect: Effect::NoStatus,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeagents/finalizers"),
        step: "create the key Secret owned by its LatticeAgent (blockOwnerDeletion)",
        denied: |a| a.verb == "create" && a.resource == "secrets",
        setup: Setup::Agent,
        effect: Effect::NoSecret,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "", "secrets"),
        step: "list and watch the operator's Secrets (the record cache)",
        denied: |a| a.verb == "list" && a.resource == "secrets" && a.namespace == TEAM_NS,
        setup: Setup::Nothing,
        effect: Effect::NeverReady(PhaseKind::Running),
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "events.k8s.io", "events"),
        step: "publish the Registered event",
        denied: |a| a.verb == "create" && a.resource == "events",
        setup: Setup::Agent,
        effect: Effect::NoEvents,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeagents") && verbs(r) == ["create", "delete"],
        step: "create the identity of an annotated Deployment (an apply that creates)",
        denied: |a| a.verb == "patch" && a.resource == "latticeagents" && a.code == 403,
        setup: Setup::IdentityFor,
        effect: Effect::NoIdentity,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "apps", "deployments") && verbs(r).contains(&"list"),
        step: "list and watch the workloads (consumers of the keys)",
        denied: |a| a.verb == "list" && a.resource == "deployments",
        setup: Setup::Nothing,
        effect: Effect::NeverReady(PhaseKind::Running),
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "apps", "deployments") && verbs(r) == ["patch"],
        step: "restart a Deployment for its new key",
        denied: |a| a.verb == "patch" && a.resource == "deployments",
        setup: Setup::Rotated,
        effect: Effect::NoRestart,
    },
    Case {
        role: CRD_ROLE,
        rule: |r| has(r, "agentlattice.io", "clusterlatticeprovisioners"),
        step: "list and watch ClusterLatticeProvisioners (resolve spec.provisionerRef)",
        denied: |a| a.verb == "list" && a.resource == "clusterlatticeprovisioners",
        setup: Setup::ClusterProvisioner,
        effect: Effect::NothingRegistered,
    },
    Case {
        role: CRD_ROLE,
        rule: |r| has(r, "agentlattice.io", "clusterlatticeprovisioners/status"),
        step: "write a ClusterLatticeProvisioner's status",
        denied: |a| {
            a.verb == "patch"
                && a.resource == "clusterlatticeprovisioners"
                && a.subresource == "status"
        },
        setup: Setup::ClusterProvisioner,
        effect: Effect::NoProvisionerStatus,
    },
    Case {
        role: CRD_ROLE,
        rule: |r| has(r, "", "namespaces"),
        step: "read a namespace's labels for a provisioner's namespace selector",
        denied: |a| a.verb == "get" && a.resource == "namespaces",
        setup: Setup::ClusterProvisionerBySelector,
        effect: Effect::NothingRegistered,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeprovisioners"),
        step: "list and watch LatticeProvisioners (resolve spec.provisionerRef)",
        denied: |a| a.verb == "list" && a.resource == "latticeprovisioners",
        setup: Setup::TeamProvisioner,
        effect: Effect::NothingRegistered,
    },
    Case {
        role: WATCHED_ROLE,
        rule: |r| has(r, "agentlattice.io", "latticeprovisioners/status"),
        step: "write a LatticeProvisioner's status",
        denied: |a| {
            a.verb == "patch" && a.resource == "latticeprovisioners" && a.subresource == "status"
        },
        setup: Setup::TeamProvisioner,
        effect: Effect::NoProvisionerStatus,
    },
    Case {
        role: OWN_ROLE,
        rule: |r| has(r, "", "secrets"),
        step: "read the service key",
        denied: |a| a.resource == "secrets" && a.namespace == RELEASE_NS,
        setup: Setup::Agent,
        effect: Effect::NothingRegistered,
    },
    Case {
        role: OWN_ROLE,
        rule: |r| has(r, "coordination.k8s.io", "leases") && verbs(r) == ["create"],
        step: "create the leader-election Lease",
        denied: |a| a.verb == "create" && a.resource == "leases",
        setup: Setup::Nothing,
        effect: Effect::NeverLeads,
    },
    Case {
        role: OWN_ROLE,
        rule: |r| has(r, "coordination.k8s.io", "leases") && verbs(r) != ["create"],
        step: "read and renew the leader-election Lease",
        denied: |a| a.verb == "get" && a.resource == "leases",
        setup: Setup::Nothing,
        effect: Effect::NeverLeads,
    },
];

/// Removes the one rule `case.rule` picks from its role (as the cluster admin).
async fn remove_rule(w: &World, case: &Case) {
    let pick = |rules: &mut Vec<PolicyRule>| {
        let before = rules.len();
        rules.retain(|r| !(case.rule)(r));
        assert_eq!(
            before - rules.len(),
            1,
            "{}: exactly one rule removed",
            case.step
        );
    };
    match case.role {
        (None, name) => {
            let api: Api<ClusterRole> = Api::all(w.client.clone());
            let mut role = api.get(name).await.expect("the ClusterRole exists");
            pick(role.rules.get_or_insert_with(Vec::new));
            api.replace(name, &PostParams::default(), &role)
                .await
                .expect("ClusterRole replaced");
        }
        (Some(ns), name) => {
            let api: Api<Role> = Api::namespaced(w.client.clone(), ns);
            let mut role = api.get(name).await.expect("the Role exists");
            pick(role.rules.get_or_insert_with(Vec::new));
            api.replace(name, &PostParams::default(), &role)
                .await
                .expect("Role replaced");
        }
    }
}

async fn without_the_rule(index: usize) {
    let case = &CASES[index];
    let i = install(Mode::Namespaces).await;
    let w = &i.w;
    remove_rule(w, case).await;
    let r = replica::start(i.operator_client.clone(), i.args.clone(), "rbac-0").await;
    if case.setup != Setup::Nothing {
        wait_until("the operator leads", || async {
            (r.phase.get() == PhaseKind::Running).then_some(())
        })
        .await;
    }
    match case.setup {
        Setup::Nothing => {}
        Setup::Agent => {
            w.create(&bot("rbac-bot", "")).await;
        }
        Setup::IdentityFor => create_web(w).await,
        Setup::Rotated => {
            create_web(w).await;
            w.wait_ready("rbac-web").await;
            w.annotate("rbac-web", ROTATE_ANNOTATION, "1").await;
        }
        Setup::TeamProvisioner
        | Setup::ClusterProvisioner
        | Setup::ClusterProvisionerBySelector => provisioned(w, case.setup).await,
    }
    let step = case.step;
    let denied = wait_until(&format!("403 at the step \"{step}\""), || async {
        forbidden(w).into_iter().find(|a| (case.denied)(a))
    })
    .await;
    println!(
        "without the rule for \"{step}\": 403 on {} {}/{} in {:?}",
        denied.verb, denied.resource, denied.subresource, denied.namespace
    );
    // Give the operator time to get as far as it can; the step stays failed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = replica::http_get(r.admin, "/readyz").await;
    match case.effect {
        Effect::NeverReady(phase) => {
            assert_eq!(code, 503, "{step}: {body}");
            assert_eq!(r.phase.get(), phase, "{step}");
        }
        Effect::NeverLeads => {
            assert_eq!(r.phase.get(), PhaseKind::Standby, "{step}");
            assert_eq!(w.emu.request_count("register"), 0);
        }
        Effect::NoStatus => {
            assert!(w.get("rbac-bot").await.status.is_none(), "{step}");
        }
        Effect::NoSecret => {
            assert!(w.secret("rbac-bot-agent-key").await.is_none(), "{step}");
            let a = w.get("rbac-bot").await;
            let ready = support::condition(&a, "Ready").map(|c| c.status.clone());
            assert_ne!(ready.as_deref(), Some("True"), "{step}");
        }
        Effect::NoEvents => {
            w.wait_ready("rbac-bot").await;
            assert!(w.events("rbac-bot").await.is_empty(), "{step}");
        }
        Effect::NothingRegistered => {
            assert_eq!(w.emu.request_count("register"), 0, "{step}");
            let a = w.get("rbac-bot").await;
            let ready = support::condition(&a, "Ready").map(|c| c.status.clone());
            assert_ne!(ready.as_deref(), Some("True"), "{step}");
        }
        Effect::NoIdentity => {
            assert!(
                w.agents()
                    .get_opt("rbac-web")
                    .await
                    .expect("read")
                    .is_none(),
                "{step}"
            );
            assert_eq!(w.emu.request_count("register"), 0, "{step}");
        }
        Effect::NoRestart => {
            assert_eq!(restarted_for(w).await, None, "{step}");
            w.wait_event("rbac-web", "RolloutRestartFailed").await;
        }
        Effect::NoProvisionerStatus => {
            let status = if case.setup == Setup::TeamProvisioner {
                Api::<LatticeProvisioner>::namespaced(w.client.clone(), TEAM_NS)
                    .get("team")
                    .await
                    .expect("the provisioner")
                    .status
            } else {
                Api::<ClusterLatticeProvisioner>::all(w.client.clone())
                    .get("platform")
                    .await
                    .expect("the provisioner")
                    .status
            };
            assert!(status.is_none(), "{step}: {status:?}");
        }
    }
    r.kill().await;
}

macro_rules! rule_is_needed {
    ($($name:ident => $index:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            without_the_rule($index).await;
        }
    )*};
}

rule_is_needed! {
    needed_crd_get => 0,
    needed_latticeagents => 1,
    needed_latticeagents_status => 2,
    needed_latticeagents_finalizers => 3,
    needed_secrets => 4,
    needed_events => 5,
    needed_latticeagents_create_delete => 6,
    needed_workloads_list_watch => 7,
    needed_workloads_patch => 8,
    needed_cluster_provisioners => 9,
    needed_cluster_provisioners_status => 10,
    needed_namespaces_get => 11,
    needed_provisioners => 12,
    needed_provisioners_status => 13,
    needed_service_key_secret => 14,
    needed_lease_create => 15,
    needed_lease_get_update => 16,
}

/// A provisioner with its own marked service key Secret in the watched namespace, and the
/// LatticeAgent `rbac-bot` naming it (docs/tenancy.md).
async fn provisioned(w: &World, setup: Setup) {
    let svc = w.emu.create_service_key("rbac-provisioner");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "provisioner-key", "labels": {"agentlattice.io/service-key": "true"}},
        "stringData": {"AL_SERVICE_KEY": svc.api_key},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(w.client.clone(), TEAM_NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("provisioner key Secret");
    let reference = if setup == Setup::TeamProvisioner {
        let p: LatticeProvisioner = serde_json::from_value(json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeProvisioner",
            "metadata": {"name": "team", "namespace": TEAM_NS},
            "spec": {"serviceKeySecretRef": {"name": "provisioner-key"},
                     "policy": {"capabilities": ["*"]}},
        }))
        .expect("provisioner");
        Api::<LatticeProvisioner>::namespaced(w.client.clone(), TEAM_NS)
            .create(&PostParams::default(), &p)
            .await
            .expect("provisioner created");
        "{kind: LatticeProvisioner, name: team}"
    } else {
        let namespaces = if setup == Setup::ClusterProvisionerBySelector {
            let label = Patch::Merge(json!({"metadata": {"labels": {"lattice-tenant": "yes"}}}));
            Api::<k8s_openapi::api::core::v1::Namespace>::all(w.client.clone())
                .patch(TEAM_NS, &kube::api::PatchParams::default(), &label)
                .await
                .expect("namespace labelled");
            json!({"selector": {"matchLabels": {"lattice-tenant": "yes"}}})
        } else {
            json!({"names": [TEAM_NS]})
        };
        let p: ClusterLatticeProvisioner = serde_json::from_value(json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "ClusterLatticeProvisioner",
            "metadata": {"name": "platform"},
            "spec": {"serviceKeySecretRef": {"namespace": TEAM_NS, "name": "provisioner-key"},
                     "policy": {"capabilities": ["*"]}, "namespaces": namespaces},
        }))
        .expect("provisioner");
        Api::<ClusterLatticeProvisioner>::all(w.client.clone())
            .create(&PostParams::default(), &p)
            .await
            .expect("provisioner created");
        "{kind: ClusterLatticeProvisioner, name: platform}"
    };
    w.create(&bot("rbac-bot", &format!("  provisionerRef: {reference}")))
        .await;
}

/// A Deployment annotated for an identity (`rbac-web`), its pods reading the key from the
/// environment.
async fn create_web(w: &World) {
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rbac-web", "annotations": {
            "agentlattice.io/capabilities": "deploy.staging"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rbac-web"}},
                 "template": {"metadata": {"labels": {"app": "rbac-web"}}, "spec": {"containers": [
                     {"name": "app", "image": "example/web:1",
                      "envFrom": [{"secretRef": {"name": "rbac-web-agent-key"}}]}]}}},
    }))
    .expect("deployment");
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("Deployment created");
}

/// The key id `rbac-web` was last restarted for.
async fn restarted_for(w: &World) -> Option<String> {
    let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), &w.ns)
        .get("rbac-web")
        .await
        .expect("the Deployment");
    d.spec?
        .template
        .metadata?
        .annotations?
        .get("agentlattice.io/restarted-for")
        .cloned()
}

#[test]
fn the_table_covers_every_rule_of_the_chart() {
    // Every rule the chart grants the operator in namespace-list mode has exactly one case.
    let r = chart::render(json!({"watchNamespaces": [TEAM_NS]}));
    let mut covered = 0;
    for (kind, role) in [
        ("ClusterRole", CRD_ROLE),
        ("Role", WATCHED_ROLE),
        ("Role", OWN_ROLE),
    ] {
        let object = r
            .objects
            .iter()
            .find(|o| {
                o.kind() == kind
                    && o.name() == role.1
                    && (role.0.is_none() || Some(o.namespace()) == role.0)
            })
            .unwrap_or_else(|| panic!("{kind} {role:?} is rendered"));
        let rules: Vec<PolicyRule> =
            serde_json::from_value(object.value["rules"].clone()).expect("rules");
        for rule in &rules {
            let cases: Vec<&Case> = CASES
                .iter()
                .filter(|c| c.role == role && (c.rule)(rule))
                .collect();
            assert_eq!(
                cases.len(),
                1,
                "{kind} {role:?}: rule {rule:?} has no single case"
            );
            covered += 1;
        }
    }
    assert_eq!(covered, CASES.len(), "every case matches a rendered rule");
}
