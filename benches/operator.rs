//! Operator benchmarks (issue 4's performance targets). Not tests: they print figures, they do
//! not assert on time. `docs/benchmarks.md` records the figures and how to read them.
//!
//! ```text
//! cargo bench --bench operator -- create   [--agents 1000]  [--latency-ms 20] [--concurrency 16] [--al-rate 1000] [--al-burst 1000]
//! cargo bench --bench operator -- scale    [--agents 10000] [--latency-ms 20] ...
//! cargo bench --bench operator -- workloads [--agents 10000]
//! cargo bench --bench operator -- all
//! # the proof round (issue 16; `operator/proof.rs`), each also with `--agents N[,N...]`:
//! cargo bench --bench operator -- ready    [--latencies 0,20]      # N = 100 … 100,000
//! cargo bench --bench operator -- memory   [--operator BINARY] [--kubectl-applied]  # 1,000 … 100,000, restart
//! cargo bench --bench operator -- deploysh                         # the seed's loop vs the operator
//! cargo bench --bench operator -- storm    [--grace 30s]           # 1,000 rotations, pods calling
//! cargo bench --bench operator -- steady   [--resync 60s] [--intervals 3]
//! ```
//!
//! The proof round's scenarios record their figures in `docs/benchmarks/<scenario>.tsv` and plot
//! them to `docs/benchmarks/<scenario>.svg` (`--out DIR` elsewhere, e.g. for a quick small run).
//!
//! Set-up, for every scenario: kube-sim (TLS) and the AgentLattice emulator run in this process
//! (with `--latency-ms` added to every emulator route); the operator is the real release binary,
//! `lattice-operator run`, started as a separate process against them, so that its memory is its
//! own (`/proc/<pid>/status`). Kubernetes writes are counted from kube-sim's audit log,
//! AgentLattice calls from the emulator's request counters.
//!
//! - `create`: the LatticeAgents are created at once (64 requests in flight); time until all are
//!   Ready, against the bound `ceil(agents / concurrency) × AgentLattice calls per agent ×
//!   latency`; Kubernetes writes and AgentLattice calls per new agent.
//! - `scale`: `create` with 10,000 agents, then the operator's RSS (VmRSS, VmHWM) once idle; then
//!   a restart (SIGTERM, a fresh process): time until idle, AgentLattice calls and writes, and
//!   Kubernetes writes during the restart, and the new process's RSS.
//! - `workloads`: what watching Deployments costs (issue 12: 10,000 must add at most 16 MiB). An
//!   operator with no Deployments, idle: its RSS is the baseline; then `--agents` Deployments
//!   (default 10,000; `replicas: 0`, so kube-sim runs no pods for them) are created while it runs,
//!   each reading a Secret through `envFrom` and `secretKeyRef` like a real consumer; its RSS once
//!   they are all seen; then a fresh process, which lists them all at start-up: its RSS when ready.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use agentlattice_emulator::{Emulator, EmulatorConfig, FaultConfig, OPERATIONS, RouteFaults};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube_sim::KubeSim;
use lattice_operator::cluster::install_crd;
use lattice_operator::crd::LatticeAgent;

// In a directory of their own: `benches/*.rs` would each be a benchmark target.
#[path = "operator/figures.rs"]
mod figures;
#[path = "operator/proof.rs"]
mod proof;
// The workload simulator of the integration tests, shared rather than copied: the rotation storm
// runs the same applications the tests do.
#[path = "../tests/support/workloads.rs"]
#[allow(dead_code)]
mod workloads;

