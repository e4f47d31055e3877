//! `update`: replace some services of a running environment in place, in dependency order,
//! waiting for their readiness, while everything else keeps running untouched.
//!
//! A replaced service keeps its container name and its link names, so its dependents reconnect
//! by name: the previous container is stopped and renamed aside ([`naming::replaced_name`]), the
//! new one is created under the service's name and started, and the previous one is removed
//! once the new one is ready. If a new one fails (or the update is interrupted or times out),
//! the new ones are removed and the previous ones renamed back and started again.
//!
//! An update holds a marker ([`naming::update_name`]) throughout. Its name is unique, so a
//! second update of the same environment is refused while the first runs; while it exists and
//! its update runs, `ls` shows the environment `updating` and the reaper leaves it alone. A
//! marker whose update is gone (killed, or past its deadline) is stale, the environment
//! `update-unfinished`: `envctl start` or the next update restores what it left. A `down`
//! meanwhile wins: it removes the environment, marker included, and the update removes
//! whatever it created after that (its marker too, when set after the `down` listed) and says
//! so.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{join_all, try_join_all};
use tokio::time::Instant;

use super::attempt::{AFTERMATH_CALL, Attempt, removal_seen};
use super::bounded::Bounded;
use super::images::{self, Wanted};
use super::inventory::{self, Instance, State};
use super::restart::startables;
use super::starting::{Phases, Startable, probes_addresses, start_services};
use super::up::{StartedService, run_nonce, service_spec_for, started_service};
use super::{Phase, Progress, StartError};
use crate::backend::{
    Backend, BackendError, BackendKind, IsolationRef, Marker, MarkerKind, ResolvedImage, Selector,
    ServiceRecord, ServiceRef, ServiceSpec, ServiceState,
};
use crate::naming::codec::{Metadata, ResolvedRef};
use crate::naming::{self};
use crate::signals::Signals;
use crate::spec::settings_digests;
use crate::spec::{Environment, did_you_mean};

/// How long all that follows the update's own time may take: the diagnosis of a timeout, the
/// restore or the removal of what was put aside. `--timeout` plus this bounds an update.
const AFTERMATH: Duration = Duration::from_secs(10);

/// Options of one `update`, free of any command-line types.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Bounds the whole update, the new services' readiness included.
    pub timeout: Duration,
    /// Also replace every service that depends on a replaced one, directly or not.
    pub with_dependents: bool,
    /// Stop each previous container gracefully within this; without it, it is killed: it is
    /// only kept to be started again if the update fails.
    pub grace: Option<Duration>,
}

/// What an update replaced.
#[derive(Debug, Clone)]
pub struct Updated {
    pub id: String,
    pub environment: String,
    /// The services replaced, as they run now, sorted by name.
    pub services: Vec<StartedService>,
}

/// Why an update did not happen, or what it left.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(
        "environment `{id}` is {}: `envctl update` replaces services of a running environment\n\
         hint: {}",
        state.as_str(),
        match state {
            State::Stopped | State::Paused => format!("`envctl start {id}` first"),
            State::UpdateUnfinished => format!("`envctl start {id}` restores what it left"),
            _ => format!("`envctl ls` shows its state; `envctl down {id}` removes it"),
        }
    )]
    NotRunning { id: String, state: State },
    #[error(
        "environment `{id}` is being updated by another `envctl update` ({by}, since {since})\n\
         hint: wait for it to finish: `envctl ls` shows `updating` until then"
    )]
    Busy {
        id: String,
        by: String,
        since: String,
    },
    #[error("environment `{id}` has no service `{service}`{}", hint.as_ref().map(|h| format!("\nhint: did you mean `{h}`?")).unwrap_or_default())]
    NoSuchService {
        id: String,
        service: String,
        hint: Option<String>,
    },
    #[error(
        "service `{service}` of `{id}` is not in `{file}` any more, so it cannot be recreated\n\
         hint: `envctl update` creates services as the environment file declares them"
    )]
    NotInFile {
        id: String,
        service: String,
        file: String,
    },
    #[error(
        "`--with-dependents` would recreate `{service}` of `{id}` with other {} than it runs \
         with, as `{file}` declares them\n\
         hint: give `envctl update` the files `{id}` was started from (`-f FILE`, repeated for \
         override files), or name `{service}@REF` to recreate it as the file says now",
        differ.join(", ")
    )]
    SettingsDiffer {
        id: String,
        service: String,
        file: String,
        /// What differs: `command`, `env`, `ports`, `mounts`, `other settings`.
        differ: Vec<String>,
    },
    #[error(
        "service `{service}` depends on `{dependency}`, which is not running in `{id}`\n\
         hint: `envctl start {id}` starts it; `--with-dependents` on `{dependency}` replaces both"
    )]
    DependencyDown {
        id: String,
        service: String,
        dependency: String,
    },
    /// A new service failed, or the update timed out or was interrupted: the previous services
    /// were restored, or `restored` says what could not be.
    #[error("{}\n{restored}", match **cause {
        StartError::Interrupted(_) => "interrupted".to_string(),
        ref cause => cause.to_string(),
    })]
    Failed {
        cause: Box<StartError>,
        restored: Restored,
    },
    #[error(
        "environment `{0}` was removed while it was being updated; removed what the update had \
         created"
    )]
    RemovedMeanwhile(String),
    #[error(
        "interrupted again: left `{0}` as it was, part-way through the update\n\
         hint: `envctl start {0}` restores the previous services"
    )]
    Forced(String),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl UpdateError {
    /// Whether the user can fix this by changing the command line.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UpdateError::NoSuchService { .. }
                | UpdateError::NotInFile { .. }
                | UpdateError::SettingsDiffer { .. }
        ) || matches!(self, UpdateError::Start(e) if e.is_bad_input())
    }

    pub fn is_interrupted(&self) -> bool {
        matches!(self, UpdateError::Forced(_))
            || matches!(self, UpdateError::Failed { cause, .. } if matches!(**cause, StartError::Interrupted(_)))
    }
}

