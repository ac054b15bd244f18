//! How Go prints the values that end up in upstream error messages.
//!
//! Upstream decodes custom resources into `map[string]interface{}` with `int64` for integral
//! JSON numbers and `float64` for the rest, and `field.Error.ErrorBody()` prints a bad value with
//! `%v` (numbers, bools), `%q` (strings) or `%#v` (maps, slices). These helpers reproduce those
//! renderings so that messages match byte for byte.

use serde_json::Value;

use crate::error::go_quote;

/// The value part of `field.Error.ErrorBody()` for a decoded JSON value: `"x"` for strings,
/// `5` / `1.5` for numbers, `true`, `"null"` for null (upstream replaces nil by the string
/// "null" and quotes it), and Go's `%#v` for maps and slices.
pub fn body_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".to_string(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) => number_v(v),
        Value::Array(_) | Value::Object(_) => sharp_v(v),
    }
}

/// `%v` of a decoded JSON number (int64, or float64 when not integral or out of int64 range).
pub fn number_v(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                float_v(n.as_f64().unwrap_or(0.0))
            }
        }
        _ => String::new(),
    }
}

/// Whether upstream would hold this JSON number as an `int64` (as opposed to `float64`).
pub fn is_go_int(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.is_i64())
}

/// Go's `%v` (and `%#v`) of a `float64`: `strconv.FormatFloat(f, 'g', -1, 64)`, i.e. the
/// shortest representation, in exponent form when the decimal exponent is < -4 or >= 6
/// (`strconv` uses precision 6 for that decision when printing the shortest form).
pub fn float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` prints the shortest round-tripping digits: "1.234567e6", "-5e-7".
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        // %e form: d[.ddd]e±XX
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = (exp + 1) as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Go's `%#v` of a decoded JSON value as held in an `interface{}`: `map[string]interface {}{"a":1}`
/// (keys sorted), `[]interface {}{"a", 1}`, `interface {}(nil)` for null.
pub fn sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".to_string(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) => number_v(v),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(sharp_v).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", go_quote(k), sharp_v(&m[k.as_str()])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`.
pub fn sharp_v_strings<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| go_quote(s.as_ref())).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// Go's `%v` of a `[]interface{}` of JSON values, as go-openapi's enum message prints it: `[a b 1]`.
pub fn slice_v(items: &[Value]) -> String {
    let parts: Vec<String> = items.iter().map(plain_v).collect();
    format!("[{}]", parts.join(" "))
}

/// Go's `%v` of a decoded JSON value: strings bare, maps as `map[a:1]`, slices as `[a 1]`, nil as `<nil>`.
pub fn plain_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) => number_v(v),
        Value::Array(a) => slice_v(a),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", k, plain_v(&m[k.as_str()])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `encoding/json` rendering of a value (used for non-string enum values in messages):
/// compact, map keys sorted, floats in the ES6 style Go uses.
pub fn go_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        go_json(&m[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                let abs = f.abs();
                if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
                    // Go: exponent form with at least 2 exponent digits trimmed to "e-07" -> "e-7".
                    let e = format!("{f:e}");
                    let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
                    let x: i32 = x.parse().unwrap_or(0);
                    format!("{m}e{}{}", if x < 0 { '-' } else { '+' }, x.abs())
                } else {
                    let s = format!("{f}");
                    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
                }
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_go() {
        for (f, s) in [
            (1.5, "1.5"),
            (10.0, "10"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(float_v(f), s, "{f}");
        }
    }

    #[test]
    fn maps_and_slices_print_like_sharp_v() {
        assert_eq!(
            sharp_v(&json!({"name": "a", "b": 1.5, "c": null})),
            r#"map[string]interface {}{"b":1.5, "c":interface {}(nil), "name":"a"}"#
        );
        assert_eq!(sharp_v(&json!(["a", 1])), r#"[]interface {}{"a", 1}"#);
        assert_eq!(sharp_v_strings(&["x", "y"]), r#"[]string{"x", "y"}"#);
        assert_eq!(body_value(&json!(null)), "\"null\"");
        assert_eq!(
            go_json(&json!({"b": 1, "a": [1.5]})),
            r#"{"a":[1.5],"b":1}"#
        );
    }
}
