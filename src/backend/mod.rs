//! The environment-level seam between envctl's lifecycle and whatever runs environments.
//!
//! The seam speaks environments and services, never containers: each backend decides which
//! native objects hold them (Docker: containers, a network and never-started marker containers;
//! Swarm: services, an overlay network and configs; Kubernetes: a namespace and Pods). The layers
//! above read typed values only: a [`ServiceStatus`] instead of Docker's status prose, a
//! [`Health`] instead of `(unhealthy)`, [`ServiceEndpoint`]s at the host at which this client reaches
//! them. What not every backend can do is declared in [`Capabilities`], so callers degrade
//! with a message instead of finding out by failing. `docs/backends.md` says, operation by
//! operation, how Docker, Swarm and Kubernetes implement it.
//!
//! Every label or annotation a backend writes or reads goes through [`crate::naming::codec`].

pub mod bollard;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod swarm;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

pub use crate::backend::docker::engine::PullProgress;
pub use crate::naming::codec::{
    Capacity, Filler, Filter, MarkerKind, Metadata, Priority, ServiceMetadata, Waiter,
};
use crate::spec::{ImageRef, Port, Ready, Runtime};

/// Which backend runs environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendKind {
    Docker,
    Swarm,
    Kube,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Swarm => "swarm",
            BackendKind::Kube => "kube",
        }
    }

    /// The engine's name in messages.
    pub fn engine(self) -> &'static str {
        match self {
            BackendKind::Docker => "Docker",
            BackendKind::Swarm => "Docker Swarm",
            BackendKind::Kube => "Kubernetes",
        }
    }

    /// What this backend calls a resource of `kind` in messages.
    pub fn noun(self, kind: ResourceKind) -> &'static str {
        match (self, kind) {
            (BackendKind::Docker, ResourceKind::Service | ResourceKind::Marker(_)) => "container",
            (BackendKind::Docker, ResourceKind::Isolation) => "network",
            (BackendKind::Swarm, ResourceKind::Service) => "service",
            (BackendKind::Swarm, ResourceKind::Marker(_)) => "config",
            (BackendKind::Swarm, ResourceKind::Isolation) => "overlay network",
            (BackendKind::Kube, ResourceKind::Service) => "pod",
            (BackendKind::Kube, ResourceKind::Marker(_)) => "config map",
            (BackendKind::Kube, ResourceKind::Isolation) => "namespace",
            (BackendKind::Docker | BackendKind::Swarm, ResourceKind::Volume) => "volume",
            (BackendKind::Kube, ResourceKind::Volume) => "persistent volume claim",
        }
    }

    /// How to detach `user`, which is not envctl's, from the isolation `isolation`.
    pub fn detach_hint(self, isolation: &str, user: &str) -> String {
        match self {
            BackendKind::Docker => format!("`docker network disconnect {isolation} {user}`"),
            BackendKind::Swarm => {
                format!("`docker service update --network-rm {isolation} {user}`")
            }
            BackendKind::Kube => format!("`kubectl delete pod --namespace {isolation} {user}`"),
        }
    }

    /// The name `create_isolation` gives the isolation of the environment `metadata`
    /// describes, for a message about a create that got no answer.
    pub fn isolation_name(self, metadata: &Metadata) -> String {
        match self {
            BackendKind::Swarm => swarm::network_name(metadata),
            BackendKind::Docker | BackendKind::Kube => crate::naming::network_name(
                metadata.environment.as_deref().unwrap_or_default(),
                &metadata.id,
            ),
        }
    }

    fn no_answer_hint(self) -> &'static str {
        match self {
            BackendKind::Docker | BackendKind::Swarm => {
                "`docker info` shows whether it answers at all"
            }
            BackendKind::Kube => "`kubectl cluster-info` shows whether it answers at all",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend-native handle on one service of one environment: a container id (Docker), a
/// Swarm service id, `namespace/pod` (Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub id: String,
    pub service: String,
    pub native: String,
    /// The name users see in messages and `docker ps`: `proxy_20261126-041500`.
    pub name: String,
}

/// The environment's isolation: a network (Docker, Swarm), a namespace (Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsolationRef {
    pub name: String,
    pub native: String,
}

