//! One contract for every backend, in the style of object_store's `integration.rs`: a set of
//! `async fn`s over `&dyn Backend` that the fake (unit tests, paused time), the Docker engine
//! and the test swarm (`tests/it`) all run. A backend is done when the suite passes, and the fake
//! cannot drift from the engines unnoticed. What a backend cannot do is declared, by its
//! [`Capabilities`] or by [`Traits`], never skipped silently.
//!
//! Each function panics on the first broken promise; the legs clean up by the subject's prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use futures_util::StreamExt;

use super::*;
use crate::naming;

/// A backend under test, and what the suite needs to know about it.
pub struct Subject<'a> {
    pub backend: &'a dyn Backend,
    /// Starts every id the suite makes: unique to the test and process, so nothing else lists
    /// under it and a leg's guard removes what is left by it.
    pub prefix: String,
    /// The demo stand-in image (`/standin serve ...`, `/standin exit ...`) as this backend
    /// runs it.
    pub image: ResolvedImage,
    pub traits: Traits,
    /// Called before each service is created: the fake scripts what the command would do.
    pub before_create: Option<BeforeCreate<'a>>,
}

/// What the fake does before a service is created.
pub type BeforeCreate<'a> = Box<dyn Fn(&ServiceSpec) + Send + Sync + 'a>;

/// How a backend differs where the seam leaves it free, declared per backend.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    /// `create_volume` makes the volume at once, so listings show it. Swarm makes a volume on
    /// the node that first mounts it.
    pub volumes_at_creation: bool,
}

/// How long a service may take to get where a test waits for it.
const LIMIT: Duration = Duration::from_secs(60);

/// Longer than any chunk an engine splits output into (Docker's log drivers: 16 KiB; a
/// multiplexed frame and bollard's buffer: 8 KiB).
const LONG_LINE: usize = 40_000;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
}

impl Subject<'_> {
    fn id(&self, test: &str) -> String {
        format!("{}-{test}", self.prefix)
    }

    /// The metadata of one test environment, run `run-TEST`.
    fn metadata(&self, test: &str) -> Metadata {
        Metadata {
            environment: Some(self.id(test)),
            run: Some(format!("run-{test}")),
            created_at: Some(at(0)),
            owner: Some("contract".into()),
            ..Metadata::new(self.id(test))
        }
    }

    /// A test environment claimed, with its isolation made.
    async fn claimed(&self, test: &str) -> (Metadata, IsolationRef) {
        let metadata = self.metadata(test);
        self.backend.claim(&metadata).await.expect("claim");
        let isolation = self
            .backend
            .create_isolation(&metadata)
            .await
            .expect("isolation");
        (metadata, isolation)
    }

    /// A service running `command` of the stand-in, no ports, no probes.
    fn spec(&self, metadata: &Metadata, service: &str, command: &[&str]) -> ServiceSpec {
        ServiceSpec {
            service: service.into(),
            image: self.image.clone(),
            command: Some(command.iter().map(|c| c.to_string()).collect()),
            env: Vec::new(),
            runtime: Runtime::default(),
            aliases: vec![service.into()],
            address: None,
            depends_on: Default::default(),
            ready: Ready {
                probes: Vec::new(),
                timeout: LIMIT,
            },
            reference: None,
            metadata: metadata.clone(),
        }
    }

    async fn create(&self, isolation: &IsolationRef, spec: &ServiceSpec) -> ServiceRef {
        if let Some(before) = &self.before_create {
            before(spec);
        }
        let service = self.backend.create_service(isolation, spec).await;
        service.unwrap_or_else(|e| panic!("create `{}`: {e}", spec.service))
    }

    /// A service that serves until stopped.
    async fn serving(
        &self,
        isolation: &IsolationRef,
        metadata: &Metadata,
        name: &str,
    ) -> ServiceRef {
        let command = ["serve", "--name", name, "--port", "8080"];
        self.create(isolation, &self.spec(metadata, name, &command))
            .await
    }

    /// The environments under the prefix that `selector` lists, in the backend's order.
    async fn list(&self, selector: &Selector) -> Vec<EnvironmentRecord> {
        let records = self.backend.list(selector).await.expect("list");
        records
            .into_iter()
            .filter(|r| r.id.starts_with(&format!("{}-", self.prefix)))
            .collect()
    }

    /// The one environment `id`, or `None` when nothing of it is listed.
    async fn find(&self, id: &str) -> Option<EnvironmentRecord> {
        let mut records = self.list(&Selector::Id(id.into())).await;
        assert!(records.len() <= 1, "{records:?}");
        records.pop()
    }
}

