//! kube-rs 5 end to end against the simulator: watcher (410 re-list, streaming lists, metadata
//! watch), a Controller with the finalizer helper, the event Recorder, server-side apply of a
//! CRD then its CRs through /status and /scale, and discovery (legacy and aggregated).

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::discovery::Discovery;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher::{self, Event};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::*;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "e2e.kube-sim.dev",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    shortname = "gd",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#
)]
#[kube(scale(
    spec_replicas_path = ".spec.replicas",
    status_replicas_path = ".status.replicas"
))]
pub struct GadgetSpec {
    pub replicas: i32,
    #[serde(default)]
    pub note: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct GadgetStatus {
    pub replicas: i32,
    #[serde(default)]
    pub ready: bool,
}

fn cm(name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.data = Some([("k".to_string(), "v".to_string())].into());
    c
}

async fn install_gadgets(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ssa = PatchParams::apply("e2e").force();
    crds.patch(
        "gadgets.e2e.kube-sim.dev",
        &ssa,
        &Patch::Apply(Gadget::crd()),
    )
    .await
    .expect("CRD applied");
    let established = await_condition(
        crds,
        "gadgets.e2e.kube-sim.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("established in time")
        .expect("watch ok");
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let sim = sim_with_ns("e2e-410").await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "e2e-410");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut stream = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    let mut saw_b_after_relist = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut saw_410 = false;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                // The watcher surfaces the ERROR event, then re-lists.
                assert_eq!(s.reason, "Expired");
                saw_410 = true;
                continue;
            }
            Err(e) => panic!("unexpected watch error {e}"),
        };
        match ev {
            Event::Init => inits += 1,
            Event::InitDone if inits == 1 => {
                // Expire the history and drop the watch: the re-watch from the last RV gets 410
                // as an ERROR event and the watcher must re-list.
                cms.create(&PostParams::default(), &cm("b")).await.unwrap();
                sim.expire_watches();
            }
            Event::InitApply(o) if inits == 2 && o.name_any() == "b" => {
                saw_b_after_relist = true;
            }
            Event::InitDone if inits == 2 => break,
            _ => {}
        }
    }
    assert!(saw_410, "the re-watch got 410 Expired as an ERROR event");
    assert_eq!(inits, 2, "the watcher re-listed once");
    assert!(
        saw_b_after_relist,
        "the re-list saw the object created meanwhile"
    );
}

#[tokio::test]
async fn streaming_list_initial_events_end() {
    let sim = sim_with_ns("e2e-stream").await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "e2e-stream");
    for n in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    let cfg = watcher::Config::default().streaming_lists();
    let mut stream = watcher::watcher(cms.clone(), cfg).boxed();
    let mut names = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .expect("InitDone arrives (initial-events-end bookmark)")
            .unwrap()
            .unwrap();
        match ev {
            Event::InitApply(o) => names.push(o.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, vec!["a", "b", "c"]);
    cms.create(&PostParams::default(), &cm("d")).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, Event::Apply(o) if o.name_any() == "d"));
    // The request the watcher sent is the streaming-list watch.
    assert!(sim.audit_log().iter().any(|r| r.verb == "watch"));
}

#[tokio::test]
async fn metadata_watch_and_partial_object_metadata() {
    let sim = sim_with_ns("e2e-meta").await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "e2e-meta");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let m = cms.get_metadata("a").await.unwrap();
    assert_eq!(m.name_any(), "a");
    let list = cms.list_metadata(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let patched = cms
        .patch_metadata(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.labels().get("x").map(String::as_str), Some("y"));
    let meta_api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(sim.client(), "e2e-meta");
    let mut stream = watcher::watcher(meta_api, watcher::Config::default()).boxed();
    let mut got: Option<PartialObjectMeta<ConfigMap>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, stream.next()).await {
        match ev.unwrap() {
            Event::InitDone => {
                cms.create(&PostParams::default(), &cm("b")).await.unwrap();
            }
            Event::Apply(o) => {
                got = Some(o);
                break;
            }
            _ => {}
        }
    }
    let got = got.expect("metadata event");
    assert_eq!(got.name_any(), "b");
    assert!(got.metadata.resource_version.is_some());
}

