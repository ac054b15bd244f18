//! The Kubernetes CEL libraries, evaluated by kube-cel.
//!
//! kube-sim's own interpreter keeps the CEL core (parsing with positions, the type checker and its
//! cel-go messages, cel-go's evaluation semantics over the JSON objects); every library function
//! a Kubernetes 1.32 CRD rule may call beyond that core is run by [kube-cel] (kube-rs's port of
//! `k8s.io/apiserver/pkg/cel/library` and cel-go's extensions on the `cel` crate). This module is
//! the seam: the table of those functions for the type checker ([`signature`]), and the call
//! into kube-cel at evaluation ([`call`], [`operator`]) on kube-cel's values (the evaluator
//! converts its own to and from them).
//!
//! The table is the 1.32 CRD environment (`k8s.io/apiserver/pkg/cel/environment/base.go`):
//! the strings extension (v2), the Kubernetes list, regex, URL, IP, CIDR, quantity and named
//! format libraries, sets, optional values, timestamps and durations. Semver (1.33) and the
//! lists extension (1.34) are not in it, although kube-cel implements them: a rule using them
//! is refused as upstream 1.32 refuses it.
//!
//! [kube-cel]: https://github.com/kube-rs/kube-cel

use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::common::ast::{CallExpr, Expr as CelExpr, IdedExpr};
use kube_cel::cel::objects::OptionalValue;
use kube_cel::cel::{Context, ExecutionError, Value};

pub(crate) const QUANTITY: &str = "kubernetes.Quantity";
pub(crate) const URL: &str = "kubernetes.URL";
pub(crate) const IP: &str = "net.IP";
pub(crate) const CIDR: &str = "net.CIDR";
pub(crate) const NAMED_FORMAT: &str = "kubernetes.NamedFormat";
pub(crate) const OPTIONAL: &str = "optional_type";
pub(crate) const TIMESTAMP: &str = "google.protobuf.Timestamp";
pub(crate) const DURATION: &str = "google.protobuf.Duration";
pub(crate) const BYTES: &str = "bytes";

/// What a library function is called on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recv {
    /// A global function (`quantity('1Gi')`, `sets.contains(a, b)`).
    Global,
    /// A method of strings.
    Str,
    /// A method of lists.
    List,
    /// A method of strings and of lists (`indexOf`).
    StrOrList,
    /// A method of one of these library types.
    Of(&'static [&'static str]),
}

/// A library function's result type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ret {
    Bool,
    Int,
    Double,
    Str,
    Dyn,
    /// `list(string)`.
    StrList,
    /// `map(string, list(string))` (`url.getQuery()`).
    Query,
    /// The element type of the receiving list (`sum`, `min`, `max`).
    Elem,
    /// A library type.
    Of(&'static str),
}

/// One overload family: name, receiver, argument count range, result.
#[derive(Debug)]
pub(crate) struct Sig {
    pub name: &'static str,
    pub recv: Recv,
    pub args: (usize, usize),
    pub ret: Ret,
}

const fn sig(name: &'static str, recv: Recv, args: (usize, usize), ret: Ret) -> Sig {
    Sig {
        name,
        recv,
        args,
        ret,
    }
}

const TS_DUR: &[&str] = &[TIMESTAMP, DURATION];

