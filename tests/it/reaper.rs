//! The reaper against a real engine, with durations of seconds.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envctl::backend::docker::engine::docker::Docker;
use envctl::backend::docker::engine::{ContainerSpec, NetworkSpec};

use crate::harness::{IMAGE, TestEnv, block_on, host_port, http_get};

/// A proxy in front of an app: the proxy publishes 8080 and is the entry service.
fn proxied() -> String {
    format!(
        "  app:\n    image: {IMAGE}\n    command: [serve, --name, app]\n    ready: {{http: 8080/health}}\n  \
         proxy:\n    image: {IMAGE}\n    command: [serve, --name, proxy, --forward, \"app:8080\"]\n    \
         ports: [8080]\n    links: [app]\n    ready: {{http: 8080/health}}\n"
    )
}

fn up(env: &TestEnv, id: &str) -> serde_json::Value {
    let run = env
        .envctl()
        .args(["up", &env.name, "--name", id, "-o", "json"])
        .run();
    run.success().json()
}

/// Lets the network chatter of a freshly started environment die down: for a few seconds the
/// bridge's IPv6 and ARP traffic, and the end of the readiness probes' connections, reach the
/// containers and would count as inbound traffic at second-scale idle times.
fn settle() {
    sleep(4.0);
}

fn sleep(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
}

#[test]
fn a_busy_environment_survives_and_an_idle_one_is_stopped_then_removed() {
    let env = TestEnv::new("busy", &proxied());
    let (busy, idle) = (format!("{}-busy", env.name), format!("{}-idle", env.name));
    let port = host_port(&up(&env, &busy), "proxy", 8080);
    up(&env, &idle);
    let done = Arc::new(AtomicBool::new(false));
    let traffic = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                http_get(port);
                sleep(1.0);
            }
        })
    };
    let started = Instant::now();
    let mut stopped_at = None;
    let mut removed = false;
    while started.elapsed() < Duration::from_secs(40) && !removed {
        let pass = env.reap(&["--idle", "5s", "--remove-after", "3s"]);
        pass.success();
        let out = pass.stdout();
        assert!(
            !out.contains(&busy),
            "the busy environment was reaped: {out}"
        );
        if out.contains(&format!("stopped {idle} ({}): idle for", env.name)) {
            stopped_at = Some(started.elapsed());
            assert_eq!(env.state_of(&idle).as_deref(), Some("stopped"));
        }
        if out.contains(&format!("removed {idle} ({}): stopped for", env.name)) {
            assert!(stopped_at.is_some(), "removed before it was stopped");
            removed = true;
        }
        sleep(1.0);
    }
    done.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(
        stopped_at.is_some_and(|t| t >= Duration::from_secs(5)),
        "{stopped_at:?}"
    );
    assert!(removed, "the idle environment was never removed");
    assert_eq!(env.state_of(&idle), None);
    assert_eq!(env.state_of(&busy).as_deref(), Some("ready"));
}

#[test]
fn dry_runs_pins_and_touches() {
    let env = TestEnv::new("pins", &proxied());
    let id = env.name.clone();
    up(&env, &id);
    settle();
    env.reap(&["--idle", "2s"]).success();
    // Past the 2 s idle threshold: time passing is what is under test.
    sleep(2.5);
    let dry = env.reap(&["--idle", "2s", "--dry-run"]);
    dry.success()
        .stdout_has(&format!("would stop {id} ({id}): idle for"));
    let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
    env.reap(&["--idle", "2s", "--dry-run", "-o", "json"])
        .success()
        .stdout_has("\"action\": \"stop\"");
    assert_eq!(
        std::fs::read_to_string(env.state_dir().join("state.json")).unwrap(),
        state,
        "a dry run writes nothing"
    );
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));

    env.envctl().args(["pin", &id]).run().success();
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    let row = ls.success().json();
    assert!(
        row.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["pinned"] == true)
    );
    let pass = env.reap(&["--idle", "2s", "--max-age", "1s"]);
    assert!(
        !pass.success().stdout().contains(&id),
        "a pinned environment is exempt"
    );
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));

    env.envctl().args(["unpin", &id]).run().success();
    env.envctl().args(["touch", &id]).run().success();
    let pass = env.reap(&["--idle", "2s"]);
    assert!(
        !pass.success().stdout().contains(&id),
        "touch restarted the clock"
    );
    let ls = env.envctl().args(["ls"]).run();
    ls.success().stdout_has("envctl touch, idle");
    // Past the 2 s idle threshold since the touch.
    sleep(2.5);
    env.reap(&["--idle", "2s"])
        .success()
        .stdout_has(&format!("stopped {id} ({id}): idle for"))
        .stdout_has("last activity: envctl touch at");
}

