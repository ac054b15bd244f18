//! The Helm chart (`charts/lattice-operator`): lint, render with default and non-default values,
//! values-schema rejection of bad values, the CRDs it ships, its documentation.
//!
//! Helm is Helm 4's own Go code through helm-python-sdk (see tests/chart/helm_driver.py).

#[path = "chart/support.rs"]
mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::*;

/// The lowest Kubernetes version the chart supports (Chart.yaml `kubeVersion`).
const KUBE_VERSION: &str = "v1.29.0";

#[test]
fn lint_is_clean_for_default_and_non_default_values() {
    let value_sets = [
        Value::Null,
        non_default_values(),
        json!({"watchNamespaces": ["payments"], "rbac": {"aggregateToDefaultRoles": false}}),
        json!({"leaderElection": {"enabled": false}, "replicaCount": 1}),
        json!({"serviceKey": {"create": true, "value": dev_key()}}),
    ];
    let requests: Vec<Value> = value_sets
        .iter()
        .map(|v| json!({"op": "lint", "values": v, "strict": true, "kube_version": KUBE_VERSION}))
        .collect();
    for (values, response) in value_sets.iter().zip(helm(&requests)) {
        let report = &response["ok"];
        assert_eq!(report["total_charts_linted"], 1, "{response}");
        // Severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
        let problems: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            problems.is_empty() && report["errors"] == json!([]),
            "helm lint --strict with {values}: {problems:?} {}",
            report["errors"]
        );
    }
}

#[test]
fn default_render_is_the_documented_set_of_objects() {
    let r = render(Value::Null);
    let expected = [
        ("ClusterRole", "", "lattice-system-lattice-operator"),
        ("ClusterRole", "", "lattice-system-lattice-operator-edit"),
        ("ClusterRole", "", "lattice-system-lattice-operator-view"),
        ("ClusterRoleBinding", "", "lattice-system-lattice-operator"),
        ("Deployment", NAMESPACE, "lattice-operator"),
        ("Role", NAMESPACE, "lattice-operator-own-namespace"),
        ("RoleBinding", NAMESPACE, "lattice-operator-own-namespace"),
        ("Service", NAMESPACE, "lattice-operator-metrics"),
        ("ServiceAccount", NAMESPACE, "lattice-operator"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(k, n, m)| (k.to_string(), n.to_string(), m.to_string()))
        .collect();
    assert_eq!(r.inventory(), expected);

    for o in &r.objects {
        let labels = &o.value["metadata"]["labels"];
        for (key, value) in [
            ("app.kubernetes.io/name", "lattice-operator"),
            ("app.kubernetes.io/instance", RELEASE),
            ("app.kubernetes.io/managed-by", "Helm"),
            ("app.kubernetes.io/version", "0.1.0"),
            ("helm.sh/chart", "lattice-operator-0.1.0"),
        ] {
            assert_eq!(labels[key], value, "{} {}: label {key}", o.kind(), o.name());
        }
    }

    let d = r.deployment();
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "lattice-operator", "app.kubernetes.io/instance": RELEASE})
    );
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "lattice-operator");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let c = r.container();
    assert_eq!(
        c["image"], "ghcr.io/lattice-operator/lattice-operator:0.1.0",
        "the tag defaults to the chart's appVersion"
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    let svc = r.get("Service", "lattice-operator-metrics");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let [default, dev, namespaced] = <[Rendered; 3]>::try_from(render_many(&[
        Value::Null,
        json!({"serviceKey": {"create": true, "value": dev_key()}}),
        json!({"watchNamespaces": ["payments", "web"]}),
    ]))
    .expect("three renders");
    let notes = default.notes();
    for needle in [
        // 1. the service key Secret, from a file (never a literal on the command line)
        "kubectl -n lattice-system create secret generic agentlattice-service-key",
        "--from-file=AL_SERVICE_KEY=",
        // 2. the operator is up
        "kubectl -n lattice-system rollout status deployment/lattice-operator",
        // 3. a first LatticeAgent
        "apiVersion: agentlattice.io/v1alpha1",
        "kind: LatticeAgent",
        "kubectl -n default get latticeagents",
        "hello-agent-key",
        // uninstall order
        "delete every LatticeAgent first",
        "never removes finalizers",
        "all namespaces",
    ] {
        assert!(notes.contains(needle), "NOTES lack {needle:?}:\n{notes}");
    }
    assert!(!notes.contains("--from-literal"), "{notes}");

    let notes = dev.notes();
    assert!(notes.contains("WARNING: serviceKey.create=true"), "{notes}");
    assert!(notes.contains("development only"), "{notes}");
    assert!(
        !notes.contains(&dev_key()),
        "the key itself never appears in NOTES"
    );

    let notes = namespaced.notes();
    assert!(notes.contains("the namespaces payments, web"), "{notes}");
    assert!(
        notes.contains("kubectl -n payments get latticeagents"),
        "{notes}"
    );
}

