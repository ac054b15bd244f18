//! The integration tests' world: kube-sim and the AgentLattice emulator in process, the CRD
//! installed, a namespace per test with the service key Secret, and the operator running in a
//! task that a test can stop gracefully, kill (a crash: its memory is gone) and start again.

#![allow(dead_code)]

pub mod failpoints;
pub mod workloads;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{AgentClient, AgentKey, ClientConfig, ProvisionerClient, ServiceKey, Whoami};
use agentlattice_emulator::{AgentSnapshot, Emulator, EmulatorConfig};
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_sim::{KubeSim, KubeSimBuilder};
use lattice_operator::cluster::install_crd;
use lattice_operator::config::SecretRef;
use lattice_operator::crd::LatticeAgent;
use lattice_operator::metrics::Metrics;
use lattice_operator::operator::{Operator, OperatorConfig, Readiness};
use lattice_operator::plan::{ConsumerSettings, Settings};
use lattice_operator::reconcile::{BackoffPolicy, FailPoints};
use lattice_operator::remote::{self, AgentLattice, ServiceKeyProvider, ServiceKeySource};
use lattice_operator::secret::{
    API_KEY_FIELD, KEY_ID_ANNOTATION, MINT_STARTED_AT_ANNOTATION, RETIRING_KEYS_ANNOTATION,
};
use lattice_operator::verify;
use tokio::task::JoinHandle;

pub const SERVICE_KEY_SECRET: &str = "agentlattice-service-key";
pub const SERVICE_KEY_FIELD: &str = "AL_SERVICE_KEY";

/// The test LatticeAgent: `name`, the payments description and capabilities, and
/// `extra_spec` (YAML lines under `spec`, indented by two spaces, e.g. `"  suspend: true"`).
pub fn bot(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: agentlattice.io/v1alpha1\n\
         kind: LatticeAgent\n\
         metadata: {{name: {name}}}\n\
         spec:\n  \
         description: Deploys the payments service\n  \
         capabilities: [deploy.staging, rollback.staging]\n\
         {extra_spec}\n"
    )
}

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// How the operator under test runs.
#[derive(Clone)]
pub struct Options {
    pub resync: SignedDuration,
    pub service_key_retry: SignedDuration,
    pub backoff: BackoffPolicy,
    pub failpoints: Option<FailPoints>,
    /// Extra namespaces to watch besides the world's.
    pub namespaces: Vec<String>,
    /// Spread the first drift reads after a start (the production default).
    pub spread_first_drift_read: bool,
    /// Workload watching, restarts and their timing.
    pub consumers: ConsumerSettings,
    /// Identities for annotated workloads.
    pub identities: bool,
    /// The default provisioner's policy.
    pub default_policy: lattice_operator::plan::policy::Policy,
    /// `--cluster-name`.
    pub cluster_name: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resync: SignedDuration::from_secs(30),
            service_key_retry: SignedDuration::from_mins(5),
            backoff: BackoffPolicy {
                base: Duration::from_millis(200),
                max: Duration::from_secs(5),
            },
            failpoints: None,
            namespaces: Vec::new(),
            spread_first_drift_read: true,
            consumers: ConsumerSettings {
                tracked: true,
                restarts: true,
                restart_min_interval: SignedDuration::from_secs(1),
                kubelet_sync_period: SignedDuration::from_secs(1),
            },
            identities: true,
            default_policy: lattice_operator::plan::policy::Policy::any_capability(),
            cluster_name: None,
        }
    }
}

/// A running operator.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// Bumped each time the operator noticed a change of the service key Secret.
    pub service_key_changes: tokio::sync::watch::Receiver<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub struct World {
    pub sim: Arc<KubeSim>,
    pub emu: Arc<Emulator>,
    pub client: kube::Client,
    pub ns: String,
    /// The service key (test-only plaintext, to act as an administrator and to scan for leaks).
    pub service_key: String,
    pub service_key_id: String,
    pub operator: Option<Running>,
}

impl World {
    /// A fresh simulator and emulator, the CRD installed, namespace `ns` with the service key
    /// Secret.
    pub async fn start(ns: &str) -> World {
        World::start_with(KubeSim::builder(), ns).await
    }

