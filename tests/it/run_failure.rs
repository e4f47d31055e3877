//! `envctl run` on a terminal and after a failing command: the terminal's foreground,
//! `--keep-on-failure` and `--logs DIR`, against a real engine.

use std::time::Duration;

use crate::harness::{IMAGE, TestEnv};
use crate::terminal::in_terminal;

/// One service that answers on 1521 and prints a line at start.
fn db() -> String {
    format!(
        "  db:\n    image: {IMAGE}\n    command: [serve, --name, db, --port, \"1521\"]\n    \
         ports: [1521]\n    ready: {{tcp: 1521}}\n"
    )
}

#[test]
fn an_interactive_command_hangs_in_the_background_of_the_terminal() {
    let env = TestEnv::new("runtty", &db());
    let envctl = env!("CARGO_BIN_EXE_envctl");
    // The command reads the terminal; then the calling shell reads it again, which only works
    // if envctl gave the terminal back.
    let shell = format!(
        "{envctl} run {} -- sh -c 'read line; echo \"command read: $line\"'; \
         echo \"envctl exited $?\"; read after; echo \"shell read: $after\"",
        env.name
    );
    let (code, output) = in_terminal(&env, &shell, "first\nsecond\n", Duration::from_secs(60));
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("command read: first"), "{output}");
    assert!(output.contains("envctl exited 0"), "{output}");
    assert!(output.contains("shell read: second"), "{output}");
    env.assert_nothing_left();
}

/// Two services that each print their own lines.
fn two() -> String {
    format!(
        "{}  cache:\n    image: {IMAGE}\n    command: [serve, --name, cache, --port, \"6379\"]\n    \
         depends_on: [db]\n    ready: {{tcp: 6379}}\n",
        db()
    )
}

/// The environment id `run` printed in `environment NAME is ready: id ID; running ...`.
fn run_id(stderr: &str) -> String {
    let after = stderr.split("is ready: id ").nth(1).expect("a ready line");
    after.split(';').next().expect("an id").to_string()
}

#[test]
fn keep_on_failure_keeps_the_environment_when_the_command_fails() {
    let env = TestEnv::new("runkeep", &db());
    let run = env
        .envctl()
        .args([
            "run",
            &env.name,
            "--keep-on-failure",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .run();
    run.code(3);
    let id = run_id(&run.stderr());
    run.stderr_has(&format!(
        "`sh -c exit 3` failed (exit 3): keeping environment {id} (--keep-on-failure)\n\
         remove it with: envctl down {id}"
    ));
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
    env.envctl().args(["down", &id]).run().success();

    // A passing command removes the environment as always.
    env.envctl()
        .args(["run", &env.name, "--keep-on-failure", "--", "true"])
        .run()
        .success()
        .stderr_has("removed ");
    env.assert_nothing_left();
}

#[test]
fn logs_dir_holds_each_services_lines_when_the_command_fails() {
    let env = TestEnv::new("runlogs", &two());
    let dir = env.dir.path().join("archive/logs");
    let passing = env
        .envctl()
        .args(["run", &env.name, "--logs"])
        .args([&dir])
        .args(["--", "true"])
        .run();
    passing.success();
    assert!(!dir.exists(), "a passing command saved logs");

    let failing = env
        .envctl()
        .args(["run", &env.name, "--logs"])
        .args([&dir])
        .args(["--", "sh", "-c", "exit 1"])
        .run();
    failing
        .code(1)
        .stderr_has(&format!(
            "saved the services' logs in `{}`: cache.log, db.log",
            dir.display()
        ))
        .stderr_has("removed ");
    for service in ["db", "cache"] {
        let log = std::fs::read_to_string(dir.join(format!("{service}.log"))).unwrap();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{service}: listening on")))
            .unwrap_or_else(|| panic!("{service}.log lacks its listening line:\n{log}"));
        // Each line carries the time it was printed.
        let (time, _) = line.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
        let other = if service == "db" { "cache:" } else { "db:" };
        assert!(
            !log.contains(other),
            "{service}.log holds another's lines:\n{log}"
        );
    }
    env.assert_nothing_left();
}
