//! Environments on a Docker swarm, through a manager: the claim and the markers as configs,
//! one attachable overlay network per environment, one service per envctl service (one
//! replica, restart condition `none`, DNS round robin, ports published in host mode on the node
//! that runs the task), images pinned to their registry digest, readiness at the node's address
//! (docs/backends.md §6.2).
//!
//! What a swarm cannot do is declared in [`CAPABILITIES`]: no `exec` (tasks run on other
//! nodes' engines: `exec:` and `healthcheck:` probes run as the service's own health check
//! instead), no traffic counters, no builds, no images outside a registry, and no replacement
//! in place for `envctl update` (a swarm cannot rename a service).

mod convert;
mod list;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig,
    NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    UpdateConfigOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures_util::stream::{BoxStream, StreamExt};

use super::{
    Aside, Backend, BackendError, BackendInfo, BackendKind, Capabilities, EnvironmentRecord,
    ExecOutput, Healthcheck, IsolationRef, LogLine, LogOptions, Marker, MarkerKind, PullProgress,
    ResolvedImage, Result, Selector, ServiceRef, ServiceSpec, ServiceState, ServiceStatus, Traffic,
    VolumeRef, VolumeSpec,
};
use crate::backend::bollard::auth;
use crate::backend::bollard::connect::{self, Flags, Origin, Settings};
use crate::backend::bollard::filters::label_filter;
use crate::naming;
use crate::naming::codec::{self as codec, Filter, Labels, Metadata};
use crate::reach::Reachability;
use crate::registry;
use crate::spec::{ImageRef, Probe, Protocol, Ready};

use convert::{NodeAddresses, status_of};

/// How long one call to the manager may take before envctl calls it hung.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// How long a removed service's tasks may take to stop, beyond the grace period.
const REMOVAL_LIMIT: Duration = Duration::from_secs(30);
/// How often a `exec:` or `healthcheck:` probe runs as the service's health check: the least
/// Docker 20.10 accepts works, and readiness is seen within a poll of it.
const HEALTH_INTERVAL: Duration = Duration::from_millis(100);
/// How long one run of a health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often envctl looks at tasks while it waits for them.
const POLL: Duration = Duration::from_millis(100);

/// What a swarm offers beyond the operations every backend has: nothing of Docker's extras.
pub const CAPABILITIES: Capabilities = Capabilities {
    exec: false,
    traffic: false,
    stop_keeps_state: false,
    build: false,
    local_images: false,
    replace_in_place: false,
    pause: false,
};

/// A swarm, through one of its managers.
pub struct Swarm {
    client: bollard::Docker,
    info: BackendInfo,
    /// How many nodes the swarm had when envctl connected: an image only in the manager's
    /// store is usable on one node alone.
    nodes: usize,
    /// `ENVCTL_HOST`: where published ports are reached, whatever the nodes' addresses.
    envctl_host: Option<String>,
    /// The registry digest of each image `resolve_image` found, by `repository:tag`: services
    /// run exactly that image on every node.
    pinned: Mutex<HashMap<String, String>>,
    /// What the probes learnt of reaching the services from here.
    reach: Reachability,
}

impl Swarm {
    /// Connects to the engine at `host` (`unix:///…`, `tcp://…`; `origin` says where that
    /// came from) and checks that it is a manager of a swarm.
    pub async fn connect(host: &str, origin: &Origin) -> Result<Swarm> {
        let client =
            bollard::Docker::connect_with_host(host).map_err(|e| BackendError::Unreachable {
                backend: BackendKind::Swarm,
                endpoint: host.to_string(),
                origin: origin.to_string(),
                reason: e.to_string(),
                hint: origin.hint(),
            })?;
        Swarm::open(client, host, origin, Settings::from_env().envctl_host).await
    }

    /// Connects to the manager `--host`, `--context`, DOCKER_HOST or the Docker contexts
    /// choose, as the Docker backend chooses its engine (TLS and ssh included).
    pub async fn connect_with(flags: &Flags) -> Result<Swarm> {
        let settings = Settings::from_env();
        let endpoint =
            connect::resolve(flags, &settings).map_err(|unusable| BackendError::Unreachable {
                backend: BackendKind::Swarm,
                endpoint: unusable.host,
                hint: unusable.origin.hint(),
                origin: unusable.origin.to_string(),
                reason: unusable.reason,
            })?;
        let client = endpoint
            .client(CALL_LIMIT)
            .map_err(|reason| BackendError::Unreachable {
                backend: BackendKind::Swarm,
                endpoint: endpoint.host.clone(),
                origin: endpoint.origin.to_string(),
                reason,
                hint: endpoint.origin.hint(),
            })?;
        Swarm::open(
            client,
            &endpoint.host,
            &endpoint.origin,
            settings.envctl_host,
        )
        .await
    }