/// What a backend makes for an environment, by what it is to envctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    Service,
    Marker(MarkerKind),
    Isolation,
    Volume,
}

/// One resource of an environment, for messages: what it is and the name its backend gave it
/// (`proxy_20261126-041500`, `envctl_20261126-041500_ready`, `envctl_shop_20261126-041500`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub backend: BackendKind,
    pub kind: ResourceKind,
    pub name: String,
}

impl Resource {
    pub fn new(backend: BackendKind, kind: ResourceKind, name: impl Into<String>) -> Resource {
        Resource {
            backend,
            kind,
            name: name.into(),
        }
    }

    /// What its backend calls it: `container`, `config`, `overlay network`.
    pub fn noun(&self) -> &'static str {
        self.backend.noun(self.kind)
    }
}

/// `` `name` `` for what the backend runs services as, else `` network `name` ``.
impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.noun() == self.backend.noun(ResourceKind::Service) {
            true => write!(f, "`{}`", self.name),
            false => write!(f, "{} `{}`", self.noun(), self.name),
        }
    }
}

/// An image's own HEALTHCHECK, decoded once by the backend that read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK CMD ["a", "b"]`: run as is.
    Exec(Vec<String>),
    /// `HEALTHCHECK CMD a b`: run by `/bin/sh -c`.
    Shell(String),
}

impl Healthcheck {
    /// The command that runs it inside the service.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Healthcheck::Exec(argv) => argv.clone(),
            Healthcheck::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }
}

/// A named volume of one environment: the file's name, and the backend's handle on it (a
/// Docker volume `envctl_ID_NAME`; a PersistentVolumeClaim on Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeRef {
    pub name: String,
    pub native: String,
}

/// One named volume to create with an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// As the file calls it.
    pub name: String,
    /// The user's own labels, besides envctl's.
    pub labels: BTreeMap<String, String>,
}

/// An image as services will run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub reference: ImageRef,
    /// The engine's id of the image the reference names now (Docker: `sha256:...`), so a pool
    /// member made from an older build of the tag is told apart; `None` where unknown.
    pub digest: Option<String>,
    pub healthcheck: Option<Healthcheck>,
}

/// One service to create, typed end to end.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub service: String,
    pub image: ResolvedImage,
    /// Docker CMD; Kubernetes `args`.
    pub command: Option<Vec<String>>,
    /// Sorted by name.
    pub env: Vec<(String, String)>,
    /// Published ports, mounts, limits and the other compose keys of the service, typed. Named
    /// volumes in its mounts carry the file's names: each backend maps them to its own (Docker:
    /// `envctl_ID_NAME`), as it does in [`Backend::create_volume`].
    pub runtime: Runtime,
    /// The service name first, then every link alias that points at it.
    pub aliases: Vec<String>,
    /// The address to take on the environment's isolation: that of the service it replaces,
    /// so dependents that resolved the service's name once still reach it. `None`: the
    /// backend chooses.
    pub address: Option<IpAddr>,
    pub depends_on: BTreeSet<String>,
    pub ready: Ready,
    /// `SERVICE@TAG` when the tag came from a `SERVICE@REF` (see `ServiceMetadata::reference`).
    pub reference: Option<crate::naming::codec::ResolvedRef>,
    pub metadata: Metadata,
}

impl ServiceSpec {
    /// The container ports it publishes.
    pub fn ports(&self) -> Vec<Port> {
        self.runtime.ports.iter().map(|p| p.container).collect()
    }

    /// What the service's resources carry besides the environment's metadata.
    pub fn service_metadata(&self) -> ServiceMetadata {
        ServiceMetadata {
            service: self.service.clone(),
            image: Some(self.image.reference.clone()),
            depends_on: self.depends_on.clone(),
            ports: self.ports(),
            ready: Some(self.ready.clone()),
            reference: self.reference.clone(),
            aliases: self
                .aliases
                .iter()
                .filter(|a| **a != self.service)
                .cloned()
                .collect(),
            address: self.address,
            settings: crate::spec::settings_digests(&self.command, &self.env, &self.runtime),
        }
    }
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceState {
    /// Created, not started yet (or waiting for a node, an image).
    Pending,
    Running,
    Paused,
    /// Crashed and being restarted by the engine.
    Restarting,
    /// Being stopped or removed.
    Stopping,
    /// Ended and at rest, its exit code known.
    Exited,
    /// Died in a way that left no usable exit (Docker `dead`, a task `failed` to start).
    Failed,
    /// A service of the environment whose resource is gone.
    Missing,
}

impl ServiceState {
    /// The word `ls` and `status` show (Docker's, where Docker has one).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Pending => "created",
            ServiceState::Running => "running",
            ServiceState::Paused => "paused",
            ServiceState::Restarting => "restarting",
            ServiceState::Stopping => "removing",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "dead",
            ServiceState::Missing => "missing",
        }
    }
}

