//! The `run` subcommand: the production operator against the cluster of `KUBECONFIG` (or the
//! in-cluster configuration).
//!
//! A [`Replica`] goes through these phases ([`PhaseKind`], reported by `/readyz`):
//!
//! 1. The admin server starts (`/metrics`, `/healthz`, `/readyz`), so the probes answer at once.
//! 2. **Waiting for the CRD**: not ready; checks every few seconds and logs how to install it.
//! 3. **Standby** (with leader election): waits for the Lease (see [`lease`]); ready, since a
//!    standby is healthy and must not stall a rolling update.
//! 4. **Running**: holds the Lease and runs the controllers; ready once every cache has synced.
//! 5. **Stopping**, on SIGTERM or Ctrl-C: no new reconcile starts, running reconciles finish
//!    (the Lease is renewed meanwhile), then the Lease is released so a standby takes over at
//!    once, and the process exits 0.
//!
//! When the Lease is lost instead (not renewed within its renew deadline, or taken by another
//! replica), the replica stops at once, without waiting for running reconciles — another replica
//! may be about to lead, and every step of a reconcile is safe to interrupt (design §4) — and
//! `run` returns [`Error::LeadershipLost`]: the process exits 1 and its pod restarts as a
//! standby, with fresh caches.

pub mod lease;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use crate::admin::{self, Admin, Phase, PhaseKind};
use crate::cluster::check_crd;
use crate::config::RunArgs;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::operator::{Operator, OperatorConfig};
use crate::remote::{self, AgentLattice, ServiceKeyProvider, ServiceKeySource};
use lease::{LeaderElector, LeaseTiming};

/// How often a replica checks for the CRD while it is missing.
pub const CRD_POLL: Duration = Duration::from_secs(5);

/// A shutdown trigger that many tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A trigger fired when `signal` resolves.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    /// Resolves once the trigger fired.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }
}

/// The operator of `args`, on `client`, with its service key from the configured Secret.
pub fn operator(client: kube::Client, args: &RunArgs) -> Operator {
    let metrics = Arc::new(Metrics::with_per_agent_metrics(
        args.operator.per_agent_metrics,
    ));
    let config = remote::client_config(
        &args.agentlattice_url,
        args.operator.al_timeout.unsigned_abs(),
        Some(agentlattice::RateLimit::new(
            args.operator.al_rate,
            args.operator.al_burst,
        )),
        metrics.call_observer(),
    );
    let provider = Arc::new(
        ServiceKeyProvider::new(
            client.clone(),
            ServiceKeySource {
                secret: args.service_key_secret.clone(),
                field: args.service_key_field.clone(),
            },
            config,
        )
        .with_metrics(Arc::clone(&metrics)),
    );
    let remote = Arc::new(AgentLattice::new(Arc::clone(&provider)));
    let settings = args.settings();
    warn_if_default_provisioner_allows_anything(&settings.default_policy);
    let provisioners = {
        let timeout = args.operator.al_timeout.unsigned_abs();
        let rate = agentlattice::RateLimit::new(args.operator.al_rate, args.operator.al_burst);
        let observer = metrics.call_observer();
        Arc::new(
            crate::provisioners::Provisioners::new(
                client.clone(),
                Arc::clone(&remote) as Arc<dyn remote::Backend>,
                &args.agentlattice_url,
                Arc::new(move |base_url: &str| {
                    // Each provisioner has its own rate limit: one team's burst does not starve
                    // another's (AgentLattice limits per service key).
                    remote::client_config(base_url, timeout, Some(rate), Arc::clone(&observer))
                }),
                &args.operator.namespaces,
                settings.resync_interval.unsigned_abs(),
                settings.service_key_retry.unsigned_abs(),
            )
            .with_alter_config({
                let observer = metrics.alter_observer();
                let rate = ::alter::RateLimit::new(args.operator.al_rate, args.operator.al_burst);
                Arc::new(move |base_url: &str, app_id: &str| {
                    // The same timeout and per-provisioner rate limit as AgentLattice's clients.
                    ::alter::ClientConfig::new(base_url)
                        .app_id(app_id)
                        .request_timeout(timeout)
                        .rate_limit(Some(rate))
                        .observer(Arc::clone(&observer))
                        .user_agent(concat!("lattice-operator/", env!("CARGO_PKG_VERSION")))
                })
            }),
        )
    };
    let mut config = OperatorConfig::new(settings);
    config.namespaces = args.operator.namespaces.clone();
    config.concurrency = args.operator.concurrency;
    config.workload_identities = args.operator.workloads && args.operator.workload_identities;
    config.instance = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty());
    Operator::new(client, config, remote, metrics)
        .with_service_key_provider(provider)
        .with_provisioners(provisioners)
}

