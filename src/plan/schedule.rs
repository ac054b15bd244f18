//! Time decisions: the rotation schedule with its deterministic jitter, and key retirement.

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// `ts + d`, saturating at the end of time (durations are validated to at most 100 years, so this
/// only matters for corrupt input).
pub fn add(ts: Timestamp, d: SignedDuration) -> Timestamp {
    ts.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The largest jitter: 10% of the interval, capped at one hour.
pub fn max_jitter(interval: SignedDuration) -> SignedDuration {
    (interval / 10).min(SignedDuration::from_hours(1))
}

/// The jitter added to a scheduled rotation: in `[0, max_jitter(interval)]`, at millisecond
/// granularity, derived from the resource uid and the key id, so resources created together spread
/// out, a restart does not move the schedule, and each new key gets a fresh offset.
pub fn jitter(uid: &str, key_id: &str, interval: SignedDuration) -> SignedDuration {
    let cap = max_jitter(interval).as_millis();
    if cap <= 0 {
        return SignedDuration::ZERO;
    }
    SignedDuration::from_millis(hash_below(&format!("{uid}/{key_id}"), cap + 1) as i64)
}

/// A number in `[0, bound)` derived from `input` alone (SHA-256); `bound` > 0.
fn hash_below(input: &str, bound: i128) -> i128 {
    let hash = Sha256::digest(input.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    i128::from(u64::from_be_bytes(first)) % bound
}

/// Where, within one resync interval after a start, the first drift read of the resource `uid`
/// falls: in `[0, interval)`, at millisecond granularity, derived from the uid alone. A process
/// that starts with many registered resources spreads their first reads (design §3.1 step 6)
/// instead of making them all at once.
pub fn startup_offset(uid: &str, interval: SignedDuration) -> SignedDuration {
    let span = interval.as_millis();
    if span <= 0 {
        return SignedDuration::ZERO;
    }
    SignedDuration::from_millis(hash_below(&format!("drift/{uid}"), span) as i64)
}

/// When the key created at `created_at` is due for a scheduled rotation.
pub fn next_rotation(
    created_at: Timestamp,
    interval: SignedDuration,
    uid: &str,
    key_id: &str,
) -> Timestamp {
    add(add(created_at, interval), jitter(uid, key_id, interval))
}

/// What to do with one retiring key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retirement {
    /// Revoke it now.
    Revoke(RevokeWhy),
    /// Nothing can change before `until`.
    Wait {
        /// The next moment the decision can change.
        until: Timestamp,
        /// Why it waits.
        why: WaitWhy,
    },
    /// The decision needs the key's last use (fetch the keys).
    NeedUsage,
}

/// Why a retiring key is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeWhy {
    /// Compromised or never delivered.
    Immediate,
    /// The grace period is over and the key was not used for a whole grace period.
    Unused,
    /// The maximum grace period is over.
    MaxGrace,
}

/// Why a retiring key is kept for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitWhy {
    /// Within the grace period since its replacement was written.
    GracePeriod,
    /// Still used within the last grace period.
    OldKeyUsed {
        /// Its last use.
        last_used: Timestamp,
    },
    /// Workloads that read the key do not run with the new one yet (until the maximum grace
    /// period).
    Consumers,
}

/// The retirement rule of design §3.1 step 10. `usage` is `None` when the key's last use is not
/// known, `Some(None)` when it was never used.
pub fn retirement(
    now: Timestamp,
    since: Timestamp,
    immediate: bool,
    grace: SignedDuration,
    max_grace: SignedDuration,
    usage: Option<Option<Timestamp>>,
) -> Retirement {
    if immediate {
        return Retirement::Revoke(RevokeWhy::Immediate);
    }
    let latest = add(since, max_grace);
    if now >= latest {
        return Retirement::Revoke(RevokeWhy::MaxGrace);
    }
    let earliest = add(since, grace);
    if now < earliest {
        return Retirement::Wait {
            until: earliest,
            why: WaitWhy::GracePeriod,
        };
    }
    match usage {
        None => Retirement::NeedUsage,
        Some(None) => Retirement::Revoke(RevokeWhy::Unused),
        Some(Some(last_used)) => {
            let unused_from = add(last_used, grace);
            if now >= unused_from {
                Retirement::Revoke(RevokeWhy::Unused)
            } else {
                Retirement::Wait {
                    until: unused_from.min(latest),
                    why: WaitWhy::OldKeyUsed { last_used },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_offsets_are_deterministic_within_the_interval_and_spread() {
        let interval = SignedDuration::from_mins(10);
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let uid = format!("uid-{i}");
            let offset = startup_offset(&uid, interval);
            assert_eq!(offset, startup_offset(&uid, interval), "deterministic");
            assert!(
                offset >= SignedDuration::ZERO && offset < interval,
                "{offset:?}"
            );
            buckets[(offset.as_millis() * 10 / interval.as_millis()) as usize] += 1;
        }
        // 1,000 uids over ten minutes: every minute gets some, none gets a burst.
        assert!(
            buckets.iter().all(|&n| (50..=150).contains(&n)),
            "{buckets:?}"
        );
        assert_eq!(
            startup_offset("u", SignedDuration::ZERO),
            SignedDuration::ZERO
        );
    }
}
