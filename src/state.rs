//! The reaper's small local state: when each environment was last active, and the traffic
//! counters of the previous sample.
//!
//! It lives in one JSON file, `$ENVCTL_STATE_DIR/state.json` (default
//! `$XDG_STATE_HOME/envctl`, else `~/.local/state/envctl`), keyed by Docker endpoint and
//! environment id. Writers take an exclusive file lock and replace the file by atomic rename, so
//! several envctl processes can share it. Docker's labels stay the source of truth for what
//! exists: a lost or corrupted file only resets idle clocks (every environment counts as
//! active from the moment it is first seen again), which is the safe direction.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const FILE: &str = "state.json";
const LOCK: &str = "state.lock";
const PASS_LOCK: &str = "reap.lock";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Records by Docker endpoint, then environment id.
    pub endpoints: BTreeMap<String, BTreeMap<String, Record>>,
}

/// What the reaper remembers of one environment.
///
/// Three writers share a record, each owning its fields: a reaper pass writes the sample, the
/// crash clock and `stopped_for_errors`, and activity as it saw it; envctl commands and the
/// gateway note activity (the latest wins, see [`Record::note`]); the gateway alone writes
/// `error_flag`. [`State::merge_pass`] is where a pass's record meets what the others wrote
/// meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The latest activity seen: an envctl command, or inbound traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// The traffic counters of the previous sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// When the reaper first saw a service crashed or unhealthy; cleared once all are fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashed_since: Option<DateTime<Utc>>,
    /// `envctl gateway`'s error-rate flag, while the share of 5xx answers it proxied is above
    /// its threshold; the gateway alone writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_flag: Option<ErrorFlag>,
    /// When the reaper stopped the environment for its error rate: requests through the
    /// gateway do not wake it then. Cleared once it runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_for_errors: Option<DateTime<Utc>>,
    /// Why envctl itself last stopped the environment, for `envctl status` to say while it
    /// stays stopped: a reaper pass that stopped it, or a start making room for another
    /// (`--preempt-idle`), writes it; `envctl start` (the gateway's too), or a reaper pass that
    /// sees the environment run again, clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
}

/// A stop envctl made on its own, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub at: DateTime<Utc>,
    /// For people: `to make room for `accounting`: idle for 2h31m, ...`.
    pub reason: String,
}

/// What a request through `envctl gateway` is called in activity and reaper reasons.
pub const GATEWAY_ACTIVITY: &str = "a request through `envctl gateway`";

/// The gateway's view of an environment answering too many 5xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFlag {
    /// When the rate went above the threshold.
    pub since: DateTime<Utc>,
    /// When the gateway last judged it: it writes its flags at every flush while they hold.
    pub judged_at: DateTime<Utc>,
    /// Requests and 5xx answers in the window when it was last judged.
    pub requests: u64,
    pub errors: u64,
    pub window_seconds: u64,
    pub threshold_percent: u32,
}

