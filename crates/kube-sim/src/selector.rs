//! Label and field selectors (apimachinery `pkg/labels/selector.go`, `pkg/fields/selector.go`).

use serde_json::{Map, Value};

use crate::schema_api::{is_qualified_name, is_valid_label_value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let v = labels
            .and_then(|l| l.get(&self.key))
            .map(|v| v.as_str().unwrap_or(""));
        match self.op {
            Op::Equals | Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEquals | Op::NotIn => !v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let Some(have) = v.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|w| w.parse::<i64>().ok()) else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Open,
    Close,
    Comma,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Gt,
    Lt,
}

fn tok_str(t: &Option<Tok>) -> String {
    match t {
        None => String::new(),
        Some(Tok::Ident(s)) => s.clone(),
        Some(Tok::Open) => "(".into(),
        Some(Tok::Close) => ")".into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::Not) => "!".into(),
        Some(Tok::Eq) => "=".into(),
        Some(Tok::DoubleEq) => "==".into(),
        Some(Tok::NotEq) => "!=".into(),
        Some(Tok::In) => "in".into(),
        Some(Tok::NotIn) => "notin".into(),
        Some(Tok::Gt) => ">".into(),
        Some(Tok::Lt) => "<".into(),
    }
}

fn lex(s: &str) -> Vec<Tok> {
    let special =
        |c: char| matches!(c, '(' | ')' | ',' | '!' | '=' | '>' | '<') || c.is_whitespace();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            ',' => out.push(Tok::Comma),
            '>' => out.push(Tok::Gt),
            '<' => out.push(Tok::Lt),
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEq);
                    i += 1;
                } else {
                    out.push(Tok::Not);
                }
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEq);
                    i += 1;
                } else {
                    out.push(Tok::Eq);
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                });
                continue;
            }
        }
        i += 1;
    }
    out
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parse the query-string form. Errors are upstream's `labels.Parse` texts.
    pub fn parse(s: &str) -> Result<Self, String> {
        let toks = lex(s);
        let mut p = 0usize;
        let mut reqs = Vec::new();
        if toks.is_empty() {
            return Ok(Self::default());
        }
        loop {
            let mut op_override = None;
            if toks.get(p) == Some(&Tok::Not) {
                op_override = Some(Op::DoesNotExist);
                p += 1;
            }
            let key = match toks.get(p) {
                Some(Tok::Ident(k)) => k.clone(),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        tok_str(&t.cloned())
                    ));
                }
            };
            p += 1;
            let req = (|| -> Result<Requirement, String> {
            check_key(&key)?;
            let req = if let Some(op) = op_override {
                Requirement {
                    key,
                    op,
                    values: vec![],
                }
            } else {
                match toks.get(p) {
                    None | Some(Tok::Comma) => Requirement {
                        key,
                        op: Op::Exists,
                        values: vec![],
                    },
                    Some(t @ (Tok::Eq | Tok::DoubleEq | Tok::NotEq | Tok::Gt | Tok::Lt)) => {
                        let op = match t {
                            Tok::Eq | Tok::DoubleEq => Op::Equals,
                            Tok::NotEq => Op::NotEquals,
                            Tok::Gt => Op::GreaterThan,
                            _ => Op::LessThan,
                        };
                        p += 1;
                        let value = match toks.get(p) {
                            Some(Tok::Ident(v)) => {
                                p += 1;
                                v.clone()
                            }
                            None | Some(Tok::Comma) => String::new(),
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier",
                                    tok_str(&t.cloned())
                                ));
                            }
                        };
                        if matches!(op, Op::GreaterThan | Op::LessThan) {
                            if value.parse::<i64>().is_err() {
                                return Err(format!(
                                    "for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                                ));
                            }
                        } else {
                            check_value(&value)?;
                        }
                        Requirement {
                            key,
                            op,
                            values: vec![value],
                        }
                    }
                    Some(t @ (Tok::In | Tok::NotIn)) => {
                        let op = if *t == Tok::In { Op::In } else { Op::NotIn };
                        p += 1;
                        if toks.get(p) != Some(&Tok::Open) {
                            return Err(format!(
                                "found '{}', expected: '('",
                                tok_str(&toks.get(p).cloned())
                            ));
                        }
                        p += 1;
                        let mut values = Vec::new();
                        loop {
                            match toks.get(p) {
                                Some(Tok::Ident(v)) => {
                                    check_value(v)?;
                                    values.push(v.clone());
                                    p += 1;
                                }
                                Some(Tok::Comma) => {
                                    // empty value between commas
                                    values.push(String::new());
                                }
                                Some(Tok::Close) => {
                                    p += 1;
                                    break;
                                }
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',', ')' or identifier",
                                        tok_str(&t.cloned())
                                    ));
                                }
                            }
                            match toks.get(p) {
                                Some(Tok::Comma) => p += 1,
                                Some(Tok::Close) => {
                                    p += 1;
                                    break;
                                }
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        tok_str(&t.cloned())
                                    ));
                                }
                            }
                        }
                        if values.is_empty() {
                            return Err(
                                "for 'in', 'notin' operators, values set can't be empty".into()
                            );
                        }
                        Requirement { key, op, values }
                    }
                    t => {
                        return Err(format!(
                            "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                            tok_str(&t.cloned())
                        ));
                    }
                }
            };
            Ok(req)
            })()
            .map_err(|e| format!("unable to parse requirement: {e}"))?;
            reqs.push(req);
            match toks.get(p) {
                None => break,
                Some(Tok::Comma) => {
                    p += 1;
                    if p >= toks.len() {
                        return Err("found '', expected: identifier after ','".into());
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        tok_str(&t.cloned())
                    ));
                }
            }
        }
        Ok(Self { requirements: reqs })
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![v.as_str().unwrap_or("").to_string()],
                });
            }
        }
        if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in me {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => Op::In,
                    "NotIn" => Op::NotIn,
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    o => return Err(format!("{o:?} is not a valid label selector operator")),
                };
                reqs.push(Requirement { key, op, values });
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements: reqs })
    }

    /// The string form (`Selector.String()`): requirements sorted by key.
    pub fn to_query(&self) -> String {
        let mut reqs = self.requirements.clone();
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        reqs.iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values.join(",")),
                Op::NotEquals => format!("{}!={}", r.key, r.values.join(",")),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::GreaterThan => format!("{}>{}", r.key, r.values.join(",")),
                Op::LessThan => format!("{}<{}", r.key, r.values.join(",")),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn check_key(k: &str) -> Result<(), String> {
    let errs = is_qualified_name(k);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "key: Invalid value: {}: {}",
            crate::error::go_quote(k),
            errs.join("; ")
        ))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    let errs = is_valid_label_value(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values[0][key]: Invalid value: {}: {}",
            crate::error::go_quote(v),
            errs.join("; ")
        ))
    }
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub equals: bool,
    pub value: String,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if esc {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            let (field, equals, value) = if let Some(i) = part.find("!=") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], true, &part[i + 1..])
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            terms.push(FieldTerm {
                field: field.trim().to_string(),
                equals,
                value: unescape(value.trim())?,
            });
        }
        Ok(Self { terms })
    }

    /// Evaluate with `get(field)` giving the object's value for a supported field.
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let v = get(&t.field).unwrap_or_default();
            (v == t.value) == t.equals
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "web", "tier": "front", "n": "5"});
        let m = labels.as_object();
        for (s, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("missing!=x", true),
            ("missing", false),
            ("!missing", true),
            ("app,tier=front", true),
            ("n>4", true),
            ("n<4", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(s).unwrap().matches(m),
                want,
                "selector {s}"
            );
        }
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("bad key=1").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=x,type!=Opaque").unwrap();

        let get = |k: &str| match k {
            "metadata.name" => Some("x".to_string()),
            "type" => Some("tls".to_string()),
            _ => None,
        };
        assert!(f.matches(&get));
        assert!(FieldSelector::parse("nonsense").is_err());
        let e = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(e.terms[0].value, "a,b");
    }
}
