//! `lattice-operator dev`, end to end: the real binary, its printed walkthrough, and `kubectl`
//! against the kubeconfig it prints. Each test has its own state directory and HOME; the binary
//! binds only port 0.

#![cfg(feature = "dev")]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lattice-operator");
/// How long any step may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// A fresh directory for one test (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "lattice-dev-{test}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn dev_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("dev")
        .arg("--examples")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        // Each run rotates deploy-bot's key and restarts its Deployment; the second run of a test
        // comes within the default minute between two restarts of a workload, which would only
        // make it wait.
        .arg("--restart-min-interval")
        .arg("5s")
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("LATTICE_DEV_EXIT")
        .env_remove("LATTICE_DEV_KUBECONFIG")
        .env_remove("LATTICE_NAMESPACES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Fails when `text` holds any AgentLattice key material.
fn assert_no_key_material(text: &str) {
    for scheme in ["al_agent_", "al_svc_"] {
        assert!(
            !text.contains(scheme),
            "the output contains {scheme} material:\n{text}"
        );
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lattice-operator dev did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `dev --exit` with the state under `dir`; returns (stdout, stderr) of a successful run.
fn run_exit(dir: &Path) -> (String, String) {
    let mut child = dev_command(dir)
        .arg("--exit")
        .spawn()
        .expect("lattice-operator dev starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut child);
    let out = out_reader.join().expect("stdout read");
    let err = err_reader.join().expect("stderr read");
    assert!(status.success(), "dev --exit failed:\n{out}\n{err}");
    assert_no_key_material(&out);
    assert_no_key_material(&err);
    (out, err)
}

/// The agent id in the walkthrough's Ready line.
fn ready_agent_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split_once("is Ready: agent default-deploy-bot ("))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no Ready line in:\n{out}"))
}

#[test]
fn dev_exit_walks_through_the_examples_and_resumes_without_printing_a_key() {
    let dir = TempDir::new("exit");
    let (out, err) = run_exit(&dir.0);
    let kubeconfig = dir.0.join("state").join("kubeconfig");
    for expected in [
        format!("export KUBECONFIG={}", kubeconfig.display()),
        "CRD latticeagents.agentlattice.io installed (0 LatticeAgents".to_owned(),
        "applied LatticeAgent default/deploy-bot".to_owned(),
        "applied Deployment default/deploy-bot".to_owned(),
        "LatticeAgent default/deploy-bot is Ready: agent default-deploy-bot".to_owned(),
        "Secret default/deploy-bot-agent-key written".to_owned(),
        "AL_API_KEY=<redacted>".to_owned(),
        "whoami with the key from the Secret: ok, agent default-deploy-bot".to_owned(),
        "action deploy.staging as this agent: executed".to_owned(),
        "action deploy.production as this agent: denied (capability_not_granted)".to_owned(),
        "Deployment default/deploy-bot: 1 of 1 pods Ready".to_owned(),
        "it reads the key of LatticeAgent default/deploy-bot (default-deploy-bot): from the \
         environment"
            .to_owned(),
        "Deployment default/web asked for an identity (agentlattice.io/capabilities): \
         LatticeAgent default/web is Ready, owned by it: agent default-web"
            .to_owned(),
        "Deployment default/web: 2 of 2 pods Ready".to_owned(),
        "agent default-api-staging".to_owned(),
        "from a mounted file, which the kubelet refreshes (Secret reporter-agent-key)".to_owned(),
        "StatefulSet default/ledger: 2 of 2 pods Ready".to_owned(),
        "stopped.".to_owned(),
    ] {
        assert!(
            out.contains(&expected),
            "missing {expected:?} in:\n{out}\n{err}"
        );
    }
    for file in ["agentlattice-emulator.json", "kube-sim.json"] {
        assert!(
            dir.0.join("state").join(file).is_file(),
            "{file} is written"
        );
    }
    assert_rotation_with_restart(&out);
    let first = ready_agent_id(&out);

    // A restart resumes the same resource with the same agent: nothing re-registered or revoked.
    let (again, err) = run_exit(&dir.0);
    assert!(
        again.contains("(5 LatticeAgents from earlier sessions)"),
        "{again}\n{err}"
    );
    assert!(!again.contains("revoked agent"), "{again}");
    assert_eq!(ready_agent_id(&again), first, "{again}");
    assert!(
        again.contains("whoami with the key from the Secret: ok"),
        "{again}"
    );
    assert_rotation_with_restart(&again);
}

/// The walkthrough's rotation of the annotated Deployment's identity, in its order: the new key,
/// the Deployment restarted for it, its rollout's progress, the rollout finished, and only then
/// the old key revoked.
fn assert_rotation_with_restart(out: &str) {
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("missing {needle:?} in:\n{out}"))
    };
    let steps = [
        at("rotating the key of LatticeAgent default/web"),
        at("Secret web-agent-key holds the new key"),
        at("Deployment web restarted by the operator for key"),
        at("Deployment web: 1 of 2 pods updated"),
        at("Deployment web: 2 of 2 pods updated"),
        at("rollouts finished: every pod runs with the new key"),
        at("revoked: no workload reads it any more"),
    ];
    assert!(steps.is_sorted(), "out of order ({steps:?}):\n{out}");
}