/// The default provisioner's policy is stated: "any capability" loudly (NOTES, and the flag the
/// operator logs a WARN for), a list plainly, and both reach `--default-allowed-capabilities`.
#[test]
fn notes_and_args_state_the_default_provisioner_policy() {
    let [open, listed, none] = <[Rendered; 3]>::try_from(render_many(&[
        Value::Null,
        json!({"defaultProvisioner": {"allowedCapabilities": ["deploy.staging", "read.*"]}}),
        json!({"defaultProvisioner": {"allowedCapabilities": []}}),
    ]))
    .expect("three renders");
    assert!(
        open.notes()
            .contains("WARNING: the default provisioner allows ANY capability"),
        "{}",
        open.notes()
    );
    assert!(
        open.args()
            .contains(&"--default-allowed-capabilities=*".to_owned())
    );
    assert!(!listed.notes().contains("ANY capability"));
    assert!(
        listed
            .notes()
            .contains("The default provisioner allows the capabilities: deploy.staging, read.*")
    );
    assert!(
        listed
            .args()
            .contains(&"--default-allowed-capabilities=deploy.staging,read.*".to_owned())
    );
    assert!(
        none.notes()
            .contains("The default provisioner allows the capabilities: none")
    );
    assert!(
        none.args()
            .contains(&"--default-allowed-capabilities=".to_owned())
    );
    // The values file says so where the setting is.
    let values = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    let at = values
        .find("allowedCapabilities:")
        .expect("defaultProvisioner.allowedCapabilities");
    assert!(values[..at].contains("WARNING: the default, [\"*\"], allows ANY capability"));
}

#[test]
fn non_default_values_reach_the_manifests() {
    let r = render(non_default_values());
    let d = r.deployment();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        d["metadata"]["annotations"]["owner"],
        "platform@example.com"
    );
    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        template["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    let pod = &template["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-credentials"}])
    );
    assert_eq!(pod["priorityClassName"], "platform-critical");
    assert_eq!(pod["terminationGracePeriodSeconds"], 45);
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "platform");
    assert!(
        pod["affinity"]["nodeAffinity"].is_object() && pod["affinity"]["podAntiAffinity"].is_null(),
        "a given affinity replaces the default anti-affinity: {}",
        pod["affinity"]
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "corporate-ca");
    let c = r.container();
    assert_eq!(
        c["image"],
        "registry.example.com/platform/lattice-operator:0.1.0-rc.1"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["env"][0]["name"], "POD_NAME");
    assert_eq!(c["env"][1]["name"], "HTTPS_PROXY");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/corporate-ca");
    assert_eq!(c["ports"][0]["containerPort"], 9090);

    let sa = r.get("ServiceAccount", "lattice-operator");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/x"
    );
    assert_eq!(
        sa["metadata"]["annotations"]["owner"],
        "platform@example.com"
    );

    let svc = r.get("Service", "lattice-operator-metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(svc["metadata"]["annotations"]["example.com/scrape"], "yes");

    let sm = r.get("ServiceMonitor", "lattice-operator");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["metadata"]["labels"]
            .as_object()
            .map(|l| {
                json!({
                    "app.kubernetes.io/name": l["app.kubernetes.io/name"],
                    "app.kubernetes.io/instance": l["app.kubernetes.io/instance"],
                })
            })
            .expect("service labels")
    );
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics", "the Service port's name");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["scrapeTimeout"], "5s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "cluster");

    let pdb = r.get("PodDisruptionBudget", "lattice-operator");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );

    let np = r.get("NetworkPolicy", "lattice-operator");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        np["spec"]["ingress"],
        json!([{
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        }])
    );
    assert_eq!(
        np["spec"]["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}
        ])
    );

    // Every object carries the common labels and annotations.
    for o in &r.objects {
        assert_eq!(
            o.value["metadata"]["labels"]["team"],
            "platform",
            "{}",
            o.name()
        );
        assert_eq!(
            o.value["metadata"]["annotations"]["owner"],
            "platform@example.com",
            "{} {}",
            o.kind(),
            o.name()
        );
    }
}

