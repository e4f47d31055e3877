use crate::backend::{Backend, ServiceState};
use crate::cli::{Format, PortArgs};
use crate::{Error, ExitStatus, lifecycle, output};

use super::view::{self, Port};

pub async fn exec(args: PortArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        port(backend, args).await
    })
    .await
}

async fn port(backend: &dyn Backend, args: PortArgs) -> Result<ExitStatus, Error> {
    let instance = lifecycle::require(backend, &args.id).await?;
    let id = &instance.id;
    let Some(container) = instance
        .services
        .iter()
        .find(|c| c.service() == args.service)
    else {
        return Err(super::unknown_service(&instance, &args.service));
    };
    if container.status.state != ServiceState::Running {
        return Err(super::not_running(
            id,
            &format!(
                "service `{}` of `{id}` is {}: a service that does not run publishes no ports",
                args.service,
                container.status.state.as_str()
            ),
        ));
    }
    let mut ports = view::ports(container);
    if ports.is_empty() {
        return Err(Error::NotFound(format!(
            "service `{}` of `{id}` publishes no ports",
            args.service
        )));
    }
    if let Some(wanted) = &args.port {
        let published: Vec<String> = ports.iter().map(Port::name).collect();
        ports.retain(|p| p.container_port == wanted.number && p.protocol == wanted.protocol);
        if ports.is_empty() {
            return Err(Error::NotFound(format!(
                "service `{}` of `{id}` does not publish {wanted}\nhint: it publishes {}",
                args.service,
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
                .map(|p| {
                    format!(
                        "{}/{} -> {}\n",
                        p.container_port,
                        p.protocol.as_str(),
                        p.address()
                    )
                })
                .collect();
            output::data(&lines);
        }
    }
    Ok(ExitStatus::Success)
}
