//! The chart's security: every pod it renders passes the Kubernetes "restricted" Pod Security
//! Standard, and its RBAC is exactly the documented least-privilege rules, each commented, in
//! both watch modes (cluster-wide: a ClusterRole; a namespace list: Roles, and no cluster-wide
//! right to any namespaced resource).

#[path = "chart/support.rs"]
mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::*;

// ----- Pod Security Standards --------------------------------------------------------------------

/// The checks of the "restricted" Pod Security Standard (which includes "baseline"), as
/// pod-security-admission applies them at the `latest` version
/// (https://kubernetes.io/docs/concepts/security/pod-security-standards/). Returns one line per
/// violation, naming the field.
fn restricted_violations(pod_metadata: &Value, pod: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let psc = &pod["securityContext"];
    let containers: Vec<(String, &Value)> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            pod[field]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |c| (format!("{field}[{}]", c["name"].as_str().unwrap_or("?")), c))
        })
        .collect();
    let is_true = |x: &Value| x.as_bool() == Some(true);

    // baseline: host namespaces, host processes
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&pod[field]) {
            v.push(format!("baseline: spec.{field} must be unset or false"));
        }
    }
    if is_true(&psc["windowsOptions"]["hostProcess"]) {
        v.push("baseline: spec.securityContext.windowsOptions.hostProcess".into());
    }
    // baseline: hostPath volumes; restricted: only these volume types
    const ALLOWED_VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let types: Vec<&String> = volume
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for t in types {
            if t == "hostPath" {
                v.push(format!("baseline: volume {name} is a hostPath"));
            } else if !ALLOWED_VOLUMES.contains(&t.as_str()) {
                v.push(format!("restricted: volume {name} has type {t}"));
            }
        }
    }
    // baseline: sysctls outside the safe set
    const SAFE_SYSCTLS: [&str; 10] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    for sysctl in psc["sysctls"].as_array().into_iter().flatten() {
        let name = sysctl["name"].as_str().unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            v.push(format!("baseline: sysctl {name} is not in the safe set"));
        }
    }
    // baseline: AppArmor (field and the older annotations), SELinux, seccomp not Unconfined
    let apparmor_ok = |p: &Value| {
        p.is_null() || matches!(p["type"].as_str(), Some("RuntimeDefault" | "Localhost"))
    };
    if !apparmor_ok(&psc["appArmorProfile"]) {
        v.push("baseline: spec.securityContext.appArmorProfile.type".into());
    }
    for (key, value) in pod_metadata["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            let value = value.as_str().unwrap_or_default();
            if value != "runtime/default" && !value.starts_with("localhost/") {
                v.push(format!("baseline: annotation {key}={value}"));
            }
        }
    }
    let selinux_violations = |se: &Value, at: &str, v: &mut Vec<String>| {
        if let Some(t) = se["type"].as_str()
            && ![
                "",
                "container_t",
                "container_init_t",
                "container_kvm_t",
                "container_engine_t",
            ]
            .contains(&t)
        {
            v.push(format!("baseline: {at}.seLinuxOptions.type {t}"));
        }
        for field in ["user", "role"] {
            if se[field].as_str().is_some_and(|s| !s.is_empty()) {
                v.push(format!(
                    "baseline: {at}.seLinuxOptions.{field} must be unset"
                ));
            }
        }
    };
    selinux_violations(&psc["seLinuxOptions"], "spec.securityContext", &mut v);
    let seccomp_type = |sc: &Value| sc["seccompProfile"]["type"].as_str().map(str::to_owned);
    let restricted_seccomp =
        |t: &Option<String>| matches!(t.as_deref(), Some("RuntimeDefault" | "Localhost"));
    let pod_seccomp = seccomp_type(psc);
    if pod_seccomp.as_deref() == Some("Unconfined") {
        v.push("baseline: spec.securityContext.seccompProfile.type Unconfined".into());
    }
    // restricted: runAsUser not 0 at pod level
    if psc["runAsUser"].as_i64() == Some(0) {
        v.push("restricted: spec.securityContext.runAsUser is 0".into());
    }
    let pod_non_root = &psc["runAsNonRoot"];
    if pod_non_root.as_bool() == Some(false) {
        v.push("restricted: spec.securityContext.runAsNonRoot is false".into());
    }

    const BASELINE_CAPS: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    for (at, c) in &containers {
        let sc = &c["securityContext"];
        if is_true(&sc["privileged"]) {
            v.push(format!("baseline: {at}.securityContext.privileged"));
        }
        if is_true(&sc["windowsOptions"]["hostProcess"]) {
            v.push(format!(
                "baseline: {at}.securityContext.windowsOptions.hostProcess"
            ));
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().unwrap_or(0) != 0 {
                v.push(format!("baseline: {at} uses hostPort {}", port["hostPort"]));
            }
        }
        if sc["procMount"].as_str().is_some_and(|p| p != "Default") {
            v.push(format!("baseline: {at}.securityContext.procMount"));
        }
        if !apparmor_ok(&sc["appArmorProfile"]) {
            v.push(format!(
                "baseline: {at}.securityContext.appArmorProfile.type"
            ));
        }
        selinux_violations(
            &sc["seLinuxOptions"],
            &format!("{at}.securityContext"),
            &mut v,
        );
        let caps = &sc["capabilities"];
        let added: Vec<&str> = caps["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for cap in &added {
            if !BASELINE_CAPS.contains(cap) {
                v.push(format!("baseline: {at} adds capability {cap}"));
            }
            if *cap != "NET_BIND_SERVICE" {
                v.push(format!("restricted: {at} adds capability {cap}"));
            }
        }
        // restricted
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            v.push(format!(
                "restricted: {at}.securityContext.allowPrivilegeEscalation must be false"
            ));
        }
        let drops_all = caps["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL");
        if !drops_all {
            v.push(format!(
                "restricted: {at}.securityContext.capabilities.drop must include ALL"
            ));
        }
        match sc["runAsNonRoot"].as_bool() {
            Some(false) => v.push(format!(
                "restricted: {at}.securityContext.runAsNonRoot is false"
            )),
            Some(true) => {}
            None if pod_non_root.as_bool() == Some(true) => {}
            None => v.push(format!(
                "restricted: runAsNonRoot must be true on the pod or on {at}"
            )),
        }
        if sc["runAsUser"].as_i64() == Some(0) {
            v.push(format!("restricted: {at}.securityContext.runAsUser is 0"));
        }
        let c_seccomp = seccomp_type(sc);
        if c_seccomp.as_deref() == Some("Unconfined") {
            v.push(format!(
                "baseline: {at}.securityContext.seccompProfile.type Unconfined"
            ));
        }
        let effective = c_seccomp.or_else(|| pod_seccomp.clone());
        if !restricted_seccomp(&effective) {
            v.push(format!(
                "restricted: seccompProfile.type must be RuntimeDefault or Localhost on the pod or on {at}"
            ));
        }
    }
    v
}

