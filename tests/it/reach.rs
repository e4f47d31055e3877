//! envctl where CI runs it: inside a container on a network of its own with the host's Docker
//! socket mounted (a Jenkins agent in Docker), where the environment's container addresses do
//! not answer until envctl connects its own container to the environment's network, which it
//! does while it needs them, and published ports answer at the container's default gateway.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{TestEnv, standin, unique};
use crate::support::wait_until;

/// The demo's chain, only the proxy published. The database listens only after 6 s, longer
/// than `accounting` waits for it: a probe that passed on the port proxy's accept alone would
/// start `accounting` too early, and the start would fail.
const CHAIN: &str = r#"  oracle-xe:
    image: envctl-demo/oracle-xe
    command: [serve, --name, oracle-xe, --port, "1521", --delay, 6s]
    ready:
      tcp: 1521
  accounting:
    image: envctl-demo/oracle-xe
    command: [serve, --name, accounting, --requires, "oracle:1521"]
    links: ["oracle-xe:oracle"]
    ready:
      http: 8080/health
  proxy:
    image: envctl-demo/oracle-xe
    command: [serve, --name, proxy, --requires, "accounting:8080", --forward, "accounting:8080"]
    links: [accounting]
    ports: [8080]
    ready:
      http: 8080/health
"#;

/// A probe on a port that is not published: it needs the service's own address.
const UNPUBLISHED: &str = r#"  db:
    image: envctl-demo/oracle-xe
    command: [serve, --name, db, --port, "1521"]
    ready:
      tcp: 1521
"#;

/// The same port published, for a start whose `ENVCTL_HOST` does not answer.
const PUBLISHED: &str = r#"  db:
    image: envctl-demo/oracle-xe
    command: [serve, --name, db, --port, "1521"]
    ports: [1521]
    ready:
      tcp: 1521
"#;

/// A service that listens only long after it started.
const SLOW: &str = r#"  db:
    image: envctl-demo/oracle-xe
    command: [serve, --name, db, --port, "1521", --delay, 300s]
    ready:
      tcp: 1521
"#;

/// A start that fails after its first service was probed at its own address.
const FAILING: &str = r#"  db:
    image: envctl-demo/oracle-xe
    command: [serve, --name, db, --port, "1521"]
    ready:
      tcp: 1521
  app:
    image: envctl-demo/oracle-xe
    command: [no-such-command]
    links: [db]
    ready:
      tcp: 8080
"#;

