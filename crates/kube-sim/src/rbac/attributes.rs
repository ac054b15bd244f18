//! Request attributes as apiserver@v0.32.4 `pkg/endpoints/request/requestinfo.go` derives them.

use super::{RequestAttributes, UserInfo};

/// Percent-decoding; `plus_is_space` for query strings (`application/x-www-form-urlencoded`).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All values of `key` in a raw query string, decoded, in order.
pub(crate) fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true) == key).then(|| percent_decode(v, true))
        })
        .collect()
}

/// Go `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `path.IsValidPathSegmentName`.
pub(crate) fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// `fields.ParseSelector` + `RequiresExactMatch("metadata.name")`. `None` on a parse error.
fn field_selector_exact_name(selector: &str) -> Option<Option<String>> {
    // splitTerms: split on commas not escaped by a backslash.
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in selector.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            ',' => terms.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    terms.push(cur);
    terms.sort();
    let mut found = None;
    for term in terms.iter().filter(|t| !t.is_empty()) {
        let (lhs, op, rhs) = split_term(term)?;
        let value = unescape_value(rhs)?;
        if found.is_none() && lhs == "metadata.name" && op != "!=" {
            found = Some(value);
        }
    }
    Some(found)
}

fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,`, `\=` only; bare `,` or `=` are errors.
fn unescape_value(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                _ => return None,
            },
            ',' | '=' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Derive the authorization attributes of a request (`RequestInfoFactory.NewRequestInfo`).
///
/// `path` is the URL path (percent-encoded or not), `query` the raw query string without `?`.
pub fn request_attributes(
    method: &str,
    path: &str,
    query: &str,
    user: UserInfo,
) -> RequestAttributes {
    let path = percent_decode(path, false);
    let mut attrs = RequestAttributes {
        user,
        verb: method.to_ascii_lowercase(),
        resource_request: false,
        api_group: String::new(),
        api_version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        namespace: String::new(),
        path: path.clone(),
    };
    let trimmed = path.trim_matches('/');
    let mut parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    if parts.len() < 3 || !(parts[0] == "api" || parts[0] == "apis") {
        return attrs;
    }
    let prefix = parts.remove(0);
    if prefix == "apis" {
        if parts.len() < 3 {
            return attrs;
        }
        attrs.api_group = parts.remove(0).to_string();
    }
    attrs.resource_request = true;
    attrs.api_version = parts.remove(0).to_string();

    if parts[0] == "watch" || parts[0] == "proxy" {
        if parts.len() < 2 {
            return attrs;
        }
        attrs.verb = parts.remove(0).to_string();
    } else {
        attrs.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
    }

    if parts[0] == "namespaces" && parts.len() > 1 {
        attrs.namespace = parts[1].to_string();
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts.drain(..2);
        }
    }

    if parts.len() >= 3 && attrs.verb != "proxy" {
        attrs.subresource = parts[2].to_string();
    }
    if parts.len() >= 2 {
        attrs.name = parts[1].to_string();
    }
    if !parts.is_empty() {
        attrs.resource = parts[0].to_string();
    }

    if attrs.name.is_empty() && attrs.verb == "get" {
        // metainternalversion ListOptions decoding: any bad parameter voids the selector.
        let mut ok = true;
        let mut watch = false;
        if let Some(w) = query_values(query, "watch").first() {
            match parse_bool(w) {
                Some(b) => watch = b,
                None => ok = false,
            }
        }
        for k in ["allowWatchBookmarks", "sendInitialEvents"] {
            if let Some(v) = query_values(query, k).first()
                && parse_bool(v).is_none()
            {
                ok = false;
            }
        }
        for k in ["limit", "timeoutSeconds"] {
            if let Some(v) = query_values(query, k).first()
                && v.parse::<i64>().is_err()
            {
                ok = false;
            }
        }
        let selector = query_values(query, "fieldSelector").into_iter().next();
        let exact = match &selector {
            Some(s) => match field_selector_exact_name(s) {
                Some(n) => n,
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        if !ok {
            // Upstream resets the options but still honours a watch parameter.
            watch = query_values(query, "watch")
                .first()
                .is_some_and(|w| !matches!(w.to_ascii_lowercase().as_str(), "false" | "0"));
        }
        attrs.verb = if watch { "watch" } else { "list" }.to_string();
        if ok
            && let Some(name) = exact
            && is_valid_path_segment_name(&name)
        {
            attrs.name = name;
        }
    }
    if attrs.name.is_empty() && attrs.verb == "delete" {
        attrs.verb = "deletecollection".to_string();
    }
    attrs
}
