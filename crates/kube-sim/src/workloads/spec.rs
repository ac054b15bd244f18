//! Pod specs as the API server treats them: the defaults of `SetDefaults_PodSpec` /
//! `SetDefaults_Container` (k8s.io/kubernetes `pkg/apis/core/v1/defaults.go`) for Pods and the
//! pod templates of workloads, and the part of `ValidatePodSpec` / `ValidatePodUpdate`
//! (`pkg/apis/core/validation/validation.go`) that clients run into.

use serde_json::{Map, Value, json};

use crate::error::{FieldError, FieldErrorType, go_quote};

fn entry<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let e = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    match e {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split('@').next().unwrap_or(name);
    match name.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) if image.contains('@') => "IfNotPresent",
        Some(_) => "IfNotPresent",
    }
}

fn default_probe(p: &mut Value) {
    let Some(m) = p.as_object_mut() else { return };
    m.entry("timeoutSeconds").or_insert(json!(1));
    m.entry("periodSeconds").or_insert(json!(10));
    m.entry("successThreshold").or_insert(json!(1));
    m.entry("failureThreshold").or_insert(json!(3));
    if let Some(Value::Object(h)) = m.get_mut("httpGet") {
        h.entry("path").or_insert(json!("/"));
        h.entry("scheme").or_insert(json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if m.get("imagePullPolicy")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert("imagePullPolicy".into(), json!(pull_policy(&image)));
    }
    m.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    m.entry("terminationMessagePolicy").or_insert(json!("File"));
    m.entry("resources").or_insert(json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert(json!("TCP"));
        }
    }
    if let Some(Value::Array(env)) = m.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(Value::Object(f)) = e.pointer_mut("/valueFrom/fieldRef") {
                f.entry("apiVersion").or_insert(json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe) {
            default_probe(p);
        }
    }
}

/// `SetDefaults_PodSpec` and the container defaults; `pod` adds what only Pods get (the
/// admission plugins' ServiceAccount name, priority and default tolerations).
pub fn default_pod_spec(spec: &mut Map<String, Value>, pod: bool) {
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
    ] {
        if spec
            .get(k)
            .is_none_or(|x| x.is_null() || x.as_str() == Some(""))
        {
            spec.insert(k.into(), v);
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for src in ["secret", "configMap", "projected", "downwardAPI"] {
                if let Some(Value::Object(s)) = v.get_mut(src) {
                    s.entry("defaultMode").or_insert(json!(420));
                }
            }
        }
    }
    if pod {
        spec.entry("enableServiceLinks").or_insert(json!(true));
        spec.entry("preemptionPolicy")
            .or_insert(json!("PreemptLowerPriority"));
        spec.entry("priority").or_insert(json!(0));
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
        // DefaultTolerationSeconds admission.
        let tolerations = spec
            .entry("tolerations")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(t) = tolerations.as_array_mut() {
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                if !t
                    .iter()
                    .any(|x| x.get("key").and_then(Value::as_str) == Some(key))
                {
                    t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
        }
    }
}

