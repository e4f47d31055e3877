//! From raw YAML to a checked [`Environment`], collecting every problem of a file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde_saphyr::budget::{Budget, BudgetBreach};

use super::diagnostic::{Diagnostic, Position, Source, SpecError, did_you_mean};
use super::interpolate::{InterpolationError, interpolate};
use super::raw::{self, RawBuild, RawEnvironment, RawPool, RawReady, RawService, Spanned};
use super::runtime::Volume;
use super::tree;
use super::{
    Build, DEFAULT_READY_TIMEOUT, Environment, GatewayEntry, Link, Pool, Probe, Protocol,
    PullPolicy, Ready, Service,
};
use crate::graph;
use crate::naming;
use crate::naming::image::{self, ImageRef};

/// Longer than any service should take to become ready; also keeps deadlines computable.
/// More members than this is a typo: each is a copy of the pooled services, running.
const MAX_POOL_SIZE: u32 = 100;
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn parse(
    path: &Path,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, SpecError> {
    let source = Source {
        path: path.to_path_buf(),
        text: source.to_string(),
    };
    parse_files(vec![source], lookup)
}

/// Parses several files as one environment, each later one overriding the earlier ones the
/// way docker-compose merges override files.
pub fn parse_files(
    sources: Vec<Source>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, SpecError> {
    let mut trees = Vec::new();
    let mut diagnostics = Vec::new();
    for (file, source) in sources.iter().enumerate() {
        match parse_yaml(&source.text, file) {
            Ok(tree) => trees.push(tree),
            Err(diagnostic) => diagnostics.push(diagnostic.in_file(file)),
        }
    }
    if !diagnostics.is_empty() {
        return Err(SpecError::of(sources, diagnostics));
    }
    let root = trees
        .into_iter()
        .reduce(|base, over| tree::merge(base, over, &mut Vec::new()))
        .expect("at least one file");
    let raw = raw::read(&root, &mut diagnostics);
    let mut checker = Checker {
        sources: &sources,
        lookup,
        diagnostics,
        aliases: BTreeMap::new(),
        host_ports: BTreeMap::new(),
        service: String::new(),
    };
    let environment = checker.environment(&sources[0].path, raw);
    if checker.diagnostics.is_empty() {
        Ok(environment)
    } else {
        let diagnostics = checker.diagnostics;
        Err(SpecError::of(sources, diagnostics))
    }
}

fn parse_yaml(source: &str, file: usize) -> Result<tree::Node, Diagnostic> {
    let is_blank = source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if is_blank {
        return Err(Diagnostic::new("the environment file is empty", None)
            .with_hint("an environment file needs at least `services:`"));
    }
    tree::parse(source, file).map_err(|error| {
        let position = error
            .location()
            .and_then(Position::from_location)
            .map(|p| Position { file, ..p });
        let (message, hint) = match budget_breach(&error) {
            Some(breach) => explain_breach(breach),
            None => explain(strip_location(&error.without_snippet().to_string())),
        };
        let diagnostic = Diagnostic::new(message, position);
        match hint {
            Some(hint) => diagnostic.with_hint(hint),
            None => diagnostic,
        }
    })
}

/// The parser limit a file hit, if that is what stopped the parser.
fn budget_breach(mut error: &serde_saphyr::Error) -> Option<&BudgetBreach> {
    loop {
        match error {
            serde_saphyr::Error::WithSnippet { error: inner, .. }
            | serde_saphyr::Error::AliasError { error: inner, .. } => error = inner,
            serde_saphyr::Error::Budget { breach, .. } => return Some(breach),
            _ => return None,
        }
    }
}

/// Which of the parser's limits a file hit, in envctl's words rather than the parser's
/// (`budget breached: Nodes { nodes: 250001 }`). The limits are serde-saphyr's defaults.
fn explain_breach(breach: &BudgetBreach) -> (String, Option<String>) {
    let limits = Budget::default();
    let message = match breach {
        BudgetBreach::Nodes { .. } => format!(
            "the file has more than {} YAML values (scalars, lists and maps)",
            limits.max_nodes
        ),
        BudgetBreach::Events { .. } => format!(
            "the file has more than {} YAML parser events",
            limits.max_events
        ),
        BudgetBreach::Depth { .. } => {
            format!("the file nests more than {} levels deep", limits.max_depth)
        }
        BudgetBreach::Documents { .. } => format!(
            "the file holds more than {} YAML documents",
            limits.max_documents
        ),
        BudgetBreach::Aliases { .. } => format!(
            "the file uses more than {} aliases (`*name`)",
            limits.max_aliases
        ),
        BudgetBreach::Anchors { .. } => format!(
            "the file defines more than {} anchors (`&name`)",
            limits.max_anchors
        ),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "the file uses {aliases} aliases of {anchors} anchor{}; envctl allows at most {} \
             per anchor, as alias bombs use more",
            if *anchors == 1 { "" } else { "s" },
            limits.alias_anchor_ratio_multiplier
        ),
        BudgetBreach::RecordedAnchorEvents { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            "the file's aliases expand to more than the parser keeps".into()
        }
        BudgetBreach::ScalarBytes { .. } => format!(
            "the file's text values add up to more than {} MiB",
            limits.max_total_scalar_bytes / (1024 * 1024)
        ),
        BudgetBreach::MergeKeys { .. } => format!(
            "the file uses more than {} merge keys (`<<`)",
            limits.max_merge_keys
        ),
        _ => "the file exceeds a limit of the YAML parser".into(),
    };
    let hint = "environment files stay far below this limit; it keeps a wrong or hostile file \
                from exhausting memory";
    (message, Some(hint.into()))
}

/// serde-saphyr appends the position to its messages; envctl prints it as `-->` instead.
fn strip_location(message: &str) -> String {
    let message = message.trim();
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    let message = message.trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Rewords serde's messages the way envctl speaks, with a hint where one helps.
fn explain(message: String) -> (String, Option<String>) {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return (
            format!("duplicate key `{key}`"),
            Some("each key, and so each service, may appear only once".into()),
        );
    }
    if message.contains("from_str_multiple") {
        return (
            "the file holds several YAML documents; an environment file holds one".into(),
            Some("remove the `---` separators, or split the file".into()),
        );
    }
    if let Some(what) = message.strip_prefix("expected ") {
        return (
            format!("wrong type: expected {}", what.replace(" scalar", "")),
            None,
        );
    }
    (message, None)
}

pub(super) struct Checker<'a> {
    sources: &'a [Source],
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Link aliases seen so far, and the service each names.
    aliases: BTreeMap<String, String>,
    /// Fixed host ports seen so far: the address and the service publishing each.
    pub(super) host_ports: BTreeMap<(u16, Protocol), (Option<IpAddr>, String)>,
    /// The service being checked.
    pub(super) service: String,
}

