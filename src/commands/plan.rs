use serde::Serialize;

use crate::cli::{Format, PlanArgs};
use crate::graph::Plan;
use std::collections::BTreeMap;

use crate::lifecycle::StartError;
use crate::lifecycle::refs::{self, RefError};
use crate::spec::runtime::MountSource;
use crate::spec::{Environment, PullPolicy, Runtime, Service, Target};
use crate::{Error, ExitStatus, naming, output};

#[derive(Serialize)]
struct PlanJson<'a> {
    environment: &'a str,
    file: String,
    id: &'a str,
    /// The named volumes this copy gets, by their engine names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
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
    #[serde(flatten)]
    runtime: RuntimeJson,
}

/// What of a service's [`Runtime`] differs from Docker's defaults.
#[derive(Serialize, Default)]
struct RuntimeJson {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period: Option<String>,
}

fn runtime_json(runtime: &Runtime, id: &str) -> RuntimeJson {
    RuntimeJson {
        volumes: runtime
            .mounts
            .iter()
            .map(|mount| {
                let mut mount = mount.clone();
                if let MountSource::Volume(name) = &mut mount.source {
                    *name = naming::volume_name(id, name);
                }
                mount.to_string()
            })
            .collect(),
        tmpfs: runtime.tmpfs.iter().map(ToString::to_string).collect(),
        shm_size_bytes: runtime.shm_size.map(|b| b.0),
        mem_limit_bytes: runtime.mem_limit.map(|b| b.0),
        cpus: runtime.cpus.map(|c| c.0 as f64 / 1e9),
        restart: runtime.restart.map(|r| r.to_string()),
        entrypoint: runtime.entrypoint.clone(),
        user: runtime.user.clone(),
        working_dir: runtime.working_dir.clone(),
        extra_hosts: runtime
            .extra_hosts
            .iter()
            .map(|h| format!("{}:{}", h.host, h.address))
            .collect(),
        labels: runtime.labels.clone(),
        stop_grace_period: runtime
            .stop_grace_period
            .map(|d| humantime::format_duration(d).to_string()),
    }
}

/// The text lines of a service's runtime settings, as `    key        value`.
fn runtime_text(runtime: &Runtime, json: &RuntimeJson) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if !json.volumes.is_empty() {
        lines.push(("volumes", json.volumes.join(", ")));
    }
    if !json.tmpfs.is_empty() {
        lines.push(("tmpfs", json.tmpfs.join(", ")));
    }
    let mut limits = Vec::new();
    if let Some(shm) = runtime.shm_size {
        limits.push(format!("shm {shm}"));
    }
    if let Some(memory) = runtime.mem_limit {
        limits.push(format!("memory {memory}"));
    }
    if let Some(cpus) = runtime.cpus {
        limits.push(format!("cpus {cpus}"));
    }
    if !limits.is_empty() {
        lines.push(("limits", limits.join(", ")));
    }
    if let Some(restart) = &json.restart {
        lines.push(("restart", restart.clone()));
    }
    if let Some(entrypoint) = &json.entrypoint {
        lines.push(("entrypoint", format!("{entrypoint:?}")));
    }
    if let Some(user) = &json.user {
        lines.push(("user", user.clone()));
    }
    if let Some(dir) = &json.working_dir {
        lines.push(("workdir", dir.clone()));
    }
    if !json.extra_hosts.is_empty() {
        lines.push(("hosts", json.extra_hosts.join(", ")));
    }
    if !json.labels.is_empty() {
        let labels: Vec<String> = json
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(("labels", labels.join(", ")));
    }
    if let Some(grace) = &json.stop_grace_period {
        lines.push(("stop grace", grace.clone()));
    }
    lines
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
    let plan = Plan::new(
        environment
            .services
            .values()
            .map(|s| (s.name.as_str(), s.depends_on.iter().map(String::as_str))),
    );
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
        ports: service
            .runtime
            .ports
            .iter()
            .map(ToString::to_string)
            .collect(),
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
        runtime: runtime_json(&service.runtime, id),
    }
}

fn to_json<'a>(environment: &'a Environment, plan: &Plan, id: &'a str) -> PlanJson<'a> {
    PlanJson {
        environment: &environment.name,
        file: environment.path.display().to_string(),
        id,
        volumes: volume_names(environment, id),
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

fn volume_names(environment: &Environment, id: &str) -> Vec<String> {
    environment
        .volumes
        .keys()
        .map(|name| naming::volume_name(id, name))
        .collect()
}

fn to_text(environment: &Environment, plan: &Plan, id: &str) -> String {
    let mut out = format!(
        "environment {} ({}), id {id}\n",
        environment.name,
        environment.path.display()
    );
    let volumes = volume_names(environment, id);
    if !volumes.is_empty() {
        out.push_str(&format!("volumes {}\n", volumes.join(", ")));
    }
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
            let service = &environment.services[name];
            for (key, value) in runtime_text(&service.runtime, &s.runtime) {
                out.push_str(&format!("    {key:<10} {value}\n"));
            }
        }
    }
    out
}
