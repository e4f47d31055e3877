//! Admission: when the engine has a capacity (`envctl capacity`), a start waits in one queue,
//! shared by every client of the engine on every host, until its whole environment fits.
//!
//! Everything lives on the engine, never in a local file: the capacity is a marker of its own,
//! and each waiter is an entry in the queue (a never-started marker whose name carries its
//! expiry, renewed every [`RENEW_EVERY`] as a lease is). The queue's order is the priority
//! (interactive starts first), then the time the engine created the entry, never a client's
//! clock. Strictly head of line: only the first entry may be admitted, so a large environment
//! is never starved by small ones behind it. The head checks that its environment fits,
//! claims it (from then on it counts), then leaves the queue; a waiter holds no claim, so one
//! that gives up leaves nothing created. A waiter killed outright stops renewing, and its
//! entry is ignored and removed by the others once it expired, within [`ENTRY_TTL`].
//!
//! What counts: environments starting, running, updating or paused, and warm-pool members
//! (filling or ready); stopped ones count nothing. What an environment costs: the sum of its services' `mem_limit`, else the
//! capacity's default memory per service; it records what it reserved at its claim
//! ([`Metadata::memory`]), so every other client counts it the same.
//!
//! Making room ([`make_room`]): when the head of the queue does not fit, it retires ready
//! pool members first, oldest first (members of other environments before those of its own,
//! which it may adopt); then, only where the capacity has `preempt_idle`, it stops
//! environments idle longer than that, idlest first, never a pinned, leased, starting or
//! updating one, and only when stopping them makes it fit. A pool's fill makes no room.

use std::cmp::Reverse;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::inventory::{Instance, State};
use super::{StartError, inventory, pool};
use crate::backend::{
    Backend, BackendError, Capacity, Metadata, Priority, Queued, Selector, ServiceState, Waiter,
};
use crate::signals::Signals;

/// How long a queue entry holds its place without a renewal: a waiter killed outright frees
/// its place within this.
pub const ENTRY_TTL: Duration = Duration::from_secs(15);
/// How often a waiter renews its entry: three chances before it expires.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a waiter looks at the queue and what runs.
pub const POLL: Duration = Duration::from_millis(500);
/// How long one engine call of the wait may go unanswered.
const CALL_BOUND: Duration = Duration::from_secs(10);
/// `--queue-timeout` when none is given: a Jenkins job waits half an hour for the engine.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Hears where a start waits, each time it looks.
pub type OnWait = Arc<dyn Fn(&Waiting) + Send + Sync>;

/// How a start asks for admission, free of any command-line types.
#[derive(Clone, Default)]
pub struct AdmitOptions {
    /// High (a terminal, `--priority high`, the gateway's wake) goes before normal (CI),
    /// normal before low (a warm pool's fill).
    pub priority: Priority,
    /// How long to wait in the queue at most; `None`: [`DEFAULT_QUEUE_TIMEOUT`].
    pub queue_timeout: Option<Duration>,
    /// Told of each look at the queue while waiting, for the command to show.
    pub on_wait: Option<OnWait>,
    /// The pooled services of the start, as a warm-pool member that it may adopt has them
    /// (see [`pool::without_adoptable`]): that member counts already, so the start is
    /// charged only what it adds. `None` for a cold start.
    pub adopts: Option<pool::Shape>,
    /// The reaper's state file, where making room reads idle clocks and records what it
    /// stopped; `None`: this host's ([`crate::state::Store::from_env`]).
    pub state: Option<crate::state::Store>,
    /// A warm pool's fill: it makes no room (it would retire members to make members, or
    /// stop environments to keep some warm), whatever its priority.
    pub fill: bool,
}

impl std::fmt::Debug for AdmitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmitOptions")
            .field("priority", &self.priority)
            .field("queue_timeout", &self.queue_timeout)
            .finish_non_exhaustive()
    }
}

/// What a start asks the capacity for.
#[derive(Debug, Clone)]
pub struct Request {
    pub environment: String,
    pub owner: Option<String>,
    /// Each service's `mem_limit`, `None` where it declares none.
    pub limits: Vec<Option<u64>>,
}

impl Request {
    /// What starting `environment` for `owner` asks for.
    pub fn of(environment: &crate::spec::Environment, owner: &str) -> Request {
        Request {
            environment: environment.name.clone(),
            owner: Some(owner.to_string()),
            limits: environment
                .services
                .values()
                .map(|s| s.runtime.mem_limit.map(|b| b.0))
                .collect(),
        }
    }

    /// What starting a stopped environment asks for: what it reserved at its claim, else
    /// the default for each service.
    pub fn stored(instance: &Instance) -> Request {
        let limits = match instance.metadata.memory {
            Some(bytes) => vec![Some(bytes)],
            None => vec![None; service_count(instance)],
        };
        Request {
            environment: instance.environment().to_string(),
            owner: instance.owner().map(str::to_string),
            limits,
        }
    }

    /// Bytes it reserves under `capacity`.
    pub fn cost(&self, capacity: &Capacity) -> u64 {
        let default = capacity.default_memory.unwrap_or(0);
        self.limits.iter().map(|l| l.unwrap_or(default)).sum()
    }
}

/// An environment that counts against the capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub id: String,
    pub owner: Option<String>,
    pub state: State,
    /// Bytes it reserved.
    pub memory: u64,
}

/// Whether `instance` counts against a capacity: starting, running, updating or paused.
pub fn counts(instance: &Instance, now: DateTime<Utc>) -> bool {
    let state = instance.state(now);
    matches!(state, State::Starting | State::Updating)
        || instance.services.iter().any(|s| {
            matches!(
                s.status.state,
                ServiceState::Running | ServiceState::Paused | ServiceState::Restarting
            )
        })
}

/// Bytes `metadata`'s environment reserved: what it recorded, else the default for each of
/// its services (started before the capacity was set, or by an earlier envctl).
pub fn reserved(metadata: &Metadata, services: usize, capacity: &Capacity) -> u64 {
    metadata
        .memory
        .unwrap_or_else(|| capacity.default_memory.unwrap_or(0) * services as u64)
}

/// The environments that count against `capacity` now.
pub fn usage(instances: &[Instance], capacity: &Capacity, now: DateTime<Utc>) -> Vec<Counted> {
    instances
        .iter()
        .filter(|i| counts(i, now))
        .map(|i| Counted {
            id: i.id.clone(),
            owner: i.owner().map(str::to_string),
            state: i.state(now),
            memory: reserved(&i.metadata, service_count(i), capacity),
        })
        .collect()
}

fn service_count(instance: &Instance) -> usize {
    instance
        .metadata
        .services
        .as_ref()
        .map_or(instance.services.len(), Vec::len)
}

/// The live entries of `queue` at `now`, in the order they are admitted: high priority first,
/// then by the engine's creation time.
pub fn ordered(queue: &[Queued], now: DateTime<Utc>) -> Vec<Queued> {
    let mut live: Vec<Queued> = queue
        .iter()
        .filter(|q| q.expires.is_none_or(|until| until > now))
        .cloned()
        .collect();
    live.sort_by_key(|q| (Reverse(q.waiter.priority), q.created, q.native.clone()));
    live
}

/// `counted` and `queue` as `me` decides on them: the live entries of other waiters that were
/// admitted (and are about to claim) count as environments, and wait no more.
pub fn settle(
    counted: &[Counted],
    queue: &[Queued],
    me: &str,
    now: DateTime<Utc>,
) -> (Vec<Counted>, Vec<Queued>) {
    let (admitted, waiting): (Vec<Queued>, Vec<Queued>) = ordered(queue, now)
        .into_iter()
        .partition(|q| q.waiter.admitted && q.native != me);
    let mut counted = counted.to_vec();
    counted.extend(admitted.into_iter().map(|q| Counted {
        id: q.native,
        owner: q.waiter.owner,
        state: State::Starting,
        memory: q.waiter.memory,
    }));
    (counted, waiting)
}

/// What the head of the queue decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// `place` is 1 for the head.
    Wait {
        place: usize,
    },
}

