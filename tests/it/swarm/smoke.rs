//! What the Swarm backend relies on, shown on the test swarm through bollard: a service with
//! one replica and restart condition `none` on an attachable overlay network, tasks spread over
//! the nodes, network aliases resolving per network, a host-mode published port answering at
//! the node's address from this namespace, and nothing left after removal. Each test prints
//! its task start latency (`--nocapture`); speed is measured, never asserted.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder,
};

use super::cluster::{TestSwarm, bounded, swarm};
use crate::harness::block_on;

/// The label on everything these tests create, valued per test and process.
const TEST_LABEL: &str = "envctl-test.swarm";
/// How long a task may take to reach the state a test waits for.
const TASK_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn one_replica_with_restart_condition_none_runs_once_on_an_attachable_overlay() {
    let swarm = swarm();
    block_on(async {
        let objects = Objects::new(swarm, "once").await;
        let network = objects.network("net").await;
        // The manager fills in the driver once its allocator has taken the network: a network
        // inspected right after its creation may still read driver "" under load.
        let deadline = Instant::now() + Duration::from_secs(10);
        let inspect = loop {
            let inspect = bounded(
                "inspect network",
                objects.docker.inspect_network(&network, None),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            if inspect.driver.as_deref() != Some("") || Instant::now() >= deadline {
                break inspect;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(inspect.driver.as_deref(), Some("overlay"));
        assert_eq!(inspect.scope.as_deref(), Some("swarm"));
        assert_eq!(inspect.attachable, Some(true));

        let exits = objects
            .service(
                Service::new("exits", swarm.image("envctl-demo/oracle-xe"))
                    .args(&["exit", "3", "--delay", "300ms"])
                    .network(&network, &[]),
            )
            .await;
        let task = objects.wait_for_task(&exits, TaskState::FAILED).await;
        let exit_code = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.exit_code);
        assert_eq!(exit_code, Some(3), "{task:?}");
        // The restart delay is 0: a restart would have made a second task by now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tasks = objects.tasks(&exits).await;
        assert_eq!(
            tasks.len(),
            1,
            "restart condition `none` restarted: {tasks:?}"
        );

        objects.remove_all().await;
    });
}

#[test]
fn tasks_of_several_services_land_on_at_least_two_nodes() {
    let swarm = swarm();
    block_on(async {
        let objects = Objects::new(swarm, "spread").await;
        let network = objects.network("net").await;
        let mut services = Vec::new();
        for index in 0..6 {
            let name = format!("s{index}");
            services.push(
                objects
                    .service(
                        Service::new(&name, swarm.image("envctl-demo/oracle-xe"))
                            .args(&["sleep", "--name", &name])
                            .network(&network, &[]),
                    )
                    .await,
            );
        }
        let mut nodes = BTreeSet::new();
        for service in &services {
            let task = objects.wait_for_task(service, TaskState::RUNNING).await;
            nodes.insert(task.node_id.expect("a running task has a node"));
        }
        eprintln!("6 services ran on {} nodes", nodes.len());
        assert!(nodes.len() >= 2, "every task ran on one node: {nodes:?}");

        objects.remove_all().await;
    });
}

#[test]
fn a_network_alias_resolves_from_another_service_on_the_same_overlay_only() {
    let swarm = swarm();
    block_on(async {
        let objects = Objects::new(swarm, "alias").await;
        let network = objects.network("net").await;
        let other = objects.network("other").await;
        let image = swarm.image("envctl-demo/oracle-xe");
        // On different nodes, so the name resolves and the traffic flows across the overlay.
        let created = Instant::now();
        objects
            .service(
                Service::new("db", image.clone())
                    .args(&["serve", "--name", "db", "--port", "1521"])
                    .network(&network, &["oracle"])
                    .on("node.role==manager"),
            )
            .await;
        let web = objects
            .service(
                Service::new("web", image.clone())
                    .args(&["serve", "--name", "web", "--port", "8080"])
                    .args(&["--requires", "oracle:1521"])
                    .network(&network, &[])
                    .publish(8080)
                    .on("node.role==worker"),
            )
            .await;
        // The same alias from another overlay: `oracle` does not resolve there, and `serve`
        // gives up on a dependency it cannot reach (exit 1).
        let stranger = objects
            .service(
                Service::new("stranger", image)
                    .args(&["serve", "--name", "stranger", "--port", "8080"])
                    .args(&["--requires", "oracle:1521"])
                    .network(&other, &[]),
            )
            .await;

        let (addr, port) = objects.endpoint(&web, 8080).await;
        let body = get_within(addr, port, "/", TASK_LIMIT).await;
        eprintln!(
            "alias: created to answering through the alias in {:?}",
            created.elapsed()
        );
        assert_eq!(body, "web ok\nweb -> oracle:1521 ok\n");

        let failed = objects.wait_for_task(&stranger, TaskState::FAILED).await;
        let exit_code = failed
            .status
            .and_then(|s| s.container_status)
            .and_then(|c| c.exit_code);
        assert_eq!(exit_code, Some(1), "`oracle` resolved from another network");

        objects.remove_all().await;
    });
}

#[test]
fn a_host_mode_published_port_answers_at_the_node_address() {
    let swarm = swarm();
    block_on(async {
        let objects = Objects::new(swarm, "port").await;
        let network = objects.network("net").await;
        let created = Instant::now();
        let web = objects
            .service(
                Service::new("web", swarm.image("envctl-demo/proxy"))
                    .args(&["serve", "--name", "web", "--port", "8080"])
                    .network(&network, &[])
                    .publish(8080)
                    .on("node.role==worker"),
            )
            .await;
        let task = objects.wait_for_task(&web, TaskState::RUNNING).await;
        let running = created.elapsed();
        let (addr, port) = objects.endpoint(&web, 8080).await;
        let manager = swarm.nodes[0].addr.parse::<std::net::IpAddr>().unwrap();
        assert_ne!(
            addr, manager,
            "placed on a worker, yet published at the manager"
        );
        let body = get_within(addr, port, "/health", TASK_LIMIT).await;
        assert_eq!(body, "ok\n");
        eprintln!(
            "port: created to task running in {running:?}, to answering at {addr}:{port} in {:?}",
            created.elapsed()
        );
        let ports = task
            .status
            .and_then(|s| s.port_status)
            .and_then(|p| p.ports)
            .unwrap_or_default();
        assert!(
            ports
                .iter()
                .all(|p| p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST)),
            "{ports:?}"
        );

        objects.remove_all().await;
    });
}

/// A service for [`Objects::service`]: one replica, restart condition `none` (delay 0, so a
/// restart would show at once), DNS round robin, labelled.
struct Service {
    name: String,
    image: String,
    args: Vec<String>,
    networks: Vec<NetworkAttachmentConfig>,
    ports: Vec<EndpointPortConfig>,
    constraints: Vec<String>,
}

impl Service {
    fn new(name: &str, image: String) -> Service {
        Service {
            name: name.to_string(),
            image,
            args: Vec::new(),
            networks: Vec::new(),
            ports: Vec::new(),
            constraints: Vec::new(),
        }
    }

    fn args(mut self, args: &[&str]) -> Service {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn network(mut self, network: &str, aliases: &[&str]) -> Service {
        self.networks.push(NetworkAttachmentConfig {
            target: Some(network.to_string()),
            aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
            ..Default::default()
        });
        self
    }

    /// Publishes `port` in host mode on a port the node picks.
    fn publish(mut self, port: i64) -> Service {
        self.ports.push(EndpointPortConfig {
            target_port: Some(port),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        });
        self
    }

    fn on(mut self, constraint: &str) -> Service {
        self.constraints.push(constraint.to_string());
        self
    }
}

/// What one test created on the swarm, found by its label; [`Objects::remove_all`] removes it
/// and asserts that nothing is left on any node, and dropping it removes it too (a failed test).
struct Objects {
    swarm: &'static TestSwarm,
    docker: Docker,
    /// `sw-TEST-PID`: the prefix of every name and the value of [`TEST_LABEL`].
    tag: String,
    removed: bool,
}

impl Objects {
    async fn new(swarm: &'static TestSwarm, test: &str) -> Objects {
        Objects {
            swarm,
            docker: swarm.client().await,
            tag: format!("sw-{test}-{}", std::process::id()),
            removed: false,
        }
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(TEST_LABEL.to_string(), self.tag.clone())])
    }

    fn filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{TEST_LABEL}={}", self.tag)],
        )])
    }

    /// An attachable overlay network; returns its id.
    async fn network(&self, name: &str) -> String {
        let request = NetworkCreateRequest {
            name: format!("{}-{name}", self.tag),
            driver: Some("overlay".to_string()),
            attachable: Some(true),
            labels: Some(self.labels()),
            ..Default::default()
        };
        let created = bounded("create network", self.docker.create_network(request))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        created.id
    }

    /// Creates the service; returns its id.
    async fn service(&self, service: Service) -> String {
        let spec = ServiceSpec {
            name: Some(format!("{}-{}", self.tag, service.name)),
            labels: Some(self.labels()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(service.image),
                    args: Some(service.args),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    delay: Some(0),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(service.constraints),
                    ..Default::default()
                }),
                networks: Some(service.networks),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(service.ports),
            }),
            ..Default::default()
        };
        let created = bounded("create service", self.docker.create_service(spec, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        created.id.expect("a created service has an id")
    }

    async fn tasks(&self, service: &str) -> Vec<Task> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        bounded("list tasks", self.docker.list_tasks(Some(options)))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The service's task once it is in `state`; fails the test when it gets to another final
    /// state or takes over [`TASK_LIMIT`].
    async fn wait_for_task(&self, service: &str, state: TaskState) -> Task {
        let deadline = Instant::now() + TASK_LIMIT;
        loop {
            let tasks = self.tasks(service).await;
            if let Some(task) = tasks.iter().find(|t| task_state(t) == Some(state)) {
                return task.clone();
            }
            let ended = tasks.iter().find(|t| {
                matches!(
                    task_state(t),
                    Some(TaskState::FAILED | TaskState::REJECTED | TaskState::COMPLETE)
                )
            });
            if let Some(task) = ended {
                panic!("the task of {service} ended instead of reaching {state:?}: {task:?}");
            }
            assert!(
                Instant::now() < deadline,
                "the task of {service} did not reach {state:?} within {TASK_LIMIT:?}: {tasks:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where this namespace reaches the service's published `target` port: the address of
    /// the node running its task and the port the node picked. The task reports each host-mode
    /// binding twice (IPv4 and IPv6, identical): one is kept.
    async fn endpoint(&self, service: &str, target: i64) -> (std::net::IpAddr, u16) {
        let task = self.wait_for_task(service, TaskState::RUNNING).await;
        let ports: BTreeSet<(i64, i64)> = task
            .status
            .as_ref()
            .and_then(|s| s.port_status.as_ref())
            .and_then(|p| p.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.target_port?, p.published_port?)))
            .collect();
        let published: Vec<i64> = ports
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(published.len(), 1, "port {target} of {service}: {ports:?}");
        let node_id = task.node_id.expect("a running task has a node");
        let node = bounded("inspect node", self.docker.inspect_node(&node_id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = node
            .status
            .and_then(|s| s.addr)
            .expect("a node has an address");
        (
            addr.parse().expect("a node address is an IP address"),
            published[0] as u16,
        )
    }

    /// Removes this test's services, waits until their containers are gone from every node,
    /// removes its networks, and asserts nothing of it is left.
    async fn remove_all(mut self) {
        self.removed = true;
        let left = self.remove().await;
        assert!(left.is_empty(), "left on the swarm: {left:?}");
    }

    /// What could not be removed, or was still there after the removal.
    async fn remove(&self) -> Vec<String> {
        let mut left = Vec::new();
        let filters = self.filter();
        let services = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        for service in bounded("list services", self.docker.list_services(Some(services)))
            .await
            .unwrap_or_default()
        {
            let id = service.id.unwrap_or_default();
            if let Err(e) = bounded("delete service", self.docker.delete_service(&id)).await {
                left.push(e);
            }
        }
        // `DELETE /services` returns before the tasks' containers are gone, and a network is
        // refused while a container still uses it.
        let containers = self.containers_within(TASK_LIMIT).await;
        left.extend(containers.into_iter().map(|c| format!("container {c}")));
        let networks = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        for network in bounded("list networks", self.docker.list_networks(Some(networks)))
            .await
            .unwrap_or_default()
        {
            let id = network.id.unwrap_or_default();
            let name = network.name.unwrap_or_default();
            if let Err(e) = self.remove_network(&id).await {
                left.push(format!("network {name}: {e}"));
            }
        }
        // Each node drops its copy of an overlay network on its own time.
        let networks = self.node_networks_within(TASK_LIMIT).await;
        left.extend(
            networks
                .into_iter()
                .map(|n| format!("network {n} on a node")),
        );
        left
    }

    /// The names of this test's networks on any node's engine, waiting up to `limit` for them
    /// to go.
    async fn node_networks_within(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let nodes = self.swarm.node_clients().await;
        let filters = HashMap::from([("name".to_string(), vec![self.tag.clone()])]);
        loop {
            let mut names = Vec::new();
            for node in &nodes {
                let options = ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build();
                if let Ok(networks) =
                    bounded("list networks", node.list_networks(Some(options))).await
                {
                    names.extend(networks.into_iter().filter_map(|n| n.name));
                }
            }
            if names.is_empty() || Instant::now() >= deadline {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The names of this test's task containers on any node, waiting up to `limit` for them
    /// to go.
    async fn containers_within(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let nodes = self.swarm.node_clients().await;
        loop {
            let mut names = Vec::new();
            for node in &nodes {
                let filters = HashMap::from([("name".to_string(), vec![self.tag.clone()])]);
                let options = ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build();
                if let Ok(containers) =
                    bounded("list containers", node.list_containers(Some(options))).await
                {
                    names.extend(
                        containers
                            .into_iter()
                            .flat_map(|c| c.names.unwrap_or_default()),
                    );
                }
            }
            if names.is_empty() || Instant::now() >= deadline {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn remove_network(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match bounded("remove network", self.docker.remove_network(id)).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // A test failed inside its runtime: remove from a thread with a runtime of its own.
        let (swarm, tag) = (self.swarm, self.tag.clone());
        let left = std::thread::spawn(move || {
            block_on(async {
                let objects = Objects {
                    swarm,
                    docker: swarm.client().await,
                    tag,
                    removed: true,
                };
                objects.remove().await
            })
        })
        .join()
        .unwrap_or_default();
        if !left.is_empty() {
            eprintln!("warning: left on the test swarm: {left:?}");
        }
    }
}

fn task_state(task: &Task) -> Option<TaskState> {
    task.status.as_ref().and_then(|s| s.state)
}

/// `GET path` at `addr:port` until it answers 200 or `limit` passes; the body.
async fn get_within(addr: std::net::IpAddr, port: u16, path: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let target = SocketAddr::new(addr, port);
    loop {
        let request = path.to_string();
        let answer = tokio::task::spawn_blocking(move || get(target, &request))
            .await
            .expect("the request thread");
        match answer {
            Ok(body) => return body,
            Err(e) if Instant::now() >= deadline => {
                panic!("{target} did not answer GET {path} within {limit:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn get(target: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("answered {response:?}")),
    }
}
