//! The warm pool: pre-started copies of an environment's pooled services ("members"), filled by
//! `envctl pool fill` and adopted whole by the next `up` (see `docs/pool.md`).
//!
//! A member is an environment of its own on the engine, started by `up`'s own machinery with
//! only the pooled services in scope: its resources carry the member's id and, in
//! `Metadata::pool`, a fingerprint of each pooled service as filled (image digest, settings
//! after interpolation, aliases, readiness). Once its services are ready it gets the member
//! marker; it never gets the ready marker. An `up` adopts it by creating the adoption marker,
//! whose name the engine keeps unique (one winner on any host) and whose labels carry the
//! adopter's metadata, which wins when listing: from then on the member is that `up`'s
//! environment, unfinished until it sets the ready marker, and never a member again.
//!
//! One fill per pool at a time: a fill first claims the pool on the engine (a marker whose
//! name carries its expiry, renewed every [`FILL_RENEW_EVERY`] as an admission entry is), and
//! of the live claims on one pool the oldest by the engine's clock fills; any other fill skips
//! that pool and says who fills it. A filler killed outright stops renewing: its claim holds
//! no longer than [`FILL_TTL`] (at once on its own host, where its process is seen gone), and
//! the next fill or the reaper removes it once it is a minute ([`FILL_GRACE`]) past its expiry
//! (late renewals, other hosts' clocks). A fill that finds its claim removed claims again. The members a killed fill left half-made are
//! unfinished starts to the reaper, which removes them; a ready member it never touches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use super::inventory::Instance;
use super::up::{PoolUse, UpOptions, UpOutcome, service_spec_for};
use super::{Progress, StartError, teardown};
use crate::backend::{
    Backend, BackendError, BackendKind, Filler, Filling, Marker, ResolvedImage, Selector,
    ServiceState,
};
use crate::naming::codec::Metadata;
use crate::signals::Signals;
use crate::spec::{Environment, Pool};

/// Members older than this are replaced at the next fill.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long a fill's claim on its pool holds without a renewal: a filler killed outright
/// frees the pool for other fills within this.
pub const FILL_TTL: Duration = Duration::from_secs(15);
/// How often a fill renews its claim: three chances before it expires.
pub const FILL_RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long past its expiry a claim whose filler is not seen gone still counts as live when
/// judged dead (removed by a sweep, or its pool's members reaped): a renewal late on a loaded
/// engine, or another host's clock off by seconds, must not cost a live fill its claim.
pub const FILL_GRACE: Duration = Duration::from_secs(60);

/// Whether `instance` is a pool member (filling, ready or failed), not an environment: `ls`,
/// `down --all`, the reaper and the gateway never see one.
pub fn is_member(instance: &Instance) -> bool {
    instance.metadata.pool.is_some()
}

/// What a start would create of the pooled services, to compare with what a member was made
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// `IMAGE.SETTINGS` per pooled service: two short digests.
    pub fingerprints: BTreeMap<String, String>,
    /// Each pooled service's image, for messages.
    pub images: BTreeMap<String, String>,
    /// Each pooled service's settings digests, as its container is labelled, to say which
    /// group differs.
    pub settings: BTreeMap<String, BTreeMap<String, String>>,
}

