//! Logs: `tracing-subscriber` with `--log-format plain|json` and an `EnvFilter`
//! (`--log-filter`/`RUST_LOG`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;
use crate::error::{Error, Result};

/// Installs the global subscriber. `filter` is an `EnvFilter` directive such as `info` or
/// `lattice_operator=debug,kube=warn`.
pub fn init(format: LogFormat, filter: &str) -> Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| Error::Config(format!("--log-filter {filter:?}: {e}")))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Plain => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    result.map_err(|e| Error::Config(format!("logging: {e}")))
}
