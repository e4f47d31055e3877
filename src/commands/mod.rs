//! One module per subcommand: turn parsed arguments into plain options, call the core, print.

mod build;
mod capacity;
pub mod complete;
mod completions;
mod down;
mod env;
mod gateway;
mod graph;
mod logs;
mod ls;
mod pin;
mod plan;
mod pool;
mod port;
mod progress;
mod reap;
mod run;
mod start;
mod status;
mod stop;
mod up;
mod update;
mod view;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::backend::Backend;
use crate::backend::BackendKind;
use crate::backend::docker::{DockerBackend, Flags};
use crate::backend::swarm::Swarm;
use crate::cli::{BackendArg, Cli, Command, Pull, PullFlag, TargetArgs};
use crate::lifecycle::Bounded;
use crate::signals::Signals;
use crate::spec::{Catalog, Environment, PullPolicy, Target, catalog};
use crate::{Error, ExitStatus};

pub async fn exec(cli: Cli) -> Result<ExitStatus, Error> {
    let _ = ENGINE_FLAGS.set(Flags {
        host: cli.host,
        context: cli.context,
    });
    let _ = BACKEND.set(match cli.backend {
        BackendArg::Docker => BackendKind::Docker,
        BackendArg::Swarm => BackendKind::Swarm,
    });
    match cli.command {
        Command::Plan(args) => plan::exec(args).await,
        Command::Graph(args) => graph::exec(args),
        Command::Completions(args) => completions::exec(args),
        Command::Build(args) => build::exec(args).await,
        Command::Up(args) => up::exec(args).await,
        Command::Run(args) => run::exec(args).await,
        Command::Update(args) => update::exec(args).await,
        Command::Env(args) => env::exec(args).await,
        Command::Down(args) => down::exec(args).await,
        Command::Ls(args) => ls::exec(args).await,
        Command::Status(args) => status::exec(args).await,
        Command::Logs(args) => logs::exec(args).await,
        Command::Stop(args) => stop::exec(args).await,
        Command::Start(args) => start::exec(args).await,
        Command::Port(args) => port::exec(args).await,
        Command::Reap(args) => reap::once(args).await,
        Command::Reaper(args) => reap::daemon(args).await,
        Command::Gateway(args) => gateway::exec(args).await,
        Command::Capacity(args) => capacity::exec(args).await,
        Command::Touch(args) => pin::touch(args).await,
        Command::Pin(args) => pin::pin(args).await,
        Command::Unpin(args) => pin::unpin(args).await,
        Command::Pool(args) => pool::exec(args).await,
    }
}

/// Loads the environment the arguments name, with its `SERVICE@REF` overrides applied.
fn select(args: &TargetArgs) -> Result<(Environment, Target), Error> {
    let catalog = match args.file.as_slice() {
        [] => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
            Catalog::Dir(catalog::find_envdir(args.envdir.as_deref(), &cwd)?)
        }
        files => Catalog::Files(files.to_vec()),
    };
    let target = Target::from_words(&args.words).map_err(Error::Usage)?;
    Ok((catalog.select(&target)?, target))
}

/// `--host` and `--context`, set once per command line.
static ENGINE_FLAGS: OnceLock<Flags> = OnceLock::new();

/// `--backend` / `ENVCTL_BACKEND`, set once per command line.
static BACKEND: OnceLock<BackendKind> = OnceLock::new();

/// Connects to the backend `--backend` names: for Docker, the engine `--host`, `--context`,
/// DOCKER_HOST or the contexts choose; for Swarm, the manager they choose.
async fn backend() -> Result<Arc<dyn Backend>, Error> {
    let flags = ENGINE_FLAGS.get().cloned().unwrap_or_default();
    match BACKEND.get().copied().unwrap_or(BackendKind::Docker) {
        BackendKind::Docker => Ok(Arc::new(DockerBackend::connect(&flags).await?)),
        BackendKind::Swarm => Ok(Arc::new(Swarm::connect_with(&flags).await?)),
        other => Err(Error::Usage(format!(
            "the `{other}` backend is not built yet\nhint: `--backend docker`"
        ))),
    }
}

