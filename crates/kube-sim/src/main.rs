//! `kube-sim`: run the simulator as a process.
//!
//! ```text
//! kube-sim --port 0 --kubeconfig out.yaml [--tls|--no-tls] [--rbac] [--admin-token T]
//! ```
//! Prints the URL and the kubeconfig path, serves until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kube-sim",
    version,
    about = "An in-process Kubernetes API server simulator"
)]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "KUBE_SIM_PORT", default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "KUBE_SIM_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Where to write the admin kubeconfig.
    #[arg(
        long,
        env = "KUBE_SIM_KUBECONFIG",
        default_value = "kube-sim.kubeconfig"
    )]
    kubeconfig: PathBuf,
    /// Serve HTTPS with a generated CA (the default).
    #[arg(long, overrides_with = "no_tls")]
    tls: bool,
    /// Serve plain HTTP (kubectl then sends no tokens).
    #[arg(long = "no-tls")]
    no_tls: bool,
    /// Authenticate tokens and enforce RBAC.
    #[arg(long, env = "KUBE_SIM_RBAC")]
    rbac: bool,
    /// The admin token (random by default).
    #[arg(long, env = "KUBE_SIM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Watch history length (changes kept for watch resumption).
    #[arg(long, env = "KUBE_SIM_HISTORY", default_value_t = 100_000)]
    history: usize,
    /// Keep the stored objects in this file across restarts (loaded at start, written at
    /// exit; holds Secrets in clear text, mode 0600).
    #[arg(long, env = "KUBE_SIM_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// Nodes of a fresh cluster (`kube-sim-node-1` …).
    #[arg(long, env = "KUBE_SIM_NODES", default_value_t = 3)]
    nodes: usize,
    /// Milliseconds a scheduled pod stays Pending before it runs.
    #[arg(long, env = "KUBE_SIM_POD_START_DELAY_MS", default_value_t = 500)]
    pod_start_delay_ms: u64,
    /// Milliseconds a running pod takes to become Ready.
    #[arg(long, env = "KUBE_SIM_POD_READY_DELAY_MS", default_value_t = 500)]
    pod_ready_delay_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut b = kube_sim::KubeSim::builder()
        .port(args.port)
        .host(args.host)
        .tls(!args.no_tls || args.tls)
        .rbac(args.rbac)
        .history(args.history)
        .nodes(args.nodes)
        .pod_start_delay(std::time::Duration::from_millis(args.pod_start_delay_ms))
        .pod_ready_delay(std::time::Duration::from_millis(args.pod_ready_delay_ms))
        .kubeconfig_path(&args.kubeconfig);
    if let Some(p) = &args.state_file {
        b = b.state_file(p);
    }
    if let Some(t) = &args.admin_token {
        b = b.admin_token(t.clone());
    }
    let sim = match b.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Whoever started us may stop reading stdout after the first line: a closed pipe must not
    // stop the server (println! would panic on EPIPE).
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "kube-sim serving on {}", sim.base_url());
        let _ = writeln!(out, "kubeconfig: {}", sim.kubeconfig_path().display());
        let _ = out.flush();
    }
    shutdown_signal::requested().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent() {
        super::Args::command().debug_assert();
    }
}
