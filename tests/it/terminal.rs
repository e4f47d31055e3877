//! A pseudo-terminal for tests of what envctl does on a terminal, through util-linux `script`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestEnv;

/// Runs `shell` under `sh -c` in a pseudo-terminal (`script`), as a tester's terminal would,
/// with `input` typed into it; the test fails instead of hanging after `limit`.
pub fn in_terminal(env: &TestEnv, shell: &str, input: &str, limit: Duration) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", shell, "/dev/null"])
        .env("ENVCTL_ENVDIR", env.dir.path())
        .env("ENVCTL_STATE_DIR", env.state_dir())
        .env_remove("BUILD_TAG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs (util-linux)");
    // Typed ahead: the terminal keeps it until a foreground process reads it. The input stays
    // open while the command runs, as a terminal does.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("type");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("poll script").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("script ends");
            panic!(
                "still running after {limit:?}: the command hangs\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let output = child.wait_with_output().expect("script ends");
    let code = output.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `down --all` asks on a terminal, and only there; it combines with `--owner` and
/// `--environment`.
mod down_all {
    use std::time::Duration;

    use super::in_terminal;
    use crate::harness::{IMAGE, TestEnv};

    fn env(test: &str) -> TestEnv {
        TestEnv::new(
            test,
            &format!("  db:\n    image: {IMAGE}\n    command: [sleep, --name, db]\n"),
        )
    }

    fn up(env: &TestEnv, id: &str, owner: &str) {
        env.envctl()
            .args(["up", &env.name, "--name", id])
            .env("BUILD_TAG", owner)
            .run()
            .success();
    }

    #[test]
    fn down_all_asks_on_a_terminal_and_declining_exits_1() {
        let env = env("downask");
        let id = format!("{}-a", env.name);
        up(&env, &id, "alice");
        let envctl = env!("CARGO_BIN_EXE_envctl");
        let down = format!("{envctl} down --all --environment {}", env.name);
        let (code, output) = in_terminal(&env, &down, "n\n", Duration::from_secs(30));
        assert_eq!(code, 1, "{output}");
        assert!(
            output.contains(&format!(
                "remove this environment?\r\n  {id}  {}  owner alice\r\nremove? [y/N] ",
                env.name
            )),
            "{output}"
        );
        assert!(output.contains("nothing removed"), "{output}");
        assert_eq!(env.state_of(&id).as_deref(), Some("ready"));

        let (code, output) = in_terminal(&env, &down, "y\n", Duration::from_secs(30));
        assert_eq!(code, 0, "{output}");
        assert!(output.contains(&format!("removed {id}")), "{output}");
        env.assert_nothing_left();
    }

    #[test]
    fn down_all_yes_and_without_a_terminal_do_not_ask() {
        let env = env("downyes");
        let (a, b) = (format!("{}-a", env.name), format!("{}-b", env.name));
        up(&env, &a, "alice");
        up(&env, &b, "bob");
        let envctl = env!("CARGO_BIN_EXE_envctl");
        // --yes on a terminal: no question; --owner narrows --all to alice's.
        let down = format!(
            "{envctl} down --all --yes --owner alice --environment {}",
            env.name
        );
        let (code, output) = in_terminal(&env, &down, "", Duration::from_secs(30));
        assert_eq!(code, 0, "{output}");
        assert!(!output.contains("[y/N]"), "{output}");
        assert!(output.contains(&format!("removed {a}")), "{output}");
        assert_eq!(env.state_of(&a), None);
        assert_eq!(env.state_of(&b).as_deref(), Some("ready"));
        // No terminal: no question.
        env.envctl()
            .args(["down", "--all", "--environment", &env.name])
            .run()
            .success()
            .stderr_has(&format!("removed {b}"));
        env.assert_nothing_left();
    }
}

/// `logs` colours each service's prefix on a terminal only, and never with `NO_COLOR`.
#[test]
fn logs_colour_service_prefixes_on_a_terminal() {
    let env = TestEnv::new(
        "logcolour",
        &format!(
            "  db:\n    image: {0}\n    command: [serve, --name, db, --port, \"1521\"]\n    \
             ready: {{log: listening}}\n  web:\n    image: {0}\n    command: [serve, --name, web]\n    \
             ready: {{log: listening}}\n",
            crate::harness::IMAGE
        ),
    );
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let envctl = env!("CARGO_BIN_EXE_envctl");
    let logs = format!("{envctl} logs {}", env.name);
    let (code, output) = in_terminal(&env, &logs, "", Duration::from_secs(30));
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("\x1b[36mdb  |\x1b[0m db: listening"),
        "{output:?}"
    );
    assert!(
        output.contains("\x1b[33mweb |\x1b[0m web: listening"),
        "{output:?}"
    );

    let plain = format!("NO_COLOR=1 {logs}");
    let (code, output) = in_terminal(&env, &plain, "", Duration::from_secs(30));
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("db  | db: listening"), "{output:?}");
    assert!(!output.contains('\x1b'), "{output:?}");
    // Piped: no colour either.
    let piped = env.envctl().args(["logs", &env.name]).run();
    assert!(!piped.success().stdout().contains('\x1b'));
}
