//! How this process reaches what runs on an engine, whatever the backend: whether services'
//! own addresses answer from here (tried once per engine endpoint and remembered), and which
//! address did not answer at all, so that a timeout can say a longer one will not help.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

/// How long one attempt to reach an address may take before it counts as unanswered.
const TRIAL_TIMEOUT: Duration = Duration::from_millis(700);

/// Whether containers' own addresses answer from here, per engine endpoint: a process may talk
/// to several engines (tests do), and every `Docker` of one endpoint shares what was learnt.
static DIRECT: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);
/// Addresses that did not answer, per engine endpoint, for the hint of a timeout.
static UNANSWERED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Whether containers' own addresses answer from here: tried once per engine on `address` (a
/// container's address and port) and remembered. A refused connection answers too: the address
/// is reachable and the service not listening yet.
pub async fn reaches_directly(endpoint: &str, address: SocketAddr) -> bool {
    if let Some(verdict) = direct_verdict(endpoint) {
        return verdict;
    }
    let verdict = answers(address).await.is_some();
    tracing::debug!(endpoint, %address, verdict, "container addresses answer from here");
    lock(&DIRECT)
        .get_or_insert_with(HashMap::new)
        .insert(endpoint.to_owned(), verdict);
    verdict
}

pub(crate) fn direct_verdict(endpoint: &str) -> Option<bool> {
    lock(&DIRECT).as_ref()?.get(endpoint).copied()
}

/// Records that `address` did not answer (no connection, not even a refusal), so that a timeout
/// can say so instead of only advising a longer one.
pub fn note_unanswered(endpoint: &str, address: &str, error: &str) {
    let envctl_host = std::env::var("ENVCTL_HOST")
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty());
    let advice = unanswered_advice(address, error, envctl_host.as_deref());
    lock(&UNANSWERED)
        .get_or_insert_with(HashMap::new)
        .insert(endpoint.to_owned(), advice);
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

/// What did not answer from here on `endpoint`, if anything did not.
pub fn unanswered(endpoint: &str) -> Option<String> {
    lock(&UNANSWERED).as_ref()?.get(endpoint).cloned()
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
