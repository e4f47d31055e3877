//! Swarm's objects read into the seam's typed values, once: a service and its tasks into a
//! [`ServiceStatus`], bollard's errors into [`BackendError`]s.

use std::collections::{BTreeSet, HashMap};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, Limit, Mount, MountTmpfsOptions, MountType,
    MountVolumeOptions, Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState,
    ResourceObject, Service, ServiceSpec, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecResources,
    TaskState,
};
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};

use crate::backend::bollard::error::{describe, is_connection_error, message, status};
use crate::backend::bollard::logs;
use crate::backend::{
    BackendError, BackendKind, Health, LogLine, NodeMemory, Protocol, ServiceEndpoint,
    ServiceState, ServiceStatus,
};
use crate::naming::codec::{Labels, Metadata, ServiceMetadata};
use crate::spec::runtime::{HostAddress, MountSource, Restart};
use crate::spec::{Port, Probe, Ready, Runtime};

/// Each node's memory, and what the tasks that run or are to run on it reserved of it.
pub fn node_memory(nodes: &[Node], tasks: &[Task]) -> Vec<NodeMemory> {
    let mut shown: Vec<NodeMemory> = nodes
        .iter()
        .map(|node| {
            let id = node.id.as_deref();
            let spec = node.spec.as_ref();
            let reserved = tasks
                .iter()
                .filter(|t| id.is_some() && t.node_id.as_deref() == id)
                .filter_map(|t| {
                    let resources = t.spec.as_ref()?.resources.as_ref()?;
                    resources.reservations.as_ref()?.memory_bytes
                })
                .map(|bytes| bytes.max(0) as u64)
                .sum();
            let description = node.description.as_ref();
            NodeMemory {
                name: description
                    .and_then(|d| d.hostname.clone())
                    .or_else(|| node.id.clone())
                    .unwrap_or_default(),
                manager: spec.and_then(|s| s.role) == Some(NodeSpecRoleEnum::MANAGER),
                available: spec.and_then(|s| s.availability)
                    == Some(NodeSpecAvailabilityEnum::ACTIVE)
                    && node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY),
                memory: description
                    .and_then(|d| d.resources.as_ref())
                    .and_then(|r| r.memory_bytes)
                    .map_or(0, |bytes| bytes.max(0) as u64),
                reserved,
            }
        })
        .collect();
    shown.sort_by(|a, b| a.name.cmp(&b.name));
    shown
}

/// The address at which this client reaches each node, by node id.
#[derive(Debug, Clone, Default)]
pub struct NodeAddresses {
    by_id: HashMap<String, String>,
    /// Nodes the swarm has lost (`down`, `disconnected`): their tasks' last reported states
    /// are stale, and the swarm deletes them only once the node is back or removed.
    lost: BTreeSet<String>,
}

impl NodeAddresses {
    /// A node's `Status.Addr`; when a node reports `0.0.0.0` (a manager behind NAT), the host
    /// of a manager's `ManagerStatus.Addr`.
    pub fn new(nodes: &[Node]) -> NodeAddresses {
        let manager = nodes
            .iter()
            .filter_map(|n| n.manager_status.as_ref()?.addr.as_deref())
            .filter_map(|addr| addr.rsplit_once(':').map(|(host, _)| host.to_string()))
            .next();
        let by_id = nodes
            .iter()
            .filter_map(|node| {
                let id = node.id.clone()?;
                let addr = node.status.as_ref().and_then(|s| s.addr.clone());
                let addr = match addr.as_deref() {
                    None | Some("" | "0.0.0.0") => manager.clone()?,
                    Some(addr) => addr.to_string(),
                };
                Some((id, addr))
            })
            .collect();
        let lost = nodes
            .iter()
            .filter(|node| {
                matches!(
                    node.status.as_ref().and_then(|s| s.state),
                    Some(NodeState::DOWN | NodeState::DISCONNECTED)
                )
            })
            .filter_map(|node| node.id.clone())
            .collect();
        NodeAddresses { by_id, lost }
    }

    fn of(&self, node: Option<&str>) -> Option<&str> {
        self.by_id.get(node?).map(String::as_str)
    }

    /// Whether the task is on a node the swarm has lost.
    pub fn is_lost(&self, task: &Task) -> bool {
        task.node_id
            .as_ref()
            .is_some_and(|node| self.lost.contains(node))
    }
}

