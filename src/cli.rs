//! The command line: clap types only. Their doc comments are the `--help` text.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use std::ffi::OsStr;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

/// Fresh, throw-away copies of a multi-container test environment.
///
/// envctl starts the services an environment file declares on a Docker engine, in dependency
/// order, each container named `SERVICE_ID` and reachable by its link names, and removes them
/// again when you are done.
#[derive(Debug, Parser)]
#[command(name = "envctl", version, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 ok, 1 bad input, 2 engine or environment failure.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log more: -v for debug, -vv for trace (RUST_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The Docker engine to use: unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST (over
    /// DOCKER_HOST and any context)
    #[arg(short = 'H', long, global = true, value_name = "ENDPOINT")]
    pub host: Option<String>,

    /// The Docker context whose engine to use (over DOCKER_HOST, DOCKER_CONTEXT and the current
    /// context)
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "host")]
    pub context: Option<String>,

    /// What runs environments: `docker`, one Docker engine; `swarm`, a Docker swarm through
    /// one of its managers (found as the engine is)
    #[arg(
        long,
        global = true,
        env = "ENVCTL_BACKEND",
        value_enum,
        default_value_t
    )]
    pub backend: BackendArg,
}

/// The backends `--backend` accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// One Docker engine, found as the docker CLI finds it
    #[default]
    Docker,
    /// A Docker swarm, through a manager found as the docker CLI finds an engine
    Swarm,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a fresh copy of an environment
    ///
    /// Examples:
    ///   envctl up accounting
    ///   envctl up accounting@ea6757a          # the environment holding `accounting`, at that tag
    ///   envctl up demo --name pr-42 --output json
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// Start an environment, run a command against it, then remove it whatever happens
    ///
    /// The command gets the environment's coordinates in variables: ENVCTL_ID, and
    /// ENVCTL_<SERVICE>_<PORT>=host:port for each published port (service upper-cased, `-` as
    /// `_`). envctl exits with the command's exit code; SIGINT and SIGTERM are forwarded to it.
    ///
    /// Example: envctl run accounting@${GIT_COMMIT} -- mvn verify
    Run(RunArgs),
    /// Replace services of a running environment in place; the others keep running untouched
    ///
    /// Each SERVICE@REF gets a new container at image tag REF (a unique local tag starting
    /// with REF will do), under the same container and link names, so its dependents reconnect
    /// by name; services are replaced in dependency order, each waited for until ready. If one
    /// fails, the previous containers are started again. The environment file is read again
    /// (found by the environment's name) for how to create the new containers.
    ///
    /// Examples:
    ///   envctl update 20261126-041500 accounting@ea6757a
    ///   envctl update 041500 accounting@ea6757a --with-dependents
    #[command(verbatim_doc_comment)]
    Update(UpdateArgs),
    /// Print an environment's variables as `export` lines (or JSON), as `run` sets them
    ///
    /// Example: eval "$(envctl env 20261126-041500)"
    Env(EnvArgs),
    /// Remove environments: containers (killed at once, unless --grace), then their network
    Down(DownArgs),
    /// List running and stopped environments
    Ls(OutputArgs),
    /// Show each service of an environment: state, health, restarts, exit code, ports
    Status(IdArgs),
    /// Show the logs of an environment's services, prefixed by service
    Logs(LogsArgs),
    /// Stop an environment's containers but keep them
    Stop(IdArgs),
    /// Start a stopped environment again, in dependency order, waiting for readiness
    ///
    /// Docker publishes the ports on new host ports: start prints the new endpoints.
    Start(StartArgs),
    /// Show where a service's ports are published: `host:port`, as `docker port` does
    ///
    /// Examples:
    ///   envctl port 20261126-041500 proxy            # every published port of proxy
    ///   curl "http://$(envctl port 20261126-041500 proxy 8080)/"
    #[command(verbatim_doc_comment)]
    Port(PortArgs),
    /// Build the images of services that declare `build:`
    Build(BuildArgs),
    /// One reaper pass, for cron: stop idle environments, remove long-stopped ones
    ///
    /// Activity is an envctl command on the environment, its creation, or inbound traffic on
    /// the services that publish ports. Each action is printed with its reason.
    ///
    /// Example (crontab): 0 2 * * *  envctl reap --idle 2h --remove-after 24h
    Reap(ReapArgs),
    /// Run reaper passes every DURATION until SIGTERM or Ctrl-C
    ///
    /// The first signal finishes the pass in flight and exits; a second exits at once.
    Reaper(ReaperArgs),
    /// Serve every environment through one HTTP front door, with a page listing them
    ///
    /// Requests for `http://ID.DOMAIN:PORT/` (or `http://REF.ENVIRONMENT.DOMAIN:PORT/`, the
    /// newest environment of that file started with a ref starting with REF) go to the
    /// environment's entry: the file's `gateway: SERVICE:PORT`, else the one published port
    /// with an HTTP probe. `http://DOMAIN:PORT/` lists the environments, with actions.
    /// Every request is activity for the reaper; a stopped environment is started on request.
    ///
    /// Example: envctl gateway --listen 127.0.0.1:8000 --domain localhost
    Gateway(GatewayArgs),
    /// Show, set or clear the engine's capacity: how many environments, and how much memory,
    /// may start and run at once; starts beyond it wait in one queue
    ///
    /// Every client of the engine shares the capacity and the queue. Without flags, shows the
    /// capacity and what uses it: environments and what they reserved, and who waits.
    ///
    /// Examples:
    ///   envctl capacity --max-environments 4 --max-memory 12g --default-memory 512m
    ///   envctl capacity --output json
    ///   envctl capacity --clear
    #[command(verbatim_doc_comment)]
    Capacity(CapacityArgs),
    /// Record activity on an environment, restarting its idle clock
    Touch(TouchArgs),
    /// Exempt an environment from the reaper
    Pin(TouchArgs),
    /// Let the reaper handle an environment again
    Unpin(TouchArgs),
    /// Show the start plan of an environment: waves, images, links, container names
    ///
    /// SERVICE@REF shows the tag `up` would run, from the local tags, then the registry's;
    /// nothing else contacts Docker or a registry.
    ///
    /// Examples:
    ///   envctl plan accounting@ea6757a
    ///   envctl plan demo --output json
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Print an environment's dependency graph in Graphviz DOT
    ///
    /// Example: envctl graph accounting | dot -Tsvg > accounting.svg
    Graph(GraphArgs),
    /// Print a shell completion script
    ///
    /// Example: envctl completions bash > /etc/bash_completion.d/envctl
    Completions(CompletionsArgs),
    /// Keep warm pools: pre-started copies of an environment's pooled services, which `up`
    /// and `run` adopt instead of starting them (the file's `pool: {size, services}`)
    ///
    /// Examples:
    ///   envctl pool fill                      # every environment that declares a pool
    ///   envctl pool fill --watch              # and keep them full, until SIGTERM
    ///   envctl pool ls
    ///   envctl pool drain accounting
    #[command(verbatim_doc_comment)]
    Pool(PoolArgs),
}

