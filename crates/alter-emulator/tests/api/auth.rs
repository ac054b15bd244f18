//! The API key, its signature, the replay guard, principal kinds, permission scopes, app scoping.

use alter_emulator::scopes::{AGENTS_ADMIN, AGENTS_READ, AGENTS_WRITE, AUDIT_READ};
use http::HeaderValue;
use serde_json::json;

use crate::common::{Env, fresh_nonce, hex, hmac, s, signature, unix_now};

#[tokio::test]
async fn a_missing_or_unknown_key_is_refused() {
    let env = Env::new().await;
    let r = env.http.get("/sdk/agents").send().await;
    r.expect_error(401, "missing_api_key");
    assert!(
        r.json()["detail"].is_object(),
        "auth errors come in the detail envelope"
    );
    let r = env
        .http
        .get("/sdk/agents")
        .key("alter_rk_abcdefghijklmnopqrstuv_iwpykn")
        .send()
        .await;
    let e = r.expect_error(401, "invalid_key");
    assert!(e["hint"].is_string());
}

#[tokio::test]
async fn unsigned_tampered_and_misdated_requests_are_refused() {
    let env = Env::new().await;
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .unsigned()
        .send()
        .await
        .expect_error(401, "missing_signature");
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect(200);

    // A signature for another query.
    let key = env.k().to_owned();
    let sig = signature(
        &key,
        "GET",
        "/sdk/agents?limit=1",
        b"",
        &unix_now().to_string(),
        &fresh_nonce(),
        "",
    );
    env.http
        .get("/sdk/agents?limit=2")
        .key(env.k())
        .tamper(move |h| {
            for (k, v) in sig {
                h.insert(k, v.parse().unwrap());
            }
        })
        .send()
        .await
        .expect_error(401, "invalid_signature");

    // A flipped signature digit.
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .tamper(|h| {
            let mut sig = h["x-alter-signature"].to_str().unwrap().to_owned();
            let last = if sig.ends_with('0') { "1" } else { "0" };
            sig.replace_range(63..64, last);
            h.insert("x-alter-signature", sig.parse().unwrap());
        })
        .send()
        .await
        .expect_error(401, "invalid_signature");

    // A body other than the one signed.
    let signed_for = json!({"name": "a"});
    let sig = signature(
        &key,
        "POST",
        "/sdk/agents",
        &serde_json::to_vec(&signed_for).unwrap(),
        &unix_now().to_string(),
        &fresh_nonce(),
        "",
    );
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(json!({"name": "b"}))
        .tamper(move |h| {
            for (k, v) in sig {
                h.insert(k, v.parse().unwrap());
            }
        })
        .send()
        .await
        .expect_error(401, "content_hash_mismatch");

    // Signed with another key.
    let other = env
        .emu
        .create_app_key(&env.app, "other", None)
        .unwrap()
        .api_key;
    let sig = signature(
        &other,
        "GET",
        "/sdk/agents",
        b"",
        &unix_now().to_string(),
        &fresh_nonce(),
        "",
    );
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .tamper(move |h| {
            for (k, v) in sig {
                h.insert(k, v.parse().unwrap());
            }
        })
        .send()
        .await
        .expect_error(401, "invalid_signature");

    // The timestamp window: 300 s either way.
    let now = unix_now();
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .timestamp(now - 290)
        .send()
        .await
        .expect(200);
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .timestamp(now - 310)
        .send()
        .await
        .expect_error(401, "signature_expired");
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .timestamp(now + 310)
        .send()
        .await
        .expect_error(401, "signature_expired");
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .tamper(|h| {
            h.insert("x-alter-timestamp", HeaderValue::from_static("soon"));
        })
        .send()
        .await
        .expect_error(401, "invalid_timestamp");
    assert!(env.emu.snapshot().agents.is_empty(), "nothing was created");
}

#[tokio::test]
async fn a_replayed_request_is_refused_and_does_nothing() {
    let env = Env::new().await;
    let nonce = fresh_nonce();
    let body = json!({"name": "once", "type": "agent", "scopes": {}, "metadata": {}});
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(body.clone())
        .nonce(&nonce)
        .send()
        .await
        .expect(201);
    // Byte for byte the same request (same timestamp second is likely; the nonce decides).
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(body)
        .nonce(&nonce)
        .send()
        .await
        .expect_error(401, "nonce_reused");
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .nonce(&nonce)
        .send()
        .await
        .expect_error(401, "nonce_reused");
    assert_eq!(env.emu.snapshot().agents.len(), 1);
}

