//! `down` and `stop`: dependents first, each wave in parallel, only labelled resources.

use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::{self, Instance};
use crate::backend::{Backend, BackendError, MarkerKind, Selector, ServiceRecord};
use crate::naming;

/// How long containers get to stop on SIGTERM before Docker kills them, as `docker stop`:
/// `stop`'s grace.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why an environment could not be removed completely.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Backend(#[from] BackendError),
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

/// Removes the environments `ids`, in parallel: their services, then their isolation,
/// markers and claim. `grace` as in [`remove`]. Idempotent: returns what it found to remove.
pub async fn down(
    backend: &dyn Backend,
    ids: &[String],
    grace: Option<Duration>,
) -> Result<Vec<Instance>, TeardownError> {
    let chosen: Vec<Instance> = inventory::list(backend)
        .await?
        .into_iter()
        .filter(|i| ids.contains(&i.id))
        .collect();
    join_all(
        chosen
            .iter()
            .map(|instance| remove(backend, instance, grace)),
    )
    .await
    .into_iter()
    .collect::<Result<(), _>>()?;
    Ok(chosen)
}

/// Removes one environment at once, killing its services instead of stopping them.
pub async fn remove_now(backend: &dyn Backend, instance: &Instance) -> Result<(), TeardownError> {
    remove(backend, instance, None).await
}

/// Removes one environment: its services, then its isolation, its markers and its claim.
///
/// An environment being removed is thrown away, so by default (`grace` is `None`) all its
/// services are killed and removed at once: nothing waits for a service that ignores
/// SIGTERM. With a `grace`, each service is stopped first (SIGTERM, SIGKILL after the grace),
/// dependents first, wave by wave.
pub async fn remove(
    backend: &dyn Backend,
    instance: &Instance,
    grace: Option<Duration>,
) -> Result<(), TeardownError> {
    match grace {
        None => {
            let all = instance.services.iter().chain(&instance.aside);
            all_ok(join_all(all.map(|s| backend.remove_service(&s.handle, None))).await)?;
        }
        Some(grace) => {
            dependents_first(instance, |s| backend.remove_service(&s.handle, Some(grace))).await?;
            // Services an update put aside are stopped already.
            let aside = instance.aside.iter();
            all_ok(join_all(aside.map(|s| backend.remove_service(&s.handle, None))).await)?;
        }
    }
    remove_newcomers(backend, instance).await?;
    let held = remove_isolation(backend, instance).await?;
    remove_volumes(backend, instance).await?;
    if instance.markers.pinned {
        backend
            .clear_marker(&instance.id, MarkerKind::Pinned)
            .await?;
    }
    if instance.markers.lease_until.is_some() {
        backend
            .clear_marker(&instance.id, MarkerKind::Lease)
            .await?;
    }
    // Even when the listing showed none: an update may have set its marker since. One that
    // sets it after this sees its environment gone, and removes it itself.
    backend
        .clear_marker(&instance.id, MarkerKind::Update)
        .await?;
    if let Some((network, users)) = held.into_iter().next() {
        return Err(TeardownError::NetworkInUse {
            id: instance.id.clone(),
            network,
            users,
        });
    }
    if instance.markers.ready {
        backend
            .clear_marker(&instance.id, MarkerKind::Ready)
            .await?;
    }
    for (_, result) in super::pool::clear_markers(backend, instance).await {
        result?;
    }
    // The claim goes last: until then the id stays claimed.
    if instance.markers.claimed {
        backend.release(&instance.id).await?;
    }
    Ok(())
}

/// Kills what the environment gained since it was listed: a concurrent `envctl update` may
/// have created a service's replacement (or put one aside) meanwhile, which would hold the
/// isolation.
async fn remove_newcomers(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    let known: Vec<&str> = instance
        .services
        .iter()
        .chain(&instance.aside)
        .map(|s| s.handle.native.as_str())
        .collect();
    let now = backend.list(&Selector::Id(instance.id.clone())).await?;
    let newcomers: Vec<&ServiceRecord> = now
        .iter()
        .flat_map(|i| i.services.iter().chain(&i.aside))
        .filter(|s| !known.contains(&s.handle.native.as_str()))
        .collect();
    all_ok(
        join_all(
            newcomers
                .into_iter()
                .map(|s| backend.remove_service(&s.handle, None)),
        )
        .await,
    )
}

/// Removes the environment's isolation (its own services are gone by now). What the backend
/// keeps because others use it is returned by name with its users: they are not envctl's.
async fn remove_isolation(
    backend: &dyn Backend,
    instance: &Instance,
) -> Result<Vec<(String, Vec<String>)>, BackendError> {
    let removing = instance.isolation.iter().map(|isolation| async move {
        match backend.remove_isolation(isolation).await {
            Ok(()) => Ok(None),
            Err(BackendError::InUse { what, users }) => Ok(Some((what, users))),
            Err(error) => Err(error),
        }
    });
    let results: Vec<Option<(String, Vec<String>)>> = join_all(removing)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok(results.into_iter().flatten().collect())
}

/// Removes the environment's named volumes (its services are gone by now). The backend lists
/// only volumes carrying envctl's labels and this id, so one envctl did not create is never
/// touched, whatever its name.
async fn remove_volumes(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    let removing = instance.volumes.iter().map(|v| backend.remove_volume(v));
    join_all(removing).await.into_iter().collect()
}

