//! The operation generator: what users, other administrators and failing infrastructure do to
//! the operator during a chaos run, drawn from a seeded generator, and the model of what each
//! LatticeAgent must end as once the faults stop (the checks read it).
//!
//! Operations act as a person would, through the Kubernetes API and AgentLattice's API; the
//! runner's own requests go through the same faults as the operator's, so each is retried a few
//! times (as a person would retry a failed `kubectl`) and the model changes only when it went
//! through.

use std::collections::BTreeMap;
use std::time::Duration;

use agentlattice::{ClientConfig, ProvisionerClient, RetryPolicy, ServiceKey};
use agentlattice_emulator::{FaultConfig, RouteFaults};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::Matcher;
use lattice_operator::crd::{
    COMPROMISED_ANNOTATION, LatticeAgent, REREGISTER_ANNOTATION, ROTATE_ANNOTATION,
};
use serde_json::json;

use crate::support::{SERVICE_KEY_FIELD, SERVICE_KEY_SECRET, World};

/// SplitMix64: small, seedable, the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// Capabilities a LatticeAgent is given (a non-empty subset).
const CAPABILITIES: &[&str] = &[
    "deploy.staging",
    "rollback.staging",
    "deploy.production",
    "read.logs",
];

/// The annotated Deployments of a run: (name, how its pods read the key).
pub const WORKLOADS: &[(&str, bool)] = &[("web-env", false), ("web-file", true)];

/// What the runner knows about one LatticeAgent it created.
#[derive(Clone, Debug)]
pub struct Resource {
    pub uid: String,
    pub capabilities: Vec<String>,
    pub suspend: bool,
    /// `deletionPolicy: Retain`.
    pub retain: bool,
    /// Deleted (its deletion accepted by the API server).
    pub deleted: bool,
    /// Its agent was revoked at AgentLattice and no `reregister` came after.
    pub revoked_outside: bool,
}

/// Every LatticeAgent the runner created, by name.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub resources: BTreeMap<String, Resource>,
    created: u32,
    /// Values for the action annotations (each new).
    serial: u64,
}

impl Model {
    fn live(&self) -> Vec<&str> {
        self.resources
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn next_value(&mut self) -> String {
        self.serial += 1;
        format!("chaos-{}", self.serial)
    }
}

/// One operation.
#[derive(Clone, Debug)]
pub enum Op {
    Create {
        name: String,
        capabilities: Vec<String>,
        suspend: bool,
        retain: bool,
    },
    EditCapabilities {
        name: String,
        capabilities: Vec<String>,
    },
    Rotate {
        name: String,
    },
    Compromised {
        name: String,
    },
    Suspend {
        name: String,
        suspend: bool,
    },
    Delete {
        name: String,
    },
    DeleteSecret {
        name: String,
    },
    /// Revoke the agent at AgentLattice, as an administrator there would.
    RevokeAgent {
        name: String,
    },
    /// Revoke one live key of the agent at AgentLattice (`pick` chooses which).
    RevokeKey {
        name: String,
        pick: u64,
    },
    /// `kubectl lattice reregister` after an agent was revoked outside.
    Reregister {
        name: String,
    },
    /// A new service key in the Secret, the old one revoked at AgentLattice.
    RotateServiceKey,
    ScaleWorkload {
        name: String,
        replicas: i32,
    },
    RestartWorkload {
        name: String,
    },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::EditCapabilities { .. } => "edit capabilities",
            Op::Rotate { .. } => "rotate",
            Op::Compromised { .. } => "compromised",
            Op::Suspend { suspend: true, .. } => "suspend",
            Op::Suspend { suspend: false, .. } => "resume",
            Op::Delete { .. } => "delete",
            Op::DeleteSecret { .. } => "delete the Secret",
            Op::RevokeAgent { .. } => "revoke agent out of band",
            Op::RevokeKey { .. } => "revoke key out of band",
            Op::Reregister { .. } => "reregister",
            Op::RotateServiceKey => "rotate the service key",
            Op::ScaleWorkload { .. } => "scale workload",
            Op::RestartWorkload { .. } => "restart workload",
        }
    }
}

fn capabilities(rng: &mut Rng) -> Vec<String> {
    let mut caps: Vec<String> = CAPABILITIES
        .iter()
        .filter(|_| rng.chance(50))
        .map(|c| (*c).to_owned())
        .collect();
    if caps.is_empty() {
        caps.push((*rng.pick(CAPABILITIES)).to_owned());
    }
    caps
}

