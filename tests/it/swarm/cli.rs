//! envctl's commands with `--backend swarm` against the test swarm, through the binary: the
//! demo environment spread over the nodes and answering through the proxy's published port,
//! several environments at once and isolated, `run`, `stop`/`start`, `logs`, `ls`, `down`
//! leaving nothing on any node, an image only on the manager refused up front, and the Docker
//! backend leaving the swarm's objects alone.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListConfigsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
};
use envctl::naming::codec::Filter;

use super::backend::leftovers;
use super::cluster::{TestSwarm, bounded, swarm};
use crate::harness::{block_on, unique};
use crate::support::{EnvDir, Envctl, Run, wait_until};

/// How long a request through the chain may take to answer once `up` said it is ready.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// The demo environment on the swarm: the images from the swarm's registry (no `build:`, which
/// a multi-node swarm cannot do); a probed port is published (accounting's), or probed by the
/// swarm itself as a health check (activemq's).
fn demo(swarm: &TestSwarm, name: &str) -> String {
    let image = |service: &str| swarm.image(&format!("envctl-demo/{service}"));
    format!(
        r#"name: {name}
services:
  oracle-xe:
    image: {oracle}
    command: [serve, --name, oracle-xe, --port, "1521", --delay, 1s]
    ports: [1521]
    ready:
      tcp: 1521
  activemq:
    image: {activemq}
    command: [serve, --name, activemq, --port, "61616", --delay, 1s]
    ready:
      exec: [/standin, probe, tcp, "61616"]
  accounting:
    image: {accounting}
    command: [serve, --name, accounting, --delay, 1s, --requires, "oracle:1521", --requires, "activemq:61616"]
    ports: [8080]
    links: [oracle-xe:oracle, activemq]
    ready:
      http: 8080/health
  proxy:
    image: {proxy}
    command: [serve, --name, proxy, --requires, "accounting:8080", --forward, "accounting:8080"]
    ports: [8080]
    links: [accounting]
    ready:
      http: 8080/health
"#,
        oracle = image("oracle-xe"),
        activemq = image("activemq"),
        accounting = image("accounting"),
        proxy = image("proxy"),
    )
}

/// One database and one client that needs `oracle:1521`.
fn pair(swarm: &TestSwarm, name: &str, with_database: bool) -> String {
    let image = swarm.image("envctl-demo/oracle-xe");
    let database = match with_database {
        true => format!(
            r#"  oracle-xe:
    image: {image}
    command: [serve, --name, oracle-xe, --port, "1521"]
    ports: [1521]
    ready:
      tcp: 1521
"#
        ),
        false => String::new(),
    };
    let links = match with_database {
        true => "    links: [oracle-xe:oracle]\n",
        false => "",
    };
    format!(
        r#"name: {name}
services:
{database}  app:
    image: {image}
    command: [serve, --name, app, --port, "8080", --requires, "oracle:1521"]
    ports: [8080]
{links}    ready:
      tcp: 8080
      timeout: 25s
"#
    )
}

/// envctl on the test swarm, the file of environment `name` in its own directory.
struct SwarmEnv {
    swarm: &'static TestSwarm,
    name: String,
    dir: EnvDir,
}

impl SwarmEnv {
    fn new(swarm: &'static TestSwarm, test: &str, text: impl Fn(&str) -> String) -> SwarmEnv {
        let name = unique(&format!("sw-{test}"));
        let dir = EnvDir::new().with(&format!("{name}.yaml"), &text(&name));
        SwarmEnv { swarm, name, dir }
    }

    fn envctl(&self) -> Envctl {
        Envctl::new()
            .envdir(self.dir.path())
            .env("DOCKER_HOST", &self.swarm.manager)
            .env("ENVCTL_BACKEND", "swarm")
    }

    fn up(&self) -> serde_json::Value {
        let up = self
            .envctl()
            .args(["up", &self.name, "-o", "json", "--timeout", "120s"])
            .run();
        up.success();
        up.json()
    }
}

impl Drop for SwarmEnv {
    fn drop(&mut self) {
        let _ = self
            .envctl()
            .args(["down", "--all", "--environment", &self.name, "--yes"])
            .run();
    }
}

fn id_of(up: &serde_json::Value) -> String {
    up["id"].as_str().expect("an id").to_string()
}

