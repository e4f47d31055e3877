//! `down` and `stop`: dependents first, each wave in parallel, only labelled resources.

use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::{self, Instance};
use crate::engine::{ContainerSummary, Engine, EngineError};
use crate::naming::codec::{self, Filter, Role};

/// How long containers get to stop on SIGTERM before Docker kills them, as `docker stop`:
/// `stop`'s grace.
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

/// Removes the selected environments, in parallel: their containers, then their networks, then
/// their anchors. `grace` as in [`remove`]. Idempotent: returns what it found to remove.
pub async fn down(
    engine: &dyn Engine,
    selection: Selection<'_>,
    grace: Option<Duration>,
) -> Result<Vec<Instance>, TeardownError> {
    let chosen: Vec<Instance> = inventory::list(engine)
        .await?
        .into_iter()
        .filter(|i| match &selection {
            Selection::Ids(ids) => ids.contains(&i.id),
            Selection::All { environment } => environment.is_none_or(|e| e == i.environment),
            Selection::Owner(owner) => i.owner() == Some(*owner),
        })
        .collect();
    join_all(
        chosen
            .iter()
            .map(|instance| remove(engine, instance, grace)),
    )
    .await
    .into_iter()
    .collect::<Result<(), _>>()?;
    Ok(chosen)
}

/// Removes one environment: its containers, then its network, its markers and its anchor.
///
/// An environment being removed is thrown away, so by default (`grace` is `None`) all its
/// containers are killed and removed at once: nothing waits for a service that ignores
/// SIGTERM. With a `grace`, each container is stopped first (SIGTERM, SIGKILL after the grace),
/// dependents first, wave by wave.
pub async fn remove(
    engine: &dyn Engine,
    instance: &Instance,
    grace: Option<Duration>,
) -> Result<(), TeardownError> {
    let all = instance.containers.iter().chain(&instance.replaced);
    match grace {
        None => all_ok(join_all(all.map(|c| engine.remove_container(&c.id))).await)?,
        Some(grace) => {
            dependents_first(instance, |c| async move {
                engine.stop_container(&c.id, grace).await?;
                engine.remove_container(&c.id).await
            })
            .await?;
            // Containers an update put aside are stopped already.
            let aside = instance.replaced.iter();
            all_ok(join_all(aside.map(|c| engine.remove_container(&c.id))).await)?;
        }
    }
    remove_newcomers(engine, instance).await?;
    let held = remove_unused_networks(engine, instance).await?;
    let markers = instance
        .pin
        .iter()
        .chain(&instance.lease)
        .chain(&instance.update);
    for marker in markers {
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

/// Kills what the environment gained since it was listed: a concurrent `envctl update` may
/// have created a service's new container meanwhile, which would hold the network.
async fn remove_newcomers(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    let known: Vec<&str> = instance.all_containers().map(|c| c.id.as_str()).collect();
    let filters = [Filter::Managed, Filter::Id(instance.id.clone())];
    let now = engine.list_containers(&filters).await?;
    let newcomers = now
        .iter()
        .filter(|c| !known.contains(&c.id.as_str()))
        .filter(|c| codec::role(&c.labels) != Some(Role::Anchor));
    all_ok(join_all(newcomers.map(|c| engine.remove_container(&c.id))).await)
}

/// Removes the environment's networks (its own containers are gone by now). A network the
/// engine refuses to remove is inspected: the containers still attached to it are not envctl's
/// to touch, so it is returned by name with theirs. Only a refusal costs the extra inspection.
async fn remove_unused_networks(
    engine: &dyn Engine,
    instance: &Instance,
) -> Result<Vec<(String, Vec<String>)>, EngineError> {
    let removing = instance.networks.iter().map(|network| async move {
        let refused = match engine.remove_network(&network.id).await {
            Ok(()) => return Ok(None),
            Err(error) => error,
        };
        let users = match engine.network_containers(&network.id).await {
            Ok(attached) if !attached.is_empty() => attached,
            Err(EngineError::NotFound { .. }) => return Ok(None),
            _ => return Err(refused),
        };
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

/// Stops the environment's containers, dependents first, each wave's at once, keeping them.
pub async fn stop(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    dependents_first(instance, |c| engine.stop_container(&c.id, STOP_GRACE)).await
}

/// A container or network of an environment, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Container(String),
    Network(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Container(name) => write!(f, "`{name}`"),
            Resource::Network(name) => write!(f, "network `{name}`"),
        }
    }
}

/// What removing a start's resources got done, for a message that says what is left.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// The environment's id; `None` when the start had not claimed one.
    pub id: Option<String>,
    pub removed: Vec<Resource>,
    /// What is still there, or could not be checked.
    pub left: Vec<Resource>,
    /// Creates that got no answer: the engine may still carry them out.
    pub unanswered: Vec<Resource>,
    /// Why something was left.
    pub cause: Option<EngineError>,
}

impl Cleanup {
    pub fn is_complete(&self) -> bool {
        self.left.is_empty() && self.unanswered.is_empty()
    }
}

/// `removed 3 containers and 1 network of environment `ID`; left ...` with the `down` hint.
impl std::fmt::Display for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(id) = &self.id else {
            return f.write_str("nothing had been created yet");
        };
        let removed = count(&self.removed);
        if self.is_complete() {
            return match removed.is_empty() {
                true => write!(f, "environment `{id}` had nothing left to remove"),
                false => write!(f, "removed {removed} of environment `{id}`"),
            };
        }
        match removed.is_empty() {
            true => write!(f, "removed nothing of environment `{id}`")?,
            false => write!(f, "removed {removed} of environment `{id}`")?,
        }
        if !self.left.is_empty() {
            write!(f, "; left {}", list(&self.left))?;
        }
        if !self.unanswered.is_empty() {
            write!(
                f,
                "; {} may appear yet: the engine never answered {}",
                list(&self.unanswered),
                match self.unanswered.len() {
                    1 => "its creation",
                    _ => "their creation",
                }
            )?;
        }
        if let Some(cause) = &self.cause {
            let cause = cause.to_string();
            write!(
                f,
                "\n  because {}",
                cause.lines().next().unwrap_or_default()
            )?;
        }
        write!(f, "\nhint: `envctl down {id}` removes the rest")
    }
}

