//! Names, ids and label keys, defined once.
//!
//! Everything envctl creates on the engine carries labels under [`LABEL_PREFIX`]; `down`, `ls`,
//! `status` and the reaper find environments through these labels alone, so they keep working
//! when the environment file changed or was deleted.

use chrono::{DateTime, Utc};

pub mod codec;
pub mod image;
pub mod values;

/// The prefix of every label envctl sets.
pub const LABEL_PREFIX: &str = "io.envctl.";

/// Label keys. Values are plain strings; lists are comma-separated.
pub mod label {
    /// Always `envctl`: the marker that envctl created the resource.
    pub const MANAGED_BY: &str = "io.envctl.managed-by";
    /// The environment instance id, `YYYYmmdd-HHMMSS[-N]` or the `--name` given to `up`.
    pub const ID: &str = "io.envctl.id";
    /// The environment's name (the file's `name:` or stem).
    pub const ENVIRONMENT: &str = "io.envctl.environment";
    /// The service a container runs.
    pub const SERVICE: &str = "io.envctl.service";
    /// The image reference the service was started from, as resolved by `up`.
    pub const IMAGE: &str = "io.envctl.image";
    /// RFC 3339 creation time of the environment.
    pub const CREATED_AT: &str = "io.envctl.created-at";
    /// The services this one depends on, comma-separated, so `down` and `start` can order
    /// containers without the file.
    pub const DEPENDS_ON: &str = "io.envctl.depends-on";
    /// Who started the environment: Jenkins' `BUILD_TAG` when set, else the user.
    pub const OWNER: &str = "io.envctl.owner";
    /// Container ports published on the host, comma-separated (`8080/tcp`).
    pub const PORTS: &str = "io.envctl.ports";
    /// Jenkins' `BUILD_URL`, `JOB_NAME` and `GIT_COMMIT` when `up` ran in a Jenkins build.
    pub const BUILD_URL: &str = "io.envctl.build-url";
    pub const JOB_NAME: &str = "io.envctl.job-name";
    pub const GIT_COMMIT: &str = "io.envctl.git-commit";
    /// RFC 3339 time after which the reaper stops the environment whatever its activity
    /// (`--ttl`).
    pub const EXPIRES_AT: &str = "io.envctl.expires-at";
    /// The `envctl up` (or `run`) process, as `boot-id:pid-namespace:pid:start-time`, so the
    /// reaper can tell on the same machine whether it is still running.
    pub const PROCESS: &str = "io.envctl.process";
    /// `host:pid` of the `envctl up` that is starting the environment.
    pub const STARTED_BY: &str = "io.envctl.started-by";
    /// RFC 3339 time by which the start must have finished (`up --timeout`). Together with
    /// [`STARTED_BY`] it tells an unfinished start (a killed `up`) from a running environment.
    pub const START_DEADLINE: &str = "io.envctl.start-deadline";
    /// The service's readiness spec (JSON), so `start` can wait for readiness without the file.
    pub const READY: &str = "io.envctl.ready";
    /// `anchor` on the environment's anchor container (see [`super::anchor_name`]), `ready` on
    /// the marker of a finished start ([`super::ready_name`]), `pin` on its pin
    /// ([`super::pin_name`]); absent on services.
    pub const ROLE: &str = "io.envctl.role";
    /// The backend that answers for the resource, where another could list it too: `swarm`
    /// on the volumes a swarm's nodes create for its tasks (each node is also a Docker host).
    /// Absent means Docker's.
    pub const BACKEND: &str = "io.envctl.backend";
    /// The `SERVICE@TAG`s the environment was started with, comma-separated, tags resolved.
    pub const REFS: &str = "io.envctl.refs";
    /// On a service container: the `SERVICE@TAG` it runs when its tag came from a
    /// `SERVICE@REF` (tag resolved), empty otherwise. `envctl update` replaces a service's
    /// container, so each container carries its own; [`REFS`] stays what `up` was given.
    pub const REF: &str = "io.envctl.ref";
    /// A nonce of the `envctl up` invocation, so a rollback removes exactly what it created,
    /// even while another `up` tries the same id.
    pub const RUN: &str = "io.envctl.run";
    /// Every service of the environment, comma-separated, so a service container removed by
    /// hand shows as missing instead of going unnoticed.
    pub const SERVICES: &str = "io.envctl.services";
    /// The environment file's `gateway: SERVICE:PORT`, the entry `envctl gateway` proxies to;
    /// empty when the file has none.
    pub const GATEWAY: &str = "io.envctl.gateway";
    /// On a service container: the names it answers to on the environment's network besides
    /// its service's (link aliases), comma-separated, so a container put aside by `envctl
    /// update` can join the network again under them without the file.
    pub const ALIASES: &str = "io.envctl.aliases";
    /// On a service container created with a fixed address on the environment's network: that
    /// address, the one of the container it replaced.
    pub const ADDRESS: &str = "io.envctl.address";
    /// The environment files `up` read, absolute, as a JSON array, later ones overriding the
    /// earlier (`-f` override files): `update` reads them again when given no `-f`.
    pub const FILES: &str = "io.envctl.files";
    /// On a service container: a digest of each group of its settings as created (`command`,
    /// `env`, `ports`, `mounts`, `other`), `GROUP=DIGEST` comma-separated, so `update` can tell
    /// a recreation that would change them.
    pub const SETTINGS: &str = "io.envctl.settings";
    /// Bytes of memory the environment reserved at its claim, when the engine has a capacity
    /// (see `lifecycle::admission`); on a queue entry, what its waiter asks for.
    pub const MEMORY: &str = "io.envctl.memory";
    /// On the engine's capacity marker ([`super::CAPACITY_NAME`]): its limits, each absent
    /// when not set. Sizes in bytes, `PREEMPT_IDLE` in seconds.
    pub const MAX_ENVIRONMENTS: &str = "io.envctl.max-environments";
    pub const MAX_MEMORY: &str = "io.envctl.max-memory";
    pub const DEFAULT_MEMORY: &str = "io.envctl.default-memory";
    pub const PER_OWNER: &str = "io.envctl.per-owner";
    pub const PREEMPT_IDLE: &str = "io.envctl.preempt-idle";
    /// On a queue entry: `high`, `normal` or `low`.
    pub const PRIORITY: &str = "io.envctl.priority";
    /// On a queue entry: the waiter's nonce, the same across its renewals.
    pub const WAITER: &str = "io.envctl.waiter";
    /// On a queue entry whose labels can change (a swarm's config): until when it holds its
    /// place, in Unix seconds, and `true` once its waiter was admitted. A container's labels
    /// cannot change: there the entry's name carries both ([`super::queue_name`]).
    pub const QUEUE_EXPIRES: &str = "io.envctl.queue-expires";
    pub const ADMITTED: &str = "io.envctl.admitted";
    /// On a swarm service: the container ports envctl published (host mode, a port the node
    /// picks) for its own `tcp:` and `http:` probes alone, because the file publishes none of
    /// them, comma-separated (`61616/tcp`): never the environment's endpoints.
    pub const PROBE_PORTS: &str = "io.envctl.probe-ports";
    /// On a pool member's resources: a fingerprint of each pooled service as filled,
    /// `SERVICE=IMAGE.SETTINGS` pairs (see `lifecycle::pool`).
    pub const POOL: &str = "io.envctl.pool";
    /// On an adoption marker: when the adopted pool member was filled.
    pub const ADOPTED: &str = "io.envctl.adopted";
}

