//! `engine::docker::Docker` against the real Docker engine `DOCKER_HOST` names.
//!
//! The tests need no registry: they build a `FROM scratch` image around the static stand-in
//! binary (`demo/build-standin.sh`) with the engine's own `build_image`. Every test labels what
//! it creates with its own value of [`TEST_LABEL`] and removes it by that label when it ends,
//! failed or not, so the tests run in parallel and leave no containers or networks behind.
//! Images stay: their tags derive from their content, so reruns reuse them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use envctl::backend::bollard::connect::Origin;
use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{
    BackendError, ContainerSpec, ContainerState, Filter, Labels, LogLine, LogOptions, NetworkSpec,
};
use envctl::lifecycle::probe;
use envctl::spec::{Port, PortMapping, Protocol, Runtime};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPOSITORY: &str = "envctl-test/engine";
/// The label key every test resource carries; its value names the test's fixture.
const TEST_LABEL: &str = "io.envctl.test.engine";
/// Generous bounds for things a healthy engine does in well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Images

struct Images {
    /// The stand-in, `CMD ["sleep"]`, no healthcheck.
    plain: String,
    /// The stand-in with a HEALTHCHECK probing TCP port 8080.
    health: String,
}

const PLAIN_DOCKERFILE: &str = "\
FROM scratch
COPY standin /standin
ENTRYPOINT [\"/standin\"]
CMD [\"sleep\"]
";

const HEALTH_DOCKERFILE: &str = "\
FROM scratch
COPY standin /standin
ENTRYPOINT [\"/standin\"]
HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD [\"/standin\", \"probe\", \"tcp\", \"8080\"]
CMD [\"serve\", \"--port\", \"8080\"]
";

/// The test images, built once per test binary.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let standin = standin();
        let tag = |kind: &str, dockerfile: &str| {
            let mut hasher = DefaultHasher::new();
            (dockerfile, &standin).hash(&mut hasher);
            format!("{REPOSITORY}:{kind}-{:016x}", hasher.finish())
        };
        let images = Images {
            plain: tag("plain", PLAIN_DOCKERFILE),
            health: tag("health", HEALTH_DOCKERFILE),
        };
        let context = context(&standin);
        let builds = [
            ("Dockerfile", images.plain.clone()),
            ("Dockerfile.health", images.health.clone()),
        ];
        block_on_fresh_runtime(async move {
            let docker = Docker::connect().await.expect("connect to Docker");
            for (dockerfile, tag) in builds {
                docker
                    .build_image(context.clone(), dockerfile, &tag)
                    .await
                    .unwrap_or_else(|error| panic!("build {tag}: {error}"));
            }
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        images
    })
}

/// The static stand-in binary.
fn standin() -> Vec<u8> {
    let binary = crate::harness::standin();
    std::fs::read(&binary).unwrap_or_else(|error| panic!("read {}: {error}", binary.display()))
}

/// A build context holding the stand-in and the test Dockerfiles.
fn context(standin: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
            .expect("tar entry");
    };
    add("standin", 0o755, standin);
    add("Dockerfile", 0o644, PLAIN_DOCKERFILE.as_bytes());
    add("Dockerfile.health", 0o644, HEALTH_DOCKERFILE.as_bytes());
    add(
        "Dockerfile.broken",
        0o644,
        b"FROM scratch\nCOPY standin /standin\nCOPY missing-file /missing-file\n",
    );
    tar.into_inner().expect("tar")
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own: usable from
/// within a test's runtime and from `Drop`. `Err` when it panicked.
fn block_on_fresh_runtime<F>(future: F) -> std::thread::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
}

// ---------------------------------------------------------------------------------------------
// Fixture

/// A test's connection and namespace. Dropping it removes every container and network that
/// carries its label.
struct Fixture {
    docker: Docker,
    /// Unique per fixture: the prefix of names and the value of the test label.
    id: String,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let id = format!(
            "envctl-test-{test}-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let docker = Docker::connect().await.expect("connect to Docker");
        Fixture { docker, id }
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.id)
    }

    fn label_filter(&self) -> Filter {
        Filter::Id(self.id.clone())
    }

    /// Under envctl's id key, without its managed-by label: no `ls` or reaper ever sees them.
    fn labels(&self) -> Labels {
        Labels::from([
            (TEST_LABEL.to_owned(), self.id.clone()),
            (envctl::naming::label::ID.to_owned(), self.id.clone()),
        ])
    }

    async fn network(&self) -> String {
        self.docker
            .create_network(&NetworkSpec {
                name: self.name("net"),
                labels: self.labels(),
            })
            .await
            .expect("create network")
    }

    /// A stand-in container on `network` running `args`.
    fn spec(&self, what: &str, network: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: self.name(what),
            image: images().plain.clone(),
            command: Some(args.iter().map(|arg| arg.to_string()).collect()),
            labels: self.labels(),
            network: network.to_owned(),
            ..ContainerSpec::default()
        }
    }

    async fn run(&self, spec: &ContainerSpec) -> String {
        let id = self
            .docker
            .create_container(spec)
            .await
            .expect("create container");
        self.docker.start_container(&id).await.expect("start");
        id
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let filter = vec![self.label_filter()];
        // Never panic here: this may run while the test unwinds.
        let cleanup = block_on_fresh_runtime(async move {
            match docker.list_containers(&filter).await {
                Ok(containers) => {
                    for container in containers {
                        if let Err(error) = docker.remove_container(&container.id).await {
                            eprintln!("cleanup: {error}");
                        }
                    }
                }
                Err(error) => eprintln!("cleanup: {error}"),
            }
            match docker.list_networks(&filter).await {
                Ok(networks) => {
                    for network in networks {
                        if let Err(error) = docker.remove_network(&network.id).await {
                            eprintln!("cleanup: {error}");
                        }
                    }
                }
                Err(error) => eprintln!("cleanup: {error}"),
            }
        });
        if cleanup.is_err() {
            eprintln!("cleanup of {} failed", self.id);
        }
    }
}

/// Follows the logs of `id` until a line contains `needle`; returns the lines so far.
async fn wait_for_line(docker: &Docker, id: &str, needle: &str) -> Vec<LogLine> {
    let options = LogOptions {
        follow: true,
        tail: None,
        timestamps: false,
        since: None,
    };
    let mut lines = docker.logs(id, options);
    let mut seen = Vec::new();
    let search = async {
        while let Some(line) = lines.next().await {
            let line = line.expect("log line");
            let found = line.text.contains(needle);
            seen.push(line);
            if found {
                return true;
            }
        }
        false
    };
    let found = tokio::time::timeout(PATIENCE, search).await;
    assert!(
        matches!(found, Ok(true)),
        "no line with {needle:?} in the logs of {id}: {seen:#?}"
    );
    seen
}

async fn all_logs(docker: &Docker, id: &str, options: LogOptions) -> Vec<LogLine> {
    let lines: Vec<_> = tokio::time::timeout(PATIENCE, docker.logs(id, options).collect())
        .await
        .expect("logs end");
    lines
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("log lines")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn container_lifecycle() {
    let fixture = Fixture::new("lifecycle").await;
    let docker = &fixture.docker;
    assert!(docker.reaches_container_ips() || docker.endpoint().starts_with("tcp://"));
    let network = fixture.network().await;
    let mut spec = fixture.spec(
        "web",
        &network,
        &["serve", "--name", "web", "--port", "8080"],
    );
    spec.runtime.ports = vec![random_port(8080)];
    spec.env = vec!["GREETING=hello".into()];
    spec.aliases = vec!["web".into()];

    let id = docker.create_container(&spec).await.expect("create");
    let created = docker.inspect_container(&id).await.expect("inspect");
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.exit_code, None);
    assert_eq!(created.started_at, None);

    docker.start_container(&id).await.expect("start");
    wait_for_line(docker, &id, "web: ready on port 8080").await;

    let running = docker.inspect_container(&id).await.expect("inspect");
    assert_eq!(running.id, id);
    assert_eq!(running.state, ContainerState::Running);
    assert_eq!(running.exit_code, None);
    assert_eq!(running.health, None, "the plain image has no healthcheck");
    assert_eq!(running.restarts, 0);
    assert!(running.started_at.is_some());
    assert_eq!(running.finished_at, None);
    assert!(running.ip.is_some());
    let [port] = running.ports.as_slice() else {
        panic!("one published port expected: {:?}", running.ports);
    };
    assert_eq!((port.container_port, port.protocol.as_str()), (8080, "tcp"));
    assert!(port.host_port > 0);

    // Listed by its label.
    let listed = docker
        .list_containers(&[fixture.label_filter()])
        .await
        .expect("list");
    let [summary] = listed.as_slice() else {
        panic!("one container expected: {listed:#?}");
    };
    assert_eq!(summary.id, id);
    assert_eq!(summary.name, spec.name);
    assert_eq!(summary.image, spec.image);
    assert_eq!(summary.state, ContainerState::Running);
    assert!(summary.status.starts_with("Up"), "{}", summary.status);
    assert_eq!(summary.labels.get(TEST_LABEL), Some(&fixture.id));
    assert!(
        summary.ports.iter().any(|p| p.container_port == 8080
            && p.host_port == port.host_port
            && p.host_ip == "0.0.0.0"),
        "{:?}",
        summary.ports
    );
    let other = docker
        .list_containers(&[Filter::Id(format!("not-{}", fixture.id))])
        .await
        .expect("list");
    assert!(other.iter().all(|c| c.id != id));
    // All filters must match.
    let both = docker
        .list_containers(&[fixture.label_filter(), Filter::Run("no-such-run".into())])
        .await
        .expect("list");
    assert!(both.iter().all(|c| c.id != id), "{both:?}");

    // Exec: success and failure, with the output.
    let ok = docker
        .exec(&id, &strings(&["/standin", "probe", "tcp", "8080"]))
        .await
        .expect("exec");
    assert_eq!(ok.exit_code, 0, "{}", ok.output);
    let failed = docker
        .exec(&id, &strings(&["/standin", "probe", "tcp", "9"]))
        .await
        .expect("exec");
    assert_eq!(failed.exit_code, 1);
    assert!(failed.output.contains("probe failed"), "{}", failed.output);
    let missing = docker
        .exec(&id, &strings(&["/no-such-binary"]))
        .await
        .expect("exec");
    assert_ne!(missing.exit_code, 0, "{}", missing.output);

    // Logs: everything, the last line only, with timestamps.
    let all = all_logs(
        docker,
        &id,
        LogOptions {
            follow: false,
            tail: None,
            timestamps: false,
            since: None,
        },
    )
    .await;
    let texts: Vec<&str> = all.iter().map(|line| line.text.as_str()).collect();
    assert_eq!(texts[0], "web: starting");
    assert!(
        texts.contains(&"web: listening on 0.0.0.0:8080"),
        "{texts:?}"
    );
    assert!(all.iter().all(|line| line.timestamp.is_none()));
    let last = all_logs(
        docker,
        &id,
        LogOptions {
            follow: false,
            tail: Some(1),
            timestamps: true,
            since: None,
        },
    )
    .await;
    let [last] = last.as_slice() else {
        panic!("tail 1 gave {last:?}");
    };
    assert_eq!(last.text, all.last().unwrap().text);
    let timestamp = last.timestamp.as_deref().expect("timestamp");
    assert!(
        timestamp.starts_with("20") && timestamp.contains('T') && timestamp.ends_with('Z'),
        "{timestamp}"
    );

    // Stop (twice: stopping a stopped container is fine), then remove (twice as well).
    let stopping = Instant::now();
    docker
        .stop_container(&id, Duration::from_secs(10))
        .await
        .expect("stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the stand-in exits on SIGTERM"
    );
    docker
        .stop_container(&id, Duration::from_secs(10))
        .await
        .expect("stop again");
    let stopped = docker.inspect_container(&id).await.expect("inspect");
    assert_eq!(stopped.state, ContainerState::Exited);
    assert_eq!(stopped.exit_code, Some(0));
    assert!(stopped.finished_at.is_some());
    assert_eq!(docker.wait_container(&id).await.expect("wait"), 0);

    docker.remove_container(&id).await.expect("remove");
    docker.remove_container(&id).await.expect("remove again");
    assert!(matches!(
        docker.inspect_container(&id).await,
        Err(BackendError::NotFound {
            kind: "container",
            ..
        })
    ));
    docker
        .remove_network(&network)
        .await
        .expect("remove network");
    docker
        .remove_network(&network)
        .await
        .expect("remove network again");
}

#[tokio::test]
async fn wait_reports_the_exit_code() {
    let fixture = Fixture::new("wait").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let failing = fixture.spec(
        "failing",
        &network,
        &["exit", "3", "--delay", "300ms", "--message", "boom"],
    );
    let id = docker.create_container(&failing).await.expect("create");
    docker.start_container(&id).await.expect("start");
    assert_eq!(docker.wait_container(&id).await.expect("wait"), 3);
    // Waiting again for an exited container answers at once.
    assert_eq!(docker.wait_container(&id).await.expect("wait"), 3);

    let details = docker.inspect_container(&id).await.expect("inspect");
    assert_eq!(details.state, ContainerState::Exited);
    assert_eq!(details.exit_code, Some(3));
    assert!(details.finished_at.is_some());

    // Following the logs of an exited container ends.
    let lines = all_logs(
        docker,
        &id,
        LogOptions {
            follow: true,
            tail: Some(2),
            timestamps: false,
            since: None,
        },
    )
    .await;
    let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
    assert_eq!(texts, ["standin: boom", "standin: exiting with code 3"]);

    let succeeding = fixture.spec("succeeding", &network, &["exit", "0"]);
    let id = fixture.run(&succeeding).await;
    assert_eq!(docker.wait_container(&id).await.expect("wait"), 0);
}

#[tokio::test]
async fn names_are_taken_once() {
    let fixture = Fixture::new("taken").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let spec = fixture.spec("only", &network, &["sleep"]);
    docker.create_container(&spec).await.expect("create");
    match docker.create_container(&spec).await {
        Err(BackendError::Taken(name)) => assert_eq!(name, spec.name),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    // Docker 20.10 checks network names only when asked to.
    let duplicate = NetworkSpec {
        name: fixture.name("net"),
        labels: fixture.labels(),
    };
    match docker.create_network(&duplicate).await {
        Err(BackendError::Taken(name)) => assert_eq!(name, duplicate.name),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let networks = docker
        .list_networks(&[fixture.label_filter()])
        .await
        .expect("list networks");
    assert_eq!(networks.len(), 1, "{networks:?}");
    assert_eq!(networks[0].id, network);
    assert_eq!(networks[0].name, duplicate.name);
    assert_eq!(networks[0].labels, fixture.labels());
    let other = docker
        .list_networks(&[fixture.label_filter(), Filter::Run("no-such-run".into())])
        .await
        .expect("list networks");
    assert!(other.iter().all(|n| n.id != network));
}

#[tokio::test]
async fn renames_are_atomic_and_networks_tell_who_is_attached() {
    let fixture = Fixture::new("rename").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let first = fixture.spec("first", &network, &["sleep"]);
    let second = fixture.spec("second", &network, &["sleep"]);
    let id = docker.create_container(&first).await.expect("create");
    docker.create_container(&second).await.expect("create");
    let renamed = fixture.name("renamed");
    docker
        .rename_container(&id, &renamed)
        .await
        .expect("rename");
    assert_eq!(
        docker
            .inspect_container(&renamed)
            .await
            .expect("inspect")
            .id,
        id
    );
    match docker.rename_container(&id, &second.name).await {
        Err(BackendError::Taken(name)) => assert_eq!(name, second.name),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(
        docker
            .network_containers(&network)
            .await
            .expect("inspect")
            .is_empty(),
        "created containers are not attached yet"
    );
    docker.start_container(&id).await.expect("start");
    let attached = docker.network_containers(&network).await.expect("inspect");
    let names: Vec<&str> = attached.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, [renamed.as_str()]);
}

#[tokio::test]
async fn aliases_resolve_on_the_network() {
    let fixture = Fixture::new("aliases").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let mut database = fixture.spec(
        "database",
        &network,
        &["serve", "--name", "db", "--port", "5432"],
    );
    database.aliases = vec!["db".into(), "oracle".into()];
    let mut app = fixture.spec(
        "app",
        &network,
        &[
            "serve",
            "--name",
            "app",
            "--port",
            "8080",
            "--requires",
            "oracle:5432",
        ],
    );
    app.aliases = vec!["app".into()];

    fixture.run(&database).await;
    let app = fixture.run(&app).await;
    let lines = wait_for_line(docker, &app, "app: ready on port 8080").await;
    assert!(
        lines
            .iter()
            .any(|line| line.text == "app: dependency oracle:5432 reachable"),
        "{lines:#?}"
    );
    let details = docker.inspect_container(&app).await.expect("inspect");
    assert_eq!(details.state, ContainerState::Running);
}

#[tokio::test]
async fn healthcheck_status() {
    let fixture = Fixture::new("health").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let mut spec = fixture.spec("healthy", &network, &["serve", "--port", "8080"]);
    spec.image = images().health.clone();
    let id = fixture.run(&spec).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let details = docker.inspect_container(&id).await.expect("inspect");
        match details.health.as_deref() {
            Some("healthy") => break,
            Some("starting") if Instant::now() < deadline => {}
            other => panic!("unexpected health {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn images_and_tags() {
    let images = images();
    let docker = Docker::connect().await.expect("connect");

    let plain = docker.inspect_image(&images.plain).await.expect("inspect");
    assert_eq!(plain.expect("plain image").healthcheck, None);
    let health = docker.inspect_image(&images.health).await.expect("inspect");
    assert_eq!(
        health.expect("health image").healthcheck,
        Some(strings(&["CMD", "/standin", "probe", "tcp", "8080"]))
    );
    let missing = format!("{REPOSITORY}:does-not-exist");
    assert_eq!(docker.inspect_image(&missing).await.expect("inspect"), None);

    let tags = docker.image_tags(REPOSITORY).await.expect("tags");
    for image in [&images.plain, &images.health] {
        let (_, tag) = image.rsplit_once(':').unwrap();
        assert!(tags.iter().any(|t| t == tag), "{tag} not in {tags:?}");
    }

    // A repository under a registry with a port: the filter and the split must cope.
    let (_, plain_tag) = images.plain.rsplit_once(':').unwrap();
    let registry_repository = format!("localhost:5000/{REPOSITORY}");
    let registry_image = format!("{registry_repository}:{plain_tag}");
    docker
        .build_image(context(&standin()), "Dockerfile", &registry_image)
        .await
        .expect("build");
    let registry_tags = docker.image_tags(&registry_repository).await.expect("tags");
    assert!(
        registry_tags.iter().any(|t| t == plain_tag),
        "{registry_tags:?}"
    );
    assert!(
        docker
            .image_tags("localhost:5000/envctl-test")
            .await
            .expect("tags")
            .is_empty()
    );
    assert!(
        docker
            .image_tags("envctl-test/no-such-repository")
            .await
            .expect("tags")
            .is_empty()
    );
}

#[tokio::test]
async fn build_failure_shows_the_output() {
    let docker = Docker::connect().await.expect("connect");
    let tag = format!("{REPOSITORY}:broken");
    match docker
        .build_image(context(&standin()), "Dockerfile.broken", &tag)
        .await
    {
        Err(BackendError::Operation { operation, reason }) => {
            assert_eq!(operation, format!("build image `{tag}`"));
            assert!(reason.contains("missing-file"), "{reason}");
            assert!(reason.contains("last build output:"), "{reason}");
            assert!(reason.contains("Step 3/3"), "{reason}");
        }
        other => panic!("expected a failed build, got {other:?}"),
    }
    assert_eq!(docker.inspect_image(&tag).await.expect("inspect"), None);
}

#[tokio::test]
async fn pull_failure_names_the_image() {
    let docker = Docker::connect().await.expect("connect");
    let pulling = docker.pull_image("localhost:1/envctl-test/nothing", "latest", &|_| {});
    match tokio::time::timeout(PATIENCE, pulling)
        .await
        .expect("pull ends")
    {
        Err(BackendError::Operation { operation, reason }) => {
            assert_eq!(
                operation,
                "pull image `localhost:1/envctl-test/nothing:latest`"
            );
            assert!(!reason.is_empty());
            assert!(!reason.contains("DockerResponseServerError"), "{reason}");
        }
        other => panic!("expected a failed pull, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_objects() {
    let fixture = Fixture::new("missing").await;
    let docker = &fixture.docker;
    let missing = fixture.name("nothing");
    assert!(matches!(
        docker.start_container(&missing).await,
        Err(BackendError::NotFound { kind: "container", name }) if name == missing
    ));
    assert!(matches!(
        docker.inspect_container(&missing).await,
        Err(BackendError::NotFound {
            kind: "container",
            ..
        })
    ));
    assert!(matches!(
        docker.wait_container(&missing).await,
        Err(BackendError::NotFound {
            kind: "container",
            ..
        })
    ));
    assert!(matches!(
        docker.exec(&missing, &strings(&["/standin"])).await,
        Err(BackendError::NotFound {
            kind: "container",
            ..
        })
    ));
    let mut logs = docker.logs(
        &missing,
        LogOptions {
            follow: false,
            tail: None,
            timestamps: false,
            since: None,
        },
    );
    assert!(matches!(
        logs.next().await,
        Some(Err(BackendError::NotFound {
            kind: "container",
            ..
        }))
    ));
    assert!(logs.next().await.is_none());
    docker
        .stop_container(&missing, Duration::from_secs(1))
        .await
        .expect("stopping a missing container is fine");
    docker
        .remove_container(&missing)
        .await
        .expect("removing a missing container is fine");
    docker
        .remove_network(&missing)
        .await
        .expect("removing a missing network is fine");

    let network = fixture.network().await;
    let mut spec = fixture.spec("imageless", &network, &["sleep"]);
    spec.image = format!("{REPOSITORY}:does-not-exist");
    assert!(matches!(
        docker.create_container(&spec).await,
        Err(BackendError::NotFound { kind: "image", name }) if name == spec.image
    ));
    // Docker 20.10 creates a container on a missing network and fails to start it; newer
    // engines refuse the create.
    let spec = fixture.spec("networkless", &fixture.name("no-network"), &["sleep"]);
    match docker.create_container(&spec).await {
        Err(BackendError::NotFound {
            kind: "network",
            name,
        }) => assert_eq!(name, spec.network),
        Ok(id) => match docker.start_container(&id).await {
            Err(BackendError::Operation { operation, reason }) => {
                assert_eq!(operation, format!("start container `{id}`"));
                assert!(reason.contains("not found"), "{reason}");
            }
            other => panic!("expected a failed start, got {other:?}"),
        },
        Err(other) => panic!("expected NotFound, got {other:?}"),
    }

    // Exec in a container that is not running.
    let created = docker
        .create_container(&fixture.spec("idle", &network, &["sleep"]))
        .await
        .expect("create");
    match docker.exec(&created, &strings(&["/standin"])).await {
        Err(BackendError::Operation { operation, reason }) => {
            assert!(operation.contains(&created), "{operation}");
            assert!(reason.contains("not running"), "{reason}");
        }
        other => panic!("expected a failed exec, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_engines_fail_fast() {
    let started = Instant::now();
    match Docker::connect_to("unix:///nonexistent.sock").await {
        Err(BackendError::Unreachable {
            endpoint,
            origin,
            reason,
            ..
        }) => {
            assert_eq!(endpoint, "unix:///nonexistent.sock");
            assert_eq!(origin, Origin::Flag.to_string());
            assert!(reason.contains("/nonexistent.sock"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Nothing listens on port 1.
    match Docker::connect_to("tcp://127.0.0.1:1").await {
        Err(BackendError::Unreachable {
            endpoint, reason, ..
        }) => {
            assert_eq!(endpoint, "tcp://127.0.0.1:1");
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // A socket file nobody listens on.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let endpoint = format!("unix://{}", path.display());
    assert!(matches!(
        Docker::connect_to(&endpoint).await,
        Err(BackendError::Unreachable { .. })
    ));

    // A socket that accepts but never answers: the connect timeout applies.
    let path = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let endpoint = format!("unix://{}", path.display());
    let started = Instant::now();
    match Docker::connect_to(&endpoint).await {
        Err(BackendError::Unreachable { reason, .. }) => {
            assert!(reason.contains("did not answer"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // ssh runs `ssh`; a login that fails (nothing listens, or nobody may log in) says where.
    let started = Instant::now();
    match Docker::connect_to("ssh://nobody@127.0.0.1").await {
        Err(error @ BackendError::Unreachable { .. }) => {
            let text = error.to_string();
            let expected = "cannot reach the Docker engine at \
                            `ssh://nobody@127.0.0.1` (from `--host`): ";
            assert!(text.starts_with(expected), "{text}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));

    match Docker::connect_to("npipe:////./pipe/docker_engine").await {
        Err(BackendError::Unreachable { reason, .. }) => assert!(reason.contains("scheme")),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn received_bytes_grow_with_traffic() {
    let fixture = Fixture::new("traffic").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let mut spec = fixture.spec(
        "web",
        &network,
        &["serve", "--name", "web", "--port", "8080"],
    );
    spec.runtime.ports = vec![random_port(8080)];
    let id = fixture.run(&spec).await;
    wait_for_line(docker, &id, "web: ready on port 8080").await;
    let port = docker.inspect_container(&id).await.expect("inspect").ports[0].host_port;

    let before = docker.traffic(&id).await.expect("stats").received;
    let path = format!("/{}", "x".repeat(4000));
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect((docker.published_host(), port))
        .await
        .expect("connect to the published port");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let after = docker.traffic(&id).await.expect("stats").received;
    assert!(
        after >= before + request.len() as u64,
        "received {before} bytes before, {after} after a {}-byte request",
        request.len()
    );
}

/// A TCP endpoint, through a TCP-to-socket relay in front of the local engine: no container
/// addresses, published ports on the endpoint's host, and the streaming calls (logs, exec)
/// over plain HTTP.
#[tokio::test]
async fn tcp_endpoints() {
    let fixture = Fixture::new("tcp").await;
    let Some(socket) = fixture.docker.endpoint().strip_prefix("unix://") else {
        eprintln!("skipped: the engine is not behind a local socket");
        return;
    };
    let socket = socket.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let relay = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });

    let endpoint = format!("tcp://127.0.0.1:{port}");
    let remote = Docker::connect_to(&endpoint)
        .await
        .expect("connect over TCP");
    assert_eq!(remote.endpoint(), endpoint);
    assert_eq!(remote.published_host(), "127.0.0.1");
    remote.ping().await.expect("ping");

    let network = fixture.network().await;
    let spec = fixture.spec("remote", &network, &["sleep", "--name", "remote"]);
    let id = remote.create_container(&spec).await.expect("create");
    remote.start_container(&id).await.expect("start");
    wait_for_line(&remote, &id, "remote: sleeping").await;
    let probe = remote
        .exec(&id, &strings(&["/standin", "probe", "tcp", "9"]))
        .await
        .expect("exec");
    assert_eq!(probe.exit_code, 1);
    assert!(probe.output.contains("probe failed"), "{}", probe.output);
    remote.remove_container(&id).await.expect("remove");
    relay.abort();
}

/// Regression: a `tcp:` probe through a published port passed as soon as Docker's port proxy
/// accepted the connection, before the service listened (the proxy accepts, dials the
/// container, and closes the connection when the service refuses).
#[tokio::test]
async fn tcp_probe_passed_on_docker_proxy_accept() {
    let fixture = Fixture::new("proxy-accept").await;
    let docker = &fixture.docker;
    let network = fixture.network().await;
    let published = |id: String| async move {
        let port = docker.inspect_container(&id).await.expect("inspect").ports[0].host_port;
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    };

    // Nothing listens on the published port 8080.
    let mut quiet = fixture.spec("quiet", &network, &["sleep", "--name", "quiet"]);
    quiet.runtime.ports = vec![random_port(8080)];
    let id = fixture.run(&quiet).await;
    wait_for_line(docker, &id, "quiet: sleeping").await;
    let address = published(id).await;
    let accepted = tokio::net::TcpStream::connect(address).await.is_ok();
    eprintln!("the port proxy accepts although nothing listens: {accepted}");
    let verdict = probe::reaches_through_published_port(address).await;
    assert!(
        verdict.is_err(),
        "passed with nothing listening behind {address}"
    );

    // A service that listens passes.
    let mut web = fixture.spec(
        "web",
        &network,
        &["serve", "--name", "web", "--port", "8080"],
    );
    web.runtime.ports = vec![random_port(8080)];
    let id = fixture.run(&web).await;
    wait_for_line(docker, &id, "web: ready on port 8080").await;
    let address = published(id).await;
    probe::reaches_through_published_port(address)
        .await
        .unwrap_or_else(|error| panic!("the listening service at {address}: {error}"));
}

// ---------------------------------------------------------------------------------------------
// The Docker backend, on the same engine

#[tokio::test]
async fn the_docker_backend_claims_marks_lists_and_releases_an_environment() {
    use envctl::backend::docker::DockerBackend;
    use envctl::backend::{
        Backend, BackendError, Health, Marker, MarkerKind, Metadata, ResolvedImage, Selector,
        ServiceSpec, ServiceState,
    };
    use envctl::spec::{ImageRef, Port, Protocol, Ready};

    let fixture = Fixture::new("backend").await;
    let backend = DockerBackend::new(fixture.docker.clone());
    let metadata = Metadata {
        environment: Some("backend".into()),
        run: Some(fixture.id.clone()),
        services: Some(vec!["web".into()]),
        ..Metadata::new(fixture.id.clone())
    };
    backend.claim(&metadata).await.expect("claim");
    match backend.claim(&metadata).await {
        Err(BackendError::Taken(id)) => assert_eq!(id, fixture.id),
        other => panic!("expected Taken, got {other:?}"),
    }
    let network = backend
        .create_isolation(&metadata)
        .await
        .expect("isolation");
    let (repository, tag) = images().health.rsplit_once(':').unwrap();
    let image = ImageRef {
        repository: repository.into(),
        tag: tag.into(),
    };
    let resolved: ResolvedImage = backend
        .resolve_image(&image)
        .await
        .expect("resolve")
        .expect("the image is local");
    assert!(resolved.healthcheck.is_some(), "decoded from the image");
    let spec = ServiceSpec {
        service: "web".into(),
        image: resolved,
        command: None,
        env: vec![("GREETING".into(), "hello".into())],
        runtime: Runtime {
            ports: vec![PortMapping::random(Port {
                number: 8080,
                protocol: Protocol::Tcp,
            })],
            ..Runtime::default()
        },
        aliases: vec!["web".into()],
        address: None,
        depends_on: Default::default(),
        ready: Ready {
            probes: Vec::new(),
            timeout: PATIENCE,
        },
        reference: None,
        metadata: metadata.clone(),
    };
    let web = backend
        .create_service(&network, &spec)
        .await
        .expect("create service");
    assert_eq!(
        backend.status(&web).await.unwrap().state,
        ServiceState::Pending
    );
    backend.start_service(&web).await.expect("start");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let status = backend.status(&web).await.expect("status");
        if status.health == Health::Healthy || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.state, ServiceState::Running);
    assert_eq!(
        status.health,
        Health::Healthy,
        "typed, from Docker's health word"
    );
    assert!(status.started_at.is_some() && status.finished_at.is_none());
    let [endpoint] = status.endpoints.as_slice() else {
        panic!("one endpoint expected: {:?}", status.endpoints);
    };
    assert_eq!(endpoint.container_port.number, 8080);
    assert!(endpoint.port > 0 && !endpoint.host.is_empty() && endpoint.host != "0.0.0.0");

    let until = chrono::Utc::now() + chrono::Duration::minutes(2);
    for marker in [Marker::Ready, Marker::Pinned, Marker::Lease(until)] {
        backend.set_marker(&metadata, marker).await.expect("mark");
    }
    let later = until + chrono::Duration::minutes(1);
    backend
        .set_marker(&metadata, Marker::Lease(later))
        .await
        .expect("renew the lease");
    let listed = backend
        .list(&Selector::Id(fixture.id.clone()))
        .await
        .expect("list");
    let [record] = listed.as_slice() else {
        panic!("one environment expected: {listed:#?}");
    };
    assert!(record.markers.claimed && record.markers.ready && record.markers.pinned);
    assert_eq!(
        record.markers.lease_until.map(|t| t.timestamp()),
        Some(later.timestamp()),
        "renewed, not doubled"
    );
    assert_eq!(record.metadata, metadata);
    assert_eq!(record.services.len(), 1);
    assert_eq!(record.services[0].handle, web);
    assert_eq!(record.services[0].status.state, ServiceState::Running);
    assert_eq!(record.isolation, std::slice::from_ref(&network));
    let by_run = backend
        .list(&Selector::Run(fixture.id.clone()))
        .await
        .expect("list by run");
    assert_eq!(by_run.len(), 1);

    backend.remove_service(&web, None).await.expect("remove");
    backend
        .remove_service(&web, None)
        .await
        .expect("removing twice is fine");
    assert_eq!(
        backend.status(&web).await.unwrap().state,
        ServiceState::Missing
    );
    backend.remove_isolation(&network).await.expect("network");
    for kind in [MarkerKind::Pinned, MarkerKind::Lease, MarkerKind::Ready] {
        backend
            .clear_marker(&fixture.id, kind)
            .await
            .expect("clear");
        backend
            .clear_marker(&fixture.id, kind)
            .await
            .expect("idempotent");
    }
    let claimed_only = backend
        .list(&Selector::Id(fixture.id.clone()))
        .await
        .expect("list");
    assert_eq!(claimed_only.len(), 1);
    assert_eq!(
        claimed_only[0].markers,
        envctl::backend::Markers {
            claimed: true,
            ..Default::default()
        },
        "the claim goes last"
    );
    backend.release(&fixture.id).await.expect("release");
    let gone = backend
        .list(&Selector::Id(fixture.id.clone()))
        .await
        .expect("list");
    assert!(gone.is_empty(), "{gone:#?}");
}

/// A TCP container port published on a random host port.
fn random_port(number: u16) -> PortMapping {
    PortMapping::random(Port {
        number,
        protocol: Protocol::Tcp,
    })
}

/// Networks created at once each get a subnet of their own (so a replaced service can keep its
/// address): the engine refuses an overlapping one, and the loser takes the next.
#[tokio::test]
async fn networks_created_at_once_each_get_a_subnet_of_their_own() {
    let fixture = Fixture::new("subnets").await;
    let specs: Vec<NetworkSpec> = (0..6)
        .map(|i| NetworkSpec {
            name: fixture.name(&format!("net{i}")),
            labels: fixture.labels(),
        })
        .collect();
    let creating = specs.iter().map(|spec| fixture.docker.create_network(spec));
    let ids = futures_util::future::try_join_all(creating)
        .await
        .expect("create networks");
    let subnets: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|id| {
            let output = std::process::Command::new("docker")
                .args([
                    "network",
                    "inspect",
                    "-f",
                    "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                ])
                .arg(id)
                .output()
                .expect("docker network inspect");
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        })
        .collect();
    assert!(!subnets.contains(""), "each has a subnet: {subnets:?}");
    assert_eq!(subnets.len(), ids.len(), "all different: {subnets:?}");
}
