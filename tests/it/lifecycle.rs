//! `up`, `down`, `ls`, `status`, `logs`, `stop` and `start` against a real Docker engine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{ContainerSpec, NetworkSpec};

use crate::harness::{DownOnDrop, IMAGE, TestEnv, block_on, host_port, http_get};
use crate::support::Envctl;

/// A three-service chain: web forwards to app, which needs db under its link name `database`.
fn chain() -> String {
    format!(
        "  db:
    image: {IMAGE}
    command: [serve, --name, db, --port, \"1521\"]
    ready: {{tcp: 1521}}
  app:
    image: {IMAGE}
    command: [serve, --name, app, --requires, \"database:1521\"]
    links: [\"db:database\"]
    ready: {{http: 8080/health}}
  web:
    image: {IMAGE}
    command: [serve, --name, web, --requires, \"app:8080\", --forward, \"app:8080\"]
    ports: [8080]
    links: [app]
    ready: {{http: 8080/health}}
"
    )
}

#[test]
fn the_demo_serves_http_through_the_whole_chain() {
    let env = TestEnv::new("demo", "");
    // The shipped demo file, under this test's own environment name.
    let demo = std::fs::read_to_string(crate::support::root().join("environments/demo.yaml"))
        .unwrap()
        .replace("name: demo", &format!("name: {}", env.name))
        .replace(
            "../demo/image",
            &crate::support::root()
                .join("demo/image")
                .display()
                .to_string(),
        );
    std::fs::write(env.file(), demo).unwrap();
    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let json = up.success().json();
    assert_eq!(json["environment"], env.name.as_str());
    let body = http_get(host_port(&json, "proxy", 8080));
    assert_eq!(
        body,
        "proxy -> accounting ok\naccounting -> oracle:1521 ok\naccounting -> activemq:61616 ok\n",
        "the proxy answers through accounting, which reaches oracle and activemq by link name"
    );
    let id = json["id"].as_str().unwrap();
    for service in json["services"].as_array().unwrap() {
        assert_eq!(
            service["container"],
            format!("{}_{id}", service["service"].as_str().unwrap())
        );
        assert_eq!(service["state"], "running");
    }
    Envctl::new().args(["down", id]).run().success();
    env.assert_nothing_left();
}

#[test]
fn link_names_resolve_and_the_text_output_names_the_endpoints() {
    let env = TestEnv::new("links", &chain());
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run();
    up.success()
        .stdout_has(&format!("is ready: id {}", env.name))
        .stdout_has("  web 8080 -> 127.0.0.1:")
        .stderr_has("app ready");
    let port: u64 = up
        .stdout()
        .split("web 8080 -> 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("published port in the summary");
    assert_eq!(http_get(port), "web -> app ok\napp -> database:1521 ok\n");
}

#[test]
fn two_environments_from_one_file_run_side_by_side() {
    let env = TestEnv::new("side", &chain());
    let first = env
        .envctl()
        .args([
            "up",
            &env.name,
            "--name",
            &format!("{}-a", env.name),
            "-o",
            "json",
        ])
        .run();
    let second = env
        .envctl()
        .args([
            "up",
            &env.name,
            "--name",
            &format!("{}-b", env.name),
            "-o",
            "json",
        ])
        .run();
    let (first, second) = (first.success().json(), second.success().json());
    let (port_a, port_b) = (
        host_port(&first, "web", 8080),
        host_port(&second, "web", 8080),
    );
    assert_ne!(port_a, port_b);
    Envctl::new()
        .args(["down", first["id"].as_str().unwrap()])
        .run()
        .success();
    // The second environment is untouched by the first one's removal.
    assert!(http_get(port_b).starts_with("web -> app ok"));
}

#[test]
fn concurrent_ups_in_the_same_second_get_distinct_ids() {
    let env = TestEnv::new(
        "burst",
        &format!("  one:\n    image: {IMAGE}\n    command: [serve, --name, one]\n"),
    );
    let ups: Vec<_> = (0..8)
        .map(|_| env.envctl().args(["up", &env.name, "-o", "json"]).spawn())
        .collect();
    let mut ids = Vec::new();
    for up in ups {
        let json = up.wait().success().json();
        ids.push(json["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "ids: {ids:?}");
    let seconds: std::collections::BTreeSet<&str> = ids.iter().map(|id| &id[..15]).collect();
    assert!(
        seconds.len() < ids.len(),
        "several runs shared a second: {ids:?}"
    );
}

#[test]
fn a_service_that_exits_during_start_fails_the_start_and_leaves_nothing() {
    let env = TestEnv::new(
        "crash",
        &format!(
            "  db:\n    image: {IMAGE}\n    command: [serve, --name, db]\n  app:\n    image: {IMAGE}\n    \
         command: [exit, \"3\", --name, app, --message, \"cannot open schema\"]\n    depends_on: [db]\n    \
         ready: {{tcp: 8080}}\n"
        ),
    );
    env.envctl()
        .args(["up", &env.name])
        .run()
        .code(2)
        .stderr_has("error: service `app` failed: its container exited with code 3")
        .stderr_has("| app: cannot open schema")
        .stderr_has("| app: exiting with code 3");
    env.assert_nothing_left();
}

#[test]
fn a_probe_that_times_out_fails_the_start_and_leaves_nothing() {
    let env = TestEnv::new(
        "probe",
        &format!(
            "  stuck:\n    image: {IMAGE}\n    command: [sleep, --name, stuck]\n    ready:\n      tcp: 9999\n      \
         timeout: 2s\n"
        ),
    );
    let started = Instant::now();
    env.envctl()
        .args(["up", &env.name])
        .run()
        .code(2)
        .stderr_has("error: service `stuck` failed: not ready after 2s: tcp 9999 never passed")
        .stderr_has("| stuck: sleeping");
    assert!(started.elapsed() < Duration::from_secs(60));
    env.assert_nothing_left();
}

#[test]
fn keep_on_failure_keeps_the_containers_for_debugging() {
    let env = TestEnv::new(
        "keep",
        &format!(
            "  job:\n    image: {IMAGE}\n    command: [exit, \"1\"]\n    ready: {{exit: 0}}\n"
        ),
    );
    env.envctl()
        .args(["up", &env.name, "--keep-on-failure"])
        .run()
        .code(2)
        .stderr_has("the job exited with code 1, expected 0");
    let (containers, networks) = env.leftovers();
    let services: Vec<&str> = containers
        .iter()
        .map(|c| {
            c.labels
                .get(envctl::naming::label::SERVICE)
                .map_or("", String::as_str)
        })
        .collect();
    assert_eq!(
        services.iter().filter(|s| !s.is_empty()).count(),
        1,
        "{services:?}"
    );
    assert_eq!(networks.len(), 1);
}

#[test]
fn a_one_shot_job_gates_its_dependents() {
    let env = TestEnv::new(
        "job",
        &format!(
            "  migrate:\n    image: {IMAGE}\n    command: [exit, \"0\", --delay, 1s]\n    ready: {{exit: 0}}\n  \
         app:\n    image: {IMAGE}\n    command: [serve, --name, app]\n    depends_on: [migrate]\n    \
         ready: {{log: \"ready on port\"}}\n"
        ),
    );
    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let json = up.success().json();
    let ls = Envctl::new().args(["ls", "-o", "json"]).run();
    let row = ls
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json["id"])
        .cloned()
        .expect("listed");
    assert_eq!(
        row["state"], "ready",
        "a finished job does not degrade the environment: {row}"
    );
}

#[test]
fn sigint_during_up_removes_everything() {
    let env = TestEnv::new(
        "sigint",
        &format!(
            "  slow:\n    image: {IMAGE}\n    command: [serve, --name, slow, --delay, 60s]\n    ready: {{tcp: 8080}}\n"
        ),
    );
    let child = env
        .envctl()
        .args(["up", &env.name])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the container exists, so the interrupt lands mid-start.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.leftovers().0.is_empty() {
        assert!(Instant::now() < deadline, "the container never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And runs: the start waits for it to be ready.
    crate::support::wait_until("the container runs", Duration::from_secs(30), || {
        env.leftovers().0.iter().any(|c| {
            c.name.starts_with("slow_")
                && c.state == envctl::backend::docker::engine::ContainerState::Running
        })
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("interrupted"));
    env.assert_nothing_left();
}

#[test]
fn down_works_after_the_file_was_deleted() {
    let env = TestEnv::new("nofile", &chain());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    std::fs::remove_file(env.file()).unwrap();
    Envctl::new()
        .args(["down", &env.name])
        .run()
        .success()
        .stderr_has(&format!("removed {}", env.name));
    env.assert_nothing_left();
    // Idempotent when asked to be: a cleanup step that may run twice.
    Envctl::new()
        .args(["down", &env.name, "--ignore-missing"])
        .run()
        .success()
        .stderr_has("nothing to remove");
}

#[test]
fn down_of_an_unknown_id_exits_1() {
    // A typo in a Jenkins cleanup step must not go unnoticed.
    let env = TestEnv::new(
        "typo",
        &format!("  one:\n    image: {IMAGE}\n    command: [serve]\n"),
    );
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let typo = format!("{}x", env.name);
    Envctl::new()
        .args(["down", &typo])
        .run()
        .code(1)
        .stderr_has(&format!("error: no environment `{typo}`"))
        .stderr_has(&format!("hint: did you mean `{}`?", env.name));
    // The ids that exist are removed all the same.
    Envctl::new()
        .args(["down", &env.name, &typo])
        .run()
        .code(1)
        .stderr_has(&format!("removed {}", env.name))
        .stderr_has(&format!("error: no environment `{typo}`"));
    env.assert_nothing_left();
    Envctl::new()
        .args(["down", &typo, "--ignore-missing"])
        .run()
        .success()
        .stderr_has(&format!("{typo}: nothing to remove"));
    // Selections that may rightly find nothing stay green: a `post { always }` step after a
    // `run` that already cleaned up.
    Envctl::new()
        .args(["down", "--owner", &typo])
        .run()
        .success();
    Envctl::new()
        .args(["down", "--all", "--environment", &typo])
        .run()
        .success();
}

#[test]
fn resources_envctl_did_not_create_are_never_touched() {
    let env = TestEnv::new(
        "foreign",
        &format!("  one:\n    image: {IMAGE}\n    command: [serve]\n"),
    );
    let foreign = format!("{}-foreign", env.name);
    let (container, network) = block_on(async {
        let docker = Docker::connect().await.unwrap();
        // Same id and environment labels, but not marked as envctl's: another tool's.
        let labels: envctl::backend::docker::engine::Labels = [
            ("io.envctl.id".to_string(), env.name.clone()),
            ("io.envctl.environment".to_string(), env.name.clone()),
            ("other.tool".to_string(), "yes".to_string()),
        ]
        .into();
        let network = docker
            .create_network(&NetworkSpec {
                name: foreign.clone(),
                labels: labels.clone(),
            })
            .await
            .unwrap();
        let spec = ContainerSpec {
            name: foreign.clone(),
            image: format!("{IMAGE}:latest"),
            command: Some(vec!["sleep".into()]),
            labels,
            network: network.clone(),
            ..ContainerSpec::default()
        };
        let container = docker.create_container(&spec).await.unwrap();
        docker.start_container(&container).await.unwrap();
        (container, network)
    });
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    Envctl::new().args(["down", &env.name]).run().success();
    Envctl::new()
        .args(["down", "--all", "--environment", &env.name])
        .run()
        .success();
    block_on(async {
        let docker = Docker::connect().await.unwrap();
        let details = docker.inspect_container(&container).await;
        let networks = docker.list_networks(&[]).await.unwrap();
        docker.remove_container(&container).await.unwrap();
        docker.remove_network(&network).await.unwrap();
        assert_eq!(
            details
                .expect("the foreign container still exists")
                .state
                .as_str(),
            "running"
        );
        assert!(
            networks.iter().any(|n| n.id == network),
            "the foreign network still exists"
        );
    });
}

#[test]
fn an_unreachable_engine_is_a_clear_error_with_exit_code_2() {
    Envctl::new()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["ls"])
        .run()
        .code(2)
        .stderr_has("error: cannot reach the Docker engine at `unix:///nonexistent/docker.sock`")
        .stderr_has("(from DOCKER_HOST)")
        .stderr_has("hint: start that engine, or point DOCKER_HOST at one that runs");
}

#[test]
fn ls_status_logs_stop_and_start_work_from_labels() {
    let env = TestEnv::new("ops", &chain());
    let id = env.name.clone();
    env.envctl()
        .args(["up", &env.name, "--name", &id])
        .run()
        .success();
    let row = |state: &str| {
        let ls = Envctl::new().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .cloned()
            .expect("listed");
        assert_eq!(row["state"], state, "{row}");
        row
    };
    let ready = row("ready");
    assert_eq!(ready["environment"], env.name.as_str());
    assert_eq!(
        ready["endpoints"]["web"][0]["container_port"], 8080,
        "{ready}"
    );
    Envctl::new()
        .args(["ls"])
        .run()
        .success()
        .stdout_has("ID")
        .stdout_has(&id);

    let status = Envctl::new().args(["status", &id, "-o", "json"]).run();
    let status = status.success().json();
    assert_eq!(status["id"], id.as_str());
    let services = &status["services"];
    assert_eq!(services.as_array().unwrap().len(), 3);
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "running" && s["restarts"] == 0)
    );

    Envctl::new()
        .args(["logs", &id, "--tail", "5"])
        .run()
        .success()
        .stdout_has("db  | db: ready on port 1521")
        .stdout_has("web | web: ready on port 8080");
    let only_app = Envctl::new().args(["logs", &id, "app"]).run();
    only_app.success();
    assert!(
        only_app.stdout().lines().all(|l| l.starts_with("app | ")),
        "{}",
        only_app.stdout()
    );

    Envctl::new().args(["stop", &id]).run().success();
    row("stopped");
    std::fs::remove_file(env.file()).unwrap();
    Envctl::new()
        .args(["start", &id])
        .run()
        .success()
        .stderr_has("web ready");
    let ready = row("ready");
    let port: u64 = ready["endpoints"]["web"][0]["host_port"].as_u64().unwrap();
    assert!(http_get(port).starts_with("web -> app ok"));
    Envctl::new()
        .args(["status", "no-such-id"])
        .run()
        .code(1)
        .stderr_has("no environment `no-such-id`");
}

#[test]
fn up_resolves_a_changeset_prefix_to_the_full_local_tag() {
    let env = TestEnv::new("prefix", "");
    // The shipped accounting environment under a test registry, so the stand-in images built
    // here never pass for the real ones on a developer's machine.
    let registry = "localhost/envctl-test";
    let shipped =
        std::fs::read_to_string(crate::support::root().join("environments/accounting.yaml"))
            .unwrap()
            .replace(
                "registry: docker-registry.example.com",
                &format!("registry: {registry}"),
            );
    let envdir = env.dir.path().join("shipped");
    std::fs::create_dir_all(&envdir).unwrap();
    std::fs::write(envdir.join("accounting.yaml"), shipped).unwrap();
    let context = env.context();
    let roles = [
        (
            "oracle-xe",
            "sl",
            "[\"serve\", \"--name\", \"oracle-xe\", \"--port\", \"1521\"]",
        ),
        (
            "activemq",
            "latest",
            "[\"serve\", \"--name\", \"activemq\", \"--port\", \"61616\"]",
        ),
        (
            "accounting",
            "ea6757a8090d",
            "[\"serve\", \"--name\", \"accounting\"]",
        ),
        (
            "proxy",
            "d277d11f1376",
            "[\"serve\", \"--name\", \"proxy\", \"--forward\", \"accounting:8080\"]",
        ),
    ];
    let mut build = format!("name: {}\nregistry: {registry}\nservices:\n", env.name);
    for (service, tag, cmd) in roles {
        std::fs::write(
            context.join(format!("{service}.Dockerfile")),
            format!("FROM scratch\nCOPY standin /standin\nENTRYPOINT [\"/standin\"]\nCMD {cmd}\n"),
        )
        .unwrap();
        build.push_str(&format!(
            "  {service}:\n    image: {service}\n    tag: {tag}\n    build: {{context: context, dockerfile: {service}.Dockerfile}}\n"
        ));
    }
    std::fs::write(env.file(), build).unwrap();
    env.envctl().args(["build", &env.name]).run().success();

    let _down = DownOnDrop(env.name.clone());
    let up = Envctl::new()
        .envdir(&envdir)
        .args([
            "up",
            "accounting@ea6757a",
            "--name",
            &env.name,
            "-o",
            "json",
        ])
        .run();
    let json = up.success().json();
    let accounting = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "accounting")
        .unwrap();
    assert_eq!(
        accounting["image"],
        "localhost/envctl-test/accounting:ea6757a8090d"
    );
    let body = http_get(host_port(&json, "proxy", 8080));
    assert!(body.starts_with("proxy -> accounting ok"), "{body}");
    Envctl::new().args(["down", &env.name]).run().success();
}

#[test]
fn healthcheck_and_exec_probes_run_at_envctls_cadence_not_dockers() {
    let env = TestEnv::new("health", "");
    let context = env.context();
    // Docker would first run this check 30 s after the start.
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY standin /standin\nENTRYPOINT [\"/standin\"]\n\
         HEALTHCHECK --interval=30s CMD [\"/standin\", \"probe\", \"tcp\", \"8080\"]\n",
    )
    .unwrap();
    // One name for every run, so reruns replace the image rather than pile up tags.
    let image = "envctl-test/health";
    std::fs::write(
        env.file(),
        format!(
            "name: {name}\nservices:\n  checked:\n    image: {image}\n    build: context\n    \
             command: [serve, --delay, 1s]\n    ready: {{healthcheck: true}}\n  execed:\n    \
             image: {IMAGE}\n    command: [serve, --delay, 1s]\n    \
             ready: {{exec: [/standin, probe, http, \"8080\", /health]}}\n",
            name = env.name
        ),
    )
    .unwrap();
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let status = Envctl::new()
        .args(["status", &env.name, "-o", "json"])
        .run();
    let status = status.success().json();
    let checked = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "checked")
        .unwrap();
    assert_eq!(checked["state"], "running");
    assert_eq!(
        checked["health"], "starting",
        "ready before Docker's own first check: {checked}"
    );
}

#[test]
fn an_image_without_cmd_or_entrypoint_does_not_break_up() {
    let env = TestEnv::new("nocmd", "");
    let context = env.context();
    // No CMD and no ENTRYPOINT: only the service's `command:` makes it runnable.
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY standin /standin\n",
    )
    .unwrap();
    // One name for every run, so reruns replace the image rather than pile up tags.
    let image = "envctl-test/nocmd";
    std::fs::write(
        env.file(),
        format!(
            "name: {name}\nservices:\n  bare:\n    image: {image}\n    build: context\n    \
             command: [/standin, serve]\n",
            name = env.name
        ),
    )
    .unwrap();
    env.envctl().args(["build", &env.name]).run().success();
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    env.envctl().args(["pin", &env.name]).run().success();
    // The anchor, ready marker and pin do not depend on the user's image at all.
    let (containers, _) = env.leftovers();
    let markers: Vec<_> = containers
        .iter()
        .filter(|c| c.labels.contains_key(envctl::naming::label::ROLE))
        .collect();
    assert_eq!(markers.len(), 3, "{containers:?}");
    for marker in markers {
        assert!(!marker.image.contains(image), "{marker:?}");
    }
    Envctl::new().args(["down", &env.name]).run().success();
    env.assert_nothing_left();
}

#[test]
fn verbose_logs_never_show_env_values() {
    let secret = "hunter2-s3cret";
    let env = TestEnv::new(
        "secret",
        &format!(
            "  one:\n    image: {IMAGE}\n    command: [serve]\n    env:\n      \
             PASSWORD: {secret}\n"
        ),
    );
    // `-vv` as documented, and everything a user can ask for with RUST_LOG.
    let runs = [
        ("-vv", format!("{}-vv", env.name), None),
        ("-v", format!("{}-log", env.name), Some("trace")),
    ];
    for (flag, id, rust_log) in runs {
        let mut envctl = env.envctl().args([flag, "up", &env.name, "--name", &id]);
        if let Some(filter) = rust_log {
            envctl = envctl.env("RUST_LOG", filter);
        }
        let up = envctl.run();
        up.success();
        let stderr = up.stderr();
        assert!(
            !stderr.contains(secret),
            "the secret is in the log ({flag}, RUST_LOG={rust_log:?}):\n{stderr}"
        );
        // The keys stay visible, for debugging.
        up.stderr_has("PASSWORD=***");
    }
}

#[test]
fn a_service_without_probes_that_exits_before_the_start_ends_fails_it() {
    let env = TestEnv::new(
        "gone",
        &format!(
            "  crash:\n    image: {IMAGE}\n    command: [exit, \"3\", --delay, 200ms]\n  dep:\n    \
             image: {IMAGE}\n    command: [serve, --delay, 1s]\n    depends_on: [crash]\n    \
             ready: {{tcp: 8080}}\n"
        ),
    );
    env.envctl()
        .args(["up", &env.name])
        .run()
        .code(2)
        .stderr_has("error: service `crash` failed:");
    env.assert_nothing_left();
}

#[test]
fn start_waits_for_fresh_log_lines_not_those_of_the_previous_run() {
    // `b` gives up after 5 s without `a`, and `a` takes 6 s: starting `b` on `a`'s old "ready"
    // line would fail the start.
    let env = TestEnv::new(
        "relog",
        &format!(
            "  a:\n    image: {IMAGE}\n    command: [serve, --name, a, --port, \"1521\", --delay, 6s]\n    \
             ready: {{log: \"ready on port\"}}\n  b:\n    image: {IMAGE}\n    \
             command: [serve, --name, b, --requires, \"a:1521\"]\n    depends_on: [a]\n    \
             ready: {{http: 8080/health}}\n"
        ),
    );
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    Envctl::new().args(["stop", &env.name]).run().success();
    Envctl::new()
        .args(["start", &env.name])
        .run()
        .success()
        .stderr_has("b ready");
}

#[test]
fn an_up_killed_mid_start_shows_as_unfinished() {
    let env = TestEnv::new(
        "killed",
        &format!(
            "  slow:\n    image: {IMAGE}\n    command: [serve, --delay, 60s]\n    ready: {{tcp: 8080}}\n"
        ),
    );
    let mut child = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let row = || {
        let ls = Envctl::new().args(["ls", "-o", "json"]).run();
        ls.success()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == env.name.as_str())
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill it once its service container exists: a create still in flight when `up` dies
    // would land after the test's clean-up had listed the environment.
    let created = || {
        env.leftovers()
            .0
            .iter()
            .any(|c| c.name.starts_with("slow_"))
    };
    while row().is_none_or(|r| r["state"] != "starting") || !created() {
        assert!(Instant::now() < deadline, "never seen starting");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(row().unwrap()["state"], "unfinished");
}

#[test]
fn an_id_is_accepted_as_a_unique_prefix_or_suffix_and_ambiguity_lists_candidates() {
    let env = TestEnv::new(
        "id-affix",
        &format!("  one:\n    image: {IMAGE}\n    command: [serve, --name, one]\n"),
    );
    let (alpha, beta) = (format!("{}-alpha", env.name), format!("{}-beta", env.name));
    for id in [&alpha, &beta] {
        env.envctl()
            .args(["up", &env.name, "--name", id])
            .run()
            .success();
    }
    // Unique suffixes: the ids without their `t-` start.
    env.envctl()
        .args(["status", &alpha[2..], "-o", "json"])
        .run()
        .success()
        .stdout_has(&format!("one_{alpha}"));
    env.envctl()
        .args(["down", &env.name])
        .run()
        .code(1)
        .stderr_has(&format!(
            "`{}` matches several environments: `{alpha}`, `{beta}`",
            env.name
        ));
    env.envctl()
        .args(["down", &beta[2..]])
        .run()
        .success()
        .stderr_has(&format!("removed {beta}"));
    assert_eq!(env.state_of(&beta), None);
    assert_eq!(env.state_of(&alpha).as_deref(), Some("ready"));
}

#[test]
fn a_timeout_while_images_are_pulled_or_built_names_those_services() {
    // A registry that takes connections and never answers: the pull hangs.
    let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = registry.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in registry.incoming() {
            held.push(connection);
        }
    });
    let env = TestEnv::new("fetching", "");
    let context = env.context();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN [\"/standin\", \"exit\", \"0\", \"--delay\", \"60s\"]\n"),
    )
    .unwrap();
    std::fs::write(
        env.file(),
        format!(
            "name: {name}\nservices:\n  built:\n    image: envctl-test/{name}\n    build: context\n  \
             pulled:\n    image: 127.0.0.1:{port}/{name}:1\n",
            name = env.name
        ),
    )
    .unwrap();
    let started = Instant::now();
    env.envctl()
        .args(["up", &env.name, "--timeout", "3s"])
        .run()
        .code(2)
        .stderr_has("error: the environment was not ready within 3s: still waiting for ")
        .stderr_has("`built` (building)")
        .stderr_has("`pulled` (pulling)");
    assert!(started.elapsed() < Duration::from_secs(30));
    env.assert_nothing_left();
}
