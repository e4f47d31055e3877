//! The warm pool's matching and claim rules on the in-memory backend, under paused time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::pool::{self, FillOptions, Mismatch, Shape};
use super::*;
use crate::backend::fake::{Fake, Script};
use crate::backend::{Backend, ResolvedImage, Selector};
use crate::signals::Signals;
use crate::spec::{Environment, ImageRef};

/// `db` and `broker` pooled; `app` links to both and is started by each `up`.
const SHOP: &str = "\
name: shop
pool: {size: 1, services: [db, broker]}
services:
  db:
    image: shop/db
    tag: '1'
    env: {PASSWORD: secret}
  broker:
    image: shop/broker
    tag: '1'
  app:
    image: shop/app
    tag: '1'
    ports: [8080]
    links: ['db:oracle', broker]
";

fn environment(yaml: &str) -> Environment {
    crate::spec::parse(Path::new("shop.yaml"), yaml, &|_| None).expect("a valid environment")
}

fn image(reference: &str, digest: &str) -> ResolvedImage {
    let (repository, tag) = reference.split_once(':').expect("repo:tag");
    ResolvedImage {
        reference: ImageRef {
            repository: repository.into(),
            tag: tag.into(),
        },
        digest: Some(digest.into()),
        healthcheck: None,
    }
}

fn fake() -> Fake {
    let fake = Fake::new();
    fake.add_image(image("shop/db:1", "sha256:d1"));
    fake.add_image(image("shop/broker:1", "sha256:b1"));
    fake.add_image(image("shop/app:1", "sha256:a1"));
    fake
}

fn options() -> UpOptions {
    let mut options = super::on_fake::options(None, Duration::from_secs(60));
    options.owner = "tester".into();
    options
}

fn quiet() -> Progress {
    Arc::new(|_, _| {})
}

async fn fill(fake: &Fake, environment: &Environment) -> pool::Filled {
    let (signals, _sender) = Signals::manual();
    let options = FillOptions {
        up: options(),
        max_age: pool::DEFAULT_MAX_AGE,
    };
    pool::fill(fake, environment, &options, &quiet(), &signals)
        .await
        .expect("filled")
}

async fn up_with(fake: &Fake, environment: &Environment, options: &UpOptions) -> Started {
    let (signals, _sender) = Signals::manual();
    let outcome = up(fake, environment, options, &quiet(), &signals, &|_| {}).await;
    outcome.result.expect("started")
}

