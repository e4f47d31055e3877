//! Exact activity and the error-rate guard, in memory: every proxied request is noted here
//! without I/O, and a flusher writes what changed to the reaper's state at most every
//! [`FLUSH_EVERY`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::environments::Flush;
use crate::state::ErrorFlag;

/// How often activity reaches the reaper's state, at most.
pub const FLUSH_EVERY: Duration = Duration::from_secs(3);

/// Fewer requests than this in a window never flag an environment: one failed request out of
/// one is no error rate.
pub const MIN_REQUESTS: u64 = 10;

/// The error-rate guard's settings: off unless `--max-error-rate` is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// The share of 5xx answers above which an environment is flagged, 0.0..=1.0.
    pub max_rate: f64,
    pub window: Duration,
}

/// One second of answers.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    at: Instant,
    requests: u64,
    errors: u64,
}

#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<Bucket>,
    flag: Option<ErrorFlag>,
    /// Since when the rate has been at or below the threshold while flagged.
    below_since: Option<Instant>,
    /// Whether the flag changed since the last flush.
    changed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// The latest request per environment not yet flushed.
    pending: BTreeMap<String, DateTime<Utc>>,
    /// Answers still streaming (a WebSocket, a long download, server-sent events), per
    /// environment: activity for as long as they are open.
    open: BTreeMap<String, usize>,
    windows: BTreeMap<String, Window>,
}

/// Activity and error windows of every environment.
#[derive(Debug, Default)]
pub struct Activity {
    guard: Option<Guard>,
    inner: Arc<Mutex<Inner>>,
}

/// Opens a [`Stream`] for one environment once its answer exists.
#[derive(Debug, Clone)]
pub struct Tracker {
    inner: Arc<Mutex<Inner>>,
    id: String,
}

impl Tracker {
    /// An answer of the environment begins streaming: activity until the returned guard drops.
    pub fn open(self) -> Stream {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.open.entry(self.id.clone()).or_default() += 1;
        drop(inner);
        Stream(self)
    }
}

/// An answer streaming to its client: the environment is active until it drops, which notes
/// activity at its end.
#[derive(Debug)]
pub struct Stream(Tracker);

impl Drop for Stream {
    fn drop(&mut self) {
        let Tracker { inner, id } = &self.0;
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = inner.open.get_mut(id) {
            *open -= 1;
            if *open == 0 {
                inner.open.remove(id);
            }
        }
        let at = Utc::now();
        let pending = inner.pending.entry(id.clone()).or_insert(at);
        *pending = (*pending).max(at);
    }
}

impl Activity {
    pub fn new(guard: Option<Guard>) -> Activity {
        Activity {
            guard,
            inner: Arc::default(),
        }
    }

