//! How a bollard error becomes a [`BackendError`]: a connection that failed is the engine
//! unreachable, a request that timed out is an engine that stopped answering, a 404 about the
//! object asked for is [`BackendError::NotFound`], and anything else names the operation and
//! Docker's own words.

use std::time::Duration;

use bollard::errors::Error as BollardError;

use super::BackendError;
use super::connect::Origin;
use super::docker::{Docker, REQUEST_TIMEOUT};
use crate::backend::Kind;

/// The engine at `endpoint` (which came from `origin`) cannot be reached, for `reason`.
pub(super) fn unreachable(endpoint: &str, origin: &Origin, reason: String) -> BackendError {
    BackendError::Unreachable {
        backend: Kind::Docker,
        endpoint: endpoint.to_owned(),
        origin: origin.to_string(),
        reason,
        hint: origin.hint(),
    }
}

impl Docker {
    pub(super) fn unreachable(&self, error: &BollardError) -> BackendError {
        unreachable(&self.endpoint, &self.origin, describe(error))
    }

    /// The error for a failed `operation`: unreachable when the connection failed, no answer
    /// when the request timed out.
    pub(super) fn failed(
        &self,
        operation: impl Into<String>,
        error: &BollardError,
    ) -> BackendError {
        if is_connection_error(error) {
            self.unreachable(error)
        } else if matches!(error, BollardError::RequestTimeoutError) {
            BackendError::NoAnswer {
                backend: Kind::Docker,
                endpoint: self.endpoint.clone(),
                operation: operation.into(),
                waited: REQUEST_TIMEOUT,
            }
        } else {
            BackendError::operation(operation, describe(error))
        }
    }

    /// Like [`Docker::failed`], with 404 meaning that the `kind` object `name` does not exist,
    /// unless Docker's message names something else (starting a container whose network is
    /// gone answers 404 "network … not found").
    pub(super) fn failed_on(
        &self,
        kind: &'static str,
        name: &str,
        operation: impl Into<String>,
        error: &BollardError,
    ) -> BackendError {
        let text = message(error).to_lowercase();
        if status(error) == Some(404) && (text.is_empty() || text.contains(kind)) {
            BackendError::NotFound {
                kind,
                name: name.to_owned(),
            }
        } else {
            self.failed(operation, error)
        }
    }
}

/// The HTTP status of an error answer.
pub(super) fn status(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Docker's `message` of an error answer, or the empty string.
pub(super) fn message(error: &BollardError) -> &str {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Whether the error says that the engine could not be reached at all.
pub(super) fn is_connection_error(error: &BollardError) -> bool {
    match error {
        BollardError::SocketNotFoundError(_) => true,
        BollardError::HyperLegacyError { err } => err.is_connect(),
        BollardError::IOError { err } => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// A one-line account of a bollard error: Docker's message, or the root cause.
pub(super) fn describe(error: &BollardError) -> String {
    let text = match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            if message.trim().is_empty() {
                format!("the engine answered with HTTP status {status_code}")
            } else {
                message.clone()
            }
        }
        BollardError::DockerStreamError { error } => error.clone(),
        BollardError::DockerContainerWaitError { error, code } => {
            if error.is_empty() {
                format!("exit code {code}")
            } else {
                error.clone()
            }
        }
        BollardError::SocketNotFoundError(path) => format!("no socket at {path}"),
        BollardError::RequestTimeoutError => "the engine did not answer in time".into(),
        BollardError::APIVersionParseError {} => {
            "the answer to /version has no API version: is this a Docker engine?".into()
        }
        other => root_cause(other),
    };
    text.trim().to_owned()
}

/// The innermost error of the chain, which names the cause ("Connection refused") where the
/// outer ones name the layer ("client error (Connect)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

pub(super) fn no_answer(waited: Duration) -> String {
    format!(
        "the engine did not answer within {} seconds",
        waited.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let server = BollardError::DockerResponseServerError {
            status_code: 409,
            message: "Conflict. The container name \"/x\" is already in use\n".into(),
        };
        assert_eq!(
            describe(&server),
            "Conflict. The container name \"/x\" is already in use"
        );
        assert_eq!(status(&server), Some(409));
        assert!(!is_connection_error(&server));
        let missing = BollardError::SocketNotFoundError("/nonexistent.sock".into());
        assert!(is_connection_error(&missing));
        assert_eq!(describe(&missing), "no socket at /nonexistent.sock");
    }
}
