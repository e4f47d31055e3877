//! Environments on a Docker swarm, through a manager: the claim as a config, one attachable
//! overlay network per environment, one service per envctl service (one replica, restart
//! condition `none`, DNS round robin, ports published in host mode on the node that runs the
//! task), readiness at the node's address (docs/backends.md §6.2).
//!
//! This is the start of the Swarm backend: the operations below, each proven on a real
//! multi-node swarm (tests/it/swarm/backend.rs). Listing, markers, logs and the rest of the
//! [`super::Backend`] seam come next; until then nothing in envctl's commands uses it.

mod convert;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig,
    NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{ListTasksOptionsBuilder, UpdateServiceOptionsBuilder};

use super::{
    BackendError, BackendInfo, Capabilities, Healthcheck, IsolationRef, Kind, Result, ServiceRef,
    ServiceSpec, ServiceStatus,
};
use crate::backend::docker::engine::connect::Origin;
use crate::naming;
use crate::naming::codec::{Labels, Metadata, Role};
use crate::spec::{Probe, Protocol, Ready};

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

/// A swarm, through one of its managers.
pub struct Swarm {
    client: bollard::Docker,
    info: BackendInfo,
}

impl Swarm {
    /// Connects to the engine at `host` (`unix:///…`, `tcp://…`; `origin` says where that
    /// came from) and checks that it is a manager of a swarm.
    pub async fn connect(host: &str, origin: &Origin) -> Result<Swarm> {
        let unreachable = |reason: String, hint: String| BackendError::Unreachable {
            backend: Kind::Swarm,
            endpoint: host.to_string(),
            origin: origin.to_string(),
            reason,
            hint,
        };
        let client = bollard::Docker::connect_with_host(host)
            .map_err(|e| unreachable(e.to_string(), origin.hint()))?;
        let client = tokio::time::timeout(CALL_LIMIT, client.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_LIMIT:?}"), origin.hint()))?
            .map_err(|e| unreachable(e.to_string(), origin.hint()))?;
        let swarm = Swarm {
            client,
            info: BackendInfo {
                kind: Kind::Swarm,
                endpoint: format!("swarm+{host}"),
                capabilities: Capabilities {
                    exec: false,
                    traffic: false,
                    stop_keeps_state: false,
                    build: false,
                    local_images: false,
                },
            },
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
        Ok(swarm)
    }

    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Claims `metadata.id` with the config `envctl_ID`, which the swarm refuses to create
    /// twice (409): `Taken` when it exists, whoever made it.
    pub async fn claim(&self, metadata: &Metadata) -> Result<()> {
        let name = naming::anchor_name(&metadata.id);
        let spec = ConfigSpec {
            name: Some(name.clone()),
            labels: Some(hash_map(metadata.encode_marker(Role::Anchor))),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&metadata.id)),
            ..Default::default()
        };
        match self
            .call(
                &format!("create config `{name}`"),
                self.client.create_config(spec),
            )
            .await
        {
            Err(BackendError::Conflict(_)) => Err(BackendError::Taken(metadata.id.clone())),
            other => other.map(drop),
        }
    }

    /// Gives the id back: removes the claim. Idempotent.
    pub async fn release(&self, id: &str) -> Result<()> {
        let name = naming::anchor_name(id);
        ignore_missing(
            self.call(
                &format!("remove config `{name}`"),
                self.client.delete_config(&name),
            )
            .await,
        )
    }

    /// The environment's attachable overlay network, under a name never used before.
    pub async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        let name = naming::swarm_network_name(&metadata.id, &nonce());
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

    /// Removes the network once no task uses it any more, retrying within [`REMOVAL_LIMIT`]
    /// while tasks of removed services still hold it. A manager answers 404 to the removal of
    /// a network that is still in use (it falls back to its local networks after the swarm
    /// refused), so "gone" is only believed when the network cannot be inspected either.
    pub async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        let operation = format!("remove network `{}`", isolation.name);
        let deadline = Instant::now() + REMOVAL_LIMIT;
        loop {
            let removed = self
                .call(&operation, self.client.remove_network(&isolation.native))
                .await;
            let refused = match removed {
                Ok(()) => return Ok(()),
                Err(BackendError::NotFound { .. }) => {
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

    /// Creates the service with no replica: nothing runs until [`Swarm::start_service`].
    pub async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        let name = naming::container_name(&spec.service, &spec.metadata.id);
        let labels = spec.metadata.encode_service(&spec.service_metadata());
        let service = bollard::models::ServiceSpec {
            name: Some(name.clone()),
            labels: Some(hash_map(labels)),
            mode: Some(replicas(0)),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(spec.image.reference.to_string()),
                    // Docker's CMD; `command` would replace the ENTRYPOINT.
                    args: spec.command.clone(),
                    env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    health_check: health_check(&spec.ready, spec.image.healthcheck.as_ref()),
                    ..Default::default()
                }),
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
            }),
            // No virtual IP and no routing mesh: both need the kernel's IPVS.
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(spec.ports().iter().map(published).collect()),
            }),
            ..Default::default()
        };
        let created = self
            .call(
                &format!("create service `{name}`"),
                self.client.create_service(service, None),
            )
            .await?;
        Ok(ServiceRef {
            id: spec.metadata.id.clone(),
            service: spec.service.clone(),
            native: created.id.unwrap_or_else(|| name.clone()),
            name,
        })
    }

    /// Runs one task of the service. The update is forced: scaling up while the previous task
    /// still stops would otherwise create no task.
    pub async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        self.scale(service, 1).await
    }

    /// Scales the service to no task; its container goes with it. Idempotent.
    pub async fn stop_service(&self, service: &ServiceRef) -> Result<()> {
        self.scale(service, 0).await
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
            template.force_update = Some(template.force_update.unwrap_or(0) + 1);
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

    /// The typed state of the service, from the service and its newest task; `Missing` when
    /// the service is gone.
    pub async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        let inspected = self
            .call(
                &format!("inspect service `{}`", service.name),
                self.client.inspect_service(&service.native, None),
            )
            .await;
        let inspected = match inspected {
            Err(BackendError::NotFound { .. }) => {
                return Ok(ServiceStatus::new(super::ServiceState::Missing));
            }
            other => other?,
        };
        let tasks = self.tasks(service).await?;
        let nodes = self.node_addresses().await?;
        Ok(status_of(&inspected, &tasks, &nodes))
    }

    /// Resolves when the service's current task ended, with its exit code.
    pub async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        loop {
            let status = self.status(service).await?;
            if let Some(code) = status.exit_code {
                return Ok(code);
            }
            if matches!(
                status.state,
                super::ServiceState::Failed | super::ServiceState::Missing
            ) {
                return Err(BackendError::operation(
                    format!("wait for service `{}`", service.name),
                    status.detail.unwrap_or_else(|| "its task ended".into()),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes the service, then waits until the swarm has deleted its tasks (removal is
    /// asynchronous: the container outlives the call by seconds). Idempotent.
    pub async fn remove_service(
        &self,
        service: &ServiceRef,
        grace: Option<Duration>,
    ) -> Result<()> {
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
        while let Some(task) = remaining.last() {
            let inspected = self.call(&operation, self.client.inspect_task(task)).await;
            match inspected {
                Err(BackendError::NotFound { .. }) => drop(remaining.pop()),
                Ok(_) if Instant::now() >= deadline => {
                    return Err(BackendError::operation(
                        operation,
                        format!("its task was still there {limit:?} after the removal"),
                    ));
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

    /// `call` within [`CALL_LIMIT`], its error typed and naming `operation`.
    async fn call<T>(
        &self,
        operation: &str,
        call: impl Future<Output = std::result::Result<T, BollardError>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(result) => result.map_err(|e| convert::error(&self.info.endpoint, operation, e)),
            Err(_) => Err(BackendError::NoAnswer {
                backend: Kind::Swarm,
                endpoint: self.info.endpoint.clone(),
                operation: operation.to_string(),
                waited: CALL_LIMIT,
            }),
        }
    }
}

fn replicas(count: i64) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(count),
        }),
        ..Default::default()
    }
}

/// A container port published in host mode on a port the node picks.
fn published(port: &crate::spec::Port) -> EndpointPortConfig {
    EndpointPortConfig {
        target_port: Some(i64::from(port.number)),
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
