//! The one codec of envctl's metadata: typed environment and service metadata to labels and
//! back, and the label filters that find them.
//!
//! Every label envctl writes or reads goes through here; nothing else formats or parses one.
//! The Docker labels it writes are byte for byte those earlier versions of envctl wrote, so
//! environments started by them, and the reaper's history of them, keep working.
//!
//! A key that is absent decodes to `None`, never to an empty string: environments started by
//! older versions lack some keys, and a value that is not there is not a value that is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::image::{ImageRef, split_image};
use super::label;
use super::values::{GatewayEntry, Port, Protocol, Ready};

/// Labels as key-value pairs.
pub type Labels = BTreeMap<String, String>;

/// What the CI build that started an environment tells about itself (Jenkins' variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Build {
    pub url: Option<String>,
    pub job_name: Option<String>,
    pub git_commit: Option<String>,
}

/// `SERVICE@TAG`: a service started from the local tag that `SERVICE@REF` resolved to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedRef {
    pub service: String,
    pub tag: String,
}

impl fmt::Display for ResolvedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.service, self.tag)
    }
}

/// Environment-wide metadata, carried by every resource of the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub id: String,
    /// The environment's name (the file's `name:` or stem).
    pub environment: Option<String>,
    /// The nonce of the `envctl up` that created it, for its rollback.
    pub run: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// By when the start must have finished (`up --timeout`).
    pub start_deadline: Option<DateTime<Utc>>,
    /// `--ttl`: the reaper stops the environment after this, whatever its activity.
    pub expires_at: Option<DateTime<Utc>>,
    /// Jenkins' `BUILD_TAG`, else the user.
    pub owner: Option<String>,
    /// `host:pid` of the starting `envctl up`.
    pub started_by: Option<String>,
    /// The starting process, `boot-id:pid-namespace:pid:start-time` (see `lifecycle::process`).
    pub process: Option<String>,
    /// Every service of the environment; `None` for environments started before envctl
    /// recorded them.
    pub services: Option<Vec<String>>,
    pub refs: Vec<ResolvedRef>,
    pub build: Build,
    /// The file's `gateway: SERVICE:PORT`, the entry `envctl gateway` proxies to.
    pub gateway: Option<GatewayEntry>,
    /// The environment files it was started from, absolute, later ones overriding the earlier;
    /// `None` when not known (read from standard input, or started by an earlier envctl).
    pub files: Option<Vec<PathBuf>>,
    /// On a pool member: the fingerprint of each pooled service as filled (see
    /// `lifecycle::pool`); `None` on environments.
    pub pool: Option<BTreeMap<String, String>>,
    /// On an adopted environment: when the pool member it adopted was filled.
    pub adopted: Option<DateTime<Utc>>,
    /// Bytes of memory the environment reserved when it was admitted (see
    /// `lifecycle::admission`); `None` when the engine had no capacity, or an earlier envctl
    /// started it.
    pub memory: Option<u64>,
}

/// What a marker records (see [`crate::naming::marker_name`]): the one kind of marker that
/// backends set, clear, list and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarkerKind {
    /// Claims the id.
    Anchor,
    /// The start finished.
    Ready,
    /// The reaper leaves the environment alone.
    Pinned,
    /// A running `envctl run` uses it.
    Lease,
    /// An `envctl update` is replacing services (see `naming::update_name`).
    Update,
    /// A pool member is ready to be adopted (see `naming::member_name`).
    Member,
    /// An `up` adopted the pool member (see `naming::adopt_name`).
    Adopt,
    /// `envctl gateway --create` is creating an environment of ENV at REF (see
    /// `naming::create_name`): the one creation of it across gateways.
    Create,
    /// The engine's capacity (see `naming::CAPACITY_NAME`): no environment's.
    Capacity,
    /// A waiter's entry in the admission queue (see `naming::queue_name`): no environment's.
    Queue,
    /// A `pool fill`'s claim on an environment's pool (see `naming::fill_name`): no
    /// environment's id.
    Fill,
}

impl MarkerKind {
    /// The value of [`label::ROLE`] on the marker.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerKind::Anchor => super::ANCHOR_ROLE,
            MarkerKind::Ready => super::READY_ROLE,
            MarkerKind::Pinned => super::PIN_ROLE,
            MarkerKind::Lease => super::LEASE_ROLE,
            MarkerKind::Update => super::UPDATE_ROLE,
            MarkerKind::Member => super::MEMBER_ROLE,
            MarkerKind::Adopt => super::ADOPT_ROLE,
            MarkerKind::Create => super::CREATE_ROLE,
            MarkerKind::Capacity => super::CAPACITY_ROLE,
            MarkerKind::Queue => super::QUEUE_ROLE,
            MarkerKind::Fill => super::FILL_ROLE,
        }
    }

    fn parse(text: &str) -> Option<MarkerKind> {
        [
            MarkerKind::Anchor,
            MarkerKind::Ready,
            MarkerKind::Pinned,
            MarkerKind::Lease,
            MarkerKind::Update,
            MarkerKind::Member,
            MarkerKind::Adopt,
            MarkerKind::Create,
            MarkerKind::Capacity,
            MarkerKind::Queue,
            MarkerKind::Fill,
        ]
        .into_iter()
        .find(|role| role.as_str() == text)
    }
}

