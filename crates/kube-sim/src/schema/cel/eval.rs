//! The evaluator. JSON values are wrapped lazily (no copy of `self`), typed by the schema node
//! the way upstream's `UnstructuredToVal` types them (`number` fields are doubles even when the
//! JSON is integral; int-or-string keeps what it holds). Library functions, and operators on
//! the values they return, are evaluated by kube-cel (`library.rs`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use kube_cel::cel::Value as CelValue;
use kube_cel::cel::objects::{Key, Map as CelMap};

use super::Program;
use super::library;
use super::parse::{BinOp, CompKind, Expr, Lit};
use crate::schema::Node;
use crate::schema::gofmt::float_v;

/// A CEL value.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    Map(Vec<(Val<'a>, Val<'a>)>),
    /// A JSON object from the data; `bool` = apiVersion/kind/metadata visible (resource roots).
    Obj(&'a Map<String, Value>, Option<&'a Node>),
    /// A JSON array from the data.
    Arr(&'a [Value], Option<&'a Node>),
    Type(String),
    /// A value of a library type (quantity, URL, IP, CIDR, named format, optional, timestamp,
    /// duration), as kube-cel holds it.
    Ext(kube_cel::cel::Value),
}

type R<'a> = Result<Val<'a>, String>;

const NO_OVERLOAD: &str = "no such overload";

fn no_overload<'a>() -> R<'a> {
    Err(NO_OVERLOAD.to_string())
}

/// `UnstructuredToVal` for one JSON value with its schema node.
pub(crate) fn from_json<'a>(v: &'a Value, n: Option<&'a Node>) -> Val<'a> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::String(s) => Val::Str(Cow::Borrowed(s)),
        Value::Number(num) => {
            let ty = n.map(|n| n.ty.as_str()).unwrap_or("");
            let int_or_string = n.is_some_and(|n| n.int_or_string);
            if ty == "number" && !int_or_string {
                Val::Double(num.as_f64().unwrap_or(0.0))
            } else if let Some(i) = num.as_i64() {
                Val::Int(i)
            } else if ty == "integer" {
                let f = num.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 {
                    Val::Int(f as i64)
                } else {
                    Val::Double(f)
                }
            } else {
                Val::Double(num.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => Val::Arr(a, n.and_then(|n| n.items.as_deref())),
        Value::Object(m) => Val::Obj(m, n),
    }
}

fn child_node<'a>(n: Option<&'a Node>, k: &str) -> Option<&'a Node> {
    let n = n?;
    n.prop(k).or(n.additional.as_deref())
}