fn digest(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Shape {
    /// The pooled services of `environment` as they would be created from `images`.
    pub fn of(
        environment: &Environment,
        pool: &Pool,
        images: &BTreeMap<String, ResolvedImage>,
    ) -> Option<Shape> {
        let mut shape = Shape {
            fingerprints: BTreeMap::new(),
            images: BTreeMap::new(),
            settings: BTreeMap::new(),
        };
        for name in &pool.services {
            let service = environment.services.get(name)?;
            let image = images.get(name)?.clone();
            let spec = service_spec_for(environment, service, &Metadata::new(""), image, None);
            let image_part = digest(&format!(
                "{}@{}",
                spec.image.reference,
                spec.image.digest.as_deref().unwrap_or("")
            ));
            let mut aliases = spec.aliases.clone();
            aliases.sort();
            let settings_part = digest(&format!(
                "{:?}|{:?}|{:?}|{:?}|{aliases:?}|{:?}|{:?}",
                spec.command,
                spec.env,
                spec.runtime,
                spec.depends_on,
                spec.ready,
                spec.image.healthcheck
            ));
            shape
                .fingerprints
                .insert(name.clone(), format!("{image_part}.{settings_part}"));
            shape
                .images
                .insert(name.clone(), spec.image.reference.to_string());
            shape
                .settings
                .insert(name.clone(), spec.service_metadata().settings);
        }
        Some(shape)
    }
}

/// Why a member is not adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// It belongs to another environment.
    Environment(String),
    /// Its pooled services are not the ones the file pools now.
    Services {
        member: Vec<String>,
        wanted: Vec<String>,
    },
    /// The image of a pooled service changed since the fill.
    Image { service: String, image: String },
    /// A pooled service's settings differ: the groups that do (`env`, `command`...), empty
    /// when only aliases, readiness or dependencies differ.
    Settings {
        service: String,
        groups: Vec<String>,
    },
    /// Older than the maximum age.
    Old(Duration),
    /// Not ready to be adopted.
    State(MemberState),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Environment(name) => write!(f, "it is a member of `{name}`"),
            Mismatch::Services { member, wanted } => write!(
                f,
                "it pools {} and the file pools {}",
                member.join(", "),
                wanted.join(", ")
            ),
            Mismatch::Image { service, image } => write!(
                f,
                "the image `{image}` of `{service}` changed since the member was filled"
            ),
            Mismatch::Settings { service, groups } if groups.iter().any(|g| g == "env") => write!(
                f,
                "the settings of `{service}` differ ({}): a `${{VAR}}` in the file may have \
                 another value for the filler than here",
                groups.join(", ")
            ),
            Mismatch::Settings { service, groups } if groups.is_empty() => write!(
                f,
                "`{service}` differs in its aliases, dependencies or readiness"
            ),
            Mismatch::Settings { service, groups } => {
                write!(
                    f,
                    "the settings of `{service}` differ ({})",
                    groups.join(", ")
                )
            }
            Mismatch::Old(age) => write!(
                f,
                "it is older than the maximum age ({})",
                humantime::format_duration(*age)
            ),
            Mismatch::State(state) => write!(f, "it is {state}"),
        }
    }
}

/// Where a member is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    /// `pool fill` is starting its services.
    Filling,
    /// Ready to be adopted.
    Ready,
    /// Its fill never finished, or a service stopped since: the next fill replaces it.
    Failed(String),
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberState::Filling => f.write_str("filling"),
            MemberState::Ready => f.write_str("ready"),
            MemberState::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The state of a member at `now`.
pub fn member_state(member: &Instance, now: DateTime<Utc>) -> MemberState {
    if member.markers.member {
        let stopped = member
            .services
            .iter()
            .find(|s| s.status.state != ServiceState::Running && !s.finished_job());
        return match stopped {
            Some(s) => {
                MemberState::Failed(format!("`{}` is {}", s.service(), s.status.state.as_str()))
            }
            None => MemberState::Ready,
        };
    }
    match member.unfinished(now) {
        Some(why) => MemberState::Failed(format!("its fill never finished: {why}")),
        None => MemberState::Filling,
    }
}

/// Why the reaper removes `member`, if it does: its fill never finished and never will. Either
/// by the rules of unfinished starts (its filler is seen gone, or its start deadline passed),
/// or, with `claims` the fill claims listed at `now` before the member was, because no fill
/// held its pool then although the member was made well before: a fill holds its claim, and
/// renews it, until each of its members is ready or removed. Never a member that got the
/// member marker: a ready one waits for an `up`, and one whose service stopped since is the
/// next fill's to replace.
pub fn abandoned(
    member: &Instance,
    claims: Option<&[Filling]>,
    now: DateTime<Utc>,
) -> Option<String> {
    if member.markers.member {
        return None;
    }
    if let Some(why) = member.unfinished(now) {
        return Some(format!("a pool member whose fill never finished: {why}"));
    }
    // A member made just before the claims were listed may be of a fill that claimed after;
    // a minute covers that, and the hosts' clocks.
    let made = member.created_at()?;
    if made + chrono::Duration::minutes(1) > now {
        return None;
    }
    let filled = claims?
        .iter()
        .any(|c| c.filler.environment == member.environment() && may_hold(c, now));
    (!filled).then(|| {
        "a pool member whose fill never finished: no fill holds its pool any more".to_string()
    })
}

