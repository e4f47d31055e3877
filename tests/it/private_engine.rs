//! A Docker engine of a test's own: a private `dockerd` with its own data root, exec root and
//! socket, for tests that must do to an engine what nobody may do to the shared one (freeze it,
//! break it, restart it). A guard thaws, empties and stops it, and deletes its files, even when
//! the test fails.
//!
//! Without `dockerd` on the machine a test using it is skipped with a loud message, except in
//! CI (`CI` set), where that is a failure: a fault test that never runs proves nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envctl::backend::bollard::connect::{Flags, Settings};
use envctl::backend::docker::engine::docker::Docker;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{TestEnv, block_on, standin};
use crate::support::{Envctl, root};

/// How long a private engine may take to answer its first ping.
const STARTUP: Duration = Duration::from_secs(30);
/// How long it may take to stop on SIGTERM before it is killed.
const SHUTDOWN: Duration = Duration::from_secs(15);

pub struct PrivateEngine {
    /// `unix:///tmp/envctl-pe-.../docker.sock` (or `tcp://127.0.0.1:PORT`), for `DOCKER_HOST`.
    pub host: String,
    /// The client certificates of a TLS-only engine.
    tls: Option<PathBuf>,
    dir: PathBuf,
    /// The Linux bridge made for it, removed after it.
    _bridge: Bridge,
    /// `dockerd`'s arguments, to start it again.
    args: Vec<String>,
    /// The host's `docker0` as it was before a restart, put back if a restart deleted it.
    docker0: Option<HostBridge>,
    daemon: Child,
}

impl PrivateEngine {
    /// Starts a private engine for `test`; `None` (after a loud message) when this machine has
    /// no `dockerd` and this is not CI.
    pub fn start(test: &str) -> Option<PrivateEngine> {
        PrivateEngine::launch(test, None)
    }

    /// Starts a private engine that listens only on a loopback TCP port, with `--tlsverify`:
    /// `certs` holds the engine's certificate (`server-cert.pem`, `server-key.pem`) and the
    /// client's (`ca.pem`, `cert.pem`, `key.pem`, as `DOCKER_CERT_PATH` wants them).
    pub fn start_tls(test: &str, certs: &Path) -> Option<PrivateEngine> {
        PrivateEngine::launch(test, Some(certs))
    }

    fn launch(test: &str, tls: Option<&Path>) -> Option<PrivateEngine> {
        if !has_dockerd() {
            assert!(
                std::env::var_os("CI").is_none(),
                "`dockerd` is not installed, and CI must run the private-engine test `{test}`"
            );
            eprintln!(
                "\n!!! SKIPPED `{test}`: it needs `dockerd` on PATH to start a private engine !!!\n"
            );
            return None;
        }
        // Short: the engine's containerd puts its socket under the exec root, and unix socket
        // paths are limited to 108 bytes.
        let dir = PathBuf::from(format!("/tmp/envctl-pe-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("private engine dir");
        // No settings from /etc/docker/daemon.json: they may clash with these flags.
        std::fs::write(dir.join("daemon.json"), "{}").expect("daemon.json");
        let (bridge, pool) = Bridge::create(test);
        let socket = dir.join("docker.sock");
        let (host, listen) = match tls {
            None => {
                let host = format!("unix://{}", socket.display());
                (host.clone(), vec!["-H".into(), host])
            }
            Some(certs) => {
                let host = format!("tcp://127.0.0.1:{}", free_port());
                let file = |name: &str| certs.join(name).display().to_string();
                let listen = vec![
                    "-H".into(),
                    host.clone(),
                    "--tlsverify".into(),
                    "--tlscacert".into(),
                    file("ca.pem"),
                    "--tlscert".into(),
                    file("server-cert.pem"),
                    "--tlskey".into(),
                    file("server-key.pem"),
                ];
                (host, listen)
            }
        };
        let mut args: Vec<String> = [
            "--config-file",
            &dir.join("daemon.json").display().to_string(),
            "--data-root",
            &dir.join("data").display().to_string(),
            "--exec-root",
            &dir.join("exec").display().to_string(),
            "--pidfile",
            &dir.join("docker.pid").display().to_string(),
        ]
        .map(String::from)
        .into();
        args.extend(listen);
        // A bridge of its own, no iptables rules and no sysctls: nothing that touches the
        // shared engine's networking. Never `--bridge=none`: that makes dockerd delete the
        // host's `docker0`, the shared engine's default bridge.
        args.extend(["--bridge".into(), bridge.name.clone()]);
        args.extend(["--iptables=false".into(), "--ip-forward=false".into()]);
        // vfs works on any file system the data root is on, overlay or not.
        args.extend(["--storage-driver".into(), "vfs".into()]);
        args.extend(["--default-address-pool".into(), pool]);
        let daemon = spawn_dockerd(&dir, &args);
        let engine = PrivateEngine {
            host,
            tls: tls.map(Path::to_owned),
            dir,
            _bridge: bridge,
            args,
            docker0: None,
            daemon,
        };
        engine.wait_until_it_answers();
        Some(engine)
    }

    /// Connects to this engine, with its client certificates when it speaks TLS.
    async fn connect(&self) -> envctl::backend::docker::engine::Result<Docker> {
        let flags = Flags {
            host: Some(self.host.clone()),
            context: None,
        };
        let settings = Settings {
            tls_verify: self.tls.is_some(),
            cert_path: self.tls.clone(),
            ..Settings::default()
        };
        Docker::connect_with_settings(&flags, &settings).await
    }

    fn wait_until_it_answers(&self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if block_on(self.connect()).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not answer within {STARTUP:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.daemon.id() as i32)
    }

    /// Stops the daemon in its tracks (SIGSTOP): connections are still accepted by the kernel,
    /// but no request is answered, the way a hung engine behaves.
    pub fn freeze(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP dockerd");
    }

    /// Whether the daemon is stopped by a signal (by [`PrivateEngine::freeze`] or anyone).
    pub fn frozen(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.daemon.id()));
        stat.ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    }