pub(super) fn at<T>(value: &Spanned<T>) -> Option<Position> {
    value.at
}

impl Checker<'_> {
    pub(super) fn error(&mut self, message: impl Into<String>, position: Option<Position>) {
        self.diagnostics.push(Diagnostic::new(message, position));
    }

    fn environment(&mut self, path: &Path, raw: RawEnvironment) -> Environment {
        let name = match raw.name {
            Some(name) => {
                if !naming::is_valid_docker_name(&name.value) {
                    self.error(
                        format!("environment name `{}` is not a valid name", name.value),
                        at(&name),
                    );
                }
                name.value
            }
            // Standard input has no stem to name it after.
            None if path == Path::new(super::STDIN_PATH) => "stdin".to_string(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let registry = raw.registry.and_then(|registry| {
            let value = self.interpolate(&registry)?;
            if let Err(message) = image::check_registry(&value) {
                self.error(message, at(&registry));
            }
            Some(value)
        });
        let volumes = self.volumes(raw.volumes);
        let raw_services = match raw.services {
            Some(services) => {
                if services.value.is_empty() {
                    self.error("the environment has no services", at(&services));
                }
                services.value
            }
            None => Vec::new(),
        };
        let mut raw_services = raw_services;
        raw_services.sort_by(|a, b| a.0.value.cmp(&b.0.value));
        let names: BTreeSet<String> = raw_services.iter().map(|(n, _)| n.value.clone()).collect();

        let mut edge_positions = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut variable_names: BTreeMap<String, String> = BTreeMap::new();
        for (name, raw) in raw_services {
            // `run` names variables after services: two names must not become one.
            let variable = naming::port_variable(&name.value, 0);
            if let Some(other) = variable_names.insert(variable, name.value.clone()) {
                self.error(
                    format!(
                        "services `{other}` and `{}` would share the variables of `envctl run` \
                         (`{}`)",
                        name.value,
                        naming::port_variable(&name.value, 0).trim_end_matches("_0")
                    ),
                    at(&name),
                );
            }
            if name.value.starts_with("envctl") {
                self.error(
                    format!(
                        "service name `{}` is reserved: names starting with `envctl` are envctl's \
                         own containers",
                        name.value
                    ),
                    at(&name),
                );
            } else if !naming::is_valid_docker_name(&name.value) {
                self.error(
                    format!(
                        "service name `{}` must start with a letter or digit and contain only \
                         letters, digits, `_`, `.` and `-`",
                        name.value
                    ),
                    at(&name),
                );
            }
            let service = self.service(
                &name,
                raw,
                registry.as_deref(),
                &names,
                &volumes,
                &mut edge_positions,
            );
            services.insert(name.value, service);
        }
        self.cycles(&services, &edge_positions);
        let gateway = raw
            .gateway
            .and_then(|entry| self.gateway(&entry, &services));
        let pool = raw.pool.and_then(|pool| self.pool(pool, &services));
        Environment {
            name,
            path: path.to_path_buf(),
            services,
            gateway,
            volumes,
            pool,
        }
    }

    /// The top-level `pool: {size: N, services: [...]}`: known services, closed under their
    /// dependencies, none on a fixed host port (a member would hold it and block every cold
    /// start). `size: 0`, or no services, is no pool.
    fn pool(
        &mut self,
        raw: Spanned<RawPool>,
        services: &BTreeMap<String, Service>,
    ) -> Option<Pool> {
        let size = match &raw.value.size {
            Some(size) => match u32::try_from(size.value) {
                Ok(n) if n <= MAX_POOL_SIZE => n,
                _ => {
                    self.diagnostics.push(
                        Diagnostic::new(
                            format!(
                                "`pool.size` must be between 0 and {MAX_POOL_SIZE}, not {}",
                                size.value
                            ),
                            at(size),
                        )
                        .with_hint("the number of ready copies of the pooled services to keep"),
                    );
                    return None;
                }
            },
            None => {
                self.diagnostics.push(
                    Diagnostic::new("`pool` has no `size`", at(&raw))
                        .with_hint("for example `pool: {size: 2, services: [oracle-xe]}`"),
                );
                return None;
            }
        };
        if raw.value.services.is_empty() {
            self.diagnostics.push(
                Diagnostic::new("`pool` has no `services`", at(&raw))
                    .with_hint("list the services every copy shares, e.g. `services: [oracle-xe]`"),
            );
            return None;
        }
        let pooled: BTreeSet<String> = raw.value.services.iter().map(|s| s.value.clone()).collect();
        let before = self.diagnostics.len();
        for entry in &raw.value.services {
            let Some(service) = services.get(&entry.value) else {
                let hint = did_you_mean(&entry.value, services.keys().map(String::as_str))
                    .map_or_else(
                        || "`pool.services` lists services of this file".to_string(),
                        |s| format!("did you mean `{s}`?"),
                    );
                self.diagnostics.push(
                    Diagnostic::new(
                        format!("`pool` names unknown service `{}`", entry.value),
                        at(entry),
                    )
                    .with_hint(hint),
                );
                continue;
            };
            for dependency in service.depends_on.iter().filter(|d| !pooled.contains(*d)) {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!(
                            "pooled service `{}` depends on `{dependency}`, which is not pooled",
                            entry.value
                        ),
                        at(entry),
                    )
                    .with_hint(format!(
                        "add `{dependency}` to `pool.services`: a member starts its pooled services alone"
                    )),
                );
            }
            if let Some(fixed) = service.runtime.ports.iter().find(|p| p.host_port.is_some()) {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!(
                            "pooled service `{}` publishes {} on fixed host port {}",
                            entry.value,
                            fixed.container,
                            fixed.host_port.unwrap_or_default()
                        ),
                        at(entry),
                    )
                    .with_hint(format!(
                        "publish it on a random host port (`ports: [{}]`), or leave `{}` out of the pool: a waiting member would hold the port and block every start",
                        fixed.container.number, entry.value
                    )),
                );
            }
        }
        (self.diagnostics.len() == before && size > 0).then_some(Pool {
            size,
            services: pooled,
        })
    }

    /// The top-level `gateway: SERVICE:PORT`: a published TCP port of a declared service.
    fn gateway(
        &mut self,
        entry: &Spanned<String>,
        services: &BTreeMap<String, Service>,
    ) -> Option<GatewayEntry> {
        let mut refuse = |message: String, hint: Option<String>| {
            let diagnostic = Diagnostic::new(message, at(entry));
            self.diagnostics.push(match hint {
                Some(hint) => diagnostic.with_hint(hint),
                None => diagnostic,
            });
            None
        };
        let Some(parsed) = GatewayEntry::parse(&entry.value) else {
            return refuse(
                format!("`gateway` must be `SERVICE:PORT`, not `{}`", entry.value),
                Some("for example `gateway: proxy:8080`".into()),
            );
        };
        let Some(service) = services.get(&parsed.service) else {
            let hint = did_you_mean(&parsed.service, services.keys().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            return refuse(
                format!("`gateway` names unknown service `{}`", parsed.service),
                hint,
            );
        };
        let published = service
            .ports()
            .any(|p| p.number == parsed.port && p.protocol == Protocol::Tcp);
        if !published {
            return refuse(
                format!(
                    "`gateway` port {} is not a published TCP port of `{}`",
                    parsed.port, parsed.service
                ),
                Some(format!("add {} to its `ports`", parsed.port)),
            );
        }
        Some(parsed)
    }

    fn service(
        &mut self,
        service_name: &Spanned<String>,
        raw: RawService,
        registry: Option<&str>,
        names: &BTreeSet<String>,
        volumes: &BTreeMap<String, Volume>,
        edges: &mut BTreeMap<(String, String), Position>,
    ) -> Service {
        let name = service_name.value.as_str();
        self.service = name.to_string();
        let image = self.image(service_name, &raw, registry);
        let build = raw.build.as_ref().map(|build| {
            let position = at(build);
            let build = build_of(&self.file_dir(position), &build.value);
            let context = build.context.to_string_lossy();
            self.reject_nul(|| "the `build` context".into(), &context, position);
            self.reject_nul(
                || "the `build` dockerfile".into(),
                &build.dockerfile,
                position,
            );
            build
        });
        let command = raw.command.as_ref().map(|args| {
            let mut command = Vec::new();
            for (i, arg) in args.iter().enumerate() {
                let Some(value) = self.interpolate(arg) else {
                    continue;
                };
                self.reject_nul(
                    || format!("argument {} of `command`", i + 1),
                    &value,
                    at(arg),
                );
                command.push(value);
            }
            command
        });
        let env = self.env(&raw);

        let mut depends_on = BTreeSet::new();
        for dependency in &raw.depends_on {
            if self.dependency(name, dependency, &dependency.value, names) {
                depends_on.insert(dependency.value.clone());
                if let Some(position) = at(dependency) {
                    edges.insert((name.to_string(), dependency.value.clone()), position);
                }
            }
        }
        let mut links = Vec::new();
        for link in &raw.links {
            let (target, alias) = match link.value.split_once(':') {
                Some((target, alias)) => (target, alias),
                None => (link.value.as_str(), link.value.as_str()),
            };
            if !is_valid_alias(alias) {
                self.error(
                    format!("link alias `{alias}` is not a valid host name"),
                    at(link),
                );
                continue;
            }
            if !self.alias_is_free(alias, target, names, at(link)) {
                continue;
            }
            if self.dependency(name, link, target, names) {
                depends_on.insert(target.to_string());
                if let Some(position) = at(link) {
                    edges
                        .entry((name.to_string(), target.to_string()))
                        .or_insert(position);
                }
                links.push(Link {
                    service: target.to_string(),
                    alias: alias.to_string(),
                });
            }
        }
        let ready = self.ready(raw.ready.as_ref());
        let runtime = self.runtime(&raw, volumes);
        let pull = self.pull(raw.pull.as_ref());
        Service {
            name: name.to_string(),
            image,
            build,
            command,
            env,
            depends_on,
            links,
            ready,
            runtime,
            pull,
        }
    }

    /// The service's variables: its `env_file`s in order, then `env`, each later one winning.
    fn env(&mut self, raw: &RawService) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for file in &raw.env_file {
            let Some(path) = self.interpolate(file) else {
                continue;
            };
            let path = self.dir_of(at(file)).join(path);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (line, entry) in text.lines().enumerate() {
                        match env_file_line(entry) {
                            Ok(Some((key, value))) => {
                                env.insert(key, value);
                            }
                            Ok(None) => {}
                            Err(message) => self.error(
                                format!("{}:{}: {message}", path.display(), line + 1),
                                at(file),
                            ),
                        }
                    }
                }
                Err(error) => self.error(
                    format!("cannot read env_file `{}`: {error}", path.display()),
                    at(file),
                ),
            }
        }
        for (key, value) in &raw.env {
            if key.value.is_empty() || key.value.contains(['=', '\0']) {
                self.error(
                    format!("`{}` is not an environment variable name", key.value),
                    at(key),
                );
                continue;
            }
            let Some(text) = self.interpolate(value) else {
                continue;
            };
            // The message never shows the value: it may be a password.
            self.reject_nul(|| format!("the value of `{}`", key.value), &text, at(value));
            env.insert(key.value.clone(), text);
        }
        env.into_iter().collect()
    }

    /// The directory of the file that declares a value, as named (`.` for standard input).
    fn file_dir(&self, position: Option<Position>) -> PathBuf {
        let file = position.map_or(0, |p| p.file);
        let path = &self.sources[file].path;
        match path.parent() {
            _ if path == Path::new(super::STDIN_PATH) => PathBuf::from("."),
            Some(dir) => dir.to_path_buf(),
            None => PathBuf::from("."),
        }
    }

    /// The directory relative paths of a value are resolved against, absolute: that of the
    /// file that declares it (the current directory for standard input).
    pub(super) fn dir_of(&self, position: Option<Position>) -> PathBuf {
        let dir = self.file_dir(position);
        if dir.is_absolute() {
            return dir.to_path_buf();
        }
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(dir),
            Err(_) => dir.to_path_buf(),
        }
    }

    fn pull(&mut self, raw: Option<&Spanned<String>>) -> PullPolicy {
        let Some(raw) = raw else {
            return PullPolicy::default();
        };
        PullPolicy::parse(&raw.value).unwrap_or_else(|| {
            let hint = match did_you_mean(&raw.value, PullPolicy::NAMES) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("`pull` is one of {}", PullPolicy::NAMES.join(", ")),
            };
            self.diagnostics.push(
                Diagnostic::new(format!("unknown pull policy `{}`", raw.value), at(raw))
                    .with_hint(hint),
            );
            PullPolicy::default()
        })
    }

    /// Aliases live on the environment's shared network, so one alias names one service.
    fn alias_is_free(
        &mut self,
        alias: &str,
        target: &str,
        names: &BTreeSet<String>,
        position: Option<Position>,
    ) -> bool {
        let owner = if names.contains(alias) {
            Some(alias.to_string())
        } else {
            self.aliases.get(alias).cloned()
        };
        match owner {
            Some(owner) if owner != target => {
                self.error(
                    format!(
                        "link alias `{alias}` for `{target}` already names service `{owner}` on \
                         the environment's network"
                    ),
                    position,
                );
                false
            }
            _ => {
                self.aliases.insert(alias.to_string(), target.to_string());
                true
            }
        }
    }

    fn image(
        &mut self,
        service: &Spanned<String>,
        raw: &RawService,
        registry: Option<&str>,
    ) -> ImageRef {
        // A missing image is reported already; the name stands in for it.
        let written = raw.image.clone().unwrap_or_else(|| service.clone());
        let split = raw.image.as_ref().and_then(|image| {
            let value = self.interpolate(image)?;
            image::split_image(&value)
                .map_err(|message| self.error(message, at(image)))
                .ok()
        });
        let (repository, inline_tag) = split.unwrap_or_else(|| (written.value.clone(), None));
        let tag = match (&raw.tag, inline_tag) {
            (Some(tag), Some(_)) => {
                self.error("the tag is given twice: in `image` and in `tag`", at(tag));
                None
            }
            (Some(tag), None) => {
                self.interpolate(tag)
                    .and_then(|value| match image::check_tag(&value) {
                        Ok(()) => Some(value),
                        Err(message) => {
                            self.error(message, at(tag));
                            None
                        }
                    })
            }
            (None, inline) => inline,
        };
        let repository = match registry {
            Some(registry) if !image::has_registry(&repository) => {
                format!("{registry}/{repository}")
            }
            _ => repository,
        };
        ImageRef {
            repository,
            tag: tag.unwrap_or_else(|| "latest".into()),
        }
    }

    fn dependency<T>(
        &mut self,
        service: &str,
        entry: &Spanned<T>,
        target: &str,
        names: &BTreeSet<String>,
    ) -> bool {
        if names.contains(target) {
            return true;
        }
        let diagnostic = Diagnostic::new(
            format!("service `{service}` depends on unknown service `{target}`"),
            at(entry),
        );
        let candidates = names.iter().map(String::as_str).filter(|n| *n != service);
        self.diagnostics
            .push(match did_you_mean(target, candidates) {
                Some(best) => diagnostic.with_hint(format!("did you mean `{best}`?")),
                None => diagnostic,
            });
        false
    }

    pub(super) fn port_number<T>(&mut self, entry: &Spanned<T>, text: &str) -> Option<u16> {
        match text.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    format!("`{text}` is not a port: use a number from 1 to 65535"),
                    at(entry),
                );
                None
            }
        }
    }

    fn ready(&mut self, raw: Option<&Spanned<RawReady>>) -> Ready {
        let mut ready = Ready {
            probes: Vec::new(),
            timeout: DEFAULT_READY_TIMEOUT,
        };
        let Some(raw) = raw else { return ready };
        let raw_ready = &raw.value;
        if let Some(log) = &raw_ready.log {
            match Regex::new(&log.value) {
                Ok(regex) => ready.probes.push(Probe::Log(regex)),
                Err(error) => self.error(
                    format!("invalid `log` pattern: {}", last_line(&error.to_string())),
                    at(log),
                ),
            }
        }
        if let Some(tcp) = &raw_ready.tcp
            && let Some(port) = self.port_number(tcp, &tcp.value)
        {
            ready.probes.push(Probe::Tcp(port));
        }
        if let Some(http) = &raw_ready.http {
            let text = &http.value;
            let (port, path) = match text.find('/') {
                Some(slash) => (&text[..slash], &text[slash..]),
                None => (text.as_str(), "/"),
            };
            if let Some(port) = self.port_number(http, port) {
                ready.probes.push(Probe::Http {
                    port,
                    path: path.to_string(),
                });
            }
        }
        if let Some(exec) = &raw_ready.exec {
            for (i, arg) in exec.value.iter().enumerate() {
                self.reject_nul(
                    || format!("argument {} of `exec`", i + 1),
                    &arg.value,
                    at(arg),
                );
            }
            if exec.value.is_empty() {
                self.error("`exec` needs a command", at(exec));
            } else {
                let command = exec.value.iter().map(|a| a.value.clone()).collect();
                ready.probes.push(Probe::Exec(command));
            }
        }
        if raw_ready.healthcheck.as_ref().is_some_and(|h| h.value) {
            ready.probes.push(Probe::Healthcheck);
        }
        if let Some(exit) = &raw_ready.exit {
            if !(0..=255).contains(&exit.value) {
                self.error(
                    format!("exit code {} is out of range 0..=255", exit.value),
                    at(exit),
                );
            }
            let others: Vec<String> = ready
                .probes
                .iter()
                .map(|p| format!("`{}`", probe_key(p)))
                .collect();
            if !others.is_empty() {
                self.diagnostics.push(
                    Diagnostic::new(
                        format!(
                            "`exit` contradicts {}: a one-shot job is ready when it has exited, \
                             so it cannot also be probed while running",
                            others.join(", ")
                        ),
                        at(exit),
                    )
                    .with_hint("keep `exit` for a job, or drop it for a long-running service"),
                );
            }
            ready.probes.push(Probe::Exit(exit.value));
        }
        if let Some(timeout) = &raw_ready.timeout {
            match humantime::parse_duration(&timeout.value) {
                Ok(d) if d > MAX_TIMEOUT => self.error(
                    format!("the `timeout` {} is longer than a week", timeout.value),
                    at(timeout),
                ),
                Ok(d) if d > Duration::ZERO => ready.timeout = d,
                Ok(_) => self.error("the `timeout` must be longer than zero", at(timeout)),
                Err(error) => self.diagnostics.push(
                    Diagnostic::new(
                        format!("invalid duration `{}`: {error}", timeout.value),
                        at(timeout),
                    )
                    .with_hint("write durations like `90s`, `5m` or `1h 30m`"),
                ),
            }
        }
        ready
    }

    fn cycles(
        &mut self,
        services: &BTreeMap<String, Service>,
        edges: &BTreeMap<(String, String), Position>,
    ) {
        let dependencies = services
            .iter()
            .map(|(name, service)| (name.as_str(), service.depends_on.iter().map(String::as_str)));
        for cycle in graph::find_cycles(dependencies) {
            let closing = (
                cycle[cycle.len() - 2].clone(),
                cycle[cycle.len() - 1].clone(),
            );
            self.error(
                format!("dependency cycle: `{}`", cycle.join(" -> ")),
                edges.get(&closing).copied(),
            );
        }
    }

    /// Docker hands these strings to the kernel as C strings, so a NUL in one would pass
    /// `plan` and fail only when the container starts.
    pub(super) fn reject_nul(
        &mut self,
        what: impl FnOnce() -> String,
        value: &str,
        position: Option<Position>,
    ) {
        if value.contains('\0') {
            self.error(
                format!(
                    "{} contains a NUL character, which Docker cannot pass to a container",
                    what()
                ),
                position,
            );
        }
    }

    /// Interpolates `${VAR}`s in a value, reporting unset variables at their position.
    pub(super) fn interpolate(&mut self, value: &Spanned<String>) -> Option<String> {
        match interpolate(&value.value, self.lookup) {
            Ok(result) => Some(result),
            Err(error) => {
                let (message, offset) = match error {
                    InterpolationError::Unset { variable, offset } => (
                        format!("environment variable `{variable}` is not set and has no default"),
                        offset,
                    ),
                    InterpolationError::Malformed { offset } => (
                        "malformed variable reference: use `${VAR}` or `${VAR:-default}`, and \
                         `$$` for a literal `$`"
                            .to_string(),
                        offset,
                    ),
                };
                let position = at(value).map(|p| self.inside_scalar(p, offset));
                let diagnostic = Diagnostic::new(message, position);
                self.diagnostics.push(
                    diagnostic.with_hint("set it in the calling shell, or write `${VAR:-default}`"),
                );
                None
            }
        }
    }

    /// The position of character `offset` of a scalar that starts at `start`.
    fn inside_scalar(&self, start: Position, offset: usize) -> Position {
        let source = &self.sources[start.file].text;
        let line = source.lines().nth(start.line - 1).unwrap_or("");
        let quoted = matches!(line.chars().nth(start.column - 1), Some('"' | '\''));
        Position {
            file: start.file,
            line: start.line,
            column: start.column + offset + usize::from(quoted),
        }
    }
}

