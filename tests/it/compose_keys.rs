//! The compose keys of an environment file, proven on a real Docker engine: each one reaches
//! the container and does there what compose does.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{IMAGE, TestEnv, http_get};

/// A test image holding a static busybox at `/bin/busybox`, so tests can look inside the
/// container (`df`, `cat`, `id`). Built once per run from Debian's `busybox-static`.
pub(crate) fn busybox_image() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("busybox: install Debian's busybox-static (.ci/run does)");
        let context = tempfile::tempdir().expect("context");
        std::fs::copy(busybox, context.path().join("busybox")).expect("copy busybox");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n",
        )
        .unwrap();
        let tag = "envctl-test/busybox:1".to_string();
        let built = Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .arg(context.path())
            .output()
            .expect("docker build");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        tag
    })
}

/// A busybox service that runs until stopped: `sh` as PID 1 with a TERM trap, after `setup`.
pub(crate) fn busybox_service(name: &str, setup: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {}\n    entrypoint: [/bin/busybox]\n    command: [sh, -c, \
         \"{setup} echo started; trap 'exit 0' TERM; while :; do /bin/busybox sleep 0.2; done\"]\n    \
         ready: {{log: started}}\n{extra}",
        busybox_image()
    )
}

/// `docker exec CONTAINER busybox ARGS...`: its stdout, or its exit code when it failed.
fn exec(container: &str, args: &[&str]) -> Result<String, i32> {
    let output = Command::new("docker")
        .args(["exec", container, "/bin/busybox"])
        .args(args)
        .output()
        .expect("docker exec");
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).trim().to_string()),
        false => Err(output.status.code().unwrap_or(-1)),
    }
}

/// `docker inspect --format FORMAT OBJECT`.
fn inspect(kind: &str, object: &str, format: &str) -> Option<String> {
    let output = Command::new("docker")
        .args([kind, "inspect", "--format", format, object])
        .output()
        .expect("docker inspect");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The volumes carrying this environment's label.
fn volumes_of(env: &TestEnv) -> Vec<String> {
    let output = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("label=io.envctl.environment={}", env.name))
        .output()
        .expect("docker volume ls");
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn up(env: &TestEnv) -> String {
    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let json = up.success().json();
    json["id"].as_str().expect("an id").to_string()
}

fn with_volumes(env: &TestEnv, volumes: &str) {
    let text = std::fs::read_to_string(env.file()).unwrap();
    std::fs::write(env.file(), format!("volumes:\n{volumes}{text}")).unwrap();
}

#[test]
fn a_named_volume_keeps_its_data_across_a_restart_and_goes_with_down() {
    let env = TestEnv::new(
        "volume",
        &busybox_service(
            "db",
            "[ -f /data/first ] || /bin/busybox date +%s%N > /data/first;",
            "    volumes: [\"data:/data\"]\n",
        ),
    );
    with_volumes(&env, "  data:\n    labels: {com.example.team: qa}\n");
    let id = up(&env);
    let volume = format!("envctl_{id}_data");
    assert_eq!(volumes_of(&env), std::slice::from_ref(&volume));
    let labels = inspect("volume", &volume, "{{json .Labels}}").expect("the volume exists");
    assert!(
        labels.contains("\"io.envctl.managed-by\":\"envctl\""),
        "{labels}"
    );
    assert!(
        labels.contains(&format!("\"io.envctl.id\":\"{id}\"")),
        "{labels}"
    );
    assert!(labels.contains("\"com.example.team\":\"qa\""), "{labels}");

    // A volume named like envctl's but not labelled as envctl's must survive `down`.
    let foreign = format!("envctl_{id}_foreign");
    let created = Command::new("docker")
        .args(["volume", "create", &foreign])
        .output()
        .unwrap();
    assert!(created.status.success());

    let container = format!("db_{id}");
    let first = exec(&container, &["cat", "/data/first"]).expect("written at start");
    env.envctl().args(["stop", &id]).run().success();
    env.envctl().args(["start", &id]).run().success();
    let again = exec(&container, &["cat", "/data/first"]).expect("still there");
    assert_eq!(
        first, again,
        "the restarted service found its volume's data"
    );

    env.envctl().args(["down", &id]).run().success();
    assert_eq!(
        inspect("volume", &volume, "{{.Name}}"),
        None,
        "gone with down"
    );
    assert!(volumes_of(&env).is_empty());
    let kept = inspect("volume", &foreign, "{{.Name}}");
    let _ = Command::new("docker")
        .args(["volume", "rm", &foreign])
        .output();
    assert_eq!(
        kept.as_deref(),
        Some(foreign.as_str()),
        "not envctl's: kept"
    );
}

#[test]
fn a_failed_start_removes_the_volumes_it_created() {
    let env = TestEnv::new(
        "volume-rollback",
        &busybox_service(
            "db",
            "",
            "    volumes: [\"data:/data\", \"./does-not-exist:/x\"]\n",
        ),
    );
    with_volumes(&env, "  data: {}\n");
    let run = env.envctl().args(["up", &env.name]).run();
    run.code(2).stderr_has("does-not-exist");
    assert!(volumes_of(&env).is_empty(), "left: {:?}", volumes_of(&env));
    env.assert_nothing_left();
}

#[test]
fn the_reaper_removes_the_volumes_of_what_it_removes() {
    let env = TestEnv::new(
        "volume-reaped",
        &busybox_service("db", "", "    volumes: [\"data:/data\"]\n"),
    );
    with_volumes(&env, "  data: {}\n");
    let id = up(&env);
    env.envctl().args(["stop", &id]).run().success();
    // The first pass sees it stopped for the first time; the next one removes it.
    env.reap(&["--remove-after", "1s"]).success();
    // Stopped for longer than --remove-after: time passing is what is under test.
    std::thread::sleep(Duration::from_millis(1500));
    env.reap(&["--remove-after", "1s"])
        .success()
        .stdout_has(&format!("removed {id}"));
    assert!(volumes_of(&env).is_empty(), "left: {:?}", volumes_of(&env));
}

#[test]
fn bind_mounts_are_relative_to_the_file_and_ro_refuses_writes() {
    let env = TestEnv::new(
        "bind",
        &busybox_service(
            "app",
            "",
            "    volumes:\n      - ./conf:/conf:ro\n      \
             - {type: bind, source: ./out, target: /out}\n",
        ),
    );
    let conf = env.dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("app.conf"), "jdbc=oracle:1521\n").unwrap();
    std::fs::create_dir_all(env.dir.path().join("out")).unwrap();
    let id = up(&env);
    let container = format!("app_{id}");
    assert_eq!(
        exec(&container, &["cat", "/conf/app.conf"]).as_deref(),
        Ok("jdbc=oracle:1521")
    );
    assert!(
        exec(&container, &["touch", "/conf/written"]).is_err(),
        "a read-only mount took a write"
    );
    assert!(!conf.join("written").exists());
    exec(&container, &["touch", "/out/written"]).expect("a read-write mount");
    assert!(env.dir.path().join("out/written").exists());
    env.envctl().args(["down", &id]).run().success();
}

