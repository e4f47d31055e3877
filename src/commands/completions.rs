use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::{Error, ExitStatus};

pub fn exec(args: CompletionsArgs) -> Result<ExitStatus, Error> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "envctl", &mut std::io::stdout());
    Ok(ExitStatus::Success)
}
