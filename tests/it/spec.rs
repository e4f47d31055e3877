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
    assert!(
        stderr.contains("wrong type: expected a string, found a list"),
        "{stderr}"
    );
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
    let stderr = plan_error(
        "services:\n  a:\n    image: a\n    ports: [0, \"8080:0\", 70000, 22/sctp, \"1.2.3:80:80\", \
         \"8000-8010:8000-8010\", \"1:2:3:4\"]\n",
    );
    assert!(stderr.contains("`0` is not a port"), "{stderr}");
    assert!(stderr.contains("`0` is not a port"), "{stderr}");
    assert!(stderr.contains("`70000` is not a port"), "{stderr}");
    assert!(stderr.contains("unknown protocol `sctp`"), "{stderr}");
    assert!(stderr.contains("`1.2.3` is not an IP address"), "{stderr}");
    assert!(stderr.contains("port ranges are not supported"), "{stderr}");
    assert!(
        stderr.contains("`1:2:3:4` is not a port mapping"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error: ").count(), 7, "{stderr}");
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
    let stderr = plan_error("services:\n  a:\n    image: a\n    ports: [80.5, [1]]\n");
    assert!(
        stderr.contains("`80.5` is not a port: use a number from 1 to 65535"),
        "{stderr}"
    );
    assert!(
        stderr.contains("wrong type: expected a port, found a list"),
        "{stderr}"
    );
    let stderr =
        plan_error("services:\n  a:\n    image: a\n    build: {context: ., dockerfil: X}\n");
    assert!(
        stderr.contains("unknown key `dockerfil`\n --> DIR/env.yaml:4:25"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `dockerfile`?"), "{stderr}");
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
    assert!(stderr.contains("DIR/env.yaml:8:21"), "{stderr}");
}

/// An unknown key and a wrong type used to stop the reading and hide the unknown dependency
/// two lines below.
#[test]
fn unknown_keys_and_wrong_types_no_longer_hide_the_problems_below_them() {
    let stderr = plan_error(
        "services:\n  db:\n    image: oracle\n    shm_sise: 1g\n    mem_limit: [2g]\n  app:\n    \
         image: app\n    depends_on: [dbb]\n",
    );
    assert_eq!(
        stderr,
        "error: unknown key `shm_sise`\n --> DIR/env.yaml:4:5\n  |\n4 |     shm_sise: 1g\n  \
         |     ^^^^^^^^\nhint: did you mean `shm_size`?\n\
         error: wrong type: expected a string, found a list\n --> DIR/env.yaml:5:16\n  |\n\
         5 |     mem_limit: [2g]\n  |                ^^^\n\
         error: service `app` depends on unknown service `dbb`\n --> DIR/env.yaml:8:18\n  |\n\
         8 |     depends_on: [dbb]\n  |                  ^^^\nhint: did you mean `db`?\n"
    );
}

const STACK: &str = "volumes: {oradata: {}}\nservices:\n  oracle-xe:\n    image: oracle\n    \
                     tag: \"21-slim\"\n    ports: [\"127.0.0.1:1521:1521\"]\n    shm_size: 1g\n    \
                     volumes: [\"oradata:/opt/oracle/oradata\", \"./init:/init:ro\"]\n    \
                     env: {TZ: UTC, LANG: C}\n    command: [start, --quick]\n  app:\n    \
                     image: app\n    links: [\"oracle-xe:oracle\"]\n    ports: [8080]\n";

#[test]
fn override_files_merge_like_compose_files() {
    let dir = EnvDir::new().with("stack.yaml", STACK).with(
        "local.yaml",
        "services:\n  oracle-xe:\n    tag: \"21-full\"\n    ports: [5500]\n    \
         volumes: [\"./mine:/init\"]\n    env: {TZ: Europe/Berlin}\n    command: [start]\n",
    );
    let run = Envctl::new()
        .args(["plan", "-o", "json", "--name", "x1", "-f"])
        .args([dir.file("stack.yaml")])
        .args(["-f"])
        .args([dir.file("local.yaml")])
        .run();
    run.success();
    let plan = run.json();
    let db = &plan["waves"][0][0];
    assert_eq!(db["image"], "oracle:21-full", "the later file wins: {plan}");
    assert_eq!(
        db["ports"],
        serde_json::json!(["127.0.0.1:1521:1521/tcp", "5500/tcp"]),
        "lists are appended"
    );
    let root = dir.path().display().to_string();
    assert_eq!(
        db["volumes"],
        serde_json::json!([
            "envctl_x1_oradata:/opt/oracle/oradata",
            format!("{root}/mine:/init")
        ]),
        "volumes merge by their container path"
    );
    assert_eq!(db["shm_size_bytes"], 1u64 << 30, "untouched keys stay");
    assert_eq!(plan["environment"], "stack", "named after the first file");
}

#[test]
fn errors_in_an_override_file_point_at_that_file() {
    let dir = EnvDir::new().with("stack.yaml", STACK).with(
        "local.yaml",
        "services:\n  app:\n    links: [orcl]\n    restart: sometimes\n",
    );
    let run = Envctl::new()
        .args(["plan", "-f"])
        .args([dir.file("stack.yaml")])
        .args(["-f"])
        .args([dir.file("local.yaml")])
        .run();
    run.code(1);
    let stderr = run
        .stderr()
        .replace(&dir.path().display().to_string(), "DIR");
    assert!(
        stderr.contains(
            "error: service `app` depends on unknown service `orcl`\n --> DIR/local.yaml:3:13"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: unknown restart policy `sometimes`: use `no`, `always`, \
             `on-failure`, `on-failure:N` or `unless-stopped`\n --> DIR/local.yaml:4:14"
        ),
        "{stderr}"
    );
    // A syntax error in the second file names it too.
    let dir = dir.with("broken.yaml", "services:\n  app: [\n");
    let run = Envctl::new()
        .args(["plan", "-f"])
        .args([dir.file("stack.yaml")])
        .args(["-f"])
        .args([dir.file("broken.yaml")])
        .run();
    run.code(1).stderr_has("broken.yaml:");
}

#[test]
fn plan_shows_the_compose_keys() {
    let dir = EnvDir::new().with(
        "stack.yaml",
        &format!(
            "{STACK}    tmpfs: /tmp:size=64m\n    mem_limit: 512m\n    cpus: 1.5\n    \
             restart: on-failure:3\n    entrypoint: [/bin/run]\n    user: \"1000\"\n    \
             working_dir: /srv\n    extra_hosts: [\"ldap:10.0.0.5\"]\n    \
             labels: {{com.example.team: qa}}\n    stop_grace_period: 30s\n"
        ),
    );
    let run = Envctl::new()
        .args(["plan", "--name", "x1", "-f"])
        .args([dir.file("stack.yaml")])
        .run();
    run.success();
    let stdout = run
        .stdout()
        .replace(&dir.path().display().to_string(), "DIR");
    assert_eq!(
        stdout,
        "environment stack (DIR/stack.yaml), id x1\nvolumes envctl_x1_oradata\n\nwave 1\n  \
         oracle-xe\n    image      oracle:21-slim\n    container  oracle-xe_x1\n    \
         ports      127.0.0.1:1521:1521/tcp\n    ready      container runs (timeout 5m)\n    \
         volumes    envctl_x1_oradata:/opt/oracle/oradata, DIR/init:/init:ro\n    \
         limits     shm 1g\n\nwave 2\n  app\n    image      app:latest\n    \
         container  app_x1\n    ports      8080/tcp\n    links      oracle-xe as oracle\n    \
         ready      container runs (timeout 5m)\n    tmpfs      /tmp:size=64m\n    \
         limits     memory 512m, cpus 1.5\n    restart    on-failure:3\n    \
         entrypoint [\"/bin/run\"]\n    user       1000\n    workdir    /srv\n    \
         hosts      ldap:10.0.0.5\n    labels     com.example.team=qa\n    \
         stop grace 30s\n"
    );
}

#[test]
fn the_environment_directory_is_found_from_anywhere_in_a_repository() {
    let repo = EnvDir::new()
        .with("environments/stack.yaml", STACK)
        .with(".git/HEAD", "ref: refs/heads/main\n");
    let deep = repo.path().join("src/module");
    std::fs::create_dir_all(&deep).unwrap();
    Envctl::new()
        .args(["plan", "stack", "-o", "json"])
        .current_dir(&deep)
        .run()
        .success()
        .stdout_has("\"environment\": \"stack\"");
    // ENVCTL_ENVDIR and --envdir come first.
    let other = EnvDir::new().with("other.yaml", "services:\n  x:\n    image: x\n");
    Envctl::new()
        .args(["plan", "other"])
        .envdir(other.path())
        .current_dir(&deep)
        .run()
        .success();
    // Outside any repository, the message names where envctl looked.
    let nowhere = EnvDir::new();
    let run = Envctl::new()
        .args(["plan", "stack"])
        .current_dir(nowhere.path())
        .run();
    run.code(1);
    let stderr = run
        .stderr()
        .replace(&nowhere.path().display().to_string(), "DIR");
    assert_eq!(
        stderr,
        "error: no environment directory: --envdir and ENVCTL_ENVDIR are not set, and there is \
         no `./environments`, and found no git repository around `DIR`\nhint: `--envdir DIR` or \
         `ENVCTL_ENVDIR=DIR` names the directory of environment files; `-f FILE` names one \
         file\n"
    );
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
