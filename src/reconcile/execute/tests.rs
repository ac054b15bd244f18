//! The executor on fakes of both APIs: what it hands to the Kubernetes API, when it emits events,
//! and how it handles a Secret the watch does not see.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::plan::{AgentStatus, AgentView, KeyView, RegisterRequest, Settings, condition_reason};
use crate::remote::{Minted, Registration, RemoteResult};
use crate::secret::{API_KEY_FIELD, KEY_ID_ANNOTATION, KEY_SHA256_ANNOTATION};

const UID: &str = "0b7c6a52-0000-4000-8000-00000000e0e0";
const PLAINTEXT: &str = "al_agent_executortestkey0123456789abcdefghij";

fn resource() -> LatticeAgent {
    crate::yaml::from_str(&format!(
        r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata:
  name: bot
  namespace: ns
  uid: {UID}
  generation: 1
  resourceVersion: "7"
  creationTimestamp: "2026-11-23T10:00:00Z"
spec: {{capabilities: [deploy.staging]}}
"#
    ))
    .expect("test resource")
}

fn view(id: &str) -> AgentView {
    AgentView {
        id: id.into(),
        name: "ns-bot".into(),
        status: AgentStatus::Active,
        capabilities: vec!["deploy.staging".into()],
        description: None,
        metadata: [(crate::plan::META_UID.to_owned(), UID.to_owned())].into(),
        created_by: None,
    }
}

/// AgentLattice that registers one agent and nothing else.
struct FakeRemote;

impl Backend for FakeRemote {
    fn register<'a>(
        &'a self,
        _request: &'a RegisterRequest,
        _idempotency_key: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Registration>> {
        Box::pin(async {
            Ok(Registration {
                outcome: RegisterOutcome::Created {
                    agent: view("agent-1"),
                    key: MintedKey {
                        id: "key-1".into(),
                        prefix: "executor".into(),
                        created_at: Timestamp::now(),
                        // Filled in by the executor from the plaintext.
                        sha256: String::new(),
                    },
                },
                key: Some(crate::remote::IssuedKey::new(PLAINTEXT)),
            })
        })
    }
    fn find_agents<'a>(&'a self, _: &'a str) -> BoxFuture<'a, RemoteResult<Vec<AgentView>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn get_agent<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move { Ok(view(id)) })
    }
    fn update_agent<'a>(
        &'a self,
        _: &'a str,
        _: Option<Vec<String>>,
        _: Option<Option<String>>,
    ) -> BoxFuture<'a, RemoteResult<AgentView>> {
        unreachable!("not planned in these tests")
    }
    fn halt_agent<'a>(&'a self, _: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        unreachable!("not planned in these tests")
    }
    fn resume_agent<'a>(&'a self, _: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        unreachable!("not planned in these tests")
    }
    fn revoke_agent<'a>(&'a self, _: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        unreachable!("not planned in these tests")
    }
    fn mint_key<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, RemoteResult<Minted>> {
        unreachable!("not planned in these tests")
    }
    fn list_keys<'a>(&'a self, _: &'a str) -> BoxFuture<'a, RemoteResult<Vec<KeyView>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn deprecate_key<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, RemoteResult<KeyView>> {
        unreachable!("not planned in these tests")
    }
    fn revoke_key<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, RemoteResult<KeyView>> {
        unreachable!("not planned in these tests")
    }
}

/// The Kubernetes API: a log of what happened, and optionally a foreign Secret in the way.
#[derive(Default)]
struct FakeCluster {
    log: Mutex<Vec<String>>,
    created: Mutex<Option<Secret>>,
    foreign: Option<Secret>,
}

impl FakeCluster {
    fn log(&self, entry: String) {
        self.log.lock().expect("log").push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl Cluster for FakeCluster {
    fn create_secret<'a>(
        &'a self,
        _: &'a LatticeAgent,
        secret: &'a Secret,
    ) -> BoxFuture<'a, kube::Result<Secret>> {
        Box::pin(async move {
            if self.foreign.is_some() {
                self.log("create Secret: AlreadyExists".into());
                let status: kube::core::Status = serde_json::from_value(serde_json::json!({
                    "status": "Failure", "code": 409, "reason": "AlreadyExists",
                    "message": "secrets \"bot-agent-key\" already exists",
                }))
                .expect("status");
                return Err(kube::Error::Api(Box::new(status)));
            }
            self.log("create Secret".into());
            let mut stored = secret.clone();
            stored.metadata.resource_version = Some("1".into());
            *self.created.lock().expect("created") = Some(stored.clone());
            Ok(crate::secret::cache_form(stored))
        })
    }
    fn patch_secret<'a>(
        &'a self,
        _: &'a LatticeAgent,
        _: &'a crate::secret::ObservedSecret,
        _: &'a serde_json::Value,
    ) -> BoxFuture<'a, kube::Result<Secret>> {
        unreachable!("not planned in these tests")
    }
    fn get_secret<'a>(
        &'a self,
        _: &'a LatticeAgent,
        _: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        Box::pin(async move {
            self.log("get Secret".into());
            Ok(self.foreign.clone().map(crate::secret::cache_form))
        })
    }
    fn replace_status<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        Box::pin(async move {
            self.log("replace status".into());
            let mut written = resource.clone();
            written.metadata.resource_version = Some("8".into());
            Ok(written)
        })
    }
    fn remove_finalizer<'a>(
        &'a self,
        _: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        unreachable!("not planned in these tests")
    }
    fn restart_workload<'a>(
        &'a self,
        _: &'a LatticeAgent,
        _: crate::plan::WorkloadKind,
        _: &'a str,
        _: &'a str,
        _: Timestamp,
    ) -> BoxFuture<'a, kube::Result<()>> {
        unreachable!("not planned in these tests")
    }
    fn publish<'a>(
        &'a self,
        _: &'a LatticeAgent,
        event: &'a plan::Event,
        _: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.log(format!("event {}", event.reason)) })
    }
}

