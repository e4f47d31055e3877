//! Counters for `/metrics`, in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::environments::RoutedEnvironment;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct PerEnvironment {
    requests: u64,
    errors: u64,
    wakes: u64,
    /// Counts per bucket (not cumulative), plus one for beyond the last.
    buckets: [u64; BUCKETS.len() + 1],
    seconds: f64,
}

/// Why the gateway answered a request itself instead of letting an environment answer it:
/// counted on its own, never against an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// A body over `--max-body`, declared or streamed.
    BodyTooLarge,
    /// The client's body broke off (or was malformed) while it was forwarded.
    BodyUnreadable,
    /// A request target that names no resource (`GET *`), or a method that is no request to
    /// forward (`CONNECT`).
    BadRequest,
    /// A sign-in from an address that guessed wrong too often, refused without a look.
    LoginThrottled,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::BodyTooLarge,
        Rejection::BodyUnreadable,
        Rejection::BadRequest,
        Rejection::LoginThrottled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyUnreadable => "body_unreadable",
            Rejection::BadRequest => "bad_request",
            Rejection::LoginThrottled => "login_throttled",
        }
    }
}

/// How a request for an environment ended, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The environment answered with this status, or failed to while it runs (502, 504): it
    /// counts for the environment, a 5xx against it.
    Answered(u16),
    /// The gateway refused the request before the environment had a say.
    Rejected(Rejection),
}

#[derive(Debug, Default)]
pub struct Metrics {
    by_id: Mutex<BTreeMap<String, PerEnvironment>>,
    rejected: Mutex<BTreeMap<Rejection, u64>>,
}

impl Metrics {
    fn with(&self, id: &str, change: impl FnOnce(&mut PerEnvironment)) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        change(by_id.entry(id.to_string()).or_default());
    }

    /// A proxied request answered with `status` after `took` (until the answer's head).
    pub fn request(&self, id: &str, status: u16, took: Duration) {
        self.with(id, |m| {
            m.requests += 1;
            m.errors += u64::from(status >= 500);
            let seconds = took.as_secs_f64();
            let bucket = BUCKETS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(BUCKETS.len());
            m.buckets[bucket] += 1;
            m.seconds += seconds;
        });
    }

    /// A request the gateway refused itself.
    pub fn rejected(&self, why: Rejection) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(why)
            .or_default() += 1;
    }

    pub fn wake(&self, id: &str) {
        self.with(id, |m| m.wakes += 1);
    }

    /// The text exposition, for the environments known now.
    pub fn render(&self, environments: &[RoutedEnvironment]) -> String {
        let by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let name_of = |id: &str| {
            environments
                .iter()
                .find(|e| e.id == id)
                .map_or(String::new(), |e| e.environment.clone())
        };
        let labels = |id: &str| {
            format!(
                "id=\"{}\",environment=\"{}\"",
                escape(id),
                escape(&name_of(id))
            )
        };
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_requests_total Requests proxied to the environment.\n\
             # TYPE envctl_gateway_requests_total counter"
        );
        for (id, m) in &by_id {
            let _ = writeln!(
                text,
                "envctl_gateway_requests_total{{{}}} {}",
                labels(id),
                m.requests
            );
        }
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_responses_5xx_total Requests answered with a 5xx status.\n\
             # TYPE envctl_gateway_responses_5xx_total counter"
        );
        for (id, m) in &by_id {
            let _ = writeln!(
                text,
                "envctl_gateway_responses_5xx_total{{{}}} {}",
                labels(id),
                m.errors
            );
        }
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_request_duration_seconds Time until the answer's head.\n\
             # TYPE envctl_gateway_request_duration_seconds histogram"
        );
        for (id, m) in &by_id {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&m.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "envctl_gateway_request_duration_seconds_bucket{{{},le=\"{bound}\"}} {cumulative}",
                    labels(id)
                );
            }
            let _ = writeln!(
                text,
                "envctl_gateway_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n\
                 envctl_gateway_request_duration_seconds_sum{{{}}} {}\n\
                 envctl_gateway_request_duration_seconds_count{{{}}} {}",
                labels(id),
                m.requests,
                labels(id),
                m.seconds,
                labels(id),
                m.requests
            );
        }
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_rejected_total Requests the gateway refused itself, counted \
             against no environment.\n\
             # TYPE envctl_gateway_rejected_total counter"
        );
        let rejected = self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for why in Rejection::ALL {
            let _ = writeln!(
                text,
                "envctl_gateway_rejected_total{{reason=\"{}\"}} {}",
                why.as_str(),
                rejected.get(&why).copied().unwrap_or_default()
            );
        }
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_wakes_total Starts of stopped environments asked by requests.\n\
             # TYPE envctl_gateway_wakes_total counter"
        );
        for (id, m) in by_id.iter().filter(|(_, m)| m.wakes > 0) {
            let _ = writeln!(
                text,
                "envctl_gateway_wakes_total{{{}}} {}",
                labels(id),
                m.wakes
            );
        }
        let _ = writeln!(
            text,
            "# HELP envctl_gateway_environments Environments by state.\n\
             # TYPE envctl_gateway_environments gauge"
        );
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        for environment in environments {
            *by_state.entry(environment.state.as_str()).or_default() += 1;
        }
        for (state, count) in by_state {
            let _ = writeln!(
                text,
                "envctl_gateway_environments{{state=\"{state}\"}} {count}"
            );
        }
        text
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routing::tests::environment;

    #[test]
    fn the_text_format_counts_requests_errors_latency_wakes_and_states() {
        let metrics = Metrics::default();
        metrics.request("a", 200, Duration::from_micros(800));
        metrics.request("a", 502, Duration::from_millis(30));
        metrics.wake("a");
        let text = metrics.render(&[environment("a", "demo", &[], 1)]);
        for line in [
            "envctl_gateway_requests_total{id=\"a\",environment=\"demo\"} 2",
            "envctl_gateway_responses_5xx_total{id=\"a\",environment=\"demo\"} 1",
            "envctl_gateway_request_duration_seconds_bucket{id=\"a\",environment=\"demo\",le=\"0.001\"} 1",
            "envctl_gateway_request_duration_seconds_bucket{id=\"a\",environment=\"demo\",le=\"0.05\"} 2",
            "envctl_gateway_request_duration_seconds_bucket{id=\"a\",environment=\"demo\",le=\"+Inf\"} 2",
            "envctl_gateway_request_duration_seconds_count{id=\"a\",environment=\"demo\"} 2",
            "envctl_gateway_wakes_total{id=\"a\",environment=\"demo\"} 1",
            "envctl_gateway_environments{state=\"ready\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
