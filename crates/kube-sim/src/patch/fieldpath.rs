//! Field paths and field sets in structured-merge-diff v4 form: the `fieldsV1` wire encoding
//! (`f:<field>`, `k:{"name":"x"}`, `v:<json>`, `i:<n>`, `.`), the ordering SMD serialises in,
//! and the `.spec.containers[name="x"].image` string form used in conflict messages.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{ListSemantics, MergeSchema};

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum Pe {
    Field(String),
    /// Associative-list item, key fields sorted by name.
    Key(Vec<(String, Value)>),
    /// Set item.
    Value(Value),
    Index(usize),
}

pub type Path = Vec<Pe>;

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// SMD `value.Compare`: numbers < strings < bools < lists < maps < null.
pub fn value_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x.cmp(&y);
            }
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let c = value_cmp(a, b);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort();
            yk.sort();
            for (a, b) in xk.iter().zip(&yk) {
                let c = a
                    .cmp(b)
                    .then_with(|| value_cmp(&x[a.as_str()], &y[b.as_str()]));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xk.len().cmp(&yk.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

impl Pe {
    fn rank(&self) -> u8 {
        match self {
            Pe::Field(_) => 0,
            Pe::Key(_) => 1,
            Pe::Value(_) => 2,
            Pe::Index(_) => 3,
        }
    }
}

impl Ord for Pe {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Pe::Field(a), Pe::Field(b)) => a.cmp(b),
            (Pe::Key(a), Pe::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| value_cmp(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Pe::Value(a), Pe::Value(b)) => value_cmp(a, b),
            (Pe::Index(a), Pe::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl PartialOrd for Pe {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Pe {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pe {}

/// SMD `value.ToString`.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => crate::error::go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_to_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_to_string(v)))
            .collect::<Vec<_>>()
            .join(""),
    }
}

/// `fieldpath.Path.String()`: `.spec.containers[name="x"].image`.
pub fn path_string(p: &[Pe]) -> String {
    let mut s = String::new();
    for pe in p {
        match pe {
            Pe::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Pe::Key(kv) => {
                let parts: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                    .collect();
                s.push('[');
                s.push_str(&parts.join(","));
                s.push(']');
            }
            Pe::Value(v) => s.push_str(&format!("[={}]", value_to_string(v))),
            Pe::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn pe_key(pe: &Pe) -> String {
    match pe {
        Pe::Field(f) => format!("f:{f}"),
        Pe::Key(kv) => {
            let mut m = Map::new();
            for (k, v) in kv {
                m.insert(k.clone(), v.clone());
            }
            format!("k:{}", Value::Object(m))
        }
        Pe::Value(v) => format!("v:{v}"),
        Pe::Index(i) => format!("i:{i}"),
    }
}

fn parse_pe(key: &str) -> Option<Pe> {
    let (prefix, rest) = key.split_at_checked(2)?;
    match prefix {
        "f:" => Some(Pe::Field(rest.to_string())),
        "k:" => {
            let Value::Object(m) = serde_json::from_str::<Value>(rest).ok()? else {
                return None;
            };
            let mut kv: Vec<(String, Value)> = m.into_iter().collect();
            kv.sort_by(|a, b| a.0.cmp(&b.0));
            Some(Pe::Key(kv))
        }
        "v:" => serde_json::from_str::<Value>(rest).ok().map(Pe::Value),
        "i:" => rest.parse::<usize>().ok().map(Pe::Index),
        _ => None,
    }
}

/// A set of member paths (what a manager owns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

#[derive(Default)]
struct Node<'a> {
    member: bool,
    children: std::collections::BTreeMap<&'a Pe, Node<'a>>,
}

impl Node<'_> {
    fn to_json(&self, include_self: bool) -> Value {
        let mut m = Map::new();
        if include_self && self.member && !self.children.is_empty() {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe_key(pe), child.to_json(true));
        }
        Value::Object(m)
    }
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, p: Path) {
        self.0.insert(p);
    }
    pub fn contains(&self, p: &Path) -> bool {
        self.0.contains(p)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }
    pub fn union(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&o.0).cloned().collect())
    }
    pub fn difference(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&o.0).cloned().collect())
    }
    pub fn intersection(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&o.0).cloned().collect())
    }
    /// Whether some member lies strictly below `p`.
    pub fn has_descendant(&self, p: &Path) -> bool {
        self.0
            .range(p.clone()..)
            .take_while(|q| q.starts_with(p))
            .any(|q| q.len() > p.len())
    }
    /// Adds every member of `o` (in place: [`FieldSet::union`] copies both sides).
    pub fn absorb(&mut self, o: FieldSet) {
        self.0.extend(o.0);
    }
    /// Removes every member of `o` (in place: [`FieldSet::difference`] copies what stays).
    pub fn remove_all(&mut self, o: &FieldSet) {
        if !o.is_empty() {
            self.0.retain(|p| !o.0.contains(p));
        }
    }
    /// Removes every member equal to or below a path that starts with one of the top-level
    /// `fields`.
    pub fn remove_top_level(&mut self, fields: &[&str]) {
        if !fields.is_empty() {
            self.0.retain(
                |p| !matches!(p.first(), Some(Pe::Field(f)) if fields.contains(&f.as_str())),
            );
        }
    }
    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Node::default();
        for p in &self.0 {
            let mut n = &mut root;
            for pe in p {
                n = n.children.entry(pe).or_default();
            }
            n.member = true;
        }
        root.to_json(false)
    }

    /// Parse a `fieldsV1` object; unknown keys are skipped like SMD does.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
            let Value::Object(m) = v else {
                out.insert(path.clone());
                return;
            };
            if m.is_empty() {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                return;
            }
            for (k, child) in m {
                if k == "." {
                    if !path.is_empty() {
                        out.insert(path.clone());
                    }
                    continue;
                }
                if let Some(pe) = parse_pe(k) {
                    path.push(pe);
                    walk(child, path, out);
                    path.pop();
                }
            }
        }
        let mut out = FieldSet::new();
        walk(v, &mut Vec::new(), &mut out);
        out
    }
}

