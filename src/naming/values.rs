//! The typed values that an environment file declares and labels carry: ports, the gateway's
//! entry, readiness. They live here, below `spec`, so that the label codec can read and write
//! them without depending on the file's parser.

use std::fmt;
use std::time::Duration;

use regex::Regex;

/// A service's published container port that `envctl gateway` proxies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEntry {
    pub service: String,
    pub port: u16,
}

impl fmt::Display for GatewayEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

impl GatewayEntry {
    /// Reads `SERVICE:PORT`, as written in the file and in the label.
    pub fn parse(text: &str) -> Option<GatewayEntry> {
        let (service, port) = text.rsplit_once(':')?;
        let port = port.parse().ok().filter(|p| *p != 0)?;
        (!service.is_empty()).then(|| GatewayEntry {
            service: service.to_string(),
            port,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as Docker and `--output json` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A container port and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Tcp => write!(f, "{}/tcp", self.number),
            Protocol::Udp => write!(f, "{}/udp", self.number),
        }
    }
}

/// When a service counts as ready. All probes must pass; none means "its container runs".
#[derive(Debug, Clone)]
pub struct Ready {
    pub probes: Vec<Probe>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Probe {
    /// A line of the container's output matches.
    Log(Regex),
    /// A TCP connect to this container port succeeds.
    Tcp(u16),
    /// An HTTP GET of this container port and path answers 2xx.
    Http { port: u16, path: String },
    /// A command run inside the container exits 0.
    Exec(Vec<String>),
    /// The image's own HEALTHCHECK command passes.
    Healthcheck,
    /// A one-shot job finished with this exit code.
    Exit(i64),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Log(regex) => write!(f, "log /{}/", regex.as_str()),
            Probe::Tcp(port) => write!(f, "tcp {port}"),
            Probe::Http { port, path } => write!(f, "http {port}{path}"),
            Probe::Exec(command) => write!(f, "exec {}", command.join(" ")),
            Probe::Healthcheck => write!(f, "healthcheck"),
            Probe::Exit(code) => write!(f, "exit {code}"),
        }
    }
}

impl Ready {
    /// The TCP ports its `tcp:` and `http:` probes dial that are not among `published`
    /// (a port published as UDP only is not), in order, each once.
    pub fn unpublished_ports(&self, published: impl IntoIterator<Item = Port>) -> Vec<Port> {
        let published: Vec<Port> = published.into_iter().collect();
        let mut ports: Vec<Port> = Vec::new();
        for probe in &self.probes {
            let number = match probe {
                Probe::Tcp(port) | Probe::Http { port, .. } => *port,
                _ => continue,
            };
            let port = Port {
                number,
                protocol: Protocol::Tcp,
            };
            if !published.contains(&port) && !ports.contains(&port) {
                ports.push(port);
            }
        }
        ports
    }

    /// The exit code a one-shot job must end with, if this service is one.
    pub fn exit_code(&self) -> Option<i64> {
        self.probes.iter().find_map(|p| match p {
            Probe::Exit(code) => Some(*code),
            _ => None,
        })
    }
}

/// The readiness spec as stored in a container label, so `envctl start` can wait for readiness
/// without the environment file.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadyLabel {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    probes: Vec<ProbeLabel>,
    timeout_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum ProbeLabel {
    Log(String),
    Tcp(u16),
    Http(u16, String),
    Exec(Vec<String>),
    Healthcheck,
    Exit(i64),
}

impl Ready {
    pub fn to_label(&self) -> String {
        let probes = self
            .probes
            .iter()
            .map(|p| match p {
                Probe::Log(regex) => ProbeLabel::Log(regex.as_str().to_string()),
                Probe::Tcp(port) => ProbeLabel::Tcp(*port),
                Probe::Http { port, path } => ProbeLabel::Http(*port, path.clone()),
                Probe::Exec(command) => ProbeLabel::Exec(command.clone()),
                Probe::Healthcheck => ProbeLabel::Healthcheck,
                Probe::Exit(code) => ProbeLabel::Exit(*code),
            })
            .collect();
        let label = ReadyLabel {
            probes,
            timeout_ms: self.timeout.as_millis().try_into().unwrap_or(u64::MAX),
        };
        serde_json::to_string(&label).expect("the readiness label serializes")
    }

    /// Reads a label written by [`Ready::to_label`]; `None` if it is not one.
    pub fn from_label(text: &str) -> Option<Ready> {
        let label: ReadyLabel = serde_json::from_str(text).ok()?;
        let probes = label
            .probes
            .into_iter()
            .map(|p| {
                Some(match p {
                    ProbeLabel::Log(pattern) => Probe::Log(Regex::new(&pattern).ok()?),
                    ProbeLabel::Tcp(port) => Probe::Tcp(port),
                    ProbeLabel::Http(port, path) => Probe::Http { port, path },
                    ProbeLabel::Exec(command) => Probe::Exec(command),
                    ProbeLabel::Healthcheck => Probe::Healthcheck,
                    ProbeLabel::Exit(code) => Probe::Exit(code),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Ready {
            probes,
            timeout: Duration::from_millis(label.timeout_ms),
        })
    }
}
