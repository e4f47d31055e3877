//! `start`: bring a stopped environment back in dependency order, waiting for readiness, from
//! its metadata alone.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::admission::{AdmitOptions, Request};
use super::attempt::Attempt;
use super::inventory::Instance;
use super::starting::{Phases, Startable, probes_addresses, start_services};
use super::{Progress, StartError};
use crate::backend::{Backend, Selector, ServiceRecord, ServiceState};
use crate::signals::Signals;
use crate::spec::{DEFAULT_READY_TIMEOUT, Ready};

pub async fn start(
    backend: &dyn Backend,
    instance: &Instance,
    progress: &Progress,
    timeout: Duration,
    admission: &AdmitOptions,
) -> Result<(), StartError> {
    if let Some(service) = instance.missing_services().into_iter().next() {
        return Err(StartError::Missing {
            id: instance.id.clone(),
            service,
        });
    }
    // A paused environment resumes in milliseconds; its services are ready as they were.
    let instance = &super::pause::resume(backend, instance).await?;
    // The caller stops a start by dropping it (`commands::start` on an interrupt): there is
    // nothing to undo, so this attempt hears of no signal; a dropped wait's queue entry
    // expires on its own.
    let (never, _kept) = Signals::manual();
    let request = Request::stored(instance);
    // One that already runs (in part) counts already: nothing to wait for.
    let ticket = match super::admission::counts(instance, chrono::Utc::now()) {
        true => super::admission::Ticket::default(),
        false => super::admission::admit(backend, &request, admission, &never).await?,
    };
    // It holds the head of the queue until its services run: a stopped environment counts
    // from then on.
    let started = ticket.holding(
        backend,
        resume(backend, instance, progress, timeout, &never),
    );
    let result = started.await;
    ticket.leave(backend).await;
    result
}

async fn resume(
    backend: &dyn Backend,
    instance: &Instance,
    progress: &Progress,
    timeout: Duration,
    never: &Signals,
) -> Result<(), StartError> {
    let services = startables(backend, instance.services.iter()).await;
    let phases = Phases::default();
    let dependencies = instance.dependencies();
    let attempt = Attempt::new(never, timeout);
    // envctl in a container joins the environment's network for the probes that need the
    // services' own addresses, and leaves it once they are over. The caller that drops the
    // start detaches (`commands::start`).
    let probing = services
        .values()
        .any(|s| !s.done && probes_addresses(&s.ready));
    if probing {
        let joined = attempt.within(backend).attach(&instance.id).await?;
        if let Some(warning) = joined.warning {
            tracing::warn!("{warning}");
        }
    }
    let starting = start_services(backend, &dependencies, &services, progress, &phases);
    let result = attempt.bound(starting).await;
    if probing && let Err(error) = attempt.aftermath(backend, None).detach(&instance.id).await {
        tracing::warn!(
            "could not disconnect envctl's container from environment {}: {error}",
            instance.id
        );
    }
    match result {
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