/// Field names along a path, the form [`MergeSchema`] takes (list items collapse onto their list).
pub fn schema_path(p: &[Pe]) -> Vec<&str> {
    p.iter()
        .filter_map(|pe| match pe {
            Pe::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .collect()
}

/// The path element addressing `item` inside a list with `sem`, or `None` for atomic lists.
pub fn item_pe(sem: &ListSemantics, item: &Value, index: usize) -> Option<Pe> {
    match sem {
        ListSemantics::Atomic => None,
        ListSemantics::Set => Some(Pe::Value(item.clone())),
        ListSemantics::Map { keys } => match item {
            Value::Object(m) => {
                let mut kv: Vec<(String, Value)> = keys
                    .iter()
                    .filter_map(|k| m.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                if kv.is_empty() {
                    return Some(Pe::Index(index));
                }
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                Some(Pe::Key(kv))
            }
            _ => Some(Pe::Value(item.clone())),
        },
    }
}

/// Find the child of `v` addressed by `pe`.
pub fn child<'a>(v: &'a Value, pe: &Pe, sem: Option<&ListSemantics>) -> Option<&'a Value> {
    match (v, pe) {
        (Value::Object(m), Pe::Field(f)) => m.get(f),
        (Value::Array(a), Pe::Index(i)) => a.get(*i),
        (Value::Array(a), _) => {
            let sem = sem?;
            a.iter()
                .enumerate()
                .find(|(i, item)| item_pe(sem, item, *i).as_ref() == Some(pe))
                .map(|(_, item)| item)
        }
        _ => None,
    }
}

/// The value at `p` in `root`, if present.
pub fn get<'a>(root: &'a Value, p: &[Pe], schema: &dyn MergeSchema) -> Option<&'a Value> {
    let mut cur = root;
    for (i, pe) in p.iter().enumerate() {
        let sem = match pe {
            Pe::Field(_) => None,
            _ => Some(schema.list_semantics(&schema_path(&p[..i]))),
        };
        cur = child(cur, pe, sem.as_ref())?;
    }
    Some(cur)
}

/// Remove the value at `p` from `root`; returns whether something was removed.
pub fn remove(root: &mut Value, p: &[Pe], schema: &dyn MergeSchema) -> bool {
    let Some((last, parent)) = p.split_last() else {
        return false;
    };
    let sem = match last {
        Pe::Field(_) => None,
        _ => Some(schema.list_semantics(&schema_path(parent))),
    };
    let mut cur = root;
    for (i, pe) in parent.iter().enumerate() {
        let s = match pe {
            Pe::Field(_) => None,
            _ => Some(schema.list_semantics(&schema_path(&parent[..i]))),
        };
        let next = match (cur, pe) {
            (Value::Object(m), Pe::Field(f)) => m.get_mut(f),
            (Value::Array(a), Pe::Index(i)) => a.get_mut(*i),
            (Value::Array(a), _) => match s {
                Some(s) => a
                    .iter_mut()
                    .enumerate()
                    .find(|(i, item)| item_pe(&s, item, *i).as_ref() == Some(pe))
                    .map(|(_, item)| item),
                None => None,
            },
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (cur, last) {
        (Value::Object(m), Pe::Field(f)) => m.shift_remove(f).is_some(),
        (Value::Array(a), Pe::Index(i)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        (Value::Array(a), pe) => match sem {
            Some(s) => {
                let before = a.len();
                let mut idx = 0;
                a.retain(|item| {
                    let keep = item_pe(&s, item, idx).as_ref() != Some(pe);
                    idx += 1;
                    keep
                });
                a.len() != before
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trip_and_order() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:replicas": {}},
            "f:metadata2": {"f:finalizers": {".": {}, "v:\"x\"": {}}}
        });
        let s = FieldSet::from_fields_v1(&v);
        assert_eq!(s.0.len(), 8);
        let back = s.to_fields_v1();
        // Serialisation sorts fields by name.
        assert_eq!(
            back.to_string(),
            r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:metadata2":{"f:finalizers":{".":{},"v:\"x\"":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"a\"}":{".":{},"f:image":{},"f:name":{}}},"f:replicas":{}}}"#
        );
    }

    #[test]
    fn path_strings() {
        let p = vec![
            Pe::Field("spec".into()),
            Pe::Field("containers".into()),
            Pe::Key(vec![("name".into(), json!("nginx"))]),
            Pe::Field("image".into()),
        ];
        assert_eq!(path_string(&p), ".spec.containers[name=\"nginx\"].image");
        let p = vec![
            Pe::Field("ports".into()),
            Pe::Key(vec![
                ("containerPort".into(), json!(80)),
                ("protocol".into(), json!("TCP")),
            ]),
        ];
        assert_eq!(path_string(&p), ".ports[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(
            path_string(&[Pe::Field("f".into()), Pe::Value(json!("a"))]),
            ".f[=\"a\"]"
        );
        assert_eq!(
            pe_key(&p[1]),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
    }
}
