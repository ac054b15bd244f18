//! The public Python SDK (`agentlattice==0.4.2`) against the emulator: `tests/python/sdk_smoke.py`.
//!
//! The interpreter is `$LATTICE_PYTHON`, else `<workspace>/.venv/bin/python` (created by
//! `scripts/setup-python`). Without one this test fails — it is never skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agentlattice_emulator::{ActorKind, Emulator, EmulatorConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the agentlattice SDK: set LATTICE_PYTHON or run `scripts/setup-python` \
         (creates {})",
        venv.display()
    );
    venv
}

/// Registers an agent with one capability over raw HTTP (the SDK's register cannot send any).
async fn register_capable(base: &str, service_key: &str, capability: &str) -> (String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = serde_json::json!({"name": "sdk-capable", "capabilities": [capability]});
    let req = http::Request::post(format!("{base}/api/agents/register"))
        .header("authorization", format!("Bearer {service_key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let resp = client.request(req).await.expect("register over HTTP");
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["api_key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_python_sdk_against_the_emulator() {
    let python = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_smoke.py");
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let svc = emu.create_service_key("python-sdk");
    let (capable_id, capable_key) =
        register_capable(&emu.base_url(), &svc.api_key, "deploy.staging").await;

    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("AL_BASE_URL", emu.base_url())
        .env("AL_SERVICE_KEY", &svc.api_key)
        .env("AL_AGENT_NAME", "sdk-registered")
        .env("AL_AGENT_KEY", &capable_key)
        .env("AL_ALLOWED_ACTION", "deploy.staging")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `scripts/setup-python` or set LATTICE_PYTHON",
                python.display()
            )
        });
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the SDK script finishes within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sdk_smoke.py failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}\n\
         (ModuleNotFoundError? run `scripts/setup-python`)",
        out.status
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(!stdout.contains(&svc.api_key) && !stdout.contains(&capable_key));

    // What the SDK did is what the emulator recorded.
    let snap = emu.snapshot();
    let registered = snap
        .live_agent_named("sdk-registered")
        .expect("registered through the SDK");
    assert_eq!(seen["registered_id"], registered.id.as_str());
    assert_eq!(seen["capable_id"], capable_id.as_str());
    assert_eq!(seen["org_id"], snap.org_id.as_str());
    assert_eq!(
        registered.description, None,
        "the SDK's `description: null` is accepted"
    );
    assert!(registered.capabilities.is_empty());
    assert_eq!(registered.created_by, svc.id);
    assert!(
        registered.last_used_at.is_some(),
        "whoami/execute used its key"
    );
    assert!(snap.agent(&capable_id).unwrap().last_used_at.is_some());
    let registrations: Vec<_> = emu
        .audit()
        .into_iter()
        .filter(|e| e.operation == "register")
        .map(|e| (e.actor.kind, e.outcome))
        .collect();
    assert_eq!(
        registrations,
        [
            (ActorKind::ServiceKey, "success".to_owned()),
            (ActorKind::ServiceKey, "success".to_owned()),
            (ActorKind::ServiceKey, "agent_name_exists".to_owned()),
        ]
    );
    assert!(emu.request_count("execute_action") >= 5);
    emu.shutdown().await;
}
