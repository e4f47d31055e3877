use crate::cli::{EnvArgs, Format};
use crate::{Error, ExitStatus, lifecycle, output, pipeline};

pub async fn exec(args: EnvArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        let instance = lifecycle::require(backend, &args.id).await?;
        print(&instance, &args);
        Ok(ExitStatus::Success)
    })
    .await
}

fn print(instance: &lifecycle::Instance, args: &EnvArgs) {
    let variables = pipeline::environment_variables(instance);
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
}
