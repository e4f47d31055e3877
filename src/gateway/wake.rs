//! Wake on request: the first request for a stopped environment starts it; every request that
//! arrives during that start waits for the same start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

/// Turns `Some` when the start ended: `Ok` once the environment is ready.
pub type Done = watch::Receiver<Option<Result<(), String>>>;

/// The starts under way, by environment id.
#[derive(Default)]
pub struct Wakes {
    under_way: Mutex<HashMap<String, Done>>,
}

impl Wakes {
    /// Runs `start` for `id` unless a start of `id` is under way; either way returns the
    /// receiver of that one start's end.
    pub fn wake<F>(&self, id: &str, start: F) -> Done
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let mut under_way = self.under_way.lock().unwrap_or_else(|e| e.into_inner());
        // Finished starts are forgotten, so a later stop can be woken from again.
        under_way.retain(|_, done| done.borrow().is_none());
        if let Some(done) = under_way.get(id) {
            return done.clone();
        }
        let (sender, done) = watch::channel(None);
        under_way.insert(id.to_string(), done.clone());
        tokio::spawn(async move {
            let result = start.await;
            let _ = sender.send(Some(result));
        });
        done
    }

    /// Whether a start of `id` is under way.
    pub fn waking(&self, id: &str) -> bool {
        self.under_way
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|done| done.borrow().is_none())
    }
}
