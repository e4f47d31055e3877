//! Registry credentials for the engine's pulls: what `config.json` holds for a registry (inline,
//! or through its credential helper) as Docker's `X-Registry-Auth`, and a `docker login` hint
//! when a pull is refused for want of them; and the registries the engine does not verify.

use bollard::auth::DockerCredentials;

use crate::backend::BackendError;
use crate::registry::Credential;

/// The credentials `config.json` holds for `registry` (through its credential helper, if it
/// names one), as the engine wants them in `X-Registry-Auth`.
pub async fn registry_credentials(
    registry: &str,
) -> std::result::Result<Option<DockerCredentials>, crate::registry::credentials::CredentialError> {
    let found = crate::registry::DockerConfig::load()?
        .lookup(registry)
        .await?;
    Ok(found.map(|found| {
        let mut credentials = DockerCredentials {
            serveraddress: Some(found.server),
            ..Default::default()
        };
        match found.credential {
            Credential::Basic { username, password } => {
                credentials.username = Some(username);
                credentials.password = Some(password);
            }
            Credential::IdentityToken(token) => credentials.identitytoken = Some(token),
        }
        credentials
    }))
}

/// A refused pull, with the hint to log in to `registry`; any other error as it is.
pub fn with_login_hint(error: BackendError, registry: &str) -> BackendError {
    match error {
        BackendError::Operation { operation, reason } if is_denied(&reason) => {
            BackendError::Operation {
                operation,
                reason: format!("{reason}\nhint: `docker login {registry}`"),
            }
        }
        other => other,
    }
}

/// Whether a pull failed for want of (valid) credentials, in the engine's or registry's words.
fn is_denied(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access to the resource is denied",
        "docker login",
    ]
    .iter()
    .any(|word| reason.contains(word))
}

/// The insecure registries of `docker info`: `IndexConfigs` marked not secure, and
/// `InsecureRegistryCIDRs`.
pub fn insecure_of(config: bollard::models::RegistryServiceConfig) -> crate::registry::Insecure {
    let mut names: Vec<String> = config
        .index_configs
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, index)| index.secure == Some(false))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    crate::registry::Insecure {
        names,
        ranges: config.insecure_registry_cidrs.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_pull_is_recognised_in_the_engines_words() {
        assert!(is_denied(
            "Head \"http://127.0.0.1:5000/v2/a/manifests/1\": no basic auth credentials"
        ));
        assert!(is_denied(
            "pull access denied for a, repository does not exist or may require 'docker login'"
        ));
        assert!(is_denied("unauthorized: authentication required"));
        assert!(!is_denied("manifest for a:1 not found: manifest unknown"));
    }

    #[test]
    fn insecure_registries_are_the_ones_docker_info_marks() {
        use bollard::models::{IndexInfo, RegistryServiceConfig};
        let index = |secure| IndexInfo {
            secure: Some(secure),
            ..Default::default()
        };
        let config = RegistryServiceConfig {
            index_configs: Some(std::collections::HashMap::from([
                ("docker.io".to_string(), index(true)),
                ("registry.example.com:5000".to_string(), index(false)),
            ])),
            insecure_registry_cidrs: Some(vec!["127.0.0.0/8".into()]),
            ..Default::default()
        };
        let insecure = insecure_of(config);
        assert_eq!(insecure.names, ["registry.example.com:5000"]);
        assert_eq!(insecure.ranges, ["127.0.0.0/8"]);
        assert_eq!(
            insecure_of(RegistryServiceConfig::default()),
            crate::registry::Insecure::default()
        );
    }
}
