//! Request signing, as `alter-sdk==0.29.0` computes it (`_VaultClient.__compute_hmac_headers`).
//!
//! - signing key: `HMAC-SHA256(key = the API key's bytes, message = "alter-signing-v1")`;
//! - string to sign: `METHOD \n TARGET \n TIMESTAMP \n NONCE \n CONTENT_SHA256 \n SCOPE_CONSTRAINTS`
//!   where `TARGET` is the percent-decoded path (relative to the base URL) followed, when the raw
//!   query is not empty, by `?` and the query re-encoded as Python's
//!   `urlencode(sorted(parse_qsl(query, keep_blank_values=True)))` does;
//! - headers: `X-Alter-Timestamp` (Unix seconds), `X-Alter-Nonce` (32 hex digits, fresh for every
//!   attempt), `X-Alter-Content-SHA256` (hex SHA-256 of the exact body bytes, of nothing for a
//!   body-less request), `X-Alter-Signature` (hex HMAC), and `X-Alter-Scope-Constraints` when the
//!   client narrows its scopes.
//!
//! The SDK's second signature form (`X-Alter-Signature-V2`, which also binds `X-Alter-Caller`,
//! `X-Alter-Caller-Type`, `X-Alter-Actor-ID` and `X-Alter-Context`) is only used when those actor
//! headers are sent; this client never sends them, so it always signs the first form.

use std::fmt::Write as _;

use ring::{digest, hmac};

/// Context string of the signing-key derivation.
const SIGNING_CONTEXT: &[u8] = b"alter-signing-v1";

/// `X-Alter-Timestamp`.
pub(crate) const TIMESTAMP: &str = "x-alter-timestamp";
/// `X-Alter-Nonce`.
pub(crate) const NONCE: &str = "x-alter-nonce";
/// `X-Alter-Content-SHA256`.
pub(crate) const CONTENT_SHA256: &str = "x-alter-content-sha256";
/// `X-Alter-Signature`.
pub(crate) const SIGNATURE: &str = "x-alter-signature";
/// `X-Alter-Scope-Constraints`.
pub(crate) const SCOPE_CONSTRAINTS: &str = "x-alter-scope-constraints";

/// The key requests are signed with, derived once from the API key. Never printed.
pub(crate) struct SigningKey(hmac::Key);

impl SigningKey {
    pub(crate) fn derive(api_key: &str) -> Self {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, api_key.as_bytes());
        let derived = hmac::sign(&outer, SIGNING_CONTEXT);
        SigningKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Python's `quote_plus` with its default `safe=''`: letters, digits and `_.-~` stay, a space
/// becomes `+`, every other UTF-8 byte becomes `%XX` (upper case).
fn quote_plus(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

/// The part of the string to sign that names the target: the percent-decoded `path`, then — when
/// the raw `query` is not empty — `?` and the canonical query (which may itself be empty).
pub fn canonical_target(path: &str, query: Option<&str>) -> String {
    let mut out = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        out.push('?');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            quote_plus(k, &mut out);
            out.push('=');
            quote_plus(v, &mut out);
        }
    }
    out
}

/// Hex SHA-256 of a body (of nothing for a body-less request).
pub fn content_sha256(body: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, body).as_ref())
}

/// What one signed attempt carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature {
    pub timestamp: String,
    pub nonce: String,
    pub content_sha256: String,
    pub signature: String,
}

/// The string to sign (first form).
pub fn string_to_sign(
    method: &str,
    target: &str,
    timestamp: &str,
    nonce: &str,
    content_sha256: &str,
    scope_constraints: &str,
) -> String {
    format!(
        "{}\n{target}\n{timestamp}\n{nonce}\n{content_sha256}\n{scope_constraints}",
        method.to_ascii_uppercase()
    )
}