    /// What counts the open answers of `id` as activity.
    pub fn tracker(&self, id: &str) -> Tracker {
        Tracker {
            inner: self.inner.clone(),
            id: id.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a request to `id` at `at` (wall clock) / `now` (monotonic) that was answered with
    /// `status`.
    pub fn request(&self, id: &str, at: DateTime<Utc>, now: Instant, status: u16) {
        let mut inner = self.lock();
        let pending = inner.pending.entry(id.to_string()).or_insert(at);
        *pending = (*pending).max(at);
        let Some(guard) = self.guard else {
            return;
        };
        let window = inner.windows.entry(id.to_string()).or_default();
        let error = u64::from(status >= 500);
        match window.buckets.back_mut() {
            Some(bucket) if now.duration_since(bucket.at) < Duration::from_secs(1) => {
                bucket.requests += 1;
                bucket.errors += error;
            }
            _ => window.buckets.push_back(Bucket {
                at: now,
                requests: 1,
                errors: error,
            }),
        }
        judge(window, &guard, at, now);
    }

    /// Notes activity that is not a proxied answer (a wake), without touching error rates.
    pub fn touched(&self, id: &str, at: DateTime<Utc>) {
        let mut inner = self.lock();
        let pending = inner.pending.entry(id.to_string()).or_insert(at);
        *pending = (*pending).max(at);
    }

    /// Forgets an environment's error window: it was started, so its flag clears.
    pub fn reset(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(window) = inner.windows.get_mut(id) {
            let had_flag = window.flag.is_some();
            *window = Window {
                changed: had_flag,
                ..Window::default()
            };
        }
    }

    /// The flag of an environment, if it is flagged.
    pub fn flag(&self, id: &str) -> Option<ErrorFlag> {
        self.lock().windows.get(id).and_then(|w| w.flag.clone())
    }

    /// What to write to the reaper's state now: pending activity, the flags that hold (again,
    /// so the reaper knows they are current) and those just cleared. Windows are judged again
    /// first, so a flag clears without new requests.
    pub fn take(&self, at: DateTime<Utc>, now: Instant) -> Flush {
        let mut inner = self.lock();
        // An answer still open is activity now.
        let open: Vec<String> = inner.open.keys().cloned().collect();
        for id in open {
            let pending = inner.pending.entry(id).or_insert(at);
            *pending = (*pending).max(at);
        }
        let activity = std::mem::take(&mut inner.pending).into_iter().collect();
        let mut flags = Vec::new();
        if let Some(guard) = self.guard {
            for (id, window) in &mut inner.windows {
                judge(window, &guard, at, now);
                if std::mem::take(&mut window.changed) || window.flag.is_some() {
                    flags.push((id.clone(), window.flag.clone()));
                }
            }
            inner
                .windows
                .retain(|_, w| w.flag.is_some() || !w.buckets.is_empty());
        }
        Flush { activity, flags }
    }

    /// Puts back what a failed flush could not write, unless newer activity came meanwhile.
    pub fn restore(&self, flush: Flush) {
        let mut inner = self.lock();
        for (id, at) in flush.activity {
            let pending = inner.pending.entry(id).or_insert(at);
            *pending = (*pending).max(at);
        }
        for (id, _) in flush.flags {
            if let Some(window) = inner.windows.get_mut(&id) {
                window.changed = true;
            }
        }
    }
}

/// Drops buckets older than the window, then sets or clears the flag.
fn judge(window: &mut Window, guard: &Guard, at: DateTime<Utc>, now: Instant) {
    while window
        .buckets
        .front()
        .is_some_and(|b| now.duration_since(b.at) >= guard.window)
    {
        window.buckets.pop_front();
    }
    let requests: u64 = window.buckets.iter().map(|b| b.requests).sum();
    let errors: u64 = window.buckets.iter().map(|b| b.errors).sum();
    let above = requests >= MIN_REQUESTS && (errors as f64) > guard.max_rate * requests as f64;
    let describe = |since| ErrorFlag {
        since,
        judged_at: at,
        requests,
        errors,
        window_seconds: guard.window.as_secs(),
        threshold_percent: (guard.max_rate * 100.0).round() as u32,
    };
    match (&window.flag, above) {
        (None, true) => {
            window.flag = Some(describe(at));
            window.below_since = None;
            window.changed = true;
        }
        (Some(flag), true) => {
            let since = flag.since;
            window.flag = Some(describe(since));
            window.below_since = None;
        }
        (Some(_), false) => {
            if let Some(flag) = &mut window.flag {
                flag.judged_at = at;
            }
            let below = *window.below_since.get_or_insert(now);
            if now.duration_since(below) >= guard.window {
                window.flag = None;
                window.below_since = None;
                window.changed = true;
            }
        }
        (None, false) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            max_rate: 0.5,
            window: Duration::from_secs(300),
        }
    }

    #[test]
    fn an_open_answer_is_activity_at_every_flush_until_it_closes() {
        let activity = Activity::new(None);
        // Flushes later than the wall clock at which a stream closes.
        let base = Utc::now() + chrono::Duration::hours(1);
        let at = |minute| base + chrono::Duration::minutes(minute);
        let open = activity.tracker("x").open();
        let second = activity.tracker("x").open();
        for minute in [1, 2] {
            let flush = activity.take(at(minute), Instant::now());
            assert_eq!(flush.activity, vec![("x".to_string(), at(minute))]);
        }
        drop(open);
        let flush = activity.take(at(3), Instant::now());
        assert_eq!(
            flush.activity,
            vec![("x".to_string(), at(3))],
            "one still open"
        );
        drop(second);
        let closed = activity.take(at(4), Instant::now());
        assert_eq!(closed.activity.len(), 1, "its end is activity: {closed:?}");
        assert!(
            activity.take(at(5), Instant::now()).is_empty(),
            "then no more"
        );
    }

    fn answer(activity: &Activity, id: &str, status: u16, times: usize) {
        for _ in 0..times {
            activity.request(id, Utc::now(), Instant::now(), status);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_make_one_pending_activity_per_environment_the_latest() {
        let activity = Activity::new(None);
        let first = Utc::now();
        activity.request("a", first, Instant::now(), 200);
        let later = first + chrono::Duration::seconds(2);
        activity.request("a", later, Instant::now(), 200);
        activity.request("b", first, Instant::now(), 200);
        let flush = activity.take(Utc::now(), Instant::now());
        assert_eq!(
            flush.activity,
            vec![("a".to_string(), later), ("b".to_string(), first)]
        );
        assert!(activity.take(Utc::now(), Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flush_is_put_back_without_hiding_newer_activity() {
        let activity = Activity::new(None);
        let old = Utc::now();
        activity.request("a", old, Instant::now(), 200);
        let flush = activity.take(Utc::now(), Instant::now());
        let newer = old + chrono::Duration::seconds(5);
        activity.request("a", newer, Instant::now(), 200);
        activity.restore(flush);
        assert_eq!(
            activity.take(Utc::now(), Instant::now()).activity,
            vec![("a".to_string(), newer)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_guard_nothing_is_ever_flagged() {
        let activity = Activity::new(None);
        answer(&activity, "a", 500, 100);
        assert_eq!(activity.flag("a"), None);
        assert!(activity.take(Utc::now(), Instant::now()).flags.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_above_the_threshold_flags_and_a_full_window_below_clears() {
        let activity = Activity::new(Some(guard()));
        answer(&activity, "a", 200, 4);
        answer(&activity, "a", 503, 6);
        let flag = activity.flag("a").expect("6 of 10 is above 50%");
        assert_eq!((flag.requests, flag.errors), (10, 6));
        let flush = activity.take(Utc::now(), Instant::now());
        assert_eq!(flush.flags.len(), 1, "a new flag is written");
        // Good answers bring the rate below at once, but the flag holds for a full window.
        tokio::time::advance(Duration::from_secs(10)).await;
        answer(&activity, "a", 200, 20);
        assert!(activity.flag("a").is_some());
        let holding = |flush: Flush| matches!(flush.flags.as_slice(), [(_, Some(_))]);
        assert!(
            holding(activity.take(Utc::now(), Instant::now())),
            "written while it holds"
        );
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(holding(activity.take(Utc::now(), Instant::now())));
        tokio::time::advance(Duration::from_secs(2)).await;
        let flush = activity.take(Utc::now(), Instant::now());
        assert_eq!(flush.flags, vec![("a".to_string(), None)], "cleared");
        assert_eq!(activity.flag("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_at_the_threshold_or_on_few_requests_does_not_flag() {
        let activity = Activity::new(Some(guard()));
        answer(&activity, "a", 200, 5);
        answer(&activity, "a", 500, 5);
        assert_eq!(activity.flag("a"), None, "50% is not above 50%");
        answer(&activity, "b", 500, (MIN_REQUESTS - 1) as usize);
        assert_eq!(activity.flag("b"), None, "too few requests to judge");
    }

    #[tokio::test(start_paused = true)]
    async fn old_errors_leave_the_sliding_window() {
        let activity = Activity::new(Some(guard()));
        answer(&activity, "a", 500, 4);
        tokio::time::advance(Duration::from_secs(301)).await;
        answer(&activity, "a", 200, 6);
        answer(&activity, "a", 500, 4);
        assert_eq!(activity.flag("a"), None, "4 of 10 in the window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_clears_the_flag() {
        let activity = Activity::new(Some(guard()));
        answer(&activity, "a", 500, 10);
        assert!(activity.flag("a").is_some());
        activity.take(Utc::now(), Instant::now());
        activity.reset("a");
        assert_eq!(activity.flag("a"), None);
        let flush = activity.take(Utc::now(), Instant::now());
        assert_eq!(flush.flags, vec![("a".to_string(), None)]);
    }
}
