//! The Kubernetes adapter against a scripted API server that plays the watch before it answers:
//! each write is delivered to the memory, as the watch would deliver it, before the response
//! goes back — the order that often happens for real (crate `memory`, ordering rules).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::reflector;
use serde_json::{Value, json};

use super::*;
use crate::secret::{DesiredSecret, SecretInputs, SecretRecord, SecretView};

const UID: &str = "0b7c6a52-0000-4000-8000-00000000c1c1";

/// What the scripted server holds, and what its watch said about each write.
#[derive(Default)]
struct Server {
    secret: Option<Value>,
    agent: Value,
    /// For each write, whether its watch event started a reconcile.
    started: Vec<(String, bool)>,
}

fn agent() -> LatticeAgent {
    serde_json::from_value(json!({
        "apiVersion": "agentlattice.io/v1alpha1",
        "kind": "LatticeAgent",
        "metadata": {"name": "bot", "namespace": "ns", "uid": UID, "resourceVersion": "1",
                     "generation": 1},
        "spec": {"capabilities": ["deploy.staging"]},
    }))
    .expect("agent")
}

/// Answers one request; plays the watch of a write first.
fn answer(
    server: &Mutex<Server>,
    memory: &Memory,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Value {
    let mut s = server.lock().unwrap();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (kind, mut stored) = if path.ends_with("/secrets") && method == Method::POST {
        ("create Secret", body)
    } else if path.contains("/secrets/") && method == Method::PATCH {
        let mut doc = s.secret.clone().expect("a Secret to patch");
        json_patch::merge(&mut doc, &body);
        ("patch Secret", doc)
    } else if path.contains("/latticeagents/") && method == Method::PATCH {
        let mut doc = s.agent.clone();
        // As the API server's JSON patch does, a `test` of a missing list against null passes.
        if doc["metadata"].get("finalizers").is_none() {
            doc["metadata"]["finalizers"] = Value::Null;
        }
        let patch: json_patch::Patch = serde_json::from_value(body).expect("JSON patch");
        json_patch::patch(&mut doc, &patch).expect("the patch applies");
        ("add finalizer", doc)
    } else {
        panic!("unexpected request {method} {path}");
    };
    let rv = (s.started.len() + 10).to_string();
    stored["metadata"]["resourceVersion"] = json!(rv);
    // The watch delivers the write before its response.
    let starts = if kind == "add finalizer" {
        let a: LatticeAgent = serde_json::from_value(stored.clone()).expect("agent");
        s.agent = stored.clone();
        memory.resource_event(UID, predicate_hash(&a.metadata, true))
    } else {
        let secret: Secret = serde_json::from_value(stored.clone()).expect("secret");
        s.secret = Some(stored.clone());
        memory.secret_event(UID, fingerprint(&cache_form(secret)))
    };
    s.started.push((kind.to_owned(), starts));
    stored
}

fn cluster(server: Arc<Mutex<Server>>, memory: Arc<Memory>) -> KubeCluster {
    let memory_for_server = Arc::clone(&memory);
    let service = tower::service_fn(move |req: Request<Body>| {
        let server = Arc::clone(&server);
        let memory = Arc::clone(&memory_for_server);
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let reply = answer(&server, &memory, &parts.method, parts.uri.path(), &bytes);
            let bytes = Bytes::from(serde_json::to_vec(&reply).unwrap_or_default());
            Ok::<_, Infallible>(Response::new(Full::new(bytes)))
        }
    });
    let client = kube::Client::new(service, "ns");
    let (agents, _writer) = reflector::store();
    KubeCluster::new(
        client.clone(),
        Arc::new(Publisher::new(client, REPORTER, None)),
        memory,
        agents,
        CompactStore::default(),
    )
}

fn desired(resource: &LatticeAgent, base_url: &str) -> DesiredSecret {
    DesiredSecret::new(
        SecretInputs {
            fields: crate::secret::AGENTLATTICE_FIELDS,
            agent: resource,
            secret_name: "bot-agent-key",
            agent_name: "ns-bot",
            base_url,
        },
        "agent-1",
        SecretRecord {
            agent_id: Some("agent-1".into()),
            ..Default::default()
        },
    )
}

/// Ordering rule "announce before writing": every write of the adapter — the finalizer, a
/// Secret create, a Secret patch — is announced to the memory before it is sent, so its watch
/// event, delivered before the response, starts no reconcile. Announcing after the write fails
/// each of the three.
#[tokio::test]
async fn a_write_is_announced_before_it_is_sent() {
    let memory = Arc::new(Memory::default());
    let server = Arc::new(Mutex::new(Server {
        agent: serde_json::to_value(agent()).expect("json"),
        ..Default::default()
    }));
    let cluster = cluster(Arc::clone(&server), Arc::clone(&memory));
    let resource = agent();
    // The first event of the resource is reconciled; its own finalizer patch is not.
    assert!(memory.resource_event(UID, predicate_hash(&resource.metadata, true)));
    let resource = cluster
        .add_finalizer(&resource)
        .await
        .expect("finalizer added");
    assert!(crate::crd::has_finalizer(&resource.metadata));

    let secret = desired(&resource, "https://one.example").to_secret(b"al_agent_testkey0123456789");
    let created = cluster
        .create_secret(&resource, &secret)
        .await
        .expect("created");
    let serialised = serde_json::to_string(&created).expect("json");
    assert!(
        !serialised.contains("al_agent_testkey"),
        "returned in cache form"
    );

    let SecretView::Present(current) = SecretView::observe(&created, UID) else {
        panic!("the Secret is there");
    };
    let patch = desired(&resource, "https://two.example").merge_patch(&current, None);
    cluster
        .patch_secret(&resource, &current, &patch)
        .await
        .expect("patched");

    let started = server.lock().unwrap().started.clone();
    assert_eq!(
        started,
        [
            ("add finalizer".to_owned(), false),
            ("create Secret".to_owned(), false),
            ("patch Secret".to_owned(), false),
        ],
        "no write of the operator's own starts a reconcile"
    );
    // Each write is remembered as an overlay until the cache catches up.
    assert_eq!(memory.overlays(), 2);
}
