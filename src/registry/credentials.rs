//! Registry credentials as the docker CLI finds them in `config.json`: `credHelpers` for the
//! registry, else `credsStore`, else the inline `auths` entry. A helper is the program
//! `docker-credential-NAME`, asked with `get` and the server address on its standard input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::reference::DOCKER_HUB;

/// The key Docker Hub's credentials are stored under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// A helper may unlock a keychain, but must not hold a start forever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a registry is sent. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth refresh token (`docker login` to some registries stores one).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// Credentials found for a registry, and the server address they are stored under (which the
/// Docker engine wants back in `X-Registry-Auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub server: String,
    pub credential: Credential,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read `{}`: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error(
        "the credential helper `{program}` for `{registry}` is not installed\n\
         hint: install it, or remove it from `credsStore`/`credHelpers` in `{}`",
        config.display()
    )]
    MissingHelper {
        program: String,
        registry: String,
        config: PathBuf,
    },
    #[error("the credential helper `{program}` failed for `{registry}`: {reason}")]
    Helper {
        program: String,
        registry: String,
        reason: String,
    },
}

/// `config.json` as far as credentials go.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The directory of `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(std::env::var_os("HOME")?).join(".docker")),
    }
}

impl DockerConfig {
    /// The user's `config.json`; an empty one when there is none, as for the docker CLI.
    pub fn load() -> Result<DockerConfig, CredentialError> {
        let Some(dir) = config_dir() else {
            return Ok(DockerConfig::default());
        };
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig::default());
            }
            Err(e) => {
                return Err(CredentialError::Config {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: PathBuf) -> Result<DockerConfig, CredentialError> {
        let mut config: DockerConfig =
            serde_json::from_str(text).map_err(|e| CredentialError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        config.path = path;
        Ok(config)
    }

    /// The helper program that holds `registry`'s credentials, if a helper does.
    fn helper_for(&self, registry: &str) -> Option<String> {
        let helper = self
            .cred_helpers
            .get(registry)
            .or(self.creds_store.as_ref())?;
        (!helper.is_empty()).then(|| format!("docker-credential-{helper}"))
    }

    /// The credentials for `registry` (`registry.example.com:5000`, or `docker.io`), if any.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Found>, CredentialError> {
        let server = match registry {
            DOCKER_HUB => DOCKER_HUB_KEY.to_string(),
            other => other.to_string(),
        };
        if let Some(program) = self.helper_for(registry) {
            return helper_get(&program, &server, registry, &self.path).await;
        }
        Ok(self.inline(registry))
    }

    /// An `auths` entry: the key is the registry, or a URL of it (`https://host/v2/`).
    fn inline(&self, registry: &str) -> Option<Found> {
        let hosts: &[&str] = match registry {
            DOCKER_HUB => &["index.docker.io", "docker.io", "registry-1.docker.io"],
            other => &[other],
        };
        let (key, entry) = self
            .auths
            .iter()
            .find(|(key, _)| registry == DOCKER_HUB && key.as_str() == DOCKER_HUB_KEY)
            .or_else(|| self.auths.iter().find(|(key, _)| key.as_str() == registry))
            .or_else(|| {
                self.auths
                    .iter()
                    .find(|(key, _)| hosts.contains(&key_host(key)))
            })?;
        let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let credential = if let Some(token) = text(&entry.identitytoken) {
            Credential::IdentityToken(token)
        } else if let Some(auth) = text(&entry.auth) {
            let decoded = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                .decode(auth.trim())
                .ok()?;
            let (username, password) = String::from_utf8(decoded)
                .ok()?
                .split_once(':')
                .map(|(user, password)| (user.to_string(), password.to_string()))?;
            Credential::Basic { username, password }
        } else {
            Credential::Basic {
                username: text(&entry.username)?,
                password: text(&entry.password).unwrap_or_default(),
            }
        };
        Some(Found {
            server: key.clone(),
            credential,
        })
    }
}

/// The host of an `auths` key: `https://registry.example.com/v2/` → `registry.example.com`.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks a credential helper. "Not found" is no credentials, as for the docker CLI.
async fn helper_get(
    program: &str,
    server: &str,
    registry: &str,
    config: &std::path::Path,
) -> Result<Option<Found>, CredentialError> {
    let failed = |reason: String| CredentialError::Helper {
        program: program.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let mut child = match tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CredentialError::MissingHelper {
                program: program.to_string(),
                registry: registry.to_string(),
                config: config.to_path_buf(),
            });
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is answered by its exit status below.
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            failed(format!(
                "no answer within {}",
                humantime::format_duration(HELPER_TIMEOUT)
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(failed(format!("it exited with {}: {said}", output.status)));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .map_err(|e| failed(format!("its answer is not the helper protocol's JSON: {e}")))?;
    let credential = match answer.username.as_str() {
        "<token>" => Credential::IdentityToken(answer.secret),
        _ => Credential::Basic {
            username: answer.username,
            password: answer.secret,
        },
    };
    Ok(Some(Found {
        server: server.to_string(),
        credential,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> DockerConfig {
        DockerConfig::parse(&json.to_string(), "config.json".into()).unwrap()
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn inline_auths_match_by_registry_or_by_url() {
        let auth = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let config = config(serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": { "auth": auth("hub:secret") },
                "localhost:5000": { "auth": auth("local:pass:word") },
                "https://registry.example.com/v2/": { "auth": auth("ex:pw") },
                "token.example.com": { "identitytoken": "refresh" },
                "split.example.com": { "username": "u", "password": "p" },
            }
        }));
        let get = |registry: &'static str| {
            let config = &config;
            async move { config.lookup(registry).await.unwrap() }
        };
        let hub = get("docker.io").await.unwrap();
        assert_eq!(hub.server, DOCKER_HUB_KEY);
        assert_eq!(hub.credential, basic("hub", "secret"));
        assert_eq!(
            get("localhost:5000").await.unwrap().credential,
            basic("local", "pass:word"),
            "only the first `:` separates"
        );
        let example = get("registry.example.com").await.unwrap();
        assert_eq!(example.server, "https://registry.example.com/v2/");
        assert_eq!(
            get("token.example.com").await.unwrap().credential,
            Credential::IdentityToken("refresh".into())
        );
        assert_eq!(
            get("split.example.com").await.unwrap().credential,
            basic("u", "p")
        );
        assert!(get("other.example.com").await.is_none());
    }

    #[test]
    fn a_registry_helper_wins_over_the_store() {
        let config = config(serde_json::json!({
            "credsStore": "desktop",
            "credHelpers": { "registry.example.com": "ecr-login" },
        }));
        assert_eq!(
            config.helper_for("registry.example.com").as_deref(),
            Some("docker-credential-ecr-login")
        );
        assert_eq!(
            config.helper_for("localhost:5000").as_deref(),
            Some("docker-credential-desktop")
        );
        assert_eq!(self::config(serde_json::json!({})).helper_for("x"), None);
    }

    #[tokio::test]
    async fn a_missing_helper_is_named_with_the_config_that_names_it() {
        let config = config(serde_json::json!({ "credsStore": "envctl-test-no-such" }));
        let error = config.lookup("localhost:5000").await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("`docker-credential-envctl-test-no-such`")
                && message.contains("hint: install it"),
            "{message}"
        );
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let text = format!("{:?}", basic("me", "hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
        let text = format!("{:?}", Credential::IdentityToken("tok".into()));
        assert!(!text.contains("tok"), "{text}");
    }

    #[test]
    fn an_unreadable_config_is_an_error() {
        assert!(DockerConfig::parse("not json", "c.json".into()).is_err());
    }
}
