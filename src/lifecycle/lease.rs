//! The lease of a running `envctl run`: while its command runs, the environment is in use, and
//! every reaper on every host must see that, whatever PID namespace `run` lives in.
//!
//! The lease is a marker container (created, never started) whose name carries its expiry
//! ([`naming::lease_name`]). `up` creates it with the claim when `run` asks, so there is no
//! moment between the end of the start and the command when the environment looks unused;
//! `run` then renews it every [`RENEW_EVERY`] by renaming it, which the engine does atomically.
//! A `run` killed without a chance to clean up stops renewing, and its lease expires after
//! [`LEASE_TTL`]: from then on the reaper judges the environment like any other.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::naming;

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// How often `run` renews its lease: four chances before it expires.
pub const RENEW_EVERY: Duration = Duration::from_secs(30);

/// The expiry of a lease taken or renewed at `now`.
pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default()
}

/// Renews the lease whose container is `container` until the future is dropped. A failed
/// renewal is reported once and retried; the lease only expires if renewals keep failing.
pub async fn hold(engine: &dyn Engine, id: &str, container: &str) {
    let mut warned = false;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let name = naming::lease_name(id, expiry(Utc::now()));
        match engine.rename_container(container, &name).await {
            Ok(()) => warned = false,
            Err(error) if !warned => {
                warned = true;
                crate::output::warning(&format!(
                    "cannot renew the lease on `{id}` that keeps reapers away while the \
                     command runs: {error}"
                ));
            }
            Err(_) => {}
        }
    }
}