/// How long a flag counts without the gateway confirming it: a gateway that stopped watches
/// nothing, and its last flag must not stop an environment days later.
pub const FLAG_FRESH_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl ErrorFlag {
    /// Whether the gateway confirmed the flag recently enough to act on it.
    pub fn fresh(&self, now: DateTime<Utc>) -> bool {
        now - self.judged_at <= FLAG_FRESH_FOR
    }

    /// For people: `31 of 50 requests (62%) answered 5xx over 5m, above 50%`.
    pub fn describe(&self) -> String {
        let percent = (self.errors * 100).checked_div(self.requests).unwrap_or(0);
        format!(
            "{} of {} requests ({percent}%) answered 5xx over {}, above {}%",
            self.errors,
            self.requests,
            humantime::format_duration(std::time::Duration::from_secs(self.window_seconds)),
            self.threshold_percent
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub at: DateTime<Utc>,
    /// For people: `envctl touch`, `inbound traffic on proxy`.
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Received and sent bytes by service.
    pub counters: BTreeMap<String, Counters>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub rx: u64,
    pub tx: u64,
}

impl Record {
    /// Records activity unless a later one is already known.
    pub fn note(&mut self, at: DateTime<Utc>, what: impl Into<String>) {
        if self.activity.as_ref().is_none_or(|a| a.at <= at) {
            self.activity = Some(Activity {
                at,
                what: what.into(),
            });
        }
    }
}

/// The latest activity of an environment created at `created`: a recorded one, or its
/// creation.
pub fn last_activity(record: Option<&Record>, created: DateTime<Utc>) -> Activity {
    match record.and_then(|r| r.activity.as_ref()) {
        Some(activity) if activity.at >= created => activity.clone(),
        _ => Activity {
            at: created,
            what: "creation".into(),
        },
    }
}

impl State {
    pub fn record(&self, endpoint: &str, id: &str) -> Option<&Record> {
        self.endpoints.get(endpoint)?.get(id)
    }

    pub fn record_mut(&mut self, endpoint: &str, id: &str) -> &mut Record {
        self.endpoints
            .entry(endpoint.to_string())
            .or_default()
            .entry(id.to_string())
            .or_default()
    }

    /// Records activity unless a later one is already known.
    pub fn note_activity(&mut self, endpoint: &str, id: &str, at: DateTime<Utc>, what: &str) {
        self.record_mut(endpoint, id).note(at, what);
    }

    /// Records that envctl stopped `id` at `at`, and why.
    pub fn note_stop(&mut self, endpoint: &str, id: &str, at: DateTime<Utc>, reason: &str) {
        self.record_mut(endpoint, id).stopped = Some(Stop {
            at,
            reason: reason.to_string(),
        });
    }

    /// Records that a reaper pass that began at `began` stopped `id` at `at`, and why, unless a
    /// stop was recorded since the pass began: that one came first (a start made room
    /// meanwhile), and the pass only stopped what was stopped already.
    pub fn note_pass_stop(
        &mut self,
        endpoint: &str,
        id: &str,
        at: DateTime<Utc>,
        reason: &str,
        began: DateTime<Utc>,
    ) {
        let record = self.record_mut(endpoint, id);
        if record.stopped.as_ref().is_some_and(|s| s.at > began) {
            return;
        }
        record.stopped = Some(Stop {
            at,
            reason: reason.to_string(),
        });
    }

    /// Forgets why envctl stopped `id`: `envctl start` started it since, and a later stop is
    /// someone else's.
    pub fn note_started(&mut self, endpoint: &str, id: &str) {
        if let Some(record) = self.endpoints.get_mut(endpoint).and_then(|e| e.get_mut(id)) {
            record.stopped = None;
        }
    }

    /// Keeps what a reaper pass that began at `began` learned of `endpoint`'s environments,
    /// without losing what others wrote meanwhile: records of environments that no longer
    /// exist go, the pass's records replace the stored ones, but the gateway's error flag and
    /// any activity noted after `began` stay. Returns the environments touched after `began`,
    /// which the pass must leave alone.
    pub fn merge_pass<'a>(
        &mut self,
        endpoint: &str,
        existing: &BTreeSet<String>,
        learned: impl IntoIterator<Item = (&'a str, &'a Record)>,
        began: DateTime<Utc>,
    ) -> BTreeSet<String> {
        let records = self.endpoints.entry(endpoint.to_string()).or_default();
        records.retain(|id, _| existing.contains(id));
        let mut touched = BTreeSet::new();
        for (id, learned) in learned {
            let record = records.entry(id.to_string()).or_default();
            let since = record.activity.take().filter(|a| a.at > began);
            if since.is_some() {
                touched.insert(id.to_string());
            }
            // The gateway alone writes its flag; the one it wrote meanwhile is the latest.
            let flag = record.error_flag.take();
            // A pass only forgets a stop (it saw the environment run again); otherwise what the
            // file holds now is the latest: a stop recorded meanwhile, or none since `envctl
            // start` forgot it meanwhile.
            let stored = record.stopped.take();
            *record = learned.clone();
            record.error_flag = flag;
            record.stopped = match learned.stopped {
                None => stored.filter(|s| s.at > began),
                Some(_) => stored,
            };
            if since.is_some() {
                record.activity = since;
            }
        }
        touched
    }

    /// The environments of `endpoint` with activity noted after `began`.
    pub fn touched_since(&self, endpoint: &str, began: DateTime<Utc>) -> BTreeSet<String> {
        self.endpoints
            .get(endpoint)
            .into_iter()
            .flatten()
            .filter(|(_, record)| record.activity.as_ref().is_some_and(|a| a.at > began))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use the state directory `{}`: {source}", dir.display())]
pub struct StateError {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

/// The state file and its locks.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held for a whole reaper pass, so a cron pass and a daemon pass never act at the same time.
pub struct PassLock {
    _file: File,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// `ENVCTL_STATE_DIR`, else `$XDG_STATE_HOME/envctl`, else `~/.local/state/envctl`.
    pub fn from_env() -> Store {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("ENVCTL_STATE_DIR")
            .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("envctl")))
            .or_else(|| var("HOME").map(|h| h.join(".local/state/envctl")))
            .unwrap_or_else(|| std::env::temp_dir().join("envctl-state"));
        Store::new(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn error(&self, source: std::io::Error) -> StateError {
        StateError {
            dir: self.dir.clone(),
            source,
        }
    }

    fn lock_file(&self, name: &str) -> Result<File, StateError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.error(e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(name))
            .map_err(|e| self.error(e))?;
        file.lock().map_err(|e| self.error(e))?;
        Ok(file)
    }

    /// Waits for, then holds, the lock that serializes reaper passes.
    pub fn lock_pass(&self) -> Result<PassLock, StateError> {
        Ok(PassLock {
            _file: self.lock_file(PASS_LOCK)?,
        })
    }

    /// Reads the state. A missing file is an empty state; an unreadable or corrupted one is too,
    /// with a warning to report (the next write replaces it).
    pub fn read(&self) -> (State, Option<String>) {
        let path = self.dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (State::default(), None),
            Err(e) => {
                let warning = format!("cannot read the state file `{}`: {e}", path.display());
                return (State::default(), Some(warning));
            }
        };
        match serde_json::from_str::<State>(&text) {
            Ok(state) if state.version == VERSION => (state, None),
            Ok(_) | Err(_) => (
                State::default(),
                Some(format!(
                    "the state file `{}` is corrupted; replacing it (idle clocks restart now)",
                    path.display()
                )),
            ),
        }
    }

    /// Reads, changes and writes the state under the file lock.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut State) -> R,
    ) -> Result<(R, Option<String>), StateError> {
        let _lock = self.lock_file(LOCK)?;
        let (mut state, warning) = self.read();
        let result = change(&mut state);
        state.version = VERSION;
        self.write(&state).map_err(|e| self.error(e))?;
        Ok((result, warning))
    }

    /// [`Store::read`] on a blocking thread, so the file's I/O never holds an async worker.
    pub async fn read_async(&self) -> (State, Option<String>) {
        let store = self.clone();
        match off_workers(move || store.read()).await {
            Ok(read) => read,
            Err(error) => (
                State::default(),
                Some(format!("cannot read the state file: {error}")),
            ),
        }
    }

    /// [`Store::update`] on a blocking thread: waiting for the file lock, reading, fsync and
    /// rename never hold an async worker.
    pub async fn update_async<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut State) -> R + Send + 'static,
    ) -> Result<(R, Option<String>), StateError> {
        let store = self.clone();
        off_workers(move || store.update(change))
            .await
            .map_err(|e| self.error(e))?
    }

    /// [`Store::lock_pass`] on a blocking thread: another pass may hold it for minutes.
    pub async fn lock_pass_async(&self) -> Result<PassLock, StateError> {
        let store = self.clone();
        off_workers(move || store.lock_pass())
            .await
            .map_err(|e| self.error(e))?
    }

    fn write(&self, state: &State) -> std::io::Result<()> {
        let path = self.dir.join(FILE);
        let temporary = self.dir.join(format!("{FILE}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            // Failed writes must not pile up temporary files in a shared directory.
            let _ = fs::remove_file(&temporary);
        }
        written
    }
}

