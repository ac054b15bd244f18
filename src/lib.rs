//! lattice-operator: gives every Kubernetes workload a governed AgentLattice identity.
//!
//! A platform team applies a [`crd::LatticeAgent`]; the operator registers the agent with
//! AgentLattice, writes its one-time key into a per-workload Secret, rotates keys without downtime
//! and revokes the agent when the resource goes. `docs/design.md` is the design this crate
//! implements; its section numbers are referenced throughout.
//!
//! The crate is split so that every decision is pure and unit-tested:
//!
//! - [`crd`] — the resource types and the generated CustomResourceDefinition.
//! - [`secret`] — the Secret as durable record: encoding, tolerant decoding, the desired object.
//! - [`plan`] — the planner: `next_step(&Observed) -> Step`, with validation, the rotation
//!   schedule, retirement rules and status computation. No I/O.
//! - [`config`] — flags and environment variables.
//! - [`error`] — the crate's error type.
//!
//! The executor (the kube-runtime controller that performs the planner's actions against the
//! Kubernetes API and AgentLattice) builds on these.

pub mod config;
pub mod crd;
pub mod error;
pub mod plan;
pub mod secret;

pub use error::{Error, Result};
