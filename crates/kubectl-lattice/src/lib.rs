//! `kubectl lattice`: a kubectl plugin for LatticeAgents (see the README).
//!
//! The binary (`src/main.rs`) parses the command line with [`cli::Cli`] and calls [`run`]; the
//! commands live in [`commands`], what they show in [`view`] (pure functions of a LatticeAgent and
//! `now`), and every failure is an [`Error`] with the exit code a script can rely on.
//!
//! The plugin uses the user's kubeconfig and permissions, reads LatticeAgents (their status
//! mirrors the Secret's record), Events, the operator's Lease and pods — and never a Secret, so
//! it cannot print a key.

pub mod cli;
pub mod commands;
pub mod error;
pub mod table;
pub mod time;
pub mod view;

use std::io::Write;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;

pub use error::{Error, Result};

use cli::{Cli, Command, Global, Output};

/// What every command works with.
pub struct Ctx {
    /// A client with the user's credentials.
    pub client: kube::Client,
    /// The namespace (`-n`, else the context's, else `default`).
    pub namespace: String,
    /// Whether `-n` was given.
    pub namespace_given: bool,
    /// The output format.
    pub output: Output,
}

/// Connects with the kubeconfig the flags name (or `$KUBECONFIG`, `~/.kube/config`, the
/// in-cluster service account, in kubectl's order).
pub async fn connect(g: &Global) -> Result<Ctx> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &g.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?
        }
        None if g.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
    };
    let namespace = g
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::Kubeconfig(format!("building the client: {e}")))?;
    Ok(Ctx {
        client,
        namespace,
        namespace_given: g.namespace.is_some(),
        output: g.output,
    })
}

/// Runs one command; output goes to `out`, notes and progress to standard error.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<()> {
    if let Command::Completion(args) = &cli.command {
        return commands::completion(args.shell, out);
    }
    let ctx = connect(&cli.global).await?;
    match &cli.command {
        Command::List(args) => commands::list::run(&ctx, args, out).await,
        Command::Show(args) => commands::show::run(&ctx, args, out).await,
        Command::Rotate(args) => commands::annotate::rotate(&ctx, args, out).await,
        Command::Reregister(args) => commands::annotate::reregister(&ctx, args, out).await,
        Command::SkipRevoke(args) => commands::annotate::skip_revoke(&ctx, args, out).await,
        Command::Status(args) => commands::status::run(&ctx, args, out).await,
        Command::Completion(_) => Ok(()),
    }
}

/// Writes `value` as JSON or YAML (for `-o json|yaml`).
pub fn write_data<T: Serialize>(output: Output, value: &T, out: &mut dyn Write) -> Result<()> {
    match output {
        Output::Json | Output::Table => {
            let text =
                serde_json::to_string_pretty(value).map_err(|e| Error::Encode(e.to_string()))?;
            writeln!(out, "{text}")?;
        }
        Output::Yaml => {
            let text = lattice_operator::yaml::to_string(value)
                .map_err(|e| Error::Encode(e.to_string()))?;
            write!(out, "{text}")?;
        }
    }
    Ok(())
}
