use crate::cli::{Format, UpdateArgs};
use crate::lifecycle::{self, UpdateOptions, Updated};
use crate::signals::Signals;
use std::path::PathBuf;

use crate::spec::{Catalog, LoadError, Override, Target};
use crate::{Error, ExitStatus, output};

pub async fn exec(args: UpdateArgs) -> Result<ExitStatus, Error> {
    // Listen before touching the engine, so an early Ctrl-C still restores.
    let signals = Signals::listen().map_err(Error::Signals)?;
    let overrides: Vec<Override> = args
        .services
        .iter()
        .map(|word| word.parse())
        .collect::<Result<_, String>>()
        .map_err(Error::Usage)?;
    let backend = super::backend().await?;
    // `--timeout` bounds the update from here on.
    let looking = lifecycle::Bounded {
        backend: backend.as_ref(),
        deadline: tokio::time::Instant::now().checked_add(args.timeout),
        per_call: None,
        signals: &signals,
    };
    let instance = lifecycle::require(&looking, &args.id).await?;
    let recorded = instance.metadata.files.clone();
    let catalog = match (args.file.as_slice(), &recorded) {
        ([], Some(files)) => Catalog::Files(files.clone()),
        ([], None) => Catalog::Dir(args.envdir.clone()),
        (files, _) => Catalog::Files(files.to_vec()),
    };
    let target = Target {
        environment: Some(instance.environment().to_string()),
        overrides: overrides.clone(),
    };
    let environment = catalog
        .select(&target)
        .map_err(|error| unread(error, &instance.id, &args.file, recorded.as_deref()))?;
    super::touch(backend.endpoint(), &instance.id, "envctl update").await;
    let named: Vec<String> = overrides.into_iter().map(|o| o.service).collect();
    let options = UpdateOptions {
        timeout: args.timeout,
        with_dependents: args.with_dependents,
        grace: args.grace,
    };
    let reporter = super::progress::reporter(named.iter().map(String::as_str));
    let on_interrupt = || {
        reporter.interrupted(&format!(
            "interrupted: stopping the update of {} and restoring its previous services ... \
             press Ctrl-C again to force",
            instance.id
        ));
    };
    let updated = lifecycle::update(
        backend.as_ref(),
        &instance,
        &environment,
        &named,
        &options,
        &reporter.progress,
        &signals,
        &on_interrupt,
    )
    .await;
    drop(reporter);
    let updated = updated?;
    match args.output.output {
        Format::Json => output::json(&super::view::EnvironmentView::from(&updated)),
        Format::Text => output::data(&summary(&updated)),
    }
    Ok(ExitStatus::Success)
}

/// Why the environment's file could not be read, with where `update` looked and how to
/// name the files instead.
fn unread(error: LoadError, id: &str, given: &[PathBuf], recorded: Option<&[PathBuf]>) -> Error {
    if !matches!(error, LoadError::Read { .. }) || !given.is_empty() {
        return error.into();
    }
    let hint = match recorded {
        Some(files) => format!(
            "`{id}` was started from {}; `-f FILE` (repeated for override files) names the \
             files to read instead",
            files
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!(
            "envctl did not record which files `{id}` was started from (standard input, or an \
             earlier envctl); `-f FILE` names them, as given to `up`"
        ),
    };
    Error::Usage(format!("{error}\nhint: {hint}"))
}

/// `updated 20261126-041500: accounting (repo:tag) is ready` and its endpoints.
fn summary(updated: &Updated) -> String {
    let mut out = String::new();
    for service in &updated.services {
        out.push_str(&format!(
            "updated {}: {} ({}) is ready\n",
            updated.id, service.service, service.image
        ));
        out.push_str(&super::view::Service::from(service).endpoints());
    }
    out
}
