use crate::cli::BuildArgs;
use crate::{Error, ExitStatus, lifecycle, output};

pub async fn exec(args: BuildArgs) -> Result<ExitStatus, Error> {
    let (environment, _) = super::select(&args.target)?;
    let backend = super::backend().await?;
    let built = lifecycle::build_environment(backend.as_ref(), &environment).await?;
    if built.is_empty() {
        output::message(&format!(
            "environment `{}` builds no images",
            environment.name
        ));
    }
    for image in built {
        output::message(&format!("built {image}"));
    }
    Ok(ExitStatus::Success)
}
