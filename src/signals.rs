//! SIGINT and SIGTERM as a counter: the first asks for a graceful rollback, the second for a
//! fast one (kill instead of stop), like docker-compose and kube-rs controllers.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Counts the interrupt signals received since [`Signals::listen`].
#[derive(Clone)]
pub struct Signals {
    count: watch::Receiver<u32>,
    last: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

/// SIGINT's number.
pub const SIGINT: i32 = 2;
/// SIGTERM's number.
pub const SIGTERM: i32 = 15;

impl Signals {
    /// Starts listening. From now on SIGINT and SIGTERM no longer end the process by default.
    pub fn listen() -> std::io::Result<Signals> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (sender, count) = watch::channel(0);
        let last = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let record = last.clone();
        tokio::spawn(async move {
            loop {
                let number = tokio::select! {
                    _ = interrupt.recv() => SIGINT,
                    _ = terminate.recv() => SIGTERM,
                };
                record.store(number, std::sync::atomic::Ordering::SeqCst);
                sender.send_modify(|n| *n += 1);
            }
        });
        Ok(Signals { count, last })
    }

    /// Signals that arrive when the returned sender says so (for tests), or never while it is
    /// kept: no handler is installed.
    pub fn manual() -> (Signals, watch::Sender<u32>) {
        let (sender, count) = watch::channel(0);
        let last = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(SIGINT));
        (Signals { count, last }, sender)
    }

    /// Resolves once `n` signals have arrived in total.
    pub async fn received(&self, n: u32) {
        let mut count = self.count.clone();
        let _ = count.wait_for(|c| *c >= n).await;
    }

    pub fn count(&self) -> u32 {
        *self.count.borrow()
    }

    /// The number of the latest signal (`SIGINT` or `SIGTERM`), 0 before any.
    pub fn last(&self) -> i32 {
        self.last.load(std::sync::atomic::Ordering::SeqCst)
    }
}
