//! The real `kubectl` against the simulator (reference §1.6, §13): `apply -f` of the operator's
//! CRD and a CR with validation on (OpenAPI v3 + fieldValidation=Strict), `get` / `get -o wide`
//! with the CRD's printer columns (JSONPath filters included), `annotate`, `wait
//! --for=condition=Ready`, `delete`, `get secret -o yaml`, `--token` over TLS with RBAC on, and
//! the `kube-sim` binary with the kubeconfig it writes.
//!
//! kubectl is `$KUBECTL`, else the first `kubectl` on `PATH` (as a shell finds it); a missing
//! kubectl FAILS these tests with how to install it. Every test
//! has its own simulator, its own `HOME` (the machines' kubectl dispatcher caches its binary
//! choice and discovery there) and its own namespace.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kubectl::*;
use common::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::KubeSim;
use serde_json::{Value, json};

const CRD_NAME: &str = "latticeagents.agentlattice.io";

fn crd_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/latticeagents.agentlattice.io.yaml")
}

fn agent_yaml(name: &str) -> String {
    format!(
        "apiVersion: agentlattice.io/v1alpha1\nkind: LatticeAgent\nmetadata:\n  name: {name}\nspec:\n  description: kubectl test\n  capabilities: [deploy.staging]\n"
    )
}

fn agents(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("agentlattice.io", "v1alpha1", "LatticeAgent");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Columns of a `kubectl get` table row, split on runs of spaces.
fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{out}"))
        .split_whitespace()
        .collect()
}

fn header(out: &str) -> Vec<&str> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

async fn sim_with_crd(tag: &str, ns: &str) -> (KubeSim, Kubectl) {
    let sim = KubeSim::start().await.expect("simulator starts");
    let k = Kubectl::admin(&sim, tag);
    let crd = crd_path();
    let out = k
        .run(&["apply", "-f", crd.to_str().expect("utf-8 path")])
        .await
        .success();
    assert_eq!(
        out.trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} created")
    );
    k.apply_ns(ns).await;
    (sim, k)
}

// ---------------------------------------------------------------------------------------------
// apply (validation on), get, get -o wide

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_crd_and_cr_with_validation_then_get_printer_columns() {
    let (sim, k) = sim_with_crd("apply", "k-apply").await;
    // No --validate=false: kubectl finds the GVK and fieldValidation in /openapi/v3.
    let out = k
        .run_stdin(
            &["apply", "-n", "k-apply", "-f", "-"],
            Some(&agent_yaml("bot")),
        )
        .await
        .success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io/bot created");
    let out = k
        .run_stdin(
            &["apply", "-n", "k-apply", "-f", "-"],
            Some(&agent_yaml("bot")),
        )
        .await
        .success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io/bot unchanged");
    let audit = sim.audit_log();
    assert!(
        audit.iter().any(|a| a
            .path
            .starts_with("/openapi/v3/apis/agentlattice.io/v1alpha1")),
        "kubectl fetched the group-version's OpenAPI document"
    );
    // Defaults were applied server-side.
    let o = agents(&sim.client(), "k-apply")
        .get("bot")
        .await
        .expect("stored");
    assert_eq!(o.data["spec"]["deletionPolicy"], "Revoke");

    let out = k.run(&["get", "la", "-n", "k-apply"]).await.success();
    assert_eq!(
        header(&out),
        ["NAME", "READY", "AGENT", "SECRET", "KEY", "AGE", "AGE"]
    );
    let r = row(&out, "bot");
    assert_eq!(r.len(), 2, "unset columns are blank, AGE is shown: {out}");
    let out = k
        .run(&["get", "latticeagents", "-n", "k-apply", "-o", "wide"])
        .await
        .success();
    // The columns with priority > 0 (Rotating, Next rotation, Provisioner) only with -o wide.
    assert_eq!(
        header(&out),
        [
            "NAME",
            "READY",
            "AGENT",
            "SECRET",
            "KEY",
            "AGE",
            "AGE",
            "ROTATING",
            "NEXT",
            "ROTATION",
            "PROVISIONER"
        ]
    );
    assert_eq!(row(&out, "bot").len(), 2, "{out}");
    let out = k.run(&["get", "agentlattice", "-A"]).await.success();
    assert_eq!(
        header(&out)[0],
        "NAMESPACE",
        "category name resolves: {out}"
    );
    assert_eq!(row(&out, "k-apply")[1], "bot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rejects_unknown_and_invalid_fields() {
    let (_sim, k) = sim_with_crd("apply-neg", "k-apply-neg").await;
    let bad = agent_yaml("bot").replace("  description:", "  bogus: 1\n  description:");
    let err = k
        .run_stdin(&["apply", "-n", "k-apply-neg", "-f", "-"], Some(&bad))
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": LatticeAgent in version \"v1alpha1\" cannot be handled as a LatticeAgent: strict decoding error: unknown field \"spec.bogus\""
    );
    let bad = agent_yaml("bot").replace("deploy.staging", "Not Valid");
    let err = k
        .run_stdin(&["apply", "-n", "k-apply-neg", "-f", "-"], Some(&bad))
        .await
        .failure();
    assert!(
        err.starts_with(
            "The LatticeAgent \"bot\" is invalid: spec.capabilities[0]: Invalid value: \"Not Valid\": spec.capabilities[0] in body should match '"
        ),
        "{err}"
    );
    let err = k
        .run(&["get", "la", "nope", "-n", "k-apply-neg"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): latticeagents.agentlattice.io \"nope\" not found"
    );
}

