//! `envctl run` on a terminal and after a failing command: the terminal's foreground,
//! `--keep-on-failure` and `--logs DIR`, against a real engine.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{IMAGE, TestEnv};

/// One service that answers on 1521 and prints a line at start.
fn db() -> String {
    format!(
        "  db:\n    image: {IMAGE}\n    command: [serve, --name, db, --port, \"1521\"]\n    \
         ports: [1521]\n    ready: {{tcp: 1521}}\n"
    )
}

/// Runs `shell` under `sh -c` in a pseudo-terminal (`script`), as a tester's terminal would,
/// with `input` typed into it; the test fails instead of hanging after `limit`.
fn in_terminal(env: &TestEnv, shell: &str, input: &str, limit: Duration) -> (i32, String) {
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
