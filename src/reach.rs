//! How this process reaches what runs on an engine, whatever the backend: whether services'
//! own addresses answer from here (tried once per engine and remembered), and which address did
//! not answer at all, so that a timeout can say a longer one will not help. Each backend owns
//! the [`Reachability`] of its engine.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

/// How long one attempt to reach an address may take before it counts as unanswered.
const TRIAL_TIMEOUT: Duration = Duration::from_millis(700);

/// What this process learnt of reaching the services of one engine: whether their own
/// addresses answer from here, and which address did not answer at all.
#[derive(Debug, Default)]
pub struct Reachability {
    /// Tried once, and again after this process joined or left an environment's network.
    direct: Mutex<Option<bool>>,
    unanswered: Mutex<Option<String>>,
    /// Why this process could not join the environment's network, when it tried and could not.
    not_attached: Mutex<Option<String>>,
}

impl Reachability {
    pub const fn new() -> Reachability {
        Reachability {
            direct: Mutex::new(None),
            unanswered: Mutex::new(None),
            not_attached: Mutex::new(None),
        }
    }

    /// Forgets whether services' own addresses answer: this process joined or left an
    /// environment's network, which changes the answer.
    pub fn retry_direct(&self) {
        *lock(&self.direct) = None;
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

    /// Whether services' own addresses answer from here: tried once on `address` (a
    /// service's address and port) and remembered. A refused connection answers too: the
    /// address is reachable and the service not listening yet.
    pub async fn reaches_directly(&self, address: SocketAddr) -> bool {
        if let Some(verdict) = self.direct() {
            return verdict;
        }
        let verdict = answers(address).await.is_some();
        tracing::debug!(%address, verdict, "services' own addresses answer from here");
        *lock(&self.direct).get_or_insert(verdict)
    }

    /// Whether services' own addresses answer from here, as far as known (`None`: untried).
    pub fn direct(&self) -> Option<bool> {
        *lock(&self.direct)
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
        assert!(one.reaches_directly(address).await);
        assert_eq!(one.direct(), Some(true));
        drop(listener);
        // Remembered, not tried again; the other engine has learnt nothing.
        assert!(one.reaches_directly(address).await);
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
