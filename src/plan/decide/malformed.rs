//! An object the Rust type rejects (stored through an older or looser CRD): nothing is ever
//! registered for it, since the finalizer is only added to objects that parse (unless it parsed
//! before). Its status says what is wrong, and the reconcile waits for a change; a deletion that
//! still carries the finalizer waits for the spec to be fixed, or finishes without revoking with
//! `agentlattice.io/skip-revoke: "true"`.

use super::cleanup::{has_finalizer, release};
use super::perform;
use crate::crd::SKIP_REVOKE_ANNOTATION;
use crate::plan::conditions::{READY, SYNCED, condition, conditions_equal_ignoring_time};
use crate::plan::{Effect, Event, Failure, Observed, Requeue, Settled, Step};

/// The decision for a malformed object; `problem`: what is wrong, without its values.
pub(super) fn malformed(observed: &Observed, problem: &str) -> Step {
    let meta = &observed.resource.metadata;
    let settle = |failure: Option<Failure>| {
        Step::Settle(Settled {
            requeue: match &failure {
                Some(f) => f.class.requeue(&observed.settings),
                None => Requeue::OnChange,
            },
            failure,
            remote_checked: false,
        })
    };
    if meta.deletion_timestamp.is_some() {
        if !has_finalizer(&observed.resource) {
            return settle(None);
        }
        let skip = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SKIP_REVOKE_ANNOTATION))
            .is_some_and(|v| v == "true");
        if skip {
            return release(
                observed,
                vec![Event::warning(
                    "RevocationSkipped",
                    format!(
                        "{SKIP_REVOKE_ANNOTATION}: deletion of a malformed object finished \
                         without revoking its agent"
                    ),
                )],
            );
        }
    }
    if let Some(failure) = &observed.failure {
        return settle(Some(failure.clone()));
    }
    let current = observed.resource.status.clone().unwrap_or_default();
    let previous = &current.conditions;
    let generation = meta.generation;
    let invalid = |type_| {
        condition(
            previous,
            type_,
            false,
            "InvalidSpec",
            problem.to_owned(),
            generation,
            observed.now,
        )
    };
    let mut desired = current.clone();
    desired.conditions = previous
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != SYNCED)
        .cloned()
        .chain([invalid(READY), invalid(SYNCED)])
        .collect();
    desired.observed_generation = generation;
    if conditions_equal_ignoring_time(&desired.conditions, previous) {
        return settle(None);
    }
    perform(Effect::WriteStatus(Box::new(desired)), vec![])
}
