//! `run`: a command against a fresh environment, as a CI job needs it. The environment's
//! coordinates reach the command in environment variables; the environment is removed whether
//! the command passes, fails or the job is aborted.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::lifecycle::Instance;
use crate::naming;
use crate::signals::Signals;
use crate::terminal::Foreground;

/// How long the command gets to end after a forwarded signal before it is killed.
const COMMAND_GRACE: Duration = Duration::from_secs(10);

/// One published port of a service.
pub struct PortVariable<'a> {
    pub service: &'a str,
    pub container_port: u16,
    pub protocol: &'a str,
    pub host: &'a str,
    pub host_port: u16,
}

/// The variables `run` sets and `env` prints: `ENVCTL_ID`, `ENVCTL_ENVIRONMENT`, and
/// `ENVCTL_<SERVICE>_<PORT>=host:port` per published port (`_UDP` appended for UDP).
pub fn variables<'a>(
    id: &str,
    environment: &str,
    endpoints: impl IntoIterator<Item = PortVariable<'a>>,
) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::from([
        ("ENVCTL_ID".to_string(), id.to_string()),
        ("ENVCTL_ENVIRONMENT".to_string(), environment.to_string()),
    ]);
    for e in endpoints {
        let mut name = naming::port_variable(e.service, e.container_port);
        if e.protocol == "udp" {
            name.push_str("_UDP");
        }
        variables.insert(name, format!("{}:{}", e.host, e.host_port));
    }
    variables
}

/// The variables of a running environment, at the hosts at which this process reaches its
/// endpoints (the backend decides: localhost for a local engine, the `DOCKER_HOST` host for a
/// remote one).
///
/// `own` holds the services' own addresses, by service, when they answer from here (envctl's
/// container joined the environment's network, see [`crate::backend::Backend::attach`]): a
/// published port is then given at its service's own address and container port.
pub fn environment_variables(
    instance: &Instance,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let endpoints = instance.services.iter().flat_map(|s| {
        let own = own.get(s.service());
        s.status.endpoints.iter().map(move |e| {
            let (host, host_port) = match own {
                Some(address) => (address.as_str(), e.container_port.number),
                None => (e.host.as_str(), e.port),
            };
            PortVariable {
                service: s.service(),
                container_port: e.container_port.number,
                protocol: e.container_port.protocol.as_str(),
                host,
                host_port,
            }
        })
    });
    variables(&instance.id, instance.environment(), endpoints)
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to its end: its exit code, or 128 + the signal that ended it.
    Exited(i32),
    /// envctl was interrupted, forwarded the signal, and the command then ended with this code.
    Interrupted(i32),
}

/// Runs `command` with `variables` added to its environment, in a process group of its own,
/// which holds the terminal's foreground while it runs when envctl held it.
/// The first SIGINT or SIGTERM to envctl is forwarded to the whole group (a `sh -c` and the
/// build tool it started alike); the group then gets [`COMMAND_GRACE`] to end, or less if a
/// second signal comes, before it is killed. However the command ended, what remains of its
/// group (background jobs, processes that ignored the signal) is ended the same way.
pub async fn run_command(
    command: &[String],
    variables: &BTreeMap<String, String>,
    signals: &Signals,
) -> std::io::Result<Outcome> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    if signals.count() > 0 {
        return Ok(Outcome::Interrupted(
            128 + signals.last().map_or(0, |s| s as i32),
        ));
    }
    let mut child = Command::new(program)
        .args(args)
        .envs(variables)
        .process_group(0)
        .spawn()?;
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    // On a terminal the command gets its foreground, as a shell's job would: an interactive
    // command must be able to read it. Dropping the guard hands the terminal back.
    let foreground = group.and_then(Foreground::give);
    let outcome = tokio::select! {
        status = child.wait() => status.map(|status| Outcome::Exited(exit_code(status))),
        () = signals.received(1) => interrupt(&mut child, group, signals).await,
    };
    drop(foreground);
    if let Some(group) = group {
        end_group(group, signals).await;
    }
    outcome
}

/// Forwards the signal to the command's group and waits for the command to end.
async fn interrupt(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
    signals: &Signals,
) -> std::io::Result<Outcome> {
    let signal = match signals.last() {
        Some(Signal::SIGINT) => Signal::SIGINT,
        _ => Signal::SIGTERM,
    };
    if let Some(group) = group {
        let _ = killpg(group, signal);
    }
    let ended = tokio::select! {
        status = tokio::time::timeout(COMMAND_GRACE, child.wait()) => status.ok(),
        () = signals.received(2) => None,
    };
    let status = match ended {
        Some(status) => status?,
        None => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            child.wait().await?
        }
    };
    Ok(Outcome::Interrupted(exit_code(status)))
}

/// Ends what remains of the command's process group once the command ended: SIGTERM, then
/// SIGKILL after [`COMMAND_GRACE`] or at the next signal. A background job would otherwise
/// outlive the CI step, holding ports and files of an environment that is gone.
async fn end_group(group: Pid, signals: &Signals) {
    if !group_runs(group) {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let seen = signals.count();
    let deadline = tokio::time::Instant::now() + COMMAND_GRACE;
    while group_runs(group) {
        if tokio::time::Instant::now() >= deadline || signals.count() > seen {
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(GROUP_POLL) => {}
            () = signals.received(seen + 1) => {}
        }
    }
}

/// How often [`end_group`] looks whether the group ended.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// Whether any process of `group` still runs. Zombies do not count: once the command, their
/// parent, is gone, they wait for init, which may never reap them.
fn group_runs(group: Pid) -> bool {
    if killpg(group, None).is_err() {
        return false;
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return true;
    };
    processes.flatten().any(|process| {
        let stat = std::fs::read_to_string(process.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(group.as_raw()) && state != Some("Z")
    })
}

/// The exit code for a command that could not start, as shells report it.
pub fn spawn_failure_code(error: &std::io::Error) -> i32 {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => 126,
        _ => 127,
    }
}

/// A process's exit code, or 128 + the signal that ended it, as shells report it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_name_services_and_ports() {
        let endpoints = [
            PortVariable {
                service: "proxy",
                container_port: 8080,
                protocol: "tcp",
                host: "127.0.0.1",
                host_port: 49153,
            },
            PortVariable {
                service: "oracle-xe",
                container_port: 1521,
                protocol: "tcp",
                host: "127.0.0.1",
                host_port: 49154,
            },
        ];
        let variables = variables("20261126-041500", "accounting", endpoints);
        assert_eq!(variables["ENVCTL_ID"], "20261126-041500");
        assert_eq!(variables["ENVCTL_PROXY_8080"], "127.0.0.1:49153");
        assert_eq!(variables["ENVCTL_ORACLE_XE_1521"], "127.0.0.1:49154");
    }
}
