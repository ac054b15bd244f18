//! agentlattice
