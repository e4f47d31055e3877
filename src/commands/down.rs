use crate::backend::Backend;
use crate::cli::DownArgs;
use crate::lifecycle::{self, LookupError, Selection, inventory};
use crate::spec::did_you_mean;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: DownArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let ids = resolve(backend.as_ref(), &args.ids).await?;
    let selection = match (&args.owner, args.all) {
        (Some(owner), _) => Selection::Owner(owner),
        (None, true) => Selection::All {
            environment: args.environment.as_deref(),
        },
        (None, false) => Selection::Ids(&ids),
    };
    let removed = lifecycle::down(backend.as_ref(), selection, args.grace).await?;
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
        return Err(Error::NotFound(unknown(backend.as_ref(), &missing).await));
    }
    for id in &missing {
        output::message(&format!("{id}: nothing to remove"));
    }
    if removed.is_empty() && args.ids.is_empty() {
        output::message("nothing to remove");
    }
    Ok(ExitStatus::Success)
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