/// The library functions of the 1.32 CRD environment beyond kube-sim's core (which evaluates
/// `size`, the conversions, `matches`, `startsWith`, `endsWith`, `contains`, `lowerAscii`,
/// `upperAscii`, `trim`, `join` and the macros itself).
const LIBRARY: &[Sig] = &[
    // strings extension, version 2
    sig("charAt", Recv::Str, (1, 1), Ret::Str),
    sig("indexOf", Recv::StrOrList, (1, 2), Ret::Int),
    sig("lastIndexOf", Recv::StrOrList, (1, 2), Ret::Int),
    sig("replace", Recv::Str, (2, 3), Ret::Str),
    sig("split", Recv::Str, (1, 2), Ret::StrList),
    sig("substring", Recv::Str, (1, 2), Ret::Str),
    sig("format", Recv::Str, (1, 1), Ret::Str),
    sig("strings.quote", Recv::Global, (1, 1), Ret::Str),
    // Kubernetes lists library
    sig("isSorted", Recv::List, (0, 0), Ret::Bool),
    sig("sum", Recv::List, (0, 0), Ret::Elem),
    sig("min", Recv::List, (0, 0), Ret::Elem),
    sig("max", Recv::List, (0, 0), Ret::Elem),
    // sets extension
    sig("sets.contains", Recv::Global, (2, 2), Ret::Bool),
    sig("sets.equivalent", Recv::Global, (2, 2), Ret::Bool),
    sig("sets.intersects", Recv::Global, (2, 2), Ret::Bool),
    // regex library
    sig("find", Recv::Str, (1, 1), Ret::Str),
    sig("findAll", Recv::Str, (1, 2), Ret::StrList),
    // URL library
    sig("url", Recv::Global, (1, 1), Ret::Of(URL)),
    sig("isURL", Recv::Global, (1, 1), Ret::Bool),
    sig("getScheme", Recv::Of(&[URL]), (0, 0), Ret::Str),
    sig("getHost", Recv::Of(&[URL]), (0, 0), Ret::Str),
    sig("getHostname", Recv::Of(&[URL]), (0, 0), Ret::Str),
    sig("getPort", Recv::Of(&[URL]), (0, 0), Ret::Str),
    sig("getEscapedPath", Recv::Of(&[URL]), (0, 0), Ret::Str),
    sig("getQuery", Recv::Of(&[URL]), (0, 0), Ret::Query),
    // IP and CIDR libraries
    sig("ip", Recv::Global, (1, 1), Ret::Of(IP)),
    sig("isIP", Recv::Global, (1, 1), Ret::Bool),
    sig("ip.isCanonical", Recv::Global, (1, 1), Ret::Bool),
    sig("family", Recv::Of(&[IP]), (0, 0), Ret::Int),
    sig("isUnspecified", Recv::Of(&[IP]), (0, 0), Ret::Bool),
    sig("isLoopback", Recv::Of(&[IP]), (0, 0), Ret::Bool),
    sig("isLinkLocalMulticast", Recv::Of(&[IP]), (0, 0), Ret::Bool),
    sig("isLinkLocalUnicast", Recv::Of(&[IP]), (0, 0), Ret::Bool),
    sig("isGlobalUnicast", Recv::Of(&[IP]), (0, 0), Ret::Bool),
    sig("cidr", Recv::Global, (1, 1), Ret::Of(CIDR)),
    sig("isCIDR", Recv::Global, (1, 1), Ret::Bool),
    sig("containsIP", Recv::Of(&[CIDR]), (1, 1), Ret::Bool),
    sig("containsCIDR", Recv::Of(&[CIDR]), (1, 1), Ret::Bool),
    sig("ip", Recv::Of(&[CIDR]), (0, 0), Ret::Of(IP)),
    sig("masked", Recv::Of(&[CIDR]), (0, 0), Ret::Of(CIDR)),
    sig("prefixLength", Recv::Of(&[CIDR]), (0, 0), Ret::Int),
    // quantity library
    sig("quantity", Recv::Global, (1, 1), Ret::Of(QUANTITY)),
    sig("isQuantity", Recv::Global, (1, 1), Ret::Bool),
    sig("isInteger", Recv::Of(&[QUANTITY]), (0, 0), Ret::Bool),
    sig("asInteger", Recv::Of(&[QUANTITY]), (0, 0), Ret::Int),
    sig(
        "asApproximateFloat",
        Recv::Of(&[QUANTITY]),
        (0, 0),
        Ret::Double,
    ),
    sig("sign", Recv::Of(&[QUANTITY]), (0, 0), Ret::Int),
    sig("add", Recv::Of(&[QUANTITY]), (1, 1), Ret::Of(QUANTITY)),
    sig("sub", Recv::Of(&[QUANTITY]), (1, 1), Ret::Of(QUANTITY)),
    sig("isGreaterThan", Recv::Of(&[QUANTITY]), (1, 1), Ret::Bool),
    sig("isLessThan", Recv::Of(&[QUANTITY]), (1, 1), Ret::Bool),
    sig("compareTo", Recv::Of(&[QUANTITY]), (1, 1), Ret::Int),
    // named formats library
    sig(
        "format.dns1123Label",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.dns1123Subdomain",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.dns1035Label",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.qualifiedName",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.dns1123LabelPrefix",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.dns1123SubdomainPrefix",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.dns1035LabelPrefix",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig(
        "format.labelValue",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig("format.uri", Recv::Global, (0, 0), Ret::Of(NAMED_FORMAT)),
    sig("format.uuid", Recv::Global, (0, 0), Ret::Of(NAMED_FORMAT)),
    sig("format.byte", Recv::Global, (0, 0), Ret::Of(NAMED_FORMAT)),
    sig("format.date", Recv::Global, (0, 0), Ret::Of(NAMED_FORMAT)),
    sig(
        "format.datetime",
        Recv::Global,
        (0, 0),
        Ret::Of(NAMED_FORMAT),
    ),
    sig("format.named", Recv::Global, (1, 1), Ret::Of(OPTIONAL)),
    sig(
        "validate",
        Recv::Of(&[NAMED_FORMAT]),
        (1, 1),
        Ret::Of(OPTIONAL),
    ),
    // optional values
    sig("optional.of", Recv::Global, (1, 1), Ret::Of(OPTIONAL)),
    sig(
        "optional.ofNonZeroValue",
        Recv::Global,
        (1, 1),
        Ret::Of(OPTIONAL),
    ),
    sig("optional.none", Recv::Global, (0, 0), Ret::Of(OPTIONAL)),
    sig("hasValue", Recv::Of(&[OPTIONAL]), (0, 0), Ret::Bool),
    sig("value", Recv::Of(&[OPTIONAL]), (0, 0), Ret::Dyn),
    sig("orValue", Recv::Of(&[OPTIONAL]), (1, 1), Ret::Dyn),
    sig("or", Recv::Of(&[OPTIONAL]), (1, 1), Ret::Of(OPTIONAL)),
    // timestamps and durations
    sig("timestamp", Recv::Global, (1, 1), Ret::Of(TIMESTAMP)),
    sig("duration", Recv::Global, (1, 1), Ret::Of(DURATION)),
    sig("getFullYear", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getMonth", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getDayOfYear", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getDayOfMonth", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getDate", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getDayOfWeek", Recv::Of(&[TIMESTAMP]), (0, 1), Ret::Int),
    sig("getHours", Recv::Of(TS_DUR), (0, 1), Ret::Int),
    sig("getMinutes", Recv::Of(TS_DUR), (0, 1), Ret::Int),
    sig("getSeconds", Recv::Of(TS_DUR), (0, 1), Ret::Int),
    sig("getMilliseconds", Recv::Of(TS_DUR), (0, 1), Ret::Int),
];

/// Whether `name` is a library function (any receiver, any arity).
pub(crate) fn is_library_function(name: &str) -> bool {
    LIBRARY.iter().any(|s| s.name == name)
}

/// The receivers a library method accepts, as the type checker sees them.
pub(crate) enum Receiver<'t> {
    Dyn,
    Str,
    List,
    Of(&'t str),
    Other,
}

/// The overload of `name` for this receiver (`None`: a global call) and argument count.
pub(crate) fn signature(
    name: &str,
    recv: Option<Receiver<'_>>,
    argc: usize,
) -> Option<&'static Sig> {
    LIBRARY.iter().find(|s| {
        s.name == name
            && argc >= s.args.0
            && argc <= s.args.1
            && match (&recv, s.recv) {
                (None, Recv::Global) => true,
                (None, _) | (Some(_), Recv::Global) => false,
                (Some(Receiver::Dyn), _) => true,
                (Some(Receiver::Str), Recv::Str | Recv::StrOrList) => true,
                (Some(Receiver::List), Recv::List | Recv::StrOrList) => true,
                (Some(Receiver::Of(t)), Recv::Of(ts)) => ts.contains(t),
                _ => false,
            }
    })
}

thread_local! {
    /// The `cel` context with the standard functions and kube-cel's libraries (built once per
    /// thread: registering them allocates a few hundred entries).
    static CONTEXT: Context<'static> = Context::default().with_all();
}

/// cel-go's name of a value's type, for a value kube-sim does not model itself.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bytes(_) => BYTES,
        Value::Timestamp(_) => TIMESTAMP,
        Value::Duration(_) => DURATION,
        Value::Opaque(o) => match o.runtime_type_name() {
            "optional_type" => OPTIONAL,
            "kubernetes.Quantity" => QUANTITY,
            "kubernetes.URL" => URL,
            "net.IP" => IP,
            "net.CIDR" => CIDR,
            "kubernetes.Format" => NAMED_FORMAT,
            _ => "dyn",
        },
        _ => "dyn",
    }
}