fn build_of(base: &Path, raw: &RawBuild) -> Build {
    let (context, dockerfile) = match raw {
        RawBuild::Context(context) => (context, None),
        RawBuild::Full {
            context,
            dockerfile,
        } => (context, dockerfile.as_ref()),
    };
    Build {
        context: base.join(context),
        dockerfile: dockerfile.cloned().unwrap_or_else(|| "Dockerfile".into()),
    }
}

fn probe_key(probe: &Probe) -> &'static str {
    match probe {
        Probe::Log(_) => "log",
        Probe::Tcp(_) => "tcp",
        Probe::Http { .. } => "http",
        Probe::Exec(_) => "exec",
        Probe::Healthcheck => "healthcheck",
        Probe::Exit(_) => "exit",
    }
}

/// One line of an `env_file`: `KEY=VALUE`, blank lines and `#` comments, as docker-compose
/// reads them; quotes around a value are removed.
fn env_file_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, value) = line.split_once('=').unwrap_or((line, ""));
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
        return Err(format!("`{key}` is not an environment variable name"));
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    if unquoted.contains('\0') {
        return Err(format!("the value of `{key}` contains a NUL character"));
    }
    Ok(Some((key.to_string(), unquoted.to_string())))
}

/// Link aliases become DNS names on the environment's network.
fn is_valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 63
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !alias.starts_with(['-', '.'])
}

