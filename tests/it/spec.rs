//! Every kind of bad environment file gets a located error and exit code 1.

use std::time::Duration;

use crate::support::{EnvDir, Envctl};

/// Runs `envctl plan` on one file and returns stderr, asserting exit code 1.
fn plan_error(text: &str) -> String {
    let dir = EnvDir::new().with("env.yaml", text);
    let run = Envctl::new()
        .args(["plan", "-f"])
        .args([dir.file("env.yaml")])
        .run();
    run.code(1);
    run.stderr()
        .replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn yaml_syntax_errors_point_at_the_line() {
    let stderr = plan_error("services:\n  a:\n    image: a\n   ports: [1\n");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("--> DIR/env.yaml:4:4"), "{stderr}");
}

#[test]
fn unknown_keys_suggest_the_right_one() {
    let stderr = plan_error("services:\n  a:\n    image: a\n    depend_on: [b]\n");
    assert_eq!(
        stderr,
        "error: unknown key `depend_on`\n --> DIR/env.yaml:4:5\n  |\n4 |     depend_on: [b]\n  \
         |     ^^^^^^^^^\nhint: did you mean `depends_on`?\n"
    );
}

#[test]
fn wrong_types_are_located() {
    let stderr = plan_error("services:\n  a:\n    image: [a]\n");
    assert!(stderr.contains("wrong type: expected string"), "{stderr}");
    assert!(stderr.contains("env.yaml:3:12"), "{stderr}");
}

#[test]
fn duplicate_services_are_rejected() {
    let stderr = plan_error("services:\n  a:\n    image: a\n  a:\n    image: b\n");
    assert!(stderr.contains("error: duplicate key `a`"), "{stderr}");
    assert!(stderr.contains("env.yaml:4:3"), "{stderr}");
}

