//! The Swarm backend's operations on the test swarm: the claim, an environment's overlay
//! network and services started in dependency order, readiness at the node's address, native
//! health checks, stop and start, and a removal that leaves nothing on any node.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListServicesOptionsBuilder,
};
use envctl::backend::bollard::connect::Origin;
use envctl::backend::swarm::Swarm;
use envctl::backend::{
    Backend, BackendError, Health, IsolationRef, Metadata, ResolvedImage, ServiceEndpoint,
    ServiceRef, ServiceSpec, ServiceState, ServiceStatus,
};
use envctl::naming::codec::Filter;
use envctl::spec::{ImageRef, Port, Probe, Protocol, Ready};

use super::cluster::{TestSwarm, swarm};
use crate::harness::block_on;

/// How long a service may take to reach the state a test waits for.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn swarm_claim_is_taken_while_it_exists_and_free_once_released() {
    let swarm = swarm();
    block_on(async {
        let backend = connect(swarm).await;
        let metadata = metadata("claim");
        let _guard = Guard::new(swarm, &metadata.id);
        backend.claim(&metadata).await.expect("the first claim");
        let again = backend.claim(&metadata).await;
        assert!(
            matches!(&again, Err(BackendError::Taken(id)) if *id == metadata.id),
            "{again:?}"
        );
        backend.release(&metadata.id).await.expect("release");
        backend
            .claim(&metadata)
            .await
            .expect("a claim after release");
        backend.release(&metadata.id).await.expect("release");
        backend.release(&metadata.id).await.expect("release twice");
        assert_eq!(leftovers(swarm, &metadata.id).await, Vec::<String>::new());
    });
}

#[test]
fn swarm_services_start_in_order_answer_through_aliases_stop_start_and_leave_nothing() {
    let swarm = swarm();
    block_on(async {
        let backend = connect(swarm).await;
        let metadata = metadata("chain");
        let guard = Guard::new(swarm, &metadata.id);
        backend.claim(&metadata).await.expect("claim");
        let network = backend
            .create_isolation(&metadata)
            .await
            .expect("create the overlay network");
        let db = spec(
            swarm,
            &metadata,
            "oracle-xe",
            &["serve", "--name", "oracle-xe", "--port", "1521"],
            &["oracle-xe", "oracle"],
            1521,
        );
        let web = spec(
            swarm,
            &metadata,
            "accounting",
            &["serve", "--name", "accounting", "--port", "8080"],
            &["accounting"],
            8080,
        );
        let mut web = web;
        web.command
            .as_mut()
            .unwrap()
            .extend(["--requires".into(), "oracle:1521".into()]);
        web.depends_on = BTreeSet::from(["oracle-xe".to_string()]);
        let db = backend.create_service(&network, &db).await.expect("db");
        let web = backend.create_service(&network, &web).await.expect("web");
        guard.services(&[&db, &web], &network);
        let created = backend.status(&web).await.expect("status");
        assert_eq!(created.state, ServiceState::Pending, "{created:?}");

        let started = Instant::now();
        backend.start_service(&db).await.expect("start db");
        let endpoint = running_endpoint(&backend, &db).await;
        tcp_within(&endpoint, LIMIT).await;
        // The dependent starts once its dependency is ready, as `up` orders them.
        backend.start_service(&web).await.expect("start web");
        let endpoint = running_endpoint(&backend, &web).await;
        let manager = &swarm.nodes[0].addr;
        assert!(
            swarm.nodes.iter().any(|n| n.addr == endpoint.host),
            "{endpoint:?} is at no node's address"
        );
        let body = get_within(&endpoint, LIMIT).await;
        eprintln!(
            "two services in order, until answering through the alias: {:?} (web at {}, \
             manager {manager})",
            started.elapsed(),
            endpoint.host
        );
        assert_eq!(body, "accounting ok\naccounting -> oracle:1521 ok\n");

        backend
            .stop_service(&web, Duration::from_secs(10))
            .await
            .expect("stop web");
        let stopped = wait_for(&backend, &web, |s| s.state == ServiceState::Exited).await;
        assert!(stopped.endpoints.is_empty(), "{stopped:?}");
        backend.start_service(&web).await.expect("start web again");
        let endpoint = running_endpoint(&backend, &web).await;
        assert_eq!(
            get_within(&endpoint, LIMIT).await,
            "accounting ok\naccounting -> oracle:1521 ok\n"
        );

        for service in [&web, &db] {
            backend
                .remove_service(service, Some(Duration::from_secs(10)))
                .await
                .expect("remove service");
        }
        let gone = backend
            .status(&db)
            .await
            .expect("status of a removed service");
        assert_eq!(gone.state, ServiceState::Missing);
        backend
            .remove_isolation(&network)
            .await
            .expect("remove network");
        backend.release(&metadata.id).await.expect("release");
        assert_eq!(leftovers(swarm, &metadata.id).await, Vec::<String>::new());
    });
}

