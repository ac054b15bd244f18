//! Raw-HTTP tests of the emulator against the contract (docs/agentlattice-api.md).
//! One test binary with modules (faster to build than one binary per file).

mod common;

mod admin;
mod auth;
mod bad_input;
mod concurrency;
mod faults;
mod fuzz;
mod persistence;
mod provisioning;
