//! The `lattice-operator` binary: parses arguments, sets up logs and dispatches; everything else
//! is in the library.

use std::process::ExitCode;

use clap::Parser;
use lattice_operator::config::{Args, Command, CrdArgs};
use lattice_operator::{crd, telemetry};

// jemalloc, tuned for a small resident set rather than allocation throughput (docs/benchmarks.md
// has the figures): one arena (the operator runs on two worker threads; per-thread arenas hold
// freed memory apart), and freed pages handed back to the kernel after a second by a background
// thread instead of after ten seconds on the next allocation. With glibc's malloc the same
// operator held 86 MiB after a restart with 10,000 agents; with this, 70.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compile-time options (`malloc_conf`, read before `main`; `_RJEM_MALLOC_CONF` in
/// the environment still overrides them). A `&u8` is the thin `const char *` jemalloc expects.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &u8 =
    &b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

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
        Command::Verify(verify) => return verify_command(verify),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `verify`: the report on stdout; exit 0 when the invariant holds, 1 with violations, 2 when
/// something could not be read.
fn verify_command(args: lattice_operator::config::VerifyArgs) -> ExitCode {
    let report = runtime().and_then(|rt| rt.block_on(lattice_operator::verify::run(args)));
    match report {
        Ok(report) => {
            println!("{report}");
            if report.holds() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> lattice_operator::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn write_crd(args: &CrdArgs) -> lattice_operator::Result<()> {
    let all = crd::all_crd_yaml()?;
    match &args.output {
        None => {
            let documents: Vec<String> = all.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", documents.join("---\n"));
        }
        Some(dir) => {
            for (name, yaml) in all {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
    }
    Ok(())
}
