//! Names, ids and label keys, defined once.
//!
//! Everything envctl creates on the engine carries labels under [`LABEL_PREFIX`]; `down`, `ls`,
//! `status` and the reaper find environments through these labels alone, so they keep working
//! when the environment file changed or was deleted.

use chrono::{DateTime, Utc};

/// The prefix of every label envctl sets.
pub const LABEL_PREFIX: &str = "io.envctl.";

/// Label keys. Values are plain strings; lists are comma-separated.
pub mod label {
    /// Always `envctl`: the marker that envctl created the resource.
    pub const MANAGED_BY: &str = "io.envctl.managed-by";
    /// The environment instance id, `YYYYmmdd-HHMMSS[-N]` or the `--name` given to `up`.
    pub const ID: &str = "io.envctl.id";
    /// The environment's name (the file's `name:` or stem).
    pub const ENVIRONMENT: &str = "io.envctl.environment";
    /// The service a container runs.
    pub const SERVICE: &str = "io.envctl.service";
    /// The image reference the service was started from, as resolved by `up`.
    pub const IMAGE: &str = "io.envctl.image";
    /// RFC 3339 creation time of the environment.
    pub const CREATED_AT: &str = "io.envctl.created-at";
    /// The services this one depends on, comma-separated, so `down` and `start` can order
    /// containers without the file.
    pub const DEPENDS_ON: &str = "io.envctl.depends-on";
    /// Who started the environment: Jenkins' `BUILD_TAG` when set, else the user.
    pub const OWNER: &str = "io.envctl.owner";
    /// Container ports published on the host, comma-separated (`8080/tcp`).
    pub const PORTS: &str = "io.envctl.ports";
    /// `host:pid` of the `envctl up` that is starting the environment.
    pub const STARTED_BY: &str = "io.envctl.started-by";
    /// RFC 3339 time by which the start must have finished (`up --timeout`). Together with
    /// [`STARTED_BY`] it tells an unfinished start (a killed `up`) from a running environment.
    pub const START_DEADLINE: &str = "io.envctl.start-deadline";
    /// The service's readiness spec (JSON), so `start` can wait for readiness without the file.
    pub const READY: &str = "io.envctl.ready";
    /// `anchor` on the environment's anchor container: see [`super::anchor_name`].
    pub const ROLE: &str = "io.envctl.role";
    /// A nonce of the `envctl up` invocation, so a rollback removes exactly what it created,
    /// even while another `up` tries the same id.
    pub const RUN: &str = "io.envctl.run";
}

/// The value of [`label::MANAGED_BY`].
pub const MANAGER: &str = "envctl";

/// A run id from a launch time: `20261126-041500`.
pub fn run_id(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d-%H%M%S").to_string()
}

/// The id to try after `base` was taken `attempt` times: `base`, `base-2`, `base-3`, ...
pub fn nth_id(base: &str, attempt: u32) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        format!("{base}-{attempt}")
    }
}

/// The container name of a service in a run: the seed's `oracle_20141023-101010` convention.
pub fn container_name(service: &str, id: &str) -> String {
    format!("{service}_{id}")
}

/// The value of [`label::ROLE`] on an anchor container.
pub const ANCHOR_ROLE: &str = "anchor";

/// The name of the environment's anchor: a container that is created but never started, whose
/// name claims the id on the engine. Container names are the one thing Docker keeps unique
/// atomically, and this one does not depend on the services, so two different environments
/// launched in the same second still get distinct ids.
pub fn anchor_name(id: &str) -> String {
    format!("envctl_{id}")
}

/// The name of the environment's private network.
pub fn network_name(environment: &str, id: &str) -> String {
    format!("envctl_{environment}_{id}")
}

/// Whether `name` is a valid Docker container name (and so a valid `--name` id):
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_valid_docker_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The environment-variable name for a service's published port: `ENVCTL_ORACLE_XE_1521`.
pub fn port_variable(service: &str, port: u16) -> String {
    let service: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ENVCTL_{service}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_follow_the_seed_convention() {
        let at = Utc.with_ymd_and_hms(2014, 10, 23, 10, 10, 10).unwrap();
        assert_eq!(run_id(at), "20141023-101010");
        assert_eq!(
            container_name("oracle", &run_id(at)),
            "oracle_20141023-101010"
        );
        assert_eq!(nth_id("20141023-101010", 1), "20141023-101010");
        assert_eq!(nth_id("20141023-101010", 3), "20141023-101010-3");
    }

    #[test]
    fn docker_names_are_validated() {
        assert!(is_valid_docker_name("pr-42.build_7"));
        assert!(!is_valid_docker_name("-x"));
        assert!(!is_valid_docker_name(""));
        assert!(!is_valid_docker_name("a/b"));
    }

    #[test]
    fn port_variables_are_upper_snake_case() {
        assert_eq!(port_variable("oracle-xe", 1521), "ENVCTL_ORACLE_XE_1521");
    }
}
