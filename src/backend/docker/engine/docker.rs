//! [`Engine`] on Docker's HTTP API, with bollard.
//!
//! This is the only module that uses bollard; its types stay in here. It targets Docker 20.10
//! (API 1.41) and later: the client negotiates the API version on connect and only uses
//! parameters that API 1.41 knows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary as BollardContainerSummary,
    EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType, NetworkCreateRequest,
    NetworkingConfig, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, RenameContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::naming;
use crate::registry::{Credential, Reference};

use super::connect::{self, Endpoint, Flags, Origin, Reach, Settings};

use super::{
    Attached, ContainerDetails, ContainerSpec, ContainerState, ContainerSummary, Engine,
    EngineError, ExecOutput, Filter, ImageDetails, Labels, LogLine, LogOptions, NetworkSpec,
    NetworkSummary, PublishedPort, PullProgress, Result, Traffic, VolumeSpec, VolumeSummary,
};
use crate::spec::runtime::{HostAddress, MountSource, Restart, Runtime};

pub use super::connect::DEFAULT_HOST;

/// How long any other request may wait for its answer, as bollard's default: an engine that
/// has not answered a plain request by then hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a ping of an engine that answered before may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// bollard's timeout runs until the response headers arrive. Docker answers most requests at
/// once, but a stop answers only once the container stopped: stops get their grace on top.
const STOP_MARGIN: Duration = Duration::from_secs(60);
/// For requests whose answer may rightly take long: waiting for an exit, following logs,
/// building (the classic builder answers only after it has read the whole context).
const PATIENT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// How many lines of build output a failed build reports.
const BUILD_TAIL_LINES: usize = 10;
/// How long `exec` waits for Docker to record the exit code after the output ended.
const EXEC_EXIT_PATIENCE: Duration = Duration::from_secs(5);

/// A Docker engine, reached over a unix socket, TCP (with or without TLS) or ssh. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// The endpoint as given: `DOCKER_HOST`, `--host`, a context's, or [`DEFAULT_HOST`].
    endpoint: String,
    origin: Origin,
    /// How this process reaches published ports and container addresses.
    reach: Arc<Reach>,
}

impl Docker {
    /// Connects to the engine the environment chooses (see [`super::connect`]).
    pub async fn connect() -> Result<Docker> {
        Docker::connect_with(&Flags::default()).await
    }

    /// Connects to the engine `flags` (`--host`, `--context`) and the environment choose,
    /// negotiates the API version and pings it; fails with [`EngineError::Unreachable`],
    /// naming the endpoint and where it came from, when nothing usable answers.
    pub async fn connect_with(flags: &Flags) -> Result<Docker> {
        Docker::connect_with_settings(flags, &Settings::from_env()).await
    }