/// The most LatticeAgents alive at once (created by the runner; workload identities come on top).
const MAX_LIVE: usize = 14;

/// Draws the next operation for the model as it is.
pub fn next_op(rng: &mut Rng, model: &mut Model) -> Op {
    let live: Vec<String> = model.live().into_iter().map(str::to_owned).collect();
    let revoked: Vec<String> = model
        .resources
        .iter()
        .filter(|(_, r)| !r.deleted && r.revoked_outside)
        .map(|(n, _)| n.clone())
        .collect();
    if live.len() < 3 || (live.len() < MAX_LIVE && rng.chance(18)) {
        model.created += 1;
        return Op::Create {
            name: format!("chaos-{}", model.created),
            capabilities: capabilities(rng),
            suspend: rng.chance(10),
            retain: rng.chance(15),
        };
    }
    if !revoked.is_empty() && rng.chance(25) {
        return Op::Reregister {
            name: rng.pick(&revoked).clone(),
        };
    }
    let name = rng.pick(&live).clone();
    match rng.below(100) {
        0..=11 => Op::EditCapabilities {
            name,
            capabilities: capabilities(rng),
        },
        12..=25 => Op::Rotate { name },
        26..=33 => Op::Compromised { name },
        34..=43 => {
            let suspend = !model.resources[&name].suspend;
            Op::Suspend { name, suspend }
        }
        44..=51 => Op::Delete { name },
        52..=59 => Op::DeleteSecret { name },
        60..=65 => Op::RevokeAgent { name },
        66..=73 => Op::RevokeKey {
            name,
            pick: rng.next_u64(),
        },
        74..=78 => Op::RotateServiceKey,
        79..=89 => Op::ScaleWorkload {
            name: rng.pick(WORKLOADS).0.to_owned(),
            replicas: rng.below(4) as i32,
        },
        _ => Op::RestartWorkload {
            name: rng.pick(WORKLOADS).0.to_owned(),
        },
    }
}

/// How an operation went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Nothing to do in the state found (e.g. no live agent to revoke yet).
    Skipped,
}

/// How many times the runner tries each of its requests.
const ATTEMPTS: u32 = 12;

async fn retry<T, F, Fut, E>(what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    Err(format!("{what}: {last}"))
}

/// The runner's side of a run: the world, the model and the service key it holds.
pub struct Actor<'a> {
    pub world: &'a mut World,
    pub model: Model,
}