/// What the service's own health check says (an image HEALTHCHECK, a native readiness probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Health {
    /// No health check runs.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// The word `status` shows; `None` without a health check.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Health::None => None,
            Health::Starting => Some("starting"),
            Health::Healthy => Some("healthy"),
            Health::Unhealthy => Some("unhealthy"),
        }
    }
}

/// Transport of a published port.
pub use crate::spec::Protocol;

/// A published port, at the host at which this client reaches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceEndpoint {
    pub container_port: Port,
    /// Where this client reaches the port: `host:port` answers from here.
    pub host: String,
    pub port: u16,
    /// The address the engine bound the port on, as it reports it (Docker: `0.0.0.0`).
    pub bound: String,
}

/// The typed state of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub state: ServiceState,
    pub exit_code: Option<i64>,
    pub health: Health,
    pub restarts: u32,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub endpoints: Vec<ServiceEndpoint>,
    /// Ports the backend published for envctl's own probes alone, because the file publishes
    /// none of them (a swarm task has no address envctl reaches): probes dial them, nothing
    /// shows them as the environment's endpoints.
    pub probe_endpoints: Vec<ServiceEndpoint>,
    /// The service's own address, when it has one; probes use it where it answers from here
    /// (they try), as a published port answers before the service listens.
    pub direct: Option<IpAddr>,
    /// Why it is pending or failed, in the backend's words.
    pub detail: Option<String>,
}

impl ServiceStatus {
    /// A status with only its state known.
    pub fn new(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            state,
            exit_code: None,
            health: Health::None,
            restarts: 0,
            created_at: None,
            started_at: None,
            finished_at: None,
            endpoints: Vec::new(),
            probe_endpoints: Vec::new(),
            direct: None,
            detail: None,
        }
    }

    /// Whether this is a one-shot job that ended as `ready` expects (`ready: exit: N`).
    pub fn finished_job(&self, ready: Option<&Ready>) -> bool {
        self.state == ServiceState::Exited
            && ready
                .and_then(Ready::exit_code)
                .is_some_and(|code| self.exit_code == Some(code))
    }
}

/// Backend-native metadata about the environment as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// The claim still exists.
    pub claimed: bool,
    /// The start finished (when the backend records when).
    pub ready: bool,
    pub pinned: bool,
    /// The latest lease expiry, if a lease exists.
    pub lease_until: Option<DateTime<Utc>>,
    /// The marker of an `envctl update` under way (or one that never finished): the update's
    /// own process and deadline, never the environment's.
    pub update: Option<Metadata>,
    /// A pool member's pooled services are ready: an `up` may adopt it.
    pub member: bool,
    /// An `up` adopted this pool member; its metadata is the adopter's.
    pub adopted: bool,
    /// The marker of a gateway's creation on request under way (or one whose gateway died):
    /// the creating gateway's process and deadline, never an environment's.
    pub creating: Option<Metadata>,
}

/// A marker to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The start finished.
    Ready,
    /// The reaper leaves the environment alone.
    Pinned,
    /// A running `envctl run` uses the environment until then.
    Lease(DateTime<Utc>),
    /// An `envctl update` replaces services until its deadline at the latest. Exclusive: `Taken`
    /// when one exists, so two updates of one environment cannot run at once. The metadata
    /// given carries the update's own run, process and start, never the environment's.
    Update(DateTime<Utc>),
    /// A pool member's pooled services are ready (`envctl pool fill`).
    Member,
    /// An `up` adopts the pool member `metadata.id`, bringing `metadata` as its own. Exclusive:
    /// `Taken` when one exists, so a member is adopted at most once, by one `up` on any host.
    /// Listings show the adopter's metadata, not the member's.
    Adopt,
    /// A gateway creates an environment of ENV at REF (`metadata.id` is `ENV-REF`) until its
    /// deadline (`metadata.start_deadline`) at the latest. Exclusive: `Taken` when one exists,
    /// so one gateway creates it and the others wait for it.
    Create,
}

