use crate::cli::IdArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    lifecycle::stop(backend.as_ref(), &instance).await?;
    output::message(&format!(
        "stopped {}; `envctl start {}` brings it back",
        args.id, args.id
    ));
    Ok(ExitStatus::Success)
}
