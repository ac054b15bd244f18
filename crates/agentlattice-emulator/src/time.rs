//! Timestamps: RFC 3339, UTC, millisecond precision (contract §1).

use jiff::Timestamp;

/// The current time, truncated to whole milliseconds so that what is stored is exactly what is
/// shown on the wire (and what a reloaded state file gives back).
pub(crate) fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// `2026-11-23T10:00:00.123Z`: always three fractional digits, always `Z`.
pub(crate) fn format(ts: Timestamp) -> String {
    format!("{ts:.3}")
}

/// Serde for a [`Timestamp`] in the wire format.
pub mod ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as `2026-11-23T10:00:00.123Z`.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*ts))
    }

    /// Deserialize any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional [`Timestamp`] in the wire format (`null` when absent).
pub mod ms_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as `2026-11-23T10:00:00.123Z` or `null`.
    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&super::format(*ts)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize an RFC 3339 timestamp or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_has_exactly_three_fraction_digits() {
        let ts: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(format(ts), "2026-11-23T10:00:00.000Z");
        let ts: Timestamp = "2026-11-23T10:00:00.1Z".parse().unwrap();
        assert_eq!(format(ts), "2026-11-23T10:00:00.100Z");
        let ts: Timestamp = "2026-11-23T10:00:00.123456+00:00".parse().unwrap();
        assert_eq!(format(ts), "2026-11-23T10:00:00.123Z");
    }

    #[test]
    fn now_is_whole_milliseconds() {
        let t = now();
        assert_eq!(t.subsec_nanosecond() % 1_000_000, 0);
    }
}