#[test]
fn unknown_dependencies_and_links_get_a_hint() {
    let stderr = plan_error(
        "services:\n  oracle-xe:\n    image: o\n  accounting:\n    image: a\n    depends_on:\n      \
         - oracle\n    links: [\"activemq:mq\"]\n",
    );
    assert!(stderr.contains(
        "error: service `accounting` depends on unknown service `oracle`\n --> DIR/env.yaml:7:9\n  \
         |\n7 |       - oracle\n  |         ^^^^^^\nhint: did you mean `oracle-xe`?"
    ), "{stderr}");
    assert!(
        stderr.contains("depends on unknown service `activemq`"),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:8:13"), "{stderr}");
}

#[test]
fn unset_variables_without_default_are_errors() {
    let stderr = plan_error(
        "services:\n  a:\n    image: a\n    env:\n      DB: \"jdbc:${DB_HOST_UNSET_IN_TESTS}\"\n      \
         OK: ${ALSO_UNSET_IN_TESTS:-fallback}\n",
    );
    assert!(
        stderr.contains(
            "environment variable `DB_HOST_UNSET_IN_TESTS` is not set and has no default"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:5:17"), "{stderr}");
    assert!(
        !stderr.contains("ALSO_UNSET"),
        "a default makes it fine: {stderr}"
    );
}

#[test]
fn variables_are_read_from_the_caller() {
    let dir = EnvDir::new().with(
        "env.yaml",
        "services:\n  a:\n    image: app\n    tag: ${APP_TAG}\n",
    );
    Envctl::new()
        .args(["plan", "-o", "json", "-f"])
        .args([dir.file("env.yaml")])
        .env("APP_TAG", "ea6757a")
        .run()
        .success()
        .stdout_has("\"image\": \"app:ea6757a\"");
}

#[test]
fn invalid_durations_are_located() {
    let stderr =
        plan_error("services:\n  a:\n    image: a\n    ready:\n      timeout: 5 parsecs\n");
    assert!(stderr.contains("invalid duration `5 parsecs`"), "{stderr}");
    assert!(stderr.contains("env.yaml:5:16"), "{stderr}");
}

#[test]
fn image_references_and_tags_docker_would_reject() {
    let stderr = plan_error(
        "services:\n  a:\n    image: Accounting\n  b:\n    image: b\n    tag: \"-dirty\"\n  c:\n    \
         image: \"c:1:2\"\n",
    );
    assert!(
        stderr.contains("`Accounting` is not a valid image name"),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:3:12"), "{stderr}");
    assert!(
        stderr.contains("`-dirty` is not a valid image tag"),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:6:10"), "{stderr}");
    assert!(stderr.contains("env.yaml:8:12"), "{stderr}");
}

#[test]
fn bad_ports_are_located() {
    let stderr =
        plan_error("services:\n  a:\n    image: a\n    ports: [0, \"8080:80\", 70000, 22/sctp]\n");
    assert!(stderr.contains("`0` is not a port"), "{stderr}");
    assert!(stderr.contains("`8080:80` is not a port"), "{stderr}");
    assert!(
        stderr.contains("hint: envctl publishes container ports on random host ports"),
        "{stderr}"
    );
    assert!(stderr.contains("`70000` is not a port"), "{stderr}");
    assert!(stderr.contains("unknown protocol `sctp`"), "{stderr}");
}

#[test]
fn contradicting_ready_conditions_are_rejected() {
    let stderr = plan_error(
        "services:\n  migrate:\n    image: m\n    ready:\n      tcp: 8080\n      exit: 0\n",
    );
    assert!(
        stderr.contains("error: `exit` contradicts `tcp`"),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:6:13"), "{stderr}");
}

#[test]
fn cycles_are_reported_with_the_whole_path() {
    let stderr = plan_error(
        "services:\n  accounting:\n    image: a\n    links: [proxy]\n  proxy:\n    image: p\n    \
         depends_on: [accounting]\n",
    );
    assert!(
        stderr.contains("error: dependency cycle: `accounting -> proxy -> accounting`"),
        "{stderr}"
    );
    assert!(stderr.contains("env.yaml:7:18"), "{stderr}");
}

#[test]
fn all_problems_of_a_file_are_reported_together() {
    let stderr = plan_error(
        "services:\n  a:\n    image: A\n    ports: [0]\n    depends_on: [zz]\n    ready: {timeout: x}\n",
    );
    assert_eq!(stderr.matches("error: ").count(), 4, "{stderr}");
}

#[test]
fn conflicting_link_aliases_are_rejected() {
    let stderr = plan_error(
        "services:\n  x:\n    image: x\n  y:\n    image: y\n  a:\n    image: a\n    links: [\"x:db\"]\n  \
         b:\n    image: b\n    links: [\"y:db\"]\n",
    );
    assert!(
        stderr.contains("link alias `db` for `y` already names service `x`"),
        "{stderr}"
    );
}

#[test]
fn empty_files_say_what_is_missing() {
    let stderr = plan_error("# nothing yet\n");
    assert!(stderr.contains("the environment file is empty"), "{stderr}");
}

#[test]
fn environment_variable_names_are_checked() {
    let stderr =
        plan_error("services:\n  a:\n    image: a\n    env:\n      \"\": x\n      \"A=B\": y\n");
    assert!(
        stderr.contains("`` is not an environment variable name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`A=B` is not an environment variable name"),
        "{stderr}"
    );
}

#[test]
fn service_names_of_envctls_own_containers_are_reserved() {
    let stderr = plan_error("services:\n  envctl:\n    image: a\n");
    assert!(
        stderr.contains("service name `envctl` is reserved"),
        "{stderr}"
    );
}

#[test]
fn absurd_timeouts_are_rejected_not_overflowed() {
    let stderr = plan_error(
        "services:\n  a:\n    image: a\n    ready:\n      tcp: 1\n      timeout: 300000000000y\n",
    );
    assert!(stderr.contains("is longer than a week"), "{stderr}");
    Envctl::new()
        .args(["up", "demo", "--timeout", "300000000000y"])
        .run()
        .code(1)
        .stderr_has("longer than");
}

#[test]
fn untagged_values_get_readable_messages() {
    let stderr = plan_error("services:\n  a:\n    image: a\n    ports: [80.5]\n");
    assert!(
        stderr.contains("a port is a number from 1 to 65535"),
        "{stderr}"
    );
    let stderr =
        plan_error("services:\n  a:\n    image: a\n    build: {context: ., dockerfil: X}\n");
    assert!(stderr.contains("`build` is a directory, or"), "{stderr}");
    let stderr = plan_error("services:\n  a:\n    image: a\n---\nservices: {}\n");
    assert!(stderr.contains("several YAML documents"), "{stderr}");
}

#[test]
fn long_lines_are_shown_in_a_window() {
    let long = "a".repeat(5000);
    let stderr = plan_error(&format!("services:\n  a:\n    image: A{long}\n"));
    assert!(stderr.len() < 2000, "{} bytes of error", stderr.len());
    assert!(stderr.contains("error: image name `Aaaa"), "{stderr}");
    assert!(stderr.contains("3 |     image: Aaaa"), "{stderr}");
}

#[test]
fn services_whose_run_variables_would_collide_are_rejected() {
    let stderr = plan_error("services:\n  oracle-xe:\n    image: a\n  oracle_xe:\n    image: b\n");
    assert!(
        stderr.contains("services `oracle-xe` and `oracle_xe` would share the variables"),
        "{stderr}"
    );
}

#[test]
fn dash_f_of_dev_zero_or_a_fifo_is_refused_not_read_forever() {
    Envctl::new()
        .args(["plan", "-f", "/dev/zero"])
        .run_within(Duration::from_secs(10))
        .code(1)
        .stderr_has("error: `/dev/zero` is a character device, not an environment file");
    let dir = EnvDir::new();
    let fifo = dir.file("env.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Opening a FIFO for reading blocks until a writer comes: none will.
    Envctl::new()
        .args(["plan", "-f"])
        .args([&fifo])
        .run_within(Duration::from_secs(10))
        .code(1)
        .stderr_has("is a named pipe, not an environment file")
        .stderr_has("hint: `-f -` reads standard input");
    Envctl::new()
        .args(["plan", "-f"])
        .args([dir.path()])
        .run_within(Duration::from_secs(10))
        .code(1)
        .stderr_has("is a directory, not an environment file");
}

#[test]
fn environment_files_over_4_mib_are_refused() {
    let big = format!(
        "services:\n  a:\n    image: a\n{}",
        "# padding\n".repeat(500_000)
    );
    let stderr = plan_error(&big);
    assert!(
        stderr.contains("error: `DIR/env.yaml` is larger than 4 MiB"),
        "{stderr}"
    );
}

#[test]
fn dash_f_dash_reads_the_environment_from_standard_input() {
    Envctl::new()
        .args(["plan", "-o", "json", "-f", "-"])
        .run_with_stdin(b"name: piped\nservices:\n  a:\n    image: app\n".to_vec())
        .success()
        .stdout_has("\"environment\": \"piped\"")
        .stdout_has("\"image\": \"app:latest\"");
    // Errors name `<stdin>`, located as in a file.
    Envctl::new()
        .args(["plan", "-f", "-"])
        .run_with_stdin(b"services:\n  a:\n    image: [a]\n".to_vec())
        .code(1)
        .stderr_has("--> <stdin>:3:12");
    // Capped like a file.
    let big = format!(
        "services:\n  a:\n    image: a\n{}",
        "# padding\n".repeat(500_000)
    );
    Envctl::new()
        .args(["plan", "-f", "-"])
        .run_with_stdin(big.into_bytes())
        .code(1)
        .stderr_has("error: `<stdin>` is larger than 4 MiB");
}

#[test]
fn parser_budget_messages_do_not_reach_the_user() {
    // Each stays within 4 MiB, so only the parser's limits stop it.
    let values = vec!["x"; 300_000].join(",");
    let too_many = plan_error(&format!(
        "services:\n  a:\n    image: a\n    command: [{values}]\n"
    ));
    assert!(
        too_many.starts_with("error: the file has more than 250000 YAML values"),
        "{too_many}"
    );
    // The real column, though the line is shown in a window.
    assert!(
        too_many.contains("--> DIR/env.yaml:4:499997\n"),
        "{too_many}"
    );
    let aliases = vec!["*x"; 200].join(",");
    let bomb = plan_error(&format!(
        "services:\n  a:\n    image: &x a\n    command: [{aliases}]\n"
    ));
    assert!(
        bomb.contains("error: the file uses 200 aliases of 1 anchor"),
        "{bomb}"
    );
    assert!(bomb.contains("--> DIR/env.yaml:"), "{bomb}");
    for stderr in [&too_many, &bomb] {
        assert!(!stderr.contains("budget"), "{stderr}");
        assert!(!stderr.contains("Nodes {"), "{stderr}");
        assert!(!stderr.contains("AliasAnchorRatio"), "{stderr}");
    }
}

#[test]
fn nul_characters_docker_would_refuse_pass_plan_no_more() {
    let stderr = plan_error(
        "services:\n  a:\n    image: a\n    command: [serve, \"a\\0b\"]\n    env:\n      \
         PASSWORD: \"s3cr\\0t\"\n    ready:\n      exec: [check, \"\\0\"]\n",
    );
    assert!(
        stderr.contains(
            "error: argument 2 of `command` contains a NUL character, which Docker cannot pass \
             to a container\n --> DIR/env.yaml:4:22"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: the value of `PASSWORD` contains a NUL character, which Docker cannot pass \
             to a container\n --> DIR/env.yaml:6:17"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: argument 2 of `exec` contains a NUL character"),
        "{stderr}"
    );
    assert!(stderr.contains("DIR/env.yaml:8:13"), "{stderr}");
}

#[test]
fn the_gateway_key_names_a_published_tcp_port_of_a_service() {
    let base = "services:\n  web:\n    image: w\n    ports: [8080, \"53/udp\"]\n";
    let unknown = plan_error(&format!("gateway: webb:8080\n{base}"));
    assert_eq!(
        unknown,
        "error: `gateway` names unknown service `webb`\n --> DIR/env.yaml:1:10\n  |\n1 | gateway: \
         webb:8080\n  |          ^^^^^^^^^\nhint: did you mean `web`?\n"
    );
    let unpublished = plan_error(&format!("gateway: web:9090\n{base}"));
    assert!(
        unpublished.contains("`gateway` port 9090 is not a published TCP port of `web`"),
        "{unpublished}"
    );
    assert!(
        unpublished.contains("hint: add 9090 to its `ports`"),
        "{unpublished}"
    );
    let udp = plan_error(&format!("gateway: web:53\n{base}"));
    assert!(udp.contains("not a published TCP port"), "{udp}");
    let shape = plan_error(&format!("gateway: web\n{base}"));
    assert!(
        shape.contains("`gateway` must be `SERVICE:PORT`, not `web`"),
        "{shape}"
    );
    let dir = EnvDir::new().with("env.yaml", &format!("gateway: web:8080\n{base}"));
    Envctl::new()
        .args(["plan", "-f"])
        .args([dir.file("env.yaml")])
        .run()
        .success();
}

#[test]
fn an_unknown_pull_policy_is_located_with_compose_names() {
    let stderr = plan_error("services:\n  a:\n    image: a\n    pull: allways\n");
    assert_eq!(
        stderr,
        "error: unknown pull policy `allways`\n --> DIR/env.yaml:4:11\n  |\n4 |     pull: \
         allways\n  |           ^^^^^^^\nhint: did you mean `always`?\n"
    );
    let stderr = plan_error("services:\n  a:\n    image: a\n    pull: build\n");
    assert!(
        stderr.contains("hint: `pull` is one of missing, always, never"),
        "{stderr}"
    );
}

#[test]
fn plan_shows_a_pull_policy_and_accepts_composes_alias() {
    let dir = EnvDir::new().with(
        "env.yaml",
        "services:\n  a:\n    image: a\n    pull: never\n  b:\n    image: b\n    pull: if_not_present\n",
    );
    let run = Envctl::new()
        .args(["plan", "-o", "json", "-f"])
        .args([dir.file("env.yaml")])
        .run();
    let plan = run.success().json();
    assert_eq!(plan["waves"][0][0]["pull"], "never");
    assert_eq!(plan["waves"][0][1]["pull"], "missing");
    let text = Envctl::new()
        .args(["plan", "--pull", "always", "-f"])
        .args([dir.file("env.yaml")])
        .run();
    assert_eq!(
        text.success()
            .stdout()
            .matches("    pull       always\n")
            .count(),
        2,
        "--pull overrides every service: {}",
        text.stdout()
    );
}
