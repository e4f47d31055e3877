use crate::backend::ServiceState;
use crate::cli::{EnvArgs, Format};
use crate::{Error, ExitStatus, lifecycle, output, pipeline};

pub async fn exec(args: EnvArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        let instance = lifecycle::require(backend, &args.id).await?;
        print(&instance, &args)?;
        Ok(ExitStatus::Success)
    })
    .await
}

fn print(instance: &lifecycle::Instance, args: &EnvArgs) -> Result<(), Error> {
    let id = &instance.id;
    // Jobs that ended as they should are done, not stopped.
    let services = || instance.services.iter().filter(|s| !s.finished_job());
    if services().all(|s| s.status.state != ServiceState::Running) {
        return Err(super::not_running(
            id,
            &format!("no service of `{id}` runs: it has no endpoints"),
        ));
    }
    for stopped in services().filter(|s| s.status.state != ServiceState::Running) {
        output::warning(&format!(
            "service `{}` of `{id}` is {}: no variables for its ports\n\
             hint: `envctl start {id}` starts it, on new host ports",
            stopped.service(),
            stopped.status.state.as_str()
        ));
    }
    let variables = pipeline::environment_variables(instance, &Default::default());
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
    Ok(())
}
