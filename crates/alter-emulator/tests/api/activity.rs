//! The per-agent audit feed and the agent registry (the `alter agents audit` / `registry-*`
//! views), and the identity of keys.

use serde_json::json;

use crate::common::{Env, s};

#[tokio::test]
async fn the_audit_feed_is_per_agent_and_newest_first() {
    let env = Env::new().await;
    let (a, _) = env.create("audited").await;
    let (other, _) = env.create("unrelated").await;
    let id = s(&a["id"]);
    env.http
        .patch(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .json(json!({"display_name": "A"}))
        .send()
        .await
        .expect(200);
    let m = env.mint(&id).await;
    env.http
        .delete(&format!("/sdk/agents/{id}/keys/{}", s(&m["key_id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    env.http
        .delete(&format!("/sdk/agents/{id}/keys/{}", s(&a["key_id"])))
        .key(env.k())
        .send()
        .await
        .expect(409);
    let feed = env
        .http
        .get(&format!("/sdk/agents/{id}/audit"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    let rows: Vec<(String, String)> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (s(&e["action"]), s(&e["outcome"])))
        .collect();
    let expect = [
        ("revoke_key", "last_active_key"),
        ("revoke_key", "success"),
        ("mint_key", "success"),
        ("update_agent", "success"),
        ("create_agent", "success"),
    ];
    assert_eq!(rows, expect.map(|(a, o)| (a.to_owned(), o.to_owned())));
    assert_eq!(feed["total"], 5);
    let first = &feed["items"][4];
    assert_eq!(first["actor"], json!({"type": "app_key", "id": env.key.id}));
    assert_eq!(first["agent_id"], a["id"]);
    let page = env
        .http
        .get(&format!("/sdk/agents/{id}/audit?limit=2&offset=2"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert_eq!(page["items"][0]["action"], "mint_key");
    assert_eq!(page["has_more"], true);
    let other_feed = env
        .http
        .get(&format!("/sdk/agents/{}/audit", s(&other["id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert_eq!(other_feed["total"], 1);
    env.http
        .get(&format!("/sdk/agents/{id}/audit?limit=501"))
        .key(env.k())
        .send()
        .await
        .expect_error(422, "validation_error");
}

#[tokio::test]
async fn the_registry_shows_agents_seen_calling() {
    let env = Env::new().await;
    let (quiet, _) = env.create("quiet").await;
    let (busy, busy_key) = env.create("busy").await;
    let (late, late_key) = env.create("late").await;
    let empty = env
        .http
        .get("/sdk/agent-registry")
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert_eq!(empty["total"], 0, "nobody has called yet");
    for _ in 0..3 {
        env.http
            .get("/sdk/agents/me")
            .key(&busy_key)
            .send()
            .await
            .expect(200);
    }
    let ident = env
        .http
        .post("/sdk/identity/resolve")
        .key(&late_key)
        .json(json!({"include_profile": false}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (ident["app_id"].as_str(), ident["agent_id"].as_str()),
        (Some(env.app.as_str()), late["id"].as_str())
    );
    let reg = env
        .http
        .get("/sdk/agent-registry")
        .key(env.k())
        .send()
        .await
        .expect(200);
    let rows: Vec<(String, u64)> = reg["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]), e["activity_30d"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [("late".to_owned(), 1), ("busy".to_owned(), 3)],
        "most recent first"
    );
    let entry = &reg["items"][0];
    assert_eq!(entry["actor_id"], ident["actor_id"]);
    assert!(entry["last_activity_at"].is_string());
    let shown = env
        .http
        .get(&format!("/sdk/agent-registry/{}", s(&entry["actor_id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert_eq!(shown["agent_id"], late["id"]);
    env.http
        .get(&format!("/sdk/agent-registry/{}", s(&quiet["id"])))
        .key(env.k())
        .send()
        .await
        .expect_error(404, "actor_not_found");
    // The registry is the observability view; `last_used_at` of the management view agrees.
    let got = env
        .http
        .get(&format!("/sdk/agents/{}", s(&busy["id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert!(got["last_used_at"].is_string());
    let snap = env.emu.snapshot();
    assert_eq!(
        snap.agent(busy["id"].as_str().unwrap())
            .unwrap()
            .activity_30d,
        3
    );
    assert!(
        snap.agent(quiet["id"].as_str().unwrap())
            .unwrap()
            .last_activity_at
            .is_none()
    );
}
