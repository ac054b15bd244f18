//! Fault injection: latency, throttling (rate limit and quota), failures before and after the
//! work, dropped responses, error rates, through the library and the admin API.

use std::time::{Duration, Instant};

use alter_emulator::{FaultConfig, RouteFaults};
use http::Method;
use serde_json::json;

use crate::common::Env;

#[tokio::test]
async fn throttles_carry_retry_after_in_header_and_body() {
    let env = Env::new().await;
    env.emu
        .set_faults(FaultConfig::new().route("list_agents", RouteFaults::throttle_next(2, 7)));
    let r = env.http.get("/sdk/agents").key(env.k()).send().await;
    let e = r.expect_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("x-alter-rate-limited-scope"), Some("api_key"));
    assert!(r.json()["detail"].is_object());
    assert_eq!(
        (
            e["retry_after"].as_u64(),
            e["scope"].as_str(),
            e["window_seconds"].as_u64()
        ),
        (Some(7), Some("api_key"), Some(60))
    );
    assert_eq!(
        env.emu.faults().routes["list_agents"]
            .throttle_next
            .as_ref()
            .unwrap()
            .count,
        1
    );
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect(429);
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert!(env.emu.faults().routes.is_empty());

    env.emu
        .set_faults(FaultConfig::new().route("*", RouteFaults::quota_next(1, 3600)));
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect_error(429, "quota_exceeded");

    env.emu
        .set_faults(FaultConfig::new().route("me", RouteFaults::rate_limit(0.5, 2)));
    let (_, key) = env.create("limited").await;
    env.http
        .get("/sdk/agents/me")
        .key(&key)
        .send()
        .await
        .expect(200);
    env.http
        .get("/sdk/agents/me")
        .key(&key)
        .send()
        .await
        .expect(200);
    let r = env.http.get("/sdk/agents/me").key(&key).send().await;
    r.expect_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(env.emu.metrics().count_status("me", 429), 1);
}

#[tokio::test]
async fn failures_before_and_after_the_work() {
    let env = Env::new().await;
    env.emu
        .set_faults(FaultConfig::new().route("create_agent", RouteFaults::fail_next(1, 503)));
    let body = json!({"name": "flaky"});
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(body.clone())
        .send()
        .await
        .expect_error(503, "service_unavailable");
    assert!(env.emu.snapshot().agents.is_empty(), "nothing done");
    env.emu.set_faults(
        FaultConfig::new().route("create_agent", RouteFaults::fail_next_after_commit(1, 500)),
    );
    env.http
        .post("/sdk/agents")
        .key(env.k())
        .json(body.clone())
        .send()
        .await
        .expect_error(500, "internal_error");
    assert_eq!(env.emu.snapshot().agents.len(), 1, "done, then failed");
    let id = env.emu.snapshot().agents[0].agent.id.clone();

    env.emu
        .set_faults(FaultConfig::new().route("mint_key", RouteFaults::drop_response_next(1)));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let path = format!("/sdk/agents/{id}/keys");
    let sig = crate::common::signature(
        env.k(),
        "POST",
        &path,
        b"{}",
        &crate::common::unix_now().to_string(),
        &crate::common::fresh_nonce(),
        "",
    );
    let mut req = http::Request::post(format!("{}{path}", env.emu.base_url()))
        .header("x-api-key", env.k())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    for (k, v) in sig {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    assert!(
        client.request(req).await.is_err(),
        "the connection closes without a response"
    );
    let snap = env.emu.snapshot();
    assert_eq!(snap.agents[0].keys.len(), 2, "the key was minted anyway");
    assert_eq!(env.emu.metrics().dropped["mint_key"], 1);

    env.emu
        .set_faults(FaultConfig::new().route("*", RouteFaults::error_rate(1.0, 502)));
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect_error(502, "bad_gateway");
    env.emu.clear_faults();
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn latency_adds_up() {
    let env = Env::new().await;
    env.emu.set_faults(
        FaultConfig::new()
            .route("list_agents", RouteFaults::latency(120, 0))
            .route("*", RouteFaults::latency(80, 0)),
    );
    let t = Instant::now();
    env.http
        .get("/sdk/agents")
        .key(env.k())
        .send()
        .await
        .expect(200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_admin_api_sets_and_checks_faults() {
    let env = Env::new().await;
    let r = env
        .admin(
            Method::PUT,
            "/_admin/faults",
            Some(json!({"routes": {"mint_key": {"fail_next": {"count": 2}}}})),
        )
        .await;
    assert_eq!(
        r.expect(200)["routes"]["mint_key"]["fail_next"]["status"],
        503
    );
    env.admin(
        Method::PUT,
        "/_admin/faults",
        Some(json!({"routes": {"register": {}}})),
    )
    .await
    .expect_error(422, "validation_error");
    env.admin(
        Method::PUT,
        "/_admin/faults",
        Some(json!({"routes": {"*": {"error_rate": {"rate": 3}}}})),
    )
    .await
    .expect_error(422, "validation_error");
    assert_eq!(
        env.emu.faults().routes["mint_key"]
            .fail_next
            .as_ref()
            .unwrap()
            .count,
        2,
        "the old one stays"
    );
    env.admin(Method::DELETE, "/_admin/faults", None)
        .await
        .expect(200);
    assert!(env.emu.faults().routes.is_empty());
    assert!(
        env.emu
            .try_set_faults(FaultConfig::new().route("nope", RouteFaults::default()))
            .is_err()
    );
}
