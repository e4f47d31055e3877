//! Environments as the engine's labels describe them, without the environment files.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::engine::{ContainerState, ContainerSummary, Engine, EngineError, NetworkSummary};
use crate::naming::codec::{self, Filter, Metadata, Role, ServiceMetadata};
use crate::naming::{self};
use crate::spec::{ImageRef, Ready};

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
    /// The lease of a running `envctl run`, whose name carries its expiry.
    pub lease: Option<ContainerSummary>,
    /// The marker of an `envctl update` under way (or one that never finished).
    pub update: Option<ContainerSummary>,
    /// Previous containers an update put aside (stopped, renamed), until it finishes.
    pub replaced: Vec<ContainerSummary>,
    /// The environment's network (more than one only after a manual mess).
    pub networks: Vec<NetworkSummary>,
    /// What the labels tell about the environment, from the first of its resources that
    /// carries them (anchor, services, network).
    pub metadata: Metadata,
}

/// The state `ls` shows for an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `up` is still creating or starting containers: the claim is there, the ready marker is
    /// not, and the start deadline has not passed.
    Starting,
    /// The start never finished and cannot any more: its deadline passed, or its `up` is
    /// known to be gone. The reaper removes it.
    Unfinished,
    /// Every service runs (one-shot jobs have finished as expected).
    Ready,
    /// Some services run, others have stopped, crashed or are unhealthy.
    Degraded,
    /// No service runs: `envctl stop`, or the reaper, stopped it.
    Stopped,
    /// No service container is left (removed by hand, or a `down` that could not finish):
    /// only envctl's markers or network remain. The reaper removes them.
    Debris,
    /// An `envctl update` is replacing services: whatever its containers do meanwhile, the
    /// reaper leaves it alone until the update ends or its deadline passes.
    Updating,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Unfinished => "unfinished",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Stopped => "stopped",
            State::Debris => "debris",
            State::Updating => "updating",
        }
    }
}

/// Every environment on the engine, oldest first, from one labelled list call for containers
/// and one for networks.
pub async fn list(engine: &dyn Engine) -> Result<Vec<Instance>, EngineError> {
    let filters = [Filter::Managed];
    let (containers, networks) = tokio::try_join!(
        engine.list_containers(&filters),
        engine.list_networks(&filters)
    )?;
    Ok(group(containers, networks))
}

/// One environment by id, or `None` when nothing of it exists.
pub async fn find(engine: &dyn Engine, id: &str) -> Result<Option<Instance>, EngineError> {
    let filters = [Filter::Managed, Filter::Id(id.to_string())];
    let (containers, networks) = tokio::try_join!(
        engine.list_containers(&filters),
        engine.list_networks(&filters)
    )?;
    Ok(group(containers, networks).into_iter().next())
}