/// Whether `member` is what a start of `environment` shaped `wanted` would create of its pooled
/// services, and ready: the first reason it is not.
pub fn compare(
    member: &Instance,
    environment: &str,
    wanted: &Shape,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<(), Mismatch> {
    if member.environment() != environment {
        return Err(Mismatch::Environment(member.environment().to_string()));
    }
    let fingerprints = member.metadata.pool.clone().unwrap_or_default();
    let pooled: Vec<String> = fingerprints.keys().cloned().collect();
    let wanted_services: Vec<String> = wanted.fingerprints.keys().cloned().collect();
    if pooled != wanted_services {
        return Err(Mismatch::Services {
            member: pooled,
            wanted: wanted_services,
        });
    }
    for (service, fingerprint) in &wanted.fingerprints {
        let has = &fingerprints[service];
        if has == fingerprint {
            continue;
        }
        let (has_image, _) = has.split_once('.').unwrap_or((has, ""));
        let (wanted_image, _) = fingerprint.split_once('.').unwrap_or((fingerprint, ""));
        if has_image != wanted_image {
            return Err(Mismatch::Image {
                service: service.clone(),
                image: wanted.images[service].clone(),
            });
        }
        let labelled = member
            .services
            .iter()
            .find(|s| s.service() == service)
            .map(|s| s.metadata.settings.clone())
            .unwrap_or_default();
        let groups = wanted.settings[service]
            .iter()
            .filter(|(group, digest)| labelled.get(*group) != Some(digest))
            .map(|(group, _)| group.clone())
            .collect();
        return Err(Mismatch::Settings {
            service: service.clone(),
            groups,
        });
    }
    let age = age(member, now);
    if age > max_age {
        return Err(Mismatch::Old(age));
    }
    match member_state(member, now) {
        MemberState::Ready => Ok(()),
        other => Err(Mismatch::State(other)),
    }
}

/// How long ago the member was filled.
pub fn age(member: &Instance, now: DateTime<Utc>) -> Duration {
    let created = member.created_at().unwrap_or(now);
    (now - created).to_std().unwrap_or_default()
}

/// Every member on the engine, oldest first.
pub async fn members(backend: &dyn Backend) -> Result<Vec<Instance>, BackendError> {
    let listed = backend.list(&Selector::All).await?;
    Ok(listed.into_iter().filter(is_member).collect())
}

/// `instances` less the member a start of `environment` shaped `wanted` would adopt, the
/// oldest that matches (`up` takes the oldest first): it counts against the capacity already,
/// as a member, so the start is charged only what it adds to it. All of them when `wanted`
/// is `None` or no member matches.
pub fn without_adoptable(
    mut instances: Vec<Instance>,
    environment: &str,
    wanted: Option<&Shape>,
    now: DateTime<Utc>,
) -> Vec<Instance> {
    let Some(wanted) = wanted else {
        return instances;
    };
    let adoptable = instances.iter().position(|i| {
        is_member(i) && compare(i, environment, wanted, DEFAULT_MAX_AGE, now).is_ok()
    });
    if let Some(index) = adoptable {
        instances.remove(index);
    }
    instances
}

/// What a start asks the capacity for: a fill only its pooled services, which are all a
/// member runs; any other start its whole environment.
pub(super) fn request(environment: &Environment, options: &UpOptions) -> super::admission::Request {
    let mut request = super::admission::Request::of(environment, &options.owner);
    if let (PoolUse::Fill, Some(pool)) = (options.pool, &environment.pool) {
        request.limits = environment
            .services
            .values()
            .filter(|s| pool.services.contains(&s.name))
            .map(|s| s.runtime.mem_limit.map(|b| b.0))
            .collect();
    }
    request
}

/// The pooled services of `environment` as a member that this start may adopt has them, from
/// the images on the engine now; `None` when it adopts none (see [`no_adoption`]).
pub(super) async fn adoptable_shape(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
) -> Option<Shape> {
    let pool = adoptable_pool(backend, environment, options)?;
    current_shape(backend, environment, pool)
        .await
        .ok()
        .flatten()
}

/// The members `up` may adopt for `environment` shaped `wanted`, oldest first, and why each
/// other member of it does not match (`up -v` says so).
pub(super) fn candidates(
    members: Vec<Instance>,
    environment: &str,
    wanted: &Shape,
    now: DateTime<Utc>,
) -> Vec<Instance> {
    let mut adoptable = Vec::new();
    for member in members {
        if member.environment() != environment {
            continue;
        }
        match compare(&member, environment, wanted, DEFAULT_MAX_AGE, now) {
            Ok(()) => adoptable.push(member),
            Err(why) => tracing::info!("pool member {} does not match: {why}", member.id),
        }
    }
    adoptable
}

/// How old a listing of the members may be when `up` matches them: the one read while the
/// images were resolved is used when that took less (the images were here), else the members
/// are listed again, so that a member whose services stopped during a pull or a build is not
/// adopted.
const FRESH: Duration = Duration::from_secs(1);

/// The members on the engine, as listed at `at`.
pub(super) struct Listed {
    at: tokio::time::Instant,
    members: Result<Vec<Instance>, BackendError>,
}

impl Listed {
    /// The members, listed again if this listing is older than [`FRESH`].
    pub(super) async fn fresh(self, backend: &dyn Backend) -> Result<Vec<Instance>, BackendError> {
        match self.at.elapsed() <= FRESH {
            true => self.members,
            false => members(backend).await,
        }
    }
}

/// The members on the engine when this start may adopt one (see [`no_adoption`]), read while
/// its images are resolved; `None` when it adopts none.
pub(super) async fn prefetch_members(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
) -> Option<Listed> {
    if options.pool == PoolUse::Fill || environment.pool.is_none() {
        return None;
    }
    if let Some(why) = no_adoption(backend, environment, options) {
        tracing::info!("no pool member adopted: {why}");
        return None;
    }
    // Its age counts from the request: the engine may answer late.
    let at = tokio::time::Instant::now();
    let members = members(backend).await;
    Some(Listed { at, members })
}

/// The pool of which this start may adopt a member: none for a fill, without a pool, or when
/// [`no_adoption`] says why not.
fn adoptable_pool<'e>(
    backend: &dyn Backend,
    environment: &'e Environment,
    options: &UpOptions,
) -> Option<&'e Pool> {
    if options.pool == PoolUse::Fill || no_adoption(backend, environment, options).is_some() {
        return None;
    }
    environment.pool.as_ref()
}