/// Defaults of the pod template of a workload (`spec.template`).
pub fn default_template(spec: &mut Map<String, Value>) {
    let template = entry(spec, "template");
    let pod_spec = entry(template, "spec");
    default_pod_spec(pod_spec, false);
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The checks of `ValidatePodSpec` that matter to clients, at `path` (`spec` or
/// `spec.template.spec`). `workload` restricts `restartPolicy` to `Always`.
pub fn validate_pod_spec(spec: Option<&Value>, path: &str, workload: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let spec = spec.unwrap_or(&empty);
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names: Vec<String> = Vec::new();
    for list in ["initContainers", "containers"] {
        let cs = spec
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, c) in cs.iter().enumerate() {
            let p = format!("{path}.{list}[{i}]");
            let name = str_of(c, "name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else {
                for m in crate::schema_api::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{p}.name"), &json!(name), m));
                }
                if names.iter().any(|n| n == name) {
                    errs.push(FieldError::new(
                        FieldErrorType::Duplicate,
                        format!("{p}.name"),
                        Some(go_quote(name)),
                        "",
                    ));
                }
                names.push(name.to_string());
            }
            if str_of(c, "image").trim().is_empty() {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
        }
    }
    let rp = str_of(spec, "restartPolicy");
    let allowed: &[&str] = if workload {
        &["Always"]
    } else {
        &["Always", "OnFailure", "Never"]
    };
    if !rp.is_empty() && !allowed.contains(&rp) {
        errs.push(FieldError::new(
            FieldErrorType::NotSupported,
            format!("{path}.restartPolicy"),
            Some(go_quote(rp)),
            format!(
                "supported values: {}",
                allowed
                    .iter()
                    .map(|s| go_quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    errs
}

/// `ValidatePodUpdate`: the spec may change only in container images,
/// `activeDeadlineSeconds`, added tolerations and `terminationGracePeriodSeconds`; the
/// scheduler's binding sets `nodeName` once (kube-sim binds through an update, not the
/// `binding` subresource).
pub fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let strip = |v: &Value| -> Value {
        let mut s = v.get("spec").cloned().unwrap_or(json!({}));
        if let Some(m) = s.as_object_mut() {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(k);
            }
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = m.get_mut(list) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
        }
        s
    };
    let mut old_spec = strip(old);
    let new_spec = strip(new);
    let old_node = str_of(&old_spec, "nodeName").to_string();
    if old_node.is_empty()
        && let Some(m) = old_spec.as_object_mut()
        && let Some(n) = new_spec.get("nodeName")
    {
        m.insert("nodeName".into(), n.clone());
    }
    if crate::meta::json_eq(&old_spec, &new_spec) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )]
}

/// `ValidateDeploymentStrategy` for rolling updates: percentages and the both-zero rule.
pub fn validate_rolling_update(spec: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(ru) = spec.and_then(|s| s.pointer("/strategy/rollingUpdate")) else {
        return errs;
    };
    let path = "spec.strategy.rollingUpdate";
    let mut zero = [false, false];
    for (i, k) in ["maxUnavailable", "maxSurge"].iter().enumerate() {
        match ru.get(*k) {
            Some(Value::String(s)) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
                Some(p) if (0..=100).contains(&p) => zero[i] = p == 0,
                Some(p) if p > 100 => errs.push(FieldError::invalid(
                    format!("{path}.{k}"),
                    &json!(s),
                    "must not be greater than 100%",
                )),
                _ => errs.push(FieldError::invalid(
                    format!("{path}.{k}"),
                    &json!(s),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
            },
            Some(Value::Number(n)) => {
                let v = n.as_i64().unwrap_or(0);
                if v < 0 {
                    errs.push(FieldError::invalid(
                        format!("{path}.{k}"),
                        &json!(v),
                        "must be greater than or equal to 0",
                    ));
                }
                zero[i] = v == 0;
            }
            _ => {}
        }
    }
    if zero[0] && zero[1] {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            ru.get("maxUnavailable").unwrap_or(&json!(0)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_upstream() {
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27"}]});
        default_pod_spec(spec.as_object_mut().unwrap(), true);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["terminationMessagePolicy"], "File");
    }

    #[test]
    fn validation_messages() {
        let e = validate_pod_spec(Some(&json!({})), "spec", false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.containers");
        assert_eq!(e[0].body(), "Required value");
        let e = validate_pod_spec(
            Some(
                &json!({"containers": [{"name": "a", "image": "x"}, {"name": "a"}], "restartPolicy": "Never"}),
            ),
            "spec.template.spec",
            true,
        );
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.containers[1].name",
                "spec.template.spec.containers[1].image",
                "spec.template.spec.restartPolicy"
            ]
        );
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!("n1");
        new["spec"]["containers"][0]["image"] = json!("y");
        assert!(validate_pod_update(&new, &old).is_empty());
        let mut bad = new.clone();
        bad["spec"]["containers"][0]["name"] = json!("b");
        assert_eq!(validate_pod_update(&bad, &new).len(), 1);
        let e = validate_rolling_update(Some(
            &json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
        ));
        assert_eq!(e[0].field, "spec.strategy.rollingUpdate.maxUnavailable");
    }
}
