use crate::cli::{EnvArgs, Format};
use crate::pipeline::{self, Endpoint};
use crate::{Error, ExitStatus, lifecycle, output};

pub async fn exec(args: EnvArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    let endpoints = instance.containers.iter().flat_map(|c| {
        c.ports.iter().map(|p| Endpoint {
            service: c.service(),
            container_port: p.container_port,
            host: output::display_host(&p.host_ip),
            host_port: p.host_port,
        })
    });
    let variables = pipeline::variables(&instance.id, &instance.environment, endpoints);
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
