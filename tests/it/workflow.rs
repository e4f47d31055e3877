//! The tester's workflow against a real Docker engine: a `down` that kills a disposable
//! environment at once (or stops it gracefully with `--grace`), and `update`, which replaces
//! services in place.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{IMAGE, TestEnv};

/// A database that ignores SIGTERM, as a shell running as PID 1 does, and an app using it.
fn stubborn(tags: &Tags) -> String {
    let image = format!("{}:v1", tags.repository);
    format!(
        "  db:
    image: {image}
    command: [serve, --name, db, --port, \"1521\"]
    env: {{STANDIN_IGNORE_SIGTERM: \"1\"}}
    ready: {{tcp: 1521}}
  app:
    image: {image}
    command: [serve, --name, app, --requires, \"db:1521\"]
    env: {{STANDIN_IGNORE_SIGTERM: \"1\"}}
    depends_on: [db]
    ready: {{http: 8080/health}}
"
    )
}

/// `docker events` for one container, `ACTION SIGNAL` per line, until [`Events::stop`].
struct Events {
    container: String,
    since: String,
}

impl Events {
    fn watch(container: &str) -> Events {
        // The engine keeps its recent events: they are read back at `stop`, from now on.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        Events {
            container: container.to_string(),
            since: format!("{since:.6}"),
        }
    }

    /// Everything the engine reported from `watch` until now.
    fn stop(self) -> Vec<String> {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let output = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("container={}", self.container),
            ])
            .args(["--since", &self.since, "--until", &format!("{until:.6}")])
            .args([
                "--format",
                "{{.Action}} {{index .Actor.Attributes \"signal\"}}",
            ])
            .output()
            .expect("docker events");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }
}

/// The output of `docker logs -f`, following from before an action to the container's end.
struct Log(Child, std::thread::JoinHandle<String>);

impl Log {
    fn follow(container: &str) -> Log {
        let mut child = Command::new("docker")
            .args(["logs", "-f", container])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker logs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (first, first_line) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut text = String::new();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                text.push_str(&line);
                text.push('\n');
                let _ = first.send(());
            }
            text
        });
        // Its first line (the service's start) shows that it follows.
        let _ = first_line.recv_timeout(Duration::from_secs(30));
        Log(child, reader)
    }

    /// What it printed until the container ended.
    fn text(mut self) -> String {
        crate::support::wait_until("the container ends", Duration::from_secs(30), || {
            self.0.try_wait().expect("docker logs status").is_some()
        });
        self.1.join().expect("the log reader")
    }
}