/// The one id among `ids` that `given` names: itself, else the only id that starts or ends
/// with it (`0723` for `20261126-072301`... or `...-0723`).
pub fn resolve_id<'a>(given: &str, ids: &[&'a str]) -> Result<&'a str, super::LookupError> {
    if let Some(exact) = ids.iter().find(|id| **id == given) {
        return Ok(exact);
    }
    let mut matches: Vec<&'a str> = ids
        .iter()
        .filter(|id| !given.is_empty() && (id.starts_with(given) || id.ends_with(given)))
        .copied()
        .collect();
    matches.sort_unstable();
    matches.dedup();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(super::LookupError::NoSuchEnvironment(given.to_string())),
        several => Err(super::LookupError::Ambiguous {
            given: given.to_string(),
            candidates: several.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

pub fn group(containers: Vec<ContainerSummary>, networks: Vec<NetworkSummary>) -> Vec<Instance> {
    let mut by_id: BTreeMap<String, Instance> = BTreeMap::new();
    // Markers first: the anchor's metadata is the environment's. An update's marker carries
    // the update's own process and deadline: it comes last.
    let (markers, services): (Vec<_>, Vec<_>) = containers
        .into_iter()
        .partition(|c| codec::role(&c.labels).is_some());
    let (updates, markers): (Vec<_>, Vec<_>) = markers
        .into_iter()
        .partition(|c| codec::role(&c.labels) == Some(Role::Update));
    for container in markers.into_iter().chain(services).chain(updates) {
        let Some(metadata) = Metadata::decode(&container.labels) else {
            continue;
        };
        let instance = by_id
            .entry(metadata.id.clone())
            .or_insert_with(|| Instance::new(metadata));
        match codec::role(&container.labels) {
            Some(Role::Anchor) => instance.anchor = Some(container),
            Some(Role::Ready) => instance.ready = Some(container),
            Some(Role::Pin) => instance.pin = Some(container),
            Some(Role::Lease) => instance.lease = Some(container),
            Some(Role::Update) => instance.update = Some(container),
            None if container.is_replaced(&instance.id) => instance.replaced.push(container),
            None => instance.containers.push(container),
        }
    }
    for network in networks {
        let Some(metadata) = Metadata::decode(&network.labels) else {
            continue;
        };
        by_id
            .entry(metadata.id.clone())
            .or_insert_with(|| Instance::new(metadata))
            .networks
            .push(network);
    }
    let mut instances: Vec<Instance> = by_id.into_values().collect();
    for instance in &mut instances {
        instance
            .containers
            .sort_by(|a, b| a.service().cmp(b.service()));
        // A pin carries only what identifies the environment: take the rest from the others.
        if instance.anchor.is_none() {
            let fuller = instance
                .containers
                .iter()
                .map(|c| &c.labels)
                .chain(instance.networks.iter().map(|n| &n.labels))
                .chain(instance.ready.iter().map(|c| &c.labels))
                .chain(instance.lease.iter().map(|c| &c.labels))
                .find_map(Metadata::decode);
            if let Some(fuller) = fuller {
                instance.metadata = fuller;
            }
        }
    }
    instances.sort_by(|a, b| (a.created_at(), &a.id).cmp(&(b.created_at(), &b.id)));
    instances
}

impl ContainerSummary {
    /// What the labels tell about the service this container runs; `None` on markers.
    pub fn metadata(&self) -> Option<ServiceMetadata> {
        ServiceMetadata::decode(&self.labels)
    }

    /// The service the container runs (grouping puts only those among an instance's
    /// containers); empty for a container whose service label was removed by hand.
    pub fn service(&self) -> &str {
        self.labels
            .get(crate::naming::label::SERVICE)
            .map_or("", String::as_str)
    }

    pub fn depends_on(&self) -> BTreeSet<String> {
        self.metadata().map(|m| m.depends_on).unwrap_or_default()
    }

    pub fn ready(&self) -> Option<Ready> {
        self.metadata()?.ready
    }

    /// Whether an `envctl update` put this service container aside (see
    /// [`naming::replaced_name`]).
    pub fn is_replaced(&self, id: &str) -> bool {
        self.name.trim_start_matches('/') == naming::replaced_name(self.service(), id)
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
    fn new(metadata: Metadata) -> Instance {
        Instance {
            id: metadata.id.clone(),
            environment: metadata.environment.clone().unwrap_or_default(),
            containers: Vec::new(),
            anchor: None,
            ready: None,
            pin: None,
            lease: None,
            update: None,
            replaced: Vec::new(),
            networks: Vec::new(),
            metadata,
        }
    }

    /// Every container of the environment: services, markers and containers put aside.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerSummary> {
        let markers = [
            &self.anchor,
            &self.ready,
            &self.pin,
            &self.lease,
            &self.update,
        ];
        self.containers
            .iter()
            .chain(&self.replaced)
            .chain(markers.into_iter().flatten())
    }

    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.metadata.created_at
    }

    pub fn owner(&self) -> Option<&str> {
        self.metadata.owner.as_deref()
    }

    /// When `--ttl` expires, if it was given.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.metadata.expires_at
    }

    pub fn start_deadline(&self) -> Option<DateTime<Utc>> {
        self.metadata.start_deadline
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
        crate::lifecycle::process::alive(self.metadata.process.as_deref()?)
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

    /// The state of the environment at `now`, from its markers and containers alone.
    ///
    /// The claim (anchor) without the ready marker is a start: `starting` until its deadline,
    /// whatever its containers do, `unfinished` after it. An environment whose claim and marker
    /// are both gone (a `docker container prune` removes never-started containers) is judged by
    /// its services alone: that is never a reason to remove it (see [`Instance::markers_lost`]).
    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.anchor.is_some() && self.ready.is_none() {
            return match self.unfinished(now) {
                Some(_) => State::Unfinished,
                None => State::Starting,
            };
        }
        if self.updating(now) {
            return State::Updating;
        }
        // Containers put aside by an update that never finished are the services' own.
        if self.containers.is_empty() && self.replaced.is_empty() {
            return State::Debris;
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
        // Containers a stale update left aside are stopped services too.
        if running == 0 && !(services.is_empty() && self.replaced.is_empty()) {
            State::Stopped
        } else if running < services.len() || unhealthy || !self.missing_services().is_empty() {
            State::Degraded
        } else {
            State::Ready
        }
    }

    /// Why the environment's start never finished, if it did not and its `up` cannot finish it
    /// any more: the `up` process is gone (known on the machine it ran on), or its deadline
    /// passed. `None` for a finished start, one still under way, and an environment whose
    /// markers are lost.
    pub fn unfinished(&self, now: DateTime<Utc>) -> Option<String> {
        if self.ready.is_some() || self.anchor.is_none() {
            return None;
        }
        if self.starter_alive() == Some(false) {
            let started_by = self.metadata.started_by.as_deref().unwrap_or("unknown");
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

    /// Whether an `envctl update` is under way: its marker exists, its process is not known to
    /// be gone, and its deadline (plus a minute for its own rollback) has not passed.
    pub fn updating(&self, now: DateTime<Utc>) -> bool {
        let Some(marker) = self
            .update
            .as_ref()
            .and_then(|m| Metadata::decode(&m.labels))
        else {
            return false;
        };
        let process = marker.process.as_deref().unwrap_or_default();
        if crate::lifecycle::process::alive(process) == Some(false) {
            return false;
        }
        marker
            .start_deadline
            .is_some_and(|deadline| deadline + chrono::Duration::minutes(1) > now)
    }

    /// The `SERVICE@TAG` of each service whose tag came from a `SERVICE@REF`, from each
    /// container's own label; containers of earlier versions fall back to the environment's.
    pub fn refs(&self) -> Vec<codec::ResolvedRef> {
        self.containers
            .iter()
            .filter_map(|c| {
                let own = c.metadata().and_then(|m| m.reference);
                own.or_else(|| {
                    // Only containers `up` created carry the environment's refs as their own.
                    let run = Metadata::decode(&c.labels).and_then(|m| m.run);
                    let from_up = run.is_some() && run == self.metadata.run;
                    let given = self.metadata.refs.iter().find(|r| r.service == c.service());
                    given.filter(|_| from_up).cloned()
                })
            })
            .collect()
    }

    /// Whether the claim and the ready marker are both gone while services remain: a
    /// `docker container prune` removes created-never-started containers. `ls` warns; the
    /// environment is otherwise judged like any running one.
    pub fn markers_lost(&self) -> bool {
        self.anchor.is_none() && self.ready.is_none() && !self.containers.is_empty()
    }

    /// The services the environment was started with whose containers are gone.
    pub fn missing_services(&self) -> Vec<String> {
        let present: BTreeSet<&str> = self.containers.iter().map(|c| c.service()).collect();
        let mut expected: BTreeSet<String> =
            self.metadata.services.iter().flatten().cloned().collect();
        // Environments started before the services label: what the others depend on.
        expected.extend(self.containers.iter().flat_map(|c| c.depends_on()));
        expected
            .into_iter()
            .filter(|s| !present.contains(s.as_str()))
            .collect()
    }

    /// When the lease of a running `envctl run` expires, if the environment has one.
    pub fn lease_until(&self) -> Option<DateTime<Utc>> {
        naming::lease_expiry(&self.lease.as_ref()?.name)
    }

    /// The image of each service, by service; `None` where the label was removed by hand.
    pub fn images(&self) -> Vec<(String, Option<ImageRef>)> {
        self.containers
            .iter()
            .map(|c| (c.service().to_string(), c.metadata().and_then(|m| m.image)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Labels;
    use crate::naming::label;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 10, minute, 0).unwrap()
    }

    const ID: &str = "20261126-100000";

    /// An environment of services `app` (depending on `db`) and `db`, started at 10:00 with a
    /// start deadline at 10:05, by an `up` this machine cannot judge (another host).
    fn labels(role: Option<&str>, service: Option<&str>) -> Labels {
        let mut labels: Labels = [
            (label::MANAGED_BY, naming::MANAGER.to_string()),
            (label::ID, ID.to_string()),
            (label::ENVIRONMENT, "shop".to_string()),
            (label::CREATED_AT, at(0).to_rfc3339()),
            (label::START_DEADLINE, at(5).to_rfc3339()),
            (label::SERVICES, "app,db".to_string()),
            (label::PROCESS, "another-boot:1:42:42".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(role) = role {
            labels.insert(label::ROLE.into(), role.into());
        }
        if let Some(service) = service {
            labels.insert(label::SERVICE.into(), service.into());
            let deps = if service == "app" { "db" } else { "" };
            labels.insert(label::DEPENDS_ON.into(), deps.into());
        }
        labels
    }

    fn container(name: &str, labels: Labels, state: ContainerState) -> ContainerSummary {
        ContainerSummary {
            id: format!("id-{name}"),
            name: name.to_string(),
            image: "shop/app:1".into(),
            labels,
            state,
            status: match state {
                ContainerState::Running => "Up 1 minute".into(),
                ContainerState::Exited => "Exited (137) 1 minute ago".into(),
                _ => "Created".into(),
            },
            ports: Vec::new(),
        }
    }

    fn marker(role: &str) -> ContainerSummary {
        container(
            &format!("envctl_{ID}_{role}"),
            labels(Some(role), None),
            ContainerState::Created,
        )
    }

    fn service(name: &str, state: ContainerState) -> ContainerSummary {
        container(&format!("{name}_{ID}"), labels(None, Some(name)), state)
    }

    /// The environment from the markers (`anchor`, `ready`) and services given.
    fn instance(markers: &[&str], services: &[(&str, ContainerState)]) -> Instance {
        let mut containers: Vec<ContainerSummary> = markers.iter().map(|m| marker(m)).collect();
        containers.extend(services.iter().map(|(s, state)| service(s, *state)));
        let network = NetworkSummary {
            id: "net".into(),
            name: format!("envctl_shop_{ID}"),
            labels: labels(None, None),
        };
        let mut instances = group(containers, vec![network]);
        assert_eq!(instances.len(), 1);
        instances.remove(0)
    }

    use ContainerState::{Created, Exited, Running};

    #[test]
    fn a_start_without_its_ready_marker_whose_containers_all_run_is_starting_not_ready() {
        let starting = instance(&["anchor"], &[("app", Running), ("db", Running)]);
        assert_eq!(starting.state(at(3)), State::Starting);
        assert_eq!(starting.unfinished(at(3)), None);
        assert_eq!(
            starting.state(at(7)),
            State::Unfinished,
            "past its deadline and the minute of grace"
        );
        assert!(
            starting
                .unfinished(at(7))
                .unwrap()
                .contains("deadline passed")
        );
    }

    #[test]
    fn a_start_is_starting_until_its_deadline_whatever_its_containers_do() {
        for services in [
            &[][..],
            &[("db", Created)][..],
            &[("app", Created), ("db", Running)][..],
            &[("app", Exited), ("db", Running)][..],
        ] {
            let starting = instance(&["anchor"], services);
            assert_eq!(starting.state(at(5)), State::Starting, "{services:?}");
            assert_eq!(starting.state(at(6)), State::Unfinished, "{services:?}");
        }
    }

    #[test]
    fn an_environment_whose_markers_were_pruned_is_judged_by_its_services() {
        let pruned = instance(&[], &[("app", Running), ("db", Running)]);
        assert!(pruned.markers_lost());
        assert_eq!(pruned.state(at(30)), State::Ready);
        assert_eq!(pruned.unfinished(at(30)), None, "never removed for that");
        let stopped = instance(&[], &[("app", Exited), ("db", Exited)]);
        assert_eq!(stopped.state(at(30)), State::Stopped);
    }

    #[test]
    fn a_finished_start_follows_its_services() {
        let table = [
            (&[("app", Running), ("db", Running)][..], State::Ready),
            (&[("app", Exited), ("db", Running)][..], State::Degraded),
            (&[("app", Exited), ("db", Exited)][..], State::Stopped),
        ];
        for (services, expected) in table {
            let finished = instance(&["anchor", "ready"], services);
            assert_eq!(finished.state(at(30)), expected, "{services:?}");
            assert!(!finished.markers_lost());
        }
    }

    #[test]
    fn an_environment_with_no_service_containers_left_is_debris() {
        assert_eq!(
            instance(&["anchor", "ready"], &[]).state(at(30)),
            State::Debris
        );
        assert_eq!(instance(&["ready"], &[]).state(at(30)), State::Debris);
        let network_only = group(
            Vec::new(),
            vec![NetworkSummary {
                id: "net".into(),
                name: format!("envctl_shop_{ID}"),
                labels: labels(None, None),
            }],
        );
        assert_eq!(network_only[0].state(at(30)), State::Debris);
    }

    #[test]
    fn a_hand_removed_service_is_missing_and_degrades_the_environment() {
        let one_left = instance(&["anchor", "ready"], &[("db", Running)]);
        assert_eq!(one_left.missing_services(), ["app"]);
        assert_eq!(one_left.state(at(30)), State::Degraded);
        let stopped = instance(&["anchor", "ready"], &[("db", Exited)]);
        assert_eq!(
            stopped.state(at(30)),
            State::Stopped,
            "stopped, so the reaper can remove it in time"
        );
        let mut old = instance(&["anchor", "ready"], &[("app", Running)]);
        old.metadata.services = None;
        assert_eq!(
            old.missing_services(),
            ["db"],
            "without the services label, dependencies name what is expected"
        );
    }

    #[test]
    fn an_id_is_named_by_itself_or_a_unique_prefix_or_suffix() {
        let ids = ["20261126-072301", "20261126-081500", "pr-42", "pr-420"];
        assert_eq!(resolve_id("pr-42", &ids).unwrap(), "pr-42", "exact wins");
        assert_eq!(
            resolve_id("0723", &ids).unwrap_err().to_string(),
            "no environment `0723`\nhint: `envctl ls` lists the environments"
        );
        assert_eq!(resolve_id("072301", &ids).unwrap(), "20261126-072301");
        assert_eq!(resolve_id("pr-420", &ids).unwrap(), "pr-420");
        match resolve_id("20261126", &ids) {
            Err(super::super::LookupError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, ["20261126-072301", "20261126-081500"])
            }
            other => panic!("{other:?}"),
        }
        assert!(resolve_id("", &ids).is_err());
    }

    /// `service`'s previous container, put aside by an update.
    fn aside(name: &str) -> ContainerSummary {
        container(
            &naming::replaced_name(name, ID),
            labels(None, Some(name)),
            Exited,
        )
    }

    #[test]
    fn an_update_under_way_is_updating_whatever_its_containers_do() {
        let mut updating = instance(&["anchor", "ready", "update"], &[("db", Running)]);
        updating.replaced.push(aside("app"));
        assert_eq!(updating.state(at(3)), State::Updating);
        assert!(updating.updating(at(5)), "its deadline, plus a minute");
        assert_eq!(
            updating.state(at(7)),
            State::Degraded,
            "past its deadline the update is over: `app` is missing"
        );
        assert_eq!(updating.missing_services(), ["app"]);
    }

    #[test]
    fn an_update_marker_never_lends_its_process_and_deadline_to_the_environment() {
        let mut update = marker("update");
        update
            .labels
            .insert(label::PROCESS.into(), "update-boot:1:7:7".into());
        let containers = vec![update, service("db", Running), marker("anchor")];
        let grouped = group(containers, Vec::new()).remove(0);
        assert_eq!(
            grouped.metadata.process.as_deref(),
            Some("another-boot:1:42:42")
        );
        assert!(grouped.update.is_some());
    }

    #[test]
    fn containers_an_update_put_aside_are_grouped_apart_and_keep_it_from_being_debris() {
        let containers = vec![marker("anchor"), marker("ready"), aside("app"), aside("db")];
        let left = group(containers, Vec::new()).remove(0);
        assert!(left.containers.is_empty());
        assert_eq!(left.replaced.len(), 2);
        assert_eq!(
            left.state(at(30)),
            State::Stopped,
            "its services' containers are there, stopped: not debris"
        );
        assert_eq!(left.all_containers().count(), 4);
    }

    #[test]
    fn each_container_carries_its_own_ref_and_those_of_up_fall_back_to_the_environments() {
        let containers = vec![
            marker("anchor"),
            service("app", Running),
            service("db", Running),
        ];
        let mut containers = containers;
        for c in &mut containers {
            c.labels.insert(label::REFS.into(), "app@v1,db@d1".into());
            c.labels.insert(label::RUN.into(), "up-nonce".into());
        }
        let env = group(containers.clone(), Vec::new()).remove(0);
        let refs = |env: &Instance| -> Vec<String> {
            env.refs().iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            refs(&env),
            ["app@v1", "db@d1"],
            "no own labels: as `up` gave"
        );
        containers[1]
            .labels
            .insert(label::REF.into(), "app@v2".into());
        containers[2]
            .labels
            .insert(label::RUN.into(), "update-nonce".into());
        let updated = group(containers, Vec::new()).remove(0);
        assert_eq!(
            refs(&updated),
            ["app@v2"],
            "its own; a container an update created without a ref has none"
        );
    }

    #[test]
    fn a_lease_is_read_from_its_name() {
        let mut leased = instance(&["anchor", "ready"], &[("app", Running), ("db", Running)]);
        assert_eq!(leased.lease_until(), None);
        leased.lease = Some(container(
            &naming::lease_name(ID, at(12)),
            labels(Some(naming::LEASE_ROLE), None),
            Created,
        ));
        assert_eq!(leased.lease_until(), Some(at(12)));
    }
}
