//! Key material: generation from a CSPRNG, SHA-256 hashes, schemes and public prefixes (§1.1).

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// Scheme of a service key.
pub const SERVICE_SCHEME: &str = "al_svc_";
/// Scheme of an agent key.
pub const AGENT_SCHEME: &str = "al_agent_";
/// Length of the random body after the scheme.
pub const BODY_LEN: usize = 40;
/// Length of the public prefix (taken from the body, never from the scheme).
pub const PREFIX_LEN: usize = 8;

/// SHA-256 of the whole key (scheme included). The only thing ever stored.
pub(crate) type KeyHash = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Service,
    Agent,
}

/// A freshly generated key. `plaintext` leaves the process once, in the response that created it.
pub(crate) struct Minted {
    pub plaintext: String,
    pub hash: KeyHash,
    pub prefix: String,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("plaintext", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

pub(crate) fn mint(kind: KeyKind) -> Minted {
    // `rand::rng()` is a ChaCha-based CSPRNG seeded (and periodically reseeded) from the OS.
    let body: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(BODY_LEN)
        .map(char::from)
        .collect();
    let scheme = match kind {
        KeyKind::Service => SERVICE_SCHEME,
        KeyKind::Agent => AGENT_SCHEME,
    };
    let plaintext = format!("{scheme}{body}");
    Minted {
        hash: hash(&plaintext),
        prefix: body[..PREFIX_LEN].to_owned(),
        plaintext,
    }
}

pub(crate) fn hash(token: &str) -> KeyHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Which kind of key a bearer token claims to be, by its scheme alone.
pub(crate) fn kind_of(token: &str) -> Option<KeyKind> {
    if token.starts_with(SERVICE_SCHEME) {
        Some(KeyKind::Service)
    } else if token.starts_with(AGENT_SCHEME) {
        Some(KeyKind::Agent)
    } else {
        None
    }
}

/// Random `[A-Za-z0-9]` string, for admin tokens.
pub(crate) fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Serde of a [`KeyHash`] as 64 lower-case hex digits (state file only).
pub(crate) mod hex_hash {
    use super::KeyHash;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Write;

    pub fn serialize<S: Serializer>(h: &KeyHash, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(64);
        for b in h {
            let _ = write!(out, "{b:02x}");
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyHash, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(serde::de::Error::custom("a key hash is 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
                _ => return Err(serde::de::Error::custom("a key hash is 64 hex digits")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_scheme_body_and_a_prefix_from_the_body() {
        for kind in [KeyKind::Service, KeyKind::Agent] {
            let m = mint(kind);
            let scheme = if kind == KeyKind::Service {
                SERVICE_SCHEME
            } else {
                AGENT_SCHEME
            };
            let body = m.plaintext.strip_prefix(scheme).unwrap();
            assert_eq!(body.len(), BODY_LEN);
            assert!(body.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(m.prefix, &body[..PREFIX_LEN]);
            assert_eq!(m.hash, hash(&m.plaintext));
            assert_eq!(kind_of(&m.plaintext), Some(kind));
            assert!(!format!("{m:?}").contains(&m.plaintext));
        }
        assert_ne!(
            mint(KeyKind::Agent).plaintext,
            mint(KeyKind::Agent).plaintext
        );
        assert_eq!(kind_of("Bearer"), None);
    }

    #[test]
    fn hash_hex_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct W(#[serde(with = "hex_hash")] KeyHash);
        let h = hash("al_svc_x");
        let s = serde_json::to_string(&W(h)).unwrap();
        let back: W = serde_json::from_str(&s).unwrap();
        assert_eq!(back.0, h);
        assert!(serde_json::from_str::<W>("\"zz\"").is_err());
    }
}