    async fn open(
        client: bollard::Docker,
        host: &str,
        origin: &Origin,
        envctl_host: Option<String>,
    ) -> Result<Swarm> {
        let unreachable = |reason: String, hint: String| BackendError::Unreachable {
            backend: BackendKind::Swarm,
            endpoint: host.to_string(),
            origin: origin.to_string(),
            reason,
            hint,
        };
        let client = tokio::time::timeout(CALL_LIMIT, client.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_LIMIT:?}"), origin.hint()))?
            .map_err(|e| unreachable(e.to_string(), origin.hint()))?;
        let mut swarm = Swarm {
            client,
            info: BackendInfo {
                kind: BackendKind::Swarm,
                endpoint: format!("swarm+{host}"),
                capabilities: CAPABILITIES,
            },
            nodes: 0,
            envctl_host,
            pinned: Mutex::new(HashMap::new()),
            reach: Reachability::new(),
        };
        let info = swarm
            .call("read the engine's info", swarm.client.info())
            .await?;
        if info.swarm.and_then(|s| s.control_available) != Some(true) {
            return Err(unreachable(
                "it is not a manager of a swarm".into(),
                "point envctl at a manager of the swarm (`docker node ls` works there)".into(),
            ));
        }
        swarm.nodes = swarm
            .call("list the swarm's nodes", swarm.client.list_nodes(None))
            .await?
            .len();
        Ok(swarm)
    }

