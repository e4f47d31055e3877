use crate::cli::CompletionsArgs;
use crate::{Error, ExitStatus};

pub fn exec(args: CompletionsArgs) -> Result<ExitStatus, Error> {
    crate::cli::write_completions(args.shell, &mut std::io::stdout());
    Ok(ExitStatus::Success)
}