#[tokio::test(start_paused = true)]
async fn a_fill_starts_only_the_pooled_services_and_never_marks_them_ready() {
    let fake = fake();
    let shop = environment(SHOP);
    let filled = fill(&fake, &shop).await;
    assert_eq!(filled.created.len(), 1, "{filled:?}");
    let members = pool::members(&fake).await.unwrap();
    let member = &members[0];
    let services: Vec<&str> = member.services.iter().map(|s| s.service()).collect();
    assert_eq!(services, ["broker", "db"]);
    assert!(member.markers.member && !member.markers.ready);
    assert_eq!(
        pool::member_state(member, Utc::now()),
        pool::MemberState::Ready
    );
    // Never an environment: not for `ls`, `down --all`, the reaper or the gateway.
    assert!(inventory::list(&fake).await.unwrap().is_empty());
    // Full: a second pass starts nothing.
    assert!(fill(&fake, &shop).await.created.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_up_adopts_a_ready_member_and_creates_only_the_rest() {
    let fake = fake();
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    let started = up_with(&fake, &shop, &options()).await;
    assert_eq!(started.id, member, "the id is the member's");
    let created: Vec<String> = fake.calls_of("create_service");
    assert_eq!(
        created.len(),
        3,
        "db and broker at the fill, app at the up: {created:?}"
    );
    let listed = inventory::list(&fake).await.unwrap();
    assert_eq!(listed.len(), 1);
    let adopted = &listed[0];
    assert!(adopted.markers.ready && adopted.markers.adopted);
    assert_eq!(adopted.owner(), Some("tester"));
    assert!(pool::warm_for(adopted).is_some());
    assert_eq!(adopted.services.len(), 3);
    assert!(
        pool::members(&fake).await.unwrap().is_empty(),
        "adopted at most once"
    );
    // `down` of an adopted environment leaves nothing of it.
    super::down(&fake, std::slice::from_ref(&started.id), None)
        .await
        .unwrap();
    assert!(!fake.exists(&started.id));
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_ups_never_adopt_the_same_member() {
    let fake = fake();
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    let (first, second) = (options(), options());
    let (a, b) = tokio::join!(
        up_with(&fake, &shop, &first),
        up_with(&fake, &shop, &second)
    );
    assert_ne!(a.id, b.id);
    assert!([&a.id, &b.id].contains(&&member));
    let adopted = inventory::list(&fake).await.unwrap();
    let adopted: Vec<&str> = adopted
        .iter()
        .filter(|i| i.markers.adopted)
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(
        adopted,
        [member.as_str()],
        "one adopts, the other starts cold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_service_stopped_while_the_up_pulled_is_not_adopted() {
    let fake = Fake::new();
    fake.add_image(image("shop/db:1", "sha256:d1"));
    fake.add_image(image("shop/broker:1", "sha256:b1"));
    fake.add_remote_image(image("shop/app:1", "sha256:a1"), Duration::from_secs(10));
    // Every db exits 5 s after its start: the member's while the up pulls app's image (the
    // members were listed while the images resolved, with the member ready).
    fake.script(
        "db",
        Script {
            exits: Some((Duration::from_secs(5), 1)),
            ..Script::default()
        },
    );
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    let started = up_with(&fake, &shop, &options()).await;
    assert_ne!(
        started.id,
        member,
        "started cold, not on the member: {:?}",
        fake.calls()
    );
    assert!(
        !fake
            .calls_of("set_marker")
            .contains(&format!("{member}/adopt")),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn the_adoption_claim_is_exclusive() {
    let fake = fake();
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    let claim = crate::backend::Metadata::new(&member);
    fake.set_marker(&claim, crate::backend::Marker::Adopt)
        .await
        .unwrap();
    let again = fake.set_marker(&claim, crate::backend::Marker::Adopt).await;
    assert!(
        matches!(again, Err(crate::backend::BackendError::Taken(_))),
        "{again:?}"
    );
    // Taken by someone else meanwhile: this `up` starts cold, and does not wait.
    let started = up_with(&fake, &shop, &options()).await;
    assert_ne!(started.id, member);
}

#[tokio::test(start_paused = true)]
async fn up_with_a_name_or_a_ref_on_a_pooled_service_never_adopts() {
    let fake = fake();
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    let named = UpOptions {
        name: Some("mine".into()),
        ..options()
    };
    assert_eq!(up_with(&fake, &shop, &named).await.id, "mine");
    let reffed = UpOptions {
        prefix_tags: vec!["db".into()],
        ..options()
    };
    assert_ne!(up_with(&fake, &shop, &reffed).await.id, member);
    assert_eq!(
        pool::members(&fake).await.unwrap().len(),
        1,
        "still in the pool"
    );
    // A ref on a service that is not pooled still adopts.
    let app_ref = UpOptions {
        prefix_tags: vec!["app".into()],
        ..options()
    };
    assert_eq!(up_with(&fake, &shop, &app_ref).await.id, member);
}

#[tokio::test(start_paused = true)]
async fn a_member_of_an_older_image_does_not_match_and_the_next_fill_replaces_it() {
    let fake = fake();
    let shop = environment(SHOP);
    let old = fill(&fake, &shop).await.created[0].clone();
    fake.add_image(image("shop/db:1", "sha256:d2"));
    let members = pool::members(&fake).await.unwrap();
    let images = [
        ("db", image("shop/db:1", "sha256:d2")),
        ("broker", image("shop/broker:1", "sha256:b1")),
    ];
    let images = images
        .into_iter()
        .map(|(s, i)| (s.to_string(), i))
        .collect();
    let shape = Shape::of(&shop, shop.pool.as_ref().unwrap(), &images).unwrap();
    let why = pool::compare(
        &members[0],
        "shop",
        &shape,
        pool::DEFAULT_MAX_AGE,
        Utc::now(),
    );
    assert_eq!(
        why,
        Err(Mismatch::Image {
            service: "db".into(),
            image: "shop/db:1".into()
        })
    );
    assert!(
        why.unwrap_err()
            .to_string()
            .contains("changed since the member was filled")
    );
    let started = up_with(&fake, &shop, &options()).await;
    assert_ne!(started.id, old, "a cold start");
    let filled = fill(&fake, &shop).await;
    assert_eq!(filled.replaced.len(), 1, "{filled:?}");
    assert_eq!(filled.replaced[0].0, old);
    assert_eq!(filled.created.len(), 1);
    // The one member left is made from the new image.
    let members = pool::members(&fake).await.unwrap();
    assert_eq!(members.len(), 1);
    let now = Utc::now();
    assert_eq!(
        pool::compare(&members[0], "shop", &shape, pool::DEFAULT_MAX_AGE, now),
        Ok(())
    );
}

#[tokio::test(start_paused = true)]
async fn a_setting_that_differs_is_named_with_its_group() {
    let fake = fake();
    let shop = environment(SHOP);
    fill(&fake, &shop).await;
    let members = pool::members(&fake).await.unwrap();
    let other = environment(&SHOP.replace("PASSWORD: secret", "PASSWORD: other"));
    let images = [
        ("db", image("shop/db:1", "sha256:d1")),
        ("broker", image("shop/broker:1", "sha256:b1")),
    ];
    let images = images
        .into_iter()
        .map(|(s, i)| (s.to_string(), i))
        .collect();
    let shape = Shape::of(&other, other.pool.as_ref().unwrap(), &images).unwrap();
    let why = pool::compare(
        &members[0],
        "shop",
        &shape,
        pool::DEFAULT_MAX_AGE,
        Utc::now(),
    );
    let why = why.unwrap_err();
    assert_eq!(
        why,
        Mismatch::Settings {
            service: "db".into(),
            groups: vec!["env".into()]
        }
    );
    assert!(why.to_string().contains("`${VAR}`"), "{why}");
    // The same file matches.
    let same = Shape::of(&shop, shop.pool.as_ref().unwrap(), &images).unwrap();
    let now = Utc::now();
    assert_eq!(
        pool::compare(&members[0], "shop", &same, pool::DEFAULT_MAX_AGE, now),
        Ok(())
    );
    // Too old.
    let later = now + chrono::Duration::hours(25);
    let old = pool::compare(&members[0], "shop", &same, pool::DEFAULT_MAX_AGE, later);
    assert!(matches!(old, Err(Mismatch::Old(_))), "{old:?}");
}

#[tokio::test(start_paused = true)]
async fn a_member_that_failed_to_start_is_removed_and_reported() {
    let fake = fake();
    fake.script(
        "db",
        Script {
            exits: Some((Duration::from_secs(1), 3)),
            ..Script::default()
        },
    );
    let shop = environment(&SHOP.replace(
        "    env: {PASSWORD: secret}\n",
        "    env: {PASSWORD: secret}\n    ready: {log: never}\n",
    ));
    let filled = fill(&fake, &shop).await;
    assert!(filled.created.is_empty());
    assert_eq!(filled.failed.len(), 1, "{filled:?}");
    assert!(
        fake.list(&Selector::All).await.unwrap().is_empty(),
        "nothing left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_killed_adoption_is_an_unfinished_start_for_the_reaper() {
    let fake = fake();
    let shop = environment(SHOP);
    let member = fill(&fake, &shop).await.created[0].clone();
    // An adopter whose start deadline passed before it set the ready marker.
    let adopter = crate::backend::Metadata {
        environment: Some("shop".into()),
        start_deadline: Some(Utc::now() - chrono::Duration::hours(1)),
        created_at: Some(Utc::now() - chrono::Duration::hours(1)),
        run: Some("killed".into()),
        ..crate::backend::Metadata::new(&member)
    };
    fake.set_marker(&adopter, crate::backend::Marker::Adopt)
        .await
        .unwrap();
    let listed = inventory::list(&fake).await.unwrap();
    assert_eq!(listed.len(), 1, "no longer a member: an environment");
    assert_eq!(listed[0].state(Utc::now()), State::Unfinished);
    assert!(pool::members(&fake).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_fills_never_fill_above_the_size() {
    let fake = fake();
    let shop = environment(SHOP);
    // Each fill's start pauses at the engine after it counted the members: a cron fill and a
    // `--watch` fill on two hosts, both counting none.
    for _ in 0..2 {
        fake.fault(
            "admission",
            "*",
            crate::backend::fake::Fault::Delay(Duration::from_secs(1)),
        );
    }
    let (a, b) = tokio::join!(fill(&fake, &shop), fill(&fake, &shop));
    let members = pool::members(&fake).await.unwrap();
    assert_eq!(members.len(), 1, "size 1: {a:?} {b:?}");
    let skipped: Vec<&pool::Filled> = [&a, &b].into_iter().filter(|f| f.busy.is_some()).collect();
    assert_eq!(
        skipped.len(),
        1,
        "the other one skips, saying so: {a:?} {b:?}"
    );
    assert!(skipped[0].created.is_empty());
    assert!(
        fake.fill_claims().await.unwrap().is_empty(),
        "each fill releases its claim"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fill_claim_holds_only_while_its_filler_renews_it() {
    let fake = fake();
    let shop = environment(SHOP);
    // A fill on another host holds the pool: this one skips it.
    let elsewhere = crate::backend::Filler {
        nonce: "elsewhere".into(),
        environment: "shop".into(),
        started_by: Some("ci-7:42".into()),
        process: Some("another-boot:1:42:42".into()),
    };
    let until = Utc::now() + chrono::Duration::seconds(15);
    fake.claim_fill(&elsewhere, until).await.unwrap();
    let filled = fill(&fake, &shop).await;
    assert!(filled.created.is_empty(), "{filled:?}");
    let holder = filled.busy.expect("skipped");
    assert_eq!(holder.filler.started_by.as_deref(), Some("ci-7:42"));
    assert_eq!(
        fake.fill_claims().await.unwrap().len(),
        1,
        "its own released"
    );
    // Killed outright, a filler renews no more: once its claim expired (and a minute of grace
    // for late renewals and other hosts' clocks passed), the next fill fills, and removes it.
    let held = fake.fill_claims().await.unwrap()[0].native.clone();
    fake.release_fill(&held).await.unwrap();
    let expired = Utc::now() - chrono::Duration::seconds(61);
    fake.claim_fill(&elsewhere, expired).await.unwrap();
    let filled = fill(&fake, &shop).await;
    assert!(filled.busy.is_none(), "{filled:?}");
    assert_eq!(filled.created.len(), 1);
    assert!(fake.fill_claims().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_reaper_removes_an_expired_fill_claim_and_leaves_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::Store::new(dir.path());
    let fake = fake();
    let filler = |nonce: &str, environment: &str| crate::backend::Filler {
        nonce: nonce.into(),
        environment: environment.into(),
        started_by: Some("ci-7:42".into()),
        process: Some("another-boot:1:42:42".into()),
    };
    let now = Utc::now();
    fake.claim_fill(
        &filler("killed", "shop"),
        now - chrono::Duration::seconds(61),
    )
    .await
    .unwrap();
    fake.claim_fill(
        &filler("live", "other"),
        now + chrono::Duration::seconds(15),
    )
    .await
    .unwrap();
    crate::reaper::pass(&fake, &store, &reap_options(), now)
        .await
        .unwrap();
    let left: Vec<String> = fake
        .fill_claims()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.filler.nonce)
        .collect();
    assert_eq!(left, ["live"]);
}

fn reap_options() -> crate::reaper::Options {
    crate::reaper::Options {
        idle: Duration::from_secs(3600),
        remove_after: Duration::from_secs(3600),
        max_age: None,
        dry_run: false,
        environment: None,
        stop_erroring: false,
        pause_after: None,
    }
}

#[tokio::test(start_paused = true)]
async fn the_reaper_collects_a_member_whose_fill_was_killed_and_never_a_ready_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::Store::new(dir.path());
    let fake = fake();
    let ready = fill(&fake, &environment(SHOP)).await.created[0].clone();
    // A second fill, killed while its member's services start: no rollback runs.
    for _ in 0..2 {
        fake.fault("start_service", "*", crate::backend::fake::Fault::Hang);
    }
    let two = environment(&SHOP.replace("size: 1", "size: 2"));
    let killed = tokio::time::timeout(Duration::from_secs(5), fill(&fake, &two)).await;
    assert!(killed.is_err(), "the fill hangs until it is killed");
    let members = pool::members(&fake).await.unwrap();
    let half = members
        .iter()
        .find(|m| m.id != ready)
        .expect("a half-made member")
        .id
        .clone();
    // Its filler ran on another host: only its start deadline tells it is gone.
    fake.edit_metadata(&half, |m| m.process = Some("another-boot:1:42:42".into()));
    let now = Utc::now();
    let report = crate::reaper::pass(&fake, &store, &reap_options(), now)
        .await
        .unwrap();
    assert!(report.actions.is_empty(), "still filling: {report:?}");
    assert_eq!(pool::members(&fake).await.unwrap().len(), 2);
    let later = now + chrono::Duration::hours(1);
    let report = crate::reaper::pass(&fake, &store, &reap_options(), later)
        .await
        .unwrap();
    let acted: Vec<&str> = report.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(acted, [half.as_str()], "{report:?}");
    assert!(!fake.exists(&half), "nothing of it left");
    let members = pool::members(&fake).await.unwrap();
    let left: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(left, [ready.as_str()], "a ready member is never reaped");
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_fill_renews_its_claim_no_more_is_reaped_before_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::Store::new(dir.path());
    let fake = fake();
    for _ in 0..2 {
        fake.fault("start_service", "*", crate::backend::fake::Fault::Hang);
    }
    let shop = environment(SHOP);
    let killed = tokio::time::timeout(Duration::from_secs(5), fill(&fake, &shop)).await;
    assert!(killed.is_err(), "the fill hangs until it is killed");
    let half = pool::members(&fake).await.unwrap()[0].id.clone();
    fake.edit_metadata(&half, |m| m.process = Some("another-boot:1:42:42".into()));
    // Killed on another host, where only its claim tells: its start deadline (60 s, and a
    // minute of grace) has not passed yet.
    let claims = fake.fill_claims().await.unwrap();
    assert_eq!(claims.len(), 1);
    let (soon, later) = (
        Utc::now() + chrono::Duration::seconds(30),
        Utc::now() + chrono::Duration::seconds(90),
    );
    let claim = &claims[0];
    let renewed = later + chrono::Duration::seconds(15);
    fake.renew_fill(&claim.native, &claim.filler, renewed)
        .await
        .unwrap();
    let report = crate::reaper::pass(&fake, &store, &reap_options(), later)
        .await
        .unwrap();
    assert!(
        report.actions.is_empty(),
        "its claim still holds: {report:?}"
    );
    // It renews no more.
    fake.release_fill(&claim.native).await.unwrap();
    let report = crate::reaper::pass(&fake, &store, &reap_options(), soon)
        .await
        .unwrap();
    assert!(
        report.actions.is_empty(),
        "made too recently to tell: {report:?}"
    );
    let report = crate::reaper::pass(&fake, &store, &reap_options(), later)
        .await
        .unwrap();
    let acted: Vec<&str> = report.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(acted, [half.as_str()], "{report:?}");
    assert!(
        report.actions[0]
            .reason
            .to_string()
            .contains("no fill holds its pool"),
        "{report:?}"
    );
    assert!(!fake.exists(&half));
}

#[tokio::test(start_paused = true)]
async fn a_claim_renewed_late_or_read_by_a_skewed_clock_keeps_its_fill_and_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::Store::new(dir.path());
    let fake = fake();
    for _ in 0..2 {
        fake.fault("start_service", "*", crate::backend::fake::Fault::Hang);
    }
    let shop = environment(SHOP);
    let killed = tokio::time::timeout(Duration::from_secs(5), fill(&fake, &shop)).await;
    assert!(killed.is_err(), "the fill hangs");
    let half = pool::members(&fake).await.unwrap()[0].id.clone();
    fake.edit_metadata(&half, |m| m.process = Some("another-boot:1:42:42".into()));
    // Its fill runs on another host, whose last renewal is 20 s late by this host's clock.
    for claim in fake.fill_claims().await.unwrap() {
        fake.release_fill(&claim.native).await.unwrap();
    }
    let later = Utc::now() + chrono::Duration::seconds(90);
    let elsewhere = crate::backend::Filler {
        nonce: "elsewhere".into(),
        environment: "shop".into(),
        started_by: Some("ci-7:42".into()),
        process: Some("another-boot:1:42:42".into()),
    };
    let late = later - chrono::Duration::seconds(20);
    fake.claim_fill(&elsewhere, late).await.unwrap();
    let report = crate::reaper::pass(&fake, &store, &reap_options(), later)
        .await
        .unwrap();
    assert!(report.actions.is_empty(), "still filling: {report:?}");
    assert!(fake.exists(&half));
    assert_eq!(
        fake.fill_claims().await.unwrap().len(),
        1,
        "a claim within its grace is kept"
    );
    // Past the grace, it is dead: the claim goes, and the member with it.
    let dead = later + chrono::Duration::seconds(61);
    crate::reaper::pass(&fake, &store, &reap_options(), dead)
        .await
        .unwrap();
    assert!(fake.fill_claims().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fill_whose_claim_was_removed_claims_its_pool_again() {
    let fake = fake();
    for _ in 0..2 {
        let slow = crate::backend::fake::Fault::Delay(Duration::from_secs(30));
        fake.fault("start_service", "*", slow);
    }
    let shop = environment(SHOP);
    let (filled, ()) = tokio::join!(fill(&fake, &shop), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let first = fake.fill_claims().await.unwrap();
        assert_eq!(first.len(), 1);
        // Swept by another host while it looked expired there.
        fake.release_fill(&first[0].native).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let again = fake.fill_claims().await.unwrap();
        assert_eq!(again.len(), 1, "claimed again: {again:?}");
        assert_ne!(again[0].native, first[0].native);
        assert_eq!(again[0].filler.environment, "shop");
    });
    assert_eq!(filled.created.len(), 1, "{filled:?}");
    assert!(
        fake.fill_claims().await.unwrap().is_empty(),
        "the new claim released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fill_whose_claim_was_taken_over_leaves_the_pool_to_the_new_holder() {
    let fake = fake();
    for _ in 0..2 {
        let slow = crate::backend::fake::Fault::Delay(Duration::from_secs(30));
        fake.fault("start_service", "*", slow);
    }
    let shop = environment(SHOP);
    let elsewhere = crate::backend::Filler {
        nonce: "elsewhere".into(),
        environment: "shop".into(),
        started_by: Some("ci-7:42".into()),
        process: Some("another-boot:1:42:42".into()),
    };
    let (filled, ()) = tokio::join!(fill(&fake, &shop), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let first = fake.fill_claims().await.unwrap();
        fake.release_fill(&first[0].native).await.unwrap();
        // Another fill claimed the pool meanwhile.
        let until = Utc::now() + chrono::Duration::hours(1);
        fake.claim_fill(&elsewhere, until).await.unwrap();
    });
    assert_eq!(
        filled.created.len(),
        1,
        "the member under way finishes: {filled:?}"
    );
    let left: Vec<String> = fake
        .fill_claims()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.filler.nonce)
        .collect();
    assert_eq!(left, ["elsewhere"], "the holder's claim only");
}

const MIB: u64 = 1 << 20;

/// Room for one environment of three services at 100 MiB each, and no more.
fn room_for_one() -> crate::backend::Capacity {
    crate::backend::Capacity {
        max_environments: Some(1),
        max_memory: Some(300 * MIB),
        default_memory: Some(100 * MIB),
        ..Default::default()
    }
}

fn waiting_briefly() -> UpOptions {
    UpOptions {
        admission: admission::AdmitOptions {
            queue_timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        },
        ..options()
    }
}

#[tokio::test(start_paused = true)]
async fn an_up_that_adopts_is_charged_only_what_it_adds_to_the_member() {
    let fake = fake();
    let shop = environment(SHOP);
    fake.set_capacity(Some(&room_for_one())).await.unwrap();
    let member = fill(&fake, &shop).await.created[0].clone();
    let members = pool::members(&fake).await.unwrap();
    assert_eq!(
        members[0].metadata.memory,
        Some(200 * MIB),
        "a member reserves what it runs: its two pooled services"
    );
    // The member fills the capacity's one environment; the up adds `app`'s 100 MiB to it.
    let started = up_with(&fake, &shop, &waiting_briefly()).await;
    assert_eq!(started.id, member, "adopted, not retired for a cold start");
    let listed = inventory::list(&fake).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].metadata.memory,
        Some(300 * MIB),
        "the adopted environment reserves its whole cost"
    );
}

/// Another `up` adopts `member` between this one's admission and its claim: at the first
/// marker this one sets (its own adoption's). Says whether it did.
fn another_up_takes(fake: &Fake, member: &str) -> Arc<std::sync::atomic::AtomicBool> {
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let other = fake.clone();
    let taken = Arc::new(AtomicBool::new(false));
    let once = taken.clone();
    let id = member.to_string();
    fake.on("set_marker", move || {
        if once.swap(true, Ordering::SeqCst) {
            return;
        }
        let adopter = crate::backend::Metadata {
            environment: Some("shop".into()),
            start_deadline: Some(Utc::now() + chrono::Duration::minutes(10)),
            created_at: Some(Utc::now()),
            run: Some("the-other-up".into()),
            ..crate::backend::Metadata::new(&id)
        };
        let adopting = other.set_marker(&adopter, crate::backend::Marker::Adopt);
        adopting.now_or_never().expect("at once").expect("adopted");
    });
    taken
}

#[tokio::test(start_paused = true)]
async fn an_up_that_loses_its_member_to_another_waits_for_its_whole_environment() {
    use std::sync::atomic::Ordering;
    let fake = fake();
    let shop = environment(SHOP);
    fake.set_capacity(Some(&room_for_one())).await.unwrap();
    let member = fill(&fake, &shop).await.created[0].clone();
    let taken = another_up_takes(&fake, &member);
    let (signals, _sender) = Signals::manual();
    let outcome = up(
        &fake,
        &shop,
        &waiting_briefly(),
        &quiet(),
        &signals,
        &|_| {},
    )
    .await;
    assert!(taken.load(Ordering::SeqCst));
    let error = outcome.result.expect_err("no room for a cold start");
    assert!(matches!(error, StartError::Admission(_)), "{error}");
    let listed = inventory::list(&fake).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [member.as_str()], "never over the capacity");
}

/// `--timeout 10s --queue-timeout QUEUE`.
fn impatient_start_patient_queue(queue: Duration) -> UpOptions {
    UpOptions {
        timeout: Duration::from_secs(10),
        admission: admission::AdmitOptions {
            queue_timeout: Some(queue),
            ..Default::default()
        },
        ..options()
    }
}

/// Every look at the admission queue takes `latency`, as on an engine: a call made after a
/// deadline passed is given up then, where an answer at once would still win the race.
fn answering_after(fake: &Fake, latency: Duration) {
    let slowed = fake.clone();
    fake.on("admission", move || {
        slowed.fault(
            "admission",
            "*",
            crate::backend::fake::Fault::Delay(latency),
        )
    });
}

/// One `--queue-timeout` bounds every wait of a start: a readmission waits only what its first
/// wait left of it (it waited the whole of it again before), and the time between the two
/// waits is not charged to it.
#[tokio::test(start_paused = true)]
async fn a_readmission_waits_only_what_is_left_of_the_queue_timeout() {
    use crate::backend::{Priority, Waiter};
    use futures_util::FutureExt;
    use std::sync::atomic::Ordering;
    let shop = environment(SHOP);
    let fake = fake();
    fake.set_capacity(Some(&room_for_one())).await.unwrap();
    let member = fill(&fake, &shop).await.created[0].clone();
    // Someone ahead in line for 20 s: then this start is admitted as adopting, loses its member
    // to another start, and room for a cold start never comes.
    let ahead = Waiter {
        nonce: "ahead".into(),
        priority: Priority::High,
        owner: None,
        environment: Some("other".into()),
        started_by: None,
        memory: 0,
        admitted: false,
    };
    let until = Utc::now() + chrono::Duration::hours(1);
    let native = fake.enqueue_by_hand(&ahead, until);
    let leaving = tokio::spawn({
        let fake = fake.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            fake.dequeue(&native).now_or_never().unwrap().unwrap();
        }
    });
    // Resolving an image after its admission takes 2 s: no wait in the queue.
    fake.fault(
        "resolve_image",
        "*",
        crate::backend::fake::Fault::Delay(Duration::from_secs(2)),
    );
    let taken = another_up_takes(&fake, &member);
    answering_after(&fake, Duration::from_millis(5));
    let began = tokio::time::Instant::now();
    let options = impatient_start_patient_queue(Duration::from_secs(30));
    let (signals, _sender) = Signals::manual();
    let outcome = up(&fake, &shop, &options, &quiet(), &signals, &|_| {}).await;
    leaving.await.unwrap();
    assert!(taken.load(Ordering::SeqCst));
    let error = outcome.result.expect_err("no room for a cold start");
    assert!(
        error
            .to_string()
            .starts_with("gave up waiting for capacity after 30s"),
        "{error}"
    );
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(32) && waited < Duration::from_secs(37),
        "took {waited:?} in all for a --queue-timeout of 30s and 2 s resolving an image"
    );
    let listed = inventory::list(&fake).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [member.as_str()], "nothing created");
}

/// An `up` that lost its member waits in the queue again for its whole environment: that wait
/// is the queue's, bounded by `--queue-timeout` alone, and `--timeout` counts from the
/// readmission, as it counts from the first admission.
#[tokio::test(start_paused = true)]
async fn a_readmission_waits_on_the_queue_timeout_not_the_start_timeout() {
    use std::sync::atomic::Ordering;
    let shop = environment(SHOP);
    {
        // The other start's environment goes a minute later, six times this one's --timeout:
        // room for this one, which starts cold.
        let fake = fake();
        fake.set_capacity(Some(&room_for_one())).await.unwrap();
        let member = fill(&fake, &shop).await.created[0].clone();
        let taken = another_up_takes(&fake, &member);
        answering_after(&fake, Duration::from_millis(5));
        let freeing = tokio::spawn({
            let (fake, member) = (fake.clone(), member.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let other = inventory::find(&fake, &member).await.unwrap().unwrap();
                remove(&fake, &other, None).await.unwrap();
            }
        });
        let (signals, _sender) = Signals::manual();
        let began = tokio::time::Instant::now();
        let options = impatient_start_patient_queue(Duration::from_secs(600));
        let outcome = up(&fake, &shop, &options, &quiet(), &signals, &|_| {}).await;
        freeing.await.unwrap();
        assert!(taken.load(Ordering::SeqCst));
        let started = match outcome.result {
            Ok(started) => started,
            Err(error) => panic!("the wait for readmission is not the start's: {error}"),
        };
        assert!(began.elapsed() >= Duration::from_secs(60), "it waited");
        let listed = inventory::list(&fake).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, [started.id.as_str()]);
    }
    {
        // Room never comes: the wait ends at --queue-timeout, as the queue's own (exit 2), with
        // nothing created, however shorter --timeout is.
        let fake = fake();
        fake.set_capacity(Some(&room_for_one())).await.unwrap();
        let member = fill(&fake, &shop).await.created[0].clone();
        let taken = another_up_takes(&fake, &member);
        answering_after(&fake, Duration::from_millis(5));
        let began = tokio::time::Instant::now();
        let options = impatient_start_patient_queue(Duration::from_secs(30));
        let (signals, _sender) = Signals::manual();
        let outcome = up(&fake, &shop, &options, &quiet(), &signals, &|_| {}).await;
        assert!(taken.load(Ordering::SeqCst));
        let error = outcome.result.expect_err("no room for a cold start");
        assert!(
            matches!(
                &error,
                StartError::Admission(e) if matches!(**e, admission::AdmissionError::QueueTimeout { .. })
            ),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("gave up waiting for capacity after 30s"),
            "{error}"
        );
        assert!(began.elapsed() >= Duration::from_secs(30), "it waited");
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        let listed = inventory::list(&fake).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, [member.as_str()], "nothing created");
        assert!(
            fake.calls_of("create_isolation").len() <= 1,
            "no network but the member's: {:?}",
            fake.calls_of("create_isolation")
        );
    }
}