    /// The environment's attachable overlay network, under a name never used before.
    async fn overlay(&self, metadata: &Metadata) -> Result<IsolationRef> {
        let name = network_name(metadata);
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(hash_map(metadata.encode())),
            ..Default::default()
        };
        let created = self
            .call(
                &format!("create network `{name}`"),
                self.client.create_network(request),
            )
            .await?;
        Ok(IsolationRef {
            name,
            native: created.id,
        })
    }

    /// The image as services run it: pinned to the digest `resolve_image` found.
    fn pinned_image(&self, image: &ImageRef) -> String {
        let text = image.to_string();
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        match pinned.get(&text) {
            Some(digest) => format!("{text}@{digest}"),
            None => text,
        }
    }

    async fn scale(&self, service: &ServiceRef, count: i64) -> Result<()> {
        let operation = format!("scale service `{}` to {count}", service.name);
        // A concurrent update makes ours out of sequence: read again and retry.
        let mut attempts = 0;
        loop {
            let current = self
                .call(
                    &operation,
                    self.client.inspect_service(&service.native, None),
                )
                .await?;
            let version = current.version.and_then(|v| v.index).unwrap_or_default();
            let mut spec = current.spec.unwrap_or_default();
            spec.mode = Some(replicas(count));
            let ready = convert::ready_of(&spec);
            let template = spec.task_template.get_or_insert_with(Default::default);
            // A forced update makes a new task even at the same count; scaled to none, it
            // would only make a task that is told to shut down before it runs.
            if count > 0 {
                template.force_update = Some(template.force_update.unwrap_or(0) + 1);
            }
            // bollard reads Docker's `Healthcheck` as `HealthCheck`, so an inspected spec has
            // lost it: sent back as read, the update would drop the health check. It is made
            // again from the readiness spec the service's labels carry.
            if let Some(container) = template.container_spec.as_mut() {
                container.health_check = ready.as_ref().and_then(|r| health_check(r, None));
            }
            let options = UpdateServiceOptionsBuilder::default()
                .version(i32::try_from(version).unwrap_or(i32::MAX))
                .build();
            let updated = self
                .call(
                    &operation,
                    self.client
                        .update_service(&service.native, spec, options, None),
                )
                .await;
            match updated {
                Err(BackendError::Operation { reason, .. })
                    if reason.contains("out of sequence") && attempts < 5 =>
                {
                    attempts += 1;
                }
                other => return other.map(drop),
            }
        }
    }

    async fn tasks(&self, service: &ServiceRef) -> Result<Vec<bollard::models::Task>> {
        let filters = HashMap::from([("service".to_string(), vec![service.native.clone()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        self.call(
            &format!("list the tasks of service `{}`", service.name),
            self.client.list_tasks(Some(options)),
        )
        .await
    }

    async fn node_addresses(&self) -> Result<NodeAddresses> {
        let nodes = self
            .call("list the swarm's nodes", self.client.list_nodes(None))
            .await?;
        Ok(NodeAddresses::new(&nodes))
    }

    /// Endpoints at `ENVCTL_HOST` when it is set.
    fn reached(&self, mut status: ServiceStatus) -> ServiceStatus {
        if let Some(host) = &self.envctl_host {
            for endpoint in status
                .endpoints
                .iter_mut()
                .chain(&mut status.probe_endpoints)
            {
                endpoint.host.clone_from(host);
            }
        }
        status
    }

    /// The manager's own copy of `image`, if it has one: `Some(healthcheck)`.
    async fn on_manager(&self, image: &str) -> Result<Option<Option<Healthcheck>>> {
        let inspected = self
            .call(
                &format!("inspect image `{image}`"),
                self.client.inspect_image(image),
            )
            .await;
        match inspected {
            Ok(inspected) => Ok(Some(crate::backend::docker::convert::healthcheck(
                inspected
                    .config
                    .and_then(|config| config.healthcheck)
                    .and_then(|healthcheck| healthcheck.test)
                    .filter(|test| !test.is_empty() && test[0] != "NONE"),
            ))),
            Err(BackendError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The digest of `image` in its registry.
    async fn digest(&self, image: &str) -> Result<String, String> {
        let reference = registry::Reference::parse(image)?;
        let insecure = self.insecure().await.map_err(|e| e.to_string())?;
        registry::manifest_digest(&reference, &insecure)
            .await
            .map_err(|e| e.to_string())
    }

    async fn insecure(&self) -> Result<registry::Insecure> {
        let info = self
            .call("read the manager's registry settings", self.client.info())
            .await?;
        Ok(auth::insecure_of(info.registry_config.unwrap_or_default()))
    }

    /// The names of the configs of environment `id` in `role`.
    async fn configs(&self, id: &str, role: MarkerKind) -> Result<Vec<String>> {
        let configs = self.configs_in_role(id, role, None).await?;
        Ok(configs
            .into_iter()
            .filter_map(|config| config.spec?.name)
            .collect())
    }

    /// The configs of environment `id` in `role`, of run `run` when given.
    async fn configs_in_role(
        &self,
        id: &str,
        role: MarkerKind,
        run: Option<&str>,
    ) -> Result<Vec<bollard::models::Config>> {
        let mut filters = vec![Filter::Managed, Filter::Id(id.to_string())];
        filters.extend(run.map(|run| Filter::Run(run.to_string())));
        let filters = label_filter(&filters);
        let options = ListConfigsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let configs = self
            .call(
                &format!("list the configs of `{id}`"),
                self.client.list_configs(Some(options)),
            )
            .await?;
        Ok(configs
            .into_iter()
            .filter(|config| {
                let labels: Labels = config
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.labels.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                codec::role(&labels) == Some(role)
            })
            .collect())
    }

    /// Creates config `name` of environment `id`, carrying `labels`: `Taken` when it exists.
    async fn create_config(&self, name: &str, id: &str, labels: Labels) -> Result<()> {
        // A config must hold something: the id it belongs to.
        match self.put_config(name, id, labels).await {
            Err(BackendError::Conflict(_)) => Err(BackendError::Taken(id.to_string())),
            other => other.map(drop),
        }
    }

    /// Creates config `name` holding `data`, carrying `labels`: its id. `Conflict` when it
    /// exists.
    async fn put_config(&self, name: &str, data: &str, labels: Labels) -> Result<String> {
        let spec = ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(hash_map(labels)),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let created = self
            .call(
                &format!("create config `{name}`"),
                self.client.create_config(spec),
            )
            .await?;
        Ok(created.id)
    }

    /// Replaces the labels of config `config` (a name or an id), the rest as it is. `Conflict`
    /// when it changed between the read and the update (the manager refuses the update as out
    /// of sequence), `NotFound` when it is gone.
    async fn relabel_config(&self, config: &str, labels: &Labels, operation: &str) -> Result<()> {
        let read = self
            .call(operation, self.client.inspect_config(config))
            .await?;
        let version = read.version.and_then(|v| v.index).unwrap_or_default();
        let spec = ConfigSpec {
            labels: Some(hash_map(labels.clone())),
            ..read.spec.unwrap_or_default()
        };
        let options = UpdateConfigOptionsBuilder::new()
            .version(i64::try_from(version).unwrap_or(i64::MAX))
            .build();
        match self
            .call(operation, self.client.update_config(config, spec, options))
            .await
        {
            Err(BackendError::Operation { reason, .. }) if reason.contains("out of sequence") => {
                Err(BackendError::Conflict(reason))
            }
            other => other,
        }
    }

    /// The configs in `role` that belong to the swarm, not to an environment: its capacity,
    /// the entries of its admission queue.
    async fn engine_configs(&self, role: MarkerKind) -> Result<Vec<bollard::models::Config>> {
        let filters = label_filter(&[Filter::Managed, Filter::Role(role)]);
        let options = ListConfigsOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.call(
            &format!("list the swarm's `{}` configs", role.as_str()),
            self.client.list_configs(Some(options)),
        )
        .await
    }

    async fn delete_config(&self, name: &str) -> Result<()> {
        ignore_missing(
            self.call(
                &format!("remove config `{name}`"),
                self.client.delete_config(name),
            )
            .await,
        )
    }

    /// `call` within [`CALL_LIMIT`], its error typed and naming `operation`.
    async fn call<T>(
        &self,
        operation: &str,
        call: impl Future<Output = std::result::Result<T, BollardError>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(result) => result.map_err(|e| convert::error(&self.info.endpoint, operation, e)),
            Err(_) => Err(BackendError::NoAnswer {
                backend: BackendKind::Swarm,
                endpoint: self.info.endpoint.clone(),
                operation: operation.to_string(),
                waited: CALL_LIMIT,
            }),
        }
    }

    fn unsupported(operation: &'static str, hint: &str) -> BackendError {
        BackendError::Unsupported {
            backend: BackendKind::Swarm,
            operation,
            hint: hint.to_string(),
        }
    }
}

#[async_trait]
impl Backend for Swarm {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn reach(&self) -> &Reachability {
        &self.reach
    }

    async fn ping(&self) -> Result<()> {
        self.call("ping the manager", self.client.ping())
            .await
            .map(drop)
    }

    /// Never: `create_service` publishes a probed port the file does not publish, for
    /// envctl's probes alone.
    async fn cannot_probe_unpublished(&self) -> Option<String> {
        None
    }

    /// The image pinned to its registry digest. An image no registry has is usable only on a
    /// swarm of one node, from the manager's own store: on more nodes it is refused here,
    /// before anything is created, rather than rejected on a node that cannot pull it.
    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        let text = image.to_string();
        let local = self.on_manager(&text).await?;
        let healthcheck = local.clone().flatten();
        match self.digest(&text).await {
            Ok(digest) => {
                self.pinned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(text, digest);
                Ok(Some(ResolvedImage {
                    reference: image.clone(),
                    digest: None,
                    healthcheck,
                }))
            }
            Err(_) if local.is_some() && self.nodes <= 1 => Ok(Some(ResolvedImage {
                reference: image.clone(),
                digest: None,
                healthcheck,
            })),
            Err(why) if local.is_some() => Err(BackendError::Operation {
                operation: format!("run image `{text}` on a swarm of {} nodes", self.nodes),
                reason: format!(
                    "it is only in the manager's local store, and the other nodes pull images \
                     from a registry ({why})\nhint: push it to a registry every node reaches \
                     and name it with that registry in the environment file \
                     (`image: registry.example.com:5000/{}`)",
                    image.repository
                ),
            }),
            Err(_) => Ok(None),
        }
    }

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        let operation = || format!("list the tags of `{repository}`");
        let reference = registry::Reference::parse(repository)
            .map_err(|e| BackendError::operation(operation(), e))?;
        let insecure = self.insecure().await?;
        registry::tags(&reference, &insecure)
            .await
            .map_err(|e| BackendError::operation(operation(), e))
    }

    async fn insecure_registries(&self) -> Result<registry::Insecure> {
        self.insecure().await
    }

    /// Nothing to fetch: each node pulls the image when it runs a task. Says why an image
    /// `resolve_image` did not find is nowhere the nodes can pull it from.
    async fn fetch_image(
        &self,
        image: &ImageRef,
        _on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let text = image.to_string();
        match self.digest(&text).await {
            Ok(_) => Ok(()),
            Err(why) => Err(BackendError::Operation {
                operation: format!("find `{text}` in a registry"),
                reason: format!(
                    "{why}\nhint: a swarm's nodes pull images from a registry: push it there \
                     first (`docker push`), as CI does"
                ),
            }),
        }
    }

    async fn build_image(
        &self,
        _context: Vec<u8>,
        _dockerfile: &str,
        tag: &ImageRef,
    ) -> Result<()> {
        Err(Swarm::unsupported(
            "build images",
            &format!(
                "build and push `{tag}` to a registry in CI, then name it in the environment \
                 file (or `SERVICE@REF`)"
            ),
        ))
    }

    /// Claims `metadata.id` with the config `envctl_ID`, which the swarm refuses to create
    /// twice (409): `Taken` when it exists, whoever made it.
    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        let name = naming::anchor_name(&metadata.id);
        self.create_config(
            &name,
            &metadata.id,
            metadata.encode_marker(MarkerKind::Anchor),
        )
        .await
    }

    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        self.overlay(metadata).await
    }

    /// Nothing is created up front: a `local` volume appears, labelled, on whichever node runs
    /// the task that mounts it (`create_service` labels it through the mount), and keeps its
    /// data on that node only.
    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        Ok(VolumeRef {
            name: volume.name.clone(),
            native: naming::volume_name(&metadata.id, &volume.name),
        })
    }

    /// Creates the service with no replica: nothing runs until `start_service`.
    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        let name = naming::container_name(&spec.service, &spec.metadata.id);
        let operation = format!("create service `{name}`");
        let mut labels = spec.metadata.encode_service(&spec.service_metadata());
        // A task has no address envctl reaches: a probed port the file does not publish is
        // published for envctl alone, in host mode on a port the node picks, and marked so.
        let probe_ports = spec.ready.unpublished_ports(spec.ports());
        codec::mark_probe_ports(&mut labels, &probe_ports);
        let mut container = TaskSpecContainerSpec {
            image: Some(self.pinned_image(&spec.image.reference)),
            // Docker's CMD; `command` would replace the ENTRYPOINT.
            args: spec.command.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            health_check: health_check(&spec.ready, spec.image.healthcheck.as_ref()),
            ..Default::default()
        };
        let mut template = TaskSpec {
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(isolation.native.clone()),
                aliases: Some(spec.aliases.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut ports =
            convert::with_runtime(&mut container, &mut template, &spec.runtime, &spec.metadata)
                .map_err(|reason| BackendError::operation(&operation, reason))?;
        ports.extend(probe_ports.iter().map(|port| published(port, None)));
        template.container_spec = Some(container);
        let service = bollard::models::ServiceSpec {
            name: Some(name.clone()),
            labels: Some(hash_map(labels)),
            mode: Some(replicas(0)),
            task_template: Some(template),
            // No virtual IP and no routing mesh: both need the kernel's IPVS.
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(ports),
            }),
            ..Default::default()
        };
        let registry = registry::Reference::parse(&spec.image.reference.to_string())
            .map(|r| r.registry)
            .unwrap_or_else(|_| registry::DOCKER_HUB.to_string());
        let credentials = auth::registry_credentials(&registry)
            .await
            .map_err(|e| BackendError::operation(&operation, e))?;
        let created = self
            .call(&operation, self.client.create_service(service, credentials))
            .await?;
        Ok(ServiceRef {
            id: spec.metadata.id.clone(),
            service: spec.service.clone(),
            native: created.id.unwrap_or_else(|| name.clone()),
            name,
        })
    }

    /// Runs one task of the service, and returns once it started (or failed to): as a
    /// container's start does, so readiness and exit watchers see the new task, never one of
    /// an earlier run. The update is forced: scaling up while the previous task still stops
    /// would otherwise create no task. A task no node takes waits for the caller's deadline.
    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        let before: Vec<String> = self
            .tasks(service)
            .await?
            .into_iter()
            .filter_map(|task| task.id)
            .collect();
        self.scale(service, 1).await?;
        loop {
            let tasks = self.tasks(service).await?;
            let started = tasks
                .iter()
                .filter(|task| task.id.as_ref().is_some_and(|id| !before.contains(id)))
                .any(|task| !convert::is_before_start(task));
            if started {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resolves when the service's current task ended, with its exit code.
    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        loop {
            let status = self.status(service).await?;
            if let Some(code) = status.exit_code {
                return Ok(code);
            }
            if matches!(status.state, ServiceState::Failed | ServiceState::Missing) {
                return Err(BackendError::operation(
                    format!("wait for service `{}`", service.name),
                    status.detail.unwrap_or_else(|| "its task ended".into()),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The typed state of the service, from the service and its newest task; `Missing` when
    /// the service is gone.
    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        let inspected = self
            .call(
                &format!("inspect service `{}`", service.name),
                self.client.inspect_service(&service.native, None),
            )
            .await;
        let inspected = match inspected {
            Err(BackendError::NotFound { .. }) => {
                return Ok(ServiceStatus::new(ServiceState::Missing));
            }
            other => other?,
        };
        let tasks = self.tasks(service).await?;
        let nodes = self.node_addresses().await?;
        Ok(self.reached(status_of(&inspected, &tasks, &nodes)))
    }

    /// The service's logs as the manager streams them from whichever nodes ran its tasks.
    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>> {
        let mut query = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .timestamps(options.timestamps);
        if let Some(tail) = options.tail {
            query = query.tail(&tail.to_string());
        }
        if let Some(since) = options.since {
            query = query.since(i32::try_from(since.timestamp()).unwrap_or(i32::MAX));
        }
        let endpoint = self.info.endpoint.clone();
        let operation = format!("read the logs of service `{}`", service.name);
        let timestamps = options.timestamps;
        // Only a followed log may rightly go quiet for long; the last lines come at once.
        let client = match options.follow {
            true => self
                .client
                .clone()
                .with_timeout(crate::backend::bollard::PATIENT_TIMEOUT),
            false => self.client.clone(),
        };
        let chunks = client
            .service_logs(&service.native, Some(query.build()))
            .boxed();
        convert::service_log_lines(chunks, timestamps, move |error| {
            convert::error(&endpoint, &operation, error)
        })
    }

    async fn exec(&self, _service: &ServiceRef, _command: &[String]) -> Result<ExecOutput> {
        Err(Swarm::unsupported(
            "run commands in a service",
            "its task runs on another node's engine: `docker -H NODE exec` there",
        ))
    }

    async fn traffic(&self, _service: &ServiceRef) -> Result<Traffic> {
        Err(Swarm::unsupported(
            "count a service's traffic",
            "idleness is judged from envctl commands, leases and --ttl only",
        ))
    }

    /// Scales the service to no task, and returns once its task's container stopped (the
    /// A swarm pauses no task: `reap --pause-after` warns and does nothing.
    async fn pause_service(&self, _service: &ServiceRef) -> Result<()> {
        Err(crate::backend::unsupported_pause(BackendKind::Swarm))
    }

    async fn resume_service(&self, _service: &ServiceRef) -> Result<()> {
        Err(crate::backend::unsupported_pause(BackendKind::Swarm))
    }

    /// swarm gives it the service's stop grace period). Idempotent.
    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()> {
        match self.scale(service, 0).await {
            Err(BackendError::NotFound { .. }) => return Ok(()),
            other => other?,
        }
        let limit = grace + REMOVAL_LIMIT;
        let deadline = Instant::now() + limit;
        loop {
            let (tasks, nodes) = tokio::join!(self.tasks(service), self.node_addresses());
            let tasks = match tasks {
                Err(BackendError::NotFound { .. }) => return Ok(()),
                other => other?,
            };
            let nodes = nodes?;
            if !tasks
                .iter()
                .any(|task| convert::is_running(task) && !nodes.is_lost(task))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackendError::operation(
                    format!("stop service `{}`", service.name),
                    format!(
                        "its task still ran {} after it was scaled to none (is its node down?)",
                        humantime::format_duration(limit)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes the service, then waits until the swarm has deleted its tasks (removal is
    /// asynchronous: the container outlives the call by seconds). Idempotent.
    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()> {
        let operation = format!("remove service `{}`", service.name);
        // Once the service is gone the manager no longer lists tasks by it: note them first.
        let tasks = match self.tasks(service).await {
            Err(BackendError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        // Every task, ended ones too: a task holds its network until the swarm deletes it.
        let mut remaining: Vec<String> = tasks.iter().filter_map(|task| task.id.clone()).collect();
        ignore_missing(
            self.call(&operation, self.client.delete_service(&service.native))
                .await,
        )?;
        let limit = grace.unwrap_or_default() + REMOVAL_LIMIT;
        let deadline = Instant::now() + limit;
        // One listing of the remaining tasks and one of the nodes a look, whatever their number.
        while !remaining.is_empty() {
            let filters = HashMap::from([("id".to_string(), remaining.clone())]);
            let options = ListTasksOptionsBuilder::default().filters(&filters).build();
            let (listed, nodes) = tokio::try_join!(
                self.call(&operation, self.client.list_tasks(Some(options))),
                self.node_addresses()
            )?;
            // A task on a node the swarm lost is deleted once the node is back (its container
            // stopped there) or removed from the swarm: not envctl's to wait for.
            remaining = listed
                .iter()
                .filter(|task| !nodes.is_lost(task))
                .filter_map(|task| task.id.clone())
                .filter(|id| remaining.contains(id))
                .collect();
            if remaining.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BackendError::operation(
                    operation,
                    format!(
                        "its task was still there {} after the removal (is its node down?)",
                        humantime::format_duration(limit)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn clear_update_marker(&self, _id: &str, _run: &str) -> Result<()> {
        Err(replace_in_place())
    }

    async fn put_aside(&self, _service: &ServiceRef) -> Result<Aside> {
        Err(replace_in_place())
    }

    async fn restore_aside(
        &self,
        _aside: &ServiceRef,
        _address: Option<std::net::IpAddr>,
    ) -> Result<ServiceRef> {
        Err(replace_in_place())
    }

    /// Every environment `selector` matches, from six list calls whatever their number:
    /// configs, services, networks, the manager's volumes, the services' tasks, the nodes.
    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        let filters = label_filter(&selector.filters());
        let configs = self.call(
            "list configs",
            self.client.list_configs(Some(
                ListConfigsOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        );
        let services = self.call(
            "list services",
            self.client.list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        );
        let networks = self.call(
            "list networks",
            self.client.list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        );
        let volumes = self.call(
            "list volumes",
            self.client.list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        );
        let (configs, services, networks, volumes) =
            tokio::try_join!(configs, services, networks, volumes)?;
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        let tasks = match ids.is_empty() {
            true => Vec::new(),
            false => {
                let filters = HashMap::from([("service".to_string(), ids)]);
                let options = ListTasksOptionsBuilder::default().filters(&filters).build();
                self.call("list tasks", self.client.list_tasks(Some(options)))
                    .await?
            }
        };
        let nodes = match services.is_empty() {
            true => NodeAddresses::default(),
            false => self.node_addresses().await?,
        };
        let mut records = list::group(
            configs,
            services,
            networks,
            volumes.volumes.unwrap_or_default(),
            &tasks,
            &nodes,
        );
        for record in &mut records {
            for service in &mut record.services {
                service.status = self.reached(service.status.clone());
            }
        }
        Ok(records)
    }

    /// Markers are configs named as Docker's marker containers are, carrying the same labels.
    /// A lease renews by creating the new config, then deleting the older ones: readers take
    /// the latest expiry, so there is never a moment without a lease.
    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        let id = &metadata.id;
        let (name, labels) = match marker {
            Marker::Ready => (
                naming::ready_name(id),
                metadata.encode_marker(MarkerKind::Ready),
            ),
            Marker::Pinned => (
                naming::pin_name(id),
                metadata.encode_marker(MarkerKind::Pinned),
            ),
            Marker::Lease(until) => {
                let name = naming::lease_name(id, until);
                let older = self.configs(id, MarkerKind::Lease).await?;
                match self
                    .create_config(&name, id, metadata.encode_marker(MarkerKind::Lease))
                    .await
                {
                    Ok(()) | Err(BackendError::Taken(_)) => {}
                    Err(error) => return Err(error),
                }
                for old in older.iter().filter(|old| **old != name) {
                    self.delete_config(old).await?;
                }
                return Ok(());
            }
            Marker::Update(until) => {
                // Exclusive: the swarm refuses a second config of the name.
                let metadata = Metadata {
                    start_deadline: Some(until),
                    ..metadata.clone()
                };
                return self
                    .create_config(
                        &naming::update_name(id),
                        id,
                        metadata.encode_marker(MarkerKind::Update),
                    )
                    .await;
            }
            // Exclusive: the swarm refuses a second config of the name.
            Marker::Create => {
                return self
                    .create_config(
                        &naming::create_name(id),
                        id,
                        metadata.encode_marker(MarkerKind::Create),
                    )
                    .await;
            }
            // `envctl pool fill` refuses a swarm before creating anything.
            Marker::Member | Marker::Adopt => {
                return Err(BackendError::Unsupported {
                    backend: BackendKind::Swarm,
                    operation: "keep a warm pool",
                    hint: "pools work on a Docker engine".into(),
                });
            }
        };
        match self.create_config(&name, id, labels).await {
            Ok(()) | Err(BackendError::Taken(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        // Removed by its config id: one of another run under the same name is never touched.
        let markers = self
            .configs_in_role(id, MarkerKind::Create, Some(run))
            .await?;
        for config in markers.into_iter().filter_map(|config| config.id) {
            self.delete_config(&config).await?;
        }
        Ok(())
    }

    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        let names = match naming::marker_name(id, kind) {
            Some(name) => vec![name],
            None => self.configs(id, kind).await?,
        };
        for name in names {
            self.delete_config(&name).await?;
        }
        Ok(())
    }

    /// Removes the network once no task uses it any more, retrying within [`REMOVAL_LIMIT`]
    /// while tasks of removed services still hold it. A manager answers 404 to the removal of
    /// a network that is still in use (it falls back to its local networks after the swarm
    /// refused), so "gone" is only believed when the network cannot be inspected either.
    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        let operation = format!("remove network `{}`", isolation.name);
        let deadline = Instant::now() + REMOVAL_LIMIT;
        loop {
            let removed = self
                .call(&operation, self.client.remove_network(&isolation.native))
                .await;
            let refused = match removed {
                // The manager may accept the removal while a task that is going away still
                // holds the network: it is gone only when it cannot be inspected any more.
                Ok(()) | Err(BackendError::NotFound { .. }) => {
                    let inspected = self
                        .call(
                            &operation,
                            self.client.inspect_network(&isolation.native, None),
                        )
                        .await;
                    match inspected {
                        Err(BackendError::NotFound { .. }) => return Ok(()),
                        Err(e) => return Err(e),
                        Ok(_) => BackendError::operation(
                            &operation,
                            "the swarm still has it: a task still uses it",
                        ),
                    }
                }
                Err(e @ BackendError::Operation { .. }) => e,
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(refused);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes the manager's copy of the volume. Copies on other nodes are out of the
    /// manager's reach (README, "Running on a cluster").
    /// The container of a removed task may outlive the task by seconds: a volume still in use
    /// is asked again, within [`REMOVAL_LIMIT`].
    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        let operation = format!("remove volume `{}`", volume.native);
        let deadline = Instant::now() + REMOVAL_LIMIT;
        loop {
            let removed = self
                .call(
                    &operation,
                    self.client.remove_volume(
                        &volume.native,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    ),
                )
                .await;
            match ignore_missing(removed) {
                Err(BackendError::Conflict(reason)) if Instant::now() >= deadline => {
                    return Err(BackendError::operation(operation, reason));
                }
                Err(BackendError::Conflict(_)) => tokio::time::sleep(POLL).await,
                other => return other,
            }
        }
    }

    /// Gives the id back: removes the claim. Idempotent.
    async fn release(&self, id: &str) -> Result<()> {
        self.delete_config(&naming::anchor_name(id)).await
    }

    async fn admission(&self) -> Result<super::Admission> {
        // Both at once: a second list costs less than a second round trip.
        let (markers, entries) = tokio::try_join!(
            self.engine_configs(MarkerKind::Capacity),
            self.engine_configs(MarkerKind::Queue)
        )?;
        let Some(capacity) = markers
            .iter()
            .find_map(|marker| codec::Capacity::decode(&list::config_labels(marker)))
        else {
            return Ok(super::Admission::default());
        };
        Ok(super::Admission {
            capacity: Some(capacity),
            queue: list::queue(&entries),
        })
    }
    async fn nodes_memory(&self) -> Result<Vec<super::NodeMemory>> {
        // The tasks the scheduler has placed, or still places: those hold their reservations.
        let filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let (nodes, tasks) = tokio::try_join!(
            self.call("list the swarm's nodes", self.client.list_nodes(None)),
            self.call(
                "list the swarm's tasks",
                self.client.list_tasks(Some(options))
            )
        )?;
        Ok(convert::node_memory(&nodes, &tasks))
    }
    async fn set_capacity(&self, capacity: Option<&codec::Capacity>) -> Result<()> {
        let Some(capacity) = capacity else {
            return self.delete_config(naming::CAPACITY_NAME).await;
        };
        // Changed in place where one is set, so no start that looks meanwhile finds none.
        let operation = "change the swarm's capacity";
        match self
            .relabel_config(naming::CAPACITY_NAME, &capacity.encode(), operation)
            .await
        {
            Ok(()) => return Ok(()),
            Err(BackendError::Conflict(_)) => {
                return Err(BackendError::Conflict(
                    "the swarm's capacity (changed by another client at the same time)".into(),
                ));
            }
            Err(BackendError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        let name = naming::CAPACITY_NAME;
        match self.put_config(name, name, capacity.encode()).await {
            Ok(_) => Ok(()),
            Err(BackendError::Conflict(_)) => Err(BackendError::Conflict(
                "the swarm's capacity (set by another client at the same time)".into(),
            )),
            Err(error) => Err(error),
        }
    }
    async fn enqueue(
        &self,
        waiter: &codec::Waiter,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<String> {
        // A config's labels can change, unlike a container's name: the entry keeps its name
        // and its creation time (its place in line), and carries its terms in its labels.
        let name = naming::queue_entry_name(&waiter.nonce);
        self.put_config(&name, &waiter.nonce, waiter.encode_with_terms(until))
            .await
    }
    async fn renew_entry(
        &self,
        native: &str,
        waiter: &codec::Waiter,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let operation = "renew an entry of the admission queue";
        let labels = waiter.encode_with_terms(until);
        // Only this waiter changes its entry, one change at a time; but a change it gave up
        // waiting for may still land between a read and an update: read again, once.
        match self.relabel_config(native, &labels, operation).await {
            Err(BackendError::Conflict(_)) => self.relabel_config(native, &labels, operation).await,
            other => other,
        }
    }
    async fn dequeue(&self, native: &str) -> Result<()> {
        self.delete_config(native).await
    }

    // Pools are refused on a swarm before anything is created: no fill ever claims one.
    async fn claim_fill(
        &self,
        _: &codec::Filler,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<String> {
        Err(Swarm::unsupported(
            "keep a warm pool",
            "pools work on a Docker engine only",
        ))
    }
    async fn fill_claims(&self) -> Result<Vec<super::Filling>> {
        Ok(Vec::new())
    }
    async fn renew_fill(
        &self,
        _: &str,
        _: &codec::Filler,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        Ok(())
    }
    async fn release_fill(&self, _: &str) -> Result<()> {
        Ok(())
    }
}

/// Why `envctl update` cannot run on a swarm.
fn replace_in_place() -> BackendError {
    Swarm::unsupported(
        "replace a service in place",
        "a swarm cannot rename a service to keep the previous one aside: `envctl down ID`, \
         then `envctl up` with the new SERVICE@REF",
    )
}

/// Docker's `label` filter for `filters`.
fn replicas(count: i64) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(count),
        }),
        ..Default::default()
    }
}

/// A container port published in host mode: on `host_port`, or on a port the node picks.
fn published(port: &crate::spec::Port, host_port: Option<u16>) -> EndpointPortConfig {
    EndpointPortConfig {
        target_port: Some(i64::from(port.number)),
        published_port: host_port.map(i64::from),
        protocol: Some(match port.protocol {
            Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
            Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
        }),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        ..Default::default()
    }
}

/// `exec:` (and the image's HEALTHCHECK for `healthcheck:`, when known) run by the swarm
/// itself, every [`HEALTH_INTERVAL`]: the task stays `starting` until it passes. Without a
/// known HEALTHCHECK, `healthcheck:` runs the image's own at the image's interval.
fn health_check(ready: &Ready, image: Option<&Healthcheck>) -> Option<HealthConfig> {
    let test = ready.probes.iter().find_map(|probe| match probe {
        Probe::Exec(command) => Some(
            std::iter::once("CMD".to_string())
                .chain(command.iter().cloned())
                .collect::<Vec<_>>(),
        ),
        Probe::Healthcheck => image.map(|check| {
            std::iter::once("CMD".to_string())
                .chain(check.argv())
                .collect()
        }),
        _ => None,
    })?;
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    Some(HealthConfig {
        test: Some(test),
        interval: Some(nanos(HEALTH_INTERVAL)),
        timeout: Some(nanos(HEALTH_TIMEOUT)),
        // Failures while the service starts do not count: envctl's start timeout decides.
        start_period: Some(nanos(ready.timeout)),
        retries: Some(3),
        ..Default::default()
    })
}

fn hash_map(labels: Labels) -> HashMap<String, String> {
    labels.into_iter().collect()
}

fn ignore_missing(result: Result<()>) -> Result<()> {
    match result {
        Err(BackendError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// The name of the environment's overlay network (see [`naming::swarm_network_name`]): six
/// digits of the start's run nonce, so that envctl can name it before the swarm answers.
pub(crate) fn network_name(metadata: &Metadata) -> String {
    let run = metadata.run.as_deref().and_then(|run| run.get(..6));
    naming::swarm_network_name(&metadata.id, &run.map_or_else(nonce, str::to_string))
}

/// Six hex digits that differ between networks made in the same second by the same process.
fn nonce() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = nanos
        .wrapping_mul(2_654_435_761)
        .wrapping_add(std::process::id().wrapping_mul(40_503))
        .wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97));
    format!("{:06x}", mixed & 0xff_ffff)
}
