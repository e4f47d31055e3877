//! Finding the Docker engine, and reaching what runs on it from wherever envctl runs.
//!
//! **Which engine.** The docker CLI's order: `--context`, `--host`, `DOCKER_HOST`,
//! `DOCKER_CONTEXT`, the current context of `config.json` (`DOCKER_CONFIG`, else `~/.docker`),
//! then the local socket. A context is read from `contexts/meta/<sha256 of its name>/meta.json`,
//! its TLS files from `contexts/tls/<same>/docker/`. A tcp endpoint speaks TLS when its context
//! has TLS files, or, for `--host` and `DOCKER_HOST`, when `DOCKER_TLS_VERIFY` is set (files
//! from `DOCKER_CERT_PATH`, else the config directory). `ssh://` runs `ssh` and the remote
//! `docker system dial-stdio` (bollard's ssh transport).
//!
//! **Reaching services.** Whatever envctl prints, exports or probes must answer from this
//! process, which may run in a container on another network than the environment's, or far
//! from the engine. So envctl finds out by trying: a container address is used when a connect
//! to it is answered (even refused), and a published port is reached at `ENVCTL_HOST`, else at
//! the engine's host: the `DOCKER_HOST` host for tcp and ssh; for a local socket, loopback when
//! the port listens in this network namespace or answers there, else (in a container) the
//! default gateway, as Testcontainers does. Each verdict is kept by the backend that found it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::reach::Reachability;

/// Where Docker listens when nothing else is chosen.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// How long connecting, negotiating the API version and the first ping may take together.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// Over ssh, the handshake includes logging in and starting `docker system dial-stdio`.
const SSH_HANDSHAKE: Duration = Duration::from_secs(20);

/// What the command line says about the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub host: Option<String>,
    pub context: Option<String>,
}

/// The variables that select an engine and the host of its ports, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    pub tls_verify: bool,
    pub cert_path: Option<PathBuf>,
    /// `DOCKER_CONFIG`, else `~/.docker`.
    pub config_dir: Option<PathBuf>,
    /// `ENVCTL_HOST`: where published ports are reached, whatever envctl would find.
    pub envctl_host: Option<String>,
}

impl Settings {
    pub fn from_env() -> Settings {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let config_dir = var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".docker"))
        });
        Settings {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            config_dir,
            envctl_host: var("ENVCTL_HOST"),
        }
    }
}

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    DockerHost,
    Context { name: String, chosen_by: ChosenBy },
    Default,
}

/// What chose a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBy {
    Flag,
    Variable,
    Config,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("from `--host`"),
            Origin::DockerHost => f.write_str("from DOCKER_HOST"),
            Origin::Context { name, chosen_by } => {
                let by = match chosen_by {
                    ChosenBy::Flag => "`--context`",
                    ChosenBy::Variable => "DOCKER_CONTEXT",
                    ChosenBy::Config => "`currentContext` in config.json",
                };
                write!(f, "from Docker context `{name}`, chosen by {by}")
            }
            Origin::Default => f.write_str("the default socket"),
        }
    }
}

impl Origin {
    /// What the user can change.
    pub fn hint(&self) -> String {
        match self {
            Origin::Flag => "start that engine, or give `--host` one that runs".into(),
            Origin::DockerHost => {
                "start that engine, or point DOCKER_HOST at one that runs (unset, envctl uses \
                 the current Docker context or the local socket)"
                    .into()
            }
            Origin::Context { name, .. } => format!(
                "`docker context inspect {name}` shows its endpoint; choose another with \
                 DOCKER_CONTEXT, `--context` or `docker context use`"
            ),
            Origin::Default => {
                "start Docker, or point DOCKER_HOST or a Docker context at a running engine".into()
            }
        }
    }

