//! `envctl capacity`: show, set or clear the engine's capacity (see `lifecycle::admission`).

use chrono::Utc;
use serde::Serialize;

use crate::backend::{Backend, Capacity};
use crate::cli::{CapacityArgs, Format};
use crate::lifecycle;
use crate::lifecycle::admission::{self, size};
use crate::{Error, ExitStatus, output};

#[derive(Serialize)]
struct View {
    /// `null` when none is set: every start is admitted at once.
    capacity: Option<Limits>,
    /// Environments that count: starting, running, updating or paused.
    counted: usize,
    reserved_memory: u64,
    environments: Vec<Environment>,
    /// In the order they are admitted.
    queue: Vec<Waiter>,
    /// A swarm's nodes, with their memory; absent on a single engine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<Node>,
}

#[derive(Serialize)]
struct Node {
    name: String,
    manager: bool,
    /// Ready and active: the swarm places tasks on it.
    available: bool,
    memory: u64,
    /// What the tasks that run or are to run on it reserved (every service's).
    reserved_memory: u64,
}

#[derive(Serialize)]
struct Limits {
    max_environments: Option<u32>,
    max_memory: Option<u64>,
    default_memory: Option<u64>,
    per_owner: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preempt_idle_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Environment {
    id: String,
    environment: String,
    state: &'static str,
    owner: Option<String>,
    /// Whether it counts against the capacity.
    counts: bool,
    reserved_memory: u64,
    /// Bytes its running services use now (one reading).
    memory_used: Option<u64>,
}

#[derive(Serialize)]
struct Waiter {
    place: usize,
    id: String,
    environment: Option<String>,
    owner: Option<String>,
    priority: &'static str,
    memory: u64,
    waited_seconds: u64,
    started_by: Option<String>,
}

pub async fn exec(args: CapacityArgs) -> Result<ExitStatus, Error> {
    super::briefly(super::Interrupts::End, async |backend, _| {
        capacity(backend, args).await
    })
    .await
}

async fn capacity(backend: &dyn Backend, args: CapacityArgs) -> Result<ExitStatus, Error> {
    if args.clear {
        backend.set_capacity(None).await?;
        output::message("capacity cleared: every start is admitted at once");
        return Ok(ExitStatus::Success);
    }
    let wanted = Capacity {
        max_environments: args.max_environments,
        max_memory: args.max_memory,
        default_memory: args.default_memory,
        per_owner: args.per_owner,
        preempt_idle: args.preempt_idle,
    };
    if wanted != Capacity::default() {
        backend.set_capacity(Some(&wanted)).await?;
        output::message(&format!("capacity set: {}", limits_text(&wanted)));
        return Ok(ExitStatus::Success);
    }
    let (report, nodes) = tokio::try_join!(admission::report(backend), backend.nodes_memory())?;
    let mut view = view(&report);
    view.nodes = nodes
        .into_iter()
        .map(|n| Node {
            name: n.name,
            manager: n.manager,
            available: n.available,
            memory: n.memory,
            reserved_memory: n.reserved,
        })
        .collect();
    let reading = report
        .environments
        .iter()
        .map(|(instance, counts, _)| async move {
            match counts {
                true => admission::used(backend, instance).await,
                false => None,
            }
        });
    let used = futures_util::future::join_all(reading).await;
    for (environment, used) in view.environments.iter_mut().zip(used) {
        environment.memory_used = used;
    }
    match args.output.output {
        Format::Json => output::json(&view),
        Format::Text => output::data(&text(&view, report.capacity.as_ref())),
    }
    Ok(ExitStatus::Success)
}

/// `4 environments, 12 GiB (512 MiB a service without mem_limit), 2 per owner`.
fn limits_text(capacity: &Capacity) -> String {
    let mut parts = Vec::new();
    if let Some(n) = capacity.max_environments {
        parts.push(match n {
            1 => "1 environment".to_string(),
            n => format!("{n} environments"),
        });
    }
    if let Some(bytes) = capacity.max_memory {
        let default = capacity
            .default_memory
            .map(|d| format!(" ({} a service without mem_limit)", size(d)))
            .unwrap_or_default();
        parts.push(format!("{}{default}", size(bytes)));
    }
    if let Some(n) = capacity.per_owner {
        parts.push(format!("{n} per owner"));
    }
    if let Some(idle) = capacity.preempt_idle {
        parts.push(format!(
            "environments idle over {} stopped to make room",
            output::short_duration(idle)
        ));
    }
    parts.join(", ")
}

fn view(report: &admission::Report) -> View {
    let now = Utc::now();
    let environments: Vec<Environment> = report
        .environments
        .iter()
        .map(|(instance, counts, reserved)| Environment {
            id: instance.id.clone(),
            environment: instance.environment().to_string(),
            state: match lifecycle::pool::is_member(instance) {
                true => "pool-member",
                false => instance.state(now).as_str(),
            },
            owner: instance.owner().map(str::to_string),
            counts: *counts,
            reserved_memory: *reserved,
            memory_used: None,
        })
        .collect();
    let counted: Vec<&Environment> = environments.iter().filter(|e| e.counts).collect();
    View {
        capacity: report.capacity.as_ref().map(|c| Limits {
            max_environments: c.max_environments,
            max_memory: c.max_memory,
            default_memory: c.default_memory,
            per_owner: c.per_owner,
            preempt_idle_seconds: c.preempt_idle.map(|d| d.as_secs()),
        }),
        counted: counted.len(),
        reserved_memory: counted.iter().map(|e| e.reserved_memory).sum(),
        queue: report
            .queue
            .iter()
            .enumerate()
            .map(|(i, q)| Waiter {
                place: i + 1,
                id: q.waiter.nonce.clone(),
                environment: q.waiter.environment.clone(),
                owner: q.waiter.owner.clone(),
                priority: q.waiter.priority.as_str(),
                memory: q.waiter.memory,
                waited_seconds: (now - q.created).num_seconds().max(0) as u64,
                started_by: q.waiter.started_by.clone(),
            })
            .collect(),
        environments,
        nodes: Vec::new(),
    }
}

fn text(view: &View, capacity: Option<&Capacity>) -> String {
    let mut out = match capacity {
        None => "capacity: none set, every start is admitted at once\n".to_string(),
        Some(capacity) => format!("capacity: {}\n", limits_text(capacity)),
    };
    let stopped = view.environments.len() - view.counted;
    out.push_str(&format!(
        "in use: {} counted, {} reserved; {stopped} stopped\n",
        match view.counted {
            1 => "1 environment".to_string(),
            n => format!("{n} environments"),
        },
        size(view.reserved_memory),
    ));
    if !view.environments.is_empty() {
        let rows: Vec<Vec<String>> = view
            .environments
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    e.environment.clone(),
                    e.state.to_string(),
                    e.owner.clone().unwrap_or_default(),
                    match e.counts {
                        true => size(e.reserved_memory),
                        false => "-".into(),
                    },
                    e.memory_used.map_or_else(|| "-".into(), size),
                ]
            })
            .collect();
        let header = ["ID", "ENVIRONMENT", "STATE", "OWNER", "RESERVED", "USED"];
        out.push('\n');
        out.push_str(&output::table(&header, &rows));
    }
    match view.queue.len() {
        0 => out.push_str("\nqueue: nobody waits\n"),
        n => {
            out.push_str(&format!("\nqueue: {n} waiting\n"));
            let rows: Vec<Vec<String>> = view
                .queue
                .iter()
                .map(|w| {
                    vec![
                        w.place.to_string(),
                        w.id.clone(),
                        w.environment.clone().unwrap_or_default(),
                        w.owner.clone().unwrap_or_default(),
                        w.priority.to_string(),
                        size(w.memory),
                        output::short_duration(std::time::Duration::from_secs(w.waited_seconds)),
                        w.started_by.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let header = [
                "PLACE",
                "ID",
                "ENVIRONMENT",
                "OWNER",
                "PRIORITY",
                "MEMORY",
                "WAITED",
                "BY",
            ];
            out.push_str(&output::table(&header, &rows));
        }
    }
    if !view.nodes.is_empty() {
        out.push_str(&nodes_text(&view.nodes));
    }
    out
}

/// A swarm's nodes: memory is split across them, and a task needs one node with room.
fn nodes_text(nodes: &[Node]) -> String {
    let memory: u64 = nodes.iter().filter(|n| n.available).map(|n| n.memory).sum();
    let reserved: u64 = nodes.iter().map(|n| n.reserved_memory).sum();
    let mut out = format!(
        "\nnodes: {} available of {}, {} of memory, {} reserved by tasks\n",
        nodes.iter().filter(|n| n.available).count(),
        nodes.len(),
        size(memory),
        size(reserved)
    );
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                match n.manager {
                    true => "manager".into(),
                    false => "worker".into(),
                },
                match n.available {
                    true => "yes".into(),
                    false => "no".into(),
                },
                size(n.memory),
                size(n.reserved_memory),
                size(n.memory.saturating_sub(n.reserved_memory)),
            ]
        })
        .collect();
    let header = ["NODE", "ROLE", "AVAILABLE", "MEMORY", "RESERVED", "FREE"];
    out.push_str(&output::table(&header, &rows));
    out
}