/// `host:port` of a service's published port, from `up -o json` or `start -o json`.
fn endpoint(document: &serde_json::Value, service: &str, port: u64) -> SocketAddr {
    let services = document["services"].as_array().expect("services");
    let found = services
        .iter()
        .find(|s| s["service"] == service)
        .and_then(|s| s["ports"].as_array())
        .and_then(|ports| ports.iter().find(|p| p["container_port"] == port))
        .unwrap_or_else(|| panic!("no port {port} of `{service}` in {document}"));
    let host = found["host"].as_str().expect("host");
    let port = found["host_port"].as_u64().expect("host_port");
    format!("{host}:{port}").parse().expect("an address")
}

fn get(target: SocketAddr) -> Result<String, String> {
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

/// The chain's answer through the proxy, retried briefly: `up` waited for readiness already.
fn chain_answers(target: SocketAddr) -> String {
    let deadline = Instant::now() + ANSWER_LIMIT;
    loop {
        match get(target) {
            Ok(body) => return body,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the proxy at {target} did not answer: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The images the environment's services run, as the swarm has them.
async fn images_of(swarm: &TestSwarm, id: &str) -> Vec<String> {
    let docker = swarm.client().await;
    let filters = HashMap::from([("label".to_string(), vec![Filter::Id(id.into()).to_docker()])]);
    let services = bounded(
        "list services",
        docker.list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    services
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.image)
        .collect()
}

/// The distinct nodes the environment's running tasks are on.
async fn nodes_of(swarm: &TestSwarm, id: &str) -> BTreeSet<String> {
    let docker = swarm.client().await;
    let filters = HashMap::from([("label".to_string(), vec![Filter::Id(id.into()).to_docker()])]);
    let services = bounded(
        "list services",
        docker.list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = services.into_iter().filter_map(|s| s.id).collect();
    let filters = HashMap::from([
        ("service".to_string(), ids),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    let tasks = bounded(
        "list tasks",
        docker.list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tasks.into_iter().filter_map(|t| t.node_id).collect()
}

#[test]
fn swarm_demo_spreads_over_nodes_answers_through_the_proxy_stops_starts_and_down_leaves_nothing() {
    let swarm = swarm();
    let env = SwarmEnv::new(swarm, "demo", |name| demo(swarm, name));
    let up = env.up();
    let id = id_of(&up);
    let proxy = endpoint(&up, "proxy", 8080);
    let body = chain_answers(proxy);
    assert!(body.contains("proxy -> accounting ok"), "{body}");
    assert!(body.contains("accounting -> oracle:1521 ok"), "{body}");
    assert!(body.contains("accounting -> activemq:61616 ok"), "{body}");
    // The proxy answers at the address of the node that runs it, one of the swarm's.
    let addrs: Vec<&str> = swarm.nodes.iter().map(|n| n.addr.as_str()).collect();
    assert!(addrs.contains(&proxy.ip().to_string().as_str()), "{proxy}");
    let nodes = block_on(nodes_of(swarm, &id));
    assert!(nodes.len() >= 2, "every task on one node: {nodes:?}");
    // Every node runs exactly the image the registry had: pinned to its digest.
    let images = block_on(images_of(swarm, &id));
    assert_eq!(images.len(), 4, "{images:?}");
    for image in &images {
        let (name, digest) = image.split_once('@').unwrap_or_else(|| panic!("{image}"));
        assert!(name.starts_with(&swarm.registry), "{image}");
        assert!(digest.starts_with("sha256:"), "{image}");
    }

    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    ls.success();
    let listed = ls.json();
    let mine = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap_or_else(|| panic!("`ls` does not list {id}: {listed}"));
    assert_eq!(mine["state"], "ready", "{mine}");

    let ls = env.envctl().args(["ls"]).run();
    ls.success().stdout_has(&id).stderr_has(
        "has no traffic counters: idleness is judged from envctl commands, leases and --ttl only",
    );
    let status = env.envctl().args(["status", &id]).run();
    status.success().stdout_has("running");
    let logs = env
        .envctl()
        .args(["logs", &id, "proxy", "--tail", "20"])
        .run();
    logs.success();
    assert!(!logs.stdout().trim().is_empty(), "no log lines of proxy");

    // The swarm's objects are not the Docker backend's environments, on the manager either.
    let docker_ls = Envctl::new()
        .env("DOCKER_HOST", &swarm.manager)
        .args(["ls", "-o", "json"])
        .run();
    docker_ls.success();
    assert!(
        !docker_ls.stdout().contains(&id),
        "the Docker backend lists the swarm's environment: {}",
        docker_ls.stdout()
    );

    let docker_reap = Envctl::new()
        .env("DOCKER_HOST", &swarm.manager)
        .args([
            "reap",
            "--dry-run",
            "--idle",
            "1s",
            "--max-age",
            "1s",
            "-o",
            "json",
        ])
        .run();
    docker_reap.success();
    assert!(
        !docker_reap.stdout().contains(&id),
        "the Docker reaper would act on the swarm's environment: {}",
        docker_reap.stdout()
    );
    let stop = env.envctl().args(["stop", &id]).run();
    stop.success();
    let said = format!("{}{}", stop.stdout(), stop.stderr());
    assert!(
        said.contains(&format!(
            "stopped {id} (swarm: containers are not kept; `envctl start {id}` runs fresh ones)"
        )),
        "{said}"
    );
    let stopped = env.envctl().args(["ls", "-o", "json"]).run().json();
    let state = stopped
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id.as_str()))
        .map(|e| e["state"].clone());
    assert_eq!(state, Some(serde_json::json!("stopped")), "{stopped}");
    let start = env
        .envctl()
        .args(["start", &id, "-o", "json", "--timeout", "120s"])
        .run();
    start.success();
    let body = chain_answers(endpoint(&start.json(), "proxy", 8080));
    assert!(body.contains("accounting -> oracle:1521 ok"), "{body}");

    env.envctl().args(["down", &id]).run().success();
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
}

#[test]
fn swarm_three_environments_at_once_are_isolated_from_each_other() {
    let swarm = swarm();
    let envs: Vec<SwarmEnv> = (1..=3)
        .map(|n| SwarmEnv::new(swarm, &format!("iso{n}"), |name| pair(swarm, name, true)))
        .collect();
    let ups: Vec<Run> = std::thread::scope(|scope| {
        let running: Vec<_> = envs
            .iter()
            .map(|env| {
                scope.spawn(|| {
                    env.envctl()
                        .args(["up", &env.name, "-o", "json", "--timeout", "120s"])
                        .run()
                })
            })
            .collect();
        running.into_iter().map(|r| r.join().expect("up")).collect()
    });
    let mut ids = BTreeSet::new();
    for up in &ups {
        up.success();
        ids.insert(id_of(&up.json()));
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    // `oracle` resolves in each environment's own network only: a client without a database of
    // its own finds none, although three environments beside it have one.
    let lonely = SwarmEnv::new(swarm, "lonely", |name| pair(swarm, name, false));
    let up = lonely
        .envctl()
        .args(["up", &lonely.name, "--timeout", "60s"])
        .run();
    up.code(2);
    for (env, id) in envs.iter().zip(&ids) {
        env.envctl().args(["down", id]).run().success();
    }
    for id in &ids {
        assert_eq!(block_on(leftovers(swarm, id)), Vec::<String>::new());
    }
}

#[test]
fn swarm_run_exits_with_the_commands_code_and_removes_the_environment() {
    let swarm = swarm();
    let env = SwarmEnv::new(swarm, "run", |name| pair(swarm, name, true));
    // The command sees where the published port answers: at the address of a node.
    let passing = env
        .envctl()
        .args([
            "run",
            &env.name,
            "--timeout",
            "120s",
            "--",
            "sh",
            "-c",
            "echo \"id=$ENVCTL_ID\"; echo \"app=$ENVCTL_APP_8080\"",
        ])
        .run();
    passing.success();
    let app = passing
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("app=").map(str::to_string))
        .expect("the command printed the variable");
    let host = app
        .rsplit_once(':')
        .map(|(host, _)| host)
        .unwrap_or_default();
    assert!(
        swarm.nodes.iter().any(|n| n.addr == host),
        "ENVCTL_APP_8080={app} is not at a node's address"
    );
    let id = passing
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("id=").map(str::to_string))
        .expect("the command printed its id");
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());

    let failing = env
        .envctl()
        .args([
            "run",
            &env.name,
            "--timeout",
            "120s",
            "--",
            "sh",
            "-c",
            "echo \"id=$ENVCTL_ID\"; exit 3",
        ])
        .run();
    failing.code(3);
    let id = failing
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("id=").map(str::to_string))
        .expect("the command printed its id");
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
}

#[test]
fn swarm_image_only_on_the_manager_is_refused_before_anything_is_created() {
    let swarm = swarm();
    // Tagged on the manager under the registry's name, never pushed.
    let only_here = format!(
        "{}/envctl-only-on-manager:{}",
        swarm.registry,
        std::process::id()
    );
    block_on(async {
        let docker = swarm.client().await;
        let (repo, tag) = only_here.rsplit_once(':').expect("repo:tag");
        let options = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        bounded(
            "tag image",
            docker.tag_image("envctl-demo/oracle-xe", Some(options)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    });
    let env = SwarmEnv::new(swarm, "local", |name| {
        format!(
            "name: {name}\nservices:\n  app:\n    image: {only_here}\n    command: [serve, --port, \"8080\"]\n    ports: [8080]\n    ready:\n      tcp: 8080\n"
        )
    });
    let up = env.envctl().args(["up", &env.name]).run();
    up.code(2)
        .stderr_has("service `app`: failed to run image")
        .stderr_has("on a swarm of 3 nodes: it is only in the manager's local store")
        .stderr_has("push it to a registry");
    // Nothing of the environment exists: no claim, no network, no service.
    block_on(async {
        let docker = swarm.client().await;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![Filter::Environment(env.name.clone()).to_docker()],
        )]);
        let configs = bounded(
            "list configs",
            docker.list_configs(Some(
                ListConfigsOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(configs.is_empty(), "{configs:?}");
        let services = bounded(
            "list services",
            docker.list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            )),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(services.is_empty(), "{services:?}");
        let _ = docker
            .remove_image(
                &only_here,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    });
}

#[test]
fn swarm_update_says_it_cannot_replace_in_place_and_changes_nothing() {
    let swarm = swarm();
    let env = SwarmEnv::new(swarm, "update", |name| pair(swarm, name, true));
    let up = env.up();
    let id = id_of(&up);
    let update = env
        .envctl()
        .args(["update", &id, "app@latest", "-f"])
        .arg_file(&env)
        .run();
    update
        .code(2)
        .stderr_has("the swarm backend cannot replace services in place")
        .stderr_has(&format!("envctl down {id}"));
    let status = env.envctl().args(["ls", "-o", "json"]).run().json();
    let state = status
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id.as_str()))
        .map(|e| e["state"].clone());
    assert_eq!(state, Some(serde_json::json!("ready")), "{status}");
    env.envctl().args(["down", &id]).run().success();
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
}

trait ArgFile {
    fn arg_file(self, env: &SwarmEnv) -> Envctl;
}

impl ArgFile for Envctl {
    fn arg_file(self, env: &SwarmEnv) -> Envctl {
        self.args([env.dir.file(&format!("{}.yaml", env.name))])
    }
}

#[test]
fn swarm_worker_killed_during_up_fails_clearly_and_rolls_back_everything() {
    let name = format!("k{}", std::process::id() % 10_000_000);
    let swarm = super::cluster::private(&name, 2).unwrap_or_else(|e| panic!("{e}"));
    let swarm: &'static TestSwarm = Box::leak(Box::new(swarm));
    let cleanup = scopeguard(swarm);
    // Slow enough that the worker dies while envctl still waits for readiness; one service per
    // node at least, as Swarm spreads them.
    let env = SwarmEnv::new(swarm, "killed", |name| {
        let image = swarm.image("envctl-demo/oracle-xe");
        let mut text = format!("name: {name}\nservices:\n");
        for service in ["one", "two", "three", "four"] {
            text.push_str(&format!(
                "  {service}:\n    image: {image}\n    command: [serve, --port, \"8080\", --delay, 20s]\n    ports: [8080]\n    ready:\n      tcp: 8080\n      timeout: 60s\n"
            ));
        }
        text
    });
    let running = env
        .envctl()
        .args(["up", &env.name, "--timeout", "90s"])
        .spawn();
    // Once the tasks run, the worker's engine dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on = block_on(nodes_of_environment(swarm, &env.name));
        if on.len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tasks never ran on both nodes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed = std::process::Command::new("bash")
        .arg(crate::support::root().join("tests/swarm/swarm.sh"))
        .args(["kill", &swarm.name, "2"])
        .status()
        .expect("swarm.sh kill");
    assert!(killed.success());
    let up = running.wait_within(Duration::from_secs(240));
    up.code(2);
    let node = &swarm.nodes[1].addr;
    up.stderr_has(&format!("its node {node} is down: the swarm lost it"));
    // Everything the start created is gone from the manager: services, network, configs.
    let left = block_on(leftovers_of_environment(swarm, &env.name));
    assert_eq!(left, Vec::<String>::new(), "{}", up.stderr());
    drop(env);
    drop(cleanup);
}

/// Tears a private swarm down when the test ends, passing or failing.
struct SwarmDown(&'static TestSwarm);

fn scopeguard(swarm: &'static TestSwarm) -> SwarmDown {
    SwarmDown(swarm)
}

impl Drop for SwarmDown {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("could not remove test swarm `{}`: {e}", self.0.name);
        }
    }
}

/// The nodes running tasks of environment `name`.
async fn nodes_of_environment(swarm: &TestSwarm, name: &str) -> BTreeSet<String> {
    let docker = swarm.client().await;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![Filter::Environment(name.into()).to_docker()],
    )]);
    let services = docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    let ids: Vec<String> = services.into_iter().filter_map(|s| s.id).collect();
    if ids.is_empty() {
        return BTreeSet::new();
    }
    let filters = HashMap::from([("service".to_string(), ids)]);
    let tasks = docker
        .list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        ))
        .await
        .unwrap_or_default();
    tasks
        .into_iter()
        .filter(|t| {
            t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING)
        })
        .filter_map(|t| t.node_id)
        .collect()
}