/// Every pod template a render contains, as `(owner, pod metadata, pod spec)`.
fn pod_templates(r: &Rendered) -> Vec<(String, &Value, &Value)> {
    let mut pods = Vec::new();
    for o in &r.objects {
        match o.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => pods.push((
                format!("{} {}", o.kind(), o.name()),
                &o.value["spec"]["template"]["metadata"],
                &o.value["spec"]["template"]["spec"],
            )),
            "CronJob" => pods.push((
                format!("CronJob {}", o.name()),
                &o.value["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
                &o.value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            )),
            "Pod" => pods.push((
                format!("Pod {}", o.name()),
                &o.value["metadata"],
                &o.value["spec"],
            )),
            _ => {}
        }
    }
    pods
}

#[test]
fn every_rendered_pod_passes_the_restricted_pod_security_standard() {
    let value_sets = [
        Value::Null,
        non_default_values(),
        json!({"watchNamespaces": ["payments"]}),
        json!({"leaderElection": {"enabled": false}}),
        json!({"serviceKey": {"create": true, "value": format!("al_svc_{}", "x".repeat(40))}}),
    ];
    for (values, r) in value_sets.iter().zip(render_many(&value_sets)) {
        let pods = pod_templates(&r);
        assert_eq!(pods.len(), 1, "the chart renders one pod template");
        for (owner, meta, pod) in pods {
            let violations = restricted_violations(meta, pod);
            assert!(
                violations.is_empty(),
                "{owner} with {values} violates the restricted Pod Security Standard:\n{}",
                violations.join("\n")
            );
            // Beyond the standard: the operator writes no file, and runs as a fixed non-root
            // user of the image.
            for c in pod["containers"].as_array().expect("containers") {
                assert_eq!(
                    c["securityContext"]["readOnlyRootFilesystem"], true,
                    "{owner}"
                );
            }
            assert!(pod["securityContext"]["runAsUser"].as_i64().unwrap_or(0) > 0);
            assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
        }
    }
}

