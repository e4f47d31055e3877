//! How a service's container runs: the compose keys beyond image and command, typed.
//!
//! [`Runtime`] is everything the engine needs to create a service's container besides its
//! image, command, variables and network; the Docker engine turns it into its create request
//! in one function. Values are parsed once, here: sizes are bytes, durations are
//! [`Duration`]s, ports and addresses are typed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Port;

/// A service's container settings, compose's names and meanings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runtime {
    /// Published ports, each on a random host port unless the file fixes one.
    pub ports: Vec<PortMapping>,
    /// Named volumes and bind mounts.
    pub mounts: Vec<Mount>,
    pub tmpfs: Vec<Tmpfs>,
    pub shm_size: Option<Bytes>,
    pub mem_limit: Option<Bytes>,
    pub cpus: Option<Cpus>,
    pub restart: Option<Restart>,
    /// Replaces the image's ENTRYPOINT; an empty list clears it.
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub extra_hosts: Vec<ExtraHost>,
    /// The user's own labels (never under envctl's prefix).
    pub labels: BTreeMap<String, String>,
    /// How long a graceful stop waits before killing the container.
    pub stop_grace_period: Option<Duration>,
}

/// A published container port: `8080`, `"127.0.0.1:1521:1521"`, `{target: 80, published: 8080}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    pub container: Port,
    /// The host address to bind; all addresses when `None`.
    pub host_ip: Option<IpAddr>,
    /// A fixed host port; the engine picks a free one when `None`.
    pub host_port: Option<u16>,
}

impl PortMapping {
    /// A container port on a random host port, on all addresses.
    pub fn random(container: Port) -> PortMapping {
        PortMapping {
            container,
            host_ip: None,
            host_port: None,
        }
    }
}

/// Compose's short syntax: `1521/tcp`, `127.0.0.1:1521:1521/tcp`, `127.0.0.1::1521/tcp`.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host_ip, self.host_port) {
            (None, None) => {}
            (None, Some(port)) => write!(f, "{port}:")?,
            (Some(IpAddr::V4(ip)), port) => write!(
                f,
                "{ip}:{}:",
                port.map(|p| p.to_string()).unwrap_or_default()
            )?,
            (Some(IpAddr::V6(ip)), port) => write!(
                f,
                "[{ip}]:{}:",
                port.map(|p| p.to_string()).unwrap_or_default()
            )?,
        }
        write!(f, "{}", self.container)
    }
}

/// A volume or directory mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    /// The absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume of the environment, by its name in the file. envctl creates it with the
    /// environment (as `envctl_ID_NAME`) and removes it with the environment.
    Volume(String),
    /// A host directory or file, absolute (a relative path in the file is resolved against
    /// the file's directory).
    Bind(PathBuf),
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            MountSource::Volume(name) => write!(f, "{name}:{}", self.target)?,
            MountSource::Bind(path) => write!(f, "{}:{}", path.display(), self.target)?,
        }
        if self.read_only {
            write!(f, ":ro")?;
        }
        Ok(())
    }
}

/// A tmpfs mount: `/run` or `/run:size=64m,mode=1777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmpfsOptions {
    pub size: Option<Bytes>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub target: String,
    pub options: TmpfsOptions,
}

impl fmt::Display for Tmpfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        let mut options = Vec::new();
        if let Some(size) = self.options.size {
            options.push(format!("size={size}"));
        }
        if let Some(mode) = self.options.mode {
            options.push(format!("mode={mode:o}"));
        }
        if !options.is_empty() {
            write!(f, ":{}", options.join(","))?;
        }
        Ok(())
    }
}

/// A size in bytes, written like compose: `1g`, `512m`, `64mb`, `1024k`, `100` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Bytes, String> {
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "`{text}` is not a size: unknown unit `{}`",
                    unit.trim()
                ));
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > i64::MAX as f64 {
            return Err(format!("`{text}` is not a size Docker accepts"));
        }
        Ok(Bytes(bytes.round() as u64))
    }
}

/// The largest whole unit: `1g`, `512m`, `1536k`, `100b`.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("t", 1u64 << 40),
            ("g", 1 << 30),
            ("m", 1 << 20),
            ("k", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}b", self.0)
    }
}

/// A CPU quota in billionths of a CPU, as Docker's `NanoCpus`: `cpus: 1.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cpus(pub u64);

impl std::str::FromStr for Cpus {
    type Err = String;

    fn from_str(text: &str) -> Result<Cpus, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number of CPUs"))?;
        let nanos = (value * 1e9).round();
        if !value.is_finite() || !(1e6..=1e12).contains(&nanos) {
            return Err(format!(
                "`{text}` CPUs is out of range: use a number from 0.001 to 1000"
            ));
        }
        Ok(Cpus(nanos as u64))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0 as f64 / 1e9)
    }
}