fn observed() -> Observed {
    let settings = Settings {
        base_url: "http://agentlattice.test".into(),
        ..Settings::default()
    };
    Observed::new(
        Timestamp::now(),
        settings,
        resource(),
        SecretView::default(),
    )
}

#[tokio::test]
async fn a_registration_delivers_its_key_once_and_reports_it_after_the_write() {
    let cluster = FakeCluster::default();
    let metrics = Metrics::new();
    let executor = Executor {
        remote: &FakeRemote,
        cluster: &cluster,
        metrics: &metrics,
        failpoints: None,
    };
    let report = executor.run(observed()).await.expect("reconciled");
    assert_eq!(report.effects, ["Register", "WriteSecret", "WriteStatus"]);
    // The Registered event follows the Secret write it reports.
    assert_eq!(
        cluster.entries(),
        ["create Secret", "event Registered", "replace status"]
    );
    let created = cluster
        .created
        .lock()
        .expect("created")
        .clone()
        .expect("a Secret was created");
    let data = created.data.clone().unwrap_or_default();
    assert_eq!(data[API_KEY_FIELD].0, PLAINTEXT.as_bytes());
    let ann = created.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann[KEY_ID_ANNOTATION], "key-1");
    assert_eq!(
        ann[KEY_SHA256_ANNOTATION],
        key_digest(PLAINTEXT.as_bytes()),
        "the record describes the key it holds"
    );
    // What the caller keeps holds no key.
    let remembered = format!("{:?}", report.observed);
    assert!(!remembered.contains(PLAINTEXT), "{remembered}");
    let status = report.observed.resource.status.expect("status");
    assert_eq!(status.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(condition_reason(&status, plan::READY), Some("AgentReady"));
}

#[tokio::test]
async fn a_secret_found_on_create_is_read_and_never_overwritten() {
    let foreign: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bot-agent-key", "namespace": "ns", "resourceVersion": "3"},
        "data": {"password": "aHVudGVyMg=="},
    }))
    .expect("secret");
    let cluster = FakeCluster {
        foreign: Some(foreign),
        ..Default::default()
    };
    let metrics = Metrics::new();
    let executor = Executor {
        remote: &FakeRemote,
        cluster: &cluster,
        metrics: &metrics,
        failpoints: None,
    };
    let report = executor.run(observed()).await.expect("reconciled");
    assert_eq!(report.effects, ["Register", "WriteSecret", "WriteStatus"]);
    assert_eq!(
        cluster.entries(),
        [
            "create Secret: AlreadyExists",
            "get Secret",
            "replace status",
            "event SecretConflict"
        ]
    );
    assert!(cluster.created.lock().expect("created").is_none());
    let status = report.observed.resource.status.expect("status");
    assert_eq!(
        condition_reason(&status, plan::READY),
        Some("SecretConflict")
    );
    assert_eq!(
        status.agent_id, None,
        "status names no agent without its key"
    );
}

#[tokio::test]
async fn a_fail_point_stops_the_reconcile_where_it_fires() {
    let cluster = FakeCluster::default();
    let metrics = Metrics::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let failpoints: FailPoints = Arc::new(move |point: &str| {
        log.lock().expect("log").push(point.to_owned());
        point == "after:Register"
    });
    let executor = Executor {
        remote: &FakeRemote,
        cluster: &cluster,
        metrics: &metrics,
        failpoints: Some(&failpoints),
    };
    let run = tokio::time::timeout(Duration::from_millis(200), executor.run(observed())).await;
    assert!(run.is_err(), "a crashed reconcile never returns");
    assert_eq!(
        *seen.lock().expect("log"),
        ["before:Register", "after:Register"]
    );
    assert!(
        cluster.entries().is_empty(),
        "nothing after the crash point"
    );
}