/// The check above is only as good as its ability to see a violation: each mutation of the
/// chart's own pod must be reported, naming the field.
#[test]
fn the_pod_security_check_catches_each_violation() {
    let r = render(Value::Null);
    let d = r.deployment();
    let meta = d["spec"]["template"]["metadata"].clone();
    let pod = d["spec"]["template"]["spec"].clone();
    assert!(restricted_violations(&meta, &pod).is_empty());

    type Mutation = fn(&mut Value, &mut Value);
    let cases: Vec<(&str, Mutation)> = vec![
        ("spec.hostNetwork", |_, p| p["hostNetwork"] = json!(true)),
        ("spec.hostPID", |_, p| p["hostPID"] = json!(true)),
        ("spec.hostIPC", |_, p| p["hostIPC"] = json!(true)),
        ("privileged", |_, p| {
            p["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("allowPrivilegeEscalation", |_, p| {
            p["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)
        }),
        ("allowPrivilegeEscalation", |_, p| {
            remove(
                &mut p["containers"][0]["securityContext"],
                "allowPrivilegeEscalation",
            )
        }),
        ("runAsNonRoot is false", |_, p| {
            p["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false)
        }),
        ("runAsNonRoot must be true", |_, p| {
            remove(&mut p["securityContext"], "runAsNonRoot");
            remove(&mut p["containers"][0]["securityContext"], "runAsNonRoot");
        }),
        ("runAsUser is 0", |_, p| {
            p["securityContext"]["runAsUser"] = json!(0)
        }),
        ("runAsUser is 0", |_, p| {
            p["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("seccompProfile.type Unconfined", |_, p| {
            p["securityContext"]["seccompProfile"]["type"] = json!("Unconfined")
        }),
        ("seccompProfile.type must be RuntimeDefault", |_, p| {
            remove(&mut p["securityContext"], "seccompProfile")
        }),
        ("capability SYS_ADMIN", |_, p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }),
        (
            "restricted: containers[operator] adds capability CHOWN",
            |_, p| p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["CHOWN"]),
        ),
        ("drop must include ALL", |_, p| {
            p["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"])
        }),
        ("hostPath", |_, p| {
            p["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}])
        }),
        (
            "type nfs",
            |_, p| p["volumes"] = json!([{"name": "share", "nfs": {"server": "x", "path": "/"}}]),
        ),
        ("hostPort", |_, p| {
            p["containers"][0]["ports"][0]["hostPort"] = json!(8080)
        }),
        ("procMount", |_, p| {
            p["containers"][0]["securityContext"]["procMount"] = json!("Unmasked")
        }),
        ("seLinuxOptions.type spc_t", |_, p| {
            p["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"})
        }),
        ("sysctl kernel.msgmax", |_, p| {
            p["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}])
        }),
        ("appArmorProfile", |_, p| {
            p["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"})
        }),
        ("annotation container.apparmor", |m, _| {
            m["annotations"]["container.apparmor.security.beta.kubernetes.io/operator"] =
                json!("unconfined")
        }),
        ("hostProcess", |_, p| {
            p["securityContext"]["windowsOptions"] = json!({"hostProcess": true})
        }),
        ("initContainers[setup]", |_, p| {
            p["initContainers"] = json!([{"name": "setup", "image": "busybox"}])
        }),
    ];
    for (needle, mutate) in cases {
        let (mut m, mut p) = (meta.clone(), pod.clone());
        mutate(&mut m, &mut p);
        let violations = restricted_violations(&m, &p);
        assert!(
            violations.iter().any(|v| v.contains(needle)),
            "mutation {needle:?} not reported: {violations:?}"
        );
    }

    // Values can weaken the defaults (e.g. for OpenShift); the check then says so.
    let r = render(json!({"podSecurityContext": {"runAsNonRoot": false, "seccompProfile": null}}));
    let (_, m, p) = pod_templates(&r).remove(0);
    let violations = restricted_violations(m, p);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("runAsNonRoot is false"))
            && violations.iter().any(|v| v.contains("seccompProfile")),
        "{violations:?}"
    );
}