fn ids(records: &[EnvironmentRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn services(records: &[ServiceRecord]) -> Vec<&str> {
    records.iter().map(|s| s.handle.service.as_str()).collect()
}

/// A second claim of one id fails as taken until the first is released; release is
/// idempotent and frees the id.
pub async fn claim_is_exclusive(s: &Subject<'_>) {
    let metadata = s.metadata("claim");
    let backend = s.backend;
    backend.claim(&metadata).await.expect("the first claim");
    let again = backend.claim(&metadata).await;
    assert!(
        matches!(&again, Err(BackendError::Taken(id)) if *id == metadata.id),
        "{again:?}"
    );
    let found = s.find(&metadata.id).await.expect("the claim is listed");
    assert!(found.markers.claimed);
    backend.release(&metadata.id).await.expect("release");
    backend.release(&metadata.id).await.expect("release twice");
    assert!(s.find(&metadata.id).await.is_none());
    backend
        .claim(&metadata)
        .await
        .expect("a claim after release");
    backend.release(&metadata.id).await.expect("release");
}

/// Listings come oldest first (by `created_at`), then by id.
pub async fn listing_is_oldest_first(s: &Subject<'_>) {
    let backend = s.backend;
    let newer = Metadata {
        created_at: Some(at(2)),
        ..s.metadata("order-a")
    };
    let older = Metadata {
        created_at: Some(at(1)),
        ..s.metadata("order-b")
    };
    let tie = Metadata {
        created_at: Some(at(2)),
        ..s.metadata("order-c")
    };
    for metadata in [&tie, &newer, &older] {
        backend.claim(metadata).await.expect("claim");
    }
    let listed = s.list(&Selector::All).await;
    assert_eq!(ids(&listed), [&older.id, &newer.id, &tie.id]);
    for metadata in [&tie, &newer, &older] {
        backend.release(&metadata.id).await.expect("release");
    }
}

/// `Id` selects one environment exactly; `Run` selects what one run created, resource by
/// resource: what a later update added under its own run is not the first run's.
pub async fn selectors_select_by_id_and_run(s: &Subject<'_>) {
    let backend = s.backend;
    let one = s.metadata("sel");
    let longer = s.metadata("sel-2");
    backend.claim(&one).await.expect("claim");
    backend.claim(&longer).await.expect("claim");
    let isolation = backend.create_isolation(&one).await.expect("isolation");
    s.serving(&isolation, &one, "db").await;
    let update = Metadata {
        run: Some("run-sel-update".into()),
        ..one.clone()
    };
    backend
        .set_marker(&update, Marker::Update(at(30)))
        .await
        .expect("update marker");
    s.serving(&isolation, &update, "app").await;

    assert_eq!(ids(&s.list(&Selector::Id(one.id.clone())).await), [&one.id]);
    assert!(s.find(&s.id("se")).await.is_none(), "ids are exact");
    let all = s.list(&Selector::All).await;
    assert_eq!(ids(&all), [&one.id, &longer.id]);
    assert_eq!(services(&all[0].services), ["app", "db"]);

    let first = s.list(&Selector::Run("run-sel".into())).await;
    assert_eq!(ids(&first), [&one.id]);
    assert_eq!(services(&first[0].services), ["db"]);
    assert!(first[0].markers.claimed);
    assert_eq!(
        first[0].markers.update, None,
        "the update's marker is not the run's"
    );
    assert_eq!(first[0].isolation, std::slice::from_ref(&isolation));

    let second = s.list(&Selector::Run("run-sel-update".into())).await;
    assert_eq!(ids(&second), [&one.id]);
    assert_eq!(services(&second[0].services), ["app"]);
    assert!(!second[0].markers.claimed, "the claim is the first run's");
    assert!(second[0].isolation.is_empty(), "{:?}", second[0].isolation);
    let marker = second[0]
        .markers
        .update
        .as_ref()
        .expect("the update's marker");
    assert_eq!(marker.run, update.run);
    assert!(s.list(&Selector::Run("run-none".into())).await.is_empty());

    for instance in s.list(&Selector::All).await {
        crate::lifecycle::remove(backend, &instance, None)
            .await
            .expect("remove");
    }
}

/// Each marker kind sets, shows in listings, renews or stays, and clears idempotently; the
/// update marker is exclusive and gives way only to its own run. Markers need no claim.
pub async fn markers_set_and_clear_each_kind(s: &Subject<'_>) {
    let backend = s.backend;
    let metadata = s.metadata("marks");
    let id = &metadata.id;
    backend.claim(&metadata).await.expect("claim");
    let (first, renewed) = (at(10), at(20));
    for marker in [Marker::Ready, Marker::Pinned] {
        backend.set_marker(&metadata, marker).await.expect("set");
        backend
            .set_marker(&metadata, marker)
            .await
            .expect("set again");
    }
    backend
        .set_marker(&metadata, Marker::Lease(first))
        .await
        .expect("lease");
    let markers = s.find(id).await.expect("listed").markers;
    assert!(
        markers.claimed && markers.ready && markers.pinned,
        "{markers:?}"
    );
    assert_eq!(markers.lease_until, Some(first));
    assert_eq!(markers.update, None);
    backend
        .set_marker(&metadata, Marker::Lease(renewed))
        .await
        .expect("renew");
    // Two renewals within one second ask for the same expiry: the second is already done.
    backend
        .set_marker(&metadata, Marker::Lease(renewed))
        .await
        .expect("renew to the same expiry");
    let markers = s.find(id).await.expect("listed").markers;
    assert_eq!(markers.lease_until, Some(renewed));

    let update = Metadata {
        run: Some("run-marks-update".into()),
        ..metadata.clone()
    };
    backend
        .set_marker(&update, Marker::Update(at(40)))
        .await
        .expect("update marker");
    let again = backend.set_marker(&update, Marker::Update(at(50))).await;
    assert!(
        matches!(&again, Err(BackendError::Taken(taken)) if taken == id),
        "{again:?}"
    );
    let marker = s.find(id).await.expect("listed").markers.update;
    let marker = marker.expect("the update marker");
    assert_eq!(
        (marker.run.as_deref(), marker.start_deadline),
        (Some("run-marks-update"), Some(at(40)))
    );
    if backend.info().capabilities.replace_in_place {
        backend
            .clear_update_marker(id, "run-other")
            .await
            .expect("clear another run's");
        assert!(s.find(id).await.expect("listed").markers.update.is_some());
        backend
            .clear_update_marker(id, "run-marks-update")
            .await
            .expect("clear its own");
    } else {
        // No update runs there (Swarm): only a teardown clears the marker.
        let refused = backend.clear_update_marker(id, "run-marks-update").await;
        assert!(
            matches!(refused, Err(BackendError::Unsupported { .. })),
            "{refused:?}"
        );
        backend
            .clear_marker(id, MarkerKind::Update)
            .await
            .expect("clear the update marker");
    }
    assert_eq!(s.find(id).await.expect("listed").markers.update, None);

    for kind in [MarkerKind::Ready, MarkerKind::Pinned, MarkerKind::Lease] {
        backend.clear_marker(id, kind).await.expect("clear");
        backend.clear_marker(id, kind).await.expect("clear again");
    }
    backend
        .clear_marker(id, MarkerKind::Update)
        .await
        .expect("clear what is not there");
    let markers = s.find(id).await.expect("listed").markers;
    assert_eq!(
        markers,
        Markers {
            claimed: true,
            ..Markers::default()
        }
    );
    backend.release(id).await.expect("release");
    assert!(s.find(id).await.is_none());
}

/// A marker is set whether the environment is claimed or not, and outlives its claim: a pin
/// or a lease of an environment half removed still shows.
pub async fn markers_need_no_claim(s: &Subject<'_>) {
    let backend = s.backend;
    let metadata = s.metadata("unclaimed");
    let id = &metadata.id;
    for marker in [Marker::Ready, Marker::Pinned, Marker::Lease(at(10))] {
        backend.set_marker(&metadata, marker).await.expect("set");
    }
    let markers = s.find(id).await.expect("listed").markers;
    assert!(
        !markers.claimed && markers.ready && markers.pinned,
        "{markers:?}"
    );
    for kind in [MarkerKind::Ready, MarkerKind::Pinned, MarkerKind::Lease] {
        backend.clear_marker(id, kind).await.expect("clear");
    }
    assert!(s.find(id).await.is_none());
}

/// A pool member's marker shows in listings; the adoption marker is exclusive, and the
/// adopter's metadata it carries wins when listing, until it is cleared. A backend that keeps no
/// pools refuses both markers.
pub async fn adoption_is_exclusive_and_its_metadata_wins(s: &Subject<'_>) {
    let backend = s.backend;
    let member = Metadata {
        pool: Some(BTreeMap::from([("db".to_string(), "d1.s1".to_string())])),
        ..s.metadata("adopt")
    };
    let id = &member.id;
    if crate::lifecycle::pool::check_backend(backend).is_err() {
        let refused = backend.set_marker(&member, Marker::Member).await;
        assert!(
            matches!(refused, Err(BackendError::Unsupported { .. })),
            "{refused:?}"
        );
        return;
    }
    backend.claim(&member).await.expect("claim");
    let isolation = backend.create_isolation(&member).await.expect("isolation");
    s.serving(&isolation, &member, "db").await;
    backend
        .set_marker(&member, Marker::Member)
        .await
        .expect("member marker");
    let listed = s.find(id).await.expect("listed");
    assert!(listed.markers.member && !listed.markers.adopted);
    assert_eq!(listed.metadata.pool, member.pool);

    let adopter = Metadata {
        owner: Some("adopter".into()),
        run: Some("run-adopter".into()),
        created_at: Some(at(5)),
        adopted: Some(at(0)),
        ..s.metadata("adopt")
    };
    backend
        .set_marker(&adopter, Marker::Adopt)
        .await
        .expect("adopt");
    let again = backend.set_marker(&adopter, Marker::Adopt).await;
    assert!(
        matches!(&again, Err(BackendError::Taken(taken)) if taken == id),
        "{again:?}"
    );
    let listed = s.find(id).await.expect("listed");
    assert!(listed.markers.adopted && listed.markers.member);
    assert_eq!(listed.metadata, adopter, "the adopter's metadata wins");
    assert_eq!(
        listed.services.len(),
        1,
        "the member's service is the adopter's"
    );
    let of_run = s.list(&Selector::Run("run-adopter".into())).await;
    assert_eq!(of_run.len(), 1, "{of_run:?}");

    for kind in [MarkerKind::Adopt, MarkerKind::Member] {
        backend.clear_marker(id, kind).await.expect("clear");
        backend.clear_marker(id, kind).await.expect("clear again");
    }
    let listed = s.find(id).await.expect("listed");
    assert!(!listed.markers.adopted && !listed.markers.member);
    assert_eq!(listed.metadata.owner.as_deref(), Some("contract"));
    remove_all(s, id).await;
    assert!(s.find(id).await.is_none());
}

/// A pool's fill claims are listed with their filler and expiry, stamped by the engine's clock
/// (the first claimed is the older), renewed in place and released idempotently; a backend
/// that keeps no pools refuses to claim.
pub async fn fill_claims_are_listed_renewed_and_released(s: &Subject<'_>) {
    let backend = s.backend;
    let environment = s.id("fill");
    // Expiries in the future: a fill or a reaper running beside the suite sweeps expired claims.
    let base = Utc::now().trunc_subsecs(0) + chrono::Duration::hours(1);
    let at = |minute: i64| base + chrono::Duration::minutes(minute);
    let filler = |nonce: &str| Filler {
        nonce: format!("{}{nonce}", s.prefix.replace('-', "")),
        environment: environment.clone(),
        started_by: Some("contract:1".into()),
        process: None,
    };
    if crate::lifecycle::pool::check_backend(backend).is_err() {
        let refused = backend.claim_fill(&filler("a"), at(10)).await;
        assert!(
            matches!(refused, Err(BackendError::Unsupported { .. })),
            "{refused:?}"
        );
        return;
    }
    let mine = || async {
        let claims = backend.fill_claims().await.expect("fill claims");
        let mine = claims
            .into_iter()
            .filter(|c| c.filler.environment == environment);
        mine.collect::<Vec<_>>()
    };
    let first = backend
        .claim_fill(&filler("first"), at(10))
        .await
        .expect("claim");
    let second = backend
        .claim_fill(&filler("second"), at(10))
        .await
        .expect("claim");
    let claims = mine().await;
    assert_eq!(claims.len(), 2, "{claims:?}");
    let older = claims
        .iter()
        .min_by_key(|c| (c.created, c.native.clone()))
        .expect("a claim");
    assert_eq!(older.native, first, "{claims:?}");
    assert_eq!(older.filler, filler("first"));
    assert_eq!(older.expires, Some(at(10)));
    backend
        .renew_fill(&first, &filler("first"), at(20))
        .await
        .expect("renew");
    let claims = mine().await;
    let renewed = claims.iter().find(|c| c.native == first).expect("renewed");
    assert_eq!(renewed.expires, Some(at(20)));
    assert_eq!(renewed.created, older.created, "renewal keeps its place");
    for native in [&first, &second] {
        backend.release_fill(native).await.expect("release");
        backend.release_fill(native).await.expect("release again");
    }
    assert!(mine().await.is_empty());
    let gone = backend.renew_fill(&first, &filler("first"), at(30)).await;
    assert!(gone.is_err(), "{gone:?}");
}

/// A queue entry is renewed and marked in place under one handle, removed idempotently, and
/// once removed its renewal is `NotFound` (a waiter then goes back in line). Read without a
/// capacity set (one would hold up every other start on the engine): the handles alone.
pub async fn queue_entries_are_renewed_in_place_and_removed_idempotently(s: &Subject<'_>) {
    let backend = s.backend;
    // Expiries in the future: a waiter or a reaper running beside the suite sweeps expired ones.
    let base = Utc::now().trunc_subsecs(0) + chrono::Duration::hours(1);
    let at = |minute: i64| base + chrono::Duration::minutes(minute);
    let waiter = |nonce: &str| Waiter {
        nonce: format!("{}{nonce}", s.prefix.replace('-', "")),
        priority: Priority::Normal,
        owner: Some("contract".into()),
        environment: Some(s.id("queue")),
        started_by: Some("contract:1".into()),
        memory: 1 << 20,
        admitted: false,
    };
    let first = backend
        .enqueue(&waiter("first"), at(10))
        .await
        .expect("enqueue");
    let second = backend
        .enqueue(&waiter("second"), at(10))
        .await
        .expect("enqueue");
    assert_ne!(first, second);
    backend
        .renew_entry(&first, &waiter("first"), at(20))
        .await
        .expect("renew");
    let admitted = Waiter {
        admitted: true,
        ..waiter("first")
    };
    backend
        .renew_entry(&first, &admitted, at(30))
        .await
        .expect("renewed under the same handle, marked");
    for native in [&first, &second] {
        backend.dequeue(native).await.expect("dequeue");
        backend.dequeue(native).await.expect("dequeue again");
    }
    let gone = backend.renew_entry(&first, &admitted, at(40)).await;
    assert!(
        matches!(gone, Err(BackendError::NotFound { .. })),
        "{gone:?}"
    );
}

/// A named volume is the file's name and the backend's handle; removal is idempotent.
pub async fn volumes_are_created_listed_and_removed(s: &Subject<'_>) {
    let backend = s.backend;
    let metadata = s.metadata("vol");
    let id = &metadata.id;
    backend.claim(&metadata).await.expect("claim");
    let spec = VolumeSpec {
        name: "data".into(),
        labels: BTreeMap::from([("team".into(), "shop".into())]),
    };
    let volume = backend
        .create_volume(&metadata, &spec)
        .await
        .expect("create");
    assert_eq!(
        volume,
        VolumeRef {
            name: "data".into(),
            native: naming::volume_name(id, "data"),
        }
    );
    let listed = s.find(id).await.expect("listed").volumes;
    if s.traits.volumes_at_creation {
        assert_eq!(listed, std::slice::from_ref(&volume));
    } else {
        assert!(listed.is_empty(), "{listed:?}");
    }
    backend.remove_volume(&volume).await.expect("remove");
    backend.remove_volume(&volume).await.expect("remove again");
    assert!(s.find(id).await.expect("listed").volumes.is_empty());
    backend.release(id).await.expect("release");
}

/// A service put aside leaves its name to a replacement, shows in `aside` until restored,
/// and comes back under its own name once the replacement is gone. Backends without
/// `replace_in_place` refuse as unsupported.
pub async fn put_aside_and_restore(s: &Subject<'_>) {
    let backend = s.backend;
    let (metadata, isolation) = s.claimed("aside").await;
    let id = &metadata.id;
    let app = s.serving(&isolation, &metadata, "app").await;
    if !backend.info().capabilities.replace_in_place {
        let refused = backend.put_aside(&app).await;
        assert!(
            matches!(refused, Err(BackendError::Unsupported { .. })),
            "{refused:?}"
        );
        let refused = backend.restore_aside(&app, None).await;
        assert!(
            matches!(refused, Err(BackendError::Unsupported { .. })),
            "{refused:?}"
        );
        return remove_all(s, id).await;
    }
    let aside = backend.put_aside(&app).await.expect("put aside");
    assert_eq!(aside.handle.native, app.native);
    assert_eq!(aside.handle.name, naming::replaced_name("app", id));
    let record = s.find(id).await.expect("listed");
    assert!(record.services.is_empty(), "{:?}", record.services);
    assert_eq!(services(&record.aside), ["app"]);
    assert_eq!(record.aside[0].handle.name, aside.handle.name);

    let replacement = s.serving(&isolation, &metadata, "app").await;
    assert_eq!(replacement.name, app.name, "the replacement takes the name");
    let record = s.find(id).await.expect("listed");
    assert_eq!(
        (services(&record.services), services(&record.aside)),
        (vec!["app"], vec!["app"])
    );
    assert_eq!(record.services[0].handle.native, replacement.native);
    let early = backend.restore_aside(&aside.handle, aside.address).await;
    assert!(early.is_err(), "restored beside its replacement: {early:?}");

    backend
        .remove_service(&replacement, None)
        .await
        .expect("remove the replacement");
    let restored = backend
        .restore_aside(&aside.handle, aside.address)
        .await
        .expect("restore");
    assert_eq!((&restored.native, &restored.name), (&app.native, &app.name));
    let record = s.find(id).await.expect("listed");
    assert_eq!(services(&record.services), ["app"]);
    assert_eq!(record.services[0].handle.native, app.native);
    assert!(record.aside.is_empty(), "{:?}", record.aside);
    remove_all(s, id).await;
}

/// `lifecycle::remove` takes everything of an environment: services, those put aside,
/// isolation, volumes and every marker, the claim last; the id is free again.
pub async fn teardown_removes_everything(s: &Subject<'_>) {
    let backend = s.backend;
    let (metadata, isolation) = s.claimed("down").await;
    let id = &metadata.id;
    let spec = VolumeSpec {
        name: "data".into(),
        labels: BTreeMap::new(),
    };
    backend
        .create_volume(&metadata, &spec)
        .await
        .expect("volume");
    let db = s.serving(&isolation, &metadata, "db").await;
    s.serving(&isolation, &metadata, "app").await;
    backend.start_service(&db).await.expect("start");
    if backend.info().capabilities.replace_in_place {
        backend.put_aside(&db).await.expect("put aside");
    }
    for marker in [Marker::Ready, Marker::Pinned, Marker::Lease(at(10))] {
        backend.set_marker(&metadata, marker).await.expect("marker");
    }
    backend
        .set_marker(&metadata, Marker::Update(at(20)))
        .await
        .expect("update marker");
    let instance = s.find(id).await.expect("listed");
    let recording = Recording {
        inner: backend,
        removals: Default::default(),
    };
    crate::lifecycle::remove(&recording, &instance, None)
        .await
        .expect("remove");
    let removals = recording.removals.into_inner().expect("removals");
    let (services, rest): (Vec<&str>, Vec<&str>) =
        (removals.iter().map(String::as_str)).partition(|r| r.starts_with("service "));
    let mut services = services;
    services.sort();
    assert_eq!(services, ["service app", "service db"], "{removals:?}");
    assert!(
        removals[..2].iter().all(|r| r.starts_with("service ")),
        "{removals:?}"
    );
    // A swarm makes a volume only on the node that first mounts it, and nothing mounts this one.
    let volumes: &[&str] = match s.traits.volumes_at_creation {
        true => &["volume data"],
        false => &[],
    };
    let markers = [
        "marker Pinned",
        "marker Lease",
        "marker Update",
        "marker Ready",
        "release",
    ];
    let expected: Vec<&str> = (["isolation"].iter().chain(volumes).chain(&markers))
        .copied()
        .collect();
    assert_eq!(
        rest, expected,
        "services, the isolation, volumes, markers, the claim last"
    );
    assert!(s.find(id).await.is_none(), "nothing of it is listed");
    backend.claim(&metadata).await.expect("the id is free");
    backend.release(id).await.expect("release");
}

/// A line longer than any chunk the engine splits output into comes out as one line.
pub async fn long_log_lines_come_out_whole(s: &Subject<'_>) {
    let backend = s.backend;
    let (metadata, isolation) = s.claimed("logs").await;
    let long = "x".repeat(LONG_LINE);
    let command = ["exit", "0", "--name", "say", "--message", &long];
    let say = s
        .create(&isolation, &s.spec(&metadata, "say", &command))
        .await;
    backend.start_service(&say).await.expect("start");
    let deadline = tokio::time::Instant::now() + LIMIT;
    let lines = loop {
        let lines: Vec<String> = backend
            .logs(&say, LogOptions::default())
            .map(|line| line.expect("a log line").text)
            .collect()
            .await;
        if lines.iter().any(|l| l.starts_with("say: exiting")) {
            break lines;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .collect();
    let of_x: Vec<usize> = lines
        .iter()
        .filter(|l| l.contains("xx"))
        .map(|l| l.matches('x').count())
        .collect();
    assert_eq!(of_x.iter().sum::<usize>(), LONG_LINE, "once");
    assert!(
        lines.contains(&format!("say: {long}")),
        "the long line, split: {of_x:?} x's per line"
    );
    remove_all(s, &metadata.id).await;
}

/// A backend that passes every call on and records the removals, for the order of a teardown.
struct Recording<'a> {
    inner: &'a dyn Backend,
    removals: std::sync::Mutex<Vec<String>>,
}

impl Recording<'_> {
    fn record(&self, removal: String) {
        self.removals.lock().expect("removals").push(removal);
    }
}

#[async_trait::async_trait]
impl Backend for Recording<'_> {
    fn info(&self) -> &BackendInfo {
        self.inner.info()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn cannot_probe_unpublished(&self) -> Option<String> {
        self.inner.cannot_probe_unpublished().await
    }
    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        self.inner.resolve_image(image).await
    }
    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.inner.image_tags(repository).await
    }
    async fn fetch_image(
        &self,
        image: &ImageRef,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        self.inner.fetch_image(image, on_progress).await
    }
    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &ImageRef) -> Result<()> {
        self.inner.build_image(context, dockerfile, tag).await
    }
    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        self.inner.claim(metadata).await
    }
    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        self.inner.create_isolation(metadata).await
    }
    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        self.inner.create_volume(metadata, volume).await
    }
    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        self.inner.create_service(isolation, spec).await
    }
    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        self.inner.start_service(service).await
    }
    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        self.inner.wait_exit(service).await
    }
    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        self.inner.status(service).await
    }
    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> futures_util::stream::BoxStream<'static, Result<LogLine>> {
        self.inner.logs(service, options)
    }
    async fn exec(&self, service: &ServiceRef, command: &[String]) -> Result<ExecOutput> {
        self.inner.exec(service, command).await
    }
    async fn memory(&self, service: &ServiceRef) -> Result<Option<u64>> {
        self.inner.memory(service).await
    }
    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic> {
        self.inner.traffic(service).await
    }
    async fn pause_service(&self, service: &ServiceRef) -> Result<()> {
        self.inner.pause_service(service).await
    }
    async fn resume_service(&self, service: &ServiceRef) -> Result<()> {
        self.inner.resume_service(service).await
    }
    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()> {
        self.inner.stop_service(service, grace).await
    }
    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()> {
        self.record(format!("service {}", service.service));
        self.inner.remove_service(service, grace).await
    }
    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside> {
        self.inner.put_aside(service).await
    }
    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<std::net::IpAddr>,
    ) -> Result<ServiceRef> {
        self.inner.restore_aside(aside, address).await
    }
    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        self.inner.list(selector).await
    }
    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        self.inner.set_marker(metadata, marker).await
    }
    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        self.record(format!("marker {kind:?}"));
        self.inner.clear_marker(id, kind).await
    }
    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()> {
        self.record("marker Update".into());
        self.inner.clear_update_marker(id, run).await
    }

    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        self.record("marker Create".into());
        self.inner.clear_create_marker(id, run).await
    }
    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        self.record("isolation".into());
        self.inner.remove_isolation(isolation).await
    }
    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        self.record(format!("volume {}", volume.name));
        self.inner.remove_volume(volume).await
    }
    async fn release(&self, id: &str) -> Result<()> {
        self.record("release".into());
        self.inner.release(id).await
    }
    async fn admission(&self) -> Result<Admission> {
        self.inner.admission().await
    }
    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()> {
        self.inner.set_capacity(capacity).await
    }
    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String> {
        self.inner.enqueue(waiter, until).await
    }
    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()> {
        self.inner.renew_entry(native, waiter, until).await
    }
    async fn dequeue(&self, native: &str) -> Result<()> {
        self.inner.dequeue(native).await
    }
    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String> {
        self.inner.claim_fill(filler, until).await
    }
    async fn fill_claims(&self) -> Result<Vec<Filling>> {
        self.inner.fill_claims().await
    }
    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()> {
        self.inner.renew_fill(native, filler, until).await
    }
    async fn release_fill(&self, native: &str) -> Result<()> {
        self.inner.release_fill(native).await
    }
}

