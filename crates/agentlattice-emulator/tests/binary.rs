//! The `agentlattice-emulator` binary: what it prints, that its logs never carry a key (even at
//! debug level), graceful SIGTERM with the state written, and a restart from the state file.

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlattice-emulator"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--service-key-label",
            "dev",
            "--state-file",
        ])
        .arg(state_file)
        .env("RUST_LOG", "debug")
        .env_remove("AL_EMULATOR_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut vars = HashMap::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_owned(), v.to_owned());
            }
            if vars.contains_key("AL_SERVICE_KEY") {
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
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
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
async fn binary_prints_credentials_once_logs_none_and_persists() {
    let dir = std::env::temp_dir().join(format!("al-emu-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");

    let first = start(&file).await;
    let url = first.vars["AL_EMULATOR_URL"].clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let admin = first.vars["AL_EMULATOR_ADMIN_TOKEN"].clone();
    let svc = first.vars["AL_SERVICE_KEY"].clone();
    assert!(svc.starts_with("al_svc_"));
    let http = Http::new(url);
    let reg = http
        .post("/api/agents/register")
        .bearer(&svc)
        .json(&json!({"name": "from-binary", "capabilities": ["x"]}))
        .send()
        .await
        .expect(201);
    let agent_key = s(&reg["api_key"]);
    http.get("/api/v1/whoami")
        .bearer(&agent_key)
        .send()
        .await
        .expect(200);
    http.get("/api/agents")
        .bearer("al_svc_wrongwrongwrong")
        .send()
        .await
        .expect(401);
    http.get("/_admin/state")
        .bearer(&admin)
        .send()
        .await
        .expect(200);
    let stderr = stop(first).await;
    assert!(stderr.contains("shutting down"), "{stderr}");
    for secret in [&svc, &agent_key, &admin] {
        assert!(
            !stderr.contains(secret.as_str()),
            "a credential in the logs:\n{stderr}"
        );
    }
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("from-binary"));
    assert!(!saved.contains(&svc) && !saved.contains(&agent_key));

    // Restart: the old service key and agent key still work; a new service key is printed.
    let second = start(&file).await;
    assert_ne!(second.vars["AL_SERVICE_KEY"], svc);
    let http = Http::new(second.vars["AL_EMULATOR_URL"].clone());
    let list = http
        .get("/api/agents?name=from-binary")
        .bearer(&svc)
        .send()
        .await
        .expect(200);
    assert_eq!(list["items"][0]["id"], reg["id"]);
    http.get("/api/v1/whoami")
        .bearer(&agent_key)
        .send()
        .await
        .expect(200);
    stop(second).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
