//! Images built from a directory, docker-compose's `build:`: the context is sent to the engine's
//! build API as a tar archive.

use std::path::Path;

use crate::backend::Backend;
use crate::spec::{Build, Environment, Service};

/// Builds the image of every service that declares `build:`, one after another (builds share
/// the engine's cache, so later ones reuse the earlier layers).
pub async fn build_environment(
    backend: &dyn Backend,
    environment: &Environment,
) -> Result<Vec<String>, String> {
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
) -> Result<(), String> {
    let context = build.context.clone();
    let archive = tokio::task::spawn_blocking(move || archive(&context))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "cannot read the build context `{}`: {e}",
                build.context.display()
            )
        })?;
    backend
        .build_image(archive, &build.dockerfile, &service.image)
        .await
        .map_err(|e| e.to_string())
}

fn archive(context: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(true);
    builder.append_dir_all(".", context)?;
    builder.into_inner()
}
