//! Environments as the engine's labels describe them, without the environment files.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::engine::{ContainerState, ContainerSummary, Engine, EngineError, NetworkSummary};
use crate::naming::{self, label};
use crate::spec::Ready;

/// One environment instance and its containers.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub environment: String,
    /// The services' containers, sorted by service name.
    pub containers: Vec<ContainerSummary>,
    /// The container that claims the id (never started); `None` if it was removed by hand.
    pub anchor: Option<ContainerSummary>,
    /// The marker `up` creates once the start finished (never started).
    pub ready: Option<ContainerSummary>,
    /// The container that pins the environment against the reaper, if it is pinned.
    pub pin: Option<ContainerSummary>,
    /// The environment's network (more than one only after a manual mess).
    pub networks: Vec<NetworkSummary>,
}

/// The state `ls` shows for an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `up` is still creating or starting containers.
    Starting,
    /// Every service runs (one-shot jobs have finished as expected).
    Ready,
    /// Some services run, others have stopped, crashed or are unhealthy.
    Degraded,
    /// No service runs: `envctl stop`, or the reaper, stopped it.
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Stopped => "stopped",
        }
    }
}

/// The label filter that finds everything envctl created.
pub fn managed() -> String {
    format!("{}={}", label::MANAGED_BY, naming::MANAGER)
}

/// The label filter that finds one environment's resources.
pub fn with_id(id: &str) -> String {
    format!("{}={id}", label::ID)
}

/// Every environment on the engine, oldest first, from one labelled list call for containers
/// and one for networks.
pub async fn list(engine: &dyn Engine) -> Result<Vec<Instance>, EngineError> {
    let filters = [managed()];
    let (containers, networks) = tokio::try_join!(
        engine.list_containers(&filters),
        engine.list_networks(&filters)
    )?;
    Ok(group(containers, networks))
}

/// One environment by id, or `None` when nothing of it exists.
pub async fn find(engine: &dyn Engine, id: &str) -> Result<Option<Instance>, EngineError> {
    let filters = [managed(), with_id(id)];
    let (containers, networks) = tokio::try_join!(
        engine.list_containers(&filters),
        engine.list_networks(&filters)
    )?;
    Ok(group(containers, networks).into_iter().next())
}

pub fn group(containers: Vec<ContainerSummary>, networks: Vec<NetworkSummary>) -> Vec<Instance> {
    let mut by_id: BTreeMap<String, Instance> = BTreeMap::new();
    for container in containers {
        let Some(id) = container.labels.get(label::ID).cloned() else {
            continue;
        };
        let environment = container
            .labels
            .get(label::ENVIRONMENT)
            .cloned()
            .unwrap_or_default();
        let instance = by_id
            .entry(id.clone())
            .or_insert_with(|| Instance::new(id, environment));
        match container.label(label::ROLE) {
            naming::ANCHOR_ROLE => instance.anchor = Some(container),
            naming::READY_ROLE => instance.ready = Some(container),
            naming::PIN_ROLE => instance.pin = Some(container),
            _ => instance.containers.push(container),
        }
    }
    for network in networks {
        let label = |key: &str| network.labels.get(key).cloned().unwrap_or_default();
        let (id, environment) = (label(label::ID), label(label::ENVIRONMENT));
        by_id
            .entry(id.clone())
            .or_insert_with(|| Instance::new(id, environment))
            .networks
            .push(network);
    }
    let mut instances: Vec<Instance> = by_id.into_values().collect();
    for instance in &mut instances {
        instance
            .containers
            .sort_by(|a, b| a.service().cmp(b.service()));
    }
    instances.sort_by(|a, b| (a.created_at(), &a.id).cmp(&(b.created_at(), &b.id)));
    instances
}

impl ContainerSummary {
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn service(&self) -> &str {
        self.label(label::SERVICE)
    }

    pub fn depends_on(&self) -> BTreeSet<String> {
        self.label(label::DEPENDS_ON)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn ready(&self) -> Option<Ready> {
        Ready::from_label(self.label(label::READY))
    }

    /// Whether this container is a one-shot job that ended as its `ready: exit` expects.
    pub fn finished_job(&self) -> bool {
        self.state == ContainerState::Exited
            && self
                .ready()
                .and_then(|r| r.exit_code())
                .is_some_and(|code| self.status.starts_with(&format!("Exited ({code})")))
    }
}

impl Instance {
    fn new(id: String, environment: String) -> Instance {
        Instance {
            id,
            environment,
            containers: Vec::new(),
            anchor: None,
            ready: None,
            pin: None,
            networks: Vec::new(),
        }
    }