/// Lines of the child's stdout, read on a thread.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first line (already read, or read until it comes) that contains `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "no line containing {needle:?}; output so far:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// The index of the first line read that contains `needle`.
    fn position(&self, needle: &str) -> Option<usize> {
        self.seen.iter().position(|l| l.contains(needle))
    }

    /// Everything read, and the rest once the process has closed stdout.
    fn rest(mut self) -> String {
        while let Ok(line) = self.rx.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// kubectl as a user's shell finds it: `$KUBECTL`, else the first `kubectl` on `PATH`.
fn kubectl_bin() -> PathBuf {
    let from_env = std::env::var_os("KUBECTL").map(PathBuf::from);
    let from_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
    };
    match from_env.or_else(from_path) {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "kubectl not found (KUBECTL unset or not a file, and none on PATH): this test needs \
             the real kubectl. Install it (https://kubernetes.io/docs/tasks/tools/, e.g. the \
             `kubectl` package of the Kubernetes apt repository) and put it on PATH, or set \
             KUBECTL=/path/to/kubectl"
        ),
    }
}

fn kubectl(home: &Path, kubeconfig: &str, args: &[&str]) -> String {
    let out = Command::new(kubectl_bin())
        .args(args)
        .env("HOME", home)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stdout}{stderr}"
    );
    assert_no_key_material(&stdout);
    stdout
}

fn secret_key_id(home: &Path, kubeconfig: &str, secret: &str) -> String {
    kubectl(
        home,
        kubeconfig,
        &[
            "-n",
            "default",
            "get",
            "secret",
            secret,
            "-o",
            r"jsonpath={.metadata.annotations.agentlattice\.io/key-id}",
        ],
    )
}

