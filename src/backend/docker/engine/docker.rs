//! The Docker client on Docker's HTTP API, with bollard.
//!
//! The containers, networks, volumes and images calls; with its sibling modules, one concern
//! each (`connect`: reaching the engine, `error`: bollard errors classified, `convert`:
//! bollard's models as typed values, `logs`: output as lines, `auth`: registry credentials),
//! the only code that uses bollard, whose types stay in them. It targets Docker 20.10 (API
//! 1.41) and later: the client negotiates the API version on connect and only uses parameters
//! that API 1.41 knows.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, RenameContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::stream::{BoxStream, StreamExt};

use crate::backend::BackendKind;
use crate::naming;
use crate::registry::Reference;

use super::convert::{
    attachment, container_body, container_details, container_summary, endpoint, networked,
    redacted, to_hash_map, to_labels,
};
use super::error;
use super::subnets::{self, Pool, Subnet};
use super::{
    Attachable, Attached, Attachment, BackendError, ContainerDetails, ContainerSpec,
    ContainerSummary, ExecOutput, Filter, ImageDetails, Labels, LogLine, LogOptions, NetworkSpec,
    NetworkSummary, Networked, PublishedPort, PullProgress, Result, Traffic, VolumeSpec,
    VolumeSummary,
};
use crate::backend::bollard::PATIENT_TIMEOUT;
use crate::backend::bollard::auth::{self, insecure_of};
use crate::backend::bollard::connect::{self, EngineEndpoint, Flags, Origin, Reach, Settings};
use crate::backend::bollard::error::{
    certificate_refused, describe, is_connection_error, message, no_answer, status,
};
use crate::backend::bollard::filters::label_filter;

pub use crate::backend::bollard::connect::DEFAULT_HOST;

/// How long any other request may wait for its answer, as bollard's default: an engine that
/// has not answered a plain request by then hangs.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a ping of an engine that answered before may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// bollard's timeout runs until the response headers arrive. Docker answers most requests at
/// once, but a stop answers only once the container stopped: stops get their grace on top.
const STOP_MARGIN: Duration = Duration::from_secs(60);
/// How many lines of build output a failed build reports.
const BUILD_TAIL_LINES: usize = 10;
/// How long `exec` waits for Docker to record the exit code after the output ended.
const EXEC_EXIT_PATIENCE: Duration = Duration::from_secs(5);
/// How many free subnets a network's creation tries, one after the other, when starts racing
/// for them take each one first; then the engine chooses.
const SUBNET_TRIES: usize = 64;

/// A Docker engine, reached over a unix socket, TCP (with or without TLS) or ssh. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// The endpoint as given: `DOCKER_HOST`, `--host`, a context's, or [`DEFAULT_HOST`].
    pub(super) endpoint: String,
    pub(super) origin: Origin,
    /// How this process reaches published ports and container addresses.
    reach: Arc<Reach>,
}

impl Docker {
    /// Connects to the engine the environment chooses (see [`crate::backend::bollard::connect`]).
    pub async fn connect() -> Result<Docker> {
        Docker::connect_with(&Flags::default()).await
    }

    /// Connects to the engine `flags` (`--host`, `--context`) and the environment choose,
    /// negotiates the API version and pings it; fails with [`BackendError::Unreachable`],
    /// naming the endpoint and where it came from, when nothing usable answers.
    pub async fn connect_with(flags: &Flags) -> Result<Docker> {
        Docker::connect_with_settings(flags, &Settings::from_env()).await
    }

    /// Like [`Docker::connect_with`], with the variables given rather than read.
    pub async fn connect_with_settings(flags: &Flags, settings: &Settings) -> Result<Docker> {
        let endpoint = connect::resolve(flags, settings).map_err(|unusable| {
            error::unreachable(&unusable.host, &unusable.origin, unusable.reason)
        })?;
        Docker::open(endpoint, settings).await
    }

    /// Connects to the engine at `host` (`unix:///path`, `tcp://host:port`, `ssh://host`), as
    /// `--host` would.
    pub async fn connect_to(host: &str) -> Result<Docker> {
        let flags = Flags {
            host: Some(host.to_owned()),
            context: None,
        };
        Docker::connect_with(&flags).await
    }

