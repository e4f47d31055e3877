//! The registry HTTP API (distribution v2): tag lists and manifest digests, with Basic
//! credentials or the bearer-token flow a `WWW-Authenticate` challenge asks for.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::RegistryError;
use super::credentials::Credential;
use super::reference::Reference;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, a page of tags or a token; a tag list is many of them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A registry whose `Link`s never end is not followed forever.
const MAX_PAGES: usize = 1000;
/// Tags asked for per page; registries may send fewer, and say where the rest is.
const PAGE_SIZE: usize = 1000;
/// What the manifest endpoint may answer with: lists and indexes first, so a multi-platform
/// image is pinned by its list's digest.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// A client for one registry, with the credentials envctl found for it.
pub struct Client {
    http: reqwest::Client,
    registry: String,
    host: String,
    /// Plain HTTP is tried for a registry on this machine or an insecure one, as Docker does.
    plain_http_allowed: bool,
    credential: Option<Credential>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `http` once HTTPS failed to connect to a loopback registry.
    scheme: Option<&'static str>,
    /// The `Authorization` header that worked, per scope.
    authorization: BTreeMap<String, String>,
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Client {
    /// A client for the registry of `reference`. An `insecure` registry (as the engine was
    /// told) may answer over plain HTTP or with an untrusted certificate, as Docker allows it.
    pub fn new(
        reference: &Reference,
        credential: Option<Credential>,
        insecure: bool,
    ) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("envctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                registry: reference.registry.clone(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            http,
            registry: reference.registry.clone(),
            host: reference.api_host().to_string(),
            plain_http_allowed: insecure || reference.is_loopback(),
            credential,
            state: Mutex::new(State::default()),
        })
    }

    /// Every tag of the repository, following the registry's `Link` pages, sorted.
    pub async fn tags(&self, reference: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let scope = pull_scope(reference);
        let mut path = format!("/v2/{}/tags/list?n={PAGE_SIZE}", reference.repository);
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .send(Method::GET, &path, &scope, None, reference)
                .await?;
            let next = next_link(response.headers());
            let page: Page = response.json().await.map_err(|e| {
                self.protocol(
                    format!("list the tags of `{}`", reference.repository),
                    format!("the answer is not a tag list: {e}"),
                )
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => path = next,
                None => {
                    tags.sort();
                    tags.dedup();
                    return Ok(tags);
                }
            }
        }
        Err(self.protocol(
            format!("list the tags of `{}`", reference.repository),
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// The digest of the manifest `reference` names (its digest, tag, or `latest`), as the
    /// registry computes it: what pins an image for nodes that pull it themselves.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<String, RegistryError> {
        let scope = pull_scope(reference);
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository,
            reference.manifest_reference()
        );
        let response = self
            .send(Method::HEAD, &path, &scope, Some(MANIFEST_TYPES), reference)
            .await?;
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                self.protocol(
                    format!("read the digest of `{reference}`"),
                    "the registry sent no `Docker-Content-Digest`",
                )
            })
    }

    /// Sends a request, answering an authentication challenge once.
    async fn send(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        accept: Option<&str>,
        reference: &Reference,
    ) -> Result<reqwest::Response, RegistryError> {
        let known = self.state().authorization.get(scope).cloned();
        let response = self
            .request(method.clone(), path, accept, known.as_deref())
            .await?;
        let response = match response.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let Some(challenge) = challenge else {
                    return Err(self.unauthorized(reference));
                };
                let authorization = self.authorize(&challenge, scope, reference).await?;
                let retried = self
                    .request(method.clone(), path, accept, Some(&authorization))
                    .await?;
                if retried.status() != StatusCode::UNAUTHORIZED {
                    self.state()
                        .authorization
                        .insert(scope.to_string(), authorization);
                }
                retried
            }
            _ => response,
        };
        match response.status() {
            status if status.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.unauthorized(reference)),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                what: match path.contains("/manifests/") {
                    true => format!(
                        "manifest `{}` in `{}`",
                        reference.manifest_reference(),
                        reference.repository
                    ),
                    false => format!("repository `{}`", reference.repository),
                },
            }),
            status => Err(self.protocol(
                format!("{method} {path}"),
                format!("the registry answered {status}"),
            )),
        }
    }

    /// The `Authorization` header that answers `challenge`.
    async fn authorize(
        &self,
        challenge: &Challenge,
        scope: &str,
        reference: &Reference,
    ) -> Result<String, RegistryError> {
        match challenge {
            Challenge::Basic => match &self.credential {
                Some(Credential::Basic { username, password }) => {
                    Ok(basic_header(username, password))
                }
                _ => Err(self.unauthorized(reference)),
            },
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let scope = asked.as_deref().unwrap_or(scope);
                let token = self
                    .token(realm, service.as_deref(), scope, reference)
                    .await?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// A token from the registry's token server, anonymous or with the credentials.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        reference: &Reference,
    ) -> Result<String, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let request = match &self.credential {
            // An identity token is an OAuth refresh token: exchanged by POST.
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("client_id", "envctl"),
                    ("refresh_token", refresh.as_str()),
                ]);
                self.http.post(realm).form(&form)
            }
            Some(Credential::Basic { username, password }) => self
                .http
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.http.get(realm).query(&query),
        };
        let operation = || format!("get a token from `{realm}`");
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: self.registry.clone(),
                reason: format!("{}: {}", operation(), describe(&e)),
            })?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthorized(reference));
            }
            status => {
                return Err(self.protocol(operation(), format!("it answered {status}")));
            }
        }
        let token: Token = response
            .json()
            .await
            .map_err(|e| self.protocol(operation(), format!("the answer is not a token: {e}")))?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.protocol(operation(), "the answer holds no token"))
    }

    /// One request over HTTPS, or plain HTTP for a loopback registry that does not speak TLS.
    async fn request(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let scheme = self.state().scheme.unwrap_or("https");
        let result = self
            .attempt(method.clone(), scheme, path, accept, authorization)
            .await;
        match result {
            Err(error) if scheme == "https" && self.plain_http_allowed && !error.is_timeout() => {
                tracing::debug!("HTTPS to `{}` failed ({error}); trying HTTP", self.host);
                let response = self
                    .attempt(method, "http", path, accept, authorization)
                    .await
                    .map_err(|e| self.unreachable(&e))?;
                self.state().scheme = Some("http");
                Ok(response)
            }
            Err(error) => Err(self.unreachable(&error)),
            Ok(response) => {
                self.state().scheme = Some(scheme);
                Ok(response)
            }
        }
    }

    async fn attempt(
        &self,
        method: Method,
        scheme: &str,
        path: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{scheme}://{}{path}", self.host));
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request.send().await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry client lock")
    }

    fn unauthorized(&self, reference: &Reference) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: reference.repository.clone(),
            with_credentials: self.credential.is_some(),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            reason: describe(error),
        }
    }

    fn protocol(&self, operation: impl Into<String>, reason: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.clone(),
            operation: operation.into(),
            reason: reason.into(),
        }
    }
}

/// The scope a pull needs: `repository:team/app:pull`.
fn pull_scope(reference: &Reference) -> String {
    format!("repository:{}:pull", reference.repository)
}

fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// A reqwest error with its causes, which say what actually went wrong (`connection refused`).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "no answer in time".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The path of the `rel="next"` page of a `Link` header, if there is one.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            // An absolute link keeps only its path: the host is the registry's.
            let path = match target.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => target,
            };
            (is_next && path.starts_with('/')).then(|| path.to_string())
        })
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((header.trim(), ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => match after.find(',') {
                Some(comma) => (&after[..comma], &after[comma..]),
                None => (after, ""),
            },
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/postgres:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/postgres:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="http://127.0.0.1:9/token", service=reg"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(next_link(&headers), None);
        headers.insert(
            LINK,
            r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("/v2/team/app/tags/list?last=b&n=2")
        );
        headers.insert(
            LINK,
            r#"<https://r.example.com/v2/a/tags/list?last=c>; rel="next", </x>; rel="prev""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("/v2/a/tags/list?last=c")
        );
        headers.insert(LINK, r#"</x>; rel="prev""#.parse().unwrap());
        assert_eq!(next_link(&headers), None);
    }
}
