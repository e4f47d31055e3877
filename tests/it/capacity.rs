//! Capacity and admission through the envctl binary, each test on a private engine of its
//! own: a capacity is every client's, and one set on the shared engine would queue every other
//! test's starts.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envctl::backend::docker::engine::{ContainerState, Filter};
use envctl::naming::label;

use crate::harness::{IMAGE, TestEnv, block_on};
use crate::private_engine::PrivateEngine;
use crate::support::{Envctl, wait_until};

/// One service of the demo image, built on the private engine, ready at once. Its port is
/// published, so that its probe never depends on the private bridge answering from here:
/// these tests are about admission, not reachability.
fn app(extra: &str) -> String {
    format!(
        "  app:\n    image: {IMAGE}\n    build: context\n    command: [serve, --name, app]\n    \
         ports: [8080]\n    ready: {{tcp: 8080}}\n{extra}"
    )
}

fn set_up(test: &str, extra: &str) -> Option<(PrivateEngine, TestEnv)> {
    let engine = PrivateEngine::start(test)?;
    let env = TestEnv::new(test, &app(extra));
    engine.build_images(&env);
    Some((engine, env))
}

/// The queue as `envctl capacity -o json` shows it.
fn queue(engine: &PrivateEngine, env: &TestEnv) -> Vec<serde_json::Value> {
    let shown = engine.envctl(env).args(["capacity", "-o", "json"]).run();
    shown.success().json()["queue"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Watches the engine every 100 ms: which environments have service containers created or
/// running at once, and when each was launched (its `created-at` label: set at admission).
struct Observer {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<usize>>,
    launched: Arc<Mutex<BTreeMap<String, String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    fn start(engine: &PrivateEngine, env: &TestEnv) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(0));
        let launched = Arc::new(Mutex::new(BTreeMap::new()));
        let docker = engine.engine();
        let filter = [Filter::Environment(env.name.clone())];
        let thread = std::thread::spawn({
            let (stop, peak, launched) = (stop.clone(), peak.clone(), launched.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let containers = block_on(docker.list_containers(&filter)).unwrap_or_default();
                    let mut live = BTreeSet::new();
                    for c in &containers {
                        let Some(id) = c.labels.get(label::ID) else {
                            continue;
                        };
                        if let Some(at) = c.labels.get(label::CREATED_AT) {
                            launched
                                .lock()
                                .unwrap()
                                .entry(id.clone())
                                .or_insert(at.clone());
                        }
                        let starting_or_running = matches!(
                            c.state,
                            ContainerState::Created
                                | ContainerState::Running
                                | ContainerState::Restarting
                                | ContainerState::Paused
                        );
                        if c.labels.contains_key(label::SERVICE) && starting_or_running {
                            live.insert(id.clone());
                        }
                    }
                    let mut peak = peak.lock().unwrap();
                    *peak = (*peak).max(live.len());
                    drop(peak);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Observer {
            stop,
            peak,
            launched,
            thread: Some(thread),
        }
    }

    /// The most environments seen starting or running at once, and the ids in launch order.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut launched: Vec<(String, String)> = self
            .launched
            .lock()
            .unwrap()
            .iter()
            .map(|(id, at)| (at.clone(), id.clone()))
            .collect();
        launched.sort();
        let peak = *self.peak.lock().unwrap();
        (peak, launched.into_iter().map(|(_, id)| id).collect())
    }
}

/// envctl in its own PID namespace, as a CI agent in a container runs it.
fn in_another_pid_namespace(envctl: Envctl) -> std::process::Child {
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

#[test]
fn eight_concurrent_runs_with_capacity_two_never_run_more_than_two_and_pass_in_arrival_order() {
    let test = "cap-eight";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "2"])
        .run()
        .success();
    let observer = Observer::start(&engine, &env);
    let ids: Vec<String> = (1..=8).map(|i| format!("{}-{i}", env.name)).collect();
    let mut runs = Vec::new();
    for id in &ids {
        let run = engine
            .envctl(&env)
            .args(["run", &env.name, "--name", id, "--", "sleep", "1"])
            .spawn();
        runs.push(run);
        // Arrival order: each joins the queue before the next starts.
        std::thread::sleep(Duration::from_millis(400));
    }
    for run in runs {
        run.wait_within(Duration::from_secs(120)).success();
    }
    let (peak, launched) = observer.finish();
    assert!(peak <= 2, "{peak} environments started or ran at once");
    assert_eq!(peak, 2, "the capacity was used");
    assert_eq!(launched, ids, "admitted in arrival order");
}

#[test]
fn a_killed_waiter_does_not_block_the_next() {
    let test = "cap-killed";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    let holder = format!("{}-holder", env.name);
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1"])
        .run()
        .success();
    engine
        .envctl(&env)
        .args(["up", &env.name, "--name", &holder])
        .run()
        .success();
    let mut killed = engine
        .envctl(&env)
        .args(["run", &env.name, "--", "true"])
        .spawn();
    wait_until("the first waiter queues", Duration::from_secs(30), || {
        queue(&engine, &env).len() == 1
    });
    let next = engine
        .envctl(&env)
        .args(["run", &env.name, "--", "true"])
        .spawn();
    wait_until("the second waiter queues", Duration::from_secs(30), || {
        queue(&engine, &env).len() == 2
    });
    let shown = engine.envctl(&env).args(["capacity"]).run();
    let text = shown.success().stdout();
    eprintln!("{text}");
    assert!(
        text.starts_with("capacity: 1 environment\nin use: 1 environment counted"),
        "{text}"
    );
    assert!(text.contains("queue: 2 waiting\nPLACE  ID"), "{text}");
    killed.child.kill().expect("SIGKILL the first waiter");
    let _ = killed.child.wait();
    engine.envctl(&env).args(["down", &holder]).run().success();
    // The killed waiter's entry expires within 15 s; the next goes then.
    let run = next.wait_within(Duration::from_secs(60));
    run.success();
    assert!(
        run.stderr().contains("waiting for capacity: 2nd in line"),
        "{}",
        run.stderr()
    );
    wait_until(
        "the killed waiter's entry is gone",
        Duration::from_secs(30),
        || queue(&engine, &env).is_empty(),
    );
}

#[test]
fn two_pid_namespaces_share_one_queue() {
    let test = "cap-pidns";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    let holder = format!("{}-holder", env.name);
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1"])
        .run()
        .success();
    engine
        .envctl(&env)
        .args(["up", &env.name, "--name", &holder])
        .run()
        .success();
    let observer = Observer::start(&engine, &env);
    let first = format!("{}-ns", env.name);
    let second = format!("{}-here", env.name);
    let mut elsewhere = in_another_pid_namespace(
        engine
            .envctl(&env)
            .args(["run", &env.name, "--name", &first, "--", "sleep", "1"]),
    );
    wait_until(
        "the other namespace's waiter queues",
        Duration::from_secs(30),
        || queue(&engine, &env).len() == 1,
    );
    let here = engine
        .envctl(&env)
        .args(["run", &env.name, "--name", &second, "--", "sleep", "1"])
        .spawn();
    wait_until("both wait in one queue", Duration::from_secs(30), || {
        queue(&engine, &env).len() == 2
    });
    engine.envctl(&env).args(["down", &holder]).run().success();
    here.wait_within(Duration::from_secs(60)).success();
    let status = elsewhere.wait().expect("the other namespace's run ends");
    assert!(status.success(), "the run in the other namespace failed");
    let (peak, launched) = observer.finish();
    assert_eq!(peak, 1, "one environment at a time");
    assert_eq!(
        launched,
        [holder, first, second],
        "one queue, in arrival order"
    );
}

#[test]
fn queue_timeout_exits_2_and_ctrl_c_leaves_with_nothing_created_and_a_too_large_environment_is_refused_at_once()
 {
    let test = "cap-timeout";
    let Some((engine, env)) = set_up(test, "    mem_limit: 128m\n") else {
        return;
    };
    let holder = format!("{}-holder", env.name);
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1", "--max-memory", "1g"])
        .run()
        .success();
    engine
        .envctl(&env)
        .args(["up", &env.name, "--name", &holder])
        .run()
        .success();
    // What it reserved, and what it uses, one reading.
    let status = engine.envctl(&env).args(["status", &holder]).run();
    status.success().stdout_has(" used of 128 MiB reserved");
    let ls = engine.envctl(&env).args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    assert_eq!(rows[0]["reserved_memory"], 128 << 20, "{rows}");
    assert!(
        rows[0]["memory_used"].as_u64().is_some_and(|used| used > 0),
        "{rows}"
    );
    let waited = engine
        .envctl(&env)
        .args(["run", &env.name, "--queue-timeout", "2s", "--", "true"])
        .run_within(Duration::from_secs(30));
    waited
        .code(2)
        .stderr_has("gave up waiting for capacity after 2s: next in line, 128 MiB of 1 GiB reserved by 1 environment");
    // Ctrl-C leaves the queue at once.
    let interrupted = engine
        .envctl(&env)
        .args(["run", &env.name, "--", "true"])
        .spawn();
    wait_until("the waiter queues", Duration::from_secs(30), || {
        queue(&engine, &env).len() == 1
    });
    interrupted.signal("INT");
    interrupted
        .wait_within(Duration::from_secs(10))
        .code(130)
        .stderr_has("interrupted; nothing had been created yet");
    assert!(queue(&engine, &env).is_empty(), "its entry was left");
    let docker = engine.engine();
    let containers = block_on(docker.list_containers(&[Filter::Managed])).expect("list");
    let others: Vec<&str> = containers
        .iter()
        .filter(|c| c.labels.get(label::ID) != Some(&holder))
        .map(|c| c.name.as_str())
        .filter(|name| *name != "envctl-capacity")
        .collect();
    assert!(others.is_empty(), "created while waiting: {others:?}");

    engine
        .envctl(&env)
        .args(["capacity", "--max-memory", "64m"])
        .run()
        .success();
    let started = Instant::now();
    engine
        .envctl(&env)
        .args(["up", &env.name])
        .run()
        .code(1)
        .stderr_has(&format!(
            "environment `{}` needs 128 MiB of memory, more than the engine's whole capacity \
             of 64 MiB",
            env.name
        ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once"
    );
    assert!(queue(&engine, &env).is_empty());
}

#[test]
fn starting_a_stopped_environment_waits_for_capacity_as_a_new_start_does() {
    let test = "cap-start";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    let (first, second) = (format!("{}-a", env.name), format!("{}-b", env.name));
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1"])
        .run()
        .success();
    let envctl = || engine.envctl(&env);
    envctl()
        .args(["up", &env.name, "--name", &first])
        .run()
        .success();
    envctl().args(["stop", &first]).run().success();
    // A stopped environment counts nothing.
    envctl()
        .args(["up", &env.name, "--name", &second])
        .run()
        .success();
    envctl()
        .args(["start", &first, "--queue-timeout", "2s"])
        .run_within(Duration::from_secs(30))
        .code(2)
        .stderr_has("gave up waiting for capacity after 2s: next in line, 1 of 1 environments run");
    envctl().args(["down", &second]).run().success();
    envctl().args(["start", &first]).run().success();
    assert!(queue(&engine, &env).is_empty());
}

#[test]
fn an_owner_at_its_per_owner_limit_lets_the_next_owner_go_first() {
    let test = "cap-owner";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    let as_owner = |owner: &str| engine.envctl(&env).env("BUILD_TAG", owner);
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "3", "--per-owner", "1"])
        .run()
        .success();
    let holder = format!("{}-a1", env.name);
    as_owner("job-a")
        .args(["up", &env.name, "--name", &holder])
        .run()
        .success();
    let second_of_a = as_owner("job-a")
        .args(["run", &env.name, "--queue-timeout", "20s", "--", "true"])
        .spawn();
    wait_until(
        "job-a's second start queues",
        Duration::from_secs(30),
        || queue(&engine, &env).len() == 1,
    );
    // Behind job-a's waiter in the queue, job-b goes first: job-a is at its limit.
    as_owner("job-b")
        .args(["run", &env.name, "--queue-timeout", "20s", "--", "true"])
        .run_within(Duration::from_secs(60))
        .success();
    assert_eq!(
        queue(&engine, &env).len(),
        1,
        "job-a's second start still waits"
    );
    engine.envctl(&env).args(["down", &holder]).run().success();
    second_of_a.wait_within(Duration::from_secs(60)).success();
}

