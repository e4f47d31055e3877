//! Create on first request (`envctl gateway --create`): a request for `REF.ENV.DOMAIN` that no
//! environment answers creates one of ENV at REF, once for however many requests ask, while
//! browsers watch a progress page that reloads itself and other clients wait.
//!
//! What REF means is decided as `envctl up SERVICE@REF` decides it, service by service (see
//! [`resolve`]); the tag lists it reads are cached per repository for a minute, misses
//! included, so a flood of requests for unknown refs costs one look-up per repository a minute.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::time::Instant;

use super::environments::Create;
use super::{Gateway, page, routing};

use crate::lifecycle::Phase;
use crate::lifecycle::admission::Waiting;
use crate::lifecycle::refs::{Pick, closest, pick};

/// The shortest REF that creates: shorter ones are too likely to name several changesets.
pub const MIN_REF: usize = 7;
/// How long a tag list, or its absence, is reused.
pub const TAGS_FOR: Duration = Duration::from_secs(60);
/// How long a failed creation is remembered (and shown) before a request tries again.
pub const FAILED_FOR: Duration = Duration::from_secs(600);
/// How long a creation asked for through the form waits for an image tagged REF to appear
/// (a CI build still pushing it).
pub const IMAGE_WAIT: Duration = Duration::from_secs(30 * 60);
/// How often it looks again meanwhile (tag lists are cached for [`TAGS_FOR`] besides).
pub const IMAGE_POLL: Duration = Duration::from_secs(15);

/// What REF means for an environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The full tag each matching service runs at, by service.
    Apply(BTreeMap<String, String>),
    /// No service has a tag starting with REF; the closest tags there are, and the image
    /// repositories looked in (filled by the caller that knows them).
    None {
        closest: Vec<String>,
        images: Vec<String>,
    },
    /// A service has several tags starting with REF.
    Ambiguous {
        service: String,
        candidates: Vec<String>,
    },
}

/// Decides what REF means from each service's tags (`None`: a service whose tags cannot be
/// asked for, such as a public registry's): REF applies to every service with a tag starting
/// with it, as several `SERVICE@REF` would.
pub fn resolve(tags: &BTreeMap<String, Vec<String>>, reference: &str) -> Resolution {
    let mut applied = BTreeMap::new();
    for (service, tags) in tags {
        match pick(tags, reference) {
            Pick::One(tag) => {
                applied.insert(service.clone(), tag);
            }
            Pick::Several(candidates) => {
                return Resolution::Ambiguous {
                    service: service.clone(),
                    candidates,
                };
            }
            Pick::None => {}
        }
    }
    if applied.is_empty() {
        let every: Vec<String> = tags.values().flatten().cloned().collect();
        return Resolution::None {
            closest: closest(&every, reference),
            images: Vec::new(),
        };
    }
    Resolution::Apply(applied)
}

/// Tag lists by repository, for [`TAGS_FOR`], misses and failures included. Requests that
/// ask for a repository at once share one look-up: the later ones wait for the first's.
#[derive(Default)]
pub struct TagCache {
    lists: Mutex<HashMap<String, Arc<Cached>>>,
}

/// One repository's list and when it was looked up, locked while it is being looked up.
type Cached = tokio::sync::Mutex<Option<(Instant, Vec<String>)>>;

impl TagCache {
    /// The cached list of `repository`, or `fetch`'s (an empty list when it fails).
    pub async fn get<F>(&self, repository: &str, fetch: F) -> Vec<String>
    where
        F: Future<Output = Result<Vec<String>, String>>,
    {
        let entry = {
            let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
            lists.entry(repository.to_string()).or_default().clone()
        };
        // Held across the look-up: whoever asks meanwhile gets its answer.
        let mut cached = entry.lock().await;
        if let Some((at, tags)) = cached.as_ref()
            && at.elapsed() < TAGS_FOR
        {
            return tags.clone();
        }
        let tags = fetch.await.unwrap_or_else(|error| {
            tracing::debug!("no tags of `{repository}`: {error}");
            Vec::new()
        });
        *cached = Some((Instant::now(), tags.clone()));
        tags
    }
}

