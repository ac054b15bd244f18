//! Conditions: `lastTransitionTime` is kept unless the condition's status flips, so a status that
//! did not change compares equal and is not written (design §3.1 step 11, §6).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::LatticeAgentStatus;

/// Condition type: the workload has a working key.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile reached the desired state.
pub const SYNCED: &str = "Synced";
/// Condition type: key retirement progress.
pub const ROTATING: &str = "Rotating";

/// Builds a condition, keeping the previous `lastTransitionTime` unless the status flips.
/// `now` is truncated to whole seconds, the precision `metav1.Time` is serialised with, so the
/// condition compares equal after a round trip through the API server. The message is redacted
/// ([`crate::redact`]): it may quote what a user wrote (an invalid spec value), and a key pasted
/// there must not reach status.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::from_second(now.as_second()).unwrap_or(now)));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: crate::redact::redact(&message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The reason of the condition `type_`, if present.
pub fn condition_reason<'a>(status: &'a LatticeAgentStatus, type_: &str) -> Option<&'a str> {
    find(&status.conditions, type_).map(|c| c.reason.as_str())
}

/// The condition `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether two condition lists say the same thing, ignoring `lastTransitionTime` and order.
pub fn conditions_equal_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    let strip = |list: &[Condition]| {
        let mut v: Vec<(String, String, String, String, Option<i64>)> = list
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                    c.observed_generation,
                )
            })
            .collect();
        v.sort();
        v
    };
    strip(a) == strip(b)
}