fn remove(v: &mut Value, key: &str) {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
}

// ----- RBAC -------------------------------------------------------------------------------------

/// A rule, normalised: sets of groups, resources, names and verbs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    groups: BTreeSet<String>,
    resources: BTreeSet<String>,
    names: BTreeSet<String>,
    verbs: BTreeSet<String>,
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Rule {
    let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
    Rule {
        groups: s(groups),
        resources: s(resources),
        names: s(names),
        verbs: s(verbs),
    }
}

fn rules_of(role: &Value) -> Vec<Rule> {
    let mut rules: Vec<Rule> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| Rule {
            groups: set(&r["apiGroups"]),
            resources: set(&r["resources"]),
            names: set(&r["resourceNames"]),
            verbs: set(&r["verbs"]),
        })
        .collect();
    rules.sort();
    rules
}

/// The rules the operator needs wherever it watches LatticeAgents (see templates/_rbac.tpl for
/// the API call behind each), with the default values (workloads watched, identities, restarts).
fn watched_rules() -> Vec<Rule> {
    watched_rules_with(true, true, true)
}

/// [`watched_rules`] for these `workloads` values.
fn watched_rules_with(workloads: bool, identities: bool, restarts: bool) -> Vec<Rule> {
    let apps = ["deployments", "statefulsets", "daemonsets"];
    let mut rules = vec![
        rule(
            &["agentlattice.io"],
            &["latticeagents"],
            &[],
            &["get", "list", "watch", "patch"],
        ),
        rule(
            &["agentlattice.io"],
            &["latticeagents/status"],
            &[],
            &["update", "patch"],
        ),
        rule(
            &["agentlattice.io"],
            &["latticeagents/finalizers"],
            &[],
            &["update"],
        ),
        rule(
            &[""],
            &["secrets"],
            &[],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
        rule(
            &["agentlattice.io"],
            &["latticeprovisioners"],
            &[],
            &["list", "watch"],
        ),
        rule(
            &["agentlattice.io"],
            &["latticeprovisioners/status"],
            &[],
            &["patch"],
        ),
    ];
    if workloads {
        rules.push(rule(&["apps"], &apps, &[], &["list", "watch"]));
        if identities {
            rules.push(rule(
                &["agentlattice.io"],
                &["latticeagents"],
                &[],
                &["create", "delete"],
            ));
        }
        if restarts {
            rules.push(rule(&["apps"], &apps, &[], &["patch"]));
        }
    }
    rules.sort();
    rules
}

/// Workload rules follow the features: no `patch` on workloads without restarts, nothing on
/// them (and no LatticeAgent creation) without workload watching.
#[test]
fn workload_rules_follow_the_workload_values() {
    let renders = render_many(&[
        json!({"workloads": {"restarts": false}}),
        json!({"workloads": {"identities": false}}),
        json!({"workloads": {"enabled": false}}),
    ]);
    for (r, (identities, restarts, enabled)) in renders.iter().zip([
        (true, false, true),
        (false, true, true),
        (true, true, false),
    ]) {
        let grants = operator_grants(r, "lattice-operator");
        let (_, _, _, cluster_role) = &grants[0];
        let mut expected = watched_rules_with(enabled, identities, restarts);
        expected.push(crd_rule());
        expected.extend(cluster_scoped_rules());
        expected.sort();
        assert_eq!(rules_of(cluster_role), expected);
    }
}

fn crd_rule() -> Rule {
    rule(
        &["apiextensions.k8s.io"],
        &["customresourcedefinitions"],
        &["latticeagents.agentlattice.io"],
        &["get"],
    )
}

/// The cluster-scoped rules besides the CRD's: ClusterLatticeProvisioners (watched, status
/// patched) and namespaces (get, for a ClusterLatticeProvisioner's namespace selector).
fn cluster_scoped_rules() -> Vec<Rule> {
    vec![
        rule(
            &["agentlattice.io"],
            &["clusterlatticeprovisioners"],
            &[],
            &["list", "watch"],
        ),
        rule(
            &["agentlattice.io"],
            &["clusterlatticeprovisioners/status"],
            &[],
            &["patch"],
        ),
        rule(&[""], &["namespaces"], &[], &["get"]),
    ]
}

fn own_namespace_rules(secret: &str, lease: Option<&str>) -> Vec<Rule> {
    let mut rules = vec![rule(
        &[""],
        &["secrets"],
        &[secret],
        &["get", "list", "watch"],
    )];
    if let Some(lease) = lease {
        rules.push(rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[],
            &["create"],
        ));
        rules.push(rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[lease],
            &["get", "update"],
        ));
    }
    rules.sort();
    rules
}

