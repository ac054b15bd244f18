//! Command line and environment: every setting is a flag with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::SignedDuration;

use crate::plan::{Settings, validate};

/// `lattice-operator`: gives every Kubernetes workload a governed AgentLattice identity.
#[derive(Parser, Debug, Clone)]
#[command(name = "lattice-operator", version, about, long_about = None)]
pub struct Args {
    /// Log format.
    #[arg(long, env = "LATTICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber `EnvFilter` syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the operator against the cluster of KUBECONFIG (or the in-cluster configuration).
    Run(RunArgs),
    /// Quick start: an in-process Kubernetes API server simulator and AgentLattice emulator, with
    /// the operator running against them and `examples/` applied.
    Dev(DevArgs),
    /// Print the CustomResourceDefinitions (YAML documents), or write them under a directory.
    Crd(CrdArgs),
    /// Check the invariant against a cluster and an AgentLattice emulator (docs/reliability.md):
    /// exit 0 when it holds, 1 with the list of violations, 2 when something could not be read.
    Verify(VerifyArgs),
}

/// Log output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Settings shared by `run` and `dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(long, env = "LATTICE_NAMESPACES", value_delimiter = ',', value_parser = parse_namespace)]
    pub namespaces: Vec<String>,

    /// Number of LatticeAgents reconciled at once.
    #[arg(long, env = "LATTICE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// The longest time between two reconciles of a resource, and how old the last AgentLattice
    /// read of an agent may get before a drift read (Go duration syntax plus days).
    #[arg(long, env = "LATTICE_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_positive_duration)]
    pub resync_interval: SignedDuration,

    /// AgentLattice requests per second (shared by all workers).
    #[arg(long, env = "LATTICE_AL_RATE", default_value_t = 20.0, value_parser = parse_rate)]
    pub al_rate: f64,

    /// AgentLattice request burst.
    #[arg(long, env = "LATTICE_AL_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub al_burst: u32,

    /// Timeout of one AgentLattice request.
    #[arg(long, env = "LATTICE_AL_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub al_timeout: SignedDuration,

    /// Requeue delay after the service key is missing or rejected (a change of the service-key
    /// Secret triggers a reconcile at once).
    #[arg(long, env = "LATTICE_SERVICE_KEY_RETRY", default_value = "5m", value_parser = parse_positive_duration)]
    pub service_key_retry: SignedDuration,

    /// Cluster name, written to agent metadata as `k8s.cluster`. Also the start of the default
    /// agent-name rule of every provisioner: names must begin `<cluster-name>-<namespace>-`
    /// (`<namespace>-` when unset), so clusters sharing one AgentLattice workspace cannot take
    /// each other's names (docs/tenancy.md).
    #[arg(long, env = "LATTICE_CLUSTER_NAME", value_parser = parse_cluster_name)]
    pub cluster_name: Option<String>,

    /// The capabilities the default provisioner (the service key of `--service-key-secret`, used
    /// by every LatticeAgent without `spec.provisionerRef`) may grant, comma-separated: exact
    /// names, `prefix.*`, `provider:*`, or `*` for any. `*` (the default, which keeps existing installs
    /// working) lets anyone who can create a LatticeAgent ask for any capability, and is logged
    /// as a warning at start-up; an empty value allows none (docs/tenancy.md).
    #[arg(long, env = "LATTICE_DEFAULT_ALLOWED_CAPABILITIES", value_delimiter = ',', default_value = "*", value_parser = parse_capability_rule)]
    pub default_allowed_capabilities: Vec<String>,

    /// Watch Deployments, StatefulSets and DaemonSets: find the workloads that read each agent's
    /// key (an old key is revoked only once they all have the new one), restart them, and create
    /// identities for annotated ones (docs/workloads.md). Needs `list`/`watch` on them.
    #[arg(long, env = "LATTICE_WORKLOADS", default_value_t = true, action = clap::ArgAction::Set)]
    pub workloads: bool,

    /// Create a LatticeAgent, owned by the workload, for every Deployment, StatefulSet and
    /// DaemonSet annotated `agentlattice.io/capabilities` (with `--workloads`).
    #[arg(long, env = "LATTICE_WORKLOAD_IDENTITIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub workload_identities: bool,

    /// Restart the workloads that read a new key from the environment, for LatticeAgents with
    /// `spec.restartOnRotation` (with `--workloads`). Needs `patch` on them.
    #[arg(long, env = "LATTICE_WORKLOAD_RESTARTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub workload_restarts: bool,

    /// A workload is restarted at most once per this interval; the rotations within it are served
    /// by one restart, for the newest key.
    #[arg(long, env = "LATTICE_RESTART_MIN_INTERVAL", default_value = "1m", value_parser = parse_positive_duration)]
    pub restart_min_interval: SignedDuration,

    /// How long after a Secret write every mounted copy of it is up to date (the kubelet's sync
    /// period plus its cache): a workload reading the key from a file has the new key by then.
    #[arg(long, env = "LATTICE_KUBELET_SYNC_PERIOD", default_value = "2m", value_parser = parse_positive_duration)]
    pub kubelet_sync_period: SignedDuration,

    /// Export `lattice_agent_key_age_seconds{namespace,name}`, one series per LatticeAgent (off by
    /// default: the number of series grows with the number of LatticeAgents).
    #[arg(long, env = "LATTICE_PER_AGENT_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub per_agent_metrics: bool,
}