#[test]
fn resources_without_envctls_label_survive_every_pass() {
    let env = TestEnv::new("alien", &proxied());
    up(&env, &env.name);
    let alien = block_on(async {
        let docker = Docker::connect().await.unwrap();
        let labels: envctl::backend::docker::engine::Labels = [
            ("io.envctl.environment".to_string(), env.name.clone()),
            ("io.envctl.id".to_string(), env.name.clone()),
            ("com.example.tool".to_string(), "other".to_string()),
        ]
        .into();
        let spec = ContainerSpec {
            name: format!("{}-alien", env.name),
            image: format!("{IMAGE}:latest"),
            command: Some(vec!["sleep".into()]),
            labels,
            ..ContainerSpec::default()
        };
        let id = docker.create_container(&spec).await.unwrap();
        docker.start_container(&id).await.unwrap();
        // And a network and a container with no labels at all, named like envctl's.
        let network = docker
            .create_network(&NetworkSpec {
                name: format!("envctl_{}_unlabelled", env.name),
                labels: Default::default(),
            })
            .await
            .unwrap();
        let bare = ContainerSpec {
            name: format!("envctl_{}_unlabelled", env.name),
            image: format!("{IMAGE}:latest"),
            command: Some(vec!["sleep".into()]),
            network: network.clone(),
            ..ContainerSpec::default()
        };
        let bare = docker.create_container(&bare).await.unwrap();
        docker.start_container(&bare).await.unwrap();
        (id, bare, network)
    });
    let (alien, bare, network) = alien;
    env.reap(&["--idle", "1s"]).success();
    // Past the 1 s idle threshold and max age: time passing is what is under test.
    sleep(1.5);
    for _ in 0..3 {
        env.reap(&["--idle", "1s", "--remove-after", "0s", "--max-age", "1s"])
            .success();
    }
    assert_eq!(
        env.state_of(&env.name),
        None,
        "envctl's own environment was reaped"
    );
    block_on(async {
        let docker = Docker::connect().await.unwrap();
        let state = docker.inspect_container(&alien).await.map(|d| d.state);
        let bare_state = docker.inspect_container(&bare).await.map(|d| d.state);
        let networks = docker.list_networks(&[]).await.unwrap();
        docker.remove_container(&alien).await.unwrap();
        docker.remove_container(&bare).await.unwrap();
        docker.remove_network(&network).await.unwrap();
        assert_eq!(state.unwrap().as_str(), "running");
        assert_eq!(bare_state.unwrap().as_str(), "running");
        assert!(
            networks.iter().any(|n| n.id == network),
            "the unlabelled network survives"
        );
    });
}

