//! How this process reaches what runs on an engine, whatever the backend: whether services'
//! own addresses answer from here (tried until settled, then remembered per engine), and which address did
//! not answer at all, so that a timeout can say a longer one will not help. Each backend owns
//! the [`Reachability`] of its engine.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long one attempt to reach an address may take before it counts as unanswered.
const TRIAL_TIMEOUT: Duration = Duration::from_millis(700);

/// How many trials in a row must go unanswered before this process takes it that services'
/// own addresses never answer from here: one can be lost to a loaded host or a container whose
/// network is still coming up, and the verdict decides for every later probe.
const TRIALS_BEFORE_NO: u32 = 3;

/// How far apart unanswered trials must be to count apart: the probes of several services try
/// at the same moment, and one loaded moment is one miss.
const MISSES_APART: Duration = Duration::from_secs(1);

/// What this process learnt of reaching the services of one engine: whether their own
/// addresses answer from here, and which address did not answer at all.
#[derive(Debug, Default)]
pub struct Reachability {
    /// Tried until settled, and again after this process joined or left an environment's
    /// network.
    direct: Mutex<Direct>,
    unanswered: Mutex<Option<String>>,
    /// Why this process could not join the environment's network, when it tried and could not.
    not_attached: Mutex<Option<String>>,
}

impl Reachability {
    pub const fn new() -> Reachability {
        Reachability {
            direct: Mutex::new(Direct::UNTRIED),
            unanswered: Mutex::new(None),
            not_attached: Mutex::new(None),
        }
    }

    /// Forgets whether services' own addresses answer: this process joined or left an
    /// environment's network, which changes the answer.
    pub fn retry_direct(&self) {
        *lock(&self.direct) = Direct::UNTRIED;
    }

    /// Records why this process could not join an environment's network (`None`: it did), for
    /// the message of a probe that then has no address to use.
    pub fn note_not_attached(&self, reason: Option<String>) {
        *lock(&self.not_attached) = reason;
    }

    /// Why this process could not join an environment's network, if it tried and could not.
    pub fn not_attached(&self) -> Option<String> {
        lock(&self.not_attached).clone()
    }

    /// Whether services' own addresses answer from here, tried on `address` (a service's
    /// address and port): `Some` once settled and remembered, `None` while unanswered trials
    /// have not yet settled it. One answer settles "yes"; a refused connection answers too (the
    /// address is reachable, the service not listening yet). Only several unanswered trials
    /// in a row settle "no".
    pub async fn reaches_directly(&self, address: SocketAddr) -> Option<bool> {
        if let Some(verdict) = self.direct() {
            return Some(verdict);
        }
        let answered = answers(address).await.is_some();
        let verdict = self.record_trial(answered, Instant::now());
        tracing::debug!(%address, answered, ?verdict, "services' own addresses answer from here");
        verdict
    }

    /// Counts one trial that ended at `at` and returns the verdict, if it is settled now.
    fn record_trial(&self, answered: bool, at: Instant) -> Option<bool> {
        let mut direct = lock(&self.direct);
        if direct.verdict.is_some() {
            return direct.verdict;
        }
        if answered {
            direct.verdict = Some(true);
            return direct.verdict;
        }
        let apart = direct
            .last_miss
            .is_none_or(|last| at.saturating_duration_since(last) >= MISSES_APART);
        if apart {
            direct.unanswered += 1;
            direct.last_miss = Some(at);
        }
        if direct.unanswered >= TRIALS_BEFORE_NO {
            direct.verdict = Some(false);
        }
        direct.verdict
    }

    /// Whether services' own addresses answer from here, as far as settled (`None`: untried,
    /// or not settled yet).
    pub fn direct(&self) -> Option<bool> {
        lock(&self.direct).verdict
    }

    /// Records that `address` did not answer (no connection, not even a refusal), so that a
    /// timeout can say so instead of only advising a longer one.
    pub fn note_unanswered(&self, address: &str, error: &str) {
        let envctl_host = std::env::var("ENVCTL_HOST")
            .ok()
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        let advice = unanswered_advice(address, error, envctl_host.as_deref());
        *lock(&self.unanswered) = Some(advice);
    }

    /// What did not answer from here, if anything did not.
    pub fn unanswered(&self) -> Option<String> {
        lock(&self.unanswered).clone()
    }
}

