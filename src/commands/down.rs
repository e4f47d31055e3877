use crate::cli::DownArgs;
use crate::lifecycle::{self, Selection};
use crate::{Error, ExitStatus, output};

pub async fn exec(args: DownArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let selection = match (&args.owner, args.all) {
        (Some(owner), _) => Selection::Owner(owner),
        (None, true) => Selection::All {
            environment: args.environment.as_deref(),
        },
        (None, false) => Selection::Ids(&args.ids),
    };
    let removed = lifecycle::down(engine.as_ref(), selection).await?;
    for id in args
        .ids
        .iter()
        .filter(|id| !removed.iter().any(|i| &i.id == *id))
    {
        output::message(&format!("{id}: nothing to remove"));
    }
    for instance in &removed {
        output::message(&format!(
            "removed {} ({})",
            instance.id, instance.environment
        ));
    }
    Ok(ExitStatus::Success)
}
