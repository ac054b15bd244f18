//! `lattice-operator dev`: the operator's main job on an embedded default, for a newcomer.
//!
//! It starts kube-sim (the Kubernetes API server simulator, TLS, with a kubeconfig written for
//! `kubectl`) and the AgentLattice emulator in process, installs the CRD, creates the service key
//! Secret with a key minted by the emulator, runs the same operator as `run` (assembled by
//! [`crate::run::operator`]), applies `examples/`, and prints step by step what happened: each
//! LatticeAgent Ready, its Secret (the key redacted), the agent's `whoami` and two actions through
//! the emulator with the key read back from the Secret. Then it stays up, prints what to try with
//! `kubectl`, and logs Kubernetes events, Secret key changes and AgentLattice calls as they
//! happen, until Ctrl-C or SIGTERM (graceful: running reconciles finish, the emulator writes its
//! state file). `--exit` ends after the walkthrough.
//!
//! State: both keep their state under `--state-dir`: the emulator in
//! `agentlattice-emulator.json` (key hashes only), kube-sim in `kube-sim.json` (every object,
//! Secrets included, like an unencrypted etcd; written at a clean stop). A restart resumes the
//! same LatticeAgents with the same agents and keys; the operator repairs what changed meanwhile
//! (the emulator's new address in each Secret's `AL_BASE_URL`, the new service key). Agents whose
//! resource no longer exists (kube-sim's file lost, or the process killed before it was written)
//! are revoked at start-up, so that their names can be registered again.
//!
//! Nothing printed ever contains a key: keys are shown by id and public prefix only, and every
//! line passes through [`redact`] as a last line of defence.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentlattice::{
    ActionRequest, ActionStatus, AgentClient, AgentKey, ClientConfig, ProvisionerClient, ServiceKey,
};
use agentlattice_emulator::{Emulator, EmulatorConfig, ServiceKeyStatus};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, watcher};
use kube_sim::KubeSim;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::cluster::{CRD_NAME, install_crd};
use crate::config::{Args, Command, DevArgs, RunArgs};
use crate::crd::LatticeAgent;
use crate::error::{Error, Result};
use crate::operator::Readiness;
use crate::redact::redact;
use crate::run::Shutdown;
use crate::secret::{
    AGENT_ID_FIELD, API_KEY_FIELD, BASE_URL_FIELD, KEY_ID_ANNOTATION, KEY_PREFIX_ANNOTATION,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};

/// Namespace of the service key Secret.
pub const SERVICE_KEY_NAMESPACE: &str = "lattice-system";
/// Name of the service key Secret.
pub const SERVICE_KEY_SECRET: &str = "agentlattice-service-key";
/// Its data key.
pub const SERVICE_KEY_FIELD: &str = "AL_SERVICE_KEY";
/// Label of the emulator service key `dev` creates.
const SERVICE_KEY_LABEL: &str = "lattice-operator-dev";
/// The emulator's state file under the state directory.
const STATE_FILE: &str = "agentlattice-emulator.json";
/// kube-sim's state file under the state directory.
const KUBE_STATE_FILE: &str = "kube-sim.json";
/// Field manager of what `dev` applies.
const FIELD_MANAGER: &str = "lattice-operator-dev";
/// Namespace of example objects that name none.
const DEFAULT_NAMESPACE: &str = "default";
/// How long the walkthrough waits for a LatticeAgent to become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// An action outside every example's capabilities, to show a denial.
const UNGRANTED_ACTION: &str = "deploy.production";

/// Prints one line of the walkthrough (stdout), redacted.
fn say(line: impl Display) {
    println!("{}", redact(&line.to_string()));
}

fn dev_error(what: &str, e: impl Display) -> Error {
    Error::Internal(redact(&format!("{what}: {e}")))
}

/// `lattice-operator dev`.
pub async fn run(args: DevArgs) -> Result<()> {
    let shutdown = Shutdown::on(shutdown_signal::requested());
    let env = tokio::select! {
        env = Env::start(&args, &shutdown) => env?,
        () = shutdown.wait() => return Ok(()),
    };
    let walkthrough = tokio::select! {
        r = walkthrough(&env, &args.examples) => Some(r),
        () = shutdown.wait() => None,
    };
    let result = match walkthrough {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(_)) if args.exit => {
            say("\n--exit: stopping.");
            Ok(())
        }
        Some(Ok(applied)) => {
            print_tips(&env, &applied);
            tokio::select! {
                () = follow(&env) => {}
                () = shutdown.wait() => {}
            }
            say("\nstopping: running reconciles finish, then the state files are written");
            Ok(())
        }
    };
    env.stop().await;
    result
}