/// `3 containers and 1 network`.
fn count(resources: &[Resource]) -> String {
    let containers = resources
        .iter()
        .filter(|r| matches!(r, Resource::Container(_)))
        .count();
    let networks = resources.len() - containers;
    let noun = |n: usize, one: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    match (containers, networks) {
        (0, 0) => String::new(),
        (c, 0) => noun(c, "container"),
        (0, n) => noun(n, "network"),
        (c, n) => format!("{} and {}", noun(c, "container"), noun(n, "network")),
    }
}

fn list(resources: &[Resource]) -> String {
    let names: Vec<String> = resources.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// Removes every container and network matching `filter` (besides envctl's own label):
/// stopped within `grace` first, or killed at once when `grace` is `None`. `expected` is what
/// the caller knows to exist: when the engine cannot be asked, that is what is left.
pub async fn remove_reporting(
    engine: &dyn Engine,
    filter: Filter,
    grace: Option<Duration>,
    expected: &[Resource],
) -> Cleanup {
    let mut cleanup = Cleanup::default();
    let filters = [Filter::Managed, filter];
    let containers = match engine.list_containers(&filters).await {
        Ok(containers) => containers,
        Err(error) => {
            cleanup.left = expected.to_vec();
            cleanup.cause = Some(error);
            return cleanup;
        }
    };
    let removing = containers.iter().map(|c| async move {
        if let Some(grace) = grace {
            engine.stop_container(&c.id, grace).await?;
        }
        engine.remove_container(&c.id).await
    });
    for (container, result) in containers.iter().zip(join_all(removing).await) {
        cleanup.record(Resource::Container(container.name.clone()), result);
    }
    match engine.list_networks(&filters).await {
        Ok(networks) => {
            let removing = networks.iter().map(|n| engine.remove_network(&n.id));
            for (network, result) in networks.iter().zip(join_all(removing).await) {
                cleanup.record(Resource::Network(network.name.clone()), result);
            }
        }
        Err(error) => {
            let networks = expected
                .iter()
                .filter(|r| matches!(r, Resource::Network(_)));
            cleanup.left.extend(networks.cloned());
            cleanup.cause.get_or_insert(error);
        }
    }
    cleanup
}

impl Cleanup {
    fn record(&mut self, resource: Resource, result: Result<(), EngineError>) {
        match result {
            Ok(()) => self.removed.push(resource),
            Err(error) => {
                self.left.push(resource);
                self.cause.get_or_insert(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str) -> Resource {
        Resource::Container(name.into())
    }

    #[test]
    fn a_complete_cleanup_counts_what_it_removed() {
        let cleanup = Cleanup {
            id: Some("20261126-041500".into()),
            removed: vec![
                container("a"),
                container("b"),
                Resource::Network("n".into()),
            ],
            ..Cleanup::default()
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 2 containers and 1 network of environment `20261126-041500`"
        );
    }

    #[test]
    fn an_unfinished_cleanup_names_what_is_left_and_how_to_remove_it() {
        let cleanup = Cleanup {
            id: Some("x".into()),
            removed: vec![container("a_x")],
            left: vec![container("b_x"), Resource::Network("envctl_e_x".into())],
            unanswered: vec![container("envctl_x_ready")],
            cause: Some(EngineError::operation("remove container `b_x`", "busy")),
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 1 container of environment `x`; left `b_x`, network `envctl_e_x`; \
             `envctl_x_ready` may appear yet: the engine never answered its creation\n  \
             because failed to remove container `b_x`: busy\n\
             hint: `envctl down x` removes the rest"
        );
    }

    #[test]
    fn a_start_interrupted_before_its_claim_created_nothing() {
        assert_eq!(
            Cleanup::default().to_string(),
            "nothing had been created yet"
        );
    }
}
