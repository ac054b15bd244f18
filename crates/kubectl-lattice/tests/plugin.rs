//! The `kubectl-lattice` binary against kube-sim, the AgentLattice emulator and the real operator
//! (the workspace's test world, `tests/support`): what it prints (golden tables, times and random
//! ids masked), a rotation followed to the end, the exit codes, a viewer's permissions, and no key
//! in any output.

#[path = "../../../tests/replica/mod.rs"]
mod replica;
#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, PostParams};
use kube_sim::KubeSim;
use lattice_operator::crd::{REREGISTER_ANNOTATION, ROTATE_ANNOTATION};
use regex::Regex;
use support::{Options, SERVICE_KEY_SECRET, World, bot, secret_key, wait_until};

/// What one run of the plugin gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "exit code: {self:#?}");
        self
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kubectl-lattice")
}

/// Runs `kubectl-lattice --kubeconfig <kubeconfig> -n <ns> <args>` with standard input closed.
async fn plugin(kubeconfig: &Path, ns: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(binary())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", ns])
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBECTL_LATTICE_OUTPUT")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the plugin runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn admin(w: &World) -> PathBuf {
    w.sim.kubeconfig_path().to_path_buf()
}

/// Masks what changes from run to run: the given values (key prefixes, ids) by their names,
/// UUIDs, RFC 3339 times, and durations (`5s`, `2m30s`, `29d`); then columns (runs of two or
/// more spaces) are joined by ` | `, so that the golden text does not depend on widths.
fn mask(text: &str, values: &[(String, &str)]) -> String {
    let mut text = text.to_owned();
    for (value, name) in values {
        text = text.replace(value.as_str(), name);
    }
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let time = Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let duration = Regex::new(r"\b\d+[smhdy](\d+[smhdy])?\b").unwrap();
    let columns = Regex::new(r" {2,}").unwrap();
    let text = uuid.replace_all(&text, "<uuid>");
    let text = time.replace_all(&text, "<time>");
    let text = duration.replace_all(&text, "<t>");
    text.lines()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            format!(
                "{}{}",
                &l[..indent],
                columns.replace_all(l.trim_start(), " | ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The public key prefixes and ids of `name`'s keys in status, named for [`mask`].
async fn key_names(w: &World, name: &str, tag: &str) -> Vec<(String, &'static str)> {
    let a = w.get(name).await;
    let s = a.status.expect("status");
    let mut out = Vec::new();
    if let Some(k) = s.active_key {
        out.push((k.prefix, leak(format!("<{tag}-key>"))));
    }
    for (i, k) in s.retiring_keys.into_iter().enumerate() {
        out.push((k.prefix, leak(format!("<{tag}-old-key-{i}>"))));
    }
    out
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn assert_golden(what: &str, got: &str, want: &str) {
    let want = want.trim_matches('\n');
    assert_eq!(
        got.trim_matches('\n'),
        want,
        "{what}: got\n{got}\n--- want\n{want}"
    );
}

/// A Secret named `name` that the operator does not own (so a LatticeAgent naming it conflicts).
async fn foreign_secret(w: &World, name: &str) {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name}, "stringData": {"x": "y"}
    }))
    .unwrap();
    w.secrets()
        .create(&PostParams::default(), &s)
        .await
        .expect("Secret created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_print_golden_tables() {
    let mut w = World::start("plugin-list").await;
    w.start_operator(Options::default()).await;
    let kc = admin(&w);
    let ns = w.ns.clone();
    w.ready(&bot("deploy-bot", "  rotation: {interval: 720h}"))
        .await;
    w.ready(&bot(
        "reporter",
        "  rotation: {gracePeriod: 1h, maxGracePeriod: 2h}",
    ))
    .await;
    foreign_secret(&w, "taken-agent-key").await;
    w.create(&bot("taken", "")).await;
    w.wait_condition("taken", "Ready", "False", Some("SecretConflict"))
        .await;
    // reporter rotates; its old key waits for its grace period (1h).
    w.annotate("reporter", ROTATE_ANNOTATION, "r1").await;
    wait_until("reporter's old key deprecated", || async {
        let s = w.get("reporter").await.status?;
        s.retiring_keys
            .first()
            .and_then(|k| k.deprecated_at)
            .map(|_| ())
    })
    .await;
    // A Deployment that reads deploy-bot's key from the environment: its consumer.
    let web: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1",
                    "envFrom": [{"secretRef": {"name": "deploy-bot-agent-key"}}]}]}}},
    }))
    .expect("a Deployment");
    Api::<Deployment>::namespaced(w.client.clone(), &ns)
        .create(&PostParams::default(), &web)
        .await
        .expect("create the Deployment");
    wait_until("deploy-bot's consumer", || async {
        let s = w.get("deploy-bot").await.status?;
        (!s.consumers.is_empty()).then_some(())
    })
    .await;
    let mut names = key_names(&w, "deploy-bot", "deploy-bot").await;
    names.extend(key_names(&w, "reporter", "reporter").await);

    let list = plugin(&kc, &ns, &["list"]).await.ok();
    assert_golden(
        "list",
        &mask(&list.stdout, &names),
        "
NAME | AGENT | READY | KEY | KEY AGE | LAST USED | RETIRING | NEXT ROTATION | CONSUMERS | PROVISIONER | AGE
deploy-bot | plugin-list-deploy-bot | True | <deploy-bot-key> | <t> | — | — | in <t> | 1 | default | <t>
reporter | plugin-list-reporter | True | <reporter-key> | <t> | — | 1 | — | — | default | <t>
taken | — | False (SecretConflict) | — | — | — | — | — | — | — | <t>",
    );

    let rotating = plugin(&kc, &ns, &["list", "--rotating"]).await.ok();
    assert_golden(
        "list --rotating",
        &mask(&rotating.stdout, &names),
        "
NAME | AGENT | READY | KEY | KEY AGE | LAST USED | RETIRING | NEXT ROTATION | CONSUMERS | PROVISIONER | AGE
reporter | plugin-list-reporter | True | <reporter-key> | <t> | — | 1 | — | — | default | <t>",
    );
    let not_ready = plugin(&kc, &ns, &["list", "--not-ready"]).await.ok();
    assert_golden(
        "list --not-ready",
        &mask(&not_ready.stdout, &names),
        "
NAME | AGENT | READY | KEY | KEY AGE | LAST USED | RETIRING | NEXT ROTATION | CONSUMERS | PROVISIONER | AGE
taken | — | False (SecretConflict) | — | — | — | — | — | — | — | <t>",
    );
    let both = plugin(&kc, &ns, &["list", "--not-ready", "--rotating"])
        .await
        .ok();
    assert_eq!(both.stdout, "");
    assert_eq!(
        both.stderr.trim(),
        format!("No LatticeAgents not ready and rotating in namespace {ns}.")
    );

    let all = plugin(&kc, &ns, &["list", "-A"]).await;
    // -A and -n together are a usage error; without -n, -A lists every namespace.
    assert_eq!(all.code, 2, "{all:#?}");
    let all = tokio::process::Command::new(binary())
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["list", "-A"])
        .output()
        .await
        .expect("runs");
    assert!(all.status.success());
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        mask(&all, &names).starts_with("NAMESPACE | NAME | AGENT | READY")
            && all
                .lines()
                .filter(|l| l.starts_with("plugin-list "))
                .count()
                == 3,
        "{all}"
    );

    let json = plugin(&kc, &ns, &["list", "-o", "json"]).await.ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let items = json["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["name"], "reporter");
    assert_eq!(items[1]["retiringKeys"], 1);
    assert_eq!(items[0]["ready"], "True");
    assert!(items[0]["nextRotation"].is_string());
    assert_eq!(items[2]["readyReason"], "SecretConflict");
    let yaml = plugin(&kc, &ns, &["list", "-o", "yaml"]).await.ok();
    let yaml: serde_json::Value = lattice_operator::yaml::from_str(&yaml.stdout).expect("YAML");
    assert_eq!(yaml["items"][0]["name"], "deploy-bot");

    let show = plugin(&kc, &ns, &["show", "deploy-bot"]).await.ok();
    assert_golden(
        "show deploy-bot",
        &mask(&show.stdout, &names),
        "
Name: | deploy-bot
Namespace: | plugin-list
Created: | <time> (<t> ago)
Agent: | plugin-list-deploy-bot (id <uuid>)
Capabilities: | deploy.staging, rollback.staging
Secret: | deploy-bot-agent-key
Provisioner: | default (service key <uuid>)
Rotation: | every <t>, next in <t>
Grace period: | <t> unused (at most <t>) before an old key is revoked
Last rotation: | —
Deletion policy: | Revoke

Keys:
  STATE | PREFIX | CREATED | RETIRING SINCE | LAST USED | DEPRECATED | REVOKE AFTER | REVOKE BY
  active | <deploy-bot-key> | <t> ago | — | — | — | — | —

Consumers:
  WORKLOAD | READS | KEY | RESTARTED FOR
  Deployment/web | Environment | Current (runs with the current key) | —

Conditions:
  Ready: True (AgentReady), since <t> ago
    The workload has a working key in its Secret.
    key <deploy-bot-key> of agent plugin-list-deploy-bot is in Secret deploy-bot-agent-key
  Synced: True (Synced), since <t> ago
    The agent and its Secret match the spec.
    the agent and its Secret match the spec
  Rotating: False (Idle), since <t> ago
    No key is being retired.
    no key is being retired

Events:
  LAST SEEN | TYPE | REASON | COUNT | FROM | MESSAGE
  <t> | Normal | Registered | 1 | lattice-operator | registered agent plugin-list-deploy-bot (<uuid>); key <deploy-bot-key> written to Secret deploy-bot-agent-key",
    );

    let show = plugin(&kc, &ns, &["show", "reporter"]).await.ok();
    let masked = mask(&show.stdout, &names);
    for line in [
        "  active | <reporter-key> | <t> ago | — | — | — | — | —",
        "  Rotating: True (WaitingForGracePeriod), since <t> ago",
        "    An old key stays valid for the grace period after its replacement was written.",
    ] {
        assert!(masked.contains(line), "{line:?} missing:\n{masked}");
    }
    let retiring = Regex::new(
        r"  retiring \| <reporter-old-key-0> \| — \| <t> ago \| (—|<t> ago) \| <t> ago \| in <t> \| in <t>",
    )
    .unwrap();
    assert!(retiring.is_match(&masked), "{masked}");
    assert!(masked.contains("| KeyRotated |"), "{masked}");

    let show = plugin(&kc, &ns, &["show", "reporter", "-o", "json"])
        .await
        .ok();
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["keys"][1]["state"], "retiring");
    assert!(v["keys"][1]["revokeBy"].is_string());
    assert_eq!(v["conditions"][0]["type"], "Ready");
    assert!(
        v["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["reason"] == "KeyRotated"))
    );

    // Not found: exit code 3.
    let missing = plugin(&kc, &ns, &["show", "nope"]).await;
    assert_eq!(missing.code, 3, "{missing:#?}");
    assert!(
        missing.stderr.contains(&format!(
            "LatticeAgent \"nope\" not found in namespace {ns}"
        )),
        "{missing:#?}"
    );
    let missing = plugin(&kc, &ns, &["rotate", "nope"]).await;
    assert_eq!(missing.code, 3, "{missing:#?}");
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_wait_follows_a_rotation_until_the_old_key_is_revoked() {
    let mut w = World::start("plugin-rotate").await;
    w.start_operator(Options::default()).await;
    let kc = admin(&w);
    let ns = w.ns.clone();
    let (before, _) = w
        .ready(&bot(
            "deploy-bot",
            "  rotation: {gracePeriod: 1s, maxGracePeriod: 3s}",
        ))
        .await;
    let old = before.status.and_then(|s| s.active_key).expect("a key");

    let run = plugin(
        &kc,
        &ns,
        &["rotate", "deploy-bot", "--wait", "--timeout", "30s"],
    )
    .await
    .ok();
    let a = w.get("deploy-bot").await;
    let status = a.status.clone().expect("status");
    let new = status.active_key.clone().expect("a key");
    assert_ne!(new.id, old.id);
    assert!(status.retiring_keys.is_empty());
    let value = a
        .metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(ROTATE_ANNOTATION))
        .cloned()
        .expect("the annotation was set");
    assert_eq!(status.handled.rotate.as_deref(), Some(value.as_str()));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            format!(
                "Asked LatticeAgent {ns}/deploy-bot to rotate its key \
                 (agentlattice.io/rotate={value})."
            )
            .as_str()
        ),
        "{}",
        run.stdout
    );
    let steps: Vec<&&str> = lines.iter().filter(|l| l.starts_with('[')).collect();
    assert_eq!(steps.len(), 3, "{}", run.stdout);
    assert!(
        steps[0].starts_with(&format!(
            "[1/3] new key {} is in Secret deploy-bot-agent-key (replacing {})",
            new.prefix, old.prefix
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        *steps[1],
        format!("[2/3] old key {} deprecated at AgentLattice", old.prefix)
    );
    assert_eq!(*steps[2], format!("[3/3] old key {} revoked", old.prefix));
    assert_eq!(
        lines.last().copied(),
        Some(format!("Rotation of {ns}/deploy-bot complete.").as_str())
    );
    // AgentLattice agrees: the old key is revoked, the new one works.
    let agent = w
        .emu
        .snapshot()
        .agents
        .into_iter()
        .find(|x| Some(&x.id) == status.agent_id.as_ref())
        .expect("the agent");
    let old_at_al = agent
        .keys
        .iter()
        .find(|k| k.key_id == old.id)
        .expect("the old key");
    assert!(old_at_al.revoked_at.is_some(), "{old_at_al:?}");
    w.check_invariant("deploy-bot").await;

    // A compromised key: two steps, and a second request gets a new value.
    let run = plugin(
        &kc,
        &ns,
        &[
            "rotate",
            "deploy-bot",
            "--compromised",
            "--wait",
            "--timeout",
            "30s",
            "-o",
            "json",
        ],
    )
    .await
    .ok();
    let done: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(done["annotation"], "agentlattice.io/compromised");
    assert_eq!(
        done["steps"]
            .as_array()
            .map(|s| s.iter().map(|s| s["step"].clone()).collect::<Vec<_>>()),
        Some(vec![
            serde_json::json!("newKey"),
            serde_json::json!("oldKeyRevoked")
        ])
    );
    assert!(run.stderr.contains("[1/2] new key "), "{}", run.stderr);
    assert!(run.stderr.contains("[2/2] old key "), "{}", run.stderr);
    w.check_invariant("deploy-bot").await;

    // A rotation that cannot finish in time: exit code 5, and where it stands.
    w.ready(&bot(
        "slow",
        "  rotation: {gracePeriod: 1h, maxGracePeriod: 2h}",
    ))
    .await;
    let run = plugin(&kc, &ns, &["rotate", "slow", "--wait", "--timeout", "3s"]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(
        run.stderr
            .contains("error: timed out after 3s: waiting for the old key ")
            && run
                .stderr
                .contains("to be revoked (Rotating: WaitingForGracePeriod"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("[2/3] old key "), "{run:#?}");
    w.stop_operator().await;
}

/// kube-sim with RBAC: the operator runs as admin; `viewer` may view the namespace (the built-in
/// `view` role, extended to LatticeAgents as the chart does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_list_and_show_and_is_told_what_rotating_needs() {
    let mut w = World::bare(KubeSim::builder().rbac(true), "plugin-rbac", "plugin-rbac").await;
    lattice_operator::cluster::install_crd(&w.client, Duration::from_secs(10))
        .await
        .expect("CRD");
    w.create_namespace("plugin-rbac").await;
    w.put_service_key(Some(&w.service_key.clone())).await;
    w.start_operator(Options::default()).await;
    let ns = w.ns.clone();
    let view: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "latticeagents-view",
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["agentlattice.io"], "resources": ["latticeagents"],
                   "verbs": ["get", "list", "watch"]}]
    }))
    .unwrap();
    Api::<ClusterRole>::all(w.client.clone())
        .create(&PostParams::default(), &view)
        .await
        .expect("aggregated view rule");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "viewer", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(w.client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    w.sim.add_token("viewer-token", "viewer", &[]);
    let dir = std::env::temp_dir().join(format!("plugin-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("viewer.kubeconfig");
    w.sim
        .write_kubeconfig(&kc, Some("viewer-token"))
        .expect("kubeconfig");
    w.ready(&bot("deploy-bot", "")).await;

    let list = plugin(&kc, &ns, &["list"]).await.ok();
    assert!(list.stdout.contains("deploy-bot"), "{list:#?}");
    let show = plugin(&kc, &ns, &["show", "deploy-bot"]).await.ok();
    assert!(
        show.stdout.contains("| Registered |") || show.stdout.contains("Registered"),
        "{show:#?}"
    );
    assert!(
        !show.stdout.contains("not shown"),
        "the viewer reads events: {show:#?}"
    );

    let rotate = plugin(&kc, &ns, &["rotate", "deploy-bot"]).await;
    assert_eq!(rotate.code, 4, "{rotate:#?}");
    assert_eq!(
        rotate.stderr.trim(),
        format!(
            "error: forbidden: viewer may not patch latticeagents.agentlattice.io in namespace \
             {ns}. Rotating needs the `patch` permission on latticeagents.agentlattice.io in \
             namespace {ns} (for example through the `edit` role, which the chart extends to \
             LatticeAgents)."
        )
    );
    assert!(
        !w.get("deploy-bot")
            .await
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ROTATE_ANNOTATION),
        "the refused rotation changed nothing"
    );
    let reregister = plugin(&kc, &ns, &["reregister", "deploy-bot"]).await;
    assert_eq!(reregister.code, 4, "{reregister:#?}");
    assert!(
        reregister
            .stderr
            .contains("Re-registering needs the `patch` permission")
    );

    // Another namespace: listing it is refused with what is missing.
    let other = plugin(&kc, "default", &["list"]).await;
    assert_eq!(other.code, 4, "{other:#?}");
    assert!(
        other.stderr.contains(
            "forbidden: viewer may not list latticeagents.agentlattice.io in namespace default. \
             Listing LatticeAgents needs the `list` permission"
        ),
        "{other:#?}"
    );
    // status: the agents are counted; the operator's namespace is not readable: exit code 4.
    let status = plugin(&kc, &ns, &["status"]).await;
    assert_eq!(status.code, 4, "{status:#?}");
    assert!(
        status
            .stdout
            .contains("LatticeAgents (namespace plugin-rbac): 1"),
        "{status:#?}"
    );
    assert!(
        status.stdout.contains(
            "forbidden: viewer may not get leases.coordination.k8s.io in namespace lattice-system"
        ),
        "{status:#?}"
    );
    w.stop_operator().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregister_and_skip_revoke_set_their_annotations() {
    let mut w = World::start("plugin-actions").await;
    w.start_operator(Options::default()).await;
    let kc = admin(&w);
    let ns = w.ns.clone();
    w.ready(&bot("deploy-bot", "")).await;

    let run = plugin(&kc, &ns, &["reregister", "deploy-bot"]).await.ok();
    let a = w.get("deploy-bot").await;
    let value = a
        .metadata
        .annotations
        .unwrap_or_default()
        .get(REREGISTER_ANNOTATION)
        .cloned()
        .expect("set");
    assert!(run.stdout.contains(&value), "{run:#?}");
    assert!(
        run.stdout
            .contains("Note: Ready is AgentReady, not AgentRevokedExternally"),
        "{run:#?}"
    );

    // A deletion that cannot revoke (the service key is gone) waits; skip-revoke ends it.
    w.put_service_key(None).await;
    w.delete("deploy-bot").await;
    w.wait_condition("deploy-bot", "Ready", "False", Some("RevocationFailed"))
        .await;
    let no_tty = plugin(&kc, &ns, &["skip-revoke", "deploy-bot"]).await;
    assert_eq!(no_tty.code, 2, "{no_tty:#?}");
    assert!(
        no_tty.stderr.contains("pass --yes to confirm"),
        "{no_tty:#?}"
    );
    assert!(
        no_tty
            .stderr
            .contains("the agent stays live and its keys keep working"),
        "{no_tty:#?}"
    );
    assert!(
        w.exists("deploy-bot").await,
        "nothing changed without confirmation"
    );
    let yes = plugin(&kc, &ns, &["skip-revoke", "deploy-bot", "--yes"])
        .await
        .ok();
    assert!(
        yes.stdout.contains(&format!(
            "Set agentlattice.io/skip-revoke=true on LatticeAgent {ns}/deploy-bot."
        )),
        "{yes:#?}"
    );
    w.wait_gone("deploy-bot").await;
    let _ = w.wait_event("deploy-bot", "RevocationSkipped").await;
    assert_eq!(
        w.agents_of_namespace(&ns)
            .iter()
            .filter(|a| a.revoked_at.is_none())
            .count(),
        1,
        "the agent stays live"
    );
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_prints_each_change() {
    let mut w = World::start("plugin-watch").await;
    w.start_operator(Options::default()).await;
    let kc = admin(&w);
    w.ready(&bot("first", "")).await;
    let mut child = tokio::process::Command::new(binary())
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["-n", &w.ns, "list", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawned");
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = std::sync::Arc::clone(&lines);
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut r = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                lines.lock().unwrap().push(line);
            }
        })
    };
    wait_until("the list", || async {
        (lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("first ")))
        .then_some(())
    })
    .await;
    w.ready(&bot("second", "")).await;
    wait_until("second, Ready", || async {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("second ") && l.contains(" True "))
            .then_some(())
    })
    .await;
    w.delete("second").await;
    wait_until("second, deleted", || async {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("second (deleted)"))
            .then_some(())
    })
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    reader.abort();
    let lines = lines.lock().unwrap().clone();
    assert_eq!(
        lines[0].split_whitespace().next(),
        Some("NAME"),
        "{lines:#?}"
    );
    w.stop_operator().await;
}

