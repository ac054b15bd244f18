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

/// `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
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
                    "string",
                    "",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    0,
                ),
                |v| int_at(v, "/status/updatedReplicas"),
            ),
            (
                coldef(
                    "Available",
                    "string",
                    "",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    0,
                ),
                |v| int_at(v, "/status/availableReplicas"),
            ),
            age,
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
        ],
        Kind::DaemonSet => vec![
            (
                coldef(
                    "Desired",
                    "integer",
                    "",
                    "The desired number of daemon pods.",
                    0,
                ),
                |v| int_at(v, "/status/desiredNumberScheduled"),
            ),
            (
                coldef(
                    "Current",
                    "integer",
                    "",
                    "The number of nodes running at least one daemon pod.",
                    0,
                ),
                |v| int_at(v, "/status/currentNumberScheduled"),
            ),
            (
                coldef(
                    "Ready",
                    "integer",
                    "",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                    0,
                ),
                |v| int_at(v, "/status/numberReady"),
            ),
            age,
        ],
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
        for (d, _) in &cols {
            defs.push(d.clone());
        }
        rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(crate::meta::name(o))];
                for (_, f) in &cols {
                    cells.push(f(o));
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
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
