//! Environments on an engine: start, inspect, stop and remove them.

pub mod admission;
mod attempt;
mod bounded;
mod build;
mod images;
pub mod inventory;
pub mod lease;
#[cfg(test)]
mod on_fake;
pub mod pause;
mod pin;
pub mod pool;
#[cfg(test)]
mod pool_on_fake;
pub mod probe;
pub mod process;
mod recorded;
pub mod refs;
mod restart;
pub mod scheduler;
mod starting;
mod teardown;
mod up;
pub mod update;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

pub use bounded::{AFTER_INTERRUPT, Bounded};
pub use build::{BuildError, build_environment};
pub use inventory::{Instance, State};
pub use pause::{pause, resume};
pub use pin::{pin, unpin};
pub use recorded::Recorded;
pub use restart::start;
pub use teardown::{Cleanup, TeardownError, down, remove, remove_now, stop};
pub use up::{PoolUse, Started, StartedPort, StartedService, UpOptions, UpOutcome, run_nonce, up};
pub use update::{RestoreError, Restored, UpdateError, UpdateOptions, Updated, update};

use crate::backend::{Backend, BackendError, ServiceRef, ServiceStatus};

/// What `up` and `start` report about each service as it moves along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Pulling,
    /// Pulling, with the bytes so far of the layers announced so far.
    Downloading {
        done: u64,
        total: u64,
    },
    Building,
    Creating,
    Starting,
    Ready,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Pulling | Phase::Downloading { .. } => "pulling",
            Phase::Building => "building",
            Phase::Creating => "creating",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
        }
    }
}

/// Receives progress events: `(service, phase)`.
pub type Progress = Arc<dyn Fn(&str, Phase) + Send + Sync>;

/// Why an environment did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("service `{service}`: {message}")]
    Image { service: String, message: String },
    /// `SERVICE@REF` names no single tag, or its tags could not be listed.
    #[error("service `{service}`: {error}")]
    Ref {
        service: String,
        error: Box<refs::RefError>,
    },
    /// `tcp:` or `http:` probes of ports the file does not publish, where the backend knows
    /// before anything is created that nothing can answer them.
    #[error(
        "{} probed but not published, and {reason}\nhint: add {} to `ports:`, or probe with `ready: exec:`",
        format_probes(probes),
        match probes.len() { 1 => "it", _ => "them" }
    )]
    Unprobeable {
        /// Each service and its port, by service name.
        probes: Vec<(String, u16)>,
        reason: String,
    },
    #[error(
        "the environment id `{0}` is already in use\nhint: pick another `--name`, or `envctl down {0}` first"
    )]
    IdTaken(String),
    #[error("service `{service}` failed: {reason}{}", format_logs(container, logs))]
    Service {
        service: String,
        container: String,
        reason: String,
        logs: Vec<String>,
    },
    #[error(
        "the environment was not ready within {}{}{}\n{}",
        humantime::format_duration(*timeout),
        format_pending(pending),
        logs.as_ref().map(|(container, lines)| format_logs(container, lines)).unwrap_or_default(),
        crate::reach::timeout_hint(unanswered.as_deref())
    )]
    Timeout {
        timeout: Duration,
        /// Services not ready yet, with their phase.
        pending: Vec<(String, Phase)>,
        /// The log of the first service that was starting.
        logs: Option<(String, Vec<String>)>,
        /// An address a probe tried that did not answer from here: the likelier cause.
        unanswered: Option<String>,
    },
    #[error(
        "service `{service}` of `{id}` is missing: its container was removed\n\
         hint: `envctl down {id}`, then `envctl up` recreates the environment"
    )]
    Missing { id: String, service: String },
    #[error("environment `{0}` was removed by someone else while it was starting")]
    RemovedMeanwhile(String),
    /// What the rollback removed and left.
    #[error("interrupted; {0}")]
    Interrupted(Box<Cleanup>),
    #[error(transparent)]
    Admission(Box<admission::AdmissionError>),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<admission::AdmissionError> for StartError {
    fn from(error: admission::AdmissionError) -> StartError {
        StartError::Admission(Box::new(error))
    }
}

