//! `envctl logs` of several services, with timestamps and `--since`, and the bounded log every
//! container gets, against a real engine.

use std::process::Command;

use crate::harness::{IMAGE, TestEnv, host_port, http_get};
use crate::snapshot::assert_masked;

/// Two HTTP services; each logs the requests it answers.
fn two() -> String {
    format!(
        "  db:\n    image: {IMAGE}\n    command: [serve, --name, db, --port, \"8080\"]\n    \
         ports: [8080]\n    ready: {{http: 8080/health}}\n  web:\n    image: {IMAGE}\n    \
         command: [serve, --name, web, --port, \"8080\"]\n    ports: [8080]\n    depends_on: [db]\n    \
         ready: {{http: 8080/health}}\n"
    )
}

#[test]
fn logs_of_two_services_with_timestamps_and_since() {
    let env = TestEnv::new("logs2", &two());
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name, "-o", "json"])
        .run();
    let up = up.success().json();

    let all = env
        .envctl()
        .args(["logs", &env.name, "db", "web", "-t"])
        .run();
    let stdout = all.success().stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    // Prefixed by service, padded to the longest name, then the time, in time order.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = lines
        .iter()
        .map(|line| {
            let (prefix, rest) = line.split_once(" | ").expect("a prefix");
            assert!(["db ", "web"].contains(&prefix), "{line}");
            let time = rest.split(' ').next().unwrap();
            chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|_| panic!("{line}"))
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stdout}");
    assert!(stdout.contains("db  | "), "{stdout}");
    assert!(stdout.contains(" db: ready on port 8080"), "{stdout}");
    assert!(stdout.contains(" web: ready on port 8080"), "{stdout}");

    // Only what came after `--since`: the request, not the start, whose lines the engine
    // logged before the `logs` above showed them, even within the same second.
    let since = chrono::Utc::now().to_rfc3339();
    http_get(host_port(&up, "web", 8080));
    let recent = env
        .envctl()
        .args(["logs", &env.name, "--since", &since])
        .run();
    assert_eq!(
        recent.success().stdout(),
        "web | web: GET / HTTP/1.1 -> 200\n",
        "since {since}"
    );
    // A duration back from now takes in the start again.
    let hour = env
        .envctl()
        .args(["logs", &env.name, "web", "--since", "1h"])
        .run();
    hour.success()
        .stdout_has("web | web: ready on port 8080")
        .stdout_has("web | web: GET / HTTP/1.1 -> 200");

    let unknown = env.envctl().args(["logs", &env.name, "db", "cache"]).run();
    assert_masked(
        &unknown.code(1).stderr(),
        &env.name,
        "error: environment `NAME` has no service `cache`\nhint: its services: `db`, `web`\n",
    );
}

#[test]
fn containers_log_to_a_bounded_json_file() {
    let env = TestEnv::new("logbound", &two());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    for service in ["db", "web"] {
        let inspect = Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{json .HostConfig.LogConfig}}",
                &format!("{service}_{}", env.name),
            ])
            .output()
            .expect("docker inspect");
        assert_eq!(
            String::from_utf8_lossy(&inspect.stdout).trim(),
            r#"{"Type":"json-file","Config":{"max-file":"3","max-size":"10m"}}"#
        );
    }
}
