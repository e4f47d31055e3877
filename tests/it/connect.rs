//! How envctl finds its engine, against real engines: a TLS-only private engine reached with
//! `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` and through a Docker context, and
//! the shared engine chosen by the current context of a `config.json`. Contexts are made with
//! the docker CLI, so envctl reads what Docker itself writes.

use std::path::Path;
use std::process::Command;

use crate::harness::{TestEnv, standin};
use crate::private_engine::PrivateEngine;

/// One service publishing 8080, built on whichever engine runs it.
const WEB: &str = "  web:\n    image: envctl-demo/oracle-xe\n    build: context\n    \
                   command: [serve, --name, web, --port, \"8080\"]\n    ports: [8080]\n    \
                   ready: {http: 8080/health}\n";

#[test]
fn tls_only_engine_through_the_variables_and_through_a_context() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(engine) = PrivateEngine::start_tls("tls", certs.dir.path()) else {
        return;
    };
    let env = TestEnv::new("tls", WEB);
    // `envctl build`, `run` and its clean-up, all over TLS with the variables.
    engine.build_images(&env);
    let run = engine
        .envctl(&env)
        .args(["run", &env.name, "--", standin_path(), "fetch"])
        .args(["ENVCTL_WEB_8080", "/health"])
        .run();
    run.success()
        .stdout_has("ENVCTL_WEB_8080=127.0.0.1:")
        .stdout_has("answered 200");

    // Plain HTTP to the TLS port: refused, and the message says which endpoint, from where.
    let plain = env
        .envctl()
        .env("DOCKER_HOST", &engine.host)
        .env_remove("DOCKER_TLS_VERIFY")
        .args(["ls"])
        .run();
    plain.code(2).stderr_has(&format!(
        "cannot reach the Docker engine at `{}` (from DOCKER_HOST): ",
        engine.host
    ));
    plain.stderr_has("DOCKER_TLS_VERIFY");

    // Through a context made by the docker CLI, chosen by DOCKER_CONTEXT.
    let home = tempfile::tempdir().expect("home");
    let tls = |dir: &Path| {
        format!(
            "host={},ca={},cert={},key={}",
            engine.host,
            dir.join("ca.pem").display(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        )
    };
    docker_cli(home.path(), &["context", "create", "envctl-tls"])
        .args(&["--docker", &tls(certs.dir.path())])
        .run_ok();
    let in_context = |context: &str| {
        env.envctl()
            .env("HOME", home.path())
            .env("DOCKER_CONTEXT", context)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONFIG")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
    };
    let up = in_context("envctl-tls")
        .args(["up", &env.name, "-o", "json"])
        .run();
    let id = up.success().json()["id"].as_str().expect("id").to_owned();
    in_context("envctl-tls")
        .args(["env", &id])
        .run()
        .success()
        .stdout_has("ENVCTL_WEB_8080='127.0.0.1:");
    in_context("envctl-tls").args(["down", &id]).run().success();

    // A context whose CA did not sign the engine's certificate names itself.
    docker_cli(home.path(), &["context", "create", "envctl-wrong-ca"])
        .args(&["--docker", &tls(certs.other_ca.path())])
        .run_ok();
    let wrong = in_context("envctl-wrong-ca").args(["ls"]).run();
    wrong.code(2).stderr_has(&format!(
        "cannot reach the Docker engine at `{}` (from Docker context `envctl-wrong-ca`, chosen \
         by DOCKER_CONTEXT): ",
        engine.host
    ));
    wrong.stderr_has("the engine's certificate is not signed by the CA envctl used, `");
    wrong.stderr_has(
        "hint: the Docker context `envctl-wrong-ca` holds that CA: give it the one that signed \
         the engine's certificate (`docker context update envctl-wrong-ca --docker ",
    );
}

#[test]
fn a_wrong_ca_says_the_engines_certificate_is_not_signed_by_it_naming_its_ca_pem() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(engine) = PrivateEngine::start_tls("wrong-ca", certs.dir.path()) else {
        return;
    };
    let env = TestEnv::new("wrong-ca", WEB);
    let wrong = env
        .envctl()
        .env("DOCKER_HOST", &engine.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs.other_ca.path())
        .args(["ls"])
        .run();
    let ca = certs.other_ca.path().join("ca.pem");
    wrong.code(2).stderr_has(&format!(
        "cannot reach the Docker engine at `{}` (from DOCKER_HOST): the engine's certificate \
         is not signed by the CA envctl used, `{}`\n",
        engine.host,
        ca.display()
    ));
    wrong.stderr_has("hint: point DOCKER_CERT_PATH at the certificates of that engine");
    assert!(
        !wrong.stderr().contains("start that engine") && !wrong.stderr().contains("UnknownIssuer"),
        "{}",
        wrong.stderr()
    );
}

