//! Keys: mint, list, use (`/sdk/agents/me` records it), deprecate (the advisory header),
//! undeprecate, revoke with the last-active-key guard and `force`, the per-agent limit.

use serde_json::json;

use crate::common::{Env, s};

#[tokio::test]
async fn mint_use_and_last_used() {
    let env = Env::new().await;
    let (a, first) = env.create("minty").await;
    let id = s(&a["id"]);
    let m = env.mint(&id).await;
    let plain = s(&m["api_key"]);
    assert!(
        plain.starts_with(&s(&m["key_prefix"])) && m["key_prefix"].as_str().unwrap().len() == 16
    );
    assert_eq!(m["name"], "minty-2");
    assert!(m["last_used_at"].is_null() && m["revoked_at"].is_null());

    let me = env
        .http
        .get("/sdk/agents/me")
        .key(&plain)
        .send()
        .await
        .expect(200);
    assert_eq!(me["id"], a["id"]);
    assert!(me["last_used_at"].is_string());
    let keys = env
        .http
        .get(&format!("/sdk/agents/{id}/keys"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items[0]["last_used_at"].is_null(),
        "the first key was not used"
    );
    assert!(items[1]["last_used_at"].is_string(), "the minted key was");
    assert!(!keys.to_string().contains(&plain) && !keys.to_string().contains(&first));
    let created: Vec<_> = items.iter().map(|k| s(&k["created_at"])).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first");
}

#[tokio::test]
async fn deprecate_is_an_advisory_and_reversible() {
    let env = Env::new().await;
    let (a, key) = env.create("retiring").await;
    let (id, key_id) = (s(&a["id"]), s(&a["key_id"]));
    let dep = format!("/sdk/agents/{id}/keys/{key_id}/deprecate");
    let v = env
        .http
        .patch(&dep)
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect(200);
    let at = s(&v["deprecated_at"]);
    let r = env.http.get("/sdk/agents/me").key(&key).send().await;
    r.expect(200);
    assert_eq!(r.header("x-alter-key-deprecated"), Some("true"));
    // Again: deprecated_at is not refreshed.
    let v = env
        .http
        .patch(&dep)
        .key(env.k())
        .raw_body("")
        .send()
        .await
        .expect(200);
    assert_eq!(s(&v["deprecated_at"]), at);
    let v = env
        .http
        .patch(&format!("/sdk/agents/{id}/keys/{key_id}/undeprecate"))
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect(200);
    assert!(v["deprecated_at"].is_null());
    let r = env.http.get("/sdk/agents/me").key(&key).send().await;
    assert_eq!(r.header("x-alter-key-deprecated"), None);
    let actions: Vec<_> = env.emu.audit().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "deprecate_key").count(), 1);
}

#[tokio::test]
async fn revoke_guard_force_and_terminal_state() {
    let env = Env::new().await;
    let (a, first) = env.create("guarded").await;
    let (id, first_id) = (s(&a["id"]), s(&a["key_id"]));
    let revoke = |key_id: &str, force: bool| {
        let q = if force { "?force=true" } else { "" };
        env.http
            .delete(&format!("/sdk/agents/{id}/keys/{key_id}{q}"))
            .key(env.k())
    };
    let e = revoke(&first_id, false)
        .send()
        .await
        .expect_error(409, "last_active_key");
    assert!(e["hint"].as_str().unwrap().contains("force"));
    let m = env.mint(&id).await;
    let second_id = s(&m["key_id"]);
    let v = revoke(&first_id, false).send().await.expect(200);
    assert!(v["revoked_at"].is_string());
    env.http
        .get("/sdk/agents/me")
        .key(&first)
        .send()
        .await
        .expect_error(401, "key_revoked");
    // Idempotent.
    let again = revoke(&first_id, false).send().await.expect(200);
    assert_eq!(again["revoked_at"], v["revoked_at"]);
    // A deprecated key counts as non-revoked: still the last one.
    env.http
        .patch(&format!("/sdk/agents/{id}/keys/{second_id}/deprecate"))
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect(200);
    revoke(&second_id, false)
        .send()
        .await
        .expect_error(409, "last_active_key");
    revoke(&second_id, true).send().await.expect(200);
    let snap = env.emu.snapshot();
    assert_eq!(snap.agent(&id).unwrap().live_keys().count(), 0);
    assert_eq!(
        snap.agent(&id).unwrap().agent.status,
        alter_emulator::AgentStatus::Active
    );
    // Revoked is terminal.
    for action in ["deprecate", "undeprecate"] {
        env.http
            .patch(&format!("/sdk/agents/{id}/keys/{first_id}/{action}"))
            .key(env.k())
            .json(json!({}))
            .send()
            .await
            .expect_error(409, "key_revoked");
    }
    // Unknown keys, and keys of another agent.
    let (other, _) = env.create("other").await;
    let other_key = s(&other["key_id"]);
    revoke(&other_key, true)
        .send()
        .await
        .expect_error(404, "key_not_found");
    revoke("00000000-0000-4000-8000-000000000000", true)
        .send()
        .await
        .expect_error(404, "key_not_found");
    let failures: Vec<_> = env
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.action == "revoke_key" && e.outcome != "success")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(
        failures,
        [
            "last_active_key",
            "last_active_key",
            "key_not_found",
            "key_not_found"
        ]
    );
}

#[tokio::test]
async fn the_key_limit_counts_non_revoked_keys() {
    let env = Env::new().await;
    env.emu.set_key_limit(2);
    let (a, _) = env.create("capped").await;
    let id = s(&a["id"]);
    let second = env.mint(&id).await;
    let e = env
        .http
        .post(&format!("/sdk/agents/{id}/keys"))
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect_error(409, "agent_key_limit_reached");
    assert_eq!(e["limit"], 2);
    env.http
        .delete(&format!("/sdk/agents/{id}/keys/{}", s(&second["key_id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    env.mint(&id).await;
    env.http
        .post(&format!("/sdk/agents/{id}/keys"))
        .key(env.k())
        .json(json!({"name": "mine"}))
        .send()
        .await
        .expect_error(422, "validation_error");
}
