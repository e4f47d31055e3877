//! `start`: bring a stopped environment back in dependency order, waiting for readiness, from
//! its metadata alone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::attempt::Attempt;
use super::inventory::Instance;
use super::starting::{Phases, Startable, start_services};
use super::{Progress, StartError};
use crate::backend::{Backend, Selector, ServiceRecord, ServiceState};
use crate::signals::Signals;
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
    // A paused environment resumes in milliseconds; its services are ready as they were.
    let instance = &super::pause::resume(backend, instance).await?;
    let services = startables(backend, instance.services.iter()).await;
    let phases = Phases::default();
    let dependencies = instance.dependencies();
    // The caller stops a start by dropping it (`commands::start` on an interrupt): there is
    // nothing to undo, so this attempt hears of no signal.
    let (never, _kept) = Signals::manual();
    let attempt = Attempt::new(&never, timeout);
    let starting = start_services(backend, &dependencies, &services, progress, &phases);
    match attempt.bound(starting).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let aftermath = attempt.aftermath(backend, None);
            let selector = Selector::Id(instance.id.clone());
            Err(attempt
                .diagnose(error, &aftermath, &selector, &phases)
                .await)
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
            (false, Some(image)) => super::images::local(backend, image)
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
