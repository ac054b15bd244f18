//! The operator as its own OS process: `lattice-operator run` (the binary cargo built for the
//! tests) started as child processes against the in-process kube-sim (through the kubeconfig file
//! kube-sim writes) and emulator, SIGKILLed or SIGTERMed and started again, as a kubelet would
//! restart a pod. Each incarnation writes stdout and stderr to its own file, which the checks
//! read (no key in any log line, no panic).
//!
//! A replica slot stands for a pod: `a` (and `b` with two replicas). An incarnation is one process
//! of a slot, with its own Lease identity (`POD_NAME=chaos-a-3` plus the random suffix `run`
//! adds), so a restarted process counts as a new leader when it takes the Lease.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

const SIGTERM: i32 = 15;

/// How long a SIGTERMed process may take to stop (running reconciles finish first).
const TERM_GRACE: Duration = Duration::from_secs(30);

/// What every process of a run is started with.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    pub kubeconfig: PathBuf,
    pub emulator_url: String,
    pub namespace: String,
    pub service_key_secret: String,
    /// Leader election on, with this Lease duration (`None`: leader election off).
    pub lease: Option<String>,
    /// `--resync-interval`: bounds how long a change made outside the cluster (an agent or key
    /// revoked at AgentLattice) goes unnoticed, so it bounds the settle time too.
    pub resync: String,
    pub log_dir: PathBuf,
}

impl ProcessConfig {
    /// For processes against `world`'s kube-sim and emulator, one replica (no leader election),
    /// a 5 s resync, logging into a new directory `lattice-chaos-<label>` under the temporary
    /// directory.
    pub fn for_world(world: &crate::support::World, label: &str) -> ProcessConfig {
        let log_dir = std::env::temp_dir().join(format!("lattice-chaos-{label}"));
        std::fs::create_dir_all(&log_dir).expect("a log directory");
        ProcessConfig {
            kubeconfig: world.sim.kubeconfig_path().to_path_buf(),
            emulator_url: world.emu.base_url(),
            namespace: world.ns.clone(),
            service_key_secret: crate::support::SERVICE_KEY_SECRET.into(),
            lease: None,
            resync: "5s".into(),
            log_dir,
        }
    }
}

/// What happened to the processes.
#[derive(Clone, Debug, Default)]
pub struct ProcessStats {
    /// Processes started (first starts and restarts).
    pub starts: u32,
    pub sigkills: u32,
    pub sigterms: u32,
    /// SIGTERMs sent before the process logged "caches synced" (starting, or a standby replica):
    /// the moments of the early-SIGTERM hang (docs/reliability.md).
    pub sigterms_before_synced: u32,
    /// Exits the runner did not cause, by exit status (e.g. `1` after leadership was lost).
    pub own_exits: BTreeMap<String, u32>,
    /// Processes that stopped on their own because they lost the Lease (exit 1, logged).
    pub leadership_lost: u32,
    /// Anything a process did that it must not: a SIGTERM not ending in exit 0 within the
    /// grace period, an exit that is neither that nor a lost Lease.
    pub unexpected: Vec<String>,
}

struct Slot {
    name: String,
    incarnation: u32,
    child: Option<Child>,
    log: PathBuf,
}

/// The replicas of one run.
pub struct Fleet {
    config: ProcessConfig,
    slots: Vec<Slot>,
    /// Every log file written so far (one per incarnation).
    pub logs: Vec<PathBuf>,
    pub stats: ProcessStats,
}

impl Fleet {
    /// `replicas` slots, none started yet.
    pub fn new(config: ProcessConfig, replicas: usize) -> Fleet {
        let slots = (0..replicas)
            .map(|i| Slot {
                name: ((b'a' + i as u8) as char).to_string(),
                incarnation: 0,
                child: None,
                log: PathBuf::new(),
            })
            .collect();
        Fleet {
            config,
            slots,
            logs: Vec::new(),
            stats: ProcessStats::default(),
        }
    }

    pub fn replicas(&self) -> usize {
        self.slots.len()
    }