/// `status -o json`: each service's state.
fn service_states(engine: &PrivateEngine, env: &TestEnv, id: &str) -> Vec<String> {
    let shown = engine.envctl(env).args(["status", id, "-o", "json"]).run();
    shown.success().json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_idle_environment_is_stopped_to_admit_a_new_up_where_the_capacity_says_so() {
    let test = "cap-preempt";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    let (idler, newcomer) = (format!("{}-idler", env.name), format!("{}-new", env.name));
    engine
        .envctl(&env)
        .args([
            "capacity",
            "--max-environments",
            "1",
            "--preempt-idle",
            "1s",
        ])
        .run()
        .success();
    let shown = engine.envctl(&env).args(["capacity"]).run();
    assert!(
        shown
            .success()
            .stdout()
            .contains("1 environment, environments idle over 1s stopped to make room"),
        "{}",
        shown.stdout()
    );
    let json = engine.envctl(&env).args(["capacity", "-o", "json"]).run();
    assert_eq!(json.success().json()["capacity"]["preempt_idle_seconds"], 1);
    engine
        .envctl(&env)
        .args(["up", &env.name, "--name", &idler])
        .run()
        .success();
    std::thread::sleep(Duration::from_secs(2));
    let up = engine
        .envctl(&env)
        .args(["up", &env.name, "--name", &newcomer])
        .run_within(Duration::from_secs(90));
    let stderr = up.success().stderr();
    assert!(
        stderr.contains(&format!(
            "stopped `{idler}` ({}) to make room for `{}`: idle for",
            env.name, env.name
        )) && stderr.contains("last activity: creation at")
            && stderr.contains("longer than the capacity's --preempt-idle 1s"),
        "{stderr}"
    );
    assert!(
        service_states(&engine, &env, &idler)
            .iter()
            .all(|s| s != "running"),
        "the idle one stopped"
    );
    assert_eq!(service_states(&engine, &env, &newcomer), ["running"]);
    // `status` says why it was stopped, long after the start that stopped it ended.
    let status = engine.envctl(&env).args(["status", &idler]).run();
    let said = status.success().stderr();
    assert!(
        said.contains(&format!("UTC to make room for `{}`: idle for", env.name)),
        "{said}"
    );
    let json = engine
        .envctl(&env)
        .args(["status", &idler, "-o", "json"])
        .run();
    let reason = json.success().json()["stopped"]["reason"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.starts_with("to make room for")),
        "{reason}"
    );
}

