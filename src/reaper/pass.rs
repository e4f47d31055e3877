//! One reaper pass: lock, observe, decide, persist, act.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::{self, FuturesUnordered};

use super::rules::{ActionKind, Observation, Reason, Traffic, Verdict, decide};
use super::{Action, Options, ReapError, Report};
use crate::backend::{Backend, BackendError, ServiceState};
use crate::lifecycle::{self, Instance, State};
use crate::state::{Counters, Store};

/// How many environments a pass observes at once. Docker 20.10 answers concurrent one-shot
/// stats requests on its collector's one-second tick, so reading them all at once costs about a
/// second where one after another would cost 20 ms each.
const CONCURRENCY: usize = 128;

/// One reaper pass at `now`. Holds the pass lock throughout, so concurrent passes (a cron job
/// and a daemon) run one after the other and the second sees what the first did.
pub async fn pass(
    backend: &dyn Backend,
    store: &Store,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Report, ReapError> {
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };
    // Lock. A dry run changes nothing, so it needs neither the lock nor a writable state
    // directory.
    let _lock = match options.dry_run {
        true => None,
        false => lock_pass(store, &mut report.warnings).await,
    };
    let without_pause;
    let mut options = options;
    if options.pause_after.is_some() && !backend.info().capabilities.pause {
        report.warnings.push(format!(
            "the {} backend cannot pause services: --pause-after does nothing there",
            backend.info().kind
        ));
        without_pause = Options {
            pause_after: None,
            ..options.clone()
        };
        options = &without_pause;
    }
    if !backend.info().capabilities.traffic {
        report.warnings.push(format!(
            "{} has no traffic counters: idleness is judged from envctl commands, leases and \
             --ttl only",
            backend.info().endpoint
        ));
    }
    // Observe.
    let everything = lifecycle::inventory::list(backend).await?;
    let existing: BTreeSet<String> = everything.iter().map(|i| i.id.clone()).collect();
    let instances: Vec<Instance> = everything
        .into_iter()
        .filter(|i| {
            options
                .environment
                .as_ref()
                .is_none_or(|e| i.environment() == e)
        })
        .collect();
    let observations: Vec<Observation> = stream::iter(&instances)
        .map(|instance| observe(backend, instance, now))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    // Decide.
    let (state, warning) = store.read_async().await;
    report.warnings.extend(warning);
    let endpoint = backend.info().endpoint.as_str();
    let verdicts: Vec<Verdict> = observations
        .iter()
        .map(|o| decide(o, state.record(endpoint, &o.id), now, options))
        .collect();
    let planned: Vec<(&Instance, (ActionKind, Reason))> = instances
        .iter()
        .zip(&verdicts)
        .filter_map(|(instance, verdict)| Some((instance, verdict.action.clone()?)))
        .collect();
    let abandoned = abandoned_members(backend, options, now).await;
    if options.dry_run {
        let unknown = observations
            .iter()
            .filter(|o| state.record(endpoint, &o.id).is_none())
            .count();
        if unknown > 0 {
            report.warnings.push(format!(
                "{unknown} environment(s) have no reaper history yet: their idle clocks start at \
                 the first real pass, so this dry run lists only what needs no history \
                 (unfinished starts, --ttl, --max-age, debris)"
            ));
        }
        report.actions = planned
            .into_iter()
            .map(|(instance, (kind, reason))| action(instance, kind, reason, None))
            .chain(
                abandoned
                    .iter()
                    .map(|(member, why)| action(member, ActionKind::Remove, why.clone(), None)),
            )
            .collect();
        return Ok(report);
    }
    // What killed waiters left in the admission queue: one lookup when no capacity is set.
    lifecycle::admission::collect_expired(backend, now).await;
    // And what killed gateways left of their creations on request.
    collect_creations(backend, now).await;
    // What killed fills left: their claims on their pools, and members they left half-made.
    lifecycle::pool::collect_stale_claims(backend, now).await;
    let retired = retire_abandoned(backend, abandoned).await;
    // Persist, then act on what nobody changed meanwhile.
    let touched = persist(
        store,
        endpoint,
        &existing,
        &observations,
        &verdicts,
        now,
        &mut report,
    )
    .await;
    let left_alone = changed_meanwhile(backend, &instances, existing).await;
    let acting = planned.into_iter().filter(|(instance, _)| {
        !touched.contains(&instance.id) && !left_alone.contains(&instance.id)
    });
    report.actions = act(backend, acting).await;
    let stops = stopped_because(&report.actions, options);
    record_stops(store, endpoint, stops, now, &mut report.warnings).await;
    report.actions.extend(retired);
    report.actions.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(report)
}

