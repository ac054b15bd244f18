//! `lattice-operator dev`: the operator's main job on an embedded default, for a newcomer.
//!
//! It starts kube-sim (the Kubernetes API server simulator, TLS, with a kubeconfig written for
//! `kubectl`; it runs simulated pods for Deployments, StatefulSets and DaemonSets) and the
//! AgentLattice emulator in process, installs the CRD, creates the service key Secret with a key
//! minted by the emulator, runs the same operator as `run` (assembled by
//! [`crate::run::operator`]), applies `examples/`, and prints step by step what happened
//! ([`walkthrough`]): each LatticeAgent Ready, its Secret (the key redacted), the agent's `whoami`
//! and two actions through the emulator with the key read back from the Secret; each workload's
//! pods, the identity its annotations asked for and the key it reads; one rotation from the new
//! key through the readers' restart to the old key's revocation. Then it stays up, prints what to
//! try with `kubectl`, and logs Kubernetes events, Secret key changes and AgentLattice calls as
//! they happen ([`follow`]), until Ctrl-C or SIGTERM (graceful: running reconciles finish, the
//! emulator writes its state file). `--exit` ends after the walkthrough.
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

mod follow;
mod walkthrough;

use std::collections::HashSet;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentlattice::{ClientConfig, ProvisionerClient, ServiceKey};
use agentlattice_emulator::{Emulator, EmulatorConfig, ServiceKeyStatus};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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
use follow::follow;
use walkthrough::{print_tips, walkthrough};

/// Namespace of the service key Secret.
pub const SERVICE_KEY_NAMESPACE: &str = "lattice-system";
/// Name of the service key Secret.
pub const SERVICE_KEY_SECRET: &str = "agentlattice-service-key";
/// Its data key.
pub const SERVICE_KEY_FIELD: &str = "AL_SERVICE_KEY";
/// Label of the emulator service key `dev` creates.
const SERVICE_KEY_LABEL: &str = "lattice-operator-dev";
/// The file under the state directory holding the emulator's admin token (owner-only).
const ADMIN_TOKEN_FILE: &str = "agentlattice-emulator-admin-token";

/// Writes `bytes` to `path`, readable and writable by the owner only (created that way, so there
/// is no moment when others may read it).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// The emulator's state file under the state directory.
const STATE_FILE: &str = "agentlattice-emulator.json";
/// kube-sim's state file under the state directory.
const KUBE_STATE_FILE: &str = "kube-sim.json";
/// Field manager of what `dev` applies.
const FIELD_MANAGER: &str = "lattice-operator-dev";
/// Namespace of example objects that name none.
const DEFAULT_NAMESPACE: &str = "default";

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
        // The emulator's admin token, for `lattice-operator verify` against this session: in a
        // file only its owner can read (printed nowhere), named by the hint below.
        let token_file = absolute(&args.state_dir.join(ADMIN_TOKEN_FILE));
        write_private(&token_file, emu.admin_token().as_bytes())?;
        say(format!(
            "   check the invariant: LATTICE_VERIFY_EMULATOR_TOKEN=\"$(cat {})\" lattice-operator verify --kubeconfig {} --emulator-url {}",
            token_file.display(),
            kubeconfig.display(),
            emu.base_url()
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
#[cfg(test)]
mod tests {
    use super::*;

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
