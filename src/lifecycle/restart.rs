//! `start`: bring a stopped environment back in dependency order, waiting for readiness, from
//! its labels alone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::Instance;
use super::starting::{Phases, Startable, start_services};
use super::{Phase, Progress, StartError, last_lines};
use crate::engine::{ContainerState, ContainerSummary, Engine};
use crate::spec::{DEFAULT_READY_TIMEOUT, Ready};

pub async fn start(
    engine: &dyn Engine,
    instance: &Instance,
    progress: &Progress,
    timeout: Duration,
) -> Result<(), StartError> {
    if let Some(service) = instance.missing_services().into_iter().next() {
        return Err(StartError::Missing {
            id: instance.id.clone(),
            service,
        });
    }
    let services = startables(engine, instance.containers.iter()).await;
    let phases = Phases::default();
    let dependencies = instance.dependencies();
    let starting = start_services(engine, &dependencies, &services, progress, &phases);
    match tokio::time::timeout(timeout, starting).await {
        Ok(result) => result,
        Err(_) => {
            let pending = phases.pending();
            let mut logs = None;
            if let Some((service, Phase::Starting)) = pending.first() {
                let startable = &services[service];
                let lines = last_lines(engine, &startable.container, 20).await;
                logs = Some((startable.name.clone(), lines));
            }
            Err(StartError::Timeout {
                timeout,
                pending,
                logs,
                unanswered: crate::engine::connect::unanswered(engine.endpoint()),
            })
        }
    }
}

/// What starting each of `containers` takes, from their labels: running services and jobs that
/// finished as expected are left alone. Shared with `update`, which restores services so.
pub(super) async fn startables<'a>(
    engine: &dyn Engine,
    containers: impl Iterator<Item = &'a ContainerSummary>,
) -> BTreeMap<String, Startable> {
    join_all(containers.map(|container| async move {
        let ready = container.ready().unwrap_or(Ready {
            probes: Vec::new(),
            timeout: DEFAULT_READY_TIMEOUT,
        });
        // Running services are left alone, and a job that finished as expected stays finished.
        let done = container.state == ContainerState::Running || container.finished_job();
        let healthcheck = match done {
            false => engine
                .inspect_image(&container.image)
                .await
                .ok()
                .flatten()
                .and_then(|image| image.healthcheck),
            true => None,
        };
        let startable = Startable {
            container: container.id.clone(),
            name: container.name.clone(),
            ready,
            healthcheck,
            done,
        };
        (container.service().to_string(), startable)
    }))
    .await
    .into_iter()
    .collect()
}
