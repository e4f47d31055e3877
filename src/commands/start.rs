use crate::cli::StartArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: StartArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    crate::state::touch(engine.endpoint(), &instance.id, "envctl start");
    let reporter = super::progress::reporter(instance.containers.iter().map(|c| c.service()));
    let started =
        lifecycle::start(engine.as_ref(), &instance, &reporter.progress, args.timeout).await;
    drop(reporter);
    started?;
    output::message(&format!("started {}", args.id));
    Ok(ExitStatus::Success)
}