impl<'a> Val<'a> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null_type",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint(_) => "uint",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::List(_) | Val::Arr(..) => "list",
            Val::Map(_) => "map",
            Val::Obj(_, n) => {
                if n.is_some_and(|n| n.additional.is_some() && n.properties.is_empty()) {
                    "map"
                } else {
                    "object"
                }
            }
            Val::Type(_) => "type",
            Val::Ext(x) => library::type_name(x),
        }
    }

    pub(crate) fn is_ext(&self) -> bool {
        matches!(self, Val::Ext(_))
    }

    fn items(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::List(l) => Some(l.clone()),
            Val::Arr(a, n) => Some(a.iter().map(|v| from_json(v, *n)).collect()),
            _ => None,
        }
    }

    pub(crate) fn entries(&self) -> Option<Vec<(Val<'a>, Val<'a>)>> {
        match self {
            Val::Map(m) => Some(m.clone()),
            Val::Obj(m, n) => Some(
                m.iter()
                    .map(|(k, v)| {
                        (
                            Val::Str(Cow::Borrowed(k.as_str())),
                            from_json(v, child_node(*n, k)),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn size(&self) -> Option<i64> {
        Some(match self {
            Val::Str(s) => s.chars().count() as i64,
            Val::List(l) => l.len() as i64,
            Val::Arr(a, _) => a.len() as i64,
            Val::Map(m) => m.len() as i64,
            Val::Obj(m, _) => m.len() as i64,
            _ => return None,
        })
    }

    /// Map lookup: `Ok(None)` when the key is absent.
    fn get(&self, key: &Val<'a>) -> Result<Option<Val<'a>>, String> {
        match self {
            Val::Obj(m, n) => match key {
                Val::Str(k) => Ok(m.get(k.as_ref()).map(|v| from_json(v, child_node(*n, k)))),
                _ => Ok(None),
            },
            Val::Map(m) => Ok(m
                .iter()
                .find(|(k, _)| equals(k, key))
                .map(|(_, v)| v.clone())),
            _ => Err(NO_OVERLOAD.to_string()),
        }
    }
}

fn num_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Uint(x), Val::Uint(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Uint(y)) => Some((*x as i128).cmp(&(*y as i128))),
        (Val::Uint(x), Val::Int(y)) => Some((*x as i128).cmp(&(*y as i128))),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y),
        (Val::Int(x), Val::Double(y)) => (*x as f64).partial_cmp(y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Uint(x), Val::Double(y)) => (*x as f64).partial_cmp(y),
        (Val::Double(x), Val::Uint(y)) => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
}

fn is_num(v: &Val<'_>) -> bool {
    matches!(v, Val::Int(_) | Val::Uint(_) | Val::Double(_))
}

/// CEL heterogeneous equality.
pub(crate) fn equals(a: &Val<'_>, b: &Val<'_>) -> bool {
    if is_num(a) && is_num(b) {
        return num_cmp(a, b) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Type(x), Val::Type(y)) => x == y,
        (Val::Ext(x), Val::Ext(y)) => x == y,
        (Val::List(_) | Val::Arr(..), Val::List(_) | Val::Arr(..)) => {
            let (x, y) = (a.items().unwrap_or_default(), b.items().unwrap_or_default());
            x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| equals(p, q))
        }
        (Val::Map(_) | Val::Obj(..), Val::Map(_) | Val::Obj(..)) => {
            let x = a.entries().unwrap_or_default();
            if Some(x.len() as i64) != b.size() {
                return false;
            }
            x.iter()
                .all(|(k, v)| matches!(b.get(k), Ok(Some(w)) if equals(v, &w)))
        }
        _ => false,
    }
}

fn compare<'a>(a: &Val<'a>, b: &Val<'a>) -> Result<Ordering, String> {
    if let Some(o) = num_cmp(a, b) {
        return Ok(o);
    }
    if is_num(a) && is_num(b) {
        // NaN: every comparison is false; model it as "unordered" by an error-free false below.
        return Err("NaN".into());
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(NO_OVERLOAD.into()),
    }
}

pub(crate) struct Evaluator<'a> {
    prog: &'a Program,
    self_val: &'a Value,
    node: &'a Node,
    old: Option<&'a Value>,
    vars: Vec<(String, Val<'a>)>,
    is_root: bool,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        prog: &'a Program,
        self_val: &'a Value,
        node: &'a Node,
        old: Option<&'a Value>,
        is_root: bool,
    ) -> Self {
        Evaluator {
            prog,
            self_val,
            node,
            old,
            vars: Vec::new(),
            is_root,
        }
    }

    pub(crate) fn run(&mut self, e: &'a Expr) -> R<'a> {
        self.eval(e)
    }

    fn eval(&mut self, e: &'a Expr) -> R<'a> {
        match e {
            Expr::Lit(l) => Ok(match l {
                Lit::Null => Val::Null,
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Int(i) => Val::Int(*i),
                Lit::Uint(u) => Val::Uint(*u),
                Lit::Double(d) => Val::Double(*d),
                Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
            }),
            Expr::Ident(name, _) => {
                if let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) {
                    return Ok(v.clone());
                }
                match name.as_str() {
                    "self" => Ok(from_json(self.self_val, Some(self.node))),
                    "oldSelf" => match self.old {
                        Some(o) => Ok(from_json(o, Some(self.node))),
                        None => Err("no such attribute(s): oldSelf".into()),
                    },
                    other => Ok(Val::Type(other.to_string())),
                }
            }
            Expr::Select(operand, field, _) => {
                let v = self.eval(operand)?;
                self.select(&v, field, false)
            }
            Expr::Has(operand, field, _) => {
                let v = self.eval(operand)?;
                self.select(&v, field, true)
            }
            Expr::Index(operand, idx, _) => {
                let v = self.eval(operand)?;
                let i = self.eval(idx)?;
                index(&v, &i)
            }
            Expr::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Ok(Val::List(out))
            }
            Expr::Map(entries, _) => {
                let mut out: Vec<(Val<'a>, Val<'a>)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let kv = self.eval(k)?;
                    if !matches!(kv, Val::Int(_) | Val::Uint(_) | Val::Bool(_) | Val::Str(_)) {
                        return Err(format!("unsupported key type: {}", kv.type_name()));
                    }
                    let vv = self.eval(v)?;
                    if out.iter().any(|(x, _)| equals(x, &kv)) {
                        return Err(format!("Failed with repeated key: {}", show(&kv)));
                    }
                    out.push((kv, vv));
                }
                Ok(Val::Map(out))
            }
            Expr::Cond(c, t, f) => match self.eval(c)? {
                Val::Bool(true) => self.eval(t),
                Val::Bool(false) => self.eval(f),
                _ => no_overload(),
            },
            Expr::Not(a) => match self.eval(a)? {
                Val::Bool(b) => Ok(Val::Bool(!b)),
                _ => no_overload(),
            },
            Expr::Neg(a, _) => match self.eval(a)? {
                Val::Int(i) => i
                    .checked_neg()
                    .map(Val::Int)
                    .ok_or_else(|| "integer overflow".into()),
                Val::Double(d) => Ok(Val::Double(-d)),
                _ => no_overload(),
            },
            Expr::And(a, b) => {
                let x = self.eval(a);
                if matches!(x, Ok(Val::Bool(false))) {
                    return Ok(Val::Bool(false));
                }
                let y = self.eval(b);
                match (x, y) {
                    (_, Ok(Val::Bool(false))) => Ok(Val::Bool(false)),
                    (Ok(Val::Bool(true)), Ok(Val::Bool(true))) => Ok(Val::Bool(true)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => no_overload(),
                }
            }
            Expr::Or(a, b) => {
                let x = self.eval(a);
                if matches!(x, Ok(Val::Bool(true))) {
                    return Ok(Val::Bool(true));
                }
                let y = self.eval(b);
                match (x, y) {
                    (_, Ok(Val::Bool(true))) => Ok(Val::Bool(true)),
                    (Ok(Val::Bool(false)), Ok(Val::Bool(false))) => Ok(Val::Bool(false)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => no_overload(),
                }
            }
            Expr::Binary(op, a, b, _) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                binary(*op, x, y)
            }
            Expr::Call(target, name, args, _) => {
                if let Some(qualified) = self.qualified_call(target.as_deref(), name) {
                    let mut av = Vec::with_capacity(args.len());
                    for a in args {
                        av.push(self.eval(a)?);
                    }
                    return library_call(None, &qualified, &av);
                }
                let t = match target {
                    Some(t) => Some(self.eval(t)?),
                    None => None,
                };
                let mut av = Vec::with_capacity(args.len());
                for a in args {
                    av.push(self.eval(a)?);
                }
                self.call(t, name, av)
            }
            Expr::Comp {
                kind,
                range,
                var,
                filter,
                body,
                ..
            } => {
                let r = self.eval(range)?;
                let elems: Vec<Val<'a>> = match &r {
                    Val::List(_) | Val::Arr(..) => r.items().unwrap_or_default(),
                    Val::Map(_) | Val::Obj(..) => r
                        .entries()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect(),
                    _ => return no_overload(),
                };
                self.comprehension(*kind, elems, var, filter.as_deref(), body)
            }
        }
    }

    fn comprehension(
        &mut self,
        kind: CompKind,
        elems: Vec<Val<'a>>,
        var: &str,
        filter: Option<&'a Expr>,
        body: &'a Expr,
    ) -> R<'a> {
        let mut err: Option<String> = None;
        let mut count = 0usize;
        let mut out = Vec::new();
        for el in elems {
            self.vars.push((var.to_string(), el.clone()));
            let res = (|| -> Result<Option<R<'a>>, String> {
                match kind {
                    CompKind::All | CompKind::Exists => {
                        let r = self.eval(body);
                        Ok(Some(r))
                    }
                    CompKind::ExistsOne => {
                        match self.eval(body)? {
                            Val::Bool(true) => count += 1,
                            Val::Bool(false) => {}
                            _ => return Err(NO_OVERLOAD.into()),
                        }
                        Ok(None)
                    }
                    CompKind::Filter => {
                        match self.eval(body)? {
                            Val::Bool(true) => out.push(el.clone()),
                            Val::Bool(false) => {}
                            _ => return Err(NO_OVERLOAD.into()),
                        }
                        Ok(None)
                    }
                    CompKind::Map => {
                        if let Some(f) = filter {
                            match self.eval(f)? {
                                Val::Bool(true) => {}
                                Val::Bool(false) => return Ok(None),
                                _ => return Err(NO_OVERLOAD.into()),
                            }
                        }
                        out.push(self.eval(body)?);
                        Ok(None)
                    }
                }
            })();
            self.vars.pop();
            match res {
                Err(e) => return Err(e),
                Ok(Some(r)) => match (kind, r) {
                    (CompKind::All, Ok(Val::Bool(false))) => return Ok(Val::Bool(false)),
                    (CompKind::Exists, Ok(Val::Bool(true))) => return Ok(Val::Bool(true)),
                    (_, Ok(Val::Bool(_))) => {}
                    (_, Ok(_)) => err = err.or(Some(NO_OVERLOAD.into())),
                    (_, Err(e)) => err = err.or(Some(e)),
                },
                Ok(None) => {}
            }
        }
        match kind {
            CompKind::All => err.map_or(Ok(Val::Bool(true)), Err),
            CompKind::Exists => err.map_or(Ok(Val::Bool(false)), Err),
            CompKind::ExistsOne => Ok(Val::Bool(count == 1)),
            CompKind::Map | CompKind::Filter => Ok(Val::List(out)),
        }
    }

    /// `ns.f(...)` where `ns` is no variable and `ns.f` a library function (`sets.contains`,
    /// `format.dns1123Label`, `optional.of`...): its qualified name.
    fn qualified_call(&self, target: Option<&Expr>, name: &str) -> Option<String> {
        let Some(Expr::Ident(ns, _)) = target else {
            return None;
        };
        if ns == "self" || ns == "oldSelf" || self.vars.iter().any(|(v, _)| v == ns) {
            return None;
        }
        let qualified = format!("{ns}.{name}");
        library::is_library_function(&qualified).then_some(qualified)
    }

    fn select(&self, v: &Val<'a>, field: &str, test: bool) -> R<'a> {
        match v {
            Val::Obj(m, n) => {
                let got = m.get(field);
                if test {
                    return Ok(Val::Bool(got.is_some()));
                }
                match got {
                    Some(x) => Ok(from_json(x, child_node(*n, field))),
                    None => Err(format!("no such key: {field}")),
                }
            }
            Val::Map(_) => {
                let k = Val::Str(Cow::Owned(field.to_string()));
                match v.get(&k)? {
                    Some(x) if !test => Ok(x),
                    Some(_) => Ok(Val::Bool(true)),
                    None if test => Ok(Val::Bool(false)),
                    None => Err(format!("no such key: {field}")),
                }
            }
            _ => no_overload(),
        }
    }

    fn regex(&self, pat: &str) -> Result<Cow<'a, Regex>, String> {
        match self.prog.regexes.get(pat) {
            Some(r) => Ok(Cow::Borrowed(r)),
            None => Regex::new(pat)
                .map(Cow::Owned)
                .map_err(|e| format!("invalid regular expression '{pat}': {e}")),
        }
    }

    fn call(&self, target: Option<Val<'a>>, name: &str, args: Vec<Val<'a>>) -> R<'a> {
        let _ = self.is_root;
        if target.as_ref().is_some_and(Val::is_ext) || args.iter().any(Val::is_ext) {
            return library_call(target.as_ref(), name, &args);
        }
        match (target.as_ref(), name, args.as_slice()) {
            (None, "size", [a]) | (Some(a), "size", []) => {
                a.size().map(Val::Int).ok_or_else(|| NO_OVERLOAD.into())
            }
            (None, "int", [a]) => to_int(a),
            (None, "uint", [a]) => to_uint(a),
            (None, "double", [a]) => to_double(a),
            (None, "string", [a]) => to_string(a),
            (None, "bool", [a]) => match a {
                Val::Bool(b) => Ok(Val::Bool(*b)),
                Val::Str(s) => match s.as_ref() {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Val::Bool(true)),
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Val::Bool(false)),
                    _ => Err("type conversion error from 'string' to 'bool'".to_string()),
                },
                _ => no_overload(),
            },
            (None, "dyn", [a]) => Ok(a.clone()),
            (None, "type", [a]) => Ok(Val::Type(a.type_name().to_string())),
            (None, "matches", [Val::Str(s), Val::Str(p)])
            | (Some(Val::Str(s)), "matches", [Val::Str(p)]) => {
                Ok(Val::Bool(self.regex(p)?.is_match(s)))
            }
            (Some(Val::Str(s)), "startsWith", [Val::Str(p)]) => {
                Ok(Val::Bool(s.starts_with(p.as_ref())))
            }
            (Some(Val::Str(s)), "endsWith", [Val::Str(p)]) => {
                Ok(Val::Bool(s.ends_with(p.as_ref())))
            }
            (Some(Val::Str(s)), "contains", [Val::Str(p)]) => Ok(Val::Bool(s.contains(p.as_ref()))),
            (Some(Val::Str(s)), "lowerAscii", []) => {
                Ok(Val::Str(Cow::Owned(s.to_ascii_lowercase())))
            }
            (Some(Val::Str(s)), "upperAscii", []) => {
                Ok(Val::Str(Cow::Owned(s.to_ascii_uppercase())))
            }
            (Some(Val::Str(s)), "trim", []) => Ok(Val::Str(Cow::Owned(s.trim().to_string()))),
            (Some(l @ (Val::List(_) | Val::Arr(..))), "join", rest) => {
                let sep = match rest {
                    [] => String::new(),
                    [Val::Str(s)] => s.to_string(),
                    _ => return no_overload(),
                };
                let mut parts = Vec::new();
                for i in l.items().unwrap_or_default() {
                    match i {
                        Val::Str(s) => parts.push(s.to_string()),
                        _ => return no_overload(),
                    }
                }
                Ok(Val::Str(Cow::Owned(parts.join(&sep))))
            }
            _ if library::is_library_function(name) => library_call(target.as_ref(), name, &args),
            _ => no_overload(),
        }
    }
}

