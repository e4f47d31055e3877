//! envctl: fresh, throw-away copies of multi-container test environments.
//!
//! The map of the crate, top to bottom. [`cli`] holds the clap types and nothing else reads
//! clap; [`commands`] has one module per subcommand, glue that renders data to stdout and
//! messages to stderr through [`output`]. Below them, [`spec`] reads environment files into a
//! checked model with located errors, using [`graph`] (start waves and shortest cycles, on
//! plain service names); [`lifecycle`] starts, updates, inspects and removes environments on
//! [`backend::Backend`], the environment-level seam, as short scripts over one attempt
//! (deadline, interrupts, bounded aftermath, one timeout diagnosis); [`backend::docker`] (one
//! Docker engine) and [`backend::swarm`] (a Docker swarm) implement it over
//! [`backend::bollard`], what both share of the engine API, and an in-memory fake does for
//! tests; [`provenance`] says who starts an environment (owner, CI build, host, process);
//! [`reaper`] is the idle reaper (pure rules, and one pass) and [`state`] its local file;
//! [`gateway`] is `envctl gateway`, the HTTP front door, over the lifecycle only; [`pipeline`]
//! and [`terminal`] run `run`'s command; [`reach`] remembers what answers from here;
//! [`registry`] is the registry client, free of any engine; [`signals`] counts interrupts. At
//! the bottom, [`naming`] defines ids, names, label keys and the typed values labels carry,
//! and [`naming::codec`] writes and reads every label.

pub mod backend;
pub mod cli;
pub mod commands;
mod error;
pub mod gateway;
pub mod graph;
pub mod lifecycle;
pub mod naming;
pub mod output;
pub mod pipeline;
pub mod provenance;
pub mod reach;
pub mod reaper;
pub mod registry;
pub mod signals;
pub mod spec;
pub mod state;
pub mod terminal;

pub use error::{Error, ExitStatus};

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Runs one parsed command line to completion.
pub fn run(cli: cli::Cli) -> ExitStatus {
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return Error::Runtime(error).report();
        }
    };
    let status = match runtime.block_on(commands::exec(cli)) {
        Ok(status) => status,
        Err(error) => error.report(),
    };
    // Requests given up on a hung engine may still hold the runtime's threads: exit anyway.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    status
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "envctl=warn",
        1 => "envctl=debug",
        _ => "envctl=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Below info, libraries log what they send and receive verbatim: bollard logs request and
    // response bodies, every environment variable (passwords) in them. Only envctl's own
    // events, which redact, may go below info, whatever RUST_LOG asks for.
    let redacted = filter_fn(|metadata| {
        *metadata.level() <= Level::INFO || metadata.target().starts_with("envctl")
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter.and(redacted));
    tracing_subscriber::registry().with(layer).init();
}