impl Actor<'_> {
    fn agents(&self) -> Api<LatticeAgent> {
        self.world.agents()
    }

    fn provisioner(&self) -> Result<ProvisionerClient, String> {
        let key: ServiceKey = self
            .world
            .service_key
            .parse()
            .map_err(|_| "the service key does not parse".to_owned())?;
        ProvisionerClient::new(
            &ClientConfig::new(self.world.emu.base_url()).retry(RetryPolicy::new().max_attempts(1)),
            key,
        )
        .map_err(|e| e.to_string())
    }

    async fn merge(&self, name: &str, patch: serde_json::Value) -> Result<(), String> {
        let api = self.agents();
        retry(&format!("patch {name}"), || {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    async fn annotate(&mut self, name: &str, key: &str) -> Result<(), String> {
        let value = self.model.next_value();
        self.merge(name, json!({"metadata": {"annotations": {key: value}}}))
            .await
    }

    /// The live agents at the emulator linked to `name`'s uid (the emulator's own view: no
    /// faults).
    fn live_agents_of(&self, name: &str) -> Vec<agentlattice_emulator::AgentSnapshot> {
        let Some(uid) = self.model.resources.get(name).map(|r| r.uid.clone()) else {
            return Vec::new();
        };
        self.world
            .emu
            .snapshot()
            .agents
            .into_iter()
            .filter(|a| a.is_live() && a.metadata.get("k8s.uid") == Some(&uid))
            .collect()
    }

    /// Creates the annotated Deployments whose identities the operator makes.
    pub async fn create_workloads(&self) -> Result<(), String> {
        let api: Api<Deployment> = Api::namespaced(self.world.client.clone(), &self.world.ns);
        for (name, file) in WORKLOADS {
            let secret = format!("{name}-agent-key");
            let pod = if *file {
                json!({"containers": [{"name": "app", "image": "example/app:1",
                    "volumeMounts": [{"name": "key", "mountPath": "/var/run/agentlattice"}]}],
                    "volumes": [{"name": "key", "secret": {"secretName": secret}}]})
            } else {
                json!({"containers": [{"name": "app", "image": "example/app:1",
                    "envFrom": [{"secretRef": {"name": secret}}]}]})
            };
            let d: Deployment = serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "annotations": {
                    "agentlattice.io/capabilities": "deploy.staging,rollback.staging"}},
                "spec": {"replicas": 2,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
            }))
            .map_err(|e| e.to_string())?;
            retry(&format!("create Deployment {name}"), || {
                let (api, d) = (api.clone(), d.clone());
                async move { api.create(&PostParams::default(), &d).await.map(|_| ()) }
            })
            .await?;
        }
        Ok(())
    }

    /// Carries out `op`.
    pub async fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        match op {
            Op::Create {
                name,
                capabilities,
                suspend,
                retain,
            } => {
                let agent: LatticeAgent = serde_json::from_value(json!({
                    "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
                    "metadata": {"name": name, "namespace": self.world.ns},
                    "spec": {"description": format!("chaos agent {name}"),
                             "capabilities": capabilities,
                             "suspend": suspend,
                             "deletionPolicy": if *retain { "Retain" } else { "Revoke" }},
                }))
                .map_err(|e| e.to_string())?;
                let api = self.agents();
                // A create whose response was lost would answer AlreadyExists when retried:
                // kube-sim's faults answer before anything is stored, so this does not happen.
                let created = retry(&format!("create {name}"), || {
                    let (api, agent) = (api.clone(), agent.clone());
                    async move { api.create(&PostParams::default(), &agent).await }
                })
                .await?;
                let uid = created
                    .metadata
                    .uid
                    .ok_or_else(|| format!("{name} was created without a uid"))?;
                self.model.resources.insert(
                    name.clone(),
                    Resource {
                        uid,
                        capabilities: capabilities.clone(),
                        suspend: *suspend,
                        retain: *retain,
                        deleted: false,
                        revoked_outside: false,
                    },
                );
            }
            Op::EditCapabilities { name, capabilities } => {
                self.merge(name, json!({"spec": {"capabilities": capabilities}}))
                    .await?;
                if let Some(r) = self.model.resources.get_mut(name) {
                    r.capabilities = capabilities.clone();
                }
            }
            Op::Rotate { name } => self.annotate(name, ROTATE_ANNOTATION).await?,
            Op::Compromised { name } => self.annotate(name, COMPROMISED_ANNOTATION).await?,
            Op::Reregister { name } => {
                self.annotate(name, REREGISTER_ANNOTATION).await?;
                if let Some(r) = self.model.resources.get_mut(name) {
                    r.revoked_outside = false;
                }
            }
            Op::Suspend { name, suspend } => {
                self.merge(name, json!({"spec": {"suspend": suspend}}))
                    .await?;
                if let Some(r) = self.model.resources.get_mut(name) {
                    r.suspend = *suspend;
                }
            }
            Op::Delete { name } => {
                let api = self.agents();
                retry(&format!("delete {name}"), || {
                    let api = api.clone();
                    async move { api.delete(name, &DeleteParams::default()).await.map(|_| ()) }
                })
                .await?;
                if let Some(r) = self.model.resources.get_mut(name) {
                    r.deleted = true;
                }
            }
            Op::DeleteSecret { name } => {
                let secrets: Api<Secret> = self.world.secrets();
                let secret = format!("{name}-agent-key");
                let found = retry(&format!("delete Secret {secret}"), || {
                    let (secrets, secret) = (secrets.clone(), secret.clone());
                    async move {
                        match secrets.delete(&secret, &DeleteParams::default()).await {
                            Ok(_) => Ok(true),
                            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
                            Err(e) => Err(e),
                        }
                    }
                })
                .await?;
                if !found {
                    return Ok(Outcome::Skipped);
                }
            }
            Op::RevokeAgent { name } => {
                let live = self.live_agents_of(name);
                if live.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                let p = self.provisioner()?;
                for agent in &live {
                    retry(&format!("revoke agent of {name}"), || {
                        p.revoke_agent(&agent.id)
                    })
                    .await?;
                }
                if let Some(r) = self.model.resources.get_mut(name) {
                    r.revoked_outside = true;
                }
            }
            Op::RevokeKey { name, pick } => {
                let live = self.live_agents_of(name);
                let keys: Vec<(String, String)> = live
                    .iter()
                    .flat_map(|a| a.live_keys().map(|k| (a.id.clone(), k.key_id.clone())))
                    .collect();
                if keys.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                let (agent, key) = &keys[(*pick % keys.len() as u64) as usize];
                let p = self.provisioner()?;
                // `force`: the agent's last active key may be the one picked.
                retry(&format!("revoke a key of {name}"), || {
                    p.revoke_key(agent, key, true)
                })
                .await?;
            }
            Op::RotateServiceKey => {
                let old = self.world.service_key_id.clone();
                let new = self.world.emu.create_service_key("lattice-operator-chaos");
                let secrets: Api<Secret> = self.world.secrets();
                let secret: Secret = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": SERVICE_KEY_SECRET},
                    "stringData": {SERVICE_KEY_FIELD: new.api_key},
                }))
                .map_err(|e| e.to_string())?;
                retry("write the service key Secret", || {
                    let (secrets, secret) = (secrets.clone(), secret.clone());
                    async move {
                        secrets
                            .patch(
                                SERVICE_KEY_SECRET,
                                &PatchParams::apply("chaos").force(),
                                &Patch::Apply(&secret),
                            )
                            .await
                            .map(|_| ())
                    }
                })
                .await?;
                self.world.service_key = new.api_key.clone();
                self.world.service_key_id = new.id.clone();
                // At once, before the operator may have read the new one: it must recover from
                // a 401 on its cached key.
                self.world
                    .emu
                    .revoke_service_key(&old)
                    .map_err(|e| format!("revoking the old service key: {e}"))?;
            }
            Op::ScaleWorkload { name, replicas } => {
                let api: Api<Deployment> =
                    Api::namespaced(self.world.client.clone(), &self.world.ns);
                retry(&format!("scale {name}"), || {
                    let api = api.clone();
                    async move {
                        api.patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                        )
                        .await
                        .map(|_| ())
                    }
                })
                .await?;
            }
            Op::RestartWorkload { name } => {
                let api: Api<Deployment> =
                    Api::namespaced(self.world.client.clone(), &self.world.ns);
                let at = jiff::Timestamp::now().to_string();
                retry(&format!("restart {name}"), || {
                    let (api, at) = (api.clone(), at.clone());
                    async move {
                        api.patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"template": {"metadata": {
                                "annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})),
                        )
                        .await
                        .map(|_| ())
                    }
                })
                .await?;
            }
        }
        Ok(Outcome::Done)
    }
}