#[tokio::test]
async fn actor_headers_are_bound_by_the_second_signature_form() {
    let env = Env::new().await;
    let key = env.k().to_owned();
    let (ts, nonce) = (unix_now().to_string(), fresh_nonce());
    let content = hex(&<sha2::Sha256 as sha2::Digest>::digest(b""));
    let sts =
        format!("GET\n/sdk/agents\n{ts}\n{nonce}\n{content}\n\ncaller:ci-bot\ncaller-type:service");
    let sig = hex(&hmac(
        &hmac(key.as_bytes(), b"alter-signing-v1"),
        sts.as_bytes(),
    ));
    let headers = move |strip: bool| {
        let (ts, nonce, content, sig) = (ts.clone(), nonce.clone(), content.clone(), sig.clone());
        move |h: &mut http::HeaderMap| {
            h.insert("x-alter-timestamp", ts.parse().unwrap());
            h.insert("x-alter-nonce", nonce.parse().unwrap());
            h.insert("x-alter-content-sha256", content.parse().unwrap());
            h.insert("x-alter-signature", sig.parse().unwrap());
            h.insert("x-alter-signature-v2", sig.parse().unwrap());
            if !strip {
                h.insert("x-alter-caller", "ci-bot".parse().unwrap());
                h.insert("x-alter-caller-type", "service".parse().unwrap());
            }
        }
    };
    // Stripping the actor headers (a downgrade) breaks the signature.
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .unsigned()
        .tamper(headers(true))
        .send()
        .await
        .expect_error(401, "invalid_signature");
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .unsigned()
        .tamper(headers(false))
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn revoked_and_deprecated_app_keys() {
    let env = Env::new().await;
    let spare = env.emu.create_app_key(&env.app, "spare", None).unwrap();
    env.emu.set_app_key_deprecated(&spare.id, true).unwrap();
    let r = env.http.get("/sdk/agents").key(&spare.api_key).send().await;
    r.expect(200);
    assert_eq!(r.header("x-alter-key-deprecated"), Some("true"));
    let r = env.http.get("/sdk/agents").key(env.k()).send().await;
    assert_eq!(r.header("x-alter-key-deprecated"), None);
    env.emu.revoke_app_key(&spare.id).unwrap();
    env.http
        .get("/sdk/agents")
        .key(&spare.api_key)
        .send()
        .await
        .expect_error(401, "invalid_key");
    let snap = env.emu.snapshot();
    assert!(snap.app_key(&spare.id).unwrap().last_used_at.is_some());
}

#[tokio::test]
async fn agent_keys_act_and_app_keys_manage() {
    let env = Env::new().await;
    let (agent, agent_key) = env.create("worker").await;
    env.http
        .get("/sdk/agents")
        .key(&agent_key)
        .send()
        .await
        .expect_error(403, "agent_cannot_mint_subagents");
    env.http
        .post("/sdk/agents")
        .key(&agent_key)
        .json(json!({"name": "sub"}))
        .send()
        .await
        .expect_error(403, "agent_cannot_mint_subagents");
    env.http
        .get("/sdk/agents/me")
        .key(env.k())
        .send()
        .await
        .expect_error(403, "me_requires_agent_key");
    let me = env
        .http
        .get("/sdk/agents/me")
        .key(&agent_key)
        .send()
        .await
        .expect(200);
    assert_eq!(me["id"], agent["id"]);
    // A suspended agent: `me` still answers, anything else is `agent_inactive`.
    let id = s(&agent["id"]);
    env.http
        .patch(&format!("/sdk/agents/{id}"))
        .key(env.k())
        .json(json!({"status": "inactive"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        env.http
            .get("/sdk/agents/me")
            .key(&agent_key)
            .send()
            .await
            .expect(200)["status"],
        "inactive"
    );
    env.http
        .post("/sdk/identity/resolve")
        .key(&agent_key)
        .json(json!({"include_profile": false}))
        .send()
        .await
        .expect_error(401, "agent_inactive");
}

#[tokio::test]
async fn scopes_gate_each_route_as_the_cli_reference_says() {
    let env = Env::new().await;
    let (agent, _) = env.create("scoped").await;
    let id = s(&agent["id"]);
    let key_id = s(&agent["key_id"]);
    let reader = env
        .emu
        .create_app_key(&env.app, "r", Some(&[AGENTS_READ]))
        .unwrap()
        .api_key;
    let writer = env
        .emu
        .create_app_key(&env.app, "w", Some(&[AGENTS_WRITE]))
        .unwrap()
        .api_key;
    let admin = env
        .emu
        .create_app_key(&env.app, "a", Some(&[AGENTS_ADMIN]))
        .unwrap()
        .api_key;
    let auditor = env
        .emu
        .create_app_key(&env.app, "au", Some(&[AUDIT_READ]))
        .unwrap()
        .api_key;

    env.http
        .get("/sdk/agents")
        .key(&reader)
        .send()
        .await
        .expect(200);
    env.http
        .get(&format!("/sdk/agents/{id}/keys"))
        .key(&reader)
        .send()
        .await
        .expect(200);
    let e = env
        .http
        .post(&format!("/sdk/agents/{id}/keys"))
        .key(&reader)
        .json(json!({}))
        .send()
        .await
        .expect_error(403, "insufficient_scope");
    assert_eq!(e["required"], json!([AGENTS_WRITE]));
    assert_eq!(e["missing"], json!([AGENTS_WRITE]));
    assert_eq!(e["granted"], json!([AGENTS_READ]));

    // write implies read; revoke needs admin.
    env.http
        .get("/sdk/agents")
        .key(&writer)
        .send()
        .await
        .expect(200);
    env.http
        .post(&format!("/sdk/agents/{id}/keys"))
        .key(&writer)
        .json(json!({}))
        .send()
        .await
        .expect(201);
    env.http
        .patch(&format!("/sdk/agents/{id}/keys/{key_id}/deprecate"))
        .key(&writer)
        .json(json!({}))
        .send()
        .await
        .expect(200);
    env.http
        .delete(&format!("/sdk/agents/{id}/keys/{key_id}"))
        .key(&writer)
        .send()
        .await
        .expect_error(403, "insufficient_scope");
    env.http
        .delete(&format!("/sdk/agents/{id}"))
        .key(&writer)
        .send()
        .await
        .expect_error(403, "insufficient_scope");
    env.http
        .delete(&format!("/sdk/agents/{id}/keys/{key_id}"))
        .key(&admin)
        .send()
        .await
        .expect(200);

    // The audit feed reads the audit log, not the registry.
    env.http
        .get(&format!("/sdk/agents/{id}/audit"))
        .key(&admin)
        .send()
        .await
        .expect_error(403, "insufficient_scope");
    env.http
        .get(&format!("/sdk/agents/{id}/audit"))
        .key(&auditor)
        .send()
        .await
        .expect(200);
    env.http
        .get("/sdk/agents")
        .key(&auditor)
        .send()
        .await
        .expect_error(403, "insufficient_scope");

    // Refused changes are audited with their code.
    let refusals: Vec<_> = env
        .emu
        .audit()
        .into_iter()
        .filter(|e| e.outcome == "insufficient_scope")
        .map(|e| e.action)
        .collect();
    assert_eq!(refusals, ["mint_key", "revoke_key", "delete_agent"]);
}

#[tokio::test]
async fn scope_constraints_narrow_and_are_signed() {
    let env = Env::new().await;
    let narrowed = |r: crate::common::Req| r.header("x-alter-scope-constraints", AGENTS_READ);
    narrowed(env.http.get("/sdk/agents").key(env.k()))
        .send()
        .await
        .expect(200);
    narrowed(
        env.http
            .post("/sdk/agents")
            .key(env.k())
            .json(json!({"name": "x"})),
    )
    .send()
    .await
    .expect_error(403, "insufficient_scope");
    let reader = env
        .emu
        .create_app_key(&env.app, "r", Some(&[AGENTS_READ]))
        .unwrap()
        .api_key;
    env.http
        .get("/sdk/agents")
        .key(&reader)
        .header("x-alter-scope-constraints", AGENTS_WRITE)
        .send()
        .await
        .expect_error(400, "constraint_not_narrowing");
    // Stripping the constraint after signing breaks the signature.
    narrowed(env.http.get("/sdk/agents").key(env.k()))
        .tamper(|h| {
            h.remove("x-alter-scope-constraints");
        })
        .send()
        .await
        .expect_error(401, "invalid_signature");
}

#[tokio::test]
async fn agents_are_scoped_to_their_app() {
    let env = Env::new().await;
    let (agent, _) = env.create("shared-name").await;
    let other_app = env.emu.create_app("other").id;
    let other = env
        .emu
        .create_app_key(&other_app, "o", None)
        .unwrap()
        .api_key;
    let id = s(&agent["id"]);
    env.http
        .get(&format!("/sdk/agents/{id}"))
        .key(&other)
        .send()
        .await
        .expect_error(404, "agent_not_found");
    env.http
        .delete(&format!("/sdk/agents/{id}"))
        .key(&other)
        .send()
        .await
        .expect_error(404, "agent_not_found");
    let page = env
        .http
        .get("/sdk/agents")
        .key(&other)
        .send()
        .await
        .expect(200);
    assert_eq!(page["total"], 0);
    // Names are per app.
    env.http
        .post("/sdk/agents")
        .key(&other)
        .json(json!({"name": "shared-name"}))
        .send()
        .await
        .expect(201);
    let ident = env
        .http
        .post("/sdk/identity/resolve")
        .key(&other)
        .json(json!({"include_profile": false}))
        .send()
        .await
        .expect(200);
    assert_eq!(ident["app_id"], other_app.as_str());
    assert!(ident["agent_id"].is_null());
}