    /// A label every container and network of the environment carries, empty when missing.
    pub fn label(&self, key: &str) -> &str {
        let containers = self.anchor.iter().chain(&self.containers);
        let labels = containers
            .map(|c| &c.labels)
            .chain(self.networks.iter().map(|n| &n.labels));
        labels
            .filter_map(|labels| labels.get(key))
            .next()
            .map(String::as_str)
            .unwrap_or("")
    }

    /// A time label, parsed.
    fn time_label(&self, key: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.label(key))
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.time_label(label::CREATED_AT)
    }

    pub fn owner(&self) -> &str {
        self.label(label::OWNER)
    }

    /// When `--ttl` expires, if it was given.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.time_label(label::EXPIRES_AT)
    }

    pub fn start_deadline(&self) -> Option<DateTime<Utc>> {
        self.time_label(label::START_DEADLINE)
    }

    /// Whether every service container runs (or, for a job, finished as expected).
    pub fn all_running(&self) -> bool {
        !self.containers.is_empty()
            && self
                .containers
                .iter()
                .all(|c| c.state == ContainerState::Running || c.finished_job())
    }

    /// Whether a service crashed: exited with a non-zero code (jobs aside), died, keeps
    /// restarting, or is unhealthy.
    pub fn crashed(&self) -> bool {
        self.containers.iter().any(|c| {
            let failed_exit = c.state == ContainerState::Exited
                && !c.finished_job()
                && !c.status.starts_with("Exited (0)");
            failed_exit
                || matches!(c.state, ContainerState::Dead | ContainerState::Restarting)
                || c.status.contains("(unhealthy)")
        })
    }

    /// The `envctl up` or `run` that started the environment, when it runs on this machine:
    /// `Some(true)` alive, `Some(false)` gone, `None` when that cannot be known here.
    pub fn starter_alive(&self) -> Option<bool> {
        crate::lifecycle::process::alive(self.label(label::PROCESS))
    }

    /// Each service's dependencies, from the labels.
    pub fn dependencies(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.containers
            .iter()
            .map(|c| (c.service().to_string(), c.depends_on()))
            .collect()
    }

    /// Services in start order, grouped in waves.
    pub fn waves(&self) -> Vec<Vec<&ContainerSummary>> {
        let dependencies = self.dependencies();
        crate::graph::waves(
            dependencies
                .iter()
                .map(|(s, deps)| (s.as_str(), deps.iter().map(String::as_str))),
        )
        .into_iter()
        .map(|wave| {
            wave.iter()
                .filter_map(|service| self.containers.iter().find(|c| c.service() == service))
                .collect()
        })
        .collect()
    }

    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.ready.is_none() && !self.all_running() {
            return match self.unfinished(now) {
                Some(_) => State::Degraded,
                None => State::Starting,
            };
        }
        let services: Vec<&ContainerSummary> = self
            .containers
            .iter()
            .filter(|c| !c.finished_job())
            .collect();
        let running = services
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .count();
        let unhealthy = services.iter().any(|c| c.status.contains("(unhealthy)"));
        if running == 0 && !services.is_empty() {
            State::Stopped
        } else if running < services.len() || unhealthy {
            State::Degraded
        } else {
            State::Ready
        }
    }

    /// Why the environment's start never finished, if it did not and its `up` cannot finish it
    /// any more: the `up` process is gone (known on the machine it ran on), or its deadline
    /// passed. `None` for a finished start, and for one still under way.
    pub fn unfinished(&self, now: DateTime<Utc>) -> Option<String> {
        // Without the marker but with every service running, the start finished as far as
        // anyone can tell (a `docker container prune` removes never-started markers too).
        if self.ready.is_some() || self.all_running() {
            return None;
        }
        if self.starter_alive() == Some(false) {
            let started_by = self.label(label::STARTED_BY);
            return Some(format!("its `envctl up` ({started_by}) is gone"));
        }
        // A minute of grace lets `up` finish its own rollback after its deadline.
        let grace = chrono::Duration::minutes(1);
        match self.start_deadline() {
            Some(deadline) if deadline + grace > now => None,
            Some(deadline) => Some(format!(
                "its start deadline passed at {}",
                deadline.format("%Y-%m-%d %H:%M UTC")
            )),
            None => Some("it has no start deadline label".into()),
        }
    }

    /// `image:tag` of each service, by service.
    pub fn images(&self) -> Vec<(String, String)> {
        self.containers
            .iter()
            .map(|c| (c.service().to_string(), c.label(label::IMAGE).to_string()))
            .collect()
    }
}
