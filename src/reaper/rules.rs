//! The reaper's rules: what to do with one environment, as a pure function of what a pass
//! observed, what the reaper remembers of it and the clock. No I/O, so every rule is
//! unit-tested with an injected clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Options;
use crate::lifecycle::State;
use crate::state::{Counters, Record, Sample};

/// Inbound bytes below `NOISE_BYTES + NOISE_RATE × seconds between samples` are noise: the
/// bridge's own IPv6 and ARP chatter reaches every container now and then (70-byte packets,
/// a few a minute), while a single HTTP request through a proxy is several hundred bytes.
pub const NOISE_BYTES: u64 = 512;
/// See [`NOISE_BYTES`]: about 1.4 MB a day.
pub const NOISE_RATE: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Paused (`--pause-after`): resumed in milliseconds by the next use.
    Pause,
    Stop,
    Remove,
}

/// Why a pass acts on an environment. `Display` is the sentence users read; [`Reason::cause`]
/// is the machine-readable word `reap -o json` puts beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `--ttl` expired at this time.
    TtlExpired(DateTime<Utc>),
    /// The start never finished, and why it cannot any more.
    StartNeverFinished(String),
    /// Only envctl's markers or network are left.
    NoServiceLeft,
    /// Stopped for this long, since then.
    StoppedFor {
        stopped: Duration,
        since: DateTime<Utc>,
    },
    /// Older than `--max-age`, created then.
    OlderThanMaxAge {
        max_age: Duration,
        created: DateTime<Utc>,
    },
    /// A service has been crashed or unhealthy for this long.
    Crashed(Duration),
    /// Idle for this long; the last activity and when.
    Idle {
        idle: Duration,
        last: String,
        at: DateTime<Utc>,
    },
    /// `envctl gateway` flagged its error rate (`reap --stop-erroring`).
    ErrorRate(crate::state::ErrorFlag),
}

/// The kind of a [`Reason`], which `reap -o json` emits beside the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    TtlExpired,
    StartNeverFinished,
    NoServiceLeft,
    StoppedTooLong,
    OlderThanMaxAge,
    Crashed,
    Idle,
    ErrorRate,
}

impl Reason {
    pub fn cause(&self) -> Cause {
        match self {
            Reason::TtlExpired(_) => Cause::TtlExpired,
            Reason::StartNeverFinished(_) => Cause::StartNeverFinished,
            Reason::NoServiceLeft => Cause::NoServiceLeft,
            Reason::StoppedFor { .. } => Cause::StoppedTooLong,
            Reason::OlderThanMaxAge { .. } => Cause::OlderThanMaxAge,
            Reason::Crashed(_) => Cause::Crashed,
            Reason::Idle { .. } => Cause::Idle,
            Reason::ErrorRate(_) => Cause::ErrorRate,
        }
    }

