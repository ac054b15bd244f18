//! The `lattice-operator` binary: parses arguments and dispatches; everything else is in the
//! library.

use std::process::ExitCode;

use clap::Parser;
use lattice_operator::config::{Args, Command, CrdArgs};
use lattice_operator::crd;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Crd(crd_args) => match write_crd(&crd_args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(_) | Command::Dev(_) => {
            eprintln!("error: the controller is not part of this build yet");
            ExitCode::FAILURE
        }
    }
}

fn write_crd(args: &CrdArgs) -> lattice_operator::Result<()> {
    let yaml = crd::crd_yaml()?;
    match &args.output {
        None => print!("{yaml}"),
        Some(dir) => std::fs::write(dir.join(crd::CRD_FILE_NAME), yaml)?,
    }
    Ok(())
}