const NO_OVERLOAD: &str = "no such overload";

/// cel-go's text for a `cel` evaluation error (what `rules.rs` turns into upstream's field
/// error).
fn error_text(e: ExecutionError) -> String {
    match e {
        ExecutionError::FunctionError { message, .. } => message,
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of range: {i:?}"),
        _ => NO_OVERLOAD.into(),
    }
}

fn ident(id: u64, name: &str) -> IdedExpr {
    IdedExpr {
        id,
        expr: CelExpr::Ident(name.to_string()),
    }
}

/// Evaluate `name` on `target` (a method) or as a global function, with `args`, in kube-cel.
/// Errors are cel-go's texts where kube-sim knows them.
pub(crate) fn call(target: Option<Value>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    if target
        .iter()
        .chain(&args)
        .any(|v| matches!(v, Value::Function(..)))
    {
        return Err(NO_OVERLOAD.into());
    }
    CONTEXT.with(|ctx| {
        let mut scope = ctx.new_inner_scope();
        let mut id = 0;
        let target = target.map(|t| {
            scope.add_variable_from_value("@t", t);
            id += 1;
            Box::new(ident(id, "@t"))
        });
        let mut arg_exprs = Vec::with_capacity(args.len());
        for (i, a) in args.into_iter().enumerate() {
            let name = format!("@a{i}");
            scope.add_variable_from_value(name.clone(), a);
            id += 1;
            arg_exprs.push(ident(id, &name));
        }
        let expr = IdedExpr {
            id: id + 1,
            expr: CelExpr::Call(CallExpr {
                func_name: name.to_string(),
                target,
                args: arg_exprs,
            }),
        };
        let v = Value::resolve(&expr, &scope).map_err(error_text)?;
        Ok(adapt(name, v))
    })
}

/// Where kube-cel's answer differs from the Kubernetes library's: `format.named` answers the
/// format (null when unknown) where Kubernetes answers an optional of it.
fn adapt(name: &str, v: Value) -> Value {
    match (name, v) {
        ("format.named", Value::Null) => Value::Opaque(Arc::new(OptionalValue::none())),
        ("format.named", v) => Value::Opaque(Arc::new(OptionalValue::of(v))),
        (_, v) => v,
    }
}

/// Evaluate the binary operator `op` (cel's name: `_<_`, `_+_`...) in kube-cel.
pub(crate) fn operator(op: &str, a: Value, b: Value) -> Result<Value, String> {
    call(None, op, vec![a, b])
}