/// Everything `dev` runs.
struct Env {
    sim: KubeSim,
    emu: Emulator,
    client: kube::Client,
    state_file: PathBuf,
    readiness: Readiness,
    stop_operator: Option<tokio::sync::oneshot::Sender<()>>,
    operator: JoinHandle<()>,
    admin: JoinHandle<()>,
}

impl Env {
    async fn start(args: &DevArgs, shutdown: &Shutdown) -> Result<Env> {
        std::fs::create_dir_all(&args.state_dir)?;
        let kubeconfig = args
            .kubeconfig
            .clone()
            .unwrap_or_else(|| args.state_dir.join("kubeconfig"));
        let kubeconfig = absolute(&kubeconfig);

        // 1. The Kubernetes API server simulator.
        let kube_state = absolute(&args.state_dir.join(KUBE_STATE_FILE));
        let sim = KubeSim::builder()
            .kubeconfig_path(&kubeconfig)
            .state_file(&kube_state)
            .start()
            .await
            .map_err(|e| dev_error("kube-sim did not start", e))?;
        let client = sim.client();
        say(format!(
            "1. kube-sim (Kubernetes API server simulator) serving on {} (state: {})",
            sim.base_url(),
            kube_state.display()
        ));
        say(format!("   kubeconfig: {}", kubeconfig.display()));
        say(format!("   export KUBECONFIG={}", kubeconfig.display()));

        // 2. The AgentLattice emulator, persisted.
        let state_file = absolute(&args.state_dir.join(STATE_FILE));
        let emu = Emulator::start(EmulatorConfig {
            state_file: Some(state_file.clone()),
            ..EmulatorConfig::default()
        })
        .await
        .map_err(|e| dev_error("the AgentLattice emulator did not start", e))?;
        let before = emu.snapshot();
        say(format!(
            "2. AgentLattice emulator serving on {} (state: {}; from earlier sessions: {} agents, {} of them live)",
            emu.base_url(),
            state_file.display(),
            before.agents.len(),
            before.live_agents().count()
        ));
        for old in before
            .service_keys
            .iter()
            .filter(|k| k.label == SERVICE_KEY_LABEL && k.status == ServiceKeyStatus::Active)
        {
            emu.revoke_service_key(&old.id)
                .map_err(|e| dev_error("revoking an earlier session's service key", e))?;
        }

        // 3. The CRD.
        install_crd(&client, Duration::from_secs(20)).await?;
        let existing = Api::<LatticeAgent>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        let uids: HashSet<String> = existing
            .items
            .iter()
            .filter_map(|a| a.metadata.uid.clone())
            .collect();
        say(format!(
            "3. CRD {CRD_NAME} installed ({} LatticeAgents from earlier sessions)",
            uids.len()
        ));

        // 4. The service key Secret.
        let svc = emu.create_service_key(SERVICE_KEY_LABEL);
        let service_key: ServiceKey = svc
            .api_key
            .parse()
            .map_err(|e| dev_error("the emulator's service key", e))?;
        ensure_namespace(&client, SERVICE_KEY_NAMESPACE).await?;
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": SERVICE_KEY_SECRET, "namespace": SERVICE_KEY_NAMESPACE},
            "type": "Opaque",
            "stringData": {SERVICE_KEY_FIELD: svc.api_key},
        }))?;
        Api::<Secret>::namespaced(client.clone(), SERVICE_KEY_NAMESPACE)
            .patch(
                SERVICE_KEY_SECRET,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        drop(secret);
        say(format!(
            "4. service key {} created at the emulator (prefix {}, key redacted) and stored in \
             Secret {SERVICE_KEY_NAMESPACE}/{SERVICE_KEY_SECRET} ({SERVICE_KEY_FIELD})",
            svc.id, svc.key_prefix
        ));
        drop(svc);

        // Agents whose resource no longer exists (kube-sim's state was lost).
        let provisioner = ProvisionerClient::new(&ClientConfig::new(emu.base_url()), service_key)
            .map_err(|e| dev_error("AgentLattice client", e))?;
        let orphans: Vec<_> = before
            .live_agents()
            .filter(|a| a.metadata.get("k8s.uid").is_some_and(|u| !uids.contains(u)))
            .map(|a| (a.id.clone(), a.name.clone()))
            .collect();
        for (id, name) in &orphans {
            provisioner
                .revoke_agent(id)
                .await
                .map_err(|e| dev_error("revoking an earlier session's agent", e))?;
            say(format!(
                "   revoked agent {name} ({id}) of an earlier session: its LatticeAgent no \
                 longer exists"
            ));
        }

        // 5. The operator, assembled exactly as `run` does.
        let run_args = run_args(args, &emu.base_url())?;
        let operator = crate::run::operator(client.clone(), &run_args);
        let readiness = operator.readiness();
        let (addr, admin_server) = admin::start(
            run_args.metrics_addr,
            Admin::new(operator.metrics(), readiness.clone()),
            shutdown.wait(),
        )
        .await?;
        let admin = tokio::spawn(admin_server);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let operator = tokio::spawn(operator.run(async move {
            let _ = stop_rx.await;
        }));
        let env = Env {
            sim,
            emu,
            client,
            state_file,
            readiness,
            stop_operator: Some(stop_tx),
            operator,
            admin,
        };
        env.wait_operator_ready().await?;
        say(format!(
            "5. operator running (watching all namespaces, concurrency {}); metrics on http://{addr}/metrics",
            run_args.operator.concurrency
        ));
        Ok(env)
    }

    async fn wait_operator_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.readiness.is_ready() {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Internal(
                    "the operator did not become ready within 30s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop_operator.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), &mut self.operator).await;
        self.operator.abort();
        self.admin.abort();
        let state_file = self.state_file.clone();
        self.emu.shutdown().await;
        self.sim.shutdown().await;
        say(format!(
            "stopped. State kept in {} (the next `dev` resumes from it).",
            state_file
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ));
    }
}

