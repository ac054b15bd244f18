//! The emulator-only admin API (§5).

use agentlattice_emulator::{EmulatorConfig, StateSnapshot};
use serde_json::json;

use crate::common::{Fx, s};

#[tokio::test]
async fn admin_api_needs_the_admin_token() {
    let fx = Fx::with(EmulatorConfig {
        admin_token: Some("let-me-in".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(fx.emu.admin_token(), "let-me-in");
    fx.http
        .get("/_admin/state")
        .send()
        .await
        .expect_error(401, "missing_authorization");
    fx.http
        .get("/_admin/state")
        .bearer("wrong")
        .send()
        .await
        .expect_error(401, "invalid_authorization");
    fx.http
        .get("/_admin/state")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect_error(401, "invalid_authorization");
    fx.http
        .get("/_admin/state")
        .bearer("let-me-in")
        .send()
        .await
        .expect(200);
    // A random token is generated when none is given.
    let other = Fx::new().await;
    assert!(other.emu.admin_token().len() >= 32);
    assert_ne!(other.emu.admin_token(), fx.emu.admin_token());
}

#[tokio::test]
async fn service_keys_over_the_admin_api() {
    let fx = Fx::new().await;
    let admin = fx.admin();
    let created = fx
        .http
        .post("/_admin/service-keys")
        .bearer(&admin)
        .json(&json!({"label": "ci"}))
        .send()
        .await
        .expect(201);
    let key = s(&created["api_key"]);
    let body = key.strip_prefix("al_svc_").unwrap();
    assert_eq!(body.len(), 40);
    assert_eq!(created["key_prefix"], &body[..8]);
    assert_eq!(created["label"], "ci");
    assert!(created["created_at"].is_string());
    let id = s(&created["id"]);

    // It works, and the list never shows plaintext.
    fx.http
        .get("/api/agents")
        .bearer(&key)
        .send()
        .await
        .expect(200);
    let list = fx
        .http
        .get("/_admin/service-keys")
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.get("api_key").is_none()));
    assert!(!list.to_string().contains(&key));
    let mine = items.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(mine["status"], "active");
    assert!(!mine["last_used_at"].is_null());

    for bad in [
        json!({}),
        json!({"label": ""}),
        json!({"label": 3}),
        json!({"label": "x", "y": 1}),
    ] {
        fx.http
            .post("/_admin/service-keys")
            .bearer(&admin)
            .json(&bad)
            .send()
            .await
            .expect_error(422, "validation_failed");
    }

    let revoked = fx
        .http
        .delete(&format!("/_admin/service-keys/{id}"))
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    assert_eq!(revoked["status"], "revoked");
    fx.http
        .delete(&format!("/_admin/service-keys/{id}"))
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    fx.http
        .get("/api/agents")
        .bearer(&key)
        .send()
        .await
        .expect_error(401, "key_revoked");
    fx.http
        .delete(&format!("/_admin/service-keys/{}", uuid::Uuid::new_v4()))
        .bearer(&admin)
        .send()
        .await
        .expect_error(404, "service_key_not_found");
    let audit = fx.emu.audit();
    let svc_ops: Vec<_> = audit
        .iter()
        .filter(|e| e.key_id.as_deref() == Some(id.as_str()))
        .map(|e| e.operation.as_str())
        .collect();
    assert_eq!(svc_ops, ["create_service_key", "revoke_service_key"]);
}

#[tokio::test]
async fn state_and_metrics() {
    let fx = Fx::new().await;
    let a = fx.register("seen", &["x"]).await;
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    fx.http
        .get("/api/agents?limit=0")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(422);
    let state = fx
        .http
        .get("/_admin/state")
        .bearer(&fx.admin())
        .send()
        .await
        .expect(200);
    let parsed: StateSnapshot =
        serde_json::from_value(state.clone()).expect("admin state parses as StateSnapshot");
    assert_eq!(parsed, fx.emu.snapshot());
    assert_eq!(parsed.agents[0].id, s(&a["id"]));
    assert_eq!(parsed.agents[0].keys[0].key_id, s(&a["key_id"]));
    assert!(!state.to_string().contains(&s(&a["api_key"])));

    let m = fx
        .http
        .get("/_admin/metrics")
        .bearer(&fx.admin())
        .send()
        .await
        .expect(200);
    assert_eq!(m["requests"]["register"]["201"], 1);
    assert_eq!(m["requests"]["list_agents"]["200"], 1);
    assert_eq!(m["requests"]["list_agents"]["422"], 1);
    assert_eq!(fx.emu.request_count("list_agents"), 2);
    assert_eq!(fx.emu.request_count("register"), 1);
    assert_eq!(fx.emu.request_count("mint_key"), 0);
    assert_eq!(fx.emu.metrics().count_status("list_agents", 422), 1);
    for bad in ["since=-1", "limit=0", "since=x"] {
        fx.http
            .get(&format!("/_admin/audit?{bad}"))
            .bearer(&fx.admin())
            .send()
            .await
            .expect_error(422, "validation_failed");
    }
}
