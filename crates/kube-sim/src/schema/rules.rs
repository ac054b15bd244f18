//! `x-kubernetes-validations`: compiling rule objects and running them over an object.
//!
//! Sources (apiextensions-apiserver v0.32.4): `pkg/apiserver/schema/cel/{compilation,
//! validation}.go` (`Validator.validate`, `validateExpressions`, `fieldErrorForReason`,
//! `ruleMessageOrDefault`, `ValidFieldPath`), `pkg/registry/customresource/strategy.go`
//! (`hasBlockingErr`).

use serde_json::Value;

use super::Node;
use super::cel::{self, CompileError, Program, Val};
use crate::error::{FieldError, FieldErrorType, go_quote};

/// One compiled rule object.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub rule: String,
    pub message: String,
    pub message_expression: Option<Program>,
    pub reason: Option<String>,
    /// The rule's `fieldPath`, normalised to a field path relative to the node.
    pub field_path: Option<String>,
    pub program: Option<Program>,
}

impl CompiledRule {
    fn uses_old_self(&self) -> bool {
        self.program.as_ref().is_some_and(|p| p.uses_old_self)
    }
}

/// Go's `%#v` of the internal `apiextensions.ValidationRule` (upstream's bad value for rule
/// compile errors).
fn sharp_v_rule(r: &Value) -> String {
    let s = |k: &str| go_quote(r.get(k).and_then(Value::as_str).unwrap_or(""));
    let reason = if r.get("reason").is_some_and(|x| !x.is_null()) {
        "(*apiextensions.FieldValueErrorReason)(0xc000000000)"
    } else {
        "(*apiextensions.FieldValueErrorReason)(nil)"
    };
    let oos = if r.get("optionalOldSelf").is_some_and(|x| !x.is_null()) {
        "(*bool)(0xc000000000)"
    } else {
        "(*bool)(nil)"
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{oos}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath")
    )
}

/// Compile the rules of one node; errors go to `errs` at `<vp>[i].rule` / `.messageExpression`.
pub(crate) fn compile_node(
    node: &mut Node,
    rules_json: &[&Value],
    vp: &str,
    is_root: bool,
    uncorrelatable: Option<&str>,
    errs: &mut Vec<FieldError>,
) {
    let mut compiled = Vec::new();
    for (i, r) in rules_json.iter().enumerate() {
        let ip = format!("{vp}[{i}]");
        let src = r.get("rule").and_then(Value::as_str).unwrap_or("");
        let mut cr = CompiledRule {
            rule: src.to_string(),
            message: r
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            message_expression: None,
            reason: r.get("reason").and_then(Value::as_str).map(str::to_string),
            field_path: r
                .get("fieldPath")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .and_then(|p| valid_field_path(p, node).ok()),
            program: None,
        };
        if src.trim().is_empty() {
            compiled.push(cr);
            continue;
        }
        let optional_old_self = r.get("optionalOldSelf").filter(|x| !x.is_null());
        match cel::compile(src, node, is_root) {
            Err(e @ CompileError::Unsupported(_)) => {
                errs.push(FieldError::forbidden(format!("{ip}.rule"), e.render(src)));
            }
            Err(e) => errs.push(FieldError::new(
                FieldErrorType::Invalid,
                format!("{ip}.rule"),
                Some(sharp_v_rule(r)),
                format!("compilation failed: {}", e.render(src)),
            )),
            Ok(p) if !matches!(p.result_type, None | Some("bool")) => errs.push(FieldError::new(
                FieldErrorType::Invalid,
                format!("{ip}.rule"),
                Some(sharp_v_rule(r)),
                "cel expression must evaluate to a bool",
            )),
            Ok(p) => {
                if p.uses_old_self {
                    if let Some(u) = uncorrelatable {
                        errs.push(FieldError::new(
                            FieldErrorType::Invalid,
                            format!("{ip}.rule"),
                            Some(go_quote(src)),
                            format!(
                                "oldSelf cannot be used on the uncorrelatable portion of the schema within {u}"
                            ),
                        ));
                    }
                    if optional_old_self.and_then(Value::as_bool) == Some(true) {
                        errs.push(FieldError::forbidden(
                            format!("{ip}.optionalOldSelf"),
                            CompileError::Unsupported(
                                "optionalOldSelf (transition rules on create)".into(),
                            )
                            .render(src),
                        ));
                    }
                } else if let Some(v) = optional_old_self {
                    errs.push(FieldError::new(
                        FieldErrorType::Invalid,
                        format!("{ip}.optionalOldSelf"),
                        Some(v.to_string()),
                        "may not be set if oldSelf is not used in rule",
                    ));
                }
                cr.program = Some(p);
            }
        }
        if let Some(me) = r
            .get("messageExpression")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
        {
            match cel::compile(me, node, is_root) {
                Err(e @ CompileError::Unsupported(_)) => {
                    errs.push(FieldError::forbidden(
                        format!("{ip}.messageExpression"),
                        e.render(me),
                    ));
                }
                Err(e) => errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    format!("{ip}.messageExpression"),
                    Some(sharp_v_rule(r)),
                    format!("messageExpression compilation failed: {}", e.render(me)),
                )),
                Ok(p) if !matches!(p.result_type, None | Some("string")) => {
                    errs.push(FieldError::new(
                        FieldErrorType::Invalid,
                        format!("{ip}.messageExpression"),
                        Some(sharp_v_rule(r)),
                        "messageExpression must evaluate to a string",
                    ));
                }
                Ok(p) => cr.message_expression = Some(p),
            }
        }
        compiled.push(cr);
    }
    node.rules = compiled;
}

