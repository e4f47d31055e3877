//! SIGINT and SIGTERM as a counter: the first asks for a graceful rollback, the second for a
//! fast one (kill instead of stop), like docker-compose and kube-rs controllers.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Counts the interrupt signals received since [`Signals::listen`].
#[derive(Clone)]
pub struct Signals {
    count: watch::Receiver<u32>,
}

impl Signals {
    /// Starts listening. From now on SIGINT and SIGTERM no longer end the process by default.
    pub fn listen() -> std::io::Result<Signals> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (sender, count) = watch::channel(0);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                sender.send_modify(|n| *n += 1);
            }
        });
        Ok(Signals { count })
    }

    /// A counter that never fires, for callers that handle no signals.
    pub fn none() -> Signals {
        let (sender, count) = watch::channel(0);
        // Keep the channel open forever so waiting never ends.
        std::mem::forget(sender);
        Signals { count }
    }

    /// Resolves once `n` signals have arrived in total.
    pub async fn received(&self, n: u32) {
        let mut count = self.count.clone();
        let _ = count.wait_for(|c| *c >= n).await;
    }

    pub fn count(&self) -> u32 {
        *self.count.borrow()
    }
}
