//! Bad input of each kind → the contract's error, never a panic, never an echoed key.

use agentlattice_emulator::EmulatorConfig;
use serde_json::json;

use crate::common::{Fx, Http};

#[tokio::test]
async fn malformed_bodies() {
    let fx = Fx::new().await;
    let svc = fx.svc.api_key.clone();
    let reg = || fx.http.post("/api/agents/register").bearer(&svc);

    for body in [
        "{",
        "not json",
        "{\"name\": }",
        "[1,2]",
        "\"str\"",
        "null",
        "",
        "   ",
    ] {
        reg()
            .raw(Some("application/json"), body)
            .send()
            .await
            .expect_error(400, "invalid_json");
    }
    // A secret in a malformed body is not repeated.
    let secret = format!("al_agent_{}", "Z".repeat(40));
    let r = reg()
        .raw(Some("application/json"), format!("{{\"name\": {secret}}}"))
        .send()
        .await;
    r.expect_error(400, "invalid_json");
    assert!(!String::from_utf8_lossy(&r.body).contains(&secret));
    let r = reg().json(&json!({"name": secret})).send().await;
    r.expect_error(422, "validation_failed");
    assert!(!String::from_utf8_lossy(&r.body).contains(&secret));
    // Not UTF-8.
    reg()
        .raw(Some("application/json"), vec![0xff, 0xfe, b'{'])
        .send()
        .await
        .expect_error(400, "invalid_json");
}

#[tokio::test]
async fn validation_names_the_field() {
    let fx = Fx::new().await;
    let cases = [
        (json!({}), "name"),
        (json!({"name": 7}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "Upper"}), "name"),
        (json!({"name": "trailing-"}), "name"),
        (json!({"name": "x".repeat(129)}), "name"),
        (
            json!({"name": "ok", "capabilities": "deploy"}),
            "capabilities",
        ),
        (
            json!({"name": "ok", "capabilities": [1]}),
            "capabilities[0]",
        ),
        (
            json!({"name": "ok", "capabilities": ["a", "a"]}),
            "capabilities[1]",
        ),
        (
            json!({"name": "ok", "capabilities": ["Bad"]}),
            "capabilities[0]",
        ),
        (
            json!({"name": "ok", "capabilities": (0..65).map(|i| format!("c{i}")).collect::<Vec<_>>()}),
            "capabilities",
        ),
        (json!({"name": "ok", "description": 5}), "description"),
        (
            json!({"name": "ok", "description": "d".repeat(1025)}),
            "description",
        ),
        (json!({"name": "ok", "metadata": "x"}), "metadata"),
        (json!({"name": "ok", "metadata": {"k": 1}}), "metadata.k"),
        (json!({"name": "ok", "metadata": {"-k": "v"}}), "metadata"),
        (
            json!({"name": "ok", "metadata": {"k": "v".repeat(513)}}),
            "metadata.k",
        ),
        (
            json!({"name": "ok", "metadata": (0..33).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "metadata",
        ),
        (json!({"name": "ok", "unexpected": true}), "unexpected"),
    ];
    for (body, field) in cases {
        let r = fx
            .http
            .post("/api/agents/register")
            .bearer(&fx.svc.api_key)
            .json(&body)
            .send()
            .await;
        r.expect_error(422, "validation_failed");
        assert!(
            r.message().contains(field),
            "{body}: message {:?} should name {field}",
            r.message()
        );
    }
    // Limits are inclusive.
    let ok = json!({
        "name": "x".repeat(128),
        "capabilities": (0..64).map(|i| format!("c{i}")).collect::<Vec<_>>(),
        "description": "d".repeat(1024),
        "metadata": (0..32).map(|i| (format!("k{i}"), json!("v".repeat(512)))).collect::<serde_json::Map<_, _>>(),
    });
    fx.http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&ok)
        .send()
        .await
        .expect(201);
    assert_eq!(fx.emu.snapshot().agents.len(), 1);
}

