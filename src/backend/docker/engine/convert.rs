//! bollard's models and the engine's typed values, both ways: a [`ContainerSpec`] (with its
//! [`Runtime`]) as Docker's create request, and Docker's list, inspect and info answers as
//! [`ContainerSummary`], [`ContainerDetails`] and the registries it treats as insecure.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary as BollardContainerSummary,
    EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkingConfig, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
};

use super::{
    Attachment, ContainerDetails, ContainerSpec, ContainerState, ContainerSummary, Labels,
    NetworkEndpoint, Networked, PublishedPort,
};
use crate::spec::runtime::{HostAddress, MountSource, Restart, Runtime};

pub(super) fn container_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let on_network = !spec.network.is_empty();
    let host_config = HostConfig {
        network_mode: on_network.then(|| spec.network.clone()),
        log_config: Some(bounded_log()),
        ..Default::default()
    };
    let networking_config = on_network.then(|| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            spec.network.clone(),
            endpoint(&spec.aliases, spec.address),
        )])),
    });
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(to_hash_map(&spec.labels)),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    with_runtime(body, &spec.runtime)
}

/// How a container joins its network: under `aliases`, at `address` when given.
pub(super) fn endpoint(aliases: &[String], address: Option<IpAddr>) -> EndpointSettings {
    EndpointSettings {
        aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
        ipam_config: address.map(|address| EndpointIpamConfig {
            ipv4_address: Some(address.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The one place a service's [`Runtime`] becomes Docker's create request: ports, mounts,
/// limits, restart policy, entrypoint, user, working directory, hosts, labels, stop timeout.
fn with_runtime(mut body: ContainerCreateBody, runtime: &Runtime) -> ContainerCreateBody {
    let mut bindings: PortMap = HashMap::new();
    for mapping in &runtime.ports {
        // An empty host port and address: Docker picks a free port on all addresses.
        let binding = PortBinding {
            host_ip: Some(mapping.host_ip.map(|ip| ip.to_string()).unwrap_or_default()),
            host_port: Some(mapping.host_port.map(|p| p.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(mapping.container.to_string())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let mut exposed: Vec<String> = bindings.keys().cloned().collect();
    exposed.sort();
    let mounts: Vec<Mount> = runtime
        .mounts
        .iter()
        .map(|mount| {
            let (typ, source) = match &mount.source {
                MountSource::Volume(name) => (MountType::VOLUME, name.clone()),
                MountSource::Bind(path) => (MountType::BIND, path.display().to_string()),
            };
            Mount {
                target: Some(mount.target.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(mount.read_only),
                ..Default::default()
            }
        })
        .collect();
    let tmpfs: HashMap<String, String> = runtime
        .tmpfs
        .iter()
        .map(|tmpfs| {
            let mut options = Vec::new();
            if let Some(size) = tmpfs.options.size {
                options.push(format!("size={}", size.0));
            }
            if let Some(mode) = tmpfs.options.mode {
                options.push(format!("mode={mode:o}"));
            }
            (tmpfs.target.clone(), options.join(","))
        })
        .collect();
    let restart = runtime.restart.map(|restart| {
        let (name, retries) = match restart {
            Restart::No => (RestartPolicyNameEnum::NO, None),
            Restart::Always => (RestartPolicyNameEnum::ALWAYS, None),
            Restart::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            Restart::OnFailure { max_retries } => (
                RestartPolicyNameEnum::ON_FAILURE,
                max_retries.map(i64::from),
            ),
        };
        RestartPolicy {
            name: Some(name),
            maximum_retry_count: retries,
        }
    });
    let extra_hosts: Vec<String> = runtime
        .extra_hosts
        .iter()
        .map(|entry| match entry.address {
            HostAddress::Ip(ip) => format!("{}:{ip}", entry.host),
            HostAddress::HostGateway => format!("{}:host-gateway", entry.host),
        })
        .collect();
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    host.port_bindings = (!bindings.is_empty()).then_some(bindings);
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    host.tmpfs = (!tmpfs.is_empty()).then_some(tmpfs);
    host.shm_size = runtime.shm_size.map(|b| b.0 as i64);
    host.memory = runtime.mem_limit.map(|b| b.0 as i64);
    host.nano_cpus = runtime.cpus.map(|c| c.0 as i64);
    host.restart_policy = restart;
    host.extra_hosts = (!extra_hosts.is_empty()).then_some(extra_hosts);
    body.exposed_ports = (!exposed.is_empty()).then_some(exposed);
    body.entrypoint = runtime.entrypoint.clone();
    body.user = runtime.user.clone();
    body.working_dir = runtime.working_dir.clone();
    body.stop_timeout = runtime
        .stop_grace_period
        .map(|grace| grace.as_secs().try_into().unwrap_or(i64::MAX));
    // envctl's labels win: the file cannot use its prefix, and this keeps it so.
    let labels = body.labels.get_or_insert_with(HashMap::new);
    for (key, value) in &runtime.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    body
}

/// The size one service's log may reach: [`LOG_FILES`] files of [`LOG_FILE_SIZE`] each.
const LOG_FILE_SIZE: &str = "10m";
const LOG_FILES: &str = "3";

/// Docker's json-file log, bounded: a chatty service on a shared host keeps its last 30 MB
/// instead of filling the disk (the daemon's default json-file log grows without end).
fn bounded_log() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".into(), LOG_FILE_SIZE.into()),
            ("max-file".into(), LOG_FILES.into()),
        ])),
    }
}

/// The create request as JSON for the debug log, each environment variable as `KEY=***`:
/// values are often passwords.
pub(super) fn redacted(body: &ContainerCreateBody) -> String {
    let mut body = body.clone();
    body.env = body
        .env
        .map(|env| env.iter().map(|var| redact_variable(var)).collect());
    serde_json::to_string(&body).unwrap_or_default()
}

/// `KEY=VALUE` → `KEY=***`.
fn redact_variable(variable: &str) -> String {
    match variable.split_once('=') {
        Some((key, _)) => format!("{key}=***"),
        None => variable.to_owned(),
    }
}

pub(super) fn container_summary(summary: BollardContainerSummary) -> ContainerSummary {
    let names = summary.names.unwrap_or_default();
    // Legacy links add names like `/other/alias`; the container's own has one slash.
    let name = names
        .iter()
        .map(|name| name.trim_start_matches('/'))
        .find(|name| !name.contains('/'))
        .or_else(|| names.first().map(|name| name.trim_start_matches('/')))
        .unwrap_or_default()
        .to_owned();
    let mut ports: Vec<PublishedPort> = summary
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|port| {
            Some(PublishedPort {
                container_port: port.private_port,
                protocol: port
                    .typ
                    .map(|typ| typ.to_string())
                    .filter(|typ| !typ.is_empty())
                    .unwrap_or_else(|| "tcp".into()),
                host_ip: port.ip.unwrap_or_default(),
                host_port: port.public_port?,
            })
        })
        .collect();
    // Docker binds a port on every address twice, for IPv4 and IPv6, each on its own host
    // port: keep one binding per container port, the IPv4 one.
    ports.sort_by_key(|p| {
        (
            p.container_port,
            p.protocol.clone(),
            p.host_ip.contains(':'),
        )
    });
    ports.dedup_by(|a, b| (a.container_port, &a.protocol) == (b.container_port, &b.protocol));
    let state = ContainerState::parse(summary.state.as_ref().map_or("", |state| state.as_ref()));
    ContainerSummary {
        id: summary.id.unwrap_or_default(),
        name,
        image: summary.image.unwrap_or_default(),
        labels: to_labels(summary.labels),
        state,
        status: summary.status.unwrap_or_default(),
        ports: holding(state, ports),
        created: summary
            .created
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0)),
    }
}

/// The ports a container in `state` holds: none unless it runs (or is paused, which keeps
/// them). Docker keeps the ports of a container its own restart killed, and hands those host
/// ports out again: another container's by now.
fn holding(state: ContainerState, ports: Vec<PublishedPort>) -> Vec<PublishedPort> {
    match state {
        ContainerState::Running | ContainerState::Paused => ports,
        _ => Vec::new(),
    }
}

/// Where a container joins the network it was created on (its network mode, which envctl sets
/// to its environment's network id), attached now or not.
pub(super) fn attachment(response: ContainerInspectResponse) -> Attachment {
    let network = response
        .host_config
        .and_then(|host| host.network_mode)
        .unwrap_or_default();
    let networks = response
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default();
    // Attached networks are keyed by name, each endpoint naming the network's id.
    let endpoint = networks
        .iter()
        .find(|(name, e)| **name == network || e.network_id.as_deref() == Some(&network))
        .map(|(_, endpoint)| endpoint);
    Attachment {
        attached: endpoint.is_some(),
        address: endpoint.and_then(|e| e.ip_address.as_deref()?.parse().ok()),
        network,
        labels: to_labels(response.config.and_then(|config| config.labels)),
    }
}

pub(super) fn networked(id: &str, response: ContainerInspectResponse) -> Networked {
    let running = response
        .state
        .as_ref()
        .and_then(|state| state.running)
        .unwrap_or(false);
    let mut networks: Vec<NetworkEndpoint> = response
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(network, endpoint)| NetworkEndpoint {
            network,
            network_id: endpoint.network_id.unwrap_or_default(),
            aliases: endpoint.aliases.unwrap_or_default(),
        })
        .collect();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    Networked {
        id: response.id.unwrap_or_else(|| id.to_owned()),
        name: response
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        hostname: response
            .config
            .and_then(|config| config.hostname)
            .filter(|hostname| !hostname.is_empty()),
        running,
        network_mode: response
            .host_config
            .and_then(|host| host.network_mode)
            .unwrap_or_default(),
        networks,
    }
}

pub(super) fn container_details(id: &str, response: ContainerInspectResponse) -> ContainerDetails {
    let state = response.state.unwrap_or_default();
    let status = ContainerState::parse(state.status.as_ref().map_or("", |status| status.as_ref()));
    let exit_code = match status {
        ContainerState::Created | ContainerState::Running | ContainerState::Paused => None,
        _ => state.exit_code,
    };
    let health = state
        .health
        .and_then(|health| health.status)
        .map(|status| status.to_string())
        .filter(|status| !status.is_empty() && status != "none");
    let settings = response.network_settings.unwrap_or_default();
    let ports = holding(status, published_ports(settings.ports.unwrap_or_default()));
    let networks: BTreeMap<String, EndpointSettings> =
        settings.networks.unwrap_or_default().into_iter().collect();
    let ip = networks
        .into_values()
        .filter_map(|network| network.ip_address)
        .find(|ip| !ip.is_empty())
        .and_then(|ip| ip.parse().ok());
    ContainerDetails {
        id: response.id.unwrap_or_else(|| id.to_owned()),
        state: status,
        exit_code,
        health,
        restarts: response.restart_count.unwrap_or(0),
        ports,
        ip,
        started_at: timestamp(state.started_at),
        finished_at: timestamp(state.finished_at),
        created: timestamp(response.created),
    }
}

/// One host binding of each container port, IPv4 preferred; unbound ports are left out.
fn published_ports(ports: PortMap) -> Vec<PublishedPort> {
    let mut published: Vec<PublishedPort> = ports
        .into_iter()
        .filter_map(|(key, bindings)| {
            let (port, protocol) = key.split_once('/').unwrap_or((&key, "tcp"));
            let container_port = port.parse().ok()?;
            // IPv4 first: the IPv6 binding of the same port has a host port of its own.
            let binding = bindings?
                .into_iter()
                .filter_map(|binding| {
                    let host_port = binding.host_port?.parse().ok()?;
                    Some((binding.host_ip.unwrap_or_default(), host_port))
                })
                .min_by_key(|(host_ip, _)| host_ip.contains(':'))?;
            Some(PublishedPort {
                container_port,
                protocol: protocol.to_owned(),
                host_ip: binding.0,
                host_port: binding.1,
            })
        })
        .collect();
    published.sort();
    published
}

/// A time Docker gives in RFC 3339; its zero time (`0001-01-01T00:00:00Z`) means never.
fn timestamp(value: Option<String>) -> Option<DateTime<Utc>> {
    let value = value.filter(|value| !value.starts_with("0001-01-01"))?;
    DateTime::parse_from_rfc3339(&value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn to_hash_map(labels: &Labels) -> HashMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

pub(super) fn to_labels(labels: Option<HashMap<String, String>>) -> Labels {
    labels.unwrap_or_default().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_logged_without_env_values() {
        let spec = ContainerSpec {
            name: "db_1".into(),
            image: "db:1".into(),
            env: vec!["PASSWORD=s3cret".into(), "URL=a=b".into()],
            ..ContainerSpec::default()
        };
        let logged = redacted(&container_body(&spec));
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(
            logged.contains(r#""Env":["PASSWORD=***","URL=***"]"#),
            "{logged}"
        );
    }

    #[test]
    fn a_listed_container_has_its_own_name_and_one_binding_per_published_port() {
        let listed: BollardContainerSummary = serde_json::from_value(serde_json::json!({
            "Id": "c0ffee",
            // A legacy link adds a name of the linking container's.
            "Names": ["/proxy_1/oracle", "/oracle-xe_1"],
            "Image": "db:1",
            "Labels": {"io.envctl.id": "1"},
            "State": "running",
            "Status": "Up 3 minutes (healthy)",
            "Ports": [
                {"PrivatePort": 1521, "PublicPort": 49154, "Type": "tcp", "IP": "::"},
                {"PrivatePort": 1521, "PublicPort": 49153, "Type": "tcp", "IP": "0.0.0.0"},
                {"PrivatePort": 8080, "Type": "tcp"}
            ]
        }))
        .unwrap();
        let summary = container_summary(listed);
        assert_eq!(summary.name, "oracle-xe_1");
        assert_eq!(summary.state, ContainerState::Running);
        assert_eq!(summary.status, "Up 3 minutes (healthy)");
        assert_eq!(
            summary.labels.get("io.envctl.id").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            summary.ports,
            [PublishedPort {
                container_port: 1521,
                protocol: "tcp".into(),
                host_ip: "0.0.0.0".into(),
                host_port: 49153,
            }],
            "the IPv4 binding; an unpublished port is left out"
        );
    }

    #[test]
    fn an_inspected_container_has_an_exit_code_only_once_it_ran_and_no_zero_times() {
        let inspected = |status: &str, health: &str| -> ContainerInspectResponse {
            serde_json::from_value(serde_json::json!({
                "Id": "c0ffee",
                "RestartCount": 2,
                "State": {
                    "Status": status,
                    "ExitCode": 3,
                    "StartedAt": "2026-11-26T04:15:00.1Z",
                    "FinishedAt": "0001-01-01T00:00:00Z",
                    "Health": {"Status": health}
                },
                "NetworkSettings": {
                    "Ports": {
                        "8080/tcp": [
                            {"HostIp": "::", "HostPort": "49154"},
                            {"HostIp": "0.0.0.0", "HostPort": "49153"}
                        ],
                        "53/udp": null
                    },
                    "Networks": {"envctl_shop_1": {"IPAddress": "172.18.0.2"}}
                }
            }))
            .unwrap()
        };
        let running = container_details("c0ffee", inspected("running", "healthy"));
        assert_eq!(
            running,
            ContainerDetails {
                id: "c0ffee".into(),
                state: ContainerState::Running,
                exit_code: None,
                health: Some("healthy".into()),
                restarts: 2,
                ports: vec![PublishedPort {
                    container_port: 8080,
                    protocol: "tcp".into(),
                    host_ip: "0.0.0.0".into(),
                    host_port: 49153,
                }],
                ip: Some("172.18.0.2".parse().unwrap()),
                started_at: Some("2026-11-26T04:15:00.1Z".parse().unwrap()),
                finished_at: None,
                created: None,
            }
        );
        let exited = container_details("c0ffee", inspected("exited", "none"));
        assert_eq!(exited.exit_code, Some(3));
        assert_eq!(exited.health, None, "`none`: the image has no healthcheck");
    }

    /// Docker keeps `NetworkSettings.Ports` on a container its own restart killed
    /// (`Exited (137)`), and hands those host ports out again to other containers.
    #[test]
    fn a_container_killed_by_an_engine_restart_publishes_none_of_its_old_ports() {
        let ports = serde_json::json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32848"}]});
        for state in ["exited", "dead", "restarting", "removing", "created"] {
            let inspected: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
                "Id": "c0ffee",
                "State": {"Status": state, "ExitCode": 137},
                "NetworkSettings": {"Ports": ports}
            }))
            .unwrap();
            assert_eq!(container_details("c0ffee", inspected).ports, [], "{state}");
            let listed: BollardContainerSummary = serde_json::from_value(serde_json::json!({
                "Id": "c0ffee",
                "Names": ["/web_1"],
                "State": state,
                "Status": "Exited (137) 5 seconds ago",
                "Ports": [{"PrivatePort": 8080, "PublicPort": 32848, "Type": "tcp", "IP": "127.0.0.1"}]
            }))
            .unwrap();
            assert_eq!(container_summary(listed).ports, [], "{state}");
        }
        // A paused container still holds its ports: no one else gets them.
        let paused: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "State": {"Status": "paused"},
            "NetworkSettings": {"Ports": ports}
        }))
        .unwrap();
        assert_eq!(container_details("c0ffee", paused).ports.len(), 1);
    }
}
