//! Regression tests for the bounds of every command on an engine that stops answering (a
//! private `dockerd` under SIGSTOP), and for what an update that runs out of time says. Each is
//! named after what broke.

use std::process::Command;
use std::time::{Duration, Instant};

use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{ContainerState, Filter};
use envctl::naming::label;

use crate::harness::{IMAGE, TestEnv, block_on};
use crate::private_engine::PrivateEngine;
use crate::slow_proxy::SlowProxy;

/// One service `app` of the demo image built on the engine, ready at once or after `delay`.
fn app(delay: &str, extra: &str) -> String {
    format!(
        "  app:\n    image: {IMAGE}\n    build: context\n    \
         command: [serve, --name, app, --delay, {delay}]\n    ready: {{tcp: 8080}}\n{extra}"
    )
}

/// Waits until `check` holds of the containers of `env` on `engine`.
fn wait_for(
    engine: &Docker,
    env: &TestEnv,
    what: &str,
    check: impl Fn(&[envctl::backend::docker::engine::ContainerSummary]) -> bool,
) {
    let filter = [Filter::Environment(env.name.clone())];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let containers = block_on(engine.list_containers(&filter)).expect("list containers");
        if check(&containers) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_frozen_engine_ends_update_within_its_timeout_and_restore_bound() {
    let test = "frozen-update";
    let Some(engine) = PrivateEngine::start(test) else {
        return;
    };
    let env = TestEnv::new(test, &app("0s", ""));
    engine.build_images(&env);
    let id = &env.name;
    engine
        .envctl(&env)
        .args(["up", id, "--name", id])
        .run()
        .success();
    let tagged = Command::new("docker")
        .args(["-H", &engine.host, "tag", IMAGE, &format!("{IMAGE}:v2")])
        .status()
        .expect("docker tag");
    assert!(tagged.success());
    // The new `app` takes a minute to be ready: the update waits for it when the engine stops.
    std::fs::write(
        env.file(),
        format!("name: {id}\nservices:\n{}", app("60s", "")),
    )
    .expect("rewrite the file");
    let started = Instant::now();
    let update = engine
        .envctl(&env)
        .args(["update", id, "app@v2", "--timeout", "8s"])
        .spawn();
    let before = block_on(
        engine
            .engine()
            .list_containers(&[Filter::Environment(id.clone())]),
    )
    .expect("list")
    .len();
    wait_for(
        &engine.engine(),
        &env,
        "the new app running",
        |containers| {
            containers.len() > before
                && containers.iter().any(|c| {
                    c.labels.contains_key(label::SERVICE)
                        && c.state == ContainerState::Running
                        && c.name.starts_with("app_")
                })
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    engine.freeze();
    // 8 s of timeout, then at most 10 s of diagnosis and restore.
    let run = update.wait_within(Duration::from_secs(30));
    let elapsed = started.elapsed();
    engine.thaw();
    run.code(2)
        .stderr_has(&format!(
            "the Docker engine at `{}` stopped answering",
            engine.host
        ))
        .stderr_has(&format!(
            "could not restore the previous services of `{id}`"
        ));
    assert!(
        elapsed < Duration::from_secs(8 + 10 + 6),
        "took {elapsed:?}"
    );
}

#[test]
fn an_engine_that_stops_answering_a_listing_ends_ls_and_status_within_their_bound() {
    let env = TestEnv::new(
        "hung-listing",
        &format!("  app:\n    image: {IMAGE}\n    command: [serve, --name, app]\n"),
    );
    let id = &env.name;
    env.envctl().args(["up", id, "--name", id]).run().success();
    // The engine answers the connection's handshake, then no listing of containers: a frozen
    // engine, once the command has connected.
    let proxy = SlowProxy::start("hung-listing", "/containers/json", Duration::from_secs(120));
    let read = |args: &[&str]| {
        env.envctl()
            .env("DOCKER_HOST", &proxy.host)
            .args(args)
            .spawn()
    };
    let (ls, status) = (read(&["ls"]), read(&["status", id]));
    // The first Ctrl-C ends a short command at once.
    let interrupted = read(&["ls"]);
    std::thread::sleep(Duration::from_secs(1));
    interrupted.signal("INT");
    interrupted
        .wait_within(Duration::from_secs(3))
        .code(130)
        .stderr_has("error: interrupted");
    for run in [ls, status] {
        run.wait_within(Duration::from_secs(30))
            .code(2)
            .stderr_has(&format!(
                "the Docker engine at `{}` stopped answering: no answer within 10s to list \
                 environments",
                proxy.host
            ));
    }
}

#[test]
fn a_frozen_engine_ends_down_within_its_timeout_naming_what_is_left() {
    let test = "frozen-down";
    let Some(engine) = PrivateEngine::start(test) else {
        return;
    };
    // Both ignore SIGTERM, so each stop lasts its whole grace: `b` (the dependent) goes first,
    // and while `a` is being stopped the engine stops answering.
    let ignoring = "    env: {STANDIN_IGNORE_SIGTERM: \"1\"}\n";
    let services = format!(
        "{}  b:\n    image: {IMAGE}\n    build: context\n    command: [serve, --name, b]\n    \
         depends_on: [a]\n{ignoring}",
        app("0s", ignoring).replace("app", "a")
    );
    let env = TestEnv::new(test, &services);
    engine.build_images(&env);
    let id = &env.name;
    engine
        .envctl(&env)
        .args(["up", id, "--name", id])
        .run()
        .success();
    let started = Instant::now();
    let down = engine
        .envctl(&env)
        .args(["down", id, "--grace", "2s", "--timeout", "5s"])
        .spawn();
    wait_for(&engine.engine(), &env, "`b` removed", |containers| {
        !containers.iter().any(|c| c.name == format!("b_{id}"))
    });
    engine.freeze();
    // The 2 s grace of `a`, 5 s of no answer on top.
    let run = down.wait_within(Duration::from_secs(25));
    let elapsed = started.elapsed();
    engine.thaw();
    run.code(2)
        .stderr_has(&format!(
            "the Docker engine at `{}` stopped answering",
            engine.host
        ))
        .stderr_has(&format!(
            "removed 1 container of environment `{id}`; left `a_{id}`"
        ))
        .stderr_has(&format!("`envctl_{id}`"))
        .stderr_has(&format!("hint: `envctl down {id}` removes the rest"));
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    engine
        .envctl(&env)
        .args(["down", id])
        .run_within(Duration::from_secs(30))
        .success();
}

#[test]
fn an_update_that_runs_out_of_time_shows_the_log_of_the_service_it_waited_for() {
    let slow = |delay: &str| {
        format!(
            "  app:\n    image: {IMAGE}\n    command: [serve, --name, app, --delay, {delay}]\n    \
             ready: {{tcp: 8080}}\n"
        )
    };
    let env = TestEnv::new("update-timeout-log", &slow("0s"));
    let id = &env.name;
    env.envctl().args(["up", id, "--name", id]).run().success();
    std::fs::write(
        env.file(),
        format!("name: {id}\nservices:\n{}", slow("60s")),
    )
    .expect("rewrite the file");
    env.envctl()
        .args(["update", id, "app@latest", "--timeout", "3s"])
        .run_within(Duration::from_secs(60))
        .code(2)
        .stderr_has("the environment was not ready within 3s: still waiting for `app` (starting)")
        .stderr_has(&format!("of `app_{id}`:"))
        .stderr_has("| app: starting (ready in 60s)");
}

#[test]
fn a_second_interrupt_ends_a_hung_down_at_once_saying_what_is_left() {
    let env = TestEnv::new(
        "down-twice",
        &format!("  app:\n    image: {IMAGE}\n    command: [serve, --name, app]\n"),
    );
    let id = &env.name;
    env.envctl().args(["up", id, "--name", id]).run().success();
    // No removal gets an answer: the engine takes them and hangs.
    let proxy = SlowProxy::start("down-twice", "DELETE /", Duration::from_secs(60));
    let down = env
        .envctl()
        .env("DOCKER_HOST", &proxy.host)
        .args(["down", id])
        .spawn();
    proxy
        .held
        .recv_timeout(Duration::from_secs(30))
        .expect("the removal never came");
    down.signal("INT");
    std::thread::sleep(Duration::from_millis(500));
    down.signal("INT");
    let second = Instant::now();
    let run = down.wait_within(Duration::from_secs(10));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?}",
        second.elapsed()
    );
    run.code(130);
    assert_eq!(
        crate::snapshot::mask(&run.stderr(), id),
        "interrupted: removing NAME ... press Ctrl-C again to force\n\
         error: interrupted again\n\
         removed nothing of environment `NAME`; left `app_NAME`, `envctl_NAME_ready`, \
         `envctl_NAME`, network `envctl_NAME_NAME`\n\
         hint: `envctl down NAME` removes the rest\n"
    );
}
