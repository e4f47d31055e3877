use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;

use crate::backend::Backend;
use crate::cli::RunArgs;
use crate::lifecycle::{self, Instance};
use crate::pipeline::{self, Outcome};
use crate::signals::Signals;
use crate::{Error, ExitStatus, output};

/// How long `run` waits for the removal of its environment (with `--grace`, dependents first
/// with a grace each).
const REMOVAL: Duration = Duration::from_secs(120);
/// The same after an interrupt, when everything is killed at once.
const REMOVAL_AFTER_INTERRUPT: Duration = Duration::from_secs(10);
/// How long joining or leaving the environment's network may take.
const NETWORK_CALL: Duration = Duration::from_secs(10);

/// envctl in a container of the engine joins the environment's network for the whole of the
/// command (see [`Backend::attach`]): the services' link names resolve from the command, as a
/// GitLab job's `services:` do, and the ENVCTL_* variables give their own addresses, by service
/// (empty when envctl did not join: published ports answer from here instead).
async fn join(backend: &dyn Backend, instance: &Instance) -> BTreeMap<String, String> {
    let joined = match tokio::time::timeout(NETWORK_CALL, backend.attach(&instance.id)).await {
        Ok(Ok(joined)) => joined,
        Ok(Err(error)) => {
            output::warning(&format!(
                "could not connect envctl's container to environment {}: {error}",
                instance.id
            ));
            return BTreeMap::new();
        }
        Err(_) => return BTreeMap::new(),
    };
    if let Some(warning) = &joined.warning {
        output::warning(warning);
    }
    if !joined.joined {
        return BTreeMap::new();
    }
    let mut own = BTreeMap::new();
    for service in &instance.services {
        if service.status.endpoints.is_empty() {
            continue;
        }
        if let Ok(Ok(status)) =
            tokio::time::timeout(NETWORK_CALL, backend.status(&service.handle)).await
            && let Some(address) = status.direct
        {
            let host = match address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            own.insert(service.service().to_string(), host);
        }
    }
    own
}

/// Disconnects envctl's container from the environment's network once the command ended,
/// whatever happens to the environment next (it may be kept).
async fn leave(backend: &dyn Backend, id: &str) {
    let left = tokio::time::timeout(NETWORK_CALL, backend.detach(id)).await;
    if let Ok(Err(error)) = left {
        output::warning(&format!(
            "could not disconnect envctl's container from environment {id}: {error}"
        ));
    }
}

pub async fn exec(args: RunArgs) -> Result<ExitStatus, Error> {
    let signals = Signals::listen().map_err(Error::Signals)?;
    let keep_on_failure = args.start.keep_on_failure;
    let (backend, started) = super::up::start(args.start, &signals, true).await?;
    let id = started.id.clone();
    let instance = lifecycle::require(backend.as_ref(), &id).await?;
    let own = join(backend.as_ref(), &instance).await;
    let variables = pipeline::environment_variables(&instance, &own);
    let shown = args.command.join(" ");
    output::message(&format!(
        "environment {} is ready: id {id}; running `{shown}`",
        started.environment
    ));
    let holding = instance.lease_until().map(|_| {
        let (backend, metadata) = (backend.clone(), instance.metadata.clone());
        tokio::spawn(async move {
            let mut renewals = std::pin::pin!(lifecycle::lease::hold(backend.as_ref(), &metadata));
            while let Some(warning) = renewals.next().await {
                output::warning(&warning);
            }
        })
    });
    let outcome = pipeline::run_command(&args.command, &variables, &signals).await;
    if let Some(holding) = holding {
        holding.abort();
    }
    leave(backend.as_ref(), &id).await;
    let code = match outcome {
        Ok(Outcome::Exited(code) | Outcome::Interrupted(code)) => code,
        Err(error) => {
            output::error(&format!("cannot run `{shown}`: {error}"));
            pipeline::spawn_failure_code(&error)
        }
    };
    // A command that failed on its own (not one envctl interrupted) leaves what explains it.
    let interrupted = signals.count();
    let failed = code != 0 && interrupted == 0;
    if failed && let Some(dir) = &args.logs {
        match super::logs::save(backend.as_ref(), &instance, dir).await {
            Ok(files) => {
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect();
                output::message(&format!(
                    "saved the services' logs in `{}`: {}",
                    dir.display(),
                    names.join(", ")
                ));
            }
            Err(error) => output::warning(&format!("could not save the logs: {error}")),
        }
    }
    if failed && keep_on_failure {
        output::message(&format!(
            "`{shown}` failed (exit {code}): keeping environment {id} (--keep-on-failure)\n\
             remove it with: envctl down {id}"
        ));
        return Ok(ExitStatus::Code(u8::try_from(code).unwrap_or(1)));
    }
    // The environment goes whatever else happened to the command: killed at once unless
    // `--grace` asks for a graceful stop, and always at once after an interrupt, as a CI system
    // that sent it will not wait long. A hung engine must not hang the job: the
    // removal is bounded, and another signal ends the wait.
    let removal = async {
        if interrupted > 0 {
            lifecycle::remove_now(backend.as_ref(), &instance).await
        } else {
            let ids = std::slice::from_ref(&id);
            lifecycle::down(backend.as_ref(), ids, args.grace)
                .await
                .map(drop)
        }
    };
    let bound = if interrupted > 0 {
        REMOVAL_AFTER_INTERRUPT
    } else {
        REMOVAL
    };
    let removed = tokio::select! {
        removed = tokio::time::timeout(bound, removal) => match removed {
            Ok(removed) => removed.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the Docker engine did not finish within {}",
                humantime::format_duration(bound)
            )),
        },
        () = signals.received(interrupted + 1) => Err("interrupted while removing it".into()),
    };
    match removed {
        Ok(()) => output::message(&format!("removed {id}")),
        Err(error) => {
            output::error(&format!(
                "could not remove {id}: {error}\nhint: `envctl down {id}`"
            ));
            // A passing command must not hide a leak from the CI system.
            if code == 0 {
                return Ok(ExitStatus::Failure);
            }
        }
    }
    Ok(ExitStatus::Code(u8::try_from(code).unwrap_or(1)))
}