#[derive(Debug, Args)]
pub struct PoolArgs {
    #[command(subcommand)]
    pub command: PoolCommand,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Fill pools: remove members that failed, grew older than --max-age or no longer match
    /// their file (an image or a setting changed), then start members up to each pool's size
    ///
    /// A member that fails to start is removed and reported (exit 2).
    ///
    /// Example (crontab): */5 * * * *  envctl pool fill
    Fill(PoolFillArgs),
    /// List pool members: environment, id, age, state, and whether each matches its file
    /// (why not, when it does not)
    Ls(PoolLsArgs),
    /// Remove pool members: every member, or those of ENV
    Drain(PoolDrainArgs),
}

/// Where the environment files of pools are.
#[derive(Debug, Args)]
pub struct PoolFiles {
    /// Directory of environment files [default: `./environments`, else `environments/` at the
    /// root of the git repository around the current directory]
    #[arg(long, env = "ENVCTL_ENVDIR")]
    pub envdir: Option<PathBuf>,
    /// This environment file (and override files after it) instead of `--envdir`
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PoolFillArgs {
    /// The environments to fill [default: every environment of the directory that declares a
    /// pool]
    #[arg(value_name = "ENV", add = ArgValueCompleter::new(files))]
    pub environments: Vec<String>,
    #[command(flatten)]
    pub files: PoolFiles,
    /// Replace members filled longer ago than this
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub max_age: Duration,
    /// Give up on a member that is not ready within this time
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
    /// Keep filling until SIGTERM or Ctrl-C: again at every change the engine reports (an
    /// adoption) and every minute
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub pull: PullFlag,
}

#[derive(Debug, Args)]
pub struct PoolLsArgs {
    #[command(flatten)]
    pub files: PoolFiles,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PoolDrainArgs {
    /// Only the members of this environment
    #[arg(value_name = "ENV", add = ArgValueCompleter::new(names))]
    pub environment: Option<String>,
}

/// Which environment: `[ENV] [SERVICE@REF ...]`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The environment (file stem or `name:`), then SERVICE@REF to run SERVICE at image tag REF.
    /// Without ENV, the environment is the one that has every SERVICE named
    #[arg(value_name = "ENV|SERVICE@REF", add = ArgValueCompleter::new(files))]
    pub words: Vec<String>,

