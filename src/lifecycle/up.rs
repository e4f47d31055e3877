//! `up`: resolve images, claim an id, start services in dependency order, roll back on failure.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::time::Instant;

use super::attempt::{Attempt, removal_seen};
use super::bounded::Bounded;
use super::images::{self, Wanted};
use super::starting::{Phases, Startable, start_services};
use super::teardown::{Cleanup, Resource};
use super::{Phase, Progress, StartError, admission, teardown};
use crate::backend::ResolvedImage as Resolved;
use crate::backend::{
    Backend, BackendError, Endpoint, Marker, Selector, ServiceRecord, ServiceRef, ServiceSpec,
    ServiceState, VolumeSpec,
};
use crate::naming::codec::{Build, Metadata, ResolvedRef};
use crate::naming::{self};
use crate::provenance;
use crate::signals::Signals;
use crate::spec::{Environment, Probe, Protocol, PullPolicy, Service};

/// How many ids (`ID`, `ID-2`, `ID-3`, ...) `up` tries when Jenkins starts many runs in one
/// second.
const MAX_ID_ATTEMPTS: u32 = 100;
/// How long an interrupted start lets containers stop before killing them.
const ROLLBACK_GRACE: Duration = Duration::from_secs(10);
/// How long the second interrupt leaves for killing what can be killed.
const FORCE_BOUND: Duration = Duration::from_secs(2);

/// Options of one `up`, free of any command-line types.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// A fixed id instead of the launch time (`--name`).
    pub name: Option<String>,
    /// Bounds the whole start.
    pub timeout: Duration,
    pub keep_on_failure: bool,
    /// Who the environment belongs to: Jenkins' `BUILD_TAG`, else the user.
    pub owner: String,
    /// Services whose tag came from `SERVICE@REF`: a unique local tag starting with REF counts.
    pub prefix_tags: Vec<String>,
    /// The reaper stops the environment this long after its launch, whatever its activity.
    pub ttl: Option<Duration>,
    /// The CI build that started it (Jenkins' `BUILD_URL`, ...).
    pub build: Build,
    /// Take a lease on the environment with the claim, for `run` to renew while its command
    /// runs (see [`super::lease`]).
    pub lease: bool,
    /// Overrides every service's `pull:` (`--pull`).
    pub pull: Option<PullPolicy>,
    /// The files the environment is read from, absolute, for `update` to read again; `None`
    /// when they cannot be read again (standard input).
    pub files: Option<Vec<std::path::PathBuf>>,
    /// How it waits for the engine's capacity, if it has one (see [`super::admission`]).
    pub admission: super::admission::AdmitOptions,
}

/// A started environment (`commands::view` prints it).
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub environment: String,
    pub services: Vec<StartedService>,
}

/// What `up` did: the environment it started, or why it did not; and what it has to say
/// beside that, for the command to print.
#[derive(Debug)]
pub struct UpOutcome {
    pub result: Result<Started, StartError>,
    /// What a failed start's rollback could not remove, if it could not finish.
    pub warnings: Vec<String>,
}