/// What restoring the previous services got done: what runs now, or what could not be done.
#[derive(Debug, Default)]
pub struct Restored {
    pub id: String,
    /// The restored services as they run now (published ports may have changed).
    pub running: Vec<StartedService>,
    /// Why restoring did not finish, if it did not.
    pub problem: Option<Box<RestoreError>>,
}

/// Why putting the previous services back did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A call gave no answer within [`AFTERMATH_CALL`].
    #[error("the {} engine did not answer", .0.engine())]
    NoAnswer(BackendKind),
    /// The restore did not end within [`AFTERMATH`].
    #[error(
        "it did not end within {}: the previous services may still be starting",
        humantime::format_duration(*.0)
    )]
    Unfinished(Duration),
    /// The environment was no longer listed.
    #[error("environment `{0}` is gone")]
    Gone(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Starting the previous services again failed.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(problem) = &self.problem {
            return write!(
                f,
                "could not restore the previous services of `{}`: {problem}\n\
                 hint: `envctl start {}` restores them",
                self.id, self.id
            );
        }
        let services: Vec<String> = self
            .running
            .iter()
            .map(|s| format!("`{}` ({})", s.service, s.image))
            .collect();
        write!(
            f,
            "restored the previous {}; running now:",
            match services.is_empty() {
                true => "services (none had a container)".to_string(),
                false => services.join(", "),
            }
        )?;
        for service in &self.running {
            write!(f, "\n  {} {}", service.service, service.state)?;
            for port in &service.ports {
                write!(
                    f,
                    " {} -> {}:{}",
                    port.container_port, port.host, port.host_port
                )?;
            }
        }
        Ok(())
    }
}

/// The services an update replaces: those `named`, and with `with_dependents` every service
/// depending on one of them, directly or not. Every one must be a service of the environment
/// (`dependencies`, from its labels) and of its file (`declared`); every service they depend on
/// that is not replaced too must be `running`.
pub fn plan(
    id: &str,
    dependencies: &BTreeMap<String, BTreeSet<String>>,
    running: &BTreeSet<String>,
    declared: &BTreeSet<String>,
    file: &str,
    named: &[String],
    with_dependents: bool,
) -> Result<BTreeSet<String>, UpdateError> {
    let mut chosen = BTreeSet::new();
    for service in named {
        if !dependencies.contains_key(service) {
            let hint =
                did_you_mean(service, dependencies.keys().map(String::as_str)).map(str::to_string);
            return Err(UpdateError::NoSuchService {
                id: id.to_string(),
                service: service.clone(),
                hint,
            });
        }
        chosen.insert(service.clone());
    }
    if with_dependents {
        loop {
            let dependents: Vec<String> = dependencies
                .iter()
                .filter(|(s, deps)| !chosen.contains(*s) && deps.iter().any(|d| chosen.contains(d)))
                .map(|(s, _)| s.clone())
                .collect();
            if dependents.is_empty() {
                break;
            }
            chosen.extend(dependents);
        }
    }
    for service in &chosen {
        if !declared.contains(service) {
            return Err(UpdateError::NotInFile {
                id: id.to_string(),
                service: service.clone(),
                file: file.to_string(),
            });
        }
        let outside = dependencies[service]
            .iter()
            .filter(|d| !chosen.contains(*d));
        if let Some(down) = outside.into_iter().find(|d| !running.contains(*d)) {
            return Err(UpdateError::DependencyDown {
                id: id.to_string(),
                service: service.clone(),
                dependency: down.clone(),
            });
        }
    }
    Ok(chosen)
}