impl StartError {
    /// Whether the user can fix this by changing the command line.
    pub fn is_bad_input(&self) -> bool {
        match self {
            StartError::Admission(error) => error.is_bad_input(),
            StartError::IdTaken(_) => true,
            StartError::Ref { error, .. } => error.is_bad_input(),
            _ => false,
        }
    }
}

/// `port 61616 of `broker` is`, or `port 61616 of `broker` and port 8080 of `app` are`.
fn format_probes(probes: &[(String, u16)]) -> String {
    let each: Vec<String> = probes
        .iter()
        .map(|(service, port)| format!("port {port} of `{service}`"))
        .collect();
    match each.as_slice() {
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
        [] => "no port is".into(),
    }
}

fn format_pending(pending: &[(String, Phase)]) -> String {
    if pending.is_empty() {
        return String::new();
    }
    let services: Vec<String> = pending
        .iter()
        .map(|(service, phase)| format!("`{service}` ({})", phase.as_str()))
        .collect();
    format!(": still waiting for {}", services.join(", "))
}

fn format_logs(container: &str, logs: &[String]) -> String {
    if logs.is_empty() {
        return format!("\n  (`{container}` printed nothing)");
    }
    let mut out = match logs.len() {
        1 => format!("\n  last line of `{container}`:"),
        n => format!("\n  last {n} lines of `{container}`:"),
    };
    for line in logs {
        out.push_str("\n  | ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_log_line_is_the_last_line_not_the_last_1_lines() {
        let one = super::format_logs("app_x", &["boom".into()]);
        assert_eq!(one, "\n  last line of `app_x`:\n  | boom");
        let two = super::format_logs("app_x", &["a".into(), "b".into()]);
        assert!(two.starts_with("\n  last 2 lines of `app_x`:"), "{two}");
    }
}

/// How long reading the last lines of a log for an error message may take.
const LOG_READ_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// How many of a service's last log lines an error about it shows.
pub const FAILURE_LOG_LINES: u64 = 20;

/// The last `n` lines a service printed, for error messages; empty when they cannot be read.
pub async fn last_service_lines(
    backend: &dyn Backend,
    service: &ServiceRef,
    n: u64,
) -> Vec<String> {
    let options = crate::backend::LogOptions {
        tail: Some(n),
        ..Default::default()
    };
    let reading = backend
        .logs(service, options)
        .filter_map(|line| async move { line.ok().map(|l| l.text) })
        .collect();
    // A diagnosis must not outlast the failure it explains: a hung engine gives no lines.
    tokio::time::timeout(LOG_READ_BOUND, reading)
        .await
        .unwrap_or_default()
}

/// The full status of each of the environment's services beyond the listing (restarts, times,
/// the direct address), in the order of `instance.services`.
pub async fn statuses(
    backend: &dyn Backend,
    instance: &Instance,
) -> Result<Vec<ServiceStatus>, BackendError> {
    let inspecting = instance.services.iter().map(|s| backend.status(&s.handle));
    futures_util::future::try_join_all(inspecting).await
}

/// Looks up an environment by id, or by a unique prefix or suffix of one (`status 0723`),
/// failing with a clear message when there is none or several.
pub async fn require(backend: &dyn Backend, id: &str) -> Result<Instance, LookupError> {
    if let Some(instance) = inventory::find(backend, id).await? {
        return Ok(instance);
    }
    let mut instances = inventory::list(backend).await?;
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let chosen = inventory::resolve_id(id, &ids)?.to_string();
    let index = instances
        .iter()
        .position(|i| i.id == chosen)
        .expect("resolved among these");
    Ok(instances.swap_remove(index))
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no environment `{0}`\nhint: `envctl ls` lists the environments")]
    NoSuchEnvironment(String),
    #[error(
        "`{given}` matches several environments: {}\nhint: give more of the id",
        candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}
