//! Images built from a directory, docker-compose's `build:`: the context is sent to the engine's
//! build API as a tar archive.

use std::path::{Path, PathBuf};

use crate::backend::{Backend, BackendError};
use crate::spec::{Build, Environment, Service};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The context directory could not be read into an archive.
    #[error("cannot read the build context `{}`: {source}", context.display())]
    Context {
        context: PathBuf,
        source: std::io::Error,
    },
    /// The task that reads the context panicked or was cancelled.
    #[error(transparent)]
    Archiving(#[from] tokio::task::JoinError),
    /// The engine's build failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Builds the image of every service that declares `build:`, one after another (builds share
/// the engine's cache, so later ones reuse the earlier layers).
pub async fn build_environment(
    backend: &dyn Backend,
    environment: &Environment,
) -> Result<Vec<String>, BuildError> {
    let mut built = Vec::new();
    for service in environment.services.values() {
        if let Some(build) = &service.build {
            build_service(backend, service, build).await?;
            built.push(service.image.to_string());
        }
    }
    Ok(built)
}

pub(super) async fn build_service(
    backend: &dyn Backend,
    service: &Service,
    build: &Build,
) -> Result<(), BuildError> {
    let context = build.context.clone();
    let archive = tokio::task::spawn_blocking(move || archive(&context))
        .await?
        .map_err(|source| BuildError::Context {
            context: build.context.clone(),
            source,
        })?;
    Ok(backend
        .build_image(archive, &build.dockerfile, &service.image)
        .await?)
}

fn archive(context: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(true);
    builder.append_dir_all(".", context)?;
    builder.into_inner()
}
