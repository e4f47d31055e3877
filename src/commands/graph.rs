use crate::cli::GraphArgs;
use crate::{Error, ExitStatus, output};

pub fn exec(args: GraphArgs) -> Result<ExitStatus, Error> {
    let (environment, _) = super::select(&args.target)?;
    output::data(&crate::graph::to_dot(&environment));
    Ok(ExitStatus::Success)
}