/// Refuses to recreate a service that only `--with-dependents` chose with settings other than
/// those it runs with: the file read may not be the one (or all the ones) it was started from,
/// and only a service named as `SERVICE@REF` takes the file as it is now. A service created by
/// an earlier envctl carries no digests of its settings and is recreated as the file says.
fn same_settings(
    instance: &Instance,
    environment: &Environment,
    chosen: &BTreeSet<String>,
    named: &[String],
) -> Result<(), UpdateError> {
    for service in chosen.iter().filter(|s| !named.contains(s)) {
        let running = instance.services.iter().find(|s| s.service() == service);
        let Some(runs) = running.map(|s| &s.metadata.settings) else {
            continue;
        };
        let declared = &environment.services[service];
        let wanted = settings_digests(&declared.command, &declared.env, &declared.runtime);
        let differ: Vec<String> = wanted
            .iter()
            .filter(|(group, digest)| !runs.is_empty() && runs.get(*group) != Some(*digest))
            .map(|(group, _)| match group.as_str() {
                "other" => "other settings".to_string(),
                group => group.to_string(),
            })
            .collect();
        if !differ.is_empty() {
            return Err(UpdateError::SettingsDiffer {
                id: instance.id.clone(),
                service: service.clone(),
                file: environment.path.display().to_string(),
                differ,
            });
        }
    }
    Ok(())
}

/// Replaces `named` (and, with `--with-dependents`, their dependents) in `instance` with the
/// services `environment` declares, its `SERVICE@REF`s applied: `named` are the services given
/// as `SERVICE@REF`. `on_interrupt` hears of the first interrupt at once.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    backend: &dyn Backend,
    instance: &Instance,
    environment: &Environment,
    named: &[String],
    options: &UpdateOptions,
    progress: &Progress,
    signals: &Signals,
    on_interrupt: &dyn Fn(),
) -> Result<Updated, UpdateError> {
    let info = backend.info();
    if !info.capabilities.replace_in_place {
        return Err(BackendError::Unsupported {
            backend: info.kind,
            operation: "replace services in place (`envctl update`)",
            hint: format!(
                "a {} service cannot be put aside while its replacement starts: `envctl down \
                 {}`, then `envctl up` with the new SERVICE@REF",
                info.kind.engine(),
                instance.id
            ),
        }
        .into());
    }
    let attempt = Attempt::new(signals, options.timeout);
    // `--timeout` bounds the update as a whole, what comes before the replacement included.
    let within = attempt.within(backend);
    let instance = restore_unfinished(&within, instance, options.timeout).await?;
    let id = instance.id.clone();
    match instance.state(Utc::now()) {
        State::Ready | State::Degraded => {}
        State::Updating => return Err(busy(&instance)),
        other => {
            return Err(UpdateError::NotRunning { id, state: other });
        }
    }
    let dependencies = instance.dependencies();
    let running: BTreeSet<String> = instance
        .services
        .iter()
        .filter(|s| s.status.state == ServiceState::Running || s.finished_job())
        .map(|s| s.service().to_string())
        .collect();
    let declared = environment.services.keys().cloned().collect();
    let file = environment.path.display().to_string();
    let chosen = plan(
        &id,
        &dependencies,
        &running,
        &declared,
        &file,
        named,
        options.with_dependents,
    )?;
    same_settings(&instance, environment, &chosen, named)?;
    let Some(isolation) = instance.isolation.first() else {
        return Err(BackendError::NotFound {
            kind: "network of environment",
            name: id,
        }
        .into());
    };
    let phases = Phases::default();
    let images = images(
        &within,
        &instance,
        environment,
        named,
        &chosen,
        progress,
        &phases,
    )
    .await?;
    let nonce = run_nonce();
    claim(&within, &instance, &nonce, options.timeout).await?;
    // envctl in a container joins the environment's network for the probes that need the
    // services' own addresses (the replacements', and a restore's), until the update is over.
    let probing = chosen
        .iter()
        .any(|service| probes_addresses(&environment.services[service].ready));
    if probing {
        let joined = within.attach(&id).await?;
        if let Some(warning) = joined.warning {
            tracing::warn!("{warning}");
        }
    }
    let was_running = chosen.intersection(&running).cloned().collect();
    let addresses = Mutex::default();
    let work = Work {
        backend,
        instance: &instance,
        environment,
        chosen: &chosen,
        was_running: &was_running,
        named,
        nonce: &nonce,
        isolation,
        images: &images,
        grace: options.grace,
        addresses: &addresses,
    };
    let replacing = async {
        // Every call of the preparation is bounded by the update's deadline and its interrupt.
        let prepared = work.prepare(&within, progress, &phases).await?;
        let starting = work.replace(backend, &prepared, progress, &phases);
        attempt.bound(starting).await
    };
    // The restore the first interrupt causes runs to its end unless a second one forces the
    // exit.
    let outcome = async {
        let result = replacing.await;
        // Whatever follows has [`AFTERMATH`] in all and [`AFTERMATH_CALL`] a call, so a frozen
        // engine ends the update too; a restore's wait for readiness is bounded as a whole.
        let until = Instant::now() + AFTERMATH;
        let aftermath = attempt.aftermath(backend, Some(until));
        let cause = match result {
            Ok(()) => {
                return Work {
                    backend: &aftermath,
                    ..work
                }
                .finish()
                .await;
            }
            Err(error) => {
                let selector = Selector::Run(nonce.clone());
                attempt
                    .diagnose(error, &aftermath, &selector, &phases)
                    .await
            }
        };
        let restoring = Bounded {
            deadline: None,
            ..aftermath
        };
        let work = Work {
            backend: &restoring,
            ..work
        };
        work.restore_after(cause, until).await
    };
    let forced = async { Err(UpdateError::Forced(id.clone())) };
    let updated = attempt.guard(outcome, on_interrupt, forced).await;
    if probing && let Err(error) = attempt.aftermath(backend, None).detach(&id).await {
        tracing::warn!("could not disconnect envctl's container from environment {id}: {error}");
    }
    updated
}