/// What one service's resource carries beyond the environment's metadata.
#[derive(Debug, Clone)]
pub struct ServiceMetadata {
    pub service: String,
    /// The image the service was started from, as `up` resolved it.
    pub image: Option<ImageRef>,
    /// The services this one depends on, so `down` and `start` can order them without the file.
    pub depends_on: BTreeSet<String>,
    /// Container ports published on the host.
    pub ports: Vec<Port>,
    /// The readiness spec, so `start` can wait for readiness without the file.
    pub ready: Option<Ready>,
    /// `SERVICE@TAG` when the service's tag came from a `SERVICE@REF`: each container carries
    /// its own, since `envctl update` replaces them one by one. `None` on containers of
    /// earlier versions, which only the environment's `refs` describe.
    pub reference: Option<ResolvedRef>,
    /// The names it answers to on the environment's network besides `service` (link aliases).
    pub aliases: Vec<String>,
    /// The address it was created with on the environment's network, when it took over that of
    /// the container it replaced; `None` when the engine chose one.
    pub address: Option<IpAddr>,
    /// A digest of each group of its settings as created (see `spec::settings_digests`); empty on
    /// containers of earlier versions.
    pub settings: BTreeMap<String, String>,
}

/// A label filter: what a list call asks the engine for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Everything envctl created.
    Managed,
    /// One environment's resources.
    Id(String),
    /// What one `envctl up` invocation created.
    Run(String),
    /// One service's resources.
    Service(String),
    /// The resources of every copy of one environment.
    Environment(String),
    /// The markers of one role.
    Role(MarkerKind),
}

impl Filter {
    /// The filter as Docker's `label` filter takes it: `key=value`.
    pub fn to_docker(&self) -> String {
        let (key, value) = match self {
            Filter::Managed => (label::MANAGED_BY, super::MANAGER),
            Filter::Id(id) => (label::ID, id.as_str()),
            Filter::Run(run) => (label::RUN, run.as_str()),
            Filter::Service(service) => (label::SERVICE, service.as_str()),
            Filter::Environment(name) => (label::ENVIRONMENT, name.as_str()),
            Filter::Role(role) => (label::ROLE, role.as_str()),
        };
        format!("{key}={value}")
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &Labels) -> bool {
        let (key, value) = self
            .to_docker()
            .split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .expect("key=value");
        labels.get(&key) == Some(&value)
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

impl Metadata {
    /// The metadata of a new environment: `id` alone, the rest to fill in.
    pub fn new(id: impl Into<String>) -> Metadata {
        Metadata {
            id: id.into(),
            environment: None,
            run: None,
            created_at: None,
            start_deadline: None,
            expires_at: None,
            owner: None,
            started_by: None,
            process: None,
            services: None,
            refs: Vec::new(),
            build: Build::default(),
            gateway: None,
            files: None,
            pool: None,
            adopted: None,
            memory: None,
        }
    }

    /// The labels of every resource of the environment.
    pub fn encode(&self) -> Labels {
        let mut labels = Labels::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                labels.insert(key.to_string(), value);
            }
        };
        put(label::MANAGED_BY, Some(super::MANAGER.to_string()));
        put(label::ID, Some(self.id.clone()));
        put(label::ENVIRONMENT, self.environment.clone());
        put(label::CREATED_AT, self.created_at.map(time));
        let refs: Vec<String> = self.refs.iter().map(ToString::to_string).collect();
        put(label::REFS, Some(refs.join(",")));
        put(label::SERVICES, self.services.as_ref().map(|s| s.join(",")));
        put(label::OWNER, self.owner.clone());
        put(label::STARTED_BY, self.started_by.clone());
        put(label::PROCESS, self.process.clone());
        put(label::START_DEADLINE, self.start_deadline.map(time));
        put(label::RUN, self.run.clone());
        put(label::EXPIRES_AT, self.expires_at.map(time));
        put(label::BUILD_URL, self.build.url.clone());
        put(label::JOB_NAME, self.build.job_name.clone());
        put(label::GIT_COMMIT, self.build.git_commit.clone());
        put(
            label::GATEWAY,
            self.gateway.as_ref().map(ToString::to_string),
        );
        put(
            label::FILES,
            self.files.as_ref().map(|files| {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                serde_json::to_string(&files).unwrap_or_default()
            }),
        );
        put(
            label::POOL,
            self.pool.as_ref().map(|pool| {
                let pairs: Vec<String> = pool.iter().map(|(s, f)| format!("{s}={f}")).collect();
                pairs.join(",")
            }),
        );
        put(label::ADOPTED, self.adopted.map(time));
        put(label::MEMORY, self.memory.map(|bytes| bytes.to_string()));
        labels
    }

