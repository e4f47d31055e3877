use crate::cli::DownArgs;
use crate::lifecycle::{self, inventory};
use crate::naming::label;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: DownArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let all = inventory::list(engine.as_ref()).await?;
    let chosen: Vec<_> = if args.all {
        all.into_iter()
            .filter(|i| {
                args.environment
                    .as_ref()
                    .is_none_or(|e| &i.environment == e)
            })
            .collect()
    } else {
        for id in args
            .ids
            .iter()
            .filter(|id| !all.iter().any(|i| &i.id == *id))
        {
            output::message(&format!("{id}: nothing to remove"));
        }
        all.into_iter()
            .filter(|i| args.ids.contains(&i.id))
            .collect()
    };
    lifecycle::down(engine.as_ref(), &chosen).await?;
    // Networks whose containers are already gone (a start killed early) go too.
    let mut filters = vec![inventory::managed()];
    if let Some(environment) = &args.environment {
        filters.push(format!("{}={environment}", label::ENVIRONMENT));
    }
    if args.all {
        lifecycle::remove_networks(engine.as_ref(), &filters).await?;
    }
    for id in &args.ids {
        let filters = [inventory::managed(), inventory::with_id(id)];
        lifecycle::remove_networks(engine.as_ref(), &filters).await?;
    }
    for instance in &chosen {
        output::message(&format!(
            "removed {} ({})",
            instance.id, instance.environment
        ));
    }
    Ok(ExitStatus::Success)
}
