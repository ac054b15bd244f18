//! The command line: every command, flag and environment variable of `kubectl lattice`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `kubectl lattice`: LatticeAgents day to day — list, show, rotate, and the operator's health.
///
/// Uses your kubeconfig and your permissions (a namespace viewer can list and show; rotating
/// needs `patch` on latticeagents.agentlattice.io). It never reads a Secret's data and never
/// prints a key.
///
/// Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 forbidden, 5 timeout.
#[derive(Parser, Debug, Clone)]
#[command(name = "kubectl-lattice", bin_name = "kubectl lattice", version, about)]
pub struct Cli {
    /// Connection flags.
    #[command(flatten)]
    pub global: Global,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes (kubectl's names).
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Path to the kubeconfig file (default: `$KUBECONFIG`, else `~/.kube/config`, else the
    /// in-cluster service account).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table, env = "KUBECTL_LATTICE_OUTPUT")]
    pub output: Output,
}

/// Output formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML, for scripts.
    Yaml,
}

/// The commands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// List LatticeAgents: agent, Ready, key prefix and age, last use, retiring keys, next rotation.
    List(ListArgs),
    /// Show one LatticeAgent: its agent, every key, conditions in plain words, latest events.
    Show(ShowArgs),
    /// Rotate the key (sets agentlattice.io/rotate, or /compromised, to a fresh value).
    Rotate(RotateArgs),
    /// Register a new agent after the old one was revoked outside the cluster (sets
    /// agentlattice.io/reregister to a fresh value).
    Reregister(NameArgs),
    /// Let a stuck deletion finish WITHOUT revoking the agent (sets agentlattice.io/skip-revoke).
    SkipRevoke(SkipRevokeArgs),
    /// The operator's health: leader, readiness and version of its pods, LatticeAgents by
    /// condition.
    Status(StatusArgs),
    /// Print a shell completion script (e.g. `kubectl lattice completion bash`).
    Completion(CompletionArgs),
}

/// `list`.
#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Only LatticeAgents whose Ready condition is not True.
    #[arg(long)]
    pub not_ready: bool,

    /// Only LatticeAgents with old keys being retired.
    #[arg(long)]
    pub rotating: bool,

    /// After the list, print each change as it happens (until interrupted).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// A LatticeAgent by name.
#[derive(Args, Debug, Clone)]
pub struct NameArgs {
    /// The LatticeAgent's name.
    pub name: String,
}

/// `show`.
#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// The LatticeAgent's name.
    pub name: String,

    /// How many of the latest events to show.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
}

/// `rotate`.
#[derive(Args, Debug, Clone)]
pub struct RotateArgs {
    /// The LatticeAgent's name.
    pub name: String,

    /// The key leaked: revoke the old key at once instead of after the grace period
    /// (agentlattice.io/compromised).
    #[arg(long)]
    pub compromised: bool,

    /// Follow the rotation step by step until the old key is revoked.
    #[arg(long)]
    pub wait: bool,

    /// How long `--wait` waits (Go duration syntax plus days: 90s, 10m, 1h30m).
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "KUBECTL_LATTICE_TIMEOUT")]
    pub timeout: Duration,
}

/// `skip-revoke`.
#[derive(Args, Debug, Clone)]
pub struct SkipRevokeArgs {
    /// The LatticeAgent's name.
    pub name: String,

    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The operator's namespace (where its pods and its Lease are).
    #[arg(
        long,
        default_value = "lattice-system",
        env = "LATTICE_OPERATOR_NAMESPACE"
    )]
    pub operator_namespace: String,

    /// The Lease the operator's replicas elect their leader on.
    #[arg(long, default_value = "lattice-operator", env = "LATTICE_LEASE_NAME")]
    pub lease_name: String,

    /// The label selector of the operator's pods (the chart's labels).
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=lattice-operator",
        env = "LATTICE_OPERATOR_SELECTOR"
    )]
    pub selector: String,

    /// Count LatticeAgents across all namespaces (the default unless `-n` is given).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

/// `completion`.
#[derive(Args, Debug, Clone)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Go duration syntax plus days (the operator's: `90s`, `10m`, `1h30m`, `2d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = lattice_operator::plan::validate::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d.is_negative() {
        return Err("must be longer than zero".into());
    }
    Ok(d.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_like_kubectl() {
        let cli =
            Cli::try_parse_from(["kubectl-lattice", "list", "-A", "--not-ready", "-o", "json"])
                .unwrap();
        assert_eq!(cli.global.output, Output::Json);
        let Command::List(list) = cli.command else {
            panic!("list")
        };
        assert!(list.all_namespaces && list.not_ready && !list.rotating && !list.watch);

        let cli = Cli::try_parse_from([
            "kubectl-lattice",
            "-n",
            "payments",
            "rotate",
            "deploy-bot",
            "--wait",
            "--timeout",
            "90s",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("payments"));
        let Command::Rotate(rotate) = cli.command else {
            panic!("rotate")
        };
        assert_eq!(rotate.timeout, Duration::from_secs(90));
        assert!(rotate.wait && !rotate.compromised);

        let cli = Cli::try_parse_from(["kubectl-lattice", "status"]).unwrap();
        let Command::Status(status) = cli.command else {
            panic!("status")
        };
        assert_eq!(status.operator_namespace, "lattice-system");
        assert_eq!(status.lease_name, "lattice-operator");
    }

    #[test]
    fn usage_errors() {
        for argv in [
            &["kubectl-lattice", "list", "-A", "-n", "x"][..],
            &["kubectl-lattice", "rotate"],
            &["kubectl-lattice", "rotate", "x", "--timeout", "0s"],
            &["kubectl-lattice", "rotate", "x", "--timeout", "soon"],
            &["kubectl-lattice", "list", "-o", "wide"],
            &["kubectl-lattice", "completion", "cmd"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }
}