/// Runs `act` on every service, dependents first, each wave at once.
async fn dependents_first<'a, F, Fut>(instance: &'a Instance, act: F) -> Result<(), BackendError>
where
    F: Fn(&'a ServiceRecord) -> Fut,
    Fut: Future<Output = Result<(), BackendError>>,
{
    for wave in instance.waves().into_iter().rev() {
        let results = join_all(wave.into_iter().map(&act)).await;
        results.into_iter().collect::<Result<(), _>>()?;
    }
    Ok(())
}

fn all_ok(results: Vec<Result<(), BackendError>>) -> Result<(), BackendError> {
    results.into_iter().collect()
}

/// Stops the environment's services, dependents first, each wave's at once, keeping them.
pub async fn stop(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    dependents_first(instance, |s| backend.stop_service(&s.handle, STOP_GRACE)).await
}

/// A container, network or named volume of an environment, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Container(String),
    Network(String),
    Volume(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Container(name) => write!(f, "`{name}`"),
            Resource::Network(name) => write!(f, "network `{name}`"),
            Resource::Volume(name) => write!(f, "volume `{name}`"),
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
    pub cause: Option<BackendError>,
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

/// `3 containers, 1 network and 1 volume`.
fn count(resources: &[Resource]) -> String {
    let of = |kind: fn(&Resource) -> bool| resources.iter().filter(|r| kind(r)).count();
    let counts = [
        (of(|r| matches!(r, Resource::Container(_))), "container"),
        (of(|r| matches!(r, Resource::Network(_))), "network"),
        (of(|r| matches!(r, Resource::Volume(_))), "volume"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, one)| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {one}s"),
        })
        .collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn list(resources: &[Resource]) -> String {
    let names: Vec<String> = resources.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// What of an environment the cleanup report names: its services and markers by their
/// container names, its isolation as a network, its named volumes by their engine names.
pub fn resources(record: &Instance) -> Vec<Resource> {
    let id = &record.id;
    let mut resources: Vec<Resource> = record
        .services
        .iter()
        .map(|s| Resource::Container(s.handle.name.clone()))
        .collect();
    if let Some(until) = record.markers.lease_until {
        resources.push(Resource::Container(naming::lease_name(id, until)));
    }
    if record.markers.ready {
        resources.push(Resource::Container(naming::ready_name(id)));
    }
    resources.extend(super::pool::markers(record));
    if record.markers.claimed {
        resources.push(Resource::Container(naming::anchor_name(id)));
    }
    resources.extend(
        record
            .isolation
            .iter()
            .map(|i| Resource::Network(i.name.clone())),
    );
    resources.extend(
        record
            .volumes
            .iter()
            .map(|v| Resource::Volume(v.native.clone())),
    );
    resources
}

/// Removes everything `selector` finds: services (stopped within `grace` first, or killed at
/// once when `grace` is `None`), then isolation, named volumes, markers and the claim. `expected` is what the
/// caller knows to exist: when the backend cannot be asked, that is what is left.
pub async fn remove_reporting(
    backend: &dyn Backend,
    selector: &Selector,
    grace: Option<Duration>,
    expected: &[Resource],
) -> Cleanup {
    let mut cleanup = Cleanup::default();
    let records = match backend.list(selector).await {
        Ok(records) => records,
        Err(error) => {
            cleanup.left = expected.to_vec();
            cleanup.cause = Some(error);
            return cleanup;
        }
    };
    for record in &records {
        let removing = record
            .services
            .iter()
            .map(|s| backend.remove_service(&s.handle, grace));
        for (service, result) in record.services.iter().zip(join_all(removing).await) {
            cleanup.record(Resource::Container(service.handle.name.clone()), result);
        }
        let removing = record.isolation.iter().map(|i| backend.remove_isolation(i));
        for (isolation, result) in record.isolation.iter().zip(join_all(removing).await) {
            cleanup.record(Resource::Network(isolation.name.clone()), result);
        }
        let removing = record.volumes.iter().map(|v| backend.remove_volume(v));
        for (volume, result) in record.volumes.iter().zip(join_all(removing).await) {
            cleanup.record(Resource::Volume(volume.native.clone()), result);
        }
        let id = &record.id;
        if let Some(until) = record.markers.lease_until {
            let result = backend.clear_marker(id, MarkerKind::Lease).await;
            cleanup.record(Resource::Container(naming::lease_name(id, until)), result);
        }
        if record.markers.ready {
            let result = backend.clear_marker(id, MarkerKind::Ready).await;
            cleanup.record(Resource::Container(naming::ready_name(id)), result);
        }
        for (resource, result) in super::pool::clear_markers(backend, record).await {
            cleanup.record(resource, result);
        }
        if record.markers.claimed {
            let result = backend.release(id).await;
            cleanup.record(Resource::Container(naming::anchor_name(id)), result);
        }
    }
    cleanup
}

impl Cleanup {
    fn record(&mut self, resource: Resource, result: Result<(), BackendError>) {
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
            cause: Some(BackendError::operation("remove container `b_x`", "busy")),
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
    fn a_cleanup_counts_named_volumes_apart() {
        let cleanup = Cleanup {
            id: Some("x".into()),
            removed: vec![
                container("a_x"),
                Resource::Network("envctl_e_x".into()),
                Resource::Volume("envctl_x_data".into()),
            ],
            ..Cleanup::default()
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 1 container, 1 network and 1 volume of environment `x`"
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
