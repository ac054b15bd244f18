//! The state file: a restart keeps apps, keys (which keep working), agents, names, idempotency
//! records and the audit trail; the file holds hashes only.

use alter_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

use crate::common::{Env, Http, s};

#[tokio::test]
async fn a_restart_keeps_everything_but_secrets() {
    let dir = std::env::temp_dir().join(format!("alter-emu-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let config = EmulatorConfig {
        state_file: Some(file.clone()),
        ..EmulatorConfig::default()
    };
    let env = Env::with(config.clone()).await;
    let body = json!({"name": "durable", "metadata": {"k8s.uid": "u"}});
    let a = env
        .http
        .post("/sdk/agents")
        .key(env.k())
        .header("idempotency-key", "ik-1")
        .json(body.clone())
        .send()
        .await
        .expect(201);
    let agent_key = s(&a["api_key"]);
    env.http
        .get("/sdk/agents/me")
        .key(&agent_key)
        .send()
        .await
        .expect(200);
    let app_key = env.key.api_key.clone();
    let before = env.emu.snapshot();
    let audit_before = env.emu.audit();
    env.emu.shutdown().await;

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&agent_key) && !text.contains(&app_key));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let emu = Emulator::start(config).await.unwrap();
    let http = Http::new(&emu.base_url());
    assert_eq!(emu.snapshot().agents, before.agents);
    assert_eq!(emu.audit(), audit_before);
    http.get("/sdk/agents/me")
        .key(&agent_key)
        .send()
        .await
        .expect(200);
    let replay = http
        .post("/sdk/agents")
        .key(&app_key)
        .header("idempotency-key", "ik-1")
        .json(body)
        .send()
        .await
        .expect(200);
    assert_eq!(replay["id"], a["id"]);
    http.post("/sdk/agents")
        .key(&app_key)
        .json(json!({"name": "durable"}))
        .send()
        .await
        .expect_error(409, "agent_name_exists");
    emu.shutdown().await;

    std::fs::write(&file, b"{\"format\": 99}").unwrap();
    let e = Emulator::start(EmulatorConfig {
        state_file: Some(file.clone()),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.category(), "state_format");
    let _ = std::fs::remove_dir_all(&dir);
}