    /// Like [`Docker::connect_with`], with the variables given rather than read.
    pub async fn connect_with_settings(flags: &Flags, settings: &Settings) -> Result<Docker> {
        let endpoint =
            connect::resolve(flags, settings).map_err(|unusable| EngineError::Unreachable {
                endpoint: unusable.host,
                origin: unusable.origin,
                reason: unusable.reason,
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

    async fn open(endpoint: Endpoint, settings: &Settings) -> Result<Docker> {
        let unreachable = |reason: String| EngineError::Unreachable {
            endpoint: endpoint.host.clone(),
            origin: endpoint.origin.clone(),
            reason,
        };
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
            Ok(Err(error)) => return Err(unreachable(describe(&error))),
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

    /// The client with a different request timeout (the time until the response headers).
    fn with_timeout(&self, timeout: Duration) -> bollard::Docker {
        self.client.clone().with_timeout(timeout)
    }

    fn unreachable(&self, error: &BollardError) -> EngineError {
        EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            origin: self.origin.clone(),
            reason: describe(error),
        }
    }

    /// The error for a failed `operation`: unreachable when the connection failed, no answer
    /// when the request timed out.
    fn failed(&self, operation: impl Into<String>, error: &BollardError) -> EngineError {
        if is_connection_error(error) {
            self.unreachable(error)
        } else if matches!(error, BollardError::RequestTimeoutError) {
            EngineError::NoAnswer {
                endpoint: self.endpoint.clone(),
                operation: operation.into(),
                waited: REQUEST_TIMEOUT,
            }
        } else {
            EngineError::operation(operation, describe(error))
        }
    }

    /// Like [`Docker::failed`], with 404 meaning that the `kind` object `name` does not exist,
    /// unless Docker's message names something else (starting a container whose network is
    /// gone answers 404 "network … not found").
    fn failed_on(
        &self,
        kind: &'static str,
        name: &str,
        operation: impl Into<String>,
        error: &BollardError,
    ) -> EngineError {
        let text = message(error).to_lowercase();
        if status(error) == Some(404) && (text.is_empty() || text.contains(kind)) {
            EngineError::NotFound {
                kind,
                name: name.to_owned(),
            }
        } else {
            self.failed(operation, error)
        }
    }
}

#[async_trait]
impl Engine for Docker {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn reaches_container_ips(&self) -> bool {
        self.reach.direct() != Some(false)
    }

    fn published_host(&self) -> &str {
        self.reach.published_host()
    }

    async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.client.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(self.failed("ping the engine", &error)),
            // Connected before: the engine is there, but hangs.
            Err(_) => Err(EngineError::NoAnswer {
                endpoint: self.endpoint.clone(),
                operation: "a ping".into(),
                waited: PING_TIMEOUT,
            }),
        }
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String> {
        let operation = || format!("create network `{}`", spec.name);
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            labels: Some(to_hash_map(&spec.labels)),
            ..Default::default()
        };
        // bollard's model follows API 1.44+, where the engine always rejects duplicate names and
        // `CheckDuplicate` is gone. Older engines (Docker 20.10) need it, or they create a second
        // network of the same name: send the body with the field added.
        let mut body = serde_json::to_value(&request)
            .map_err(|error| EngineError::operation(operation(), error))?;
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
                Err(EngineError::NameTaken(spec.name.clone()))
            }
            Err(error) => Err(self.failed(operation(), &error)),
        }
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        match self.client.remove_network(id).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.failed(format!("remove network `{id}`"), &error)),
        }
    }

    async fn list_networks(&self, label_filters: &[Filter]) -> Result<Vec<NetworkSummary>> {
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

    async fn network_containers(&self, id: &str) -> Result<Vec<Attached>> {
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

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
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
            Err(error) => Err(match status(&error) {
                Some(409) => EngineError::NameTaken(spec.name.clone()),
                // "No such image: …" or "network … not found".
                Some(404) if message(&error).contains("network") => EngineError::NotFound {
                    kind: "network",
                    name: spec.network.clone(),
                },
                Some(404) => EngineError::NotFound {
                    kind: "image",
                    name: spec.image.clone(),
                },
                _ => self.failed(format!("create container `{}`", spec.name), &error),
            }),
        }
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
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
            return Err(EngineError::NameTaken(spec.name.clone()));
        }
        Ok(())
    }

    async fn list_volumes(&self, label_filters: &[Filter]) -> Result<Vec<VolumeSummary>> {
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

    async fn remove_volume(&self, name: &str) -> Result<()> {
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

    async fn create_marker(&self, name: &str, labels: &Labels) -> Result<String> {
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
            Err(EngineError::NotFound { kind: "image", .. }) => {
                self.import_marker_image().await?;
                self.create_container(&spec).await
            }
            other => other,
        }
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        // 304 (already started) is a success for bollard.
        self.client
            .start_container(id, None)
            .await
            .map_err(|error| {
                self.failed_on("container", id, format!("start container `{id}`"), &error)
            })
    }

    async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let options = RenameContainerOptionsBuilder::new().name(name).build();
        match self.client.rename_container(id, options).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(409) => {
                Err(EngineError::NameTaken(name.to_owned()))
            }
            Err(error) => Err(self.failed_on(
                "container",
                id,
                format!("rename container `{id}` to `{name}`"),
                &error,
            )),
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
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

    async fn remove_container(&self, id: &str) -> Result<()> {
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

    async fn list_containers(&self, label_filters: &[Filter]) -> Result<Vec<ContainerSummary>> {
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

    async fn inspect_container(&self, id: &str) -> Result<ContainerDetails> {
        let response = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|error| {
                self.failed_on("container", id, format!("inspect container `{id}`"), &error)
            })?;
        let details = container_details(id, response);
        self.locate(&details.ports).await;
        Ok(details)
    }

    async fn wait_container(&self, id: &str) -> Result<i64> {
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
            None => Err(EngineError::operation(
                format!("wait for container `{id}`"),
                "the engine ended the answer without an exit code",
            )),
        }
    }

    fn changes(&self) -> BoxStream<'static, Result<()>> {
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
                    .map_err(|e| EngineError::operation("follow the engine's events", e))
            })
            .boxed()
    }

    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, Result<LogLine>> {
        let mut query = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .timestamps(options.timestamps);
        if let Some(tail) = options.tail {
            query = query.tail(&tail.to_string());
        }
        if let Some(since) = options.since {
            query = query.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        // Only a followed log may rightly go quiet for long; the last lines come at once.
        let client = match options.follow {
            true => self.with_timeout(PATIENT_TIMEOUT),
            false => self.client.clone(),
        };
        let chunks = client.logs(id, Some(query.build())).boxed();
        let state = LogState {
            chunks,
            lines: LineSplitter::new(options.timestamps),
            ready: VecDeque::new(),
            done: false,
            engine: self.clone(),
            id: id.to_owned(),
        };
        stream::unfold(state, |mut state| async move {
            loop {
                if let Some(item) = state.ready.pop_front() {
                    return Some((item, state));
                }
                if state.done {
                    return None;
                }
                match state.chunks.next().await {
                    Some(Ok(chunk)) => {
                        let (source, bytes) = split_log_output(chunk);
                        let lines = state.lines.push(source, &bytes);
                        state.ready.extend(lines.into_iter().map(Ok));
                    }
                    Some(Err(error)) => {
                        state.done = true;
                        state.ready.extend(state.lines.finish().into_iter().map(Ok));
                        let id = &state.id;
                        state.ready.push_back(Err(state.engine.failed_on(
                            "container",
                            id,
                            format!("read the logs of container `{id}`"),
                            &error,
                        )));
                    }
                    None => {
                        state.done = true;
                        state.ready.extend(state.lines.finish().into_iter().map(Ok));
                    }
                }
            }
        })
        .boxed()
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
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
                    return Err(EngineError::operation(
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

    async fn traffic(&self, id: &str) -> Result<Traffic> {
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
                    EngineError::operation(operation(), "the engine reported no network counters")
                })?;
                Ok(Traffic {
                    received: counters.iter().fold(0, |sum, c| sum.saturating_add(c.0)),
                    sent: counters.iter().fold(0, |sum, c| sum.saturating_add(c.1)),
                })
            }
            Some(Err(error)) => Err(self.failed_on("container", id, operation(), &error)),
            None => Err(EngineError::operation(
                operation(),
                "the engine sent no statistics",
            )),
        }
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        match self.client.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageDetails {
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

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
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

    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        let info = self
            .client
            .info()
            .await
            .map_err(|error| self.failed("read the engine's registry settings", &error))?;
        Ok(insecure_of(info.registry_config.unwrap_or_default()))
    }

    async fn pull_image(
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
        let credentials = registry_credentials(&registry)
            .await
            .map_err(|e| EngineError::operation(operation(), e))?;
        // A pull of a large image takes as long as it takes; the start's deadline bounds it.
        let client = self.with_timeout(PATIENT_TIMEOUT);
        let mut stream = client.create_image(Some(options), None, credentials);
        let mut tally = PullTally::default();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| match self.failed(operation(), &error) {
                EngineError::Operation { operation, reason } if is_denied(&reason) => {
                    EngineError::Operation {
                        operation,
                        reason: format!("{reason}\nhint: `docker login {registry}`"),
                    }
                }
                other => other,
            })?;
            if tally.add(&info) {
                on_progress(tally.progress());
            }
        }
        Ok(())
    }

    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &str) -> Result<()> {
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
                    return Err(EngineError::operation(
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

// ---------------------------------------------------------------------------------------------
// Errors

/// The HTTP status of an error answer.
fn status(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Docker's `message` of an error answer, or the empty string.
fn message(error: &BollardError) -> &str {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Whether the error says that the engine could not be reached at all.
fn is_connection_error(error: &BollardError) -> bool {
    match error {
        BollardError::SocketNotFoundError(_) => true,
        BollardError::HyperLegacyError { err } => err.is_connect(),
        BollardError::IOError { err } => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// A one-line account of a bollard error: Docker's message, or the root cause.
fn describe(error: &BollardError) -> String {
    let text = match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            if message.trim().is_empty() {
                format!("the engine answered with HTTP status {status_code}")
            } else {
                message.clone()
            }
        }
        BollardError::DockerStreamError { error } => error.clone(),
        BollardError::DockerContainerWaitError { error, code } => {
            if error.is_empty() {
                format!("exit code {code}")
            } else {
                error.clone()
            }
        }
        BollardError::SocketNotFoundError(path) => format!("no socket at {path}"),
        BollardError::RequestTimeoutError => "the engine did not answer in time".into(),
        BollardError::APIVersionParseError {} => {
            "the answer to /version has no API version: is this a Docker engine?".into()
        }
        other => root_cause(other),
    };
    text.trim().to_owned()
}

/// The innermost error of the chain, which names the cause ("Connection refused") where the
/// outer ones name the layer ("client error (Connect)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

fn no_answer(waited: Duration) -> String {
    format!(
        "the engine did not answer within {} seconds",
        waited.as_secs()
    )
}

// ---------------------------------------------------------------------------------------------
// Containers

fn container_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let on_network = !spec.network.is_empty();
    let host_config = HostConfig {
        network_mode: on_network.then(|| spec.network.clone()),
        log_config: Some(bounded_log()),
        ..Default::default()
    };
    let networking_config = on_network.then(|| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            spec.network.clone(),
            EndpointSettings {
                aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                ..Default::default()
            },
        )])),
    });
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(to_hash_map(&spec.labels)),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    with_runtime(body, &spec.runtime)
}

