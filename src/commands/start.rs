use crate::cli::{Format, StartArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

use super::view;

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
    // Docker publishes a container's ports on new host ports each time it starts: what the
    // environment was reached at before the stop is gone.
    let instance = lifecycle::require(backend.as_ref(), &instance.id).await?;
    let environment = view::Environment::of(&instance);
    match args.output.output {
        Format::Json => output::json(&environment),
        Format::Text => {
            output::message(&format!("started {}", instance.id));
            let endpoints = environment.endpoints();
            if !endpoints.is_empty() {
                output::data(&endpoints);
            }
        }
    }
    Ok(ExitStatus::Success)
}
