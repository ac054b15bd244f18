//! Verification of signed requests, as `alter-sdk==0.29.0` signs them
//! (`_VaultClient.__compute_hmac_headers`), and the replay guard.
//!
//! The signing key is `HMAC-SHA256(api_key, "alter-signing-v1")`. The string to sign is
//! `METHOD\nTARGET\nTIMESTAMP\nNONCE\nCONTENT_SHA256\nSCOPE_CONSTRAINTS`, then
//! `\nrequest-rule:<X-Alter-Request-Rule>` when that header is present, then — the second form —
//! `\ncaller:…`, `\ncaller-type:…`, `\nactor-id:…`, `\nactor-context:…` for each of
//! `X-Alter-Caller`, `X-Alter-Caller-Type`, `X-Alter-Actor-ID`, `X-Alter-Context` that is present
//! and not empty. `TARGET` is the percent-decoded path, plus `?` and the query re-encoded as
//! Python's `urlencode(sorted(parse_qsl(q, keep_blank_values=True)))` when the raw query is not
//! empty.

use std::collections::{HashMap, VecDeque};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Python's `quote_plus`: `[A-Za-z0-9_.~-]` kept, space → `+`, other bytes `%XX`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the server recomputes the signature over.
pub(crate) fn target(raw_path: &str, raw_query: Option<&str>) -> String {
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    match raw_query {
        Some(q) if !q.is_empty() => {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            pairs.sort();
            let canonical: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
                .collect();
            format!("{path}?{}", canonical.join("&"))
        }
        _ => path.into_owned(),
    }
}

/// A request as the verifier sees it.
pub(crate) struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::unauthorized("invalid_signature", "a signed header is not visible ASCII")
        }),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scope constraints the request carries (signed, so trustworthy once verified).
pub(crate) fn constraints(headers: &HeaderMap) -> Option<Vec<String>> {
    let raw = headers.get("x-alter-scope-constraints")?.to_str().ok()?;
    (!raw.is_empty()).then(|| raw.split(',').map(str::to_owned).collect())
}

/// Checks the signature headers of `req` against `api_key`; returns the nonce (for the replay
/// guard, which the caller applies once the key is known to be live).
pub(crate) fn verify(
    api_key: &str,
    req: &Signed<'_>,
    now_secs: i64,
    window_secs: u64,
) -> Result<String, ApiError> {
    let h = req.headers;
    let (Some(ts), Some(nonce), Some(content), Some(signature)) = (
        header(h, "x-alter-timestamp")?,
        header(h, "x-alter-nonce")?,
        header(h, "x-alter-content-sha256")?,
        header(h, "x-alter-signature")?,
    ) else {
        return Err(ApiError::unauthorized(
            "missing_signature",
            "signed requests carry X-Alter-Timestamp, X-Alter-Nonce, X-Alter-Content-SHA256 and X-Alter-Signature",
        ));
    };
    let ts_secs = (!ts.is_empty() && ts.len() <= 12 && ts.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ts.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_timestamp", "X-Alter-Timestamp is Unix seconds")
        })?;
    if now_secs.abs_diff(ts_secs) > window_secs {
        return Err(ApiError::unauthorized(
            "signature_expired",
            "X-Alter-Timestamp is outside the accepted window; check the clock",
        ));
    }
    if nonce.is_empty() || nonce.len() > 128 {
        return Err(ApiError::unauthorized(
            "invalid_nonce",
            "X-Alter-Nonce is 1-128 characters",
        ));
    }
    let body_hash = to_hex(&Sha256::digest(req.body));
    if !content.eq_ignore_ascii_case(&body_hash) {
        return Err(ApiError::unauthorized(
            "content_hash_mismatch",
            "X-Alter-Content-SHA256 is not the SHA-256 of the body",
        ));
    }
    let mut sts = format!(
        "{}\n{}\n{ts}\n{nonce}\n{content}\n{}",
        req.method.to_ascii_uppercase(),
        target(req.path, req.query),
        header(h, "x-alter-scope-constraints")?.unwrap_or("")
    );
    if let Some(rule) = header(h, "x-alter-request-rule")?.filter(|r| !r.is_empty()) {
        sts.push_str(&format!("\nrequest-rule:{rule}"));
    }
    for (label, name) in [
        ("caller", "x-alter-caller"),
        ("caller-type", "x-alter-caller-type"),
        ("actor-id", "x-alter-actor-id"),
        ("actor-context", "x-alter-context"),
    ] {
        if let Some(v) = header(h, name)?.filter(|v| !v.is_empty()) {
            sts.push_str(&format!("\n{label}:{v}"));
        }
    }
    let signing_key = hmac_sha256(api_key.as_bytes(), b"alter-signing-v1");
    let expected = to_hex(&hmac_sha256(&signing_key, sts.as_bytes()));
    let v2_ok = header(h, "x-alter-signature-v2")?
        .is_none_or(|v2| constant_time_eq(v2.as_bytes(), expected.as_bytes()));
    if !(constant_time_eq(signature.as_bytes(), expected.as_bytes()) && v2_ok) {
        return Err(ApiError::unauthorized(
            "invalid_signature",
            "the request signature does not match",
        ));
    }
    Ok(nonce.to_owned())
}

