//! Provisioning API (§2): every route, every guard, the audit trail.

use agentlattice_emulator::{ActorKind, AgentStatus, KeyStatus};
use serde_json::json;

use crate::common::{Fx, s};

fn is_ms_timestamp(v: &serde_json::Value) -> bool {
    // 2026-11-23T10:00:00.123Z
    v.as_str().is_some_and(|t| {
        t.len() == 24
            && t.ends_with('Z')
            && t.as_bytes()[19] == b'.'
            && t.parse::<jiff::Timestamp>().is_ok()
    })
}

#[tokio::test]
async fn register_returns_the_agent_and_a_key_shown_once() {
    let fx = Fx::new().await;
    let body = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({
            "name": "payments-deploy-bot",
            "capabilities": ["deploy.staging", "rollback.staging"],
            "description": "deploys",
            "metadata": {"k8s.namespace": "payments", "k8s.uid": "u-1"}
        }))
        .send()
        .await
        .expect(201);
    let key = s(&body["api_key"]);
    let bodypart = key.strip_prefix("al_agent_").expect("agent scheme");
    assert_eq!(bodypart.len(), 40);
    assert!(bodypart.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        s(&body["key_prefix"]),
        &bodypart[..8],
        "prefix is the body's first 8, not the scheme"
    );
    assert_eq!(body["status"], "active");
    assert_eq!(body["version"], 1);
    assert_eq!(body["created_by"], fx.svc.id.as_str());
    assert_eq!(body["metadata"]["k8s.uid"], "u-1");
    for f in ["created_at", "updated_at"] {
        assert!(is_ms_timestamp(&body[f]), "{f}: {}", body[f]);
    }
    for f in ["halted_at", "revoked_at", "last_used_at"] {
        assert!(body[f].is_null(), "{f}");
    }
    uuid::Uuid::parse_str(&s(&body["id"])).unwrap();
    uuid::Uuid::parse_str(&s(&body["key_id"])).unwrap();

    // The plaintext is never shown again: not by get, list, list keys, the admin state or audit.
    let id = s(&body["id"]);
    let svc = &fx.svc.api_key;
    for path in [
        format!("/api/agents/{id}"),
        "/api/agents".to_owned(),
        format!("/api/agents/{id}/keys"),
    ] {
        let r = fx.http.get(&path).bearer(svc).send().await;
        assert_eq!(r.status, 200);
        assert!(
            !String::from_utf8_lossy(&r.body).contains(&key),
            "{path} leaks the key"
        );
    }
    for path in ["/_admin/state", "/_admin/audit", "/_admin/service-keys"] {
        let r = fx.http.get(path).bearer(&fx.admin()).send().await;
        assert_eq!(r.status, 200);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            !text.contains(&key) && !text.contains(svc.as_str()),
            "{path} leaks a key"
        );
        assert!(!text.contains("hash"), "{path} shows hashes");
    }
}