/// A library function (or an operator on a library value), evaluated by kube-cel.
fn library_call<'a>(target: Option<&Val<'a>>, name: &str, args: &[Val<'a>]) -> R<'a> {
    let target = target.map(to_cel).transpose()?;
    let args = args.iter().map(to_cel).collect::<Result<Vec<_>, _>>()?;
    library::call(target, name, args).map(from_cel)
}

/// kube-cel's value for `v` (the receiver or an argument of a library call).
fn to_cel(v: &Val<'_>) -> Result<CelValue, String> {
    Ok(match v {
        Val::Null => CelValue::Null,
        Val::Bool(b) => CelValue::Bool(*b),
        Val::Int(i) => CelValue::Int(*i),
        Val::Uint(u) => CelValue::UInt(*u),
        Val::Double(d) => CelValue::Float(*d),
        Val::Str(s) => CelValue::String(Arc::new(s.to_string())),
        Val::List(items) => CelValue::List(Arc::new(
            items.iter().map(to_cel).collect::<Result<_, _>>()?,
        )),
        Val::Arr(items, n) => CelValue::List(Arc::new(
            items
                .iter()
                .map(|i| to_cel(&from_json(i, *n)))
                .collect::<Result<_, _>>()?,
        )),
        Val::Map(_) | Val::Obj(..) => {
            let mut map = std::collections::HashMap::new();
            for (k, val) in v.entries().unwrap_or_default() {
                let key = match k {
                    Val::Str(s) => Key::String(Arc::new(s.into_owned())),
                    Val::Int(i) => Key::Int(i),
                    Val::Uint(u) => Key::Uint(u),
                    Val::Bool(b) => Key::Bool(b),
                    _ => return Err(NO_OVERLOAD.into()),
                };
                map.insert(key, to_cel(&val)?);
            }
            CelValue::Map(CelMap { map: Arc::new(map) })
        }
        Val::Type(_) => return Err(NO_OVERLOAD.into()),
        Val::Ext(x) => x.clone(),
    })
}

/// The value of a library call's result: JSON-like values become kube-sim's own, the rest
/// stays kube-cel's.
fn from_cel<'a>(v: CelValue) -> Val<'a> {
    match v {
        CelValue::Null => Val::Null,
        CelValue::Bool(b) => Val::Bool(b),
        CelValue::Int(i) => Val::Int(i),
        CelValue::UInt(u) => Val::Uint(u),
        CelValue::Float(d) => Val::Double(d),
        CelValue::String(s) => Val::Str(Cow::Owned(s.to_string())),
        CelValue::List(items) => Val::List(items.iter().cloned().map(from_cel).collect()),
        CelValue::Map(m) => {
            // `cel` maps are hash maps: give them a stable order.
            let mut entries: Vec<(&Key, &CelValue)> = m.map.iter().collect();
            entries.sort_by_key(|(k, _)| key_order(k));
            Val::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .map(|(k, v)| {
                        let k = match k {
                            Key::Int(i) => Val::Int(i),
                            Key::Uint(u) => Val::Uint(u),
                            Key::Bool(b) => Val::Bool(b),
                            Key::String(s) => Val::Str(Cow::Owned(s.to_string())),
                        };
                        (k, from_cel(v))
                    })
                    .collect(),
            )
        }
        other => Val::Ext(other),
    }
}

