use serde::Serialize;

use crate::cli::{Format, PlanArgs};
use crate::graph::Plan;
use crate::lifecycle::StartError;
use crate::lifecycle::refs::{self, RefError};
use crate::spec::{Environment, PullPolicy, Service, Target};
use crate::{Error, ExitStatus, naming, output};

#[derive(Serialize)]
struct PlanJson<'a> {
    environment: &'a str,
    file: String,
    id: &'a str,
    waves: Vec<Vec<ServiceJson>>,
}

#[derive(Serialize)]
struct ServiceJson {
    service: String,
    image: String,
    container: String,
    ports: Vec<String>,
    depends_on: Vec<String>,
    links: Vec<LinkJson>,
    ready: Vec<String>,
    ready_timeout: String,
    pull: &'static str,
}

#[derive(Serialize)]
struct LinkJson {
    service: String,
    alias: String,
}

pub async fn exec(args: PlanArgs) -> Result<ExitStatus, Error> {
    let (mut environment, target) = super::select(&args.target)?;
    if let Some(pull) = super::pull_policy(args.pull) {
        for service in environment.services.values_mut() {
            service.pull = pull;
        }
    }
    resolve_refs(&mut environment, &target).await?;
    let id = match args.name {
        Some(name) => naming::check_id(&name)
            .map(|()| name)
            .map_err(Error::Usage)?,
        None => naming::run_id(chrono::Utc::now()),
    };
    let plan = Plan::new(&environment);
    match args.output.output {
        Format::Json => output::json(&to_json(&environment, &plan, &id)),
        Format::Text => output::data(&to_text(&environment, &plan, &id)),
    }
    Ok(ExitStatus::Success)
}

/// Replaces each `SERVICE@REF` by the tag `up` would run, as `up` finds it: the local tags,
/// then the registry's. When the engine or the registry cannot be reached, REF is shown as
/// given, with a warning; a refused login or a wrong REF fail as they would for `up`.
async fn resolve_refs(environment: &mut Environment, target: &Target) -> Result<(), Error> {
    if target.overrides.is_empty() {
        return Ok(());
    }
    let backend = match super::backend().await {
        Ok(backend) => backend,
        Err(error) => {
            output::warning(&format!("{error}\nshowing each SERVICE@REF as given"));
            return Ok(());
        }
    };
    for o in &target.overrides {
        let Some(service) = environment.services.get_mut(&o.service) else {
            continue;
        };
        match refs::choose_tag(backend.as_ref(), service, service.pull).await {
            Ok(Some(tag)) => service.image.tag = tag,
            Ok(None) => {}
            Err(error @ RefError::Registry { .. }) if !error.is_reachability() => {
                return Err(StartError::Ref {
                    service: o.service.clone(),
                    error: Box::new(error),
                }
                .into());
            }
            Err(error @ (RefError::Registry { .. } | RefError::Engine { .. })) => {
                output::warning(&format!(
                    "service `{}`: {error}\nshowing `{}@{}` as given",
                    o.service, o.service, o.reference
                ));
            }
            Err(error) => {
                return Err(StartError::Ref {
                    service: o.service.clone(),
                    error: Box::new(error),
                }
                .into());
            }
        }
    }
    Ok(())
}

fn service_json(service: &Service, id: &str) -> ServiceJson {
    ServiceJson {
        service: service.name.clone(),
        image: service.image.to_string(),
        container: naming::container_name(&service.name, id),
        ports: service.ports.iter().map(ToString::to_string).collect(),
        depends_on: service.depends_on.iter().cloned().collect(),
        links: service
            .links
            .iter()
            .map(|l| LinkJson {
                service: l.service.clone(),
                alias: l.alias.clone(),
            })
            .collect(),
        ready: service
            .ready
            .probes
            .iter()
            .map(ToString::to_string)
            .collect(),
        ready_timeout: humantime::format_duration(service.ready.timeout).to_string(),
        pull: service.pull.as_str(),
    }
}

fn to_json<'a>(environment: &'a Environment, plan: &Plan, id: &'a str) -> PlanJson<'a> {
    PlanJson {
        environment: &environment.name,
        file: environment.path.display().to_string(),
        id,
        waves: plan
            .waves
            .iter()
            .map(|wave| {
                wave.iter()
                    .map(|name| service_json(&environment.services[name], id))
                    .collect()
            })
            .collect(),
    }
}

fn to_text(environment: &Environment, plan: &Plan, id: &str) -> String {
    let mut out = format!(
        "environment {} ({}), id {id}\n",
        environment.name,
        environment.path.display()
    );
    for (i, wave) in plan.waves.iter().enumerate() {
        out.push_str(&format!("\nwave {}\n", i + 1));
        for name in wave {
            let s = service_json(&environment.services[name], id);
            out.push_str(&format!("  {}\n", s.service));
            out.push_str(&format!("    image      {}\n", s.image));
            out.push_str(&format!("    container  {}\n", s.container));
            if !s.ports.is_empty() {
                out.push_str(&format!("    ports      {}\n", s.ports.join(", ")));
            }
            if !s.links.is_empty() {
                let links: Vec<String> = s
                    .links
                    .iter()
                    .map(|l| format!("{} as {}", l.service, l.alias))
                    .collect();
                out.push_str(&format!("    links      {}\n", links.join(", ")));
            }
            let linked: Vec<&String> = s
                .depends_on
                .iter()
                .filter(|d| !s.links.iter().any(|l| &l.service == *d))
                .collect();
            if !linked.is_empty() {
                let names: Vec<&str> = linked.iter().map(|d| d.as_str()).collect();
                out.push_str(&format!("    after      {}\n", names.join(", ")));
            }
            if s.pull != PullPolicy::default().as_str() {
                out.push_str(&format!("    pull       {}\n", s.pull));
            }
            let ready = if s.ready.is_empty() {
                "container runs".to_string()
            } else {
                s.ready.join(" and ")
            };
            out.push_str(&format!(
                "    ready      {ready} (timeout {})\n",
                s.ready_timeout
            ));
        }
    }
    out
}
