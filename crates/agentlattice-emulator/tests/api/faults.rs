//! Fault injection of each kind, through the admin API and in process.

use std::time::{Duration, Instant};

use agentlattice_emulator::{FaultConfig, RouteFaults};
use serde_json::json;

use crate::common::{Fx, s};

#[tokio::test]
async fn latency_fixed_and_jitter_per_route_and_global() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("list_agents", RouteFaults::latency(400, 50)));
    let t = Instant::now();
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // Other routes are not slowed.
    let t = Instant::now();
    fx.http
        .get("/api/v1/whoami")
        .send()
        .await
        .expect_error(401, "missing_authorization");
    assert!(t.elapsed() < Duration::from_millis(400));
    // "*" applies to every operation, and route + "*" add up.
    fx.emu.set_faults(
        FaultConfig::new()
            .route("*", RouteFaults::latency(100, 0))
            .route("list_agents", RouteFaults::latency(100, 0)),
    );
    let t = Instant::now();
    fx.http
        .get("/api/v1/whoami")
        .send()
        .await
        .expect_error(401, "missing_authorization");
    assert!(t.elapsed() >= Duration::from_millis(100));
    let t = Instant::now();
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    fx.emu.clear_faults();
    assert_eq!(fx.emu.faults(), FaultConfig::default());
}

#[tokio::test]
async fn error_rate_with_configurable_status() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::error_rate(1.0, 503)));
    let r = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "never"}))
        .send()
        .await;
    r.expect_error(503, "unavailable");
    assert!(
        fx.emu.snapshot().agents.is_empty(),
        "a pre-commit error commits nothing"
    );
    fx.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::error_rate(1.0, 500)));
    fx.http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "never"}))
        .send()
        .await
        .expect_error(500, "internal_error");
    // rate 0.5 over many calls: some of each (probability of a false failure ~ 2^-60).
    fx.emu
        .set_faults(FaultConfig::new().route("list_agents", RouteFaults::error_rate(0.5, 500)));
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let r = fx
            .http
            .get("/api/agents")
            .bearer(&fx.svc.api_key)
            .send()
            .await;
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200, 500],
        "{statuses:?}"
    );
    // The error rate stays until cleared.
    assert!(fx.emu.faults().routes.contains_key("list_agents"));

    // After-commit errors: the change happens, the caller sees a 500.
    fx.emu.set_faults(
        FaultConfig::new().route("register", RouteFaults::fail_next_after_commit(1, 500)),
    );
    fx.http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "committed"}))
        .send()
        .await
        .expect_error(500, "internal_error");
    assert!(fx.emu.snapshot().live_agent_named("committed").is_some());
}

#[tokio::test]
async fn throttle_burst_with_retry_after() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("whoami", RouteFaults::throttle_next(2, 3)));
    let a = fx.register("throttled", &[]).await;
    let key = s(&a["api_key"]);
    for _ in 0..2 {
        let r = fx.http.get("/api/v1/whoami").bearer(&key).send().await;
        r.expect_error(429, "rate_limit_exceeded");
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(r.json()["retry_after"], 3);
    }
    fx.http
        .get("/api/v1/whoami")
        .bearer(&key)
        .send()
        .await
        .expect(200);
    assert!(
        fx.emu.faults().routes.is_empty(),
        "an exhausted burst disappears"
    );
}

#[tokio::test]
async fn token_bucket_rate_limit() {
    let fx = Fx::new().await;
    fx.emu
        // Burst of 3, then one token every 2 s.
        .set_faults(FaultConfig::new().route("*", RouteFaults::rate_limit(0.5, 3)));
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            fx.http
                .get("/api/agents")
                .bearer(&fx.svc.api_key)
                .send()
                .await
                .status,
        );
    }
    assert_eq!(&codes[..3], [200, 200, 200]);
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    let r = fx
        .http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await;
    r.expect_error(429, "rate_limit_exceeded");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(r.json()["retry_after"], retry_after);
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn fail_next_n_of_a_route_or_any() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("list_agents", RouteFaults::fail_next(2, 503)));
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect_error(503, "unavailable");
    fx.http.get("/healthz").send().await; // not counted
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect_error(503, "unavailable");
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);

    fx.emu
        .set_faults(FaultConfig::new().route("*", RouteFaults::fail_next(2, 500)));
    fx.http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "a"}))
        .send()
        .await
        .expect_error(500, "internal_error");
    fx.http
        .get("/api/v1/whoami")
        .send()
        .await
        .expect_error(500, "internal_error");
    fx.http
        .get("/api/agents")
        .bearer(&fx.svc.api_key)
        .send()
        .await
        .expect(200);
    assert!(fx.emu.snapshot().agents.is_empty());
}