/// Everything one update works with.
struct Work<'a> {
    backend: &'a dyn Backend,
    instance: &'a Instance,
    environment: &'a Environment,
    chosen: &'a BTreeSet<String>,
    /// The replaced services that ran before: those the restore starts again.
    was_running: &'a BTreeSet<String>,
    named: &'a [String],
    /// Carried by the new services and the marker.
    nonce: &'a str,
    isolation: &'a IsolationRef,
    images: &'a BTreeMap<String, ResolvedImage>,
    grace: Option<Duration>,
    /// The addresses the previous services gave up when put aside, by service: their
    /// replacements take them over, and a restore gives them back.
    addresses: &'a Mutex<BTreeMap<String, IpAddr>>,
}

/// What [`Work::prepare`] made: the new services and the previous ones put aside, by service.
struct Prepared {
    created: BTreeMap<String, ServiceRef>,
    aside: BTreeMap<String, ServiceRef>,
}

/// Whether a second instance of a service could run beside the first without a clash: no fixed
/// host port, no volume, no bind mount.
fn shares_nothing(runtime: &crate::spec::Runtime) -> bool {
    runtime.mounts.is_empty() && runtime.ports.iter().all(|p| p.host_port.is_none())
}

impl Work<'_> {
    fn id(&self) -> &str {
        &self.instance.id
    }

    /// The replaced services' dependencies among themselves: the others run already.
    fn dependencies(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.chosen
            .iter()
            .map(|s| (s.clone(), self.environment.services[s].depends_on.clone()))
            .collect()
    }

    /// Puts the previous services aside and creates the new ones. The previous services stop
    /// while the new ones are created; unless [`Work::start_during_kill`], the new ones start
    /// only once every previous one has stopped, and that stop is over when this returns.
    async fn prepare(
        &self,
        backend: &dyn Backend,
        progress: &Progress,
        phases: &Phases,
    ) -> Result<Prepared, StartError> {
        let previous = self.chosen.iter().filter_map(|s| self.previous(s));
        let aside: BTreeMap<String, ServiceRef> =
            try_join_all(previous.map(|previous| async move {
                let aside = backend.put_aside(&previous.handle).await?;
                let service = previous.service().to_string();
                if let Some(address) = aside.address {
                    let mut addresses = self
                        .addresses
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    addresses.insert(service.clone(), address);
                }
                Ok::<_, BackendError>((service, aside.handle))
            }))
            .await?
            .into_iter()
            .collect();
        for service in self.chosen {
            phases.report(progress, service, Phase::Creating);
        }
        let creating = join_all(self.chosen.iter().map(|service| async move {
            let spec = self.spec(service);
            (
                service.clone(),
                backend.create_service(self.isolation, &spec).await,
            )
        }));
        let creations = match self.start_during_kill() {
            true => creating.await,
            false => {
                let (stopped, creations) = tokio::join!(self.stop_aside(backend, &aside), creating);
                stopped?;
                creations
            }
        };
        let mut created = BTreeMap::new();
        for (service, result) in creations {
            created.insert(service, result?);
        }
        Ok(Prepared { created, aside })
    }

    /// Stops the services put aside, dependents first (as `down` stops them, so none runs
    /// against a half-replaced dependency), within the update's grace or at once.
    async fn stop_aside(
        &self,
        backend: &dyn Backend,
        aside: &BTreeMap<String, ServiceRef>,
    ) -> Result<(), BackendError> {
        let dependencies = self.dependencies();
        let waves = crate::graph::waves(
            dependencies
                .iter()
                .map(|(s, deps)| (s.as_str(), deps.iter().map(String::as_str))),
        );
        let grace = self.grace.unwrap_or(Duration::ZERO);
        for wave in waves.iter().rev() {
            let stops = wave
                .iter()
                .filter_map(|service| aside.get(service))
                .map(|handle| backend.stop_service(handle, grace));
            try_join_all(stops).await?;
        }
        Ok(())
    }

    /// Whether the new services may start while the previous ones are being killed, which
    /// saves the engine's stop (about 100 ms on Docker): only without a grace (the previous
    /// ones are killed at once), and only when no replaced service has anything two instances
    /// would fight over: a fixed host port, a volume or a bind mount.
    fn start_during_kill(&self) -> bool {
        self.grace.is_none()
            && self
                .chosen
                .iter()
                .all(|service| shares_nothing(&self.environment.services[service].runtime))
    }

    /// Starts the new services, the stop of the previous ones still running beside it when it
    /// did not finish in [`Work::prepare`].
    async fn replace(
        &self,
        backend: &dyn Backend,
        prepared: &Prepared,
        progress: &Progress,
        phases: &Phases,
    ) -> Result<(), StartError> {
        let starting = self.start(&prepared.created, progress, phases);
        if !self.start_during_kill() {
            return starting.await;
        }
        let (stopped, started) = tokio::join!(self.stop_aside(backend, &prepared.aside), starting);
        stopped?;
        started
    }

    /// Starts the new services in dependency order, waiting for each one's readiness.
    async fn start(
        &self,
        created: &BTreeMap<String, ServiceRef>,
        progress: &Progress,
        phases: &Phases,
    ) -> Result<(), StartError> {
        let startables = self
            .chosen
            .iter()
            .map(|service| {
                let startable = Startable {
                    service: created[service].clone(),
                    ready: self.environment.services[service].ready.clone(),
                    healthcheck: self.images[service].healthcheck.clone(),
                    done: false,
                };
                (service.clone(), startable)
            })
            .collect();
        start_services(
            self.backend,
            &self.dependencies(),
            &startables,
            progress,
            phases,
        )
        .await
    }

    fn previous(&self, service: &str) -> Option<&ServiceRecord> {
        self.instance
            .services
            .iter()
            .find(|s| s.service() == service)
    }

    /// The new service: as `up` creates it from the file, with the environment's metadata,
    /// this update's nonce, and its own ref.
    fn spec(&self, service: &str) -> ServiceSpec {
        let declared = &self.environment.services[service];
        let image = self.images[service].clone();
        let metadata = Metadata {
            run: Some(self.nonce.to_string()),
            ..self.instance.metadata.clone()
        };
        let reference = match self.named.iter().any(|n| n == service) {
            true => Some(ResolvedRef {
                service: service.to_string(),
                tag: image.reference.tag.clone(),
            }),
            false => self
                .previous(service)
                .and_then(|p| p.metadata.reference.clone()),
        };
        let address = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .copied();
        ServiceSpec {
            address,
            ..service_spec_for(self.environment, declared, &metadata, image, reference)
        }
    }

    /// Removes the previous services and the marker, unless the environment was removed
    /// meanwhile (the marker went with it): then removes what this update created.
    async fn finish(&self) -> Result<Updated, UpdateError> {
        let current = self.list().await?;
        if !self.marker_held(current.as_ref()) {
            return Err(self.give_way(current.as_ref()).await);
        }
        let aside = current
            .iter()
            .flat_map(|c| &c.aside)
            .filter(|s| self.chosen.contains(s.service()));
        join_all(aside.map(|s| self.backend.remove_service(&s.handle, None)))
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
        self.backend
            .clear_marker(self.id(), MarkerKind::Update)
            .await?;
        // The listing before the removals describes the new services as well: only what was
        // put aside went since.
        Ok(Updated {
            id: self.id().to_string(),
            environment: self.instance.environment().to_string(),
            services: self.describe(current.as_ref()),
        })
    }

    /// After a failure: puts the previous services back, or, when the environment was removed
    /// meanwhile, removes what this update created.
    async fn restore_after(
        &self,
        cause: StartError,
        until: Instant,
    ) -> Result<Updated, UpdateError> {
        let current = match self.list().await {
            Ok(current) => current,
            Err(error) => {
                let restored = Restored {
                    id: self.id().to_string(),
                    running: Vec::new(),
                    problem: Some(Box::new(RestoreError::Backend(error))),
                };
                return Err(UpdateError::Failed {
                    cause: Box::new(cause),
                    restored,
                });
            }
        };
        if self.vanished(current.as_ref()) {
            return Err(self.give_way(current.as_ref()).await);
        }
        let current = current.expect("not vanished");
        let addresses = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let phases = Phases::default();
        let restoring = restore(
            self.backend,
            &current,
            self.was_running,
            &addresses,
            &phases,
        );
        let restored = tokio::time::timeout_at(until, restoring)
            .await
            .unwrap_or(Err(RestoreError::Unfinished(AFTERMATH)));
        let restored = match restored {
            Ok(()) => Restored {
                id: self.id().to_string(),
                running: self.describe(self.list().await.ok().flatten().as_ref()),
                problem: None,
            },
            Err(problem) => {
                // A `down` meanwhile explains a failed restore: it wins.
                if let Some(current) = self.removal_seen().await {
                    return Err(self.give_way(current.as_ref()).await);
                }
                Restored {
                    id: self.id().to_string(),
                    running: Vec::new(),
                    problem: Some(Box::new(problem)),
                }
            }
        };
        Err(UpdateError::Failed {
            cause: Box::new(cause),
            restored,
        })
    }

    /// Whether this update's marker is still there: a removal takes it.
    fn marker_held(&self, current: Option<&Instance>) -> bool {
        current
            .and_then(|c| c.markers.update.as_ref())
            .is_some_and(|m| m.run.as_deref() == Some(self.nonce))
    }

    /// Whether the environment is being removed: this update's marker is gone, or a previous
    /// service it put aside (only a removal takes those).
    fn vanished(&self, current: Option<&Instance>) -> bool {
        let Some(now) = current.filter(|_| self.marker_held(current)) else {
            return true;
        };
        let present = |native: &str| {
            now.services
                .iter()
                .chain(&now.aside)
                .any(|s| s.handle.native == native)
        };
        self.chosen
            .iter()
            .filter_map(|s| self.previous(s))
            .any(|p| !present(&p.handle.native))
    }

    /// The environment once a removal shows, watching as long as a failed start does
    /// ([`super::attempt::REMOVAL_WINDOW`]).
    async fn removal_seen(&self) -> Option<Option<Instance>> {
        removal_seen(|| async {
            let current = self.list().await.ok()?;
            Some(self.vanished(current.as_ref()).then_some(current))
        })
        .await
    }

    async fn list(&self) -> Result<Option<Instance>, BackendError> {
        inventory::find(self.backend, self.id()).await
    }

    /// After a `down` removed the environment meanwhile: removes what this update created and
    /// its own marker, and says so.
    async fn give_way(&self, current: Option<&Instance>) -> UpdateError {
        self.remove_created(current).await;
        // A `down` that listed the environment before this update set its marker, or ended
        // before, cannot know of it: the marker is this update's to remove. (A `down` that
        // ends after the marker was set removes it itself.)
        if self.marker_held(current) {
            let _ = self
                .backend
                .clear_marker(self.id(), MarkerKind::Update)
                .await;
        }
        UpdateError::RemovedMeanwhile(self.id().to_string())
    }

    /// Removes the services this update created, and those it put aside: what a `down` that
    /// ran meanwhile may have missed.
    async fn remove_created(&self, current: Option<&Instance>) {
        let Some(current) = current else {
            return;
        };
        let before = |native: &str| {
            self.instance
                .services
                .iter()
                .any(|s| s.handle.native == native)
        };
        let ours = current
            .services
            .iter()
            .filter(|s| self.chosen.contains(s.service()) && !before(&s.handle.native))
            .chain(&current.aside);
        join_all(ours.map(|s| self.backend.remove_service(&s.handle, None))).await;
    }

    /// The replaced services as they run now.
    fn describe(&self, current: Option<&Instance>) -> Vec<StartedService> {
        let Some(current) = current else {
            return Vec::new();
        };
        self.chosen
            .iter()
            .filter_map(|service| {
                let record = current.services.iter().find(|s| s.service() == service)?;
                let declared = self.environment.services.get(service)?;
                let container = record.handle.name.trim_start_matches('/').to_string();
                Some(started_service(
                    declared,
                    container,
                    image_of(record),
                    Some(record),
                ))
            })
            .collect()
    }
}

