//! Authentication and authorization (§1.2, §2, §3, §4).

use agentlattice_emulator::ServiceKeyStatus;
use serde_json::json;

use crate::common::{Fx, s};

#[tokio::test]
async fn service_keys_provision_agent_keys_act() {
    let fx = Fx::new().await;
    let a = fx.register("sep", &["x"]).await;
    let agent_key = s(&a["api_key"]);
    let id = s(&a["id"]);

    // Service key on the agent API: 403 on every /api/v1 route.
    fx.http
        .get("/api/v1/whoami")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect_error(403, "service_key_cannot_act");
    fx.http
        .post("/api/v1/actions")
        .bearer(&fx.svc.api_key)
        .json(&json!({"action_type": "x"}))
        .send()
        .await
        .expect_error(403, "service_key_cannot_act");

    // Agent key on every provisioning route: 403.
    let k = s(&a["key_id"]);
    let p = format!("/api/agents/{id}");
    let cases = [
        fx.http
            .post("/api/agents/register")
            .json(&json!({"name": "evil"})),
        fx.http.get("/api/agents"),
        fx.http.get(&p),
        fx.http.patch(&p).json(&json!({"description": "x"})),
        fx.http.post(&format!("{p}/halt")),
        fx.http.post(&format!("{p}/resume")),
        fx.http.delete(&p),
        fx.http.post(&format!("{p}/keys")),
        fx.http.get(&format!("{p}/keys")),
        fx.http.patch(&format!("{p}/keys/{k}/deprecate")),
        fx.http.patch(&format!("{p}/keys/{k}/undeprecate")),
        fx.http.delete(&format!("{p}/keys/{k}?force=true")),
    ];
    for req in cases {
        req.bearer(&agent_key)
            .send()
            .await
            .expect_error(403, "agent_key_cannot_provision");
    }
    // Nothing changed.
    let snap = fx.emu.snapshot();
    assert_eq!(snap.agents.len(), 1);
    assert_eq!(snap.agents[0].version, 1);
    assert_eq!(snap.agents[0].keys.len(), 1);
}

#[tokio::test]
async fn malformed_and_unknown_credentials() {
    let fx = Fx::new().await;
    let unknown_svc = format!("al_svc_{}", "A".repeat(40));
    let unknown_agent = format!("al_agent_{}", "b".repeat(40));
    for (path, is_agent_api) in [("/api/agents", false), ("/api/v1/whoami", true)] {
        fx.http
            .get(path)
            .send()
            .await
            .expect_error(401, "missing_authorization");
        for header in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Token al_svc_x",
            "al_svc_x",
        ] {
            fx.http
                .get(path)
                .header("authorization", header)
                .send()
                .await
                .expect_error(401, "invalid_authorization");
        }
        // No known scheme (the admin token is not an API key either).
        for token in ["sk_live_123", "al_other_x", fx.emu.admin_token()] {
            fx.http
                .get(path)
                .bearer(token)
                .send()
                .await
                .expect_error(401, "invalid_authorization");
        }
        for token in [&unknown_svc, &unknown_agent] {
            let r = fx.http.get(path).bearer(token).send().await;
            r.expect_error(401, "invalid_key");
            assert!(
                !String::from_utf8_lossy(&r.body).contains(token.as_str()),
                "never echo a key"
            );
        }
        let _ = is_agent_api;
    }
    // "bearer" is case-insensitive.
    let r = fx
        .http
        .get("/api/agents")
        .header("authorization", &format!("bearer {}", fx.svc.api_key))
        .send()
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn revoked_service_key_is_refused_but_its_agents_keep_working() {
    let fx = Fx::new().await;
    let a = fx.register("survivor", &["x"]).await;
    fx.emu.revoke_service_key(&fx.svc.id).unwrap();
    fx.emu.revoke_service_key(&fx.svc.id).unwrap(); // idempotent
    assert!(
        fx.emu
            .revoke_service_key(&uuid::Uuid::new_v4().to_string())
            .is_err()
    );
    let r = fx
        .http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await;
    r.expect_error(401, "key_revoked");
    fx.http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "new"}))
        .send()
        .await
        .expect_error(401, "key_revoked");
    let act = fx
        .http
        .post("/api/v1/actions")
        .bearer(&s(&a["api_key"]))
        .json(&json!({"action_type": "x"}))
        .send()
        .await
        .expect(200);
    assert_eq!(act["status"], "executed");
    // Another service key still manages the agent.
    let other = fx.emu.create_service_key("second");
    fx.http
        .get(&format!("/api/agents/{}", s(&a["id"])))
        .bearer(&other.api_key)
        .send()
        .await
        .expect(200);
    let snap = fx.emu.snapshot();
    assert_eq!(
        snap.service_key(&fx.svc.id).unwrap().status,
        ServiceKeyStatus::Revoked
    );
    assert_eq!(snap.agents[0].created_by, fx.svc.id);
}

#[tokio::test]
async fn last_used_at_is_tracked_per_key_agent_and_service_key() {
    let fx = Fx::new().await;
    assert!(fx.emu.snapshot().service_keys[0].last_used_at.is_none());
    let a = fx.register("user", &[]).await;
    let id = s(&a["id"]);
    let m = fx.mint(&id).await;
    let snap = fx.emu.snapshot();
    assert!(snap.service_keys[0].last_used_at.is_some());
    let agent = snap.agent(&id).unwrap();
    assert!(agent.last_used_at.is_none());
    assert!(agent.keys.iter().all(|k| k.last_used_at.is_none()));

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    fx.http
        .get("/api/v1/whoami")
        .bearer(&s(&m["api_key"]))
        .send()
        .await
        .expect(200);
    let snap = fx.emu.snapshot();
    let agent = snap.agent(&id).unwrap();
    let k2 = agent.key(&s(&m["key_id"])).unwrap();
    assert!(k2.last_used_at.is_some());
    assert!(agent.key(&s(&a["key_id"])).unwrap().last_used_at.is_none());
    assert_eq!(
        agent.last_used_at, k2.last_used_at,
        "agent last_used_at = latest of its keys"
    );

    // Over the wire too.
    let got = fx
        .http
        .get(&format!("/api/agents/{id}"))
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    assert!(!got["last_used_at"].is_null());
    let keys = fx
        .http
        .get(&format!("/api/agents/{id}/keys"))
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    assert!(keys["items"][0]["last_used_at"].is_null());
    assert!(!keys["items"][1]["last_used_at"].is_null());
}

#[tokio::test]
async fn deprecated_header_is_on_every_response_to_a_deprecated_key() {
    let fx = Fx::new().await;
    let a = fx.register("dep", &[]).await;
    let id = s(&a["id"]);
    fx.mint(&id).await;
    fx.http
        .patch(&format!(
            "/api/agents/{id}/keys/{}/deprecate",
            s(&a["key_id"])
        ))
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    let key = s(&a["api_key"]);
    let denied = fx
        .http
        .post("/api/v1/actions")
        .bearer(&key)
        .json(&json!({"action_type": "nope"}))
        .send()
        .await;
    assert_eq!(denied.status, 200);
    assert_eq!(denied.header("x-al-key-deprecated"), Some("true"));
    // Even an error answered to the deprecated key carries it.
    let forbidden = fx.http.get("/api/agents").bearer(&key).send().await;
    forbidden.expect_error(403, "agent_key_cannot_provision");
    assert_eq!(forbidden.header("x-al-key-deprecated"), Some("true"));
    // Service-key responses never do.
    let r = fx
        .http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await;
    assert_eq!(r.header("x-al-key-deprecated"), None);
}