/// Removes what is listed of `id` the way `down` does.
async fn remove_all(s: &Subject<'_>, id: &str) {
    if let Some(instance) = s.find(id).await {
        crate::lifecycle::remove(s.backend, &instance, None)
            .await
            .unwrap_or_else(|e| panic!("remove `{id}`: {e}"));
    }
}

/// The initials of a test's name (`claim_is_exclusive`: `cie`), for a prefix short enough for
/// every engine's names: Swarm allows 64 characters in a config's.
pub fn initials(test: &str) -> String {
    test.split('_')
        .filter_map(|word| word.chars().next())
        .collect()
}

/// One function of the suite, for a leg to run on its subject.
pub type Case = for<'s, 'a> fn(&'s Subject<'a>) -> futures_util::future::BoxFuture<'s, ()>;

/// The suite as tests of the module it is called in: `contract_tests!(leg)`, where
/// `fn leg(test: &str, case: Case)` runs `case` on a subject unique to `test` and cleans up.
#[macro_export]
macro_rules! contract_tests {
    ($leg:path) => {
        $crate::contract_tests!(@each $leg,
            claim_is_exclusive,
            listing_is_oldest_first,
            selectors_select_by_id_and_run,
            markers_set_and_clear_each_kind,
            markers_need_no_claim,
            volumes_are_created_listed_and_removed,
            put_aside_and_restore,
            teardown_removes_everything,
            long_log_lines_come_out_whole,
            adoption_is_exclusive_and_its_metadata_wins,
            fill_claims_are_listed_renewed_and_released,
            queue_entries_are_renewed_in_place_and_removed_idempotently
        );
    };
    (@each $leg:path, $($test:ident),*) => {
        $(
            #[test]
            fn $test() {
                $leg(stringify!($test), |s| Box::pin($crate::backend::contract::$test(s)));
            }
        )*
    };
}