/// The image a service runs, as its metadata says.
fn image_of(record: &ServiceRecord) -> String {
    record
        .metadata
        .image
        .as_ref()
        .map_or_else(String::new, ToString::to_string)
}

/// Puts an environment back as it was before an update: removes the replacements of the
/// services it put aside, restores those, starts them (and `was_running`, which may only have
/// been stopped) in dependency order waiting for their readiness, and removes the marker.
/// `current` is the environment now; each service put aside takes back the address it had:
/// from `addresses`, else from its replacement, which took it over.
async fn restore(
    backend: &dyn Backend,
    current: &Instance,
    was_running: &BTreeSet<String>,
    addresses: &BTreeMap<String, IpAddr>,
    phases: &Phases,
) -> Result<(), RestoreError> {
    let no_answer = |_| RestoreError::NoAnswer(backend.info().kind);
    let aside: BTreeSet<&str> = current.aside.iter().map(|s| s.service()).collect();
    // An update creates replacements only once every service is aside: a service with one
    // aside has a replacement, if any, under its own name.
    let replacements = current
        .services
        .iter()
        .filter(|s| aside.contains(s.service()));
    let mut addresses = addresses.clone();
    for replacement in replacements.clone() {
        if let Some(address) = replacement.metadata.address {
            addresses
                .entry(replacement.service().to_string())
                .or_insert(address);
        }
    }
    let removing = replacements
        .map(|s| tokio::time::timeout(AFTERMATH_CALL, backend.remove_service(&s.handle, None)));
    for result in join_all(removing).await {
        result.map_err(no_answer)??;
    }
    for previous in &current.aside {
        let address = addresses.get(previous.service()).copied();
        tokio::time::timeout(
            AFTERMATH_CALL,
            backend.restore_aside(&previous.handle, address),
        )
        .await
        .map_err(no_answer)??;
    }
    let mut services: BTreeSet<&str> = aside;
    services.extend(was_running.iter().map(String::as_str));
    let now = inventory::find(backend, &current.id)
        .await?
        .ok_or_else(|| RestoreError::Gone(current.id.clone()))?;
    let previous: Vec<&ServiceRecord> = now
        .services
        .iter()
        .filter(|s| services.contains(s.service()))
        .collect();
    let dependencies = previous
        .iter()
        .map(|s| (s.service().to_string(), s.metadata.depends_on.clone()))
        .collect();
    let startables = startables(backend, previous.iter().copied()).await;
    let quiet: Progress = std::sync::Arc::new(|_: &str, _: Phase| {});
    start_services(backend, &dependencies, &startables, &quiet, phases).await?;
    Ok(backend
        .clear_marker(&current.id, MarkerKind::Update)
        .await?)
}