#[test]
fn swarm_exec_probe_holds_the_service_starting_until_it_passes() {
    let swarm = swarm();
    block_on(async {
        let backend = connect(swarm).await;
        let metadata = metadata("health");
        let guard = Guard::new(swarm, &metadata.id);
        backend.claim(&metadata).await.expect("claim");
        let network = backend.create_isolation(&metadata).await.expect("network");
        let mut slow = spec(
            swarm,
            &metadata,
            "slow",
            &["serve", "--name", "slow", "--port", "8080", "--delay", "2s"],
            &["slow"],
            8080,
        );
        slow.command
            .as_mut()
            .unwrap()
            .extend(["--ready-file".into(), "/ready".into()]);
        slow.ready = Ready {
            probes: vec![Probe::Exec(vec![
                "/standin".into(),
                "probe".into(),
                "file".into(),
                "/ready".into(),
            ])],
            timeout: Duration::from_secs(60),
        };
        let slow = backend
            .create_service(&network, &slow)
            .await
            .expect("create");
        guard.services(&[&slow], &network);
        let started = Instant::now();
        backend.start_service(&slow).await.expect("start");
        let starting = wait_for(&backend, &slow, |s| s.state == ServiceState::Running).await;
        assert_eq!(starting.health, Health::Starting, "{starting:?}");
        wait_for(&backend, &slow, |s| s.health == Health::Healthy).await;
        let healthy = started.elapsed();
        eprintln!("exec probe: started to healthy in {healthy:?} (the service waits 2 s)");
        assert!(
            healthy >= Duration::from_secs(2),
            "healthy before it was ready"
        );

        backend
            .remove_service(&slow, None)
            .await
            .expect("remove service");
        backend.remove_isolation(&network).await.expect("network");
        backend.release(&metadata.id).await.expect("release");
        assert_eq!(leftovers(swarm, &metadata.id).await, Vec::<String>::new());
    });
}

#[test]
fn swarm_wait_exit_returns_the_exit_code_of_the_task() {
    let swarm = swarm();
    block_on(async {
        let backend = connect(swarm).await;
        let metadata = metadata("exit");
        let guard = Guard::new(swarm, &metadata.id);
        backend.claim(&metadata).await.expect("claim");
        let network = backend.create_isolation(&metadata).await.expect("network");
        let mut job = spec(
            swarm,
            &metadata,
            "migrate",
            &["exit", "3", "--delay", "500ms"],
            &["migrate"],
            8080,
        );
        job.runtime.ports.clear();
        job.ready = Ready {
            probes: vec![Probe::Exit(0)],
            timeout: LIMIT,
        };
        let job = backend
            .create_service(&network, &job)
            .await
            .expect("create");
        guard.services(&[&job], &network);
        backend.start_service(&job).await.expect("start");
        let code = tokio::time::timeout(LIMIT, backend.wait_exit(&job))
            .await
            .expect("the task ends")
            .expect("wait_exit");
        assert_eq!(code, 3);
        let status = backend.status(&job).await.expect("status");
        assert_eq!(
            (status.state, status.exit_code),
            (ServiceState::Exited, Some(3))
        );

        backend.remove_service(&job, None).await.expect("remove");
        backend.remove_isolation(&network).await.expect("network");
        backend.release(&metadata.id).await.expect("release");
        assert_eq!(leftovers(swarm, &metadata.id).await, Vec::<String>::new());
    });
}

