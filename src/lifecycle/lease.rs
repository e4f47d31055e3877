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

use crate::backend::{Backend, Marker, Metadata};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// How often `run` renews its lease: four chances before it expires.
pub const RENEW_EVERY: Duration = Duration::from_secs(30);

/// The expiry of a lease taken or renewed at `now`.
pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default()
}

/// Renews the environment's lease until the future is dropped. A failed
/// renewal is reported once and retried; the lease only expires if renewals keep failing.
pub async fn hold(backend: &dyn Backend, metadata: &Metadata) {
    let id = &metadata.id;
    let mut warned = false;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let lease = Marker::Lease(expiry(Utc::now()));
        match backend.set_marker(metadata, lease).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Selector;
    use crate::backend::fake::{Fake, Fault};

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_renewed_every_30_s_and_survives_a_failed_renewal() {
        let fake = Fake::new();
        let metadata = Metadata::new("shop-1");
        fake.claim(&metadata).await.unwrap();
        let taken = Utc::now();
        fake.set_marker(&metadata, Marker::Lease(expiry(taken)))
            .await
            .unwrap();
        fake.fault(
            "set_marker",
            "shop-1/lease",
            Fault::Fail("engine busy".into()),
        );
        let holding = tokio::spawn({
            let (fake, metadata) = (fake.clone(), metadata.clone());
            async move { hold(&fake, &metadata).await }
        });
        tokio::time::sleep(RENEW_EVERY * 3 + Duration::from_secs(1)).await;
        holding.abort();
        assert_eq!(
            fake.calls_of("set_marker").len(),
            4,
            "the first one, then every 30 s, the failed one included"
        );
        // The wall clock does not follow paused time: a renewal sets `LEASE_TTL` from now.
        let until = fake.list(&Selector::All).await.unwrap()[0]
            .markers
            .lease_until
            .unwrap();
        assert!(until >= expiry(taken), "renewed, never shortened");
        assert!(until <= expiry(Utc::now()));
    }
}
