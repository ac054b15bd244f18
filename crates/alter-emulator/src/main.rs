//! `alter-emulator`: the Alter managed-agents emulator as a standalone server (local development,
//! the operator's tests and `dev` mode). Thin: parse arguments, set up logging, start the
//! library's [`Emulator`], wait for SIGINT/SIGTERM, shut down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alter_emulator::{Emulator, EmulatorConfig, FaultConfig};
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

/// Emulator of Alter's managed-agents API (signed /sdk routes, admin API, fault injection).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on. Loopback by default; anything else is reachable from other hosts.
    #[arg(long, env = "ALTER_EMULATOR_BIND", default_value = "127.0.0.1:8090")]
    bind: SocketAddr,

    /// Token of the admin API (`/_admin/…`). Random (and printed) when not given.
    #[arg(long, env = "ALTER_EMULATOR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// JSON file to load the state from and save it to (key hashes only, never plaintext).
    #[arg(long, env = "ALTER_EMULATOR_STATE_FILE")]
    state_file: Option<PathBuf>,

    /// Create an app key with this label (and every scope) at start, in the first app (created
    /// when there is none), and print its plaintext once.
    #[arg(long, env = "ALTER_EMULATOR_APP_KEY_LABEL")]
    app_key_label: Option<String>,

    /// Fault configuration (JSON, see the README) active from the start.
    #[arg(long, env = "ALTER_EMULATOR_FAULTS_FILE")]
    faults_file: Option<PathBuf>,

    /// Accepted distance between a request's X-Alter-Timestamp and the emulator's clock, seconds.
    #[arg(long, env = "ALTER_EMULATOR_SIGNATURE_WINDOW", default_value_t = 300)]
    signature_window: u64,

    /// Non-revoked keys an agent may hold.
    #[arg(long, env = "ALTER_EMULATOR_KEY_LIMIT", default_value_t = alter_emulator::DEFAULT_KEY_LIMIT)]
    key_limit: usize,

    /// Log format (level via RUST_LOG, default `info`).
    #[arg(
        long,
        env = "ALTER_EMULATOR_LOG_FORMAT",
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
        faults,
        signature_window: Duration::from_secs(args.signature_window),
        key_limit: args.key_limit,
    })
    .await?;

    // Emulator credentials, printed on purpose as `KEY=value` lines a shell can `eval`, named as
    // the SDK (ALTER_BASE_URL) and the CLI (ALTER_APP_ID) read them. Nothing the emulator logs
    // ever contains a key.
    println!("ALTER_BASE_URL={}", emu.base_url());
    if generated_token {
        println!("ALTER_EMULATOR_ADMIN_TOKEN={}", emu.admin_token());
    }
    if let Some(label) = &args.app_key_label {
        let app = match emu.snapshot().apps.into_iter().next() {
            Some(app) => app,
            None => emu.create_app("default"),
        };
        let key = emu.create_app_key(&app.id, label, None)?;
        println!("ALTER_APP_ID={}", app.id);
        println!("ALTER_APP_KEY_ID={}", key.id);
        println!("ALTER_APP_KEY={}", key.api_key);
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
        eprintln!("alter-emulator: {msg}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent_and_default_to_loopback() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["alter-emulator"]).unwrap();
        assert!(args.bind.ip().is_loopback());
        assert_eq!(args.signature_window, 300);
    }
}
