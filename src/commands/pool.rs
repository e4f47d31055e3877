//! `envctl pool fill | ls | drain`: the warm pools (see `lifecycle::pool`, `docs/pool.md`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use serde::Serialize;

use crate::backend::Backend;
use crate::cli::{
    Format, PoolArgs, PoolCommand, PoolDrainArgs, PoolFiles, PoolFillArgs, PoolLsArgs,
};
use crate::lifecycle::pool::{self, FillOptions, Filled};
use crate::lifecycle::{Progress, UpOptions};
use crate::signals::Signals;
use crate::spec::{self, Catalog, Environment, Target, catalog};
use crate::{Error, ExitStatus, output, provenance};

/// How often `pool fill --watch` fills without being told of a change.
const WATCH_EVERY: Duration = Duration::from_secs(60);

pub async fn exec(args: PoolArgs) -> Result<ExitStatus, Error> {
    match args.command {
        PoolCommand::Fill(args) => fill(args).await,
        PoolCommand::Ls(args) => ls(args).await,
        PoolCommand::Drain(args) => drain(args).await,
    }
}

fn catalog(files: &PoolFiles) -> Result<Catalog, Error> {
    Ok(match files.file.as_slice() {
        [] => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
            Catalog::Dir(catalog::find_envdir(files.envdir.as_deref(), &cwd)?)
        }
        given => Catalog::Files(given.to_vec()),
    })
}

/// The environments `names` (every one that declares a pool when empty). A file of the
/// directory that does not load is skipped with a warning when not named.
fn pooled(files: &PoolFiles, names: &[String]) -> Result<Vec<Environment>, Error> {
    let catalog = catalog(files)?;
    if let Catalog::Files(_) = catalog {
        return Ok(vec![
            catalog.select(&Target::from_words(names).map_err(Error::Usage)?)?,
        ]);
    }
    if !names.is_empty() {
        return names
            .iter()
            .map(|name| {
                let target =
                    Target::from_words(std::slice::from_ref(name)).map_err(Error::Usage)?;
                Ok(catalog.select(&target)?)
            })
            .collect();
    }
    let mut environments = Vec::new();
    for path in catalog.files()? {
        match spec::load(&path) {
            Ok(environment) if environment.pool.is_some() => environments.push(environment),
            Ok(_) => {}
            Err(error) => output::warning(&format!("skipping `{}`: {error}", path.display())),
        }
    }
    Ok(environments)
}

async fn fill(args: PoolFillArgs) -> Result<ExitStatus, Error> {
    let environments = pooled(&args.files, &args.environments)?;
    for environment in &environments {
        if environment.pool.is_none() {
            return Err(Error::Usage(format!(
                "environment `{}` declares no pool\nhint: add `pool: {{size: N, services: \
                 [...]}}` to `{}`",
                environment.name,
                environment.path.display()
            )));
        }
    }
    if environments.is_empty() {
        output::message("no environment declares a pool");
        return Ok(ExitStatus::Success);
    }
    let backend = super::backend().await?;
    pool::check_backend(backend.as_ref())?;
    let signals = Signals::listen().map_err(Error::Signals)?;
    let options = |environment: &Environment| FillOptions {
        up: UpOptions {
            name: None,
            timeout: args.timeout,
            keep_on_failure: false,
            owner: provenance::default_owner(),
            prefix_tags: Vec::new(),
            ttl: None,
            build: Default::default(),
            lease: false,
            pull: super::pull_policy(args.pull),
            files: Some(vec![
                std::path::absolute(&environment.path).unwrap_or(environment.path.clone()),
            ]),
            pool: Default::default(),
            // A warm pool fills after every other start waiting for the engine's capacity.
            admission: crate::lifecycle::admission::AdmitOptions {
                priority: crate::backend::Priority::Low,
                fill: true,
                ..Default::default()
            },
        },
        max_age: args.max_age,
    };
    let quiet: Progress = Arc::new(|_, _| {});
    if !args.watch {
        let mut status = ExitStatus::Success;
        for environment in &environments {
            let filled = pool::fill(
                backend.as_ref(),
                environment,
                &options(environment),
                &quiet,
                &signals,
            )
            .await?;
            if report(&filled) {
                status = ExitStatus::Failure;
            }
        }
        return Ok(status);
    }
    output::message(&format!(
        "pool: filling {} on every change and every {}",
        environments
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_duration(WATCH_EVERY)
    ));
    let mut changes = backend.changes();
    loop {
        for environment in &environments {
            match pool::fill(
                backend.as_ref(),
                environment,
                &options(environment),
                &quiet,
                &signals,
            )
            .await
            {
                Ok(filled) => {
                    report(&filled);
                }
                Err(error) => output::error(&format!("pool `{}`: {error}", environment.name)),
            }
        }
        if signals.count() > 0 {
            return Ok(ExitStatus::Success);
        }
        // A burst of changes (a fill creates several containers) is one wake-up.
        tokio::select! {
            _ = changes.next() => tokio::time::sleep(Duration::from_millis(500)).await,
            () = tokio::time::sleep(WATCH_EVERY) => {}
            () = signals.received(1) => return Ok(ExitStatus::Success),
        }
    }
}

