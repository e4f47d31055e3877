//! How a bollard error becomes a [`BackendError`] for the Docker backend: a connection that
//! failed is the engine unreachable, a request that timed out is an engine that stopped
//! answering, a 404 about the object asked for is [`BackendError::NotFound`], and anything else
//! names the operation and Docker's own words (read by [`crate::backend::bollard::error`]).

use bollard::errors::Error as BollardError;

use super::BackendError;
use super::docker::{Docker, REQUEST_TIMEOUT};
use crate::backend::BackendKind;
use crate::backend::bollard::connect::Origin;
use crate::backend::bollard::error::{describe, is_connection_error, message, status};

/// The engine at `endpoint` (which came from `origin`) cannot be reached, for `reason`.
pub(super) fn unreachable(endpoint: &str, origin: &Origin, reason: String) -> BackendError {
    refused(endpoint, origin, reason, origin.hint())
}

/// The engine at `endpoint` cannot be used, for `reason`, and `hint` says what to change.
pub(super) fn refused(
    endpoint: &str,
    origin: &Origin,
    reason: String,
    hint: String,
) -> BackendError {
    BackendError::Unreachable {
        backend: BackendKind::Docker,
        endpoint: endpoint.to_owned(),
        origin: origin.to_string(),
        reason,
        hint,
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
                backend: BackendKind::Docker,
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