    /// The labels of a marker of the environment.
    pub fn encode_marker(&self, role: MarkerKind) -> Labels {
        let mut labels = match role {
            // A pin outlives the start: it carries only what identifies the environment.
            MarkerKind::Pinned => {
                let mut labels = self.encode();
                labels.retain(|key, _| {
                    [
                        label::MANAGED_BY,
                        label::ID,
                        label::ENVIRONMENT,
                        label::CREATED_AT,
                        label::OWNER,
                    ]
                    .contains(&key.as_str())
                });
                labels
            }
            _ => self.encode(),
        };
        labels.insert(label::ROLE.into(), role.as_str().into());
        labels
    }

    /// The labels of one service's resource.
    pub fn encode_service(&self, service: &ServiceMetadata) -> Labels {
        let mut labels = self.encode();
        let depends_on: Vec<&str> = service.depends_on.iter().map(String::as_str).collect();
        let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
        labels.insert(label::SERVICE.into(), service.service.clone());
        if let Some(image) = &service.image {
            labels.insert(label::IMAGE.into(), image.to_string());
        }
        labels.insert(label::DEPENDS_ON.into(), depends_on.join(","));
        labels.insert(label::PORTS.into(), ports.join(","));
        if let Some(ready) = &service.ready {
            labels.insert(label::READY.into(), ready.to_label());
        }
        if let Some(reference) = &service.reference {
            labels.insert(label::REF.into(), reference.to_string());
        }
        if !service.aliases.is_empty() {
            labels.insert(label::ALIASES.into(), service.aliases.join(","));
        }
        if let Some(address) = service.address {
            labels.insert(label::ADDRESS.into(), address.to_string());
        }
        if !service.settings.is_empty() {
            let settings: Vec<String> = service
                .settings
                .iter()
                .map(|(group, digest)| format!("{group}={digest}"))
                .collect();
            labels.insert(label::SETTINGS.into(), settings.join(","));
        }
        labels
    }

    /// Reads the environment's metadata; `None` unless the labels are envctl's and name an id.
    pub fn decode(labels: &Labels) -> Option<Metadata> {
        if !Filter::Managed.matches(labels) {
            return None;
        }
        let get = |key: &str| labels.get(key).cloned();
        let refs = labels.get(label::REFS).map_or("", String::as_str);
        Some(Metadata {
            id: get(label::ID)?,
            environment: get(label::ENVIRONMENT),
            run: get(label::RUN),
            created_at: get(label::CREATED_AT).as_deref().and_then(parse_time),
            start_deadline: get(label::START_DEADLINE).as_deref().and_then(parse_time),
            expires_at: get(label::EXPIRES_AT).as_deref().and_then(parse_time),
            owner: get(label::OWNER),
            started_by: get(label::STARTED_BY),
            process: get(label::PROCESS),
            services: get(label::SERVICES).map(|s| list(&s).map(str::to_string).collect()),
            refs: list(refs).filter_map(resolved_ref).collect(),
            build: Build {
                url: get(label::BUILD_URL),
                job_name: get(label::JOB_NAME),
                git_commit: get(label::GIT_COMMIT),
            },
            gateway: get(label::GATEWAY).as_deref().and_then(GatewayEntry::parse),
            files: get(label::FILES)
                .and_then(|files| serde_json::from_str::<Vec<PathBuf>>(&files).ok()),
            pool: get(label::POOL).map(|pool| {
                list(&pool)
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(s, f)| (s.to_string(), f.to_string()))
                    .collect()
            }),
            adopted: get(label::ADOPTED).as_deref().and_then(parse_time),
            memory: get(label::MEMORY).and_then(|bytes| bytes.parse().ok()),
        })
    }
}

impl Metadata {
    /// The labels of a resource another backend than Docker answers for, on an engine that
    /// the Docker backend lists too (a swarm task's volume, on its node).
    pub fn encode_for(&self, backend: &str) -> Labels {
        let mut labels = self.encode();
        labels.insert(label::BACKEND.into(), backend.into());
        labels
    }
}

/// The backend the labels name (see [`Metadata::encode_for`]); `None`: Docker's.
pub fn backend(labels: &Labels) -> Option<&str> {
    labels.get(label::BACKEND).map(String::as_str)
}

/// The marker role the labels carry; `None` on a service's resources.
pub fn role(labels: &Labels) -> Option<MarkerKind> {
    MarkerKind::parse(labels.get(label::ROLE)?)
}

