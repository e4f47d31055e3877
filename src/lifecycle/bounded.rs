//! An engine whose every call ends in bounded time: the engine calls a start makes outside its
//! own deadline race (the claim, the rollback, the diagnosis) go through it, so a hung engine
//! can delay envctl by seconds, not by the client's minutes or a log read's day.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::time::Instant;

use crate::engine::{
    Attached, ContainerDetails, ContainerSpec, ContainerSummary, Engine, EngineError, ExecOutput,
    Filter, ImageDetails, Labels, LogLine, LogOptions, NetworkSpec, NetworkSummary, Result,
    Traffic,
};
use crate::signals::Signals;

/// After an interrupt, how long any one engine call may still take: the user is waiting.
pub const AFTER_INTERRUPT: Duration = Duration::from_secs(5);

/// `engine`, with every call given up with [`EngineError::NoAnswer`] at `deadline`, after
/// `per_call`, or [`AFTER_INTERRUPT`] after the first interrupt, whichever comes first. A stop
/// gets its grace on top of the last two: it answers only once the container stopped.
pub struct Bounded<'a> {
    pub engine: &'a dyn Engine,
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

    fn no_answer(&self, operation: String, waited: Duration) -> EngineError {
        EngineError::NoAnswer {
            endpoint: self.engine.endpoint().to_string(),
            operation,
            waited,
        }
    }
}

const NONE: Duration = Duration::ZERO;

