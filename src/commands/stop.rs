use crate::cli::{Format, IdArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

use super::view;

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    lifecycle::stop(backend.as_ref(), &instance).await?;
    let id = &instance.id;
    match args.output.output {
        Format::Json => {
            let stopped = lifecycle::require(backend.as_ref(), id).await?;
            output::json(&view::Environment::of(&stopped));
        }
        Format::Text if backend.info().capabilities.stop_keeps_state => {
            output::message(&format!("stopped {id}; `envctl start {id}` brings it back"))
        }
        Format::Text => output::message(&format!(
            "stopped {id} ({}: containers are not kept; `envctl start {id}` runs fresh ones)",
            backend.info().kind
        )),
    }
    Ok(ExitStatus::Success)
}
