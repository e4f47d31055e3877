//! `up`: resolve images, claim an id, start services in dependency order, roll back on failure.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::time::Instant;

use super::attempt::{Attempt, removal_seen};
use super::bounded::Bounded;
use super::images::{self, Wanted};
use super::starting::{Phases, Startable, probes_addresses, start_services};
use super::teardown::Cleanup;
use super::{Phase, Progress, StartError, admission, teardown};
use crate::backend::ResolvedImage as Resolved;
use crate::backend::{
    Backend, BackendError, BackendKind, Marker, MarkerKind, Resource, ResourceKind, Selector,
    ServiceEndpoint, ServiceRecord, ServiceRef, ServiceSpec, ServiceState, VolumeSpec,
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
    /// What to do with the environment's warm pool (see [`super::pool`]).
    pub pool: PoolUse,
}

/// What a start does with the environment's warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolUse {
    /// Adopt a ready matching member when the file declares a pool (never with `--name`),
    /// else start cold.
    #[default]
    Adopt,
    /// Start a pool member: only the pooled services, marked as a member when ready.
    Fill,
    /// Adopt a ready matching member (the environment gets the member's id) even with
    /// `--name`, which then names a cold start only: a gateway's creation on request, whose
    /// one-at-a-time is its creation marker, not the id.
    AdoptElseNamed,
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

