//! What commands print about environments, one type per shape: `up`, `start`, `stop`,
//! `status`, `ls` and `port` show a published port as the same [`Port`], and `up`, `start` and
//! `stop` an environment as the same [`EnvironmentView`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::{ServiceEndpoint, ServiceRecord};
use crate::lifecycle::{Instance, Started, StartedPort, StartedService};
use crate::spec::{Probe, Protocol};

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub container_port: u16,
    /// `tcp` or `udp`.
    #[serde(serialize_with = "protocol")]
    pub protocol: Protocol,
    /// The address the engine bound (`0.0.0.0`: every address of the engine's host).
    pub host_ip: String,
    pub host_port: u16,
    /// Where this envctl reaches the port: `host:host_port` answers from here.
    pub host: String,
    /// The service answers HTTP on it (an `http` readiness probe): text shows a URL.
    #[serde(skip)]
    pub http: bool,
}

fn protocol<S: serde::Serializer>(protocol: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(protocol.as_str())
}

impl From<&StartedPort> for Port {
    fn from(p: &StartedPort) -> Self {
        Port {
            container_port: p.container_port,
            protocol: p.protocol,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            host: p.host.clone(),
            http: p.http,
        }
    }
}

impl From<&ServiceEndpoint> for Port {
    /// The endpoint, reached at the host the backend found answering from here.
    fn from(e: &ServiceEndpoint) -> Self {
        Port::from(&StartedPort::from(e))
    }
}

impl Port {
    /// `8080` for TCP, `53/udp` otherwise.
    pub fn name(&self) -> String {
        match self.protocol {
            Protocol::Tcp => self.container_port.to_string(),
            other => format!("{}/{}", self.container_port, other.as_str()),
        }
    }

    /// `host:port` where this envctl reaches it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.host_port)
    }
}

/// The published ports of a listed service, with `http` from its readiness metadata.
pub fn ports(service: &ServiceRecord) -> Vec<Port> {
    let ready = service.ready();
    service
        .status
        .endpoints
        .iter()
        .map(|e| Port {
            http: ready.is_some_and(|ready| {
                ready.probes.iter().any(
                    |probe| matches!(probe, Probe::Http { port, .. } if *port == e.container_port.number),
                )
            }),
            ..Port::from(e)
        })
        .collect()
}

/// An environment and its services, as `up`, `start` and `stop` print it.
#[derive(Debug, Serialize)]
pub struct EnvironmentView {
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

impl From<&StartedService> for Service {
    fn from(s: &StartedService) -> Self {
        Service {
            service: s.service.clone(),
            container: s.container.clone(),
            image: s.image.clone(),
            state: s.state.clone(),
            ports: s.ports.iter().map(Port::from).collect(),
        }
    }
}

impl From<&Started> for EnvironmentView {
    fn from(started: &Started) -> Self {
        EnvironmentView {
            id: started.id.clone(),
            environment: started.environment.clone(),
            services: started.services.iter().map(Service::from).collect(),
        }
    }
}

/// `update` prints the services it replaced, as `up` prints all of them.
impl From<&crate::lifecycle::Updated> for EnvironmentView {
    fn from(updated: &crate::lifecycle::Updated) -> Self {
        EnvironmentView {
            id: updated.id.clone(),
            environment: updated.environment.clone(),
            services: updated.services.iter().map(Service::from).collect(),
        }
    }
}

impl EnvironmentView {
    /// The environment as listed, ports reached from here.
    pub fn of(instance: &Instance) -> Self {
        EnvironmentView {
            id: instance.id.clone(),
            environment: instance.environment().to_string(),
            services: instance
                .services
                .iter()
                .map(|s| Service {
                    service: s.service().to_string(),
                    container: s.handle.name.clone(),
                    image: s
                        .metadata
                        .image
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    state: s.status.state.as_str().to_string(),
                    ports: ports(s),
                })
                .collect(),
        }
    }
}

impl EnvironmentView {
    /// One line per published port: `  proxy 8080 -> 127.0.0.1:49153  http://127.0.0.1:49153/`.
    pub fn endpoints(&self) -> String {
        self.services.iter().map(Service::endpoints).collect()
    }
}

impl Service {
    /// One line per published port of this service, as [`EnvironmentView::endpoints`] shows them.
    pub fn endpoints(&self) -> String {
        let mut out = String::new();
        for port in &self.ports {
            let address = port.address();
            let url = match port.http {
                true => format!("  http://{address}/"),
                false => String::new(),
            };
            out.push_str(&format!(
                "  {} {} -> {address}{url}\n",
                self.service,
                port.name()
            ));
        }
        out
    }
}

/// The published ports of each service that has some, as `ls` shows them.
pub fn endpoints(instance: &Instance) -> BTreeMap<String, Vec<Port>> {
    instance
        .services
        .iter()
        .filter(|s| !s.status.endpoints.is_empty())
        .map(|s| (s.service().to_string(), ports(s)))
        .collect()
}
