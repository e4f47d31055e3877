//! An in-memory backend for unit tests under paused tokio time.
//!
//! Claims, isolation, services and markers live in a map; each service follows a script
//! (`Script`: exits with a code after a while, turns healthy after a while, takes this long to
//! pull or build); any operation can be scripted to fail or to hang, once per script entry;
//! traffic counters are set by the test; every call is logged, so a test can assert the order
//! in which the lifecycle acted. It never stands in for what only an engine can show: those
//! tests run against Docker in tests/it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::time::Instant;

use super::*;

/// How one service behaves once started, in paused-time durations from its start.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Exits with this code after this long.
    pub exits: Option<(Duration, i64)>,
    /// Its health check passes after this long (`None`: no health check).
    pub healthy_after: Option<Duration>,
    /// Lines it prints at once when started.
    pub logs: Vec<String>,
    /// How long each `exec` in it takes.
    pub exec_takes: Duration,
    /// The host port all its published ports answer on (`None`: 30000 + the port's last three
    /// digits, where nothing listens); a test listens there to make a `tcp:` probe pass.
    pub host_port: Option<u16>,
}

/// What a scripted operation does instead of its work.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fails with `BackendError::Operation`.
    Fail(String),
    /// Fails with `BackendError::Taken`.
    Taken,
    /// Never answers.
    Hang,
    /// Answers after this long: another client acts meanwhile.
    Delay(Duration),
}

/// What `traffic` reads for a service.
#[derive(Debug, Clone, Copy)]
pub enum Reading {
    Counters(Traffic),
    Unreadable,
}

#[derive(Debug)]
struct FakeService {
    handle: ServiceRef,
    metadata: ServiceMetadata,
    /// As `create_service` got it, for tests to read.
    runtime: Runtime,
    created: DateTime<Utc>,
    started: Option<(Instant, DateTime<Utc>)>,
    /// Set by `stop`: the exit code and when.
    stopped: Option<(i64, DateTime<Utc>)>,
    /// Set by `pause_service`, cleared by `resume_service` and `stop_service`.
    paused: bool,
    /// The `up` or `update` run that created it.
    run: Option<String>,
}

#[derive(Debug)]
struct Env {
    metadata: Metadata,
    claimed: bool,
    markers: Markers,
    isolation: Option<IsolationRef>,
    /// Named volumes, by the file's name.
    volumes: BTreeMap<String, VolumeRef>,
    services: BTreeMap<String, FakeService>,
    /// Services an update put aside, by service name.
    aside: BTreeMap<String, FakeService>,
    /// The run that made each of its other resources (`claim`, `isolation`, `volume NAME`,
    /// a marker's name), as the engines label each: `Selector::Run` selects by it.
    runs: BTreeMap<String, Option<String>>,
    /// The metadata an adoption brought, which wins over `metadata` in listings.
    adopter: Option<Metadata>,
}

#[derive(Default)]
struct World {
    envs: BTreeMap<String, Env>,
    /// Images `resolve_image` finds.
    local: BTreeMap<String, ResolvedImage>,
    /// Images `fetch_image` can get, with how long it takes.
    remote: BTreeMap<String, (ResolvedImage, Duration)>,
    build_takes: Duration,
    scripts: BTreeMap<String, Script>,
    faults: VecDeque<(String, String, Fault)>,
    traffic: BTreeMap<(String, String), Reading>,
    /// Foreign users of an isolation, by isolation name.
    foreign: BTreeMap<String, Vec<String>>,
    /// What `cannot_probe_unpublished` says.
    unprobeable: Option<String>,
    /// The environments this process joined ([`Backend::attach`]) and has not left.
    joined: BTreeSet<String>,
    calls: Vec<String>,
    /// Run when an operation is called, before it acts: something happening meanwhile.
    hooks: Vec<(String, Hook)>,
    next: u64,
    /// The engine's capacity and admission queue (by handle).
    capacity: Option<Capacity>,
    queue: BTreeMap<String, Queued>,
    /// The pools' fill claims (by handle).
    fills: BTreeMap<String, Filling>,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

/// The fake backend; clones share one world.
#[derive(Clone)]
pub struct Fake {
    info: Arc<BackendInfo>,
    world: Arc<Mutex<World>>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake::new()
    }
}

impl Env {
    /// An environment that holds nothing yet.
    fn empty(metadata: &Metadata) -> Env {
        Env {
            metadata: metadata.clone(),
            claimed: false,
            markers: Markers::default(),
            isolation: None,
            volumes: BTreeMap::new(),
            services: BTreeMap::new(),
            aside: BTreeMap::new(),
            runs: BTreeMap::new(),
            adopter: None,
        }
    }

    /// Whether nothing of it is left: the engine would list nothing.
    fn is_empty(&self) -> bool {
        !self.claimed
            && self.services.is_empty()
            && self.aside.is_empty()
            && self.markers.update.is_none()
            && self.isolation.is_none()
            && self.volumes.is_empty()
            && !self.markers.ready
            && !self.markers.pinned
            && self.markers.lease_until.is_none()
            && !self.markers.member
            && !self.markers.adopted
            && self.markers.creating.is_none()
    }
}

