//! The agent lifecycle: create (idempotent with a key), list with its filters and paging, get, get
//! by name, update (scopes staged and versioned), suspend, resume, delete (cascade revoke).

use serde_json::{Value, json};

use crate::common::{Env, s};

#[tokio::test]
async fn create_returns_the_sdk_shape_once() {
    let env = Env::new().await;
    let body = json!({
        "name": "nightly-sync", "type": "service", "display_name": "Nightly Sync",
        "scopes": {"slack": ["channels:read"]}, "metadata": {"team": "growth"},
        "policy": {"requires_approval": false}
    });
    let r = env
        .http
        .post("/sdk/agents")
        .key(env.k())
        .json(body)
        .send()
        .await;
    let v = r.expect(201);
    for field in [
        "id",
        "name",
        "display_name",
        "type",
        "status",
        "scopes",
        "scopes_pending",
        "scopes_applies_at",
        "policy",
        "metadata",
        "rate_limit_per_minute",
        "version",
        "created_at",
        "last_used_at",
        "parent_agent_id",
        "api_key",
        "key_id",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(
        (
            v["type"].as_str(),
            v["status"].as_str(),
            v["version"].as_u64()
        ),
        (Some("service"), Some("active"), Some(1))
    );
    let key = s(&v["api_key"]);
    assert!(key.starts_with("alter_key_") && key.len() == 50, "{key}");
    assert!(s(&v["created_at"]).ends_with('Z'));
    assert!(uuid::Uuid::try_parse(&s(&v["id"])).is_ok());
    let keys = env
        .http
        .get(&format!("/sdk/agents/{}/keys", s(&v["id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    let first = &keys["items"][0];
    assert_eq!(first["key_id"], v["key_id"]);
    assert_eq!(first["name"], "nightly-sync-1");
    assert!(key.starts_with(&s(&first["key_prefix"])));
    assert!(!String::from_utf8_lossy(&keys.to_string().into_bytes()).contains(&key));
    let snap = env.emu.snapshot();
    assert_eq!(
        snap.live_agent_named(&env.app, "nightly-sync")
            .unwrap()
            .agent
            .metadata["team"],
        "growth"
    );
}

#[tokio::test]
async fn names_are_unique_among_live_agents() {
    let env = Env::new().await;
    let (a, _) = env.create("dup").await;
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(json!({"name": "dup"}))
        .send()
        .await
        .expect_error(409, "agent_name_exists");
    env.http
        .delete(&format!("/sdk/agents/{}", s(&a["id"])))
        .key(env.k())
        .send()
        .await
        .expect(200);
    env.create("dup").await;
}

#[tokio::test]
async fn idempotent_create() {
    let env = Env::new().await;
    let body = json!({"name": "idem", "type": "agent", "scopes": {"gh": ["repo"]}, "metadata": {"k8s.uid": "u1"}});
    let first = env
        .http
        .post("/sdk/agents")
        .key(env.k())
        .header("idempotency-key", "op/u1")
        .json(body.clone())
        .send()
        .await
        .expect(201);
    let replay = env
        .http
        .post("/sdk/agents")
        .key(env.k())
        .header("idempotency-key", "op/u1")
        .json(body.clone())
        .send()
        .await
        .expect(200);
    assert_eq!(
        (replay["id"].clone(), replay["key_id"].clone()),
        (first["id"].clone(), first["key_id"].clone())
    );
    assert!(replay["api_key"].is_null());
    let mut other = body.clone();
    other["metadata"]["k8s.uid"] = json!("u2");
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .header("idempotency-key", "op/u1")
        .json(other)
        .send()
        .await
        .expect_error(409, "idempotency_key_body_mismatch");
    let id = s(&first["id"]);
    let send = || {
        env.http
            .post("/sdk/agents")
            .key(env.k())
            .header("idempotency-key", "op/u1")
            .json(body.clone())
    };
    env.http
        .patch(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .json(json!({"status": "inactive"}))
        .send()
        .await
        .expect(200);
    send()
        .send()
        .await
        .expect_error(409, "idempotency_key_agent_inactive");
    env.http
        .delete(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    send()
        .send()
        .await
        .expect_error(409, "idempotency_key_agent_revoked");
    assert_eq!(env.emu.snapshot().agents.len(), 1, "no second agent");
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .header("idempotency-key", "has space")
        .json(json!({"name": "x"}))
        .send()
        .await
        .expect_error(422, "validation_error");
}

async fn list(env: &Env, query: &str) -> Value {
    env.http
        .get(&format!("/sdk/agents{query}"))
        .key(env.k())
        .send()
        .await
        .expect(200)
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["name"]))
        .collect()
}

#[tokio::test]
async fn list_filters_and_pages() {
    let env = Env::new().await;
    for (name, t, display, scopes) in [
        (
            "alpha",
            "agent",
            "Alpha Bot",
            json!({"slack": ["chat:write"]}),
        ),
        ("beta", "service", "Nightly Sync", json!({})),
        (
            "gamma",
            "service",
            "Gamma",
            json!({"slack": ["channels:read"], "gh": ["repo"]}),
        ),
        ("delta", "agent", "Delta", json!({})),
    ] {
        env.http
            .post("/sdk/agents")
            .key(env.k())
            .json(json!({"name": name, "type": t, "display_name": display, "scopes": scopes}))
            .send()
            .await
            .expect(201);
    }
    let all = list(&env, "").await;
    let id_of = |n: &str| {
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .map(|a| s(&a["id"]))
            .unwrap()
    };
    let (gamma, delta) = (id_of("gamma"), id_of("delta"));
    env.http
        .patch(&format!("/sdk/agents/{gamma}"))
        .key(env.k())
        .json(json!({"status": "inactive"}))
        .send()
        .await
        .expect(200);
    env.http
        .delete(&format!("/sdk/agents/{delta}"))
        .key(env.k())
        .send()
        .await
        .expect(200);

    assert_eq!(names(&list(&env, "").await), ["alpha", "beta", "gamma"]);
    assert_eq!(
        names(&list(&env, "?include_revoked=true").await),
        ["alpha", "beta", "gamma", "delta"]
    );
    assert_eq!(
        names(&list(&env, "?status=active").await),
        ["alpha", "beta"]
    );
    assert_eq!(
        names(&list(&env, "?status=inactive,revoked").await),
        ["gamma", "delta"]
    );
    assert_eq!(names(&list(&env, "?type=service").await), ["beta", "gamma"]);
    assert_eq!(
        names(&list(&env, "?provider=slack").await),
        ["alpha", "gamma"]
    );
    assert_eq!(names(&list(&env, "?search=sync").await), ["beta"]);
    assert_eq!(names(&list(&env, "?search=BOT").await), ["alpha"]);
    assert_eq!(names(&list(&env, "?name=beta").await), ["beta"]);
    assert_eq!(
        names(&list(&env, "?name=delta").await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&list(&env, "?name=delta&include_revoked=true").await),
        ["delta"]
    );

    let p1 = list(&env, "?limit=2&offset=0&include_revoked=true").await;
    assert_eq!(
        (names(&p1), p1["total"].as_u64(), p1["has_more"].as_bool()),
        (vec!["alpha".into(), "beta".into()], Some(4), Some(true))
    );
    let p2 = list(&env, "?include_revoked=true&offset=2&limit=2").await;
    assert_eq!(
        (names(&p2), p2["has_more"].as_bool(), p2["offset"].as_u64()),
        (vec!["gamma".into(), "delta".into()], Some(false), Some(2))
    );
    assert_eq!(list(&env, "").await["limit"], 50, "the CLI's default page");

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?offset=-1",
        "?status=paused",
        "?type=robot",
        "?include_revoked=maybe",
    ] {
        env.http
            .get(&format!("/sdk/agents{bad}"))
            .key(env.k())
            .send()
            .await
            .expect_error(422, "validation_error");
    }
}

#[tokio::test]
async fn get_hides_revoked_agents_unless_asked() {
    let env = Env::new().await;
    let (a, _) = env.create("ghost").await;
    let id = s(&a["id"]);
    assert_eq!(
        env.http
            .get(&format!("/sdk/agents/{id}"))
            .key(env.k())
            .send()
            .await
            .expect(200)["name"],
        "ghost"
    );
    env.http
        .delete(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    env.http
        .get(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .send()
        .await
        .expect_error(404, "agent_not_found");
    let v = env
        .http
        .get(&format!("/sdk/agents/{id}?include_revoked=true"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert_eq!(v["status"], "revoked");
    env.http
        .get("/sdk/agents/00000000-0000-4000-8000-000000000000")
        .key(env.k())
        .send()
        .await
        .expect_error(404, "agent_not_found");
    env.http
        .get("/sdk/agents/not-a-uuid")
        .key(env.k())
        .send()
        .await
        .expect_error(404, "agent_not_found");
}

#[tokio::test]
async fn update_versions_and_stages_narrowing() {
    let env = Env::new().await;
    let r = env
        .http
        .post("/sdk/agents")
        .key(env.k())
        .json(json!({"name": "upd", "scopes": {"slack": ["read", "write"]}}))
        .send()
        .await
        .expect(201);
    let path = format!("/sdk/agents/{}", s(&r["id"]));
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({"display_name": "Upd", "metadata": {"a": 1}}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (v["version"].as_u64(), v["display_name"].as_str()),
        (Some(2), Some("Upd"))
    );
    // The same values again: no change, no new version.
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({"display_name": "Upd"}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["version"], 2);
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["version"], 2);

    env.http
        .patch(&path)
        .key(env.k())
        .json(json!({"scopes": {}}))
        .send()
        .await
        .expect_error(422, "validation_error");
    env.http
        .patch(&format!("{path}?grace_seconds=5"))
        .key(env.k())
        .json(json!({"display_name": "x"}))
        .send()
        .await
        .expect_error(422, "validation_error");
    env.http
        .patch(&format!("{path}?expected_version=1"))
        .key(env.k())
        .json(json!({"scopes": {}}))
        .send()
        .await
        .expect_error(409, "agent_concurrent_update");
    // Narrowing: staged for the default 24 h.
    let v = env
        .http
        .patch(&format!("{path}?expected_version=2"))
        .key(env.k())
        .json(json!({"scopes": {"slack": ["read"]}}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["scopes"]["slack"], json!(["read", "write"]));
    assert_eq!(v["scopes_pending"]["slack"], json!(["read"]));
    let at: jiff::Timestamp = s(&v["scopes_applies_at"]).parse().unwrap();
    let ahead = at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((86_390..=86_400).contains(&ahead), "{ahead}");
    // Broadening, and a grace of 0, apply at once.
    let v = env
        .http
        .patch(&format!("{path}?expected_version=3&grace_seconds=0"))
        .key(env.k())
        .json(json!({"scopes": {"gh": ["repo"]}}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["scopes"], json!({"gh": ["repo"]}));
    assert!(v["scopes_pending"].is_null());
    env.http
        .patch(&format!("{path}?grace_seconds=604801&expected_version=4"))
        .key(env.k())
        .json(json!({"scopes": {}}))
        .send()
        .await
        .expect_error(422, "validation_error");
    env.http
        .patch(&path)
        .key(env.k())
        .json(json!({"status": "revoked"}))
        .send()
        .await
        .expect_error(422, "validation_error");
}

#[tokio::test]
async fn suspend_resume_and_delete_cascade() {
    let env = Env::new().await;
    let (a, first_key) = env.create("life").await;
    let id = s(&a["id"]);
    let path = format!("/sdk/agents/{id}");
    let second = env.mint(&id).await;
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({"status": "inactive"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_u64()),
        (Some("inactive"), Some(2))
    );
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({"status": "inactive"}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["version"], 2, "suspending twice changes nothing");
    let v = env
        .http
        .patch(&path)
        .key(env.k())
        .json(json!({"status": "active"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_u64()),
        (Some("active"), Some(3))
    );

    let v = env.http.delete(&path).key(env.k()).send().await.expect(200);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_u64()),
        (Some("revoked"), Some(4))
    );
    let again = env.http.delete(&path).key(env.k()).send().await.expect(200);
    assert_eq!(again["version"], 4, "delete is idempotent");
    let snap = env.emu.snapshot();
    let agent = snap.agent(&id).unwrap();
    assert_eq!(agent.live_keys().count(), 0, "cascade revoke");
    for k in [&first_key, &s(&second["api_key"])] {
        env.http
            .get("/sdk/agents/me")
            .key(k)
            .send()
            .await
            .expect_error(401, "key_revoked");
    }
    env.http
        .patch(&path)
        .key(env.k())
        .json(json!({"display_name": "x"}))
        .send()
        .await
        .expect_error(404, "agent_not_found");
    env.http
        .post(&format!("{path}/keys"))
        .key(env.k())
        .json(json!({}))
        .send()
        .await
        .expect_error(404, "agent_not_found");
    let keys = env
        .http
        .get(&format!("{path}/keys"))
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_string())
    );
    let deletions = env
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.action == "delete_agent")
        .count();
    assert_eq!(deletions, 1);
    let actions: Vec<_> = env
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.outcome == "success")
        .map(|e| e.action)
        .collect();
    assert!(
        actions.ends_with(&[
            "create_agent".into(),
            "mint_key".into(),
            "suspend_agent".into(),
            "resume_agent".into(),
            "delete_agent".into()
        ]),
        "{actions:?}"
    );
}