// kube-sim and the emulator run in this process, on the operator's two cores: with glibc's
// allocator they spent a fifth of their CPU in malloc/free (a `perf` profile of `create`), time the
// operator then waits for. A real API server has its own machines; jemalloc keeps this stand-in
// from taking more than it must. The operator's own allocator is set in `src/main.rs`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BIN: &str = env!("CARGO_BIN_EXE_lattice-operator");
const NS: &str = "bench";
const SERVICE_KEY_SECRET: &str = "agentlattice-service-key";
/// AgentLattice operations that change state.
const AL_WRITES: [&str; 9] = [
    "register",
    "update_agent",
    "halt_agent",
    "resume_agent",
    "revoke_agent",
    "mint_key",
    "deprecate_key",
    "undeprecate_key",
    "revoke_key",
];
/// Kubernetes verbs that write.
const K8S_WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
/// How long any wait may last before the benchmark gives up.
const GIVE_UP: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug)]
struct Options {
    scenario: String,
    agents: Option<usize>,
    /// `--agents` given as a list (`--agents 100,1000`): the sizes of `ready`, `memory` and
    /// `deploysh`.
    sizes: Option<Vec<usize>>,
    /// Emulator latency in ms; each scenario has its default.
    latency: Option<u64>,
    /// `--latencies 0,20`: the latencies of `ready`.
    latencies: Option<Vec<u64>>,
    latency_ms: u64,
    concurrency: u16,
    al_rate: f64,
    al_burst: u32,
    /// `RUST_LOG` of the operator process (default `warn`).
    log: String,
    /// Where to copy the operator's log(s) at the end (default: deleted with the run's files).
    log_dir: Option<PathBuf>,
    /// A command that runs the operator (e.g. `heaptrack -o /tmp/op`), split at spaces; the
    /// operator's command line is appended. The wrapper and the operator share a process group,
    /// which SIGTERM goes to.
    wrap: Option<String>,
    /// The operator binary (default: the one `cargo bench` built, with the `dev` feature).
    operator: PathBuf,
    /// More arguments for `lattice-operator run` (`--operator-arg --resync-interval=30s`).
    operator_args: Vec<String>,
    /// Where the proof round's scenarios write their tables and plots.
    out: PathBuf,
    /// `steady`: the operator's resync interval.
    resync: String,
    /// `steady`: how many resync intervals to count.
    intervals: u32,
    /// `storm`: the rotation grace period set on every identity.
    grace: String,
    /// `memory`: create the LatticeAgents as `kubectl apply` (client-side) would, with the
    /// `kubectl.kubernetes.io/last-applied-configuration` annotation holding the manifest.
    kubectl_applied: bool,
}

