//! lattice-operator: gives every Kubernetes workload a governed AgentLattice identity.
//!
//! A platform team applies a [`crd::LatticeAgent`]; the operator registers the agent with
//! AgentLattice, writes its one-time key into a per-workload Secret, rotates keys without downtime
//! and revokes the agent when the resource goes. `docs/design.md` is the contract this crate
//! implements (its section numbers are referenced throughout); `docs/architecture.md` draws the
//! modules and the path of one LatticeAgent through them.
//!
//! The path of one reconcile, top-down:
//!
//! - [`operator`] — the controllers (one per watched namespace, or one for the cluster), their
//!   caches and the sweepers that start due reconciles;
//! - [`cluster`] — the Kubernetes side: [`cluster::watch`] (the watches feeding the caches, the
//!   claims index and the memory), the finalizer, and [`cluster::KubeCluster`], the one writer of
//!   the operator's Kubernetes objects;
//! - [`reconcile`] — one reconcile: observe → plan → execute → report;
//! - [`plan`] — the pure planner: `next_step(&Observed) -> Step`, with validation, the rotation
//!   schedule and status computation. No I/O;
//! - [`remote`] — AgentLattice behind the [`remote::Backend`] trait, and the service key read from
//!   its Secret;
//! - [`memory`] — what the process remembers of each resource between reconciles.
//!
//! What they use:
//!
//! - [`crd`] — the resource types and the generated CustomResourceDefinition;
//! - [`secret`] — the Secret as durable record: encoding, tolerant decoding, the desired object;
//! - [`cache`] — the Secret cache, each object kept encoded; [`claims`] — who claims which Secret;
//! - [`events`] — Kubernetes Events, with a bounded memory of series;
//! - [`metrics`], [`admin`] (`/metrics`, `/healthz`, `/readyz`), [`telemetry`] (logs),
//!   [`redact`] (no key in any text the operator sends out);
//! - [`config`] — flags and environment variables; [`error`] — the crate's error type;
//!   [`yaml`] — YAML in and out;
//! - [`run`] — the `run` subcommand (leader election, shutdown); `dev` — the quick start on an
//!   embedded simulator and emulator; [`verify`] — the invariant checker (`verify`, and the
//!   integration tests' check).

pub mod admin;
pub mod cache;
pub mod claims;
pub mod cluster;
pub mod config;
pub mod crd;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod events;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod provisioners;
pub mod reconcile;
pub mod redact;
pub mod remote;
pub mod run;
pub mod secret;
pub mod telemetry;
pub mod verify;
pub mod workloads;
pub mod yaml;

pub use error::{Error, Result};
