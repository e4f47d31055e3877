//! Readiness: envctl checks each service's `ready:` condition itself, every 10 ms in the
//! first second of its start (ports of a service with an address) and every 50 ms after that,
//! with backoff, instead of waiting for Docker's healthcheck interval. A probe that costs the engine real work (an `exec:` or
//! `healthcheck:` probe is a `docker exec`) waits for a cheaper sign of progress and is spaced
//! by what its attempts cost.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use chrono::{DateTime, Utc};

use crate::backend::{
    Backend, BackendError, Health, Healthcheck, LogOptions, ServiceRef, ServiceState, ServiceStatus,
};
use crate::reach;
use crate::spec::{Probe, Protocol, Ready};

/// Probes run every [`EARLY_INTERVAL`] in the first [`EARLY`] of a start, when a service
/// that starts in well under a second would otherwise wait up to a whole interval to be seen
/// ready (a warm pool's adopting `up` is such starts in a row); then every 50 ms while the
/// service is expected to come up soon; only a service slower than [`PATIENCE`] is probed less
/// often, up to once a second. An early attempt costs one refused connection until the
/// service listens.
const EARLY_INTERVAL: Duration = Duration::from_millis(10);
const EARLY: Duration = Duration::from_secs(1);
const FIRST_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection through Docker's port proxy must stay open to have reached the
/// service: the proxy closes it as soon as the service refuses, well within this.
const PROXY_VERDICT: Duration = Duration::from_millis(300);

/// Why a service did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("its container exited with code {0}")]
    Exited(i64),
    #[error("the job exited with code {code}, expected {expected}")]
    WrongExitCode { code: i64, expected: i64 },
    #[error("not ready after {}: {pending} never passed{}", humantime::format_duration(*.timeout), last.as_ref().map(|l| format!(" (last attempt: {l})")).unwrap_or_default())]
    TimedOut {
        timeout: Duration,
        pending: String,
        last: Option<String>,
    },
    #[error("{0}")]
    Misconfigured(String),
    #[error(transparent)]
    Engine(#[from] BackendError),
}

/// What a probe needs to know about the started service.
pub struct Subject<'a> {
    pub backend: &'a dyn Backend,
    pub service: &'a ServiceRef,
    pub ready: &'a Ready,
    /// The image's HEALTHCHECK, for `healthcheck: true`.
    pub healthcheck: Option<&'a Healthcheck>,
    /// When envctl started the container: a `log` probe ignores output of earlier runs.
    pub started_at: DateTime<Utc>,
}

/// Waits until the container is ready, has failed, or the readiness timeout passed.
pub async fn wait_ready(subject: &Subject<'_>) -> Result<(), NotReady> {
    let limit = subject.ready.timeout;
    let exited = subject.backend.wait_exit(subject.service);
    if let Some(expected) = subject.ready.exit_code() {
        return match timeout(limit, exited).await {
            Ok(code) if *code.as_ref().unwrap_or(&-1) == expected => Ok(()),
            Ok(code) => Err(NotReady::WrongExitCode {
                code: code?,
                expected,
            }),
            Err(_) => Err(NotReady::TimedOut {
                timeout: limit,
                pending: format!("exit {expected}"),
                last: Some("the job is still running".into()),
            }),
        };
    }
    tokio::select! {
        code = exited => Err(NotReady::Exited(code?)),
        result = all_probes(subject) => result,
    }
}

