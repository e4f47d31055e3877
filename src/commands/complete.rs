//! What the shell completes: environment ids from the engine, environment names from the
//! environment directory and the engine. Completion must never make the shell wait long: a
//! slow or absent engine completes nothing.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Candidates;
use crate::lifecycle::inventory;
use crate::spec::{Catalog, load};

/// What the shell completes, for [`crate::cli::complete_if_asked`].
pub const CANDIDATES: Candidates = Candidates { ids, environments };

/// How long completion waits for the engine.
const ENGINE_BOUND: Duration = Duration::from_secs(2);

/// The environments on the engine: `(id, environment name)`, oldest first.
pub fn ids() -> Vec<(String, String)> {
    on_engine(|instances| {
        instances
            .into_iter()
            .map(|i| {
                let environment = i.environment().to_string();
                (i.id, environment)
            })
            .collect()
    })
}

/// Environment names: those of the files in the environment directory (`ENVCTL_ENVDIR`, else
/// `./environments`) and those running on the engine, sorted, each once.
pub fn environments(with_engine: bool) -> Vec<String> {
    let dir = std::env::var_os("ENVCTL_ENVDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("environments"));
    let mut names: Vec<String> = Catalog::Dir(dir)
        .files()
        .unwrap_or_default()
        .iter()
        .filter_map(|path| load(path).ok())
        .map(|environment| environment.name)
        .collect();
    if with_engine {
        names.extend(on_engine(|instances| {
            instances
                .into_iter()
                .map(|i| i.environment().to_string())
                .collect::<Vec<_>>()
        }));
    }
    names.sort();
    names.dedup();
    names.retain(|name| !name.is_empty());
    names
}

/// `read` of the engine's environments, or nothing when the engine does not answer in time.
fn on_engine<T: Default>(read: impl FnOnce(Vec<inventory::Instance>) -> T) -> T {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return T::default();
    };
    let listing = async {
        let backend = super::backend().await.ok()?;
        inventory::list(backend.as_ref()).await.ok()
    };
    match runtime.block_on(async { tokio::time::timeout(ENGINE_BOUND, listing).await }) {
        Ok(Some(instances)) => read(instances),
        _ => T::default(),
    }
}
