use crate::cli::TouchArgs;
use crate::{Error, ExitStatus, lifecycle, output, state};

pub async fn touch(args: TouchArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    state::record_activity(engine.endpoint(), &instance.id, "envctl touch")
        .map_err(|e| Error::Internal(e.to_string()))?;
    output::message(&format!(
        "touched {}: its idle clock restarts now",
        instance.id
    ));
    Ok(ExitStatus::Success)
}

pub async fn pin(args: TouchArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    lifecycle::pin(engine.as_ref(), &instance).await?;
    // A pin made while a reaper pass runs must stop that pass from acting on it.
    state::touch(engine.endpoint(), &instance.id, "envctl pin");
    output::message(&format!(
        "pinned {}: the reaper leaves it alone",
        instance.id
    ));
    Ok(ExitStatus::Success)
}

pub async fn unpin(args: TouchArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    lifecycle::unpin(engine.as_ref(), &instance).await?;
    output::message(&format!("unpinned {}", instance.id));
    Ok(ExitStatus::Success)
}