#[test]
fn a_start_killed_outright_is_removed_and_a_crashed_environment_stopped() {
    let env = TestEnv::new(
        "debris",
        &format!(
            "  slow:\n    image: {IMAGE}\n    command: [serve, --delay, 60s]\n    ready: {{tcp: 8080}}\n"
        ),
    );
    let killed = format!("{}-killed", env.name);
    let mut child = env
        .envctl()
        .args(["up", &env.name, "--name", &killed])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Once its service container exists: a create still in flight when `up` dies would land
    // after the pass (as in lifecycle.rs).
    let created = || {
        env.leftovers()
            .0
            .iter()
            .any(|c| c.name.starts_with("slow_"))
    };
    while env.state_of(&killed).as_deref() != Some("starting") || !created() {
        assert!(Instant::now() < deadline);
        sleep(0.2);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.reap(&[]).success().stdout_has(&format!(
        "removed {killed} ({}): the start never finished",
        env.name
    ));
    assert_eq!(env.state_of(&killed), None);

    // A service that crashes after a finished start (exit code 3, 3 s in) degrades it.
    let crashy = TestEnv::new(
        "crashy",
        &format!(
            "  web:\n    image: {IMAGE}\n    command: [serve]\n    ports: [8080]\n  worker:\n    \
             image: {IMAGE}\n    command: [exit, \"3\", --delay, 3s]\n"
        ),
    );
    up(&crashy, &crashy.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while crashy.state_of(&crashy.name).as_deref() != Some("degraded") {
        assert!(Instant::now() < deadline, "the worker never crashed");
        sleep(0.2);
    }
    crashy.reap(&["--idle", "1s"]).success();
    // Crashed for longer than the 1 s idle threshold.
    sleep(1.5);
    crashy
        .reap(&["--idle", "1s"])
        .success()
        .stdout_has("a service has been crashed or unhealthy for");
    assert_eq!(crashy.state_of(&crashy.name).as_deref(), Some("stopped"));
}

#[test]
fn a_cron_pass_and_a_daemon_never_act_twice_or_corrupt_the_state() {
    let env = TestEnv::new("twice", &proxied());
    let ids: Vec<String> = (1..=3).map(|n| format!("{}-{n}", env.name)).collect();
    for id in &ids {
        up(&env, id);
    }
    env.reap(&["--idle", "2s"]).success();
    // Past the 2 s idle threshold, so every pass from now on would stop them.
    sleep(2.5);
    let daemon = env
        .envctl()
        .args([
            "reaper",
            "--every",
            "200ms",
            "--idle",
            "2s",
            "--environment",
            &env.name,
        ])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let crons: Vec<_> = (0..4)
        .map(|_| env.reap_command(&["--idle", "2s"]).spawn())
        .collect();
    let mut out = String::new();
    for cron in crons {
        out.push_str(&cron.wait().success().stdout());
    }
    // A whole daemon pass after the crons gets its chance to act twice: every pass writes the
    // state file, and the second write seen was by a pass that began after the first.
    let file = env.state_dir().join("state.json");
    let modified = || std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    let mut writes = vec![modified()];
    crate::support::wait_until("the daemon ran a pass", Duration::from_secs(30), || {
        let now = modified();
        if writes.last() != Some(&now) {
            writes.push(now);
        }
        writes.len() > 2
    });
    let pid = daemon.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = daemon.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.push_str(&String::from_utf8_lossy(&output.stdout));
    for id in &ids {
        let stops = out.matches(&format!("stopped {id} ")).count();
        assert_eq!(stops, 1, "{id} stopped {stops} times:\n{out}");
    }
    let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&state).expect("the state file is valid JSON");
}

/// What `envctl status` says of a stopped environment, masked: the table (stdout) and the
/// reason (stderr), with idle times as `[IDLE]`.
fn status_masked(env: &TestEnv, id: &str) -> String {
    let status = env.envctl().args(["status", id]).run();
    let status = status.success();
    let idle = regex::Regex::new(r"idle for \d+s").unwrap();
    let text = format!(
        "{}{}",
        crate::snapshot::mask_table(&status.stdout(), &env.name),
        crate::snapshot::mask(&status.stderr(), &env.name)
    );
    idle.replace_all(&text, "idle for [IDLE]").into_owned()
}

/// The reaper's own stops say why in `envctl status`, as a start that makes room does, until
/// `envctl start` starts the environment again: from an `envctl reap` pass and from the
/// `envctl reaper` daemon alike.
#[test]
fn the_reapers_own_stops_say_why_in_status() {
    let env = TestEnv::new("why", &proxied());
    let id = env.name.clone();
    up(&env, &id);
    settle();
    env.reap(&["--idle", "2s"]).success();
    // Past the 2 s idle threshold: time passing is what is under test.
    sleep(2.5);
    env.reap(&["--idle", "2s"])
        .success()
        .stdout_has(&format!("stopped {id} ({id}): idle for"));
    let said = status_masked(&env, &id);
    let expected = "\
SERVICE  CONTAINER  STATE  HEALTH  RESTARTS  EXIT  PORTS
app  app_NAME  exited  -  0  0  
proxy  proxy_NAME  exited  -  0  0  
stopped by envctl at [TIME] by the reaper: idle for [IDLE], last activity: first seen by the reaper at [TIME], longer than --idle 2s
";
    assert_eq!(said, expected, "snapshot differs:\n{said}");
    let json = env.envctl().args(["status", &id, "-o", "json"]).run();
    let stopped = json.success().json()["stopped"].clone();
    assert!(
        stopped["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("by the reaper: idle for")),
        "{stopped}"
    );
    assert!(stopped["at"].is_string(), "{stopped}");

    // `envctl start` makes it history.
    env.envctl().args(["start", &id]).run().success();
    let status = env.envctl().args(["status", &id, "-o", "json"]).run();
    assert!(
        status.success().json().get("stopped").is_none(),
        "{}",
        status.stdout()
    );

    // The daemon's stops say why as well.
    let daemon = env
        .envctl()
        .args([
            "reaper",
            "--every",
            "500ms",
            "--idle",
            "2s",
            "--environment",
            &env.name,
        ])
        .spawn();
    crate::support::wait_until("the daemon stopped it", Duration::from_secs(60), || {
        env.state_of(&id).as_deref() == Some("stopped")
    });
    daemon.signal("TERM");
    let daemon = daemon.wait_within(Duration::from_secs(30));
    daemon
        .success()
        .stdout_has(&format!("stopped {id} ({id}): idle for"));
    let said = status_masked(&env, &id);
    assert!(
        said.contains(
            "\nstopped by envctl at [TIME] by the reaper: idle for [IDLE], last activity: "
        ) && said.ends_with(", longer than --idle 2s\n"),
        "{said}"
    );
}

#[test]
fn the_daemon_exits_cleanly_on_sigterm() {
    let env = TestEnv::new("daemon", &proxied());
    let mut daemon = env
        .envctl()
        .args(["reaper", "--every", "1h", "--environment", &env.name])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line comes once it listens for signals.
    let stderr = daemon.stderr.take().unwrap();
    let (said, first_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        // Read to the end, so the daemon's last words never meet a closed pipe.
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = said.send(line);
        }
    });
    let _ = first_line.recv_timeout(Duration::from_secs(30));
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        sleep(0.1);
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_lost_or_garbage_state_file_leads_to_no_reap() {
    let env = TestEnv::new("amnesia", &proxied());
    let id = env.name.clone();
    up(&env, &id);
    env.reap(&["--idle", "2s"]).success();
    // Past the 2 s idle threshold, so a pass that remembered nothing would stop it.
    sleep(2.5);
    let file = env.state_dir().join("state.json");
    std::fs::write(&file, "\u{0}garbage{").unwrap();
    let pass = env.reap(&["--idle", "2s"]);
    assert!(!pass.success().stdout().contains(&id), "{}", pass.stdout());
    pass.stderr_has("is corrupted; replacing it");
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
    // Past the 2 s idle threshold again.
    sleep(2.5);
    std::fs::remove_file(&file).unwrap();
    let pass = env.reap(&["--idle", "2s"]);
    assert!(!pass.success().stdout().contains(&id), "{}", pass.stdout());
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
}

/// A service that takes `delay` to listen, so a start stays under way that long.
fn slow(delay: &str) -> String {
    format!(
        "  slow:\n    image: {IMAGE}\n    command: [serve, --delay, {delay}]\n    ports: [8080]\n    \
         ready: {{tcp: 8080}}\n"
    )
}

/// A service that is ready once the test creates `gate/open` next to its file: its start stays
/// under way until the test ends it, however long the passes before take.
fn gated() -> String {
    format!(
        "  slow:\n    image: {IMAGE}\n    command: [serve]\n    ports: [8080]\n    \
         volumes: [\"./gate:/gate:ro\"]\n    ready: {{exec: [/standin, probe, file, /gate/open]}}\n"
    )
}

/// Five passes 0.3 s apart: the last comes after the 1 s of every eager threshold.
fn five_passes() -> impl Fn() -> bool {
    let passes = std::cell::Cell::new(0);
    move || {
        passes.set(passes.get() + 1);
        passes.get() > 5
    }
}

/// envctl in its own PID namespace, as a CI agent in a container runs it: no reaper here can
/// tell whether it is alive.
pub(crate) fn in_another_pid_namespace(envctl: crate::support::Envctl) -> std::process::Child {
    let command = envctl.command();
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(command.get_program())
        .args(command.get_args())
        .current_dir(command.get_current_dir().expect("a working directory"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => unshare.env(key, value),
            None => unshare.env_remove(key),
        };
    }
    unshare.spawn().expect("unshare runs")
}

/// Reaps with the most eager flags until `done()`; fails if any pass acted on `id`.
fn reap_eagerly_until(env: &TestEnv, id: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never done");
        let pass = env.reap(&["--idle", "1s", "--max-age", "1s", "--remove-after", "1s"]);
        let out = pass.success().stdout();
        assert!(!out.contains(id), "a pass acted on `{id}` in use: {out}");
        sleep(0.3);
    }
}

