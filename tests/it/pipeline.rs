//! `envctl run`, `env`, `--only`, `--ttl` and owner labels against a real engine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{IMAGE, TestEnv};
use crate::support::Envctl;

/// web forwards to app; both publish nothing but web's 8080.
fn web() -> String {
    format!(
        "  db:\n    image: {IMAGE}\n    command: [serve, --name, db, --port, \"1521\"]\n    ports: [1521]\n    \
         ready: {{tcp: 1521}}\n  app:\n    image: {IMAGE}\n    command: [serve, --name, app, --requires, \
         \"db:1521\"]\n    depends_on: [db]\n    ready: {{http: 8080/health}}\n  web:\n    image: {IMAGE}\n    \
         command: [serve, --name, web, --forward, \"app:8080\"]\n    ports: [8080]\n    links: [app]\n    \
         ready: {{http: 8080/health}}\n"
    )
}

#[test]
fn run_passes_the_commands_exit_code_through_and_removes_the_environment() {
    let env = TestEnv::new("runcode", &web());
    for code in ["0", "3"] {
        env.envctl()
            .args(["run", &env.name, "--", "sh", "-c", &format!("exit {code}")])
            .run()
            .code(code.parse().unwrap())
            .stderr_has("removed ");
        env.assert_nothing_left();
    }
}

#[test]
fn the_variables_reach_the_command_and_lead_to_the_proxy() {
    let env = TestEnv::new("runvars", &web());
    // bash's /dev/tcp fetches the page, so the test needs no HTTP client.
    let script = r#"
        test -n "$ENVCTL_ID" || exit 10
        test -n "$ENVCTL_DB_1521" || exit 11
        exec 3<>"/dev/tcp/${ENVCTL_WEB_8080%:*}/${ENVCTL_WEB_8080#*:}" || exit 12
        printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
        cat <&3
    "#;
    let run = env
        .envctl()
        .args(["run", &env.name, "--", "bash", "-c", script])
        .run();
    run.success().stdout_has("web -> app ok\napp -> db:1521 ok");
    env.assert_nothing_left();
}

#[test]
fn sigterm_reaches_the_command_and_its_children_and_still_removes_everything() {
    let env = TestEnv::new("runterm", &web());
    let marker = env.dir.path().join("got-term");
    // The signal must reach the build tool a shell started, not only the shell.
    let script = env.dir.path().join("build.sh");
    std::fs::write(
        &script,
        format!(
            "trap 'echo term > {}; exit 143' TERM\necho started\nwhile true; do sleep 0.1; done\n",
            marker.display()
        ),
    )
    .unwrap();
    let shell = format!("bash {}; echo the shell went on", script.display());
    let mut child = run_until_started(&env, &shell);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "term");
    env.assert_nothing_left();
}

#[test]
fn parallel_runs_share_nothing() {
    let env = TestEnv::new("runpar", &web());
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.envctl()
                .args([
                    "run",
                    &env.name,
                    "--",
                    "sh",
                    "-c",
                    "echo \"$ENVCTL_ID $ENVCTL_WEB_8080\"",
                ])
                .spawn()
        })
        .collect();
    let lines: Vec<String> = children
        .into_iter()
        .map(|run| run.wait().success().stdout().trim().to_string())
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    let ports: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!((ids.len(), ports.len()), (8, 8), "{lines:?}");
    env.assert_nothing_left();
}

#[test]
fn only_starts_the_service_and_its_dependencies() {
    let env = TestEnv::new("only", &web());
    let run = env
        .envctl()
        .args([
            "run",
            &env.name,
            "--only",
            "db",
            "--",
            "sh",
            "-c",
            "env | grep ^ENVCTL_ | sort",
        ])
        .run();
    run.success().stdout_has("ENVCTL_DB_1521=127.0.0.1:");
    let stdout = run.stdout();
    let variables: Vec<&str> = stdout
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .filter(|key| !["ENVCTL_ENVDIR", "ENVCTL_STATE_DIR"].contains(key))
        .collect();
    assert_eq!(
        variables,
        ["ENVCTL_DB_1521", "ENVCTL_ENVIRONMENT", "ENVCTL_ID"],
        "exactly one service started"
    );
    let up = env
        .envctl()
        .args([
            "up", &env.name, "--only", "app", "--name", &env.name, "-o", "json",
        ])
        .run();
    let json = up.success().json();
    let services: Vec<&str> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["app", "db"]);
}

