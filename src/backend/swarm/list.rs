//! Environments from one list each of the swarm's configs, services, networks, volumes and
//! tasks: the Swarm backend's counterpart of the Docker backend's `group`.

use std::collections::BTreeMap;

use bollard::models::{Config, Network, Service, Task, Volume};

use super::convert::{NodeAddresses, status_of, time};
use crate::backend::{
    EnvironmentRecord, IsolationRef, Markers, Queued, ServiceRecord, ServiceRef, VolumeRef,
};
use crate::naming;
use crate::naming::codec::{self, Labels, MarkerKind, Metadata, ServiceMetadata};

#[derive(Default)]
struct Partial {
    metadata: Option<Metadata>,
    /// From a pin or an update marker, which carry less or another run's metadata.
    fallback: Option<Metadata>,
    markers: Markers,
    services: Vec<ServiceRecord>,
    isolation: Vec<IsolationRef>,
    volumes: Vec<VolumeRef>,
}

fn labels(map: Option<&std::collections::HashMap<String, String>>) -> Labels {
    map.map(|m| m.clone().into_iter().collect())
        .unwrap_or_default()
}

/// The labels of `config`.
pub fn config_labels(config: &Config) -> Labels {
    labels(config.spec.as_ref().and_then(|spec| spec.labels.as_ref()))
}

/// The admission queue's entries among `configs`, each with its place in line: the time the
/// manager created it.
pub fn queue(configs: &[Config]) -> Vec<Queued> {
    configs
        .iter()
        .filter_map(|config| {
            let (waiter, expires) = codec::Waiter::decode_with_terms(&config_labels(config))?;
            Some(Queued {
                native: config.id.clone()?,
                waiter,
                created: config.created_at.as_deref().and_then(time)?,
                expires,
            })
        })
        .collect()
}

