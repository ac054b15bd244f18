//! Alter's public Python SDK (`alter-sdk==0.29.0`) against the emulator:
//! `tests/python/sdk_agents.py` drives every managed-agents call and the typed errors.
//!
//! The interpreter is `$LATTICE_PYTHON`, else `<workspace>/.venv/bin/python` (created by
//! `scripts/setup-python`). Without one this test fails — it is never skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alter_emulator::scopes::AGENTS_READ;
use alter_emulator::{ActorKind, AgentStatus, Emulator, EmulatorConfig, KeyStatus};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with alter-sdk: set LATTICE_PYTHON or run `scripts/setup-python` (creates {})",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_python_sdk_against_the_emulator() {
    let python = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_agents.py");
    let emu = Emulator::start(EmulatorConfig {
        key_limit: 3,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let app = emu.create_app("python-sdk");
    let full = emu.create_app_key(&app.id, "sdk", None).unwrap();
    let read = emu
        .create_app_key(&app.id, "sdk-read", Some(&[AGENTS_READ]))
        .unwrap();

    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("ALTER_BASE_URL", emu.base_url())
        .env("ALTER_TEST_APP_KEY", &full.api_key)
        .env("ALTER_TEST_READ_KEY", &read.api_key)
        .env("ALTER_TEST_ADMIN_TOKEN", emu.admin_token())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
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
        "sdk_agents.py failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}\n(ModuleNotFoundError? run `scripts/setup-python`)",
        out.status
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(!stdout.contains(&full.api_key) && !stdout.contains(&read.api_key));

    // What the SDK saw is what the emulator holds.
    let snap = emu.snapshot();
    assert_eq!(seen["app_id"], app.id.as_str());
    let bot = snap
        .agent(seen["agent_id"].as_str().unwrap())
        .expect("the SDK's agent");
    assert_eq!(bot.agent.status, AgentStatus::Revoked);
    assert_eq!(bot.live_keys().count(), 0, "cascade revoke");
    assert_eq!(bot.keys.len(), 4, "create + 3 mints");
    assert!(bot.keys.iter().all(|k| k.status == KeyStatus::Revoked));
    assert!(
        bot.activity_30d >= 4,
        "me and resolve_identity were recorded"
    );
    let recreated = snap.live_agent_named(&app.id, "sdk-bot").unwrap();
    assert_eq!(seen["recreated_id"], recreated.agent.id.as_str());
    assert_eq!(snap.live_agents().count(), 2);
    let outcomes: Vec<(String, String)> = emu
        .audit()
        .into_iter()
        .filter(|e| e.actor.kind == ActorKind::AppKey && e.outcome != "success")
        .map(|e| (e.action, e.outcome))
        .collect();
    for expected in [
        ("create_agent", "idempotency_key_body_mismatch"),
        ("create_agent", "agent_name_exists"),
        ("update_agent", "agent_concurrent_update"),
        ("revoke_key", "last_active_key"),
        ("deprecate_key", "key_revoked"),
        ("mint_key", "agent_key_limit_reached"),
        ("mint_key", "insufficient_scope"),
        ("delete_agent", "insufficient_scope"),
    ] {
        assert!(
            outcomes.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {outcomes:?}"
        );
    }
    assert_eq!(emu.metrics().count_status("list_agents", 429), 1);
    assert!(emu.request_count("me") >= 5);
    emu.shutdown().await;
}
