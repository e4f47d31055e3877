//! What the gateway needs from the lifecycle, behind one small trait so its routing, activity,
//! wake and error-rate logic run against a fake in unit tests; [`super::lifecycle::Lifecycle`]
//! implements it with the lifecycle's own functions on a real engine.

use std::net::SocketAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use crate::lifecycle::State;
use crate::state::{Activity, ErrorFlag};

/// One environment as the gateway routes to it and the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedEnvironment {
    pub id: String,
    /// The environment file's name.
    pub environment: String,
    /// The `SERVICE@TAG`s it was started with.
    pub refs: Vec<String>,
    pub owner: String,
    pub state: State,
    pub created_at: Option<DateTime<Utc>>,
    pub pinned: bool,
    /// When `--ttl` expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where requests go, or why they cannot.
    pub entry: Result<Entry, String>,
    /// Every published port: `proxy:8080->127.0.0.1:49153`.
    pub endpoints: Vec<String>,
    /// The latest activity the reaper's state knows, or the creation.
    pub last_activity: Option<Activity>,
    /// The reaper stopped it for its error rate: requests do not wake it.
    pub stopped_for_errors: bool,
}

/// The service and container port the gateway proxies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub port: u16,
    /// Where that port is published, while the service runs.
    pub address: Option<SocketAddr>,
}

impl RoutedEnvironment {
    /// Whether requests can be proxied now.
    pub fn running(&self) -> bool {
        matches!(self.state, State::Ready | State::Degraded)
    }

    /// The tags of its refs: `ea6757a8090d` of `accounting@ea6757a8090d`.
    pub fn ref_tags(&self) -> impl Iterator<Item = &str> {
        self.refs
            .iter()
            .filter_map(|r| r.rsplit_once('@').map(|(_, tag)| tag))
    }
}

/// One service as the page of its environment shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceView {
    pub service: String,
    /// As `envctl status` words it: `running`, `exited` ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`; `None` without a health check.
    pub health: Option<String>,
    pub restarts: u32,
    /// Each published port: `8080->127.0.0.1:49153`.
    pub ports: Vec<String>,
    /// Its last log lines, oldest first.
    pub log: Vec<String>,
}

/// What the gateway writes to the reaper's state at each flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flush {
    /// The latest proxied request per environment since the previous flush.
    pub activity: Vec<(String, DateTime<Utc>)>,
    /// The error-rate flag of every environment whose flag is set or just cleared.
    pub flags: Vec<(String, Option<ErrorFlag>)>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.activity.is_empty() && self.flags.is_empty()
    }
}

/// An environment to create on request (`envctl gateway --create`).
#[derive(Clone)]
pub struct Create {
    /// The environment file's name, in the gateway's environment directory.
    pub environment: String,
    /// The full tag of each service REF applies to.
    pub tags: std::collections::BTreeMap<String, String>,
    /// `ENV-REF`: the id of its creation marker (one creation across gateways), and the
    /// environment's unless it adopts a pool member, whose id it then keeps.
    pub id: String,
    /// `gateway:<client address>`.
    pub owner: String,
    pub ttl: std::time::Duration,
    pub progress: crate::lifecycle::Progress,
    /// Told of each look at the capacity queue while the creation waits in it.
    pub on_wait: Option<crate::lifecycle::admission::OnWait>,
}

/// The lifecycle operations the gateway uses; errors are messages for the page.
#[async_trait]
pub trait Environments: Send + Sync + 'static {
    /// Every environment, with the activity and flags the reaper's state records.
    async fn list(&self) -> Result<Vec<RoutedEnvironment>, String>;
    /// Starts a stopped environment as `envctl start` does, waiting for readiness.
    async fn start(&self, id: &str, why: &str) -> Result<(), String>;
    async fn stop(&self, id: &str) -> Result<(), String>;
    async fn set_pinned(&self, id: &str, pinned: bool) -> Result<(), String>;
    /// Records activity, as `envctl touch` does.
    async fn touch(&self, id: &str) -> Result<(), String>;
    async fn down(&self, id: &str) -> Result<(), String>;
    /// Each service of `id` as `envctl status` sees it, with its last `lines` log lines.
    async fn services(&self, id: &str, lines: u64) -> Result<Vec<ServiceView>, String>;
    /// One item per change the engine reports; ends when it stops reporting.
    fn changes(&self) -> BoxStream<'static, ()>;
    /// Writes activity and flags to the reaper's state.
    async fn flush(&self, flush: Flush) -> Result<(), String>;
    /// What `reference` means for environment file `environment` of the gateway's directory;
    /// `None` when there is no such file (or no directory).
    async fn resolve(
        &self,
        environment: &str,
        reference: &str,
    ) -> Result<Option<super::create::Resolution>, String>;
    /// Creates and starts an environment as `envctl up` does, waiting for readiness; `Ok`
    /// too when another gateway's creation holds its creation marker (the caller waits for it).
    async fn create(&self, create: Create) -> Result<(), String>;
}