/// The value of [`label::MANAGED_BY`].
pub const MANAGER: &str = "envctl";

/// The registry host an image repository names, as Docker decides it: a first path component
/// with a `.` or `:`, or `localhost`. `None` means Docker Hub.
pub fn registry_host(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// What envctl puts between a name and an id in the names it gives: `SERVICE_ID`,
/// `envctl_ID_ready`.
pub const SEPARATOR: char = '_';

/// Why `name` cannot be an environment id (`--name`), if it cannot.
///
/// An id never contains [`SEPARATOR`]: then every name envctl derives from an id splits back
/// into its parts one way only, so no id can produce another environment's container or marker
/// names (`--name foo_ready` would take environment `foo`'s ready marker), whatever markers
/// envctl adds later.
pub fn check_id(name: &str) -> Result<(), String> {
    if name.contains(SEPARATOR) {
        let suggestion = name.replace(SEPARATOR, "-");
        let fix = match is_valid_docker_name(&suggestion) {
            true => format!("; use `{suggestion}`"),
            false => String::new(),
        };
        return Err(format!(
            "`{name}` is not a valid name: `{SEPARATOR}` separates names from ids in container \
             names{fix}"
        ));
    }
    if is_valid_docker_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: start with a letter or digit, then letters, digits, \
             `.` or `-`"
        ))
    }
}