impl UpOutcome {
    fn of(result: Result<Started, StartError>) -> UpOutcome {
        UpOutcome {
            result,
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StartedService {
    pub service: String,
    pub container: String,
    pub image: String,
    pub state: String,
    pub ports: Vec<StartedPort>,
}

/// A published port of a started service (`commands::view::Port` prints it).
#[derive(Debug, Clone)]
pub struct StartedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
    /// Where this envctl reaches the port: `host:host_port` answers from here.
    pub host: String,
    /// The service has an HTTP readiness probe on this port: it speaks HTTP, so `up` can show
    /// a URL.
    pub http: bool,
}

impl From<&Endpoint> for StartedPort {
    fn from(e: &Endpoint) -> Self {
        StartedPort {
            container_port: e.container_port.number,
            protocol: e.container_port.protocol,
            host_ip: e.bound.clone(),
            host_port: e.port,
            host: e.host.clone(),
            http: false,
        }
    }
}

/// What `service` runs as now, as `up` and `update` return it: `container` running `image`,
/// `record` as listed (`None`: removed); ports with an HTTP probe speak HTTP.
pub(super) fn started_service(
    service: &Service,
    container: String,
    image: String,
    record: Option<&ServiceRecord>,
) -> StartedService {
    let ports = record.map_or(&[][..], |s| s.status.endpoints.as_slice());
    StartedService {
        service: service.name.clone(),
        container,
        image,
        state: record
            .map_or("removed", |s| s.status.state.as_str())
            .to_string(),
        ports: ports
            .iter()
            .map(|p| StartedPort {
                http: speaks_http(service, p),
                ..StartedPort::from(p)
            })
            .collect(),
    }
}

/// Whether the service has an HTTP probe on `port`.
fn speaks_http(service: &Service, endpoint: &Endpoint) -> bool {
    service.ready.probes.iter().any(|probe| {
        matches!(probe, Probe::Http { port: probed, .. } if *probed == endpoint.container_port.number)
    })
}

/// Starts `environment`. On failure or interrupt, removes everything this run created unless
/// `keep_on_failure` is set. `on_interrupt` hears of the first interrupt at once, with the id
/// being removed if one was claimed; the second interrupt kills what it can within
/// [`FORCE_BOUND`] and returns.
pub async fn up(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
    signals: &Signals,
    on_interrupt: &dyn Fn(Option<&str>),
) -> UpOutcome {
    // Before the run: `--timeout` starts at admission.
    let request = admission::Request::of(environment, &options.owner);
    let ticket = match admission::admit(backend, &request, &options.admission, signals).await {
        Ok(ticket) => ticket,
        Err(error) => return UpOutcome::of(Err(error)),
    };
    let run = Run {
        nonce: run_nonce(),
        launched: Utc::now(),
        attempt: Attempt::new(signals, options.timeout),
        ledger: Ledger::default(),
        ticket,
    };
    let work = start_or_roll_back(backend, environment, options, progress, &run);
    let work = run.ticket.holding(backend, work);
    // Giving `work` up gives up its creates too: the ledger keeps those as unanswered, so the
    // report still names them.
    let forced = async {
        let bounded = Bounded {
            backend,
            deadline: Some(Instant::now() + FORCE_BOUND),
            per_call: None,
            signals,
        };
        let cleanup = rollback(&bounded, &run, None).await;
        UpOutcome::of(Err(StartError::Interrupted(Box::new(cleanup))))
    };
    let notice = || on_interrupt(run.ledger.id().as_deref());
    let outcome = run.attempt.guard(work, notice, forced).await;
    // Left at the claim, unless the start failed before it; bounded, as the entry expires.
    let _ = tokio::time::timeout(FORCE_BOUND, run.ticket.leave(backend)).await;
    outcome
}

async fn start_or_roll_back(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
    run: &Run<'_>,
) -> UpOutcome {
    let phases = Phases::default();
    let result = attempt(backend, environment, options, progress, run, &phases).await;
    let aftermath = run.attempt.aftermath(backend, None);
    let result = match result {
        // Whatever failed after an interrupt (a create given up 5 s after it, say), the user
        // stopped the start.
        Err(_) if run.attempt.signals.count() > 0 => Err(StartError::Interrupted(Box::default())),
        Err(error @ StartError::Service { .. }) => match removed_meanwhile(&aftermath, run).await {
            Some(id) => Err(StartError::RemovedMeanwhile(id)),
            None => Err(error),
        },
        Err(error) => {
            let selector = Selector::Run(run.nonce.clone());
            Err(run
                .attempt
                .diagnose(error, &aftermath, &selector, &phases)
                .await)
        }
        ok => ok,
    };
    match result {
        Ok(started) => UpOutcome::of(Ok(started)),
        Err(StartError::Interrupted(_)) => UpOutcome::of(Err(StartError::Interrupted(Box::new(
            rollback(&aftermath, run, Some(ROLLBACK_GRACE)).await,
        )))),
        Err(error) if options.keep_on_failure => {
            tracing::info!("keeping what the failed start created (--keep-on-failure)");
            UpOutcome::of(Err(error))
        }
        Err(error) => {
            let cleanup = rollback(&aftermath, run, None).await;
            let warnings = match cleanup.is_complete() {
                true => Vec::new(),
                false => vec![format!(
                    "could not finish removing what the failed start created: {cleanup}"
                )],
            };
            UpOutcome {
                result: Err(error),
                warnings,
            }
        }
    }
}

/// One `up` invocation.
struct Run<'a> {
    /// Labels everything this run creates, for its rollback.
    nonce: String,
    launched: DateTime<Utc>,
    attempt: Attempt<'a>,
    ledger: Ledger,
    /// Its place at the head of the admission queue, left once it claimed.
    ticket: admission::Ticket,
}

/// What a run asked the engine to create, so that a rollback can say what it left even when
/// the engine does not answer.
#[derive(Default)]
struct Ledger(std::sync::Mutex<Entries>);

#[derive(Default)]
struct Entries {
    /// The id being claimed, then claimed.
    id: Option<String>,
    created: Vec<Resource>,
    /// Creates in flight, or given up without an answer: the engine may still carry them out.
    unanswered: Vec<Resource>,
}

impl Ledger {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().expect("ledger lock")
    }

