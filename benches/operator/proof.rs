//! The proof round (issue 16): the operator's figures next to what a user would otherwise do, and
//! against its targets. Each scenario prints its figures, records them in `<--out>/<name>.tsv` and
//! draws `<--out>/<name>.svg` from every row recorded there (see `figures.rs`).
//!
//! - `ready`: time until all of N LatticeAgents are Ready, N = 100, 1,000, 10,000, 100,000, at 0
//!   and 20 ms of AgentLattice latency, next to the bound N × latency / concurrency.
//! - `memory`: operator RSS with 1,000, 10,000 and 100,000 agents, after creating them and after a
//!   restart; the restart's time to idle, writes and calls.
//! - `deploysh`: the seed's `deploy.sh` loop (an `al register` HTTP call and a real `kubectl create
//!   secret` per agent) against the operator, for 100 and 1,000 agents, run through and killed at
//!   50 %: time, and what is left behind.
//! - `storm`: 1,000 simultaneous rotations while the workload simulator's pods use their keys.
//! - `steady`: 10,000 agents, a short resync interval: writes and calls per interval.
//!
//! None of this asserts: a figure that misses its target is printed with its verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_sim::KubeSim;
use lattice_operator::crd::{LatticeAgent, ROTATE_ANNOTATION};
use lattice_operator::verify;

use super::figures::{Series, Table, chart};
use super::workloads::{WorkloadSim, WorkloadSimConfig};
use super::{
    NS, OperatorProcess, Options, Quiet, World, create_agents_range, err, is_ready, mib,
    wait_all_ready, wait_idle,
};

