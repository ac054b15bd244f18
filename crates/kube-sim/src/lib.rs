//! kube-sim: an in-process Kubernetes API server simulator.
//!
//! Module map (each module has one owner; see the crate README):
//! - [`error`]: the upstream `Status` error model and field errors, shared by every module.
//! - [`schema`]: CRD structural schemas — validation, pruning, defaulting, CEL subset (pure).
//! - [`patch`]: JSON patch (evanphx v4 semantics), merge patch, strategic merge patch,
//!   server-side apply and managedFields (pure).
//! - [`rbac`]: RBAC rule evaluation and the upstream Forbidden message (pure).

pub mod error;
pub mod patch;
pub mod rbac;
pub mod schema;
