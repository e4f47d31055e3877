//! The Docker backend: one engine, environments as containers on a network of their own.
//!
//! Claims and markers are never-started containers whose names the engine keeps unique
//! (`envctl_ID`, `envctl_ID_ready`, `envctl_ID_pin`, `envctl_ID_lease-UNIX`); a lease is
//! renewed by renaming its container, which the engine does atomically. Services are
//! containers `SERVICE_ID` on the user-defined bridge network `envctl_ENV_ID`.

pub mod attach;
pub mod convert;
pub mod engine;

pub use crate::backend::bollard::connect::Flags;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};

use crate::backend::docker::engine::docker::Docker;
use crate::backend::docker::engine::{
    ContainerSpec, ContainerSummary, NetworkSpec, NetworkSummary, VolumeSummary,
};
use crate::backend::*;
use crate::naming::codec::{self, MarkerKind};
use crate::naming::{self};
use crate::spec::ImageRef;
use crate::spec::runtime::MountSource;

/// The capabilities of one Docker engine.
pub const CAPABILITIES: Capabilities = Capabilities {
    exec: true,
    traffic: true,
    stop_keeps_state: true,
    build: true,
    local_images: true,
    replace_in_place: true,
    pause: true,
};

/// A Docker engine as a [`Backend`]. Cheap to clone.
#[derive(Clone)]
pub struct DockerBackend {
    engine: Docker,
    info: BackendInfo,
    /// envctl's own container, and the environments' networks this process connected it to.
    attacher: Arc<attach::Attacher>,
    /// When the engine created each queue entry seen, by container id: a listing tells only
    /// the second, an inspection the nanosecond, and an entry's creation never changes.
    queued_at: Arc<std::sync::Mutex<BTreeMap<String, DateTime<Utc>>>>,
}

impl DockerBackend {
    pub fn new(engine: Docker) -> DockerBackend {
        let info = BackendInfo {
            kind: BackendKind::Docker,
            // Unprefixed, as envctl always keyed its state store: earlier history survives.
            endpoint: engine.endpoint().to_string(),
            capabilities: CAPABILITIES,
        };
        DockerBackend {
            engine,
            info,
            attacher: Arc::default(),
            queued_at: Arc::default(),
        }
    }

    /// The engine underneath, for the code that still speaks containers.
    pub fn engine(&self) -> &Docker {
        &self.engine
    }

    /// Connects to the engine `--host`, `--context`, DOCKER_HOST or the Docker contexts choose.
    pub async fn connect(flags: &Flags) -> Result<DockerBackend> {
        Ok(DockerBackend::new(Docker::connect_with(flags).await?))
    }
}