/// The roles bound to the operator's service account: `(binding kind, binding namespace, role
/// kind, role)`.
fn operator_grants<'a>(r: &'a Rendered, sa: &str) -> Vec<(String, String, String, &'a Value)> {
    let mut grants = Vec::new();
    for b in r
        .objects
        .iter()
        .filter(|o| matches!(o.kind(), "RoleBinding" | "ClusterRoleBinding"))
    {
        let binds_sa = b.value["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == NAMESPACE
            });
        if !binds_sa {
            continue;
        }
        let role_kind = b.value["roleRef"]["kind"].as_str().expect("roleRef.kind");
        let role_name = b.value["roleRef"]["name"].as_str().expect("roleRef.name");
        assert_eq!(b.value["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        let role = r
            .objects
            .iter()
            .find(|o| {
                o.kind() == role_kind
                    && o.name() == role_name
                    && (role_kind == "ClusterRole" || o.namespace() == b.namespace())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} {} binds a missing {role_kind} {role_name}",
                    b.kind(),
                    b.name()
                )
            });
        grants.push((
            b.kind().to_owned(),
            b.namespace().to_owned(),
            role_kind.to_owned(),
            &role.value,
        ));
    }
    grants.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    grants
}

fn assert_no_wildcards(r: &Rendered) {
    for o in r.all("ClusterRole").into_iter().chain(r.all("Role")) {
        for rl in rules_of(&o.value) {
            for s in rl.groups.iter().chain(&rl.resources).chain(&rl.verbs) {
                assert_ne!(s, "*", "{} {} has a wildcard", o.kind(), o.name());
            }
        }
    }
}

#[test]
fn cluster_wide_rbac_is_exactly_the_documented_rules() {
    let r = render(Value::Null);
    assert_no_wildcards(&r);
    let grants = operator_grants(&r, "lattice-operator");
    assert_eq!(grants.len(), 2, "{grants:?}");

    let (binding, _, kind, cluster_role) = &grants[0];
    assert_eq!(
        (binding.as_str(), kind.as_str()),
        ("ClusterRoleBinding", "ClusterRole")
    );
    let mut expected = watched_rules();
    expected.push(crd_rule());
    expected.extend(cluster_scoped_rules());
    expected.sort();
    assert_eq!(rules_of(cluster_role), expected);

    let (binding, ns, kind, role) = &grants[1];
    assert_eq!(
        (binding.as_str(), ns.as_str(), kind.as_str()),
        ("RoleBinding", NAMESPACE, "Role")
    );
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rules_of(role),
        own_namespace_rules("agentlattice-service-key", Some("lattice-operator"))
    );

    // The roles for people grant nothing to the operator and write no status.
    let view = r.get("ClusterRole", "lattice-system-lattice-operator-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let mut view_rules = vec![
        rule(
            &["agentlattice.io"],
            &["latticeagents"],
            &[],
            &["get", "list", "watch"],
        ),
        // Teams see their namespace's provisioners (their policy and readiness), nothing more.
        rule(
            &["agentlattice.io"],
            &["latticeprovisioners"],
            &[],
            &["get", "list", "watch"],
        ),
    ];
    view_rules.sort();
    assert_eq!(rules_of(view), view_rules);
    let edit = r.get("ClusterRole", "lattice-system-lattice-operator-edit");
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert!(
        rules_of(edit)
            .iter()
            .all(|rl| !rl.resources.contains("latticeagents/status"))
    );
}

