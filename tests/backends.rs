//! The operator's lifecycle, rotation, out-of-band revocation, deletion and crash behaviour
//! against both backends — AgentLattice and Alter (docs/alter.md) — from one test body each.
//!
//! Every body is written against [`Remote`], the test's neutral view of whichever emulator holds
//! the agents (its state snapshot, authenticating with a key as a workload would, revoking out of
//! band as an administrator would), and is instantiated once per backend by `both!`. Each world
//! has one `LatticeProvisioner`, `team`, whose backend is the one under test; the LatticeAgents
//! name it. Nothing in a body says which backend it runs against, except through [`Remote`].

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lattice_operator::crd::{
    COMPROMISED_ANNOTATION, LatticeAgent, LatticeProvisioner, REREGISTER_ANNOTATION,
    ROTATE_ANNOTATION,
};
use lattice_operator::secret::{
    KEY_ID_ANNOTATION, MINT_STARTED_AT_ANNOTATION, RETIRING_KEYS_ANNOTATION,
};
use serde_json::json;
use support::failpoints::{FailScript, occurrences};
use support::{Options, World, annotations, condition, wait_until};

const NAME: &str = "deploy-bot";
const PROVISIONER: &str = "team";

// ----- the two backends, as a test sees them ----------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AgentLattice,
    Alter,
}

/// The Alter side of a world: its emulator, the app, and the app key (test-only plaintext).
struct AlterSide {
    emu: alter_emulator::Emulator,
    app_id: String,
    app_key: String,
}

/// The backend under test, as a test sees it.
struct Remote {
    kind: Kind,
    /// The AgentLattice emulator (the world's; the default provisioner's backend either way).
    al: Arc<agentlattice_emulator::Emulator>,
    al_service_key: String,
    alter: Option<AlterSide>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Active,
    Halted,
    Revoked,
}

/// An agent as either emulator knows it.
#[derive(Clone, Debug)]
struct Agent {
    id: String,
    status: Status,
    capabilities: Vec<String>,
    description: Option<String>,
    uid: Option<String>,
    /// Ids of the keys that still authenticate, in mint order.
    live_keys: Vec<String>,
    /// Ids of every key, in mint order.
    keys: Vec<String>,
}

impl Remote {
    async fn new(kind: Kind, w: &World) -> Remote {
        let alter = match kind {
            Kind::AgentLattice => None,
            Kind::Alter => {
                let emu =
                    alter_emulator::Emulator::start(alter_emulator::EmulatorConfig::default())
                        .await
                        .expect("the Alter emulator starts");
                let app = emu.create_app("payments");
                let key = emu
                    .create_app_key(&app.id, "lattice-operator", None)
                    .expect("an app key");
                Some(AlterSide {
                    emu,
                    app_id: app.id,
                    app_key: key.api_key,
                })
            }
        };
        Remote {
            kind,
            al: Arc::clone(&w.emu),
            al_service_key: w.service_key.clone(),
            alter,
        }
    }

    fn alter(&self) -> &AlterSide {
        self.alter.as_ref().expect("an Alter world")
    }