    async fn open(endpoint: EngineEndpoint, settings: &Settings) -> Result<Docker> {
        let unreachable =
            |reason: String| error::unreachable(&endpoint.host, &endpoint.origin, reason);
        let handshake_timeout = endpoint.handshake();
        let client = endpoint.client(REQUEST_TIMEOUT).map_err(unreachable)?;
        let handshake = async {
            let client = client.negotiate_version().await?;
            client.ping().await?;
            Ok::<_, BollardError>(client)
        };
        let client = match tokio::time::timeout(handshake_timeout, handshake).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) if status(&error).is_some() => {
                let reason = describe(&error);
                return Err(unreachable(connect::explain_answer(&reason)));
            }
            Ok(Err(error)) => {
                let refused = endpoint
                    .tls()
                    .and_then(|tls| Some((tls, certificate_refused(&error, &tls.ca)?)));
                return Err(match refused {
                    Some((tls, reason)) => error::refused(
                        &endpoint.host,
                        &endpoint.origin,
                        reason,
                        endpoint.origin.certificate_hint(&tls.ca),
                    ),
                    None => unreachable(describe(&error)),
                });
            }
            Err(_) => return Err(unreachable(no_answer(handshake_timeout))),
        };
        // Set here rather than relying on bollard's default, so `NoAnswer` can name it.
        let client = client
            .with_timeout(REQUEST_TIMEOUT)
            .with_request_modifier(log_request);
        let version = client.client_version();
        tracing::debug!(endpoint = %endpoint.host, origin = %endpoint.origin, api = %version, "connected to the Docker engine");
        Ok(Docker {
            client,
            reach: Arc::new(Reach::new(&endpoint, settings)),
            endpoint: endpoint.host,
            origin: endpoint.origin,
        })
    }

    /// Settles where published ports answer from here, once a port bound on every address is
    /// known (see [`Reach::locate`]).
    async fn locate(&self, ports: &[PublishedPort]) {
        if let Some(port) = ports
            .iter()
            .find(|p| matches!(p.host_ip.as_str(), "" | "0.0.0.0" | "::"))
        {
            self.reach.locate(port.host_port).await;
        }
    }

    /// Creates a network on `subnet` (or one the engine chooses): `Conflict` when the subnet
    /// overlaps another network's.
    async fn create_network_on(
        &self,
        spec: &NetworkSpec,
        subnet: Option<Subnet>,
    ) -> Result<String> {
        let operation = || format!("create network `{}`", spec.name);
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            labels: Some(to_hash_map(&spec.labels)),
            ipam: subnet.map(|subnet| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        // bollard's model follows API 1.44+, where the engine always rejects duplicate names and
        // `CheckDuplicate` is gone. Older engines (Docker 20.10) need it, or they create a second
        // network of the same name: send the body with the field added.
        let mut body = serde_json::to_value(&request)
            .map_err(|error| BackendError::operation(operation(), error))?;
        body["CheckDuplicate"] = serde_json::Value::Bool(true);
        let body = body.to_string();
        let client = self.client.clone().with_request_modifier(move |request| {
            let request = log_request(request);
            if request.uri().path().ends_with("/networks/create") {
                request.map(|_| bollard::body_full(body.clone().into()))
            } else {
                request
            }
        });
        match client.create_network(request).await {
            Ok(response) => {
                if !response.warning.is_empty() {
                    tracing::warn!(network = %spec.name, "{}", response.warning);
                }
                Ok(response.id)
            }
            Err(error)
                if status(&error) == Some(409) && message(&error).contains("already exists") =>
            {
                Err(BackendError::Taken(spec.name.clone()))
            }
            Err(error) => match subnet.filter(|_| message(&error).contains("overlaps")) {
                Some(subnet) => Err(BackendError::Conflict(format!("subnet {subnet}"))),
                None => Err(self.failed(operation(), &error)),
            },
        }
    }

    /// The pools the engine cuts networks from, as its info says, else Docker's defaults.
    async fn address_pools(&self) -> Vec<Pool> {
        let said = match self.client.info().await {
            Ok(info) => info.default_address_pools.unwrap_or_default(),
            Err(error) => {
                tracing::debug!("cannot read the engine's address pools: {error}");
                Vec::new()
            }
        };
        let pools: Vec<Pool> = said
            .into_iter()
            .filter_map(|pool| Pool::parse(pool.base.as_deref()?, pool.size?))
            .collect();
        match pools.is_empty() {
            true => subnets::default_pools(),
            false => pools,
        }
    }

    /// The IPv4 subnets of every network of the engine, envctl's or not.
    async fn used_subnets(&self) -> Result<Vec<Subnet>> {
        let networks = self
            .client
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|error| self.failed("list networks", &error))?;
        Ok(networks
            .into_iter()
            .flat_map(|network| {
                network
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .unwrap_or_default()
            })
            .filter_map(|config| Subnet::parse(config.subnet.as_deref()?))
            .collect())
    }

    /// The client with a different request timeout (the time until the response headers).
    fn with_timeout(&self, timeout: Duration) -> bollard::Docker {
        self.client.clone().with_timeout(timeout)
    }
}

impl Docker {
    /// A stable name of the engine's endpoint, like `unix:///var/run/docker.sock`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether containers' network addresses can be reached from here (a local engine).
    pub fn reaches_container_ips(&self) -> bool {
        self.reach.direct() != Some(false)
    }

