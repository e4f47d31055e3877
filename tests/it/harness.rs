//! Real-Docker test support: the demo images built once, environments named per test, and a
//! guard that removes a test's environments even when the test fails.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{ContainerSummary, NetworkSummary};

use crate::support::{EnvDir, Envctl, root};

/// The static stand-in binary, built once per test run (tests share the file, so only one
/// of them may build it).
pub fn standin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new("bash")
                .arg(root().join("demo/build-standin.sh"))
                .status()
                .expect("run demo/build-standin.sh");
            assert!(status.success(), "demo/build-standin.sh failed");
            root().join("demo/image/standin")
        })
        .clone()
}

/// Builds the stand-in binary and the demo images once per test run.
pub fn demo_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        standin();
        Envctl::new().args(["build", "demo"]).run().success();
    });
}

/// A unique environment name for one test, so parallel tests never see each other.
pub fn unique(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

/// The stand-in image every test service runs.
pub const IMAGE: &str = "envctl-demo/oracle-xe";

/// A test environment: its file in a temporary envdir, and a guard that runs
/// `envctl down --all --environment NAME` when dropped.
pub struct TestEnv {
    pub name: String,
    pub dir: EnvDir,
}

impl TestEnv {
    /// `services` is the YAML under `services:`, indented by two spaces.
    pub fn new(test: &str, services: &str) -> TestEnv {
        demo_images();
        let name = unique(test);
        let text = format!("name: {name}\nservices:\n{services}");
        let dir = EnvDir::new().with(&format!("{name}.yaml"), &text);
        TestEnv { name, dir }
    }

    /// `envctl` with this environment's envdir and its own reaper state.
    pub fn envctl(&self) -> Envctl {
        Envctl::new()
            .envdir(self.dir.path())
            .env("ENVCTL_STATE_DIR", self.state_dir())
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// One `envctl reap` pass over this test's environments only.
    pub fn reap(&self, flags: &[&str]) -> crate::support::Run {
        self.reap_command(flags).run()
    }

    pub fn reap_command(&self, flags: &[&str]) -> Envctl {
        self.envctl()
            .args(["reap", "--environment", &self.name])
            .args(flags)
    }

    /// A build context holding the stand-in binary, for test images built with `build:`.
    pub fn context(&self) -> PathBuf {
        let context = self.dir.path().join("context");
        std::fs::create_dir_all(&context).expect("context dir");
        std::fs::copy(standin(), context.join("standin")).expect("copy the stand-in");
        context
    }

    /// The state `envctl ls` shows for environment `id`, if it exists.
    pub fn state_of(&self, id: &str) -> Option<String> {
        let ls = self.envctl().args(["ls", "-o", "json"]).run();
        ls.success()
            .json()
            .as_array()?
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
    }

    /// Waits until the `--ttl` of environment `id` has expired, as `envctl ls` shows it.
    pub fn wait_past_ttl(&self, id: &str) {
        let ls = self.envctl().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        let expires = rows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == id))
            .and_then(|r| r["expires_at"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("`{id}` has no --ttl: {rows}"));
        if let Ok(left) = (expires.to_utc() - chrono::Utc::now()).to_std() {
            // Waits for the expiry itself: time passing is what a --ttl is about.
            std::thread::sleep(left + std::time::Duration::from_millis(10));
        }
    }

    pub fn file(&self) -> std::path::PathBuf {
        self.dir.file(&format!("{}.yaml", self.name))
    }

    /// Everything envctl left of this environment on the engine.
    pub fn leftovers(&self) -> (Vec<ContainerSummary>, Vec<NetworkSummary>) {
        let filter = [envctl::backend::docker::engine::Filter::Environment(
            self.name.clone(),
        )];
        block_on(async {
            let docker = Docker::connect().await.expect("docker");
            let containers = docker
                .list_containers(&filter)
                .await
                .expect("list containers");
            let networks = docker.list_networks(&filter).await.expect("list networks");
            (containers, networks)
        })
    }

    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let (containers, networks) = self.leftovers();
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        let nets: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        assert!(
            containers.is_empty() && networks.is_empty(),
            "left behind: {names:?} {nets:?}"
        );
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = Envctl::new()
            .args(["down", "--all", "--environment", &self.name])
            .run();
    }
}

/// Runs `envctl down ID` when dropped, for environments outside a [`TestEnv`]'s name.
pub struct DownOnDrop(pub String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Envctl::new().args(["down", &self.0]).run();
    }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// `GET /` on a local port, returning the body.
pub fn http_get(port: u64) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The host port a service's container port is published on, from `up --output json`.
pub fn host_port(up: &serde_json::Value, service: &str, container_port: u64) -> u64 {
    up["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["service"] == service)
        .and_then(|s| {
            s["ports"]
                .as_array()?
                .iter()
                .find(|p| p["container_port"] == container_port)
        })
        .and_then(|p| p["host_port"].as_u64())
        .unwrap_or_else(|| panic!("{service} publishes no {container_port}: {up}"))
}