#[test]
fn image_digest_wins_over_the_tag_and_names_follow_overrides() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let rs = render_many(&[
        json!({"image": {"tag": "9.9.9", "digest": digest}}),
        json!({"fullnameOverride": "al-op"}),
    ]);
    assert_eq!(
        rs[0].container()["image"],
        format!("ghcr.io/lattice-operator/lattice-operator@{digest}")
    );
    let r = &rs[1];
    assert_eq!(r.deployment()["metadata"]["name"], "al-op");
    r.get("ClusterRole", "lattice-system-al-op");
    r.get("Role", "al-op-own-namespace");
    r.get("Service", "al-op-metrics");
    assert!(
        r.args().contains(&"--lease-name=al-op".to_owned()),
        "the Lease follows the full name: {:?}",
        r.args()
    );

    // A release named differently gets the chart name appended.
    let response = helm(&[json!({"op": "render", "name": "team-a", "namespace": "team-a-system"})]);
    let r = Rendered::from_response(&response[0]);
    assert_eq!(
        r.deployment()["metadata"]["name"],
        "team-a-lattice-operator"
    );
    r.get("ClusterRole", "team-a-system-team-a-lattice-operator");
}

#[test]
fn the_service_key_secret_is_created_only_on_request_for_development() {
    let [default, dev] = <[Rendered; 2]>::try_from(render_many(&[
        Value::Null,
        json!({"serviceKey": {"create": true, "value": dev_key(), "field": "key"}}),
    ]))
    .expect("two renders");
    assert!(
        default.all("Secret").is_empty(),
        "{:?}",
        default.inventory()
    );

    let secret = dev.get("Secret", "agentlattice-service-key");
    assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["key"], base64(&dev_key()));
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
        "never labelled as the operator's own Secret"
    );
    assert!(dev.args().contains(&"--service-key-field=key".to_owned()));
}

