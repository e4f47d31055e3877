//! Which image each service runs: resolved locally, chosen among local tags for
//! `SERVICE@REF`, built or pulled as its pull policy says. One resolution for `up`, `update`
//! and `start`.

use std::collections::BTreeMap;

use futures_util::future::try_join_all;

use super::starting::Phases;
use super::{Phase, Progress, StartError, build, refs};
use crate::backend::ResolvedImage as Resolved;
use crate::backend::{Backend, BackendError, PullProgress};
use crate::spec::{ImageRef, Probe, PullPolicy, Service};

/// What image a service is to run.
pub(super) enum Wanted {
    /// As the file declares it; with `prefix`, a unique local tag starting with its tag
    /// counts (`SERVICE@REF`).
    Declared { prefix: bool, pull: PullPolicy },
    /// The image it runs now, which must still be here (a dependent an update recreates).
    Running(ImageRef),
}

/// The image of each of `services`, by service name; the first failure marks its service
/// failed and ends the resolution.
pub(super) async fn resolve<'a>(
    backend: &dyn Backend,
    services: impl Iterator<Item = (&'a Service, Wanted)>,
    progress: &Progress,
    phases: &Phases,
) -> Result<BTreeMap<String, Resolved>, StartError> {
    // Builds run one at a time: services built from one context share its layers.
    let builds = tokio::sync::Mutex::new(());
    let resolving = services.map(|(service, wanted)| {
        let builds = &builds;
        async move {
            let resolved = match wanted {
                Wanted::Declared { prefix, pull } => {
                    resolve_image(backend, service, prefix, pull, progress, phases, builds).await
                }
                Wanted::Running(image) => running(backend, service, &image).await,
            };
            let resolved =
                resolved.inspect_err(|_| phases.report(progress, &service.name, Phase::Failed))?;
            Ok::<_, StartError>((service.name.clone(), resolved))
        }
    });
    Ok(try_join_all(resolving).await?.into_iter().collect())
}

/// `image`, which `service` runs now, if it is still here.
async fn running(
    backend: &dyn Backend,
    service: &Service,
    image: &ImageRef,
) -> Result<Resolved, StartError> {
    let failed = |message: String| StartError::Image {
        service: service.name.clone(),
        message,
    };
    local(backend, image)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed(format!("image `{image}` is no longer available locally")))
}

async fn resolve_image(
    backend: &dyn Backend,
    service: &Service,
    prefix: bool,
    pull: PullPolicy,
    progress: &Progress,
    phases: &Phases,
    builds: &tokio::sync::Mutex<()>,
) -> Result<Resolved, StartError> {
    let failed = |message: String| StartError::Image {
        service: service.name.clone(),
        message,
    };
    let mut image = service.image.clone();
    if prefix {
        let chosen = refs::choose_tag(backend, service, pull)
            .await
            .map_err(|error| StartError::Ref {
                service: service.name.clone(),
                error: Box::new(error),
            })?;
        if let Some(tag) = chosen {
            image.tag = tag;
        }
    }
    let exact = image.to_string();
    // `always` pulls even what is here; a built image has nowhere to be pulled from.
    let found = match pull == PullPolicy::Always && service.build.is_none() {
        true => None,
        false => local(backend, &image)
            .await
            .map_err(|e| failed(e.to_string()))?,
    };
    let resolved = match found {
        Some(resolved) => resolved,
        None => {
            // Through `phases`, so that a timeout names what it was waiting for.
            if let Some(build) = &service.build {
                phases.report(progress, &service.name, Phase::Waiting);
                let _turn = builds.lock().await;
                phases.report(progress, &service.name, Phase::Building);
                build::build_service(backend, service, build)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            } else if pull == PullPolicy::Never {
                return Err(failed(format!(
                    "image `{exact}` is not available locally, and its pull policy is `never`\n\
                     hint: pull or build it first, or let envctl pull it with `--pull missing`"
                )));
            } else {
                phases.report(progress, &service.name, Phase::Pulling);
                let on_progress = |pulled: PullProgress| {
                    let phase = Phase::Downloading {
                        done: pulled.done,
                        total: pulled.total,
                    };
                    phases.report(progress, &service.name, phase);
                };
                backend
                    .fetch_image(&image, &on_progress)
                    .await
                    .map_err(|e| match pull {
                        PullPolicy::Always => failed(format!("{e}")),
                        _ => failed(format!("image `{exact}` is not available locally and {e}")),
                    })?;
            }
            local(backend, &image)
                .await
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| {
                    failed(format!(
                        "image `{exact}` is still missing after it was fetched"
                    ))
                })?
        }
    };
    let wants_healthcheck = service
        .ready
        .probes
        .iter()
        .any(|p| matches!(p, Probe::Healthcheck));
    if wants_healthcheck && resolved.healthcheck.is_none() {
        return Err(failed(format!(
            "`ready: healthcheck: true`, but image `{}` has no HEALTHCHECK",
            resolved.reference
        )));
    }
    Ok(resolved)
}

/// The local image `reference`, if there is one.
pub(super) async fn local(
    backend: &dyn Backend,
    reference: &ImageRef,
) -> Result<Option<Resolved>, BackendError> {
    backend.resolve_image(reference).await
}