/// Services, networks and configs of environment `name` on the manager.
async fn leftovers_of_environment(swarm: &TestSwarm, name: &str) -> Vec<String> {
    let docker = swarm.client().await;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![Filter::Environment(name.into()).to_docker()],
    )]);
    let mut left = Vec::new();
    for service in docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default()
    {
        left.push(format!("service {:?}", service.spec.and_then(|s| s.name)));
    }
    for network in docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default()
    {
        left.push(format!("network {:?}", network.name));
    }
    for config in docker
        .list_configs(Some(
            ListConfigsOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default()
    {
        left.push(format!("config {:?}", config.spec.and_then(|s| s.name)));
    }
    left
}

#[test]
fn swarm_named_volume_is_local_to_the_node_labelled_and_not_the_docker_backends() {
    let swarm = swarm();
    let env = SwarmEnv::new(swarm, "volume", |name| {
        let image = swarm.image("envctl-demo/oracle-xe");
        format!(
            "name: {name}\nvolumes:\n  data: {{}}\nservices:\n  db:\n    image: {image}\n    command: [serve, --port, \"1521\"]\n    ports: [1521]\n    volumes: [data:/data]\n    ready:\n      tcp: 1521\n"
        )
    });
    let up = env.up();
    let id = id_of(&up);
    let volume = format!("envctl_{id}_data");
    // The node that runs the task made the volume, with envctl's labels and the backend's.
    let holders: Vec<&super::cluster::SwarmNode> = swarm
        .nodes
        .iter()
        .filter(|node| {
            block_on(async {
                let docker = super::cluster::connect(&node.host).await.expect("node");
                docker.inspect_volume(&volume).await.is_ok_and(|v| {
                    v.labels.get("io.envctl.backend").map(String::as_str) == Some("swarm")
                })
            })
        })
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "volume {volume} on {} nodes",
        holders.len()
    );
    // That node's Docker backend leaves it to the swarm.
    let docker_ls = Envctl::new()
        .env("DOCKER_HOST", &holders[0].host)
        .args(["ls", "-o", "json"])
        .run();
    docker_ls.success();
    assert!(!docker_ls.stdout().contains(&id), "{}", docker_ls.stdout());
    env.envctl().args(["down", &id]).run().success();
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
    // Removed where the manager reaches it; a worker's copy stays (README, limits): the test
    // removes it.
    block_on(async {
        for node in &swarm.nodes {
            let docker = super::cluster::connect(&node.host).await.expect("node");
            let _ = docker
                .remove_volume(
                    &volume,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
    });
}

#[test]
fn swarm_service_at_ref_takes_the_registrys_tag_starting_with_ref() {
    let swarm = swarm();
    // The registry has a changeset's tag of the image, as CI pushes it.
    // Unique to this process, so a swarm that several test runs share has one match only.
    let tag = format!("ea{:07}8090d", std::process::id());
    let repository = format!("{}/envctl-demo/oracle-xe", swarm.registry);
    block_on(async {
        let docker = swarm.client().await;
        let options = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(&repository)
            .tag(&tag)
            .build();
        bounded(
            "tag image",
            docker.tag_image(&swarm.image("envctl-demo/oracle-xe"), Some(options)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut push = docker.push_image(
            &repository,
            Some(
                bollard::query_parameters::PushImageOptionsBuilder::default()
                    .tag(&tag)
                    .build(),
            ),
            None,
        );
        while let Some(progress) = futures_util::StreamExt::next(&mut push).await {
            progress.unwrap_or_else(|e| panic!("push {repository}:{tag}: {e}"));
        }
        // Only the registry has it now.
        let _ = docker
            .remove_image(
                &format!("{repository}:{tag}"),
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    });
    let env = SwarmEnv::new(swarm, "ref", |name| pair(swarm, name, true));
    let prefix = &tag[..10];
    let up = env
        .envctl()
        .args([
            "up",
            &env.name,
            &format!("app@{prefix}"),
            "-o",
            "json",
            "--timeout",
            "120s",
        ])
        .run();
    up.success();
    let id = id_of(&up.json());
    let ls = env.envctl().args(["ls", "-o", "json"]).run().json();
    let mine = ls
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{ls}"))
        .clone();
    assert_eq!(
        mine["refs"],
        serde_json::json!([format!("app@{tag}")]),
        "{mine}"
    );
    let images = block_on(images_of(swarm, &id));
    assert!(
        images
            .iter()
            .any(|i| i.starts_with(&format!("{repository}:{tag}@sha256:"))),
        "{images:?}"
    );
    env.envctl().args(["down", &id]).run().success();
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
}

/// The environment file as a team writes it for Docker: the database and the proxy publish
/// their ports, the broker and the application do not (nothing outside the environment talks
/// to them), and every service has a `tcp:` or `http:` probe.
fn as_teams_write_it(swarm: &TestSwarm, name: &str) -> String {
    let image = |service: &str| swarm.image(&format!("envctl-demo/{service}"));
    format!(
        r#"name: {name}
services:
  db:
    image: {oracle}
    command: [serve, --name, db, --port, "1521", --delay, 1s]
    ports: [1521]
    ready:
      tcp: 1521
  broker:
    image: {activemq}
    command: [serve, --name, broker, --port, "61616", --delay, 1s]
    ready:
      tcp: 61616
  app:
    image: {accounting}
    command: [serve, --name, app, --delay, 1s, --requires, "oracle:1521", --requires, "activemq:61616"]
    links: [db:oracle, broker:activemq]
    ready:
      http: 8080/health
  proxy:
    image: {proxy}
    command: [serve, --name, proxy, --requires, "accounting:8080", --forward, "accounting:8080"]
    ports: [8080]
    links: [app:accounting]
    ready:
      http: 8080/health
"#,
        oracle = image("oracle-xe"),
        activemq = image("activemq"),
        accounting = image("accounting"),
        proxy = image("proxy"),
    )
}

/// Where the node that runs `service`'s task answers for container port `port`, as the swarm
/// reports the task's host-mode ports: `None` when it publishes no such port.
async fn published_on_node(
    swarm: &TestSwarm,
    id: &str,
    service: &str,
    port: i64,
) -> Option<SocketAddr> {
    let docker = swarm.client().await;
    let filters = HashMap::from([
        (
            "name".to_string(),
            vec![envctl::naming::container_name(service, id)],
        ),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    let tasks = bounded(
        "list tasks",
        docker.list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let nodes = bounded("list nodes", docker.list_nodes(None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tasks.iter().find_map(|task| {
        let published = task
            .status
            .as_ref()?
            .port_status
            .as_ref()?
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.target_port == Some(port))?
            .published_port?;
        let node = nodes.iter().find(|n| n.id == task.node_id)?;
        let addr = node.status.as_ref()?.addr.as_deref()?;
        format!("{addr}:{published}").parse().ok()
    })
}

/// Every `host:host_port` in the `ports` of a document's services.
fn addresses_in(document: &serde_json::Value) -> Vec<SocketAddr> {
    document["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| {
            format!("{}:{}", p["host"].as_str()?, p["host_port"])
                .parse()
                .ok()
        })
        .collect()
}

/// Issue 18: on a swarm, a `tcp:`/`http:` probe of a port the file does not publish had
/// nothing to dial, and `up` waited for its whole `--timeout`.
#[test]
fn swarm_probe_of_an_unpublished_port_passes_through_a_port_only_envctl_sees() {
    let swarm = swarm();
    let env = SwarmEnv::new(swarm, "probe", |name| as_teams_write_it(swarm, name));
    let up = env.up();
    let id = id_of(&up);
    let body = chain_answers(endpoint(&up, "proxy", 8080));
    assert!(body.contains("app -> activemq:61616 ok"), "{body}");
    let nodes = block_on(nodes_of(swarm, &id));
    assert!(nodes.len() >= 2, "every task on one node: {nodes:?}");

    // The swarm publishes the broker's and the application's probed ports for envctl, on the
    // node that runs each task; they answer from here.
    let broker = block_on(published_on_node(swarm, &id, "broker", 61616))
        .expect("the broker's probed port published for envctl");
    let app = block_on(published_on_node(swarm, &id, "app", 8080))
        .expect("the application's probed port published for envctl");
    TcpStream::connect_timeout(&broker, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("the broker's probe port {broker} does not answer: {e}"));

    // Nothing shows them as the environment's endpoints.
    let shown = |document: &serde_json::Value, service: &str| -> Vec<serde_json::Value> {
        document["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["service"] == service))
            .and_then(|s| s["ports"].as_array().cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        shown(&up, "broker"),
        Vec::<serde_json::Value>::new(),
        "{up}"
    );
    assert_eq!(shown(&up, "app"), Vec::<serde_json::Value>::new(), "{up}");
    assert_eq!(shown(&up, "db").len(), 1, "{up}");
    let status = env.envctl().args(["status", &id, "-o", "json"]).run();
    status.success();
    let status = status.json();
    for service in ["broker", "app"] {
        assert_eq!(
            shown(&status, service),
            Vec::<serde_json::Value>::new(),
            "{status}"
        );
    }
    let addresses = addresses_in(&status);
    assert_eq!(addresses.len(), 2, "{status}");
    assert!(
        !addresses.contains(&broker) && !addresses.contains(&app),
        "`status` shows a probe port ({broker}, {app}): {status}"
    );
    env.envctl()
        .args(["port", &id, "broker"])
        .run()
        .code(1)
        .stderr_has("service `broker` of")
        .stderr_has("publishes no ports");
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    ls.success();
    let listed = ls.json();
    let mine = listed
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id.as_str()).cloned())
        .unwrap_or_else(|| panic!("`ls` does not list {id}: {listed}"));
    assert_eq!(mine["state"], "ready", "{mine}");
    let services: Vec<&String> = mine["endpoints"]
        .as_object()
        .map(|endpoints| endpoints.keys().collect())
        .unwrap_or_default();
    assert_eq!(services, ["db", "proxy"], "{mine}");
    let env_vars = env.envctl().args(["env", &id]).run();
    env_vars.success();
    assert!(
        !env_vars.stdout().contains("ENVCTL_BROKER_") && !env_vars.stdout().contains("ENVCTL_APP_"),
        "`env` gives the probe ports: {}",
        env_vars.stdout()
    );

    // They go with the environment.
    env.envctl().args(["down", &id]).run().success();
    assert_eq!(block_on(leftovers(swarm, &id)), Vec::<String>::new());
    assert!(
        TcpStream::connect_timeout(&broker, Duration::from_secs(2)).is_err(),
        "the broker's probe port {broker} still answers after `down`"
    );
}

#[test]
fn swarm_capacity_shows_the_nodes_memory_and_a_mem_limit_is_reserved_on_the_node() {
    let swarm = swarm();
    let image = swarm.image("envctl-demo/oracle-xe");
    let env = SwarmEnv::new(swarm, "cap", |name| {
        format!(
            "name: {name}\nservices:\n  db:\n    image: {image}\n    \
             command: [serve, --name, db, --port, \"1521\"]\n    ports: [1521]\n    \
             ready:\n      tcp: 1521\n    mem_limit: 64m\n"
        )
    });
    let id = id_of(&env.up());
    // The swarm reserves what admission counts the service for.
    let reserved = block_on(async {
        let docker = swarm.client().await;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![Filter::Id(id.clone()).to_docker()],
        )]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = bounded("list services", docker.list_services(Some(options)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        services
            .into_iter()
            .map(|s| {
                let resources = s.spec?.task_template?.resources?;
                resources.reservations?.memory_bytes
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(reserved, [Some(64 << 20)]);
    // `capacity` shows every node with its memory, and the reservation on one of them.
    let shown = env.envctl().args(["capacity", "-o", "json"]).run();
    let nodes = shown.success().json()["nodes"].as_array().cloned().unwrap();
    assert_eq!(nodes.len(), swarm.nodes.len(), "{nodes:?}");
    assert!(
        nodes.iter().all(|n| n["memory"].as_u64() > Some(0)),
        "{nodes:?}"
    );
    let total: u64 = nodes
        .iter()
        .filter_map(|n| n["reserved_memory"].as_u64())
        .sum();
    assert!(total >= 64 << 20, "{nodes:?}");
    let text = env.envctl().args(["capacity"]).run();
    assert!(
        text.success().stdout().contains("\nNODE "),
        "{}",
        text.stdout()
    );
    drop(env);
    swarm_capacity_admits_whole_environments_through_one_queue_on_the_swarm(swarm);
}

/// Clears the swarm's capacity when the test ends, however it ends: every other test on the
/// swarm would be admitted under it.
struct ClearCapacity<'a>(&'a SwarmEnv);

impl Drop for ClearCapacity<'_> {
    fn drop(&mut self) {
        let _ = self.0.envctl().args(["capacity", "--clear"]).run();
    }
}

/// A capacity set on the swarm: a start that does not fit waits in the swarm's queue (a
/// config every client sees), gives up with exit 2 and nothing created, and is admitted once
/// an environment goes. Other tests use this swarm meanwhile: their environments reserve
/// nothing (no `mem_limit`, no default memory) and go before this test's low-priority waiters,
/// so only this test's environments wait.
fn swarm_capacity_admits_whole_environments_through_one_queue_on_the_swarm(
    swarm: &'static TestSwarm,
) {
    let image = swarm.image("envctl-demo/oracle-xe");
    let big = SwarmEnv::new(swarm, "cap-big", |name| {
        format!(
            "name: {name}\nservices:\n  db:\n    image: {image}\n    \
             command: [serve, --name, db, --port, \"1521\"]\n    ports: [1521]\n    \
             ready:\n      tcp: 1521\n    mem_limit: 600m\n"
        )
    });
    let queue = || {
        let shown = big.envctl().args(["capacity", "-o", "json"]).run();
        let shown = shown.success().json();
        let entries = shown["queue"].as_array().cloned().unwrap_or_default();
        let mine: Vec<serde_json::Value> = entries
            .into_iter()
            .filter(|entry| entry["environment"] == big.name.as_str())
            .collect();
        (shown["capacity"].clone(), mine)
    };
    let ids = || {
        let ls = big.envctl().args(["ls", "-o", "json"]).run();
        let listed = ls.success().json();
        let mut ids: Vec<String> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["environment"] == big.name.as_str())
            .filter_map(|e| e["id"].as_str().map(String::from))
            .collect();
        ids.sort();
        ids
    };

    let _clear = ClearCapacity(&big);
    big.envctl()
        .args(["capacity", "--max-memory", "1g"])
        .run()
        .success();
    let (capacity, _) = queue();
    assert_eq!(capacity["max_memory"], 1u64 << 30, "{capacity}");
    let first = id_of(&big.up());

    // It does not fit beside the first: it waits, gives up, and leaves nothing.
    let gave_up = big
        .envctl()
        .args([
            "up",
            &big.name,
            "--priority",
            "low",
            "--queue-timeout",
            "2s",
        ])
        .run_within(Duration::from_secs(60));
    gave_up
        .code(2)
        .stderr_has("gave up waiting for capacity after 2s");
    assert_eq!(ids(), std::slice::from_ref(&first), "created while waiting");
    assert_eq!(
        queue().1,
        Vec::<serde_json::Value>::new(),
        "its entry stayed"
    );

    // Admitted once the first goes.
    let waiting = big
        .envctl()
        .args([
            "up",
            &big.name,
            "--priority",
            "low",
            "-o",
            "json",
            "--timeout",
            "120s",
        ])
        .spawn();
    wait_until(
        "the waiter queues on the swarm",
        Duration::from_secs(30),
        || !queue().1.is_empty(),
    );
    let (_, entries) = queue();
    assert_eq!(entries[0]["priority"], "low", "{entries:?}");
    assert_eq!(entries[0]["memory"], 600u64 << 20, "{entries:?}");
    // It renews its entry while it waits (every 5 s; an entry expires after 15 s): the entry
    // is the one it made, with the manager's creation time, not one made anew after it expired.
    std::thread::sleep(Duration::from_secs(20));
    let (_, entries) = queue();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]["waited_seconds"].as_u64() >= Some(20),
        "the waiter's entry expired while it waited: {entries:?}"
    );
    assert_eq!(ids(), std::slice::from_ref(&first), "created while waiting");
    big.envctl().args(["down", &first]).run().success();
    let admitted = waiting.wait_within(Duration::from_secs(180));
    let second = id_of(&admitted.success().json());
    assert_ne!(second, first);
    assert_eq!(
        queue().1,
        Vec::<serde_json::Value>::new(),
        "its entry stayed"
    );

    // Changed in place, then cleared.
    big.envctl()
        .args(["capacity", "--max-memory", "2g"])
        .run()
        .success();
    assert_eq!(queue().0["max_memory"], 2u64 << 30);
    big.envctl().args(["capacity", "--clear"]).run().success();
    assert_eq!(queue().0, serde_json::Value::Null);
}
