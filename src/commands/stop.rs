use crate::backend::Backend;
use crate::cli::{Format, IdArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

use super::view;

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        stop(backend, args).await
    })
    .await
}

async fn stop(backend: &dyn Backend, args: IdArgs) -> Result<ExitStatus, Error> {
    let instance = lifecycle::require(backend, &args.id).await?;
    lifecycle::stop(backend, &instance).await?;
    let id = &instance.id;
    match args.output.output {
        Format::Json => {
            let stopped = lifecycle::require(backend, id).await?;
            output::json(&view::EnvironmentView::of(&stopped));
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
