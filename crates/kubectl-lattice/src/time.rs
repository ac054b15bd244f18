//! Times for people: durations as kubectl prints ages (`45s`, `5m30s`, `10m`, `3h`, `2d4h`), and
//! timestamps as how long ago, or how long from now.

use jiff::{SignedDuration, Timestamp};

/// A duration the way kubectl prints ages: `90s`, `5m30s`, `10m`, `5h30m`, `36h`, `5d3h`, `30d`,
/// `2y30d`. Negative durations print as `0s`.
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < 0 {
        return "0s".to_owned();
    }
    let minutes = secs / 60;
    let hours = secs / 3600;
    let days = hours / 24;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        with(minutes, "m", secs % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(days, "d", hours % 24, "h")
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        with(days / 365, "y", days % 365, "d")
    } else {
        format!("{}y", days / 365)
    }
}

/// How long ago `t` was (`5m`), for age columns.
pub fn age(t: Timestamp, now: Timestamp) -> String {
    human(now.duration_since(t))
}

/// `t` relative to `now`: `5m ago`, `in 10m` (within the same second: `0s ago`).
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.duration_since(now);
    if d.as_secs() <= 0 {
        format!("{} ago", human(-d))
    } else {
        format!("in {}", human(d))
    }
}

/// A timestamp as RFC 3339 to the second, and relative to `now`: `2026-11-23T10:00:00Z (5m ago)`.
pub fn when(t: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", seconds(t), relative(t, now))
}

/// RFC 3339 to the second.
pub fn seconds(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Replaces every RFC 3339 timestamp in `text` (as the operator writes them in condition
/// messages, with nanoseconds) by its time relative to `now` (`5m ago`, `in 10m`).
pub fn humanize_timestamps(text: &str, now: Timestamp) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        // A timestamp starts with four digits and a dash at a word boundary.
        for (i, _) in rest.char_indices() {
            let candidate = &rest[i..];
            let at_boundary = i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric());
            if at_boundary
                && candidate.len() >= 20
                && candidate.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && candidate.as_bytes()[4] == b'-'
            {
                let end = candidate
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+'))
                    })
                    .unwrap_or(candidate.len());
                let token = candidate[..end].trim_end_matches(['.', ':', '-', '+']);
                if let Ok(t) = token.parse::<Timestamp>() {
                    out.push_str(&rest[..i]);
                    out.push_str(&relative(t, now));
                    rest = &candidate[token.len()..];
                    continue 'scan;
                }
            }
        }
        out.push_str(rest);
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl_ages() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 30 * 60, "5h30m"),
            (36 * 3600, "36h"),
            (2 * 86400, "2d"),
            (5 * 86400 + 3 * 3600, "5d3h"),
            (30 * 86400, "30d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
            (-5, "0s"),
        ];
        for (secs, want) in cases {
            assert_eq!(human(SignedDuration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn relative_times() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let past: Timestamp = "2026-11-23T09:50:00Z".parse().unwrap();
        let future: Timestamp = "2026-11-23T13:00:00Z".parse().unwrap();
        assert_eq!(relative(past, now), "10m ago");
        assert_eq!(relative(future, now), "in 3h");
        assert_eq!(relative(now, now), "0s ago");
        assert_eq!(age(past, now), "10m");
        assert_eq!(when(past, now), "2026-11-23T09:50:00Z (10m ago)");
        assert_eq!(
            seconds("2026-11-23T09:50:00.123456789Z".parse().unwrap()),
            "2026-11-23T09:50:00Z"
        );
    }

    #[test]
    fn timestamps_in_messages_become_relative() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(
            humanize_timestamps(
                "key abcd1234 retiring since 2026-11-23T09:59:30.123456789Z: revoked after \
                 2026-11-23T10:09:30.123456789Z once unused for 10m, at the latest at \
                 2026-11-24T09:59:30.123456789Z",
                now
            ),
            "key abcd1234 retiring since 29s ago: revoked after in 9m30s once unused for 10m, at \
             the latest at in 23h"
        );
        assert_eq!(
            humanize_timestamps("last used at 2026-11-23T09:58:00Z.", now),
            "last used at 2m ago."
        );
        assert_eq!(
            humanize_timestamps("no time 2026-11 here", now),
            "no time 2026-11 here"
        );
        assert_eq!(humanize_timestamps("", now), "");
        assert_eq!(
            humanize_timestamps("x1234-5678901234567890123", now),
            "x1234-5678901234567890123"
        );
    }
}
