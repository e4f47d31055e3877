use crate::cli::StartArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: StartArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    crate::state::touch(backend.endpoint(), &instance.id, "envctl start");
    let reporter = super::progress::reporter(instance.services.iter().map(|s| s.service()));
    let started = lifecycle::start(
        backend.as_ref(),
        &instance,
        &reporter.progress,
        args.timeout,
    )
    .await;
    drop(reporter);
    started?;
    output::message(&format!("started {}", args.id));
    Ok(ExitStatus::Success)
}