/// Nonces seen within the window: a second use is a replay.
pub(crate) struct NonceGuard {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

/// At most this many nonces are remembered (the oldest are forgotten first).
const MAX_NONCES: usize = 1_000_000;

impl NonceGuard {
    pub fn new() -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `nonce`; `false` when it was already used. Nonces older than twice the window (a
    /// request carrying them is refused by its timestamp anyway) are forgotten.
    pub fn admit(&mut self, nonce: &str, now_secs: i64, window_secs: u64) -> bool {
        let horizon =
            now_secs.saturating_sub(2 * i64::try_from(window_secs).unwrap_or(i64::MAX / 4));
        while let Some((at, _)) = self.order.front() {
            if *at >= horizon && self.order.len() < MAX_NONCES {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_owned(), now_secs);
        self.order.push_back((now_secs, nonce.to_owned()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const KEY: &str = "alter_rk_abcdefghijklmnopqrstuv_iwpykn";

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            to_hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (RFC 4231 case 6).
        assert_eq!(
            to_hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(target("/sdk/agents", Some("")), "/sdk/agents");
        assert_eq!(
            target(
                "/sdk/agents",
                Some("offset=0&limit=5&include_revoked=false")
            ),
            "/sdk/agents?include_revoked=false&limit=5&offset=0"
        );
        assert_eq!(
            target("/a%20b", Some("q=a%20b+c&z=*")),
            "/a b?q=a+b+c&z=%2A"
        );
        assert_eq!(target("/x", Some("&")), "/x?");
    }

    /// The same fixed vector as the client's, computed with Python's `hmac` (see
    /// `crates/alter/src/sign.rs`).
    #[test]
    fn verifies_the_python_vector_and_refuses_any_change() {
        let body = br#"{"name":"nightly-sync","type":"service","scopes":{},"metadata":{}}"#;
        let mut h = HeaderMap::new();
        let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        };
        set(&mut h, "x-alter-timestamp", "1767225600");
        set(&mut h, "x-alter-nonce", "00112233445566778899aabbccddeeff");
        set(
            &mut h,
            "x-alter-content-sha256",
            "242e0a7f3b3f21dc253b1451634678f895e21ab74971efc1c4aa5ee868a8f5f6",
        );
        set(
            &mut h,
            "x-alter-signature",
            "71ac9689ceb107487d5f1a7524b460cb853e3544452bbedd806ef149174e37e6",
        );
        let req = |h: &HeaderMap, body: &[u8], method: &str| {
            verify(
                KEY,
                &Signed {
                    method,
                    path: "/sdk/agents",
                    query: None,
                    headers: h,
                    body,
                },
                1_767_225_650,
                300,
            )
        };
        assert_eq!(
            req(&h, body, "POST").unwrap(),
            "00112233445566778899aabbccddeeff"
        );
        assert_eq!(
            req(&h, body, "PATCH").unwrap_err().code,
            "invalid_signature"
        );
        assert_eq!(
            req(&h, b"{}", "POST").unwrap_err().code,
            "content_hash_mismatch"
        );
        let mut v2 = h.clone();
        set(&mut v2, "x-alter-caller", "someone");
        assert_eq!(
            req(&v2, body, "POST").unwrap_err().code,
            "invalid_signature"
        );
        let mut constrained = h.clone();
        set(
            &mut constrained,
            "x-alter-scope-constraints",
            "dashboard_agents:read",
        );
        assert_eq!(
            req(&constrained, body, "POST").unwrap_err().code,
            "invalid_signature"
        );
        let mut ruled = h.clone();
        set(
            &mut ruled,
            "x-alter-request-rule",
            "eyJydWxlX3R5cGUiOiJ4In0",
        );
        assert_eq!(
            req(&ruled, body, "POST").unwrap_err().code,
            "invalid_signature"
        );
        let mut long_nonce = h.clone();
        set(&mut long_nonce, "x-alter-nonce", &"n".repeat(129));
        assert_eq!(
            req(&long_nonce, body, "POST").unwrap_err().code,
            "invalid_nonce"
        );
        let mut old = h.clone();
        set(&mut old, "x-alter-timestamp", "1767225000");
        assert_eq!(
            req(&old, body, "POST").unwrap_err().code,
            "signature_expired"
        );
        let mut bad_ts = h.clone();
        set(&mut bad_ts, "x-alter-timestamp", "17e8");
        assert_eq!(
            req(&bad_ts, body, "POST").unwrap_err().code,
            "invalid_timestamp"
        );
        let mut unsigned = h.clone();
        unsigned.remove("x-alter-signature");
        assert_eq!(
            req(&unsigned, body, "POST").unwrap_err().code,
            "missing_signature"
        );
    }

    #[test]
    fn nonces_are_single_use_within_the_window() {
        let mut g = NonceGuard::new();
        assert!(g.admit("a", 1000, 300));
        assert!(!g.admit("a", 1001, 300));
        assert!(g.admit("b", 1001, 300));
        // Long after, the old nonce is forgotten (its timestamp would be refused anyway).
        assert!(g.admit("a", 1000 + 602, 300));
        assert_eq!(g.seen.len(), 1);
    }
}