/// Each replaced service's image: the tag given for `named` services (a unique local tag
/// starting with it counts, as for `up`), the image it runs for a recreated dependent.
async fn images(
    backend: &dyn Backend,
    instance: &Instance,
    environment: &Environment,
    named: &[String],
    chosen: &BTreeSet<String>,
    progress: &Progress,
    phases: &Phases,
) -> Result<BTreeMap<String, ResolvedImage>, StartError> {
    let wanted = chosen.iter().map(|service| {
        let declared = &environment.services[service];
        let wanted = match named.contains(service) {
            true => Wanted::Declared {
                prefix: true,
                pull: declared.pull,
            },
            false => Wanted::Running(
                instance
                    .services
                    .iter()
                    .find(|s| s.service() == service.as_str())
                    .and_then(|s| s.metadata.image.clone())
                    .unwrap_or_else(|| declared.image.clone()),
            ),
        };
        (declared, wanted)
    });
    images::resolve(backend, wanted, progress, phases).await
}

/// Sets the update's marker, carrying its deadline and process so that a killed update is
/// told from one under way. It is exclusive: a second update is refused.
async fn claim(
    backend: &dyn Backend,
    instance: &Instance,
    nonce: &str,
    timeout: Duration,
) -> Result<(), UpdateError> {
    let deadline = chrono::Duration::from_std(timeout)
        .ok()
        .and_then(|t| Utc::now().checked_add_signed(t))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let metadata = Metadata {
        run: Some(nonce.to_string()),
        start_deadline: Some(deadline),
        process: Some(crate::provenance::process()),
        started_by: Some(crate::provenance::started_by()),
        created_at: Some(Utc::now()),
        ..instance.metadata.clone()
    };
    match backend
        .set_marker(&metadata, Marker::Update(deadline))
        .await
    {
        Ok(()) => Ok(()),
        Err(BackendError::Taken(_)) => {
            let current = inventory::find(backend, &instance.id).await?;
            Err(current
                .map(|i| busy(&i))
                .unwrap_or_else(|| UpdateError::RemovedMeanwhile(instance.id.clone())))
        }
        Err(error) => Err(error.into()),
    }
}