    /// The Secret field a workload reads its key from.
    fn key_field(&self) -> &'static str {
        match self.kind {
            Kind::AgentLattice => "AL_API_KEY",
            Kind::Alter => "ALTER_API_KEY",
        }
    }

    /// The provisioner `team` of `ns` and its marked key Secret.
    async fn install_provisioner(&self, w: &World) {
        let (field, key, backend) = match self.kind {
            Kind::AgentLattice => (
                "AL_SERVICE_KEY",
                self.al_service_key.clone(),
                json!({"baseUrl": self.al.base_url()}),
            ),
            Kind::Alter => (
                "ALTER_APP_KEY",
                self.alter().app_key.clone(),
                json!({
                    "baseUrl": self.alter().emu.base_url(),
                    "alter": {"appId": self.alter().app_id},
                }),
            ),
        };
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "team-key", "labels": {"agentlattice.io/service-key": "true"}},
            "stringData": {field: key},
        }))
        .expect("secret");
        w.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .expect("provisioner key Secret");
        let mut spec = json!({
            "serviceKeySecretRef": {"name": "team-key", "key": field},
            "policy": {"capabilities": ["*"]},
        });
        for (k, v) in backend.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        let p: LatticeProvisioner = serde_json::from_value(json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeProvisioner",
            "metadata": {"name": PROVISIONER, "namespace": w.ns},
            "spec": spec,
        }))
        .expect("provisioner");
        Api::<LatticeProvisioner>::namespaced(w.client.clone(), &w.ns)
            .create(&PostParams::default(), &p)
            .await
            .expect("provisioner created");
    }

    /// Every agent, revoked ones included, in creation order.
    fn agents(&self) -> Vec<Agent> {
        match self.kind {
            Kind::AgentLattice => self
                .al
                .snapshot()
                .agents
                .into_iter()
                .map(|a| {
                    let mut capabilities = a.capabilities.clone();
                    capabilities.sort();
                    Agent {
                        status: match a.status {
                            agentlattice_emulator::AgentStatus::Active => Status::Active,
                            agentlattice_emulator::AgentStatus::Halted => Status::Halted,
                            agentlattice_emulator::AgentStatus::Revoked => Status::Revoked,
                        },
                        live_keys: a.live_keys().map(|k| k.key_id.clone()).collect(),
                        keys: a.keys.iter().map(|k| k.key_id.clone()).collect(),
                        uid: a.metadata.get("k8s.uid").cloned(),
                        description: a.description.clone(),
                        capabilities,
                        id: a.id,
                    }
                })
                .collect(),
            Kind::Alter => self
                .alter()
                .emu
                .snapshot()
                .agents
                .into_iter()
                .map(|a| {
                    let mut capabilities: Vec<String> = a
                        .agent
                        .scopes
                        .iter()
                        .flat_map(|(provider, scopes)| {
                            scopes.iter().map(move |s| format!("{provider}:{s}"))
                        })
                        .collect();
                    capabilities.sort();
                    Agent {
                        status: match a.agent.status {
                            alter_emulator::AgentStatus::Active => Status::Active,
                            alter_emulator::AgentStatus::Inactive => Status::Halted,
                            alter_emulator::AgentStatus::Revoked => Status::Revoked,
                        },
                        live_keys: a.live_keys().map(|k| k.key.key_id.clone()).collect(),
                        keys: a.keys.iter().map(|k| k.key.key_id.clone()).collect(),
                        uid: a
                            .agent
                            .metadata
                            .get("k8s.uid")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                        description: a.agent.display_name.clone(),
                        capabilities,
                        id: a.agent.id,
                    }
                })
                .collect(),
        }
    }

    fn agent(&self, id: &str) -> Option<Agent> {
        self.agents().into_iter().find(|a| a.id == id)
    }

    fn live_agents(&self) -> Vec<Agent> {
        self.agents()
            .into_iter()
            .filter(|a| a.status != Status::Revoked)
            .collect()
    }

    /// Which agent `key` authenticates as, as a workload would call with it (`whoami` at
    /// AgentLattice, `/sdk/agents/me` at Alter); `None` when the key is refused.
    async fn authenticates_as(&self, key: &str) -> Option<String> {
        match self.kind {
            Kind::AgentLattice => {
                let key = agentlattice::AgentKey::new(key.to_owned()).ok()?;
                let client = agentlattice::AgentClient::new(
                    &agentlattice::ClientConfig::new(self.al.base_url()),
                    key,
                )
                .ok()?;
                client.whoami().await.ok().map(|w| w.config_id)
            }
            Kind::Alter => {
                let key = alter::AgentKey::new(key.to_owned()).ok()?;
                let client = alter::AgentClient::new(
                    &alter::ClientConfig::new(self.alter().emu.base_url()),
                    key,
                )
                .ok()?;
                client.me().await.ok().map(|me| me.agent.id)
            }
        }
    }

    /// Revokes an agent as an administrator would, outside the operator.
    async fn revoke_out_of_band(&self, agent_id: &str) {
        match self.kind {
            Kind::AgentLattice => {
                let key: agentlattice::ServiceKey =
                    self.al_service_key.parse().expect("service key");
                agentlattice::ProvisionerClient::new(
                    &agentlattice::ClientConfig::new(self.al.base_url()),
                    key,
                )
                .expect("client")
                .revoke_agent(agent_id)
                .await
                .expect("revoked");
            }
            Kind::Alter => {
                let key: alter::AppKey = self.alter().app_key.parse().expect("app key");
                alter::AppClient::new(&alter::ClientConfig::new(self.alter().emu.base_url()), key)
                    .expect("client")
                    .delete_agent(agent_id)
                    .await
                    .expect("revoked");
            }
        }
    }

    /// The operations the backend served so far (its own names), but the agent-side ones.
    fn operations_served(&self) -> Vec<String> {
        match self.kind {
            Kind::AgentLattice => self
                .al
                .metrics()
                .requests
                .keys()
                .filter(|op| op.as_str() != "whoami")
                .cloned()
                .collect(),
            Kind::Alter => self
                .alter()
                .emu
                .metrics()
                .requests
                .keys()
                .filter(|op| op.as_str() != "me")
                .cloned()
                .collect(),
        }
    }

    /// The backend will carry out the next call of `operation` and drop its response (the
    /// connection closes without an answer).
    fn drop_next_response(&self, operation: &str) {
        match self.kind {
            Kind::AgentLattice => {
                self.al
                    .set_faults(agentlattice_emulator::FaultConfig::new().route(
                        operation,
                        agentlattice_emulator::RouteFaults::drop_response_next(1),
                    ))
            }
            Kind::Alter => self
                .alter()
                .emu
                .set_faults(alter_emulator::FaultConfig::new().route(
                    operation,
                    alter_emulator::RouteFaults::drop_response_next(1),
                )),
        }
    }

    /// How many responses of `operation` were dropped.
    fn dropped(&self, operation: &str) -> u64 {
        match self.kind {
            Kind::AgentLattice => self.al.metrics().dropped.get(operation).copied(),
            Kind::Alter => self.alter().emu.metrics().dropped.get(operation).copied(),
        }
        .unwrap_or(0)
    }

    /// How many times the operator asked the backend to create an agent.
    fn registrations(&self) -> u64 {
        match self.kind {
            Kind::AgentLattice => self.al.request_count("register"),
            Kind::Alter => self.alter().emu.request_count("create_agent"),
        }
    }
}

