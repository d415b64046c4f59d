//! The `engram` binary: parses the command line, runs it, turns an error into one line on
//! stderr and an exit status: 0 success, 1 failure, 2 a usage error (clap's), 130 / 143
//! stopped by Ctrl-C / SIGTERM. A closed stdout (`engram jobs | head`) ends quietly with 0.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = engram::cli::Cli::parse();
    match engram::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if engram::cli::is_stdout_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(stopped) = error.downcast_ref::<engram::cli::Interrupted>() {
                return ExitCode::from(stopped.exit_status());
            }
            eprintln!("engram: {error:#}");
            ExitCode::FAILURE
        }
    }
}