/// The loud start-up warning of an open default provisioner (docs/tenancy.md).
pub fn warn_if_default_provisioner_allows_anything(policy: &crate::plan::policy::Policy) {
    if policy.allows_any_capability() {
        tracing::warn!(
            "the default provisioner allows ANY capability (--default-allowed-capabilities=*): \
             anyone who can create a LatticeAgent without spec.provisionerRef can get an agent \
             with any capability under the operator's service key; list the allowed \
             capabilities, or use provisioners (docs/tenancy.md)"
        );
    }
}

/// This replica's identity in the Lease: the pod name (`POD_NAME`, set by the chart from the
/// downward API) or the host name, plus a random suffix, so that a restarted container never
/// mistakes its predecessor's Lease for its own (client-go does the same).
pub fn default_identity() -> String {
    let base = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "lattice-operator".to_owned());
    format!("{base}_{:08x}", rand::random::<u32>())
}

/// One replica of the operator, as `run` starts it (and as the tests start several).
pub struct Replica {
    /// The Kubernetes client (its credentials are the operator's).
    pub client: kube::Client,
    /// The settings.
    pub args: RunArgs,
    /// The identity in the Lease ([`default_identity`]).
    pub identity: String,
    /// How often to check for the CRD while it is missing ([`CRD_POLL`]).
    pub crd_poll: Duration,
}

/// A started replica: its admin server is listening.
pub struct Started {
    /// The admin server's address.
    pub admin_addr: SocketAddr,
    /// The replica's metrics.
    pub metrics: Arc<Metrics>,
    /// The replica's phase.
    pub phase: Phase,
    /// Runs the replica until the shutdown future resolves (then returns `Ok`), or until
    /// leadership is lost ([`Error::LeadershipLost`]). Dropping it stops the replica at once
    /// without releasing the Lease, as a crash would.
    pub run: BoxFuture<'static, Result<()>>,
}

impl Replica {
    /// A replica on `client` with `args`, the default identity and CRD poll.
    pub fn new(client: kube::Client, args: RunArgs) -> Replica {
        Replica {
            client,
            args,
            identity: default_identity(),
            crd_poll: CRD_POLL,
        }
    }

