//! Key material: generation from a CSPRNG in the formats `alter-sdk==0.29.0` validates, SHA-256
//! hashes (the only thing stored), display prefixes.

use rand::Rng;
use sha2::{Digest, Sha256};

/// Scheme of the app (runtime) keys the emulator issues.
pub const APP_KEY_SCHEME: &str = "alter_rk_";
/// Scheme of the managed-agent keys the emulator mints (the SDK's "legacy" format, which per-agent
/// keys still use).
pub const AGENT_KEY_SCHEME: &str = "alter_key_";
/// `key_prefix`: this many leading characters of the plaintext, scheme included.
pub const PREFIX_LEN: usize = 16;

const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// SHA-256 of a whole key.
pub(crate) type KeyHash = [u8; 32];

/// A fresh key. `plaintext` leaves the process once, in the response that created it.
pub(crate) struct Minted {
    pub plaintext: String,
    pub hash: KeyHash,
    pub prefix: String,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The CRC-32 lookup table (IEEE, reflected), built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub(crate) fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

pub(crate) fn random_alnum(n: usize) -> String {
    random_from(&URL_SAFE[..62], n)
}

pub(crate) fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

fn finish(plaintext: String) -> Minted {
    Minted {
        hash: hash(&plaintext),
        prefix: plaintext.chars().take(PREFIX_LEN).collect(),
        plaintext,
    }
}

/// `alter_rk_<22 base-32>_<checksum>`, the checksum being CRC-32 of `"rk:<random>"` as six
/// base-32 digits, least significant first.
pub(crate) fn mint_app_key() -> Minted {
    let random = random_from(BASE32, 22);
    let crc = crc32(format!("rk:{random}").as_bytes());
    let checksum: String = (0..6)
        .map(|i| char::from(BASE32[((crc >> (5 * i)) & 31) as usize]))
        .collect();
    finish(format!("{APP_KEY_SCHEME}{random}_{checksum}"))
}

/// `alter_key_<40 URL-safe characters>`.
pub(crate) fn mint_agent_key() -> Minted {
    finish(format!("{AGENT_KEY_SCHEME}{}", random_from(URL_SAFE, 40)))
}

/// Hashes as hex in the state file.
pub(crate) mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &super::KeyHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::KeyHash, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("a key hash is 64 hex digits");
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // zlib.crc32(b"rk:abcdefghijklmnopqrstuv") as six base-32 digits is "iwpykn".
        let crc = crc32(b"rk:abcdefghijklmnopqrstuv");
        let s: String = (0..6)
            .map(|i| char::from(BASE32[((crc >> (5 * i)) & 31) as usize]))
            .collect();
        assert_eq!(s, "iwpykn");
    }

    #[test]
    fn formats_and_prefixes() {
        let a = mint_app_key();
        assert!(a.plaintext.starts_with(APP_KEY_SCHEME));
        assert_eq!(a.plaintext.len(), 9 + 22 + 1 + 6);
        assert_eq!(a.prefix, &a.plaintext[..PREFIX_LEN]);
        let g = mint_agent_key();
        assert_eq!(g.plaintext.len(), 10 + 40);
        assert!(g.plaintext[10..].bytes().all(|b| URL_SAFE.contains(&b)));
        assert_ne!(g.hash, mint_agent_key().hash);
        assert!(!format!("{g:?}").contains(&g.plaintext));
    }
}
