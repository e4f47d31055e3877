//! `up`: resolve images, claim an id, start services in dependency order, roll back on failure.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use tokio::time::Instant;

use super::probe::{self, Subject};
use super::{Phase, Progress, StartError, build, scheduler, teardown};
use crate::engine::{ContainerSpec, Engine, EngineError, NetworkSpec, PublishedPort};
use crate::naming::{self, label};
use crate::signals::Signals;
use crate::spec::{Environment, Probe, Service};

/// How many ids (`ID`, `ID-2`, `ID-3`, ...) `up` tries when Jenkins starts many runs in one
/// second.
const MAX_ID_ATTEMPTS: u32 = 100;
/// How long an interrupted start lets containers stop before killing them.
const ROLLBACK_GRACE: Duration = Duration::from_secs(10);

/// Options of one `up`, free of any command-line types.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// A fixed id instead of the launch time (`--name`).
    pub name: Option<String>,
    /// Bounds the whole start.
    pub timeout: Duration,
    pub keep_on_failure: bool,
    /// Who the environment belongs to: Jenkins' `BUILD_TAG`, else the user.
    pub owner: String,
    /// Services whose tag came from `SERVICE@REF`: a unique local tag starting with REF counts.
    pub prefix_tags: Vec<String>,
}

/// A started environment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Started {
    pub id: String,
    pub environment: String,
    pub services: Vec<StartedService>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StartedService {
    pub service: String,
    pub container: String,
    pub image: String,
    pub state: String,
    pub ports: Vec<PortJson>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PortJson {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
    /// The path of the service's HTTP readiness probe on this port: the port speaks HTTP, so
    /// `up` can show a URL.
    #[serde(skip)]
    pub http_path: Option<String>,
}

impl PortJson {
    pub fn new(p: &PublishedPort, http_path: Option<String>) -> Self {
        PortJson {
            container_port: p.container_port,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            http_path,
        }
    }
}

impl From<&PublishedPort> for PortJson {
    fn from(p: &PublishedPort) -> Self {
        PortJson::new(p, None)
    }
}

fn http_path(service: &Service, port: &PublishedPort) -> Option<String> {
    service.ready.probes.iter().find_map(|probe| match probe {
        Probe::Http { port: probed, .. } if *probed == port.container_port => Some("/".into()),
        _ => None,
    })
}

/// A service's image, resolved to a local reference.
struct Resolved {
    reference: String,
    healthcheck: Option<Vec<String>>,
}

/// Starts `environment`. On failure or interrupt, removes everything this run created unless
/// `keep_on_failure` is set.
pub async fn up(
    engine: &dyn Engine,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
    signals: &Signals,
) -> Result<Started, StartError> {
    let run = run_nonce();
    let launched = Utc::now();
    let deadline = Instant::now() + options.timeout;
    let labels_deadline =
        launched + chrono::Duration::from_std(options.timeout).unwrap_or_default();
    let bounded = Bounds {
        signals,
        deadline,
        timeout: options.timeout,
    };
    let result = async {
        let images = bounded
            .run(resolve_images(engine, environment, options, progress))
            .await?;
        // Creating is not cut short by a signal: a create that the engine completes after its
        // request was dropped would escape the rollback. A signal meanwhile is acted on next.
        let claim = claim(
            engine,
            environment,
            options,
            &images,
            &run,
            launched,
            labels_deadline,
        )
        .await?;
        bounded
            .run(async {
                start_all(engine, environment, &claim, &images, progress).await?;
                describe(engine, environment, &claim, &images).await
            })
            .await
    }
    .await;
    if let Err(error) = &result {
        if options.keep_on_failure && !matches!(error, StartError::Interrupted) {
            tracing::info!("keeping what the failed start created (--keep-on-failure)");
        } else {
            rollback(engine, &run, error, signals).await;
        }
    }
    result
}

/// The limits of one start: a deadline, and the first interrupt signal.
struct Bounds<'a> {
    signals: &'a Signals,
    deadline: Instant,
    timeout: Duration,
}

impl Bounds<'_> {
    async fn run<T>(
        &self,
        step: impl Future<Output = Result<T, StartError>>,
    ) -> Result<T, StartError> {
        if self.signals.count() > 0 {
            return Err(StartError::Interrupted);
        }
        tokio::select! {
            result = tokio::time::timeout_at(self.deadline, step) => {
                result.unwrap_or(Err(StartError::Timeout(self.timeout)))
            }
            () = self.signals.received(1) => Err(StartError::Interrupted),
        }
    }
}

/// The containers and network a run claimed.
struct Claim {
    id: String,
    /// Container ids by service.
    containers: BTreeMap<String, String>,
}