/// The service's state, from its newest task: what runs now, or how the last run ended.
pub fn status_of(service: &Service, tasks: &[Task], nodes: &NodeAddresses) -> ServiceStatus {
    let created_at = service.created_at.as_deref().and_then(time);
    let stopped = replicas(service) == Some(0);
    let created = |task: &&Task| task.created_at.as_deref().and_then(time);
    // Scaled to none, a task told to shut down before it ran never will: the newest task that
    // did tells how the service ended.
    let newest = tasks
        .iter()
        .filter(|task| !(stopped && never_ran(task)))
        .max_by_key(created)
        .or_else(|| tasks.iter().max_by_key(created));
    let Some(task) = newest else {
        let mut status = ServiceStatus::new(ServiceState::Pending);
        status.created_at = created_at;
        return status;
    };
    let checked = has_health_check(service);
    let task_status = task.status.clone().unwrap_or_default();
    let at = task_status.timestamp.as_deref().and_then(time);
    let exit_code = task_status
        .container_status
        .as_ref()
        .and_then(|c| c.exit_code);
    let detail = task_status
        .err
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| task_status.message.clone().filter(|m| !m.is_empty()));
    let (state, health) = match task_status.state.unwrap_or(TaskState::NEW) {
        _ if stopped && never_ran(task) => (ServiceState::Exited, Health::None),
        TaskState::NEW
        | TaskState::ALLOCATED
        | TaskState::PENDING
        | TaskState::ASSIGNED
        | TaskState::ACCEPTED
        | TaskState::PREPARING
        | TaskState::READY => (ServiceState::Pending, Health::None),
        // With a health check, a task is `starting` while its container runs unhealthy.
        TaskState::STARTING if checked => (ServiceState::Running, Health::Starting),
        TaskState::STARTING => (ServiceState::Pending, Health::None),
        TaskState::RUNNING if checked => (ServiceState::Running, Health::Healthy),
        TaskState::RUNNING => (ServiceState::Running, Health::None),
        TaskState::COMPLETE => (ServiceState::Exited, Health::None),
        TaskState::FAILED if exit_code.is_some() => (ServiceState::Exited, Health::None),
        TaskState::SHUTDOWN if stopped => (ServiceState::Exited, Health::None),
        TaskState::SHUTDOWN | TaskState::REMOVE => (ServiceState::Stopping, Health::None),
        TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED => {
            (ServiceState::Failed, Health::None)
        }
    };
    // A task on a lost node runs nowhere envctl can reach, whatever it last reported.
    let (state, health, detail) = match state {
        ServiceState::Running | ServiceState::Pending | ServiceState::Stopping
            if nodes.is_lost(task) =>
        {
            let node = nodes.of(task.node_id.as_deref()).unwrap_or("?");
            let lost = format!("its node {node} is down: the swarm lost it");
            (ServiceState::Failed, Health::None, Some(lost))
        }
        _ => (state, health, detail),
    };
    let mut status = ServiceStatus::new(state);
    status.health = health;
    status.created_at = created_at;
    match state {
        ServiceState::Running => {
            status.started_at = at;
            if let Some(host) = nodes.of(task.node_id.as_deref()) {
                // envctl's own ports are the probes' alone, never the environment's endpoints.
                let own = probe_ports(service);
                let (probes, published) = endpoints(task, host)
                    .into_iter()
                    .partition(|endpoint| own.contains(&endpoint.container_port));
                status.endpoints = published;
                status.probe_endpoints = probes;
            }
        }
        ServiceState::Exited => {
            status.exit_code = Some(exit_code.unwrap_or(0));
            status.finished_at = at;
        }
        ServiceState::Failed | ServiceState::Pending => status.detail = detail,
        _ => {}
    }
    status
}

/// The task's host-mode ports at `host`. Each binding is reported twice (IPv4 and IPv6,
/// identical): one is kept.
fn endpoints(task: &Task, host: &str) -> Vec<ServiceEndpoint> {
    let ports = task
        .status
        .as_ref()
        .and_then(|s| s.port_status.as_ref())
        .and_then(|p| p.ports.as_ref());
    let unique: BTreeSet<ServiceEndpoint> = ports
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let protocol = match port.protocol {
                Some(EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            Some(ServiceEndpoint {
                container_port: Port {
                    number: u16::try_from(port.target_port?).ok()?,
                    protocol,
                },
                host: host.to_string(),
                port: u16::try_from(port.published_port?).ok()?,
                // Swarm reports no address: a host-mode port is bound on all of the node's.
                bound: "0.0.0.0".to_string(),
            })
        })
        .collect();
    unique.into_iter().collect()
}