#[tokio::test]
async fn idempotent_registration() {
    let fx = Fx::new().await;
    let svc = fx.svc.api_key.clone();
    let body = json!({"name": "idem-bot", "capabilities": ["a", "b"], "metadata": {"k": "v"}});
    let first = fx
        .http
        .post("/api/agents/register")
        .bearer(&svc)
        .header("Idempotency-Key", "uid-123")
        .json(&body)
        .send()
        .await
        .expect(201);

    // Same key, same body (capabilities in another order, explicit null description) → 200, no key.
    // Workspace-scoped: another service key finds it too.
    let other_svc = fx.emu.create_service_key("rotated");
    let replay = fx
        .http
        .post("/api/agents/register")
        .bearer(&other_svc.api_key)
        .header("Idempotency-Key", "uid-123")
        .json(&json!({"name": "idem-bot", "capabilities": ["b", "a"], "metadata": {"k": "v"}, "description": null}))
        .send()
        .await
        .expect(200);
    assert_eq!(replay["id"], first["id"]);
    assert!(replay["api_key"].is_null());
    assert_eq!(replay["key_id"], first["key_id"]);
    assert_eq!(replay["key_prefix"], first["key_prefix"]);
    assert_eq!(replay["created_by"], fx.svc.id.as_str());

    // Different body → 422.
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .header("Idempotency-Key", "uid-123")
        .json(&json!({"name": "idem-bot", "capabilities": ["a"]}))
        .send()
        .await
        .expect_error(422, "idempotency_key_body_mismatch");

    // Without the header the name is taken.
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .json(&body)
        .send()
        .await
        .expect_error(409, "agent_name_exists");

    // Revoked since → 409; and the name is free again.
    let id = s(&first["id"]);
    fx.http
        .delete(&format!("/api/agents/{id}"))
        .bearer(&svc)
        .send()
        .await
        .expect(200);
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .header("Idempotency-Key", "uid-123")
        .json(&body)
        .send()
        .await
        .expect_error(409, "idempotency_key_agent_revoked");
    let again = fx.register("idem-bot", &[]).await;
    assert_ne!(again["id"], first["id"]);

    // Exactly one agent was created per successful registration, and one audit entry each.
    let snap = fx.emu.snapshot();
    assert_eq!(snap.agents_named("idem-bot").count(), 2);
    assert_eq!(
        snap.live_agent_named("idem-bot").unwrap().id,
        s(&again["id"])
    );
    let registers: Vec<_> = fx
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.operation == "register" && e.outcome == "success")
        .collect();
    assert_eq!(registers.len(), 2);
}

#[tokio::test]
async fn idempotency_key_must_be_printable_ascii() {
    let fx = Fx::new().await;
    let r = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .header("Idempotency-Key", &"x".repeat(256))
        .json(&json!({"name": "a"}))
        .send()
        .await;
    r.expect_error(422, "validation_failed");
    assert!(r.message().contains("Idempotency-Key") || r.message().contains("idempotency-key"));
}

#[tokio::test]
async fn list_find_and_paginate() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s(&fx.register(&format!("bot-{i}"), &[]).await["id"]));
    }
    fx.http
        .delete(&format!("/api/agents/{}", ids[1]))
        .bearer(svc)
        .send()
        .await
        .expect(200);

    let page = fx
        .http
        .get("/api/agents")
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(page["total"], 4);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["has_more"], false);
    let names: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["name"]))
        .collect();
    assert_eq!(
        names,
        ["bot-0", "bot-2", "bot-3", "bot-4"],
        "ordered by created_at"
    );

    let page = fx
        .http
        .get("/api/agents?include_revoked=true&limit=2&offset=1")
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["has_more"], true);
    let names: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["name"]))
        .collect();
    assert_eq!(names, ["bot-1", "bot-2"]);

    let found = fx
        .http
        .get("/api/agents?name=bot-3")
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["id"], ids[3].as_str());
    let none = fx
        .http
        .get("/api/agents?name=bot-1")
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(
        none["total"], 0,
        "revoked agents are hidden unless include_revoked"
    );
    let revoked = fx
        .http
        .get("/api/agents?name=bot-1&include_revoked=true")
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(revoked["items"][0]["status"], "revoked");

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "offset=-1",
        "include_revoked=yes",
    ] {
        let r = fx
            .http
            .get(&format!("/api/agents?{bad}"))
            .bearer(svc)
            .send()
            .await;
        r.expect_error(422, "validation_failed");
        let field = bad.split('=').next().unwrap();
        assert!(r.message().contains(field), "{bad}: {}", r.message());
    }
}