#[test]
fn engine_chosen_by_the_current_context() {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => path.to_owned(),
            None => {
                eprintln!("skipped: the engine is not behind a local unix socket");
                return;
            }
        },
        _ => "/var/run/docker.sock".to_owned(),
    };
    let env = TestEnv::new("context", &WEB.replace("    build: context\n", ""));
    let home = tempfile::tempdir().expect("home");
    // The context's socket is a link made later: first it leads nowhere.
    let link = home.path().join("engine.sock");
    let host = format!("unix://{}", link.display());
    docker_cli(home.path(), &["context", "create", "envctl-ctx"])
        .args(&["--docker", &format!("host={host}")])
        .run_ok();
    docker_cli(home.path(), &["context", "use", "envctl-ctx"]).run_ok();
    let envctl = || {
        env.envctl()
            .env("HOME", home.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONFIG")
    };

    let nowhere = envctl().args(["ls"]).run();
    nowhere.code(2).stderr_has(&format!(
        "cannot reach the Docker engine at `{host}` (from Docker context `envctl-ctx`, chosen \
         by `currentContext` in config.json): "
    ));

    std::os::unix::fs::symlink(&socket, &link).expect("link the engine's socket");
    let up = envctl().args(["up", &env.name, "-o", "json"]).run();
    let id = up.success().json()["id"].as_str().expect("id").to_owned();
    envctl()
        .args(["env", &id])
        .run()
        .success()
        .stdout_has("ENVCTL_WEB_8080='127.0.0.1:");
    // DOCKER_HOST comes before any context; `--context` before DOCKER_HOST.
    envctl()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["ls"])
        .run()
        .code(2)
        .stderr_has("(from DOCKER_HOST)");
    envctl()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["--context", "envctl-ctx", "down", &id])
        .run()
        .success();
    env.assert_nothing_left();
}

fn standin_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| standin().display().to_string())
}

/// The docker CLI with its configuration under `home`.
fn docker_cli(home: &Path, args: &[&str]) -> Cli {
    let mut command = Command::new("docker");
    command
        .env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    Cli(command)
}

struct Cli(Command);

impl Cli {
    fn args(mut self, args: &[&str]) -> Cli {
        self.0.args(args);
        self
    }

    #[track_caller]
    fn run_ok(mut self) {
        let output = self.0.output().expect("run docker");
        assert!(
            output.status.success(),
            "{:?} failed:\n{}",
            self.0,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Certificates made with openssl: a CA, the engine's certificate for 127.0.0.1
/// (`server-cert.pem`, `server-key.pem`) and a client's (`ca.pem`, `cert.pem`, `key.pem`) in
/// `dir`; a client set from an unrelated CA in `other_ca`.
struct Certs {
    dir: tempfile::TempDir,
    other_ca: tempfile::TempDir,
}

impl Certs {
    fn make() -> Option<Certs> {
        if Command::new("openssl").arg("version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "`openssl` is not installed, and CI must run the TLS tests"
            );
            eprintln!("\n!!! SKIPPED: the TLS tests need `openssl` on PATH !!!\n");
            return None;
        }
        let certs = Certs {
            dir: tempfile::tempdir().expect("certs dir"),
            other_ca: tempfile::tempdir().expect("certs dir"),
        };
        for dir in [certs.dir.path(), certs.other_ca.path()] {
            ca(dir);
            signed(
                dir,
                "server",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            );
            signed(
                dir,
                "client",
                "/CN=envctl-test",
                "extendedKeyUsage=clientAuth\n",
            );
            std::fs::rename(dir.join("client-cert.pem"), dir.join("cert.pem")).expect("rename");
            std::fs::rename(dir.join("client-key.pem"), dir.join("key.pem")).expect("rename");
        }
        Some(certs)
    }
}

#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn ca(dir: &Path) {
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(EC_KEY);
    args.extend([
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=envctl-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
}

/// `NAME-key.pem` and `NAME-cert.pem`, signed by the CA in `dir`, with `extensions`.
fn signed(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, cert, ext) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}-cert.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&ext), extensions).expect("extensions");
    let mut args = vec!["req", "-nodes"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    );
}
