//! `envctl gateway`: one HTTP front door for every environment.
//!
//! - [`routing`] maps a host name to an environment (`ID.DOMAIN`, `REF.ENVIRONMENT.DOMAIN`);
//! - [`proxy`] forwards requests with hyper: streamed bodies, upgrades (WebSocket), pooled
//!   keep-alive connections, hop-by-hop headers dropped and `X-Forwarded-*` set;
//! - [`activity`] keeps exact activity and the error-rate guard in memory, flushed to the
//!   reaper's state every few seconds;
//! - [`wake`] starts a stopped environment once for however many requests ask;
//! - [`page`] is the list of environments with its actions, [`metrics`] the Prometheus text;
//! - [`environments`] is the small trait through which all of it reaches the lifecycle, so the
//!   logic is unit-tested on a fake; [`lifecycle`] implements it on a real engine.

pub mod activity;
pub mod create;
pub mod environments;
#[cfg(test)]
mod fake;
pub mod lifecycle;
pub mod metrics;
pub mod page;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod session;
pub mod throttle;
pub mod wake;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use activity::{Activity, Guard};
use environments::{Environments, RoutedEnvironment};
use metrics::{Metrics, Outcome};
use session::Sessions;
use throttle::Throttle;
use wake::Wakes;

/// How often the gateway lists environments even when the engine reports no change.
pub const LIST_EVERY: Duration = Duration::from_secs(5);

/// What `envctl gateway` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Environments are `ID.DOMAIN`; the page is `DOMAIN` itself.
    pub domain: String,
    /// How long a request that is not for a web page waits for a waking environment.
    pub wake_timeout: Duration,
    /// The error-rate guard; `None` when off.
    pub guard: Option<Guard>,
    /// The token actions need (required on a non-loopback address).
    pub token: Option<String>,
    /// The largest request body proxied, in bytes.
    pub max_body: u64,
    /// How long an environment may take to begin its answer.
    pub request_timeout: Duration,
    /// Create on first request (`--create`); `None` when off.
    pub create: Option<create::Settings>,
}

impl Options {
    /// The base URL of an environment, as the page links it.
    pub fn url_of(&self, id: &str) -> String {
        self.url_at(&routing::host_of(id, &self.domain))
    }

    /// The URL of `host` on the gateway's port.
    pub fn url_at(&self, host: &str) -> String {
        match self.listen.port() {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        }
    }
}

/// Everything the handlers share.
pub struct Gateway {
    pub options: Options,
    environments: Arc<dyn Environments>,
    /// The environments as last listed, with the number of the listing that found them.
    snapshot: RwLock<(u64, Arc<Vec<RoutedEnvironment>>)>,
    /// Listings begun so far: a listing that ends after a later one found less recent news.
    listings: AtomicU64,
    /// Why the last list failed, if it did; shown on the page.
    list_error: Mutex<Option<String>>,
    pub activity: Activity,
    pub wakes: Wakes,
    pub metrics: Metrics,
    pub client: proxy::Client,
    /// The per-process secret every form carries.
    pub csrf: String,
    /// The sign-in cookies this process issued.
    pub sessions: Sessions,
    /// Wrong tokens, per client address.
    pub throttle: Throttle,
    /// Creations on request: their progress, failures and clients.
    pub creations: create::Creations,
}

/// How a wake ended for one waiting request.
#[derive(Debug, Clone, PartialEq)]
pub enum Awake {
    Ready(Box<RoutedEnvironment>),
    Failed(String),
    TimedOut,
}

impl Gateway {
    pub fn new(options: Options, environments: Arc<dyn Environments>) -> Arc<Gateway> {
        Arc::new(Gateway {
            activity: Activity::new(options.guard),
            options,
            environments,
            snapshot: RwLock::default(),
            listings: AtomicU64::new(0),
            list_error: Mutex::default(),
            wakes: Wakes::default(),
            metrics: Metrics::default(),
            client: proxy::client(),
            csrf: random_hex(16),
            sessions: Sessions::default(),
            throttle: Throttle::default(),
            creations: create::Creations::default(),
        })
    }

    pub fn environments(&self) -> &Arc<dyn Environments> {
        &self.environments
    }

    /// The environments as last listed.
    pub fn snapshot(&self) -> Arc<Vec<RoutedEnvironment>> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    pub fn find(&self, id: &str) -> Option<RoutedEnvironment> {
        self.snapshot().iter().find(|e| e.id == id).cloned()
    }

