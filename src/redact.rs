//! Defence in depth for design §7: every text the operator sends out (status messages, event
//! notes, log fields it builds, error messages) passes through [`redact`], which replaces
//! anything shaped like a key with `<redacted>`: AgentLattice's `al_agent_…` and `al_svc_…` keys
//! and Alter's `alter_…` keys (`alter_key_…`, `alter_rk_…`, `alter_ak_…`, docs/alter.md). The
//! types already keep keys out; this catches a key pasted where it does not belong (a spec field
//! echoed in an error, a server message).

/// A key scheme, and the characters its body is made of.
struct Scheme {
    lead: &'static str,
    body: fn(char) -> bool,
}

fn alphanumeric(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Alter's bodies: `[A-Za-z0-9_-]` (legacy keys), `<a-z2-7>_<checksum>` (scoped keys).
fn alter_body(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

const SCHEMES: [Scheme; 3] = [
    Scheme {
        lead: "al_agent_",
        body: alphanumeric,
    },
    Scheme {
        lead: "al_svc_",
        body: alphanumeric,
    },
    Scheme {
        lead: "alter_",
        body: alter_body,
    },
];

/// `text` with every key-shaped token (a scheme and the run of body characters after it)
/// replaced by `<redacted>`.
///
/// Every occurrence of every scheme is found, overlapping ones included, and the union of their
/// spans is replaced. Stopping at the first match and scanning on after its body is not enough:
/// in `al_svc_al_agent_<body>` the first span ends at the second `_`, and the scan would then
/// start inside the second scheme and keep its body.
pub fn redact(text: &str) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for scheme in &SCHEMES {
        let mut from = 0;
        while let Some(i) = text[from..].find(scheme.lead) {
            let start = from + i;
            let body = start + scheme.lead.len();
            let end = text[body..]
                .find(|c: char| !(scheme.body)(c))
                .map_or(text.len(), |n| body + n);
            spans.push((start, end));
            // Every lead starts with an ASCII letter, so the next byte is a char boundary.
            from = start + 1;
        }
    }
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.push_str(&text[copied..start]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn keys_are_replaced_and_the_rest_kept() {
        assert_eq!(redact("nothing here"), "nothing here");
        assert_eq!(
            redact("key al_agent_AbC123 and al_svc_x9, done"),
            "key <redacted> and <redacted>, done"
        );
        assert_eq!(redact("al_agent_"), "<redacted>");
        assert_eq!(redact("\"al_svc_abc\""), "\"<redacted>\"");
    }

    /// Found by the redaction fuzzer (`plan/tests/inputs.rs`): a scheme right before a key, and
    /// Alter's keys.
    #[test]
    fn touching_keys_and_alter_keys_are_replaced() {
        assert_eq!(redact("al_svc_al_agent_AbC123 x"), "<redacted> x");
        assert_eq!(redact("al_al_agent_AbC123"), "al_<redacted>");
        assert_eq!(
            redact("k=alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567;"),
            "k=<redacted>;"
        );
        assert_eq!(
            redact("alter_rk_abcdefghijklmnopqrstuv_iwpykn al_agent_x"),
            "<redacted> <redacted>"
        );
        assert_eq!(redact("é alter_ak_ab_cd é"), "é <redacted> é");
    }
}