/// The one place a service's [`Runtime`] becomes Docker's create request: ports, mounts,
/// limits, restart policy, entrypoint, user, working directory, hosts, labels, stop timeout.
fn with_runtime(mut body: ContainerCreateBody, runtime: &Runtime) -> ContainerCreateBody {
    let mut bindings: PortMap = HashMap::new();
    for mapping in &runtime.ports {
        // An empty host port and address: Docker picks a free port on all addresses.
        let binding = PortBinding {
            host_ip: Some(mapping.host_ip.map(|ip| ip.to_string()).unwrap_or_default()),
            host_port: Some(mapping.host_port.map(|p| p.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(mapping.container.to_string())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let mut exposed: Vec<String> = bindings.keys().cloned().collect();
    exposed.sort();
    let mounts: Vec<Mount> = runtime
        .mounts
        .iter()
        .map(|mount| {
            let (typ, source) = match &mount.source {
                MountSource::Volume(name) => (MountType::VOLUME, name.clone()),
                MountSource::Bind(path) => (MountType::BIND, path.display().to_string()),
            };
            Mount {
                target: Some(mount.target.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(mount.read_only),
                ..Default::default()
            }
        })
        .collect();
    let tmpfs: HashMap<String, String> = runtime
        .tmpfs
        .iter()
        .map(|tmpfs| {
            let mut options = Vec::new();
            if let Some(size) = tmpfs.options.size {
                options.push(format!("size={}", size.0));
            }
            if let Some(mode) = tmpfs.options.mode {
                options.push(format!("mode={mode:o}"));
            }
            (tmpfs.target.clone(), options.join(","))
        })
        .collect();
    let restart = runtime.restart.map(|restart| {
        let (name, retries) = match restart {
            Restart::No => (RestartPolicyNameEnum::NO, None),
            Restart::Always => (RestartPolicyNameEnum::ALWAYS, None),
            Restart::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            Restart::OnFailure { max_retries } => (
                RestartPolicyNameEnum::ON_FAILURE,
                max_retries.map(i64::from),
            ),
        };
        RestartPolicy {
            name: Some(name),
            maximum_retry_count: retries,
        }
    });
    let extra_hosts: Vec<String> = runtime
        .extra_hosts
        .iter()
        .map(|entry| match entry.address {
            HostAddress::Ip(ip) => format!("{}:{ip}", entry.host),
            HostAddress::HostGateway => format!("{}:host-gateway", entry.host),
        })
        .collect();
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    host.port_bindings = (!bindings.is_empty()).then_some(bindings);
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    host.tmpfs = (!tmpfs.is_empty()).then_some(tmpfs);
    host.shm_size = runtime.shm_size.map(|b| b.0 as i64);
    host.memory = runtime.mem_limit.map(|b| b.0 as i64);
    host.nano_cpus = runtime.cpus.map(|c| c.0 as i64);
    host.restart_policy = restart;
    host.extra_hosts = (!extra_hosts.is_empty()).then_some(extra_hosts);
    body.exposed_ports = (!exposed.is_empty()).then_some(exposed);
    body.entrypoint = runtime.entrypoint.clone();
    body.user = runtime.user.clone();
    body.working_dir = runtime.working_dir.clone();
    body.stop_timeout = runtime
        .stop_grace_period
        .map(|grace| grace.as_secs().try_into().unwrap_or(i64::MAX));
    // envctl's labels win: the file cannot use its prefix, and this keeps it so.
    let labels = body.labels.get_or_insert_with(HashMap::new);
    for (key, value) in &runtime.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    body
}

/// The size one service's log may reach: [`LOG_FILES`] files of [`LOG_FILE_SIZE`] each.
const LOG_FILE_SIZE: &str = "10m";
const LOG_FILES: &str = "3";

/// Docker's json-file log, bounded: a chatty service on a shared host keeps its last 30 MB
/// instead of filling the disk (the daemon's default json-file log grows without end).
fn bounded_log() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".into(), LOG_FILE_SIZE.into()),
            ("max-file".into(), LOG_FILES.into()),
        ])),
    }
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

/// The create request as JSON for the debug log, each environment variable as `KEY=***`:
/// values are often passwords.
fn redacted(body: &ContainerCreateBody) -> String {
    let mut body = body.clone();
    body.env = body
        .env
        .map(|env| env.iter().map(|var| redact_variable(var)).collect());
    serde_json::to_string(&body).unwrap_or_default()
}

/// `KEY=VALUE` → `KEY=***`.
fn redact_variable(variable: &str) -> String {
    match variable.split_once('=') {
        Some((key, _)) => format!("{key}=***"),
        None => variable.to_owned(),
    }
}

fn container_summary(summary: BollardContainerSummary) -> ContainerSummary {
    let names = summary.names.unwrap_or_default();
    // Legacy links add names like `/other/alias`; the container's own has one slash.
    let name = names
        .iter()
        .map(|name| name.trim_start_matches('/'))
        .find(|name| !name.contains('/'))
        .or_else(|| names.first().map(|name| name.trim_start_matches('/')))
        .unwrap_or_default()
        .to_owned();
    let mut ports: Vec<PublishedPort> = summary
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|port| {
            Some(PublishedPort {
                container_port: port.private_port,
                protocol: port
                    .typ
                    .map(|typ| typ.to_string())
                    .filter(|typ| !typ.is_empty())
                    .unwrap_or_else(|| "tcp".into()),
                host_ip: port.ip.unwrap_or_default(),
                host_port: port.public_port?,
            })
        })
        .collect();
    // Docker binds a port on every address twice, for IPv4 and IPv6, each on its own host
    // port: keep one binding per container port, the IPv4 one.
    ports.sort_by_key(|p| {
        (
            p.container_port,
            p.protocol.clone(),
            p.host_ip.contains(':'),
        )
    });
    ports.dedup_by(|a, b| (a.container_port, &a.protocol) == (b.container_port, &b.protocol));
    ContainerSummary {
        id: summary.id.unwrap_or_default(),
        name,
        image: summary.image.unwrap_or_default(),
        labels: to_labels(summary.labels),
        state: ContainerState::parse(summary.state.as_ref().map_or("", |state| state.as_ref())),
        status: summary.status.unwrap_or_default(),
        ports,
    }
}