/// A world for `kind`: kube-sim, the emulators, the provisioner `team`, and an operator.
async fn world(kind: Kind, test: &str, options: Options) -> (World, Remote) {
    let tag = match kind {
        Kind::AgentLattice => "al",
        Kind::Alter => "alter",
    };
    let mut w = World::start(&format!("{}-{tag}", test.replace('_', "-"))).await;
    let remote = Remote::new(kind, &w).await;
    remote.install_provisioner(&w).await;
    w.start_operator(options).await;
    (w, remote)
}

/// The test LatticeAgent, naming the provisioner. Capabilities are `provider:scope`, which both
/// backends take (Alter needs the provider).
fn manifest(extra_spec: &str) -> String {
    format!(
        "apiVersion: agentlattice.io/v1alpha1\n\
         kind: LatticeAgent\n\
         metadata: {{name: {NAME}}}\n\
         spec:\n  \
         description: Deploys the payments service\n  \
         capabilities: [\"github:repo:read\", \"github:deployments:write\"]\n  \
         provisionerRef: {{kind: LatticeProvisioner, name: {PROVISIONER}}}\n\
         {extra_spec}\n"
    )
}

/// A short grace period, so that a rotation settles within seconds.
const SHORT_GRACE: &str = "  rotation: {gracePeriod: 2s, maxGracePeriod: 5s}";

/// The key in `secret` under the backend's field name.
fn key_in(remote: &Remote, secret: &Secret) -> Option<String> {
    let raw = secret.data.as_ref()?.get(remote.key_field())?;
    String::from_utf8(raw.0.clone()).ok()
}

