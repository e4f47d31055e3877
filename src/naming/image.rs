//! Image references, checked against the grammar Docker itself enforces.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$",
    )
    .expect("valid regex")
});
static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("valid regex"));
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("valid regex"));

/// A resolved image: `docker-registry.example.com/accounting:ea6757a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag, registry included.
    pub repository: String,
    pub tag: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Splits `image` into repository and optional tag, validating both.
pub fn split_image(image: &str) -> Result<(String, Option<String>), String> {
    if image.contains('@') {
        return Err(format!(
            "image `{image}` uses a digest, which envctl does not support"
        ));
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match image[last_slash..].find(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            Some(&image[last_slash + colon + 1..]),
        ),
        None => (image, None),
    };
    check_repository(repository)?;
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    Ok((repository.to_string(), tag.map(str::to_string)))
}

/// Whether the first path component of `repository` names a registry, as Docker decides it.
pub fn has_registry(repository: &str) -> bool {
    super::registry_host(repository).is_some()
}

/// A registry host, optionally with a path under it: `registry.example.com/team`.
pub fn check_registry(registry: &str) -> Result<(), String> {
    let (host, path) = match registry.split_once('/') {
        Some((host, path)) => (host, Some(path)),
        None => (registry, None),
    };
    let path_ok = path.is_none_or(|p| p.split('/').all(|c| PATH_COMPONENT.is_match(c)));
    if DOMAIN.is_match(host) && path_ok {
        Ok(())
    } else {
        Err(format!(
            "`{registry}` is not a valid registry: a host, optionally with a path (`registry.example.com/team`)"
        ))
    }
}

pub fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("image name is empty".into());
    }
    if repository.len() > 255 {
        return Err(format!(
            "image name `{repository}` is longer than 255 characters"
        ));
    }
    let mut components = repository.split('/').peekable();
    if has_registry(repository) {
        let domain = components.next().unwrap_or_default();
        check_registry(domain)?;
    }
    for component in components {
        if !PATH_COMPONENT.is_match(component) {
            return Err(format!(
                "`{repository}` is not a valid image name: `{component}` must be lowercase \
                 letters, digits and single separators (`.`, `_`, `-`)"
            ));
        }
    }
    Ok(())
}

pub fn check_tag(tag: &str) -> Result<(), String> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid image tag: up to 128 letters, digits, `_`, `.` and `-`, \
             not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_docker_accepts() {
        assert_eq!(
            split_image("postgres:15"),
            Ok(("postgres".into(), Some("15".into())))
        );
        assert_eq!(
            split_image("localhost:5000/team/app"),
            Ok(("localhost:5000/team/app".into(), None))
        );
        assert!(has_registry("docker-registry.example.com/accounting"));
        assert!(!has_registry("team/accounting"));
        assert!(check_tag("ea6757a8090d").is_ok());
    }

    #[test]
    fn rejects_what_docker_rejects() {
        assert!(split_image("Accounting").is_err());
        assert!(split_image("app:").is_err());
        assert!(split_image("a//b").is_err());
        assert!(split_image("app@sha256:abc").is_err());
        assert!(check_tag("-dirty").is_err());
        assert!(check_tag(&"x".repeat(129)).is_err());
        assert!(check_registry("bad_host").is_err());
        assert!(check_registry("registry.example.com/team").is_ok());
        assert!(check_registry("registry.example.com/Team").is_err());
    }
}