fn container_details(id: &str, response: ContainerInspectResponse) -> ContainerDetails {
    let state = response.state.unwrap_or_default();
    let status = ContainerState::parse(state.status.as_ref().map_or("", |status| status.as_ref()));
    let exit_code = match status {
        ContainerState::Created | ContainerState::Running | ContainerState::Paused => None,
        _ => state.exit_code,
    };
    let health = state
        .health
        .and_then(|health| health.status)
        .map(|status| status.to_string())
        .filter(|status| !status.is_empty() && status != "none");
    let settings = response.network_settings.unwrap_or_default();
    let ports = published_ports(settings.ports.unwrap_or_default());
    let networks: BTreeMap<String, EndpointSettings> =
        settings.networks.unwrap_or_default().into_iter().collect();
    let ip = networks
        .into_values()
        .filter_map(|network| network.ip_address)
        .find(|ip| !ip.is_empty());
    ContainerDetails {
        id: response.id.unwrap_or_else(|| id.to_owned()),
        state: status,
        exit_code,
        health,
        restarts: response.restart_count.unwrap_or(0),
        ports,
        ip,
        started_at: timestamp(state.started_at),
        finished_at: timestamp(state.finished_at),
    }
}

/// One host binding of each container port, IPv4 preferred; unbound ports are left out.
fn published_ports(ports: PortMap) -> Vec<PublishedPort> {
    let mut published: Vec<PublishedPort> = ports
        .into_iter()
        .filter_map(|(key, bindings)| {
            let (port, protocol) = key.split_once('/').unwrap_or((&key, "tcp"));
            let container_port = port.parse().ok()?;
            // IPv4 first: the IPv6 binding of the same port has a host port of its own.
            let binding = bindings?
                .into_iter()
                .filter_map(|binding| {
                    let host_port = binding.host_port?.parse().ok()?;
                    Some((binding.host_ip.unwrap_or_default(), host_port))
                })
                .min_by_key(|(host_ip, _)| host_ip.contains(':'))?;
            Some(PublishedPort {
                container_port,
                protocol: protocol.to_owned(),
                host_ip: binding.0,
                host_port: binding.1,
            })
        })
        .collect();
    published.sort();
    published
}