async fn merge_spec(w: &World, spec: serde_json::Value) {
    w.agents()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

/// The invariant after settling, in the backend's terms: one live agent linked to the resource,
/// the Secret's key authenticates as it, and it is the only live key.
async fn check_settled(w: &World, remote: &Remote, what: &str) -> (LatticeAgent, Secret, Agent) {
    let (a, secret) = w.wait_settled(NAME, true).await;
    let uid = a.metadata.uid.clone().expect("uid");
    let mine: Vec<Agent> = remote
        .live_agents()
        .into_iter()
        .filter(|x| x.uid.as_deref() == Some(uid.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{what}: one live agent: {mine:#?}");
    let agent = mine[0].clone();
    let status = a.status.clone().expect("status");
    assert_eq!(
        status.agent_id.as_deref(),
        Some(agent.id.as_str()),
        "{what}"
    );
    let key = key_in(remote, &secret).expect("the Secret holds the key");
    assert_eq!(
        remote.authenticates_as(&key).await.as_deref(),
        Some(agent.id.as_str()),
        "{what}: the Secret's key authenticates as the agent"
    );
    let key_id = annotations(&secret)
        .get(KEY_ID_ANNOTATION)
        .cloned()
        .expect("key id");
    assert_eq!(
        agent.live_keys,
        vec![key_id],
        "{what}: only the Secret's key is live"
    );
    (a, secret, agent)
}

/// Instantiates an `async fn(Kind)` test body once per backend.
macro_rules! both {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn agentlattice() {
                super::$body(super::Kind::AgentLattice).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn alter() {
                super::$body(super::Kind::Alter).await;
            }
        }
    };
}

// ----- lifecycle ----------------------------------------------------------------------------------

both!(lifecycle);
/// Registration → Secret under the backend's names → capability and description drift → suspend →
/// resume → deletion revokes the agent.
async fn lifecycle(kind: Kind) {
    let (w, remote) = world(kind, "lifecycle", Options::default()).await;
    w.create(&manifest("")).await;
    let (a, secret, agent) = check_settled(&w, &remote, "registered").await;
    let data: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
    let prefix = remote.key_field().trim_end_matches("API_KEY");
    assert!(
        data.iter().all(|k| k.starts_with(prefix)),
        "the Secret carries the backend's names only: {data:?}"
    );
    assert_eq!(data.len(), 3, "{data:?}");
    assert_eq!(
        agent.capabilities,
        ["github:deployments:write", "github:repo:read"]
    );
    assert_eq!(
        agent.description.as_deref(),
        Some("Deploys the payments service")
    );
    let status = a.status.expect("status");
    assert_eq!(
        status.provisioner,
        Some(format!("LatticeProvisioner/{}/{PROVISIONER}", w.ns))
    );
    assert_eq!(remote.registrations(), 1);

    // Drift: the spec wins.
    merge_spec(
        &w,
        json!({"capabilities": ["github:repo:read", "slack:chat:write"], "description": "Deploys"}),
    )
    .await;
    wait_until("capabilities and description updated", || async {
        let a = remote.agent(&agent.id)?;
        (a.capabilities == ["github:repo:read", "slack:chat:write"]
            && a.description.as_deref() == Some("Deploys"))
        .then_some(())
    })
    .await;

    // Suspend halts the agent; resume brings it back; the key is the same throughout.
    merge_spec(&w, json!({"suspend": true})).await;
    wait_until("suspended", || async {
        (remote.agent(&agent.id)?.status == Status::Halted).then_some(())
    })
    .await;
    merge_spec(&w, json!({"suspend": false})).await;
    wait_until("resumed", || async {
        (remote.agent(&agent.id)?.status == Status::Active).then_some(())
    })
    .await;
    let (_, secret_after, _) = check_settled(&w, &remote, "resumed").await;
    assert!(
        key_in(&remote, &secret_after) == key_in(&remote, &secret),
        "the same key (not printed)"
    );
    assert_eq!(remote.registrations(), 1, "never registered twice");

    // Deletion revokes the agent (its keys with it) and the resource goes.
    w.delete(NAME).await;
    wait_until("the LatticeAgent is gone", || async {
        w.agents().get_opt(NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        remote.agent(&agent.id).map(|a| a.status),
        Some(Status::Revoked)
    );
    let key = key_in(&remote, &secret).expect("key");
    assert_eq!(remote.authenticates_as(&key).await, None, "the key is dead");
}

// ----- rotation -----------------------------------------------------------------------------------

both!(rotation);
/// `agentlattice.io/rotate`: a new key in the Secret, the old one revoked after the grace period
/// (unused), exactly one live key at the end; `compromised`: the old key revoked at once.
async fn rotation(kind: Kind) {
    let (w, remote) = world(kind, "rotation", Options::default()).await;
    w.create(&manifest(SHORT_GRACE)).await;
    let (_, first, agent) = check_settled(&w, &remote, "registered").await;
    let first_key = key_in(&remote, &first).expect("key");
    let first_id = annotations(&first)[KEY_ID_ANNOTATION].clone();

    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    let second = wait_until("a new key in the Secret", || async {
        let s = w.secret(&format!("{NAME}-agent-key")).await?;
        (annotations(&s).get(KEY_ID_ANNOTATION) != Some(&first_id)).then_some(s)
    })
    .await;
    let second_key = key_in(&remote, &second).expect("key");
    assert_eq!(
        remote.authenticates_as(&second_key).await.as_deref(),
        Some(agent.id.as_str())
    );
    let (a, _, settled) = check_settled(&w, &remote, "rotated").await;
    assert_eq!(settled.id, agent.id, "the same agent");
    assert_eq!(settled.keys.len(), 2, "one key minted");
    assert_eq!(remote.authenticates_as(&first_key).await, None);
    assert_eq!(
        a.status.expect("status").handled.rotate.as_deref(),
        Some("r1")
    );

    let second_id = annotations(&second)[KEY_ID_ANNOTATION].clone();
    w.annotate(NAME, COMPROMISED_ANNOTATION, "c1").await;
    wait_until("a third key in the Secret", || async {
        let s = w.secret(&format!("{NAME}-agent-key")).await?;
        (annotations(&s).get(KEY_ID_ANNOTATION) != Some(&second_id)).then_some(())
    })
    .await;
    let (_, third, settled) = check_settled(&w, &remote, "compromised").await;
    // (Compared, never printed: these are keys.)
    assert!(key_in(&remote, &third) != Some(second_key.clone()));
    assert_eq!(remote.authenticates_as(&second_key).await, None);
    assert_eq!(settled.keys.len(), 3);
    assert_eq!(remote.registrations(), 1);
}

// ----- out-of-band revocation ---------------------------------------------------------------------

both!(revoked_out_of_band);
/// An agent revoked by an administrator is reported (`AgentRevokedExternally`), not silently
/// re-registered; `agentlattice.io/reregister` registers a new one.
async fn revoked_out_of_band(kind: Kind) {
    let options = Options {
        resync: SignedDuration::from_millis(500),
        ..Default::default()
    };
    let (w, remote) = world(kind, "revoked", options).await;
    w.create(&manifest("")).await;
    let (_, _, agent) = check_settled(&w, &remote, "registered").await;

    remote.revoke_out_of_band(&agent.id).await;
    w.wait_condition(NAME, "Ready", "False", Some("AgentRevokedExternally"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(remote.registrations(), 1, "not re-registered unasked");

    w.annotate(NAME, REREGISTER_ANNOTATION, "after-incident-42")
        .await;
    let (_, _, fresh) = check_settled(&w, &remote, "re-registered").await;
    assert_ne!(fresh.id, agent.id);
    assert_eq!(remote.registrations(), 2);
}

// ----- deletion policies ------------------------------------------------------------------------

both!(retain_keeps_the_agent);
/// `deletionPolicy: Retain`: the resource goes, the agent and its key stay.
async fn retain_keeps_the_agent(kind: Kind) {
    let (w, remote) = world(kind, "retain", Options::default()).await;
    w.create(&manifest("  deletionPolicy: Retain")).await;
    let (_, secret, agent) = check_settled(&w, &remote, "registered").await;
    w.delete(NAME).await;
    wait_until("the LatticeAgent is gone", || async {
        w.agents().get_opt(NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        remote.agent(&agent.id).map(|a| a.status),
        Some(Status::Active)
    );
    let key = key_in(&remote, &secret).expect("key");
    assert_eq!(
        remote.authenticates_as(&key).await.as_deref(),
        Some(agent.id.as_str())
    );
}

// ----- crashes at every fail point ----------------------------------------------------------------

/// What a crash scenario does after the world is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Register,
    Rotate,
    Delete,
}

/// One run of `scenario` with `points`: returns the world once the scenario completed with a
/// fresh operator (after a crash, if `points` crashed), and the key id before the action.
async fn run(kind: Kind, scenario: Scenario, tag: &str, points: &FailScript) -> (World, Remote) {
    let mut w = World::start(&format!("crash-{tag}")).await;
    let remote = Remote::new(kind, &w).await;
    remote.install_provisioner(&w).await;
    w.start_operator(Options {
        failpoints: Some(points.failpoints()),
        ..Default::default()
    })
    .await;
    let before = if scenario == Scenario::Register {
        points.arm();
        None
    } else {
        let (_, s) = w.ready(&manifest(SHORT_GRACE)).await;
        points.arm();
        annotations(&s).get(KEY_ID_ANNOTATION).cloned()
    };
    match scenario {
        Scenario::Register => {
            w.create(&manifest(SHORT_GRACE)).await;
        }
        Scenario::Rotate => w.annotate(NAME, ROTATE_ANNOTATION, "r1").await,
        Scenario::Delete => w.delete(NAME).await,
    }
    let done = |w: &World| {
        let agents = w.agents();
        let secrets = w.secrets();
        let before = before.clone();
        async move {
            let a = agents.get_opt(NAME).await.ok()?;
            if scenario == Scenario::Delete {
                return a.is_none().then_some(());
            }
            let a = a?;
            if condition(&a, "Ready")?.status != "True" {
                return None;
            }
            let status = a.status.clone()?;
            let s = secrets.get_opt(&format!("{NAME}-agent-key")).await.ok()??;
            let ann: BTreeMap<String, String> = annotations(&s);
            let key_id = ann.get(KEY_ID_ANNOTATION)?;
            (status.active_key.as_ref().map(|k| &k.id) == Some(key_id)
                && !ann.contains_key(MINT_STARTED_AT_ANNOTATION)
                && !ann.contains_key(RETIRING_KEYS_ANNOTATION)
                && status.retiring_keys.is_empty()
                && before.as_ref() != Some(key_id))
            .then_some(())
        }
    };
    wait_until(&format!("{tag}: crashed or complete"), || async {
        (points.fired() || done(&w).await.is_some()).then_some(())
    })
    .await;
    if points.crashes() {
        w.kill_operator().await;
        w.start_operator(Options::default()).await;
    }
    wait_until(&format!("{tag}: complete"), || done(&w)).await;
    (w, remote)
}

/// The checks after a completed run (crashed or not).
async fn check_run(w: &World, remote: &Remote, scenario: Scenario, what: &str) {
    if scenario == Scenario::Delete {
        assert!(
            remote.live_agents().is_empty(),
            "{what}: the agent is revoked: {:#?}",
            remote.agents()
        );
        assert_eq!(remote.agents().len(), 1, "{what}: one agent ever");
        return;
    }
    let (_, _, agent) = check_settled(w, remote, what).await;
    assert_eq!(
        remote.agents().len(),
        1,
        "{what}: one agent ever: {:#?}",
        remote.agents()
    );
    if scenario == Scenario::Rotate {
        assert!(agent.keys.len() >= 2, "{what}: the key was rotated");
    }
}

/// Every fail point of `scenario` (recorded in a first run), crashed at in turn, 8 runs at a
/// time: each ends with the invariant and no second agent.
async fn crash_everywhere(kind: Kind, scenario: Scenario) {
    let label = format!("{kind:?}-{scenario:?}").to_lowercase();
    // The shortest of up to three recordings: under load a reconcile may run once more (a
    // requeue, a late watch event) and pass a read's fail point again; the later occurrences
    // of such a point may not come in a crash run.
    let mut seen: Option<Vec<String>> = None;
    for attempt in 0..3 {
        let recording = FailScript::default();
        let (w, remote) = run(kind, scenario, &format!("{label}-rec{attempt}"), &recording).await;
        check_run(&w, &remote, scenario, "recording run").await;
        drop((w, remote));
        let this = recording.seen();
        if seen.as_ref().is_none_or(|s| this.len() < s.len()) {
            seen = Some(this);
        }
    }
    let points = occurrences(&seen.unwrap_or_default());
    assert!(
        points.len() >= 4,
        "the scenario passes fail points: {points:?}"
    );
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in points.chunks(8) {
        let runs = chunk.iter().enumerate().map(|(i, (point, n))| {
            let label = label.clone();
            let (point, n) = (point.clone(), *n);
            async move {
                let points = FailScript::crashing(&point, n);
                let tag = format!("{label}-{i}-{n}-{}", point.replace(':', "-").to_lowercase());
                let (w, remote) = run(kind, scenario, &tag, &points).await;
                let what = format!("{kind:?} {scenario:?}: crash at {point} #{n}");
                check_run(&w, &remote, scenario, &what).await;
                (point, points.fired())
            }
        });
        for (point, did) in futures::future::join_all(runs).await {
            *fired.entry(point).or_default() += usize::from(did);
        }
    }
    let crashed: usize = fired.values().sum();
    eprintln!(
        "{label}: crashed at {crashed} of {} fail point occurrences",
        points.len()
    );
    // Every fail point of the scenario was crashed at (timing decides whether a late occurrence
    // of a read comes again, so not necessarily every occurrence).
    let missed: Vec<&String> = fired
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| p)
        .collect();
    assert!(missed.is_empty(), "never crashed at {missed:?}");
}

both!(crash_registering);
async fn crash_registering(kind: Kind) {
    crash_everywhere(kind, Scenario::Register).await;
}

both!(crash_rotating);
async fn crash_rotating(kind: Kind) {
    crash_everywhere(kind, Scenario::Rotate).await;
}

both!(crash_deleting);
async fn crash_deleting(kind: Kind) {
    crash_everywhere(kind, Scenario::Delete).await;
}

// ----- answers lost after the backend committed ---------------------------------------------------

/// Registers, settles, rotates, settles — with the backend committing the first call of
/// `operation` (if given) and dropping its answer. Returns what the backend served.
async fn register_and_rotate(kind: Kind, tag: &str, operation: Option<&str>) -> Vec<String> {
    let mut w = World::start(&format!("drop-{tag}")).await;
    let remote = Remote::new(kind, &w).await;
    remote.install_provisioner(&w).await;
    if let Some(op) = operation {
        remote.drop_next_response(op);
    }
    w.start_operator(Options::default()).await;
    w.create(&manifest(SHORT_GRACE)).await;
    let what = format!("{kind:?}, dropped answer of {operation:?}");
    let (_, first, _) = check_settled(&w, &remote, &what).await;
    let first_id = annotations(&first)[KEY_ID_ANNOTATION].clone();
    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    wait_until(&format!("{what}: rotated"), || async {
        let s = w.secret(&format!("{NAME}-agent-key")).await?;
        (annotations(&s).get(KEY_ID_ANNOTATION) != Some(&first_id)).then_some(())
    })
    .await;
    check_settled(&w, &remote, &what).await;
    assert_eq!(remote.agents().len(), 1, "{what}: one agent ever");
    if let Some(op) = operation {
        assert_eq!(remote.dropped(op), 1, "{what}: the fault fired");
    }
    w.stop_operator().await;
    remote.operations_served()
}

both!(dropped_answers);
/// For every operation a registration and a rotation use (asked of the backend after a clean
/// run, not listed here), a run in which its first answer is lost after the backend committed:
/// one agent, only the Secret's key live, at the end of each.
async fn dropped_answers(kind: Kind) {
    let label = format!("{kind:?}").to_lowercase();
    let operations = register_and_rotate(kind, &format!("{label}-rec"), None).await;
    assert!(operations.len() >= 4, "{operations:?}");
    let runs = operations.iter().enumerate().map(|(i, op)| {
        let tag = format!("{label}-{i}");
        async move { register_and_rotate(kind, &tag, Some(op)).await }
    });
    futures::future::join_all(runs).await;
    eprintln!("{label}: answers dropped once for each of {operations:?}");
}

// ----- the example and the CRD's rules ----------------------------------------------------------

/// `examples/alter-provisioner.example.yaml` is accepted by the CRDs as written, and a
/// provisioner cannot be moved between backends (its agents live where they were registered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alter_example_applies_and_a_provisioner_keeps_its_backend() {
    let w = World::start("payments").await;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/alter-provisioner.example.yaml"),
    )
    .expect("the example");
    let docs = lattice_operator::yaml::documents(&text).expect("YAML");
    assert_eq!(docs.len(), 3);
    w.secrets()
        .create(
            &PostParams::default(),
            &serde_json::from_value(docs[0].clone()).expect("a Secret"),
        )
        .await
        .expect("the Secret applies");
    let provisioners: Api<LatticeProvisioner> = Api::namespaced(w.client.clone(), &w.ns);
    let p: LatticeProvisioner = serde_json::from_value(docs[1].clone()).expect("a provisioner");
    assert_eq!(
        p.spec.alter.as_ref().map(|a| a.app_id.as_str()),
        Some("3f9c1d2e-0000-4000-8000-000000000001")
    );
    provisioners
        .create(&PostParams::default(), &p)
        .await
        .expect("the provisioner applies");
    let agent: LatticeAgent = serde_json::from_value(docs[2].clone()).expect("a LatticeAgent");
    w.agents()
        .create(&PostParams::default(), &agent)
        .await
        .expect("the LatticeAgent applies");

    // Removing spec.alter is refused by the CRD's CEL rule, with its message.
    let refused = provisioners
        .patch(
            "alter",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"alter": null}})),
        )
        .await
        .expect_err("spec.alter cannot be removed");
    assert!(
        refused
            .to_string()
            .contains("spec.alter cannot be added or removed"),
        "{refused}"
    );
    // Another app id is allowed (the same backend; the operator checks the key against it).
    provisioners
        .patch(
            "alter",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"alter": {"appId": "other-app"}}})),
        )
        .await
        .expect("the app id may change");
    // A capability rule for a provider's scopes is a valid policy rule; a bare provider is not.
    let bad = provisioners
        .patch(
            "alter",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"policy": {"capabilities": ["github:"]}}})),
        )
        .await;
    assert!(bad.is_err(), "a rule ending in ':' is refused");
}

