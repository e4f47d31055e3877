//! The lifecycle against the in-memory backend, under paused tokio time: ordering, rollback,
//! timeouts and the reaper pass, which a real engine shows only slowly or by luck. What only an
//! engine can show (probes through real networks, signals to real processes) is tested against
//! Docker in tests/it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::backend::fake::{Fake, Fault, Reading, Script};
use crate::backend::{Backend, Capabilities, Metadata, ResolvedImage};
use crate::signals::Signals;
use crate::spec::Environment;
use crate::spec::ImageRef;

fn environment(yaml: &str) -> Environment {
    crate::spec::parse(Path::new("shop.yaml"), yaml, &|_| None).expect("a valid environment")
}

/// `db`, then `app` depending on it; both images local.
const SHOP: &str = "\
name: shop
services:
  db:
    image: shop/db
    tag: '1'
  app:
    image: shop/app
    tag: '1'
    ports: [8080]
    depends_on: [db]
";

fn image(reference: &str) -> ResolvedImage {
    let (repository, tag) = reference.split_once(':').expect("repo:tag");
    ResolvedImage {
        reference: ImageRef {
            repository: repository.into(),
            tag: tag.into(),
        },
        digest: None,
        healthcheck: None,
    }
}

fn fake() -> Fake {
    let fake = Fake::new();
    fake.add_image(image("shop/db:1"));
    fake.add_image(image("shop/app:1"));
    fake
}

pub(super) fn options(name: Option<&str>, timeout: Duration) -> UpOptions {
    UpOptions {
        name: name.map(String::from),
        timeout,
        keep_on_failure: false,
        owner: "tester".into(),
        prefix_tags: Vec::new(),
        ttl: None,
        build: Default::default(),
        lease: false,
        pull: None,
        files: None,
        pool: Default::default(),
        admission: Default::default(),
    }
}

fn quiet() -> Progress {
    Arc::new(|_, _| {})
}

/// A fake backend and the environment file it runs, built service by service instead of
/// editing YAML: `FakeEnv::new().service("db", "shop/db:1").depends("app", "db").up().await`.
/// Images named are local unless `pulled`; `up` starts id `shop-1` within 60 s by default.
struct FakeEnv {
    fake: Fake,
    /// Each service and the YAML lines under it, in the order given.
    services: Vec<(String, Vec<String>)>,
    options: UpOptions,
    signals: Signals,
    sender: tokio::sync::watch::Sender<u32>,
}

impl FakeEnv {
    fn new() -> FakeEnv {
        let (signals, sender) = Signals::manual();
        FakeEnv {
            fake: Fake::new(),
            services: Vec::new(),
            options: options(Some("shop-1"), Duration::from_secs(60)),
            signals,
            sender,
        }
    }

    /// `service` runs `image` (`repository:tag`), which the engine has.
    fn service(self, service: &str, image: &str) -> FakeEnv {
        self.fake.add_image(self::image(image));
        self.runs(service, image)
    }

    /// `service` runs `image`, which only a pull taking `takes` makes local.
    fn pulled(self, service: &str, image: &str, takes: Duration) -> FakeEnv {
        self.fake.add_remote_image(self::image(image), takes);
        self.runs(service, image)
    }

    fn runs(mut self, service: &str, image: &str) -> FakeEnv {
        let (repository, tag) = image.split_once(':').expect("repo:tag");
        let lines = vec![format!("image: {repository}"), format!("tag: '{tag}'")];
        self.services.push((service.into(), lines));
        self
    }

    /// A line of YAML under `service` (`ports: [8080]`; nested keys indented by two more).
    fn key(mut self, service: &str, yaml: &str) -> FakeEnv {
        let lines = &mut self
            .services
            .iter_mut()
            .find(|s| s.0 == service)
            .expect("a service")
            .1;
        lines.extend(yaml.lines().map(String::from));
        self
    }

    fn depends(self, service: &str, on: &str) -> FakeEnv {
        self.key(service, &format!("depends_on: [{on}]"))
    }

    /// `ready:` of `service`, one probe: `exit: 0`, `tcp: 5432`.
    fn ready(self, service: &str, probe: &str) -> FakeEnv {
        self.key(service, &format!("ready:\n  {probe}"))
    }

    /// How `service` behaves once started.
    fn script(self, service: &str, script: Script) -> FakeEnv {
        self.fake.script(service, script);
        self
    }

    fn timeout(mut self, timeout: Duration) -> FakeEnv {
        self.options.timeout = timeout;
        self
    }

    /// The fake names what it makes as a swarm does.
    fn on_swarm(mut self) -> FakeEnv {
        self.fake = self.fake.speaking_as(crate::backend::BackendKind::Swarm);
        self
    }

    /// `up --name`; `None`: an id of its own.
    fn id(mut self, id: Option<&str>) -> FakeEnv {
        self.options.name = id.map(String::from);
        self
    }

    fn yaml(&self) -> String {
        let mut yaml = String::from("name: shop\nservices:\n");
        for (service, lines) in &self.services {
            yaml.push_str(&format!("  {service}:\n"));
            for line in lines {
                yaml.push_str(&format!("    {line}\n"));
            }
        }
        yaml
    }

    /// The first interrupt, as a Ctrl-C.
    fn interrupt(&self) {
        self.sender.send_modify(|n| *n += 1);
    }

    async fn up(&self) -> Result<Started, StartError> {
        let environment = environment(&self.yaml());
        up_on(&self.fake, &environment, &self.options, &self.signals).await
    }
}

