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
//! Around it, the I/O edges:
//!
//! - [`remote`] — AgentLattice behind a trait, and the service key read from its Secret.
//! - [`executor`] — the plan → act → record loop of one reconcile.
//! - [`cache`] — the Secret cache, each object kept encoded.
//! - [`events`] — Kubernetes Events, with a bounded memory of series.
//! - [`context`] — what every reconcile shares: clients, event publisher, metrics, per-object
//!   memory.
//! - [`controller`] — the kube-runtime controllers, watches and caches; [`controller::Operator`].
//! - [`metrics`], [`admin`] (`/metrics`, `/healthz`, `/readyz`), [`telemetry`] (logs).
//! - [`run`] — the `run` subcommand; `dev` — the quick start on an embedded simulator.

pub mod admin;
pub mod cache;
pub mod claims;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod events;
pub mod executor;
pub mod metrics;
pub mod plan;
pub mod redact;
pub mod remote;
pub mod run;
pub mod secret;
pub mod telemetry;

pub use error::{Error, Result};
