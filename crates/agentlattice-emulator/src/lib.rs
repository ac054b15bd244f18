//! agentlattice-emulator
