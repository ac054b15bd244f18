mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn smoke_configmap_crud_and_crd() {
    let sim = sim_with_ns("smoke").await;
    let c = sim.client();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "smoke");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("a".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());
    install_widgets(&c).await;
    let r = post(
        &c,
        "/apis/example.com/v1/namespaces/smoke/widgets",
        widget("smoke", "w1"),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.json()["spec"]["color"], "red");
}

/// A private temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n: u64 = rand::random();
        let p = std::env::temp_dir().join(format!("kube-sim-{tag}-{n:x}"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn state_file_keeps_objects_across_restarts() {
    let dir = TempDir::new("state");
    let path = dir.0.join("state.json");
    let (uid, rv) = {
        let sim = kube_sim::KubeSim::builder()
            .state_file(&path)
            .start()
            .await
            .expect("sim");
        let c = sim.client();
        create_ns(&c, "st").await;
        install_widgets(&c).await;
        let w = post(
            &c,
            "/apis/example.com/v1/namespaces/st/widgets",
            widget("st", "w1"),
        )
        .await;
        assert_eq!(w.code, 201, "{}", w.text);
        sim.shutdown().await;
        let v = w.json();
        (
            v["metadata"]["uid"].as_str().unwrap().to_string(),
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let sim = kube_sim::KubeSim::builder()
        .state_file(&path)
        .start()
        .await
        .expect("restarted sim");
    let c = sim.client();
    // The CRD is served again and the CR kept its identity.
    let w = get(&c, "/apis/example.com/v1/namespaces/st/widgets/w1").await;
    assert_eq!(w.code, 200, "{}", w.text);
    assert_eq!(w.json()["metadata"]["uid"], uid.as_str());
    assert_eq!(w.json()["metadata"]["resourceVersion"], rv.as_str());
    // New writes continue the resourceVersion sequence; old ones are history (410).
    let r = post(
        &c,
        "/api/v1/namespaces/st/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    let new_rv: u64 = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_rv > rv.parse::<u64>().unwrap());
    let (_, mut rx) = stream_lines(
        &c,
        "/api/v1/namespaces/st/configmaps?watch=true&resourceVersion=1",
        None,
    )
    .await;
    let line = next_line(&mut rx, 5.0).await.expect("an event");
    assert!(line.contains("\"code\":410"), "{line}");
}

#[tokio::test]
async fn state_file_that_is_not_one_is_an_error() {
    let dir = TempDir::new("state-neg");
    let path = dir.0.join("state.json");
    std::fs::write(&path, b"{\"kind\": \"Something\"}").unwrap();
    let err = kube_sim::KubeSim::builder()
        .state_file(&path)
        .start()
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read the state file {}: not a kube-sim state file",
            path.display()
        )
    );
}