    pub fn list_error(&self) -> Option<String> {
        self.list_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lists the environments again. One that runs now and did not before was started: its
    /// error window starts afresh.
    pub async fn refresh(&self) -> Arc<Vec<RoutedEnvironment>> {
        let listing = self.listings.fetch_add(1, Ordering::Relaxed) + 1;
        match self.environments.list().await {
            Ok(listed) => {
                let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
                if snapshot.0 > listing {
                    // A listing begun later ended first: it has the more recent news.
                    return snapshot.1.clone();
                }
                let was_running: BTreeSet<&str> = snapshot
                    .1
                    .iter()
                    .filter(|e| e.running())
                    .map(|e| e.id.as_str())
                    .collect();
                for started in listed
                    .iter()
                    .filter(|e| e.running() && !was_running.contains(e.id.as_str()))
                {
                    self.activity.reset(&started.id);
                }
                let listed = Arc::new(listed);
                *snapshot = (listing, listed.clone());
                *self.list_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                listed
            }
            Err(error) => {
                tracing::warn!("cannot list the environments: {error}");
                *self.list_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                self.snapshot()
            }
        }
    }

    /// Keeps the list current: at each change the engine reports, and every [`LIST_EVERY`].
    pub async fn watch(self: Arc<Self>) {
        loop {
            let mut changes = self.environments.changes();
            loop {
                tokio::select! {
                    change = changes.next() => {
                        if change.is_none() {
                            break;
                        }
                        // A `down` or `up` is a burst of events: list once it settles.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        while let Some(Some(())) = changes.next().now_or_never() {}
                    }
                    () = tokio::time::sleep(LIST_EVERY) => {}
                }
                self.refresh().await;
            }
            // The engine stopped reporting: poll until it reports again.
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.refresh().await;
        }
    }

    /// Writes activity and flags to the reaper's state every [`activity::FLUSH_EVERY`].
    pub async fn flush_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(activity::FLUSH_EVERY).await;
            self.flush().await;
        }
    }

    /// Writes what changed since the last flush; keeps it for the next one if that fails.
    pub async fn flush(&self) {
        let flush = self.activity.take(Utc::now(), Instant::now());
        if flush.is_empty() {
            return;
        }
        if let Err(error) = self.environments.flush(flush.clone()).await {
            tracing::warn!("cannot record the gateway's activity: {error}");
            self.activity.restore(flush);
        }
    }

    /// Counts a request for `id` that took `took`: what the environment answered counts for
    /// it (a 5xx against it, in the metrics and the error-rate window); what the gateway
    /// refused itself is counted on its own and is no activity.
    pub fn record(&self, id: &str, outcome: Outcome, took: Duration) {
        match outcome {
            Outcome::Answered(status) => {
                self.metrics.request(id, status, took);
                self.activity
                    .request(id, Utc::now(), Instant::now(), status);
            }
            Outcome::Rejected(why) => self.metrics.rejected(why),
        }
    }

    /// Starts `id` unless a start is under way, and waits for it up to `limit`.
    pub async fn wake(self: &Arc<Self>, id: &str, limit: Duration) -> Awake {
        let mut done = self.start_once(id, "a request through `envctl gateway`");
        let waited = tokio::time::timeout(limit, done.wait_for(Option::is_some)).await;
        let result = match waited {
            Err(_) => return Awake::TimedOut,
            Ok(Err(_)) => return Awake::Failed("the start was abandoned".into()),
            Ok(Ok(result)) => result.clone(),
        };
        match result {
            Some(Ok(())) => match self.find(id) {
                Some(environment) if environment.running() => Awake::Ready(Box::new(environment)),
                Some(_) => Awake::Failed("it started, then stopped again".into()),
                None => Awake::Failed("it was removed meanwhile".into()),
            },
            Some(Err(error)) => Awake::Failed(error),
            None => Awake::TimedOut,
        }
    }

    /// Starts `id` in the background, once for however many callers; the receiver turns
    /// `Some` when the start ended and the list shows its new ports.
    pub fn start_once(self: &Arc<Self>, id: &str, why: &str) -> wake::Done {
        let gateway = self.clone();
        let (owned_id, why) = (id.to_string(), why.to_string());
        self.wakes.wake(id, async move {
            gateway.metrics.wake(&owned_id);
            gateway.activity.touched(&owned_id, Utc::now());
            let started = gateway.environments.start(&owned_id, &why).await;
            gateway.activity.reset(&owned_id);
            gateway.refresh().await;
            started
        })
    }
}