#[test]
fn a_pool_member_is_retired_to_admit_an_up() {
    let test = "cap-pool";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    // A second environment, with a pool of its one service, in the same directory.
    let pooled = format!("{}p", env.name);
    let service = app("").replace("    build: context\n", "");
    std::fs::write(
        env.dir.file(&format!("{pooled}.yaml")),
        format!("name: {pooled}\npool: {{size: 1, services: [app]}}\nservices:\n{service}"),
    )
    .unwrap();
    engine
        .envctl(&env)
        .args(["pool", "fill", &pooled])
        .run()
        .success();
    let members = |engine: &PrivateEngine| {
        let ls = engine.envctl(&env).args(["pool", "ls", "-o", "json"]).run();
        ls.success().json().as_array().unwrap().len()
    };
    assert_eq!(members(&engine), 1);
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1"])
        .run()
        .success();
    // The member counts.
    let json = engine.envctl(&env).args(["capacity", "-o", "json"]).run();
    let json = json.success().json();
    assert_eq!(json["counted"], 1);
    assert_eq!(json["environments"][0]["state"], "pool-member");
    let up = engine
        .envctl(&env)
        .args(["up", &env.name, "--queue-timeout", "60s"])
        .run_within(Duration::from_secs(90));
    let stderr = up.success().stderr();
    assert!(
        stderr.contains(&format!("to make room for `{}`", env.name)),
        "{stderr}"
    );
    assert_eq!(members(&engine), 0, "the member gave way");
}

