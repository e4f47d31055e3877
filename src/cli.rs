//! The command line: clap types only. Their doc comments are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

    /// What runs environments: `docker`, one Docker engine (the only backend so far)
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
    Start(StartArgs),
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
}

/// Which environment: `[ENV] [SERVICE@REF ...]`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The environment (file stem or `name:`), then SERVICE@REF to run SERVICE at image tag REF.
    /// Without ENV, the environment is the one that has every SERVICE named
    #[arg(value_name = "ENV|SERVICE@REF")]
    pub words: Vec<String>,

    /// Directory of environment files
    #[arg(long, env = "ENVCTL_ENVDIR", default_value = "environments")]
    pub envdir: PathBuf,

    /// Use this environment file instead of searching `--envdir`; `-` reads standard input.
    /// At most 4 MiB
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
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
    /// Keep what was created when the start fails, for debugging
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
    /// Use this environment file instead of searching `--envdir`; `-` reads standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The environment id, as `envctl ls` shows it
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Environment ids, as `envctl ls` shows them
    #[arg(
        value_name = "ID",
        required_unless_present_any = ["all", "owner"],
        conflicts_with = "all"
    )]
    pub ids: Vec<String>,
    /// Remove every environment (of `--environment`, if given)
    #[arg(long)]
    pub all: bool,
    /// With --all: only environments of this name
    #[arg(long, value_name = "ENV", requires = "all")]
    pub environment: Option<String>,
    /// Remove every environment of this owner (Jenkins' BUILD_TAG): a post-build cleanup
    #[arg(long, value_name = "OWNER", conflicts_with_all = ["ids", "all"])]
    pub owner: Option<String>,
    /// Exit 0 when an ID has nothing to remove, for a cleanup step that may run twice.
    /// Without it an unknown ID exits 1; --all and --owner never fail for finding nothing
    #[arg(long)]
    pub ignore_missing: bool,
    /// Stop the services gracefully first: SIGTERM, dependents first, wave by wave, SIGKILL
    /// after DURATION. Without it an environment is thrown away: its containers are killed
    /// and removed at once
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The environment id, as `envctl ls` shows it
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The environment id, as `envctl ls` shows it
    pub id: String,
    /// Give up if the environment is not ready within this time
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct TouchArgs {
    /// The environment id, as `envctl ls` shows it
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
    /// Stop environments older than this whatever their activity (pins still exempt)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_age: Option<Duration>,
    /// Print what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only environments of this name
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
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
pub struct LogsArgs {
    /// The environment id, as `envctl ls` shows it
    pub id: String,
    /// Only this service
    pub service: Option<String>,
    /// Keep following new output
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end of each service's log
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A humantime duration (`90s`, `2h 30m`) of at most a year, so deadlines stay computable.
fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > Duration::from_secs(366 * 24 * 3600) {
        return Err("longer than a year".into());
    }
    Ok(duration)
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}