/// One creation's progress, as the progress page shows it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Each service's phase and since when.
    pub services: BTreeMap<String, (Phase, Instant)>,
    pub began: Option<Instant>,
    /// Where it waits in the capacity queue, as it last looked; `None` once admitted.
    pub waiting: Option<Waiting>,
    /// The images (`IMAGE:REF`) it waits for to appear in the registry, before anything else.
    pub awaiting: Vec<String>,
    /// The closest tags there are meanwhile (a typo in the form shows so).
    pub closest: Vec<String>,
}

/// The creations of this gateway: their progress, the failures remembered, the clients' counts.
#[derive(Default)]
pub struct Creations {
    progress: Mutex<HashMap<String, Progress>>,
    failed: Mutex<HashMap<String, (Instant, String)>>,
    clients: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// The key of a creation: `ENV@REF`.
pub fn key(environment: &str, reference: &str) -> String {
    format!("{environment}@{reference}")
}

impl Creations {
    /// Notes that `service` of creation `key` is now in `phase`.
    pub fn phase(&self, key: &str, service: &str, phase: Phase) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let entry = progress.entry(key.to_string()).or_default();
        entry.began.get_or_insert_with(Instant::now);
        // A new phase restarts the service's clock.
        let now = Instant::now();
        let current = entry
            .services
            .entry(service.to_string())
            .or_insert((phase, now));
        if current.0 != phase {
            *current = (phase, now);
        }
        // A service past waiting was admitted: the queue is behind it.
        if phase != Phase::Waiting {
            entry.waiting = None;
        }
    }

    /// Notes the images creation `key` waits for to appear (none: no longer).
    pub fn awaiting(&self, key: &str, images: Vec<String>, closest: Vec<String>) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let entry = progress.entry(key.to_string()).or_default();
        entry.began.get_or_insert_with(Instant::now);
        entry.awaiting = images;
        entry.closest = closest;
    }

    /// Notes where creation `key` waits in the capacity queue.
    pub fn waiting(&self, key: &str, waiting: &Waiting) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let entry = progress.entry(key.to_string()).or_default();
        entry.began.get_or_insert_with(Instant::now);
        entry.waiting = Some(waiting.clone());
    }

    pub fn progress(&self, key: &str) -> Progress {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.get(key).cloned().unwrap_or_default()
    }

    /// Remembers a failure for [`FAILED_FOR`]; forgets the progress.
    pub fn failed(&self, key: &str, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert(key.to_string(), (Instant::now(), why));
        self.forget(key);
    }

    pub fn forget(&self, key: &str) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.remove(key);
    }

    /// The failure of `key` still remembered, if any.
    pub fn failure(&self, key: &str) -> Option<String> {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, (at, _)| at.elapsed() < FAILED_FOR);
        failed.get(key).map(|(_, why)| why.clone())
    }

    /// Forgets the failure of `key`, for a retry asked for.
    pub fn retry(&self, key: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.remove(key);
    }

    /// Counts a creation by `client`; `false` when it made `limit` in the last hour already.
    pub fn allow(&self, client: IpAddr, limit: usize) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let made = clients.entry(client).or_default();
        while made
            .front()
            .is_some_and(|at| at.elapsed() >= Duration::from_secs(3600))
        {
            made.pop_front();
        }
        if made.len() >= limit {
            return false;
        }
        made.push_back(Instant::now());
        true
    }
}

/// What `--create` was asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `--ttl` of the environments it creates.
    pub ttl: Duration,
    /// Creations a client may ask for in an hour.
    pub per_client_hour: usize,
}

