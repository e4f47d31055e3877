use crate::cli::IdArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    lifecycle::stop(engine.as_ref(), &instance).await?;
    output::message(&format!(
        "stopped {}; `envctl start {}` brings it back",
        args.id, args.id
    ));
    Ok(ExitStatus::Success)
}
