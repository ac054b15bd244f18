//! Objects kept as compressed JSON (design §2.1).
//!
//! A cached object's JSON is mostly what every object of its kind repeats: field names, the
//! operator's labels and annotations, the conditions it writes. zstd compresses each object
//! against a dictionary — a typical object of the kind, [`Packable::dictionary`] — so that mostly
//! what differs (names, uids, timestamps, key ids) is kept, and that entropy-coded. A Ready
//! LatticeAgent's spec and status (about 1.1 KiB of JSON) pack into about 200 bytes, its Secret
//! in cache form (about 1 KiB) into about 330 (`cargo test --release --test footprint --
//! --nocapture`).
//!
//! The dictionary only has to resemble the objects: one that does not compresses worse, never
//! wrongly. It lives in the process only (nothing packed is stored or sent), so changing it is
//! safe.
//!
//! Packing an object costs about ten microseconds, unpacking it a few; the operator packs each
//! watch event's object and unpacks one LatticeAgent and one Secret per reconcile. Each thread
//! keeps one zstd context of each kind (they are reused, not shared).

use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zstd_safe::{CCtx, CDict, DCtx, DDict};

/// How hard zstd tries: level 3, its default (levels up to 19 gained 5 % on these objects at
/// several times the time).
const LEVEL: i32 = 3;

/// Larger than any object the API server stores (etcd's limit is 1.5 MiB): a damaged frame
/// claiming more is an error, not an allocation.
const MAX_UNPACKED: u64 = 16 << 20;

/// A type the caches keep packed.
pub trait Packable: Serialize + DeserializeOwned {
    /// Its dictionary: [`Dictionary::of`] a sample.
    fn dictionary() -> &'static Dictionary;
}

/// The compact JSON of a typical object, prepared for zstd.
pub struct Dictionary {
    json: Vec<u8>,
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({} bytes)", self.json.len())
    }
}

impl Dictionary {
    /// The dictionary made of `sample`, the JSON of a typical `T`: the compact JSON `T`
    /// serializes to, field order included, which is what packing compresses. (A sample that
    /// does not parse — each one has a test that it does — is used as it is: it compresses
    /// worse, never wrongly.)
    pub fn of<T: Serialize + DeserializeOwned>(sample: &str) -> Dictionary {
        let json = serde_json::from_str::<T>(sample)
            .and_then(|t| serde_json::to_vec(&t))
            .unwrap_or_else(|_| sample.as_bytes().to_vec());
        Dictionary {
            compress: CDict::create(&json, LEVEL),
            decompress: DDict::create(&json),
            json,
        }
    }

    /// The JSON it is made of.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// Whether `sample` says nothing `T` drops: the JSON of `T` parsed from it is `sample`'s, so a
/// field renamed or removed from `T` fails the dictionary's test.
#[cfg(test)]
pub fn sample_is_faithful<T: Serialize + DeserializeOwned>(sample: &str) -> bool {
    let Ok(parsed) = serde_json::from_str::<T>(sample) else {
        return false;
    };
    let given: serde_json::Value = serde_json::from_str(sample).unwrap_or_default();
    serde_json::to_value(parsed).ok() == Some(given)
}

/// Why an object was not packed or not unpacked (bytes this module packed always unpack).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the object is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("zstd: {0}")]
    Zstd(&'static str),
    #[error("packed bytes do not say their size")]
    Size,
}

fn zstd_error(code: usize) -> PackError {
    PackError::Zstd(zstd_safe::get_error_name(code))
}

thread_local! {
    /// This thread's zstd contexts.
    static CONTEXTS: RefCell<(CCtx<'static>, DCtx<'static>)> =
        RefCell::new((CCtx::create(), DCtx::create()));
}

/// An object's JSON, compressed against its type's dictionary: one zstd frame, which says its
/// size.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

impl Packed {
    /// Packs `value`, serialized as `T`, against `T`'s dictionary.
    pub fn pack<T: Packable>(value: &T) -> Result<Packed, PackError> {
        Self::pack_as::<T>(value)
    }

    /// Packs `value`, which serializes as `T` does (a borrowed view of one), against `T`'s
    /// dictionary.
    pub fn pack_as<T: Packable>(value: &impl Serialize) -> Result<Packed, PackError> {
        let json = serde_json::to_vec(value)?;
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(json.len()));
        CONTEXTS
            .with_borrow_mut(|(c, _)| {
                c.compress_using_cdict(&mut out, &json, &T::dictionary().compress)
            })
            .map_err(zstd_error)?;
        Ok(Packed(out.into_boxed_slice()))
    }

    /// The object, unpacked.
    pub fn unpack<T: Packable>(&self) -> Result<T, PackError> {
        let size = zstd_safe::get_frame_content_size(&self.0)
            .ok()
            .flatten()
            .filter(|size| *size <= MAX_UNPACKED)
            .ok_or(PackError::Size)?;
        let mut json = Vec::with_capacity(size as usize);
        CONTEXTS
            .with_borrow_mut(|(_, d)| {
                d.decompress_using_ddict(&mut json, &self.0, &T::dictionary().decompress)
            })
            .map_err(zstd_error)?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// How many bytes it takes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it takes no bytes (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
        labels: Vec<String>,
    }

    const SAMPLE: &str =
        r#"{"name": "a-typical-thing", "labels": ["app.kubernetes.io/managed-by"]}"#;

    impl Packable for Thing {
        fn dictionary() -> &'static Dictionary {
            static DICTIONARY: std::sync::LazyLock<Dictionary> =
                std::sync::LazyLock::new(|| Dictionary::of::<Thing>(SAMPLE));
            &DICTIONARY
        }
    }

    #[test]
    fn a_dictionary_is_the_compact_json_of_its_sample() {
        assert_eq!(
            Thing::dictionary().json(),
            br#"{"name":"a-typical-thing","labels":["app.kubernetes.io/managed-by"]}"#
        );
        assert!(sample_is_faithful::<Thing>(SAMPLE));
        assert!(!sample_is_faithful::<Thing>(
            r#"{"name": "a", "labels": [], "renamed": 1}"#
        ));
        assert!(!sample_is_faithful::<Thing>("not json"));
    }

    fn thing(name: &str, labels: &[&str]) -> Thing {
        Thing {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn what_is_packed_unpacks_unchanged() {
        let long = "x".repeat(100_000);
        for t in [
            thing("", &[]),
            thing("a-typical-thing", &["app.kubernetes.io/managed-by"]),
            thing("ünïcödé ✓", &["\u{0}", "\"quoted\""]),
            thing(&long, &[&long, "y"]),
        ] {
            let packed = Packed::pack(&t).expect("packs");
            assert_eq!(packed.unpack::<Thing>().expect("unpacks"), t);
        }
    }

    #[test]
    fn what_resembles_the_dictionary_packs_small() {
        let t = thing("a-typical-thing-2", &["app.kubernetes.io/managed-by"]);
        let json = serde_json::to_vec(&t).expect("json");
        let packed = Packed::pack(&t).expect("packs");
        assert!(
            packed.len() * 3 < json.len(),
            "{} bytes packed from {}",
            packed.len(),
            json.len()
        );
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let packed = Packed::pack(&thing("a", &["b"])).expect("packs");
        for cut in 0..packed.len() {
            let damaged = Packed(packed.0[..cut].into());
            assert!(damaged.unpack::<Thing>().is_err(), "cut at {cut}");
        }
        let mut flipped = packed.0.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        // Either an error or another value; never a panic.
        let _ = Packed(flipped.into()).unpack::<Thing>();
    }
}
