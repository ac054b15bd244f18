//! The crate's one error type (the library API and the binary; HTTP errors are
//! [`crate::api_error::ApiError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong when starting, driving or persisting the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not one this version understands.
    #[error("state file {path}: {reason}")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No app with that id.
    #[error("no app with id {0}")]
    AppNotFound(String),
    /// No app key with that id.
    #[error("no app key with id {0}")]
    AppKeyNotFound(String),
    /// An unknown permission scope, or an empty label or name.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A fault configuration names an unknown route or has an impossible value.
    #[error("invalid fault configuration: {0}")]
    InvalidFaults(String),
}

impl Error {
    /// A stable, short name for logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Bind { .. } => "bind",
            Error::StateIo { .. } => "state_io",
            Error::StateFormat { .. } => "state_format",
            Error::AppNotFound(_) => "app_not_found",
            Error::AppKeyNotFound(_) => "app_key_not_found",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::InvalidFaults(_) => "invalid_faults",
        }
    }
}