    /// What the user can change when the engine's certificate is refused with the CA `ca`.
    pub fn certificate_hint(&self, ca: &Path) -> String {
        match self {
            Origin::Context { name, .. } => format!(
                "the Docker context `{name}` holds that CA: give it the one that signed the \
                 engine's certificate (`docker context update {name} --docker \
                 host=...,ca=CA,cert=...,key=...`)"
            ),
            _ => format!(
                "point DOCKER_CERT_PATH at the certificates of that engine: its `ca.pem` must be \
                 the CA that signed the engine's certificate, which `{}` is not",
                ca.display()
            ),
        }
    }
}

/// An engine's address, where it came from, and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEndpoint {
    /// As the user wrote it: `unix:///var/run/docker.sock`, `tcp://host:2376`, `ssh://u@h`.
    pub host: String,
    pub origin: Origin,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp {
        /// The host as written (IPv6 in brackets).
        host: String,
        port: u16,
        tls: Option<Tls>,
    },
    Ssh {
        /// The machine's host name or address, without user and port.
        host: String,
    },
}

/// A client certificate, its key, and the CA the engine's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An endpoint that cannot be used: which, from where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub host: String,
    pub origin: Origin,
    pub reason: String,
}

impl EngineEndpoint {
    /// The TLS files envctl speaks to the engine with, if it speaks TLS.
    pub fn tls(&self) -> Option<&Tls> {
        match &self.transport {
            Transport::Tcp { tls, .. } => tls.as_ref(),
            _ => None,
        }
    }

    /// How long connecting and the first answers may take.
    pub fn handshake(&self) -> Duration {
        match self.transport {
            Transport::Ssh { .. } => SSH_HANDSHAKE,
            _ => HANDSHAKE,
        }
    }

    /// The engine's host for published ports, when it is not this machine.
    fn remote_host(&self) -> Option<&str> {
        match &self.transport {
            Transport::Unix => None,
            Transport::Tcp { host, .. } | Transport::Ssh { host } => Some(host),
        }
    }

    /// A bollard client for this endpoint (not connected yet).
    pub fn client(&self, timeout: Duration) -> Result<bollard::Docker, String> {
        let seconds = timeout.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let client = match &self.transport {
            Transport::Unix => bollard::Docker::connect_with_unix(&self.host, seconds, version),
            Transport::Tcp {
                host,
                port,
                tls: None,
            } => bollard::Docker::connect_with_http(
                &format!("tcp://{host}:{port}"),
                seconds,
                version,
            ),
            Transport::Tcp {
                host,
                port,
                tls: Some(tls),
            } => bollard::Docker::connect_with_ssl(
                &format!("tcp://{host}:{port}"),
                &tls.key,
                &tls.cert,
                &tls.ca,
                seconds,
                version,
            ),
            Transport::Ssh { .. } => {
                bollard::Docker::connect_with_ssh(&self.host, seconds, version, None)
            }
        };
        client.map_err(|error| error.to_string())
    }
}

/// The endpoint `flags` and `settings` choose.
pub fn resolve(flags: &Flags, settings: &Settings) -> Result<EngineEndpoint, Unusable> {
    let flag_host = flags.host.as_deref().filter(|h| !h.trim().is_empty());
    let flag_context = flags.context.as_deref().filter(|c| !c.trim().is_empty());
    if let (Some(host), Some(_)) = (flag_host, flag_context) {
        return Err(Unusable {
            host: host.to_owned(),
            origin: Origin::Flag,
            reason: "`--host` and `--context` cannot be given together".into(),
        });
    }
    let context = |name: &str, chosen_by| context(name, chosen_by, settings);
    if let Some(name) = flag_context {
        return context(name, ChosenBy::Flag);
    }
    if let Some(host) = flag_host {
        return parse(host, Origin::Flag, settings);
    }
    if let Some(host) = &settings.docker_host {
        return parse(host, Origin::DockerHost, settings);
    }
    if let Some(name) = &settings.docker_context {
        return context(name, ChosenBy::Variable);
    }
    if let Some(name) = current_context(settings) {
        return context(&name, ChosenBy::Config);
    }
    parse(DEFAULT_HOST, Origin::Default, settings)
}