/// Whether `memory` more fits under `capacity` beside `environments` counted environments
/// that reserved `used` bytes.
fn fits(capacity: &Capacity, environments: usize, used: u64, memory: u64) -> bool {
    let count = capacity
        .max_environments
        .is_none_or(|max| environments < max as usize);
    let bytes = capacity.max_memory.is_none_or(|max| used + memory <= max);
    count && bytes
}

/// The entry that may be admitted next: the first whose owner has not reached `per_owner`.
fn head<'a>(capacity: &Capacity, counted: &[Counted], ordered: &'a [Queued]) -> Option<&'a Queued> {
    let at_limit = |owner: &Option<String>| {
        capacity.per_owner.is_some_and(|limit| {
            let theirs = counted.iter().filter(|c| c.owner == *owner).count();
            theirs >= limit as usize
        })
    };
    ordered.iter().find(|q| !at_limit(&q.waiter.owner))
}

/// Whether the entry `me` is admitted now. Entries whose owner has reached `per_owner` step
/// aside, so one owner's burst cannot hold up everybody else's; of the rest only the first,
/// the head, may be admitted, and only when its environment fits whole.
pub fn decide(
    capacity: &Capacity,
    counted: &[Counted],
    queue: &[Queued],
    me: &str,
    now: DateTime<Utc>,
) -> Decision {
    let (counted, ordered) = settle(counted, queue, me, now);
    let counted = counted.as_slice();
    let place = ordered
        .iter()
        .position(|q| q.native == me)
        .map_or(ordered.len() + 1, |i| i + 1);
    let used: u64 = counted.iter().map(|c| c.memory).sum();
    match head(capacity, counted, &ordered) {
        Some(head)
            if head.native == me && fits(capacity, counted.len(), used, head.waiter.memory) =>
        {
            Decision::Admit
        }
        _ => Decision::Wait { place },
    }
}

/// What may give way to the head of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub environment: String,
    /// Bytes it reserved.
    pub memory: u64,
    pub kind: Evictable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evictable {
    /// A ready warm-pool member, filled this long ago: retired (removed).
    Member { age: Duration },
    /// An environment without activity for this long, since `last` at `at`: stopped, when
    /// the capacity's `preempt_idle` is shorter.
    Idle {
        idle: Duration,
        last: String,
        at: DateTime<Utc>,
    },
}

/// What the head of the queue, asking for `memory` for an environment named `environment`,
/// removes or stops to fit, in order: ready pool members, oldest first (those of other
/// environments before its own, which it may adopt), until it fits or none is left; then,
/// only with `preempt_idle`, environments idle longer than that, idlest first, and only when
/// they make it fit. Empty when it fits already. `candidates` are among `counted`; the
/// caller leaves out pinned, leased, starting and updating environments.
pub fn make_room(
    capacity: &Capacity,
    counted: &[Counted],
    environment: &str,
    memory: u64,
    candidates: &[Candidate],
) -> Vec<Candidate> {
    let mut environments = counted.len();
    let mut used: u64 = counted.iter().map(|c| c.memory).sum();
    if fits(capacity, environments, used, memory) {
        return Vec::new();
    }
    let mut members: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| matches!(c.kind, Evictable::Member { .. }))
        .collect();
    members.sort_by_key(|c| {
        let age = match c.kind {
            Evictable::Member { age } => age,
            Evictable::Idle { .. } => Duration::ZERO,
        };
        (c.environment == environment, Reverse(age), c.id.clone())
    });
    let mut plan = Vec::new();
    for member in members {
        if fits(capacity, environments, used, memory) {
            return plan;
        }
        plan.push(member.clone());
        environments = environments.saturating_sub(1);
        used = used.saturating_sub(member.memory);
    }
    let Some(preempt_idle) = capacity.preempt_idle else {
        return plan;
    };
    let mut idle: Vec<(&Candidate, Duration)> = candidates
        .iter()
        .filter_map(|c| match c.kind {
            Evictable::Idle { idle, .. } if idle > preempt_idle => Some((c, idle)),
            _ => None,
        })
        .collect();
    idle.sort_by_key(|(c, idle)| (Reverse(*idle), c.id.clone()));
    let mut stopped = Vec::new();
    for (candidate, _) in idle {
        if fits(capacity, environments, used, memory) {
            break;
        }
        stopped.push(candidate.clone());
        environments = environments.saturating_sub(1);
        used = used.saturating_sub(candidate.memory);
    }
    // Stopping someone's environment only to go on waiting helps nobody.
    if fits(capacity, environments, used, memory) {
        plan.extend(stopped);
    }
    plan
}

/// The candidates for [`make_room`] among `instances`: ready pool members, and environments
/// that count and are neither pinned, leased, starting nor updating, with how long they have
/// been idle by the reaper's record (`state`: the last envctl command, `touch`, or inbound
/// traffic, else their creation).
pub fn candidates(
    instances: &[Instance],
    capacity: &Capacity,
    state: &crate::state::State,
    endpoint: &str,
    now: DateTime<Utc>,
) -> Vec<Candidate> {
    instances
        .iter()
        .filter(|i| counts(i, now))
        .filter_map(|i| {
            let kind = match pool::is_member(i) {
                true => match pool::member_state(i, now) {
                    pool::MemberState::Ready => Evictable::Member {
                        age: pool::age(i, now),
                    },
                    _ => return None,
                },
                false => {
                    if !preemptible(i, now) {
                        return None;
                    }
                    let created = i.created_at()?;
                    let last = crate::state::last_activity(state.record(endpoint, &i.id), created);
                    Evictable::Idle {
                        idle: (now - last.at).to_std().unwrap_or_default(),
                        last: last.what,
                        at: last.at,
                    }
                }
            };
            Some(Candidate {
                id: i.id.clone(),
                environment: i.environment().to_string(),
                memory: reserved(&i.metadata, service_count(i), capacity),
                kind,
            })
        })
        .collect()
}

/// Whether an environment may be stopped to make room: never a pinned, leased, starting or
/// updating one (nor one whose start or update was left half-way).
fn preemptible(instance: &Instance, now: DateTime<Utc>) -> bool {
    !instance.pinned()
        && instance.lease_until().is_none_or(|until| until <= now)
        && !instance.updating(now)
        && matches!(
            instance.state(now),
            State::Ready | State::Degraded | State::Paused
        )
}

/// Why an environment was stopped to make room, in the reaper's words.
pub fn reason(candidate: &Candidate, preempt_idle: Duration) -> String {
    match &candidate.kind {
        Evictable::Member { age } => format!(
            "a warm-pool member of `{}`, filled {} ago, gives way first",
            candidate.environment,
            crate::output::short_duration(*age)
        ),
        Evictable::Idle { idle, last, at } => format!(
            "idle for {}, last activity: {last} at {}, longer than the capacity's \
             --preempt-idle {}",
            crate::output::short_duration(*idle),
            at.format("%H:%M UTC"),
            crate::output::short_duration(preempt_idle)
        ),
    }
}

/// What a waiter waits for, as it last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// 1 for the head.
    pub place: usize,
    pub queued: usize,
    /// Environments that count, and the bytes they reserved.
    pub environments: usize,
    pub reserved: u64,
    pub capacity: Capacity,
    /// Bytes this start asks for.
    pub memory: u64,
    pub waited: Duration,
}

/// Why a start was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "environment `{environment}` needs {} of memory, more than the engine's whole capacity \
         of {}\nhint: lower the services' `mem_limit`, or raise the capacity with `envctl \
         capacity --max-memory SIZE`",
        size(*needs),
        size(*max)
    )]
    TooLarge {
        environment: String,
        needs: u64,
        max: u64,
    },
    #[error(
        "gave up waiting for capacity after {}: {}\nhint: `envctl capacity` shows what uses \
         the engine; a longer `--queue-timeout` waits longer",
        humantime::format_duration(super::super::backend::rounded(*waited)),
        describe(last)
    )]
    QueueTimeout { waited: Duration, last: Waiting },
}

impl AdmissionError {
    pub fn is_bad_input(&self) -> bool {
        matches!(self, AdmissionError::TooLarge { .. })
    }
}

