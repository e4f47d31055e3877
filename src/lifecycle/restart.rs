//! `start`: bring a stopped environment back in dependency order, waiting for readiness, from
//! its metadata alone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::inventory::Instance;
use super::starting::{Phases, Startable, start_services};
use super::{Phase, Progress, StartError, last_service_lines};
use crate::backend::{Backend, ServiceRecord, ServiceState};
use crate::spec::{DEFAULT_READY_TIMEOUT, Ready};

pub async fn start(
    backend: &dyn Backend,
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
    let services = startables(backend, instance.services.iter()).await;
    let phases = Phases::default();
    let dependencies = instance.dependencies();
    let starting = start_services(backend, &dependencies, &services, progress, &phases);
    match tokio::time::timeout(timeout, starting).await {
        Ok(result) => result,
        Err(_) => {
            let pending = phases.pending();
            let mut logs = None;
            if let Some((service, Phase::Starting)) = pending.first() {
                let startable = &services[service];
                let lines =
                    last_service_lines(backend, &startable.service, super::FAILURE_LOG_LINES).await;
                logs = Some((startable.service.name.clone(), lines));
            }
            Err(StartError::Timeout {
                timeout,
                pending,
                logs,
                unanswered: crate::reach::unanswered(backend.endpoint()),
            })
        }
    }
}

/// What starting each of `records` takes, from what the backend lists: running services and
/// jobs that finished as expected are left alone. Shared with `update`, which restores services
/// so.
pub(super) async fn startables<'a>(
    backend: &dyn Backend,
    records: impl Iterator<Item = &'a ServiceRecord>,
) -> BTreeMap<String, Startable> {
    join_all(records.map(|record| async move {
        let ready = record.ready().cloned().unwrap_or(Ready {
            probes: Vec::new(),
            timeout: DEFAULT_READY_TIMEOUT,
        });
        // Running services are left alone, and a job that finished as expected stays finished.
        let done = record.status.state == ServiceState::Running || record.finished_job();
        let healthcheck = match (done, &record.metadata.image) {
            (false, Some(image)) => backend
                .resolve_image(image)
                .await
                .ok()
                .flatten()
                .and_then(|image| image.healthcheck),
            _ => None,
        };
        let startable = Startable {
            service: record.handle.clone(),
            ready,
            healthcheck,
            done,
        };
        (record.service().to_string(), startable)
    }))
    .await
    .into_iter()
    .collect()
}