impl World {
    /// The environment `id`, or `NotFound` naming it as a `kind`.
    fn env_mut(&mut self, id: &str, kind: &'static str) -> Result<&mut Env> {
        self.envs.get_mut(id).ok_or_else(|| BackendError::NotFound {
            kind,
            name: id.to_string(),
        })
    }
}

impl Fake {
    /// A backend with Docker's capabilities.
    pub fn new() -> Fake {
        Fake::with_capabilities(Capabilities {
            exec: true,
            traffic: true,
            stop_keeps_state: true,
            build: true,
            local_images: true,
            replace_in_place: true,
            pause: true,
        })
    }

    pub fn with_capabilities(capabilities: Capabilities) -> Fake {
        Fake {
            info: Arc::new(BackendInfo {
                kind: BackendKind::Docker,
                endpoint: "fake://".into(),
                capabilities,
            }),
            world: Arc::default(),
        }
    }

    /// The fake as a backend of `kind` names what it makes, in messages and for its isolation.
    pub fn speaking_as(mut self, kind: BackendKind) -> Fake {
        Arc::make_mut(&mut self.info).kind = kind;
        self
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("fake world")
    }

    /// An image `resolve_image` finds at once.
    pub fn add_image(&self, image: ResolvedImage) {
        self.world()
            .local
            .insert(image.reference.to_string(), image);
    }

    /// An image that only a `fetch_image` taking `takes` makes local.
    pub fn add_remote_image(&self, image: ResolvedImage, takes: Duration) {
        let key = image.reference.to_string();
        self.world().remote.insert(key, (image, takes));
    }

    /// How long every build takes.
    /// `cannot_probe_unpublished` says `why`: probes of unpublished ports cannot work.
    pub fn refuse_unpublished_probes(&self, why: &str) {
        self.world().unprobeable = Some(why.to_string());
    }

    pub fn set_build_time(&self, takes: Duration) {
        self.world().build_takes = takes;
    }

    /// How `service` behaves once started, in every environment.
    pub fn script(&self, service: &str, script: Script) {
        self.world().scripts.insert(service.to_string(), script);
    }

    /// The next call of `operation` on `target` (an id, `id/service`, an image, or `*`) does
    /// `fault` instead of its work.
    pub fn fault(&self, operation: &str, target: &str, fault: Fault) {
        self.world()
            .faults
            .push_back((operation.into(), target.into(), fault));
    }

    /// What `traffic` reads for `service` of `id`.
    pub fn set_traffic(&self, id: &str, service: &str, reading: Reading) {
        self.world()
            .traffic
            .insert((id.into(), service.into()), reading);
    }

    /// Attaches something envctl did not create to an isolation.
    pub fn attach_foreign(&self, isolation: &str, user: &str) {
        self.world()
            .foreign
            .entry(isolation.into())
            .or_default()
            .push(user.into());
    }

    /// Changes what the backend holds as the metadata of `id`, as another host's `up` would
    /// have written it.
    pub fn edit_metadata(&self, id: &str, edit: impl FnOnce(&mut Metadata)) {
        if let Some(env) = self.world().envs.get_mut(id) {
            edit(&mut env.metadata);
        }
    }

    /// Removes a service's resource behind envctl's back.
    pub fn remove_by_hand(&self, id: &str, service: &str) {
        if let Some(env) = self.world().envs.get_mut(id) {
            env.services.remove(service);
        }
    }

    /// Removes everything of `id` behind envctl's back, as another process's `down` does.
    pub fn remove_environment_by_hand(&self, id: &str) {
        self.world().envs.remove(id);
    }

    /// Runs `hook` whenever `operation` is called, before it acts.
    pub fn on(&self, operation: &str, hook: impl Fn() + Send + Sync + 'static) {
        self.world()
            .hooks
            .push((operation.to_string(), Arc::new(hook)));
    }

