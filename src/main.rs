use std::process::ExitCode;

use clap::Parser;
use envctl::cli::Cli;

fn main() -> ExitCode {
    // `COMPLETE=bash envctl ...`: the shell asks for completions.
    envctl::cli::complete_if_asked(envctl::commands::complete::CANDIDATES);
    // Parse before starting the runtime; a usage error is bad input (exit 1), like any other.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 1 } else { 0 });
        }
    };
    envctl::run(cli).into()
}
