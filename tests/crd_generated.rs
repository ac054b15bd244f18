//! `crds/` holds the CRD generated from the Rust types; this test fails when it is stale.

use lattice_operator::crd::{all_crd_yaml, crd_yaml};

const REGENERATE: &str = "cargo run -- crd --output crds";

#[test]
fn crd_yaml_in_repo_is_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let all = all_crd_yaml().expect("the CRDs serialise");
    assert_eq!(all.len(), 3, "LatticeAgent and the two provisioner kinds");
    for (name, generated) in all {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale or missing; regenerate it with:\n\n    {REGENERATE}\n",
            path.display()
        );
    }
}

#[test]
fn crd_is_a_structural_schema() {
    for (name, yaml) in all_crd_yaml().expect("the CRDs serialise") {
        let value: serde_json::Value = lattice_operator::yaml::from_str(&yaml).expect("valid YAML");
        let root = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut problems = Vec::new();
        check_structural(root, "openAPIV3Schema", true, &mut problems);
        assert!(
            problems.is_empty(),
            "{name} is not structural:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn provisioner_crds_have_the_promised_shape() {
    for (name, yaml) in all_crd_yaml()
        .expect("the CRDs serialise")
        .into_iter()
        .skip(1)
    {
        let value: serde_json::Value = lattice_operator::yaml::from_str(&yaml).expect("valid YAML");
        let spec = &value["spec"];
        assert_eq!(spec["group"], "agentlattice.io", "{name}");
        let cluster = name.starts_with("cluster");
        assert_eq!(
            spec["scope"],
            if cluster { "Cluster" } else { "Namespaced" },
            "{name}"
        );
        assert_eq!(
            spec["names"]["shortNames"],
            serde_json::json!([if cluster { "clprov" } else { "lprov" }])
        );
        let version = &spec["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            columns,
            [
                "Ready",
                "Agents",
                "Key age",
                "Suspended",
                "Alter app",
                "Age"
            ]
        );
        let s = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let secret_ref = &s["properties"]["serviceKeySecretRef"];
        assert_eq!(
            secret_ref["properties"].get("namespace").is_some(),
            cluster,
            "{name}: only the cluster kind names the Secret's namespace"
        );
        assert_eq!(
            s["properties"].get("namespaces").is_some(),
            cluster,
            "{name}"
        );
        assert!(
            s["required"]
                .as_array()
                .is_some_and(|r| r.contains(&serde_json::json!("serviceKeySecretRef"))),
            "{name}: the service key Secret is required"
        );
        assert_eq!(s["properties"]["suspend"]["default"], false);
        let caps = &s["properties"]["policy"]["properties"]["capabilities"];
        assert_eq!(caps["x-kubernetes-list-type"], "set");
        assert!(caps["items"]["pattern"].is_string());
    }
}

/// The structural-schema rules of apiextensions v1 that a derive can break: every node has a
/// type (except under `x-kubernetes-int-or-string` / `x-kubernetes-preserve-unknown-fields`), no
/// `$ref`, no `nullable` together with a missing type, `anyOf`/`oneOf`/`allOf`/`not` without
/// types or structure, no `uniqueItems: true`, no `additionalProperties` next to `properties`.
fn check_structural(node: &serde_json::Value, path: &str, _root: bool, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if obj.contains_key("$ref") {
        problems.push(format!("{path}: $ref"));
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields")
        == Some(&serde_json::json!(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&serde_json::json!(true));
    if !preserve && !obj.get("type").is_some_and(|t| t.is_string()) {
        problems.push(format!("{path}: missing or non-string type"));
    }
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        if obj.contains_key(key) {
            problems.push(format!("{path}: {key}"));
        }
    }
    if obj.get("uniqueItems") == Some(&serde_json::json!(true)) {
        problems.push(format!("{path}: uniqueItems"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            check_structural(child, &format!("{path}.{name}"), false, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), false, problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(extra, &format!("{path}{{}}"), false, problems);
    }
}

#[test]
fn crd_has_the_promised_shape() {
    let value: serde_json::Value =
        lattice_operator::yaml::from_str(&crd_yaml().expect("the CRD serialises"))
            .expect("valid YAML");
    let spec = &value["spec"];
    assert_eq!(spec["group"], "agentlattice.io");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["la"]));
    assert_eq!(
        spec["names"]["categories"],
        serde_json::json!(["agentlattice"])
    );
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<(&str, &str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default(),
                c["jsonPath"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status"
            ),
            ("Agent", "string", ".status.agentName"),
            ("Secret", "string", ".status.secretName"),
            ("Key age", "date", ".status.activeKey.createdAt"),
            ("Age", "date", ".metadata.creationTimestamp"),
            (
                "Rotating",
                "string",
                ".status.conditions[?(@.type==\"Rotating\")].reason"
            ),
            ("Next rotation", "string", ".status.nextRotationTime"),
            ("Provisioner", "string", ".status.provisioner"),
        ]
    );
    // Rotating, Next rotation and Provisioner only with `kubectl get -o wide`.
    let wide: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter(|c| c["priority"].as_i64().unwrap_or(0) > 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(wide, ["Rotating", "Next rotation", "Provisioner"]);
    let root = &version["schema"]["openAPIV3Schema"];
    let s = &root["properties"]["spec"]["properties"];
    assert_eq!(s["agentName"]["maxLength"], 63);
    assert_eq!(
        s["agentName"]["pattern"],
        "^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
    );
    assert_eq!(s["capabilities"]["x-kubernetes-list-type"], "set");
    assert_eq!(s["capabilities"]["maxItems"], 64);
    assert_eq!(s["capabilities"]["items"]["maxLength"], 128);
    assert_eq!(s["secretName"]["maxLength"], 253);
    assert_eq!(
        s["secretPolicy"]["enum"],
        serde_json::json!(["Owned", "Adopt"])
    );
    assert_eq!(s["secretPolicy"]["default"], "Owned");
    assert_eq!(
        s["deletionPolicy"]["enum"],
        serde_json::json!(["Revoke", "Retain"])
    );
    assert_eq!(s["deletionPolicy"]["default"], "Revoke");
    assert_eq!(s["suspend"]["default"], false);
    assert_eq!(s["rotation"]["default"], serde_json::json!({}));
    assert_eq!(s["rotation"]["properties"]["gracePeriod"]["default"], "10m");
    assert_eq!(
        s["rotation"]["properties"]["maxGracePeriod"]["default"],
        "24h"
    );
    assert!(s["rotation"]["properties"]["interval"]["pattern"].is_string());
    let rules = root["x-kubernetes-validations"]
        .as_array()
        .expect("CEL rules");
    assert_eq!(rules.len(), 2);
    let provisioner_rule = rules[1]["rule"].as_str().unwrap_or_default();
    assert!(
        provisioner_rule.contains("self.spec.provisionerRef")
            && provisioner_rule.contains("oldSelf.status.agentId"),
        "{provisioner_rule}"
    );
    let rule = rules[0]["rule"].as_str().unwrap_or_default();
    for needle in [
        "oldSelf.status.agentId",
        "self.spec.agentName",
        "self.spec.secretName",
    ] {
        assert!(rule.contains(needle), "{rule}");
    }
    let conditions = &root["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
}
