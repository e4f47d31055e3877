//! Pins: an environment with a pin container is never stopped or removed by the reaper.

use super::inventory::Instance;
use crate::engine::{Engine, EngineError};
use crate::naming::{self, label};

/// Pins the environment. Pinning a pinned environment is fine.
pub async fn pin(engine: &dyn Engine, instance: &Instance) -> Result<(), EngineError> {
    if instance.pin.is_some() {
        return Ok(());
    }
    let Some(model) = instance.anchor.as_ref().or(instance.containers.first()) else {
        return Err(EngineError::NotFound {
            kind: "environment",
            name: instance.id.clone(),
        });
    };
    let mut labels = model.labels.clone();
    labels.retain(|key, _| {
        [
            label::MANAGED_BY,
            label::ID,
            label::ENVIRONMENT,
            label::CREATED_AT,
            label::OWNER,
        ]
        .contains(&key.as_str())
    });
    labels.insert(label::ROLE.into(), naming::PIN_ROLE.into());
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