/// The id the labels carry.
pub fn id(labels: &Labels) -> Option<&str> {
    labels.get(label::ID).map(String::as_str)
}

/// The network alias that records an endpoint as envctl's own attachment: envctl's container
/// joined an environment's network for itself (its probes, `run`'s command). Docker keeps no
/// labels on a network endpoint, but keeps its aliases (`docker inspect` shows them). Only
/// containers other than the environment's services are ever judged by it.
const ATTACHMENT_ALIAS: &str = "io.envctl.attached";

/// The aliases under which envctl's own container joins an environment's network.
pub fn attachment_aliases() -> Vec<String> {
    vec![ATTACHMENT_ALIAS.to_string()]
}

/// Whether an endpoint with `aliases` is envctl's own attachment.
pub fn is_attachment(aliases: &[String]) -> bool {
    aliases.iter().any(|alias| alias == ATTACHMENT_ALIAS)
}

impl ServiceMetadata {
    /// Reads a service's metadata; `None` when the labels name no service.
    pub fn decode(labels: &Labels) -> Option<ServiceMetadata> {
        let service = labels.get(label::SERVICE)?.clone();
        let get = |key: &str| labels.get(key).map_or("", String::as_str);
        Some(ServiceMetadata {
            service,
            image: labels.get(label::IMAGE).and_then(|i| image(i)),
            depends_on: list(get(label::DEPENDS_ON)).map(str::to_string).collect(),
            ports: list(get(label::PORTS)).filter_map(port).collect(),
            ready: labels.get(label::READY).and_then(|r| Ready::from_label(r)),
            reference: labels.get(label::REF).and_then(|r| resolved_ref(r)),
            aliases: list(get(label::ALIASES)).map(str::to_string).collect(),
            address: labels.get(label::ADDRESS).and_then(|a| a.parse().ok()),
            settings: list(get(label::SETTINGS))
                .filter_map(|pair| pair.split_once('='))
                .map(|(group, digest)| (group.to_string(), digest.to_string()))
                .collect(),
        })
    }
}

/// The capacity of an engine, every client's (see `lifecycle::admission`): each limit
/// `None` when not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    pub max_environments: Option<u32>,
    /// Bytes.
    pub max_memory: Option<u64>,
    /// Bytes a service without `mem_limit` reserves.
    pub default_memory: Option<u64>,
    /// How many environments one owner may have counted at once.
    pub per_owner: Option<u32>,
    /// Environments idle longer than this are stopped to make room.
    pub preempt_idle: Option<std::time::Duration>,
}

impl Capacity {
    /// The labels of the capacity marker.
    pub fn encode(&self) -> Labels {
        let mut labels = Labels::new();
        labels.insert(label::MANAGED_BY.into(), super::MANAGER.into());
        labels.insert(label::ROLE.into(), MarkerKind::Capacity.as_str().into());
        let mut put = |key: &str, value: Option<u64>| {
            if let Some(value) = value {
                labels.insert(key.into(), value.to_string());
            }
        };
        put(
            label::MAX_ENVIRONMENTS,
            self.max_environments.map(u64::from),
        );
        put(label::MAX_MEMORY, self.max_memory);
        put(label::DEFAULT_MEMORY, self.default_memory);
        put(label::PER_OWNER, self.per_owner.map(u64::from));
        put(label::PREEMPT_IDLE, self.preempt_idle.map(|d| d.as_secs()));
        labels
    }

    /// Reads a capacity marker's labels; `None` unless they are one.
    pub fn decode(labels: &Labels) -> Option<Capacity> {
        if !Filter::Managed.matches(labels) || role(labels) != Some(MarkerKind::Capacity) {
            return None;
        }
        let get = |key: &str| labels.get(key).and_then(|v| v.parse::<u64>().ok());
        Some(Capacity {
            max_environments: get(label::MAX_ENVIRONMENTS).and_then(|n| n.try_into().ok()),
            max_memory: get(label::MAX_MEMORY),
            default_memory: get(label::DEFAULT_MEMORY),
            per_owner: get(label::PER_OWNER).and_then(|n| n.try_into().ok()),
            preempt_idle: get(label::PREEMPT_IDLE).map(std::time::Duration::from_secs),
        })
    }
}

/// A start's place among those waiting for capacity: higher goes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// After every other start: filling a warm pool.
    Low,
    /// CI jobs, in arrival order.
    #[default]
    Normal,
    /// A person waits: a terminal, `--priority high`, the gateway's wake.
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    fn parse(text: &str) -> Priority {
        match text {
            "low" => Priority::Low,
            "high" => Priority::High,
            _ => Priority::Normal,
        }
    }
}

