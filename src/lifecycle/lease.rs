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
use futures_util::stream::{self, Stream};

use crate::backend::{Backend, Marker, Metadata};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// How often `run` renews its lease: four chances before it expires.
pub const RENEW_EVERY: Duration = Duration::from_secs(30);

/// The expiry of a lease taken or renewed at `now`.
pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default()
}

/// Renews the environment's lease every [`RENEW_EVERY`] for as long as the stream is polled;
/// dropping it stops the renewals. A failed renewal is retried, and said once (an item of the
/// stream, for the command to print) until one succeeds again: the lease only expires if
/// renewals keep failing.
pub fn hold<'a>(
    backend: &'a dyn Backend,
    metadata: &'a Metadata,
) -> impl Stream<Item = String> + Send + 'a {
    stream::unfold(false, move |mut warned| async move {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let lease = Marker::Lease(expiry(Utc::now()));
            match backend.set_marker(metadata, lease).await {
                Ok(()) => warned = false,
                Err(error) if !warned => {
                    let warning = format!(
                        "cannot renew the lease on `{}` that keeps reapers away while the \
                         command runs: {error}",
                        metadata.id
                    );
                    return Some((warning, true));
                }
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::StreamExt;

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
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let holding = tokio::spawn({
            let (fake, metadata, warnings) = (fake.clone(), metadata.clone(), warnings.clone());
            async move {
                let mut renewals = std::pin::pin!(hold(&fake, &metadata));
                while let Some(warning) = renewals.next().await {
                    warnings.lock().unwrap().push(warning);
                }
            }
        });
        tokio::time::sleep(RENEW_EVERY * 3 + Duration::from_secs(1)).await;
        holding.abort();
        let warnings = warnings.lock().unwrap().clone();
        match warnings.as_slice() {
            [warning] => assert!(
                warning.starts_with("cannot renew the lease on `shop-1`")
                    && warning.ends_with("engine busy"),
                "{warning}"
            ),
            other => panic!("one warning for the failed renewal, got {other:?}"),
        }
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
