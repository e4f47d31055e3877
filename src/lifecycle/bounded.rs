//! A backend whose every call ends in bounded time: the calls a start makes outside its own
//! deadline race (the claim, the rollback, the diagnosis) go through it, so a hung engine can
//! delay envctl by seconds, not by the client's minutes or a log read's day.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::time::Instant;

use crate::backend::*;
use crate::signals::Signals;
use crate::spec::ImageRef;

/// After an interrupt, how long any one call may still take: the user is waiting.
pub const AFTER_INTERRUPT: Duration = Duration::from_secs(5);

/// `backend`, with every call given up with [`BackendError::NoAnswer`] at `deadline`, after
/// `per_call`, or [`AFTER_INTERRUPT`] after the first interrupt, whichever comes first. A stop
/// gets its grace on top of the last two: it answers only once the service stopped.
pub struct Bounded<'a> {
    pub backend: &'a dyn Backend,
    pub deadline: Option<Instant>,
    pub per_call: Option<Duration>,
    pub signals: &'a Signals,
}

impl Bounded<'_> {
    /// Resolves when a call started now, which may rightly take `extra` on top, is given up.
    async fn expiry(&self, extra: Duration) {
        let start = Instant::now();
        let until = [self.deadline, self.per_call.map(|d| start + d + extra)]
            .into_iter()
            .flatten()
            .min();
        let by_time = async {
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        let by_interrupt = async {
            self.signals.received(1).await;
            tokio::time::sleep(AFTER_INTERRUPT + extra).await;
        };
        tokio::select! {
            () = by_time => {}
            () = by_interrupt => {}
        }
    }

    async fn call<T>(
        &self,
        operation: impl FnOnce() -> String,
        extra: Duration,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        tokio::select! {
            biased;
            result = call => result,
            () = self.expiry(extra) => Err(self.no_answer(operation(), start.elapsed())),
        }
    }

    fn no_answer(&self, operation: String, waited: Duration) -> BackendError {
        let info = self.backend.info();
        BackendError::NoAnswer {
            backend: info.kind,
            endpoint: info.endpoint.clone(),
            operation,
            waited,
        }
    }
}

const NONE: Duration = Duration::ZERO;

