//! The emulator over raw HTTP (hyper's own client, signing done here): one binary for all API
//! tests, each test on its own emulator.

mod activity;
mod admin;
mod agents;
mod auth;
mod bad_input;
mod common;
mod concurrency;
mod faults;
mod fuzz;
mod keys;
mod persistence;
