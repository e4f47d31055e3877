//! Which environment a host name means: `ID.DOMAIN`, or `REF.ENVIRONMENT.DOMAIN` for the newest
//! environment of that file started with a ref starting with REF. Pure, for unit tests.

use super::environments::RoutedEnvironment;

/// Where a request goes, by its host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway's own page: the domain itself, or an IP address.
    Page,
    /// An environment, by id.
    Environment(String),
    /// A host the gateway does not know: never proxied anywhere.
    Unknown,
}

/// A DNS label for a name: lowercase, every character other than a letter, digit or `-`
/// becomes `-` (`pr_42.x` -> `pr-42-x`).
pub fn host_label(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect()
}

/// The host an environment is reached at: `ID.DOMAIN`.
pub fn host_of(id: &str, domain: &str) -> String {
    format!("{}.{domain}", host_label(id))
}

/// The host part of a `Host` header, lowercase, without a port or a final dot.
fn bare_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .to_string()
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// `(REF, ENVIRONMENT)` of a `REF.ENVIRONMENT.DOMAIN` host, for a creation on request: both one
/// DNS label each, so neither can name a path.
pub fn create_target(host: &str, domain: &str) -> Option<(String, String)> {
    let host = bare_host(host);
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let prefix = host.strip_suffix(&format!(".{domain}"))?;
    let (reference, environment) = prefix.split_once('.')?;
    let label = |s: &str| !s.is_empty() && host_label(s) == s && !s.starts_with('-');
    (label(reference) && label(environment))
        .then(|| (reference.to_string(), environment.to_string()))
}

/// Resolves a `Host` header against the known environments.
pub fn resolve(host: &str, domain: &str, environments: &[RoutedEnvironment]) -> Target {
    let host = bare_host(host);
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if host == domain || host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Target::Page;
    }
    let Some(prefix) = host.strip_suffix(&format!(".{domain}")) else {
        return Target::Unknown;
    };
    let found = match prefix.split_once('.') {
        None => environments.iter().find(|e| host_label(&e.id) == prefix),
        Some((reference, environment)) => environments
            .iter()
            .filter(|e| host_label(&e.environment) == environment)
            .filter(|e| {
                !reference.is_empty()
                    && e.ref_tags()
                        .any(|tag| tag.to_ascii_lowercase().starts_with(reference))
            })
            .max_by_key(|e| e.created_at),
    };
    match found {
        Some(environment) => Target::Environment(environment.id.clone()),
        None => Target::Unknown,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lifecycle::State;
    use chrono::{TimeZone, Utc};

    pub(crate) fn environment(
        id: &str,
        name: &str,
        refs: &[&str],
        minute: u32,
    ) -> RoutedEnvironment {
        RoutedEnvironment {
            id: id.into(),
            environment: name.into(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
            owner: "tester".into(),
            state: State::Ready,
            created_at: Some(Utc.with_ymd_and_hms(2026, 11, 26, 9, minute, 0).unwrap()),
            pinned: false,
            expires_at: None,
            entry: Ok(super::super::environments::Entry {
                service: "proxy".into(),
                port: 8080,
                address: Some(([127, 0, 0, 1], 40000 + minute as u16).into()),
            }),
            endpoints: vec![],
            last_activity: None,
            stopped_for_errors: false,
        }
    }

    #[test]
    fn a_creation_is_only_for_two_labels_under_the_domain() {
        let target = |host| create_target(host, "envs.example.com");
        assert_eq!(
            target("ea6757a.accounting.envs.example.com:8000"),
            Some(("ea6757a".into(), "accounting".into()))
        );
        assert_eq!(
            target("ea6757a.accounting.example.org"),
            None,
            "outside the domain"
        );
        assert_eq!(
            target("a.b.accounting.envs.example.com"),
            None,
            "one label each"
        );
        assert_eq!(target("accounting.envs.example.com"), None);
        assert_eq!(target("ea6757a.-x.envs.example.com"), None);
        assert_eq!(target("ea6757a.a%2f..envs.example.com"), None, "no path");
    }

    fn known() -> Vec<RoutedEnvironment> {
        vec![
            environment(
                "20261126-041500",
                "accounting",
                &["accounting@ea6757a8090d"],
                1,
            ),
            environment("pr_42", "accounting", &["accounting@ea6757a8090d"], 2),
            environment("20261126-050000", "demo", &[], 3),
        ]
    }

    #[test]
    fn an_id_host_reaches_that_environment_whatever_the_port_and_case() {
        let target = resolve("20261126-041500.localhost:8000", "localhost", &known());
        assert_eq!(target, Target::Environment("20261126-041500".into()));
        let target = resolve("20261126-050000.LocalHost.", "localhost", &known());
        assert_eq!(target, Target::Environment("20261126-050000".into()));
    }

    #[test]
    fn characters_not_valid_in_a_host_name_become_dashes() {
        assert_eq!(
            host_of("pr_42", "envs.example.com"),
            "pr-42.envs.example.com"
        );
        let target = resolve("pr-42.envs.example.com", "envs.example.com", &known());
        assert_eq!(target, Target::Environment("pr_42".into()));
    }

    #[test]
    fn a_ref_host_reaches_the_newest_environment_of_that_file_with_a_matching_ref() {
        let target = resolve("ea6757a.accounting.localhost", "localhost", &known());
        assert_eq!(target, Target::Environment("pr_42".into()));
        assert_eq!(
            resolve("ffff.accounting.localhost", "localhost", &known()),
            Target::Unknown
        );
        assert_eq!(
            resolve("ea6757a.demo.localhost", "localhost", &known()),
            Target::Unknown
        );
    }

    #[test]
    fn the_domain_and_ip_addresses_are_the_page_and_anything_else_is_unknown() {
        assert_eq!(
            resolve("localhost:8000", "localhost", &known()),
            Target::Page
        );
        assert_eq!(
            resolve("127.0.0.1:8000", "localhost", &known()),
            Target::Page
        );
        assert_eq!(resolve("[::1]:8000", "localhost", &known()), Target::Page);
        assert_eq!(
            resolve("example.com", "localhost", &known()),
            Target::Unknown
        );
        assert_eq!(
            resolve("nope.localhost", "localhost", &known()),
            Target::Unknown
        );
        assert_eq!(
            resolve("evil-localhost", "localhost", &known()),
            Target::Unknown
        );
        assert_eq!(
            resolve("a.b.c.localhost", "localhost", &known()),
            Target::Unknown
        );
    }
}
