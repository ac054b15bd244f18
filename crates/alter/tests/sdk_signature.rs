//! A known-answer check of the client's signing against the published SDK: the client's requests
//! are recorded by a local server, then `alter-sdk==0.29.0`'s own signing code recomputes each
//! signature from the same timestamp, nonce, method, target and body
//! (`tests/python/check_signatures.py`).
//!
//! The interpreter is `$LATTICE_PYTHON`, else `<workspace>/.venv/bin/python` (created by
//! `scripts/setup-python`). Without one this test fails — it is never skipped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alter::{
    AppClient, ClientConfig, CreateAgent, ListAgentsQuery, RetryPolicy, Scopes, UpdateAgent,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};

const APP_KEY: &str = "alter_rk_abcdefghijklmnopqrstuv_iwpykn";

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with alter-sdk: set LATTICE_PYTHON or run `scripts/setup-python` (creates {})",
        venv.display()
    );
    venv
}

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn record(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    seen.lock().unwrap().push(serde_json::json!({
        "method": method.as_str(),
        "target": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "timestamp": h("x-alter-timestamp").parse::<i64>().unwrap_or(-1),
        "nonce": h("x-alter-nonce"),
        "content_sha256": h("x-alter-content-sha256"),
        "signature": h("x-alter-signature"),
        "constraints": h("x-alter-scope-constraints"),
        "body_hex": body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    }));
    "{}"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_computes_the_same_signatures() {
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let config = ClientConfig::new(format!("http://{addr}")).retry(RetryPolicy::no_retries());
    let c = AppClient::new(&config, APP_KEY.parse().unwrap()).unwrap();
    // The server answers `{}` to everything: the answers do not decode, the requests are what
    // this test is about.
    let _ = c
        .list_agents(
            &ListAgentsQuery::new()
                .limit(7)
                .search("nightly sync/é*~+")
                .name("a&b=c"),
        )
        .await;
    let _ = c.get_agent("id with space:and/slash").await;
    let _ = c
        .create_agent(
            &CreateAgent::new("nightly-sync")
                .display_name("Nightly Sync — EU ✓")
                .scope("slack", ["channels:read", "chat:write"])
                .metadata("k8s.uid", "4f1c2a9e"),
            Some(&alter::IdempotencyKey::new("op/4f1c2a9e/").unwrap()),
        )
        .await;
    let scopes = Scopes::from([("github".to_owned(), vec!["repo".to_owned()])]);
    let _ = c
        .update_agent(
            "a1",
            &UpdateAgent::new().scopes(scopes, 4).grace_seconds(60),
        )
        .await;
    let _ = c.suspend_agent("a1").await;
    let _ = c.mint_key("a1").await;
    let _ = c.revoke_key("a1", "k1", true).await;
    let _ = c.delete_agent("a1").await;
    let _ = c.resolve_identity().await;
    let _ = c
        .with_scope_constraints(&["dashboard_agents:read", "dashboard_audit:read"])
        .unwrap()
        .agent_audit("a1", 5, 10)
        .await;
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 10);

    let file = std::env::temp_dir().join(format!("alter-signatures-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        serde_json::json!({"api_key": APP_KEY, "requests": requests}).to_string(),
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_signatures.py");
    let python = python();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&file)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the check finishes within a minute")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}); run `scripts/setup-python`",
            python.display()
        )
    });
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_signatures.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["checked"], 10);
}
