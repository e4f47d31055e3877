//! The idle reaper: one pass that stops environments nobody used for a while, removes them
//! later, and collects the debris of killed starts. `envctl reap` runs one pass (cron);
//! `envctl reaper` runs passes in a loop (a daemon).
//!
//! A pass observes every environment (labels, states, traffic counters), decides per
//! environment with [`decide`] (a pure function of the observation, the remembered record and
//! the clock), saves what it learned, then acts. It never touches resources without envctl's
//! labels, pinned environments, or environments created or used after the pass began.
//!
//! Activity is an envctl command on the environment (`up`, `start`, `touch`, `logs`, `status`,
//! `run`), its creation, or inbound traffic: between two samples, the bytes received by its
//! entry services (those that publish ports) exceed, by more than [`NOISE_BYTES`], the bytes
//! sent by its other services. Traffic between the environment's own containers (a connection
//! pool pinging the database, heartbeats) is sent by one of them, so it cancels out; envctl's
//! readiness probes only run during `up` and `start`, which count as activity themselves.
//! Traffic between two entry services counts, the safe direction.

mod pass;
mod rules;

pub use pass::{daemon, pass};
pub use rules::{
    ActionKind, Cause, Keep, NOISE_BYTES, NOISE_RATE, Observation, Reason, Seen, Traffic, Verdict,
    decide,
};

use std::time::Duration;

use crate::backend::BackendError;
use crate::state::StateError;

/// The thresholds of a pass.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop environments without activity for this long.
    pub idle: Duration,
    /// Pause environments without activity for this long, before `idle` stops them; `None`
    /// when off, or when the backend cannot pause.
    pub pause_after: Option<Duration>,
    /// Remove environments stopped for this long.
    pub remove_after: Duration,
    /// Stop environments older than this, whatever their activity.
    pub max_age: Option<Duration>,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
    /// Only environments of this name.
    pub environment: Option<String>,
    /// Stop environments `envctl gateway` flagged for their error rate.
    pub stop_erroring: bool,
}

/// What a pass did, or would do, to one environment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub action: ActionKind,
    pub id: String,
    pub environment: String,
    /// `accounting@ea6757a8090d`, or the environment's name.
    pub subject: String,
    pub reason: Reason,
    /// Set when acting failed.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub dry_run: bool,
    pub actions: Vec<Action>,
    /// Problems that did not stop the pass: a corrupted state file, an unreadable counter.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    State(#[from] StateError),
}