/// `n` random bytes from the kernel, as hex: secrets for forms.
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom: the address of a heap value and the clock still differ per process.
        let seed = format!("{:p}{:?}", &bytes, std::time::SystemTime::now());
        bytes = seed.into_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::fake::Fake;
    use crate::gateway::routing::tests::environment;
    use crate::gateway::server::{Next, next, wait_for_start};
    use crate::lifecycle::State;
    use hyper::StatusCode;

    fn options(guard: Option<Guard>) -> Options {
        Options {
            listen: ([127, 0, 0, 1], 8000).into(),
            domain: "localhost".into(),
            wake_timeout: Duration::from_secs(60),
            guard,
            token: None,
            max_body: 1 << 20,
            request_timeout: Duration::from_secs(60),
            create: None,
        }
    }

    fn stopped(id: &str) -> RoutedEnvironment {
        let mut e = environment(id, "demo", &[], 1);
        e.state = State::Stopped;
        if let Ok(entry) = &mut e.entry {
            entry.address = None;
        }
        e
    }

    async fn gateway_with(
        environments: Vec<RoutedEnvironment>,
        start_takes: Duration,
    ) -> (Arc<Gateway>, Arc<Fake>) {
        let fake = Arc::new(Fake::new(environments));
        *fake.start_takes.lock().unwrap() = start_takes;
        let gateway = Gateway::new(options(None), fake.clone());
        gateway.refresh().await;
        (gateway, fake)
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_during_one_wake_start_it_once_and_all_get_it_ready() {
        let (gateway, fake) = gateway_with(vec![stopped("x")], Duration::from_secs(5)).await;
        let began = Instant::now();
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { gateway.wake("x", Duration::from_secs(60)).await })
            })
            .collect();
        for waiter in waiting {
            let awake = waiter.await.unwrap();
            assert!(
                matches!(awake, Awake::Ready(ref e) if e.running()),
                "{awake:?}"
            );
        }
        assert_eq!(fake.calls(), vec!["start x"]);
        assert!(
            began.elapsed() >= Duration::from_secs(5),
            "answered only once ready"
        );
        assert!(matches!(next(&gateway.find("x").unwrap()), Next::Proxy(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_to_a_paused_environment_resume_it_once_and_are_answered() {
        let mut paused = environment("x", "demo", &[], 1);
        paused.state = State::Paused;
        assert_eq!(next(&paused), Next::Wake);
        let (gateway, fake) = gateway_with(vec![paused], Duration::from_millis(5)).await;
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { gateway.wake("x", Duration::from_secs(60)).await })
            })
            .collect();
        for waiter in waiting {
            let awake = waiter.await.unwrap();
            assert!(matches!(awake, Awake::Ready(_)), "{awake:?}");
        }
        assert_eq!(fake.calls(), vec!["start x"], "one resume for all of them");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_longer_than_the_timeout_answers_timed_out_and_the_start_goes_on() {
        let (gateway, fake) = gateway_with(vec![stopped("x")], Duration::from_secs(90)).await;
        let began = Instant::now();
        assert_eq!(
            gateway.wake("x", Duration::from_secs(60)).await,
            Awake::TimedOut
        );
        assert_eq!(began.elapsed(), Duration::from_secs(60));
        assert!(gateway.wakes.waking("x"));
        // A request arriving later joins the same start.
        let awake = gateway.wake("x", Duration::from_secs(60)).await;
        assert!(matches!(awake, Awake::Ready(_)), "{awake:?}");
        assert_eq!(fake.calls(), vec!["start x"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_listing_that_ends_after_a_newer_one_does_not_replace_it() {
        let (gateway, fake) = gateway_with(vec![stopped("x")], Duration::ZERO).await;
        fake.list_takes
            .lock()
            .unwrap()
            .extend([Duration::from_secs(2), Duration::ZERO]);
        let slow = gateway.refresh();
        let newer = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fake.environments.lock().unwrap()[0].state = State::Ready;
            gateway.refresh().await;
        };
        tokio::join!(slow, newer);
        assert_eq!(gateway.find("x").map(|e| e.state), Some(State::Ready));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_during_an_update_waits_for_the_update_to_end() {
        let mut updating = environment("x", "demo", &[], 1);
        updating.state = State::Updating;
        let (gateway, fake) = gateway_with(vec![updating], Duration::ZERO).await;
        let update_ends = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            fake.environments.lock().unwrap()[0].state = State::Ready;
            gateway.refresh().await;
        };
        let (awake, ()) = tokio::join!(wait_for_start(&gateway, "x"), update_ends);
        assert!(matches!(awake, Awake::Ready(_)), "{awake:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_environment_stopped_again_is_woken_again() {
        let (gateway, fake) = gateway_with(vec![stopped("x")], Duration::from_secs(1)).await;
        assert!(matches!(
            gateway.wake("x", Duration::from_secs(60)).await,
            Awake::Ready(_)
        ));
        fake.stop("x").await.unwrap();
        gateway.refresh().await;
        assert!(matches!(
            gateway.wake("x", Duration::from_secs(60)).await,
            Awake::Ready(_)
        ));
        assert_eq!(fake.calls(), vec!["start x", "stop x", "start x"]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_the_gateway_rejects_never_count_against_the_environment() {
        let guard = Guard {
            max_rate: 0.5,
            window: Duration::from_secs(300),
        };
        let gateway = Gateway::new(options(Some(guard)), Arc::new(Fake::default()));
        let took = Duration::from_millis(1);
        for why in metrics::Rejection::ALL {
            for _ in 0..12 {
                gateway.record("x", Outcome::Rejected(why), took);
            }
        }
        assert_eq!(gateway.activity.flag("x"), None);
        assert!(gateway.activity.take(Utc::now(), Instant::now()).is_empty());
        let text = gateway.metrics.render(&[]);
        assert!(!text.contains("id=\"x\""), "{text}");
        assert!(
            text.lines()
                .any(|l| l == "envctl_gateway_rejected_total{reason=\"body_too_large\"} 12"),
            "{text}"
        );
        for _ in 0..12 {
            gateway.record("x", Outcome::Answered(502), took);
        }
        assert!(gateway.activity.flag("x").is_some(), "its own 502s count");
    }

    #[test]
    fn what_a_request_does_depends_on_the_state() {
        let ready = environment("x", "demo", &[], 1);
        assert!(matches!(next(&ready), Next::Proxy(_)));
        assert_eq!(next(&stopped("x")), Next::Wake);
        let mut erroring = stopped("x");
        erroring.stopped_for_errors = true;
        assert!(
            matches!(next(&erroring), Next::Refuse(StatusCode::SERVICE_UNAVAILABLE, ref why) if why.contains("error rate")),
            "an environment stopped for its error rate is not woken by requests"
        );
        let mut starting = stopped("x");
        starting.state = State::Starting;
        assert_eq!(next(&starting), Next::Wait);
        starting.entry = Err("no published port with an HTTP probe".into());
        assert_eq!(
            next(&starting),
            Next::Wait,
            "a start that has not created its entry service yet"
        );
        let mut no_entry = ready.clone();
        no_entry.entry = Err("no published port with an HTTP probe".into());
        assert!(matches!(
            next(&no_entry),
            Next::Refuse(StatusCode::BAD_GATEWAY, _)
        ));
        let mut unfinished = stopped("x");
        unfinished.state = State::Unfinished;
        assert!(matches!(
            next(&unfinished),
            Next::Refuse(StatusCode::SERVICE_UNAVAILABLE, _)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_reaches_the_state_in_few_writes_with_the_latest_request() {
        let (gateway, fake) =
            gateway_with(vec![environment("x", "demo", &[], 1)], Duration::ZERO).await;
        let flusher = tokio::spawn(gateway.clone().flush_loop());
        let mut last = Utc::now();
        // 100 requests a second for ten seconds.
        for _ in 0..1000 {
            last = Utc::now();
            gateway.activity.request("x", last, Instant::now(), 200);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(activity::FLUSH_EVERY).await;
        flusher.abort();
        let flushes = fake.flushes.lock().unwrap().clone();
        assert!(
            (3..=5).contains(&flushes.len()),
            "one write per {:?} at most, not per request: {}",
            activity::FLUSH_EVERY,
            flushes.len()
        );
        assert_eq!(
            flushes.last().unwrap().activity,
            vec![("x".to_string(), last)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flagged_environment_seen_started_again_loses_its_flag() {
        let guard = Guard {
            max_rate: 0.5,
            window: Duration::from_secs(300),
        };
        let fake = Arc::new(Fake::new(vec![environment("x", "demo", &[], 1)]));
        let gateway = Gateway::new(options(Some(guard)), fake.clone());
        gateway.refresh().await;
        for _ in 0..10 {
            gateway
                .activity
                .request("x", Utc::now(), Instant::now(), 500);
        }
        assert!(gateway.activity.flag("x").is_some());
        gateway.flush().await;
        fake.stop("x").await.unwrap();
        gateway.refresh().await;
        assert!(
            gateway.activity.flag("x").is_some(),
            "stopping keeps the flag"
        );
        fake.start("x", "test").await.unwrap();
        gateway.refresh().await;
        assert_eq!(gateway.activity.flag("x"), None, "a start clears it");
        gateway.flush().await;
        let flushes = fake.flushes.lock().unwrap().clone();
        assert_eq!(flushes.last().unwrap().flags, vec![("x".to_string(), None)]);
    }
}
