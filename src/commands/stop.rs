use crate::cli::{Format, IdArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

use super::view;

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    lifecycle::stop(engine.as_ref(), &instance).await?;
    let id = &instance.id;
    match args.output.output {
        Format::Json => {
            let stopped = lifecycle::require(engine.as_ref(), id).await?;
            output::json(&view::Environment::of(&stopped, engine.as_ref()));
        }
        Format::Text => {
            output::message(&format!("stopped {id}; `envctl start {id}` brings it back"))
        }
    }
    Ok(ExitStatus::Success)
}