/// `2nd in line, 9.5 of 10 GiB reserved by 8 environments`.
pub fn describe(waiting: &Waiting) -> String {
    let place = match waiting.place {
        1 => "next in line".to_string(),
        n => format!("{} in line", ordinal(n)),
    };
    let environments = match waiting.environments {
        1 => "1 environment".to_string(),
        n => format!("{n} environments"),
    };
    let max = &waiting.capacity;
    let what = match (max.max_memory, max.max_environments) {
        (Some(bytes), _) => {
            let (used, max) = (size(waiting.reserved), size(bytes));
            // `9.5 of 10 GiB`, the unit once when both share it.
            let used = match (used.split_once(' '), max.split_once(' ')) {
                (Some((n, unit)), Some((_, max_unit))) if unit == max_unit => n.to_string(),
                _ => used,
            };
            format!("{used} of {max} reserved by {environments}")
        }
        (None, Some(n)) => format!("{} of {n} environments run", waiting.environments),
        (None, None) => format!("{environments} run"),
    };
    format!("{place}, {what}")
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Bytes as people read them: `9.5 GiB`, `512 MiB`.
pub fn size(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        let gib = b / GIB;
        match gib.fract() < 0.05 {
            true => format!("{gib:.0} GiB"),
            false => format!("{gib:.1} GiB"),
        }
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// A start's place in the queue, once admitted: it holds the head (and renews its entry)
/// until the environment counts on its own, at its claim. Without a capacity it holds nothing.
#[derive(Debug, Default)]
pub struct Ticket {
    entry: Mutex<Option<(String, Waiter)>>,
    /// Held across reading the entry and renaming it on the engine, by the renewal and by
    /// [`mark`] alike: a renewal that read the entry before a mark cannot land after it and
    /// put the old flag back on the engine.
    renaming: tokio::sync::Mutex<()>,
    /// Bytes the environment reserves; `None` without a capacity.
    memory: Option<u64>,
    /// How long it waited in the queue so far: `--queue-timeout` bounds every wait of one
    /// start together (see [`readmit`]).
    waited: Mutex<Duration>,
}

impl Ticket {
    /// Bytes to record at the claim.
    pub fn memory(&self) -> Option<u64> {
        self.memory
    }

    fn entry(&self) -> Option<(String, Waiter)> {
        self.entry.lock().expect("ticket").clone()
    }

    /// Leaves the queue: the environment counts now, or never will. Idempotent.
    pub async fn leave(&self, backend: &dyn Backend) {
        let taken = self.entry.lock().expect("ticket").take();
        if let Some((native, _)) = taken
            && let Err(error) = backend.dequeue(&native).await
        {
            // It expires on its own.
            tracing::debug!("cannot leave the admission queue: {error}");
        }
    }

    /// Runs `work`, renewing the entry meanwhile until [`Ticket::leave`].
    pub async fn holding<T>(&self, backend: &dyn Backend, work: impl Future<Output = T>) -> T {
        let renewing = async {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let renaming = self.renaming.lock().await;
                let Some((native, waiter)) = self.entry() else {
                    drop(renaming);
                    return std::future::pending().await;
                };
                let until = expiry(Utc::now());
                if let Err(error) = backend.renew_entry(&native, &waiter, until).await {
                    tracing::debug!("cannot renew the admission entry: {error}");
                }
            }
        };
        tokio::select! {
            out = work => out,
            () = renewing => unreachable!("renewing never ends"),
        }
    }
}

fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ENTRY_TTL).unwrap_or_default()
}

/// Waits until `request` is admitted under the engine's capacity, if it has one: a ticket
/// whose [`Ticket::leave`] the caller calls once it claimed the environment. Without a
/// capacity, one lookup and an empty ticket. Interrupts end the wait and leave the queue.
pub async fn admit(
    backend: &dyn Backend,
    request: &Request,
    options: &AdmitOptions,
    signals: &Signals,
) -> Result<Ticket, StartError> {
    // A frozen engine ends the wait (exit 2, naming the engine) instead of hanging a job.
    let backend = &super::Bounded {
        backend,
        deadline: None,
        per_call: Some(CALL_BOUND),
        signals,
    };
    let admission = backend.admission().await?;
    let Some(capacity) = admission.capacity else {
        return Ok(Ticket::default());
    };
    let memory = request.cost(&capacity);
    if let Some(max) = capacity.max_memory
        && memory > max
    {
        return Err(AdmissionError::TooLarge {
            environment: request.environment.clone(),
            needs: memory,
            max,
        }
        .into());
    }
    // Nobody waits: the first look most likely admits it, so its entry says admitted from its
    // creation on, and that look is the one after the mark (see `wait`). Otherwise it is
    // marked when it is admitted.
    let nobody_waits = ordered(&admission.queue, Utc::now()).is_empty();
    let waiter = Waiter {
        nonce: super::up::run_nonce(),
        priority: options.priority,
        owner: request.owner.clone(),
        environment: Some(request.environment.clone()),
        started_by: Some(crate::provenance::started_by()),
        memory,
        admitted: nobody_waits,
    };
    let native = backend.enqueue(&waiter, expiry(Utc::now())).await?;
    let ticket = Ticket {
        entry: Mutex::new(Some((native, waiter))),
        memory: Some(memory),
        ..Ticket::default()
    };
    let timeout = options.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT);
    // The entry is renewed while it waits, whatever entry `wait` puts back in line.
    let waiting = ticket.holding(backend, wait(backend, &ticket, options, timeout));
    let result = tokio::select! {
        result = waiting => result,
        () = signals.received(1) => Err(StartError::Interrupted(Box::default())),
    };
    match result {
        Ok(true) => Ok(ticket),
        Ok(false) => {
            ticket.leave(backend).await;
            Ok(Ticket::default())
        }
        Err(error) => {
            // Bounded: an interrupted waiter leaves at once, or its entry expires.
            let leaving = ticket.leave(backend);
            let _ = tokio::time::timeout(Duration::from_secs(5), leaving).await;
            Err(error)
        }
    }
}

/// Waits again, still at its place in the queue, for the whole environment of a start that
/// was admitted as adopting a pool member and did not get it (another start took it first):
/// a cold start never goes over the capacity. A wait in the queue as [`admit`]'s is: bounded
/// by what the first wait left of `--queue-timeout` (never by the start's deadline), each look
/// at the engine bounded, ended by an interrupt. How long it waited: nothing without a
/// capacity or once the ticket left the queue.
pub async fn readmit(
    backend: &dyn Backend,
    ticket: &Ticket,
    options: &AdmitOptions,
    signals: &Signals,
) -> Result<Duration, StartError> {
    if ticket.entry().is_none() {
        return Ok(Duration::ZERO);
    }
    let backend = &super::Bounded {
        backend,
        deadline: None,
        per_call: Some(CALL_BOUND),
        signals,
    };
    let options = AdmitOptions {
        adopts: None,
        ..options.clone()
    };
    let timeout = options.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT);
    let since = Instant::now();
    tokio::select! {
        waited = wait(backend, ticket, &options, timeout) => waited.map(|_| since.elapsed()),
        () = signals.received(1) => Err(StartError::Interrupted(Box::default())),
    }
}

/// Looks at the queue every [`POLL`] until the ticket's entry is admitted (`true`), or the
/// capacity is gone (`false`: admitted as before any capacity), or the ticket waited `timeout`
/// in all (a readmission's wait is the same start's: one `--queue-timeout`).
async fn wait(
    backend: &dyn Backend,
    ticket: &Ticket,
    options: &AdmitOptions,
    timeout: Duration,
) -> Result<bool, StartError> {
    let before = *ticket.waited.lock().expect("ticket");
    let since = Instant::now();
    let result = looking(backend, ticket, options, timeout, before).await;
    *ticket.waited.lock().expect("ticket") = before + since.elapsed();
    result
}