async fn resolve_images(
    engine: &dyn Engine,
    environment: &Environment,
    options: &UpOptions,
    progress: &Progress,
) -> Result<BTreeMap<String, Resolved>, StartError> {
    let resolving = environment.services.values().map(|service| async move {
        let prefix = options.prefix_tags.contains(&service.name);
        let resolved = resolve_image(engine, service, prefix, progress)
            .await
            .map_err(|message| StartError::Image {
                service: service.name.clone(),
                message,
            })?;
        Ok::<_, StartError>((service.name.clone(), resolved))
    });
    Ok(try_join_all(resolving).await?.into_iter().collect())
}

async fn resolve_image(
    engine: &dyn Engine,
    service: &Service,
    prefix: bool,
    progress: &Progress,
) -> Result<Resolved, String> {
    let image = &service.image;
    let found = |reference: String, details: crate::engine::ImageDetails| Resolved {
        reference,
        healthcheck: details.healthcheck,
    };
    let exact = image.to_string();
    if let Some(details) = engine
        .inspect_image(&exact)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(found(exact, details));
    }
    if prefix {
        let tags = engine
            .image_tags(&image.repository)
            .await
            .map_err(|e| e.to_string())?;
        let mut matches: Vec<String> = tags
            .into_iter()
            .filter(|t| t.starts_with(&image.tag))
            .collect();
        matches.sort();
        match matches.as_slice() {
            [tag] => {
                let reference = format!("{}:{tag}", image.repository);
                if let Some(details) = engine
                    .inspect_image(&reference)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Ok(found(reference, details));
                }
            }
            [] => {}
            several => {
                return Err(format!(
                    "`{}` matches several local tags: {}\nhint: give more of the changeset, like \
                     `{}@{}`",
                    image.tag,
                    several.join(", "),
                    service.name,
                    several[0]
                ));
            }
        }
    }
    if let Some(build) = &service.build {
        progress(&service.name, Phase::Building);
        build::build_service(engine, service, build).await?;
    } else {
        progress(&service.name, Phase::Pulling);
        engine
            .pull_image(&image.repository, &image.tag)
            .await
            .map_err(|e| format!("image `{exact}` is not available locally and {e}"))?;
    }
    let details = engine
        .inspect_image(&exact)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("image `{exact}` is still missing after it was fetched"))?;
    Ok(found(exact, details))
}

