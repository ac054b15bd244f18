//! RBAC evaluation.
