use serde::Serialize;

use crate::backend::Backend;
use crate::cli::{Format, IdArgs};
use crate::lifecycle;
use crate::lifecycle::admission;
use crate::{Error, ExitStatus, naming, output};

use super::view::Port;

/// `status -o json`: the environment and each of its services.
#[derive(Serialize)]
struct Status {
    id: String,
    environment: String,
    services: Vec<ServiceStatus>,
    /// Adopted from a warm pool: how long its pooled services had been warm then.
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted_warm_seconds: Option<u64>,
    /// Bytes of memory it reserved when admitted under the engine's capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved_memory: Option<u64>,
    /// Bytes its running services use now, shown next to what it reserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_used: Option<u64>,
    /// While it is stopped: why envctl stopped it on its own, as recorded in this host's
    /// reaper state (a reaper pass, or a start that made room for another).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<crate::state::Stop>,
}

#[derive(Serialize)]
struct ServiceStatus {
    service: String,
    container: String,
    state: String,
    health: Option<String>,
    restarts: i64,
    exit_code: Option<i64>,
    ports: Vec<Port>,
}

pub async fn exec(args: IdArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        status(backend, args).await
    })
    .await
}

async fn status(backend: &dyn Backend, args: IdArgs) -> Result<ExitStatus, Error> {
    let instance = lifecycle::require(backend, &args.id).await?;
    super::touch(backend.endpoint(), &instance.id, "envctl status").await;
    let details = lifecycle::statuses(backend, &instance).await?;
    let services: Vec<ServiceStatus> = instance
        .services
        .iter()
        .zip(details)
        .map(|(s, details)| ServiceStatus {
            service: s.service().to_string(),
            container: s.handle.name.clone(),
            state: details.state.as_str().to_string(),
            health: details.health.as_str().map(str::to_string),
            restarts: details.restarts.into(),
            exit_code: details.exit_code,
            ports: details.endpoints.iter().map(Port::from).collect(),
        })
        .chain(instance.aside.iter().map(|s| ServiceStatus {
            service: s.service().to_string(),
            container: s.handle.name.clone(),
            state: "set-aside".into(),
            health: None,
            restarts: 0,
            exit_code: s.status.exit_code,
            ports: Vec::new(),
        }))
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
    if instance.update_left(chrono::Utc::now()) {
        output::warning(&format!(
            "an update of `{id}` was left half-way: what runs under the names of the services \
             set aside never finished its update\nhint: `envctl start {id}` restores the \
             previous services",
            id = instance.id
        ));
    }
    let stopped = why_stopped(backend, &instance).await;
    let reserved = instance.metadata.memory;
    let used = match reserved {
        Some(_) => admission::used(backend, &instance).await,
        None => None,
    };
    match args.output.output {
        Format::Json => output::json(&Status {
            id: instance.id.clone(),
            environment: instance.environment().to_string(),
            services,
            adopted_warm_seconds: lifecycle::pool::warm_for(&instance).map(|d| d.as_secs()),
            reserved_memory: reserved,
            memory_used: used,
            stopped,
        }),
        Format::Text => {
            let rows: Vec<Vec<String>> = services
                .iter()
                .map(|s| {
                    let ports: Vec<String> = s
                        .ports
                        .iter()
                        .map(|p| format!("{}->{}", p.name(), p.address()))
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
            if let Some(warm) = lifecycle::pool::warm_for(&instance) {
                output::message(&format!(
                    "adopted from the warm pool: its pooled services had been warm for {}",
                    output::short_duration(warm)
                ));
            }
            if let Some(stop) = &stopped {
                output::message(&format!(
                    "stopped by envctl at {} {}",
                    stop.at.format("%Y-%m-%d %H:%M UTC"),
                    stop.reason
                ));
            }
            if let Some(reserved) = reserved {
                let used = used.map_or_else(|| "?".into(), admission::size);
                output::data(&format!(
                    "memory: {used} used of {} reserved\n",
                    admission::size(reserved)
                ));
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// Why envctl stopped `instance` on its own, while it is stopped and `envctl start` did not
/// start it since: the reaper's state file of this host keeps it.
async fn why_stopped(
    backend: &dyn Backend,
    instance: &lifecycle::inventory::Instance,
) -> Option<crate::state::Stop> {
    if instance.state(chrono::Utc::now()) != lifecycle::inventory::State::Stopped {
        return None;
    }
    let (state, _) = crate::state::Store::from_env().read_async().await;
    state
        .record(backend.endpoint(), &instance.id)
        .and_then(|r| r.stopped.clone())
}
