//! `down` and `stop`, and the one removal that `down`, the reaper and a failed start's
//! rollback share: dependents first, each wave in parallel, only labelled resources.

use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::{self, Instance};
use super::recorded::Recorded;
use crate::backend::{
    Backend, BackendError, BackendKind, MarkerKind, Resource, ResourceKind, Selector, ServiceRecord,
};
use crate::naming;

/// How long containers get to stop on SIGTERM before Docker kills them, as `docker stop`:
/// `stop`'s grace.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why an environment could not be removed completely.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// What envctl did not create is attached to the environment's isolation. envctl never
    /// touches it, so it keeps the isolation (and the claim on the id, whose isolation name it
    /// still holds); everything else of the environment is gone.
    #[error(
        "kept {} `{network}` of `{id}`: {} not envctl's {} attached to it\n\
         hint: {}, then `envctl down {id}` removes the rest",
        backend.noun(ResourceKind::Isolation),
        names(*backend, users),
        if users.len() == 1 { "is" } else { "are" },
        backend.detach_hint(network, users.first().map(String::as_str).unwrap_or_default())
    )]
    NetworkInUse {
        id: String,
        network: String,
        users: Vec<String>,
        /// Whose words the message uses.
        backend: BackendKind,
    },
}

fn names(backend: BackendKind, users: &[String]) -> String {
    let noun = backend.noun(ResourceKind::Service);
    let quoted: Vec<String> = users.iter().map(|u| format!("`{u}`")).collect();
    match quoted.len() {
        1 => format!("{noun} {}, which is", quoted[0]),
        _ => format!("{noun}s {}, which", quoted.join(", ")),
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
    let markers = &instance.markers;
    // The update marker even when the listing showed none: an update may have set it since.
    // One that sets it after this sees its environment gone, and removes it itself.
    let early = [
        (MarkerKind::Pinned, markers.pinned),
        (MarkerKind::Lease, markers.lease_until.is_some()),
        (MarkerKind::Update, true),
    ];
    clear_markers(backend, &instance.id, &early).await?;
    if let Some((network, users)) = held.into_iter().next() {
        return Err(TeardownError::NetworkInUse {
            id: instance.id.clone(),
            network,
            users,
            backend: backend.info().kind,
        });
    }
    // The claim goes last: until then the id stays claimed.
    let last = [
        (MarkerKind::Member, markers.member),
        (MarkerKind::Adopt, markers.adopted),
        (MarkerKind::Ready, markers.ready),
        (MarkerKind::Anchor, markers.claimed),
    ];
    Ok(clear_markers(backend, &instance.id, &last).await?)
}

/// Clears the markers of `id` that are set, one after the other; the anchor by release.
async fn clear_markers(
    backend: &dyn Backend,
    id: &str,
    markers: &[(MarkerKind, bool)],
) -> Result<(), BackendError> {
    for (kind, _) in markers.iter().filter(|(_, set)| *set) {
        match kind {
            MarkerKind::Anchor => backend.release(id).await?,
            kind => backend.clear_marker(id, *kind).await?,
        }
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

/// `3 containers, 1 network and 1 volume`, in the words of the resources' backend.
fn count(resources: &[Resource]) -> String {
    let Some(first) = resources.first() else {
        return String::new();
    };
    // As a removal goes: services, markers, isolation, volumes; Docker's markers are containers.
    let kinds = [
        ResourceKind::Service,
        ResourceKind::Marker(MarkerKind::Anchor),
        ResourceKind::Isolation,
        ResourceKind::Volume,
    ];
    let mut nouns = kinds.map(|kind| first.backend.noun(kind)).to_vec();
    nouns.dedup();
    let parts: Vec<String> = nouns
        .iter()
        .filter_map(
            |noun| match resources.iter().filter(|r| r.noun() == *noun).count() {
                0 => None,
                1 => Some(format!("1 {noun}")),
                n => Some(format!("{n} {noun}s")),
            },
        )
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

/// Everything of an environment a removal takes, as the listing names it, in the order a
/// report lists it: services (those put aside too), markers (the claim last), isolation, named
/// volumes.
pub fn resources(record: &Instance, backend: BackendKind) -> Vec<Resource> {
    let id = &record.id;
    let markers = &record.markers;
    let of = |kind, name: &str| Resource::new(backend, kind, name);
    let services = record.services.iter().chain(&record.aside);
    let mut resources: Vec<Resource> = services
        .map(|s| of(ResourceKind::Service, &s.handle.name))
        .collect();
    let set = [
        (MarkerKind::Pinned, markers.pinned),
        (MarkerKind::Update, markers.update.is_some()),
        (MarkerKind::Lease, markers.lease_until.is_some()),
        (MarkerKind::Member, markers.member),
        (MarkerKind::Adopt, markers.adopted),
        (MarkerKind::Ready, markers.ready),
        (MarkerKind::Anchor, markers.claimed),
    ];
    for (kind, _) in set.into_iter().filter(|(_, set)| *set) {
        let name = naming::marker_name(id, kind)
            .or_else(|| Some(naming::lease_name(id, markers.lease_until?)))
            .unwrap_or_default();
        resources.push(of(ResourceKind::Marker(kind), &name));
    }
    let isolation = record.isolation.iter();
    resources.extend(isolation.map(|i| of(ResourceKind::Isolation, &i.name)));
    let volumes = record.volumes.iter();
    resources.extend(volumes.map(|v| of(ResourceKind::Volume, &v.native)));
    resources
}

/// Removes everything `selector` finds as [`remove`] does, services stopped within `grace`
/// first (or killed at once when `None`), and says what it removed and what is left.
/// `expected` is what the caller knows to exist: when the backend cannot be asked, that is
/// what is left.
pub async fn remove_reporting(
    backend: &dyn Backend,
    selector: &Selector,
    grace: Option<Duration>,
    expected: &[Resource],
) -> Cleanup {
    let recorded = Recorded::new(backend);
    let records = match recorded.list(selector).await {
        Ok(records) => records,
        Err(error) => {
            return Cleanup {
                left: expected.to_vec(),
                cause: Some(error),
                ..Cleanup::default()
            };
        }
    };
    let mut cleanup = Cleanup::default();
    for record in &records {
        let result = remove(&recorded, record, grace).await;
        let done = recorded.cleanup(&record.id).unwrap_or_default();
        cleanup.removed.extend(done.removed);
        cleanup.left.extend(done.left);
        let cause = match result {
            Ok(()) => continue,
            Err(TeardownError::Backend(error)) => error,
            Err(TeardownError::NetworkInUse { network, users, .. }) => BackendError::InUse {
                what: network,
                users,
            },
        };
        cleanup.cause.get_or_insert(cause);
    }
    cleanup
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(backend: BackendKind, kind: ResourceKind, name: &str) -> Resource {
        Resource::new(backend, kind, name)
    }

    fn container(name: &str) -> Resource {
        on(BackendKind::Docker, ResourceKind::Service, name)
    }

    fn network(name: &str) -> Resource {
        on(BackendKind::Docker, ResourceKind::Isolation, name)
    }

    #[test]
    fn a_complete_cleanup_counts_what_it_removed() {
        let cleanup = Cleanup {
            id: Some("20261126-041500".into()),
            removed: vec![container("a"), container("b"), network("n")],
            ..Cleanup::default()
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 2 containers and 1 network of environment `20261126-041500`"
        );
    }

    #[test]
    fn an_unfinished_cleanup_names_what_is_left_and_how_to_remove_it() {
        let ready = ResourceKind::Marker(MarkerKind::Ready);
        let cleanup = Cleanup {
            id: Some("x".into()),
            removed: vec![container("a_x")],
            left: vec![container("b_x"), network("envctl_e_x")],
            unanswered: vec![on(BackendKind::Docker, ready, "envctl_x_ready")],
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
        let anchor = ResourceKind::Marker(MarkerKind::Anchor);
        let cleanup = Cleanup {
            id: Some("x".into()),
            removed: vec![
                on(BackendKind::Docker, ResourceKind::Volume, "envctl_x_data"),
                network("envctl_e_x"),
                on(BackendKind::Docker, anchor, "envctl_x"),
            ],
            ..Cleanup::default()
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 1 container, 1 network and 1 volume of environment `x`"
        );
    }

    #[test]
    fn a_swarm_cleanup_calls_services_configs_and_overlay_networks_by_their_names() {
        let swarm = |kind, name| on(BackendKind::Swarm, kind, name);
        let cleanup = Cleanup {
            id: Some("x".into()),
            removed: vec![
                swarm(ResourceKind::Service, "a_x"),
                swarm(ResourceKind::Service, "b_x"),
                swarm(ResourceKind::Marker(MarkerKind::Anchor), "envctl_x"),
            ],
            left: vec![
                swarm(ResourceKind::Marker(MarkerKind::Ready), "envctl_x_ready"),
                swarm(ResourceKind::Isolation, "envctl_x_1a2b3c"),
            ],
            ..Cleanup::default()
        };
        assert_eq!(
            cleanup.to_string(),
            "removed 2 services and 1 config of environment `x`; left config \
             `envctl_x_ready`, overlay network `envctl_x_1a2b3c`\n\
             hint: `envctl down x` removes the rest"
        );
    }

    #[test]
    fn an_isolation_kept_for_others_is_named_in_its_backends_words() {
        let kept = |backend| TeardownError::NetworkInUse {
            id: "x".into(),
            network: "n".into(),
            users: vec!["debugger".into()],
            backend,
        };
        assert_eq!(
            kept(BackendKind::Docker).to_string(),
            "kept network `n` of `x`: container `debugger`, which is not envctl's is attached \
             to it\nhint: `docker network disconnect n debugger`, then `envctl down x` removes \
             the rest"
        );
        assert_eq!(
            kept(BackendKind::Swarm).to_string(),
            "kept overlay network `n` of `x`: service `debugger`, which is not envctl's is \
             attached to it\nhint: `docker service update --network-rm n debugger`, then \
             `envctl down x` removes the rest"
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
