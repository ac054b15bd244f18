//! The invariant checker against kube-sim and the emulator: `lattice-operator verify` (the
//! binary, as anyone would run it) passes on a settled world, and reports each violation injected
//! out of band — without printing a key.

mod support;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use lattice_operator::verify::Violation;
use support::*;

/// Runs `lattice-operator verify` on the world's namespace: (exit code, stdout, stderr).
async fn verify_binary(w: &World) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lattice-operator"))
        .arg("verify")
        .arg("--kubeconfig")
        .arg(w.sim.kubeconfig_path())
        .arg("--emulator-url")
        .arg(w.emu.base_url())
        .arg("--namespaces")
        .arg(&w.ns)
        .env("LATTICE_VERIFY_EMULATOR_TOKEN", w.emu.admin_token())
        .env_remove("AL_BASE_URL")
        .env_remove("LATTICE_NAMESPACES")
        .env_remove("LATTICE_CLUSTER_NAME")
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("lattice-operator verify runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_a_settled_world_and_reports_each_violation() {
    let mut w = World::start("verify").await;
    w.start_operator(Options::default()).await;
    let names = ["alpha", "beta", "gamma", "delta", "epsilon"];
    for name in names {
        w.create(&bot(name, "")).await;
    }
    // One more, deleted with `Retain`: its agent lives on, accounted for by its released Secret.
    w.create(&bot("zeta", "  deletionPolicy: Retain")).await;
    for name in names.iter().chain(&["zeta"]) {
        w.wait_settled(name, true).await;
    }
    w.delete("zeta").await;
    wait_until("zeta is gone", || async {
        w.agents()
            .get_opt("zeta")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;

    let (code, out, err) = verify_binary(&w).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("5 Ready, checked"), "{out}");
    assert!(out.contains("the invariant holds"), "{out}");
    for name in names {
        w.check_invariant(name).await;
    }

    // Out of band, with the operator stopped (it would repair all of this).
    w.stop_operator().await;
    let p = w.provisioner();
    let agent_of = |a: lattice_operator::crd::LatticeAgent| {
        a.status.and_then(|s| s.agent_id).expect("agent id")
    };
    let alpha = agent_of(w.get("alpha").await);
    p.revoke_agent(&alpha).await.expect("alpha's agent revoked");
    let beta = agent_of(w.get("beta").await);
    let extra = p
        .mint_key(&beta, Some("out-of-band"))
        .await
        .expect("an extra key minted");
    w.secrets()
        .delete("gamma-agent-key", &DeleteParams::default())
        .await
        .expect("gamma's Secret deleted");
    let delta_secret = w.secret("delta-agent-key").await.expect("delta's Secret");
    let delta_key = secret_key(&delta_secret).expect("delta's key");
    let leaked = Event {
        metadata: ObjectMeta {
            name: Some("leak".into()),
            namespace: Some(w.ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        reporting_controller: Some("someone/else".into()),
        reporting_instance: Some("x".into()),
        action: Some("Leak".into()),
        reason: Some("Leak".into()),
        type_: Some("Normal".into()),
        note: Some(format!("the key is {}", delta_key.expose_secret())),
        regarding: Some(ObjectReference {
            kind: Some("LatticeAgent".into()),
            name: Some("delta".into()),
            namespace: Some(w.ns.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Event>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &leaked)
        .await
        .expect("event created");
    // epsilon is deleted with Revoke while the operator is down, and its finalizer removed by
    // hand: the agent is never revoked.
    let epsilon = agent_of(w.get("epsilon").await);
    w.agents()
        .patch(
            "epsilon",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer removed");
    w.delete("epsilon").await;
    wait_until("epsilon is gone", || async {
        w.agents()
            .get_opt("epsilon")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;

    let report = w.verify().await;
    let v = &report.violations;
    let ns = &w.ns;
    assert!(
        v.contains(&Violation::LiveAgents {
            resource: format!("{ns}/alpha"),
            found: vec![]
        }),
        "{report}"
    );
    assert!(
        v.contains(&Violation::UnaccountedKey {
            resource: format!("{ns}/beta"),
            agent: beta.clone(),
            key: extra.key.key_id.clone()
        }),
        "{report}"
    );
    assert!(
        v.contains(&Violation::SecretMissing {
            resource: format!("{ns}/gamma"),
            secret: "gamma-agent-key".into()
        }),
        "{report}"
    );
    assert!(
        v.contains(&Violation::KeyMaterial {
            location: format!("Event {ns}/leak")
        }),
        "{report}"
    );
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::OrphanAgent { agent, .. } if *agent == epsilon)),
        "{report}"
    );
    assert_eq!(v.len(), 5, "nothing else: {report}");

    let (code, out, err) = verify_binary(&w).await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("5 violations"), "{out}");
    for line in [
        format!("{ns}/alpha is Ready but has 0 live agents"),
        format!("has live key {}", extra.key.key_id),
        format!("{ns}/gamma is Ready but its Secret gamma-agent-key does not exist"),
        format!("key material in Event {ns}/leak"),
        format!("agent {epsilon} is live but its LatticeAgent {ns}/epsilon"),
    ] {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    let body = &delta_key.expose_secret()["al_agent_".len()..];
    assert!(
        !out.contains(body) && !err.contains(body),
        "a key was printed"
    );

    // Something it cannot read is not a verdict: exit 2.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lattice-operator"))
        .args(["verify", "--kubeconfig"])
        .arg(w.sim.kubeconfig_path())
        .args(["--emulator-url", &w.emu.base_url()])
        .env("LATTICE_VERIFY_EMULATOR_TOKEN", "wrong-token")
        .output()
        .await
        .expect("lattice-operator verify runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("_admin/state: HTTP 401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
