//! Pins: an environment with a pin container is never stopped or removed by the reaper.

use super::inventory::Instance;
use crate::engine::{Engine, EngineError};
use crate::naming::{self, codec::Role};

/// Pins the environment. Pinning a pinned environment is fine.
pub async fn pin(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    if instance.pin.is_some() {
        return Ok(());
    }
    if instance.anchor.is_none() && instance.containers.is_empty() {
        return Err(EngineError::NotFound {
            kind: "environment",
            name: instance.id.clone(),
        });
    }
    let labels = instance.metadata.encode_marker(Role::Pin);
    match engine
        .create_marker(&naming::pin_name(&instance.id), &labels)
        .await
    {
        Ok(_) | Err(EngineError::NameTaken(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Unpins the environment. Unpinning an unpinned environment is fine.
pub async fn unpin(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    match &instance.pin {
        Some(pin) => engine.remove_container(&pin.id).await,
        None => Ok(()),
    }
}
