//! Concurrent calls keep the rules: one agent per name, the key limit, one nonce one request.

use futures::future::join_all;
use serde_json::json;

use crate::common::{Env, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_and_mints() {
    let env = Env::new().await;
    let results = join_all((0..16).map(|_| {
        env.http
            .post("/sdk/agents")
            .key(env.k())
            .json(json!({"name": "racer"}))
            .send()
    }))
    .await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 15);
    let id = s(&results.iter().find(|r| r.status == 201).unwrap().json()["id"]);
    env.emu.set_key_limit(5);
    let mints = join_all((0..12).map(|_| {
        env.http
            .post(&format!("/sdk/agents/{id}/keys"))
            .key(env.k())
            .json(json!({}))
            .send()
    }))
    .await;
    assert_eq!(mints.iter().filter(|r| r.status == 201).count(), 4);
    assert_eq!(
        env.emu.snapshot().agent(&id).unwrap().live_keys().count(),
        5
    );
}