/// Who waits in the admission queue, and for what: a queue entry's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// A nonce of the waiting process, in the entry's name.
    pub nonce: String,
    /// Interactive starts go first, pool fills last.
    pub priority: Priority,
    pub owner: Option<String>,
    /// The environment's name (the file's `name:` or stem).
    pub environment: Option<String>,
    /// `host:pid` of the waiting envctl.
    pub started_by: Option<String>,
    /// Bytes it asks for.
    pub memory: u64,
    /// Its waiter was admitted and is about to claim: it counts as an environment (no label:
    /// the entry's name carries it, see `naming::queue_name`).
    pub admitted: bool,
}

impl Waiter {
    /// The labels of its queue entry.
    pub fn encode(&self) -> Labels {
        let mut labels = Labels::new();
        labels.insert(label::MANAGED_BY.into(), super::MANAGER.into());
        labels.insert(label::ROLE.into(), MarkerKind::Queue.as_str().into());
        labels.insert(label::WAITER.into(), self.nonce.clone());
        labels.insert(label::PRIORITY.into(), self.priority.as_str().into());
        labels.insert(label::MEMORY.into(), self.memory.to_string());
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                labels.insert(key.into(), value.clone());
            }
        };
        put(label::OWNER, &self.owner);
        put(label::ENVIRONMENT, &self.environment);
        put(label::STARTED_BY, &self.started_by);
        labels
    }

    /// Reads a queue entry's labels; `None` unless they are one.
    pub fn decode(labels: &Labels) -> Option<Waiter> {
        if !Filter::Managed.matches(labels) || role(labels) != Some(MarkerKind::Queue) {
            return None;
        }
        Some(Waiter {
            nonce: labels.get(label::WAITER)?.clone(),
            priority: Priority::parse(labels.get(label::PRIORITY).map_or("", String::as_str)),
            owner: labels.get(label::OWNER).cloned(),
            environment: labels.get(label::ENVIRONMENT).cloned(),
            started_by: labels.get(label::STARTED_BY).cloned(),
            memory: labels
                .get(label::MEMORY)
                .and_then(|m| m.parse().ok())
                .unwrap_or(0),
            admitted: false,
        })
    }
}

/// A queue entry that carries its own terms in its labels, for backends whose markers' labels
/// can change (a swarm's configs; see [`label::QUEUE_EXPIRES`]).
impl Waiter {
    /// The labels of its entry, holding its place until `expires`.
    pub fn encode_with_terms(&self, expires: DateTime<Utc>) -> Labels {
        let mut labels = self.encode();
        labels.insert(label::QUEUE_EXPIRES.into(), expires.timestamp().to_string());
        if self.admitted {
            labels.insert(label::ADMITTED.into(), "true".into());
        }
        labels
    }

    /// Reads an entry's labels written by [`Waiter::encode_with_terms`]: the waiter, and until
    /// when its entry holds its place (`None` when it does not say).
    pub fn decode_with_terms(labels: &Labels) -> Option<(Waiter, Option<DateTime<Utc>>)> {
        let waiter = Waiter {
            admitted: labels.get(label::ADMITTED).is_some_and(|a| a == "true"),
            ..Waiter::decode(labels)?
        };
        let expires = labels
            .get(label::QUEUE_EXPIRES)
            .and_then(|seconds| seconds.parse().ok())
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
        Some((waiter, expires))
    }
}

/// Who fills an environment's pool: a fill claim's labels (see `lifecycle::pool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filler {
    /// A nonce of the filling process, in the claim's name.
    pub nonce: String,
    /// The environment whose pool it fills.
    pub environment: String,
    /// `host:pid` of the filling envctl.
    pub started_by: Option<String>,
    /// The filling process, as `lifecycle::process` recognizes it.
    pub process: Option<String>,
}

impl Filler {
    /// The labels of its claim. No id: the claim is no environment's.
    pub fn encode(&self) -> Labels {
        let mut labels = Labels::new();
        labels.insert(label::MANAGED_BY.into(), super::MANAGER.into());
        labels.insert(label::ROLE.into(), MarkerKind::Fill.as_str().into());
        labels.insert(label::RUN.into(), self.nonce.clone());
        labels.insert(label::ENVIRONMENT.into(), self.environment.clone());
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                labels.insert(key.into(), value.clone());
            }
        };
        put(label::STARTED_BY, &self.started_by);
        put(label::PROCESS, &self.process);
        labels
    }

    /// Reads a fill claim's labels; `None` unless they are one.
    pub fn decode(labels: &Labels) -> Option<Filler> {
        if !Filter::Managed.matches(labels) || role(labels) != Some(MarkerKind::Fill) {
            return None;
        }
        Some(Filler {
            nonce: labels.get(label::RUN)?.clone(),
            environment: labels.get(label::ENVIRONMENT)?.clone(),
            started_by: labels.get(label::STARTED_BY).cloned(),
            process: labels.get(label::PROCESS).cloned(),
        })
    }
}