// ----- Alter only: the provisioner's check, and what Alter refuses --------------------------------

async fn provisioner_ready(w: &World, name: &str) -> (String, String, String) {
    let api: Api<LatticeProvisioner> = Api::namespaced(w.client.clone(), &w.ns);
    wait_until(&format!("provisioner {name} checked"), || async {
        let p = api.get_opt(name).await.ok()??;
        let c = p
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        Some((c.status, c.reason, c.message))
    })
    .await
}

/// The provisioner is Ready only with a key of its app; the key's public prefix is 8 characters
/// after the scheme; another app's id makes it `ServiceKeyRejected`, naming both apps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_provisioner_checks_that_its_key_belongs_to_its_app() {
    let (w, remote) = world(Kind::Alter, "alter-app", Options::default()).await;
    let (status, reason, _) = provisioner_ready(&w, PROVISIONER).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ServiceKeyAccepted")
    );
    let api: Api<LatticeProvisioner> = Api::namespaced(w.client.clone(), &w.ns);
    let p = api.get(PROVISIONER).await.expect("provisioner");
    let prefix = p.status.and_then(|s| s.service_key_prefix).expect("prefix");
    assert_eq!(prefix.len(), 8);
    assert!(
        remote
            .alter()
            .app_key
            .starts_with(&format!("alter_rk_{prefix}"))
    );

    api.patch(
        PROVISIONER,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alter": {"appId": "another-app"}}})),
    )
    .await
    .expect("app id changed");
    let (status, reason, message) = wait_until("the provisioner refuses the key", || async {
        let r = provisioner_ready(&w, PROVISIONER).await;
        (r.0 == "False").then_some(r)
    })
    .await;
    assert_eq!(status, "False");
    assert_eq!(reason, "ServiceKeyRejected");
    assert!(
        message.contains("another-app") && message.contains(&remote.alter().app_id),
        "{message}"
    );
    assert!(!message.contains("alter_rk_"), "no key in the message");
}