/// `currentContext` of `config.json`, when set.
fn current_context(settings: &Settings) -> Option<String> {
    let text = std::fs::read_to_string(settings.config_dir.as_ref()?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config
        .get("currentContext")?
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// The endpoint of the Docker context `name`. `default` is the local socket, as for docker.
fn context(
    name: &str,
    chosen_by: ChosenBy,
    settings: &Settings,
) -> Result<EngineEndpoint, Unusable> {
    let origin = Origin::Context {
        name: name.to_owned(),
        chosen_by,
    };
    if name == "default" {
        return parse(DEFAULT_HOST, origin, settings);
    }
    let unusable = |host: &str, reason: String| Unusable {
        host: host.to_owned(),
        origin: origin.clone(),
        reason,
    };
    let Some(config_dir) = &settings.config_dir else {
        return Err(unusable(
            name,
            "no Docker config directory: neither DOCKER_CONFIG nor HOME is set".into(),
        ));
    };
    let digest = context_digest(name);
    let meta = config_dir
        .join("contexts/meta")
        .join(&digest)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|error| {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => format!(
                "no such context: `{}` does not exist (`docker context ls` lists the contexts)",
                meta.display()
            ),
            _ => format!("cannot read `{}`: {error}", meta.display()),
        };
        unusable(name, reason)
    })?;
    let meta_json: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
        unusable(
            name,
            format!("`{}` is not valid JSON: {error}", meta.display()),
        )
    })?;
    let docker = &meta_json["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| {
            unusable(
                name,
                format!("`{}` names no docker endpoint host", meta.display()),
            )
        })?;
    let mut endpoint = parse_host(host).map_err(|reason| unusable(host, reason))?;
    endpoint.origin = origin.clone();
    if let Transport::Tcp { tls, .. } = &mut endpoint.transport {
        let dir = config_dir.join("contexts/tls").join(&digest).join("docker");
        let files = Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        if files.ca.exists() || files.cert.exists() || files.key.exists() {
            if docker["SkipTLSVerify"].as_bool() == Some(true) {
                return Err(unusable(
                    host,
                    "the context skips TLS verification, which envctl does not do".into(),
                ));
            }
            check_files(&files).map_err(|reason| unusable(host, reason))?;
            *tls = Some(files);
        }
    }
    Ok(endpoint)
}

/// Why an endpoint that answered HTTP is no engine envctl can use.
pub fn explain_answer(answer: &str) -> String {
    if answer.contains("HTTPS server") {
        // Go's TLS server, asked in plain HTTP.
        return format!(
            "{answer} (the engine speaks TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or \
             use a Docker context with its certificates)"
        );
    }
    format!("{answer} (is this a Docker engine?)")
}

