use crate::cli::{Format, PortArgs};
use crate::{Error, ExitStatus, lifecycle, output};

use super::view::{self, Port};

pub async fn exec(args: PortArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    let id = &instance.id;
    let Some(container) = instance
        .containers
        .iter()
        .find(|c| c.service() == args.service)
    else {
        return Err(super::unknown_service(&instance, &args.service));
    };
    let mut ports = view::ports(container, engine.as_ref());
    if ports.is_empty() {
        let hint = match container.state.as_str() {
            "running" => String::new(),
            state => format!(
                "\nhint: it is {state}, and a stopped container publishes nothing: \
                 `envctl start {id}`"
            ),
        };
        return Err(Error::NotFound(format!(
            "service `{}` of `{id}` publishes no ports{hint}",
            args.service
        )));
    }
    if let Some(wanted) = &args.port {
        let published: Vec<String> = ports.iter().map(Port::name).collect();
        ports.retain(|p| p.container_port == wanted.number && p.protocol == wanted.protocol);
        if ports.is_empty() {
            return Err(Error::NotFound(format!(
                "service `{}` of `{id}` does not publish {}/{}\nhint: it publishes {}",
                args.service,
                wanted.number,
                wanted.protocol,
                published.join(", ")
            )));
        }
    }
    match args.output.output {
        Format::Json => output::json(&ports),
        // One port asked for: just `host:port`, for `$(envctl port ...)`.
        Format::Text if args.port.is_some() => output::data(&ports[0].address()),
        Format::Text => {
            let lines: String = ports
                .iter()
                .map(|p| format!("{}/{} -> {}\n", p.container_port, p.protocol, p.address()))
                .collect();
            output::data(&lines);
        }
    }
    Ok(ExitStatus::Success)
}