    /// Every call so far, as `operation target`.
    /// The environments this process joined and has not left.
    pub fn joined(&self) -> Vec<String> {
        self.world().joined.iter().cloned().collect()
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// The calls of `operation` so far, their targets only.
    pub fn calls_of(&self, operation: &str) -> Vec<String> {
        self.calls()
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("{operation} ")).map(String::from))
            .collect()
    }

    /// The named volumes `id` holds now.
    pub fn volumes(&self, id: &str) -> Vec<VolumeRef> {
        self.world()
            .envs
            .get(id)
            .map(|env| env.volumes.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The runtime `service` of `id` was created with.
    pub fn runtime(&self, id: &str, service: &str) -> Option<Runtime> {
        let world = self.world();
        let service = world.envs.get(id)?.services.get(service)?;
        Some(service.runtime.clone())
    }

    /// Whether anything of `id` is left.
    pub fn exists(&self, id: &str) -> bool {
        self.world().envs.contains_key(id)
    }

    /// Logs the call and takes the scripted fault for it, if any.
    fn take_fault(&self, operation: &str, target: &str) -> Option<Fault> {
        let hooks: Vec<Hook> = self
            .world()
            .hooks
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, hook)| hook.clone())
            .collect();
        for hook in hooks {
            hook();
        }
        let mut world = self.world();
        world.calls.push(format!("{operation} {target}"));
        let position = world
            .faults
            .iter()
            .position(|(op, t, _)| op == operation && (t == target || t == "*"));
        position.and_then(|i| world.faults.remove(i)).map(|f| f.2)
    }

    /// Logs the call, then acts on a scripted fault for it, if any.
    async fn enter(&self, operation: &str, target: &str) -> Result<()> {
        match self.take_fault(operation, target) {
            None => Ok(()),
            Some(Fault::Fail(reason)) => Err(BackendError::operation(
                format!("{operation} `{target}`"),
                reason,
            )),
            Some(Fault::Taken) => Err(BackendError::Taken(target.into())),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }

    fn status_of(&self, script: Option<&Script>, service: &FakeService) -> ServiceStatus {
        let mut status = ServiceStatus::new(ServiceState::Pending);
        status.created_at = Some(service.created);
        if let Some((code, at)) = service.stopped {
            status.state = ServiceState::Exited;
            status.exit_code = Some(code);
            status.finished_at = Some(at);
            status.started_at = service.started.map(|s| s.1);
            return status;
        }
        let Some((started, started_at)) = service.started else {
            return status;
        };
        let script = script.cloned().unwrap_or_default();
        let ran = Instant::now() - started;
        status.started_at = Some(started_at);
        status.state = ServiceState::Running;
        if let Some((after, code)) = script.exits
            && ran >= after
        {
            status.state = ServiceState::Exited;
            status.exit_code = Some(code);
            status.finished_at = Some(started_at + chrono::Duration::from_std(after).unwrap());
            return status;
        }
        status.health = match script.healthy_after {
            None => Health::None,
            Some(after) if ran >= after => Health::Healthy,
            Some(_) => Health::Starting,
        };
        status.endpoints = service
            .metadata
            .ports
            .iter()
            .map(|port| ServiceEndpoint {
                container_port: *port,
                host: "127.0.0.1".into(),
                port: script.host_port.unwrap_or(30000 + port.number % 1000),
                bound: "0.0.0.0".into(),
            })
            .collect();
        if service.paused {
            status.state = ServiceState::Paused;
        }
        status
    }

    /// What a listing by `selector` shows of `env`: under `Selector::Run`, only what that run
    /// made, resource by resource, as the engines select by each resource's label; `None`
    /// when that is nothing.
    fn record(&self, world: &World, env: &Env, selector: &Selector) -> Option<EnvironmentRecord> {
        let of_run = |run: Option<&Option<String>>| match selector {
            Selector::Run(wanted) => run.and_then(Option::as_deref) == Some(wanted.as_str()),
            Selector::All | Selector::Id(_) => true,
        };
        let marked = |name: &str| of_run(env.runs.get(name));
        let services = |map: &BTreeMap<String, FakeService>| -> Vec<ServiceRecord> {
            map.values()
                .filter(|s| of_run(Some(&s.run)))
                .map(|s| ServiceRecord {
                    handle: s.handle.clone(),
                    metadata: s.metadata.clone(),
                    status: self.status_of(world.scripts.get(&s.handle.service), s),
                })
                .collect()
        };
        let markers = Markers {
            claimed: env.markers.claimed && marked("claim"),
            ready: env.markers.ready && marked("ready"),
            pinned: env.markers.pinned && marked("pin"),
            lease_until: env.markers.lease_until.filter(|_| marked("lease")),
            update: (env.markers.update.clone()).filter(|m| of_run(Some(&m.run))),
            member: env.markers.member && marked("member"),
            adopted: env.markers.adopted && marked("adopt"),
            creating: (env.markers.creating.clone()).filter(|m| of_run(Some(&m.run))),
        };
        let metadata = match &env.adopter {
            Some(adopter) if env.markers.adopted => adopter.clone(),
            _ => env.metadata.clone(),
        };
        let record = EnvironmentRecord {
            id: env.metadata.id.clone(),
            metadata,
            services: services(&env.services),
            aside: services(&env.aside),
            isolation: env
                .isolation
                .iter()
                .filter(|_| marked("isolation"))
                .cloned()
                .collect(),
            volumes: (env.volumes.values())
                .filter(|v| marked(&format!("volume {}", v.name)))
                .cloned()
                .collect(),
            markers,
        };
        let empty = record.markers == Markers::default()
            && record.services.is_empty()
            && record.aside.is_empty()
            && record.isolation.is_empty()
            && record.volumes.is_empty();
        (!empty || !matches!(selector, Selector::Run(_))).then_some(record)
    }

    /// Pauses or resumes a service that runs (or is paused), as `docker pause` does.
    async fn set_paused(&self, service: &ServiceRef, paused: bool) -> Result<()> {
        if !self.info.capabilities.pause {
            return Err(unsupported_pause(self.info.kind));
        }
        let status = self.status(service).await?;
        if !matches!(status.state, ServiceState::Running | ServiceState::Paused) {
            return Err(BackendError::operation(
                format!("pause `{}`", service.name),
                "it is not running",
            ));
        }
        let mut world = self.world();
        if let Some(state) = world
            .envs
            .get_mut(&service.id)
            .and_then(|env| Fake::service_of_mut(env, service))
        {
            state.paused = paused;
        }
        Ok(())
    }

    fn find(&self, service: &ServiceRef) -> Result<()> {
        let world = self.world();
        let found = world
            .envs
            .get(&service.id)
            .is_some_and(|env| env.services.contains_key(&service.service));
        match found {
            true => Ok(()),
            false => Err(BackendError::NotFound {
                kind: "service",
                name: service.name.clone(),
            }),
        }
    }

    fn target(service: &ServiceRef) -> String {
        format!("{}/{}", service.id, service.service)
    }

    /// The service `handle` names, by its native handle: a service put aside and its
    /// replacement share a name.
    fn service_of<'a>(env: &'a Env, handle: &ServiceRef) -> Option<&'a FakeService> {
        [
            env.services.get(&handle.service),
            env.aside.get(&handle.service),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.handle.native == handle.native)
    }

    fn service_of_mut<'a>(env: &'a mut Env, handle: &ServiceRef) -> Option<&'a mut FakeService> {
        [
            env.services.get_mut(&handle.service),
            env.aside.get_mut(&handle.service),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.handle.native == handle.native)
    }
}

