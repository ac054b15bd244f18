//! Behaviour 9 of the issue (design §7): secrets stay secret.
//!
//! A full lifecycle — registration (with a failed first attempt), rotation, compromised rotation,
//! a deleted Secret, a rejected service key, deletion — runs with every log line of the process
//! (the operator and all its libraries, at TRACE, `log` records included) captured. Then the logs,
//! every Event, every LatticeAgent as it was after each phase (status and conditions included),
//! the Secrets' metadata and the Prometheus metrics text are scanned for `al_agent_` / `al_svc_`
//! and for every key issued in the test, in plain and base64 form. The scanner is shown to find a
//! planted key first, so the test can fail.

mod support;

use std::sync::{Arc, Mutex};

use agentlattice_emulator::{FaultConfig, RouteFaults};
use jiff::SignedDuration;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use lattice_operator::crd::{COMPROMISED_ANNOTATION, LatticeAgent, ROTATE_ANNOTATION};
use lattice_operator::secret::KEY_ID_ANNOTATION;
use support::*;

const SHORT_GRACE: &str = "  rotation: {gracePeriod: 1s, maxGracePeriod: 2s}";

/// Every line written by the global subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Installs the process-wide subscriber: everything at TRACE, in both of the operator's log
    /// formats (plain with spans' fields when they open and close, and JSON as `--log-format json`
    /// writes it), `log` records bridged.
    fn install() -> Capture {
        use tracing_subscriber::fmt::{self, format::FmtSpan};
        use tracing_subscriber::prelude::*;
        let capture = Capture::default();
        let (plain, json) = (Arc::clone(&capture.0), Arc::clone(&capture.0));
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::TRACE)
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
                    .with_writer(move || CaptureWriter(Arc::clone(&plain))),
            )
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || CaptureWriter(Arc::clone(&json))),
            )
            .try_init()
            .expect("the only subscriber of this test binary");
        capture
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// What must never appear, each with a name to report instead of the value.
struct Needles(Vec<(String, String)>);

impl Needles {
    fn new() -> Needles {
        Needles(vec![
            ("the agent key scheme".into(), "al_agent_".into()),
            ("the service key scheme".into(), "al_svc_".into()),
        ])
    }

    /// A key: its full text, its body after the scheme, the body after its public 8-character
    /// prefix, and the base64 form of the full key (as in a Secret's `data`).
    fn add_key(&mut self, label: &str, key: &str) {
        let body = key
            .strip_prefix("al_agent_")
            .or_else(|| key.strip_prefix("al_svc_"))
            .unwrap_or(key);
        let base64 = serde_json::to_string(&ByteString(key.as_bytes().to_vec()))
            .expect("base64")
            .trim_matches('"')
            .to_owned();
        self.0.push((label.to_owned(), key.to_owned()));
        self.0.push((format!("{label} (body)"), body.to_owned()));
        if body.len() > 16 {
            self.0
                .push((format!("{label} (body after prefix)"), body[8..].to_owned()));
        }
        self.0.push((format!("{label} (base64)"), base64));
    }

    /// Where in `haystack` (named `source`) a needle appears: one line per find, with the needle
    /// replaced by its name so the report itself leaks nothing.
    fn scan(&self, source: &str, haystack: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, line) in haystack.lines().enumerate() {
            for (label, needle) in &self.0 {
                if line.contains(needle.as_str()) {
                    let mut shown = line.to_owned();
                    for (l, n) in &self.0 {
                        shown = shown.replace(n.as_str(), &format!("<{l}>"));
                    }
                    let shown: String = shown.chars().take(300).collect();
                    found.push(format!("{source}:{}: {label}: {shown}", i + 1));
                }
            }
        }
        found
    }
}

/// Something unique to this run.
fn uuid_like(seed: &str) -> String {
    format!("{seed}-{:?}", std::time::SystemTime::now())
}

/// The key in a Secret (test-only plaintext).
fn key_of(secret: &Secret) -> String {
    secret_key(secret)
        .expect("the Secret holds a key")
        .expose_secret()
        .to_owned()
}