/// The last line of a multi-line message: regex puts its verdict there.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}

#[cfg(test)]
mod pool_tests {
    use std::path::Path;

    use crate::spec::{Environment, SpecError, parse};

    const BASE: &str = "services:
  db:
    image: d
  broker:
    image: b
    depends_on: [db]
  app:
    image: a
    links: [\"db:oracle\", broker]
    ports: [8080]
";

    fn load(pool: &str) -> Result<Environment, SpecError> {
        parse(
            Path::new("/envs/stack.yaml"),
            &format!("{BASE}{pool}"),
            &|_| None,
        )
    }

    fn errors(pool: &str) -> Vec<String> {
        let error = load(pool)
            .map(|e| panic!("parsed: {:?}", e.pool))
            .unwrap_err();
        error
            .diagnostics
            .iter()
            .map(|d| {
                let p = d.position.expect("located");
                let hint = d.hint.clone().unwrap_or_default();
                format!("{}:{} {} / {hint}", p.line, p.column, d.message)
            })
            .collect()
    }

    #[test]
    fn a_pool_lists_its_services_and_size() {
        let pool = load("pool: {size: 2, services: [db, broker]}\n")
            .unwrap()
            .pool
            .unwrap();
        assert_eq!(pool.size, 2);
        assert_eq!(pool.services, ["broker", "db"].map(String::from).into());
    }

    #[test]
    fn size_zero_or_no_pool_key_is_no_pool() {
        assert_eq!(
            load("pool: {size: 0, services: [db]}\n").unwrap().pool,
            None
        );
        assert_eq!(load("").unwrap().pool, None);
    }

    #[test]
    fn a_pooled_service_whose_dependency_is_not_pooled_is_a_located_error() {
        assert_eq!(
            errors("pool: {size: 1, services: [broker]}\n"),
            [
                "11:28 pooled service `broker` depends on `db`, which is not pooled / add `db` to \
              `pool.services`: a member starts its pooled services alone"
            ]
        );
    }

    #[test]
    fn a_pooled_service_on_a_fixed_host_port_is_a_located_error() {
        let source = "pool:\n  size: 1\n  services:\n    - db\n";
        let fixed = parse(
            Path::new("/envs/stack.yaml"),
            &format!(
                "{}{source}",
                BASE.replace("image: d", "image: d\n    ports: [\"1521:1521\"]")
            ),
            &|_| None,
        )
        .unwrap_err();
        let d = &fixed.diagnostics[0];
        assert_eq!(
            d.message,
            "pooled service `db` publishes 1521/tcp on fixed host port 1521"
        );
        assert_eq!(d.position.map(|p| (p.line, p.column)), Some((15, 7)));
        assert!(
            d.hint.as_deref().unwrap().contains("`ports: [1521]`"),
            "{d:?}"
        );
    }

    #[test]
    fn unknown_pooled_services_and_bad_sizes_are_located_errors() {
        assert_eq!(
            errors("pool: {size: 1, services: [dbb]}\n"),
            ["11:28 `pool` names unknown service `dbb` / did you mean `db`?"]
        );
        let negative = errors("pool: {size: -1, services: [db]}\n");
        assert!(
            negative[0].starts_with("11:14 `pool.size` must be between 0 and 100"),
            "{negative:?}"
        );
        let unknown = errors("pool: {size: 1, services: [db], sise: 2}\n");
        assert!(unknown[0].contains("unknown key `sise`"), "{unknown:?}");
    }
}
