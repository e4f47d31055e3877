//! The top-level error and envctl's exit codes.

use std::process::ExitCode;

use crate::backend::BackendError;
use crate::lifecycle::{BuildError, LookupError, StartError, TeardownError, UpdateError};
use crate::reaper::ReapError;
use crate::spec::LoadError;
use crate::state::StateError;

/// How envctl exits: 0 ok, 1 bad input, 2 engine or environment failure. `run` passes its
/// command's own exit code through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    BadInput,
    Failure,
    /// The exit code of a command envctl ran.
    Code(u8),
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::BadInput => ExitCode::from(1),
            ExitStatus::Failure => ExitCode::from(2),
            ExitStatus::Code(code) => ExitCode::from(code),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Bad command-line input that clap cannot catch.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// An environment or service that is not there.
    #[error("{0}")]
    NotFound(String),
    /// A service (or every service of an environment) that does not run, asked for what only
    /// a running one has: its endpoints.
    #[error("{0}")]
    NotRunning(String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Reap(#[from] ReapError),
    /// envctl's state directory (activity, reaper history) could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// envctl could not set up its handling of SIGINT and SIGTERM.
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The user interrupted a command that had nothing to undo.
    #[error("{0}")]
    Interrupted(String),
    /// A removal cut short: why, what went and what is left.
    #[error("{0}")]
    Unfinished(String),
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Load(_) | Error::Usage(_) | Error::NotFound(_) => ExitStatus::BadInput,
            Error::Start(error) if error.is_bad_input() => ExitStatus::BadInput,
            // The shell convention for "ended by SIGINT".
            Error::Start(StartError::Interrupted(_)) | Error::Interrupted(_) => {
                ExitStatus::Code(130)
            }
            Error::Update(error) if error.is_bad_input() => ExitStatus::BadInput,
            Error::Update(error) if error.is_interrupted() => ExitStatus::Code(130),
            Error::Lookup(LookupError::NoSuchEnvironment(_) | LookupError::Ambiguous { .. }) => {
                ExitStatus::BadInput
            }
            Error::Backend(_)
            | Error::NotRunning(_)
            | Error::Start(_)
            | Error::Lookup(_)
            | Error::Teardown(_)
            | Error::Update(_)
            | Error::Build(_)
            | Error::Reap(_)
            | Error::State(_)
            | Error::Signals(_)
            | Error::Runtime(_)
            | Error::Unfinished(_) => ExitStatus::Failure,
        }
    }

    /// Prints the error to stderr and returns the exit status it maps to.
    pub fn report(&self) -> ExitStatus {
        crate::output::error(&self.to_string());
        self.exit_status()
    }
}