impl DockerBackend {
    /// Removes the `kind` marker of `id` that `run` set, by its container id: one of another
    /// run under the same name is never touched.
    async fn clear_run_marker(&self, id: &str, kind: MarkerKind, run: &str) -> Result<()> {
        let filters = [
            Filter::Managed,
            Filter::Id(id.to_string()),
            Filter::Run(run.to_string()),
        ];
        let containers = self.engine.list_containers(&filters).await?;
        let markers = containers
            .iter()
            .filter(|c| codec::role(&c.labels) == Some(kind));
        for marker in markers {
            match self.engine.remove_container(&marker.id).await {
                Ok(()) | Err(BackendError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
    /// The queue's entries, each with the time the engine created it.
    /// The admission queue's entries among `containers` (a listing of envctl's), each with
    /// the time the engine created it.
    async fn entries(&self, containers: &[ContainerSummary]) -> Result<Vec<Queued>> {
        let found: Vec<(&ContainerSummary, Waiter)> = containers
            .iter()
            .filter(|c| codec::role(&c.labels) == Some(MarkerKind::Queue))
            .filter_map(|c| Some((c, codec::Waiter::decode(&c.labels)?)))
            .collect();
        let alone = found.len() == 1;
        let times =
            futures_util::future::join_all(found.iter().map(|(c, _)| self.created(c, alone))).await;
        let mut queue = Vec::new();
        for ((container, waiter), created) in found.into_iter().zip(times) {
            // `None`: removed meanwhile (admitted, or given up).
            let Some(created) = created? else {
                continue;
            };
            queue.push(Queued {
                expires: naming::queue_expiry(&container.name),
                native: container.id.clone(),
                waiter: Waiter {
                    admitted: naming::queue_admitted(&container.name),
                    ..waiter
                },
                created,
            });
        }
        Ok(queue)
    }

    /// When the engine created the queue entry `container`. The order within a priority needs
    /// nanoseconds, which only an inspect gives (once an entry, then remembered); an entry alone
    /// in the queue has nothing to be ordered against, and the listing's second does.
    async fn created(
        &self,
        container: &ContainerSummary,
        alone: bool,
    ) -> Result<Option<DateTime<Utc>>> {
        let known = self
            .queued_at
            .lock()
            .expect("queue times")
            .get(&container.id)
            .copied();
        if let Some(created) = known {
            return Ok(Some(created));
        }
        if alone && let Some(created) = container.created {
            return Ok(Some(created));
        }
        match self.engine.inspect_container(&container.id).await {
            Ok(details) => {
                if let Some(created) = details.created {
                    let mut times = self.queued_at.lock().expect("queue times");
                    times.insert(container.id.clone(), created);
                }
                Ok(details.created)
            }
            Err(BackendError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The lease container of `id`, if there is one.
    async fn lease(&self, id: &str) -> Result<Option<ContainerSummary>> {
        let containers = self
            .engine
            .list_containers(&[Filter::Managed, Filter::Id(id.to_string())])
            .await?;
        Ok(containers
            .into_iter()
            .find(|c| codec::role(&c.labels) == Some(MarkerKind::Lease)))
    }

    fn group(
        &self,
        containers: Vec<ContainerSummary>,
        networks: Vec<NetworkSummary>,
        volumes: Vec<VolumeSummary>,
    ) -> Vec<EnvironmentRecord> {
        group(&self.engine, containers, networks, volumes)
    }
}

/// Environments from one list of containers, one of networks and one of volumes, oldest first.
pub fn group(
    engine: &Docker,
    containers: Vec<ContainerSummary>,
    networks: Vec<NetworkSummary>,
    volumes: Vec<VolumeSummary>,
) -> Vec<EnvironmentRecord> {
    struct Partial {
        metadata: Option<Metadata>,
        /// From an adoption marker: the adopter's, which wins (see `naming::adopt_name`).
        adopter: Option<Metadata>,
        /// From a pin, which carries only what identifies the environment.
        fallback: Metadata,
        markers: Markers,
        services: Vec<ServiceRecord>,
        aside: Vec<ServiceRecord>,
        isolation: Vec<IsolationRef>,
        /// The `envctl up` or `update` run that created each service, by container id.
        runs: BTreeMap<String, Option<String>>,
        volumes: Vec<VolumeRef>,
    }
    fn entry<'m>(by_id: &'m mut BTreeMap<String, Partial>, metadata: &Metadata) -> &'m mut Partial {
        by_id.entry(metadata.id.clone()).or_insert_with(|| Partial {
            metadata: None,
            adopter: None,
            fallback: metadata.clone(),
            markers: Markers::default(),
            services: Vec::new(),
            aside: Vec::new(),
            isolation: Vec::new(),
            runs: BTreeMap::new(),
            volumes: Vec::new(),
        })
    }
    let mut by_id: BTreeMap<String, Partial> = BTreeMap::new();
    for container in containers {
        let Some(metadata) = Metadata::decode(&container.labels) else {
            continue;
        };
        let role = codec::role(&container.labels);
        let partial = entry(&mut by_id, &metadata);
        let lends = !matches!(
            role,
            Some(MarkerKind::Pinned | MarkerKind::Update | MarkerKind::Create)
        );
        if lends && partial.metadata.is_none() || role == Some(MarkerKind::Anchor) {
            partial.metadata = Some(metadata.clone());
        }
        match role {
            Some(MarkerKind::Anchor) => partial.markers.claimed = true,
            Some(MarkerKind::Ready) => partial.markers.ready = true,
            Some(MarkerKind::Pinned) => partial.markers.pinned = true,
            Some(MarkerKind::Lease) => {
                partial.markers.lease_until = partial
                    .markers
                    .lease_until
                    .max(naming::lease_expiry(&container.name))
            }
            Some(MarkerKind::Update) => partial.markers.update = Some(metadata.clone()),
            Some(MarkerKind::Member) => partial.markers.member = true,
            Some(MarkerKind::Adopt) => {
                partial.markers.adopted = true;
                partial.adopter = Some(metadata.clone());
            }
            Some(MarkerKind::Create) => partial.markers.creating = Some(metadata.clone()),
            // They carry no id: never reached.
            Some(MarkerKind::Capacity | MarkerKind::Queue | MarkerKind::Fill) => {}
            None if codec::ServiceMetadata::decode(&container.labels).is_some_and(|s| {
                container.name.trim_start_matches('/')
                    == naming::replaced_name(&s.service, &metadata.id)
            }) =>
            {
                let service = codec::ServiceMetadata::decode(&container.labels);
                if let Some(service) = service {
                    partial.aside.push(ServiceRecord {
                        handle: convert::handle(&metadata.id, &container),
                        status: convert::summary_status(engine, &container),
                        metadata: service,
                    });
                }
            }
            None => {
                let service = codec::ServiceMetadata::decode(&container.labels).unwrap_or(
                    codec::ServiceMetadata {
                        service: String::new(),
                        image: None,
                        depends_on: Default::default(),
                        ports: Vec::new(),
                        ready: None,
                        reference: None,
                        aliases: Vec::new(),
                        address: None,
                        settings: Default::default(),
                    },
                );
                partial
                    .runs
                    .insert(container.id.clone(), metadata.run.clone());
                partial.services.push(ServiceRecord {
                    handle: convert::handle(&metadata.id, &container),
                    status: convert::summary_status(engine, &container),
                    metadata: service,
                });
            }
        }
    }
    for network in networks {
        let Some(metadata) = Metadata::decode(&network.labels) else {
            continue;
        };
        let partial = entry(&mut by_id, &metadata);
        if partial.metadata.is_none() {
            partial.metadata = Some(metadata.clone());
        }
        partial.isolation.push(IsolationRef {
            name: network.name,
            native: network.id,
        });
    }
    for volume in volumes {
        let Some(metadata) = Metadata::decode(&volume.labels) else {
            continue;
        };
        let partial = entry(&mut by_id, &metadata);
        if partial.metadata.is_none() {
            partial.metadata = Some(metadata.clone());
        }
        let name = naming::volume_of(&metadata.id, &volume.name).unwrap_or(&volume.name);
        partial.volumes.push(VolumeRef {
            name: name.to_string(),
            native: volume.name.clone(),
        });
    }
    let mut records: Vec<EnvironmentRecord> = by_id
        .into_iter()
        .map(|(id, mut partial)| {
            partial
                .services
                .sort_by(|a, b| a.handle.service.cmp(&b.handle.service));
            partial
                .aside
                .sort_by(|a, b| a.handle.service.cmp(&b.handle.service));
            let metadata = (partial.adopter)
                .or(partial.metadata)
                .unwrap_or(partial.fallback);
            // Containers made before each carried its own ref label: those `up` created run
            // the refs it was given.
            for service in &mut partial.services {
                let run = partial.runs.get(&service.handle.native).cloned().flatten();
                if service.metadata.reference.is_none() && run.is_some() && run == metadata.run {
                    service.metadata.reference = metadata
                        .refs
                        .iter()
                        .find(|r| r.service == service.handle.service)
                        .cloned();
                }
            }
            partial.volumes.sort();
            EnvironmentRecord {
                id,
                metadata,
                markers: partial.markers,
                services: partial.services,
                aside: partial.aside,
                isolation: partial.isolation,
                volumes: partial.volumes,
            }
        })
        .collect();
    records.sort_by(|a, b| (a.metadata.created_at, &a.id).cmp(&(b.metadata.created_at, &b.id)));
    records
}

#[async_trait]
impl Backend for DockerBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn reach(&self) -> &crate::reach::Reachability {
        self.engine.reachability()
    }

    async fn ping(&self) -> Result<()> {
        self.engine.ping().await
    }

    async fn attach(&self, id: &str) -> Result<Joined> {
        self.attacher.attach(&self.engine, id).await
    }

    async fn detach(&self, id: &str) -> Result<()> {
        self.attacher.detach(&self.engine, id).await
    }

    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        let details = self.engine.inspect_image(&image.to_string()).await?;
        Ok(details.map(|details| ResolvedImage {
            reference: image.clone(),
            digest: details.id,
            healthcheck: convert::healthcheck(details.healthcheck),
        }))
    }

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.engine.image_tags(repository).await
    }

    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        self.engine.insecure_registries().await
    }

    async fn fetch_image(
        &self,
        image: &ImageRef,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        self.engine
            .pull_image(&image.repository, &image.tag, on_progress)
            .await
    }

    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &ImageRef) -> Result<()> {
        self.engine
            .build_image(context, dockerfile, &tag.to_string())
            .await
    }

    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        let anchor = naming::anchor_name(&metadata.id);
        let labels = metadata.encode_marker(MarkerKind::Anchor);
        match self.engine.create_marker(&anchor, &labels).await {
            Ok(_) => Ok(()),
            Err(BackendError::Taken(_)) => Err(BackendError::Taken(metadata.id.clone())),
            Err(error) => Err(error),
        }
    }

    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        let network = NetworkSpec {
            name: naming::network_name(
                metadata.environment.as_deref().unwrap_or_default(),
                &metadata.id,
            ),
            labels: metadata.encode(),
        };
        let native = self.engine.create_network(&network).await?;
        Ok(IsolationRef {
            name: network.name,
            native,
        })
    }

    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        let mut labels = volume.labels.clone();
        labels.extend(metadata.encode());
        let native = naming::volume_name(&metadata.id, &volume.name);
        let spec = engine::VolumeSpec {
            name: native.clone(),
            labels,
        };
        self.engine.create_volume(&spec).await?;
        Ok(VolumeRef {
            name: volume.name.clone(),
            native,
        })
    }

    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        let name = naming::container_name(&spec.service, &spec.metadata.id);
        // Named volumes by their engine names: one set per copy of the environment.
        let mut runtime = spec.runtime.clone();
        for mount in &mut runtime.mounts {
            if let MountSource::Volume(volume) = &mut mount.source {
                *volume = naming::volume_name(&spec.metadata.id, volume);
            }
        }
        let container = ContainerSpec {
            name: name.clone(),
            image: spec.image.reference.to_string(),
            command: spec.command.clone(),
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            runtime,
            labels: spec.metadata.encode_service(&spec.service_metadata()),
            network: isolation.native.clone(),
            aliases: spec.aliases.clone(),
            address: spec.address,
        };
        let native = self.engine.create_container(&container).await?;
        Ok(ServiceRef {
            id: spec.metadata.id.clone(),
            service: spec.service.clone(),
            native,
            name,
        })
    }

    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        self.engine.start_container(&service.native).await
    }

    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        self.engine.wait_container(&service.native).await
    }

    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        match self.engine.inspect_container(&service.native).await {
            Ok(details) => Ok(convert::details_status(&self.engine, &details)),
            Err(BackendError::NotFound { .. }) => Ok(ServiceStatus::new(ServiceState::Missing)),
            Err(error) => Err(error),
        }
    }

    fn changes(&self) -> BoxStream<'static, Result<()>> {
        self.engine.changes()
    }

    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>> {
        self.engine
            .logs(&service.native, options)
            .map(|line| Ok(line?.into_seam()))
            .boxed()
    }

    async fn exec(&self, service: &ServiceRef, command: &[String]) -> Result<ExecOutput> {
        self.engine.exec(&service.native, command).await
    }

    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic> {
        self.engine.traffic(&service.native).await
    }

    async fn memory(&self, service: &ServiceRef) -> Result<Option<u64>> {
        self.engine.memory(&service.native).await
    }

    async fn pause_service(&self, service: &ServiceRef) -> Result<()> {
        self.engine.pause_container(&service.native, true).await
    }

    async fn resume_service(&self, service: &ServiceRef) -> Result<()> {
        self.engine.pause_container(&service.native, false).await
    }

    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()> {
        self.engine.stop_container(&service.native, grace).await
    }

    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()> {
        if let Some(grace) = grace {
            self.engine.stop_container(&service.native, grace).await?;
        }
        self.engine.remove_container(&service.native).await
    }

    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside> {
        // Renamed, then off the environment's network: its name, aliases and address are free
        // for the replacement, which takes the address over (a fixed address on the network's
        // own subnet), so a dependent that resolved the name once (nginx's `proxy_pass`) still
        // reaches the service. Off the network at once, the previous container cannot answer
        // at that address while it is being stopped and the replacement starts.
        let name = naming::replaced_name(&service.service, &service.id);
        let (renamed, attachment) = tokio::join!(
            self.engine.rename_container(&service.native, &name),
            self.engine.attachment(&service.native)
        );
        renamed?;
        let attachment = attachment?;
        if attachment.attached {
            self.engine
                .disconnect_network(&attachment.network, &service.native)
                .await?;
        }
        Ok(Aside {
            handle: ServiceRef {
                name,
                ..service.clone()
            },
            address: attachment.address,
        })
    }

    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<std::net::IpAddr>,
    ) -> Result<ServiceRef> {
        let name = naming::container_name(&aside.service, &aside.id);
        let (renamed, attachment) = tokio::join!(
            self.engine.rename_container(&aside.native, &name),
            self.engine.attachment(&aside.native)
        );
        renamed?;
        let attachment = attachment?;
        let metadata = codec::ServiceMetadata::decode(&attachment.labels);
        let address = address.or(metadata.as_ref().and_then(|m| m.address));
        // One put aside by an earlier envctl is still on the network: as it is, unless it has
        // an address to take back.
        if attachment.attached {
            if address.is_none() {
                return Ok(ServiceRef {
                    name,
                    ..aside.clone()
                });
            }
            self.engine
                .disconnect_network(&attachment.network, &aside.native)
                .await?;
        }
        let mut aliases = vec![aside.service.clone()];
        aliases.extend(metadata.map(|m| m.aliases).unwrap_or_default());
        let (network, container) = (&attachment.network, &aside.native);
        let joined = self
            .engine
            .connect_network(network, container, &aliases, address)
            .await;
        match (joined, address) {
            (Ok(()), _) => {}
            // A network of an earlier envctl, with no subnet of its own, gives no fixed
            // address: the engine chooses.
            (Err(error), Some(address)) => {
                tracing::debug!("cannot take {address} back: {error}");
                self.engine
                    .connect_network(network, container, &aliases, None)
                    .await?;
            }
            (Err(error), None) => return Err(error),
        }
        Ok(ServiceRef {
            name,
            ..aside.clone()
        })
    }

    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        let filters = selector.filters();
        let (containers, networks, volumes) = tokio::try_join!(
            self.engine.list_containers(&filters),
            self.engine.list_networks(&filters),
            self.engine.list_volumes(&filters)
        )?;
        Ok(self.group(containers, networks, volumes))
    }

    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        let id = &metadata.id;
        let (name, role) = match marker {
            Marker::Ready => (naming::ready_name(id), MarkerKind::Ready),
            Marker::Pinned => (naming::pin_name(id), MarkerKind::Pinned),
            Marker::Lease(until) => {
                let name = naming::lease_name(id, until);
                if let Some(lease) = self.lease(id).await? {
                    // Docker refuses to rename a container to its own name: two renewals
                    // within one second ask for the same expiry, and the second is done.
                    if lease.name.trim_start_matches('/') == name {
                        return Ok(());
                    }
                    return self.engine.rename_container(&lease.id, &name).await;
                }
                (name, MarkerKind::Lease)
            }
            Marker::Update(until) => {
                // The marker is a container created under a unique name, never started: the
                // name makes it exclusive; its labels carry the update's deadline and process.
                let metadata = Metadata {
                    start_deadline: Some(until),
                    ..metadata.clone()
                };
                let name = naming::update_name(id);
                return match self
                    .engine
                    .create_marker(&name, &metadata.encode_marker(MarkerKind::Update))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(BackendError::Taken(_)) => Err(BackendError::Taken(id.clone())),
                    Err(error) => Err(error),
                };
            }
            Marker::Member => (naming::member_name(id), MarkerKind::Member),
            // Exclusive like an update's: the name makes one adopter, one creator win on any
            // host.
            Marker::Adopt | Marker::Create => {
                let kind = marker.kind();
                let name = naming::marker_name(id, kind).unwrap_or_default();
                return match self
                    .engine
                    .create_marker(&name, &metadata.encode_marker(kind))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(BackendError::Taken(_)) => Err(BackendError::Taken(id.clone())),
                    Err(error) => Err(error),
                };
            }
        };
        match self
            .engine
            .create_marker(&name, &metadata.encode_marker(role))
            .await
        {
            Ok(_) | Err(BackendError::Taken(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        let name = match naming::marker_name(id, kind) {
            Some(name) => name,
            None => match self.lease(id).await? {
                Some(lease) => lease.id,
                None => return Ok(()),
            },
        };
        match self.engine.remove_container(&name).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()> {
        self.clear_run_marker(id, MarkerKind::Update, run).await
    }

    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        self.clear_run_marker(id, MarkerKind::Create, run).await
    }

    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        let refused = match self.engine.remove_network(&isolation.native).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        // Only a refusal costs the inspection: who is still attached is not a service.
        let users = match self.engine.network_containers(&isolation.native).await {
            Ok(attached) if !attached.is_empty() => attached,
            Err(BackendError::NotFound { .. }) => return Ok(()),
            _ => return Err(refused),
        };
        // envctl's own container joined it for a start or a `run` (one killed before it
        // disconnected, or one still running): disconnected, not named as a foreign user.
        let mut foreign = Vec::new();
        let mut released = false;
        for user in users {
            let envctls = match self.engine.networked(&user.id).await {
                Ok(container) => attach::is_envctls(&container, &isolation.native),
                // Gone meanwhile: it holds nothing any more.
                Err(BackendError::NotFound { .. }) => {
                    released = true;
                    continue;
                }
                Err(_) => false,
            };
            if !envctls {
                foreign.push(user);
                continue;
            }
            tracing::debug!(container = %user.name, network = %isolation.name, "disconnecting envctl's own attachment");
            match self
                .engine
                .disconnect_network(&isolation.native, &user.id)
                .await
            {
                Ok(()) | Err(BackendError::NotFound { .. }) => released = true,
                Err(_) => foreign.push(user),
            }
        }
        if foreign.is_empty() && released {
            return match self.engine.remove_network(&isolation.native).await {
                Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
                Err(error) => Err(error),
            };
        }
        if foreign.is_empty() {
            return Err(refused);
        }
        let mut users: Vec<String> = foreign
            .into_iter()
            .map(|u| u.name.trim_start_matches('/').to_string())
            .collect();
        users.sort();
        Err(BackendError::InUse {
            what: isolation.name.clone(),
            users,
        })
    }

    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        self.engine.remove_volume(&volume.native).await
    }

    async fn release(&self, id: &str) -> Result<()> {
        match self.engine.remove_container(&naming::anchor_name(id)).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn admission(&self) -> Result<Admission> {
        // Both at once: a second list costs less than a second round trip.
        let capacity = [Filter::Managed, Filter::Role(MarkerKind::Capacity)];
        let queue = [Filter::Managed, Filter::Role(MarkerKind::Queue)];
        let (markers, entries) = tokio::try_join!(
            self.engine.list_containers(&capacity),
            self.engine.list_containers(&queue)
        )?;
        let Some(capacity) = markers
            .iter()
            .find_map(|marker| codec::Capacity::decode(&marker.labels))
        else {
            return Ok(Admission::default());
        };
        Ok(Admission {
            capacity: Some(capacity),
            queue: self.entries(&entries).await?,
        })
    }

    async fn admission_view(&self) -> Result<(Admission, Vec<EnvironmentRecord>)> {
        // One listing of containers is one snapshot of the engine's (its in-memory view of
        // containers, since Docker 17.06), and holds the queue's entries and the environments'
        // claims alike: a start that left the queue after claiming is in it either as waiting
        // or as counted, never as neither, without reading the queue before what runs.
        let filters = Selector::All.filters();
        let (containers, networks, volumes) = tokio::try_join!(
            self.engine.list_containers(&filters),
            self.engine.list_networks(&filters),
            self.engine.list_volumes(&filters)
        )?;
        let capacity = containers
            .iter()
            .filter(|c| codec::role(&c.labels) == Some(MarkerKind::Capacity))
            .find_map(|marker| codec::Capacity::decode(&marker.labels));
        let queue = match capacity {
            Some(_) => self.entries(&containers).await?,
            None => Vec::new(),
        };
        let admission = Admission { capacity, queue };
        Ok((admission, self.group(containers, networks, volumes)))
    }

    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()> {
        // Replaced, not changed: labels are fixed at creation. A start that looks meanwhile
        // sees none and is admitted at once, as before any capacity was set.
        match self.engine.remove_container(naming::CAPACITY_NAME).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        let Some(capacity) = capacity else {
            return Ok(());
        };
        match self
            .engine
            .create_marker(naming::CAPACITY_NAME, &capacity.encode())
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::Taken(_)) => Err(BackendError::Conflict(
                "the engine's capacity (set by another client at the same time)".into(),
            )),
            Err(error) => Err(error),
        }
    }

    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String> {
        let name = naming::queue_name(&waiter.nonce, until, waiter.admitted);
        self.engine.create_marker(&name, &waiter.encode()).await
    }

    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()> {
        let name = naming::queue_name(&waiter.nonce, until, waiter.admitted);
        self.engine.rename_container(native, &name).await
    }

    async fn dequeue(&self, native: &str) -> Result<()> {
        self.queued_at.lock().expect("queue times").remove(native);
        match self.engine.remove_container(native).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String> {
        let name = naming::fill_name(&filler.nonce, until);
        self.engine.create_marker(&name, &filler.encode()).await
    }

    async fn fill_claims(&self) -> Result<Vec<Filling>> {
        let filters = [Filter::Managed, Filter::Role(MarkerKind::Fill)];
        let mut claims = Vec::new();
        for container in self.engine.list_containers(&filters).await? {
            let Some(filler) = codec::Filler::decode(&container.labels) else {
                continue;
            };
            // The engine's creation time, to the nanosecond: a listing has only seconds.
            let created = match self.engine.inspect_container(&container.id).await {
                Ok(details) => match details.created {
                    Some(created) => created,
                    None => continue,
                },
                // Released meanwhile.
                Err(BackendError::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            claims.push(Filling {
                expires: naming::fill_expiry(&container.name),
                native: container.id,
                filler,
                created,
            });
        }
        Ok(claims)
    }

    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()> {
        let name = naming::fill_name(&filler.nonce, until);
        self.engine.rename_container(native, &name).await
    }

    async fn release_fill(&self, native: &str) -> Result<()> {
        match self.engine.remove_container(native).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}