/// [`wait`]'s looks, the ticket having waited `before` already.
async fn looking(
    backend: &dyn Backend,
    ticket: &Ticket,
    options: &AdmitOptions,
    timeout: Duration,
    before: Duration,
) -> Result<bool, StartError> {
    let since = Instant::now();
    let waited = || before + since.elapsed();
    // Whether the last look made room: the next looks again at once, but only once, so an
    // environment that keeps counting after it was stopped is not stopped in a busy loop.
    let mut made_room = false;
    loop {
        let (native, waiter) = ticket.entry().expect("an entry while waiting");
        // Pool members too: they count until they give way.
        let (admission, instances) = backend.admission_view().await?;
        let Some(capacity) = admission.capacity else {
            return Ok(false);
        };
        let now = Utc::now();
        if !admission.queue.iter().any(|q| q.native == native) {
            // Removed as expired by another waiter (this one stalled): back in line.
            requeue(backend, ticket, waiter).await?;
            continue;
        }
        sweep(backend, &admission.queue, now).await;
        // Less the member this start adopts: it counts already.
        let environment = waiter.environment.as_deref().unwrap_or_default();
        let instances =
            pool::without_adoptable(instances, environment, options.adopts.as_ref(), now);
        let counted = usage(&instances, &capacity, now);
        // An admitted start not yet claimed may be about to adopt a pool member, and counts
        // beside it meanwhile: room made on such a look could retire the very member it
        // adopts. It waits for a look without them.
        let others_admitted = ordered(&admission.queue, now)
            .iter()
            .any(|q| q.waiter.admitted && q.native != native);
        let (counted, queue) = settle(&counted, &admission.queue, &native, now);
        let decision = decide(&capacity, &counted, &queue, &native, now);
        if waiter.admitted && decision != Decision::Admit {
            // Someone went ahead meanwhile: back to waiting.
            let result = mark(backend, ticket, &native, waiter.clone(), false).await;
            if !marked(result)? {
                requeue(backend, ticket, waiter).await?;
                continue;
            }
        }
        match decision {
            // Admitted on a look after its entry said so: every start that did not see the
            // mark arrived before it, and this look saw them.
            Decision::Admit if waiter.admitted => return Ok(true),
            // Admitted on what it saw, but a start that arrived since may have decided without
            // seeing this one: say so on the engine, then look again.
            Decision::Admit => {
                let result = mark(backend, ticket, &native, waiter.clone(), true).await;
                if !marked(result)? {
                    // Swept as expired meanwhile: back in line, as when it disappeared.
                    requeue(backend, ticket, waiter).await?;
                }
                continue;
            }
            Decision::Wait { .. }
                if !std::mem::take(&mut made_room)
                    && !others_admitted
                    && !options.fill
                    && head(&capacity, &counted, &queue).is_some_and(|h| h.native == native)
                    && make_room_now(
                        backend, &capacity, &counted, &instances, &waiter, options,
                    )
                    .await =>
            {
                // Room was made: look again at once.
                made_room = true;
                continue;
            }
            Decision::Wait { place } => {
                let waiting = Waiting {
                    place,
                    queued: queue.len(),
                    environments: counted.len(),
                    reserved: counted.iter().map(|c| c.memory).sum(),
                    capacity,
                    memory: waiter.memory,
                    waited: waited(),
                };
                if let Some(on_wait) = &options.on_wait {
                    on_wait(&waiting);
                }
                if waited() >= timeout {
                    return Err(AdmissionError::QueueTimeout {
                        waited: timeout,
                        last: waiting,
                    }
                    .into());
                }
            }
        }
        tokio::time::sleep(POLL.min(timeout.saturating_sub(waited()))).await;
    }
}

/// Says on the engine whether the ticket's entry was admitted: renews it with the mark set or
/// cleared, never concurrently with the renewal (see [`Ticket::renaming`]). `NotFound`: the
/// entry was removed as expired meanwhile.
async fn mark(
    backend: &dyn Backend,
    ticket: &Ticket,
    native: &str,
    mut waiter: Waiter,
    admitted: bool,
) -> Result<(), BackendError> {
    let _renaming = ticket.renaming.lock().await;
    waiter.admitted = admitted;
    backend
        .renew_entry(native, &waiter, expiry(Utc::now()))
        .await?;
    *ticket.entry.lock().expect("ticket") = Some((native.to_string(), waiter));
    Ok(())
}

/// Puts the ticket back in line, unmarked, with a new entry: its entry was removed as expired
/// by another waiter (this one stalled).
async fn requeue(
    backend: &dyn Backend,
    ticket: &Ticket,
    mut waiter: Waiter,
) -> Result<(), StartError> {
    let _renaming = ticket.renaming.lock().await;
    waiter.admitted = false;
    let native = backend.enqueue(&waiter, expiry(Utc::now())).await?;
    *ticket.entry.lock().expect("ticket") = Some((native, waiter));
    Ok(())
}

