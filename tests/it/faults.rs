//! Regression tests for faults of the engine and of the people around a start: a frozen
//! engine, interrupts, an environment removed under a start. Each is named after what broke.

use std::process::Command;
use std::time::{Duration, Instant};

use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{ContainerState, Filter};
use envctl::naming::label;

use crate::harness::{IMAGE, TestEnv, block_on};
use crate::private_engine::PrivateEngine;
use crate::slow_proxy::SlowProxy;
use crate::support::{Running, wait_until};

/// A service that takes a minute to become ready, built on whichever engine runs it.
fn slow_service() -> String {
    "  slow:\n    image: envctl-demo/oracle-xe\n    build: context\n    \
     command: [serve, --name, slow, --delay, 60s]\n    ready: {tcp: 8080}\n"
        .to_string()
}

/// Waits until `env`'s service container runs on `engine`, so that what comes next lands in
/// the middle of the start.
fn wait_until_starting(engine: &Docker, env: &TestEnv) {
    let filter = [Filter::Environment(env.name.clone())];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let containers = block_on(engine.list_containers(&filter)).expect("list containers");
        if containers
            .iter()
            .any(|c| c.labels.contains_key(label::SERVICE) && c.state == ContainerState::Running)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the service never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Into the readiness probing, which leaves no trace on a service that does not listen yet.
    std::thread::sleep(Duration::from_millis(500));
}

fn spawn_up(engine: &PrivateEngine, env: &TestEnv, timeout: &str) -> Running {
    engine
        .envctl(env)
        .args(["up", &env.name, "--name", &env.name, "--timeout", timeout])
        .spawn()
}

/// An `up --timeout TIMEOUT` of a slow service on a private engine, frozen in the middle of
/// its readiness probing; with the instant `up` was spawned. `None` where no private engine can
/// be started (outside CI only).
fn frozen_mid_start(
    test: &str,
    timeout: &str,
) -> Option<(PrivateEngine, TestEnv, Running, Instant)> {
    let engine = PrivateEngine::start(test)?;
    let env = TestEnv::new(test, &slow_service());
    engine.build_images(&env);
    let started = Instant::now();
    let up = spawn_up(&engine, &env, timeout);
    wait_until_starting(&engine.engine(), &env);
    engine.freeze();
    Some((engine, env, up, started))
}

#[test]
fn a_frozen_engine_ends_up_within_its_timeout_saying_the_engine_stopped_answering() {
    let Some((engine, env, up, started)) = frozen_mid_start("frozen-timeout", "5s") else {
        return;
    };
    // 5 s of timeout, then a few short-bounded attempts to look and to clean up.
    let run = up.wait_within(Duration::from_secs(25));
    let elapsed = started.elapsed();
    engine.thaw();
    run.code(2)
        .stderr_has(&format!(
            "error: the Docker engine at `{}` stopped answering",
            engine.host
        ))
        .stderr_has(&format!("envctl down {}", env.name));
    assert!(
        !run.stderr().contains("raise `--timeout`"),
        "a frozen engine is not a slow environment:\n{}",
        run.stderr()
    );
    assert!(elapsed < Duration::from_secs(25), "took {elapsed:?}");
}

#[test]
fn a_second_interrupt_ends_up_at_once_even_with_a_frozen_engine() {
    let Some((engine, env, up, _)) = frozen_mid_start("frozen-sigint", "10m") else {
        return;
    };
    up.signal("INT");
    wait_until(
        "the first interrupt is taken",
        Duration::from_secs(30),
        || up.stderr_so_far().contains("press Ctrl-C again to force"),
    );
    up.signal("INT");
    let second = Instant::now();
    let run = up.wait_within(Duration::from_secs(10));
    let elapsed = second.elapsed();
    engine.thaw();
    run.code(130)
        .stderr_has(&format!("interrupted: removing environment {}", env.name))
        .stderr_has("press Ctrl-C again to force")
        .stderr_has("left")
        .stderr_has(&format!("envctl down {}", env.name));
    assert!(
        elapsed < Duration::from_secs(4),
        "the second interrupt took {elapsed:?} to end envctl"
    );
}