/// A run id from a launch time: `20261126-041500`.
pub fn run_id(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d-%H%M%S").to_string()
}

/// The id to try after `base` was taken `attempt` times: `base`, `base-2`, `base-3`, ...
pub fn nth_id(base: &str, attempt: u32) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        format!("{base}-{attempt}")
    }
}

/// The container name of a service in a run: the seed's `oracle_20141023-101010` convention.
pub fn container_name(service: &str, id: &str) -> String {
    format!("{service}{SEPARATOR}{id}")
}

/// The value of [`label::ROLE`] on an anchor container.
pub const ANCHOR_ROLE: &str = "anchor";

/// The name of the environment's anchor: a container that is created but never started, whose
/// name claims the id on the engine. Container names are the one thing Docker keeps unique
/// atomically, and this one does not depend on the services, so two different environments
/// launched in the same second still get distinct ids.
pub fn anchor_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}")
}

/// The engine name of the environment's named volume `volume` (as the file calls it): one per
/// copy of the environment, found again by its labels.
pub fn volume_name(id: &str, volume: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}{volume}")
}

/// The file's name of the engine volume `name` of environment `id`: the inverse of
/// [`volume_name`].
pub fn volume_of<'a>(id: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(&format!("envctl{SEPARATOR}{id}{SEPARATOR}"))
}

/// The value of [`label::ROLE`] on the marker of a finished start.
pub const READY_ROLE: &str = "ready";

/// The name of the marker `up` creates when the start finished: a container that is created,
/// never started. Labels cannot change after creation, so "the start finished" is recorded by
/// this marker's existence; an environment without it had its `up` killed or still running.
pub fn ready_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}ready")
}

/// The value of [`label::ROLE`] on the marker of a pool member ready to be adopted.
pub const MEMBER_ROLE: &str = "pool-member";

/// The name of the marker `envctl pool fill` creates once a member's pooled services are ready:
/// only such a member is adopted. A member never carries the ready marker until an `up`
/// adopted and finished it.
pub fn member_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}pool-member")
}

/// The value of [`label::ROLE`] on the marker of an adoption.
pub const ADOPT_ROLE: &str = "adopt";

/// The name of the marker that claims a pool member for one `up`: a container created, never
/// started, whose name the engine keeps unique, so of two `up`s on any hosts one adopts the
/// member and the other is told it is taken. Its labels carry the adopter's metadata (owner,
/// refs, TTL, start deadline, process), which win over the member's when listing.
pub fn adopt_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}adopt")
}

/// The value of [`label::ROLE`] on the marker of a creation on request.
pub const CREATE_ROLE: &str = "create";

/// The name of the marker `envctl gateway --create` holds while it creates an environment of
/// ENV at REF, `id` being `ENV-REF`: a container created, never started, whose name the engine
/// keeps unique, so of two gateways asked at once one creates and the other waits for it. The
/// environment it creates is a pool member it adopted (with the member's id) or `ENV-REF`; the
/// marker goes once the creation ended, and the reaper collects one whose gateway is gone or
/// whose deadline passed.
pub fn create_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}create")
}