#[test]
fn a_start_failure_inside_run_never_runs_the_command() {
    let env = TestEnv::new(
        "runfail",
        &format!("  bad:\n    image: {IMAGE}\n    command: [exit, \"1\"]\n    ready: {{tcp: 1}}\n"),
    );
    let marker = env.dir.path().join("ran");
    let run = env
        .envctl()
        .args(["run", &env.name, "--", "touch"])
        .args([&marker])
        .run();
    run.code(2).stderr_has("error: service `bad` failed");
    assert!(!marker.exists(), "the command ran");
    env.assert_nothing_left();
}

#[test]
fn env_prints_the_variables_and_owners_come_from_jenkins() {
    let env = TestEnv::new("owner", &web());
    let tag = format!("jenkins-{}-7", env.name);
    env.envctl()
        .args(["up", &env.name, "--name", &env.name, "--ttl", "1h"])
        .env("BUILD_TAG", &tag)
        .env("BUILD_URL", "https://ci.example.com/job/accounting/7/")
        .env("GIT_COMMIT", "ea6757a8090d")
        .run()
        .success();
    let exports = Envctl::new().args(["env", &env.name]).run();
    exports
        .success()
        .stdout_has(&format!("export ENVCTL_ID='{}'", env.name))
        .stdout_has("export ENVCTL_WEB_8080='127.0.0.1:");
    let json = Envctl::new().args(["env", &env.name, "-o", "json"]).run();
    assert!(json.success().json()["ENVCTL_DB_1521"].is_string());

    let ls = Envctl::new().args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == env.name.as_str())
        .unwrap();
    assert_eq!(row["owner"], tag.as_str());
    assert_eq!(row["build_url"], "https://ci.example.com/job/accounting/7/");
    assert_eq!(row["git_commit"], "ea6757a8090d");
    assert!(row["expires_at"].is_string());

    Envctl::new()
        .args(["down", "--owner", &tag])
        .run()
        .success()
        .stderr_has(&format!("removed {}", env.name));
    env.assert_nothing_left();
}

#[test]
fn the_reaper_enforces_ttl_whatever_the_activity() {
    let env = TestEnv::new("ttl", &web());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name, "--ttl", "1s"])
        .run()
        .success();
    env.wait_past_ttl(&env.name);
    env.envctl().args(["touch", &env.name]).run().success();
    env.reap(&[]).success().stdout_has(&format!(
        "stopped {} ({}): its --ttl expired",
        env.name, env.name
    ));
}

/// A process the command left behind: killed when the test ends, whatever happened.
struct Straggler(std::path::PathBuf);

impl Straggler {
    /// Whether the process in the pid file still runs (a zombie, waiting for a parent that
    /// never reaps it, does not).
    fn runs(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            state != Some(Some('Z'))
        })
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}

impl Drop for Straggler {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Runs `shell` under `envctl run` until it prints `started`, returning envctl.
fn run_until_started(env: &TestEnv, shell: &str) -> std::process::Child {
    let mut child = env
        .envctl()
        .args(["run", &env.name, "--", "sh", "-c", shell])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("started") {
        assert!(Instant::now() < deadline, "the command never started");
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "the command ended before it started: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child
}

#[test]
fn run_leaves_processes_of_its_command_behind_after_it_exits() {
    let env = TestEnv::new("rungone", &web());
    let straggler = Straggler(env.dir.path().join("straggler.pid"));
    let shell = format!(
        "sleep 300 & echo $! > {}; echo started",
        straggler.0.display()
    );
    let status = run_until_started(&env, &shell).wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(straggler.pid().is_some());
    assert!(
        !straggler.runs(),
        "the command's background job outlived it"
    );
    env.assert_nothing_left();
}

#[test]
fn run_leaves_processes_that_ignore_sigint_behind_after_an_interrupt() {
    let env = TestEnv::new("runint", &web());
    let straggler = Straggler(env.dir.path().join("straggler.pid"));
    // A non-interactive shell's background jobs ignore SIGINT.
    let shell = format!(
        "sleep 300 & echo $! > {}; echo started; wait",
        straggler.0.display()
    );
    let child = run_until_started(&env, &shell);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert!(straggler.pid().is_some());
    assert!(
        !straggler.runs(),
        "the job that ignored SIGINT outlived the command"
    );
    env.assert_nothing_left();
}
