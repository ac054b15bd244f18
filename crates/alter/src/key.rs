//! App keys and agent keys: two types, so that a workload's key can never be used where the
//! provisioning credential belongs.
//!
//! Formats, as `alter-sdk==0.29.0` validates them (`alter_sdk/_key_format.py`):
//!
//! - **scoped**: `alter_<type>_<22 characters of a-z2-7>_<6-character checksum>`; the checksum is
//!   the CRC-32 of `"<type>:<random>"`, its low 30 bits written as six base-32 digits, least
//!   significant first. `rk` is a runtime (app) key, `ak` an agent-typed key.
//! - **legacy**: `alter_key_<40 characters of A-Za-z0-9-_>`, no checksum. Per-agent keys minted by
//!   `alter agents create` / `mint-key` have this format today; so do app keys minted before the
//!   scoped formats. The prefix does not say which kind of key it is.
//!
//! Both types redact themselves in `Debug` and `Display`, zero their memory when dropped, and give
//! the plaintext only through `expose_secret()`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

const SCOPED_LEAD: &str = "alter_";
const LEGACY_SCHEME: &str = "alter_key_";
const RANDOM_LEN: usize = 22;
const CHECKSUM_LEN: usize = 6;
const LEGACY_RANDOM_LEN: usize = 40;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a string is not a valid key. The message never contains the key, nor a key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a runtime (app) key. A legacy app key must be built with [`AppKey::legacy`].
    #[error("not an app key (wrong format)")]
    NotAppKey,
    /// Not a managed agent's key.
    #[error("not an agent key (wrong format)")]
    NotAgentKey,
    /// The right format but the wrong number of characters.
    #[error("the key has the wrong length")]
    BadLength,
    /// Characters outside the key's alphabet.
    #[error("the key contains characters that are not allowed in a key")]
    InvalidCharacters,
    /// A scoped key whose checksum does not match its body (a typo, a lost character).
    #[error("the key's checksum does not match (mistyped or truncated key)")]
    BadChecksum,
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The six-character checksum of a scoped key's `"<type>:<random>"`.
fn checksum(key_type: &str, random: &str) -> [u8; CHECKSUM_LEN] {
    let crc = crc32(format!("{key_type}:{random}").as_bytes());
    let mut out = [0u8; CHECKSUM_LEN];
    for (i, c) in out.iter_mut().enumerate() {
        *c = BASE32[((crc >> (5 * i)) & 0x1F) as usize];
    }
    out
}

/// Checks `alter_<key_type>_<random>_<checksum>`.
fn check_scoped(s: &str, key_type: &str, wrong: KeyError) -> Result<(), KeyError> {
    let Some(rest) = s
        .strip_prefix(SCOPED_LEAD)
        .and_then(|r| r.strip_prefix(key_type))
        .and_then(|r| r.strip_prefix('_'))
    else {
        return Err(wrong);
    };
    let Some((random, sum)) = rest.split_once('_') else {
        return Err(KeyError::BadLength);
    };
    if random.len() != RANDOM_LEN || sum.len() != CHECKSUM_LEN {
        return Err(KeyError::BadLength);
    }
    if !random
        .bytes()
        .chain(sum.bytes())
        .all(|b| BASE32.contains(&b))
    {
        return Err(KeyError::InvalidCharacters);
    }
    if checksum(key_type, random) != sum.as_bytes() {
        return Err(KeyError::BadChecksum);
    }
    Ok(())
}

/// Checks `alter_key_<40 URL-safe characters>`.
fn check_legacy(s: &str, wrong: KeyError) -> Result<(), KeyError> {
    let Some(random) = s.strip_prefix(LEGACY_SCHEME) else {
        return Err(wrong);
    };
    if !random
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(KeyError::InvalidCharacters);
    }
    if random.len() != LEGACY_RANDOM_LEN {
        return Err(KeyError::BadLength);
    }
    Ok(())
}

/// The secret bytes of a key, zeroed on drop.
#[derive(Clone)]
struct Secret(Zeroizing<String>);