/// Answers a request for a host no environment answers: creates the environment it names when
/// `--create` is on and the host and REF say which, else the 404 page.
pub async fn answer(
    gateway: &Arc<Gateway>,
    host: &str,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let unknown = || page::unknown_host(gateway, host);
    let Some(settings) = gateway.options.create.clone() else {
        return unknown();
    };
    let Some((reference, environment)) = routing::create_target(host, &gateway.options.domain)
    else {
        return unknown();
    };
    if reference.len() < MIN_REF {
        return unknown();
    }
    if let Some(token) = &gateway.options.token
        && !gateway.options.listen.ip().is_loopback()
        && !bearer(&request, token)
    {
        return page::problem(
            StatusCode::UNAUTHORIZED,
            "a token is needed",
            "creating an environment on request needs the gateway's token beyond this machine: \
             `Authorization: Bearer TOKEN`",
        );
    }
    let key = key(&environment, &reference);
    if request
        .uri()
        .query()
        .is_some_and(|q| q.contains("envctl-retry"))
    {
        gateway.creations.retry(&key);
    }
    if let Some(why) = gateway.creations.failure(&key) {
        return page::creation_failed(&environment, &reference, &why);
    }
    let begun = begin(
        gateway,
        &environment,
        &reference,
        remote,
        settings.ttl,
        false,
    )
    .await;
    if let Err(refused) = begun {
        return refused.unwrap_or_else(unknown);
    }
    let done = start_or_join(gateway, &key);
    if super::server::accepts_html(&request) {
        return page::creating(&environment, &reference, &gateway.creations.progress(&key));
    }
    let mut done = done;
    let limit = gateway.options.wake_timeout;
    let result = match tokio::time::timeout(limit, done.wait_for(Option::is_some)).await {
        Ok(Ok(result)) => result.clone(),
        _ => None,
    };
    match result {
        Some(Ok(())) => match created(gateway, host, limit).await {
            Some(id) => {
                super::server::to_environment(
                    gateway.clone(),
                    id,
                    host.to_string(),
                    remote,
                    request,
                )
                .await
            }
            None => unknown(),
        },
        Some(Err(why)) => page::creation_failed(&environment, &reference, &why),
        None => {
            let mut response = page::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "still creating",
                &format!(
                    "`{environment}` at `{reference}` is still being created after {}",
                    humantime::format_duration(limit)
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

/// Starts creating ENV at REF unless that is under way; `Err` with the answer when it cannot
/// (`None`: no such environment file, or creation is off).
///
/// `wait_for_image`: REF naming no image yet is waited for (bounded by [`IMAGE_WAIT`]) rather
/// than answered 404; only a creation asked for through the form does.
pub async fn begin(
    gateway: &Arc<Gateway>,
    environment: &str,
    reference: &str,
    remote: SocketAddr,
    ttl: Duration,
    wait_for_image: bool,
) -> Result<(), Option<Response<Body>>> {
    let Some(settings) = gateway.options.create.clone() else {
        return Err(None);
    };
    let key = key(environment, reference);
    if gateway.wakes.waking(&key) {
        return Ok(());
    }
    let resolved = gateway.environments().resolve(environment, reference).await;
    let tags = match resolved {
        Ok(None) => return Err(None),
        Err(error) => {
            let page = page::problem(StatusCode::BAD_GATEWAY, "cannot look up REF", &error);
            return Err(Some(page));
        }
        Ok(Some(Resolution::None { images, closest })) if wait_for_image => {
            let awaited = images.iter().map(|i| format!("{i}:{reference}")).collect();
            Tags::Awaited(awaited, closest)
        }
        Ok(Some(Resolution::None { closest, .. })) => {
            return Err(Some(page::no_such_ref(
                environment,
                reference,
                &closest,
                &[],
            )));
        }
        Ok(Some(Resolution::Ambiguous { candidates, .. })) => {
            return Err(Some(page::no_such_ref(
                environment,
                reference,
                &[],
                &candidates,
            )));
        }
        Ok(Some(Resolution::Apply(tags))) => Tags::Known(tags),
    };
    // Another request started it during the look-up.
    if gateway.wakes.waking(&key) {
        return Ok(());
    }
    if !gateway
        .creations
        .allow(remote.ip(), settings.per_client_hour)
    {
        return Err(Some(page::problem(
            StatusCode::TOO_MANY_REQUESTS,
            "too many creations",
            &format!(
                "{} creations an hour per client at most",
                settings.per_client_hour
            ),
        )));
    }
    let settings = Settings { ttl, ..settings };
    start(
        gateway,
        &key,
        environment,
        reference,
        tags,
        remote,
        &settings,
    );
    Ok(())
}

/// The environment `host` names once a creation ended: another gateway's creation (which
/// this one's gave way to) may take a moment to be listed.
async fn created(gateway: &Arc<Gateway>, host: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let listed = gateway.snapshot();
        if let routing::Target::Environment(id) =
            routing::resolve(host, &gateway.options.domain, &listed)
        {
            return Some(id);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        gateway.refresh().await;
    }
}

/// The creation under way for `key` (one that just ended too).
fn start_or_join(gateway: &Arc<Gateway>, key: &str) -> super::wake::Done {
    // One that ended meanwhile left its environment in the list: the caller looks there.
    gateway.wakes.wake(key, async { Ok(()) })
}

/// The tags a creation runs at, or the images it waits for first.
enum Tags {
    Known(BTreeMap<String, String>),
    /// `IMAGE:REF` of each image REF may appear for, and the closest tags there are.
    Awaited(Vec<String>, Vec<String>),
}

/// Looks for REF every [`IMAGE_POLL`] until an image is tagged with it, for [`IMAGE_WAIT`] at
/// most; the progress page meanwhile says what it waits for.
async fn await_image(
    gateway: &Gateway,
    key: &str,
    environment: &str,
    reference: &str,
    images: Vec<String>,
    closest: Vec<String>,
) -> Result<BTreeMap<String, String>, String> {
    let shown = images.join(" or ");
    gateway.creations.awaiting(key, images.clone(), closest);
    let deadline = Instant::now() + IMAGE_WAIT;
    loop {
        tokio::time::sleep(IMAGE_POLL).await;
        match gateway.environments().resolve(environment, reference).await {
            Ok(Some(Resolution::Apply(tags))) => {
                gateway.creations.awaiting(key, Vec::new(), Vec::new());
                return Ok(tags);
            }
            Ok(Some(Resolution::Ambiguous { candidates, .. })) => {
                return Err(format!(
                    "`{reference}` names several changesets: {}",
                    candidates.join(", ")
                ));
            }
            Ok(None) => return Err(format!("the environment file `{environment}` is gone")),
            Ok(Some(Resolution::None { closest, .. })) => {
                gateway.creations.awaiting(key, images.clone(), closest);
            }
            Err(error) => tracing::debug!("cannot look up `{reference}`: {error}"),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{shown} did not appear in the registry within {}\nhint: check that its build \
                 pushed it, then create it again",
                humantime::format_duration(IMAGE_WAIT)
            ));
        }
    }
}

/// Creates the environment in the background, once per `key` for however many ask.
fn start(
    gateway: &Arc<Gateway>,
    key: &str,
    environment: &str,
    reference: &str,
    tags: Tags,
    remote: SocketAddr,
    settings: &Settings,
) {
    let (gw, owned_key) = (gateway.clone(), key.to_string());
    let on_phase = gateway.clone();
    let phase_key = key.to_string();
    let progress: crate::lifecycle::Progress = Arc::new(move |service: &str, phase| {
        on_phase.creations.phase(&phase_key, service, phase);
    });
    let (on_queue, queue_key) = (gateway.clone(), key.to_string());
    let on_wait: crate::lifecycle::admission::OnWait = Arc::new(move |waiting: &Waiting| {
        on_queue.creations.waiting(&queue_key, waiting);
    });
    let mut create = Create {
        environment: environment.to_string(),
        tags: BTreeMap::new(),
        id: routing::host_label(&format!("{environment}-{reference}")),
        owner: format!("gateway:{}", remote.ip()),
        ttl: settings.ttl,
        progress,
        on_wait: Some(on_wait),
    };
    // Shown from the first answer on, before the task runs.
    if let Tags::Awaited(images, closest) = &tags {
        gateway
            .creations
            .awaiting(key, images.clone(), closest.clone());
    }
    let reference = reference.to_string();
    gateway.wakes.wake(key, async move {
        gw.creations
            .phase(&owned_key, "", crate::lifecycle::Phase::Waiting);
        create.tags = match tags {
            Tags::Known(tags) => tags,
            Tags::Awaited(images, closest) => {
                let (environment, key) = (create.environment.clone(), owned_key.clone());
                match await_image(&gw, &key, &environment, &reference, images, closest).await {
                    Ok(tags) => tags,
                    Err(why) => {
                        gw.creations.failed(&owned_key, why.clone());
                        return Err(why);
                    }
                }
            }
        };
        let result = gw.environments().create(create).await;
        match &result {
            Ok(()) => gw.creations.forget(&owned_key),
            Err(why) => gw.creations.failed(&owned_key, why.clone()),
        }
        gw.refresh().await;
        result
    });
}

fn bearer(request: &Request<Incoming>, token: &str) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| page::same(given, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(s, t)| (s.to_string(), t.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_ref_applies_to_every_service_tagged_with_it_and_only_to_those() {
        let lists = tags(&[
            ("accounting", &["ea6757a8090d", "1111111aaaa"]),
            ("proxy", &["ea6757a8090d"]),
            ("db", &["17"]),
        ]);
        let applied = BTreeMap::from([
            ("accounting".to_string(), "ea6757a8090d".to_string()),
            ("proxy".to_string(), "ea6757a8090d".to_string()),
        ]);
        assert_eq!(resolve(&lists, "ea6757a"), Resolution::Apply(applied));
    }

    #[test]
    fn an_unknown_ref_names_the_closest_tags_and_an_ambiguous_one_its_candidates() {
        let lists = tags(&[("accounting", &["ea6757a8090d", "ea6757b0000", "fff0000000"])]);
        assert_eq!(
            resolve(&lists, "ea6757c"),
            Resolution::None {
                closest: vec!["ea6757a8090d".into(), "ea6757b0000".into()],
                images: vec![],
            }
        );
        assert_eq!(
            resolve(&lists, "ea6757"),
            Resolution::Ambiguous {
                service: "accounting".into(),
                candidates: vec!["ea6757a8090d".into(), "ea6757b0000".into()]
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tag_lists_and_their_misses_are_asked_for_once_a_minute() {
        let cache = TagCache::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<Vec<String>, _>("no such repository".to_string())
        };
        for _ in 0..100 {
            assert!(cache.get("shop/app", fetch()).await.is_empty());
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
        tokio::time::advance(TAGS_FOR).await;
        cache.get("shop/app", fetch()).await;
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_concurrent_requests_for_unknown_refs_costs_one_tag_look_up() {
        let cache = TagCache::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A registry takes a moment to answer: the flood arrives meanwhile.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, String>(vec!["ea6757a8090d".to_string()])
        };
        let flood = (0..100).map(|_| cache.get("shop/app", fetch()));
        let answers = futures_util::future::join_all(flood).await;
        assert!(answers.iter().all(|tags| tags == &["ea6757a8090d"]));
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_creates_at_most_its_limit_an_hour() {
        let creations = Creations::default();
        let client: IpAddr = [10, 0, 0, 1].into();
        assert!((0..3).all(|_| creations.allow(client, 3)));
        assert!(!creations.allow(client, 3));
        assert!(creations.allow([10, 0, 0, 2].into(), 3), "per client");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(creations.allow(client, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_creation_waiting_for_capacity_shows_its_place_in_line_until_admitted() {
        let creations = Creations::default();
        let key = key("shop", "ea6757a");
        creations.phase(&key, "web", Phase::Waiting);
        let waiting = Waiting {
            place: 3,
            queued: 4,
            environments: 2,
            reserved: 0,
            capacity: crate::naming::codec::Capacity {
                max_environments: Some(2),
                ..Default::default()
            },
            memory: 0,
            waited: Duration::from_secs(42),
        };
        creations.waiting(&key, &waiting);
        let page = page::creating_page("shop", "ea6757a", &creations.progress(&key));
        assert!(
            page.contains("waiting for capacity: 3rd in line, 2 of 2 environments run (for 42s)"),
            "{page}"
        );
        creations.phase(&key, "web", Phase::Creating);
        let page = page::creating_page("shop", "ea6757a", &creations.progress(&key));
        assert!(!page.contains("waiting for capacity"), "admitted: {page}");
    }

    fn gateway_creating(fake: Arc<crate::gateway::fake::Fake>) -> Arc<Gateway> {
        let options = crate::gateway::Options {
            listen: ([127, 0, 0, 1], 8000).into(),
            domain: "localhost".into(),
            wake_timeout: Duration::from_secs(60),
            guard: None,
            token: None,
            max_body: 1 << 20,
            request_timeout: Duration::from_secs(60),
            create: Some(Settings {
                ttl: Duration::from_secs(8 * 3600),
                per_client_hour: 10,
            }),
        };
        Gateway::new(options, fake)
    }

    #[tokio::test(start_paused = true)]
    async fn a_creation_from_the_form_waits_for_its_image_to_appear_for_a_bounded_time() {
        let fake = Arc::new(crate::gateway::fake::Fake::default());
        let files = |tag: &str| {
            let file = vec![("web".to_string(), tag.to_string())];
            BTreeMap::from([("shop".to_string(), file)])
        };
        *fake.files.lock().unwrap() = files("ea6757b0old");
        let gateway = gateway_creating(fake.clone());
        let (remote, ttl) = (([127, 0, 0, 1], 1).into(), Duration::from_secs(3600));
        // A request for its URL is answered 404 at once.
        let refused = begin(&gateway, "shop", "ea6757a8", remote, ttl, false).await;
        assert_eq!(
            refused.unwrap_err().unwrap().status(),
            StatusCode::NOT_FOUND
        );
        // Through the form, it waits and says for what.
        assert!(
            begin(&gateway, "shop", "ea6757a8", remote, ttl, true)
                .await
                .is_ok()
        );
        let key = key("shop", "ea6757a8");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let page = page::creating_page("shop", "ea6757a8", &gateway.creations.progress(&key));
        assert!(
            page.contains("waiting for <code>web:ea6757a8</code> to appear in the registry"),
            "{page}"
        );
        assert!(
            page.contains("<code>ea6757b0old</code>"),
            "the closest: {page}"
        );
        // CI pushes it: the creation goes on.
        *fake.files.lock().unwrap() = files("ea6757a8090d");
        let mut done = start_or_join(&gateway, &key);
        let ended = done.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(ended, Some(Ok(())));
        assert_eq!(fake.calls(), vec!["create shop-ea6757a8"]);

        // One that never appears is given up after IMAGE_WAIT, and remembered as failed.
        let began = Instant::now();
        assert!(
            begin(&gateway, "shop", "ffffff00", remote, ttl, true)
                .await
                .is_ok()
        );
        let key = super::key("shop", "ffffff00");
        let mut done = start_or_join(&gateway, &key);
        let ended = done.wait_for(Option::is_some).await.unwrap().clone();
        assert!(began.elapsed() >= IMAGE_WAIT);
        assert!(began.elapsed() < IMAGE_WAIT + Duration::from_secs(60));
        let why = ended.unwrap().unwrap_err();
        assert!(why.contains("web:ffffff00 did not appear"), "{why}");
        assert!(gateway.creations.failure(&key).is_some());
        assert_eq!(fake.calls().len(), 1, "nothing created");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_remembered_ten_minutes() {
        let creations = Creations::default();
        creations.failed("shop@ea6757a", "boom".into());
        assert_eq!(creations.failure("shop@ea6757a").as_deref(), Some("boom"));
        tokio::time::advance(FAILED_FOR).await;
        assert_eq!(creations.failure("shop@ea6757a"), None);
    }
}
