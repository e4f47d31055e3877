//! Pause and resume: an idle environment is first paused (no CPU, its memory and ports kept)
//! and resumed in milliseconds by the next request, `envctl start` or `envctl touch`, long
//! before a stop and a full start would be needed. A backend offers it through
//! `capabilities.pause` (Docker: `docker pause`).

use futures_util::future::try_join_all;

use super::inventory::Instance;
use crate::backend::{Backend, BackendError, ServiceState};

/// Pauses every running service of the environment at once.
pub async fn pause(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    let running = instance
        .services
        .iter()
        .filter(|s| s.status.state == ServiceState::Running);
    try_join_all(running.map(|s| backend.pause_service(&s.handle))).await?;
    Ok(())
}

/// Resumes every paused service of the environment at once; returns the instance as it is
/// then (the resumed services running), so a start that follows leaves them alone.
pub async fn resume(backend: &dyn Backend, instance: &Instance) -> Result<Instance, BackendError> {
    let paused = instance
        .services
        .iter()
        .filter(|s| s.status.state == ServiceState::Paused);
    try_join_all(paused.map(|s| backend.resume_service(&s.handle))).await?;
    let mut resumed = instance.clone();
    for service in &mut resumed.services {
        if service.status.state == ServiceState::Paused {
            service.status.state = ServiceState::Running;
        }
    }
    Ok(resumed)
}

/// Whether some service of the environment is paused.
pub fn any_paused(instance: &Instance) -> bool {
    instance
        .services
        .iter()
        .any(|s| s.status.state == ServiceState::Paused)
}
