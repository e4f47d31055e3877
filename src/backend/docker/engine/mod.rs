//! The Docker backend's container-level client, [`docker::Docker`]: the operations the backend
//! needs from one engine, in containers, networks and images, on bollard.
//!
//! It is the only code that talks to Docker, and only [`crate::backend::docker`] (and the
//! real-daemon tests) use it. Everything above the backend sees the environment-level
//! [`crate::backend::Backend`]. It fails with the seam's [`BackendError`] (classified once, in
//! `error.rs`), and its exec output and traffic counters are the seam's too: the backend passes
//! them on as they are.

pub(crate) mod convert;
pub mod docker;
mod error;
pub mod subnets;

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

pub use crate::backend::bollard::connect::Attachable;
pub use crate::backend::{BackendError, ExecOutput, Result, Traffic};
pub use crate::naming::codec::{Filter, Labels};
use crate::spec::Runtime;

/// A user-defined bridge network to create.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub labels: Labels,
}

/// A container to create (not start).
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    /// `repository:tag`.
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Published ports, mounts, limits and the other settings of the service. Named volumes
    /// in it carry their engine names (`envctl_ID_NAME`).
    pub runtime: Runtime,
    pub labels: Labels,
    /// The network id to join, and the names the container answers to on it.
    pub network: String,
    pub aliases: Vec<String>,
    /// The IPv4 address to take on the network, instead of one the engine chooses: that of the
    /// container a replacement replaces. Only a network created with a subnet of its own gives
    /// one (those [`docker::Docker::create_network`] creates); on another, the engine chooses.
    pub address: Option<IpAddr>,
}

/// A named volume to create.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: Labels,
}

/// A volume as a labelled list call returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSummary {
    pub name: String,
    pub labels: Labels,
}

/// A container as a labelled list call returns it: enough for `ls`, `down` and the reaper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: Labels,
    pub state: ContainerState,
    /// Docker's human status, like `Up 3 minutes (healthy)`.
    pub status: String,
    pub ports: Vec<PublishedPort>,
    /// When the engine created it, to the second (an inspect gives the nanoseconds).
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    pub fn parse(state: &str) -> ContainerState {
        match state {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Exited,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// What `inspect` tells about one container beyond the list call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDetails {
    pub id: String,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    /// `healthy`, `unhealthy`, `starting`; `None` when the image has no healthcheck.
    pub health: Option<String>,
    pub restarts: i64,
    pub ports: Vec<PublishedPort>,
    /// The container's address on its environment network.
    pub ip: Option<IpAddr>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the engine created it, to the nanosecond.
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub labels: Labels,
}

/// Where a container joins its network, as inspecting the container tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The network it was created on (its network mode), whether attached now or not.
    pub network: String,
    /// Whether it is attached to that network now.
    pub attached: bool,
    /// Its address on that network, while it has one.
    pub address: Option<IpAddr>,
    pub labels: Labels,
}

/// A container's identity and the networks it is on, as inspecting it tells: for envctl's own
/// container, and for the containers that hold an environment's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networked {
    /// The full id.
    pub id: String,
    pub name: String,
    pub hostname: Option<String>,
    pub running: bool,
    /// `host`, `bridge`, a network's name or id, `container:ID`.
    pub network_mode: String,
    pub networks: Vec<NetworkEndpoint>,
}

/// One network a container is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEndpoint {
    pub network: String,
    pub network_id: String,
    /// The names it answers to there, besides its own.
    pub aliases: Vec<String>,
}

impl Networked {
    /// Its endpoint on the network `network` (a name or id), if it is on it.
    pub fn on(&self, network: &str) -> Option<&NetworkEndpoint> {
        self.networks
            .iter()
            .find(|e| e.network == network || e.network_id == network)
    }
}

/// A container attached to a network, as inspecting the network tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub id: String,
    pub name: String,
}

/// A local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    /// The image's id (`sha256:...`).
    pub id: Option<String>,
    /// The image's HEALTHCHECK test, as Docker stores it (`["CMD", ...]` or `["CMD-SHELL", s]`).
    pub healthcheck: Option<Vec<String>>,
}

/// How far a pull is: bytes downloaded of the layers announced so far (the total grows as
/// the engine announces layers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub done: u64,
    pub total: u64,
}

pub use crate::backend::LogOptions;
/// One line of a container's output.
pub use crate::backend::bollard::logs::Line as LogLine;