fn key_order(k: &Key) -> (u8, i128, &str) {
    match k {
        Key::Bool(b) => (0, i128::from(*b), ""),
        Key::Int(i) => (1, i128::from(*i), ""),
        Key::Uint(u) => (2, i128::from(*u), ""),
        Key::String(s) => (3, 0, s.as_str()),
    }
}

fn show(v: &Val<'_>) -> String {
    match v {
        Val::Str(s) => s.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Uint(u) => u.to_string(),
        Val::Double(d) => float_v(*d),
        Val::Bool(b) => b.to_string(),
        Val::Null => "null".into(),
        other => other.type_name().to_string(),
    }
}

fn index<'a>(v: &Val<'a>, i: &Val<'a>) -> R<'a> {
    match v {
        Val::List(_) | Val::Arr(..) => {
            let idx = match i {
                Val::Int(x) => *x,
                Val::Uint(x) => i64::try_from(*x).map_err(|_| "index out of range".to_string())?,
                Val::Double(d) if d.fract() == 0.0 => *d as i64,
                Val::Double(d) => return Err(format!("unsupported index value {}", float_v(*d))),
                _ => return no_overload(),
            };
            let size = v.size().unwrap_or(0);
            if idx < 0 || idx >= size {
                return Err(format!("index '{idx}' out of range in list size '{size}'"));
            }
            let u = idx as usize;
            Ok(match v {
                Val::List(l) => l[u].clone(),
                Val::Arr(a, n) => from_json(&a[u], *n),
                _ => unreachable!(),
            })
        }
        Val::Map(_) | Val::Obj(..) => match v.get(i)? {
            Some(x) => Ok(x),
            None => Err(format!("no such key: {}", show(i))),
        },
        _ => no_overload(),
    }
}

