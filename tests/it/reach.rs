//! envctl where CI runs it: inside a container on a network of its own with the host's Docker
//! socket mounted (a Jenkins agent in Docker), where the environment's container addresses do
//! not answer and published ports answer at the container's default gateway.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{TestEnv, standin, unique};

/// The demo's chain, every probed port published. The database listens only after 6 s, longer
/// than `accounting` waits for it: a probe that passed on the port proxy's accept alone would
/// start `accounting` too early, and the start would fail.
const CHAIN: &str = r#"  oracle-xe:
    image: envctl-demo/oracle-xe
    command: [serve, --name, oracle-xe, --port, "1521", --delay, 6s]
    ports: [1521]
    ready:
      tcp: 1521
  accounting:
    image: envctl-demo/oracle-xe
    command: [serve, --name, accounting, --requires, "oracle:1521"]
    links: ["oracle-xe:oracle"]
    ports: [8080]
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

/// A probe on a port that is not published: from inside another container it cannot work.
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

#[test]
fn envctl_in_a_container_reaches_its_environment() {
    let Some(socket) = engine_socket() else {
        eprintln!("skipped: the engine is not behind a local unix socket");
        return;
    };
    let chain = TestEnv::new("incontainer", CHAIN);
    let unpublished = TestEnv::new("incontainer-unpub", UNPUBLISHED);
    let astray = TestEnv::new("incontainer-astray", PUBLISHED);
    let files = [chain.file(), unpublished.file(), astray.file()];
    let image = EnvctlImage::build("incontainer", &files);
    let network = Network::create(&unique("incontainer-net"));

    let run = image.run(
        &network.name,
        &socket,
        &[],
        &[
            "run",
            "-f",
            &format!("/env/{}.yaml", chain.name),
            "--",
            "/standin",
            "fetch",
            "ENVCTL_PROXY_8080",
            "/",
        ],
    );
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("proxy -> accounting ok"), "{stdout}");
    assert!(stdout.contains("accounting -> oracle:1521 ok"), "{stdout}");
    // Reached at the container's default gateway: its network's gateway on the host.
    let gateway = network.gateway();
    assert!(
        stdout.contains(&format!("ENVCTL_PROXY_8080={gateway}:")),
        "expected the proxy at the gateway {gateway}:\n{stdout}"
    );
    chain.assert_nothing_left();

    let up = image.run(
        &network.name,
        &socket,
        &[],
        &["up", "-f", &format!("/env/{}.yaml", unpublished.name)],
    );
    let (_, stderr) = texts(&up);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("port 1521 is probed but not published, and container addresses do not answer from where envctl runs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: add 1521 to the service's `ports:`"),
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