/// Everything the plugin prints, through a full set of commands (including a compromised
/// rotation followed to the end), is scanned for the key schemes and for every key issued
/// (read back from the Secrets and the service key): none appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_in_any_output() {
    let mut w = World::start("plugin-secrecy").await;
    w.start_operator(Options::default()).await;
    let kc = admin(&w);
    let ns = w.ns.clone();
    let mut keys = vec![w.service_key.clone()];
    let (_, secret) = w
        .ready(&bot(
            "deploy-bot",
            "  rotation: {gracePeriod: 1s, maxGracePeriod: 2s}",
        ))
        .await;
    keys.push(
        secret_key(&secret)
            .expect("a key")
            .expose_secret()
            .to_owned(),
    );
    let mut outputs = Vec::new();
    for args in [
        &["list"][..],
        &["list", "-o", "json"],
        &["list", "-o", "yaml"],
        &["show", "deploy-bot"],
        &["show", "deploy-bot", "-o", "json"],
        &["show", "deploy-bot", "-o", "yaml"],
        &[
            "rotate",
            "deploy-bot",
            "--compromised",
            "--wait",
            "--timeout",
            "30s",
        ],
        &["show", "deploy-bot"],
        &[
            "rotate",
            "deploy-bot",
            "--wait",
            "--timeout",
            "30s",
            "-o",
            "yaml",
        ],
        &["status", "-o", "json"],
        &["status"],
    ] {
        let run = plugin(&kc, &ns, args).await;
        outputs.push((
            format!("{args:?}"),
            format!("{}\n{}", run.stdout, run.stderr),
        ));
    }
    let secret = w.secret("deploy-bot-agent-key").await.expect("the Secret");
    keys.push(
        secret_key(&secret)
            .expect("a key")
            .expose_secret()
            .to_owned(),
    );
    let mut needles: Vec<String> = vec!["al_agent_".into(), "al_svc_".into()];
    for k in &keys {
        let body = k.split_once('_').map(|x| x.1).unwrap_or(k);
        let body = body.split_once('_').map(|x| x.1).unwrap_or(body);
        needles.push(k.clone());
        needles.push(body.to_owned());
        needles.push(body[8..].to_owned());
    }
    // The scanner finds a planted key.
    let planted = format!("x {} y", keys[1]);
    assert!(needles.iter().any(|n| planted.contains(n.as_str())));
    let mut found = Vec::new();
    for (what, text) in &outputs {
        for n in &needles {
            if text.contains(n.as_str()) {
                found.push(format!("{what} contains key material"));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    assert!(
        outputs.iter().any(|(_, t)| t.contains("[2/2] old key")),
        "the rotation ran: {outputs:#?}"
    );
    w.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_and_usage_errors() {
    for shell in ["bash", "zsh", "fish"] {
        let out = tokio::process::Command::new(binary())
            .args(["completion", shell])
            .output()
            .await
            .expect("runs");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("kubectl-lattice") && text.contains("rotate"),
            "{shell}: {text}"
        );
    }
    let out = tokio::process::Command::new(binary())
        .args(["rotate"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let help = tokio::process::Command::new(binary())
        .args(["--help"])
        .output()
        .await
        .expect("runs");
    assert_eq!(help.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 forbidden, 5 timeout")
    );
    // No kubeconfig at all: a plain error (exit code 1) that says so.
    let out = tokio::process::Command::new(binary())
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "list"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: kubeconfig: /nonexistent/kubeconfig")
    );
}

/// The operator's pods as the chart labels them; kube-sim schedules them and marks them Ready.
async fn operator_pod(w: &World, name: &str) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/name": "lattice-operator",
            "app.kubernetes.io/instance": "lattice-operator",
            "app.kubernetes.io/version": "0.1.0"}},
        "spec": {"containers": [{"name": "operator",
            "image": "ghcr.io/lattice-operator/lattice-operator:0.1.0"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_leader_the_pods_and_the_counts() {
    // The operator runs as `lattice-operator run` does, with leader election on the Lease
    // lattice-system/lattice-operator, as the replica of pod lattice-operator-5d8f7-x2x9z.
    let w = World::start("lattice-system").await;
    let args = replica::run_args(&w.emu.base_url(), &w.ns, SERVICE_KEY_SECRET, "15s", &[]);
    let running = replica::start(
        w.client.clone(),
        args,
        "lattice-operator-5d8f7-x2x9z_0a1b2c3d",
    )
    .await;
    operator_pod(&w, "lattice-operator-5d8f7-x2x9z").await;
    operator_pod(&w, "lattice-operator-5d8f7-q8w7e").await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), &w.ns);
    wait_until("both pods Ready", || async {
        let list = pods.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready == 2).then_some(())
    })
    .await;
    w.ready(&bot("deploy-bot", "")).await;
    w.ready(&bot("reporter", "")).await;
    foreign_secret(&w, "taken-agent-key").await;
    w.create(&bot("taken", "")).await;
    w.wait_condition("taken", "Ready", "False", Some("SecretConflict"))
        .await;
    let kc = admin(&w);

    let run = plugin(&kc, &w.ns, &["status"]).await.ok();
    assert_golden(
        "status",
        &mask(&run.stdout, &[]),
        "
Operator (namespace lattice-system):
  Leader: | lattice-operator-5d8f7-x2x9z_0a1b2c3d (Lease lattice-system/lattice-operator, renewed <t> ago, valid <t>)
  POD | READY | PHASE | VERSION | RESTARTS | AGE | LEADER
  lattice-operator-5d8f7-q8w7e | True | Running | 0.1.0 | 0 | <t> | —
  lattice-operator-5d8f7-x2x9z | True | Running | 0.1.0 | 0 | <t> | yes

LatticeAgents (namespace lattice-system): 3
  CONDITION | STATUS | REASON | COUNT
  Ready | False | SecretConflict | 1
  Ready | True | AgentReady | 2
  Synced | False | SecretConflict | 1
  Synced | True | Synced | 2
  Rotating | False | Idle | 3
  PROVISIONER | COUNT
  default | 2
  not registered | 1",
    );
    let json = plugin(&kc, &w.ns, &["status", "-o", "json"]).await.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["leader"]["current"], true);
    assert_eq!(v["pods"][1]["leader"], true);
    assert_eq!(v["pods"][1]["version"], "0.1.0");
    assert_eq!(v["agents"]["total"], 3);

    // Elsewhere (no operator there): no Lease, no pods, and it says so.
    let elsewhere = plugin(&kc, &w.ns, &["status", "--operator-namespace", "default"])
        .await
        .ok();
    assert!(
        elsewhere
            .stdout
            .contains("Lease default/lattice-operator: not found")
            && elsewhere.stdout.contains("Pods:     none found"),
        "{elsewhere:#?}"
    );
    running.terminate().await.expect("a clean stop");
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

/// Installed as `cargo install` puts it (a `kubectl-lattice` on PATH), the real kubectl runs it
/// as `kubectl lattice`, with the user's `KUBECONFIG`, and its exit codes reach the shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_plugin_from_path() {
    let mut w = World::start("plugin-kubectl").await;
    w.start_operator(Options::default()).await;
    w.ready(&bot("deploy-bot", "")).await;
    let dir = std::env::temp_dir().join(format!(
        "kubectl-lattice-path-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let bin = dir.join("bin");
    let home = dir.join("home");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(binary(), bin.join("kubectl-lattice")).expect("installed");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let run = |args: Vec<String>| {
        let (path, home, kc) = (path.clone(), home.clone(), admin(&w));
        async move {
            tokio::process::Command::new(kubectl_bin())
                .args(args)
                .env("PATH", path)
                .env("HOME", home)
                .env("KUBECONFIG", kc)
                .output()
                .await
                .expect("kubectl runs")
        }
    };
    let plugins = run(vec!["plugin".into(), "list".into()]).await;
    assert!(
        String::from_utf8_lossy(&plugins.stdout).contains("kubectl-lattice"),
        "{plugins:?}"
    );
    let list = run(vec![
        "lattice".into(),
        "list".into(),
        "-n".into(),
        w.ns.clone(),
    ])
    .await;
    assert!(list.status.success(), "{list:?}");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("plugin-kubectl-deploy-bot"),
        "{list:?}"
    );
    let missing = run(vec![
        "lattice".into(),
        "show".into(),
        "nope".into(),
        "-n".into(),
        w.ns.clone(),
    ])
    .await;
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    w.stop_operator().await;
    let _ = std::fs::remove_dir_all(&dir);
}
