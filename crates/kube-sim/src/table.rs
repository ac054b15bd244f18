//! Server-side `meta.k8s.io/v1` Table output: CRD `additionalPrinterColumns` (evaluated with a
//! kubectl-style JSONPath subset) and the columns of the built-in kinds kubectl users look at.

use serde_json::{Map, Value, json};

use crate::registry::{Kind, PrinterColumn, ResourceType};

// ---------------------------------------------------------------------------------------------
// JSONPath subset: `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`, `.*`, `[?(@.k=="v")]` (==, !=),
// optional surrounding `{}`.

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<String>,
        equals: bool,
        value: Value,
    },
}

fn parse_path(expr: &str) -> Result<Vec<Seg>, String> {
    let mut s = expr.trim();
    if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        s = inner.trim();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if i < chars.len() && chars[i] == '*' {
                    out.push(Seg::All);
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    out.push(Seg::Field(name));
                }
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| p + i)
                    .ok_or("unterminated [")?;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    out.push(Seg::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
                    let (lhs, rhs, equals) = if let Some((l, r)) = f.split_once("==") {
                        (l, r, true)
                    } else if let Some((l, r)) = f.split_once("!=") {
                        (l, r, false)
                    } else {
                        return Err(format!("unsupported filter {f}"));
                    };
                    let path = lhs
                        .trim()
                        .strip_prefix('@')
                        .ok_or("filter must start with @")?
                        .split('.')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect();
                    let r = rhs.trim();
                    let value = if let Some(q) = r
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .or_else(|| r.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    {
                        Value::String(q.to_string())
                    } else {
                        serde_json::from_str(r).unwrap_or(Value::String(r.to_string()))
                    };
                    out.push(Seg::Filter {
                        path,
                        equals,
                        value,
                    });
                } else if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
                {
                    out.push(Seg::Field(q.to_string()));
                } else {
                    out.push(Seg::Index(
                        inner.parse().map_err(|_| format!("bad index {inner}"))?,
                    ));
                }
                i = end + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // A bare leading name (`metadata.name`) is accepted.
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                out.push(Seg::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// Evaluate a JSONPath expression; missing keys yield no results (`AllowMissingKeys`).
pub fn jsonpath(root: &Value, expr: &str) -> Result<Vec<Value>, String> {
    let segs = parse_path(expr)?;
    let mut cur = vec![root.clone()];
    for seg in &segs {
        let mut next = Vec::new();
        for v in &cur {
            match seg {
                Seg::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x.clone());
                    }
                }
                Seg::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if idx >= 0
                            && let Some(x) = a.get(idx as usize)
                        {
                            next.push(x.clone());
                        }
                    }
                }
                Seg::All => match v {
                    Value::Array(a) => next.extend(a.iter().cloned()),
                    Value::Object(m) => next.extend(m.values().cloned()),
                    _ => {}
                },
                Seg::Filter {
                    path,
                    equals,
                    value,
                } => {
                    if let Some(a) = v.as_array() {
                        for item in a {
                            let mut x = Some(item);
                            for p in path {
                                x = x.and_then(|y| y.get(p.as_str()));
                            }
                            let matched = x.is_some_and(|x| crate::meta::json_eq(x, value));
                            if matched == *equals && (x.is_some() || !equals) {
                                next.push(item.clone());
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    Ok(cur)
}

fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => crate::meta::human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<invalid>".into(),
    }
}

/// `cellForJSONValue`.
fn cell(type_: &str, v: &Value) -> Value {
    match (type_, v) {
        (_, Value::Null) => Value::Null,
        ("integer", Value::Number(n)) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(|f| Value::from(f as i64)))
            .unwrap_or(Value::Null),
        ("number", Value::Number(n)) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("string", Value::String(s)) => Value::String(s.clone()),
        ("string", Value::Number(n)) => Value::String(n.to_string()),
        ("string", Value::Bool(b)) => Value::String(b.to_string()),
        ("string", other) => Value::String(serde_json::to_string(other).unwrap_or_default()),
        ("date", Value::String(s)) => Value::String(age_of(s)),
        _ => Value::Null,
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn coldef(name: &str, type_: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": desc, "priority": priority})
}

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

/// Built-in printers: (column, cell computer).
type CellFn = fn(&Value) -> Value;

fn count_keys(v: &Value, keys: &[&str]) -> Value {
    let n: usize = keys
        .iter()
        .map(|k| {
            v.get(*k)
                .and_then(Value::as_object)
                .map(Map::len)
                .unwrap_or(0)
        })
        .sum();
    json!(n)
}

fn ready_of(v: &Value) -> Value {
    let ready = v
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    json!(format!("{ready}/{want}"))
}

fn int_at(v: &Value, p: &str) -> Value {
    json!(v.pointer(p).and_then(Value::as_i64).unwrap_or(0))
}

fn builtin_columns(kind: Kind) -> Vec<(Value, CellFn)> {
    let age = (
        coldef("Age", "string", "", AGE_DESC, 0),
        (|v: &Value| {
            json!(age_of(crate::meta::str_at(
                v,
                "/metadata/creationTimestamp"
            )))
        }) as CellFn,
    );
    let created_at = (
        coldef("Created At", "date", "", AGE_DESC, 0),
        (|v: &Value| json!(crate::meta::str_at(v, "/metadata/creationTimestamp"))) as CellFn,
    );
    match kind {
        Kind::ConfigMap => vec![
            (
                coldef(
                    "Data",
                    "string",
                    "",
                    "Data contains the configuration data.",
                    0,
                ),
                |v| count_keys(v, &["data", "binaryData"]),
            ),
            age,
        ],
        Kind::Secret => vec![
            (
                coldef("Type", "string", "", "The type of the secret.", 0),
                |v| json!(crate::meta::str_at(v, "/type")),
            ),
            (
                coldef("Data", "string", "", "Data contains the secret data.", 0),
                |v| count_keys(v, &["data"]),
            ),
            age,
        ],
        Kind::Namespace => vec![
            (
                coldef("Status", "string", "", "The status of the namespace", 0),
                |v| json!(crate::meta::str_at(v, "/status/phase")),
            ),
            age,
        ],
        Kind::ServiceAccount => vec![
            (
                coldef(
                    "Secrets",
                    "string",
                    "",
                    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                    0,
                ),
                |v| {
                    json!(
                        v.get("secrets")
                            .and_then(Value::as_array)
                            .map(Vec::len)
                            .unwrap_or(0)
                    )
                },
            ),
            age,
        ],
        Kind::Lease => vec![
            (
                coldef("Holder", "string", "", "The holder of the lease", 0),
                |v| json!(crate::meta::str_at(v, "/spec/holderIdentity")),
            ),
            age,
        ],
        Kind::Deployment => vec![
            (
                coldef(
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state",
                    0,
                ),
                ready_of,
            ),
            (
                coldef(
                    "Up-to-date",
                    "integer",
                    "",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    0,
                ),
                |v| int_at(v, "/status/updatedReplicas"),
            ),
            (
                coldef(
                    "Available",
                    "integer",
                    "",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    0,
                ),
                |v| int_at(v, "/status/availableReplicas"),
            ),
            age,
            containers_col(),
            images_col(),
            selector_col(),
        ],
        Kind::ReplicaSet => vec![
            (
                coldef(
                    "Desired",
                    "integer",
                    "",
                    "Replicas is the number of desired replicas.",
                    0,
                ),
                |v| int_at(v, "/spec/replicas"),
            ),
            (
                coldef(
                    "Current",
                    "integer",
                    "",
                    "Replicas is the most recently observed number of replicas.",
                    0,
                ),
                |v| int_at(v, "/status/replicas"),
            ),
            (
                coldef(
                    "Ready",
                    "integer",
                    "",
                    "The number of ready replicas for this replica set.",
                    0,
                ),
                |v| int_at(v, "/status/readyReplicas"),
            ),
            age,
            containers_col(),
            images_col(),
            selector_col(),
        ],
        Kind::StatefulSet => vec![
            (
                coldef(
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state",
                    0,
                ),
                ready_of,
            ),
            age,
            containers_col(),
            images_col(),
        ],
        Kind::DaemonSet => vec![
            (
                coldef(
                    "Desired",
                    "integer",
                    "",
                    "The total number of nodes that should be running the daemon pod.",
                    0,
                ),
                |v| int_at(v, "/status/desiredNumberScheduled"),
            ),
            (
                coldef(
                    "Current",
                    "integer",
                    "",
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                    0,
                ),
                |v| int_at(v, "/status/currentNumberScheduled"),
            ),
            (
                coldef(
                    "Ready",
                    "integer",
                    "",
                    "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
                    0,
                ),
                |v| int_at(v, "/status/numberReady"),
            ),
            (
                coldef(
                    "Up-to-date",
                    "integer",
                    "",
                    "The total number of nodes that are running updated daemon pod",
                    0,
                ),
                |v| int_at(v, "/status/updatedNumberScheduled"),
            ),
            (
                coldef(
                    "Available",
                    "integer",
                    "",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                    0,
                ),
                |v| int_at(v, "/status/numberAvailable"),
            ),
            (
                coldef(
                    "Node Selector",
                    "string",
                    "",
                    "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
                    0,
                ),
                |v| json!(map_string(v.pointer("/spec/template/spec/nodeSelector"))),
            ),
            age,
            containers_col(),
            images_col(),
            selector_col(),
        ],
        Kind::Pod => vec![
            (
                coldef(
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod for accepting traffic.",
                    0,
                ),
                |v| json!(crate::workloads::pods::printed(v).ready),
            ),
            (
                coldef(
                    "Status",
                    "string",
                    "",
                    "The aggregate status of the containers in this pod.",
                    0,
                ),
                |v| json!(crate::workloads::pods::printed(v).reason),
            ),
            (
                coldef(
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                    0,
                ),
                |v| json!(crate::workloads::pods::printed(v).restarts),
            ),
            age,
            (
                coldef(
                    "IP",
                    "string",
                    "",
                    "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                    1,
                ),
                |v| json!(none_if_empty(crate::meta::str_at(v, "/status/podIP"))),
            ),
            (
                coldef(
                    "Node",
                    "string",
                    "",
                    "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
                    1,
                ),
                |v| json!(none_if_empty(crate::meta::str_at(v, "/spec/nodeName"))),
            ),
            (
                coldef(
                    "Nominated Node",
                    "string",
                    "",
                    "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
                    1,
                ),
                |v| {
                    json!(none_if_empty(crate::meta::str_at(
                        v,
                        "/status/nominatedNodeName"
                    )))
                },
            ),
            (
                coldef(
                    "Readiness Gates",
                    "string",
                    "",
                    "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
                    1,
                ),
                |_| json!("<none>"),
            ),
        ],
        Kind::Node => vec![
            (
                coldef("Status", "string", "", "The status of the node", 0),
                node_status,
            ),
            (
                coldef("Roles", "string", "", "The roles of the node", 0),
                node_roles,
            ),
            age,
            (
                coldef(
                    "Version",
                    "string",
                    "",
                    "Kubelet Version reported by the node.",
                    0,
                ),
                |v| json!(crate::meta::str_at(v, "/status/nodeInfo/kubeletVersion")),
            ),
            (
                coldef(
                    "Internal-IP",
                    "string",
                    "",
                    "List of internal IPs for the node.",
                    1,
                ),
                |v| json!(node_address(v, "InternalIP")),
            ),
            (
                coldef(
                    "External-IP",
                    "string",
                    "",
                    "List of external IPs for the node.",
                    1,
                ),
                |v| json!(node_address(v, "ExternalIP")),
            ),
            (
                coldef(
                    "OS-Image",
                    "string",
                    "",
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                    1,
                ),
                |v| json!(crate::meta::str_at(v, "/status/nodeInfo/osImage")),
            ),
            (
                coldef(
                    "Kernel-Version",
                    "string",
                    "",
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                    1,
                ),
                |v| json!(crate::meta::str_at(v, "/status/nodeInfo/kernelVersion")),
            ),
            (
                coldef(
                    "Container-Runtime",
                    "string",
                    "",
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                    1,
                ),
                |v| {
                    json!(crate::meta::str_at(
                        v,
                        "/status/nodeInfo/containerRuntimeVersion"
                    ))
                },
            ),
        ],
        Kind::ControllerRevision => vec![
            (
                coldef("Controller", "string", "", "Controller of the object", 0),
                |v| match crate::workloads::util::controller_of(v) {
                    Some((kind, name, _)) => {
                        let g = v
                            .pointer("/metadata/ownerReferences/0/apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let group = g.split_once('/').map(|(g, _)| g).unwrap_or("");
                        let k = kind.to_lowercase();
                        json!(if group.is_empty() {
                            format!("{k}/{name}")
                        } else {
                            format!("{k}.{group}/{name}")
                        })
                    }
                    None => json!("<none>"),
                },
            ),
            (
                coldef(
                    "Revision",
                    "integer",
                    "",
                    "Revision indicates the revision of the state represented by Data.",
                    0,
                ),
                |v| int_at(v, "/revision"),
            ),
            age,
        ],
        Kind::Event | Kind::EventV1 => event_columns(),
        Kind::RoleBinding | Kind::ClusterRoleBinding => vec![
            (
                coldef(
                    "Role",
                    "string",
                    "",
                    "RoleRef is the reference to the role.",
                    0,
                ),
                |v| {
                    json!(format!(
                        "{}/{}",
                        crate::meta::str_at(v, "/roleRef/kind"),
                        crate::meta::str_at(v, "/roleRef/name")
                    ))
                },
            ),
            age,
        ],
        Kind::Crd | Kind::Role | Kind::ClusterRole => vec![created_at],
        _ => vec![age],
    }
}

fn none_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn map_string(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        Some(m) if !m.is_empty() => {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            kv.sort();
            kv.join(",")
        }
        _ => "<none>".into(),
    }
}

fn join_containers(v: &Value, field: &str) -> Value {
    let names: Vec<&str> = v
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    json!(names.join(","))
}

fn containers_col() -> (Value, CellFn) {
    (
        coldef(
            "Containers",
            "string",
            "",
            "Names of each container in the template.",
            1,
        ),
        |v| join_containers(v, "name"),
    )
}

fn images_col() -> (Value, CellFn) {
    (
        coldef(
            "Images",
            "string",
            "",
            "Images referenced by each container in the template.",
            1,
        ),
        |v| join_containers(v, "image"),
    )
}

fn selector_col() -> (Value, CellFn) {
    (
        coldef(
            "Selector",
            "string",
            "",
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            1,
        ),
        |v| {
            json!(
                v.pointer("/spec/selector")
                    .and_then(|s| crate::selector::LabelSelector::from_object(s).ok())
                    .map(|s| s.to_query())
                    .unwrap_or_default()
            )
        },
    )
}

fn node_status(v: &Value) -> Value {
    let ready = crate::workloads::util::condition(v.get("status").unwrap_or(&Value::Null), "Ready")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str);
    let mut s = match ready {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

fn node_roles(v: &Value) -> Value {
    let mut roles: Vec<String> = crate::meta::labels(v)
        .map(|l| {
            l.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    json!(if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    })
}

fn node_address(v: &Value, t: &str) -> String {
    v.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some(t))
        })
        .and_then(|x| x.get("address"))
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_string()
}

/// `printEvent` (the server always fills the wide cells; kubectl hides priority 1).
fn event_columns() -> Vec<(Value, CellFn)> {
    fn times(v: &Value) -> (String, String, i64) {
        let age = |p: &str| -> Option<String> {
            let t = crate::meta::str_at(v, p);
            (!t.is_empty()).then(|| age_of(t))
        };
        let first = age("/firstTimestamp")
            .or_else(|| age("/eventTime"))
            .unwrap_or_else(|| "<unknown>".into());
        let mut last = age("/lastTimestamp").unwrap_or_else(|| first.clone());
        let mut count = v.get("count").and_then(Value::as_i64).unwrap_or(0);
        if let Some(series) = v.get("series").filter(|s| s.is_object()) {
            if let Some(l) = series.get("lastObservedTime").and_then(Value::as_str) {
                last = age_of(l);
            }
            count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
        } else if count == 0 {
            count = 1;
        }
        (first, last, count)
    }
    vec![
        (
            coldef(
                "Last Seen",
                "string",
                "",
                "The time at which the most recent occurrence of this event was recorded.",
                0,
            ),
            |v| json!(times(v).1),
        ),
        (
            coldef(
                "Type",
                "string",
                "",
                "Type of this event (Normal, Warning), new types could be added in the future",
                0,
            ),
            |v| json!(crate::meta::str_at(v, "/type")),
        ),
        (
            coldef(
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                0,
            ),
            |v| json!(crate::meta::str_at(v, "/reason")),
        ),
        (
            coldef(
                "Object",
                "string",
                "",
                "The object that this event is about.",
                0,
            ),
            |v| {
                let kind = crate::meta::str_at(v, "/involvedObject/kind").to_lowercase();
                let name = crate::meta::str_at(v, "/involvedObject/name");
                json!(if name.is_empty() {
                    kind
                } else {
                    format!("{kind}/{name}")
                })
            },
        ),
        (
            coldef(
                "Subobject",
                "string",
                "",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
                1,
            ),
            |v| json!(crate::meta::str_at(v, "/involvedObject/fieldPath")),
        ),
        (
            coldef(
                "Source",
                "string",
                "",
                "The component reporting this event. Should be a short machine understandable string.",
                1,
            ),
            |v| {
                let comp = crate::meta::str_at(v, "/source/component");
                let host = crate::meta::str_at(v, "/source/host");
                let (comp, host) = if comp.is_empty() {
                    (
                        crate::meta::str_at(v, "/reportingComponent"),
                        crate::meta::str_at(v, "/reportingInstance"),
                    )
                } else {
                    (comp, host)
                };
                json!(if host.is_empty() {
                    comp.to_string()
                } else {
                    format!("{comp}, {host}")
                })
            },
        ),
        (
            coldef(
                "Message",
                "string",
                "",
                "A human-readable description of the status of this operation.",
                0,
            ),
            |v| json!(crate::meta::str_at(v, "/message").trim()),
        ),
        (
            coldef(
                "First Seen",
                "string",
                "",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
                1,
            ),
            |v| json!(times(v).0),
        ),
        (
            coldef(
                "Count",
                "string",
                "",
                "The number of times this event has occurred.",
                1,
            ),
            |v| json!(times(v).2),
        ),
        (coldef("Name", "string", "name", NAME_DESC, 1), |v| {
            json!(crate::meta::name(v))
        }),
    ]
}

/// The column definitions and the cells of each object (given in the request's version).
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    list_meta: Value,
    include_object: &str,
    v1beta1: bool,
) -> Value {
    let mut defs = vec![coldef("Name", "string", "name", NAME_DESC, 0)];
    let rows: Vec<Value>;
    let row_object = |o: &Value| -> Option<Value> {
        match include_object {
            "None" => None,
            "Object" => Some(o.clone()),
            _ => Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
            })),
        }
    };
    let finish_row = |cells: Vec<Value>, o: &Value| -> Value {
        let mut r = json!({"cells": cells});
        if let Some(obj) = row_object(o) {
            r["object"] = obj;
        }
        r
    };
    if let Some(c) = &rt.custom {
        let columns: Vec<PrinterColumn> = if c.columns.is_empty() {
            vec![col("Age", "date", ".metadata.creationTimestamp", 0)]
        } else {
            c.columns.clone()
        };
        for column in &columns {
            defs.push(coldef(
                &column.name,
                &column.type_,
                &column.format,
                &column.description,
                column.priority,
            ));
        }
        rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(crate::meta::name(o))];
                for column in &columns {
                    let v = jsonpath(o, &column.json_path)
                        .ok()
                        .and_then(|r| r.into_iter().next())
                        .unwrap_or(Value::Null);
                    cells.push(cell(&column.type_, &v));
                }
                finish_row(cells, o)
            })
            .collect();
    } else {
        let cols = builtin_columns(rt.behaviour);
        // Events have no leading name column (`Name` is their last, wide one).
        let event = matches!(rt.behaviour, Kind::Event | Kind::EventV1);
        if event {
            defs.clear();
        }
        for (d, _) in &cols {
            defs.push(d.clone());
        }
        rows = objects
            .iter()
            .map(|o| {
                let mut cells = if event {
                    Vec::new()
                } else {
                    vec![json!(crate::meta::name(o))]
                };
                let core;
                let src = if rt.behaviour == Kind::EventV1 {
                    core = crate::builtin::event_v1_to_core(o);
                    &core
                } else {
                    o
                };
                for (_, f) in &cols {
                    cells.push(f(src));
                }
                finish_row(cells, o)
            })
            .collect();
    }
    json!({
        "kind": "Table",
        "apiVersion": if v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let v = json!({"spec": {"color": "blue", "items": [{"n": 1}, {"n": 2}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]},
            "metadata": {"labels": {"a.b/c": "d"}}});
        assert_eq!(jsonpath(&v, ".spec.color").unwrap(), vec![json!("blue")]);
        assert_eq!(jsonpath(&v, "{.spec.items[1].n}").unwrap(), vec![json!(2)]);
        assert_eq!(
            jsonpath(&v, ".spec.items[*].n").unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(jsonpath(&v, ".spec.items[-1].n").unwrap(), vec![json!(2)]);
        assert_eq!(
            jsonpath(&v, r#".status.conditions[?(@.type=="Ready")].status"#).unwrap(),
            vec![json!("True")]
        );
        assert_eq!(
            jsonpath(&v, ".metadata.labels['a.b/c']").unwrap(),
            vec![json!("d")]
        );
        assert!(jsonpath(&v, ".spec.missing.x").unwrap().is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(crate::meta::human_duration(5), "5s");
        assert_eq!(crate::meta::human_duration(150), "2m30s");
        assert_eq!(crate::meta::human_duration(600), "10m");
        assert_eq!(crate::meta::human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(crate::meta::human_duration(10 * 3600), "10h");
        assert_eq!(crate::meta::human_duration(3 * 86400), "3d");
    }
}