#[async_trait]
impl Backend for Fake {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn ping(&self) -> Result<()> {
        self.enter("ping", "*").await
    }

    async fn cannot_probe_unpublished(&self) -> Option<String> {
        self.world().unprobeable.clone()
    }

    async fn attach(&self, id: &str) -> Result<Joined> {
        self.enter("attach", id).await?;
        self.world().joined.insert(id.to_string());
        Ok(Joined {
            joined: true,
            warning: None,
        })
    }

    async fn detach(&self, id: &str) -> Result<()> {
        self.enter("detach", id).await?;
        self.world().joined.remove(id);
        Ok(())
    }

    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        let key = image.to_string();
        self.enter("resolve_image", &key).await?;
        Ok(self.world().local.get(&key).cloned())
    }

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.enter("image_tags", repository).await?;
        let world = self.world();
        Ok(world
            .local
            .values()
            .filter(|i| i.reference.repository == repository)
            .map(|i| i.reference.tag.clone())
            .collect())
    }

    async fn fetch_image(
        &self,
        image: &ImageRef,
        _: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let key = image.to_string();
        self.enter("fetch_image", &key).await?;
        let remote = self.world().remote.get(&key).cloned();
        let Some((resolved, takes)) = remote else {
            return Err(BackendError::operation(
                format!("pull `{key}`"),
                "repository does not exist",
            ));
        };
        tokio::time::sleep(takes).await;
        self.world().local.insert(key, resolved);
        Ok(())
    }

    async fn build_image(&self, _: Vec<u8>, _: &str, tag: &ImageRef) -> Result<()> {
        let key = tag.to_string();
        self.enter("build_image", &key).await?;
        let takes = self.world().build_takes;
        tokio::time::sleep(takes).await;
        let image = ResolvedImage {
            reference: tag.clone(),
            digest: None,
            healthcheck: None,
        };
        self.world().local.insert(key, image);
        Ok(())
    }

    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        self.enter("claim", &metadata.id).await?;
        let mut world = self.world();
        if world.envs.get(&metadata.id).is_some_and(|env| env.claimed) {
            return Err(BackendError::Taken(metadata.id.clone()));
        }
        let env = world
            .envs
            .entry(metadata.id.clone())
            .or_insert_with(|| Env::empty(metadata));
        env.runs.insert("claim".into(), metadata.run.clone());
        env.claimed = true;
        env.markers.claimed = true;
        env.metadata = metadata.clone();
        Ok(())
    }

    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        self.enter("create_isolation", &metadata.id).await?;
        let mut world = self.world();
        world.next += 1;
        let isolation = IsolationRef {
            name: self.info.kind.isolation_name(metadata),
            native: format!("net-{}", world.next),
        };
        let env = world.env_mut(&metadata.id, "claim")?;
        env.isolation = Some(isolation.clone());
        env.runs.insert("isolation".into(), metadata.run.clone());
        Ok(isolation)
    }

    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        self.enter("create_volume", &format!("{}/{}", metadata.id, volume.name))
            .await?;
        let mut world = self.world();
        let env = world.env_mut(&metadata.id, "claim")?;
        let volume = VolumeRef {
            name: volume.name.clone(),
            native: crate::naming::volume_name(&metadata.id, &volume.name),
        };
        env.volumes.insert(volume.name.clone(), volume.clone());
        env.runs
            .insert(format!("volume {}", volume.name), metadata.run.clone());
        Ok(volume)
    }

    async fn create_service(
        &self,
        _isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        let id = spec.metadata.id.clone();
        self.enter("create_service", &format!("{id}/{}", spec.service))
            .await?;
        let mut world = self.world();
        world.next += 1;
        let handle = ServiceRef {
            id: id.clone(),
            service: spec.service.clone(),
            native: format!("c-{}", world.next),
            name: crate::naming::container_name(&spec.service, &id),
        };
        let env = world.env_mut(&id, "claim")?;
        env.services.insert(
            spec.service.clone(),
            FakeService {
                handle: handle.clone(),
                metadata: spec.service_metadata(),
                runtime: spec.runtime.clone(),
                created: Utc::now(),
                started: None,
                stopped: None,
                paused: false,
                run: spec.metadata.run.clone(),
            },
        );
        Ok(handle)
    }

    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        self.enter("start_service", &Fake::target(service)).await?;
        self.find(service)?;
        let mut world = self.world();
        let env = world.envs.get_mut(&service.id).expect("found");
        let state = env.services.get_mut(&service.service).expect("found");
        state.started = Some((Instant::now(), Utc::now()));
        state.stopped = None;
        Ok(())
    }

    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        self.enter("wait_exit", &Fake::target(service)).await?;
        loop {
            let status = self.status(service).await?;
            if let Some(code) = status.exit_code {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        let world = self.world();
        let Some(env) = world.envs.get(&service.id) else {
            return Ok(ServiceStatus::new(ServiceState::Missing));
        };
        let Some(state) = Fake::service_of(env, service) else {
            return Ok(ServiceStatus::new(ServiceState::Missing));
        };
        Ok(self.status_of(world.scripts.get(&service.service), state))
    }

    fn logs(
        &self,
        service: &ServiceRef,
        _options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>> {
        if let Some(Fault::Hang) = self.take_fault("logs", &Fake::target(service)) {
            return stream::pending().boxed();
        }
        let world = self.world();
        let lines: Vec<String> = world
            .scripts
            .get(&service.service)
            .map(|s| s.logs.clone())
            .unwrap_or_default();
        stream::iter(lines.into_iter().map(|text| {
            Ok(LogLine {
                timestamp: None,
                text,
            })
        }))
        .boxed()
    }

    async fn exec(&self, service: &ServiceRef, _command: &[String]) -> Result<ExecOutput> {
        self.enter("exec", &Fake::target(service)).await?;
        if !self.info.capabilities.exec {
            return Err(BackendError::Unsupported {
                backend: self.info.kind,
                operation: "exec",
                hint: "no hint".into(),
            });
        }
        let takes = self
            .world()
            .scripts
            .get(&service.service)
            .map(|s| s.exec_takes)
            .unwrap_or_default();
        tokio::time::sleep(takes).await;
        let healthy = self.status(service).await?.health == Health::Healthy;
        Ok(ExecOutput {
            exit_code: if healthy { 0 } else { 1 },
            output: String::new(),
        })
    }

    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic> {
        self.enter("traffic", &Fake::target(service)).await?;
        if !self.info.capabilities.traffic {
            return Err(BackendError::Unsupported {
                backend: self.info.kind,
                operation: "read traffic counters",
                hint: "no hint".into(),
            });
        }
        let key = (service.id.clone(), service.service.clone());
        match self.world().traffic.get(&key) {
            Some(Reading::Counters(traffic)) => Ok(*traffic),
            None => Ok(Traffic::default()),
            Some(Reading::Unreadable) => Err(BackendError::operation(
                format!("read the traffic of `{}`", service.name),
                "no such file",
            )),
        }
    }

    async fn pause_service(&self, service: &ServiceRef) -> Result<()> {
        self.enter("pause_service", &Fake::target(service)).await?;
        self.set_paused(service, true).await
    }

    async fn resume_service(&self, service: &ServiceRef) -> Result<()> {
        self.enter("resume_service", &Fake::target(service)).await?;
        self.set_paused(service, false).await
    }

    async fn stop_service(&self, service: &ServiceRef, _grace: Duration) -> Result<()> {
        self.enter("stop_service", &Fake::target(service)).await?;
        let status = self.status(service).await?;
        let mut world = self.world();
        if let Some(state) = world
            .envs
            .get_mut(&service.id)
            .and_then(|env| Fake::service_of_mut(env, service))
            && matches!(status.state, ServiceState::Running | ServiceState::Paused)
        {
            state.stopped = Some((137, Utc::now()));
            state.paused = false;
        }
        Ok(())
    }

    async fn remove_service(&self, service: &ServiceRef, _grace: Option<Duration>) -> Result<()> {
        self.enter("remove_service", &Fake::target(service)).await?;
        if let Some(env) = self.world().envs.get_mut(&service.id) {
            let native = |s: &FakeService| s.handle.native == service.native;
            if env.services.get(&service.service).is_some_and(native) {
                env.services.remove(&service.service);
            }
            if env.aside.get(&service.service).is_some_and(native) {
                env.aside.remove(&service.service);
            }
        }
        Ok(())
    }

    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside> {
        self.enter("put_aside", &Fake::target(service)).await?;
        let mut world = self.world();
        let env = world.envs.get_mut(&service.id);
        let Some(mut aside) = env.and_then(|env| {
            let aside = env.services.remove(&service.service)?;
            Some((env, aside))
        }) else {
            return Err(BackendError::NotFound {
                kind: "service",
                name: service.name.clone(),
            });
        };
        aside.1.handle.name = crate::naming::replaced_name(&service.service, &service.id);
        let handle = aside.1.handle.clone();
        let address = aside.1.metadata.address;
        aside.0.aside.insert(service.service.clone(), aside.1);
        Ok(Aside { handle, address })
    }

    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<std::net::IpAddr>,
    ) -> Result<ServiceRef> {
        self.enter("restore_aside", &Fake::target(aside)).await?;
        let mut world = self.world();
        let Some(env) = world.envs.get_mut(&aside.id) else {
            return Err(BackendError::NotFound {
                kind: "service",
                name: aside.name.clone(),
            });
        };
        if env.services.contains_key(&aside.service) {
            return Err(BackendError::operation(
                format!("restore `{}`", aside.name),
                "its replacement still exists",
            ));
        }
        let Some(mut restored) = env.aside.remove(&aside.service) else {
            return Err(BackendError::NotFound {
                kind: "service",
                name: aside.name.clone(),
            });
        };
        restored.handle.name = crate::naming::container_name(&aside.service, &aside.id);
        restored.metadata.address = address.or(restored.metadata.address);
        let handle = restored.handle.clone();
        env.services.insert(aside.service.clone(), restored);
        Ok(handle)
    }

    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        self.enter("list", "*").await?;
        let world = self.world();
        let mut records: Vec<EnvironmentRecord> = world
            .envs
            .values()
            .filter(|env| match selector {
                Selector::Id(id) => env.metadata.id == *id,
                Selector::All | Selector::Run(_) => true,
            })
            .filter_map(|env| self.record(&world, env, selector))
            .collect();
        // As the engines list: oldest first, then by id.
        records.sort_by(|a, b| (a.metadata.created_at, &a.id).cmp(&(b.metadata.created_at, &b.id)));
        Ok(records)
    }

    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        let name = marker.kind().as_str();
        self.enter("set_marker", &format!("{}/{name}", metadata.id))
            .await?;
        let mut world = self.world();
        // As on Docker and Swarm, a marker is an object of its own (a container, a config):
        // it is created whether anything else of the environment is left or not.
        let env = world
            .envs
            .entry(metadata.id.clone())
            .or_insert_with(|| Env::empty(metadata));
        // A marker set again keeps its labels (Docker renames a lease's container); an
        // update's marker carries its run in its metadata.
        if marker == Marker::Adopt && env.markers.adopted {
            return Err(BackendError::Taken(metadata.id.clone()));
        }
        if marker == Marker::Create && env.markers.creating.is_some() {
            return Err(BackendError::Taken(metadata.id.clone()));
        }
        if !matches!(marker, Marker::Update(_)) {
            env.runs
                .entry(name.to_string())
                .or_insert_with(|| metadata.run.clone());
        }
        match marker {
            Marker::Ready => env.markers.ready = true,
            Marker::Pinned => env.markers.pinned = true,
            Marker::Lease(until) => env.markers.lease_until = Some(until),
            Marker::Update(_) if env.markers.update.is_some() => {
                return Err(BackendError::Taken(metadata.id.clone()));
            }
            Marker::Update(until) => {
                env.markers.update = Some(Metadata {
                    start_deadline: Some(until),
                    ..metadata.clone()
                })
            }
            Marker::Member => env.markers.member = true,
            Marker::Adopt => {
                env.markers.adopted = true;
                env.adopter = Some(metadata.clone());
            }
            Marker::Create => env.markers.creating = Some(metadata.clone()),
        }
        Ok(())
    }

    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        let name = kind.as_str();
        self.enter("clear_marker", &format!("{id}/{name}")).await?;
        let mut world = self.world();
        if let Some(env) = world.envs.get_mut(id) {
            env.runs.remove(name);
            match kind {
                MarkerKind::Ready => env.markers.ready = false,
                MarkerKind::Pinned => env.markers.pinned = false,
                MarkerKind::Lease => env.markers.lease_until = None,
                MarkerKind::Update => env.markers.update = None,
                MarkerKind::Anchor => (env.claimed, env.markers.claimed) = (false, false),
                MarkerKind::Member => env.markers.member = false,
                MarkerKind::Adopt => {
                    env.markers.adopted = false;
                    env.adopter = None;
                }
                MarkerKind::Create => env.markers.creating = None,
                // The engine's, no environment's: never an environment's marker.
                MarkerKind::Capacity | MarkerKind::Queue | MarkerKind::Fill => {}
            }
            if env.is_empty() {
                world.envs.remove(id);
            }
        }
        Ok(())
    }

    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()> {
        self.enter("clear_update_marker", &format!("{id}/update"))
            .await?;
        let mut world = self.world();
        if let Some(env) = world.envs.get_mut(id) {
            let of_run = |m: &Metadata| m.run.as_deref() == Some(run);
            if env.markers.update.as_ref().is_some_and(of_run) {
                env.markers.update = None;
            }
            if env.is_empty() {
                world.envs.remove(id);
            }
        }
        Ok(())
    }

    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        self.enter("clear_create_marker", &format!("{id}/create"))
            .await?;
        let mut world = self.world();
        if let Some(env) = world.envs.get_mut(id) {
            let of_run = |m: &Metadata| m.run.as_deref() == Some(run);
            if env.markers.creating.as_ref().is_some_and(of_run) {
                env.markers.creating = None;
                env.runs.remove(MarkerKind::Create.as_str());
            }
            if env.is_empty() {
                world.envs.remove(id);
            }
        }
        Ok(())
    }

    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        self.enter("remove_isolation", &isolation.name).await?;
        let mut world = self.world();
        if let Some(users) = world.foreign.get(&isolation.name) {
            return Err(BackendError::InUse {
                what: isolation.name.clone(),
                users: users.clone(),
            });
        }
        for env in world.envs.values_mut() {
            if env.isolation.as_ref() == Some(isolation) {
                env.isolation = None;
            }
        }
        Ok(())
    }

    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        self.enter("remove_volume", &volume.native).await?;
        for env in self.world().envs.values_mut() {
            env.volumes.retain(|_, v| v != volume);
        }
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<()> {
        self.enter("release", id).await?;
        let mut world = self.world();
        if let Some(env) = world.envs.get_mut(id) {
            env.claimed = false;
            env.markers.claimed = false;
            if env.is_empty() {
                world.envs.remove(id);
            }
        }
        Ok(())
    }

    async fn admission(&self) -> Result<Admission> {
        self.enter("admission", "*").await?;
        let world = self.world();
        Ok(Admission {
            capacity: world.capacity.clone(),
            queue: match world.capacity {
                Some(_) => world.queue.values().cloned().collect(),
                None => Vec::new(),
            },
        })
    }

    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()> {
        self.enter("set_capacity", "*").await?;
        self.world().capacity = capacity.cloned();
        Ok(())
    }

    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String> {
        self.enter("enqueue", &waiter.nonce).await?;
        Ok(self.enqueue_by_hand(waiter, until))
    }

    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()> {
        self.enter("renew_entry", &waiter.nonce).await?;
        match self.world().queue.get_mut(native) {
            Some(queued) => {
                queued.expires = Some(until);
                queued.waiter.admitted = waiter.admitted;
                Ok(())
            }
            None => Err(BackendError::NotFound {
                kind: "queue entry",
                name: native.into(),
            }),
        }
    }

    async fn dequeue(&self, native: &str) -> Result<()> {
        self.enter("dequeue", native).await?;
        self.world().queue.remove(native);
        Ok(())
    }

    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String> {
        self.enter("claim_fill", &filler.environment).await?;
        let mut world = self.world();
        world.next += 1;
        // The engine's clock, strictly increasing as an engine's nanoseconds are in practice.
        let created = Utc::now() + chrono::Duration::nanoseconds(world.next as i64);
        let native = format!("fill-{}", world.next);
        let filling = Filling {
            native: native.clone(),
            filler: filler.clone(),
            created,
            expires: Some(until),
        };
        world.fills.insert(native.clone(), filling);
        Ok(native)
    }

    async fn fill_claims(&self) -> Result<Vec<Filling>> {
        self.enter("fill_claims", "*").await?;
        Ok(self.world().fills.values().cloned().collect())
    }

    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()> {
        self.enter("renew_fill", &filler.environment).await?;
        match self.world().fills.get_mut(native) {
            Some(filling) => {
                filling.expires = Some(until);
                Ok(())
            }
            None => Err(BackendError::NotFound {
                kind: "fill claim",
                name: native.into(),
            }),
        }
    }

    async fn release_fill(&self, native: &str) -> Result<()> {
        self.enter("release_fill", native).await?;
        self.world().fills.remove(native);
        Ok(())
    }
}

