use crate::backend::Backend;
use crate::cli::{Format, StartArgs};
use crate::lifecycle;
use crate::signals::Signals;
use crate::{Error, ExitStatus, output};

use super::view;

pub async fn exec(args: StartArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::Own, async |backend, signals| {
        start(backend, signals, args).await
    })
    .await
}

async fn start(
    backend: &dyn Backend,
    signals: &Signals,
    args: StartArgs,
) -> Result<ExitStatus, Error> {
    let instance = lifecycle::require(backend, &args.id).await?;
    super::touch(backend.endpoint(), &instance.id, "envctl start").await;
    // What an update left half-way goes back first: the previous containers, set aside, keep
    // their data; then the rest starts as usual. `--timeout` bounds the restore.
    let restoring = lifecycle::update::restore_unfinished(backend, &instance, args.timeout);
    let instance = tokio::select! {
        restored = restoring => restored?,
        () = signals.received(1) => {
            detach(backend, &instance.id).await;
            return Err(Error::Interrupted(format!(
                "interrupted\nhint: `envctl start {id}` restores what the update left",
                id = instance.id
            )));
        }
    };
    let reporter = super::progress::reporter(instance.services.iter().map(|s| s.service()));
    let admission = super::admission(args.queue, &reporter);
    let starting = lifecycle::start(
        backend,
        &instance,
        &reporter.progress,
        args.timeout,
        &admission,
    );
    // Nothing to undo: the first interrupt stops the waiting, and says so instead of letting
    // the progress tick on.
    let started = tokio::select! {
        started = starting => started.map_err(Error::from),
        () = signals.received(1) => {
            reporter.interrupted(&format!(
                "interrupted: stopping the start of {}; the services started so far keep running",
                instance.id
            ));
            Err(Error::Interrupted(format!(
                "interrupted\nhint: `envctl start {id}` resumes; `envctl stop {id}` stops what runs",
                id = instance.id
            )))
        }
    };
    drop(reporter);
    detach(backend, &instance.id).await;
    started?;
    // Why envctl stopped it once is old news: a later stop is someone else's.
    if let Some(warning) = crate::state::record_started(backend.endpoint(), &instance.id).await {
        output::warning(&warning);
    }
    // Docker publishes a container's ports on new host ports each time it starts: what the
    // environment was reached at before the stop is gone.
    let instance = lifecycle::require(backend, &instance.id).await?;
    let environment = view::EnvironmentView::of(&instance);
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

/// Leaves the environment's network: an interrupted start was dropped before it did.
async fn detach(backend: &dyn Backend, id: &str) {
    if let Err(error) = backend.detach(id).await {
        output::warning(&format!(
            "could not disconnect envctl's container from environment {id}: {error}"
        ));
    }
}
