//! `kubectl-lattice`: parses the command line, runs the command, exits with its code (0 ok,
//! 1 error, 2 usage, 3 not found, 4 forbidden, 5 timeout).

use clap::Parser;
use kubectl_lattice::cli::Cli;
use kubectl_lattice::error::{EXIT_ERROR, EXIT_OK};

fn main() {
    // Usage errors exit with 2 (clap's own exit code); --help and --version with 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let code = runtime.block_on(async {
        let mut out = std::io::stdout();
        match kubectl_lattice::run(cli, &mut out).await {
            Ok(()) => EXIT_OK,
            // A reader that went away (`| head`) is not an error worth a message.
            Err(kubectl_lattice::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        }
    });
    std::process::exit(code);
}