    /// Why a pass with `options` stopped an environment, as `envctl status` says it while the
    /// environment stays stopped (`stopped by envctl at ... by the reaper: idle for 2h10m,
    /// ..., longer than --idle 2h00m`): the action's sentence, with the threshold it crossed.
    pub fn stopped_because(&self, options: &Options) -> String {
        match self {
            Reason::Idle { .. } | Reason::Crashed(_) => {
                format!(
                    "by the reaper: {self}, longer than --idle {}",
                    human(options.idle)
                )
            }
            Reason::ErrorRate(_) => format!(
                "by the reaper (--stop-erroring): {self}; requests through `envctl gateway` do \
                 not wake it, `envctl start` does"
            ),
            _ => format!("by the reaper: {self}"),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let day_minute = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        match self {
            Reason::TtlExpired(at) => write!(f, "its --ttl expired at {}", day_minute(at)),
            Reason::StartNeverFinished(why) => write!(f, "the start never finished: {why}"),
            Reason::NoServiceLeft => {
                f.write_str("no service container is left, only envctl's markers or network")
            }
            Reason::StoppedFor { stopped, since } => write!(
                f,
                "stopped for {} (since {})",
                human(*stopped),
                day_minute(since)
            ),
            Reason::OlderThanMaxAge { max_age, created } => write!(
                f,
                "older than --max-age {} (created {})",
                human(*max_age),
                day_minute(created)
            ),
            Reason::Crashed(since) => write!(
                f,
                "a service has been crashed or unhealthy for {}",
                human(*since)
            ),
            Reason::Idle { idle, last, at } => write!(
                f,
                "idle for {}, last activity: {last} at {}",
                human(*idle),
                at.format("%H:%M UTC")
            ),
            Reason::ErrorRate(flag) => write!(
                f,
                "its error rate at `envctl gateway`: {} (since {})",
                flag.describe(),
                flag.since.format("%H:%M UTC")
            ),
        }
    }
}

/// Everything a decision needs to know about one environment, read from the engine.
#[derive(Debug, Clone)]
pub struct Observation {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub pinned: bool,
    pub state: State,
    /// Why the start never finished, when it did not and cannot any more.
    pub unfinished: Option<String>,
    /// When the `--ttl` given at `up` expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the last container stopped, for a stopped environment.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Byte counters of the running services, why they could not be read, or that the
    /// backend has none.
    pub traffic: Traffic,
    /// Services that publish ports: where inbound traffic arrives.
    pub entries: BTreeSet<String>,
    /// A service exited non-zero, died, keeps restarting or is unhealthy.
    pub crashed: bool,
    /// Whether the `envctl up`/`run` that started it still runs (`None`: cannot tell here).
    pub starter_alive: Option<bool>,
    /// When the lease of a running `envctl run` expires, on whatever host it runs.
    pub lease_until: Option<DateTime<Utc>>,
}

/// What the traffic counters of an environment's running services tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// Bytes of each running service.
    Counters(BTreeMap<String, Counters>),
    /// They could not be read now: counts as activity, the safe direction.
    Unreadable(String),
    /// The backend has no counters: neither activity nor idleness. The pass warns that it
    /// judges idleness from envctl commands, leases and `--ttl` only.
    NotOffered,
}

/// The outcome of [`decide`]: the record to remember, and the action to take or why there is
/// none (exactly one of `action` and `kept` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub record: Record,
    pub action: Option<(ActionKind, Reason)>,
    pub kept: Option<Keep>,
}

/// Decides what to do with one environment at `now`. Pure, so the rules are unit-tested with
/// an injected clock.
pub fn decide(
    observation: &Observation,
    previous: Option<&Record>,
    now: DateTime<Utc>,
    options: &Options,
) -> Verdict {
    let mut record = previous.cloned().unwrap_or_default();
    let judged = judge(observation, &mut record, previous.is_none(), now, options);
    let (action, kept) = match judged {
        Ok(action) => (Some(action), None),
        Err(keep) => (None, Some(keep)),
    };
    Verdict {
        record,
        action,
        kept,
    }
}

/// Why a pass leaves an environment alone. Nobody reads it today; it names the rule that
/// kept an environment, for tests and for a future `reap --explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Created as the pass began, or later (or its creation time is unknown).
    New,
    /// `envctl pin`.
    Pinned,
    /// A start or an update is under way: its containers are stopped or not ready on purpose.
    Changing,
    /// An update was left half-way: what it put aside is `envctl start`'s to restore.
    UpdateUnfinished,
    /// Stopped, not yet for `--remove-after`.
    StoppedRecently,
    /// Its `envctl run` holds a lease.
    Leased,
    /// Active within `--idle`, and no other rule applies.
    Active,
    /// Paused, and not yet idle for `--idle`.
    Paused,
}