/// The fake's leg, under paused time.
#[cfg(test)]
mod on_fake {
    use super::*;
    use crate::backend::fake::{Fake, Script};

    fn leg(test: &str, case: Case) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let fake = Fake::new();
        let scripted = fake.clone();
        let subject = Subject {
            backend: &fake,
            prefix: format!("fake-{}", test.replace('_', "-")),
            image: ResolvedImage {
                reference: crate::spec::ImageRef {
                    repository: "envctl-demo/oracle-xe".into(),
                    tag: "latest".into(),
                },
                digest: None,
                healthcheck: None,
            },
            traits: Traits {
                volumes_at_creation: true,
            },
            before_create: Some(Box::new(move |spec| standin(&scripted, spec))),
        };
        runtime.block_on(case(&subject));
    }

    /// Scripts what the stand-in's `exit` command prints and does.
    fn standin(fake: &Fake, spec: &ServiceSpec) {
        let command = spec.command.clone().unwrap_or_default();
        let (Some("exit"), Some(code)) = (command.first().map(String::as_str), command.get(1))
        else {
            return;
        };
        let flag = |name: &str| {
            let at = command.iter().position(|c| c == name)?;
            command.get(at + 1).cloned()
        };
        let name = flag("--name").unwrap_or_else(|| "standin".into());
        let mut logs = vec![
            format!("{name}: starting"),
            format!("{name}: migrating schema..."),
        ];
        logs.extend(flag("--message").map(|m| format!("{name}: {m}")));
        logs.push(format!("{name}: exiting with code {code}"));
        let script = Script {
            exits: Some((Duration::ZERO, code.parse().expect("an exit code"))),
            logs,
            ..Script::default()
        };
        fake.script(&spec.service, script);
    }

    crate::contract_tests!(leg);
}