/// Bad values fail `helm install` (schema validation runs before any template) with the path of
/// the value and the rule it broke.
#[test]
fn the_values_schema_rejects_bad_values_with_clear_messages() {
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"replicas": 2}),
            &["additional properties 'replicas' not allowed"],
        ),
        (
            json!({"image": {"tags": "1"}}),
            &["at '/image'", "additional properties 'tags' not allowed"],
        ),
        (
            json!({"replicaCount": -1}),
            &["at '/replicaCount'", "minimum: got -1, want 0"],
        ),
        (
            json!({"replicaCount": "2"}),
            &["at '/replicaCount'", "got string, want integer"],
        ),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            &[
                "at '/image/pullPolicy'",
                "'Always', 'IfNotPresent', 'Never'",
            ],
        ),
        (
            json!({"image": {"digest": "latest"}}),
            &["at '/image/digest'", "does not match pattern"],
        ),
        (
            json!({"agentlattice": {"url": "http://agentlattice.example.com"}}),
            &["at '/agentlattice/url'", "does not match pattern"],
        ),
        (
            json!({"agentlattice": {"url": "agentlattice.example.com"}}),
            &["at '/agentlattice/url'", "does not match pattern"],
        ),
        (
            json!({"agentlattice": {"rate": 0}}),
            &["at '/agentlattice/rate'", "exclusiveMinimum"],
        ),
        (
            json!({"agentlattice": {"burst": 0}}),
            &["at '/agentlattice/burst'", "minimum"],
        ),
        (
            json!({"agentlattice": {"timeout": "10"}}),
            &["at '/agentlattice/timeout'", "does not match pattern"],
        ),
        (
            json!({"resyncInterval": "10 minutes"}),
            &["at '/resyncInterval'", "does not match pattern"],
        ),
        (
            json!({"leaderElection": {"leaseDuration": "15"}}),
            &[
                "at '/leaderElection/leaseDuration'",
                "does not match pattern",
            ],
        ),
        (
            json!({"leaderElection": {"enabled": "yes"}}),
            &["at '/leaderElection/enabled'", "got string, want boolean"],
        ),
        (
            json!({"serviceKey": {"secretName": "Service_Key"}}),
            &["at '/serviceKey/secretName'", "does not match pattern"],
        ),
        (
            json!({"serviceKey": {"create": true, "value": "not-a-service-key"}}),
            &["at '/serviceKey/value'", "does not match pattern"],
        ),
        (
            json!({"watchNamespaces": "payments"}),
            &["at '/watchNamespaces'", "got string, want array"],
        ),
        (
            json!({"watchNamespaces": ["Payments"]}),
            &["at '/watchNamespaces/0'", "does not match pattern"],
        ),
        (
            json!({"watchNamespaces": ["web", "web"]}),
            &["at '/watchNamespaces'", "items at 0 and 1 are equal"],
        ),
        (
            json!({"concurrency": 0}),
            &["at '/concurrency'", "minimum: got 0, want 1"],
        ),
        (
            json!({"logging": {"format": "xml"}}),
            &["at '/logging/format'", "'json', 'plain'"],
        ),
        (
            json!({"metrics": {"port": 70000}}),
            &["at '/metrics/port'", "maximum: got 70,000, want 65,535"],
        ),
        (
            json!({"nodeSelector": {"zone": 1}}),
            &["at '/nodeSelector/zone'", "got number, want string"],
        ),
        (
            json!({"podDisruptionBudget": {"maxUnavailable": "half"}}),
            &["at '/podDisruptionBudget/maxUnavailable'"],
        ),
        (
            json!({"networkPolicy": {"egress": {"ports": []}}}),
            &["at '/networkPolicy/egress/ports'", "minItems"],
        ),
        (
            json!({"clusterName": 7}),
            &["at '/clusterName'", "got number, want string"],
        ),
    ];
    let mut requests = Vec::new();
    for (values, _) in &cases {
        requests.push(json!({"op": "validate_schema", "values": values}));
        requests.push(render_request(values));
    }
    let responses = helm(&requests);
    for ((values, needles), pair) in cases.iter().zip(responses.chunks(2)) {
        for (what, response) in ["validate_schema", "render (install)"].iter().zip(pair) {
            assert!(
                response.get("error").is_some(),
                "{what} accepted bad values {values}"
            );
            let message = error_message(response);
            assert!(
                message.starts_with("HelmValuesError"),
                "{what} {values}: not a values error: {message}"
            );
            for needle in *needles {
                assert!(
                    message.contains(needle),
                    "{what} {values}: message lacks {needle:?}:\n{message}"
                );
            }
        }
    }
}

/// What the schema cannot say clearly, the templates check (`fail`), before anything is applied.
#[test]
fn inconsistent_values_fail_with_a_clear_message() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"replicaCount": 2, "leaderElection": {"enabled": false}}),
            "replicaCount is 2 but leaderElection.enabled is false",
        ),
        (
            json!({"serviceKey": {"create": true}}),
            "serviceKey.create is true but serviceKey.value is empty",
        ),
        (
            json!({"serviceKey": {"value": dev_key()}}),
            "serviceKey.value is set but serviceKey.create is false",
        ),
        (
            json!({"podDisruptionBudget": {"enabled": true, "minAvailable": 1, "maxUnavailable": 1}}),
            "set minAvailable or maxUnavailable, not both",
        ),
        (
            json!({"podDisruptionBudget": {"enabled": true, "maxUnavailable": null}}),
            "neither minAvailable nor maxUnavailable is set",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            json!({"serviceAccount": {"create": false}}),
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
        (
            json!({"commonLabels": {"app.kubernetes.io/managed-by": "lattice-operator"}}),
            "must not set app.kubernetes.io/managed-by",
        ),
        (
            json!({"podLabels": {"app.kubernetes.io/name": "x"}}),
            "must not set app.kubernetes.io/name",
        ),
    ];
    let requests: Vec<Value> = cases.iter().map(|(v, _)| render_request(v)).collect();
    for ((values, needle), response) in cases.iter().zip(helm(&requests)) {
        assert!(response.get("error").is_some(), "accepted {values}");
        let message = error_message(&response);
        assert!(
            message.contains(needle),
            "{values}: message lacks {needle:?}:\n{message}"
        );
    }
}

