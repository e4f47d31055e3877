//! The subnet of an environment's network: the first free one of the engine's address pools.
//!
//! Docker gives a container a fixed address (the one a replaced service had) only on a
//! network created with a subnet of its own, so envctl chooses one as the engine would: the
//! first subnet of its pools that no network uses yet. The engine refuses a subnet that
//! overlaps another network's, so two starts choosing the same one at once cannot both get it:
//! the loser tries the next.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network: `base/prefix`, its base masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// `172.16.0.0/12`; `None` for anything else (IPv6 among it).
    pub fn parse(text: &str) -> Option<Subnet> {
        let (address, prefix) = text.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Subnet {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    fn last(self) -> u32 {
        self.base | !mask(self.prefix)
    }

    fn overlaps(self, other: Subnet) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// A pool the engine cuts networks from: `base` in subnets of prefix `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Subnet,
    pub size: u8,
}

impl Pool {
    /// A pool as the engine's info says it (`Base`, `Size`); `None` for an IPv6 one or one
    /// whose size is shorter than its base.
    pub fn parse(base: &str, size: i64) -> Option<Pool> {
        let base = Subnet::parse(base)?;
        let size = u8::try_from(size)
            .ok()
            .filter(|s| (base.prefix..=32).contains(s))?;
        Some(Pool { base, size })
    }

    fn subnets(self) -> impl Iterator<Item = Subnet> {
        let count = 1u64 << (self.size - self.base.prefix);
        let step = 1u64 << (32 - self.size);
        (0..count).map(move |i| Subnet {
            base: (u64::from(self.base.base) + i * step) as u32,
            prefix: self.size,
        })
    }
}

/// Docker's default pools, for an engine whose info does not say its own (20.10 says them
/// only when `--default-address-pool` set them): 172.17.0.0/16 to 172.31.0.0/16 whole, then
/// 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut pools: Vec<Pool> = (17..=31)
        .filter_map(|b| Pool::parse(&format!("172.{b}.0.0/16"), 16))
        .collect();
    pools.extend(Pool::parse("192.168.0.0/16", 20));
    pools
}

/// The subnets of `pools`, in their order, that overlap none of `used`.
pub fn free<'a>(pools: &'a [Pool], used: &'a [Subnet]) -> impl Iterator<Item = Subnet> + 'a {
    pools
        .iter()
        .flat_map(|pool| pool.subnets())
        .filter(|subnet| !used.iter().any(|u| u.overlaps(*subnet)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        Subnet::parse(text).unwrap()
    }

    #[test]
    fn the_first_subnet_no_network_uses_is_chosen() {
        let pools = [Pool::parse("172.16.0.0/12", 24).unwrap()];
        let used = [subnet("172.16.0.0/24"), subnet("172.17.0.0/16")];
        let free: Vec<String> = free(&pools, &used).take(2).map(|s| s.to_string()).collect();
        assert_eq!(free, ["172.16.1.0/24", "172.16.2.0/24"]);
        let used = [subnet("172.16.0.0/16")];
        assert_eq!(
            super::free(&pools, &used).next().unwrap().to_string(),
            "172.17.0.0/24",
            "a used network wider than the pool's subnets covers several"
        );
    }

    #[test]
    fn the_default_pools_are_dockers() {
        let pools = default_pools();
        let used = [subnet("172.17.0.0/16")];
        let free: Vec<String> = free(&pools, &used).map(|s| s.to_string()).collect();
        assert_eq!(free.first().unwrap(), "172.18.0.0/16");
        assert_eq!(free[14], "192.168.0.0/20");
        assert_eq!(free.last().unwrap(), "192.168.240.0/20");
    }

    #[test]
    fn ipv6_and_nonsense_are_no_subnet() {
        assert_eq!(Subnet::parse("fd00::/64"), None);
        assert_eq!(Subnet::parse("10.0.0.0/33"), None);
        assert_eq!(Pool::parse("10.0.0.0/16", 8), None);
        assert_eq!(subnet("10.1.2.3/8").to_string(), "10.0.0.0/8");
    }
}
