//! The command line without Docker: planning, graphs, completions and usage errors.

use crate::support::{EnvDir, Envctl};

#[test]
fn plan_puts_the_seed_environment_in_three_waves() {
    let run = Envctl::new()
        .args(["plan", "accounting@ea6757a", "--name", "t1"])
        .run();
    run.success();
    let text = run.stdout();
    let wave = |n: &str| text.find(&format!("wave {n}\n")).expect("wave heading");
    let at = |s: &str| text.find(&format!("\n  {s}\n")).expect("service line");
    assert!(wave("1") < at("activemq") && at("activemq") < wave("2"));
    assert!(wave("1") < at("oracle-xe") && at("oracle-xe") < wave("2"));
    assert!(wave("2") < at("accounting") && at("accounting") < wave("3"));
    assert!(wave("3") < at("proxy"));
    run.stdout_has("image      docker-registry.example.com/accounting:ea6757a\n")
        .stdout_has("container  accounting_t1\n")
        .stdout_has("links      oracle-xe as oracle, activemq as activemq\n");
}

#[test]
fn plan_json_carries_the_same() {
    let run = Envctl::new()
        .args(["plan", "accounting@ea6757a", "-o", "json"])
        .run();
    let plan = run.success().json();
    let waves: Vec<Vec<String>> = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_array()
                .unwrap()
                .iter()
                .map(|s| s["service"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        waves,
        [
            vec!["activemq", "oracle-xe"],
            vec!["accounting"],
            vec!["proxy"]
        ]
    );
    let accounting = &plan["waves"][1][0];
    assert_eq!(
        accounting["image"],
        "docker-registry.example.com/accounting:ea6757a"
    );
    let id = plan["id"].as_str().unwrap();
    assert_eq!(accounting["container"], format!("accounting_{id}"));
    assert_eq!(accounting["links"][0]["alias"], "oracle");
    assert_eq!(
        id.len(),
        "20261126-041500".len(),
        "the id is the launch time: {id}"
    );
}

#[test]
fn plan_lists_the_candidates_when_several_environments_have_the_service() {
    let dir = EnvDir::new()
        .with("one.yaml", "services:\n  web:\n    image: web\n")
        .with(
            "two.yaml",
            "services:\n  web:\n    image: web\n  db:\n    image: db\n",
        );
    Envctl::new()
        .envdir(dir.path())
        .args(["plan", "web@abc"])
        .run()
        .code(1)
        .stderr_has("several environments match: `one`")
        .stderr_has("`two`");
    Envctl::new()
        .envdir(dir.path())
        .args(["plan", "two", "web@abc", "-o", "json"])
        .run()
        .success()
        .stdout_has("\"image\": \"web:abc\"");
}

#[test]
fn plan_rejects_unknown_environments_and_services() {
    Envctl::new()
        .args(["plan", "acounting"])
        .run()
        .code(1)
        .stderr_has("no environment `acounting`")
        .stderr_has("did you mean `accounting`?");
    Envctl::new()
        .args(["plan", "accounting", "acounting@abc"])
        .run()
        .code(1)
        .stderr_has("environment `accounting` has no service `acounting`");
    Envctl::new()
        .args(["plan", "accounting@-bad"])
        .run()
        .code(1)
        .stderr_has("`-bad` is not a valid image tag");
    Envctl::new()
        .args(["plan", "accounting", "--name", "no/slash"])
        .run()
        .code(1)
        .stderr_has("`no/slash` is not a valid name");
}

#[test]
fn an_id_cannot_take_another_environments_marker_name() {
    // `foo_ready` is the name of environment `foo`'s ready marker.
    Envctl::new()
        .args(["plan", "accounting", "--name", "foo_ready"])
        .run()
        .code(1)
        .stderr_has("`foo_ready` is not a valid name")
        .stderr_has("use `foo-ready`");
    Envctl::new()
        .args(["up", "accounting", "--name", "foo_pin"])
        .run()
        .code(1)
        .stderr_has("`foo_pin` is not a valid name");
}

#[test]
fn graph_prints_dot() {
    Envctl::new()
        .args(["graph", "accounting"])
        .run()
        .success()
        .stdout_has("digraph \"accounting\" {")
        .stdout_has("\"accounting\" -> \"oracle-xe\" [label=\"oracle\"];")
        .stdout_has("\"proxy\" -> \"accounting\";");
}

#[test]
fn completions_are_generated() {
    Envctl::new()
        .args(["completions", "bash"])
        .run()
        .success()
        .stdout_has("_envctl()");
}

#[test]
fn usage_errors_exit_with_1_and_help_with_0() {
    Envctl::new()
        .args(["frobnicate"])
        .run()
        .code(1)
        .stderr_has("unrecognized subcommand");
    Envctl::new()
        .args(["up", "--timeout", "soon"])
        .run()
        .code(1);
    Envctl::new()
        .args(["--help"])
        .run()
        .success()
        .stdout_has("Usage: envctl");
}

#[test]
fn envdir_and_file_select_environments() {
    let dir = EnvDir::new().with(
        "shop.yml",
        "name: shop\nservices:\n  web:\n    image: web\n",
    );
    Envctl::new()
        .envdir(dir.path())
        .args(["plan", "shop", "-o", "json"])
        .run()
        .success()
        .stdout_has("\"environment\": \"shop\"");
    Envctl::new()
        .args(["plan", "--envdir"])
        .args([dir.path()])
        .args(["-o", "json"])
        .run()
        .success()
        .stdout_has("\"service\": \"web\"");
    Envctl::new()
        .args(["plan", "-f", "/nonexistent/env.yaml"])
        .run()
        .code(1)
        .stderr_has("cannot read `/nonexistent/env.yaml`");
}

#[test]
fn help_examples_keep_one_command_a_line() {
    for (command, example) in [
        (
            "up",
            "\n  envctl up accounting\n  envctl up accounting@ea6757a ",
        ),
        (
            "plan",
            "\n  envctl plan accounting@ea6757a\n  envctl plan demo --output json\n",
        ),
    ] {
        Envctl::new()
            .args([command, "--help"])
            .run()
            .success()
            .stdout_has(example);
    }
}

#[test]
fn the_backend_is_chosen_by_flag_or_variable_among_docker_and_swarm() {
    Envctl::new()
        .env("ENVCTL_BACKEND", "kube")
        .args(["ls"])
        .run()
        .code(1)
        .stderr_has("invalid value 'kube'")
        .stderr_has("[possible values: docker, swarm]");
    Envctl::new()
        .args(["--backend", "kube", "plan", "accounting"])
        .run()
        .code(1)
        .stderr_has("invalid value 'kube'");
    Envctl::new()
        .env("ENVCTL_BACKEND", "docker")
        .args(["--backend", "docker", "plan", "accounting"])
        .run()
        .success();
    // The machine's own engine is no swarm manager: the swarm backend says so, as an engine
    // failure.
    Envctl::new()
        .env("ENVCTL_BACKEND", "swarm")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .args(["ls"])
        .run()
        .code(2)
        .stderr_has(
            "cannot reach the Docker Swarm engine at `unix:///var/run/docker.sock` (from \
             DOCKER_HOST): it is not a manager of a swarm",
        )
        .stderr_has("hint: point envctl at a manager of the swarm");
}
