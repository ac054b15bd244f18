//! The `alter-emulator` binary end to end: what it prints, signed calls against it, logs that never
//! carry a key (even at debug level), a clean SIGTERM that writes the state, a restart from it.

#[path = "api/common.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use common::{Http, s};

struct Running {
    child: Child,
    vars: HashMap<String, String>,
}

async fn start(state_file: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alter-emulator"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--app-key-label",
            "dev",
            "--state-file",
        ])
        .arg(state_file)
        .env("RUST_LOG", "debug")
        .env_remove("ALTER_EMULATOR_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut vars = HashMap::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_owned(), v.to_owned());
            }
            if vars.contains_key("ALTER_APP_KEY") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("start-up lines");
    Running { child, vars }
}

async fn stop(mut r: Running) -> String {
    let pid = r.child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), r.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let mut stderr = String::new();
    r.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_signed_calls_and_restarts_from_its_state() {
    let dir = std::env::temp_dir().join(format!("alter-emu-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");

    let first = start(&state).await;
    for var in [
        "ALTER_BASE_URL",
        "ALTER_EMULATOR_ADMIN_TOKEN",
        "ALTER_APP_ID",
        "ALTER_APP_KEY_ID",
        "ALTER_APP_KEY",
    ] {
        assert!(
            first.vars.contains_key(var),
            "{var} printed: {:?}",
            first.vars.keys()
        );
    }
    let http = Http::new(&first.vars["ALTER_BASE_URL"]);
    let app_key = first.vars["ALTER_APP_KEY"].clone();
    let created = http
        .post("/sdk/agents")
        .key(&app_key)
        .json(json!({"name": "from-binary"}))
        .send()
        .await
        .expect(201);
    let agent_key = s(&created["api_key"]);
    http.get("/sdk/agents/me")
        .key(&agent_key)
        .send()
        .await
        .expect(200);
    http.get("/sdk/agents")
        .key(&app_key)
        .unsigned()
        .send()
        .await
        .expect_error(401, "missing_signature");
    let admin = first.vars["ALTER_EMULATOR_ADMIN_TOKEN"].clone();
    let logs = stop(first).await;
    assert!(
        logs.contains("alter emulator listening") && logs.contains("state saved"),
        "{logs}"
    );
    for secret in [&app_key, &agent_key, &admin] {
        assert!(!logs.contains(secret.as_str()), "a key in the logs");
    }

    // The restart reuses the first app and adds a key to it; everything issued before still works.
    let second = start(&state).await;
    assert_ne!(second.vars["ALTER_APP_KEY"], app_key);
    let http = Http::new(&second.vars["ALTER_BASE_URL"]);
    http.get("/sdk/agents/me")
        .key(&agent_key)
        .send()
        .await
        .expect(200);
    let page = http
        .get("/sdk/agents")
        .key(&second.vars["ALTER_APP_KEY"])
        .send()
        .await
        .expect(200);
    assert_eq!(page["items"][0]["name"], "from-binary");
    assert_eq!(second.vars["ALTER_APP_ID"], created_app(&state));
    stop(second).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn created_app(state: &std::path::Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    s(&v["apps"][0]["id"])
}

#[tokio::test]
async fn bad_arguments_fail_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_alter-emulator"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--faults-file",
            "/nonexistent/faults.json",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/faults.json"));
}
