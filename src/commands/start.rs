use crate::cli::StartArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: StartArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    let reporter = super::progress::reporter(instance.containers.iter().map(|c| c.service()));
    let started = tokio::time::timeout(
        args.timeout,
        lifecycle::start(engine.as_ref(), &instance, &reporter.progress),
    )
    .await;
    drop(reporter);
    match started {
        Ok(result) => result?,
        Err(_) => return Err(lifecycle::StartError::Timeout(args.timeout).into()),
    }
    output::message(&format!("started {}", args.id));
    Ok(ExitStatus::Success)
}