/// Everything readable about the world's LatticeAgents and Secrets right now, as JSON text.
async fn observable(w: &World) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let agents: Vec<LatticeAgent> = w
        .agents()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    for a in agents {
        out.push((
            format!(
                "LatticeAgent {}",
                a.metadata.name.clone().unwrap_or_default()
            ),
            serde_json::to_string_pretty(&a).expect("json"),
        ));
    }
    let secrets: Vec<Secret> = w
        .secrets()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    for s in secrets {
        // The data is where the key belongs; everything else must not carry it.
        out.push((
            format!(
                "Secret {} metadata",
                s.metadata.name.clone().unwrap_or_default()
            ),
            serde_json::to_string_pretty(&s.metadata).expect("json"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_material_in_logs_events_status_or_metrics() {
    let capture = Capture::install();
    let mut w = World::start("secrecy").await;
    let mut needles = Needles::new();
    needles.add_key("the service key", &w.service_key.clone());
    let mut seen: Vec<(String, String)> = Vec::new();

    w.start_operator(Options {
        resync: SignedDuration::from_secs(1),
        ..Default::default()
    })
    .await;
    // Registration: the first attempt fails (an error message, a Warning event).
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::fail_next(3, 503)));
    let (_, secret) = w.ready(&bot("deploy-bot", SHORT_GRACE)).await;
    needles.add_key("key 1", &key_of(&secret));
    w.wait_event("deploy-bot", "ReconcileError").await;
    w.whoami_with(&secret).await.expect("the key works");
    seen.extend(observable(&w).await);

    // Rotation, then a compromised rotation.
    let mut last = annotations(&secret).get(KEY_ID_ANNOTATION).cloned();
    for (n, (annotation, value)) in [(ROTATE_ANNOTATION, "r1"), (COMPROMISED_ANNOTATION, "c1")]
        .into_iter()
        .enumerate()
    {
        w.annotate("deploy-bot", annotation, value).await;
        let secret = wait_until(&format!("{annotation} handled"), || {
            let last = last.clone();
            let w = &w;
            async move {
                let (_, s) = w.wait_settled("deploy-bot", true).await;
                (annotations(&s).get(KEY_ID_ANNOTATION) != last.as_ref()).then_some(s)
            }
        })
        .await;
        needles.add_key(&format!("key {}", n + 2), &key_of(&secret));
        last = annotations(&secret).get(KEY_ID_ANNOTATION).cloned();
        seen.extend(observable(&w).await);
    }

    // The Secret deleted: the lost-key path mints a fresh key.
    w.secrets()
        .delete("deploy-bot-agent-key", &DeleteParams::default())
        .await
        .expect("Secret deleted");
    let secret = wait_until("a fresh Secret", || {
        let last = last.clone();
        let w = &w;
        async move {
            let (_, s) = w.wait_settled("deploy-bot", true).await;
            (annotations(&s).get(KEY_ID_ANNOTATION) != last.as_ref()).then_some(s)
        }
    })
    .await;
    needles.add_key("key 4", &key_of(&secret));
    seen.extend(observable(&w).await);

    // The service key is rejected, then replaced.
    w.emu
        .revoke_service_key(&w.service_key_id)
        .expect("service key revoked");
    w.wait_condition("deploy-bot", "Synced", "False", Some("ServiceKeyRejected"))
        .await;
    seen.extend(observable(&w).await);
    let fresh = w.emu.create_service_key("replacement");
    needles.add_key("the second service key", &fresh.api_key);
    w.put_service_key(Some(&fresh.api_key)).await;
    w.wait_condition("deploy-bot", "Synced", "True", None).await;
    let metrics_before_delete = w.metrics().encode();

    // Deletion revokes the agent.
    w.delete("deploy-bot").await;
    wait_until("deploy-bot is gone", || {
        let api = w.agents();
        async move {
            api.get_opt("deploy-bot")
                .await
                .ok()
                .and_then(|a| a.is_none().then_some(()))
        }
    })
    .await;
    assert_eq!(w.emu.snapshot().live_agents().count(), 0);
    let metrics = w.metrics().encode();
    w.stop_operator().await;

    // Everything said about it.
    let events: Vec<Event> = Api::<Event>::namespaced(w.client.clone(), &w.ns)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let core_events: Vec<CoreEvent> = Api::<CoreEvent>::namespaced(w.client.clone(), &w.ns)
        .list(&ListParams::default())
        .await
        .expect("core events")
        .items;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    for reason in [
        "Registered",
        "KeyRotated",
        "KeyRevoked",
        "AgentRevoked",
        "ReconcileError",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    seen.push((
        "events".into(),
        serde_json::to_string_pretty(&events).expect("json"),
    ));
    seen.push((
        "core events".into(),
        serde_json::to_string_pretty(&core_events).expect("json"),
    ));
    seen.push(("metrics before deletion".into(), metrics_before_delete));
    seen.push(("metrics".into(), metrics.clone()));
    // A canary through the real pipeline: a TRACE event of a library target is captured.
    let canary = format!("canary-{}", uuid_like(&w.ns));
    tracing::trace!(target: "hyper::proto::h1::canary", "{canary}");
    let logs = capture.text();
    assert!(
        logs.contains(&canary),
        "TRACE events of libraries are captured"
    );
    eprintln!(
        "scanned {} log lines ({} at TRACE), {} events, {} other documents",
        logs.lines().count(),
        logs.lines().filter(|l| l.contains(" TRACE ")).count(),
        events.len() + core_events.len(),
        seen.len()
    );
    seen.push(("logs".into(), logs.clone()));

    // The capture is real: library TRACE lines, the operator's own lines about these keys.
    assert!(logs.lines().filter(|l| l.contains(" TRACE ")).count() > 100);
    assert!(logs.contains("lattice_operator::reconcile::execute"));
    assert!(
        logs.contains("\"target\":\"lattice_operator::reconcile::execute\""),
        "JSON lines too"
    );
    assert!(logs.contains("minted key"));
    assert!(
        logs.contains(last.as_deref().unwrap_or("no key id")),
        "key ids are logged"
    );
    assert!(metrics.contains("lattice_keys_rotated_total"));
    // The scanner finds a planted key in every form, so a leak cannot go unnoticed.
    let planted_key = key_of(&secret);
    let planted = format!(
        "INFO something: key={planted_key}\nDEBUG data={}\nbody {}",
        serde_json::to_string(&ByteString(planted_key.as_bytes().to_vec())).expect("b64"),
        &planted_key["al_agent_".len()..]
    );
    let found = needles.scan("control", &planted);
    assert!(found.iter().any(|f| f.contains("key 4:")), "{found:?}");
    assert!(
        found.iter().any(|f| f.contains("key 4 (base64)")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.contains("key 4 (body)")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|f| f.contains(&planted_key)),
        "the report itself never shows a key"
    );

    let leaks: Vec<String> = seen
        .iter()
        .flat_map(|(source, text)| needles.scan(source, text))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} leaks of key material:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
