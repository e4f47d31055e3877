use serde::Serialize;

use crate::cli::{Format, IdArgs};
use crate::lifecycle;
use crate::{Error, ExitStatus, naming, output};

#[derive(Serialize)]
struct ServiceStatus {
    service: String,
    container: String,
    state: String,
    health: Option<String>,
    restarts: i64,
    exit_code: Option<i64>,
    ports: Vec<lifecycle::PortJson>,
}

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instance = lifecycle::require(engine.as_ref(), &args.id).await?;
    crate::state::touch(engine.endpoint(), &instance.id, "envctl status");
    let details = lifecycle::inspect_all(engine.as_ref(), &instance).await?;
    let services: Vec<ServiceStatus> = instance
        .containers
        .iter()
        .zip(details)
        .map(|(c, details)| ServiceStatus {
            service: c.service().to_string(),
            container: c.name.clone(),
            state: details.state.to_string(),
            health: details.health,
            restarts: details.restarts,
            exit_code: details.exit_code,
            ports: details
                .ports
                .iter()
                .map(|p| lifecycle::PortJson::at(p, engine.reachable_host(&p.host_ip)))
                .collect(),
        })
        .chain(
            instance
                .missing_services()
                .into_iter()
                .map(|service| ServiceStatus {
                    container: naming::container_name(&service, &instance.id),
                    service,
                    state: "missing".into(),
                    health: None,
                    restarts: 0,
                    exit_code: None,
                    ports: Vec::new(),
                }),
        )
        .collect();
    match args.output.output {
        Format::Json => output::json(&services),
        Format::Text => {
            let rows: Vec<Vec<String>> = services
                .iter()
                .map(|s| {
                    let ports: Vec<String> = s
                        .ports
                        .iter()
                        .map(|p| {
                            let host = engine.reachable_host(&p.host_ip);
                            format!("{}->{host}:{}", p.container_port, p.host_port)
                        })
                        .collect();
                    vec![
                        s.service.clone(),
                        s.container.clone(),
                        s.state.clone(),
                        s.health.clone().unwrap_or_else(|| "-".into()),
                        s.restarts.to_string(),
                        s.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                        ports.join(" "),
                    ]
                })
                .collect();
            let header = [
                "SERVICE",
                "CONTAINER",
                "STATE",
                "HEALTH",
                "RESTARTS",
                "EXIT",
                "PORTS",
            ];
            output::data(&output::table(&header, &rows));
        }
    }
    Ok(ExitStatus::Success)
}
