use chrono::Utc;
use serde::Serialize;

use crate::cli::{Format, OutputArgs};
use crate::lifecycle::inventory::{self, Instance, State};
use crate::{Error, ExitStatus, output};

#[derive(Serialize)]
struct Row {
    id: String,
    environment: String,
    state: State,
    created_at: Option<String>,
    age_seconds: Option<u64>,
    owner: String,
    images: Vec<String>,
    endpoints: Vec<String>,
}

pub async fn exec(args: OutputArgs) -> Result<ExitStatus, Error> {
    let engine = super::engine().await?;
    let instances = inventory::list(engine.as_ref()).await?;
    let rows: Vec<Row> = instances.iter().map(row).collect();
    match args.output {
        Format::Json => output::json(&rows),
        Format::Text if rows.is_empty() => output::message("no environments"),
        Format::Text => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.environment.clone(),
                        r.state.as_str().to_string(),
                        r.age_seconds
                            .map(|s| output::short_duration(std::time::Duration::from_secs(s)))
                            .unwrap_or_else(|| "?".into()),
                        r.owner.clone(),
                        r.images.join(" "),
                        r.endpoints.join(" "),
                    ]
                })
                .collect();
            let header = [
                "ID",
                "ENVIRONMENT",
                "STATE",
                "AGE",
                "OWNER",
                "IMAGES",
                "ENDPOINTS",
            ];
            output::data(&output::table(&header, &cells));
        }
    }
    Ok(ExitStatus::Success)
}

fn row(instance: &Instance) -> Row {
    let now = Utc::now();
    let created = instance.created_at();
    Row {
        id: instance.id.clone(),
        environment: instance.environment.clone(),
        state: instance.state(now),
        created_at: created.map(|c| c.to_rfc3339()),
        age_seconds: created.map(|c| (now - c).num_seconds().max(0) as u64),
        owner: instance.owner().to_string(),
        images: instance
            .images()
            .into_iter()
            .map(|(service, image)| {
                let tag = image.rsplit_once(':').map_or("latest", |(_, t)| t);
                format!("{service}:{tag}")
            })
            .collect(),
        endpoints: instance
            .containers
            .iter()
            .flat_map(|c| {
                c.ports.iter().map(|p| {
                    format!(
                        "{}:{}->{}:{}",
                        c.service(),
                        p.container_port,
                        output::display_host(&p.host_ip),
                        p.host_port
                    )
                })
            })
            .collect(),
    }
}