/// Environments, oldest first. Only swarm-scoped networks count: a manager lists its local
/// networks too.
pub fn group(
    configs: Vec<Config>,
    services: Vec<Service>,
    networks: Vec<Network>,
    volumes: Vec<Volume>,
    tasks: &[Task],
    nodes: &NodeAddresses,
) -> Vec<EnvironmentRecord> {
    let mut by_id: BTreeMap<String, Partial> = BTreeMap::new();
    for config in configs {
        let Some(spec) = config.spec else { continue };
        let labels = labels(spec.labels.as_ref());
        let Some(metadata) = Metadata::decode(&labels) else {
            continue;
        };
        let role = codec::role(&labels);
        let partial = by_id.entry(metadata.id.clone()).or_default();
        match role {
            Some(MarkerKind::Anchor) => {
                partial.markers.claimed = true;
                partial.metadata = Some(metadata);
            }
            Some(MarkerKind::Ready) => {
                partial.markers.ready = true;
                partial.metadata.get_or_insert(metadata);
            }
            Some(MarkerKind::Lease) => {
                let until = spec.name.as_deref().and_then(naming::lease_expiry);
                partial.markers.lease_until = partial.markers.lease_until.max(until);
                partial.metadata.get_or_insert(metadata);
            }
            Some(MarkerKind::Pinned) => {
                partial.markers.pinned = true;
                partial.fallback.get_or_insert(metadata);
            }
            Some(MarkerKind::Update) => {
                partial.markers.update = Some(metadata.clone());
                partial.fallback.get_or_insert(metadata);
            }
            Some(MarkerKind::Create) => {
                partial.markers.creating = Some(metadata.clone());
                partial.fallback.get_or_insert(metadata);
            }
            // Pools are refused on a swarm: no such marker is ever made there. The capacity
            // and the queue belong to no environment (see [`queue`]).
            Some(
                MarkerKind::Member
                | MarkerKind::Adopt
                | MarkerKind::Capacity
                | MarkerKind::Queue
                | MarkerKind::Fill,
            )
            | None => {}
        }
    }
    for service in services {
        let spec = service.spec.clone().unwrap_or_default();
        let labels = labels(spec.labels.as_ref());
        let Some(metadata) = Metadata::decode(&labels) else {
            continue;
        };
        let Some(service_metadata) = ServiceMetadata::decode(&labels) else {
            continue;
        };
        let native = service.id.clone().unwrap_or_default();
        let own: Vec<Task> = tasks
            .iter()
            .filter(|task| task.service_id.as_deref() == Some(native.as_str()))
            .cloned()
            .collect();
        let partial = by_id.entry(metadata.id.clone()).or_default();
        partial.services.push(ServiceRecord {
            handle: ServiceRef {
                id: metadata.id.clone(),
                service: service_metadata.service.clone(),
                name: spec.name.clone().unwrap_or_else(|| {
                    naming::container_name(&service_metadata.service, &metadata.id)
                }),
                native,
            },
            status: status_of(&service, &own, nodes),
            metadata: service_metadata,
        });
        partial.metadata.get_or_insert(metadata);
    }
    for network in networks {
        if network.scope.as_deref() != Some("swarm") {
            continue;
        }
        let Some(metadata) = Metadata::decode(&labels(network.labels.as_ref())) else {
            continue;
        };
        let partial = by_id.entry(metadata.id.clone()).or_default();
        partial.isolation.push(IsolationRef {
            name: network.name.unwrap_or_default(),
            native: network.id.unwrap_or_default(),
        });
        partial.metadata.get_or_insert(metadata);
    }
    for volume in volumes {
        let labels: Labels = volume.labels.clone().into_iter().collect();
        let Some(metadata) = Metadata::decode(&labels) else {
            continue;
        };
        let partial = by_id.entry(metadata.id.clone()).or_default();
        let name = naming::volume_of(&metadata.id, &volume.name).unwrap_or(&volume.name);
        partial.volumes.push(VolumeRef {
            name: name.to_string(),
            native: volume.name.clone(),
        });
        partial.metadata.get_or_insert(metadata);
    }
    let mut records: Vec<EnvironmentRecord> = by_id
        .into_iter()
        .filter_map(|(id, mut partial)| {
            let metadata = partial.metadata.or(partial.fallback)?;
            partial
                .services
                .sort_by(|a, b| a.handle.service.cmp(&b.handle.service));
            partial.volumes.sort();
            Some(EnvironmentRecord {
                id,
                metadata,
                markers: partial.markers,
                services: partial.services,
                aside: Vec::new(),
                isolation: partial.isolation,
                volumes: partial.volumes,
            })
        })
        .collect();
    records.sort_by(|a, b| (a.metadata.created_at, &a.id).cmp(&(b.metadata.created_at, &b.id)));
    records
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ConfigSpec, ServiceSpec};
    use chrono::{TimeZone, Utc};

    use super::*;

    fn metadata(id: &str) -> Metadata {
        let mut metadata = Metadata::new(id);
        metadata.environment = Some("demo".into());
        metadata.run = Some("run-1".into());
        metadata
    }

    fn config(name: &str, labels: Labels) -> Config {
        Config {
            id: Some(format!("c-{name}")),
            spec: Some(ConfigSpec {
                name: Some(name.into()),
                labels: Some(labels.into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(id: &str, name: &str) -> Service {
        let labels = metadata(id).encode_service(&ServiceMetadata {
            service: name.into(),
            image: None,
            depends_on: Default::default(),
            ports: Vec::new(),
            ready: None,
            reference: None,
            aliases: Vec::new(),
            address: None,
            settings: Default::default(),
        });
        Service {
            id: Some(format!("s-{name}")),
            spec: Some(ServiceSpec {
                name: Some(naming::container_name(name, id)),
                labels: Some(labels.into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn network(id: &str, scope: &str) -> Network {
        Network {
            id: Some(format!("n-{scope}")),
            name: Some(format!("envctl_{id}_{scope}")),
            scope: Some(scope.into()),
            labels: Some(HashMap::from_iter(metadata(id).encode())),
            ..Default::default()
        }
    }

    #[test]
    fn configs_services_and_networks_make_one_environment_with_its_markers() {
        let m = metadata("e1");
        let lease = |at: i64| {
            config(
                &naming::lease_name("e1", Utc.timestamp_opt(at, 0).unwrap()),
                m.encode_marker(MarkerKind::Lease),
            )
        };
        let configs = vec![
            config(
                &naming::anchor_name("e1"),
                m.encode_marker(MarkerKind::Anchor),
            ),
            config(
                &naming::ready_name("e1"),
                m.encode_marker(MarkerKind::Ready),
            ),
            config(&naming::pin_name("e1"), m.encode_marker(MarkerKind::Pinned)),
            lease(1_800_000_000),
            lease(1_800_000_060),
        ];
        let records = group(
            configs,
            vec![service("e1", "web"), service("e1", "db")],
            vec![network("e1", "swarm"), network("e1", "local")],
            Vec::new(),
            &[],
            &NodeAddresses::default(),
        );
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.id, "e1");
        assert_eq!(record.metadata.environment.as_deref(), Some("demo"));
        assert!(record.markers.claimed && record.markers.ready && record.markers.pinned);
        assert_eq!(
            record.markers.lease_until,
            Some(Utc.timestamp_opt(1_800_000_060, 0).unwrap())
        );
        let services: Vec<&str> = record.services.iter().map(|s| s.service()).collect();
        assert_eq!(services, ["db", "web"]);
        assert_eq!(record.services[0].handle.name, "db_e1");
        // The manager's local network of the same labels is not the environment's.
        assert_eq!(record.isolation.len(), 1);
        assert_eq!(record.isolation[0].native, "n-swarm");
    }

    #[test]
    fn a_pin_alone_is_an_environment_and_unlabelled_objects_are_none() {
        let m = metadata("e2");
        let foreign = Config {
            spec: Some(ConfigSpec {
                name: Some("someone-elses".into()),
                labels: Some(HashMap::from([("a".to_string(), "b".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let records = group(
            vec![
                config(&naming::pin_name("e2"), m.encode_marker(MarkerKind::Pinned)),
                foreign,
            ],
            Vec::new(),
            Vec::new(),
            Vec::new(),
            &[],
            &NodeAddresses::default(),
        );
        assert_eq!(records.len(), 1);
        assert!(records[0].markers.pinned);
        assert!(!records[0].markers.claimed);
    }

    #[test]
    fn queue_entries_are_read_with_their_terms_and_the_managers_creation_time() {
        let waiter = codec::Waiter {
            nonce: "w1".into(),
            priority: codec::Priority::Low,
            owner: Some("jenkins".into()),
            environment: Some("demo".into()),
            started_by: None,
            memory: 1 << 30,
            admitted: true,
        };
        let until = Utc.timestamp_opt(1_800_000_015, 0).unwrap();
        let entry = Config {
            created_at: Some("2026-12-06T01:00:00.123456789Z".into()),
            ..config(
                &naming::queue_entry_name("w1"),
                waiter.encode_with_terms(until),
            )
        };
        // Not yet created as far as the manager says, or not an entry: left out.
        let unborn = config(
            &naming::queue_entry_name("w2"),
            waiter.encode_with_terms(until),
        );
        let anchor = config(
            "envctl_e1_anchor",
            metadata("e1").encode_marker(MarkerKind::Anchor),
        );
        let queue = queue(&[entry, unborn, anchor]);
        assert_eq!(
            queue,
            [Queued {
                native: "c-envctl-queue-w1".into(),
                waiter,
                created: "2026-12-06T01:00:00.123456789Z".parse().unwrap(),
                expires: Some(until),
            }]
        );
    }
}
