use std::path::PathBuf;
use std::sync::Arc;

use super::view;
use crate::backend::Backend;
use crate::cli::{Format, StartFlags, UpArgs};
use crate::lifecycle::{self, Started, UpOptions};
use crate::signals::Signals;
use crate::spec::Environment;
use crate::{Error, ExitStatus, naming, output, provenance};

pub async fn exec(args: UpArgs) -> Result<ExitStatus, Error> {
    // Listen before touching the engine, so an early Ctrl-C still rolls back.
    let signals = Signals::listen().map_err(Error::Signals)?;
    let (_, started) = start(args.start, &signals, false).await?;
    match args.output.output {
        Format::Json => output::json(&view::EnvironmentView::from(&started)),
        Format::Text => output::data(&summary(&started)),
    }
    Ok(ExitStatus::Success)
}

/// Starts the environment the flags name, with live progress on stderr: `up` and `run` (which
/// takes a lease on it, see [`lifecycle::lease`]).
pub async fn start(
    flags: StartFlags,
    signals: &Signals,
    lease: bool,
) -> Result<(Arc<dyn Backend>, Started), Error> {
    let (mut environment, target) = super::select(&flags.target)?;
    let files = started_from(&flags.target.file, &environment);
    if let Some(name) = &flags.name {
        naming::check_id(name).map_err(Error::Usage)?;
    }
    if !flags.only.is_empty() {
        environment.restrict(&flags.only).map_err(Error::Usage)?;
    }
    let reporter = super::progress::reporter(environment.services.keys().map(String::as_str));
    let options = UpOptions {
        name: flags.name,
        timeout: flags.timeout,
        keep_on_failure: flags.keep_on_failure,
        owner: provenance::default_owner(),
        prefix_tags: target.overrides.iter().map(|o| o.service.clone()).collect(),
        ttl: flags.ttl,
        build: provenance::build_labels(),
        lease,
        pull: super::pull_policy(flags.pull),
        files,
        pool: Default::default(),
        admission: super::admission(flags.queue, &reporter),
    };
    let backend = super::backend().await?;
    let on_interrupt = |id: Option<&str>| {
        let doing = match id {
            Some(id) => format!("removing environment {id}"),
            None => "stopping the start".to_string(),
        };
        reporter.interrupted(&format!(
            "interrupted: {doing} ... press Ctrl-C again to force"
        ));
    };
    let outcome = lifecycle::up(
        backend.as_ref(),
        &environment,
        &options,
        &reporter.progress,
        signals,
        &on_interrupt,
    )
    .await;
    drop(reporter);
    for warning in &outcome.warnings {
        output::warning(warning);
    }
    Ok((backend, outcome.result?))
}

/// The files `environment` was read from, absolute, for `update` to read again: the `-f`
/// files, else the one found in the environment directory. `None` for standard input.
fn started_from(given: &[PathBuf], environment: &Environment) -> Option<Vec<PathBuf>> {
    let files = match given {
        [] => std::slice::from_ref(&environment.path),
        given => given,
    };
    files
        .iter()
        .map(|file| match file.as_os_str() == "-" {
            true => None,
            false => Some(std::path::absolute(file).unwrap_or_else(|_| file.clone())),
        })
        .collect()
}

/// `environment accounting is ready: id 20261126-041500` and one line per published endpoint.
pub fn summary(started: &Started) -> String {
    format!(
        "environment {} is ready: id {}\n{}remove it with: envctl down {}\n",
        started.environment,
        started.id,
        view::EnvironmentView::from(started).endpoints(),
        started.id
    )
}
