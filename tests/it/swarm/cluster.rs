//! The test swarm, one per test run. `.ci/run` builds it before the tests with
//! `tests/swarm/swarm.sh up` and names its env file in `ENVCTL_TEST_SWARM`; without that
//! variable the first test that needs it builds one for this test process, whose watcher tears
//! it down once the process has ended. Either way the demo images are pushed into the swarm's
//! registry once per process, as a CI job pushes its images before testing.
//!
//! Swarm tests are never skipped: when the swarm is absent and cannot be built, every test that
//! needs it fails with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NodeState;
use futures_util::StreamExt;

use crate::harness::{block_on, standin};
use crate::support::{Envctl, root};

/// Every step of `swarm.sh up` is bounded by the script; this bounds the whole, in case.
const BUILD_LIMIT: Duration = Duration::from_secs(600);
/// How long one engine call of the checks may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The images of `environments/demo.yaml`, all built from `demo/image`.
pub const DEMO_IMAGES: [&str; 4] = [
    "envctl-demo/oracle-xe",
    "envctl-demo/activemq",
    "envctl-demo/accounting",
    "envctl-demo/proxy",
];

pub struct TestSwarm {
    pub name: String,
    /// Node 1's engine, the manager: `unix:///tmp/envctl-swarm-NAME/n1/docker.sock`.
    pub manager: String,
    pub nodes: Vec<SwarmNode>,
    /// `HOST:PORT` of the registry on node 1, reachable from this namespace and every node.
    pub registry: String,
}

pub struct SwarmNode {
    /// The node's engine: `unix:///tmp/envctl-swarm-NAME/nK/docker.sock`.
    pub host: String,
    /// Its address in the swarm, reachable from this namespace.
    pub addr: String,
}

/// The test swarm, its demo images pushed; a test that calls this fails when there is none.
pub fn swarm() -> &'static TestSwarm {
    static SWARM: OnceLock<Result<TestSwarm, String>> = OnceLock::new();
    let ready = SWARM.get_or_init(|| {
        let swarm = TestSwarm::find_or_build()?;
        block_on(swarm.check())?;
        block_on(swarm.push_demo_images())?;
        Ok(swarm)
    });
    match ready {
        Ok(swarm) => swarm,
        Err(why) => panic!("the swarm tests need the test swarm: {why}"),
    }
}

impl TestSwarm {
    fn find_or_build() -> Result<TestSwarm, String> {
        let env_file = match std::env::var_os("ENVCTL_TEST_SWARM") {
            Some(path) => PathBuf::from(path),
            None => build()?,
        };
        TestSwarm::read(&env_file)
    }

