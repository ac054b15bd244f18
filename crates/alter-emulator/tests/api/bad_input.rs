//! Malformed input gets a clear JSON error that never repeats what was sent.

use serde_json::json;

use crate::common::Env;

#[tokio::test]
async fn bodies() {
    let env = Env::new().await;
    let post = || env.http.post("/sdk/agents").key(env.k());
    post()
        .raw_body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect_error(400, "invalid_json");
    post()
        .raw_body("[1,2]")
        .send()
        .await
        .expect_error(400, "invalid_json");
    post()
        .raw_body("")
        .send()
        .await
        .expect_error(400, "invalid_json");
    post()
        .raw_body(r#"{"name":"x"}"#)
        .header("content-type", "text/plain")
        .send()
        .await
        .expect_error(415, "unsupported_media_type");
    // No Content-Type at all: read as JSON.
    post()
        .raw_body(r#"{"name":"no-type"}"#)
        .send()
        .await
        .expect(201);
    let secret = "alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567";
    let r = post().json(json!({"name": secret})).send().await;
    let e = r.expect_error(422, "validation_error");
    assert_eq!(e["field"], "name");
    assert!(
        !String::from_utf8_lossy(&r.body).contains(secret),
        "a value from the body is never echoed"
    );
    let r = post()
        .json(json!({"name": "ok-name", secret: 1}))
        .send()
        .await;
    r.expect_error(422, "validation_error");
    assert!(!String::from_utf8_lossy(&r.body).contains(secret));
    let r = post()
        .json(json!({"name": "big", "metadata": {"x": "y".repeat(70 * 1024)}}))
        .send()
        .await;
    r.expect_error(413, "payload_too_large");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(env.emu.snapshot().agents.len() == 1);
}

#[tokio::test]
async fn routes_and_methods() {
    let env = Env::new().await;
    env.http
        .get("/api/agents")
        .key(env.k())
        .send()
        .await
        .expect_error(404, "not_found");
    env.http
        .get("/sdk/agents/")
        .key(env.k())
        .send()
        .await
        .expect_error(404, "not_found");
    let r = env.http.put("/sdk/agents").key(env.k()).send().await;
    r.expect_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert_eq!(env.http.get("/healthz").send().await.status, 200);
    assert!(env.emu.request_count("unrouted") >= 3);
}
