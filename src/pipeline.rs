//! `run`: a command against a fresh environment, as a CI job needs it. The environment's
//! coordinates reach the command in environment variables; the environment is removed whether
//! the command passes, fails or the job is aborted.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::naming;
use crate::signals::{SIGINT, Signals};

/// How long the command gets to end after a forwarded signal before it is killed.
const COMMAND_GRACE: Duration = Duration::from_secs(10);

/// One published port of a service.
pub struct Endpoint<'a> {
    pub service: &'a str,
    pub container_port: u16,
    pub host: &'a str,
    pub host_port: u16,
}

/// The variables `run` sets and `env` prints: `ENVCTL_ID`, `ENVCTL_ENVIRONMENT`, and
/// `ENVCTL_<SERVICE>_<PORT>=host:port` per published port.
pub fn variables<'a>(
    id: &str,
    environment: &str,
    endpoints: impl IntoIterator<Item = Endpoint<'a>>,
) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::from([
        ("ENVCTL_ID".to_string(), id.to_string()),
        ("ENVCTL_ENVIRONMENT".to_string(), environment.to_string()),
    ]);
    for e in endpoints {
        variables.insert(
            naming::port_variable(e.service, e.container_port),
            format!("{}:{}", e.host, e.host_port),
        );
    }
    variables
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// envctl received a signal, forwarded it, and the command then ended with this code.
    Interrupted(i32),
}

/// Runs `command` with `variables` added to its environment. The first SIGINT or SIGTERM to
/// envctl is forwarded to it; it then gets [`COMMAND_GRACE`] to end before it is killed.
pub async fn run_command(
    command: &[String],
    variables: &BTreeMap<String, String>,
    signals: &Signals,
) -> std::io::Result<Outcome> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    let mut child = Command::new(program).args(args).envs(variables).spawn()?;
    tokio::select! {
        status = child.wait() => return Ok(Outcome::Exited(exit_code(status?))),
        () = signals.received(1) => {}
    }
    if let Some(pid) = child.id() {
        let signal = match signals.last() {
            SIGINT => Signal::SIGINT,
            _ => Signal::SIGTERM,
        };
        let _ = kill(Pid::from_raw(pid as i32), signal);
    }
    let status = match tokio::time::timeout(COMMAND_GRACE, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            child.kill().await?;
            child.wait().await?
        }
    };
    Ok(Outcome::Interrupted(exit_code(status)))
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
            Endpoint {
                service: "proxy",
                container_port: 8080,
                host: "127.0.0.1",
                host_port: 49153,
            },
            Endpoint {
                service: "oracle-xe",
                container_port: 1521,
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