/// Whether the task has not started its container yet: still being scheduled, pulled or
/// prepared.
pub fn is_before_start(task: &Task) -> bool {
    matches!(
        task.status.as_ref().and_then(|s| s.state),
        None | Some(
            TaskState::NEW
                | TaskState::ALLOCATED
                | TaskState::PENDING
                | TaskState::ASSIGNED
                | TaskState::ACCEPTED
                | TaskState::PREPARING
                | TaskState::READY
        )
    )
}

/// A task told to shut down before its container started.
fn never_ran(task: &Task) -> bool {
    matches!(
        task.desired_state,
        Some(TaskState::SHUTDOWN | TaskState::REMOVE)
    ) && is_before_start(task)
}

/// Whether the task's container runs (or is about to: it was told to start).
pub fn is_running(task: &Task) -> bool {
    matches!(
        task.status.as_ref().and_then(|s| s.state),
        Some(TaskState::STARTING | TaskState::RUNNING)
    )
}

/// The readiness spec the service's labels carry.
pub fn ready_of(spec: &ServiceSpec) -> Option<Ready> {
    let labels: Labels = spec.labels.clone()?.into_iter().collect();
    ServiceMetadata::decode(&labels)?.ready
}

/// Whether the swarm runs a health check for the service: its readiness has an `exec:` or
/// `healthcheck:` probe. Read from the labels, as bollard cannot read Docker's `Healthcheck`
/// back from an inspected spec.
fn has_health_check(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(ready_of)
        .is_some_and(|ready| {
            ready
                .probes
                .iter()
                .any(|p| matches!(p, Probe::Exec(_) | Probe::Healthcheck))
        })
}

