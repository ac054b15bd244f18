//! Chaos with the operator as its own OS process (issue 16): `lattice-operator run` as child
//! processes, SIGKILLed and SIGTERMed at random moments and restarted, while random operations
//! run and both kube-sim and the AgentLattice emulator inject faults; once the faults stop, the
//! invariant must hold within a bounded settle time and nothing may be lost. The runner is in
//! `tests/chaos_runner/`; docs/reliability.md ("Chaos") says how to run it long (`CHAOS_SEED`,
//! `CHAOS_OPS`, `CHAOS_DURATION`, `CHAOS_SETTLE`).

mod chaos_runner;
mod support;

use std::time::Duration;

use chaos_runner::{Bounds, Case};

/// One operator process without leader election, killed and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_one_replica() {
    let case = Case {
        name: "chaos-one",
        replicas: 1,
        lease: "",
    };
    chaos_runner::run(case, Bounds::from_env(80, Duration::from_secs(40))).await;
}

/// Two operator processes with leader election on a 3 s Lease: kills of the leader are
/// takeovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_replicas_with_leader_election() {
    let case = Case {
        name: "chaos-two",
        replicas: 2,
        lease: "3s",
    };
    chaos_runner::run(case, Bounds::from_env(80, Duration::from_secs(40))).await;
}
