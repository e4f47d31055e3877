//! Checking the compose keys that shape a service's container: volumes, ports with host
//! bindings, sizes, limits and the rest of [`Runtime`]. Every value is parsed here, once, and
//! every problem is reported at its position.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::raw::{Entries, RawMount, RawPort, RawService, RawVolume, Spanned};
use super::runtime::{
    Bytes, Cpus, ExtraHost, HostAddress, Mount, MountSource, PortMapping, Restart, Runtime, Tmpfs,
    TmpfsOptions, Volume,
};
use super::validate::{Checker, at};
use super::{Port, Protocol};
use crate::naming;

impl Checker<'_> {
    /// The top-level `volumes:`: the named volumes services may mount.
    pub(super) fn volumes(&mut self, raw: Entries<RawVolume>) -> BTreeMap<String, Volume> {
        let mut volumes = BTreeMap::new();
        for (name, volume) in raw {
            if !naming::is_valid_docker_name(&name.value) {
                self.error(
                    format!(
                        "volume name `{}` must start with a letter or digit and contain only \
                         letters, digits, `_`, `.` and `-`",
                        name.value
                    ),
                    at(&name),
                );
            }
            let labels = self.labels(&volume.labels);
            volumes.insert(name.value, Volume { labels });
        }
        volumes
    }

    /// The container settings of one service.
    pub(super) fn runtime(
        &mut self,
        raw: &RawService,
        volumes: &BTreeMap<String, Volume>,
    ) -> Runtime {
        let mut runtime = Runtime {
            ports: self.port_mappings(&raw.ports),
            labels: self.labels(&raw.labels),
            ..Runtime::default()
        };
        for entry in &raw.volumes {
            match self.mount(entry, volumes) {
                Some(Target::Mount(mount)) => runtime.mounts.push(mount),
                Some(Target::Tmpfs(tmpfs)) => runtime.tmpfs.push(tmpfs),
                None => {}
            }
        }
        for entry in &raw.tmpfs {
            if let Some(tmpfs) = self.tmpfs(entry) {
                runtime.tmpfs.push(tmpfs);
            }
        }
        self.distinct_targets(&runtime, raw);
        runtime.shm_size = raw.shm_size.as_ref().and_then(|s| self.size(s, "shm_size"));
        runtime.mem_limit = raw
            .mem_limit
            .as_ref()
            .and_then(|s| self.size(s, "mem_limit"));
        runtime.cpus = raw.cpus.as_ref().and_then(|c| self.parsed::<Cpus>(c));
        runtime.restart = raw.restart.as_ref().and_then(|r| self.parsed::<Restart>(r));
        runtime.entrypoint = raw.entrypoint.as_ref().map(|words| {
            let mut entrypoint = Vec::new();
            for (i, word) in words.value.iter().enumerate() {
                let Some(value) = self.interpolate(word) else {
                    continue;
                };
                self.reject_nul(
                    || format!("argument {} of `entrypoint`", i + 1),
                    &value,
                    at(word),
                );
                entrypoint.push(value);
            }
            entrypoint
        });
        runtime.user = raw.user.as_ref().and_then(|user| {
            let value = self.interpolate(user)?;
            if value.is_empty() || value.contains(char::is_whitespace) || value.contains('\0') {
                self.error(
                    format!("`{value}` is not a user: use `NAME`, `UID` or `UID:GID`"),
                    at(user),
                );
                return None;
            }
            Some(value)
        });
        runtime.working_dir = raw.working_dir.as_ref().and_then(|dir| {
            let value = self.interpolate(dir)?;
            self.absolute_in_container(&value, dir, "`working_dir`")
                .then_some(value)
        });
        runtime.extra_hosts = raw
            .extra_hosts
            .iter()
            .filter_map(|(host, address)| self.extra_host(host, address))
            .collect();
        runtime.stop_grace_period = raw
            .stop_grace_period
            .as_ref()
            .and_then(|grace| self.grace(grace));
        runtime
    }

    /// Parses a value whose type knows its syntax and says what is wrong with it.
    fn parsed<T: std::str::FromStr<Err = String>>(&mut self, value: &Spanned<String>) -> Option<T> {
        value
            .value
            .parse()
            .map_err(|message| self.error(message, at(value)))
            .ok()
    }

    fn size(&mut self, value: &Spanned<String>, key: &str) -> Option<Bytes> {
        match value.value.parse::<Bytes>() {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.diagnostics.push(
                    Diagnostic::new(format!("invalid `{key}`: {message}"), at(value))
                        .with_hint("write sizes like `1g`, `512m` or `64k` (binary units)"),
                );
                None
            }
        }
    }

    fn grace(&mut self, value: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(&value.value) {
            Ok(grace) if grace <= Duration::from_secs(24 * 3600) => Some(grace),
            Ok(_) => {
                self.error(
                    format!(
                        "the `stop_grace_period` {} is longer than a day",
                        value.value
                    ),
                    at(value),
                );
                None
            }
            Err(error) => {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!("invalid duration `{}`: {error}", value.value),
                        at(value),
                    )
                    .with_hint("write durations like `10s`, `1m30s` or `2m`"),
                );
                None
            }
        }
    }

    /// User labels; envctl's own prefix is reserved, since `down` and the reaper trust it.
    fn labels(&mut self, raw: &Entries<Spanned<String>>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for (key, value) in raw {
            if key.value.starts_with(naming::LABEL_PREFIX) {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!(
                            "label `{}` uses envctl's own prefix `{}`",
                            key.value,
                            naming::LABEL_PREFIX
                        ),
                        at(key),
                    )
                    .with_hint(
                        "envctl finds and removes what it created by these labels; choose \
                         another prefix, like `com.example.`",
                    ),
                );
                continue;
            }
            if key.value.is_empty() || key.value.contains(char::is_whitespace) {
                self.error(format!("`{}` is not a label name", key.value), at(key));
                continue;
            }
            let Some(text) = self.interpolate(value) else {
                continue;
            };
            labels.insert(key.value.clone(), text);
        }
        labels
    }

    fn extra_host(
        &mut self,
        host: &Spanned<String>,
        address: &Spanned<String>,
    ) -> Option<ExtraHost> {
        if host.value.is_empty()
            || !host
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            self.error(format!("`{}` is not a host name", host.value), at(host));
            return None;
        }
        let text = address.value.trim_start_matches('[').trim_end_matches(']');
        let address_of = match text {
            "host-gateway" => Some(HostAddress::HostGateway),
            _ => text.parse::<IpAddr>().ok().map(HostAddress::Ip),
        };
        match address_of {
            Some(address) => Some(ExtraHost {
                host: host.value.clone(),
                address,
            }),
            None => {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!("`{}` is not an IP address", address.value),
                        at(address),
                    )
                    .with_hint("give an address (`10.0.0.5`, `::1`) or `host-gateway`"),
                );
                None
            }
        }
    }

    fn absolute_in_container<T>(&mut self, path: &str, entry: &Spanned<T>, what: &str) -> bool {
        if path.starts_with('/') && !path.contains('\0') {
            return true;
        }
        self.error(
            format!("{what} `{path}` is not an absolute path inside the container"),
            at(entry),
        );
        false
    }

    fn mount(
        &mut self,
        entry: &Spanned<RawMount>,
        volumes: &BTreeMap<String, Volume>,
    ) -> Option<Target> {
        match &entry.value {
            RawMount::Short(text) => {
                let value = self.interpolate(text)?;
                let parts: Vec<&str> = value.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [source, target] => (*source, *target, None),
                    [source, target, mode] => (*source, *target, Some(*mode)),
                    [_] => {
                        self.diagnostics.push(
                            Diagnostic::new(format!("volume `{value}` has no source"), at(entry))
                                .with_hint(
                                    "envctl creates no anonymous volumes: write `NAME:/path` with \
                                 `NAME` under the top-level `volumes:`, or `./dir:/path`",
                                ),
                        );
                        return None;
                    }
                    _ => {
                        self.error(format!("`{value}` is not `SOURCE:TARGET[:ro]`"), at(entry));
                        return None;
                    }
                };
                let read_only = match mode {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(other) => {
                        self.error(
                            format!("unknown volume mode `{other}`: use `ro` or `rw`"),
                            at(entry),
                        );
                        return None;
                    }
                };
                let kind = if is_path(source) { "bind" } else { "volume" };
                self.mount_of(entry, kind, source, target, read_only, volumes)
            }
            RawMount::Long {
                kind,
                source,
                target,
                read_only,
                size,
            } => {
                let Some(target) = target else {
                    self.error("the volume has no `target`", at(entry));
                    return None;
                };
                let target_text = self.interpolate(target)?;
                let source_text = match source {
                    Some(source) => Some(self.interpolate(source)?),
                    None => None,
                };
                let kind_text = match (kind, &source_text) {
                    (Some(kind), _) => kind.value.clone(),
                    (None, Some(source)) if is_path(source) => "bind".into(),
                    (None, _) => "volume".into(),
                };
                let read_only = read_only.as_ref().is_some_and(|r| r.value);
                if kind_text == "tmpfs" {
                    if !self.absolute_in_container(&target_text, target, "the tmpfs target") {
                        return None;
                    }
                    let size = match size {
                        Some(size) => Some(self.size(size, "tmpfs.size")?),
                        None => None,
                    };
                    return Some(Target::Tmpfs(Tmpfs {
                        target: target_text,
                        options: TmpfsOptions { size, mode: None },
                    }));
                }
                if let Some(size) = size {
                    self.error("`tmpfs` options apply to `type: tmpfs` only", at(size));
                }
                let Some(source_text) = source_text else {
                    self.error(
                        format!("the `{kind_text}` volume has no `source`"),
                        at(entry),
                    );
                    return None;
                };
                let position = source.as_ref().map_or(at(entry), at);
                let spanned_source = Spanned {
                    value: (),
                    at: position,
                };
                if !matches!(kind_text.as_str(), "volume" | "bind") {
                    let at = kind.as_ref().map_or(at(entry), at);
                    self.error(
                        format!(
                            "unknown volume type `{kind_text}`: use `volume`, `bind` or `tmpfs`"
                        ),
                        at,
                    );
                    return None;
                }
                self.mount_of(
                    &spanned_source,
                    &kind_text,
                    &source_text,
                    &target_text,
                    read_only,
                    volumes,
                )
            }
        }
    }

    fn mount_of<T>(
        &mut self,
        entry: &Spanned<T>,
        kind: &str,
        source: &str,
        target: &str,
        read_only: bool,
        volumes: &BTreeMap<String, Volume>,
    ) -> Option<Target> {
        if !self.absolute_in_container(target, entry, "the volume target") {
            return None;
        }
        let source = if kind == "bind" {
            MountSource::Bind(self.host_path(source, entry)?)
        } else {
            if !volumes.contains_key(source) {
                let diagnostic = Diagnostic::new(
                    format!("volume `{source}` is not declared under the top-level `volumes:`"),
                    at(entry),
                );
                let hint = match did_you_mean(source, volumes.keys().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "add `volumes: {{{source}: {{}}}}` at the top of the file; a host path \
                         starts with `/`, `./` or `~/`"
                    ),
                };
                self.diagnostics.push(diagnostic.with_hint(hint));
                return None;
            }
            MountSource::Volume(source.to_string())
        };
        Some(Target::Mount(Mount {
            source,
            target: target.to_string(),
            read_only,
        }))
    }

    /// A bind mount's host path: `~/` is the caller's home, a relative path is relative to the
    /// file that declares it; `.` and `..` are resolved without touching the file system.
    fn host_path<T>(&mut self, source: &str, entry: &Spanned<T>) -> Option<PathBuf> {
        let path = match source.strip_prefix("~/") {
            Some(rest) => match (self.lookup)("HOME") {
                Some(home) => Path::new(&home).join(rest),
                None => {
                    self.error("`~` needs `HOME` set in the calling shell", at(entry));
                    return None;
                }
            },
            None => self.dir_of(at(entry)).join(source),
        };
        let mut normal = PathBuf::new();
        for component in path.components() {
            match component {
                Component::ParentDir => {
                    normal.pop();
                }
                Component::CurDir => {}
                other => normal.push(other),
            }
        }
        if normal.to_string_lossy().contains('\0') {
            self.error("the host path contains a NUL character", at(entry));
            return None;
        }
        Some(normal)
    }

    /// `/run` or `/run:size=64m,mode=1777`.
    fn tmpfs(&mut self, entry: &Spanned<String>) -> Option<Tmpfs> {
        let value = self.interpolate(entry)?;
        let (target, options) = match value.split_once(':') {
            Some((target, options)) => (target, Some(options)),
            None => (value.as_str(), None),
        };
        if !self.absolute_in_container(target, entry, "the tmpfs target") {
            return None;
        }
        let mut parsed = TmpfsOptions {
            size: None,
            mode: None,
        };
        for option in options.into_iter().flat_map(|o| o.split(',')) {
            match option.split_once('=') {
                Some(("size", size)) => {
                    let size = Spanned {
                        value: size.to_string(),
                        at: at(entry),
                    };
                    parsed.size = Some(self.size(&size, "tmpfs size")?);
                }
                Some(("mode", mode)) => match u32::from_str_radix(mode, 8) {
                    Ok(mode) if mode <= 0o7777 => parsed.mode = Some(mode),
                    _ => {
                        self.error(
                            format!("`{mode}` is not an octal file mode like `1777`"),
                            at(entry),
                        );
                        return None;
                    }
                },
                _ => {
                    self.error(
                        format!("unknown tmpfs option `{option}`: use `size=` or `mode=`"),
                        at(entry),
                    );
                    return None;
                }
            }
        }
        Some(Tmpfs {
            target: target.to_string(),
            options: parsed,
        })
    }

    /// Two mounts at one container path: Docker refuses the container.
    fn distinct_targets(&mut self, runtime: &Runtime, raw: &RawService) {
        let mut seen = std::collections::BTreeSet::new();
        let targets = runtime
            .mounts
            .iter()
            .map(|m| m.target.as_str())
            .chain(runtime.tmpfs.iter().map(|t| t.target.as_str()));
        let mut twice = Vec::new();
        for target in targets {
            if !seen.insert(target.trim_end_matches('/')) {
                twice.push(target.to_string());
            }
        }
        let position = raw.volumes.first().map(at).or(raw.tmpfs.first().map(at));
        for target in twice {
            self.error(
                format!("two volumes are mounted at `{target}`"),
                position.flatten(),
            );
        }
    }

    fn port_mappings(&mut self, raw: &[Spanned<RawPort>]) -> Vec<PortMapping> {
        let mut ports: Vec<PortMapping> = Vec::new();
        for entry in raw {
            let Some(mapping) = self.port_mapping(entry) else {
                continue;
            };
            if ports.iter().any(|p| p.container == mapping.container) {
                self.error(
                    format!("port {} is published twice", mapping.container),
                    at(entry),
                );
                continue;
            }
            if let Some(host_port) = mapping.host_port {
                let key = (host_port, mapping.container.protocol);
                let clash = self.host_ports.get(&key).and_then(|(ip, service)| {
                    (ip.is_none() || mapping.host_ip.is_none() || *ip == mapping.host_ip)
                        .then(|| service.clone())
                });
                if let Some(service) = clash {
                    self.diagnostics.push(
                        Diagnostic::new(
                            format!("host port {host_port} is published by `{service}` already"),
                            at(entry),
                        )
                        .with_hint(
                            "one host port serves one container; leave it out for a random one",
                        ),
                    );
                    continue;
                }
                self.host_ports
                    .insert(key, (mapping.host_ip, self.service.clone()));
            }
            ports.push(mapping);
        }
        ports
    }

    fn port_mapping(&mut self, entry: &Spanned<RawPort>) -> Option<PortMapping> {
        match &entry.value {
            RawPort::Short(text) => {
                let (rest, protocol) = match text.rsplit_once('/') {
                    Some((rest, protocol)) => (rest, protocol),
                    None => (text.as_str(), "tcp"),
                };
                let protocol = self.protocol(protocol, entry)?;
                let (host_ip, rest) = match rest.strip_prefix('[') {
                    Some(bracketed) => match bracketed.split_once("]:") {
                        Some((ip, rest)) => (Some(ip), rest),
                        None => {
                            self.error(format!("`{text}` is not a port mapping"), at(entry));
                            return None;
                        }
                    },
                    None => (None, rest),
                };
                let parts: Vec<&str> = rest.split(':').collect();
                let (ip, host, container) = match (host_ip, parts.as_slice()) {
                    (None, [container]) => (None, None, *container),
                    (None, [host, container]) => (None, Some(*host), *container),
                    (None, [ip, host, container]) => (Some(*ip), Some(*host), *container),
                    (Some(ip), [host, container]) => (Some(ip), Some(*host), *container),
                    _ => {
                        self.diagnostics.push(
                            Diagnostic::new(format!("`{text}` is not a port mapping"), at(entry))
                                .with_hint(
                                    "write `PORT`, `HOST_PORT:PORT` or `ADDRESS:HOST_PORT:PORT`; \
                                     an IPv6 address goes in brackets",
                                ),
                        );
                        return None;
                    }
                };
                self.mapping_of(entry, ip, host, container, protocol)
            }
            RawPort::Long {
                target,
                published,
                host_ip,
                protocol,
            } => {
                let target = target.as_ref()?;
                let protocol = match protocol {
                    Some(p) => self.protocol(&p.value, p)?,
                    None => Protocol::Tcp,
                };
                let number = self.port_number(target, &target.value)?;
                let host_ip = match host_ip {
                    Some(ip) => Some(self.ip(ip, &ip.value)?),
                    None => None,
                };
                let host_port = match published.as_ref().filter(|p| !p.value.is_empty()) {
                    Some(p) => Some(self.host_port(p, &p.value)?),
                    None => None,
                };
                Some(PortMapping {
                    container: Port { number, protocol },
                    host_ip,
                    host_port,
                })
            }
        }
    }

    fn mapping_of<T>(
        &mut self,
        entry: &Spanned<T>,
        ip: Option<&str>,
        host: Option<&str>,
        container: &str,
        protocol: Protocol,
    ) -> Option<PortMapping> {
        if container.contains('-') || host.is_some_and(|h| h.contains('-')) {
            self.diagnostics.push(
                Diagnostic::new("port ranges are not supported", at(entry))
                    .with_hint("publish each port on a line of its own"),
            );
            return None;
        }
        let number = self.port_number(entry, container)?;
        let host_ip = match ip {
            Some(ip) => Some(self.ip(entry, ip)?),
            None => None,
        };
        let host_port = match host.filter(|h| !h.is_empty()) {
            Some(host) => Some(self.host_port(entry, host)?),
            None => None,
        };
        Some(PortMapping {
            container: Port { number, protocol },
            host_ip,
            host_port,
        })
    }

    fn protocol<T>(&mut self, text: &str, entry: &Spanned<T>) -> Option<Protocol> {
        match text {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            other => {
                self.error(
                    format!("unknown protocol `{other}` in port: use `tcp` or `udp`"),
                    at(entry),
                );
                None
            }
        }
    }

    fn ip<T>(&mut self, entry: &Spanned<T>, text: &str) -> Option<IpAddr> {
        match text.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(format!("`{text}` is not an IP address"), at(entry));
                None
            }
        }
    }

    fn host_port<T>(&mut self, entry: &Spanned<T>, text: &str) -> Option<u16> {
        match text.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    format!("`{text}` is not a host port: use a number from 1 to 65535"),
                    at(entry),
                );
                None
            }
        }
    }
}