/// Docker's zero time (`0001-01-01T00:00:00Z`) means never.
fn timestamp(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty() && !value.starts_with("0001-01-01"))
}

fn to_hash_map(labels: &Labels) -> HashMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn to_labels(labels: Option<HashMap<String, String>>) -> Labels {
    labels.unwrap_or_default().into_iter().collect()
}

fn label_filter(label_filters: &[Filter]) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([(
        "label",
        label_filters.iter().map(Filter::to_docker).collect(),
    )])
}

// ---------------------------------------------------------------------------------------------
// Logs

/// The state of a log stream: the raw chunks, the lines made of them, and the lines and
/// errors ready to hand out.
struct LogState {
    chunks: BoxStream<'static, Result<bollard::container::LogOutput, BollardError>>,
    lines: LineSplitter,
    ready: VecDeque<Result<LogLine>>,
    done: bool,
    engine: Docker,
    id: String,
}

/// Which stream a chunk came from: each has its own partial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Stdout,
    Stderr,
    /// A TTY's or an unframed stream.
    Console,
}

fn split_log_output(output: bollard::container::LogOutput) -> (Source, Vec<u8>) {
    use bollard::container::LogOutput;
    match output {
        LogOutput::StdOut { message } => (Source::Stdout, message.to_vec()),
        LogOutput::StdErr { message } => (Source::Stderr, message.to_vec()),
        LogOutput::StdIn { message } | LogOutput::Console { message } => {
            (Source::Console, message.to_vec())
        }
    }
}

