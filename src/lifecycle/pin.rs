//! Pins: a pinned environment is never stopped or removed by the reaper.

use super::inventory::Instance;
use crate::backend::{Backend, BackendError, Marker, MarkerKind};

/// Pins the environment. Pinning a pinned environment is fine.
pub async fn pin(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    if instance.markers.pinned {
        return Ok(());
    }
    if !instance.markers.claimed && instance.services.is_empty() {
        return Err(BackendError::NotFound {
            kind: "environment",
            name: instance.id.clone(),
        });
    }
    backend.set_marker(&instance.metadata, Marker::Pinned).await
}

/// Unpins the environment. Unpinning an unpinned environment is fine.
pub async fn unpin(backend: &dyn Backend, instance: &Instance) -> Result<(), BackendError> {
    match instance.markers.pinned {
        true => backend.clear_marker(&instance.id, MarkerKind::Pinned).await,
        false => Ok(()),
    }
}