/// Compose's `restart`: `no`, `always`, `on-failure[:N]`, `unless-stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnFailure { max_retries: Option<u32> },
    UnlessStopped,
}

impl std::str::FromStr for Restart {
    type Err = String;

    fn from_str(text: &str) -> Result<Restart, String> {
        let known = "use `no`, `always`, `on-failure`, `on-failure:N` or `unless-stopped`";
        match text {
            // YAML 1.1 reads a bare `no` as false; compose means the policy.
            "no" | "false" => Ok(Restart::No),
            "always" => Ok(Restart::Always),
            "unless-stopped" => Ok(Restart::UnlessStopped),
            "on-failure" => Ok(Restart::OnFailure { max_retries: None }),
            _ => match text.strip_prefix("on-failure:") {
                Some(n) => n
                    .parse()
                    .map(|n| Restart::OnFailure {
                        max_retries: Some(n),
                    })
                    .map_err(|_| format!("`{n}` is not a number of retries")),
                None => Err(format!("unknown restart policy `{text}`: {known}")),
            },
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restart::No => f.write_str("no"),
            Restart::Always => f.write_str("always"),
            Restart::UnlessStopped => f.write_str("unless-stopped"),
            Restart::OnFailure { max_retries: None } => f.write_str("on-failure"),
            Restart::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
        }
    }
}

/// An `/etc/hosts` entry added to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub host: String,
    pub address: HostAddress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAddress {
    Ip(IpAddr),
    /// The engine host's address as seen from the container (Docker 20.10 and newer).
    HostGateway,
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddress::Ip(ip) => write!(f, "{ip}"),
            HostAddress::HostGateway => f.write_str("host-gateway"),
        }
    }
}

/// A named volume the environment declares. envctl creates one per copy of the environment,
/// labelled as everything else it creates, and removes it with the copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// The user's own labels, besides envctl's.
    pub labels: BTreeMap<String, String>,
}

/// A digest of each group of a service's settings, as `update` compares them: `command`,
/// `env`, `ports`, `mounts`, and `other` (the rest of `runtime`). Short: they tell settings
/// apart, they protect nothing.
pub fn settings_digests(
    command: &Option<Vec<String>>,
    env: &[(String, String)],
    runtime: &Runtime,
) -> BTreeMap<String, String> {
    let digest = |text: String| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let other = Runtime {
        ports: Vec::new(),
        mounts: Vec::new(),
        ..runtime.clone()
    };
    [
        ("command", format!("{command:?}")),
        ("env", format!("{env:?}")),
        ("ports", format!("{:?}", runtime.ports)),
        ("mounts", format!("{:?}", runtime.mounts)),
        ("other", format!("{other:?}")),
    ]
    .into_iter()
    .map(|(group, text)| (group.to_string(), digest(text)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Protocol;

    #[test]
    fn sizes_read_like_compose_in_binary_units() {
        let bytes = |t: &str| t.parse::<Bytes>().map(|b| b.0);
        assert_eq!(bytes("1g"), Ok(1 << 30));
        assert_eq!(bytes("1GB"), Ok(1 << 30));
        assert_eq!(bytes("512m"), Ok(512 << 20));
        assert_eq!(bytes("1.5g"), Ok(3 << 29));
        assert_eq!(bytes("64k"), Ok(64 << 10));
        assert_eq!(bytes("100"), Ok(100));
        assert!(bytes("1 parsec").is_err());
        assert!(bytes("0").is_err());
        assert!(bytes("-1g").is_err());
        assert!(bytes("99999999999t").is_err());
        assert_eq!(Bytes(1 << 30).to_string(), "1g");
        assert_eq!(Bytes(1536 << 10).to_string(), "1536k");
    }

    #[test]
    fn cpus_are_nano_cpus() {
        assert_eq!("1.5".parse::<Cpus>(), Ok(Cpus(1_500_000_000)));
        assert_eq!("0.25".parse::<Cpus>().unwrap().to_string(), "0.25");
        assert!("0".parse::<Cpus>().is_err());
        assert!("lots".parse::<Cpus>().is_err());
    }

    #[test]
    fn restart_policies_are_composes() {
        assert_eq!("no".parse(), Ok(Restart::No));
        assert_eq!(
            "on-failure:3".parse(),
            Ok(Restart::OnFailure {
                max_retries: Some(3)
            })
        );
        assert!("sometimes".parse::<Restart>().is_err());
        assert_eq!(Restart::UnlessStopped.to_string(), "unless-stopped");
    }

    #[test]
    fn port_mappings_print_in_the_short_syntax() {
        let port = Port {
            number: 1521,
            protocol: Protocol::Tcp,
        };
        assert_eq!(PortMapping::random(port).to_string(), "1521/tcp");
        let fixed = PortMapping {
            container: port,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: Some(1521),
        };
        assert_eq!(fixed.to_string(), "127.0.0.1:1521:1521/tcp");
    }
}