impl From<&ServiceEndpoint> for StartedPort {
    fn from(e: &ServiceEndpoint) -> Self {
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
fn speaks_http(service: &Service, endpoint: &ServiceEndpoint) -> bool {
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
    // Before the run: `--timeout` starts at admission. A start that may adopt a pool member
    // is charged what it adds to the member, which counts already; it claims the member after
    // admission, still holding its place in the queue, and waits again for its whole
    // environment if another start took the member first (see `claim`).
    let request = super::pool::request(environment, options);
    let admission = admission::AdmitOptions {
        adopts: super::pool::adoptable_shape(backend, environment, options).await,
        ..options.admission.clone()
    };
    let ticket = match admission::admit(backend, &request, &admission, signals).await {
        Ok(ticket) => ticket,
        Err(error) => return UpOutcome::of(Err(error)),
    };
    let run = Run {
        nonce: run_nonce(),
        launched: Utc::now(),
        attempt: Attempt::new(signals, options.timeout),
        ledger: Ledger::new(backend.info().kind),
        notes: std::sync::Mutex::default(),
        ticket,
        admission,
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
        if let Some(id) = run.ledger.id() {
            detach(&bounded, &id).await;
        }
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
    // The probes are over: envctl's container leaves the environment's network, whose
    // environment outlives the command (`run` joins it again for its command).
    if let Some(id) = run.ledger.id() {
        detach(&aftermath, &id).await;
    }
    let notes = std::mem::take(&mut *run.notes.lock().expect("notes lock"));
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
    let mut outcome = outcome(result, &aftermath, options, run).await;
    outcome.warnings.splice(0..0, notes);
    outcome
}

/// What a start that ended with `result` leaves: a rollback unless it succeeded or its failure
/// is kept.
async fn outcome(
    result: Result<Started, StartError>,
    aftermath: &Bounded<'_>,
    options: &UpOptions,
    run: &Run<'_>,
) -> UpOutcome {
    match result {
        Ok(started) => UpOutcome::of(Ok(started)),
        Err(StartError::Interrupted(_)) => UpOutcome::of(Err(StartError::Interrupted(Box::new(
            rollback(aftermath, run, Some(ROLLBACK_GRACE)).await,
        )))),
        Err(error) if options.keep_on_failure => {
            tracing::info!("keeping what the failed start created (--keep-on-failure)");
            UpOutcome::of(Err(error))
        }
        Err(error) => {
            let cleanup = rollback(aftermath, run, None).await;
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
    /// What the start has to say besides its result (see [`UpOutcome::warnings`]).
    notes: std::sync::Mutex<Vec<String>>,
    /// Its place at the head of the admission queue, left once it claimed.
    ticket: admission::Ticket,
    /// How it was admitted: as adopting a pool member, or not.
    admission: admission::AdmitOptions,
}

/// Disconnects envctl's own container from environment `id`'s network, if the start
/// connected it; what is left there, `down` and the reaper disconnect as envctl's.
async fn detach(backend: &dyn Backend, id: &str) {
    if let Err(error) = backend.detach(id).await {
        tracing::warn!("could not disconnect envctl's container from environment {id}: {error}");
    }
}

/// What a run asked the engine to create, by the names its backend gives them, so that a
/// rollback can say what it left even when the engine does not answer.
struct Ledger {
    backend: BackendKind,
    entries: std::sync::Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The id being claimed, then claimed.
    id: Option<String>,
    created: Vec<Resource>,
    /// Creates in flight, or given up without an answer: the engine may still carry them out.
    unanswered: Vec<Resource>,
    /// The id is a pool member's this run adopts (or tried to): its rollback removes the whole
    /// member if the adoption is this run's.
    adopted: bool,
}

impl Ledger {
    fn new(backend: BackendKind) -> Ledger {
        Ledger {
            backend,
            entries: std::sync::Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().expect("ledger lock")
    }

    fn id(&self) -> Option<String> {
        self.entries().id.clone()
    }

    /// Runs `create` of the resource `name`, keeping it as unanswered until the engine answers.
    async fn create<T>(
        &self,
        kind: ResourceKind,
        name: String,
        create: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let resource = Resource::new(self.backend, kind, name);
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
            .flat_map(|record| teardown::resources(record, run.ledger.backend))
            .collect();
        let vanished = created.iter().any(|resource| match resource.kind {
            ResourceKind::Service | ResourceKind::Marker(_) => !present.contains(resource),
            ResourceKind::Isolation | ResourceKind::Volume => false,
        });
        Some(vanished.then(|| id.clone()))
    })
    .await
}

/// Removes what the run created, found by its label so that creates the engine carried out
/// after their request was given up are found too.
async fn rollback(backend: &Bounded<'_>, run: &Run<'_>, grace: Option<Duration>) -> Cleanup {
    let (id, created, unanswered, adopted) = {
        let entries = run.ledger.entries();
        (
            entries.id.clone(),
            entries.created.clone(),
            entries.unanswered.clone(),
            entries.adopted,
        )
    };
    // An adopted member is this run's whole: it never goes back to the pool.
    let selector = match (&id, adopted) {
        (Some(id), true) if adopted_by(backend, id, &run.nonce).await => Selector::Id(id.clone()),
        _ => Selector::Run(run.nonce.clone()),
    };
    let mut cleanup = teardown::remove_reporting(backend, &selector, grace, &created).await;
    cleanup.unanswered = unanswered
        .into_iter()
        .filter(|r| !cleanup.removed.contains(r) && !cleanup.left.contains(r))
        .collect();
    cleanup.id = id;
    cleanup
}

/// Whether the adoption of member `id` is run `nonce`'s: its marker won.
async fn adopted_by(backend: &dyn Backend, id: &str, nonce: &str) -> bool {
    let listed = backend.list(&Selector::Id(id.to_string())).await;
    listed.is_ok_and(|records| {
        records
            .iter()
            .any(|r| r.markers.adopted && r.metadata.run.as_deref() == Some(nonce))
    })
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
    // The pool's members are listed while the images are resolved: matching needs both.
    let (images, members) = run
        .attempt
        .bound(async {
            let (images, members) = tokio::join!(
                resolve_images(backend, environment, options, progress, phases),
                super::pool::prefetch_members(backend, environment, options)
            );
            Ok((images?, members))
        })
        .await?;
    // Creating is not cut short by a signal: a create that the engine completes after its
    // request was dropped would escape the rollback. A signal meanwhile is acted on next.
    for service in super::pool::in_scope(environment, options) {
        phases.report(progress, &service, Phase::Creating);
    }
    let claim = claim(backend, environment, options, &images, members, run).await?;
    // Built after the claim: a readmission there gave the attempt a new deadline.
    let creating = run.attempt.within(backend);
    // envctl in a container joins the environment's network for the probes that need the
    // services' own addresses; a create too, so not raced either.
    if environment
        .services
        .values()
        .any(|service| probes_addresses(&service.ready))
    {
        let joined = creating.attach(&claim.id).await?;
        run.notes.lock().expect("notes lock").extend(joined.warning);
    }
    run.attempt
        .bound(async {
            let services = startables(environment, &claim, &images);
            let dependencies = environment
                .services
                .values()
                .filter(|s| claim.services.contains_key(&s.name))
                .map(|s| (s.name.clone(), s.depends_on.clone()))
                .collect();
            start_services(backend, &dependencies, &services, progress, phases).await
        })
        .await?;
    // The marker is a create too: outside the race, for the same reason as the claim. A pool
    // member is never ready: it is a member until an `up` adopts and finishes it.
    let (marker, name) = match options.pool {
        PoolUse::Fill => (Marker::Member, naming::member_name(&claim.id)),
        PoolUse::Adopt | PoolUse::AdoptElseNamed => (Marker::Ready, naming::ready_name(&claim.id)),
    };
    let marked = run.ledger.create(
        ResourceKind::Marker(marker.kind()),
        name,
        creating.set_marker(&claim.metadata, marker),
    );
    let selector = match claim.pooled.is_empty() {
        true => Selector::Run(run.nonce.clone()),
        false => Selector::Id(claim.id.clone()),
    };
    // What the start returns is read while the marker is created: the listing reads only the
    // services, which are ready, so it need not wait for the marker, and neither the marker's
    // create nor its failure depends on it.
    let described = run
        .attempt
        .bound(describe(backend, environment, &claim, &images, &selector));
    let (marked, described) = tokio::join!(marked, described);
    marked?;
    let described = described?;
    // The marker's create runs to its end whatever comes meanwhile: an interrupt that came
    // during it is acted on now, as on the next step before (the start is rolled back).
    run.attempt.bound(async { Ok(described) }).await
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
    /// Every service of the environment this run has: created, or adopted.
    services: BTreeMap<String, ServiceRef>,
    /// The services an adopted pool member brought, ready already.
    pooled: std::collections::BTreeSet<String>,
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
    let scope = super::pool::in_scope(environment, options);
    let in_scope = environment.services.values();
    let wanted = in_scope.filter(|s| scope.contains(&s.name)).map(|service| {
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
/// network and every service's container under that id. Its creates are bounded by the
/// attempt's deadline, never dropped by it (see [`Attempt::within`]).
async fn claim(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    members: Option<super::pool::Listed>,
    run: &Run<'_>,
) -> Result<Claim, StartError> {
    let creating = run.attempt.within(backend);
    let adopted = adopt(&creating, environment, options, images, members, run).await?;
    let (claim, isolation) = match adopted {
        Some((claim, isolation)) => (claim, Some(isolation)),
        None => {
            // Admitted for what a member it did not get would have added: the whole
            // environment must fit before it starts cold. That wait is the queue's, bounded by
            // `--queue-timeout` alone, and does not use up `--timeout`, as the first did not.
            if run.admission.adopts.is_some() {
                let waited =
                    admission::readmit(backend, &run.ticket, &run.admission, run.attempt.signals)
                        .await?;
                run.attempt.extend(waited);
            }
            let creating = run.attempt.within(backend);
            (
                claim_id(&creating, environment, options, images, run).await?,
                None,
            )
        }
    };
    let creating = run.attempt.within(backend);
    let backend = &creating;
    // It counts from its claim on: the next in line may look. Its entry goes while the rest
    // is created, off the start's path.
    let (_, created) = tokio::join!(
        run.ticket.leave(backend),
        create_claimed(backend, environment, options, images, run, claim, isolation)
    );
    created
}

/// Creates what a claimed environment still lacks: its lease when asked for, its isolation
/// unless adopted with one, and the services that are not pooled.
async fn create_claimed(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &Run<'_>,
    claim: Claim,
    isolation: Option<crate::backend::IsolationRef>,
) -> Result<Claim, StartError> {
    // The lease is created with the rest, not before it: both run to their end, so the
    // rollback sees every create whichever failed.
    let lease = async {
        if !options.lease {
            return Ok(());
        }
        // Valid through the start, and a lease's lifetime beyond: `run` renews it from then on.
        let until = claim
            .metadata
            .start_deadline
            .map_or(DateTime::<Utc>::MAX_UTC, super::lease::expiry);
        run.ledger
            .create(
                ResourceKind::Marker(MarkerKind::Lease),
                naming::lease_name(&claim.id, until),
                backend.set_marker(&claim.metadata, Marker::Lease(until)),
            )
            .await
    };
    let (leased, services) = tokio::join!(
        lease,
        create_services(
            backend,
            environment,
            options,
            images,
            run,
            &claim,
            isolation
        )
    );
    // The services' error says more than the lease marker's, when both failed.
    let services = services?;
    leased?;
    Ok(Claim { services, ..claim })
}

/// Creates the environment's isolation unless adopted with one, then the services that are
/// not pooled: every service of the claim, by name.
async fn create_services(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &Run<'_>,
    claim: &Claim,
    isolation: Option<crate::backend::IsolationRef>,
) -> Result<BTreeMap<String, ServiceRef>, StartError> {
    let isolation = match isolation {
        Some(isolation) => isolation,
        None => create_isolation(backend, environment, claim, run).await?,
    };
    let scope = super::pool::in_scope(environment, options);
    // Every create runs to its end, even after one failed, so the rollback sees them all.
    let to_create = environment.services.values();
    let creating = to_create
        .filter(|s| scope.contains(&s.name) && !claim.pooled.contains(&s.name))
        .map(|service| {
            let spec = service_spec(environment, service, claim, images);
            let name = naming::container_name(&service.name, &claim.id);
            let isolation = &isolation;
            async move {
                let created = run
                    .ledger
                    .create(
                        ResourceKind::Service,
                        name,
                        backend.create_service(isolation, &spec),
                    )
                    .await;
                (service.name.clone(), created)
            }
        });
    let mut services = claim.services.clone();
    for (service, created) in join_all(creating).await {
        services.insert(service, created?);
    }
    Ok(services)
}

/// Adopts a ready pool member that is what this start would create of its pooled services:
/// the claim on its id, with its pooled services, and its isolation. `None`, for a cold start,
/// when the file has no pool, none matches, or every match was taken by another `up` first.
async fn adopt(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    members: Option<super::pool::Listed>,
    run: &Run<'_>,
) -> Result<Option<(Claim, crate::backend::IsolationRef)>, StartError> {
    // Listed only where this start may adopt, which says why not (`pool::prefetch_members`).
    let (Some(members), Some(pool)) = (members, &environment.pool) else {
        return Ok(None);
    };
    let Some(shape) = super::pool::Shape::of(environment, pool, images) else {
        return Ok(None);
    };
    // The pool only ever saves time: failing to read it is a cold start.
    let members = match members.fresh(backend).await {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!("starting without the warm pool: {error}");
            return Ok(None);
        }
    };
    let members = super::pool::candidates(members, &environment.name, &shape, Utc::now());
    for member in members {
        let Some(isolation) = member.isolation.first().cloned() else {
            continue;
        };
        let metadata = Metadata {
            adopted: member.metadata.created_at,
            ..metadata(environment, &member.id, options, images, run)
        };
        {
            let mut entries = run.ledger.entries();
            entries.id = Some(member.id.clone());
            entries.adopted = true;
        }
        let marked = run
            .ledger
            .create(
                ResourceKind::Marker(MarkerKind::Adopt),
                naming::adopt_name(&member.id),
                backend.set_marker(&metadata, Marker::Adopt),
            )
            .await;
        match marked {
            Ok(()) => {
                tracing::info!("adopted pool member {}", member.id);
                let services = member
                    .services
                    .iter()
                    .map(|s| (s.service().to_string(), s.handle.clone()))
                    .collect();
                let claim = Claim {
                    id: member.id.clone(),
                    services,
                    pooled: pool.services.clone(),
                    metadata,
                };
                return Ok(Some((claim, isolation)));
            }
            Err(BackendError::Taken(_)) => {
                tracing::info!("pool member {} was adopted by another start", member.id);
                let mut entries = run.ledger.entries();
                entries.id = None;
                entries.adopted = false;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(None)
}

/// Creates the environment's network and named volumes.
async fn create_isolation(
    backend: &dyn Backend,
    environment: &Environment,
    claim: &Claim,
    run: &Run<'_>,
) -> Result<crate::backend::IsolationRef, StartError> {
    let name = run.ledger.backend.isolation_name(&claim.metadata);
    let isolation = run
        .ledger
        .create(
            ResourceKind::Isolation,
            name,
            backend.create_isolation(&claim.metadata),
        )
        .await?;
    for (name, volume) in &environment.volumes {
        let spec = VolumeSpec {
            name: name.clone(),
            labels: volume.labels.clone(),
        };
        run.ledger
            .create(
                ResourceKind::Volume,
                naming::volume_name(&claim.id, name),
                backend.create_volume(&claim.metadata, &spec),
            )
            .await?;
    }
    Ok(isolation)
}

/// Claims a new id.
async fn claim_id(
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
            pooled: Default::default(),
        };
        run.ledger.entries().id = Some(claim.id.clone());
        let anchor = ResourceKind::Marker(MarkerKind::Anchor);
        let created = run
            .ledger
            .create(
                anchor,
                naming::anchor_name(&claim.id),
                backend.claim(&claim.metadata),
            )
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
    Ok(claim)
}

fn metadata(
    environment: &Environment,
    id: &str,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &Run<'_>,
) -> Metadata {
    let deadline = chrono::Duration::from_std(run.attempt.deadline() - Instant::now())
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
        refs,
        build: options.build.clone(),
        gateway: environment.gateway.clone(),
        files: options.files.clone(),
        memory: run.ticket.memory(),
        ..pool_metadata(environment, options, images, Metadata::new(id))
    }
}

/// A pool member's metadata: its pooled services, and what they were made from.
fn pool_metadata(
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    metadata: Metadata,
) -> Metadata {
    let pool = environment
        .pool
        .as_ref()
        .filter(|_| options.pool == PoolUse::Fill);
    let Some(pool) = pool else {
        return Metadata {
            services: Some(environment.services.keys().cloned().collect()),
            ..metadata
        };
    };
    let shape = super::pool::Shape::of(environment, pool, images);
    Metadata {
        services: Some(pool.services.iter().cloned().collect()),
        pool: Some(shape.map(|s| s.fingerprints).unwrap_or_default()),
        ..metadata
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
        .filter(|service| claim.services.contains_key(&service.name))
        .map(|service| {
            let startable = Startable {
                service: claim.services[&service.name].clone(),
                ready: service.ready.clone(),
                healthcheck: images
                    .get(&service.name)
                    .and_then(|i| i.healthcheck.clone()),
                done: claim.pooled.contains(&service.name),
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
    selector: &Selector,
) -> Result<Started, StartError> {
    let records = backend.list(selector).await?;
    let listed: Vec<&ServiceRecord> = records.iter().flat_map(|r| &r.services).collect();
    let mut services = Vec::new();
    let started = environment.services.values();
    for service in started.filter(|s| claim.services.contains_key(&s.name)) {
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
pub fn run_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