#[tokio::test]
async fn drop_after_commit_gives_a_transport_error_and_commits() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::drop_response_next(1)));
    let err = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .header("Idempotency-Key", "uid-drop")
        .json(&json!({"name": "dropped"}))
        .try_send()
        .await
        .expect_err("no response at all");
    assert!(!err.is_connect(), "the request was sent: {err:?}");
    let hyper_err = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .unwrap_or_else(|| panic!("a hyper error: {err:?}"));
    assert!(hyper_err.is_incomplete_message(), "{hyper_err:?}");

    // The agent exists: the retry with the same Idempotency-Key finds it (200, no key).
    let snap = fx.emu.snapshot();
    let agent = snap.live_agent_named("dropped").expect("committed");
    let replay = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .header("Idempotency-Key", "uid-drop")
        .json(&json!({"name": "dropped"}))
        .send()
        .await
        .expect(200);
    assert_eq!(replay["id"], agent.id.as_str());
    assert!(replay["api_key"].is_null());
    assert_eq!(fx.emu.metrics().dropped.get("register"), Some(&1));

    // Mint is the non-idempotent case: the dropped mint leaves a key nobody received.
    fx.emu
        .set_faults(FaultConfig::new().route("mint_key", RouteFaults::drop_response_next(1)));
    let r = fx
        .http
        .post(&format!("/api/agents/{}/keys", agent.id))
        .bearer(&fx.svc.api_key)
        .try_send()
        .await;
    assert!(r.is_err());
    assert_eq!(
        fx.emu
            .snapshot()
            .agent(&agent.id)
            .unwrap()
            .live_keys()
            .count(),
        2
    );
}

#[tokio::test]
async fn faults_through_the_admin_api() {
    let fx = Fx::new().await;
    let admin = fx.admin();
    let config = json!({
        "routes": {
            "register": {"fail_next": {"count": 1, "status": 503, "retry_after": 2}},
            "*": {"latency": {"fixed_ms": 1, "jitter_ms": 1}},
            "get_agent": {"throttle_next": {"count": 1, "retry_after": 5}, "drop_response_next": 1},
            "list_agents": {"rate_limit": {"per_second": 100.0, "burst": 10}, "error_rate": {"rate": 0.0}}
        }
    });
    let put = fx
        .http
        .put("/_admin/faults")
        .bearer(&admin)
        .json(&config)
        .send()
        .await
        .expect(200);
    assert_eq!(put["routes"]["register"]["fail_next"]["count"], 1);
    assert_eq!(
        put["routes"]["list_agents"]["error_rate"]["status"], 500,
        "defaults filled in"
    );
    let r = fx
        .http
        .post("/api/agents/register")
        .bearer(&fx.svc.api_key)
        .json(&json!({"name": "x"}))
        .send()
        .await;
    r.expect_error(503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("2"));
    let got = fx
        .http
        .get("/_admin/faults")
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    assert!(got["routes"].get("register").is_none(), "exhausted: {got}");
    assert_eq!(got["routes"]["get_agent"]["drop_response_next"], 1);

    // Invalid configurations are refused with a 422 and leave the old one in place.
    for bad in [
        json!({"routes": {"regster": {}}}),
        json!({"routes": {"register": {"error_rate": {"rate": 2.0}}}}),
        json!({"routes": {"register": {"fail_next": {"count": 1, "status": 200}}}}),
        json!({"routes": {"register": {"unknown_fault": 1}}}),
        json!({"route": {}}),
    ] {
        fx.http
            .put("/_admin/faults")
            .bearer(&admin)
            .json(&bad)
            .send()
            .await
            .expect_error(422, "validation_failed");
    }
    assert_eq!(
        fx.http
            .get("/_admin/faults")
            .bearer(&admin)
            .send()
            .await
            .expect(200),
        got
    );

    let cleared = fx
        .http
        .delete("/_admin/faults")
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    assert_eq!(cleared, json!({"routes": {}}));
    assert!(fx.emu.faults().routes.is_empty());
    // In-process validation reports the error.
    assert!(
        fx.emu
            .try_set_faults(FaultConfig::new().route("bogus", RouteFaults::default()))
            .is_err()
    );
}

#[tokio::test]
async fn faults_never_touch_the_admin_api_or_healthz() {
    let fx = Fx::new().await;
    fx.emu
        .set_faults(FaultConfig::new().route("*", RouteFaults::fail_next(100, 503)));
    assert_eq!(fx.http.get("/healthz").send().await.status, 200);
    fx.http
        .get("/_admin/state")
        .bearer(&fx.admin())
        .send()
        .await
        .expect(200);
    fx.http
        .delete("/_admin/faults")
        .bearer(&fx.admin())
        .send()
        .await
        .expect(200);
}