fn binary<'a>(op: BinOp, x: Val<'a>, y: Val<'a>) -> R<'a> {
    if (x.is_ext() || y.is_ext()) && !matches!(op, BinOp::Eq | BinOp::Ne) {
        return library::operator(op.cel_name(), to_cel(&x)?, to_cel(&y)?).map(from_cel);
    }
    match op {
        BinOp::Eq => Ok(Val::Bool(equals(&x, &y))),
        BinOp::Ne => Ok(Val::Bool(!equals(&x, &y))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => match compare(&x, &y) {
            Ok(o) => Ok(Val::Bool(match op {
                BinOp::Lt => o == Ordering::Less,
                BinOp::Le => o != Ordering::Greater,
                BinOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })),
            Err(e) if e == "NaN" => Ok(Val::Bool(false)),
            Err(e) => Err(e),
        },
        BinOp::In => match &y {
            Val::List(_) | Val::Arr(..) => Ok(Val::Bool(
                y.items().unwrap_or_default().iter().any(|e| equals(e, &x)),
            )),
            Val::Map(_) | Val::Obj(..) => Ok(Val::Bool(y.get(&x)?.is_some())),
            _ => no_overload(),
        },
        BinOp::Add => match (x, y) {
            (Val::Int(a), Val::Int(b)) => a
                .checked_add(b)
                .map(Val::Int)
                .ok_or_else(|| "integer overflow".into()),
            (Val::Uint(a), Val::Uint(b)) => a
                .checked_add(b)
                .map(Val::Uint)
                .ok_or_else(|| "unsigned integer overflow".into()),
            (Val::Double(a), Val::Double(b)) => Ok(Val::Double(a + b)),
            (Val::Str(a), Val::Str(b)) => Ok(Val::Str(Cow::Owned(format!("{a}{b}")))),
            (a @ (Val::List(_) | Val::Arr(..)), b @ (Val::List(_) | Val::Arr(..))) => {
                let mut l = a.items().unwrap_or_default();
                l.extend(b.items().unwrap_or_default());
                Ok(Val::List(l))
            }
            _ => no_overload(),
        },
        BinOp::Sub | BinOp::Mul => match (x, y) {
            (Val::Int(a), Val::Int(b)) => {
                let r = if op == BinOp::Sub {
                    a.checked_sub(b)
                } else {
                    a.checked_mul(b)
                };
                r.map(Val::Int).ok_or_else(|| "integer overflow".into())
            }
            (Val::Uint(a), Val::Uint(b)) => {
                let r = if op == BinOp::Sub {
                    a.checked_sub(b)
                } else {
                    a.checked_mul(b)
                };
                r.map(Val::Uint)
                    .ok_or_else(|| "unsigned integer overflow".into())
            }
            (Val::Double(a), Val::Double(b)) => {
                Ok(Val::Double(if op == BinOp::Sub { a - b } else { a * b }))
            }
            _ => no_overload(),
        },
        BinOp::Div | BinOp::Mod => match (x, y) {
            (Val::Int(_), Val::Int(0)) | (Val::Uint(_), Val::Uint(0)) => Err(if op == BinOp::Div {
                "division by zero".into()
            } else {
                "modulus by zero".into()
            }),
            (Val::Int(a), Val::Int(b)) => {
                let r = if op == BinOp::Div {
                    a.checked_div(b)
                } else {
                    a.checked_rem(b)
                };
                r.map(Val::Int).ok_or_else(|| "integer overflow".into())
            }
            (Val::Uint(a), Val::Uint(b)) => {
                Ok(Val::Uint(if op == BinOp::Div { a / b } else { a % b }))
            }
            (Val::Double(a), Val::Double(b)) if op == BinOp::Div => Ok(Val::Double(a / b)),
            _ => no_overload(),
        },
    }
}

fn to_int<'a>(a: &Val<'a>) -> R<'a> {
    match a {
        Val::Int(i) => Ok(Val::Int(*i)),
        Val::Uint(u) => i64::try_from(*u)
            .map(Val::Int)
            .map_err(|_| "integer overflow".into()),
        Val::Double(d) => {
            if d.is_finite() && *d > -9.223_372_036_854_776e18 && *d < 9.223_372_036_854_776e18 {
                Ok(Val::Int(d.trunc() as i64))
            } else {
                Err("integer overflow".into())
            }
        }
        Val::Str(s) => s
            .parse::<i64>()
            .map(Val::Int)
            .map_err(|_| "type conversion error from 'string' to 'int'".to_string()),
        _ => no_overload(),
    }
}

