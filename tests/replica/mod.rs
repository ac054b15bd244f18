//! Runs the operator the way `lattice-operator run` does ([`lattice_operator::run::Replica`]:
//! admin server, CRD check, leader election, controllers), with arguments parsed by the real
//! argument parser, and talks to its admin server over HTTP. Shared by tests/admin.rs,
//! tests/ha.rs and tests/rbac.rs.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lattice_operator::admin::Phase;
use lattice_operator::config::{Args, Command, RunArgs};
use lattice_operator::metrics::Metrics;
use lattice_operator::run::Replica;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// `lattice-operator run` arguments for a test: the emulator at `al_url`, the service key
/// Secret `ns/secret`, only namespace `ns` watched, the Lease in `ns` with `lease` duration, the
/// admin server on a free loopback port, and `extra` flags.
pub fn run_args(al_url: &str, ns: &str, secret: &str, lease: &str, extra: &[&str]) -> RunArgs {
    let mut argv = vec![
        "lattice-operator".to_owned(),
        "run".to_owned(),
        format!("--agentlattice-url={al_url}"),
        format!("--service-key-secret={ns}/{secret}"),
        format!("--namespaces={ns}"),
        "--metrics-addr=127.0.0.1:0".to_owned(),
        format!("--lease-namespace={ns}"),
        format!("--lease-duration={lease}"),
        "--resync-interval=30s".to_owned(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let args = Args::try_parse_from(&argv).expect("valid run arguments");
    match args.command {
        Command::Run(run) => run,
        other => panic!("expected run, got {other:?}"),
    }
}

/// A replica running in a task.
pub struct Running {
    pub identity: String,
    pub admin: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub phase: Phase,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: JoinHandle<lattice_operator::Result<()>>,
}

/// Starts a replica on `client` as `identity`, checking for the CRD every 100 ms.
pub async fn start(client: kube::Client, args: RunArgs, identity: &str) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = Replica {
        client,
        args,
        identity: identity.to_owned(),
        crd_poll: Duration::from_millis(100),
    };
    let started = replica
        .start(async move {
            let _ = stopped.await;
        })
        .await
        .expect("the replica starts");
    Running {
        identity: identity.to_owned(),
        admin: started.admin_addr,
        metrics: started.metrics,
        phase: started.phase,
        stop: Some(stop),
        task: tokio::spawn(started.run),
    }
}

impl Running {
    /// SIGTERM: stop taking work, finish, release the Lease; returns what `run` returned.
    pub async fn terminate(mut self) -> lattice_operator::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("the replica stops within 20 s")
            .expect("the replica's task did not panic")
    }

    /// A crash: the task is aborted; nothing is released.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// `GET path` on the admin server: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the admin server");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("read the response");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (code, body.to_owned())
}

/// Parses the Prometheus/OpenMetrics text format: `name{labels}` → value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}
