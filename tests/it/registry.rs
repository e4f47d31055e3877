//! `SERVICE@REF` against registries, credentials and pull policies: a real registry (Debian's
//! `docker-registry`, distribution 2.8, htpasswd auth) started once per test run on a loopback
//! port, and, for the bearer-token flow that registry cannot do, a small token-issuing
//! registry endpoint of the tests' own.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use envctl::registry::{Client, Credential, Reference};

use crate::harness::{IMAGE, block_on, demo_images, unique};
use crate::support::{EnvDir, Envctl};

const USER: &str = "envctl";
const PASSWORD: &str = "s3cret-pass";

/// The registry every test of this module shares: started on first use, ended (and its
/// storage removed) by a watcher once the test process is gone.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// A `DOCKER_CONFIG` directory logged in to it.
    pub logged_in: PathBuf,
    /// Its output, the access log included: one line per request.
    pub log: PathBuf,
    /// The shell that runs the registry and ends it after this process: it outlives us.
    _watcher: std::process::Child,
}

pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(start_registry)
}

fn start_registry() -> Registry {
    let dir = std::env::temp_dir().join(format!("envctl-test-registry-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).expect("registry dir");
    let hash = bcrypt::hash_with_result(PASSWORD, 4)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
         http:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: envctl-test\n    path: {htpasswd}\n",
        data = dir.join("data").display(),
        htpasswd = dir.join("htpasswd").display(),
    );
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).expect("registry config");
    // The watcher ends the registry and removes its storage within a second of this process
    // ending, however it ends: a static is never dropped.
    let watcher = Command::new("sh")
        .args([
            "-c",
            r#"docker-registry serve "$1" >"$3/registry.log" 2>&1 & r=$!
               while kill -0 "$2" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
               kill "$r" 2>/dev/null; wait "$r"; rm -rf "$3""#,
            "sh",
        ])
        .arg(&config_path)
        .arg(std::process::id().to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry (Debian's docker-registry package)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&address).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {address}: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged_in = dir.join("docker-config");
    write_config(&logged_in, &address, USER, PASSWORD);
    Registry {
        address,
        logged_in,
        log: dir.join("registry.log"),
        _watcher: watcher,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `config.json` with inline credentials for `registry`, as `docker login` writes it.
fn write_config(dir: &Path, registry: &str, user: &str, password: &str) {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).expect("config dir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
}

fn docker(config: &Path, args: &[&str]) -> String {
    let output = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .env("DOCKER_BUILDKIT", "0")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn image_id(reference: &str) -> Option<String> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .expect("docker CLI");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A repository of this test in the shared registry, and the local images the test made or
/// pulled, removed when dropped (only those: the layers are the demo image's).
struct Repository {
    /// `127.0.0.1:PORT/envctl-test/NAME-PID`.
    name: String,
    config: PathBuf,
    local: Mutex<Vec<String>>,
}

impl Repository {
    fn new(test: &str) -> Repository {
        demo_images();
        let registry = registry();
        Repository {
            name: format!("{}/envctl-test/{}", registry.address, unique(test)),
            config: registry.logged_in.clone(),
            local: Mutex::new(Vec::new()),
        }
    }

    /// Pushes `image` under each tag, then removes the local tags again, so only the
    /// registry has them.
    fn push(&self, image: &str, tags: &[&str]) -> &Repository {
        for tag in tags {
            let reference = format!("{}:{tag}", self.name);
            docker(&self.config, &["tag", image, &reference]);
            docker(&self.config, &["push", "--quiet", &reference]);
            docker(&self.config, &["rmi", &reference]);
        }
        self
    }

    /// Tags `image` locally as `tag` of this repository.
    fn tag_locally(&self, image: &str, tag: &str) -> String {
        let reference = format!("{}:{tag}", self.name);
        docker(&self.config, &["tag", image, &reference]);
        self.forget_later(&reference);
        reference
    }

    fn forget_later(&self, reference: &str) {
        self.local.lock().unwrap().push(reference.to_string());
    }

    fn reference(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name)
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        for reference in self.local.lock().unwrap().iter() {
            let _ = Command::new("docker")
                .args(["rmi", reference])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An environment of one service `app` on `repository`, its file in a temporary envdir, and
/// a guard that removes its environments.
struct AppEnv {
    name: String,
    dir: EnvDir,
}

impl AppEnv {
    fn new(test: &str, repository: &str, extra: &str) -> AppEnv {
        let name = unique(test);
        let text = format!(
            "name: {name}\nservices:\n  app:\n    image: {repository}\n    command: [serve, --name, app]\n{extra}"
        );
        let dir = EnvDir::new().with(&format!("{name}.yaml"), &text);
        AppEnv { name, dir }
    }

    fn envctl(&self, config: &Path) -> Envctl {
        Envctl::new()
            .envdir(self.dir.path())
            .env("DOCKER_CONFIG", config)
            .env("ENVCTL_STATE_DIR", self.dir.path().join("state"))
    }
}

impl Drop for AppEnv {
    fn drop(&mut self) {
        let _ = Envctl::new()
            .args(["down", "--all", "--environment", &self.name])
            .run();
    }
}

fn app_image(up: &serde_json::Value) -> String {
    up["services"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_changeset_prefix_resolves_from_the_registry_and_up_pulls_that_tag() {
    let repo = Repository::new("reg-prefix");
    repo.push(IMAGE, &["ea6757a8090d", "d277d11f1376"]);
    repo.forget_later(&repo.reference("d277d11f1376"));
    let env = AppEnv::new("reg-prefix", &repo.name, "");
    let config = &registry().logged_in;

    let plan = env.envctl(config).args(["plan", "app@d277"]).run();
    plan.success()
        .stdout_has(&format!("image      {}\n", repo.reference("d277d11f1376")));
    assert_eq!(
        image_id(&repo.reference("d277d11f1376")),
        None,
        "plan pulls nothing"
    );

    let up = env
        .envctl(config)
        .args(["up", "app@d277", "--name", &env.name, "-o", "json"])
        .run();
    let json = up.success().json();
    assert_eq!(app_image(&json), repo.reference("d277d11f1376"));
    up.stderr_has("app pulling");
    assert!(image_id(&repo.reference("d277d11f1376")).is_some());
    let ls = env.envctl(config).args(["ls", "-o", "json"]).run();
    assert!(
        ls.success().stdout().contains("\"app:d277d11f1376\""),
        "ls names the full tag: {}",
        ls.stdout()
    );
}

#[test]
fn an_ambiguous_registry_prefix_lists_the_candidates() {
    let repo = Repository::new("reg-ambiguous");
    repo.push(IMAGE, &["ea6757a8090d", "ea6799b00000", "d277d11f1376"]);
    let env = AppEnv::new("reg-ambiguous", &repo.name, "");
    let config = &registry().logged_in;
    let plan = env.envctl(config).args(["plan", "app@ea67"]).run();
    let masked = plan
        .code(1)
        .stderr()
        .replace(&registry().address, "REGISTRY")
        .replace(&unique("reg-ambiguous"), "REPO");
    assert_eq!(
        masked,
        "error: service `app`: `ea67` matches several of the registry's tags of \
         `REGISTRY/envctl-test/REPO`: `ea6757a8090d`, `ea6799b00000`\n\
         hint: give more of the changeset, like `app@ea6757a8090d`\n"
    );
    for command in ["plan", "up"] {
        let run = env.envctl(config).args([command, "app@ea67"]).run();
        run.code(1)
            .stderr_has("service `app`: `ea67` matches several of the registry's tags of")
            .stderr_has("`ea6757a8090d`, `ea6799b00000`")
            .stderr_has("hint: give more of the changeset, like `app@ea6757a8090d`");
        assert!(!run.stderr().contains("d277d11f1376"), "{}", run.stderr());
    }
    repo.forget_later(&repo.reference("ea6799b00000"));
    env.envctl(config)
        .args(["up", "app@ea6799", "--name", &env.name, "-o", "json"])
        .run()
        .success();
}

#[test]
fn an_unknown_ref_says_where_it_looked_and_lists_the_closest_tags() {
    let repo = Repository::new("reg-unknown");
    repo.push(IMAGE, &["ea6757a8090d", "ea6799b00000", "d277d11f1376"]);
    let env = AppEnv::new("reg-unknown", &repo.name, "");
    let run = env
        .envctl(&registry().logged_in)
        .args(["up", "app@ea68"])
        .run();
    run.code(1)
        .stderr_has(&format!(
            "service `app`: no tag of `{}` starts with `ea68`, among its local tags and its \
             registry's\n",
            repo.name
        ))
        .stderr_has("hint: the closest tags are `ea6757a8090d`, `ea6799b00000`");
    // A repository the registry does not have at all.
    let env = AppEnv::new("reg-unknown-repo", &format!("{}-none", repo.name), "");
    env.envctl(&registry().logged_in)
        .args(["plan", "app@ea68"])
        .run()
        .code(1)
        .stderr_has("hint: the repository has no tags there; was the image pushed?");
}

#[test]
fn a_refused_login_names_docker_login_for_the_registry() {
    let repo = Repository::new("reg-login");
    repo.push(IMAGE, &["d277d11f1376"]);
    let env = AppEnv::new("reg-login", &repo.name, "");
    let address = &registry().address;
    let wrong = EnvDir::new();
    write_config(wrong.path(), address, USER, "wrong-password");
    env.envctl(wrong.path())
        .args(["up", "app@d277"])
        .run()
        .code(2)
        .stderr_has(&format!(
            "registry `{address}` refused the credentials envctl found for `envctl-test/"
        ))
        .stderr_has(&format!("hint: `docker login {address}`, then try again"));
    let none = EnvDir::new();
    env.envctl(none.path())
        .args(["up", "app@d277"])
        .run()
        .code(2)
        .stderr_has(&format!("registry `{address}` needs credentials for"))
        .stderr_has(&format!("hint: `docker login {address}`"));
    // The engine's pull of a tag given in full is refused the same way, with the same hint.
    let exact = AppEnv::new("reg-login-exact", &repo.name, "    tag: d277d11f1376\n");
    exact
        .envctl(wrong.path())
        .args(["up"])
        .arg_env(&exact.name)
        .run()
        .code(2)
        .stderr_has(&format!(
            "failed to pull image `{}`",
            repo.reference("d277d11f1376")
        ))
        .stderr_has(&format!("hint: `docker login {address}`"));
}

#[test]
fn credentials_come_from_the_credential_helper_that_credsstore_names() {
    let repo = Repository::new("reg-helper");
    repo.push(IMAGE, &["d277d11f1376"]);
    repo.forget_later(&repo.reference("d277d11f1376"));
    let env = AppEnv::new("reg-helper", &repo.name, "");
    let helpers = EnvDir::new();
    let asked = helpers.file("asked");
    let script = helpers.file("docker-credential-envctl-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {asked}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = EnvDir::new().with("config.json", r#"{"credsStore": "envctl-test"}"#);
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A helper that is not installed is named, with the file that names it.
    let missing = EnvDir::new().with("config.json", r#"{"credsStore": "envctl-no-such"}"#);
    env.envctl(missing.path())
        .args(["plan", "app@d27"])
        .run()
        .code(2)
        .stderr_has("the credential helper `docker-credential-envctl-no-such` for")
        .stderr_has("hint: install it, or remove it from `credsStore`/`credHelpers` in");
    let up = env
        .envctl(config.path())
        .env("PATH", &path)
        .args(["up", "app@d27", "--name", &env.name, "-o", "json"])
        .run();
    assert_eq!(
        app_image(&up.success().json()),
        repo.reference("d277d11f1376")
    );
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(
        asked.lines().count() >= 2 && asked.lines().all(|l| l == registry().address),
        "the helper was asked for the tag list and the pull: {asked:?}"
    );
}

#[test]
fn pull_never_with_a_missing_image_is_an_error_naming_the_service() {
    let repo = Repository::new("reg-never");
    repo.push(IMAGE, &["v1"]);
    let config = &registry().logged_in;
    let env = AppEnv::new("reg-never", &repo.name, "    tag: v1\n    pull: never\n");
    let message = format!(
        "service `app`: image `{}` is not available locally, and its pull policy is `never`",
        repo.reference("v1")
    );
    env.envctl(config)
        .args(["up"])
        .arg_env(&env.name)
        .run()
        .code(2)
        .stderr_has(&message)
        .stderr_has("hint: pull or build it first");
    let env = AppEnv::new("reg-never-flag", &repo.name, "    tag: v1\n");
    env.envctl(config)
        .args(["up", "--pull", "never"])
        .arg_env(&env.name)
        .run()
        .code(2)
        .stderr_has(&message);
    // With `never`, REF is looked for among the local tags only.
    env.envctl(config)
        .args(["plan", "app@v", "--pull", "never"])
        .run()
        .code(1)
        .stderr_has("no tag of")
        .stderr_has("starts with `v`, among its local tags\n");
    assert_eq!(image_id(&repo.reference("v1")), None);
}

#[test]
fn pull_always_replaces_a_local_tag_that_missing_keeps() {
    let repo = Repository::new("reg-always");
    repo.push(IMAGE, &["v1"]);
    let config = &registry().logged_in;
    // A local image under the same tag, different from the registry's.
    let local = EnvDir::new().with(
        "Dockerfile",
        &format!(
            "FROM {IMAGE}\nLABEL io.envctl.test=local-{}\n",
            std::process::id()
        ),
    );
    let built = repo.tag_locally(IMAGE, "v1");
    docker(
        config,
        &[
            "build",
            "-q",
            "-t",
            &built,
            &local.path().display().to_string(),
        ],
    );
    let local_id = image_id(&built).expect("the local image");
    let registry_id = image_id(IMAGE).expect("the demo image");
    assert_ne!(local_id, registry_id);

    let env = AppEnv::new("reg-always", &repo.name, "    tag: v1\n");
    let up = env
        .envctl(config)
        .args(["up", "--name", &env.name, "-o", "json"])
        .arg_env(&env.name)
        .run();
    up.success();
    assert!(!up.stderr().contains("pulling"), "{}", up.stderr());
    assert_eq!(
        image_id(&built).as_deref(),
        Some(local_id.as_str()),
        "missing keeps it"
    );
    env.envctl(config).args(["down", &env.name]).run().success();

    let up = env
        .envctl(config)
        .args(["up", "--pull", "always", "--name", &env.name, "-o", "json"])
        .arg_env(&env.name)
        .run();
    up.success().stderr_has("app pulling");
    assert_eq!(
        image_id(&built).as_deref(),
        Some(registry_id.as_str()),
        "always pulled the registry's image over the local one"
    );
    // The dangling local image is this test's own.
    let _ = Command::new("docker").args(["rmi", &local_id]).output();
}

#[test]
fn a_manifest_digest_is_the_one_the_registry_stored() {
    let repo = Repository::new("reg-digest");
    repo.push(IMAGE, &["v1"]);
    let reference = Reference::parse(&repo.reference("v1")).unwrap();
    let credential = Credential::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let client = Client::new(&reference, Some(credential), false).unwrap();
    let digest = block_on(client.manifest_digest(&reference)).expect("digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The digest names the manifest in the registry.
    let by_digest = Reference::parse(&format!("{}@{digest}", repo.name)).unwrap();
    assert_eq!(
        block_on(client.manifest_digest(&by_digest)).unwrap(),
        digest
    );
    let tags = block_on(client.tags(&reference)).unwrap();
    assert_eq!(tags, ["v1"]);
    let missing = block_on(client.manifest_digest(&reference.with_tag("v2"))).unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!(
            "registry `{}` has no manifest `v2` in `{}`",
            reference.registry, reference.repository
        )
    );
}

/// A registry endpoint that asks for a bearer token, as Docker Hub, Harbor and GitLab do:
/// `/v2/…` answers 401 with a `Bearer` challenge naming `/token`, which issues a token for
/// the right Basic credentials; the tag list comes in two `Link` pages.
struct TokenRegistry {
    address: String,
    /// The request lines it received, with their `Authorization` scheme.
    seen: Arc<Mutex<Vec<String>>>,
}

const TOKEN: &str = "envctl-test-token";

impl TokenRegistry {
    fn start(repository: &'static str, tags: &'static [&'static str]) -> TokenRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (realm, log) = (format!("http://{address}/token"), seen.clone());
        std::thread::spawn(move || {
            // Bounded: a test needs a few dozen requests at most.
            for stream in listener.incoming().take(200).flatten() {
                let _ = answer(stream, &realm, repository, tags, &log);
            }
        });
        TokenRegistry { address, seen }
    }
}

fn answer(
    mut stream: TcpStream,
    realm: &str,
    repository: &str,
    tags: &[&str],
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // A TLS hello (envctl tries HTTPS first): hang up, as a plain-HTTP server does.
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = value.trim().to_string();
        }
    }
    let Some(target) = request
        .split_whitespace()
        .nth(1)
        .filter(|_| request.starts_with("GET"))
    else {
        return Ok(());
    };
    seen.lock().unwrap().push(format!(
        "{target} {}",
        authorization.split(' ').next().unwrap_or("-")
    ));
    let basic = {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        format!("Basic {encoded}")
    };
    let bearer = format!("Bearer {TOKEN}");
    let list = format!("/v2/{repository}/tags/list");
    let (status, headers, body) = if target.starts_with("/token?") {
        let scoped = target.contains(&format!(
            "scope=repository%3A{}%3Apull",
            repository.replace('/', "%2F")
        )) && target.contains("service=envctl-test");
        match authorization == basic && scoped {
            true => ("200 OK", String::new(), format!(r#"{{"token":"{TOKEN}"}}"#)),
            false => ("401 Unauthorized", String::new(), String::new()),
        }
    } else if target.starts_with(&list) && authorization == bearer {
        let (page, next) = match target.contains("last=") {
            false => (&tags[..tags.len() / 2], true),
            true => (&tags[tags.len() / 2..], false),
        };
        let link = match next {
            true => format!(
                "Link: <{list}?last={}&n=1000>; rel=\"next\"\r\n",
                page.last().unwrap()
            ),
            false => String::new(),
        };
        let body = serde_json::json!({ "name": repository, "tags": page }).to_string();
        ("200 OK", link, body)
    } else if target.starts_with("/v2/") {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"envctl-test\",scope=\"repository:{repository}:pull\"\r\n"
        );
        (
            "401 Unauthorized",
            challenge,
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into(),
        )
    } else {
        ("404 Not Found", String::new(), String::new())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_bearer_token_flow_gets_a_token_with_the_credentials_then_follows_the_pages() {
    let server = TokenRegistry::start(
        "team/app",
        &[
            "0b3c1d9e0000",
            "d277d11f1376",
            "ea6757a8090d",
            "ff00aa000000",
        ],
    );
    let repository = format!("{}/team/app", server.address);
    let env = AppEnv::new("reg-bearer", &repository, "");
    let config = EnvDir::new();
    write_config(config.path(), &server.address, USER, PASSWORD);
    env.envctl(config.path())
        .args(["plan", "app@ea67"])
        .run()
        .success()
        .stdout_has(&format!("image      {repository}:ea6757a8090d\n"));
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("/token?") && r.ends_with(" Basic")),
        "the token was asked for with the credentials: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.contains("last=d277d11f1376") && r.ends_with(" Bearer")),
        "the second page was followed with the token: {seen:?}"
    );
    // The first page's tags count too.
    env.envctl(config.path())
        .args(["plan", "app@0b3"])
        .run()
        .success()
        .stdout_has(&format!("image      {repository}:0b3c1d9e0000\n"));

    let wrong = EnvDir::new();
    write_config(wrong.path(), &server.address, USER, "wrong");
    env.envctl(wrong.path())
        .args(["plan", "app@ea67"])
        .run()
        .code(2)
        .stderr_has(&format!("hint: `docker login {}`", server.address));
}

/// `Envctl` with the environment name as the next argument.
trait ArgEnv {
    fn arg_env(self, name: &str) -> Self;
}

impl ArgEnv for Envctl {
    fn arg_env(self, name: &str) -> Envctl {
        self.args([name])
    }
}

#[test]
fn a_pull_reports_its_bytes_in_plain_lines() {
    let repo = Repository::new("reg-bytes");
    // A layer large enough for the engine to report its download as it goes.
    let context = EnvDir::new().with("Dockerfile", &format!("FROM {IMAGE}\nCOPY blob /blob\n"));
    let mut blob = vec![0u8; 16 * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut blob))
        .expect("random bytes");
    std::fs::write(context.file("blob"), blob).unwrap();
    let built = repo.reference("big");
    docker(
        &repo.config,
        &[
            "build",
            "-q",
            "-t",
            &built,
            &context.path().display().to_string(),
        ],
    );
    docker(&repo.config, &["push", "--quiet", &built]);
    docker(&repo.config, &["rmi", &built]);
    repo.forget_later(&built);

    let env = AppEnv::new("reg-bytes", &repo.name, "    tag: big\n");
    let up = env
        .envctl(&registry().logged_in)
        .args(["up", "--name", &env.name])
        .arg_env(&env.name)
        .run();
    let stderr = up.success().stderr().to_string();
    let bytes =
        regex::Regex::new(r"Z app pulling \d+(\.\d)? [kMG]?B / \d+(\.\d)? [kMG]?B \(\+").unwrap();
    assert!(
        bytes.is_match(&stderr),
        "no line with the pull's bytes:\n{stderr}"
    );
}

/// An environment of one service `web` on `repository` of the shared registry, named through
/// the file's `registry:`, and an `envctl gateway --create` logged in to that registry.
struct GatewayOnRegistry {
    // Stopped before the environment's guard removes what it created.
    gateway: crate::gateway::Gateway,
    env: crate::harness::TestEnv,
}

impl GatewayOnRegistry {
    fn new(test: &str, repository: &Repository) -> GatewayOnRegistry {
        let registry = registry();
        let (prefix, image) = repository.name.rsplit_once('/').unwrap();
        let name = unique(test);
        let text = format!(
            "name: {name}\nregistry: {prefix}\nservices:\n  web:\n    image: {image}\n    tag: base\n    \
             command: [serve, --name, pulled, --port, \"8080\"]\n    ports: [8080]\n    \
             ready: {{http: 8080/health}}\n"
        );
        let env = crate::harness::TestEnv {
            name: name.clone(),
            dir: EnvDir::new().with(&format!("{name}.yaml"), &text),
        };
        let envctl = env.envctl().env("DOCKER_CONFIG", &registry.logged_in);
        let gateway = crate::gateway::Gateway::spawned(envctl, "127.0.0.1:0", &["--create"]);
        GatewayOnRegistry { gateway, env }
    }

    fn host(&self, reference: &str) -> String {
        format!("{reference}.{}.localhost", self.env.name)
    }

    /// Every environment of the file, as `ls -o json` shows them.
    fn environments(&self) -> Vec<serde_json::Value> {
        let ls = self.env.envctl().args(["ls", "-o", "json"]).run();
        let rows = ls.success().json();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["environment"] == self.env.name.as_str())
            .cloned()
            .collect()
    }
}

/// A changeset's tag no other test has: 12 hex digits from the clock, starting with `first`.
fn changeset(first: char) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{first}{:011x}", nanos & 0x0fff_ffff_ffff)
}

/// The registry's answers to `GET` of `repository`'s tag list, by status.
fn tag_lists(repository: &Repository) -> Vec<String> {
    let path = repository.name.split_once('/').unwrap().1;
    let wanted = format!("\"GET /v2/{path}/tags/list");
    std::fs::read_to_string(&registry().log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&wanted))
        .filter_map(|l| {
            l.split('"')
                .nth(2)?
                .split_whitespace()
                .next()
                .map(String::from)
        })
        .collect()
}

#[test]
fn a_request_for_a_ref_only_in_the_registry_creates_the_environment_pulled_from_it() {
    let repo = Repository::new("gw-reg-create");
    let tag = changeset('a');
    repo.push(IMAGE, &[&tag]);
    repo.forget_later(&repo.reference(&tag));
    assert_eq!(
        image_id(&repo.reference(&tag)),
        None,
        "only the registry has it"
    );
    let on = GatewayOnRegistry::new("gw-reg-create", &repo);
    let (port, host) = (on.gateway.port, on.host(&tag[..8]));
    let answers = block_on(async {
        let asking =
            (0..4).map(|_| crate::gateway::async_request(port, "GET", &host, "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!((answer.status, answer.body.as_str()), (200, "pulled ok\n"));
    }
    let created = on.environments();
    assert_eq!(created.len(), 1, "one creation for them all: {created:?}");
    assert!(
        image_id(&repo.reference(&tag)).is_some(),
        "pulled from the registry"
    );
    let refs = created[0]["refs"].to_string();
    assert!(refs.contains(&format!("web@{tag}")), "{created:?}");
}

#[test]
fn a_flood_of_requests_for_unknown_refs_lists_the_registrys_tags_once() {
    let repo = Repository::new("gw-reg-flood");
    let tag = changeset('a');
    repo.push(IMAGE, &[&tag]);
    let on = GatewayOnRegistry::new("gw-reg-flood", &repo);
    assert!(tag_lists(&repo).is_empty(), "{:?}", tag_lists(&repo));
    let port = on.gateway.port;
    // Two changesets nobody pushed, asked for 40 times at once.
    let hosts = [on.host("b0b0b0b0"), on.host("c0c0c0c0")];
    let answers = block_on(async {
        let asking = (0..40)
            .map(|i| crate::gateway::async_request(port, "GET", &hosts[i % 2], "/", &[], vec![]));
        futures_util::future::join_all(asking).await
    });
    for answer in &answers {
        assert_eq!(answer.status, 404, "{}", answer.body);
        assert!(
            answer.body.contains(&tag),
            "the closest tag: {}",
            answer.body
        );
    }
    let asked = tag_lists(&repo);
    let listed = asked.iter().filter(|status| *status == "200").count();
    assert_eq!(
        listed, 1,
        "one look-up a minute for the repository: {asked:?}"
    );
    assert!(on.environments().is_empty());
}

#[test]
fn a_creation_from_the_form_uses_an_image_pushed_to_the_registry_while_it_waits() {
    let repo = Repository::new("gw-reg-await");
    repo.push(IMAGE, &[&changeset('a')]);
    let on = GatewayOnRegistry::new("gw-reg-await", &repo);
    let later = changeset('e');
    let reference = &later[..9];
    let form = format!(
        "csrf={}&environment={}&reference={reference}",
        crate::gateway::csrf_of(&on.gateway),
        on.env.name
    );
    let created = crate::gateway::post_form(&on.gateway, "/create", &form, None);
    assert_eq!(created.status, 303, "waited for, not 404: {}", created.body);
    let host = on.host(reference);
    let browser = || {
        crate::gateway::request(
            on.gateway.port,
            "GET",
            &host,
            "/",
            &[("accept", "text/html")],
            vec![],
        )
    };
    let page = browser();
    assert_eq!(page.status, 503, "{}", page.body);
    let awaited = format!(
        "waiting for <code>{}:{reference}</code> to appear in the registry",
        repo.name
    );
    assert!(page.body.contains(&awaited), "{}", page.body);
    // CI pushes it.
    repo.push(IMAGE, &[&later]);
    repo.forget_later(&repo.reference(&later));
    // Tag lists, misses included, are looked up once a minute.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let answer = on.gateway.get(&host, "/");
        if answer.status == 200 {
            assert_eq!(answer.body, "pulled ok\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not created once the image was pushed: {} {}\n{}",
            answer.status,
            answer.body,
            browser().body
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(image_id(&repo.reference(&later)).is_some(), "pulled");
    assert_eq!(on.environments().len(), 1);
}