    /// Directory of environment files [default: `./environments`, else `environments/` at the
    /// root of the git repository around the current directory]
    #[arg(long, env = "ENVCTL_ENVDIR")]
    pub envdir: Option<PathBuf>,

    /// Use this environment file instead of searching `--envdir`; `-` reads standard input.
    /// Repeat it to merge override files as docker-compose does: later files win, maps merge,
    /// lists are appended. At most 4 MiB each
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people
    #[default]
    Text,
    /// One JSON document on stdout
    Json,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show the container names a run with this id would use
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub pull: PullFlag,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub start: StartFlags,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `up` and `run` share.
#[derive(Debug, Args)]
pub struct StartFlags {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Use NAME as the environment id instead of the launch time
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Give up if the environment is not ready within this time
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
    /// Keep what was created when the start fails, for debugging; with `run`, keep the
    /// environment also when the command fails
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Start only these services and what they depend on (repeat, or separate with commas)
    #[arg(long, value_name = "SERVICE", value_delimiter = ',')]
    pub only: Vec<String>,
    /// A hard deadline: the reaper stops the environment this long after its start, whatever
    /// its activity (a backstop for killed CI agents)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ttl: Option<Duration>,
    #[command(flatten)]
    pub pull: PullFlag,
    #[command(flatten)]
    pub queue: QueueFlags,
}

/// How a start waits for the engine's capacity (`envctl capacity`), when one is set.
#[derive(Debug, Clone, Copy, Args)]
pub struct QueueFlags {
    /// When the engine has a capacity: give up waiting for it after DURATION (exit 2). The
    /// wait does not count towards `--timeout`
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = duration)]
    pub queue_timeout: Duration,
    /// When the engine has a capacity: a `high` start goes before every `normal` one that
    /// waits, a `low` one after every other [default: high when stderr is a terminal, else
    /// normal]
    #[arg(long, value_enum, value_name = "PRIORITY")]
    pub priority: Option<Priority>,
}

/// A start's place among those waiting for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Priority {
    /// Before every `normal` start: a person waits at a terminal
    High,
    /// In arrival order: CI jobs
    Normal,
    /// After every other start, with a warm pool's fills: a bulk or nightly job that gives way
    Low,
}

/// `--pull`, for every command that starts services.
#[derive(Debug, Clone, Copy, Args)]
pub struct PullFlag {
    /// When to pull images, for every service (overrides `pull:` in the file)
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<Pull>,
}