/// `run`: the production operator.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// AgentLattice base URL (HTTPS; plain HTTP only for loopback).
    #[arg(long = "agentlattice-url", env = "AL_BASE_URL", default_value = "https://www.agentlattice.io", value_parser = parse_base_url)]
    pub agentlattice_url: String,

    /// The Secret holding the provisioner service key, as `namespace/name`.
    #[arg(long, env = "LATTICE_SERVICE_KEY_SECRET", value_parser = SecretRef::from_str)]
    pub service_key_secret: SecretRef,

    /// The data field of that Secret holding the key.
    #[arg(
        long,
        env = "LATTICE_SERVICE_KEY_FIELD",
        default_value = "AL_SERVICE_KEY"
    )]
    pub service_key_field: String,

    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "LATTICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Elect a leader on a Lease so that only one replica reconciles (the orphan sweep relies on
    /// it). Disable only for a single replica.
    #[arg(long, env = "LATTICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(long, env = "LATTICE_LEASE_NAME", default_value = "lattice-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the namespace of the service-key Secret).
    #[arg(long, env = "LATTICE_LEASE_NAMESPACE", value_parser = parse_namespace)]
    pub lease_namespace: Option<String>,

    /// How long a Lease is valid without renewal.
    #[arg(long, env = "LATTICE_LEASE_DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub lease_duration: SignedDuration,

    /// Operator settings.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

impl RunArgs {
    /// The planner's settings.
    pub fn settings(&self) -> Settings {
        self.operator.settings(&self.agentlattice_url)
    }

    /// The Lease namespace.
    pub fn lease_namespace(&self) -> &str {
        self.lease_namespace
            .as_deref()
            .unwrap_or(&self.service_key_secret.namespace)
    }
}

impl OperatorArgs {
    /// The planner's settings for this base URL.
    pub fn settings(&self, base_url: &str) -> Settings {
        Settings {
            base_url: base_url.to_owned(),
            // The default provisioner (the flags' service key) is AgentLattice; an Alter
            // provisioner replaces it per agent.
            backend: crate::plan::BackendKind::AgentLattice,
            cluster_name: self.cluster_name.clone(),
            resync_interval: self.resync_interval,
            service_key_retry: self.service_key_retry,
            consumers: crate::plan::ConsumerSettings {
                tracked: self.workloads,
                restarts: self.workloads && self.workload_restarts,
                restart_min_interval: self.restart_min_interval,
                kubelet_sync_period: self.kubelet_sync_period,
            },
            default_policy: crate::plan::policy::Policy {
                capabilities: self
                    .default_allowed_capabilities
                    .iter()
                    .filter(|c| !c.is_empty())
                    .cloned()
                    .collect(),
                name_prefix: None,
            },
        }
    }
}