async fn all_probes(subject: &Subject<'_>) -> Result<(), NotReady> {
    let deadline = Instant::now()
        .checked_add(subject.ready.timeout)
        .unwrap_or_else(|| Instant::now() + super::teardown::STOP_GRACE * 100_000);
    let polled: Vec<&Probe> = subject
        .ready
        .probes
        .iter()
        .filter(|p| !matches!(p, Probe::Log(_)))
        .collect();
    let log = subject.ready.probes.iter().find_map(|p| match p {
        Probe::Log(regex) => Some(regex),
        _ => None,
    });
    let cheap = polled
        .iter()
        .any(|p| matches!(p, Probe::Tcp(_) | Probe::Http { .. }));
    let costly = polled.iter().any(|p| is_costly(subject, p));
    let details = if cheap || costly {
        Some(subject.backend.status(subject.service).await?)
    } else {
        None
    };
    let log_seen = AtomicBool::new(false);
    let gate = Gate::new(cheap || log.is_some(), details.as_ref(), &log_seen);
    let log_matched = async {
        match log {
            Some(regex) => {
                wait_for_log(subject, regex, deadline).await?;
                log_seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    };
    let probes_passed = poll_probes(subject, &polled, details.as_ref(), gate, deadline);
    tokio::try_join!(log_matched, probes_passed)?;
    if subject.ready.probes.is_empty() {
        // No condition: ready means running, and a service that already ended is not.
        let details = subject.backend.status(subject.service).await?;
        if details.state != ServiceState::Running {
            return Err(NotReady::Exited(details.exit_code.unwrap_or_default()));
        }
    }
    Ok(())
}

/// Whether a probe costs the engine real work: an `exec:` or `healthcheck:` probe is a
/// `docker exec` (about 66 ms of dockerd's and containerd's CPU on a 2-core machine), where
/// a `tcp:` or `http:` probe is one connection. Where the backend runs the check itself (a
/// swarm), reading its verdict is a status call, as cheap as the others.
fn is_costly(subject: &Subject<'_>, probe: &Probe) -> bool {
    matches!(probe, Probe::Exec(_) | Probe::Healthcheck) && subject.backend.info().capabilities.exec
}

/// Whether the service has shown the progress that makes a costly probe worth its cost: an
/// exec into a service that does not even listen yet only takes the CPU its start needs.
struct Gate<'a> {
    /// A cheaper probe passed, or a published port answered.
    passed: bool,
    /// Set when the service's `log:` probe matched.
    log_seen: &'a AtomicBool,
    /// With no cheaper probe: the published TCP ports whose first answer opens the gate.
    ports: Vec<u16>,
    /// When the gate opens whatever happened, if ever. A cheaper probe keeps it shut until it
    /// passes, as the service is ready only then anyway; a published port that never answers
    /// (one the service opens only later, or not at all) delays the costly probes by
    /// [`PATIENCE`], never blocks them; with no signal at all, it is open from the start.
    opens_anyway: Option<Instant>,
}

impl<'a> Gate<'a> {
    fn new(
        cheaper_probe: bool,
        details: Option<&ServiceStatus>,
        log_seen: &'a AtomicBool,
    ) -> Gate<'a> {
        let mut ports: Vec<u16> = match (cheaper_probe, details) {
            (false, Some(details)) => details
                .endpoints
                .iter()
                .filter(|e| e.container_port.protocol == Protocol::Tcp)
                .map(|e| e.container_port.number)
                .collect(),
            _ => Vec::new(),
        };
        // A port published on IPv4 and IPv6 is listed twice.
        ports.sort_unstable();
        ports.dedup();
        let opens_anyway = match (cheaper_probe, ports.is_empty()) {
            (true, _) => None,
            (false, false) => Some(Instant::now() + PATIENCE),
            (false, true) => Some(Instant::now()),
        };
        Gate {
            passed: false,
            log_seen,
            ports,
            opens_anyway,
        }
    }

    /// Whether costly probes may run now; tries the published ports when they are the signal.
    async fn open(&mut self, subject: &Subject<'_>, details: Option<&ServiceStatus>) -> bool {
        if self.passed || self.log_seen.load(Ordering::Relaxed) {
            return true;
        }
        if self.opens_anyway.is_some_and(|at| Instant::now() >= at) {
            return true;
        }
        for port in &self.ports {
            match check(subject, &Probe::Tcp(*port), details).await {
                // A port that cannot be reached from here at all gives no signal to wait for.
                Ok(()) | Err(CheckError::Fatal(_)) => {
                    self.passed = true;
                    return true;
                }
                Err(CheckError::NotYet(_)) => {}
            }
        }
        false
    }
}

/// How long after a costly probe's attempt the next one waits, in multiples of the attempt's
/// wall time. Why 10: a probe spaced by 10x its own duration is in flight at most 1/11 of the
/// time (9%), and a `docker exec`'s CPU, spread over dockerd, containerd, the shim and runc
/// on 2 cores and partly spent waiting, is below its wall time: about 3% of a 2-core machine.
/// An engine slowed by load makes each attempt longer and so spaces them further by itself.
/// A larger factor would save a percent or two and add its whole interval to a start whose
/// service needs one more attempt after its cheaper signal (a database that listens before it
/// takes queries): at about 100 ms an attempt, 10x costs one second there.
const COST_FACTOR: u32 = 10;
/// However long an attempt took (one that timed out took 10 s), the next comes within this.
const MAX_COSTLY_INTERVAL: Duration = Duration::from_secs(5);