    /// [`World::start`] on a simulator started from `sim`.
    pub async fn start_with(sim: KubeSimBuilder, ns: &str) -> World {
        let world = World::bare(sim, "lattice-operator-tests", ns).await;
        install_crd(&world.client, Duration::from_secs(10))
            .await
            .expect("CRD installed");
        world.create_namespace(ns).await;
        world.put_service_key(Some(&world.service_key)).await;
        world
    }

    /// A simulator started from `sim` (5 s bookmarks) and a fresh emulator with a service key
    /// labelled `label`; nothing installed, no namespace created, no service key Secret written.
    pub async fn bare(sim: KubeSimBuilder, label: &str, ns: &str) -> World {
        init_logs();
        let sim = sim
            .bookmark_interval(Duration::from_secs(5))
            .start()
            .await
            .expect("kube-sim starts");
        let emu = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let svc = emu.create_service_key(label);
        World {
            client: sim.client(),
            sim: Arc::new(sim),
            emu: Arc::new(emu),
            ns: ns.to_owned(),
            service_key: svc.api_key.clone(),
            service_key_id: svc.id.clone(),
            operator: None,
        }
    }

    pub async fn create_namespace(&self, ns: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.to_owned());
        namespaces
            .create(&PostParams::default(), &n)
            .await
            .expect("namespace created");
    }

    /// Writes (`Some`) or deletes (`None`) the service key Secret.
    pub async fn put_service_key(&self, key: Option<&str>) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        match key {
            Some(key) => {
                let secret: Secret = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": SERVICE_KEY_SECRET},
                    "stringData": {SERVICE_KEY_FIELD: key},
                }))
                .expect("secret");
                secrets
                    .patch(
                        SERVICE_KEY_SECRET,
                        &PatchParams::apply("tests").force(),
                        &Patch::Apply(&secret),
                    )
                    .await
                    .expect("service key Secret written");
            }
            None => {
                let _ = secrets
                    .delete(SERVICE_KEY_SECRET, &DeleteParams::default())
                    .await;
            }
        }
    }

    pub fn settings(&self, options: &Options) -> Settings {
        Settings {
            base_url: self.emu.base_url(),
            backend: lattice_operator::plan::BackendKind::AgentLattice,
            cluster_name: options.cluster_name.clone(),
            resync_interval: options.resync,
            service_key_retry: options.service_key_retry,
            consumers: options.consumers.clone(),
            default_policy: options.default_policy.clone(),
        }
    }

    /// Starts an operator (with empty memory).
    pub async fn start_operator(&mut self, options: Options) {
        assert!(self.operator.is_none(), "an operator is already running");
        let metrics = Arc::new(Metrics::new());
        let config = remote::client_config(
            &self.emu.base_url(),
            Duration::from_secs(5),
            None,
            metrics.call_observer(),
        )
        .retry(
            agentlattice::RetryPolicy::new()
                .max_attempts(2)
                .base_delay(Duration::from_millis(50)),
        );
        let provider = Arc::new(ServiceKeyProvider::new(
            self.client.clone(),
            ServiceKeySource {
                secret: SecretRef {
                    namespace: self.ns.clone(),
                    name: SERVICE_KEY_SECRET.to_owned(),
                },
                field: SERVICE_KEY_FIELD.to_owned(),
            },
            config,
        ));
        let service_key_changes = provider.subscribe();
        let remote = Arc::new(AgentLattice::new(Arc::clone(&provider)));
        let observer = metrics.call_observer();
        let provisioners = Arc::new(
            lattice_operator::provisioners::Provisioners::new(
                self.client.clone(),
                Arc::clone(&remote) as Arc<dyn lattice_operator::remote::Backend>,
                &self.emu.base_url(),
                Arc::new(move |base_url: &str| {
                    remote::client_config(
                        base_url,
                        Duration::from_secs(5),
                        None,
                        Arc::clone(&observer),
                    )
                    .retry(
                        agentlattice::RetryPolicy::new()
                            .max_attempts(2)
                            .base_delay(Duration::from_millis(50)),
                    )
                }),
                &std::iter::once(self.ns.clone())
                    .chain(options.namespaces.iter().cloned())
                    .collect::<Vec<_>>(),
                options.resync.unsigned_abs(),
                options.service_key_retry.unsigned_abs(),
            )
            .with_alter_config(Arc::new(|base_url: &str, app_id: &str| {
                alter::ClientConfig::new(base_url)
                    .app_id(app_id)
                    .request_timeout(Duration::from_secs(5))
                    .retry(
                        alter::RetryPolicy::new()
                            .max_attempts(2)
                            .base_delay(Duration::from_millis(50)),
                    )
            })),
        );
        let mut config = OperatorConfig::new(self.settings(&options));
        config.namespaces = std::iter::once(self.ns.clone())
            .chain(options.namespaces.iter().cloned())
            .collect();
        config.concurrency = 4;
        config.backoff = options.backoff;
        config.spread_first_drift_read = options.spread_first_drift_read;
        config.workload_identities = options.identities;
        let mut operator = Operator::new(self.client.clone(), config, remote, Arc::clone(&metrics))
            .with_service_key_provider(provider)
            .with_provisioners(provisioners);
        if let Some(fp) = options.failpoints.clone() {
            operator = operator.with_failpoints(fp);
        }
        let readiness = operator.readiness();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(operator.run(async move {
            let _ = rx.await;
        }));
        self.operator = Some(Running {
            metrics,
            readiness: readiness.clone(),
            service_key_changes,
            stop: Some(tx),
            task,
        });
        wait_until("the operator is ready", || {
            let readiness = readiness.clone();
            async move { readiness.is_ready().then_some(()) }
        })
        .await;
    }

    /// Stops the operator gracefully (running reconciles finish).
    pub async fn stop_operator(&mut self) {
        if let Some(mut running) = self.operator.take() {
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut running.task).await;
            running.task.abort();
        }
    }

    /// Kills the operator: every task stops where it is, its memory is gone.
    pub async fn kill_operator(&mut self) {
        if let Some(running) = self.operator.take() {
            running.task.abort();
            let _ = running.task.await;
            // Let the aborted reconcile tasks unwind.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.operator.as_ref().expect("operator running").metrics)
    }

    pub fn agents(&self) -> Api<LatticeAgent> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn agents_in(&self, ns: &str) -> Api<LatticeAgent> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a LatticeAgent from YAML (namespace filled in).
    pub async fn create(&self, yaml: &str) -> LatticeAgent {
        let mut agent: LatticeAgent = lattice_operator::yaml::from_str(yaml).expect("test YAML");
        agent.metadata.namespace = Some(self.ns.clone());
        self.agents()
            .create(&PostParams::default(), &agent)
            .await
            .expect("LatticeAgent created")
    }

    /// Creates the LatticeAgent `manifest` and waits until it has settled Ready: its Secret holds
    /// the key its status describes, and no key is retiring.
    pub async fn ready(&self, manifest: &str) -> (LatticeAgent, Secret) {
        let created = self.create(manifest).await;
        let name = created.metadata.name.clone().expect("named");
        self.wait_settled(&name, true).await
    }

    pub async fn get(&self, name: &str) -> LatticeAgent {
        self.agents().get(name).await.expect("LatticeAgent exists")
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        self.agents()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotated");
    }

    pub async fn delete(&self, name: &str) {
        self.agents()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete accepted");
    }

    /// Waits until the resource's condition `type_` has `status` (and `reason`, if given).
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> LatticeAgent {
        let api = self.agents();
        let what = format!("{name}: {type_}={status} {reason:?}");
        wait_until(&what, || {
            let api = api.clone();
            async move {
                let a = api.get_opt(name).await.ok()??;
                let c = condition(&a, type_)?;
                (c.status == status && reason.is_none_or(|r| c.reason == r)).then_some(a)
            }
        })
        .await
    }

    pub async fn wait_ready(&self, name: &str) -> LatticeAgent {
        self.wait_condition(name, "Ready", "True", Some("AgentReady"))
            .await
    }

    /// Waits until the resource is Ready, its status describes the key in its Secret, no mint
    /// intent is left and (if `idle`) no key is retiring.
    pub async fn wait_settled(&self, name: &str, idle: bool) -> (LatticeAgent, Secret) {
        let api = self.agents();
        let secrets = self.secrets();
        wait_until(&format!("{name} settles"), || {
            let (api, secrets) = (api.clone(), secrets.clone());
            async move {
                let a = api.get_opt(name).await.ok()??;
                let c = condition(&a, "Ready")?;
                if c.status != "True" {
                    return None;
                }
                let status = a.status.clone()?;
                let s = secrets
                    .get_opt(status.secret_name.as_deref()?)
                    .await
                    .ok()??;
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                let key_id = ann.get(KEY_ID_ANNOTATION)?;
                if status.active_key.as_ref().map(|k| &k.id) != Some(key_id)
                    || ann.contains_key(MINT_STARTED_AT_ANNOTATION)
                    || status.mint_started_at.is_some()
                    || (idle
                        && (ann.contains_key(RETIRING_KEYS_ANNOTATION)
                            || !status.retiring_keys.is_empty()))
                {
                    return None;
                }
                Some((a, s))
            }
        })
        .await
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("read Secret")
    }

    pub fn provisioner(&self) -> ProvisionerClient {
        let key: ServiceKey = self.service_key.parse().expect("service key");
        ProvisionerClient::new(&ClientConfig::new(self.emu.base_url()), key).expect("client")
    }

    /// `whoami` with the key in the Secret.
    pub async fn whoami_with(&self, secret: &Secret) -> agentlattice::Result<Whoami> {
        let key = secret_key(secret).expect("the Secret holds a key");
        let client = AgentClient::new(&ClientConfig::new(self.emu.base_url()), key)?;
        client.whoami().await
    }

    /// Every event about `name` (events.k8s.io/v1), oldest first.
    pub async fn events(&self, name: &str) -> Vec<KubeEvent> {
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &self.ns);
        let mut events: Vec<KubeEvent> = api
            .list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    pub async fn wait_event(&self, name: &str, reason: &str) -> KubeEvent {
        wait_until(&format!("event {reason} for {name}"), || async move {
            self.events(name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }

    /// Agents at the emulator whose metadata names this world's namespace.
    pub fn agents_of_namespace(&self, ns: &str) -> Vec<AgentSnapshot> {
        self.emu
            .snapshot()
            .agents
            .into_iter()
            .filter(|a| a.metadata.get("k8s.namespace").map(String::as_str) == Some(ns))
            .collect()
    }

    /// Design §4's invariant for the resource `name`: exactly one live agent linked to it, its
    /// Secret holds a working key of that agent, and every other live key of the agent is
    /// recorded as retiring (no orphan agent, no orphan key).
    /// The invariant (design §4, §7) for the resource `name`, by the checker `lattice-operator
    /// verify` runs (`lattice_operator::verify`): it is Ready, exactly one live agent is linked to
    /// its uid, status and its Secret name that agent, the Secret's key authenticates as it with
    /// the key id the record gives, every other live key is retiring and not overdue; and no key
    /// is in any Event or status of the namespace. (Other resources of the namespace may be mid
    /// flight: only violations about this one, and key material anywhere, count.)
    pub async fn check_invariant(&self, name: &str) {
        let report = self.verify().await;
        let resource = format!("{}/{name}", self.ns);
        let a = self.get(name).await;
        let secret = format!("{}/{}", self.ns, verify::secret_name(&a));
        let about: Vec<String> = report
            .violations
            .iter()
            .filter(|v| match v.subject() {
                Some(s) => s == resource || s == secret,
                None => matches!(v, verify::Violation::KeyMaterial { .. }),
            })
            .map(ToString::to_string)
            .collect();
        assert!(
            about.is_empty(),
            "invariant broken for {name}:\n{}",
            about.join("\n")
        );
        assert!(
            report.ready.contains(&resource),
            "{name} is not Ready: {:?}",
            a.status
        );
        // No other live agent carries this resource's agent name.
        let snapshot = self.emu.snapshot();
        let uid = a.metadata.uid.clone().expect("uid");
        let mine: Vec<&AgentSnapshot> = snapshot
            .live_agents()
            .filter(|x| x.metadata.get("k8s.uid") == Some(&uid))
            .collect();
        let named: Vec<_> = snapshot
            .live_agents()
            .filter(|x| mine.iter().any(|m| m.name == x.name && m.id != x.id))
            .collect();
        assert!(
            named.is_empty(),
            "another live agent with {name}'s agent name"
        );
    }

    /// Runs the invariant checker on this world's namespace.
    pub async fn verify(&self) -> verify::Report {
        let sources = verify::Sources::emulator(self.emu.base_url(), self.emu.admin_token());
        let opts = verify::Options {
            namespaces: vec![self.ns.clone()],
            ..verify::Options::default()
        };
        let observation = verify::observe(&self.client, &sources, &opts)
            .await
            .expect("verify reads the cluster and the emulator");
        verify::check(&observation, &opts)
    }
}

pub fn condition<'a>(
    a: &'a LatticeAgent,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The agent key in a Secret.
pub fn secret_key(secret: &Secret) -> Option<AgentKey> {
    let raw = secret.data.as_ref()?.get(API_KEY_FIELD)?;
    AgentKey::new(String::from_utf8(raw.0.clone()).ok()?).ok()
}

pub fn annotations(secret: &Secret) -> BTreeMap<String, String> {
    secret.metadata.annotations.clone().unwrap_or_default()
}

/// Logs to the test output when `TEST_LOG` is set (an `EnvFilter` directive).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Polls `probe` every 50 ms until it gives a value; panics after [`WAIT`].
pub async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fail point that fires at its `n`-th hit (1-based) and records what it fired on.
#[derive(Clone, Default)]
pub struct CrashAt {
    pub n: usize,
    hits: Arc<AtomicUsize>,
    fired: Arc<Mutex<Option<String>>>,
}

impl CrashAt {
    pub fn new(n: usize) -> CrashAt {
        CrashAt {
            n,
            ..Default::default()
        }
    }

    pub fn failpoints(&self) -> FailPoints {
        let me = self.clone();
        Arc::new(move |point: &str| {
            let hit = me.hits.fetch_add(1, Ordering::SeqCst) + 1;
            if hit == me.n {
                if let Ok(mut f) = me.fired.lock() {
                    *f = Some(point.to_owned());
                }
                true
            } else {
                false
            }
        })
    }

    pub fn fired(&self) -> Option<String> {
        self.fired.lock().ok().and_then(|f| f.clone())
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A namespace name for a test (unique within a process; each test has its own simulator
/// anyway).
pub fn ns(test: &str) -> String {
    test.replace('_', "-")
}

/// Reconciles finished by a running operator (any result), from its metrics.
pub fn reconciles(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("lattice_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

impl World {
    /// Waits until the running operator has finished `target` reconciles since it started (so
    /// that whatever it would do about the state it saw has been done). Count with
    /// [`reconciles`] *before* the change whose reconcile is awaited.
    pub async fn wait_reconciles_total(&self, target: u64) {
        let metrics = self.metrics();
        wait_until(&format!("{target} reconciles"), || {
            let metrics = Arc::clone(&metrics);
            async move { (reconciles(&metrics) >= target).then_some(()) }
        })
        .await;
    }

    /// Starts a workload using the key in Secret `secret`: `reread` re-reads the Secret before
    /// every call (as a mounted Secret file is re-read), otherwise the key read at start is used
    /// throughout (an environment variable of a pod that is not restarted).
    pub fn workload(&self, secret: &str, reread: bool) -> Workload {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let secrets = self.secrets();
        let (secret, base_url, flag) = (secret.to_owned(), self.emu.base_url(), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let mut report = WorkloadReport::default();
            let mut key: Option<AgentKey> = None;
            while !flag.load(Ordering::SeqCst) {
                if reread || key.is_none() {
                    let s = secrets
                        .get(&secret)
                        .await
                        .expect("the workload reads its Secret");
                    key = secret_key(&s);
                }
                let Some(k) = key.clone() else {
                    report.errors.push("no key in the Secret".into());
                    break;
                };
                let client = AgentClient::new(&ClientConfig::new(base_url.clone()), k)
                    .expect("agent client");
                report.calls += 1;
                match client.whoami().await {
                    Ok(me) => {
                        report.keys.insert(me.key_id.unwrap_or_default());
                    }
                    Err(e) if matches!(e.status(), Some(401 | 403)) => report.unauthorized += 1,
                    Err(e) => report.errors.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report
        });
        Workload { stop, task }
    }
}

/// A running workload (see [`World::workload`]).
pub struct Workload {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<WorkloadReport>,
}

/// What a workload saw.
#[derive(Debug, Default)]
pub struct WorkloadReport {
    /// `whoami` calls made.
    pub calls: usize,
    /// Calls answered 401/403.
    pub unauthorized: usize,
    /// Other failures.
    pub errors: Vec<String>,
    /// Key ids `whoami` reported.
    pub keys: std::collections::BTreeSet<String>,
}

impl Workload {
    /// Stops the workload and returns what it saw.
    pub async fn stop(self) -> WorkloadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the workload task")
    }
}

/// A fail point hook that records every point passed (`before:MintKey`, `after:MintKey`, …) and
/// never fires.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    pub fn failpoints(&self) -> FailPoints {
        let me = self.clone();
        Arc::new(move |point: &str| {
            if let Ok(mut t) = me.0.lock() {
                t.push(point.to_owned());
            }
            false
        })
    }

    /// The actions started since position `from` of the trace (`before:` points only).
    pub fn actions_since(&self, from: usize) -> Vec<String> {
        self.0
            .lock()
            .map(|t| {
                t.iter()
                    .skip(from)
                    .filter_map(|p| p.strip_prefix("before:").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|t| t.len()).unwrap_or_default()
    }
}

impl World {
    /// Replaces the emulator by a fresh one with empty state at the same address (AgentLattice
    /// forgot every agent: they answer 404) and writes its new service key to the service key
    /// Secret.
    pub async fn replace_emulator(&mut self) {
        let addr = self.emu.local_addr();
        let placeholder = Arc::new(
            Emulator::start(EmulatorConfig::default())
                .await
                .expect("emulator starts"),
        );
        let old = std::mem::replace(&mut self.emu, placeholder);
        Arc::try_unwrap(old)
            .expect("nobody else holds the emulator")
            .shutdown()
            .await;
        let config = EmulatorConfig {
            bind: addr,
            ..Default::default()
        };
        let emu = wait_until("the emulator restarts on its address", || {
            let config = config.clone();
            async move { Emulator::start(config).await.ok() }
        })
        .await;
        self.emu = Arc::new(emu);
        let svc = self.emu.create_service_key("lattice-operator-tests");
        self.service_key = svc.api_key.clone();
        self.service_key_id = svc.id.clone();
        self.put_service_key(Some(&svc.api_key)).await;
    }

    /// A second service key of the same emulator (the old one stays valid until revoked).
    pub fn new_service_key(&mut self) -> String {
        let svc = self.emu.create_service_key("lattice-operator-tests-2");
        let previous = std::mem::replace(&mut self.service_key_id, svc.id.clone());
        self.service_key = svc.api_key.clone();
        previous
    }

    /// AgentLattice answers with this status code, counted by the operator's metrics.
    pub fn remote_calls_with_status(&self, code: u16) -> u64 {
        self.metrics()
            .encode()
            .lines()
            .filter(|l| l.starts_with("lattice_agentlattice_requests_total{"))
            .filter(|l| l.contains(&format!("=\"{code}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// A mark to wait on with [`World::wait_service_key_noticed`]: take it before writing the
    /// service key Secret.
    pub fn service_key_mark(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut rx = self
            .operator
            .as_ref()
            .expect("operator running")
            .service_key_changes
            .clone();
        rx.mark_unchanged();
        rx
    }

    /// Waits until the running operator noticed a service key Secret change made after `mark`
    /// was taken (its cached key is dropped by then).
    pub async fn wait_service_key_noticed(&self, mut mark: tokio::sync::watch::Receiver<u64>) {
        tokio::time::timeout(WAIT, mark.changed())
            .await
            .expect("the operator noticed the service key change")
            .expect("the operator runs");
    }

    /// Whether the resource still exists.
    pub async fn exists(&self, name: &str) -> bool {
        self.agents().get_opt(name).await.expect("read").is_some()
    }

    pub async fn wait_gone(&self, name: &str) {
        wait_until(&format!("{name} is gone"), || async move {
            (!self.exists(name).await).then_some(())
        })
        .await;
    }

    pub async fn wait_secret_gone(&self, name: &str) {
        wait_until(&format!("Secret {name} is gone"), || async move {
            self.secret(name).await.is_none().then_some(())
        })
        .await;
    }
}
