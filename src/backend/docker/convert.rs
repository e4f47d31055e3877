//! Docker's values to the seam's: container states, status prose, HEALTHCHECK encodings and
//! published ports are read here, once, and nowhere else.

use crate::backend::docker::engine::docker::Docker;
use crate::backend::docker::engine::{
    ContainerDetails, ContainerState, ContainerSummary, PublishedPort,
};
use crate::backend::{
    Health, Healthcheck, ServiceEndpoint, ServiceRef, ServiceState, ServiceStatus,
};
use crate::spec::{Port, Protocol};

pub fn state(state: ContainerState) -> ServiceState {
    match state {
        ContainerState::Created => ServiceState::Pending,
        ContainerState::Running => ServiceState::Running,
        ContainerState::Paused => ServiceState::Paused,
        ContainerState::Restarting => ServiceState::Restarting,
        ContainerState::Removing => ServiceState::Stopping,
        ContainerState::Exited => ServiceState::Exited,
        ContainerState::Dead => ServiceState::Failed,
    }
}

/// The exit code in Docker's status prose: `Exited (137) 3 minutes ago`.
fn exit_code_of(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.parse().ok()
}

/// The health in Docker's status prose: `Up 3 minutes (healthy)`.
fn health_of(status: &str) -> Health {
    if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

/// The health word of `docker inspect`: `healthy`, `unhealthy`, `starting`.
fn health_word(word: Option<&str>) -> Health {
    match word {
        Some("healthy") => Health::Healthy,
        Some("unhealthy") => Health::Unhealthy,
        Some("starting") => Health::Starting,
        _ => Health::None,
    }
}

fn port(published: &PublishedPort) -> Port {
    Port {
        number: published.container_port,
        protocol: match published.protocol.as_str() {
            "udp" => Protocol::Udp,
            _ => Protocol::Tcp,
        },
    }
}

/// Published ports at the host at which this client reaches them.
pub fn endpoints(engine: &Docker, ports: &[PublishedPort]) -> Vec<ServiceEndpoint> {
    ports
        .iter()
        .map(|p| ServiceEndpoint {
            container_port: port(p),
            host: engine.reachable_host(&p.host_ip).to_string(),
            port: p.host_port,
            bound: p.host_ip.clone(),
        })
        .collect()
}

/// What a labelled list call tells: the state, and what Docker's status prose adds to it.
pub fn summary_status(engine: &Docker, container: &ContainerSummary) -> ServiceStatus {
    let state = state(container.state);
    ServiceStatus {
        exit_code: match state {
            ServiceState::Exited => exit_code_of(&container.status),
            _ => None,
        },
        health: health_of(&container.status),
        endpoints: endpoints(engine, &container.ports),
        ..ServiceStatus::new(state)
    }
}

/// What inspecting a container tells.
pub fn details_status(engine: &Docker, details: &ContainerDetails) -> ServiceStatus {
    ServiceStatus {
        exit_code: details.exit_code,
        health: health_word(details.health.as_deref()),
        restarts: details.restarts.try_into().unwrap_or(0),
        started_at: details.started_at,
        finished_at: details.finished_at,
        endpoints: endpoints(engine, &details.ports),
        direct: details.ip,
        ..ServiceStatus::new(state(details.state))
    }
}

/// An image's HEALTHCHECK test as Docker stores it: `["CMD", ...]` or `["CMD-SHELL", s]`;
/// `NONE` and an empty test mean none.
pub fn healthcheck(test: Option<Vec<String>>) -> Option<Healthcheck> {
    match test?.as_slice() {
        [kind, args @ ..] if kind == "CMD" && !args.is_empty() => {
            Some(Healthcheck::Exec(args.to_vec()))
        }
        [kind, script] if kind == "CMD-SHELL" => Some(Healthcheck::Shell(script.clone())),
        _ => None,
    }
}

/// The seam's handle on a service container.
pub fn handle(id: &str, container: &ContainerSummary) -> ServiceRef {
    ServiceRef {
        id: id.to_string(),
        service: container
            .labels
            .get(crate::naming::label::SERVICE)
            .cloned()
            .unwrap_or_default(),
        native: container.id.clone(),
        name: container.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_status_prose_is_read_once_here() {
        let table = [
            ("Up 3 minutes (healthy)", None, Health::Healthy),
            ("Up 3 minutes (unhealthy)", None, Health::Unhealthy),
            ("Up 2 seconds (health: starting)", None, Health::Starting),
            ("Up 3 minutes", None, Health::None),
            ("Exited (0) 3 minutes ago", Some(0), Health::None),
            ("Exited (137) 1 second ago", Some(137), Health::None),
            ("Created", None, Health::None),
        ];
        for (status, code, health) in table {
            assert_eq!(exit_code_of(status), code, "{status}");
            assert_eq!(health_of(status), health, "{status}");
        }
    }

    #[test]
    fn healthchecks_are_decoded_once() {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            healthcheck(Some(strings(&["CMD", "/standin", "probe"]))),
            Some(Healthcheck::Exec(strings(&["/standin", "probe"])))
        );
        let shell = healthcheck(Some(strings(&["CMD-SHELL", "curl -f localhost"]))).unwrap();
        assert_eq!(
            shell.argv(),
            strings(&["/bin/sh", "-c", "curl -f localhost"])
        );
        assert_eq!(healthcheck(Some(strings(&["NONE"]))), None);
        assert_eq!(healthcheck(Some(strings(&["CMD"]))), None);
        assert_eq!(healthcheck(None), None);
    }
}