/// The 1-minute load average (the machine is shared: every figure is recorded with it).
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn now_utc() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%MZ")
        .to_string()
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn sum(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// The columns of each scenario's table.
const READY_COLUMNS: &[&str] = &[
    "agents",
    "latency_ms",
    "concurrency",
    "ready_s",
    "bound_s",
    "ratio",
    "create_s",
    "al_calls_per_agent",
    "k8s_writes_per_agent",
    "operator_cpu_s",
    "operator_rss_mib",
    "load_start",
    "load_end",
    "when",
];
const MEMORY_COLUMNS: &[&str] = &[
    "agents",
    "operator",
    "empty_rss_mib",
    "created_rss_mib",
    "created_anon_mib",
    "created_hwm_mib",
    "created_bytes_per_agent",
    "restarted_rss_mib",
    "restarted_anon_mib",
    "restarted_hwm_mib",
    "restarted_bytes_per_agent",
    "restart_synced_s",
    "restart_idle_s",
    "restart_k8s_writes",
    "restart_al_writes",
    "restart_al_calls",
    "restart_operator_cpu_s",
    "restart_bench_cpu_s",
    "load",
    "when",
];
const DEPLOYSH_COLUMNS: &[&str] = &[
    "agents",
    "way",
    "run",
    "time_s",
    "live_agents",
    "secrets",
    "orphan_agents",
    "keys_without_secret",
    "unusable_secrets",
    "verify_violations",
    "load",
    "when",
];
const STORM_TIMELINE_COLUMNS: &[&str] = &[
    "t_s",
    "new_key_written",
    "old_key_revoked",
    "pods_on_new_key",
    "auth_failures",
    "restarts",
];
const STORM_COLUMNS: &[&str] = &[
    "rotations",
    "env_pods",
    "file_pods",
    "grace",
    "requested_s",
    "all_new_keys_written_s",
    "all_old_keys_revoked_s",
    "restarts",
    "auth_failures",
    "other_errors",
    "successful_calls",
    "load",
    "when",
];
const STEADY_COLUMNS: &[&str] = &[
    "interval",
    "agents",
    "resync",
    "k8s_writes",
    "k8s_reads",
    "al_calls",
    "al_writes",
    "reconciles",
    "rss_mib",
    "load",
    "when",
];

/// How many requests kube-sim's audit log keeps (`crates/kube-sim/src/auth.rs`).
const AUDIT_LOG_CAPACITY: usize = 200_000;

// ----- ready -------------------------------------------------------------------------------------

pub async fn ready(o: &Options) -> Result<(), String> {
    let sizes = o
        .sizes
        .clone()
        .unwrap_or_else(|| vec![100, 1000, 10_000, 100_000]);
    let latencies = o.latencies.clone().unwrap_or_else(|| vec![0, 20]);
    let mut table = Table::open(&o.out, "ready", READY_COLUMNS, 3)?;
    for &latency in &latencies {
        for &n in &sizes {
            let o = Options {
                latency_ms: latency,
                ..o.clone()
            };
            println!(
                "== ready: {n} LatticeAgents at once, AgentLattice latency {latency} ms, concurrency {}",
                o.concurrency
            );
            let world = World::start(latency).await?;
            let mut op =
                OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-ready.log")?)?;
            op.wait_ready().await?;
            world.sim.clear_audit_log();
            let (al0, _, _) = world.al_counts();
            let (load0, cpu0) = (load(), op.cpu());
            let start = Instant::now();
            let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
            let created = create_agents_range(&world.sim.client(), 0..n).await?;
            let all_ready = waiter.await.map_err(err)??;
            let (cpu, load1) = (op.cpu() - cpu0, load());
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (al1, _, _) = world.al_counts();
            // kube-sim's audit log keeps its first 200,000 requests (`auth.rs`): past that, with
            // 4 writes per agent and the reads beside them (50,000 agents or so), it cannot count.
            let audit_full = world.sim.audit_log().len() >= AUDIT_LOG_CAPACITY;
            let writes = sum(&world.k8s_writes());
            let writes_per_agent = if audit_full {
                "-".to_owned()
            } else {
                format!("{:.2}", writes as f64 / n as f64)
            };
            let bound = n as f64 * latency as f64 / 1000.0 / f64::from(o.concurrency);
            let ratio = if bound > 0.0 {
                format!("{:.2}", all_ready.as_secs_f64() / bound)
            } else {
                "-".to_owned()
            };
            let rss = op.memory();
            println!(
                "  all Ready after {all_ready:.2?} (objects created in {created:.2?}); bound {n} × {latency} ms / {} = {bound:.2} s; ratio {ratio}",
                o.concurrency
            );
            println!(
                "  AgentLattice calls {:.2} per agent, Kubernetes writes {writes_per_agent} per agent{}, operator CPU {cpu:.2?}, {rss}; load {load0:.2} → {load1:.2}",
                (al1 - al0) as f64 / n as f64,
                if audit_full {
                    " (kube-sim's audit log is full: not counted)"
                } else {
                    ""
                },
            );
            table.put(vec![
                n.to_string(),
                latency.to_string(),
                o.concurrency.to_string(),
                secs(all_ready),
                format!("{bound:.2}"),
                ratio,
                secs(created),
                format!("{:.2}", (al1 - al0) as f64 / n as f64),
                writes_per_agent,
                secs(cpu),
                format!("{:.1}", mib(rss.rss)),
                format!("{load0:.2}"),
                format!("{load1:.2}"),
                now_utc(),
            ])?;
            op.stop().await?;
        }
    }
    plot_ready(&o.out, &table)
}

// ----- memory ------------------------------------------------------------------------------------

pub async fn memory(o: &Options) -> Result<(), String> {
    let mut sizes = o
        .sizes
        .clone()
        .unwrap_or_else(|| vec![1000, 10_000, 100_000]);
    sizes.sort_unstable();
    let latency = o.latency.unwrap_or(0);
    let o = Options {
        latency_ms: latency,
        ..o.clone()
    };
    println!(
        "== memory: {sizes:?} agents (created in steps{}), AgentLattice latency {latency} ms, operator {}",
        if o.kubectl_applied {
            ", as `kubectl apply` creates them"
        } else {
            ""
        },
        o.operator.display()
    );
    let mut table = Table::open(&o.out, "memory", MEMORY_COLUMNS, 2)?;
    let build = if o.operator == Path::new(super::BIN) {
        "dev".to_owned()
    } else {
        o.operator
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let build = if o
        .operator
        .components()
        .any(|c| c.as_os_str() == "production")
    {
        "production".to_owned()
    } else {
        build
    };
    let world = World::start(latency).await?;
    let mut op = OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-memory-0.log")?)?;
    op.wait_ready().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let empty = op.memory();
    println!("  empty operator: {empty}");
    let mut have = 0;
    for (step, &n) in sizes.iter().enumerate() {
        let start = Instant::now();
        let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
        let make = if o.kubectl_applied {
            super::applied_agent
        } else {
            super::agent
        };
        let created = super::create_agents_as(&world.sim.client(), have..n, make).await?;
        let ready = waiter.await.map_err(err)??;
        have = n;
        // Writes, not reads: after the first step's restart, the restarted process's first
        // drift reads are spread over its resync interval, and the agents of the earlier steps
        // come due for their resync reads while the next step runs; neither ends within minutes.
        wait_idle(&op, &world, 0, Instant::now(), Quiet::Writes).await?;
        let a = op.memory();
        let per_agent = |rss: u64| (rss.saturating_sub(empty.rss) * 1024) as f64 / n as f64;
        println!(
            "  {n} agents ({created:.2?} to create the new ones, all Ready after {ready:.2?}), idle: {a}; {:.0} bytes per agent above the empty operator",
            per_agent(a.rss)
        );
        op.stop().await?;

        world.sim.clear_audit_log();
        let (al0, alw0, _) = world.al_counts();
        let bench_cpu0 = super::cpu_of("/proc/self/stat");
        let start = Instant::now();
        op = OperatorProcess::start(
            &world,
            &o,
            &o.log_file(&world, &format!("operator-memory-{}.log", step + 1))?,
        )?;
        // CPU until the caches are synced: the operator's (listing, decoding, filling its
        // stores) against this process's (kube-sim serving the lists, the emulator).
        let synced = op.wait_ready().await?;
        let (op_cpu, bench_cpu) = (op.cpu(), super::cpu_of("/proc/self/stat") - bench_cpu0);
        let idle = wait_idle(&op, &world, n as u64, start, Quiet::Writes).await?;
        let (al1, alw1, _) = world.al_counts();
        let k8s = sum(&world.k8s_writes());
        let b = op.memory();
        println!(
            "  restart with {n}: caches synced after {synced:.2?}, idle (every resource reconciled, no write for 3 s) after {idle:.2?}; {k8s} Kubernetes writes, {} AgentLattice writes, {} AgentLattice calls (the first drift reads, spread over the resync interval); {b}; {:.0} bytes per agent",
            alw1 - alw0,
            al1 - al0,
            per_agent(b.rss)
        );
        println!(
            "  CPU until the caches were synced: operator {op_cpu:.2?}, kube-sim + emulator + this benchmark {bench_cpu:.2?}"
        );
        let target = match n {
            10_000 => Some(64.0),
            100_000 => Some(256.0),
            _ => None,
        };
        if let Some(t) = target {
            let verdict = |rss: u64| if mib(rss) <= t { "met" } else { "MISSED" };
            println!(
                "  target ≤ {t} MiB at {n}: after creating {} ({:.1} MiB), after a restart {} ({:.1} MiB)",
                verdict(a.rss),
                mib(a.rss),
                verdict(b.rss),
                mib(b.rss)
            );
        }
        table.put(vec![
            n.to_string(),
            build.clone(),
            format!("{:.1}", mib(empty.rss)),
            format!("{:.1}", mib(a.rss)),
            format!("{:.1}", mib(a.anon)),
            format!("{:.1}", mib(a.hwm)),
            format!("{:.0}", per_agent(a.rss)),
            format!("{:.1}", mib(b.rss)),
            format!("{:.1}", mib(b.anon)),
            format!("{:.1}", mib(b.hwm)),
            format!("{:.0}", per_agent(b.rss)),
            secs(synced),
            secs(idle),
            k8s.to_string(),
            (alw1 - alw0).to_string(),
            (al1 - al0).to_string(),
            secs(op_cpu),
            secs(bench_cpu),
            format!("{:.2}", load()),
            now_utc(),
        ])?;
    }
    op.stop().await?;
    plot_memory(&o.out, &table)
}

// ----- deploy.sh ---------------------------------------------------------------------------------

/// The seed's `deploy.sh` (Provisioner Guide, "Infrastructure-as-Code Example"), once per service:
/// `al register` is its `POST /api/agents/register` with the service key (the guide's curl form;
/// `al` is not installed here), the key goes to a Kubernetes Secret with `kubectl create secret`
/// instead of `aws secretsmanager put-secret-value`. Like the seed's script: no `set -e`, no
/// retry, no check of the answer. The service key is read from a file by curl (`-H @file`), not
/// put on a command line; the agent key is on kubectl's command line, as the seed puts it on the
/// aws CLI's. Nothing is printed: errors go to the run's log, which has no key in it (curl and
/// kubectl do not echo values).
const DEPLOY_SH: &str = r#"#!/bin/bash
# deploy.sh, for services FROM..TO-1
for ((i = FROM; i < TO; i++)); do
  name=$(printf 'svc-%06d' "$i")
  AGENT_KEY=$(curl -sS -X POST "$AL_BASE_URL/api/agents/register" \
    -H @"$AUTH_HEADER_FILE" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$name\", \"capabilities\": [\"deploy.staging\", \"health.staging\"]}" \
    | jq -r '.api_key')
  kubectl create secret generic "$name-agent-key" --namespace "$NAMESPACE" \
    --from-literal=AL_API_KEY="$AGENT_KEY" >/dev/null
done
"#;

/// What is left at AgentLattice and in the namespace's Secrets.
#[derive(Debug, Default, Clone)]
struct Leftovers {
    /// Live agents (all of them: the benchmark's workspace has no others).
    live_agents: usize,
    /// Secrets with an `AL_API_KEY`.
    secrets: usize,
    /// Live agents none of whose live keys is in a Secret: nobody can use them, nothing will
    /// revoke them.
    orphan_agents: usize,
    /// Live keys that are in no Secret.
    keys_without_secret: usize,
    /// Secrets whose `AL_API_KEY` is no live key (e.g. `null` from a failed register).
    broken_secrets: usize,
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} live agents, {} Secrets; orphan agents {}, live keys without a Secret {}, Secrets with an unusable key {}",
            self.live_agents,
            self.secrets,
            self.orphan_agents,
            self.keys_without_secret,
            self.broken_secrets
        )
    }
}