    /// Reads the `KEY=VALUE` lines `swarm.sh up` wrote.
    fn read(env_file: &Path) -> Result<TestSwarm, String> {
        let text = std::fs::read_to_string(env_file).map_err(|e| {
            format!(
                "cannot read the swarm's env file {}: {e}\nhint: unset ENVCTL_TEST_SWARM to let \
                 the tests build a swarm of their own",
                env_file.display()
            )
        })?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim(), value.trim().trim_matches('"')))
            .collect();
        let var = |key: &str| {
            vars.get(key)
                .map(|value| value.to_string())
                .ok_or_else(|| format!("{} has no {key}", env_file.display()))
        };
        let hosts = var("ENVCTL_SWARM_NODE_HOSTS")?;
        let addrs = var("ENVCTL_SWARM_NODE_ADDRS")?;
        let nodes: Vec<SwarmNode> = hosts
            .split_whitespace()
            .zip(addrs.split_whitespace())
            .map(|(host, addr)| SwarmNode {
                host: host.to_string(),
                addr: addr.to_string(),
            })
            .collect();
        if nodes.is_empty() {
            return Err(format!("{} lists no node", env_file.display()));
        }
        Ok(TestSwarm {
            name: var("ENVCTL_SWARM_NAME")?,
            manager: var("ENVCTL_SWARM_MANAGER")?,
            nodes,
            registry: var("ENVCTL_SWARM_REGISTRY")?,
        })
    }

    /// A client of the manager.
    pub async fn client(&self) -> Docker {
        connect(&self.manager).await.unwrap_or_else(|e| {
            panic!(
                "the manager of test swarm `{}` does not answer: {e}",
                self.name
            )
        })
    }

    /// A client of every node's own engine.
    pub async fn node_clients(&self) -> Vec<Docker> {
        let mut clients = Vec::new();
        for node in &self.nodes {
            clients.push(connect(&node.host).await.unwrap_or_else(|e| {
                panic!(
                    "node {} of test swarm `{}` does not answer: {e}",
                    node.addr, self.name
                )
            }));
        }
        clients
    }

    /// The registry reference of a demo image, as every node pulls it.
    pub fn image(&self, demo_image: &str) -> String {
        format!("{}/{demo_image}:latest", self.registry)
    }

    /// The manager answers, as a manager, and every node is ready.
    async fn check(&self) -> Result<(), String> {
        let docker = connect(&self.manager).await?;
        let info = bounded("info", docker.info()).await?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            return Err(format!(
                "{} is not a swarm manager (swarm state {:?})",
                self.manager, swarm.local_node_state
            ));
        }
        let nodes = bounded("list nodes", docker.list_nodes(None)).await?;
        let ready = nodes
            .iter()
            .filter(|node| {
                node.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&NodeState::READY)
            })
            .count();
        if ready != self.nodes.len() {
            return Err(format!(
                "{ready} of the swarm's {} nodes are ready",
                self.nodes.len()
            ));
        }
        Ok(())
    }

    /// Builds the demo images on the manager with `envctl build`, as demo/up.sh does, and pushes
    /// them into the swarm's registry.
    async fn push_demo_images(&self) -> Result<(), String> {
        standin();
        let build = Envctl::new()
            .env("DOCKER_HOST", &self.manager)
            .args(["build", "demo"])
            .run();
        if build.output.status.code() != Some(0) {
            return Err(format!(
                "`envctl build demo` on the swarm's manager failed:\n{}",
                build.stderr()
            ));
        }
        let docker = connect(&self.manager).await?;
        for image in DEMO_IMAGES {
            let target = format!("{}/{image}", self.registry);
            let tag = bollard::query_parameters::TagImageOptionsBuilder::default()
                .repo(&target)
                .tag("latest")
                .build();
            bounded("tag image", docker.tag_image(image, Some(tag))).await?;
            let mut push = docker.push_image(
                &target,
                Some(
                    bollard::query_parameters::PushImageOptionsBuilder::default()
                        .tag("latest")
                        .build(),
                ),
                None,
            );
            let pushed = tokio::time::timeout(CALL_LIMIT, async {
                while let Some(progress) = push.next().await {
                    progress.map_err(|e| format!("pushing {target} failed: {e}"))?;
                }
                Ok::<(), String>(())
            })
            .await;
            pushed.map_err(|_| format!("pushing {target} took over {CALL_LIMIT:?}"))??;
        }
        Ok(())
    }
}

pub async fn connect(host: &str) -> Result<Docker, String> {
    let client = Docker::connect_with_host(host).map_err(|e| format!("{host}: {e}"))?;
    bounded("version negotiation", client.negotiate_version()).await
}

/// `call` within [`CALL_LIMIT`], its error naming `what`.
pub async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(result) => result.map_err(|e| format!("{what} failed: {e}")),
        Err(_) => Err(format!("{what} took over {CALL_LIMIT:?}")),
    }
}

/// Builds a swarm for this test process with `swarm.sh up`, which tears it down once the
/// process has ended. Returns the path of its env file.
fn build() -> Result<PathBuf, String> {
    build_named(&format!("t{}", std::process::id()), 3)
}

/// A swarm of `nodes` nodes of one test's own, its demo images pushed, for a test that breaks
/// a node: [`TestSwarm::down`] removes it, and so does the end of this process.
pub fn private(name: &str, nodes: u32) -> Result<TestSwarm, String> {
    let swarm = TestSwarm::read(&build_named(name, nodes)?)?;
    block_on(swarm.check())?;
    block_on(swarm.push_demo_images())?;
    Ok(swarm)
}

impl TestSwarm {
    /// Removes a private swarm (see [`private`]).
    pub fn down(&self) -> Result<(), String> {
        let script = root().join("tests/swarm/swarm.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(["down", &self.name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }
}

fn build_named(name: &str, nodes: u32) -> Result<PathBuf, String> {
    let pid = std::process::id();
    let script = root().join("tests/swarm/swarm.sh");
    let child = Command::new("bash")
        .arg(&script)
        .args([
            "up",
            name,
            "--nodes",
            &nodes.to_string(),
            "--watch",
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let output = match output.recv_timeout(BUILD_LIMIT) {
        Ok(output) => output.map_err(|e| format!("{} did not end: {e}", script.display()))?,
        Err(_) => {
            let _ = Command::new("bash")
                .arg(&script)
                .args(["down", name])
                .status();
            return Err(format!(
                "`swarm.sh up {name}` took over {BUILD_LIMIT:?}; it was torn down"
            ));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`tests/swarm/swarm.sh up {name}` failed:\n{stderr}\nhint: it needs root, iproute2, \
             util-linux, dockerd and docker-registry; `.ci/run` installs them"
        ));
    }
    // The swarm's cost, with the output of the first test that needed it.
    eprint!("{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let env_file = stdout.lines().last().unwrap_or_default().trim();
    Ok(PathBuf::from(env_file))
}