    /// Starts every slot that has no process.
    pub fn start_missing(&mut self) -> Result<(), String> {
        for i in 0..self.slots.len() {
            if self.slots[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let c = &self.config;
        let slot = &mut self.slots[i];
        slot.incarnation += 1;
        let id = format!("{}-{}", slot.name, slot.incarnation);
        let log = c.log_dir.join(format!("{id}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lattice-operator"));
        cmd.arg("run")
            .arg(format!("--agentlattice-url={}", c.emulator_url))
            .arg(format!(
                "--service-key-secret={}/{}",
                c.namespace, c.service_key_secret
            ))
            .arg(format!("--namespaces={}", c.namespace))
            .arg("--metrics-addr=127.0.0.1:0")
            .arg(format!("--resync-interval={}", c.resync))
            // A rejected service key is retried soon: the chaos rotates it.
            .arg("--service-key-retry=5s")
            .arg("--al-timeout=5s")
            .arg("--concurrency=4")
            .arg("--restart-min-interval=1s")
            .arg("--kubelet-sync-period=1s");
        match &c.lease {
            Some(lease) => cmd
                .arg("--leader-election=true")
                .arg(format!("--lease-namespace={}", c.namespace))
                .arg(format!("--lease-duration={lease}")),
            None => cmd.arg("--leader-election=false"),
        };
        let child = cmd
            .env("KUBECONFIG", &c.kubeconfig)
            .env("POD_NAME", format!("chaos-{id}"))
            .env("RUST_LOG", "info")
            // Plain text in the log files, for people reading them.
            .env("NO_COLOR", "1")
            .env_remove("AL_BASE_URL")
            .env_remove("LATTICE_NAMESPACES")
            .env_remove("LATTICE_CLUSTER_NAME")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            // A failing test must not leave operators running.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting lattice-operator: {e}"))?;
        slot.child = Some(child);
        slot.log = log.clone();
        self.logs.push(log);
        self.stats.starts += 1;
        Ok(())
    }

    /// SIGKILL slot `i` (a crash: nothing finishes, the Lease is not released), then start it
    /// again after `restart_after`.
    pub async fn kill(&mut self, i: usize, restart_after: Duration) -> Result<(), String> {
        if let Some(mut child) = self.slots[i].child.take() {
            // `start_kill` sends SIGKILL on Unix.
            let _ = child.start_kill();
            let _ = child.wait().await;
            self.stats.sigkills += 1;
        }
        tokio::time::sleep(restart_after).await;
        self.spawn(i)
    }

    /// SIGTERM slot `i` (a rolling update: running reconciles finish, the Lease is released, exit
    /// 0), then start it again after `restart_after`.
    pub async fn terminate(&mut self, i: usize, restart_after: Duration) -> Result<(), String> {
        self.stop(i).await;
        tokio::time::sleep(restart_after).await;
        self.spawn(i)
    }

    async fn stop(&mut self, i: usize) {
        let Some(mut child) = self.slots[i].child.take() else {
            return;
        };
        let log = self.slots[i].log.clone();
        self.stats.sigterms += 1;
        if std::fs::read_to_string(&log).is_ok_and(|t| !t.contains("caches synced")) {
            self.stats.sigterms_before_synced += 1;
        }
        let Some(pid) = child.id() else {
            // Already reaped: it exited on its own.
            return;
        };
        // No signal crate in the dependencies: kill(1) sends the SIGTERM.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if !sent.is_ok_and(|s| s.success()) {
            self.stats
                .unexpected
                .push(format!("could not SIGTERM {}", log.display()));
        }
        match tokio::time::timeout(TERM_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                // Exit 1 after a lost Lease is allowed even here: the Lease may have been lost
                // (kube-sim faults on Lease updates) just before the signal came. So is the
                // signal's default action on a process that has not logged a line yet: it had
                // not installed its handler, and nothing had started.
                let unstarted = status.signal() == Some(SIGTERM)
                    && std::fs::metadata(&log).is_ok_and(|m| m.len() == 0);
                let lost = status.code() == Some(1) && lost_leadership(&log);
                if !(unstarted || lost) {
                    self.stats.unexpected.push(format!(
                        "{} exited with {status} after SIGTERM",
                        log.display()
                    ));
                }
            }
            Ok(Err(e)) => self.stats.unexpected.push(format!("waiting: {e}")),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                self.stats.unexpected.push(format!(
                    "{} did not stop within {TERM_GRACE:?} of SIGTERM",
                    log.display()
                ));
            }
        }
    }

    /// Restarts every process that exited on its own (as a kubelet restarts a container),
    /// recording why it exited.
    pub fn reap(&mut self) -> Result<(), String> {
        for i in 0..self.slots.len() {
            let exited = match self.slots[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                Some(Ok(None)) | None => None,
                Some(Err(e)) => return Err(format!("checking a process: {e}")),
            };
            if let Some(status) = exited {
                self.slots[i].child = None;
                let log = self.slots[i].log.clone();
                *self.stats.own_exits.entry(status.to_string()).or_default() += 1;
                if status.code() == Some(1) && lost_leadership(&log) {
                    self.stats.leadership_lost += 1;
                } else {
                    self.stats
                        .unexpected
                        .push(format!("{} exited on its own: {status}", log.display()));
                }
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    /// SIGTERMs every process (each must exit 0).
    pub async fn stop_all(&mut self) {
        for i in 0..self.slots.len() {
            self.stop(i).await;
        }
    }
}

/// Whether the log says the process stopped because it lost the Lease (`run` exits 1 then).
fn lost_leadership(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains("leadership lost"))
}
