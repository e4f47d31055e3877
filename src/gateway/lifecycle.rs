//! [`Environments`] on a real engine, through the lifecycle's own functions: the inventory
//! lists, `start`, `stop`, `pin`, `down`, and the reaper's state store for activity.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::environments::{Entry, Environments, Flush, RoutedEnvironment, ServiceView};
use crate::backend::{Backend, BackendError, Marker, MarkerKind, ServiceState};
use crate::lifecycle::{self, Instance, Progress};
use crate::spec::{Probe, Protocol};
use crate::state::{self, Store};

pub struct Lifecycle {
    backend: Arc<dyn Backend>,
    store: Store,
    /// Bounds a start, as `envctl start --timeout` does.
    start_timeout: Duration,
    /// Where `--create` finds environment files.
    envdir: Option<std::path::PathBuf>,
    tags: super::create::TagCache,
}

impl Lifecycle {
    pub fn new(backend: Arc<dyn Backend>, store: Store, start_timeout: Duration) -> Lifecycle {
        Lifecycle {
            backend,
            store,
            start_timeout,
            envdir: None,
            tags: super::create::TagCache::default(),
        }
    }

    /// Creates environments on request from the files of `envdir`.
    pub fn with_envdir(mut self, envdir: std::path::PathBuf) -> Lifecycle {
        self.envdir = Some(envdir);
        self
    }

    /// The environment file `name` of the directory, if there is one.
    fn file(&self, name: &str) -> Option<crate::spec::Environment> {
        use crate::spec::catalog::{Catalog, Target};
        let dir = self.envdir.clone()?;
        let target = Target {
            environment: Some(name.to_string()),
            overrides: Vec::new(),
        };
        Catalog::Dir(dir).select(&target).ok()
    }

    /// The local tags of `image`'s repository, and its registry's when the repository names
    /// one (never a public registry's whole list).
    async fn tags_of(&self, image: &crate::spec::ImageRef) -> Vec<String> {
        let backend = self.backend.clone();
        let owned = image.clone();
        let fetch = async move {
            let mut tags = backend
                .image_tags(&owned.repository)
                .await
                .map_err(|e| e.to_string())?;
            let host = owned.repository.split('/').next().unwrap_or_default();
            let private = owned.repository.contains('/')
                && (host.contains(['.', ':']) || host == "localhost");
            if private {
                let insecure = backend.insecure_registries().await.unwrap_or_default();
                if let Ok(listed) = lifecycle::refs::registry_tags(&owned, &insecure).await {
                    tags.extend(listed);
                }
            }
            tags.sort();
            tags.dedup();
            Ok(tags)
        };
        self.tags.get(&image.repository, fetch).await
    }

    /// Whether the creation marker of `id` was of a creation that is over (its gateway gone on
    /// this host, or past its deadline) and is taken out now: removed by its run, so that one a
    /// gateway set anew since is never touched.
    async fn take_over_dead_creation(&self, id: &str, now: chrono::DateTime<Utc>) -> bool {
        let instance = match lifecycle::inventory::find(self.backend.as_ref(), id).await {
            Ok(Some(instance)) => instance,
            // Gone meanwhile: claim again.
            Ok(None) => return true,
            Err(error) => {
                tracing::warn!("cannot read the creation marker of `{id}`: {error}");
                return false;
            }
        };
        let Some(holder) = instance.markers.creating.as_ref() else {
            return true;
        };
        if !lifecycle::inventory::creation_over(holder, now) {
            return false;
        }
        let cleared = match holder.run.as_deref() {
            Some(run) => self.backend.clear_create_marker(id, run).await,
            None => self.backend.clear_marker(id, MarkerKind::Create).await,
        };
        match cleared {
            Ok(()) => {
                tracing::info!("took over the creation of `{id}`: its gateway is gone");
                true
            }
            Err(error) => {
                tracing::warn!("cannot remove the creation marker of `{id}`: {error}");
                false
            }
        }
    }

