//! The workloads that read the key (docs/workloads.md): whether each one already runs with the
//! key in the Secret, restarting the ones that can only get it by a restart, and holding an old
//! key's revocation until every consumer has the new one — at `maxGracePeriod` at the latest,
//! after a condition and a Warning event that name the consumers that will lose access.

use jiff::{SignedDuration, Timestamp};

use super::status::at;
use super::{Planner, perform};
use crate::crd::ConsumerStatus;
use crate::plan::schedule;
use crate::plan::{Consumer, Effect, Event, KeySource, Rollout, Step};
use crate::secret::KeyRecord;

/// A workload created or restarted this long after a key was written has pods that started
/// after it (creation and restart times have whole-second precision).
const STARTED_AFTER_MARGIN: SignedDuration = SignedDuration::from_secs(1);

/// Where a consumer stands with the key in the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Holds {
    /// Its pods run with it.
    Current,
    /// It was restarted for it and the rollout is under way.
    RollingOut,
    /// A mounted file, refreshed by the kubelet by `until`.
    Syncing {
        /// When every mounted copy is up to date.
        until: Timestamp,
    },
    /// Its pods hold an older key.
    Stale,
    /// Its rollout cannot finish.
    Stuck,
}

impl Holds {
    fn as_str(self) -> &'static str {
        match self {
            Holds::Current => "Current",
            Holds::RollingOut => "RollingOut",
            Holds::Syncing { .. } => "Syncing",
            Holds::Stale => "Stale",
            Holds::Stuck => "Stuck",
        }
    }
}