#[derive(Clone)]
struct Ctx {
    api: Api<Gadget>,
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct ReconcileError(String);

async fn reconcile(obj: Arc<Gadget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let log = ctx.log.clone();
    finalizer(&ctx.api, "e2e.kube-sim.dev/cleanup", obj, |ev| async move {
        match ev {
            FinalizerEvent::Apply(o) => {
                log.lock().push(format!("apply {}", o.name_any()));
                Ok::<_, ReconcileError>(Action::await_change())
            }
            FinalizerEvent::Cleanup(o) => {
                log.lock().push(format!("cleanup {}", o.name_any()));
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError(e.to_string()))
}

fn error_policy(_: Arc<Gadget>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_with_finalizer_create_to_delete() {
    let sim = sim_with_ns("e2e-ctrl").await;
    let client = sim.client();
    install_gadgets(&client).await;
    let api: Api<Gadget> = Api::namespaced(client.clone(), "e2e-ctrl");
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        log: Arc::new(Mutex::new(Vec::new())),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let g = Gadget::new(
        "g1",
        GadgetSpec {
            replicas: 1,
            note: String::new(),
        },
    );
    api.create(&PostParams::default(), &g).await.unwrap();
    let ok = eventually(|| async {
        api.get("g1")
            .await
            .map(|g| {
                g.finalizers()
                    .contains(&"e2e.kube-sim.dev/cleanup".to_string())
            })
            .unwrap_or(false)
            && ctx.log.lock().iter().any(|l| l == "apply g1")
    })
    .await;
    assert!(
        ok,
        "finalizer added and Apply reconciled: {:?}",
        ctx.log.lock()
    );

    let deleted = api.delete("g1", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_left(),
        "an object with finalizers is returned, not a Status"
    );
    let gone = eventually(|| async { api.get_opt("g1").await.unwrap().is_none() }).await;
    assert!(gone, "cleanup removed the finalizer and the object went");
    assert!(ctx.log.lock().iter().any(|l| l == "cleanup g1"));
    handle.abort();
}

#[tokio::test]
async fn event_recorder_create_then_series_patch() {
    let sim = sim_with_ns("e2e-events").await;
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "e2e-events");
    let c = cms
        .create(&PostParams::default(), &cm("subject"))
        .await
        .unwrap();
    let reference: ObjectReference = c.object_ref(&());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "e2e-controller".into(),
            instance: Some("e2e-1".into()),
        },
    );
    let ev = KEvent {
        type_: EventType::Normal,
        reason: "Registered".into(),
        note: Some("hello".into()),
        action: "Register".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "e2e-events");
    let list = events.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(e.reason.as_deref(), Some("Registered"));
    // The same object through core/v1.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "e2e-events");
    let list = core.list(&Default::default()).await.unwrap();
    assert_eq!(list.items[0].message.as_deref(), Some("hello"));
    assert_eq!(
        list.items[0].involved_object.name.as_deref(),
        Some("subject")
    );
}

#[tokio::test]
async fn ssa_crd_then_status_and_scale() {
    let sim = sim_with_ns("e2e-ssa").await;
    let client = sim.client();
    install_gadgets(&client).await;
    let api: Api<Gadget> = Api::namespaced(client.clone(), "e2e-ssa");
    let ssa = PatchParams::apply("e2e-ssa");
    let g = api
        .patch(
            "g",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "e2e.kube-sim.dev/v1", "kind": "Gadget",
                "metadata": {"name": "g"},
                "spec": {"replicas": 1},
            })),
        )
        .await
        .unwrap();
    assert_eq!(g.metadata.generation, Some(1));
    // Applying the same thing again is a no-op: same resourceVersion.
    let again = api
        .patch(
            "g",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "e2e.kube-sim.dev/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(again.resource_version(), g.resource_version());
    // Status through /status: generation unchanged, spec untouched.
    let st = api
        .patch_status(
            "g",
            &PatchParams::apply("e2e-status"),
            &Patch::Apply(json!({
                "apiVersion": "e2e.kube-sim.dev/v1", "kind": "Gadget",
                "metadata": {"name": "g"},
                "status": {"replicas": 1, "ready": true},
            })),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().map(|s| s.ready), Some(true));
    assert_eq!(st.metadata.generation, Some(1));
    // Scale.
    let scale = api.get_scale("g").await.unwrap();
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let scaled = api
        .patch_scale(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(scaled.status.as_ref().map(|s| s.replicas), Some(1));
    let g = api.get("g").await.unwrap();
    assert_eq!(g.spec.replicas, 3);
    assert_eq!(g.metadata.generation, Some(2));
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let sim = sim_with_ns("e2e-disc").await;
    let client = sim.client();
    install_gadgets(&client).await;
    for aggregated in [false, true] {
        let d = Discovery::new(client.clone());
        let d = if aggregated {
            d.run_aggregated().await.unwrap()
        } else {
            d.run().await.unwrap()
        };
        assert!(d.has_group("e2e.kube-sim.dev"), "aggregated={aggregated}");
        assert!(d.has_group("apps"));
        let (ar, caps) = d
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| ar.kind == "Gadget")
            .expect("Gadget discovered");
        assert_eq!(ar.plural, "gadgets");
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "gadgets/scale" || s.plural == "scale")
        );
    }
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "32");
}