/// Splits chunks of output into lines, buffering a partial line per stream. With timestamps,
/// Docker starts every chunk (a log message, or part of one) with an RFC 3339 time and a
/// space; a line gets the time of its first chunk.
#[derive(Debug)]
struct LineSplitter {
    timestamps: bool,
    partial: BTreeMap<Source, Partial>,
}

#[derive(Debug, Default)]
struct Partial {
    text: Vec<u8>,
    timestamp: Option<String>,
}

impl LineSplitter {
    fn new(timestamps: bool) -> LineSplitter {
        LineSplitter {
            timestamps,
            partial: BTreeMap::new(),
        }
    }

    fn push(&mut self, source: Source, mut chunk: &[u8]) -> Vec<LogLine> {
        let timestamp = if self.timestamps {
            split_timestamp(&mut chunk)
        } else {
            None
        };
        let partial = self.partial.entry(source).or_default();
        if partial.text.is_empty() && partial.timestamp.is_none() {
            partial.timestamp.clone_from(&timestamp);
        }
        let mut lines = Vec::new();
        while let Some(end) = chunk.iter().position(|&byte| byte == b'\n') {
            partial.text.extend_from_slice(&chunk[..end]);
            lines.push(LogLine {
                timestamp: partial.timestamp.take(),
                text: line_text(std::mem::take(&mut partial.text)),
            });
            partial.timestamp.clone_from(&timestamp);
            chunk = &chunk[end + 1..];
        }
        if chunk.is_empty() {
            partial.timestamp = None;
        } else {
            partial.text.extend_from_slice(chunk);
        }
        lines
    }