    /// Binds the admin server and returns the replica, ready to run until `shutdown`.
    pub async fn start(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Started> {
        let Replica {
            client,
            args,
            identity,
            crd_poll,
        } = self;
        let shutdown = Shutdown::on(shutdown);
        let operator = operator(client.clone(), &args);
        let metrics = operator.metrics();
        let phase = Phase::new(PhaseKind::WaitingForCrd);
        let (listener, admin_addr) = admin::bind(args.metrics_addr).await?;
        let admin = Admin::new(operator.metrics(), operator.readiness()).with_phase(phase.clone());
        let run = {
            let phase = phase.clone();
            Box::pin(async move {
                let (admin_stop, admin_stopped) = oneshot::channel::<()>();
                let server = admin::serve(listener, admin, async move {
                    let _ = admin_stopped.await;
                });
                let main = async move {
                    let result =
                        lead(client, args, identity, crd_poll, operator, phase, shutdown).await;
                    let _ = admin_stop.send(());
                    result
                };
                let (result, ()) = tokio::join!(main, server);
                result
            }) as BoxFuture<'static, Result<()>>
        };
        Ok(Started {
            admin_addr,
            metrics,
            phase,
            run,
        })
    }
}

/// Waits for the CRD (returns `false` on shutdown first).
async fn wait_for_crd(client: &kube::Client, poll: Duration, shutdown: &Shutdown) -> bool {
    let mut last: Option<String> = None;
    loop {
        match check_crd(client).await {
            Ok(()) => {
                if last.is_some() {
                    tracing::info!("the CRD is installed");
                }
                return true;
            }
            Err(e) => {
                let message = e.to_string();
                if last.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "waiting for the CRD (not ready until then)");
                    last = Some(message);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.wait() => return false,
        }
    }
}

/// Phases 2 to 5 of a replica (see the module documentation).
async fn lead(
    client: kube::Client,
    args: RunArgs,
    identity: String,
    crd_poll: Duration,
    operator: Operator,
    phase: Phase,
    shutdown: Shutdown,
) -> Result<()> {
    if !wait_for_crd(&client, crd_poll, &shutdown).await {
        phase.set(PhaseKind::Stopping);
        return Ok(());
    }
    let stop = {
        let shutdown = shutdown.clone();
        let phase = phase.clone();
        async move {
            shutdown.wait().await;
            phase.set(PhaseKind::Stopping);
            tracing::info!("shutting down: no new reconciles, finishing the running ones");
        }
    };
    let namespaces = if args.operator.namespaces.is_empty() {
        "all".to_owned()
    } else {
        args.operator.namespaces.join(",")
    };
    if !args.leader_election {
        phase.set(PhaseKind::Running);
        tracing::info!(%namespaces, agentlattice = %args.agentlattice_url, "lattice-operator running (no leader election)");
        operator.run(stop).await;
        return Ok(());
    }

    let timing = LeaseTiming::for_duration(args.lease_duration.unsigned_abs());
    let mut elector = LeaderElector::new(
        client,
        args.lease_namespace(),
        &args.lease_name,
        identity,
        timing,
    );
    phase.set(PhaseKind::Standby);
    tracing::info!(
        lease = %format!("{}/{}", args.lease_namespace(), args.lease_name),
        identity = %elector.identity(),
        "waiting for the Lease"
    );
    let renewed = tokio::select! {
        at = elector.acquire() => at,
        () = shutdown.wait() => {
            phase.set(PhaseKind::Stopping);
            return Ok(());
        }
    };
    phase.set(PhaseKind::Running);
    tracing::info!(%namespaces, agentlattice = %args.agentlattice_url, identity = %elector.identity(), "leading: lattice-operator running");

    let (done_tx, done_rx) = oneshot::channel::<()>();
    let reconciling = async move {
        operator.run(stop).await;
        let _ = done_tx.send(());
    };
    let holding = elector.hold(renewed, async {
        let _ = done_rx.await;
    });
    tokio::pin!(reconciling, holding);
    let lost = tokio::select! {
        held = &mut holding => held.err(),
        () = &mut reconciling => (&mut holding).await.err(),
    };
    match lost {
        None => Ok(()),
        Some(lost) => {
            // Dropping `reconciling` (when it still runs) cancels every running reconcile now.
            phase.set(PhaseKind::Stopping);
            tracing::error!(reason = %lost, "leadership lost: stopping at once");
            Err(Error::LeadershipLost(lost.to_string()))
        }
    }
}

/// `lattice-operator run`: until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "no Kubernetes configuration (KUBECONFIG or in-cluster): {}",
            crate::error::kube_message(&e)
        ))
    })?;
    let started = Replica::new(client, args)
        .start(shutdown_signal::requested())
        .await?;
    tracing::info!(addr = %started.admin_addr, "admin server listening (/metrics, /healthz, /readyz)");
    started.run.await
}