/// Whether services' own addresses answer from here, once settled, and the unanswered trials
/// (at least [`MISSES_APART`] apart) until then.
#[derive(Debug, Default, Clone, Copy)]
struct Direct {
    verdict: Option<bool>,
    unanswered: u32,
    last_miss: Option<Instant>,
}

impl Direct {
    const UNTRIED: Direct = Direct {
        verdict: None,
        unanswered: 0,
        last_miss: None,
    };
}

fn unanswered_advice(address: &str, error: &str, envctl_host: Option<&str>) -> String {
    let advice = match envctl_host {
        Some(host) => format!(
            "ENVCTL_HOST is `{host}`: set it to a host at which the engine's published ports \
             answer from here, or unset it"
        ),
        None => "if envctl runs in a container or away from the engine, set ENVCTL_HOST to the \
                 host at which the engine's published ports answer"
            .into(),
    };
    format!(
        "`{address}` did not answer ({error}): envctl cannot reach it from here, so a longer \
         `--timeout` will not help; {advice}"
    )
}

/// The hint for a start that ran out of time: a longer timeout, unless addresses did not
/// answer, which a longer timeout does not cure.
pub fn timeout_hint(unanswered: Option<&str>) -> String {
    match unanswered {
        None => "hint: raise `--timeout`".into(),
        Some(advice) => format!("hint: {advice}"),
    }
}

/// Whether an error of a connection attempt means that nothing answered, as opposed to an
/// answer (a refusal, a reset) from a reachable host.
pub fn is_unanswered(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::TimedOut | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
    )
}

/// `Some(true)` when `address` accepts, `Some(false)` when it refuses, `None` when nothing
/// answers within the trial timeout.
pub(crate) async fn answers(address: SocketAddr) -> Option<bool> {
    match tokio::time::timeout(TRIAL_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Some(true),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Some(false),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_engine_learns_its_own_reachability_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (one, other) = (Reachability::new(), Reachability::new());
        assert_eq!(one.direct(), None);
        assert_eq!(one.reaches_directly(address).await, Some(true));
        assert_eq!(one.direct(), Some(true));
        drop(listener);
        // Remembered, not tried again; the other engine has learnt nothing.
        assert_eq!(one.reaches_directly(address).await, Some(true));
        assert_eq!(other.direct(), None);
        one.note_unanswered("10.0.0.9:49153", "timed out");
        assert!(
            one.unanswered()
                .unwrap()
                .starts_with("`10.0.0.9:49153` did not answer")
        );
        assert_eq!(other.unanswered(), None);
    }

    #[test]
    fn one_unanswered_trial_does_not_settle_that_container_addresses_never_answer() {
        let reach = Reachability::new();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(reach.record_trial(false, at(0)), None);
        assert_eq!(reach.record_trial(false, at(1)), None);
        assert_eq!(reach.direct(), None);
        // An answer between misses settles "yes".
        assert_eq!(reach.record_trial(true, at(2)), Some(true));
        reach.retry_direct();
        for second in 1..u64::from(TRIALS_BEFORE_NO) {
            assert_eq!(reach.record_trial(false, at(second)), None);
        }
        assert_eq!(
            reach.record_trial(false, at(u64::from(TRIALS_BEFORE_NO))),
            Some(false)
        );
        // Settled: a later answer does not change it until the process joins or leaves a network.
        assert_eq!(reach.record_trial(true, at(9)), Some(false));
        assert_eq!(reach.direct(), Some(false));
    }

    #[test]
    fn misses_of_several_probes_at_one_moment_count_once() {
        let reach = Reachability::new();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(reach.record_trial(false, now), None);
        }
        assert_eq!(reach.direct(), None);
    }

    #[test]
    fn timeouts_blame_unanswered_addresses() {
        assert_eq!(timeout_hint(None), "hint: raise `--timeout`");
        let advice = unanswered_advice("172.18.0.1:49153", "timed out", None);
        assert_eq!(
            timeout_hint(Some(&advice)),
            "hint: `172.18.0.1:49153` did not answer (timed out): envctl cannot reach it from \
             here, so a longer `--timeout` will not help; if envctl runs in a container or away \
             from the engine, set ENVCTL_HOST to the host at which the engine's published ports \
             answer"
        );
        let set = unanswered_advice("10.0.0.9:49153", "timed out", Some("10.0.0.9"));
        assert!(
            set.ends_with(
                "ENVCTL_HOST is `10.0.0.9`: set it to a host at which the engine's published \
                 ports answer from here, or unset it"
            ),
            "{set}"
        );
    }
}