    /// The host at which published ports are reached.
    pub fn published_host(&self) -> &str {
        self.reach.published_host()
    }

    /// Where a port published on `host_ip` is reached: the engine's host for a port bound on
    /// every address (Docker reports `0.0.0.0`), else that address.
    pub fn reachable_host<'a>(&'a self, host_ip: &'a str) -> &'a str {
        match host_ip {
            "" | "0.0.0.0" | "::" => self.published_host(),
            other => other,
        }
    }

    /// What this process learnt of reaching the engine's containers (see [`crate::reach`]).
    pub fn reachability(&self) -> &crate::reach::Reachability {
        self.reach.reachability()
    }

    /// Whether this process may connect its own container to environments' networks.
    pub fn attachable(&self) -> Attachable {
        self.reach.attachable()
    }

    pub async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.client.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(self.failed("ping the engine", &error)),
            // Connected before: the engine is there, but hangs.
            Err(_) => Err(BackendError::NoAnswer {
                backend: BackendKind::Docker,
                endpoint: self.endpoint.clone(),
                operation: "a ping".into(),
                waited: PING_TIMEOUT,
            }),
        }
    }

    /// Creates a network, on a subnet of its own: the first free one of the engine's address
    /// pools (see [`subnets`]), else one the engine chooses. Fails with [`BackendError::Taken`]
    /// when the name exists (a check the engine makes on a best-effort basis only: concurrent
    /// creates may both succeed).
    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<String> {
        let (pools, used) = tokio::join!(self.address_pools(), self.used_subnets());
        // Without the list of used subnets, the engine chooses: the network works, only a
        // replaced service's address cannot be kept on it.
        let candidates: Vec<Subnet> = match used {
            Ok(used) => subnets::free(&pools, &used).take(SUBNET_TRIES).collect(),
            Err(error) => {
                tracing::warn!(network = %spec.name, "{error}");
                Vec::new()
            }
        };
        for subnet in candidates {
            match self.create_network_on(spec, Some(subnet)).await {
                // Another network took it since the list: the next one.
                Err(BackendError::Conflict(_)) => continue,
                created => return created,
            }
        }
        self.create_network_on(spec, None).await
    }

    pub async fn remove_network(&self, id: &str) -> Result<()> {
        match self.client.remove_network(id).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.failed(format!("remove network `{id}`"), &error)),
        }
    }

    pub async fn list_networks(&self, label_filters: &[Filter]) -> Result<Vec<NetworkSummary>> {
        let mut options = ListNetworksOptionsBuilder::new();
        if !label_filters.is_empty() {
            options = options.filters(&label_filter(label_filters));
        }
        let networks = self
            .client
            .list_networks(Some(options.build()))
            .await
            .map_err(|error| self.failed("list networks", &error))?;
        // A manager lists the swarm's overlay networks too: they are the Swarm backend's.
        Ok(networks
            .into_iter()
            .filter(|network| network.scope.as_deref() != Some("swarm"))
            .map(|network| NetworkSummary {
                id: network.id.unwrap_or_default(),
                name: network.name.unwrap_or_default(),
                labels: to_labels(network.labels),
            })
            .collect())
    }

    /// The containers attached to a network, envctl's or not.
    pub async fn network_containers(&self, id: &str) -> Result<Vec<Attached>> {
        let network = self
            .client
            .inspect_network(id, None)
            .await
            .map_err(|error| {
                self.failed_on("network", id, format!("inspect network `{id}`"), &error)
            })?;
        Ok(network
            .containers
            .unwrap_or_default()
            .into_iter()
            .map(|(id, endpoint)| Attached {
                id,
                name: endpoint.name.unwrap_or_default(),
            })
            .collect())
    }

    /// A container's full id, name, host name and the networks it is on.
    pub async fn networked(&self, container: &str) -> Result<Networked> {
        Ok(networked(container, self.inspected(container).await?))
    }

    /// The network a container was created on, and whether it is attached to it now.
    pub async fn attachment(&self, container: &str) -> Result<Attachment> {
        Ok(attachment(self.inspected(container).await?))
    }

    /// Detaches a container from a network: its address and aliases there are free at once.
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let request = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.client
            .disconnect_network(network, request)
            .await
            .map_err(|error| {
                let operation = format!("disconnect container `{container}` from `{network}`");
                self.failed_on("container", container, operation, &error)
            })
    }

    /// Attaches a container (running or not) to a network under `aliases`, at `address` when
    /// given.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        address: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(endpoint(aliases, address)),
        };
        self.client
            .connect_network(network, request)
            .await
            .map_err(|error| {
                let operation = format!("connect container `{container}` to `{network}`");
                self.failed_on("container", container, operation, &error)
            })
    }

    /// Creates a container. Fails with [`BackendError::Taken`] when the name exists: the
    /// engine guarantees that check atomically, which is how `up` claims an id.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let body = container_body(spec);
        tracing::debug!(container = %spec.name, request = %redacted(&body), "create container");
        match self.client.create_container(Some(options), body).await {
            Ok(response) => {
                for warning in &response.warnings {
                    tracing::warn!(container = %spec.name, "{warning}");
                }
                Ok(response.id)
            }
            // A network of an earlier envctl has no subnet of its own: there the engine chooses.
            Err(error)
                if spec.address.is_some() && message(&error).contains("configured subnets") =>
            {
                let spec = ContainerSpec {
                    address: None,
                    ..spec.clone()
                };
                Box::pin(self.create_container(&spec)).await
            }
            Err(error) => Err(match status(&error) {
                Some(409) => BackendError::Taken(spec.name.clone()),
                // "No such image: …" or "network … not found".
                Some(404) if message(&error).contains("network") => BackendError::NotFound {
                    kind: "network",
                    name: spec.network.clone(),
                },
                Some(404) => BackendError::NotFound {
                    kind: "image",
                    name: spec.image.clone(),
                },
                _ => self.failed(format!("create container `{}`", spec.name), &error),
            }),
        }
    }

    /// Creates a named volume. A volume of that name that is not this very one (other labels)
    /// is [`BackendError::Taken`]: Docker would hand it out silently.
    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        let request = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            labels: Some(to_hash_map(&spec.labels)),
            ..Default::default()
        };
        let operation = || format!("create volume `{}`", spec.name);
        let volume = self
            .client
            .create_volume(request)
            .await
            .map_err(|error| self.failed(operation(), &error))?;
        // Docker answers a create of an existing name with that volume: unless it carries
        // these very labels (this run's nonce among them), it is someone else's.
        let same = spec
            .labels
            .iter()
            .all(|(key, value)| volume.labels.get(key) == Some(value));
        if !same {
            return Err(BackendError::Taken(spec.name.clone()));
        }
        Ok(())
    }

    pub async fn list_volumes(&self, label_filters: &[Filter]) -> Result<Vec<VolumeSummary>> {
        let mut options = ListVolumesOptionsBuilder::new();
        if !label_filters.is_empty() {
            options = options.filters(&label_filter(label_filters));
        }
        let listed = self
            .client
            .list_volumes(Some(options.build()))
            .await
            .map_err(|error| self.failed("list volumes", &error))?;
        // Volumes a swarm's node created for a task are the Swarm backend's.
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|volume| {
                let labels: Labels = volume.labels.clone().into_iter().collect();
                crate::naming::codec::backend(&labels).is_none()
            })
            .map(|volume| VolumeSummary {
                name: volume.name,
                labels: volume.labels.into_iter().collect(),
            })
            .collect())
    }

    /// Removes a volume; one already gone is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .client
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.failed(format!("remove volume `{name}`"), &error)),
        }
    }

    /// Creates a marker: a container that is never started, there only to hold a name (which
    /// the engine keeps unique) and labels. It depends on no image of the user's (see
    /// [`crate::naming::MARKER_IMAGE`]). Fails with [`BackendError::Taken`] when the name
    /// exists.
    pub async fn create_marker(&self, name: &str, labels: &Labels) -> Result<String> {
        let spec = ContainerSpec {
            name: name.to_owned(),
            image: naming::MARKER_IMAGE.to_owned(),
            command: Some(vec![naming::MARKER_COMMAND.to_owned()]),
            labels: labels.clone(),
            ..ContainerSpec::default()
        };
        // The image is imported on first use, and again should someone delete it: trying the
        // create first costs nothing when it is there.
        match self.create_container(&spec).await {
            Err(BackendError::NotFound { kind: "image", .. }) => {
                self.import_marker_image().await?;
                self.create_container(&spec).await
            }
            other => other,
        }
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        // 304 (already started) is a success for bollard.
        self.client
            .start_container(id, None)
            .await
            .map_err(|error| {
                self.failed_on("container", id, format!("start container `{id}`"), &error)
            })
    }

    /// Renames a container, atomically. Fails with [`BackendError::Taken`] when the new name
    /// exists.
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let options = RenameContainerOptionsBuilder::new().name(name).build();
        match self.client.rename_container(id, options).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(409) => Err(BackendError::Taken(name.to_owned())),
            Err(error) => Err(self.failed_on(
                "container",
                id,
                format!("rename container `{id}` to `{name}`"),
                &error,
            )),
        }
    }

    /// Pauses (`true`) or unpauses a running container. Pausing a paused container, or
    /// unpausing one that is not paused, is fine.
    pub async fn pause_container(&self, id: &str, pause: bool) -> Result<()> {
        let (done, verb) = match pause {
            true => (self.client.pause_container(id).await, "pause"),
            false => (self.client.unpause_container(id).await, "unpause"),
        };
        match done {
            Ok(()) => Ok(()),
            // 409: already in the state asked for (or not running: the caller's next look
            // says so).
            Err(error) if status(&error) == Some(409) => Ok(()),
            Err(error) => Err(self.failed(format!("{verb} container `{id}`"), &error)),
        }
    }

    /// Stops a container, killing it after `grace`. Stopping a stopped container is fine.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(seconds).unwrap_or(i32::MAX))
            .build();
        let client = self.with_timeout(grace + STOP_MARGIN);
        match client.stop_container(id, Some(options)).await {
            // 304 (not running) is a success for bollard.
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.failed(format!("stop container `{id}`"), &error)),
        }
    }

    /// Removes a container, killing it if it runs. Removing a removed container is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .client
                .remove_container(id, Some(options.clone()))
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) if status(&error) == Some(404) => return Ok(()),
                Err(error)
                    if status(&error) == Some(409)
                        && message(&error).contains("already in progress") =>
                {
                    return Ok(());
                }
                // Two removals of one container at once (a `down` during an `update`): the
                // engine may fail the second while the first still deletes its files. Asked
                // again, it answers 404 once the first is done.
                Err(error)
                    if attempts < 5 && message(&error).contains("unable to remove filesystem") =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(self.failed(format!("remove container `{id}`"), &error));
                }
            }
        }
    }

    /// Every container, running or not, whose labels match all `label_filters`, in one call.
    pub async fn list_containers(&self, label_filters: &[Filter]) -> Result<Vec<ContainerSummary>> {
        let mut options = ListContainersOptionsBuilder::new().all(true);
        if !label_filters.is_empty() {
            options = options.filters(&label_filter(label_filters));
        }
        let containers = self
            .client
            .list_containers(Some(options.build()))
            .await
            .map_err(|error| self.failed("list containers", &error))?;
        // A swarm's task containers are the swarm's, whatever labels they carry (a manager or
        // worker is also a Docker host): the Swarm backend answers for them.
        let containers: Vec<ContainerSummary> = containers
            .into_iter()
            .map(container_summary)
            .filter(|c| !c.labels.contains_key(SWARM_TASK_LABEL))
            .collect();
        if let Some(running) = containers.iter().find(|c| !c.ports.is_empty()) {
            self.locate(&running.ports).await;
        }
        Ok(containers)
    }

    pub async fn inspect_container(&self, id: &str) -> Result<ContainerDetails> {
        let details = container_details(id, self.inspected(id).await?);
        self.locate(&details.ports).await;
        Ok(details)
    }

    /// Waits until the container is not running and returns its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let client = self.with_timeout(PATIENT_TIMEOUT);
        let mut answers = client.wait_container(id, Some(options));
        match answers.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard turns a non-zero exit code into an error.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(error)) => Err(self.failed_on(
                "container",
                id,
                format!("wait for container `{id}`"),
                &error,
            )),
            None => Err(BackendError::operation(
                format!("wait for container `{id}`"),
                "the engine ended the answer without an exit code",
            )),
        }
    }

    /// One item per change the engine reports to envctl's containers and networks (created,
    /// started, stopped, removed), so a watcher learns of changes without polling alone. The stream
    /// ends, or yields an error, when the engine stops reporting.
    pub fn changes(&self) -> BoxStream<'static, Result<()>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={}", naming::label::MANAGED_BY, naming::MANAGER)],
        )]);
        let options = bollard::query_parameters::EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        // The stream lasts as long as the watcher: no request timeout applies to it.
        self.with_timeout(PATIENT_TIMEOUT)
            .events(Some(options))
            .map(|event| {
                event
                    .map(|_| ())
                    .map_err(|e| BackendError::operation("follow the engine's events", e))
            })
            .boxed()
    }

    /// The container's output, stdout and stderr merged, line by line.
    pub fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, Result<LogLine>> {
        let mut query = LogsOptionsBuilder::new()
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
        // Only a followed log may rightly go quiet for long; the last lines come at once.
        let client = match options.follow {
            true => self.with_timeout(PATIENT_TIMEOUT),
            false => self.client.clone(),
        };
        let chunks = client.logs(id, Some(query.build())).boxed();
        let (engine, id) = (self.clone(), id.to_owned());
        crate::backend::bollard::logs::lines(chunks, options.timestamps, move |error| {
            engine.failed_on(
                "container",
                &id,
                format!("read the logs of container `{id}`"),
                &error,
            )
        })
    }

    /// Runs a command inside a running container.
    pub async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        let operation = || format!("run `{}` in container `{id}`", command.join(" "));
        let config = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let created = self
            .client
            .create_exec(id, config)
            .await
            .map_err(|error| self.failed_on("container", id, operation(), &error))?;
        let started = self
            .client
            .start_exec(&created.id, None)
            .await
            .map_err(|error| self.failed(operation(), &error))?;
        let mut output = Vec::new();
        if let StartExecResults::Attached {
            output: mut chunks,
            input,
        } = started
        {
            drop(input);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|error| self.failed(operation(), &error))?;
                output.extend_from_slice(&chunk.into_bytes());
            }
        }
        // The output ends when the process closed it; Docker may record the exit a moment later.
        let deadline = tokio::time::Instant::now() + EXEC_EXIT_PATIENCE;
        let exit_code = loop {
            let inspected = self
                .client
                .inspect_exec(&created.id)
                .await
                .map_err(|error| self.failed(operation(), &error))?;
            match (inspected.running, inspected.exit_code) {
                (Some(true), _) | (_, None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (Some(true), _) | (_, None) => {
                    return Err(BackendError::operation(
                        operation(),
                        "the command's output ended, but it did not exit",
                    ));
                }
                (_, Some(code)) => break code,
            }
        };
        Ok(ExecOutput {
            exit_code,
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }

    /// Cumulative bytes received and sent by the running container's network interfaces.
    pub async fn traffic(&self, id: &str) -> Result<Traffic> {
        let operation = || format!("read the network statistics of container `{id}`");
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stats = self.client.stats(id, Some(options));
        match stats.next().await {
            Some(Ok(stats)) => {
                // Missing counters must not read as "no traffic": the reaper would see idleness.
                let counters: Option<Vec<(u64, u64)>> = stats
                    .networks
                    .filter(|networks| !networks.is_empty())
                    .and_then(|networks| {
                        networks
                            .values()
                            .map(|n| Some((n.rx_bytes?, n.tx_bytes?)))
                            .collect()
                    });
                let counters = counters.ok_or_else(|| {
                    BackendError::operation(operation(), "the engine reported no network counters")
                })?;
                Ok(Traffic {
                    received: counters.iter().fold(0, |sum, c| sum.saturating_add(c.0)),
                    sent: counters.iter().fold(0, |sum, c| sum.saturating_add(c.1)),
                })
            }
            Some(Err(error)) => Err(self.failed_on("container", id, operation(), &error)),
            None => Err(BackendError::operation(
                operation(),
                "the engine sent no statistics",
            )),
        }
    }

    /// Bytes of memory the running container uses now, as `docker stats` counts them
    /// (without the inactive page cache); `None` when the engine does not say.
    pub async fn memory(&self, id: &str) -> Result<Option<u64>> {
        let operation = || format!("read the memory statistics of container `{id}`");
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stats = self.client.stats(id, Some(options));
        match stats.next().await {
            Some(Ok(stats)) => Ok(stats.memory_stats.and_then(|memory| {
                let usage = memory.usage?;
                let stats = memory.stats.unwrap_or_default();
                // cgroup v2, then v1: what `docker stats` leaves out.
                let cache = ["inactive_file", "total_inactive_file"]
                    .iter()
                    .find_map(|key| stats.get(*key))
                    .copied()
                    .unwrap_or(0);
                Some(usage.saturating_sub(cache))
            })),
            Some(Err(error)) => Err(self.failed_on("container", id, operation(), &error)),
            None => Ok(None),
        }
    }

    /// A local image, or `None` when it is not there.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        match self.client.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageDetails {
                id: image.id.clone(),
                healthcheck: image
                    .config
                    .and_then(|config| config.healthcheck)
                    .and_then(|healthcheck| healthcheck.test)
                    .filter(|test| !test.is_empty() && test[0] != "NONE"),
            })),
            Err(error) if status(&error) == Some(404) => Ok(None),
            Err(error) => Err(self.failed(format!("inspect image `{reference}`"), &error)),
        }
    }

    /// The local tags of a repository.
    pub async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        let repository = familiar_repository(repository);
        let filters = HashMap::from([("reference", vec![repository])]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .client
            .list_images(Some(options))
            .await
            .map_err(|error| self.failed(format!("list the images of `{repository}`"), &error))?;
        let mut tags: Vec<String> = images
            .iter()
            .flat_map(|image| &image.repo_tags)
            .filter_map(|reference| tag_of(reference, repository))
            .map(str::to_owned)
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The registries the engine treats as insecure (plain HTTP or untrusted certificates allowed),
    /// which envctl's own registry requests treat the same way.
    pub async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        let info = self
            .client
            .info()
            .await
            .map_err(|error| self.failed("read the engine's registry settings", &error))?;
        Ok(insecure_of(info.registry_config.unwrap_or_default()))
    }

    /// Pulls `repository:tag`, with the credentials `config.json` holds for its registry
    /// (inline, or through its credential helper), telling `on_progress` of the bytes.
    pub async fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        // Without a tag Docker would pull every tag of the repository.
        let tag = if tag.is_empty() { "latest" } else { tag };
        let operation = || format!("pull image `{repository}:{tag}`");
        let options = CreateImageOptionsBuilder::new()
            .from_image(repository)
            .tag(tag)
            .build();
        let registry = Reference::parse(&format!("{repository}:{tag}"))
            .map(|r| r.registry)
            .unwrap_or_else(|_| crate::registry::DOCKER_HUB.to_string());
        let credentials = auth::registry_credentials(&registry)
            .await
            .map_err(|e| BackendError::operation(operation(), e))?;
        // A pull of a large image takes as long as it takes; the start's deadline bounds it.
        let client = self.with_timeout(PATIENT_TIMEOUT);
        let mut stream = client.create_image(Some(options), None, credentials);
        let mut tally = PullTally::default();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| {
                auth::with_login_hint(self.failed(operation(), &error), &registry)
            })?;
            if tally.add(&info) {
                on_progress(tally.progress());
            }
        }
        Ok(())
    }

    /// Builds an image from a tar of its context and tags it `tag`.
    pub async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &str) -> Result<()> {
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            // The classic builder: BuildKit needs a gRPC session, and Docker 20.10's API has
            // no BuildKit by default.
            .version(BuilderVersion::BuilderV1)
            .build();
        let client = self.with_timeout(PATIENT_TIMEOUT);
        let mut output =
            client.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut tail = BuildTail::default();
        while let Some(item) = output.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                        tail.push(text);
                    }
                }
                Err(error) if is_connection_error(&error) => return Err(self.unreachable(&error)),
                Err(error) => {
                    return Err(BackendError::operation(
                        format!("build image `{tag}`"),
                        tail.explain(&describe(&error)),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Docker {
    /// What the engine says of `container`, by id or name.
    async fn inspected(
        &self,
        container: &str,
    ) -> Result<bollard::models::ContainerInspectResponse> {
        self.client
            .inspect_container(container, None)
            .await
            .map_err(|error| {
                let operation = format!("inspect container `{container}`");
                self.failed_on("container", container, operation, &error)
            })
    }

    /// Imports [`naming::MARKER_IMAGE`] from a tar built in memory. Two `up`s importing at once
    /// are harmless: the later one takes the name, and the earlier image stays usable for the
    /// markers made from it.
    async fn import_marker_image(&self) -> Result<()> {
        let operation = || format!("import image `{}`", naming::MARKER_IMAGE);
        let (repository, tag) = naming::MARKER_IMAGE
            .rsplit_once(':')
            .unwrap_or((naming::MARKER_IMAGE, "latest"));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repository)
            .tag(tag)
            .changes(vec![format!(
                "LABEL {}={}",
                naming::label::MANAGED_BY,
                naming::MANAGER
            )])
            .build();
        let rootfs = bollard::body_full(marker_rootfs().into());
        let mut progress = self.client.create_image(Some(options), Some(rootfs), None);
        while let Some(item) = progress.next().await {
            item.map_err(|error| self.failed(operation(), &error))?;
        }
        tracing::debug!(image = naming::MARKER_IMAGE, "imported the marker image");
        Ok(())
    }
}

/// The marker image's file system: one file saying what the image is for.
fn marker_rootfs() -> Vec<u8> {
    let text: &[u8] = b"envctl's marker image: its containers hold a name and labels and are \
                        never started\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut archive = tar::Builder::new(Vec::new());
    archive
        .append_data(&mut header, "envctl-marker", text)
        .expect("writing a tar to memory cannot fail");
    archive
        .into_inner()
        .expect("writing a tar to memory cannot fail")
}

/// Logs a request's method and path, in place of bollard's own logs (see `init_tracing`): never
/// its headers (registry credentials) or body (environment variables).
fn log_request(request: bollard::BollardRequest) -> bollard::BollardRequest {
    let path = request
        .uri()
        .path_and_query()
        .map_or("", |path| path.as_str());
    tracing::trace!("{} {path}", request.method());
    request
}

// ---------------------------------------------------------------------------------------------
// Images

/// The last lines of a build's output, to explain a failure.
#[derive(Debug, Default)]
struct BuildTail {
    lines: VecDeque<String>,
}

impl BuildTail {
    fn push(&mut self, text: &str) {
        for line in text
            .lines()
            .map(str::trim_end)
            .filter(|line| !line.is_empty())
        {
            if self.lines.len() == BUILD_TAIL_LINES {
                self.lines.pop_front();
            }
            self.lines.push_back(line.to_owned());
        }
    }

    fn explain(&self, message: &str) -> String {
        let mut text = message.to_owned();
        if !self.lines.is_empty() {
            text.push_str("\nlast build output:");
            for line in &self.lines {
                let _ = write!(text, "\n  {line}");
            }
        }
        text
    }
}

/// A repository as Docker lists it: `docker.io/library/postgres` → `postgres`.
fn familiar_repository(repository: &str) -> &str {
    let repository = repository
        .strip_prefix("docker.io/")
        .or_else(|| repository.strip_prefix("index.docker.io/"))
        .unwrap_or(repository);
    repository.strip_prefix("library/").unwrap_or(repository)
}

/// The tag of `repo:tag` when `repo` is exactly `repository` (which may hold a `host:port`).
fn tag_of<'a>(reference: &'a str, repository: &str) -> Option<&'a str> {
    let (repo, tag) = reference.rsplit_once(':')?;
    (!tag.contains('/') && familiar_repository(repo) == familiar_repository(repository))
        .then_some(tag)
}