/// What Alter would refuse is refused before any call, with what to change: a name with `.`,
/// a capability without a provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_capabilities_alter_refuses_are_reported_without_a_call() {
    let (w, remote) = world(Kind::Alter, "alter-refusals", Options::default()).await;
    // (Within the provisioner's default name prefix, `<namespace>-`, so that only Alter's rule
    // refuses it.)
    w.create(&manifest(&format!("  agentName: {}-deploy.bot", w.ns)))
        .await;
    let a = w
        .wait_condition(NAME, "Ready", "False", Some("InvalidRequest"))
        .await;
    let message = condition(&a, "Ready").expect("Ready").message.clone();
    assert!(message.contains("spec.agentName"), "{message}");

    w.create(
        &manifest("")
            .replace(&format!("name: {NAME}"), "name: plain-capabilities")
            .replace(
                "[\"github:repo:read\", \"github:deployments:write\"]",
                "[deploy.staging]",
            ),
    )
    .await;
    let a = w
        .wait_condition(
            "plain-capabilities",
            "Ready",
            "False",
            Some("InvalidRequest"),
        )
        .await;
    let message = condition(&a, "Ready").expect("Ready").message.clone();
    assert!(message.contains("<provider>:<scope>"), "{message}");
    assert_eq!(remote.registrations(), 0, "nothing was sent");
}

