use chrono::Utc;
use serde::Serialize;

use crate::cli::{Format, ReapArgs, ReaperArgs};
use crate::reaper::{self, Action, ActionKind, Cause, Options, Report};
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
        pause_after: args.pause_after,
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
        Format::Json => output::json(&ReportView::from(report)),
        Format::Text => {
            let stamp = match timestamped {
                true => format!("{} ", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")),
                false => String::new(),
            };
            for action in &report.actions {
                let verb = match (action.action, report.dry_run, &action.error) {
                    (ActionKind::Pause, _, Some(_)) => "failed to pause",
                    (ActionKind::Pause, false, None) => "paused",
                    (ActionKind::Pause, true, None) => "would pause",
                    (ActionKind::Stop, _, Some(_)) => "failed to stop",
                    (ActionKind::Remove, _, Some(_)) => "failed to remove",
                    (ActionKind::Stop, false, None) => "stopped",
                    (ActionKind::Remove, false, None) => "removed",
                    (ActionKind::Stop, true, None) => "would stop",
                    (ActionKind::Remove, true, None) => "would remove",
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

/// `reap -o json`: one pass.
#[derive(Debug, Serialize)]
struct ReportView<'a> {
    dry_run: bool,
    actions: Vec<ActionView<'a>>,
    /// Problems that did not stop the pass.
    warnings: &'a [String],
}

/// What the pass did, or would do, to one environment.
#[derive(Debug, Serialize)]
struct ActionView<'a> {
    /// `stop` or `remove`.
    action: &'static str,
    id: &'a str,
    environment: &'a str,
    /// `accounting@ea6757a8090d`, or the environment's name.
    subject: &'a str,
    /// The sentence.
    reason: String,
    /// The reason's kind, for machines: [`cause`].
    cause: &'static str,
    /// Set when acting failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> From<&'a Report> for ReportView<'a> {
    fn from(report: &'a Report) -> Self {
        ReportView {
            dry_run: report.dry_run,
            actions: report.actions.iter().map(ActionView::from).collect(),
            warnings: &report.warnings,
        }
    }
}

impl<'a> From<&'a Action> for ActionView<'a> {
    fn from(action: &'a Action) -> Self {
        ActionView {
            action: match action.action {
                ActionKind::Pause => "pause",
                ActionKind::Stop => "stop",
                ActionKind::Remove => "remove",
            },
            id: &action.id,
            environment: &action.environment,
            subject: &action.subject,
            reason: action.reason.to_string(),
            cause: cause(action.reason.cause()),
            error: action.error.as_deref(),
        }
    }
}

/// The word `reap -o json` gives a reason's kind.
fn cause(cause: Cause) -> &'static str {
    match cause {
        Cause::TtlExpired => "ttl_expired",
        Cause::StartNeverFinished => "start_never_finished",
        Cause::NoServiceLeft => "no_service_left",
        Cause::StoppedTooLong => "stopped_too_long",
        Cause::OlderThanMaxAge => "older_than_max_age",
        Cause::Crashed => "crashed",
        Cause::Idle => "idle",
        Cause::ErrorRate => "error_rate",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reaper::Reason;

    #[test]
    fn the_json_of_a_pass_has_the_sentence_and_its_cause_in_this_order() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T04:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let report = Report {
            dry_run: true,
            actions: vec![
                Action {
                    action: ActionKind::Stop,
                    id: "20261126-041500".into(),
                    environment: "accounting".into(),
                    subject: "accounting@ea6757a8090d".into(),
                    reason: Reason::Idle {
                        idle: Duration::from_secs(7200),
                        last: "envctl logs".into(),
                        at,
                    },
                    error: None,
                },
                Action {
                    action: ActionKind::Remove,
                    id: "20261126-041501".into(),
                    environment: "shop".into(),
                    subject: "shop".into(),
                    reason: Reason::NoServiceLeft,
                    error: Some("engine busy".into()),
                },
            ],
            warnings: vec!["the state file was reset".into()],
        };
        let json = serde_json::to_string(&ReportView::from(&report)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"dry_run":true,"actions":["#,
                r#"{"action":"stop","id":"20261126-041500","environment":"accounting","#,
                r#""subject":"accounting@ea6757a8090d","#,
                r#""reason":"idle for 2h00m, last activity: envctl logs at 04:15 UTC","#,
                r#""cause":"idle"},"#,
                r#"{"action":"remove","id":"20261126-041501","environment":"shop","#,
                r#""subject":"shop","#,
                r#""reason":"no service container is left, only envctl's markers or network","#,
                r#""cause":"no_service_left","error":"engine busy"}],"#,
                r#""warnings":["the state file was reset"]}"#
            )
        );
    }

    #[test]
    fn every_cause_has_its_snake_case_word() {
        let words: Vec<&str> = [
            Cause::TtlExpired,
            Cause::StartNeverFinished,
            Cause::NoServiceLeft,
            Cause::StoppedTooLong,
            Cause::OlderThanMaxAge,
            Cause::Crashed,
            Cause::Idle,
            Cause::ErrorRate,
        ]
        .into_iter()
        .map(cause)
        .collect();
        assert_eq!(
            words,
            [
                "ttl_expired",
                "start_never_finished",
                "no_service_left",
                "stopped_too_long",
                "older_than_max_age",
                "crashed",
                "idle",
                "error_rate"
            ]
        );
    }
}
