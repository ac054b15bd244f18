//! The pure planner (design §3): `next_step(&Observed) -> Step`.
//!
//! A reconcile is a loop run by the executor: plan → perform the one [`Effect`] → fold its result
//! into the [`Observed`] with [`Observed::record`] → plan again, until the plan says
//! [`Step::Settle`] (a deletion settles once [`Effect::RemoveFinalizer`] is done). Every decision
//! is a function of the resource, the Secret view, what is known of the remote agent and its keys,
//! what this reconcile already did, the last error and `now` — no I/O, no clock, no randomness — so
//! each row of the design's decision order and crash table is a unit test on a fixture.
//!
//! - [`facts`](Observed): what the planner knows, and how an effect's result is folded into it;
//! - [`effect`](Effect): what it asks for — effects, events, and how a reconcile settles;
//! - `decide`: the order of decisions, one file per group (register, rotate, status, cleanup);
//! - [`validate`], [`schedule`] and the condition helpers: pure rules the decisions use.
//!
//! Nothing in here ever holds key material: a freshly registered or minted key is referred to by
//! its id ([`KeyWrite::Fresh`]) and the executor keeps the plaintext until the Secret is written.

pub mod conditions;
mod decide;
mod effect;
mod facts;
pub mod policy;
pub mod schedule;
pub mod validate;

#[cfg(test)]
mod tests;

pub use conditions::{
    READY, ROTATING, SYNCED, condition, condition_reason, conditions_equal_ignoring_time,
};
pub use decide::{idempotency_key, next_step, older_claimant};
pub use effect::{
    Effect, ErrorClass, Event, EventType, KeyWrite, Precondition, RegisterRequest, Requeue,
    SecretWrite, Settled, Step, WritePurpose,
};
pub use facts::{
    AgentStatus, AgentView, BackendKind, Consumer, ConsumerSettings, Failure, KeySource, KeyStatus,
    KeyView, MintedKey, Observed, Outcome, Progress, RegisterOutcome, RemoteAgent, RemoteFacts,
    Rollout, Settings, WorkloadKind,
};

/// Agent metadata key: the namespace of the owning `LatticeAgent`.
pub const META_NAMESPACE: &str = "k8s.namespace";
/// Agent metadata key: the name of the owning `LatticeAgent`.
pub const META_NAME: &str = "k8s.name";
/// Agent metadata key: the uid of the owning `LatticeAgent` (what links an agent to its resource).
pub const META_UID: &str = "k8s.uid";
/// Agent metadata key: the configured cluster name.
pub const META_CLUSTER: &str = "k8s.cluster";
/// Agent metadata key: the provisioner that registered the agent (`LatticeProvisioner/<ns>/<name>`
/// or `ClusterLatticeProvisioner/<name>`; absent for the default provisioner, so registrations
/// made before provisioners existed replay with the same body).
pub const META_PROVISIONER: &str = "lattice.provisioner";