/// The label Docker puts on a swarm task's container.
const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// Bytes downloaded over the layers a pull announced so far.
#[derive(Default)]
struct PullTally {
    /// Per layer: bytes done, bytes in all.
    layers: HashMap<String, (u64, u64)>,
}

impl PullTally {
    /// Counts one message of the pull; whether the bytes moved.
    fn add(&mut self, info: &bollard::models::CreateImageInfo) -> bool {
        let (Some(layer), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        let detail = info.progress_detail.as_ref();
        let entry = self.layers.entry(layer.clone()).or_default();
        let before = *entry;
        match status.as_str() {
            "Downloading" => {
                let current = detail.and_then(|d| d.current).unwrap_or(0).max(0) as u64;
                let total = detail.and_then(|d| d.total).unwrap_or(0).max(0) as u64;
                *entry = (current.min(total.max(current)), total.max(current));
            }
            "Download complete" | "Verifying Checksum" | "Extracting" | "Pull complete" => {
                entry.0 = entry.1;
            }
            _ => {}
        }
        *entry != before
    }

    fn progress(&self) -> PullProgress {
        let (done, total) = self
            .layers
            .values()
            .fold((0u64, 0u64), |(d, t), (done, total)| {
                (d.saturating_add(*done), t.saturating_add(*total))
            });
        PullProgress { done, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_exactly_the_repository() {
        assert_eq!(
            tag_of("localhost:5000/app:v1", "localhost:5000/app"),
            Some("v1")
        );
        assert_eq!(tag_of("localhost:5000/app:v1", "app"), None);
        assert_eq!(
            tag_of("localhost:5000/app/x:v1", "localhost:5000/app"),
            None
        );
        assert_eq!(
            tag_of("postgres:16", "docker.io/library/postgres"),
            Some("16")
        );
        assert_eq!(tag_of("<none>:<none>", "postgres"), None);
        assert_eq!(tag_of("localhost:5000/app", "localhost"), None);
    }

    #[test]
    fn a_pull_counts_the_bytes_of_the_layers_it_announced() {
        use bollard::models::{CreateImageInfo, ProgressDetail};
        let info = |layer: &str, status: &str, current: i64, total: i64| CreateImageInfo {
            id: Some(layer.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        };
        let mut tally = PullTally::default();
        assert!(!tally.add(&info("a", "Pulling fs layer", 0, 0)));
        assert!(tally.add(&info("a", "Downloading", 100, 1000)));
        assert!(tally.add(&info("b", "Downloading", 50, 500)));
        assert_eq!(
            tally.progress(),
            PullProgress {
                done: 150,
                total: 1500
            }
        );
        assert!(tally.add(&info("a", "Download complete", 0, 0)));
        assert!(!tally.add(&info("a", "Pull complete", 0, 0)));
        assert!(!tally.add(&info("c", "Already exists", 0, 0)));
        assert_eq!(
            tally.progress(),
            PullProgress {
                done: 1050,
                total: 1500
            }
        );
        assert!(
            !tally.add(&CreateImageInfo::default()),
            "a status line without a layer"
        );
    }

    #[test]
    fn marker_rootfs_is_a_tar_of_one_file() {
        let rootfs = marker_rootfs();
        let mut archive = tar::Archive::new(rootfs.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["envctl-marker"]);
    }

    #[test]
    fn build_tail_keeps_the_last_lines() {
        let mut tail = BuildTail::default();
        for step in 0..15 {
            tail.push(&format!("Step {step}\n\n"));
        }
        let text = tail.explain("COPY failed");
        assert!(text.starts_with("COPY failed\nlast build output:\n  Step 5\n"));
        assert!(text.ends_with("  Step 14"));
    }
}