/// The value of [`label::ROLE`] on a pin container.
pub const PIN_ROLE: &str = "pin";

/// The name of the container that pins an environment against the reaper: created, never
/// started, removed by `unpin` or `down`. A pin lives on the engine rather than in the local
/// state file, so losing that file can never unpin an environment.
pub fn pin_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}pin")
}

/// The value of [`label::ROLE`] on the marker of an `envctl update` under way.
pub const UPDATE_ROLE: &str = "update";

/// The name of the marker an `envctl update` holds while it replaces services: a container that
/// is created, never started. Its name is unique, so two updates of one environment cannot run
/// at once; while it exists (and its update runs), `ls` shows the environment `updating` and the
/// reaper leaves it alone. It carries the update's deadline and process, like a start's anchor.
pub fn update_name(id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}update")
}

/// The name an `envctl update` gives a service's previous container, stopped, while the new one
/// starts under the service's own name: removed once the new one is ready, renamed back if it
/// fails. No id contains [`SEPARATOR`], so this name is no other environment's.
pub fn replaced_name(service: &str, id: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}replaced-{service}")
}

/// The name of `id`'s marker of `kind` (a container on Docker, a config on Swarm); `None` for
/// a lease, whose name changes with each renewal (see [`lease_name`]), and for the engine's
/// capacity and queue entries, which are no environment's.
pub fn marker_name(id: &str, kind: codec::MarkerKind) -> Option<String> {
    use codec::MarkerKind;
    match kind {
        MarkerKind::Anchor => Some(anchor_name(id)),
        MarkerKind::Ready => Some(ready_name(id)),
        MarkerKind::Pinned => Some(pin_name(id)),
        MarkerKind::Update => Some(update_name(id)),
        MarkerKind::Member => Some(member_name(id)),
        MarkerKind::Adopt => Some(adopt_name(id)),
        MarkerKind::Create => Some(create_name(id)),
        MarkerKind::Lease | MarkerKind::Capacity | MarkerKind::Queue | MarkerKind::Fill => None,
    }
}

/// The value of [`label::ROLE`] on the engine's capacity marker.
pub const CAPACITY_ROLE: &str = "capacity";

/// The name of the engine's capacity marker: a container that is created, never started,
/// whose labels carry the capacity every client of the engine admits environments to. It has
/// no `_`, so it is no environment's name whatever the id (every name derived from an id has
/// one).
pub const CAPACITY_NAME: &str = "envctl-capacity";

/// The value of [`label::ROLE`] on an entry of the admission queue.
pub const QUEUE_ROLE: &str = "queue";

/// The name of a waiter's queue entry: created, never started, renamed to renew its expiry
/// (Unix seconds) as a lease is, and to say that its waiter was admitted (`-admitted-` before
/// the expiry; labels cannot change). No `_`: no environment's name.
pub fn queue_name(waiter: &str, expires: DateTime<Utc>, admitted: bool) -> String {
    let mark = match admitted {
        true => "-admitted",
        false => "",
    };
    format!("envctl-queue-{waiter}{mark}-{}", expires.timestamp())
}

/// The name of a waiter's queue entry where its labels carry its terms (a swarm's config, see
/// [`label::QUEUE_EXPIRES`]): fixed for the entry's life.
pub fn queue_entry_name(waiter: &str) -> String {
    format!("envctl-queue-{waiter}")
}

/// Whether a queue entry's name says its waiter was admitted (see [`queue_name`]).
pub fn queue_admitted(name: &str) -> bool {
    name.trim_start_matches('/')
        .strip_prefix("envctl-queue-")
        .and_then(|rest| rest.rsplit_once('-'))
        .is_some_and(|(head, _)| head.ends_with("-admitted"))
}

