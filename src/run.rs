//! The `run` subcommand: the production operator against the cluster of `KUBECONFIG` (or the
//! in-cluster configuration).
//!
//! Start-up order: logs → Kubernetes client → the CRD is installed (or the operator says how to
//! install it and exits) → the admin server → leadership → the controllers, until SIGTERM or
//! Ctrl-C, after which running reconciles finish and the process exits.
//!
//! Leader election is a later issue; [`Leadership`] is the seam it plugs into: the controllers
//! start once leadership is acquired and stop (gracefully) when it is lost.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::config::RunArgs;
use crate::controller::{self, Operator, OperatorConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::remote::{self, AgentLattice, ServiceKeyProvider, ServiceKeySource};

/// Leadership of this replica: resolves `lost` when another replica takes over.
pub struct Leadership {
    /// Resolves when leadership is lost (never, without leader election).
    pub lost: BoxFuture<'static, ()>,
}

impl Leadership {
    /// Waits until this replica leads. Without leader election (this build) it leads at once.
    pub async fn acquire(args: &RunArgs) -> Leadership {
        if args.leader_election {
            tracing::warn!(
                lease = %args.lease_name,
                namespace = %args.lease_namespace(),
                "leader election is not part of this build yet: run exactly one replica"
            );
        }
        Leadership {
            lost: Box::pin(futures::future::pending()),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

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
    let metrics = Arc::new(Metrics::new());
    let config = remote::client_config(
        &args.agentlattice_url,
        args.operator.al_timeout.unsigned_abs(),
        Some(agentlattice::RateLimit::new(
            args.operator.al_rate,
            args.operator.al_burst,
        )),
        metrics.call_observer(),
    );
    let provider = Arc::new(ServiceKeyProvider::new(
        client.clone(),
        ServiceKeySource {
            secret: args.service_key_secret.clone(),
            field: args.service_key_field.clone(),
        },
        config,
    ));
    let remote = Arc::new(AgentLattice::new(Arc::clone(&provider)));
    let mut config = OperatorConfig::new(args.settings());
    config.namespaces = args.operator.namespaces.clone();
    config.concurrency = args.operator.concurrency;
    config.instance = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty());
    Operator::new(client, config, remote, metrics).with_service_key_provider(provider)
}

/// `lattice-operator run`.
pub async fn run(args: RunArgs) -> Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "no Kubernetes configuration (KUBECONFIG or in-cluster): {}",
            crate::error::kube_message(&e)
        ))
    })?;
    controller::check_crd(&client).await?;
    let operator = operator(client, &args);
    let shutdown = Shutdown::on(shutdown_signal());
    let (addr, admin_server) = admin::start(
        args.metrics_addr,
        Admin {
            metrics: operator.metrics(),
            readiness: operator.readiness(),
        },
        shutdown.wait(),
    )
    .await?;
    tracing::info!(%addr, "admin server listening (/metrics, /healthz, /readyz)");
    let admin_task = tokio::spawn(admin_server);

    let leadership = tokio::select! {
        l = Leadership::acquire(&args) => l,
        () = shutdown.wait() => return Ok(()),
    };
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown.wait() => tracing::info!("shutting down: finishing running reconciles"),
                () = leadership.lost => tracing::warn!("leadership lost: stopping"),
            }
        }
    };
    tracing::info!(
        namespaces = %if args.operator.namespaces.is_empty() { "all".to_owned() } else { args.operator.namespaces.join(",") },
        agentlattice = %args.agentlattice_url,
        "lattice-operator running"
    );
    operator.run(stop).await;
    admin_task.abort();
    Ok(())
}