/// Pool members whose fill was killed half-way (see [`lifecycle::pool::abandoned`]): `ls`
/// never shows them and only the next fill of their pool would replace them, so the reaper
/// removes them as it removes unfinished starts. Never a ready member, nor one still filling.
async fn abandoned_members(
    backend: &dyn Backend,
    options: &Options,
    now: DateTime<Utc>,
) -> Vec<(Instance, Reason)> {
    // The claims first: a fill that held its pool then made its members before.
    let claims = match backend.fill_claims().await {
        Ok(claims) => Some(claims),
        Err(error) => {
            tracing::debug!("cannot read the pools' fill claims: {error}");
            None
        }
    };
    let members = match lifecycle::pool::members(backend).await {
        Ok(members) => members,
        Err(error) => {
            tracing::debug!("cannot list the pools' members: {error}");
            return Vec::new();
        }
    };
    members
        .into_iter()
        .filter(|m| {
            options
                .environment
                .as_ref()
                .is_none_or(|e| m.environment() == e)
        })
        .filter_map(|m| {
            let why = lifecycle::pool::abandoned(&m, claims.as_deref(), now)?;
            Some((m, Reason::StartNeverFinished(why)))
        })
        .collect()
}

/// Removes the abandoned members, each taken out of its pool first (see
/// [`lifecycle::pool::retire`]); those an `up` took meanwhile are not the pass's.
async fn retire_abandoned(
    backend: &dyn Backend,
    abandoned: Vec<(Instance, Reason)>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (member, why) in abandoned {
        let error = match lifecycle::pool::retire(backend, &member).await {
            Ok(true) => None,
            Ok(false) => continue,
            Err(error) => Some(error.to_string()),
        };
        actions.push(action(&member, ActionKind::Remove, why, error));
    }
    actions
}

/// Removes the creation markers of gateways that are gone or past their deadline, so the next
/// request creates the environment again.
async fn collect_creations(backend: &dyn Backend, now: DateTime<Utc>) {
    let stale = match lifecycle::inventory::stale_creations(backend, now).await {
        Ok(stale) => stale,
        Err(error) => {
            tracing::warn!("cannot list the gateways' creations: {error}");
            return;
        }
    };
    // By its run: a marker a gateway set anew since the listing (another reaper took the stale
    // one meanwhile) is never touched.
    for (id, run) in stale {
        let cleared = match &run {
            Some(run) => backend.clear_create_marker(&id, run).await,
            // Set by an envctl that wrote no run: by its name, as before.
            None => {
                backend
                    .clear_marker(&id, crate::backend::MarkerKind::Create)
                    .await
            }
        };
        match cleared {
            Ok(()) => tracing::info!("removed the creation marker of `{id}`: its gateway is gone"),
            Err(error) => tracing::warn!("cannot remove the creation marker of `{id}`: {error}"),
        }
    }
}

/// Saves what the pass learned, and learns what happened meanwhile: returns the environments
/// touched after the pass began, which it leaves alone.
async fn persist(
    store: &Store,
    endpoint: &str,
    existing: &BTreeSet<String>,
    observations: &[Observation],
    verdicts: &[Verdict],
    now: DateTime<Utc>,
    report: &mut Report,
) -> BTreeSet<String> {
    let learned: Vec<(String, crate::state::Record)> = observations
        .iter()
        .zip(verdicts)
        .map(|(o, v)| (o.id.clone(), v.record.clone()))
        .collect();
    let (owned_endpoint, seen) = (endpoint.to_string(), existing.clone());
    let saved = store
        .update_async(move |state| {
            let learned = learned.iter().map(|(id, record)| (id.as_str(), record));
            state.merge_pass(&owned_endpoint, &seen, learned, now)
        })
        .await;
    match saved {
        Ok((touched, warning)) => {
            report.warnings.extend(warning);
            touched
        }
        Err(error) => {
            // Nothing learned can be kept, so idle clocks cannot advance beyond the first
            // sighting and nothing is stopped for idleness: the safe direction. Touches made
            // since the pass began are still honoured, as far as the file can be read.
            report.warnings.push(format!(
                "{error}; idle clocks cannot advance until it can be written"
            ));
            store.read_async().await.0.touched_since(endpoint, now)
        }
    }
}