/// Why `up` does not look for a member of the file's pool at all, when it does not.
pub(super) fn no_adoption(
    backend: &dyn Backend,
    environment: &Environment,
    options: &UpOptions,
) -> Option<String> {
    let pool = environment.pool.as_ref()?;
    if options.name.is_some() && options.pool != PoolUse::AdoptElseNamed {
        return Some("`--name` never adopts a pool member".into());
    }
    if backend.info().kind != BackendKind::Docker {
        return Some(format!("pools work on Docker, not {}", backend.info().kind));
    }
    if let Some(service) = options
        .prefix_tags
        .iter()
        .find(|s| pool.services.contains(*s))
    {
        return Some(format!(
            "`{service}@REF` asks for another build of a pooled service than the pool's"
        ));
    }
    if let Some(missing) = pool
        .services
        .iter()
        .find(|s| !environment.services.contains_key(*s))
    {
        return Some(format!(
            "the pooled service `{missing}` is not started here"
        ));
    }
    None
}

/// Takes `member` out of the pool and removes it. The adoption marker goes first, so an `up`
/// adopting it at the same moment either wins (and the member is left to it: `Ok(false)`) or
/// finds it taken.
pub async fn retire(backend: &dyn Backend, member: &Instance) -> Result<bool, BackendError> {
    let metadata = Metadata {
        run: Some(super::up::run_nonce()),
        environment: member.metadata.environment.clone(),
        created_at: member.metadata.created_at,
        // Not a start: nothing for the reaper to wait for, should this removal die half-way.
        start_deadline: Some(Utc::now()),
        ..Metadata::new(&member.id)
    };
    if !member.markers.adopted {
        match backend.set_marker(&metadata, Marker::Adopt).await {
            Ok(()) => {}
            Err(BackendError::Taken(_)) => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    let Some(now) = super::inventory::find(backend, &member.id).await? else {
        return Ok(true);
    };
    if now.metadata.run != metadata.run && !member.markers.adopted {
        return Ok(false);
    }
    match teardown::remove(backend, &now, None).await {
        Ok(()) => Ok(true),
        Err(teardown::TeardownError::Backend(error)) => Err(error),
        Err(other) => Err(BackendError::operation(
            format!("remove pool member `{}`", member.id),
            other,
        )),
    }
}

/// Options of one `pool fill`.
#[derive(Debug, Clone)]
pub struct FillOptions {
    /// As `up` takes them: owner, timeout, pull policy, files.
    pub up: UpOptions,
    pub max_age: Duration,
}

/// What one fill of one environment did.
#[derive(Debug, Default)]
pub struct Filled {
    pub environment: String,
    /// Members started, by id.
    pub created: Vec<String>,
    /// Members removed, with why.
    pub replaced: Vec<(String, String)>,
    /// Members that failed to start (and were removed), with why.
    pub failed: Vec<StartError>,
    /// Members that could not be removed, with why.
    pub left: Vec<(String, String)>,
    /// Another fill holds the pool: this one did nothing.
    pub busy: Option<Filling>,
}

/// Refuses what cannot hold a pool, before anything is created.
pub fn check_backend(backend: &dyn Backend) -> Result<(), BackendError> {
    match backend.info().kind {
        BackendKind::Docker => Ok(()),
        kind => Err(BackendError::Unsupported {
            backend: kind,
            operation: "keep a warm pool",
            hint: "pools work on a Docker engine: a swarm schedules each service on a node of \
                   its choosing, and a member's services would have to stay where they are"
                .into(),
        }),
    }
}

/// One pass over `environment`'s pool, unless another fill holds it (then `busy` says which):
/// removes members that failed, grew too old or no longer match the file, then starts members
/// until `size` are ready or filling.
pub async fn fill(
    backend: &dyn Backend,
    environment: &Environment,
    options: &FillOptions,
    progress: &Progress,
    signals: &Signals,
) -> Result<Filled, BackendError> {
    check_backend(backend)?;
    let mut filled = Filled {
        environment: environment.name.clone(),
        ..Filled::default()
    };
    let Some(pool) = &environment.pool else {
        return Ok(filled);
    };
    let (native, filler) = match claim(backend, &environment.name).await? {
        Ok(held) => held,
        Err(holder) => {
            filled.busy = Some(holder);
            return Ok(filled);
        }
    };
    let filling = fill_held(
        backend,
        environment,
        pool,
        options,
        progress,
        signals,
        filled,
    );
    let (result, held) = renewing(backend, &environment.name, native, filler, filling).await;
    let Some(native) = held else {
        return result;
    };
    // Bounded: a claim left behind expires on its own.
    let releasing = backend.release_fill(&native);
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(5), releasing).await {
        tracing::debug!(
            "cannot release the fill claim of `{}`: {error}",
            environment.name
        );
    }
    result
}

/// The rest of [`fill`], once it holds the pool.
async fn fill_held(
    backend: &dyn Backend,
    environment: &Environment,
    pool: &Pool,
    options: &FillOptions,
    progress: &Progress,
    signals: &Signals,
    mut filled: Filled,
) -> Result<Filled, BackendError> {
    let now = Utc::now();
    let wanted = current_shape(backend, environment, pool).await?;
    let mut kept = 0;
    for member in members(backend).await? {
        if member.environment() != environment.name {
            continue;
        }
        let why = match (member_state(&member, now), &wanted) {
            (MemberState::Failed(why), _) => Some(why),
            (MemberState::Filling, _) => None,
            (MemberState::Ready, Some(wanted)) => {
                compare(&member, &environment.name, wanted, options.max_age, now)
                    .err()
                    .map(|m| m.to_string())
            }
            // An image not on the engine yet: the new members pull it; the age still counts.
            (MemberState::Ready, None) => (age(&member, now) > options.max_age)
                .then(|| Mismatch::Old(age(&member, now)).to_string()),
        };
        match why {
            None => kept += 1,
            Some(why) => match retire(backend, &member).await {
                Ok(true) => filled.replaced.push((member.id.clone(), why)),
                Ok(false) => {}
                Err(error) => filled.left.push((member.id.clone(), error.to_string())),
            },
        }
    }
    let missing = (pool.size as usize).saturating_sub(kept);
    let up_options = UpOptions {
        pool: PoolUse::Fill,
        name: None,
        lease: false,
        ttl: None,
        ..options.up.clone()
    };
    let starts = (0..missing).map(|_| {
        super::up::up(
            backend,
            environment,
            &up_options,
            progress,
            signals,
            &|_| {},
        )
    });
    for UpOutcome { result, warnings } in join_all(starts).await {
        match result {
            Ok(started) => filled.created.push(started.id),
            Err(error) => filled.failed.push(error),
        }
        for warning in warnings {
            filled.left.push((String::new(), warning));
        }
    }
    Ok(filled)
}

fn fill_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(FILL_TTL).unwrap_or_default()
}