    fn id(&self) -> Option<String> {
        self.entries().id.clone()
    }

    /// Runs `create`, keeping `resource` as unanswered until the engine answers.
    async fn create<T>(
        &self,
        resource: Resource,
        create: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        self.entries().unanswered.push(resource.clone());
        let result = create.await;
        let mut entries = self.entries();
        if !matches!(result, Err(BackendError::NoAnswer { .. })) {
            entries.unanswered.retain(|r| *r != resource);
        }
        if result.is_ok() {
            entries.created.push(resource);
        }
        result
    }
}

/// The id of the environment if someone else removed it while it started (its services or
/// markers vanished, which a service failing on its own never makes them do).
async fn removed_meanwhile(backend: &dyn Backend, run: &Run<'_>) -> Option<String> {
    let (id, created) = {
        let entries = run.ledger.entries();
        (entries.id.clone()?, entries.created.clone())
    };
    let selector = Selector::Run(run.nonce.clone());
    removal_seen(|| async {
        let present: Vec<Resource> = backend
            .list(&selector)
            .await
            .ok()?
            .iter()
            .flat_map(teardown::resources)
            .collect();
        let vanished = created.iter().any(|resource| match resource {
            Resource::Container(_) => !present.contains(resource),
            Resource::Network(_) | Resource::Volume(_) => false,
        });
        Some(vanished.then(|| id.clone()))
    })
    .await
}

/// Removes what the run created, found by its label so that creates the engine carried out
/// after their request was given up are found too.
async fn rollback(backend: &Bounded<'_>, run: &Run<'_>, grace: Option<Duration>) -> Cleanup {
    let selector = Selector::Run(run.nonce.clone());
    let (id, created, unanswered) = {
        let entries = run.ledger.entries();
        (
            entries.id.clone(),
            entries.created.clone(),
            entries.unanswered.clone(),
        )
    };
    let mut cleanup = teardown::remove_reporting(backend, &selector, grace, &created).await;
    cleanup.unanswered = unanswered
        .into_iter()
        .filter(|r| !cleanup.removed.contains(r) && !cleanup.left.contains(r))
        .collect();
    cleanup.id = id;
    cleanup
}

async fn attempt(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
    run: &Run<'_>,
    phases: &Phases,
) -> Result<Started, StartError> {
    refuse_unprobeable(backend, environment).await?;
    let images = run
        .attempt
        .bound(resolve_images(
            backend,
            environment,
            options,
            progress,
            phases,
        ))
        .await?;
    // Creating is not cut short by a signal: a create that the engine completes after its
    // request was dropped would escape the rollback. A signal meanwhile is acted on next.
    for service in environment.services.keys() {
        phases.report(progress, service, Phase::Creating);
    }
    let creating = run.attempt.within(backend);
    let claim = claim(&creating, environment, options, &images, run).await?;
    run.attempt
        .bound(async {
            let services = startables(environment, &claim, &images);
            let dependencies = environment
                .services
                .values()
                .map(|s| (s.name.clone(), s.depends_on.clone()))
                .collect();
            start_services(backend, &dependencies, &services, progress, phases).await
        })
        .await?;
    // The marker is a create too: outside the race, for the same reason as the claim.
    run.ledger
        .create(
            Resource::Container(naming::ready_name(&claim.id)),
            creating.set_marker(&claim.metadata, Marker::Ready),
        )
        .await?;
    run.attempt
        .bound(describe(backend, environment, &claim, &images, &run.nonce))
        .await
}

/// Refuses, before anything is created, `tcp:` and `http:` probes of ports the file does not
/// publish where the backend knows that nothing could answer them: the start would otherwise
/// wait for its whole timeout.
async fn refuse_unprobeable(
    backend: &dyn Backend,
    environment: &Environment,
) -> Result<(), StartError> {
    let probes: Vec<(String, u16)> = environment
        .services
        .values()
        .flat_map(|service| {
            let ports = service.ready.unpublished_ports(service.ports());
            ports
                .into_iter()
                .map(|port| (service.name.clone(), port.number))
        })
        .collect();
    if probes.is_empty() {
        return Ok(());
    }
    match backend.cannot_probe_unpublished().await {
        Some(reason) => Err(StartError::Unprobeable { probes, reason }),
        None => Ok(()),
    }
}

