use crate::cli::{Format, UpdateArgs};
use crate::lifecycle::{self, UpdateOptions, Updated};
use crate::signals::Signals;
use crate::spec::{Catalog, Override, Target};
use crate::{Error, ExitStatus, output};

pub async fn exec(args: UpdateArgs) -> Result<ExitStatus, Error> {
    // Listen before touching the engine, so an early Ctrl-C still restores.
    let signals = Signals::listen().map_err(Error::Signals)?;
    let overrides: Vec<Override> = args
        .services
        .iter()
        .map(|word| word.parse())
        .collect::<Result<_, String>>()
        .map_err(Error::Usage)?;
    let backend = super::backend().await?;
    // `--timeout` bounds the update from here on.
    let looking = lifecycle::Bounded {
        backend: backend.as_ref(),
        deadline: tokio::time::Instant::now().checked_add(args.timeout),
        per_call: None,
        signals: &signals,
    };
    let instance = lifecycle::require(&looking, &args.id).await?;
    let catalog = match &args.file {
        Some(file) => Catalog::Files(vec![file.clone()]),
        None => Catalog::Dir(args.envdir.clone()),
    };
    let target = Target {
        environment: Some(instance.environment().to_string()),
        overrides: overrides.clone(),
    };
    let environment = catalog.select(&target)?;
    super::touch(backend.endpoint(), &instance.id, "envctl update");
    let named: Vec<String> = overrides.into_iter().map(|o| o.service).collect();
    let options = UpdateOptions {
        timeout: args.timeout,
        with_dependents: args.with_dependents,
        grace: args.grace,
    };
    let reporter = super::progress::reporter(named.iter().map(String::as_str));
    let on_interrupt = || {
        reporter.interrupted(&format!(
            "interrupted: stopping the update of {} and restoring its previous services ... \
             press Ctrl-C again to force",
            instance.id
        ));
    };
    let updated = lifecycle::update(
        backend.as_ref(),
        &instance,
        &environment,
        &named,
        &options,
        &reporter.progress,
        &signals,
        &on_interrupt,
    )
    .await;
    drop(reporter);
    let updated = updated?;
    match args.output.output {
        Format::Json => output::json(&super::view::Environment::from(&updated)),
        Format::Text => output::data(&summary(&updated)),
    }
    Ok(ExitStatus::Success)
}

/// `updated 20261126-041500: accounting (repo:tag) is ready` and its endpoints.
fn summary(updated: &Updated) -> String {
    let mut out = String::new();
    for service in &updated.services {
        out.push_str(&format!(
            "updated {}: {} ({}) is ready\n",
            updated.id, service.service, service.image
        ));
        for port in &service.ports {
            let address = format!("{}:{}", port.host, port.host_port);
            let url = match port.http {
                true => format!("  http://{address}/"),
                false => String::new(),
            };
            out.push_str(&format!(
                "  {} {} -> {address}{url}\n",
                service.service, port.container_port
            ));
        }
    }
    out
}