impl Fake {
    /// Adds `waiter` to the admission queue at once, as another client's `enqueue` does (a
    /// hook may call it): the handle of its entry.
    pub fn enqueue_by_hand(&self, waiter: &Waiter, until: DateTime<Utc>) -> String {
        let mut world = self.world();
        world.next += 1;
        // The engine's clock, strictly increasing as an engine's nanoseconds are in practice.
        let created = Utc::now() + chrono::Duration::nanoseconds(world.next as i64);
        let native = format!("queue-{}", world.next);
        let queued = Queued {
            native: native.clone(),
            waiter: waiter.clone(),
            created,
            expires: Some(until),
        };
        world.queue.insert(native.clone(), queued);
        native
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PortMapping, Protocol};

    pub fn image(reference: &str) -> ResolvedImage {
        let (repository, tag) = reference.split_once(':').unwrap();
        ResolvedImage {
            reference: ImageRef {
                repository: repository.into(),
                tag: tag.into(),
            },
            digest: None,
            healthcheck: None,
        }
    }

    fn spec(metadata: &Metadata, service: &str) -> ServiceSpec {
        ServiceSpec {
            service: service.into(),
            image: image("shop/app:1"),
            command: None,
            env: Vec::new(),
            runtime: Runtime {
                ports: vec![PortMapping::random(Port {
                    number: 8080,
                    protocol: Protocol::Tcp,
                })],
                ..Runtime::default()
            },
            aliases: vec![service.into()],
            address: None,
            depends_on: Default::default(),
            ready: Ready {
                probes: Vec::new(),
                timeout: Duration::from_secs(60),
            },
            reference: None,
            metadata: metadata.clone(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_taken_once_until_released() {
        let fake = Fake::new();
        let metadata = Metadata::new("shop-1");
        fake.claim(&metadata).await.unwrap();
        assert!(matches!(
            fake.claim(&metadata).await,
            Err(BackendError::Taken(id)) if id == "shop-1"
        ));
        fake.release("shop-1").await.unwrap();
        assert!(!fake.exists("shop-1"));
        fake.claim(&metadata).await.unwrap();
        assert_eq!(fake.calls_of("claim"), ["shop-1", "shop-1", "shop-1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scripted_fault_strikes_its_target_once() {
        let fake = Fake::new();
        fake.fault("claim", "b", Fault::Fail("boom".into()));
        fake.claim(&Metadata::new("a")).await.unwrap();
        let error = fake.claim(&Metadata::new("b")).await.unwrap_err();
        assert_eq!(error.to_string(), "failed to claim `b`: boom");
        fake.claim(&Metadata::new("b")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_follows_its_script_in_paused_time() {
        let fake = Fake::new();
        fake.script(
            "job",
            Script {
                exits: Some((Duration::from_secs(5), 3)),
                healthy_after: Some(Duration::from_secs(1)),
                ..Script::default()
            },
        );
        let metadata = Metadata::new("shop-1");
        fake.claim(&metadata).await.unwrap();
        let net = fake.create_isolation(&metadata).await.unwrap();
        let job = fake
            .create_service(&net, &spec(&metadata, "job"))
            .await
            .unwrap();
        assert_eq!(
            fake.status(&job).await.unwrap().state,
            ServiceState::Pending
        );
        fake.start_service(&job).await.unwrap();
        let running = fake.status(&job).await.unwrap();
        assert_eq!(running.state, ServiceState::Running);
        assert_eq!(running.health, Health::Starting);
        assert_eq!(running.endpoints[0].container_port.number, 8080);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.status(&job).await.unwrap().health, Health::Healthy);
        assert_eq!(fake.wait_exit(&job).await.unwrap(), 3);
        let exited = fake.status(&job).await.unwrap();
        assert_eq!(
            (exited.state, exited.exit_code),
            (ServiceState::Exited, Some(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn counters_are_whatever_the_test_set_and_can_be_unreadable() {
        let fake = Fake::new();
        let metadata = Metadata::new("shop-1");
        fake.claim(&metadata).await.unwrap();
        let net = fake.create_isolation(&metadata).await.unwrap();
        let app = fake
            .create_service(&net, &spec(&metadata, "app"))
            .await
            .unwrap();
        let set = Traffic {
            received: 10,
            sent: 20,
        };
        fake.set_traffic("shop-1", "app", Reading::Counters(set));
        assert_eq!(fake.traffic(&app).await.unwrap(), set);
        fake.set_traffic("shop-1", "app", Reading::Unreadable);
        assert!(fake.traffic(&app).await.is_err());
        let without = Fake::with_capabilities(Capabilities {
            traffic: false,
            ..fake.info().capabilities
        });
        assert!(matches!(
            without.traffic(&app).await,
            Err(BackendError::Unsupported { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_foreign_user_keeps_the_isolation() {
        let fake = Fake::new();
        let metadata = Metadata {
            environment: Some("shop".into()),
            ..Metadata::new("shop-1")
        };
        fake.claim(&metadata).await.unwrap();
        let net = fake.create_isolation(&metadata).await.unwrap();
        fake.attach_foreign(&net.name, "debugger");
        match fake.remove_isolation(&net).await {
            Err(BackendError::InUse { users, .. }) => assert_eq!(users, ["debugger"]),
            other => panic!("{other:?}"),
        }
        fake.release("shop-1").await.unwrap();
        assert!(fake.exists("shop-1"), "the network is still there");
        let records = fake.list(&Selector::All).await.unwrap();
        assert!(!records[0].markers.claimed);
    }
}