impl<'a> Planner<'a> {
    /// The consumers, when the operator watches workloads.
    pub(super) fn consumers(&self) -> &'a [Consumer] {
        if self.observed.settings.consumers.tracked {
            &self.observed.consumers
        } else {
            &[]
        }
    }

    /// When the key in the Secret was written: the newest retiring key's `since` (the write that
    /// replaced it), else the key's creation.
    fn key_written_at(&self, key: &KeyRecord) -> Timestamp {
        self.retiring()
            .iter()
            .map(|k| k.since)
            .max()
            .unwrap_or(key.created_at)
    }

    /// Whether the key in the Secret is the only one ever delivered (no rotation since the
    /// registration): every pod that started holds it.
    fn first_key(&self) -> bool {
        self.retiring().is_empty() && self.status.last_rotation_time.is_none()
    }

    /// Where `c` stands with the key `key`.
    pub(super) fn holds(&self, c: &Consumer, key: &KeyRecord) -> Holds {
        if self.first_key() {
            return Holds::Current;
        }
        let written = self.key_written_at(key);
        if !c.reads.needs_restart() {
            let until = schedule::add(
                written,
                self.observed.settings.consumers.kubelet_sync_period,
            );
            return if self.observed.now >= until {
                Holds::Current
            } else {
                Holds::Syncing { until }
            };
        }
        let after_write = |t: Option<Timestamp>| {
            t.is_some_and(|t| t >= schedule::add(written, STARTED_AFTER_MARGIN))
        };
        let restarted_for_it = c
            .restarted_for
            .as_ref()
            .is_some_and(|(id, _)| *id == key.id);
        if restarted_for_it || after_write(c.created_at) || after_write(c.restarted_at) {
            return match c.rollout {
                Rollout::Complete => Holds::Current,
                Rollout::InProgress => Holds::RollingOut,
                Rollout::Stuck => Holds::Stuck,
            };
        }
        Holds::Stale
    }

    /// Whether the operator restarts this resource's consumers.
    fn restarts(&self) -> bool {
        self.observed.settings.consumers.restarts
            && self.spec().is_some_and(|s| s.restart_on_rotation)
    }

    /// When a stale consumer is restarted for `key`: not before the key exists, and not within
    /// the minimum interval after its previous restart. Durable inputs only, so that the same
    /// decision taken twice yields the same template (`workloads::restart_patch`).
    fn restart_time(&self, c: &Consumer, key: &KeyRecord) -> Timestamp {
        let at = Timestamp::from_second(key.created_at.as_second()).unwrap_or(key.created_at);
        match c.restarted_for.as_ref().and_then(|(_, at)| *at) {
            Some(previous) => at.max(schedule::add(
                previous,
                self.observed.settings.consumers.restart_min_interval,
            )),
            None => at,
        }
    }

    /// Restart the first consumer that can only get the key in the Secret by a restart and is
    /// due for one.
    pub(super) fn restart_consumers(&self) -> Option<Step> {
        if !self.restarts() {
            return None;
        }
        let key = self.working_key()?;
        for c in self.consumers() {
            if !c.reads.needs_restart() || self.holds(c, key) != Holds::Stale {
                continue;
            }
            let at = self.restart_time(c, key);
            if self.observed.now < at {
                continue;
            }
            return Some(perform(
                Effect::RestartConsumer {
                    kind: c.kind,
                    name: c.name.clone(),
                    key_id: key.id.clone(),
                    at,
                },
                vec![Event::normal(
                    "RolloutRestartTriggered",
                    format!(
                        "restarted {} {} so that its pods read key {} (they read it from {})",
                        c.kind,
                        c.name,
                        key.prefix,
                        reads(c.reads)
                    ),
                )],
            ));
        }
        None
    }

    /// The earliest time a consumer's state can change by the clock alone: a deferred restart, a
    /// kubelet sync window ending.
    pub(super) fn consumers_next_change(&self) -> Option<Timestamp> {
        let key = self.working_key()?;
        self.consumers()
            .iter()
            .filter_map(|c| match self.holds(c, key) {
                Holds::Syncing { until } => Some(until),
                Holds::Stale if self.restarts() => Some(self.restart_time(c, key)),
                _ => None,
            })
            .filter(|t| *t > self.observed.now)
            .min()
    }

    /// The consumers that do not run with the key in the Secret yet, with where they stand.
    pub(super) fn lagging(&self) -> Vec<(&'a Consumer, Holds)> {
        let Some(key) = self.working_key() else {
            return Vec::new();
        };
        self.consumers()
            .iter()
            .map(|c| (c, self.holds(c, key)))
            .filter(|(_, h)| *h != Holds::Current)
            .collect()
    }

    /// The lagging consumers that will not get the key by themselves: stale ones the operator
    /// does not restart, and stuck rollouts.
    pub(super) fn stranded(&self) -> Vec<(&'a Consumer, Holds)> {
        self.lagging()
            .into_iter()
            .filter(|(c, h)| match h {
                Holds::Stuck => true,
                Holds::Stale => !(self.restarts() && c.reads.needs_restart()),
                _ => false,
            })
            .collect()
    }

    /// The consumers as status shows them.
    pub(super) fn consumer_statuses(&self) -> Vec<ConsumerStatus> {
        let key = self.working_key();
        self.consumers()
            .iter()
            .map(|c| ConsumerStatus {
                kind: c.kind.as_str().to_owned(),
                name: c.name.clone(),
                reads: match c.reads {
                    KeySource::Environment => "Environment",
                    KeySource::File => "File",
                    KeySource::SubPathFile => "SubPathFile",
                }
                .to_owned(),
                key: key
                    .map(|k| self.holds(c, k).as_str())
                    .unwrap_or("Stale")
                    .to_owned(),
                restarted_for: c.restarted_for.as_ref().map(|(id, _)| id.clone()),
            })
            .collect()
    }

    /// `kind name (state)` for each consumer, for a condition message or an event note; a
    /// restart held back by the minimum interval says when it comes.
    pub(super) fn describe(&self, lagging: &[(&Consumer, Holds)]) -> String {
        let key = self.working_key();
        lagging
            .iter()
            .map(|(c, h)| {
                let state = match h {
                    Holds::RollingOut => "rolling out".to_owned(),
                    Holds::Syncing { until } => {
                        format!("mounted file syncing until {}", at(*until))
                    }
                    Holds::Stale => match key.map(|k| self.restart_time(c, k)) {
                        Some(due)
                            if self.restarts()
                                && c.reads.needs_restart()
                                && due > self.observed.now =>
                        {
                            format!(
                                "holds the old key; next restart at {}, one per {:#} at most",
                                at(due),
                                self.observed.settings.consumers.restart_min_interval
                            )
                        }
                        _ => "holds the old key".to_owned(),
                    },
                    Holds::Stuck => "rollout stuck".to_owned(),
                    Holds::Current => "current".to_owned(),
                };
                format!("{} {} ({state})", c.kind, c.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a consumer reads the key, in words.
pub(super) fn reads(how: KeySource) -> &'static str {
    match how {
        KeySource::Environment => "the environment",
        KeySource::File => "a mounted file",
        KeySource::SubPathFile => "a subPath mount, which is never refreshed",
    }
}