/// `verify`: the invariant checker.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The kubeconfig of the cluster (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The AgentLattice emulator's base URL (plain HTTP): its admin API lists agents and keys.
    #[arg(long, env = "LATTICE_VERIFY_EMULATOR_URL", value_parser = parse_base_url)]
    pub emulator_url: String,

    /// The emulator's admin token.
    #[arg(long, env = "LATTICE_VERIFY_EMULATOR_TOKEN", hide_env_values = true)]
    pub emulator_token: String,

    /// The AgentLattice base URL the Secrets' keys are tried against (default: the emulator's).
    #[arg(long = "agentlattice-url", env = "AL_BASE_URL", value_parser = parse_base_url)]
    pub agentlattice_url: Option<String>,

    /// Namespaces to check, comma-separated; empty checks all.
    #[arg(long, env = "LATTICE_NAMESPACES", value_delimiter = ',', value_parser = parse_namespace)]
    pub namespaces: Vec<String>,

    /// Only agents whose metadata `k8s.cluster` is this are the operator's.
    #[arg(long, env = "LATTICE_CLUSTER_NAME", value_parser = parse_cluster_name)]
    pub cluster_name: Option<String>,

    /// How long past its revokeBy a retiring key may still be live (retirement runs on a tick).
    #[arg(long, default_value = "1m", value_parser = parse_positive_duration)]
    pub tolerance: SignedDuration,

    /// A log file of the operator to look through for keys (repeatable).
    #[arg(long = "log-file")]
    pub log_files: Vec<PathBuf>,

    /// A metrics page (plain HTTP) to look through for keys (repeatable).
    #[arg(long = "metrics-url")]
    pub metrics_urls: Vec<String>,
}

/// `dev`: the quick start.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Directory of manifests to apply once everything runs.
    #[arg(long, env = "LATTICE_DEV_EXAMPLES", default_value = "examples")]
    pub examples: PathBuf,

    /// Where to write the kubeconfig of the embedded API server (default:
    /// `<state-dir>/kubeconfig`, printed at start-up).
    #[arg(long, env = "LATTICE_DEV_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Directory for the emulator's state file (agents, keys as hashes, audit trail), kept across
    /// restarts, and the default kubeconfig.
    #[arg(
        long,
        env = "LATTICE_DEV_STATE_DIR",
        default_value = "target/lattice-dev"
    )]
    pub state_dir: PathBuf,

    /// Exit after the walkthrough instead of staying up.
    #[arg(long, env = "LATTICE_DEV_EXIT", default_value_t = false)]
    pub exit: bool,

    /// Operator settings.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// `crd`: the generated CRDs.
#[derive(clap::Args, Debug, Clone)]
pub struct CrdArgs {
    /// Write the CRDs (`latticeagents.agentlattice.io.yaml`, `latticeprovisioners…`,
    /// `clusterlatticeprovisioners…`) into this directory instead of printing them.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A `namespace/name` reference to a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl FromStr for SecretRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not namespace/name"))?;
        parse_namespace(namespace)?;
        if !validate::is_dns_subdomain(name) {
            return Err(format!("{name:?} is not a valid Secret name"));
        }
        Ok(SecretRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn parse_namespace(s: &str) -> Result<String, String> {
    let label = s.len() <= 63 && validate::is_dns_subdomain(s) && !s.contains('.');
    if label {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a valid namespace name (a DNS label)"))
    }
}

fn parse_positive_duration(s: &str) -> Result<SignedDuration, String> {
    let d = validate::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err("must be a positive number of requests per second".into())
    }
}

fn parse_capability_rule(s: &str) -> Result<String, String> {
    let s = s.trim();
    // `--default-allowed-capabilities ""` allows none.
    if s.is_empty() {
        return Ok(String::new());
    }
    let re = is_capability_rule(s);
    if re {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a capability rule: an exact capability, `prefix.*`, `provider:*` or `*`"
        ))
    }
}

/// [`crate::crd::CAPABILITY_RULE_PATTERN`] without a regex engine: `*`, or a capability
/// (`^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?$`, at most 128 characters) optionally followed by `.*` or
/// `:*`.
fn is_capability_rule(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let body = s
        .strip_suffix(".*")
        .or_else(|| s.strip_suffix(":*"))
        .unwrap_or(s);
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner = |c: char| ok_char(c) || matches!(c, '.' | '_' | ':' | '-');
    !body.is_empty()
        && body.len() <= crate::crd::CAPABILITY_MAX
        && body.starts_with(ok_char)
        && body.ends_with(ok_char)
        && body.chars().all(inner)
}

fn parse_cluster_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 512 {
        return Err("must be 1-512 characters (an AgentLattice metadata value)".into());
    }
    Ok(s.to_owned())
}