#[test]
fn an_up_that_adopts_its_own_member_is_admitted_beside_it() {
    let test = "cap-adopt";
    let Some((engine, env)) = set_up(test, "") else {
        return;
    };
    // An environment whose `base` is pooled and whose `app` each `up` starts.
    let pooled = format!("{}p", env.name);
    let service = app("").replace("    build: context\n", "");
    let base = service
        .replace("  app:\n", "  base:\n")
        .replace("--name, app]", "--name, base, --port, \"9090\"]")
        .replace("ports: [8080]", "ports: [9090]")
        .replace("ready: {tcp: 8080}", "ready: {tcp: 9090}");
    std::fs::write(
        env.dir.file(&format!("{pooled}.yaml")),
        format!("name: {pooled}\npool: {{size: 1, services: [base]}}\nservices:\n{base}{service}"),
    )
    .unwrap();
    engine
        .envctl(&env)
        .args(["pool", "fill", &pooled])
        .run()
        .success();
    let ls = engine.envctl(&env).args(["pool", "ls", "-o", "json"]).run();
    let member = ls.success().json()[0]["id"].as_str().unwrap().to_string();
    engine
        .envctl(&env)
        .args(["capacity", "--max-environments", "1"])
        .run()
        .success();
    // The member fills the one place; the up adopting it adds no environment.
    let up = engine
        .envctl(&env)
        .args(["up", &pooled, "--queue-timeout", "20s", "-o", "json"])
        .run_within(Duration::from_secs(60));
    let json = up.success().json();
    assert_eq!(json["id"], member.as_str(), "{}", up.stderr());
    assert!(!up.stderr().contains("to make room"), "{}", up.stderr());
}