/// A free port on the loopback address, for a fixed host port.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

#[test]
fn a_fixed_host_port_answers_there_on_its_address() {
    let port = free_port();
    let env = TestEnv::new(
        "fixed-port",
        &format!(
            "  web:\n    image: {IMAGE}\n    command: [serve, --name, web, --port, \"8080\"]\n    \
             ports: [\"127.0.0.1:{port}:8080\", {{target: 9090}}]\n    ready: {{tcp: 8080}}\n"
        ),
    );
    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let json = up.success().json();
    let id = json["id"].as_str().unwrap().to_string();
    let ports = &json["services"][0]["ports"];
    let fixed = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container_port"] == 8080)
        .expect("8080 published");
    assert_eq!(fixed["host_port"], port);
    assert_eq!(fixed["host_ip"], "127.0.0.1");
    assert!(http_get(port.into()).contains("web"), "the service answers");
    let bindings = inspect(
        "container",
        &format!("web_{id}"),
        "{{json .HostConfig.PortBindings}}",
    )
    .unwrap();
    assert!(
        bindings.contains(&format!(
            "\"8080/tcp\":[{{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"{port}\"}}]"
        )),
        "{bindings}"
    );
    // A second copy cannot have the same host port: its start fails naming the service, and
    // removes what it created.
    let second = env.envctl().args(["up", &env.name]).run();
    second.code(2).stderr_has("web");
    assert!(second.stderr().contains("port"), "{}", second.stderr());
    env.envctl().args(["down", &id]).run().success();
    env.assert_nothing_left();
}

#[test]
fn shm_tmpfs_limits_user_and_the_rest_reach_the_container() {
    let env = TestEnv::new(
        "runtime",
        &busybox_service(
            "db",
            "",
            "    shm_size: 256m\n    tmpfs: [\"/scratch:size=16m\"]\n    mem_limit: 96m\n    \
             cpus: 0.5\n    restart: on-failure:2\n    user: \"1234:1234\"\n    \
             working_dir: /srv/app\n    extra_hosts: [\"ldap.example.com:10.1.2.3\"]\n    \
             labels: {com.example.team: qa}\n    stop_grace_period: 3s\n    \
             env_file: db.env\n",
        ),
    );
    std::fs::write(env.dir.path().join("db.env"), "NLS_LANG=AMERICAN\n").unwrap();
    let id = up(&env);
    let container = format!("db_{id}");
    let df = |path: &str| {
        let out = exec(&container, &["df", "-k", path]).expect("df");
        let fields: Vec<String> = out
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        fields[1].clone()
    };
    assert_eq!(
        df("/dev/shm"),
        "262144",
        "shm_size is /dev/shm's size in KiB"
    );
    assert_eq!(df("/scratch"), "16384", "the tmpfs has its size");
    assert_eq!(exec(&container, &["id", "-u"]).as_deref(), Ok("1234"));
    assert_eq!(exec(&container, &["pwd"]).as_deref(), Ok("/srv/app"));
    let hosts = exec(&container, &["cat", "/etc/hosts"]).unwrap();
    assert!(hosts.contains("10.1.2.3\tldap.example.com"), "{hosts}");
    let variables = exec(&container, &["env"]).unwrap();
    assert!(
        variables.lines().any(|l| l == "NLS_LANG=AMERICAN"),
        "{variables}"
    );
    let field = |format: &str| inspect("container", &container, format).unwrap();
    assert_eq!(field("{{.HostConfig.Memory}}"), (96u64 << 20).to_string());
    assert_eq!(field("{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(
        field("{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        "on-failure:2"
    );
    assert_eq!(field("{{json .Config.Entrypoint}}"), "[\"/bin/busybox\"]");
    assert_eq!(field("{{.Config.StopTimeout}}"), "3");
    assert_eq!(field("{{index .Config.Labels \"com.example.team\"}}"), "qa");
    // The kernel enforces the memory limit: the cgroup says so (v2, else v1).
    let limit = exec(&container, &["cat", "/sys/fs/cgroup/memory.max"]).or_else(|_| {
        exec(
            &container,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        )
    });
    if let Ok(limit) = limit {
        assert_eq!(limit, (96u64 << 20).to_string());
    }
    env.envctl().args(["down", &id]).run().success();
}