#[tokio::test]
async fn size_and_media_type() {
    let fx = Fx::new().await;
    let svc = fx.svc.api_key.clone();
    let big = format!(
        "{{\"name\": \"a\", \"description\": \"{}\"}}",
        "d".repeat(64 * 1024)
    );
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .raw(Some("application/json"), big)
        .send()
        .await
        .expect_error(413, "payload_too_large");
    // Exactly 64 KiB passes the size check (and then fails validation, not size).
    let mut exact = "{\"name\": \"a\", \"description\": \"".to_owned();
    let pad = 64 * 1024 - exact.len() - 2;
    exact.push_str(&"d".repeat(pad));
    exact.push_str("\"}");
    assert_eq!(exact.len(), 64 * 1024);
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .raw(Some("application/json"), exact)
        .send()
        .await
        .expect_error(422, "validation_failed");

    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        fx.http
            .post("/api/agents/register")
            .bearer(&svc)
            .raw(Some(ct), "{\"name\": \"a\"}")
            .send()
            .await
            .expect_error(415, "unsupported_media_type");
    }
    // Parameters and case are fine.
    fx.http
        .post("/api/agents/register")
        .bearer(&svc)
        .raw(
            Some("Application/JSON; charset=utf-8"),
            "{\"name\": \"media\"}",
        )
        .send()
        .await
        .expect(201);
    // Body-less calls need no Content-Type.
    let a = fx.register("bodyless", &[]).await;
    let id = a["id"].as_str().unwrap();
    fx.http
        .post(&format!("/api/agents/{id}/halt"))
        .bearer(&svc)
        .raw(Some("text/plain"), "")
        .send()
        .await
        .expect(200);
    fx.http
        .post(&format!("/api/agents/{id}/halt"))
        .bearer(&svc)
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let fx = Fx::new().await;
    for path in [
        "/",
        "/api",
        "/api/agents/",
        "/api/v1/policies",
        "/api/agents/x/keys/y/z",
        "/nope",
    ] {
        fx.http
            .get(path)
            .bearer(&fx.svc.api_key)
            .send()
            .await
            .expect_error(404, "not_found");
    }
    let r = fx
        .http
        .put("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .send()
        .await;
    r.expect_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = fx.http.post("/api/agents/x").send().await;
    r.expect_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, PATCH, DELETE"));
    fx.http
        .post("/api/v1/whoami")
        .send()
        .await
        .expect_error(405, "method_not_allowed");

    let h = fx.http.get("/healthz").send().await;
    assert_eq!((h.status, &h.body[..]), (200, &b"ok"[..]));
    assert!(h.header("x-request-id").is_some());
}

#[tokio::test]
async fn errors_can_be_wrapped_in_detail() {
    let fx = Fx::with(EmulatorConfig {
        wrap_errors_in_detail: true,
        ..Default::default()
    })
    .await;
    let r = fx.http.get("/api/agents").send().await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["detail"]["error"], "missing_authorization");
    assert!(v["detail"]["message"].is_string());
    assert!(v.get("error").is_none());
    // Switchable at run time; successes are never wrapped.
    fx.emu.set_wrap_errors_in_detail(false);
    assert_eq!(
        fx.http.get("/api/agents").send().await.json()["error"],
        "missing_authorization"
    );
    fx.emu.set_wrap_errors_in_detail(true);
    let ok = fx.register("unwrapped", &[]).await;
    assert_eq!(ok["name"], "unwrapped");
    let http = Http::new(fx.emu.base_url());
    let r = http.get("/api/agents").bearer(&fx.svc.api_key).send().await;
    assert!(r.json()["items"].is_array());
}

#[tokio::test]
async fn error_responses_keep_the_connection_usable() {
    // Errors answered before the body was looked at (401, 403, 404, 405, injected faults) must
    // not leave the body unread: hyper would close the connection and a pooled client could see a
    // spurious transport error on its next request. `send()` panics on any transport error.
    let fx = Fx::new().await;
    fx.emu
        .set_faults(agentlattice_emulator::FaultConfig::new().route(
            "register",
            agentlattice_emulator::RouteFaults::throttle_next(30, 1),
        ));
    let big_but_allowed = json!({"name": "n", "description": "d".repeat(1000)});
    for _ in 0..30 {
        fx.http
            .post("/api/agents/register")
            .bearer("nope")
            .json(&big_but_allowed)
            .send()
            .await;
        fx.http
            .post("/api/agents/register")
            .bearer(&fx.svc.api_key)
            .json(&big_but_allowed)
            .send()
            .await;
        fx.http.post("/nowhere").json(&big_but_allowed).send().await;
        fx.http
            .put("/api/v1/whoami")
            .json(&big_but_allowed)
            .send()
            .await;
        fx.http
            .get("/api/agents")
            .bearer(&fx.svc.api_key)
            .send()
            .await
            .expect(200);
    }
    // Over the limit the server announces that it closes the connection.
    let r = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .raw(Some("application/json"), vec![b' '; 70_000])
        .send()
        .await;
    r.expect_error(413, "payload_too_large");
    assert_eq!(r.header("connection"), Some("close"));
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
}
