//! envctl in a container of the engine it drives (a Jenkins agent in Docker with the host's
//! socket mounted, on a network of its own): the environment's own addresses and names do not
//! answer there, so envctl connects its own container to the environment's network while it
//! needs them (a start's probes, `run`'s command), and disconnects it afterwards.
//!
//! Its own container is found from `/proc/self/mountinfo` (Docker bind-mounts
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` from
//! `.../containers/<id>/`) or, failing that, the host name (Docker's default is the id's first
//! 12 digits), and every candidate is verified through the engine: a container of that id
//! exists, and is the one the candidate names. Nothing is guessed: a candidate the engine does
//! not confirm is no container of envctl's.
//!
//! The endpoint carries the alias [`codec::attachment_aliases`] names: Docker keeps no labels on
//! an endpoint, but keeps its aliases, so `down` and the reaper (through [`is_envctls`] in the
//! backend's `remove_isolation`) know an attachment as envctl's and disconnect it, where they
//! would keep a network a foreign container holds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::OnceCell;

use super::engine::docker::Docker;
use super::engine::{Attachable, Networked};
use crate::backend::{BackendError, Filter, Joined, Result};
use crate::naming::codec;

/// Where Docker keeps a container's own files: `/etc/hostname` and its siblings come from here.
const CONTAINER_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// What this process joined, and the container it joins with. Owned by one Docker backend.
#[derive(Debug, Default)]
pub struct Attacher {
    /// envctl's own container's full id, or why it could not be found: found once.
    own: OnceCell<std::result::Result<String, String>>,
    /// The networks this process connected its container to, by environment id.
    joined: Mutex<BTreeMap<String, String>>,
}

impl Attacher {
    /// Connects envctl's own container to the network of environment `id`, when envctl runs in
    /// a container of this engine and ENVCTL_HOST is unset. What stands in the way is noted in
    /// the engine's reachability, for the probe that then has no address to say; only an engine
    /// that does not answer fails.
    pub async fn attach(&self, engine: &Docker, id: &str) -> Result<Joined> {
        let reach = engine.reachability();
        let not = |reason: String| {
            tracing::debug!(%reason, "envctl does not join the environment's network");
            reach.note_not_attached(Some(reason));
            Ok(Joined::default())
        };
        match engine.attachable() {
            Attachable::NotInContainer => return Ok(Joined::default()),
            Attachable::No(reason) => return not(reason.to_string()),
            Attachable::Yes => {}
        }
        if self.network_of(id).is_some() {
            return Ok(Joined {
                joined: true,
                warning: None,
            });
        }
        let own = match self.own(engine).await {
            Ok(own) => own,
            Err(reason) => return not(reason),
        };
        let filters = [Filter::Managed, Filter::Id(id.to_string())];
        let Some(network) = engine.list_networks(&filters).await?.into_iter().next() else {
            return not(format!("environment {id} has no network to join"));
        };
        let me = match engine.networked(&own).await {
            Ok(me) => me,
            Err(error) if error.is_engine_down() => return Err(error),
            Err(error) => return not(format!("envctl's container is gone: {error}")),
        };
        if me.network_mode == "host" || me.network_mode.starts_with("container:") {
            return not(format!(
                "envctl's container `{}` shares the network of {} (`--network {}`), which joins \
                 no other network",
                me.name,
                match me.network_mode.as_str() {
                    "host" => "the host",
                    _ => "another container",
                },
                me.network_mode
            ));
        }
        if me.on(&network.id).is_some() {
            // Joined by another envctl in this container, or by hand: theirs to leave.
            reach.retry_direct();
            return Ok(Joined {
                joined: true,
                warning: None,
            });
        }
        let aliases = codec::attachment_aliases();
        match engine
            .connect_network(&network.id, &own, &aliases, None)
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_engine_down() => return Err(error),
            Err(error) => {
                let reason = match error {
                    BackendError::Operation { reason, .. } => reason,
                    other => other.to_string(),
                };
                return not(format!(
                    "the engine refused to connect envctl's container `{}` to `{}`: {reason}",
                    me.name, network.name
                ));
            }
        }
        tracing::debug!(container = %me.name, network = %network.name, "joined the environment's network");
        self.lock().insert(id.to_string(), network.id.clone());
        reach.note_not_attached(None);
        reach.retry_direct();
        Ok(Joined {
            joined: true,
            warning: others(&me, &network.name),
        })
    }

    /// Disconnects envctl's own container from the network of `id`, if this process connected
    /// it. A network or container already gone is fine.
    pub async fn detach(&self, engine: &Docker, id: &str) -> Result<()> {
        let Some(network) = self.network_of(id) else {
            return Ok(());
        };
        let Some(Ok(own)) = self.own.get() else {
            return Ok(());
        };
        let result = engine.disconnect_network(&network, own).await;
        self.lock().remove(id);
        engine.reachability().retry_direct();
        match result {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            // Not connected (any more): someone else disconnected it.
            Err(BackendError::Operation { reason, .. }) if reason.contains("not connected") => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn network_of(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.joined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn own(&self, engine: &Docker) -> std::result::Result<String, String> {
        self.own.get_or_init(|| own_container(engine)).await.clone()
    }
}

/// The warning for a container that is on other environments' networks too, as envctl's.
fn others(me: &Networked, joined: &str) -> Option<String> {
    let others: Vec<&str> = me
        .networks
        .iter()
        .filter(|e| e.network != joined && codec::is_attachment(&e.aliases))
        .map(|e| e.network.as_str())
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "envctl's container `{}` is on the networks of other environments too (`{}`): Docker's \
         DNS may answer a link name with a service of either\n\
         hint: reach services through the ENVCTL_* variables, which give their addresses, or run \
         one environment at a time in this container",
        me.name,
        others.join("`, `")
    ))
}

/// Whether `container` is on `network` as envctl's own attachment, as its inspection tells.
pub fn is_envctls(container: &Networked, network: &str) -> bool {
    container
        .on(network)
        .is_some_and(|endpoint| codec::is_attachment(&endpoint.aliases))
}

/// A container id this process may run in, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A full id from the source of a bind mount of `/etc/hostname` or its siblings.
    Mount(String),
    /// The host name, when it looks like Docker's default: the id's first 12 hex digits.
    Hostname(String),
}

impl Candidate {
    fn reference(&self) -> &str {
        match self {
            Candidate::Mount(id) | Candidate::Hostname(id) => id,
        }
    }

    /// Whether the container the engine found under this candidate is the one it names.
    fn confirmed_by(&self, found: &Networked) -> bool {
        match self {
            Candidate::Mount(id) => found.id == *id,
            Candidate::Hostname(hostname) => {
                found.id.starts_with(hostname.as_str())
                    && found.hostname.as_deref() == Some(hostname.as_str())
            }
        }
    }
}

/// envctl's own container's full id, verified through the engine, or why it is not known.
async fn own_container(engine: &Docker) -> std::result::Result<String, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let candidates = candidates(&mountinfo, hostname.trim());
    if candidates.is_empty() {
        return Err(
            "envctl cannot tell which container it runs in: neither /proc/self/mountinfo nor \
             its host name names a container id"
                .into(),
        );
    }
    let mut refused = Vec::new();
    for candidate in candidates {
        let reference = candidate.reference();
        match engine.networked(reference).await {
            Ok(found) if candidate.confirmed_by(&found) => {
                tracing::debug!(container = %found.name, id = %found.id, "envctl runs in this container");
                return Ok(found.id);
            }
            Ok(found) => refused.push(format!(
                "`{reference}` names another container there, `{}`",
                found.name
            )),
            Err(BackendError::NotFound { .. }) => {
                refused.push(format!("the engine has no container `{reference}`"))
            }
            Err(error) => refused.push(error.to_string()),
        }
    }
    Err(format!(
        "envctl cannot find the container it runs in on this engine ({}): is the socket \
         mounted that of another engine?",
        refused.join("; ")
    ))
}

/// The container ids this process may run in, best first: those in the sources of the bind
/// mounts of `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` in `mountinfo`, then
/// `hostname` if it is 12 to 64 hex digits.
fn candidates(mountinfo: &str, hostname: &str) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = Vec::new();
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS ...`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        if !CONTAINER_FILES.contains(mount_point) {
            continue;
        }
        let components: Vec<&str> = root.split('/').collect();
        let id = components
            .windows(2)
            .find(|pair| pair[0] == "containers" && is_hex(pair[1], 64))
            .map(|pair| pair[1].to_string());
        if let Some(id) = id.map(Candidate::Mount)
            && !candidates.contains(&id)
        {
            candidates.push(id);
        }
    }
    if (12..=64).contains(&hostname.len()) && is_hex(hostname, hostname.len()) {
        candidates.push(Candidate::Hostname(hostname.to_string()));
    }
    candidates
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f5a0c1e2b4d6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";

    fn mountinfo(root_prefix: &str) -> String {
        format!(
            "1021 1003 0:52 / / rw,relatime master:312 - overlay overlay rw,lowerdir=/x\n\
             1022 1021 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
             1030 1021 254:1 {root_prefix}/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw\n\
             1031 1021 254:1 {root_prefix}/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n\
             1032 1021 254:1 {root_prefix}/{ID}/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw\n\
             1033 1021 0:5 /null /dev/null rw,nosuid - devtmpfs udev rw\n"
        )
    }

    #[test]
    fn the_container_id_comes_from_the_mounts_of_its_own_files() {
        assert_eq!(
            candidates(&mountinfo("/var/lib/docker/containers"), "ci-agent"),
            [Candidate::Mount(ID.into())],
            "one candidate for the three files; a chosen host name is none"
        );
        // Another data root (`--data-root /srv/docker`), as the mount's root shows it.
        assert_eq!(
            candidates(&mountinfo("/docker/containers"), ""),
            [Candidate::Mount(ID.into())]
        );
    }

    #[test]
    fn the_host_name_is_a_candidate_only_when_it_is_an_id() {
        assert_eq!(
            candidates("", "3f5a0c1e2b4d"),
            [Candidate::Hostname("3f5a0c1e2b4d".into())]
        );
        assert_eq!(
            candidates(&mountinfo("/var/lib/docker/containers"), "3f5a0c1e2b4d"),
            [
                Candidate::Mount(ID.into()),
                Candidate::Hostname("3f5a0c1e2b4d".into())
            ]
        );
        for name in ["ci-agent", "3f5a0c1e", "3F5A0C1E2B4D", ""] {
            assert_eq!(candidates("", name), [], "{name}");
        }
    }

    #[test]
    fn other_mounts_name_no_container() {
        // A host's own files, and a container's volume that happens to sit under `containers/`.
        let table = format!(
            "30 1 254:1 / / rw - ext4 /dev/vda1 rw\n\
             31 30 254:1 /etc/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n\
             32 30 254:1 /srv/containers/abc/hosts /etc/hosts rw - ext4 /dev/vda1 rw\n\
             33 30 254:1 /var/lib/docker/containers/{ID}/x /data rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(candidates(&table, ""), []);
    }

    fn found(id: &str, hostname: &str) -> Networked {
        Networked {
            id: id.into(),
            name: "agent".into(),
            hostname: Some(hostname.into()),
            running: true,
            network_mode: "ci".into(),
            networks: Vec::new(),
        }
    }

    fn on(networks: &[(&str, &[&str])]) -> Networked {
        Networked {
            networks: networks
                .iter()
                .map(|(network, aliases)| super::super::engine::NetworkEndpoint {
                    network: network.to_string(),
                    network_id: format!("{network}-id"),
                    aliases: aliases.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
            ..found(ID, "ci-agent")
        }
    }

    #[test]
    fn an_endpoint_is_envctls_by_its_alias_alone() {
        let ours = codec::attachment_aliases();
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        let agent = on(&[("ci", &["agent"]), ("envctl_shop_1", &ours)]);
        assert!(is_envctls(&agent, "envctl_shop_1"));
        assert!(
            is_envctls(&agent, "envctl_shop_1-id"),
            "by the network's id too"
        );
        assert!(!is_envctls(&agent, "ci"));
        assert!(!is_envctls(&agent, "envctl_shop_2"), "not on it");
        let debugger = on(&[("envctl_shop_1", &["debugger"])]);
        assert!(!is_envctls(&debugger, "envctl_shop_1"), "a foreign user");
    }

    #[test]
    fn joining_a_second_environment_warns_of_its_link_names() {
        let ours = codec::attachment_aliases();
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        let alone = on(&[("ci", &[]), ("envctl_shop_1", &ours)]);
        assert_eq!(others(&alone, "envctl_shop_1"), None);
        let twice = on(&[
            ("ci", &[]),
            ("envctl_shop_1", &ours),
            ("envctl_shop_2", &ours),
        ]);
        let warning = others(&twice, "envctl_shop_2").expect("a warning");
        assert!(
            warning.starts_with(
                "envctl's container `agent` is on the networks of other environments too \
                 (`envctl_shop_1`): Docker's DNS may answer a link name"
            ),
            "{warning}"
        );
        // A network joined by hand is no environment envctl joined.
        let by_hand = on(&[("ci", &[]), ("envctl_shop_1", &["debug"])]);
        assert_eq!(others(&by_hand, "envctl_shop_2"), None);
    }

    #[test]
    fn a_candidate_holds_only_when_the_engine_confirms_it() {
        let mount = Candidate::Mount(ID.into());
        assert!(mount.confirmed_by(&found(ID, "ci-agent")));
        assert!(!mount.confirmed_by(&found(&ID.replace('3', "4"), "ci-agent")));
        let hostname = Candidate::Hostname(ID[..12].into());
        assert!(hostname.confirmed_by(&found(ID, &ID[..12])));
        // A container the engine found by that name, not by its id: another one.
        assert!(!hostname.confirmed_by(&found(&ID.replace('3', "4"), &ID[..12])));
        assert!(!hostname.confirmed_by(&found(ID, "ci-agent")));
    }
}