async fn connect(swarm: &TestSwarm) -> Swarm {
    Swarm::connect(&swarm.manager, &Origin::DockerHost)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Metadata of a test environment whose id is unique to this test and process.
fn metadata(test: &str) -> Metadata {
    let mut metadata = Metadata::new(format!("swb-{test}-{}", std::process::id()));
    metadata.environment = Some(format!("swb-{test}"));
    metadata.run = Some(format!("run-{test}"));
    metadata
}

/// A service of the demo image from the swarm's registry, publishing `port`, ready on tcp.
fn spec(
    swarm: &TestSwarm,
    metadata: &Metadata,
    service: &str,
    command: &[&str],
    aliases: &[&str],
    port: u16,
) -> ServiceSpec {
    let reference = swarm.image("envctl-demo/oracle-xe");
    let (repository, tag) = reference.rsplit_once(':').expect("repository:tag");
    ServiceSpec {
        service: service.to_string(),
        image: ResolvedImage {
            reference: ImageRef {
                repository: repository.to_string(),
                tag: tag.to_string(),
            },
            digest: None,
            healthcheck: None,
        },
        command: Some(command.iter().map(|c| c.to_string()).collect()),
        env: Vec::new(),
        runtime: envctl::spec::Runtime {
            ports: vec![envctl::spec::PortMapping::random(Port {
                number: port,
                protocol: Protocol::Tcp,
            })],
            ..Default::default()
        },
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        address: None,
        depends_on: BTreeSet::new(),
        ready: Ready {
            probes: vec![Probe::Tcp(port)],
            timeout: LIMIT,
        },
        reference: None,
        metadata: metadata.clone(),
    }
}

async fn wait_for(
    backend: &Swarm,
    service: &ServiceRef,
    done: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        let status = backend.status(service).await.expect("status");
        if done(&status) {
            return status;
        }
        assert!(
            !matches!(status.state, ServiceState::Failed | ServiceState::Missing),
            "{}: {status:?}",
            service.name
        );
        assert!(
            Instant::now() < deadline,
            "{} not there within {LIMIT:?}: {status:?}",
            service.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service's one published endpoint once its task runs.
async fn running_endpoint(backend: &Swarm, service: &ServiceRef) -> ServiceEndpoint {
    let status = wait_for(backend, service, |s| {
        s.state == ServiceState::Running && !s.endpoints.is_empty()
    })
    .await;
    assert_eq!(status.endpoints.len(), 1, "{status:?}");
    status.endpoints[0].clone()
}

fn address(endpoint: &ServiceEndpoint) -> SocketAddr {
    SocketAddr::new(
        endpoint.host.parse().expect("a node address"),
        endpoint.port,
    )
}

/// A TCP connect to the endpoint succeeds within `limit`: a refused connection is "not yet".
async fn tcp_within(endpoint: &ServiceEndpoint, limit: Duration) {
    let target = address(endpoint);
    let deadline = Instant::now() + limit;
    loop {
        let connected = tokio::task::spawn_blocking(move || {
            TcpStream::connect_timeout(&target, Duration::from_secs(1))
        })
        .await
        .expect("connect thread");
        match connected {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{target} refused connections for {limit:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_within(endpoint: &ServiceEndpoint, limit: Duration) -> String {
    let target = address(endpoint);
    let deadline = Instant::now() + limit;
    loop {
        let answer = tokio::task::spawn_blocking(move || http_get(target))
            .await
            .expect("request thread");
        match answer {
            Ok(body) => return body,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{target} did not answer within {limit:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_get(target: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: swarm\r\nConnection: close\r\n\r\n")
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

/// What envctl left of environment `id`: services, networks and configs on the manager, task
/// containers on any node (waiting a while for them, as their removal is asynchronous).
pub(super) async fn leftovers(swarm: &TestSwarm, id: &str) -> Vec<String> {
    let docker = swarm.client().await;
    let filters = HashMap::from([("label".to_string(), vec![Filter::Id(id.into()).to_docker()])]);
    let mut left = Vec::new();
    let services = ListServicesOptionsBuilder::default()
        .filters(&filters)
        .build();
    for service in docker
        .list_services(Some(services))
        .await
        .unwrap_or_default()
    {
        left.push(format!("service {:?}", service.spec.and_then(|s| s.name)));
    }
    let networks = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    for network in docker
        .list_networks(Some(networks))
        .await
        .unwrap_or_default()
    {
        left.push(format!("network {:?}", network.name));
    }
    let configs = ListConfigsOptionsBuilder::default()
        .filters(&filters)
        .build();
    for config in docker.list_configs(Some(configs)).await.unwrap_or_default() {
        left.push(format!("config {:?}", config.spec.and_then(|s| s.name)));
    }
    let deadline = Instant::now() + LIMIT;
    let nodes = swarm.node_clients().await;
    let by_name = HashMap::from([("name".to_string(), vec![format!("_{id}")])]);
    loop {
        let mut containers = Vec::new();
        for node in &nodes {
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&by_name)
                .build();
            for container in node
                .list_containers(Some(options))
                .await
                .unwrap_or_default()
            {
                containers.extend(container.names.unwrap_or_default());
            }
        }
        if containers.is_empty() || Instant::now() >= deadline {
            left.extend(containers.into_iter().map(|c| format!("container {c}")));
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes a test environment's services, network and claim when the test fails.
struct Guard {
    swarm: &'static TestSwarm,
    id: String,
    created: std::sync::Mutex<(Vec<ServiceRef>, Option<IsolationRef>)>,
}

impl Guard {
    fn new(swarm: &'static TestSwarm, id: &str) -> Guard {
        Guard {
            swarm,
            id: id.to_string(),
            created: std::sync::Mutex::new((Vec::new(), None)),
        }
    }

    fn services(&self, services: &[&ServiceRef], network: &IsolationRef) {
        let mut created = self.created.lock().unwrap();
        created.0.extend(services.iter().map(|s| (*s).clone()));
        created.1 = Some(network.clone());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (services, network) = std::mem::take(&mut *self.created.lock().unwrap());
        let (swarm, id) = (self.swarm, self.id.clone());
        // The test's runtime is unwinding: clean up from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            block_on(async {
                let backend = connect(swarm).await;
                for service in &services {
                    let _ = backend.remove_service(service, None).await;
                }
                if let Some(network) = &network {
                    let _ = backend.remove_isolation(network).await;
                }
                let _ = backend.release(&id).await;
            })
        })
        .join();
    }
}