/// The expiry a queue entry's name carries (see [`queue_name`]).
pub fn queue_expiry(name: &str) -> Option<DateTime<Utc>> {
    let rest = name.trim_start_matches('/').strip_prefix("envctl-queue-")?;
    let (_, seconds) = rest.rsplit_once('-')?;
    DateTime::from_timestamp(seconds.parse().ok()?, 0)
}

/// The value of [`label::ROLE`] on a `pool fill`'s claim on an environment's pool.
pub const FILL_ROLE: &str = "pool-fill";

/// The name of a `pool fill`'s claim on an environment's pool: created, never started, renamed
/// to renew its expiry (Unix seconds) as a queue entry is. Of the live claims on one pool the
/// oldest by the engine's clock fills; the environment is in its labels, not its name. No
/// `_`: no environment's name.
pub fn fill_name(filler: &str, expires: DateTime<Utc>) -> String {
    format!("envctl-fill-{filler}-{}", expires.timestamp())
}

/// The expiry a fill claim's name carries (see [`fill_name`]).
pub fn fill_expiry(name: &str) -> Option<DateTime<Utc>> {
    let rest = name.trim_start_matches('/').strip_prefix("envctl-fill-")?;
    let (_, seconds) = rest.rsplit_once('-')?;
    DateTime::from_timestamp(seconds.parse().ok()?, 0)
}

/// The value of [`label::ROLE`] on the lease of a running `envctl run`.
pub const LEASE_ROLE: &str = "lease";

/// The name of the lease an `envctl run` holds on its environment while its command runs: a
/// container that is created, never started, whose name carries the lease's expiry in Unix
/// seconds. Labels cannot change after creation, but a rename is atomic and cheap, so `run`
/// renews the lease by renaming it, and every reaper on every host reads the expiry from the
/// name alone.
pub fn lease_name(id: &str, expires: DateTime<Utc>) -> String {
    format!("envctl_{id}_lease-{}", expires.timestamp())
}

/// The expiry a lease's container name carries (see [`lease_name`]).
pub fn lease_expiry(name: &str) -> Option<DateTime<Utc>> {
    let (_, seconds) = name.trim_start_matches('/').rsplit_once("_lease-")?;
    DateTime::from_timestamp(seconds.parse().ok()?, 0)
}

/// The image envctl creates its markers (anchor, ready marker, pin) from: an image of its own,
/// imported into each engine on first use, labelled as envctl's.
///
/// Markers are never started, so a command of their own would already keep an image without
/// CMD or ENTRYPOINT from failing their creation. They still must not borrow a service's image:
/// an image may declare VOLUMEs, which every container created from it gets as anonymous
/// volumes; `pin` would fail once that image was deleted; and `docker ps -a` would show
/// envctl's markers as the user's software. A tiny image of envctl's own, made from a tar held
/// in memory, needs no registry and no build, and depends on nothing of the user's.
pub const MARKER_IMAGE: &str = "envctl-marker:1";

/// The command of marker containers. It is never run; it only spares the engine from looking
/// for one in the image.
pub const MARKER_COMMAND: &str = "envctl-marker";

/// The name of the environment's private network.
pub fn network_name(environment: &str, id: &str) -> String {
    format!("envctl{SEPARATOR}{environment}{SEPARATOR}{id}")
}

/// The name of an environment's overlay network on a swarm. `nonce` keeps a name from being
/// reused right after the network it named was removed (docs/backends.md §6.2); the network is
/// found by its labels, never by this name.
pub fn swarm_network_name(id: &str, nonce: &str) -> String {
    format!("envctl{SEPARATOR}{id}{SEPARATOR}{nonce}")
}