/// How long any one engine call of a short command (`ls`, `status`, `port`, `env`, `logs`,
/// `stop`, `start`) may go unanswered: a working engine answers these in well under a second.
/// A stop gets its grace on top.
const CALL_BOUND: Duration = Duration::from_secs(10);

/// Runs a short command on the backend with every engine call bounded by [`CALL_BOUND`], so a
/// frozen engine ends it (exit 2, naming the engine) instead of hanging a CI step, and ends it
/// at the first interrupt (exit 130), unless the command handles `interrupts` itself.
async fn briefly(
    interrupts: Interrupts,
    command: impl AsyncFnOnce(&dyn Backend, &Signals) -> Result<ExitStatus, Error>,
) -> Result<ExitStatus, Error> {
    let signals = Signals::listen().map_err(Error::Signals)?;
    let work = async {
        let backend = backend().await?;
        let bounded = Bounded {
            backend: backend.as_ref(),
            deadline: None,
            per_call: Some(CALL_BOUND),
            signals: &signals,
        };
        command(&bounded, &signals).await
    };
    tokio::select! {
        biased;
        result = work => result,
        () = signals.received(1), if interrupts == Interrupts::End => {
            Err(Error::Interrupted("interrupted".into()))
        }
    }
}

/// How a start the flags describe waits for the engine's capacity, shown by `reporter`.
fn admission(
    flags: crate::cli::QueueFlags,
    reporter: &progress::Reporter,
) -> crate::lifecycle::admission::AdmitOptions {
    use crate::backend::Priority;
    let priority = match flags.priority {
        Some(crate::cli::Priority::High) => Priority::High,
        Some(crate::cli::Priority::Normal) => Priority::Normal,
        Some(crate::cli::Priority::Low) => Priority::Low,
        None if crate::output::stderr_is_terminal() => Priority::High,
        None => Priority::Normal,
    };
    crate::lifecycle::admission::AdmitOptions {
        priority,
        queue_timeout: Some(flags.queue_timeout),
        on_wait: Some(reporter.on_wait()),
        ..Default::default()
    }
}

/// What the first interrupt does to a short command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupts {
    /// Ends it with exit 130.
    End,
    /// The command listens and says what it stops.
    Own,
}

/// The error for a service `instance` does not have: removed by hand, or never there (with
/// the closest name, else the services it has, as a hint).
/// Records that this command used environment `id`, printing what went wrong as a warning.
async fn touch(endpoint: &str, id: &str, what: &str) {
    if let Some(warning) = crate::state::touch(endpoint, id, what).await {
        crate::output::warning(&warning);
    }
}

/// What only a running service has was asked of one that does not run: `message`, and how
/// to start it.
fn not_running(id: &str, message: &str) -> Error {
    Error::NotRunning(format!(
        "{message}\nhint: `envctl start {id}` starts it, on new host ports"
    ))
}

fn unknown_service(instance: &crate::lifecycle::Instance, service: &str) -> Error {
    let id = &instance.id;
    if instance.missing_services().iter().any(|s| s == service) {
        return Error::NotFound(format!(
            "service `{service}` of `{id}` is missing: its container was removed"
        ));
    }
    let known = instance.services.iter().map(|s| s.service());
    let hint = match crate::spec::did_you_mean(service, known.clone()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => {
            let names: Vec<String> = known.map(|s| format!("`{s}`")).collect();
            format!("its services: {}", names.join(", "))
        }
    };
    Error::NotFound(format!(
        "environment `{id}` has no service `{service}`\nhint: {hint}"
    ))
}

/// The pull policy `--pull` sets for every service, if given.
fn pull_policy(flag: PullFlag) -> Option<PullPolicy> {
    flag.pull.map(|pull| match pull {
        Pull::Missing => PullPolicy::Missing,
        Pull::Always => PullPolicy::Always,
        Pull::Never => PullPolicy::Never,
    })
}
