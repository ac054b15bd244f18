//! lattice-operator: gives every Kubernetes workload a governed AgentLattice identity.