/// Claims an id by creating the environment's anchor container, whose name is unique on the
/// engine: a taken name means another run has this id, so try the next suffix. Then creates the
/// network and every service's container under that id.
async fn claim(
    engine: &dyn Engine,
    environment: &Environment,
    options: &UpOptions,
    images: &BTreeMap<String, Resolved>,
    run: &str,
    launched: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<Claim, StartError> {
    let base = options
        .name
        .clone()
        .unwrap_or_else(|| naming::run_id(launched));
    let anchor_image = images
        .values()
        .next()
        .map(|r| r.reference.clone())
        .unwrap_or_default();
    let mut attempt = 1;
    let (id, labels) = loop {
        let id = match options.name {
            Some(_) => base.clone(),
            None => naming::nth_id(&base, attempt),
        };
        let labels = common_labels(environment, &id, options, run, launched, deadline);
        let mut anchor_labels = labels.clone();
        anchor_labels.insert(label::ROLE.into(), naming::ANCHOR_ROLE.into());
        let anchor = ContainerSpec {
            name: naming::anchor_name(&id),
            image: anchor_image.clone(),
            labels: anchor_labels,
            ..ContainerSpec::default()
        };
        match engine.create_container(&anchor).await {
            Ok(_) => break (id, labels),
            Err(EngineError::NameTaken(_))
                if options.name.is_none() && attempt < MAX_ID_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(EngineError::NameTaken(_)) => return Err(StartError::IdTaken(id)),
            Err(error) => return Err(error.into()),
        }
    };
    let network = NetworkSpec {
        name: naming::network_name(&environment.name, &id),
        labels: labels.clone(),
    };
    let network_id = engine.create_network(&network).await?;
    let creating = environment.services.values().map(|service| {
        let spec = container_spec(environment, service, &id, &labels, &network_id, images);
        async move {
            let container = engine.create_container(&spec).await?;
            Ok::<_, EngineError>((service.name.clone(), container))
        }
    });
    let containers = try_join_all(creating).await?.into_iter().collect();
    Ok(Claim { id, containers })
}

fn common_labels(
    environment: &Environment,
    id: &str,
    options: &UpOptions,
    run: &str,
    launched: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> BTreeMap<String, String> {
    [
        (label::MANAGED_BY, naming::MANAGER.to_string()),
        (label::ID, id.to_string()),
        (label::ENVIRONMENT, environment.name.clone()),
        (label::CREATED_AT, launched.to_rfc3339()),
        (label::OWNER, options.owner.clone()),
        (
            label::STARTED_BY,
            format!("{}:{}", hostname(), std::process::id()),
        ),
        (label::START_DEADLINE, deadline.to_rfc3339()),
        (label::RUN, run.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn container_spec(
    environment: &Environment,
    service: &Service,
    id: &str,
    labels: &BTreeMap<String, String>,
    network: &str,
    images: &BTreeMap<String, Resolved>,
) -> ContainerSpec {
    let image = images[&service.name].reference.clone();
    let mut labels = labels.clone();
    let depends_on: Vec<&str> = service.depends_on.iter().map(String::as_str).collect();
    let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
    labels.extend([
        (label::SERVICE.to_string(), service.name.clone()),
        (label::IMAGE.to_string(), image.clone()),
        (label::DEPENDS_ON.to_string(), depends_on.join(",")),
        (label::PORTS.to_string(), ports.join(",")),
        (label::READY.to_string(), service.ready.to_label()),
    ]);
    // Every link alias pointing at this service makes it reachable under that name.
    let mut aliases = vec![service.name.clone()];
    for other in environment.services.values() {
        for link in other.links.iter().filter(|l| l.service == service.name) {
            if !aliases.contains(&link.alias) {
                aliases.push(link.alias.clone());
            }
        }
    }
    ContainerSpec {
        name: naming::container_name(&service.name, id),
        image,
        command: service.command.clone(),
        env: service
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        ports,
        labels,
        network: network.to_string(),
        aliases,
    }
}

async fn start_all(
    engine: &dyn Engine,
    environment: &Environment,
    claim: &Claim,
    images: &BTreeMap<String, Resolved>,
    progress: &Progress,
) -> Result<(), StartError> {
    let dependencies = environment
        .services
        .values()
        .map(|s| (s.name.clone(), s.depends_on.clone()))
        .collect();
    for service in environment.services.values() {
        if !service.depends_on.is_empty() {
            progress(&service.name, Phase::Waiting);
        }
    }
    let start = |name: String| async move {
        let service = &environment.services[&name];
        let container = &claim.containers[&name];
        progress(&name, Phase::Starting);
        let subject = Subject {
            engine,
            container,
            ready: &service.ready,
            healthcheck: images[&name].healthcheck.as_deref(),
        };
        start_one(&subject).await?;
        progress(&name, Phase::Ready);
        Ok(())
    };
    match scheduler::run(&dependencies, start).await {
        Ok(()) => Ok(()),
        Err((service, reason)) => {
            progress(&service, Phase::Failed);
            let container = naming::container_name(&service, &claim.id);
            let logs = super::last_lines(engine, &claim.containers[&service], 20).await;
            Err(StartError::Service {
                service,
                container,
                reason,
                logs,
            })
        }
    }
}

/// Starts one container and waits for its readiness.
pub(super) async fn start_one(subject: &Subject<'_>) -> Result<(), String> {
    subject
        .engine
        .start_container(subject.container)
        .await
        .map_err(|e| e.to_string())?;
    probe::wait_ready(subject).await.map_err(|e| e.to_string())
}

async fn describe(
    engine: &dyn Engine,
    environment: &Environment,
    claim: &Claim,
    images: &BTreeMap<String, Resolved>,
) -> Result<Started, StartError> {
    let inspecting = claim
        .containers
        .iter()
        .map(|(service, container)| async move {
            let details = engine.inspect_container(container).await?;
            Ok::<_, EngineError>(StartedService {
                service: service.clone(),
                container: naming::container_name(service, &claim.id),
                image: images[service].reference.clone(),
                state: details.state.to_string(),
                ports: details
                    .ports
                    .iter()
                    .map(|p| PortJson::new(p, http_path(&environment.services[service], p)))
                    .collect(),
            })
        });
    Ok(Started {
        id: claim.id.clone(),
        environment: environment.name.clone(),
        services: try_join_all(inspecting).await?,
    })
}

/// Removes what run `run` created, found by its label so that containers whose creation was
/// cut short by an interrupt are found too. A signal during a graceful rollback kills instead.
async fn rollback(engine: &dyn Engine, run: &str, error: &StartError, signals: &Signals) {
    let graceful = matches!(error, StartError::Interrupted);
    let filter = format!("{}={run}", label::RUN);
    let removal = teardown::remove_by_filter(engine, &filter, graceful.then_some(ROLLBACK_GRACE));
    let outcome = if graceful {
        let seen = signals.count();
        tokio::select! {
            outcome = removal => outcome,
            () = signals.received(seen + 1) => {
                teardown::remove_by_filter(engine, &filter, None).await
            }
        }
    } else {
        removal.await
    };
    if let Err(error) = outcome {
        crate::output::warning(&format!(
            "could not remove everything the failed start created: {error}\nhint: `envctl ls` \
             shows it; `envctl down ID` removes it"
        ));
    }
}

/// A nonce for one `up` invocation.
fn run_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Whoever started the environment: Jenkins' `BUILD_TAG`, else the user.
pub fn default_owner() -> String {
    ["BUILD_TAG", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into())
}

/// The name of this process's user from `/etc/passwd`, for shells that set no `USER`
/// (cron, `docker exec`, systemd units).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_string())
    })
}