/// When the next attempt of a costly probe may start, after one that took `took`.
fn next_costly_attempt(took: Duration) -> Instant {
    Instant::now() + (took * COST_FACTOR).min(MAX_COSTLY_INTERVAL)
}

async fn wait_for_log(
    subject: &Subject<'_>,
    regex: &regex::Regex,
    deadline: Instant,
) -> Result<(), NotReady> {
    let options = LogOptions {
        follow: true,
        tail: None,
        timestamps: true,
        since: Some(subject.started_at),
    };
    let mut lines = subject.backend.logs(subject.service, options);
    let search = async {
        while let Some(line) = lines.next().await {
            let line = line?;
            let earlier = line.timestamp.is_some_and(|t| t < subject.started_at);
            if !earlier && regex.is_match(&line.text) {
                return Ok(true);
            }
        }
        Ok::<_, NotReady>(false)
    };
    let timed_out = || NotReady::TimedOut {
        timeout: subject.ready.timeout,
        pending: format!("log /{}/", regex.as_str()),
        last: None,
    };
    match tokio::time::timeout_at(deadline, search).await {
        Ok(Ok(true)) => Ok(()),
        // The log ended: the container stopped, which `wait_ready` reports with its exit code
        // unless the deadline comes first.
        Ok(Ok(false)) => {
            tokio::time::sleep_until(deadline).await;
            Err(timed_out())
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(timed_out()),
    }
}

async fn poll_probes(
    subject: &Subject<'_>,
    probes: &[&Probe],
    details: Option<&ServiceStatus>,
    mut gate: Gate<'_>,
    deadline: Instant,
) -> Result<(), NotReady> {
    // Each probe with when it may run next: cheap ones at every round, costly ones once the
    // gate opened and their last attempt's cost has been waited out.
    let mut pending: Vec<(&Probe, Instant)> = probes.iter().map(|p| (*p, Instant::now())).collect();
    let started = Instant::now();
    let mut interval = FIRST_INTERVAL;
    let mut last = None;
    loop {
        let mut still = Vec::new();
        for (probe, due) in pending {
            let costly = is_costly(subject, probe);
            if costly && (Instant::now() < due || !gate.open(subject, details).await) {
                still.push((probe, due));
                continue;
            }
            let began = Instant::now();
            match check(subject, probe, details).await {
                Ok(()) => gate.passed |= !costly,
                Err(CheckError::Fatal(error)) => return Err(error),
                Err(CheckError::NotYet(reason)) => {
                    last = Some(reason);
                    let due = match costly {
                        true => next_costly_attempt(began.elapsed()),
                        false => due,
                    };
                    still.push((probe, due));
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        let early = started.elapsed() < EARLY && paced_early(subject, &pending, details);
        let interval = match early {
            true => EARLY_INTERVAL,
            false => {
                if started.elapsed() > PATIENCE {
                    interval = (interval * 3 / 2).min(MAX_INTERVAL);
                }
                interval
            }
        };
        if Instant::now() + interval >= deadline {
            let names: Vec<String> = pending.iter().map(|(p, _)| p.to_string()).collect();
            return Err(NotReady::TimedOut {
                timeout: subject.ready.timeout,
                pending: names.join(" and "),
                last,
            });
        }
        sleep(interval).await;
    }
}

/// Whether the pending probes may run every [`EARLY_INTERVAL`]: each attempt of each costs a
/// connection to a known address, or is costly and spaced by its own cost already. A probe
/// that reads the engine at each attempt (a swarm's health, the log, a job's exit, the status
/// of a service without an address yet) keeps to [`FIRST_INTERVAL`].
fn paced_early(
    subject: &Subject<'_>,
    pending: &[(&Probe, Instant)],
    details: Option<&ServiceStatus>,
) -> bool {
    let addressed = details.is_some_and(|d| d.direct.is_some() || reachable_ports(d));
    pending.iter().all(|(probe, _)| match probe {
        Probe::Tcp(_) | Probe::Http { .. } => addressed,
        _ => is_costly(subject, probe),
    })
}

enum CheckError {
    NotYet(String),
    Fatal(NotReady),
}

async fn check(
    subject: &Subject<'_>,
    probe: &Probe,
    details: Option<&ServiceStatus>,
) -> Result<(), CheckError> {
    match probe {
        Probe::Tcp(port) => {
            let target = address(subject, details, *port).await?;
            let address = target.address();
            let attempt = async {
                match target {
                    Target::Direct(_) => TcpStream::connect(address).await.map(drop),
                    Target::Published(_) => reaches_through_published_port(*address).await,
                }
            };
            match timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(not_yet(subject, address, &error, "connect")),
                Err(_) => Err(not_yet(subject, address, &timed_out(), "connect")),
            }
        }
        Probe::Http { port, path } => {
            let target = address(subject, details, *port).await?;
            let address = target.address();
            match timeout(ATTEMPT_TIMEOUT, http_status(address, path)).await {
                Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
                Ok(Ok(status)) => Err(CheckError::NotYet(format!("GET {path} answered {status}"))),
                Ok(Err(error)) => Err(not_yet(subject, address, &error, &format!("GET {path} at"))),
                Err(_) => Err(not_yet(
                    subject,
                    address,
                    &timed_out(),
                    &format!("GET {path} at"),
                )),
            }
        }
        // Where envctl cannot exec (a swarm), the backend runs these as the service's own
        // health check: ready once it reports healthy.
        Probe::Exec(_) | Probe::Healthcheck if !subject.backend.info().capabilities.exec => {
            native_health(subject).await
        }
        Probe::Exec(command) => exec(subject, command).await,
        Probe::Healthcheck => {
            let command = healthcheck_command(subject.healthcheck).map_err(CheckError::Fatal)?;
            exec(subject, &command).await
        }
        Probe::Log(_) | Probe::Exit(_) => Ok(()),
    }
}

/// The health the backend's own check reports.
async fn native_health(subject: &Subject<'_>) -> Result<(), CheckError> {
    let status = subject
        .backend
        .status(subject.service)
        .await
        .map_err(|error| CheckError::NotYet(error.to_string()))?;
    match status.health {
        Health::Healthy => Ok(()),
        Health::Starting => Err(CheckError::NotYet(
            "its health check has not passed yet".into(),
        )),
        Health::Unhealthy => Err(CheckError::NotYet("its health check fails".into())),
        Health::None => Err(CheckError::NotYet(format!(
            "it is {} and its health check not running yet",
            status.state.as_str()
        ))),
    }
}

async fn exec(subject: &Subject<'_>, command: &[String]) -> Result<(), CheckError> {
    let attempt = timeout(
        ATTEMPT_TIMEOUT * 5,
        subject.backend.exec(subject.service, command),
    );
    let Ok(result) = attempt.await else {
        return Err(CheckError::NotYet(format!(
            "`{}` timed out",
            command.join(" ")
        )));
    };
    match result {
        Ok(result) if result.exit_code == 0 => Ok(()),
        Ok(result) => Err(CheckError::NotYet(format!(
            "`{}` exited with {}: {}",
            command.join(" "),
            result.exit_code,
            result.output.trim()
        ))),
        // The container may be between start and running; the exit watcher reports real stops.
        Err(error) => Err(CheckError::NotYet(error.to_string())),
    }
}

/// The image's HEALTHCHECK as a command to exec.
fn healthcheck_command(test: Option<&Healthcheck>) -> Result<Vec<String>, NotReady> {
    test.map(Healthcheck::argv).ok_or_else(|| {
        NotReady::Misconfigured(
            "`ready: healthcheck: true`, but the image has no HEALTHCHECK".into(),
        )
    })
}

/// Where a probe reaches a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The container's own address: what answers is the service.
    Direct(SocketAddr),
    /// A published port: Docker's port proxy answers, whether the service listens or not.
    Published(SocketAddr),
}

impl Target {
    fn address(&self) -> &SocketAddr {
        match self {
            Target::Direct(address) | Target::Published(address) => address,
        }
    }
}

/// Where to reach a container port: the container's own address when it answers from here
/// (a published port answers through Docker's proxy before the service listens), else the
/// published port at the host where the engine's ports answer from here.
async fn address(
    subject: &Subject<'_>,
    details: Option<&ServiceStatus>,
    port: u16,
) -> Result<Target, CheckError> {
    let backend = subject.backend;
    // A service that had neither an address nor a published port when probing began (a swarm
    // task not scheduled yet) is looked at again.
    let fresh;
    let details = match details {
        Some(details) if details.direct.is_some() || reachable_ports(details) => details,
        _ => {
            fresh = backend
                .status(subject.service)
                .await
                .map_err(|error| CheckError::NotYet(error.to_string()))?;
            &fresh
        }
    };
    // Whether the container's own address went unanswered without settling that such
    // addresses never answer from here.
    let mut unsettled = None;
    match details.direct {
        Some(ip) => {
            let direct = SocketAddr::new(ip, port);
            match backend.reach().reaches_directly(direct).await {
                Some(true) => return Ok(Target::Direct(direct)),
                Some(false) => {}
                None => unsettled = Some(direct),
            }
        }
        // Not running (any more, or yet): the exit watcher says why when it ended.
        None if details.state != ServiceState::Running => {
            return Err(CheckError::NotYet("the container has no address".into()));
        }
        None if !reachable_ports(details) => {
            return Err(CheckError::NotYet(format!(
                "the service has no address of its own and publishes no port: port {port} \
                 cannot be reached from here"
            )));
        }
        // Running without an address of its own (a swarm task): only published ports, the
        // file's or those the backend published for envctl's probes.
        None => {}
    }
    let published = details
        .endpoints
        .iter()
        .chain(&details.probe_endpoints)
        .find(|e| e.container_port.number == port && e.container_port.protocol == Protocol::Tcp);
    let Some(published) = published else {
        if let Some(direct) = unsettled {
            return Err(CheckError::NotYet(format!("`{direct}` did not answer yet")));
        }
        // Why envctl could not join the environment's network, when it runs in a container.
        let why = backend
            .reach()
            .not_attached()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        return Err(CheckError::Fatal(NotReady::Misconfigured(format!(
            "port {port} is probed but not published, and container addresses do not answer \
             from where envctl runs (engine `{}`){why}\n\
             hint: add {port} to the service's `ports:`, or probe with `ready: exec:`",
            backend.endpoint()
        ))));
    };
    let host = published.host.as_str();
    let address = resolve(host, published.port)
        .await
        .map_err(|error| CheckError::NotYet(format!("resolve {host}: {error}")))?;
    Ok(Target::Published(address))
}

/// Whether the service has published ports, its own or envctl's.
fn reachable_ports(details: &ServiceStatus) -> bool {
    !details.endpoints.is_empty() || !details.probe_endpoints.is_empty()
}

/// `host` (a name, an IPv4 or a bracketed IPv6 address) and `port` as a socket address.
async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))
}

