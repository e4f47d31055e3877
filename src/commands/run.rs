use crate::cli::RunArgs;
use crate::lifecycle::{self, Selection, Started};
use crate::pipeline::{self, Endpoint, Outcome};
use crate::signals::Signals;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: RunArgs) -> Result<ExitStatus, Error> {
    let signals = Signals::listen().map_err(|e| Error::Internal(e.to_string()))?;
    let (engine, started) = super::up::start(args.start, &signals).await?;
    let variables = variables(&started);
    output::message(&format!(
        "environment {} is ready: id {}; running `{}`",
        started.environment,
        started.id,
        args.command.join(" ")
    ));
    let outcome = if signals.count() > 0 {
        Ok(Outcome::Interrupted(130))
    } else {
        pipeline::run_command(&args.command, &variables, &signals).await
    };
    // The environment goes whatever happened to the command.
    let removed = lifecycle::down(
        engine.as_ref(),
        Selection::Ids(std::slice::from_ref(&started.id)),
    )
    .await;
    match &removed {
        Ok(_) => output::message(&format!("removed {}", started.id)),
        Err(error) => output::error(&format!(
            "could not remove {}: {error}\nhint: `envctl down {}`",
            started.id, started.id
        )),
    }
    let code = match outcome {
        Ok(Outcome::Exited(code) | Outcome::Interrupted(code)) => code,
        Err(error) => {
            output::error(&format!("cannot run `{}`: {error}", args.command.join(" ")));
            127
        }
    };
    Ok(ExitStatus::Code(u8::try_from(code).unwrap_or(1)))
}

fn variables(started: &Started) -> std::collections::BTreeMap<String, String> {
    let endpoints = started.services.iter().flat_map(|s| {
        s.ports.iter().map(|p| Endpoint {
            service: &s.service,
            container_port: p.container_port,
            host: output::display_host(&p.host_ip),
            host_port: p.host_port,
        })
    });
    pipeline::variables(&started.id, &started.environment, endpoints)
}