/// docker-compose's pull policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pull {
    /// Pull an image only when it is not available locally (the default)
    Missing,
    /// Pull every image, even when one with the tag is available locally
    Always,
    /// Never pull: a missing image is an error
    Never,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub start: StartFlags,
    /// Stop the services gracefully before removing the environment: SIGTERM, dependents
    /// first, SIGKILL after DURATION. Without it they are killed at once
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
    /// When the command fails, save each service's log to DIR/SERVICE.log before the
    /// environment goes (for the CI system to archive)
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
    /// The command to run once the environment is ready, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The environment id, as `envctl ls` shows it
    pub id: String,
    /// Replace SERVICE with its image at tag REF
    #[arg(value_name = "SERVICE@REF", required = true)]
    pub services: Vec<String>,
    /// Also recreate every service that depends on a replaced one, at the image it runs
    #[arg(long)]
    pub with_dependents: bool,
    /// Give up, and restore the previous services, if the new ones are not ready within this
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
    /// Stop each previous container gracefully within DURATION (SIGTERM, then SIGKILL); it
    /// is killed otherwise
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
    /// Directory of environment files
    #[arg(long, env = "ENVCTL_ENVDIR", default_value = "environments")]
    pub envdir: PathBuf,
    /// Use this environment file instead of the files the environment was started from (or,
    /// for an environment of an earlier envctl, searching `--envdir`); `-` reads standard
    /// input. Repeat it to merge override files, as for `up`
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("many").args(["all", "owner"]).multiple(true)))]
pub struct DownArgs {
    /// Environment ids, as `envctl ls` shows them
    #[arg(
        value_name = "ID",
        required_unless_present_any = ["all", "owner"],
        conflicts_with = "many",
        add = ArgValueCompleter::new(ids)
    )]
    pub ids: Vec<String>,
    /// Remove every environment, or every one of `--environment` and `--owner`. On a terminal,
    /// envctl lists them and asks first
    #[arg(long)]
    pub all: bool,
    /// With --all or --owner: only environments of this name
    #[arg(
        long,
        value_name = "ENV",
        requires = "many",
        add = ArgValueCompleter::new(names)
    )]
    pub environment: Option<String>,
    /// Remove every environment of this owner (Jenkins' BUILD_TAG): a post-build cleanup
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Remove without asking (--all asks on a terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// Exit 0 when an ID has nothing to remove, for a cleanup step that may run twice.
    /// Without it an unknown ID exits 1; --all and --owner never fail for finding nothing
    #[arg(long)]
    pub ignore_missing: bool,
    /// Stop the services gracefully first: SIGTERM, dependents first, wave by wave, SIGKILL
    /// after DURATION. Without it an environment is thrown away: its containers are killed
    /// and removed at once
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
    /// Give up on an engine that does not answer a call within DURATION (a stop with --grace
    /// gets its grace on top), saying what was removed and what is left
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
    /// Give up if the environment is not ready within this time
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub queue: QueueFlags,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `envctl capacity`: show, set or clear the engine's capacity.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limits").multiple(true).args(
    ["max_environments", "max_memory", "default_memory", "per_owner", "preempt_idle"]
)))]
pub struct CapacityArgs {
    /// At most N environments starting, running, updating or paused at once
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_environments: Option<u32>,
    /// At most SIZE of memory reserved by those environments (`10g`, `512m`): each reserves
    /// the sum of its services' `mem_limit`
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_memory: Option<u64>,
    /// What a service without `mem_limit` reserves [default: nothing]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub default_memory: Option<u64>,
    /// At most N environments of one owner (Jenkins' BUILD_TAG, else the user) at once; an
    /// owner at its limit lets the others in the queue go first
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub per_owner: Option<u32>,
    /// When the head of the queue does not fit (once warm-pool members gave way), stop
    /// environments idle longer than DURATION (`30m`), idlest first, to make room; never a
    /// pinned, leased, starting or updating one [default: never]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub preempt_idle: Option<Duration>,
    /// Remove the capacity: every start is admitted at once again
    #[arg(long, conflicts_with = "limits")]
    pub clear: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
    /// The service
    pub service: String,
    /// Only this container port: `8080`, `8080/tcp` or `53/udp`
    #[arg(value_parser = container_port)]
    pub port: Option<crate::spec::Port>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `8080`, `8080/tcp` or `53/udp`: the protocols services can publish.
fn container_port(text: &str) -> Result<crate::spec::Port, String> {
    use crate::spec::Protocol;
    let (number, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let number = number
        .parse()
        .map_err(|_| format!("expected a port number (like `8080` or `53/udp`), not `{text}`"))?;
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("unknown protocol `{other}`: expected tcp or udp")),
    };
    Ok(crate::spec::Port { number, protocol })
}