    /// Creates and starts the environment once its creation marker is this gateway's.
    async fn create_claimed(
        &self,
        environment: crate::spec::Environment,
        create: super::environments::Create,
    ) -> Result<(), String> {
        // Another gateway may have finished it between this one's look and its marker.
        let listed = lifecycle::inventory::list(self.backend.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let there = listed.iter().any(|i| {
            i.environment() == create.environment
                && i.metadata
                    .refs
                    .iter()
                    .any(|r| create.tags.get(&r.service) == Some(&r.tag))
        });
        if there {
            return Ok(());
        }
        let options = lifecycle::UpOptions {
            name: Some(create.id.clone()),
            timeout: self.start_timeout,
            keep_on_failure: false,
            owner: create.owner,
            // Recorded as `SERVICE@TAG`, as `up SERVICE@REF` records them: routing finds it so.
            prefix_tags: create.tags.keys().cloned().collect(),
            ttl: Some(create.ttl),
            build: crate::provenance::build_labels(),
            lease: false,
            pull: None,
            files: Some(vec![environment.path.clone()]),
            // A ready matching pool member is adopted (and keeps its id); else the start is
            // cold under `ENV-REF`. The creation marker makes it one across gateways.
            pool: lifecycle::PoolUse::AdoptElseNamed,
            // A person waits for it, as for a wake, and sees where it waits.
            admission: lifecycle::admission::AdmitOptions {
                priority: crate::backend::Priority::High,
                on_wait: create.on_wait.clone(),
                ..Default::default()
            },
        };
        // `up` holds what is not `Send` across its awaits: it runs on a thread of its own, on
        // this runtime.
        let backend = self.backend.clone();
        let runtime = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || {
            let (signals, _kept) = crate::signals::Signals::manual();
            runtime.block_on(lifecycle::up(
                backend.as_ref(),
                &environment,
                &options,
                &create.progress,
                &signals,
                &|_| {},
            ))
        })
        .await
        .map_err(|e| format!("the creation ended abruptly: {e}"))?;
        match outcome.result {
            Ok(_) => Ok(()),
            // Another gateway's creation claimed it first: the caller waits for that one.
            Err(lifecycle::StartError::IdTaken(_)) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn instance(&self, id: &str) -> Result<Instance, String> {
        lifecycle::require(self.backend.as_ref(), id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Changes the state under its file lock, off the async threads.
    async fn update(
        &self,
        change: impl FnOnce(&mut state::State) + Send + 'static,
    ) -> Result<(), String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.update(change))
            .await
            .map_err(|e| e.to_string())?
            .map(|((), _)| ())
            .map_err(|e| e.to_string())
    }

    async fn note(&self, id: &str, what: String) -> Result<(), String> {
        let (endpoint, id) = (self.backend.endpoint().to_string(), id.to_string());
        self.update(move |state| state.note_activity(&endpoint, &id, Utc::now(), &what))
            .await
    }
}

#[async_trait]
impl Environments for Lifecycle {
    async fn list(&self) -> Result<Vec<RoutedEnvironment>, String> {
        let instances = lifecycle::inventory::list(self.backend.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let store = self.store.clone();
        let (state, _) = tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|e| e.to_string())?;
        let endpoint = self.backend.endpoint();
        let now = Utc::now();
        Ok(instances
            .iter()
            .map(|instance| {
                let record = state.record(endpoint, &instance.id);
                view(instance, record, now)
            })
            .collect())
    }

    async fn start(&self, id: &str, why: &str) -> Result<(), String> {
        let instance = self.instance(id).await?;
        let (endpoint, owned_id) = (self.backend.endpoint().to_string(), id.to_string());
        let what = format!("envctl start by {why}");
        // A start by hand is what lets an environment stopped for its error rate wake again.
        self.update(move |state| {
            let record = state.record_mut(&endpoint, &owned_id);
            record.note(Utc::now(), what);
            record.stopped_for_errors = None;
        })
        .await?;
        let progress: Progress = Arc::new(|_, _| {});
        // A wake is a person waiting at a browser: before CI in the queue for capacity.
        let admission = lifecycle::admission::AdmitOptions {
            priority: crate::backend::Priority::High,
            ..Default::default()
        };
        lifecycle::start(
            self.backend.as_ref(),
            &instance,
            &progress,
            self.start_timeout,
            &admission,
        )
        .await
        .map_err(|e| e.to_string())?;
        // Why envctl stopped it is history once it started, as after `envctl start`.
        let (endpoint, owned_id) = (self.backend.endpoint().to_string(), id.to_string());
        let recorded = self
            .update(move |state| state.note_started(&endpoint, &owned_id))
            .await;
        if let Err(error) = recorded {
            tracing::warn!("cannot record that `{id}` was started: {error}");
        }
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), String> {
        let instance = self.instance(id).await?;
        lifecycle::stop(self.backend.as_ref(), &instance)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_pinned(&self, id: &str, pinned: bool) -> Result<(), String> {
        let instance = self.instance(id).await?;
        let backend = self.backend.as_ref();
        if pinned {
            lifecycle::pin(backend, &instance)
                .await
                .map_err(|e| e.to_string())?;
            // A pin made while a reaper pass runs must stop that pass from acting on it.
            self.note(id, "envctl pin on the `envctl gateway` page".into())
                .await
        } else {
            lifecycle::unpin(backend, &instance)
                .await
                .map_err(|e| e.to_string())
        }
    }

    async fn touch(&self, id: &str) -> Result<(), String> {
        self.note(id, "envctl touch on the `envctl gateway` page".into())
            .await
    }

    async fn resolve(
        &self,
        environment: &str,
        reference: &str,
    ) -> Result<Option<super::create::Resolution>, String> {
        let Some(file) = self.file(environment) else {
            return Ok(None);
        };
        let mut tags = std::collections::BTreeMap::new();
        for (name, service) in &file.services {
            tags.insert(name.clone(), self.tags_of(&service.image).await);
        }
        let resolution = match super::create::resolve(&tags, reference) {
            super::create::Resolution::None { closest, .. } => super::create::Resolution::None {
                closest,
                images: awaitable(&file),
            },
            other => other,
        };
        Ok(Some(resolution))
    }

    async fn create(&self, create: super::environments::Create) -> Result<(), String> {
        let Some(mut environment) = self.file(&create.environment) else {
            return Err(format!("no environment file `{}`", create.environment));
        };
        let overrides: Vec<crate::spec::Override> = create
            .tags
            .iter()
            .map(|(service, tag)| crate::spec::Override {
                service: service.clone(),
                reference: tag.clone(),
            })
            .collect();
        environment.apply(&overrides)?;
        // One creation of ENV at REF across gateways: the marker's name is unique on the
        // engine. It bounds the wait in the capacity queue and the start.
        let now = Utc::now();
        let bound = lifecycle::admission::DEFAULT_QUEUE_TIMEOUT + self.start_timeout;
        let marker = crate::naming::codec::Metadata {
            environment: Some(environment.name.clone()),
            owner: Some(create.owner.clone()),
            created_at: Some(now),
            run: Some(lifecycle::run_nonce()),
            start_deadline: Some(now + chrono::Duration::from_std(bound).unwrap_or_default()),
            started_by: Some(crate::provenance::started_by()),
            process: Some(crate::provenance::process()),
            ..crate::naming::codec::Metadata::new(&create.id)
        };
        let mut claimed = self.backend.set_marker(&marker, Marker::Create).await;
        // A holder that is gone (killed, or past its deadline) creates nothing: its marker is
        // taken out, by its run so that a newer one is never touched, and claimed again once.
        if let Err(BackendError::Taken(_)) = claimed
            && self.take_over_dead_creation(&create.id, now).await
        {
            claimed = self.backend.set_marker(&marker, Marker::Create).await;
        }
        match claimed {
            Ok(()) => {}
            // Another gateway creates it: the caller waits for that one.
            Err(BackendError::Taken(_)) => return Ok(()),
            Err(error) => {
                return Err(format!(
                    "cannot claim the creation of `{}`: {error}",
                    create.id
                ));
            }
        }
        let created = self.create_claimed(environment, create.clone()).await;
        // Only its own, by its run: one the reaper took for stale may have been followed by
        // another's.
        let run = marker.run.as_deref().unwrap_or_default();
        let cleared = self.backend.clear_create_marker(&create.id, run).await;
        if let Err(error) = cleared {
            tracing::warn!(
                "cannot remove the creation marker of `{}`: {error}",
                create.id
            );
        }
        created
    }

    async fn down(&self, id: &str) -> Result<(), String> {
        let ids = [id.to_string()];
        lifecycle::down(self.backend.as_ref(), &ids, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn services(&self, id: &str, lines: u64) -> Result<Vec<ServiceView>, String> {
        let instance = self.instance(id).await?;
        let backend = self.backend.as_ref();
        let statuses = lifecycle::statuses(backend, &instance)
            .await
            .map_err(|e| e.to_string())?;
        let logs = instance.services.iter().map(|s| async move {
            match lines {
                0 => Vec::new(),
                n => lifecycle::last_service_lines(backend, &s.handle, n).await,
            }
        });
        let logs = futures_util::future::join_all(logs).await;
        Ok(instance
            .services
            .iter()
            .zip(statuses)
            .zip(logs)
            .map(|((s, status), log)| ServiceView {
                service: s.service().to_string(),
                state: status.state.as_str().to_string(),
                health: status.health.as_str().map(str::to_string),
                restarts: status.restarts,
                ports: status
                    .endpoints
                    .iter()
                    .map(|e| {
                        let port = match e.container_port.protocol {
                            Protocol::Tcp => e.container_port.number.to_string(),
                            other => format!("{}/{}", e.container_port.number, other.as_str()),
                        };
                        format!("{port}->{}:{}", e.host, e.port)
                    })
                    .collect(),
                log,
            })
            .collect())
    }

    fn changes(&self) -> BoxStream<'static, ()> {
        self.backend
            .changes()
            .take_while(|change| std::future::ready(change.is_ok()))
            .map(|_| ())
            .boxed()
    }

    async fn flush(&self, flush: Flush) -> Result<(), String> {
        let endpoint = self.backend.endpoint().to_string();
        self.update(move |state| {
            for (id, at) in flush.activity {
                state.note_activity(&endpoint, &id, at, state::GATEWAY_ACTIVITY);
            }
            for (id, flag) in flush.flags {
                // A record is made for a flag, never for its absence: a record without history
                // would end the reaper's first-sighting grace.
                match flag {
                    Some(flag) => state.record_mut(&endpoint, &id).error_flag = Some(flag),
                    None => {
                        if let Some(record) = state
                            .endpoints
                            .get_mut(&endpoint)
                            .and_then(|records| records.get_mut(&id))
                        {
                            record.error_flag = None;
                        }
                    }
                }
            }
        })
        .await
    }
}

/// The image repositories an image tagged REF may appear in: those in a registry of their own
/// (the file's `registry:`), or every one when none is (local images).
fn awaitable(file: &crate::spec::Environment) -> Vec<String> {
    let repositories: Vec<String> = file
        .services
        .values()
        .map(|s| s.image.repository.clone())
        .collect();
    let private: Vec<String> = repositories
        .iter()
        .filter(|r| {
            let host = r.split('/').next().unwrap_or_default();
            r.contains('/') && (host.contains(['.', ':']) || host == "localhost")
        })
        .cloned()
        .collect();
    match private.is_empty() {
        true => repositories,
        false => private,
    }
}

/// The gateway's view of one instance.
fn view(
    instance: &Instance,
    record: Option<&state::Record>,
    now: chrono::DateTime<Utc>,
) -> RoutedEnvironment {
    let created_at = instance.created_at();
    RoutedEnvironment {
        id: instance.id.clone(),
        environment: instance.environment().to_string(),
        refs: instance
            .metadata
            .refs
            .iter()
            .map(ToString::to_string)
            .collect(),
        owner: instance.owner().unwrap_or_default().to_string(),
        state: instance.state(now),
        created_at,
        pinned: instance.pinned(),
        expires_at: instance.expires_at(),
        entry: entry(instance, |host, port| {
            (host, port).to_socket_addrs().ok()?.next()
        }),
        endpoints: instance
            .services
            .iter()
            .flat_map(|s| {
                s.status.endpoints.iter().map(|e| {
                    format!(
                        "{}:{}->{}:{}",
                        s.service(),
                        e.container_port.number,
                        e.host,
                        e.port
                    )
                })
            })
            .collect(),
        last_activity: created_at.map(|created| state::last_activity(record, created)),
        stopped_for_errors: record.is_some_and(|r| r.stopped_for_errors.is_some()),
    }
}

/// The entry of an environment: its `gateway: SERVICE:PORT`, else the one published TCP port
/// that has an HTTP probe. `address` resolves where a published port is reached.
pub fn entry(
    instance: &Instance,
    address: impl Fn(&str, u16) -> Option<SocketAddr>,
) -> Result<Entry, String> {
    let (service, port) = match &instance.metadata.gateway {
        Some(declared) => (declared.service.clone(), declared.port),
        None => {
            let candidates: Vec<(String, u16)> = instance
                .services
                .iter()
                .flat_map(|c| {
                    let published: Vec<u16> = c
                        .metadata
                        .ports
                        .iter()
                        .filter(|p| p.protocol == Protocol::Tcp)
                        .map(|p| p.number)
                        .collect();
                    let probes = c
                        .metadata
                        .ready
                        .clone()
                        .map(|r| r.probes)
                        .unwrap_or_default();
                    probes
                        .into_iter()
                        .filter_map(|probe| match probe {
                            Probe::Http { port, .. } => Some(port),
                            _ => None,
                        })
                        .filter(|port| published.contains(port))
                        .map(|port| (c.service().to_string(), port))
                        .collect::<Vec<_>>()
                })
                .collect();
            match candidates.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(
                        "no `gateway: SERVICE:PORT` in its file and no published port with an \
                         HTTP probe"
                            .into(),
                    );
                }
                several => {
                    let names: Vec<String> =
                        several.iter().map(|(s, p)| format!("{s}:{p}")).collect();
                    return Err(format!(
                        "no `gateway: SERVICE:PORT` in its file and {} published ports with an \
                         HTTP probe ({})",
                        several.len(),
                        names.join(", ")
                    ));
                }
            }
        }
    };
    let Some(container) = instance.services.iter().find(|c| c.service() == service) else {
        return Err(format!("its entry service `{service}` is missing"));
    };
    let address = match container.status.state {
        ServiceState::Running => container
            .status
            .endpoints
            .iter()
            .filter(|e| {
                e.container_port.number == port && e.container_port.protocol == Protocol::Tcp
            })
            .find_map(|e| address(&e.host, e.port)),
        _ => None,
    };
    Ok(Entry {
        service,
        port,
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Markers, ServiceEndpoint, ServiceRecord, ServiceRef, ServiceStatus};
    use crate::naming::codec::{Metadata, ServiceMetadata};
    use crate::spec::{GatewayEntry, Port, Ready};

    /// A running service publishing `port` at 127.0.0.1:40000+`port`, maybe with an HTTP probe.
    fn service(name: &str, port: u16, http: bool) -> ServiceRecord {
        let probes = match http {
            true => vec![Probe::Http {
                port,
                path: "/health".into(),
            }],
            false => vec![],
        };
        let published = Port {
            number: port,
            protocol: Protocol::Tcp,
        };
        let mut status = ServiceStatus::new(ServiceState::Running);
        status.endpoints = vec![ServiceEndpoint {
            container_port: published,
            host: "127.0.0.1".into(),
            port: 40000 + port,
            bound: "0.0.0.0".into(),
        }];
        ServiceRecord {
            handle: ServiceRef {
                id: "x".into(),
                service: name.into(),
                native: format!("{name}-id"),
                name: format!("{name}_x"),
            },
            metadata: ServiceMetadata {
                service: name.into(),
                image: None,
                depends_on: Default::default(),
                ports: vec![published],
                reference: None,
                aliases: Vec::new(),
                address: None,
                settings: Default::default(),
                ready: Some(Ready {
                    probes,
                    timeout: Duration::from_secs(60),
                }),
            },
            status,
        }
    }

    fn entry_of(gateway: Option<&str>, services: &[(&str, u16, bool)]) -> Result<Entry, String> {
        let mut metadata = Metadata::new("x");
        metadata.gateway = gateway.and_then(GatewayEntry::parse);
        let instance = Instance {
            id: "x".into(),
            metadata,
            markers: Markers::default(),
            services: services
                .iter()
                .map(|(name, port, http)| service(name, *port, *http))
                .collect(),
            aside: vec![],
            isolation: vec![],
            volumes: vec![],
        };
        entry(&instance, |host, port| {
            format!("{host}:{port}").parse().ok()
        })
    }
    #[test]
    fn the_declared_entry_wins_over_http_probes() {
        let entry = entry_of(Some("db:1521"), &[("web", 8080, true), ("db", 1521, false)]);
        assert_eq!(
            entry,
            Ok(Entry {
                service: "db".into(),
                port: 1521,
                address: Some(([127, 0, 0, 1], 41521).into()),
            })
        );
    }

    #[test]
    fn without_a_declared_entry_the_one_published_port_with_an_http_probe_is_it() {
        let entry = entry_of(None, &[("web", 8080, true), ("db", 1521, false)]).unwrap();
        assert_eq!((entry.service.as_str(), entry.port), ("web", 8080));
    }

    #[test]
    fn none_or_several_candidates_say_why_there_is_no_link() {
        let none = entry_of(None, &[("db", 1521, false)]).unwrap_err();
        assert_eq!(
            none,
            "no `gateway: SERVICE:PORT` in its file and no published port with an HTTP probe"
        );
        let several = entry_of(None, &[("a", 80, true), ("b", 81, true)]).unwrap_err();
        assert_eq!(
            several,
            "no `gateway: SERVICE:PORT` in its file and 2 published ports with an HTTP probe \
             (a:80, b:81)"
        );
    }

    /// A gateway on `fake`, creating from a directory holding `shop.yaml` (one service).
    fn creating_gateway(fake: &crate::backend::fake::Fake, dir: &std::path::Path) -> Lifecycle {
        std::fs::write(
            dir.join("shop.yaml"),
            "name: shop\nservices:\n  db:\n    image: shop/db\n    tag: '1'\n",
        )
        .unwrap();
        fake.add_image(crate::backend::ResolvedImage {
            reference: crate::spec::ImageRef {
                repository: "shop/db".into(),
                tag: "1".into(),
            },
            digest: Some("sha256:d1".into()),
            healthcheck: None,
        });
        let store = Store::new(dir.join("state"));
        Lifecycle::new(Arc::new(fake.clone()), store, Duration::from_secs(60))
            .with_envdir(dir.to_path_buf())
    }

    fn creation(id: &str) -> super::super::environments::Create {
        super::super::environments::Create {
            environment: "shop".into(),
            tags: Default::default(),
            id: id.into(),
            owner: "gateway:127.0.0.1".into(),
            ttl: Duration::from_secs(3600),
            progress: Arc::new(|_, _| {}),
            on_wait: None,
        }
    }

    /// The creation marker of a gateway on another host, with its deadline `deadline`.
    fn marker_of(id: &str, run: &str, deadline: chrono::DateTime<Utc>) -> Metadata {
        Metadata {
            environment: Some("shop".into()),
            run: Some(run.into()),
            start_deadline: Some(deadline),
            process: Some("another-boot:1:42:42".into()),
            ..Metadata::new(id)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_creation_whose_holder_is_dead_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fake = crate::backend::fake::Fake::new();
        let gateway = creating_gateway(&fake, dir.path());
        let id = "shop-main";
        // Its gateway was killed: its deadline passed more than a minute ago.
        let dead = marker_of(id, "killed", Utc::now() - chrono::Duration::minutes(2));
        fake.set_marker(&dead, Marker::Create).await.unwrap();
        let created = tokio::time::timeout(Duration::from_secs(30), gateway.create(creation(id)))
            .await
            .expect("no wait for a reaper pass");
        assert_eq!(created, Ok(()));
        let found = lifecycle::inventory::find(&fake, id).await.unwrap();
        let found = found.expect("created without a reaper pass");
        assert!(found.markers.ready, "{found:?}");
        assert!(found.markers.creating.is_none(), "its own marker removed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_creation_whose_holder_is_alive_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let fake = crate::backend::fake::Fake::new();
        let gateway = creating_gateway(&fake, dir.path());
        let id = "shop-main";
        let live = marker_of(id, "live", Utc::now() + chrono::Duration::minutes(10));
        fake.set_marker(&live, Marker::Create).await.unwrap();
        assert_eq!(gateway.create(creation(id)).await, Ok(()));
        let found = lifecycle::inventory::find(&fake, id)
            .await
            .unwrap()
            .unwrap();
        let run = found.markers.creating.and_then(|m| m.run);
        assert_eq!(run.as_deref(), Some("live"), "left to its holder");
        assert!(found.services.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_by_the_gateway_forgets_why_envctl_stopped_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let fake = crate::backend::fake::Fake::new();
        let gateway = creating_gateway(&fake, dir.path());
        let id = "shop-main";
        assert_eq!(gateway.create(creation(id)).await, Ok(()));
        let instance = lifecycle::inventory::find(&fake, id)
            .await
            .unwrap()
            .unwrap();
        lifecycle::stop(&fake, &instance).await.unwrap();
        let store = Store::new(dir.path().join("state"));
        let endpoint = fake.info().endpoint.clone();
        let why = |store: &Store| {
            let (state, _) = store.read();
            state.record(&endpoint, id).and_then(|r| r.stopped.clone())
        };
        store
            .update(|state| state.note_stop(&endpoint, id, Utc::now(), "by the reaper: idle"))
            .unwrap();
        assert!(why(&store).is_some());
        assert_eq!(gateway.start(id, "a request").await, Ok(()));
        assert_eq!(why(&store), None, "history once it started");
    }
}
