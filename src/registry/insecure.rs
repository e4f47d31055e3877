//! Which registries may speak plain HTTP or present an untrusted certificate: those the engine
//! was told are insecure (`--insecure-registry`), as Docker itself treats them.

use std::net::IpAddr;

/// The engine's insecure registries: by name (`registry.example.com:5000`) and by address
/// range (`10.0.0.0/8`; Docker's default is `127.0.0.0/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insecure {
    pub names: Vec<String>,
    pub ranges: Vec<String>,
}

impl Insecure {
    /// Whether `registry` (`host[:port]`) is insecure: named, or an address in a range. A host
    /// name is resolved for the ranges, as Docker does.
    pub async fn covers(&self, registry: &str) -> bool {
        if self.names.iter().any(|n| n == registry) {
            return true;
        }
        if self.ranges.is_empty() {
            return false;
        }
        let host = host_of(registry);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((host, 0)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            },
        };
        addresses
            .iter()
            .any(|ip| self.ranges.iter().any(|range| in_range(*ip, range)))
    }
}

/// `registry.example.com:5000` → `registry.example.com`; `[::1]:5000` → `::1`.
fn host_of(registry: &str) -> &str {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `ip` is in the CIDR `range`; a malformed range contains nothing.
fn in_range(ip: IpAddr, range: &str) -> bool {
    let Some((network, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_ranges_make_a_registry_insecure() {
        let insecure = Insecure {
            names: vec!["registry.example.com:5000".into()],
            ranges: vec![
                "127.0.0.0/8".into(),
                "10.20.0.0/16".into(),
                "::1/128".into(),
            ],
        };
        assert!(insecure.covers("registry.example.com:5000").await);
        assert!(insecure.covers("10.20.3.4:5000").await);
        assert!(insecure.covers("127.0.0.1").await);
        assert!(insecure.covers("[::1]:5000").await);
        assert!(!insecure.covers("10.21.0.1:5000").await);
        assert!(
            !insecure.covers("registry.example.com").await,
            "another port"
        );
        assert!(!Insecure::default().covers("10.20.3.4").await);
    }

    #[test]
    fn ranges_are_cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("192.168.1.7"), "192.168.0.0/16"));
        assert!(!in_range(ip("192.169.1.7"), "192.168.0.0/16"));
        assert!(in_range(ip("8.8.8.8"), "0.0.0.0/0"));
        assert!(!in_range(ip("8.8.8.8"), "8.8.8.8/33"));
        assert!(!in_range(ip("8.8.8.8"), "nonsense"));
        assert!(!in_range(ip("::1"), "127.0.0.0/8"));
    }
}
