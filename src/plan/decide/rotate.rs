//! Steps 7–10 (design §3.1–§3.3): mint a key when the Secret has no working one or a rotation is
//! asked for or due (intent → mint → Secret), revoke a minted key that cannot be delivered,
//! repair the Secret's other fields, sweep keys minted but never delivered, and retire old keys
//! (deprecate, then revoke once unused for the grace period or at the maximum grace period).

use std::collections::BTreeSet;

use super::status::CONSUMERS_WILL_LOSE_ACCESS;
use super::{Planner, Verdict, perform};

use crate::crd::{
    COMPROMISED_ANNOTATION, HandledAnnotations, LatticeAgentStatus, REREGISTER_ANNOTATION,
    ROTATE_ANNOTATION,
};
use crate::plan::conditions::{self, ROTATING};
use crate::plan::schedule::{Retirement, RevokeWhy, WaitWhy};
use crate::plan::{
    Effect, Event, KeyStatus, KeyView, KeyWrite, MintedKey, SecretWrite, Step, WritePurpose,
    schedule,
};
use crate::secret::{KeyRecord, RetiringKey, SecretRecord};

/// Why a key is minted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MintReason {
    /// The Secret has no working key for the agent.
    Restore,
    /// `agentlattice.io/compromised` changed.
    Compromised,
    /// `agentlattice.io/rotate` changed.
    Rotate,
    /// The schedule is due.
    Scheduled,
}

impl<'a> Planner<'a> {
    /// Steps 7 and 9: a new key is needed.
    pub(super) fn mint_reason(&self) -> Option<MintReason> {
        if self.working_key().is_none() {
            return Some(MintReason::Restore);
        }
        if self.pending(COMPROMISED_ANNOTATION) {
            return Some(MintReason::Compromised);
        }
        if self.pending(ROTATE_ANNOTATION) {
            return Some(MintReason::Rotate);
        }
        self.schedule_due().then_some(MintReason::Scheduled)
    }

    pub(super) fn next_rotation(&self) -> Option<jiff::Timestamp> {
        let interval = self.spec()?.interval?;
        let key = self.working_key()?;
        Some(schedule::next_rotation(
            key.created_at,
            interval,
            self.uid,
            &key.id,
        ))
    }

    /// A scheduled rotation waits while keys are retiring and while the agent is suspended.
    pub(super) fn schedule_due(&self) -> bool {
        let suspended = self.spec().is_some_and(|s| s.suspend);
        !suspended
            && self.retiring().is_empty()
            && self
                .next_rotation()
                .is_some_and(|at| self.observed.now >= at)
    }

    /// The handled values after a new key was written: every pending rotation request is satisfied
    /// by the new key, and a registration acts on the current reregister value.
    pub(super) fn handled_after_mint(&self) -> HandledAnnotations {
        let mut handled = self.handled();
        if let Some(v) = self.annotation(ROTATE_ANNOTATION) {
            handled.rotate = Some(v.to_owned());
        }
        if let Some(v) = self.annotation(COMPROMISED_ANNOTATION) {
            handled.compromised = Some(v.to_owned());
        }
        if self.observed.progress.registration.is_some()
            && let Some(v) = self.annotation(REREGISTER_ANNOTATION)
        {
            handled.reregister = Some(v.to_owned());
        }
        handled
    }