fn busy(instance: &Instance) -> UpdateError {
    let marker = instance.markers.update.as_ref();
    let by = marker.and_then(|m| m.started_by.clone());
    let since = marker.and_then(|m| m.created_at);
    UpdateError::Busy {
        id: instance.id.clone(),
        by: by.unwrap_or_else(|| "unknown".into()),
        since: since.map_or_else(
            || "unknown".into(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
    }
}

/// An update that is gone (killed, interrupted twice, or past its deadline) left its marker, or
/// services put aside: restores what it left, so that what follows (an update, `envctl start`)
/// starts from the environment as it was. Returns the environment as it is then.
///
/// Exclusive: the stale marker gives way to this process's own, which the engine gives one
/// process only, so of two takeovers at once the second is refused as busy, naming the first.
/// `timeout` is the deadline the marker carries meanwhile.
pub async fn restore_unfinished(
    backend: &dyn Backend,
    instance: &Instance,
    timeout: Duration,
) -> Result<Instance, UpdateError> {
    let now = Utc::now();
    if instance.updating(now) {
        return Err(busy(instance));
    }
    if !instance.update_left(now) {
        return Ok(instance.clone());
    }
    tracing::info!("restoring what a previous update of `{}` left", instance.id);
    // Only the stale marker goes: one a concurrent takeover set since stays, and refuses this.
    if let Some(stale) = &instance.markers.update {
        match stale.run.as_deref() {
            Some(run) => backend.clear_update_marker(&instance.id, run).await?,
            None => {
                backend
                    .clear_marker(&instance.id, MarkerKind::Update)
                    .await?
            }
        }
    }
    claim(backend, instance, &run_nonce(), timeout).await?;
    let current = inventory::find(backend, &instance.id)
        .await?
        .ok_or_else(|| UpdateError::RemovedMeanwhile(instance.id.clone()))?;
    // Puts the previous services back and removes the marker, this process's own by now;
    // envctl in a container joins the network for the probes of what it restores.
    let probing = current
        .aside
        .iter()
        .any(|s| s.ready().is_some_and(probes_addresses));
    if probing && let Some(warning) = backend.attach(&instance.id).await?.warning {
        tracing::warn!("{warning}");
    }
    // `timeout` bounds the restore; running out of it says what it still waited for, as a
    // start that runs out of time does.
    let (never, _kept) = Signals::manual();
    let attempt = Attempt::new(&never, timeout);
    let (phases, none, no_addresses) = (Phases::default(), BTreeSet::new(), BTreeMap::new());
    let restoring = restore(backend, &current, &none, &no_addresses, &phases);
    let restored = tokio::time::timeout_at(attempt.deadline(), restoring).await;
    let aftermath = attempt.aftermath(backend, None);
    if probing && let Err(error) = aftermath.detach(&instance.id).await {
        tracing::warn!(
            "could not disconnect envctl's container from environment {}: {error}",
            instance.id
        );
    }
    let Ok(restored) = restored else {
        let selector = Selector::Id(instance.id.clone());
        let timed_out = attempt.timed_out();
        let error = attempt
            .diagnose(timed_out, &aftermath, &selector, &phases)
            .await;
        return Err(UpdateError::Start(error));
    };
    restored.map_err(|problem| {
        UpdateError::Start(StartError::Service {
            service: "(previous update)".into(),
            container: naming::update_name(&instance.id),
            reason: format!("could not restore what a previous update left: {problem}"),
            logs: Vec::new(),
        })
    })?;
    let found = inventory::find(backend, &instance.id).await?;
    found.ok_or_else(|| UpdateError::RemovedMeanwhile(instance.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::runtime::{Mount, MountSource};
    use crate::spec::{Port, PortMapping, Protocol, Runtime};

    #[test]
    fn only_a_service_with_no_fixed_host_port_and_no_mount_may_start_beside_its_previous_run() {
        let port = |host_port| PortMapping {
            container: Port {
                number: 8080,
                protocol: Protocol::Tcp,
            },
            host_ip: None,
            host_port,
        };
        let mount = |source| Mount {
            source,
            target: "/data".into(),
            read_only: false,
        };
        let plain = Runtime {
            ports: vec![port(None)],
            ..Runtime::default()
        };
        assert!(shares_nothing(&plain));
        let fixed = Runtime {
            ports: vec![port(Some(8080))],
            ..Runtime::default()
        };
        assert!(!shares_nothing(&fixed));
        for source in [
            MountSource::Volume("data".into()),
            MountSource::Bind("/srv/data".into()),
        ] {
            let mounted = Runtime {
                mounts: vec![mount(source)],
                ..Runtime::default()
            };
            assert!(!shares_nothing(&mounted));
        }
    }

    /// The demo's shape: proxy -> accounting -> {oracle, activemq}.
    fn demo() -> BTreeMap<String, BTreeSet<String>> {
        let deps = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        [
            ("oracle", deps(&[])),
            ("activemq", deps(&[])),
            ("accounting", deps(&["oracle", "activemq"])),
            ("proxy", deps(&["accounting", "oracle"])),
        ]
        .into_iter()
        .map(|(s, d)| (s.to_string(), d))
        .collect()
    }

    fn all() -> BTreeSet<String> {
        demo().into_keys().collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn chosen(named: &[&str], with_dependents: bool) -> Result<Vec<String>, UpdateError> {
        plan(
            "x",
            &demo(),
            &all(),
            &all(),
            "demo.yaml",
            &names(named),
            with_dependents,
        )
        .map(|set| set.into_iter().collect())
    }

    #[test]
    fn only_the_named_services_are_replaced_unless_dependents_are_asked_for() {
        assert_eq!(chosen(&["accounting"], false).unwrap(), ["accounting"]);
        assert_eq!(
            chosen(&["accounting"], true).unwrap(),
            ["accounting", "proxy"]
        );
        assert_eq!(
            chosen(&["oracle"], true).unwrap(),
            ["accounting", "oracle", "proxy"],
            "dependents of dependents too"
        );
        assert_eq!(chosen(&["proxy"], true).unwrap(), ["proxy"]);
    }

    #[test]
    fn an_unknown_service_is_named_with_a_suggestion() {
        let error = chosen(&["acounting"], false).unwrap_err();
        assert!(error.is_bad_input());
        assert_eq!(
            error.to_string(),
            "environment `x` has no service `acounting`\nhint: did you mean `accounting`?"
        );
    }

    #[test]
    fn a_service_the_file_no_longer_declares_cannot_be_recreated() {
        let mut declared = all();
        declared.remove("proxy");
        let error = plan(
            "x",
            &demo(),
            &all(),
            &declared,
            "demo.yaml",
            &names(&["accounting"]),
            true,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("service `proxy` of `x` is not in `demo.yaml` any more"),
            "{error}"
        );
    }

    #[test]
    fn a_dependency_that_is_not_running_and_not_replaced_stops_the_update() {
        let mut running = all();
        running.remove("oracle");
        let plan = |named: &[&str], with_dependents| {
            super::plan(
                "x",
                &demo(),
                &running,
                &all(),
                "demo.yaml",
                &names(named),
                with_dependents,
            )
        };
        let error = plan(&["accounting"], false).unwrap_err();
        assert_eq!(
            error.to_string().lines().next().unwrap(),
            "service `accounting` depends on `oracle`, which is not running in `x`"
        );
        assert!(
            plan(&["oracle"], true).is_ok(),
            "replacing oracle itself is fine"
        );
    }
}