/// Matches keys by their public prefix (the 8 characters after the scheme, which the emulator
/// lists): the benchmark reads the Secrets' keys to compare them and never prints them.
async fn leftovers(world: &World) -> Result<Leftovers, String> {
    let secrets: Vec<Secret> = Api::<Secret>::namespaced(world.sim.client(), NS)
        .list(&ListParams::default())
        .await
        .map_err(err)?
        .items;
    let held: Vec<String> = secrets
        .iter()
        .filter_map(|s| {
            let v = s.data.as_ref()?.get("AL_API_KEY")?;
            Some(String::from_utf8_lossy(&v.0).into_owned())
        })
        .collect();
    let prefix_of = |key: &str| -> Option<String> {
        key.strip_prefix("al_agent_")
            .and_then(|b| b.get(..8))
            .map(str::to_owned)
    };
    let held_prefixes: BTreeSet<String> = held.iter().filter_map(|k| prefix_of(k)).collect();
    let snapshot = world.emu.snapshot();
    let mut out = Leftovers {
        secrets: held.len(),
        ..Leftovers::default()
    };
    let mut live_prefixes = BTreeSet::new();
    for a in snapshot.live_agents() {
        out.live_agents += 1;
        let mut in_secret = false;
        for k in a.live_keys() {
            live_prefixes.insert(k.key_prefix.clone());
            if held_prefixes.contains(&k.key_prefix) {
                in_secret = true;
            } else {
                out.keys_without_secret += 1;
            }
        }
        if !in_secret {
            out.orphan_agents += 1;
        }
    }
    out.broken_secrets = held
        .iter()
        .filter(|k| prefix_of(k).is_none_or(|p| !live_prefixes.contains(&p)))
        .count();
    Ok(out)
}

