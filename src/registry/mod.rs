//! envctl's registry client, independent of any container engine: image references typed
//! (registry, repository, tag, digest), credentials found as the docker CLI finds them, and the
//! registry HTTP API for tag lists (`SERVICE@REF`) and manifest digests (pinning images).

mod client;
pub mod credentials;
mod insecure;
mod reference;

pub use client::Client;
pub use credentials::{Credential, DockerConfig, Found};
pub use insecure::Insecure;
pub use reference::{DOCKER_HUB, Reference};

/// Why a registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry `{registry}`: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error(
        "registry `{registry}` {} `{repository}`\nhint: `docker login {registry}`{}",
        if *with_credentials { "refused the credentials envctl found for" } else { "needs credentials for" },
        if *with_credentials { ", then try again" } else { " stores credentials where envctl finds them" }
    )]
    Unauthorized {
        registry: String,
        repository: String,
        /// Credentials were sent (and refused), rather than none found.
        with_credentials: bool,
    },
    #[error("registry `{registry}` has no {what}")]
    NotFound { registry: String, what: String },
    #[error("registry `{registry}`: failed to {operation}: {reason}")]
    Protocol {
        registry: String,
        operation: String,
        reason: String,
    },
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
}

impl RegistryError {
    /// Whether the user can fix it (credentials, a name): as opposed to an unreachable or
    /// broken registry.
    pub fn is_authentication(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }
}

/// The tags of `reference`'s repository, with the credentials `config.json` holds for its
/// registry.
pub async fn tags(
    reference: &Reference,
    insecure: &Insecure,
) -> Result<Vec<String>, RegistryError> {
    connect(reference, insecure).await?.tags(reference).await
}

/// The manifest digest of `reference`, with the credentials `config.json` holds for its
/// registry.
pub async fn manifest_digest(
    reference: &Reference,
    insecure: &Insecure,
) -> Result<String, RegistryError> {
    connect(reference, insecure)
        .await?
        .manifest_digest(reference)
        .await
}

/// A client for `reference`'s registry with the credentials found for it; plain HTTP and
/// untrusted certificates are accepted from a registry that `insecure` covers, and plain HTTP
/// from one on this machine.
pub async fn connect(reference: &Reference, insecure: &Insecure) -> Result<Client, RegistryError> {
    let found = DockerConfig::load()?.lookup(&reference.registry).await?;
    let insecure = insecure.covers(&reference.registry).await;
    Client::new(reference, found.map(|f| f.credential), insecure)
}
