//! The environment file as written: every key envctl knows, read leniently from the YAML tree.
//!
//! [`read`] walks the [`Node`] tree like a schema: an unknown key or a value of the wrong type
//! becomes a [`Diagnostic`] and is left out, and the reading goes on, so the checks that follow
//! still see everything else and every problem of a file is reported in one run.

use super::diagnostic::{Diagnostic, Position, did_you_mean};
use super::tree::{Key, Node, NodeKind, Scalar, ScalarType};

/// A value and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub at: Option<Position>,
}

/// A map as written: entries in file order.
pub type Entries<T> = Vec<(Spanned<String>, T)>;

#[derive(Debug)]
pub struct RawEnvironment {
    pub name: Option<Spanned<String>>,
    pub registry: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    /// `None` when the file has no `services` (reported already).
    pub services: Option<Spanned<Entries<RawService>>>,
    /// Named volumes, declared at the top as in compose.
    pub volumes: Entries<RawVolume>,
    /// `pool: {size: N, services: [...]}`: the warm pool (see `docs/pool.md`).
    pub pool: Option<Spanned<RawPool>>,
}

/// `pool:` as written.
#[derive(Debug, Default)]
pub struct RawPool {
    pub size: Option<Spanned<i64>>,
    pub services: Vec<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct RawVolume {
    pub labels: Entries<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct RawService {
    pub image: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub build: Option<Spanned<RawBuild>>,
    pub command: Option<Vec<Spanned<String>>>,
    pub env: Entries<Spanned<String>>,
    pub env_file: Vec<Spanned<String>>,
    pub ports: Vec<Spanned<RawPort>>,
    pub depends_on: Vec<Spanned<String>>,
    pub links: Vec<Spanned<String>>,
    pub ready: Option<Spanned<RawReady>>,
    pub volumes: Vec<Spanned<RawMount>>,
    pub tmpfs: Vec<Spanned<String>>,
    pub shm_size: Option<Spanned<String>>,
    pub mem_limit: Option<Spanned<String>>,
    pub cpus: Option<Spanned<String>>,
    pub restart: Option<Spanned<String>>,
    /// A list, or a string split at spaces.
    pub entrypoint: Option<Spanned<Vec<Spanned<String>>>>,
    pub user: Option<Spanned<String>>,
    pub working_dir: Option<Spanned<String>>,
    /// `host: address` pairs, from the map or the `HOST:ADDRESS` list form.
    pub extra_hosts: Vec<(Spanned<String>, Spanned<String>)>,
    pub labels: Entries<Spanned<String>>,
    pub stop_grace_period: Option<Spanned<String>>,
    pub pull: Option<Spanned<String>>,
}

#[derive(Debug)]
pub enum RawBuild {
    Context(String),
    Full {
        context: String,
        dockerfile: Option<String>,
    },
}

#[derive(Debug)]
pub enum RawPort {
    /// `8080`, `"8080/udp"`, `"127.0.0.1:1521:1521"`, `"8080:80"`.
    Short(String),
    /// `{target: 80, published: 8080, host_ip: 127.0.0.1, protocol: tcp}`.
    Long {
        target: Option<Spanned<String>>,
        published: Option<Spanned<String>>,
        host_ip: Option<Spanned<String>>,
        protocol: Option<Spanned<String>>,
    },
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few per service, read once
pub enum RawMount {
    /// `NAME:/path[:ro]`, `./dir:/path[:ro]`.
    Short(Spanned<String>),
    /// `{type: volume|bind|tmpfs, source, target, read_only, tmpfs: {size}}`.
    Long {
        kind: Option<Spanned<String>>,
        source: Option<Spanned<String>>,
        target: Option<Spanned<String>>,
        read_only: Option<Spanned<bool>>,
        size: Option<Spanned<String>>,
    },
}

#[derive(Debug, Default)]
pub struct RawReady {
    pub log: Option<Spanned<String>>,
    pub tcp: Option<Spanned<String>>,
    pub http: Option<Spanned<String>>,
    pub exec: Option<Spanned<Vec<Spanned<String>>>>,
    pub healthcheck: Option<Spanned<bool>>,
    pub exit: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
}

const TOP_KEYS: &[&str] = &["name", "registry", "gateway", "services", "volumes", "pool"];
const POOL_KEYS: &[&str] = &["size", "services"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "tag",
    "build",
    "command",
    "env",
    "env_file",
    "ports",
    "depends_on",
    "links",
    "ready",
    "volumes",
    "tmpfs",
    "shm_size",
    "mem_limit",
    "cpus",
    "restart",
    "entrypoint",
    "user",
    "working_dir",
    "extra_hosts",
    "labels",
    "stop_grace_period",
    "pull",
];
const READY_KEYS: &[&str] = &[
    "log",
    "tcp",
    "http",
    "exec",
    "healthcheck",
    "exit",
    "timeout",
];
const BUILD_KEYS: &[&str] = &["context", "dockerfile"];
const PORT_KEYS: &[&str] = &["target", "published", "host_ip", "protocol", "mode"];
const MOUNT_KEYS: &[&str] = &["type", "source", "target", "read_only", "tmpfs"];
const VOLUME_KEYS: &[&str] = &["labels"];

/// Reads the environment from its tree, adding a diagnostic for every key or value that does
/// not fit; whatever does fit is kept.
pub fn read(root: &Node, diagnostics: &mut Vec<Diagnostic>) -> RawEnvironment {
    let mut reader = Reader { diagnostics };
    reader.environment(root)
}

struct Reader<'a> {
    diagnostics: &'a mut Vec<Diagnostic>,
}

fn spanned<T>(value: T, at: Option<Position>) -> Spanned<T> {
    Spanned { value, at }
}

fn key(k: &Key) -> Spanned<String> {
    spanned(k.name.clone(), k.at)
}

impl Reader<'_> {
    fn wrong_type(&mut self, node: &Node, expected: &str) {
        self.diagnostics.push(Diagnostic::new(
            format!(
                "wrong type: expected {expected}, found {}",
                node.type_name()
            ),
            node.at,
        ));
    }

    /// The entries of a map whose keys are fixed: unknown ones are reported and left out.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        known: &[&str],
        what: &str,
    ) -> Vec<(&'n Key, &'n Node)> {
        let Some(entries) = self.entries(node, what) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(k, _)| {
                if known.contains(&k.name.as_str()) {
                    return true;
                }
                let hint = match did_you_mean(&k.name, known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("known keys here: {}", known.join(", ")),
                };
                self.diagnostics.push(
                    Diagnostic::new(format!("unknown key `{}`", k.name), k.at).with_hint(hint),
                );
                false
            })
            .map(|(k, v)| (k, v))
            .collect()
    }

    /// The entries of a map; `None` (reported) when the node is not one. Null is empty.
    fn entries<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        match &node.kind {
            NodeKind::Map(entries) => Some(entries),
            NodeKind::Null => Some(&[]),
            _ => {
                self.wrong_type(node, what);
                None
            }
        }
    }

    /// A scalar as written; numbers and booleans count (`tag: 1.10`, `user: 1000`).
    fn string(&mut self, node: &Node) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(s) => Some(spanned(s.text.clone(), node.at)),
            _ => {
                self.wrong_type(node, "a string");
                None
            }
        }
    }

    /// A list of scalars; a null is an empty list.
    fn strings(&mut self, node: &Node) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|i| self.string(i)).collect(),
            NodeKind::Null => Vec::new(),
            _ => {
                self.wrong_type(node, "a list");
                Vec::new()
            }
        }
    }

    /// A list of scalars, or one scalar standing for a list of one (compose allows both).
    fn one_or_many(&mut self, node: &Node) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(s) => vec![spanned(s.text.clone(), node.at)],
            _ => self.strings(node),
        }
    }

    fn bool(&mut self, node: &Node) -> Option<Spanned<bool>> {
        match &node.kind {
            NodeKind::Scalar(s) => match s.ty {
                ScalarType::Bool(b) => Some(spanned(b, node.at)),
                _ => {
                    self.wrong_type(node, "`true` or `false`");
                    None
                }
            },
            _ => {
                self.wrong_type(node, "`true` or `false`");
                None
            }
        }
    }

    fn int(&mut self, node: &Node) -> Option<Spanned<i64>> {
        match &node.kind {
            NodeKind::Scalar(Scalar {
                ty: ScalarType::Int(i),
                ..
            }) => Some(spanned(*i, node.at)),
            _ => {
                self.wrong_type(node, "a whole number");
                None
            }
        }
    }

    /// `{KEY: VALUE}` or compose's list form `["KEY=VALUE"]`.
    fn string_map(&mut self, node: &Node) -> Entries<Spanned<String>> {
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    let entry = self.string(item)?;
                    let (k, v) = entry.value.split_once('=').unwrap_or((&entry.value, ""));
                    Some((
                        spanned(k.to_string(), entry.at),
                        spanned(v.to_string(), entry.at),
                    ))
                })
                .collect(),
            _ => {
                let Some(entries) = self.entries(node, "a map or a list of `KEY=VALUE`") else {
                    return Vec::new();
                };
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let value = match &v.kind {
                            // `KEY:` with no value: compose's empty string.
                            NodeKind::Null => spanned(String::new(), v.at.or(k.at)),
                            _ => self.string(v)?,
                        };
                        Some((key(k), value))
                    })
                    .collect()
            }
        }
    }

    fn environment(&mut self, root: &Node) -> RawEnvironment {
        let mut environment = RawEnvironment {
            name: None,
            registry: None,
            gateway: None,
            services: None,
            volumes: Vec::new(),
            pool: None,
        };
        let fields = self.fields(root, TOP_KEYS, "a map of `services:` and other keys");
        if !matches!(root.kind, NodeKind::Map(_) | NodeKind::Null) {
            return environment;
        }
        for (k, value) in fields {
            match k.name.as_str() {
                "name" => environment.name = self.string(value),
                "registry" => environment.registry = self.string(value),
                "gateway" => environment.gateway = self.string(value),
                "services" => {
                    let Some(entries) = self.entries(value, "a map of services") else {
                        continue;
                    };
                    let services = entries
                        .iter()
                        .map(|(name, service)| (key(name), self.service(service)))
                        .collect();
                    environment.services = Some(spanned(services, value.at));
                }
                "volumes" => {
                    let Some(entries) = self.entries(value, "a map of volume names") else {
                        continue;
                    };
                    environment.volumes = entries
                        .iter()
                        .map(|(name, volume)| (key(name), self.volume(volume)))
                        .collect();
                }
                "pool" => environment.pool = Some(spanned(self.pool(value), value.at)),
                _ => unreachable!("only known keys pass"),
            }
        }
        if environment.services.is_none() {
            self.diagnostics.push(
                Diagnostic::new("the environment has no `services`", root.at)
                    .with_hint("an environment file needs at least `services:`"),
            );
        }
        environment
    }

    fn pool(&mut self, node: &Node) -> RawPool {
        let mut pool = RawPool::default();
        for (k, value) in self.fields(node, POOL_KEYS, "a map of `size` and `services`") {
            match k.name.as_str() {
                "size" => pool.size = self.int(value),
                "services" => pool.services = self.strings(value),
                _ => unreachable!("only known keys pass"),
            }
        }
        pool
    }

    fn volume(&mut self, node: &Node) -> RawVolume {
        let mut volume = RawVolume::default();
        for (k, value) in self.fields(node, VOLUME_KEYS, "a map") {
            if k.name == "labels" {
                volume.labels = self.string_map(value);
            }
        }
        volume
    }

    fn service(&mut self, node: &Node) -> RawService {
        let mut s = RawService::default();
        for (k, value) in self.fields(node, SERVICE_KEYS, "a map of service keys") {
            match k.name.as_str() {
                "image" => s.image = self.string(value),
                "tag" => s.tag = self.string(value),
                "build" => s.build = self.build(value),
                "command" => {
                    s.command = match &value.kind {
                        NodeKind::Seq(_) => Some(self.strings(value)),
                        _ => {
                            self.wrong_type(value, "a list of arguments");
                            None
                        }
                    }
                }
                "env" => s.env = self.string_map(value),
                "env_file" => s.env_file = self.one_or_many(value),
                "ports" => s.ports = self.ports(value),
                "depends_on" => s.depends_on = self.strings(value),
                "links" => s.links = self.strings(value),
                "ready" => s.ready = self.ready(value),
                "volumes" => s.volumes = self.mounts(value),
                "tmpfs" => s.tmpfs = self.one_or_many(value),
                "shm_size" => s.shm_size = self.string(value),
                "mem_limit" => s.mem_limit = self.string(value),
                "cpus" => s.cpus = self.string(value),
                "restart" => s.restart = self.string(value),
                "entrypoint" => s.entrypoint = self.entrypoint(value),
                "user" => s.user = self.string(value),
                "working_dir" => s.working_dir = self.string(value),
                "extra_hosts" => s.extra_hosts = self.extra_hosts(value),
                "labels" => s.labels = self.string_map(value),
                "stop_grace_period" => s.stop_grace_period = self.string(value),
                "pull" => s.pull = self.string(value),
                _ => unreachable!("only known keys pass"),
            }
        }
        if node.get("image").is_none() && matches!(node.kind, NodeKind::Map(_) | NodeKind::Null) {
            self.diagnostics.push(
                Diagnostic::new("the service has no `image`", node.at)
                    .with_hint("every service needs `image: REPOSITORY`, even with `build:`"),
            );
        }
        s
    }

    fn build(&mut self, node: &Node) -> Option<Spanned<RawBuild>> {
        if let NodeKind::Scalar(s) = &node.kind {
            return Some(spanned(RawBuild::Context(s.text.clone()), node.at));
        }
        let (mut context, mut dockerfile) = (None, None);
        for (k, value) in self.fields(node, BUILD_KEYS, "a directory, or `{context: DIR}`") {
            match k.name.as_str() {
                "context" => context = self.string(value),
                _ => dockerfile = self.string(value),
            }
        }
        match context {
            Some(context) => Some(spanned(
                RawBuild::Full {
                    context: context.value,
                    dockerfile: dockerfile.map(|d| d.value),
                },
                node.at,
            )),
            None => {
                if matches!(node.kind, NodeKind::Map(_)) {
                    self.diagnostics
                        .push(Diagnostic::new("`build` needs a `context`", node.at));
                }
                None
            }
        }
    }

    fn ports(&mut self, node: &Node) -> Vec<Spanned<RawPort>> {
        let NodeKind::Seq(items) = &node.kind else {
            if !matches!(node.kind, NodeKind::Null) {
                self.wrong_type(node, "a list of ports");
            }
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.kind {
                NodeKind::Scalar(s) => Some(spanned(RawPort::Short(s.text.clone()), item.at)),
                NodeKind::Map(_) => {
                    let mut long = (None, None, None, None);
                    for (k, value) in self.fields(item, PORT_KEYS, "a port") {
                        let text = self.string(value);
                        match k.name.as_str() {
                            "target" => long.0 = text,
                            "published" => long.1 = text,
                            "host_ip" => long.2 = text,
                            "protocol" => long.3 = text,
                            // Only host mode exists outside a swarm.
                            _ => {
                                if let Some(mode) = text.filter(|m| m.value != "host") {
                                    self.diagnostics.push(
                                        Diagnostic::new(
                                            format!(
                                                "port mode `{}` is not supported: envctl publishes \
                                                 ports in `host` mode",
                                                mode.value
                                            ),
                                            mode.at,
                                        )
                                        .with_hint("remove `mode`, or write `mode: host`"),
                                    );
                                }
                            }
                        }
                    }
                    if long.0.is_none() {
                        self.diagnostics.push(
                            Diagnostic::new("the port has no `target`", item.at)
                                .with_hint("`target` is the container port"),
                        );
                        return None;
                    }
                    Some(spanned(
                        RawPort::Long {
                            target: long.0,
                            published: long.1,
                            host_ip: long.2,
                            protocol: long.3,
                        },
                        item.at,
                    ))
                }
                _ => {
                    self.wrong_type(item, "a port");
                    None
                }
            })
            .collect()
    }

    fn mounts(&mut self, node: &Node) -> Vec<Spanned<RawMount>> {
        let NodeKind::Seq(items) = &node.kind else {
            if !matches!(node.kind, NodeKind::Null) {
                self.wrong_type(node, "a list of volumes");
            }
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.kind {
                NodeKind::Scalar(s) => Some(spanned(
                    RawMount::Short(spanned(s.text.clone(), item.at)),
                    item.at,
                )),
                NodeKind::Map(_) => {
                    let (mut kind, mut source, mut target, mut read_only, mut size) =
                        (None, None, None, None, None);
                    for (k, value) in self.fields(item, MOUNT_KEYS, "a volume") {
                        match k.name.as_str() {
                            "type" => kind = self.string(value),
                            "source" => source = self.string(value),
                            "target" => target = self.string(value),
                            "read_only" => read_only = self.bool(value),
                            _ => {
                                for (k, value) in self.fields(value, &["size"], "a map") {
                                    if k.name == "size" {
                                        size = self.string(value);
                                    }
                                }
                            }
                        }
                    }
                    Some(spanned(
                        RawMount::Long {
                            kind,
                            source,
                            target,
                            read_only,
                            size,
                        },
                        item.at,
                    ))
                }
                _ => {
                    self.wrong_type(item, "a volume");
                    None
                }
            })
            .collect()
    }

    fn entrypoint(&mut self, node: &Node) -> Option<Spanned<Vec<Spanned<String>>>> {
        match &node.kind {
            // Compose splits a string entrypoint like a shell; envctl splits at spaces only,
            // and leaves quoting to the list form.
            NodeKind::Scalar(s) => {
                if s.text.contains(['"', '\'', '\\']) {
                    self.diagnostics.push(
                        Diagnostic::new("quotes in a string `entrypoint` are not split", node.at)
                            .with_hint(
                                "write it as a list: `entrypoint: [\"/bin/sh\", \"-c\", \"...\"]`",
                            ),
                    );
                    return None;
                }
                let words = s
                    .text
                    .split_whitespace()
                    .map(|w| spanned(w.to_string(), node.at))
                    .collect();
                Some(spanned(words, node.at))
            }
            NodeKind::Seq(_) => Some(spanned(self.strings(node), node.at)),
            _ => {
                self.wrong_type(node, "a list of arguments, or a string");
                None
            }
        }
    }

    fn extra_hosts(&mut self, node: &Node) -> Vec<(Spanned<String>, Spanned<String>)> {
        match &node.kind {
            NodeKind::Seq(_) => self
                .strings(node)
                .into_iter()
                .filter_map(|entry| {
                    // `host:address` or `host=address`; an IPv6 address has colons of its own.
                    let split = entry
                        .value
                        .split_once('=')
                        .or_else(|| entry.value.split_once(':'));
                    match split {
                        Some((host, address)) => Some((
                            spanned(host.to_string(), entry.at),
                            spanned(address.to_string(), entry.at),
                        )),
                        None => {
                            self.diagnostics.push(
                                Diagnostic::new(
                                    format!("`{}` is not `HOST:ADDRESS`", entry.value),
                                    entry.at,
                                )
                                .with_hint("like `ldap.example.com:10.0.0.5`"),
                            );
                            None
                        }
                    }
                })
                .collect(),
            _ => self.string_map(node),
        }
    }

    fn ready(&mut self, node: &Node) -> Option<Spanned<RawReady>> {
        let mut ready = RawReady::default();
        if !matches!(node.kind, NodeKind::Map(_) | NodeKind::Null) {
            self.wrong_type(node, "a map of readiness conditions");
            return None;
        }
        for (k, value) in self.fields(node, READY_KEYS, "a map") {
            match k.name.as_str() {
                "log" => ready.log = self.string(value),
                "tcp" => ready.tcp = self.string(value),
                "http" => ready.http = self.string(value),
                "exec" => {
                    ready.exec = match &value.kind {
                        NodeKind::Seq(_) => Some(spanned(self.strings(value), value.at)),
                        _ => {
                            self.wrong_type(value, "a list of arguments");
                            None
                        }
                    }
                }
                "healthcheck" => ready.healthcheck = self.bool(value),
                "exit" => ready.exit = self.int(value),
                "timeout" => ready.timeout = self.string(value),
                _ => unreachable!("only known keys pass"),
            }
        }
        Some(spanned(ready, node.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tree;

    fn problems(source: &str) -> Vec<String> {
        let root = tree::parse(source, 0).expect("valid YAML");
        let mut diagnostics = Vec::new();
        read(&root, &mut diagnostics);
        diagnostics
            .iter()
            .map(|d| {
                let p = d.position.expect("located");
                format!("{}:{}: {}", p.line, p.column, d.message)
            })
            .collect()
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_not_only_the_first() {
        let mut found = problems(
            "services:\n  a:\n    image: [a]\n    depend_on: [b]\n    ports: 8080\n    \
             ready: {tpc: 1, exit: x}\n    shm_sise: 1g\n",
        );
        found.sort_by_key(|f| f.split(' ').next().map(str::to_string));
        assert_eq!(
            found,
            [
                "3:12: wrong type: expected a string, found a list",
                "4:5: unknown key `depend_on`",
                "5:12: wrong type: expected a list of ports, found a number",
                "6:13: unknown key `tpc`",
                "6:27: wrong type: expected a whole number, found a string",
                "7:5: unknown key `shm_sise`",
            ]
        );
    }

    #[test]
    fn compose_list_forms_read_as_maps() {
        let root = tree::parse(
            "services:\n  a:\n    image: a\n    env: [A=1, B]\n    labels: [x=y]\n    \
             extra_hosts: [\"db:10.0.0.1\", \"v6:::1\"]\n",
            0,
        )
        .unwrap();
        let mut diagnostics = Vec::new();
        let raw = read(&root, &mut diagnostics);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let a = &raw.services.unwrap().value[0].1;
        let pairs = |e: &Entries<Spanned<String>>| {
            e.iter()
                .map(|(k, v)| format!("{}={}", k.value, v.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&a.env), ["A=1", "B="]);
        assert_eq!(pairs(&a.labels), ["x=y"]);
        let hosts: Vec<_> = a
            .extra_hosts
            .iter()
            .map(|(h, ip)| format!("{} {}", h.value, ip.value))
            .collect();
        assert_eq!(hosts, ["db 10.0.0.1", "v6 ::1"]);
    }
}