/// Runs blocking file work on tokio's blocking pool. A panic there is a bug and goes on
/// unwinding; a task cancelled by the runtime's shutdown is an error.
async fn off_workers<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<R> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(std::io::Error::other(error)),
    }
}

/// Records that an envctl command used an environment. Failing to record is not worth failing
/// `logs` or `status` over (the reaper only sees the environment idle earlier): it comes back
/// as a warning for the command to print, as does a problem the store recovered from.
pub async fn touch(endpoint: &str, id: &str, what: &str) -> Option<String> {
    match record_activity(endpoint, id, what).await {
        Ok(warning) => warning,
        Err(error) => Some(format!("cannot record the activity: {error}")),
    }
}

/// Records that envctl stopped `id` and why, for `envctl status`; a warning when it cannot.
pub async fn record_stop(store: &Store, endpoint: &str, id: &str, reason: &str) -> Option<String> {
    let (endpoint, id, reason) = (endpoint.to_string(), id.to_string(), reason.to_string());
    let updated = store
        .update_async(move |state| state.note_stop(&endpoint, &id, Utc::now(), &reason))
        .await;
    match updated {
        Ok(((), warning)) => warning,
        Err(error) => Some(format!("cannot record why it was stopped: {error}")),
    }
}

/// Forgets why envctl stopped `id` once `envctl start` started it; a warning when it cannot.
pub async fn record_started(endpoint: &str, id: &str) -> Option<String> {
    let (endpoint, id) = (endpoint.to_string(), id.to_string());
    let updated = Store::from_env()
        .update_async(move |state| state.note_started(&endpoint, &id))
        .await;
    match updated {
        Ok(((), warning)) => warning,
        Err(error) => Some(format!("cannot record that it was started: {error}")),
    }
}