impl Marker {
    pub fn kind(self) -> MarkerKind {
        match self {
            Marker::Ready => MarkerKind::Ready,
            Marker::Pinned => MarkerKind::Pinned,
            Marker::Lease(_) => MarkerKind::Lease,
            Marker::Update(_) => MarkerKind::Update,
            Marker::Member => MarkerKind::Member,
            Marker::Adopt => MarkerKind::Adopt,
            Marker::Create => MarkerKind::Create,
        }
    }
}

/// One entry of the engine's admission queue, as the engine keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The backend's handle on the entry, the same across renewals.
    pub native: String,
    pub waiter: Waiter,
    /// When the engine created it (never a client's clock): the queue's order within a
    /// priority.
    pub created: DateTime<Utc>,
    /// Until when it holds its place without a renewal.
    pub expires: Option<DateTime<Utc>>,
}

/// A `pool fill`'s claim on an environment's pool, as the engine keeps it (see
/// `lifecycle::pool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filling {
    /// The backend's handle on the claim, the same across renewals.
    pub native: String,
    pub filler: Filler,
    /// When the engine created it (never a client's clock): of two live claims on one pool,
    /// the older fills.
    pub created: DateTime<Utc>,
    /// Until when it holds without a renewal.
    pub expires: Option<DateTime<Utc>>,
}

/// One node of a swarm, with its memory, as `envctl capacity` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMemory {
    /// The node's hostname.
    pub name: String,
    pub manager: bool,
    /// Ready and active: the swarm places tasks on it.
    pub available: bool,
    /// Bytes of memory the node has.
    pub memory: u64,
    /// Bytes reserved on it by the tasks that run or are to run there (every service's, not
    /// only envctl's): what the swarm's scheduler counts.
    pub reserved: u64,
}

/// The engine's capacity and its admission queue (see `lifecycle::admission`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// `None`: no capacity is set, every start is admitted at once.
    pub capacity: Option<Capacity>,
    /// Empty when no capacity is set (not even looked at).
    pub queue: Vec<Queued>,
}

/// One service as a listing finds it.
#[derive(Debug, Clone)]
pub struct ServiceRecord {
    pub handle: ServiceRef,
    pub metadata: ServiceMetadata,
    pub status: ServiceStatus,
}

/// One environment as a listing finds it.
#[derive(Debug, Clone)]
pub struct EnvironmentRecord {
    pub id: String,
    pub metadata: Metadata,
    pub markers: Markers,
    /// Sorted by service name.
    pub services: Vec<ServiceRecord>,
    /// Services an update put aside (stopped, out of the way of their replacements), until it
    /// finishes; sorted by service name.
    pub aside: Vec<ServiceRecord>,
    pub isolation: Vec<IsolationRef>,
    /// Its named volumes, sorted by name.
    pub volumes: Vec<VolumeRef>,
}

/// A service put aside for an update ([`Backend::put_aside`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aside {
    pub handle: ServiceRef,
    /// The address it gave up on the environment's isolation, for its replacement to take.
    pub address: Option<IpAddr>,
}

/// What [`Backend::attach`] did for this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// The services' own addresses and names answer from here through it.
    pub joined: bool,
    /// What the user should hear of it: the same container joined to other environments too.
    pub warning: Option<String>,
}

/// Which environments a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Id(String),
    /// What one `envctl up` invocation created, for its rollback.
    Run(String),
}

impl Selector {
    /// The label filters that list what this selector selects: envctl's own, narrowed.
    pub fn filters(&self) -> Vec<Filter> {
        let mut filters = vec![Filter::Managed];
        match self {
            Selector::All => {}
            Selector::Id(id) => filters.push(Filter::Id(id.clone())),
            Selector::Run(run) => filters.push(Filter::Run(run.clone())),
        }
        filters
    }
}