enum Target {
    Mount(Mount),
    Tmpfs(Tmpfs),
}

/// Compose's rule: a source that looks like a path is a bind mount, anything else a volume name.
fn is_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::runtime::{Bytes, Cpus};
    use crate::spec::{Environment, SpecError, parse};

    fn lookup(name: &str) -> Option<String> {
        (name == "HOME").then(|| "/home/tester".to_string())
    }

    fn service_runtime(source: &str) -> Runtime {
        let environment =
            parse(Path::new("/envs/stack.yaml"), source, &lookup).unwrap_or_else(|e| panic!("{e}"));
        environment.services["a"].runtime.clone()
    }

    fn errors(source: &str) -> String {
        let error: SpecError = parse(Path::new("/envs/stack.yaml"), source, &lookup)
            .map(|e: Environment| panic!("parsed: {e:?}"))
            .unwrap_err();
        error
            .diagnostics
            .iter()
            .map(|d| {
                let p = d.position.expect("located");
                format!("{}:{} {}\n", p.line, p.column, d.message)
            })
            .collect()
    }

    fn port(number: u16) -> Port {
        Port {
            number,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn ports_in_every_compose_form() {
        let runtime = service_runtime(
            "services:\n  a:\n    image: a\n    ports:\n      - 8080\n      - \"9090:80\"\n      \
             - 127.0.0.1:1521:1521\n      - \"[::1]::5500\"\n      - 53/udp\n      \
             - {target: 7000, published: 17000, host_ip: 127.0.0.1}\n      - {target: 7001}\n",
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            runtime.ports,
            [
                PortMapping::random(port(8080)),
                PortMapping {
                    container: port(80),
                    host_ip: None,
                    host_port: Some(9090)
                },
                PortMapping {
                    container: port(1521),
                    host_ip: Some(local),
                    host_port: Some(1521)
                },
                PortMapping {
                    container: port(5500),
                    host_ip: Some("::1".parse().unwrap()),
                    host_port: None
                },
                PortMapping::random(Port {
                    number: 53,
                    protocol: Protocol::Udp
                }),
                PortMapping {
                    container: port(7000),
                    host_ip: Some(local),
                    host_port: Some(17000)
                },
                PortMapping::random(port(7001)),
            ]
        );
    }

    #[test]
    fn a_host_port_published_twice_is_refused_where_the_second_is_written() {
        let found = errors(
            "services:\n  a:\n    image: a\n    ports: [\"8080:80\"]\n  b:\n    image: b\n    \
             ports: [\"127.0.0.1:8080:81\", \"127.0.0.1:8081:82\"]\n",
        );
        assert_eq!(found, "7:13 host port 8080 is published by `a` already\n");
    }

    #[test]
    fn volumes_short_and_long_binds_relative_to_the_file() {
        let runtime = service_runtime(
            "volumes: {data: {}}\nservices:\n  a:\n    image: a\n    volumes:\n      \
             - data:/var/lib/data\n      - ./init:/init:ro\n      - ../shared/x.sql:/x.sql\n      \
             - ~/cache:/cache\n      - {type: bind, source: /srv, target: /srv, read_only: true}\n      \
             - {type: volume, source: data, target: /more}\n      \
             - {type: tmpfs, target: /scratch, tmpfs: {size: 16m}}\n",
        );
        let mounts: Vec<String> = runtime.mounts.iter().map(ToString::to_string).collect();
        assert_eq!(
            mounts,
            [
                "data:/var/lib/data",
                "/envs/init:/init:ro",
                "/shared/x.sql:/x.sql",
                "/home/tester/cache:/cache",
                "/srv:/srv:ro",
                "data:/more",
            ]
        );
        assert_eq!(runtime.tmpfs[0].to_string(), "/scratch:size=16m");
    }

    #[test]
    fn undeclared_volumes_and_bad_mounts_are_located() {
        let found = errors(
            "volumes: {oradata: {}}\nservices:\n  a:\n    image: a\n    volumes:\n      \
             - oradta:/data\n      - /data\n      - ./x:relative\n      - ./y:/y:rx\n      \
             - {type: nfs, source: s, target: /t}\n      - data:/one:ro:extra\n",
        );
        assert_eq!(
            found,
            "6:9 volume `oradta` is not declared under the top-level `volumes:`\n\
             7:9 volume `/data` has no source\n\
             8:9 the volume target `relative` is not an absolute path inside the container\n\
             9:9 unknown volume mode `rx`: use `ro` or `rw`\n\
             10:16 unknown volume type `nfs`: use `volume`, `bind` or `tmpfs`\n\
             11:9 `data:/one:ro:extra` is not `SOURCE:TARGET[:ro]`\n"
        );
    }

    #[test]
    fn sizes_limits_and_the_rest_are_typed() {
        let runtime = service_runtime(
            "services:\n  a:\n    image: a\n    shm_size: 1g\n    mem_limit: 1536m\n    cpus: 0.5\n    \
             restart: no\n    entrypoint: /run.sh --fast\n    user: 1000:1000\n    \
             working_dir: /app\n    extra_hosts: {ldap: 10.0.0.5, gw: host-gateway}\n    \
             labels: [com.example.team=qa]\n    stop_grace_period: 1m30s\n    \
             tmpfs: /run:size=64m,mode=1777\n",
        );
        assert_eq!(runtime.shm_size, Some(Bytes(1 << 30)));
        assert_eq!(runtime.mem_limit, Some(Bytes(1536 << 20)));
        assert_eq!(runtime.cpus, Some(Cpus(500_000_000)));
        assert_eq!(runtime.restart, Some(Restart::No));
        assert_eq!(
            runtime.entrypoint,
            Some(vec!["/run.sh".to_string(), "--fast".to_string()])
        );
        assert_eq!(runtime.user.as_deref(), Some("1000:1000"));
        assert_eq!(runtime.working_dir.as_deref(), Some("/app"));
        assert_eq!(
            runtime.extra_hosts,
            [
                ExtraHost {
                    host: "ldap".into(),
                    address: HostAddress::Ip("10.0.0.5".parse().unwrap())
                },
                ExtraHost {
                    host: "gw".into(),
                    address: HostAddress::HostGateway
                },
            ]
        );
        assert_eq!(runtime.labels["com.example.team"], "qa");
        assert_eq!(runtime.stop_grace_period, Some(Duration::from_secs(90)));
        assert_eq!(
            runtime.tmpfs,
            [Tmpfs {
                target: "/run".into(),
                options: TmpfsOptions {
                    size: Some(Bytes(64 << 20)),
                    mode: Some(0o1777)
                }
            }]
        );
    }

    #[test]
    fn bad_values_of_the_compose_keys_are_each_located() {
        let found = errors(
            "services:\n  a:\n    image: a\n    shm_size: lots\n    mem_limit: 0\n    cpus: -1\n    \
             restart: sometimes\n    user: \"\"\n    working_dir: app\n    \
             extra_hosts: [\"ldap:10.0.0.300\", nohost]\n    labels: {io.envctl.id: x}\n    \
             stop_grace_period: soon\n    tmpfs: [\"/run:uid=0\"]\n",
        );
        assert_eq!(
            found,
            "4:15 invalid `shm_size`: `lots` is not a size: unknown unit `lots`\n\
             5:16 invalid `mem_limit`: `0` is not a size Docker accepts\n\
             6:11 `-1` CPUs is out of range: use a number from 0.001 to 1000\n\
             7:14 unknown restart policy `sometimes`: use `no`, `always`, `on-failure`, \
             `on-failure:N` or `unless-stopped`\n\
             8:11 `` is not a user: use `NAME`, `UID` or `UID:GID`\n\
             9:18 `working_dir` `app` is not an absolute path inside the container\n\
             10:19 `10.0.0.300` is not an IP address\n\
             10:38 `nohost` is not `HOST:ADDRESS`\n\
             11:14 label `io.envctl.id` uses envctl's own prefix `io.envctl.`\n\
             12:24 invalid duration `soon`: expected number at 0\n\
             13:13 unknown tmpfs option `uid=0`: use `size=` or `mode=`\n"
        );
    }

    #[test]
    fn env_files_are_read_relative_to_the_file_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("db.env"),
            "# oracle\nTZ=UTC\nexport NLS_LANG='AMERICAN'\nPASSWORD=from-file\n\n",
        )
        .unwrap();
        let path = dir.path().join("stack.yaml");
        let environment = parse(
            &path,
            "services:\n  a:\n    image: a\n    env_file: db.env\n    env: {PASSWORD: from-env}\n",
            &lookup,
        )
        .unwrap();
        assert_eq!(
            environment.services["a"].env,
            [
                ("NLS_LANG".to_string(), "AMERICAN".to_string()),
                ("PASSWORD".to_string(), "from-env".to_string()),
                ("TZ".to_string(), "UTC".to_string()),
            ]
        );
        let missing = parse(
            &path,
            "services:\n  a:\n    image: a\n    env_file: [db.env, nope.env]\n",
            &lookup,
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("cannot read env_file"), "{missing}");
        assert!(missing.contains("nope.env"), "{missing}");
        assert!(missing.contains("stack.yaml:4:24"), "{missing}");
    }
}
