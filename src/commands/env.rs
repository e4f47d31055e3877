use crate::cli::{EnvArgs, Format};
use crate::{Error, ExitStatus, lifecycle, output, pipeline};

pub async fn exec(args: EnvArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    let variables = pipeline::environment_variables(&instance);
    match args.output.output {
        Format::Json => output::json(&variables),
        Format::Text => {
            let lines: String = variables
                .iter()
                .map(|(key, value)| format!("export {key}='{}'\n", value.replace('\'', "'\\''")))
                .collect();
            output::data(&lines);
        }
    }
    Ok(ExitStatus::Success)
}
