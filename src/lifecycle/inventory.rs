//! Environments as the backend's metadata describes them, without the environment files: their
//! state, derived from markers and typed service statuses alone.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::backend::{
    Backend, BackendError, EnvironmentRecord, Health, Markers, Selector, ServiceRecord,
    ServiceState,
};
use crate::naming::codec::Metadata;
use crate::spec::{ImageRef, Ready};

/// One environment instance, as the backend lists it.
pub type Instance = EnvironmentRecord;

/// The state `ls` shows for an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `up` is still creating or starting services: the claim is there, the ready marker is
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
    /// No service runs and some are paused (`reap --pause-after`): idle, holding its memory
    /// and ports, resumed in milliseconds by a request through `envctl gateway`,
    /// `envctl start` or `envctl touch`.
    Paused,
    /// No service is left (removed by hand, or a `down` that could not finish): only envctl's
    /// markers or network remain. The reaper removes them.
    Debris,
    /// An `envctl update` is replacing services: whatever its containers do meanwhile, the
    /// reaper leaves it alone until the update ends or its deadline passes.
    Updating,
    /// An `envctl update` was left half-way (killed, interrupted twice, or past its deadline):
    /// its marker or the previous containers it put aside are still there, and whatever runs
    /// under the replaced services' names never finished its update. `envctl start` restores
    /// the previous services; the reaper never removes them.
    UpdateUnfinished,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Unfinished => "unfinished",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Stopped => "stopped",
            State::Paused => "paused",
            State::Debris => "debris",
            State::Updating => "updating",
            State::UpdateUnfinished => "update-unfinished",
        }
    }
}

/// Every environment on the backend, oldest first.
pub async fn list(backend: &dyn Backend) -> Result<Vec<Instance>, BackendError> {
    // Pool members are no environments until adopted: `envctl pool` shows them. Nor is the
    // marker of a gateway's creation on its own.
    let listed = backend.list(&Selector::All).await?;
    Ok(listed
        .into_iter()
        .filter(|i| !super::pool::is_member(i) && !i.only_creating())
        .collect())
}

/// The markers of gateways' creations on request whose gateway is gone (on the machine it ran
/// on) or whose deadline passed a minute ago: the ids they were set under.
pub async fn stale_creations(
    backend: &dyn Backend,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Option<String>)>, BackendError> {
    let listed = backend.list(&Selector::All).await?;
    Ok(listed
        .into_iter()
        .filter_map(|i| {
            let marker = i.markers.creating.as_ref()?;
            creation_over(marker, now).then(|| (i.id.clone(), marker.run.clone()))
        })
        .collect())
}

/// Whether the creation a marker of `metadata` stands for cannot be under way any more.
pub fn creation_over(metadata: &Metadata, now: DateTime<Utc>) -> bool {
    let process = metadata.process.as_deref().unwrap_or_default();
    if crate::lifecycle::process::alive(process) == Some(false) {
        return true;
    }
    metadata
        .start_deadline
        .is_none_or(|deadline| deadline + chrono::Duration::minutes(1) <= now)
}

