//! The `lattice-operator` binary: parses arguments, sets up logs and dispatches; everything else
//! is in the library.

use std::process::ExitCode;

use clap::Parser;
use lattice_operator::config::{Args, Command, CrdArgs};
use lattice_operator::{crd, telemetry};

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Crd(crd_args) => write_crd(&crd_args),
        Command::Run(run) => telemetry::init(args.log_format, &args.log_filter)
            .and_then(|()| runtime())
            .and_then(|rt| rt.block_on(lattice_operator::run::run(run))),
        #[cfg(feature = "dev")]
        Command::Dev(dev) => {
            // The walkthrough prints what happens; logs only say what went wrong, unless asked.
            let filter = if args.log_filter == "info" {
                "warn"
            } else {
                args.log_filter.as_str()
            };
            telemetry::init(args.log_format, filter)
                .and_then(|()| runtime())
                .and_then(|rt| rt.block_on(lattice_operator::dev::run(dev)))
        }
        #[cfg(not(feature = "dev"))]
        Command::Dev(_) => Err(lattice_operator::Error::Config(
            "this build has no `dev` subcommand (built without the `dev` feature)".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> lattice_operator::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn write_crd(args: &CrdArgs) -> lattice_operator::Result<()> {
    let yaml = crd::crd_yaml()?;
    match &args.output {
        None => print!("{yaml}"),
        Some(dir) => std::fs::write(dir.join(crd::CRD_FILE_NAME), yaml)?,
    }
    Ok(())
}
