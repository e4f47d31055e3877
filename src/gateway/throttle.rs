//! Throttling of wrong tokens, per client address: a few mistakes are free, then each further
//! wrong token makes that address wait longer before its next try. Other addresses are never
//! held up by it. Pure: the caller passes the time, for unit tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Wrong tokens an address may send before it has to wait.
pub const FREE_FAILURES: u32 = 3;
/// The wait after the first failure beyond the free ones; it doubles with each further one.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// An address quiet this long since its last wrong token starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The addresses remembered at most, so that many addresses cannot fill the memory.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, Record>>,
}

impl Throttle {
    /// `Err(wait)` when `client` must wait that long before its token is even looked at.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let Some(record) = clients.get(&key(client)) else {
            return Ok(());
        };
        let until = record.last + wait_after(record.failures);
        match until.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// `client` sent a wrong token.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
        let key = key(client);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
            let oldest = clients.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        let record = clients.entry(key).or_insert(Record {
            failures: 0,
            last: now,
        });
        record.failures += 1;
        record.last = now;
    }

    /// `client` signed in: its mistakes are forgotten.
    pub fn succeeded(&self, client: IpAddr) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(client));
    }
}

/// How long an address waits after its `failures`-th wrong token.
fn wait_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(beyond) => FIRST_WAIT
            .saturating_mul(1 << beyond.min(16))
            .min(LONGEST_WAIT),
    }
}

/// One key per client: an IPv6 client owns its whole /64, so it is throttled as one.
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUESSER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn a_few_wrong_tokens_are_free_then_each_one_waits_longer() {
        let throttle = Throttle::default();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed(GUESSER, Instant::now());
            assert_eq!(throttle.check(GUESSER, Instant::now()), Ok(()));
        }
        let mut waits = Vec::new();
        for _ in 0..10 {
            throttle.failed(GUESSER, Instant::now());
            let wait = throttle.check(GUESSER, Instant::now()).unwrap_err();
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            assert_eq!(throttle.check(GUESSER, Instant::now()), Ok(()));
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_guessing_address_never_holds_up_another() {
        let throttle = Throttle::default();
        for _ in 0..20 {
            throttle.failed(GUESSER, Instant::now());
        }
        assert!(throttle.check(GUESSER, Instant::now()).is_err());
        assert_eq!(throttle.check(OTHER, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sign_in_or_a_long_quiet_forgets_the_mistakes() {
        let throttle = Throttle::default();
        for _ in 0..FREE_FAILURES {
            throttle.failed(GUESSER, Instant::now());
        }
        throttle.succeeded(GUESSER);
        assert_eq!(throttle.check(GUESSER, Instant::now()), Ok(()));
        for _ in 0..FREE_FAILURES {
            throttle.failed(GUESSER, Instant::now());
        }
        tokio::time::advance(FORGET_AFTER).await;
        throttle.failed(GUESSER, Instant::now());
        assert_eq!(
            throttle.check(GUESSER, Instant::now()),
            Ok(()),
            "one mistake after a long quiet is free again"
        );
    }

    #[test]
    fn an_ipv6_client_is_throttled_by_its_64_bit_prefix() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_prefix: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(one), key(same_prefix));
        assert_ne!(key(one), key(other_prefix));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(key(mapped), GUESSER);
    }
}
