//! Planner tests. `world` is a small in-memory model of AgentLattice and the Kubernetes API that
//! performs the planner's actions the way the executor will, so whole reconciles — and crashes at
//! every step of them — can be run against fixtures with a fixed clock. `properties` drives the
//! planner from arbitrary starting states with proptest; `inputs` fuzzes what comes from outside
//! (specs, Secrets, text to redact).

mod consumers;
mod crash;
mod decisions;
mod fuzz;
mod inputs;
mod lifecycle;
mod properties;
mod tenancy;
pub(crate) mod world;
