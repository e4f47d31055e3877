//! What a bollard error says, for the backends' [`crate::backend::BackendError`]s: whether the
//! engine could not be reached at all, its HTTP status and message, a one-line account of the
//! cause, and why a TLS handshake refused the engine's certificate.

use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;

/// Why the TLS handshake refused the engine's certificate, in words naming `ca` (the CA file
/// envctl trusted), when the reason is that CA; `None` when connecting failed otherwise.
pub fn certificate_refused(error: &BollardError, ca: &Path) -> Option<String> {
    use rustls::CertificateError as Refused;
    let ca = ca.display();
    match refused_certificate(error)? {
        Refused::UnknownIssuer | Refused::BadSignature => Some(format!(
            "the engine's certificate is not signed by the CA envctl used, `{ca}`"
        )),
        // webpki looks at the certificate itself before its issuer: a self-signed engine
        // certificate (a CA's) is refused so, whichever CA envctl trusts.
        Refused::Other(other) if other.0.to_string().contains("CaUsedAsEndEntity") => {
            Some(format!(
                "the engine's certificate is a CA's own, not one signed by the CA envctl used, \
                 `{ca}`"
            ))
        }
        _ => None,
    }
}

/// The certificate error in `error`'s chain. An `io::Error` (and bollard's transparent
/// `IOError`) hides the error it wraps from `source()`: the walk opens each one.
fn refused_certificate(error: &BollardError) -> Option<&rustls::CertificateError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = match error {
        BollardError::IOError { err } => Some(err),
        other => Some(other),
    };
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(problem)) = error.downcast_ref() {
            return Some(problem);
        }
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

/// The HTTP status of an error answer.
pub fn status(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Docker's `message` of an error answer, or the empty string.
pub fn message(error: &BollardError) -> &str {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Whether the error says that the engine could not be reached at all.
pub fn is_connection_error(error: &BollardError) -> bool {
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
pub fn describe(error: &BollardError) -> String {
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

pub fn no_answer(waited: Duration) -> String {
    format!(
        "the engine did not answer within {} seconds",
        waited.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_not_signed_by_the_ca_envctl_used_names_that_ca() {
        use rustls::{CertificateError, OtherError};
        let ca = Path::new("/certs/ca.pem");
        let refused = |problem: CertificateError| BollardError::IOError {
            err: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(problem),
            ),
        };
        let not_signed = "the engine's certificate is not signed by the CA envctl used, \
                          `/certs/ca.pem`";
        for problem in [
            CertificateError::UnknownIssuer,
            CertificateError::BadSignature,
        ] {
            let error = refused(problem);
            assert_eq!(certificate_refused(&error, ca).as_deref(), Some(not_signed));
        }
        #[derive(Debug)]
        struct CaUsedAsEndEntity;
        impl std::fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{self:?}")
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
        let self_signed = refused(CertificateError::Other(OtherError(std::sync::Arc::new(
            CaUsedAsEndEntity,
        ))));
        let reason = certificate_refused(&self_signed, ca).unwrap();
        assert!(reason.contains("`/certs/ca.pem`"), "{reason}");
        assert!(!reason.contains("CaUsedAsEndEntity"), "{reason}");
        let refused_connection = BollardError::IOError {
            err: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(certificate_refused(&refused_connection, ca), None);
    }

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
