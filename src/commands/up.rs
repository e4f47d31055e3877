use crate::cli::{Format, UpArgs};
use crate::lifecycle::{self, Started, UpOptions};
use crate::signals::Signals;
use crate::{Error, ExitStatus, naming, output};

pub async fn exec(args: UpArgs) -> Result<ExitStatus, Error> {
    let (environment, target) = super::select(&args.target)?;
    if let Some(name) = &args.name {
        naming::check_id(name).map_err(Error::Usage)?;
    }
    let options = UpOptions {
        name: args.name,
        timeout: args.timeout,
        keep_on_failure: args.keep_on_failure,
        owner: lifecycle::default_owner(),
        prefix_tags: target.overrides.iter().map(|o| o.service.clone()).collect(),
    };
    // Listen before touching the engine, so an early Ctrl-C still rolls back.
    let signals = Signals::listen().map_err(|e| Error::Internal(e.to_string()))?;
    let engine = super::engine().await?;
    let reporter = super::progress::reporter(environment.services.keys().map(String::as_str));
    let started = lifecycle::up(
        engine.as_ref(),
        &environment,
        &options,
        &reporter.progress,
        &signals,
    )
    .await;
    drop(reporter);
    let started = started?;
    match args.output.output {
        Format::Json => output::json(&started),
        Format::Text => output::data(&summary(&started)),
    }
    Ok(ExitStatus::Success)
}

/// `ready: accounting 20261126-041500` and one line per published endpoint.
pub fn summary(started: &Started) -> String {
    let mut out = format!(
        "environment {} is ready: id {}\n",
        started.environment, started.id
    );
    for service in &started.services {
        for port in &service.ports {
            let address = format!("{}:{}", output::display_host(&port.host_ip), port.host_port);
            let url = match &port.http_path {
                Some(path) => format!("  http://{address}{path}"),
                None => String::new(),
            };
            out.push_str(&format!(
                "  {} {} -> {address}{url}\n",
                service.service, port.container_port,
            ));
        }
    }
    out.push_str(&format!("remove it with: envctl down {}\n", started.id));
    out
}