/// What a backend can do beyond the operations every backend has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Run a command in a running service (`exec:` and `healthcheck:` probes).
    pub exec: bool,
    /// Per-service byte counters, for the reaper's idleness.
    pub traffic: bool,
    /// `stop` keeps the service's filesystem and logs, `start` resumes it.
    pub stop_keeps_state: bool,
    pub build: bool,
    /// Images need not be in a registry.
    pub local_images: bool,
    /// A service can be put aside and restored (`envctl update`).
    pub replace_in_place: bool,
    /// A running service can be paused (no CPU, memory and ports kept) and resumed in
    /// milliseconds (`reap --pause-after`).
    pub pause: bool,
}

/// A backend, once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// The key of the engine in envctl's state store: `unix:///var/run/docker.sock` for Docker
    /// (unprefixed, so earlier reaper history survives).
    pub endpoint: String,
    pub capabilities: Capabilities,
}

/// One line of a service's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: Option<DateTime<Utc>>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<u64>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
}

/// Bytes received and sent by a service since its current run started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub received: u64,
    pub sent: u64,
}

/// The result of a command run inside a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "cannot reach the {} engine at `{endpoint}` ({origin}): {reason}\nhint: {hint}",
        backend.engine()
    )]
    Unreachable {
        backend: BackendKind,
        endpoint: String,
        /// Where the endpoint came from: a flag, a variable, a context, the default.
        origin: String,
        reason: String,
        /// What to do about it, for that origin.
        hint: String,
    },
    /// The engine took the request but sent no answer in time: it hangs.
    #[error(
        "the {} engine at `{endpoint}` stopped answering: no answer within {} to {operation}\n\
         hint: {}",
        backend.engine(),
        humantime::format_duration(rounded(*waited)),
        backend.no_answer_hint()
    )]
    NoAnswer {
        backend: BackendKind,
        endpoint: String,
        operation: String,
        waited: Duration,
    },
    /// The claim exists: try the next id. The Docker engine client also reports any name it
    /// keeps unique (a container's, a network's, a volume's) as taken with this.
    #[error("the environment id `{0}` is already in use")]
    Taken(String),
    #[error("no such {kind} `{name}`")]
    NotFound { kind: &'static str, name: String },
    /// The isolation is held by objects envctl did not create.
    #[error("`{what}` is in use by {}", users.join(", "))]
    InUse { what: String, users: Vec<String> },
    #[error("the {backend} backend cannot {operation}\nhint: {hint}")]
    Unsupported {
        backend: BackendKind,
        operation: &'static str,
        hint: String,
    },
    /// Optimistic concurrency lost: re-read, retry.
    #[error("{0} changed meanwhile")]
    Conflict(String),
    #[error("failed to {operation}: {reason}")]
    Operation { operation: String, reason: String },
}

