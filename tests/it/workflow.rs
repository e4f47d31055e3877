//! The tester's workflow against a real Docker engine: a `down` that kills a disposable
//! environment at once (or stops it gracefully with `--grace`), and `update`, which replaces
//! services in place.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{IMAGE, TestEnv};

/// A database that ignores SIGTERM, as a shell running as PID 1 does, and an app using it.
fn stubborn() -> String {
    format!(
        "  db:
    image: {IMAGE}
    command: [serve, --name, db, --port, \"1521\"]
    env: {{STANDIN_IGNORE_SIGTERM: \"1\"}}
    ready: {{tcp: 1521}}
  app:
    image: {IMAGE}
    command: [serve, --name, app, --requires, \"db:1521\"]
    env: {{STANDIN_IGNORE_SIGTERM: \"1\"}}
    depends_on: [db]
    ready: {{http: 8080/health}}
"
    )
}

/// `docker events` for one container, `ACTION SIGNAL` per line, until [`Events::stop`].
struct Events(Child);

impl Events {
    fn watch(container: &str) -> Events {
        let child = Command::new("docker")
            .args(["events", "--filter", &format!("container={container}")])
            .args([
                "--format",
                "{{.Action}} {{index .Actor.Attributes \"signal\"}}",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker events");
        // `docker events` reports from when it is subscribed.
        std::thread::sleep(Duration::from_millis(300));
        Events(child)
    }

    /// Everything seen once `destroy` came (or after a few seconds).
    fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let output = self.0.wait_with_output().expect("docker events ends");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }
}

/// The output of `docker logs -f`, following from before an action to the container's end.
struct Log(Child);

impl Log {
    fn follow(container: &str) -> Log {
        let child = Command::new("docker")
            .args(["logs", "-f", container])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker logs");
        std::thread::sleep(Duration::from_millis(300));
        Log(child)
    }

    fn text(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let output = self.0.wait_with_output().expect("docker logs ends");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[test]
fn down_kills_a_service_that_ignores_sigterm_instead_of_waiting_for_its_grace() {
    let env = TestEnv::new("down-kill", &stubborn());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let db = format!("db_{}", env.name);
    let (events, log) = (Events::watch(&db), Log::follow(&db));
    env.envctl().args(["down", &env.name]).run().success();
    let (events, log) = (events.stop(), log.text());
    assert!(events.contains(&"kill 9".to_string()), "{events:?}");
    assert!(
        !events.contains(&"kill 15".to_string()),
        "no SIGTERM first: {events:?}"
    );
    assert!(!log.contains("got SIGTERM"), "{log}");
    env.assert_nothing_left();
}

#[test]
fn down_with_grace_sends_sigterm_first_then_kills_what_ignores_it() {
    let env = TestEnv::new("down-grace", &stubborn());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let db = format!("db_{}", env.name);
    let (events, log) = (Events::watch(&db), Log::follow(&db));
    env.envctl()
        .args(["down", &env.name, "--grace", "1s"])
        .run()
        .success();
    let (events, log) = (events.stop(), log.text());
    let term = events.iter().position(|e| e == "kill 15");
    let kill = events.iter().position(|e| e == "kill 9");
    assert!(
        matches!((term, kill), (Some(t), Some(k)) if t < k),
        "SIGTERM, then SIGKILL after the grace: {events:?}"
    );
    assert!(log.contains("standin: got SIGTERM, ignoring it"), "{log}");
    env.assert_nothing_left();
}
