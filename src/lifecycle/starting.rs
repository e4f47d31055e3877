//! Starting services in dependency order and waiting for each one's readiness: shared by `up`
//! and `start`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::Utc;

use super::probe::{self, NotReady, Subject};
use super::{Phase, Progress, StartError, last_service_lines, scheduler};
use crate::backend::{Backend, BackendError, Healthcheck, ServiceRef};
use crate::spec::{Probe, Ready};

/// One service to start.
pub(super) struct Startable {
    pub service: ServiceRef,
    pub ready: Ready,
    /// The image's HEALTHCHECK, for `healthcheck: true`.
    pub healthcheck: Option<Healthcheck>,
    /// Already where it should be (a running service, a job that finished): nothing to do.
    pub done: bool,
}

/// Whether a service's readiness is probed at an address (`tcp:`, `http:`): what envctl in a
/// container joins the environment's network for (see [`crate::backend::Backend::attach`]).
pub(super) fn probes_addresses(ready: &Ready) -> bool {
    ready
        .probes
        .iter()
        .any(|probe| matches!(probe, Probe::Tcp(_) | Probe::Http { .. }))
}

/// The latest phase of each service, so a timeout can say what it was waiting for.
#[derive(Default)]
pub(super) struct Phases(Mutex<BTreeMap<String, Phase>>);

impl Phases {
    pub fn report(&self, progress: &Progress, service: &str, phase: Phase) {
        self.0
            .lock()
            .expect("phases lock")
            .insert(service.to_string(), phase);
        progress(service, phase);
    }

    /// Services not ready yet, with their phase, the started ones first.
    pub fn pending(&self) -> Vec<(String, Phase)> {
        let phases = self.0.lock().expect("phases lock");
        let mut pending: Vec<(String, Phase)> = phases
            .iter()
            .filter(|(_, phase)| **phase != Phase::Ready)
            .map(|(service, phase)| (service.clone(), *phase))
            .collect();
        pending.sort_by_key(|(_, phase)| *phase != Phase::Starting);
        pending
    }
}

/// Why one service's start failed.
enum Failure {
    Service(String),
    /// The engine is down or hangs: no service is to blame.
    Engine(BackendError),
}

impl From<BackendError> for Failure {
    fn from(error: BackendError) -> Failure {
        match error.is_engine_down() {
            true => Failure::Engine(error),
            false => Failure::Service(error.to_string()),
        }
    }
}

/// Starts every service the moment its own dependencies are ready. The first failure names
/// its service, with the reason and the last lines of its log.
pub(super) async fn start_services(
    backend: &dyn Backend,
    dependencies: &BTreeMap<String, BTreeSet<String>>,
    services: &BTreeMap<String, Startable>,
    progress: &Progress,
    phases: &Phases,
) -> Result<(), StartError> {
    for (name, deps) in dependencies {
        if !deps.is_empty() && !services[name].done {
            phases.report(progress, name, Phase::Waiting);
        }
    }
    let start = |name: String| async move {
        let service = &services[&name];
        if !service.done {
            phases.report(progress, &name, Phase::Starting);
            let subject = Subject {
                backend,
                service: &service.service,
                ready: &service.ready,
                healthcheck: service.healthcheck.as_ref(),
                started_at: Utc::now(),
            };
            backend
                .start_service(&service.service)
                .await
                .map_err(Failure::from)?;
            probe::wait_ready(&subject).await.map_err(|e| match e {
                NotReady::Engine(e) => Failure::from(e),
                other => Failure::Service(other.to_string()),
            })?;
        }
        phases.report(progress, &name, Phase::Ready);
        Ok::<(), Failure>(())
    };
    match scheduler::run(dependencies, start).await {
        Ok(()) => Ok(()),
        Err((_, Failure::Engine(error))) => Err(StartError::Backend(error)),
        Err((service, Failure::Service(reason))) => {
            phases.report(progress, &service, Phase::Failed);
            let failed = &services[&service];
            Err(StartError::Service {
                logs: last_service_lines(backend, &failed.service, super::FAILURE_LOG_LINES).await,
                container: failed.service.name.clone(),
                service,
                reason,
            })
        }
    }
}
