//! Published ports after `start`, the `port` command, and the JSON and tables that show ports,
//! against a real engine.

use std::process::Command;

use crate::harness::{IMAGE, TestEnv, host_port, http_get};
use crate::private_engine::PrivateEngine;
use crate::snapshot::{assert_masked, mask_table};

/// One HTTP service publishing 8080.
fn web() -> String {
    format!(
        "  web:\n    image: {IMAGE}\n    command: [serve, --name, web, --port, \"8080\"]\n    \
         ports: [8080]\n    ready: {{http: 8080/health}}\n"
    )
}

/// The host port in a `  web 8080 -> 127.0.0.1:PORT  http://...` line.
fn port_in(line: &str) -> u64 {
    let address = line.split("-> ").nth(1).expect("an endpoint line");
    let address = address.split_whitespace().next().expect("an address");
    address.rsplit(':').next().unwrap().parse().expect("a port")
}

#[test]
fn start_prints_the_new_endpoints_and_they_answer() {
    let env = TestEnv::new("startports", &web());
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name, "-o", "json"])
        .run();
    let before = host_port(&up.success().json(), "web", 8080);
    http_get(before);
    env.envctl().args(["stop", &env.name]).run().success();

    let start = env.envctl().args(["start", &env.name]).run();
    start.success().stderr_has(&format!("started {}", env.name));
    let stdout = start.stdout();
    assert_masked(
        &stdout,
        &env.name,
        "  web 8080 -> 127.0.0.1:[PORT]  http://127.0.0.1:[PORT]/\n",
    );
    let after = port_in(stdout.lines().next().unwrap());
    http_get(after);

    // `port` gives the same address, and nothing else with a port named.
    let port = env.envctl().args(["port", &env.name, "web", "8080"]).run();
    assert_eq!(port.success().stdout(), format!("127.0.0.1:{after}\n"));
    let all = env.envctl().args(["port", &env.name, "web"]).run();
    assert_eq!(
        all.success().stdout(),
        format!("8080/tcp -> 127.0.0.1:{after}\n")
    );

    // Again with JSON: the new port answers too.
    env.envctl().args(["stop", &env.name]).run().success();
    let start = env.envctl().args(["start", &env.name, "-o", "json"]).run();
    let again = host_port(&start.success().json(), "web", 8080);
    http_get(again);
}

#[test]
fn port_names_what_is_not_published() {
    let env = TestEnv::new("portmiss", &web());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let other = env.envctl().args(["port", &env.name, "web", "9090"]).run();
    assert_masked(
        &other.code(1).stderr(),
        &env.name,
        "error: service `web` of `NAME` does not publish 9090/tcp\nhint: it publishes 8080\n",
    );
    let unknown = env.envctl().args(["port", &env.name, "wbe"]).run();
    assert_masked(
        &unknown.code(1).stderr(),
        &env.name,
        "error: environment `NAME` has no service `wbe`\nhint: its services: `web`\n",
    );
    let json = env
        .envctl()
        .args(["port", &env.name, "web", "-o", "json"])
        .run();
    assert_masked(
        &json.success().stdout(),
        &env.name,
        r#"[
  {
    "container_port": 8080,
    "protocol": "tcp",
    "host_ip": "0.0.0.0",
    "host_port": [PORT],
    "host": "127.0.0.1"
  }
]
"#,
    );
    env.envctl().args(["stop", &env.name]).run().success();
    let stopped = env.envctl().args(["port", &env.name, "web"]).run();
    assert_masked(
        &stopped.code(2).stderr(),
        &env.name,
        "error: service `web` of `NAME` is exited: a service that does not run publishes \
         no ports\nhint: `envctl start NAME` starts it, on new host ports\n",
    );
}

/// The port object of `up`, `status`, `ls`, `start` and `stop`, masked.
const PORT: &str = r#"{
          "container_port": 8080,
          "protocol": "tcp",
          "host_ip": "0.0.0.0",
          "host_port": [PORT],
          "host": "127.0.0.1"
        }"#;