/// Whether a TCP connection to a published port reaches the service, and not only Docker's
/// port proxy, which accepts whether the service listens or not.
pub async fn reaches_through_published_port(address: SocketAddr) -> std::io::Result<()> {
    let stream = TcpStream::connect(address).await?;
    held_open(stream).await
}

/// Whether a connection through Docker's port proxy reached the service. The proxy accepts at
/// once, then dials the container and closes the connection when the service refuses: a
/// connection closed (or reset) right after it opened reached nobody. One the service keeps
/// open, or speaks on, did.
async fn held_open(stream: TcpStream) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    match timeout(PROXY_VERDICT, stream.peek(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed right after it was accepted (Docker's port proxy: the service does not \
             listen yet)",
        )),
        Ok(Err(error)) => Err(error),
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

/// A failed attempt, remembered for the timeout's hint when nothing answered at all.
fn not_yet(
    subject: &Subject<'_>,
    address: &SocketAddr,
    error: &std::io::Error,
    what: &str,
) -> CheckError {
    if reach::is_unanswered(error) {
        subject
            .backend
            .reach()
            .note_unanswered(&address.to_string(), &error.to_string());
    }
    CheckError::NotYet(format!("{what} {address}: {error}"))
}

/// The status code of `GET path` over HTTP/1.1.
async fn http_status(address: &SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: envctl\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let text = String::from_utf8_lossy(&head[..read]);
    text.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_become_exec_commands() {
        let cmd = Healthcheck::Exec(vec!["/standin".into(), "probe".into()]);
        assert_eq!(
            healthcheck_command(Some(&cmd)).unwrap(),
            ["/standin", "probe"]
        );
        let shell = Healthcheck::Shell("curl -f localhost".into());
        assert_eq!(
            healthcheck_command(Some(&shell)).unwrap(),
            ["/bin/sh", "-c", "curl -f localhost"]
        );
        assert!(healthcheck_command(None).is_err());
    }
}