/// `cel.ValidFieldPath`: `.a.b`, `.a['k']`, `['k']` forms; returns the field path string.
pub(crate) fn valid_field_path(path: &str, node: &Node) -> Result<String, String> {
    let mut out = String::new();
    let mut cur = node;
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    let mut append = |name: &str, cur: &mut &Node| -> Result<(), String> {
        if !cur.properties.is_empty() {
            let next = cur.prop(name).ok_or("does not refer to a valid field")?;
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            *cur = next;
        } else if let Some(ap) = cur.additional.as_deref() {
            out.push_str(&format!("[{name}]"));
            *cur = ap;
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[' | ']') {
                    i += 1;
                }
                if start == i {
                    return Err("unexpected end of JSON path".into());
                }
                let name: String = chars[start..i].iter().collect();
                append(&name, &mut cur)?;
            }
            '[' => {
                i += 1;
                if chars.get(i) != Some(&'\'') {
                    return Err("expected single quoted string".into());
                }
                i += 1;
                let mut name = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err("unexpected end of JSON path".into()),
                        Some('\\') => {
                            if let Some(c) = chars.get(i + 1) {
                                name.push(*c);
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            name.push(*c);
                            i += 1;
                        }
                    }
                }
                if chars.get(i) != Some(&']') {
                    return Err("expected ]".into());
                }
                i += 1;
                append(&name, &mut cur)?;
            }
            c => return Err(format!("expected [ or . but got: {c}")),
        }
    }
    Ok(out)
}

/// `hasBlockingErr`.
pub(crate) fn blocking_error<'e>(
    mut errs: impl Iterator<Item = &'e FieldError>,
) -> Option<FieldError> {
    errs.any(|e| {
        matches!(
            e.kind,
            FieldErrorType::NotSupported
                | FieldErrorType::Required
                | FieldErrorType::TooLong
                | FieldErrorType::TooMany
                | FieldErrorType::TypeInvalid
        )
    })
    .then(|| {
        FieldError::new(
            FieldErrorType::Invalid,
            "<nil>",
            Some("\"null\"".into()),
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        )
    })
}

fn path_str(p: Option<&str>) -> String {
    p.map_or("<nil>".to_string(), str::to_string)
}

fn path_child(p: Option<&str>, name: &str) -> String {
    match p {
        None | Some("") => name.to_string(),
        Some(p) => format!("{p}.{name}"),
    }
}

fn path_key(p: Option<&str>, k: &str) -> String {
    format!("{}[{k}]", p.unwrap_or(""))
}

