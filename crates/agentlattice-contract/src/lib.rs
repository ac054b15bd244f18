//! The operations of the AgentLattice contract (`docs/agentlattice-api.md`), with stable names for
//! logs, metric labels, fault routes and audit entries. Shared by the client and the emulator —
//! and nothing else is: each maps operations to and from the wire on its own.

use std::fmt;

/// One operation of the AgentLattice contract (`docs/agentlattice-api.md`).
///
/// [`Operation::as_str`] is stable snake_case, fit for a metric label. Exhaustive on purpose: an
/// operation added to the contract must be handled by the client and the emulator alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `POST /api/agents/register`
    Register,
    /// `GET /api/agents`
    ListAgents,
    /// `GET /api/agents/{id}`
    GetAgent,
    /// `PATCH /api/agents/{id}`
    UpdateAgent,
    /// `POST /api/agents/{id}/halt`
    HaltAgent,
    /// `POST /api/agents/{id}/resume`
    ResumeAgent,
    /// `DELETE /api/agents/{id}`
    RevokeAgent,
    /// `POST /api/agents/{id}/keys`
    MintKey,
    /// `GET /api/agents/{id}/keys`
    ListKeys,
    /// `PATCH /api/agents/{id}/keys/{key_id}/deprecate`
    DeprecateKey,
    /// `PATCH /api/agents/{id}/keys/{key_id}/undeprecate`
    UndeprecateKey,
    /// `DELETE /api/agents/{id}/keys/{key_id}`
    RevokeKey,
    /// `GET /api/v1/whoami`
    Whoami,
    /// `POST /api/v1/actions`
    ExecuteAction,
}

impl Operation {
    /// Every operation, in contract order.
    pub const ALL: [Operation; 14] = [
        Operation::Register,
        Operation::ListAgents,
        Operation::GetAgent,
        Operation::UpdateAgent,
        Operation::HaltAgent,
        Operation::ResumeAgent,
        Operation::RevokeAgent,
        Operation::MintKey,
        Operation::ListKeys,
        Operation::DeprecateKey,
        Operation::UndeprecateKey,
        Operation::RevokeKey,
        Operation::Whoami,
        Operation::ExecuteAction,
    ];

    /// The stable snake_case name (`register`, `list_agents`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::ListAgents => "list_agents",
            Operation::GetAgent => "get_agent",
            Operation::UpdateAgent => "update_agent",
            Operation::HaltAgent => "halt_agent",
            Operation::ResumeAgent => "resume_agent",
            Operation::RevokeAgent => "revoke_agent",
            Operation::MintKey => "mint_key",
            Operation::ListKeys => "list_keys",
            Operation::DeprecateKey => "deprecate_key",
            Operation::UndeprecateKey => "undeprecate_key",
            Operation::RevokeKey => "revoke_key",
            Operation::Whoami => "whoami",
            Operation::ExecuteAction => "execute_action",
        }
    }

    /// Whether repeating the operation after an ambiguous failure (500/502/504, a timeout or a
    /// transport error once the request was sent) is safe (contract §4).
    ///
    /// `register` is idempotent only when it carries an `Idempotency-Key`, which this static answer
    /// cannot know: it says `false`, and the client decides per call. `mint_key` is never
    /// idempotent. `execute_action` is, because the client sends the same `X-AL-Event-ID` on every
    /// attempt and the server answers a replayed event id with the first result (contract §3).
    pub const fn is_idempotent(self) -> bool {
        !matches!(self, Operation::Register | Operation::MintKey)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        for n in &names {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Operation::ALL.len());
    }

    #[test]
    fn idempotency_per_contract() {
        for op in Operation::ALL {
            let expected = !matches!(op, Operation::Register | Operation::MintKey);
            assert_eq!(op.is_idempotent(), expected, "{op}");
        }
    }
}