/// The environments a pin made or an update begun since the pass began keeps from it, and
/// those someone else removed (a `down`): an environment gone, or with less of it left, since
/// the pass looked is not the pass's to act on, nor to report. If the engine cannot tell, all
/// of them (`existing`).
async fn changed_meanwhile(
    backend: &dyn Backend,
    instances: &[Instance],
    existing: BTreeSet<String>,
) -> BTreeSet<String> {
    let Ok(listed) = lifecycle::inventory::list(backend).await else {
        return existing;
    };
    let listed: BTreeMap<&str, &Instance> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    instances
        .iter()
        .filter(|seen| match listed.get(seen.id.as_str()) {
            Some(now) => now.pinned() || now.updating(Utc::now()) || parts(now) < parts(seen),
            None => true,
        })
        .map(|i| i.id.clone())
        .collect()
}

/// Stops or removes each planned environment at once; returns what was done, by id.
async fn act<'a>(
    backend: &dyn Backend,
    planned: impl Iterator<Item = (&'a Instance, (ActionKind, Reason))>,
) -> Vec<Action> {
    let acting = planned
        .map(|(instance, (kind, reason))| async move {
            let result = match kind {
                ActionKind::Pause => lifecycle::pause(backend, instance)
                    .await
                    .map_err(lifecycle::TeardownError::from),
                ActionKind::Stop => lifecycle::stop(backend, instance)
                    .await
                    .map_err(lifecycle::TeardownError::from),
                // Removed environments are thrown away: killed, not stopped.
                ActionKind::Remove => lifecycle::remove(backend, instance, None).await,
            };
            let error = match result {
                Ok(()) => None,
                Err(error) => {
                    // It failed as someone else removed it meanwhile (Docker refuses a second
                    // removal under way): theirs, not a failure of the pass.
                    if let Ok(None) = lifecycle::inventory::find(backend, &instance.id).await {
                        return None;
                    }
                    Some(error.to_string())
                }
            };
            Some(action(instance, kind, reason, error))
        })
        .collect::<FuturesUnordered<_>>();
    let mut actions: Vec<Action> = acting.filter_map(|a| async move { a }).collect().await;
    actions.sort_by(|a, b| a.id.cmp(&b.id));
    actions
}

/// What the pass stopped, and why in the words `envctl status` says it.
fn stopped_because(actions: &[Action], options: &Options) -> Vec<(String, String)> {
    actions
        .iter()
        .filter(|a| a.action == ActionKind::Stop && a.error.is_none())
        .map(|a| (a.id.clone(), a.reason.stopped_because(options)))
        .collect()
}

/// Records why the pass that began at `began` stopped what it stopped, where a start that
/// makes room records its stops, for `envctl status` to say while the environment stays
/// stopped (`envctl start` forgets it). Written after acting, so only a stop that happened is
/// said, and after the pass saved what it learned, so that save cannot drop it; the next pass
/// keeps it while it finds the environment stopped. A stop recorded since the pass began
/// (a start made room meanwhile) came first, and stays.
async fn record_stops(
    store: &Store,
    endpoint: &str,
    stops: Vec<(String, String)>,
    began: DateTime<Utc>,
    warnings: &mut Vec<String>,
) {
    if stops.is_empty() {
        return;
    }
    let (endpoint, at) = (endpoint.to_string(), Utc::now());
    let recorded = store
        .update_async(move |state| {
            for (id, why) in &stops {
                state.note_pass_stop(&endpoint, id, at, why, began);
            }
        })
        .await;
    match recorded {
        Ok(((), warning)) => warnings.extend(warning),
        Err(error) => warnings.push(format!(
            "{error}; `envctl status` cannot say why this pass stopped what it stopped"
        )),
    }
}