/// Records activity, failing when it cannot (`envctl touch` exists for this alone). A problem
/// the store recovered from (a corrupted file reset) comes back as a warning.
pub async fn record_activity(
    endpoint: &str,
    id: &str,
    what: &str,
) -> Result<Option<String>, StateError> {
    let (endpoint, id, what) = (endpoint.to_string(), id.to_string(), what.to_string());
    let store = Store::from_env();
    let ((), warning) = store
        .update_async(move |state| state.note_activity(&endpoint, &id, Utc::now(), &what))
        .await?;
    Ok(warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let at = Utc::now();
        store
            .update(|s| s.note_activity("unix:///d.sock", "x", at, "envctl touch"))
            .unwrap();
        let (state, warning) = store.read();
        assert!(warning.is_none());
        let activity = state
            .record("unix:///d.sock", "x")
            .unwrap()
            .activity
            .clone();
        assert_eq!(activity.unwrap().what, "envctl touch");
    }

    #[test]
    fn older_activity_never_hides_newer() {
        let mut state = State::default();
        let now = Utc::now();
        state.note_activity("e", "x", now, "new");
        state.note_activity("e", "x", now - chrono::Duration::hours(1), "old");
        assert_eq!(
            state
                .record("e", "x")
                .unwrap()
                .activity
                .as_ref()
                .unwrap()
                .what,
            "new"
        );
    }

    fn at(minute: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 26, 1, minute, 0).unwrap()
    }

    fn flag(judged_at: DateTime<Utc>) -> ErrorFlag {
        ErrorFlag {
            since: at(0),
            judged_at,
            requests: 50,
            errors: 31,
            window_seconds: 300,
            threshold_percent: 50,
        }
    }

    /// What a pass that began at 01:10 learned of `x`: seen quiet, crashed since 01:05.
    fn learned() -> Record {
        let mut record = Record {
            crashed_since: Some(at(5)),
            ..Record::default()
        };
        record.note(at(10), "first seen by the reaper");
        record
    }

    fn merge(state: &mut State, ids: &[&str]) -> BTreeSet<String> {
        let existing = ids.iter().map(|id| id.to_string()).collect();
        let record = learned();
        state.merge_pass("e", &existing, [("x", &record)], at(10))
    }

    #[test]
    fn a_pass_replaces_what_it_owns() {
        let mut state = State::default();
        state.record_mut("e", "x").crashed_since = Some(at(1));
        state.note_activity("e", "x", at(2), "envctl logs");
        let touched = merge(&mut state, &["x"]);
        assert!(touched.is_empty());
        assert_eq!(state.record("e", "x"), Some(&learned()));
    }

    #[test]
    fn activity_noted_after_the_pass_began_survives_its_write_and_is_reported() {
        let mut state = State::default();
        state.note_activity("e", "x", at(11), "envctl touch");
        let touched = merge(&mut state, &["x"]);
        assert_eq!(touched, BTreeSet::from(["x".to_string()]));
        assert_eq!(state.touched_since("e", at(10)), touched);
        let record = state.record("e", "x").unwrap();
        assert_eq!(record.activity.as_ref().unwrap().what, "envctl touch");
        assert_eq!(record.crashed_since, Some(at(5)), "the rest is the pass's");
    }

    #[test]
    fn a_stop_recorded_after_the_pass_began_survives_its_write() {
        let mut state = State::default();
        state.note_stop("e", "x", at(11), "to make room for `shop`: idle for 2h00m");
        merge(&mut state, &["x"]);
        let stop = state.record("e", "x").unwrap().stopped.clone().unwrap();
        assert_eq!(stop.at, at(11));
        let mut older = State::default();
        older.note_stop("e", "x", at(9), "to make room for `shop`: idle for 2h00m");
        merge(&mut older, &["x"]);
        assert_eq!(
            older.record("e", "x").unwrap().stopped,
            None,
            "one the pass saw is the pass's to keep or clear"
        );
    }

    #[test]
    fn a_passs_own_stop_survives_the_next_pass_and_never_hides_one_recorded_meanwhile() {
        // The pass that began at 01:10 stopped `x` at 01:12, after saving what it learned.
        let mut state = State::default();
        merge(&mut state, &["x"]);
        state.note_pass_stop("e", "x", at(12), "by the reaper: idle", at(10));
        // The next pass began at 01:20 and read the record, the stop with it: it learned what
        // it read.
        let mut learned = state.record("e", "x").unwrap().clone();
        learned.crashed_since = None;
        let existing = BTreeSet::from(["x".to_string()]);
        state.merge_pass("e", &existing, [("x", &learned)], at(20));
        let stop = state.record("e", "x").unwrap().stopped.clone().unwrap();
        assert_eq!(
            (stop.at, stop.reason.as_str()),
            (at(12), "by the reaper: idle")
        );
        // A start made room by stopping `y` after the pass began: the pass that stops it too
        // keeps the start's reason, the first.
        state.note_stop("e", "y", at(11), "to make room for `shop`");
        state.note_pass_stop("e", "y", at(12), "by the reaper: idle", at(10));
        let stop = state.record("e", "y").unwrap().stopped.clone().unwrap();
        assert_eq!(stop.reason, "to make room for `shop`");
        // One recorded before the pass began is history: the environment ran again since.
        state.note_pass_stop("e", "y", at(30), "by the reaper: idle", at(25));
        let stop = state.record("e", "y").unwrap().stopped.clone().unwrap();
        assert_eq!(stop.reason, "by the reaper: idle");
    }

    #[test]
    fn a_pass_never_brings_back_a_stop_that_envctl_start_forgot_during_the_pass() {
        let mut state = State::default();
        merge(&mut state, &["x"]);
        state.note_pass_stop("e", "x", at(12), "by the reaper: idle", at(10));
        // The next pass, begun at 01:20, read the stop; `envctl start` forgot it meanwhile.
        let learned = state.record("e", "x").unwrap().clone();
        state.note_started("e", "x");
        let existing = BTreeSet::from(["x".to_string()]);
        state.merge_pass("e", &existing, [("x", &learned)], at(20));
        assert_eq!(state.record("e", "x").unwrap().stopped, None);
    }

    #[test]
    fn why_envctl_stopped_an_environment_is_forgotten_once_envctl_start_started_it() {
        let mut state = State::default();
        state.note_stop("e", "x", at(11), "to make room for `shop`: idle for 2h00m");
        // Commands that only look (`status`) leave it.
        state.note_activity("e", "x", at(12), "envctl status");
        assert!(state.record("e", "x").unwrap().stopped.is_some());
        state.note_started("e", "x");
        assert_eq!(state.record("e", "x").unwrap().stopped, None);
        state.note_started("e", "unknown");
        assert!(state.record("e", "unknown").is_none());
    }

    #[test]
    fn the_gateways_error_flag_is_never_the_passs_to_write() {
        let mut state = State::default();
        state.record_mut("e", "x").error_flag = Some(flag(at(12)));
        merge(&mut state, &["x"]);
        assert_eq!(
            state.record("e", "x").unwrap().error_flag,
            Some(flag(at(12)))
        );
        let mut cleared = State::default();
        merge(&mut cleared, &["x"]);
        assert_eq!(cleared.record("e", "x").unwrap().error_flag, None);
    }

    #[test]
    fn records_of_environments_gone_are_forgotten_on_that_endpoint_only() {
        let mut state = State::default();
        state.note_activity("e", "gone", at(1), "envctl logs");
        state.note_activity("other", "gone", at(1), "envctl logs");
        merge(&mut state, &["x"]);
        assert!(state.record("e", "gone").is_none());
        assert!(state.record("other", "gone").is_some());
    }

    /// Another process holds the state file's lock; this one waits for it without holding the
    /// only async worker, so the task that releases the lock still runs. Were the wait on the
    /// worker, a watchdog thread would have to release the lock after 10 s.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_the_state_lock_leaves_the_async_workers_free() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let held = std::sync::Arc::new(std::sync::Mutex::new(Some(store.lock_file(LOCK).unwrap())));
        let rescued = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = std::thread::spawn({
            let (held, rescued) = (held.clone(), rescued.clone());
            move || {
                std::thread::sleep(std::time::Duration::from_secs(10));
                if held.lock().unwrap().take().is_some() {
                    rescued.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.update_async(|_| ()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        held.lock().unwrap().take();
        waiting.await.unwrap().unwrap();
        assert!(
            !rescued.load(std::sync::atomic::Ordering::SeqCst),
            "the wait for the lock held the async worker"
        );
        drop(watchdog);
    }

    #[test]
    fn a_state_file_that_is_a_directory_fails_the_write_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(FILE)).unwrap();
        let store = Store::new(dir.path());
        let (state, warning) = store.read();
        assert!(state.endpoints.is_empty());
        assert!(warning.unwrap().contains("cannot read the state file"));
        assert!(store.update(|_| ()).is_err());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn a_corrupted_file_is_reported_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{ not json").unwrap();
        let store = Store::new(dir.path());
        let (state, warning) = store.read();
        assert!(state.endpoints.is_empty());
        assert!(warning.unwrap().contains("corrupted"));
        let ((), warning) = store.update(|_| ()).unwrap();
        assert!(warning.is_some());
        assert!(
            store.read().1.is_none(),
            "the update replaced the corrupted file"
        );
    }
}