/// `Validator.validate`: the node's rules, then its children with correlated old values.
pub(crate) fn run(
    node: &Node,
    path: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
    is_root: bool,
    errs: &mut Vec<FieldError>,
) {
    if obj.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    expressions(node, path, obj, old, is_root, errs);
    match obj {
        Value::Array(items) => {
            let Some(item_node) = node.items.as_deref() else {
                return;
            };
            let old_items = old.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                let old_v = match (node.list_type.as_deref(), old_items) {
                    (Some("map"), Some(olds)) if !node.list_map_keys.is_empty() => {
                        olds.iter().find(|o| {
                            node.list_map_keys
                                .iter()
                                .all(|k| o.get(k).is_some() && o.get(k) == v.get(k))
                        })
                    }
                    _ => None,
                };
                run(
                    item_node,
                    Some(&path_key(path, &i.to_string())),
                    v,
                    old_v,
                    false,
                    errs,
                );
            }
        }
        Value::Object(m) => {
            let correlatable =
                matches!(node.map_type.as_deref(), None | Some("granular" | "atomic"));
            let old_m = old.and_then(Value::as_object);
            if let Some(ap) = node.additional.as_deref() {
                for (k, v) in m {
                    let old_v = if correlatable {
                        old_m.and_then(|o| o.get(k))
                    } else {
                        None
                    };
                    run(ap, Some(&path_key(path, k)), v, old_v, false, errs);
                }
            }
            if !node.properties.is_empty() {
                for (k, v) in m {
                    if let Some(sub) = node.prop(k) {
                        let old_v = if correlatable {
                            old_m.and_then(|o| o.get(k))
                        } else {
                            None
                        };
                        run(sub, Some(&path_child(path, k)), v, old_v, false, errs);
                    }
                }
            }
        }
        _ => {}
    }
}

fn rule_error_string(r: &CompiledRule) -> String {
    if !r.message.is_empty() {
        r.message.trim().to_string()
    } else {
        r.rule.trim().to_string()
    }
}

fn rule_message_or_default(r: &CompiledRule) -> String {
    if r.message.is_empty() {
        format!("failed rule: {}", rule_error_string(r))
    } else {
        r.message.trim().to_string()
    }
}

fn for_reason(path: String, value: String, detail: String, reason: Option<&str>) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError::forbidden(path, detail),
        Some("FieldValueRequired") => FieldError::required(path, detail),
        Some("FieldValueDuplicate") => {
            FieldError::new(FieldErrorType::Duplicate, path, Some(value), "")
        }
        _ => FieldError::new(FieldErrorType::Invalid, path, Some(value), detail),
    }
}

fn expressions(
    node: &Node,
    path: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
    is_root: bool,
    errs: &mut Vec<FieldError>,
) {
    let ty = go_quote(&node.ty);
    for r in &node.rules {
        let Some(prog) = &r.program else {
            continue;
        };
        if r.uses_old_self() && old.is_none() {
            continue;
        }
        let result = prog.eval(obj, node, old, is_root);
        match result {
            Err(e) if e.starts_with("no such overload") => errs.push(FieldError::new(
                FieldErrorType::Invalid,
                path_str(path),
                Some(ty.clone()),
                format!(
                    "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                    rule_error_string(r)
                ),
            )),
            Err(e) => errs.push(FieldError::new(
                FieldErrorType::Invalid,
                path_str(path),
                Some(ty.clone()),
                format!("{e} evaluating rule: {}", rule_error_string(r)),
            )),
            Ok(Val::Bool(true)) => {}
            Ok(_) => {
                let fld = match &r.field_path {
                    Some(fp) if !fp.is_empty() => {
                        if fp.starts_with('[') {
                            format!("{}{fp}", path.unwrap_or(""))
                        } else {
                            path_child(path, fp)
                        }
                    }
                    _ => path_str(path),
                };
                let detail = r
                    .message_expression
                    .as_ref()
                    .and_then(|me| match me.eval(obj, node, old, is_root) {
                        Ok(Val::Str(s)) => {
                            let t = s.trim();
                            (!t.is_empty() && !t.contains('\n') && t.len() <= 5 * 1024).then(|| t.to_string())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| rule_message_or_default(r));
                errs.push(for_reason(fld, ty.clone(), detail, r.reason.as_deref()));
            }
        }
    }
}