/// One injected fault.
#[derive(Clone, Debug)]
pub enum Fault {
    /// AgentLattice answers 5xx before doing anything.
    AlFailBefore {
        route: &'static str,
        count: u32,
        status: u16,
    },
    /// AgentLattice does it, then answers 5xx.
    AlFailAfter {
        route: &'static str,
        count: u32,
        status: u16,
    },
    /// AgentLattice does it, then closes the connection without an answer.
    AlDrop {
        route: &'static str,
        count: u32,
    },
    /// A burst of 429s.
    AlThrottle {
        route: &'static str,
        count: u32,
    },
    /// Latency on every AgentLattice call, until switched off.
    AlLatency {
        ms: u64,
    },
    AlLatencyOff,
    /// Every open watch cut.
    KubeDropWatches,
    /// The next watch of a resource ends with a 410 Gone ERROR event.
    KubeWatchGone {
        resource: &'static str,
    },
    /// The next writes of a verb (and resource) fail with 409, 500 or 429.
    KubeWriteError {
        verb: &'static str,
        resource: Option<&'static str>,
        code: u16,
        count: usize,
    },
    /// Latency on every Kubernetes request, until switched off.
    KubeLatency {
        ms: u64,
    },
    KubeLatencyOff,
}

const AL_ROUTES: &[&str] = &[
    "*",
    "register",
    "list_agents",
    "get_agent",
    "update_agent",
    "halt_agent",
    "resume_agent",
    "revoke_agent",
    "mint_key",
    "list_keys",
    "deprecate_key",
    "revoke_key",
];

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::AlFailBefore { .. } => "AgentLattice 5xx before commit",
            Fault::AlFailAfter { .. } => "AgentLattice 5xx after commit",
            Fault::AlDrop { .. } => "AgentLattice dropped response",
            Fault::AlThrottle { .. } => "AgentLattice 429 burst",
            Fault::AlLatency { .. } => "AgentLattice latency on",
            Fault::AlLatencyOff => "AgentLattice latency off",
            Fault::KubeDropWatches => "Kubernetes watches dropped",
            Fault::KubeWatchGone { .. } => "Kubernetes watch 410 Gone",
            Fault::KubeWriteError { code: 409, .. } => "Kubernetes write 409",
            Fault::KubeWriteError { code: 500, .. } => "Kubernetes write 500",
            Fault::KubeWriteError { .. } => "Kubernetes write 429",
            Fault::KubeLatency { .. } => "Kubernetes latency on",
            Fault::KubeLatencyOff => "Kubernetes latency off",
        }
    }
}