#[test]
fn the_chart_crds_are_the_generated_crds() {
    const SYNC: &str = "cargo run -- crd --output charts/lattice-operator/crds";
    let top = workspace().join("crds");
    let chart = chart_dir().join("crds");
    let names = |dir: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&top),
        names(&chart),
        "charts/lattice-operator/crds must hold exactly the files of crds/"
    );
    let generated = lattice_operator::crd::crd_yaml().expect("the CRD serialises");
    for (name, yaml) in lattice_operator::crd::all_crd_yaml().expect("the CRDs serialise") {
        let b = std::fs::read_to_string(chart.join(name)).unwrap_or_default();
        assert!(
            b == yaml,
            "the chart's {name} is not what the code generates; regenerate it with:\n\n    {SYNC}\n"
        );
    }
    for name in names(&top) {
        let a = std::fs::read_to_string(top.join(&name)).expect("read crds/");
        let b = std::fs::read_to_string(chart.join(&name)).expect("read the chart's crds/");
        assert!(
            a == b,
            "charts/lattice-operator/crds/{name} differs from crds/{name}; copy it with:\n\n    {SYNC}\n"
        );
    }
    let b = std::fs::read_to_string(chart.join(lattice_operator::crd::CRD_FILE_NAME))
        .expect("the chart ships the LatticeAgent CRD");
    assert!(
        b == generated,
        "the chart's CRD is not what the code generates; regenerate it with:\n\n    {SYNC}\n"
    );

    // Helm sees it as a CRD of the chart (installed before the templates, never templated).
    let responses = helm(&[json!({"op": "chart"}), render_request(&Value::Null)]);
    let crds = responses[0]["ok"]["crds"].as_array().expect("crds");
    let all = lattice_operator::crd::all_crd_yaml().expect("the CRDs serialise");
    assert_eq!(crds.len(), all.len());
    for (name, yaml) in &all {
        let shipped = crds
            .iter()
            .find(|c| c["name"] == format!("crds/{name}"))
            .unwrap_or_else(|| panic!("the chart ships crds/{name}"));
        assert_eq!(shipped["data"], yaml.as_str());
    }
    assert!(all.iter().any(|(_, y)| y == &generated));
    let r = Rendered::from_response(&responses[1]);
    assert!(r.all("CustomResourceDefinition").is_empty());
}