/// Marks `ports` as published for envctl's own probes alone (see [`label::PROBE_PORTS`]);
/// nothing when there are none.
pub fn mark_probe_ports(labels: &mut Labels, ports: &[Port]) {
    if !ports.is_empty() {
        let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
        labels.insert(label::PROBE_PORTS.into(), ports.join(","));
    }
}

/// The container ports the labels mark as published for envctl's own probes alone.
pub fn probe_ports(labels: &Labels) -> Vec<Port> {
    list(labels.get(label::PROBE_PORTS).map_or("", String::as_str))
        .filter_map(port)
        .collect()
}

/// `SERVICE@TAG`.
fn resolved_ref(text: &str) -> Option<ResolvedRef> {
    let (service, tag) = text.split_once('@')?;
    Some(ResolvedRef {
        service: service.into(),
        tag: tag.into(),
    })
}

/// `repository:tag` as `up` wrote it; a reference without a tag means `latest`.
fn image(text: &str) -> Option<ImageRef> {
    let (repository, tag) = split_image(text).ok()?;
    Some(ImageRef {
        repository,
        tag: tag.unwrap_or_else(|| "latest".into()),
    })
}

/// `8080/tcp`.
fn port(text: &str) -> Option<Port> {
    let (number, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some(Port {
        number: number.parse().ok()?,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn golden(json: &str) -> Labels {
        serde_json::from_str(json).expect("golden labels")
    }

    /// Labels that `envctl up --name seam-golden --ttl 2h` wrote on the demo environment, in a
    /// Jenkins build, before this codec existed (`docker inspect`).
    const ANCHOR: &str = r#"{"io.envctl.build-url":"http://ci/1","io.envctl.created-at":"2026-11-26T09:35:23.814128694+00:00","io.envctl.environment":"demo","io.envctl.expires-at":"2026-11-26T11:35:23.814128694+00:00","io.envctl.git-commit":"abc","io.envctl.id":"seam-golden","io.envctl.job-name":"job","io.envctl.managed-by":"envctl","io.envctl.owner":"root","io.envctl.process":"00a6db9e-dd17-4e58-a6f1-13d4c2649951:4026531836:18698:280773","io.envctl.refs":"","io.envctl.role":"anchor","io.envctl.run":"e72d0612b81e0c80","io.envctl.services":"accounting,activemq,oracle-xe,proxy","io.envctl.start-deadline":"2026-11-26T09:45:23.814130516+00:00","io.envctl.started-by":"vm:18698"}"#;
    const PROXY: &str = r#"{"io.envctl.build-url":"http://ci/1","io.envctl.created-at":"2026-11-26T09:35:23.814128694+00:00","io.envctl.depends-on":"accounting,activemq,oracle-xe","io.envctl.environment":"demo","io.envctl.expires-at":"2026-11-26T11:35:23.814128694+00:00","io.envctl.git-commit":"abc","io.envctl.id":"seam-golden","io.envctl.image":"envctl-demo/proxy:latest","io.envctl.job-name":"job","io.envctl.managed-by":"envctl","io.envctl.owner":"root","io.envctl.ports":"8080/tcp","io.envctl.process":"00a6db9e-dd17-4e58-a6f1-13d4c2649951:4026531836:18698:280773","io.envctl.ready":"{\"probes\":[{\"http\":[8080,\"/health\"]}],\"timeout_ms\":300000}","io.envctl.refs":"","io.envctl.run":"e72d0612b81e0c80","io.envctl.service":"proxy","io.envctl.services":"accounting,activemq,oracle-xe,proxy","io.envctl.start-deadline":"2026-11-26T09:45:23.814130516+00:00","io.envctl.started-by":"vm:18698"}"#;
    const NETWORK: &str = r#"{"io.envctl.build-url":"http://ci/1","io.envctl.created-at":"2026-11-26T09:35:23.814128694+00:00","io.envctl.environment":"demo","io.envctl.expires-at":"2026-11-26T11:35:23.814128694+00:00","io.envctl.git-commit":"abc","io.envctl.id":"seam-golden","io.envctl.job-name":"job","io.envctl.managed-by":"envctl","io.envctl.owner":"root","io.envctl.process":"00a6db9e-dd17-4e58-a6f1-13d4c2649951:4026531836:18698:280773","io.envctl.refs":"","io.envctl.run":"e72d0612b81e0c80","io.envctl.services":"accounting,activemq,oracle-xe,proxy","io.envctl.start-deadline":"2026-11-26T09:45:23.814130516+00:00","io.envctl.started-by":"vm:18698"}"#;
    const PIN: &str = r#"{"io.envctl.created-at":"2026-11-26T09:35:23.814128694+00:00","io.envctl.environment":"demo","io.envctl.id":"seam-golden","io.envctl.managed-by":"envctl","io.envctl.owner":"root","io.envctl.role":"pin"}"#;

    fn metadata() -> Metadata {
        let at = |text: &str| parse_time(text).unwrap();
        Metadata {
            environment: Some("demo".into()),
            run: Some("e72d0612b81e0c80".into()),
            created_at: Some(at("2026-11-26T09:35:23.814128694+00:00")),
            start_deadline: Some(at("2026-11-26T09:45:23.814130516+00:00")),
            expires_at: Some(at("2026-11-26T11:35:23.814128694+00:00")),
            owner: Some("root".into()),
            started_by: Some("vm:18698".into()),
            process: Some("00a6db9e-dd17-4e58-a6f1-13d4c2649951:4026531836:18698:280773".into()),
            services: Some(
                ["accounting", "activemq", "oracle-xe", "proxy"]
                    .map(String::from)
                    .to_vec(),
            ),
            refs: Vec::new(),
            build: Build {
                url: Some("http://ci/1".into()),
                job_name: Some("job".into()),
                git_commit: Some("abc".into()),
            },
            ..Metadata::new("seam-golden")
        }
    }

    fn proxy() -> ServiceMetadata {
        ServiceMetadata {
            service: "proxy".into(),
            image: image("envctl-demo/proxy:latest"),
            depends_on: ["accounting", "activemq", "oracle-xe"]
                .map(String::from)
                .into(),
            ports: vec![Port {
                number: 8080,
                protocol: Protocol::Tcp,
            }],
            ready: Some(Ready {
                probes: vec![super::super::values::Probe::Http {
                    port: 8080,
                    path: "/health".into(),
                }],
                timeout: Duration::from_secs(300),
            }),
            reference: None,
            aliases: Vec::new(),
            address: None,
            settings: BTreeMap::new(),
        }
    }

    #[test]
    fn docker_labels_are_byte_identical_to_those_earlier_versions_wrote() {
        let metadata = metadata();
        assert_eq!(metadata.encode_marker(MarkerKind::Anchor), golden(ANCHOR));
        assert_eq!(metadata.encode_service(&proxy()), golden(PROXY));
        assert_eq!(metadata.encode(), golden(NETWORK));
        assert_eq!(metadata.encode_marker(MarkerKind::Pinned), golden(PIN));
    }

    #[test]
    fn labels_written_by_earlier_versions_decode_to_what_they_meant() {
        for json in [ANCHOR, PROXY, NETWORK] {
            assert_eq!(Metadata::decode(&golden(json)), Some(metadata()), "{json}");
        }
        let service = ServiceMetadata::decode(&golden(PROXY)).unwrap();
        assert_eq!(service.service, "proxy");
        assert_eq!(service.image, proxy().image);
        assert_eq!(service.depends_on, proxy().depends_on);
        assert_eq!(service.ports, proxy().ports);
        assert_eq!(
            service.ready.map(|r| r.to_label()),
            proxy().ready.map(|r| r.to_label())
        );
        assert!(ServiceMetadata::decode(&golden(ANCHOR)).is_none());
        assert_eq!(role(&golden(ANCHOR)), Some(MarkerKind::Anchor));
        assert_eq!(role(&golden(PIN)), Some(MarkerKind::Pinned));
        assert_eq!(role(&golden(PROXY)), None);
    }

    #[test]
    fn files_aliases_address_and_settings_read_back_as_written() {
        let metadata = Metadata {
            files: Some(vec!["/srv/a,b.yaml".into(), "/srv/local.yaml".into()]),
            ..metadata()
        };
        let service = ServiceMetadata {
            aliases: vec!["web".into(), "front".into()],
            address: Some("172.16.3.4".parse().unwrap()),
            settings: ["command", "env", "mounts", "other", "ports"]
                .map(|group| (group.to_string(), "3f1a2b4c5d6e".to_string()))
                .into(),
            ..proxy()
        };
        let labels = metadata.encode_service(&service);
        assert_eq!(Metadata::decode(&labels), Some(metadata.clone()));
        let read = ServiceMetadata::decode(&labels).unwrap();
        assert_eq!(read.aliases, service.aliases);
        assert_eq!(read.address, service.address);
        assert_eq!(read.settings, service.settings);
        let groups: Vec<&str> = read.settings.keys().map(String::as_str).collect();
        assert_eq!(groups, ["command", "env", "mounts", "other", "ports"]);
    }

    #[test]
    fn an_absent_key_decodes_to_none_not_to_an_empty_value() {
        let mut labels = golden(ANCHOR);
        for key in [label::SERVICES, label::OWNER, label::START_DEADLINE] {
            labels.remove(key);
        }
        let decoded = Metadata::decode(&labels).unwrap();
        assert_eq!(decoded.services, None, "older versions wrote no services");
        assert_eq!(decoded.owner, None);
        assert_eq!(decoded.start_deadline, None);
        let mut empty = golden(ANCHOR);
        empty.insert(label::SERVICES.into(), String::new());
        assert_eq!(Metadata::decode(&empty).unwrap().services, Some(Vec::new()));
        let mut foreign = golden(ANCHOR);
        foreign.remove(label::MANAGED_BY);
        assert_eq!(Metadata::decode(&foreign), None, "not envctl's");
    }

    #[test]
    fn refs_round_trip_as_service_at_tag() {
        let mut metadata = metadata();
        metadata.refs = vec![ResolvedRef {
            service: "accounting".into(),
            tag: "ea6757a8090d".into(),
        }];
        let labels = metadata.encode();
        assert_eq!(labels[label::REFS], "accounting@ea6757a8090d");
        assert_eq!(Metadata::decode(&labels), Some(metadata));
    }

    #[test]
    fn a_service_carries_its_own_ref_only_when_it_has_one() {
        let mut proxy = proxy();
        assert!(!metadata().encode_service(&proxy).contains_key(label::REF));
        proxy.reference = Some(ResolvedRef {
            service: "proxy".into(),
            tag: "d277d11f1376".into(),
        });
        let labels = metadata().encode_service(&proxy);
        assert_eq!(labels[label::REF], "proxy@d277d11f1376");
        assert_eq!(
            ServiceMetadata::decode(&labels).unwrap().reference,
            proxy.reference
        );
        let marker = metadata().encode_marker(MarkerKind::Update);
        assert_eq!(marker[label::ROLE], "update");
        assert_eq!(role(&marker), Some(MarkerKind::Update));
    }

    #[test]
    fn filters_render_as_docker_label_filters_and_match_labels() {
        let labels = golden(PROXY);
        let table = [
            (Filter::Managed, "io.envctl.managed-by=envctl", true),
            (
                Filter::Id("seam-golden".into()),
                "io.envctl.id=seam-golden",
                true,
            ),
            (Filter::Id("seam".into()), "io.envctl.id=seam", false),
            (
                Filter::Run("e72d0612b81e0c80".into()),
                "io.envctl.run=e72d0612b81e0c80",
                true,
            ),
            (Filter::Service("db".into()), "io.envctl.service=db", false),
        ];
        for (filter, docker, matches) in table {
            assert_eq!(filter.to_docker(), docker);
            assert_eq!(filter.matches(&labels), matches, "{filter:?}");
        }
    }

    #[test]
    fn probe_ports_are_marked_only_when_there_are_some_and_read_back() {
        let tcp = |number| Port {
            number,
            protocol: Protocol::Tcp,
        };
        let mut labels = Labels::new();
        mark_probe_ports(&mut labels, &[]);
        assert!(labels.is_empty());
        mark_probe_ports(&mut labels, &[tcp(61616), tcp(8080)]);
        assert_eq!(labels[label::PROBE_PORTS], "61616/tcp,8080/tcp");
        assert_eq!(probe_ports(&labels), [tcp(61616), tcp(8080)]);
        assert_eq!(probe_ports(&Labels::new()), []);
    }

    #[test]
    fn unpublished_probe_ports_are_the_tcp_and_http_ports_not_published_as_tcp() {
        use crate::naming::values::Probe;
        let ready = Ready {
            probes: vec![
                Probe::Tcp(61616),
                Probe::Http {
                    port: 8080,
                    path: "/health".into(),
                },
                Probe::Tcp(1521),
                Probe::Tcp(53),
                Probe::Tcp(61616),
                Probe::Exec(vec!["true".into()]),
            ],
            timeout: Duration::from_secs(60),
        };
        let published = [
            Port {
                number: 1521,
                protocol: Protocol::Tcp,
            },
            Port {
                number: 53,
                protocol: Protocol::Udp,
            },
        ];
        let numbers: Vec<u16> = ready
            .unpublished_ports(published)
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(numbers, [61616, 8080, 53]);
    }

    #[test]
    fn a_queue_entry_that_carries_its_terms_gives_them_back_and_plain_entries_give_none() {
        let waiter = Waiter {
            nonce: "n1".into(),
            priority: Priority::High,
            owner: Some("jenkins".into()),
            environment: Some("demo".into()),
            started_by: Some("vm:1".into()),
            memory: 64 << 20,
            admitted: true,
        };
        let until = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let labels = waiter.encode_with_terms(until);
        assert_eq!(
            Waiter::decode_with_terms(&labels),
            Some((waiter.clone(), Some(until)))
        );
        let waiting = Waiter {
            admitted: false,
            ..waiter.clone()
        };
        let (read, _) = Waiter::decode_with_terms(&waiting.encode_with_terms(until)).unwrap();
        assert!(!read.admitted);
        // An entry written without terms (a Docker entry's name carries them) has none.
        assert_eq!(
            Waiter::decode_with_terms(&waiting.encode()),
            Some((waiting, None))
        );
    }
}