    /// The daemon's process id, for a command that freezes it itself.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.id()
    }

    pub fn thaw(&self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
    }

    /// Kills the daemon (SIGKILL) and starts it again on the same data, as after a crash: its
    /// containers are killed then (`Exited (137)`), without live restore.
    ///
    /// It starts again without its address pool: with one, a dockerd that finds its stale
    /// default network deletes the host's `docker0` whatever its `--bridge` (moby's
    /// `configureNetworking`). Networks made before keep their subnets; make none after. Should
    /// `docker0` go anyway, it is put back as it was and the test fails.
    pub fn crash_and_restart(&mut self) {
        self.thaw();
        self.docker0 = HostBridge::docker0();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // Its containerd dies with it, but not at once: one still there when dockerd starts
        // again is taken over as it dies, and dockerd then waits in vain.
        kill_pid_in(&self.dir.join("exec/containerd/containerd.pid"));
        if let Some(at) = self.args.iter().position(|a| a == "--default-address-pool") {
            self.args.drain(at..at + 2);
        }
        self.daemon = spawn_dockerd(&self.dir, &self.args);
        self.wait_until_it_answers();
        if let Some(docker0) = &self.docker0 {
            assert!(
                docker0.restore_if_gone(),
                "restarting the private dockerd deleted the host's `docker0` (put back)"
            );
        }
    }

    /// `envctl` for `env`, talking to this engine.
    pub fn envctl(&self, env: &TestEnv) -> Envctl {
        let envctl = env.envctl().env("DOCKER_HOST", &self.host);
        match &self.tls {
            Some(certs) => envctl
                .env("DOCKER_TLS_VERIFY", "1")
                .env("DOCKER_CERT_PATH", certs),
            None => envctl,
        }
    }

    /// Builds the demo image (`envctl-demo/oracle-xe`) on this engine: `env` must give its
    /// services `build: context`.
    pub fn build_images(&self, env: &TestEnv) {
        let context = env.context();
        std::fs::copy(
            root().join("demo/image/Dockerfile"),
            context.join("Dockerfile"),
        )
        .expect("copy the demo Dockerfile");
        standin();
        self.envctl(env).args(["build", &env.name]).run().success();
    }

    /// The engine, to look at what envctl did on it.
    pub fn engine(&self) -> Docker {
        block_on(self.connect()).expect("the private engine answers")
    }

    /// Removes every container and network on this engine.
    fn empty(&self) {
        block_on(async {
            let Ok(engine) = self.connect().await else {
                return;
            };
            if let Ok(containers) = engine.list_containers(&[]).await {
                for container in containers {
                    let _ = engine.remove_container(&container.id).await;
                }
            }
            if let Ok(networks) = engine.list_networks(&[]).await {
                for network in networks {
                    if !matches!(network.name.as_str(), "none" | "host" | "bridge") {
                        let _ = engine.remove_network(&network.id).await;
                    }
                }
            }
        });
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.thaw();
        // Networks would leave their bridges on the host after the daemon is gone.
        self.empty();
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + SHUTDOWN;
        while Instant::now() < deadline {
            if matches!(self.daemon.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.daemon.try_wait(), Ok(Some(_))) || self.docker0.is_some() {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
            // A killed dockerd leaves its containerd behind, and one started again after a
            // crash may have taken over the first one's.
            kill_pid_in(&self.dir.join("exec/containerd/containerd.pid"));
        }
        if let Some(docker0) = &self.docker0 {
            // The killed daemon's mount of its data root outlives it.
            let _ = Command::new("umount")
                .arg(self.dir.join("data"))
                .stderr(Stdio::null())
                .status();
            docker0.restore_if_gone();
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: could not remove the private engine's {}: {error}",
                self.dir.display()
            );
        }
    }
}