/// The directory name of a context's files: the hex SHA-256 of its name.
fn context_digest(name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An endpoint given as an address (`--host`, `DOCKER_HOST`), with TLS from the variables.
fn parse(host: &str, origin: Origin, settings: &Settings) -> Result<EngineEndpoint, Unusable> {
    let unusable = |reason: String| Unusable {
        host: host.to_owned(),
        origin: origin.clone(),
        reason,
    };
    let mut endpoint = parse_host(host).map_err(unusable)?;
    endpoint.origin = origin.clone();
    if let Transport::Tcp { tls, .. } = &mut endpoint.transport
        && settings.tls_verify
    {
        let (dir, named_by) = match (&settings.cert_path, &settings.config_dir) {
            (Some(dir), _) => (dir.clone(), "DOCKER_CERT_PATH"),
            (None, Some(dir)) => (dir.clone(), "the Docker config directory"),
            (None, None) => {
                return Err(unusable(
                    "DOCKER_TLS_VERIFY is set, but neither DOCKER_CERT_PATH nor HOME is".into(),
                ));
            }
        };
        let files = Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        check_files(&files).map_err(|reason| {
            unusable(format!(
                "DOCKER_TLS_VERIFY is set, but {reason} (certificates from {named_by})"
            ))
        })?;
        *tls = Some(files);
    }
    Ok(endpoint)
}

fn check_files(tls: &Tls) -> Result<(), String> {
    for file in [&tls.ca, &tls.cert, &tls.key] {
        if !file.is_file() {
            return Err(format!("`{}` does not exist", file.display()));
        }
    }
    Ok(())
}

/// `unix:///path`, `tcp://host[:port]` (`http://` too) or `ssh://[user@]host[:port]`.
fn parse_host(host: &str) -> Result<EngineEndpoint, String> {
    let endpoint = |transport| EngineEndpoint {
        host: host.to_owned(),
        origin: Origin::Default,
        transport,
    };
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err("the unix socket path is empty".into());
        }
        return Ok(endpoint(Transport::Unix));
    }
    if let Some(rest) = host.strip_prefix("ssh://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let machine = authority.rsplit_once('@').map_or(authority, |(_, m)| m);
        let (machine, port) = split_host_port(machine);
        if machine.is_empty() {
            return Err("the ssh address has no host".into());
        }
        if port.is_some() {
            // bollard hands `user@host:port` to ssh as a host name.
            return Err(format!(
                "envctl's ssh transport takes no port in the address: give `{machine}` a `Port` \
                 in ~/.ssh/config instead"
            ));
        }
        return Ok(endpoint(Transport::Ssh {
            host: machine.to_owned(),
        }));
    }
    let Some(rest) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    else {
        return Err(
            "unsupported scheme: envctl speaks to unix://, tcp:// and ssh:// endpoints".into(),
        );
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (machine, port) = split_host_port(authority);
    if machine.is_empty() {
        return Err("the address has no host".into());
    }
    let port = match port.filter(|port| !port.is_empty()) {
        // Docker's default plain-TCP port, as the docker CLI assumes it.
        None => 2375,
        Some(port) => port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?,
    };
    Ok(endpoint(Transport::Tcp {
        host: machine.to_owned(),
        port,
        tls: None,
    }))
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`: the host as written (brackets kept), the port.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

// ---------------------------------------------------------------------------------------------
// Reaching what runs on the engine

/// How this process reaches the ports an engine publishes, and whether it reaches containers'
/// own addresses; verdicts found by trying, kept for the life of the process.
#[derive(Debug)]
pub struct Reach {
    endpoint: String,
    /// `ENVCTL_HOST`, or the remote engine's host: no trial needed.
    fixed_host: Option<String>,
    in_container: bool,
    gateway: Option<Ipv4Addr>,
    published: OnceLock<String>,
    /// Whether containers' own addresses answer, what did not answer: learnt by the probes.
    reachability: Reachability,
    /// Whether envctl may connect its own container to environments' networks.
    attachable: Attachable,
}

/// Whether this process may connect its own container to an environment's network, so that
/// the services' own addresses answer from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachable {
    Yes,
    /// envctl does not run in a container: nothing to attach.
    NotInContainer,
    /// It runs in a container but must not attach it, for this reason.
    No(&'static str),
}

impl Reach {
    pub fn new(endpoint: &EngineEndpoint, settings: &Settings) -> Reach {
        let fixed_host = settings
            .envctl_host
            .clone()
            .or_else(|| endpoint.remote_host().map(str::to_owned));
        let in_container = in_container();
        let attachable = match (in_container, &settings.envctl_host, &endpoint.transport) {
            (false, _, _) => Attachable::NotInContainer,
            (true, Some(_), _) => Attachable::No(
                "ENVCTL_HOST is set, which says where services answer instead: envctl does not \
                 attach its container",
            ),
            (true, None, Transport::Unix) => Attachable::Yes,
            (true, None, _) => Attachable::No(
                "the engine is not behind a local socket, so envctl's container is none of its \
                 containers",
            ),
        };
        Reach {
            endpoint: endpoint.host.clone(),
            attachable,
            fixed_host,
            in_container,
            gateway: in_container
                .then(|| std::fs::read_to_string("/proc/net/route").ok())
                .flatten()
                .and_then(|table| default_gateway(&table)),
            published: OnceLock::new(),
            reachability: Reachability::new(),
        }
    }

    /// The host of ports published on every address, as far as known: `ENVCTL_HOST`, the
    /// remote engine's host, what a trial found, else loopback.
    pub fn published_host(&self) -> &str {
        self.fixed_host
            .as_deref()
            .or_else(|| self.published.get().map(String::as_str))
            .unwrap_or("127.0.0.1")
    }

    /// Finds the host at which the local engine's published `port` answers, unless known:
    /// loopback when the port listens in this network namespace or loopback answers, else the
    /// default gateway when envctl runs in a container and the port answers there. A port that
    /// answers nowhere (its container is being stopped: a listing still shows its ports) settles
    /// nothing, and the next port tells.
    pub async fn locate(&self, port: u16) {
        if self.fixed_host.is_some() || self.published.get().is_some() {
            return;
        }
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let here = listens_here(port) || crate::reach::answers(loopback).await == Some(true);
        let host = match (here, self.gateway) {
            (false, Some(gateway)) if self.in_container => {
                let there = SocketAddr::from((gateway, port));
                if crate::reach::answers(there).await != Some(true) {
                    tracing::debug!(endpoint = %self.endpoint, port, "a published port answers nowhere");
                    return;
                }
                gateway.to_string()
            }
            _ => "127.0.0.1".to_owned(),
        };
        tracing::debug!(endpoint = %self.endpoint, %host, "published ports are reached here");
        let _ = self.published.set(host);
    }

    /// Whether containers' own addresses answer from here, as far as known (`None`: untried).
    pub fn direct(&self) -> Option<bool> {
        self.reachability.direct()
    }

    /// What the probes learnt of reaching this engine's containers.
    pub fn reachability(&self) -> &Reachability {
        &self.reachability
    }

    /// Where envctl runs, for messages about unreachable addresses.
    pub fn in_container(&self) -> bool {
        self.in_container
    }

    /// Whether envctl may connect its own container to environments' networks: it runs in a
    /// container, the engine is behind a local socket, and ENVCTL_HOST is unset.
    pub fn attachable(&self) -> Attachable {
        self.attachable
    }
}

/// Whether a socket in this network namespace listens on `port` (Docker's port proxy, when
/// the engine shares it): a look at `/proc/net/tcp{,6}` that touches no service.
fn listens_here(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| listening_ports(&text).contains(&port))
    })
}

/// The ports of the listening sockets in a `/proc/net/tcp` table.
fn listening_ports(table: &str) -> Vec<u16> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let port = local.rsplit_once(':')?.1;
            (state == LISTEN).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// Whether this process runs in a container (Docker writes `/.dockerenv`, Podman
/// `/run/.containerenv`).
fn in_container() -> bool {
    Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists()
}

/// The default route's gateway in a `/proc/net/route` table (hex, little-endian).
fn default_gateway(table: &str) -> Option<Ipv4Addr> {
    const RTF_GATEWAY: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, flags) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *destination != "00000000" || flags & RTF_GATEWAY == 0 {
            return None;
        }
        let gateway = u32::from_str_radix(gateway, 16).ok()?;
        Some(Ipv4Addr::from(gateway.to_le_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a container, with the default gateway as the other candidate: here both candidates
    /// are loopback, where nothing listens on `port`.
    fn reach_in_a_container() -> Reach {
        Reach {
            endpoint: "unix:///var/run/docker.sock".into(),
            fixed_host: None,
            in_container: true,
            gateway: Some(Ipv4Addr::LOCALHOST),
            published: OnceLock::new(),
            reachability: Reachability::new(),
            attachable: Attachable::Yes,
        }
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port")
    }

    #[tokio::test]
    async fn a_published_port_that_answers_nowhere_does_not_settle_ports_on_the_default_gateway() {
        // Seen in the full suite on a machine that is itself a container: `envctl gateway`
        // located published ports on a port that did not answer on loopback (a port a listing
        // showed, no longer or not yet answering), settled on the default gateway, and every
        // later request went there, refused.
        let reach = reach_in_a_container();
        reach.locate(closed_port()).await;
        assert_eq!(reach.published.get(), None, "nothing settled");
        assert_eq!(reach.published_host(), "127.0.0.1");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        reach.locate(listener.local_addr().unwrap().port()).await;
        assert_eq!(
            reach.published.get().map(String::as_str),
            Some("127.0.0.1"),
            "the next port that answers settles it"
        );
    }

    fn settings(config_dir: &Path) -> Settings {
        Settings {
            config_dir: Some(config_dir.to_owned()),
            ..Settings::default()
        }
    }

    #[test]
    fn addresses() {
        let unix = parse_host("unix:///var/run/docker.sock").unwrap();
        assert_eq!(unix.transport, Transport::Unix);
        let tcp = parse_host("tcp://docker.example.com:2376").unwrap();
        assert_eq!(tcp.remote_host(), Some("docker.example.com"));
        let bare = parse_host("tcp://10.0.0.5").unwrap();
        assert!(matches!(bare.transport, Transport::Tcp { port: 2375, .. }));
        let v6 = parse_host("tcp://[::1]:2375/").unwrap();
        assert_eq!(v6.remote_host(), Some("[::1]"));
        let ssh = parse_host("ssh://ci@build-7.example.com").unwrap();
        assert_eq!(ssh.remote_host(), Some("build-7.example.com"));
        let error = parse_host("ssh://ci@build-7.example.com:2222").unwrap_err();
        assert!(error.contains("~/.ssh/config"), "{error}");
        assert!(parse_host("ssh://").is_err());
        assert!(parse_host("tcp://:2375").is_err());
        assert!(parse_host("tcp://host:port").is_err());
        assert!(parse_host("npipe:////./pipe/docker_engine").is_err());
    }

    #[test]
    fn precedence_is_the_docker_clis() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "remote", "tcp://10.1.2.3:2375", false);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext": "remote"}"#,
        )
        .unwrap();
        let base = settings(dir.path());
        let from = |flags: Flags, settings: &Settings| resolve(&flags, settings).unwrap();

        // The current context of config.json, when nothing else is said.
        let endpoint = from(Flags::default(), &base);
        assert_eq!(endpoint.host, "tcp://10.1.2.3:2375");
        assert_eq!(
            endpoint.origin.to_string(),
            "from Docker context `remote`, chosen by `currentContext` in config.json"
        );
        // DOCKER_CONTEXT over config.json.
        let variable = Settings {
            docker_context: Some("default".into()),
            ..base.clone()
        };
        assert_eq!(from(Flags::default(), &variable).host, DEFAULT_HOST);
        // DOCKER_HOST over both.
        let docker_host = Settings {
            docker_host: Some("unix:///tmp/x.sock".into()),
            docker_context: Some("remote".into()),
            ..base.clone()
        };
        let endpoint = from(Flags::default(), &docker_host);
        assert_eq!(
            (endpoint.host.as_str(), endpoint.origin),
            ("unix:///tmp/x.sock", Origin::DockerHost)
        );
        // --host over DOCKER_HOST, --context over everything.
        let flags = Flags {
            host: Some("tcp://127.0.0.1:1".into()),
            context: None,
        };
        assert_eq!(from(flags, &docker_host).origin, Origin::Flag);
        let flags = Flags {
            host: None,
            context: Some("remote".into()),
        };
        assert_eq!(from(flags, &docker_host).host, "tcp://10.1.2.3:2375");
        let both = Flags {
            host: Some("tcp://h:1".into()),
            context: Some("remote".into()),
        };
        assert!(
            resolve(&both, &base)
                .unwrap_err()
                .reason
                .contains("together")
        );
        // Nothing at all: the local socket.
        let endpoint = from(Flags::default(), &Settings::default());
        assert_eq!(
            (endpoint.host.as_str(), endpoint.origin),
            (DEFAULT_HOST, Origin::Default)
        );
    }

    #[test]
    fn contexts_name_themselves_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Settings {
            docker_context: Some("nope".into()),
            ..settings(dir.path())
        };
        let error = resolve(&Flags::default(), &missing).unwrap_err();
        assert_eq!(error.host, "nope");
        assert_eq!(
            error.origin.to_string(),
            "from Docker context `nope`, chosen by DOCKER_CONTEXT"
        );
        assert!(error.reason.contains("no such context"), "{}", error.reason);
        assert!(error.origin.hint().contains("docker context inspect nope"));

        write_context(dir.path(), "broken", "", false);
        let broken = Settings {
            docker_context: Some("broken".into()),
            ..settings(dir.path())
        };
        let error = resolve(&Flags::default(), &broken).unwrap_err();
        assert!(
            error.reason.contains("no docker endpoint host"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn context_tls_files_come_from_its_tls_folder() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "secure", "tcp://127.0.0.1:2376", true);
        let chosen = Settings {
            docker_context: Some("secure".into()),
            ..settings(dir.path())
        };
        let endpoint = resolve(&Flags::default(), &chosen).unwrap();
        let Transport::Tcp { tls: Some(tls), .. } = endpoint.transport else {
            panic!("expected TLS: {endpoint:?}");
        };
        let folder = dir
            .path()
            .join("contexts/tls")
            .join(context_digest("secure"))
            .join("docker");
        assert_eq!(tls.ca, folder.join("ca.pem"));
        assert_eq!(tls.key, folder.join("key.pem"));
    }

    #[test]
    fn tls_from_the_variables_needs_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Settings {
            docker_host: Some("tcp://127.0.0.1:2376".into()),
            tls_verify: true,
            ..settings(dir.path())
        };
        let error = resolve(&Flags::default(), &tls).unwrap_err();
        assert_eq!(error.origin, Origin::DockerHost);
        assert!(
            error.reason.contains("ca.pem` does not exist"),
            "{}",
            error.reason
        );
        assert!(
            error.reason.contains("Docker config directory"),
            "{}",
            error.reason
        );
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let endpoint = resolve(&Flags::default(), &tls).unwrap();
        assert!(matches!(
            endpoint.transport,
            Transport::Tcp { tls: Some(_), .. }
        ));
        // DOCKER_CERT_PATH over the config directory.
        let elsewhere = Settings {
            cert_path: Some(dir.path().join("certs")),
            ..tls
        };
        let error = resolve(&Flags::default(), &elsewhere).unwrap_err();
        assert!(
            error.reason.contains("DOCKER_CERT_PATH"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn context_digests_are_sha256_of_the_name() {
        // `printf %s remote | sha256sum`
        assert_eq!(
            context_digest("remote"),
            "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a"
        );
    }

    #[test]
    fn default_gateways_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\n\
                     eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
    }

    #[test]
    fn listening_ports_from_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue\n\
                     \x20  0: 00000000:C351 00000000:0000 0A 00000000:00000000\n\
                     \x20  1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000\n";
        assert_eq!(listening_ports(table), vec![0xC351]);
    }

    fn write_context(config_dir: &Path, name: &str, host: &str, tls: bool) {
        let digest = context_digest(name);
        let meta = config_dir.join("contexts/meta").join(&digest);
        std::fs::create_dir_all(&meta).unwrap();
        let json = serde_json::json!({
            "Name": name,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
        });
        std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
        if tls {
            let folder = config_dir.join("contexts/tls").join(&digest).join("docker");
            std::fs::create_dir_all(&folder).unwrap();
            for file in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(folder.join(file), "").unwrap();
            }
        }
    }
}