#[test]
fn a_first_interrupt_with_a_frozen_engine_ends_within_seconds() {
    let Some((engine, env, up, _)) = frozen_mid_start("frozen-once", "10m") else {
        return;
    };
    up.signal("INT");
    // One 5 s bound for the rollback's first call, which finds the engine gone.
    let run = up.wait_within(Duration::from_secs(15));
    engine.thaw();
    run.code(130)
        .stderr_has("error: interrupted; removed nothing of environment")
        .stderr_has(&format!("left `envctl_{}`", env.name))
        .stderr_has("stopped answering")
        .stderr_has(&format!(
            "hint: `envctl down {}` removes the rest",
            env.name
        ));
}

#[test]
fn the_rollback_message_says_what_it_removed() {
    let env = TestEnv::new(
        "rollback-says",
        &format!(
            "  slow:\n    image: {IMAGE}\n    command: [serve, --name, slow, --delay, 60s]\n    \
             ready: {{tcp: 8080}}\n"
        ),
    );
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name])
        .spawn();
    let docker = block_on(Docker::connect()).expect("docker");
    wait_until_starting(&docker, &env);
    up.signal("INT");
    // The anchor and the service's container, and the network.
    up.wait_within(Duration::from_secs(30))
        .code(130)
        .stderr_has(&format!(
            "interrupted: removing environment {} ... press Ctrl-C again to force",
            env.name
        ))
        .stderr_has(&format!(
            "error: interrupted; removed 2 containers and 1 network of environment `{}`",
            env.name
        ));
    env.assert_nothing_left();
}

#[test]
fn down_during_up_is_not_blamed_on_a_service() {
    let env = TestEnv::new("down-during-up", &slow_service());
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name])
        .spawn();
    let docker = block_on(Docker::connect()).expect("docker");
    wait_until_starting(&docker, &env);
    env.envctl().args(["down", &env.name]).run().success();
    let run = up.wait_within(Duration::from_secs(60));
    run.code(2).stderr_has(&format!(
        "error: environment `{}` was removed by someone else while it was starting",
        env.name
    ));
    assert!(
        !run.stderr().contains("failed:"),
        "no service failed:\n{}",
        run.stderr()
    );
    env.assert_nothing_left();
}

#[test]
fn an_interrupt_during_the_ready_marker_create_leaves_no_orphan_marker() {
    let env = TestEnv::new(
        "marker",
        &format!("  quick:\n    image: {IMAGE}\n    command: [serve, --name, quick]\n"),
    );
    // The engine gets the marker's create 2 s late, whatever envctl does meanwhile.
    let proxy = SlowProxy::start(
        "marker",
        &format!("create?name=envctl_{}_ready", env.name),
        Duration::from_secs(2),
    );
    let up = env
        .envctl()
        .env("DOCKER_HOST", &proxy.host)
        .args(["up", &env.name, "--name", &env.name])
        .spawn();
    proxy
        .held
        .recv_timeout(Duration::from_secs(60))
        .expect("the ready marker's create never came");
    up.signal("INT");
    up.wait_within(Duration::from_secs(30)).code(130);
    // Past the moment the held-back create reached the engine.
    proxy
        .answered
        .recv_timeout(Duration::from_secs(60))
        .expect("the engine never answered the ready marker's create");
    env.assert_nothing_left();
}

#[test]
fn run_whose_engine_freezes_during_its_clean_up_ends_on_the_next_signal() {
    let Some(engine) = PrivateEngine::start("frozen-run") else {
        return;
    };
    let env = TestEnv::new(
        "frozen-run",
        "  quick:\n    image: envctl-demo/oracle-xe\n    build: context\n    \
         command: [serve, --name, quick]\n",
    );
    engine.build_images(&env);
    // The command itself freezes the engine, so the clean-up after it meets a hung engine.
    let script = format!("kill -STOP {}", engine.daemon_pid());
    let run = engine
        .envctl(&env)
        .args([
            "run", &env.name, "--name", &env.name, "--", "sh", "-c", &script,
        ])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.frozen() {
        assert!(Instant::now() < deadline, "the command never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The command ended, so the interrupt lands in the clean-up, not in the command.
    let envctl = run.child.id().to_string();
    wait_until("the command ends", Duration::from_secs(30), || {
        !Command::new("pgrep")
            .args(["-P", &envctl])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pgrep runs")
            .success()
    });
    run.signal("INT");
    let run = run.wait_within(Duration::from_secs(10));
    engine.thaw();
    run.code(2)
        .stderr_has(&format!(
            "could not remove {}: interrupted while removing it",
            env.name
        ))
        .stderr_has(&format!("`envctl down {}`", env.name));
}