#[test]
fn envctl_in_a_container_joins_its_environment_while_it_needs_it() {
    let Some(socket) = engine_socket() else {
        eprintln!("skipped: the engine is not behind a local unix socket");
        return;
    };
    let chain = TestEnv::new("joins", CHAIN);
    let unpublished = TestEnv::new("joins-unpub", UNPUBLISHED);
    let failing = TestEnv::new("joins-fail", FAILING);
    let interrupted = TestEnv::new("joins-int", UNPUBLISHED);
    let killed = TestEnv::new("joins-killed", UNPUBLISHED);
    let slow = TestEnv::new("joins-slow", SLOW);
    let files = [
        chain.file(),
        unpublished.file(),
        failing.file(),
        interrupted.file(),
        killed.file(),
        slow.file(),
    ];
    let image = EnvctlImage::build("joins", &files);
    let network = Network::create(&unique("joins-net"));
    let agent = Agent::start(&image, &network.name, &socket);
    let alone = [network.name.clone()];

    // `run`: the command reaches the proxy at its own address and the database by its link
    // name, as a GitLab job reaches its `services:`.
    let file = format!("/env/{}.yaml", chain.name);
    let script = "/standin fetch ENVCTL_PROXY_8080 / && DB=oracle:1521 /standin fetch DB /health";
    let run = agent.envctl(&["run", "-f", &file, "--", "/busybox", "sh", "-c", script]);
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("proxy -> accounting ok"), "{stdout}");
    assert!(stdout.contains("accounting -> oracle:1521 ok"), "{stdout}");
    assert!(stdout.contains("DB=oracle:1521 answered 200"), "{stdout}");
    let proxy = stdout
        .lines()
        .find_map(|line| line.strip_prefix("ENVCTL_PROXY_8080="))
        .unwrap_or_else(|| panic!("no ENVCTL_PROXY_8080 in:\n{stdout}"));
    assert!(
        proxy.contains(":8080 answered 200") && !proxy.starts_with(&network.gateway()),
        "expected the proxy's own address, not a published port: {proxy}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(agent.networks(), alone, "nothing left attached after `run`");
    chain.assert_nothing_left();

    // `up`: probed at the services' own addresses, then the agent leaves: the environment
    // outlives the command.
    let file = format!("/env/{}.yaml", unpublished.name);
    let up = agent.envctl(&["up", "-f", &file]);
    let (_, stderr) = texts(&up);
    assert!(up.status.success(), "{stderr}");
    assert_eq!(
        agent.networks(),
        alone,
        "`up` leaves the network after its probes"
    );
    // `start` after a `stop` probes at the services' own addresses too, then leaves.
    let (stdout, _) = texts(&up);
    let id = stdout
        .split_whitespace()
        .skip_while(|word| *word != "id")
        .nth(1)
        .unwrap_or_else(|| panic!("no id in:\n{stdout}"))
        .to_owned();
    let stop = agent.envctl(&["stop", &id]);
    assert!(stop.status.success(), "{}", texts(&stop).1);
    let start = agent.envctl(&["start", &id]);
    assert!(start.status.success(), "{}", texts(&start).1);
    assert_eq!(
        agent.networks(),
        alone,
        "`start` leaves the network after its probes"
    );
    unpublished
        .envctl()
        .args(["down", "--all", "--environment", &unpublished.name])
        .run()
        .success();
    unpublished.assert_nothing_left();

    // A failed start rolls back, and leaves nothing attached.
    let file = format!("/env/{}.yaml", failing.name);
    let up = agent.envctl(&["up", "-f", &file, "--timeout", "60s"]);
    let (_, stderr) = texts(&up);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("service `app` failed"), "{stderr}");
    assert_eq!(
        agent.networks(),
        alone,
        "nothing left attached after a failed start"
    );
    failing.assert_nothing_left();

    // Ctrl-C while `run`'s command runs: the environment goes, and the agent leaves first.
    let file = format!("/env/{}.yaml", interrupted.name);
    agent.envctl_detached(&["run", "-f", &file, "--", "/standin", "sleep"]);
    agent.wait_for_command(&network.name);
    // Meanwhile another start in the same agent (Jenkins executors sharing it) joins a second
    // environment: a link name may then resolve in either, which envctl says.
    let file = format!("/env/{}.yaml", unpublished.name);
    let up = agent.envctl(&["up", "-f", &file]);
    let (_, stderr) = texts(&up);
    assert!(up.status.success(), "{stderr}");
    assert!(
        stderr.contains("is on the networks of other environments too")
            && stderr.contains("Docker's DNS may answer a link name"),
        "{stderr}"
    );
    unpublished
        .envctl()
        .args(["down", "--all", "--environment", &unpublished.name])
        .run()
        .success();
    agent.signal_envctl("INT");
    wait_until("envctl ends after Ctrl-C", Duration::from_secs(30), || {
        !agent.envctl_runs()
    });
    assert_eq!(
        agent.networks(),
        alone,
        "nothing left attached after Ctrl-C"
    );
    interrupted.assert_nothing_left();

    // A killed agent's `run` leaves its container attached: `down` disconnects it as envctl's
    // instead of keeping the network for a foreign user.
    let file = format!("/env/{}.yaml", killed.name);
    agent.envctl_detached(&["run", "-f", &file, "--", "/standin", "sleep"]);
    agent.wait_for_command(&network.name);
    agent.signal_envctl("KILL");
    wait_until("envctl is killed", Duration::from_secs(10), || {
        !agent.envctl_runs()
    });
    assert_eq!(
        agent.networks().len(),
        2,
        "the killed run's attachment stays"
    );
    killed
        .envctl()
        .args(["down", "--all", "--environment", &killed.name])
        .run()
        .success();
    assert_eq!(agent.networks(), alone, "`down` disconnected the agent");
    killed.assert_nothing_left();

    // An `up` killed while it probed: the reaper (here on the agent, which sees the `up` is
    // gone) removes the start that never finished, and disconnects the agent it found attached.
    let file = format!("/env/{}.yaml", slow.name);
    agent.envctl_detached(&["up", "-f", &file]);
    wait_until("the agent joins to probe", Duration::from_secs(60), || {
        agent.networks().len() == 2
    });
    agent.signal_envctl("KILL");
    wait_until("envctl is killed", Duration::from_secs(10), || {
        !agent.envctl_runs()
    });
    assert_eq!(
        agent.networks().len(),
        2,
        "the killed start's attachment stays"
    );
    let reaped = agent.envctl(&["reap", "--environment", &slow.name]);
    let (stdout, stderr) = texts(&reaped);
    assert!(reaped.status.success(), "{stderr}");
    assert_eq!(
        agent.networks(),
        alone,
        "the reaper disconnected the agent:\n{stdout}\n{stderr}"
    );
    slow.assert_nothing_left();
}