fn to_uint<'a>(a: &Val<'a>) -> R<'a> {
    match a {
        Val::Uint(u) => Ok(Val::Uint(*u)),
        Val::Int(i) => u64::try_from(*i)
            .map(Val::Uint)
            .map_err(|_| "unsigned integer overflow".into()),
        Val::Double(d) => {
            if d.is_finite() && *d >= 0.0 && *d < 1.844_674_407_370_955_2e19 {
                Ok(Val::Uint(d.trunc() as u64))
            } else {
                Err("unsigned integer overflow".into())
            }
        }
        Val::Str(s) => s
            .parse::<u64>()
            .map(Val::Uint)
            .map_err(|_| "type conversion error from 'string' to 'uint'".to_string()),
        _ => no_overload(),
    }
}

fn to_double<'a>(a: &Val<'a>) -> R<'a> {
    match a {
        Val::Double(d) => Ok(Val::Double(*d)),
        Val::Int(i) => Ok(Val::Double(*i as f64)),
        Val::Uint(u) => Ok(Val::Double(*u as f64)),
        Val::Str(s) => s
            .parse::<f64>()
            .map(Val::Double)
            .map_err(|_| "type conversion error from 'string' to 'double'".to_string()),
        _ => no_overload(),
    }
}

fn to_string<'a>(a: &Val<'a>) -> R<'a> {
    match a {
        Val::Str(s) => Ok(Val::Str(s.clone())),
        Val::Int(i) => Ok(Val::Str(Cow::Owned(i.to_string()))),
        Val::Uint(u) => Ok(Val::Str(Cow::Owned(u.to_string()))),
        Val::Double(d) => Ok(Val::Str(Cow::Owned(float_v(*d)))),
        Val::Bool(b) => Ok(Val::Str(Cow::Owned(b.to_string()))),
        _ => no_overload(),
    }
}