impl BackendError {
    pub fn operation(operation: impl Into<String>, reason: impl fmt::Display) -> Self {
        BackendError::Operation {
            operation: operation.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether the engine itself failed (unreachable or hanging), rather than one request.
    pub fn is_engine_down(&self) -> bool {
        matches!(
            self,
            BackendError::Unreachable { .. } | BackendError::NoAnswer { .. }
        )
    }
}

/// A duration as people read it in a message: whole seconds, or milliseconds below one.
pub(crate) fn rounded(duration: Duration) -> Duration {
    if duration >= Duration::from_secs(1) {
        Duration::from_secs(duration.as_secs_f64().round() as u64)
    } else {
        Duration::from_millis(duration.as_millis() as u64)
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// What a backend without `capabilities.pause` answers to a pause or resume.
pub fn unsupported_pause(backend: BackendKind) -> BackendError {
    BackendError::Unsupported {
        backend,
        operation: "pause services",
        hint: "`envctl stop` stops the environment instead".into(),
    }
}

/// What envctl needs from whatever runs its environments. Implementations are cheap to share.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Which backend, its endpoint and capabilities; fixed after connecting.
    fn info(&self) -> &BackendInfo;
    /// The key of the engine in envctl's state store (see [`BackendInfo::endpoint`]).
    fn endpoint(&self) -> &str {
        &self.info().endpoint
    }
    /// What this process learnt of reaching the backend's services (see [`crate::reach`]). A
    /// backend that owns none (the in-memory fake) shares one for the whole process.
    fn reach(&self) -> &crate::reach::Reachability {
        static SHARED: crate::reach::Reachability = crate::reach::Reachability::new();
        &SHARED
    }
    /// Fails with `Unreachable` when the engine does not answer.
    async fn ping(&self) -> Result<()>;
    /// Why a `tcp:` or `http:` probe of a port the file does not publish cannot be answered
    /// from where envctl runs, when the backend knows before anything is created: `up` then
    /// refuses the environment at once, not after its timeout. `None` when such a probe can
    /// work (a swarm publishes the port for envctl's probes alone) or only trying tells.
    async fn cannot_probe_unpublished(&self) -> Option<String> {
        None
    }

    /// Lets this process reach the services of environment `id` at their own addresses and
    /// names while it needs them (a start's probes, `run`'s command), where it cannot
    /// otherwise and the backend can: Docker connects envctl's own container (envctl in a
    /// container of the same engine) to the environment's network, recorded there as envctl's.
    /// What cannot be done is no error: the backend notes why in its
    /// [`crate::reach::Reachability`], for a probe that finds no address to say. Idempotent;
    /// the default does nothing.
    async fn attach(&self, _id: &str) -> Result<Joined> {
        Ok(Joined::default())
    }
    /// Undoes what [`Backend::attach`] did for `id`, if it did anything. Idempotent.
    async fn detach(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// The image as services will run it, or `None` when it is nowhere to be found.
    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>>;
    /// The tags of `repository`, for `SERVICE@REF`.
    async fn image_tags(&self, repository: &str) -> Result<Vec<String>>;
    /// The registries this backend treats as insecure (plain HTTP or untrusted certificates
    /// allowed), which envctl's own registry requests treat the same way. None by default.
    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        Ok(crate::registry::Insecure::default())
    }
    /// Makes `resolve_image` find it: a pull on Docker, telling `on_progress` of its bytes.
    async fn fetch_image(
        &self,
        image: &ImageRef,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()>;
    /// Builds `tag` from a tar of its context. `Unsupported` unless `capabilities.build`.
    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &ImageRef) -> Result<()>;

    /// Claims `metadata.id` atomically. `Taken` when it exists, whoever made it.
    async fn claim(&self, metadata: &Metadata) -> Result<()>;
    /// The environment's isolation: a name space for its aliases, unreachable from others.
    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef>;
    /// Creates one named volume of the environment, labelled with `metadata` besides the
    /// user's labels. `Taken` when a volume of that name exists that is not this start's.
    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef>;
    /// Creates, does not start, one service.
    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef>;
    /// Starts a created or stopped service.
    async fn start_service(&self, service: &ServiceRef) -> Result<()>;
    /// Resolves when the service's current run ended, with its exit code.
    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64>;
    /// The typed state of one service.
    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus>;
    /// One item per change the backend reports to envctl's environments (created, started,
    /// stopped, removed), so a watcher such as `envctl gateway` need not poll alone. The stream
    /// ends, or yields an error, when the backend stops reporting; the default reports nothing.
    fn changes(&self) -> futures_util::stream::BoxStream<'static, Result<()>> {
        use futures_util::StreamExt;
        futures_util::stream::pending().boxed()
    }

    /// stdout and stderr merged, line by line.
    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>>;
    /// `Unsupported` unless `capabilities.exec`.
    async fn exec(&self, service: &ServiceRef, command: &[String]) -> Result<ExecOutput>;
    /// Cumulative bytes of the service's current run. `Unsupported` unless
    /// `capabilities.traffic`.
    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic>;
    /// Bytes of memory the running service uses now (one reading); `None` when the backend
    /// cannot say.
    async fn memory(&self, service: &ServiceRef) -> Result<Option<u64>> {
        let _ = service;
        Ok(None)
    }
    /// Pauses a running service: it keeps its memory and ports and gets no CPU until
    /// [`Backend::resume_service`]. `Unsupported` unless `capabilities.pause`.
    async fn pause_service(&self, service: &ServiceRef) -> Result<()>;
    /// Resumes a paused service where it was. `Unsupported` unless `capabilities.pause`.
    async fn resume_service(&self, service: &ServiceRef) -> Result<()>;
    /// Stops within `grace`, then kills. Idempotent.
    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()>;
    /// Removes, stopping within `grace` first or killing at once. Idempotent.
    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()>;
    /// Puts a service aside for an update: moves it out of the way, running or not, so a
    /// replacement can be created under the service's own name and aliases. The caller stops
    /// it (`stop_service` on the handle returned) before the replacement starts; the stop and
    /// the replacement's creation overlap. Listings show it in [`EnvironmentRecord::aside`]
    /// until it is restored or removed (`remove_service` on the handle returned).
    ///
    /// Its address goes with its name: the service leaves the isolation, so its replacement can
    /// take the address over ([`ServiceSpec::address`]) and dependents that resolved the
    /// service's name once keep reaching it; [`Aside::address`] is that address, when the
    /// backend gives addresses a replacement can take (Docker does).
    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside>;
    /// Gives a service put aside its name and aliases back (its replacement must be gone),
    /// stopped, at `address` when given (the one it had): `start_service` on the handle
    /// returned starts it again.
    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<IpAddr>,
    ) -> Result<ServiceRef>;

    /// Every environment `selector` matches, from a fixed number of list calls.
    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>>;
    /// Sets a marker; setting it again renews it (a lease) or does nothing (ready, pin).
    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()>;
    /// Removes a marker (the anchor as [`Backend::release`] does). Idempotent.
    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()>;
    /// Removes the update marker only if the update of `run` set it, so that a stale marker
    /// gives way without taking a newer update's with it. Idempotent.
    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()>;
    /// Removes the creation marker only if the creation of `run` set it: one a gateway set anew
    /// since it was listed is never touched. Idempotent.
    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()>;
    /// Removes the isolation once its services are gone; `InUse` names foreign users.
    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()>;
    /// Removes a named volume once no service uses it any more. Idempotent.
    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()>;
    /// Gives the id back: the claim goes last, so a half-removed environment stays claimed.
    async fn release(&self, id: &str) -> Result<()>;

    /// The engine's capacity and, when one is set, its admission queue: every client's, on
    /// every host. One cheap lookup when none is set.
    async fn admission(&self) -> Result<Admission>;
    /// The admission queue and every environment (pool members too), as a waiter decides on
    /// them: a start admitted meanwhile must be seen either in the queue or counted, never as
    /// neither. This reads the queue first, then what runs (the start claims before it leaves
    /// the queue); a backend that can read both in one snapshot reads them at once.
    /// Environments are listed only when a capacity is set.
    async fn admission_view(&self) -> Result<(Admission, Vec<EnvironmentRecord>)> {
        let admission = self.admission().await?;
        let environments = match admission.capacity {
            Some(_) => self.list(&Selector::All).await?,
            None => Vec::new(),
        };
        Ok((admission, environments))
    }
    /// The nodes of a swarm with their memory; empty on a single engine.
    async fn nodes_memory(&self) -> Result<Vec<NodeMemory>> {
        Ok(Vec::new())
    }
    /// Sets the engine's capacity, replacing the one set; `None` removes it.
    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()>;
    /// Adds `waiter` to the admission queue, holding its place until `until`: the handle of
    /// its entry.
    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String>;
    /// Moves an entry's expiry to `until`. `NotFound` once it is gone.
    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()>;
    /// Removes an entry of the queue. Idempotent.
    async fn dequeue(&self, native: &str) -> Result<()>;

    /// Claims the filling of `filler.environment`'s pool until `until`: the handle of the
    /// claim. Not exclusive by itself: of the live claims on one pool, the oldest by the
    /// engine's clock fills (see `lifecycle::pool`).
    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String>;
    /// Every fill claim on the engine, live or expired, every host's.
    async fn fill_claims(&self) -> Result<Vec<Filling>>;
    /// Moves a fill claim's expiry to `until`. `NotFound` once it is gone.
    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()>;
    /// Removes a fill claim. Idempotent.
    async fn release_fill(&self, native: &str) -> Result<()>;
}