impl Secret {
    /// Trims surrounding whitespace (a mounted Secret file's newline), checks, keeps. `input` is
    /// zeroed whatever the outcome.
    fn parse(
        input: String,
        check: impl Fn(&str) -> Result<(), KeyError>,
    ) -> Result<Self, KeyError> {
        let input = Zeroizing::new(input);
        let trimmed = input.trim();
        check(trimmed)?;
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Constant-time comparison (the length is not hidden).
    fn ct_eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether `prefix` (a `key_prefix` from a key listing) is the start of this key.
    fn has_prefix(&self, prefix: &str) -> bool {
        !prefix.is_empty() && self.expose().starts_with(prefix)
    }
}

macro_rules! redacted {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.secret.ct_eq(&other.secret)
            }
        }

        impl Eq for $name {}
    };
}

/// An app key: Alter's provisioning credential (the `App` SDK class's key). It manages an app's
/// managed agents and never acts as one. Build an [`crate::AppClient`] from it.
///
/// [`AppKey::new`] accepts runtime keys (`alter_rk_…`, checksum verified); a legacy app key
/// (`alter_key_…`) must be asked for explicitly with [`AppKey::legacy`], because a legacy app key
/// and a managed agent's key look alike.
///
/// ```
/// # use alter::AppKey;
/// let key: AppKey = "alter_rk_abcdefghijklmnopqrstuv_iwpykn".parse()?;
/// assert_eq!(format!("{key:?}"), "AppKey(<redacted>)");
/// assert!(!key.is_legacy());
/// # Ok::<(), alter::KeyError>(())
/// ```
#[derive(Clone)]
pub struct AppKey {
    secret: Secret,
    legacy: bool,
}

impl AppKey {
    /// Parses a runtime app key (`alter_rk_…`). Surrounding whitespace is ignored; the error never
    /// contains the input.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        Secret::parse(key.into(), |s| check_scoped(s, "rk", KeyError::NotAppKey)).map(|secret| {
            Self {
                secret,
                legacy: false,
            }
        })
    }

    /// Parses a legacy app key (`alter_key_…`, minted before scoped keys existed). Nothing in the
    /// string tells it from a managed agent's key: only use this for a key you know is an app key.
    pub fn legacy(key: impl Into<String>) -> Result<Self, KeyError> {
        Secret::parse(key.into(), |s| check_legacy(s, KeyError::NotAppKey)).map(|secret| Self {
            secret,
            legacy: true,
        })
    }

    /// Whether this is a legacy (`alter_key_…`) app key.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The key itself, for the one place that must see it (the `x-api-key` header). Never log it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose()
    }

    /// Whether a listing's `key_prefix` is the start of this key.
    pub fn matches_prefix(&self, key_prefix: &str) -> bool {
        self.secret.has_prefix(key_prefix)
    }
}

redacted!(AppKey);

impl FromStr for AppKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

impl TryFrom<String> for AppKey {
    type Error = KeyError;

    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

/// A managed agent's key: a workload's credential (the `Agent` SDK class's key). It acts as the
/// agent and never provisions. Create and mint return new keys as `AgentKey` values.
///
/// Accepts the format agents are minted with today (`alter_key_…`, 40 URL-safe characters) and
/// agent-typed scoped keys (`alter_ak_…`, checksum verified).
///
/// ```
/// # use alter::AgentKey;
/// let key = AgentKey::new("alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567")?;
/// assert_eq!(key.to_string(), "AgentKey(<redacted>)");
/// # Ok::<(), alter::KeyError>(())
/// ```
#[derive(Clone)]
pub struct AgentKey {
    secret: Secret,
}

impl AgentKey {
    /// Parses an agent key. Surrounding whitespace is ignored; the error never contains the input.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        Secret::parse(key.into(), |s| {
            if s.starts_with(LEGACY_SCHEME) {
                check_legacy(s, KeyError::NotAgentKey)
            } else {
                check_scoped(s, "ak", KeyError::NotAgentKey)
            }
        })
        .map(|secret| Self { secret })
    }

    /// The key itself, for the one place that must see it (a Kubernetes Secret, the `x-api-key`
    /// header). Never log it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose()
    }

    /// Whether a listing's `key_prefix` is the start of this key: which listed key this is.
    pub fn matches_prefix(&self, key_prefix: &str) -> bool {
        self.secret.has_prefix(key_prefix)
    }
}

redacted!(AgentKey);

impl FromStr for AgentKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

