//! `start`: bring a stopped environment back in dependency order, waiting for readiness, from
//! its labels alone.

use super::inventory::Instance;
use super::probe::Subject;
use super::{Phase, Progress, StartError, last_lines, scheduler, up};
use crate::spec::Ready;

pub async fn start(
    engine: &dyn crate::engine::Engine,
    instance: &Instance,
    progress: &Progress,
) -> Result<(), StartError> {
    let dependencies = instance.dependencies();
    let start = |service: String| async move {
        let container = instance
            .containers
            .iter()
            .find(|c| c.service() == service)
            .expect("every service in the dependency map has a container");
        let ready = container.ready().unwrap_or(Ready {
            probes: Vec::new(),
            timeout: crate::spec::DEFAULT_READY_TIMEOUT,
        });
        // A finished one-shot job stays finished; running services are left alone.
        if ready.exit_code().is_some() || container.state == crate::engine::ContainerState::Running
        {
            progress(&service, Phase::Ready);
            return Ok(());
        }
        let healthcheck = match engine.inspect_image(&container.image).await {
            Ok(Some(image)) => image.healthcheck,
            _ => None,
        };
        progress(&service, Phase::Starting);
        let subject = Subject {
            engine,
            container: &container.id,
            ready: &ready,
            healthcheck: healthcheck.as_deref(),
        };
        up::start_one(&subject).await?;
        progress(&service, Phase::Ready);
        Ok::<(), String>(())
    };
    match scheduler::run(&dependencies, start).await {
        Ok(()) => Ok(()),
        Err((service, reason)) => {
            progress(&service, Phase::Failed);
            let container = instance
                .containers
                .iter()
                .find(|c| c.service() == service)
                .expect("the failed service has a container");
            Err(StartError::Service {
                logs: last_lines(engine, &container.id, 20).await,
                container: container.name.clone(),
                service,
                reason,
            })
        }
    }
}