/// Whether a fill claim holds at `now`: not expired, and its filler not known to be gone.
pub fn holds(claim: &Filling, now: DateTime<Utc>) -> bool {
    let alive = || {
        let process = claim.filler.process.as_deref().unwrap_or_default();
        super::process::alive(process) != Some(false)
    };
    claim.expires.is_none_or(|until| until > now) && alive()
}

/// Whether a fill claim may still hold at `now`, for those that judge it dead (a sweep, the
/// reaper): its filler not known to be gone, and not expired for longer than [`FILL_GRACE`].
/// When in doubt, a claim is kept.
pub fn may_hold(claim: &Filling, now: DateTime<Utc>) -> bool {
    let grace = chrono::Duration::from_std(FILL_GRACE).unwrap_or_default();
    holds(claim, now - grace)
}

/// Claims the filling of `environment`'s pool: the claim's handle and filler, or the claim of
/// the fill that holds the pool. Two fills that claim at once both see both claims (each lists
/// after it created its own), and agree on the older.
async fn claim(
    backend: &dyn Backend,
    environment: &str,
) -> Result<Result<(String, Filler), Filling>, BackendError> {
    let filler = Filler {
        nonce: super::up::run_nonce(),
        environment: environment.to_string(),
        started_by: Some(crate::provenance::started_by()),
        process: Some(crate::provenance::process()),
    };
    let native = backend.claim_fill(&filler, fill_expiry(Utc::now())).await?;
    let claims = match backend.fill_claims().await {
        Ok(claims) => claims,
        Err(error) => {
            let _ = backend.release_fill(&native).await;
            return Err(error);
        }
    };
    let now = Utc::now();
    sweep_claims(backend, &claims, now).await;
    let holder = claims
        .into_iter()
        .filter(|c| c.filler.environment == environment)
        .filter(|c| c.native == native || holds(c, now))
        .min_by_key(|c| (c.created, c.native.clone()));
    match holder {
        Some(holder) if holder.native != native => {
            if let Err(error) = backend.release_fill(&native).await {
                tracing::debug!("cannot release a fill claim: {error}");
            }
            Ok(Err(holder))
        }
        _ => Ok(Ok((native, filler))),
    }
}