/// The services a run claimed.
struct Claim {
    id: String,
    services: BTreeMap<String, ServiceRef>,
    /// What every resource of the environment carries.
    metadata: Metadata,
}

/// Every service's image, as the file declares it (`SERVICE@REF` and `--pull` applied).
async fn resolve_images(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
    phases: &Phases,
) -> Result<BTreeMap<String, Resolved>, StartError> {
    let wanted = environment.services.values().map(|service| {
        let wanted = Wanted::Declared {
            prefix: options.prefix_tags.contains(&service.name),
            pull: options.pull.unwrap_or(service.pull),
        };
        (service, wanted)
    });
    images::resolve(backend, wanted, progress, phases).await
}

/// Claims an id by creating the environment's anchor container, whose name is unique on the
/// engine: a taken name means another run has this id, so try the next suffix. Then creates the
/// network and every service's container under that id.
async fn claim(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &Run<'_>,
) -> Result<Claim, StartError> {
    let base = options
        .name
        .clone()
        .unwrap_or_else(|| naming::run_id(run.launched));
    let mut attempt = 1;
    let claim = loop {
        let id = match options.name {
            Some(_) => base.clone(),
            None => naming::nth_id(&base, attempt),
        };
        let claim = Claim {
            metadata: metadata(environment, &id, options, images, run),
            id,
            services: BTreeMap::new(),
        };
        run.ledger.entries().id = Some(claim.id.clone());
        let resource = Resource::Container(naming::anchor_name(&claim.id));
        let created = run
            .ledger
            .create(resource, backend.claim(&claim.metadata))
            .await;
        if matches!(created, Err(ref e) if !matches!(e, BackendError::NoAnswer { .. })) {
            // Not claimed: the id is someone else's, or nobody's.
            run.ledger.entries().id = None;
        }
        match created {
            Ok(()) => break claim,
            Err(BackendError::Taken(_)) if options.name.is_none() && attempt < MAX_ID_ATTEMPTS => {
                attempt += 1;
            }
            Err(BackendError::Taken(_)) => return Err(StartError::IdTaken(claim.id)),
            Err(error) => return Err(error.into()),
        }
    };
    // It counts from its claim on: the next in line may look.
    run.ticket.leave(backend).await;
    if options.lease {
        // Valid through the start, and a lease's lifetime beyond: `run` renews it from then on.
        let until = claim
            .metadata
            .start_deadline
            .map_or(DateTime::<Utc>::MAX_UTC, super::lease::expiry);
        run.ledger
            .create(
                Resource::Container(naming::lease_name(&claim.id, until)),
                backend.set_marker(&claim.metadata, Marker::Lease(until)),
            )
            .await?;
    }
    let resource = Resource::Network(naming::network_name(&environment.name, &claim.id));
    let isolation = run
        .ledger
        .create(resource, backend.create_isolation(&claim.metadata))
        .await?;
    for (name, volume) in &environment.volumes {
        let spec = VolumeSpec {
            name: name.clone(),
            labels: volume.labels.clone(),
        };
        run.ledger
            .create(
                Resource::Volume(naming::volume_name(&claim.id, name)),
                backend.create_volume(&claim.metadata, &spec),
            )
            .await?;
    }
    // Every create runs to its end, even after one failed, so the rollback sees them all.
    let creating = environment.services.values().map(|service| {
        let spec = service_spec(environment, service, &claim, images);
        let resource = Resource::Container(naming::container_name(&service.name, &claim.id));
        let isolation = &isolation;
        async move {
            let created = run
                .ledger
                .create(resource, backend.create_service(isolation, &spec))
                .await;
            (service.name.clone(), created)
        }
    });
    let mut services = BTreeMap::new();
    for (service, created) in join_all(creating).await {
        services.insert(service, created?);
    }
    Ok(Claim { services, ..claim })
}