    /// Design §3.2/§3.3: intent → mint → Secret. (Status follows through [`Planner::finish`], the old
    /// key's deprecation or revocation through [`Planner::retire`].)
    pub(super) fn mint(&self, agent_id: &str, reason: MintReason) -> Step {
        let minted = self
            .observed
            .progress
            .minted
            .as_ref()
            .filter(|(for_agent, _)| for_agent == agent_id)
            .map(|(_, key)| key);
        let Some(key) = minted else {
            // The intent goes first, where the next reconcile will find it: on the record if the
            // Secret holds this agent's record, else on status. An adopted agent needs none: a
            // crash re-adopts it, and adoption sweeps (or, when the Secret may hold one of its
            // keys, retires every other key with grace).
            // An adopted agent's keys were never delivered: sweep them before minting too, down
            // to one (AgentLattice refuses to revoke an agent's last live key; the sweep after
            // the delivery takes that one). Otherwise every failed delivery (the Secret write
            // fails, the process dies) leaves one more live key, and at AgentLattice's limit of
            // live keys per agent the mint is refused forever.
            if self.undelivered
                && (!self.observed.remote.listed.contains(agent_id)
                    || self.strays(agent_id).len() > 1)
                && let Some(step) = self.sweep(agent_id)
            {
                return step;
            }
            if self.intent().is_none() && !self.adopted {
                if let Some(mut record) = self.current_record(agent_id) {
                    record.mint_started_at = Some(self.observed.now);
                    return self.write_intent(agent_id, record);
                }
                let mut intent = self.desired_status(&Verdict::Ok);
                intent.mint_started_at = Some(self.observed.now);
                return perform(Effect::WriteStatus(Box::new(intent)), vec![]);
            }
            return perform(
                Effect::MintKey {
                    agent_id: agent_id.to_owned(),
                    name: format!(
                        "lattice-operator-{}",
                        match reason {
                            MintReason::Restore => "restore",
                            MintReason::Compromised => "compromised",
                            MintReason::Rotate => "rotate",
                            MintReason::Scheduled => "scheduled",
                        }
                    ),
                },
                vec![],
            );
        };

        // Without a record of this agent (the Secret was deleted, or is not ours yet) nobody
        // knows which of its keys were delivered: status may be stale. Every live key other than
        // the new one is retired with the normal grace, so none is left behind and none that a
        // pod may hold is revoked at once. (Adopted agents are different: their keys were never
        // delivered, and the sweep revokes them — unless a Secret of ours holds a key no record
        // describes, see `Planner::undelivered`.)
        let record_lost = reason == MintReason::Restore
            && self.record_is_for(agent_id).is_none()
            && !self.undelivered;
        if record_lost && !self.observed.remote.listed.contains(agent_id) {
            return perform(
                Effect::FetchKeys {
                    agent_id: agent_id.to_owned(),
                },
                vec![],
            );
        }
        let compromised = reason == MintReason::Compromised || self.pending(COMPROMISED_ANNOTATION);
        let mut retiring = self.retiring();
        if record_lost {
            let live = self
                .observed
                .remote
                .keys
                .get(agent_id)
                .into_iter()
                .flat_map(|keys| keys.values())
                .filter(|k| k.status != KeyStatus::Revoked && k.id != key.id)
                .filter(|k| !self.observed.remote.gone_keys.contains(&k.id));
            for k in live {
                if !retiring.iter().any(|r| r.id == k.id) {
                    retiring.push(RetiringKey {
                        id: k.id.clone(),
                        prefix: k.prefix.clone(),
                        since: self.observed.now,
                        immediate: false,
                    });
                }
            }
        }
        let replaced = self.replaced_key().filter(|(id, _)| *id != key.id);
        if let Some((id, prefix)) = &replaced
            && !retiring.iter().any(|k| &k.id == id)
        {
            retiring.push(RetiringKey {
                id: id.clone(),
                prefix: prefix.clone(),
                since: self.observed.now,
                immediate: false,
            });
        }
        if compromised {
            retiring.iter_mut().for_each(|k| k.immediate = true);
        }
        let record = SecretRecord {
            agent_id: Some(agent_id.to_owned()),
            key: Some(key_record(key)),
            retiring,
            handled: self.handled_after_mint(),
            // Still to sweep (an earlier intent, or an adoption): the record keeps the intent
            // until the sweep is done. Otherwise this write is the end of the mint.
            mint_started_at: if self.sweep_required() {
                Some(self.intent().unwrap_or(self.observed.now))
            } else {
                None
            },
        };
        let old = replaced
            .as_ref()
            .map(|(id, prefix)| {
                if prefix.is_empty() {
                    id.clone()
                } else {
                    prefix.clone()
                }
            })
            .unwrap_or_else(|| "none".to_owned());
        let (purpose, event) = match reason {
            MintReason::Restore => (
                WritePurpose::Restore,
                Event::normal(
                    "SecretRestored",
                    format!(
                        "wrote new key {} to Secret {}; the previous key ({old}) is retired",
                        key.prefix, self.secret_name
                    ),
                ),
            ),
            MintReason::Compromised => (
                WritePurpose::Rotate,
                Event::normal(
                    "KeyRotated",
                    format!(
                        "rotated key {old} → {} ({COMPROMISED_ANNOTATION}: the old key is revoked \
                         at once)",
                        key.prefix
                    ),
                ),
            ),
            MintReason::Rotate | MintReason::Scheduled => (
                WritePurpose::Rotate,
                Event::normal(
                    "KeyRotated",
                    format!(
                        "rotated key {old} → {} ({})",
                        key.prefix,
                        if reason == MintReason::Rotate {
                            ROTATE_ANNOTATION
                        } else {
                            "schedule"
                        }
                    ),
                ),
            ),
        };
        perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired: self.desired_secret(agent_id, record),
                key: KeyWrite::Fresh {
                    key_id: key.id.clone(),
                },
                precondition: self.precondition(),
                purpose,
            })),
            vec![event],
        )
    }

    /// The record the Secret should carry now (no new key).
    pub(super) fn current_record(&self, agent_id: &str) -> Option<SecretRecord> {
        let r = self.record_is_for(agent_id)?;
        let mut record = r.record.clone();
        record.retiring = self.retiring();
        Some(record)
    }

    /// A key minted in this reconcile that no longer has to be delivered (its Secret write found
    /// a Secret of ours with a working key after all: a stale cache) is revoked at once: it was
    /// never delivered, and once this reconcile ends nothing would remember it.
    pub(super) fn revoke_undeliverable(&self, agent_id: &str) -> Option<Step> {
        let (for_agent, key) = self.observed.progress.minted.as_ref()?;
        if for_agent != agent_id || self.key_gone(agent_id, &key.id) {
            return None;
        }
        let delivered = self
            .record_is_for(agent_id)
            .and_then(|r| r.record.key.as_ref())
            .is_some_and(|k| k.id == key.id)
            || self.retiring().iter().any(|r| r.id == key.id);
        (!delivered).then(|| {
            perform(
                Effect::RevokeKey {
                    agent_id: agent_id.to_owned(),
                    key_id: key.id.clone(),
                },
                vec![Event::normal(
                    "KeyRevoked",
                    format!(
                        "revoked key {} of agent {agent_id}: minted but not needed (the Secret \
                         still holds a working key)",
                        key.prefix
                    ),
                )],
            )
        })
    }

    /// Step 7, second half: non-key fields of the Secret are wrong → patch them (no new key).
    pub(super) fn repair_secret(&self, agent_id: &str) -> Option<Step> {
        let secret = self.secret?;
        let record = self.current_record(agent_id)?;
        let desired = self.desired_secret(agent_id, record);
        if desired.drift(secret).is_empty() {
            return None;
        }
        Some(perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired,
                key: KeyWrite::Keep,
                precondition: self.precondition(),
                purpose: WritePurpose::Repair,
            })),
            vec![],
        ))
    }

    /// Step 8: after an interrupted mint (or an adoption), revoke every live key that is neither
    /// in the Secret nor retiring: it was minted but never delivered.
    pub(super) fn sweep(&self, agent_id: &str) -> Option<Step> {
        if !self.sweep_required() {
            return None;
        }
        if !self.observed.remote.listed.contains(agent_id) {
            return Some(perform(
                Effect::FetchKeys {
                    agent_id: agent_id.to_owned(),
                },
                vec![],
            ));
        }
        let Some(stray) = self.strays(agent_id).into_iter().next() else {
            // Swept: lift the intent from the record (status follows in `finish`).
            let mut record = self.current_record(agent_id)?;
            record.mint_started_at?;
            record.mint_started_at = None;
            return Some(self.write_intent(agent_id, record));
        };
        Some(perform(
            Effect::RevokeKey {
                agent_id: agent_id.to_owned(),
                key_id: stray.id.clone(),
            },
            vec![Event::normal(
                "KeyRevoked",
                format!(
                    "revoked key {} of agent {agent_id}: minted but never delivered",
                    stray.prefix
                ),
            )],
        ))
    }

    pub(super) fn strays(&self, agent_id: &str) -> Vec<&'a KeyView> {
        let mut spare: BTreeSet<String> = self.retiring().into_iter().map(|k| k.id).collect();
        if let Some(key) = self
            .record_is_for(agent_id)
            .and_then(|r| r.record.key.as_ref())
        {
            spare.insert(key.id.clone());
        }
        if let Some((_, key)) = &self.observed.progress.minted {
            spare.insert(key.id.clone());
        }
        self.observed
            .remote
            .keys
            .get(agent_id)
            .into_iter()
            .flat_map(|keys| keys.values())
            .filter(|k| k.status != KeyStatus::Revoked)
            .filter(|k| !self.observed.remote.gone_keys.contains(&k.id))
            .filter(|k| !spare.contains(&k.id))
            .collect()
    }

    pub(super) fn sweep_done(&self) -> bool {
        let Some(agent_id) = self.agent_id.as_deref() else {
            return false;
        };
        self.observed.remote.listed.contains(agent_id) && self.strays(agent_id).is_empty()
    }

    /// Whether a retiring key is known to be deprecated (or further along).
    pub(super) fn deprecated(&self, agent_id: &str, key: &RetiringKey) -> bool {
        match self.key_view(agent_id, &key.id) {
            Some(k) => k.status != KeyStatus::Active,
            None => self
                .status
                .retiring_keys
                .iter()
                .any(|s| s.id == key.id && s.deprecated_at.is_some()),
        }
    }

    /// The key's last use: as read in this reconcile, or as status last recorded it while that
    /// is recent enough to decide (a later use can only postpone the revocation, so until
    /// `last use + grace` nothing needs reading).
    pub(super) fn usage(&self, agent_id: &str, key_id: &str) -> Option<Option<jiff::Timestamp>> {
        if self.observed.remote.listed.contains(agent_id) {
            return Some(self.key_view(agent_id, key_id).and_then(|k| k.last_used_at));
        }
        let grace = self.spec()?.grace;
        self.status
            .retiring_keys
            .iter()
            .find(|k| k.id == key_id)
            .and_then(|k| k.last_used_at)
            .filter(|used| self.observed.now < schedule::add(*used, grace))
            .map(Some)
    }

    pub(super) fn retirement(&self, agent_id: &str, key: &RetiringKey) -> Option<Retirement> {
        let spec = self.spec()?;
        // An old key waits for the workloads that read the key to run with the new one (no need
        // to read its last use meanwhile), until the maximum grace period.
        let revoke_by = schedule::add(key.since, spec.max_grace);
        if !key.immediate && self.observed.now < revoke_by && !self.lagging().is_empty() {
            return Some(Retirement::Wait {
                until: revoke_by,
                why: WaitWhy::Consumers,
            });
        }
        Some(schedule::retirement(
            self.observed.now,
            key.since,
            key.immediate,
            spec.grace,
            spec.max_grace,
            self.usage(agent_id, &key.id),
        ))
    }

    /// Design §3.2: an old key is touched (deprecated or revoked) only once status records the
    /// key that replaces it — mint → Secret → status → deprecate → revoke. When status lags the
    /// record (the rotation's Secret write just happened, or a status write was lost), it is
    /// written first.
    pub(super) fn status_before_retiring(&self, agent_id: &str, key: &RetiringKey) -> Option<Step> {
        let record_key = self.record_is_for(agent_id)?.record.key.as_ref()?;
        let records = |s: &LatticeAgentStatus| {
            s.agent_id.as_deref() == Some(agent_id)
                && s.active_key.as_ref().map(|k| &k.id) == Some(&record_key.id)
                && s.retiring_keys.iter().any(|r| r.id == key.id)
        };
        if records(&self.status) {
            return None;
        }
        let desired = self.desired_status(&Verdict::Ok);
        // Never loop: only when the write would make status record it.
        records(&desired).then(|| {
            let events = self.status_events(&desired);
            perform(Effect::WriteStatus(Box::new(desired)), events)
        })
    }

    /// Step 10: deprecate, revoke, forget.
    pub(super) fn retire(&self, agent_id: &str) -> Option<Step> {
        let retiring = self.retiring();
        let mut forget = Vec::new();
        for key in &retiring {
            if self.key_gone(agent_id, &key.id) {
                forget.push(key.id.clone());
                continue;
            }
            let retirement = self.retirement(agent_id, key)?;
            let touches = match retirement {
                Retirement::Revoke(_) => true,
                Retirement::Wait { .. } => !self.deprecated(agent_id, key),
                Retirement::NeedUsage => false,
            };
            if touches && let Some(step) = self.status_before_retiring(agent_id, key) {
                return Some(step);
            }
            // At the maximum grace period, consumers that still lack the new key are named in a
            // condition and a Warning event before the key they use is revoked.
            if retirement == Retirement::Revoke(RevokeWhy::MaxGrace)
                && !self.lagging().is_empty()
                && conditions::condition_reason(&self.status, ROTATING)
                    != Some(CONSUMERS_WILL_LOSE_ACCESS)
                && self.observed.failure.is_none()
            {
                return Some(self.finish(Verdict::Ok));
            }
            match retirement {
                Retirement::Revoke(why) => {
                    let why = match why {
                        RevokeWhy::Immediate => "no grace (compromised)",
                        RevokeWhy::Unused => "unused for a whole grace period",
                        RevokeWhy::MaxGrace => "maximum grace period reached",
                    };
                    return Some(perform(
                        Effect::RevokeKey {
                            agent_id: agent_id.to_owned(),
                            key_id: key.id.clone(),
                        },
                        vec![Event::normal(
                            "KeyRevoked",
                            format!("revoked old key {} of agent {agent_id}: {why}", key.prefix),
                        )],
                    ));
                }
                Retirement::NeedUsage => {
                    return Some(perform(
                        Effect::FetchKeys {
                            agent_id: agent_id.to_owned(),
                        },
                        vec![],
                    ));
                }
                Retirement::Wait { .. } => {
                    if !self.deprecated(agent_id, key) {
                        return Some(perform(
                            Effect::DeprecateKey {
                                agent_id: agent_id.to_owned(),
                                key_id: key.id.clone(),
                            },
                            vec![],
                        ));
                    }
                }
            }
        }
        if forget.is_empty() {
            return None;
        }
        let mut record = self.current_record(agent_id)?;
        record.retiring.retain(|k| !forget.contains(&k.id));
        Some(perform(
            Effect::WriteSecret(Box::new(SecretWrite {
                desired: self.desired_secret(agent_id, record),
                key: KeyWrite::Keep,
                precondition: self.precondition(),
                purpose: WritePurpose::Retire,
            })),
            vec![],
        ))
    }
}

pub(super) fn key_record(key: &MintedKey) -> KeyRecord {
    KeyRecord {
        id: key.id.clone(),
        prefix: key.prefix.clone(),
        created_at: key.created_at,
        sha256: key.sha256.clone(),
    }
}