/// The ports envctl published on the service for its own probes alone.
fn probe_ports(service: &Service) -> Vec<Port> {
    let labels: Labels = service
        .spec
        .as_ref()
        .and_then(|spec| spec.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    crate::naming::codec::probe_ports(&labels)
}

fn replicas(service: &Service) -> Option<i64> {
    service
        .spec
        .as_ref()?
        .mode
        .as_ref()?
        .replicated
        .as_ref()?
        .replicas
}

pub fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A bollard error as the seam's error, naming `operation`: a 404 is the object not found, a
/// 409 a conflict (a claim taken), a failed connection the manager unreachable; what the
/// error says is read as for the Docker backend ([`crate::backend::bollard::error`]).
pub fn error(endpoint: &str, operation: &str, error: BollardError) -> BackendError {
    match status(&error) {
        Some(404) => BackendError::NotFound {
            kind: "swarm object",
            name: message(&error).to_owned(),
        },
        Some(409) => BackendError::Conflict(message(&error).to_owned()),
        _ if is_connection_error(&error) => BackendError::Unreachable {
            backend: BackendKind::Swarm,
            endpoint: endpoint.to_string(),
            origin: "the swarm's manager".into(),
            reason: describe(&error),
            hint: "check that the manager still runs (`docker node ls` there)".into(),
        },
        _ => BackendError::operation(operation, describe(&error)),
    }
}

/// Maps the typed compose keys onto the task: mounts (named volumes as `envctl_ID_NAME`, local
/// on the node that runs the task, labelled as envctl's), tmpfs and `shm_size`, limits, user,
/// working directory, entrypoint, hosts, the user's labels and the stop grace period. Returns
/// the published ports; what a swarm cannot honour is an error saying so.
pub fn with_runtime(
    container: &mut TaskSpecContainerSpec,
    template: &mut TaskSpec,
    runtime: &Runtime,
    metadata: &Metadata,
) -> Result<Vec<EndpointPortConfig>, String> {
    let mut ports = Vec::new();
    for mapping in &runtime.ports {
        if mapping.host_ip.is_some() {
            return Err(format!(
                "port `{mapping}` is bound to one address, which a swarm cannot do: a port \
                 published in host mode is bound on every address of the node\nhint: publish \
                 it without an address"
            ));
        }
        ports.push(super::published(&mapping.container, mapping.host_port));
    }
    if let Some(restart) = runtime.restart.filter(|r| *r != Restart::No) {
        return Err(format!(
            "`restart: {restart}` cannot be honoured on a swarm: envctl runs every task with \
             the restart condition `none`, so that a failed start is seen\nhint: remove \
             `restart:` for the swarm"
        ));
    }
    let mut mounts: Vec<Mount> = runtime
        .mounts
        .iter()
        .map(|mount| match &mount.source {
            MountSource::Volume(name) => Mount {
                target: Some(mount.target.clone()),
                source: Some(crate::naming::volume_name(&metadata.id, name)),
                typ: Some(MountType::VOLUME),
                read_only: Some(mount.read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(metadata.encode_for("swarm").into_iter().collect()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            MountSource::Bind(path) => Mount {
                target: Some(mount.target.clone()),
                source: Some(path.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(mount.read_only),
                ..Default::default()
            },
        })
        .collect();
    let tmpfs = |target: &str, size: Option<u64>, mode: Option<u32>| Mount {
        target: Some(target.to_string()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: size.map(|s| s as i64),
            mode: mode.map(i64::from),
            ..Default::default()
        }),
        ..Default::default()
    };
    for entry in &runtime.tmpfs {
        mounts.push(tmpfs(
            &entry.target,
            entry.options.size.map(|s| s.0),
            entry.options.mode,
        ));
    }
    if let Some(size) = runtime.shm_size {
        mounts.push(tmpfs("/dev/shm", Some(size.0), None));
    }
    container.mounts = (!mounts.is_empty()).then_some(mounts);
    if runtime.mem_limit.is_some() || runtime.cpus.is_some() {
        let memory = runtime.mem_limit.map(|b| b.0 as i64);
        template.resources = Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: runtime.cpus.map(|c| c.0 as i64),
                memory_bytes: memory,
                ..Default::default()
            }),
            // What envctl's admission counts a service for, reserved on the node the swarm
            // places its task on: the scheduler picks only a node with that much unreserved.
            reservations: memory.map(|bytes| ResourceObject {
                memory_bytes: Some(bytes),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut hosts = Vec::new();
    for entry in &runtime.extra_hosts {
        match entry.address {
            // The hosts file's order: address, then name.
            HostAddress::Ip(ip) => hosts.push(format!("{ip} {}", entry.host)),
            HostAddress::HostGateway => {
                return Err(format!(
                    "`extra_hosts: {}:host-gateway` cannot be honoured on a swarm: a task's \
                     node is not known before it runs\nhint: give the address",
                    entry.host
                ));
            }
        }
    }
    container.hosts = (!hosts.is_empty()).then_some(hosts);
    container.command.clone_from(&runtime.entrypoint);
    container.user.clone_from(&runtime.user);
    container.dir.clone_from(&runtime.working_dir);
    container.labels =
        (!runtime.labels.is_empty()).then(|| runtime.labels.clone().into_iter().collect());
    container.stop_grace_period = runtime
        .stop_grace_period
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok(ports)
}

/// The lines of a service's log, from the chunks bollard reads; a read that fails ends the
/// lines with the error `failed` makes of it.
pub fn service_log_lines(
    chunks: BoxStream<'static, Result<LogOutput, BollardError>>,
    timestamps: bool,
    failed: impl Fn(BollardError) -> BackendError + Send + 'static,
) -> BoxStream<'static, Result<LogLine, BackendError>> {
    logs::lines(chunks, timestamps, failed)
        .map(|line| {
            let mut line = line?;
            // The manager reports a node it cannot read logs from inside the stream, behind
            // bytes of a frame header: the words are kept, the bytes dropped.
            if let Some(at) = line.text.find("Error grabbing logs: ") {
                line.text.drain(..at);
            }
            Ok(line.into_seam())
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ContainerStatus, EndpointPortConfig, ManagerStatus, NodeStatus, PortStatus,
        ServiceSpecMode, ServiceSpecModeReplicated, TaskStatus,
    };

    use super::*;

    fn service(replicas: i64, health: bool) -> Service {
        let probe = if health {
            Probe::Exec(vec!["/standin".into()])
        } else {
            Probe::Tcp(8080)
        };
        let labels = crate::naming::codec::Metadata::new("x").encode_service(&ServiceMetadata {
            service: "web".into(),
            image: None,
            depends_on: Default::default(),
            ports: Vec::new(),
            reference: None,
            aliases: Vec::new(),
            address: None,
            settings: Default::default(),
            ready: Some(Ready {
                probes: vec![probe],
                timeout: std::time::Duration::from_secs(60),
            }),
        });
        Service {
            created_at: Some("2026-11-26T10:00:00.5Z".into()),
            spec: Some(ServiceSpec {
                labels: Some(labels.into_iter().collect()),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(created: &str, state: TaskState, exit_code: Option<i64>) -> Task {
        Task {
            created_at: Some(created.into()),
            node_id: Some("n2".into()),
            status: Some(TaskStatus {
                timestamp: Some("2026-11-26T10:00:02Z".into()),
                state: Some(state),
                err: (state == TaskState::REJECTED).then(|| "No such image: x".into()),
                container_status: Some(ContainerStatus {
                    exit_code,
                    ..Default::default()
                }),
                port_status: Some(PortStatus {
                    ports: Some(vec![binding(), binding()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn binding() -> EndpointPortConfig {
        EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(8080),
            published_port: Some(30001),
            ..Default::default()
        }
    }

    fn node(id: &str, addr: &str, manager: Option<&str>) -> Node {
        Node {
            id: Some(id.into()),
            status: Some(NodeStatus {
                addr: Some(addr.into()),
                ..Default::default()
            }),
            manager_status: manager.map(|addr| ManagerStatus {
                addr: Some(addr.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn nodes() -> NodeAddresses {
        NodeAddresses::new(&[
            node("n1", "10.0.0.11", Some("10.0.0.11:2377")),
            node("n2", "10.0.0.12", None),
        ])
    }

    #[test]
    fn a_service_without_a_task_is_created_not_started() {
        let status = status_of(&service(0, false), &[], &nodes());
        assert_eq!(status.state, ServiceState::Pending);
        assert!(status.created_at.is_some());
    }

    #[test]
    fn a_running_task_publishes_each_binding_once_at_its_node_address() {
        let tasks = [task("2026-11-26T10:00:01Z", TaskState::RUNNING, None)];
        let status = status_of(&service(1, false), &tasks, &nodes());
        assert_eq!(status.state, ServiceState::Running);
        assert_eq!(status.health, Health::None);
        assert_eq!(
            status.endpoints,
            vec![ServiceEndpoint {
                container_port: Port {
                    number: 8080,
                    protocol: Protocol::Tcp
                },
                host: "10.0.0.12".into(),
                port: 30001,
                bound: "0.0.0.0".into(),
            }]
        );
    }

    #[test]
    fn envctls_own_probe_ports_are_for_probes_never_endpoints() {
        let mut service = service(1, false);
        let labels = service.spec.as_mut().unwrap().labels.as_mut().unwrap();
        let mut marked: Labels = labels.clone().into_iter().collect();
        let broker = Port {
            number: 61616,
            protocol: Protocol::Tcp,
        };
        crate::naming::codec::mark_probe_ports(&mut marked, &[broker]);
        *labels = marked.into_iter().collect();
        let mut running = task("2026-11-26T10:00:01Z", TaskState::RUNNING, None);
        let probe_port = EndpointPortConfig {
            target_port: Some(61616),
            published_port: Some(30002),
            ..binding()
        };
        let reported = &mut running.status.as_mut().unwrap().port_status;
        reported.as_mut().unwrap().ports = Some(vec![binding(), probe_port.clone(), probe_port]);
        let status = status_of(&service, &[running], &nodes());
        let ports = |endpoints: &[ServiceEndpoint]| -> Vec<(u16, u16)> {
            endpoints
                .iter()
                .map(|e| (e.container_port.number, e.port))
                .collect()
        };
        assert_eq!(ports(&status.endpoints), [(8080, 30001)]);
        assert_eq!(ports(&status.probe_endpoints), [(61616, 30002)]);
        assert_eq!(status.probe_endpoints[0].host, "10.0.0.12");
    }

    #[test]
    fn a_task_that_does_not_run_publishes_none_of_the_ports_it_reports() {
        for (state, code) in [
            (TaskState::SHUTDOWN, Some(137)),
            (TaskState::COMPLETE, Some(0)),
            (TaskState::FAILED, Some(1)),
            (TaskState::ORPHANED, None),
            (TaskState::PREPARING, None),
        ] {
            let tasks = [task("2026-11-26T10:00:01Z", state, code)];
            let status = status_of(&service(1, false), &tasks, &nodes());
            assert_eq!(status.endpoints, [], "{state:?}");
        }
    }

    #[test]
    fn the_newest_task_wins_whatever_the_precision_of_its_time() {
        // "…01.5Z" sorts after "…01.45Z" as text, yet is the older of the two.
        let tasks = [
            task("2026-11-26T10:00:01.5Z", TaskState::SHUTDOWN, Some(143)),
            task("2026-11-26T10:00:01.55Z", TaskState::RUNNING, None),
        ];
        let status = status_of(&service(1, false), &tasks, &nodes());
        assert_eq!(status.state, ServiceState::Running);
    }

    #[test]
    fn a_health_check_makes_starting_unhealthy_and_running_healthy() {
        let starting = [task("2026-11-26T10:00:01Z", TaskState::STARTING, None)];
        let status = status_of(&service(1, true), &starting, &nodes());
        assert_eq!(
            (status.state, status.health),
            (ServiceState::Running, Health::Starting)
        );
        let running = [task("2026-11-26T10:00:01Z", TaskState::RUNNING, None)];
        let status = status_of(&service(1, true), &running, &nodes());
        assert_eq!(status.health, Health::Healthy);
    }

    #[test]
    fn a_failed_task_with_an_exit_code_exited_with_it() {
        let tasks = [task("2026-11-26T10:00:01Z", TaskState::FAILED, Some(3))];
        let status = status_of(&service(1, false), &tasks, &nodes());
        assert_eq!(
            (status.state, status.exit_code),
            (ServiceState::Exited, Some(3))
        );
        assert!(status.finished_at.is_some());
    }

    #[test]
    fn a_rejected_task_failed_and_says_why() {
        let tasks = [task("2026-11-26T10:00:01Z", TaskState::REJECTED, None)];
        let status = status_of(&service(1, false), &tasks, &nodes());
        assert_eq!(status.state, ServiceState::Failed);
        assert_eq!(status.detail.as_deref(), Some("No such image: x"));
    }

    #[test]
    fn a_service_scaled_to_zero_is_stopped_once_its_task_shut_down() {
        let tasks = [task("2026-11-26T10:00:01Z", TaskState::SHUTDOWN, Some(0))];
        assert_eq!(
            status_of(&service(0, false), &tasks, &nodes()).state,
            ServiceState::Exited
        );
        assert_eq!(
            status_of(&service(1, false), &tasks, &nodes()).state,
            ServiceState::Stopping
        );
    }

    #[test]
    fn a_stopped_service_whose_newest_task_never_ran_is_stopped_not_pending() {
        // Scaling to none can leave a task the swarm made and then told to shut down before
        // it ever ran: it never will, and the task before it tells how the service ended.
        let mut never_ran = task("2026-11-26T10:00:03Z", TaskState::PENDING, None);
        never_ran.desired_state = Some(TaskState::SHUTDOWN);
        let ran = task("2026-11-26T10:00:01Z", TaskState::SHUTDOWN, Some(143));
        let status = status_of(&service(0, false), &[ran, never_ran.clone()], &nodes());
        assert_eq!(
            (status.state, status.exit_code),
            (ServiceState::Exited, Some(143))
        );
        let status = status_of(&service(0, false), &[never_ran], &nodes());
        assert_eq!(status.state, ServiceState::Exited);
    }

    #[test]
    fn a_node_at_0_0_0_0_is_reached_at_the_manager_address() {
        let nodes = NodeAddresses::new(&[
            node("n1", "0.0.0.0", Some("192.0.2.7:2377")),
            node("n2", "0.0.0.0", None),
        ]);
        assert_eq!(nodes.of(Some("n2")), Some("192.0.2.7"));
    }

    #[test]
    fn a_claim_refused_with_409_is_a_conflict_and_404_not_found() {
        let answer = |status_code| BollardError::DockerResponseServerError {
            status_code,
            message: "config exists".into(),
        };
        assert!(matches!(
            error("swarm+unix:///s", "create config", answer(409)),
            BackendError::Conflict(_)
        ));
        assert!(matches!(
            error("swarm+unix:///s", "remove config", answer(404)),
            BackendError::NotFound { .. }
        ));
        assert!(matches!(
            error("swarm+unix:///s", "create service", answer(400)),
            BackendError::Operation { .. }
        ));
    }

    fn runtime(text_ports: Vec<crate::spec::PortMapping>) -> Runtime {
        Runtime {
            ports: text_ports,
            ..Default::default()
        }
    }

    #[test]
    fn runtime_keys_become_the_tasks_mounts_limits_and_ports() {
        use crate::spec::runtime::{
            Bytes, Cpus, ExtraHost, Mount as SpecMount, Tmpfs, TmpfsOptions,
        };
        let metadata = Metadata::new("e1");
        let mut runtime = runtime(vec![
            crate::spec::PortMapping::random(Port {
                number: 8080,
                protocol: Protocol::Tcp,
            }),
            crate::spec::PortMapping {
                container: Port {
                    number: 53,
                    protocol: Protocol::Udp,
                },
                host_ip: None,
                host_port: Some(5353),
            },
        ]);
        runtime.mounts = vec![SpecMount {
            source: MountSource::Volume("data".into()),
            target: "/data".into(),
            read_only: false,
        }];
        runtime.tmpfs = vec![Tmpfs {
            target: "/run".into(),
            options: TmpfsOptions {
                size: Some(Bytes(1 << 20)),
                mode: None,
            },
        }];
        runtime.shm_size = Some(Bytes(1 << 26));
        runtime.mem_limit = Some(Bytes(1 << 30));
        runtime.cpus = Some(Cpus(1_500_000_000));
        runtime.user = Some("1000".into());
        runtime.extra_hosts = vec![ExtraHost {
            host: "db".into(),
            address: HostAddress::Ip("10.0.0.5".parse().unwrap()),
        }];
        let mut container = TaskSpecContainerSpec::default();
        let mut template = TaskSpec::default();
        let ports = with_runtime(&mut container, &mut template, &runtime, &metadata).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].published_port, Some(5353));
        assert_eq!(ports[1].protocol, Some(EndpointPortConfigProtocolEnum::UDP));
        let mounts = container.mounts.unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("envctl_e1_data"));
        let labels = mounts[0]
            .volume_options
            .as_ref()
            .and_then(|o| o.labels.clone())
            .unwrap();
        let labels: Labels = labels.into_iter().collect();
        assert_eq!(crate::naming::codec::backend(&labels), Some("swarm"));
        assert_eq!(mounts[1].typ, Some(MountType::TMPFS));
        assert_eq!(mounts[2].target.as_deref(), Some("/dev/shm"));
        let resources = template.resources.unwrap();
        let limits = resources.limits.unwrap();
        assert_eq!(limits.nano_cpus, Some(1_500_000_000));
        assert_eq!(limits.memory_bytes, Some(1 << 30));
        let reserved = resources.reservations.unwrap();
        assert_eq!(
            reserved.memory_bytes,
            Some(1 << 30),
            "what admission counts"
        );
        assert_eq!(container.user.as_deref(), Some("1000"));
        assert_eq!(container.hosts, Some(vec!["10.0.0.5 db".to_string()]));
    }

    #[test]
    fn each_nodes_memory_is_shown_with_what_its_tasks_reserved() {
        use bollard::models::{NodeDescription, NodeSpec, NodeStatus};
        let node = |id: &str, role, state, gib: i64| Node {
            id: Some(id.into()),
            spec: Some(NodeSpec {
                role: Some(role),
                availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some(format!("host-{id}")),
                resources: Some(ResourceObject {
                    memory_bytes: Some(gib << 30),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        };
        let task = |node: &str, reserved: Option<i64>| Task {
            node_id: Some(node.into()),
            spec: Some(TaskSpec {
                resources: Some(TaskSpecResources {
                    reservations: reserved.map(|bytes| ResourceObject {
                        memory_bytes: Some(bytes),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let nodes = [
            node("b", NodeSpecRoleEnum::WORKER, NodeState::DOWN, 4),
            node("a", NodeSpecRoleEnum::MANAGER, NodeState::READY, 8),
        ];
        let tasks = [
            task("a", Some(1 << 30)),
            task("a", Some(1 << 29)),
            task("a", None),
            task("b", Some(1 << 30)),
        ];
        let shown = node_memory(&nodes, &tasks);
        assert_eq!(
            shown,
            [
                NodeMemory {
                    name: "host-a".into(),
                    manager: true,
                    available: true,
                    memory: 8 << 30,
                    reserved: (1 << 30) + (1 << 29),
                },
                NodeMemory {
                    name: "host-b".into(),
                    manager: false,
                    available: false,
                    memory: 4 << 30,
                    reserved: 1 << 30,
                },
            ]
        );
    }

    #[test]
    fn keys_a_swarm_cannot_honour_are_refused_naming_them() {
        let metadata = Metadata::new("e1");
        let mut bound = runtime(vec![crate::spec::PortMapping {
            container: Port {
                number: 8080,
                protocol: Protocol::Tcp,
            },
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: None,
        }]);
        let error = with_runtime(
            &mut TaskSpecContainerSpec::default(),
            &mut TaskSpec::default(),
            &bound,
            &metadata,
        )
        .unwrap_err();
        assert!(error.contains("127.0.0.1:"), "{error}");
        bound.ports.clear();
        bound.restart = Some(Restart::Always);
        let error = with_runtime(
            &mut TaskSpecContainerSpec::default(),
            &mut TaskSpec::default(),
            &bound,
            &metadata,
        )
        .unwrap_err();
        assert!(error.contains("`restart: always`"), "{error}");
    }

    #[tokio::test]
    async fn log_chunks_split_into_lines_with_their_times() {
        let lines = lines_of(
            &[
                "2026-11-26T10:00:00.123Z one\n",
                "2026-11-26T10:00:01Z two\r\n",
            ],
            true,
        )
        .await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "one");
        assert_eq!(lines[1].text, "two");
        assert!(lines[0].timestamp.is_some());
        let plain = lines_of(&["no time here\n"], false).await;
        assert_eq!(plain[0].text, "no time here");
        assert_eq!(plain[0].timestamp, None);
    }

    #[tokio::test]
    async fn a_node_whose_logs_cannot_be_read_is_named_without_the_frame_bytes() {
        let lines = lines_of(&["\u{1}\0\0Error grabbing logs: node n2 is down\n"], true).await;
        assert_eq!(lines[0].text, "Error grabbing logs: node n2 is down");
    }

    async fn lines_of(chunks: &[&str], timestamps: bool) -> Vec<LogLine> {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|text| {
                Ok(LogOutput::StdOut {
                    message: text.as_bytes().to_vec().into(),
                })
            })
            .collect();
        service_log_lines(
            futures_util::stream::iter(chunks).boxed(),
            timestamps,
            |e| BackendError::operation("read logs", e),
        )
        .map(|line| line.expect("no error"))
        .collect()
        .await
    }

    /// Docker cuts a log line longer than 16 KiB into messages of 16 KiB, each with its own
    /// time and only the last with the newline: the line is still one line.
    #[tokio::test]
    async fn a_long_log_line_split_across_chunks_is_one_line() {
        let t1 = "2026-11-26T10:00:00.000000001Z";
        let t2 = "2026-11-26T10:00:00.000000002Z";
        let (head, tail) = ("x".repeat(16 * 1024), "y".repeat(4000));
        let lines = lines_of(
            &[
                &format!("{t1} {head}"),
                &format!("{t2} {tail}\n"),
                &format!("{t2} short\n"),
            ],
            true,
        )
        .await;
        let texts: Vec<usize> = lines.iter().map(|line| line.text.len()).collect();
        assert_eq!(texts, vec![head.len() + tail.len(), "short".len()]);
        assert_eq!(lines[0].text, format!("{head}{tail}"));
        assert_eq!(lines[0].timestamp, time(t1));
    }

    #[test]
    fn a_task_on_a_lost_node_failed_whatever_it_last_reported() {
        let mut lost = node("n2", "10.0.0.12", None);
        lost.status.as_mut().unwrap().state = Some(NodeState::DOWN);
        let nodes = NodeAddresses::new(&[node("n1", "10.0.0.11", Some("10.0.0.11:2377")), lost]);
        let tasks = [task("2026-11-26T10:00:01Z", TaskState::RUNNING, None)];
        let status = status_of(&service(1, false), &tasks, &nodes);
        assert_eq!(status.state, ServiceState::Failed);
        assert_eq!(
            status.detail.as_deref(),
            Some("its node 10.0.0.12 is down: the swarm lost it")
        );
        assert!(nodes.is_lost(&tasks[0]));
    }
}