#[test]
fn down_kills_a_service_that_ignores_sigterm_instead_of_waiting_for_its_grace() {
    let tags = Tags::new("down-kill");
    let env = TestEnv::new("down-kill", &stubborn(&tags));
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
    let tags = Tags::new("down-grace");
    let env = TestEnv::new("down-grace", &stubborn(&tags));
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

/// Images of this test's own, removed when dropped: `v1` and `v2` run this checkout's stand-in
/// binary (not the shared demo images, which other checkouts on the engine may rebuild from
/// another stand-in meanwhile), `bad` exits at once.
struct Tags {
    repository: String,
}

impl Tags {
    fn new(test: &str) -> Tags {
        let repository = format!("envctl-test/{}", crate::harness::unique(test));
        let context = tempfile::tempdir().expect("context");
        std::fs::copy(crate::harness::standin(), context.path().join("standin")).unwrap();
        let v1 = format!("{repository}:v1");
        let dockerfiles = [
            (
                v1.clone(),
                "FROM scratch\nCOPY standin /standin\nENTRYPOINT [\"/standin\"]\n".to_string(),
            ),
            (
                format!("{repository}:bad"),
                format!("FROM {v1}\nENTRYPOINT [\"/standin\", \"exit\", \"3\"]\n"),
            ),
        ];
        for (tag, dockerfile) in dockerfiles {
            std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
            docker(&["build", "-q", "-t", &tag, context.path().to_str().unwrap()]);
        }
        docker(&["tag", &v1, &format!("{repository}:v2")]);
        Tags { repository }
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        for tag in ["v1", "v2", "bad"] {
            let _ = Command::new("docker")
                .args(["rmi", &format!("{}:{tag}", self.repository)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().expect("docker");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The id of a container, by name, while it runs.
fn running_id(name: &str) -> Option<String> {
    let output = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}} {{.Id}}", name])
        .output()
        .expect("docker");
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().strip_prefix("true ").map(str::to_string)
}

/// The id of a container, by name.
fn container_id(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", name])
}

/// The host port `container_port` of a container is published on.
fn published(name: &str, container_port: u16) -> String {
    docker(&["port", name, &container_port.to_string()])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The names of the containers of environment `id`, sorted.
fn names(id: &str) -> Vec<String> {
    let listed = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.envctl.id={id}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut names: Vec<String> = listed.lines().map(str::to_string).collect();
    names.sort();
    names
}

/// db, app (at `REPO:v1`, needing db by its link name) and web (forwarding to app), each
/// taking `delay` to start.
fn chain(tags: &Tags, delay: &str) -> String {
    let repo = &tags.repository;
    format!(
        "  db:
    image: {repo}
    tag: v1
    command: [serve, --name, db, --port, \"1521\", --delay, {delay}]
    ready: {{tcp: 1521}}
  app:
    image: {repo}
    tag: v1
    command: [serve, --name, app, --delay, {delay}, --requires, \"database:1521\"]
    links: [\"db:database\"]
    ready: {{http: 8080/health}}
  web:
    image: {repo}
    tag: v1
    command: [serve, --name, web, --delay, {delay}, --requires, \"app:8080\", --forward, \"app:8080\"]
    ports: [8080]
    links: [app]
    ready: {{http: 8080/health}}
"
    )
}

/// What `GET /` through web's published port answers.
fn through_web(id: &str) -> String {
    let port = published(&format!("web_{id}"), 8080);
    let port: u64 = port.rsplit_once(':').unwrap().1.parse().unwrap();
    crate::harness::http_get(port)
}

const CHAIN_ANSWER: &str = "web -> app ok\napp -> database:1521 ok\n";

#[test]
fn update_replaces_one_service_and_keeps_the_others_containers_and_ports() {
    let tags = Tags::new("update-one");
    let env = TestEnv::new("update-one", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let before: Vec<String> = ["db", "web", "app"]
        .iter()
        .map(|s| container_id(&format!("{s}_{id}")))
        .collect();
    let web_port = published(&format!("web_{id}"), 8080);
    let update = env.envctl().args(["update", id, "app@v2"]).run();
    update.success().stdout_has(&format!(
        "updated {id}: app ({}:v2) is ready",
        tags.repository
    ));
    assert_eq!(container_id(&format!("db_{id}")), before[0], "db untouched");
    assert_eq!(
        container_id(&format!("web_{id}")),
        before[1],
        "web untouched"
    );
    assert_eq!(published(&format!("web_{id}"), 8080), web_port, "same port");
    assert_ne!(container_id(&format!("app_{id}")), before[2], "a new app");
    assert_eq!(
        through_web(id),
        CHAIN_ANSWER,
        "web reaches the new app by name"
    );
    assert_eq!(
        names(id),
        [
            format!("app_{id}"),
            format!("db_{id}"),
            format!("envctl_{id}"),
            format!("envctl_{id}_ready"),
            format!("web_{id}"),
        ],
        "the previous app and the update's marker are gone"
    );
    let row = ls_row(&env, id);
    assert_eq!(row["state"], "ready");
    let images: Vec<&str> = row["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(images, ["app:v2", "db:v1", "web:v1"]);
    assert_eq!(row["refs"], serde_json::json!(["app@v2"]));
}

#[test]
fn a_failing_new_ref_restores_the_previous_service() {
    let tags = Tags::new("update-bad");
    let env = TestEnv::new("update-bad", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let app = container_id(&format!("app_{id}"));
    let update = env.envctl().args(["update", id, "app@bad"]).run();
    update
        .code(2)
        .stderr_has("service `app` failed")
        .stderr_has(&format!(
            "restored the previous `app` ({}:v1); running now:\n  app running",
            tags.repository
        ));
    assert_eq!(
        container_id(&format!("app_{id}")),
        app,
        "the previous container, renamed back"
    );
    assert_eq!(through_web(id), CHAIN_ANSWER);
    assert_eq!(names(id).len(), 5, "no new app, no marker: {:?}", names(id));
    assert_eq!(env.state_of(id).as_deref(), Some("ready"));
}

#[test]
fn with_dependents_recreates_the_services_that_depend_on_the_replaced_ones() {
    let tags = Tags::new("update-deps");
    let env = TestEnv::new("update-deps", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id, "web@v1"])
        .run()
        .success();
    let before: Vec<String> = ["db", "app", "web"]
        .iter()
        .map(|s| container_id(&format!("{s}_{id}")))
        .collect();
    let update = env
        .envctl()
        .args(["update", id, "app@v2", "--with-dependents", "-o", "json"])
        .run();
    let json = update.success().json();
    let replaced: Vec<&str> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(replaced, ["app", "web"]);
    assert_eq!(container_id(&format!("db_{id}")), before[0], "db untouched");
    assert_ne!(container_id(&format!("app_{id}")), before[1]);
    assert_ne!(container_id(&format!("web_{id}")), before[2]);
    assert_eq!(through_web(id), CHAIN_ANSWER);
    let row = ls_row(&env, id);
    assert_eq!(
        row["refs"],
        serde_json::json!(["app@v2", "web@v1"]),
        "web keeps its ref"
    );
}

/// The address of a container on its environment's network.
fn address(name: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ])
}

/// nginx's `proxy_pass http://app:8080;` resolves `app` once: after an update the replacement
/// must answer at the address the previous one had, and so must a previous one restored.
#[test]
fn a_dependent_that_resolved_a_service_once_still_reaches_it_after_an_update() {
    let tags = Tags::new("update-addr");
    let env = TestEnv::new("update-addr", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let app = format!("app_{id}");
    let resolved = address(&app);
    assert!(!resolved.is_empty(), "app has an address");
    let previous = container_id(&app);
    env.envctl().args(["update", id, "app@v2"]).run().success();
    assert_ne!(container_id(&app), previous, "a new app");
    assert_eq!(address(&app), resolved, "the new app took the address over");
    assert_eq!(through_web(id), CHAIN_ANSWER);
    let replaced = container_id(&app);
    env.envctl()
        .args(["update", id, "app@bad"])
        .run()
        .code(2)
        .stderr_has("restored the previous `app`");
    assert_eq!(container_id(&app), replaced, "the previous app, restored");
    assert_eq!(address(&app), resolved, "restored at its own address");
    assert_eq!(through_web(id), CHAIN_ANSWER);
}

/// An override file giving app and web a variable each, beside the test's file.
fn override_file(env: &TestEnv) -> std::path::PathBuf {
    let path = env.dir.path().join("override.yaml");
    std::fs::write(
        &path,
        "services:\n  app:\n    env: {EXTRA: \"1\"}\n  web:\n    env: {EXTRA: \"1\"}\n",
    )
    .unwrap();
    path
}

/// The environment variables of a container.
fn env_of(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Config.Env}}", name])
}

/// `up -f BASE -f OVERRIDE --name ID`, from a directory with no `environments/`.
fn up_with_override(env: &TestEnv, elsewhere: &std::path::Path) {
    crate::support::Envctl::new()
        .env("ENVCTL_STATE_DIR", env.state_dir())
        .current_dir(elsewhere)
        .args(["up", "--name", &env.name, "-f"])
        .args([env.file(), "-f".into(), override_file(env)])
        .run()
        .success();
}

#[test]
fn update_takes_the_override_files_up_takes() {
    let tags = Tags::new("update-files");
    let env = TestEnv::new("update-files", &chain(&tags, "0"));
    let id = &env.name;
    let elsewhere = tempfile::tempdir().unwrap();
    up_with_override(&env, elsewhere.path());
    env.envctl()
        .args(["update", id, "app@v2", "-f"])
        .args([env.file(), "-f".into(), override_file(&env)])
        .run()
        .success();
    assert!(env_of(&format!("app_{id}")).contains("EXTRA=1"));
}

#[test]
fn update_without_a_file_reads_the_files_the_environment_was_started_from() {
    let tags = Tags::new("update-recorded");
    let env = TestEnv::new("update-recorded", &chain(&tags, "0"));
    let id = &env.name;
    let elsewhere = tempfile::tempdir().unwrap();
    up_with_override(&env, elsewhere.path());
    crate::support::Envctl::new()
        .env("ENVCTL_STATE_DIR", env.state_dir())
        .current_dir(elsewhere.path())
        .args(["update", id, "app@v2"])
        .run()
        .success();
    let app = format!("app_{id}");
    assert!(env_of(&app).contains("EXTRA=1"), "{}", env_of(&app));
    assert_eq!(
        docker(&["inspect", "-f", "{{.Config.Image}}", &app]),
        format!("{}:v2", tags.repository)
    );
}

#[test]
fn with_dependents_refuses_to_recreate_a_dependent_with_other_settings_than_it_runs_with() {
    let tags = Tags::new("update-settings");
    let env = TestEnv::new("update-settings", &chain(&tags, "0"));
    let id = &env.name;
    let elsewhere = tempfile::tempdir().unwrap();
    up_with_override(&env, elsewhere.path());
    let before: Vec<String> = ["app", "web"]
        .iter()
        .map(|s| container_id(&format!("{s}_{id}")))
        .collect();
    env.envctl()
        .args(["update", id, "app@v2", "--with-dependents", "-f"])
        .args([env.file()])
        .run()
        .code(1)
        .stderr_has(&format!(
            "`--with-dependents` would recreate `web` of `{id}` with other env than it runs with"
        ))
        .stderr_has("or name `web@REF` to recreate it as the file says now");
    assert_eq!(
        container_id(&format!("app_{id}")),
        before[0],
        "nothing replaced"
    );
    assert_eq!(
        container_id(&format!("web_{id}")),
        before[1],
        "web untouched"
    );
    assert!(env_of(&format!("web_{id}")).contains("EXTRA=1"));
}

/// Environment `id`'s row in `envctl ls -o json`.
fn ls_row(env: &TestEnv, id: &str) -> serde_json::Value {
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == id);
    row.cloned().unwrap_or_else(|| panic!("no {id} in {rows}"))
}

/// Gives every service of the test's file a start delay: `update` reads the file again, so
/// the replaced services take that long to become ready.
fn slow_down(env: &TestEnv, delay: &str) {
    let text = std::fs::read_to_string(env.file()).unwrap();
    std::fs::write(
        env.file(),
        text.replace("--delay, 0", &format!("--delay, {delay}")),
    )
    .unwrap();
}

/// Waits until the update's marker exists, failing the test after a while.
#[track_caller]
fn wait_for_the_update(id: &str) {
    let marker = format!("envctl_{id}_update");
    for _ in 0..200 {
        if names(id).contains(&marker) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no update marker: {:?}", names(id));
}

#[test]
fn the_reaper_leaves_an_environment_alone_while_it_is_updated() {
    let tags = Tags::new("update-reap");
    let env = TestEnv::new("update-reap", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    slow_down(&env, "2s");
    // Every service is replaced, so mid-way none runs: stopped, or debris, to a naive reaper.
    // Each is named, so each takes the slowed-down file as it is now.
    let update = env
        .envctl()
        .args(["update", id, "db@v2", "app@v1", "web@v1"])
        .spawn();
    wait_for_the_update(id);
    let (mut passes, mut seen_updating) = (Vec::new(), false);
    let mut update = update;
    while update.child.try_wait().unwrap().is_none() {
        seen_updating |= env.state_of(id).as_deref() == Some("updating");
        // As eager as a reaper gets: stopped environments are removed at once.
        let pass = env.reap(&["--idle", "1h", "--remove-after", "0s"]);
        passes.push(format!("{}{}", pass.stdout(), pass.stderr()));
    }
    update.wait().success();
    assert!(seen_updating, "ls showed it updating");
    assert!(passes.len() >= 2, "{passes:?}");
    for pass in &passes {
        assert!(!pass.contains(id.as_str()), "the reaper acted: {pass}");
    }
    assert_eq!(env.state_of(id).as_deref(), Some("ready"));
    assert_eq!(through_web(id), CHAIN_ANSWER);
}

#[test]
fn a_second_update_is_refused_and_a_down_wins_over_an_update_under_way() {
    let tags = Tags::new("update-race");
    let env = TestEnv::new("update-race", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    slow_down(&env, "3s");
    let first = env.envctl().args(["update", id, "app@v2"]).spawn();
    wait_for_the_update(id);
    env.envctl()
        .args(["update", id, "app@v1"])
        .run()
        .code(2)
        .stderr_has(&format!(
            "environment `{id}` is being updated by another `envctl update` ("
        ));
    env.envctl().args(["down", id]).run().success();
    first
        .wait_within(Duration::from_secs(60))
        .code(2)
        .stderr_has(&format!(
            "environment `{id}` was removed while it was being updated; removed what the update \
             had created"
        ));
    // Both may have asked to remove the same container: the engine finishes it a moment later.
    for _ in 0..50 {
        if env.leftovers().0.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    env.assert_nothing_left();
}

#[test]
fn ctrl_c_during_an_update_says_so_and_restores_the_previous_service() {
    let tags = Tags::new("update-int");
    let env = TestEnv::new("update-int", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let app = container_id(&format!("app_{id}"));
    slow_down(&env, "30s");
    let update = env.envctl().args(["update", id, "app@v2"]).spawn();
    wait_for_the_update(id);
    // Its replacement runs, the previous one put aside: the update waits for it to be ready.
    let app_name = format!("app_{id}");
    crate::support::wait_until("the new `app` runs", Duration::from_secs(30), || {
        running_id(&app_name).is_some_and(|new| new != app)
    });
    update.signal("INT");
    let run = update.wait_within(Duration::from_secs(30));
    run.code(130)
        .stderr_has(&format!(
            "interrupted: stopping the update of {id} and restoring its previous services ... \
             press Ctrl-C again to force"
        ))
        .stderr_has("error: interrupted\nrestored the previous `app`");
    assert_eq!(container_id(&format!("app_{id}")), app);
    assert_eq!(through_web(id), CHAIN_ANSWER);
    assert_eq!(env.state_of(id).as_deref(), Some("ready"));
}

#[test]
fn ctrl_c_during_start_says_what_happens_and_the_progress_stops() {
    let env = TestEnv::new(
        "start-int",
        &format!(
            "  db:
    image: {IMAGE}
    command: [serve, --name, db, --port, \"1521\", --delay, 4s]
    ready: {{tcp: 1521}}
"
        ),
    );
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    env.envctl().args(["stop", id]).run().success();
    let start = env.envctl().args(["start", id]).spawn();
    // Its service runs and is probed: the start waits for it to be ready.
    let db = format!("db_{id}");
    crate::support::wait_until("`db` runs", Duration::from_secs(30), || {
        running_id(&db).is_some()
    });
    start.signal("INT");
    let run = start.wait_within(Duration::from_secs(10));
    run.code(130).stderr_has(&format!(
        "interrupted: stopping the start of {id}; the services started so far keep running\n\
         error: interrupted\nhint: `envctl start {id}` resumes"
    ));
    let after = run
        .stderr()
        .split("interrupted: stopping")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        !after.contains("(+"),
        "no progress after the interrupt: {after}"
    );
}

#[test]
fn down_racing_the_start_of_an_update_leaves_nothing() {
    let tags = Tags::new("update-down");
    let env = TestEnv::new("update-down", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    // The engine gets the update marker's create 3 s late: a whole `down` runs meanwhile,
    // which lists no marker and removes everything else.
    let proxy = crate::slow_proxy::SlowProxy::start(
        "update-down",
        &format!("create?name=envctl_{id}_update"),
        Duration::from_secs(3),
    );
    let update = env
        .envctl()
        .env("DOCKER_HOST", &proxy.host)
        .args(["update", id, "app@v2"])
        .spawn();
    proxy
        .held
        .recv_timeout(Duration::from_secs(60))
        .expect("the update marker's create never came");
    env.envctl().args(["down", id]).run().success();
    update
        .wait_within(Duration::from_secs(60))
        .code(2)
        .stderr_has(&format!(
            "environment `{id}` was removed while it was being updated"
        ));
    env.assert_nothing_left();
}

#[test]
fn a_killed_update_shows_as_unfinished_and_start_restores_it() {
    let tags = Tags::new("update-kill");
    let env = TestEnv::new("update-kill", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let app = container_id(&format!("app_{id}"));
    slow_down(&env, "60s");
    let update = env.envctl().args(["update", id, "app@v2"]).spawn();
    wait_for_the_update(id);
    // Killed while its new `app` runs, never found ready: the previous one is set aside.
    wait_for_the_replacement(id, &app);
    update.signal("KILL");
    update.wait_within(Duration::from_secs(10));
    let aside = format!("envctl_{id}_replaced-app");
    assert_eq!(container_id(&aside), app, "the previous app, set aside");
    let row = ls_row(&env, id);
    assert_eq!(row["state"], "update-unfinished", "{row}");
    assert!(row.get("missing_services").is_none(), "{row}");
    let status = env.envctl().args(["status", id]).run();
    let status = status.success();
    assert!(!status.stdout().contains("missing"), "{}", status.stdout());
    status.stderr_has(&format!("hint: `envctl start {id}` restores"));
    env.envctl()
        .args(["start", id])
        .run_within(Duration::from_secs(60))
        .success();
    assert_eq!(container_id(&format!("app_{id}")), app, "restored, not new");
    assert!(!names(id).contains(&aside), "{:?}", names(id));
    assert_eq!(env.state_of(id).as_deref(), Some("ready"));
    assert_eq!(through_web(id), CHAIN_ANSWER);
}

/// Waits until a new `app` (not the container `previous`) runs, failing the test after a while.
#[track_caller]
fn wait_for_the_replacement(id: &str, previous: &str) {
    let replacement = format!("app_{id}");
    let format = "{{.Id}} {{.State.Running}}";
    for _ in 0..200 {
        let inspect = Command::new("docker")
            .args(["inspect", "-f", format, &replacement])
            .output()
            .expect("docker");
        let seen = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
        if seen.ends_with(" true") && !seen.starts_with(previous) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no new `{replacement}` runs");
}

#[test]
fn two_updates_taking_over_a_killed_update_say_it_is_being_updated() {
    let tags = Tags::new("update-take");
    let env = TestEnv::new("update-take", &chain(&tags, "0"));
    let id = &env.name;
    env.envctl()
        .args(["up", &env.name, "--name", id])
        .run()
        .success();
    let app = container_id(&format!("app_{id}"));
    slow_down(&env, "60s");
    let killed = env.envctl().args(["update", id, "app@v2"]).spawn();
    wait_for_the_update(id);
    wait_for_the_replacement(id, &app);
    killed.signal("KILL");
    killed.wait_within(Duration::from_secs(10));
    let text = std::fs::read_to_string(env.file()).unwrap();
    std::fs::write(env.file(), text.replace("--delay, 60s", "--delay, 0")).unwrap();
    // The first takeover puts the previous `app` back 3 s late: the second comes meanwhile.
    let proxy = crate::slow_proxy::SlowProxy::start(
        "update-take",
        &format!("rename?name=app_{id}"),
        Duration::from_secs(3),
    );
    let first = env
        .envctl()
        .env("DOCKER_HOST", &proxy.host)
        .args(["update", id, "app@v2"])
        .spawn();
    proxy
        .held
        .recv_timeout(Duration::from_secs(60))
        .expect("the first takeover never put `app` back");
    env.envctl()
        .args(["update", id, "app@v2"])
        .run()
        .code(2)
        .stderr_has(&format!(
            "environment `{id}` is being updated by another `envctl update` ("
        ));
    first.wait_within(Duration::from_secs(60)).success();
    assert_eq!(env.state_of(id).as_deref(), Some("ready"));
    assert_eq!(through_web(id), CHAIN_ANSWER);
}