/// Uninstalling never strips finalizers nor deletes the CRD: the chart has no hooks at all (a
/// pre-delete hook that removed finalizers would leave every agent alive at AgentLattice), its
/// CRD carries `helm.sh/resource-policy: keep`, and the pod knows its own name (its Lease
/// identity).
#[test]
fn uninstall_keeps_the_crd_and_no_hook_touches_finalizers() {
    let value_sets = [
        Value::Null,
        non_default_values(),
        json!({"watchNamespaces": ["payments", "web"]}),
        json!({"serviceKey": {"create": true, "value": dev_key()}}),
    ];
    for r in render_many(&value_sets) {
        for o in &r.objects {
            let annotations = &o.value["metadata"]["annotations"];
            assert!(
                annotations.get("helm.sh/hook").is_none(),
                "{} {} is a Helm hook; the chart must have none",
                o.kind(),
                o.name()
            );
        }
        for (template, text) in &r.files {
            assert!(
                !text.contains("finalizers: null") && !text.contains("finalizers: []"),
                "{template} clears finalizers"
            );
        }
        let env = r.container()["env"].as_array().expect("env").clone();
        assert!(
            env.iter().any(|e| e["name"] == "POD_NAME"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
            "POD_NAME from the downward API: {env:?}"
        );
    }
    let responses = helm(&[json!({"op": "chart"})]);
    let crds = responses[0]["ok"]["crds"].as_array().expect("crds");
    for crd in crds {
        let data = crd["data"].as_str().expect("CRD text");
        let value: Value = lattice_operator::yaml::from_str(data).expect("CRD YAML");
        assert_eq!(
            value["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            crd["name"]
        );
    }
}

/// Every key of values.yaml is documented by a comment right above it and typed by the schema,
/// and the schema has no key values.yaml lacks.
#[test]
fn every_value_is_documented_and_in_the_schema() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    let mut undocumented = Vec::new();
    let mut previous = "";
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_key = !trimmed.starts_with('#')
            && !trimmed.starts_with('-')
            && trimmed
                .split_once(':')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '));
        if is_key && !previous.trim_start().starts_with('#') {
            undocumented.push(format!("values.yaml:{}: {line}", n + 1));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(
        undocumented.is_empty(),
        "values without a comment above them:\n{}",
        undocumented.join("\n")
    );

    let response = &helm(&[json!({"op": "chart"})])[0]["ok"];
    let schema = &response["schema"];
    let defaults = &response["values"];
    let mut in_values = BTreeSet::new();
    let mut in_schema = BTreeSet::new();
    value_paths(defaults, schema, "", &mut in_values);
    schema_paths(schema, "", &mut in_schema);
    in_schema.remove("global");
    assert_eq!(
        in_values.difference(&in_schema).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "values.yaml keys the schema does not type"
    );
    assert_eq!(
        in_schema.difference(&in_values).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "schema keys values.yaml does not document"
    );

    // The schema's durations are the operator's durations.
    for path in [
        "agentlattice.timeout",
        "serviceKey.retryInterval",
        "resyncInterval",
        "leaderElection.leaseDuration",
    ] {
        let mut node = schema;
        for part in path.split('.') {
            node = &node["properties"][part];
        }
        assert_eq!(
            node["pattern"],
            lattice_operator::crd::DURATION_PATTERN,
            "{path}"
        );
    }
}

/// Paths of the keys of `values`, descending only into objects the schema describes key by key
/// (free-form objects such as `resources` or `nodeSelector` are one value).
fn value_paths(values: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(map) = values.as_object() else {
        return;
    };
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.insert(path.clone());
        let child = &schema["properties"][key];
        if child["properties"].is_object() {
            value_paths(value, child, &path, out);
        }
    }
}

fn schema_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    for (key, child) in props {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.insert(path.clone());
        schema_paths(child, &path, out);
    }
}

/// A well-formed (fake) service key.
fn dev_key() -> String {
    format!("al_svc_{}", "Dev0".repeat(10))
}

fn base64(s: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every rendered object decodes as its Kubernetes type and encodes back to the same JSON: a
/// misspelt field (which the API server would drop or reject) or a wrong type fails here.
#[test]
fn rendered_objects_are_well_formed_kubernetes_objects() {
    use k8s_openapi::api::{apps, core, networking, policy, rbac};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
        let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        serde_json::to_value(typed).expect("serialises")
    }
    let value_sets = [
        Value::Null,
        non_default_values(),
        json!({"serviceKey": {"create": true, "value": dev_key()}, "leaderElection": {"enabled": false},
               "podDisruptionBudget": {"enabled": true}, "networkPolicy": {"enabled": true}}),
    ];
    let mut kinds = BTreeSet::new();
    for r in render_many(&value_sets) {
        for o in &r.objects {
            let v = &o.value;
            let back = match o.kind() {
                "Deployment" => round_trip::<apps::v1::Deployment>(v),
                "Service" => round_trip::<core::v1::Service>(v),
                "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(v),
                "Secret" => round_trip::<core::v1::Secret>(v),
                "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(v),
                "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(v),
                "Role" => round_trip::<rbac::v1::Role>(v),
                "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(v),
                "PodDisruptionBudget" => round_trip::<policy::v1::PodDisruptionBudget>(v),
                "NetworkPolicy" => round_trip::<networking::v1::NetworkPolicy>(v),
                // The Prometheus Operator's type; checked field by field in
                // non_default_values_reach_the_manifests.
                "ServiceMonitor" => v.clone(),
                other => panic!("a kind this test does not know: {other}"),
            };
            assert_eq!(
                &back,
                v,
                "{} {} does not survive decoding",
                o.kind(),
                o.name()
            );
            kinds.insert(o.kind().to_owned());
        }
    }
    assert_eq!(kinds.len(), 11, "{kinds:?}");
}