impl TryFrom<String> for AgentKey {
    type Error = KeyError;

    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for AgentKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AgentKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent key")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AgentKey, E> {
                AgentKey::new(v).map_err(E::custom)
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<AgentKey, E> {
                AgentKey::new(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_string(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checksums computed with Python's zlib.crc32 exactly as `alter_sdk/_key_format.py` does:
    //   crc = zlib.crc32(b"rk:abcdefghijklmnopqrstuv")
    //   "".join("abcdefghijklmnopqrstuvwxyz234567"[(crc >> (5*i)) & 31] for i in range(6))
    const RK: &str = "alter_rk_abcdefghijklmnopqrstuv_iwpykn";
    const AK: &str = "alter_ak_abcdefghijklmnopqrstuv_v7lnv3";
    const LEGACY: &str = "alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567";

    #[test]
    fn crc32_is_zlibs() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn parses_by_format() {
        assert!(AppKey::new(RK).is_ok());
        assert!(AgentKey::new(AK).is_ok());
        assert!(AgentKey::new(LEGACY).is_ok());
        assert!(AppKey::legacy(LEGACY).unwrap().is_legacy());
        assert_eq!(AppKey::new(LEGACY).err(), Some(KeyError::NotAppKey));
        assert_eq!(AppKey::new(AK).err(), Some(KeyError::NotAppKey));
        assert_eq!(AgentKey::new(RK).err(), Some(KeyError::NotAgentKey));
        assert_eq!(AgentKey::new("").err(), Some(KeyError::NotAgentKey));
        assert_eq!(AppKey::legacy(RK).err(), Some(KeyError::NotAppKey));
    }

    #[test]
    fn checksum_and_shape_are_checked() {
        // One flipped character in the body.
        let flipped = RK.replacen("abc", "abd", 1);
        assert_eq!(AppKey::new(flipped).err(), Some(KeyError::BadChecksum));
        assert_eq!(
            AppKey::new("alter_rk_abcdefghijklmnopqrstu_iwpykn").err(),
            Some(KeyError::BadLength)
        );
        assert_eq!(
            AppKey::new("alter_rk_ABCDEFGHIJKLMNOPQRSTUV_iwpykn").err(),
            Some(KeyError::InvalidCharacters)
        );
        assert_eq!(
            AppKey::new("alter_rk_abcdefghijklmnopqrstuviwpykn").err(),
            Some(KeyError::BadLength)
        );
        assert_eq!(
            AgentKey::new(&LEGACY[..LEGACY.len() - 1]).err(),
            Some(KeyError::BadLength)
        );
        assert_eq!(
            AgentKey::new(format!("{}!", &LEGACY[..LEGACY.len() - 1])).err(),
            Some(KeyError::InvalidCharacters)
        );
    }

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(
            AppKey::new(format!("  {RK}\n")).unwrap().expose_secret(),
            RK
        );
    }

    #[test]
    fn errors_and_formatting_never_show_the_key() {
        let a = AppKey::new(RK).unwrap();
        let g = AgentKey::new(LEGACY).unwrap();
        assert_eq!(
            format!("{a:?} {a}"),
            "AppKey(<redacted>) AppKey(<redacted>)"
        );
        assert_eq!(format!("{:?}", Some(&g)), "Some(AgentKey(<redacted>))");
        for e in [
            AppKey::new(LEGACY).unwrap_err(),
            AgentKey::new(RK).unwrap_err(),
            AppKey::new(RK.replacen("abc", "abd", 1)).unwrap_err(),
        ] {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("alter_"), "{shown}");
            assert!(!shown.contains("abcdefgh"), "{shown}");
        }
    }

    #[test]
    fn prefix_matching_and_equality() {
        let g = AgentKey::new(LEGACY).unwrap();
        assert!(g.matches_prefix("alter_key_012345"));
        assert!(!g.matches_prefix("alter_key_999999"));
        assert!(!g.matches_prefix(""));
        assert_eq!(g, g.clone());
        assert_ne!(g, AgentKey::new(AK).unwrap());
    }

    #[test]
    fn deserializes_with_validation_and_a_secret_free_error() {
        let k: AgentKey = serde_json::from_str(&format!("\"{LEGACY}\"")).unwrap();
        assert_eq!(k.expose_secret(), LEGACY);
        let e = serde_json::from_str::<AgentKey>(&format!("\"{RK}\"")).unwrap_err();
        assert!(e.to_string().contains("not an agent key"), "{e}");
        assert!(!e.to_string().contains("abcdefgh"));
    }
}
