use chrono::Utc;

use crate::cli::{Format, ReapArgs, ReaperArgs};
use crate::reaper::{self, Kind, Options, Report};
use crate::signals::Signals;
use crate::state::Store;
use crate::{Error, ExitStatus, output};

fn options(args: &ReapArgs) -> Options {
    Options {
        idle: args.idle,
        remove_after: args.remove_after,
        max_age: args.max_age,
        dry_run: args.dry_run,
        environment: args.environment.clone(),
        stop_erroring: args.stop_erroring,
    }
}

/// `envctl reap`: one pass.
pub async fn once(args: ReapArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let report = reaper::pass(
        backend.as_ref(),
        &Store::from_env(),
        &options(&args),
        Utc::now(),
    )
    .await?;
    Ok(print(&report, args.output.output, false))
}

/// `envctl reaper`: a pass every `--every` until a signal.
pub async fn daemon(args: ReaperArgs) -> Result<ExitStatus, Error> {
    let signals = Signals::listen().map_err(Error::Signals)?;
    // A second signal exits at once, whatever is in flight.
    let second = signals.clone();
    tokio::spawn(async move {
        second.received(2).await;
        output::message("reaper: second signal, exiting now");
        std::process::exit(130);
    });
    let backend = super::backend().await?;
    let store = Store::from_env();
    let options = options(&args.reap);
    output::message(&format!(
        "reaper: a pass every {}, state in {}",
        humantime::format_duration(args.every),
        store.dir().display()
    ));
    let format = args.reap.output.output;
    reaper::daemon(
        backend.as_ref(),
        &store,
        &options,
        args.every,
        &signals,
        |result| match result {
            Ok(report) => {
                print(report, format, true);
            }
            Err(error) => output::error(&format!("reaper pass failed: {error}")),
        },
    )
    .await;
    output::message("reaper: stopped");
    Ok(ExitStatus::Success)
}

/// Prints the actions (stdout) and warnings (stderr); the exit status says whether every
/// action succeeded.
fn print(report: &Report, format: Format, timestamped: bool) -> ExitStatus {
    for warning in &report.warnings {
        output::warning(warning);
    }
    match format {
        Format::Json => output::json(report),
        Format::Text => {
            let stamp = match timestamped {
                true => format!("{} ", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")),
                false => String::new(),
            };
            for action in &report.actions {
                let verb = match (action.action, report.dry_run, &action.error) {
                    (Kind::Stop, _, Some(_)) => "failed to stop",
                    (Kind::Remove, _, Some(_)) => "failed to remove",
                    (Kind::Stop, false, None) => "stopped",
                    (Kind::Remove, false, None) => "removed",
                    (Kind::Stop, true, None) => "would stop",
                    (Kind::Remove, true, None) => "would remove",
                };
                let error = action
                    .error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                let line = format!(
                    "{stamp}{verb} {} ({}): {}{error}",
                    action.id, action.subject, action.reason
                );
                output::data(&line);
            }
        }
    }
    if report.actions.iter().any(|a| a.error.is_some()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}