/// The `run` settings for the embedded world: the arguments `run` would parse, with `dev`'s
/// operator settings.
fn run_args(args: &DevArgs, base_url: &str) -> Result<RunArgs> {
    let service_key_secret = format!("{SERVICE_KEY_NAMESPACE}/{SERVICE_KEY_SECRET}");
    let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).to_string();
    let parsed = Args::try_parse_from([
        "lattice-operator",
        "run",
        "--agentlattice-url",
        base_url,
        "--service-key-secret",
        &service_key_secret,
        "--service-key-field",
        SERVICE_KEY_FIELD,
        "--metrics-addr",
        &metrics_addr,
        "--leader-election",
        "false",
    ])
    .map_err(|e| Error::Config(e.to_string()))?;
    match parsed.command {
        Command::Run(mut run) => {
            run.operator = args.operator.clone();
            Ok(run)
        }
        _ => Err(Error::Internal("`run` arguments expected".into())),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<bool> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An object applied from `examples/`.
#[derive(Debug, Clone)]
struct Applied {
    kind: String,
    namespace: Option<String>,
    name: String,
    object: DynamicObject,
}

impl Applied {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The manifests in `dir`: `*.yaml`/`*.yml`, by file name, without `*.example.yaml` placeholders.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("examples directory {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !name.ends_with(".example.yaml")
                && !name.ends_with(".example.yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Applies one manifest with server-side apply, wherever its kind is served.
async fn apply(client: &kube::Client, value: serde_json::Value, file: &Path) -> Result<Applied> {
    let object: DynamicObject = serde_json::from_value(value)?;
    let types = object.types.clone().ok_or_else(|| {
        Error::Config(format!(
            "{}: a manifest without apiVersion/kind",
            file.display()
        ))
    })?;
    let name = object.metadata.name.clone().ok_or_else(|| {
        Error::Config(format!(
            "{}: a manifest without metadata.name",
            file.display()
        ))
    })?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), types.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let namespace = match caps.scope {
        Scope::Namespaced => Some(
            object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        ),
        Scope::Cluster => None,
    };
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => {
            ensure_namespace(client, ns).await?;
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        None => Api::all_with(client.clone(), &resource),
    };
    let applied = api.patch(&name, &params, &Patch::Apply(&object)).await?;
    Ok(Applied {
        kind: types.kind,
        namespace,
        name,
        object: applied,
    })
}

/// Applies `examples/` and shows what the operator made of it.
async fn walkthrough(env: &Env, examples: &Path) -> Result<Vec<Applied>> {
    let files = manifest_files(examples)?;
    if files.is_empty() {
        return Err(Error::Config(format!(
            "no manifests in {} (run from the repository root, or pass --examples)",
            examples.display()
        )));
    }
    say(format!("6. applying {}:", examples.display()));
    let mut applied = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for doc in crate::yaml::documents(&text)? {
            let a = apply(&env.client, doc, file).await?;
            say(format!(
                "   applied {} {}{} ({})",
                a.kind,
                a.namespace
                    .as_deref()
                    .map(|ns| format!("{ns}/"))
                    .unwrap_or_default(),
                a.name,
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            applied.push(a);
        }
    }

    let mut step = 7;
    for agent in applied.iter().filter(|a| a.kind == "LatticeAgent") {
        show_agent(env, agent, &mut step).await?;
    }
    for deployment in applied.iter().filter(|a| a.kind == "Deployment") {
        show_deployment(env, deployment, step).await?;
        step += 1;
    }
    Ok(applied)
}

fn ready_condition(
    a: &LatticeAgent,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Waits for the LatticeAgent to be Ready, then shows its Secret, `whoami` and two actions.
async fn show_agent(env: &Env, agent: &Applied, step: &mut usize) -> Result<()> {
    let api: Api<LatticeAgent> = Api::namespaced(env.client.clone(), agent.ns());
    let what = format!("LatticeAgent {}/{}", agent.ns(), agent.name);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), agent.ns());
    let base_url = env.emu.base_url();
    let la = loop {
        let la = api.get(&agent.name).await?;
        if let Some(c) = ready_condition(&la) {
            // Ready, and the operator has seen this generation and this session's emulator
            // (after a restart the Secret names the previous session's address until repaired).
            let current = la
                .status
                .as_ref()
                .is_some_and(|s| s.observed_generation == la.metadata.generation)
                && secret_base_url(&secrets, &la).await.as_deref() == Some(base_url.as_str());
            if c.status == "True" && current {
                break la;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Internal(redact(&format!(
                    "{what} is not Ready after {READY_TIMEOUT:?}: {} ({})",
                    c.reason, c.message
                ))));
            }
        } else if tokio::time::Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "{what} has no Ready condition after {READY_TIMEOUT:?}: is the operator running?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = la.status.clone().unwrap_or_default();
    let agent_id = status.agent_id.clone().unwrap_or_default();
    say(format!(
        "{step}. {what} is Ready: agent {} ({agent_id}), capabilities [{}]",
        status.agent_name.as_deref().unwrap_or("?"),
        la.spec.capabilities.join(", ")
    ));
    *step += 1;

    let secret_name = status
        .secret_name
        .clone()
        .ok_or_else(|| Error::Internal(format!("{what}: Ready without a Secret name")))?;
    let secret = secrets.get(&secret_name).await?;
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    let key_id = ann.get(KEY_ID_ANNOTATION).cloned().unwrap_or_default();
    say(format!(
        "{step}. Secret {}/{secret_name} written (type {}, owned by the LatticeAgent):",
        agent.ns(),
        secret.type_.as_deref().unwrap_or("?")
    ));
    say(format!(
        "   {API_KEY_FIELD}=<redacted> (key {key_id}, prefix {}, {} bytes)",
        ann.get(KEY_PREFIX_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("?"),
        data.get(API_KEY_FIELD).map(|v| v.0.len()).unwrap_or(0)
    ));
    say(format!("   {AGENT_ID_FIELD}={}", text(AGENT_ID_FIELD)));
    say(format!("   {BASE_URL_FIELD}={}", text(BASE_URL_FIELD)));
    *step += 1;

    // What a workload would do: read the key from the Secret and call AgentLattice with it.
    let key = data
        .get(API_KEY_FIELD)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .and_then(|k| AgentKey::new(k).ok())
        .ok_or_else(|| Error::Internal(format!("{what}: the Secret holds no agent key")))?;
    drop(data);
    drop(secret);
    let client = AgentClient::new(&ClientConfig::new(base_url), key)
        .map_err(|e| dev_error("AgentLattice client", e))?;
    let whoami = client
        .whoami()
        .await
        .map_err(|e| dev_error("whoami with the Secret's key", e))?;
    let matches = whoami.config_id == agent_id && whoami.key_id.as_deref() == Some(&key_id);
    say(format!(
        "{step}. whoami with the key from the Secret: ok, agent {} ({}), key {}, active {}, \
         capabilities [{}]{}",
        whoami.name,
        whoami.config_id,
        whoami.key_id.as_deref().unwrap_or("?"),
        whoami.is_active,
        whoami.capabilities.join(", "),
        if matches {
            ""
        } else {
            " (does not match the resource's status!)"
        }
    ));
    *step += 1;

    let mut actions: Vec<String> = la.spec.capabilities.iter().take(1).cloned().collect();
    if !la.spec.capabilities.iter().any(|c| c == UNGRANTED_ACTION) {
        actions.push(UNGRANTED_ACTION.to_owned());
    }
    for action in actions {
        let result = client
            .execute_action(&ActionRequest::new(action.clone()))
            .await
            .map_err(|e| dev_error("action", e))?;
        let outcome = match result.status {
            ActionStatus::Executed => "executed".to_owned(),
            ActionStatus::Denied => format!(
                "denied ({})",
                result.denial_reason.as_deref().unwrap_or("no reason given")
            ),
            other => format!("{other:?}"),
        };
        say(format!(
            "{step}. action {action} as this agent: {outcome} (audit event {})",
            result.audit_event_id
        ));
        *step += 1;
    }
    Ok(())
}

/// `AL_BASE_URL` of the resource's Secret, if it has one.
async fn secret_base_url(secrets: &Api<Secret>, la: &LatticeAgent) -> Option<String> {
    let name = la.status.as_ref()?.secret_name.clone()?;
    let secret = secrets.get_opt(&name).await.ok()??;
    let value = secret.data?.remove(BASE_URL_FIELD)?;
    String::from_utf8(value.0).ok()
}

/// The Secrets a Deployment's containers take with `envFrom`.
fn env_from_secrets(object: &DynamicObject) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let containers = object.data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in containers {
        for source in c["envFrom"].as_array().cloned().unwrap_or_default() {
            if let Some(name) = source["secretRef"]["name"].as_str() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

async fn show_deployment(env: &Env, deployment: &Applied, step: usize) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), deployment.ns());
    let names = env_from_secrets(&deployment.object);
    if names.is_empty() {
        say(format!(
            "{step}. Deployment {}/{} takes no Secret through envFrom",
            deployment.ns(),
            deployment.name
        ));
        return Ok(());
    }
    for name in names {
        let described = match secrets.get_opt(&name).await? {
            Some(s) => {
                let keys: Vec<String> = s.data.unwrap_or_default().into_keys().collect::<Vec<_>>();
                format!("exists, its containers get {}", keys.join(", "))
            }
            None => "does not exist (yet)".to_owned(),
        };
        say(format!(
            "{step}. Deployment {}/{} reads Secret {name} through envFrom: {described}. \
             (kube-sim stores the Deployment but runs no pods.)",
            deployment.ns(),
            deployment.name
        ));
    }
    Ok(())
}

fn print_tips(env: &Env, applied: &[Applied]) {
    let kubeconfig = env.sim.kubeconfig_path().display().to_string();
    say("\nThe operator keeps running. Try, in another shell:");
    say(format!("  export KUBECONFIG={kubeconfig}"));
    say("  kubectl get latticeagents -A            # Ready, Agent, Secret, Key age");
    for a in applied.iter().filter(|a| a.kind == "LatticeAgent") {
        let ns = a.ns();
        let n = &a.name;
        say(format!(
            "  kubectl -n {ns} annotate la {n} --overwrite agentlattice.io/rotate=\"$(date +%s)\"       # rotate the key"
        ));
        say(format!(
            "  kubectl -n {ns} annotate la {n} --overwrite agentlattice.io/compromised=\"$(date +%s)\"  # rotate, revoke the old key at once"
        ));
        say(format!(
            "  kubectl -n {ns} delete secret {n}-agent-key   # drift: a fresh key is minted (if secretName is the default)"
        ));
        say(format!(
            "  kubectl -n {ns} delete la {n}                 # revokes the agent; the Secret goes with it"
        ));
        say(format!("  kubectl -n {ns} get events --watch"));
    }
    say("Events, Secret key changes and AgentLattice calls are logged below. Ctrl-C stops.\n");
}

/// Logs what happens: Kubernetes events (events.k8s.io), the key held by each operator-managed
/// Secret, and AgentLattice's audit trail. Runs until the process is stopped.
async fn follow(env: &Env) {
    let events = follow_events(env.client.clone());
    let secrets = follow_secrets(env.client.clone());
    let audit = follow_audit(&env.emu);
    futures::join!(events, secrets, audit);
}

async fn follow_events(client: kube::Client) {
    let api: Api<KubeEvent> = Api::all(client);
    // Events already shown (or older than the walkthrough's end) are skipped.
    let mut seen: HashSet<String> = HashSet::new();
    if let Ok(list) = api.list(&ListParams::default()).await {
        seen.extend(list.items.into_iter().filter_map(|e| e.metadata.uid));
    }
    let stream = watcher::watcher(api, watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(e)) => {
                let Some(uid) = e.metadata.uid.clone() else {
                    continue;
                };
                if !seen.insert(uid) {
                    continue;
                }
                let regarding = e
                    .regarding
                    .as_ref()
                    .map(|r| {
                        format!(
                            "{} {}/{}",
                            r.kind.as_deref().unwrap_or("?"),
                            r.namespace.as_deref().unwrap_or("-"),
                            r.name.as_deref().unwrap_or("?")
                        )
                    })
                    .unwrap_or_default();
                say(format!(
                    "[{}] event {} {} {regarding}: {}",
                    now(),
                    e.type_.as_deref().unwrap_or("Normal"),
                    e.reason.as_deref().unwrap_or("?"),
                    e.note.as_deref().unwrap_or("")
                ));
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "event watch error (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn follow_secrets(client: kube::Client) {
    let api: Api<Secret> = Api::all(client);
    let config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let stream = watcher::watcher(api, config);
    futures::pin_mut!(stream);
    // Secret (namespace/name) → the key id it holds; filled by the initial list.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        match event {
            watcher::Event::Init => {}
            watcher::Event::InitApply(s) => {
                keys.insert(secret_id(&s), key_of(&s));
            }
            watcher::Event::InitDone => listed = true,
            watcher::Event::Apply(s) if listed => {
                let id = secret_id(&s);
                let key = key_of(&s);
                let prefix = s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(KEY_PREFIX_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                match keys.insert(id.clone(), key.clone()) {
                    Some(old) if old == key => {}
                    Some(old) => say(format!(
                        "[{}] Secret {id} now holds key {key} (prefix {prefix}); it held key {old}",
                        now()
                    )),
                    None => say(format!(
                        "[{}] Secret {id} written with key {key} (prefix {prefix})",
                        now()
                    )),
                }
            }
            watcher::Event::Apply(_) => {}
            watcher::Event::Delete(s) => {
                let id = secret_id(&s);
                keys.remove(&id);
                say(format!("[{}] Secret {id} deleted", now()));
            }
        }
    }
}

fn secret_id(s: &Secret) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or("-"),
        s.metadata.name.as_deref().unwrap_or("?")
    )
}

fn key_of(s: &Secret) -> String {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEY_ID_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "(none)".into())
}