#[derive(Debug, Args)]
pub struct TouchArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Stop environments without activity for this long
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = duration)]
    pub idle: Duration,
    /// Remove environments that have been stopped for this long
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub remove_after: Duration,
    /// Pause environments without activity for this long, before `--idle` stops them
    ///
    /// A paused environment (`docker pause`) uses no CPU, keeps its memory and ports, and is
    /// resumed in milliseconds by a request through `envctl gateway`, `envctl start` or
    /// `envctl touch`; it still counts as idle, so `--idle` stops it later. Docker only: on a
    /// swarm it warns and does nothing. Off by default.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub pause_after: Option<Duration>,
    /// Stop environments older than this whatever their activity (pins still exempt)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_age: Option<Duration>,
    /// Print what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only environments of this name
    #[arg(long, value_name = "ENV", add = ArgValueCompleter::new(names))]
    pub environment: Option<String>,
    /// Also stop environments `envctl gateway` flagged for their error rate (`--max-error-rate`)
    #[arg(long)]
    pub stop_erroring: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ReaperArgs {
    /// Time between two passes
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub every: Duration,
    #[command(flatten)]
    pub reap: ReapArgs,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The address to listen on; other than loopback, actions need `--token-file`
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Environments are reached at ID.DOMAIN, the page at DOMAIN (`*.localhost` resolves to
    /// loopback in browsers; a team points a wildcard DNS record at the gateway's host)
    #[arg(long, value_name = "DOMAIN", default_value = "localhost")]
    pub domain: String,
    /// How long a request (other than a web page's) waits for a stopped environment to start
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub wake_timeout: Duration,
    /// A file holding the token the page's actions need; required off loopback
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Flag environments whose share of 5xx answers is above this (`50%`); off by default
    #[arg(long, value_name = "PERCENT", value_parser = percent, requires = "over")]
    pub max_error_rate: Option<f64>,
    /// The sliding window of `--max-error-rate`
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "max_error_rate")]
    pub over: Option<Duration>,
    /// The largest request body passed to an environment, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body: u64,
    /// How long an environment may take to begin answering a request
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub request_timeout: Duration,
    /// How long a start (a wake, or the page's start) may take
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub start_timeout: Duration,
    /// Create an environment on its first request: REF.ENV.DOMAIN with no environment there
    /// creates one of ENV (a file of `--envdir`) at REF, as `envctl up` would
    ///
    /// REF (7 characters at least) applies to every service of ENV with an image tagged with
    /// a tag starting with it, locally or in the registry its image names; none answers 404
    /// with the closest tags. Browsers watch a progress page; other clients wait up to
    /// `--wake-timeout`. Off by default.
    #[arg(long)]
    pub create: bool,
    /// The directory of environment files `--create` creates from [default: as `envctl up`
    /// finds it]
    #[arg(long, value_name = "DIR", env = "ENVCTL_ENVDIR")]
    pub envdir: Option<PathBuf>,
    /// The `--ttl` of environments created on request
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = duration)]
    pub create_ttl: Duration,
    /// How many environments one client may have created in an hour
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_creates: usize,
}

/// `50%`, or `50`: a share between 0 and 100 percent.
fn percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage like `50%`"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(value / 100.0)
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The environment id, as `envctl ls` shows it
    #[arg(add = ArgValueCompleter::new(ids))]
    pub id: String,
    /// Only these services (every service when none is named)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Keep following new output
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end of each service's log
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Show when each line was printed (RFC 3339, UTC)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines printed since then: a duration back from now (`10m`, `1h 30m`) or an
    /// RFC 3339 time (`2026-11-26T04:15:00Z`)
    #[arg(long, value_name = "DURATION|TIME", value_parser = since)]
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Where completion finds its candidates. The caller hands them in, so that the clap types
/// depend on nothing that reads an engine or a directory (`commands::complete` does).
#[derive(Debug, Clone, Copy)]
pub struct Candidates {
    /// The environments on the engine: `(id, environment name)`.
    pub ids: fn() -> Vec<(String, String)>,
    /// Environment names from files, and from the engine too when asked.
    pub environments: fn(with_engine: bool) -> Vec<String>,
}

static CANDIDATES: OnceLock<Candidates> = OnceLock::new();

/// Answers the shell's completion request and exits, when `COMPLETE` names a shell: the
/// script `COMPLETE=bash envctl` prints calls envctl back this way for every Tab.
pub fn complete_if_asked(candidates: Candidates) {
    let _ = CANDIDATES.set(candidates);
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
}

/// Writes the completion script for `shell` (`envctl completions SHELL`).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "envctl", out);
}