/// Draws the next fault.
pub fn next_fault(rng: &mut Rng) -> Fault {
    let route = rng.pick_str(AL_ROUTES);
    let count = 1 + rng.below(3) as u32;
    match rng.below(100) {
        0..=11 => Fault::AlFailBefore {
            route,
            count,
            status: *rng.pick(&[500, 502, 503]),
        },
        12..=23 => Fault::AlFailAfter {
            route,
            count,
            status: *rng.pick(&[500, 504]),
        },
        24..=35 => Fault::AlDrop { route, count },
        36..=43 => Fault::AlThrottle {
            route,
            count: 3 + rng.below(8) as u32,
        },
        44..=48 => Fault::AlLatency {
            ms: 20 + rng.below(180),
        },
        49..=52 => Fault::AlLatencyOff,
        53..=61 => Fault::KubeDropWatches,
        62..=70 => Fault::KubeWatchGone {
            resource: rng.pick_str(&["latticeagents", "secrets", "deployments", "pods"]),
        },
        71..=91 => Fault::KubeWriteError {
            verb: rng.pick_str(&["create", "update", "patch", "delete"]),
            resource: *rng.pick(&[
                None,
                Some("latticeagents"),
                Some("secrets"),
                Some("events"),
                Some("leases"),
            ]),
            code: *rng.pick(&[409, 500, 429]),
            count: 1 + rng.below(3) as usize,
        },
        92..=96 => Fault::KubeLatency {
            ms: 10 + rng.below(150),
        },
        _ => Fault::KubeLatencyOff,
    }
}

/// The faults in force on both sides.
#[derive(Default)]
pub struct Injector {
    al_latency: Option<u64>,
}

impl Injector {
    pub fn inject(&mut self, world: &World, fault: &Fault) {
        let one = |route: &str, faults: RouteFaults| (route.to_owned(), faults);
        let al = match fault {
            Fault::AlFailBefore {
                route,
                count,
                status,
            } => Some(one(route, RouteFaults::fail_next(*count, *status))),
            Fault::AlFailAfter {
                route,
                count,
                status,
            } => Some(one(
                route,
                RouteFaults::fail_next_after_commit(*count, *status),
            )),
            Fault::AlDrop { route, count } => {
                Some(one(route, RouteFaults::drop_response_next(*count)))
            }
            Fault::AlThrottle { route, count } => {
                Some(one(route, RouteFaults::throttle_next(*count, 1)))
            }
            Fault::AlLatency { ms } => {
                self.al_latency = Some(*ms);
                None
            }
            Fault::AlLatencyOff => {
                self.al_latency = None;
                None
            }
            Fault::KubeDropWatches => {
                world.sim.faults().drop_watches();
                return;
            }
            Fault::KubeWatchGone { resource } => {
                world
                    .sim
                    .faults()
                    .fail(Matcher::verb("watch").resource(resource), 410, 1);
                return;
            }
            Fault::KubeWriteError {
                verb,
                resource,
                code,
                count,
            } => {
                let mut m = Matcher::verb(verb);
                if let Some(r) = resource {
                    m = m.resource(r);
                }
                world.sim.faults().fail(m, *code, *count);
                return;
            }
            Fault::KubeLatency { ms } => {
                world.sim.faults().clear_latency();
                world
                    .sim
                    .faults()
                    .set_latency(Matcher::any(), Duration::from_millis(*ms));
                return;
            }
            Fault::KubeLatencyOff => {
                world.sim.faults().clear_latency();
                return;
            }
        };
        // The emulator takes one configuration: the latency in force plus the new fault (a
        // one-shot fault not used up by now is replaced).
        let mut config = FaultConfig::new();
        let latency = self.al_latency.map(|ms| RouteFaults::latency(ms, ms / 2));
        match al {
            Some((route, mut faults)) => {
                if route == "*" {
                    faults.latency = latency.and_then(|l| l.latency);
                } else if let Some(l) = latency {
                    config = config.route("*", l);
                }
                config = config.route(&route, faults);
            }
            None => {
                if let Some(l) = latency {
                    config = config.route("*", l);
                }
            }
        }
        world.emu.set_faults(config);
    }

    /// Every fault off.
    pub fn clear(&mut self, world: &World) {
        self.al_latency = None;
        world.emu.clear_faults();
        world.sim.faults().clear();
    }
}