async fn up_on(
    fake: &Fake,
    environment: &Environment,
    options: &UpOptions,
    signals: &Signals,
) -> Result<Started, StartError> {
    let outcome = up(fake, environment, options, &quiet(), signals, &|_| {}).await;
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    outcome.result
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_cannot_finish_is_returned_as_a_warning_beside_the_error() {
    let fake = fake();
    fake.fault(
        "create_service",
        "shop-1/app",
        Fault::Fail("no space".into()),
    );
    fake.fault("release", "shop-1", Fault::Fail("engine busy".into()));
    let (signals, _sender) = Signals::manual();
    let options = options(Some("shop-1"), Duration::from_secs(60));
    let outcome = up(
        &fake,
        &environment(SHOP),
        &options,
        &quiet(),
        &signals,
        &|_| {},
    )
    .await;
    let error = outcome.result.expect_err("the create failed");
    assert_eq!(
        error.to_string(),
        "failed to create_service `shop-1/app`: no space"
    );
    match outcome.warnings.as_slice() {
        [warning] => assert!(
            warning.starts_with("could not finish removing what the failed start created: ")
                && warning.contains("engine busy"),
            "{warning}"
        ),
        other => panic!("expected one warning, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_id_claimed_by_another_run_in_the_same_second_moves_to_the_next_suffix() {
    let fake = fake();
    fake.fault("claim", "*", Fault::Taken);
    let (signals, _sender) = Signals::manual();
    let started = up_on(
        &fake,
        &environment(SHOP),
        &options(None, Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let claims = fake.calls_of("claim");
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(started.id, format!("{}-2", claims[0]));
    assert_eq!(claims[1], started.id);
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_fails_at_once_and_creates_nothing() {
    let env = FakeEnv::new().service("db", "shop/db:1").id(Some("pr-42"));
    let fake = &env.fake;
    fake.claim(&Metadata::new("pr-42")).await.unwrap();
    let error = env.up().await.unwrap_err();
    assert!(
        matches!(error, StartError::IdTaken(ref id) if id == "pr-42"),
        "{error}"
    );
    assert!(fake.calls_of("create_isolation").is_empty());
    assert!(fake.calls_of("create_service").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_rolls_back_everything_it_created() {
    let db = Script {
        exits: Some((Duration::from_secs(2), 3)),
        logs: vec!["fatal: no disk".into()],
        ..Script::default()
    };
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "exit: 0")
        .script("db", db)
        .service("app", "shop/app:1")
        .depends("app", "db");
    let fake = &env.fake;
    let error = env.up().await.unwrap_err();
    match &error {
        StartError::Service {
            service,
            reason,
            logs,
            ..
        } => {
            assert_eq!(service, "db");
            assert_eq!(reason, "the job exited with code 3, expected 0");
            assert_eq!(logs, &["fatal: no disk"]);
        }
        other => panic!("expected a service failure, got {other}"),
    }
    assert!(
        fake.calls_of("start_service")
            .iter()
            .all(|s| s != "shop-1/app")
    );
    assert!(!fake.exists("shop-1"), "rolled back: {:?}", fake.calls());
    assert_eq!(
        fake.calls().last().map(String::as_str),
        Some("release shop-1"),
        "the claim goes last"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_start_rolls_back_and_says_what_it_removed() {
    // `db` never gets ready: no address answers a probe on the fake.
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432")
        .service("app", "shop/app:1")
        .key("app", "ports: [8080]")
        .depends("app", "db")
        .timeout(Duration::from_secs(600));
    let fake = &env.fake;
    let interrupt = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        env.interrupt();
    };
    let (result, ()) = tokio::join!(env.up(), interrupt);
    match result {
        Err(StartError::Interrupted(cleanup)) => {
            assert!(cleanup.is_complete(), "{cleanup}");
            assert_eq!(
                cleanup.to_string(),
                "removed 3 containers and 1 network of environment `shop-1`"
            );
        }
        other => panic!("expected an interrupt, got {other:?}"),
    }
    assert!(!fake.exists("shop-1"));
    assert!(fake.calls_of("set_marker").is_empty(), "no ready marker");
}

/// The environment's network is left before the rollback removes it: a container of envctl's
/// still attached would hold it.
fn left_before_the_rollback(fake: &Fake) {
    let calls = fake.calls();
    let left = calls.iter().position(|c| c == "detach shop-1");
    let removed = calls.iter().position(|c| c.starts_with("remove_isolation"));
    assert!(
        left.is_some() && left < removed,
        "left the network before removing it: {calls:?}"
    );
    assert_eq!(fake.calls_of("attach"), ["shop-1"]);
    assert_eq!(fake.joined(), Vec::<String>::new(), "nothing left joined");
}

#[tokio::test(start_paused = true)]
async fn envctl_joins_for_address_probes_and_leaves_after_a_failed_start() {
    let app = Script {
        exits: Some((Duration::from_secs(1), 1)),
        ..Script::default()
    };
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "log: ready")
        .script(
            "db",
            Script {
                logs: vec!["ready".into()],
                ..Script::default()
            },
        )
        .service("app", "shop/app:1")
        .ready("app", "tcp: 8080")
        .script("app", app)
        .depends("app", "db");
    let error = env.up().await.unwrap_err();
    assert!(matches!(error, StartError::Service { .. }), "{error}");
    left_before_the_rollback(&env.fake);
}

#[tokio::test(start_paused = true)]
async fn envctl_leaves_the_network_after_an_interrupt_and_after_a_timeout() {
    let interrupted = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432")
        .timeout(Duration::from_secs(600));
    let interrupt = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        interrupted.interrupt();
    };
    let (result, ()) = tokio::join!(interrupted.up(), interrupt);
    assert!(matches!(result, Err(StartError::Interrupted(_))));
    left_before_the_rollback(&interrupted.fake);

    let timed_out = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "http: 8080/health")
        .timeout(Duration::from_secs(30));
    let error = timed_out.up().await.unwrap_err();
    assert!(matches!(error, StartError::Timeout { .. }), "{error}");
    left_before_the_rollback(&timed_out.fake);
}

#[tokio::test(start_paused = true)]
async fn a_start_without_address_probes_joins_nothing() {
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "exec: [pg_isready]")
        .service("app", "shop/app:1")
        .depends("app", "db");
    let _ = env.up().await;
    assert!(
        env.fake.calls_of("attach").is_empty(),
        "{:?}",
        env.fake.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_removes_a_pin_set_while_the_start_ran() {
    // `db` never gets ready, and `envctl pin` pins the environment meanwhile.
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432")
        .timeout(Duration::from_secs(60));
    let fake = &env.fake;
    let pin = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let listed = crate::lifecycle::inventory::find(fake, "shop-1").await;
        let instance = listed.expect("listed").expect("started");
        super::pin::pin(fake, &instance).await.expect("pinned");
    };
    let (result, ()) = tokio::join!(env.up(), pin);
    assert!(
        matches!(result, Err(StartError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        fake.calls_of("clear_marker")
            .contains(&"shop-1/pin".to_string()),
        "{:?}",
        fake.calls()
    );
    assert!(!fake.exists("shop-1"), "rolled back: {:?}", fake.calls());
}

/// `db` never gets ready on the fake (no address answers a probe), and a Ctrl-C comes.
async fn interrupted(env: &FakeEnv) -> Cleanup {
    let interrupt = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        env.interrupt();
    };
    match tokio::join!(env.up(), interrupt) {
        (Err(StartError::Interrupted(cleanup)), ()) => *cleanup,
        (other, ()) => panic!("expected an interrupt, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_swarm_rollback_calls_services_and_configs_by_their_names() {
    let env = FakeEnv::new()
        .on_swarm()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432")
        .service("app", "shop/app:1")
        .depends("app", "db");
    assert_eq!(
        interrupted(&env).await.to_string(),
        "removed 2 services, 1 config and 1 overlay network of environment `shop-1`"
    );
}

#[tokio::test(start_paused = true)]
async fn a_swarm_rollback_that_cannot_list_names_the_overlay_network_it_made() {
    let env = FakeEnv::new()
        .on_swarm()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432");
    env.fake.fault("list", "*", Fault::Fail("gone".into()));
    let cleanup = interrupted(&env).await.to_string();
    let listed = env.fake.list(&crate::backend::Selector::All).await;
    let network = &listed.expect("listed")[0].isolation[0].name;
    assert!(network.starts_with("envctl_shop-1_"), "{network}");
    assert!(
        cleanup.contains(&format!(
            "left config `envctl_shop-1`, overlay network `{network}`"
        )),
        "{cleanup}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_the_ready_marker_is_set_leaves_no_orphan_marker() {
    let fake = fake();
    let (signals, sender) = Signals::manual();
    let sender = Arc::new(sender);
    let interrupting = sender.clone();
    fake.on("set_marker", move || interrupting.send_modify(|n| *n += 1));
    let result = up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await;
    assert!(
        matches!(result, Err(StartError::Interrupted(_))),
        "{result:?}"
    );
    assert!(!fake.exists("shop-1"), "{:?}", fake.calls());
    assert!(
        fake.calls_of("clear_marker")
            .contains(&"shop-1/ready".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_an_image_is_pulled_names_that_service() {
    let env = FakeEnv::new()
        .pulled("db", "shop/db:2", Duration::from_secs(600))
        .service("app", "shop/app:1")
        .depends("app", "db")
        .timeout(Duration::from_secs(30));
    let fake = &env.fake;
    let error = env.up().await.unwrap_err();
    match &error {
        StartError::Timeout { pending, .. } => {
            assert_eq!(pending.first(), Some(&("db".to_string(), Phase::Pulling)));
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(
        error
            .to_string()
            .contains("still waiting for `db` (pulling)"),
        "{error}"
    );
    assert!(
        fake.calls_of("claim").is_empty(),
        "nothing claimed before images are there"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_an_image_is_built_names_that_service() {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let fake = fake();
    fake.set_build_time(Duration::from_secs(600));
    let yaml = format!(
        "name: shop\nservices:\n  app:\n    image: shop/built\n    build: {}\n",
        context.path().display()
    );
    let (signals, _sender) = Signals::manual();
    let error = up_on(
        &fake,
        &environment(&yaml),
        &options(Some("shop-1"), Duration::from_secs(30)),
        &signals,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("still waiting for `app` (building)"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_a_service_starts_names_it_with_its_last_lines() {
    let db = Script {
        logs: vec!["waiting for the disk".into()],
        ..Script::default()
    };
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .ready("db", "tcp: 5432")
        .script("db", db)
        .service("app", "shop/app:1")
        .depends("app", "db")
        .timeout(Duration::from_secs(30));
    let fake = &env.fake;
    let error = env.up().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("still waiting for `db` (starting), `app` (waiting)"),
        "{text}"
    );
    assert!(
        text.contains("last line of `db_shop-1`:\n  | waiting for the disk"),
        "{text}"
    );
    assert!(!fake.exists("shop-1"));
}

#[tokio::test(start_paused = true)]
async fn teardown_removes_dependents_first_then_the_network_then_the_claim() {
    let fake = fake();
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    pin(&fake, &require(&fake, "shop-1").await.unwrap())
        .await
        .unwrap();
    let instance = require(&fake, "shop").await.expect("a unique prefix");
    remove(&fake, &instance, Some(super::teardown::STOP_GRACE))
        .await
        .expect("removed");
    let calls = fake.calls();
    let position = |call: &str| {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("no `{call}` in {calls:?}"))
    };
    assert!(position("remove_service shop-1/app") < position("remove_service shop-1/db"));
    assert!(position("remove_service shop-1/db") < position("remove_isolation envctl_shop_shop-1"));
    assert!(position("remove_isolation envctl_shop_shop-1") < position("clear_marker shop-1/pin"));
    assert!(position("clear_marker shop-1/ready") < position("release shop-1"));
    assert!(!fake.exists("shop-1"));
}

/// `SHOP` with a named volume mounted by `db`, and limits on it.
fn with_volume() -> Environment {
    let yaml = SHOP
        .replacen(
            "name: shop\n",
            "name: shop\nvolumes:\n  data:\n    labels: {com.example.team: qa}\n",
            1,
        )
        .replacen(
            "    tag: '1'\n  app:",
            "    tag: '1'\n    volumes: ['data:/var/lib/db']\n    mem_limit: 1g\n  app:",
            1,
        );
    environment(&yaml)
}

#[tokio::test(start_paused = true)]
async fn named_volumes_are_created_before_services_and_removed_before_the_claim() {
    let fake = fake();
    let (signals, _sender) = Signals::manual();
    let options = options(Some("shop-1"), Duration::from_secs(60));
    up_on(&fake, &with_volume(), &options, &signals)
        .await
        .expect("started");
    let volumes = fake.volumes("shop-1");
    assert_eq!(
        volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["data"]
    );
    // The service gets the file's name: the backend maps it to its own, as it created it.
    let runtime = fake.runtime("shop-1", "db").expect("db created");
    assert_eq!(
        runtime.mounts[0].source,
        crate::spec::runtime::MountSource::Volume("data".into())
    );
    assert_eq!(runtime.mem_limit.map(|b| b.0), Some(1 << 30));
    let listed = require(&fake, "shop-1").await.unwrap();
    assert_eq!(listed.volumes, volumes, "a listing finds them");

    remove(&fake, &listed, None).await.expect("removed");
    let calls = fake.calls();
    let position = |call: &str| {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("no `{call}` in {calls:?}"))
    };
    assert!(position("create_volume shop-1/data") < position("create_service shop-1/db"));
    assert!(position("remove_service shop-1/db") < position("remove_volume envctl_shop-1_data"));
    assert!(position("remove_volume envctl_shop-1_data") < position("release shop-1"));
    assert!(!fake.exists("shop-1"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_removes_the_named_volumes_it_created() {
    let fake = fake();
    fake.fault(
        "create_service",
        "shop-1/app",
        Fault::Fail("no space".into()),
    );
    let (signals, _sender) = Signals::manual();
    let options = options(Some("shop-1"), Duration::from_secs(60));
    let error = up_on(&fake, &with_volume(), &options, &signals)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to create_service `shop-1/app`: no space"
    );
    assert_eq!(fake.calls_of("remove_volume"), ["envctl_shop-1_data"]);
    assert!(!fake.exists("shop-1"), "rolled back: {:?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn a_network_held_by_a_foreign_container_keeps_the_claim() {
    let fake = fake();
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    fake.attach_foreign("envctl_shop_shop-1", "debugger");
    let instance = require(&fake, "shop-1").await.unwrap();
    let error = remove(&fake, &instance, None).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("kept network `envctl_shop_shop-1` of `shop-1`: container `debugger`"),
        "{error}"
    );
    assert!(fake.calls_of("release").is_empty(), "still claimed");
}

#[tokio::test(start_paused = true)]
async fn stop_keeps_services_and_start_brings_them_back_in_order() {
    let fake = fake();
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let instance = require(&fake, "shop-1").await.unwrap();
    assert_eq!(instance.state(Utc::now()), State::Ready);
    stop(&fake, &instance).await.unwrap();
    let stopped = require(&fake, "shop-1").await.unwrap();
    assert_eq!(stopped.state(Utc::now()), State::Stopped);
    assert_eq!(
        fake.calls_of("stop_service"),
        ["shop-1/app", "shop-1/db"],
        "dependents first"
    );
    start(
        &fake,
        &stopped,
        &quiet(),
        Duration::from_secs(60),
        &Default::default(),
    )
    .await
    .unwrap();
    let starts = fake.calls_of("start_service");
    assert_eq!(
        &starts[2..],
        ["shop-1/db", "shop-1/app"],
        "dependencies first"
    );
    let back = require(&fake, "shop-1").await.unwrap();
    assert_eq!(back.state(Utc::now()), State::Ready);
}

mod reaper_pass {
    use super::*;
    use crate::reaper::{self, Options};
    use crate::state::Store;

    #[tokio::test(start_paused = true)]
    async fn the_reaper_never_removes_a_creation_marker_set_anew_since_it_listed_it() {
        use futures_util::FutureExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let marker = |run: &str, deadline: chrono::DateTime<Utc>| Metadata {
            environment: Some("shop".into()),
            run: Some(run.into()),
            start_deadline: Some(deadline),
            process: Some("another-boot:1:42:42".into()),
            ..Metadata::new("shop-main")
        };
        let now = Utc::now();
        let stale = marker("killed", now - chrono::Duration::minutes(2));
        let create = crate::backend::Marker::Create;
        fake.set_marker(&stale, create).await.unwrap();
        // Between this pass's listing and its removal, another reaper removes the stale marker
        // and a gateway sets its own.
        let fresh = marker("fresh", now + chrono::Duration::minutes(10));
        let once = Arc::new(AtomicBool::new(false));
        for operation in ["clear_marker", "clear_create_marker"] {
            let (other, fresh, once) = (fake.clone(), fresh.clone(), once.clone());
            fake.on(operation, move || {
                if once.swap(true, Ordering::SeqCst) {
                    return;
                }
                let kind = crate::backend::MarkerKind::Create;
                let cleared = other.clear_marker("shop-main", kind).now_or_never();
                assert!(matches!(cleared, Some(Ok(()))));
                let set = other.set_marker(&fresh, create).now_or_never();
                assert!(matches!(set, Some(Ok(()))));
            });
        }
        reaper::pass(&fake, &store, &reap_options(), now)
            .await
            .unwrap();
        let found = inventory::find(&fake, "shop-main").await.unwrap();
        let run = found.and_then(|i| i.markers.creating).and_then(|m| m.run);
        assert_eq!(
            run.as_deref(),
            Some("fresh"),
            "the gateway's new marker stays"
        );
    }

    fn reap_options() -> Options {
        Options {
            idle: Duration::from_secs(3600),
            remove_after: Duration::from_secs(3600),
            max_age: None,
            dry_run: false,
            environment: None,
            stop_erroring: false,
            pause_after: None,
        }
    }

    /// A started environment, started by an `up` on another host, that a first pass has seen
    /// (and sampled the counters of) at the time returned.
    async fn seen_environment(fake: &Fake, store: &Store) -> chrono::DateTime<Utc> {
        let (signals, _sender) = Signals::manual();
        up_on(
            fake,
            &environment(SHOP),
            &options(Some("shop-1"), Duration::from_secs(60)),
            &signals,
        )
        .await
        .expect("started");
        fake.edit_metadata("shop-1", |metadata| {
            metadata.process = Some("another-boot:1:42:42".into())
        });
        let seen = Utc::now();
        let first = reaper::pass(fake, store, &reap_options(), seen)
            .await
            .unwrap();
        assert!(first.actions.is_empty(), "{first:?}");
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_environment_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let later = seen + chrono::Duration::hours(2);
        let report = reaper::pass(&fake, &store, &reap_options(), later)
            .await
            .unwrap();
        assert_eq!(report.actions.len(), 1, "{report:?}");
        assert_eq!(fake.calls_of("stop_service"), ["shop-1/app", "shop-1/db"]);
        // The sentence, and the cause `reap -o json` puts beside it for machines.
        let reason = &report.actions[0].reason;
        assert_eq!(reason.cause(), reaper::Cause::Idle);
        assert!(
            reason
                .to_string()
                .starts_with("idle for 2h00m, last activity: first seen by the reaper at"),
            "{reason}"
        );
    }

    /// Why the reaper stopped `shop-1`, as `envctl status` reads it from the state file.
    fn why_stopped(fake: &Fake, store: &Store) -> Option<crate::state::Stop> {
        let (state, _) = store.read();
        state
            .record(&fake.info().endpoint, "shop-1")
            .and_then(|r| r.stopped.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn the_reapers_own_stops_say_why_in_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let later = seen + chrono::Duration::hours(2);
        let (cause, _) = only_action(&fake, &store, &reap_options(), later).await;
        assert_eq!(cause, reaper::Cause::Idle);
        let stop = why_stopped(&fake, &store).expect("the reaper's stop is recorded");
        assert!(
            stop.reason.starts_with(
                "by the reaper: idle for 2h00m, last activity: first seen by the reaper at "
            ),
            "{}",
            stop.reason
        );
        assert!(
            stop.reason.ends_with(", longer than --idle 1h00m"),
            "{}",
            stop.reason
        );
        // A later pass that finds it still stopped keeps it: the pass's own stop is not lost
        // when the pass saves what it learned.
        let keeping = Options {
            remove_after: Duration::from_secs(24 * 3600),
            ..reap_options()
        };
        let report = reaper::pass(&fake, &store, &keeping, later + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert_eq!(why_stopped(&fake, &store), Some(stop));
        // A pass that sees it run again forgets it.
        let instance = require(&fake, "shop-1").await.unwrap();
        crate::lifecycle::start(
            &fake,
            &instance,
            &quiet(),
            Duration::from_secs(60),
            &Default::default(),
        )
        .await
        .unwrap();
        let again = later + chrono::Duration::hours(2);
        let endpoint = fake.info().endpoint.clone();
        store
            .update(|state| state.note_activity(&endpoint, "shop-1", again, "envctl start"))
            .unwrap();
        let report = reaper::pass(&fake, &store, &keeping, again).await.unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert_eq!(why_stopped(&fake, &store), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_put_aside_by_a_killed_update_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let left = killed_update(&fake).await;
        fake.edit_metadata("shop-1", |metadata| {
            metadata.process = Some("another-boot:1:42:42".into())
        });
        // Nothing runs any more: a stopped environment, to a reaper that knew no better.
        let db = left.services.iter().find(|s| s.service() == "db").unwrap();
        fake.stop_service(&db.handle, Duration::ZERO).await.unwrap();
        let seen = Utc::now() + chrono::Duration::seconds(1);
        reaper::pass(&fake, &store, &reap_options(), seen)
            .await
            .unwrap();
        let later = seen + chrono::Duration::hours(3);
        let report = reaper::pass(&fake, &store, &reap_options(), later)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        let after = require(&fake, "shop-1").await.unwrap();
        assert_eq!(
            after.aside.len(),
            1,
            "the previous `app`, for `envctl start` to restore"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_touch_during_the_pass_keeps_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let now = seen + chrono::Duration::hours(2);
        let (touching, endpoint) = (store.clone(), fake.info().endpoint.clone());
        // While the pass reads the traffic counters, someone runs `envctl touch`.
        fake.on("traffic", move || {
            touching
                .update(|state| {
                    let at = now + chrono::Duration::seconds(1);
                    state.note_activity(&endpoint, "shop-1", at, "envctl touch")
                })
                .unwrap();
        });
        let report = reaper::pass(&fake, &store, &reap_options(), now)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert!(fake.calls_of("stop_service").is_empty());
        let (state, _) = store.read();
        let record = state.record(&fake.info().endpoint, "shop-1").unwrap();
        assert_eq!(
            record.activity.as_ref().map(|a| a.what.as_str()),
            Some("envctl touch"),
            "the touch survives the pass's own write"
        );
    }

    /// shop-1 as a concurrent `down` leaves it after its first step: its services removed,
    /// its network, markers and claim not yet.
    async fn half_removed_by_a_down(fake: &Fake) {
        let (signals, _sender) = Signals::manual();
        up_on(
            fake,
            &environment(SHOP),
            &options(Some("shop-1"), Duration::from_secs(60)),
            &signals,
        )
        .await
        .expect("started");
        fake.remove_by_hand("shop-1", "app");
        fake.remove_by_hand("shop-1", "db");
    }

    #[tokio::test(start_paused = true)]
    async fn an_environment_a_down_finished_removing_during_the_pass_is_not_the_reapers_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        half_removed_by_a_down(&fake).await;
        // The pass observes the debris; the `down` ends before the pass acts.
        let (lists, finishing) = (
            Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            fake.clone(),
        );
        fake.on("list", move || {
            if lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                finishing.remove_environment_by_hand("shop-1");
            }
        });
        let report = reaper::pass(&fake, &store, &reap_options(), Utc::now())
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert!(fake.calls_of("release").is_empty(), "{:?}", fake.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn an_environment_whose_removal_fails_as_a_down_removed_it_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        half_removed_by_a_down(&fake).await;
        // The `down` ends while the pass removes the network, which the engine then refuses.
        let finishing = fake.clone();
        fake.on("remove_isolation", move || {
            finishing.remove_environment_by_hand("shop-1")
        });
        fake.fault(
            "remove_isolation",
            "*",
            Fault::Fail("removal already in progress".into()),
        );
        let report = reaper::pass(&fake, &store, &reap_options(), Utc::now())
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn debris_nobody_is_removing_is_still_the_reapers_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        half_removed_by_a_down(&fake).await;
        let report = reaper::pass(&fake, &store, &reap_options(), Utc::now())
            .await
            .unwrap();
        assert_eq!(report.actions.len(), 1, "{report:?}");
        assert_eq!(
            report.actions[0].reason.cause(),
            reaper::Cause::NoServiceLeft
        );
        assert_eq!(report.actions[0].error, None);
        assert!(!fake.exists("shop-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn unreadable_counters_are_activity_and_missing_ones_are_said() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        fake.set_traffic("shop-1", "app", Reading::Unreadable);
        let later = seen + chrono::Duration::hours(2);
        let report = reaper::pass(&fake, &store, &reap_options(), later)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "the safe direction: {report:?}");

        let without = Fake::with_capabilities(Capabilities {
            traffic: false,
            ..fake.info().capabilities
        });
        without.add_image(image("shop/db:1"));
        without.add_image(image("shop/app:1"));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let seen = seen_environment(&without, &store).await;
        let later = seen + chrono::Duration::hours(2);
        let report = reaper::pass(&without, &store, &reap_options(), later)
            .await
            .unwrap();
        assert!(without.calls_of("traffic").is_empty(), "never asked");
        assert_eq!(
            report.warnings,
            [
                "fake:// has no traffic counters: idleness is judged from envctl commands, \
              leases and --ttl only"
            ]
        );
        assert_eq!(
            report.actions.len(),
            1,
            "idle by commands alone: {report:?}"
        );
    }

    /// The one action of a pass at `now`, as its cause and sentence.
    async fn only_action(
        fake: &Fake,
        store: &Store,
        options: &Options,
        now: chrono::DateTime<Utc>,
    ) -> (reaper::Cause, String) {
        let report = reaper::pass(fake, store, options, now).await.unwrap();
        match report.actions.as_slice() {
            [action] => {
                assert_eq!(action.error, None, "{report:?}");
                (action.reason.cause(), action.reason.to_string())
            }
            _ => panic!("expected one action: {report:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_ttl_stops_a_busy_environment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        fake.edit_metadata("shop-1", |metadata| metadata.expires_at = Some(seen));
        fake.set_traffic("shop-1", "app", Reading::Unreadable);
        let (cause, _) = only_action(&fake, &store, &reap_options(), seen).await;
        assert_eq!(cause, reaper::Cause::TtlExpired);
        assert_eq!(fake.calls_of("stop_service"), ["shop-1/app", "shop-1/db"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pinned_environment_is_never_stopped_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let instance = require(&fake, "shop-1").await.unwrap();
        crate::lifecycle::pin(&fake, &instance).await.unwrap();
        fake.edit_metadata("shop-1", |metadata| metadata.expires_at = Some(seen));
        let eager = Options {
            max_age: Some(Duration::from_secs(1)),
            ..reap_options()
        };
        let report = reaper::pass(&fake, &store, &eager, seen + chrono::Duration::days(9))
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert!(fake.calls_of("stop_service").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_stops_a_busy_environment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        fake.set_traffic("shop-1", "app", Reading::Unreadable);
        let aged = Options {
            max_age: Some(Duration::from_secs(1800)),
            ..reap_options()
        };
        let later = seen + chrono::Duration::minutes(31);
        let (cause, sentence) = only_action(&fake, &store, &aged, later).await;
        assert_eq!(cause, reaper::Cause::OlderThanMaxAge);
        assert!(
            sentence.starts_with("older than --max-age 30m"),
            "{sentence}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_environment_is_removed_after_remove_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let instance = require(&fake, "shop-1").await.unwrap();
        stop(&fake, &instance).await.unwrap();
        let soon = seen + chrono::Duration::minutes(59);
        let report = reaper::pass(&fake, &store, &reap_options(), soon)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        let later = seen + chrono::Duration::minutes(61);
        let (cause, _) = only_action(&fake, &store, &reap_options(), later).await;
        assert_eq!(cause, reaper::Cause::StoppedTooLong);
        assert!(!fake.exists("shop-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_service_stops_its_environment_after_the_idle_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        fake.script(
            "db",
            Script {
                exits: Some((Duration::ZERO, 1)),
                ..Script::default()
            },
        );
        let crashed = seen + chrono::Duration::minutes(1);
        let report = reaper::pass(&fake, &store, &reap_options(), crashed)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        let later = crashed + chrono::Duration::hours(1);
        let (cause, sentence) = only_action(&fake, &store, &reap_options(), later).await;
        assert_eq!(cause, reaper::Cause::Crashed);
        assert_eq!(
            sentence,
            "a service has been crashed or unhealthy for 1h00m"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_gateways_error_flag_stops_only_with_stop_erroring() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let endpoint = fake.info().endpoint.clone();
        store
            .update(|state| {
                state.record_mut(&endpoint, "shop-1").error_flag = Some(crate::state::ErrorFlag {
                    since: seen,
                    judged_at: seen,
                    requests: 50,
                    errors: 31,
                    window_seconds: 300,
                    threshold_percent: 50,
                })
            })
            .unwrap();
        let now = seen + chrono::Duration::seconds(30);
        let report = reaper::pass(&fake, &store, &reap_options(), now)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        let asked = Options {
            stop_erroring: true,
            ..reap_options()
        };
        let (cause, _) = only_action(&fake, &store, &asked, now).await;
        assert_eq!(cause, reaper::Cause::ErrorRate);
        let (state, _) = store.read();
        let record = state.record(&endpoint, "shop-1").unwrap();
        assert_eq!(record.stopped_for_errors, Some(now));
        assert!(record.error_flag.is_some(), "the gateway's to clear");
        let stop = record.stopped.as_ref().expect("why, for `envctl status`");
        assert!(
            stop.reason.starts_with(
                "by the reaper (--stop-erroring): its error rate at `envctl gateway`: 31 of 50"
            ),
            "{}",
            stop.reason
        );
    }

    /// `--pause-after 30m --idle 1h`.
    fn pausing() -> Options {
        Options {
            pause_after: Some(Duration::from_secs(1800)),
            ..reap_options()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_environment_is_paused_then_stopped_and_keeps_its_ports_while_paused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let quiet = seen + chrono::Duration::minutes(20);
        let report = reaper::pass(&fake, &store, &pausing(), quiet)
            .await
            .unwrap();
        assert!(
            report.actions.is_empty(),
            "not idle for 30m yet: {report:?}"
        );
        let idle = seen + chrono::Duration::minutes(40);
        let report = reaper::pass(&fake, &store, &pausing(), idle).await.unwrap();
        let actions: Vec<_> = report.actions.iter().map(|a| a.action).collect();
        assert_eq!(actions, [reaper::ActionKind::Pause], "{report:?}");
        assert_eq!(report.actions[0].reason.cause(), reaper::Cause::Idle);
        assert_eq!(fake.calls_of("pause_service"), ["shop-1/app", "shop-1/db"]);
        let paused = require(&fake, "shop-1").await.unwrap();
        assert_eq!(paused.state(Utc::now()), State::Paused);
        assert!(
            paused
                .services
                .iter()
                .all(|s| !s.status.endpoints.is_empty() || s.metadata.ports.is_empty()),
            "a paused service keeps its ports"
        );
        // Paused, it counts as idle: `--idle` stops it as it would a running one.
        let later = seen + chrono::Duration::minutes(50);
        let report = reaper::pass(&fake, &store, &pausing(), later)
            .await
            .unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        let idle_for_an_hour = seen + chrono::Duration::minutes(61);
        let report = reaper::pass(&fake, &store, &pausing(), idle_for_an_hour)
            .await
            .unwrap();
        let actions: Vec<_> = report.actions.iter().map(|a| a.action).collect();
        assert_eq!(actions, [reaper::ActionKind::Stop], "{report:?}");
        let stopped = require(&fake, "shop-1").await.unwrap();
        assert_eq!(stopped.state(Utc::now()), State::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn pinned_and_leased_environments_are_never_paused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let instance = require(&fake, "shop-1").await.unwrap();
        crate::lifecycle::pin(&fake, &instance).await.unwrap();
        let idle = seen + chrono::Duration::minutes(40);
        let report = reaper::pass(&fake, &store, &pausing(), idle).await.unwrap();
        assert!(report.actions.is_empty(), "pinned: {report:?}");
        crate::lifecycle::unpin(&fake, &instance).await.unwrap();
        let until = idle + chrono::Duration::hours(1);
        fake.set_marker(&instance.metadata, crate::backend::Marker::Lease(until))
            .await
            .unwrap();
        let report = reaper::pass(&fake, &store, &pausing(), idle).await.unwrap();
        assert!(report.actions.is_empty(), "leased: {report:?}");
        assert!(fake.calls_of("pause_service").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn start_resumes_a_paused_environment_without_starting_anything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = fake();
        let seen = seen_environment(&fake, &store).await;
        let idle = seen + chrono::Duration::minutes(40);
        reaper::pass(&fake, &store, &pausing(), idle).await.unwrap();
        let paused = require(&fake, "shop-1").await.unwrap();
        let starts_before = fake.calls_of("start_service").len();
        crate::lifecycle::start(
            &fake,
            &paused,
            &quiet(),
            Duration::from_secs(60),
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(fake.calls_of("resume_service"), ["shop-1/app", "shop-1/db"]);
        assert_eq!(fake.calls_of("start_service").len(), starts_before);
        let back = require(&fake, "shop-1").await.unwrap();
        assert_eq!(back.state(Utc::now()), State::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_after_on_a_backend_that_cannot_pause_warns_and_pauses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = Fake::with_capabilities(crate::backend::Capabilities {
            pause: false,
            ..fake().info().capabilities
        });
        fake.add_image(image("shop/db:1"));
        fake.add_image(image("shop/app:1"));
        let seen = seen_environment(&fake, &store).await;
        let idle = seen + chrono::Duration::minutes(40);
        let report = reaper::pass(&fake, &store, &pausing(), idle).await.unwrap();
        assert!(report.actions.is_empty(), "{report:?}");
        assert!(
            report.warnings.iter().any(|w| w.contains("--pause-after")),
            "{report:?}"
        );
        assert!(fake.calls_of("pause_service").is_empty());
    }
}

/// `app` at tag `2`, as `envctl update ID app@2` applies it to the file.
fn shop_with_app_2() -> Environment {
    environment(&SHOP.replacen("tag: '1'\n    ports", "tag: '2'\n    ports", 1))
}

fn update_options() -> UpdateOptions {
    UpdateOptions {
        timeout: Duration::from_secs(60),
        with_dependents: false,
        grace: None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_whose_replacement_fails_puts_the_previous_service_back_and_running() {
    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let previous = before.services[0].handle.clone();
    assert_eq!(previous.service, "app");
    fake.fault(
        "start_service",
        "shop-1/app",
        Fault::Fail("exec format error".into()),
    );
    let error = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, UpdateError::Failed { ref restored, .. } if restored.problem.is_none()),
        "{error}"
    );
    assert_eq!(fake.calls_of("put_aside"), ["shop-1/app"]);
    assert_eq!(
        fake.calls_of("remove_service"),
        ["shop-1/app"],
        "the replacement only"
    );
    assert_eq!(fake.calls_of("restore_aside"), ["shop-1/app"]);
    assert!(
        fake.calls_of("clear_marker")
            .contains(&"shop-1/update".to_string())
    );
    let after = require(&fake, "shop-1").await.unwrap();
    let app = &after.services[0];
    assert_eq!(
        app.handle, previous,
        "the previous `app`, under its own name"
    );
    assert_eq!(app.status.state, crate::backend::ServiceState::Running);
    assert_eq!(app.metadata.image.as_ref().unwrap().tag, "1");
    assert!(after.aside.is_empty());
    assert!(after.markers.update.is_none());
    assert_eq!(after.state(Utc::now()), State::Ready);
}

#[tokio::test(start_paused = true)]
async fn an_update_that_times_out_restores_the_previous_service_at_its_deadline() {
    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    fake.fault("start_service", "shop-1/app", Fault::Hang);
    let began = tokio::time::Instant::now();
    let error = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            UpdateError::Failed { ref cause, ref restored }
                if matches!(**cause, StartError::Timeout { .. }) && restored.problem.is_none()
        ),
        "{error}"
    );
    assert_eq!(began.elapsed(), Duration::from_secs(60), "its --timeout");
    let after = require(&fake, "shop-1").await.unwrap();
    assert_eq!(after.services[0].handle, before.services[0].handle);
    assert_eq!(after.state(Utc::now()), State::Ready);
}

#[tokio::test(start_paused = true)]
async fn an_update_whose_engine_stops_answering_ends_within_its_timeout_and_ten_seconds() {
    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    // From the replacement's start on, the engine takes every request and answers none.
    for operation in ["start_service", "ping", "list", "list", "list"] {
        fake.fault(operation, "*", Fault::Hang);
    }
    let began = tokio::time::Instant::now();
    let error = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .unwrap_err();
    assert!(
        began.elapsed() <= Duration::from_secs(70),
        "{:?}",
        began.elapsed()
    );
    let text = error.to_string();
    assert!(text.contains("stopped answering"), "{text}");
    assert!(
        text.contains("could not restore the previous services of `shop-1`"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_update_stops_the_service_put_aside_before_its_replacement_starts() {
    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let calls_before = fake.calls().len();
    update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .expect("updated");
    let calls: Vec<String> = fake.calls()[calls_before..]
        .iter()
        .filter(|c| c.ends_with(" shop-1/app"))
        .map(|c| c.trim_end_matches(" shop-1/app").to_string())
        .collect();
    let at = |operation: &str| {
        calls
            .iter()
            .position(|c| c == operation)
            .unwrap_or_else(|| panic!("no {operation} in {calls:?}"))
    };
    assert!(at("put_aside") < at("create_service"), "{calls:?}");
    assert!(at("stop_service") < at("start_service"), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn an_update_replaces_the_service_and_drops_the_one_put_aside() {
    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let updated = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .expect("updated");
    assert_eq!(updated.services.len(), 1);
    assert_eq!(updated.services[0].image, "shop/app:2");
    let after = require(&fake, "shop-1").await.unwrap();
    assert_ne!(
        after.services[0].handle.native,
        before.services[0].handle.native
    );
    assert_eq!(
        after.services[1].handle, before.services[1].handle,
        "`db` untouched"
    );
    assert_eq!(
        after
            .refs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["app@2"]
    );
    assert!(after.aside.is_empty());
    assert!(after.markers.update.is_none());
    assert_eq!(after.state(Utc::now()), State::Ready);
}

#[tokio::test(start_paused = true)]
async fn an_update_on_a_backend_that_cannot_replace_in_place_is_refused_before_it_touches_anything()
{
    let fake = Fake::with_capabilities(crate::backend::Capabilities {
        replace_in_place: false,
        ..fake().info().capabilities
    });
    fake.add_image(image("shop/db:1"));
    fake.add_image(image("shop/app:1"));
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let calls = fake.calls().len();
    let error = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            UpdateError::Backend(crate::backend::BackendError::Unsupported { .. })
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("cannot replace services in place (`envctl update`)"),
        "{error}"
    );
    assert!(
        error.to_string().contains("`envctl down shop-1`"),
        "{error}"
    );
    assert_eq!(fake.calls().len(), calls, "{:?}", &fake.calls()[calls..]);
}

#[tokio::test(start_paused = true)]
async fn with_dependents_refuses_a_dependent_whose_settings_the_file_changed_before_touching_anything()
 {
    let fake = fake();
    fake.add_image(image("shop/db:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let update_db = |yaml: String| {
        let (fake, before, signals) = (&fake, &before, &signals);
        async move {
            let options = UpdateOptions {
                with_dependents: true,
                ..update_options()
            };
            let db_2 = environment(&yaml.replacen("tag: '1'", "tag: '2'", 1));
            let named = ["db".to_string()];
            update(
                fake,
                before,
                &db_2,
                &named,
                &options,
                &quiet(),
                signals,
                &|| {},
            )
            .await
        }
    };
    // Started with an override publishing another port: the base file alone differs.
    let error = update_db(SHOP.replace("ports: [8080]", "ports: [8080, 9090]"))
        .await
        .unwrap_err();
    assert!(error.is_bad_input());
    assert_eq!(
        error.to_string().lines().next().unwrap(),
        "`--with-dependents` would recreate `app` of `shop-1` with other ports than it runs \
         with, as `shop.yaml` declares them"
    );
    assert!(fake.calls_of("put_aside").is_empty(), "nothing touched");
    assert!(
        fake.calls_of("set_marker")
            .iter()
            .all(|m| !m.ends_with("update"))
    );
    update_db(SHOP.to_string())
        .await
        .expect("the same settings: recreated");
    assert_eq!(fake.calls_of("put_aside"), ["shop-1/app", "shop-1/db"]);
}

/// The calls an update makes, in order: a `down` can list, or remove, just before any of them.
const UPDATE_STEPS: [&str; 8] = [
    "resolve_image",
    "set_marker",
    "put_aside",
    "create_service",
    "stop_service",
    "start_service",
    "list",
    "clear_marker",
];

/// Runs one `down` racing an update of `shop-1`: its listing just before the update's first
/// `listed_at` call, its removal (from that listing) just before its first `removed_at` call,
/// or after the update when it never makes that call. Returns the update's outcome and
/// whether the removal ran while the update did.
async fn down_during_an_update(
    listed_at: &'static str,
    removed_at: &'static str,
) -> (Result<Updated, UpdateError>, bool) {
    use futures_util::FutureExt;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let (signals, _sender) = Signals::manual();
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(&fake, "shop-1").await.unwrap();
    let listing: Arc<Mutex<Option<Vec<Instance>>>> = Arc::default();
    let removed = Arc::new(AtomicBool::new(false));
    // The down's own calls must not count as the update's.
    let in_down = Arc::new(AtomicBool::new(false));
    for step in UPDATE_STEPS {
        let (fake2, listing, removed, in_down) = (
            fake.clone(),
            listing.clone(),
            removed.clone(),
            in_down.clone(),
        );
        fake.on(step, move || {
            if in_down.swap(true, Ordering::SeqCst) {
                return;
            }
            let mut listed = listing.lock().unwrap();
            if step == listed_at && listed.is_none() {
                let all = inventory::list(&fake2).now_or_never().expect("at once");
                *listed = Some(all.unwrap());
            }
            if step == removed_at && listed.is_some() && !removed.swap(true, Ordering::SeqCst) {
                for instance in listed.as_ref().unwrap() {
                    let removal = remove(&fake2, instance, None).now_or_never();
                    removal.expect("at once").expect("down removes it");
                }
            }
            drop(listed);
            in_down.store(false, Ordering::SeqCst);
        });
    }
    let outcome = update(
        &fake,
        &before,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await;
    let during = removed.load(Ordering::SeqCst);
    if !during {
        let listed = listing.lock().unwrap().take();
        let listed = match listed {
            Some(listed) => listed,
            None => inventory::list(&fake).await.unwrap(),
        };
        for instance in &listed {
            remove(&fake, instance, None)
                .await
                .expect("down removes it");
        }
    }
    assert!(
        !fake.exists("shop-1"),
        "listed before `{listed_at}`, removed before `{removed_at}`: left {:?}; the update \
         said {:?}; calls {:?}",
        inventory::find(&fake, "shop-1").await.unwrap(),
        outcome.as_ref().map(|u| &u.id),
        fake.calls()
    );
    (outcome, during)
}

#[tokio::test(start_paused = true)]
async fn down_racing_the_start_of_an_update_leaves_nothing() {
    for (i, listed_at) in UPDATE_STEPS.iter().enumerate() {
        for removed_at in &UPDATE_STEPS[i..] {
            let (outcome, during) = down_during_an_update(listed_at, removed_at).await;
            if let Err(error) = &outcome {
                assert!(
                    matches!(error, UpdateError::RemovedMeanwhile(_)),
                    "listed before `{listed_at}`, removed before `{removed_at}`: {error}"
                );
            }
            if during && *removed_at != "clear_marker" {
                assert!(
                    outcome.is_err(),
                    "removed before `{removed_at}`, yet the update said it succeeded"
                );
            }
        }
    }
}

/// `shop-1` as an update killed mid-way left it: its marker (past its deadline, by a process
/// this machine cannot judge) and `app` put aside, stopped, with no replacement yet.
async fn killed_update(fake: &Fake) -> Instance {
    let (signals, _sender) = Signals::manual();
    up_on(
        fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    let before = require(fake, "shop-1").await.unwrap();
    let past = Utc::now() - chrono::Duration::minutes(5);
    let marker = Metadata {
        run: Some("killed".into()),
        process: Some("another-boot:1:7:7".into()),
        started_by: Some("ci:7".into()),
        ..before.metadata.clone()
    };
    fake.set_marker(&marker, crate::backend::Marker::Update(past))
        .await
        .unwrap();
    let app = fake.put_aside(&before.services[0].handle).await.unwrap();
    fake.stop_service(&app.handle, Duration::ZERO)
        .await
        .unwrap();
    require(fake, "shop-1").await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_updates_taking_over_a_killed_update_say_it_is_being_updated() {
    use futures_util::FutureExt;
    use std::sync::Mutex;

    let fake = fake();
    fake.add_image(image("shop/app:2"));
    let left = killed_update(&fake).await;
    assert_eq!(left.state(Utc::now()), State::UpdateUnfinished);
    // The second update runs all it can while the first takes over, just before the first
    // puts `app` back.
    let second: Arc<Mutex<Option<Result<Updated, UpdateError>>>> = Arc::default();
    let (fake2, left2, second2) = (fake.clone(), left.clone(), second.clone());
    fake.on("restore_aside", move || {
        let Ok(mut second) = second2.try_lock() else {
            return;
        };
        if second.is_some() {
            return;
        }
        let (signals, _sender) = Signals::manual();
        let (environment, named) = (shop_with_app_2(), ["app".to_string()]);
        let (options, progress) = (update_options(), quiet());
        let updating = update(
            &fake2,
            &left2,
            &environment,
            &named,
            &options,
            &progress,
            &signals,
            &|| {},
        );
        *second = Some(updating.now_or_never().expect("refused at once"));
    });
    let (signals, _sender) = Signals::manual();
    let first = update(
        &fake,
        &left,
        &shop_with_app_2(),
        &["app".to_string()],
        &update_options(),
        &quiet(),
        &signals,
        &|| {},
    )
    .await;
    let second = second
        .lock()
        .unwrap()
        .take()
        .expect("the second update ran");
    let lost = second.expect_err("the second update is refused");
    assert!(
        lost.to_string()
            .starts_with("environment `shop-1` is being updated by another `envctl update` ("),
        "{lost}"
    );
    let won = first.expect("the first update takes over and replaces `app`");
    assert_eq!(won.services[0].image, "shop/app:2");
    let after = require(&fake, "shop-1").await.unwrap();
    assert!(after.aside.is_empty());
    assert_eq!(after.state(Utc::now()), State::Ready);
}

#[tokio::test(start_paused = true)]
async fn a_restore_of_an_unfinished_update_that_runs_out_of_time_says_what_it_waited_for() {
    let fake = fake();
    let left = killed_update(&fake).await;
    fake.fault("start_service", "shop-1/app", Fault::Hang);
    let began = tokio::time::Instant::now();
    let error = super::update::restore_unfinished(&fake, &left, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(began.elapsed(), Duration::from_secs(30), "its --timeout");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "the environment was not ready within 30s: still waiting for `app` (starting)"
        ),
        "{message}"
    );
    assert!(message.contains("hint: raise `--timeout`"), "{message}");
}

/// Probes that cost the engine real work (`exec:`, `healthcheck:`) are paced: after a cheaper
/// sign of progress, and spaced by what each attempt took.
mod pacing {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    /// `db` with these `ready:` lines (and `ports:` when given), alone in its environment.
    fn db(ready: &str, ports: &str) -> Environment {
        environment(&format!(
            "name: shop\nservices:\n  db:\n    image: shop/db\n    tag: '1'\n{ports}    ready:\n{ready}"
        ))
    }

    /// When each `exec` was called, in paused time since `origin`.
    fn record_execs(fake: &Fake, origin: Instant) -> Arc<Mutex<Vec<Duration>>> {
        let execs = Arc::new(Mutex::new(Vec::new()));
        let seen = execs.clone();
        fake.on("exec", move || seen.lock().unwrap().push(origin.elapsed()));
        execs
    }

    /// A free local port, and a task that starts listening on it after `after`; it reports
    /// when it did.
    async fn listens_after(after: Duration) -> (u16, tokio::task::JoinHandle<Instant>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let at = Instant::now();
            tokio::spawn(async move {
                while let Ok((connection, _)) = listener.accept().await {
                    std::mem::forget(connection);
                }
            });
            at
        });
        (port, task)
    }

    async fn up_db(fake: &Fake, environment: &Environment) -> Result<Started, StartError> {
        let (signals, _sender) = Signals::manual();
        up_on(
            fake,
            environment,
            &options(Some("shop-1"), Duration::from_secs(120)),
            &signals,
        )
        .await
    }

    /// Starts `db` with these `ready:` lines, publishing 5432 on a port that answers after 3 s
    /// and healthy at once: when each exec ran, and when the port first answered.
    async fn execs_around_a_listener(ready: &str) -> (Vec<Duration>, Duration) {
        let fake = fake();
        let (port, listening) = listens_after(Duration::from_secs(3)).await;
        fake.script(
            "db",
            Script {
                healthy_after: Some(Duration::ZERO),
                host_port: Some(port),
                ..Script::default()
            },
        );
        let execs = record_execs(&fake, Instant::now());
        let origin = Instant::now();
        up_db(&fake, &db(ready, "    ports: [5432]\n"))
            .await
            .unwrap();
        let tcp_answered = listening.await.unwrap() - origin;
        let execs = execs.lock().unwrap().clone();
        (execs, tcp_answered)
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_probe_waits_for_a_cheaper_signal_first() {
        let (execs, tcp_answered) =
            execs_around_a_listener("      tcp: 5432\n      exec: [pg_isready]\n").await;
        assert!(!execs.is_empty(), "the exec probe ran");
        assert!(
            execs[0] >= tcp_answered,
            "first exec at {:?}, before the first tcp answer at {tcp_answered:?}",
            execs[0]
        );
        assert_eq!(execs.len(), 1, "{execs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_probe_without_a_cheaper_probe_waits_for_a_first_answer_on_a_published_port() {
        let (execs, tcp_answered) = execs_around_a_listener("      exec: [pg_isready]\n").await;
        assert!(!execs.is_empty() && execs[0] >= tcp_answered, "{execs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_published_port_that_never_answers_delays_an_exec_probe_but_does_not_block_it() {
        let fake = fake();
        fake.script(
            "db",
            Script {
                healthy_after: Some(Duration::ZERO),
                ..Script::default()
            },
        );
        let execs = record_execs(&fake, Instant::now());
        let started = up_db(
            &fake,
            &db("      exec: [pg_isready]\n", "    ports: [5432]\n"),
        )
        .await;
        assert!(started.is_ok(), "{:?}", started.err());
        let execs = execs.lock().unwrap().clone();
        assert_eq!(execs.len(), 1, "{execs:?}");
        assert!(execs[0] <= Duration::from_secs(11), "{execs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn exec_probes_are_spaced_by_their_cost() {
        let fake = fake();
        let (port, _listening) = listens_after(Duration::ZERO).await;
        // Each exec takes 300 ms; the service takes queries after 20 s.
        fake.script(
            "db",
            Script {
                healthy_after: Some(Duration::from_secs(20)),
                exec_takes: Duration::from_millis(300),
                host_port: Some(port),
                ..Script::default()
            },
        );
        let execs = record_execs(&fake, Instant::now());
        up_db(
            &fake,
            &db(
                "      tcp: 5432\n      exec: [pg_isready]\n",
                "    ports: [5432]\n",
            ),
        )
        .await
        .unwrap();
        let execs = execs.lock().unwrap().clone();
        // At 10x an attempt's 300 ms, 3.3 s from one start to the next: 7 in 20 s, not the
        // 57 that one every 50 ms after each 300 ms attempt would make.
        assert!((6..=8).contains(&execs.len()), "{execs:?}");
        for pair in execs.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(3300),
                "{execs:?}"
            );
        }
        assert!(
            *execs.last().unwrap() >= Duration::from_secs(20),
            "{execs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_with_only_an_exec_probe_and_no_port_is_probed_at_a_bounded_cost() {
        let fake = fake();
        fake.script(
            "db",
            Script {
                healthy_after: Some(Duration::from_secs(30)),
                exec_takes: Duration::from_millis(100),
                ..Script::default()
            },
        );
        let execs = record_execs(&fake, Instant::now());
        let origin = Instant::now();
        up_db(&fake, &db("      exec: [pg_isready]\n", ""))
            .await
            .unwrap();
        let ready = origin.elapsed();
        let execs = execs.lock().unwrap().clone();
        // With no signal to wait for it starts at once, then keeps to 1/11 of the time.
        assert!(execs[0] < Duration::from_millis(100), "{execs:?}");
        let busy = Duration::from_millis(100) * execs.len() as u32;
        assert!(
            busy * 10 <= ready + Duration::from_secs(1),
            "{execs:?} in {ready:?}"
        );
        // And it is ready within one interval of when it could be.
        assert!(
            ready <= Duration::from_millis(31_200),
            "ready after {ready:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_ready_within_its_first_second_is_seen_within_10_ms() {
        let fake = fake();
        let (port, listening) = listens_after(Duration::from_millis(305)).await;
        fake.script(
            "db",
            Script {
                host_port: Some(port),
                ..Script::default()
            },
        );
        up_db(&fake, &db("      tcp: 5432\n", "    ports: [5432]\n"))
            .await
            .unwrap();
        let listened = listening.await.unwrap();
        // The next 10 ms round after it listens, then 300 ms held open through the port proxy;
        // at 50 ms rounds it would be seen at 350 ms, 45 ms after it listened.
        let seen = listened.elapsed();
        assert!(
            seen <= Duration::from_millis(300 + 10),
            "seen ready {seen:?} after it listened"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cheap_probes_keep_their_pace() {
        let fake = fake();
        let (port, _listening) = listens_after(Duration::from_secs(2)).await;
        fake.script(
            "db",
            Script {
                host_port: Some(port),
                ..Script::default()
            },
        );
        let origin = Instant::now();
        // 2 s, then the next 50 ms round, then 300 ms held open through the port proxy.
        up_db(&fake, &db("      tcp: 5432\n", "    ports: [5432]\n"))
            .await
            .unwrap();
        assert!(
            origin.elapsed() <= Duration::from_millis(2400),
            "{:?}",
            origin.elapsed()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_that_runs_out_of_time_names_what_it_waited_for_as_up_does() {
    let fake = fake();
    let (signals, _sender) = Signals::manual();
    fake.script(
        "db",
        Script {
            logs: vec!["waiting for the disk".into()],
            ..Script::default()
        },
    );
    up_on(
        &fake,
        &environment(SHOP),
        &options(Some("shop-1"), Duration::from_secs(60)),
        &signals,
    )
    .await
    .expect("started");
    stop(&fake, &require(&fake, "shop-1").await.unwrap())
        .await
        .unwrap();
    let stopped = require(&fake, "shop-1").await.unwrap();
    fake.fault("start_service", "shop-1/db", Fault::Hang);
    let error = start(
        &fake,
        &stopped,
        &quiet(),
        Duration::from_secs(30),
        &Default::default(),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("the environment was not ready within 30s"),
        "{text}"
    );
    assert!(
        text.contains("still waiting for `db` (starting), `app` (waiting)"),
        "{text}"
    );
    assert!(
        text.contains("last line of `db_shop-1`:\n  | waiting for the disk"),
        "{text}"
    );
}

/// Issue 18: a probe that cannot work is refused before anything is created, not after the
/// start's timeout.
#[tokio::test(start_paused = true)]
async fn a_probe_of_an_unpublished_port_nothing_can_answer_is_refused_before_anything_is_created() {
    let env = FakeEnv::new()
        .service("broker", "shop/broker:1")
        .ready("broker", "tcp: 61616")
        .service("db", "shop/db:1")
        .key("db", "ports: [5432]")
        .ready("db", "tcp: 5432")
        .service("app", "shop/app:1")
        .ready("app", "http: 8080/health")
        .timeout(Duration::from_secs(600));
    env.fake
        .refuse_unpublished_probes("container addresses do not answer from here");
    let started = tokio::time::Instant::now();
    match env.up().await {
        Err(error @ StartError::Unprobeable { .. }) => assert_eq!(
            error.to_string(),
            "port 8080 of `app` and port 61616 of `broker` are probed but not published, and \
             container addresses do not answer from here\n\
             hint: add them to `ports:`, or probe with `ready: exec:`"
        ),
        other => panic!("expected the probes refused, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    assert!(
        env.fake.calls_of("claim").is_empty(),
        "{:?}",
        env.fake.calls()
    );
    assert!(!env.fake.exists("shop-1"));
}

#[tokio::test(start_paused = true)]
async fn probes_of_published_ports_are_not_refused_where_unpublished_ones_would_be() {
    // Nothing listens on the fake: the probe is tried, and the start times out.
    let env = FakeEnv::new()
        .service("db", "shop/db:1")
        .key("db", "ports: [5432]")
        .ready("db", "tcp: 5432")
        .timeout(Duration::from_secs(5));
    env.fake
        .refuse_unpublished_probes("container addresses do not answer from here");
    match env.up().await {
        Err(StartError::Timeout { .. }) => {}
        other => panic!("expected the probe tried until the timeout, got {other:?}"),
    }
    assert_eq!(
        env.fake.calls_of("claim").len(),
        1,
        "{:?}",
        env.fake.calls()
    );
}

/// `run`'s lease, created with the services instead of before them.
mod lease_with_the_services {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    fn leased() -> UpOptions {
        UpOptions {
            lease: true,
            ..options(Some("shop-1"), Duration::from_secs(60))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_services_are_created_while_the_lease_is() {
        let fake = fake();
        fake.fault(
            "set_marker",
            "shop-1/lease",
            Fault::Delay(Duration::from_secs(5)),
        );
        let created = Arc::new(Mutex::new(Vec::new()));
        let origin = Instant::now();
        let seen = created.clone();
        fake.on("create_service", move || {
            seen.lock().unwrap().push(origin.elapsed())
        });
        let (signals, _sender) = Signals::manual();
        up_on(&fake, &environment(SHOP), &leased(), &signals)
            .await
            .unwrap();
        let created = created.lock().unwrap().clone();
        assert_eq!(created.len(), 2, "{:?}", fake.calls());
        assert!(
            created.iter().all(|at| *at < Duration::from_secs(5)),
            "created at {created:?}, not after the lease"
        );
        assert!(
            fake.calls_of("set_marker")
                .contains(&"shop-1/lease".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_fails_removes_the_services_created_with_it() {
        let fake = fake();
        fake.fault("set_marker", "shop-1/lease", Fault::Fail("no space".into()));
        let (signals, _sender) = Signals::manual();
        let result = up_on(&fake, &environment(SHOP), &leased(), &signals).await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(
            fake.calls_of("create_service").len(),
            2,
            "{:?}",
            fake.calls()
        );
        assert!(
            fake.calls_of("start_service").is_empty(),
            "{:?}",
            fake.calls()
        );
        assert!(!fake.exists("shop-1"), "{:?}", fake.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_fails_to_be_created_removes_the_lease_created_with_it() {
        let fake = fake();
        fake.fault(
            "create_service",
            "shop-1/app",
            Fault::Fail("no space".into()),
        );
        let (signals, _sender) = Signals::manual();
        let result = up_on(&fake, &environment(SHOP), &leased(), &signals).await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            fake.calls_of("set_marker")
                .contains(&"shop-1/lease".to_string())
        );
        assert!(!fake.exists("shop-1"), "{:?}", fake.calls());
    }
}
