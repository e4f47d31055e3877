use crate::cli::TouchArgs;
use crate::{Error, ExitStatus, lifecycle, output, state};

pub async fn touch(args: TouchArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    if let Some(warning) =
        state::record_activity(backend.endpoint(), &instance.id, "envctl touch").await?
    {
        output::warning(&warning);
    }
    // A paused environment is in use again: it resumes.
    if lifecycle::pause::any_paused(&instance) {
        lifecycle::resume(backend.as_ref(), &instance).await?;
        output::message(&format!("resumed {}", instance.id));
    }
    output::message(&format!(
        "touched {}: its idle clock restarts now",
        instance.id
    ));
    Ok(ExitStatus::Success)
}

pub async fn pin(args: TouchArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    lifecycle::pin(backend.as_ref(), &instance).await?;
    // A pin made while a reaper pass runs must stop that pass from acting on it.
    super::touch(backend.endpoint(), &instance.id, "envctl pin").await;
    output::message(&format!(
        "pinned {}: the reaper leaves it alone",
        instance.id
    ));
    Ok(ExitStatus::Success)
}

pub async fn unpin(args: TouchArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    lifecycle::unpin(backend.as_ref(), &instance).await?;
    output::message(&format!("unpinned {}", instance.id));
    Ok(ExitStatus::Success)
}