/// Runs `work`, renewing the fill claim `native` meanwhile. A claim found gone (removed while it
/// looked expired to another host) is claimed again; if another fill holds the pool by then,
/// this one renews no more and says so. The claim held at the end, to release.
async fn renewing<T>(
    backend: &dyn Backend,
    environment: &str,
    native: String,
    filler: Filler,
    work: impl Future<Output = T>,
) -> (T, Option<String>) {
    let held = std::sync::Mutex::new(Some(native.clone()));
    let renew = async {
        let (mut native, mut filler) = (native, filler);
        loop {
            tokio::time::sleep(FILL_RENEW_EVERY).await;
            match backend
                .renew_fill(&native, &filler, fill_expiry(Utc::now()))
                .await
            {
                Ok(()) => continue,
                Err(BackendError::NotFound { .. }) => {}
                Err(error) => {
                    tracing::debug!("cannot renew the fill claim: {error}");
                    continue;
                }
            }
            tracing::warn!(
                "the fill claim on the pool of `{environment}` was removed while this fill ran: \
                 claiming the pool again"
            );
            match claim(backend, environment).await {
                Ok(Ok((again, by))) => {
                    (native, filler) = (again, by);
                    *held.lock().expect("not poisoned") = Some(native.clone());
                }
                Ok(Err(holder)) => {
                    *held.lock().expect("not poisoned") = None;
                    tracing::warn!(
                        "another fill ({}) holds the pool of `{environment}` now: this fill \
                         starts no more members and leaves it the pool",
                        holder.filler.started_by.as_deref().unwrap_or("unknown")
                    );
                    // The members under way finish; none starts after (all start at once).
                    return std::future::pending::<()>().await;
                }
                // Its own claim is gone and none taken: the next turn tries again.
                Err(error) => tracing::debug!("cannot claim the pool again: {error}"),
            }
        }
    };
    let out = tokio::select! {
        out = work => out,
        () = renew => unreachable!("renewing never ends"),
    };
    let held = held.lock().expect("not poisoned").take();
    (out, held)
}

