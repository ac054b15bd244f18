//! CEL for CRD `x-kubernetes-validations` rules: kube-sim's interpreter for the language core,
//! kube-cel for the Kubernetes libraries.
//!
//! The core is kube-sim's own (`parse.rs`, `check.rs`, `eval.rs`), because the one Rust CEL
//! engine, the `cel` crate under kube-cel, diverges from cel-go where CRD rules notice (see
//! `crates/kube-sim/src/schema/CEL.md`): it has no type checker (so no compile-time errors,
//! no positions), and its evaluator differs in error absorption, heterogeneous equality and
//! error texts. The core covers:
//!
//! * variables `self`, `oldSelf` (transition rules), comprehension variables;
//! * literals: int (decimal, hex, negative), uint (`1u`), double, string (single, double, triple
//!   quoted, raw `r'..'`, all escapes), bool, null, lists `[..]`, maps `{k: v}`;
//! * field selection `a.b`, indexing `l[0]`, `m['k']`, `has(a.b)`;
//! * operators `== != < <= > >=` (heterogeneous numeric comparison), `&& || !` (commutative
//!   error absorption), `+ - * / %` on int/uint/double, `+` on strings and lists, unary `-`,
//!   `?:`, `in` (lists and maps);
//! * functions `size()` (function and method), `int() uint() double() string() bool() dyn()
//!   type()`, `matches()` (function and method, RE2 via the `regex` crate, unanchored);
//! * string methods `startsWith endsWith contains matches lowerAscii upperAscii trim`, list
//!   method `join([sep])`;
//! * macros `all exists exists_one map (2 and 3 arguments) filter` on lists and maps (keys).
//!
//! Every other function of the Kubernetes 1.32 CRD environment (strings extension, lists, regex,
//! URLs, IPs, CIDRs, quantities, named formats, sets, optional values, timestamps, durations) is
//! typed from the table in `library.rs` and evaluated by kube-cel. What neither covers (bytes
//! literals, optional syntax, two-variable comprehensions) is refused when the CRD is created,
//! so a rule is never silently skipped.
//!
//! A light type checker runs at compile time with the types the schema gives `self` (objects
//! with their declared properties, `additionalProperties` maps, typed lists, scalars;
//! int-or-string is `dyn`): it reports undefined fields, undeclared identifiers, a rule whose
//! type is not bool, and obviously mismatched operand types, with cel-go's message texts.

mod check;
mod eval;
mod library;
pub mod parse;

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

pub use eval::Val;
use parse::{Expr, Pos};

use super::Node;

/// Where what kube-sim refuses is documented (linked from every rejection message).
pub const SUBSET_DOC: &str = "crates/kube-sim/README.md#cel";

/// Why a rule did not compile.
#[derive(Debug, Clone, PartialEq)]
pub enum CompileError {
    /// A construct neither kube-sim nor kube-cel evaluates (the CRD is rejected with a
    /// simulator-specific message).
    Unsupported(String),
    /// A parse error.
    Syntax { pos: Pos, msg: String },
    /// A type-check error (undefined field, undeclared reference, no matching overload).
    Check { pos: Pos, msg: String },
}

impl CompileError {
    /// The message: kube-sim's own for unsupported constructs, cel-go's issue format
    /// (`ERROR: <input>:1:5: undefined field 'x'` plus the source line and a caret) otherwise.
    pub fn render(&self, src: &str) -> String {
        match self {
            CompileError::Unsupported(what) => {
                format!("kube-sim does not support CEL {what} (supported subset: see {SUBSET_DOC})")
            }
            CompileError::Syntax { pos, msg } | CompileError::Check { pos, msg } => {
                issue(src, *pos, msg)
            }
        }
    }
}

