//! SIGINT and SIGTERM as a counter: the first asks for a graceful rollback, the second for a
//! fast one (kill instead of stop), like docker-compose and kube-rs controllers.

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Counts the interrupt signals received since [`Signals::listen`].
#[derive(Clone)]
pub struct Signals {
    count: watch::Receiver<u32>,
    last: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

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
                let received = tokio::select! {
                    _ = interrupt.recv() => Signal::SIGINT,
                    _ = terminate.recv() => Signal::SIGTERM,
                };
                record.store(received as i32, std::sync::atomic::Ordering::SeqCst);
                sender.send_modify(|n| *n += 1);
            }
        });
        Ok(Signals { count, last })
    }

    /// Signals that arrive when the returned sender says so (for tests), or never while it is
    /// kept: no handler is installed.
    pub fn manual() -> (Signals, watch::Sender<u32>) {
        let (sender, count) = watch::channel(0);
        let last = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(Signal::SIGINT as i32));
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

    /// The latest signal (`SIGINT` or `SIGTERM`), `None` before any.
    pub fn last(&self) -> Option<Signal> {
        Signal::try_from(self.last.load(std::sync::atomic::Ordering::SeqCst)).ok()
    }
}
