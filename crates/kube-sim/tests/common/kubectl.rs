//! The real `kubectl`, found as a user's shell finds it (`$KUBECTL`, else `PATH`), run with its
//! own `HOME` and kubeconfig per simulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube_sim::KubeSim;

pub fn kubectl_bin() -> PathBuf {
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
        other => panic!(
            "kubectl not found ({}): these tests need the real kubectl. Install it \
             (https://kubernetes.io/docs/tasks/tools/, e.g. the `kubectl` package of the \
             Kubernetes apt repository or the Google Cloud SDK) and put it on PATH, or set \
             KUBECTL=/path/to/kubectl",
            match other {
                Some(p) => format!("KUBECTL={} is not a file", p.display()),
                None => "not on PATH and KUBECTL unset".to_string(),
            }
        ),
    }
}

/// A private directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n: u64 = rand::random();
        let p = std::env::temp_dir().join(format!("kube-sim-kubectl-{tag}-{n:x}"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// kubectl with its own HOME and a kubeconfig.
pub struct Kubectl {
    pub dir: TempDir,
    pub kubeconfig: PathBuf,
}

#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn success(self) -> String {
        assert!(
            self.ok,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
    #[track_caller]
    pub fn failure(self) -> String {
        assert!(
            !self.ok,
            "kubectl unexpectedly succeeded:\nstdout: {}",
            self.stdout
        );
        self.stderr
    }
}

impl Kubectl {
    /// For the simulator's admin kubeconfig (token over TLS).
    pub fn admin(sim: &KubeSim, tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let kubeconfig = dir.0.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, Some(sim.admin_token()))
            .expect("kubeconfig");
        Kubectl { dir, kubeconfig }
    }

    /// For a kubeconfig without credentials (pass `--token`).
    pub fn anonymous(sim: &KubeSim, tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let kubeconfig = dir.0.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, None).expect("kubeconfig");
        Kubectl { dir, kubeconfig }
    }

    pub fn for_kubeconfig(path: &Path, tag: &str) -> Self {
        Kubectl {
            dir: TempDir::new(tag),
            kubeconfig: path.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str], stdin: Option<&str>) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.args(args)
            .env_clear()
            .env("HOME", &self.dir.0)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run kubectl without blocking the runtime that serves the simulator.
    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, None).await
    }

    pub async fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args, stdin);
        let input = stdin.map(str::to_string);
        let line = args.join(" ");
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run kubectl {line}: {e}"));
            if let Some(i) = input {
                use std::io::Write;
                let mut s = child.stdin.take().expect("stdin");
                s.write_all(i.as_bytes()).expect("write stdin");
            }
            let o = child.wait_with_output().expect("kubectl output");
            Out {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        })
        .await
        .expect("kubectl task")
    }

    pub async fn apply_ns(&self, ns: &str) {
        let y = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        let out = self
            .run_stdin(&["apply", "-f", "-"], Some(&y))
            .await
            .success();
        assert_eq!(out.trim(), format!("namespace/{ns} created"));
    }
}