// ----- rotation gated on last use -----------------------------------------------------------------

both!(a_used_old_key_is_kept_until_unused);
/// After a rotation, an old key still in use (a pod not yet restarted) is deprecated, not
/// revoked, and status says why; once its use stops it is revoked after the grace period —
/// the key's `last_used_at` at the backend is what the operator reads.
async fn a_used_old_key_is_kept_until_unused(kind: Kind) {
    let (w, remote) = world(kind, "last-use", Options::default()).await;
    w.create(&manifest(
        "  rotation: {gracePeriod: 2s, maxGracePeriod: 60s}",
    ))
    .await;
    let (_, first, agent) = check_settled(&w, &remote, "registered").await;
    let old_key = key_in(&remote, &first).expect("key");
    let old_id = annotations(&first)[KEY_ID_ANNOTATION].clone();
    let remote = Arc::new(remote);

    // A pod that keeps the key it started with, calling every 200 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let lagging = {
        let (remote, stop, failures, key) = (
            Arc::clone(&remote),
            Arc::clone(&stop),
            Arc::clone(&failures),
            old_key.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if remote.authenticates_as(&key).await.is_none() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    w.annotate(NAME, ROTATE_ANNOTATION, "r1").await;
    w.wait_condition(NAME, "Rotating", "True", Some("WaitingForOldKeyUnused"))
        .await;
    let a = remote.agent(&agent.id).expect("agent");
    assert!(
        a.live_keys.contains(&old_id),
        "the old key in use is kept (deprecated, not revoked)"
    );
    stop.store(true, Ordering::SeqCst);
    lagging.await.expect("the lagging pod stops");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "the old key worked while in use"
    );
    wait_until("the old key is revoked once unused", || async {
        (!remote.agent(&agent.id)?.live_keys.contains(&old_id)).then_some(())
    })
    .await;
    let (a, _, _) = check_settled(&w, &remote, "retired").await;
    let rotating = condition(&a, "Rotating").expect("Rotating");
    assert_eq!(
        (rotating.status.as_str(), rotating.reason.as_str()),
        ("False", "Idle")
    );
    assert_eq!(remote.authenticates_as(&old_key).await, None);
}
