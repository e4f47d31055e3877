//! The Docker backend's container-level client: the operations the backend needs from one
//! engine, in containers, networks and images.
//!
//! [`docker::Docker`] implements it with bollard; it is the only code that talks to Docker, and
//! only [`crate::backend::docker`] (and the real-daemon tests) use it. Everything above the
//! backend sees the environment-level [`crate::backend::Backend`]. It fails with the seam's
//! [`BackendError`] (classified once, in `error.rs`), and its exec output and traffic
//! counters are the seam's too: the backend passes them on as they are.

pub(crate) mod convert;
pub mod docker;
mod error;
pub mod subnets;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

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
    /// one (those [`Engine::create_network`] creates); on another, the engine chooses.
    pub address: Option<String>,
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
    pub ip: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When the engine created it, RFC 3339 to the nanosecond.
    pub created: Option<String>,
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
    pub address: Option<String>,
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

/// One line of a container's output.
pub use crate::backend::bollard::logs::Line as LogLine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<u64>,
    pub timestamps: bool,
    /// Only output since this Unix time (seconds).
    pub since: Option<i64>,
}

/// The container-engine operations envctl uses. Implementations must be cheap to share.
#[async_trait]
pub trait Engine: Send + Sync {
    /// A stable name of the engine's endpoint, like `unix:///var/run/docker.sock`.
    fn endpoint(&self) -> &str;
    /// Whether containers' network addresses can be reached from here (a local engine).
    fn reaches_container_ips(&self) -> bool;
    /// The host at which published ports are reached.
    fn published_host(&self) -> &str;
    /// What this process learnt of reaching the engine's containers (see [`crate::reach`]).
    fn reachability(&self) -> &crate::reach::Reachability;
    /// Whether this process may connect its own container to environments' networks.
    fn attachable(&self) -> Attachable {
        Attachable::NotInContainer
    }

    /// Where a port published on `host_ip` is reached: the engine's host for a port bound on
    /// every address (Docker reports `0.0.0.0`), else that address.
    fn reachable_host<'a>(&'a self, host_ip: &'a str) -> &'a str {
        match host_ip {
            "" | "0.0.0.0" | "::" => self.published_host(),
            other => other,
        }
    }

    async fn ping(&self) -> Result<()>;

    /// Creates a network, on a subnet of its own: the first free one of the engine's address
    /// pools (see [`subnets`]), else one the engine chooses. Fails with [`BackendError::Taken`]
    /// when the name exists (a check the engine makes on a best-effort basis only: concurrent
    /// creates may both succeed).
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String>;
    async fn remove_network(&self, id: &str) -> Result<()>;
    async fn list_networks(&self, label_filters: &[Filter]) -> Result<Vec<NetworkSummary>>;
    /// The containers attached to a network, envctl's or not.
    async fn network_containers(&self, id: &str) -> Result<Vec<Attached>>;
    /// A container's full id, name, host name and the networks it is on.
    async fn networked(&self, container: &str) -> Result<Networked>;
    /// The network a container was created on, and whether it is attached to it now.
    async fn attachment(&self, container: &str) -> Result<Attachment>;
    /// Detaches a container from a network: its address and aliases there are free at once.
    async fn disconnect_network(&self, network: &str, container: &str) -> Result<()>;
    /// Attaches a container (running or not) to a network under `aliases`, at `address` when
    /// given.
    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        address: Option<&str>,
    ) -> Result<()>;

    /// Creates a container. Fails with [`BackendError::Taken`] when the name exists: the
    /// engine guarantees that check atomically, which is how `up` claims an id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    /// Creates a named volume. A volume of that name that is not this very one (other labels)
    /// is [`BackendError::Taken`]: Docker would hand it out silently.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()>;
    async fn list_volumes(&self, label_filters: &[Filter]) -> Result<Vec<VolumeSummary>>;
    /// Removes a volume; one already gone is not an error.
    async fn remove_volume(&self, name: &str) -> Result<()>;
    /// Creates a marker: a container that is never started, there only to hold a name (which
    /// the engine keeps unique) and labels. It depends on no image of the user's (see
    /// [`crate::naming::MARKER_IMAGE`]). Fails with [`BackendError::Taken`] when the name
    /// exists.
    async fn create_marker(&self, name: &str, labels: &Labels) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Renames a container, atomically. Fails with [`BackendError::Taken`] when the new name
    /// exists.
    async fn rename_container(&self, id: &str, name: &str) -> Result<()>;
    /// Pauses (`true`) or unpauses a running container. Pausing a paused container, or
    /// unpausing one that is not paused, is fine.
    async fn pause_container(&self, id: &str, pause: bool) -> Result<()>;
    /// Stops a container, killing it after `grace`. Stopping a stopped container is fine.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes a container, killing it if it runs. Removing a removed container is fine.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Every container, running or not, whose labels match all `label_filters`, in one call.
    async fn list_containers(&self, label_filters: &[Filter]) -> Result<Vec<ContainerSummary>>;
    async fn inspect_container(&self, id: &str) -> Result<ContainerDetails>;
    /// Waits until the container is not running and returns its exit code.
    async fn wait_container(&self, id: &str) -> Result<i64>;
    /// The container's output, stdout and stderr merged, line by line.
    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, Result<LogLine>>;
    /// Runs a command inside a running container.
    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput>;
    /// Cumulative bytes received and sent by the running container's network interfaces.
    async fn traffic(&self, id: &str) -> Result<Traffic>;
    /// Bytes of memory the running container uses now, as `docker stats` counts them
    /// (without the inactive page cache); `None` when the engine does not say.
    async fn memory(&self, id: &str) -> Result<Option<u64>>;

    /// A local image, or `None` when it is not there.
    /// One item per change the engine reports to envctl's containers and networks (created,
    /// started, stopped, removed), so a watcher learns of changes without polling alone. The
    /// stream ends, or yields an error, when the engine stops reporting; the default reports
    /// nothing.
    fn changes(&self) -> BoxStream<'static, Result<()>> {
        use futures_util::StreamExt;
        futures_util::stream::pending().boxed()
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>>;
    /// The local tags of a repository.
    async fn image_tags(&self, repository: &str) -> Result<Vec<String>>;
    /// The registries the engine treats as insecure (plain HTTP or untrusted certificates
    /// allowed), which envctl's own registry requests treat the same way. None by default.
    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        Ok(crate::registry::Insecure::default())
    }
    /// Pulls `repository:tag`, with the credentials `config.json` holds for its registry
    /// (inline, or through its credential helper), telling `on_progress` of the bytes.
    async fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()>;
    /// Builds an image from a tar of its context and tags it `tag`.
    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &str) -> Result<()>;
}