#[test]
fn namespace_list_rbac_uses_roles_and_no_cluster_role_for_namespaced_resources() {
    let [r, bare] = <[Rendered; 2]>::try_from(render_many(&[
        json!({"watchNamespaces": ["payments", "web"], "serviceKey": {"secretName": "al-key"}}),
        json!({"watchNamespaces": ["payments"], "rbac": {"aggregateToDefaultRoles": false}}),
    ]))
    .expect("two renders");
    assert_no_wildcards(&r);
    let grants = operator_grants(&r, "lattice-operator");
    let summary: Vec<(&str, &str, &str)> = grants
        .iter()
        .map(|(b, ns, k, _)| (b.as_str(), ns.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ClusterRoleBinding", "", "ClusterRole"),
            ("RoleBinding", NAMESPACE, "Role"),
            ("RoleBinding", "payments", "Role"),
            ("RoleBinding", "web", "Role"),
        ]
    );
    // The cluster-wide grants are on cluster-scoped objects only: get on the operator's own CRD,
    // ClusterLatticeProvisioners, and get on namespaces (a provisioner's namespace selector).
    let mut cluster = vec![crd_rule()];
    cluster.extend(cluster_scoped_rules());
    cluster.sort();
    assert_eq!(rules_of(grants[0].3), cluster);
    assert_eq!(
        rules_of(grants[1].3),
        own_namespace_rules("al-key", Some("lattice-operator"))
    );
    for (_, ns, _, role) in &grants[2..] {
        assert_eq!(role["metadata"]["namespace"], ns.as_str());
        assert_eq!(rules_of(role), watched_rules(), "Role in {ns}");
    }
    // No ClusterRole the operator is bound to names a namespaced resource.
    for (_, _, kind, role) in &grants {
        if kind == "ClusterRole" {
            for rl in rules_of(role) {
                let cluster_scoped = [
                    "customresourcedefinitions",
                    "clusterlatticeprovisioners",
                    "clusterlatticeprovisioners/status",
                    "namespaces",
                ];
                assert!(
                    rl.resources
                        .iter()
                        .all(|res| cluster_scoped.contains(&res.as_str())),
                    "cluster-wide right to a namespaced resource: {rl:?}"
                );
            }
        }
    }
    assert!(
        r.args().contains(&"--namespaces=payments,web".to_owned()),
        "{:?}",
        r.args()
    );

    // Without the aggregated roles for people, the CRD reader is the only ClusterRole at all.
    let cluster_roles: Vec<&str> = bare.all("ClusterRole").iter().map(|o| o.name()).collect();
    assert_eq!(cluster_roles, vec!["lattice-system-lattice-operator-crd"]);
}

#[test]
fn leader_election_off_drops_the_lease_rules_and_never_overlaps_pods() {
    let r = render(json!({"leaderElection": {"enabled": false}}));
    let role = r.get("Role", "lattice-operator-own-namespace");
    assert_eq!(
        rules_of(role),
        own_namespace_rules("agentlattice-service-key", None)
    );
    assert_eq!(
        r.deployment()["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
    assert!(r.args().contains(&"--leader-election=false".to_owned()));
    assert!(!r.args().iter().any(|a| a.starts_with("--lease-")));
}

#[test]
fn rbac_and_service_account_can_be_brought_by_the_user() {
    let [no_rbac, own_sa] = <[Rendered; 2]>::try_from(render_many(&[
        json!({"rbac": {"create": false}}),
        json!({"serviceAccount": {"create": false, "name": "platform-operator"}}),
    ]))
    .expect("two renders");
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            no_rbac.all(kind).is_empty(),
            "{kind}: {:?}",
            no_rbac.inventory()
        );
    }
    assert!(own_sa.all("ServiceAccount").is_empty());
    assert_eq!(
        own_sa.deployment()["spec"]["template"]["spec"]["serviceAccountName"],
        "platform-operator"
    );
    assert_eq!(operator_grants(&own_sa, "platform-operator").len(), 2);
}

