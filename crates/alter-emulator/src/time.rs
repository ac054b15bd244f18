//! Timestamps: RFC 3339, UTC, microsecond precision (what the SDK's pydantic models parse, and
//! what a Python backend emits).

use jiff::Timestamp;

/// Now, truncated to whole microseconds so that what is stored is exactly what is shown (and what
/// a reloaded state file gives back).
pub(crate) fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// `2026-11-23T10:00:00.123456Z`: always six fractional digits, always `Z`.
pub(crate) fn format(ts: Timestamp) -> String {
    format!("{ts:.6}")
}

/// Serde in the wire format.
pub(crate) mod us {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Serde of an optional timestamp (`null` when absent).
pub(crate) mod us_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&super::format(*ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fraction_digits_and_z() {
        let ts: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(format(ts), "2026-11-23T10:00:00.000000Z");
        let ts: Timestamp = "2026-11-23T10:00:00.1234567+00:00".parse().unwrap();
        assert_eq!(format(ts), "2026-11-23T10:00:00.123456Z");
        assert_eq!(now().subsec_nanosecond() % 1000, 0);
    }
}