/// A Linux bridge for one private engine's default network.
struct Bridge {
    name: String,
}

impl Bridge {
    /// The bridge, with an address outside every engine's pool, and the engine's own pool.
    fn create(test: &str) -> (Bridge, String) {
        let octet = 100 + hash(test) % 150;
        // Interface names have at most 15 bytes.
        let bridge = Bridge {
            name: format!("envpe{}", hash(test) % 100_000),
        };
        let _ = ip(&["link", "del", &bridge.name]);
        let address = format!("10.99.{octet}.1/24");
        for args in [
            ["link", "add", &bridge.name, "type", "bridge"].as_slice(),
            &["addr", "add", &address, "dev", &bridge.name],
            &["link", "set", &bridge.name, "up"],
        ] {
            assert!(
                ip(args),
                "`ip {}` failed: a private engine needs `ip` (iproute2) to get a bridge of its own",
                args.join(" ")
            );
        }
        (bridge, format!("base=10.{octet}.0.0/16,size=24"))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.name]);
    }
}

/// A host bridge's address and MAC, to put it back as it was.
struct HostBridge {
    name: String,
    address: String,
    mac: String,
}

impl HostBridge {
    /// The host's `docker0`, the shared engine's default bridge, if it has one.
    fn docker0() -> Option<HostBridge> {
        let name = "docker0".to_string();
        let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
        let shown = Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", &name])
            .output()
            .ok()?;
        let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
        let address = shown
            .split_whitespace()
            .skip_while(|word| *word != "inet")
            .nth(1)?
            .to_string();
        Some(HostBridge {
            name,
            address,
            mac: mac.trim().to_string(),
        })
    }

    /// Recreates the bridge if it is gone; whether it was still there. The shared engine
    /// attaches containers to its bridge by name, so a bridge of the same name, address and
    /// MAC serves it again.
    fn restore_if_gone(&self) -> bool {
        if std::path::Path::new(&format!("/sys/class/net/{}", self.name)).exists() {
            return true;
        }
        let name = self.name.as_str();
        for args in [
            ["link", "add", name, "type", "bridge"].as_slice(),
            &["link", "set", name, "address", &self.mac],
            &["addr", "add", &self.address, "dev", name],
            &["link", "set", name, "up"],
        ] {
            if !ip(args) {
                eprintln!(
                    "warning: `ip {}` failed putting back `{name}`",
                    args.join(" ")
                );
            }
        }
        false
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts `dockerd` with `args`, its output appended to the engine's log.
fn spawn_dockerd(dir: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .expect("dockerd log");
    Command::new("dockerd")
        .args(args)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start dockerd")
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn has_dockerd() -> bool {
    Command::new("dockerd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A number of this test run and test, so that private engines never pick the same names or
/// subnets (nor the shared engine's 172.16.0.0/12).
fn hash(test: &str) -> u32 {
    test.bytes()
        .chain(std::process::id().to_le_bytes())
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

/// Kills the process whose id `pidfile` holds, and waits (a few seconds at most) until it is
/// gone.
fn kill_pid_in(pidfile: &Path) {
    if let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
