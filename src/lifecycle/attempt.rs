//! One attempt at bringing an environment where it should be (`up`, `update`, `start`): its
//! deadline, the race of each step with that deadline and the first interrupt, the notice of
//! that interrupt and the exit on the second, the bounded aftermath, the watch for a removal
//! meanwhile, and the one diagnosis of a timeout. `up`, `update` and `start` are scripts over
//! it.

use std::time::Duration;

use tokio::time::Instant;

use super::bounded::Bounded;
use super::starting::Phases;
use super::{Phase, StartError};
use crate::backend::{Backend, BackendError, Selector};
use crate::signals::Signals;

/// How long each engine call of what follows an attempt (a rollback, a restore, the diagnosis
/// of a timeout) may take, a stop its grace on top: the attempt is over, and a working engine
/// answers these at once.
pub(super) const AFTERMATH_CALL: Duration = Duration::from_secs(5);

/// How long a failed attempt watches for the environment to vanish: `down` removes each
/// container right after it stopped it, which is what made the service fail.
pub(super) const REMOVAL_WINDOW: Duration = Duration::from_millis(1500);

/// The limits of one attempt: `timeout` from its start (less what it waited in the admission
/// queue after it), and the first interrupt.
pub(super) struct Attempt<'a> {
    pub signals: &'a Signals,
    pub timeout: Duration,
    deadline: std::sync::Mutex<Instant>,
}

impl<'a> Attempt<'a> {
    pub fn new(signals: &'a Signals, timeout: Duration) -> Attempt<'a> {
        Attempt {
            signals,
            timeout,
            deadline: std::sync::Mutex::new(deadline_from_now(timeout)),
        }
    }

    /// When the attempt runs out of time.
    pub fn deadline(&self) -> Instant {
        *self.deadline.lock().expect("deadline lock")
    }

    /// Moves the deadline `by` later: a start that waited in the admission queue once more
    /// does not use up its `timeout` there, as it does not before its admission. What
    /// [`Attempt::within`] returned before keeps the old deadline.
    pub fn extend(&self, by: Duration) {
        let mut deadline = self.deadline.lock().expect("deadline lock");
        *deadline = deadline.checked_add(by).unwrap_or_else(far_future);
    }

    /// Runs `step` until it ends, the deadline passes or the first interrupt comes.
    pub async fn bound<T>(
        &self,
        step: impl Future<Output = Result<T, StartError>>,
    ) -> Result<T, StartError> {
        if self.signals.count() > 0 {
            return Err(StartError::Interrupted(Box::default()));
        }
        tokio::select! {
            result = tokio::time::timeout_at(self.deadline(), step) => {
                result.unwrap_or_else(|_| Err(self.timed_out()))
            }
            () = self.signals.received(1) => Err(StartError::Interrupted(Box::default())),
        }
    }

    /// `backend`, each call bounded by the deadline (and shortly after an interrupt), but never
    /// dropped by one: for creates, which the engine may carry out after their request is gone.
    pub fn within<'b>(&self, backend: &'b dyn Backend) -> Bounded<'b>
    where
        'a: 'b,
    {
        Bounded {
            backend,
            deadline: Some(self.deadline()),
            per_call: None,
            signals: self.signals,
        }
    }

    /// `backend` for what follows the attempt: [`AFTERMATH_CALL`] a call, and all of it
    /// until `until` if given.
    pub fn aftermath<'b>(&self, backend: &'b dyn Backend, until: Option<Instant>) -> Bounded<'b>
    where
        'a: 'b,
    {
        Bounded {
            backend,
            deadline: until,
            per_call: Some(AFTERMATH_CALL),
            signals: self.signals,
        }
    }

    /// The bare timeout, before [`Attempt::diagnose`] says what it waited for.
    pub fn timed_out(&self) -> StartError {
        StartError::Timeout {
            timeout: self.timeout,
            pending: Vec::new(),
            logs: None,
            unanswered: None,
        }
    }

    /// `error`, or, when the attempt ran out of time (a timeout, or a call the deadline cut
    /// short), the one diagnosis of a timeout: what it was still waiting for, with the log of
    /// the first service it was starting among those `selector` lists; or, when the engine
    /// does not answer a ping, that error: a hung engine is not a slow environment.
    /// `backend` bounds each call.
    pub async fn diagnose(
        &self,
        error: StartError,
        backend: &dyn Backend,
        selector: &Selector,
        phases: &Phases,
    ) -> StartError {
        match error {
            StartError::Timeout { .. } => {}
            StartError::Backend(BackendError::NoAnswer { .. })
                if Instant::now() >= self.deadline() => {}
            other => return other,
        }
        if let Err(error) = backend.ping().await
            && error.is_engine_down()
        {
            return error.into();
        }
        let pending = phases.pending();
        let mut logs = None;
        if let Some((service, Phase::Starting)) = pending.first()
            && let Ok(records) = backend.list(selector).await
            && let Some(record) = records
                .iter()
                .flat_map(|r| &r.services)
                .find(|s| s.service() == service)
        {
            let lines =
                super::last_service_lines(backend, &record.handle, super::FAILURE_LOG_LINES).await;
            logs = Some((record.handle.name.clone(), lines));
        }
        StartError::Timeout {
            timeout: self.timeout,
            pending,
            logs,
            unanswered: backend.reach().unanswered(),
        }
    }

    /// Runs `work` to its end, telling `notice` of the first interrupt at once (what that
    /// interrupt undoes, `work` does); the second interrupt gives `work` up for `forced`.
    pub async fn guard<T>(
        &self,
        work: impl Future<Output = T>,
        notice: impl FnOnce(),
        forced: impl Future<Output = T>,
    ) -> T {
        let first = async {
            self.signals.received(1).await;
            notice();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            outcome = work => outcome,
            () = first => unreachable!("the notice never ends"),
            // Dropping `work` gives up whatever it waited for.
            () = self.signals.received(2) => forced.await,
        }
    }
}

/// What `look` finds once it sees a removal (`Some`), watching for [`REMOVAL_WINDOW`]; `None`
/// when it saw none, or could not look.
pub(super) async fn removal_seen<T, F>(mut look: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<Option<T>>>,
{
    let until = Instant::now() + REMOVAL_WINDOW;
    loop {
        if let Some(seen) = look().await? {
            return Some(seen);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deadline_from_now(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(far_future)
}

/// An instant no attempt reaches, for timeouts too large to add to now.
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}
