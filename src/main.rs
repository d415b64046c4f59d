//! The `engram` binary: parses the command line, runs it, turns an error into one line on
//! stderr and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = engram::cli::Cli::parse();
    match engram::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("engram: {error:#}");
            ExitCode::FAILURE
        }
    }
}