/// Environment ids on the engine, with their environment's name as help.
fn ids(typed: &OsStr) -> Vec<CompletionCandidate> {
    let typed = typed.to_str().unwrap_or_default();
    CANDIDATES
        .get()
        .map(|candidates| (candidates.ids)())
        .unwrap_or_default()
        .into_iter()
        .filter(|(id, _)| id_matches(id, typed))
        .map(|(id, environment)| CompletionCandidate::new(id).help(Some(environment.into())))
        .collect()
}

/// Whether `id` completes what was typed: ids are accepted by a prefix or a suffix.
fn id_matches(id: &str, typed: &str) -> bool {
    id.starts_with(typed) || id.ends_with(typed)
}

/// Environment names in the environment directory, for `ENV`.
fn files(typed: &OsStr) -> Vec<CompletionCandidate> {
    by_prefix(environments(false), typed)
}

/// Environment names in the environment directory and on the engine, for `--environment`.
fn names(typed: &OsStr) -> Vec<CompletionCandidate> {
    by_prefix(environments(true), typed)
}

fn environments(with_engine: bool) -> Vec<String> {
    CANDIDATES
        .get()
        .map(|candidates| (candidates.environments)(with_engine))
        .unwrap_or_default()
}

fn by_prefix(names: Vec<String>, typed: &OsStr) -> Vec<CompletionCandidate> {
    let typed = typed.to_str().unwrap_or_default();
    names
        .into_iter()
        .filter(|name| name.starts_with(typed))
        .map(CompletionCandidate::new)
        .collect()
}

/// A humantime duration (`90s`, `2h 30m`) of at most a year, so deadlines stay computable.
fn size(text: &str) -> Result<u64, String> {
    text.parse::<crate::spec::runtime::Bytes>().map(|b| b.0)
}

fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > Duration::from_secs(366 * 24 * 3600) {
        return Err("longer than a year".into());
    }
    Ok(duration)
}

/// A point in time given as a duration back from now, or as an RFC 3339 time.
fn since(text: &str) -> Result<DateTime<Utc>, String> {
    since_at(text, Utc::now())
}

fn since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let back = duration(text).map_err(|_| {
        "expected a duration (`10m`) or an RFC 3339 time (`2026-11-26T04:15:00Z`)".to_string()
    })?;
    let back = chrono::Duration::from_std(back).map_err(|e| e.to_string())?;
    Ok(now - back)
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_completes_from_its_start_or_its_end() {
        assert!(id_matches("20261126-041500", ""));
        assert!(id_matches("20261126-041500", "2026"));
        assert!(id_matches("20261126-041500", "041500"));
        assert!(!id_matches("20261126-041500", "0415"));
    }

    #[test]
    fn since_takes_a_duration_back_from_now_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T04:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            since_at("10m", now).unwrap().to_rfc3339(),
            "2026-11-26T04:05:00+00:00"
        );
        assert_eq!(
            since_at("2026-11-26T05:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-26T04:00:00+00:00"
        );
        let error = since_at("yesterday", now).unwrap_err();
        assert!(error.contains("expected a duration"), "{error}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn down_all_combines_with_owner_and_environment() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["envctl", "down"], args].concat());
        let Command::Down(down) = parse(&["--all", "--owner", "ci-7", "--environment", "demo"])
            .unwrap()
            .command
        else {
            panic!("not down");
        };
        assert!(down.all && down.owner.as_deref() == Some("ci-7"));
        assert_eq!(down.environment.as_deref(), Some("demo"));
        assert!(parse(&["--owner", "ci-7", "--environment", "demo"]).is_ok());
        assert!(parse(&["--all", "--yes"]).is_ok());
        assert!(parse(&["--environment", "demo"]).is_err());
        assert!(parse(&["20261126-041500", "--all"]).is_err());
        assert!(parse(&["20261126-041500", "--owner", "ci-7"]).is_err());
    }

    #[test]
    fn container_ports_default_to_tcp() {
        assert_eq!(
            container_port("8080").unwrap().protocol,
            crate::spec::Protocol::Tcp
        );
        assert_eq!(container_port("53/udp").unwrap().number, 53);
        assert!(
            container_port("http")
                .unwrap_err()
                .contains("a port number")
        );
        assert!(
            container_port("80/icmp")
                .unwrap_err()
                .contains("unknown protocol")
        );
    }
}