// ---------------------------------------------------------------------------------------------
// wait --for=condition=Ready with the status written through kube-rs; the Ready column

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_sees_a_status_patch_and_get_shows_the_ready_column() {
    let (sim, k) = sim_with_crd("wait", "k-wait").await;
    k.run_stdin(
        &["apply", "-n", "k-wait", "-f", "-"],
        Some(&agent_yaml("bot")),
    )
    .await
    .success();
    let waiter = {
        let cmd_args = [
            "wait",
            "-n",
            "k-wait",
            "--for=condition=Ready",
            "latticeagent/bot",
            "--timeout=15s",
        ];
        let mut cmd = k.command(&cmd_args, None);
        tokio::task::spawn_blocking(move || cmd.output().expect("kubectl wait"))
    };
    // Let kubectl reach its watch, then make the agent Ready through /status.
    assert!(
        eventually(|| async {
            sim.audit_log()
                .iter()
                .any(|a| a.verb == "watch" && a.resource == "latticeagents")
        })
        .await,
        "kubectl wait opened a watch"
    );
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Registered", "message": "key in Secret",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
        "agentName": "k-wait-bot", "secretName": "bot-agent-key"}});
    agents(&sim.client(), "k-wait")
        .patch_status("bot", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let o = waiter.await.expect("wait task");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "latticeagent.agentlattice.io/bot condition met"
    );
    let out = k.run(&["get", "la", "bot", "-n", "k-wait"]).await.success();
    let r = row(&out, "bot");
    assert_eq!(&r[1..4], ["True", "k-wait-bot", "bot-agent-key"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_while_not_ready() {
    let (sim, k) = sim_with_crd("wait-neg", "k-wait-neg").await;
    k.run_stdin(
        &["apply", "-n", "k-wait-neg", "-f", "-"],
        Some(&agent_yaml("bot")),
    )
    .await
    .success();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending",
        "message": "registering", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    agents(&sim.client(), "k-wait-neg")
        .patch_status("bot", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let err = k
        .run(&[
            "wait",
            "-n",
            "k-wait-neg",
            "--for=condition=Ready",
            "la/bot",
            "--timeout=1s",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "error: timed out waiting for the condition on latticeagents/bot"
    );
    let out = k.run(&["get", "la", "-n", "k-wait-neg"]).await.success();
    assert_eq!(row(&out, "bot")[1], "False", "{out}");
}

// ---------------------------------------------------------------------------------------------
// annotate, delete

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotate_then_delete() {
    let (sim, k) = sim_with_crd("annotate", "k-ann").await;
    k.run_stdin(
        &["apply", "-n", "k-ann", "-f", "-"],
        Some(&agent_yaml("bot")),
    )
    .await
    .success();
    let out = k
        .run(&[
            "annotate",
            "-n",
            "k-ann",
            "la",
            "bot",
            "agentlattice.io/rotate=1",
        ])
        .await
        .success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io/bot annotated");
    let api = agents(&sim.client(), "k-ann");
    let o = api.get("bot").await.expect("stored");
    assert_eq!(
        o.metadata.annotations.as_ref().expect("annotations")["agentlattice.io/rotate"],
        "1"
    );
    assert_eq!(
        o.metadata.generation,
        Some(1),
        "annotations do not bump generation"
    );
    let out = k
        .run(&["delete", "-n", "k-ann", "la", "bot"])
        .await
        .success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io \"bot\" deleted");
    assert!(api.get_opt("bot").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotate_and_delete_errors() {
    let (_sim, k) = sim_with_crd("annotate-neg", "k-ann-neg").await;
    k.run_stdin(
        &["apply", "-n", "k-ann-neg", "-f", "-"],
        Some(&agent_yaml("bot")),
    )
    .await
    .success();
    k.run(&["annotate", "-n", "k-ann-neg", "la", "bot", "a=1"])
        .await
        .success();
    let err = k
        .run(&["annotate", "-n", "k-ann-neg", "la", "bot", "a=2"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "error: --overwrite is false but found the following declared annotation(s): 'a' already has a value (1)"
    );
    let err = k
        .run(&["annotate", "-n", "k-ann-neg", "la", "bot", "Bad Key=1"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "The LatticeAgent \"bot\" is invalid: metadata.annotations: Invalid value: \"Bad Key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
    let err = k
        .run(&["delete", "-n", "k-ann-neg", "la", "nope"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): latticeagents.agentlattice.io \"nope\" not found"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_secret_yaml_and_table() {
    let sim = KubeSim::start().await.expect("sim");
    let k = Kubectl::admin(&sim, "secret");
    k.apply_ns("k-secret").await;
    let c = sim.client();
    let s = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1", "labels": {"app": "x"}},
        "stringData": {"token": "not-a-real-key"}, "data": {"ca.crt": "Y2E="}});
    let r = post(&c, "/api/v1/namespaces/k-secret/secrets", s).await;
    assert_eq!(r.code, 201, "{}", r.text);
    let out = k
        .run(&["get", "secret", "s1", "-n", "k-secret", "-o", "yaml"])
        .await
        .success();
    let v: Value = serde_saphyr::from_str(&out).expect("yaml");
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["type"], "Opaque");
    assert_eq!(v["data"]["token"], "bm90LWEtcmVhbC1rZXk=");
    assert_eq!(v["data"]["ca.crt"], "Y2E=");
    assert!(v.get("stringData").is_none());
    assert_eq!(v["metadata"]["labels"]["app"], "x");
    let out = k.run(&["get", "secrets", "-n", "k-secret"]).await.success();
    assert_eq!(header(&out), ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(&row(&out, "s1")[1..3], ["Opaque", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_secret_errors() {
    let sim = KubeSim::start().await.expect("sim");
    let k = Kubectl::admin(&sim, "secret-neg");
    k.apply_ns("k-secret-neg").await;
    let err = k
        .run(&["get", "secret", "nope", "-n", "k-secret-neg", "-o", "yaml"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): secrets \"nope\" not found"
    );
    let bad =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\ntype: kubernetes.io/tls\ndata: {}\n";
    let err = k
        .run_stdin(&["apply", "-n", "k-secret-neg", "-f", "-"], Some(bad))
        .await
        .failure();
    assert!(
        err.contains("The Secret \"tls\" is invalid: ")
            && err.contains("data[tls.crt]: Required value"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC with --token over TLS

async fn rbac_sim(tag: &str, ns: &str) -> (KubeSim, Kubectl) {
    let sim = KubeSim::builder().rbac(true).start().await.expect("sim");
    let admin = Kubectl::admin(&sim, &format!("{tag}-admin"));
    admin.apply_ns(ns).await;
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: cm-reader\n  namespace: {ns}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: cm-reader\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: cm-reader\nsubjects:\n- kind: User\n  name: alice\n  apiGroup: rbac.authorization.k8s.io\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  a: \"1\"\n"
    );
    admin
        .run_stdin(&["apply", "-f", "-"], Some(&rbac))
        .await
        .success();
    sim.add_token("alice-token", "alice", &[]);
    let k = Kubectl::anonymous(&sim, tag);
    (sim, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_over_tls_is_allowed_what_rbac_grants() {
    let (sim, k) = rbac_sim("rbac", "k-rbac").await;
    sim.clear_audit_log();
    let out = k
        .run(&["--token", "alice-token", "get", "cm", "-n", "k-rbac"])
        .await
        .success();
    assert_eq!(header(&out), ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&out, "settings")[1], "1");
    let audit = sim.audit_log();
    assert!(
        audit.iter().any(|a| a.user == "alice"
            && a.verb == "list"
            && a.resource == "configmaps"
            && a.allowed),
        "the token reached the server over TLS: {audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_over_tls_is_forbidden_what_rbac_does_not_grant() {
    let (_sim, k) = rbac_sim("rbac-neg", "k-rbac-neg").await;
    let err = k
        .run(&[
            "--token",
            "alice-token",
            "delete",
            "cm",
            "settings",
            "-n",
            "k-rbac-neg",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): configmaps \"settings\" is forbidden: User \"alice\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"k-rbac-neg\""
    );
    let err = k
        .run(&[
            "--token",
            "alice-token",
            "get",
            "secrets",
            "-n",
            "k-rbac-neg",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"k-rbac-neg\""
    );
    let err = k
        .run(&["--token", "wrong", "get", "cm", "-n", "k-rbac-neg"])
        .await
        .failure();
    assert!(
        err.contains("error: You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary: `kube-sim --port 0 --kubeconfig out.yaml`, then kubectl with that kubeconfig

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary; returns it and its first stdout line (`kube-sim serving on <url>`). The
/// rest of stdout is not read: the pipe closes, which the binary must survive.
fn start_binary(args: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_kube-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kube-sim starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("first line");
    (child, first.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_writes_a_kubeconfig_kubectl_can_use() {
    let dir = TempDir::new("bin");
    let kc = dir.0.join("out.yaml");
    let (_child, first) = tokio::task::spawn_blocking({
        let kc = kc.clone();
        move || start_binary(&["--port", "0", "--kubeconfig", kc.to_str().expect("utf-8")])
    })
    .await
    .expect("start");
    assert!(
        first.starts_with("kube-sim serving on https://127.0.0.1:"),
        "{first}"
    );
    let k = Kubectl::for_kubeconfig(&kc, "bin-kubectl");
    let out = k.run(&["version", "-o", "json"]).await.success();
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.4");
    let out = k.run(&["get", "namespaces"]).await.success();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(row(&out, ns)[1], "Active", "{out}");
    }
    let crd = crd_path();
    k.run(&["apply", "-f", crd.to_str().expect("utf-8")])
        .await
        .success();
    let out = k
        .run_stdin(&["apply", "-f", "-"], Some(&agent_yaml("bot")))
        .await
        .success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io/bot created");
    let out = k.run(&["get", "la", "bot", "-o", "name"]).await.success();
    assert_eq!(out.trim(), "latticeagent.agentlattice.io/bot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_fails_clearly_on_a_busy_port() {
    let sim = KubeSim::start().await.expect("sim");
    let port = sim.addr().port().to_string();
    let dir = TempDir::new("bin-neg");
    let kc = dir.0.join("out.yaml");
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kube-sim"))
            .args(["--port", &port, "--kubeconfig", kc.to_str().expect("utf-8")])
            .output()
            .expect("kube-sim runs")
    })
    .await
    .expect("task");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "kube-sim: cannot listen on 127.0.0.1:{}: ",
            sim.addr().port()
        )),
        "{err}"
    );
    // A kubeconfig naming a server that is gone: kubectl reports the refused connection.
    let dead = TempDir::new("bin-dead");
    let kc = dead.0.join("kubeconfig");
    sim.write_kubeconfig(&kc, Some(sim.admin_token()))
        .expect("kubeconfig");
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let k = Kubectl::for_kubeconfig(&kc, "bin-dead-kubectl");
    let err = k
        .run(&["get", "ns", "--request-timeout=3s"])
        .await
        .failure();
    assert!(err.contains("connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_adds_priority_columns_only() {
    let sim = KubeSim::start().await.expect("sim");
    let k = Kubectl::admin(&sim, "wide");
    k.apply_ns("k-wide").await;
    install_widgets(&sim.client()).await;
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 7\n";
    k.run_stdin(&["apply", "-n", "k-wide", "-f", "-"], Some(w))
        .await
        .success();
    let out = k.run(&["get", "wd", "-n", "k-wide"]).await.success();
    // Declared columns replace the default Age column (serveDefaultColumnsIfEmpty).
    assert_eq!(header(&out), ["NAME", "COLOR", "READY"], "{out}");
    assert_eq!(row(&out, "w1")[1], "red", "defaulted color: {out}");
    let out = k
        .run(&["get", "wd", "-n", "k-wide", "-o", "wide"])
        .await
        .success();
    assert_eq!(header(&out), ["NAME", "COLOR", "SIZE", "READY"], "{out}");
    assert_eq!(&row(&out, "w1")[1..3], ["red", "7"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_with_as_is_authorized_as_the_target() {
    let (sim, _k) = rbac_sim("as", "k-as").await;
    let admin = Kubectl::admin(&sim, "as-admin");
    // The admin may impersonate anyone; the request is then authorized as alice.
    let out = admin
        .run(&[
            "--as", "alice", "get", "cm", "settings", "-n", "k-as", "-o", "name",
        ])
        .await
        .success();
    assert_eq!(out.trim(), "configmap/settings");
    let err = admin
        .run(&["--as", "alice", "delete", "cm", "settings", "-n", "k-as"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): configmaps \"settings\" is forbidden: User \"alice\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"k-as\""
    );
    // alice herself may not impersonate. Warm kubectl's discovery cache first: an impersonation
    // failure forbids discovery too, which kubectl reports as an undecoded `unknown`.
    let k = Kubectl::anonymous(&sim, "as-alice");
    k.run(&["--token", "alice-token", "get", "cm", "-n", "k-as"])
        .await
        .success();
    let err = k
        .run(&[
            "--token",
            "alice-token",
            "--as",
            "bob",
            "get",
            "cm",
            "-n",
            "k-as",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
}

// ---------------------------------------------------------------------------------------------
// kubectl's typed commands write protobuf (create namespace / secret / configmap)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_commands_send_protobuf() {
    let sim = KubeSim::start().await.expect("sim");
    let k = Kubectl::admin(&sim, "typed");
    let out = k.run(&["create", "namespace", "k-typed"]).await.success();
    assert_eq!(out.trim(), "namespace/k-typed created");
    let out = k
        .run(&[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "k-typed",
            "--from-literal=token=not-a-real-key",
        ])
        .await
        .success();
    assert_eq!(out.trim(), "secret/s1 created");
    let out = k
        .run(&[
            "create",
            "configmap",
            "c1",
            "-n",
            "k-typed",
            "--from-literal=a=1",
        ])
        .await
        .success();
    assert_eq!(out.trim(), "configmap/c1 created");
    let v = get(&sim.client(), "/api/v1/namespaces/k-typed/secrets/s1")
        .await
        .json();
    assert_eq!(v["data"]["token"], "bm90LWEtcmVhbC1rZXk=");
    assert_eq!(v["type"], "Opaque");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_errors_come_back_decoded() {
    let sim = KubeSim::start().await.expect("sim");
    let k = Kubectl::admin(&sim, "typed-neg");
    k.run(&["create", "namespace", "k-typed-neg"])
        .await
        .success();
    let err = k
        .run(&["create", "namespace", "k-typed-neg"])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "Error from server (AlreadyExists): namespaces \"k-typed-neg\" already exists"
    );
    let err = k
        .run(&[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "nowhere",
            "--from-literal=a=b",
        ])
        .await
        .failure();
    assert_eq!(
        err.trim(),
        "error: failed to create secret namespaces \"nowhere\" not found"
    );
}