    /// The partial lines left when the output ended.
    fn finish(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.partial)
            .into_values()
            .filter(|partial| !partial.text.is_empty())
            .map(|partial| LogLine {
                timestamp: partial.timestamp,
                text: line_text(partial.text),
            })
            .collect()
    }
}

fn line_text(mut bytes: Vec<u8>) -> String {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Takes a leading `2026-11-26T04:15:00.123456789Z ` off `chunk`.
fn split_timestamp(chunk: &mut &[u8]) -> Option<String> {
    let end = chunk.iter().position(|&byte| byte == b' ')?;
    let candidate = std::str::from_utf8(&chunk[..end]).ok()?;
    let looks_like_time = candidate.len() >= 20
        && candidate.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && candidate.as_bytes()[4] == b'-'
        && candidate.as_bytes()[10] == b'T';
    if !looks_like_time {
        return None;
    }
    let timestamp = candidate.to_owned();
    *chunk = &chunk[end + 1..];
    Some(timestamp)
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

/// The credentials `config.json` holds for `registry` (through its credential helper, if it
/// names one), as the engine wants them in `X-Registry-Auth`.
/// The label Docker puts on a swarm task's container.
const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

pub(crate) async fn registry_credentials(
    registry: &str,
) -> std::result::Result<Option<DockerCredentials>, crate::registry::credentials::CredentialError> {
    let found = crate::registry::DockerConfig::load()?
        .lookup(registry)
        .await?;
    Ok(found.map(|found| {
        let mut credentials = DockerCredentials {
            serveraddress: Some(found.server),
            ..Default::default()
        };
        match found.credential {
            Credential::Basic { username, password } => {
                credentials.username = Some(username);
                credentials.password = Some(password);
            }
            Credential::IdentityToken(token) => credentials.identitytoken = Some(token),
        }
        credentials
    }))
}

/// The insecure registries of `docker info`: `IndexConfigs` marked not secure, and
/// `InsecureRegistryCIDRs`.
pub(crate) fn insecure_of(
    config: bollard::models::RegistryServiceConfig,
) -> crate::registry::Insecure {
    let mut names: Vec<String> = config
        .index_configs
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, index)| index.secure == Some(false))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    crate::registry::Insecure {
        names,
        ranges: config.insecure_registry_cidrs.unwrap_or_default(),
    }
}