fn judge(
    observation: &Observation,
    record: &mut Record,
    first_sight: bool,
    now: DateTime<Utc>,
    options: &Options,
) -> Result<(ActionKind, Reason), Keep> {
    // An environment without a creation time counts as created now: the safe direction.
    let created = observation.created_at.unwrap_or(now);
    if created >= now {
        return Err(Keep::New);
    }
    // Without a record (a first sighting, or a lost state file) nothing is known of the
    // environment's past use: its clocks start now.
    if first_sight {
        record.note(now, Seen::FirstSight);
    }
    if let Some(what) = sample_traffic(observation, record, now) {
        record.note(now, what);
    }
    if observation.starter_alive == Some(true) && observation.state != State::Starting {
        record.note(now, Seen::RunStillRunning);
    }
    let leased = observation.lease_until.is_some_and(|until| until > now);
    if leased {
        record.note(now, Seen::RunStillRunning);
    }
    if observation.pinned {
        return Err(Keep::Pinned);
    }
    // `--ttl` is a hard deadline: it applies to a start under way and a leased run too.
    let running = matches!(
        observation.state,
        State::Starting | State::Updating | State::Ready | State::Degraded | State::Paused
    );
    if running
        && let Some(expires) = observation.expires_at
        && expires <= now
    {
        return Ok((ActionKind::Stop, Reason::TtlExpired(expires)));
    }
    match observation.state {
        // An update's containers are stopped, put aside or not ready yet on purpose; once it
        // was left half-way, the previous ones put aside are what `envctl start` restores:
        // never removed, whatever stopped them.
        State::Starting | State::Updating => Err(Keep::Changing),
        State::UpdateUnfinished => Err(Keep::UpdateUnfinished),
        State::Unfinished => {
            let why = observation.unfinished.as_deref().unwrap_or("unknown");
            Ok((
                ActionKind::Remove,
                Reason::StartNeverFinished(why.to_string()),
            ))
        }
        State::Debris => Ok((ActionKind::Remove, Reason::NoServiceLeft)),
        State::Stopped => {
            record.crashed_since = None;
            // A `touch` on a stopped environment delays its removal too.
            let stopped = observation.stopped_at.unwrap_or(now);
            let last = crate::state::last_activity(Some(record), created).at;
            let for_how_long = elapsed(stopped.max(last), now);
            if for_how_long < options.remove_after {
                return Err(Keep::StoppedRecently);
            }
            let reason = Reason::StoppedFor {
                stopped: for_how_long,
                since: stopped.max(last),
            };
            Ok((ActionKind::Remove, reason))
        }
        State::Ready | State::Degraded => {
            record.crashed_since = observation
                .crashed
                .then(|| record.crashed_since.unwrap_or(now));
            // A command running against the environment is use, whatever else is seen.
            if leased {
                return Err(Keep::Leased);
            }
            if options.stop_erroring
                && let Some(flag) = record.error_flag.as_ref().filter(|f| f.fresh(now))
            {
                record.stopped_for_errors = Some(now);
                return Ok((ActionKind::Stop, Reason::ErrorRate(flag.clone())));
            }
            // Running again: requests may wake it once more after a later stop, and why it
            // was stopped is history.
            record.stopped_for_errors = None;
            record.stopped = None;
            if let Some(max_age) = options.max_age
                && elapsed(created, now) >= max_age
            {
                return Ok((
                    ActionKind::Stop,
                    Reason::OlderThanMaxAge { max_age, created },
                ));
            }
            if let Some(since) = record.crashed_since
                && elapsed(since, now) >= options.idle
            {
                return Ok((ActionKind::Stop, Reason::Crashed(elapsed(since, now))));
            }
            let last = crate::state::last_activity(Some(record), created);
            let idle = elapsed(last.at, now);
            let reason = Reason::Idle {
                idle,
                last: last.what,
                at: last.at,
            };
            if idle >= options.idle {
                return Ok((ActionKind::Stop, reason));
            }
            match options.pause_after {
                Some(pause_after) if idle >= pause_after => Ok((ActionKind::Pause, reason)),
                _ => Err(Keep::Active),
            }
        }
        // Paused for idleness, it still counts as idle: `--idle` stops it as it would a
        // running one (a paused environment has no traffic of its own to count).
        State::Paused => {
            if leased {
                return Err(Keep::Leased);
            }
            if let Some(max_age) = options.max_age
                && elapsed(created, now) >= max_age
            {
                return Ok((
                    ActionKind::Stop,
                    Reason::OlderThanMaxAge { max_age, created },
                ));
            }
            let last = crate::state::last_activity(Some(record), created);
            let idle = elapsed(last.at, now);
            if idle < options.idle {
                return Err(Keep::Paused);
            }
            let reason = Reason::Idle {
                idle,
                last: last.what,
                at: last.at,
            };
            Ok((ActionKind::Stop, reason))
        }
    }
}

/// Activity a pass sees itself, as the record remembers it (`Activity::what`, which the
/// state file keeps as text and `ls` and the idle reason show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No record: nothing is known of the environment's past use.
    FirstSight,
    /// The `envctl run` that started it runs, or holds a lease.
    RunStillRunning,
    /// The counters could not be read now, and why.
    TrafficUnreadable(String),
    /// A service without an earlier sample.
    Started(String),
    /// A service whose counters went down.
    Restarted(String),
    /// Inbound bytes beyond the noise, on these entry services.
    Inbound(Vec<String>),
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::FirstSight => f.write_str("first seen by the reaper"),
            Seen::RunStillRunning => f.write_str("its `envctl run` is still running"),
            Seen::TrafficUnreadable(why) => write!(f, "traffic unreadable ({why})"),
            Seen::Started(service) => write!(f, "{service} started"),
            Seen::Restarted(service) => write!(f, "{service} restarted"),
            Seen::Inbound(services) => write!(f, "inbound traffic on {}", services.join(", ")),
        }
    }
}