impl Options {
    /// Where the operator process logs: under `--log-dir` (kept), else in the run's files.
    fn log_file(&self, world: &World, name: &str) -> Result<PathBuf, String> {
        match &self.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(err)?;
                let path = dir.join(name);
                println!("  operator log: {}", path.display());
                Ok(path)
            }
            None => Ok(world.dir.join(name)),
        }
    }
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        scenario: String::new(),
        agents: None,
        latency_ms: 20,
        concurrency: 16,
        al_rate: 1000.0,
        al_burst: 1000,
        log: "warn".to_owned(),
        log_dir: None,
        wrap: None,
        operator: PathBuf::from(BIN),
        operator_args: Vec::new(),
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks"),
        resync: "60s".to_owned(),
        intervals: 3,
        grace: "30s".to_owned(),
        kubectl_applied: false,
        sizes: None,
        latency: None,
        latencies: None,
    };
    fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        v.split(',')
            .map(|x| {
                x.trim()
                    .replace('_', "")
                    .parse::<T>()
                    .map_err(|e| format!("{x}: {e}"))
            })
            .collect()
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            // cargo bench passes --bench to harness-less benchmarks.
            "--bench" => {}
            "--agents" => {
                let sizes: Vec<usize> = list(&value(&a)?)?;
                o.agents = sizes.first().copied();
                o.sizes = Some(sizes);
            }
            "--latency-ms" => {
                let ms = value(&a)?.parse().map_err(|e| format!("{e}"))?;
                o.latency_ms = ms;
                o.latency = Some(ms);
                o.latencies = Some(vec![ms]);
            }
            "--latencies" => o.latencies = Some(list(&value(&a)?)?),
            "--operator-arg" => o.operator_args.push(value(&a)?),
            "--out" => o.out = PathBuf::from(value(&a)?),
            "--resync" => o.resync = value(&a)?,
            "--intervals" => o.intervals = value(&a)?.parse().map_err(|e| format!("{e}"))?,
            "--grace" => o.grace = value(&a)?,
            "--kubectl-applied" => o.kubectl_applied = true,
            "--concurrency" => o.concurrency = value(&a)?.parse().map_err(|e| format!("{e}"))?,
            "--al-rate" => o.al_rate = value(&a)?.parse().map_err(|e| format!("{e}"))?,
            "--al-burst" => o.al_burst = value(&a)?.parse().map_err(|e| format!("{e}"))?,
            "--log" => o.log = value(&a)?,
            "--log-dir" => o.log_dir = Some(PathBuf::from(value(&a)?)),
            "--wrap" => o.wrap = Some(value(&a)?),
            "--operator" => o.operator = PathBuf::from(value(&a)?),
            s if !s.starts_with('-') && o.scenario.is_empty() => o.scenario = s.to_owned(),
            s => return Err(format!("unknown argument {s}")),
        }
    }
    if o.scenario.is_empty() {
        o.scenario = "all".into();
    }
    Ok(o)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "{e}\nusage: cargo bench --bench operator -- create|scale|workloads|all|ready|memory|deploysh|storm|steady|proof|plots [--agents N[,N...]] [--latency-ms MS] [--latencies MS,MS] [--concurrency C] [--al-rate R] [--al-burst B] [--log RUST_LOG] [--log-dir DIR] [--wrap CMD] [--operator BINARY] [--operator-arg ARG]... [--out DIR] [--resync DURATION] [--intervals K] [--grace DURATION] [--kubectl-applied]"
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match options.scenario.as_str() {
            "create" => create(&options, options.agents.unwrap_or(1000))
                .await
                .map(|_| ()),
            "scale" => scale(&options, options.agents.unwrap_or(10_000)).await,
            "workloads" => workloads(&options, options.agents.unwrap_or(10_000)).await,
            "all" => {
                create(&options, options.agents.unwrap_or(1000)).await?;
                scale(&options, options.agents.unwrap_or(10_000)).await
            }
            "ready" => proof::ready(&options).await,
            "memory" => proof::memory(&options).await,
            "deploysh" => proof::deploysh(&options).await,
            "storm" => proof::storm(&options).await,
            "steady" => proof::steady(&options).await,
            "plots" => proof::plots(&options),
            "proof" => {
                proof::ready(&options).await?;
                proof::memory(&options).await?;
                proof::deploysh(&options).await?;
                proof::storm(&options).await?;
                proof::steady(&options).await
            }
            other => Err(format!(
                "unknown scenario {other} (create, scale, workloads, all, ready, memory, deploysh, storm, steady, proof, plots)"
            )),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// kube-sim and the emulator in this process, the CRD installed, the service key Secret written.
struct World {
    sim: KubeSim,
    emu: Emulator,
    dir: PathBuf,
}

impl World {
    async fn start(latency_ms: u64) -> Result<World, String> {
        World::start_with(latency_ms, KubeSim::builder()).await
    }

    /// With a kube-sim built from `sim` (e.g. with pod timings).
    async fn start_with(latency_ms: u64, sim: kube_sim::KubeSimBuilder) -> Result<World, String> {
        let dir = std::env::temp_dir().join(format!("lattice-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(err)?;
        let sim = sim
            .kubeconfig_path(dir.join("kubeconfig"))
            .history(1_000_000)
            .start()
            .await
            .map_err(err)?;
        let faults = if latency_ms > 0 {
            FaultConfig::new().route("*", RouteFaults::latency(latency_ms, 0))
        } else {
            FaultConfig::new()
        };
        let emu = Emulator::start(EmulatorConfig {
            faults,
            ..EmulatorConfig::default()
        })
        .await
        .map_err(err)?;
        let client = sim.client();
        install_crd(&client, Duration::from_secs(20))
            .await
            .map_err(err)?;
        let mut ns = Namespace::default();
        ns.metadata.name = Some(NS.into());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(err)?;
        let svc = emu.create_service_key("bench");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": SERVICE_KEY_SECRET},
            "stringData": {"AL_SERVICE_KEY": svc.api_key},
        }))
        .map_err(err)?;
        Api::<Secret>::namespaced(client, NS)
            .patch(
                SERVICE_KEY_SECRET,
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&secret),
            )
            .await
            .map_err(err)?;
        Ok(World { sim, emu, dir })
    }

    /// Every AgentLattice request so far, and the state-changing ones.
    fn al_counts(&self) -> (u64, u64, BTreeMap<String, u64>) {
        let m = self.emu.metrics();
        let by_op: BTreeMap<String, u64> = OPERATIONS
            .iter()
            .map(|op| (op.to_string(), m.count(op)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let all = by_op.values().sum();
        let writes = AL_WRITES.iter().map(|op| m.count(op)).sum();
        (all, writes, by_op)
    }

    /// Kubernetes writes in the audit log, by `verb resource[/subresource]`, without the
    /// benchmark's own creates of LatticeAgents.
    fn k8s_writes(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.sim.audit_log() {
            if !K8S_WRITES.contains(&r.verb.as_str()) {
                continue;
            }
            if r.verb == "create" && r.resource == "latticeagents" && r.subresource.is_empty() {
                continue;
            }
            let what = if r.subresource.is_empty() {
                format!("{} {}", r.verb, r.resource)
            } else {
                format!("{} {}/{}", r.verb, r.resource, r.subresource)
            };
            *out.entry(what).or_insert(0) += 1;
        }
        out
    }
}

impl World {
    /// Kubernetes requests that are not writes, by `verb resource[/subresource]`.
    fn k8s_reads(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.sim.audit_log() {
            if K8S_WRITES.contains(&r.verb.as_str()) {
                continue;
            }
            let what = if r.resource.is_empty() {
                format!("{} {}", r.verb, r.path)
            } else if r.subresource.is_empty() {
                format!("{} {}", r.verb, r.resource)
            } else {
                format!("{} {}/{}", r.verb, r.resource, r.subresource)
            };
            *out.entry(what).or_insert(0) += 1;
        }
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The operator as a separate process.
struct OperatorProcess {
    child: Child,
    admin: SocketAddr,
    /// Started through `--wrap` (its memory figures are then the wrapper's).
    wrapped: bool,
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(err)?;
    Ok(l.local_addr().map_err(err)?.port())
}

impl OperatorProcess {
    fn start(world: &World, o: &Options, log: &Path) -> Result<OperatorProcess, String> {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = std::fs::File::create(log).map_err(err)?;
        let mut command = match o.wrap.as_deref().map(str::split_whitespace) {
            Some(mut words) => {
                let mut c = Command::new(words.next().ok_or("--wrap is empty")?);
                c.args(words).arg(&o.operator).process_group(0);
                c
            }
            None => Command::new(&o.operator),
        };
        let child = command
            .args([
                "run",
                "--agentlattice-url",
                &world.emu.base_url(),
                "--service-key-secret",
                &format!("{NS}/{SERVICE_KEY_SECRET}"),
                "--leader-election",
                "false",
                "--metrics-addr",
                &admin.to_string(),
                "--namespaces",
                NS,
                "--concurrency",
                &o.concurrency.to_string(),
                "--al-rate",
                &o.al_rate.to_string(),
                "--al-burst",
                &o.al_burst.to_string(),
            ])
            .args(&o.operator_args)
            .env("KUBECONFIG", world.sim.kubeconfig_path())
            .env("RUST_LOG", &o.log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(err)?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", o.operator.display()))?;
        Ok(OperatorProcess {
            child,
            admin,
            wrapped: o.wrap.is_some(),
        })
    }

    async fn wait_ready(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(err)? {
                return Err(format!("the operator exited: {status}"));
            }
            if http_get(self.admin, "/readyz").is_some_and(|(code, _)| code == 200) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > GIVE_UP {
                return Err("the operator never became ready".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `lattice_reconciles_total` summed over results.
    fn reconciles(&self) -> u64 {
        self.metric("lattice_reconciles_total") as u64
    }

    /// The sum of the samples of a metric (all its label sets) on `/metrics`; 0 if unreadable.
    fn metric(&self, name: &str) -> f64 {
        let Some((_, body)) = http_get(self.admin, "/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// CPU time (user + system) the operator process has used.
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }

    /// SIGKILL (a crash: no shutdown), and reap it.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    async fn stop(mut self) -> Result<Duration, String> {
        let start = Instant::now();
        // The process group when wrapped (`--wrap`): the wrapper's own process group.
        let target = match self.wrapped {
            true => format!("-{}", self.child.id()),
            false => self.child.id().to_string(),
        };
        let _ = Command::new("kill").args(["-TERM", "--", &target]).status();
        loop {
            if self.child.try_wait().map_err(err)?.is_some() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                return Err("the operator did not stop within 60 s of SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time from a `/proc/<pid>/stat` file (clock ticks of 1/100 s, Linux's
/// `USER_HZ`).
fn cpu_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A plain HTTP/1.0 GET: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

fn agent(i: usize) -> Result<LatticeAgent, String> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
        "metadata": {"name": format!("agent-{i:05}"), "namespace": NS},
        "spec": {"capabilities": ["deploy.staging"]},
    }))
    .map_err(err)
}

/// [`agent`] as `kubectl apply` (client-side) creates it: with the manifest, as kubectl
/// serializes it, in the `kubectl.kubernetes.io/last-applied-configuration` annotation.
fn applied_agent(i: usize) -> Result<LatticeAgent, String> {
    let manifest = serde_json::json!({
        "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
        "metadata": {"annotations": {}, "name": format!("agent-{i:05}"), "namespace": NS},
        "spec": {"capabilities": ["deploy.staging"]},
    });
    let mut a = agent(i)?;
    a.metadata.annotations = Some(
        [(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            format!("{manifest}\n"),
        )]
        .into(),
    );
    Ok(a)
}

/// Creates `n` LatticeAgents, 64 requests in flight; returns how long that took.
async fn create_agents(client: &kube::Client, n: usize) -> Result<Duration, String> {
    create_agents_range(client, 0..n).await
}

/// Creates the LatticeAgents numbered `range`, 64 requests in flight.
async fn create_agents_range(
    client: &kube::Client,
    range: std::ops::Range<usize>,
) -> Result<Duration, String> {
    create_agents_as(client, range, agent).await
}

/// Creates the LatticeAgents numbered `range`, each as `make` makes it, 64 requests in flight.
async fn create_agents_as(
    client: &kube::Client,
    range: std::ops::Range<usize>,
    make: fn(usize) -> Result<LatticeAgent, String>,
) -> Result<Duration, String> {
    let api: Api<LatticeAgent> = Api::namespaced(client.clone(), NS);
    let start = Instant::now();
    let agents: Vec<LatticeAgent> = range.map(make).collect::<Result<_, _>>()?;
    futures::stream::iter(agents)
        .map(|a| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &a).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .map_err(err)?;
    Ok(start.elapsed())
}

fn is_ready(a: &LatticeAgent) -> bool {
    a.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Watches the namespace until `n` LatticeAgents are Ready; returns when that happened, measured
/// from `since`.
async fn wait_all_ready(
    client: kube::Client,
    n: usize,
    since: Instant,
) -> Result<Duration, String> {
    let api: Api<LatticeAgent> = Api::namespaced(client, NS);
    let stream = watcher::watcher(api, watcher::Config::default());
    futures::pin_mut!(stream);
    let mut ready: HashSet<String> = HashSet::new();
    let mut last_report = Instant::now();
    while let Some(event) = tokio::time::timeout(GIVE_UP, stream.next())
        .await
        .map_err(|_| "gave up waiting for Ready".to_string())?
    {
        let objects = match event {
            Ok(watcher::Event::Apply(a)) | Ok(watcher::Event::InitApply(a)) => vec![a],
            Ok(_) => Vec::new(),
            Err(e) => {
                eprintln!("  (watch error, retrying: {e})");
                Vec::new()
            }
        };
        for a in objects {
            let name = a.metadata.name.clone().unwrap_or_default();
            if is_ready(&a) {
                ready.insert(name);
            } else {
                ready.remove(&name);
            }
        }
        if ready.len() >= n {
            return Ok(since.elapsed());
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  … {} of {n} Ready after {:.1?}",
                ready.len(),
                since.elapsed()
            );
            last_report = Instant::now();
        }
    }
    Err("the watch ended".into())
}

fn print_map(title: &str, m: &BTreeMap<String, u64>, per: usize) {
    let total: u64 = m.values().sum();
    println!(
        "  {title}: {total} ({:.2} per agent)",
        total as f64 / per.max(1) as f64
    );
    for (k, v) in m {
        println!(
            "    {k:<40} {v:>8}  ({:.2} per agent)",
            *v as f64 / per.max(1) as f64
        );
    }
}

/// Memory figures of a process, in KiB, from `/proc/<pid>/status`.
struct Memory {
    rss: u64,
    hwm: u64,
    /// Anonymous pages (heap, stacks): what grows with the number of agents.
    anon: u64,
    /// Pages of mapped files (the binary's code).
    file: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.1} MiB (RssAnon {:.1}, RssFile {:.1}), VmHWM {:.1} MiB",
            mib(self.rss),
            mib(self.anon),
            mib(self.file),
            mib(self.hwm)
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Scenario (a).
async fn create(o: &Options, n: usize) -> Result<(), String> {
    println!(
        "== create: {n} LatticeAgents at once, emulator latency {} ms, concurrency {}, AgentLattice rate {}/s burst {}",
        o.latency_ms, o.concurrency, o.al_rate, o.al_burst
    );
    let world = World::start(o.latency_ms).await?;
    let mut op = OperatorProcess::start(&world, o, &o.log_file(&world, "operator-create.log")?)?;
    op.wait_ready().await?;
    world.sim.clear_audit_log();
    let (al_before, alw_before, _) = world.al_counts();

    let (op_cpu, bench_cpu) = (op.cpu(), cpu_of("/proc/self/stat"));
    let reconciles_before = (
        op.metric("lattice_reconcile_duration_seconds_count"),
        op.metric("lattice_reconcile_duration_seconds_sum"),
    );
    let start = Instant::now();
    let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
    let created = create_agents(&world.sim.client(), n).await?;
    let all_ready = waiter.await.map_err(err)??;
    let (op_cpu, bench_cpu) = (op.cpu() - op_cpu, cpu_of("/proc/self/stat") - bench_cpu);
    let reconciles = op.metric("lattice_reconcile_duration_seconds_count") - reconciles_before.0;
    let reconcile_time = op.metric("lattice_reconcile_duration_seconds_sum") - reconciles_before.1;
    // Let trailing writes (events) land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (al_after, alw_after, by_op) = world.al_counts();
    let calls = al_after - al_before;
    let calls_per_agent = calls as f64 / n as f64;
    let rounds = n.div_ceil(usize::from(o.concurrency));
    let bound = Duration::from_secs_f64(
        rounds as f64 * calls_per_agent.max(1.0) * o.latency_ms as f64 / 1000.0,
    );
    let rate_bound =
        Duration::from_secs_f64((calls as f64 - f64::from(o.al_burst)).max(0.0) / o.al_rate);
    println!("  created {n} LatticeAgents in {created:.2?}");
    println!("  all Ready after {all_ready:.2?} (from the first create)");
    let ratio = if bound.is_zero() {
        "n/a".to_owned()
    } else {
        format!("{:.2}", all_ready.as_secs_f64() / bound.as_secs_f64())
    };
    println!(
        "  bound ceil({n}/{}) × {calls_per_agent:.2} calls × {} ms = {bound:.2?}; ratio {ratio}",
        o.concurrency, o.latency_ms,
    );
    println!(
        "  CPU until all Ready: operator {op_cpu:.2?} ({:.2?} per agent); kube-sim + emulator + this benchmark {bench_cpu:.2?}",
        op_cpu / n as u32
    );
    // Each of the `concurrency` workers holds a reconcile for its whole duration: the mean
    // duration against the latency is how far a perfectly busy operator could get to the bound.
    println!(
        "  reconciles until all Ready: {reconciles} ({:.2} per agent), {:.1} ms each on average ({} ms of it AgentLattice latency per call)",
        reconciles / n as f64,
        1000.0 * reconcile_time / reconciles.max(1.0),
        o.latency_ms,
    );
    println!(
        "  (the client rate limit alone needs {rate_bound:.2?} for {calls} calls at {}/s after a burst of {})",
        o.al_rate, o.al_burst
    );
    println!(
        "  AgentLattice: {calls} calls ({calls_per_agent:.2} per agent), {} writes",
        alw_after - alw_before
    );
    for (k, v) in &by_op {
        println!("    {k:<40} {v:>8}");
    }
    print_map("Kubernetes writes", &world.k8s_writes(), n);
    print_map(
        "Kubernetes reads (the benchmark's watch included)",
        &world.k8s_reads(),
        n,
    );
    let rss = op.memory();
    println!("  operator memory: {rss}");
    op.stop().await?;
    Ok(())
}

/// Scenarios (b) and (c).
async fn scale(o: &Options, n: usize) -> Result<(), String> {
    println!(
        "== scale: {n} LatticeAgents, emulator latency {} ms, concurrency {}, AgentLattice rate {}/s burst {}",
        o.latency_ms, o.concurrency, o.al_rate, o.al_burst
    );
    let world = World::start(o.latency_ms).await?;
    let mut op = OperatorProcess::start(&world, o, &o.log_file(&world, "operator-scale-1.log")?)?;
    op.wait_ready().await?;
    let idle_rss = op.memory();
    println!("  operator idle with 0 agents: {idle_rss}");
    let start = Instant::now();
    let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
    let created = create_agents(&world.sim.client(), n).await?;
    let all_ready = waiter.await.map_err(err)??;
    println!("  created {n} in {created:.2?}; all Ready after {all_ready:.2?}");
    let settle = wait_idle(&op, &world, n as u64, Instant::now(), Quiet::Everything).await?;
    let rss = op.memory();
    println!("  (b) operator with {n} Ready agents, idle ({settle:.2?} after all Ready): {rss}");
    let stopped = op.stop().await?;
    println!("  SIGTERM → exit in {stopped:.2?}");

    // (c) restart.
    world.sim.clear_audit_log();
    let (al_before, alw_before, by_op_before) = world.al_counts();
    let start = Instant::now();
    let mut op = OperatorProcess::start(&world, o, &o.log_file(&world, "operator-scale-2.log")?)?;
    let ready = op.wait_ready().await?;
    let idle = wait_idle(&op, &world, n as u64, start, Quiet::Writes).await?;
    let (al_after, alw_after, by_op_after) = world.al_counts();
    let rss2 = op.memory();
    let elapsed = start.elapsed();
    println!(
        "  (c) restart: ready (caches synced) after {ready:.2?}; every resource reconciled, no write for 3 s: idle after {idle:.2?}"
    );
    println!(
        "      AgentLattice in the {elapsed:.2?} since the start: {} calls ({:.1}/s, the spread first drift reads), {} writes",
        al_after - al_before,
        (al_after - al_before) as f64 / elapsed.as_secs_f64(),
        alw_after - alw_before
    );
    for (k, v) in &by_op_after {
        let d = v - by_op_before.get(k).copied().unwrap_or(0);
        if d > 0 {
            println!("        {k:<36} {d:>8}");
        }
    }
    print_map(
        "    Kubernetes writes during the restart",
        &world.k8s_writes(),
        n,
    );
    println!("      restarted operator: {rss2}");
    op.stop().await?;
    Ok(())
}

/// What has to stop moving for the operator to count as idle.
#[derive(Clone, Copy, PartialEq)]
enum Quiet {
    /// Reconciles, AgentLattice requests and Kubernetes writes (after a mass creation).
    Everything,
    /// AgentLattice writes and Kubernetes writes; reconciles only have to have reached `n`. After
    /// a restart the first drift read of each resource is spread over the first resync interval
    /// (design §3.1 step 6), so reads, and the reconciles doing them, go on at a low rate for that
    /// long: that is the operator's steady state, not work left over from the restart.
    Writes,
}

/// Waits until the operator has reconciled at least `n` times and what `quiet` names did not
/// change for 3 s; returns the time of the last change (or of the `n`th reconcile, if later),
/// from `since`.
async fn wait_idle(
    op: &OperatorProcess,
    world: &World,
    n: u64,
    since: Instant,
    quiet: Quiet,
) -> Result<Duration, String> {
    let sample = || {
        let k8s: u64 = world.k8s_writes().values().sum();
        let (al, al_writes, _) = world.al_counts();
        (op.reconciles(), al, al_writes, k8s)
    };
    let key = |s: &(u64, u64, u64, u64)| match quiet {
        Quiet::Everything => (s.0, s.1, s.3),
        Quiet::Writes => (0, s.2, s.3),
    };
    let mut last = sample();
    let mut last_change = since.elapsed();
    let mut reached_n: Option<Duration> = None;
    let mut report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sample();
        if now.0 >= n && reached_n.is_none() {
            reached_n = Some(since.elapsed());
        }
        if key(&now) != key(&last) {
            last_change = since.elapsed();
        }
        last = now;
        if let Some(at) = reached_n
            && since.elapsed() - last_change >= Duration::from_secs(3)
            && since.elapsed() - at >= Duration::from_secs(3)
        {
            return Ok(last_change.max(at));
        }
        if report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  … reconciles {}, AgentLattice calls {}, Kubernetes writes {} after {:.1?}",
                now.0,
                now.1,
                now.3,
                since.elapsed()
            );
            report = Instant::now();
        }
        if since.elapsed() > GIVE_UP {
            return Err("the operator did not become idle".into());
        }
    }
}

/// A Deployment as teams write them: labels, a container with its environment from a Secret and
/// one key of it by name, resources, probes. `replicas: 0`: only the watch is measured, not pods.
fn deployment(i: usize) -> Result<Deployment, String> {
    let name = format!("svc-{i:05}");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": NS,
            "labels": {"app": name, "team": format!("team-{}", i % 50), "tier": "backend"},
            "annotations": {"owner": "platform@example.com"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "team": format!("team-{}", i % 50)}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": format!("registry.example.com/team-{}/{name}:1.4.{i}", i % 50),
                    "args": ["--listen", ":8080", "--log-format", "json"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "envFrom": [{"secretRef": {"name": format!("{name}-agent-key")}}],
                    "env": [
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "AL_API_KEY", "valueFrom": {"secretKeyRef": {
                            "name": format!("{name}-agent-key"), "key": "AL_API_KEY"}}},
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                }]},
            },
        },
    }))
    .map_err(err)
}

