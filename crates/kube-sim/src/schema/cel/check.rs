//! The compile-time type checker: types from the schema, cel-go's error texts. Library
//! functions are typed from `library.rs`'s table (receiver, arity, result; their argument types
//! are checked when they run).

use super::CompileError;
use super::library::{self, DURATION, Receiver, Ret, TIMESTAMP};
use super::parse::{BinOp, CompKind, Expr, Lit, Pos};
use crate::schema::Node;

#[derive(Debug, Clone)]
pub(crate) enum Ty<'a> {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    Str,
    List(Box<Ty<'a>>),
    Map(Box<Ty<'a>>, Box<Ty<'a>>),
    /// A schema object; `bool` = apiVersion/kind/metadata are implicitly visible.
    Obj(&'a Node, bool),
    /// `metadata` of a resource root: only `name` and `generateName`.
    Meta,
    Type,
    /// A library type, by cel-go's name (`kubernetes.Quantity`, `net.IP`...).
    Opaque(&'static str),
}

impl<'a> Ty<'a> {
    pub(crate) fn of_node(n: &'a Node, with_meta: bool) -> Ty<'a> {
        if n.int_or_string {
            return Ty::Dyn;
        }
        match n.ty.as_str() {
            "object" => {
                if let Some(ap) = n.additional.as_deref()
                    && n.properties.is_empty()
                {
                    return Ty::Map(Box::new(Ty::Str), Box::new(Ty::of_node(ap, ap.embedded)));
                }
                Ty::Obj(n, with_meta || n.embedded)
            }
            "array" => match n.items.as_deref() {
                Some(i) => Ty::List(Box::new(Ty::of_node(i, i.embedded))),
                None => Ty::List(Box::new(Ty::Dyn)),
            },
            "string" => Ty::Str,
            "integer" => Ty::Int,
            "number" => Ty::Double,
            "boolean" => Ty::Bool,
            _ => Ty::Dyn,
        }
    }

    /// cel-go's name of a type, for messages.
    pub(crate) fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Null => "null_type".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::Str => "string".into(),
            Ty::List(e) => format!("list({})", e.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Obj(..) | Ty::Meta => "object".into(),
            Ty::Type => "type".into(),
            Ty::Opaque(n) if *n == library::OPTIONAL => "optional_type(dyn)".into(),
            Ty::Opaque(n) => (*n).into(),
        }
    }

    pub(crate) fn name_if_known(&self) -> Option<&'static str> {
        Some(match self {
            Ty::Dyn => return None,
            Ty::Null => "null_type",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::Str => "string",
            Ty::List(_) => "list",
            Ty::Map(..) => "map",
            Ty::Obj(..) | Ty::Meta => "object",
            Ty::Type => "type",
            Ty::Opaque(n) => n,
        })
    }

    fn is_dyn(&self) -> bool {
        matches!(self, Ty::Dyn)
    }

    fn is_num(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn same_kind(&self, o: &Ty<'_>) -> bool {
        match (self, o) {
            (Ty::Opaque(a), Ty::Opaque(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(o),
        }
    }

    fn is(&self, name: &str) -> bool {
        matches!(self, Ty::Opaque(n) if *n == name)
    }
}

pub(crate) struct Checker<'a> {
    self_ty: Ty<'a>,
    vars: Vec<(String, Ty<'a>)>,
    pub uses_old_self: bool,
}

const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

fn no_overload(pos: Pos, f: &str, args: &[&Ty<'_>]) -> CompileError {
    let names: Vec<String> = args.iter().map(|t| t.name()).collect();
    CompileError::Check {
        pos,
        msg: format!(
            "found no matching overload for '{f}' applied to '({})'",
            names.join(", ")
        ),
    }
}

fn no_method_overload(pos: Pos, f: &str, target: &Ty<'_>, args: &[&Ty<'_>]) -> CompileError {
    let names: Vec<String> = args.iter().map(|t| t.name()).collect();
    CompileError::Check {
        pos,
        msg: format!(
            "found no matching overload for '{f}' applied to '{}.({})'",
            target.name(),
            names.join(", ")
        ),
    }
}

fn undeclared(pos: Pos, name: &str) -> CompileError {
    CompileError::Check {
        pos,
        msg: format!("undeclared reference to '{name}' (in container '')"),
    }
}

impl<'a> Checker<'a> {
    pub(crate) fn new(node: &'a Node, is_root: bool) -> Self {
        Checker {
            self_ty: Ty::of_node(node, is_root),
            vars: Vec::new(),
            uses_old_self: false,
        }
    }

    pub(crate) fn check(&mut self, e: &Expr) -> Result<Ty<'a>, CompileError> {
        Ok(match e {
            Expr::Lit(l) => match l {
                Lit::Null => Ty::Null,
                Lit::Bool(_) => Ty::Bool,
                Lit::Int(_) => Ty::Int,
                Lit::Uint(_) => Ty::Uint,
                Lit::Double(_) => Ty::Double,
                Lit::Str(_) => Ty::Str,
            },
            Expr::Ident(name, pos) => {
                if let Some((_, t)) = self.vars.iter().rev().find(|(n, _)| n == name) {
                    return Ok(t.clone());
                }
                match name.as_str() {
                    "self" => self.self_ty.clone(),
                    "oldSelf" => {
                        self.uses_old_self = true;
                        self.self_ty.clone()
                    }
                    n if TYPE_NAMES.contains(&n) => Ty::Type,
                    _ => return Err(undeclared(*pos, name)),
                }
            }
            Expr::Select(operand, field, pos) | Expr::Has(operand, field, pos) => {
                let t = self.check(operand)?;
                let ft = self.select(&t, field, *pos)?;
                if matches!(e, Expr::Has(..)) {
                    Ty::Bool
                } else {
                    ft
                }
            }
            Expr::Index(operand, idx, pos) => {
                let t = self.check(operand)?;
                let it = self.check(idx)?;
                match &t {
                    Ty::List(elem) => {
                        if !(it.is_dyn() || matches!(it, Ty::Int | Ty::Uint)) {
                            return Err(no_overload(*pos, "_[_]", &[&t, &it]));
                        }
                        (**elem).clone()
                    }
                    Ty::Map(_, v) => (**v).clone(),
                    Ty::Dyn | Ty::Obj(..) | Ty::Meta => Ty::Dyn,
                    _ => return Err(no_overload(*pos, "_[_]", &[&t, &it])),
                }
            }
            Expr::List(items) => {
                let mut elem: Option<Ty<'a>> = None;
                for i in items {
                    let t = self.check(i)?;
                    elem = Some(match elem {
                        None => t,
                        Some(p) if p.same_kind(&t) => p,
                        Some(_) => Ty::Dyn,
                    });
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(entries, _) => {
                let mut kt: Option<Ty<'a>> = None;
                let mut vt: Option<Ty<'a>> = None;
                for (k, v) in entries {
                    let a = self.check(k)?;
                    let b = self.check(v)?;
                    kt = Some(match kt {
                        None => a,
                        Some(p) if p.same_kind(&a) => p,
                        Some(_) => Ty::Dyn,
                    });
                    vt = Some(match vt {
                        None => b,
                        Some(p) if p.same_kind(&b) => p,
                        Some(_) => Ty::Dyn,
                    });
                }
                Ty::Map(
                    Box::new(kt.unwrap_or(Ty::Dyn)),
                    Box::new(vt.unwrap_or(Ty::Dyn)),
                )
            }
            Expr::Cond(c, t, f) => {
                let ct = self.check(c)?;
                if !(ct.is_dyn() || matches!(ct, Ty::Bool)) {
                    return Err(no_overload(0, "_?_:_", &[&ct]));
                }
                let a = self.check(t)?;
                let b = self.check(f)?;
                if a.same_kind(&b) { a } else { Ty::Dyn }
            }
            Expr::Not(a) => {
                let t = self.check(a)?;
                if !(t.is_dyn() || matches!(t, Ty::Bool)) {
                    return Err(no_overload(0, "!_", &[&t]));
                }
                Ty::Bool
            }
            Expr::Neg(a, pos) => {
                let t = self.check(a)?;
                match t {
                    Ty::Int | Ty::Double | Ty::Dyn => t,
                    _ => return Err(no_overload(*pos, "-_", &[&t])),
                }
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let f = if matches!(e, Expr::And(..)) {
                    "_&&_"
                } else {
                    "_||_"
                };
                let x = self.check(a)?;
                let y = self.check(b)?;
                for t in [&x, &y] {
                    if !(t.is_dyn() || matches!(t, Ty::Bool)) {
                        return Err(no_overload(0, f, &[&x, &y]));
                    }
                }
                Ty::Bool
            }
            Expr::Binary(op, a, b, pos) => {
                let x = self.check(a)?;
                let y = self.check(b)?;
                self.binary(*op, &x, &y, *pos)?
            }
            Expr::Call(target, name, args, pos) => {
                self.call(target.as_deref(), name, args, *pos)?
            }
            Expr::Comp {
                kind,
                range,
                var,
                filter,
                body,
                pos,
            } => {
                let rt = self.check(range)?;
                let elem = match &rt {
                    Ty::List(e) => (**e).clone(),
                    Ty::Map(k, _) => (**k).clone(),
                    Ty::Obj(..) | Ty::Meta => Ty::Str,
                    Ty::Dyn => Ty::Dyn,
                    _ => {
                        return Err(CompileError::Check {
                            pos: *pos,
                            msg: format!(
                                "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                                rt.name()
                            ),
                        });
                    }
                };
                self.vars.push((var.clone(), elem.clone()));
                let res = (|| -> Result<Ty<'a>, CompileError> {
                    if let Some(f) = filter {
                        let ft = self.check(f)?;
                        if !(ft.is_dyn() || matches!(ft, Ty::Bool)) {
                            return Err(no_overload(*pos, "_&&_", &[&ft]));
                        }
                    }
                    let bt = self.check(body)?;
                    Ok(match kind {
                        CompKind::All | CompKind::Exists | CompKind::ExistsOne => {
                            if !(bt.is_dyn() || matches!(bt, Ty::Bool)) {
                                return Err(no_overload(*pos, "_&&_", &[&Ty::Bool, &bt]));
                            }
                            Ty::Bool
                        }
                        CompKind::Map => Ty::List(Box::new(bt)),
                        CompKind::Filter => {
                            if !(bt.is_dyn() || matches!(bt, Ty::Bool)) {
                                return Err(no_overload(*pos, "_?_:_", &[&bt]));
                            }
                            Ty::List(Box::new(elem.clone()))
                        }
                    })
                })();
                self.vars.pop();
                res?
            }
        })
    }

    fn select(&mut self, t: &Ty<'a>, field: &str, pos: Pos) -> Result<Ty<'a>, CompileError> {
        let undefined = || CompileError::Check {
            pos,
            msg: format!("undefined field '{field}'"),
        };
        Ok(match t {
            Ty::Obj(n, meta) => {
                if *meta && (field == "apiVersion" || field == "kind") {
                    return Ok(Ty::Str);
                }
                if *meta && field == "metadata" {
                    return Ok(Ty::Meta);
                }
                match n.prop(field) {
                    Some(p) => Ty::of_node(p, p.embedded),
                    None => return Err(undefined()),
                }
            }
            Ty::Meta => match field {
                "name" | "generateName" => Ty::Str,
                _ => return Err(undefined()),
            },
            Ty::Map(_, v) => (**v).clone(),
            Ty::Dyn => Ty::Dyn,
            other => {
                return Err(CompileError::Check {
                    pos,
                    msg: format!("type '{}' does not support field selection", other.name()),
                });
            }
        })
    }

    fn binary(&self, op: BinOp, x: &Ty<'a>, y: &Ty<'a>, pos: Pos) -> Result<Ty<'a>, CompileError> {
        let f = op.cel_name();
        let either_dyn = x.is_dyn() || y.is_dyn();
        Ok(match op {
            BinOp::Eq | BinOp::Ne => Ty::Bool,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ok = either_dyn
                    || (x.is_num() && y.is_num())
                    || (x.same_kind(y) && matches!(x, Ty::Str | Ty::Bool))
                    || (x.same_kind(y) && (x.is(TIMESTAMP) || x.is(DURATION)));
                if !ok {
                    return Err(no_overload(pos, f, &[x, y]));
                }
                Ty::Bool
            }
            BinOp::In => {
                let ok =
                    either_dyn || matches!(y, Ty::List(_) | Ty::Map(..) | Ty::Obj(..) | Ty::Meta);
                if !ok {
                    return Err(no_overload(pos, f, &[x, y]));
                }
                Ty::Bool
            }
            BinOp::Add => {
                if either_dyn {
                    if x.is_dyn() { y.clone() } else { x.clone() }
                } else if x.same_kind(y) && matches!(x, Ty::Int | Ty::Uint | Ty::Double | Ty::Str) {
                    x.clone()
                } else if x.is(DURATION) && (y.is(DURATION) || y.is(TIMESTAMP)) {
                    y.clone()
                } else if x.is(TIMESTAMP) && y.is(DURATION) {
                    x.clone()
                } else if let (Ty::List(a), Ty::List(b)) = (x, y) {
                    if a.same_kind(b) {
                        x.clone()
                    } else {
                        Ty::List(Box::new(Ty::Dyn))
                    }
                } else {
                    return Err(no_overload(pos, f, &[x, y]));
                }
            }
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                if either_dyn {
                    if x.is_dyn() { y.clone() } else { x.clone() }
                } else if x.same_kind(y)
                    && (matches!(x, Ty::Int | Ty::Uint)
                        || (op != BinOp::Mod && matches!(x, Ty::Double)))
                {
                    x.clone()
                } else if op == BinOp::Sub && x.is(TIMESTAMP) && y.is(TIMESTAMP) {
                    Ty::Opaque(DURATION)
                } else if op == BinOp::Sub && (x.is(TIMESTAMP) || x.is(DURATION)) && y.is(DURATION)
                {
                    x.clone()
                } else {
                    return Err(no_overload(pos, f, &[x, y]));
                }
            }
        })
    }

    /// `ns.f(...)` where `ns` is no variable and `ns.f` a library function: its qualified name.
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

    /// A call of a library function: typed from its signature; a known name with no matching
    /// overload and an unknown name get cel-go's messages.
    fn library(
        &self,
        target: Option<&Ty<'a>>,
        name: &str,
        args: &[&Ty<'a>],
        pos: Pos,
    ) -> Result<Ty<'a>, CompileError> {
        let recv = target.map(|t| match t {
            Ty::Dyn => Receiver::Dyn,
            Ty::Str => Receiver::Str,
            Ty::List(_) => Receiver::List,
            Ty::Opaque(n) => Receiver::Of(n),
            _ => Receiver::Other,
        });
        let Some(sig) = library::signature(name, recv, args.len()) else {
            if !library::is_library_function(name) {
                return Err(undeclared(pos, name));
            }
            return Err(match target {
                Some(t) => no_method_overload(pos, name, t, args),
                None => no_overload(pos, name, args),
            });
        };
        Ok(match sig.ret {
            Ret::Bool => Ty::Bool,
            Ret::Int => Ty::Int,
            Ret::Double => Ty::Double,
            Ret::Str => Ty::Str,
            Ret::Dyn => Ty::Dyn,
            Ret::StrList => Ty::List(Box::new(Ty::Str)),
            Ret::Query => Ty::Map(Box::new(Ty::Str), Box::new(Ty::List(Box::new(Ty::Str)))),
            Ret::Elem => match target {
                Some(Ty::List(e)) => (**e).clone(),
                _ => Ty::Dyn,
            },
            Ret::Of(n) => Ty::Opaque(n),
        })
    }

    fn call(
        &mut self,
        target: Option<&Expr>,
        name: &str,
        args: &[Expr],
        pos: Pos,
    ) -> Result<Ty<'a>, CompileError> {
        let qualified = self.qualified_call(target, name);
        let tt = match target {
            Some(t) if qualified.is_none() => Some(self.check(t)?),
            _ => None,
        };
        let mut ats = Vec::new();
        for a in args {
            ats.push(self.check(a)?);
        }
        let argrefs: Vec<&Ty<'a>> = ats.iter().collect();
        if let Some(q) = qualified {
            return self.library(None, &q, &argrefs, pos);
        }
        // conversions of library values (cel-go's standard overloads)
        if tt.is_none()
            && let [Ty::Opaque(n)] = ats.as_slice()
        {
            match name {
                "string"
                    if [
                        library::IP,
                        library::CIDR,
                        TIMESTAMP,
                        DURATION,
                        library::BYTES,
                    ]
                    .contains(n) =>
                {
                    return Ok(Ty::Str);
                }
                "int" if *n == TIMESTAMP => return Ok(Ty::Int),
                "size" if *n == library::BYTES => return Ok(Ty::Int),
                _ => {}
            }
        }
        match tt {
            None => match (name, ats.as_slice()) {
                ("size", [a]) => {
                    if !(a.is_dyn()
                        || matches!(
                            a,
                            Ty::Str | Ty::List(_) | Ty::Map(..) | Ty::Obj(..) | Ty::Meta
                        ))
                    {
                        return Err(no_overload(pos, name, &argrefs));
                    }
                    Ok(Ty::Int)
                }
                ("int", [a]) => conv(
                    pos,
                    name,
                    a,
                    &[Ty::Int, Ty::Uint, Ty::Double, Ty::Str],
                    Ty::Int,
                ),
                ("uint", [a]) => conv(
                    pos,
                    name,
                    a,
                    &[Ty::Int, Ty::Uint, Ty::Double, Ty::Str],
                    Ty::Uint,
                ),
                ("double", [a]) => conv(
                    pos,
                    name,
                    a,
                    &[Ty::Int, Ty::Uint, Ty::Double, Ty::Str],
                    Ty::Double,
                ),
                ("string", [a]) => conv(
                    pos,
                    name,
                    a,
                    &[Ty::Int, Ty::Uint, Ty::Double, Ty::Str, Ty::Bool],
                    Ty::Str,
                ),
                ("bool", [a]) => conv(pos, name, a, &[Ty::Bool, Ty::Str], Ty::Bool),
                ("dyn", [_]) => Ok(Ty::Dyn),
                ("type", [_]) => Ok(Ty::Type),
                ("matches", [a, b]) => {
                    if !((a.is_dyn() || matches!(a, Ty::Str))
                        && (b.is_dyn() || matches!(b, Ty::Str)))
                    {
                        return Err(no_overload(pos, name, &argrefs));
                    }
                    Ok(Ty::Bool)
                }
                (
                    "size" | "int" | "uint" | "double" | "string" | "bool" | "dyn" | "type"
                    | "matches",
                    _,
                ) => Err(no_overload(pos, name, &argrefs)),
                _ => self.library(None, name, &argrefs, pos),
            },
            Some(t) => {
                let string_target = t.is_dyn() || matches!(t, Ty::Str);
                match (name, ats.as_slice()) {
                    ("size", []) => {
                        if !(t.is_dyn()
                            || matches!(
                                t,
                                Ty::Str | Ty::List(_) | Ty::Map(..) | Ty::Obj(..) | Ty::Meta
                            ))
                        {
                            return Err(no_method_overload(pos, name, &t, &argrefs));
                        }
                        Ok(Ty::Int)
                    }
                    ("startsWith" | "endsWith" | "contains" | "matches", [a]) => {
                        if !string_target || !(a.is_dyn() || matches!(a, Ty::Str)) {
                            return Err(no_method_overload(pos, name, &t, &argrefs));
                        }
                        Ok(Ty::Bool)
                    }
                    ("lowerAscii" | "upperAscii" | "trim", []) => {
                        if !string_target {
                            return Err(no_method_overload(pos, name, &t, &argrefs));
                        }
                        Ok(Ty::Str)
                    }
                    ("join", [] | [_]) => {
                        let ok = match &t {
                            Ty::Dyn => true,
                            Ty::List(e) => e.is_dyn() || matches!(**e, Ty::Str),
                            _ => false,
                        };
                        if !ok || ats.iter().any(|a| !(a.is_dyn() || matches!(a, Ty::Str))) {
                            return Err(no_method_overload(pos, name, &t, &argrefs));
                        }
                        Ok(Ty::Str)
                    }
                    (
                        "size" | "startsWith" | "endsWith" | "contains" | "matches" | "lowerAscii"
                        | "upperAscii" | "trim" | "join",
                        _,
                    ) => Err(no_method_overload(pos, name, &t, &argrefs)),
                    _ => self.library(Some(&t), name, &argrefs, pos),
                }
            }
        }
    }
}

fn conv<'a>(
    pos: Pos,
    name: &str,
    a: &Ty<'a>,
    from: &[Ty<'static>],
    to: Ty<'a>,
) -> Result<Ty<'a>, CompileError> {
    if a.is_dyn() || from.iter().any(|f| f.same_kind(a)) {
        Ok(to)
    } else {
        Err(no_overload(pos, name, &[a]))
    }
}