fn metadata(
    environment: &Environment,
    id: &str,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &Run<'_>,
) -> Metadata {
    let deadline = chrono::Duration::from_std(run.attempt.deadline - Instant::now())
        .ok()
        .and_then(|left| Utc::now().checked_add_signed(left))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    // `SERVICE@REF` as resolved: `accounting@ea6757a8090d`.
    let refs = options
        .prefix_tags
        .iter()
        .filter_map(|service| {
            Some(ResolvedRef {
                service: service.clone(),
                tag: images.get(service)?.reference.tag.clone(),
            })
        })
        .collect();
    Metadata {
        environment: Some(environment.name.clone()),
        run: Some(run.nonce.clone()),
        created_at: Some(run.launched),
        start_deadline: Some(deadline),
        expires_at: options.ttl.map(|ttl| {
            chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| run.launched.checked_add_signed(ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }),
        owner: Some(options.owner.clone()),
        started_by: Some(provenance::started_by()),
        process: Some(provenance::process()),
        services: Some(environment.services.keys().cloned().collect()),
        refs,
        build: options.build.clone(),
        gateway: environment.gateway.clone(),
        files: options.files.clone(),
        memory: run.ticket.memory(),
        ..Metadata::new(id)
    }
}

fn service_spec(
    environment: &Environment,
    service: &Service,
    claim: &Claim,
    images: &BTreeMap<String, Resolved>,
) -> ServiceSpec {
    let reference = claim
        .metadata
        .refs
        .iter()
        .find(|r| r.service == service.name);
    service_spec_for(
        environment,
        service,
        &claim.metadata,
        images[&service.name].clone(),
        reference.cloned(),
    )
}

/// The spec of `service` in the environment `metadata` describes, running `image`;
/// `reference` when its tag came from `SERVICE@REF`. Shared by `up` and `update`, so a
/// replaced service is created as `up` would create it.
pub(super) fn service_spec_for(
    environment: &Environment,
    service: &Service,
    metadata: &Metadata,
    image: Resolved,
    reference: Option<ResolvedRef>,
) -> ServiceSpec {
    // Every link alias pointing at this service makes it reachable under that name.
    let mut aliases = vec![service.name.clone()];
    for other in environment.services.values() {
        for link in other.links.iter().filter(|l| l.service == service.name) {
            if !aliases.contains(&link.alias) {
                aliases.push(link.alias.clone());
            }
        }
    }
    ServiceSpec {
        service: service.name.clone(),
        image,
        command: service.command.clone(),
        env: service.env.clone(),
        runtime: service.runtime.clone(),
        aliases,
        address: None,
        depends_on: service.depends_on.clone(),
        ready: service.ready.clone(),
        reference,
        metadata: metadata.clone(),
    }
}

fn startables(
    environment: &Environment,
    claim: &Claim,
    images: &BTreeMap<String, Resolved>,
) -> BTreeMap<String, Startable> {
    environment
        .services
        .values()
        .map(|service| {
            let startable = Startable {
                service: claim.services[&service.name].clone(),
                ready: service.ready.clone(),
                healthcheck: images[&service.name].healthcheck.clone(),
                done: false,
            };
            (service.name.clone(), startable)
        })
        .collect()
}

/// The started environment, from one labelled list call. A service that stopped since it was
/// ready fails the start: `up` promises running services.
async fn describe(
    backend: &dyn Backend,
    environment: &Environment,
    claim: &Claim,
    images: &BTreeMap<String, Resolved>,
    nonce: &str,
) -> Result<Started, StartError> {
    let records = backend.list(&Selector::Run(nonce.to_string())).await?;
    let listed: Vec<&ServiceRecord> = records.iter().flat_map(|r| &r.services).collect();
    let mut services = Vec::new();
    for service in environment.services.values() {
        let name = naming::container_name(&service.name, &claim.id);
        let container = listed.iter().find(|s| s.handle.name == name);
        let running = container.is_some_and(|s| s.status.state == ServiceState::Running);
        if !running && !container.is_some_and(|s| s.finished_job()) {
            return Err(StartError::Service {
                service: service.name.clone(),
                logs: super::last_service_lines(
                    backend,
                    &claim.services[&service.name],
                    super::FAILURE_LOG_LINES,
                )
                .await,
                container: name,
                reason: "its container stopped right after it was ready".into(),
            });
        }
        let image = images[&service.name].reference.to_string();
        services.push(started_service(service, name, image, container.copied()));
    }
    Ok(Started {
        id: claim.id.clone(),
        environment: environment.name.clone(),
        services,
    })
}

/// A nonce for one `up` invocation.
pub(super) fn run_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
