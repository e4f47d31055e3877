//! Image references as registries see them: registry host, repository, tag, digest.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The registry of images named without one (`postgres`, `team/app`).
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("valid regex"));
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("valid regex"));
static DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$").expect("valid regex")
});

/// `registry.example.com:5000/team/app:1.2@sha256:…`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `registry.example.com:5000`, or [`DOCKER_HUB`].
    pub registry: String,
    /// The path under the registry: `team/app`; `library/postgres` on Docker Hub.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference as Docker does: the first path component is a registry when it
    /// has a `.` or a `:`, or is `localhost`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let invalid = |why: &str| format!("`{text}` is not a valid image reference: {why}");
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) if DIGEST.is_match(digest) => (name, Some(digest.to_string())),
            Some(_) => return Err(invalid("the digest is not `ALGORITHM:HEX`")),
            None => (text, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].find(':') {
            Some(colon) => {
                let tag = &name[last_slash + colon + 1..];
                if !TAG.is_match(tag) {
                    return Err(invalid(
                        "the tag is not 1 to 128 letters, digits, `_`, `.`, `-`",
                    ));
                }
                (&name[..last_slash + colon], Some(tag.to_string()))
            }
            None => (name, None),
        };
        let (registry, path) = match crate::naming::registry_host(name) {
            Some(host) => (host, &name[host.len() + 1..]),
            None => (DOCKER_HUB, name),
        };
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
            other => other,
        };
        if path.is_empty() || !path.split('/').all(|c| COMPONENT.is_match(c)) {
            return Err(invalid(
                "each path component is lowercase letters and digits with single separators",
            ));
        }
        let repository = match registry == DOCKER_HUB && !path.contains('/') {
            true => format!("library/{path}"),
            false => path.to_string(),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) the registry API answers at.
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        }
    }

    /// The same repository at another tag, without a digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// What to ask the registry's manifest endpoint for: the digest, else the tag, else
    /// `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Whether the registry is on this machine, where Docker allows plain HTTP by default.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn names_without_a_registry_are_docker_hubs() {
        assert_eq!(
            parts("postgres"),
            ("docker.io".into(), "library/postgres".into(), None, None)
        );
        assert_eq!(
            parts("team/app:1.2"),
            (
                "docker.io".into(),
                "team/app".into(),
                Some("1.2".into()),
                None
            )
        );
        assert_eq!(parts("index.docker.io/library/postgres").0, "docker.io");
        assert_eq!(
            Reference::parse("postgres").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn a_registry_is_a_first_component_with_a_dot_a_port_or_localhost() {
        assert_eq!(
            parts("localhost:5000/team/app:ea6757a"),
            (
                "localhost:5000".into(),
                "team/app".into(),
                Some("ea6757a".into()),
                None
            )
        );
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(parts("registry.example.com/app").1, "app");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("registry.example.com/app:1@{digest}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.manifest_reference(), digest);
        assert_eq!(
            r.to_string(),
            format!("registry.example.com/app:1@{digest}")
        );
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "App",
            "app:",
            "a//b",
            "app@sha256:short",
            "app:-x",
            "r.io/",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for (text, loopback) in [
            ("localhost:5000/a", true),
            ("127.0.0.1:5000/a", true),
            ("[::1]:5000/a", true),
            ("127.0.0.1/a", true),
            ("registry.example.com:5000/a", false),
            ("10.0.0.1:5000/a", false),
        ] {
            assert_eq!(
                Reference::parse(text).unwrap().is_loopback(),
                loopback,
                "{text}"
            );
        }
    }
}
