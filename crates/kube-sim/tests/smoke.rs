mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

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