impl From<Seen> for String {
    fn from(seen: Seen) -> String {
        seen.to_string()
    }
}

/// Takes a traffic sample into the record; returns the activity it shows, if any. Anything
/// unknown (no earlier sample, unreadable or reset counters) counts as activity now.
fn sample_traffic(
    observation: &Observation,
    record: &mut Record,
    now: DateTime<Utc>,
) -> Option<Seen> {
    let counters = match &observation.traffic {
        Traffic::Counters(counters) => counters,
        Traffic::Unreadable(why) => {
            record.sample = None;
            return Some(Seen::TrafficUnreadable(why.clone()));
        }
        Traffic::NotOffered => {
            record.sample = None;
            return None;
        }
    };
    if counters.is_empty() {
        record.sample = None;
        return None;
    }
    let before = record.sample.replace(Sample {
        at: now,
        counters: counters.clone(),
    });
    let Some(before) = before else {
        return Some(Seen::FirstSight);
    };
    let mut inbound = 0u64;
    let mut internal = 0u64;
    let mut receivers = Vec::new();
    for (service, now) in counters {
        let Some(then) = before.counters.get(service) else {
            return Some(Seen::Started(service.clone()));
        };
        if now.rx < then.rx || now.tx < then.tx {
            return Some(Seen::Restarted(service.clone()));
        }
        if observation.entries.contains(service) {
            inbound = inbound.saturating_add(now.rx - then.rx);
            if now.rx > then.rx {
                receivers.push(service.as_str());
            }
        } else {
            internal = internal.saturating_add(now.tx - then.tx);
        }
    }
    let seconds = elapsed(before.at, now).as_secs();
    let noise = NOISE_BYTES.saturating_add(NOISE_RATE.saturating_mul(seconds));
    (inbound.saturating_sub(internal) > noise)
        .then(|| Seen::Inbound(receivers.into_iter().map(String::from).collect()))
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

fn human(duration: Duration) -> String {
    crate::output::short_duration(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn options() -> Options {
        Options {
            idle: Duration::from_secs(2 * 3600),
            remove_after: Duration::from_secs(24 * 3600),
            max_age: None,
            dry_run: false,
            environment: None,
            stop_erroring: false,
            pause_after: None,
        }
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, hour, minute, 0).unwrap()
    }

    fn counters(pairs: &[(&str, u64, u64)]) -> BTreeMap<String, Counters> {
        pairs
            .iter()
            .map(|(s, rx, tx)| (s.to_string(), Counters { rx: *rx, tx: *tx }))
            .collect()
    }

    /// The seed's environment at 00:00, proxy and oracle-xe publishing ports.
    fn running(traffic: BTreeMap<String, Counters>) -> Observation {
        Observation {
            id: "20261126-000000".into(),
            created_at: Some(at(0, 0)),
            pinned: false,
            state: State::Ready,
            unfinished: None,
            expires_at: None,
            crashed: false,
            starter_alive: None,
            lease_until: None,
            stopped_at: None,
            traffic: Traffic::Counters(traffic),
            entries: ["proxy".to_string(), "oracle-xe".to_string()].into(),
        }
    }

    /// Runs passes at the given times with the given counters; returns the last verdict.
    fn passes(steps: &[(DateTime<Utc>, Observation)]) -> Verdict {
        passes_with(&options(), steps)
    }

    fn passes_with(options: &Options, steps: &[(DateTime<Utc>, Observation)]) -> Verdict {
        let mut record: Option<Record> = None;
        let mut last = None;
        for (now, observation) in steps {
            let verdict = decide(observation, record.as_ref(), *now, options);
            record = Some(verdict.record.clone());
            last = Some(verdict);
        }
        last.expect("at least one pass")
    }

    #[test]
    fn every_environment_left_alone_names_the_rule_that_kept_it() {
        let quiet = running(counters(&[("proxy", 1, 1)]));
        let kept = |o: &Observation, now| decide(o, None, now, &options()).kept;
        assert_eq!(kept(&quiet, at(0, 0)), Some(Keep::New));
        assert_eq!(kept(&quiet, at(1, 0)), Some(Keep::Active));
        let mut pinned = quiet.clone();
        pinned.pinned = true;
        assert_eq!(kept(&pinned, at(1, 0)), Some(Keep::Pinned));
        let mut starting = quiet.clone();
        starting.state = State::Starting;
        assert_eq!(kept(&starting, at(1, 0)), Some(Keep::Changing));
        let mut left = quiet.clone();
        left.state = State::UpdateUnfinished;
        assert_eq!(kept(&left, at(1, 0)), Some(Keep::UpdateUnfinished));
        let mut stopped = quiet.clone();
        stopped.state = State::Stopped;
        assert_eq!(kept(&stopped, at(1, 0)), Some(Keep::StoppedRecently));
        let mut leased = quiet.clone();
        leased.lease_until = Some(at(2, 0));
        assert_eq!(kept(&leased, at(1, 0)), Some(Keep::Leased));
        let mut debris = quiet;
        debris.state = State::Debris;
        let acted = decide(&debris, None, at(1, 0), &options());
        assert_eq!((acted.kept, acted.action.is_some()), (None, true));
    }

    #[test]
    fn what_a_pass_sees_reads_as_before() {
        let lines: Vec<String> = [
            Seen::FirstSight,
            Seen::RunStillRunning,
            Seen::TrafficUnreadable("stats failed".into()),
            Seen::Started("proxy".into()),
            Seen::Restarted("proxy".into()),
            Seen::Inbound(vec!["proxy".into(), "oracle-xe".into()]),
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            lines,
            [
                "first seen by the reaper",
                "its `envctl run` is still running",
                "traffic unreadable (stats failed)",
                "proxy started",
                "proxy restarted",
                "inbound traffic on proxy, oracle-xe"
            ]
        );
    }

    #[test]
    fn first_sight_counts_as_activity() {
        let quiet = running(counters(&[("proxy", 100, 100), ("accounting", 50, 50)]));
        let verdict = passes(&[(at(5, 0), quiet)]);
        assert_eq!(verdict.action, None, "never idle on first sight");
        assert_eq!(
            verdict.record.activity.unwrap().what,
            "first seen by the reaper"
        );
    }

    /// A record after one quiet pass at 01:00, with what the gateway wrote since.
    fn gateway_record(change: impl FnOnce(&mut Record)) -> (Observation, Record) {
        let quiet = running(counters(&[("proxy", 100, 100), ("accounting", 50, 50)]));
        let mut record = passes(&[(at(1, 0), quiet.clone())]).record;
        change(&mut record);
        (quiet, record)
    }

    #[test]
    fn gateway_activity_is_the_latest_activity_and_the_reason_names_the_gateway() {
        let (quiet, record) = gateway_record(|r| {
            r.note(at(2, 30), crate::state::GATEWAY_ACTIVITY);
        });
        let kept = decide(&quiet, Some(&record), at(3, 12), &options());
        assert_eq!(
            kept.action, None,
            "a request 42 minutes ago is not 2h of idleness"
        );
        let stopped = decide(&quiet, Some(&record), at(4, 40), &options());
        let (kind, reason) = stopped.action.expect("stopped");
        assert_eq!(kind, ActionKind::Stop);
        assert_eq!(
            reason.to_string(),
            "idle for 2h10m, last activity: a request through `envctl gateway` at 02:30 UTC"
        );
    }

    fn flagged(r: &mut Record) {
        r.error_flag = Some(crate::state::ErrorFlag {
            since: at(1, 30),
            judged_at: at(1, 34),
            requests: 50,
            errors: 31,
            window_seconds: 300,
            threshold_percent: 50,
        });
    }

    #[test]
    fn a_flagged_environment_is_stopped_only_with_stop_erroring_and_remembered() {
        let (quiet, record) = gateway_record(flagged);
        let without = decide(&quiet, Some(&record), at(1, 35), &options());
        assert_eq!(without.action, None);
        assert_eq!(without.record.stopped_for_errors, None);
        let asked = Options {
            stop_erroring: true,
            ..options()
        };
        let with = decide(&quiet, Some(&record), at(1, 35), &asked);
        let (kind, reason) = with.action.expect("stopped");
        assert_eq!((kind, reason.cause()), (ActionKind::Stop, Cause::ErrorRate));
        assert_eq!(
            reason.to_string(),
            "its error rate at `envctl gateway`: 31 of 50 requests (62%) answered 5xx over 5m, \
             above 50% (since 01:30 UTC)"
        );
        assert_eq!(with.record.stopped_for_errors, Some(at(1, 35)));
        let stale = decide(&quiet, Some(&record), at(1, 36), &asked);
        assert_eq!(
            stale.action, None,
            "a flag no gateway confirmed for a minute is stale"
        );
    }

    #[test]
    fn pinned_or_leased_flagged_environments_are_not_stopped_and_running_again_clears_the_mark() {
        let asked = Options {
            stop_erroring: true,
            ..options()
        };
        let (mut quiet, record) = gateway_record(flagged);
        quiet.pinned = true;
        assert_eq!(
            decide(&quiet, Some(&record), at(1, 35), &asked).action,
            None
        );
        quiet.pinned = false;
        quiet.lease_until = Some(at(2, 0));
        assert_eq!(
            decide(&quiet, Some(&record), at(1, 35), &asked).action,
            None
        );
        let (quiet, record) = gateway_record(|r| r.stopped_for_errors = Some(at(1, 0)));
        let verdict = decide(&quiet, Some(&record), at(1, 35), &asked);
        assert_eq!(verdict.record.stopped_for_errors, None, "it runs again");
    }

    #[test]
    fn an_environment_without_traffic_is_stopped_once_idle() {
        let quiet = running(counters(&[("proxy", 100, 100), ("accounting", 50, 50)]));
        let verdict = passes(&[(at(1, 0), quiet.clone()), (at(3, 12), quiet)]);
        assert_eq!(
            verdict.action.map(|(k, r)| (k, r.to_string())),
            Some((
                ActionKind::Stop,
                "idle for 2h12m, last activity: first seen by the reaper at 01:00 UTC".into()
            ))
        );
    }

    #[test]
    fn inbound_traffic_keeps_an_environment_alive() {
        let before = running(counters(&[("proxy", 100, 100), ("accounting", 50, 50)]));
        let after = running(counters(&[
            ("proxy", 50100, 90000),
            ("accounting", 3050, 2050),
        ]));
        let verdict = passes(&[
            (at(1, 0), before.clone()),
            (at(1, 3), after.clone()),
            (at(3, 0), after),
        ]);
        assert_eq!(
            verdict.action, None,
            "2h of idle time not reached since 01:03"
        );
        let activity = verdict.record.activity.unwrap();
        assert_eq!(
            (activity.at, activity.what.as_str()),
            (at(1, 3), "inbound traffic on proxy")
        );
    }

    #[test]
    fn traffic_between_the_environments_own_containers_is_not_activity() {
        // accounting's connection pool pings oracle-xe: what oracle-xe receives, accounting sent.
        let before = running(counters(&[
            ("oracle-xe", 1000, 1000),
            ("accounting", 1000, 1000),
        ]));
        let after = running(counters(&[
            ("oracle-xe", 91000, 31000),
            ("accounting", 31000, 91000),
        ]));
        let verdict = passes(&[(at(1, 0), before), (at(3, 30), after)]);
        assert!(
            matches!(verdict.action, Some((ActionKind::Stop, _))),
            "{verdict:?}"
        );
    }

    #[test]
    fn noise_below_the_threshold_is_not_activity() {
        let before = running(counters(&[("proxy", 100, 100)]));
        let after = running(counters(&[("proxy", 100 + NOISE_BYTES, 100)]));
        let verdict = passes(&[(at(1, 0), before), (at(3, 30), after)]);
        assert!(matches!(verdict.action, Some((ActionKind::Stop, _))));
    }

    #[test]
    fn unreadable_or_reset_counters_count_as_activity() {
        let before = running(counters(&[("proxy", 5000, 5000)]));
        let mut unreadable = before.clone();
        unreadable.traffic = Traffic::Unreadable("stats failed".into());
        let verdict = passes(&[(at(1, 0), before.clone()), (at(3, 30), unreadable)]);
        assert_eq!(verdict.action, None);
        let restarted = running(counters(&[("proxy", 10, 10)]));
        let verdict = passes(&[(at(1, 0), before), (at(3, 30), restarted)]);
        assert_eq!(verdict.action, None);
        assert_eq!(verdict.record.activity.unwrap().what, "proxy restarted");
    }

    #[test]
    fn pins_exempt_and_unfinished_starts_are_removed() {
        let mut pinned = running(counters(&[("proxy", 1, 1)]));
        pinned.pinned = true;
        assert_eq!(
            passes(&[(at(1, 0), pinned.clone()), (at(9, 0), pinned)]).action,
            None
        );
        let mut killed = running(BTreeMap::new());
        killed.state = State::Unfinished;
        killed.unfinished = Some("its `envctl up` (ci:42) is gone".into());
        let verdict = passes(&[(at(0, 5), killed)]);
        assert_eq!(
            verdict.action.map(|(k, r)| (k, r.to_string())),
            Some((
                ActionKind::Remove,
                "the start never finished: its `envctl up` (ci:42) is gone".into()
            ))
        );
    }

    #[test]
    fn stopped_environments_are_removed_after_remove_after() {
        let mut stopped = running(BTreeMap::new());
        stopped.state = State::Stopped;
        stopped.stopped_at = Some(at(1, 0));
        let seen = decide(&stopped, None, at(1, 30), &options());
        let verdict = decide(&stopped, Some(&seen.record), at(12, 0), &options());
        assert_eq!(verdict.action, None);
        let tomorrow = at(1, 30) + chrono::Duration::hours(25);
        let verdict = decide(&stopped, Some(&seen.record), tomorrow, &options());
        assert!(
            matches!(verdict.action, Some((ActionKind::Remove, ref r)) if r.to_string().starts_with("stopped for 1d01h")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_lost_state_never_removes_a_stopped_environment_touched_a_second_earlier() {
        let mut stopped = running(BTreeMap::new());
        stopped.state = State::Stopped;
        stopped.stopped_at = Some(at(1, 0));
        let days_later = at(1, 0) + chrono::Duration::days(3);
        let first = decide(&stopped, None, days_later, &options());
        assert_eq!(first.action, None, "no record: the clocks start now");
        let almost = days_later + chrono::Duration::hours(23);
        assert_eq!(
            decide(&stopped, Some(&first.record), almost, &options()).action,
            None
        );
        let full = days_later + chrono::Duration::hours(24);
        assert!(matches!(
            decide(&stopped, Some(&first.record), full, &options()).action,
            Some((ActionKind::Remove, _))
        ));
    }

    #[test]
    fn a_start_in_progress_is_never_reaped_whatever_the_flags() {
        let mut starting = running(BTreeMap::new());
        starting.state = State::Starting;
        let eager = Options {
            idle: Duration::from_secs(1),
            remove_after: Duration::from_secs(1),
            max_age: Some(Duration::from_secs(1)),
            ..options()
        };
        let verdict = passes_with(
            &eager,
            &[(at(1, 0), starting.clone()), (at(9, 0), starting)],
        );
        assert_eq!(verdict.action, None);
    }

    #[test]
    fn a_running_run_keeps_its_environment_from_idle_and_max_age_reaping() {
        let mut leased = running(counters(&[("proxy", 1, 1)]));
        leased.lease_until = Some(at(9, 1));
        let eager = Options {
            max_age: Some(Duration::from_secs(60)),
            ..options()
        };
        let verdict = passes_with(
            &eager,
            &[(at(1, 0), leased.clone()), (at(9, 0), leased.clone())],
        );
        assert_eq!(verdict.action, None);
        assert_eq!(
            verdict.record.activity.unwrap(),
            crate::state::Activity {
                at: at(9, 0),
                what: "its `envctl run` is still running".into()
            }
        );
        let expired = passes_with(
            &eager,
            &[(at(1, 0), leased.clone()), (at(9, 2), leased.clone())],
        );
        assert!(
            matches!(expired.action, Some((ActionKind::Stop, ref r)) if r.to_string().starts_with("older than --max-age")),
            "an expired lease protects nothing: {expired:?}"
        );
        leased.expires_at = Some(at(8, 0));
        let ttl = passes_with(&eager, &[(at(9, 0), leased)]);
        assert!(
            matches!(ttl.action, Some((ActionKind::Stop, ref r)) if r.to_string().starts_with("its --ttl expired")),
            "--ttl wins over a lease: {ttl:?}"
        );
    }

    #[test]
    fn containers_put_aside_by_an_unfinished_update_are_never_removed() {
        let mut left = running(BTreeMap::new());
        left.state = State::UpdateUnfinished;
        left.stopped_at = Some(at(1, 0));
        left.expires_at = Some(at(1, 0));
        let eager = Options {
            idle: Duration::from_secs(1),
            remove_after: Duration::from_secs(1),
            max_age: Some(Duration::from_secs(1)),
            ..options()
        };
        let verdict = passes_with(&eager, &[(at(1, 0), left.clone()), (at(9, 0), left)]);
        assert_eq!(verdict.action, None, "`envctl start` restores them");
    }

    #[test]
    fn debris_is_removed_unless_pinned() {
        let mut debris = running(BTreeMap::new());
        debris.state = State::Debris;
        assert!(matches!(
            decide(&debris, None, at(1, 0), &options()).action,
            Some((ActionKind::Remove, ref r)) if r.to_string().starts_with("no service container is left")
        ));
        debris.pinned = true;
        assert_eq!(decide(&debris, None, at(1, 0), &options()).action, None);
    }

    #[test]
    fn crashed_services_are_stopped_after_the_idle_time() {
        let mut crashed = running(counters(&[("proxy", 1, 1)]));
        crashed.state = State::Degraded;
        crashed.crashed = true;
        let busy = |mut o: Observation, rx: u64| {
            o.traffic = Traffic::Counters(counters(&[("proxy", rx, 1)]));
            o
        };
        let verdict = passes(&[
            (at(1, 0), busy(crashed.clone(), 1)),
            (at(2, 0), busy(crashed.clone(), 100_000)),
            (at(3, 1), busy(crashed, 200_000)),
        ]);
        assert!(
            matches!(verdict.action, Some((ActionKind::Stop, ref r)) if r.to_string().starts_with("a service has been crashed")),
            "crashed since 01:00, whatever its traffic: {verdict:?}"
        );
    }

    #[test]
    fn an_expired_ttl_stops_a_busy_environment() {
        let mut o = running(counters(&[("proxy", 1, 1)]));
        o.expires_at = Some(at(1, 0));
        assert_eq!(decide(&o, None, at(0, 59), &options()).action, None);
        assert_eq!(
            decide(&o, None, at(1, 0), &options())
                .action
                .map(|(k, r)| (k, r.to_string())),
            Some((
                ActionKind::Stop,
                "its --ttl expired at 2026-11-26 01:00 UTC".into()
            ))
        );
    }

    #[test]
    fn max_age_stops_busy_environments_and_new_ones_are_untouched() {
        let o = running(counters(&[("proxy", 1, 1)]));
        let options = Options {
            max_age: Some(Duration::from_secs(3600)),
            ..options()
        };
        let verdict = decide(&o, None, at(1, 30), &options);
        assert!(
            matches!(verdict.action, Some((ActionKind::Stop, ref r)) if r.to_string().starts_with("older than --max-age"))
        );
        assert_eq!(
            decide(&o, None, at(0, 0), &options).action,
            None,
            "created as the pass began"
        );
    }

    #[test]
    fn a_stop_says_why_for_status_with_the_threshold_it_crossed() {
        let idle = Reason::Idle {
            idle: Duration::from_secs(2 * 3600 + 600),
            last: "envctl logs".into(),
            at: at(4, 15),
        };
        assert_eq!(
            idle.stopped_because(&options()),
            "by the reaper: idle for 2h10m, last activity: envctl logs at 04:15 UTC, longer than \
             --idle 2h00m"
        );
        assert_eq!(
            Reason::Crashed(Duration::from_secs(3 * 3600)).stopped_because(&options()),
            "by the reaper: a service has been crashed or unhealthy for 3h00m, longer than --idle \
             2h00m"
        );
        assert_eq!(
            Reason::TtlExpired(at(1, 0)).stopped_because(&options()),
            "by the reaper: its --ttl expired at 2026-11-26 01:00 UTC"
        );
        let old = Reason::OlderThanMaxAge {
            max_age: Duration::from_secs(3600),
            created: at(0, 0),
        };
        assert_eq!(
            old.stopped_because(&options()),
            "by the reaper: older than --max-age 1h00m (created 2026-11-26 00:00 UTC)"
        );
        let erroring = Reason::ErrorRate(crate::state::ErrorFlag {
            since: at(1, 0),
            judged_at: at(1, 5),
            requests: 50,
            errors: 31,
            window_seconds: 300,
            threshold_percent: 50,
        });
        assert_eq!(
            erroring.stopped_because(&options()),
            "by the reaper (--stop-erroring): its error rate at `envctl gateway`: 31 of 50 \
             requests (62%) answered 5xx over 5m, above 50% (since 01:00 UTC); requests through \
             `envctl gateway` do not wake it, `envctl start` does"
        );
    }
}
