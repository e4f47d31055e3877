//! What commands print about environments, one type per shape: `up`, `start`, `stop`,
//! `status`, `ls` and `port` show a published port as the same [`Port`], and `up`, `start` and
//! `stop` an environment as the same [`Environment`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{ContainerSummary, Engine, PublishedPort};
use crate::lifecycle::{Instance, PortJson, Started};
use crate::spec::Probe;

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The address Docker bound (`0.0.0.0`: every address of the engine's host).
    pub host_ip: String,
    pub host_port: u16,
    /// Where this envctl reaches the port: `host:host_port` answers from here.
    pub host: String,
    /// The service answers HTTP on it (an `http` readiness probe): text shows a URL.
    #[serde(skip)]
    pub http: bool,
}

impl From<&PortJson> for Port {
    fn from(p: &PortJson) -> Self {
        Port {
            container_port: p.container_port,
            protocol: p.protocol.clone(),
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            host: p.host.clone(),
            http: p.http,
        }
    }
}

impl Port {
    /// The port `p`, with the host at which this envctl reaches it.
    pub fn at(p: &PublishedPort, engine: &dyn Engine) -> Self {
        Port {
            container_port: p.container_port,
            protocol: p.protocol.clone(),
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            host: engine.reachable_host(&p.host_ip).to_string(),
            http: false,
        }
    }

    /// `8080` for TCP, `53/udp` otherwise.
    pub fn name(&self) -> String {
        match self.protocol.as_str() {
            "tcp" => self.container_port.to_string(),
            other => format!("{}/{other}", self.container_port),
        }
    }

    /// `host:port` where this envctl reaches it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.host_port)
    }
}

/// The published ports of a listed container, with `http` from its readiness label.
pub fn ports(container: &ContainerSummary, engine: &dyn Engine) -> Vec<Port> {
    let ready = container.ready();
    container
        .ports
        .iter()
        .map(|p| Port {
            http: ready.as_ref().is_some_and(|ready| {
                ready.probes.iter().any(
                    |probe| matches!(probe, Probe::Http { port, .. } if *port == p.container_port),
                )
            }),
            ..Port::at(p, engine)
        })
        .collect()
}

/// An environment and its services, as `up`, `start` and `stop` print it.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub id: String,
    pub environment: String,
    pub services: Vec<Service>,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub service: String,
    pub container: String,
    /// The image reference it runs, its tag resolved.
    pub image: String,
    pub state: String,
    pub ports: Vec<Port>,
}

impl From<&Started> for Environment {
    fn from(started: &Started) -> Self {
        Environment {
            id: started.id.clone(),
            environment: started.environment.clone(),
            services: started
                .services
                .iter()
                .map(|s| Service {
                    service: s.service.clone(),
                    container: s.container.clone(),
                    image: s.image.clone(),
                    state: s.state.clone(),
                    ports: s.ports.iter().map(Port::from).collect(),
                })
                .collect(),
        }
    }
}

impl Environment {
    /// The environment as listed, ports reached from here.
    pub fn of(instance: &Instance, engine: &dyn Engine) -> Self {
        Environment {
            id: instance.id.clone(),
            environment: instance.environment.clone(),
            services: instance
                .containers
                .iter()
                .map(|c| Service {
                    service: c.service().to_string(),
                    container: c.name.clone(),
                    image: c
                        .metadata()
                        .and_then(|m| m.image)
                        .map_or_else(|| c.image.clone(), |image| image.to_string()),
                    state: c.state.to_string(),
                    ports: ports(c, engine),
                })
                .collect(),
        }
    }
}

impl Environment {
    /// One line per published port: `  proxy 8080 -> 127.0.0.1:49153  http://127.0.0.1:49153/`.
    pub fn endpoints(&self) -> String {
        let mut out = String::new();
        for service in &self.services {
            for port in &service.ports {
                let address = port.address();
                let url = match port.http {
                    true => format!("  http://{address}/"),
                    false => String::new(),
                };
                out.push_str(&format!(
                    "  {} {} -> {address}{url}\n",
                    service.service,
                    port.name()
                ));
            }
        }
        out
    }
}

/// The published ports of each service that has some, as `ls` shows them.
pub fn endpoints(instance: &Instance, engine: &dyn Engine) -> BTreeMap<String, Vec<Port>> {
    instance
        .containers
        .iter()
        .filter(|c| !c.ports.is_empty())
        .map(|c| (c.service().to_string(), ports(c, engine)))
        .collect()
}
