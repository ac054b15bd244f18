//! The crate's one error type (for the library API and the binary; HTTP errors are [`crate::api_error::ApiError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong when starting, driving or persisting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read or written.
    #[error("state file {path}: I/O error")]
    StateIo {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a state file this version understands.
    #[error("state file {path}: {reason}")]
    StateFormat {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No service key with that id.
    #[error("no service key with id {0}")]
    ServiceKeyNotFound(String),
    /// A fault configuration names a route that does not exist, or has an impossible value.
    #[error("invalid fault configuration: {0}")]
    InvalidFaults(String),
}

impl Error {
    /// A stable, short name for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Bind { .. } => "bind",
            Error::StateIo { .. } => "state_io",
            Error::StateFormat { .. } => "state_format",
            Error::ServiceKeyNotFound(_) => "service_key_not_found",
            Error::InvalidFaults(_) => "invalid_faults",
        }
    }
}