#[test]
fn dev_stays_up_and_kubectl_annotate_rotates_the_key() {
    let dir = TempDir::new("rotate");
    let mut child = dev_command(&dir.0)
        .spawn()
        .expect("lattice-operator dev starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Lines::new(&mut child);
    let export = lines.wait_for("export KUBECONFIG=");
    let kubeconfig = export
        .split_once("export KUBECONFIG=")
        .map(|(_, p)| p.trim().to_owned())
        .expect("a kubeconfig path");
    lines.wait_for("is Ready");
    lines.wait_for("The operator keeps running");

    let before = secret_key_id(&dir.0, &kubeconfig, "web-agent-key");
    assert!(!before.is_empty(), "the Secret names its key");
    let before_prefix = kubectl(
        &dir.0,
        &kubeconfig,
        &[
            "-n",
            "default",
            "get",
            "secret",
            "web-agent-key",
            "-o",
            r"jsonpath={.metadata.annotations.agentlattice\.io/key-prefix}",
        ],
    );
    assert!(
        !before_prefix.is_empty(),
        "the Secret names its key's prefix"
    );
    let listed = kubectl(&dir.0, &kubeconfig, &["get", "latticeagents", "-A"]);
    for name in ["deploy-bot", "web", "api", "reporter", "ledger"] {
        assert!(listed.contains(name), "{listed}");
    }
    // `-o wide` adds where key retirement stands and the schedule; the plain list does not.
    assert!(!listed.contains("ROTATING"), "{listed}");
    let wide = kubectl(
        &dir.0,
        &kubeconfig,
        &["get", "latticeagents", "-A", "-o", "wide"],
    );
    let header = wide.lines().next().unwrap_or_default();
    assert!(
        header.contains("ROTATING") && header.contains("NEXT ROTATION"),
        "{wide}"
    );
    assert!(wide.contains("Idle"), "{wide}");

    // The annotated Deployment's identity, rotated the way a user would.
    kubectl(
        &dir.0,
        &kubeconfig,
        &[
            "-n",
            "default",
            "annotate",
            "la",
            "web",
            "--overwrite",
            "agentlattice.io/rotate=test-1",
        ],
    );
    let changed = lines.wait_for("Secret default/web-agent-key now holds key");
    assert!(
        changed.contains(&format!("it held key {before}")),
        "{changed}"
    );
    let after = secret_key_id(&dir.0, &kubeconfig, "web-agent-key");
    assert_ne!(after, before, "the Secret holds a new key");
    assert!(changed.contains(&after), "{changed} names {after}");
    // The operator restarts the Deployment for the new key; kubectl follows the rollout.
    lines.wait_for("RolloutRestartTriggered LatticeAgent default/web");
    let rollout = kubectl(
        &dir.0,
        &kubeconfig,
        &[
            "-n",
            "default",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=60s",
        ],
    );
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    let template = kubectl(
        &dir.0,
        &kubeconfig,
        &[
            "-n",
            "default",
            "get",
            "deployment",
            "web",
            "-o",
            r"jsonpath={.spec.template.metadata.annotations.agentlattice\.io/restarted-for}",
        ],
    );
    assert_eq!(template, after, "restarted for the new key");
    // Only then is the old key revoked.
    let revoked = lines.wait_for(&format!("revoked old key {before_prefix}"));
    assert!(
        revoked.contains("KeyRevoked LatticeAgent default/web"),
        "{revoked}"
    );
    assert!(
        lines.position("RolloutRestartTriggered LatticeAgent default/web")
            < lines.position(&format!("revoked old key {before_prefix}")),
        "revoked after the restart"
    );

    // The invariant checker, pointed at this session as dev says: it holds.
    let hint = lines.wait_for("check the invariant:");
    let token_file = hint
        .split_once("$(cat ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(path, _)| path.to_owned())
        .expect("the token file in the hint");
    let emulator_url = hint
        .split_once("--emulator-url ")
        .map(|(_, url)| url.trim().to_owned())
        .expect("the emulator URL in the hint");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("the token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let token = std::fs::read_to_string(&token_file).expect("the token");
    let verify = Command::new(BIN)
        .args(["verify", "--kubeconfig", &kubeconfig, "--emulator-url"])
        .arg(&emulator_url)
        .env("LATTICE_VERIFY_EMULATOR_TOKEN", token.trim())
        .env_remove("KUBECONFIG")
        .output()
        .expect("verify runs");
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && report.contains("the invariant holds"),
        "{report}\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        !out_contains_token(&report, &token),
        "verify never prints the token"
    );

    // SIGTERM: a graceful stop.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = wait_exit(&mut child);
    let out = lines.rest();
    let err = err_reader.join().expect("stderr read");
    assert!(status.success(), "dev did not stop cleanly:\n{out}\n{err}");
    assert!(out.contains("stopped."), "{out}");
    assert_no_key_material(&out);
    assert_no_key_material(&err);
}

/// Whether `text` contains `token` (trimmed).
fn out_contains_token(text: &str, token: &str) -> bool {
    let token = token.trim();
    !token.is_empty() && text.contains(token)
}