#[test]
fn up_status_ls_stop_and_start_show_the_same_port_objects() {
    let env = TestEnv::new("views", &web());
    let up = env
        .envctl()
        .args(["up", &env.name, "--name", &env.name, "-o", "json"])
        .env("BUILD_TAG", "snapshot-owner")
        .run();
    let environment = |state: &str, ports: &str| {
        format!(
            r#"{{
  "id": "NAME",
  "environment": "NAME",
  "services": [
    {{
      "service": "web",
      "container": "web_NAME",
      "image": "envctl-demo/oracle-xe:latest",
      "state": "{state}",
      "ports": {ports}
    }}
  ]
}}
"#
        )
    };
    let running = environment("running", &format!("[\n        {PORT}\n      ]"));
    assert_masked(&up.success().stdout(), &env.name, &running);

    let status = env.envctl().args(["status", &env.name, "-o", "json"]).run();
    assert_masked(
        &status.success().stdout(),
        &env.name,
        &format!(
            r#"{{
  "id": "NAME",
  "environment": "NAME",
  "services": [
    {{
      "service": "web",
      "container": "web_NAME",
      "state": "running",
      "health": null,
      "restarts": 0,
      "exit_code": null,
      "ports": [
        {PORT}
      ]
    }}
  ]
}}
"#
        ),
    );
    let table = env.envctl().args(["status", &env.name]).run();
    assert_eq!(
        mask_table(&table.success().stdout(), &env.name),
        "SERVICE  CONTAINER  STATE  HEALTH  RESTARTS  EXIT  PORTS\n\
         web  web_NAME  running  -  0  -  8080->127.0.0.1:[PORT]\n",
    );

    // `ls` lists every environment on the engine: this one's row, as printed.
    let ls = env.envctl().args(["ls", "-o", "json"]).run();
    let stdout = ls.success().stdout();
    let start = stdout
        .find(&format!("  {{\n    \"id\": \"{}\"", env.name))
        .expect("ls lists the environment");
    let end = start + stdout[start..].find("\n  }").expect("the row ends") + 4;
    assert_masked(
        &stdout[start..end],
        &env.name,
        &format!(
            r#"  {{
    "id": "NAME",
    "environment": "NAME",
    "state": "ready",
    "created_at": "[TIME]",
    "age_seconds": [SECONDS],
    "owner": "snapshot-owner",
    "images": [
      "web:latest"
    ],
    "refs": [],
    "endpoints": {{
      "web": [
        {}
      ]
    }},
    "pinned": false,
    "last_activity": "envctl status",
    "last_activity_at": "[TIME]",
    "idle_seconds": [SECONDS]
  }}"#,
            PORT
        ),
    );

    // The table: its header and this environment's row, ages masked.
    let ls = env.envctl().args(["ls"]).run();
    let stdout = ls.success().stdout();
    let lines: Vec<&str> = stdout
        .lines()
        .enumerate()
        .filter(|(i, line)| *i == 0 || line.starts_with(&format!("{} ", env.name)))
        .map(|(_, line)| line)
        .collect();
    let ages = regex::Regex::new(r"\b\d+[smhd](\d+[smhd])?\b").unwrap();
    assert_eq!(
        ages.replace_all(&mask_table(&lines.join("\n"), &env.name), "[AGE]"),
        "ID  ENVIRONMENT  STATE  AGE  OWNER  LAST ACTIVITY  PINNED  IMAGES  ENDPOINTS\n\
         NAME  NAME  ready  [AGE]  snapshot-owner  envctl status, idle [AGE]  -  web:latest  \
         web:8080->127.0.0.1:[PORT]\n"
    );

    let stop = env.envctl().args(["stop", &env.name, "-o", "json"]).run();
    assert_masked(
        &stop.success().stdout(),
        &env.name,
        &environment("exited", "[]"),
    );

    let start = env.envctl().args(["start", &env.name, "-o", "json"]).run();
    assert_masked(&start.success().stdout(), &env.name, &running);
}