/// Removes the fill claims that no longer hold: their fillers were killed. Best effort: every
/// fill and the reaper try.
async fn sweep_claims(backend: &dyn Backend, claims: &[Filling], now: DateTime<Utc>) {
    for claim in claims.iter().filter(|c| !may_hold(c, now)) {
        if let Err(error) = backend.release_fill(&claim.native).await {
            tracing::debug!("cannot remove a stale fill claim: {error}");
        }
    }
}

/// Removes the fill claims killed fillers left (the reaper's share of the clean-up).
pub async fn collect_stale_claims(backend: &dyn Backend, now: DateTime<Utc>) {
    match backend.fill_claims().await {
        Ok(claims) => sweep_claims(backend, &claims, now).await,
        Err(error) => tracing::debug!("cannot read the pools' fill claims: {error}"),
    }
}

/// The pooled services as a start would create them from the images on the engine now; `None`
/// while one is not there (a fill pulls or builds it).
pub async fn current_shape(
    backend: &dyn Backend,
    environment: &Environment,
    pool: &Pool,
) -> Result<Option<Shape>, BackendError> {
    // One inspect per pooled service, at once: an adopting `up` makes them before its
    // admission, on its path.
    let resolving = pool.services.iter().map(|name| async move {
        let service = &environment.services[name];
        let image = backend.resolve_image(&service.image).await?;
        Ok::<_, BackendError>(image.map(|image| (name.clone(), image)))
    });
    let resolved = futures_util::future::try_join_all(resolving).await?;
    let Some(images) = resolved.into_iter().collect::<Option<BTreeMap<_, _>>>() else {
        return Ok(None);
    };
    Ok(Shape::of(environment, pool, &images))
}

/// Removes every member of `environment` (all members when `None`); the ids removed.
pub async fn drain(
    backend: &dyn Backend,
    environment: Option<&str>,
) -> Result<(Vec<String>, Vec<(String, String)>), BackendError> {
    let mut removed = Vec::new();
    let mut left = Vec::new();
    for member in members(backend).await? {
        if environment.is_some_and(|e| e != member.environment()) {
            continue;
        }
        match retire(backend, &member).await {
            Ok(true) => removed.push(member.id.clone()),
            Ok(false) => {}
            Err(error) => left.push((member.id.clone(), error.to_string())),
        }
    }
    Ok((removed, left))
}

/// The services a start creates: the pooled ones when filling, else all but those an adopted
/// member brings.
pub(super) fn in_scope(environment: &Environment, options: &UpOptions) -> BTreeSet<String> {
    match (options.pool, &environment.pool) {
        (PoolUse::Fill, Some(pool)) => pool.services.clone(),
        _ => environment.services.keys().cloned().collect(),
    }
}

/// How long the pooled services of an adopted environment had been warm when an `up` adopted
/// them; `None` unless `instance` was adopted.
pub fn warm_for(instance: &Instance) -> Option<Duration> {
    let filled = instance.metadata.adopted?;
    let adopted = instance.created_at()?;
    Some((adopted - filled).to_std().unwrap_or_default())
}