#[async_trait]
impl Engine for Bounded<'_> {
    fn endpoint(&self) -> &str {
        self.engine.endpoint()
    }

    fn reaches_container_ips(&self) -> bool {
        self.engine.reaches_container_ips()
    }

    fn published_host(&self) -> &str {
        self.engine.published_host()
    }

    async fn ping(&self) -> Result<()> {
        self.call(|| "a ping".into(), NONE, self.engine.ping())
            .await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String> {
        let operation = || format!("create network `{}`", spec.name);
        self.call(operation, NONE, self.engine.create_network(spec))
            .await
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        let operation = || format!("remove network `{id}`");
        self.call(operation, NONE, self.engine.remove_network(id))
            .await
    }

    async fn list_networks(&self, label_filters: &[Filter]) -> Result<Vec<NetworkSummary>> {
        let list = self.engine.list_networks(label_filters);
        self.call(|| "list networks".into(), NONE, list).await
    }

    async fn network_containers(&self, id: &str) -> Result<Vec<Attached>> {
        let operation = || format!("inspect network `{id}`");
        self.call(operation, NONE, self.engine.network_containers(id))
            .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let operation = || format!("create container `{}`", spec.name);
        self.call(operation, NONE, self.engine.create_container(spec))
            .await
    }

    async fn create_marker(&self, name: &str, labels: &Labels) -> Result<String> {
        let operation = || format!("create container `{name}`");
        self.call(operation, NONE, self.engine.create_marker(name, labels))
            .await
    }

    async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let operation = || format!("rename container `{id}`");
        self.call(operation, NONE, self.engine.rename_container(id, name))
            .await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let operation = || format!("start container `{id}`");
        self.call(operation, NONE, self.engine.start_container(id))
            .await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let operation = || format!("stop container `{id}`");
        self.call(operation, grace, self.engine.stop_container(id, grace))
            .await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let operation = || format!("remove container `{id}`");
        self.call(operation, NONE, self.engine.remove_container(id))
            .await
    }

    async fn list_containers(&self, label_filters: &[Filter]) -> Result<Vec<ContainerSummary>> {
        let list = self.engine.list_containers(label_filters);
        self.call(|| "list containers".into(), NONE, list).await
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerDetails> {
        let operation = || format!("inspect container `{id}`");
        self.call(operation, NONE, self.engine.inspect_container(id))
            .await
    }

    async fn wait_container(&self, id: &str) -> Result<i64> {
        let operation = || format!("wait for container `{id}`");
        self.call(operation, NONE, self.engine.wait_container(id))
            .await
    }

    /// The lines that arrive before the call is given up, then a [`EngineError::NoAnswer`].
    /// An interrupt is only seen when the read begins: reads are short, or followed within a
    /// race that the interrupt ends anyway.
    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, Result<LogLine>> {
        let start = Instant::now();
        let mut until = [self.deadline, self.per_call.map(|d| start + d)]
            .into_iter()
            .flatten()
            .min();
        if self.signals.count() > 0 {
            let bound = start + AFTER_INTERRUPT;
            until = Some(until.map_or(bound, |until| until.min(bound)));
        }
        let Some(until) = until else {
            return self.engine.logs(id, options);
        };
        let endpoint = self.engine.endpoint().to_string();
        let operation = format!("read the logs of container `{id}`");
        let lines = self.engine.logs(id, options);
        stream::unfold(Some(lines), move |lines| {
            let (endpoint, operation) = (endpoint.clone(), operation.clone());
            async move {
                let mut lines = lines?;
                match tokio::time::timeout_at(until, lines.next()).await {
                    Ok(Some(line)) => Some((line, Some(lines))),
                    Ok(None) => None,
                    Err(_) => {
                        let error = EngineError::NoAnswer {
                            endpoint,
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

    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        let operation = || format!("run `{}` in container `{id}`", command.join(" "));
        self.call(operation, NONE, self.engine.exec(id, command))
            .await
    }

    async fn traffic(&self, id: &str) -> Result<Traffic> {
        let operation = || format!("read the network statistics of container `{id}`");
        self.call(operation, NONE, self.engine.traffic(id)).await
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        let operation = || format!("inspect image `{reference}`");
        self.call(operation, NONE, self.engine.inspect_image(reference))
            .await
    }

    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        let operation = || format!("list the images of `{repository}`");
        self.call(operation, NONE, self.engine.image_tags(repository))
            .await
    }

    async fn pull_image(&self, repository: &str, tag: &str) -> Result<()> {
        let operation = || format!("pull image `{repository}:{tag}`");
        self.call(operation, NONE, self.engine.pull_image(repository, tag))
            .await
    }

    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &str) -> Result<()> {
        let operation = || format!("build image `{tag}`");
        let build = self.engine.build_image(context, dockerfile, tag);
        self.call(operation, NONE, build).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that takes every request and answers none, like a dockerd under SIGSTOP.
    struct Frozen;

    #[async_trait]
    impl Engine for Frozen {
        fn endpoint(&self) -> &str {
            "unix:///frozen.sock"
        }
        fn reaches_container_ips(&self) -> bool {
            true
        }
        fn published_host(&self) -> &str {
            "127.0.0.1"
        }
        async fn ping(&self) -> Result<()> {
            std::future::pending().await
        }
        async fn create_network(&self, _: &NetworkSpec) -> Result<String> {
            std::future::pending().await
        }
        async fn remove_network(&self, _: &str) -> Result<()> {
            std::future::pending().await
        }
        async fn list_networks(&self, _: &[Filter]) -> Result<Vec<NetworkSummary>> {
            std::future::pending().await
        }
        async fn network_containers(&self, _: &str) -> Result<Vec<Attached>> {
            std::future::pending().await
        }
        async fn create_container(&self, _: &ContainerSpec) -> Result<String> {
            std::future::pending().await
        }
        async fn create_marker(&self, _: &str, _: &Labels) -> Result<String> {
            std::future::pending().await
        }
        async fn rename_container(&self, _: &str, _: &str) -> Result<()> {
            std::future::pending().await
        }
        async fn start_container(&self, _: &str) -> Result<()> {
            std::future::pending().await
        }
        async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
            std::future::pending().await
        }
        async fn remove_container(&self, _: &str) -> Result<()> {
            std::future::pending().await
        }
        async fn list_containers(&self, _: &[Filter]) -> Result<Vec<ContainerSummary>> {
            std::future::pending().await
        }
        async fn inspect_container(&self, _: &str) -> Result<ContainerDetails> {
            std::future::pending().await
        }
        async fn wait_container(&self, _: &str) -> Result<i64> {
            std::future::pending().await
        }
        fn logs(&self, _: &str, _: LogOptions) -> BoxStream<'static, Result<LogLine>> {
            stream::pending().boxed()
        }
        async fn exec(&self, _: &str, _: &[String]) -> Result<ExecOutput> {
            std::future::pending().await
        }
        async fn traffic(&self, _: &str) -> Result<Traffic> {
            std::future::pending().await
        }
        async fn inspect_image(&self, _: &str) -> Result<Option<ImageDetails>> {
            std::future::pending().await
        }
        async fn image_tags(&self, _: &str) -> Result<Vec<String>> {
            std::future::pending().await
        }
        async fn pull_image(&self, _: &str, _: &str) -> Result<()> {
            std::future::pending().await
        }
        async fn build_image(&self, _: Vec<u8>, _: &str, _: &str) -> Result<()> {
            std::future::pending().await
        }
    }

    fn waited(error: EngineError) -> Duration {
        match error {
            EngineError::NoAnswer { waited, .. } => waited,
            other => panic!("expected no answer, got {other}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_lines_of_a_log_on_a_hung_engine_give_up_after_five_seconds() {
        let start = Instant::now();
        let lines = crate::lifecycle::last_lines(&Frozen, "app_x", 20).await;
        assert!(lines.is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_to_a_hung_engine_ends_at_the_deadline() {
        let (signals, _sender) = Signals::manual();
        let engine = Bounded {
            engine: &Frozen,
            deadline: Some(Instant::now() + Duration::from_secs(7)),
            per_call: None,
            signals: &signals,
        };
        let error = engine.start_container("c").await.unwrap_err();
        assert_eq!(waited(error), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_interrupt_a_call_ends_within_five_seconds() {
        let (signals, sender) = Signals::manual();
        let engine = Bounded {
            engine: &Frozen,
            deadline: Some(Instant::now() + Duration::from_secs(600)),
            per_call: None,
            signals: &signals,
        };
        let interrupt = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            sender.send_modify(|n| *n += 1);
        };
        let spec = ContainerSpec::default();
        let (result, ()) = tokio::join!(engine.create_container(&spec), interrupt);
        // Not cut by the signal itself: 5 s after it.
        assert_eq!(waited(result.unwrap_err()), Duration::from_secs(8));
        let error = engine.list_containers(&[]).await.unwrap_err();
        assert_eq!(waited(error), AFTER_INTERRUPT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_gets_its_grace_on_top_of_the_bound() {
        let (signals, _sender) = Signals::manual();
        let engine = Bounded {
            engine: &Frozen,
            deadline: None,
            per_call: Some(Duration::from_secs(5)),
            signals: &signals,
        };
        let error = engine
            .stop_container("c", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(waited(error), Duration::from_secs(15));
        let mut lines = engine.logs(
            "c",
            LogOptions {
                follow: false,
                tail: Some(20),
                timestamps: false,
                since: None,
            },
        );
        assert_eq!(
            waited(lines.next().await.unwrap().unwrap_err()),
            Duration::from_secs(5)
        );
        assert!(lines.next().await.is_none());
    }
}