/// How much of an environment exists: services (set aside too), network, volumes, markers and
/// claim. A removal makes it smaller; so does the end of an `envctl run` (its lease), which
/// leaves the environment alone for one pass: the safe direction.
fn parts(instance: &Instance) -> usize {
    let markers = &instance.markers;
    instance.services.len()
        + instance.aside.len()
        + instance.isolation.len()
        + instance.volumes.len()
        + [
            markers.claimed,
            markers.ready,
            markers.pinned,
            markers.lease_until.is_some(),
        ]
        .into_iter()
        .filter(|&present| present)
        .count()
}

/// Takes the pass lock. When the state directory cannot hold it, the pass goes on without it,
/// with a warning: two passes at once only repeat each other's actions.
async fn lock_pass(store: &Store, warnings: &mut Vec<String>) -> Option<crate::state::PassLock> {
    match store.lock_pass_async().await {
        Ok(lock) => Some(lock),
        Err(error) => {
            warnings.push(format!("{error}; passing without the pass lock"));
            None
        }
    }
}

/// The daemon: a pass every `every` until the first signal, which lets the pass in flight
/// finish. (A second signal ends the process at once; the caller arranges that.)
pub async fn daemon(
    backend: &dyn Backend,
    store: &Store,
    options: &Options,
    every: Duration,
    signals: &crate::signals::Signals,
    report: impl Fn(&Result<Report, ReapError>),
) {
    while signals.count() == 0 {
        report(&pass(backend, store, options, Utc::now()).await);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = signals.received(1) => {}
        }
    }
}

fn action(instance: &Instance, kind: ActionKind, reason: Reason, error: Option<String>) -> Action {
    let refs: Vec<String> = instance.refs().iter().map(ToString::to_string).collect();
    Action {
        action: kind,
        id: instance.id.clone(),
        environment: instance.environment().to_string(),
        subject: match refs.is_empty() {
            true => instance.environment().to_string(),
            false => refs.join(" "),
        },
        reason,
        error,
    }
}

/// Reads what the backend knows of one environment: states, stop times, traffic counters.
async fn observe(backend: &dyn Backend, instance: &Instance, now: DateTime<Utc>) -> Observation {
    let state = instance.state(now);
    let running: Vec<_> = instance
        .services
        .iter()
        .filter(|s| s.status.state == ServiceState::Running)
        .collect();
    let traffic = async {
        if !backend.info().capabilities.traffic {
            return Traffic::NotOffered;
        }
        let reading = running.iter().map(|service| async move {
            let traffic = backend.traffic(&service.handle).await?;
            let counters = Counters {
                rx: traffic.received,
                tx: traffic.sent,
            };
            Ok::<_, BackendError>((service.service().to_string(), counters))
        });
        match futures_util::future::try_join_all(reading).await {
            Ok(counters) => Traffic::Counters(counters.into_iter().collect()),
            Err(error) => Traffic::Unreadable(error.to_string()),
        }
    };
    let stopped_at = async {
        if state != State::Stopped {
            return None;
        }
        let statuses = lifecycle::statuses(backend, instance).await.ok()?;
        statuses.iter().filter_map(|s| s.finished_at).max()
    };
    let (traffic, stopped_at) = tokio::join!(traffic, stopped_at);
    Observation {
        id: instance.id.clone(),
        created_at: instance.created_at(),
        pinned: instance.pinned(),
        state,
        unfinished: instance.unfinished(now),
        crashed: instance.crashed(),
        starter_alive: instance.starter_alive(),
        lease_until: instance.lease_until(),
        expires_at: instance.expires_at(),
        stopped_at,
        traffic,
        entries: instance
            .services
            .iter()
            .filter(|s| !s.metadata.ports.is_empty())
            .map(|s| s.service().to_string())
            .collect(),
    }
}