/// Prints what a fill did; whether something failed.
fn report(filled: &Filled) -> bool {
    let name = &filled.environment;
    if let Some(holder) = &filled.busy {
        let by = holder
            .filler
            .started_by
            .as_deref()
            .unwrap_or("another host");
        output::message(&format!(
            "pool `{name}`: skipped: another `envctl pool fill` ({by}) is filling it"
        ));
        return false;
    }
    for (id, why) in &filled.replaced {
        output::message(&format!("pool `{name}`: removed member {id}: {why}"));
    }
    for id in &filled.created {
        output::message(&format!("pool `{name}`: member {id} is ready"));
    }
    for error in &filled.failed {
        output::error(&format!(
            "pool `{name}`: a member failed to start and was removed: {error}"
        ));
    }
    for (id, why) in &filled.left {
        match id.is_empty() {
            true => output::warning(&format!("pool `{name}`: {why}")),
            false => output::warning(&format!(
                "pool `{name}`: could not remove member {id}: {why}"
            )),
        }
    }
    if filled.created.is_empty() && filled.replaced.is_empty() && filled.failed.is_empty() {
        output::message(&format!("pool `{name}`: full"));
    }
    !filled.failed.is_empty() || !filled.left.is_empty()
}

#[derive(Serialize)]
struct Row {
    environment: String,
    id: String,
    age_seconds: u64,
    state: String,
    /// `None` when the file could not be read.
    matches: Option<bool>,
    /// Why it does not match, or why that cannot be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

async fn ls(args: PoolLsArgs) -> Result<ExitStatus, Error> {
    let catalog = catalog(&args.files)?;
    super::briefly(super::Interrupts::End, async |backend, _| {
        let members = pool::members(backend).await?;
        let now = Utc::now();
        let mut rows = Vec::new();
        for member in &members {
            let (matches, why) = matching(backend, &catalog, member, now).await;
            rows.push(Row {
                environment: member.environment().to_string(),
                id: member.id.clone(),
                age_seconds: pool::age(member, now).as_secs(),
                state: pool::member_state(member, now).to_string(),
                matches,
                why,
            });
        }
        match args.output.output {
            Format::Json => output::json(&rows),
            Format::Text if rows.is_empty() => output::message("no pool members"),
            Format::Text => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.environment.clone(),
                            r.id.clone(),
                            output::short_duration(Duration::from_secs(r.age_seconds)),
                            r.state.clone(),
                            match (r.matches, &r.why) {
                                (Some(true), _) => "yes".into(),
                                (_, Some(why)) => format!("no: {why}"),
                                _ => "?".into(),
                            },
                        ]
                    })
                    .collect();
                let header = ["ENVIRONMENT", "ID", "AGE", "STATE", "MATCHES"];
                output::data(&output::table(&header, &cells));
            }
        }
        Ok(ExitStatus::Success)
    })
    .await
}

/// Whether `member` matches its environment's file as it reads now, and why not.
async fn matching(
    backend: &dyn Backend,
    catalog: &Catalog,
    member: &crate::lifecycle::Instance,
    now: chrono::DateTime<Utc>,
) -> (Option<bool>, Option<String>) {
    let target = Target::from_words(&[member.environment().to_string()]);
    let environment = match target.map(|t| catalog.select(&t)) {
        Ok(Ok(environment)) => environment,
        Ok(Err(error)) => return (None, Some(format!("cannot read its file: {error}"))),
        Err(error) => return (None, Some(error)),
    };
    let Some(pool) = &environment.pool else {
        return (
            Some(false),
            Some("its file declares no pool any more".into()),
        );
    };
    match pool::current_shape(backend, &environment, pool).await {
        Ok(Some(shape)) => {
            match pool::compare(
                member,
                &environment.name,
                &shape,
                pool::DEFAULT_MAX_AGE,
                now,
            ) {
                Ok(()) => (Some(true), None),
                // Not ready is its state, not a mismatch.
                Err(pool::Mismatch::State(_)) => (Some(true), None),
                Err(why) => (Some(false), Some(why.to_string())),
            }
        }
        Ok(None) => (
            Some(false),
            Some("an image of a pooled service is not on the engine".into()),
        ),
        Err(error) => (None, Some(error.to_string())),
    }
}

async fn drain(args: PoolDrainArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let (removed, left) = pool::drain(backend.as_ref(), args.environment.as_deref()).await?;
    for id in &removed {
        output::message(&format!("removed pool member {id}"));
    }
    if removed.is_empty() && left.is_empty() {
        output::message("no pool members");
    }
    for (id, why) in &left {
        output::error(&format!("could not remove pool member {id}: {why}"));
    }
    Ok(match left.is_empty() {
        true => ExitStatus::Success,
        false => ExitStatus::Failure,
    })
}