/// Runs the loop for services `from..to` as its own process group; `kill_at`: SIGKILL the group
/// once the emulator has answered that many registrations. Returns the time taken (until the exit
/// or the kill).
async fn run_loop(
    world: &World,
    from: usize,
    to: usize,
    kill_at: Option<u64>,
    log: &Path,
) -> Result<Duration, String> {
    let script = world.dir.join("deploy.sh");
    std::fs::write(&script, DEPLOY_SH).map_err(err)?;
    let header = world.dir.join("auth-header");
    if !header.exists() {
        let svc = world.emu.create_service_key("deploy-sh");
        write_private(&header, &format!("Authorization: Bearer {}\n", svc.api_key))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(err)?;
    let registered = || world.emu.metrics().count("register");
    let base = registered();
    let start = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .env("FROM", from.to_string())
        .env("TO", to.to_string())
        .env("AL_BASE_URL", world.emu.base_url())
        .env("AUTH_HEADER_FILE", &header)
        .env("NAMESPACE", NS)
        .env("KUBECONFIG", world.sim.kubeconfig_path())
        .env("KUBECACHEDIR", world.dir.join("kube-cache"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(err)?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("bash: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(err)? {
            if !status.success() {
                println!("  (the loop exited with {status})");
            }
            return Ok(start.elapsed());
        }
        if let Some(k) = kill_at
            && registered() - base >= k
        {
            // The whole group: bash and the curl or kubectl it is running, as a killed CI job.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Ok(start.elapsed());
        }
        if start.elapsed() > super::GIVE_UP {
            let _ = child.kill();
            return Err("the deploy.sh loop did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(err)
}

/// The invariant checker (`lattice_operator::verify`) on the bench namespace: violations.
async fn violations(world: &World) -> Result<usize, String> {
    let sources = verify::Sources::emulator(world.emu.base_url(), world.emu.admin_token());
    let opts = verify::Options {
        namespaces: vec![NS.to_owned()],
        ..verify::Options::default()
    };
    let observation = verify::observe(&world.sim.client(), &sources, &opts)
        .await
        .map_err(err)?;
    let report = verify::check(&observation, &opts);
    for v in report.violations.iter().take(5) {
        println!("    violation: {v}");
    }
    Ok(report.violations.len())
}

pub async fn deploysh(o: &Options) -> Result<(), String> {
    let sizes = o.sizes.clone().unwrap_or_else(|| vec![100, 1000]);
    let latency = o.latency.unwrap_or(20);
    let o = Options {
        latency_ms: latency,
        ..o.clone()
    };
    let mut table = Table::open(&o.out, "deploysh", DEPLOYSH_COLUMNS, 3)?;
    for &n in &sizes {
        let half = (n as u64).div_ceil(2);
        println!(
            "== deploysh: {n} agents, the seed's deploy.sh loop against the operator, AgentLattice latency {latency} ms"
        );
        let mut record =
            |way: &str, run: &str, t: Option<Duration>, l: &Leftovers, v: Option<usize>| {
                println!(
                    "  {way:<8} {run:<28} {:>10}  {l}{}",
                    t.map(|t| format!("{:.2?}", t)).unwrap_or_default(),
                    v.map(|v| format!("; verify: {v} violations"))
                        .unwrap_or_default()
                );
                table.put(vec![
                    n.to_string(),
                    way.to_owned(),
                    run.to_owned(),
                    t.map(secs).unwrap_or_else(|| "-".to_owned()),
                    l.live_agents.to_string(),
                    l.secrets.to_string(),
                    l.orphan_agents.to_string(),
                    l.keys_without_secret.to_string(),
                    l.broken_secrets.to_string(),
                    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned()),
                    format!("{:.2}", load()),
                    now_utc(),
                ])
            };

        // The loop, through.
        {
            let world = World::start(latency).await?;
            let log = world.dir.join("deploy-sh.log");
            let t = run_loop(&world, 0, n, None, &log).await?;
            record(
                "deploysh",
                "complete",
                Some(t),
                &leftovers(&world).await?,
                None,
            )?;
        }
        // The operator, through.
        {
            let world = World::start(latency).await?;
            let mut op =
                OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-deploysh.log")?)?;
            op.wait_ready().await?;
            let start = Instant::now();
            let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
            create_agents_range(&world.sim.client(), 0..n).await?;
            let t = waiter.await.map_err(err)??;
            let v = violations(&world).await?;
            record(
                "operator",
                "complete",
                Some(t),
                &leftovers(&world).await?,
                Some(v),
            )?;
            op.stop().await?;
        }
        // The loop, killed at 50 %, then run again from the start (its only recovery).
        {
            let world = World::start(latency).await?;
            let log = world.dir.join("deploy-sh.log");
            let t = run_loop(&world, 0, n, Some(half), &log).await?;
            record(
                "deploysh",
                "killed at 50%",
                Some(t),
                &leftovers(&world).await?,
                None,
            )?;
            let t = run_loop(&world, 0, n, None, &log).await?;
            record(
                "deploysh",
                "killed, then rerun",
                Some(t),
                &leftovers(&world).await?,
                None,
            )?;
        }
        // The operator, SIGKILLed at 50 %, then started again.
        {
            let world = World::start(latency).await?;
            let mut op =
                OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-killed.log")?)?;
            op.wait_ready().await?;
            let registered = || world.emu.metrics().count("register");
            let base = registered();
            let start = Instant::now();
            let client = world.sim.client();
            let creating = tokio::spawn(async move { create_agents_range(&client, 0..n).await });
            while registered() - base < half {
                if start.elapsed() > super::GIVE_UP {
                    return Err("the operator never reached 50 %".into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            op.kill();
            let t = start.elapsed();
            creating.await.map_err(err)??;
            record(
                "operator",
                "killed at 50%",
                Some(t),
                &leftovers(&world).await?,
                None,
            )?;
            let start = Instant::now();
            let mut op =
                OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-after.log")?)?;
            op.wait_ready().await?;
            let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
            let t = waiter.await.map_err(err)??;
            wait_idle(&op, &world, 0, Instant::now(), Quiet::Writes).await?;
            let v = violations(&world).await?;
            record(
                "operator",
                "killed, then restarted",
                Some(t),
                &leftovers(&world).await?,
                Some(v),
            )?;
            op.stop().await?;
        }
    }
    plot_deploysh(&o.out, &table)
}

// ----- storm -------------------------------------------------------------------------------------

/// A Deployment of one pod whose identity the operator manages (annotations), reading its key
/// from the environment (`envFrom`) or a mounted Secret file.
fn storm_deployment(name: &str, env: bool, grace: &str) -> Result<Deployment, String> {
    let secret = format!("{name}-agent-key");
    let pod = if env {
        serde_json::json!({"containers": [{"name": "app", "image": "example/app:1",
            "envFrom": [{"secretRef": {"name": secret}}]}]})
    } else {
        serde_json::json!({"containers": [{"name": "app", "image": "example/app:1",
            "volumeMounts": [{"name": "key", "mountPath": "/var/run/agentlattice"}]}],
            "volumes": [{"name": "key", "secret": {"secretName": secret}}]})
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "annotations": {
            "agentlattice.io/capabilities": "deploy.staging",
            "agentlattice.io/grace-period": grace,
        }},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
    }))
    .map_err(err)
}

pub async fn storm(o: &Options) -> Result<(), String> {
    let n = o.agents.unwrap_or(1000);
    let latency = o.latency.unwrap_or(0);
    // The kubelet's sync as the simulator plays it, and what the operator is told it is (it must
    // not be shorter).
    let kubelet_sync = Duration::from_secs(5);
    let mut o = Options {
        latency_ms: latency,
        ..o.clone()
    };
    o.operator_args
        .extend(["--kubelet-sync-period".to_owned(), "10s".to_owned()]);
    println!(
        "== storm: {n} Deployments of one pod each (half reading the key from the environment, restart on rotation; half from a mounted file), all rotated at once; grace period {}, AgentLattice latency {latency} ms",
        o.grace
    );
    let sim = KubeSim::builder()
        .pod_start_delay(Duration::from_millis(200))
        .pod_ready_delay(Duration::from_millis(200))
        .pod_termination_delay(Duration::from_millis(200));
    let world = World::start_with(latency, sim).await?;
    let mut op = OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-storm.log")?)?;
    op.wait_ready().await?;
    let names: Vec<String> = (0..n).map(|i| format!("app-{i:05}")).collect();
    let deployments: Api<Deployment> = Api::namespaced(world.sim.client(), NS);
    let start = Instant::now();
    let all: Vec<Deployment> = names
        .iter()
        .enumerate()
        .map(|(i, name)| storm_deployment(name, i % 2 == 0, &o.grace))
        .collect::<Result<_, _>>()?;
    futures::stream::iter(all)
        .map(|d| {
            let api = deployments.clone();
            async move { api.create(&PostParams::default(), &d).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .map_err(err)?;
    let agents: Api<LatticeAgent> = Api::namespaced(world.sim.client(), NS);
    let pods: Api<Pod> = Api::namespaced(world.sim.client(), NS);
    let running = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    };
    loop {
        let ready = agents
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items
            .iter()
            .filter(|a| is_ready(a))
            .count();
        let up = pods
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items
            .iter()
            .filter(|p| running(p))
            .count();
        if ready >= n && up >= n {
            break;
        }
        if start.elapsed() > super::GIVE_UP {
            return Err(format!("{ready} identities Ready, {up} pods running"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "  {n} identities Ready and {n} pods running after {:.2?}",
        start.elapsed()
    );
    let sim = WorkloadSim::start(
        world.sim.client(),
        &world.emu.base_url(),
        NS,
        WorkloadSimConfig {
            kubelet_sync_delay: kubelet_sync,
            interval: Duration::from_millis(100),
            ..WorkloadSimConfig::default()
        },
    );
    // Every pod has called with its key before the storm.
    let start = Instant::now();
    loop {
        let c = sim.counters();
        let calling = c.values().filter(|p| p.whoami_ok > 0).count();
        if calling >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {calling} of {n} pods called AgentLattice"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before: BTreeMap<String, String> = agents
        .list(&ListParams::default())
        .await
        .map_err(err)?
        .items
        .into_iter()
        .filter_map(|a| Some((a.metadata.name?, a.status?.active_key?.id)))
        .collect();
    let failures_before: u64 = sim.counters().values().map(|p| p.auth_failures).sum();
    let generation = |d: &Deployment| d.metadata.generation.unwrap_or(1) - 1;
    let restarts_before: i64 = deployments
        .list(&ListParams::default())
        .await
        .map_err(err)?
        .items
        .iter()
        .map(generation)
        .sum();

    // The storm: every identity's rotate annotation, at once (64 in flight).
    let t0 = Instant::now();
    futures::stream::iter(names.clone())
        .map(|name| {
            let api = agents.clone();
            async move {
                let patch = serde_json::json!({"metadata": {"annotations": {ROTATE_ANNOTATION: "storm-1"}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .map_err(err)?;
    let annotated = t0.elapsed();
    println!("  {n} rotations requested in {annotated:.2?}");
    let mut timeline = Table::open(&o.out, "storm-timeline", STORM_TIMELINE_COLUMNS, 1)?;
    timeline.clear();
    let mut rotated_at = None;
    let mut revoked_at = None;
    let (mut restarts, mut failures);
    loop {
        let list = agents
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items;
        let mut new_key: BTreeMap<String, String> = BTreeMap::new();
        let mut done = 0;
        for a in &list {
            let (Some(name), Some(s)) = (&a.metadata.name, &a.status) else {
                continue;
            };
            if let Some(k) = &s.active_key
                && before.get(name) != Some(&k.id)
            {
                new_key.insert(name.clone(), k.id.clone());
                if s.retiring_keys.is_empty() {
                    done += 1;
                }
            }
        }
        let counters = sim.counters();
        failures = counters.values().map(|p| p.auth_failures).sum::<u64>() - failures_before;
        // A pod is on the new key when the last key it authenticated with is its identity's new
        // one (pods are named after their Deployment, which is named after its identity).
        let on_new = counters
            .iter()
            .filter(|(pod, c)| {
                new_key
                    .iter()
                    .find(|(name, _)| pod.starts_with(&format!("{name}-")))
                    .is_some_and(|(_, k)| c.last_key_id.as_ref() == Some(k))
            })
            .count();
        restarts = deployments
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items
            .iter()
            .map(generation)
            .sum::<i64>()
            - restarts_before;
        let t = t0.elapsed();
        if rotated_at.is_none() && new_key.len() >= n {
            rotated_at = Some(t);
        }
        if revoked_at.is_none() && done >= n {
            revoked_at = Some(t);
        }
        timeline.put(vec![
            format!("{:.1}", t.as_secs_f64()),
            new_key.len().to_string(),
            done.to_string(),
            on_new.to_string(),
            failures.to_string(),
            restarts.to_string(),
        ])?;
        eprintln!(
            "  … {t:.1?}: new key written {}, old key revoked {done}, pods on the new key {on_new}, auth failures {failures}, restarts {restarts}",
            new_key.len()
        );
        if revoked_at.is_some() && on_new >= n {
            break;
        }
        if t > super::GIVE_UP {
            return Err("the storm did not settle".into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // A few more rounds of calls on the new keys, then the final counts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counters = sim.stop().await;
    let failures = counters.values().map(|p| p.auth_failures).sum::<u64>() - failures_before;
    let other: u64 = counters.values().map(|p| p.other_errors).sum();
    let calls: u64 = counters.values().map(|p| p.whoami_ok + p.actions_ok).sum();
    let by_source = |s: &str| counters.values().filter(|c| c.source == s).count();
    let mut summary = Table::open(&o.out, "storm", STORM_COLUMNS, 1)?;
    let opt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "-".to_owned());
    println!(
        "  all new keys written after {}, all old keys revoked after {} s; restarts {restarts}; authentication failures {failures} (target 0: {}); other errors {other}; {calls} successful calls (pods seen, replaced ones included: {} reading the environment, {} a file)",
        opt(rotated_at),
        opt(revoked_at),
        if failures == 0 { "met" } else { "MISSED" },
        by_source("env"),
        by_source("file")
    );
    summary.put(vec![
        n.to_string(),
        by_source("env").to_string(),
        by_source("file").to_string(),
        o.grace.clone(),
        secs(annotated),
        opt(rotated_at),
        opt(revoked_at),
        restarts.to_string(),
        failures.to_string(),
        other.to_string(),
        calls.to_string(),
        format!("{:.2}", load()),
        now_utc(),
    ])?;
    op.stop().await?;
    plot_storm(&o.out, &timeline, n, &o.grace)
}

// ----- steady ------------------------------------------------------------------------------------

pub async fn steady(o: &Options) -> Result<(), String> {
    let n = o.agents.unwrap_or(10_000);
    let latency = o.latency.unwrap_or(0);
    let resync = humantime(&o.resync)?;
    let mut o = Options {
        latency_ms: latency,
        ..o.clone()
    };
    o.operator_args
        .extend(["--resync-interval".to_owned(), o.resync.clone()]);
    println!(
        "== steady: {n} Ready agents, resync interval {}, {} intervals counted, AgentLattice latency {latency} ms",
        o.resync, o.intervals
    );
    let world = World::start(latency).await?;
    let mut op = OperatorProcess::start(&world, &o, &o.log_file(&world, "operator-steady.log")?)?;
    op.wait_ready().await?;
    let start = Instant::now();
    let waiter = tokio::spawn(wait_all_ready(world.sim.client(), n, start));
    create_agents_range(&world.sim.client(), 0..n).await?;
    let ready = waiter.await.map_err(err)??;
    println!("  all {n} Ready after {ready:.2?}");
    // Past the first interval after the creation: from then on every resource is in its steady
    // cycle (one drift read per interval at a per-resource point).
    let settle = resync.saturating_sub(start.elapsed()) + Duration::from_secs(5);
    tokio::time::sleep(settle).await;
    let mut table = Table::open(&o.out, "steady", STEADY_COLUMNS, 1)?;
    table.clear();
    for i in 1..=o.intervals {
        world.sim.clear_audit_log();
        let (al0, alw0, by0) = world.al_counts();
        let r0 = op.reconciles();
        tokio::time::sleep(resync).await;
        let (al1, alw1, by1) = world.al_counts();
        let writes = world.k8s_writes();
        let reads = world.k8s_reads();
        let reconciles = op.reconciles() - r0;
        let rss = op.memory();
        let ops: Vec<String> = by1
            .iter()
            .filter_map(|(k, v)| {
                let d = v - by0.get(k).copied().unwrap_or(0);
                (d > 0).then(|| format!("{k} {d}"))
            })
            .collect();
        println!(
            "  interval {i}: Kubernetes writes {} {:?}, Kubernetes reads {}, AgentLattice calls {} ({}), AgentLattice writes {}, reconciles {reconciles}, {rss}",
            sum(&writes),
            writes,
            sum(&reads),
            al1 - al0,
            ops.join(", "),
            alw1 - alw0,
        );
        table.put(vec![
            i.to_string(),
            n.to_string(),
            o.resync.clone(),
            sum(&writes).to_string(),
            sum(&reads).to_string(),
            (al1 - al0).to_string(),
            (alw1 - alw0).to_string(),
            reconciles.to_string(),
            format!("{:.1}", mib(rss.rss)),
            format!("{:.2}", load()),
            now_utc(),
        ])?;
    }
    let total_writes: u64 = table
        .points("interval", "k8s_writes", None)
        .iter()
        .map(|(_, y)| *y as u64)
        .sum();
    println!(
        "  target zero Kubernetes writes per resync: {}",
        if total_writes == 0 { "met" } else { "MISSED" }
    );
    op.stop().await?;
    plot_steady(&o.out, &table, n, &o.resync)
}

/// `30s`, `2m`, `1h`.
fn humantime(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s}"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("bad duration {s} (30s, 2m, 1h)")),
    }
}

// ----- plots -------------------------------------------------------------------------------------

fn plot_ready(dir: &Path, table: &Table) -> Result<(), String> {
    let mut series = Vec::new();
    for latency in table.values("latency_ms") {
        let filter = Some(("latency_ms", latency.as_str()));
        series.push(Series::measured(
            format!("measured, {latency} ms"),
            table.points("agents", "ready_s", filter),
        ));
        let bound = table.points("agents", "bound_s", filter);
        if bound.iter().any(|(_, y)| *y > 0.0) {
            series.push(Series::reference(
                format!("bound N × {latency} ms / concurrency"),
                bound,
            ));
        }
    }
    chart(
        &dir.join("ready.svg"),
        "Time until all LatticeAgents are Ready",
        "LatticeAgents created at once (N)",
        "seconds",
        true,
        &series,
    )
}

fn plot_memory(dir: &Path, table: &Table) -> Result<(), String> {
    let mut series = Vec::new();
    for build in table.values("operator") {
        let f = Some(("operator", build.as_str()));
        series.push(Series::measured(
            format!("{build} build, after creating"),
            table.points("agents", "created_rss_mib", f),
        ));
        series.push(Series::measured(
            format!("{build} build, after a restart"),
            table.points("agents", "restarted_rss_mib", f),
        ));
    }
    series.push(Series::reference(
        "targets (64 MiB at 10k, 256 MiB at 100k)",
        vec![(10_000.0, 64.0), (100_000.0, 256.0)],
    ));
    chart(
        &dir.join("memory.svg"),
        "Operator RSS by number of agents",
        "LatticeAgents (Ready)",
        "VmRSS, MiB",
        true,
        &series,
    )
}

fn plot_deploysh(dir: &Path, table: &Table) -> Result<(), String> {
    let mut series = Vec::new();
    for (way, label) in [("deploysh", "deploy.sh loop"), ("operator", "operator")] {
        let complete: Vec<(f64, f64)> = table
            .rows
            .iter()
            .filter(|r| r[1] == way && r[2] == "complete")
            .filter_map(|r| Some((r[0].parse().ok()?, r[3].parse().ok()?)))
            .collect();
        series.push(Series::measured(
            format!("{label}: time for N agents"),
            complete,
        ));
    }
    chart(
        &dir.join("deploysh.svg"),
        "deploy.sh loop vs operator: time to N agents with their Secrets",
        "agents (N)",
        "seconds",
        true,
        &series,
    )
}

fn plot_storm(dir: &Path, timeline: &Table, n: usize, grace: &str) -> Result<(), String> {
    let series = timeline.series(
        "t_s",
        &[
            ("new key written (status)", "new_key_written"),
            ("pods authenticating with the new key", "pods_on_new_key"),
            ("old key revoked", "old_key_revoked"),
            ("restarts (Deployments)", "restarts"),
            ("authentication failures", "auth_failures"),
        ],
    );
    chart(
        &dir.join("storm.svg"),
        &format!(
            "{n} simultaneous rotations while every pod calls AgentLattice (grace period {})",
            grace
        ),
        "seconds after the rotations were requested",
        "identities / pods",
        false,
        &series,
    )
}

fn plot_steady(dir: &Path, table: &Table, n: usize, resync: &str) -> Result<(), String> {
    let series = table.series(
        "interval",
        &[
            ("Kubernetes writes", "k8s_writes"),
            ("AgentLattice calls", "al_calls"),
            ("AgentLattice writes", "al_writes"),
            ("reconciles", "reconciles"),
        ],
    );
    chart(
        &dir.join("steady.svg"),
        &format!("Steady state, {n} agents: per resync interval ({})", resync),
        "resync interval",
        "count in the interval",
        false,
        &series,
    )
}

/// Redraws every plot from the tables in `--out` (after a change of the plots' style: no
/// measurement).
pub fn plots(o: &Options) -> Result<(), String> {
    let dir = &o.out;
    plot_ready(dir, &Table::open(dir, "ready", READY_COLUMNS, 3)?)?;
    plot_memory(dir, &Table::open(dir, "memory", MEMORY_COLUMNS, 2)?)?;
    plot_deploysh(dir, &Table::open(dir, "deploysh", DEPLOYSH_COLUMNS, 3)?)?;
    let storm = Table::open(dir, "storm", STORM_COLUMNS, 1)?;
    if let Some(row) = storm.rows.last() {
        let timeline = Table::open(dir, "storm-timeline", STORM_TIMELINE_COLUMNS, 1)?;
        plot_storm(dir, &timeline, row[0].parse().map_err(err)?, &row[3])?;
    }
    let steady = Table::open(dir, "steady", STEADY_COLUMNS, 1)?;
    if let Some(row) = steady.rows.last() {
        plot_steady(dir, &steady, row[1].parse().map_err(err)?, &row[2])?;
    }
    Ok(())
}