/// One environment by id, or `None` when nothing of it exists.
pub async fn find(backend: &dyn Backend, id: &str) -> Result<Option<Instance>, BackendError> {
    let found = backend.list(&Selector::Id(id.to_string())).await?;
    Ok(found.into_iter().find(|i| i.id == id))
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

impl ServiceRecord {
    /// The service's name.
    pub fn service(&self) -> &str {
        &self.handle.service
    }

    pub fn ready(&self) -> Option<&Ready> {
        self.metadata.ready.as_ref()
    }

    /// Whether this is a one-shot job that ended as its `ready: exit` expects.
    pub fn finished_job(&self) -> bool {
        self.status.finished_job(self.ready())
    }

    /// Whether it crashed: exited non-zero (jobs aside), died, keeps restarting, or is
    /// unhealthy.
    pub fn crashed(&self) -> bool {
        let failed_exit = self.status.state == ServiceState::Exited
            && !self.finished_job()
            && self.status.exit_code != Some(0);
        failed_exit
            || matches!(
                self.status.state,
                ServiceState::Failed | ServiceState::Restarting
            )
            || self.status.health == Health::Unhealthy
    }
}

impl EnvironmentRecord {
    /// The environment's name (the file's `name:` or stem); empty when no label tells.
    pub fn environment(&self) -> &str {
        self.metadata.environment.as_deref().unwrap_or_default()
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

    pub fn pinned(&self) -> bool {
        self.markers.pinned
    }

    /// Whether a service crashed.
    pub fn crashed(&self) -> bool {
        self.services.iter().any(ServiceRecord::crashed)
    }

    /// The `envctl up` or `run` that started the environment, when it runs on this machine:
    /// `Some(true)` alive, `Some(false)` gone, `None` when that cannot be known here.
    pub fn starter_alive(&self) -> Option<bool> {
        crate::lifecycle::process::alive(self.metadata.process.as_deref()?)
    }

    /// Each service's dependencies.
    pub fn dependencies(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.services
            .iter()
            .map(|s| (s.service().to_string(), s.metadata.depends_on.clone()))
            .collect()
    }

    /// Services in start order, grouped in waves.
    pub fn waves(&self) -> Vec<Vec<&ServiceRecord>> {
        let dependencies = self.dependencies();
        crate::graph::waves(
            dependencies
                .iter()
                .map(|(s, deps)| (s.as_str(), deps.iter().map(String::as_str))),
        )
        .into_iter()
        .map(|wave| {
            wave.iter()
                .filter_map(|service| self.services.iter().find(|s| s.service() == service))
                .collect()
        })
        .collect()
    }

    /// The state of the environment at `now`, from its markers and services alone.
    ///
    /// The claim without the ready marker is a start: `starting` until its deadline, whatever
    /// its services do, `unfinished` after it. An environment whose claim and marker are both
    /// gone (a `docker container prune` removes never-started containers) is judged by its
    /// services alone: that is never a reason to remove it (see [`Self::markers_lost`]).
    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.markers.claimed && !self.markers.ready {
            return match self.unfinished(now) {
                Some(_) => State::Unfinished,
                None => State::Starting,
            };
        }
        if self.updating(now) {
            return State::Updating;
        }
        // Services put aside by an update that never finished are the environment's own.
        if self.services.is_empty() && self.aside.is_empty() {
            return State::Debris;
        }
        // Whatever runs under a replaced service's name never finished its update: its
        // containers say nothing of the environment.
        if self.update_left(now) {
            return State::UpdateUnfinished;
        }
        let services: Vec<&ServiceRecord> =
            self.services.iter().filter(|s| !s.finished_job()).collect();
        let running = services
            .iter()
            .filter(|s| s.status.state == ServiceState::Running)
            .count();
        let unhealthy = services
            .iter()
            .any(|s| s.status.health == Health::Unhealthy);
        let paused = services
            .iter()
            .any(|s| s.status.state == ServiceState::Paused);
        // Services a stale update left aside are stopped services too.
        if running == 0 && paused {
            State::Paused
        } else if running == 0 && !(services.is_empty() && self.aside.is_empty()) {
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
        if self.markers.ready || !self.markers.claimed {
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

    /// Whether nothing but a gateway's creation marker is there: a creation that has not
    /// claimed its environment yet, or adopts a pool member (which has an id of its own).
    pub fn only_creating(&self) -> bool {
        let markers = Markers {
            creating: None,
            ..self.markers.clone()
        };
        self.markers.creating.is_some()
            && markers == Markers::default()
            && self.services.is_empty()
            && self.aside.is_empty()
            && self.isolation.is_empty()
            && self.volumes.is_empty()
    }

    /// Whether the claim and the ready marker are both gone while services remain: a
    /// `docker container prune` removes created-never-started containers. `ls` warns; the
    /// environment is otherwise judged like any running one.
    pub fn markers_lost(&self) -> bool {
        !self.markers.claimed && !self.markers.ready && !self.services.is_empty()
    }

    /// Whether an `envctl update` is under way: its marker exists, its process is not known to
    /// be gone, and its deadline (plus a minute for its own rollback) has not passed.
    pub fn updating(&self, now: DateTime<Utc>) -> bool {
        let Some(marker) = &self.markers.update else {
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

    /// Whether an `envctl update` that is no longer under way left its marker or services put
    /// aside: what `envctl start` (or the next update) restores.
    pub fn update_left(&self, now: DateTime<Utc>) -> bool {
        (self.markers.update.is_some() || !self.aside.is_empty()) && !self.updating(now)
    }

    /// The `SERVICE@TAG` each service runs, when its tag came from a `SERVICE@REF`: each
    /// service carries its own, since `update` replaces services one by one.
    pub fn refs(&self) -> Vec<crate::naming::codec::ResolvedRef> {
        self.services
            .iter()
            .filter_map(|s| s.metadata.reference.clone())
            .collect()
    }

    /// The services the environment was started with whose resources are gone.
    pub fn missing_services(&self) -> Vec<String> {
        // A service an update put aside is there, under another name.
        let present: BTreeSet<&str> = self
            .services
            .iter()
            .chain(&self.aside)
            .map(|s| s.service())
            .collect();
        let mut expected: BTreeSet<String> =
            self.metadata.services.iter().flatten().cloned().collect();
        // Environments started before the services were recorded: what the others depend on.
        expected.extend(
            self.services
                .iter()
                .flat_map(|s| s.metadata.depends_on.iter().cloned()),
        );
        expected
            .into_iter()
            .filter(|s| !present.contains(s.as_str()))
            .collect()
    }

    /// When the lease of a running `envctl run` expires, if the environment has one.
    pub fn lease_until(&self) -> Option<DateTime<Utc>> {
        self.markers.lease_until
    }

    /// The image of each service, by service; `None` where no label tells.
    pub fn images(&self) -> Vec<(String, Option<ImageRef>)> {
        self.services
            .iter()
            .map(|s| (s.service().to_string(), s.metadata.image.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Markers, Metadata, ServiceMetadata, ServiceRef, ServiceStatus};
    use chrono::TimeZone;
    use std::time::Duration;

    #[tokio::test]
    async fn a_creation_marker_alone_is_no_environment_and_is_stale_past_its_deadline() {
        let fake = crate::backend::fake::Fake::new();
        let now = Utc::now();
        let marker = Metadata {
            environment: Some("shop".into()),
            start_deadline: Some(now + chrono::Duration::minutes(30)),
            ..Metadata::new("shop-ea6757a")
        };
        let create = crate::backend::Marker::Create;
        fake.set_marker(&marker, create).await.unwrap();
        assert!(list(&fake).await.unwrap().is_empty(), "no environment");
        assert!(stale_creations(&fake, now).await.unwrap().is_empty());
        let second = fake.set_marker(&marker, create).await;
        assert!(matches!(second, Err(BackendError::Taken(_))), "{second:?}");
        let later = now + chrono::Duration::minutes(32);
        assert_eq!(
            stale_creations(&fake, later).await.unwrap(),
            [("shop-ea6757a".to_string(), None)]
        );
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 10, minute, 0).unwrap()
    }

    const ID: &str = "20261126-100000";

    /// What a service container is, for the table.
    #[derive(Debug, Clone, Copy)]
    enum Is {
        Created,
        Running,
        Unhealthy,
        Exited(i64),
        Dead,
        Restarting,
    }

    fn status(is: Is) -> ServiceStatus {
        let (state, exit_code, health) = match is {
            Is::Created => (ServiceState::Pending, None, Health::None),
            Is::Running => (ServiceState::Running, None, Health::None),
            Is::Unhealthy => (ServiceState::Running, None, Health::Unhealthy),
            Is::Exited(code) => (ServiceState::Exited, Some(code), Health::None),
            Is::Dead => (ServiceState::Failed, None, Health::None),
            Is::Restarting => (ServiceState::Restarting, None, Health::None),
        };
        ServiceStatus {
            exit_code,
            health,
            ..ServiceStatus::new(state)
        }
    }

    /// Services `app` (depending on `db`), `db`, and optionally the one-shot job `migrate`
    /// (`ready: exit: 0`), started at 10:00 with a start deadline at 10:05, by an `up` this
    /// machine cannot judge (another host).
    fn service(name: &str, is: Is) -> ServiceRecord {
        let ready = (name == "migrate").then(|| Ready {
            probes: vec![crate::spec::Probe::Exit(0)],
            timeout: Duration::from_secs(60),
        });
        ServiceRecord {
            handle: ServiceRef {
                id: ID.into(),
                service: name.into(),
                native: format!("id-{name}"),
                name: format!("{name}_{ID}"),
            },
            metadata: ServiceMetadata {
                service: name.into(),
                image: None,
                depends_on: match name {
                    "app" => ["db".to_string()].into(),
                    _ => Default::default(),
                },
                ports: Vec::new(),
                ready,
                reference: None,
                aliases: Vec::new(),
                address: None,
                settings: Default::default(),
            },
            status: status(is),
        }
    }

    /// The environment with the markers (`claimed`, `ready`) and services given.
    fn env(markers: &[&str], services: &[(&str, Is)]) -> Instance {
        let mut all = vec!["app".to_string(), "db".to_string()];
        if services.iter().any(|(s, _)| *s == "migrate") {
            all.push("migrate".into());
        }
        EnvironmentRecord {
            id: ID.into(),
            aside: Vec::new(),
            metadata: Metadata {
                environment: Some("shop".into()),
                created_at: Some(at(0)),
                start_deadline: Some(at(5)),
                services: Some(all),
                process: Some("another-boot:1:42:42".into()),
                ..Metadata::new(ID)
            },
            markers: Markers {
                claimed: markers.contains(&"claimed"),
                ready: markers.contains(&"ready"),
                ..Markers::default()
            },
            services: services.iter().map(|(s, is)| service(s, *is)).collect(),
            isolation: Vec::new(),
            volumes: Vec::new(),
        }
    }

    use Is::{Created, Dead, Exited, Restarting, Running, Unhealthy};

    #[test]
    fn state_follows_markers_then_services() {
        let finished = &["claimed", "ready"][..];
        type Row<'a> = (&'a [&'a str], &'a [(&'a str, Is)], u32, State);
        let table: &[Row] = &[
            // A start without its ready marker is starting until its deadline (10:05 plus a
            // minute of grace), whatever its containers do; unfinished after.
            (
                &["claimed"],
                &[("app", Running), ("db", Running)],
                3,
                State::Starting,
            ),
            (&["claimed"], &[], 5, State::Starting),
            (&["claimed"], &[("db", Created)], 5, State::Starting),
            (
                &["claimed"],
                &[("app", Exited(1)), ("db", Running)],
                5,
                State::Starting,
            ),
            (
                &["claimed"],
                &[("app", Running), ("db", Running)],
                7,
                State::Unfinished,
            ),
            (&["claimed"], &[], 6, State::Unfinished),
            // A finished start follows its services.
            (
                finished,
                &[("app", Running), ("db", Running)],
                30,
                State::Ready,
            ),
            (
                finished,
                &[("app", Exited(137)), ("db", Running)],
                30,
                State::Degraded,
            ),
            (
                finished,
                &[("app", Unhealthy), ("db", Running)],
                30,
                State::Degraded,
            ),
            (
                finished,
                &[("app", Restarting), ("db", Running)],
                30,
                State::Degraded,
            ),
            (
                finished,
                &[("app", Exited(137)), ("db", Exited(0))],
                30,
                State::Stopped,
            ),
            (
                finished,
                &[("app", Dead), ("db", Exited(0))],
                30,
                State::Stopped,
            ),
            // A one-shot job that ended as expected neither degrades nor keeps it running.
            (
                finished,
                &[("app", Running), ("db", Running), ("migrate", Exited(0))],
                30,
                State::Ready,
            ),
            (
                finished,
                &[("app", Running), ("db", Running), ("migrate", Exited(1))],
                30,
                State::Degraded,
            ),
            // A hand-removed service degrades a running environment; a stopped one stays
            // stopped, so the reaper can remove it in time.
            (finished, &[("db", Running)], 30, State::Degraded),
            (finished, &[("db", Exited(0))], 30, State::Stopped),
            // Nothing but markers or a network left.
            (finished, &[], 30, State::Debris),
            (&["ready"], &[], 30, State::Debris),
            (&[], &[], 30, State::Debris),
            // Markers pruned: judged by the services alone, never removed for that.
            (&[], &[("app", Running), ("db", Running)], 30, State::Ready),
            (
                &[],
                &[("app", Exited(0)), ("db", Exited(0))],
                30,
                State::Stopped,
            ),
        ];
        for (markers, services, minute, expected) in table {
            let instance = env(markers, services);
            assert_eq!(
                instance.state(at(*minute)),
                *expected,
                "markers {markers:?}, services {services:?}, at 10:{minute:02}"
            );
        }
    }

    #[test]
    fn an_unfinished_start_says_why_and_pruned_markers_are_never_a_reason() {
        let starting = env(&["claimed"], &[("app", Running), ("db", Running)]);
        assert_eq!(starting.unfinished(at(3)), None);
        assert!(
            starting
                .unfinished(at(7))
                .unwrap()
                .contains("deadline passed")
        );
        let pruned = env(&[], &[("app", Running), ("db", Running)]);
        assert!(pruned.markers_lost());
        assert_eq!(pruned.unfinished(at(30)), None);
        assert!(!env(&["claimed", "ready"], &[("app", Running)]).markers_lost());
    }

    #[test]
    fn a_hand_removed_service_is_missing() {
        let one_left = env(&["claimed", "ready"], &[("db", Running)]);
        assert_eq!(one_left.missing_services(), ["app"]);
        let mut old = env(&["claimed", "ready"], &[("app", Running)]);
        old.metadata.services = None;
        assert_eq!(
            old.missing_services(),
            ["db"],
            "without the services label, dependencies name what is expected"
        );
    }

    #[test]
    fn crashes_are_non_zero_exits_deaths_restarts_and_unhealthiness() {
        for (is, crashed) in [
            (Running, false),
            (Exited(0), false),
            (Exited(1), true),
            (Dead, true),
            (Restarting, true),
            (Unhealthy, true),
        ] {
            assert_eq!(
                env(&["claimed", "ready"], &[("app", is)]).crashed(),
                crashed,
                "{is:?}"
            );
        }
        assert!(
            !env(&["claimed", "ready"], &[("migrate", Exited(0))]).crashed(),
            "a job that ended as expected"
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

    /// An update's marker, with its deadline at `deadline`, by a process this machine cannot
    /// judge (another host).
    fn update_marker(deadline: u32) -> Metadata {
        Metadata {
            start_deadline: Some(at(deadline)),
            process: Some("update-boot:1:7:7".into()),
            ..Metadata::new(ID)
        }
    }

    #[test]
    fn an_update_under_way_is_updating_whatever_its_services_do() {
        let mut updating = env(&["claimed", "ready"], &[("db", Is::Running)]);
        updating.markers.update = Some(update_marker(5));
        updating.aside.push(service("app", Is::Exited(137)));
        assert_eq!(updating.state(at(3)), State::Updating);
        assert!(updating.updating(at(5)), "its deadline, plus a minute");
        assert_eq!(
            updating.state(at(7)),
            State::UpdateUnfinished,
            "past its deadline the update is over, left half-way"
        );
        assert!(
            updating.missing_services().is_empty(),
            "`app` is there, put aside"
        );
    }

    #[test]
    fn ls_never_shows_a_never_ready_replacement_as_ready() {
        // Killed while probing the new `app` (or past its deadline): it runs, never found
        // ready; the previous one is put aside, stopped.
        let mut killed = env(
            &["claimed", "ready"],
            &[("app", Is::Running), ("db", Is::Running)],
        );
        killed.markers.update = Some(update_marker(5));
        killed.aside.push(service("app", Is::Exited(137)));
        assert_eq!(killed.state(at(30)), State::UpdateUnfinished);
        let mut marker_only = env(
            &["claimed", "ready"],
            &[("app", Is::Running), ("db", Is::Running)],
        );
        marker_only.markers.update = Some(update_marker(5));
        assert_eq!(
            marker_only.state(at(30)),
            State::UpdateUnfinished,
            "killed before it put anything aside, or before it removed its marker"
        );
    }

    #[test]
    fn services_a_stale_update_left_aside_keep_the_environment_from_being_debris() {
        let mut left = env(&["claimed", "ready"], &[]);
        left.aside.push(service("app", Is::Exited(137)));
        left.aside.push(service("db", Is::Exited(137)));
        assert_eq!(
            left.state(at(30)),
            State::UpdateUnfinished,
            "its services are there, put aside: not debris"
        );
    }

    #[test]
    fn each_service_carries_its_own_ref() {
        let mut updated = env(
            &["claimed", "ready"],
            &[("app", Is::Running), ("db", Is::Running)],
        );
        updated.services[0].metadata.reference = Some(crate::naming::codec::ResolvedRef {
            service: "app".into(),
            tag: "v2".into(),
        });
        let refs: Vec<String> = updated.refs().iter().map(ToString::to_string).collect();
        assert_eq!(refs, ["app@v2"]);
    }
}
