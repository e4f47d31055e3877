//! `down` and `stop`: dependents first, each wave in parallel, only labelled resources.

use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::{self, Instance, managed};
use crate::engine::{ContainerSummary, Engine, EngineError};

/// How long containers get to stop on SIGTERM before Docker kills them, as `docker stop`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which environments `down` removes.
pub enum Selection<'a> {
    Ids(&'a [String]),
    /// Every environment, or every one of this name.
    All {
        environment: Option<&'a str>,
    },
    /// Every environment of this owner (Jenkins' `BUILD_TAG`).
    Owner(&'a str),
}

/// Why an environment could not be removed completely.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Containers envctl did not create are attached to the environment's network. envctl never
    /// touches them, so it keeps the network (and the claim on the id, whose network name it
    /// still holds); everything else of the environment is gone.
    #[error(
        "kept network `{network}` of `{id}`: {} not envctl's {} attached to it\n\
         hint: `docker network disconnect {network} {}`, then `envctl down {id}` removes the rest",
        names(users),
        if users.len() == 1 { "is" } else { "are" },
        users.first().map(String::as_str).unwrap_or_default()
    )]
    NetworkInUse {
        id: String,
        network: String,
        users: Vec<String>,
    },
}

fn names(users: &[String]) -> String {
    let quoted: Vec<String> = users.iter().map(|u| format!("`{u}`")).collect();
    match quoted.len() {
        1 => format!("container {}, which is", quoted[0]),
        _ => format!("containers {}, which", quoted.join(", ")),
    }
}

/// Stops and removes the selected environments, in parallel: each one's containers dependents
/// first, then its network, then its anchor. Idempotent: returns what it found to remove.
pub async fn down(
    engine: &dyn Engine,
    selection: Selection<'_>,
) -> Result<Vec<Instance>, TeardownError> {
    let chosen: Vec<Instance> = inventory::list(engine)
        .await?
        .into_iter()
        .filter(|i| match &selection {
            Selection::Ids(ids) => ids.contains(&i.id),
            Selection::All { environment } => environment.is_none_or(|e| e == i.environment),
            Selection::Owner(owner) => i.owner() == *owner,
        })
        .collect();
    join_all(chosen.iter().map(|instance| remove(engine, instance)))
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
    Ok(chosen)
}

/// Stops and removes one environment: containers dependents first, then its network, its pin
/// and its anchor.
pub async fn remove(engine: &dyn Engine, instance: &Instance) -> Result<(), TeardownError> {
    remove_with(engine, instance, Some(STOP_GRACE)).await
}

/// Removes one environment at once, killing its containers instead of stopping them.
pub async fn remove_now(engine: &dyn Engine, instance: &Instance) -> Result<(), TeardownError> {
    remove_with(engine, instance, None).await
}

async fn remove_with(
    engine: &dyn Engine,
    instance: &Instance,
    grace: Option<Duration>,
) -> Result<(), TeardownError> {
    dependents_first(instance, |c| async move {
        if let Some(grace) = grace {
            engine.stop_container(&c.id, grace).await?;
        }
        engine.remove_container(&c.id).await
    })
    .await?;
    let held = remove_unused_networks(engine, instance).await?;
    for marker in instance.pin.iter().chain(&instance.lease) {
        engine.remove_container(&marker.id).await?;
    }
    if let Some((network, users)) = held.into_iter().next() {
        return Err(TeardownError::NetworkInUse {
            id: instance.id.clone(),
            network,
            users,
        });
    }
    if let Some(ready) = &instance.ready {
        engine.remove_container(&ready.id).await?;
    }
    // The anchor goes last: until then the id stays claimed.
    if let Some(anchor) = &instance.anchor {
        engine.remove_container(&anchor.id).await?;
    }
    Ok(())
}

/// Removes the environment's networks that nothing is attached to any more (its own containers
/// are gone by now). Returns the others, by name, with the containers holding them: those are
/// not envctl's to touch.
async fn remove_unused_networks(
    engine: &dyn Engine,
    instance: &Instance,
) -> Result<Vec<(String, Vec<String>)>, EngineError> {
    let removing = instance.networks.iter().map(|network| async move {
        let users = match engine.network_containers(&network.id).await {
            Ok(attached) => attached,
            Err(EngineError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if users.is_empty() {
            engine.remove_network(&network.id).await?;
            return Ok(None);
        }
        let mut names: Vec<String> = users
            .into_iter()
            .map(|u| u.name.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(Some((network.name.clone(), names)))
    });
    let results: Vec<Option<(String, Vec<String>)>> = join_all(removing)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok(results.into_iter().flatten().collect())
}

fn all_ok(results: Vec<Result<(), EngineError>>) -> Result<(), EngineError> {
    results.into_iter().collect()
}

/// Runs `act` on every service container, dependents first, each wave at once.
async fn dependents_first<'a, F, Fut>(instance: &'a Instance, act: F) -> Result<(), EngineError>
where
    F: Fn(&'a ContainerSummary) -> Fut,
    Fut: Future<Output = Result<(), EngineError>>,
{
    for wave in instance.waves().into_iter().rev() {
        all_ok(join_all(wave.into_iter().map(&act)).await)?;
    }
    Ok(())
}

/// Stops the environment's containers, dependents first, keeping them.
pub async fn stop(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    dependents_first(instance, |c| engine.stop_container(&c.id, STOP_GRACE)).await
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

async fn remove_networks(engine: &dyn Engine, filters: &[String]) -> Result<(), EngineError> {
    let networks = engine.list_networks(filters).await?;
    let removing = networks.iter().map(|n| engine.remove_network(&n.id));
    join_all(removing).await.into_iter().collect()
}
