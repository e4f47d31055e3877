//! Dynamic shell completion (`COMPLETE=bash envctl`): ids from the engine, environment names
//! from the environment directory.

use crate::harness::{IMAGE, TestEnv};
use crate::support::Envctl;

/// What envctl answers when bash completes word `index` of `words`.
fn complete(envctl: Envctl, index: usize, words: &[&str]) -> Vec<String> {
    let run = envctl
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", index.to_string())
        .args(["--", "envctl"])
        .args(words)
        .run();
    run.success().stdout().lines().map(str::to_string).collect()
}

#[test]
fn bash_gets_a_registration_script() {
    let run = Envctl::new().env("COMPLETE", "bash").run();
    run.success()
        .stdout_has("_clap_complete_envctl()")
        .stdout_has("-F _clap_complete_envctl envctl");
}

#[test]
fn ids_and_environment_names_complete() {
    let env = TestEnv::new(
        "compl",
        &format!("  db:\n    image: {IMAGE}\n    command: [sleep, --name, db]\n"),
    );
    let id = format!("{}-x", env.name);
    env.envctl()
        .args(["up", &env.name, "--name", &id])
        .run()
        .success();
    // By the start of the id, and by its end, as ids are accepted.
    assert_eq!(
        complete(env.envctl(), 2, &["status", &env.name]),
        [id.as_str()]
    );
    // An end that starts with a digit: one starting with `-` (`-504-x` with a 3-digit pid)
    // completes as short flags too.
    let end = format!("{}-x", std::process::id());
    assert!(id.ends_with(&end));
    assert_eq!(complete(env.envctl(), 2, &["logs", &end]), [id.as_str()]);
    assert_eq!(
        complete(
            env.envctl(),
            3,
            &["down", "--ignore-missing", &id[..id.len() - 1]]
        ),
        [id.as_str()]
    );
    // Environment names: from the files for `up`, from the engine too for `--environment`.
    assert_eq!(
        complete(env.envctl(), 2, &["up", &env.name]),
        [env.name.as_str()]
    );
    assert_eq!(
        complete(
            Envctl::new(),
            4,
            &["down", "--all", "--environment", &env.name]
        ),
        [env.name.as_str()]
    );
}