/// A fresh 32-hex-digit nonce.
pub(crate) fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// Signs one attempt.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign(
    key: &SigningKey,
    method: &str,
    path: &str,
    query: Option<&str>,
    timestamp: u64,
    nonce: String,
    body: &[u8],
    scope_constraints: &str,
) -> Signature {
    let timestamp = timestamp.to_string();
    let content_sha256 = content_sha256(body);
    let target = canonical_target(path, query);
    let sts = string_to_sign(
        method,
        &target,
        &timestamp,
        &nonce,
        &content_sha256,
        scope_constraints,
    );
    let signature = hex(hmac::sign(&key.0, sts.as_bytes()).as_ref());
    Signature {
        timestamp,
        nonce,
        content_sha256,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "alter_rk_abcdefghijklmnopqrstuv_iwpykn";

    #[test]
    fn canonical_targets_follow_pythons_parse_qsl_and_urlencode() {
        assert_eq!(canonical_target("/sdk/agents", None), "/sdk/agents");
        // A present-but-empty query signs without the `?`.
        assert_eq!(canonical_target("/sdk/agents", Some("")), "/sdk/agents");
        // Sorted by (name, value); `+` and `%20` decode to a space and re-encode as `+`.
        assert_eq!(
            canonical_target(
                "/sdk/agents",
                Some("offset=0&limit=5&name=a%20b&include_revoked=false")
            ),
            "/sdk/agents?include_revoked=false&limit=5&name=a+b&offset=0"
        );
        assert_eq!(
            canonical_target("/sdk/agents", Some("b=2&a=1&a=0")),
            "/sdk/agents?a=0&a=1&b=2"
        );
        // quote_plus keeps `~` and escapes `*`, `/` and non-ASCII.
        assert_eq!(
            canonical_target("/x", Some("q=%7E*/%C3%A9&flag")),
            "/x?flag=&q=~%2A%2F%C3%A9"
        );
        // The path is signed percent-decoded.
        assert_eq!(
            canonical_target("/sdk/agents/a%3Ab/keys", None),
            "/sdk/agents/a:b/keys"
        );
        // A non-empty query that canonicalizes to nothing keeps its `?`.
        assert_eq!(canonical_target("/x", Some("&")), "/x?");
    }

    /// A fixed vector, computed independently with Python's standard library, following
    /// `alter_sdk/client.py` step by step:
    ///
    /// ```python
    /// import hashlib, hmac
    /// key = hmac.new(b"alter_rk_abcdefghijklmnopqrstuv_iwpykn", b"alter-signing-v1",
    ///                hashlib.sha256).digest()
    /// body = b'{"name":"nightly-sync","type":"service","scopes":{},"metadata":{}}'
    /// h = hashlib.sha256(body).hexdigest()
    /// sts = f"POST\n/sdk/agents\n1767225600\n00112233445566778899aabbccddeeff\n{h}\n"
    /// hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    /// ```
    #[test]
    fn known_answer_vector() {
        let body = br#"{"name":"nightly-sync","type":"service","scopes":{},"metadata":{}}"#;
        let s = sign(
            &SigningKey::derive(KEY),
            "post",
            "/sdk/agents",
            None,
            1_767_225_600,
            "00112233445566778899aabbccddeeff".into(),
            body,
            "",
        );
        assert_eq!(s.content_sha256, KAT_BODY_SHA256);
        assert_eq!(s.signature, KAT_SIGNATURE);
        assert_eq!(s.timestamp, "1767225600");
        // The empty body's hash.
        assert_eq!(
            content_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_bound_part_changes_the_signature() {
        let k = SigningKey::derive(KEY);
        let base = |m: &str, p: &str, q: Option<&str>, t: u64, n: &str, b: &[u8], c: &str| {
            sign(&k, m, p, q, t, n.into(), b, c).signature
        };
        let reference = base("GET", "/sdk/agents", Some("limit=1"), 1, "n", b"", "");
        for other in [
            base("DELETE", "/sdk/agents", Some("limit=1"), 1, "n", b"", ""),
            base("GET", "/sdk/agentz", Some("limit=1"), 1, "n", b"", ""),
            base("GET", "/sdk/agents", Some("limit=2"), 1, "n", b"", ""),
            base("GET", "/sdk/agents", Some("limit=1"), 2, "n", b"", ""),
            base("GET", "/sdk/agents", Some("limit=1"), 1, "m", b"", ""),
            base("GET", "/sdk/agents", Some("limit=1"), 1, "n", b"{}", ""),
            base(
                "GET",
                "/sdk/agents",
                Some("limit=1"),
                1,
                "n",
                b"",
                "dashboard_agents:read",
            ),
        ] {
            assert_ne!(other, reference);
        }
        let other_key = SigningKey::derive("alter_rk_bbcdefghijklmnopqrstuv_xxxxxx");
        assert_ne!(
            sign(
                &other_key,
                "GET",
                "/sdk/agents",
                Some("limit=1"),
                1,
                "n".into(),
                b"",
                ""
            )
            .signature,
            reference
        );
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let a = new_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_nonce());
        assert_eq!(
            format!("{:?}", SigningKey::derive(KEY)),
            "SigningKey(<redacted>)"
        );
    }

    const KAT_BODY_SHA256: &str =
        "242e0a7f3b3f21dc253b1451634678f895e21ab74971efc1c4aa5ee868a8f5f6";
    const KAT_SIGNATURE: &str = "71ac9689ceb107487d5f1a7524b460cb853e3544452bbedd806ef149174e37e6";
}
