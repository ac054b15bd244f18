//! `agentlattice-emulator`: the AgentLattice API emulator as a standalone server (local
//! development, the operator's `dev` mode, benchmarks). Thin: parse arguments, set up logging,
//! start the library's [`Emulator`], wait for SIGINT/SIGTERM, shut down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use agentlattice_emulator::{Emulator, EmulatorConfig, FaultConfig};
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

/// Emulator of the AgentLattice API (provisioning, agent and admin APIs, fault injection).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on. Loopback by default; anything else is reachable from other hosts.
    #[arg(long, env = "AL_EMULATOR_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Token for the admin API (`/_admin/…`). Random (and printed) when not given.
    #[arg(long, env = "AL_EMULATOR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// JSON file to load the state from and save it to (key hashes only, never plaintext).
    #[arg(long, env = "AL_EMULATOR_STATE_FILE")]
    state_file: Option<PathBuf>,

    /// Create a service key with this label at start and print its plaintext once (development).
    #[arg(long, env = "AL_EMULATOR_SERVICE_KEY_LABEL")]
    service_key_label: Option<String>,

    /// Send error bodies as `{"detail": {"error", "message"}}`.
    #[arg(long, env = "AL_EMULATOR_WRAP_ERRORS_IN_DETAIL")]
    wrap_errors_in_detail: bool,

    /// Fault configuration (JSON, see the README) active from the start.
    #[arg(long, env = "AL_EMULATOR_FAULTS_FILE")]
    faults_file: Option<PathBuf>,

    /// Log format (level via RUST_LOG, default `info`).
    #[arg(
        long,
        env = "AL_EMULATOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let faults = match &args.faults_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_slice::<FaultConfig>(&bytes)
                .map_err(|e| format!("{}: not a fault configuration: {e}", path.display()))?
        }
        None => FaultConfig::default(),
    };
    if !args.bind.ip().is_loopback() {
        tracing::warn!(bind = %args.bind, "listening on a non-loopback address: plain HTTP, emulator credentials");
    }
    let generated_token = args.admin_token.is_none();
    let emu = Emulator::start(EmulatorConfig {
        bind: args.bind,
        admin_token: args.admin_token,
        state_file: args.state_file,
        wrap_errors_in_detail: args.wrap_errors_in_detail,
        faults,
    })
    .await?;

    // Emulator credentials, printed on purpose (stdout, `KEY=value` lines a shell can `eval`):
    // the admin token when it was generated, and a development service key when asked for one.
    // Nothing else the emulator logs ever contains a key.
    println!("AL_EMULATOR_URL={}", emu.base_url());
    if generated_token {
        println!("AL_EMULATOR_ADMIN_TOKEN={}", emu.admin_token());
    }
    if let Some(label) = &args.service_key_label {
        let created = emu.create_service_key(label);
        println!("AL_SERVICE_KEY_ID={}", created.id);
        println!("AL_SERVICE_KEY={}", created.api_key);
    }

    shutdown_signal::requested().await;
    tracing::info!("shutting down");
    emu.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_logging(args.log_format);
    if let Err(e) = run(args).await {
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        eprintln!("agentlattice-emulator: {msg}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_loopback() {
        let args = Args::try_parse_from(["agentlattice-emulator"]).unwrap();
        assert!(args.bind.ip().is_loopback());
    }
}
