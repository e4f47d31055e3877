//! `down` and `stop`: dependents first, each wave in parallel, only labelled resources.

use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::{self, Instance, managed};
use crate::engine::{Engine, EngineError};

/// How long containers get to stop on SIGTERM before Docker kills them, as `docker stop`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Stops and removes the environments, dependents first; then their networks. Returns the ids
/// that had anything to remove. Idempotent: ids with nothing left are skipped.
pub async fn down(engine: &dyn Engine, instances: &[Instance]) -> Result<(), EngineError> {
    let removals = instances
        .iter()
        .map(|instance| remove_instance(engine, instance));
    join_all(removals).await.into_iter().collect()
}

async fn remove_instance(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    for wave in instance.waves().iter().rev() {
        let removing = wave.iter().map(|c| async move {
            engine.stop_container(&c.id, STOP_GRACE).await?;
            engine.remove_container(&c.id).await
        });
        join_all(removing)
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
    }
    remove_networks(engine, &[managed(), inventory::with_id(&instance.id)]).await?;
    // The anchor goes last: until then the id stays claimed.
    match &instance.anchor {
        Some(anchor) => engine.remove_container(&anchor.id).await,
        None => Ok(()),
    }
}

/// Stops the environment's containers, dependents first, keeping them.
pub async fn stop(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    for wave in instance.waves().iter().rev() {
        let stopping = wave
            .iter()
            .map(|c| engine.stop_container(&c.id, STOP_GRACE));
        join_all(stopping)
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
    }
    Ok(())
}

/// Removes every container and network matching `filter` (besides envctl's own label):
/// stopped within `grace` first, or killed at once when `grace` is `None`.
pub async fn remove_by_filter(
    engine: &dyn Engine,
    filter: &str,
    grace: Option<Duration>,
) -> Result<(), EngineError> {
    let filters = [managed(), filter.to_string()];
    let containers = engine.list_containers(&filters).await?;
    let removing = containers.iter().map(|c| async move {
        if let Some(grace) = grace {
            engine.stop_container(&c.id, grace).await?;
        }
        engine.remove_container(&c.id).await
    });
    join_all(removing)
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
    remove_networks(engine, &filters).await
}

/// Removes the envctl networks matching all `filters`.
pub async fn remove_networks(engine: &dyn Engine, filters: &[String]) -> Result<(), EngineError> {
    let networks = engine.list_networks(filters).await?;
    let removing = networks.iter().map(|n| engine.remove_network(&n.id));
    join_all(removing).await.into_iter().collect()
}