/// Accepts `https://…`, and `http://…` only for loopback hosts (the emulator); no trailing slash
/// is kept.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not an absolute URL"))?;
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let host_only = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host_only.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    match scheme {
        "https" => Ok(trimmed.to_owned()),
        "http" if matches!(host_only, "localhost" | "127.0.0.1" | "::1") => Ok(trimmed.to_owned()),
        "http" => Err("plain HTTP is allowed only for loopback (the emulator); use https".into()),
        _ => Err(format!("unsupported scheme {scheme:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn run_defaults_and_flags() {
        let args = Args::try_parse_from([
            "lattice-operator",
            "run",
            "--service-key-secret",
            "ops/agentlattice",
            "--namespaces",
            "payments,web",
            "--resync-interval",
            "1h30m",
        ])
        .expect("valid arguments");
        let Command::Run(run) = args.command else {
            panic!("run expected");
        };
        assert_eq!(
            run.service_key_secret,
            SecretRef {
                namespace: "ops".into(),
                name: "agentlattice".into()
            }
        );
        assert_eq!(run.service_key_field, "AL_SERVICE_KEY");
        assert_eq!(run.operator.namespaces, vec!["payments", "web"]);
        assert_eq!(run.operator.resync_interval, SignedDuration::from_mins(90));
        assert_eq!(run.operator.concurrency, 16);
        assert!(!run.operator.per_agent_metrics, "opt-in");
        assert_eq!(run.agentlattice_url, "https://www.agentlattice.io");
        assert!(run.leader_election);
        assert_eq!(run.lease_namespace(), "ops");
        assert_eq!(args.log_format, LogFormat::Plain);
        let settings = run.settings();
        assert_eq!(settings.base_url, "https://www.agentlattice.io");
        assert_eq!(settings.service_key_retry, SignedDuration::from_mins(5));
    }

    #[test]
    fn bad_values_are_rejected() {
        let bad: &[&[&str]] = &[
            &["run"],
            &["run", "--service-key-secret", "no-slash"],
            &["run", "--service-key-secret", "ops/Bad_Name"],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--concurrency",
                "0",
            ],
            &["run", "--service-key-secret", "ops/al", "--al-rate", "0"],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--resync-interval",
                "0s",
            ],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--resync-interval",
                "5",
            ],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--agentlattice-url",
                "http://example.com",
            ],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--namespaces",
                "a,Not-Valid",
            ],
            &[
                "run",
                "--service-key-secret",
                "ops/al",
                "--log-format",
                "xml",
            ],
        ];
        for args in bad {
            let mut argv = vec!["lattice-operator"];
            argv.extend_from_slice(args);
            assert!(Args::try_parse_from(&argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://www.agentlattice.io/"),
            Ok("https://www.agentlattice.io".into())
        );
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("http://localhost:1").is_ok());
        assert!(parse_base_url("http://[::1]:9").is_ok());
        assert!(parse_base_url("http://10.0.0.1").is_err());
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("https://").is_err());
    }

    #[test]
    fn the_default_provisioner_policy_comes_from_its_flag() {
        let policy = |extra: &[&str]| {
            let mut argv = vec!["lattice-operator", "run", "--service-key-secret", "ops/al"];
            argv.extend_from_slice(extra);
            match Args::try_parse_from(&argv).map(|a| a.command) {
                Ok(Command::Run(run)) => Ok(run.settings().default_policy),
                Ok(_) => Err("not run".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        };
        let any = policy(&[]).expect("the default");
        assert!(any.allows_any_capability(), "the default is * (documented)");
        let listed =
            policy(&["--default-allowed-capabilities=deploy.staging,read.*"]).expect("valid");
        assert_eq!(listed.capabilities, ["deploy.staging", "read.*"]);
        assert!(listed.allows_capability("read.logs"));
        assert!(!listed.allows_capability("deploy.production"));
        let none = policy(&["--default-allowed-capabilities="]).expect("valid");
        assert!(none.capabilities.is_empty());
        assert!(!none.allows_capability("deploy.staging"));
        for bad in ["Deploy", "deploy.**", "*.deploy", "deploy staging", "-x"] {
            assert!(
                policy(&[&format!("--default-allowed-capabilities={bad}")]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn crd_and_dev_subcommands() {
        let args = Args::try_parse_from(["lattice-operator", "crd", "--output", "crds"])
            .expect("valid arguments");
        assert!(matches!(
            args.command,
            Command::Crd(CrdArgs { output: Some(_) })
        ));
        let args = Args::try_parse_from(["lattice-operator", "dev", "--log-format", "json"])
            .expect("valid arguments");
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(matches!(args.command, Command::Dev(_)));
    }
}