/// Whether a pull failed for want of (valid) credentials, in the engine's or registry's words.
fn is_denied(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access to the resource is denied",
        "docker login",
    ]
    .iter()
    .any(|word| reason.contains(word))
}

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
    fn lines_from_chunks() {
        let mut lines = LineSplitter::new(false);
        assert_eq!(
            lines.push(Source::Stdout, b"one\ntw"),
            vec![line(None, "one")]
        );
        assert_eq!(
            lines.push(Source::Stderr, b"err\r\n"),
            vec![line(None, "err")]
        );
        assert_eq!(
            lines.push(Source::Stdout, b"o\nthree\n"),
            vec![line(None, "two"), line(None, "three")]
        );
        assert_eq!(lines.push(Source::Stdout, b"partial"), vec![]);
        assert_eq!(lines.finish(), vec![line(None, "partial")]);
        assert_eq!(lines.finish(), vec![]);
    }

    #[test]
    fn lines_with_timestamps() {
        let t1 = "2026-11-26T04:15:00.000000001Z";
        let t2 = "2026-11-26T04:15:01.000000002Z";
        let mut lines = LineSplitter::new(true);
        assert_eq!(
            lines.push(Source::Stdout, format!("{t1} hello world\n").as_bytes()),
            vec![line(Some(t1), "hello world")]
        );
        // A message split in two: the line keeps the time of its start.
        assert_eq!(
            lines.push(Source::Stdout, format!("{t1} par").as_bytes()),
            vec![]
        );
        assert_eq!(
            lines.push(Source::Stdout, format!("{t2} tial\n").as_bytes()),
            vec![line(Some(t1), "partial")]
        );
        assert_eq!(
            lines.push(Source::Stdout, format!("{t2} a\nb\n").as_bytes()),
            vec![line(Some(t2), "a"), line(Some(t2), "b")]
        );
        assert_eq!(
            lines.push(Source::Stdout, b"no-time here\n"),
            vec![line(None, "no-time here")]
        );
    }

    fn line(timestamp: Option<&str>, text: &str) -> LogLine {
        LogLine {
            timestamp: timestamp.map(str::to_owned),
            text: text.into(),
        }
    }

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
    fn insecure_registries_are_the_ones_docker_info_marks() {
        use bollard::models::{IndexInfo, RegistryServiceConfig};
        let index = |secure| IndexInfo {
            secure: Some(secure),
            ..Default::default()
        };
        let config = RegistryServiceConfig {
            index_configs: Some(HashMap::from([
                ("docker.io".to_string(), index(true)),
                ("registry.example.com:5000".to_string(), index(false)),
            ])),
            insecure_registry_cidrs: Some(vec!["127.0.0.0/8".into()]),
            ..Default::default()
        };
        let insecure = insecure_of(config);
        assert_eq!(insecure.names, ["registry.example.com:5000"]);
        assert_eq!(insecure.ranges, ["127.0.0.0/8"]);
        assert_eq!(
            insecure_of(RegistryServiceConfig::default()),
            crate::registry::Insecure::default()
        );
    }

    #[test]
    fn a_refused_pull_is_recognised_in_the_engines_words() {
        assert!(is_denied(
            "Head \"http://127.0.0.1:5000/v2/a/manifests/1\": no basic auth credentials"
        ));
        assert!(is_denied(
            "pull access denied for a, repository does not exist or may require 'docker login'"
        ));
        assert!(is_denied("unauthorized: authentication required"));
        assert!(!is_denied("manifest for a:1 not found: manifest unknown"));
    }

    #[test]
    fn error_texts() {
        let server = BollardError::DockerResponseServerError {
            status_code: 409,
            message: "Conflict. The container name \"/x\" is already in use\n".into(),
        };
        assert_eq!(
            describe(&server),
            "Conflict. The container name \"/x\" is already in use"
        );
        assert_eq!(status(&server), Some(409));
        assert!(!is_connection_error(&server));
        let missing = BollardError::SocketNotFoundError("/nonexistent.sock".into());
        assert!(is_connection_error(&missing));
        assert_eq!(describe(&missing), "no socket at /nonexistent.sock");
    }

    #[test]
    fn create_requests_are_logged_without_env_values() {
        let spec = ContainerSpec {
            name: "db_1".into(),
            image: "db:1".into(),
            env: vec!["PASSWORD=s3cret".into(), "URL=a=b".into()],
            ..ContainerSpec::default()
        };
        let logged = redacted(&container_body(&spec));
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(
            logged.contains(r#""Env":["PASSWORD=***","URL=***"]"#),
            "{logged}"
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