#[async_trait]
impl Backend for Bounded<'_> {
    fn info(&self) -> &BackendInfo {
        self.backend.info()
    }
    fn reach(&self) -> &crate::reach::Reachability {
        self.backend.reach()
    }

    async fn ping(&self) -> Result<()> {
        self.call(|| "a ping".into(), NONE, self.backend.ping())
            .await
    }
    async fn cannot_probe_unpublished(&self) -> Option<String> {
        self.backend.cannot_probe_unpublished().await
    }

    async fn attach(&self, id: &str) -> Result<Joined> {
        let operation = || format!("connect envctl's container to environment {id}");
        self.call(operation, NONE, self.backend.attach(id)).await
    }

    async fn detach(&self, id: &str) -> Result<()> {
        let operation = || format!("disconnect envctl's container from environment {id}");
        self.call(operation, NONE, self.backend.detach(id)).await
    }

    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        let operation = || format!("inspect image `{image}`");
        self.call(operation, NONE, self.backend.resolve_image(image))
            .await
    }

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        let operation = || format!("list the images of `{repository}`");
        self.call(operation, NONE, self.backend.image_tags(repository))
            .await
    }

    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        let operation = || "read the insecure registries".into();
        self.call(operation, NONE, self.backend.insecure_registries())
            .await
    }

    /// Not bounded: a stream of events that rightly stays quiet for long.
    fn changes(&self) -> BoxStream<'static, Result<()>> {
        self.backend.changes()
    }

    async fn fetch_image(
        &self,
        image: &ImageRef,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let operation = || format!("pull image `{image}`");
        let fetch = self.backend.fetch_image(image, on_progress);
        self.call(operation, NONE, fetch).await
    }

    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &ImageRef) -> Result<()> {
        let operation = || format!("build image `{tag}`");
        let build = self.backend.build_image(context, dockerfile, tag);
        self.call(operation, NONE, build).await
    }

    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        let operation = || format!("claim `{}`", metadata.id);
        self.call(operation, NONE, self.backend.claim(metadata))
            .await
    }

    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        let operation = || format!("create the network of `{}`", metadata.id);
        self.call(operation, NONE, self.backend.create_isolation(metadata))
            .await
    }

    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        let operation = || format!("create volume `{}` of `{}`", volume.name, metadata.id);
        self.call(
            operation,
            NONE,
            self.backend.create_volume(metadata, volume),
        )
        .await
    }

    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        let operation = || format!("create service `{}`", spec.service);
        let create = self.backend.create_service(isolation, spec);
        self.call(operation, NONE, create).await
    }

    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        let operation = || format!("start `{}`", service.name);
        self.call(operation, NONE, self.backend.start_service(service))
            .await
    }

    /// Only the deadline bounds a wait for an exit: the engine rightly answers it when the
    /// service ends, and whoever waits (a readiness probe, `start`) has a bound of its own.
    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        let start = Instant::now();
        let waiting = self.backend.wait_exit(service);
        let Some(deadline) = self.deadline else {
            return waiting.await;
        };
        match tokio::time::timeout_at(deadline, waiting).await {
            Ok(result) => result,
            Err(_) => {
                let operation = format!("wait for `{}`", service.name);
                Err(self.no_answer(operation, start.elapsed()))
            }
        }
    }

    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        let operation = || format!("inspect `{}`", service.name);
        self.call(operation, NONE, self.backend.status(service))
            .await
    }

    /// The lines that arrive before the call is given up, then a [`BackendError::NoAnswer`].
    /// The per-call bound is one on the wait for each next line, and a log that is followed
    /// has none: its next line may rightly take long. An interrupt is only seen when the read
    /// begins: reads are short, or followed within a race that the interrupt ends anyway.
    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>> {
        let start = Instant::now();
        let mut until = self.deadline;
        if self.signals.count() > 0 {
            let bound = start + AFTER_INTERRUPT;
            until = Some(until.map_or(bound, |until| until.min(bound)));
        }
        let idle = self.per_call.filter(|_| !options.follow);
        if until.is_none() && idle.is_none() {
            return self.backend.logs(service, options);
        }
        let info = self.backend.info().clone();
        let operation = format!("read the logs of `{}`", service.name);
        let lines = self.backend.logs(service, options);
        stream::unfold(Some(lines), move |lines| {
            let (info, operation) = (info.clone(), operation.clone());
            async move {
                let mut lines = lines?;
                let next = idle.map(|idle| Instant::now() + idle);
                let until = [until, next].into_iter().flatten().min().expect("a bound");
                match tokio::time::timeout_at(until, lines.next()).await {
                    Ok(Some(line)) => Some((line, Some(lines))),
                    Ok(None) => None,
                    Err(_) => {
                        let error = BackendError::NoAnswer {
                            backend: info.kind,
                            endpoint: info.endpoint,
                            operation,
                            waited: Instant::now() - start,
                        };
                        Some((Err(error), None))
                    }
                }
            }
        })
        .boxed()
    }

    async fn exec(&self, service: &ServiceRef, command: &[String]) -> Result<ExecOutput> {
        let operation = || format!("run `{}` in `{}`", command.join(" "), service.name);
        self.call(operation, NONE, self.backend.exec(service, command))
            .await
    }

    async fn memory(&self, service: &ServiceRef) -> Result<Option<u64>> {
        let operation = || format!("read the memory statistics of `{}`", service.name);
        self.call(operation, NONE, self.backend.memory(service))
            .await
    }

    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic> {
        let operation = || format!("read the network statistics of `{}`", service.name);
        self.call(operation, NONE, self.backend.traffic(service))
            .await
    }

    async fn pause_service(&self, service: &ServiceRef) -> Result<()> {
        let operation = || format!("pause `{}`", service.name);
        self.call(operation, NONE, self.backend.pause_service(service))
            .await
    }

    async fn resume_service(&self, service: &ServiceRef) -> Result<()> {
        let operation = || format!("resume `{}`", service.name);
        self.call(operation, NONE, self.backend.resume_service(service))
            .await
    }

    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()> {
        let operation = || format!("stop `{}`", service.name);
        self.call(operation, grace, self.backend.stop_service(service, grace))
            .await
    }

    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()> {
        let operation = || format!("remove `{}`", service.name);
        let extra = grace.unwrap_or_default();
        self.call(
            operation,
            extra,
            self.backend.remove_service(service, grace),
        )
        .await
    }

    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()> {
        let operation = || format!("unmark `{id}`");
        self.call(operation, NONE, self.backend.clear_update_marker(id, run))
            .await
    }

    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        let operation = || format!("unmark `{id}`");
        self.call(operation, NONE, self.backend.clear_create_marker(id, run))
            .await
    }

    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside> {
        let operation = || format!("put `{}` aside", service.name);
        self.call(operation, Duration::ZERO, self.backend.put_aside(service))
            .await
    }

    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<IpAddr>,
    ) -> Result<ServiceRef> {
        let operation = || format!("restore `{}`", aside.name);
        self.call(operation, NONE, self.backend.restore_aside(aside, address))
            .await
    }

    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        self.call(
            || "list environments".into(),
            NONE,
            self.backend.list(selector),
        )
        .await
    }

    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        let operation = || format!("mark `{}`", metadata.id);
        self.call(operation, NONE, self.backend.set_marker(metadata, marker))
            .await
    }

    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        let operation = || format!("unmark `{id}`");
        self.call(operation, NONE, self.backend.clear_marker(id, kind))
            .await
    }

    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        let operation = || format!("remove network `{}`", isolation.name);
        self.call(operation, NONE, self.backend.remove_isolation(isolation))
            .await
    }

    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        let operation = || format!("remove volume `{}`", volume.native);
        self.call(operation, NONE, self.backend.remove_volume(volume))
            .await
    }

    async fn release(&self, id: &str) -> Result<()> {
        let operation = || format!("release `{id}`");
        self.call(operation, NONE, self.backend.release(id)).await
    }
    async fn admission(&self) -> Result<Admission> {
        let operation = || "read the engine's capacity".to_string();
        self.call(operation, NONE, self.backend.admission()).await
    }
    async fn admission_view(&self) -> Result<(Admission, Vec<EnvironmentRecord>)> {
        let operation = || "read the admission queue and what runs".to_string();
        self.call(operation, NONE, self.backend.admission_view())
            .await
    }
    async fn nodes_memory(&self) -> Result<Vec<NodeMemory>> {
        let operation = || "list the swarm's nodes".to_string();
        self.call(operation, NONE, self.backend.nodes_memory())
            .await
    }
    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()> {
        let operation = || "set the engine's capacity".to_string();
        self.call(operation, NONE, self.backend.set_capacity(capacity))
            .await
    }
    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String> {
        let operation = || "join the admission queue".to_string();
        self.call(operation, NONE, self.backend.enqueue(waiter, until))
            .await
    }
    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()> {
        let operation = || "renew a place in the admission queue".to_string();
        let renewing = self.backend.renew_entry(native, waiter, until);
        self.call(operation, NONE, renewing).await
    }
    async fn dequeue(&self, native: &str) -> Result<()> {
        let operation = || "leave the admission queue".to_string();
        self.call(operation, NONE, self.backend.dequeue(native))
            .await
    }
    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String> {
        let operation = || format!("claim the fill of pool `{}`", filler.environment);
        self.call(operation, NONE, self.backend.claim_fill(filler, until))
            .await
    }
    async fn fill_claims(&self) -> Result<Vec<Filling>> {
        let operation = || "list the pools' fill claims".to_string();
        self.call(operation, NONE, self.backend.fill_claims()).await
    }
    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()> {
        let operation = || format!("renew the fill claim of pool `{}`", filler.environment);
        let renewing = self.backend.renew_fill(native, filler, until);
        self.call(operation, NONE, renewing).await
    }
    async fn release_fill(&self, native: &str) -> Result<()> {
        let operation = || "release a pool's fill claim".to_string();
        self.call(operation, NONE, self.backend.release_fill(native))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::{Fake, Fault};

    /// A backend that takes every request and answers none, like a dockerd under SIGSTOP.
    fn frozen() -> Fake {
        let fake = Fake::new();
        for operation in [
            "ping",
            "start_service",
            "list",
            "create_service",
            "stop_service",
            "logs",
        ] {
            for _ in 0..4 {
                fake.fault(operation, "*", Fault::Hang);
            }
        }
        fake
    }

    fn service() -> ServiceRef {
        ServiceRef {
            id: "x".into(),
            service: "app".into(),
            native: "c".into(),
            name: "app_x".into(),
        }
    }

    fn waited(error: BackendError) -> Duration {
        match error {
            BackendError::NoAnswer { waited, .. } => waited,
            other => panic!("expected no answer, got {other}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_lines_of_a_log_on_a_hung_engine_give_up_after_five_seconds() {
        let start = Instant::now();
        let lines = crate::lifecycle::last_service_lines(&frozen(), &service(), 20).await;
        assert!(lines.is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_to_a_hung_engine_ends_at_the_deadline() {
        let (signals, _sender) = Signals::manual();
        let frozen = frozen();
        let backend = Bounded {
            backend: &frozen,
            deadline: Some(Instant::now() + Duration::from_secs(7)),
            per_call: None,
            signals: &signals,
        };
        let error = backend.start_service(&service()).await.unwrap_err();
        assert_eq!(waited(error), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_interrupt_a_call_ends_within_five_seconds() {
        let (signals, sender) = Signals::manual();
        let frozen = frozen();
        let backend = Bounded {
            backend: &frozen,
            deadline: Some(Instant::now() + Duration::from_secs(600)),
            per_call: None,
            signals: &signals,
        };
        let interrupt = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            sender.send_modify(|n| *n += 1);
        };
        let isolation = IsolationRef {
            name: "n".into(),
            native: "n".into(),
        };
        let spec = ServiceSpec {
            service: "app".into(),
            image: ResolvedImage {
                reference: ImageRef {
                    repository: "app".into(),
                    tag: "1".into(),
                },
                digest: None,
                healthcheck: None,
            },
            command: None,
            env: Vec::new(),
            runtime: Default::default(),
            aliases: Vec::new(),
            address: None,
            depends_on: Default::default(),
            ready: crate::spec::Ready {
                probes: Vec::new(),
                timeout: Duration::from_secs(1),
            },
            reference: None,
            metadata: Metadata::new("x"),
        };
        let (result, ()) = tokio::join!(backend.create_service(&isolation, &spec), interrupt);
        // Not cut by the signal itself: 5 s after it.
        assert_eq!(waited(result.unwrap_err()), Duration::from_secs(8));
        let error = backend.list(&Selector::All).await.unwrap_err();
        assert_eq!(waited(error), AFTER_INTERRUPT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_an_exit_or_a_followed_log_outlasts_the_per_call_bound() {
        let (signals, _sender) = Signals::manual();
        let fake = frozen();
        fake.fault("wait_exit", "*", Fault::Hang);
        let backend = Bounded {
            backend: &fake,
            deadline: None,
            per_call: Some(Duration::from_secs(5)),
            signals: &signals,
        };
        let minute = Duration::from_secs(60);
        let waiting = tokio::time::timeout(minute, backend.wait_exit(&service())).await;
        assert!(
            waiting.is_err(),
            "a wait for an exit was given up: {waiting:?}"
        );
        let options = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let mut lines = backend.logs(&service(), options);
        let next = tokio::time::timeout(minute, lines.next()).await;
        assert!(next.is_err(), "a followed log was given up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_gets_its_grace_on_top_of_the_bound() {
        let (signals, _sender) = Signals::manual();
        let frozen = frozen();
        let backend = Bounded {
            backend: &frozen,
            deadline: None,
            per_call: Some(Duration::from_secs(5)),
            signals: &signals,
        };
        let error = backend
            .stop_service(&service(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(waited(error), Duration::from_secs(15));
        let mut lines = backend.logs(
            &service(),
            LogOptions {
                tail: Some(20),
                ..LogOptions::default()
            },
        );
        assert_eq!(
            waited(lines.next().await.unwrap().unwrap_err()),
            Duration::from_secs(5)
        );
        assert!(lines.next().await.is_none());
    }
}
