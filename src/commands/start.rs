use crate::cli::{Format, StartArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

use super::view;

pub async fn exec(args: StartArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    crate::state::touch(engine.endpoint(), &instance.id, "envctl start");
    let reporter = super::progress::reporter(instance.containers.iter().map(|c| c.service()));
    let started =
        lifecycle::start(engine.as_ref(), &instance, &reporter.progress, args.timeout).await;
    drop(reporter);
    started?;
    // Docker publishes a container's ports on new host ports each time it starts: what the
    // environment was reached at before the stop is gone.
    let instance = lifecycle::require(engine.as_ref(), &instance.id).await?;
    let environment = view::Environment::of(&instance, engine.as_ref());
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
