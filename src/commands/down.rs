use std::io::{IsTerminal, Write};

use crate::backend::Backend;
use crate::cli::DownArgs;
use crate::lifecycle::{self, Bounded, Instance, LookupError, Recorded, TeardownError, inventory};
use crate::signals::Signals;
use crate::spec::did_you_mean;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: DownArgs) -> Result<ExitStatus, Error> {
    let engine = super::backend().await?;
    // Until the removal begins an interrupt ends `down` at once (it may be asking on the
    // terminal); each call gets `--timeout` to answer.
    let (quiet, _sender) = Signals::manual();
    let choosing = Bounded {
        backend: engine.as_ref(),
        deadline: None,
        per_call: Some(args.timeout),
        signals: &quiet,
    };
    let backend: &dyn Backend = &choosing;
    let ids = resolve(backend, &args.ids).await?;
    let many = args.all || args.owner.is_some();
    let chosen = match many {
        true => {
            let instances = inventory::list(backend).await?;
            let matching: Vec<&Instance> = instances
                .iter()
                .filter(|i| {
                    args.owner.as_deref().is_none_or(|o| i.owner() == Some(o))
                        && args
                            .environment
                            .as_deref()
                            .is_none_or(|e| e == i.environment())
                })
                .collect();
            // `--all` is one typo away from removing everyone's environments: on a terminal,
            // show them and ask. Scripts and CI (no terminal) are not asked.
            let ask = args.all && !args.yes && !matching.is_empty();
            if ask && std::io::stdin().is_terminal() && !confirm(&matching) {
                output::message("nothing removed");
                return Ok(ExitStatus::BadInput);
            }
            matching.iter().map(|i| i.id.clone()).collect()
        }
        false => ids.clone(),
    };
    let signals = Signals::listen().map_err(Error::Signals)?;
    let removing = Bounded {
        signals: &signals,
        ..choosing
    };
    let recorded = Recorded::new(&removing);
    let removal = lifecycle::down(&recorded, &chosen, args.grace);
    let first = async {
        signals.received(1).await;
        output::message(&format!(
            "interrupted: removing {} ... press Ctrl-C again to force",
            chosen.join(", ")
        ));
        std::future::pending::<()>().await;
    };
    let removed = tokio::select! {
        result = removal => match result {
            Err(TeardownError::Backend(error)) => {
                let cause = error.to_string();
                return Err(Error::Unfinished(unfinished(&recorded, &chosen, &cause)));
            }
            other => other?,
        },
        () = first => unreachable!("the notice never ends"),
        () = signals.received(2) => {
            let left = unfinished(&recorded, &chosen, "interrupted again");
            return Err(Error::Interrupted(left));
        }
    };
    for instance in &removed {
        output::message(&format!(
            "removed {} ({})",
            instance.id,
            instance.environment()
        ));
    }
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !removed.iter().any(|i| &i.id == *id))
        .collect();
    // An id names one environment, so finding nothing is a typo unless the caller says the
    // environment may be gone already; `--owner` and `--all` may rightly find nothing.
    if !missing.is_empty() && !args.ignore_missing {
        return Err(Error::NotFound(unknown(backend, &missing).await));
    }
    for id in &missing {
        output::message(&format!("{id}: nothing to remove"));
    }
    if removed.is_empty() && args.ids.is_empty() {
        output::message("nothing to remove");
    }
    Ok(ExitStatus::Success)
}

/// `cause`'s first line, what is gone and what is left of each environment in `chosen` that
/// was not removed completely, and the rest of `cause` (its hint).
fn unfinished(recorded: &Recorded<'_>, chosen: &[String], cause: &str) -> String {
    let (first, rest) = cause.split_once('\n').unwrap_or((cause, ""));
    let mut out = first.to_string();
    for id in chosen {
        let Some(cleanup) = recorded.cleanup(id) else {
            continue;
        };
        match cleanup.is_complete() {
            true => output::message(&format!("removed {id}")),
            false => out.push_str(&format!("\n{cleanup}")),
        }
    }
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}

/// The ids given, each a whole id or a unique prefix or suffix of one; an id that names nothing
/// stays as given, for the error that follows the removal of the others.
async fn resolve(backend: &dyn Backend, given: &[String]) -> Result<Vec<String>, Error> {
    if given.is_empty() {
        return Ok(Vec::new());
    }
    let instances = inventory::list(backend).await?;
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    given
        .iter()
        .map(|id| match inventory::resolve_id(id, &ids) {
            Ok(found) => Ok(found.to_string()),
            Err(LookupError::NoSuchEnvironment(_)) => Ok(id.clone()),
            Err(error) => Err(error.into()),
        })
        .collect()
}

/// Lists what `--all` would remove and asks on the terminal; anything but yes declines.
fn confirm(instances: &[&Instance]) -> bool {
    let rows: Vec<(&str, &str, &str)> = instances
        .iter()
        .map(|i| (i.id.as_str(), i.environment(), i.owner().unwrap_or("-")))
        .collect();
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{}", question(&rows));
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && is_yes(&answer)
}

/// `remove 2 environments?`, one line per environment, and `[y/N]`.
fn question(rows: &[(&str, &str, &str)]) -> String {
    let id_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let env_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = match rows.len() {
        1 => "remove this environment?\n".to_string(),
        n => format!("remove these {n} environments?\n"),
    };
    for (id, environment, owner) in rows {
        out.push_str(&format!(
            "  {id:<id_width$}  {environment:<env_width$}  owner {owner}\n"
        ));
    }
    out.push_str("remove? [y/N] ");
    out
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// `no environment `ID`` for each missing id, with the closest existing id as a hint.
async fn unknown(backend: &dyn Backend, missing: &[&String]) -> String {
    let existing: Vec<String> = inventory::list(backend)
        .await
        .map(|instances| instances.into_iter().map(|i| i.id).collect())
        .unwrap_or_default();
    let errors: Vec<String> = missing
        .iter()
        .map(|id| {
            let hint = match did_you_mean(id, existing.iter().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`?"),
                None => "`envctl ls` lists the environments; `--ignore-missing` accepts ids \
                         that are gone already"
                    .to_string(),
            };
            format!("no environment `{id}`\nhint: {hint}")
        })
        .collect();
    errors.join("\nerror: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_lists_what_would_go() {
        let rows = [
            ("20261126-041500", "accounting", "jenkins-accounting-7"),
            ("pr-42", "demo", "alice"),
        ];
        assert_eq!(
            question(&rows),
            "remove these 2 environments?\n\
             \x20 20261126-041500  accounting  owner jenkins-accounting-7\n\
             \x20 pr-42            demo        owner alice\n\
             remove? [y/N] "
        );
    }

    #[test]
    fn only_yes_confirms() {
        assert!(is_yes("y\n"));
        assert!(is_yes("Yes\n"));
        assert!(!is_yes("\n"));
        assert!(!is_yes("n\n"));
        assert!(!is_yes(""));
    }
}
