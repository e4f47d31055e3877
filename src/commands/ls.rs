use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;

use crate::backend::Backend;
use crate::cli::{Format, OutputArgs};
use crate::lifecycle::admission;
use crate::lifecycle::inventory::{self, Instance};
use crate::state::{Record, Store};
use crate::{Error, ExitStatus, output};

use super::view::{self, Port};

#[derive(Serialize)]
struct Row {
    id: String,
    environment: String,
    /// [`inventory::State::as_str`].
    state: &'static str,
    created_at: Option<String>,
    age_seconds: Option<u64>,
    owner: String,
    images: Vec<String>,
    /// `SERVICE@TAG` of the services whose tag came from a `SERVICE@REF`.
    refs: Vec<String>,
    /// Each service's published ports.
    endpoints: BTreeMap<String, Vec<Port>>,
    pinned: bool,
    /// Services whose containers were removed by hand.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing_services: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// The latest activity the reaper or an envctl command recorded, or the creation.
    last_activity: Option<String>,
    last_activity_at: Option<String>,
    idle_seconds: Option<u64>,
    /// Adopted from a warm pool: how long its pooled services had been warm then.
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted_warm_seconds: Option<u64>,
    /// Bytes of memory it reserved when it was admitted under the engine's capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved_memory: Option<u64>,
    /// Bytes its running services use now (`-o json` only, where it reserved some).
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_used: Option<u64>,
}

pub async fn exec(args: OutputArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        list(backend, args).await
    })
    .await
}

async fn list(backend: &dyn Backend, args: OutputArgs) -> Result<ExitStatus, Error> {
    let instances = inventory::list(backend).await?;
    let (state, warning) = Store::from_env().read_async().await;
    if let Some(warning) = warning {
        output::warning(&warning);
    }
    for instance in instances.iter().filter(|i| i.markers_lost()) {
        output::warning(&format!(
            "`{}` has lost its claim and ready marker (`docker container prune` removes \
             never-started containers); it is judged by its services alone\nhint: `envctl down {}` \
             removes it when it is no longer needed",
            instance.id, instance.id
        ));
    }
    let now = Utc::now();
    for instance in instances.iter().filter(|i| i.update_left(now)) {
        output::warning(&format!(
            "an update of `{id}` was left half-way\nhint: `envctl start {id}` restores its \
             previous services",
            id = instance.id
        ));
    }
    let mut rows: Vec<Row> = instances
        .iter()
        .map(|i| row(i, state.record(backend.endpoint(), &i.id)))
        .collect();
    // One reading of what each uses, next to what it reserved: JSON only, so `ls` stays fast.
    if args.output == Format::Json {
        let reading = instances.iter().map(|i| async move {
            match i.metadata.memory {
                Some(_) => admission::used(backend, i).await,
                None => None,
            }
        });
        let used = futures_util::future::join_all(reading).await;
        for (row, used) in rows.iter_mut().zip(used) {
            row.memory_used = used;
        }
    }
    match args.output {
        Format::Json => output::json(&rows),
        Format::Text if rows.is_empty() => output::message("no environments"),
        Format::Text => {
            let reserving = rows.iter().any(|r| r.reserved_memory.is_some());
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut row = vec![
                        r.id.clone(),
                        r.environment.clone(),
                        match r.adopted_warm_seconds {
                            Some(warm) => format!(
                                "{} (adopted, warm {})",
                                r.state,
                                output::short_duration(std::time::Duration::from_secs(warm))
                            ),
                            None => r.state.to_string(),
                        },
                        r.age_seconds
                            .map(|s| output::short_duration(std::time::Duration::from_secs(s)))
                            .unwrap_or_else(|| "?".into()),
                        r.owner.clone(),
                        match (&r.last_activity, r.idle_seconds) {
                            (Some(what), Some(idle)) => format!(
                                "{what}, idle {}",
                                output::short_duration(std::time::Duration::from_secs(idle))
                            ),
                            _ => "-".into(),
                        },
                        if r.pinned { "yes" } else { "-" }.to_string(),
                        r.images.join(" "),
                        endpoints_text(&r.endpoints),
                    ];
                    // What each reserved, once any did (an engine with a capacity).
                    if reserving {
                        let reserved = r.reserved_memory.map(admission::size);
                        row.insert(4, reserved.unwrap_or_else(|| "-".into()));
                    }
                    row
                })
                .collect();
            let mut header = vec![
                "ID",
                "ENVIRONMENT",
                "STATE",
                "AGE",
                "OWNER",
                "LAST ACTIVITY",
                "PINNED",
                "IMAGES",
                "ENDPOINTS",
            ];
            if reserving {
                header.insert(4, "RESERVED");
            }
            output::data(&output::table(&header, &cells));
            // LAST ACTIVITY then counts no traffic: say so, as the reaper does.
            if !backend.info().capabilities.traffic {
                output::message(&format!(
                    "note: {} has no traffic counters: idleness is judged from envctl \
                     commands, leases and --ttl only",
                    backend.endpoint()
                ));
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn row(instance: &Instance, record: Option<&Record>) -> Row {
    let now = Utc::now();
    let created = instance.created_at();
    let last = created
        .map(|created| crate::state::last_activity(record, created))
        .map(|a| (a.what, a.at));
    Row {
        pinned: instance.pinned(),
        adopted_warm_seconds: crate::lifecycle::pool::warm_for(instance).map(|d| d.as_secs()),
        missing_services: instance.missing_services(),
        build_url: instance.metadata.build.url.clone(),
        job_name: instance.metadata.build.job_name.clone(),
        git_commit: instance.metadata.build.git_commit.clone(),
        expires_at: instance.expires_at().map(|t| t.to_rfc3339()),
        last_activity: last.as_ref().map(|(what, _)| what.clone()),
        last_activity_at: last.as_ref().map(|(_, at)| at.to_rfc3339()),
        idle_seconds: last.map(|(_, at)| (now - at).num_seconds().max(0) as u64),
        id: instance.id.clone(),
        environment: instance.environment().to_string(),
        state: instance.state(now).as_str(),
        created_at: created.map(|c| c.to_rfc3339()),
        age_seconds: created.map(|c| (now - c).num_seconds().max(0) as u64),
        owner: instance.owner().unwrap_or_default().to_string(),
        refs: instance.refs().iter().map(ToString::to_string).collect(),
        images: instance
            .images()
            .into_iter()
            .map(|(service, image)| {
                let tag = image.as_ref().map_or("latest", |i| i.tag.as_str());
                format!("{service}:{tag}")
            })
            .collect(),
        endpoints: view::endpoints(instance),
        reserved_memory: instance.metadata.memory,
        memory_used: None,
    }
}

/// `proxy:8080->127.0.0.1:49153 oracle-xe:1521->127.0.0.1:49154`.
fn endpoints_text(endpoints: &BTreeMap<String, Vec<Port>>) -> String {
    let all: Vec<String> = endpoints
        .iter()
        .flat_map(|(service, ports)| {
            ports
                .iter()
                .map(move |p| format!("{service}:{}->{}", p.name(), p.address()))
        })
        .collect();
    all.join(" ")
}