async fn follow_audit(emu: &Emulator) {
    let mut last = emu.audit().last().map(|e| e.seq).unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let since = last;
        for entry in emu.audit().into_iter().filter(|e| e.seq > since) {
            last = entry.seq;
            say(format!(
                "[{}] AgentLattice {} {}{}{} by {:?}",
                now(),
                entry.operation,
                entry.outcome,
                entry
                    .agent_id
                    .as_deref()
                    .map(|a| format!(" agent {a}"))
                    .unwrap_or_default(),
                entry
                    .key_id
                    .as_deref()
                    .map(|k| format!(" key {k}"))
                    .unwrap_or_default(),
                entry.actor.kind,
            ));
        }
    }
}

fn now() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_skip_empty_ones() {
        let docs =
            crate::yaml::documents("---\na: 1\n---\n# only a comment\n---\nb: 2\n").expect("YAML");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
    }

    #[test]
    fn placeholders_are_not_applied() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let files = manifest_files(&dir).expect("examples listed");
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["deployment.yaml", "latticeagent.yaml"]);
    }

    #[test]
    fn env_from_secrets_are_found() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deployment.yaml"),
        )
        .expect("example");
        let doc = crate::yaml::documents(&text).expect("YAML").remove(0);
        let object: DynamicObject = serde_json::from_value(doc).expect("object");
        assert_eq!(
            env_from_secrets(&object).into_iter().collect::<Vec<_>>(),
            ["deploy-bot-agent-key"]
        );
    }

    #[test]
    fn run_arguments_come_from_the_dev_arguments() {
        let Command::Dev(dev) = Args::try_parse_from([
            "lattice-operator",
            "dev",
            "--concurrency",
            "3",
            "--state-dir",
            "/tmp/x",
        ])
        .expect("dev arguments")
        .command
        else {
            panic!("dev expected");
        };
        let run = run_args(&dev, "http://127.0.0.1:9").expect("run arguments");
        assert_eq!(run.agentlattice_url, "http://127.0.0.1:9");
        assert_eq!(run.operator.concurrency, 3);
        assert!(!run.leader_election);
        assert_eq!(run.service_key_secret.namespace, SERVICE_KEY_NAMESPACE);
        assert_eq!(run.metrics_addr.port(), 0);
    }
}