#[test]
fn port_and_env_of_a_stopped_environment_exit_2_naming_start() {
    let env = TestEnv::new("stoppedports", &web());
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    env.envctl().args(["stop", &env.name]).run().success();

    let port = env.envctl().args(["port", &env.name, "web", "8080"]).run();
    assert_eq!(port.code(2).stdout(), "", "no address of a stopped service");
    assert_masked(
        &port.stderr(),
        &env.name,
        "error: service `web` of `NAME` is exited: a service that does not run publishes \
         no ports\nhint: `envctl start NAME` starts it, on new host ports\n",
    );
    let variables = env.envctl().args(["env", &env.name]).run();
    assert_eq!(variables.code(2).stdout(), "", "no variables to export");
    assert_masked(
        &variables.stderr(),
        &env.name,
        "error: no service of `NAME` runs: it has no endpoints\n\
         hint: `envctl start NAME` starts it, on new host ports\n",
    );
    let json = env.envctl().args(["env", &env.name, "-o", "json"]).run();
    assert_eq!(json.code(2).stdout(), "");
}

#[test]
fn a_service_killed_by_an_engine_restart_shows_no_old_ports() {
    let test = "crash-ports";
    let Some(mut engine) = PrivateEngine::start(test) else {
        return;
    };
    let env = TestEnv::new(
        test,
        "  web:\n    image: envctl-demo/oracle-xe\n    build: context\n    \
         command: [serve, --name, web, --port, \"8080\"]\n    ports: [8080]\n    \
         ready: {http: 8080/health}\n",
    );
    engine.build_images(&env);
    let envctl = || engine.envctl(&env);
    envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let old = envctl().args(["port", &env.name, "web", "8080"]).run();
    let old = old.success().stdout().trim().to_string();

    engine.crash_and_restart();
    let envctl = || engine.envctl(&env);
    // What made envctl print old ports: the engine still reports them on the killed container.
    let inspect = Command::new("docker")
        .env("DOCKER_HOST", &engine.host)
        .args([
            "inspect",
            "-f",
            "{{.State.Status}} {{json .NetworkSettings.Ports}}",
        ])
        .arg(format!("web_{}", env.name))
        .output()
        .expect("docker inspect");
    let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
    let old_port = old.rsplit(':').next().unwrap();
    assert!(
        inspect.starts_with("exited ") && inspect.contains(old_port),
        "the engine no longer keeps a killed container's ports ({inspect}): \
         this test reproduces nothing"
    );

    let port = envctl().args(["port", &env.name, "web", "8080"]).run();
    assert_eq!(port.code(2).stdout(), "", "the old {old}");
    port.stderr_has(&format!("envctl start {}", env.name));
    let variables = envctl().args(["env", &env.name]).run();
    assert_eq!(variables.code(2).stdout(), "", "the old {old}");
    let status = envctl().args(["status", &env.name, "-o", "json"]).run();
    let status = status.success().json();
    assert_eq!(status["services"][0]["state"], "exited");
    assert_eq!(status["services"][0]["ports"], serde_json::json!([]));
    let ls = envctl().args(["ls", "-o", "json"]).run();
    let rows = ls.success().json();
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == env.name.as_str()))
        .expect("ls lists the environment");
    assert_eq!(row["endpoints"], serde_json::json!({}), "{row}");
    assert!(!ls.stdout().contains(&old), "{}", ls.stdout());
}

#[test]
fn env_of_an_environment_with_a_stopped_service_exports_the_running_ones_and_warns() {
    let services = format!(
        "{}  db:\n    image: {IMAGE}\n    command: [serve, --name, db, --port, \"1521\"]\n    \
         ports: [1521]\n    ready: {{tcp: 1521}}\n",
        web()
    );
    let env = TestEnv::new("halfstopped", &services);
    env.envctl()
        .args(["up", &env.name, "--name", &env.name])
        .run()
        .success();
    let stopped = Command::new("docker")
        .args(["stop", "-t", "0", &format!("db_{}", env.name)])
        .output()
        .expect("docker stop");
    assert!(stopped.status.success(), "{stopped:?}");
    let variables = env.envctl().args(["env", &env.name]).run();
    variables
        .success()
        .stdout_has("export ENVCTL_WEB_8080='127.0.0.1:");
    assert!(!variables.stdout().contains("ENVCTL_DB_1521"));
    assert_masked(
        &variables.stderr(),
        &env.name,
        "warning: service `db` of `NAME` is exited: no variables for its ports\n\
         hint: `envctl start NAME` starts it, on new host ports\n",
    );
}