#[test]
fn reap_during_a_start_from_another_pid_namespace_keeps_it() {
    let env = TestEnv::new("startns", &gated());
    let gate = env.dir.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let id = format!("{}-a", env.name);
    let mut up = in_another_pid_namespace(env.envctl().args(["up", &env.name, "--name", &id]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.state_of(&id).as_deref() != Some("starting") {
        assert!(Instant::now() < deadline, "the start never showed");
        sleep(0.1);
    }
    reap_eagerly_until(&env, &id, five_passes());
    assert_eq!(env.state_of(&id).as_deref(), Some("starting"));
    std::fs::write(gate.join("open"), "").unwrap();
    let status = up.wait().unwrap();
    assert!(status.success(), "up failed");
    assert_eq!(env.state_of(&id).as_deref(), Some("ready"));
}

#[test]
fn reap_during_a_run_from_another_pid_namespace_keeps_it() {
    let env = TestEnv::new("runns", &slow("0s"));
    let id = format!("{}-a", env.name);
    // The command runs until the test creates `done`, after its passes.
    let done = env.dir.path().join("done");
    let script = format!("until [ -e {} ]; do sleep 0.1; done", done.display());
    let run = in_another_pid_namespace(
        env.envctl()
            .args(["run", &env.name, "--name", &id, "--", "sh", "-c", &script]),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.state_of(&id).as_deref() != Some("ready") {
        assert!(
            Instant::now() < deadline,
            "the run never got its environment"
        );
        sleep(0.1);
    }
    reap_eagerly_until(&env, &id, five_passes());
    std::fs::write(&done, "").unwrap();
    let output = run.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(env.state_of(&id), None, "run removed its environment");
}

/// Removes one service's container behind envctl's back.
fn remove_by_hand(container: &str) {
    block_on(async {
        let docker = Docker::connect().await.unwrap();
        docker.remove_container(container).await.unwrap();
    });
}

#[test]
fn a_service_removed_by_hand_is_shown_missing_and_start_says_so() {
    let env = TestEnv::new("handremoved", &proxied());
    let id = env.name.clone();
    up(&env, &id);
    remove_by_hand(&format!("app_{id}"));
    assert_eq!(env.state_of(&id).as_deref(), Some("degraded"));
    env.envctl()
        .args(["status", &id])
        .run()
        .success()
        .stdout_has("missing");
    env.envctl().args(["stop", &id]).run().success();
    env.envctl()
        .args(["start", &id])
        .run()
        .code(2)
        .stderr_has(&format!(
            "service `app` of `{id}` is missing: its container was removed"
        ))
        .stderr_has(&format!("`envctl down {id}`, then `envctl up`"));
}

#[test]
fn an_environment_without_service_containers_is_removed_and_a_foreign_container_keeps_its_network()
{
    let env = TestEnv::new("emptied", &proxied());
    let id = env.name.clone();
    up(&env, &id);
    let foreign = format!("{id}-foreign");
    let foreign_id = block_on(async {
        let docker = Docker::connect().await.unwrap();
        let network = docker
            .list_networks(&[envctl::backend::docker::engine::Filter::Id(id.clone())])
            .await
            .unwrap()
            .remove(0);
        let spec = ContainerSpec {
            name: foreign.clone(),
            image: format!("{IMAGE}:latest"),
            command: Some(vec!["sleep".into()]),
            network: network.id,
            ..ContainerSpec::default()
        };
        let container = docker.create_container(&spec).await.unwrap();
        docker.start_container(&container).await.unwrap();
        container
    });
    remove_by_hand(&format!("app_{id}"));
    remove_by_hand(&format!("proxy_{id}"));
    assert_eq!(env.state_of(&id).as_deref(), Some("debris"));
    for _ in 0..2 {
        let pass = env.reap(&[]);
        pass.code(2).stdout_has(&format!(
            "failed to remove {id} ({}): no service container is left",
            env.name
        ));
        pass.stdout_has(&format!("container `{foreign}`, which is not envctl's"));
    }
    let foreign_state = block_on(async {
        let docker = Docker::connect().await.unwrap();
        let state = docker.inspect_container(&foreign_id).await.map(|d| d.state);
        docker.remove_container(&foreign_id).await.unwrap();
        state
    });
    assert_eq!(foreign_state.unwrap().as_str(), "running", "never touched");
    env.reap(&[]).success().stdout_has(&format!("removed {id}"));
    env.assert_nothing_left();
}

#[test]
fn an_unwritable_state_directory_does_not_stop_the_reaper() {
    let env = TestEnv::new("unwritable", &proxied());
    let id = env.name.clone();
    env.envctl()
        .args(["up", &env.name, "--name", &id, "--ttl", "1s"])
        .run()
        .success();
    std::fs::create_dir_all(env.state_dir().join("state.json")).unwrap();
    env.wait_past_ttl(&id);
    let pass = env.reap(&[]);
    pass.success()
        .stdout_has(&format!("stopped {id}"))
        .stderr_has("idle clocks cannot advance");
    let temporaries: Vec<_> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temporaries.is_empty(), "{temporaries:?}");

    // A dry run needs no writable state directory at all.
    let nowhere = env.dir.path().join("a-file");
    std::fs::write(&nowhere, "").unwrap();
    env.reap_command(&["--dry-run", "--remove-after", "0s"])
        .env("ENVCTL_STATE_DIR", nowhere.join("state"))
        .run()
        .success();
}

#[test]
fn a_dry_run_before_any_real_pass_lists_what_needs_no_history() {
    let env = TestEnv::new("dryfirst", &slow("0s"));
    let id = env.name.clone();
    env.envctl()
        .args(["up", &env.name, "--name", &id, "--ttl", "1s"])
        .run()
        .success();
    env.wait_past_ttl(&id);
    env.reap(&["--dry-run", "--idle", "1s"])
        .success()
        .stdout_has(&format!(
            "would stop {id} ({}): its --ttl expired",
            env.name
        ))
        .stderr_has("idle clocks start at the first real pass");
    assert_eq!(
        env.state_of(&id).as_deref(),
        Some("ready"),
        "a dry run changes nothing"
    );
}
