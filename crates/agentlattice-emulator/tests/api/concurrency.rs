//! Many workers at once: no duplicate names, no lost update, consistent state.

use std::collections::HashSet;

use serde_json::json;

use crate::common::{Fx, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_registrations_never_duplicate_a_name() {
    let fx = Fx::new().await;
    // 20 names, each registered by 10 racing workers (half of them with an Idempotency-Key).
    let mut tasks = Vec::new();
    for worker in 0..200 {
        let http = fx.http.clone();
        let svc = fx.svc.api_key.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("race-{}", worker % 20);
            let mut req = http.post("/api/agents/register").bearer(&svc);
            if worker % 2 == 0 {
                req = req.header("Idempotency-Key", &format!("uid-{name}"));
            }
            let r = req
                .json(&json!({"name": name, "capabilities": ["x"]}))
                .send()
                .await;
            (name, worker % 2 == 0, r.status, r.json())
        }));
    }
    let mut created = HashSet::new();
    let mut keys = HashSet::new();
    for t in tasks {
        let (name, with_idem, status, body) = t.await.unwrap();
        match status {
            201 => {
                assert!(created.insert(name.clone()), "{name} created twice");
                assert!(keys.insert(s(&body["api_key"])));
            }
            200 => assert!(with_idem && body["api_key"].is_null()),
            409 => assert_eq!(body["error"], "agent_name_exists"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), 20);
    let snap = fx.emu.snapshot();
    assert_eq!(snap.agents.len(), 20);
    for i in 0..20 {
        assert_eq!(snap.agents_named(&format!("race-{i}")).count(), 1);
    }
    let successes = fx
        .emu
        .audit()
        .iter()
        .filter(|e| e.operation == "register" && e.outcome == "success")
        .count();
    assert_eq!(successes, 20);
    assert_eq!(fx.emu.request_count("register"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_mints_respect_the_key_limit() {
    let fx = Fx::new().await;
    let a = fx.register("limited", &[]).await;
    let id = s(&a["id"]);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let http = fx.http.clone();
        let svc = fx.svc.api_key.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            http.post(&format!("/api/agents/{id}/keys"))
                .bearer(&svc)
                .send()
                .await
                .status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => ok += 1,
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 9, "10 keys in all, the registration's included");
    assert_eq!(
        fx.emu.snapshot().agent(&id).unwrap().live_keys().count(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_revokes_of_the_last_two_keys_leave_one() {
    // Two workers each revoke a different key of a two-key agent without force: exactly one wins,
    // the other hits the last-active-key guard, whatever the interleaving.
    for round in 0..20 {
        let fx = Fx::new().await;
        let a = fx.register(&format!("pair-{round}"), &[]).await;
        let id = s(&a["id"]);
        let k2 = s(&fx.mint(&id).await["key_id"]);
        let k1 = s(&a["key_id"]);
        let mut tasks = Vec::new();
        for k in [k1, k2] {
            let http = fx.http.clone();
            let svc = fx.svc.api_key.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                http.delete(&format!("/api/agents/{id}/keys/{k}"))
                    .bearer(&svc)
                    .send()
                    .await
                    .status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
        assert_eq!(fx.emu.snapshot().agent(&id).unwrap().live_keys().count(), 1);
    }
}