fn issue(src: &str, pos: Pos, msg: &str) -> String {
    let mut line = 1;
    let mut col = 0;
    let mut line_start = 0;
    for (i, c) in src.chars().enumerate() {
        if i == pos {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 0;
            line_start = i + 1;
        } else {
            col += 1;
        }
    }
    let text: String = src
        .chars()
        .skip(line_start)
        .take_while(|c| *c != '\n')
        .collect();
    format!(
        "ERROR: <input>:{line}:{}: {msg}\n | {text}\n | {}^",
        col + 1,
        ".".repeat(col)
    )
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Program {
    pub(crate) expr: Expr,
    /// Whether the expression references `oldSelf` (a transition rule).
    pub uses_old_self: bool,
    /// The checked result type: `Some("bool")`, `Some("string")`..., `None` for dyn.
    pub result_type: Option<&'static str>,
    pub(crate) regexes: HashMap<String, Regex>,
}

/// Compile `src` for a rule on `node` (`is_root`: the resource root, where `apiVersion`, `kind`
/// and `metadata.name`/`metadata.generateName` are also visible).
pub fn compile(src: &str, node: &Node, is_root: bool) -> Result<Program, CompileError> {
    let expr = parse::parse(src)?;
    let mut checker = check::Checker::new(node, is_root);
    let ty = checker.check(&expr)?;
    let mut regexes = HashMap::new();
    collect_regexes(&expr, &mut regexes).map_err(|(pos, msg)| CompileError::Check { pos, msg })?;
    Ok(Program {
        uses_old_self: checker.uses_old_self,
        result_type: ty.name_if_known(),
        expr,
        regexes,
    })
}

fn collect_regexes(e: &Expr, out: &mut HashMap<String, Regex>) -> Result<(), (Pos, String)> {
    use parse::Lit;
    match e {
        Expr::Call(target, name, args, pos) if name == "matches" => {
            let pat = match (target, args.as_slice()) {
                (Some(_), [Expr::Lit(Lit::Str(p))]) | (None, [_, Expr::Lit(Lit::Str(p))]) => {
                    Some(p)
                }
                _ => None,
            };
            if let Some(p) = pat {
                match Regex::new(p) {
                    Ok(r) => {
                        out.insert(p.clone(), r);
                    }
                    Err(err) => {
                        return Err((*pos, format!("invalid regular expression '{p}': {err}")));
                    }
                }
            }
            if let Some(t) = target {
                collect_regexes(t, out)?;
            }
            for a in args {
                collect_regexes(a, out)?;
            }
            Ok(())
        }
        Expr::Lit(_) | Expr::Ident(..) => Ok(()),
        Expr::Select(a, _, _) | Expr::Has(a, _, _) | Expr::Not(a) | Expr::Neg(a, _) => {
            collect_regexes(a, out)
        }
        Expr::Index(a, b, _) | Expr::Binary(_, a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
            collect_regexes(a, out)?;
            collect_regexes(b, out)
        }
        Expr::Call(t, _, args, _) => {
            if let Some(t) = t {
                collect_regexes(t, out)?;
            }
            args.iter().try_for_each(|a| collect_regexes(a, out))
        }
        Expr::List(items) => items.iter().try_for_each(|a| collect_regexes(a, out)),
        Expr::Map(entries, _) => entries.iter().try_for_each(|(k, v)| {
            collect_regexes(k, out)?;
            collect_regexes(v, out)
        }),
        Expr::Cond(a, b, c) => {
            collect_regexes(a, out)?;
            collect_regexes(b, out)?;
            collect_regexes(c, out)
        }
        Expr::Comp {
            range,
            filter,
            body,
            ..
        } => {
            collect_regexes(range, out)?;
            if let Some(f) = filter {
                collect_regexes(f, out)?;
            }
            collect_regexes(body, out)
        }
    }
}

impl Program {
    /// Evaluate with `self` bound to `value` (typed by `node`) and `oldSelf` to `old`.
    /// Errors are cel-go's runtime error texts (`no such key: x`, `division by zero`,
    /// `no such overload`...).
    pub fn eval<'a>(
        &'a self,
        value: &'a Value,
        node: &'a Node,
        old: Option<&'a Value>,
        is_root: bool,
    ) -> Result<Val<'a>, String> {
        eval::Evaluator::new(self, value, node, old, is_root).run(&self.expr)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
