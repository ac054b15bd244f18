//! The `dev` subcommand (work in progress).

use crate::config::DevArgs;
use crate::error::{Error, Result};

/// `lattice-operator dev`.
pub async fn run(_args: DevArgs) -> Result<()> {
    Err(Error::Config("not yet".into()))
}