/// What [`mark`] leaves the wait to do.
fn marked(result: Result<(), BackendError>) -> Result<bool, StartError> {
    match result {
        Ok(()) => Ok(true),
        Err(BackendError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Makes room for `waiter`, the head of the queue, if it can (see [`make_room`]): whether it
/// retired or stopped anything.
async fn make_room_now(
    backend: &dyn Backend,
    capacity: &Capacity,
    counted: &[Counted],
    instances: &[Instance],
    waiter: &Waiter,
    options: &AdmitOptions,
) -> bool {
    let now = Utc::now();
    let endpoint = backend.info().endpoint.clone();
    let store = options
        .state
        .clone()
        .unwrap_or_else(crate::state::Store::from_env);
    // The reaper's record of activity, read only where idle environments may be stopped.
    let state = match capacity.preempt_idle {
        Some(_) => store.read_async().await.0,
        None => crate::state::State::default(),
    };
    let found = candidates(instances, capacity, &state, &endpoint, now);
    let environment = waiter.environment.as_deref().unwrap_or_default();
    let plan = make_room(capacity, counted, environment, waiter.memory, &found);
    let mut made = false;
    for candidate in plan {
        let Some(instance) = instances.iter().find(|i| i.id == candidate.id) else {
            continue;
        };
        let why = reason(&candidate, capacity.preempt_idle.unwrap_or_default());
        match candidate.kind {
            Evictable::Member { .. } => match pool::retire(backend, instance).await {
                Ok(true) => {
                    made = true;
                    tracing::warn!(
                        "removed pool member `{}` to make room for `{environment}`: {why}",
                        candidate.id
                    );
                }
                // Adopted meanwhile: it is an environment now, and counts as one.
                Ok(false) => made = true,
                Err(error) => tracing::warn!(
                    "cannot remove pool member `{}` to make room: {error}",
                    candidate.id
                ),
            },
            Evictable::Idle { at, .. } => {
                if !still_idle(backend, &store, &candidate.id, at).await {
                    continue;
                }
                match super::stop(backend, instance).await {
                    Ok(()) => {
                        made = true;
                        // Kept where the reaper keeps its record, for `envctl status`.
                        let recorded = format!("to make room for `{environment}`: {why}");
                        if let Some(warning) =
                            crate::state::record_stop(&store, &endpoint, &candidate.id, &recorded)
                                .await
                        {
                            tracing::warn!("{warning}");
                        }
                        tracing::warn!(
                            "stopped `{}` ({}) to make room for `{environment}`: {why}",
                            candidate.id,
                            candidate.environment
                        );
                    }
                    Err(error) => {
                        tracing::warn!("cannot stop `{}` to make room: {error}", candidate.id)
                    }
                }
            }
        }
    }
    made
}

/// Whether `id` is still to be stopped for idleness: not pinned, leased, updating or used
/// since `last`, by what the engine and the reaper's record say now.
async fn still_idle(
    backend: &dyn Backend,
    store: &crate::state::Store,
    id: &str,
    last: DateTime<Utc>,
) -> bool {
    let Ok(Some(instance)) = inventory::find(backend, id).await else {
        return false;
    };
    if !preemptible(&instance, Utc::now()) {
        return false;
    }
    let (state, _) = store.read_async().await;
    let record = state.record(&backend.info().endpoint, id);
    record
        .and_then(|r| r.activity.as_ref())
        .is_none_or(|a| a.at <= last)
}

/// Removes the entries that expired: their waiters were killed. Best effort: every waiter and
/// the reaper try.
pub async fn sweep(backend: &dyn Backend, queue: &[Queued], now: DateTime<Utc>) {
    for entry in queue.iter().filter(|q| q.expires.is_some_and(|u| u <= now)) {
        if let Err(error) = backend.dequeue(&entry.native).await {
            tracing::debug!("cannot remove an expired admission entry: {error}");
        }
    }
}

/// Bytes of memory `instance`'s running services use now (one reading each, at once); `None`
/// when none runs or the backend cannot say.
pub async fn used(backend: &dyn Backend, instance: &Instance) -> Option<u64> {
    let running = instance
        .services
        .iter()
        .filter(|s| s.status.state == ServiceState::Running);
    let readings = futures_util::future::join_all(running.map(|s| backend.memory(&s.handle))).await;
    readings
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .reduce(|a, b| a + b)
}

/// Removes the queue entries that killed waiters left (the reaper's share of the clean-up);
/// the waiters remove them too, whenever they look.
pub async fn collect_expired(backend: &dyn Backend, now: DateTime<Utc>) {
    match backend.admission().await {
        Ok(admission) => sweep(backend, &admission.queue, now).await,
        Err(error) => tracing::debug!("cannot read the admission queue: {error}"),
    }
}

/// What uses the engine's capacity now, for `envctl capacity`.
#[derive(Debug, Clone)]
pub struct Report {
    pub capacity: Option<Capacity>,
    /// Every environment, with whether it counts and what it reserved.
    pub environments: Vec<(Instance, bool, u64)>,
    /// The live queue, in order.
    pub queue: Vec<Queued>,
}

/// The engine's capacity, what counts against it and who waits.
pub async fn report(backend: &dyn Backend) -> Result<Report, BackendError> {
    // Pool members too: they count against the capacity.
    let (admission, instances) =
        tokio::try_join!(backend.admission(), backend.list(&Selector::All))?;
    let now = Utc::now();
    let capacity = admission.capacity.clone().unwrap_or_default();
    let environments = instances
        .into_iter()
        .map(|i| {
            let reserved = reserved(&i.metadata, service_count(&i), &capacity);
            let counts = counts(&i, now);
            (i, counts, reserved)
        })
        .collect();
    Ok(Report {
        capacity: admission.capacity,
        environments,
        queue: ordered(&admission.queue, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn capacity(environments: Option<u32>, memory: Option<u64>) -> Capacity {
        Capacity {
            max_environments: environments,
            max_memory: memory,
            ..Capacity::default()
        }
    }

    fn entry(
        native: &str,
        priority: Priority,
        created_ms: i64,
        memory: u64,
        owner: &str,
    ) -> Queued {
        Queued {
            native: native.into(),
            waiter: Waiter {
                nonce: native.into(),
                priority,
                owner: Some(owner.into()),
                environment: None,
                started_by: None,
                memory,
                admitted: false,
            },
            created: DateTime::from_timestamp_millis(1_800_000_000_000 + created_ms).unwrap(),
            expires: None,
        }
    }

    fn counted(id: &str, owner: &str, memory: u64) -> Counted {
        Counted {
            id: id.into(),
            owner: Some(owner.into()),
            state: State::Ready,
            memory,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_100, 0).unwrap()
    }

    #[test]
    fn the_first_to_arrive_is_admitted_when_it_fits_and_nobody_else() {
        let cap = capacity(Some(2), None);
        let queue = [
            entry("b", Priority::Normal, 20, 0, "ci"),
            entry("a", Priority::Normal, 10, 0, "ci"),
        ];
        let running = [counted("x", "ci", 0)];
        assert_eq!(decide(&cap, &running, &queue, "a", now()), Decision::Admit);
        assert_eq!(
            decide(&cap, &running, &queue, "b", now()),
            Decision::Wait { place: 2 }
        );
        let full = [counted("x", "ci", 0), counted("y", "ci", 0)];
        assert_eq!(
            decide(&cap, &full, &queue, "a", now()),
            Decision::Wait { place: 1 }
        );
    }

    #[test]
    fn an_interactive_start_goes_before_ci_whatever_their_arrival() {
        let cap = capacity(Some(1), None);
        let queue = [
            entry("ci", Priority::Normal, 10, 0, "ci"),
            entry("me", Priority::High, 50, 0, "me"),
        ];
        assert_eq!(decide(&cap, &[], &queue, "me", now()), Decision::Admit);
        assert_eq!(
            decide(&cap, &[], &queue, "ci", now()),
            Decision::Wait { place: 2 }
        );
    }

    #[test]
    fn a_pool_fill_goes_after_every_other_start() {
        let cap = capacity(Some(1), None);
        let queue = [
            entry("fill", Priority::Low, 10, 0, "pool"),
            entry("ci", Priority::Normal, 50, 0, "ci"),
        ];
        assert_eq!(decide(&cap, &[], &queue, "ci", now()), Decision::Admit);
        assert_eq!(
            decide(&cap, &[], &queue, "fill", now()),
            Decision::Wait { place: 2 }
        );
    }

    #[test]
    fn a_large_head_is_never_overtaken_by_a_small_one_that_would_fit() {
        let cap = capacity(None, Some(10 * GIB));
        let queue = [
            entry("large", Priority::Normal, 10, 6 * GIB, "a"),
            entry("small", Priority::Normal, 20, GIB, "b"),
        ];
        let running = [counted("x", "c", 5 * GIB)];
        assert_eq!(
            decide(&cap, &running, &queue, "large", now()),
            Decision::Wait { place: 1 }
        );
        assert_eq!(
            decide(&cap, &running, &queue, "small", now()),
            Decision::Wait { place: 2 }
        );
        assert_eq!(decide(&cap, &[], &queue, "large", now()), Decision::Admit);
    }

    #[test]
    fn an_entry_admitted_elsewhere_counts_and_waits_no_more() {
        let mut head = entry("head", Priority::Normal, 10, 0, "ci");
        head.waiter.admitted = true;
        let queue = [head, entry("late", Priority::High, 20, 0, "me")];
        // The head was admitted before the high-priority start arrived: it takes the room.
        let one = capacity(Some(1), None);
        assert_eq!(
            decide(&one, &[], &queue, "late", now()),
            Decision::Wait { place: 1 }
        );
        // The head, looking again after its mark, sees who arrived ahead and gives way.
        assert_eq!(
            decide(&one, &[], &queue, "head", now()),
            Decision::Wait { place: 2 }
        );
        let two = capacity(Some(2), None);
        assert_eq!(decide(&two, &[], &queue, "late", now()), Decision::Admit);
    }

    #[test]
    fn an_expired_entry_holds_no_place() {
        let cap = capacity(Some(1), None);
        let mut dead = entry("dead", Priority::Normal, 10, 0, "ci");
        dead.expires = Some(now() - chrono::Duration::seconds(1));
        let queue = [dead, entry("next", Priority::Normal, 20, 0, "ci")];
        assert_eq!(decide(&cap, &[], &queue, "next", now()), Decision::Admit);
    }

    #[test]
    fn an_owner_at_its_limit_steps_aside_for_the_others() {
        let cap = Capacity {
            per_owner: Some(1),
            ..capacity(Some(4), None)
        };
        let queue = [
            entry("burst", Priority::Normal, 10, 0, "job-1"),
            entry("other", Priority::Normal, 20, 0, "job-2"),
        ];
        let running = [counted("x", "job-1", 0)];
        assert_eq!(
            decide(&cap, &running, &queue, "burst", now()),
            Decision::Wait { place: 1 }
        );
        assert_eq!(
            decide(&cap, &running, &queue, "other", now()),
            Decision::Admit
        );
    }

    #[test]
    fn a_service_without_mem_limit_costs_the_default() {
        let request = Request {
            environment: "shop".into(),
            owner: None,
            limits: vec![Some(GIB), None, None],
        };
        let cap = Capacity {
            default_memory: Some(512 << 20),
            ..Capacity::default()
        };
        assert_eq!(request.cost(&cap), 2 * GIB);
        assert_eq!(request.cost(&Capacity::default()), GIB);
    }

    #[test]
    fn the_waiting_line_says_the_place_and_what_is_reserved() {
        let waiting = Waiting {
            place: 2,
            queued: 3,
            environments: 8,
            reserved: 9 * GIB + GIB / 2,
            capacity: capacity(None, Some(10 * GIB)),
            memory: GIB,
            waited: Duration::from_secs(3),
        };
        assert_eq!(
            describe(&waiting),
            "2nd in line, 9.5 of 10 GiB reserved by 8 environments"
        );
        let waiting = Waiting {
            place: 1,
            environments: 2,
            capacity: capacity(Some(2), None),
            ..waiting
        };
        assert_eq!(describe(&waiting), "next in line, 2 of 2 environments run");
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(22), "22nd");
    }

    fn member(id: &str, environment: &str, age_h: u64, memory: u64) -> Candidate {
        Candidate {
            id: id.into(),
            environment: environment.into(),
            memory,
            kind: Evictable::Member {
                age: Duration::from_secs(age_h * 3600),
            },
        }
    }

    fn idle(id: &str, idle_min: u64, memory: u64) -> Candidate {
        Candidate {
            id: id.into(),
            environment: "other".into(),
            memory,
            kind: Evictable::Idle {
                idle: Duration::from_secs(idle_min * 60),
                last: "envctl up".into(),
                at: now(),
            },
        }
    }

    fn ids(plan: &[Candidate]) -> Vec<&str> {
        plan.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn pool_members_give_way_first_oldest_first_and_only_as_many_as_needed() {
        let cap = Capacity {
            preempt_idle: Some(Duration::from_secs(60)),
            ..capacity(Some(3), None)
        };
        let running = [
            counted("young", "pool", 0),
            counted("old", "pool", 0),
            counted("idle", "ci", 0),
        ];
        let candidates = [
            member("young", "other", 1, 0),
            member("old", "other", 5, 0),
            idle("idle", 600, 0),
        ];
        let plan = make_room(&cap, &running, "shop", 0, &candidates);
        assert_eq!(ids(&plan), ["old"], "the oldest member, and nothing idle");
        let fits = [counted("young", "pool", 0)];
        assert!(make_room(&cap, &fits, "shop", 0, &candidates).is_empty());
    }

    #[test]
    fn members_of_the_heads_own_environment_give_way_after_the_others() {
        let cap = capacity(Some(2), None);
        let running = [counted("mine", "pool", 0), counted("theirs", "pool", 0)];
        let candidates = [
            member("mine", "shop", 9, 0),
            member("theirs", "other", 1, 0),
        ];
        let plan = make_room(&cap, &running, "shop", 0, &candidates);
        assert_eq!(ids(&plan), ["theirs"]);
    }

    #[test]
    fn idle_environments_are_stopped_idlest_first_only_where_the_capacity_says_so() {
        let running = [
            counted("a", "ci", GIB),
            counted("b", "ci", GIB),
            counted("c", "ci", GIB),
        ];
        let candidates = [idle("a", 40, GIB), idle("b", 90, GIB), idle("c", 10, GIB)];
        let without = capacity(None, Some(3 * GIB));
        assert!(make_room(&without, &running, "shop", GIB, &candidates).is_empty());
        let cap = Capacity {
            preempt_idle: Some(Duration::from_secs(30 * 60)),
            ..without.clone()
        };
        let plan = make_room(&cap, &running, "shop", GIB, &candidates);
        assert_eq!(ids(&plan), ["b"], "the idlest, and only as many as needed");
        let plan = make_room(&cap, &running, "shop", 2 * GIB, &candidates);
        assert_eq!(ids(&plan), ["b", "a"]);
        // `c` was used 10 minutes ago: never stopped for a 30-minute preemption.
        assert!(make_room(&cap, &running, "shop", 3 * GIB, &candidates).is_empty());
    }

    #[test]
    fn nothing_is_stopped_when_stopping_would_still_not_make_it_fit() {
        let cap = Capacity {
            preempt_idle: Some(Duration::from_secs(60)),
            ..capacity(None, Some(4 * GIB))
        };
        // `busy` is not a candidate (pinned, leased, starting or updating, or recently used).
        let running = [
            counted("idle", "ci", GIB),
            counted("busy", "ci", 2 * GIB),
            counted("m", "pool", 0),
        ];
        let candidates = [idle("idle", 600, GIB), member("m", "other", 1, 0)];
        let plan = make_room(&cap, &running, "shop", 3 * GIB, &candidates);
        assert_eq!(
            ids(&plan),
            ["m"],
            "pool members go until none is left, nobody else"
        );
    }

    #[test]
    fn the_reason_reads_as_the_reapers() {
        let reason = reason(&idle("a", 95, 0), Duration::from_secs(30 * 60));
        assert_eq!(
            reason,
            format!(
                "idle for 1h35m, last activity: envctl up at {}, longer than the capacity's \
                 --preempt-idle 30m00s",
                now().format("%H:%M UTC")
            )
        );
    }

    mod on_fake {
        use super::*;
        use crate::backend::fake::Fake;

        fn request(limits: Vec<Option<u64>>) -> Request {
            Request {
                environment: "shop".into(),
                owner: Some("ci".into()),
                limits,
            }
        }

        /// An environment whose `up` is still starting it: it counts.
        fn starting(id: &str) -> Metadata {
            Metadata {
                start_deadline: Some(Utc::now() + chrono::Duration::hours(1)),
                ..Metadata::new(id)
            }
        }

        async fn with_capacity(capacity: Capacity) -> Fake {
            let fake = Fake::new();
            fake.set_capacity(Some(&capacity)).await.unwrap();
            fake
        }

        #[tokio::test(start_paused = true)]
        async fn without_a_capacity_a_start_looks_once_and_joins_no_queue() {
            let fake = Fake::new();
            let (signals, _kept) = Signals::manual();
            let ticket = admit(
                &fake,
                &request(vec![None]),
                &AdmitOptions::default(),
                &signals,
            )
            .await
            .unwrap();
            assert_eq!(ticket.memory(), None);
            assert_eq!(fake.calls_of("admission").len(), 1);
            assert!(fake.calls_of("enqueue").is_empty());
        }

        #[tokio::test(start_paused = true)]
        async fn a_start_waits_while_the_engine_is_full_and_is_admitted_once_room_is_made() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            fake.claim(&starting("ahead")).await.unwrap();
            let (signals, _kept) = Signals::manual();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let options = AdmitOptions {
                on_wait: Some(Arc::new({
                    let seen = seen.clone();
                    move |w: &Waiting| seen.lock().unwrap().push(describe(w))
                })),
                ..AdmitOptions::default()
            };
            let waiting = tokio::spawn({
                let (fake, options) = (fake.clone(), options.clone());
                async move { admit(&fake, &request(vec![None]), &options, &signals).await }
            });
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert!(!waiting.is_finished(), "admitted while the engine was full");
            assert_eq!(
                seen.lock().unwrap().last().unwrap(),
                "next in line, 1 of 1 environments run"
            );
            fake.release("ahead").await.unwrap();
            let ticket = tokio::time::timeout(POLL * 2, waiting)
                .await
                .expect("admitted once room was made")
                .unwrap()
                .unwrap();
            assert_eq!(
                fake.admission().await.unwrap().queue.len(),
                1,
                "until it claims"
            );
            ticket.leave(&fake).await;
            assert!(fake.admission().await.unwrap().queue.is_empty());
        }

        fn waiter(nonce: &str, priority: Priority) -> Waiter {
            Waiter {
                nonce: nonce.into(),
                priority,
                owner: Some(nonce.into()),
                environment: Some("shop".into()),
                started_by: None,
                memory: 0,
                admitted: false,
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_head_whose_second_look_finds_a_start_ahead_gives_way() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            // The high-priority start joins the queue after the head decided, before its mark (here
            // its entry, created marked as nobody waited): it may have looked without seeing
            // the head admitted, and admitted itself.
            let arrived = Arc::new(std::sync::atomic::AtomicBool::new(false));
            fake.on("enqueue", {
                let (fake, arrived) = (fake.clone(), arrived.clone());
                move || {
                    if !arrived.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let until = Utc::now() + chrono::Duration::seconds(10);
                        fake.enqueue_by_hand(&waiter("late", Priority::High), until);
                    }
                }
            });
            let (signals, _kept) = Signals::manual();
            let head = tokio::spawn({
                let fake = fake.clone();
                async move {
                    admit(
                        &fake,
                        &request(vec![None]),
                        &AdmitOptions::default(),
                        &signals,
                    )
                    .await
                }
            });
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(arrived.load(std::sync::atomic::Ordering::SeqCst));
            assert!(!head.is_finished(), "admitted beside the one ahead of it");
            // Once the other start claimed and left, the head goes.
            let queue = fake.admission().await.unwrap().queue;
            let late = queue.iter().find(|q| q.waiter.nonce == "late").unwrap();
            fake.dequeue(&late.native).await.unwrap();
            let ticket = tokio::time::timeout(POLL * 3, head)
                .await
                .expect("admitted once the other one left")
                .unwrap()
                .unwrap();
            ticket.leave(&fake).await;
        }

        #[tokio::test(start_paused = true)]
        async fn a_high_priority_start_arriving_while_the_head_goes_to_its_claim_waits() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            let (signals, _kept) = Signals::manual();
            // Admitted; it resolves its images before it claims, holding its entry.
            let head = admit(
                &fake,
                &request(vec![None]),
                &AdmitOptions::default(),
                &signals,
            )
            .await
            .expect("room for one");
            let late = AdmitOptions {
                priority: Priority::High,
                queue_timeout: Some(Duration::from_secs(3)),
                ..AdmitOptions::default()
            };
            let error = admit(&fake, &request(vec![None]), &late, &signals)
                .await
                .expect_err("not admitted beside the head");
            assert!(
                error.to_string().contains("1 of 1 environments run"),
                "{error}"
            );
            head.leave(&fake).await;
        }

        #[tokio::test(start_paused = true)]
        async fn an_entry_whose_waiter_was_admitted_counts_against_the_capacity() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            let admitted = Waiter {
                admitted: true,
                ..waiter("head", Priority::Normal)
            };
            fake.enqueue_by_hand(&admitted, Utc::now() + chrono::Duration::hours(1));
            let (signals, _kept) = Signals::manual();
            let options = AdmitOptions {
                priority: Priority::High,
                queue_timeout: Some(Duration::from_secs(3)),
                ..AdmitOptions::default()
            };
            let error = admit(&fake, &request(vec![None]), &options, &signals)
                .await
                .expect_err("the admitted entry takes the room");
            assert!(
                error.to_string().contains("1 of 1 environments run"),
                "{error}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_queue_timeout_gives_up_and_leaves_the_queue() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            fake.claim(&starting("ahead")).await.unwrap();
            let (signals, _kept) = Signals::manual();
            let options = AdmitOptions {
                queue_timeout: Some(Duration::from_secs(3)),
                ..AdmitOptions::default()
            };
            let error = admit(&fake, &request(vec![None]), &options, &signals)
                .await
                .expect_err("gave up");
            let message = error.to_string();
            assert!(
                message.starts_with("gave up waiting for capacity after 3s: next in line"),
                "{message}"
            );
            assert!(fake.admission().await.unwrap().queue.is_empty());
        }

        #[tokio::test(start_paused = true)]
        async fn an_environment_larger_than_the_whole_capacity_is_refused_at_once() {
            let fake = with_capacity(Capacity {
                default_memory: Some(GIB),
                ..capacity(None, Some(2 * GIB))
            })
            .await;
            let (signals, _kept) = Signals::manual();
            let error = admit(
                &fake,
                &request(vec![Some(GIB), None, None]),
                &AdmitOptions::default(),
                &signals,
            )
            .await
            .expect_err("refused");
            assert_eq!(
                error.to_string(),
                "environment `shop` needs 3 GiB of memory, more than the engine's whole \
                 capacity of 2 GiB\nhint: lower the services' `mem_limit`, or raise the \
                 capacity with `envctl capacity --max-memory SIZE`"
            );
            assert!(error.is_bad_input());
            assert!(fake.calls_of("enqueue").is_empty(), "nothing created");
        }

        #[tokio::test(start_paused = true)]
        async fn an_interrupted_waiter_leaves_the_queue_at_once() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            fake.claim(&starting("ahead")).await.unwrap();
            let (signals, sender) = Signals::manual();
            let waiting = tokio::spawn({
                let fake = fake.clone();
                async move {
                    admit(
                        &fake,
                        &request(vec![None]),
                        &AdmitOptions::default(),
                        &signals,
                    )
                    .await
                }
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(fake.admission().await.unwrap().queue.len(), 1);
            sender.send(1).unwrap();
            let result = waiting.await.unwrap();
            assert!(matches!(result, Err(StartError::Interrupted(_))));
            assert!(fake.admission().await.unwrap().queue.is_empty());
        }
        /// `db` pooled; `app` started by each `up`.
        const SHOP: &str = "\
name: shop
pool: {size: 1, services: [db]}
services:
  db:
    image: shop/db
    tag: '1'
  app:
    image: shop/app
    tag: '1'
";

        fn shop_fake() -> (Fake, crate::spec::Environment) {
            let fake = Fake::new();
            for (repository, tag) in [("shop/db", "1"), ("shop/app", "1")] {
                fake.add_image(crate::backend::ResolvedImage {
                    reference: crate::spec::ImageRef {
                        repository: repository.into(),
                        tag: tag.into(),
                    },
                    digest: None,
                    healthcheck: None,
                });
            }
            let shop = crate::spec::parse(std::path::Path::new("shop.yaml"), SHOP, &|_| None)
                .expect("a valid environment");
            (fake, shop)
        }

        fn up_options() -> crate::lifecycle::UpOptions {
            crate::lifecycle::on_fake::options(None, Duration::from_secs(60))
        }

        async fn start(fake: &Fake, shop: &crate::spec::Environment) -> String {
            let (signals, _kept) = Signals::manual();
            let quiet: crate::lifecycle::Progress = Arc::new(|_, _| {});
            let outcome =
                crate::lifecycle::up(fake, shop, &up_options(), &quiet, &signals, &|_| {}).await;
            outcome.result.expect("started").id
        }

        async fn fill(fake: &Fake, shop: &crate::spec::Environment) {
            let (signals, _kept) = Signals::manual();
            let quiet: crate::lifecycle::Progress = Arc::new(|_, _| {});
            let options = pool::FillOptions {
                up: crate::lifecycle::on_fake::options(None, Duration::from_secs(60)),
                max_age: pool::DEFAULT_MAX_AGE,
            };
            let filled = pool::fill(fake, shop, &options, &quiet, &signals)
                .await
                .expect("filled");
            assert_eq!(filled.created.len(), 1, "{filled:?}");
        }

        fn last(priority: Priority) -> AdmitOptions {
            AdmitOptions {
                priority,
                queue_timeout: Some(Duration::from_secs(3)),
                ..AdmitOptions::default()
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_ready_pool_member_counts_against_the_capacity() {
            let (fake, shop) = shop_fake();
            fill(&fake, &shop).await;
            fake.set_capacity(Some(&capacity(Some(1), None)))
                .await
                .unwrap();
            let (signals, _kept) = Signals::manual();
            // A fill makes no room: with the member counted, there is none.
            let filling = AdmitOptions {
                fill: true,
                ..last(Priority::Low)
            };
            let error = admit(&fake, &request(vec![None]), &filling, &signals)
                .await
                .expect_err("the member counts");
            assert!(
                error.to_string().contains("1 of 1 environments run"),
                "{error}"
            );
            assert_eq!(pool::members(&fake).await.unwrap().len(), 1);
        }

        /// A start of any priority: `--priority low` gives way in the queue, not to a pool.
        #[tokio::test(start_paused = true)]
        async fn a_start_retires_a_ready_pool_member_to_make_room() {
            for priority in [Priority::Normal, Priority::Low] {
                let (fake, shop) = shop_fake();
                fill(&fake, &shop).await;
                fake.set_capacity(Some(&capacity(Some(1), None)))
                    .await
                    .unwrap();
                let (signals, _kept) = Signals::manual();
                let ticket = admit(&fake, &request(vec![None]), &last(priority), &signals)
                    .await
                    .unwrap_or_else(|e| panic!("{priority:?}: not admitted: {e}"));
                ticket.leave(&fake).await;
                assert!(pool::members(&fake).await.unwrap().is_empty());
            }
        }

        /// Makes `id` look created `minutes` ago, with no activity since.
        fn age(fake: &Fake, id: &str, minutes: i64) {
            fake.edit_metadata(id, |m| {
                m.created_at = Some(Utc::now() - chrono::Duration::minutes(minutes));
            });
        }

        fn preempting(max: u32, after: u64) -> Capacity {
            Capacity {
                preempt_idle: Some(Duration::from_secs(after * 60)),
                ..capacity(Some(max), None)
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_start_stops_the_idlest_environment_where_the_capacity_says_so() {
            let (fake, shop) = shop_fake();
            let (idler, idle) = (start(&fake, &shop).await, start(&fake, &shop).await);
            let fresh = start(&fake, &shop).await;
            age(&fake, &idler, 300);
            age(&fake, &idle, 120);
            let (signals, _kept) = Signals::manual();
            // Without --preempt-idle, it waits.
            fake.set_capacity(Some(&capacity(Some(3), None)))
                .await
                .unwrap();
            admit(
                &fake,
                &request(vec![None]),
                &last(Priority::Normal),
                &signals,
            )
            .await
            .expect_err("nothing stopped without --preempt-idle");
            fake.set_capacity(Some(&preempting(3, 60))).await.unwrap();
            let ticket = admit(
                &fake,
                &request(vec![None]),
                &last(Priority::Normal),
                &signals,
            )
            .await
            .expect("admitted once the idlest stopped");
            ticket.leave(&fake).await;
            let now = Utc::now();
            let states: Vec<(String, State)> = inventory::list(&fake)
                .await
                .unwrap()
                .iter()
                .map(|i| (i.id.clone(), i.state(now)))
                .collect();
            assert!(states.contains(&(idler, State::Stopped)), "{states:?}");
            assert!(states.contains(&(idle, State::Ready)), "{states:?}");
            assert!(states.contains(&(fresh, State::Ready)), "{states:?}");
        }

        #[tokio::test(start_paused = true)]
        async fn an_environment_stopped_to_make_room_keeps_why_for_status() {
            let (fake, shop) = shop_fake();
            let idler = start(&fake, &shop).await;
            age(&fake, &idler, 300);
            fake.set_capacity(Some(&preempting(1, 60))).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = crate::state::Store::new(dir.path());
            let options = AdmitOptions {
                state: Some(store.clone()),
                ..last(Priority::Normal)
            };
            let (signals, _kept) = Signals::manual();
            let ticket = admit(&fake, &request(vec![None]), &options, &signals)
                .await
                .expect("admitted once the idler stopped");
            ticket.leave(&fake).await;
            let (state, _) = store.read_async().await;
            let stop = state
                .record(&fake.info().endpoint, &idler)
                .and_then(|r| r.stopped.clone())
                .expect("the stop is recorded");
            assert!(
                stop.reason
                    .starts_with("to make room for `shop`: idle for 5h00m"),
                "{}",
                stop.reason
            );
            assert!(
                stop.reason
                    .ends_with("longer than the capacity's --preempt-idle 1h00m"),
                "{}",
                stop.reason
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_pinned_or_leased_environment_is_never_stopped_to_make_room() {
            let (fake, shop) = shop_fake();
            let (pinned, leased) = (start(&fake, &shop).await, start(&fake, &shop).await);
            age(&fake, &pinned, 300);
            age(&fake, &leased, 300);
            let instance = inventory::find(&fake, &pinned).await.unwrap().unwrap();
            crate::lifecycle::pin(&fake, &instance).await.unwrap();
            let lease = crate::backend::Marker::Lease(Utc::now() + chrono::Duration::hours(1));
            let metadata = inventory::find(&fake, &leased)
                .await
                .unwrap()
                .unwrap()
                .metadata;
            fake.set_marker(&metadata, lease).await.unwrap();
            fake.set_capacity(Some(&preempting(2, 60))).await.unwrap();
            let (signals, _kept) = Signals::manual();
            admit(
                &fake,
                &request(vec![None]),
                &last(Priority::Normal),
                &signals,
            )
            .await
            .expect_err("nothing may be stopped");
            let now = Utc::now();
            for instance in inventory::list(&fake).await.unwrap() {
                assert_eq!(instance.state(now), State::Ready, "{}", instance.id);
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_renewal_racing_the_admitted_mark_never_undoes_it() {
            let fake = with_capacity(capacity(Some(1), None)).await;
            let mine = waiter("mine", Priority::Normal);
            let native = fake.enqueue_by_hand(&mine, expiry(Utc::now()));
            let ticket = Ticket {
                entry: Mutex::new(Some((native.clone(), mine.clone()))),
                memory: Some(0),
                ..Ticket::default()
            };
            // The renewal at RENEW_EVERY reads the entry unmarked, and its rename answers late:
            // the mark is made meanwhile.
            fake.fault(
                "renew_entry",
                "*",
                crate::backend::fake::Fault::Delay(POLL * 2),
            );
            ticket
                .holding(&fake, async {
                    tokio::time::sleep(RENEW_EVERY + POLL / 5).await;
                    mark(&fake, &ticket, &native, mine.clone(), true)
                        .await
                        .expect("marked");
                    tokio::time::sleep(POLL * 4).await;
                })
                .await;
            let queue = fake.admission().await.unwrap().queue;
            let entry = queue.iter().find(|q| q.native == native).unwrap();
            assert!(ticket.entry().unwrap().1.admitted);
            assert!(entry.waiter.admitted, "the engine lost the mark: {entry:?}");
        }

        #[tokio::test(start_paused = true)]
        async fn an_entry_swept_before_its_mark_goes_back_in_line() {
            use futures_util::FutureExt;
            let fake = with_capacity(capacity(Some(1), None)).await;
            // A fill waits behind it: its entry is created unmarked, and marked on its first look.
            fake.enqueue_by_hand(
                &waiter("fill", Priority::Low),
                Utc::now() + chrono::Duration::hours(1),
            );
            let swept = Arc::new(std::sync::atomic::AtomicBool::new(false));
            fake.on("renew_entry", {
                let (fake, swept) = (fake.clone(), swept.clone());
                move || {
                    if swept.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    // Another waiter took it for expired (this one stalled) and removed it.
                    let queue = fake.admission().now_or_never().unwrap().unwrap().queue;
                    for q in queue.iter().filter(|q| q.waiter.nonce != "fill") {
                        fake.dequeue(&q.native).now_or_never().unwrap().unwrap();
                    }
                }
            });
            let (signals, _kept) = Signals::manual();
            let ticket = admit(
                &fake,
                &request(vec![None]),
                &AdmitOptions::default(),
                &signals,
            )
            .await
            .expect("back in line, then admitted");
            assert!(swept.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!(fake.calls_of("enqueue").len(), 2, "it went back in line");
            ticket.leave(&fake).await;
        }

        #[tokio::test(start_paused = true)]
        async fn a_start_makes_no_room_while_an_admitted_start_may_adopt_a_member() {
            let (fake, shop) = shop_fake();
            fill(&fake, &shop).await;
            fake.set_capacity(Some(&capacity(Some(1), None)))
                .await
                .unwrap();
            // Admitted to adopt the member (charged nothing beside it), not claimed yet.
            let adopting = Waiter {
                admitted: true,
                ..waiter("adopting", Priority::Normal)
            };
            fake.enqueue_by_hand(&adopting, Utc::now() + chrono::Duration::hours(1));
            let (signals, _kept) = Signals::manual();
            admit(
                &fake,
                &request(vec![None]),
                &last(Priority::Normal),
                &signals,
            )
            .await
            .expect_err("no room while the admitted start goes to its claim");
            assert_eq!(
                pool::members(&fake).await.unwrap().len(),
                1,
                "the member the admitted start adopts was retired"
            );
        }
    }
}
