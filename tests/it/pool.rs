//! Warm pools through the envctl binary against the real engine: fill, adopt, concurrent
//! adoption, a member replaced after its image changed, the reaper and `down --all` leaving
//! members alone, a member that fails to start.

use std::process::Command;
use std::time::Duration;

use crate::harness::{IMAGE, TestEnv, host_port, http_get};

/// `db` and `broker` pooled; `web` links to both and is started by each `up`.
fn pooled(db_image: &str) -> String {
    format!(
        "  db:
    image: {db_image}
    command: [serve, --name, db, --port, \"1521\"]
    ready: {{tcp: 1521}}
  broker:
    image: {IMAGE}
    command: [serve, --name, broker, --port, \"61616\", --requires, \"database:1521\"]
    links: [\"db:database\"]
    ready: {{tcp: 61616}}
  web:
    image: {IMAGE}
    command: [serve, --name, web, --requires, \"database:1521\", --requires, \"broker:61616\"]
    ports: [8080]
    links: [\"db:database\", broker]
    ready: {{http: 8080/health}}
"
    )
}

/// A test environment with a pool; drains it when dropped, then the environment's guard runs.
struct PoolEnv {
    env: TestEnv,
}

impl PoolEnv {
    fn new(test: &str, size: u32, services: &str) -> PoolEnv {
        let env = TestEnv::new(test, services);
        let text = std::fs::read_to_string(env.file()).unwrap();
        let text = text.replacen(
            "services:\n",
            &format!("pool: {{size: {size}, services: [db, broker]}}\nservices:\n"),
            1,
        );
        std::fs::write(env.file(), text).unwrap();
        PoolEnv { env }
    }

    /// `pool ls -o json`, this environment's members only.
    fn members(&self) -> Vec<serde_json::Value> {
        let ls = self.env.envctl().args(["pool", "ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["environment"] == self.env.name.as_str())
            .cloned()
            .collect()
    }

    fn ls_ids(&self) -> Vec<String> {
        let ls = self.env.envctl().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["environment"] == self.env.name.as_str())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for PoolEnv {
    fn drop(&mut self) {
        let _ = self
            .env
            .envctl()
            .args(["pool", "drain", &self.env.name])
            .run();
    }
}

#[test]
fn up_adopts_a_filled_member_whose_containers_carry_the_id_ls_shows() {
    let pool = PoolEnv::new("pool-adopt", 1, &pooled(IMAGE));
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success()
        .stderr_has("is ready");
    let members = pool.members();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["state"], "ready");
    assert_eq!(members[0]["matches"], true, "{members:?}");
    let member = members[0]["id"].as_str().unwrap().to_string();
    assert!(
        pool.ls_ids().is_empty(),
        "a member is no environment for `ls`"
    );

    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let json = up.success().json();
    assert_eq!(json["id"], member.as_str(), "the id is the member's");
    for service in json["services"].as_array().unwrap() {
        let container = service["container"].as_str().unwrap();
        assert!(container.ends_with(&format!("_{member}")), "{container}");
    }
    let body = http_get(host_port(&json, "web", 8080));
    assert!(
        body.contains("database:1521 ok") && body.contains("broker:61616 ok"),
        "links resolve as after a cold start: {body}"
    );
    assert!(pool.members().is_empty(), "adopted at most once");
    let ls = env.envctl().args(["ls"]).run();
    ls.success().stdout_has("(adopted, warm ");
    env.envctl()
        .args(["status", &member])
        .run()
        .success()
        .stderr_has("adopted from the warm pool");
    env.envctl().args(["down", &member]).run().success();
    env.assert_nothing_left();
}

#[test]
fn two_concurrent_ups_in_two_pid_namespaces_never_adopt_the_same_member() {
    let pool = PoolEnv::new("pool-race", 1, &pooled(IMAGE));
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let member = pool.members()[0]["id"].as_str().unwrap().to_string();
    // Each in a PID namespace of its own, as two CI agents in containers run it.
    let spawn = || {
        let up = env.envctl().args(["up", &env.name, "-o", "json"]);
        crate::reaper::in_another_pid_namespace(up)
    };
    let (a, b) = (spawn(), spawn());
    let id = |child: std::process::Child| {
        let output = child.wait_with_output().expect("up ends");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        json["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (id(a), id(b));
    assert_ne!(a, b);
    assert_eq!(
        [&a, &b].iter().filter(|id| ***id == member).count(),
        1,
        "one adopts the member, the other starts cold"
    );
    env.envctl().args(["down", &a, &b]).run().success();
    env.assert_nothing_left();
}

#[test]
fn a_member_of_a_rebuilt_image_is_replaced_at_the_next_fill() {
    let tag = format!("t-pool-stale-{}:1", std::process::id());
    let build = |label: &str| {
        let dockerfile = format!("FROM {IMAGE}\nLABEL envctl-test-pool={label}\n");
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _image = RemoveImage(tag.clone());
    build("1");
    let pool = PoolEnv::new("pool-stale", 1, &pooled(&tag));
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let old = pool.members()[0]["id"].as_str().unwrap().to_string();
    build("2");
    let members = pool.members();
    assert_eq!(members[0]["matches"], false);
    let why = members[0]["why"].as_str().unwrap();
    assert!(why.contains("changed since the member was filled"), "{why}");
    // `up -v` says why it does not adopt, and starts cold.
    let up = env
        .envctl()
        .args(["-v", "up", &env.name, "-o", "json"])
        .run();
    let started = up.success().json()["id"].as_str().unwrap().to_string();
    up.stderr_has("does not match: the image");
    assert_ne!(started, old);
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success()
        .stderr_has(&format!("removed member {old}"));
    let members = pool.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["matches"], true, "{members:?}");
    env.envctl().args(["down", &started]).run().success();
}

#[test]
fn the_reaper_and_down_all_leave_pool_members_alone() {
    let pool = PoolEnv::new("pool-reaper", 1, &pooled(IMAGE));
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let member = pool.members()[0]["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_secs(1));
    env.reap(&["--idle", "0s", "--remove-after", "0s", "--max-age", "0s"])
        .success();
    env.envctl()
        .args(["down", "--all", "--environment", &env.name, "--yes"])
        .run();
    let members = pool.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["id"], member.as_str());
    assert_eq!(members[0]["state"], "ready");
    env.envctl()
        .args(["pool", "drain", &env.name])
        .run()
        .success()
        .stderr_has(&format!("removed pool member {member}"));
    env.assert_nothing_left();
}

#[test]
fn a_member_that_fails_to_start_is_removed_and_reported() {
    let services = pooled(IMAGE).replace(
        "command: [serve, --name, db, --port, \"1521\"]",
        "command: [serve, --name, db, --port, \"1521\", --requires, \"nowhere:1\"]",
    );
    let pool = PoolEnv::new("pool-fail", 1, &services);
    let env = &pool.env;
    let fill = env.envctl().args(["pool", "fill", &env.name]).run();
    fill.code(2)
        .stderr_has("a member failed to start and was removed");
    assert!(pool.members().is_empty());
    env.assert_nothing_left();
}

#[test]
fn an_interrupted_adoption_leaves_nothing_of_the_member() {
    let services = pooled(IMAGE).replace(
        "command: [serve, --name, web,",
        "command: [serve, --name, web, --delay, 30s,",
    );
    let pool = PoolEnv::new("pool-interrupt", 1, &services);
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let member = pool.members()[0]["id"].as_str().unwrap().to_string();
    let up = env.envctl().args(["up", &env.name]).spawn();
    crate::support::wait_until("web starts", Duration::from_secs(30), || {
        up.stderr_so_far().contains("web starting")
    });
    up.signal("INT");
    let up = up.wait_within(Duration::from_secs(30));
    up.code(130);
    assert!(
        pool.members().is_empty(),
        "an adopted member never returns to the pool"
    );
    assert!(!pool.ls_ids().contains(&member));
    env.assert_nothing_left();
}

#[test]
fn run_adopts_a_member_too() {
    let pool = PoolEnv::new("pool-run", 1, &pooled(IMAGE));
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let member = pool.members()[0]["id"].as_str().unwrap().to_string();
    let run = env
        .envctl()
        .args(["run", &env.name, "--", "sh", "-c", "echo id=$ENVCTL_ID"])
        .run();
    run.success().stdout_has(&format!("id={member}"));
    env.assert_nothing_left();
}

#[test]
fn fill_watch_refills_after_an_adoption() {
    let pool = PoolEnv::new("pool-watch", 1, &pooled(IMAGE));
    let env = &pool.env;
    let watch = env
        .envctl()
        .args(["pool", "fill", "--watch", &env.name])
        .spawn();
    let ready = |pool: &PoolEnv| -> Vec<String> {
        let members = pool.members();
        let ready = members.iter().filter(|m| m["state"] == "ready");
        ready
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    crate::support::wait_until("a member is ready", Duration::from_secs(60), || {
        ready(&pool).len() == 1
    });
    let first = ready(&pool)[0].clone();
    let up = env.envctl().args(["up", &env.name, "-o", "json"]).run();
    let adopted = up.success().json()["id"].as_str().unwrap().to_string();
    assert_eq!(adopted, first);
    crate::support::wait_until("the pool is refilled", Duration::from_secs(90), || {
        ready(&pool).iter().any(|id| *id != first)
    });
    watch.signal("TERM");
    watch.wait_within(Duration::from_secs(60)).success();
    env.envctl().args(["down", &adopted]).run().success();
}

#[test]
fn the_reaper_collects_what_a_killed_adoption_left() {
    let services = pooled(IMAGE).replace(
        "command: [serve, --name, web,",
        "command: [serve, --name, web, --delay, 30s,",
    );
    let pool = PoolEnv::new("pool-killed", 1, &services);
    let env = &pool.env;
    env.envctl()
        .args(["pool", "fill", &env.name])
        .run()
        .success();
    let member = pool.members()[0]["id"].as_str().unwrap().to_string();
    let up = env.envctl().args(["up", &env.name]).spawn();
    crate::support::wait_until("web starts", Duration::from_secs(30), || {
        up.stderr_so_far().contains("web starting")
    });
    up.signal("KILL");
    up.wait();
    assert!(
        pool.members().is_empty(),
        "an adopted member never returns to the pool"
    );
    assert_eq!(env.state_of(&member).as_deref(), Some("unfinished"));
    env.reap(&[]).success().stdout_has(&member);
    env.assert_nothing_left();
}

#[test]
fn two_fills_at_once_never_fill_above_the_size() {
    let pool = PoolEnv::new("pool-two-fills", 2, &pooled(IMAGE));
    let env = &pool.env;
    // A cron fill and a `--watch` fill on two hosts: both start before either created anything.
    let fill = || env.envctl().args(["pool", "fill", &env.name]).spawn();
    let (a, b) = (fill(), fill());
    let (a, b) = (
        a.wait_within(Duration::from_secs(120)),
        b.wait_within(Duration::from_secs(120)),
    );
    a.success();
    b.success();
    let members = pool.members();
    assert_eq!(
        members.len(),
        2,
        "size 2: {members:?}\n{}\n{}",
        a.stderr(),
        b.stderr()
    );
    let skipped = [&a, &b]
        .iter()
        .filter(|run| run.stderr().contains("skipped: another `envctl pool fill`"))
        .count();
    assert!(skipped <= 1, "{}\n{}", a.stderr(), b.stderr());
    assert!(
        fill_claims(&env.name).is_empty(),
        "each fill releases its claim"
    );
}

/// The names of the fill claims on `environment`'s pool.
fn fill_claims(environment: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=io.envctl.role=pool-fill",
            "--filter",
            &format!("label=io.envctl.environment={environment}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_reaper_collects_what_a_killed_fill_left() {
    let services = pooled(IMAGE).replace(
        "command: [serve, --name, db,",
        "command: [serve, --name, db, --delay, 30s,",
    );
    let pool = PoolEnv::new("pool-killed-fill", 1, &services);
    let env = &pool.env;
    let fill = env.envctl().args(["pool", "fill", &env.name]).spawn();
    crate::support::wait_until("the member is filling", Duration::from_secs(30), || {
        pool.members().iter().any(|m| m["state"] == "filling")
    });
    fill.signal("KILL");
    fill.wait();
    let members = pool.members();
    assert_eq!(members.len(), 1, "{members:?}");
    let member = members[0]["id"].as_str().unwrap().to_string();
    let state = members[0]["state"].as_str().unwrap();
    assert!(
        state.starts_with("failed: its fill never finished"),
        "{state}"
    );
    // The killed fill's claim stays until a fill or a reaper sweeps it: any of them, of any
    // pool on this engine, so another test's fill running meanwhile may have taken it already.
    let claims = fill_claims(&env.name);
    assert!(claims.len() <= 1, "the killed fill's claim: {claims:?}");
    env.reap(&[]).success().stdout_has(&member);
    assert!(pool.members().is_empty());
    assert!(
        fill_claims(&env.name).is_empty(),
        "the reaper removes the claim"
    );
    env.assert_nothing_left();
}
