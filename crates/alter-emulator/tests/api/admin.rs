//! The admin API: its token, apps, app keys (the only plaintext it returns), state, audit, metrics.

use http::Method;
use serde_json::json;

use crate::common::{Env, s};

#[tokio::test]
async fn the_admin_token_is_required() {
    let env = Env::new().await;
    env.http
        .get("/_admin/state")
        .send()
        .await
        .expect_error(401, "missing_authorization");
    env.http
        .get("/_admin/state")
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .expect_error(401, "invalid_authorization");
    // An app key is not an admin token.
    env.http
        .get("/_admin/state")
        .header("authorization", &format!("Bearer {}", env.k()))
        .send()
        .await
        .expect_error(401, "invalid_authorization");
}

#[tokio::test]
async fn apps_and_app_keys() {
    let env = Env::new().await;
    let app = env
        .admin(
            Method::POST,
            "/_admin/apps",
            Some(json!({"name": "billing"})),
        )
        .await
        .expect(201);
    let app_id = s(&app["id"]);
    let created = env
        .admin(
            Method::POST,
            "/_admin/app-keys",
            Some(json!({"app_id": app_id, "label": "ro", "scopes": ["dashboard_agents:read"]})),
        )
        .await
        .expect(201);
    let plain = s(&created["api_key"]);
    assert!(plain.starts_with("alter_rk_"));
    env.http
        .get("/sdk/agents")
        .key(&plain)
        .send()
        .await
        .expect(200);
    env.http
        .post("/sdk/agents")
        .key(&plain)
        .json(json!({"name": "x"}))
        .send()
        .await
        .expect_error(403, "insufficient_scope");
    env.admin(
        Method::POST,
        "/_admin/app-keys",
        Some(json!({"app_id": app_id, "label": "x", "scopes": ["agents:read"]})),
    )
    .await
    .expect_error(422, "validation_error");
    env.admin(
        Method::POST,
        "/_admin/app-keys",
        Some(json!({"app_id": "00000000-0000-4000-8000-000000000000", "label": "x"})),
    )
    .await
    .expect_error(404, "app_not_found");
    let list = env
        .admin(Method::GET, "/_admin/app-keys", None)
        .await
        .expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&plain));
    let id = s(&created["id"]);
    let v = env
        .admin(
            Method::PATCH,
            &format!("/_admin/app-keys/{id}/deprecate"),
            None,
        )
        .await
        .expect(200);
    assert_eq!(v["status"], "deprecated");
    let v = env
        .admin(
            Method::PATCH,
            &format!("/_admin/app-keys/{id}/undeprecate"),
            None,
        )
        .await
        .expect(200);
    assert_eq!(v["status"], "active");
    let v = env
        .admin(Method::DELETE, &format!("/_admin/app-keys/{id}"), None)
        .await
        .expect(200);
    assert_eq!(v["status"], "revoked");
    env.http
        .get("/sdk/agents")
        .key(&plain)
        .send()
        .await
        .expect_error(401, "invalid_key");
    env.admin(Method::DELETE, "/_admin/app-keys/nope", None)
        .await
        .expect_error(404, "app_key_not_found");
    let apps = env
        .admin(Method::GET, "/_admin/apps", None)
        .await
        .expect(200);
    assert_eq!(apps["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn state_audit_and_metrics_hold_no_secret() {
    let env = Env::new().await;
    let (_, agent_key) = env.create("seen").await;
    let state = env.admin(Method::GET, "/_admin/state", None).await;
    let text = String::from_utf8_lossy(&state.body).into_owned();
    assert!(!text.contains(&agent_key) && !text.contains(env.k()));
    let parsed: alter_emulator::StateSnapshot = serde_json::from_slice(&state.body).unwrap();
    assert_eq!(parsed, env.emu.snapshot());
    let audit = env
        .admin(Method::GET, "/_admin/audit?since=1&limit=1", None)
        .await
        .expect(200);
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["seq"].as_u64(), items[0]["action"].as_str()),
        (Some(2), Some("create_agent"))
    );
    let m = env
        .admin(Method::GET, "/_admin/metrics", None)
        .await
        .expect(200);
    assert_eq!(m["requests"]["create_agent"]["201"], 1);
}
