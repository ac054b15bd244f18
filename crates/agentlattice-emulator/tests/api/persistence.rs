//! Persistence: a restart with the same state file keeps agents, keys, service keys, idempotency
//! records and the audit trail; the file holds hashes, never plaintext.

use agentlattice_emulator::{Emulator, EmulatorConfig, Error};
use serde_json::json;

use crate::common::{Http, s};

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("al-emu-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = temp_dir();
    let file = dir.join("state.json");
    let config = EmulatorConfig {
        state_file: Some(file.clone()),
        ..Default::default()
    };

    let emu = Emulator::start(config.clone()).await.unwrap();
    let http = Http::new(emu.base_url());
    let svc = emu.create_service_key("dev");
    let reg = http
        .post("/api/agents/register")
        .bearer(&svc.api_key)
        .header("Idempotency-Key", "uid-1")
        .json(&json!({"name": "kept", "capabilities": ["x"], "metadata": {"k8s.uid": "u"}}))
        .send()
        .await
        .expect(201);
    let id = s(&reg["id"]);
    let agent_key = s(&reg["api_key"]);
    let minted = http
        .post(&format!("/api/agents/{id}/keys"))
        .bearer(&svc.api_key)
        .send()
        .await
        .expect(201);
    http.patch(&format!(
        "/api/agents/{id}/keys/{}/deprecate",
        s(&reg["key_id"])
    ))
    .bearer(&svc.api_key)
    .send()
    .await
    .expect(200);
    http.get("/api/v1/whoami")
        .bearer(&agent_key)
        .send()
        .await
        .expect(200);
    let gone = http
        .post("/api/agents/register")
        .bearer(&svc.api_key)
        .json(&json!({"name": "gone"}))
        .send()
        .await
        .expect(201);
    http.delete(&format!("/api/agents/{}", s(&gone["id"])))
        .bearer(&svc.api_key)
        .send()
        .await
        .expect(200);
    let before = emu.snapshot();
    let audit_before = emu.audit();
    emu.shutdown().await;

    // The file: hashes only, no plaintext, private permissions, no temp file left behind.
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [&svc.api_key, &agent_key, &s(&minted["api_key"])] {
        assert!(
            !text.contains(secret.as_str()),
            "plaintext in the state file"
        );
    }
    assert!(text.contains("key_hash"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("state.json")]);

    // Restart.
    let emu = Emulator::start(config.clone()).await.unwrap();
    let http = Http::new(emu.base_url());
    assert_eq!(emu.snapshot(), before);
    assert_eq!(emu.audit(), audit_before);
    // Keys still authenticate (the deprecated one still says so), names are still taken,
    // the idempotency key still replays, revoked stays revoked.
    let who = http.get("/api/v1/whoami").bearer(&agent_key).send().await;
    assert_eq!(who.status, 200);
    assert_eq!(who.header("x-al-key-deprecated"), Some("true"));
    http.get("/api/v1/whoami")
        .bearer(&s(&minted["api_key"]))
        .send()
        .await
        .expect(200);
    http.post("/api/agents/register")
        .bearer(&svc.api_key)
        .json(&json!({"name": "kept"}))
        .send()
        .await
        .expect_error(409, "agent_name_exists");
    let replay = http
        .post("/api/agents/register")
        .bearer(&svc.api_key)
        .header("Idempotency-Key", "uid-1")
        .json(&json!({"name": "kept", "capabilities": ["x"], "metadata": {"k8s.uid": "u"}}))
        .send()
        .await
        .expect(200);
    assert_eq!(replay["id"], id.as_str());
    http.post("/api/agents/register")
        .bearer(&svc.api_key)
        .json(&json!({"name": "gone"}))
        .send()
        .await
        .expect(201);
    // The audit continues its sequence (the refused registration is audited too).
    let audit = emu.audit();
    let last = audit_before.last().unwrap().seq;
    let after: Vec<_> = audit[audit_before.len()..]
        .iter()
        .map(|e| (e.seq, e.operation.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        after,
        [
            (last + 1, "register", "agent_name_exists"),
            (last + 2, "register", "success")
        ]
    );
    emu.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn changes_are_written_without_a_shutdown() {
    let dir = temp_dir();
    let file = dir.join("state.json");
    let emu = Emulator::start(EmulatorConfig {
        state_file: Some(file.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let svc = emu.create_service_key("debounced");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains(&svc.id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the debounced write never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(emu);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_corrupt_or_unwritable_state_file_is_an_error_not_a_panic() {
    let dir = temp_dir();
    let file = dir.join("state.json");
    std::fs::write(&file, "{ not json").unwrap();
    let err = Emulator::start(EmulatorConfig {
        state_file: Some(file.clone()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::StateFormat { .. }), "{err:?}");
    std::fs::write(&file, r#"{"format": 99, "org_id": "00000000-0000-0000-0000-000000000000", "service_keys": [], "agents": [], "idempotency": [], "audit": [], "next_seq": 1}"#).unwrap();
    let err = Emulator::start(EmulatorConfig {
        state_file: Some(file.clone()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("format"), "{err}");
    let err = Emulator::start(EmulatorConfig {
        state_file: Some(dir.join("missing-dir").join("state.json")),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::StateIo { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
