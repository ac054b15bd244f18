//! Defence in depth for design §7: every text the operator sends out (status messages, event
//! notes, log fields it builds, error messages) passes through [`redact`], which replaces
//! anything shaped like an AgentLattice key with `<redacted>`. The types already keep keys out;
//! this catches a key pasted where it does not belong (a spec field echoed in an error, a server
//! message).

const SCHEMES: [&str; 2] = ["al_agent_", "al_svc_"];

/// `text` with every `al_agent_…` / `al_svc_…` token (the scheme and the alphanumeric run after
/// it) replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    if !SCHEMES.iter().any(|s| text.contains(s)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, scheme)) = SCHEMES
        .iter()
        .filter_map(|s| rest.find(s).map(|i| (i, *s)))
        .min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at]);
        out.push_str("<redacted>");
        let after = &rest[at + scheme.len()..];
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
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
}
