//! The environment file: its model, parsing with positions, and validation.
//!
//! One YAML file in `environments/` declares one environment. [`parse`] turns its text into an
//! [`Environment`] or a [`SpecError`] that lists every problem with its file:line:column.

pub mod catalog;
mod compose;
mod diagnostic;
mod interpolate;
mod raw;
pub mod runtime;
mod tree;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::naming::image::{ImageRef, check_tag, split_image};
pub use crate::naming::values::{GatewayEntry, Port, Probe, Protocol, Ready};
pub use catalog::{Catalog, Target};
pub use diagnostic::{Diagnostic, Position, Source, SpecError, did_you_mean};
pub use runtime::{PortMapping, Runtime, Volume, settings_digests};

/// How long a service may take to become ready when its file does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One environment: a set of services and their dependencies.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub path: PathBuf,
    /// Services by name, sorted so everything derived from them is deterministic.
    pub services: BTreeMap<String, Service>,
    /// The entry `envctl gateway` sends requests to: top-level `gateway: SERVICE:PORT`.
    pub gateway: Option<GatewayEntry>,
    /// Named volumes, created and removed with each copy of the environment.
    pub volumes: BTreeMap<String, Volume>,
    /// The warm pool: `None` without `pool:` or with `size: 0`.
    pub pool: Option<Pool>,
}

/// `pool: {size: N, services: [...]}`: how many pre-started copies of which services to keep
/// for `up` to adopt (see `docs/pool.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// At least 1.
    pub size: u32,
    /// Closed under `depends_on`: every dependency of a pooled service is pooled.
    pub services: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub image: ImageRef,
    /// Set when the image is built from a local directory, docker-compose style.
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    /// Environment variables for the container, sorted by key.
    pub env: Vec<(String, String)>,
    /// Everything this service waits for: `depends_on` plus the targets of `links`.
    pub depends_on: BTreeSet<String>,
    pub links: Vec<Link>,
    pub ready: Ready,
    /// How its container runs: published ports, volumes, limits and the other compose keys.
    pub runtime: Runtime,
    /// When `up` pulls the image (`pull:`); `--pull` overrides it.
    pub pull: PullPolicy,
}

impl Service {
    /// The container ports it publishes.
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.runtime.ports.iter().map(|p| p.container)
    }
}

/// When `up` pulls a service's image, under docker-compose's names and meanings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when no local image has the tag (compose's `missing`, `if_not_present`).
    #[default]
    Missing,
    /// Pull every time, so the registry's image under the tag wins.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl PullPolicy {
    /// The names the file and `--pull` accept.
    pub const NAMES: [&str; 3] = ["missing", "always", "never"];

    pub fn parse(name: &str) -> Option<PullPolicy> {
        match name {
            "missing" | "if_not_present" => Some(PullPolicy::Missing),
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The build context directory, resolved against the environment file's directory.
    pub context: PathBuf,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
}

/// `links: ["oracle-xe:oracle"]`: the service `oracle-xe` is reachable as `oracle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub service: String,
    pub alias: String,
}

/// Parses and validates one environment file. `lookup` reads the caller's environment variables.
pub fn parse(
    path: &Path,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, SpecError> {
    validate::parse(path, source, lookup)
}

/// The largest environment file envctl reads: far beyond any real one, and small enough that a
/// wrong `-f` (a log, a disk image) fails at once instead of filling memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The `-f` argument that reads the environment from standard input.
pub const STDIN_ARG: &str = "-";

/// How messages name standard input, in place of a path.
pub const STDIN_PATH: &str = "<stdin>";

/// Reads and parses one environment file with the process environment; [`STDIN_ARG`] reads
/// standard input.
pub fn load(path: &Path) -> Result<Environment, LoadError> {
    let (path, source) = read_source(path)?;
    Ok(parse(&path, &source, &|name| std::env::var(name).ok())?)
}

/// Reads and parses several files as one environment, each later one overriding the earlier
/// ones as docker-compose override files do.
pub fn load_all(paths: &[PathBuf]) -> Result<Environment, LoadError> {
    let mut sources = Vec::new();
    for path in paths {
        let (path, text) = read_source(path)?;
        sources.push(Source { path, text });
    }
    Ok(validate::parse_files(sources, &|name| {
        std::env::var(name).ok()
    })?)
}

/// The text of an environment file, and the path to name it by.
fn read_source(path: &Path) -> Result<(PathBuf, String), LoadError> {
    if path == Path::new(STDIN_ARG) {
        let path = PathBuf::from(STDIN_PATH);
        let source = read_capped(std::io::stdin().lock(), &path)?;
        return Ok((path, source));
    }
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO blocks until a writer comes, and a device like
    // `/dev/zero` never ends.
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&metadata.file_type()),
        });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    Ok((path.to_path_buf(), read_capped(file, path)?))
}

/// Reads at most [`MAX_FILE_BYTES`] (a file may grow while it is read).
fn read_capped(reader: impl std::io::Read, path: &Path) -> Result<String, LoadError> {
    use std::io::Read as _;
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|_| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Why an environment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`{}` is {kind}, not an environment file\nhint: `-f -` reads standard input, to which \
         a pipe or a process can be redirected",
        path.display()
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "`{}` is larger than {} MiB, too large for an environment file",
        path.display(),
        MAX_FILE_BYTES / (1024 * 1024)
    )]
    TooLarge { path: PathBuf },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Selection(String),
}

/// `SERVICE@REF` from the command line: run that service's image at tag REF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub service: String,
    pub reference: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (service, reference) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}` is not SERVICE@REF"))?;
        if service.is_empty() {
            return Err(format!("`{s}` names no service before `@`"));
        }
        check_tag(reference)?;
        Ok(Override {
            service: service.to_string(),
            reference: reference.to_string(),
        })
    }
}

impl Environment {
    /// Applies `SERVICE@REF` overrides: each sets that service's image tag.
    pub fn apply(&mut self, overrides: &[Override]) -> Result<(), String> {
        for o in overrides {
            let names = self.services.keys().map(String::as_str);
            let hint = did_you_mean(&o.service, names)
                .map(|s| format!("\nhint: did you mean `{s}`?"))
                .unwrap_or_default();
            let service = self.services.get_mut(&o.service).ok_or_else(|| {
                format!(
                    "environment `{}` has no service `{}`{hint}",
                    self.name, o.service
                )
            })?;
            service.image.tag = o.reference.clone();
        }
        Ok(())
    }

    /// The environment with only `only` and everything they depend on.
    pub fn restrict(&mut self, only: &[String]) -> Result<(), String> {
        let mut keep = BTreeSet::new();
        let mut todo: Vec<&str> = Vec::new();
        for name in only {
            if !self.services.contains_key(name) {
                return Err(format!(
                    "environment `{}` has no service `{name}`",
                    self.name
                ));
            }
            todo.push(name);
        }
        while let Some(name) = todo.pop() {
            if keep.insert(name.to_string()) {
                todo.extend(self.services[name].depends_on.iter().map(String::as_str));
            }
        }
        self.services.retain(|name, _| keep.contains(name));
        Ok(())
    }
}