/// Each rule of every Role/ClusterRole says why it exists, in the rendered manifest a user
/// reviews (`helm template`): the line before each rule is a comment.
#[test]
fn every_rbac_rule_is_commented() {
    let value_sets = [
        Value::Null,
        json!({"watchNamespaces": ["payments", "web"]}),
        json!({"leaderElection": {"enabled": false}}),
    ];
    let mut rules_seen = 0;
    for (values, r) in value_sets.iter().zip(render_many(&value_sets)) {
        for (template, text) in &r.files {
            for doc in text.split("\n---") {
                if !(doc.contains("\nkind: ClusterRole\n") || doc.contains("\nkind: Role\n")) {
                    continue;
                }
                let lines: Vec<&str> = doc.lines().collect();
                let rule_starts = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.trim_start().starts_with("- apiGroups:"));
                for (i, line) in rule_starts {
                    rules_seen += 1;
                    let above = lines[..i]
                        .iter()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .copied()
                        .unwrap_or_default();
                    assert!(
                        above.trim_start().starts_with('#'),
                        "{template} with {values}: a rule without a comment above it:\n{line}"
                    );
                }
            }
        }
    }
    assert!(rules_seen >= 20, "only {rules_seen} rules seen");
}

#[test]
fn no_chart_object_is_labelled_as_the_operators_own() {
    let r = render(
        json!({"serviceKey": {"create": true, "value": format!("al_svc_{}", "k".repeat(40))}}),
    );
    for o in &r.objects {
        assert_ne!(
            o.value["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "lattice-operator",
            "{} {} would be taken for an operator-managed Secret",
            o.kind(),
            o.name()
        );
    }
}

// ----- the image ---------------------------------------------------------------------------------

/// The Dockerfile (it cannot be built on these machines) agrees with the chart: a multi-stage
/// build of the locked workspace without the `dev` feature, a static (musl) binary on distroless
/// `static:nonroot`, the same non-root user and group the pod runs as, the admin port exposed,
/// and the binary as entrypoint (the chart passes `run` and its flags as arguments).
#[test]
fn the_dockerfile_builds_a_static_non_root_image_the_chart_can_run() {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last = froms.last().expect("a final stage");
    assert!(
        last.contains("distroless/static") && last.ends_with(":nonroot"),
        "{last}"
    );
    assert!(text.contains("unknown-linux-musl"), "a static musl build");
    for flag in ["--locked", "--no-default-features", "--release"] {
        assert!(text.contains(flag), "cargo build {flag}");
    }

    let r = render(Value::Null);
    let pod = &r.deployment()["spec"]["template"]["spec"];
    let user = pod["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    let group = pod["securityContext"]["runAsGroup"]
        .as_i64()
        .expect("runAsGroup");
    assert!(
        lines.contains(&format!("USER {user}:{group}").as_str()),
        "the image's USER is the pod's {user}:{group}"
    );
    let port = r.container()["ports"][0]["containerPort"]
        .as_i64()
        .expect("port");
    assert!(
        lines.contains(&format!("EXPOSE {port}").as_str()),
        "EXPOSE {port}"
    );
    assert_eq!(r.args()[0], "run", "the chart passes the subcommand");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/lattice-operator\"]")),
        "the binary is the entrypoint"
    );

    let ignore = std::fs::read_to_string(workspace().join(".dockerignore")).expect(".dockerignore");
    for path in ["target/", ".venv/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            ".dockerignore lacks {path}"
        );
    }
}