/// Whether `name` is a valid Docker container name (and so a valid `--name` id):
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_valid_docker_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The environment-variable name for a service's published port: `ENVCTL_ORACLE_XE_1521`.
pub fn port_variable(service: &str, port: u16) -> String {
    let service: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ENVCTL_{service}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_follow_the_seed_convention() {
        let at = Utc.with_ymd_and_hms(2014, 10, 23, 10, 10, 10).unwrap();
        assert_eq!(run_id(at), "20141023-101010");
        assert_eq!(
            container_name("oracle", &run_id(at)),
            "oracle_20141023-101010"
        );
        assert_eq!(nth_id("20141023-101010", 1), "20141023-101010");
        assert_eq!(nth_id("20141023-101010", 3), "20141023-101010-3");
    }

    #[test]
    fn a_queue_entrys_name_carries_its_expiry_and_whether_it_was_admitted() {
        let until = Utc.with_ymd_and_hms(2026, 12, 5, 20, 0, 0).unwrap();
        let waiting = queue_name("1e987fb09d68d36e", until, false);
        let admitted = queue_name("1e987fb09d68d36e", until, true);
        assert_eq!(waiting, "envctl-queue-1e987fb09d68d36e-1796500800");
        assert_eq!(
            admitted,
            "envctl-queue-1e987fb09d68d36e-admitted-1796500800"
        );
        for name in [&waiting, &admitted] {
            assert_eq!(queue_expiry(&format!("/{name}")), Some(until));
        }
        assert!(!queue_admitted(&waiting));
        assert!(queue_admitted(&format!("/{admitted}")));
    }

    #[test]
    fn registry_hosts_follow_dockers_rule() {
        assert_eq!(registry_host("postgres"), None);
        assert_eq!(registry_host("library/postgres"), None);
        assert_eq!(registry_host("localhost/app"), Some("localhost"));
        assert_eq!(registry_host("localhost:5000/app"), Some("localhost:5000"));
        assert_eq!(
            registry_host("registry.example.com/team/app"),
            Some("registry.example.com")
        );
    }

    #[test]
    fn a_lease_name_carries_its_expiry() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let name = lease_name("20261126-094500", at);
        assert_eq!(name, "envctl_20261126-094500_lease-1795687200");
        assert_eq!(lease_expiry(&name), Some(at));
        assert_eq!(
            lease_expiry(&format!("/{name}")),
            Some(at),
            "as Docker lists it"
        );
        assert_eq!(lease_expiry("envctl_x_lease-soon"), None);
        assert_eq!(lease_expiry("envctl_x_ready"), None);
    }

    #[test]
    fn an_id_cannot_take_another_environments_marker_name() {
        // `--name foo_ready` would take the name of environment `foo`'s ready marker.
        for taken in ["foo_ready", "foo_pin", "foo_lease-1", "a_b"] {
            let error = check_id(taken).expect_err(taken);
            assert!(error.contains("`_` separates names from ids"), "{error}");
        }
        assert_eq!(
            check_id("foo_ready").unwrap_err(),
            "`foo_ready` is not a valid name: `_` separates names from ids in container names; \
             use `foo-ready`"
        );
        assert_eq!(check_id("pr-42.build-7"), Ok(()));
    }

    #[test]
    fn an_update_names_its_marker_and_the_containers_it_puts_aside_apart_from_services() {
        let id = "20261126-094500";
        assert_eq!(update_name(id), "envctl_20261126-094500_update");
        let aside = replaced_name("accounting", id);
        assert_eq!(aside, "envctl_20261126-094500_replaced-accounting");
        assert_ne!(aside, container_name("accounting", id));
        assert!(is_valid_docker_name(&aside));
    }

    #[test]
    fn docker_names_are_validated() {
        assert!(is_valid_docker_name("pr-42.build_7"));
        assert!(!is_valid_docker_name("-x"));
        assert!(!is_valid_docker_name(""));
        assert!(!is_valid_docker_name("a/b"));
    }

    #[test]
    fn port_variables_are_upper_snake_case() {
        assert_eq!(port_variable("oracle-xe", 1521), "ENVCTL_ORACLE_XE_1521");
    }
}