#[tokio::test]
async fn get_update_halt_resume() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let a = fx.register("upd", &["x"]).await;
    let id = s(&a["id"]);
    let path = format!("/api/agents/{id}");

    let got = fx.http.get(&path).bearer(svc).send().await.expect(200);
    assert_eq!(got["name"], "upd");
    assert!(got.get("api_key").is_none());

    // Unknown, malformed and upper-case ids are all "no such agent".
    for bad in [
        uuid::Uuid::new_v4().to_string(),
        "nope".into(),
        id.to_uppercase(),
    ] {
        fx.http
            .get(&format!("/api/agents/{bad}"))
            .bearer(svc)
            .send()
            .await
            .expect_error(404, "agent_not_found");
    }

    let v = fx
        .http
        .patch(&path)
        .bearer(svc)
        .json(&json!({"capabilities": ["x", "y"], "metadata": {"a": "b"}}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["version"], 2);
    assert_eq!(v["capabilities"], json!(["x", "y"]));
    assert_eq!(v["metadata"], json!({"a": "b"}));
    // Unchanged body (capabilities as a set): no bump.
    let v = fx
        .http
        .patch(&path)
        .bearer(svc)
        .json(&json!({"capabilities": ["y", "x"]}))
        .send()
        .await
        .expect(200);
    assert_eq!(v["version"], 2);
    let v = fx
        .http
        .patch(&path)
        .bearer(svc)
        .json(&json!({"description": "d"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        (v["version"].as_u64(), v["description"].as_str()),
        (Some(3), Some("d"))
    );
    let v = fx
        .http
        .patch(&path)
        .bearer(svc)
        .json(&json!({"description": null}))
        .send()
        .await
        .expect(200);
    assert!(v["description"].is_null());
    fx.http
        .patch(&path)
        .bearer(svc)
        .json(&json!({}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    fx.http
        .patch(&path)
        .bearer(svc)
        .json(&json!({"name": "rename"}))
        .send()
        .await
        .expect_error(422, "validation_failed");

    // Halt: idempotent; a halted agent's whoami says inactive and it cannot act.
    let h = fx
        .http
        .post(&format!("{path}/halt"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(h["status"], "halted");
    assert!(!h["halted_at"].is_null());
    let h2 = fx
        .http
        .post(&format!("{path}/halt"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(h2["version"], h["version"]);
    assert_eq!(h2["halted_at"], h["halted_at"]);
    let agent_key = s(&a["api_key"]);
    let who = fx
        .http
        .get("/api/v1/whoami")
        .bearer(&agent_key)
        .send()
        .await
        .expect(200);
    assert_eq!(who["is_active"], false);
    fx.http
        .post("/api/v1/actions")
        .bearer(&agent_key)
        .json(&json!({"action_type": "x"}))
        .send()
        .await
        .expect_error(403, "agent_halted");
    let r = fx
        .http
        .post(&format!("{path}/resume"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(r["status"], "active");
    assert!(r["halted_at"].is_null());
    fx.http
        .post(&format!("{path}/resume"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    let act = fx
        .http
        .post("/api/v1/actions")
        .bearer(&agent_key)
        .json(&json!({"action_type": "x"}))
        .send()
        .await
        .expect(200);
    assert_eq!(act["status"], "executed");

    // Halt/resume/update/mint on a revoked agent → 409 agent_revoked; revoke stays idempotent.
    fx.http.delete(&path).bearer(svc).send().await.expect(200);
    for r in [
        fx.http
            .post(&format!("{path}/halt"))
            .bearer(svc)
            .send()
            .await,
        fx.http
            .post(&format!("{path}/resume"))
            .bearer(svc)
            .send()
            .await,
        fx.http
            .patch(&path)
            .bearer(svc)
            .json(&json!({"description": "z"}))
            .send()
            .await,
        fx.http
            .post(&format!("{path}/keys"))
            .bearer(svc)
            .send()
            .await,
    ] {
        r.expect_error(409, "agent_revoked");
    }
    let got = fx.http.get(&path).bearer(svc).send().await.expect(200);
    assert_eq!(got["status"], "revoked");
}

#[tokio::test]
async fn revoke_agent_cascades_and_is_idempotent() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let a = fx.register("casc", &["x"]).await;
    let id = s(&a["id"]);
    let k2 = fx.mint(&id).await;
    let path = format!("/api/agents/{id}");
    let r1 = fx.http.delete(&path).bearer(svc).send().await.expect(200);
    assert_eq!(r1["status"], "revoked");
    let r2 = fx.http.delete(&path).bearer(svc).send().await.expect(200);
    assert_eq!(r2["revoked_at"], r1["revoked_at"]);
    assert_eq!(r2["version"], r1["version"]);
    let keys = fx
        .http
        .get(&format!("{path}/keys"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    for k in keys["items"].as_array().unwrap() {
        assert_eq!(k["status"], "revoked");
        assert_eq!(k["revoked_at"], r1["revoked_at"]);
    }
    for key in [s(&a["api_key"]), s(&k2["api_key"])] {
        fx.http
            .get("/api/v1/whoami")
            .bearer(&key)
            .send()
            .await
            .expect_error(401, "key_revoked");
    }
    let revokes = fx
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.operation == "revoke_agent")
        .count();
    assert_eq!(revokes, 1, "a repeated revoke is not audited twice");
    fx.http
        .delete(&format!("/api/agents/{}", uuid::Uuid::new_v4()))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "agent_not_found");
    let snap = fx.emu.snapshot();
    assert_eq!(snap.live_keys().count(), 0, "no orphan live key");
}

#[tokio::test]
async fn key_lifecycle() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let a = fx.register("rot", &["x"]).await;
    let id = s(&a["id"]);
    let k1 = s(&a["key_id"]);
    let keys_path = format!("/api/agents/{id}/keys");

    // The first key is named <agent>-1; minted ones <agent>-<n> unless named.
    let list = fx.http.get(&keys_path).bearer(svc).send().await.expect(200);
    assert_eq!(list["items"][0]["name"], "rot-1");
    let m = fx.mint(&id).await;
    assert_eq!(m["name"], "rot-2");
    assert!(s(&m["api_key"]).starts_with("al_agent_"));
    assert_eq!(m["status"], "active");
    let named = fx
        .http
        .post(&keys_path)
        .bearer(svc)
        .json(&json!({"name": "rotation-2026-11-23"}))
        .send()
        .await
        .expect(201);
    assert_eq!(named["name"], "rotation-2026-11-23");
    let k2 = s(&m["key_id"]);
    let k3 = s(&named["key_id"]);

    // Deprecate: idempotent, deprecated_at kept; the key still works and says so.
    let dep = fx
        .http
        .patch(&format!("{keys_path}/{k1}/deprecate"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(dep["status"], "deprecated");
    let dep2 = fx
        .http
        .patch(&format!("{keys_path}/{k1}/deprecate"))
        .bearer(svc)
        .json(&json!({}))
        .send()
        .await
        .expect(200);
    assert_eq!(dep2["deprecated_at"], dep["deprecated_at"]);
    let who = fx
        .http
        .get("/api/v1/whoami")
        .bearer(&s(&a["api_key"]))
        .send()
        .await;
    assert_eq!(who.status, 200);
    assert_eq!(who.header("x-al-key-deprecated"), Some("true"));
    assert_eq!(who.json()["key_id"], k1.as_str());
    let who2 = fx
        .http
        .get("/api/v1/whoami")
        .bearer(&s(&m["api_key"]))
        .send()
        .await;
    assert_eq!(who2.header("x-al-key-deprecated"), None);
    let und = fx
        .http
        .patch(&format!("{keys_path}/{k1}/undeprecate"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(und["status"], "active");
    assert!(und["deprecated_at"].is_null());
    fx.http
        .patch(&format!("{keys_path}/{k1}/undeprecate"))
        .bearer(svc)
        .send()
        .await
        .expect(200);

    // Revoke k1, k2 (fine), then k3 is the last → 409 unless force; then idempotent.
    for k in [&k1, &k2] {
        let r = fx
            .http
            .delete(&format!("{keys_path}/{k}"))
            .bearer(svc)
            .send()
            .await
            .expect(200);
        assert_eq!(r["status"], "revoked");
    }
    fx.http
        .delete(&format!("{keys_path}/{k3}"))
        .bearer(svc)
        .send()
        .await
        .expect_error(409, "last_active_key");
    fx.http
        .delete(&format!("{keys_path}/{k3}?force=false"))
        .bearer(svc)
        .send()
        .await
        .expect_error(409, "last_active_key");
    let forced = fx
        .http
        .delete(&format!("{keys_path}/{k3}?force=true"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    let again = fx
        .http
        .delete(&format!("{keys_path}/{k3}"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    assert_eq!(again["revoked_at"], forced["revoked_at"]);
    fx.http
        .get("/api/v1/whoami")
        .bearer(&s(&named["api_key"]))
        .send()
        .await
        .expect_error(401, "key_revoked");

    // Deprecate/undeprecate a revoked key → 409 key_revoked; unknown key → 404.
    for verb in ["deprecate", "undeprecate"] {
        fx.http
            .patch(&format!("{keys_path}/{k1}/{verb}"))
            .bearer(svc)
            .send()
            .await
            .expect_error(409, "key_revoked");
    }
    let unknown = uuid::Uuid::new_v4();
    fx.http
        .patch(&format!("{keys_path}/{unknown}/deprecate"))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "key_not_found");
    fx.http
        .delete(&format!("{keys_path}/not-a-uuid"))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "key_not_found");
    fx.http
        .delete(&format!("/api/agents/{unknown}/keys/{k1}"))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "agent_not_found");
    fx.http
        .get(&format!("/api/agents/{unknown}/keys"))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "agent_not_found");
    fx.http
        .delete(&format!("{keys_path}/{k1}?force=maybe"))
        .bearer(svc)
        .send()
        .await
        .expect_error(422, "validation_failed");

    // A key of another agent is not this agent's key.
    let b = fx.register("other", &[]).await;
    fx.http
        .patch(&format!("{keys_path}/{}/deprecate", s(&b["key_id"])))
        .bearer(svc)
        .send()
        .await
        .expect_error(404, "key_not_found");

    // The agent has no live key now, and keys are listed in mint order with revoked ones.
    let snap = fx.emu.snapshot();
    let agent = snap.agent(&id).unwrap();
    assert_eq!(agent.status, AgentStatus::Active);
    assert_eq!(agent.live_keys().count(), 0);
    assert_eq!(
        agent
            .keys
            .iter()
            .map(|k| k.key_id.clone())
            .collect::<Vec<_>>(),
        vec![k1.clone(), k2.clone(), k3.clone()]
    );
    assert!(agent.keys.iter().all(|k| k.status == KeyStatus::Revoked));

    // After a forced revoke the agent can still get a new key.
    fx.mint(&id).await;
}

#[tokio::test]
async fn key_limit_is_ten_non_revoked_keys() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let a = fx.register("many", &[]).await;
    let id = s(&a["id"]);
    let mut last = String::new();
    for _ in 0..9 {
        last = s(&fx.mint(&id).await["key_id"]);
    }
    fx.http
        .post(&format!("/api/agents/{id}/keys"))
        .bearer(svc)
        .send()
        .await
        .expect_error(409, "agent_key_limit_reached");
    fx.http
        .delete(&format!("/api/agents/{id}/keys/{last}"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.mint(&id).await;
}

#[tokio::test]
async fn actions_and_whoami() {
    let fx = Fx::new().await;
    let a = fx.register("actor", &["deploy.staging"]).await;
    let key = s(&a["api_key"]);
    let who = fx
        .http
        .get("/api/v1/whoami")
        .bearer(&key)
        .send()
        .await
        .expect(200);
    assert_eq!(who["config_id"], a["id"]);
    assert_eq!(who["name"], "actor");
    assert_eq!(who["is_active"], true);
    assert_eq!(who["cb_state"], "closed");
    assert_eq!(who["calibration"], json!({}));
    assert_eq!(who["policies"], json!([]));
    assert_eq!(who["delegations"], json!({"as_parent": [], "as_child": []}));
    assert_eq!(who["capabilities"], json!(["deploy.staging"]));
    assert_eq!(who["key_id"], a["key_id"]);
    assert_eq!(who["org_id"], fx.emu.snapshot().org_id.as_str());

    let body = |t: &str| json!({"action_type": t, "timestamp": "2026-11-23T10:00:00.123456+00:00", "data_accessed": [], "metadata": {}});
    let ok = fx
        .http
        .post("/api/v1/actions")
        .bearer(&key)
        .header("X-AL-Event-ID", "ev-1")
        .json(&body("deploy.staging"))
        .send()
        .await
        .expect(200);
    assert_eq!(ok["status"], "executed");
    assert!(ok["denial_reason"].is_null());
    assert_eq!(ok["conditions_evaluated"], json!([]));
    let denied = fx
        .http
        .post("/api/v1/actions")
        .bearer(&key)
        .json(&body("deploy.prod"))
        .send()
        .await
        .expect(200);
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["denial_reason"], "capability_not_granted");
    assert!(
        !s(&denied["message"]).contains("deploy.prod"),
        "messages never repeat the body"
    );
    assert_ne!(denied["audit_event_id"], ok["audit_event_id"]);

    // A replayed event id returns the first result, whatever the new body says.
    let replay = fx
        .http
        .post("/api/v1/actions")
        .bearer(&key)
        .header("X-AL-Event-ID", "ev-1")
        .json(&body("deploy.prod"))
        .send()
        .await
        .expect(200);
    assert_eq!(replay, ok);

    // Bad action bodies.
    for bad in [
        json!({}),
        json!({"action_type": 1}),
        json!({"action_type": ""}),
        json!({"action_type": "x", "timestamp": "yesterday"}),
        json!({"action_type": "x", "data_accessed": {}}),
        json!({"action_type": "x", "metadata": []}),
        json!({"action_type": "x", "extra": 1}),
    ] {
        fx.http
            .post("/api/v1/actions")
            .bearer(&key)
            .json(&bad)
            .send()
            .await
            .expect_error(422, "validation_failed");
    }
}

#[tokio::test]
async fn audit_trail_records_who_did_what() {
    let fx = Fx::new().await;
    let svc = &fx.svc.api_key;
    let a = fx.register("audited", &[]).await;
    let id = s(&a["id"]);
    let m = fx.mint(&id).await;
    let k2 = s(&m["key_id"]);
    let p = format!("/api/agents/{id}");
    fx.http
        .patch(&p)
        .bearer(svc)
        .json(&json!({"description": "x"}))
        .send()
        .await
        .expect(200);
    fx.http
        .post(&format!("{p}/halt"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.http
        .post(&format!("{p}/resume"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.http
        .patch(&format!("{p}/keys/{k2}/deprecate"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.http
        .patch(&format!("{p}/keys/{k2}/undeprecate"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.http
        .delete(&format!("{p}/keys/{k2}"))
        .bearer(svc)
        .send()
        .await
        .expect(200);
    fx.http
        .post("/api/agents/register")
        .bearer(svc)
        .json(&json!({"name": "audited"}))
        .send()
        .await
        .expect(409);
    fx.http.delete(&p).bearer(svc).send().await.expect(200);

    let audit = fx.emu.audit();
    let ops: Vec<(String, String)> = audit
        .iter()
        .map(|e| (e.operation.clone(), e.outcome.clone()))
        .collect();
    let expected = [
        ("create_service_key", "success"),
        ("register", "success"),
        ("mint_key", "success"),
        ("update_agent", "success"),
        ("halt_agent", "success"),
        ("resume_agent", "success"),
        ("deprecate_key", "success"),
        ("undeprecate_key", "success"),
        ("revoke_key", "success"),
        ("register", "agent_name_exists"),
        ("revoke_agent", "success"),
    ];
    assert_eq!(
        ops,
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(audit[0].actor.kind, ActorKind::Admin);
    for e in &audit[1..] {
        assert_eq!(e.actor.kind, ActorKind::ServiceKey);
        assert_eq!(e.actor.id.as_deref(), Some(fx.svc.id.as_str()));
    }
    assert_eq!(audit[2].key_id.as_deref(), Some(k2.as_str()));
    assert!(
        audit[1..]
            .iter()
            .filter(|e| e.outcome == "success")
            .all(|e| e.agent_id.as_deref() == Some(id.as_str()))
    );
    assert!(audit.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    // Through the admin API, with since/limit.
    let r = fx
        .http
        .get("/_admin/audit?since=2&limit=3")
        .bearer(&fx.admin())
        .send()
        .await
        .expect(200);
    let seqs: Vec<u64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(r["items"][0]["actor"]["type"], "service_key");
    assert_eq!(r["items"][0]["operation"], "mint_key");
}