#[test]
fn envctl_in_a_container_reaches_its_environment() {
    let Some(socket) = engine_socket() else {
        eprintln!("skipped: the engine is not behind a local unix socket");
        return;
    };
    let unpublished = TestEnv::new("incontainer-unpub", UNPUBLISHED);
    let astray = TestEnv::new("incontainer-astray", PUBLISHED);
    let files = [unpublished.file(), astray.file()];
    let image = EnvctlImage::build("incontainer", &files);
    let network = Network::create(&unique("incontainer-net"));

    // ENVCTL_HOST says where services answer: envctl does not join, and a probe that needs a
    // service's own address says why it has none.
    let gateway = format!("ENVCTL_HOST={}", network.gateway());
    let up = image.run(
        &network.name,
        &socket,
        &["-e", &gateway],
        &["up", "-f", &format!("/env/{}.yaml", unpublished.name)],
    );
    let (_, stderr) = texts(&up);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("port 1521 is probed but not published, and container addresses do not answer from where envctl runs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ENVCTL_HOST is set, which says where services answer instead"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: add 1521 to the service's `ports:`"),
        "{stderr}"
    );
    unpublished.assert_nothing_left();

    // An agent the engine will not connect (`--network none` joins no other network): the
    // probe's error says so.
    let up = image.run(
        "none",
        &socket,
        &[],
        &["up", "-f", &format!("/env/{}.yaml", unpublished.name)],
    );
    let (_, stderr) = texts(&up);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("port 1521 is probed but not published")
            && stderr.contains("the engine refused to connect envctl's container"),
        "{stderr}"
    );
    unpublished.assert_nothing_left();

    // ENVCTL_HOST at an address that does not answer from the agent (a container on another
    // bridge: Docker drops what crosses between them): the timeout blames the address, not
    // the time it allowed.
    let elsewhere = Network::create(&unique("incontainer-elsewhere"));
    let bystander = image.start_idle(&elsewhere.name);
    let address = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &bystander.0,
    ]);
    let envctl_host = format!("ENVCTL_HOST={}", address.trim());
    let up = image.run(
        &network.name,
        &socket,
        &["-e", &envctl_host],
        &[
            "up",
            "-f",
            &format!("/env/{}.yaml", astray.name),
            "--timeout",
            "6s",
        ],
    );
    let (_, stderr) = texts(&up);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the environment was not ready within 6s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: `{}:", address.trim())),
        "{stderr}"
    );
    assert!(
        stderr.contains("a longer `--timeout` will not help"),
        "{stderr}"
    );
    assert!(!stderr.contains("raise `--timeout`"), "{stderr}");
    assert!(
        stderr.contains(&format!("ENVCTL_HOST is `{}`", address.trim())),
        "{stderr}"
    );
    astray.assert_nothing_left();
}

/// The shared engine's socket, to mount into a container.
fn engine_socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `docker ARGS`, failing the test when it fails.
#[track_caller]
fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    let (stdout, stderr) = texts(&output);
    assert!(
        output.status.success(),
        "docker {} failed:\n{stderr}",
        args.join(" ")
    );
    stdout
}

/// An image of the envctl binary under test with the shared libraries it links (the
/// stand-in is static), and the given environment files under `/env`; removed when dropped.
struct EnvctlImage {
    tag: String,
    _context: tempfile::TempDir,
}

impl EnvctlImage {
    fn build(test: &str, files: &[PathBuf]) -> EnvctlImage {
        let context = tempfile::tempdir().expect("context dir");
        let rootfs = context.path().join("rootfs");
        let envctl = Path::new(env!("CARGO_BIN_EXE_envctl"));
        copy_stripped(envctl, &rootfs.join("envctl"));
        for library in libraries(envctl) {
            let target = rootfs.join(library.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("lib dir");
            std::fs::copy(&library, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", library.display()));
        }
        std::fs::copy(standin(), rootfs.join("standin")).expect("copy the stand-in");
        // A static shell, for commands that do more than one thing, and `kill`.
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect("busybox: install Debian's busybox-static (.ci/run does)");
        std::fs::copy(busybox, rootfs.join("busybox")).expect("copy busybox");
        std::fs::create_dir_all(rootfs.join("env")).expect("env dir");
        for file in files {
            let name = file.file_name().expect("file name");
            std::fs::copy(file, rootfs.join("env").join(name)).expect("copy the file");
        }
        std::fs::create_dir_all(rootfs.join("tmp")).expect("tmp dir");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nENV ENVCTL_STATE_DIR=/tmp/state USER=envctl-test\n\
             ENTRYPOINT [\"/envctl\"]\n",
        )
        .expect("Dockerfile");
        let tag = format!("envctl-test/in-container:{}", unique(test));
        let context_path = context.path().to_str().expect("utf-8 path");
        docker(&["build", "-q", "-t", &tag, context_path]);
        EnvctlImage {
            tag,
            _context: context,
        }
    }

    /// `envctl ARGS` in a container of this image on `network`, with the engine's socket and
    /// `docker run` options `options`.
    fn run(&self, network: &str, socket: &Path, options: &[&str], args: &[&str]) -> Output {
        let name = unique(&format!("envctl-in-container-{}", short_hash(args)));
        let mount = format!("{}:/var/run/docker.sock", socket.display());
        let mut command = Command::new("docker");
        command
            .args(["run", "--rm", "--name", &name, "--network", network])
            .args(["-v", &mount])
            .args(options)
            .arg(&self.tag)
            .args(args);
        let output = command.output().expect("docker run");
        // --rm removes it; this is for a run that failed before it started.
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        output
    }
}

impl EnvctlImage {
    /// A container of this image that only sleeps, on `network`; removed when dropped.
    fn start_idle(&self, network: &str) -> Container {
        let name = unique(&format!("envctl-idle-{}", short_hash(&[network])));
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "--entrypoint",
            "/standin",
            &self.tag,
            "sleep",
        ]);
        Container(name)
    }
}

/// A CI agent: a container of the envctl image that only sleeps, on a network of its own with
/// the engine's socket mounted, in which envctl runs with `docker exec`, as a Jenkins agent in
/// Docker runs its steps. Removed when dropped.
struct Agent(Container);

impl Agent {
    fn start(image: &EnvctlImage, network: &str, socket: &Path) -> Agent {
        let name = unique(&format!("envctl-agent-{}", short_hash(&[network])));
        let mount = format!("{}:/var/run/docker.sock", socket.display());
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "-v",
            &mount,
            "--entrypoint",
            "/standin",
            &image.tag,
            "sleep",
        ]);
        Agent(Container(name))
    }

    /// `envctl ARGS` in the agent, to its end.
    fn envctl(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.0.0, "/envctl"])
            .args(args)
            .output()
            .expect("docker exec")
    }

    /// `envctl ARGS` in the agent, in the background.
    fn envctl_detached(&self, args: &[&str]) {
        let mut all = vec!["exec", "-d", &self.0.0, "/envctl"];
        all.extend(args);
        docker(&all);
    }

    /// The networks the agent is on, by name, sorted.
    fn networks(&self) -> Vec<String> {
        let names = docker(&[
            "inspect",
            "-f",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
            &self.0.0,
        ]);
        let mut names: Vec<String> = names.split_whitespace().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Waits until a `run` in the agent runs its command (`/standin sleep` beside the agent's
    /// own), on the environment's network besides `network`.
    fn wait_for_command(&self, network: &str) {
        wait_until("the command runs", Duration::from_secs(60), || {
            let sleeping = self.busybox(&["pidof", "standin"]);
            let pids = String::from_utf8_lossy(&sleeping.stdout)
                .split_whitespace()
                .count();
            pids >= 2 && self.networks().len() == 2
        });
        assert!(self.networks().contains(&network.to_owned()));
    }

    fn envctl_runs(&self) -> bool {
        self.busybox(&["pidof", "envctl"]).status.success()
    }

    /// Sends `signal` to envctl in the agent, as Ctrl-C or a kill would.
    fn signal_envctl(&self, signal: &str) {
        let script = format!("kill -{signal} $(/busybox pidof envctl)");
        let output = self.busybox(&["sh", "-c", &script]);
        assert!(output.status.success(), "{}", texts(&output).1);
    }

    fn busybox(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.0.0, "/busybox"])
            .args(args)
            .output()
            .expect("docker exec")
    }
}

/// A container by name, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

impl Drop for EnvctlImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

fn short_hash(args: &[&str]) -> u32 {
    args.iter()
        .flat_map(|a| a.bytes())
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 100_000
}

/// A copy of `binary` without its debug sections (a debug build is mostly those), or a plain
/// copy where `strip` is missing.
fn copy_stripped(binary: &Path, target: &Path) {
    std::fs::create_dir_all(target.parent().expect("parent")).expect("rootfs");
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(target)
        .arg(binary)
        .status()
        .is_ok_and(|status| status.success());
    if !stripped {
        std::fs::copy(binary, target).expect("copy envctl");
    }
}

/// The shared libraries `binary` loads, with its program interpreter, as `ldd` lists them.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("run ldd");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A user-defined bridge network, removed when dropped.
struct Network {
    name: String,
}

impl Network {
    fn create(name: &str) -> Network {
        docker(&["network", "create", "--label", "io.envctl.test=reach", name]);
        Network {
            name: name.to_owned(),
        }
    }

    fn gateway(&self) -> String {
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &self.name,
        ])
        .trim()
        .to_owned()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}