/// Scenario (d): the cost of watching workloads.
async fn workloads(o: &Options, n: usize) -> Result<(), String> {
    println!("== workloads: {n} Deployments watched (replicas 0), no LatticeAgents");
    let world = World::start(o.latency_ms).await?;
    let mut op =
        OperatorProcess::start(&world, o, &o.log_file(&world, "operator-workloads-1.log")?)?;
    op.wait_ready().await?;
    // Let start-up allocations settle before taking the baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = op.memory();
    println!("  operator idle with 0 Deployments: {baseline}");

    let api: Api<Deployment> = Api::namespaced(world.sim.client(), NS);
    let start = Instant::now();
    let all: Vec<Deployment> = (0..n).map(deployment).collect::<Result<_, _>>()?;
    futures::stream::iter(all)
        .map(|d| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &d).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .map_err(err)?;
    println!("  created {n} Deployments in {:.2?}", start.elapsed());
    // The watch has delivered them all once RSS stops growing: sample until it is stable for 5 s.
    let watched = stable_memory(&op).await;
    println!(
        "  (a) the same process once the {n} arrived through its watch: {watched}; +{:.1} MiB RSS ({:.0} bytes per Deployment)",
        mib(watched.rss.saturating_sub(baseline.rss)),
        (watched.rss.saturating_sub(baseline.rss) * 1024) as f64 / n as f64
    );
    op.stop().await?;

    let mut op =
        OperatorProcess::start(&world, o, &o.log_file(&world, "operator-workloads-2.log")?)?;
    let ready = op.wait_ready().await?;
    let listed = stable_memory(&op).await;
    println!(
        "  (b) a fresh process that listed the {n} at start-up (ready after {ready:.2?}): {listed}; +{:.1} MiB RSS over the baseline",
        mib(listed.rss.saturating_sub(baseline.rss))
    );
    op.stop().await?;
    Ok(())
}

/// The process's memory once its RSS has not changed by more than 64 KiB for 5 s.
async fn stable_memory(op: &OperatorProcess) -> Memory {
    let mut last = op.memory();
    let mut since = Instant::now();
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = op.memory();
        if now.rss.abs_diff(last.rss) > 64 {
            since = Instant::now();
            last = now;
        } else if since.elapsed() >= Duration::from_secs(5) || start.elapsed() > GIVE_UP {
            return now;
        }
    }
}
